//! Prometheus metrics on `metrics_listen`, scraped from a real node while it serves.

mod common;

use std::time::Duration;

use common::{Raw, TIMEOUT, TestNode, get, sample};
use northstar_protocol::Keypair;
use northstar_protocol::address::SpaceType;
use northstar_protocol::wire::AuthResponse;
use northstar_sdk::Client;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Scrape until the sample `name` reaches `at_least` (for at most a few seconds); the last
/// scrape and the sample's value.
async fn until_at_least(addr: std::net::SocketAddr, name: &str, at_least: f64) -> (String, f64) {
    let mut last = (String::new(), 0.0);
    for _ in 0..100 {
        let (_, _, text) = get(addr, "/metrics").await;
        let value = sample(&text, name).unwrap_or(0.0);
        last = (text, value);
        if value >= at_least {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    last
}

#[tokio::test]
async fn a_scrape_counts_sessions_auth_outcomes_calls_and_commits() {
    let metrics = std::net::SocketAddr::from(([127, 0, 0, 1], common::free_port()));
    let node = TestNode::start_with(|c| c.metrics_listen = metrics.to_string()).await;

    let alice = Client::connect(&node.url, Keypair::generate().unwrap())
        .await
        .unwrap();
    let space = alice
        .create_space(SpaceType::Channel, "metrics", "Metrics")
        .await
        .unwrap()
        .space;
    alice.post(&space, "one", "counted").await.unwrap();

    // A response over a challenge the node did not issue: refused as bad_signature.
    let mut raw = Raw::connect(&node.url).await;
    let mut challenge: Value = raw.ok("auth.challenge", json!([])).await;
    challenge["nonce"] = json!("uAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
    let forged = AuthResponse::answer(
        &Keypair::generate().unwrap(),
        serde_json::from_value(challenge).unwrap(),
    )
    .unwrap();
    let (code, _) = raw.err("auth.respond", json!([forged])).await;
    assert_eq!(code, 1007);

    let (status, content_type, text) = get(metrics, "/metrics").await;
    assert_eq!(status, 200, "{text}");
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    assert!(text.ends_with("# EOF\n"), "{text}");
    // Alice's session and the raw one are open.
    assert_eq!(sample(&text, "northstar_connections"), Some(2.0), "{text}");
    assert_eq!(
        sample(&text, "northstar_auth_responses_total{outcome=\"ok\"}"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "northstar_auth_responses_total{outcome=\"bad_signature\"}"
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "northstar_rpc_calls_total{method=\"space.post\",outcome=\"ok\"}"
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "northstar_rpc_calls_total{method=\"auth.respond\",outcome=\"error\"}"
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "northstar_rpc_call_seconds_count{method=\"space.post\"}"
        ),
        Some(1.0),
        "{text}"
    );
    // The genesis and the post were committed.
    let commits = sample(&text, "northstar_commits_total{outcome=\"ok\"}").unwrap_or(0.0);
    assert!(commits >= 2.0, "{text}");
    assert_eq!(
        sample(&text, "northstar_commit_seconds_count"),
        Some(commits)
    );

    // Sessions that end are no longer counted.
    drop(raw);
    drop(alice);
    let mut open = None;
    for _ in 0..50 {
        let (_, _, text) = get(metrics, "/metrics").await;
        open = sample(&text, "northstar_connections");
        if open == Some(0.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(open, Some(0.0));

    // Only /metrics, and only there: the public port does not serve it.
    assert_eq!(get(metrics, "/").await.0, 404);
    assert_eq!(get(node.addr, "/metrics").await.0, 404);
}

#[tokio::test]
async fn a_bad_metrics_address_stops_the_node_with_the_key_named() {
    let dir = tempfile::tempdir().unwrap();
    let config = northstar_node::config::Config {
        data_dir: dir.path().to_path_buf(),
        listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        metrics_listen: "localhost".into(),
        ..Default::default()
    };
    let listener = tokio::net::TcpListener::bind(config.listen).await.unwrap();
    let err = northstar_node::run(config, listener, tokio_util::sync::CancellationToken::new())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("metrics_listen"), "{err}");
}

#[tokio::test]
async fn federation_counts_pushes_on_the_sequencer_and_catch_up_on_the_member() {
    let free = || std::net::SocketAddr::from(([127, 0, 0, 1], common::free_port()));
    let (metrics_a, metrics_b) = (free(), free());
    let a = TestNode::start_with(|c| c.metrics_listen = metrics_a.to_string()).await;
    let b = TestNode::start_with(|c| c.metrics_listen = metrics_b.to_string()).await;
    let alice = Client::connect(&a.url, Keypair::generate().unwrap())
        .await
        .unwrap();
    let bob = Client::connect(&b.url, Keypair::generate().unwrap())
        .await
        .unwrap();
    let space = alice
        .create_space(SpaceType::Channel, "fed-metrics", "Fed")
        .await
        .unwrap()
        .space;
    alice.post(&space, "before", "bob joined").await.unwrap();
    // Bob's join makes node B pull the log so far: genesis, post, and his join.
    bob.join(&alice.space_uri(&space)).await.unwrap();
    let (on_b, caught_up) = until_at_least(metrics_b, "northstar_catchup_events_total", 2.0).await;
    assert!(caught_up >= 2.0, "{on_b}");
    // A post after the join is pushed down the tree from A to B.
    let mut feed = bob.subscribe(&space, 0).await.unwrap();
    let posted = alice.post(&space, "after", "pushed").await.unwrap();
    common::until_seq(&mut feed, posted.seq).await;
    // The push is counted once B has answered it, which may be just after Bob saw the event.
    let (on_a, pushes) = until_at_least(metrics_a, "northstar_federation_pushes_total", 1.0).await;
    assert!(pushes >= 1.0, "{on_a}");
    // Node A dialled node B (to push), and the link proved itself.
    let dialled = sample(&on_a, "northstar_federation_dials_total{outcome=\"ok\"}").unwrap_or(0.0);
    assert!(dialled >= 1.0, "{on_a}");
    // That link is up, and is the only one A has.
    let state = |s: &str| {
        sample(
            &on_a,
            &format!("northstar_federation_links{{state=\"{s}\"}}"),
        )
    };
    assert_eq!(state("up"), Some(1.0), "{on_a}");
    assert_eq!(state("down"), Some(0.0), "{on_a}");
    assert_eq!(state("backing_off"), Some(0.0), "{on_a}");
    // Node B is gone: A's next push fails, and the link is no longer up.
    b.stop().await;
    alice.post(&space, "to nobody", "b is down").await.unwrap();
    let mut last = String::new();
    for _ in 0..100 {
        last = get(metrics_a, "/metrics").await.2;
        if sample(&last, "northstar_federation_links{state=\"up\"}") == Some(0.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        sample(&last, "northstar_federation_links{state=\"up\"}"),
        Some(0.0),
        "{last}"
    );
}

#[tokio::test]
async fn the_metrics_address_serves_a_bounded_number_of_connections() {
    let metrics = std::net::SocketAddr::from(([127, 0, 0, 1], common::free_port()));
    let _node = TestNode::start_with(|c| c.metrics_listen = metrics.to_string()).await;
    // Sixteen idle connections take every place.
    let mut held = Vec::new();
    for _ in 0..16 {
        held.push(TcpStream::connect(metrics).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    // One more is closed unread.
    let mut extra = TcpStream::connect(metrics).await.unwrap();
    let _ = extra
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: m\r\n\r\n")
        .await;
    let mut reply = Vec::new();
    let read = tokio::time::timeout(TIMEOUT, extra.read_to_end(&mut reply)).await;
    assert!(
        read.is_ok() && reply.is_empty(),
        "{:?}",
        String::from_utf8_lossy(&reply)
    );
    // Once they go, scrapes are served again.
    drop(held);
    let mut served = false;
    for _ in 0..50 {
        let mut tcp = TcpStream::connect(metrics).await.unwrap();
        let _ = tcp
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: m\r\nConnection: close\r\n\r\n")
            .await;
        let mut reply = String::new();
        let _ = tokio::time::timeout(TIMEOUT, tcp.read_to_string(&mut reply)).await;
        if reply.starts_with("HTTP/1.1 200") {
            served = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(served, "no scrape served after the held connections closed");
}
