//! PostgreSQL for the integration tests and the benchmark: a database of its own for each
//! node, on a server on which databases may be created.
//!
//! The integration tests run their nodes on SQLite in the node's data directory unless
//! `NORTHSTAR_TEST_STORAGE=postgres` is set, with `NORTHSTAR_TEST_POSTGRES` naming the server
//! (`scripts/pg-cluster start` makes one). Then every data directory gets a database:
//! [`database_for`] names it after the directory, so a node restarted on the same directory (as
//! the restart and kill -9 tests do, the latter from another process) finds its data again.
//! A database lives as long as its directory: [`drop_database`] removes it when its owner knows
//! it is done, and each new database first sweeps away those whose directory is gone (on this
//! machine), which catches the rest (a test that failed, a directory owned by the test itself).

use std::path::Path;
use std::time::Duration;

use anyhow::{Context as _, bail};
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{ConnectOptions as _, Connection as _, Row as _};

/// The server tests may create databases on, as a `postgres://` URL.
pub const SERVER_ENV: &str = "NORTHSTAR_TEST_POSTGRES";

/// `postgres` runs the integration tests' nodes on PostgreSQL; unset or `sqlite`, on SQLite.
pub const STORAGE_ENV: &str = "NORTHSTAR_TEST_STORAGE";

/// The prefix of every database made here; nothing else is ever dropped.
pub const DATABASE_PREFIX: &str = "northstar_test_";

/// How long to wait for the server before giving up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);

/// The server of `NORTHSTAR_TEST_POSTGRES`, if set and not empty.
pub fn server_from_env() -> Option<String> {
    std::env::var(SERVER_ENV)
        .ok()
        .filter(|s| !s.trim().is_empty())
}

/// The server the integration tests' nodes must use, or `None` for SQLite. Fails if
/// `NORTHSTAR_TEST_STORAGE` asks for PostgreSQL without a server, or names something else.
pub fn test_storage_server() -> anyhow::Result<Option<String>> {
    match std::env::var(STORAGE_ENV).ok().as_deref().map(str::trim) {
        None | Some("" | "sqlite") => Ok(None),
        Some("postgres") => server_from_env().map(Some).with_context(|| {
            format!(
                "{STORAGE_ENV}=postgres needs {SERVER_ENV}=postgres://user:pass@host:port/db \
                 naming a server on which tests may create databases (scripts/pg-cluster start \
                 makes one)"
            )
        }),
        Some(other) => bail!("{STORAGE_ENV}={other:?}: expected sqlite or postgres"),
    }
}

/// `server` with its database replaced by `database`.
pub fn with_database(server: &str, database: &str) -> anyhow::Result<String> {
    let (scheme, rest) = server
        .split_once("://")
        .with_context(|| format!("{SERVER_ENV} is not a URL: expected postgres://…"))?;
    let (authority, query) = match rest.find(['/', '?']) {
        Some(i) => {
            let tail = &rest[i..];
            let query = tail.find('?').map_or("", |q| &tail[q..]);
            (&rest[..i], query)
        }
        None => (rest, ""),
    };
    Ok(format!("{scheme}://{authority}/{database}{query}"))
}

/// The database name of the node whose data directory is `data_dir`: the same directory on the
/// same machine always gives the same name.
pub fn database_name(data_dir: &Path) -> String {
    let path = std::path::absolute(data_dir).unwrap_or_else(|_| data_dir.to_owned());
    // FNV-1a: stable across builds and processes, unlike the standard library's hasher.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in origin(&path).bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{DATABASE_PREFIX}{hash:016x}")
}

/// What a database's comment says of its directory: this machine and the path.
fn origin(path: &Path) -> String {
    format!("{}:{}", host_name(), path.display())
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "localhost".to_owned())
}

async fn connect(server: &str) -> anyhow::Result<PgConnection> {
    let options: PgConnectOptions = server
        .parse()
        .with_context(|| format!("{SERVER_ENV} is not a PostgreSQL URL"))?;
    tokio::time::timeout(CONNECT_TIMEOUT, options.connect())
        .await
        .with_context(|| format!("the server of {SERVER_ENV} did not answer in time"))?
        .with_context(|| format!("cannot connect to the server of {SERVER_ENV}"))
}

/// The `storage_url` of the node whose data directory is `data_dir`: a database of its own on
/// `server`, created (empty) unless the directory has one already.
pub async fn database_for(server: &str, data_dir: &Path) -> anyhow::Result<String> {
    let name = database_name(data_dir);
    let mut conn = connect(server).await?;
    sweep(&mut conn).await?;
    let exists = sqlx::query("SELECT 1 FROM pg_database WHERE datname = $1")
        .bind(&name)
        .fetch_optional(&mut conn)
        .await?
        .is_some();
    if !exists {
        create(&mut conn, &name).await?;
        let path = std::path::absolute(data_dir).unwrap_or_else(|_| data_dir.to_owned());
        // COMMENT takes no parameters; the text is ours, with quotes doubled.
        let comment = origin(&path).replace('\'', "''");
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "COMMENT ON DATABASE \"{name}\" IS '{comment}'"
        )))
        .execute(&mut conn)
        .await?;
    }
    conn.close().await.ok();
    with_database(server, &name)
}

/// A new empty database `name` (which must not exist) on `server`; returns its URL.
pub async fn create_database(server: &str, name: &str) -> anyhow::Result<String> {
    anyhow::ensure!(
        name.starts_with(DATABASE_PREFIX),
        "test databases are named {DATABASE_PREFIX}…"
    );
    let mut conn = connect(server).await?;
    create(&mut conn, name).await?;
    conn.close().await.ok();
    with_database(server, name)
}

async fn create(conn: &mut PgConnection, name: &str) -> anyhow::Result<()> {
    check_name(name)?;
    match sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
        .execute(&mut *conn)
        .await
    {
        Ok(_) => Ok(()),
        // Made meanwhile for the same directory (a node and its restart racing): the same one.
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42P04") => Ok(()),
        Err(e) => Err(e).with_context(|| format!("cannot create database {name}")),
    }
}

/// Drop database `name` on `server`, ending any session still on it.
pub async fn drop_database(server: &str, name: &str) -> anyhow::Result<()> {
    check_name(name)?;
    let mut conn = connect(server).await?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
    )))
    .execute(&mut conn)
    .await
    .with_context(|| format!("cannot drop database {name}"))?;
    conn.close().await.ok();
    Ok(())
}

/// Drop database `name` from synchronous code (a `Drop`), on a thread of its own so it works
/// inside any runtime; waits at most a few seconds, and a database left behind is swept later.
pub fn drop_database_blocking(server: &str, name: &str) {
    let (server, name) = (server.to_owned(), name.to_owned());
    let (done, wait) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let result = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(anyhow::Error::from)
            .and_then(|rt| rt.block_on(drop_database(&server, &name)));
        let _ = done.send(result);
    });
    match wait.recv_timeout(Duration::from_secs(10)) {
        Ok(Ok(())) => {}
        Ok(Err(e)) => eprintln!("test database left behind, to be swept later: {e:#}"),
        Err(_) => eprintln!("test database not dropped in time; it will be swept later"),
    }
}

/// Only names made here reach SQL text.
fn check_name(name: &str) -> anyhow::Result<()> {
    anyhow::ensure!(
        name.starts_with(DATABASE_PREFIX)
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
        "not a test database name: {name:?}"
    );
    Ok(())
}

/// Drop the databases made here on this machine whose data directory no longer exists.
pub async fn sweep_gone(server: &str) -> anyhow::Result<()> {
    let mut conn = connect(server).await?;
    sweep(&mut conn).await?;
    conn.close().await.ok();
    Ok(())
}

/// Drop the test databases made on this machine whose data directory no longer exists.
async fn sweep(conn: &mut PgConnection) -> anyhow::Result<()> {
    let rows = sqlx::query(
        "SELECT d.datname, s.description FROM pg_database d \
         JOIN pg_shdescription s ON s.objoid = d.oid AND s.classoid = 'pg_database'::regclass \
         WHERE d.datname LIKE $1",
    )
    .bind(format!("{DATABASE_PREFIX}%"))
    .fetch_all(&mut *conn)
    .await?;
    let here = format!("{}:", host_name());
    for row in rows {
        let (name, description): (String, String) = (row.get(0), row.get(1));
        let Some(path) = description.strip_prefix(&here) else {
            continue;
        };
        if Path::new(path).exists() || check_name(&name).is_err() {
            continue;
        }
        // Another process may be sweeping the same one: a failure here is not ours to report.
        let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
        )))
        .execute(&mut *conn)
        .await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_the_database_and_keeps_the_rest() {
        let cases = [
            ("postgres://u:p@h:5/postgres", "postgres://u:p@h:5/db"),
            ("postgres://u:p@h:5", "postgres://u:p@h:5/db"),
            ("postgres://u:p@h:5/", "postgres://u:p@h:5/db"),
            (
                "postgres://u:p@h:5/x?sslmode=disable",
                "postgres://u:p@h:5/db?sslmode=disable",
            ),
            (
                "postgres://h?sslmode=disable",
                "postgres://h/db?sslmode=disable",
            ),
        ];
        for (server, want) in cases {
            assert_eq!(with_database(server, "db").unwrap(), want, "{server}");
        }
        assert!(with_database("no url", "db").is_err());
    }

    #[test]
    fn a_directory_always_gets_the_same_name_and_two_get_two() {
        let a = database_name(Path::new("/tmp/a"));
        assert_eq!(a, database_name(Path::new("/tmp/a")));
        assert_ne!(a, database_name(Path::new("/tmp/b")));
        check_name(&a).unwrap();
        assert!(check_name("postgres").is_err());
        assert!(check_name("northstar_test_\"; drop").is_err());
    }
}
