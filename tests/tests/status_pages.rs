//! The plain HTTP pages on a node's port: health checks, the status page and
//! `/.well-known/northstar`, asked of real nodes over TCP.

mod common;

use common::{TestNode, request};
use northstar_protocol::address::SpaceType;
use northstar_protocol::{Keypair, PROTOCOL_VERSION};
use northstar_sdk::Client;

#[tokio::test]
async fn health_checks_answer_json_with_the_version_and_the_old_path_is_unchanged() {
    let node = TestNode::start().await;
    let live = request(node.addr, "GET", "/health/live").await;
    assert_eq!(live.status, 200);
    let live = live.json();
    assert_eq!(live["status"], "live");
    assert_eq!(live["version"], northstar_node::status::VERSION);
    let ready = request(node.addr, "GET", "/health/ready").await;
    assert_eq!(ready.status, 200, "{}", ready.body);
    let ready = ready.json();
    assert_eq!(ready["status"], "ready");
    assert_eq!(ready["database"], "ok");
    // The old path, as scripts and the spec know it, for any method.
    for method in ["GET", "POST"] {
        let old = request(node.addr, method, "/health").await;
        assert_eq!(
            (old.status, old.body.as_str()),
            (200, "{\"status\":\"ok\"}")
        );
    }
    // Other methods and paths are told apart.
    let post = request(node.addr, "POST", "/health/ready").await;
    assert_eq!(post.status, 405);
    assert_eq!(post.header("allow"), Some("GET, HEAD"));
    assert_eq!(request(node.addr, "GET", "/nothing-here").await.status, 404);
}

#[tokio::test]
async fn the_status_page_and_well_known_facts_count_what_the_node_holds() {
    let (a, b) = (TestNode::start().await, TestNode::start().await);
    let alice = Client::connect(&a.url, Keypair::generate().unwrap())
        .await
        .unwrap();
    let bob = Client::connect(&b.url, Keypair::generate().unwrap())
        .await
        .unwrap();
    let space = alice
        .create_space(SpaceType::Channel, "status", "Status")
        .await
        .unwrap()
        .space;
    alice
        .create_space(SpaceType::Channel, "second", "Second")
        .await
        .unwrap();
    // Bob joins through node B: B replicates the space, and each node knows the other.
    bob.join(&alice.space_uri(&space)).await.unwrap();

    let facts = request(a.addr, "GET", "/.well-known/northstar").await;
    assert_eq!(facts.status, 200, "{}", facts.body);
    let facts = facts.json();
    assert_eq!(facts["node"], alice.node_info().did.to_string());
    assert_eq!(facts["url"], a.url);
    assert_eq!(facts["protocol"], PROTOCOL_VERSION);
    assert_eq!(facts["version"], northstar_node::status::VERSION);
    assert_eq!(facts["registration"], "open");
    assert!(facts["uptime_secs"].is_u64(), "{facts}");
    // Alice is node A's one user; Bob's home is node B.
    assert_eq!(facts["users"], 1, "{facts}");
    assert_eq!(facts["spaces_sequenced"], 2, "{facts}");
    assert_eq!(facts["spaces_replicated"], 0, "{facts}");
    assert_eq!(facts["peers"], 1, "{facts}");

    let on_b = request(b.addr, "GET", "/.well-known/northstar")
        .await
        .json();
    assert_eq!(on_b["users"], 1, "{on_b}");
    assert_eq!(on_b["spaces_sequenced"], 0, "{on_b}");
    assert_eq!(on_b["spaces_replicated"], 1, "{on_b}");
    assert_eq!(on_b["peers"], 1, "{on_b}");

    let page = request(a.addr, "GET", "/").await;
    assert_eq!(page.status, 200);
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    let did = alice.node_info().did.to_string();
    assert!(
        page.body
            .contains(&format!("<code id=\"node\">{did}</code>")),
        "{}",
        page.body
    );
    assert!(
        page.body
            .contains(&format!("<code id=\"url\">{}</code>", a.url)),
        "{}",
        page.body
    );
    assert!(
        page.body.contains("<td id=\"users\">1</td>"),
        "{}",
        page.body
    );
    assert!(
        page.body.contains("2 sequenced here, 0 replicated"),
        "{}",
        page.body
    );
    // HEAD gets the headers and no body.
    let head = request(a.addr, "HEAD", "/").await;
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty(), "{}", head.body);
}

/// On PostgreSQL the database can be taken away from a running node: readiness says so, and
/// liveness does not.
#[tokio::test]
async fn readiness_fails_while_the_database_is_gone() {
    let Some(server) = northstar_tests::postgres::server_from_env() else {
        eprintln!("skipped: needs the tests' PostgreSQL server (NORTHSTAR_TEST_POSTGRES)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let name = northstar_tests::postgres::database_name(dir.path());
    let url = northstar_tests::postgres::create_database(&server, &name)
        .await
        .unwrap();
    let node = TestNode::start_on(dir.path().to_path_buf(), url, |_| {}).await;
    assert_eq!(request(node.addr, "GET", "/health/ready").await.status, 200);
    northstar_tests::postgres::drop_database(&server, &name)
        .await
        .unwrap();
    let ready = request(node.addr, "GET", "/health/ready").await;
    assert_eq!(ready.status, 503, "{}", ready.body);
    let ready = ready.json();
    assert_eq!(ready["status"], "unready");
    assert!(
        ready["database"].as_str().is_some_and(|r| !r.is_empty()),
        "{ready}"
    );
    assert_eq!(request(node.addr, "GET", "/health/live").await.status, 200);
    node.stop().await;
}
