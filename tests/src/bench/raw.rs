//! Raw WebSocket clients speaking JSON-RPC, for the loads where an SDK client per connection
//! would measure the client instead of the node: thousands of subscribers (the SDK verifies two
//! signatures per event per subscriber, far more work than the node spends delivering it) and
//! thousands of idle connections.
//!
//! A [`Reader`] is one subscriber's receiving side, the same for the node and for the plain
//! broadcast server of the ceiling, so both are read with the same work per message.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use futures_util::{SinkExt, StreamExt, TryStreamExt};
use northstar_protocol::wire::{AuthChallenge, AuthResponse};
use northstar_protocol::{Keypair, method};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::task::AbortOnDropHandle;

/// The WebSocket of a raw client.
pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How long one call or one connection attempt may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// Connections opened at once when opening many.
const OPEN_CONCURRENCY: usize = 64;

/// The read buffer of each raw client: notifications are about 1 KiB, and thousands of
/// clients with tungstenite's default 128 KiB would cost the load generator a gigabyte.
const CLIENT_READ_BUFFER: usize = 16 * 1024;

/// One raw JSON-RPC connection.
pub struct RawConn {
    ws: Ws,
    next_id: u64,
}

impl RawConn {
    /// Open a WebSocket to `url` (Nagle off, small read buffer).
    pub async fn connect(url: &str) -> anyhow::Result<Self> {
        let config = WebSocketConfig::default().read_buffer_size(CLIENT_READ_BUFFER);
        let (ws, _) = tokio::time::timeout(
            CALL_TIMEOUT,
            tokio_tungstenite::connect_async_with_config(url, Some(config), true),
        )
        .await
        .context("connect timed out")?
        .with_context(|| format!("connecting to {url}"))?;
        Ok(Self { ws, next_id: 1 })
    }

    /// Open a WebSocket to the node at `addr` from the loopback address `source`, so a load
    /// generator can stand for another client address.
    pub async fn connect_from(addr: SocketAddr, source: Ipv4Addr) -> anyhow::Result<Self> {
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.bind(SocketAddr::from((source, 0)))?;
        let tcp = tokio::time::timeout(CALL_TIMEOUT, socket.connect(addr))
            .await
            .context("connect timed out")??;
        tcp.set_nodelay(true)?;
        let config = WebSocketConfig::default().read_buffer_size(CLIENT_READ_BUFFER);
        let (ws, _) = tokio::time::timeout(
            CALL_TIMEOUT,
            tokio_tungstenite::client_async_with_config(
                format!("ws://{addr}"),
                MaybeTlsStream::Plain(tcp),
                Some(config),
            ),
        )
        .await
        .context("handshake timed out")??;
        Ok(Self { ws, next_id: 1 })
    }

    /// Call `method`; its result, or an error with the node's error object.
    pub async fn call(&mut self, method: &str, params: Value) -> anyhow::Result<Value> {
        let id = self.next_id;
        self.next_id += 1;
        let request = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        self.ws.send(Message::text(request.to_string())).await?;
        tokio::time::timeout(CALL_TIMEOUT, async {
            loop {
                let Some(msg) = self.ws.try_next().await? else {
                    bail!("{method}: the connection closed");
                };
                let Message::Text(text) = msg else { continue };
                let mut reply: Value = serde_json::from_str(&text)?;
                if reply["id"] != json!(id) {
                    continue; // a notification
                }
                if let Some(error) = reply.get("error") {
                    bail!("{method} failed: {error}");
                }
                return Ok(reply["result"].take());
            }
        })
        .await
        .with_context(|| format!("{method} timed out"))?
    }

    /// Send `request`, a whole JSON-RPC request as text whose id is `id`, and wait for its
    /// reply; an error if the reply is an error object. Ids of `call` and `request` on one
    /// connection must not meet: the caller picks them.
    pub async fn request(&mut self, request: String, id: u64) -> anyhow::Result<()> {
        #[derive(Deserialize)]
        struct Reply<'a> {
            id: Option<u64>,
            #[serde(borrow)]
            error: Option<&'a serde_json::value::RawValue>,
        }
        self.ws.send(Message::text(request)).await?;
        tokio::time::timeout(CALL_TIMEOUT, async {
            loop {
                let Some(msg) = self.ws.try_next().await? else {
                    bail!("request {id}: the connection closed");
                };
                let Message::Text(text) = msg else { continue };
                let reply: Reply<'_> = serde_json::from_str(&text)?;
                if reply.id != Some(id) {
                    continue; // a notification, or the reply to an earlier call
                }
                if let Some(error) = reply.error {
                    bail!("request {id} failed: {}", error.get());
                }
                return Ok(());
            }
        })
        .await
        .with_context(|| format!("request {id} timed out"))?
    }

    /// The challenge-response handshake as `key`.
    pub async fn authenticate(&mut self, key: &Keypair) -> anyhow::Result<()> {
        let challenge: AuthChallenge =
            serde_json::from_value(self.call("auth.challenge", json!([])).await?)?;
        let response = AuthResponse::answer(key, challenge)?;
        self.call("auth.respond", json!([response])).await?;
        Ok(())
    }

    /// Send one text message and wait for any text message back (the plain server echoes).
    pub async fn echo(&mut self, text: &str) -> anyhow::Result<()> {
        self.ws.send(Message::text(text.to_owned())).await?;
        loop {
            match tokio::time::timeout(CALL_TIMEOUT, self.ws.next()).await {
                Ok(Some(Ok(Message::Text(_)))) => return Ok(()),
                Ok(Some(Ok(_))) => {}
                Ok(Some(Err(e))) => return Err(e.into()),
                Ok(None) => bail!("the connection closed"),
                Err(_) => bail!("no echo in time"),
            }
        }
    }

    /// `space.subscribe` from `since`.
    pub async fn subscribe(&mut self, space: &str, since: u64) -> anyhow::Result<()> {
        self.call(method::SPACE_SUBSCRIBE, json!([space, since]))
            .await?;
        Ok(())
    }

    /// `space.subscribe` from `since` with the beams inline.
    pub async fn subscribe_with_beams(&mut self, space: &str, since: u64) -> anyhow::Result<()> {
        self.call(method::SPACE_SUBSCRIBE, json!([space, since, true]))
            .await?;
        Ok(())
    }

    /// The WebSocket, to read notifications.
    pub fn into_ws(self) -> Ws {
        self.ws
    }
}

/// Open `count` connections to `url`, `OPEN_CONCURRENCY` at a time, each authenticated with
/// its own new key if `authenticate`, else with one echo round trip (for the plain server).
pub async fn open_many(
    url: &str,
    count: usize,
    authenticate: bool,
) -> anyhow::Result<Vec<RawConn>> {
    futures_util::stream::iter(0..count)
        .map(|_| async move {
            let mut conn = RawConn::connect(url).await?;
            if authenticate {
                let key = Keypair::generate().map_err(|e| anyhow::anyhow!("{e}"))?;
                conn.authenticate(&key).await?;
            } else {
                conn.echo(r#"{"jsonrpc":"2.0","id":1,"method":"node.info","params":[]}"#)
                    .await?;
            }
            anyhow::Ok(conn)
        })
        .buffer_unordered(OPEN_CONCURRENCY)
        .try_collect()
        .await
}

#[derive(Deserialize)]
struct Notification {
    params: NotificationParams,
}

#[derive(Deserialize)]
struct NotificationParams {
    result: Option<Delivered>,
    error: Option<String>,
}

/// A notification's `result`: an event, or an event item with the beam inline
/// (`spec/protocol.md` §6.3.21); only the event's seq is read.
#[derive(Deserialize)]
struct Delivered {
    seq: Option<u64>,
    event: Option<SeqOnly>,
}

#[derive(Deserialize)]
struct SeqOnly {
    seq: u64,
}

/// What one reader saw up to a boundary: `(seq, when)` per message.
#[derive(Debug)]
pub struct Batch {
    /// Which reader.
    pub reader: usize,
    /// The messages since the last batch.
    pub seen: Vec<(u64, Instant)>,
    /// Set when the subscription or connection ended (the reader sends nothing more).
    pub ended: Option<String>,
}

/// Where readers ship their batches: they ship one as soon as they have seen a seq at or past
/// the boundary the controller set before the phase began.
#[derive(Debug, Clone)]
pub struct Boundary(Arc<AtomicU64>);

impl Boundary {
    /// A boundary no seq reaches yet.
    pub fn new() -> Self {
        Self(Arc::new(AtomicU64::new(u64::MAX)))
    }

    /// Ship when `seq` has been seen.
    pub fn set(&self, seq: u64) {
        self.0.store(seq, Ordering::SeqCst);
    }

    fn reached(&self, seq: u64) -> bool {
        seq >= self.0.load(Ordering::SeqCst)
    }
}

impl Default for Boundary {
    fn default() -> Self {
        Self::new()
    }
}

/// A subscriber's receiving task: parses each `space.event` notification's seq, stamps it, and
/// ships its list at each boundary. Keeps the first message's text, which the ceiling replays.
pub struct Reader {
    _task: AbortOnDropHandle<()>,
}

impl Reader {
    /// Start reading `ws` as reader number `id`.
    pub fn spawn(
        id: usize,
        ws: Ws,
        boundary: Boundary,
        out: mpsc::UnboundedSender<Batch>,
        sample: Option<Arc<std::sync::OnceLock<String>>>,
    ) -> Self {
        let task = tokio::spawn(read(id, ws, boundary, out, sample));
        Self {
            _task: AbortOnDropHandle::new(task),
        }
    }
}

async fn read(
    id: usize,
    mut ws: Ws,
    boundary: Boundary,
    out: mpsc::UnboundedSender<Batch>,
    sample: Option<Arc<std::sync::OnceLock<String>>>,
) {
    let mut seen = Vec::new();
    let ended = loop {
        let text = match ws.next().await {
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(Message::Close(_))) | None => break "the connection closed".to_owned(),
            Some(Ok(_)) => continue,
            Some(Err(e)) => break e.to_string(),
        };
        let note: Notification = match serde_json::from_str(&text) {
            Ok(n) => n,
            Err(e) => break format!("not a notification: {e}"),
        };
        if let Some(error) = note.params.error {
            break error;
        }
        let seq = match note.params.result {
            Some(Delivered { seq: Some(seq), .. })
            | Some(Delivered {
                event: Some(SeqOnly { seq }),
                ..
            }) => seq,
            _ => break "a notification without an event".to_owned(),
        };
        seen.push((seq, Instant::now()));
        if let Some(sample) = &sample {
            // Only the first message is kept; later calls change nothing.
            let _ = sample.set(text.as_str().to_owned());
        }
        if boundary.reached(seq) {
            let batch = Batch {
                reader: id,
                seen: std::mem::take(&mut seen),
                ended: None,
            };
            if out.send(batch).is_err() {
                return; // the controller is gone
            }
        }
    };
    // If the controller is gone there is no one left to tell.
    let _ = out.send(Batch {
        reader: id,
        seen,
        ended: Some(ended),
    });
}
