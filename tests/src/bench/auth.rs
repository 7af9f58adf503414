//! Auth: completed challenge-response handshakes per second.
//!
//! Raw clients connect and authenticate back to back against a node in its own process, each
//! handshake on a new WebSocket: the connection, `auth.challenge`, and `auth.respond` with the
//! client's signature over the challenge. The clients do not check the node's signature on the
//! challenge (an SDK does): the scenario measures the node's side of the handshake, and the
//! clients share the node's two cores. The node's CPU during the runs is reported too.
//!
//! Ceiling: the node's share of the signature work per handshake, one signature (the
//! challenge) and one strict verification (the response), on all cores.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio::task::JoinSet;

use super::ceiling::AuthWork;
use super::machine;
use super::nodes::{ChildProcess, NODE_SUBCOMMAND, new_data_dir};
use super::raw::RawConn;
use super::report::{Bound, Row, Series, Unit};
use super::{Bench, Scenario, keypair};

/// Run the scenario.
pub async fn run(bench: &mut Bench<'_>) -> anyhow::Result<Vec<Row>> {
    let settings = bench.settings;
    let dir = new_data_dir(bench.root())?;
    let dir_arg = dir.to_str().context("non-UTF-8 data directory")?;
    let node =
        ChildProcess::spawn(&settings.exe, &[NODE_SUBCOMMAND, "--data-dir", dir_arg]).await?;
    let url = node.url();
    let work = Arc::new(tokio::task::spawn_blocking(AuthWork::new).await??);
    let mut rate = Series::default();
    let mut cores = Series::default();
    for run in 0..settings.runs {
        let window = Duration::from_secs_f64(settings.auth_secs);
        let cpu_before = machine::cpu_secs(node.pid)?;
        let done = handshakes(&url, settings.auth_concurrency, window).await?;
        let busy = (machine::cpu_secs(node.pid)? - cpu_before) / window.as_secs_f64();
        cores.push(busy, bench.machine.cores as f64);
        anyhow::ensure!(done > 0, "no handshake completed in time");
        let per_sec = done as f64 / window.as_secs_f64();
        let w = work.clone();
        let ceiling = tokio::task::spawn_blocking(move || w.rate(done)).await??;
        rate.push(per_sec, ceiling);
        bench.progress(
            Scenario::Auth,
            format!(
                "run {}/{}: {per_sec:.0} handshakes/s (ceiling {ceiling:.0}), node CPU \
                 {busy:.2} cores",
                run + 1,
                settings.runs
            ),
        );
    }
    node.stop().await?;
    let machine_cores = bench.machine.cores;
    Ok(vec![
        Row {
            samples: rate.figure,
            ..Row::new(
                Scenario::Auth,
                format!(
                    "handshakes completed, {} clients at once",
                    settings.auth_concurrency
                ),
                Unit::PerSec,
            )
        }
        .with_bound(Bound::ceiling(
            format!("1 sign + 1 verify_strict, {machine_cores} cores"),
            rate.bound,
        )),
        Row {
            samples: cores.figure,
            ..Row::new(
                Scenario::Auth,
                "node CPU in cores during handshakes",
                Unit::Count,
            )
        }
        .with_bound(Bound::ceiling(
            format!("{machine_cores} cores"),
            cores.bound,
        )),
    ])
}

/// `clients` tasks connect and authenticate back to back for `window`; handshakes completed
/// within it.
async fn handshakes(url: &str, clients: usize, window: Duration) -> anyhow::Result<usize> {
    let deadline = Instant::now() + window;
    let mut tasks = JoinSet::new();
    for _ in 0..clients {
        let (url, key) = (url.to_owned(), keypair()?);
        tasks.spawn(async move {
            let mut done = 0usize;
            while Instant::now() < deadline {
                let mut conn = RawConn::connect(&url).await?;
                conn.authenticate(&key).await?;
                if Instant::now() <= deadline {
                    done += 1;
                }
                drop(conn);
            }
            anyhow::Ok(done)
        });
    }
    let mut total = 0;
    while let Some(done) = tasks.join_next().await {
        total += done??;
    }
    Ok(total)
}
