//! [`Publisher`]: a stream's owner sending its frames to the stream's sequencer
//! (`spec/protocol.md` §10.2).
//!
//! After `stream.publish` the connection carries frames one way; the node answers only the
//! frames it refuses, with `stream.refused` notifications. A publisher reads them whenever it
//! publishes and returns the first one as the error of that call, without sending its payload;
//! the refused frame is a gap for watchers. The next call first asks the node again
//! (`stream.publish` is harmless to repeat) and goes on above the newest number the node took,
//! in case another publisher of the same stream moved it on (the node takes only numbers above
//! its newest, `frame_order`). Frames are paced by a [`Pacer`] so that the node's rate limits
//! are never what refuses them.

use northstar_protocol::Keypair;
use northstar_protocol::address::SpaceId;
use northstar_protocol::api::{StreamLimits, StreamNotice, StreamPublishing};
use northstar_protocol::frame::Frame;
use northstar_protocol::method::{STREAM_PUBLISH, STREAM_REFUSED};
use serde_json::json;
use tokio::time::Instant;
use tracing::debug;

use super::StreamError;
use super::pace::Pacer;
use super::socket::{Incoming, Socket};
use crate::address::AsSpaceId;
use crate::client::now_ms;
use crate::error::{NodeCode, SdkError};
use crate::tls::Trust;

/// A stream's owner publishing frames on one connection to the stream's sequencer.
///
/// Made by [`Publisher::open`] or [`Client::publisher`](crate::Client::publisher). End it with
/// [`Publisher::finish`]; dropping it closes the connection without asking the node whether
/// the last frames were taken.
#[derive(Debug)]
pub struct Publisher {
    socket: Socket,
    key: Keypair,
    space: SpaceId,
    next: u64,
    limits: StreamLimits,
    pacer: Pacer,
    rate: Option<u64>,
    /// A refusal came since the node last said which number it expects.
    stale: bool,
    sent: u64,
    refused: u64,
    /// The last timestamp put on a frame.
    stamped: u64,
}

/// What [`Publisher::finish`] learnt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finished {
    /// The number the node expects next: one more than the last frame it took.
    pub next: u64,
    /// Frames sent on this connection.
    pub sent: u64,
    /// Frames the node refused, as far as its notifications have told.
    pub refused: u64,
}

impl Publisher {
    /// Open a connection to the stream's sequencer at `url`, authenticate as `owner`, and call
    /// `stream.publish` (user, owner; at the sequencer, else `not_sequencer`).
    pub async fn open(url: &str, owner: Keypair, space: &impl AsSpaceId) -> Result<Self, SdkError> {
        Self::open_trusting(url, owner, space, &Trust::default()).await
    }

    /// [`Publisher::open`], accepting on `wss://` the certificates `trust` accepts.
    pub async fn open_trusting(
        url: &str,
        owner: Keypair,
        space: &impl AsSpaceId,
        trust: &Trust,
    ) -> Result<Self, SdkError> {
        let space = space.space_id().clone();
        // The protocol's own checks of who may sign which space's frames (a stream, owned by
        // this key), before anything is dialled: signing an empty frame runs them all.
        Frame::sign(&owner, space.clone(), 0, 0, false, Vec::new()).map_err(StreamError::Frame)?;
        let mut socket = Socket::open(url, trust).await?;
        socket.drop_frames();
        socket.handshake(Some(&owner)).await?;
        let publishing: StreamPublishing =
            socket.call(STREAM_PUBLISH, json!([space.as_str()])).await?;
        debug!(space = %space, next = publishing.next, "publishing");
        Ok(Self {
            pacer: Pacer::new(&publishing.limits, None, Instant::now()),
            socket,
            key: owner,
            space,
            next: publishing.next,
            limits: publishing.limits,
            rate: None,
            stale: false,
            sent: 0,
            refused: 0,
            stamped: 0,
        })
    }

    /// The stream.
    pub fn space(&self) -> &SpaceId {
        &self.space
    }

    /// The number the next frame will carry.
    pub fn next(&self) -> u64 {
        self.next
    }

    /// The node's limits on this stream's frames.
    pub fn limits(&self) -> &StreamLimits {
        &self.limits
    }

    /// Frames the node refused so far, as far as its notifications have told.
    pub fn refused(&self) -> u64 {
        self.refused
    }

    /// Keep to at most `bytes_per_second` payload bytes per second on average, below the
    /// node's own limit (which is always kept); `None` for the node's limit only.
    pub fn set_rate(&mut self, bytes_per_second: Option<u64>) {
        self.rate = bytes_per_second;
        self.pacer = Pacer::new(&self.limits, self.rate, Instant::now());
    }

    /// Wait until the node's frame budget has room for another frame. A caller that reads its
    /// payloads from a live source can wait here first, so each payload holds all that came
    /// meanwhile; [`Publisher::publish`] waits for the rest.
    pub async fn ready(&self) {
        self.pacer.wait_frame().await;
    }

    /// Sign `payload` as the stream's next frame (a key frame if `key`), wait until the node's
    /// budgets have room for it, and send it. Returns its number.
    ///
    /// Fails without sending anything when the payload is larger than the node takes
    /// ([`StreamError::FrameTooLarge`]), or when the node refused an earlier frame since the
    /// last call ([`StreamError::Refused`], the first such refusal); call again to go on.
    pub async fn publish(
        &mut self,
        payload: impl Into<Vec<u8>>,
        key: bool,
    ) -> Result<u64, SdkError> {
        let payload = payload.into();
        let len = payload.len();
        let max = self.limits.max_frame_bytes;
        if u32::try_from(len).map_or(true, |len| len > max) {
            return Err(StreamError::FrameTooLarge { len, max }.into());
        }
        let budget = self.limits.max_bytes_per_second;
        if u32::try_from(len).map_or(true, |len| len > budget) {
            return Err(StreamError::OverBudget { len, max: budget }.into());
        }
        if let Some(refusal) = self.read_refusals()? {
            self.stale = true;
            return Err(refusal.into());
        }
        if self.stale {
            self.catch_up().await?;
        }
        self.pacer.wait(len).await;
        let number = self.next;
        // Timestamps never go back within a run (§10.4), whatever the clock does.
        self.stamped = self.stamped.max(now_ms()?);
        let frame = Frame::sign(
            &self.key,
            self.space.clone(),
            number,
            self.stamped,
            key,
            payload,
        )
        .map_err(StreamError::Frame)?;
        let bytes = frame.encode().map_err(StreamError::Frame)?;
        self.socket.send_frame(bytes).await?;
        self.next += 1;
        self.sent += 1;
        Ok(number)
    }

    /// Ask the node which number it expects, after it sent everything it had to say about the
    /// frames before, and close the connection.
    ///
    /// Fails with the first refusal not yet returned by [`Publisher::publish`], if any; to
    /// learn how many frames were refused in all even then, call [`Publisher::settle`], read
    /// [`Publisher::refused`] and [`Publisher::close`] instead.
    pub async fn finish(mut self) -> Result<Finished, SdkError> {
        let settled = self.settle().await;
        self.close().await;
        settled
    }

    /// Ask the node which number it expects, after it sent everything it had to say about the
    /// frames before, and count every refusal that came before its answer in
    /// [`Publisher::refused`]. The connection stays open.
    ///
    /// Fails with the first refusal not yet returned by [`Publisher::publish`], if any.
    pub async fn settle(&mut self) -> Result<Finished, SdkError> {
        let publishing: StreamPublishing = self
            .socket
            .call(STREAM_PUBLISH, json!([self.space.as_str()]))
            .await?;
        let unreported = match self.read_refusals() {
            Ok(first) => first,
            Err(SdkError::Stream(refusal @ StreamError::Refused { .. })) => Some(refusal),
            // The node has answered: a connection that ends now lost nothing.
            Err(SdkError::Stream(StreamError::Closed { .. } | StreamError::Transport { .. })) => {
                None
            }
            // A `stream.refused` this SDK cannot read: a frame was lost, and the caller must hear.
            Err(err) => return Err(err),
        };
        // The node has said where to go on, as a catch-up would learn.
        self.next = self.next.max(publishing.next);
        self.stale = false;
        if let Some(refusal) = unreported {
            return Err(refusal.into());
        }
        Ok(Finished {
            next: publishing.next,
            sent: self.sent,
            refused: self.refused,
        })
    }

    /// Close the connection gracefully, without asking the node anything.
    pub async fn close(mut self) {
        self.socket.close().await;
    }

    /// Ask the node again which number it expects next, and take the refusals that came before
    /// its answer as part of the one already returned.
    async fn catch_up(&mut self) -> Result<(), SdkError> {
        let publishing: StreamPublishing = self
            .socket
            .call(STREAM_PUBLISH, json!([self.space.as_str()]))
            .await?;
        let more = self.read_refusals()?;
        debug!(
            from = self.next,
            to = publishing.next,
            also_refused = more.is_some(),
            "caught up after a refusal"
        );
        // Never back: frames sent before the call may be taken after the node answered.
        self.next = self.next.max(publishing.next);
        if publishing.limits != self.limits {
            self.limits = publishing.limits;
            self.pacer = Pacer::new(&self.limits, self.rate, Instant::now());
        }
        self.stale = false;
        Ok(())
    }

    /// Read what the node sent without waiting: count its refusals and return the first.
    fn read_refusals(&mut self) -> Result<Option<StreamError>, SdkError> {
        let mut first = None;
        while let Some(incoming) = self.socket.try_incoming() {
            match incoming {
                Incoming::Notice { method, params } if method == STREAM_REFUSED => {
                    let notice: StreamNotice = match serde_json::from_value(params) {
                        Ok(notice) => notice,
                        // Unreadable, but a refusal all the same: some frame was lost.
                        Err(e) => {
                            self.refused += 1;
                            first.get_or_insert(StreamError::BadAnswer {
                                method: STREAM_REFUSED,
                                reason: e.to_string(),
                            });
                            continue;
                        }
                    };
                    // Without a space the node could not read the frame; it came from here.
                    if notice
                        .space
                        .as_ref()
                        .is_some_and(|space| *space != self.space)
                    {
                        continue;
                    }
                    self.refused += 1;
                    debug!(number = ?notice.number, code = notice.code, "frame refused");
                    first.get_or_insert(StreamError::Refused {
                        space: self.space.clone(),
                        number: notice.number,
                        code: NodeCode::from_code(notice.code),
                        message: notice.message,
                    });
                }
                Incoming::Closed(err) => return Err(first.unwrap_or(err).into()),
                // A publisher's connection gets no notification but `stream.refused`.
                Incoming::Lost(notices) => {
                    self.refused += notices;
                    first.get_or_insert(StreamError::Lost {
                        url: self.socket.url().to_owned(),
                        notices,
                    });
                }
                // A publisher watches nothing, so `stream.closed` (which ends a watch, and only
                // a watch: `spec/` §10.3.1) and frames are not for it.
                Incoming::Notice { .. } | Incoming::Frame(_) => {}
            }
        }
        Ok(first)
    }
}
