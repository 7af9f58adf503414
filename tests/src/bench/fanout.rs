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
//!
//! With beams inline (`fanout_inline_subscribers`): the same runs on a new node whose raw
//! subscribers all ask for the beams inline (`spec/protocol.md` §6.3.21), so each notification
//! carries the post's beam as well as its event; deliveries per second and latency are
//! reported against the plain ceiling of the same subscriber count, the bar issue 12 sets.

use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use futures_util::{StreamExt, TryStreamExt};
use northstar_protocol::address::{SpaceId, SpaceType};
use northstar_sdk::Client;
use tokio::sync::{mpsc, watch};
use tokio_util::task::AbortOnDropHandle;

use super::load::{post_paced, post_window};
use super::nodes::{ChildProcess, NODE_SUBCOMMAND};
use super::plain::{MAX_SEND, PLAIN_SUBCOMMAND};
use super::raw::{self, Batch, Boundary, Reader};
use super::report::{Bound, Row, Series, Unit, count, median, p50_p99};
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
    /// Posts acknowledged per second in each throughput phase.
    post_rates: Vec<f64>,
    /// Posts per second of each latency phase.
    latency_rates: Vec<f64>,
}

/// Run the scenario.
pub async fn run(bench: &mut Bench<'_>) -> anyhow::Result<Vec<Row>> {
    let settings = bench.settings;
    let mut rows = Vec::new();
    for &wanted in &settings.fanout_subscribers {
        let n = bench.fit_connections(Scenario::Fanout, wanted);
        let posts = posts_for(bench, n);
        let mut figures = node_runs(bench, n, posts, Delivery::Plain).await?;
        let ceiling = ceiling_runs(bench, n, posts, &figures.sample).await?;
        figures.rate.bound = ceiling.clone();
        let acked = median(&figures.post_rates);
        bench.note(format!(
            "fan-out, {} subscribers: the author's posts were acked at {} (median) in the \
             throughput phase; the latency phase posted at {:.1} posts/s; {} bytes per \
             notification",
            count(n),
            Unit::PerSec.format(acked),
            median(&figures.latency_rates),
            figures.sample.len()
        ));
        let inline = settings.fanout_inline_subscribers.contains(&wanted);
        rows.push(
            Row {
                samples: figures.rate.figure,
                ..Row::new(
                    Scenario::Fanout,
                    format!(
                        "deliveries, {} subscribers ({} posts)",
                        count(n),
                        figures.posts
                    ),
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
                format!("post→delivery p50, {} subscribers", count(n)),
                Unit::Millis,
            )
        });
        rows.push(Row {
            samples: figures.p99,
            ..Row::new(
                Scenario::Fanout,
                format!("post→delivery p99, {} subscribers", count(n)),
                Unit::Millis,
            )
        });
        if inline {
            rows.extend(inline_rows(bench, n, posts, ceiling).await?);
        }
    }
    for wanted in &settings.fanout_inline_subscribers {
        if !settings.fanout_subscribers.contains(wanted) {
            bench.note(format!(
                "fan-out with beams inline, {} subscribers: skipped, as no plain run of that \
                 count measured its ceiling",
                count(*wanted)
            ));
        }
    }
    Ok(rows)
}

/// Posts per throughput phase for `n` subscribers.
fn posts_for(bench: &Bench<'_>, n: usize) -> usize {
    let settings = bench.settings;
    (settings.fanout_deliveries / n.max(1))
        .clamp(settings.fanout_min_posts, settings.fanout_max_posts)
        .min(MAX_SEND)
}

/// The rows of fan-out with beams inline to `n` subscribers, against the plain `ceiling`
/// measured for as many.
async fn inline_rows(
    bench: &mut Bench<'_>,
    n: usize,
    posts: usize,
    ceiling: Vec<f64>,
) -> anyhow::Result<Vec<Row>> {
    let figures = node_runs(bench, n, posts, Delivery::WithBeams).await?;
    // The bound is the plain ceiling, as issue 12 sets it; the plain server broadcasting the
    // larger inline notification tells how much of the gap is the bytes themselves.
    let same_bytes = ceiling_runs(bench, n, posts, &figures.sample).await?;
    bench.note(format!(
        "fan-out with beams inline, {} subscribers: {} bytes per notification; the bound is \
         the plain broadcast of the plain notification to as many connections; broadcasting \
         the inline notification instead, the plain server reached {} (median), ratio {:.2}",
        count(n),
        figures.sample.len(),
        Unit::PerSec.format(median(&same_bytes)),
        median(&figures.rate.figure) / median(&same_bytes)
    ));
    Ok(vec![
        Row {
            samples: figures.rate.figure,
            ..Row::new(
                Scenario::Fanout,
                format!(
                    "deliveries with beams inline, {} subscribers ({} posts)",
                    count(n),
                    figures.posts
                ),
                Unit::PerSec,
            )
        }
        .with_bound(Bound::ceiling(
            "plain WS broadcast, batched writes",
            ceiling,
        )),
        Row {
            samples: figures.p50,
            ..Row::new(
                Scenario::Fanout,
                format!(
                    "post→delivery p50 with beams inline, {} subscribers",
                    count(n)
                ),
                Unit::Millis,
            )
        },
        Row {
            samples: figures.p99,
            ..Row::new(
                Scenario::Fanout,
                format!(
                    "post→delivery p99 with beams inline, {} subscribers",
                    count(n)
                ),
                Unit::Millis,
            )
        },
    ])
}

/// What the raw subscribers ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Delivery {
    /// Events, as `space.subscribe` without its `beams` parameter.
    Plain,
    /// Event items with the beams inline.
    WithBeams,
}

/// Subscribers reading a node or the plain server.
struct Audience {
    /// The reading tasks, stopped when the audience is dropped.
    readers: Vec<Reader>,
    boundary: Boundary,
    batches: mpsc::UnboundedReceiver<Batch>,
}

impl Audience {
    fn new(conns: Vec<raw::Ws>, sample: Option<Arc<OnceLock<String>>>) -> Self {
        let boundary = Boundary::new();
        // Unbounded, yet bounded in effect: each reader sends one batch per phase (and one
        // when it ends), and `collect` drains them all before the next phase starts.
        let (tx, batches) = mpsc::unbounded_channel();
        let readers = conns
            .into_iter()
            .enumerate()
            .map(|(i, ws)| {
                let sample = if i == 0 { sample.clone() } else { None };
                Reader::spawn(i, ws, boundary.clone(), tx.clone(), sample)
            })
            .collect();
        Self {
            readers,
            boundary,
            batches,
        }
    }

    /// Wait for every subscriber's batch up to the boundary; every `(seq, when)` seen.
    async fn collect(&mut self) -> anyhow::Result<Vec<(u64, Instant)>> {
        let mut seen = Vec::new();
        let mut got = 0;
        let mut ended = Vec::new();
        let expected = self.readers.len();
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

async fn node_runs(
    bench: &Bench<'_>,
    n: usize,
    posts: usize,
    delivery: Delivery,
) -> anyhow::Result<Figures> {
    let settings = bench.settings;
    let dir = tempfile::Builder::new()
        .prefix("fanout-")
        .tempdir_in(bench.root())?;
    let dir_arg = dir.path().to_str().context("non-UTF-8 temp path")?;
    let node =
        ChildProcess::spawn(&settings.exe, &[NODE_SUBCOMMAND, "--data-dir", dir_arg]).await?;
    let url = node.url();
    let owner = Client::connect(&url, keypair()?).await?;
    let created = owner
        .create_space(SpaceType::Channel, "fanout", "Fan-out")
        .await?;
    let mut channel = Channel {
        owner,
        space: created.space,
        head: created.seq,
    };
    let (witness, mut witnessed) =
        spawn_witness(&url, &channel.space, channel.head, delivery).await?;

    bench.progress(Scenario::Fanout, format!("{n} subscribers: connecting"));
    let opened = Instant::now();
    let conns = subscribe_all(&url, &channel.space, channel.head, n, delivery).await?;
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
        post_rates: Vec::new(),
        latency_rates: Vec::new(),
    };
    for run in 0..settings.runs {
        let (per_sec, acked) = channel
            .throughput(&mut audience, posts, settings.fanout_window)
            .await?;
        // Latency at a steady rate, at most half the capacity just measured.
        let rate = settings
            .fanout_latency_rate
            .min(0.5 * per_sec / n as f64)
            .max(1.0);
        let (p50, p99) = channel
            .latency(&mut audience, rate, settings.fanout_latency_secs)
            .await?;
        figures.rate.figure.push(per_sec);
        figures.post_rates.push(acked);
        figures.latency_rates.push(rate);
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
    // The witness must have verified every event the raw subscribers counted.
    let posted = channel.head - created.seq;
    let caught_up = tokio::time::timeout(PHASE_TIMEOUT, witnessed.wait_for(|seen| *seen >= posted))
        .await
        .map(|waited| waited.is_ok());
    anyhow::ensure!(
        caught_up == Ok(true),
        "the SDK witness verified only {} of {posted} events",
        *witnessed.borrow()
    );
    figures.sample = sample
        .get()
        .cloned()
        .context("no notification was captured")?;
    drop(audience);
    drop(witness);
    drop(channel);
    node.stop().await?;
    Ok(figures)
}

/// The channel under load and its author.
struct Channel {
    owner: Client,
    space: SpaceId,
    /// The seq of the last event posted.
    head: u64,
}

impl Channel {
    /// Post `posts` beams with `window` in flight and wait until every subscriber has them;
    /// deliveries per second, and posts acknowledged per second.
    async fn throughput(
        &mut self,
        audience: &mut Audience,
        posts: usize,
        window: usize,
    ) -> anyhow::Result<(f64, f64)> {
        audience.boundary.set(self.head + posts as u64);
        let posting = Instant::now();
        let sent = post_window(&self.owner, &self.space, posts, window).await?;
        let acked = posts as f64 / posting.elapsed().as_secs_f64();
        let seen = audience.collect().await?;
        self.head += posts as u64;
        check_count(seen.len(), posts, audience.readers.len())?;
        let first = sent.values().min().copied().context("nothing posted")?;
        let last = seen.iter().map(|(_, t)| *t).max().context("nothing seen")?;
        Ok((seen.len() as f64 / (last - first).as_secs_f64(), acked))
    }

    /// Post at `rate` per second for `secs` and wait until every subscriber has the posts;
    /// p50 and p99 of post-to-delivery over every delivery, ms.
    async fn latency(
        &mut self,
        audience: &mut Audience,
        rate: f64,
        secs: f64,
    ) -> anyhow::Result<(f64, f64)> {
        let count = ((rate * secs).ceil() as usize).max(3);
        audience.boundary.set(self.head + count as u64);
        let sent = post_paced(&self.owner, &self.space, count, rate).await?;
        let seen = audience.collect().await?;
        self.head += count as u64;
        check_count(seen.len(), count, audience.readers.len())?;
        let mut latencies = seen
            .iter()
            .map(|(seq, at)| {
                let posted = sent.get(seq).context("a delivery of a seq never posted")?;
                Ok(at.saturating_duration_since(*posted))
            })
            .collect::<anyhow::Result<Vec<Duration>>>()?;
        Ok(p50_p99(&mut latencies))
    }
}

/// `n` raw connections to `url`, each authenticated and subscribed to `space` after `since`.
async fn subscribe_all(
    url: &str,
    space: &SpaceId,
    since: u64,
    n: usize,
    delivery: Delivery,
) -> anyhow::Result<Vec<raw::Ws>> {
    let conns = raw::open_many(url, n, true).await?;
    futures_util::stream::iter(conns)
        .map(|mut conn| async move {
            match delivery {
                Delivery::Plain => conn.subscribe(space.as_str(), since).await?,
                Delivery::WithBeams => conn.subscribe_with_beams(space.as_str(), since).await?,
            }
            anyhow::Ok(conn.into_ws())
        })
        .buffer_unordered(SUBSCRIBE_CONCURRENCY)
        .try_collect()
        .await
}

fn check_count(seen: usize, posts: usize, n: usize) -> anyhow::Result<()> {
    anyhow::ensure!(
        seen == posts * n,
        "{seen} deliveries, expected {posts} posts × {n} subscribers"
    );
    Ok(())
}

/// An SDK client following the space, and the count of events it has verified. With beams
/// inline it counts only events that came with their beam, verified: every event here is a
/// post by this node's user, so each one must.
async fn spawn_witness(
    url: &str,
    space: &SpaceId,
    since: u64,
    delivery: Delivery,
) -> anyhow::Result<(AbortOnDropHandle<()>, watch::Receiver<u64>)> {
    let client = Client::connect(url, keypair()?).await?;
    let (tx, rx) = watch::channel(0);
    let task = match delivery {
        Delivery::Plain => {
            let mut stream = client.subscribe(space, since).await?;
            tokio::spawn(async move {
                while let Some(Ok(_event)) = stream.next().await {
                    tx.send_modify(|seen| *seen += 1);
                }
            })
        }
        Delivery::WithBeams => {
            let mut stream = client.subscribe_with_beams(space, since).await?;
            tokio::spawn(async move {
                while let Some(Ok(item)) = stream.next().await {
                    if item.beam.is_none() {
                        break;
                    }
                    tx.send_modify(|seen| *seen += 1);
                }
            })
        }
    };
    Ok((AbortOnDropHandle::new(task), rx))
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
