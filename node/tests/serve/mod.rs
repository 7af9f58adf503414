//! `northstar serve` children and the CLI run against them, for the command-line tests.
#![allow(dead_code)] // each test binary uses a different part of this module

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

/// How long a node may take to start, a log line to come.
pub const WAIT: Duration = Duration::from_secs(20);

/// The `northstar` binary, with none of the user's `NORTHSTAR_KEY` and `NORTHSTAR_NODE`.
pub fn northstar() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_northstar"));
    cmd.env_remove("NORTHSTAR_KEY").env_remove("NORTHSTAR_NODE");
    cmd
}

/// A `northstar serve` child on 127.0.0.1 with a port the OS picked; killed when dropped.
pub struct Serve {
    pub child: Child,
    pub url: String,
    log: mpsc::Receiver<String>,
}

impl Serve {
    /// A node on `data_dir` with the flags `extra`.
    pub fn start(data_dir: &Path, extra: &[&str]) -> Self {
        Self::start_with_env(data_dir, extra, &[])
    }

    /// The same, with environment variables (`NORTHSTAR_*` config keys).
    pub fn start_with_env(data_dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Self {
        let mut child = northstar()
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .args(extra)
            .envs(env.iter().copied())
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let (tx, log) = mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                // Keep draining even when nobody reads, so the node never blocks on its log.
                let _ = tx.send(line);
            }
        });
        let url = loop {
            let line = log
                .recv_timeout(WAIT)
                .expect("the node did not report ready");
            if line.contains("node ready") {
                let url = line
                    .split_whitespace()
                    .find_map(|w| w.strip_prefix("public_url="))
                    .expect("the ready line names the public URL");
                break url.to_owned();
            }
        };
        Self { child, url, log }
    }

    /// Wait for a log line holding `needle`.
    pub fn wait_for_log(&self, needle: &str) {
        loop {
            let line = self.log.recv_timeout(WAIT).expect("log line did not come");
            if line.contains(needle) {
                return;
            }
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `northstar --node URL --key KEY ARGS…`, run to its end.
pub fn run(node: &Serve, key: &Path, args: &[&str]) -> Output {
    northstar()
        .args(["--node", &node.url, "--key"])
        .arg(key)
        .args(args)
        .output()
        .unwrap()
}

/// The JSON lines a successful command printed.
pub fn json_lines(out: &Output) -> Vec<Value> {
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The one JSON line a successful command printed.
pub fn one(out: &Output) -> Value {
    let mut lines = json_lines(out);
    assert_eq!(lines.len(), 1, "{lines:?}");
    lines.remove(0)
}

/// A new key file `{name}.json` in `dir`, made with `northstar key generate`.
pub fn new_key(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(format!("{name}.json"));
    let out = northstar()
        .args(["key", "generate", "--out"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    path
}
