//! Prometheus metrics, served at `GET /metrics` on `metrics_listen` (off by default), apart
//! from the public port so that only the operator's scraper reaches them.
//!
//! One [`Metrics`] per node (tests run several nodes in one process), held by the API and
//! handed to the writer and the forwarder. Recording is a few atomic operations; label sets
//! are `&'static str`, so a hot path allocates nothing.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The most connections to the metrics address served at once.
const MAX_SCRAPERS: usize = 16;

/// The content type of the OpenMetrics text format, which Prometheus reads.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A label set of one label, `outcome`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    /// `ok`, or the error's name (`bad_signature`, `wrong_origin`, …).
    pub outcome: &'static str,
}

/// A label set of one label, `method`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MethodLabel {
    /// The JSON-RPC method.
    pub method: &'static str,
}

/// The labels of an RPC call.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CallLabels {
    /// The JSON-RPC method.
    pub method: &'static str,
    /// `ok` or `error`.
    pub outcome: &'static str,
}

fn latency_histogram() -> Histogram {
    // 50 µs to about 1.6 s.
    Histogram::new(exponential_buckets(0.000_05, 2.0, 16))
}

/// The node's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// WebSocket sessions open now.
    pub connections: Gauge,
    /// Auth responses, by outcome.
    pub auth: Family<OutcomeLabel, Counter>,
    /// RPC calls answered, by method and outcome.
    pub calls: Family<CallLabels, Counter>,
    /// Time from a call's start to its answer, by method.
    pub call_seconds: Family<MethodLabel, Histogram, fn() -> Histogram>,
    /// Group commits, by outcome.
    pub commits: Family<OutcomeLabel, Counter>,
    /// Requests and replicated batches in each group commit.
    pub commit_group_size: Histogram,
    /// Time a group commit took.
    pub commit_seconds: Histogram,
    /// Subscriptions ended because their subscriber fell too far behind.
    pub slow_subscribers: Counter,
    /// Batches of events not pushed to a peer because its queue was full.
    pub push_dropped: Counter,
    /// `fed.push` calls that failed (the peer pulls what it missed).
    pub push_failed: Counter,
    /// `fed.push` calls answered by a peer.
    pub pushes: Counter,
    /// Events added to replicas by catch-up (pulled after a gap, a restart or a join).
    pub caught_up: Counter,
    /// Links to other nodes dialled, by outcome: `ok`, `transport`, `handshake`, `refused`.
    pub dials: Family<OutcomeLabel, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("northstar");
        let connections = Gauge::default();
        registry.register(
            "connections",
            "WebSocket sessions open",
            connections.clone(),
        );
        let auth = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "auth_responses",
            "auth.respond calls, by outcome: ok or the error's name",
            auth.clone(),
        );
        let calls = Family::<CallLabels, Counter>::default();
        registry.register(
            "rpc_calls",
            "JSON-RPC calls answered, by method and outcome",
            calls.clone(),
        );
        let call_seconds =
            Family::<MethodLabel, Histogram, fn() -> Histogram>::new_with_constructor(
                latency_histogram,
            );
        registry.register(
            "rpc_call_seconds",
            "time from a JSON-RPC call's start to its answer, by method",
            call_seconds.clone(),
        );
        let commits = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "commits",
            "group commits of the writer, by outcome: ok or error",
            commits.clone(),
        );
        let commit_group_size = Histogram::new(exponential_buckets(1.0, 2.0, 10));
        registry.register(
            "commit_group_size",
            "requests (posts, joins, replicated batches) decided into one group commit",
            commit_group_size.clone(),
        );
        let commit_seconds = latency_histogram();
        registry.register(
            "commit_seconds",
            "time one group commit took, fsync included",
            commit_seconds.clone(),
        );
        let slow_subscribers = Counter::default();
        registry.register(
            "slow_subscribers",
            "subscriptions ended with slow_subscriber: their reader fell subscriber_queue events behind",
            slow_subscribers.clone(),
        );
        let push_dropped = Counter::default();
        registry.register(
            "federation_push_dropped",
            "batches of events not pushed to a peer because its queue was full (it pulls them)",
            push_dropped.clone(),
        );
        let push_failed = Counter::default();
        registry.register(
            "federation_push_failed",
            "fed.push calls to peers that failed (they pull what they missed)",
            push_failed.clone(),
        );
        let pushes = Counter::default();
        registry.register(
            "federation_pushes",
            "fed.push calls to peers answered",
            pushes.clone(),
        );
        let caught_up = Counter::default();
        registry.register(
            "catchup_events",
            "events added to replicas by catch-up: pulled after a gap, a restart or a join",
            caught_up.clone(),
        );
        let dials = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "federation_dials",
            "links to other nodes dialled, by outcome: ok, transport (unreachable), certificate (its TLS certificate did not verify), handshake (the peer did not prove itself) or refused",
            dials.clone(),
        );
        Self {
            dials,
            caught_up,
            registry,
            connections,
            auth,
            calls,
            call_seconds,
            commits,
            commit_group_size,
            commit_seconds,
            slow_subscribers,
            push_dropped,
            push_failed,
            pushes,
        }
    }
}

impl Metrics {
    /// Also serve what `collector` computes at each scrape (per-space delivery health).
    pub fn register_collector(&mut self, collector: impl prometheus_client::collector::Collector) {
        self.registry.register_collector(Box::new(collector));
    }

    /// Every metric in the OpenMetrics text format.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }

    /// Count a call of `method` answered after `took`.
    pub fn call(&self, method: &'static str, ok: bool, took: Duration) {
        let outcome = if ok { "ok" } else { "error" };
        self.calls
            .get_or_create(&CallLabels { method, outcome })
            .inc();
        self.call_seconds
            .get_or_create(&MethodLabel { method })
            .observe(took.as_secs_f64());
    }
}

/// Serve `GET /metrics` on `listener` until `shutdown`.
pub fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    tracker: &TaskTracker,
    shutdown: CancellationToken,
) {
    let inner = tracker.clone();
    // Scrapers are few; whatever connects beyond this is closed unread, so the address costs
    // a bounded number of tasks whoever reaches it.
    let room = Arc::new(tokio::sync::Semaphore::new(MAX_SCRAPERS));
    tracker.spawn(async move {
        loop {
            let (socket, _peer): (_, SocketAddr) = tokio::select! {
                () = shutdown.cancelled() => break,
                accepted = listener.accept() => match accepted {
                    Ok(pair) => pair,
                    Err(e) => {
                        tracing::warn!(error = %crate::report::Causes(&e), "metrics: accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let Ok(place) = room.clone().try_acquire_owned() else {
                drop(socket);
                continue;
            };
            let metrics = metrics.clone();
            let shutdown = shutdown.clone();
            inner.spawn(async move {
                let _place = place;
                let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                    let answer = answer(&metrics, req.method(), req.uri().path());
                    async move { Ok::<_, std::convert::Infallible>(answer) }
                });
                let conn = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(socket), service);
                tokio::select! {
                    _ = conn => {}
                    () = shutdown.cancelled() => {}
                    // A scraper that keeps its connection idle is not kept forever.
                    () = tokio::time::sleep(Duration::from_secs(60)) => {}
                }
            });
        }
    });
}

fn answer(metrics: &Metrics, method: &Method, path: &str) -> Response<String> {
    let (status, body, content_type) = match (method, path) {
        (&Method::GET, "/metrics") => (StatusCode::OK, metrics.encode(), CONTENT_TYPE),
        (_, "/metrics") => (
            StatusCode::METHOD_NOT_ALLOWED,
            "GET /metrics".to_owned(),
            "text/plain; charset=utf-8",
        ),
        _ => (
            StatusCode::NOT_FOUND,
            "this address serves GET /metrics".to_owned(),
            "text/plain; charset=utf-8",
        ),
    };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_values_appear_in_the_text_format() {
        let metrics = Metrics::default();
        metrics.connections.inc();
        metrics.call("space.post", true, Duration::from_micros(300));
        metrics.call("space.post", false, Duration::from_millis(3));
        metrics
            .auth
            .get_or_create(&OutcomeLabel {
                outcome: "bad_signature",
            })
            .inc();
        let text = metrics.encode();
        assert!(text.contains("northstar_connections 1"), "{text}");
        assert!(
            text.contains("northstar_rpc_calls_total{method=\"space.post\",outcome=\"ok\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("northstar_rpc_call_seconds_count{method=\"space.post\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("northstar_auth_responses_total{outcome=\"bad_signature\"} 1"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
