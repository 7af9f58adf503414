//! Delivery health and deletion receipts (`spec/protocol.md` §9.9): how far each member node
//! of a space is behind its sequencer, from the heads the member nodes report.
//!
//! - On a member node, [`Delivery::held`] notes each replica's durable head (after a push or a
//!   catch-up commits); a reporter task sends the new heads to each space's sequencer
//!   (`fed.heads`) shortly after, and the sync loop reports every replica each interval, so a
//!   sequencer that restarted hears from every live member node within one interval.
//! - On the sequencer, [`Delivery::sequenced`] follows the head, the event times and the
//!   broadcast tree of each space it sequences (from the writer, after each commit), and
//!   [`Delivery::report`] takes the member nodes' heads. From these come `space.health`,
//!   `fed.receipts` and the `northstar_space_*` metrics.
//!
//! All of it is memory only: a restarted sequencer knows a member node's head again at that
//! node's next report.
//!
//! Uses [`crate::federation`] to reach sequencers and [`crate::spaces`] for the trees.

use std::collections::{HashMap, VecDeque};
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use northstar_protocol::Did;
use northstar_protocol::address::SpaceId;
use northstar_protocol::api::{HeadReport, NodeHealth, SpaceHealth, SpaceReceipt};
use northstar_protocol::rpc::FedApiClient;
use northstar_protocol::wire::{Event, Home};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::gauge::ConstGauge;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::federation::Links;
use crate::spaces::routing::{Broadcast, TreeNodes};
use crate::spaces::tree::Tree;

/// Event times kept per space, to tell how long a member node has missed an event.
const TIMES: usize = 256;

/// Spaces followed at most; past that, the least recently moved are forgotten.
const MAX_SPACES: usize = 4096;

/// How long the reporter waits after a head moves, so that a burst of pushes is one report.
const COALESCE: Duration = Duration::from_millis(100);

/// Heads in one `fed.heads` call at most.
pub const MAX_HEADS: usize = 256;

/// Delivery state of one node: as a sequencer and as a member node.
#[derive(Debug, Default)]
pub struct Delivery {
    sequenced: Mutex<HashMap<SpaceId, Followed>>,
    to_report: Mutex<HashMap<Home, HashMap<SpaceId, u64>>>,
    wake: Notify,
}

/// A space this node sequences, as delivery health sees it.
#[derive(Debug)]
struct Followed {
    nodes: Arc<TreeNodes>,
    /// Each member node's hops from the sequencer.
    hops: HashMap<Did, u32>,
    depth: u32,
    head: u64,
    /// (seq, sequenced at, ms since the epoch), oldest first.
    times: VecDeque<(u64, u64)>,
    /// Each member node's last report: its head and when it came.
    heads: HashMap<Did, (u64, Instant)>,
    moved: Instant,
}

impl Followed {
    fn new(nodes: Arc<TreeNodes>) -> Self {
        let mut followed = Self {
            nodes: Arc::new(TreeNodes {
                sequencer: nodes.sequencer.clone(),
                fanout: 0,
                nodes: Vec::new(),
            }),
            hops: HashMap::new(),
            depth: 0,
            head: 0,
            times: VecDeque::new(),
            heads: HashMap::new(),
            moved: Instant::now(),
        };
        followed.set_nodes(nodes);
        followed
    }

    fn set_nodes(&mut self, nodes: Arc<TreeNodes>) {
        if Arc::ptr_eq(&self.nodes, &nodes) || self.nodes == nodes {
            return;
        }
        let fanout = usize::try_from(nodes.fanout)
            .ok()
            .and_then(NonZeroUsize::new)
            .unwrap_or(NonZeroUsize::MIN);
        let members: Vec<Did> = nodes.nodes.iter().map(|h| h.node.clone()).collect();
        let tree = Tree::new(nodes.sequencer.clone(), members, fanout);
        self.hops = nodes
            .nodes
            .iter()
            .filter_map(|h| Some((h.node.clone(), hop_count(tree.tier(&h.node)?))))
            .collect();
        self.depth = hop_count(tree.depth());
        // A node that left is no longer asked about.
        self.heads.retain(|node, _| self.hops.contains_key(node));
        self.nodes = nodes;
    }

    fn advance(&mut self, seq: u64, timestamp: u64) {
        if seq <= self.head {
            return;
        }
        self.head = seq;
        self.times.push_back((seq, timestamp));
        while self.times.len() > TIMES {
            self.times.pop_front();
        }
        self.moved = Instant::now();
    }

    /// Ms since the oldest event after `seq` was sequenced: how long a node at `seq` has missed
    /// something. Past the times kept, the oldest time kept (so at least that long).
    fn lag_ms(&self, seq: u64, now_ms: u64) -> u64 {
        if seq >= self.head {
            return 0;
        }
        let missed = self
            .times
            .iter()
            .find(|(s, _)| *s > seq)
            .or(self.times.front());
        missed.map_or(0, |(_, at)| now_ms.saturating_sub(*at))
    }

    fn health(&self, space: &SpaceId, now_ms: u64) -> SpaceHealth {
        let mut members = Vec::with_capacity(self.nodes.nodes.len());
        let (mut at_head, mut max_lag_events, mut max_lag_ms) = (0u32, 0u64, 0u64);
        for home in &self.nodes.nodes {
            let reported = self.heads.get(&home.node);
            let seq = reported.map(|(seq, _)| (*seq).min(self.head));
            let lag_events = seq.map(|seq| self.head - seq);
            let lag_ms = seq.map(|seq| self.lag_ms(seq, now_ms));
            if lag_events == Some(0) {
                at_head += 1;
            }
            max_lag_events = max_lag_events.max(lag_events.unwrap_or(0));
            max_lag_ms = max_lag_ms.max(lag_ms.unwrap_or(0));
            members.push(NodeHealth {
                node: home.node.clone(),
                authority: home.authority.clone(),
                hops: self.hops.get(&home.node).copied().unwrap_or(0),
                seq,
                lag_events,
                lag_ms,
                reported_ms_ago: reported
                    .map(|(_, at)| u64::try_from(at.elapsed().as_millis()).unwrap_or(u64::MAX)),
            });
        }
        SpaceHealth {
            space: space.clone(),
            head: self.head,
            nodes: count(members.len()),
            at_head,
            max_lag_events,
            max_lag_ms,
            max_hops: self.depth,
            members,
        }
    }
}

fn hop_count(tier: usize) -> u32 {
    u32::try_from(tier).unwrap_or(u32::MAX)
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Ms since the Unix epoch.
fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Delivery {
    fn spaces(&self) -> MutexGuard<'_, HashMap<SpaceId, Followed>> {
        self.sequenced.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn pending(&self) -> MutexGuard<'_, HashMap<Home, HashMap<SpaceId, u64>>> {
        self.to_report.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Events of spaces this node sequences, committed: each space's head, times and tree.
    pub fn sequenced(&self, broadcasts: &[Broadcast<Event>]) {
        let mut spaces = self.spaces();
        for broadcast in broadcasts {
            let followed = match spaces.get_mut(&broadcast.space) {
                Some(followed) => followed,
                None => {
                    forget_oldest(&mut spaces);
                    spaces
                        .entry(broadcast.space.clone())
                        .or_insert_with(|| Followed::new(broadcast.nodes.clone()))
                }
            };
            followed.set_nodes(broadcast.nodes.clone());
            for event in broadcast.items.iter() {
                followed.advance(event.seq, event.timestamp);
            }
        }
    }

    /// Whether this node follows `space` already.
    pub fn follows(&self, space: &SpaceId) -> bool {
        self.spaces().contains_key(space)
    }

    /// Start following a space this node sequences, as the store has it (after a restart, or
    /// before its first event since): its tree, and its head sequenced at `timestamp`.
    pub fn follow(&self, space: &SpaceId, nodes: TreeNodes, head: u64, timestamp: u64) {
        let mut spaces = self.spaces();
        if spaces.contains_key(space) {
            return;
        }
        forget_oldest(&mut spaces);
        let mut followed = Followed::new(Arc::new(nodes));
        followed.advance(head, timestamp);
        spaces.insert(space.clone(), followed);
    }

    /// Heads reported by the member node `from`; heads of spaces it is not a member node of,
    /// or that this node does not follow, are ignored. Returns how many were taken.
    pub fn report(&self, from: &Did, heads: &[HeadReport]) -> u32 {
        let mut spaces = self.spaces();
        let mut taken = 0;
        let now = Instant::now();
        for head in heads {
            let Some(followed) = spaces.get_mut(&head.space) else {
                continue;
            };
            if !followed.hops.contains_key(from) {
                continue;
            }
            // A head past the sequencer's is impossible; it counts as the head.
            let seq = head.seq.min(followed.head);
            let entry = followed.heads.entry(from.clone()).or_insert((seq, now));
            // Reports may cross each other; a head never goes back.
            *entry = (entry.0.max(seq), now);
            taken += 1;
        }
        taken
    }

    /// `space.health` for a followed space.
    pub fn health(&self, space: &SpaceId) -> Option<SpaceHealth> {
        let now = now_ms();
        self.spaces().get(space).map(|f| f.health(space, now))
    }

    /// Whether `node` is a member node of followed `space`.
    pub fn is_member_node(&self, space: &SpaceId, node: &Did) -> bool {
        self.spaces()
            .get(space)
            .is_some_and(|f| f.hops.contains_key(node))
    }

    /// Which nodes holding followed `space` hold its event `seq`: the sequencer, and each
    /// member node whose last report reaches it.
    pub fn receipt(&self, space: &SpaceId, seq: u64) -> Option<SpaceReceipt> {
        let spaces = self.spaces();
        let followed = spaces.get(space)?;
        let mut applied = vec![followed.nodes.sequencer.clone()];
        let mut pending = Vec::new();
        for home in &followed.nodes.nodes {
            match followed.heads.get(&home.node) {
                Some((held, _)) if *held >= seq => applied.push(home.node.clone()),
                _ => pending.push(home.node.clone()),
            }
        }
        Some(SpaceReceipt {
            space: space.clone(),
            seq,
            applied,
            pending,
            error: None,
        })
    }

    /// On a member node: the replica of `space` sequenced by `sequencer` holds every event up
    /// to `seq`, durably. The reporter sends it shortly.
    pub fn held(&self, space: &SpaceId, seq: u64, sequencer: Home) {
        {
            let mut pending = self.pending();
            let heads = pending.entry(sequencer).or_default();
            let entry = heads.entry(space.clone()).or_insert(seq);
            *entry = (*entry).max(seq);
        }
        self.wake.notify_one();
    }

    /// Send the reported heads to their sequencers until `shutdown`.
    pub fn spawn_reporter(
        self: &Arc<Self>,
        links: Arc<Links>,
        tracker: &TaskTracker,
        shutdown: CancellationToken,
    ) {
        let delivery = self.clone();
        tracker.spawn(async move {
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = delivery.wake.notified() => {}
                }
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(COALESCE) => {}
                }
                let batch = std::mem::take(&mut *delivery.pending());
                for (sequencer, heads) in batch {
                    let heads: Vec<HeadReport> = heads
                        .into_iter()
                        .map(|(space, seq)| HeadReport { space, seq })
                        .collect();
                    for chunk in heads.chunks(MAX_HEADS) {
                        if let Err(e) = send(&links, &sequencer, chunk.to_vec()).await {
                            // The sync loop reports every replica again next interval.
                            tracing::debug!(sequencer = %sequencer.authority, error = %e, "heads not reported");
                            break;
                        }
                    }
                }
            }
        });
    }
}

async fn send(links: &Links, sequencer: &Home, heads: Vec<HeadReport>) -> Result<(), String> {
    let link = links
        .get(&sequencer.authority)
        .await
        .map_err(|e| e.to_string())?;
    if link.did != sequencer.node {
        return Err(format!(
            "{} is {}, not the sequencer {}",
            sequencer.authority, link.did, sequencer.node
        ));
    }
    FedApiClient::heads(link.client.as_ref(), heads)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

fn forget_oldest(spaces: &mut HashMap<SpaceId, Followed>) {
    if spaces.len() < MAX_SPACES {
        return;
    }
    let oldest = spaces
        .iter()
        .min_by_key(|(_, f)| f.moved)
        .map(|(space, _)| space.clone());
    if let Some(space) = oldest {
        spaces.remove(&space);
    }
}

/// A per-space gauge: its name, its help and how to read it from a space's health.
type Series = (&'static str, &'static str, fn(&SpaceHealth) -> f64);

/// The label of a per-space series.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SpaceLabel {
    space: String,
}

impl Collector for Delivery {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let now = now_ms();
        let health: Vec<SpaceHealth> = self
            .spaces()
            .iter()
            .map(|(space, f)| f.health(space, now))
            .collect();
        let series: [Series; 6] = [
            (
                "space_member_nodes",
                "member nodes of each space this node sequences, the sequencer aside",
                |h| f64::from(h.nodes),
            ),
            (
                "space_nodes_at_head",
                "member nodes whose last reported head is the space's head",
                |h| f64::from(h.at_head),
            ),
            (
                "space_head",
                "the seq of each sequenced space's newest event",
                |h| h.head as f64,
            ),
            (
                "space_max_lag_events",
                "the most events a member node of the space is behind, by its reports",
                |h| h.max_lag_events as f64,
            ),
            (
                "space_max_lag_seconds",
                "the age of the oldest event a member node of the space misses",
                |h| h.max_lag_ms as f64 / 1000.0,
            ),
            (
                "space_max_hops",
                "hops from the sequencer to the farthest member node in the space's tree",
                |h| f64::from(h.max_hops),
            ),
        ];
        for (name, help, value) in series {
            let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for h in &health {
                let label = SpaceLabel {
                    space: h.space.to_string(),
                };
                ConstGauge::new(value(h)).encode(metric.encode_family(&label)?)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use northstar_protocol::Keypair;

    use super::*;

    fn did(byte: u8) -> Did {
        Keypair::from_seed(&[byte; 32]).did().clone()
    }

    fn nodes(n: u8) -> TreeNodes {
        TreeNodes {
            sequencer: did(100),
            fanout: 2,
            nodes: (1..=n)
                .map(|b| Home::new(did(b), format!("node{b}.example")))
                .collect(),
        }
    }

    fn space() -> SpaceId {
        SpaceId::parse("channel/z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK/health").unwrap()
    }

    #[test]
    fn lag_comes_from_reports_and_hops_from_the_tree() {
        let delivery = Delivery::default();
        let now = now_ms();
        delivery.follow(&space(), nodes(5), 10, now - 5_000);
        let head = |seq| HeadReport {
            space: space(),
            seq,
        };
        assert_eq!(delivery.report(&did(1), &[head(10)]), 1);
        assert_eq!(delivery.report(&did(2), &[head(7)]), 1);
        // Not a member node: ignored.
        assert_eq!(delivery.report(&did(9), &[head(10)]), 0);
        // A report going back does not move the head back.
        delivery.report(&did(1), &[head(3)]);
        let health = delivery.health(&space()).unwrap();
        assert_eq!(health.nodes, 5);
        assert_eq!(health.at_head, 1);
        assert_eq!(health.max_lag_events, 3);
        assert!(health.max_lag_ms >= 5_000, "{health:?}");
        // Fan-out 2 over 5 members: tiers of 2 and 3 below the root.
        assert_eq!(health.max_hops, 2);
        assert_eq!(health.members[0].hops, 1);
        assert_eq!(health.members[4].hops, 2);
        assert_eq!(health.members[3].seq, None);
        let receipt = delivery.receipt(&space(), 8).unwrap();
        assert_eq!(receipt.applied, vec![did(100), did(1)]);
        assert_eq!(receipt.pending.len(), 4);
    }

    #[test]
    fn lag_in_time_is_the_age_of_the_oldest_missed_event() {
        let mut followed = Followed::new(Arc::new(nodes(1)));
        followed.advance(1, 1_000);
        followed.advance(2, 4_000);
        followed.advance(3, 9_000);
        assert_eq!(followed.lag_ms(1, 10_000), 6_000);
        assert_eq!(followed.lag_ms(2, 10_000), 1_000);
        assert_eq!(followed.lag_ms(3, 10_000), 0);
        // Older than what is kept: at least the oldest kept.
        assert_eq!(followed.lag_ms(0, 10_000), 9_000);
    }
}
