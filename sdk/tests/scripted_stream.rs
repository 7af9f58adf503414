//! The SDK's publisher and watch against a scripted node on 127.0.0.1: a bare WebSocket server
//! that answers the handshake and `stream.*` calls as a test plans, and sends what a real node
//! cannot easily be made to send (refusals on cue, forged frames, repeats, another stream's
//! frame, a `slow_watcher` cut-off).

mod scripted;

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use northstar_protocol::Keypair;
use northstar_protocol::address::{SpaceId, SpaceType};
use northstar_protocol::api::{
    ErrorCode, NodeInfo, StreamLimits, StreamPublishing, StreamWatching,
};
use northstar_protocol::frame::{Frame, FrameError};
use northstar_protocol::method::{
    AUTH_CHALLENGE, AUTH_RESPOND, NODE_INFO, STREAM_CLOSED, STREAM_PUBLISH, STREAM_REFUSED,
    STREAM_WATCH,
};
use northstar_protocol::wire::{AuthChallenge, AuthResponse};
use northstar_sdk::auth::{AuthError, ChallengeRefused};
use northstar_sdk::stream::{Publisher, Watch, WatchedFrame, watch};
use northstar_sdk::{NodeCode, SdkError, StreamError};
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

/// Every wait in these tests ends within this.
const TIMEOUT: Duration = Duration::from_secs(10);
const T: u64 = 1_767_225_600_000;

type Ws = WebSocketStream<TcpStream>;

fn node() -> Keypair {
    Keypair::from_seed(&[9; 32])
}

fn owner() -> Keypair {
    Keypair::from_seed(&[1; 32])
}

fn radio() -> SpaceId {
    SpaceId::new(SpaceType::Stream, owner().did(), "radio").unwrap()
}

fn limits() -> StreamLimits {
    StreamLimits {
        max_frame_bytes: 1024,
        max_frames_per_second: 1000,
        max_bytes_per_second: 1 << 20,
    }
}

/// A scripted node: the URL to dial, and the server side of the one connection it accepts.
async fn scripted() -> (String, tokio::task::JoinHandle<Ws>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}", listener.local_addr().unwrap());
    let accept = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        tokio_tungstenite::accept_async(tcp).await.unwrap()
    });
    (url, accept)
}

/// The next request: its id, method and params. Binary messages before it are returned too.
async fn request(ws: &mut Ws) -> (u64, String, Value, Vec<Vec<u8>>) {
    let mut frames = Vec::new();
    loop {
        let message = tokio::time::timeout(TIMEOUT, ws.next())
            .await
            .expect("the client sent nothing")
            .expect("the client hung up")
            .unwrap();
        match message {
            Message::Text(text) => {
                let value: Value = serde_json::from_str(&text).unwrap();
                assert_eq!(value["jsonrpc"], "2.0");
                return (
                    value["id"].as_u64().unwrap(),
                    value["method"].as_str().unwrap().to_owned(),
                    value["params"].clone(),
                    frames,
                );
            }
            Message::Binary(bytes) => frames.push(bytes.to_vec()),
            other => panic!("unexpected {other:?}"),
        }
    }
}

async fn frame_from(ws: &mut Ws) -> Vec<u8> {
    let message = tokio::time::timeout(TIMEOUT, ws.next())
        .await
        .expect("no frame came")
        .unwrap()
        .unwrap();
    match message {
        Message::Binary(bytes) => bytes.to_vec(),
        other => panic!("expected a frame, got {other:?}"),
    }
}

async fn send(ws: &mut Ws, value: Value) {
    ws.send(Message::text(value.to_string())).await.unwrap();
}

async fn answer(ws: &mut Ws, id: u64, result: impl serde::Serialize) {
    send(ws, json!({"jsonrpc": "2.0", "id": id, "result": result})).await;
}

async fn refuse(ws: &mut Ws, id: u64, code: ErrorCode, message: &str) {
    let error = json!({"code": code.code(), "message": message});
    send(ws, json!({"jsonrpc": "2.0", "id": id, "error": error})).await;
}

async fn notify(ws: &mut Ws, method: &str, params: Value) {
    send(
        ws,
        json!({"jsonrpc": "2.0", "method": method, "params": params}),
    )
    .await;
}

fn notice(number: Option<u64>, code: ErrorCode, message: &str) -> Value {
    let mut params = json!({
        "space": radio().as_str(),
        "code": code.code(),
        "name": code.name(),
        "message": message,
    });
    if let Some(number) = number {
        params["number"] = json!(number);
    }
    params
}

fn node_info(origin: &str) -> NodeInfo {
    scripted::node_info(node().did(), origin, 100)
}

/// Answer `node.info`, as all a watcher without a key asks before `stream.watch`.
async fn info_only(ws: &mut Ws, origin: &str) {
    let (id, method, _, _) = request(ws).await;
    assert_eq!(method, NODE_INFO);
    answer(ws, id, node_info(origin)).await;
}

/// Answer `node.info`, `auth.challenge` (naming `challenge_origin`) and `auth.respond`.
async fn handshake(ws: &mut Ws, origin: &str, challenge_origin: &str) {
    info_only(ws, origin).await;
    let (id, method, _, _) = request(ws).await;
    assert_eq!(method, AUTH_CHALLENGE);
    let challenge = AuthChallenge::issue(&node(), challenge_origin, T, u64::MAX >> 11).unwrap();
    answer(ws, id, challenge).await;
    if challenge_origin != origin {
        return;
    }
    let (id, method, params, _) = request(ws).await;
    assert_eq!(method, AUTH_RESPOND);
    let response: AuthResponse = serde_json::from_value(params[0].clone()).unwrap();
    response.verify().unwrap();
    answer(ws, id, json!({"did": response.did})).await;
}

/// A scripted node that answers the handshake, then `stream.publish` with `next` if given,
/// then plays `script` on the connection: the URL to dial, and the script's outcome.
async fn node_after_handshake<T, F>(
    next: Option<u64>,
    script: impl FnOnce(Ws) -> F + Send + 'static,
) -> (String, tokio::task::JoinHandle<T>)
where
    T: Send + 'static,
    F: Future<Output = T> + Send + 'static,
{
    let (url, accept) = scripted().await;
    let origin = url.clone();
    let node = tokio::spawn(async move {
        let mut ws = accept.await.unwrap();
        handshake(&mut ws, &origin, &origin).await;
        if let Some(next) = next {
            publishing(&mut ws, next).await;
        }
        script(ws).await
    });
    (url, node)
}

/// A publisher of `radio` as its owner, opened at `url`.
async fn open_publisher(url: &str) -> Publisher {
    tokio::time::timeout(TIMEOUT, Publisher::open(url, owner(), &radio()))
        .await
        .expect("the publisher did not open")
        .unwrap()
}

/// Answer `stream.publish` with `next`.
async fn publishing(ws: &mut Ws, next: u64) -> Vec<Vec<u8>> {
    let (id, method, params, frames) = request(ws).await;
    assert_eq!(method, STREAM_PUBLISH);
    assert_eq!(params, json!([radio().as_str()]));
    answer(ws, id, publishing_answer(next)).await;
    frames
}

/// The node's answer to `stream.publish` on the radio: go on at `next`, with the test's limits.
fn publishing_answer(next: u64) -> StreamPublishing {
    StreamPublishing {
        space: radio(),
        next,
        limits: limits(),
    }
}

fn decoded(bytes: &[u8]) -> Frame {
    let frame = Frame::decode(bytes).unwrap();
    frame.verify().unwrap();
    assert_eq!(frame.space, radio());
    frame
}

fn signed(by: &Keypair, space: SpaceId, number: u64, payload: &[u8]) -> Vec<u8> {
    Frame::sign(by, space, number, T + number, true, payload.to_vec())
        .unwrap()
        .encode()
        .unwrap()
}

#[tokio::test]
async fn a_publisher_sends_signed_numbered_frames_from_the_nodes_next() {
    let (url, node) = node_after_handshake(Some(5), |mut ws| async move {
        let mut frames = Vec::new();
        for _ in 0..3 {
            frames.push(decoded(&frame_from(&mut ws).await));
        }
        publishing(&mut ws, 8).await;
        frames
    })
    .await;
    let mut publisher = open_publisher(&url).await;
    assert_eq!((publisher.next(), publisher.limits()), (5, &limits()));
    assert_eq!(publisher.publish(&b"one"[..], true).await.unwrap(), 5);
    assert_eq!(publisher.publish(b"two".to_vec(), false).await.unwrap(), 6);
    assert_eq!(publisher.publish("three", false).await.unwrap(), 7);
    let finished = publisher.finish().await.unwrap();
    assert_eq!((finished.next, finished.sent, finished.refused), (8, 3, 0));

    let frames = tokio::time::timeout(TIMEOUT, node).await.unwrap().unwrap();
    let seen: Vec<_> = frames
        .iter()
        .map(|f| (f.number, f.key, f.payload.as_slice()))
        .collect();
    assert_eq!(
        seen,
        [
            (5, true, &b"one"[..]),
            (6, false, &b"two"[..]),
            (7, false, &b"three"[..])
        ]
    );
    assert!(frames[0].timestamp > T, "frames carry the owner's clock");
}

#[tokio::test]
async fn a_refusal_comes_back_from_the_next_publish_which_then_goes_on_above_the_nodes_newest() {
    let (refused_tx, refused_rx) = oneshot::channel();
    let (refused_tx2, refused_rx2) = oneshot::channel();
    let (url, node) = node_after_handshake(Some(1), |mut ws| async move {
        decoded(&frame_from(&mut ws).await);
        let second = decoded(&frame_from(&mut ws).await);
        notify(
            &mut ws,
            STREAM_REFUSED,
            notice(
                Some(second.number),
                ErrorCode::FrameRate,
                "over 1000 frames/s",
            ),
        )
        .await;
        refused_tx.send(()).unwrap();
        // The call after the refusal asks where to go on: the node took frames up to 9 (from
        // another publisher of the stream, say), so the next is 10.
        publishing(&mut ws, 10).await;
        let after = decoded(&frame_from(&mut ws).await);
        notify(
            &mut ws,
            STREAM_REFUSED,
            notice(Some(after.number), ErrorCode::ByteRate, "over budget"),
        )
        .await;
        refused_tx2.send(()).unwrap();
        // This time the node answers a number below the publisher's: it never goes back.
        publishing(&mut ws, 10).await;
        let last = decoded(&frame_from(&mut ws).await);
        publishing(&mut ws, 12).await;
        (after, last)
    })
    .await;
    let mut publisher = open_publisher(&url).await;
    publisher.publish("a", true).await.unwrap();
    publisher.publish("b", true).await.unwrap();
    tokio::time::timeout(TIMEOUT, refused_rx)
        .await
        .unwrap()
        .unwrap();

    let err = publisher.publish("c", true).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::FrameRate));
    let SdkError::Stream(StreamError::Refused {
        number, message, ..
    }) = &err
    else {
        panic!("not a refusal: {err:?}");
    };
    assert_eq!((*number, message.as_str()), (Some(2), "over 1000 frames/s"));
    assert!(err.to_string().contains("frame 2"), "{err}");
    assert_eq!(publisher.refused(), 1);

    // Called again, the publisher asks the node and sends the payload under the number it names.
    assert_eq!(publisher.publish("c", true).await.unwrap(), 10);
    tokio::time::timeout(TIMEOUT, refused_rx2)
        .await
        .unwrap()
        .unwrap();
    let err = publisher.publish("d", true).await.unwrap_err();
    assert!(
        matches!(
            &err,
            SdkError::Stream(StreamError::Refused {
                number: Some(10),
                code: NodeCode::App(ErrorCode::ByteRate),
                message,
                ..
            }) if message == "over budget"
        ),
        "{err}"
    );
    assert_eq!(publisher.refused(), 2);
    assert_eq!(publisher.publish("d", true).await.unwrap(), 11);
    let finished = publisher.finish().await.unwrap();
    assert_eq!((finished.next, finished.sent, finished.refused), (12, 4, 2));
    let (after, last) = tokio::time::timeout(TIMEOUT, node).await.unwrap().unwrap();
    assert_eq!((after.number, after.payload.as_slice()), (10, &b"c"[..]));
    assert_eq!((last.number, last.payload.as_slice()), (11, &b"d"[..]));
}

#[tokio::test]
async fn finish_reports_a_refusal_the_publisher_had_not_read() {
    let (url, node) = node_after_handshake(Some(1), |mut ws| async move {
        decoded(&frame_from(&mut ws).await);
        let (id, method, _, _) = request(&mut ws).await;
        assert_eq!(method, STREAM_PUBLISH);
        // The refusal comes before the answer, as it would from a node reading in order.
        notify(
            &mut ws,
            STREAM_REFUSED,
            notice(Some(1), ErrorCode::ByteRate, "over budget"),
        )
        .await;
        answer(&mut ws, id, publishing_answer(1)).await;
    })
    .await;
    let mut publisher = open_publisher(&url).await;
    publisher.publish("x", true).await.unwrap();
    let err = publisher.finish().await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::ByteRate));
    tokio::time::timeout(TIMEOUT, node).await.unwrap().unwrap();
}

#[tokio::test]
async fn settle_counts_every_refusal_that_came_before_the_nodes_answer() {
    let (url, node) = node_after_handshake(Some(1), |mut ws| async move {
        let (id, method, _, frames) = request(&mut ws).await;
        assert_eq!((method.as_str(), frames.len()), (STREAM_PUBLISH, 2));
        for number in [1, 2] {
            notify(
                &mut ws,
                STREAM_REFUSED,
                notice(Some(number), ErrorCode::ByteRate, "over budget"),
            )
            .await;
        }
        answer(&mut ws, id, publishing_answer(1)).await;
        // The close the publisher sends at the end.
        let _ = tokio::time::timeout(TIMEOUT, ws.next()).await;
    })
    .await;
    let mut publisher = open_publisher(&url).await;
    publisher.publish("x", true).await.unwrap();
    publisher.publish("y", true).await.unwrap();
    let err = publisher.settle().await.unwrap_err();
    assert!(
        matches!(
            err,
            SdkError::Stream(StreamError::Refused {
                number: Some(1),
                ..
            })
        ),
        "{err}"
    );
    // The first refusal is the error; both are counted.
    assert_eq!(publisher.refused(), 2);
    publisher.close().await;
    tokio::time::timeout(TIMEOUT, node).await.unwrap().unwrap();
}

#[tokio::test]
async fn finish_reports_a_refusal_it_cannot_read() {
    let (url, node) = node_after_handshake(Some(1), |mut ws| async move {
        let (id, method, _, _) = request(&mut ws).await;
        assert_eq!(method, STREAM_PUBLISH);
        notify(&mut ws, STREAM_REFUSED, json!({"number": "one"})).await;
        answer(&mut ws, id, publishing_answer(2)).await;
        let _ = tokio::time::timeout(TIMEOUT, ws.next()).await;
    })
    .await;
    let mut publisher = open_publisher(&url).await;
    publisher.publish("x", true).await.unwrap();
    let err = publisher.finish().await.unwrap_err();
    assert!(
        matches!(
            err,
            SdkError::Stream(StreamError::BadAnswer {
                method: STREAM_REFUSED,
                ..
            })
        ),
        "{err}"
    );
    tokio::time::timeout(TIMEOUT, node).await.unwrap().unwrap();
}

#[tokio::test]
async fn a_publisher_of_a_space_that_is_not_a_stream_dials_nothing() {
    let chat = SpaceId::new(SpaceType::Channel, owner().did(), "chat").unwrap();
    // Nothing listens there: only a check made before dialling can give this error.
    let err = Publisher::open("ws://127.0.0.1:9", owner(), &chat)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            SdkError::Stream(StreamError::Frame(FrameError::NotAStream(_)))
        ),
        "{err}"
    );
}

#[tokio::test]
async fn payloads_over_the_nodes_limit_are_refused_before_sending() {
    let (url, node) = node_after_handshake(Some(1), |mut ws| async move {
        // Nothing but the closing call arrives: the oversized payload never left.
        publishing(&mut ws, 1).await
    })
    .await;
    let mut publisher = open_publisher(&url).await;
    let err = publisher.publish(vec![0; 1025], true).await.unwrap_err();
    assert!(
        matches!(
            err,
            SdkError::Stream(StreamError::FrameTooLarge {
                len: 1025,
                max: 1024
            })
        ),
        "{err}"
    );
    assert_eq!(publisher.next(), 1);
    publisher.finish().await.unwrap();
    assert!(
        tokio::time::timeout(TIMEOUT, node)
            .await
            .unwrap()
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn not_sequencer_is_the_nodes_refusal_with_its_code() {
    let (url, _node) = node_after_handshake(None, |mut ws| async move {
        let (id, _, _, _) = request(&mut ws).await;
        refuse(
            &mut ws,
            id,
            ErrorCode::NotSequencer,
            "publish at 127.0.0.1:1",
        )
        .await;
        // Keep the connection until the client has read the answer.
        let _ = tokio::time::timeout(TIMEOUT, ws.next()).await;
    })
    .await;
    let err = Publisher::open(&url, owner(), &radio()).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::NotSequencer));
    assert_eq!(
        err.to_string(),
        "stream.publish: the node refused with not_sequencer (1702): publish at 127.0.0.1:1"
    );
}

#[tokio::test]
async fn a_publisher_refuses_a_challenge_for_another_origin_and_a_key_not_the_owners() {
    let (url, accept) = scripted().await;
    let origin = url.clone();
    tokio::spawn(async move {
        let mut ws = accept.await.unwrap();
        handshake(&mut ws, &origin, "ws://elsewhere.example").await;
        let _ = tokio::time::timeout(TIMEOUT, ws.next()).await;
    });
    let err = Publisher::open(&url, owner(), &radio()).await.unwrap_err();
    assert!(
        matches!(
            err,
            SdkError::Auth(AuthError::Challenge(ChallengeRefused::WrongOrigin { .. }))
        ),
        "{err}"
    );

    let mallory = Keypair::from_seed(&[6; 32]);
    let err = Publisher::open(&url, mallory, &radio()).await.unwrap_err();
    assert!(
        matches!(
            err,
            SdkError::Stream(StreamError::Frame(FrameError::NotOwner { .. }))
        ),
        "{err}"
    );
}

#[tokio::test]
async fn a_watch_delivers_checked_frames_in_order_and_ends_on_slow_watcher() {
    let (url, accept) = scripted().await;
    let origin = url.clone();
    let node = tokio::spawn(async move {
        let mut ws = accept.await.unwrap();
        info_only(&mut ws, &origin).await;
        let (id, method, params, _) = request(&mut ws).await;
        assert_eq!(method, STREAM_WATCH);
        assert_eq!(params, json!([radio().as_str()]));
        // A frame of the window may come before the answer.
        ws.send(Message::binary(signed(&owner(), radio(), 1, b"one")))
            .await
            .unwrap();
        let watching = StreamWatching {
            space: radio(),
            start: Some(1),
            newest: Some(1),
        };
        answer(&mut ws, id, watching).await;
        let mut forged = signed(&owner(), radio(), 2, b"two");
        let last = forged.len() - 1;
        forged[last] ^= 0x40;
        let tv = SpaceId::new(SpaceType::Stream, owner().did(), "tv").unwrap();
        for bytes in [
            signed(&owner(), radio(), 1, b"one again"),
            forged,
            signed(&owner(), radio(), 4, b"four"),
            signed(&owner(), radio(), 3, b"three, late"),
            signed(&owner(), tv, 5, b"elsewhere"),
            signed(&owner(), radio(), 5, b"five"),
        ] {
            ws.send(Message::binary(bytes)).await.unwrap();
        }
        notify(
            &mut ws,
            STREAM_CLOSED,
            notice(None, ErrorCode::SlowWatcher, "dropped every frame for 5 s"),
        )
        .await;
        ws
    });
    let mut watch = watch(&url, &radio(), None).await.unwrap();
    assert_eq!(watch.watching().start, Some(1));

    let mut items = Vec::new();
    while let Some(item) = tokio::time::timeout(TIMEOUT, watch.next()).await.unwrap() {
        items.push(item);
    }
    let frame = |number, payload: &[u8], gap| WatchedFrame {
        number,
        timestamp: T + number,
        key: true,
        payload: payload.to_vec(),
        gap,
    };
    assert_eq!(items.len(), 6, "{items:?}");
    assert_eq!(items[0].as_ref().unwrap(), &frame(1, b"one", 0));
    assert!(matches!(
        items[1],
        Err(SdkError::Stream(StreamError::BadFrame {
            source: FrameError::BadSignature,
            ..
        }))
    ));
    assert_eq!(items[2].as_ref().unwrap(), &frame(4, b"four", 2));
    assert!(matches!(
        items[3],
        Err(SdkError::Stream(StreamError::WrongSpace { .. }))
    ));
    assert_eq!(items[4].as_ref().unwrap(), &frame(5, b"five", 0));
    let ended = items[5].as_ref().unwrap_err();
    assert_eq!(ended.code(), Some(ErrorCode::SlowWatcher));
    assert!(ended.is_transient());
    assert!(
        matches!(ended, SdkError::Stream(StreamError::Ended { code: NodeCode::App(ErrorCode::SlowWatcher), message, .. }) if message == "dropped every frame for 5 s")
    );
    assert_eq!(watch.last(), Some(5));
    tokio::time::timeout(TIMEOUT, node).await.unwrap().unwrap();
}

#[tokio::test]
async fn a_resumed_watch_sends_since_authenticates_and_reports_a_dropped_connection() {
    let (url, _node) = node_after_handshake(None, |mut ws| async move {
        let (id, method, params, _) = request(&mut ws).await;
        assert_eq!(method, STREAM_WATCH);
        assert_eq!(params, json!([radio().as_str(), 7]));
        let watching = StreamWatching {
            space: radio(),
            start: Some(9),
            newest: Some(9),
        };
        answer(&mut ws, id, watching).await;
        ws.send(Message::binary(signed(&owner(), radio(), 9, b"nine")))
            .await
            .unwrap();
        // Then the connection drops.
    })
    .await;
    let key = owner();
    let mut watch = Watch::open(&url, Some(&key), &radio(), Some(7))
        .await
        .unwrap();
    assert_eq!(watch.last(), Some(7));
    let first = tokio::time::timeout(TIMEOUT, watch.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!((first.number, first.gap), (9, 1));
    let err = tokio::time::timeout(TIMEOUT, watch.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap_err();
    assert!(err.is_transient(), "{err}");
    assert!(
        tokio::time::timeout(TIMEOUT, watch.next())
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(watch.last(), Some(9));
}

#[tokio::test]
async fn a_resumed_watch_takes_the_new_run_of_a_restarted_owner() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}", listener.local_addr().unwrap());
    let origin = url.clone();
    let node = tokio::spawn(async move {
        // First connection: frames 7 to 9, then the connection drops.
        let (tcp, _) = listener.accept().await.unwrap();
        let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
        info_only(&mut ws, &origin).await;
        let (id, method, _, _) = request(&mut ws).await;
        assert_eq!(method, STREAM_WATCH);
        let watching = StreamWatching {
            space: radio(),
            start: Some(7),
            newest: Some(9),
        };
        answer(&mut ws, id, watching).await;
        for number in 7..=9 {
            ws.send(Message::binary(signed(&owner(), radio(), number, b"old")))
                .await
                .unwrap();
        }
        drop(ws);
        // Second connection: the owner's node restarted, so frame 1 again, stamped later.
        let (tcp, _) = listener.accept().await.unwrap();
        let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
        info_only(&mut ws, &origin).await;
        let (id, method, params, _) = request(&mut ws).await;
        assert_eq!(method, STREAM_WATCH);
        assert_eq!(params, json!([radio().as_str(), 9]));
        let watching = StreamWatching {
            space: radio(),
            start: Some(1),
            newest: Some(1),
        };
        answer(&mut ws, id, watching).await;
        let restarted = Frame::sign(&owner(), radio(), 1, T + 60_000, true, b"new".to_vec())
            .unwrap()
            .encode()
            .unwrap();
        ws.send(Message::binary(restarted)).await.unwrap();
        // Then this connection drops too: a watch that dropped frame 1 sees only that.
    });
    let mut first = watch(&url, &radio(), None).await.unwrap();
    for number in 7..=9 {
        let frame = tokio::time::timeout(TIMEOUT, first.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(frame.number, number);
    }
    let err = tokio::time::timeout(TIMEOUT, first.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap_err();
    assert!(err.is_transient(), "{err}");

    let mut again = first.resume(&url, None).await.unwrap();
    let frame = tokio::time::timeout(TIMEOUT, again.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(
        (frame.number, frame.gap, frame.payload.as_slice()),
        (1, 0, &b"new"[..])
    );
    assert_eq!(again.last(), Some(1));
    tokio::time::timeout(TIMEOUT, node).await.unwrap().unwrap();
}

#[tokio::test]
async fn stream_connections_refuse_a_node_of_another_protocol_version() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}", listener.local_addr().unwrap());
    let origin = url.clone();
    tokio::spawn(async move {
        // One connection for the publisher, one for the watcher: each asks node.info first.
        for _ in 0..2 {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
            let (id, method, _, _) = request(&mut ws).await;
            assert_eq!(method, NODE_INFO);
            let mut info = node_info(&origin);
            info.protocol += 1;
            answer(&mut ws, id, info).await;
            let _ = tokio::time::timeout(TIMEOUT, ws.next()).await;
        }
    });
    let ours = northstar_protocol::PROTOCOL_VERSION;
    let err = Publisher::open(&url, owner(), &radio()).await.unwrap_err();
    assert!(
        matches!(err, SdkError::Protocol { node, .. } if node == ours + 1),
        "{err}"
    );
    let err = watch(&url, &radio(), None).await.unwrap_err();
    assert!(
        matches!(err, SdkError::Protocol { node, .. } if node == ours + 1),
        "{err}"
    );
}
