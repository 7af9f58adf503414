//! An acknowledged write survives `kill -9` of the node right after the ack.
//!
//! The node runs in a child process: this test binary started again with `--ignored --exact
//! node_process`, which runs a real node on the data dir named by `NORTHSTAR_TEST_DATA_DIR` and
//! prints its address. The parent posts, waits for each ack, kills the child with SIGKILL,
//! starts a new node on the same files and checks that every acknowledged beam is there.
//!
//! On PostgreSQL (see `common`), both node processes use the data dir's own database.

mod common;

use common::Raw;
use common::child::NodeProcess;
use northstar_protocol::address::{SpaceId, SpaceType};
use northstar_protocol::wire::{AuthResponse, Beam, SpaceGenesis};
use northstar_protocol::{Keypair, Signed};
use serde_json::{Value, json};

/// Not a test on its own: the node the parent test starts in a child process.
#[tokio::test]
#[ignore = "started by acknowledged_beams_survive_kill_9 in a child process"]
async fn node_process() {
    common::child::serve("acknowledged_beams_survive_kill_9").await;
}

async fn login(url: &str, key: &Keypair) -> (Raw, Value) {
    let mut raw = Raw::connect(url).await;
    let info = raw.ok("node.info", json!([])).await;
    let challenge = serde_json::from_value(raw.ok("auth.challenge", json!([])).await).unwrap();
    let response = AuthResponse::answer(key, challenge).unwrap();
    raw.ok("auth.respond", json!([response])).await;
    (raw, info)
}

#[tokio::test]
async fn acknowledged_beams_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let alice = Keypair::generate().unwrap();
    let node = NodeProcess::spawn("node_process", dir.path());
    let (mut raw, info) = login(&node.url, &alice).await;
    let authority = info["authority"].as_str().unwrap().to_owned();
    let node_did = serde_json::from_value(info["did"].clone()).unwrap();
    let space = SpaceId::new(SpaceType::Channel, alice.did(), "durable").unwrap();
    let genesis = SpaceGenesis::create(
        &alice,
        space.clone(),
        "Durable",
        node_did,
        &authority,
        10,
        1,
    )
    .unwrap();
    raw.ok("space.create", json!([genesis])).await;

    let mut acked = Vec::new();
    for i in 0..25u64 {
        let (beam, beam_ref) = Beam::post(
            &alice,
            space.clone(),
            &authority,
            &format!("post {i}"),
            "body",
            10 + i,
        )
        .unwrap();
        let id = beam.content_id().unwrap();
        let posted = raw.ok("space.post", json!([beam, beam_ref])).await;
        acked.push((
            posted["seq"].as_u64().unwrap(),
            posted["beam_uri"].clone(),
            id,
        ));
    }
    // SIGKILL right after the last ack: no shutdown, no checkpoint, no flush.
    drop(node);

    let node = NodeProcess::spawn("node_process", dir.path());
    let (mut raw, _) = login(&node.url, &alice).await;
    let page = raw
        .ok("space.events", json!([space.as_str(), 0, 100]))
        .await;
    let events = page["events"].as_array().unwrap();
    assert_eq!(events.len(), 26, "genesis + 25 beams");
    for (seq, _, id) in &acked {
        let event = &events[(*seq - 1) as usize];
        assert_eq!(event["seq"], json!(seq));
        assert_eq!(event["payload"]["body"]["beam"], json!(id.to_string()));
    }
    for (_, uri, id) in &acked {
        let path = uri
            .as_str()
            .unwrap()
            .split_once(&format!("{authority}/"))
            .unwrap()
            .1;
        let beam: Beam = serde_json::from_value(raw.ok("beam.get", json!([path])).await).unwrap();
        assert_eq!(beam.content_id().unwrap(), *id);
    }
    drop(node);
    if let Some(server) = northstar_tests::postgres::test_storage_server().unwrap() {
        let name = northstar_tests::postgres::database_name(dir.path());
        northstar_tests::postgres::drop_database(&server, &name)
            .await
            .unwrap();
    }
}
