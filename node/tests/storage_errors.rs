//! A clear error for each way `storage_url` can be wrong: from [`Store::open`], and from
//! `northstar serve`, which exits 1 with it. Each case uses a real server or port; the ones
//! that need a PostgreSQL server run when `NORTHSTAR_TEST_POSTGRES` names one (a URL whose
//! user may `CREATE DATABASE` and `CREATE ROLE`) and print a notice otherwise.

use northstar_node::store::testing::{POSTGRES_ENV, TestDatabase};
use northstar_node::store::{Storage, Store, StoreError};

/// The node opening the databases.
const NODE: &str = "did:key:z6MkNodeOfTheStorageErrorTests";

// ---- misconfiguration of a PostgreSQL URL ----------------------------------------------

/// A URL of a port on this machine where nothing listens.
async fn nothing_listening() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    format!("postgres://northstar:hunter2@127.0.0.1:{port}/northstar")
}

#[tokio::test]
async fn an_unreachable_server_is_named_without_its_password() {
    let url = nothing_listening().await;
    let storage = Storage::from_url(&url, std::path::Path::new("/unused")).unwrap();
    let err = Store::open(&storage, NODE).await.unwrap_err();
    assert!(matches!(err, StoreError::Unreachable { .. }), "{err:?}");
    let text = format!("{err} {err:?}");
    assert!(text.contains("cannot reach"), "{text}");
    assert!(text.contains("127.0.0.1"), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
}

/// `server` with the user name and password replaced.
fn as_user(server: &str, user: &str, password: &str) -> String {
    let (scheme, rest) = server.split_once("://").unwrap();
    let host = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
    format!("{scheme}://{user}:{password}@{host}")
}

#[tokio::test]
async fn a_wrong_password_is_told_apart_from_an_unreachable_server() {
    let Ok(server) = std::env::var(POSTGRES_ENV) else {
        eprintln!("{POSTGRES_ENV} is not set: skipped");
        return;
    };
    use sqlx::Connection;
    let role = format!("northstar_pw_{}", std::process::id());
    let mut admin = sqlx::PgConnection::connect(&server).await.unwrap();
    let create = format!("CREATE ROLE {role} LOGIN PASSWORD 'right-password'");
    sqlx::raw_sql(sqlx::AssertSqlSafe(create))
        .execute(&mut admin)
        .await
        .unwrap();
    let url = as_user(&server, &role, "wrong-password");
    // Only a server that checks passwords from here can refuse one.
    let trusted = sqlx::PgConnection::connect(&url).await;
    let storage = Storage::from_url(&url, std::path::Path::new("/unused")).unwrap();
    let result = match trusted {
        Ok(conn) => {
            conn.close().await.unwrap();
            None
        }
        Err(_) => Some(Store::open(&storage, NODE).await),
    };
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP ROLE {role}")))
        .execute(&mut admin)
        .await
        .unwrap();
    let Some(result) = result else {
        eprintln!("the server at {POSTGRES_ENV} does not check passwords: skipped");
        return;
    };
    let err = result.unwrap_err();
    assert!(matches!(err, StoreError::LoginRefused { .. }), "{err:?}");
    let text = format!("{err} {err:?}");
    assert!(text.contains("password"), "{text}");
    assert!(!text.contains("wrong-password"), "{text}");
}

#[tokio::test]
async fn a_missing_database_is_named() {
    let Ok(server) = std::env::var(POSTGRES_ENV) else {
        eprintln!("{POSTGRES_ENV} is not set: skipped");
        return;
    };
    // A database made and dropped again: its name is certainly free.
    let gone = TestDatabase::create(&server).await.unwrap();
    let missing = gone.url().to_owned();
    drop(gone);
    let storage = Storage::from_url(&missing, std::path::Path::new("/unused")).unwrap();
    let err = Store::open(&storage, NODE).await.unwrap_err();
    assert!(matches!(err, StoreError::NoDatabase { .. }), "{err:?}");
    assert!(err.to_string().contains("does not exist"), "{err}");
}

// ---- what `northstar serve` says ---------------------------------------------------------

/// Run `northstar serve` on a fresh data directory with `storage_url` set to `url` from the
/// environment; its exit code and what it wrote to stderr, once it has exited (killed after
/// 60 s: a node that starts is a failure here).
fn serve_with_storage(url: &str) -> (Option<i32>, String) {
    use std::io::Read;
    let dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_northstar"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .env("NORTHSTAR_STORAGE_URL", url)
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        let _ = tx.send(text);
    });
    // The pipe closes when the process exits.
    let text = match rx.recv_timeout(std::time::Duration::from_secs(60)) {
        Ok(text) => text,
        Err(_) => {
            child.kill().unwrap();
            panic!("northstar serve did not exit");
        }
    };
    (child.wait().unwrap().code(), text)
}

#[test]
fn serve_exits_1_naming_an_unknown_storage_scheme() {
    let (code, stderr) = serve_with_storage("mysql://node:hunter2@127.0.0.1/northstar");
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("unknown scheme"), "{stderr}");
    assert!(stderr.contains("postgres://"), "says what to use: {stderr}");
    assert!(!stderr.contains("hunter2"), "{stderr}");
}

#[tokio::test]
async fn serve_exits_1_when_the_database_server_is_unreachable() {
    let url = nothing_listening().await;
    let (code, stderr) = tokio::task::spawn_blocking(move || serve_with_storage(&url))
        .await
        .unwrap();
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("cannot reach the database server"),
        "{stderr}"
    );
    assert!(!stderr.contains("hunter2"), "{stderr}");
}

#[tokio::test]
async fn serve_exits_1_naming_both_nodes_when_the_database_is_another_nodes() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("shared.db");
    let url = format!("sqlite://{}", file.display());
    let storage = Storage::from_url(&url, dir.path()).unwrap();
    let other = "did:key:z6MkTheNodeThatCameFirst";
    Store::open(&storage, other).await.unwrap().close().await;
    let (code, stderr) = tokio::task::spawn_blocking(move || serve_with_storage(&url))
        .await
        .unwrap();
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "belongs to node {other}, not to this node did:key:z"
        )),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_second_process_on_a_database_in_use_is_refused_until_the_first_closes() {
    let Ok(server) = std::env::var(POSTGRES_ENV) else {
        eprintln!("{POSTGRES_ENV} is not set: skipped");
        return;
    };
    let db = TestDatabase::create(&server).await.unwrap();
    let first = Store::open(&db.storage(), NODE).await.unwrap();
    // The same node's key, as a second process with another data directory would have it.
    let err = Store::open(&db.storage(), NODE).await.unwrap_err();
    assert!(matches!(err, StoreError::InUse { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("in use by another northstar process"),
        "{text}"
    );
    first.close().await;
    let second = Store::open(&db.storage(), NODE).await.unwrap();
    second.close().await;
}
