#![cfg(unix)]
//! A node behind a real reverse proxy (nginx, as the README's recipe sets it up): clients
//! reach it through the proxy, and `trusted_proxies` makes the per-address limits see each
//! client's own address instead of the proxy's.
//!
//! Needs the `nginx` binary. Without it the test says so and passes, unless
//! `NORTHSTAR_TEST_NGINX=require` (as `.ci/run` sets it), where its absence fails.

mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{TIMEOUT, TestNode, free_port};
use northstar_protocol::Keypair;
use northstar_protocol::wire::AuthResponse;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// The nginx site of the README's recipe, listening on `listen`, for the node at `node`.
fn site(dir: &Path, listen: SocketAddr, node: SocketAddr) -> String {
    let dir = dir.display();
    format!(
        "worker_processes 1;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    server {{
        listen {listen};
        location / {{
            proxy_pass http://{node};
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection \"upgrade\";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_read_timeout 75s;
        }}
    }}
}}
"
    )
}

struct Nginx {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // The whole process group, master and workers: a worker still holding an upgraded
        // connection can outlive a master told to stop.
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-TERM", "--", &group]).status();
        let _ = self.child.wait();
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
    }
}

async fn nginx(dir: &Path, node: SocketAddr, listen: SocketAddr) -> Option<Nginx> {
    let required = std::env::var("NORTHSTAR_TEST_NGINX").as_deref() == Ok("require");
    let conf = dir.join("nginx.conf");
    std::fs::write(&conf, site(dir, listen, node)).unwrap();
    let mut command = Command::new("nginx");
    // A process group of its own, so that stopping it stops its workers too.
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    let spawned = command
        .arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let child = match spawned {
        Ok(child) => child,
        Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!("skipped: no nginx here (NORTHSTAR_TEST_NGINX=require makes this a failure)");
            return None;
        }
        Err(e) => panic!("cannot start nginx: {e}"),
    };
    let proxy = Nginx {
        child,
        addr: listen,
    };
    for _ in 0..100 {
        if TcpStream::connect(listen).await.is_ok() {
            return Some(proxy);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "nginx did not listen: {}",
        std::fs::read_to_string(dir.join("error.log")).unwrap_or_default()
    );
}

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A WebSocket through the proxy from loopback address `source`; the HTTP status if refused.
async fn through(proxy: &Nginx, source: Ipv4Addr) -> Result<Ws, u16> {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from((source, 0))).unwrap();
    let tcp = socket.connect(proxy.addr).await.unwrap();
    let url = format!("ws://{}", proxy.addr);
    match tokio::time::timeout(
        TIMEOUT,
        tokio_tungstenite::client_async(url.as_str(), MaybeTlsStream::Plain(tcp)),
    )
    .await
    .unwrap()
    {
        Ok((ws, _)) => Ok(ws),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            Err(response.status().as_u16())
        }
        Err(e) => panic!("{e}"),
    }
}

async fn call(ws: &mut Ws, id: u64, method: &str, params: Value) -> Value {
    use futures_util::{SinkExt, StreamExt};
    let request = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
    ws.send(Message::text(request.to_string())).await.unwrap();
    loop {
        let message = tokio::time::timeout(TIMEOUT, ws.next()).await.unwrap();
        if let Some(Ok(Message::Text(text))) = message {
            return serde_json::from_str(&text).unwrap();
        }
    }
}

/// A node whose public URL is the proxy's, allowing one session per client address.
async fn node_behind(proxy_port: u16, trusted: bool) -> TestNode {
    TestNode::start_with(move |c| {
        c.public_url = format!("ws://127.0.0.1:{proxy_port}");
        c.limits.max_connections_per_ip = 1;
        if trusted {
            c.trusted_proxies = vec!["127.0.0.1".into()];
        }
    })
    .await
}

#[tokio::test]
async fn behind_nginx_each_client_is_counted_as_itself_only_when_the_proxy_is_trusted() {
    let (a, b) = (Ipv4Addr::new(127, 0, 0, 2), Ipv4Addr::new(127, 0, 0, 3));

    // Trusted: a client authenticates through the proxy (its origin is the proxy's URL), and
    // each client address has its own place.
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let node = node_behind(port, true).await;
    let Some(proxy) = nginx(
        dir.path(),
        node.addr,
        SocketAddr::from(([127, 0, 0, 1], port)),
    )
    .await
    else {
        return;
    };
    let mut first = through(&proxy, a).await.expect("the first client from a");
    let challenge = call(&mut first, 1, "auth.challenge", json!([])).await;
    let challenge = serde_json::from_value(challenge["result"].clone()).unwrap();
    let answer = AuthResponse::answer(&Keypair::generate().unwrap(), challenge).unwrap();
    let authed = call(&mut first, 2, "auth.respond", json!([answer])).await;
    assert!(authed["result"]["did"].is_string(), "{authed}");
    let _second = through(&proxy, b)
        .await
        .expect("a client from b has its own place");
    assert_eq!(
        through(&proxy, a).await.err(),
        Some(429),
        "a second session from a"
    );
    drop(proxy);
    drop(node);

    // Not trusted: every client is the proxy's address, and one place is all they share.
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let node = node_behind(port, false).await;
    let proxy = nginx(
        dir.path(),
        node.addr,
        SocketAddr::from(([127, 0, 0, 1], port)),
    )
    .await
    .expect("nginx ran a moment ago");
    let _first = through(&proxy, a).await.expect("the first client");
    assert_eq!(
        through(&proxy, b).await.err(),
        Some(429),
        "b shares the proxy's place"
    );
}
