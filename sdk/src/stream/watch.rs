//! [`Watch`]: a stream's frames as a node relays them (`spec/protocol.md` §10.3), checked and
//! in order.
//!
//! Every binary message is read as a frame and must name the stream watched; a frame whose
//! number is not above the last one delivered is dropped unread (it arrives late from a relay's
//! slower parent, or again); a new one must verify under the stream's owner, whose key the
//! stream's id carries, before its payload is delivered. A frame that fails a check is an
//! `Err` item and never data; the watch goes on. `stream.closed` (e.g. `slow_watcher`) and the
//! end of the connection are a last `Err` item, then the stream ends: [`Watch::resume`] watches
//! again from there.

use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::Stream;
use northstar_protocol::Keypair;
use northstar_protocol::address::SpaceId;
use northstar_protocol::api::{StreamNotice, StreamWatching};
use northstar_protocol::method::{STREAM_CLOSED, STREAM_WATCH};
use northstar_protocol::watch::Tracker;
/// One frame of a watch, checked: the protocol's, shared with the browser SDK.
pub use northstar_protocol::watch::WatchedFrame;
use serde_json::json;
use tracing::debug;

use super::StreamError;
use super::socket::{Incoming, Socket};
use crate::address::AsSpaceId;
use crate::error::{NodeCode, SdkError};
use crate::tls::Trust;

/// Messages a watch reads in one poll without finding a frame to deliver before it lets other
/// tasks run (a relay resending many old frames cannot hog a runtime thread).
const POLL_BUDGET: usize = 64;

/// Watch `space` at the node at `url` (`ws://`), anonymously (`stream.watch` is public),
/// from the frames after `since`, or else from the node's latest key frame.
///
/// A node drops a connection that has not authenticated within its `auth_timeout_secs`
/// (`spec/` §6.1); [`Watch::open`] with a key, or [`Client::watch`](crate::Client::watch),
/// authenticates first.
pub async fn watch(
    url: &str,
    space: &impl AsSpaceId,
    since: Option<u64>,
) -> Result<Watch, SdkError> {
    Watch::open(url, None, space, since).await
}

/// The frames of one stream, as a `Stream` of [`WatchedFrame`]s; see the [module docs](self).
#[derive(Debug)]
pub struct Watch {
    socket: Socket,
    tracker: Tracker,
    watching: StreamWatching,
    ended: bool,
}

impl Watch {
    /// Open a connection to `url`, authenticate as `key` if one is given, and call
    /// `stream.watch` (public) for `space`, with `since` if given.
    pub async fn open(
        url: &str,
        key: Option<&Keypair>,
        space: &impl AsSpaceId,
        since: Option<u64>,
    ) -> Result<Self, SdkError> {
        Self::open_trusting(url, key, space, since, &Trust::default()).await
    }

    /// [`Watch::open`], accepting on `wss://` the certificates `trust` accepts.
    pub async fn open_trusting(
        url: &str,
        key: Option<&Keypair>,
        space: &impl AsSpaceId,
        since: Option<u64>,
        trust: &Trust,
    ) -> Result<Self, SdkError> {
        let space = space.space_id().clone();
        Self::open_with(url, key, Tracker::new(space, since), trust).await
    }

    /// Watch the same stream again after this watch ended, on a new connection to `url`
    /// (authenticated as `key` if given), from the frames after [`Watch::last`].
    ///
    /// Unlike [`Watch::open`] with `since`, the new watch keeps this one's order: it also
    /// knows the last frame's timestamp, so when the owner's node restarted meanwhile, its new
    /// run (numbered from 1 again, stamped later: `spec/protocol.md` §10.4) is delivered, not
    /// dropped as old.
    pub async fn resume(&self, url: &str, key: Option<&Keypair>) -> Result<Self, SdkError> {
        self.resume_trusting(url, key, &Trust::default()).await
    }

    /// [`Watch::resume`], accepting on `wss://` the certificates `trust` accepts.
    pub async fn resume_trusting(
        &self,
        url: &str,
        key: Option<&Keypair>,
        trust: &Trust,
    ) -> Result<Self, SdkError> {
        Self::open_with(url, key, self.tracker.clone(), trust).await
    }

    async fn open_with(
        url: &str,
        key: Option<&Keypair>,
        tracker: Tracker,
        trust: &Trust,
    ) -> Result<Self, SdkError> {
        let mut socket = Socket::open(url, trust).await?;
        socket.handshake(key).await?;
        let (space, since) = (tracker.space(), tracker.last());
        let params = match since {
            Some(since) => json!([space.as_str(), since]),
            None => json!([space.as_str()]),
        };
        let watching: StreamWatching = socket.call(STREAM_WATCH, params).await?;
        debug!(space = %space, ?since, start = ?watching.start, newest = ?watching.newest, "watching");
        Ok(Self {
            socket,
            tracker,
            watching,
            ended: false,
        })
    }

    /// The stream.
    pub fn space(&self) -> &SpaceId {
        self.tracker.space()
    }

    /// The number of the last frame delivered, or the `since` the watch began with: what to
    /// pass as `since` to resume.
    pub fn last(&self) -> Option<u64> {
        self.tracker.last()
    }

    /// The node's answer to `stream.watch`: where its frames start, and its newest.
    pub fn watching(&self) -> &StreamWatching {
        &self.watching
    }

    /// The URL of the node watched.
    pub fn url(&self) -> &str {
        self.socket.url()
    }

    /// Stop watching: close the connection gracefully.
    pub async fn close(mut self) {
        self.socket.close().await;
    }

    /// What a notification means for this watch: the error that ends it, if it does.
    fn notice(&self, method: &str, params: serde_json::Value) -> Option<StreamError> {
        if method != STREAM_CLOSED {
            return None;
        }
        match serde_json::from_value::<StreamNotice>(params) {
            // A connection watches one stream; a notice naming no space is about it.
            Ok(notice)
                if notice
                    .space
                    .as_ref()
                    .is_none_or(|s| s == self.tracker.space()) =>
            {
                Some(StreamError::Ended {
                    space: self.tracker.space().clone(),
                    code: NodeCode::from_code(notice.code),
                    message: notice.message,
                })
            }
            Ok(_) => None,
            Err(e) => Some(StreamError::BadAnswer {
                method: STREAM_CLOSED,
                reason: e.to_string(),
            }),
        }
    }
}

impl Stream for Watch {
    type Item = Result<WatchedFrame, SdkError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.ended {
            return Poll::Ready(None);
        }
        for _ in 0..POLL_BUDGET {
            let incoming = match this.socket.poll_incoming(cx) {
                Poll::Ready(incoming) => incoming,
                Poll::Pending => return Poll::Pending,
            };
            let item = match incoming {
                Incoming::Frame(bytes) => {
                    match this.tracker.accept(&bytes).map_err(StreamError::from) {
                        Ok(Some(frame)) => Ok(frame),
                        Ok(None) => continue,
                        Err(err) => Err(err),
                    }
                }
                Incoming::Notice { method, params } => match this.notice(&method, params) {
                    Some(err) => {
                        this.ended = true;
                        Err(err)
                    }
                    None => continue,
                },
                Incoming::Closed(err) => {
                    this.ended = true;
                    Err(err)
                }
                // One may have been the `stream.closed` that ended the watch: end it here.
                Incoming::Lost(notices) => {
                    this.ended = true;
                    Err(StreamError::Lost {
                        url: this.socket.url().to_owned(),
                        notices,
                    })
                }
            };
            return Poll::Ready(Some(item.map_err(SdkError::from)));
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}
