//! The browser SDK's exports against the spec vectors and against objects made by the
//! protocol crate, as a JavaScript caller would use them. The file runs natively
//! (`cargo test -p northstar-web`) and inside the WebAssembly build, under wasm-bindgen-test's
//! runner in Node.js (`cargo test -p northstar-web --target wasm32-unknown-unknown`); the
//! vectors are compiled in, since a WebAssembly test has no file system.

use northstar_protocol::address::{BeamPath, SpaceId};
use northstar_protocol::canonical;
use northstar_protocol::wire::{
    AuthChallenge, AuthResponse, Beam, BeamRef, Event, Membership, MembershipAction, Payload,
    Tombstone,
};
use northstar_protocol::{ContentId, Keypair};
use northstar_web::{Identity, LogChecker, verify_beam, verify_event};
use serde_json::Value;

const NORTHSTAR: &str = include_str!("../../spec/vectors/northstar.json");
const NOW: u64 = 1_767_225_600_000;

fn vectors() -> Value {
    serde_json::from_str(NORTHSTAR).unwrap()
}

fn key(name: &str) -> Keypair {
    let v = vectors();
    let entry = v["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["name"] == name)
        .unwrap();
    let seed = hex::decode(entry["seed_hex"].as_str().unwrap()).unwrap();
    Keypair::from_seed(&seed.try_into().unwrap())
}

/// The vector log's events, in order, as JSON text, with their content ids.
fn vector_log() -> Vec<(String, String)> {
    let v = vectors();
    let events: Vec<_> = v["signed"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["kind"] == "event")
        .map(|s| {
            (
                s["object"].to_string(),
                s["content_id"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(events.len(), 5, "the vector log has five events");
    events
}

fn event(text: &str) -> Event {
    canonical::from_str_strict(text).unwrap()
}

fn sequencer() -> String {
    key("node").did().to_string()
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn vector_events_verify_under_their_sequencer() {
    for (text, id) in vector_log() {
        assert_eq!(verify_event(&text, &sequencer()).unwrap(), id);
    }
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn rejects_a_tampered_event_or_another_sequencer() {
    let (text, _) = &vector_log()[1];
    let mut tampered = event(text);
    tampered.timestamp += 1;
    let tampered = serde_json::to_string(&tampered).unwrap();
    let message = verify_event(&tampered, &sequencer()).unwrap_err().message();
    assert!(
        message.starts_with("event 2 fails verification: bad ")
            && message.contains(&format!("signature by {}", sequencer())),
        "{message}"
    );

    let alice = key("alice").did().to_string();
    let message = verify_event(text, &alice).unwrap_err().message();
    assert!(
        message.contains(&format!("signature by {alice}")),
        "{message}"
    );

    let v = vectors();
    for case in v["signed_invalid"].as_array().unwrap() {
        if case["kind"] != "event" {
            continue;
        }
        let text = case["object_text"].as_str().unwrap();
        assert!(
            verify_event(text, &sequencer()).is_err(),
            "{} verified",
            case["name"]
        );
    }
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn log_checker_follows_the_vector_log() {
    let log = vector_log();
    let space = event(&log[0].0).space.to_string();
    let mut checker = LogChecker::new(&space, &sequencer()).unwrap();
    for (text, _) in &log {
        assert_eq!(checker.push(text).unwrap(), "next");
    }
    let last = log.len() - 1;
    assert_eq!(checker.head(), log.len() as f64);
    assert_eq!(checker.head_id().as_deref(), Some(log[last].1.as_str()));
    assert_eq!(checker.push(&log[last].0).unwrap(), "seen");
    assert_eq!(checker.push(&log[1].0).unwrap(), "seen");

    let mut from_genesis = LogChecker::from_genesis(&log[0].0).unwrap();
    assert_eq!(from_genesis.sequencer(), sequencer());
    assert_eq!(from_genesis.push(&log[1].0).unwrap(), "next");
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn log_checker_rejects_a_gap_a_fork_and_a_broken_link() {
    let log = vector_log();
    let node = key("node");
    let space = event(&log[0].0).space.clone();
    let mut checker = LogChecker::new(space.as_str(), &sequencer()).unwrap();
    checker.push(&log[0].0).unwrap();

    let message = checker.push(&log[2].0).unwrap_err().message();
    assert_eq!(
        message,
        format!("gap in the log of {space}: expected event 2, got event 3")
    );
    assert_eq!(
        checker.head(),
        1.0,
        "a refused event does not move the checker"
    );

    checker.push(&log[1].0).unwrap();
    // Another event 2, validly signed by the sequencer: a fork.
    let held = event(&log[1].0);
    let rival = resequence(&node, &held, held.prev, held.timestamp + 1);
    let message = checker.push(&rival).unwrap_err().message();
    assert!(message.starts_with("fork at seq 2: "), "{message}");

    // Event 3 validly signed but naming another event than 2 as its prev.
    let third = event(&log[2].0);
    let elsewhere = Some(ContentId::of(b"not event 2"));
    let broken = resequence(&node, &third, elsewhere, third.timestamp);
    let message = checker.push(&broken).unwrap_err().message();
    assert_eq!(message, "event 3 does not link to event 2");
    assert_eq!(checker.push(&log[2].0).unwrap(), "next");

    let other = LogChecker::new(space.as_str(), &key("alice").did().to_string());
    let message = other.unwrap().push(&log[0].0).unwrap_err().message();
    assert!(
        message.starts_with("event 1 fails verification: "),
        "{message}"
    );
}

fn resequence(node: &Keypair, event: &Event, prev: Option<ContentId>, timestamp: u64) -> String {
    let again = Event::sequence(
        node,
        event.space.clone(),
        event.seq,
        prev,
        timestamp,
        event.payload.clone(),
    )
    .unwrap();
    serde_json::to_string(&again).unwrap()
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn identity_round_trips_through_its_secret() {
    let identity = Identity::generate().unwrap();
    let secret = identity.secret();
    assert_eq!(secret.len(), 32);
    let again = Identity::from_secret(&secret).unwrap();
    assert_eq!(again.did(), identity.did());
    let hex = Identity::from_secret_hex(&identity.secret_hex()).unwrap();
    assert_eq!(hex.did(), identity.did());
    assert_ne!(Identity::generate().unwrap().did(), identity.did());

    let alice = Identity::from_secret_hex(&"01".repeat(32)).unwrap();
    assert_eq!(alice.did(), key("alice").did().to_string());
    let message = Identity::from_secret(&[1; 31]).unwrap_err().message();
    assert_eq!(message, "bad secret: expected 32 bytes, got 31");
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn answers_a_challenge_after_checking_it() {
    let node = key("node");
    let origin = "ws://127.0.0.1:7700";
    let challenge = AuthChallenge::issue(&node, origin, NOW, NOW + 60_000).unwrap();
    let text = serde_json::to_string(&challenge).unwrap();
    let alice = Identity::from_secret_hex(&"01".repeat(32)).unwrap();
    let now = NOW as f64 + 1.0;

    let answer = alice
        .answer_challenge(&text, "WS://127.0.0.1:7700", &sequencer(), now)
        .unwrap();
    let response: AuthResponse = canonical::from_str_strict(&answer).unwrap();
    response.verify().unwrap();
    assert_eq!(response.did.to_string(), alice.did());
    assert_eq!(response.challenge, challenge);

    let refused = |origin: &str, node: &str, now: f64| {
        alice
            .answer_challenge(&text, origin, node, now)
            .unwrap_err()
            .message()
    };
    assert!(refused("ws://127.0.0.1:7701", &sequencer(), now).ends_with("refusing to sign"));
    let bob = key("bob").did().to_string();
    assert!(refused(origin, &bob, now).starts_with("the challenge comes from node"));
    assert!(refused(origin, &sequencer(), (NOW + 60_000) as f64).contains("expired"));
    assert!(refused(origin, &sequencer(), 0.5).starts_with("bad now: "));

    let mut forged = challenge.clone();
    forged.expires_at += 1;
    let forged = serde_json::to_string(&forged).unwrap();
    let message = alice
        .answer_challenge(&forged, origin, &sequencer(), now)
        .unwrap_err()
        .message();
    assert!(message.contains("is not validly signed by"), "{message}");
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn signs_a_post_that_verifies_as_a_beam() {
    let alice = Identity::from_secret_hex(&"01".repeat(32)).unwrap();
    let space = SpaceId::parse(&format!("channel/{}/general", &alice.did()[8..])).unwrap();
    let post = alice
        .post(
            space.as_str(),
            "alice.example",
            "Hello",
            "First post",
            NOW as f64,
        )
        .unwrap();
    let post: Value = serde_json::from_str(&post).unwrap();
    let beam: Beam = serde_json::from_value(post["beam"].clone()).unwrap();
    let beam_ref: BeamRef = serde_json::from_value(post["beam_ref"].clone()).unwrap();
    beam.verify().unwrap();
    beam_ref.verify().unwrap();
    assert_eq!(beam_ref.space, space);

    let path = beam.path().unwrap();
    let beam_text = post["beam"].to_string();
    assert_eq!(
        verify_beam(&beam_text, &path.to_string()).unwrap(),
        path.beam.to_string()
    );
    let elsewhere = BeamPath::new(key("bob").did(), path.beam);
    let message = verify_beam(&beam_text, &elsewhere.to_string())
        .unwrap_err()
        .message();
    assert!(message.starts_with("asked for beam "), "{message}");
    let mut edited = beam.clone();
    edited.body.push('!');
    let edited = serde_json::to_string(&edited).unwrap();
    let message = verify_beam(&edited, &path.to_string())
        .unwrap_err()
        .message();
    assert!(
        message.contains("is not validly signed by its author"),
        "{message}"
    );

    let tombstone = alice
        .tombstone(&path.beam.to_string(), NOW as f64 + 5.0)
        .unwrap();
    let tombstone: Tombstone = canonical::from_str_strict(&tombstone).unwrap();
    tombstone.verify().unwrap();
    assert_eq!(tombstone.beam, path.beam);
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn signs_membership_requests() {
    let bob = Identity::from_secret_hex(&"02".repeat(32)).unwrap();
    let log = vector_log();
    let space = event(&log[0].0).space.to_string();
    let join = bob
        .join(&space, &sequencer(), "node.example:7700", NOW as f64)
        .unwrap();
    let join: Membership = canonical::from_str_strict(&join).unwrap();
    join.verify().unwrap();
    join.check_rules().unwrap();
    assert_eq!(join.action, MembershipAction::Join);
    assert_eq!(join.home.unwrap().node.to_string(), sequencer());

    let leave = bob
        .membership(&space, "leave", &bob.did(), NOW as f64)
        .unwrap();
    let leave: Membership = canonical::from_str_strict(&leave).unwrap();
    leave.verify().unwrap();
    assert_eq!(leave.action, MembershipAction::Leave);

    let alice = key("alice").did().to_string();
    assert!(bob.membership(&space, "leave", &alice, NOW as f64).is_err());
    assert!(
        bob.membership(&space, "join", &bob.did(), NOW as f64)
            .is_err()
    );

    // The vector log's join is bob's, in the same shape.
    let Payload::Membership(vector) = event(&log[1].0).payload else {
        panic!("event 2 of the vector log is a join");
    };
    assert_eq!(vector.actor.to_string(), bob.did());
}

/// A failure reaches JavaScript as an `Error` carrying the whole message.
#[cfg(target_arch = "wasm32")]
#[wasm_bindgen_test::wasm_bindgen_test]
fn errors_reach_javascript_as_error_objects() {
    use wasm_bindgen::JsCast;
    let error = verify_event("{", &sequencer()).unwrap_err();
    let message = error.message();
    let value: wasm_bindgen::JsValue = error.into();
    let error = value.dyn_into::<js_sys::Error>().unwrap();
    assert_eq!(String::from(error.message()), message);
    assert!(message.starts_with("malformed event: "), "{message}");
    // What a node sent failed: an app tells this from its own mistakes by `kind`.
    let kind = js_sys::Reflect::get(&error, &"kind".into()).unwrap();
    assert_eq!(kind.as_string().as_deref(), Some("verification"));

    let error: wasm_bindgen::JsValue = Identity::from_secret_hex("00").unwrap_err().into();
    let kind = js_sys::Reflect::get(&error, &"kind".into()).unwrap();
    assert_eq!(kind.as_string().as_deref(), Some("argument"));
}
