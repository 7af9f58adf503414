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
use northstar_protocol::frame::Header;
use northstar_protocol::method::{STREAM_CLOSED, STREAM_WATCH};
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

/// One frame, checked under the stream's owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchedFrame {
    /// Its number in the stream.
    pub number: u64,
    /// The owner's clock when it was made, ms since the Unix epoch.
    pub timestamp: u64,
    /// Whether a player can start here.
    pub key: bool,
    /// The payload.
    pub payload: Vec<u8>,
    /// Frames missing between the one delivered before and this one: 0 when none are. For the
    /// first frame of a watch it counts from `since` when the watch was given one, else it is 0.
    pub gap: u64,
}

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
        let (space, since) = (&tracker.space, tracker.last);
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
        &self.tracker.space
    }

    /// The number of the last frame delivered, or the `since` the watch began with: what to
    /// pass as `since` to resume.
    pub fn last(&self) -> Option<u64> {
        self.tracker.last
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
                    .is_none_or(|s| *s == self.tracker.space) =>
            {
                Some(StreamError::Ended {
                    space: self.tracker.space.clone(),
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
                Incoming::Frame(bytes) => match this.tracker.accept(&bytes) {
                    Ok(Some(frame)) => Ok(frame),
                    Ok(None) => continue,
                    Err(err) => Err(err),
                },
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

/// The checks and the order of a watch, without I/O.
#[derive(Debug, Clone)]
pub(crate) struct Tracker {
    space: SpaceId,
    last: Option<u64>,
    /// The last delivered frame's timestamp (unknown after a `since`).
    last_at: Option<u64>,
}

impl Tracker {
    pub(crate) fn new(space: SpaceId, since: Option<u64>) -> Self {
        Self {
            space,
            last: since,
            last_at: None,
        }
    }

    /// A frame's bytes: the frame to deliver, `None` to drop it silently (not above the last
    /// delivered), or why it is not valid. The signature is checked only for frames that would
    /// be delivered.
    pub(crate) fn accept(&mut self, bytes: &[u8]) -> Result<Option<WatchedFrame>, StreamError> {
        let bad = |source| StreamError::BadFrame {
            space: self.space.clone(),
            source,
        };
        let header = Header::read(bytes).map_err(bad)?;
        if header.space != self.space {
            return Err(StreamError::WrongSpace {
                space: self.space.clone(),
                got: header.space,
            });
        }
        // Within a run numbers go up and timestamps never down; a new run (the owner's node
        // restarted) is stamped later than anything before it (`spec/protocol.md` §10.4).
        let fresh = match (self.last, self.last_at) {
            (None, _) => true,
            (Some(last), None) => header.number > last,
            (Some(last), Some(at)) => {
                header.timestamp > at || (header.number > last && header.timestamp == at)
            }
        };
        if !fresh {
            return Ok(None);
        }
        header.verify(bytes).map_err(bad)?;
        let gap = match self.last {
            Some(last) if header.number > last => header.number - last - 1,
            _ => 0,
        };
        self.last = Some(header.number);
        self.last_at = Some(header.timestamp);
        Ok(Some(WatchedFrame {
            number: header.number,
            timestamp: header.timestamp,
            key: header.key,
            payload: bytes[header.payload].to_vec(),
            gap,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use northstar_protocol::address::SpaceType;
    use northstar_protocol::frame::{Frame, FrameError};

    fn owner() -> Keypair {
        Keypair::from_seed(&[1; 32])
    }

    fn stream(owner: &Keypair, name: &str) -> SpaceId {
        SpaceId::new(SpaceType::Stream, owner.did(), name).unwrap()
    }

    fn frame(number: u64, payload: &[u8]) -> Vec<u8> {
        Frame::sign(
            &owner(),
            stream(&owner(), "radio"),
            number,
            1_767_225_600_000 + number,
            number % 2 == 1,
            payload.to_vec(),
        )
        .unwrap()
        .encode()
        .unwrap()
    }

    fn numbers(tracker: &mut Tracker, frames: &[u64]) -> Vec<(u64, u64)> {
        frames
            .iter()
            .filter_map(|&n| tracker.accept(&frame(n, b"x")).unwrap())
            .map(|f| (f.number, f.gap))
            .collect()
    }

    #[test]
    fn delivers_in_order_and_counts_gaps() {
        let mut tracker = Tracker::new(stream(&owner(), "radio"), None);
        let got = tracker.accept(&frame(5, b"hello")).unwrap().unwrap();
        assert_eq!(
            got,
            WatchedFrame {
                number: 5,
                timestamp: 1_767_225_600_005,
                key: true,
                payload: b"hello".to_vec(),
                gap: 0,
            }
        );
        assert_eq!(
            numbers(&mut tracker, &[6, 7, 10, 11]),
            [(6, 0), (7, 0), (10, 2), (11, 0)]
        );
        assert_eq!(tracker.last, Some(11));
    }

    #[test]
    fn drops_repeats_and_late_frames_silently() {
        let mut tracker = Tracker::new(stream(&owner(), "radio"), None);
        assert_eq!(
            numbers(&mut tracker, &[3, 3, 5, 4, 2, 5, 6]),
            [(3, 0), (5, 1), (6, 0)]
        );
    }

    #[test]
    fn a_resumed_watch_counts_its_first_gap_from_since() {
        let mut tracker = Tracker::new(stream(&owner(), "radio"), Some(10));
        assert_eq!(numbers(&mut tracker, &[9, 10, 14, 15]), [(14, 3), (15, 0)]);
    }

    #[test]
    fn a_new_run_stamped_later_is_taken_and_an_earlier_runs_frames_are_not() {
        let mut tracker = Tracker::new(stream(&owner(), "radio"), None);
        assert_eq!(numbers(&mut tracker, &[7, 8, 9]), [(7, 0), (8, 0), (9, 0)]);
        // The owner's node restarted: frame 1 again, stamped a minute later.
        let restarted = |number: u64| {
            Frame::sign(
                &owner(),
                stream(&owner(), "radio"),
                number,
                1_767_225_660_000 + number,
                true,
                b"again".to_vec(),
            )
            .unwrap()
            .encode()
            .unwrap()
        };
        let first = tracker.accept(&restarted(1)).unwrap().unwrap();
        assert_eq!((first.number, first.gap), (1, 0));
        assert_eq!(tracker.accept(&restarted(3)).unwrap().unwrap().gap, 1);
        // Frame 10 of the earlier run, late: numbered higher, stamped earlier.
        assert!(tracker.accept(&frame(10, b"old")).unwrap().is_none());
        assert_eq!(tracker.last, Some(3));
    }

    #[test]
    fn a_forged_frame_is_an_error_and_moves_nothing() {
        let mut tracker = Tracker::new(stream(&owner(), "radio"), None);
        numbers(&mut tracker, &[1]);
        let mut forged = frame(2, b"evil");
        let last = forged.len() - 1;
        forged[last] ^= 1;
        let err = tracker.accept(&forged).unwrap_err();
        assert!(
            matches!(
                err,
                StreamError::BadFrame {
                    source: FrameError::BadSignature,
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!(tracker.last, Some(1));
        // The genuine frame 2 is still taken, with no gap.
        assert_eq!(numbers(&mut tracker, &[2]), [(2, 0)]);

        // Signed by someone else, claiming the owner's stream: the key is the owner's only.
        let mallory = Keypair::from_seed(&[6; 32]);
        let mut fake = Frame::sign(
            &mallory,
            stream(&mallory, "radio"),
            3,
            1_767_225_600_003,
            true,
            b"x".to_vec(),
        )
        .unwrap()
        .encode()
        .unwrap();
        let (ours, theirs) = (stream(&owner(), "radio"), stream(&mallory, "radio"));
        assert_eq!(ours.as_str().len(), theirs.as_str().len());
        let at = fake
            .windows(theirs.as_str().len())
            .position(|w| w == theirs.as_str().as_bytes())
            .unwrap();
        fake[at..at + ours.as_str().len()].copy_from_slice(ours.as_str().as_bytes());
        assert!(matches!(
            tracker.accept(&fake),
            Err(StreamError::BadFrame {
                source: FrameError::BadSignature,
                ..
            })
        ));
    }

    #[test]
    fn garbage_and_other_streams_are_errors() {
        let mut tracker = Tracker::new(stream(&owner(), "radio"), None);
        assert!(matches!(
            tracker.accept(b"\x01\x00short"),
            Err(StreamError::BadFrame {
                source: FrameError::Truncated { .. },
                ..
            })
        ));
        let mut other = Tracker::new(stream(&owner(), "tv"), None);
        assert!(matches!(
            other.accept(&frame(1, b"x")),
            Err(StreamError::WrongSpace { .. })
        ));
        assert_eq!((tracker.last, other.last), (None, None));
    }
}
