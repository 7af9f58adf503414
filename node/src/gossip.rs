//! Moving events between nodes: push down each space's broadcast tree, pull what is missing.
//!
//! - [`Routing`]: a space's tree ([`crate::tree`]) over its member nodes, with their authorities.
//! - The forwarder takes committed events from the writer and pushes them (`fed.push`) to this
//!   node's children in the tree: one task and one bounded queue per peer, batches of at most
//!   [`PUSH_BATCH`] events. A full queue drops the batch: the peer pulls it later, so a slow
//!   peer never slows the writer.
//! - Catch-up pulls a seq range (`space.events`) from the sequencer or any member node, verifies
//!   every event and hands it to the writer. It runs on a gap, after a join, at start-up and
//!   every `sync_interval_secs` (config) for every replica.

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use northstar_protocol::Did;
use northstar_protocol::address::SpaceId;
use northstar_protocol::api::EventPage;
use northstar_protocol::rpc::{FedApiClient, SpaceApiClient};
use northstar_protocol::wire::{Event, Home, Payload};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::federation::{LinkError, Links};
use crate::sequencer::{SequenceError, SequencerHandle};
use crate::store::Store;
use crate::tree::Tree;

/// Events per `fed.push`: small enough to stay far below any node's message limit.
pub const PUSH_BATCH: usize = 32;

/// Events per catch-up page.
const PULL_PAGE: u32 = 200;

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
            tracing::debug!(error = %e, "forward queue full; peers will pull instead");
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
                        tracing::debug!(error = %e, "push failed; the peer will pull");
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

/// Pulls missing events from other nodes.
#[derive(Debug, Clone)]
pub struct CatchUp {
    links: Arc<Links>,
    store: Store,
    writer: SequencerHandle,
    own: Did,
}

/// Why a catch-up did not reach its target.
#[derive(Debug, thiserror::Error)]
pub enum CatchUpError {
    /// No source answered.
    #[error("no node could serve the missing events: {0}")]
    Unreachable(String),
    /// A source sent an event that does not verify.
    #[error("{source_node} sent an event that does not verify: {reason}")]
    Forged {
        /// Who sent it.
        source_node: String,
        /// What was wrong.
        reason: String,
    },
    /// The writer failed.
    #[error(transparent)]
    Writer(#[from] SequenceError),
}

impl CatchUp {
    /// Catch-up for the node `own`, pulling over `links` into `writer`.
    pub fn new(links: Arc<Links>, store: Store, writer: SequencerHandle, own: Did) -> Self {
        Self {
            links,
            store,
            writer,
            own,
        }
    }

    /// Pull events of `space` from the first of `sources` that answers, until `until` (or the
    /// source's head). `create` starts a replica this node does not hold yet from its genesis,
    /// which must name `expect_sequencer`, the node we asked to join. Returns the new head.
    pub async fn run(
        &self,
        space: &SpaceId,
        sources: &[String],
        create: Option<&Did>,
        until: Option<u64>,
    ) -> Result<u64, CatchUpError> {
        let mut failures = Vec::new();
        for source in sources {
            match self.pull(space, source, create, until).await {
                Ok(head) => return Ok(head),
                Err(CatchUpError::Writer(e)) => return Err(CatchUpError::Writer(e)),
                Err(e) => failures.push(e.to_string()),
            }
        }
        Err(CatchUpError::Unreachable(failures.join("; ")))
    }

    async fn pull(
        &self,
        space: &SpaceId,
        source: &str,
        create: Option<&Did>,
        until: Option<u64>,
    ) -> Result<u64, CatchUpError> {
        let unreachable = |e: LinkError| CatchUpError::Unreachable(e.to_string());
        let mut head = match self
            .store
            .space(space.as_str())
            .await
            .map_err(SequenceError::from)?
        {
            Some(row) => row.head_seq,
            None if create.is_some() => 0,
            None => {
                return Err(CatchUpError::Unreachable(format!(
                    "{space} is not replicated here"
                )));
            }
        };
        loop {
            if until.is_some_and(|u| head >= u) {
                return Ok(head);
            }
            let link = self.links.get(source).await.map_err(unreachable)?;
            let page: EventPage =
                SpaceApiClient::events(link.client.as_ref(), space.clone(), head, PULL_PAGE)
                    .await
                    .map_err(|e| unreachable(LinkError::from_call(source, e)))?;
            if page.events.is_empty() {
                return Ok(head);
            }
            let sequencer = self.sequencer_of(space, &page, create).await?;
            let raws: Vec<String> = page.events.iter().map(|raw| raw.get().to_owned()).collect();
            let expected = space.clone();
            // Parsing and strict verification take most of a catch-up: spread them over every
            // core, off the async workers.
            let events =
                tokio::task::spawn_blocking(move || verify_page(raws, &expected, &sequencer))
                    .await
                    .map_err(|e| forged(source, e))?
                    .map_err(|e| forged(source, e))?;
            let outcome = self.writer.replicate(events, create.is_some()).await?;
            if let Some(reason) = outcome.refused {
                return Err(forged(source, reason));
            }
            if outcome.head <= head {
                return Ok(head);
            }
            head = outcome.head;
            // Pages are cut by bytes as well as by count: only the source's head says when
            // there is no more.
            if head >= page.head_seq {
                return Ok(head);
            }
        }
    }

    /// The sequencer to verify a page against: the stored one, or for a new replica the one its
    /// genesis names, which must be the node we joined through.
    async fn sequencer_of(
        &self,
        space: &SpaceId,
        page: &EventPage,
        create: Option<&Did>,
    ) -> Result<Did, CatchUpError> {
        if let Some(row) = self
            .store
            .space(space.as_str())
            .await
            .map_err(SequenceError::from)?
        {
            return Did::parse(&row.sequencer).map_err(|e| forged("the store", e));
        }
        let first = page.events.first().map(|raw| raw.get()).unwrap_or_default();
        let event: Event = northstar_protocol::canonical::from_str_strict(first)
            .map_err(|e| forged("the sequencer", e))?;
        match (&event.payload, create) {
            (Payload::Create(genesis), Some(expected)) if &genesis.sequencer == expected => {
                genesis.verify().map_err(|e| forged("the sequencer", e))?;
                genesis
                    .check_rules()
                    .map_err(|e| forged("the sequencer", e))?;
                Ok(genesis.sequencer.clone())
            }
            _ => Err(forged(
                "the sequencer",
                "the first event is not a genesis naming the node we joined through",
            )),
        }
    }

    /// Every replica: ask its sequencer (else its other member nodes) for what it missed.
    pub async fn sync_all(&self) {
        let replicas = match self.store.replicated_spaces(self.own.as_str()).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "cannot list replicas to sync");
                return;
            }
        };
        for row in replicas {
            let Ok(space) = SpaceId::parse(&row.id) else {
                continue;
            };
            let mut sources = vec![row.authority.clone()];
            if let Ok(members) = self.store.members(&row.id).await {
                for m in members {
                    if let Some(home) = m
                        .home
                        .filter(|h| h.node != self.own.as_str() && !sources.contains(&h.authority))
                    {
                        sources.push(home.authority);
                    }
                }
            }
            if let Err(e) = self.run(&space, &sources, None, None).await {
                tracing::debug!(space = %space, error = %e, "sync incomplete");
            }
        }
    }
}

/// Parse and strictly verify a page of events of `space` under `sequencer`, on every core.
fn verify_page(raws: Vec<String>, space: &SpaceId, sequencer: &Did) -> Result<Vec<Event>, String> {
    let one = |raw: &String| -> Result<Event, String> {
        let event: Event =
            northstar_protocol::canonical::from_str_strict(raw).map_err(|e| e.to_string())?;
        if event.space != *space {
            return Err("an event of another space".into());
        }
        event.verify(sequencer).map_err(|e| e.to_string())?;
        Ok(event)
    };
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    if threads < 2 || raws.len() < 2 * threads {
        return raws.iter().map(one).collect();
    }
    let chunk = raws.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let parts: Vec<_> = raws
            .chunks(chunk)
            .map(|part| scope.spawn(move || part.iter().map(one).collect::<Result<Vec<_>, _>>()))
            .collect();
        let mut events = Vec::with_capacity(raws.len());
        for part in parts {
            events.extend(
                part.join()
                    .map_err(|_| "a verifier thread panicked".to_owned())??,
            );
        }
        Ok(events)
    })
}

fn forged(source: &str, reason: impl std::fmt::Display) -> CatchUpError {
    CatchUpError::Forged {
        source_node: source.to_owned(),
        reason: reason.to_string(),
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
