#![cfg(unix)]
//! ACME against a real CA: Debian's `pebble`, on free ports of 127.0.0.1 with a config written
//! here. The node obtains a certificate for `localhost` (pebble validates TLS-ALPN-01 by
//! connecting to the node's own listener, its `tlsPort`), serves it, and an SDK client trusting
//! pebble's issuing root authenticates over `wss://`. A restart serves the stored certificate
//! and orders nothing.
//!
//! Needs the `pebble` binary. Without it the test says so and passes, unless
//! `NORTHSTAR_TEST_PEBBLE=require` (as `.ci/run` sets it), where its absence fails.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};

use common::tls::{TestCa, https_get};
use common::{TIMEOUT, free_port};
use northstar_node::config::Config;
use northstar_protocol::Keypair;
use northstar_sdk::{Client, Trust};
use tokio_util::sync::CancellationToken;

/// How long pebble may take to validate and issue: its VA waits up to a few seconds before
/// each validation unless told not to (we tell it not to), so this is generous.
const ISSUE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

struct Pebble {
    child: Child,
    directory: String,
    management: SocketAddr,
}

impl Drop for Pebble {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Start pebble with its HTTPS certificate from `ca`, validating TLS-ALPN-01 on `tls_port`.
fn pebble(dir: &Path, ca: &TestCa, tls_port: u16) -> Option<Pebble> {
    let required = std::env::var("NORTHSTAR_TEST_PEBBLE").as_deref() == Ok("require");
    let (cert, key) = ca.write_leaf(dir, "pebble", 1);
    let (listen, management) = (free_port(), free_port());
    let config = serde_json::json!({
        "pebble": {
            "listenAddress": format!("127.0.0.1:{listen}"),
            "managementListenAddress": format!("127.0.0.1:{management}"),
            "certificate": cert,
            "privateKey": key,
            "httpPort": free_port(),
            "tlsPort": tls_port,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": false
        }
    });
    let path = dir.join("pebble-config.json");
    std::fs::write(&path, config.to_string()).unwrap();
    let spawned = Command::new("pebble")
        .arg("-config")
        .arg(&path)
        // No random wait before validations, and no nonce refused at random: the test checks
        // the node's ACME flow, not its retries of pebble's deliberate faults.
        .env("PEBBLE_VA_NOSLEEP", "1")
        .env("PEBBLE_WFE_NONCEREJECT", "0")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!(
                "skipped: no pebble here (apt-get install pebble; NORTHSTAR_TEST_PEBBLE=require \
                 makes this a failure)"
            );
            return None;
        }
        Err(e) => panic!("cannot start pebble: {e}"),
    };
    // Ready once it says where its directory is.
    let (send, lines) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    // Read to the end: pebble logs every request to stdout, and Go exits when that pipe breaks.
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            // Nobody listens after the start; the lines are read all the same.
            let _ = send.send(line);
        }
    });
    let mut seen = Vec::new();
    loop {
        match lines.recv_timeout(TIMEOUT) {
            Ok(line) if line.contains("ACME directory available at") => break,
            Ok(line) => seen.push(line),
            Err(_) => panic!("pebble did not start:\n{}", seen.join("\n")),
        }
    }
    Some(Pebble {
        child,
        directory: format!("https://127.0.0.1:{listen}/dir"),
        management: SocketAddr::from(([127, 0, 0, 1], management)),
    })
}

/// Log lines of the nodes in this test process, as they are written.
#[derive(Clone)]
struct LogLines(Arc<Mutex<mpsc::Sender<String>>>);

impl Write for LogLines {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf).into_owned();
        // The receiver goes only with the test.
        let _ = self.0.lock().unwrap().send(text);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn wait_for(log: &mpsc::Receiver<String>, text: &str) -> Vec<String> {
    let mut before = Vec::new();
    loop {
        let line = log
            .recv_timeout(ISSUE_TIMEOUT)
            .unwrap_or_else(|_| panic!("no log line with {text:?} in time:\n{}", before.join("")));
        if line.contains(text) {
            return before;
        }
        before.push(line);
    }
}

/// A node on `listener` with ACME for `localhost` from `pebble`, trusting `ca` for its
/// directory; stopped with the token.
fn start_node(
    data_dir: &Path,
    listener: tokio::net::TcpListener,
    pebble: &Pebble,
    ca_file: &Path,
) -> (CancellationToken, tokio::task::JoinHandle<()>) {
    let addr = listener.local_addr().unwrap();
    let config = Config {
        data_dir: data_dir.to_owned(),
        listen: addr,
        acme_domain: "localhost".into(),
        acme_email: "operator@northstar.test".into(),
        acme_directory: pebble.directory.clone(),
        tls_ca: ca_file.display().to_string(),
        ..Config::default()
    };
    assert_eq!(config.origin(), format!("wss://localhost:{}", addr.port()));
    let stop = CancellationToken::new();
    let token = stop.clone();
    let task = tokio::spawn(async move {
        northstar_node::run(config, listener, token).await.unwrap();
    });
    (stop, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_obtains_its_certificate_from_pebble_and_serves_it() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("Test CA of pebble's own HTTPS");
    let ca_file = ca.write(dir.path(), "ca.pem");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let Some(pebble) = pebble(dir.path(), &ca, addr.port()) else {
        return;
    };
    let (send, log) = mpsc::channel();
    let writer = LogLines(Arc::new(Mutex::new(send)));
    tracing_subscriber::fmt()
        .with_env_filter("info")
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .init();

    let data_dir = dir.path().join("node");
    let (stop, task) = start_node(&data_dir, listener, &pebble, &ca_file);
    wait_for(&log, "serving the ACME certificate");

    // Pebble's issuing root, from its management port (HTTPS with the test CA's certificate).
    let (status, root) = https_get(pebble.management, "/roots/0", ca.pem.as_bytes()).await;
    assert_eq!(status, 200, "{root}");
    let url = format!("wss://localhost:{}", addr.port());
    let trust = Trust::system().with_ca_pem(root.as_bytes()).unwrap();
    let key = Keypair::generate().unwrap();
    let client = Client::connect_with(&url, Some(key.clone()), trust.clone())
        .await
        .unwrap();
    assert_eq!(client.did(), Some(key.did()));
    // Without pebble's root the certificate is refused.
    let refused = Client::connect_with(&url, None, Trust::system()).await;
    assert!(refused.is_err());
    drop(client);
    stop.cancel();
    tokio::time::timeout(TIMEOUT, task).await.unwrap().unwrap();
    let stored = std::fs::read(data_dir.join("acme").join("localhost.cert.pem")).unwrap();

    // A restart serves the stored certificate and orders nothing.
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let (stop, task) = start_node(&data_dir, listener, &pebble, &ca_file);
    let before = wait_for(&log, "serving the ACME certificate");
    assert!(
        !before.iter().any(|l| l.contains("ordering a certificate")),
        "{}",
        before.join("")
    );
    let client = Client::connect_with(&url, Some(key), trust).await.unwrap();
    drop(client);
    assert_eq!(
        std::fs::read(data_dir.join("acme").join("localhost.cert.pem")).unwrap(),
        stored
    );
    stop.cancel();
    tokio::time::timeout(TIMEOUT, task).await.unwrap().unwrap();
}
