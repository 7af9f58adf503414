//! The limits and the order of checks of live streams (`spec/protocol.md` §10.2, §10.3,
//! §10.7, §10.9), on real nodes on 127.0.0.1.

mod common;

use common::streams::{Publisher, stream_on};
use common::{Raw, TIMEOUT, TestNode};
use northstar_protocol::Keypair;
use northstar_protocol::address::{SpaceId, SpaceType};
use northstar_protocol::api::ErrorCode;
use northstar_protocol::method;
use serde_json::json;

fn code(error: ErrorCode) -> i64 {
    i64::from(error.code())
}

#[tokio::test]
async fn a_space_the_node_does_not_hold_is_space_not_found_before_not_a_stream() {
    let node = TestNode::start().await;
    let owner = Keypair::generate().unwrap();
    let channel = SpaceId::new(SpaceType::Channel, owner.did(), "nowhere").unwrap();
    let mut raw = Raw::connect(&node.url).await;
    for name in [method::STREAM_WATCH, method::STREAM_INFO] {
        let (got, message) = raw.err(name, json!([channel])).await;
        assert_eq!(got, code(ErrorCode::SpaceNotFound), "{name}: {message}");
    }
    raw.authenticate(&owner).await;
    let (got, message) = raw.err(method::STREAM_PUBLISH, json!([channel])).await;
    assert_eq!(got, code(ErrorCode::SpaceNotFound), "{message}");
}

#[tokio::test]
async fn a_frame_past_max_frame_bytes_plus_2048_closes_the_connection_with_1009() {
    let node = TestNode::start_with(|c| c.streams.max_frame_bytes = 1000).await;
    let mut raw = Raw::connect(&node.url).await;
    // Within the hard limit: read, refused as a frame, and the connection stays.
    raw.send_binary(vec![0x01; 1000 + 2048]).await;
    let refused = raw.recv().await.expect("a stream.refused notice");
    assert_eq!(refused["method"], method::STREAM_REFUSED, "{refused}");
    // One byte more: the connection is closed, though the connection's own limit (twice
    // [limits] max_frame_bytes) is far above it.
    raw.send_binary(vec![0x01; 1000 + 2048 + 1]).await;
    assert_eq!(raw.close_status().await, Some(1009));
}

#[tokio::test]
async fn an_anonymous_watcher_cut_off_past_the_auth_deadline_is_told_before_it_is_dropped() {
    let node = TestNode::start_with(|c| {
        c.limits.auth_timeout_secs = 1;
        c.streams.max_frames_per_second = 100_000;
        c.streams.max_bytes_per_second = u32::MAX;
        c.streams.watcher_queue = 8;
        c.streams.watcher_cutoff_secs = 1;
    })
    .await;
    let (_alice, key, space) = stream_on(&node, "flood").await;
    // Anonymous, past its auth deadline by the time it is cut off, and not reading.
    let mut stalled = Raw::connect_small(&node).await;
    stalled.ok(method::STREAM_WATCH, json!([space])).await;
    let mut publisher = Publisher::open(&node, &key, &space).await;
    let mut info = Raw::connect(&node.url).await;
    info.authenticate(&key).await;
    let payload = vec![7u8; 32 * 1024];
    let cut_off = async {
        loop {
            for _ in 0..20 {
                publisher.send(&payload, false).await;
            }
            let facts = info.ok(method::STREAM_INFO, json!([space])).await;
            if facts["watchers"] == 0 {
                return;
            }
        }
    };
    tokio::time::timeout(TIMEOUT, cut_off)
        .await
        .expect("the stalled watch was never cut off");
    // It reads again: the frames it was sent, then the notice, then the end.
    let mut told = None;
    while let Some(message) = stalled.recv().await {
        if message["method"] == method::STREAM_CLOSED {
            told = Some(message["params"]["name"].clone());
            break;
        }
    }
    assert_eq!(told, Some(json!("slow_watcher")));
}

#[tokio::test]
async fn at_the_watch_limit_the_space_is_checked_first_and_a_second_watch_replaces_the_first() {
    let node = TestNode::start_with(|c| c.limits.max_subscriptions_per_connection = 1).await;
    let (_alice, _, tv) = stream_on(&node, "tv").await;
    let (_bob, _, radio) = stream_on(&node, "radio").await;
    let owner = Keypair::generate().unwrap();
    let missing = SpaceId::new(SpaceType::Stream, owner.did(), "missing").unwrap();
    let mut raw = Raw::connect(&node.url).await;
    raw.ok(method::STREAM_WATCH, json!([tv])).await;
    // At the limit, watching the same stream again replaces the watch.
    raw.ok(method::STREAM_WATCH, json!([tv])).await;
    // The space's checks come before the limit's...
    let (got, message) = raw.err(method::STREAM_WATCH, json!([missing])).await;
    assert_eq!(got, code(ErrorCode::SpaceNotFound), "{message}");
    // ...which refuses a watch of another stream.
    let (got, message) = raw.err(method::STREAM_WATCH, json!([radio])).await;
    assert_eq!(got, -32006, "{message}");
    assert_eq!(
        raw.ok(method::STREAM_UNWATCH, json!([tv])).await,
        json!(true)
    );
    raw.ok(method::STREAM_WATCH, json!([radio])).await;
}
