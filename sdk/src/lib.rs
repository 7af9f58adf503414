//! Typed Rust client for Northstar nodes.
//!
//! A [`Client`] is one WebSocket connection to a node, authenticated as a user's key. Its
//! methods sign what the user asks (a space's genesis, a membership request, a beam and its
//! ref, a tombstone) and verify what the node answers (every event under its space's sequencer,
//! every beam under its author), so an app never handles an unchecked object.
//!
//! # Layout
//! - [`client`]: [`Client`]: connect and authenticate, then one typed method per JSON-RPC method.
//! - [`subscription`]: [`EventStream`], a space's live events that resume across disconnects;
//!   [`EventWithBeamStream`], the same with each post's beam inline.
//! - [`stream`]: live streams: a [`Publisher`] of a stream's frames, a [`Watch`] of them, each
//!   on a WebSocket of its own since frames are binary messages.
//! - [`blob`]: blobs: uploading from an `AsyncRead`, and reading one back checked chunk by
//!   chunk ([`BlobReader`]).
//! - [`auth`]: the client's side of the handshake: the origin of a URL, the challenge checks.
//! - [`verify`]: checking events against their log and beams against their path.
//! - [`address`]: what methods accept as a space or a beam, and reading either from text.
//! - [`export`]: space export files: a whole log read and verified for one ([`LogExport`]),
//!   the check of one before it is imported ([`FileCheck`]), and `space.import`.
//! - [`error`]: [`SdkError`], and [`NodeCode`] for the node's refusals.
//! - [`keystore`]: where user keys live on disk, and creating or loading them.
//!
//! The protocol crate is re-exported as [`protocol`] so apps need one dependency.
//!
//! # Example
//!
//! ```no_run
//! use futures_util::StreamExt;
//! use northstar_sdk::protocol::address::SpaceType;
//! use northstar_sdk::{Client, keystore};
//!
//! # async fn run() -> Result<(), northstar_sdk::SdkError> {
//! let key = keystore::load(&keystore::key_path(None)?)?;
//! let client = Client::connect("ws://127.0.0.1:7700", key).await?;
//!
//! let ack = client.create_space(SpaceType::Channel, "general", "General").await?;
//! println!("created {}", client.space_uri(&ack.space));
//!
//! let mut events = client.subscribe(&ack.space, 0).await?;
//! let posted = client.post(&ack.space, "Hello", "First post").await?;
//! println!("posted {} at seq {}", posted.beam_uri, posted.seq);
//!
//! while let Some(event) = events.next().await {
//!     let event = event?;
//!     println!("{} {} by {}", event.seq, event.payload.kind(), event.author());
//!     if event.seq == posted.seq {
//!         break;
//!     }
//! }
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod address;
pub mod auth;
pub mod blob;
pub mod client;
pub mod error;
pub mod export;
pub mod keystore;
pub mod stream;
pub mod subscription;
pub mod tls;
pub mod verify;

pub use address::{AsBeamPath, AsSpaceId, parse_beam, parse_space};
pub use blob::{BlobClientError, BlobRead, BlobReader};
pub use client::Client;
pub use error::{NodeCode, SdkError};
pub use export::{FileCheck, FileError, LogExport};
pub use northstar_protocol as protocol;
pub use northstar_protocol::{Did, Keypair};
pub use stream::{Publisher, StreamError, Watch, WatchedFrame};
pub use subscription::{EventStream, EventWithBeamStream};
pub use tls::{Trust, TrustError};
pub use verify::EventWithBeam;
