//! Ingest: beams acknowledged per second with 1, 16 and 64 concurrent authors, one raw
//! authenticated connection each, sending posts signed before the run back to back (one in
//! flight each) into one channel of a node in its own process; the latency of each
//! acknowledgement; the node's CPU (cores) and the bytes it wrote to storage per post.
//!
//! Ceiling: per event, strict verification of the author's signature on a beam ref plus the
//! sequencer's signature on the event, as many as were acknowledged, on all cores. Floor of the
//! ack latency: a plain WebSocket round trip, the same signature work on one core, and one
//! durable write: an fsync of the data directory's file system on SQLite, one commit of a
//! one-row insert on PostgreSQL (an acknowledged beam is on disk).
//!
//! With `--storage sqlite,postgres` the whole scenario runs once per backend, a node of its own
//! each, and a note compares their rates.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use northstar_protocol::Keypair;
use northstar_protocol::address::{SpaceId, SpaceType};
use northstar_protocol::method;
use northstar_protocol::wire::Beam;
use northstar_sdk::Client;
use serde_json::json;

use super::ceiling::{self, IngestWork};
use super::load::BODY;
use super::machine;
use super::nodes::{
    ChildProcess, METRICS_LISTEN_FLAG, NODE_SUBCOMMAND, STORAGE_URL_FLAG, new_data_dir,
};
use super::raw::RawConn;
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
    let dir_arg = dir.to_str().context("non-UTF-8 data directory")?;
    let metrics = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let node = ChildProcess::spawn(
        &settings.exe,
        &[
            NODE_SUBCOMMAND,
            "--data-dir",
            dir_arg,
            STORAGE_URL_FLAG,
            &storage_url,
            METRICS_LISTEN_FLAG,
            &metrics.to_string(),
        ],
    )
    .await?;
    let url = node.url();
    let owner = Client::connect(&url, keypair()?).await?;
    let space = owner
        .create_space(SpaceType::Channel, "ingest", "Ingest")
        .await?
        .space;
    let home = owner.node_info().authority.clone();
    let most = settings.ingest_authors.iter().copied().max().unwrap_or(1);
    let mut authors = Vec::with_capacity(most);
    for _ in 0..most {
        let key = keypair()?;
        Client::connect(&url, key.clone())
            .await?
            .join(&space)
            .await?;
        let mut conn = RawConn::connect(&url).await?;
        conn.authenticate(&key).await?;
        authors.push(Author { key, conn });
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
    let mut posted = 0u64;
    for &count in &settings.ingest_authors {
        let mut series = AuthorSeries::default();
        for run in 0..settings.runs {
            let per_author = presign_count(count, settings.ingest_secs);
            let batches = presign(&authors[..count], &space, &home, per_author, posted).await?;
            posted += per_author as u64;
            let before = NodeUse::read(node.pid)?;
            let (mut latencies, elapsed) =
                drive(&mut authors[..count], batches, settings.ingest_secs).await?;
            let used = NodeUse::read(node.pid)?.since(&before);
            anyhow::ensure!(!latencies.is_empty(), "no post was acknowledged in time");
            let acked = latencies.len();
            let per_sec = acked as f64 / elapsed.as_secs_f64();
            let w = work.clone();
            let ceiling = tokio::task::spawn_blocking(move || w.rate(acked)).await??;
            let w = work.clone();
            let (verify, sign) = tokio::task::spawn_blocking(move || w.single_core_costs()).await?;
            let floor = ceiling::websocket_round_trip().await? + verify + sign + durable;
            let floor_ms = floor.as_secs_f64() * 1e3;
            let (l50, l99) = p50_p99(&mut latencies);
            let cores = used.cpu_secs / elapsed.as_secs_f64();
            let pages = used.written_bytes as f64 / PAGE as f64 / acked as f64;
            series.rate.push(per_sec, ceiling);
            series.p50.push(l50, floor_ms);
            series.p99.push(l99, floor_ms);
            series.cores.push(cores, bench.machine.cores as f64);
            series.pages.push(pages, 0.0);
            bench.progress(
                Scenario::Ingest,
                format!(
                    "{}, {count} author{}, run {}/{}: {per_sec:.0} acks/s (ceiling \
                     {ceiling:.0}), p50 {l50:.2} ms, p99 {l99:.2} ms, node CPU {cores:.2} \
                     cores, {pages:.2} pages written per post",
                    backend.name(),
                    if count == 1 { "" } else { "s" },
                    run + 1,
                    settings.runs
                ),
            );
        }
        rates.push((count, super::report::median(&series.rate.figure)));
        let new = rows_for(count, bench.machine.cores, durable_what, series);
        rows.extend(new.map(|row| Row {
            figure: bench.label(row.figure.clone(), backend),
            ..row
        }));
    }
    let scraped = scrape_cost(bench, &mut authors, &space, &home, &mut posted, metrics).await?;
    rows.push(Row {
        figure: bench.label(scraped.figure.clone(), backend),
        ..scraped
    });
    drop(authors);
    drop(owner);
    node.stop().await?;
    Ok((rows, rates))
}

/// Scrapes of `/metrics` per second while the scraped runs go: 150 times Prometheus's default
/// of one per 15 s, so the cost shows above the noise if there is any.
const SCRAPES_PER_SEC: u64 = 10;

/// What serving `/metrics` costs a busy node: runs with every author, in pairs of one run with
/// a scraper reading `/metrics` [`SCRAPES_PER_SEC`] times a second and one without, the order
/// alternating from pair to pair; the row holds each pair's ratio of acked rates. (Recording
/// the metrics is part of every run: the node always records them.)
async fn scrape_cost(
    bench: &mut Bench<'_>,
    authors: &mut [Author],
    space: &SpaceId,
    home: &str,
    posted: &mut u64,
    metrics: std::net::SocketAddr,
) -> anyhow::Result<Row> {
    let settings = bench.settings;
    let count = authors.len();
    let mut ratios = Vec::new();
    for run in 0..settings.runs {
        let mut rate = [0.0f64; 2];
        for step in 0..2 {
            let scraped = (run + step) % 2 == 1;
            let per_author = presign_count(count, settings.ingest_secs);
            let batches = presign(authors, space, home, per_author, *posted).await?;
            *posted += per_author as u64;
            let scraper = scraped.then(|| tokio::spawn(scrape(metrics)));
            let (latencies, elapsed) = drive(authors, batches, settings.ingest_secs).await?;
            if let Some(task) = scraper {
                // A scraper runs until aborted; one that ended on its own failed.
                if task.is_finished() {
                    task.await??;
                } else {
                    task.abort();
                }
            }
            anyhow::ensure!(!latencies.is_empty(), "no post was acknowledged in time");
            rate[usize::from(scraped)] = latencies.len() as f64 / elapsed.as_secs_f64();
        }
        let ratio = rate[1] / rate[0].max(f64::MIN_POSITIVE);
        bench.progress(
            Scenario::Ingest,
            format!(
                "{count} authors, pair {}/{}: {:.0} acks/s scraped {SCRAPES_PER_SEC}×/s, {:.0} \
                 not scraped: {ratio:.3}",
                run + 1,
                settings.runs,
                rate[1],
                rate[0]
            ),
        );
        ratios.push(ratio);
    }
    Ok(Row {
        samples: ratios,
        ..Row::new(
            Scenario::Ingest,
            format!(
                "acked rate with /metrics scraped {SCRAPES_PER_SEC}×/s ÷ without, {count} authors"
            ),
            Unit::Fraction,
        )
    })
}

/// Read `/metrics` at `addr` [`SCRAPES_PER_SEC`] times a second until aborted.
async fn scrape(addr: std::net::SocketAddr) -> anyhow::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tick = tokio::time::interval(Duration::from_millis(1000 / SCRAPES_PER_SEC));
    loop {
        tick.tick().await;
        let mut tcp = tokio::net::TcpStream::connect(addr).await?;
        tcp.write_all(b"GET /metrics HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
            .await?;
        let mut body = Vec::new();
        tcp.read_to_end(&mut body).await?;
        anyhow::ensure!(
            body.starts_with(b"HTTP/1.1 200"),
            "/metrics did not answer 200"
        );
    }
}

/// The size of a database page: SQLite's default, and PostgreSQL's 8 KiB counts as two.
const PAGE: u64 = 4096;

/// Posts signed per author and run, for a rate up to this many acks per second on the
/// machine: far above what the node reaches, so no author runs out within the window.
const PRESIGN_RATE: f64 = 24_000.0;

/// One author: its key and its authenticated raw connection.
struct Author {
    key: Keypair,
    conn: RawConn,
}

/// The figures of one author count, one sample per run.
#[derive(Default)]
struct AuthorSeries {
    rate: Series,
    p50: Series,
    p99: Series,
    cores: Series,
    pages: Series,
}

/// What the node's process used: CPU time on all its threads, and bytes it caused to be
/// written to storage (`write_bytes` in `/proc/<pid>/io`: database pages, WAL frames and
/// checkpoints, not socket writes).
struct NodeUse {
    cpu_secs: f64,
    written_bytes: u64,
}

impl NodeUse {
    fn read(pid: u32) -> anyhow::Result<Self> {
        let io = std::fs::read_to_string(format!("/proc/{pid}/io"))?;
        let written_bytes = io
            .lines()
            .find_map(|l| l.strip_prefix("write_bytes:"))
            .and_then(|v| v.trim().parse().ok())
            .context("no write_bytes line in /proc/<pid>/io")?;
        Ok(Self {
            cpu_secs: machine::cpu_secs(pid)?,
            written_bytes,
        })
    }

    fn since(&self, before: &Self) -> Self {
        Self {
            cpu_secs: self.cpu_secs - before.cpu_secs,
            written_bytes: self.written_bytes.saturating_sub(before.written_bytes),
        }
    }
}

/// How many posts each of `count` authors gets ready for a run of `secs`.
fn presign_count(count: usize, secs: f64) -> usize {
    ((PRESIGN_RATE * secs / count as f64).ceil() as usize).max(64)
}

/// `per_author` signed `space.post` requests for each author, as the JSON text it sends,
/// signed before the run on every core so the run measures the node, not its clients.
/// `offset` keeps titles (and so beam ids) new across runs.
async fn presign(
    authors: &[Author],
    space: &SpaceId,
    home: &str,
    per_author: usize,
    offset: u64,
) -> anyhow::Result<Vec<Vec<String>>> {
    let keys: Vec<Keypair> = authors.iter().map(|a| a.key.clone()).collect();
    let (space, home) = (space.clone(), home.to_owned());
    tokio::task::spawn_blocking(move || {
        std::thread::scope(|scope| {
            let workers: Vec<_> = keys
                .iter()
                .enumerate()
                .map(|(a, key)| {
                    let (space, home) = (&space, &home);
                    scope.spawn(move || signed_posts(key, a, space, home, per_author, offset))
                })
                .collect();
            workers
                .into_iter()
                .map(|w| {
                    w.join()
                        .map_err(|_| anyhow::anyhow!("a signing thread panicked"))?
                })
                .collect()
        })
    })
    .await?
}

/// One author's signed posts as request texts, ids 1, 2, …
fn signed_posts(
    key: &Keypair,
    author: usize,
    space: &SpaceId,
    home: &str,
    count: usize,
    offset: u64,
) -> anyhow::Result<Vec<String>> {
    let now = ceiling::now_ms();
    (0..count)
        .map(|i| {
            let title = format!("a{author} #{}", offset + i as u64);
            let (beam, beam_ref) = Beam::post(key, space.clone(), home, &title, BODY, now)?;
            let request = json!({
                "jsonrpc": "2.0",
                "id": i + 1,
                "method": method::SPACE_POST,
                "params": [beam, beam_ref],
            });
            Ok(request.to_string())
        })
        .collect()
}

/// The rows of one author count: the rate against its ceiling, the latencies against their
/// floor, the node's CPU against the machine's cores, and pages written per post.
fn rows_for(count: usize, cores: usize, durable: &str, series: AuthorSeries) -> [Row; 5] {
    let who = if count == 1 {
        "1 author".to_owned()
    } else {
        format!("{count} authors")
    };
    let floor = format!("WS round trip + 1 verify + 1 sign + {durable}");
    let latency = |name: &str, series: Series| {
        Row {
            samples: series.figure,
            ..Row::new(Scenario::Ingest, format!("{name}, {who}"), Unit::Millis)
        }
        .with_bound(Bound::floor(floor.clone(), series.bound))
    };
    [
        Row {
            samples: series.rate.figure,
            ..Row::new(
                Scenario::Ingest,
                format!("beams acked, {who}"),
                Unit::PerSec,
            )
        }
        .with_bound(Bound::ceiling(
            format!("verify_strict + sign, {cores} cores"),
            series.rate.bound,
        )),
        latency("ack p50", series.p50),
        latency("ack p99", series.p99),
        Row {
            samples: series.cores.figure,
            ..Row::new(
                Scenario::Ingest,
                format!("node CPU in cores, {who}"),
                Unit::Count,
            )
        }
        .with_bound(Bound::ceiling(format!("{cores} cores"), series.cores.bound)),
        Row {
            samples: series.pages.figure,
            ..Row::new(
                Scenario::Ingest,
                format!("4 KiB pages written per post, {who}"),
                Unit::Count,
            )
        },
    ]
}

/// Every author sends its signed posts back to back, one in flight, for `secs`; the latency of
/// each post acknowledged within that time, and the time.
async fn drive(
    authors: &mut [Author],
    batches: Vec<Vec<String>>,
    secs: f64,
) -> anyhow::Result<(Vec<Duration>, Duration)> {
    let window = Duration::from_secs_f64(secs);
    let start = Instant::now();
    let deadline = start + window;
    let sends = authors
        .iter_mut()
        .zip(batches)
        .map(|(author, posts)| async move {
            let mut latencies = Vec::with_capacity(posts.len());
            let total = posts.len();
            for (i, post) in posts.into_iter().enumerate() {
                if Instant::now() >= deadline {
                    return anyhow::Ok(latencies);
                }
                let sent = Instant::now();
                author.conn.request(post, i as u64 + 1).await?;
                let acked = Instant::now();
                if acked <= deadline {
                    latencies.push(acked - sent);
                }
            }
            anyhow::bail!("an author used all {total} of its signed posts before the run ended")
        });
    let all = futures_util::future::try_join_all(sends).await?;
    Ok((all.into_iter().flatten().collect(), window))
}
