//! Abuse: floods and slowloris against a node with its default limits, in its own process.
//!
//! Each run starts a fresh node process (`bench __node --default-limits`), so its limits are an
//! operator's and its RSS is its own. A legitimate client, from another loopback address
//! (127.0.0.2) so the flooders' address budget is not its own, calls `node.info` every
//! `LEGIT_PACE` throughout, and its latency is measured in three phases:
//!
//! - *quiet*: nothing else; the floor of the latencies below.
//! - *floods*: connections from 127.0.0.1 each pipelining ten times `request_burst` requests
//!   without reading, first one after another, then [`super::Settings::abuse_flood_connections`] at
//!   once. Figures: the most `rate_limited` answers one flooding connection got before the node
//!   dropped it (ceiling: `request_burst` + 1, which the spec allows), and the requests the
//!   node served to the simultaneous flooders together (ceiling: what the address's budget
//!   allows in that time).
//! - *slowloris*: [`super::Settings::abuse_slowloris`] TCP connections from 200 loopback addresses,
//!   each sending half an HTTP request and nothing more. Figures: the connections the node
//!   holds at the peak (its open file descriptors less those before; ceiling:
//!   `max_pending_connections`), its RSS before, at the peak and a moment after the clients
//!   closed (floor of the last: the RSS before).
//!
//! Last, in this process: what the strict check of a request's parameters (§3.1, one more pass
//! over the text) costs for a `space.post`, next to one plain tokenising pass.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use northstar_node::config::Limits;
use northstar_protocol::address::{SpaceId, SpaceType};
use northstar_protocol::wire::{Beam, BeamRef};
use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use super::nodes::{ChildProcess, DEFAULT_LIMITS_FLAG, NODE_SUBCOMMAND};
use super::raw::RawConn;
use super::report::{Bound, Row, Series, Unit, count, p50_p99};
use super::{Bench, Scenario, keypair};

/// How often the legitimate client calls: half its connection's default rate.
const LEGIT_PACE: Duration = Duration::from_millis(10);

/// The legitimate client's address.
const LEGIT_SOURCE: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);

/// The slowloris connections come from `127.0.1.1` up to this many addresses, so the node's
/// pool in all is what bounds them, not the per-address share.
const SLOWLORIS_ADDRESSES: usize = 200;

/// TCP connections opened at once by the slowloris phase.
const OPEN_CONCURRENCY: usize = 256;

/// How long the node may settle before its RSS is read.
const SETTLE: Duration = Duration::from_millis(1500);

/// What every flooding connection sends before it stops: ten times the burst.
const FLOOD_FACTOR: usize = 10;

/// One run's readings.
#[derive(Default)]
struct Reading {
    quiet: (f64, f64),
    floods: (f64, f64),
    slowloris: (f64, f64),
    most_refusals: f64,
    served_together: f64,
    served_allowed: f64,
    held: f64,
    rss: [f64; 3],
}

/// Run the scenario.
pub async fn run(bench: &mut Bench<'_>) -> anyhow::Result<Vec<Row>> {
    let settings = bench.settings;
    let slowloris = bench.fit_connections(Scenario::Abuse, settings.abuse_slowloris);
    let limits = Limits::default();
    let mut readings = Vec::new();
    for run in 0..settings.runs {
        let reading = one_run(bench, slowloris).await?;
        bench.progress(
            Scenario::Abuse,
            format!(
                "run {}/{}: at most {} rate_limited per flooder, {} served to {} flooders \
                 together; {} connections held of {slowloris}; RSS {:.1} → {:.1} → {:.1} MiB; \
                 legit p99 {:.2} / {:.2} / {:.2} ms",
                run + 1,
                settings.runs,
                reading.most_refusals,
                reading.served_together,
                settings.abuse_flood_connections,
                reading.held,
                reading.rss[0],
                reading.rss[1],
                reading.rss[2],
                reading.quiet.1,
                reading.floods.1,
                reading.slowloris.1,
            ),
        );
        readings.push(reading);
    }
    let strict = strict_cost(settings.abuse_strict_iterations)?;
    let series = |figure: &dyn Fn(&Reading) -> f64, bound: &dyn Fn(&Reading) -> f64| {
        let mut s = Series::default();
        for r in &readings {
            s.push(figure(r), bound(r));
        }
        s
    };
    let row = |figure: String, unit: Unit, s: Series, bound: Bound| {
        Row {
            samples: s.figure,
            ..Row::new(Scenario::Abuse, figure, unit)
        }
        .with_bound(Bound {
            samples: s.bound,
            ..bound
        })
    };
    let burst = f64::from(limits.request_burst);
    let pool = f64::from(limits.max_pending_connections);
    Ok(vec![
        row(
            "rate_limited answers to one pipelined flooder before its drop (most)".into(),
            Unit::Count,
            series(&|r| r.most_refusals, &|_| burst + 1.0),
            Bound::ceiling("request_burst + 1", Vec::new()),
        ),
        row(
            format!(
                "requests served to {} flooders of one address together",
                settings.abuse_flood_connections
            ),
            Unit::Count,
            series(&|r| r.served_together, &|r| r.served_allowed),
            Bound::ceiling("the address's budget in that time", Vec::new()),
        ),
        row(
            "legit call p50 during floods".into(),
            Unit::Millis,
            series(&|r| r.floods.0, &|r| r.quiet.0),
            Bound::floor("same, no flood", Vec::new()),
        ),
        row(
            "legit call p99 during floods".into(),
            Unit::Millis,
            series(&|r| r.floods.1, &|r| r.quiet.1),
            Bound::floor("same, no flood", Vec::new()),
        ),
        row(
            format!("connections held of {} slowloris", count(slowloris)),
            Unit::Count,
            series(&|r| r.held, &|_| pool),
            Bound::ceiling("max_pending_connections", Vec::new()),
        ),
        row(
            "node RSS at the slowloris peak".into(),
            Unit::MiB,
            series(&|r| r.rss[1], &|r| r.rss[0]),
            Bound::floor("RSS before", Vec::new()),
        ),
        row(
            "node RSS after the slowloris".into(),
            Unit::MiB,
            series(&|r| r.rss[2], &|r| r.rss[0]),
            Bound::floor("RSS before", Vec::new()),
        ),
        row(
            "legit call p50 during slowloris".into(),
            Unit::Millis,
            series(&|r| r.slowloris.0, &|r| r.quiet.0),
            Bound::floor("same, no slowloris", Vec::new()),
        ),
        row(
            "legit call p99 during slowloris".into(),
            Unit::Millis,
            series(&|r| r.slowloris.1, &|r| r.quiet.1),
            Bound::floor("same, no slowloris", Vec::new()),
        ),
        Row {
            samples: vec![strict.0; readings.len()],
            ..Row::new(
                Scenario::Abuse,
                "strict params check, one space.post",
                Unit::Micros,
            )
        }
        .with_bound(Bound::floor(
            "one tokenising pass (serde IgnoredAny)",
            vec![strict.1; readings.len()],
        )),
        Row {
            samples: vec![strict.2; readings.len()],
            ..Row::new(
                Scenario::Abuse,
                "typed decode of the same params",
                Unit::Micros,
            )
        },
    ])
}

async fn one_run(bench: &Bench<'_>, slowloris: usize) -> anyhow::Result<Reading> {
    let settings = bench.settings;
    let limits = Limits::default();
    let dir = tempfile::Builder::new()
        .prefix("abuse-")
        .tempdir_in(bench.root())?;
    let dir_arg = dir
        .path()
        .to_str()
        .ok_or_else(|| anyhow::anyhow!("non-UTF-8 path"))?;
    let child = ChildProcess::spawn(
        &settings.exe,
        &[NODE_SUBCOMMAND, "--data-dir", dir_arg, DEFAULT_LIMITS_FLAG],
    )
    .await?;
    let url = child.url();
    let mut reading = Reading::default();
    let mut legit = RawConn::connect_from(child.addr, LEGIT_SOURCE).await?;

    // Quiet.
    let phase = Duration::from_secs_f64(settings.abuse_phase_secs);
    let (conn, mut quiet) = legit_for(legit, async {
        tokio::time::sleep(phase).await;
        anyhow::Ok(())
    })
    .await?;
    legit = conn;
    reading.quiet = p50_p99(&mut quiet);

    // Floods: one connection after another for the phase, then many at once.
    let burst = limits.request_burst as usize;
    let (conn, mut during) = legit_for(legit, async {
        let started = Instant::now();
        let mut most = 0;
        while started.elapsed() < phase {
            let (_, limited) = flood(&url, FLOOD_FACTOR * burst).await?;
            most = most.max(limited);
        }
        let started = Instant::now();
        let floods = futures_util::future::try_join_all(
            (0..settings.abuse_flood_connections).map(|_| flood(&url, FLOOD_FACTOR * burst)),
        )
        .await?;
        let elapsed = started.elapsed().as_secs_f64();
        for (_, limited) in &floods {
            most = most.max(*limited);
        }
        reading.most_refusals = most as f64;
        reading.served_together = floods.iter().map(|(served, _)| *served as f64).sum();
        reading.served_allowed = f64::from(limits.request_burst_per_ip)
            + f64::from(limits.requests_per_second_per_ip) * elapsed;
        anyhow::Ok(())
    })
    .await?;
    legit = conn;
    reading.floods = p50_p99(&mut during);

    // Slowloris.
    tokio::time::sleep(SETTLE).await;
    let fds_before = open_fds(child.pid)?;
    reading.rss[0] = child.rss_kib()? as f64 / 1024.0;
    let (conn, mut during) = legit_for(legit, async {
        let held = half_requests(child.addr, slowloris).await?;
        tokio::time::sleep(SETTLE).await;
        reading.held = open_fds(child.pid)?.saturating_sub(fds_before) as f64;
        reading.rss[1] = child.rss_kib()? as f64 / 1024.0;
        drop(held);
        anyhow::Ok(())
    })
    .await?;
    reading.slowloris = p50_p99(&mut during);
    tokio::time::sleep(SETTLE).await;
    reading.rss[2] = child.rss_kib()? as f64 / 1024.0;
    drop(conn);
    child.stop().await?;
    Ok(reading)
}

/// Run `work` while the legitimate client calls `node.info` every [`LEGIT_PACE`]; the
/// latency of each call made meanwhile.
async fn legit_for(
    mut conn: RawConn,
    work: impl std::future::Future<Output = anyhow::Result<()>>,
) -> anyhow::Result<(RawConn, Vec<Duration>)> {
    let stop = CancellationToken::new();
    let stopped = stop.clone();
    let caller = tokio::spawn(async move {
        let mut latencies = Vec::new();
        let mut tick = tokio::time::interval(LEGIT_PACE);
        while !stopped.is_cancelled() {
            tick.tick().await;
            let started = Instant::now();
            conn.call("node.info", Value::Array(Vec::new())).await?;
            latencies.push(started.elapsed());
        }
        anyhow::Ok((conn, latencies))
    });
    let worked = work.await;
    stop.cancel();
    let called = caller.await?;
    worked?;
    called
}

/// One connection that sends `requests` `node.info` requests without reading, then reads
/// until the node drops it: `(served, rate_limited)`.
async fn flood(url: &str, requests: usize) -> anyhow::Result<(usize, usize)> {
    let (mut sink, mut stream) = RawConn::connect(url).await?.into_ws().split();
    let writer = tokio::spawn(async move {
        for id in 0..requests {
            let text = format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"node.info"}}"#);
            if sink.send(Message::text(text)).await.is_err() {
                break; // dropped
            }
        }
        sink
    });
    let (mut served, mut limited) = (0, 0);
    loop {
        match tokio::time::timeout(Duration::from_secs(30), stream.next()).await {
            Err(_) => anyhow::bail!("a flooding connection was neither answered nor dropped"),
            Ok(Some(Ok(Message::Text(text)))) => {
                let answer: Value = serde_json::from_str(&text)?;
                if answer["result"].is_object() {
                    served += 1;
                } else {
                    limited += 1;
                }
            }
            Ok(Some(Ok(_))) => {}
            Ok(None | Some(Err(_))) => break,
        }
    }
    // Kept until the end, so the socket is not half-closed before the node drops it.
    drop(writer.await?);
    Ok((served, limited))
}

/// `n` TCP connections to `addr`, each having sent half an HTTP request; those the node
/// closed at once are dropped, the rest kept open.
async fn half_requests(addr: SocketAddr, n: usize) -> anyhow::Result<Vec<TcpStream>> {
    let opened: Vec<Option<TcpStream>> = futures_util::stream::iter(0..n)
        .map(|i| async move {
            let last = u8::try_from(i % SLOWLORIS_ADDRESSES + 1).unwrap_or(1);
            let source = Ipv4Addr::new(127, 0, 1, last);
            let socket = tokio::net::TcpSocket::new_v4().ok()?;
            socket.bind(SocketAddr::from((source, 0))).ok()?;
            let mut tcp = tokio::time::timeout(Duration::from_secs(5), socket.connect(addr))
                .await
                .ok()?
                .ok()?;
            tcp.write_all(b"GET / HTTP/1.1\r\nHost: n\r\nUpgrade: websocket\r\n")
                .await
                .ok()?;
            Some(tcp)
        })
        .buffer_unordered(OPEN_CONCURRENCY)
        .collect()
        .await;
    Ok(opened.into_iter().flatten().collect())
}

/// How many file descriptors the process `pid` has open.
fn open_fds(pid: u32) -> anyhow::Result<usize> {
    Ok(std::fs::read_dir(format!("/proc/{pid}/fd"))?.count())
}

/// Microseconds per `space.post` params text: the strict check, one plain tokenising pass,
/// and the typed decode the method makes after the check.
fn strict_cost(iterations: usize) -> anyhow::Result<(f64, f64, f64)> {
    let author = keypair()?;
    let now = 1_700_000_000_000;
    let body = "a chat-sized post, about as long as a sentence or two. ".repeat(4);
    let space = SpaceId::new(SpaceType::Channel, author.did(), "bench")?;
    let (beam, beam_ref) = Beam::post(&author, space, "127.0.0.1:7700", "hello", &body, now)?;
    let params = serde_json::to_string(&(beam, beam_ref))?;
    let per = |f: &dyn Fn(&str) -> bool| -> f64 {
        let started = Instant::now();
        let mut ok = 0;
        for _ in 0..iterations.max(1) {
            ok += usize::from(f(std::hint::black_box(&params)));
        }
        std::hint::black_box(ok);
        started.elapsed().as_secs_f64() * 1e6 / iterations.max(1) as f64
    };
    let check = per(&|t| northstar_protocol::canonical::check_strict(t).is_ok());
    let pass = per(&|t| serde_json::from_str::<serde::de::IgnoredAny>(t).is_ok());
    let decode = per(&|t| serde_json::from_str::<(Beam, BeamRef)>(t).is_ok());
    Ok((check, pass, decode))
}
