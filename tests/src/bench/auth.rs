//! Auth: completed challenge-response handshakes per second.
//!
//! Clients (SDK, `Client::connect`) connect and authenticate back to back against an
//! in-process node, each on a new WebSocket: a handshake is the connection, `node.info`,
//! `auth.challenge` with the client's check of the node's signature, and `auth.respond`.
//!
//! Ceiling: the node's share of the signature work per handshake, one signature (the
//! challenge) and one strict verification (the response), on all cores.

use std::sync::Arc;
use std::time::{Duration, Instant};

use northstar_sdk::Client;
use tokio::task::JoinSet;

use super::ceiling::AuthWork;
use super::nodes::LocalNode;
use super::report::{Bound, Row, Series, Unit};
use super::{Bench, Scenario, keypair};

/// Run the scenario.
pub async fn run(bench: &mut Bench<'_>) -> anyhow::Result<Vec<Row>> {
    let settings = bench.settings;
    let node = LocalNode::start(bench.root(), |_| {}).await?;
    let work = Arc::new(tokio::task::spawn_blocking(AuthWork::new).await??);
    let mut rate = Series::default();
    for run in 0..settings.runs {
        let window = Duration::from_secs_f64(settings.auth_secs);
        let done = handshakes(&node.url, settings.auth_concurrency, window).await?;
        anyhow::ensure!(done > 0, "no handshake completed in time");
        let per_sec = done as f64 / window.as_secs_f64();
        let w = work.clone();
        let ceiling = tokio::task::spawn_blocking(move || w.rate(done)).await??;
        rate.push(per_sec, ceiling);
        bench.progress(
            Scenario::Auth,
            format!(
                "run {}/{}: {per_sec:.0} handshakes/s (ceiling {ceiling:.0})",
                run + 1,
                settings.runs
            ),
        );
    }
    node.stop().await?;
    let cores = bench.machine.cores;
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
            format!("1 sign + 1 verify_strict, {cores} cores"),
            rate.bound,
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
                let client = Client::connect(&url, key.clone()).await?;
                if Instant::now() <= deadline {
                    done += 1;
                }
                drop(client);
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
