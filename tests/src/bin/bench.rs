//! The Northstar benchmark: `cargo run --release -p northstar-tests --bin bench`.
//!
//! Starts real nodes on 127.0.0.1, drives them with real clients and prints one table with
//! each figure next to the ceiling this machine allows; `docs/benchmarks.md` says what each
//! scenario does. The hidden subcommands `__node` and `__plain` are the helper processes the
//! benchmark starts from this same binary.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use northstar_tests::bench::storage::{self, Backend};
use northstar_tests::bench::{self, Scenario, Settings, nodes, plain};

/// Benchmark Northstar nodes on this machine.
#[derive(Parser)]
#[command(name = "bench")]
struct Args {
    /// A seconds-long run with tiny counts: checks that the benchmark works.
    #[arg(long)]
    smoke: bool,
    /// Only these scenarios, comma-separated: ingest, fanout, federation, memory, catchup, auth,
    /// abuse, streams.
    #[arg(long, value_delimiter = ',')]
    only: Vec<Scenario>,
    /// Runs per figure (each figure is their median).
    #[arg(long)]
    runs: Option<usize>,
    /// The backends ingest and catch-up run on, comma-separated, each in turn: sqlite,
    /// postgres. PostgreSQL is the server $NORTHSTAR_BENCH_POSTGRES names, else a throw-away
    /// cluster started with scripts/pg-cluster.
    #[arg(long, value_delimiter = ',', default_value = "sqlite")]
    storage: Vec<Backend>,
    /// Also print the results as one JSON object.
    #[arg(long)]
    json: bool,
    /// Where to make the nodes' data directories (default: the system's temp directory).
    #[arg(long)]
    data_root: Option<PathBuf>,
    /// Concurrent authors for ingest, comma-separated.
    #[arg(long, value_delimiter = ',')]
    ingest_authors: Vec<usize>,
    /// Seconds per ingest run.
    #[arg(long)]
    ingest_secs: Option<f64>,
    /// Subscriber counts for fan-out, comma-separated.
    #[arg(long, value_delimiter = ',')]
    fanout_subscribers: Vec<usize>,
    /// Subscriber counts for fan-out with beams inline, comma-separated; each must also be a
    /// `--fanout-subscribers` count, whose plain ceiling it is compared with.
    #[arg(long, value_delimiter = ',')]
    fanout_inline_subscribers: Vec<usize>,
    /// Member node counts for federation, comma-separated.
    #[arg(long, value_delimiter = ',')]
    federation_members: Vec<usize>,
    /// Broadcast-tree fan-outs for federation, comma-separated.
    #[arg(long, value_delimiter = ',')]
    federation_fanouts: Vec<u32>,
    /// Idle authenticated connections for memory.
    #[arg(long)]
    memory_connections: Option<usize>,
    /// Events the member node misses for catch-up.
    #[arg(long)]
    catchup_events: Option<usize>,
    /// Seconds per auth run.
    #[arg(long)]
    auth_secs: Option<f64>,
    /// TCP connections that never upgrade, for abuse's slowloris phase.
    #[arg(long)]
    abuse_slowloris: Option<usize>,
    /// Watchers of one stream for the streams scenario's fan-out.
    #[arg(long)]
    stream_watchers: Option<usize>,
    /// Payload bytes of each frame of the streams scenario's fan-out.
    #[arg(long)]
    stream_frame_bytes: Option<usize>,
    /// Member nodes of the streams scenario's tree whose interior nodes are killed.
    #[arg(long)]
    stream_members: Option<usize>,
    /// No progress lines on stderr.
    #[arg(long)]
    quiet: bool,
    #[command(subcommand)]
    helper: Option<Helper>,
}

/// The processes the benchmark starts from this binary.
#[derive(Subcommand)]
enum Helper {
    /// Run a node with the benchmark's limits; prints `READY <addr>`.
    #[command(name = "__node", hide = true)]
    Node {
        #[arg(long)]
        data_dir: PathBuf,
        /// The default limits instead of the benchmark's raised ones.
        #[arg(long)]
        default_limits: bool,
        /// The broadcast tree's fan-out for the spaces it sequences.
        #[arg(long)]
        fanout: Option<u32>,
        /// Where the node stores its data (empty: SQLite in the data directory).
        #[arg(long, default_value = "")]
        storage_url: String,
        /// Where the node serves `/metrics` (empty: not served).
        #[arg(long, default_value = "")]
        metrics_listen: String,
    },
    /// Run the plain WebSocket server of the ceilings; prints `READY <addr>`.
    #[command(name = "__plain", hide = true)]
    Plain,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    match args.helper {
        Some(Helper::Node {
            data_dir,
            default_limits,
            fanout,
            storage_url,
            metrics_listen,
        }) => {
            let options = nodes::NodeOptions {
                default_limits,
                fanout,
                storage_url,
                metrics_listen,
            };
            return nodes::node_main(data_dir, options).await;
        }
        Some(Helper::Plain) => return plain::main().await,
        None => {}
    }
    let exe = std::env::current_exe().context("cannot find this binary to re-run it")?;
    let mut settings = if args.smoke {
        Settings::smoke(exe)
    } else {
        Settings::full(exe)
    };
    settings.only = args.only;
    settings.data_root = args.data_root;
    anyhow::ensure!(
        !args.storage.is_empty(),
        "--storage needs at least one backend"
    );
    settings.storage = args.storage;
    settings.postgres = std::env::var(storage::SERVER_ENV)
        .ok()
        .filter(|url| !url.trim().is_empty());
    settings.progress = !args.quiet;
    if let Some(runs) = args.runs {
        anyhow::ensure!(runs > 0, "--runs must be at least 1");
        settings.runs = runs;
    }
    let set_list = |list: Vec<usize>, slot: &mut Vec<usize>| {
        if !list.is_empty() {
            *slot = list;
        }
    };
    set_list(args.ingest_authors, &mut settings.ingest_authors);
    set_list(args.fanout_subscribers, &mut settings.fanout_subscribers);
    set_list(
        args.fanout_inline_subscribers,
        &mut settings.fanout_inline_subscribers,
    );
    set_list(args.federation_members, &mut settings.federation_members);
    if !args.federation_fanouts.is_empty() {
        settings.federation_fanouts = args.federation_fanouts;
    }
    if let Some(secs) = args.ingest_secs {
        settings.ingest_secs = secs;
    }
    if let Some(n) = args.memory_connections {
        settings.memory_connections = n;
    }
    if let Some(n) = args.catchup_events {
        settings.catchup_events = n;
    }
    if let Some(n) = args.abuse_slowloris {
        settings.abuse_slowloris = n;
    }
    if let Some(secs) = args.auth_secs {
        settings.auth_secs = secs;
    }
    if let Some(n) = args.stream_watchers {
        settings.stream_watchers = n;
    }
    if let Some(bytes) = args.stream_frame_bytes {
        settings.stream_frame_bytes = bytes;
    }
    if let Some(n) = args.stream_members {
        anyhow::ensure!(n >= 2, "--stream-members must be at least 2");
        settings.stream_kill_members = n;
    }
    let report = bench::run(&settings).await?;
    println!("{}", report.table());
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report.to_json())?);
    }
    Ok(())
}
