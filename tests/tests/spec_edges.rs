//! Edges of the spec that an independent implementation asked about, each against a real node
//! over a raw WebSocket: a challenge that expires before it is issued, a join naming the wrong
//! sequencer for a space the node holds, a subscription from past the head, and a `fed.push`
//! over its count limit while still within the message limit, and a post checked under its
//! one signature.

mod common;

use common::{Raw, TestNode};
use northstar_protocol::address::{SpaceId, SpaceType};
use northstar_protocol::api::ErrorCode;
use northstar_protocol::sign::Signature;
use northstar_protocol::wire::{
    AuthChallenge, Beam, BeamRef, Event, Home, Membership, Payload, Tombstone,
};
use northstar_protocol::{ContentId, Keypair, Signed, method};
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

/// `space.post` checks a post under its one signature (§4.5, §6.3.12): a beam and ref signed
/// together pass on one check, and a beam that does not carry the ref's signature of the same
/// message is checked on its own, so a valid ref never carries a beam its author did not sign.
#[tokio::test]
async fn a_post_is_checked_under_its_one_signature_and_a_beam_signed_apart_on_its_own() {
    let node = TestNode::start().await;
    let key = Keypair::generate().unwrap();
    let alice = Client::connect(&node.url, key.clone()).await.unwrap();
    let space = alice
        .create_space(SpaceType::Channel, "posts", "Posts")
        .await
        .unwrap()
        .space;
    let mut raw = authenticated(&node, &key).await;
    let info = raw.ok(method::NODE_INFO, json!([])).await;
    let home = info["authority"].as_str().unwrap().to_owned();
    let post = |title: &str| Beam::post(&key, space.clone(), &home, title, "body", T).unwrap();

    // Signed together: accepted.
    let (beam, beam_ref) = post("together");
    assert_eq!(beam.sig, beam_ref.sig);
    raw.ok(method::SPACE_POST, json!([beam, beam_ref])).await;

    // The one signature broken in both: refused.
    let (mut beam, mut beam_ref) = post("flipped");
    let mut bytes = beam.sig.to_bytes();
    bytes[40] ^= 0x01;
    beam.sig = Signature::from_bytes(bytes);
    beam_ref.sig = beam.sig;
    let (got, message) = raw.err(method::SPACE_POST, json!([beam, beam_ref])).await;
    assert_eq!(got, app(ErrorCode::BadSignature), "{message}");

    // A valid ref, and a beam carrying another valid signature of the author's (a ref of
    // another post) in place of its own: the beam is checked alone, and refused.
    let (beam, _) = post("apart");
    let (_, other_ref) = post("another");
    let beam_ref = BeamRef::create(
        &key,
        space.clone(),
        beam.content_id().unwrap(),
        &home,
        T + 1,
    )
    .unwrap();
    assert_ne!(beam_ref.sig, beam.sig, "a ref signed apart from the beam");
    let mut forged = beam.clone();
    forged.sig = other_ref.sig;
    let (got, message) = raw.err(method::SPACE_POST, json!([forged, beam_ref])).await;
    assert_eq!(got, app(ErrorCode::BadSignature), "{message}");
    assert!(message.contains("beam"), "{message}");

    // The same beam with its own signature, beside that separately signed ref: accepted.
    let ack = raw.ok(method::SPACE_POST, json!([beam, beam_ref])).await;
    assert_eq!(
        ack["seq"], 3,
        "the genesis, the first post, this one: {ack}"
    );

    // A beam that names another ref than the one it came with, keeping the ref's signature:
    // its own check fails.
    let (mut beam, beam_ref) = post("renamed");
    beam.posted_with = ContentId::of(b"another ref");
    let (got, message) = raw.err(method::SPACE_POST, json!([beam, beam_ref])).await;
    assert_eq!(got, app(ErrorCode::BadSignature), "{message}");
    let events = raw
        .ok(method::SPACE_EVENTS, json!([space.as_str(), 0, 10]))
        .await;
    assert_eq!(events["events"].as_array().unwrap().len(), 3, "{events}");
}
