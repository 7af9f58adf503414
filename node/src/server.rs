//! The listener: WebSocket JSON-RPC, the plain HTTP pages of [`crate::status`] and the web app
//! of [`crate::app`] on one port.
//!
//! Each accepted TCP connection is served by hyper (HTTP/1.1) until it asks for a WebSocket;
//! the upgraded socket then becomes a [`Connection`], one task that reads, runs and writes for
//! that session. Every connection has a [`Session`] and two ways to end: a graceful stop at
//! shutdown (in-flight calls finish, then a close frame) and a kill (the socket is dropped at
//! once).
//!
//! Sessions per IP address and in all are counted here; over either limit the upgrade is
//! answered with HTTP 429. TCP connections that have not upgraded yet are counted too, in a
//! smaller pool: over it a new TCP connection is closed unread, and one that has not upgraded
//! by the handshake deadline is closed. Until it has sent a whole request head a connection
//! costs its task, its socket and a buffer the size of what it sent (`read_head`); hyper and
//! its buffers come in only then, so connections that trickle a head (slowloris) cost little,
//! and the memory they took is small enough to be given back. A TCP connection that has not become an authenticated
//! session by the auth deadline is dropped, whether it upgraded or not.
//!
//! With TLS ([`crate::tls`]) the TLS handshake comes first, under the same handshake
//! deadline, and everything above runs inside it: `https://` pages and `wss://` sessions on the
//! one port. A handshake that offers ACME's `acme-tls/1` is the CA checking a challenge: it is
//! answered with the challenge certificate and closed.
//!
//! Each accepted socket keeps little unsent data in the kernel ([`NOTSENT_LOWAT`]), so the
//! writes to a peer that stops reading stall soon and the connection's stall rule applies.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::admission::{Slot, Slots};
use crate::app::App;
use crate::auth::{Budgets, Session};
use crate::connection::{Connection, Shared, Watched};
use crate::tls::ACME_TLS_ALPN;

/// How long shutdown waits for connections to finish before killing them. Subscriptions keep
/// a connection busy for as long as it lives, so this is short.
const DRAIN_DEADLINE: Duration = Duration::from_secs(3);

/// The most bytes the kernel holds unsent for one socket before it stops taking writes
/// (`TCP_NOTSENT_LOWAT`). Data sent but not yet acknowledged is not counted, so a reader's
/// throughput is not capped; a peer that stops reading stalls the writes after about this
/// much plus what its own receive window took.
pub const NOTSENT_LOWAT: u32 = 16 * 1024;

/// The most bytes hyper buffers for one HTTP request's head (its smallest allowed value is
/// 8 KiB). A WebSocket upgrade request is a few hundred bytes.
const HTTP_BUFFER: usize = 16 * 1024;

/// The most bytes of a request read before hyper takes the connection over, looking for the
/// end of the head; a head longer than this is left to hyper to refuse.
const HEAD_LIMIT: usize = 8 * 1024;

/// The first read's buffer while a head is read; it doubles as the head grows.
const HEAD_FIRST_READ: usize = 512;

/// The body of every answer to a plain HTTP request: text or an embedded file, or a blob
/// response streamed as it is read ([`crate::blobs::http`]).
type Body = http_body_util::Either<Full<Bytes>, crate::blobs::http::BlobBody>;

/// How often a connection past its handshake deadline checks whether its blob transfer ended.
const TRANSFER_RECHECK: Duration = Duration::from_secs(1);

/// Blob requests under way on one connection: while there is one, the handshake and auth
/// deadlines wait (a large upload or download takes longer than either).
#[derive(Debug, Default)]
struct Transfers(std::sync::atomic::AtomicUsize);

/// One blob request under way; counted until dropped (with its response body).
struct Busy(Arc<Transfers>);

impl Busy {
    fn new(transfers: &Arc<Transfers>) -> Self {
        transfers.0.fetch_add(1, Ordering::Relaxed);
        Self(transfers.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Until `deadline`, and past it for as long as a blob transfer is under way.
async fn deadline_unless_busy(deadline: Instant, transfers: &Transfers) {
    tokio::time::sleep_until(deadline).await;
    while transfers.0.load(Ordering::Relaxed) > 0 {
        tokio::time::sleep(TRANSFER_RECHECK).await;
    }
}

/// Serve `shared`'s methods on `listener` until `shutdown`, then close every connection; with
/// `tls`, inside TLS.
pub async fn serve(
    listener: TcpListener,
    shared: Shared,
    tls: Option<TlsAcceptor>,
    shutdown: CancellationToken,
) {
    let limits = shared.limits.clone();
    let shared = Arc::new(shared);
    let tracker = TaskTracker::new();
    let slots = Slots::new(limits.max_connections, limits.max_connections_per_ip);
    let pending = Slots::new(
        limits.max_pending_connections,
        limits.max_pending_connections_per_ip,
    );
    let budgets = Arc::new(Budgets::new(&limits));
    let kill_all = CancellationToken::new();
    let next_id = AtomicU64::new(1);
    loop {
        let (socket, peer) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %crate::report::Causes(&e), "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        // Over the pool of connections still to upgrade: closed before anything is read or
        // allocated for it.
        let Ok(waiting) = pending.take(peer.ip()) else {
            tracing::trace!(peer = %peer, "refused: too many connections waiting to upgrade");
            drop(socket);
            continue;
        };
        tune(&socket);
        let now = Instant::now();
        let accept = Accept {
            id: next_id.fetch_add(1, Ordering::Relaxed),
            peer,
            deadline: now + limits.auth_timeout(),
            handshake_deadline: now + limits.handshake_timeout(),
            shared: shared.clone(),
            slots: slots.clone(),
            budgets: budgets.clone(),
            tracker: tracker.clone(),
            kill: kill_all.child_token(),
            shutdown: shutdown.clone(),
            tls: tls.clone(),
            transfers: Arc::default(),
        };
        let span = tracing::debug_span!("conn", id = accept.id, peer = %peer);
        tracker.spawn(accept.serve_http(socket, waiting).instrument(span));
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

/// Socket options for every accepted connection.
fn tune(socket: &TcpStream) {
    // Small JSON-RPC messages must not wait for Nagle's algorithm (up to 40 ms per write).
    if let Err(e) = socket.set_nodelay(true) {
        tracing::debug!(error = %crate::report::Causes(&e), "cannot set TCP_NODELAY");
    }
    let sock = socket2::SockRef::from(socket);
    #[cfg(any(target_os = "linux", target_os = "android"))]
    let bounded = sock.set_tcp_notsent_lowat(NOTSENT_LOWAT);
    // Elsewhere the send buffer as a whole is bounded, in-flight data included.
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let bounded = sock.set_send_buffer_size(4 * NOTSENT_LOWAT as usize);
    if let Err(e) = bounded {
        tracing::debug!(error = %crate::report::Causes(&e), "cannot bound the unsent data");
    }
}

/// One accepted TCP connection, before and while it upgrades.
#[derive(Clone)]
struct Accept {
    id: u64,
    peer: SocketAddr,
    /// When it must have authenticated.
    deadline: Instant,
    /// When it must have upgraded to WebSocket.
    handshake_deadline: Instant,
    shared: Arc<Shared>,
    slots: Slots,
    budgets: Arc<Budgets>,
    tracker: TaskTracker,
    kill: CancellationToken,
    shutdown: CancellationToken,
    tls: Option<TlsAcceptor>,
    transfers: Arc<Transfers>,
}

impl Accept {
    /// Serve HTTP until the connection upgrades, closes, or reaches the handshake deadline;
    /// `waiting` is its place in the pool of connections still to upgrade.
    async fn serve_http(self, socket: TcpStream, waiting: Slot) {
        let deadline = self.handshake_deadline.min(self.deadline);
        let (kill, shutdown) = (self.kill.clone(), self.shutdown.clone());
        let transfers = self.transfers.clone();
        let http = async move {
            let (head, transport) = match &self.tls {
                // The head first, in a buffer of its own size: hyper allocates its buffers (and
                // its connection future, boxed below, its state) only for a connection that
                // sent one.
                None => match read_head(&socket).await {
                    Ok(Some(head)) => (head, Transport::Plain(socket)),
                    _ => return,
                },
                // rustls holds buffers of its own from the first byte on (so hyper reads the
                // head), but not before: a connection that sends nothing costs no more than in
                // plain text.
                Some(_) if socket.readable().await.is_err() => return,
                Some(acceptor) => match acceptor.accept(socket).await {
                    Ok(tls) if tls.get_ref().1.alpn_protocol() == Some(ACME_TLS_ALPN) => {
                        tracing::debug!("answered an ACME TLS-ALPN-01 validation");
                        return;
                    }
                    Ok(tls) => (Vec::new(), Transport::Tls(Box::new(tls))),
                    Err(e) => {
                        // A client that does not trust the certificate, or a port scan.
                        tracing::debug!(error = %crate::report::Causes(&e), "TLS handshake failed");
                        return;
                    }
                },
            };
            let io = TokioIo::new(Prefixed::new(head, Watched::new(transport)));
            let service = hyper::service::service_fn(move |req| {
                let accept = self.clone();
                async move { Ok::<_, std::convert::Infallible>(accept.respond(req).await) }
            });
            // The peer going away mid-request is its business, not an error of ours.
            let _ = Box::pin(
                hyper::server::conn::http1::Builder::new()
                    .max_buf_size(HTTP_BUFFER)
                    .serve_connection(io, service)
                    .with_upgrades(),
            )
            .await;
        };
        let mut http = std::pin::pin!(http);
        tokio::select! {
            () = &mut http => {}
            () = deadline_unless_busy(deadline, &transfers) => {
                tracing::debug!("closed: no WebSocket upgrade by the handshake deadline");
            }
            () = kill.cancelled() => {}
            () = shutdown.cancelled() => {}
        }
        // The place is free before the peer can see its socket close.
        drop(waiting);
    }

    async fn respond(&self, mut req: Request<hyper::body::Incoming>) -> Response<Body> {
        if !is_upgrade(req.headers()) {
            if crate::blobs::http::serves(req.uri().path()) {
                let busy = Busy::new(&self.transfers);
                let response = crate::blobs::http::answer(&self.shared.api, req).await;
                // The body keeps the transfer counted until it is sent or dropped.
                return response.map(|body| {
                    http_body_util::Either::Right(http_body_util::BodyExt::boxed_unsync(
                        http_body_util::BodyExt::map_frame(body, move |frame| {
                            let _counted = &busy;
                            frame
                        }),
                    ))
                });
            }
            if let Some(app) = &self.shared.app
                && App::serves(req.uri().path())
            {
                return app
                    .answer(req.method(), req.uri(), req.headers())
                    .map(http_body_util::Either::Left);
            }
            return crate::status::answer(&self.shared.api, req.method(), req.uri().path())
                .await
                .map(|text| http_body_util::Either::Left(Full::from(text)));
        }
        let headers = req.headers();
        if headers.get(header::SEC_WEBSOCKET_VERSION) != Some(&HeaderValue::from_static("13")) {
            let mut response = plain(
                StatusCode::UPGRADE_REQUIRED,
                "this node speaks WebSocket version 13",
            );
            response.headers_mut().insert(
                header::SEC_WEBSOCKET_VERSION,
                HeaderValue::from_static("13"),
            );
            return response;
        }
        let Some(key) = headers.get(header::SEC_WEBSOCKET_KEY) else {
            return plain(StatusCode::BAD_REQUEST, "Sec-WebSocket-Key is missing");
        };
        let accept_key = derive_accept_key(key.as_bytes());
        // Only WebSocket sessions count against the limits; the place is held by the session
        // and given back when it ends.
        // Behind a trusted reverse proxy, the client is the one it forwards for.
        let client = client_address(self.peer, headers, &self.shared.trusted_proxies);
        if client != self.peer {
            tracing::debug!(client = %client.ip(), "forwarded by a trusted proxy");
        }
        let slot = match self.slots.take(client.ip()) {
            Ok(slot) => slot,
            Err(full) => return plain(StatusCode::TOO_MANY_REQUESTS, full),
        };
        let upgrade = hyper::upgrade::on(&mut req);
        let this = self.clone();
        self.tracker.spawn(
            async move {
                let upgraded = match upgrade.await {
                    Ok(upgraded) => upgraded,
                    Err(e) => {
                        tracing::debug!(error = %crate::report::Causes(&e), "upgrade failed");
                        return;
                    }
                };
                this.serve_websocket(upgraded, slot, client).await;
            }
            .in_current_span(),
        );
        let mut response = Response::new(http_body_util::Either::Left(Full::default()));
        *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let headers = response.headers_mut();
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        if let Ok(value) = HeaderValue::from_str(&accept_key) {
            headers.insert(header::SEC_WEBSOCKET_ACCEPT, value);
        }
        response
    }

    async fn serve_websocket(
        self,
        upgraded: hyper::upgrade::Upgraded,
        slot: Slot,
        client: SocketAddr,
    ) {
        // The socket is ours again, with whatever the client sent after its request.
        let parts = match upgraded.downcast::<TokioIo<Prefixed<Watched<Transport>>>>() {
            Ok(parts) => parts,
            Err(_) => {
                tracing::error!("an upgraded connection is not the socket it was accepted as");
                return;
            }
        };
        let mut read = parts.read_buf.to_vec();
        let (unread, socket) = parts.io.into_inner().into_parts();
        read.extend_from_slice(&unread);
        let ws = WebSocketStream::from_partially_read(
            socket,
            read,
            Role::Server,
            Some(self.shared.websocket_config()),
        )
        .await;
        let session = Arc::new(Session::new(
            self.id,
            client,
            self.kill.clone(),
            self.budgets.clone(),
        ));
        let connection = Connection::new(ws, self.shared.clone(), session, self.deadline, slot);
        let open = self.shared.api.metrics.connections.clone();
        open.inc();
        // A task of its own, so what the upgrade needed is not kept for the session's life.
        let shutdown = self.shutdown.clone();
        self.tracker.spawn(
            async move {
                connection.run(shutdown).await;
                open.dec();
            }
            .in_current_span(),
        );
    }
}

/// The client of a connection from `peer`: `peer` itself, unless `peer` is one of the
/// `trusted` proxies; then the rightmost address of `X-Forwarded-For` that is not a trusted
/// proxy in turn. Each proxy appends the address it was reached from, so entries left of the
/// first untrusted one may be anything the client wrote. A header that does not parse leaves
/// the connection counted as `peer`. The port of a forwarded client is not known: 0.
fn client_address(peer: SocketAddr, headers: &HeaderMap, trusted: &[ipnet::IpNet]) -> SocketAddr {
    let is_trusted = |ip: std::net::IpAddr| trusted.iter().any(|net| net.contains(&ip));
    if !is_trusted(peer.ip()) {
        return peer;
    }
    let mut hops: Vec<std::net::IpAddr> = Vec::new();
    for value in headers.get_all("x-forwarded-for") {
        let Ok(text) = value.to_str() else {
            return peer;
        };
        for entry in text.split(',') {
            let entry = entry.trim();
            let parsed = entry
                .parse::<std::net::IpAddr>()
                .or_else(|_| entry.parse::<SocketAddr>().map(|a| a.ip()));
            match parsed {
                Ok(ip) => hops.push(ip),
                Err(_) => return peer,
            }
        }
    }
    let client = hops
        .iter()
        .rev()
        .find(|ip| !is_trusted(**ip))
        .or_else(|| hops.first())
        .copied();
    client.map_or(peer, |ip| SocketAddr::new(ip, 0))
}

/// Read from `socket` until the end of an HTTP request head (`\r\n\r\n`) or [`HEAD_LIMIT`]
/// bytes, into a buffer that grows from [`HEAD_FIRST_READ`] as data comes. `None` if the peer
/// closed first. Nothing is allocated before the first byte arrives.
async fn read_head(socket: &TcpStream) -> std::io::Result<Option<Vec<u8>>> {
    let mut head: Vec<u8> = Vec::new();
    loop {
        socket.readable().await?;
        let filled = head.len();
        let room = if filled == 0 {
            HEAD_FIRST_READ
        } else {
            filled.min(HEAD_LIMIT)
        };
        head.resize(filled + room, 0);
        match socket.try_read(&mut head[filled..]) {
            Ok(0) => return Ok(None),
            Ok(n) => {
                head.truncate(filled + n);
                // The end may straddle two reads: look from three bytes before the new ones.
                let from = filled.saturating_sub(3);
                let ended = head[from..].windows(4).any(|w| w == b"\r\n\r\n");
                if ended || head.len() >= HEAD_LIMIT {
                    head.shrink_to_fit();
                    return Ok(Some(head));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => head.truncate(filled),
            Err(e) => return Err(e),
        }
    }
}

/// An accepted connection, in TLS or not.
#[derive(Debug)]
enum Transport {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

impl AsyncRead for Transport {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Transport {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_flush(cx),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// A socket whose first bytes were already read: they are read again first.
#[derive(Debug)]
struct Prefixed<S> {
    prefix: Vec<u8>,
    at: usize,
    inner: S,
}

impl<S> Prefixed<S> {
    fn new(prefix: Vec<u8>, inner: S) -> Self {
        Self {
            prefix,
            at: 0,
            inner,
        }
    }

    /// What of the prefix has not been read, and the socket.
    fn into_parts(self) -> (Vec<u8>, S) {
        let mut prefix = self.prefix;
        prefix.drain(..self.at);
        (prefix, self.inner)
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if this.at < this.prefix.len() {
            let take = (this.prefix.len() - this.at).min(buf.remaining());
            buf.put_slice(&this.prefix[this.at..this.at + take]);
            this.at += take;
            if this.at == this.prefix.len() {
                // Read through: the memory goes now, not with the connection.
                this.prefix = Vec::new();
                this.at = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// Whether a request asks for a WebSocket: `Connection` lists `upgrade` and `Upgrade` lists
/// `websocket`.
fn is_upgrade(headers: &HeaderMap) -> bool {
    let lists = |name: header::HeaderName, token: &str| {
        headers.get_all(name).iter().any(|value| {
            value.to_str().is_ok_and(|v| {
                v.split(',')
                    .any(|item| item.trim().eq_ignore_ascii_case(token))
            })
        })
    };
    lists(header::CONNECTION, "upgrade") && lists(header::UPGRADE, "websocket")
}

fn plain(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut response = Response::new(http_body_util::Either::Left(Full::from(body)));
    *response.status_mut() = status;
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for v in values {
            map.append("x-forwarded-for", HeaderValue::from_str(v).unwrap());
        }
        map
    }

    #[test]
    fn only_a_trusted_proxy_names_the_client_and_only_past_its_own_hops() {
        let trusted: Vec<ipnet::IpNet> = vec![
            "127.0.0.1/32".parse().unwrap(),
            "10.0.0.0/8".parse().unwrap(),
        ];
        let proxy: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let stranger: SocketAddr = "192.0.2.9:5000".parse().unwrap();
        let ip = |a: SocketAddr| a.ip().to_string();
        // From an untrusted peer the header is ignored.
        assert_eq!(
            client_address(stranger, &headers(&["198.51.100.1"]), &trusted),
            stranger
        );
        // A trusted proxy names the client.
        assert_eq!(
            ip(client_address(proxy, &headers(&["198.51.100.1"]), &trusted)),
            "198.51.100.1"
        );
        // What the client wrote itself (left) is skipped; trusted hops (10.x) are passed over.
        let chain = headers(&["6.6.6.6, 198.51.100.1", "10.1.2.3"]);
        assert_eq!(ip(client_address(proxy, &chain, &trusted)), "198.51.100.1");
        // No header, or one that does not parse: the proxy itself.
        assert_eq!(client_address(proxy, &HeaderMap::new(), &trusted), proxy);
        assert_eq!(
            client_address(proxy, &headers(&["not an address"]), &trusted),
            proxy
        );
        // IPv6 and an address with a port.
        assert_eq!(
            ip(client_address(proxy, &headers(&["2001:db8::1"]), &trusted)),
            "2001:db8::1"
        );
        assert_eq!(
            ip(client_address(
                proxy,
                &headers(&["198.51.100.7:4444"]),
                &trusted
            )),
            "198.51.100.7"
        );
        // With no trusted proxies, nothing changes.
        assert_eq!(
            client_address(proxy, &headers(&["198.51.100.1"]), &[]),
            proxy
        );
    }
}
