//! Nodes serving TLS themselves (`tls_cert`/`tls_key`) with certificates of a test CA made
//! in-process: the SDK trusting that CA speaks to them over `wss://` (calls and streams), the
//! status pages answer over `https://`, a client without the CA refuses the node; two TLS
//! nodes federate over `wss://` trusting the CA through `tls_ca`, and a peer whose certificate
//! does not verify is refused; SIGHUP makes a node in another process serve new files, and
//! keeps the old certificate when the new files are bad.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;

use common::tls::{TestCa, der_of, https_get, served_certificate};
use common::{TIMEOUT, TestNode, free_port, get, until_seq};
use futures_util::StreamExt;
use northstar_node::config::Config;
use northstar_protocol::Keypair;
use northstar_protocol::address::SpaceType;
use northstar_sdk::{Client, Trust};

/// TLS settings for a test node: a certificate of `ca` for 127.0.0.1 and `tls_ca` = `ca`.
fn tls_config(config: &mut Config, dir: &Path, ca: &TestCa, stem: &str) {
    let (cert, key) = ca.write_leaf(dir, stem, 1);
    config.tls_cert = cert.display().to_string();
    config.tls_key = key.display().to_string();
    config.tls_ca = ca.write(dir, "ca.pem").display().to_string();
}

async fn tls_node(dir: &Path, ca: &TestCa, stem: &str) -> TestNode {
    TestNode::start_with(|c| tls_config(c, dir, ca, stem)).await
}

fn trusting(ca: &TestCa) -> Trust {
    Trust::system().with_ca_pem(ca.pem.as_bytes()).unwrap()
}

/// The whole chain of causes of an error, as people read it.
/// Two TLS nodes of one test CA, and a user on each who trusts it.
async fn two_tls_users(dir: &Path, ca: &TestCa) -> (TestNode, TestNode, Client, Client) {
    let a = tls_node(dir, ca, "a").await;
    let b = tls_node(dir, ca, "b").await;
    let alice = Client::connect_with(&a.url, Some(Keypair::generate().unwrap()), trusting(ca))
        .await
        .unwrap();
    let bob = Client::connect_with(&b.url, Some(Keypair::generate().unwrap()), trusting(ca))
        .await
        .unwrap();
    (a, b, alice, bob)
}

fn causes(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut next = err.source();
    while let Some(cause) = next {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        next = cause.source();
    }
    text
}

#[tokio::test]
async fn the_sdk_trusting_the_test_ca_speaks_wss_and_the_pages_answer_over_https() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("Northstar test CA");
    let node = tls_node(dir.path(), &ca, "node").await;
    assert!(node.url.starts_with("wss://127.0.0.1:"), "{}", node.url);

    // Authenticate, create, post and read back over wss://.
    let key = Keypair::generate().unwrap();
    let alice = Client::connect_with(&node.url, Some(key), trusting(&ca))
        .await
        .unwrap();
    let space = alice
        .create_space(SpaceType::Channel, "secure", "Secure")
        .await
        .unwrap()
        .space;
    let posted = alice.post(&space, "hello", "over TLS").await.unwrap();
    let events = alice.events(&space, 0, 10).await.unwrap();
    assert_eq!(events.last().unwrap().seq, posted.seq);

    // The status pages on the same port, over https://.
    let (status, body) = https_get(node.addr, "/health/ready", ca.pem.as_bytes()).await;
    assert_eq!(status, 200, "{body}");

    // A live stream: its publisher and its watcher open their own wss:// connections.
    let stream = alice
        .create_space(SpaceType::Stream, "radio", "Radio")
        .await
        .unwrap()
        .space;
    let mut publisher = alice.publisher(&stream).await.unwrap();
    let mut watch = alice.watch(&stream, None).await.unwrap();
    publisher.publish(b"first".to_vec(), true).await.unwrap();
    let frame = tokio::time::timeout(TIMEOUT, watch.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!((frame.number, frame.payload.as_slice()), (1, &b"first"[..]));
}

#[tokio::test]
async fn a_client_without_the_ca_refuses_the_node_for_its_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("Northstar test CA");
    let node = tls_node(dir.path(), &ca, "node").await;
    let other = TestCa::new("Another CA");
    for trust in [Trust::system(), trusting(&other)] {
        let err = Client::connect_with(&node.url, None, trust)
            .await
            .unwrap_err();
        let text = causes(&err);
        assert!(text.to_lowercase().contains("certificate"), "{text}");
    }
    // Streams refuse it too.
    let space = northstar_protocol::address::SpaceId::new(
        SpaceType::Stream,
        Keypair::generate().unwrap().did(),
        "x",
    )
    .unwrap();
    let err = northstar_sdk::Watch::open(&node.url, None, &space, None)
        .await
        .unwrap_err();
    let text = causes(&err);
    assert!(text.to_lowercase().contains("certificate"), "{text}");
}

#[tokio::test]
async fn two_tls_nodes_federate_over_wss_trusting_the_test_ca() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("Federation CA");
    let (_a, b, alice, bob) = two_tls_users(dir.path(), &ca).await;
    let space = alice
        .create_space(SpaceType::Channel, "town", "Town")
        .await
        .unwrap()
        .space;
    // B dials A to join; A dials B to push what follows.
    bob.join(&alice.space_uri(&space)).await.unwrap();
    let mut feed = bob.subscribe(&space, 0).await.unwrap();
    let posted = alice.post(&space, "news", "over wss").await.unwrap();
    let seen = until_seq(&mut feed, posted.seq).await;
    assert_eq!(seen.last().unwrap().id().unwrap(), posted.event_id);
    let members = alice.members(&space).await.unwrap();
    assert!(
        members
            .iter()
            .any(|m| m.home.as_deref() == Some(&b.addr.to_string())),
        "{members:?}"
    );
}

/// Blobs travel over https on a TLS node's port: Alice uploads to A and attaches the file to a
/// post; Bob reads it through B, which fetches it from A over TLS (verifying A's certificate
/// as its links do) and checks every chunk; Bob gets the same bytes.
#[tokio::test]
async fn blobs_travel_over_https_between_tls_nodes() {
    use northstar_protocol::address::BeamUri;
    use northstar_protocol::blob::Attachment;
    use northstar_sdk::BlobRead;
    use tokio::io::AsyncReadExt;

    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("Blob CA");
    let (_a, _b, alice, bob) = two_tls_users(dir.path(), &ca).await;
    let space = alice
        .create_space(SpaceType::Channel, "files", "Files")
        .await
        .unwrap()
        .space;
    bob.join(&alice.space_uri(&space)).await.unwrap();

    let data: Vec<u8> = (0..300_000u32).flat_map(|i| i.to_le_bytes()).collect();
    let size = data.len() as u64;
    let uploaded = alice
        .upload_blob(
            std::io::Cursor::new(data.clone()),
            size,
            Some("application/octet-stream"),
        )
        .await
        .unwrap();
    let attachment = Attachment {
        blob: uploaded.blob,
        size,
        media_type: "application/octet-stream".into(),
        name: "numbers.bin".into(),
    };
    let posted = alice
        .post_attached(&space, "numbers", "", vec![attachment])
        .await
        .unwrap();
    let uri = BeamUri::parse(&posted.beam_uri).unwrap();
    let mut feed = bob.subscribe(&space, 0).await.unwrap();
    until_seq(&mut feed, posted.seq).await;

    let what = BlobRead {
        beam: Some(uri.path.to_string()),
        home: Some(uri.authority.clone()),
        size: Some(size),
        ..BlobRead::default()
    };
    let mut reader = bob.download_blob(&uploaded.blob, what).await.unwrap();
    let mut got = Vec::new();
    tokio::time::timeout(TIMEOUT, reader.read_to_end(&mut got))
        .await
        .expect("the download ends in time")
        .unwrap();
    assert!(
        got == data,
        "Bob reads through B the bytes Alice uploaded to A"
    );
}

#[tokio::test]
async fn a_peer_whose_certificate_does_not_verify_is_refused_and_nothing_federates() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, stranger) = (TestCa::new("Our CA"), TestCa::new("Their CA"));
    let a = tls_node(dir.path(), &ca, "a").await;
    // B's certificate comes from "Their CA", the only CA B trusts besides the system's roots:
    // A's certificate does not verify for B.
    let b_dir = dir.path().join("b");
    std::fs::create_dir(&b_dir).unwrap();
    let metrics_port = free_port();
    let b = TestNode::start_with(|c| {
        tls_config(c, &b_dir, &stranger, "b");
        c.metrics_listen = format!("127.0.0.1:{metrics_port}");
    })
    .await;
    let alice = Client::connect_with(&a.url, Some(Keypair::generate().unwrap()), trusting(&ca))
        .await
        .unwrap();
    let bob = Client::connect_with(
        &b.url,
        Some(Keypair::generate().unwrap()),
        trusting(&stranger),
    )
    .await
    .unwrap();
    let space = alice
        .create_space(SpaceType::Channel, "closed", "Closed")
        .await
        .unwrap()
        .space;
    let err = bob.join(&alice.space_uri(&space)).await.unwrap_err();
    assert!(
        causes(&err).contains(&a.addr.to_string()),
        "{}",
        causes(&err)
    );
    // Nothing reached A, and B counted the dial as refused for its certificate.
    let members = alice.members(&space).await.unwrap();
    assert_eq!(members.len(), 1, "{members:?}");
    let text = get(
        format!("127.0.0.1:{metrics_port}").parse().unwrap(),
        "/metrics",
    )
    .await
    .2;
    let refused = text
        .lines()
        .find(|l| l.starts_with("northstar_federation_dials_total{outcome=\"certificate\"}"));
    assert!(
        refused.is_some_and(|l| !l.ends_with(" 0")),
        "no certificate refusal counted:\n{text}"
    );
    drop(b);
}

const CHILD_ENV: &str = "NORTHSTAR_TEST_TLS_CHILD";

/// Not a test on its own: the node the SIGHUP test starts in a child process, serving the
/// files named in `NORTHSTAR_TEST_TLS_CHILD` (`{data dir}|{cert}|{key}`), logging to stderr.
#[tokio::test]
#[ignore = "started by sighup_reloads_the_certificate_and_keeps_the_old_one_on_bad_files"]
async fn tls_node_process() {
    let spec = std::env::var(CHILD_ENV).expect("run only by the SIGHUP test");
    let mut parts = spec.split('|');
    let (dir, cert, key) = (
        parts.next().unwrap(),
        parts.next().unwrap(),
        parts.next().unwrap(),
    );
    tracing_subscriber::fmt()
        .with_env_filter("info")
        .with_ansi(false)
        .with_writer(std::io::stderr)
        .init();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let config = Config {
        data_dir: dir.into(),
        listen: addr,
        tls_cert: cert.into(),
        tls_key: key.into(),
        ..Default::default()
    };
    println!("READY {addr}");
    let never = tokio_util::sync::CancellationToken::new();
    northstar_node::run(config, listener, never).await.unwrap();
}

/// The node in a child process, and its log lines as they come.
struct NodeProcess {
    child: Child,
    addr: std::net::SocketAddr,
    log: mpsc::Receiver<String>,
}

impl NodeProcess {
    fn spawn(dir: &Path, cert: &Path, key: &Path) -> Self {
        let spec = format!("{}|{}|{}", dir.display(), cert.display(), key.display());
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--ignored",
                "--exact",
                "tls_node_process",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, spec)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (send, log) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { return };
                if send.send(line).is_err() {
                    return;
                }
            }
        });
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let addr = loop {
            let line = lines.next().expect("the child exited early").unwrap();
            if let Some((_, addr)) = line.split_once("READY ") {
                break addr.trim().parse().unwrap();
            }
        };
        Self { child, addr, log }
    }

    fn hang_up(&self) {
        let status = Command::new("kill")
            .args(["-HUP", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Wait for a log line containing `text`; the line.
    fn wait_for(&self, text: &str) -> String {
        loop {
            let line = self
                .log
                .recv_timeout(TIMEOUT)
                .unwrap_or_else(|_| panic!("no log line with {text:?} in time"));
            if line.contains(text) {
                return line;
            }
        }
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(unix)]
#[tokio::test]
async fn sighup_reloads_the_certificate_and_keeps_the_old_one_on_bad_files() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("Reload CA");
    let (cert_path, key_path) = (dir.path().join("node.crt"), dir.path().join("node.key"));
    let (first, first_key) = ca.issue(&["127.0.0.1"], 1);
    std::fs::write(&cert_path, &first).unwrap();
    std::fs::write(&key_path, &first_key).unwrap();
    let data = dir.path().join("data");
    let node = NodeProcess::spawn(&data, &cert_path, &key_path);
    node.wait_for("node ready");
    let ca_pem = ca.pem.as_bytes();
    assert_eq!(served_certificate(node.addr, ca_pem).await, der_of(&first));

    // New files (another serial and key), then SIGHUP: new connections get the new one.
    let (second, second_key) = ca.issue(&["127.0.0.1"], 2);
    std::fs::write(&cert_path, &second).unwrap();
    std::fs::write(&key_path, &second_key).unwrap();
    node.hang_up();
    node.wait_for("TLS certificate reloaded");
    assert_eq!(served_certificate(node.addr, ca_pem).await, der_of(&second));

    // A certificate that does not match the key: the reload fails, says why, and the node
    // keeps serving the second certificate.
    let (third, _) = ca.issue(&["127.0.0.1"], 3);
    std::fs::write(&cert_path, &third).unwrap();
    node.hang_up();
    let line = node.wait_for("cannot reload the TLS certificate");
    assert!(line.contains("node.key"), "{line}");
    // Garbage where the certificate was: the same.
    std::fs::write(&cert_path, "not a certificate").unwrap();
    node.hang_up();
    let line = node.wait_for("cannot reload the TLS certificate");
    assert!(line.contains("no PEM certificate"), "{line}");
    assert_eq!(served_certificate(node.addr, ca_pem).await, der_of(&second));
    // The pages still answer, with the certificate kept.
    let (status, _) = https_get(node.addr, "/health", ca_pem).await;
    assert_eq!(status, 200);
}
