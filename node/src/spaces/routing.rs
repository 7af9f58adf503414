//! Where committed items of a space go next: the space's broadcast tree ([`super::tree`]) over
//! its member nodes, and the bounded outbox through which the writer hands items to whoever
//! carries them to other nodes.
//!
//! Nothing here knows what the items are: the gossip layer sends events through it, and live
//! stream frames can take the same path. Pure, except for the outbox's channel.

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::Arc;

use northstar_protocol::Did;
use northstar_protocol::address::SpaceId;
use northstar_protocol::wire::Home;
use tokio::sync::mpsc;

use super::tree::Tree;

/// The nodes of a space's tree, as its log's membership names them: every node derives the
/// same tree from the same log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeNodes {
    /// The root: the space's sequencer.
    pub sequencer: Did,
    /// Children per node.
    pub fanout: u32,
    /// The member nodes other than the sequencer, in the log's order.
    pub nodes: Vec<Home>,
}

/// A space's broadcast tree, with the authorities to reach its nodes.
#[derive(Debug)]
pub struct Routing {
    tree: Tree,
    authorities: HashMap<Did, String>,
}

impl Routing {
    /// The tree rooted at the sequencer over the member nodes.
    pub fn new(nodes: &TreeNodes) -> Self {
        let fanout = usize::try_from(nodes.fanout)
            .ok()
            .and_then(NonZeroUsize::new)
            .unwrap_or(NonZeroUsize::MIN);
        let tree = Tree::new(
            nodes.sequencer.clone(),
            nodes.nodes.iter().map(|h| h.node.clone()).collect(),
            fanout,
        );
        let authorities = nodes
            .nodes
            .iter()
            .map(|h| (h.node.clone(), h.authority.clone()))
            .collect();
        Self { tree, authorities }
    }

    /// The nodes `node` takes from, in the tree's order (primary parent first). The root is
    /// not among the member nodes, so its home is `root`.
    pub fn parents(&self, node: &Did, root: &Home) -> Vec<Home> {
        self.tree
            .parents(node)
            .into_iter()
            .map(|did| match self.authorities.get(did) {
                Some(authority) => Home::new(did.clone(), authority.clone()),
                None => root.clone(),
            })
            .collect()
    }

    /// The nodes `node` forwards to, in the tree's order.
    pub fn children(&self, node: &Did) -> Vec<Home> {
        self.tree
            .children(node)
            .into_iter()
            .filter_map(|did| {
                self.authorities
                    .get(did)
                    .map(|authority| Home::new(did.clone(), authority.clone()))
            })
            .collect()
    }
}

/// Each space's tree, built again only when its member nodes changed (deriving it walks every
/// member: too much for every committed batch).
#[derive(Debug, Default)]
pub struct Router {
    trees: HashMap<SpaceId, (Arc<TreeNodes>, Arc<Routing>)>,
}

/// Spaces whose trees a router keeps; past that it starts again.
const MAX_TREES: usize = 4096;

impl Router {
    /// The nodes `own` forwards a broadcast of `space` to.
    pub fn targets(&mut self, space: &SpaceId, nodes: &Arc<TreeNodes>, own: &Did) -> Vec<Home> {
        if let Some((known, routing)) = self.trees.get(space)
            && (Arc::ptr_eq(known, nodes) || known == nodes)
        {
            return routing.children(own);
        }
        if self.trees.len() >= MAX_TREES {
            self.trees.clear();
        }
        let routing = Arc::new(Routing::new(nodes));
        let children = routing.children(own);
        self.trees.insert(space.clone(), (nodes.clone(), routing));
        children
    }
}

/// Committed items of one space, with the tree to send them down.
#[derive(Debug)]
pub struct Broadcast<T> {
    /// The space.
    pub space: SpaceId,
    /// Its tree's nodes when the items were committed.
    pub nodes: Arc<TreeNodes>,
    /// The items, in order.
    pub items: Arc<Vec<T>>,
}

/// Committed broadcasts waiting to be sent; when full, a broadcast is dropped (the nodes that
/// miss it pull it later), so sending never slows the writer.
pub const OUTBOX: usize = 1024;

/// The writer's side of the outbox: hands broadcasts over without ever waiting.
#[derive(Debug, Clone)]
pub struct Outbox<T>(mpsc::Sender<Broadcast<T>>);

impl<T> Outbox<T> {
    /// An outbox and the receiver its carrier reads.
    pub fn new() -> (Self, mpsc::Receiver<Broadcast<T>>) {
        let (tx, rx) = mpsc::channel(OUTBOX);
        (Self(tx), rx)
    }

    /// Queue a broadcast; drop it if the carrier is behind.
    pub fn send(&self, broadcast: Broadcast<T>) {
        if self.0.try_send(broadcast).is_err() {
            tracing::debug!("outbox full; peers will pull instead");
        }
    }
}

#[cfg(test)]
mod tests {
    use northstar_protocol::Keypair;

    use super::*;

    fn home(byte: u8) -> Home {
        Home::new(
            Keypair::from_seed(&[byte; 32]).did().clone(),
            format!("node{byte}.example"),
        )
    }

    #[test]
    fn routes_to_the_tree_children_and_rebuilds_only_when_the_nodes_change() {
        let root = Keypair::from_seed(&[100; 32]).did().clone();
        let nodes = Arc::new(TreeNodes {
            sequencer: root.clone(),
            fanout: 2,
            nodes: (1..=5).map(home).collect(),
        });
        let mut router = Router::default();
        let space =
            SpaceId::parse("channel/z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK/routing")
                .unwrap();
        let first = router.targets(&space, &nodes, &root);
        assert_eq!(first, vec![home(1), home(2)]);
        // Equal nodes in a new Arc: the same tree.
        let same = Arc::new((*nodes).clone());
        assert_eq!(router.targets(&space, &same, &root), first);
        // One node fewer: the tree is built again.
        let fewer = Arc::new(TreeNodes {
            nodes: (2..=5).map(home).collect(),
            ..(*nodes).clone()
        });
        assert_eq!(
            router.targets(&space, &fewer, &root),
            vec![home(2), home(3)]
        );
    }

    #[test]
    fn parents_are_named_with_their_homes_and_the_root_with_its_own() {
        let root = Home::new(Keypair::from_seed(&[100; 32]).did().clone(), "root.example");
        let routing = Routing::new(&TreeNodes {
            sequencer: root.node.clone(),
            fanout: 2,
            nodes: (1..=5).map(home).collect(),
        });
        // Tier 1 hangs off the root alone; tier 2 off two nodes of tier 1.
        assert_eq!(routing.parents(&home(1).node, &root), vec![root.clone()]);
        let parents = routing.parents(&home(3).node, &root);
        assert_eq!(parents.len(), 2);
        assert!(parents.iter().all(|p| [home(1), home(2)].contains(p)));
        for parent in &parents {
            assert!(routing.children(&parent.node).contains(&home(3)));
        }
        assert!(routing.parents(&root.node, &root).is_empty());
    }
}
