//! Edges of the spec that an independent implementation asked about, each against a real node
//! over a raw WebSocket: a challenge that expires before it is issued, a join naming the wrong
//! sequencer for a space the node holds, a subscription from past the head, and a `fed.push`
//! over its count limit while still within the message limit.

mod common;

use common::{Raw, TestNode};
use northstar_protocol::address::{SpaceId, SpaceType};
use northstar_protocol::api::ErrorCode;
use northstar_protocol::wire::{AuthChallenge, Event, Home, Membership, Payload, Tombstone};
use northstar_protocol::{ContentId, Keypair, method};
use northstar_sdk::Client;
use serde_json::json;

const T: u64 = 1_767_225_600_000;

fn app(c: ErrorCode) -> i64 {
    i64::from(c.code())
}

async fn authenticated(node: &TestNode, key: &Keypair) -> Raw {
    let mut raw = Raw::connect(&node.url).await;
    raw.authenticate(key).await;
    raw
}

#[tokio::test]
async fn fed_prove_refuses_a_challenge_that_expires_before_it_was_issued() {
    let node = TestNode::start().await;
    let peer = Keypair::generate().unwrap();
    let mut raw = authenticated(&node, &peer).await;
    let origin = "ws://peer.example:7700";
    let stale = AuthChallenge::issue(&peer, origin, T, T).unwrap();
    let (got, message) = raw.err(method::FED_PROVE, json!([stale])).await;
    assert_eq!(got, app(ErrorCode::MalformedObject), "{message}");
    assert!(message.contains("expires_at"), "{message}");
    let fine = AuthChallenge::issue(&peer, origin, T, T + 30_000).unwrap();
    raw.ok(method::FED_PROVE, json!([fine])).await;
}

#[tokio::test]
async fn a_join_naming_another_sequencer_for_a_space_held_here_is_refused() {
    let node = TestNode::start().await;
    let alice = Client::connect(&node.url, Keypair::generate().unwrap())
        .await
        .unwrap();
    let space = alice
        .create_space(SpaceType::Channel, "here", "Here")
        .await
        .unwrap()
        .space;
    let bob = Keypair::generate().unwrap();
    let mut raw = authenticated(&node, &bob).await;
    let info = raw.ok(method::NODE_INFO, json!([])).await;
    let home = Home::new(
        serde_json::from_value(info["did"].clone()).unwrap(),
        info["authority"].as_str().unwrap().to_owned(),
    );
    let join = Membership::join(&bob, space.clone(), home.clone(), T).unwrap();
    let (got, message) = raw
        .err(method::SPACE_JOIN, json!([join, "elsewhere.example:7700"]))
        .await;
    assert_eq!(got, app(ErrorCode::MalformedObject), "{message}");
    assert!(message.contains("elsewhere.example:7700"), "{message}");
    // Naming the space's own sequencer, or none, joins.
    let ack = raw
        .ok(method::SPACE_JOIN, json!([join, home.authority]))
        .await;
    assert_eq!(ack["seq"], 2);
}

#[tokio::test]
async fn a_subscription_from_past_the_head_starts_once_the_log_gets_there() {
    let node = TestNode::start().await;
    let alice = Client::connect(&node.url, Keypair::generate().unwrap())
        .await
        .unwrap();
    let space: SpaceId = alice
        .create_space(SpaceType::Channel, "ahead", "Ahead")
        .await
        .unwrap()
        .space;
    let mut raw = Raw::connect(&node.url).await;
    // The head is 1; a client that saw up to 3 elsewhere (a replica lags) resumes from 3.
    let subscription = raw
        .ok(method::SPACE_SUBSCRIBE, json!([space.as_str(), 3]))
        .await;
    for i in 0..3 {
        alice.post(&space, &format!("p{i}"), "x").await.unwrap();
    }
    let note = raw.recv().await.expect("a notification");
    assert_eq!(note["method"], method::SPACE_EVENT);
    assert_eq!(note["params"]["subscription"], subscription);
    assert_eq!(
        note["params"]["result"]["seq"], 4,
        "events up to `since` are never sent: {note}"
    );
}

#[tokio::test]
async fn a_push_over_the_count_limit_is_too_large_within_the_message_limit() {
    let node = TestNode::start().await;
    let rogue = Keypair::generate().unwrap();
    let mut raw = authenticated(&node, &rogue).await;
    let space = SpaceId::new(SpaceType::Dm, rogue.did(), "x").unwrap();
    let tombstone = Tombstone::create(&rogue, ContentId::of(b"b"), T).unwrap();
    let events: Vec<Event> = (1..=65)
        .map(|seq| {
            Event::sequence(
                &rogue,
                space.clone(),
                seq + 1,
                Some(ContentId::of(b"prev")),
                T,
                Payload::Tombstone(tombstone.clone()),
            )
            .unwrap()
        })
        .collect();
    let request = json!([events[..65]]);
    assert!(
        request.to_string().len() < 131_072 - 4096,
        "the push must fit the default message limit"
    );
    let (got, message) = raw.err(method::FED_PUSH, request).await;
    assert_eq!(got, app(ErrorCode::TooLarge), "{message}");
    // 64 is allowed: events of a space the node does not hold are ignored.
    assert_eq!(
        raw.ok(method::FED_PUSH, json!([events[..64]])).await,
        json!(0)
    );
}
