//! Moving events between nodes: push down each space's broadcast tree, pull what is missing.
//!
//! - The forwarder takes events from the writer's outbox ([`crate::spaces::routing`]): those
//!   of spaces this node sequences once committed, a replica's once decided. It pushes them (`fed.push`) to this node's children in each
//!   space's tree: one task and one bounded queue per peer, batches of at most [`PUSH_BATCH`]
//!   events. A full queue drops the batch: the peer pulls it later, so a slow peer never slows
//!   the writer.
//! - [`CatchUp`] (in `catchup`): pulling what a replica misses, verified, as a pipeline.
//!
//! Uses [`crate::federation`] for links and [`crate::spaces`] for the writer and the trees.

mod catchup;

pub use catchup::{CatchUp, CatchUpError};

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use northstar_protocol::Did;
use northstar_protocol::rpc::FedApiClient;
use northstar_protocol::wire::{Event, Home};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::federation::{LinkError, Links};
use crate::metrics::Metrics;
use crate::spaces::routing::{Broadcast, Router};

/// Events per `fed.push`: small enough to stay far below any node's message limit.
pub const PUSH_BATCH: usize = 32;

/// Batches waiting for one peer; when full, the batch is dropped for that peer.
const PEER_QUEUE: usize = 256;

/// Start the forwarder for the node `own`: it reads `committed` until `shutdown`.
pub fn forwarder(
    mut committed: mpsc::Receiver<Broadcast<Event>>,
    links: Arc<Links>,
    own: Did,
    metrics: Arc<Metrics>,
    tracker: &TaskTracker,
    shutdown: CancellationToken,
) {
    let inner = tracker.clone();
    tracker.spawn(async move {
        let mut router = Router::default();
        // Keyed by the whole home (DID and authority): a node that moved is a new peer.
        let mut peers: HashMap<Home, mpsc::Sender<Arc<Vec<Event>>>> = HashMap::new();
        loop {
            let broadcast = tokio::select! {
                () = shutdown.cancelled() => break,
                broadcast = committed.recv() => match broadcast { Some(b) => b, None => break },
            };
            for target in router.targets(&broadcast.space, &broadcast.nodes, &own) {
                let queue = peers.entry(target.clone()).or_insert_with(|| {
                    spawn_peer(
                        links.clone(),
                        target.clone(),
                        metrics.clone(),
                        &inner,
                        shutdown.clone(),
                    )
                });
                if queue.try_send(broadcast.items.clone()).is_err() {
                    metrics.push_dropped.inc();
                    tracing::debug!(peer = %target.authority, space = %broadcast.space, "peer queue full; it will pull");
                }
            }
        }
    });
}

fn spawn_peer(
    links: Arc<Links>,
    target: Home,
    metrics: Arc<Metrics>,
    tracker: &TaskTracker,
    shutdown: CancellationToken,
) -> mpsc::Sender<Arc<Vec<Event>>> {
    let (tx, mut rx) = mpsc::channel::<Arc<Vec<Event>>>(PEER_QUEUE);
    let span = tracing::debug_span!("push", peer = %target.authority);
    tracker.spawn(
        async move {
            loop {
                let batch = tokio::select! {
                    () = shutdown.cancelled() => break,
                    batch = rx.recv() => match batch { Some(b) => b, None => break },
                };
                // Coalesce whatever else is queued for this peer.
                let mut events: Vec<Event> = batch.iter().cloned().collect();
                while events.len() < PUSH_BATCH {
                    match rx.try_recv() {
                        Ok(more) => events.extend(more.iter().cloned()),
                        Err(_) => break,
                    }
                }
                for chunk in events.chunks(PUSH_BATCH) {
                    let pushed = push(&links, &target, chunk.to_vec()).await;
                    match &pushed {
                        Ok(()) => metrics.pushes.inc(),
                        Err(_) => metrics.push_failed.inc(),
                    };
                    if let Err(e) = pushed {
                        tracing::debug!(error = %crate::report::Causes(&e), "push failed; the peer will pull");
                        break;
                    }
                }
            }
        }
        .instrument(span),
    );
    tx
}

async fn push(links: &Links, target: &Home, events: Vec<Event>) -> Result<(), LinkError> {
    let authority = target.authority.as_str();
    let link = links.get(authority).await?;
    if link.did != target.node {
        // Whoever answers there is not the member node the log names: push nothing to it.
        return Err(LinkError::Handshake {
            authority: authority.to_owned(),
            reason: format!("it is {}, the log names {}", link.did, target.node),
        });
    }
    match FedApiClient::push(link.client.as_ref(), events).await {
        Ok(_) => Ok(()),
        Err(e) => {
            let e = LinkError::from_call(authority, e);
            if matches!(e, LinkError::Transport { .. }) {
                links.drop_link(authority).await;
            }
            Err(e)
        }
    }
}

/// Sync every replica at start and then every `interval`, until `shutdown`.
pub fn spawn_sync(
    catch_up: CatchUp,
    interval: Duration,
    tracker: &TaskTracker,
    shutdown: CancellationToken,
) {
    tracker.spawn(async move {
        loop {
            catch_up.sync_all().await;
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(interval) => {}
            }
        }
    });
}
