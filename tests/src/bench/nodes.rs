//! Real nodes for the benchmark: in this process ([`LocalNode`]) or in a process of their own
//! ([`ChildProcess`], the bench binary re-run as `bench __node`), always on 127.0.0.1 with the
//! limits of [`bench_config`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context as _, bail};
use northstar_node::config::{Config, Limits, Streams};

use super::report::count;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, ChildStdin, Command};
use tokio_util::sync::CancellationToken;

/// How long a node may take to start or to stop.
const START_STOP: Duration = Duration::from_secs(30);

/// The hidden subcommand that runs a node in its own process.
pub const NODE_SUBCOMMAND: &str = "__node";

/// A node's configuration for the benchmark: the defaults, with the per-connection and
/// per-address limits raised so that the load generator (many connections from 127.0.0.1, each
/// sending as fast as it is answered) measures the node and not its abuse limits, and a
/// stream's frame and byte budgets raised so that the streams scenario measures delivery and
/// not a publisher's budget. Frame size, windows and watch queues keep their defaults.
pub fn bench_config(data_dir: PathBuf, listen: SocketAddr) -> Config {
    Config {
        data_dir,
        listen,
        limits: Limits {
            max_connections: 100_000,
            max_connections_per_ip: 100_000,
            requests_per_second: 1_000_000,
            request_burst: 1_000_000,
            requests_per_second_per_ip: 0,
            requests_per_second_per_did: 0,
            max_pending_connections: 100_000,
            max_pending_connections_per_ip: 100_000,
            auth_timeout_secs: 600,
            ..Limits::default()
        },
        streams: Streams {
            max_frames_per_second: 1_000_000,
            // The most the key holds: about 4 GB of payload per second.
            max_bytes_per_second: u32::MAX,
            ..Streams::default()
        },
        ..Config::default()
    }
}

/// The limits of [`bench_config`] as one line, for the report.
pub fn describe_limits() -> String {
    let config = bench_config(PathBuf::new(), SocketAddr::from(([127, 0, 0, 1], 0)));
    let (l, s) = (config.limits, config.streams);
    let (d, ds) = (Limits::default(), Streams::default());
    let n = |v: u32| count(v as usize);
    format!(
        "raised: max_connections {} (default {}), max_connections_per_ip {} ({}), \
         requests_per_second {} ({}), request_burst {} ({}), max_pending_connections(_per_ip) \
         {} ({}, {}), auth_timeout_secs {} ({}); off: the per-address and per-DID budgets; \
         default: subscriber_queue {}, max_page {}, max_frame_bytes {}; streams raised: \
         max_frames_per_second {} ({}), max_bytes_per_second {} ({}); streams default: \
         max_frame_bytes {}, watcher_queue {}, window_frames {}",
        n(l.max_connections),
        n(d.max_connections),
        n(l.max_connections_per_ip),
        n(d.max_connections_per_ip),
        n(l.requests_per_second),
        n(d.requests_per_second),
        n(l.request_burst),
        n(d.request_burst),
        n(l.max_pending_connections),
        n(d.max_pending_connections),
        n(d.max_pending_connections_per_ip),
        l.auth_timeout_secs,
        d.auth_timeout_secs,
        n(l.subscriber_queue),
        l.max_page,
        n(l.max_frame_bytes),
        n(s.max_frames_per_second),
        n(ds.max_frames_per_second),
        n(s.max_bytes_per_second),
        n(ds.max_bytes_per_second),
        n(s.max_frame_bytes),
        n(s.watcher_queue),
        n(s.window_frames)
    )
}

/// A new data directory under `root`, kept until `root` goes.
pub fn new_data_dir(root: &Path) -> anyhow::Result<PathBuf> {
    Ok(tempfile::Builder::new()
        .prefix("node-")
        .tempdir_in(root)?
        .keep())
}

/// A node running in this process, stopped when dropped.
pub struct LocalNode {
    /// Where it listens.
    pub addr: SocketAddr,
    /// `ws://{addr}`.
    pub url: String,
    /// Its data directory.
    pub data_dir: PathBuf,
    shutdown: CancellationToken,
    task: Option<tokio::task::JoinHandle<Result<(), northstar_node::NodeError>>>,
}

impl LocalNode {
    /// Start a node with a new data directory under `root`; `tune` may change its config.
    pub async fn start(root: &Path, tune: impl FnOnce(&mut Config)) -> anyhow::Result<Self> {
        Self::start_in(
            new_data_dir(root)?,
            SocketAddr::from(([127, 0, 0, 1], 0)),
            tune,
        )
        .await
    }

    /// Start a node on `data_dir` (a restart, if it holds a node already) at `listen`.
    pub async fn start_in(
        data_dir: PathBuf,
        listen: SocketAddr,
        tune: impl FnOnce(&mut Config),
    ) -> anyhow::Result<Self> {
        let mut config = bench_config(data_dir.clone(), listen);
        tune(&mut config);
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("binding {}", config.listen))?;
        let addr = listener.local_addr()?;
        config.listen = addr;
        let url = config.origin();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(northstar_node::run(config, listener, shutdown.clone()));
        let node = Self {
            addr,
            url,
            data_dir,
            shutdown,
            task: Some(task),
        };
        wait_healthy(addr).await?;
        Ok(node)
    }

    /// Stop the node and wait until it has closed its store.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            tokio::time::timeout(START_STOP, task)
                .await
                .context("the node did not stop in time")???;
        }
        Ok(())
    }
}

impl Drop for LocalNode {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Wait until `GET /health` at `addr` answers 200.
pub async fn wait_healthy(addr: SocketAddr) -> anyhow::Result<()> {
    tokio::time::timeout(START_STOP, async {
        loop {
            if let Ok(mut tcp) = TcpStream::connect(addr).await {
                tcp.write_all(b"GET /health HTTP/1.1\r\nHost: node\r\nConnection: close\r\n\r\n")
                    .await?;
                let mut reply = String::new();
                tcp.read_to_string(&mut reply).await?;
                if reply.starts_with("HTTP/1.1 200") {
                    return anyhow::Ok(());
                }
            }
            // The listener is bound before this is called, so a refusal means the node is not
            // serving yet; the loop ends by the timeout at the latest.
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .context("the node did not answer /health in time")?
}

/// A helper process: the bench binary re-run with a hidden subcommand (a node, or the plain
/// WebSocket server of the ceilings). It prints `READY <addr>` once it serves, takes commands
/// on its standard input and stops when that closes.
pub struct ChildProcess {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its process id.
    pub pid: u32,
    child: Child,
    stdin: Option<ChildStdin>,
}

impl ChildProcess {
    /// Run `exe` with `args` and wait for its `READY` line.
    pub async fn spawn(exe: &Path, args: &[&str]) -> anyhow::Result<Self> {
        let mut child = Command::new(exe)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", exe.display()))?;
        let pid = child.id().context("the child has no pid")?;
        let stdout = child.stdout.take().context("no stdout")?;
        let stdin = child.stdin.take();
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(START_STOP, lines.next_line())
            .await
            .context("the child did not get ready in time")??
            .context("the child exited before it was ready")?;
        let Some(addr) = line.strip_prefix("READY ") else {
            bail!("unexpected first line from the child: {line:?}");
        };
        Ok(Self {
            addr: addr.parse()?,
            pid,
            child,
            stdin,
        })
    }

    /// `ws://{addr}`.
    pub fn url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    /// Send one command line.
    pub async fn command(&mut self, line: &str) -> anyhow::Result<()> {
        let stdin = self.stdin.as_mut().context("stdin closed")?;
        stdin.write_all(line.as_bytes()).await?;
        stdin.write_all(b"\n").await?;
        stdin.flush().await?;
        Ok(())
    }

    /// Its resident set size, KiB.
    pub fn rss_kib(&self) -> anyhow::Result<u64> {
        Ok(super::machine::rss_kib(self.pid)?)
    }

    /// Kill it at once (SIGKILL, by its handle), as a crash or a pulled plug would: no goodbye
    /// to its peers, no shutdown.
    pub async fn kill(mut self) -> anyhow::Result<()> {
        // SIGKILL first: closing its standard input is how a node is told to shut down cleanly.
        self.child.kill().await?;
        drop(self.stdin.take());
        Ok(())
    }

    /// Close its standard input, which stops it, and wait for it to exit.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        drop(self.stdin.take());
        match tokio::time::timeout(START_STOP, self.child.wait()).await {
            Ok(status) => {
                let status = status?;
                if !status.success() {
                    bail!("the child exited with {status}");
                }
                Ok(())
            }
            Err(_) => {
                // Our own child that ignored the closed pipe: end it by its handle.
                self.child.kill().await?;
                bail!("the child did not stop in time and was killed");
            }
        }
    }
}

/// The flag of `__node` for a node with the default limits, as an operator would run it.
pub const DEFAULT_LIMITS_FLAG: &str = "--default-limits";

/// The flag of `__node` for the broadcast tree's fan-out of the spaces the node sequences.
pub const FANOUT_FLAG: &str = "--fanout";

/// The flag of `__node` for the node's `storage_url`.
pub const STORAGE_URL_FLAG: &str = "--storage-url";

/// The flag of `__node` for the node's `metrics_listen`.
pub const METRICS_LISTEN_FLAG: &str = "--metrics-listen";

/// How `__node` sets up its node, besides the data directory.
#[derive(Debug, Default)]
pub struct NodeOptions {
    /// The default limits instead of the benchmark's raised ones.
    pub default_limits: bool,
    /// The broadcast tree's fan-out of the spaces the node sequences.
    pub fanout: Option<u32>,
    /// The node's `storage_url` (empty: SQLite in the data directory).
    pub storage_url: String,
    /// The node's `metrics_listen` (empty: metrics not served).
    pub metrics_listen: String,
}

/// `bench __node --data-dir D [--default-limits] [--fanout K] [--storage-url URL]`: run a
/// node with [`bench_config`] (or the default configuration) on a port the OS picks, print
/// `READY <addr>` once it answers `/health`, and stop when standard input closes.
pub async fn node_main(data_dir: PathBuf, options: NodeOptions) -> anyhow::Result<()> {
    let NodeOptions {
        default_limits,
        fanout,
        storage_url,
        metrics_listen,
    } = options;
    let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    let addr = listener.local_addr()?;
    let mut config = if default_limits {
        Config {
            data_dir,
            listen: addr,
            ..Config::default()
        }
    } else {
        bench_config(data_dir, addr)
    };
    if let Some(fanout) = fanout {
        config.fanout = fanout;
    }
    config.storage_url = storage_url;
    config.metrics_listen = metrics_listen;
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    let stdin_watch = tokio::spawn(async move {
        let mut lines = BufReader::new(tokio::io::stdin()).lines();
        // No commands for a node: any line is ignored, the end of input stops it.
        while let Ok(Some(_)) = lines.next_line().await {}
        stop.cancel();
    });
    let node = tokio::spawn(northstar_node::run(config, listener, shutdown.clone()));
    wait_healthy(addr).await?;
    println!("READY {addr}");
    let result = node.await;
    stdin_watch.abort();
    result??;
    Ok(())
}
