//! A seeded, deterministic simulation of pushing one event down the broadcast tree
//! (`northstar_node::spaces::tree`) of 1,000 member nodes, for fan-outs 10 and 3.
//!
//! Run with `cargo test -p northstar-node --test tree_sim -- --nocapture` to see the tables;
//! the figures are recorded in `spec/tree-simulation.md`. A member that is down neither
//! receives nor forwards; every live node that receives an event forwards it to all its
//! children; only push is simulated (no catch-up by pull).

use std::collections::HashMap;
use std::num::NonZeroUsize;

use northstar_node::spaces::tree::Tree;
use northstar_protocol::{Did, Keypair};

/// Member nodes in every simulated tree.
const MEMBERS: usize = 1_000;
/// Fan-outs simulated: the default and a narrow one.
const FANOUTS: [usize; 2] = [10, 3];
/// Percentages of members down in the random-failure runs.
const FAILURE_PERCENTS: [usize; 3] = [5, 10, 20];
/// Seeds of the random-failure runs (each seed picks the same failures for every fan-out).
const SEEDS: std::ops::RangeInclusive<u64> = 1..=20;

/// SplitMix64 (Steele, Lea, Flood 2014): tiny, seedable and the same everywhere.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`next() mod n`; the bias is below 2^-50 for these `n`).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Node `i`'s DID: the Ed25519 key whose seed is `i` as 8 little-endian bytes, then zeros.
/// Node 0 is the root (the sequencer); nodes `1..=MEMBERS` are the members in that order.
fn node_did(i: u64) -> Did {
    let mut seed = [0u8; 32];
    seed[..8].copy_from_slice(&i.to_le_bytes());
    Keypair::from_seed(&seed).did().clone()
}

/// One tree, with each node's children read once through [`Tree::children`] into member
/// indices so that thousands of pushes stay cheap.
struct Sim {
    tree: Tree,
    /// `children[0]` are the root's children; `children[i + 1]` are member `i`'s.
    children: Vec<Vec<usize>>,
}

/// What one push reached.
struct Push {
    /// Live members that received the event.
    reached: usize,
    /// Hops from the root to the last member reached.
    max_hops: usize,
    /// Sends by live, reached nodes (a send to a dead child counts).
    messages: usize,
}

impl Sim {
    fn new(members: &[Did], root: &Did, fanout: usize) -> Sim {
        let fanout = NonZeroUsize::new(fanout).expect("fan-outs are positive");
        let tree = Tree::new(root.clone(), members.to_vec(), fanout);
        let index: HashMap<&Did, usize> = members.iter().enumerate().map(|(i, d)| (d, i)).collect();
        let children = std::iter::once(root)
            .chain(members)
            .map(|node| tree.children(node).into_iter().map(|c| index[c]).collect())
            .collect();
        Sim { tree, children }
    }

    /// Push one event from the root, tier by tier; `down[i]` says member `i` is down.
    fn push(&self, down: &[bool]) -> Push {
        let mut got = vec![false; down.len()];
        let mut out = Push {
            reached: 0,
            max_hops: 0,
            messages: 0,
        };
        // Senders as indices into `children`: 0 is the root, i + 1 is member i.
        let mut senders = vec![0];
        let mut hops = 0;
        while !senders.is_empty() {
            hops += 1;
            let mut next = Vec::new();
            for sender in senders {
                let children = &self.children[sender];
                out.messages += children.len();
                for &child in children {
                    if !down[child] && !got[child] {
                        got[child] = true;
                        out.reached += 1;
                        out.max_hops = hops;
                        next.push(child + 1);
                    }
                }
            }
            senders = next;
        }
        out
    }
}

fn members_and_root() -> (Vec<Did>, Did) {
    let members = (1..=MEMBERS as u64).map(node_did).collect();
    (members, node_did(0))
}

/// Prints a titled Markdown table in one write, so parallel tests do not interleave rows.
fn print_table(title: &str, header: &[&str], rows: &[Vec<String>]) {
    let mut out = format!("\n{title}\n| {} |\n|", header.join(" | "));
    out.push_str(&"---|".repeat(header.len()));
    for row in rows {
        out.push_str(&format!("\n| {} |", row.join(" | ")));
    }
    println!("{out}");
}

#[test]
fn no_failures_reach_every_member() {
    let (members, root) = members_and_root();
    let pushes: Vec<(usize, usize, Push)> = FANOUTS
        .iter()
        .map(|&k| {
            let sim = Sim::new(&members, &root, k);
            (k, sim.tree.depth(), sim.push(&vec![false; MEMBERS]))
        })
        .collect();
    let rows: Vec<Vec<String>> = pushes
        .iter()
        .map(|(k, _, push)| {
            vec![
                k.to_string(),
                format!("{}/{MEMBERS}", push.reached),
                push.max_hops.to_string(),
                push.messages.to_string(),
            ]
        })
        .collect();
    print_table(
        &format!("No failures, {MEMBERS} members"),
        &["k", "reached", "hops to last node", "messages per event"],
        &rows,
    );
    for (k, depth, push) in pushes {
        assert_eq!(push.reached, MEMBERS, "k={k}");
        assert_eq!(push.max_hops, depth, "k={k}");
        // Every member is a primary child once and, from tier 2 on, a second child once.
        assert_eq!(push.messages, 2 * MEMBERS - k, "k={k}");
        let expected_depth = match k {
            10 => 3, // 10 + 100 + 890
            3 => 6,  // 3 + 9 + 27 + 81 + 243 + 637
            _ => continue,
        };
        assert_eq!(depth, expected_depth, "k={k}");
    }
}

#[test]
fn every_single_failure_leaves_every_live_member_reached() {
    let (members, root) = members_and_root();
    let mut rows = Vec::new();
    let mut misses = Vec::new();
    for k in FANOUTS {
        let sim = Sim::new(&members, &root, k);
        let mut down = vec![false; MEMBERS];
        let mut worst = MEMBERS - 1;
        for f in 0..MEMBERS {
            down[f] = true;
            let reached = sim.push(&down).reached;
            if reached != MEMBERS - 1 {
                misses.push((k, f, reached));
            }
            worst = worst.min(reached);
            down[f] = false;
        }
        rows.push(vec![
            k.to_string(),
            MEMBERS.to_string(),
            format!("{worst}/{}", MEMBERS - 1),
        ]);
    }
    print_table(
        &format!("Every single member failure, {MEMBERS} members"),
        &["k", "failures tried", "fewest live members reached"],
        &rows,
    );
    assert!(misses.is_empty(), "(k, member down, reached): {misses:?}");
}

/// The worst loss over every pair of failures among the members of tiers 1 and 2. Reported,
/// and checked against the closed form for `k ≥ 3`: a pair cuts anyone off only if it is
/// `a`, `a + k^(t−2)` of one tier `t − 1` (wrapping), and then exactly `a`'s primary children
/// in tier `t`, nothing below. So the worst loss is `k`, first reached by `(0, 1)`; every tier-1
/// member starts such a pair (`k` pairs), and so does every tier-2 member with a full family
/// in tier 3.
#[test]
fn worst_pair_of_failures_near_the_root() {
    let (members, root) = members_and_root();
    let mut rows = Vec::new();
    let mut checks = Vec::new();
    for k in FANOUTS {
        let sim = Sim::new(&members, &root, k);
        let top = k + k * k;
        let mut down = vec![false; MEMBERS];
        let mut worst = (0, (0, 0));
        let (mut pairs, mut cutting, mut at_worst) = (0, 0, 0);
        for a in 0..top {
            for b in a + 1..top {
                down[a] = true;
                down[b] = true;
                let lost = MEMBERS - 2 - sim.push(&down).reached;
                if lost > worst.0 {
                    worst = (lost, (a, b));
                    at_worst = 0;
                }
                if lost == worst.0 {
                    at_worst += 1;
                }
                if lost > 0 {
                    cutting += 1;
                }
                pairs += 1;
                down[a] = false;
                down[b] = false;
            }
        }
        let tier3 = (MEMBERS - top).min(k * k * k);
        let full_families = k + (tier3 / k).min(k * k);
        let families = k + tier3.div_ceil(k).min(k * k);
        rows.push(vec![
            k.to_string(),
            pairs.to_string(),
            cutting.to_string(),
            format!("{:?}", worst.1),
            worst.0.to_string(),
            at_worst.to_string(),
            format!(
                "{:.4}",
                (MEMBERS - 2 - worst.0) as f64 / (MEMBERS - 2) as f64
            ),
        ]);
        checks.push((k, worst, cutting, at_worst, families, full_families));
    }
    print_table(
        &format!("Worst pair of failures among tiers 1 and 2, {MEMBERS} members"),
        &[
            "k",
            "pairs tried",
            "pairs cutting anyone off",
            "worst pair (member indices)",
            "live members cut off",
            "pairs as bad",
            "share of live reached",
        ],
        &rows,
    );
    for (k, worst, cutting, at_worst, families, full_families) in checks {
        assert_eq!(worst, (k, (0, 1)), "k={k}");
        assert_eq!(cutting, families, "k={k}");
        assert_eq!(at_worst, full_families, "k={k}");
    }
}

#[test]
fn random_failures_push_alone_reaches_most_live_members() {
    let (members, root) = members_and_root();
    let mut rows = Vec::new();
    let mut checks = Vec::new();
    for k in FANOUTS {
        let sim = Sim::new(&members, &root, k);
        for percent in FAILURE_PERCENTS {
            let failures = MEMBERS * percent / 100;
            let live = MEMBERS - failures;
            let fractions: Vec<f64> = SEEDS
                .map(|seed| sim.push(&pick_failures(seed, failures)).reached as f64 / live as f64)
                .collect();
            let min = fractions.iter().copied().fold(f64::INFINITY, f64::min);
            let mean = fractions.iter().sum::<f64>() / fractions.len() as f64;
            let full = fractions.iter().filter(|f| **f == 1.0).count();
            rows.push(vec![
                k.to_string(),
                format!("{percent}% ({failures})"),
                format!("{min:.4}"),
                format!("{mean:.4}"),
                format!("{full}/{}", fractions.len()),
            ]);
            checks.push((k, percent, min, mean));
        }
    }
    print_table(
        &format!(
            "Random failures, {MEMBERS} members, seeds {}..={}: share of live members reached by \
             push alone",
            SEEDS.start(),
            SEEDS.end()
        ),
        &[
            "k",
            "members down",
            "min",
            "mean",
            "seeds reaching all live",
        ],
        &rows,
    );
    for (k, percent, min, mean) in checks {
        let (min_floor, mean_floor) = lower_bounds(k, percent);
        assert!(
            min >= min_floor,
            "k={k} {percent}%: min {min} < {min_floor}"
        );
        assert!(
            mean >= mean_floor,
            "k={k} {percent}%: mean {mean} < {mean_floor}"
        );
    }
}

/// Floors (min, mean over the seeds) for the random-failure runs: about 0.05 under the measured
/// minimum and 0.03 under the measured mean (`spec/tree-simulation.md`). The runs are
/// deterministic, so these cannot flake; they catch a construction that got worse (every min
/// floor is above the minimum the old next-node rule measured). Random failures carry no
/// guarantee: a run of `r ≥ 3` consecutive tier-1 members down cuts off
/// `Σ_{j=1}^{r−1} (r − j)·k^j` members, which is what sets the minimum at 20%.
fn lower_bounds(k: usize, percent: usize) -> (f64, f64) {
    match (k, percent) {
        (10, 5) => (0.91, 0.96), // measured 0.9684, 0.9939 (old rule 0.8905, 0.9936)
        (10, 10) => (0.90, 0.95), // measured 0.9522, 0.9839 (old rule 0.7900, 0.9676)
        (10, _) => (0.66, 0.89), // measured 0.7100, 0.9212 (old rule 0.6288, 0.9094)
        (_, 5) => (0.93, 0.96),  // k = 3: measured 0.9874, 0.9973 (old rule 0.8147, 0.9879)
        (_, 10) => (0.91, 0.95), // k = 3: measured 0.9689, 0.9864 (old rule 0.6700, 0.9375)
        _ => (0.75, 0.89),       // k = 3: measured 0.8000, 0.9264 (old rule 0.5275, 0.8339)
    }
}

/// `count` distinct members down, drawn by a partial Fisher–Yates shuffle of `0..MEMBERS`
/// driven by `SplitMix64(seed)`: for `j` in `0..count`, swap position `j` with
/// `j + below(MEMBERS - j)`; the first `count` positions are down.
fn pick_failures(seed: u64, count: usize) -> Vec<bool> {
    let mut rng = SplitMix64(seed);
    let mut order: Vec<usize> = (0..MEMBERS).collect();
    for j in 0..count {
        let r = j + rng.below(MEMBERS - j);
        order.swap(j, r);
    }
    let mut down = vec![false; MEMBERS];
    for &i in &order[..count] {
        down[i] = true;
    }
    down
}

#[test]
fn splitmix64_matches_the_reference_sequence() {
    // The published first outputs for seed 1234567 (Rosetta Code, "Pseudo-random
    // numbers/Splitmix64").
    let mut rng = SplitMix64(1_234_567);
    assert_eq!(rng.next(), 6_457_827_717_110_365_317);
    assert_eq!(rng.next(), 3_203_168_211_198_807_973);
    assert_eq!(rng.next(), 9_817_491_932_198_370_423);
}
