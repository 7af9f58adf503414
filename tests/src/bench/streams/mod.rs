//! Live streams (`spec/protocol.md` §10): a stream's frames fanned out to many watchers on one
//! node, their latency down a tree of three tiers, and the share of them that still arrives
//! when interior nodes of a tree are killed. Every node runs in its own process (the bench
//! binary's `__node`), so a kill is a real `SIGKILL`.
//!
//! - *Fan-out*: one publisher and 1,000 watchers of one stream on one node. Each run publishes
//!   `stream_frames` frames as fast as the slowest watcher takes them (a bounded window ahead of
//!   it, see `fanout`) and waits until every watcher has the last; deliveries per second =
//!   frames received by all watchers ÷ (last arrival − first send), and the same in MiB/s of
//!   whole frames. Ceiling: the plain WebSocket server ([`super::plain`]) broadcasting the same
//!   frames to as many connections, batched, with the same window, read by the same code.
//! - *Latency*: a sequencer of fan-out 1 and three member nodes, each joined through by a user
//!   of its own, so member `i` sits in tier `i + 1`; a watcher on the tier-3 node. Frames go out
//!   at a steady rate; p50 and p99 of (arrival − send), both taken in this process on one
//!   monotonic clock. Floor: the tier times one plain relay hop
//!   ([`super::ceiling::websocket_relay_hop`]).
//! - *Kills*: a sequencer of fan-out 3 and 13 member nodes, a watcher on each; frames at a steady
//!   rate, and halfway through the run one (then, in a run of its own, two) tier-1 nodes are
//!   killed. Figure: of the frames published in the run, the share each live watcher received
//!   (mean and least). Ceiling: every frame.
//!
//! Watchers are raw WebSocket clients that read each frame's header strictly (§4.9) and check
//! that it names the stream. They verify the owner's signature of every frame down the trees,
//! but only of one frame in `fanout::VERIFY_EVERY` (64) in the fan-out, a different one per
//! watcher (each frame is still checked by many): 1,000 verifying clients would measure the
//! load generator's cores rather than the node.
//!
//! # Layout
//! - this file: the scenario's order, and the nodes it starts.
//! - `fanout`: frames fanned out to many watchers on one node, and the plain broadcast.
//! - `tree`: a stream over a sequencer and member nodes: latency to tier 3, interior kills.
//! - `wire`: the owner's publishing connection and the watchers, spoken raw on the wire.

mod fanout;
mod tree;
mod wire;

use std::time::Duration;

use anyhow::Context as _;

use super::Bench;
use super::nodes::{ChildProcess, FANOUT_FLAG, NODE_SUBCOMMAND, new_data_dir};
use super::report::Row;

/// The longest a run's frames may take to reach every watcher.
const PHASE_TIMEOUT: Duration = Duration::from_secs(120);

/// Run the scenario.
pub async fn run(bench: &mut Bench<'_>) -> anyhow::Result<Vec<Row>> {
    let mut rows = fanout::run(bench).await?;
    rows.extend(tree::latency(bench).await?);
    for killed in [1, 2] {
        rows.extend(tree::kills(bench, killed).await?);
    }
    Ok(rows)
}

/// A node in its own process with a new data directory, sequencing with `fanout` if given.
async fn spawn_node(bench: &Bench<'_>, fanout: Option<u32>) -> anyhow::Result<ChildProcess> {
    let dir = new_data_dir(bench.root())?;
    let dir = dir.to_str().context("non-UTF-8 temp path")?;
    let fanout = fanout.map(|f| f.to_string());
    let mut args = vec![NODE_SUBCOMMAND, "--data-dir", dir];
    if let Some(fanout) = &fanout {
        args.extend([FANOUT_FLAG, fanout.as_str()]);
    }
    ChildProcess::spawn(&bench.settings.exe, &args).await
}
