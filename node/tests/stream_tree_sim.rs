//! Capacity-aware stream trees against plain ones, by simulation: 120 member nodes under one
//! publisher, fan-out 3 (tiers of 3, 9, 27 and 81), four in ten of them slow (an uplink of one
//! frame per tick for all their children together). The publisher sends one frame per tick; every
//! node takes each frame once from its two parents ([`Window`]), queues it for each child on a
//! bounded link, and sends what its uplink allows; a full link drops the frame for that link
//! only. The same slow nodes, the same frames: only the order of the tree differs.

use std::collections::VecDeque;
use std::num::NonZeroUsize;

use northstar_node::spaces::tree::Tree;
use northstar_node::spaces::tree::capacity_order;
use northstar_node::streams::window::{Held, Taken, Window};
use northstar_protocol::{Did, Keypair};

const MEMBERS: usize = 120;
const FANOUT: usize = 3;
const FRAMES: u64 = 300;
/// Frames a link holds before it drops.
const LINK_QUEUE: usize = 8;
/// Frames per tick a slow node sends, over all its links; a fast one is not limited here.
const SLOW_UPLINK: usize = 1;
const FAST_UPLINK: usize = 1_000;

struct Node {
    window: Window,
    /// One queue per child, in the tree's order of children.
    links: Vec<(usize, VecDeque<u64>)>,
    uplink: usize,
    delivered: u64,
}

/// Delivered fraction of all frames at all members, for a tree over `order`.
fn delivered(order: &[Did], dids: &[Did], slow: &[bool]) -> f64 {
    let root = Keypair::from_seed(&[0; 32]).did().clone();
    let tree = Tree::new(
        root.clone(),
        order.to_vec(),
        NonZeroUsize::new(FANOUT).unwrap(),
    );
    let index = |did: &Did| dids.iter().position(|d| d == did).unwrap();
    // Node MEMBERS is the publisher.
    let mut nodes: Vec<Node> = (0..=MEMBERS)
        .map(|i| {
            let me = if i == MEMBERS { &root } else { &dids[i] };
            Node {
                window: Window::new(64, u64::MAX),
                links: tree
                    .children(me)
                    .into_iter()
                    .map(|c| (index(c), VecDeque::new()))
                    .collect(),
                uplink: if i < MEMBERS && slow[i] {
                    SLOW_UPLINK
                } else {
                    FAST_UPLINK
                },
                delivered: 0,
            }
        })
        .collect();
    // (tick due, to, frame)
    let mut in_flight: Vec<(u64, usize, u64)> = Vec::new();
    for tick in 0..FRAMES + 100 {
        if tick < FRAMES {
            for (_, queue) in &mut nodes[MEMBERS].links {
                queue.push_back(tick);
            }
        }
        let (due, later): (Vec<_>, Vec<_>) = in_flight.into_iter().partition(|(t, ..)| *t <= tick);
        in_flight = later;
        for (_, to, frame) in due {
            let held = Held {
                number: frame,
                key: true,
                timestamp: frame,
                bytes: tokio_tungstenite::tungstenite::Bytes::copy_from_slice(&frame.to_be_bytes()),
                at: tick,
            };
            let node = &mut nodes[to];
            if let Taken::New { .. } = node.window.take(held, tick) {
                node.delivered += 1;
                for (_, queue) in &mut node.links {
                    if queue.len() < LINK_QUEUE {
                        queue.push_back(frame);
                    }
                }
            }
        }
        for node in &mut nodes {
            let mut budget = node.uplink;
            // Round robin: one frame per link per round, while the uplink lasts.
            while budget > 0 && node.links.iter().any(|(_, q)| !q.is_empty()) {
                for (child, queue) in &mut node.links {
                    if budget == 0 {
                        break;
                    }
                    if let Some(frame) = queue.pop_front() {
                        in_flight.push((tick + 1, *child, frame));
                        budget -= 1;
                    }
                }
            }
        }
    }
    let total: u64 = nodes[..MEMBERS].iter().map(|n| n.delivered).sum();
    total as f64 / (MEMBERS as u64 * FRAMES) as f64
}

#[test]
fn capacity_aware_trees_deliver_more_frames_when_some_nodes_are_slow() {
    let dids: Vec<Did> = (1..=MEMBERS as u8)
        .map(|b| Keypair::from_seed(&[b; 32]).did().clone())
        .collect();
    // Four nodes in ten are slow, picked by a fixed pseudo-random sequence (a plain tree places
    // them wherever the log does; a regular pattern could line up with the second parents).
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    let slow: Vec<bool> = (0..MEMBERS)
        .map(|_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1);
            (state >> 33) % 10 < 4
        })
        .collect();
    let plain = delivered(&dids, &dids, &slow);
    let mut capacities: Vec<(Did, u32)> = dids
        .iter()
        .zip(&slow)
        .map(|(d, s)| (d.clone(), if *s { 1 } else { 100 }))
        .collect();
    capacity_order(&mut capacities, |(_, c)| *c);
    let ordered: Vec<Did> = capacities.into_iter().map(|(d, _)| d).collect();
    let aware = delivered(&ordered, &dids, &slow);
    println!("delivered: plain tree {plain:.3}, capacity-aware tree {aware:.3}");
    assert!(
        aware > plain,
        "capacity-aware {aware:.3} ≤ plain {plain:.3}"
    );
    // Slow nodes are all leaves of the capacity-aware tree: they feed nobody.
    assert!(aware > 0.999, "capacity-aware delivered {aware:.3}");
    assert!(
        plain < 0.9,
        "the plain tree lost too little to show anything: {plain:.3}"
    );
}
