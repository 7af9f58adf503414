//! Moving events between nodes: push down each space's broadcast tree, pull what is missing.
//!
//! - [`Routing`]: a space's tree ([`crate::tree`]) over its member nodes, with their authorities.
//! - The forwarder takes committed events from the writer and pushes them (`fed.push`) to this
//!   node's children in the tree: one task and one bounded queue per peer, batches of at most
//!   [`PUSH_BATCH`] events. A full queue drops the batch: the peer pulls it later, so a slow
//!   peer never slows the writer.
//! - [`CatchUp`] (in `catchup`): pulling what a replica misses, verified, as a pipeline.

mod catchup;

pub use catchup::{CatchUp, CatchUpError};

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use northstar_protocol::Did;
use northstar_protocol::address::SpaceId;
use northstar_protocol::rpc::FedApiClient;
use northstar_protocol::wire::{Event, Home};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::federation::{LinkError, Links};
use crate::tree::Tree;

/// Events per `fed.push`: small enough to stay far below any node's message limit.
pub const PUSH_BATCH: usize = 32;

/// Committed batches waiting for the forwarder; when full, batches are dropped (and pulled
/// later by the peers that missed them).
const FORWARD_QUEUE: usize = 1024;

/// Batches waiting for one peer; when full, the batch is dropped for that peer.
const PEER_QUEUE: usize = 256;

/// A space's broadcast tree, with the authorities to reach its nodes.
#[derive(Debug)]
pub struct Routing {
    tree: Tree,
    authorities: HashMap<Did, String>,
}

impl Routing {
    /// The tree rooted at the sequencer over the member nodes, in the log's order.
    pub fn new(sequencer: Did, nodes: Vec<Home>, fanout: usize) -> Self {
        let fanout = NonZeroUsize::new(fanout).unwrap_or(NonZeroUsize::MIN);
        let tree = Tree::new(
            sequencer,
            nodes.iter().map(|h| h.node.clone()).collect(),
            fanout,
        );
        let authorities = nodes
            .iter()
            .map(|h| (h.node.clone(), h.authority.clone()))
            .collect();
        Self { tree, authorities }
    }

    /// The nodes `node` forwards to.
    pub fn children(&self, node: &Did) -> Vec<Home> {
        self.homes(self.tree.children(node))
    }

    fn homes(&self, dids: Vec<&Did>) -> Vec<Home> {
        dids.into_iter()
            .filter_map(|did| {
                self.authorities.get(did).map(|authority| Home {
                    node: did.clone(),
                    authority: authority.clone(),
                })
            })
            .collect()
    }
}

/// Committed events of one space for this node's children in its tree.
#[derive(Debug)]
pub struct Forward {
    /// The space.
    pub space: SpaceId,
    /// Where to push.
    pub targets: Vec<Home>,
    /// What to push, in seq order.
    pub events: Arc<Vec<Event>>,
}

/// Hands batches to the forwarder without ever waiting.
#[derive(Debug, Clone)]
pub struct ForwardSender(mpsc::Sender<Forward>);

impl ForwardSender {
    /// Queue a batch; drop it if the forwarder is behind.
    pub fn send(&self, forward: Forward) {
        if let Err(e) = self.0.try_send(forward) {
            tracing::debug!(error = %crate::report::Causes(&e), "forward queue full; peers will pull instead");
        }
    }
}

/// Start the forwarder: it runs until `shutdown`.
pub fn forwarder(
    links: Arc<Links>,
    tracker: &TaskTracker,
    shutdown: CancellationToken,
) -> ForwardSender {
    let (tx, mut rx) = mpsc::channel::<Forward>(FORWARD_QUEUE);
    let inner = tracker.clone();
    tracker.spawn(async move {
        // Keyed by the whole home (DID and authority): a node that moved is a new peer.
        let mut peers: HashMap<Home, mpsc::Sender<Arc<Vec<Event>>>> = HashMap::new();
        loop {
            let forward = tokio::select! {
                () = shutdown.cancelled() => break,
                forward = rx.recv() => match forward { Some(f) => f, None => break },
            };
            for target in &forward.targets {
                let queue = peers.entry(target.clone()).or_insert_with(|| {
                    spawn_peer(links.clone(), target.clone(), &inner, shutdown.clone())
                });
                if queue.try_send(forward.events.clone()).is_err() {
                    tracing::debug!(peer = %target.authority, space = %forward.space, "peer queue full; it will pull");
                }
            }
        }
    });
    ForwardSender(tx)
}

fn spawn_peer(
    links: Arc<Links>,
    target: Home,
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
                    if let Err(e) = push(&links, &target, chunk.to_vec()).await {
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
