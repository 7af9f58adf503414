//! The listener: WebSocket JSON-RPC and `GET /health` on one port.
//!
//! Each accepted connection gets a [`Session`] (reachable from every handler through the
//! request's extensions) and its own stop handle, so the node can close one connection (an
//! authentication deadline passed) or all of them (shutdown). Connections per IP are counted
//! here; over the limit, the upgrade is answered with HTTP 429.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::FutureExt;
use jsonrpsee::server::middleware::rpc::{
    Batch, BatchEntry, BatchEntryErr, MethodResponse, Notification, Request, ResponseFuture,
    RpcServiceBuilder, RpcServiceT,
};
use jsonrpsee::server::{
    BatchRequestConfig, HttpBody, HttpResponse, ServerConfig, serve_with_graceful_shutdown,
    stop_channel,
};
use jsonrpsee::types::ErrorObjectOwned;
use jsonrpsee::{Methods, RpcModule};
use northstar_protocol::api::ErrorCode;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::Service;

type BoxError = Box<dyn std::error::Error + Send + Sync>;
use tracing::Instrument;

use crate::auth::Session;
use crate::config::Limits;

/// How long shutdown waits for connections to finish before giving up on them.
const DRAIN_DEADLINE: Duration = Duration::from_secs(10);

/// Serve `module` on `listener` until `shutdown`, then close every connection.
pub async fn serve(
    listener: TcpListener,
    module: RpcModule<()>,
    limits: Limits,
    shutdown: CancellationToken,
) {
    let config = ServerConfig::builder()
        .ws_only()
        .max_request_body_size(limits.max_frame_bytes)
        .max_response_body_size(limits.max_frame_bytes.saturating_mul(8))
        .max_connections(limits.max_connections)
        .max_subscriptions_per_connection(limits.max_subscriptions_per_connection)
        .set_message_buffer_capacity(limits.subscriber_queue.max(1))
        .set_batch_request_config(if limits.max_batch == 0 {
            BatchRequestConfig::Disabled
        } else {
            BatchRequestConfig::Limit(limits.max_batch)
        })
        .build();
    let (rate, burst) = (limits.requests_per_second, limits.request_burst.max(1));
    let builder = jsonrpsee::server::Server::builder()
        .set_config(config)
        .set_rpc_middleware(RpcServiceBuilder::new().layer_fn(move |inner| RateLimit {
            inner,
            rate,
            burst,
        }))
        .to_service_builder();
    let methods: Methods = module.into();
    let tracker = TaskTracker::new();
    let slots = IpSlots::new(limits.max_connections_per_ip);
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
        let id = next_id.fetch_add(1, Ordering::Relaxed);
        let (conn_stop, conn_handle) = stop_channel();
        let session = Arc::new(Session::new(id, peer, conn_handle.clone(), burst));
        let span = tracing::debug_span!("conn", id, peer = %peer);

        // Close the connection at shutdown, or when it has not authenticated in time.
        let watcher = {
            let (session, shutdown) = (session.clone(), shutdown.clone());
            let deadline = limits.auth_timeout();
            async move {
                tokio::select! {
                    () = shutdown.cancelled() => session.close(),
                    () = tokio::time::sleep(deadline) => {
                        if session.did().is_none() {
                            tracing::debug!("closing: not authenticated in time");
                            session.close();
                        }
                    }
                    () = conn_handle.clone().stopped() => {}
                }
                drop(session);
                conn_handle.stopped().await;
            }
        };
        tracker.spawn(watcher.instrument(span.clone()));

        let (builder, methods, stop) = (builder.clone(), methods.clone(), conn_stop.clone());
        let slots = slots.clone();
        let service = tower::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
            if req.uri().path() == "/health" && !is_upgrade(&req) {
                return std::future::ready(Ok::<_, BoxError>(plain(200, "{\"status\":\"ok\"}")))
                    .boxed();
            }
            // Only WebSocket sessions count against the per-IP limit; the slot is held by the
            // session and given back when the last reference to it goes.
            match slots.take(peer.ip()) {
                Some(slot) => session.hold_slot(slot),
                None => {
                    return std::future::ready(Ok::<_, BoxError>(plain(
                        429,
                        "too many connections from this address",
                    )))
                    .boxed();
                }
            }
            req.extensions_mut().insert(session.clone());
            let mut svc = builder.clone().build(methods.clone(), stop.clone());
            async move { svc.call(req).await }.boxed()
        });
        // The connection's outcome is logged by jsonrpsee; an error here is a peer that went away.
        tracker.spawn(
            serve_with_graceful_shutdown(socket, service, conn_stop.shutdown()).instrument(span),
        );
    }
    tracing::info!("stopped accepting; closing connections");
    tracker.close();
    if tokio::time::timeout(DRAIN_DEADLINE, tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!("some connections did not close in time");
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

fn is_upgrade<B>(req: &hyper::Request<B>) -> bool {
    req.headers().contains_key(hyper::header::UPGRADE)
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
