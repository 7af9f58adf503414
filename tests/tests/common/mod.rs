//! Real nodes on 127.0.0.1 for integration tests: each in its own temp dir, on a port the OS
//! picked, stopped when dropped.
//!
//! A node stores its data in SQLite in its data dir, or, with `NORTHSTAR_TEST_STORAGE=postgres`
//! and `NORTHSTAR_TEST_POSTGRES` set, in a PostgreSQL database of its own named after its data
//! dir (so a node restarted on the same dir finds its data again); see `northstar_tests::postgres`.

#![allow(dead_code)] // each test binary uses a different part of this module

pub mod child;
pub mod streams;
pub mod tls;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use northstar_node::config::Config;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;

/// Every wait in these tests is bounded by this.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// A running node.
pub struct TestNode {
    pub addr: SocketAddr,
    pub url: String,
    pub data_dir: PathBuf,
    /// The node's `storage_url`: empty for SQLite in the data dir.
    pub storage_url: String,
    shutdown: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
    /// The PostgreSQL server and database to drop with the node, when it owns its data dir.
    database: Option<(String, String)>,
    _dir: Option<tempfile::TempDir>,
}

/// The `storage_url` for a node on `data_dir`: empty (SQLite in the dir) unless the tests run
/// on PostgreSQL, then the dir's own database.
pub async fn storage_for(data_dir: &Path) -> String {
    match northstar_tests::postgres::test_storage_server().unwrap() {
        None => String::new(),
        Some(server) => northstar_tests::postgres::database_for(&server, data_dir)
            .await
            .unwrap(),
    }
}

impl TestNode {
    /// A node with default limits in a fresh temp dir.
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// A node whose config `tune` may change (data_dir and listen are set already).
    pub async fn start_with(tune: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut node = Self::start_in(dir.path().to_path_buf(), tune).await;
        node._dir = Some(dir);
        // The dir goes with the node, and so does its database. (A dir the test owns keeps its
        // database for a restart; it is swept once the dir is gone.)
        if let Some(server) = northstar_tests::postgres::test_storage_server().unwrap() {
            node.database = Some((
                server,
                northstar_tests::postgres::database_name(&node.data_dir),
            ));
        }
        node
    }

    /// A node on an existing data dir (to restart one, or to share a key).
    pub async fn start_in(data_dir: PathBuf, tune: impl FnOnce(&mut Config)) -> Self {
        let storage_url = storage_for(&data_dir).await;
        Self::start_on(data_dir, storage_url, tune).await
    }

    /// A node on `data_dir` with the database `storage_url` (empty: SQLite in the dir),
    /// whatever storage the other tests' nodes use.
    pub async fn start_on(
        data_dir: PathBuf,
        storage_url: String,
        tune: impl FnOnce(&mut Config),
    ) -> Self {
        let mut config = Config {
            data_dir: data_dir.clone(),
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            storage_url,
            ..Config::default()
        };
        tune(&mut config);
        let storage_url = config.storage_url.clone();
        // Port 0 (the default here) lets the OS pick; a test restarting a node passes the old
        // address to get the same URL back.
        let listener = tokio::net::TcpListener::bind(config.listen).await.unwrap();
        let addr = listener.local_addr().unwrap();
        config.listen = addr;
        let url = config.origin();
        // A TLS node's tests trust their CA through `tls_ca`; its readiness is checked with it.
        let tls_ca = (!config.tls_cert.is_empty()).then(|| std::fs::read(&config.tls_ca).unwrap());
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        let task = tokio::spawn(async move {
            northstar_node::run(config, listener, stop).await.unwrap();
        });
        // The listener is bound already, so this connects at once and is answered as soon as
        // the node has opened its store and key: when it returns, the node is ready.
        match tls_ca {
            None => drop(health(addr).await),
            Some(ca) => assert_eq!(tls::https_get(addr, "/health", &ca).await.0, 200),
        }
        Self {
            addr,
            url,
            data_dir,
            storage_url,
            shutdown,
            task: Some(task),
            database: None,
            _dir: None,
        }
    }

    /// Stop the node and wait until it has closed its store.
    /// The node's own key pair, read from its data directory.
    pub fn key(&self) -> northstar_protocol::Keypair {
        northstar_protocol::Keypair::load(&self.data_dir.join(northstar_node::NODE_KEY_FILE))
            .expect("a test may read its node's key")
    }

    pub async fn stop(mut self) {
        self.halt().await;
    }

    /// Stop the node but keep its data directory and database, for a test to open its store
    /// (a running node holds its PostgreSQL database against any other process).
    pub async fn halt(&mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            tokio::time::timeout(TIMEOUT, task).await.unwrap().unwrap();
        }
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        self.shutdown.cancel();
        if let Some((server, name)) = self.database.take() {
            // Ends the node's sessions if it is still stopping.
            northstar_tests::postgres::drop_database_blocking(&server, &name);
        }
    }
}

/// A port on 127.0.0.1 that was free a moment ago, for a listener a test must name before it
/// starts (a node's metrics address, a proxy's port in the node's public URL).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `GET /health`, answered once the node serves; returns the whole HTTP response.
pub async fn health(addr: SocketAddr) -> String {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"GET /health HTTP/1.1\r\nHost: node\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut reply = String::new();
    tokio::time::timeout(TIMEOUT, tcp.read_to_string(&mut reply))
        .await
        .unwrap()
        .unwrap();
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    reply
}

/// A raw WebSocket JSON-RPC connection, for tests that speak the wire directly.
pub struct Raw {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    next_id: u64,
}

impl Raw {
    pub async fn connect(url: &str) -> Self {
        let (ws, _) = tokio::time::timeout(TIMEOUT, tokio_tungstenite::connect_async(url))
            .await
            .unwrap()
            .unwrap();
        Self { ws, next_id: 1 }
    }

    /// A connection whose socket has a small receive buffer that does not grow, so a test can
    /// make the node's writes to it stall by not reading.
    pub async fn connect_small(node: &TestNode) -> Self {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let tcp = socket.connect(node.addr).await.unwrap();
        Self::over(node, tcp).await
    }

    /// A connection from another loopback address (`127.0.0.x` are all this machine), so a
    /// test can act as a second client address.
    pub async fn connect_from(node: &TestNode, source: std::net::Ipv4Addr) -> Self {
        Self::over(node, tcp_from(node, source).await).await
    }

    /// The WebSocket handshake with `node` over a TCP connection to it.
    async fn over(node: &TestNode, tcp: TcpStream) -> Self {
        let (ws, _) = tokio::time::timeout(
            TIMEOUT,
            tokio_tungstenite::client_async(node.url.as_str(), MaybeTlsStream::Plain(tcp)),
        )
        .await
        .unwrap()
        .unwrap();
        Self { ws, next_id: 1 }
    }

    /// The WebSocket, for tests that read and write it from two tasks.
    pub fn into_inner(self) -> WebSocketStream<MaybeTlsStream<TcpStream>> {
        self.ws
    }

    /// Send `text` and return the next message, which must be its answer.
    pub async fn exchange(&mut self, text: &str) -> Value {
        self.send_text(text.to_owned()).await;
        self.recv()
            .await
            .expect("connection closed before the answer")
    }

    pub async fn send_text(&mut self, text: String) {
        self.ws.send(Message::text(text)).await.unwrap();
    }

    /// The next text message, as JSON; `None` if the connection closed.
    pub async fn recv(&mut self) -> Option<Value> {
        loop {
            let msg = tokio::time::timeout(TIMEOUT, self.ws.next()).await.unwrap();
            match msg {
                Some(Ok(Message::Text(text))) => return Some(serde_json::from_str(&text).unwrap()),
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return None,
                Some(Ok(_)) => {}
            }
        }
    }

    pub async fn send_binary(&mut self, bytes: Vec<u8>) {
        self.ws.send(Message::binary(bytes)).await.unwrap();
    }

    /// The next message of any kind; `None` if the connection closed or nothing came within
    /// `wait`.
    pub async fn next_within(&mut self, wait: Duration) -> Option<Message> {
        match tokio::time::timeout(wait, self.ws.next()).await {
            Ok(Some(Ok(message))) => Some(message),
            _ => None,
        }
    }

    /// The close status the node ends the connection with; `None` if it drops the connection
    /// without a close frame. Other messages before it are skipped.
    pub async fn close_status(&mut self) -> Option<u16> {
        loop {
            let msg = tokio::time::timeout(TIMEOUT, self.ws.next()).await.unwrap();
            match msg {
                Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
                None | Some(Err(_)) => return None,
                Some(Ok(_)) => {}
            }
        }
    }

    /// Authenticate as `key` with `auth.challenge` and `auth.respond`.
    pub async fn authenticate(&mut self, key: &northstar_protocol::Keypair) {
        use northstar_protocol::wire::AuthResponse;
        let challenge = self.ok("auth.challenge", json!([])).await;
        let challenge = serde_json::from_value(challenge).unwrap();
        let response = AuthResponse::answer(key, challenge).unwrap();
        self.ok("auth.respond", json!([response])).await;
    }

    /// Call a method; returns the whole response object.
    pub async fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let request = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        self.send_text(request.to_string()).await;
        loop {
            let msg = self
                .recv()
                .await
                .expect("connection closed before the response");
            if msg["id"] == json!(id) {
                return msg;
            }
        }
    }

    /// Call a method that must succeed; returns its result.
    pub async fn ok(&mut self, method: &str, params: Value) -> Value {
        let response = self.call(method, params).await;
        assert!(
            response.get("error").is_none(),
            "{method} failed: {response}"
        );
        response["result"].clone()
    }

    /// Call a method that must fail; returns the error's code and its message (with the
    /// error's data, where the details of a parameter error are).
    pub async fn err(&mut self, method: &str, params: Value) -> (i64, String) {
        let response = self.call(method, params).await;
        let error = response
            .get("error")
            .unwrap_or_else(|| panic!("{method} should fail: {response}"));
        (
            error["code"].as_i64().unwrap(),
            format!(
                "{} {}",
                error["message"].as_str().unwrap_or_default(),
                error["data"]
            ),
        )
    }
}

/// A TCP connection to `node` from the loopback address `source`.
pub async fn tcp_from(node: &TestNode, source: std::net::Ipv4Addr) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from((source, 0))).unwrap();
    tokio::time::timeout(TIMEOUT, socket.connect(node.addr))
        .await
        .unwrap()
        .unwrap()
}

/// Wait until `stream` has delivered event `seq`; returns every event it saw on the way.
pub async fn until_seq(
    stream: &mut northstar_sdk::EventStream,
    seq: u64,
) -> Vec<northstar_protocol::wire::Event> {
    let mut seen = Vec::new();
    loop {
        let event = tokio::time::timeout(TIMEOUT, stream.next())
            .await
            .unwrap_or_else(|_| panic!("event {seq} did not arrive"))
            .expect("stream ended")
            .expect("stream error");
        let done = event.seq >= seq;
        seen.push(event);
        if done {
            return seen;
        }
    }
}

/// An HTTP answer: status code, headers (names in lower case), body (as text, and as it came).
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
    pub bytes: Vec<u8>,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        assert_eq!(
            self.header("content-type"),
            Some("application/json"),
            "{}",
            self.body
        );
        serde_json::from_str(&self.body).unwrap()
    }
}

pub async fn request(addr: SocketAddr, method: &str, path: &str) -> Answer {
    request_with(addr, method, path, &[]).await
}

/// `request` with more request headers (`name`, `value`).
pub async fn request_with(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Answer {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: node\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    tcp.write_all(head.as_bytes()).await.unwrap();
    let mut reply = Vec::new();
    tokio::time::timeout(TIMEOUT, tcp.read_to_end(&mut reply))
        .await
        .unwrap()
        .unwrap();
    let end = reply.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let (head, bytes) = (
        std::str::from_utf8(&reply[..end]).unwrap(),
        &reply[end + 4..],
    );
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Answer {
        status,
        headers,
        body: String::from_utf8_lossy(bytes).into_owned(),
        bytes: bytes.to_vec(),
    }
}

/// `GET path` at `addr`: the status line's code, the content type and the body.
pub async fn get(addr: std::net::SocketAddr, path: &str) -> (u16, String, String) {
    let answer = request(addr, "GET", path).await;
    let content_type = answer.header("content-type").unwrap_or_default().to_owned();
    (answer.status, content_type, answer.body)
}

/// The value of the sample named exactly `name` (with its labels), if present.
pub fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}
