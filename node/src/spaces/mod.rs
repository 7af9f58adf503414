//! Spaces: their rules, the writer that orders and stores their events, and their trees.
//!
//! # Layout
//! Pure (no I/O, clock and keys passed in):
//! - [`rules`]: a space's rules as a state machine: who may do what, what each event changes.
//! - [`decide`]: the writer's decisions for a group of requests: sequencing, replication,
//!   deletion; what to read first, what to commit after.
//! - [`replicate`]: the part of [`decide`] that places verified events in replicas.
//! - [`rows`]: a space's state from its rows, and the rows each decided event writes.
//! - [`replica`]: verifying what other nodes send before the writer sees it.
//! - [`import`]: checking a page of an imported log, whole, before the writer sees it.
//! - [`tree`]: the broadcast tree over a space's member nodes.
//! - [`routing`]: where a committed item goes next, and the outbox it leaves by.
//!
//! With I/O:
//! - [`writer`]: the actor around [`decide`]: reads, commits, answers, publishes.
//!
//! Arrows point down only: `writer` uses the pure modules, the store and the hub; the gossip
//! layer and the RPC handlers use `writer` and `routing`; nothing here uses them.

pub mod decide;
pub mod import;
pub mod replica;
pub mod replicate;
pub mod routing;
pub mod rows;
pub mod rules;
pub mod tree;
pub mod writer;
#[cfg(test)]
mod writer_tests;

pub use decide::{Deleted, SequenceError};
pub use replica::{Identified, Replicated};
pub use writer::{SequencerHandle, Writer, load_state};
