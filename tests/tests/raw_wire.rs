//! The node spoken to directly over WebSocket: the auth handshake's every failure, and bad input
//! that must get a JSON-RPC error or a clean close while the node keeps serving others.

mod common;

use common::{Raw, TestNode};
use northstar_protocol::Keypair;
use northstar_protocol::api::ErrorCode;
use northstar_protocol::wire::{AuthChallenge, AuthResponse};
use serde_json::{Value, json};

fn challenge(value: Value) -> AuthChallenge {
    serde_json::from_value(value).unwrap()
}

fn answer(key: &Keypair, value: Value) -> Value {
    serde_json::to_value(AuthResponse::answer(key, challenge(value)).unwrap()).unwrap()
}

fn code(c: ErrorCode) -> i64 {
    i64::from(c.code())
}

#[tokio::test]
async fn a_client_authenticates_and_acts_as_its_did() {
    let node = TestNode::start().await;
    let mut raw = Raw::connect(&node.url).await;
    let info = raw.ok("node.info", json!([])).await;
    assert_eq!(info["public_url"], json!(node.url));
    let alice = Keypair::generate().unwrap();
    // Before auth, user methods are refused.
    assert_eq!(
        raw.err("space.list", json!([])).await.0,
        code(ErrorCode::AuthRequired)
    );
    let c = raw.ok("auth.challenge", json!([])).await;
    assert_eq!(c["node"], info["did"]);
    assert_eq!(c["origin"], json!(node.url));
    let done = raw.ok("auth.respond", json!([answer(&alice, c)])).await;
    assert_eq!(done["did"], json!(alice.did().as_str()));
    assert_eq!(raw.ok("space.list", json!([])).await, json!([]));
}

#[tokio::test]
async fn every_bad_response_is_refused_with_its_own_code() {
    let node = TestNode::start().await;
    let alice = Keypair::generate().unwrap();

    // Replayed: the same response twice on one connection.
    let mut raw = Raw::connect(&node.url).await;
    let c = raw.ok("auth.challenge", json!([])).await;
    let response = answer(&alice, c);
    raw.ok("auth.respond", json!([response.clone()])).await;
    assert_eq!(
        raw.err("auth.respond", json!([response])).await.0,
        code(ErrorCode::NonceReused)
    );

    // Foreign: a challenge issued to one connection, answered on another.
    let mut first = Raw::connect(&node.url).await;
    let mut second = Raw::connect(&node.url).await;
    let c = first.ok("auth.challenge", json!([])).await;
    assert_eq!(
        second
            .err("auth.respond", json!([answer(&alice, c)]))
            .await
            .0,
        code(ErrorCode::NonceForeign)
    );

    // Bad signature: a response whose signature is not the client's.
    let c = second.ok("auth.challenge", json!([])).await;
    let mut forged = answer(&alice, c);
    forged["did"] = json!(Keypair::generate().unwrap().did().as_str());
    assert_eq!(
        second.err("auth.respond", json!([forged])).await.0,
        code(ErrorCode::BadSignature)
    );

    // Malformed DID: refused while decoding the parameters.
    let c = second.ok("auth.challenge", json!([])).await;
    let mut malformed = answer(&alice, c);
    malformed["did"] = json!("did:key:zNotAKey");
    let (got, message) = second.err("auth.respond", json!([malformed])).await;
    assert_eq!(got, -32602, "{message}");
    assert!(
        message.contains("base58") || message.contains("multicodec"),
        "{message}"
    );

    // Wrong node: a challenge signed by another node.
    let other = TestNode::start().await;
    let mut elsewhere = Raw::connect(&other.url).await;
    let c = elsewhere.ok("auth.challenge", json!([])).await;
    assert_eq!(
        second
            .err("auth.respond", json!([answer(&alice, c)]))
            .await
            .0,
        code(ErrorCode::WrongNode)
    );
}

#[tokio::test]
async fn a_challenge_for_another_origin_or_past_its_expiry_is_refused() {
    let node = TestNode::start_with(|c| c.limits.challenge_ttl_secs = 1).await;
    let alice = Keypair::generate().unwrap();
    // A second node with the same key but another public origin signs challenges this node
    // would accept as its own, except for the origin.
    let twin_dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        node.data_dir.join(northstar_node::NODE_KEY_FILE),
        twin_dir.path().join(northstar_node::NODE_KEY_FILE),
    )
    .unwrap();
    let twin = TestNode::start_in(twin_dir.path().to_path_buf(), |c| {
        c.public_url = "wss://elsewhere.example".into();
    })
    .await;
    let mut at_twin = Raw::connect(&format!("ws://{}", twin.addr)).await;
    let c = at_twin.ok("auth.challenge", json!([])).await;
    assert_eq!(c["origin"], json!("wss://elsewhere.example"));
    let mut raw = Raw::connect(&node.url).await;
    assert_eq!(
        raw.err("auth.respond", json!([answer(&alice, c)])).await.0,
        code(ErrorCode::WrongOrigin)
    );

    let c = raw.ok("auth.challenge", json!([])).await;
    let late = answer(&alice, c);
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(
        raw.err("auth.respond", json!([late])).await.0,
        code(ErrorCode::ChallengeExpired)
    );
}

#[tokio::test]
async fn bad_input_gets_errors_and_the_node_keeps_serving() {
    let node = TestNode::start().await;
    let mut raw = Raw::connect(&node.url).await;
    raw.send_text("{not json".into()).await;
    let reply = raw.recv().await.unwrap();
    assert_eq!(reply["error"]["code"], json!(-32700), "{reply}");

    assert_eq!(raw.err("space.nonsense", json!([])).await.0, -32601);
    assert_eq!(raw.err("space.events", json!([42, "x", 1])).await.0, -32602);
    assert_eq!(
        raw.err("space.get", json!(["channel/not-a-key/x"])).await.0,
        -32602
    );

    // Batches are off by default.
    raw.send_text(r#"[{"jsonrpc":"2.0","id":1,"method":"node.info","params":[]}]"#.into())
        .await;
    let reply = raw.recv().await.unwrap();
    assert!(
        reply.get("error").is_some() || reply[0].get("error").is_some(),
        "{reply}"
    );

    // An oversized message is refused, and the connection still answers.
    let big = format!(
        r#"{{"jsonrpc":"2.0","id":99,"method":"node.info","params":["{}"]}}"#,
        "x".repeat(200 * 1024)
    );
    raw.send_text(big).await;
    let reply = raw.recv().await.unwrap();
    assert_eq!(reply["error"]["code"], json!(-32007), "{reply}");
    raw.ok("node.info", json!([])).await;

    // Another connection was never disturbed.
    let mut other = Raw::connect(&node.url).await;
    other.ok("node.info", json!([])).await;
}

#[tokio::test]
async fn an_unauthenticated_connection_is_closed_after_the_deadline() {
    let node = TestNode::start_with(|c| c.limits.auth_timeout_secs = 1).await;
    let mut idle = Raw::connect(&node.url).await;
    let started = std::time::Instant::now();
    assert!(
        idle.recv().await.is_none(),
        "the node should close the connection"
    );
    assert!(started.elapsed() >= std::time::Duration::from_millis(900));

    // One that authenticates in time stays.
    let alice = Keypair::generate().unwrap();
    let mut raw = Raw::connect(&node.url).await;
    let c = raw.ok("auth.challenge", json!([])).await;
    raw.ok("auth.respond", json!([answer(&alice, c)])).await;
    tokio::time::sleep(std::time::Duration::from_millis(1300)).await;
    raw.ok("node.info", json!([])).await;
}

#[tokio::test]
async fn a_flood_is_rate_limited_and_a_peer_that_ignores_it_is_cut_off() {
    let node = TestNode::start_with(|c| {
        c.limits.requests_per_second = 5;
        c.limits.request_burst = 10;
    })
    .await;
    let mut flood = Raw::connect(&node.url).await;
    let mut answered = 0;
    let mut limited = 0;
    for id in 0..40 {
        let request = json!({"jsonrpc": "2.0", "id": id, "method": "node.info", "params": []});
        flood.send_text(request.to_string()).await;
        match flood.recv().await {
            Some(reply) if reply["error"]["code"] == json!(code(ErrorCode::RateLimited)) => {
                limited += 1;
            }
            Some(_) => answered += 1,
            None => break,
        }
    }
    // The burst is served, the next requests are refused, and a peer that keeps going after
    // `request_burst` refusals in a row is dropped.
    assert!((10..=12).contains(&answered), "{answered} answered");
    assert!((5..=11).contains(&limited), "{limited} limited");
    assert!(
        flood.recv().await.is_none(),
        "the flooding connection must be closed"
    );
    let mut other = Raw::connect(&node.url).await;
    other.ok("node.info", json!([])).await;
}

#[tokio::test]
async fn connections_beyond_the_per_ip_limit_get_429_and_health_answers() {
    let node = TestNode::start_with(|c| c.limits.max_connections_per_ip = 2).await;
    let mut held = Vec::new();
    for _ in 0..2 {
        held.push(Raw::connect(&node.url).await);
    }
    for raw in &mut held {
        raw.ok("node.info", json!([])).await;
    }
    match tokio_tungstenite::connect_async(node.url.as_str()).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status().as_u16(), 429);
        }
        other => panic!(
            "a third connection from one IP must be refused: {:?}",
            other.map(|_| ())
        ),
    }

    // GET /health answers plain HTTP on the same port, whatever the WebSocket limits.
    let reply = common::health(node.addr).await;
    assert!(reply.contains("\"status\":\"ok\""), "{reply}");
}

#[tokio::test]
async fn an_allow_list_admits_only_its_dids() {
    let alice = Keypair::generate().unwrap();
    let mallory = Keypair::generate().unwrap();
    let allowed = alice.did().clone();
    let node = TestNode::start_with(move |c| {
        c.registration.policy = northstar_node::config::Policy::AllowList;
        c.registration.allow = vec![allowed];
    })
    .await;
    let mut raw = Raw::connect(&node.url).await;
    let c = raw.ok("auth.challenge", json!([])).await;
    assert_eq!(
        raw.err("auth.respond", json!([answer(&mallory, c)]))
            .await
            .0,
        code(ErrorCode::NotAllowed)
    );
    assert_eq!(
        raw.err("space.list", json!([])).await.0,
        code(ErrorCode::AuthRequired)
    );
    let c = raw.ok("auth.challenge", json!([])).await;
    raw.ok("auth.respond", json!([answer(&alice, c)])).await;
    raw.ok("space.list", json!([])).await;
}
