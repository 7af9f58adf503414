//! Several real nodes on 127.0.0.1 federating: remote joins and posts, the broadcast tree with a
//! node down, catch-up after a restart, remote beams and their deletion, and forged or forked
//! events stopped at the first hop.

mod common;

use std::time::Duration;

use common::{Raw, TestNode, until_seq};
use northstar_protocol::address::{BeamUri, SpaceId, SpaceType, SpaceUri};
use northstar_protocol::api::ErrorCode;
use northstar_protocol::wire::{AuthResponse, Event, Payload, Tombstone};
use northstar_protocol::{ContentId, Keypair};
use northstar_sdk::Client;
use serde_json::json;

async fn user(node: &TestNode) -> Client {
    Client::connect(&node.url, Keypair::generate().unwrap())
        .await
        .unwrap()
}

/// Node A with Alice's channel `unique_id`, and node B whose user Bob joined it.
async fn alice_on_a_bob_on_b(unique_id: &str) -> (TestNode, TestNode, Client, Client, SpaceId) {
    let (a, b) = (TestNode::start().await, TestNode::start().await);
    let (alice, bob) = (user(&a).await, user(&b).await);
    let space = alice
        .create_space(SpaceType::Channel, unique_id, unique_id)
        .await
        .unwrap()
        .space;
    bob.join(&alice.space_uri(&space)).await.unwrap();
    (a, b, alice, bob, space)
}

fn ids(events: &[Event]) -> Vec<(u64, ContentId)> {
    events.iter().map(|e| (e.seq, e.id().unwrap())).collect()
}

/// The whole log of `space` as `client`'s node holds it.
async fn log(client: &Client, space: &SpaceId) -> Vec<(u64, ContentId)> {
    ids(&client.events(space, 0, 500).await.unwrap())
}

#[tokio::test]
async fn three_nodes_join_post_fetch_and_delete_across_the_federation() {
    let (a, b, c) = (
        TestNode::start().await,
        TestNode::start().await,
        TestNode::start().await,
    );
    let (alice, bob, carol) = (user(&a).await, user(&b).await, user(&c).await);
    let space = alice
        .create_space(SpaceType::Channel, "town", "Town square")
        .await
        .unwrap()
        .space;
    let uri = alice.space_uri(&space);

    // Bob and Carol join through their own nodes, by the URI naming Alice's.
    assert_eq!(bob.join(&uri).await.unwrap().seq, 2);
    assert_eq!(carol.join(&uri).await.unwrap().seq, 3);
    let members = alice.members(&space).await.unwrap();
    let homes: Vec<_> = members.iter().filter_map(|m| m.home.clone()).collect();
    assert!(homes.contains(&format!("{}", b.addr)), "{members:?}");

    // Carol reads the space on her own node: a replica, verified event by event.
    let mut carol_feed = carol.subscribe(&space, 0).await.unwrap();
    until_seq(&mut carol_feed, 3).await;

    // Bob posts on his node; the content stays there and the ref goes to Alice's node.
    let posted = bob.post(&space, "hello", "from node b").await.unwrap();
    assert_eq!(posted.seq, 4);
    let beam_uri = BeamUri::parse(&posted.beam_uri).unwrap();
    assert_eq!(beam_uri.authority, b.addr.to_string());
    let seen = until_seq(&mut carol_feed, 4).await;
    assert_eq!(seen.last().unwrap().id().unwrap(), posted.event_id);

    // Carol fetches the beam through her node, which gets it from Bob's and checks it.
    let beam = carol.get_beam(&beam_uri).await.unwrap();
    assert_eq!(beam.body, "from node b");

    // All three nodes hold the same log.
    let reference = log(&alice, &space).await;
    assert_eq!(reference.len(), 4);
    assert_eq!(log(&bob, &space).await, reference);
    assert_eq!(log(&carol, &space).await, reference);

    // Bob deletes it: the tombstone is sequenced at Alice's node and reaches Carol's, whose
    // cached copy goes; the beam is then found nowhere.
    let deleted = bob.delete_beam(&beam_uri).await.unwrap();
    assert_eq!(deleted.tombstones.len(), 1);
    let seen = until_seq(&mut carol_feed, 5).await;
    assert!(matches!(
        seen.last().unwrap().payload,
        Payload::Tombstone(_)
    ));
    for client in [&alice, &bob, &carol] {
        let err = client.get_beam(&beam_uri).await.unwrap_err();
        assert_eq!(err.code(), Some(ErrorCode::BeamNotFound), "{err}");
    }
}

#[tokio::test]
async fn every_live_member_node_receives_every_event_with_an_interior_node_down() {
    // Members sync rarely, so what arrives comes down the tree.
    let sequencer = TestNode::start_with(|c| c.fanout = 3).await;
    let alice = user(&sequencer).await;
    let space = alice
        .create_space(SpaceType::Channel, "wide", "Wide")
        .await
        .unwrap()
        .space;
    let uri = alice.space_uri(&space);
    let mut members = Vec::new();
    for _ in 0..12 {
        let node = TestNode::start_with(|c| c.sync_interval_secs = 3600).await;
        let client = user(&node).await;
        client.join(&uri).await.unwrap();
        members.push((node, client));
    }
    // Join order fixes the tree: the first three member nodes are tier 1, each the parent of
    // three of the nine below. Stop the first: an interior node.
    let (down, _) = members.remove(0);
    down.stop().await;
    let mut feeds = Vec::new();
    for (_, client) in &members {
        feeds.push(client.subscribe(&space, 13).await.unwrap());
    }
    let mut last = 0;
    for i in 0..5 {
        last = alice
            .post(&space, &format!("news {i}"), "x")
            .await
            .unwrap()
            .seq;
    }
    assert_eq!(last, 18);
    for feed in &mut feeds {
        let seen = until_seq(feed, last).await;
        let seqs: Vec<_> = seen.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, (14..=18).collect::<Vec<_>>());
    }
    let reference = log(&alice, &space).await;
    for (_, client) in &members {
        assert_eq!(log(client, &space).await, reference);
    }
}

#[tokio::test]
async fn a_member_node_stopped_while_events_flow_catches_up_after_restart() {
    let a = TestNode::start().await;
    let dir = tempfile::tempdir().unwrap();
    let b = TestNode::start_in(dir.path().to_path_buf(), |_| {}).await;
    let b_addr = b.addr;
    let alice = user(&a).await;
    let bob_key = Keypair::generate().unwrap();
    let bob = Client::connect(&b.url, bob_key.clone()).await.unwrap();
    let space = alice
        .create_space(SpaceType::Channel, "flow", "Flow")
        .await
        .unwrap()
        .space;
    bob.join(&alice.space_uri(&space)).await.unwrap();

    let writer = {
        let alice = alice.clone();
        let space = space.clone();
        tokio::spawn(async move {
            for i in 0..40 {
                alice.post(&space, &format!("p{i}"), "x").await.unwrap();
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    b.stop().await;
    writer.await.unwrap();

    let b = TestNode::start_in(dir.path().to_path_buf(), |c| c.listen = b_addr).await;
    let bob = Client::connect(&b.url, bob_key).await.unwrap();
    let mut feed = bob.subscribe(&space, 0).await.unwrap();
    until_seq(&mut feed, 42).await;
    assert_eq!(log(&bob, &space).await, log(&alice, &space).await);
}

#[tokio::test]
async fn forged_and_forked_events_are_refused_at_the_first_hop() {
    let (a, mut b, alice, bob, space) = alice_on_a_bob_on_b("guarded").await;
    alice.post(&space, "real", "x").await.unwrap();
    let mut feed = bob.subscribe(&space, 0).await.unwrap();
    let held = until_seq(&mut feed, 3).await;

    // A rogue node pushes straight to B.
    let rogue = Keypair::generate().unwrap();
    let mut raw = Raw::connect(&b.url).await;
    let challenge = serde_json::from_value(raw.ok("auth.challenge", json!([])).await).unwrap();
    raw.ok(
        "auth.respond",
        json!([AuthResponse::answer(&rogue, challenge).unwrap()]),
    )
    .await;

    let sequencer_key = a.key();
    let last = held.last().unwrap().clone();
    let tombstone = Tombstone::create(&rogue, ContentId::of(b"x"), 1).unwrap();
    let next = |key: &Keypair, seq: u64, prev: Option<ContentId>| {
        Event::sequence(
            key,
            space.clone(),
            seq,
            prev,
            99,
            Payload::Tombstone(tombstone.clone()),
        )
        .unwrap()
    };

    // Signed by a key that is not the sequencer's.
    let forged = next(&rogue, 4, Some(last.id().unwrap()));
    let (code, _) = raw.err("fed.push", json!([[forged]])).await;
    assert_eq!(code, i64::from(ErrorCode::BadSignature.code()));

    // Signed by the sequencer, but not linked to the event before it.
    let unlinked = next(&sequencer_key, 4, Some(ContentId::of(b"elsewhere")));
    raw.err("fed.push", json!([[unlinked]])).await;

    // Signed by the sequencer for a seq B holds already, with other content: a fork.
    let rival = next(&sequencer_key, 3, Some(held[1].id().unwrap()));
    let (_, message) = raw.err("fed.push", json!([[rival]])).await;
    assert!(message.contains("fork"), "{message}");

    // None of them reached B's log, and the fork's proof is kept.
    assert_eq!(log(&bob, &space).await, ids(&held));
    // B's store, opened once B has let go of it.
    b.halt().await;
    let b_key = northstar_node::node_key(&b.data_dir).unwrap();
    let at = northstar_node::store::Storage::from_url(&b.storage_url, &b.data_dir).unwrap();
    let store = northstar_node::store::Store::open(&at, b_key.did().as_str())
        .await
        .unwrap();
    let forks = store.forks(space.as_str()).await.unwrap();
    assert_eq!(forks.len(), 1);
    assert_eq!(forks[0].0, 3);
    let kept: Event = serde_json::from_str(&forks[0].1).unwrap();
    let refused: Event = serde_json::from_str(&forks[0].2).unwrap();
    assert_eq!(kept.id().unwrap(), held[2].id().unwrap());
    assert_eq!(refused.id().unwrap(), rival.id().unwrap());
    let _ = SpaceUri::parse(&alice.space_uri(&space).to_string()).unwrap();
}

#[tokio::test]
async fn only_a_beams_author_can_have_it_tombstoned_and_only_referenced_beams_are_fetched() {
    let (a, _b, alice, bob, space) = alice_on_a_bob_on_b("mine").await;
    let posted = bob.post(&space, "keep", "this").await.unwrap();
    let beam_uri = BeamUri::parse(&posted.beam_uri).unwrap();

    // A rogue signs a tombstone for Bob's beam and submits it to the sequencer as a node.
    let rogue = Keypair::generate().unwrap();
    let mut raw = Raw::connect(&a.url).await;
    let challenge = serde_json::from_value(raw.ok("auth.challenge", json!([])).await).unwrap();
    raw.ok(
        "auth.respond",
        json!([AuthResponse::answer(&rogue, challenge).unwrap()]),
    )
    .await;
    let forged = Tombstone::create(&rogue, beam_uri.path.beam, 1).unwrap();
    let (code, _) = raw
        .err(
            "fed.submit",
            json!([space.as_str(), {"kind": "tombstone", "body": forged}]),
        )
        .await;
    assert_eq!(code, i64::from(ErrorCode::Forbidden.code()));
    assert_eq!(alice.get_beam(&beam_uri).await.unwrap().body, "this");

    // A node fetches a remote beam only when a space it holds refers to it: a node that holds
    // no such space is no relay.
    let c = TestNode::start().await;
    let carol = user(&c).await;
    let err = carol.get_beam(&beam_uri).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::BeamNotFound), "{err}");
}
