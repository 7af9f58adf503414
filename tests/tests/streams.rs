//! Live streams on real nodes (`spec/protocol.md` §10), spoken on the wire: a publisher's
//! frames reach watchers on its node and on member nodes down the stream's tree; late joiners
//! start at a key frame; refused frames go nowhere; an interior node's death costs its
//! children nothing; a watcher that stops reading costs nobody else anything.

mod common;

use std::time::{Duration, Instant};

use common::streams::{Publisher, Watcher, now_ms, stream_on, user, warm_up};
use common::{Raw, TIMEOUT, TestNode};
use northstar_protocol::Keypair;
use northstar_protocol::address::SpaceId;
use northstar_protocol::api::ErrorCode;
use northstar_protocol::method;
use northstar_protocol::sign::{self, Domain};
use serde_json::{Value, json};

#[tokio::test]
async fn watchers_on_the_publishers_node_get_every_frame_and_late_joiners_start_at_a_key_frame() {
    let node = TestNode::start().await;
    let (_alice, key, space) = stream_on(&node, "radio").await;
    let (mut early, answer) = Watcher::open(&node, &space, None).await;
    assert_eq!(answer, json!({"space": space}), "nothing to send yet");
    let mut publisher = Publisher::open(&node, &key, &space).await;
    assert_eq!(publisher.next, 1);
    for i in 1..=25u64 {
        publisher
            .send(format!("frame {i}").as_bytes(), i % 10 == 1)
            .await;
    }
    let seen = early.read_until(25, TIMEOUT).await;
    assert_eq!(seen.numbers, (1..=25).collect::<Vec<_>>());
    assert_eq!(seen.payloads[6], b"frame 7");
    // Key frames at 1, 11 and 21: a late joiner starts at 21.
    let (mut late, answer) = Watcher::open(&node, &space, None).await;
    assert_eq!(answer["start"], 21);
    assert_eq!(answer["newest"], 25);
    assert_eq!(
        late.read_until(25, TIMEOUT).await.numbers,
        (21..=25).collect::<Vec<_>>()
    );
    // A watcher resuming after 23 gets 24 and 25.
    let (mut resuming, answer) = Watcher::open(&node, &space, Some(23)).await;
    assert_eq!(answer["start"], 24);
    assert_eq!(resuming.read_until(25, TIMEOUT).await.numbers, [24, 25]);
    // Live frames reach all three.
    publisher.send(b"live", false).await;
    for watcher in [&mut early, &mut late, &mut resuming] {
        assert_eq!(watcher.read_until(26, TIMEOUT).await.numbers, [26]);
    }
    // A publisher that comes back continues the numbering.
    let again = Publisher::open(&node, &key, &space).await;
    assert_eq!(again.next, 27);
    let mut raw = Raw::connect(&node.url).await;
    let info = raw.ok(method::STREAM_INFO, json!([space])).await;
    assert_eq!(info["newest"], 26);
    assert_eq!(info["newest_key"], 21);
    assert_eq!(info["watchers"], 3);
    assert_eq!(info["live"], true);
    assert_eq!(info["limits"]["max_frame_bytes"], 65536);
}

#[tokio::test]
async fn refused_frames_are_told_to_the_publisher_and_reach_no_watcher() {
    let node = TestNode::start_with(|c| {
        c.streams.max_frame_bytes = 1000;
        c.streams.max_frames_per_second = 20;
    })
    .await;
    let (_alice, alice, space) = stream_on(&node, "tv").await;
    let (_bob_client, bob) = user(&node).await;
    let (mut watcher, _) = Watcher::open(&node, &space, None).await;

    // Bob may not publish Alice's stream, and his frames are not taken.
    let mut raw = Raw::connect(&node.url).await;
    raw.authenticate(&bob).await;
    let (code, _) = raw.err(method::STREAM_PUBLISH, json!([space])).await;
    assert_eq!(code, i64::from(ErrorCode::Forbidden.code()));
    let mut intruder = Publisher {
        raw,
        key: alice.clone(),
        space: space.clone(),
        next: 1,
    };
    intruder.send(b"not yours to send", true).await;
    let refusal = intruder.refusal(TIMEOUT).await.unwrap();
    assert_eq!(refusal["name"], "not_publishing");
    // Anonymous connections cannot publish at all.
    let mut anonymous = Raw::connect(&node.url).await;
    let (code, _) = anonymous.err(method::STREAM_PUBLISH, json!([space])).await;
    assert_eq!(code, i64::from(ErrorCode::AuthRequired.code()));

    let mut publisher = Publisher::open(&node, &alice, &space).await;
    publisher.send(b"one", true).await;
    // A frame signed by Bob in Alice's name, and a frame altered after signing.
    let mut forged = publisher.frame(b"two", false);
    let signed_len = forged.len() - 64;
    let message = sign::signing_message(Domain::StreamFrame, &forged[..signed_len]);
    let bobs = bob.sign_raw(&message).to_bytes();
    forged[signed_len..].copy_from_slice(&bobs);
    publisher.raw.send_binary(forged).await;
    let refusal = publisher.refusal(TIMEOUT).await.unwrap();
    assert_eq!(refusal["name"], "bad_signature");
    assert_eq!(refusal["number"], 2);
    publisher.next = 2;
    let mut altered = publisher.frame(b"two", false);
    let payload_at = altered.len() - 64 - 3;
    altered[payload_at] ^= 1;
    publisher.raw.send_binary(altered).await;
    assert_eq!(
        publisher.refusal(TIMEOUT).await.unwrap()["name"],
        "bad_signature"
    );
    publisher.next = 2;
    // Too large, out of order, not a frame at all.
    publisher.send(&[0; 1001], false).await;
    assert_eq!(
        publisher.refusal(TIMEOUT).await.unwrap()["name"],
        "frame_too_large"
    );
    // Frame 1 again: numbers only go up.
    publisher.next = 1;
    publisher.send(b"again", false).await;
    assert_eq!(
        publisher.refusal(TIMEOUT).await.unwrap()["name"],
        "frame_order"
    );
    publisher.raw.send_binary(vec![1, 0, 0]).await;
    let refusal = publisher.refusal(TIMEOUT).await.unwrap();
    assert_eq!(refusal["name"], "malformed_object");
    assert!(refusal.get("number").is_none());
    // The right next frame is taken.
    publisher.next = 2;
    publisher.send(b"two", false).await;
    let seen = watcher.read_until(2, TIMEOUT).await;
    assert_eq!(seen.numbers, [1, 2], "no refused frame reached the watcher");
    assert_eq!(seen.payloads, [b"one".to_vec(), b"two".to_vec()]);
    // Over 20 frames per second: a burst of 40 loses some to frame_rate, and what is taken
    // arrives in order, the refused ones as gaps.
    for _ in 0..40 {
        publisher.send(b"burst", false).await;
    }
    let refusal = publisher.refusal(TIMEOUT).await.unwrap();
    assert_eq!(refusal["name"], "frame_rate");
    let seen = watcher
        .read_until(u64::MAX, Duration::from_millis(500))
        .await;
    assert!(!seen.numbers.is_empty() && seen.numbers.len() < 40);
    assert!(seen.numbers.windows(2).all(|w| w[0] < w[1]));
}

/// A stream on a sequencer of fan-out `fanout`, joined through `members` nodes, one user each,
/// in order; each member node built by `tune(i, config)`.
async fn stream_with_members(
    fanout: u32,
    members: usize,
    tune: impl Fn(usize, &mut northstar_node::config::Config),
) -> (TestNode, Keypair, SpaceId, Vec<TestNode>) {
    let sequencer = TestNode::start_with(|c| c.fanout = fanout).await;
    let (alice, key, space) = stream_on(&sequencer, "relay").await;
    let uri = alice.space_uri(&space);
    let mut nodes = Vec::new();
    for i in 0..members {
        let node = TestNode::start_with(|c| tune(i, c)).await;
        let (client, _) = user(&node).await;
        client.join(&uri).await.unwrap();
        nodes.push(node);
    }
    (sequencer, key, space, nodes)
}

async fn info(node: &TestNode, space: &SpaceId) -> Value {
    Raw::connect(&node.url)
        .await
        .ok(method::STREAM_INFO, json!([space]))
        .await
}

fn did_of(node: &TestNode) -> String {
    node.key().did().to_string()
}

#[tokio::test]
async fn frames_flow_down_three_tiers_byte_for_byte() {
    // Fan-out 1: member i is in tier i + 1, with parents i - 1 and i - 2.
    let (sequencer, key, space, members) = stream_with_members(1, 3, |_, _| {}).await;
    let tier3 = &members[2];
    let parents = info(tier3, &space).await["parents"].clone();
    assert_eq!(parents, json!([did_of(&members[1]), did_of(&members[0])]));
    let (mut deep, _) = Watcher::open(tier3, &space, None).await;
    let (mut shallow, _) = Watcher::open(&members[0], &space, None).await;
    // The watches open the links up the tree; frames are counted once they carry some.
    let mut publisher = Publisher::open(&sequencer, &key, &space).await;
    let warm = warm_up(&mut publisher, &mut [&mut deep, &mut shallow]).await;
    let mut sent = Vec::new();
    for i in 0..200u32 {
        let payload: Vec<u8> = (0..1024u32).map(|b| (b * 7 + i) as u8).collect();
        publisher.send(&payload, i % 25 == 0).await;
        sent.push(payload);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for watcher in [&mut deep, &mut shallow] {
        let seen = watcher.read_until(warm + 200, TIMEOUT).await;
        assert_eq!(seen.numbers, (warm + 1..=warm + 200).collect::<Vec<_>>());
        assert!(seen.payloads == sent, "payloads changed on the way");
    }
    // Each node took each frame once though it heard most of them twice.
    let middle = info(&members[1], &space).await;
    assert_eq!(middle["newest"], warm + 200);
    assert_eq!(middle["children"], json!([did_of(tier3)]));
}

#[tokio::test]
async fn slow_nodes_are_placed_at_the_leaves() {
    // Member 0 joined first but declares a home DSL uplink: it goes last.
    let (sequencer, _, space, members) = stream_with_members(1, 4, |i, c| {
        c.streams.capacity_kbps = if i == 0 { 1_000 } else { 50_000 };
    })
    .await;
    // With fan-out 1 a node feeds the next two in the order: the root feeds 1 and 2.
    let root = info(&sequencer, &space).await;
    assert_eq!(
        root["children"],
        json!([did_of(&members[1]), did_of(&members[2])])
    );
    let slow = info(&members[0], &space).await;
    assert_eq!(slow["children"], json!([]), "the slow node feeds no one");
    assert_eq!(
        slow["parents"],
        json!([did_of(&members[3]), did_of(&members[2])])
    );
}

#[tokio::test]
async fn losing_an_interior_node_costs_the_other_watchers_under_a_second_of_frames() {
    // Fan-out 3 over 13 member nodes: tier 1 is members 0-2, tier 2 members 3-11, tier 3
    // member 12. Member 0 feeds 3-5 (as first parent) and 9-11 (as second).
    let (sequencer, key, space, mut members) = stream_with_members(3, 13, |_, _| {}).await;
    let mut watchers = Vec::new();
    for node in &members {
        watchers.push(Watcher::open(node, &space, None).await.0);
    }
    let mut publisher = Publisher::open(&sequencer, &key, &space).await;
    warm_up(&mut publisher, &mut watchers.iter_mut().collect::<Vec<_>>()).await;
    const RATE: u64 = 100;
    let publish = async {
        let started = Instant::now();
        for i in 0..3 * RATE {
            let due = started + Duration::from_millis(i * 1000 / RATE);
            tokio::time::sleep_until(due.into()).await;
            publisher.send(&i.to_be_bytes(), i % 10 == 0).await;
        }
        publisher.next - 1
    };
    let kill = async {
        tokio::time::sleep(Duration::from_secs(1)).await;
        members.remove(0).stop().await;
    };
    let (last, ()) = tokio::join!(publish, kill);
    watchers.remove(0);
    for (i, watcher) in watchers.iter_mut().enumerate() {
        let seen = watcher.read_until(last, TIMEOUT).await;
        assert_eq!(seen.numbers.last(), Some(&last), "member {} stopped", i + 1);
        assert!(seen.numbers.windows(2).all(|w| w[0] < w[1]));
        let missing = last - seen.numbers[0] + 1 - seen.numbers.len() as u64;
        assert!(
            missing < RATE,
            "member {} missed {missing} frames, a second is {RATE}",
            i + 1
        );
    }
}

#[tokio::test]
async fn a_refused_frame_is_never_forwarded_to_member_nodes() {
    let (sequencer, key, space, members) = stream_with_members(3, 1, |_, _| {}).await;
    let (mut watcher, _) = Watcher::open(&members[0], &space, None).await;
    let mut publisher = Publisher::open(&sequencer, &key, &space).await;
    let warm = warm_up(&mut publisher, &mut [&mut watcher]).await;
    publisher.send(b"first", true).await;
    let mut forged = publisher.frame(b"forged", false);
    let last = forged.len() - 1;
    forged[last] ^= 1;
    publisher.raw.send_binary(forged).await;
    assert_eq!(
        publisher.refusal(TIMEOUT).await.unwrap()["name"],
        "bad_signature"
    );
    publisher.next = warm + 2;
    publisher.send(b"second", false).await;
    let seen = watcher.read_until(warm + 2, TIMEOUT).await;
    assert_eq!(seen.numbers, [warm + 1, warm + 2]);
    assert_eq!(seen.payloads, [b"first".to_vec(), b"second".to_vec()]);
}

#[tokio::test]
async fn a_home_node_refuses_a_join_that_misstates_its_capacity() {
    use northstar_protocol::wire::{Home, Membership};
    let node = TestNode::start_with(|c| c.streams.capacity_kbps = 4_000).await;
    let (alice, _, space) = stream_on(&node, "cap").await;
    let bob = Keypair::generate().unwrap();
    let mut raw = Raw::connect(&node.url).await;
    raw.authenticate(&bob).await;
    let node_info = raw.ok(method::NODE_INFO, json!([])).await;
    assert_eq!(node_info["stream_capacity"], 4_000);
    let mut home = Home::new(
        serde_json::from_value(node_info["did"].clone()).unwrap(),
        node_info["authority"].as_str().unwrap(),
    );
    home.capacity = Some(100_000);
    let join = Membership::join(&bob, space.clone(), home.clone(), now_ms()).unwrap();
    let (code, message) = raw.err(method::SPACE_JOIN, json!([join])).await;
    assert_eq!(code, i64::from(ErrorCode::MalformedObject.code()));
    assert!(message.contains("4000"), "{message}");
    // Its own figure is taken, and the SDK puts it there by itself.
    home.capacity = Some(4_000);
    let join = Membership::join(&bob, space.clone(), home, now_ms()).unwrap();
    raw.ok(method::SPACE_JOIN, json!([join])).await;
    let (carol, carol_key) = user(&node).await;
    let ack = carol.join(&alice.space_uri(&space)).await.unwrap();
    let events = alice.events(&space, ack.seq - 1, 1).await.unwrap();
    let northstar_protocol::wire::Payload::Membership(join) = &events[0].payload else {
        panic!("event {} is not carol's join", ack.seq);
    };
    assert_eq!(&join.actor, carol_key.did());
    assert_eq!(join.home.as_ref().and_then(|h| h.capacity), Some(4_000));
}

#[tokio::test]
async fn an_anonymous_watcher_outlives_the_auth_deadline() {
    let (sequencer, key, space, members) = stream_with_members(3, 1, |_, c| {
        c.limits.auth_timeout_secs = 1;
    })
    .await;
    let (mut watcher, _) = Watcher::open(&members[0], &space, None).await;
    let mut publisher = Publisher::open(&sequencer, &key, &space).await;
    // Past the member's deadline: its watcher never authenticates. (Relays' upstream links are
    // watching connections of the same kind; this test does not tell them apart, since a
    // dropped link would refill from the window.)
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    for _ in 0..5 {
        publisher.send(b"still here", true).await;
    }
    let seen = watcher.read_until(5, TIMEOUT).await;
    assert_eq!(seen.numbers, [1, 2, 3, 4, 5]);
    // A connection that watches nothing is still dropped.
    let mut idle = Raw::connect(&members[0].url).await;
    assert_eq!(idle.close_status().await, None);
}

#[tokio::test]
async fn after_the_sequencer_restarts_a_new_run_of_numbers_reaches_member_nodes() {
    let (mut sequencer, key, space, members) = stream_with_members(3, 1, |_, _| {}).await;
    let (mut watcher, _) = Watcher::open(&members[0], &space, None).await;
    let mut publisher = Publisher::open(&sequencer, &key, &space).await;
    let warm = warm_up(&mut publisher, &mut [&mut watcher]).await;
    for _ in 0..20 {
        publisher.send(b"first run", true).await;
    }
    assert_eq!(
        watcher.read_until(warm + 20, TIMEOUT).await.numbers.len(),
        20
    );
    let (dir, addr) = (sequencer.data_dir.clone(), sequencer.addr);
    let storage = sequencer.storage_url.clone();
    sequencer.halt().await;
    let sequencer = TestNode::start_on(dir, storage, |c| c.listen = addr).await;
    let mut publisher = Publisher::open(&sequencer, &key, &space).await;
    assert_eq!(publisher.next, 1, "a restarted node knows no frame");
    // The member's link comes back within its backoff (at most 5 s between dials); frames flow
    // until the watcher has seen the new run's frame 10 or later, below the old run's numbers.
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        publisher.send(b"second run", true).await;
        seen.extend(
            watcher
                .read_until(u64::MAX, Duration::from_millis(50))
                .await
                .numbers,
        );
        if seen.iter().any(|n| (10..warm + 20).contains(n)) {
            break;
        }
    }
    assert!(
        seen.iter().any(|n| (10..warm + 20).contains(n)),
        "the member dropped the new run as old frames: {seen:?}"
    );
}
