//! A man-in-the-middle between clients and a node, for tests of what a client does with events
//! it must refuse.
//!
//! The proxy passes plain HTTP through byte for byte (the browser loads the app through it) and
//! relays WebSocket sessions message by message. While switched on, it changes the `timestamp`
//! of every event the node sends (in `space.event` notifications, plain or with the beam inline,
//! and in `space.events` pages), so the sequencer's signature no longer holds: a client that
//! verifies refuses them, and one that does not shows a forged event.
//!
//! The node must name the proxy as its public URL (the challenge's origin), so the proxy's
//! listener is bound first ([`TamperProxy::bind`]) and the node started with [`TamperProxy::url`],
//! then [`TamperProxy::forward_to`] the node.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use futures_util::{SinkExt, StreamExt};
use northstar_protocol::method::{SPACE_EVENT, SPACE_EVENTS};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_util::task::AbortOnDropHandle;

/// The longest request head the proxy reads before deciding how to relay the connection.
const MAX_HEAD: usize = 16 * 1024;

/// The switch and the count of events altered, shared with the relaying tasks.
#[derive(Default)]
struct Switch {
    on: AtomicBool,
    tampered: AtomicU64,
}

/// The proxy; relaying stops when it is dropped.
pub struct TamperProxy {
    addr: SocketAddr,
    listener: Option<TcpListener>,
    switch: Arc<Switch>,
    /// The accept loop, which owns every connection's task.
    task: Option<AbortOnDropHandle<()>>,
}

impl TamperProxy {
    /// Bind the proxy's port on 127.0.0.1; nothing is relayed before [`Self::forward_to`].
    pub async fn bind() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self {
            addr: listener.local_addr().unwrap(),
            listener: Some(listener),
            switch: Arc::default(),
            task: None,
        }
    }

    /// The proxy's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The node's public URL when it sits behind this proxy.
    pub fn url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    /// The proxy's HTTP origin, for a browser.
    pub fn http(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Start relaying every connection to `node`.
    pub fn forward_to(&mut self, node: SocketAddr) {
        let listener = self.listener.take().expect("forward_to is called once");
        let switch = self.switch.clone();
        self.task = Some(AbortOnDropHandle::new(tokio::spawn(async move {
            // Dropped with the accept loop: the connections end with the proxy.
            let mut connections = JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((client, _)) = accepted else { continue };
                        connections.spawn(relay(client, node, switch.clone()));
                    }
                    // Reap finished connections so the set does not grow.
                    Some(_) = connections.join_next() => {}
                }
            }
        })));
    }

    /// Alter (`true`) or pass unchanged (`false`) the events the node sends from now on.
    pub fn tamper(&self, on: bool) {
        self.switch.on.store(on, Ordering::SeqCst);
    }

    /// How many events the proxy has altered.
    pub fn tampered(&self) -> u64 {
        self.switch.tampered.load(Ordering::SeqCst)
    }
}

/// Relay one client connection: a WebSocket session message by message, anything else as bytes.
async fn relay(mut client: TcpStream, node: SocketAddr, switch: Arc<Switch>) {
    let mut head = Vec::new();
    let mut chunk = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match client.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&chunk[..n]),
        }
        if head.len() > MAX_HEAD {
            return;
        }
    }
    let text = String::from_utf8_lossy(&head).into_owned();
    let Ok(mut upstream) = TcpStream::connect(node).await else {
        return;
    };
    match websocket_key(&text) {
        None => {
            // Plain HTTP (keep-alive included): the bytes read so far, then both ways as is.
            if upstream.write_all(&head).await.is_ok() {
                // Ends when either side closes; nothing to report to the test.
                let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
            }
        }
        Some(key) => {
            let path = text.split(' ').nth(1).unwrap_or("/").to_owned();
            let Ok((node_ws, _)) =
                tokio_tungstenite::client_async(format!("ws://{node}{path}"), upstream).await
            else {
                return;
            };
            let accept = format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
                 Connection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
                derive_accept_key(key.as_bytes())
            );
            if client.write_all(accept.as_bytes()).await.is_err() {
                return;
            }
            let client_ws = WebSocketStream::from_raw_socket(client, Role::Server, None).await;
            relay_messages(client_ws, node_ws, &switch).await;
        }
    }
}

/// The `Sec-WebSocket-Key` of a WebSocket upgrade request's head; `None` for any other request.
fn websocket_key(head: &str) -> Option<String> {
    let mut upgrade = false;
    let mut key = None;
    for line in head.lines().skip(1) {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let (name, value) = (name.trim().to_ascii_lowercase(), value.trim());
        if name == "upgrade" && value.eq_ignore_ascii_case("websocket") {
            upgrade = true;
        }
        if name == "sec-websocket-key" {
            key = Some(value.to_owned());
        }
    }
    key.filter(|_| upgrade)
}

/// Relay messages both ways until either side closes, altering the node's events while the
/// switch is on. Pings are answered on each hop by tungstenite itself.
async fn relay_messages<C, N>(client: WebSocketStream<C>, node: WebSocketStream<N>, switch: &Switch)
where
    C: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    N: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let (mut to_client, mut from_client) = client.split();
    let (mut to_node, mut from_node) = node.split();
    // The ids of the client's `space.events` calls, whose answers are pages of events.
    let pages = std::sync::Mutex::new(std::collections::HashSet::new());
    let up = async {
        while let Some(Ok(message)) = from_client.next().await {
            if let Message::Text(text) = &message
                && let Ok(call) = serde_json::from_str::<Value>(text)
                && call["method"] == SPACE_EVENTS
            {
                pages.lock().unwrap().insert(call["id"].to_string());
            }
            let close = message.is_close();
            if (message.is_text() || message.is_binary() || close)
                && to_node.send(message).await.is_err()
            {
                break;
            }
            if close {
                break;
            }
        }
    };
    let down = async {
        while let Some(Ok(message)) = from_node.next().await {
            let close = message.is_close();
            let message = match message {
                Message::Text(text) if switch.on.load(Ordering::SeqCst) => {
                    let page = serde_json::from_str::<Value>(&text)
                        .is_ok_and(|m| pages.lock().unwrap().contains(&m["id"].to_string()));
                    match tamper_text(&text, page) {
                        Some((altered, n)) => {
                            switch.tampered.fetch_add(n, Ordering::SeqCst);
                            Message::text(altered)
                        }
                        None => Message::Text(text),
                    }
                }
                Message::Text(_) | Message::Binary(_) | Message::Close(_) => message,
                _ => continue,
            };
            if to_client.send(message).await.is_err() || close {
                break;
            }
        }
    };
    tokio::select! {
        () = up => {}
        () = down => {}
    }
}

/// `text` with the timestamp of every event it carries moved by 1 ms, and how many it carries;
/// `None` if it carries no event. `page`: `text` answers a `space.events` call.
pub fn tamper_text(text: &str, page: bool) -> Option<(String, u64)> {
    let mut message: Value = serde_json::from_str(text).ok()?;
    let mut altered = 0;
    if message["method"] == SPACE_EVENT {
        if let Some(result) = message.pointer_mut("/params/result") {
            // With beams inline the result is an item, `{event, beam}` (spec §6.3.21).
            let event = if result.get("event").is_some() {
                &mut result["event"]
            } else {
                result
            };
            altered += bump_timestamp(event);
        }
    } else if page {
        // A page, plain or with beams inline: its events are in `result.events` (§6.3.13).
        let events = message
            .pointer_mut("/result/events")
            .and_then(Value::as_array_mut);
        for event in events.into_iter().flatten() {
            altered += bump_timestamp(event);
        }
    }
    (altered > 0).then(|| (message.to_string(), altered))
}

fn bump_timestamp(event: &mut Value) -> u64 {
    match event.get("timestamp").and_then(Value::as_u64) {
        Some(timestamp) => {
            event["timestamp"] = json!(timestamp + 1);
            1
        }
        None => 0,
    }
}
