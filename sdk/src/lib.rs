//! Typed Rust client for Northstar nodes.
//!
//! # Layout
//! - [`keystore`]: where user keys live on disk, and creating or loading them.
//!
//! The protocol crate is re-exported as [`protocol`] so apps need one dependency.
#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod keystore;

pub use northstar_protocol as protocol;
pub use northstar_protocol::{Did, Keypair};
