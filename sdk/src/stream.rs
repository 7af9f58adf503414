//! Live streams (`spec/protocol.md` §10): publishing a `stream` space's frames as its owner, and
//! watching them as anyone.
//!
//! Frames travel as binary WebSocket messages, which the [`Client`](crate::Client)'s jsonrpsee
//! connection can neither send nor receive, so a [`Publisher`] and a [`Watch`] each open a
//! WebSocket of their own to the node and speak JSON-RPC on it as text. They open with the
//! `Client`'s own handshake: `node.info` must name this SDK's protocol version, and a key
//! authenticates under the same challenge checks (`spec/` §5.2). Over `wss://` they trust what
//! the `Client` trusts ([`Trust`](crate::Trust)).
//!
//! # Layout
//! - [`publish`]: [`Publisher`]: `stream.publish`, then one signed frame per call, paced under
//!   the node's limits; the node's refusals come back as errors.
//! - [`watch`](mod@watch): [`Watch`] (and [`watch()`] to open one anonymously): `stream.watch`,
//!   then the frames as a `Stream` of [`WatchedFrame`]s, each checked under the owner's key
//!   before the app sees it, in order, with gaps counted.
//! - [`pace`]: [`Pacer`]: token buckets that keep a publisher under the node's frame and byte
//!   budgets and an optional rate of its own; pure logic, the clock passed in.
//! - `socket`: the connection both use: JSON-RPC calls as text, frames as binary.
//!
//! Uses [`crate::auth`] for the handshake and [`crate::error`] for
//! [`SdkError`](crate::SdkError), which wraps [`StreamError`].

pub mod pace;
pub mod publish;
mod socket;
pub mod watch;

use northstar_protocol::address::SpaceId;
use northstar_protocol::frame::FrameError;
use tokio_tungstenite::tungstenite;

use crate::error::NodeCode;
pub use pace::Pacer;
pub use publish::{Finished, Publisher};
pub use watch::{Watch, WatchedFrame, watch};

/// What went wrong on a stream connection, or with a frame.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// The WebSocket could not be opened.
    #[error("cannot open a stream connection to {url}")]
    Connect {
        /// The URL dialled.
        url: String,
        /// The WebSocket library's error.
        #[source]
        source: tungstenite::Error,
    },
    /// The connection failed while in use.
    #[error("the stream connection to {url} failed")]
    Transport {
        /// The URL dialled.
        url: String,
        /// The WebSocket library's error.
        #[source]
        source: tungstenite::Error,
    },
    /// The node closed the connection, or it ended.
    #[error("the node at {url} closed the stream connection")]
    Closed {
        /// The URL dialled.
        url: String,
    },
    /// Notifications the node sent while a call waited for its answer found no room and are
    /// lost: a watch ends with this (watch again), a publisher counts them as refusals.
    #[error("{notices} notification(s) from {url} were lost: too much came while a call waited")]
    Lost {
        /// The URL dialled.
        url: String,
        /// How many.
        notices: u64,
    },
    /// A call got no answer in time.
    #[error("{method}: no answer from the node within {secs} s")]
    Timeout {
        /// The method's wire name.
        method: &'static str,
        /// The time waited.
        secs: u64,
    },
    /// The node's answer to a call is not the JSON-RPC response expected.
    #[error("{method}: the node's answer is not valid: {reason}")]
    BadAnswer {
        /// The method's wire name.
        method: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The node refused a frame (`stream.refused`): it is not delivered, and watchers see a
    /// gap where it was.
    #[error("the node refused frame {} of {space} with {code}: {message}", number_text(*.number))]
    Refused {
        /// The stream.
        space: SpaceId,
        /// The frame's number, when the node could read it.
        number: Option<u64>,
        /// Why, as a code to act on.
        code: NodeCode,
        /// The node's words, for people.
        message: String,
    },
    /// The node ended a watch (`stream.closed`), e.g. with `slow_watcher`; watch again with
    /// `since` set to the last frame taken.
    #[error("the node ended the watch of {space} with {code}: {message}")]
    Ended {
        /// The stream.
        space: SpaceId,
        /// Why, as a code to act on.
        code: NodeCode,
        /// The node's words, for people.
        message: String,
    },
    /// A frame received does not decode, or its signature does not verify under the stream's
    /// owner: it is reported, never delivered.
    #[error("a frame received on the watch of {space} is not valid")]
    BadFrame {
        /// The stream watched.
        space: SpaceId,
        /// What is wrong with it.
        #[source]
        source: FrameError,
    },
    /// A frame of another stream arrived on a watch.
    #[error("a frame of {got} arrived on the watch of {space}")]
    WrongSpace {
        /// The stream watched.
        space: SpaceId,
        /// The stream the frame names.
        got: SpaceId,
    },
    /// A payload is larger than the node takes in one frame; nothing was sent.
    #[error("a payload of {len} bytes is over the node's limit of {max} bytes per frame")]
    FrameTooLarge {
        /// The payload's length.
        len: usize,
        /// The node's `max_frame_bytes`.
        max: u32,
    },
    /// A payload is larger than the node's whole byte budget, so no wait would let it through.
    #[error("a payload of {len} bytes is over the node's budget of {max} bytes per second")]
    OverBudget {
        /// The payload's length.
        len: usize,
        /// The node's `max_bytes_per_second`.
        max: u32,
    },
    /// A frame cannot be made, e.g. the key is not the stream owner's.
    #[error("cannot make a frame: {0}")]
    Frame(#[from] FrameError),
}

impl StreamError {
    /// The node's code, when the node refused a frame or ended a watch.
    pub fn node_code(&self) -> Option<NodeCode> {
        match self {
            StreamError::Refused { code, .. } | StreamError::Ended { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// Whether opening the stream connection again may help: it failed or was closed, or the
    /// node cut a slow watcher off.
    pub fn is_transient(&self) -> bool {
        match self {
            StreamError::Connect { .. }
            | StreamError::Transport { .. }
            | StreamError::Closed { .. }
            | StreamError::Lost { .. }
            | StreamError::Timeout { .. } => true,
            StreamError::Ended { code, .. } => matches!(
                code.app(),
                Some(
                    northstar_protocol::api::ErrorCode::SlowWatcher
                        | northstar_protocol::api::ErrorCode::ShuttingDown
                )
            ),
            _ => false,
        }
    }
}

fn number_text(number: Option<u64>) -> String {
    number.map_or_else(|| "(unreadable)".to_owned(), |n| n.to_string())
}

impl From<northstar_protocol::watch::WatchError> for StreamError {
    fn from(error: northstar_protocol::watch::WatchError) -> Self {
        use northstar_protocol::watch::WatchError;
        match error {
            WatchError::BadFrame { space, source } => StreamError::BadFrame { space, source },
            WatchError::WrongSpace { space, got } => StreamError::WrongSpace { space, got },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use northstar_protocol::Keypair;
    use northstar_protocol::address::SpaceType;
    use northstar_protocol::api::ErrorCode;

    fn space() -> SpaceId {
        SpaceId::new(
            SpaceType::Stream,
            Keypair::from_seed(&[1; 32]).did(),
            "radio",
        )
        .unwrap()
    }

    #[test]
    fn a_refusal_names_frame_code_and_message_on_one_line() {
        let err = StreamError::Refused {
            space: space(),
            number: Some(42),
            code: NodeCode::App(ErrorCode::FrameRate),
            message: "over 240 frames/s".into(),
        };
        let text = err.to_string();
        assert!(
            text.starts_with("the node refused frame 42 of stream/"),
            "{text}"
        );
        assert!(
            text.ends_with("with frame_rate (1705): over 240 frames/s"),
            "{text}"
        );
        assert_eq!(err.node_code(), Some(NodeCode::App(ErrorCode::FrameRate)));
        assert!(!err.is_transient());
    }

    #[test]
    fn a_slow_watcher_cut_off_is_transient_and_says_so() {
        let err = StreamError::Ended {
            space: space(),
            code: NodeCode::App(ErrorCode::SlowWatcher),
            message: "dropped every frame for 5 s".into(),
        };
        assert!(err.is_transient());
        assert!(err.to_string().contains("slow_watcher (1708)"));
        let other = StreamError::Ended {
            space: space(),
            code: NodeCode::App(ErrorCode::NotAStream),
            message: String::new(),
        };
        assert!(!other.is_transient());
    }
}
