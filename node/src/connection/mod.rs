//! One WebSocket session (`spec/protocol.md` §6.1): reading JSON-RPC messages, running the
//! calls, and writing their responses and the subscriptions' notifications.
//!
//! Everything a connection does happens in its one task, without channels. Each time the task
//! wakes it reads the messages that have arrived (while fewer than [`MAX_IN_FLIGHT`] calls are
//! running or answers are waiting), collects the calls that finished, then hands the socket
//! every answer and notification that is ready, as long as the socket's write buffer takes
//! them, and flushes once. A burst of events thus reaches a subscriber in one write, and a
//! subscription's next event is taken from the hub only when the socket can take it.
//!
//! What a message is, and which id its answer carries, is decided by [`northstar_protocol::envelope`]; the
//! common checks of `spec/protocol.md` §6.3 are made here in their order (size, JSON, request,
//! budget, method, subscriptions, parameters). The methods are `jsonrpsee`'s, called directly
//! with this connection's [`Session`] in the extensions (in `calls`); `space.subscribe` and
//! `space.unsubscribe` are served here, by [`crate::rpc::feed`], so that subscribers share each
//! event's JSON; and so are `stream.publish`, `stream.watch` and `stream.unwatch` (in
//! `streams`, over [`crate::streams`]), because they make the connection carry binary frames
//! (§10.1): a binary message starting with the frame version is a publisher's frame, and the
//! frames of the streams watched are written as binary messages, taking turns with the
//! subscriptions' notifications.
//!
//! Bounds: at most [`MAX_IN_FLIGHT`] calls and answers per connection (reading stops until
//! they drain), a write buffer of about [`WRITE_BATCH`] bytes (nothing more is taken while the
//! socket cannot take it), `max_subscriptions_per_connection` subscriptions and watches
//! together, a watch's queue of `watcher_queue` frames, messages of at
//! most `max_frame_bytes` answered with −32007 and of more than [`TOO_BIG_FACTOR`] times that
//! refused with close status 1009, as is a stream frame longer than the streams'
//! `max_frame_bytes` plus 2048 (§10.7). A connection whose writes make no progress for
//! [`WRITE_STALL`] is dropped, so is one that has not authenticated by its deadline, one that
//! has gone silent even to a ping (`ping_interval_secs`), and one
//! whose request is refused for its budget past `request_burst` unforgiven refusals (`auth.rs`): reading
//! stops at that message, and nothing more of what was read is run or answered.

mod calls;
mod streams;

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::stream::FuturesUnordered;
use futures_util::{SinkExt, StreamExt};
use jsonrpsee::core::server::{MethodResponse, Methods, ResponsePayload};
use jsonrpsee::types::error::{
    BATCHES_NOT_SUPPORTED_CODE, BATCHES_NOT_SUPPORTED_MSG, ErrorCode as RpcCode,
    reject_too_big_batch_request, reject_too_big_batch_response, reject_too_big_request,
    reject_too_many_subscriptions,
};
use jsonrpsee::types::{ErrorObject, Id};
use northstar_protocol::address::SpaceId;
use northstar_protocol::frame::FRAME_VERSION;
use northstar_protocol::method;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Bytes, Error as WsError, Message, error::CapacityError};
use tokio_util::sync::CancellationToken;

use crate::admission::Slot;
use crate::auth::Session;
use crate::config::Limits;
use crate::rpc::Api;
use crate::rpc::feed::FeedStream;
use crate::streams::{Stream, WatchFeed, WatchItem};
use calls::{
    call, checked_params, into_text, notification, rate_limited, refused, rpc_id, subscribe,
    subscription_named, unstructured_params,
};
use northstar_protocol::envelope::{self, Entry};

/// Calls running plus answers waiting to be written, per connection, before reading pauses.
/// A client that pipelines more simply waits; nothing is refused.
pub const MAX_IN_FLIGHT: usize = 32;

/// How many bytes of answers and notifications are gathered before they are written. Bursts
/// larger than this take more than one write; the buffer keeps this much capacity once used.
pub const WRITE_BATCH: usize = 16 * 1024;

/// The read buffer of an idle connection: requests are small. Longer messages grow it while
/// they are read.
const READ_BUFFER: usize = 2 * 1024;

/// Messages up to this many times `max_frame_bytes` are read and answered with −32007; longer
/// ones end the connection with close status 1009, as reading them would cost that memory.
pub const TOO_BIG_FACTOR: usize = 2;

/// How long the node's writes to a connection may make no progress before it is dropped.
pub const WRITE_STALL: Duration = Duration::from_secs(10);

/// The wire name of subscription notifications.
const NOTIFICATION: &str = method::SPACE_EVENT;

/// The methods served here rather than by `jsonrpsee`.
const SUBSCRIBE: &str = method::SPACE_SUBSCRIBE;
const UNSUBSCRIBE: &str = method::SPACE_UNSUBSCRIBE;
const PUBLISH: &str = method::STREAM_PUBLISH;
const WATCH: &str = method::STREAM_WATCH;
const UNWATCH: &str = method::STREAM_UNWATCH;

/// What every connection of a listener shares.
#[derive(Debug)]
pub struct Shared {
    /// The methods, `space.subscribe` and `space.unsubscribe` excepted.
    pub methods: Methods,
    /// For subscriptions.
    pub api: Arc<Api>,
    /// The node's limits.
    pub limits: Limits,
    /// The reverse proxies whose `X-Forwarded-For` is believed (`trusted_proxies`).
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// The web app served at `/app/`, unless the configuration turns it off (`app`).
    pub app: Option<crate::app::App>,
}

impl Shared {
    /// The WebSocket settings for this node's limits.
    pub fn websocket_config(&self) -> WebSocketConfig {
        let cap = self
            .hard_limit()
            .max(self.api.streams.limits().max_message());
        WebSocketConfig::default()
            .read_buffer_size(READ_BUFFER)
            .write_buffer_size(WRITE_BATCH)
            .max_message_size(Some(cap))
            .max_frame_size(Some(cap))
    }

    fn max_response(&self) -> usize {
        self.limits.max_frame_bytes as usize
    }

    /// The longest JSON-RPC message read (§6.1): longer ones close the connection.
    fn hard_limit(&self) -> usize {
        (self.limits.max_frame_bytes as usize).saturating_mul(TOO_BIG_FACTOR)
    }
}

/// A socket that notes since when its writes have made no progress.
#[derive(Debug)]
pub struct Watched<S> {
    inner: S,
    stalled_since: Option<Instant>,
}

impl<S> Watched<S> {
    /// Watch `inner`.
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            stalled_since: None,
        }
    }

    /// The socket.
    pub fn into_inner(self) -> S {
        self.inner
    }

    fn note<T>(&mut self, poll: Poll<T>) -> Poll<T> {
        match poll {
            Poll::Pending => {
                self.stalled_since.get_or_insert_with(Instant::now);
            }
            Poll::Ready(_) => self.stalled_since = None,
        }
        poll
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.note(poll)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_flush(cx);
        this.note(poll)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// Why a connection ends.
#[derive(Debug)]
enum Exit {
    /// The peer closed it, or it broke.
    Gone,
    /// The peer sent a message too large to read.
    TooBig,
    /// The node's writes made no progress for [`WRITE_STALL`].
    Stalled,
    /// Not authenticated by the deadline.
    AuthDeadline,
    /// Authenticated, then silent for the ping interval and as long again after a ping.
    Silent,
    /// Refused for its budget past `request_burst` unforgiven refusals.
    Flooding,
}

/// A finished call.
enum Done {
    /// Send this answer.
    Reply(String),
    /// A subscription opened: send the answer, then its notifications.
    Subscribed {
        reply: String,
        id: u64,
        feed: FeedStream,
    },
    /// A subscription or a watch refused: send the answer.
    NotOpened(String),
    /// Publishing opened: send the answer, then take the stream's frames.
    Publishing { reply: String, stream: Arc<Stream> },
    /// A watch opened: send the answer, then its frames.
    Watching { reply: String, feed: WatchFeed },
    /// A notification: nothing to send.
    Silent,
}

type Call = Pin<Box<dyn Future<Output = Done> + Send>>;

struct Subscription {
    id: u64,
    feed: FeedStream,
}

/// One WebSocket session.
pub struct Connection<S> {
    ws: WebSocketStream<Watched<S>>,
    shared: Arc<Shared>,
    session: Arc<Session>,
    /// The calls running; none while idle, so an idle connection holds no call queue.
    calls: Option<FuturesUnordered<Call>>,
    replies: VecDeque<String>,
    subscriptions: Vec<Subscription>,
    /// `space.subscribe` and `stream.watch` calls running, counted against the limit with the
    /// open subscriptions and watches.
    opening: usize,
    /// The streams this connection publishes.
    publishing: HashMap<SpaceId, Arc<Stream>>,
    /// The streams it watches.
    watches: Vec<WatchFeed>,
    next_subscription: u64,
    /// Where the next look for a subscription's notification starts, so none starves.
    turn: usize,
    /// The same for watches' frames.
    watch_turn: usize,
    /// Whether watches are looked at before subscriptions next time.
    watch_first: bool,
    /// Written to the buffer but not yet flushed.
    dirty: bool,
    stall: Option<Pin<Box<Sleep>>>,
    /// The connection's one other timer: its auth deadline while `authenticating`, then the
    /// keepalive's (armed on the first wake-up after it authenticated, if pings are on).
    timer: Option<Pin<Box<Sleep>>>,
    authenticating: bool,
    /// When the peer last sent anything.
    last_heard: Instant,
    /// When the node pinged it, if it has been silent since.
    pinged: Option<Instant>,
    /// A ping to send with the next write.
    ping_due: bool,
    /// This session's place in the listener's connection counts.
    _slot: Slot,
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Connection<S> {
    /// A session on `ws` that must authenticate by `deadline`, holding `slot` while it lives.
    pub fn new(
        ws: WebSocketStream<Watched<S>>,
        shared: Arc<Shared>,
        session: Arc<Session>,
        deadline: Instant,
        slot: Slot,
    ) -> Self {
        Self {
            ws,
            shared,
            session,
            calls: None,
            replies: VecDeque::new(),
            subscriptions: Vec::new(),
            opening: 0,
            publishing: HashMap::new(),
            watches: Vec::new(),
            next_subscription: 1,
            turn: 0,
            watch_turn: 0,
            watch_first: false,
            dirty: false,
            stall: None,
            timer: Some(Box::pin(tokio::time::sleep_until(deadline))),
            authenticating: true,
            last_heard: Instant::now(),
            pinged: None,
            ping_due: false,
            _slot: slot,
        }
    }

    /// Serve until the peer goes, the session is killed (dropped at once) or `shutdown`
    /// (calls in progress finish, then a close frame).
    pub async fn run(mut self, shutdown: CancellationToken) {
        let kill = self.session.kill_token();
        let exit = tokio::select! {
            biased;
            () = kill.cancelled() => {
                tracing::debug!("connection dropped");
                return;
            }
            () = shutdown.cancelled() => None,
            exit = std::future::poll_fn(|cx| self.poll_serve(cx, true)) => Some(exit),
        };
        match exit {
            None => self.drain(&kill).await,
            Some(Exit::Gone) => tracing::debug!("connection closed"),
            Some(Exit::Stalled) => tracing::debug!("dropped: the peer stopped reading"),
            Some(Exit::AuthDeadline) => tracing::debug!("dropped: not authenticated in time"),
            Some(Exit::Silent) => tracing::debug!("dropped: silent, even to a ping"),
            Some(Exit::Flooding) => tracing::debug!("dropped: the peer ignores rate_limited"),
            Some(Exit::TooBig) => {
                tracing::debug!("closing: a message over the hard size limit");
                let frame = CloseFrame {
                    code: CloseCode::Size,
                    reason: "message too big".into(),
                };
                self.close(&kill, frame).await;
            }
        }
    }

    /// Shutdown: subscriptions end, calls in progress finish and are answered, then the close
    /// frame. The listener drops connections that take too long.
    async fn drain(&mut self, kill: &CancellationToken) {
        self.subscriptions.clear();
        self.watches.clear();
        let drained = std::future::poll_fn(|cx| match self.poll_serve(cx, false) {
            Poll::Ready(_) => Poll::Ready(()),
            Poll::Pending if self.calls.is_none() && self.replies.is_empty() && !self.dirty => {
                Poll::Ready(())
            }
            Poll::Pending => Poll::Pending,
        });
        tokio::select! {
            biased;
            () = kill.cancelled() => return,
            () = drained => {}
        }
        let frame = CloseFrame {
            code: CloseCode::Normal,
            reason: "the node is shutting down".into(),
        };
        self.close(kill, frame).await;
    }

    async fn close(&mut self, kill: &CancellationToken, frame: CloseFrame) {
        tokio::select! {
            biased;
            () = kill.cancelled() => {}
            // The peer may be gone already; there is nobody left to tell.
            _ = self.ws.close(Some(frame)) => {}
        }
    }

    /// One wake-up: read, run, write, flush. Ready when the connection ends.
    fn poll_serve(&mut self, cx: &mut Context<'_>, reading: bool) -> Poll<Exit> {
        loop {
            let mut progress = false;
            while reading && self.running() + self.replies.len() < MAX_IN_FLIGHT {
                match self.ws.poll_next_unpin(cx) {
                    Poll::Ready(Some(Ok(message))) => {
                        progress = true;
                        self.last_heard = Instant::now();
                        self.pinged = None;
                        if self.over_hard_limit(&message) {
                            return Poll::Ready(Exit::TooBig);
                        }
                        self.on_message(message);
                        // Dropped at this refusal: nothing after it is run or answered.
                        if self.session.killed() {
                            return Poll::Ready(Exit::Flooding);
                        }
                    }
                    Poll::Ready(Some(Err(WsError::Capacity(CapacityError::MessageTooLong {
                        ..
                    })))) => return Poll::Ready(Exit::TooBig),
                    Poll::Ready(Some(Err(e))) => {
                        tracing::debug!(error = %crate::report::Causes(&e), "connection broke");
                        return Poll::Ready(Exit::Gone);
                    }
                    Poll::Ready(None) => return Poll::Ready(Exit::Gone),
                    Poll::Pending => break,
                }
            }
            while let Some(calls) = &mut self.calls {
                match calls.poll_next_unpin(cx) {
                    Poll::Ready(Some(done)) => {
                        progress = true;
                        self.finish(done);
                    }
                    Poll::Ready(None) => self.calls = None,
                    Poll::Pending => break,
                }
            }
            match self.write_ready(cx) {
                Ok(wrote) => progress |= wrote,
                Err(exit) => return Poll::Ready(exit),
            }
            if !progress {
                break;
            }
        }
        if self.dirty {
            match self.ws.poll_flush_unpin(cx) {
                Poll::Ready(Ok(())) => {
                    self.dirty = false;
                    self.stall = None;
                }
                Poll::Ready(Err(e)) => {
                    tracing::debug!(error = %crate::report::Causes(&e), "write failed");
                    return Poll::Ready(Exit::Gone);
                }
                Poll::Pending => {}
            }
        }
        if self.poll_stall(cx) {
            return Poll::Ready(Exit::Stalled);
        }
        if self.authenticating
            && let Some(deadline) = &mut self.timer
        {
            if self.session.did().is_some() {
                // Authenticated: no deadline; the timer is the keepalive's from now on.
                self.authenticating = false;
                self.timer = None;
            } else if deadline.as_mut().poll(cx).is_ready()
                && self.watches.is_empty()
                && self.opening == 0
                && self.replies.is_empty()
                && !self.dirty
            {
                // A watcher needs no identity (§10.3): only a connection that watches nothing
                // is dropped for not authenticating, at its deadline or as soon as its last
                // watch ends after it, once what it was told (a `stream.closed`, say) is
                // flushed. A peer that does not read it is dropped at the write stall.
                return Poll::Ready(Exit::AuthDeadline);
            }
        }
        if !self.authenticating && self.poll_keepalive(cx) {
            return Poll::Ready(Exit::Silent);
        }
        Poll::Pending
    }

    /// Ping a peer silent for the ping interval; whether it has been silent for as long again
    /// since, and must be dropped. The timer is moved only when it fires, so a busy connection
    /// does not touch it for each message.
    fn poll_keepalive(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(every) = self.shared.limits.ping_interval() else {
            return false;
        };
        loop {
            let due = self.pinged.unwrap_or(self.last_heard) + every;
            let timer = self
                .timer
                .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(due)));
            if timer.as_mut().poll(cx).is_pending() {
                return false;
            }
            if Instant::now() < due {
                // Heard from since the timer was set: wait from then.
                timer.as_mut().reset(due);
                continue;
            }
            if self.pinged.is_some() {
                return true;
            }
            self.pinged = Some(Instant::now());
            self.ping_due = true;
            // The ping goes out with the next pass of writes.
            cx.waker().wake_by_ref();
        }
    }

    /// Whether the writes have made no progress for [`WRITE_STALL`]; arms a timer while they
    /// are blocked.
    fn poll_stall(&mut self, cx: &mut Context<'_>) -> bool {
        let since = match self.ws.get_ref().stalled_since {
            Some(since) if self.dirty || !self.replies.is_empty() => since,
            _ => {
                self.stall = None;
                return false;
            }
        };
        let due = since + WRITE_STALL;
        let timer = self
            .stall
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(due)));
        if timer.deadline() != due {
            timer.as_mut().reset(due);
        }
        timer.as_mut().poll(cx).is_ready()
    }

    /// Hand the socket what is ready while it takes it; whether anything was written.
    fn write_ready(&mut self, cx: &mut Context<'_>) -> Result<bool, Exit> {
        let mut wrote = false;
        loop {
            match self.ws.poll_ready_unpin(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) => {
                    tracing::debug!(error = %crate::report::Causes(&e), "write failed");
                    return Err(Exit::Gone);
                }
                Poll::Pending => return Ok(wrote),
            }
            let Some(message) = self.next_outgoing(cx) else {
                return Ok(wrote);
            };
            if let Err(e) = self.ws.start_send_unpin(message) {
                tracing::debug!(error = %crate::report::Causes(&e), "write failed");
                return Err(Exit::Gone);
            }
            self.dirty = true;
            wrote = true;
        }
    }

    /// The next answer, or else the next notification of a subscription or frame of a watch
    /// that has one; subscriptions and watches take turns.
    fn next_outgoing(&mut self, cx: &mut Context<'_>) -> Option<Message> {
        if std::mem::take(&mut self.ping_due) {
            return Some(Message::Ping(Default::default()));
        }
        if let Some(reply) = self.replies.pop_front() {
            return Some(Message::text(reply));
        }
        self.watch_first = !self.watch_first;
        if self.watch_first {
            self.next_frame(cx)
                .or_else(|| self.next_notification(cx).map(Message::text))
        } else {
            self.next_notification(cx)
                .map(Message::text)
                .or_else(|| self.next_frame(cx))
        }
    }

    fn next_notification(&mut self, cx: &mut Context<'_>) -> Option<String> {
        let mut looked = 0;
        while looked < self.subscriptions.len() {
            let i = (self.turn + looked) % self.subscriptions.len();
            let subscription = &mut self.subscriptions[i];
            match subscription.feed.poll_next_unpin(cx) {
                Poll::Ready(Some(item)) => {
                    self.turn = i + 1;
                    return Some(notification(subscription.id, &item));
                }
                Poll::Ready(None) => {
                    self.subscriptions.swap_remove(i);
                }
                Poll::Pending => looked += 1,
            }
        }
        None
    }

    fn next_frame(&mut self, cx: &mut Context<'_>) -> Option<Message> {
        let mut looked = 0;
        while looked < self.watches.len() {
            let i = (self.watch_turn + looked) % self.watches.len();
            match self.watches[i].poll_next(cx) {
                Poll::Ready(Some(WatchItem::Frame(bytes))) => {
                    self.watch_turn = i + 1;
                    return Some(Message::Binary(bytes));
                }
                Poll::Ready(Some(WatchItem::Ended(notice))) => {
                    self.watches.swap_remove(i);
                    return Some(Message::text(streams::notice(
                        method::STREAM_CLOSED,
                        &notice,
                    )));
                }
                Poll::Ready(None) => {
                    self.watches.swap_remove(i);
                }
                Poll::Pending => looked += 1,
            }
        }
        None
    }

    fn running(&self) -> usize {
        self.calls.as_ref().map_or(0, FuturesUnordered::len)
    }

    fn start(&mut self, call: Call) {
        self.calls
            .get_or_insert_with(FuturesUnordered::new)
            .push(call);
    }

    fn finish(&mut self, done: Done) {
        match done {
            Done::Reply(reply) => self.replies.push_back(reply),
            Done::Subscribed { reply, id, feed } => {
                self.opening -= 1;
                self.replies.push_back(reply);
                self.subscriptions.push(Subscription { id, feed });
            }
            Done::NotOpened(reply) => {
                self.opening -= 1;
                self.replies.push_back(reply);
            }
            Done::Publishing { reply, stream } => {
                self.replies.push_back(reply);
                match self.publishing.entry(stream.space.clone()) {
                    std::collections::hash_map::Entry::Occupied(_) => stream.unpublish(),
                    std::collections::hash_map::Entry::Vacant(slot) => {
                        slot.insert(stream);
                    }
                }
            }
            Done::Watching { reply, feed } => {
                self.opening -= 1;
                self.replies.push_back(reply);
                // A second watch of a stream replaces the first (§10.3).
                self.watches.retain(|w| w.space() != feed.space());
                self.watches.push(feed);
            }
            Done::Silent => {}
        }
    }

    fn reply(&mut self, response: MethodResponse) {
        self.replies.push_back(into_text(response));
    }

    /// Whether a message is past its hard limit, to be refused with close status 1009: a
    /// stream frame past the streams' `max_frame_bytes` plus 2048 (§10.7), any other message
    /// past [`TOO_BIG_FACTOR`] times the connection's `max_frame_bytes` (§6.1). The WebSocket
    /// layer reads messages up to the larger of the two, so the smaller is caught here.
    fn over_hard_limit(&self, message: &Message) -> bool {
        let (len, max) = match message {
            Message::Binary(bytes) if bytes.first() == Some(&FRAME_VERSION) => {
                (bytes.len(), self.shared.api.streams.limits().max_message())
            }
            Message::Text(text) => (text.len(), self.shared.hard_limit()),
            Message::Binary(bytes) => (bytes.len(), self.shared.hard_limit()),
            _ => return false,
        };
        len > max
    }

    fn on_message(&mut self, message: Message) {
        let text = match &message {
            Message::Text(text) => text.as_str(),
            Message::Binary(bytes) if bytes.first() == Some(&FRAME_VERSION) => {
                self.on_frame(bytes.clone());
                return;
            }
            Message::Binary(bytes) => match std::str::from_utf8(bytes) {
                Ok(text) => text,
                Err(_) => {
                    self.reply(MethodResponse::error(Id::Null, RpcCode::ParseError));
                    return;
                }
            },
            // Pings are answered by the WebSocket layer; closes end the stream next.
            _ => return,
        };
        let limit = self.shared.limits.max_frame_bytes;
        if text.len() > limit as usize {
            self.reply(MethodResponse::error(
                Id::Null,
                reject_too_big_request(limit),
            ));
            return;
        }
        if self.shared.limits.max_batch == 0 && text.trim_start().starts_with('[') {
            let error =
                ErrorObject::borrowed(BATCHES_NOT_SUPPORTED_CODE, BATCHES_NOT_SUPPORTED_MSG, None);
            self.reply(MethodResponse::error(Id::Null, error));
            return;
        }
        match envelope::classify(text) {
            envelope::Message::Single(Entry::Request(request)) => match self.session.take(1) {
                Ok(()) => self.on_request(request),
                Err(spent) => {
                    let id = rpc_id(&request.id);
                    self.reply(MethodResponse::error(id, rate_limited(spent)));
                }
            },
            envelope::Message::Single(Entry::Notification) => {}
            envelope::Message::Single(Entry::Refused(refusal)) => {
                self.replies.push_back(refused(refusal));
            }
            envelope::Message::Batch(batch) => self.on_batch(&batch),
        }
    }

    /// A binary message that starts as a frame does: a publisher's frame (§10.2). A refused
    /// frame is told with `stream.refused` and spends one request of the connection's budget,
    /// so a flood of bad frames meets the same limits as a flood of bad requests.
    fn on_frame(&mut self, bytes: Bytes) {
        let Err(refused) = self.shared.api.streams.publish(bytes, &self.publishing) else {
            return;
        };
        tracing::debug!(error = %refused.error, "frame refused");
        if self.session.take(1).is_ok() {
            self.replies.push_back(streams::refused(*refused));
        }
    }

    /// Checks 6 and 7 of §6.3 for a method served here: room for one more subscription or
    /// watch if it opens one, then the parameters. On failure the answer is queued and `None`
    /// returned.
    fn admit(
        &mut self,
        id: &Id<'static>,
        params: envelope::Params<'_>,
        opens: bool,
    ) -> Option<jsonrpsee::types::Params<'static>> {
        if opens && self.open() >= self.max_open() {
            let error =
                reject_too_many_subscriptions(self.shared.limits.max_subscriptions_per_connection);
            self.reply(MethodResponse::error(id.clone(), error));
            return None;
        }
        match checked_params(params) {
            Ok(params) => Some(params),
            Err(e) => {
                self.reply(MethodResponse::error(id.clone(), e));
                None
            }
        }
    }

    /// Subscriptions and watches open or opening, counted together against the limit.
    fn open(&self) -> usize {
        self.subscriptions.len() + self.watches.len() + self.opening
    }

    fn max_open(&self) -> usize {
        self.shared.limits.max_subscriptions_per_connection as usize
    }

    fn on_request(&mut self, request: envelope::Request<'_>) {
        let id = rpc_id(&request.id);
        match request.method.as_ref() {
            PUBLISH => {
                let Some(params) = self.admit(&id, request.params, false) else {
                    return;
                };
                let (shared, session) = (self.shared.clone(), self.session.clone());
                self.start(Box::pin(streams::publish(shared, session, id, params)));
            }
            WATCH => {
                // The room for one more watch is checked after the space (§10.3), by the call.
                let Some(params) = self.admit(&id, request.params, false) else {
                    return;
                };
                let (space, since) = match streams::watch_params(&params) {
                    Ok(parsed) => parsed,
                    Err(e) => return self.reply(MethodResponse::error(id, e)),
                };
                // A second watch of a stream replaces the first, so it needs no room.
                let room = self.watches.iter().any(|w| *w.space() == space)
                    || self.open() < self.max_open();
                self.opening += 1;
                let watch = streams::Watch { space, since, room };
                self.start(Box::pin(streams::watch(self.shared.clone(), id, watch)));
            }
            UNWATCH => {
                let Some(params) = self.admit(&id, request.params, false) else {
                    return;
                };
                let response = match streams::unwatch_params(&params) {
                    Ok(space) => {
                        let before = self.watches.len();
                        self.watches.retain(|w| *w.space() != space);
                        let found = self.watches.len() != before;
                        MethodResponse::response(
                            id,
                            ResponsePayload::success(found),
                            self.shared.max_response(),
                        )
                    }
                    Err(e) => MethodResponse::error(id, e),
                };
                self.reply(response);
            }
            SUBSCRIBE => {
                let Some(params) = self.admit(&id, request.params, true) else {
                    return;
                };
                self.opening += 1;
                let sub = self.next_subscription;
                self.next_subscription += 1;
                let call = subscribe(self.shared.clone(), self.session.clone(), id, params, sub);
                self.start(Box::pin(call));
            }
            UNSUBSCRIBE => {
                let found = match request.params {
                    envelope::Params::Unstructured => {
                        self.reply(MethodResponse::error(id, unstructured_params()));
                        return;
                    }
                    envelope::Params::Absent => false,
                    envelope::Params::Structured(text) => match subscription_named(text) {
                        Some(sub) => {
                            let before = self.subscriptions.len();
                            self.subscriptions.retain(|s| s.id != sub);
                            self.subscriptions.len() != before
                        }
                        None => false,
                    },
                };
                let max = self.shared.max_response();
                self.reply(MethodResponse::response(
                    id,
                    ResponsePayload::success(found),
                    max,
                ));
            }
            name => match call(&self.shared, &self.session, name, id, request.params) {
                Ok(call) => self.start(call),
                Err(response) => self.reply(response),
            },
        }
    }

    /// A batch: one answer holding every call's answer, in one message.
    fn on_batch(&mut self, batch: &envelope::Batch<'_>) {
        let max_batch = self.shared.limits.max_batch as usize;
        if batch.len() > max_batch {
            self.reply(MethodResponse::error(
                Id::Null,
                reject_too_big_batch_request(max_batch),
            ));
            return;
        }
        let cost = u32::try_from(batch.len()).unwrap_or(u32::MAX);
        let paid = self.session.take(cost);
        let mut parts: Vec<Call> = Vec::with_capacity(batch.len());
        for entry in batch.entries() {
            let ready = |done| -> Call { Box::pin(std::future::ready(done)) };
            let part: Call = match entry {
                Entry::Refused(refusal) => ready(Done::Reply(refused(refusal))),
                Entry::Notification => ready(Done::Silent),
                Entry::Request(request) => {
                    let id = rpc_id(&request.id);
                    match (&paid, request.method.as_ref()) {
                        (Err(spent), _) => ready(Done::Reply(into_text(MethodResponse::error(
                            id,
                            rate_limited(*spent),
                        )))),
                        (Ok(()), SUBSCRIBE | UNSUBSCRIBE | PUBLISH | WATCH | UNWATCH) => {
                            let error = ErrorObject::owned(
                                RpcCode::InvalidRequest.code(),
                                "space.subscribe, space.unsubscribe, stream.publish, \
                                 stream.watch and stream.unwatch cannot be batched",
                                None::<()>,
                            );
                            ready(Done::Reply(into_text(MethodResponse::error(id, error))))
                        }
                        (Ok(()), name) => {
                            match call(&self.shared, &self.session, name, id, request.params) {
                                Ok(call) => call,
                                Err(response) => ready(Done::Reply(into_text(response))),
                            }
                        }
                    }
                }
            };
            parts.push(part);
        }
        let max = self.shared.max_response();
        self.start(Box::pin(async move {
            let answers = futures_util::future::join_all(parts).await;
            let answers: Vec<String> = answers
                .into_iter()
                .filter_map(|done| match done {
                    Done::Reply(reply) => Some(reply),
                    _ => None,
                })
                .collect();
            if answers.is_empty() {
                return Done::Silent;
            }
            let length = answers.iter().map(|a| a.len() + 1).sum::<usize>() + 1;
            if length > max {
                let error = reject_too_big_batch_response(max);
                return Done::Reply(into_text(MethodResponse::error(Id::Null, error)));
            }
            let mut joined = String::with_capacity(length);
            joined.push('[');
            for (i, answer) in answers.iter().enumerate() {
                if i > 0 {
                    joined.push(',');
                }
                joined.push_str(answer);
            }
            joined.push(']');
            Done::Reply(joined)
        }));
    }
}

impl<S> Drop for Connection<S> {
    fn drop(&mut self) {
        for stream in self.publishing.values() {
            stream.unpublish();
        }
    }
}
