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
//!   - tier `t ≥ 2`, `k ≥ 3`: the node `d = k^(t−2)` places after `p` in tier `t − 1`, wrapping
//!     within that tier. Tier `t − 1` is full whenever tier `t` is not empty, so it spans
//!     `K = k^(t−1)` indices from its first index `s`, and the second parent is
//!     `s + ((p − s + d) mod K)`. Since `K = d·k` with `k ≥ 2`, `d mod K ≠ 0` and the second
//!     parent is never `p`. For `t = 2` (`d = 1`) it is simply the next node of tier 1;
//!   - tier `t ≥ 2`, `k = 2`: the node after `p` in tier `t − 1` (`d = 1`), wrapping;
//!   - tier `t ≥ 2`, `k = 1` (tier `t − 1` has one node): `p`'s own primary parent, so member
//!     `i ≥ 2` has parents `i − 1` and `i − 2`, and member 1 has member 0 and the root.
//! - **Children** of a node: every member naming it as primary or second parent. A node forwards
//!   each event to all its children, so every node from tier 2 on receives each event twice and
//!   de-duplicates by event id. For `k ≥ 2` the second children of a member `j` of a full tier
//!   (first index `s`, `K` indices, `d = K / k`) are the primary children of
//!   `s + ((j − s − d) mod K)`, the one node whose second-parent offset lands on `j`; a member
//!   of the last tier has no children. For `k = 1` the second children of a node are the
//!   primary children of its primary child.
//!
//! Orders returned: [`Tree::parents`] gives the primary parent, then the second one;
//! [`Tree::children`] gives the primary children by index, then the second children by index.
//!
//! Why the offset `k^(t−2)`: the primary children of a member `a` of tier `t − 1` (its
//! *family*) sit at positions `pos(a)·k ..= pos(a)·k + k − 1` of tier `t`, counting positions
//! from 0 at the tier's first index, and all have the same two parents: `a` and `a`'s
//! *partner*, the node `k^(t−2)` places after `a` in tier `t − 1`, wrapping. A family is a run
//! of `k` consecutive positions, while partners in tier `t` are `k^(t−1) ≥ k` places apart, so
//! no member of a family is another's partner, and losing a family cuts off nothing below it
//! (see the invariants). With an offset of 1 in every tier (this module's earlier rule)
//! neighbours were partners, so a lost family cut off the families of `k − 1` of its members,
//! and so on down.
//!
//! # Invariants (tested below and in `tests/tree_sim.rs`)
//! - Acyclic: a parent is the root or a member of a smaller index and a smaller tier (the
//!   previous tier, except the `k = 1` second parent, two tiers up).
//! - From tier 2 on, every member has two distinct parents.
//! - If every node is live but one member `F`, every other member has a live parent, so by
//!   induction over the tiers the push reaches every live member.
//! - Two member failures `a`, `b` cut off (leave with no live path from the root) at most `k`
//!   live members when `k ≥ 3`: only if `a` and `b` are in one tier `t − 1` and
//!   `b = a + k^(t−2)` (wrapping within the tier), and then exactly `a`'s primary children in
//!   tier `t`, nothing further down. Proof: the first tier holding a cut member has both of its
//!   parents down, so both failures are in the tier above and the cut members are the family of
//!   one of them (of both only if `2·k^(t−2) ≡ 0 mod k^(t−1)`, i.e. `k = 2`). One tier further
//!   down, a member is cut only if both its parents are in that family, but two positions of one
//!   family differ by less than `k`, and partners differ by `k^(t−1)` or `k^t − k^(t−1)`, both
//!   `≥ k`. With `k = 10` two failures cut off at most 10 members, with `k = 3` at most 3.
//! - `k = 2` is the exception: an offset of `2^(t−2)`, half the tier, would make `a` and
//!   `a + 2^(t−2)` each other's partners, and two failures would cut off every primary
//!   descendant of both. So with `k = 2` the second parent is always the next node of the tier
//!   above (offset 1), as in tier 2 for every `k`; two neighbours down then cut off their
//!   families and, where those are neighbours too, a little below. Two failures in tier 1 cut
//!   off everything, as for any construction whose tier 1 holds two nodes. With `k = 1` two
//!   consecutive members down cut off every member after them.
//! - More failures can cut off more. For `k ≥ 3`, a run of `L ≤ k^(t−1) − k^(t−2)` consecutive
//!   positions of a full tier `t − 1` (wrapping) that are all down or cut off cuts off the
//!   families of its first `L − k^(t−2)` members, if that is positive: a run of
//!   `k·(L − k^(t−2))` in tier `t`, which is short enough for the same rule. So `r` consecutive
//!   tier-1 members down (`2 ≤ r < k`) cut off at most `Σ_{j=1}^{r−1} (r − j)·k^j` members
//!   (`k = 10`, `r = 3`: 120), and the loss shrinks tier by tier. Catch-up by pulling the
//!   missing seq range covers the members the push misses.
//!
//! # Cost
//! [`Tree::new`] is `O(n)`; [`Tree::parents`] and [`Tree::tier`] are `O(1)`, [`Tree::children`]
//! is `O(k)`, each after one hash lookup.

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::ops::Range;

use northstar_protocol::Did;

/// A stream's member nodes in the order its tree takes them (`spec/protocol.md` §10.5): highest
/// uplink capacity first, the log's order kept among equals (a stable sort), so the nodes that
/// can feed children fill the first tiers and the ones that cannot end up in the last tier,
/// which feeds no one. Every node that knows the same capacities gets the same order.
pub fn capacity_order<T>(nodes: &mut [T], capacity: impl Fn(&T) -> u32) {
    nodes.sort_by_key(|node| std::cmp::Reverse(capacity(node)));
}

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
                Slot::Member(j) => match self.second_child_parent(j) {
                    Some(p) => self.primary_children(Slot::Member(p)),
                    None => 0..0,
                },
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
        // p's tier is full because i's tier is not empty.
        let (start, size, offset) = self.full_tier(p);
        Some(Slot::Member(start + (p - start + offset) % size))
    }

    /// For `k ≥ 2`: the member whose primary children name member `j` as second parent (the
    /// node `k^(t−1)` places before `j` in its tier `t`, wrapping), or `None` if `j` is in the
    /// last tier and so has no children.
    fn second_child_parent(&self, j: usize) -> Option<usize> {
        if self.tier_of[j] == self.tiers.len() {
            return None;
        }
        let (start, size, offset) = self.full_tier(j);
        Some(start + (j - start + size - offset) % size)
    }

    /// For `k ≥ 2` and a member `j` of a full tier `t`: the tier's first index, its size `k^t`
    /// and the second-parent offset `k^(t−1)` within it.
    fn full_tier(&self, j: usize) -> (usize, usize, usize) {
        let tier = &self.tiers[self.tier_of[j] - 1];
        // With k = 2 an offset of half the tier would make partners of each other (see the
        // module docs), so k = 2 keeps the offset of 1.
        let offset = if self.fanout == 2 {
            1
        } else {
            tier.len() / self.fanout
        };
        (tier.start, tier.len(), offset)
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
        // Tier 2 is 3..=11 (offset 3), tier 3 holds 12..=15 only.
        let (t, m) = tree(16, 3);
        assert_eq!(t.depth(), 3);
        for i in 12..15 {
            assert_eq!(parents(&t, &m, i), vec![Some(3), Some(6)], "member {i}");
            assert_eq!(t.tier(&m[i]), Some(3));
        }
        assert_eq!(parents(&t, &m, 15), vec![Some(4), Some(7)]);
        // 3's second children would be 9's primary children (30..=32), which do not exist.
        assert_eq!(children(&t, &m, 3), vec![12, 13, 14]);
        assert_eq!(children(&t, &m, 4), vec![15]);
        assert!(children(&t, &m, 5).is_empty());
        assert_eq!(children(&t, &m, 6), vec![12, 13, 14]);
        assert_eq!(children(&t, &m, 7), vec![15]);
        for i in (8..12).chain(12..16) {
            assert!(children(&t, &m, i).is_empty(), "member {i}");
        }
    }

    #[test]
    fn fanout_three_three_full_tiers_by_hand() {
        // Tier 1 is 0..=2 (offset 1), tier 2 is 3..=11 (offset 3), tier 3 is 12..=38.
        let (t, m) = tree(39, 3);
        assert_eq!(t.depth(), 3);
        // Tier 2 is as with the old rule: the next node of tier 1.
        assert_eq!(parents(&t, &m, 3), vec![Some(0), Some(1)]);
        assert_eq!(parents(&t, &m, 11), vec![Some(2), Some(0)]);
        // Tier 3: three places after p in tier 2, wrapping from 11 to 3.
        let want = [
            (3, 6),
            (4, 7),
            (5, 8),
            (6, 9),
            (7, 10),
            (8, 11),
            (9, 3),
            (10, 4),
            (11, 5),
        ];
        for (f, (p, q)) in want.into_iter().enumerate() {
            for i in 12 + 3 * f..15 + 3 * f {
                assert_eq!(parents(&t, &m, i), vec![Some(p), Some(q)], "member {i}");
                assert_eq!(t.tier(&m[i]), Some(3));
            }
        }
        assert_eq!(children(&t, &m, 3), vec![12, 13, 14, 30, 31, 32]);
        assert_eq!(children(&t, &m, 4), vec![15, 16, 17, 33, 34, 35]);
        assert_eq!(children(&t, &m, 5), vec![18, 19, 20, 36, 37, 38]);
        assert_eq!(children(&t, &m, 6), vec![21, 22, 23, 12, 13, 14]);
        assert_eq!(children(&t, &m, 11), vec![36, 37, 38, 27, 28, 29]);
        assert_eq!(children(&t, &m, 0), vec![3, 4, 5, 9, 10, 11]);
        for i in 12..39 {
            assert!(children(&t, &m, i).is_empty(), "member {i}");
        }
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
        // Tier 2 is 10..=109 (offset 10), tier 3 is 110..=999 (890 of 1000 places).
        let (t, m) = tree(1000, 10);
        assert_eq!(t.depth(), 3);
        assert_eq!(root_children(&t), (0..10).collect::<Vec<_>>());
        assert_eq!(parents(&t, &m, 9), vec![None]);
        assert_eq!(parents(&t, &m, 10), vec![Some(0), Some(1)]);
        assert_eq!(parents(&t, &m, 109), vec![Some(9), Some(0)]);
        assert_eq!(parents(&t, &m, 110), vec![Some(10), Some(20)]);
        assert_eq!(parents(&t, &m, 119), vec![Some(10), Some(20)]);
        assert_eq!(parents(&t, &m, 120), vec![Some(11), Some(21)]);
        assert_eq!(parents(&t, &m, 999), vec![Some(98), Some(108)]);
        assert_eq!(
            children(&t, &m, 0),
            (10..20).chain(100..110).collect::<Vec<_>>()
        );
        // 10's second children would be those of 100 (the wrap), which has none.
        assert_eq!(children(&t, &m, 10), (110..120).collect::<Vec<_>>());
        assert_eq!(
            children(&t, &m, 20),
            (210..220).chain(110..120).collect::<Vec<_>>()
        );
        assert_eq!(
            children(&t, &m, 98),
            (990..1000).chain(890..900).collect::<Vec<_>>()
        );
        // 99's primary children would start at 1000; its second children are 89's.
        assert_eq!(children(&t, &m, 99), (900..910).collect::<Vec<_>>());
        assert_eq!(children(&t, &m, 108), (990..1000).collect::<Vec<_>>());
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

    /// Each member's children as member indices, read once, for fast exhaustive pushes.
    struct Fast {
        /// `children[0]` are the root's children; `children[i + 1]` are member `i`'s.
        children: Vec<Vec<usize>>,
    }

    impl Fast {
        fn new(t: &Tree) -> Fast {
            let index: HashMap<&Did, usize> = t
                .members()
                .iter()
                .enumerate()
                .map(|(i, d)| (d, i))
                .collect();
            let children = std::iter::once(t.root())
                .chain(t.members())
                .map(|d| t.children(d).into_iter().map(|c| index[c]).collect())
                .collect();
            Fast { children }
        }

        /// Live members the push misses when exactly members `a` and `b` are down.
        fn cut_off(&self, a: usize, b: usize) -> usize {
            let n = self.children.len() - 1;
            let mut got = vec![false; n];
            got[a] = true;
            got[b] = true;
            let mut reached = 0;
            let mut frontier = vec![0];
            while let Some(sender) = frontier.pop() {
                for &c in &self.children[sender] {
                    if !got[c] {
                        got[c] = true;
                        reached += 1;
                        frontier.push(c + 1);
                    }
                }
            }
            n - 2 - reached
        }
    }

    /// Over every pair of distinct members `a < b` with `b < among`: the most live members cut
    /// off, and every pair reaching it.
    fn worst_pairs(n: u32, fanout: usize, among: usize) -> (usize, Vec<(usize, usize)>) {
        let (t, _) = tree(n, fanout);
        let fast = Fast::new(&t);
        let mut worst = (0, Vec::new());
        for b in 0..among {
            for a in 0..b {
                let lost = fast.cut_off(a, b);
                if lost > worst.0 {
                    worst = (lost, Vec::new());
                }
                if lost == worst.0 {
                    worst.1.push((a, b));
                }
            }
        }
        worst.1.sort();
        worst
    }

    #[test]
    fn two_neighbours_down_in_tier_one_cut_off_the_first_ones_primary_children() {
        let (t, m) = tree(12, 3);
        let down = HashSet::from([m[0].clone(), m[1].clone()]);
        let reached = push_reach(&t, &down);
        for cut_off in &m[3..6] {
            assert!(!reached.contains(cut_off), "{cut_off}");
        }
        assert_eq!(reached.len(), 1 + 12 - 2 - 3);
    }

    #[test]
    fn worst_pair_of_failures_in_tiers_one_and_two_cuts_off_one_family() {
        // k = 3, 120 members (tiers 3, 9, 27, 81): the 66 pairs among tiers 1 and 2. The worst
        // cut off 3: (a, a + 1) in tier 1 and (a, a + 3) in tier 2, wrapping, cost a's family.
        let (lost, pairs) = worst_pairs(120, 3, 12);
        assert_eq!(lost, 3);
        let mut want = vec![(0, 1), (1, 2), (0, 2)];
        want.extend((3..12).map(|a| {
            let b = 3 + (a - 3 + 3) % 9;
            (a.min(b), a.max(b))
        }));
        want.sort();
        assert_eq!(pairs, want);
        // k = 10, 200 members (tiers 10, 100, 90): the 5,995 pairs among tiers 1 and 2. Tier-2
        // nodes 10..=18 have families in tier 3; the rest do not.
        let (lost, pairs) = worst_pairs(200, 10, 110);
        assert_eq!(lost, 10);
        let mut want: Vec<_> = (0..10).map(|a| (a, (a + 1) % 10)).collect();
        want.extend((10..19).map(|a| (a, a + 10)));
        let mut want: Vec<_> = want
            .into_iter()
            .map(|(a, b)| (a.min(b), a.max(b)))
            .collect();
        want.sort();
        assert_eq!(pairs, want);
    }

    #[test]
    fn no_pair_of_failures_cuts_off_more_than_k_for_k_at_least_three() {
        for (n, fanout) in [(40, 3), (120, 3), (130, 3), (200, 10), (85, 4)] {
            let (lost, _) = worst_pairs(n, fanout, n as usize);
            assert!(lost <= fanout, "n={n} k={fanout}: {lost} cut off");
        }
        assert_eq!(worst_pairs(120, 3, 120).0, 3);
        assert_eq!(worst_pairs(200, 10, 200).0, 10);
    }

    #[test]
    fn fanout_two_keeps_the_next_node_as_second_parent() {
        // k = 2, 30 members (tiers 2, 4, 8, 16): the second parent is the next node of the
        // tier above, never the one half a tier away, whose pairing would cut off both
        // subtrees of two failures.
        let (t, dids) = tree(30, 2);
        for i in 2..30 {
            let parents = t.parents(&dids[i]);
            let p = (i / 2) - 1;
            let tier = &t.tiers[t.tier_of[p] - 1];
            let next = tier.start + (p - tier.start + 1) % tier.len();
            assert_eq!(parents, vec![&dids[p], &dids[next]], "member {i}");
        }
        let fast = Fast::new(&t);
        assert_eq!(fast.cut_off(2, 4), 0);
    }
}
