//! The WebSocket a publisher or a watcher opens for itself: JSON-RPC calls as text messages
//! (`spec/protocol.md` §6.1), frames as binary ones (§10.1).
//!
//! A call sends one request and reads until the response with its id arrives. Whatever comes
//! in meanwhile (frames of a watch, `stream.refused` or `stream.closed` notifications) is kept,
//! in order, in a [`Backlog`] bounded in messages and in bytes, that the owner drains
//! afterwards. A publisher's connection keeps no frames (it watches nothing); a notification
//! the backlog has no room for is not dropped silently: the owner reads [`Incoming::Lost`].

use std::collections::VecDeque;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use jsonrpsee::types::ErrorObjectOwned;
use jsonrpsee::types::error::INTERNAL_ERROR_CODE;
use northstar_protocol::Keypair;
use northstar_protocol::api::{Authenticated, NodeInfo};
use northstar_protocol::frame::MAX_PAYLOAD;
use northstar_protocol::method::{AUTH_CHALLENGE, AUTH_RESPOND, NODE_INFO};
use northstar_protocol::wire::{AuthChallenge, AuthResponse};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Bytes, Message};
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};
use tracing::{debug, warn};

use super::StreamError;
use crate::auth::origin_of;
use crate::client::{Handshake, handshake};
use crate::error::SdkError;
use crate::tls::Trust;

/// How long opening the WebSocket may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long one call may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Messages kept while a call waits for its response. A node sends at most its recent window
/// of frames (512 by default) before or around a `stream.watch` answer; past this bound a
/// frame is dropped, which its watcher sees as a gap, and a notification is dropped and
/// reported as [`Incoming::Lost`].
const BACKLOG: usize = 1024;

/// Bytes kept while a call waits for its response, under the same rules as [`BACKLOG`]: a
/// frame may be 16 MiB, so a count alone would let 1024 of them hold 16 GiB. The default
/// window (512 frames of the default 16 KiB) is 8 MiB, well within.
const BACKLOG_BYTES: usize = 32 << 20;

/// The largest message read: a frame of the largest payload the encoding allows, with room
/// for its header, space id and signature.
const MAX_MESSAGE: usize = MAX_PAYLOAD + 4096;

/// How long a graceful close waits for the node's answer.
const CLOSE_WAIT: Duration = Duration::from_secs(1);

/// What arrives besides responses.
#[derive(Debug)]
pub(crate) enum Incoming {
    /// A binary message: a frame, unchecked.
    Frame(Bytes),
    /// A JSON-RPC notification.
    Notice {
        /// Its method.
        method: String,
        /// Its params (`null` when absent).
        params: Value,
    },
    /// The connection ended.
    Closed(StreamError),
    /// This many notifications came while a call waited and found the backlog full: they are
    /// lost.
    Lost(u64),
}

impl Incoming {
    /// The bytes it holds, as the backlog counts them.
    fn size(&self) -> usize {
        match self {
            Incoming::Frame(bytes) => bytes.len(),
            Incoming::Notice { method, params } => method.len() + params.to_string().len(),
            Incoming::Closed(_) | Incoming::Lost(_) => 0,
        }
    }
}

/// What a connection read while a call waited, bounded by [`BACKLOG`] messages and
/// [`BACKLOG_BYTES`] bytes.
#[derive(Debug)]
struct Backlog {
    items: VecDeque<Incoming>,
    bytes: usize,
    max_items: usize,
    max_bytes: usize,
    /// Whether frames are kept: not on a publisher's connection, which watches nothing.
    keep_frames: bool,
    /// Notifications dropped since the owner last heard of it.
    lost: u64,
}

impl Backlog {
    fn new(max_items: usize, max_bytes: usize) -> Self {
        Self {
            items: VecDeque::new(),
            bytes: 0,
            max_items,
            max_bytes,
            keep_frames: true,
            lost: 0,
        }
    }

    fn push(&mut self, incoming: Incoming) {
        let size = incoming.size();
        let is_frame = matches!(incoming, Incoming::Frame(_));
        if is_frame && !self.keep_frames {
            return;
        }
        if self.items.len() < self.max_items && self.bytes + size <= self.max_bytes {
            self.bytes += size;
            self.items.push_back(incoming);
        } else if is_frame {
            // A watcher sees it as a gap.
            debug!(bytes = size, "stream backlog full: dropping a frame");
        } else {
            warn!("stream backlog full: dropping a notification");
            self.lost += 1;
        }
    }

    /// The oldest message kept; once all are read, the notifications lost, if any were.
    fn pop(&mut self) -> Option<Incoming> {
        match self.items.pop_front() {
            Some(incoming) => {
                self.bytes -= incoming.size();
                Some(incoming)
            }
            None if self.lost > 0 => Some(Incoming::Lost(std::mem::take(&mut self.lost))),
            None => None,
        }
    }
}

/// One stream connection.
pub(crate) struct Socket {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    url: String,
    next_id: u64,
    backlog: Backlog,
}

impl std::fmt::Debug for Socket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Socket")
            .field("url", &self.url)
            .field("backlog", &self.backlog.items.len())
            .finish_non_exhaustive()
    }
}

/// A text message read as JSON-RPC.
#[derive(Debug, PartialEq)]
enum Parsed {
    /// A response to the request with this id: its result, or its error's code and message.
    Response {
        id: Option<u64>,
        outcome: Result<Value, ErrorObjectOwned>,
    },
    /// A notification.
    Notice { method: String, params: Value },
    /// Not JSON-RPC, or nothing this client reads.
    Other,
}

impl Socket {
    /// Open a WebSocket to `url`; over `wss://`, accepting the certificates `trust` accepts.
    pub(crate) async fn open(url: &str, trust: &Trust) -> Result<Self, SdkError> {
        origin_of(url)?;
        let config = WebSocketConfig::default()
            .max_message_size(Some(MAX_MESSAGE))
            .max_frame_size(Some(MAX_MESSAGE));
        let connector = if url.starts_with("wss://") {
            Some(Connector::Rustls(trust.client_config()?))
        } else {
            None
        };
        let connect =
            tokio_tungstenite::connect_async_tls_with_config(url, Some(config), true, connector);
        let (ws, _) = tokio::time::timeout(CONNECT_TIMEOUT, connect)
            .await
            .map_err(|_| StreamError::Connect {
                url: url.to_owned(),
                source: tokio_tungstenite::tungstenite::Error::Io(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "no WebSocket within 10 s",
                )),
            })?
            .map_err(|source| StreamError::Connect {
                url: url.to_owned(),
                source,
            })?;
        Ok(Self {
            ws,
            url: url.to_owned(),
            next_id: 1,
            backlog: Backlog::new(BACKLOG, BACKLOG_BYTES),
        })
    }

    /// The handshake of `spec/` §5, as [`crate::Client`] runs it: `node.info` must name this
    /// SDK's protocol version, and, given a key, names the node the challenge must come from.
    pub(crate) async fn handshake(&mut self, key: Option<&Keypair>) -> Result<NodeInfo, SdkError> {
        let url = self.url.clone();
        let info = handshake(self, &url, key).await?;
        debug!(node = %info.did, authenticated = key.is_some(), "stream connection open");
        Ok(info)
    }

    /// Call `method` with positional `params` and read its result as `T`.
    pub(crate) async fn call<T: DeserializeOwned>(
        &mut self,
        method: &'static str,
        params: Value,
    ) -> Result<T, SdkError> {
        let id = self.next_id;
        self.next_id += 1;
        let request = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        let outcome = tokio::time::timeout(REQUEST_TIMEOUT, self.exchange(id, request.to_string()))
            .await
            .map_err(|_| StreamError::Timeout {
                method,
                secs: REQUEST_TIMEOUT.as_secs(),
            })??;
        match outcome {
            Ok(result) => serde_json::from_value(result).map_err(|e| {
                StreamError::BadAnswer {
                    method,
                    reason: e.to_string(),
                }
                .into()
            }),
            Err(object) => Err(SdkError::from_object(method, &object)),
        }
    }

    /// Send a request and read until its response, keeping what else arrives.
    async fn exchange(
        &mut self,
        id: u64,
        request: String,
    ) -> Result<Result<Value, ErrorObjectOwned>, StreamError> {
        self.ws
            .send(Message::text(request))
            .await
            .map_err(|source| self.transport(source))?;
        loop {
            let message = self.ws.next().await;
            match self.classify(message) {
                Read::Response(got, outcome) if got == Some(id) => return Ok(outcome),
                // A response to a call that timed out earlier.
                Read::Response(..) | Read::Nothing => {}
                Read::Keep(Incoming::Closed(err)) => return Err(err),
                Read::Keep(incoming) => self.keep(incoming),
            }
        }
    }

    /// The next message that is not a response: from the backlog first.
    pub(crate) fn poll_incoming(&mut self, cx: &mut Context<'_>) -> Poll<Incoming> {
        if let Some(incoming) = self.backlog.pop() {
            return Poll::Ready(incoming);
        }
        loop {
            let Poll::Ready(message) = self.ws.poll_next_unpin(cx) else {
                return Poll::Pending;
            };
            match self.classify(message) {
                Read::Keep(incoming) => return Poll::Ready(incoming),
                Read::Response(..) | Read::Nothing => {}
            }
        }
    }

    /// What has arrived already, without waiting: `None` when nothing has.
    pub(crate) fn try_incoming(&mut self) -> Option<Incoming> {
        let waker = futures_util::task::noop_waker();
        match self.poll_incoming(&mut Context::from_waker(&waker)) {
            Poll::Ready(incoming) => Some(incoming),
            Poll::Pending => None,
        }
    }

    /// Send one frame, as one binary message.
    pub(crate) async fn send_frame(&mut self, bytes: Vec<u8>) -> Result<(), StreamError> {
        self.ws
            .send(Message::binary(bytes))
            .await
            .map_err(|source| self.transport(source))
    }

    /// Close the connection gracefully: send a close frame and wait a moment for the node's.
    pub(crate) async fn close(&mut self) {
        if self.ws.close(None).await.is_err() {
            return;
        }
        let drain = async {
            loop {
                let message = self.ws.next().await;
                if matches!(message, None | Some(Err(_))) {
                    return;
                }
            }
        };
        // A node that does not answer the close in time is left to time out on its own.
        let _ = tokio::time::timeout(CLOSE_WAIT, drain).await;
    }

    /// The URL dialled.
    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    fn keep(&mut self, incoming: Incoming) {
        self.backlog.push(incoming);
    }

    /// Keep no frames from now on: the connection publishes, and frames are not for it.
    pub(crate) fn drop_frames(&mut self) {
        self.backlog.keep_frames = false;
        self.backlog
            .items
            .retain(|i| !matches!(i, Incoming::Frame(_)));
        self.backlog.bytes = self.backlog.items.iter().map(Incoming::size).sum();
    }

    fn transport(&self, source: tokio_tungstenite::tungstenite::Error) -> StreamError {
        use tokio_tungstenite::tungstenite::Error;
        match source {
            Error::ConnectionClosed | Error::AlreadyClosed => StreamError::Closed {
                url: self.url.clone(),
            },
            source => StreamError::Transport {
                url: self.url.clone(),
                source,
            },
        }
    }

    fn classify(
        &self,
        message: Option<Result<Message, tokio_tungstenite::tungstenite::Error>>,
    ) -> Read {
        let closed = || {
            Read::Keep(Incoming::Closed(StreamError::Closed {
                url: self.url.clone(),
            }))
        };
        match message {
            None | Some(Ok(Message::Close(_))) => closed(),
            Some(Err(source)) => Read::Keep(Incoming::Closed(self.transport(source))),
            Some(Ok(Message::Binary(bytes))) => Read::Keep(Incoming::Frame(bytes)),
            Some(Ok(Message::Text(text))) => match parse(&text) {
                Parsed::Response { id, outcome } => Read::Response(id, outcome),
                Parsed::Notice { method, params } => {
                    Read::Keep(Incoming::Notice { method, params })
                }
                Parsed::Other => {
                    debug!("ignoring a text message that is not JSON-RPC");
                    Read::Nothing
                }
            },
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => Read::Nothing,
        }
    }
}

impl Handshake for Socket {
    async fn node_info(&mut self) -> Result<NodeInfo, SdkError> {
        self.call(NODE_INFO, json!([])).await
    }

    async fn challenge(&mut self) -> Result<AuthChallenge, SdkError> {
        self.call(AUTH_CHALLENGE, json!([])).await
    }

    async fn respond(&mut self, response: AuthResponse) -> Result<Authenticated, SdkError> {
        self.call(AUTH_RESPOND, json!([response])).await
    }
}

/// One message, sorted.
enum Read {
    Response(Option<u64>, Result<Value, ErrorObjectOwned>),
    Keep(Incoming),
    Nothing,
}

/// Read a text message as a response or a notification.
fn parse(text: &str) -> Parsed {
    let Ok(Value::Object(mut object)) = serde_json::from_str::<Value>(text) else {
        return Parsed::Other;
    };
    if let Some(id) = object.get("id") {
        let id = id.as_u64();
        let outcome = if let Some(error) = object.remove("error") {
            Err(
                serde_json::from_value::<ErrorObjectOwned>(error.clone()).unwrap_or_else(|_| {
                    ErrorObjectOwned::owned(
                        INTERNAL_ERROR_CODE,
                        format!("malformed error object: {error}"),
                        None::<()>,
                    )
                }),
            )
        } else if let Some(result) = object.remove("result") {
            Ok(result)
        } else {
            return Parsed::Other;
        };
        return Parsed::Response { id, outcome };
    }
    match object.remove("method") {
        Some(Value::String(method)) => Parsed::Notice {
            method,
            params: object.remove("params").unwrap_or(Value::Null),
        },
        _ => Parsed::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_results_errors_and_notifications() {
        assert_eq!(
            parse(r#"{"jsonrpc":"2.0","id":7,"result":{"next":1}}"#),
            Parsed::Response {
                id: Some(7),
                outcome: Ok(json!({"next": 1}))
            }
        );
        assert_eq!(
            parse(r#"{"jsonrpc":"2.0","id":8,"error":{"code":1702,"message":"not here"}}"#),
            Parsed::Response {
                id: Some(8),
                outcome: Err(ErrorObjectOwned::owned(1702, "not here", None::<()>))
            }
        );
        assert_eq!(
            parse(r#"{"jsonrpc":"2.0","method":"stream.closed","params":{"code":1708}}"#),
            Parsed::Notice {
                method: "stream.closed".into(),
                params: json!({"code": 1708})
            }
        );
    }

    #[test]
    fn a_null_id_or_a_broken_error_is_still_a_response() {
        let Parsed::Response { id, outcome } =
            parse(r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"x"}}"#)
        else {
            panic!("not a response");
        };
        assert_eq!(
            (id, outcome),
            (None, Err(ErrorObjectOwned::owned(-32700, "x", None::<()>)))
        );
        let Parsed::Response { outcome, .. } = parse(r#"{"id":3,"error":"boom"}"#) else {
            panic!("not a response");
        };
        assert_eq!(outcome.unwrap_err().code(), INTERNAL_ERROR_CODE);
    }

    fn notice(n: u64) -> Incoming {
        Incoming::Notice {
            method: "stream.closed".into(),
            params: json!({"n": n}),
        }
    }

    fn frame(len: usize) -> Incoming {
        Incoming::Frame(Bytes::from(vec![0; len]))
    }

    #[test]
    fn the_backlog_is_bounded_in_bytes_and_reports_lost_notifications() {
        let mut backlog = Backlog::new(100, 1000);
        backlog.push(frame(600));
        // Over the byte bound: dropped, a gap for the watcher.
        backlog.push(frame(600));
        backlog.push(frame(395));
        // No room for a notification either: it is lost, and said to be.
        backlog.push(notice(1));
        backlog.push(notice(2));
        assert!(matches!(backlog.pop(), Some(Incoming::Frame(b)) if b.len() == 600));
        assert!(matches!(backlog.pop(), Some(Incoming::Frame(b)) if b.len() == 395));
        assert!(matches!(backlog.pop(), Some(Incoming::Lost(2))));
        assert!(backlog.pop().is_none());
        assert_eq!(backlog.bytes, 0);
        // Room again once read.
        backlog.push(frame(1000));
        assert!(matches!(backlog.pop(), Some(Incoming::Frame(b)) if b.len() == 1000));
    }

    #[test]
    fn the_backlog_is_bounded_in_messages_too() {
        let mut backlog = Backlog::new(2, usize::MAX);
        for n in 0..3 {
            backlog.push(notice(n));
        }
        assert!(matches!(backlog.pop(), Some(Incoming::Notice { .. })));
        assert!(matches!(backlog.pop(), Some(Incoming::Notice { .. })));
        assert!(matches!(backlog.pop(), Some(Incoming::Lost(1))));
    }

    #[test]
    fn a_publishers_backlog_keeps_notifications_but_no_frames() {
        let mut backlog = Backlog::new(100, 1000);
        backlog.keep_frames = false;
        backlog.push(frame(10));
        backlog.push(notice(1));
        assert!(matches!(backlog.pop(), Some(Incoming::Notice { .. })));
        assert!(backlog.pop().is_none());
    }

    #[test]
    fn ignores_what_is_not_json_rpc() {
        for text in ["", "[]", "42", "{", r#"{"id":1}"#, r#"{"method":3}"#] {
            assert_eq!(parse(text), Parsed::Other, "{text}");
        }
    }
}
