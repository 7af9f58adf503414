//! A node in a child process: the test binary runs itself with `--ignored --exact TEST`, where
//! `TEST` is an ignored test that starts a node on the data dir `DATA_DIR_ENV` names and prints
//! `READY {addr}`. For what an in-process node cannot show: a `kill -9`, a process's memory.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// The variable that gives the child its data dir.
pub const DATA_DIR_ENV: &str = "NORTHSTAR_TEST_DATA_DIR";

/// The child's side: run a node on the data dir `DATA_DIR_ENV` names, print `READY {addr}`, and
/// serve until killed. `parent` names the test that starts the child, for a stray run.
pub async fn serve(parent: &str) {
    let dir = std::env::var(DATA_DIR_ENV).unwrap_or_else(|_| panic!("run only by {parent}"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let data_dir = std::path::PathBuf::from(dir);
    let config = northstar_node::config::Config {
        storage_url: super::storage_for(&data_dir).await,
        data_dir,
        listen: addr,
        ..Default::default()
    };
    println!("READY {addr}");
    let never = tokio_util::sync::CancellationToken::new();
    northstar_node::run(config, listener, never).await.unwrap();
}

/// A node in a child process, killed (SIGKILL) when dropped.
pub struct NodeProcess {
    pub child: Child,
    pub url: String,
}

impl NodeProcess {
    /// Run the ignored test `test` of this binary as a node on `dir`; returns once it is ready.
    pub fn spawn(test: &str, dir: &Path) -> Self {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--ignored",
                "--exact",
                test,
                "--nocapture",
                "--test-threads=1",
            ])
            .env(DATA_DIR_ENV, dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let addr = loop {
            let line = lines
                .next()
                .expect("child exited before it was ready")
                .unwrap();
            // libtest prints "test {name} ... " on the same line first.
            if let Some((_, addr)) = line.split_once("READY ") {
                break addr.trim().to_owned();
            }
        };
        Self {
            child,
            url: format!("ws://{addr}"),
        }
    }

    /// The process's peak resident memory, KiB.
    pub fn peak_kb(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM in /proc/PID/status")
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
