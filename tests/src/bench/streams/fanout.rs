//! Fan-out: one publisher and many watchers of one stream on one node, against the plain
//! WebSocket server broadcasting the same frames to as many connections.
//!
//! Each run sends `stream_frames` frames, never more than [`WINDOW_BYTES`] of them ahead of the
//! slowest watcher: as fast as the watchers take them, yet no watch queue can fill (so no frame
//! may be dropped by the node's own rules), and the kernel's socket buffers stay bounded. Sent
//! all at once, 1,000 connections' worth of frames sat in socket buffers past the kernel's TCP
//! memory pressure threshold, which then throttled every socket: a figure of the kernel, not
//! of the node or the plain server. The plain server gets the same frames, the same window and
//! the same readers.

use std::ops::Range;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use northstar_node::config::Streams as StreamLimits;
use northstar_protocol::Keypair;
use northstar_protocol::address::{SpaceId, SpaceType};
use northstar_sdk::Client;
use tokio_tungstenite::tungstenite::Bytes;

use super::wire::{Followers, Owner, Publisher, Watched, stream_info, watch_all};
use super::{PHASE_TIMEOUT, spawn_node};
use crate::bench::machine::cpu_secs;
use crate::bench::nodes::ChildProcess;
use crate::bench::plain::{self, MAX_SEND, PLAIN_SUBCOMMAND};
use crate::bench::raw::{self, RawConn};
use crate::bench::report::{Bound, Row, Series, Unit, count, median, thousands};
use crate::bench::{Bench, Scenario, keypair};

/// Each watcher verifies the signature of one frame in this many, a different one per
/// watcher: with 1,000 watchers each frame is verified about 16 times.
pub const VERIFY_EVERY: u64 = 64;

/// The most frame bytes sent ahead of the slowest watcher: 32 frames of 16 KiB, about 0.5 GiB
/// in flight to 1,000 watchers, a third of this machine's TCP memory pressure threshold.
const WINDOW_BYTES: usize = 512 * 1024;

/// A run ends early when no watcher has received anything for this long: frames that have
/// not come by then are not coming.
const QUIET: Duration = Duration::from_secs(10);

/// How often the sender looks at the slowest watcher while the window is full.
const LOOK_EVERY: Duration = Duration::from_millis(1);

const MIB: f64 = 1024.0 * 1024.0;

/// The fan-out figures and their ceilings.
pub async fn run(bench: &mut Bench<'_>) -> anyhow::Result<Vec<Row>> {
    let settings = bench.settings;
    let n = bench.fit_connections(Scenario::Streams, settings.stream_watchers);
    anyhow::ensure!(
        settings.stream_frames > 0,
        "a fan-out run needs at least one frame"
    );
    let size = settings.stream_frame_bytes;

    let node = spawn_node(bench, None).await?;
    let key = keypair()?;
    let owner = Client::connect(&node.url(), key.clone()).await?;
    let space = owner
        .create_space(SpaceType::Stream, "fanout", "Fan-out")
        .await?
        .space;
    bench.progress(
        Scenario::Streams,
        format!("fan-out: {n} watchers connecting"),
    );
    let mut watchers = watch_all(&node.url(), &space, n).await?;
    let mut publisher = Publisher::open(&node.url(), &key, &space).await?;
    let frame_len = publisher.owner.frame_len(size)?;
    let window = window(frame_len);

    let (mut rate, mut mib) = (Series::default(), Series::default());
    let (mut dropped, mut cores, mut rss) = (Vec::new(), Vec::new(), Vec::new());
    let mut load = Vec::new();
    for run in 0..settings.runs {
        let first = publisher.owner.next;
        let frames = publisher.owner.sign_burst(settings.stream_frames, size)?;
        let frames: Vec<Bytes> = frames.into_iter().map(Bytes::from).collect();
        let (delivery, back) = one_run(
            &mut Target::Node(&mut publisher),
            node.pid,
            watchers,
            &space,
            &frames,
            first,
            window,
        )
        .await?;
        publisher.check()?;
        watchers = back;
        rate.figure.push(delivery.per_sec);
        mib.figure.push(delivery.per_sec * frame_len as f64 / MIB);
        dropped.push(delivery.dropped);
        cores.push(delivery.cores);
        load.push(delivery.load_cores);
        rss.push(node.rss_kib()? as f64 / 1024.0);
        bench.progress(
            Scenario::Streams,
            format!(
                "fan-out, {n} watchers, run {}/{}: {:.0} deliveries/s, dropped {:.4}, node {:.2} \
                 cores, watchers {:.2} cores",
                run + 1,
                settings.runs,
                delivery.per_sec,
                delivery.dropped,
                delivery.cores,
                delivery.load_cores
            ),
        );
    }
    let info = stream_info(&node.url(), &space).await?;
    drop(watchers);
    drop(publisher);
    drop(owner);
    node.stop().await?;

    let (ceiling, plain_cores, plain_load) = ceiling(bench, n, &key, &space, size, window).await?;
    rate.bound = ceiling.clone();
    mib.bound = ceiling
        .iter()
        .map(|per_sec| per_sec * frame_len as f64 / MIB)
        .collect();
    bench.note(format!(
        "streams, fan-out: {} bytes per frame ({} of payload), {} frames per run, at most {window} \
         ahead of the slowest watcher; each watcher received {} frames/s (median); the node kept \
         {:.2} cores busy and the watchers {:.2} (with the plain server: {:.2} and {:.2}); the \
         node's RSS was {:.1} MiB after the run and it counted {} frames dropped for full watch \
         queues",
        count(frame_len),
        count(size),
        settings.stream_frames,
        thousands(median(&rate.figure) / n as f64),
        median(&cores),
        median(&load),
        median(&plain_cores),
        median(&plain_load),
        median(&rss),
        info["dropped"]
    ));
    let bound = "plain WS broadcast, batched writes";
    let name = format!("{} watchers, {}-byte payloads", count(n), count(size));
    Ok(vec![
        Row {
            samples: rate.figure,
            ..Row::new(
                Scenario::Streams,
                format!("frame deliveries, {name}"),
                Unit::PerSec,
            )
        }
        .with_bound(Bound::ceiling(bound, rate.bound)),
        Row {
            samples: mib.figure,
            ..Row::new(
                Scenario::Streams,
                format!("frames delivered, {name}"),
                Unit::MiBPerSec,
            )
        }
        .with_bound(Bound::ceiling(bound, mib.bound)),
        Row {
            samples: dropped,
            ..Row::new(
                Scenario::Streams,
                format!("frames dropped, {name}"),
                Unit::Fraction,
            )
        },
    ])
}

/// Frames a run may send ahead of the slowest watcher: [`WINDOW_BYTES`] of them, at most the
/// node's `watcher_queue` so that no watch can fill, and no more than the plain server's
/// broadcast holds.
fn window(frame_len: usize) -> usize {
    let queue = StreamLimits::default().watcher_queue as usize;
    (WINDOW_BYTES / frame_len.max(1)).clamp(1, queue.min(MAX_SEND))
}

/// Where a run's frames go.
enum Target<'a> {
    /// The node, through the owner's publishing connection.
    Node(&'a mut Publisher),
    /// The plain server, which loaded the same frames from a file.
    Plain(&'a mut ChildProcess),
}

impl Target<'_> {
    /// Send `frames[range]`.
    async fn send(&mut self, frames: &[Bytes], range: Range<usize>) -> anyhow::Result<()> {
        match self {
            Target::Node(publisher) => publisher.send_all(&frames[range]).await,
            Target::Plain(server) => {
                server
                    .command(&format!("BROADCAST {} {}", range.start, range.end))
                    .await
            }
        }
    }
}

/// One run's figures.
struct Delivery {
    /// Frames received by all watchers together, per second.
    per_sec: f64,
    /// The share of the run's frames × watchers that did not arrive.
    dropped: f64,
    /// Cores the serving process kept busy from the first send to the last arrival.
    cores: f64,
    /// Cores this process, the watchers above all, kept busy meanwhile.
    load_cores: f64,
}

/// Send `frames`, numbered from `first`, to `target`, never more than `window` ahead of the
/// slowest watcher, and read them on `watchers`; the run's figures (the cores are those of
/// process `pid`) and the watchers back.
async fn one_run(
    target: &mut Target<'_>,
    pid: u32,
    watchers: Vec<raw::Ws>,
    space: &SpaceId,
    frames: &[Bytes],
    first: u64,
    window: usize,
) -> anyhow::Result<(Delivery, Vec<raw::Ws>)> {
    let last = first + frames.len() as u64 - 1;
    let followers = Followers::spawn(watchers, space, last, VERIFY_EVERY);
    let cpu = (cpu_secs(pid)?, cpu_secs(std::process::id())?);
    let start = Instant::now();
    let mut sent = 0;
    let mut heard = (0, Instant::now());
    while sent < frames.len() {
        let slowest = followers.slowest();
        // Frames of this run the slowest watcher has.
        let taken = slowest.saturating_sub(first - 1) as usize;
        let upto = (taken + window).min(frames.len());
        if upto > sent {
            target.send(frames, sent..upto).await?;
            sent = upto;
            continue;
        }
        if slowest != heard.0 {
            heard = (slowest, Instant::now());
        } else if heard.1.elapsed() >= QUIET {
            // A watcher stopped: what arrived is counted, the rest as dropped.
            break;
        }
        tokio::time::sleep(LOOK_EVERY).await;
    }
    let watched = followers.collect(QUIET, PHASE_TIMEOUT).await?;
    let secs = start.elapsed().as_secs_f64();
    let cores = (cpu_secs(pid)? - cpu.0) / secs;
    let load_cores = (cpu_secs(std::process::id())? - cpu.1) / secs;
    let (per_sec, dropped) = delivery(&watched, first..=last, start)?;
    let back = watched.into_iter().map(|w| w.ws).collect();
    Ok((
        Delivery {
            per_sec,
            dropped,
            cores,
            load_cores,
        },
        back,
    ))
}

/// Deliveries per second of the frames numbered in `range`, from `start` to the last arrival,
/// and the share of them that did not arrive.
fn delivery(
    watched: &[Watched],
    range: std::ops::RangeInclusive<u64>,
    start: Instant,
) -> anyhow::Result<(f64, f64)> {
    if let Some((i, why)) = watched
        .iter()
        .enumerate()
        .find_map(|(i, w)| w.ended.as_ref().map(|why| (i, why)))
    {
        bail!("watcher {i} stopped: {why}");
    }
    let mut deliveries = 0usize;
    let mut last = start;
    for w in watched {
        for (number, at) in &w.seen {
            if range.contains(number) {
                deliveries += 1;
                last = last.max(*at);
            }
        }
    }
    let expected = (range.end() - range.start() + 1) as usize * watched.len();
    let secs = (last - start).as_secs_f64().max(1e-9);
    Ok((
        deliveries as f64 / secs,
        1.0 - deliveries as f64 / expected.max(1) as f64,
    ))
}

/// The plain server broadcasting the same number of frames of the same stream and size to `n`
/// connections, per run, with the same window: deliveries per second, and the cores it and
/// the watchers kept busy.
async fn ceiling(
    bench: &Bench<'_>,
    n: usize,
    key: &Keypair,
    space: &SpaceId,
    size: usize,
    window: usize,
) -> anyhow::Result<(Vec<f64>, Vec<f64>, Vec<f64>)> {
    let settings = bench.settings;
    let mut owner = Owner {
        key: key.clone(),
        space: space.clone(),
        next: 1,
    };
    let frames = owner.sign_burst(settings.stream_frames, size)?;
    let file = bench.root().join("streams-frames.bin");
    plain::write_binary(&file, &frames)?;
    let frames: Vec<Bytes> = frames.into_iter().map(Bytes::from).collect();
    let mut server = ChildProcess::spawn(&settings.exe, &[PLAIN_SUBCOMMAND]).await?;
    server
        .command(&format!(
            "FRAMES {}",
            file.to_str().context("non-UTF-8 temp path")?
        ))
        .await?;
    let pid = server.pid;
    let mut conns: Vec<raw::Ws> = raw::open_many(&server.url(), n, false)
        .await?
        .into_iter()
        .map(RawConn::into_ws)
        .collect();
    let (mut rates, mut cores, mut load) = (Vec::new(), Vec::new(), Vec::new());
    for run in 0..settings.runs {
        let (delivery, back) = one_run(
            &mut Target::Plain(&mut server),
            pid,
            conns,
            space,
            &frames,
            1,
            window,
        )
        .await?;
        conns = back;
        rates.push(delivery.per_sec);
        cores.push(delivery.cores);
        load.push(delivery.load_cores);
        bench.progress(
            Scenario::Streams,
            format!(
                "fan-out, {n} connections, ceiling run {}/{}: {:.0} deliveries/s",
                run + 1,
                settings.runs,
                delivery.per_sec
            ),
        );
    }
    drop(conns);
    server.stop().await?;
    Ok((rates, cores, load))
}
