//! Live streams: the frames of `stream` spaces (`spec/protocol.md` §4.9, §10) on their way
//! through the node.
//!
//! A publishing client's frames are checked and taken by the stream's sequencer; every other
//! member node that has watchers pulls the stream from its two parents in the stream's tree and
//! takes each frame once; every node hands what it takes to its watches, child nodes' watches
//! included. So a frame flows down the tree without any node pushing to another: a child
//! watches its parents as any client would (§10.6).
//!
//! # Layout
//! - this file: [`Streams`], the service the connections and `stream.info` call; where each
//!   stream's state is found or made from the log, and when it is forgotten.
//! - [`window`]: a stream's recent frames, as pure logic: taking each frame once from two
//!   parents, gaps, and where a late joiner starts.
//! - [`stream`]: one stream's state: window, watches with bounded queues, budgets, tree.
//! - [`upstream`]: the links a member node keeps to its parents while it has watchers.
//!
//! Uses [`crate::store`] and [`crate::spaces`] (the log's state and the trees), and nothing
//! above them.

pub mod stream;
pub mod upstream;
pub mod window;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use northstar_protocol::Did;
use northstar_protocol::address::{SpaceId, SpaceType};
use northstar_protocol::api::StreamInfo;
use northstar_protocol::frame::{FrameError, Header};
use northstar_protocol::wire::Home;
use tokio_tungstenite::tungstenite::Bytes;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use stream::{Stream, WatchFeed, WatchItem};

use crate::clock::now_ms;
use crate::config::Streams as Limits;
use crate::spaces::load_state;
use crate::spaces::rules::SpaceState;
use crate::store::{Store, StoreError};

/// How often unused streams are forgotten.
const SWEEP_EVERY: Duration = Duration::from_secs(5);

/// Why a stream call or a frame was refused.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// The node holds no such space.
    #[error("no space {0} on this node")]
    SpaceNotFound(SpaceId),
    /// The space is not a stream.
    #[error("{0} is not a stream")]
    NotAStream(SpaceId),
    /// Only the owner publishes.
    #[error("only {owner}, the stream's owner, may publish it")]
    NotOwner {
        /// The owner.
        owner: Did,
    },
    /// Frames are published at the sequencer.
    #[error("publish {space} at its sequencer, {authority}")]
    NotSequencer {
        /// The stream.
        space: SpaceId,
        /// The sequencer's authority.
        authority: String,
    },
    /// The bytes are not a frame.
    #[error("not a stream frame: {0} ({code})", code = .0.code())]
    Malformed(#[from] FrameError),
    /// The connection did not open publishing for the frame's stream.
    #[error("this connection has not called stream.publish for {0}")]
    NotPublishing(SpaceId),
    /// The payload is over the limit.
    #[error("a frame payload of {len} bytes is over this node's limit of {max}")]
    FrameTooLarge {
        /// The payload's length.
        len: usize,
        /// The limit.
        max: u32,
    },
    /// The owner's signature does not verify.
    #[error("the frame's signature does not verify under the stream's owner")]
    BadSignature,
    /// Not above the newest number, or stamped before the newest frame.
    #[error(
        "frame {got} is not above the stream's newest, or is stamped before {since} ms; the \
         next is {expected}, stamped no earlier"
    )]
    FrameOrder {
        /// The next number.
        expected: u64,
        /// The frame's.
        got: u64,
        /// The newest frame's timestamp.
        since: u64,
    },
    /// Over the frame budget.
    #[error("the stream is over its limit of {limit} frames per second")]
    FrameRate {
        /// The limit.
        limit: u32,
    },
    /// Over the byte budget.
    #[error("the stream is over its limit of {limit} payload bytes per second")]
    ByteRate {
        /// The limit.
        limit: u32,
    },
    /// An upstream sent a frame of another stream.
    #[error("a frame of {0} on a link watching another stream")]
    Foreign(SpaceId),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A frame a publisher sent that the node did not take, and why.
#[derive(Debug)]
pub struct Refused {
    /// Its stream, if it could be read.
    pub space: Option<SpaceId>,
    /// Its number, if it could be read.
    pub number: Option<u64>,
    /// Why.
    pub error: StreamError,
}

/// The streams of this node.
#[derive(Debug)]
pub struct Streams {
    own: Did,
    scheme: &'static str,
    limits: Limits,
    sync_every: Duration,
    store: Store,
    streams: Mutex<HashMap<SpaceId, Arc<Stream>>>,
    tasks: TaskTracker,
    stop: CancellationToken,
}

impl Streams {
    /// The streams of the node `own`, whose public origin is `origin`; upstream links are
    /// tracked by `tasks` and end with `stop`.
    pub fn new(
        own: Did,
        origin: &str,
        limits: Limits,
        sync_every: Duration,
        store: Store,
        tasks: TaskTracker,
        stop: CancellationToken,
    ) -> Arc<Self> {
        let streams = Arc::new(Self {
            own,
            scheme: crate::config::Config::dial_scheme(origin),
            limits,
            sync_every,
            store,
            streams: Mutex::new(HashMap::new()),
            tasks: tasks.clone(),
            stop: stop.clone(),
        });
        let weak = Arc::downgrade(&streams);
        tasks.spawn(async move {
            loop {
                tokio::select! {
                    () = stop.cancelled() => break,
                    () = tokio::time::sleep(SWEEP_EVERY) => {}
                }
                let Some(streams) = weak.upgrade() else { break };
                streams.sweep(now_ms());
            }
        });
        streams
    }

    /// The per-stream limits.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<SpaceId, Arc<Stream>>> {
        self.streams.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The stream `space`, made from its log if the node holds it and it is not in memory.
    pub async fn open(&self, space: &SpaceId) -> Result<Arc<Stream>, StreamError> {
        Ok(self.open_with(space, |_| ()).await?.0)
    }

    /// [`Streams::open`], then `hold` called on the stream while the map's lock is held, so
    /// that what `hold` registers (a watch, a publisher) is on the stream the map keeps: the
    /// sweep, which takes the same lock, cannot forget the stream in between.
    async fn open_with<T>(
        &self,
        space: &SpaceId,
        hold: impl FnOnce(&Arc<Stream>) -> T,
    ) -> Result<(Arc<Stream>, T), StreamError> {
        // Only streams are in the map.
        {
            let map = self.map();
            if let Some(stream) = map.get(space) {
                let held = hold(stream);
                return Ok((stream.clone(), held));
            }
        }
        // space_not_found before not_a_stream (§10.2, §10.3, §10.9).
        let state = self.state(space).await?;
        if space.space_type() != SpaceType::Stream {
            return Err(StreamError::NotAStream(space.clone()));
        }
        let here = state.sequencer == self.own;
        let made = Arc::new(Stream::new(
            space.clone(),
            here,
            Home::new(state.sequencer.clone(), state.authority.clone()),
            Arc::new(state.tree_nodes()),
            &self.limits,
            now_ms(),
        ));
        let mut map = self.map();
        let stream = map.entry(space.clone()).or_insert(made);
        let held = hold(stream);
        Ok((stream.clone(), held))
    }

    async fn state(&self, space: &SpaceId) -> Result<SpaceState, StreamError> {
        load_state(&self.store, space)
            .await?
            .ok_or_else(|| StreamError::SpaceNotFound(space.clone()))
    }

    /// `stream.publish` for `caller`: the stream, once the caller may publish it here.
    pub async fn publisher(
        &self,
        space: &SpaceId,
        caller: &Did,
    ) -> Result<Arc<Stream>, StreamError> {
        let (stream, allowed) = self
            .open_with(space, |stream| {
                if caller != space.owner() {
                    return Err(StreamError::NotOwner {
                        owner: space.owner().clone(),
                    });
                }
                if !stream.here {
                    return Err(StreamError::NotSequencer {
                        space: space.clone(),
                        authority: stream.sequencer.authority.clone(),
                    });
                }
                stream.publishing();
                Ok(())
            })
            .await?;
        allowed?;
        Ok(stream)
    }

    /// Take a frame a client sent on a connection that publishes `publishing`.
    pub fn publish(
        &self,
        bytes: Bytes,
        publishing: &HashMap<SpaceId, Arc<Stream>>,
    ) -> Result<u64, Box<Refused>> {
        let header = Header::read(&bytes).map_err(|e| {
            Box::new(Refused {
                space: None,
                number: None,
                error: e.into(),
            })
        })?;
        let refused = |error| {
            Box::new(Refused {
                space: Some(header.space.clone()),
                number: Some(header.number),
                error,
            })
        };
        let Some(stream) = publishing.get(&header.space) else {
            return Err(refused(StreamError::NotPublishing(header.space.clone())));
        };
        stream
            .publish(&header, bytes, &self.limits, now_ms())
            .map_err(refused)
    }

    /// `stream.watch`: open a watch, and the upstream links if this node relays the stream.
    pub async fn watch(
        self: &Arc<Self>,
        space: &SpaceId,
        since: Option<u64>,
    ) -> Result<(northstar_protocol::api::StreamWatching, WatchFeed), StreamError> {
        let (stream, opened) = self
            .open_with(space, |stream| stream.watch(since, &self.limits, now_ms()))
            .await?;
        if !stream.here {
            upstream::ensure(self.clone(), stream);
        }
        Ok(opened)
    }

    /// `stream.info`.
    pub async fn info(&self, space: &SpaceId) -> Result<StreamInfo, StreamError> {
        let stream = self.open(space).await?;
        let facts = stream.facts(&self.limits, now_ms());
        let (parents, children) = stream.neighbours(&self.own);
        let tree = stream.tree();
        let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        Ok(StreamInfo {
            space: space.clone(),
            owner: space.owner().clone(),
            sequencer: tree.sequencer.clone(),
            live: facts.live,
            newest: facts.newest,
            newest_key: facts.newest_key,
            window: count(facts.window),
            watchers: count(facts.watchers),
            dropped: facts.dropped,
            parents,
            children,
            limits: self.limits.limits(),
        })
    }

    /// Read `stream`'s tree from the log again.
    pub async fn refresh_tree(&self, stream: &Stream) -> Result<(), StreamError> {
        let state = self.state(&stream.space).await?;
        stream.set_tree(Arc::new(state.tree_nodes()));
        Ok(())
    }

    /// Forget the streams nothing holds.
    fn sweep(&self, now: u64) {
        self.map().retain(|_, stream| !stream.unused(now));
    }
}
