//! Floods are stopped when the spec says (`spec/protocol.md` §6.1, §7.2): a pipelined flood on
//! one connection, budgets shared by an address and by a DID, TCP connections that never
//! upgrade, and a subscriber that never reads. Real nodes, raw sockets.

mod common;

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use common::{Raw, TIMEOUT, TestNode, tcp_from};
use futures_util::{SinkExt, StreamExt};
use northstar_protocol::Keypair;
use northstar_protocol::address::SpaceType;
use northstar_protocol::api::ErrorCode;
use northstar_sdk::Client;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

const LOCAL: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);

fn node_info(id: u64) -> String {
    json!({"jsonrpc": "2.0", "id": id, "method": "node.info", "params": []}).to_string()
}

fn is_rate_limited(answer: &Value) -> bool {
    answer["error"]["code"] == json!(ErrorCode::RateLimited.code())
}

/// Wait until the node closes `tcp` (end of stream or reset); what it read meanwhile.
async fn closed_by_node(tcp: &mut tokio::net::TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    tokio::time::timeout(TIMEOUT, async {
        let mut buf = [0u8; 4096];
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .expect("the node should close the connection");
    got
}

#[tokio::test]
async fn a_pipelined_flood_gets_at_most_request_burst_refusals_then_is_dropped() {
    let node = TestNode::start().await;
    let burst = northstar_node::config::Limits::default().request_burst as usize;
    let (mut sink, mut stream) = Raw::connect(&node.url).await.into_inner().split();
    // Far more than the burst, sent without waiting for any answer.
    let sent = 10 * burst;
    let writer = tokio::spawn(async move {
        for id in 0..sent {
            if sink
                .send(Message::text(node_info(id as u64)))
                .await
                .is_err()
            {
                break; // dropped by the node
            }
        }
    });
    let (mut served, mut limited) = (0, 0);
    let (mut first_refusal, mut last_refusal) = (None, None);
    let end = loop {
        match tokio::time::timeout(TIMEOUT, stream.next()).await.unwrap() {
            Some(Ok(Message::Text(text))) => {
                let answer: Value = serde_json::from_str(&text).unwrap();
                if is_rate_limited(&answer) {
                    limited += 1;
                    let now = std::time::Instant::now();
                    first_refusal.get_or_insert(now);
                    last_refusal = Some(now);
                } else {
                    assert!(answer["result"].is_object(), "{answer}");
                    served += 1;
                }
            }
            Some(Ok(Message::Close(frame))) => break Some(frame),
            Some(Ok(_)) => {}
            None | Some(Err(_)) => break None,
        }
    };
    writer.await.unwrap();
    eprintln!("{served} served, {limited} rate_limited of {sent} sent");
    assert!(end.is_none(), "dropped without a close frame, got {end:?}");
    assert!(served >= burst, "the burst is served: {served}");
    // The spec forgives one refusal for each whole 1/rate seconds between two refusals (a
    // client that waits is not a flooder). A flood's refusals come within milliseconds, but a
    // busy machine may stretch them: allow what the time they took forgives, and no more.
    let rate = f64::from(northstar_node::config::Limits::default().requests_per_second);
    let spread = match (first_refusal, last_refusal) {
        (Some(first), Some(last)) => last.duration_since(first).as_secs_f64(),
        _ => 0.0,
    };
    let forgiven = (spread * rate).ceil() as usize;
    assert!(
        (1..=burst + 1 + forgiven).contains(&limited),
        "{limited} rate_limited answers for a burst of {burst}, {forgiven} forgiven over \
         {spread:.3} s ({served} served of {sent})"
    );
    // The node serves others.
    Raw::connect(&node.url)
        .await
        .ok("node.info", json!([]))
        .await;
}

#[tokio::test]
async fn the_connections_of_one_address_share_its_budget() {
    let node = TestNode::start_with(|c| {
        c.limits.requests_per_second = 1000;
        c.limits.request_burst = 1000;
        c.limits.requests_per_second_per_ip = 1;
        c.limits.request_burst_per_ip = 6;
    })
    .await;
    let mut conns = Vec::new();
    for _ in 0..3 {
        conns.push(Raw::connect(&node.url).await);
    }
    // Six requests from three connections empty the address's budget.
    let mut served = 0;
    let mut refusal = None;
    for round in 0..4 {
        for conn in &mut conns {
            let answer = conn.exchange(&node_info(round)).await;
            if is_rate_limited(&answer) {
                refusal.get_or_insert(answer);
            } else {
                served += 1;
            }
        }
    }
    assert!((6..=7).contains(&served), "{served} served");
    let refusal = refusal.expect("the address's budget ran out");
    let message = refusal["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("address"), "{refusal}");
    // Another address has a budget of its own.
    let mut other = Raw::connect_from(&node, Ipv4Addr::new(127, 0, 0, 2)).await;
    other.ok("node.info", json!([])).await;
}

#[tokio::test]
async fn the_connections_of_one_did_share_its_budget() {
    let node = TestNode::start_with(|c| {
        c.limits.requests_per_second_per_did = 1;
        c.limits.request_burst_per_did = 4;
    })
    .await;
    let alice = Keypair::generate().unwrap();
    let mut first = Raw::connect(&node.url).await;
    let mut second = Raw::connect(&node.url).await;
    first.authenticate(&alice).await;
    second.authenticate(&alice).await;
    let mut served = 0;
    let mut refusal = None;
    for round in 0..4 {
        for conn in [&mut first, &mut second] {
            let answer = conn.exchange(&node_info(round)).await;
            if is_rate_limited(&answer) {
                refusal.get_or_insert(answer);
            } else {
                served += 1;
            }
        }
    }
    assert!((4..=5).contains(&served), "{served} served");
    let refusal = refusal.expect("the DID's budget ran out");
    let message = refusal["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("DID"), "{refusal}");
    // Another DID, from the same address, is not affected.
    let mut bob = Raw::connect(&node.url).await;
    bob.authenticate(&Keypair::generate().unwrap()).await;
    bob.ok("node.info", json!([])).await;
}

#[tokio::test]
async fn connections_that_do_not_upgrade_hold_a_bounded_pool_and_are_closed_in_time() {
    let node = TestNode::start_with(|c| {
        c.limits.max_pending_connections = 5;
        c.limits.max_pending_connections_per_ip = 3;
        // Long enough that the pool is still full when the last ones are tried.
        c.limits.handshake_timeout_secs = 3;
    })
    .await;
    // Three silent connections fill this address's share; each is served by the node, so
    // a fourth is closed unread.
    let started = Instant::now();
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(tcp_from(&node, LOCAL).await);
    }
    let mut fourth = tcp_from(&node, LOCAL).await;
    // Written before the node looks at it: the node closes it without answering.
    let _ = fourth
        .write_all(b"GET /health HTTP/1.1\r\nHost: n\r\n\r\n")
        .await;
    assert!(closed_by_node(&mut fourth).await.is_empty());
    // Two more from a second address fill the pool; a third address finds it full.
    for _ in 0..2 {
        held.push(tcp_from(&node, Ipv4Addr::new(127, 0, 0, 2)).await);
    }
    let mut over = tcp_from(&node, Ipv4Addr::new(127, 0, 0, 3)).await;
    assert!(closed_by_node(&mut over).await.is_empty());
    // Every held connection is closed by the node after the handshake timeout.
    for tcp in &mut held {
        closed_by_node(tcp).await;
    }
    assert!(started.elapsed() >= Duration::from_millis(2900));
    // Their places are free again.
    let mut raw = Raw::connect(&node.url).await;
    raw.ok("node.info", json!([])).await;
}

#[tokio::test]
async fn a_plain_http_keep_alive_connection_is_closed_at_the_handshake_deadline() {
    let node = TestNode::start_with(|c| c.limits.handshake_timeout_secs = 1).await;
    let mut tcp = tcp_from(&node, LOCAL).await;
    let started = Instant::now();
    tcp.write_all(b"GET /health HTTP/1.1\r\nHost: n\r\n\r\n")
        .await
        .unwrap();
    let got = closed_by_node(&mut tcp).await;
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(started.elapsed() >= Duration::from_millis(900));
    // A WebSocket session is not bound by it.
    let mut raw = Raw::connect(&node.url).await;
    raw.authenticate(&Keypair::generate().unwrap()).await;
    let deadline = tokio::time::Instant::now() + Duration::from_millis(1300);
    tokio::time::sleep_until(deadline).await;
    raw.ok("node.info", json!([])).await;
}

#[tokio::test]
async fn a_subscriber_that_does_not_read_is_dropped_after_a_bounded_amount() {
    let node = TestNode::start().await;
    let key = Keypair::generate().unwrap();
    let alice = Client::connect(&node.url, key.clone()).await.unwrap();
    let space = alice
        .create_space(SpaceType::Channel, "firehose", "firehose")
        .await
        .unwrap()
        .space;

    // The reader never reads; the watcher reads everything.
    let mut reader = Raw::connect(&node.url).await;
    reader.authenticate(&Keypair::generate().unwrap()).await;
    reader
        .ok("space.subscribe", json!([space.as_str(), 1]))
        .await;
    let mut watcher = Raw::connect(&node.url).await;
    // Authenticated too: the test outlasts the auth deadline.
    watcher.authenticate(&Keypair::generate().unwrap()).await;
    watcher
        .ok("space.subscribe", json!([space.as_str(), 1]))
        .await;

    // Fewer events than `subscriber_queue`, so only the transport can cut the reader off;
    // posted over three connections, each within its own request budget.
    let posts = 900;
    let mut authors = vec![alice];
    for _ in 0..2 {
        authors.push(Client::connect(&node.url, key.clone()).await.unwrap());
    }
    let results = futures_util::future::join_all(authors.iter().enumerate().map(|(a, author)| {
        let space = &space;
        async move {
            let mut ok = 0;
            for i in 0..posts / 3 {
                if author
                    .post(space, &format!("{a}-{i}"), "a post")
                    .await
                    .is_ok()
                {
                    ok += 1;
                }
            }
            ok
        }
    }))
    .await;
    assert_eq!(results.iter().sum::<usize>(), posts);
    let alice = &authors[0];
    let mut bytes_watched = 0;
    for _ in 0..posts {
        let n = watcher.recv().await.unwrap();
        assert!(n["params"]["result"]["seq"].is_u64(), "{n}");
        bytes_watched += n.to_string().len();
    }

    // The stall rule drops the reader 10 s after its writes stopped moving.
    tokio::time::sleep(northstar_node::connection::WRITE_STALL + Duration::from_secs(3)).await;
    let mut ws = reader.into_inner();
    let mut bytes_read = 0;
    eprintln!("posted {bytes_watched} bytes of notifications");
    let mut ended = false;
    while let Ok(next) = tokio::time::timeout(TIMEOUT, ws.next()).await {
        match next {
            Some(Ok(Message::Text(text))) => bytes_read += text.len(),
            Some(Ok(_)) => {}
            None | Some(Err(_)) => {
                ended = true;
                break;
            }
        }
    }
    assert!(ended, "the reader should have been dropped");
    eprintln!("{bytes_read} bytes reached the reader that did not read");
    // What the node had accepted for it: its own buffers and the kernel's on both sides.
    assert!(
        bytes_read < 1024 * 1024 && bytes_read < bytes_watched / 2,
        "{bytes_read} bytes reached the reader of {bytes_watched} posted"
    );
    // The node and its other reader are fine.
    alice.post(&space, "after", "still serving").await.unwrap();
    let n = watcher.recv().await.unwrap();
    assert_eq!(n["params"]["result"]["seq"], json!(posts as u64 + 2), "{n}");
}
