//! Northstar's browser SDK: the protocol's identity and verification core, exported to
//! JavaScript through wasm-bindgen (issue 14, first slice).
//!
//! Every function is a thin layer over `northstar-protocol`: the same canonical form,
//! signatures and log-chain check as the node and the Rust SDK, compiled to WebAssembly, never
//! a second implementation in JavaScript. Signed objects cross the boundary as JSON text; a
//! failure is thrown as a JavaScript `Error` whose message is the protocol's, with its causes.
//!
//! # Layout
//! - [`error`]: the one error type and how it becomes a JavaScript `Error`.
//! - [`identity`]: `Identity`: a key pair from a secret the app keeps, the answer to a node's
//!   challenge, and the signed objects the node takes (posts, memberships, tombstones).
//! - [`verify`]: `verifyEvent`, `verifyBeam` and `LogChecker`, the checks the Rust SDK makes on
//!   what a node sends.
//!
//! Not here yet: the WebSocket connection, keeping the identity in IndexedDB, the web app.
#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod error;
pub mod identity;
pub mod verify;

pub use error::Error;
pub use identity::Identity;
pub use verify::{LogChecker, verify_beam, verify_event};

/// A time or count from JavaScript (a `number`) as the protocol's integer: a whole number in
/// `0..=2^53-1`, the only integers a signed object may carry.
fn whole(value: f64, what: &'static str) -> Result<u64, Error> {
    if value.fract() != 0.0 || !(0.0..=northstar_protocol::MAX_SAFE_INTEGER as f64).contains(&value)
    {
        return Err(Error::BadArgument {
            what,
            reason: format!("{value} is not a whole number in 0..=2^53-1"),
        });
    }
    // In range and whole, checked above: the conversion is exact.
    Ok(value as u64)
}
