//! Northstar's browser SDK: identities kept in IndexedDB, a client that connects to a node
//! with automatic challenge-response, and every event and beam verified before the app sees it,
//! exported to JavaScript through wasm-bindgen with TypeScript declarations.
//!
//! Every function is a thin layer over `northstar-protocol`: the same canonical form,
//! signatures and log-chain check as the node and the Rust SDK, compiled to WebAssembly, never
//! a second implementation in JavaScript. Signed objects cross the boundary as JSON text; a
//! failure is thrown as a JavaScript `Error` whose message is the protocol's, with its causes.
//!
//! # Layout
//! - [`error`]: the one error type and how it becomes a JavaScript `Error` with a `kind`.
//! - [`identity`]: `Identity`: a key pair, kept in IndexedDB or from a secret the app keeps,
//!   the answer to a node's challenge, and the signed objects the node takes.
//! - `store`: IndexedDB, where identities are kept on the device.
//! - `options`: reading an app's options object and calling its handlers.
//! - `rpc`: one JSON-RPC connection over the browser's WebSocket.
//! - [`client`]: `Client`: connect, spaces, posts, pages, beams; dials again after a drop.
//! - [`subscription`]: `Subscription`: a space's events, verified, in order, resumed from a
//!   cursor.
//! - [`watch`]: `Watch`: a live stream's frames, checked under the stream's owner.
//! - [`verify`]: `verifyEvent`, `verifyBeam` and `LogChecker`, the checks on their own, for
//!   apps that fetch events some other way.
#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod blob;
pub mod client;
pub mod error;
pub mod identity;
mod options;
mod rpc;
mod store;
pub mod subscription;
pub mod verify;
pub mod watch;

pub use client::Client;
pub use error::Error;
pub use identity::Identity;
pub use subscription::Subscription;
pub use verify::{LogChecker, verify_beam, verify_event};
pub use watch::Watch;

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
