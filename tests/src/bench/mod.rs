//! The benchmark: real nodes on 127.0.0.1 driven by real clients, each figure next to the
//! ceiling (or floor) this machine allows, measured in the same run.
//!
//! Run it with `cargo run --release -p northstar-tests --bin bench` (see `docs/benchmarks.md`);
//! `tests/bench_smoke.rs` runs it with tiny counts so it cannot rot.
//!
//! # Layout
//! - [`ingest`]: beams acknowledged per second by 1, 16 and 64 concurrent authors, ack latency.
//! - [`fanout`]: one author, 100 to 10,000 subscribers on one node: deliveries per second and
//!   post-to-delivery latency.
//! - [`federation`]: a sequencer and 12 or 50 member nodes: latency to the last member node and
//!   per hop of the broadcast tree.
//! - [`memory`]: a node process's RSS, idle and with 10,000 idle authenticated connections.
//! - [`catchup`]: a member node that was offline for 50,000 events catching up.
//! - [`auth`]: challenge-response handshakes per second.
//! - [`streams`]: live streams: frames fanned out to 1,000 watchers on one node, latency down
//!   a tree of 3 tiers, and the frames that still arrive when interior nodes are killed.
//! - [`abuse`]: floods and slowloris against a node with default limits: refusals before the
//!   drop, connections held, RSS before, at the peak and after, a legitimate client's latency;
//!   the cost of the strict params check.
//! - [`ceiling`]: the bounds: Ed25519 work on all cores, a plain WebSocket round trip.
//! - [`plain`]: the plain WebSocket server the fan-out and memory bounds are measured on.
//! - [`load`]: SDK authors posting at a steady rate or with a window in flight.
//! - [`nodes`]: nodes in this process or in their own, with the benchmark's limits.
//! - [`raw`]: raw JSON-RPC clients for the loads an SDK client per connection cannot carry.
//! - [`machine`]: CPU, memory, file system, fsync, open-files limit.
//! - [`storage`]: the backends ingest and catch-up run on (`--storage sqlite,postgres`), and the
//!   PostgreSQL server.
//! - [`report`]: rows, statistics, the table and the JSON.

pub mod abuse;
pub mod auth;
pub mod blobs;
pub mod catchup;
pub mod ceiling;
pub mod fanout;
pub mod federation;
pub mod ingest;
pub mod load;
pub mod machine;
pub mod memory;
pub mod nodes;
pub mod plain;
pub mod raw;
pub mod report;
pub mod storage;
pub mod streams;

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Instant;

use northstar_protocol::Keypair;
use serde::Serialize;

use self::machine::Machine;
use self::report::{Report, Row, count};
use self::storage::{Backend, PgServer};

/// The scenarios of the benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Scenario {
    /// Beams acknowledged per second.
    Ingest,
    /// Deliveries per second to many subscribers.
    Fanout,
    /// Latency down the broadcast tree.
    Federation,
    /// Resident memory per connection.
    Memory,
    /// A member node catching up.
    Catchup,
    /// Handshakes per second.
    Auth,
    /// Floods and slowloris against default limits.
    Abuse,
    /// Live stream frames: fan-out, latency down a tree, interior nodes killed.
    Streams,
    /// Blob upload and download MiB/s next to a file copy and a BLAKE3 hash.
    Blobs,
}

impl Scenario {
    /// Every scenario, in the order they run.
    pub const ALL: [Scenario; 9] = [
        Scenario::Ingest,
        Scenario::Fanout,
        Scenario::Federation,
        Scenario::Memory,
        Scenario::Catchup,
        Scenario::Auth,
        Scenario::Abuse,
        Scenario::Streams,
        Scenario::Blobs,
    ];

    /// Its name, as `--only` takes it.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Ingest => "ingest",
            Scenario::Fanout => "fanout",
            Scenario::Federation => "federation",
            Scenario::Memory => "memory",
            Scenario::Catchup => "catchup",
            Scenario::Auth => "auth",
            Scenario::Abuse => "abuse",
            Scenario::Streams => "streams",
            Scenario::Blobs => "blobs",
        }
    }
}

impl FromStr for Scenario {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim().to_ascii_lowercase().replace(['-', '_'], "");
        Scenario::ALL
            .into_iter()
            .find(|sc| sc.name() == s)
            .ok_or_else(|| {
                let names: Vec<_> = Scenario::ALL.iter().map(|s| s.name()).collect();
                format!(
                    "unknown scenario {s:?}; expected one of {}",
                    names.join(", ")
                )
            })
    }
}

/// What the benchmark runs and how much of it.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Whether this is the seconds-long smoke run (printed in the report).
    pub smoke: bool,
    /// Runs per figure; each figure is the median of these.
    pub runs: usize,
    /// The scenarios to run; empty for all.
    pub only: Vec<Scenario>,
    /// The bench binary, re-run as a node process (`__node`) and as the plain server
    /// (`__plain`).
    pub exe: PathBuf,
    /// Where to make the nodes' data directories; `None` for the system's temp directory.
    pub data_root: Option<PathBuf>,
    /// Print progress to stderr.
    pub progress: bool,
    /// The backends ingest and catch-up run on, each in turn; the other scenarios use SQLite.
    pub storage: Vec<Backend>,
    /// The PostgreSQL server (a URL on which databases may be created); `None` starts a
    /// throw-away cluster with `scripts/pg-cluster` when a scenario needs one.
    pub postgres: Option<String>,
    /// Concurrent authors, one connection each.
    pub ingest_authors: Vec<usize>,
    /// Seconds each ingest run posts for.
    pub ingest_secs: f64,
    /// Subscriber counts.
    pub fanout_subscribers: Vec<usize>,
    /// Subscriber counts measured again with every raw subscriber asking for beams inline;
    /// each is reported against the plain broadcast ceiling of the same count, so it must
    /// also be in `fanout_subscribers` (others are skipped).
    pub fanout_inline_subscribers: Vec<usize>,
    /// Deliveries aimed at per throughput phase: posts = this ÷ subscribers, within
    /// `fanout_min_posts..=fanout_max_posts`.
    pub fanout_deliveries: usize,
    /// The fewest posts in a throughput phase.
    pub fanout_min_posts: usize,
    /// The most posts in a throughput phase; below the node's `subscriber_queue`, so no
    /// subscriber can fall far enough behind to be cut off.
    pub fanout_max_posts: usize,
    /// Posts in flight at once in a throughput phase.
    pub fanout_window: usize,
    /// The most posts per second in a latency phase (it posts at half the measured capacity
    /// if that is lower).
    pub fanout_latency_rate: f64,
    /// Seconds a latency phase posts for.
    pub fanout_latency_secs: f64,
    /// Member node counts.
    pub federation_members: Vec<usize>,
    /// Fan-outs of the broadcast tree.
    pub federation_fanouts: Vec<u32>,
    /// Posts per federation run.
    pub federation_posts: usize,
    /// Posts per second in a federation run.
    pub federation_rate: f64,
    /// Idle authenticated connections.
    pub memory_connections: usize,
    /// Events a member node misses while offline.
    pub catchup_events: usize,
    /// Seconds each auth run lasts.
    pub auth_secs: f64,
    /// Clients handshaking at once.
    pub auth_concurrency: usize,
    /// Seconds of each phase of the legitimate client's latency in the abuse scenario.
    pub abuse_phase_secs: f64,
    /// Connections of one address flooding at once.
    pub abuse_flood_connections: usize,
    /// TCP connections that never upgrade.
    pub abuse_slowloris: usize,
    /// Iterations of the strict params check's micro-measure.
    pub abuse_strict_iterations: usize,
    /// Watchers of one stream on one node, for the fan-out part.
    pub stream_watchers: usize,
    /// Payload bytes of each fan-out frame.
    pub stream_frame_bytes: usize,
    /// Frames published per fan-out run, as fast as the slowest watcher takes them.
    pub stream_frames: usize,
    /// Payload bytes of each frame sent down the trees.
    pub stream_tree_frame_bytes: usize,
    /// Frames per second published down the trees.
    pub stream_tree_rate: f64,
    /// Seconds each latency run publishes for (tree of 3 tiers).
    pub stream_latency_secs: f64,
    /// Member nodes of the tree whose interior nodes are killed.
    pub stream_kill_members: usize,
    /// The size of the blob uploaded and downloaded, bytes.
    pub blob_bytes: u64,
    /// That tree's fan-out.
    pub stream_kill_fanout: u32,
    /// Seconds each kill run publishes for; the kill comes halfway.
    pub stream_kill_secs: f64,
}

impl Settings {
    /// The full benchmark, as the issue states it.
    pub fn full(exe: PathBuf) -> Self {
        Self {
            smoke: false,
            runs: 5,
            only: Vec::new(),
            exe,
            data_root: None,
            progress: true,
            storage: vec![Backend::Sqlite],
            postgres: None,
            ingest_authors: vec![1, 16, 64],
            ingest_secs: 3.0,
            fanout_subscribers: vec![100, 1_000, 10_000],
            fanout_inline_subscribers: vec![1_000],
            fanout_deliveries: 1_000_000,
            fanout_min_posts: 50,
            fanout_max_posts: 1_000,
            fanout_window: 32,
            fanout_latency_rate: 200.0,
            fanout_latency_secs: 2.0,
            federation_members: vec![12, 50],
            federation_fanouts: vec![3, 10],
            federation_posts: 40,
            federation_rate: 20.0,
            memory_connections: 10_000,
            catchup_events: 50_000,
            auth_secs: 3.0,
            auth_concurrency: 32,
            abuse_phase_secs: 2.0,
            abuse_flood_connections: 64,
            abuse_slowloris: 10_000,
            abuse_strict_iterations: 20_000,
            stream_watchers: 1_000,
            stream_frame_bytes: 16 * 1024,
            stream_frames: 512,
            stream_tree_frame_bytes: 1024,
            stream_tree_rate: 100.0,
            stream_latency_secs: 2.0,
            stream_kill_members: 13,
            blob_bytes: 256 * 1024 * 1024,
            stream_kill_fanout: 3,
            stream_kill_secs: 4.0,
        }
    }

    /// A seconds-long run with tiny counts: it checks that everything works, not how fast.
    pub fn smoke(exe: PathBuf) -> Self {
        Self {
            smoke: true,
            runs: 1,
            progress: false,
            ingest_authors: vec![1, 4],
            ingest_secs: 0.3,
            fanout_subscribers: vec![5, 20],
            fanout_inline_subscribers: vec![20],
            fanout_deliveries: 200,
            fanout_min_posts: 5,
            fanout_max_posts: 20,
            fanout_window: 4,
            fanout_latency_rate: 20.0,
            fanout_latency_secs: 0.25,
            federation_members: vec![4],
            federation_fanouts: vec![2],
            federation_posts: 4,
            federation_rate: 20.0,
            memory_connections: 20,
            catchup_events: 40,
            auth_secs: 0.3,
            auth_concurrency: 4,
            abuse_phase_secs: 0.2,
            abuse_flood_connections: 3,
            abuse_slowloris: 40,
            abuse_strict_iterations: 100,
            stream_watchers: 5,
            stream_frame_bytes: 1024,
            stream_frames: 20,
            stream_tree_frame_bytes: 256,
            stream_tree_rate: 50.0,
            stream_latency_secs: 0.3,
            stream_kill_members: 4,
            blob_bytes: 8 * 1024 * 1024,
            stream_kill_fanout: 2,
            stream_kill_secs: 1.0,
            ..Self::full(exe)
        }
    }

    fn runs(&self, scenario: Scenario) -> bool {
        self.only.is_empty() || self.only.contains(&scenario)
    }

    /// Whether a scenario this run makes uses PostgreSQL.
    fn needs_postgres(&self) -> bool {
        self.storage.contains(&Backend::Postgres)
            && (self.runs(Scenario::Ingest) || self.runs(Scenario::Catchup))
    }

    /// Whether figures name their backend: when any is not the default alone.
    pub fn names_backends(&self) -> bool {
        self.storage != [Backend::Sqlite]
    }

    /// The settings that shape the figures, as `(name, value)` lines for the report.
    fn describe(&self) -> Vec<(String, String)> {
        let mut out = vec![(
            "node limits (all nodes)".to_owned(),
            nodes::describe_limits(),
        )];
        if self.names_backends() {
            let names: Vec<&str> = self.storage.iter().map(|b| b.name()).collect();
            out.push((
                "storage".to_owned(),
                format!(
                    "ingest and catch-up on {}, each in turn; the other scenarios on sqlite",
                    names.join(", ")
                ),
            ));
        }
        for scenario in Scenario::ALL {
            if self.runs(scenario) {
                let label = match scenario {
                    Scenario::Fanout => "fan-out",
                    Scenario::Catchup => "catch-up",
                    other => other.name(),
                };
                out.push((label.to_owned(), self.describe_one(scenario)));
            }
        }
        out
    }

    fn describe_one(&self, scenario: Scenario) -> String {
        let list = |v: &[usize]| v.iter().map(|n| count(*n)).collect::<Vec<_>>().join(", ");
        match scenario {
            Scenario::Ingest => format!(
                "{} authors (raw authenticated connections, one each, sending posts signed before \
                 the run back to back) for {} s per run into one channel of a node in its own \
                 process",
                list(&self.ingest_authors),
                self.ingest_secs
            ),
            Scenario::Fanout => format!(
                "{} subscribers (raw WebSocket clients, authenticated) of a node in its own \
                 process; throughput phase: about {} deliveries ({}–{} posts, {} in flight); \
                 latency phase: at most {} posts/s for {} s",
                list(&self.fanout_subscribers),
                count(self.fanout_deliveries),
                self.fanout_min_posts,
                self.fanout_max_posts,
                self.fanout_window,
                self.fanout_latency_rate,
                self.fanout_latency_secs
            ),
            Scenario::Federation => format!(
                "{} member nodes × fan-out {}, in-process nodes; {} posts at {} posts/s per run",
                list(&self.federation_members),
                self.federation_fanouts
                    .iter()
                    .map(u32::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
                self.federation_posts,
                self.federation_rate
            ),
            Scenario::Memory => format!(
                "{} idle authenticated connections to a node in its own process",
                count(self.memory_connections)
            ),
            Scenario::Catchup => format!(
                "{} events missed by an in-process member node",
                count(self.catchup_events)
            ),
            Scenario::Auth => format!(
                "{} SDK clients connecting and authenticating back to back for {} s per run",
                self.auth_concurrency, self.auth_secs
            ),
            Scenario::Abuse => format!(
                "a node in its own process with default limits; pipelined floods of one \
                 connection, then {} at once, from 127.0.0.1; {} slowloris connections from \
                 200 addresses; a legit client on 127.0.0.2 calling every 10 ms for {} s per \
                 phase; {} iterations of the strict check",
                self.abuse_flood_connections,
                count(self.abuse_slowloris),
                self.abuse_phase_secs,
                count(self.abuse_strict_iterations)
            ),
            Scenario::Streams => format!(
                "fan-out: {} watchers (raw WebSocket clients) of one stream on a node in its own \
                 process, {} frames of {} payload bytes per run, as fast as the slowest watcher \
                 takes them; \
                 latency: {} frames/s of {} bytes for {} s down a sequencer of fan-out 1 and 3 \
                 member nodes; kills: {} member nodes × fan-out {}, {} frames/s for {} s, 1 then \
                 2 interior nodes killed halfway; every node its own process",
                count(self.stream_watchers),
                self.stream_frames,
                count(self.stream_frame_bytes),
                self.stream_tree_rate,
                count(self.stream_tree_frame_bytes),
                self.stream_latency_secs,
                self.stream_kill_members,
                self.stream_kill_fanout,
                self.stream_tree_rate,
                self.stream_kill_secs
            ),
            Scenario::Blobs => format!(
                "one blob of {} MiB uploaded and downloaded by the SDK against a node in its own \
                 process, next to a file copy + fsync and a one-thread BLAKE3 of the same file",
                self.blob_bytes / (1024 * 1024)
            ),
        }
    }
}

/// What a scenario needs from the run: its settings, a place for data, the machine's facts,
/// and where to leave notes for the reader.
pub struct Bench<'a> {
    /// The settings.
    pub settings: &'a Settings,
    /// Where nodes make their data directories.
    pub root: PathBuf,
    /// The machine.
    pub machine: Machine,
    /// The open-files limit in force.
    pub nofile: u64,
    /// Notes printed under the table.
    pub notes: Vec<String>,
    /// The PostgreSQL server, when a scenario needs one.
    pub postgres: Option<PgServer>,
}

impl Bench<'_> {
    /// Print a progress line, if asked to.
    pub fn progress(&self, scenario: Scenario, message: impl AsRef<str>) {
        if self.settings.progress {
            eprintln!("[{}] {}", scenario.name(), message.as_ref());
        }
    }

    /// Leave a note under the table.
    pub fn note(&mut self, message: impl Into<String>) {
        self.notes.push(message.into());
    }

    /// `wanted` connections, or fewer if one process cannot hold that many sockets under the
    /// open-files limit (with a note saying so).
    pub fn fit_connections(&mut self, scenario: Scenario, wanted: usize) -> usize {
        // Sockets of the other side live in another process; leave room for the rest.
        let room = usize::try_from(self.nofile.saturating_sub(512)).unwrap_or(usize::MAX);
        if wanted <= room {
            return wanted;
        }
        self.note(format!(
            "{}: {wanted} connections scaled down to {room}: the open-files limit is {} \
             (raise it with `ulimit -n`)",
            scenario.name(),
            self.nofile
        ));
        room
    }

    /// The root of the temporary data directories.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The `storage_url` of a node on `data_dir` stored in `backend`.
    pub async fn storage_url(&self, backend: Backend, data_dir: &Path) -> anyhow::Result<String> {
        match backend {
            Backend::Sqlite => Ok(String::new()),
            Backend::Postgres => {
                let server = self
                    .postgres
                    .as_ref()
                    .ok_or_else(|| anyhow::anyhow!("no PostgreSQL server was started"))?;
                server.storage_url(data_dir).await
            }
        }
    }

    /// `figure` with the backend's name, when the run names backends.
    pub fn label(&self, figure: String, backend: Backend) -> String {
        if self.settings.names_backends() {
            format!("{figure}, {}", backend.name())
        } else {
            figure
        }
    }
}

/// A new key pair.
pub fn keypair() -> anyhow::Result<Keypair> {
    Keypair::generate().map_err(|e| anyhow::anyhow!("no randomness for a key: {e}"))
}

/// Run the benchmark.
pub async fn run(settings: &Settings) -> anyhow::Result<Report> {
    let started = Instant::now();
    let nofile = machine::raise_nofile();
    let root = match &settings.data_root {
        Some(dir) => {
            std::fs::create_dir_all(dir)?;
            tempfile::Builder::new()
                .prefix("northstar-bench-")
                .tempdir_in(dir)?
        }
        None => tempfile::Builder::new()
            .prefix("northstar-bench-")
            .tempdir()?,
    };
    let machine = Machine::probe(root.path());
    let postgres = if settings.needs_postgres() {
        if settings.progress {
            eprintln!("[storage] starting or connecting to PostgreSQL");
        }
        Some(PgServer::start_or_use(settings.postgres.clone()).await?)
    } else {
        None
    };
    let mut described = settings.describe();
    if let Some(server) = &postgres {
        described.push(("postgres".to_owned(), server.description.clone()));
    }
    let mut bench = Bench {
        settings,
        root: root.path().to_owned(),
        machine: machine.clone(),
        nofile,
        notes: Vec::new(),
        postgres,
    };
    let measured = scenarios(&mut bench).await;
    let notes = std::mem::take(&mut bench.notes);
    let postgres = bench.postgres.take();
    drop(bench);
    // The data directories go with `root`; nodes were stopped by their scenarios. Then the
    // databases of those directories go, and a cluster this run started.
    let closed = root.close();
    if let Some(server) = postgres {
        server.stop().await;
    }
    let rows = measured?;
    closed?;
    Ok(Report {
        machine,
        runs: settings.runs,
        smoke: settings.smoke,
        settings: described,
        rows,
        notes,
        elapsed_secs: started.elapsed().as_secs_f64(),
    })
}

/// Every scenario the settings ask for, in order.
async fn scenarios(bench: &mut Bench<'_>) -> anyhow::Result<Vec<Row>> {
    let settings = bench.settings;
    let mut rows: Vec<Row> = Vec::new();
    for scenario in Scenario::ALL {
        if !settings.runs(scenario) {
            continue;
        }
        let began = Instant::now();
        bench.progress(scenario, "starting");
        let new = match scenario {
            Scenario::Ingest => ingest::run(bench).await,
            Scenario::Fanout => fanout::run(bench).await,
            Scenario::Federation => federation::run(bench).await,
            Scenario::Memory => memory::run(bench).await,
            Scenario::Catchup => catchup::run(bench).await,
            Scenario::Auth => auth::run(bench).await,
            Scenario::Abuse => abuse::run(bench).await,
            Scenario::Streams => streams::run(bench).await,
            Scenario::Blobs => blobs::run(bench).await,
        }
        .map_err(|e| e.context(format!("scenario {}", scenario.name())))?;
        bench.progress(
            scenario,
            format!("done in {:.0} s", began.elapsed().as_secs_f64()),
        );
        rows.extend(new);
    }
    Ok(rows)
}
