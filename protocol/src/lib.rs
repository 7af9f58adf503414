//! The Northstar wire protocol, without any I/O.
//!
//! Everything a second implementation must match byte for byte lives here, and `spec/` states the
//! same rules in prose with test vectors.
//!
//! # Layout
//! - [`address`]: space ids, `northstar://` URIs and beam paths.
//! - [`blob`]: blob ids, attachments, and the verified-stream encoding of blobs.
//! - [`api`]: the JSON-RPC API's result types and error codes.
//! - [`chain`]: whether an event is the next entry of a log as a reader holds it: the one
//!   log-chain check of nodes and clients.
//! - [`envelope`]: what a JSON-RPC message on the wire is (request, notification or fault)
//!   and which id its answer carries.
//! - [`frame`]: stream frames: the binary, owner-signed live payloads of a `stream` space.
//! - [`did`]: `did:key` Ed25519 identities (parse, print, the ways a DID can be wrong).
//! - [`method`]: the wire names of the JSON-RPC methods.
//! - [`keys`]: key pairs: generate, from a seed, and (feature `keyfile`) save to and load from
//!   a key file.
//! - [`canonical`]: the canonical JSON encoding (RFC 8785 restricted to integers) and the strict
//!   parser that refuses duplicate keys, floats and unsafe integers.
//! - [`sign`]: domain-separated signatures over canonical bytes, strict verification.
//! - [`id`]: BLAKE3 content ids.
//! - [`wire`]: the signed objects exchanged by clients and nodes.
//! - [`watch`]: a watcher's side of a live stream: which frames to deliver, checked.
//! - [`verify`]: a client's checks of what a node sends: events against their log and
//!   sequencer, beams against their path and author.
//! - `rpc` (features `server`, `client`): the JSON-RPC API, declared once.
#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod address;
pub mod api;
pub mod blob;
pub mod canonical;
pub mod chain;
pub mod did;
pub mod envelope;
pub mod frame;
pub mod id;
pub mod keys;
pub mod method;
#[cfg(any(feature = "server", feature = "client"))]
pub mod rpc;
pub mod sign;
pub mod verify;
pub mod watch;
pub mod wire;

pub use did::{Did, DidError};
pub use id::{ContentId, ContentIdError};
#[cfg(feature = "keyfile")]
pub use keys::KeyFileError;
pub use keys::Keypair;
pub use sign::{Domain, Signature, SignatureError, Signed};

/// The version of the protocol this crate implements (`spec/` §6.3.2). It is in every domain tag
/// (`northstar/v2/…`, §3.3), so a signature made under one version never verifies under another,
/// and `node.info` states it, so a client or node refuses a peer of another version by name
/// instead of failing on its first signature.
pub const PROTOCOL_VERSION: u32 = 2;

/// The largest integer a signed object may carry: 2^53 - 1, the largest integer every JSON
/// implementation represents exactly.
pub const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;
