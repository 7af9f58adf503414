//! Memory: the resident set of a node in its own process, idle and with 10,000 idle
//! authenticated connections, and the cost per connection.
//!
//! Each run starts a fresh node process, reads its `VmRSS` once it serves, opens the
//! connections (raw WebSocket clients in this process, each with its own key, authenticated),
//! waits a moment and reads `VmRSS` again; KiB per connection = the difference ÷ connections.
//!
//! Floor: the plain WebSocket server ([`super::plain`]) in its own process with as many
//! connections, each having exchanged one message.

use std::time::Duration;

use super::nodes::{ChildProcess, NODE_SUBCOMMAND};
use super::plain::PLAIN_SUBCOMMAND;
use super::raw;
use super::report::{Bound, Row, Series, Unit, count};
use super::{Bench, Scenario};

/// How long a process may settle before its RSS is read.
const SETTLE: Duration = Duration::from_millis(500);

/// One run's readings, KiB.
struct Reading {
    idle: f64,
    loaded: f64,
}

impl Reading {
    fn per_connection(&self, n: usize) -> f64 {
        (self.loaded - self.idle) / n as f64
    }
}

/// Run the scenario.
pub async fn run(bench: &mut Bench<'_>) -> anyhow::Result<Vec<Row>> {
    let settings = bench.settings;
    let n = bench.fit_connections(Scenario::Memory, settings.memory_connections);
    let (mut idle, mut loaded, mut per) = (Series::default(), Series::default(), Series::default());
    for run in 0..settings.runs {
        let dir = tempfile::Builder::new()
            .prefix("memory-")
            .tempdir_in(bench.root())?;
        let dir_arg = dir
            .path()
            .to_str()
            .ok_or_else(|| anyhow::anyhow!("non-UTF-8 path"))?;
        let node = measure(bench, &[NODE_SUBCOMMAND, "--data-dir", dir_arg], n, true).await?;
        let plain = measure(bench, &[PLAIN_SUBCOMMAND], n, false).await?;
        idle.push(node.idle / 1024.0, plain.idle / 1024.0);
        loaded.push(node.loaded / 1024.0, plain.loaded / 1024.0);
        per.push(node.per_connection(n), plain.per_connection(n));
        bench.progress(
            Scenario::Memory,
            format!(
                "run {}/{}: node idle {:.1} MiB, with {n} connections {:.1} MiB, {:.2} KiB per \
                 connection (plain WebSocket server {:.2} KiB)",
                run + 1,
                settings.runs,
                node.idle / 1024.0,
                node.loaded / 1024.0,
                node.per_connection(n),
                plain.per_connection(n)
            ),
        );
    }
    let row = |figure: String, unit: Unit, series: Series, floor: &str| {
        Row {
            samples: series.figure,
            ..Row::new(Scenario::Memory, figure, unit)
        }
        .with_bound(Bound::floor(floor, series.bound))
    };
    Ok(vec![
        row(
            "node RSS, idle".into(),
            Unit::MiB,
            idle,
            "plain WS server, idle",
        ),
        row(
            format!("node RSS, {} idle authenticated connections", count(n)),
            Unit::MiB,
            loaded,
            "plain WS server, same connections",
        ),
        row(
            "per idle authenticated connection".into(),
            Unit::KiB,
            per,
            "plain WS server",
        ),
    ])
}

/// Start the process, read its RSS idle and with `n` connections, stop it.
async fn measure(
    bench: &Bench<'_>,
    args: &[&str],
    n: usize,
    authenticate: bool,
) -> anyhow::Result<Reading> {
    let child = ChildProcess::spawn(&bench.settings.exe, args).await?;
    tokio::time::sleep(SETTLE).await;
    let idle = child.rss_kib()? as f64;
    let conns = raw::open_many(&child.url(), n, authenticate).await?;
    tokio::time::sleep(SETTLE * 2).await;
    let loaded = child.rss_kib()? as f64;
    drop(conns);
    child.stop().await?;
    Ok(Reading { idle, loaded })
}
