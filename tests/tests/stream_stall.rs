//! A watcher that stops reading (`spec/protocol.md` §10.3): it neither slows the publisher nor
//! the other watchers, it is cut off, and the node's memory stays bounded while it stalls. Alone
//! in its test binary, so the process's memory is the node's and this test's.

mod common;

use std::time::{Duration, Instant};

use common::streams::{Publisher, Watcher, stream_on};
use common::{Raw, TIMEOUT, TestNode};
use northstar_protocol::method;
use serde_json::json;

#[tokio::test]
async fn a_watcher_that_stops_reading_slows_nobody_and_is_cut_off() {
    let node = TestNode::start_with(|c| {
        c.streams.max_frames_per_second = 100_000;
        c.streams.max_bytes_per_second = u32::MAX;
        c.streams.watcher_queue = 64;
        c.streams.watcher_cutoff_secs = 1;
    })
    .await;
    let (_alice, key, space) = stream_on(&node, "flood").await;
    // The stalled watcher: a tiny receive buffer it never reads.
    let mut stalled = Raw::connect_small(&node).await;
    stalled.ok(method::STREAM_WATCH, json!([space])).await;
    let (mut reader, _) = Watcher::open(&node, &space, None).await;
    let rss_before = rss_kib();
    let mut publisher = Publisher::open(&node, &key, &space).await;
    let payload = vec![7u8; 32 * 1024];
    const FRAMES: u64 = 4000;
    let publish = async {
        let started = Instant::now();
        for _ in 0..FRAMES {
            publisher.send(&payload, false).await;
        }
        started.elapsed()
    };
    let read = reader.numbers_until(FRAMES, TIMEOUT);
    let (took, seen) = tokio::join!(publish, read);
    // 125 MiB through a node whose one watcher reads nothing.
    assert_eq!(seen.numbers, (1..=FRAMES).collect::<Vec<_>>());
    assert!(took < Duration::from_secs(20), "publishing took {took:?}");
    let grown = rss_kib().saturating_sub(rss_before);
    println!("published {FRAMES} frames of 32 KiB in {took:?}; resident memory grew {grown} KiB");
    assert!(
        grown < 96 * 1024,
        "the node grew by {grown} KiB while a watcher stalled"
    );
    // The node judges a watch when it has a frame for it: past the cut-off, each new frame is
    // a chance to cut the stalled one off. However fast the burst went, this ends it; the reader
    // keeps reading, so it is not the one cut off.
    let mut info = json!({});
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let later = publisher.send(b"later", false).await;
        let read = reader.numbers_until(later, TIMEOUT).await;
        assert_eq!(read.numbers.last(), Some(&later), "the reader fell behind");
        info = Raw::connect(&node.url)
            .await
            .ok(method::STREAM_INFO, json!([space]))
            .await;
        if info["watchers"] == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(info["dropped"].as_u64().unwrap() > 0);
    assert_eq!(info["watchers"], 1, "the stalled watch was cut off");
}

/// This process's resident memory, KiB (the test's nodes run in it).
fn rss_kib() -> u64 {
    northstar_tests::bench::machine::rss_kib(std::process::id()).unwrap()
}
