//! The broadcast tree of a space: who forwards each sequenced event to whom, without I/O.
//!
//! The sequencer pushes every event down a tree of the space's member nodes (DESIGN §4). Every
//! member node computes the same tree from the same inputs with no coordination, so the
//! construction below is normative: another implementation given the same inputs MUST produce
//! the same parents and children.
//!
//! # Inputs
//! - the **root**: the sequencer node's DID;
//! - the **members**: the member nodes' DIDs in the order the caller gives (the order in which
//!   each node first became a member node of the space, by the seq of that event);
//! - the **fan-out** `k ≥ 1`. Every node of a space MUST use the same `k`.
//!
//! Before indexing, [`Tree::new`] drops the root and every repeat of a DID after its first
//! occurrence, so a caller's slip cannot make a node its own parent or give it two places. With
//! well-formed input (no repeats, root absent) this changes nothing.
//!
//! # Construction
//! Number the `n` members `0..n` in the given order.
//!
//! - **Tiers.** Tier 1 is indices `0..k`, tier 2 the next `k²`, tier `t` the next `k^t`; only
//!   the last tier may be partial. The root is tier 0. With `k = 1` every tier holds one node.
//! - **Primary parent** of `i`: the root if `i < k`, else member `⌊i / k⌋ − 1`. This is a
//!   `k`-ary heap under a virtual root: the primary children of member `j` are
//!   `(j+1)·k ..= (j+1)·k + k − 1`, the root's are `0 ..= k − 1` (all clipped to `n`).
//! - **Second parent** of `i`, whose primary parent is `p`:
//!   - tier 1: none (the root is the source; if it is down nothing can be sent);
//!   - tier `t ≥ 2`, `k ≥ 2`: the node after `p` in tier `t − 1`, wrapping from the tier's
//!     last index to its first. Tier `t − 1` is full whenever tier `t` is not empty, so it
//!     spans `k^(t−1) ≥ 2` indices and the second parent is never `p`;
//!   - tier `t ≥ 2`, `k = 1` (tier `t − 1` has one node): `p`'s own primary parent, so member
//!     `i ≥ 2` has parents `i − 1` and `i − 2`, and member 1 has member 0 and the root.
//! - **Children** of a node: every member naming it as primary or second parent. A node forwards
//!   each event to all its children, so every node from tier 2 on receives each event twice and
//!   de-duplicates by event id.
//!
//! Orders returned: [`Tree::parents`] gives the primary parent, then the second one;
//! [`Tree::children`] gives the primary children by index, then the second children by index.
//!
//! # Invariants (tested below and in `tests/tree_sim.rs`)
//! - Acyclic: a parent is the root or a member of a smaller index and a smaller tier (the
//!   previous tier, except the `k = 1` second parent, two tiers up).
//! - From tier 2 on, every member has two distinct parents.
//! - If every node is live but one member `F`, every other member has a live parent, so by
//!   induction over the tiers the push reaches every live member. Two failures can cut nodes
//!   off (two neighbours in one tier are both parents of the first one's primary children);
//!   catch-up by pulling the missing seq range covers that.
//!
//! # Cost
//! [`Tree::new`] is `O(n)`; [`Tree::parents`] and [`Tree::tier`] are `O(1)`, [`Tree::children`]
//! is `O(k)`, each after one hash lookup.

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::ops::Range;

use northstar_protocol::Did;

/// The fan-out a space uses unless it says otherwise (DESIGN §4).
pub const DEFAULT_FANOUT: NonZeroUsize = match NonZeroUsize::new(10) {
    Some(k) => k,
    None => panic!("10 is not zero"),
};

/// A node of the tree by position: the root or a member index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    Root,
    Member(usize),
}

/// The broadcast tree of one space, with its index maps precomputed.
#[derive(Debug, Clone)]
pub struct Tree {
    root: Did,
    members: Vec<Did>,
    index: HashMap<Did, usize>,
    fanout: usize,
    /// `tiers[t - 1]` holds the member indices of tier `t`; only the last range may be short.
    tiers: Vec<Range<usize>>,
    /// `tier_of[i]` is member `i`'s tier (from 1).
    tier_of: Vec<usize>,
}

impl Tree {
    /// The tree of fan-out `fanout` rooted at `root` over `members`, in the caller's order (see
    /// the module docs; the root and repeats are dropped).
    pub fn new(root: Did, members: Vec<Did>, fanout: NonZeroUsize) -> Tree {
        let k = fanout.get();
        let mut index = HashMap::with_capacity(members.len());
        let mut kept = Vec::with_capacity(members.len());
        for did in members {
            if did != root && !index.contains_key(&did) {
                index.insert(did.clone(), kept.len());
                kept.push(did);
            }
        }
        let n = kept.len();
        let mut tiers = Vec::new();
        let mut tier_of = Vec::with_capacity(n);
        let (mut start, mut size) = (0usize, k);
        while start < n {
            let end = start.saturating_add(size).min(n);
            tiers.push(start..end);
            tier_of.resize(end, tiers.len());
            start = end;
            size = size.saturating_mul(k);
        }
        Tree {
            root,
            members: kept,
            index,
            fanout: k,
            tiers,
            tier_of,
        }
    }

    /// The root: the sequencer node.
    pub fn root(&self) -> &Did {
        &self.root
    }

    /// The fan-out `k`.
    pub fn fanout(&self) -> usize {
        self.fanout
    }

    /// The members in index order (the root and repeats dropped).
    pub fn members(&self) -> &[Did] {
        &self.members
    }

    /// The number of members, not counting the root.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether the root is alone.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// The number of tiers below the root: the hops from the root to the farthest member.
    pub fn depth(&self) -> usize {
        self.tiers.len()
    }

    /// `node`'s tier: 0 for the root, from 1 for members, `None` for anyone else.
    pub fn tier(&self, node: &Did) -> Option<usize> {
        match self.slot(node)? {
            Slot::Root => Some(0),
            Slot::Member(i) => Some(self.tier_of[i]),
        }
    }

    /// Whom `node` receives events from: its primary parent, then its second parent if it has
    /// one. Empty for the root and for non-members.
    pub fn parents(&self, node: &Did) -> Vec<&Did> {
        let Some(Slot::Member(i)) = self.slot(node) else {
            return Vec::new();
        };
        [Some(self.primary_parent(i)), self.second_parent(i)]
            .into_iter()
            .flatten()
            .map(|slot| self.did(slot))
            .collect()
    }

    /// Whom `node` forwards events to: its primary children by index, then its second children
    /// by index. The root's primary children are tier 1. Empty for non-members.
    pub fn children(&self, node: &Did) -> Vec<&Did> {
        let Some(slot) = self.slot(node) else {
            return Vec::new();
        };
        let second: Range<usize> = if self.fanout == 1 {
            // k = 1: whoever names this node as second parent is its primary child's primary
            // child, two links down the chain.
            let next = match slot {
                Slot::Root => 0,
                Slot::Member(j) => j + 1,
            };
            self.primary_children(Slot::Member(next))
        } else {
            match slot {
                Slot::Root => 0..0,
                Slot::Member(j) => {
                    // Second children of j are the primary children of the node before j in
                    // its tier (wrapping). In a one-node tier that is j itself; such a tier is
                    // the last, partial one, so j has no children of either kind.
                    let tier = &self.tiers[self.tier_of[j] - 1];
                    let before = if j == tier.start { tier.end - 1 } else { j - 1 };
                    if before == j {
                        0..0
                    } else {
                        self.primary_children(Slot::Member(before))
                    }
                }
            }
        };
        self.primary_children(slot)
            .chain(second)
            .map(|i| &self.members[i])
            .collect()
    }

    fn slot(&self, node: &Did) -> Option<Slot> {
        if *node == self.root {
            Some(Slot::Root)
        } else {
            self.index.get(node).map(|&i| Slot::Member(i))
        }
    }

    fn did(&self, slot: Slot) -> &Did {
        match slot {
            Slot::Root => &self.root,
            Slot::Member(i) => &self.members[i],
        }
    }

    fn primary_parent(&self, i: usize) -> Slot {
        if i < self.fanout {
            Slot::Root
        } else {
            Slot::Member(i / self.fanout - 1)
        }
    }

    fn second_parent(&self, i: usize) -> Option<Slot> {
        let Slot::Member(p) = self.primary_parent(i) else {
            return None;
        };
        if self.fanout == 1 {
            return Some(self.primary_parent(p));
        }
        // Tier of p is full because i's tier is not empty, so it has k^t >= 2 nodes.
        let tier = &self.tiers[self.tier_of[p] - 1];
        Some(Slot::Member(if p + 1 == tier.end {
            tier.start
        } else {
            p + 1
        }))
    }

    /// The member indices whose primary parent is `slot`.
    fn primary_children(&self, slot: Slot) -> Range<usize> {
        let n = self.members.len();
        let start = match slot {
            Slot::Root => 0,
            Slot::Member(j) => j.saturating_add(1).saturating_mul(self.fanout),
        };
        start.min(n)..start.saturating_add(self.fanout).min(n)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use northstar_protocol::Keypair;

    use super::*;

    /// The nodes an event pushed from the root reaches when `down` neither receive nor forward.
    fn push_reach<'a>(tree: &'a Tree, down: &HashSet<Did>) -> HashSet<&'a Did> {
        let mut reached = HashSet::from([tree.root()]);
        let mut frontier = vec![tree.root()];
        while let Some(sender) = frontier.pop() {
            for child in tree.children(sender) {
                if !down.contains(child) && reached.insert(child) {
                    frontier.push(child);
                }
            }
        }
        reached
    }

    fn did(n: u32) -> Did {
        let mut seed = [0u8; 32];
        seed[..4].copy_from_slice(&n.to_le_bytes());
        Keypair::from_seed(&seed).did().clone()
    }

    fn k(k: usize) -> NonZeroUsize {
        NonZeroUsize::new(k).unwrap()
    }

    /// Root is `did(0)`, member `i` is `did(i + 1)`.
    fn tree(n: u32, fanout: usize) -> (Tree, Vec<Did>) {
        let members: Vec<Did> = (1..=n).map(did).collect();
        (Tree::new(did(0), members.clone(), k(fanout)), members)
    }

    /// The indices of `dids` among `members`, with `None` for the root.
    fn idx(tree: &Tree, dids: Vec<&Did>) -> Vec<Option<usize>> {
        dids.into_iter()
            .map(|d| tree.members().iter().position(|m| m == d))
            .collect()
    }

    fn parents(tree: &Tree, members: &[Did], i: usize) -> Vec<Option<usize>> {
        idx(tree, tree.parents(&members[i]))
    }

    fn children(tree: &Tree, members: &[Did], i: usize) -> Vec<usize> {
        idx(tree, tree.children(&members[i]))
            .into_iter()
            .map(|c| c.unwrap())
            .collect()
    }

    fn root_children(tree: &Tree) -> Vec<usize> {
        idx(tree, tree.children(tree.root()))
            .into_iter()
            .map(|c| c.unwrap())
            .collect()
    }

    #[test]
    fn fanout_three_twelve_members_by_hand() {
        let (t, m) = tree(12, 3);
        assert_eq!(t.len(), 12);
        assert_eq!(t.depth(), 2);
        assert_eq!(root_children(&t), vec![0, 1, 2]);
        for i in 0..3 {
            assert_eq!(parents(&t, &m, i), vec![None], "member {i}");
            assert_eq!(t.tier(&m[i]), Some(1));
        }
        for i in 3..6 {
            assert_eq!(parents(&t, &m, i), vec![Some(0), Some(1)], "member {i}");
        }
        for i in 6..9 {
            assert_eq!(parents(&t, &m, i), vec![Some(1), Some(2)], "member {i}");
        }
        for i in 9..12 {
            assert_eq!(parents(&t, &m, i), vec![Some(2), Some(0)], "member {i}");
            assert_eq!(t.tier(&m[i]), Some(2));
        }
        assert_eq!(children(&t, &m, 0), vec![3, 4, 5, 9, 10, 11]);
        assert_eq!(children(&t, &m, 1), vec![6, 7, 8, 3, 4, 5]);
        assert_eq!(children(&t, &m, 2), vec![9, 10, 11, 6, 7, 8]);
        for i in 3..12 {
            assert!(children(&t, &m, i).is_empty(), "member {i}");
        }
    }

    #[test]
    fn fanout_three_partial_last_tier_by_hand() {
        let (t, m) = tree(16, 3);
        assert_eq!(t.depth(), 3);
        for i in 12..15 {
            assert_eq!(parents(&t, &m, i), vec![Some(3), Some(4)], "member {i}");
            assert_eq!(t.tier(&m[i]), Some(3));
        }
        assert_eq!(parents(&t, &m, 15), vec![Some(4), Some(5)]);
        // 3's second children would be 11's primary children, which do not exist.
        assert_eq!(children(&t, &m, 3), vec![12, 13, 14]);
        assert_eq!(children(&t, &m, 4), vec![15, 12, 13, 14]);
        assert_eq!(children(&t, &m, 5), vec![15]);
        assert!(children(&t, &m, 6).is_empty());
        assert!(children(&t, &m, 11).is_empty());
    }

    #[test]
    fn fanout_one_is_a_chain_with_skip_links() {
        let (t, m) = tree(5, 1);
        assert_eq!(t.depth(), 5);
        assert_eq!(parents(&t, &m, 0), vec![None]);
        assert_eq!(parents(&t, &m, 1), vec![Some(0), None]);
        for i in 2..5 {
            assert_eq!(parents(&t, &m, i), vec![Some(i - 1), Some(i - 2)]);
        }
        assert_eq!(root_children(&t), vec![0, 1]);
        assert_eq!(children(&t, &m, 0), vec![1, 2]);
        assert_eq!(children(&t, &m, 2), vec![3, 4]);
        assert_eq!(children(&t, &m, 3), vec![4]);
        assert!(children(&t, &m, 4).is_empty());
        for (i, member) in m.iter().enumerate() {
            assert_eq!(t.tier(member), Some(i + 1));
        }
    }

    #[test]
    fn fanout_ten_thousand_members_by_hand() {
        let (t, m) = tree(1000, 10);
        assert_eq!(t.depth(), 3);
        assert_eq!(root_children(&t), (0..10).collect::<Vec<_>>());
        assert_eq!(parents(&t, &m, 9), vec![None]);
        assert_eq!(parents(&t, &m, 10), vec![Some(0), Some(1)]);
        assert_eq!(parents(&t, &m, 109), vec![Some(9), Some(0)]);
        assert_eq!(parents(&t, &m, 110), vec![Some(10), Some(11)]);
        assert_eq!(parents(&t, &m, 999), vec![Some(98), Some(99)]);
        assert_eq!(
            children(&t, &m, 0),
            (10..20).chain(100..110).collect::<Vec<_>>()
        );
        // 10's second children would be those of 109 (the wrap), which has none.
        assert_eq!(children(&t, &m, 10), (110..120).collect::<Vec<_>>());
        assert_eq!(
            children(&t, &m, 11),
            (120..130).chain(110..120).collect::<Vec<_>>()
        );
        assert_eq!(children(&t, &m, 99), (990..1000).collect::<Vec<_>>());
        assert!(children(&t, &m, 109).is_empty());
        assert_eq!(t.tier(&m[109]), Some(2));
        assert_eq!(t.tier(&m[110]), Some(3));
        assert_eq!(t.tier(&m[999]), Some(3));
    }

    #[test]
    fn root_and_strangers_have_no_parents() {
        let (t, _) = tree(12, 3);
        assert!(t.parents(t.root()).is_empty());
        assert_eq!(t.tier(t.root()), Some(0));
        let stranger = did(99);
        assert!(t.parents(&stranger).is_empty());
        assert!(t.children(&stranger).is_empty());
        assert_eq!(t.tier(&stranger), None);
    }

    #[test]
    fn drops_root_and_repeats_from_members() {
        let t = Tree::new(did(0), vec![did(1), did(0), did(2), did(1), did(3)], k(2));
        assert_eq!(t.members(), &[did(1), did(2), did(3)]);
        assert!(t.parents(&did(0)).is_empty());
        assert_eq!(t.parents(&did(3)), vec![&did(1), &did(2)]);
    }

    #[test]
    fn empty_and_tiny_trees() {
        let (t, _) = tree(0, 10);
        assert!(t.is_empty());
        assert_eq!(t.depth(), 0);
        assert!(t.children(t.root()).is_empty());
        for fanout in [1, 2, 10] {
            let (t, m) = tree(1, fanout);
            assert_eq!(root_children(&t), vec![0]);
            assert!(children(&t, &m, 0).is_empty());
        }
        // Tier 2 holds a single node: it still has two parents and no children.
        let (t, m) = tree(11, 10);
        assert_eq!(parents(&t, &m, 10), vec![Some(0), Some(1)]);
        assert!(children(&t, &m, 10).is_empty());
    }

    /// Checks acyclicity, two distinct parents from tier 2 on, and that children are exactly the
    /// inverse of parents.
    fn check_shape(n: u32, fanout: usize) {
        let (t, m) = tree(n, fanout);
        let mut inverse: HashMap<&Did, Vec<&Did>> = HashMap::new();
        for d in &m {
            let tier = t.tier(d).unwrap();
            let ps = t.parents(d);
            for (which, p) in ps.iter().enumerate() {
                let p_tier = t.tier(p).unwrap();
                // Only k = 1 reaches two tiers up, for the second parent.
                let up = if fanout == 1 && which == 1 { 2 } else { 1 };
                assert_eq!(p_tier + up, tier, "n={n} k={fanout} {d}");
                let p_index = t.members().iter().position(|x| x == *p);
                let d_index = t.members().iter().position(|x| x == d);
                assert!(
                    p_index < d_index,
                    "n={n} k={fanout} {d}: parent after child"
                );
                inverse.entry(*p).or_default().push(d);
            }
            let distinct: HashSet<_> = ps.iter().collect();
            let want = if tier == 1 { 1 } else { 2 };
            assert_eq!(distinct.len(), want, "n={n} k={fanout} {d}");
            assert_eq!(ps.len(), want);
        }
        for d in m.iter().chain([t.root()]) {
            let mut got = t.children(d);
            let mut want = inverse.remove(d).unwrap_or_default();
            got.sort();
            want.sort();
            assert_eq!(got, want, "n={n} k={fanout} children of {d}");
        }
    }

    #[test]
    fn parents_precede_children_are_distinct_and_mirror_children() {
        for fanout in [1, 2, 3, 4, 10] {
            for n in [0, 1, 2, 3, 5, 11, 12, 13, 40, 111, 200] {
                check_shape(n, fanout);
            }
        }
        check_shape(1000, 10);
    }

    fn check_single_failures(n: u32, fanout: usize) {
        let (t, m) = tree(n, fanout);
        for f in &m {
            let down = HashSet::from([f.clone()]);
            for d in &m {
                if d != f {
                    assert!(
                        t.parents(d).iter().any(|p| *p != f),
                        "n={n} k={fanout}: {d} has no live parent without {f}"
                    );
                }
            }
            let reached = push_reach(&t, &down);
            assert_eq!(reached.len(), m.len(), "n={n} k={fanout} without {f}");
            assert!(!reached.contains(f));
        }
    }

    #[test]
    fn any_single_member_failure_leaves_every_live_member_reached() {
        check_single_failures(40, 3);
        check_single_failures(200, 10);
        check_single_failures(30, 1);
        check_single_failures(50, 2);
    }

    #[test]
    fn two_neighbours_down_cut_off_the_first_ones_primary_children() {
        let (t, m) = tree(12, 3);
        let down = HashSet::from([m[0].clone(), m[1].clone()]);
        let reached = push_reach(&t, &down);
        for cut_off in &m[3..6] {
            assert!(!reached.contains(cut_off), "{cut_off}");
        }
        assert_eq!(reached.len(), 1 + 12 - 2 - 3);
    }
}
