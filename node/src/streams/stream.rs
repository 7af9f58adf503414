//! One stream on this node: its recent window, its watches with their bounded queues, the
//! publishing budgets, and its tree. Everything here is synchronous and short: a frame is placed,
//! checked and handed to every watch's queue under one lock, without waiting for anything.
//!
//! A watch's queue holds at most `watcher_queue` frames (`spec/protocol.md` §10.3). A frame that
//! finds it full is dropped for that watch alone and counted; a watch that has dropped every
//! frame for `watcher_cutoff_secs` is ended with `slow_watcher`. The frames are shared
//! ([`Bytes`]), so a stalled watch holds at most its queue's frames, whatever their number of
//! watchers.

use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::task::{Context, Poll};

use northstar_protocol::Did;
use northstar_protocol::address::SpaceId;
use northstar_protocol::api::{ErrorCode, StreamNotice, StreamWatching};
use northstar_protocol::frame::Header;
use northstar_protocol::wire::Home;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;
use tokio_tungstenite::tungstenite::Bytes;
use tokio_util::sync::CancellationToken;

use super::StreamError;
use super::window::{Held, Taken, Window};
use crate::config::Streams as Limits;
use crate::spaces::routing::{Routing, TreeNodes};

/// One stream's live state on this node.
#[derive(Debug)]
pub struct Stream {
    /// The stream.
    pub space: SpaceId,
    /// Whether this node sequences it, so that frames are published here.
    pub here: bool,
    /// Its sequencer: the root of its tree, where frames are published.
    pub sequencer: Home,
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    window: Window,
    watches: Vec<Watch>,
    next_watch: u64,
    frames: Bucket,
    bytes: Bucket,
    dropped: u64,
    /// Connections that opened publishing for the stream.
    publishers: usize,
    /// The tree as last read from the log...
    tree: Arc<TreeNodes>,
    /// ...and built, once per change of its nodes.
    routing: Arc<Routing>,
    /// Since when the stream has had no watch, ms.
    idle_since: Option<u64>,
    /// Ends the upstream links while they run, with the number of the task that runs them:
    /// a task that ends clears only its own (a later one may have started meanwhile).
    upstream: Option<(u64, CancellationToken)>,
    /// The number of the next upstream task.
    next_upstream: u64,
}

#[derive(Debug)]
struct Watch {
    id: u64,
    tx: mpsc::Sender<Bytes>,
    /// Since when every frame offered was dropped, ms.
    full_since: Option<u64>,
    ended: Arc<OnceLock<(ErrorCode, String)>>,
}

/// A token bucket: at most `cap` tokens, refilled at `cap` per second.
#[derive(Debug)]
struct Bucket {
    tokens: f64,
    cap: f64,
    at: u64,
}

impl Bucket {
    fn new(per_second: u32, now: u64) -> Self {
        Self {
            tokens: f64::from(per_second),
            cap: f64::from(per_second),
            at: now,
        }
    }

    fn refill(&mut self, now: u64) {
        let elapsed = now.saturating_sub(self.at) as f64 / 1000.0;
        self.tokens = (self.tokens + elapsed * self.cap).min(self.cap);
        self.at = now;
    }

    fn has(&self, n: f64) -> bool {
        self.tokens >= n
    }

    fn spend(&mut self, n: f64) {
        self.tokens -= n;
    }
}

impl Stream {
    /// A stream with an empty window.
    pub fn new(
        space: SpaceId,
        here: bool,
        sequencer: Home,
        tree: Arc<TreeNodes>,
        limits: &Limits,
        now: u64,
    ) -> Self {
        let window = Window::new(
            limits.window_frames as usize,
            u64::from(limits.window_secs) * 1000,
        );
        Self {
            space,
            here,
            sequencer,
            inner: Mutex::new(Inner {
                window,
                watches: Vec::new(),
                next_watch: 1,
                frames: Bucket::new(limits.max_frames_per_second, now),
                bytes: Bucket::new(limits.max_bytes_per_second, now),
                dropped: 0,
                publishers: 0,
                routing: Arc::new(Routing::new(&tree)),
                tree,
                idle_since: Some(now),
                upstream: None,
                next_upstream: 1,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Nothing under this lock can panic halfway through a change that matters: a poisoned
        // lock still holds a usable window.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Take a frame a publishing client sent, checked in the order of `spec/protocol.md` §10.2
    /// from check 3 on (the caller decoded it and checked the connection publishes the stream).
    pub fn publish(
        &self,
        header: &Header,
        bytes: Bytes,
        limits: &Limits,
        now: u64,
    ) -> Result<u64, StreamError> {
        let len = header.payload.len();
        if len > limits.max_frame_bytes as usize {
            return Err(StreamError::FrameTooLarge {
                len,
                max: limits.max_frame_bytes,
            });
        }
        header
            .verify(&bytes)
            .map_err(|_| StreamError::BadSignature)?;
        let mut inner = self.lock();
        // Above the newest, not necessarily next: a frame refused for a budget leaves a gap
        // the publisher cannot take back, and must not make every later frame refused too.
        if let Some((newest, at)) = inner.window.newest_frame()
            && (header.number <= newest || header.timestamp < at)
        {
            return Err(StreamError::FrameOrder {
                expected: newest + 1,
                got: header.number,
                since: at,
            });
        }
        inner.frames.refill(now);
        inner.bytes.refill(now);
        if !inner.frames.has(1.0) {
            return Err(StreamError::FrameRate {
                limit: limits.max_frames_per_second,
            });
        }
        if !inner.bytes.has(len as f64) {
            return Err(StreamError::ByteRate {
                limit: limits.max_bytes_per_second,
            });
        }
        inner.frames.spend(1.0);
        inner.bytes.spend(len as f64);
        inner.place(header, bytes, limits, now);
        Ok(header.number)
    }

    /// Take a frame from upstream (`spec/protocol.md` §10.6): placed from its header first, so
    /// only a new frame's signature is checked. A frame that is not new is dropped, which is
    /// no error: it is the copy from the other parent.
    pub fn relay(
        &self,
        header: &Header,
        bytes: Bytes,
        limits: &Limits,
        now: u64,
    ) -> Result<(), StreamError> {
        if header.space != self.space {
            return Err(StreamError::Foreign(header.space.clone()));
        }
        if !self.lock().window.is_new(header.number, header.timestamp) {
            return Ok(());
        }
        header
            .verify(&bytes)
            .map_err(|_| StreamError::BadSignature)?;
        self.lock().place(header, bytes, limits, now);
        Ok(())
    }

    /// Open a watch: its first frames from the window (`since`, or a late joiner's start), then
    /// every frame taken.
    pub fn watch(
        self: &Arc<Self>,
        since: Option<u64>,
        limits: &Limits,
        now: u64,
    ) -> (StreamWatching, WatchFeed) {
        let mut inner = self.lock();
        let first = match since {
            Some(since) => inner.window.after(since, now),
            None => inner.window.late_join(now),
        };
        let answer = StreamWatching {
            space: self.space.clone(),
            start: first.first().map(|f| f.number),
            newest: inner.window.newest(),
        };
        // Room for the window's frames on top of the live queue.
        let (tx, rx) = mpsc::channel(limits.watcher_queue as usize + first.len());
        for held in first {
            // Cannot be full: the channel was sized for these.
            let _ = tx.try_send(held.bytes);
        }
        let id = inner.next_watch;
        inner.next_watch += 1;
        let ended = Arc::new(OnceLock::new());
        inner.watches.push(Watch {
            id,
            tx,
            full_since: None,
            ended: ended.clone(),
        });
        inner.idle_since = None;
        drop(inner);
        let feed = WatchFeed {
            stream: self.clone(),
            id,
            rx,
            ended,
            done: false,
        };
        (answer, feed)
    }

    fn unwatch(&self, id: u64, now: u64) {
        let mut inner = self.lock();
        inner.watches.retain(|w| w.id != id);
        if inner.watches.is_empty() {
            inner.idle_since.get_or_insert(now);
        }
    }

    /// A connection opened publishing; undone by [`Stream::unpublish`].
    pub fn publishing(&self) {
        self.lock().publishers += 1;
    }

    /// A publishing connection went away.
    pub fn unpublish(&self) {
        let mut inner = self.lock();
        inner.publishers = inner.publishers.saturating_sub(1);
    }

    /// The number the next published frame must carry (`stream.publish`'s `next`).
    pub fn next(&self) -> u64 {
        self.lock().window.newest().map_or(1, |n| n + 1)
    }

    /// The newest number taken here.
    pub fn newest(&self) -> Option<u64> {
        self.lock().window.newest()
    }

    /// Whether nothing holds the stream: no watch, no publisher, no upstream, and its window
    /// empty at `now`.
    pub fn unused(&self, now: u64) -> bool {
        let mut inner = self.lock();
        inner.window.expire(now);
        inner.watches.is_empty()
            && inner.publishers == 0
            && inner.upstream.is_none()
            && inner.window.is_empty()
    }

    /// The tree as last read.
    pub fn tree(&self) -> Arc<TreeNodes> {
        self.lock().tree.clone()
    }

    /// The tree as last built.
    pub fn routing(&self) -> Arc<Routing> {
        self.lock().routing.clone()
    }

    /// Replace the tree after a new read of the log; it is built again only if its nodes
    /// changed.
    pub fn set_tree(&self, tree: Arc<TreeNodes>) {
        if *self.lock().tree == *tree {
            return;
        }
        let routing = Arc::new(Routing::new(&tree));
        let mut inner = self.lock();
        inner.tree = tree;
        inner.routing = routing;
    }

    /// Mark the upstream links as running, with the token that ends them: the number that
    /// names this run of them, or `None` if they run already.
    pub fn start_upstream(&self, stop: &CancellationToken) -> Option<u64> {
        let mut inner = self.lock();
        if inner.upstream.is_some() {
            return None;
        }
        let run = inner.next_upstream;
        inner.next_upstream += 1;
        inner.upstream = Some((run, stop.clone()));
        Some(run)
    }

    /// Whether the upstream links of `run` should end for want of watches: none for `idle` at
    /// `now`. If so they are marked as ended at once, under the same lock a new watch takes, so
    /// a watch that comes later starts them again.
    pub fn retire_upstream(&self, run: u64, now: u64, idle: std::time::Duration) -> bool {
        let mut inner = self.lock();
        let idle_ms = u64::try_from(idle.as_millis()).unwrap_or(u64::MAX);
        let retire = inner.watches.is_empty()
            && inner
                .idle_since
                .is_some_and(|since| now.saturating_sub(since) >= idle_ms);
        if retire {
            inner.stop_upstream(run);
        }
        retire
    }

    /// The upstream links of `run` ended (or are told to end now). Links a later run started
    /// are left alone.
    pub fn stop_upstream(&self, run: u64) {
        self.lock().stop_upstream(run);
    }

    /// What `stream.info` shows, but for the limits: (live, newest, newest key, window,
    /// watches, dropped).
    pub fn facts(&self, limits: &Limits, now: u64) -> Facts {
        let mut inner = self.lock();
        inner.window.expire(now);
        let max_age = u64::from(limits.window_secs) * 1000;
        Facts {
            live: inner
                .window
                .newest_at()
                .is_some_and(|at| now.saturating_sub(at) <= max_age),
            newest: inner.window.newest(),
            newest_key: inner.window.newest_key(),
            window: inner.window.len(),
            watchers: inner.watches.len(),
            dropped: inner.dropped,
        }
    }

    /// This node's parents and children in the stream's tree.
    pub fn neighbours(&self, own: &Did) -> (Vec<Did>, Vec<Did>) {
        let routing = self.routing();
        let dids = |homes: Vec<Home>| homes.into_iter().map(|h| h.node).collect();
        (
            dids(routing.parents(own, &self.sequencer)),
            dids(routing.children(own)),
        )
    }
}

/// The facts of a stream `stream.info` reports.
#[derive(Debug, Clone, Copy)]
pub struct Facts {
    /// A frame taken within the window's age.
    pub live: bool,
    /// The newest number taken, its frame held or not (§10.3).
    pub newest: Option<u64>,
    /// The newest key frame held.
    pub newest_key: Option<u64>,
    /// Frames held.
    pub window: usize,
    /// Watches open.
    pub watchers: usize,
    /// Frames dropped for full queues since the stream was made here.
    pub dropped: u64,
}

impl Inner {
    fn stop_upstream(&mut self, run: u64) {
        if self.upstream.as_ref().is_some_and(|(own, _)| *own == run)
            && let Some((_, stop)) = self.upstream.take()
        {
            stop.cancel();
        }
    }

    /// Place a checked frame; if it is new, hand it to every watch.
    fn place(&mut self, header: &Header, bytes: Bytes, limits: &Limits, now: u64) {
        let held = Held {
            number: header.number,
            key: header.key,
            timestamp: header.timestamp,
            bytes: bytes.clone(),
            at: now,
        };
        match self.window.take(held, now) {
            Taken::New { .. } => self.deliver(&bytes, limits, now),
            Taken::Duplicate | Taken::TooOld => {}
        }
    }

    fn deliver(&mut self, bytes: &Bytes, limits: &Limits, now: u64) {
        let cutoff = u64::from(limits.watcher_cutoff_secs) * 1000;
        let mut dropped = 0;
        self.watches
            .retain_mut(|watch| match watch.tx.try_send(bytes.clone()) {
                Ok(()) => {
                    watch.full_since = None;
                    true
                }
                Err(TrySendError::Full(_)) => {
                    dropped += 1;
                    let since = *watch.full_since.get_or_insert(now);
                    if now.saturating_sub(since) < cutoff {
                        return true;
                    }
                    let _ = watch.ended.set(slow_watcher(limits.watcher_cutoff_secs));
                    false
                }
                // The watcher went away.
                Err(TrySendError::Closed(_)) => false,
            });
        self.dropped += dropped;
        if self.watches.is_empty() {
            self.idle_since.get_or_insert(now);
        }
    }
}

fn slow_watcher(secs: u32) -> (ErrorCode, String) {
    (
        ErrorCode::SlowWatcher,
        format!("the watch dropped every frame for {secs} s; watch again with since"),
    )
}

/// What a watching connection reads: the stream's frames, then perhaps why the node ended the
/// watch. Dropping it ends the watch.
#[derive(Debug)]
pub struct WatchFeed {
    stream: Arc<Stream>,
    id: u64,
    rx: mpsc::Receiver<Bytes>,
    ended: Arc<OnceLock<(ErrorCode, String)>>,
    done: bool,
}

/// One item of a [`WatchFeed`].
#[derive(Debug)]
pub enum WatchItem {
    /// A frame's bytes.
    Frame(Bytes),
    /// The node ended the watch; nothing follows.
    Ended(StreamNotice),
}

impl WatchFeed {
    /// The stream watched.
    pub fn space(&self) -> &SpaceId {
        &self.stream.space
    }

    /// The next frame, or the end. A watch the node ended yields its notice at once, without
    /// the frames still queued ("sends it nothing more", §10.3).
    pub fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<WatchItem>> {
        if self.done {
            return Poll::Ready(None);
        }
        if let Some(notice) = self.notice() {
            self.done = true;
            return Poll::Ready(Some(WatchItem::Ended(notice)));
        }
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(bytes)) => Poll::Ready(Some(WatchItem::Frame(bytes))),
            Poll::Ready(None) => {
                self.done = true;
                // Ended between the two looks: say why.
                Poll::Ready(self.notice().map(WatchItem::Ended))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn notice(&self) -> Option<StreamNotice> {
        let (code, message) = self.ended.get()?;
        Some(StreamNotice {
            space: Some(self.stream.space.clone()),
            number: None,
            code: code.code(),
            name: code.name().into(),
            message: message.clone(),
        })
    }
}

impl Drop for WatchFeed {
    fn drop(&mut self) {
        self.stream.unwatch(self.id, crate::clock::now_ms());
    }
}

#[cfg(test)]
mod tests {
    use std::task::{Context, Poll, Waker};

    use northstar_protocol::Keypair;
    use northstar_protocol::address::SpaceType;
    use northstar_protocol::frame::Frame;

    use super::*;

    fn owner() -> Keypair {
        Keypair::from_seed(&[3; 32])
    }

    fn space() -> SpaceId {
        SpaceId::new(SpaceType::Stream, owner().did(), "test").unwrap()
    }

    fn limits() -> Limits {
        Limits {
            watcher_queue: 4,
            watcher_cutoff_secs: 2,
            max_frames_per_second: 1000,
            ..Limits::default()
        }
    }

    fn stream() -> Arc<Stream> {
        let sequencer = Keypair::from_seed(&[4; 32]).did().clone();
        let tree = Arc::new(TreeNodes {
            sequencer: sequencer.clone(),
            fanout: 3,
            nodes: Vec::new(),
        });
        Arc::new(Stream::new(
            space(),
            true,
            Home::new(sequencer, "seq.example"),
            tree,
            &limits(),
            0,
        ))
    }

    fn frame(number: u64, key: bool) -> (Header, Bytes) {
        let bytes = Frame::sign(&owner(), space(), number, 1, key, vec![number as u8; 10])
            .unwrap()
            .encode()
            .unwrap();
        (Header::read(&bytes).unwrap(), Bytes::from(bytes))
    }

    /// Everything the feed holds now.
    fn drain(feed: &mut WatchFeed) -> (Vec<u64>, Option<String>) {
        let mut cx = Context::from_waker(Waker::noop());
        let mut numbers = Vec::new();
        loop {
            match feed.poll_next(&mut cx) {
                Poll::Ready(Some(WatchItem::Frame(bytes))) => {
                    numbers.push(Header::read(&bytes).unwrap().number);
                }
                Poll::Ready(Some(WatchItem::Ended(notice))) => {
                    return (numbers, Some(notice.name));
                }
                Poll::Ready(None) | Poll::Pending => return (numbers, None),
            }
        }
    }

    #[test]
    fn a_full_watch_loses_frames_alone_and_is_cut_off_after_the_cutoff() {
        let stream = stream();
        let limits = limits();
        let (_, mut slow) = stream.watch(None, &limits, 0);
        let (_, mut quick) = stream.watch(None, &limits, 0);
        for number in 1..=10 {
            let (header, bytes) = frame(number, false);
            stream
                .publish(&header, bytes, &limits, 10 * number)
                .unwrap();
            if number % 2 == 0 {
                assert_eq!(drain(&mut quick).1, None);
            }
        }
        // The slow watch holds its first four; the rest were dropped for it alone.
        assert_eq!(stream.facts(&limits, 100).dropped, 6);
        // Still full past the cut-off: told and ended, its queued frames not sent.
        for number in 11..=14 {
            let (header, bytes) = frame(number, false);
            stream.publish(&header, bytes, &limits, 200).unwrap();
        }
        assert_eq!(drain(&mut quick).0, (11..=14).collect::<Vec<_>>());
        let (header, bytes) = frame(15, false);
        stream.publish(&header, bytes, &limits, 2_300).unwrap();
        assert_eq!(drain(&mut slow), (vec![], Some("slow_watcher".into())));
        assert_eq!(drain(&mut quick).0, [15]);
        assert_eq!(stream.facts(&limits, 2_300).watchers, 1);
    }

    #[test]
    fn a_relay_takes_each_frame_once_and_refuses_what_does_not_verify() {
        let stream = stream();
        let limits = limits();
        let (_, mut feed) = stream.watch(None, &limits, 0);
        for number in [1, 2, 1, 3, 2] {
            let (header, bytes) = frame(number, false);
            stream.relay(&header, bytes, &limits, 1).unwrap();
        }
        assert_eq!(drain(&mut feed).0, [1, 2, 3]);
        let (header, bytes) = frame(4, false);
        let mut bad = bytes.to_vec();
        let at = header.payload.start;
        bad[at] ^= 1;
        assert!(matches!(
            stream.relay(&header, Bytes::from(bad), &limits, 1),
            Err(StreamError::BadSignature)
        ));
        // A duplicate is dropped before its signature is even looked at.
        let (header, bytes) = frame(3, false);
        let mut forged = bytes.to_vec();
        let last = forged.len() - 1;
        forged[last] ^= 1;
        stream
            .relay(&header, Bytes::from(forged), &limits, 1)
            .unwrap();
        assert_eq!(drain(&mut feed).0, Vec::<u64>::new());
    }

    #[test]
    fn ending_upstream_links_leaves_a_later_run_of_them_alone() {
        let stream = stream();
        let limits = limits();
        let first = CancellationToken::new();
        let run = stream.start_upstream(&first).unwrap();
        assert_eq!(stream.start_upstream(&CancellationToken::new()), None);
        assert!(stream.retire_upstream(run, 10_000, std::time::Duration::from_secs(10)));
        // A watch comes before the retired task has finished: a second run starts...
        let (_, _feed) = stream.watch(None, &limits, 10_001);
        let second = CancellationToken::new();
        let later = stream.start_upstream(&second).unwrap();
        // ...and the first task's end does not touch it.
        stream.stop_upstream(run);
        assert!(!second.is_cancelled());
        assert_eq!(stream.start_upstream(&CancellationToken::new()), None);
        assert!(!stream.unused(10_002));
        stream.stop_upstream(later);
        assert!(second.is_cancelled());
    }

    #[test]
    fn budgets_refill_with_time() {
        let stream = stream();
        let limits = Limits {
            max_frames_per_second: 2,
            ..limits()
        };
        let (h1, b1) = frame(1, true);
        let (h2, b2) = frame(2, false);
        let (h3, b3) = frame(3, false);
        let stream = Arc::new(Stream::new(
            space(),
            true,
            stream.sequencer.clone(),
            stream.tree(),
            &limits,
            0,
        ));
        stream.publish(&h1, b1, &limits, 0).unwrap();
        stream.publish(&h2, b2, &limits, 0).unwrap();
        assert!(matches!(
            stream.publish(&h3, b3.clone(), &limits, 0),
            Err(StreamError::FrameRate { limit: 2 })
        ));
        // Half a second later one frame's worth is back.
        stream.publish(&h3, b3, &limits, 500).unwrap();
        assert_eq!(stream.next(), 4);
    }
}
