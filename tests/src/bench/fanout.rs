//! Fan-out: one author posting into a channel with 100, 1,000 and 10,000 subscribers on one
//! node (in its own process): deliveries per second, and post-to-delivery latency.
//!
//! Each run has two phases on the same connections:
//! - throughput: the author keeps a window of posts in flight until it has posted enough for
//!   about `fanout_deliveries` deliveries; deliveries per second = deliveries ÷ (last delivery −
//!   first post);
//! - latency: the author posts at a steady rate (`fanout_latency_rate`, or half the capacity
//!   just measured if that is lower); p50 and p99 of (delivery − post) over every delivery.
//!
//! Post and delivery times are taken in this one process on one monotonic clock: the author
//! records when it sent each post and learns its seq from the ack; each subscriber records
//! when each seq arrived.
//!
//! Subscribers are raw WebSocket clients that authenticate, subscribe and parse each
//! notification's seq: an SDK client per subscriber would verify two signatures per event per
//! subscriber, several times the work the node spends delivering it, and the load generator
//! would be measured instead of the node (and 10,000 SDK clients in one process cost far more
//! memory). One SDK client subscribes beside them as a witness and must receive every event
//! verified.
//!
//! Ceiling: the plain WebSocket server ([`super::plain`], its own process) broadcasting the
//! node's own notification bytes (captured from this run) to as many connections, batched
//! writes, read by the same reader code.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use futures_util::{StreamExt, TryStreamExt};
use northstar_protocol::address::{SpaceId, SpaceType};
use northstar_sdk::Client;
use tokio::sync::mpsc;
use tokio_util::task::AbortOnDropHandle;

use super::load::{post_paced, post_window};
use super::nodes::{ChildProcess, NODE_SUBCOMMAND};
use super::plain::{MAX_SEND, PLAIN_SUBCOMMAND};
use super::raw::{self, Batch, Boundary, Reader};
use super::report::{Bound, Row, Series, Unit, p50_p99};
use super::{Bench, Scenario, keypair};

/// How long all subscribers may take to receive a phase's last event.
const PHASE_TIMEOUT: Duration = Duration::from_secs(120);

/// Subscriptions opened at once.
const SUBSCRIBE_CONCURRENCY: usize = 64;

/// The figures of one subscriber count.
struct Figures {
    rate: Series,
    p50: Vec<f64>,
    p99: Vec<f64>,
    sample: String,
    posts: usize,
}

/// Run the scenario.
pub async fn run(bench: &mut Bench<'_>) -> anyhow::Result<Vec<Row>> {
    let settings = bench.settings;
    let mut rows = Vec::new();
    for &wanted in &settings.fanout_subscribers {
        let n = bench.fit_connections(Scenario::Fanout, wanted);
        let posts = (settings.fanout_deliveries / n.max(1))
            .clamp(settings.fanout_min_posts, settings.fanout_max_posts)
            .min(MAX_SEND);
        let mut figures = node_runs(bench, n, posts).await?;
        let ceiling = ceiling_runs(bench, n, posts, &figures.sample).await?;
        figures.rate.bound = ceiling;
        rows.push(
            Row {
                samples: figures.rate.figure,
                ..Row::new(
                    Scenario::Fanout,
                    format!("deliveries, {n} subscribers ({} posts)", figures.posts),
                    Unit::PerSec,
                )
            }
            .with_bound(Bound::ceiling(
                "plain WS broadcast, batched writes",
                figures.rate.bound,
            )),
        );
        rows.push(Row {
            samples: figures.p50,
            ..Row::new(
                Scenario::Fanout,
                format!("post→delivery p50, {n} subscribers"),
                Unit::Millis,
            )
        });
        rows.push(Row {
            samples: figures.p99,
            ..Row::new(
                Scenario::Fanout,
                format!("post→delivery p99, {n} subscribers"),
                Unit::Millis,
            )
        });
    }
    Ok(rows)
}

/// Subscribers reading a node or the plain server.
struct Audience {
    _readers: Vec<Reader>,
    boundary: Boundary,
    batches: mpsc::UnboundedReceiver<Batch>,
    live: usize,
}

impl Audience {
    fn new(conns: Vec<raw::Ws>, sample: Option<Arc<OnceLock<String>>>) -> Self {
        let boundary = Boundary::new();
        let (tx, batches) = mpsc::unbounded_channel();
        let live = conns.len();
        let readers = conns
            .into_iter()
            .enumerate()
            .map(|(i, ws)| {
                let sample = if i == 0 { sample.clone() } else { None };
                Reader::spawn(i, ws, boundary.clone(), tx.clone(), sample)
            })
            .collect();
        Self {
            _readers: readers,
            boundary,
            batches,
            live,
        }
    }

    /// Wait for every live subscriber's batch up to the boundary; every `(seq, when)` seen.
    async fn collect(&mut self) -> anyhow::Result<Vec<(u64, Instant)>> {
        let mut seen = Vec::new();
        let mut got = 0;
        let mut ended = Vec::new();
        let expected = self.live;
        let deadline = tokio::time::Instant::now() + PHASE_TIMEOUT;
        while got < expected {
            let Ok(batch) = tokio::time::timeout_at(deadline, self.batches.recv()).await else {
                bail!("only {got} of {expected} subscribers received the phase's last event");
            };
            let batch = batch.context("every reader is gone")?;
            seen.extend(batch.seen);
            got += 1;
            if let Some(reason) = batch.ended {
                ended.push(format!("subscriber {}: {reason}", batch.reader));
            }
        }
        if !ended.is_empty() {
            bail!("subscribers were cut off: {}", ended.join("; "));
        }
        Ok(seen)
    }
}

async fn node_runs(bench: &Bench<'_>, n: usize, posts: usize) -> anyhow::Result<Figures> {
    let settings = bench.settings;
    let dir = tempfile::Builder::new()
        .prefix("fanout-")
        .tempdir_in(bench.root())?;
    let dir_arg = dir.path().to_str().context("non-UTF-8 temp path")?;
    let node = ChildProcess::spawn(
        &settings.exe,
        &[NODE_SUBCOMMAND, "--data-dir", dir_arg],
    )
    .await?;
    let url = node.url();
    let owner = Client::connect(&url, keypair()?).await?;
    let created = owner
        .create_space(SpaceType::Channel, "fanout", "Fan-out")
        .await?;
    let space = created.space;
    let mut head = created.seq;

    let witness_count = Arc::new(AtomicU64::new(0));
    let witness = spawn_witness(&url, &space, head, witness_count.clone()).await?;

    bench.progress(Scenario::Fanout, format!("{n} subscribers: connecting"));
    let opened = Instant::now();
    let conns = raw::open_many(&url, n, true).await?;
    let conns: Vec<raw::Ws> = futures_util::stream::iter(conns)
        .map(|mut conn| {
            let space = space.as_str();
            async move {
                conn.subscribe(space, head).await?;
                anyhow::Ok(conn.into_ws())
            }
        })
        .buffer_unordered(SUBSCRIBE_CONCURRENCY)
        .try_collect()
        .await?;
    bench.progress(
        Scenario::Fanout,
        format!(
            "{n} subscribers: connected, authenticated and subscribed in {:.1} s",
            opened.elapsed().as_secs_f64()
        ),
    );
    let sample = Arc::new(OnceLock::new());
    let mut audience = Audience::new(conns, Some(sample.clone()));

    let mut figures = Figures {
        rate: Series::default(),
        p50: Vec::new(),
        p99: Vec::new(),
        sample: String::new(),
        posts,
    };
    for run in 0..settings.runs {
        // Throughput: a window of posts in flight.
        audience.boundary.set(head + posts as u64);
        let sent = post_window(&owner, &space, posts, settings.fanout_window).await?;
        let seen = audience.collect().await?;
        head += posts as u64;
        let first = sent.values().min().copied().context("nothing posted")?;
        let last = seen.iter().map(|(_, t)| *t).max().context("nothing seen")?;
        let per_sec = seen.len() as f64 / (last - first).as_secs_f64();
        check_count(seen.len(), posts, n)?;

        // Latency: a steady rate, at most half the capacity just measured.
        let rate = settings
            .fanout_latency_rate
            .min(0.5 * per_sec / n as f64)
            .max(1.0);
        let count = ((rate * settings.fanout_latency_secs).ceil() as usize).max(3);
        audience.boundary.set(head + count as u64);
        let sent = post_paced(&owner, &space, count, rate).await?;
        let seen = audience.collect().await?;
        head += count as u64;
        check_count(seen.len(), count, n)?;
        let mut latencies = seen
            .iter()
            .map(|(seq, at)| {
                let posted = sent.get(seq).context("a delivery of a seq never posted")?;
                Ok(at.saturating_duration_since(*posted))
            })
            .collect::<anyhow::Result<Vec<Duration>>>()?;
        let (p50, p99) = p50_p99(&mut latencies);
        figures.rate.figure.push(per_sec);
        figures.p50.push(p50);
        figures.p99.push(p99);
        bench.progress(
            Scenario::Fanout,
            format!(
                "{n} subscribers, run {}/{}: {per_sec:.0} deliveries/s; at {rate:.1} posts/s \
                 p50 {p50:.2} ms, p99 {p99:.2} ms",
                run + 1,
                settings.runs
            ),
        );
    }
    // The witness verified every event the raw subscribers counted.
    let posted = head - created.seq;
    let deadline = Instant::now() + PHASE_TIMEOUT;
    while witness_count.load(Ordering::SeqCst) < posted {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the SDK witness verified only {} of {posted} events",
            witness_count.load(Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    figures.sample = sample.get().cloned().context("no notification was captured")?;
    drop(audience);
    drop(witness);
    drop(owner);
    node.stop().await?;
    Ok(figures)
}

fn check_count(seen: usize, posts: usize, n: usize) -> anyhow::Result<()> {
    anyhow::ensure!(
        seen == posts * n,
        "{seen} deliveries, expected {posts} posts × {n} subscribers"
    );
    Ok(())
}

/// An SDK client following the space; counts the events it verified.
async fn spawn_witness(
    url: &str,
    space: &SpaceId,
    since: u64,
    count: Arc<AtomicU64>,
) -> anyhow::Result<AbortOnDropHandle<()>> {
    let client = Client::connect(url, keypair()?).await?;
    let mut stream = client.subscribe(space, since).await?;
    Ok(AbortOnDropHandle::new(tokio::spawn(async move {
        while let Some(Ok(_event)) = stream.next().await {
            count.fetch_add(1, Ordering::SeqCst);
        }
    })))
}

/// The plain server broadcasting `sample` to `n` connections, `posts` messages per run;
/// deliveries per second per run.
async fn ceiling_runs(
    bench: &Bench<'_>,
    n: usize,
    posts: usize,
    sample: &str,
) -> anyhow::Result<Vec<f64>> {
    let settings = bench.settings;
    let file = bench.root().join(format!("fanout-sample-{n}.json"));
    std::fs::write(&file, sample)?;
    let mut server = ChildProcess::spawn(&settings.exe, &[PLAIN_SUBCOMMAND]).await?;
    let conns = raw::open_many(&server.url(), n, false).await?;
    let mut audience = Audience::new(conns.into_iter().map(raw::RawConn::into_ws).collect(), None);
    let mut rates = Vec::with_capacity(settings.runs);
    let mut base = 0u64;
    for run in 0..settings.runs {
        audience.boundary.set(base + posts as u64);
        let start = Instant::now();
        server
            .command(&format!("SEND {} {posts} {}", base + 1, path_arg(&file)?))
            .await?;
        let seen = audience.collect().await?;
        base += posts as u64;
        check_count(seen.len(), posts, n)?;
        let last = seen.iter().map(|(_, t)| *t).max().context("nothing seen")?;
        let per_sec = seen.len() as f64 / (last - start).as_secs_f64();
        rates.push(per_sec);
        bench.progress(
            Scenario::Fanout,
            format!(
                "{n} connections, ceiling run {}/{}: {per_sec:.0} deliveries/s",
                run + 1,
                settings.runs
            ),
        );
    }
    drop(audience);
    server.stop().await?;
    Ok(rates)
}

fn path_arg(path: &Path) -> anyhow::Result<&str> {
    path.to_str().context("non-UTF-8 temp path")
}
