//! Live streams: the frames of `stream` spaces (`spec/protocol.md` §4.9) on their way through
//! the node.
//!
//! # Layout
//! - [`window`]: a stream's recent frames, as pure logic: taking each frame once from two
//!   parents, gaps, and where a late joiner starts.
pub mod window;
