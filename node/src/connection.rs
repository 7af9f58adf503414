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
//! with this connection's [`Session`] in the extensions; only `space.subscribe` and
//! `space.unsubscribe` are served here, by [`crate::rpc::feed`], so that subscribers share each
//! event's JSON.
//!
//! Bounds: at most [`MAX_IN_FLIGHT`] calls and answers per connection (reading stops until
//! they drain), a write buffer of about [`WRITE_BATCH`] bytes (nothing more is taken while the
//! socket cannot take it), `max_subscriptions_per_connection` subscriptions, messages of at
//! most `max_frame_bytes` answered with −32007 and of more than [`TOO_BIG_FACTOR`] times that
//! refused with close status 1009. A connection whose writes make no progress for
//! [`WRITE_STALL`] is dropped, so is one that has not authenticated by its deadline, and one
//! whose request is refused for its budget past `request_burst` unforgiven refusals (`auth.rs`): reading
//! stops at that message, and nothing more of what was read is run or answered.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::stream::FuturesUnordered;
use futures_util::{SinkExt, StreamExt};
use jsonrpsee::core::server::{MethodCallback, MethodResponse, Methods, ResponsePayload};
use jsonrpsee::types::error::{
    BATCHES_NOT_SUPPORTED_CODE, BATCHES_NOT_SUPPORTED_MSG, ErrorCode as RpcCode,
    INVALID_PARAMS_CODE, INVALID_PARAMS_MSG, reject_too_big_batch_request,
    reject_too_big_batch_response, reject_too_big_request, reject_too_many_subscriptions,
};
use jsonrpsee::types::{ErrorObject, ErrorObjectOwned, Id, Params};
use jsonrpsee::{ConnectionId, Extensions};
use northstar_protocol::address::SpaceId;
use northstar_protocol::api::ErrorCode;
use northstar_protocol::{canonical, method};
use serde::Deserialize;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message, error::CapacityError};
use tokio_util::sync::CancellationToken;

use crate::admission::Slot;
use crate::auth::{Session, Spent};
use crate::config::Limits;
use crate::rpc::Api;
use crate::rpc::feed::{FeedItem, FeedStream};
use northstar_protocol::envelope::{self, Entry, Refusal};

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

/// The two methods served here rather than by `jsonrpsee`.
const SUBSCRIBE: &str = method::SPACE_SUBSCRIBE;
const UNSUBSCRIBE: &str = method::SPACE_UNSUBSCRIBE;

/// What every connection of a listener shares.
#[derive(Debug)]
pub struct Shared {
    /// The methods, `space.subscribe` and `space.unsubscribe` excepted.
    pub methods: Methods,
    /// For subscriptions.
    pub api: Arc<Api>,
    /// The node's limits.
    pub limits: Limits,
}

impl Shared {
    /// The WebSocket settings for this node's limits.
    pub fn websocket_config(&self) -> WebSocketConfig {
        let cap = (self.limits.max_frame_bytes as usize).saturating_mul(TOO_BIG_FACTOR);
        WebSocketConfig::default()
            .read_buffer_size(READ_BUFFER)
            .write_buffer_size(WRITE_BATCH)
            .max_message_size(Some(cap))
            .max_frame_size(Some(cap))
    }

    fn max_response(&self) -> usize {
        self.limits.max_frame_bytes as usize
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
    /// A subscription refused: send the answer.
    NotOpened(String),
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
    /// `space.subscribe` calls running, counted against the limit with the open ones.
    opening: usize,
    next_subscription: u64,
    /// Where the next look for a subscription's notification starts, so none starves.
    turn: usize,
    /// Written to the buffer but not yet flushed.
    dirty: bool,
    stall: Option<Pin<Box<Sleep>>>,
    auth_deadline: Option<Pin<Box<Sleep>>>,
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
            next_subscription: 1,
            turn: 0,
            dirty: false,
            stall: None,
            auth_deadline: Some(Box::pin(tokio::time::sleep_until(deadline))),
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
        if let Some(deadline) = &mut self.auth_deadline {
            if self.session.did().is_some() {
                // Authenticated: no deadline, and no timer held for the rest of the session.
                self.auth_deadline = None;
            } else if deadline.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Exit::AuthDeadline);
            }
        }
        Poll::Pending
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
            let Some(text) = self.next_outgoing(cx) else {
                return Ok(wrote);
            };
            if let Err(e) = self.ws.start_send_unpin(Message::text(text)) {
                tracing::debug!(error = %crate::report::Causes(&e), "write failed");
                return Err(Exit::Gone);
            }
            self.dirty = true;
            wrote = true;
        }
    }

    /// The next answer, or else the next notification of a subscription that has one.
    fn next_outgoing(&mut self, cx: &mut Context<'_>) -> Option<String> {
        if let Some(reply) = self.replies.pop_front() {
            return Some(reply);
        }
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
            Done::Silent => {}
        }
    }

    fn reply(&mut self, response: MethodResponse) {
        self.replies.push_back(into_text(response));
    }

    fn on_message(&mut self, message: Message) {
        let text = match &message {
            Message::Text(text) => text.as_str(),
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

    fn on_request(&mut self, request: envelope::Request<'_>) {
        let id = rpc_id(&request.id);
        match request.method.as_ref() {
            SUBSCRIBE => {
                let max = self.shared.limits.max_subscriptions_per_connection;
                if self.subscriptions.len() + self.opening >= max as usize {
                    self.reply(MethodResponse::error(
                        id,
                        reject_too_many_subscriptions(max),
                    ));
                    return;
                }
                let params = match checked_params(request.params) {
                    Ok(params) => params,
                    Err(e) => {
                        self.reply(MethodResponse::error(id, e));
                        return;
                    }
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
                        (Ok(()), SUBSCRIBE | UNSUBSCRIBE) => {
                            let error = ErrorObject::owned(
                                RpcCode::InvalidRequest.code(),
                                "space.subscribe and space.unsubscribe cannot be batched",
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

/// A call of one of the `jsonrpsee` methods, with the session in its extensions.
/// The method must exist (check 5 of §6.3), then its parameters pass [`checked_params`]
/// (the first part of check 7; the method's decoder makes the rest).
fn call(
    shared: &Arc<Shared>,
    session: &Arc<Session>,
    name: &str,
    id: Id<'static>,
    params: envelope::Params<'_>,
) -> Result<Call, MethodResponse> {
    let Some(callback) = shared.methods.method(name) else {
        return Err(MethodResponse::error(id, RpcCode::MethodNotFound));
    };
    let params = match checked_params(params) {
        Ok(params) => params,
        Err(e) => return Err(MethodResponse::error(id, e)),
    };
    let mut extensions = Extensions::new();
    extensions.insert(session.clone());
    let conn = ConnectionId(usize::try_from(session.id).unwrap_or(usize::MAX));
    let max = shared.max_response();
    match callback {
        MethodCallback::Async(callback) => {
            let callback = callback.clone();
            Ok(Box::pin(async move {
                let response = callback(id, params, conn, max, extensions).await;
                Done::Reply(into_text(response))
            }))
        }
        MethodCallback::Sync(callback) => {
            let response = callback(id, params, max, extensions);
            Ok(Box::pin(std::future::ready(Done::Reply(into_text(
                response,
            )))))
        }
        // The node registers no jsonrpsee subscriptions: they are served here.
        MethodCallback::Subscription(_) | MethodCallback::Unsubscription(_) => {
            Err(MethodResponse::error(id, RpcCode::MethodNotFound))
        }
    }
}

/// `space.subscribe`: check, open the feed, answer with the subscription's id.
async fn subscribe(
    shared: Arc<Shared>,
    session: Arc<Session>,
    id: Id<'static>,
    params: Params<'static>,
    sub: u64,
) -> Done {
    let max = shared.max_response();
    let (space, since) = match parse_subscribe(&params) {
        Ok(parsed) => parsed,
        Err(e) => {
            return Done::NotOpened(into_text(MethodResponse::error(id, e)));
        }
    };
    let reader = session.did().cloned();
    match shared.api.subscribe(space, since, reader).await {
        Ok(feed) => Done::Subscribed {
            reply: into_text(MethodResponse::response(
                id,
                ResponsePayload::success(sub),
                max,
            )),
            id: sub,
            feed,
        },
        Err(e) => Done::NotOpened(into_text(MethodResponse::error(
            id,
            ErrorObjectOwned::from(e),
        ))),
    }
}

/// `space.subscribe`'s parameters: `[space, since]`, or `{"space", "since"}`.
fn parse_subscribe(params: &Params<'_>) -> Result<(SpaceId, u64), ErrorObjectOwned> {
    #[derive(Deserialize)]
    struct Named {
        space: SpaceId,
        since: u64,
    }
    if params.is_object() {
        let named: Named = params.parse()?;
        return Ok((named.space, named.since));
    }
    let mut sequence = params.sequence();
    let space = sequence.next()?;
    let since = sequence.next()?;
    Ok((space, since))
}

/// The subscription `space.unsubscribe`'s parameters name, if they name one this node could
/// have issued: the first element of an array or the member `subscription` of an object, an
/// integer. Anything else names none, and the call answers `false` rather than failing
/// (§6.3.15), so these parameters skip the strict check.
fn subscription_named(params: &str) -> Option<u64> {
    let params: Value = serde_json::from_str(params).ok()?;
    let id = match &params {
        Value::Array(items) => items.first()?,
        Value::Object(members) => members.get("subscription")?,
        _ => return None,
    };
    id.as_u64()
}

/// The parameters as the methods take them, once they are an array or an object (or absent)
/// and their whole text passes the strict rules of §3.1: no repeated key at any depth, no
/// fraction or exponent, no integer beyond 2^53-1. Otherwise −32602, whose data starts with
/// the §3.1 error name.
fn checked_params(params: envelope::Params<'_>) -> Result<Params<'static>, ErrorObjectOwned> {
    match params {
        envelope::Params::Absent => Ok(Params::new(None)),
        envelope::Params::Unstructured => Err(unstructured_params()),
        envelope::Params::Structured(text) => match canonical::check_strict(text) {
            // Copied once: the call outlives the message it came in.
            Ok(()) => Ok(Params::new(Some(text)).into_owned()),
            Err(e) => Err(invalid_params(format!("{}: {e}", e.code()))),
        },
    }
}

fn unstructured_params() -> ErrorObjectOwned {
    invalid_params("params must be an array or an object".into())
}

fn invalid_params(data: String) -> ErrorObjectOwned {
    ErrorObjectOwned::owned(INVALID_PARAMS_CODE, INVALID_PARAMS_MSG, Some(data))
}

/// A `space.event` notification for subscription `id`.
///
/// Built to its exact length: the WebSocket layer then takes the text's buffer as it is,
/// without allocating a header for a partly used one.
fn notification(id: u64, item: &FeedItem) -> String {
    let (field, value) = match item {
        FeedItem::Event(json) => ("result", std::borrow::Cow::Borrowed(json.as_str())),
        FeedItem::End(text) => (
            "error",
            // A string always serialises.
            std::borrow::Cow::Owned(serde_json::to_string(text).unwrap_or_default()),
        ),
    };
    let id = id.to_string();
    let parts = [
        r#"{"jsonrpc":"2.0","method":""#,
        NOTIFICATION,
        r#"","params":{"subscription":"#,
        &id,
        r#",""#,
        field,
        r#"":"#,
        &value,
        "}}",
    ];
    let mut out = String::with_capacity(parts.iter().map(|p| p.len()).sum());
    for part in parts {
        out.push_str(part);
    }
    out
}

/// The id an answer carries, in `jsonrpsee`'s terms.
fn rpc_id(id: &envelope::Id<'_>) -> Id<'static> {
    match id {
        envelope::Id::Number(n) => Id::Number(*n),
        envelope::Id::Str(s) => Id::Str(s.clone().into_owned().into()),
    }
}

/// The answer to a message the envelope refused.
fn refused(refusal: Refusal<'_>) -> String {
    let id = refusal.id.as_ref().map_or(Id::Null, rpc_id);
    let error = ErrorObject::owned(refusal.fault.code(), refusal.reason, None::<()>);
    into_text(MethodResponse::error(id, error))
}

fn into_text(response: MethodResponse) -> String {
    Box::<str>::from(response.into_json()).into_string()
}

/// The answer to a request that found a budget empty; the message says which.
fn rate_limited(spent: Spent) -> ErrorObjectOwned {
    ErrorObjectOwned::owned(
        ErrorCode::RateLimited.code(),
        spent.message(),
        Some(ErrorCode::RateLimited.name()),
    )
}
