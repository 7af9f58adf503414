//! The node's WebSocket transport on the wire (`spec/protocol.md` §6.1, §6.3.14): batches,
//! subscriptions and their ids, the close statuses, each seen by a raw client.

mod common;

use common::{Raw, TestNode};
use northstar_protocol::Keypair;
use northstar_protocol::address::{SpaceId, SpaceType};
use northstar_sdk::Client;
use serde_json::{Value, json};

/// A user of `node` and the channel it just created there.
async fn owner_of_a_channel(node: &TestNode, name: &str) -> (Client, SpaceId) {
    let alice = Client::connect(&node.url, Keypair::generate().unwrap())
        .await
        .unwrap();
    let space = alice
        .create_space(SpaceType::Channel, name, name)
        .await
        .unwrap()
        .space;
    (alice, space)
}

fn request(id: u64, method: &str, params: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
}

#[tokio::test]
async fn a_batch_is_answered_in_one_message_with_every_call_answered() {
    let node = TestNode::start_with(|c| c.limits.max_batch = 4).await;
    let mut raw = Raw::connect(&node.url).await;

    let batch = json!([
        request(1, "node.info", json!([])),
        request(2, "node.nonsense", json!([])),
        {"jsonrpc": "2.0", "method": "node.info", "params": []},
        request(3, "space.subscribe", json!(["channel/x/y", 0])),
    ]);
    raw.send_text(batch.to_string()).await;
    let reply = raw.recv().await.unwrap();
    let answers = reply.as_array().unwrap_or_else(|| panic!("{reply}"));
    assert_eq!(answers.len(), 3, "the notification gets no answer: {reply}");
    let by_id = |id: u64| answers.iter().find(|a| a["id"] == json!(id)).unwrap();
    assert!(by_id(1)["result"]["did"].is_string(), "{reply}");
    assert_eq!(by_id(2)["error"]["code"], json!(-32601), "{reply}");
    assert_eq!(
        by_id(3)["error"]["code"],
        json!(-32600),
        "subscriptions cannot be batched: {reply}"
    );

    let five: Vec<Value> = (10..15)
        .map(|i| request(i, "node.info", json!([])))
        .collect();
    raw.send_text(json!(five).to_string()).await;
    let reply = raw.recv().await.unwrap();
    assert_eq!(reply["error"]["code"], json!(-32010), "{reply}");

    raw.send_text("[]".into()).await;
    let reply = raw.recv().await.unwrap();
    assert_eq!(reply["error"]["code"], json!(-32600), "{reply}");

    // Only notifications: nothing comes back, the next answer is the next call's.
    raw.send_text(json!([{"jsonrpc": "2.0", "method": "node.info"}]).to_string())
        .await;
    raw.send_text(request(20, "node.info", json!([])).to_string())
        .await;
    assert_eq!(raw.recv().await.unwrap()["id"], json!(20));
}

#[tokio::test]
async fn notifications_carry_the_subscription_id_and_stop_after_unsubscribe() {
    let node = TestNode::start().await;
    let (alice, space) = owner_of_a_channel(&node, "news").await;

    // A channel is a public read: no auth needed to subscribe. Two subscriptions, one with
    // named parameters, get their own ids; both start after the genesis (seq 1), so the
    // first notification on this connection comes after both answers.
    let mut raw = Raw::connect(&node.url).await;
    let first = raw.ok("space.subscribe", json!([space.as_str(), 1])).await;
    let second = raw
        .ok(
            "space.subscribe",
            json!({"space": space.as_str(), "since": 1}),
        )
        .await;
    assert_ne!(first, second);

    let posted = alice.post(&space, "one", "first").await.unwrap();
    let mut seen = Vec::new();
    for _ in 0..2 {
        let n = raw.recv().await.unwrap();
        assert_eq!(n["params"]["result"]["seq"], json!(posted.seq), "{n}");
        seen.push(n["params"]["subscription"].clone());
    }
    seen.sort_by_key(|v| v.as_u64());
    let mut ids = vec![first.clone(), second.clone()];
    ids.sort_by_key(|v| v.as_u64());
    assert_eq!(seen, ids, "each subscription gets the event once");

    assert_eq!(
        raw.ok("space.unsubscribe", json!([first])).await,
        json!(true)
    );
    assert_eq!(
        raw.ok("space.unsubscribe", json!([first])).await,
        json!(false)
    );
    let again = alice.post(&space, "two", "second").await.unwrap();
    let n = raw.recv().await.unwrap();
    assert_eq!(n["params"]["subscription"], second, "{n}");
    assert_eq!(n["params"]["result"]["seq"], json!(again.seq));
    // Nothing else is queued: the next message is the answer to this call.
    raw.send_text(request(99, "node.info", json!([])).to_string())
        .await;
    assert_eq!(raw.recv().await.unwrap()["id"], json!(99));
}

#[tokio::test]
async fn shutdown_closes_each_connection_with_status_1000() {
    let node = TestNode::start().await;
    let mut raw = Raw::connect(&node.url).await;
    raw.ok("node.info", json!([])).await;
    let stopping = tokio::spawn(node.stop());
    assert_eq!(raw.close_status().await, Some(1000));
    stopping.await.unwrap();
}

#[tokio::test]
async fn a_message_past_twice_the_limit_ends_the_connection_with_1009() {
    let node = TestNode::start_with(|c| c.limits.max_frame_bytes = 16 * 1024).await;
    let mut raw = Raw::connect(&node.url).await;
    let huge = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"node.info","params":["{}"]}}"#,
        "x".repeat(40 * 1024)
    );
    raw.send_text(huge).await;
    assert_eq!(raw.close_status().await, Some(1009));
    let mut other = Raw::connect(&node.url).await;
    other.ok("node.info", json!([])).await;
}

#[tokio::test]
async fn a_connection_that_stops_reading_is_dropped_once_writes_stall() {
    let node = TestNode::start().await;
    let (alice, space) = owner_of_a_channel(&node, "log").await;
    // Enough events for a page of about 128 KiB.
    let posts = futures_util::future::join_all((0..200).map(|i| {
        let (alice, space) = (&alice, &space);
        async move { alice.post(space, &format!("{i}"), "a post").await }
    }))
    .await;
    assert!(posts.iter().all(Result::is_ok));

    let mut raw = Raw::connect_small(&node).await;
    // Authenticated, so the auth deadline is not what ends it.
    raw.authenticate(&Keypair::generate().unwrap()).await;
    // About 5 MB of answers, more than its small receive buffer and the node's send buffer
    // hold; it reads none of them until the node has had time to give up on it.
    let asked = 40;
    for id in 0..asked {
        let page = request(1000 + id, "space.events", json!([space.as_str(), 0, 500]));
        raw.send_text(page.to_string()).await;
    }
    tokio::time::sleep(northstar_node::connection::WRITE_STALL + std::time::Duration::from_secs(3))
        .await;

    // What the buffers held still arrives, then the end, before every answer did.
    let mut answered = 0;
    while let Some(message) = raw.recv().await {
        assert!(message["result"]["events"].is_array(), "{message}");
        answered += 1;
    }
    assert!(answered < asked, "the connection was not dropped");
    // The node itself is fine.
    alice.post(&space, "after", "still serving").await.unwrap();
}

#[tokio::test]
async fn a_handshake_trickled_in_pieces_with_a_frame_after_its_head_opens_a_session() {
    use futures_util::StreamExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_tungstenite::WebSocketStream;
    use tokio_tungstenite::tungstenite::protocol::Role;

    let node = TestNode::start().await;
    let mut tcp = tokio::net::TcpStream::connect(node.addr).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    let head = format!(
        "GET / HTTP/1.1\r\nHost: {}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        node.addr
    );
    // The node reads the head itself before hyper does: every piece must reach hyper, and the
    // first frame, sent in the same write as the head's end, must reach the session.
    let call = br#"{"jsonrpc":"2.0","id":7,"method":"node.info"}"#;
    let mut frame = vec![0x81, 0x80 | u8::try_from(call.len()).unwrap(), 0, 0, 0, 0];
    frame.extend_from_slice(call);
    let (first, rest) = head.as_bytes().split_at(head.len() - 3);
    for piece in first.chunks(7) {
        tcp.write_all(piece).await.unwrap();
        tcp.flush().await.unwrap();
        tokio::task::yield_now().await;
    }
    let mut last = rest.to_vec();
    last.extend_from_slice(&frame);
    tcp.write_all(&last).await.unwrap();

    let mut answer = Vec::new();
    let end = loop {
        let mut chunk = [0u8; 512];
        let n = tokio::time::timeout(common::TIMEOUT, tcp.read(&mut chunk))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "closed: {}", String::from_utf8_lossy(&answer));
        answer.extend_from_slice(&chunk[..n]);
        if let Some(at) = answer.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
    };
    assert!(
        answer.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    let mut ws =
        WebSocketStream::from_partially_read(tcp, answer[end..].to_vec(), Role::Client, None).await;
    let reply = tokio::time::timeout(common::TIMEOUT, ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let reply: Value = serde_json::from_str(reply.to_text().unwrap()).unwrap();
    assert_eq!(reply["id"], 7, "{reply}");
    assert!(reply["result"]["did"].is_string(), "{reply}");
}

#[tokio::test]
async fn a_quiet_peer_is_pinged_and_kept_and_a_gone_one_is_dropped() {
    let node = TestNode::start_with(|c| c.limits.ping_interval_secs = 1).await;
    let (alice, space) = owner_of_a_channel(&node, "quiet").await;

    // A raw client that reads (so its WebSocket layer answers pings) but sends nothing.
    let key = Keypair::generate().unwrap();
    let mut reader = Raw::connect(&node.url).await;
    reader.authenticate(&key).await;
    let started = std::time::Instant::now();
    let first = reader.next_within(std::time::Duration::from_secs(5)).await;
    assert!(
        matches!(
            first,
            Some(tokio_tungstenite::tungstenite::Message::Ping(_))
        ),
        "{first:?}"
    );
    assert!(started.elapsed() >= std::time::Duration::from_millis(900));
    // Two more intervals: pinged again, answered again, still served.
    let second = reader.next_within(std::time::Duration::from_secs(5)).await;
    assert!(
        matches!(
            second,
            Some(tokio_tungstenite::tungstenite::Message::Ping(_))
        ),
        "{second:?}"
    );
    reader.ok("node.info", json!([])).await;

    // An SDK subscriber that stays quiet past several intervals still gets the next event.
    let subscriber = Client::connect(&node.url, Keypair::generate().unwrap())
        .await
        .unwrap();
    subscriber.join(&space).await.unwrap();
    let mut feed = subscriber.subscribe(&space, 2).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(3500)).await;
    let posted = alice
        .post(&space, "still there", "after the quiet")
        .await
        .unwrap();
    let event = tokio::time::timeout(common::TIMEOUT, futures_util::StreamExt::next(&mut feed))
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(event.seq, posted.seq);

    // A client that authenticates and then reads nothing (its pongs never go out) is dropped
    // about two intervals later, without a close frame.
    let mut gone = Raw::connect(&node.url).await;
    gone.authenticate(&Keypair::generate().unwrap()).await;
    tokio::time::sleep(std::time::Duration::from_millis(2600)).await;
    assert_eq!(gone.close_status().await, None);
}
