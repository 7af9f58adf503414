//! Subscriptions and pages that carry the beams inline (`spec/protocol.md` §6.3.21), on real
//! nodes on 127.0.0.1 driven through the SDK and, for the wire shapes, a raw socket.
//!
//! Each post's beam comes with its event, from the backlog and live; other events carry none; a
//! `dm`'s beams reach its members only (anyone else is refused the log itself); a deleted beam
//! is never inlined; and calls without the new parameter answer exactly as before.

mod common;

use common::{Raw, TIMEOUT, TestNode};
use futures_util::StreamExt;
use northstar_protocol::address::{BeamUri, SpaceId, SpaceType};
use northstar_protocol::api::ErrorCode;
use northstar_protocol::wire::{Beam, Payload};
use northstar_protocol::{Keypair, Signed, method};
use northstar_sdk::{Client, EventWithBeam, EventWithBeamStream};
use serde_json::{Value, json};

async fn user(node: &TestNode) -> (Keypair, Client) {
    let key = Keypair::generate().unwrap();
    let client = Client::connect(&node.url, key.clone()).await.unwrap();
    (key, client)
}

async fn channel(client: &Client, name: &str) -> SpaceId {
    client
        .create_space(SpaceType::Channel, name, name)
        .await
        .unwrap()
        .space
}

/// The next `n` items of `stream`, each within the timeout.
async fn take(stream: &mut EventWithBeamStream, n: usize) -> Vec<EventWithBeam> {
    let mut items = Vec::new();
    while items.len() < n {
        let item = tokio::time::timeout(TIMEOUT, stream.next())
            .await
            .expect("the stream stalled")
            .expect("the stream ended")
            .expect("the stream failed");
        items.push(item);
    }
    items
}

/// The title of the beam an item carries, or `None`.
fn title(item: &EventWithBeam) -> Option<&str> {
    item.beam.as_ref().map(|b: &Beam| b.title.as_str())
}

/// The next `space.event` notification's `result` on a raw connection.
async fn notified(raw: &mut Raw) -> Value {
    loop {
        let msg = tokio::time::timeout(TIMEOUT, raw.recv())
            .await
            .expect("no notification in time")
            .expect("the connection closed");
        if msg["method"] == json!(method::SPACE_EVENT) {
            return msg["params"]["result"].clone();
        }
    }
}

#[tokio::test]
async fn a_subscription_with_beams_carries_each_posts_beam_from_the_backlog_and_live() {
    let node = TestNode::start().await;
    let (_, alice) = user(&node).await;
    let (_, bob) = user(&node).await;
    let space = channel(&alice, "general").await;
    alice.post(&space, "one", "first body").await.unwrap();

    let mut stream = bob.subscribe_with_beams(&space, 0).await.unwrap();
    let backlog = take(&mut stream, 2).await;
    assert_eq!(backlog[0].event.seq, 1);
    assert_eq!(title(&backlog[0]), None, "the genesis names no beam");
    assert_eq!(title(&backlog[1]), Some("one"), "from the backlog");
    assert_eq!(backlog[1].beam.as_ref().unwrap().body, "first body");

    // Live: a post after the subscription caught up, and a membership event between.
    alice.post(&space, "two", "second body").await.unwrap();
    let (_, carol) = user(&node).await;
    carol.join(&space).await.unwrap();
    let live = take(&mut stream, 2).await;
    assert_eq!(title(&live[0]), Some("two"), "live, from the writer");
    let Payload::BeamRef(r) = &live[0].event.payload else {
        panic!("a post's event is a beam_ref");
    };
    assert_eq!(live[0].beam.as_ref().unwrap().content_id().unwrap(), r.beam);
    assert_eq!(live[1].event.payload.kind(), "join");
    assert_eq!(title(&live[1]), None);
}

#[tokio::test]
async fn every_live_subscriber_with_beams_gets_the_same_item_and_plain_ones_the_bare_event() {
    let node = TestNode::start().await;
    let (owner_key, owner) = user(&node).await;
    let space = channel(&owner, "wire").await;
    let mut with_beams = Vec::new();
    for _ in 0..3 {
        let mut raw = Raw::connect(&node.url).await;
        raw.ok(method::SPACE_SUBSCRIBE, json!([space.as_str(), 1, true]))
            .await;
        with_beams.push(raw);
    }
    let mut named = Raw::connect(&node.url).await;
    named
        .ok(
            method::SPACE_SUBSCRIBE,
            json!({"space": space.as_str(), "since": 1, "beams": true}),
        )
        .await;
    // The old call, and the new parameter given as absent in both ways.
    let mut plain = Raw::connect(&node.url).await;
    plain
        .ok(method::SPACE_SUBSCRIBE, json!([space.as_str(), 1]))
        .await;
    let mut null = Raw::connect(&node.url).await;
    null.ok(method::SPACE_SUBSCRIBE, json!([space.as_str(), 1, null]))
        .await;
    let mut off = Raw::connect(&node.url).await;
    off.ok(method::SPACE_SUBSCRIBE, json!([space.as_str(), 1, false]))
        .await;

    owner.post(&space, "hello", "world").await.unwrap();
    let beam = owner
        .list_beams(owner_key.did(), 0, 1)
        .await
        .unwrap()
        .remove(0);
    let event = owner.events(&space, 1, 1).await.unwrap().remove(0);
    let expected = json!({
        "event": serde_json::to_value(&event).unwrap(),
        "beam": serde_json::to_value(&beam).unwrap(),
    });
    for raw in with_beams.iter_mut().chain([&mut named]) {
        assert_eq!(notified(raw).await, expected);
    }
    for raw in [&mut plain, &mut null, &mut off] {
        let result = notified(raw).await;
        assert_eq!(result, serde_json::to_value(&event).unwrap());
        assert!(result.get("beam").is_none() && result.get("event").is_none());
    }
    // A parameter of the wrong type is refused as one.
    let mut bad = Raw::connect(&node.url).await;
    let (code, _) = bad
        .err(method::SPACE_SUBSCRIBE, json!([space.as_str(), 1, "yes"]))
        .await;
    assert_eq!(code, -32602);
}

#[tokio::test]
async fn pages_with_beams_carry_each_beam_once_and_old_pages_are_unchanged() {
    let node = TestNode::start().await;
    let (_, alice) = user(&node).await;
    let space = channel(&alice, "pages").await;
    for n in 1..=3 {
        alice
            .post(&space, &format!("post {n}"), "body")
            .await
            .unwrap();
    }
    let items = alice.events_with_beams(&space, 0, 10).await.unwrap();
    let titles: Vec<_> = items.iter().map(title).collect();
    assert_eq!(
        titles,
        vec![None, Some("post 1"), Some("post 2"), Some("post 3")]
    );
    // A page cut short still pairs what it carries.
    let items = alice.events_with_beams(&space, 2, 1).await.unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(title(&items[0]), Some("post 2"));

    let mut raw = Raw::connect(&node.url).await;
    let plain = raw
        .ok(method::SPACE_EVENTS, json!([space.as_str(), 0, 10]))
        .await;
    assert_eq!(
        plain.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["events", "head_seq"],
        "the old call's page has exactly the old members"
    );
    for absent in [json!(null), json!(false)] {
        let page = raw
            .ok(method::SPACE_EVENTS, json!([space.as_str(), 0, 10, absent]))
            .await;
        assert_eq!(page, plain);
    }
    let with = raw
        .ok(method::SPACE_EVENTS, json!([space.as_str(), 0, 10, true]))
        .await;
    assert_eq!(with["events"], plain["events"], "the events are the same");
    assert_eq!(with["beams"].as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn a_deleted_beam_is_not_inlined() {
    let node = TestNode::start().await;
    let (_, alice) = user(&node).await;
    let space = channel(&alice, "deleting").await;
    let kept = alice.post(&space, "kept", "stays").await.unwrap();
    let gone = alice.post(&space, "gone", "deleted").await.unwrap();
    let mut live = alice.subscribe_with_beams(&space, 0).await.unwrap();
    let before = take(&mut live, 3).await;
    assert_eq!(title(&before[2]), Some("gone"), "inlined while it exists");

    alice
        .delete_beam(&BeamUri::parse(&gone.beam_uri).unwrap())
        .await
        .unwrap();
    let after = take(&mut live, 1).await;
    assert_eq!(after[0].event.payload.kind(), "tombstone");
    assert_eq!(title(&after[0]), None);

    let items = alice.events_with_beams(&space, 0, 10).await.unwrap();
    let by_seq: Vec<_> = items.iter().map(|i| (i.event.seq, title(i))).collect();
    assert_eq!(
        by_seq,
        vec![
            (1, None),
            (kept.seq, Some("kept")),
            (gone.seq, None),
            (gone.seq + 1, None)
        ]
    );
    let mut again = alice.subscribe_with_beams(&space, 0).await.unwrap();
    let replayed = take(&mut again, 4).await;
    assert_eq!(title(&replayed[1]), Some("kept"));
    assert_eq!(
        title(&replayed[2]),
        None,
        "the backlog leaves the deleted beam out"
    );
    // The client's fallback says why.
    let err = alice
        .get_beam(&BeamUri::parse(&gone.beam_uri).unwrap())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::BeamNotFound));
}

#[tokio::test]
async fn a_dms_inline_beams_reach_its_members_and_no_one_else() {
    let node = TestNode::start().await;
    let (_, alice) = user(&node).await;
    let (bob_key, bob) = user(&node).await;
    let (_, carol) = user(&node).await;
    let anonymous = Client::connect_anonymous(&node.url).await.unwrap();
    let dm = alice
        .create_space(SpaceType::Dm, "secret", "Secret")
        .await
        .unwrap()
        .space;
    alice.invite(&dm, bob_key.did()).await.unwrap();
    bob.join(&dm).await.unwrap();
    let mut bobs = bob.subscribe_with_beams(&dm, 0).await.unwrap();
    alice.post(&dm, "for bob", "only").await.unwrap();

    let seen = take(&mut bobs, 4).await;
    assert_eq!(title(&seen[3]), Some("for bob"), "a member gets it live");
    let page = bob.events_with_beams(&dm, 0, 10).await.unwrap();
    assert_eq!(title(&page[3]), Some("for bob"), "and in a page");

    for outsider in [&carol, &anonymous] {
        let err = outsider.events_with_beams(&dm, 0, 10).await.unwrap_err();
        assert_eq!(err.code(), Some(ErrorCode::NotMember), "{err}");
        let err = outsider.subscribe_with_beams(&dm, 0).await.unwrap_err();
        assert_eq!(err.code(), Some(ErrorCode::NotMember), "{err}");
    }
    // Nor by a raw call that skips the SDK.
    let mut raw = Raw::connect(&node.url).await;
    let (code, _) = raw
        .err(method::SPACE_EVENTS, json!([dm.as_str(), 0, 10, true]))
        .await;
    assert_eq!(code, i64::from(ErrorCode::NotMember.code()));
    let (code, _) = raw
        .err(method::SPACE_SUBSCRIBE, json!([dm.as_str(), 0, true]))
        .await;
    assert_eq!(code, i64::from(ErrorCode::NotMember.code()));

    // Bob leaves: his subscription ends after his leave, and the page is his no more.
    bob.leave(&dm).await.unwrap();
    let leave = take(&mut bobs, 1).await;
    assert_eq!(leave[0].event.payload.kind(), "leave");
    // The node ends it with `not_member`, and subscribing again is refused the same way.
    let ended = tokio::time::timeout(TIMEOUT, bobs.next())
        .await
        .expect("the end came in time")
        .expect("one error before the end")
        .unwrap_err();
    assert_eq!(ended.code(), Some(ErrorCode::NotMember), "{ended}");
    let err = bob.events_with_beams(&dm, 0, 10).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::NotMember));
}

#[tokio::test]
async fn a_replicated_event_carries_the_beam_its_node_holds_and_no_other() {
    // Bob's home node replicates Alice's channel; his post is stored on his node and its ref is
    // sequenced on Alice's, then pushed back. Live on Bob's node the event arrives without its
    // beam and the node looks it up once; on Alice's node the beam is elsewhere and not cached.
    let (a, b) = (TestNode::start().await, TestNode::start().await);
    let (_, alice) = user(&a).await;
    let (_, bob) = user(&b).await;
    let space = channel(&alice, "federated").await;
    bob.join(&alice.space_uri(&space)).await.unwrap();
    let mut on_b = bob.subscribe_with_beams(&space, 2).await.unwrap();
    let mut on_a = alice.subscribe_with_beams(&space, 2).await.unwrap();
    let posted = bob.post(&space, "from b", "hello").await.unwrap();

    let got = take(&mut on_b, 1).await;
    assert_eq!(got[0].event.seq, posted.seq);
    assert_eq!(
        title(&got[0]),
        Some("from b"),
        "looked up on the node that stores it"
    );
    let page = bob.events_with_beams(&space, 2, 10).await.unwrap();
    assert_eq!(title(&page[0]), Some("from b"));

    let got = take(&mut on_a, 1).await;
    assert_eq!(title(&got[0]), None, "not held on the sequencer's node");
    let page = alice.events_with_beams(&space, 2, 10).await.unwrap();
    assert_eq!(title(&page[0]), None);
    // The client's fallback fetches it there.
    let fetched = alice
        .get_beam(&BeamUri::parse(&posted.beam_uri).unwrap())
        .await
        .unwrap();
    assert_eq!(fetched.title, "from b");
}
