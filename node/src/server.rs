//! The listener: WebSocket JSON-RPC and `GET /health` on one port.
//!
//! Each accepted TCP connection is served by hyper (HTTP/1.1) until it upgrades to a
//! WebSocket, which jsonrpsee then runs. Every connection gets a [`Session`], reachable from
//! every handler through the request's extensions, and two ways to end it: a graceful stop
//! (in-flight calls finish, then a close frame) and a kill (the socket is dropped at once).
//!
//! A peer cannot make the node hold memory for it without bound:
//! - a connection that has not authenticated by the deadline is killed;
//! - one that keeps sending after its request budget is spent (it ignores `rate_limited`) is
//!   killed once it has been refused `request_burst` times in a row;
//! - one that stops reading, so the node's writes to it stall for [`WRITE_STALL`], is killed:
//!   every response and notification it would have received was waiting in memory.
//!
//! Sessions per IP address and in all are counted here; over either limit the upgrade is
//! answered with HTTP 429.

use std::collections::HashMap;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use jsonrpsee::server::middleware::rpc::{
    Batch, BatchEntry, BatchEntryErr, MethodResponse, Notification, Request, ResponseFuture,
    RpcServiceBuilder, RpcServiceT,
};
use jsonrpsee::server::{
    BatchRequestConfig, ConnectionGuard, ConnectionState, HttpBody, HttpResponse, ServerConfig,
    stop_channel, ws,
};
use jsonrpsee::types::ErrorObjectOwned;
use jsonrpsee::{Methods, RpcModule};
use northstar_protocol::api::ErrorCode;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::auth::Session;
use crate::config::Limits;

type ResponseFut = Pin<
    Box<dyn std::future::Future<Output = Result<HttpResponse, std::convert::Infallible>> + Send>,
>;

/// How long shutdown waits for connections to finish before killing them. Subscriptions keep
/// a connection busy for as long as it lives, so this is short; writes finish regardless,
/// because the writer drains its own queue after the listener stops.
const DRAIN_DEADLINE: Duration = Duration::from_secs(3);

/// How long the node's writes to a connection may stall before it is killed.
pub const WRITE_STALL: Duration = Duration::from_secs(10);

/// How often each connection's watcher looks at its write clock.
const WATCH_EVERY: Duration = Duration::from_secs(2);

/// The time a server uses for its `Instant`s of write stalls: ms since the listener started.
#[derive(Debug)]
struct Clock(Instant);

impl Clock {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.0.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

/// Serve `module` on `listener` until `shutdown`, then close every connection.
pub async fn serve(
    listener: TcpListener,
    module: RpcModule<()>,
    limits: Limits,
    shutdown: CancellationToken,
) {
    // jsonrpsee's WebSocket path bounds incoming messages by the response limit, so the two
    // are equal; results are paged by bytes to fit.
    let config = ServerConfig::builder()
        .ws_only()
        .max_request_body_size(limits.max_frame_bytes)
        .max_response_body_size(limits.max_frame_bytes)
        .max_subscriptions_per_connection(limits.max_subscriptions_per_connection)
        .set_message_buffer_capacity(limits.subscriber_queue.max(1))
        .set_batch_request_config(if limits.max_batch == 0 {
            BatchRequestConfig::Disabled
        } else {
            BatchRequestConfig::Limit(limits.max_batch)
        })
        .build();
    let (rate, burst) = (limits.requests_per_second, limits.request_burst.max(1));
    let middleware =
        RpcServiceBuilder::new().layer_fn(move |inner| RateLimit { inner, rate, burst });
    let methods: Methods = module.into();
    let tracker = TaskTracker::new();
    let slots = IpSlots::new(limits.max_connections_per_ip);
    let guard = ConnectionGuard::new(limits.max_connections as usize);
    let clock = Arc::new(Clock(Instant::now()));
    let kill_all = CancellationToken::new();
    let next_id = AtomicU64::new(1);
    loop {
        let (socket, peer) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        // Small JSON-RPC messages must not wait for Nagle's algorithm (up to 40 ms per write).
        if let Err(e) = socket.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
        let id = next_id.fetch_add(1, Ordering::Relaxed);
        let (conn_stop, conn_handle) = stop_channel();
        let kill = kill_all.child_token();
        let stall = Arc::new(AtomicU64::new(0));
        let session = Arc::new(Session::new(id, peer, conn_handle, kill.clone(), burst));
        let span = tracing::debug_span!("conn", id, peer = %peer);

        tracker.spawn(
            watch(
                session.clone(),
                stall.clone(),
                clock.clone(),
                limits.auth_timeout(),
                shutdown.clone(),
            )
            .instrument(span.clone()),
        );

        let upgrade = Upgrade {
            config: config.clone(),
            methods: methods.clone(),
            middleware: middleware.clone(),
            stop: conn_stop,
            guard: guard.clone(),
            slots: slots.clone(),
            tracker: tracker.clone(),
            span: span.clone(),
        };
        let service = tower::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
            let (upgrade, session) = (upgrade.clone(), session.clone());
            let response: ResponseFut =
                Box::pin(async move { Ok(upgrade.handle(req, &session).await) });
            response
        });
        let io = TokioIo::new(Watched {
            inner: socket,
            stall,
            clock: clock.clone(),
        });
        let conn = hyper::server::conn::http1::Builder::new()
            .serve_connection(io, TowerToHyperService::new(service))
            .with_upgrades();
        tracker.spawn(
            async move {
                tokio::select! {
                    // The peer going away mid-request is its business, not an error of ours.
                    _ = conn => {}
                    () = kill.cancelled() => {}
                }
            }
            .instrument(span),
        );
    }
    tracing::info!("stopped accepting; closing connections");
    tracker.close();
    if tokio::time::timeout(DRAIN_DEADLINE, tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!("some connections did not close in time; dropping them");
        kill_all.cancel();
        tracker.wait().await;
    }
}

/// What a connection needs to turn an upgrade request into a WebSocket session.
#[derive(Clone)]
struct Upgrade<L> {
    config: ServerConfig,
    methods: Methods,
    middleware: RpcServiceBuilder<L>,
    stop: jsonrpsee::server::StopHandle,
    guard: ConnectionGuard,
    slots: IpSlots,
    tracker: TaskTracker,
    span: tracing::Span,
}

impl<L> Upgrade<L>
where
    L: tower::Layer<jsonrpsee::server::middleware::rpc::RpcService> + Clone + Send + Sync + 'static,
    <L as tower::Layer<jsonrpsee::server::middleware::rpc::RpcService>>::Service: RpcServiceT<
            MethodResponse = MethodResponse,
            BatchResponse = MethodResponse,
            NotificationResponse = MethodResponse,
        > + Send
        + Sync
        + 'static,
{
    async fn handle(
        &self,
        mut req: hyper::Request<hyper::body::Incoming>,
        session: &Arc<Session>,
    ) -> HttpResponse {
        if !ws::is_upgrade_request(&req) {
            return if req.uri().path() == "/health" {
                plain(200, "{\"status\":\"ok\"}")
            } else {
                plain(
                    404,
                    "this port speaks JSON-RPC over WebSocket; GET /health for health",
                )
            };
        }
        // Only WebSocket sessions count against the limits; each place is held by the session
        // and given back when the last reference to it goes.
        let Some(slot) = self.slots.take(session.peer.ip()) else {
            return plain(429, "too many connections from this address");
        };
        let Some(permit) = self.guard.try_acquire() else {
            return plain(429, "the node has as many connections as it allows");
        };
        session.hold_slot(slot);
        req.extensions_mut().insert(session.clone());
        let state = ConnectionState::new(
            self.stop.clone(),
            u32::try_from(session.id).unwrap_or(u32::MAX),
            permit,
        );
        match ws::connect(
            req,
            self.config.clone(),
            self.methods.clone(),
            state,
            self.middleware.clone(),
        )
        .await
        {
            Ok((response, connection)) => {
                let kill = session.kill_token();
                self.tracker.spawn(
                    async move {
                        tokio::select! {
                            () = connection => {}
                            () = kill.cancelled() => tracing::debug!("connection killed"),
                        }
                    }
                    .instrument(self.span.clone()),
                );
                response
            }
            Err(response) => response,
        }
    }
}

/// Per connection: close it at shutdown (gracefully, then by force), kill it if it has not
/// authenticated in time, and kill it if the node's writes to it stall.
async fn watch(
    session: Arc<Session>,
    stall: Arc<AtomicU64>,
    clock: Arc<Clock>,
    auth_deadline: Duration,
    shutdown: CancellationToken,
) {
    let kill = session.kill_token();
    let deadline = tokio::time::sleep(auth_deadline);
    tokio::pin!(deadline);
    let mut deadline_done = false;
    let mut tick = tokio::time::interval(WATCH_EVERY);
    loop {
        tokio::select! {
            () = kill.cancelled() => return,
            () = shutdown.cancelled() => {
                session.close();
                return;
            }
            () = &mut deadline, if !deadline_done => {
                deadline_done = true;
                if session.did().is_none() {
                    tracing::debug!("closing: not authenticated in time");
                    session.kill();
                    return;
                }
            }
            _ = tick.tick() => {
                let since = stall.load(Ordering::Relaxed);
                let stalled_ms = clock.now_ms().saturating_sub(since);
                if since != 0 && stalled_ms > u64::try_from(WRITE_STALL.as_millis()).unwrap_or(u64::MAX) {
                    tracing::debug!(stalled_ms, "closing: the peer stopped reading");
                    session.kill();
                    return;
                }
            }
        }
    }
}

/// A socket that records since when its writes have been blocked (0: they are not).
struct Watched {
    inner: TcpStream,
    stall: Arc<AtomicU64>,
    clock: Arc<Clock>,
}

impl Watched {
    fn note<T>(&self, poll: Poll<T>) -> Poll<T> {
        match poll {
            Poll::Pending => {
                // Keep the first instant of the stall; `max(1)` because 0 means "no stall".
                let now = self.clock.now_ms().max(1);
                let _ = self
                    .stall
                    .compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed);
            }
            Poll::Ready(_) => self.stall.store(0, Ordering::Relaxed),
        }
        poll
    }
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.note(poll)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_flush(cx);
        self.note(poll)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Open WebSocket sessions per IP address.
#[derive(Debug, Clone)]
struct IpSlots {
    max: u32,
    counts: Arc<Mutex<HashMap<IpAddr, u32>>>,
}

/// One WebSocket session's place in its IP address's count; dropping it frees the place.
#[derive(Debug)]
pub struct IpSlot {
    ip: IpAddr,
    counts: Arc<Mutex<HashMap<IpAddr, u32>>>,
}

impl IpSlots {
    fn new(max: u32) -> Self {
        Self {
            max,
            counts: Arc::default(),
        }
    }

    fn take(&self, ip: IpAddr) -> Option<IpSlot> {
        let ip = per_ip_key(ip);
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let count = counts.entry(ip).or_insert(0);
        if *count >= self.max {
            return None;
        }
        *count += 1;
        Some(IpSlot {
            ip,
            counts: self.counts.clone(),
        })
    }
}

/// The address a connection counts against: IPv4 as it is, IPv6 by its /64, which one host
/// usually holds whole.
fn per_ip_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut segments = v6.segments();
                segments[4..].fill(0);
                IpAddr::V6(segments.into())
            }
        },
    }
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = counts.get_mut(&self.ip) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                counts.remove(&self.ip);
            }
        }
    }
}

fn plain(status: u16, body: &'static str) -> HttpResponse {
    let mut response = HttpResponse::new(HttpBody::from(body));
    *response.status_mut() =
        hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    response
}

fn rate_limited() -> ErrorObjectOwned {
    ErrorObjectOwned::owned(
        ErrorCode::RateLimited.code(),
        "too many requests on this connection; slow down",
        Some(ErrorCode::RateLimited.name()),
    )
}

/// Refuses calls beyond the connection's request budget.
#[derive(Clone)]
struct RateLimit<S> {
    inner: S,
    rate: u32,
    burst: u32,
}

impl<S> RateLimit<S> {
    fn allow(&self, extensions: &jsonrpsee::Extensions, cost: u32) -> bool {
        extensions
            .get::<Arc<Session>>()
            .is_none_or(|s| s.take(cost, self.rate, self.burst))
    }
}

impl<S> RpcServiceT for RateLimit<S>
where
    S: RpcServiceT<
            MethodResponse = MethodResponse,
            BatchResponse = MethodResponse,
            NotificationResponse = MethodResponse,
        > + Send
        + Sync
        + Clone
        + 'static,
{
    type MethodResponse = S::MethodResponse;
    type NotificationResponse = S::NotificationResponse;
    type BatchResponse = S::BatchResponse;

    fn call<'a>(&self, req: Request<'a>) -> impl Future<Output = Self::MethodResponse> + Send + 'a {
        if self.allow(req.extensions(), 1) {
            ResponseFuture::future(self.inner.call(req))
        } else {
            ResponseFuture::ready(MethodResponse::error(req.id, rate_limited()))
        }
    }

    fn batch<'a>(
        &self,
        mut batch: Batch<'a>,
    ) -> impl Future<Output = Self::BatchResponse> + Send + 'a {
        let cost = u32::try_from(batch.len()).unwrap_or(u32::MAX);
        if !self.allow(batch.extensions(), cost) {
            for entry in batch.iter_mut() {
                if let Ok(BatchEntry::Call(req)) = entry {
                    *entry = Err(BatchEntryErr::new(req.id.clone(), rate_limited()));
                }
            }
        }
        self.inner.batch(batch)
    }

    fn notification<'a>(
        &self,
        n: Notification<'a>,
    ) -> impl Future<Output = Self::NotificationResponse> + Send + 'a {
        self.inner.notification(n)
    }
}
