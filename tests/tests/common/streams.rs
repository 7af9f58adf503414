//! Speaking live streams on the wire (`spec/protocol.md` §10) for the stream tests: a publisher
//! that signs and sends frames, a watcher that checks every frame it reads.

use std::time::{Duration, Instant};

use northstar_protocol::Keypair;
use northstar_protocol::address::{SpaceId, SpaceType};
use northstar_protocol::frame::{Frame, Header};
use northstar_protocol::method;
use northstar_sdk::Client;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use super::{Raw, TIMEOUT, TestNode};

pub use northstar_node::clock::now_ms;

/// A publishing connection of the stream's owner.
pub struct Publisher {
    pub raw: Raw,
    pub key: Keypair,
    pub space: SpaceId,
    pub next: u64,
}

impl Publisher {
    pub async fn open(node: &TestNode, key: &Keypair, space: &SpaceId) -> Self {
        let mut raw = Raw::connect(&node.url).await;
        raw.authenticate(key).await;
        let answer = raw.ok(method::STREAM_PUBLISH, json!([space])).await;
        Self {
            raw,
            key: key.clone(),
            space: space.clone(),
            next: answer["next"].as_u64().unwrap(),
        }
    }

    pub fn frame(&mut self, payload: &[u8], key: bool) -> Vec<u8> {
        let frame = Frame::sign(
            &self.key,
            self.space.clone(),
            self.next,
            now_ms(),
            key,
            payload.to_vec(),
        )
        .unwrap();
        self.next += 1;
        frame.encode().unwrap()
    }

    pub async fn send(&mut self, payload: &[u8], key: bool) -> u64 {
        let bytes = self.frame(payload, key);
        self.raw.send_binary(bytes).await;
        self.next - 1
    }

    /// The next `stream.refused` notice, if one comes within `wait`.
    pub async fn refusal(&mut self, wait: Duration) -> Option<Value> {
        let deadline = Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.raw.next_within(left).await? {
                Message::Text(text) => {
                    let value: Value = serde_json::from_str(&text).unwrap();
                    if value["method"] == method::STREAM_REFUSED {
                        return Some(value["params"].clone());
                    }
                }
                _ => continue,
            }
        }
    }
}

/// A watching connection that checks every frame it gets.
pub struct Watcher {
    pub raw: Raw,
    pub space: SpaceId,
}

/// What a watcher read.
#[derive(Debug, Default)]
pub struct Seen {
    pub numbers: Vec<u64>,
    pub payloads: Vec<Vec<u8>>,
    pub closed: Option<Value>,
}

impl Watcher {
    pub async fn open(node: &TestNode, space: &SpaceId, since: Option<u64>) -> (Self, Value) {
        let mut raw = Raw::connect(&node.url).await;
        let params = match since {
            Some(since) => json!([space, since]),
            None => json!([space]),
        };
        let answer = raw.ok(method::STREAM_WATCH, params).await;
        (
            Self {
                raw,
                space: space.clone(),
            },
            answer,
        )
    }

    /// Read until frame `last` arrived or nothing came for `quiet`.
    pub async fn read_until(&mut self, last: u64, quiet: Duration) -> Seen {
        self.read(last, quiet, true).await
    }

    /// As [`Watcher::read_until`], keeping the numbers only.
    pub async fn numbers_until(&mut self, last: u64, quiet: Duration) -> Seen {
        self.read(last, quiet, false).await
    }

    async fn read(&mut self, last: u64, quiet: Duration, keep: bool) -> Seen {
        let mut seen = Seen::default();
        while seen.numbers.last() != Some(&last) {
            match self.raw.next_within(quiet).await {
                Some(Message::Binary(bytes)) => {
                    let header = Header::read(&bytes).expect("a frame");
                    assert_eq!(header.space, self.space);
                    header.verify(&bytes).expect("an owner-signed frame");
                    seen.numbers.push(header.number);
                    if keep {
                        seen.payloads.push(bytes[header.payload.clone()].to_vec());
                    }
                }
                Some(Message::Text(text)) => {
                    let value: Value = serde_json::from_str(&text).unwrap();
                    if value["method"] == method::STREAM_CLOSED {
                        seen.closed = Some(value["params"].clone());
                        return seen;
                    }
                }
                Some(_) => {}
                None => return seen,
            }
        }
        seen
    }
}

/// Key frames until every watcher has read one, so that the links of the tree above each
/// watcher carry frames before a test counts them; each watcher has then read up to the last
/// warm-up frame, whose number comes back. Fails the test if that takes more than 20 s.
pub async fn warm_up(publisher: &mut Publisher, watchers: &mut [&mut Watcher]) -> u64 {
    let mut read = vec![0u64; watchers.len()];
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        let sent = publisher.send(b"warm-up", true).await;
        for (watcher, last) in watchers.iter_mut().zip(&mut read) {
            let seen = watcher.numbers_until(sent, Duration::from_millis(25)).await;
            *last = seen.numbers.last().copied().unwrap_or(*last);
        }
        if read.iter().all(|&n| n > 0) {
            for (watcher, last) in watchers.iter_mut().zip(&read) {
                if *last < sent {
                    let seen = watcher.numbers_until(sent, TIMEOUT).await;
                    assert_eq!(seen.numbers.last(), Some(&sent), "a warm-up frame was lost");
                }
            }
            return sent;
        }
    }
    panic!("a watcher got no frame within 20 s: {read:?}");
}

pub async fn user(node: &TestNode) -> (Client, Keypair) {
    let key = Keypair::generate().unwrap();
    (Client::connect(&node.url, key.clone()).await.unwrap(), key)
}

pub async fn stream_on(node: &TestNode, name: &str) -> (Client, Keypair, SpaceId) {
    let (client, key) = user(node).await;
    let space = client
        .create_space(SpaceType::Stream, name, name)
        .await
        .unwrap()
        .space;
    (client, key, space)
}
