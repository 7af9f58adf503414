//! Delivery health and deletion receipts (spec §9.7) on three real nodes: a member node stopped
//! shows as lagging on the sequencer (`space.health` and its metrics) and as caught up once it
//! is back; a deleted beam's receipts count the nodes whose copies the tombstone removed.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{TIMEOUT, TestNode, get, sample};
use northstar_protocol::Keypair;
use northstar_protocol::address::{SpaceId, SpaceType};
use northstar_protocol::api::{BeamReceipts, ErrorCode, SpaceHealth};
use northstar_sdk::Client;

async fn user(node: &TestNode) -> Client {
    Client::connect(&node.url, Keypair::generate().unwrap())
        .await
        .unwrap()
}

/// Ask `space.health` until `done` holds; the last answer.
async fn health_until(
    owner: &Client,
    space: &SpaceId,
    what: &str,
    done: impl Fn(&SpaceHealth) -> bool,
) -> SpaceHealth {
    let start = tokio::time::Instant::now();
    loop {
        let health = owner.space_health(space).await.unwrap();
        if done(&health) {
            return health;
        }
        assert!(
            start.elapsed() < TIMEOUT,
            "health never showed {what}: {health:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Ask `beam.receipts` until `done` holds; the last answer.
async fn receipts_until(
    author: &Client,
    uri: &str,
    what: &str,
    done: impl Fn(&BeamReceipts) -> bool,
) -> BeamReceipts {
    let path = northstar_sdk::parse_beam(uri).unwrap();
    let start = tokio::time::Instant::now();
    loop {
        let receipts = author.beam_receipts(&path).await.unwrap();
        if done(&receipts) {
            return receipts;
        }
        assert!(
            start.elapsed() < TIMEOUT,
            "receipts never showed {what}: {receipts:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A channel on node `a` owned by Alice, joined by a user of `b` and a user of `c`.
async fn channel_on_three(
    a: &TestNode,
    b: &TestNode,
    c: &TestNode,
    name: &str,
) -> (Client, Client, Client, SpaceId) {
    let (alice, bob, carol) = (user(a).await, user(b).await, user(c).await);
    let space = alice
        .create_space(SpaceType::Channel, name, name)
        .await
        .unwrap()
        .space;
    bob.join(&alice.space_uri(&space)).await.unwrap();
    carol.join(&alice.space_uri(&space)).await.unwrap();
    (alice, bob, carol, space)
}

#[tokio::test]
async fn a_stopped_member_node_shows_as_lagging_and_then_as_caught_up() {
    let metrics = SocketAddr::from(([127, 0, 0, 1], common::free_port()));
    let a = TestNode::start_with(|c| c.metrics_listen = metrics.to_string()).await;
    let b = TestNode::start().await;
    let c_dir = tempfile::tempdir().unwrap();
    let c = TestNode::start_in(c_dir.path().to_path_buf(), |_| {}).await;
    let c_addr = c.addr;
    let c_did = c.key().did().clone();
    let (alice, bob, _carol, space) = channel_on_three(&a, &b, &c, "health").await;
    alice.post(&space, "one", "1").await.unwrap();

    let all = health_until(&alice, &space, "both member nodes at the head", |h| {
        h.nodes == 2 && h.at_head == 2
    })
    .await;
    assert_eq!(all.max_lag_events, 0);
    assert_eq!(all.max_lag_ms, 0);
    assert_eq!(all.max_hops, 1, "two member nodes hang off the sequencer");
    assert!(
        all.members
            .iter()
            .all(|m| m.hops == 1 && m.seq == Some(all.head))
    );

    // Only the owner asks, and only the sequencer answers.
    let refused = bob.space_health(&space).await.unwrap_err();
    assert_eq!(refused.code(), Some(ErrorCode::Forbidden), "{refused}");

    c.stop().await;
    for i in 0..3 {
        alice
            .post(&space, &format!("while c is down {i}"), "x")
            .await
            .unwrap();
    }
    let lagging = health_until(&alice, &space, "c three events behind", |h| {
        let c = h.members.iter().find(|m| m.node == c_did);
        h.at_head == 1 && c.is_some_and(|c| c.lag_events == Some(3) && c.lag_ms > Some(0))
    })
    .await;
    assert_eq!(lagging.max_lag_events, 3);
    assert!(lagging.max_lag_ms > 0);

    // The same, as metrics on the sequencer's metrics address.
    let label = format!("{{space=\"{space}\"}}");
    let (_, _, text) = get(metrics, "/metrics").await;
    let value = |name: &str| sample(&text, &format!("northstar_{name}{label}"));
    assert_eq!(value("space_member_nodes"), Some(2.0), "{text}");
    assert_eq!(value("space_nodes_at_head"), Some(1.0), "{text}");
    assert_eq!(value("space_max_lag_events"), Some(3.0), "{text}");
    assert_eq!(value("space_max_hops"), Some(1.0), "{text}");
    assert!(
        value("space_max_lag_seconds").is_some_and(|s| s > 0.0),
        "{text}"
    );

    let _c = TestNode::start_in(c_dir.path().to_path_buf(), |cfg| cfg.listen = c_addr).await;
    let healed = health_until(&alice, &space, "c caught up", |h| h.at_head == 2).await;
    assert_eq!(healed.max_lag_events, 0);
    let (_, _, text) = get(metrics, "/metrics").await;
    assert_eq!(
        sample(&text, &format!("northstar_space_max_lag_events{label}")),
        Some(0.0),
        "{text}"
    );
}

#[tokio::test]
async fn deletion_receipts_count_the_member_nodes_the_tombstone_reached() {
    let a = TestNode::start().await;
    let b = TestNode::start().await;
    let c_dir = tempfile::tempdir().unwrap();
    let c = TestNode::start_in(c_dir.path().to_path_buf(), |_| {}).await;
    let c_addr = c.addr;
    let c_did = c.key().did().clone();
    let (alice, bob, carol, space) = channel_on_three(&a, &b, &c, "receipts").await;
    // Bob's beam lives on b; the channel's nodes (a, b and c) hold it too.
    let posted = bob.post(&space, "soon gone", "body").await.unwrap();
    let mut feed = carol.subscribe(&space, posted.seq - 1).await.unwrap();
    common::until_seq(&mut feed, posted.seq).await;
    drop(feed);

    // Not deleted yet: nothing to report.
    let path = northstar_sdk::parse_beam(&posted.beam_uri).unwrap();
    let early = bob.beam_receipts(&path).await.unwrap_err();
    assert_eq!(early.code(), Some(ErrorCode::BeamNotFound), "{early}");
    // Only the author asks.
    let other = alice.beam_receipts(&path).await.unwrap_err();
    assert_eq!(other.code(), Some(ErrorCode::Forbidden), "{other}");

    c.stop().await;
    let deleted = bob.delete_beam(&path).await.unwrap();
    let tombstone_seq = deleted.tombstones[0].seq;
    let partial = receipts_until(&bob, &posted.beam_uri, "a and b applied", |r| {
        r.applied == 2
    })
    .await;
    assert_eq!(partial.nodes, 3, "{partial:#?}");
    assert_eq!(partial.spaces.len(), 1);
    assert_eq!(partial.spaces[0].seq, tombstone_seq);
    assert_eq!(partial.spaces[0].pending, vec![c_did.clone()]);

    let _c = TestNode::start_in(c_dir.path().to_path_buf(), |cfg| cfg.listen = c_addr).await;
    let all = receipts_until(&bob, &posted.beam_uri, "every node applied", |r| {
        r.applied == 3
    })
    .await;
    assert_eq!(all.nodes, 3);
    assert!(all.spaces[0].pending.is_empty());
    assert!(all.spaces[0].applied.contains(&c_did));
}
