//! The storage backends the benchmark measures ingest and catch-up on (`--storage
//! sqlite,postgres`), and the PostgreSQL server it uses: the one `NORTHSTAR_BENCH_POSTGRES`
//! names, or a throw-away cluster it starts with `scripts/pg-cluster` and stops at the end.
//!
//! Every node on PostgreSQL gets a database of its own, named after its data directory
//! ([`crate::postgres::database_for`]), so a member node restarted for catch-up finds its data.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde::Serialize;
use sqlx::postgres::PgConnection;
use sqlx::{Connection as _, Row as _};

use super::report::percentile;
use crate::postgres;

/// The environment variable naming a PostgreSQL server for the benchmark.
pub const SERVER_ENV: &str = "NORTHSTAR_BENCH_POSTGRES";

/// Where a node keeps its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    /// SQLite in the data directory (the default).
    Sqlite,
    /// A database of its own on the PostgreSQL server.
    Postgres,
}

impl Backend {
    /// Its name, as `--storage` takes it.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

impl FromStr for Backend {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "sqlite" => Ok(Backend::Sqlite),
            "postgres" | "postgresql" => Ok(Backend::Postgres),
            other => Err(format!(
                "unknown storage {other:?}; expected sqlite or postgres"
            )),
        }
    }
}

/// The PostgreSQL server of a benchmark run.
pub struct PgServer {
    /// A URL on which databases may be created.
    pub url: String,
    /// What the report says of it.
    pub description: String,
    /// The cluster this run started, to stop at the end.
    cluster: Option<PathBuf>,
}

/// `scripts/pg-cluster` of this repository.
fn cluster_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/pg-cluster")
}

impl PgServer {
    /// The server at `url`, or, without one, a throw-away cluster started now.
    pub async fn start_or_use(url: Option<String>) -> anyhow::Result<Self> {
        let (url, cluster) = match url {
            Some(url) => (url, None),
            None => {
                let (url, dir) = start_cluster().await?;
                (url, Some(dir))
            }
        };
        let mut server = Self {
            url,
            description: String::new(),
            cluster,
        };
        match server.describe().await {
            Ok(description) => server.description = description,
            Err(e) => {
                server.stop().await;
                return Err(e);
            }
        }
        Ok(server)
    }

    async fn describe(&self) -> anyhow::Result<String> {
        let mut conn = connect(&self.url).await?;
        let mut show = Vec::new();
        for setting in [
            "server_version",
            "synchronous_commit",
            "fsync",
            "wal_sync_method",
            "shared_buffers",
            "max_connections",
        ] {
            let row = sqlx::query(sqlx::AssertSqlSafe(format!("SHOW {setting}")))
                .fetch_one(&mut conn)
                .await?;
            show.push((setting, row.get::<String, _>(0)));
        }
        drop(conn.close().await);
        let value = |name: &str| {
            show.iter()
                .find(|(n, _)| *n == name)
                .map_or("?", |(_, v)| v.as_str())
                .to_owned()
        };
        let host = self
            .url
            .rsplit_once('@')
            .map_or("?", |(_, h)| h)
            .split('/')
            .next()
            .unwrap_or("?")
            .to_owned();
        Ok(format!(
            "PostgreSQL {} at {host} ({}); synchronous_commit {}, fsync {} ({}), \
             shared_buffers {}, max_connections {}; a database of its own per node",
            value("server_version"),
            if self.cluster.is_some() {
                "a throw-away cluster started by scripts/pg-cluster, default settings"
            } else {
                "from NORTHSTAR_BENCH_POSTGRES"
            },
            value("synchronous_commit"),
            value("fsync"),
            value("wal_sync_method"),
            value("shared_buffers"),
            value("max_connections"),
        ))
    }

    /// The `storage_url` of the node on `data_dir`.
    pub async fn storage_url(&self, data_dir: &Path) -> anyhow::Result<String> {
        postgres::database_for(&self.url, data_dir).await
    }

    /// The median time of one durable commit of a one-row insert on a connection of its own
    /// (in a scratch database): what an acknowledged write on this server costs at least.
    pub async fn commit_floor(&self, scratch_dir: &Path) -> anyhow::Result<Duration> {
        const WARM_UP: usize = 20;
        const COMMITS: usize = 200;
        let url = postgres::database_for(&self.url, scratch_dir).await?;
        let mut conn = connect(&url).await?;
        sqlx::raw_sql("CREATE TABLE IF NOT EXISTS commit_probe (n BIGINT)")
            .execute(&mut conn)
            .await?;
        let mut samples = Vec::with_capacity(COMMITS);
        for i in 0..WARM_UP + COMMITS {
            let start = Instant::now();
            sqlx::query("INSERT INTO commit_probe (n) VALUES ($1)")
                .bind(i as i64)
                .execute(&mut conn)
                .await?;
            if i >= WARM_UP {
                samples.push(start.elapsed().as_secs_f64());
            }
        }
        drop(conn.close().await);
        postgres::drop_database(&self.url, &postgres::database_name(scratch_dir)).await?;
        samples.sort_by(f64::total_cmp);
        Ok(Duration::from_secs_f64(percentile(&samples, 50.0)))
    }

    /// Drop the databases of nodes whose data directories are gone, and stop the cluster if
    /// this run started it.
    pub async fn stop(self) {
        let _ = postgres::sweep_gone(&self.url).await;
        if let Some(dir) = &self.cluster
            && let Err(e) = stop_cluster(dir).await
        {
            eprintln!(
                "cannot stop the PostgreSQL cluster in {}: {e:#}",
                dir.display()
            );
        }
    }
}

async fn connect(url: &str) -> anyhow::Result<PgConnection> {
    tokio::time::timeout(Duration::from_secs(20), PgConnection::connect(url))
        .await
        .context("the PostgreSQL server did not answer in time")?
        .context("cannot connect to the PostgreSQL server")
}

/// Start a cluster with `scripts/pg-cluster`; its URL and directory.
async fn start_cluster() -> anyhow::Result<(String, PathBuf)> {
    let env_file = tempfile::NamedTempFile::new()?;
    let status = tokio::process::Command::new("bash")
        .arg(cluster_script())
        .args(["start", "--env-file"])
        .arg(env_file.path())
        .status()
        .await
        .context("cannot run scripts/pg-cluster")?;
    if !status.success() {
        bail!(
            "scripts/pg-cluster start failed ({status}); set {SERVER_ENV} to a server's URL instead"
        );
    }
    let text = std::fs::read_to_string(env_file.path())?;
    let value = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}=")))
            .map(|v| v.trim().to_owned())
    };
    let url = value(postgres::SERVER_ENV).context("pg-cluster wrote no URL")?;
    let dir = value("NORTHSTAR_PG_CLUSTER").context("pg-cluster wrote no directory")?;
    Ok((url, dir.into()))
}

async fn stop_cluster(dir: &Path) -> anyhow::Result<()> {
    let status = tokio::process::Command::new("bash")
        .arg(cluster_script())
        .arg("stop")
        .arg(dir)
        .status()
        .await?;
    anyhow::ensure!(
        status.success(),
        "scripts/pg-cluster stop failed ({status})"
    );
    Ok(())
}
