//! Ingest: beams acknowledged per second with 1, 16 and 64 concurrent authors, one SDK
//! connection each, posting back to back into one channel of an in-process node; and the
//! latency of each acknowledgement.
//!
//! Ceiling: per event, strict verification of the author's signature on a beam ref plus the
//! sequencer's signature on the event, as many as were acknowledged, on all cores. Floor of the
//! ack latency: a plain WebSocket round trip, the same signature work on one core, and one
//! durable write: an fsync of the data directory's file system on SQLite, one commit of a
//! one-row insert on PostgreSQL (an acknowledged beam is on disk).
//!
//! With `--storage sqlite,postgres` the whole scenario runs once per backend, a node of its own
//! each, and a note compares their rates.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use northstar_protocol::address::{SpaceId, SpaceType};
use northstar_sdk::Client;
use tokio::task::JoinSet;

use super::ceiling::{self, IngestWork};
use super::load::BODY;
use super::nodes::{LocalNode, new_data_dir};
use super::report::{Bound, Row, Series, Unit, p50_p99};
use super::storage::Backend;
use super::{Bench, Scenario, keypair};

/// Run the scenario on each backend in turn.
pub async fn run(bench: &mut Bench<'_>) -> anyhow::Result<Vec<Row>> {
    let mut rows = Vec::new();
    let mut rates: Vec<(Backend, usize, f64)> = Vec::new();
    for &backend in &bench.settings.storage {
        let (new, backend_rates) = run_on(bench, backend).await?;
        rows.extend(new);
        rates.extend(backend_rates.into_iter().map(|(n, r)| (backend, n, r)));
    }
    for &count in &bench.settings.ingest_authors {
        let rate = |backend| {
            rates
                .iter()
                .find(|(b, n, _)| *b == backend && *n == count)
                .map(|(_, _, r)| *r)
        };
        if let (Some(sqlite), Some(postgres)) = (rate(Backend::Sqlite), rate(Backend::Postgres)) {
            let who = if count == 1 { "1 author" } else { "authors" };
            let who = if count == 1 {
                who.to_owned()
            } else {
                format!("{count} {who}")
            };
            bench.note(format!(
                "ingest, {who}: postgres acked {:.2} × sqlite's rate ({} vs {})",
                postgres / sqlite.max(f64::MIN_POSITIVE),
                Unit::PerSec.format(postgres),
                Unit::PerSec.format(sqlite)
            ));
        }
    }
    Ok(rows)
}

/// The rows of one backend, and its median rate per author count.
async fn run_on(
    bench: &mut Bench<'_>,
    backend: Backend,
) -> anyhow::Result<(Vec<Row>, Vec<(usize, f64)>)> {
    let settings = bench.settings;
    let dir = new_data_dir(bench.root())?;
    let storage_url = bench.storage_url(backend, &dir).await?;
    let node = LocalNode::start_in(dir, SocketAddr::from(([127, 0, 0, 1], 0)), |c| {
        c.storage_url = storage_url
    })
    .await?;
    let owner = Client::connect(&node.url, keypair()?).await?;
    let space = owner
        .create_space(SpaceType::Channel, "ingest", "Ingest")
        .await?
        .space;
    let most = settings.ingest_authors.iter().copied().max().unwrap_or(1);
    let mut authors = Vec::with_capacity(most);
    for _ in 0..most {
        let author = Client::connect(&node.url, keypair()?).await?;
        author.join(&space).await?;
        authors.push(author);
    }
    let work = Arc::new(tokio::task::spawn_blocking(IngestWork::new).await??);
    let (durable, durable_what) = match (backend, &bench.postgres) {
        (Backend::Postgres, Some(server)) => (
            server.commit_floor(&new_data_dir(bench.root())?).await?,
            "PG commit",
        ),
        _ => (
            Duration::from_secs_f64(bench.machine.fsync_p50_ms.max(0.0) / 1e3),
            "fsync",
        ),
    };
    let mut rows = Vec::new();
    let mut rates = Vec::new();
    for &count in &settings.ingest_authors {
        let (mut rate, mut p50, mut p99) =
            (Series::default(), Series::default(), Series::default());
        for run in 0..settings.runs {
            let (mut latencies, elapsed) =
                drive(&authors[..count], &space, settings.ingest_secs).await?;
            anyhow::ensure!(!latencies.is_empty(), "no post was acknowledged in time");
            let acked = latencies.len();
            let per_sec = acked as f64 / elapsed.as_secs_f64();
            let w = work.clone();
            let ceiling = tokio::task::spawn_blocking(move || w.rate(acked)).await??;
            let w = work.clone();
            let (verify, sign) = tokio::task::spawn_blocking(move || w.single_core_costs()).await?;
            let floor = ceiling::websocket_round_trip().await? + 2 * verify + sign + durable;
            let floor_ms = floor.as_secs_f64() * 1e3;
            let (l50, l99) = p50_p99(&mut latencies);
            rate.push(per_sec, ceiling);
            p50.push(l50, floor_ms);
            p99.push(l99, floor_ms);
            bench.progress(
                Scenario::Ingest,
                format!(
                    "{}, {count} author{}, run {}/{}: {per_sec:.0} acks/s (ceiling \
                     {ceiling:.0}), p50 {l50:.2} ms, p99 {l99:.2} ms",
                    backend.name(),
                    if count == 1 { "" } else { "s" },
                    run + 1,
                    settings.runs
                ),
            );
        }
        rates.push((count, super::report::median(&rate.figure)));
        let new = rows_for(count, bench.machine.cores, durable_what, rate, p50, p99);
        rows.extend(new.map(|row| Row {
            figure: bench.label(row.figure.clone(), backend),
            ..row
        }));
    }
    drop(authors);
    drop(owner);
    node.stop().await?;
    Ok((rows, rates))
}

/// The rows of one author count: the rate against its ceiling, the latencies against their
/// floor.
fn rows_for(
    count: usize,
    cores: usize,
    durable: &str,
    rate: Series,
    p50: Series,
    p99: Series,
) -> [Row; 3] {
    let who = if count == 1 {
        "1 author".to_owned()
    } else {
        format!("{count} authors")
    };
    let floor = format!("WS round trip + 2 verify + 1 sign + {durable}");
    let latency = |name: &str, series: Series| {
        Row {
            samples: series.figure,
            ..Row::new(Scenario::Ingest, format!("{name}, {who}"), Unit::Millis)
        }
        .with_bound(Bound::floor(floor.clone(), series.bound))
    };
    [
        Row {
            samples: rate.figure,
            ..Row::new(
                Scenario::Ingest,
                format!("beams acked, {who}"),
                Unit::PerSec,
            )
        }
        .with_bound(Bound::ceiling(
            format!("verify_strict + sign, {cores} cores"),
            rate.bound,
        )),
        latency("ack p50", p50),
        latency("ack p99", p99),
    ]
}

/// Every author posts back to back for `secs`; the latency of each post acknowledged within
/// that time, and the time.
async fn drive(
    authors: &[Client],
    space: &SpaceId,
    secs: f64,
) -> anyhow::Result<(Vec<Duration>, Duration)> {
    let window = Duration::from_secs_f64(secs);
    let start = Instant::now();
    let deadline = start + window;
    let mut tasks = JoinSet::new();
    for (a, author) in authors.iter().enumerate() {
        let (author, space) = (author.clone(), space.clone());
        tasks.spawn(async move {
            let mut latencies = Vec::new();
            let mut i = 0u64;
            while Instant::now() < deadline {
                let sent = Instant::now();
                author.post(&space, &format!("a{a} #{i}"), BODY).await?;
                let acked = Instant::now();
                if acked <= deadline {
                    latencies.push(acked - sent);
                }
                i += 1;
            }
            anyhow::Ok(latencies)
        });
    }
    let mut all = Vec::new();
    while let Some(done) = tasks.join_next().await {
        all.extend(done??);
    }
    Ok((all, window))
}
