//! `northstar admin migrate-storage`: a node on SQLite moved to PostgreSQL keeps everything and
//! goes on; the move refuses a target that holds anything, a node that runs, and a log that
//! does not verify, which it names by space and seq and after which the target is as before.
//!
//! These need a PostgreSQL server on which databases may be created, named by
//! `NORTHSTAR_TEST_POSTGRES` (`scripts/pg-cluster start` makes one); without it they print a
//! notice and pass. The nodes being moved run on SQLite whatever `NORTHSTAR_TEST_STORAGE` says.

mod common;

use std::path::Path;

use common::{TestNode, until_seq};
use northstar_node::config::Config;
use northstar_node::migrate::{MigrateError, Step, migrate_storage};
use northstar_node::store::copy::{self, CopyError, Progress};
use northstar_node::store::testing::TestDatabase;
use northstar_node::store::{Storage, Store, StoreError};
use northstar_protocol::Keypair;
use northstar_protocol::address::{BeamUri, SpaceId, SpaceType};
use northstar_protocol::api::ErrorCode;
use northstar_sdk::Client;
use sqlx::Connection as _;

/// The server, or `None` with a notice that the test is skipped.
fn server(test: &str) -> Option<String> {
    let server = northstar_tests::postgres::server_from_env();
    if server.is_none() {
        eprintln!(
            "{test}: skipped: set {}=postgres://USER:PASSWORD@HOST:PORT/DB naming a server on \
             which tests may create databases (scripts/pg-cluster start makes one)",
            northstar_tests::postgres::SERVER_ENV
        );
    }
    server
}

/// A node on SQLite in `dir`, whatever storage the other tests use.
async fn sqlite_node(dir: &Path) -> TestNode {
    TestNode::start_on(dir.to_path_buf(), String::new(), |_| {}).await
}

fn config(dir: &Path) -> Config {
    Config {
        data_dir: dir.to_path_buf(),
        ..Config::default()
    }
}

/// Run the migration quietly.
async fn migrate(dir: &Path, to: &str) -> Result<northstar_node::migrate::Migrated, MigrateError> {
    migrate_storage(&config(dir), to, &mut |_| {}).await
}

async fn user(node: &TestNode) -> (Keypair, Client) {
    let key = Keypair::generate().unwrap();
    let client = Client::connect(&node.url, key.clone()).await.unwrap();
    (key, client)
}

/// A space's whole log as (seq, id) pairs, verified by the SDK.
async fn log(client: &Client, space: &SpaceId) -> Vec<(u64, String)> {
    client
        .events(space, 0, 500)
        .await
        .unwrap()
        .iter()
        .map(|e| (e.seq, e.id().unwrap().to_string()))
        .collect()
}

async fn members(client: &Client, space: &SpaceId) -> Vec<(String, String, Option<String>)> {
    client
        .members(space)
        .await
        .unwrap()
        .into_iter()
        .map(|m| (m.did.to_string(), m.state, m.home))
        .collect()
}

/// The stream capacity the member row of `did` in `space` holds, in the database at `url`.
async fn capacity_in(url: &str, space: &SpaceId, did: &str) -> Option<i64> {
    let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
    let capacity = sqlx::query_scalar("SELECT capacity FROM members WHERE space = $1 AND did = $2")
        .bind(space.as_str())
        .bind(did)
        .fetch_one(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    capacity
}

/// The number of tables in the database at `url`.
async fn tables_in(url: &str) -> i64 {
    let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
    let n = sqlx::query_scalar(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    conn.close().await.unwrap();
    n
}

#[tokio::test]
async fn a_node_moved_to_postgres_keeps_everything_and_goes_on() {
    let Some(server) = server("a_node_moved_to_postgres_keeps_everything_and_goes_on") else {
        return;
    };
    // B sequences a channel A replicates; A is the node that moves.
    let b = TestNode::start().await;
    let a_dir = tempfile::tempdir().unwrap();
    let a = sqlite_node(a_dir.path()).await;
    let a_addr = a.addr;
    let (alice_key, alice) = user(&a).await;
    let (bob_key, bob) = user(&a).await;
    let (carol_key, carol) = user(&a).await;
    let (_, dave) = user(&b).await;

    let general = alice
        .create_space(SpaceType::Channel, "general", "General")
        .await
        .unwrap()
        .space;
    carol.join(&general).await.unwrap();
    let kept = alice.post(&general, "one", "first").await.unwrap();
    carol.post(&general, "two", "second").await.unwrap();
    let gone = alice.post(&general, "gone", "deleted soon").await.unwrap();
    let gone = BeamUri::parse(&gone.beam_uri).unwrap();
    alice.delete_beam(&gone).await.unwrap();

    let dm = alice
        .create_space(SpaceType::Dm, "us", "Us")
        .await
        .unwrap()
        .space;
    alice.invite(&dm, bob_key.did()).await.unwrap();
    bob.join(&dm).await.unwrap();
    let secret =
        BeamUri::parse(&bob.post(&dm, "secret", "for us").await.unwrap().beam_uri).unwrap();

    let remote = dave
        .create_space(SpaceType::Channel, "remote", "Remote")
        .await
        .unwrap()
        .space;
    alice.join(&dave.space_uri(&remote)).await.unwrap();
    let daves = BeamUri::parse(&dave.post(&remote, "from b", "x").await.unwrap().beam_uri).unwrap();
    let mine = alice.post(&remote, "from a", "through a").await.unwrap();
    let mut feed = alice.subscribe(&remote, 0).await.unwrap();
    until_seq(&mut feed, mine.seq).await;
    drop(feed);
    // Read through A: A fetches Dave's beam from B and keeps a copy.
    assert_eq!(alice.get_beam(&daves).await.unwrap().title, "from b");

    // A stream Dave joins through B: A's member row holds B's declared capacity.
    let radio = alice
        .create_space(SpaceType::Stream, "radio", "Radio")
        .await
        .unwrap()
        .space;
    dave.join(&alice.space_uri(&radio)).await.unwrap();

    let spaces = [&general, &dm, &remote, &radio];
    let mut before = Vec::new();
    for space in spaces {
        before.push((log(&alice, space).await, members(&alice, space).await));
    }
    let a_did = alice.node_info().did.clone();
    drop((alice, bob, carol));
    a.stop().await;

    let target = TestDatabase::create(&server).await.unwrap();
    let mut spaces_reported = Vec::new();
    let mut tables_reported = Vec::new();
    let migrated = migrate_storage(
        &config(a_dir.path()),
        target.url(),
        &mut |step| match step {
            Step::Copy(Progress::Space { space, events, .. }) => {
                spaces_reported.push((space.to_owned(), events))
            }
            Step::Copy(Progress::Table { table, rows }) => {
                tables_reported.push((table.to_owned(), rows))
            }
            _ => {}
        },
    )
    .await
    .unwrap();
    assert_eq!(migrated.node, a_did);
    let copied = &migrated.copied;
    let events: u64 = before.iter().map(|(log, _)| log.len() as u64).sum();
    assert_eq!(copied.rows("spaces"), 4);
    assert_eq!(copied.rows("events"), events);
    assert_eq!(copied.rows("tombstones"), 1);
    assert_eq!(copied.rows("beam_cache"), 1, "Dave's beam, read through A");
    assert!(
        copied.rows("beam_posts") >= 1,
        "Alice's post into B's channel"
    );
    assert!(
        copied.rows("beams") >= 4 && copied.rows("beam_refs") >= 4,
        "{copied:?}"
    );
    assert_eq!(spaces_reported.len(), 4);
    for (space, (log, _)) in spaces.iter().zip(&before) {
        assert!(
            spaces_reported.contains(&(space.to_string(), log.len() as u64)),
            "{spaces_reported:?}"
        );
    }
    assert!(
        tables_reported
            .iter()
            .any(|(t, n)| t == "members" && *n > 0)
    );
    let password = target
        .url()
        .split_once("://")
        .and_then(|(_, rest)| rest.split_once('@'))
        .and_then(|(user, _)| user.split_once(':'))
        .map(|(_, password)| password.to_owned());
    if let Some(password) = password {
        assert!(!migrated.target.contains(&password), "{}", migrated.target);
    }

    // The same node, same key, same address, now on PostgreSQL.
    let a = TestNode::start_on(a_dir.path().to_path_buf(), target.url().to_owned(), |c| {
        c.listen = a_addr
    })
    .await;
    let alice = Client::connect(&a.url, alice_key).await.unwrap();
    let bob = Client::connect(&a.url, bob_key).await.unwrap();
    let carol = Client::connect(&a.url, carol_key).await.unwrap();
    assert_eq!(alice.node_info().did, a_did);
    for (space, (log_before, members_before)) in spaces.iter().zip(&before) {
        assert_eq!(&log(&alice, space).await, log_before, "{space}");
        assert_eq!(&members(&alice, space).await, members_before, "{space}");
    }
    // The stream's tree still has B, and B's member row the capacity Dave's join declared
    // (the SDK copies B's own figure into the join).
    let tree = alice.stream_info(&radio).await.unwrap();
    assert_eq!(tree.children, [dave.node_info().did.clone()]);
    let dave_did = dave.did().unwrap().to_string();
    assert_eq!(
        capacity_in(target.url(), &radio, &dave_did).await,
        Some(i64::from(dave.node_info().stream_capacity))
    );
    let kept = BeamUri::parse(&kept.beam_uri).unwrap();
    assert_eq!(carol.get_beam(&kept).await.unwrap().body, "first");
    let err = alice.get_beam(&gone).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::BeamNotFound), "{err}");
    assert_eq!(bob.get_beam(&secret).await.unwrap().body, "for us");
    assert!(
        carol.get_beam(&secret).await.is_err(),
        "the dm stays private"
    );

    // Appendable: each log goes on from its head, here and across nodes.
    let next = alice.post(&general, "after", "the move").await.unwrap();
    assert_eq!(next.seq, before[0].0.len() as u64 + 1);
    let next = bob.post(&dm, "after", "the move").await.unwrap();
    assert_eq!(next.seq, before[1].0.len() as u64 + 1);
    let theirs = dave.post(&remote, "after", "from b").await.unwrap();
    let ours = alice.post(&remote, "after", "from a").await.unwrap();
    assert_eq!(theirs.seq, before[2].0.len() as u64 + 1);
    let mut feed = alice.subscribe(&remote, 0).await.unwrap();
    let seen = until_seq(&mut feed, ours.seq).await;
    assert_eq!(
        seen.len() as u64,
        ours.seq,
        "A's replica holds the whole log"
    );

    // While A runs, no other process may open its database; once A has stopped, the database
    // is still A's: another node's key is refused.
    let other = Keypair::generate().unwrap();
    let storage = Storage::Postgres {
        url: target.url().to_owned(),
    };
    match Store::open(&storage, other.did().as_str()).await {
        Err(StoreError::InUse { .. }) => {}
        other => panic!("a database in use was opened: {other:?}"),
    }
    drop((alice, bob, carol));
    a.stop().await;
    match Store::open(&storage, other.did().as_str()).await {
        Err(StoreError::OtherNode { owner, .. }) => assert_eq!(owner, a_did.as_str()),
        other => panic!("another node's key was not refused: {other:?}"),
    }

    // Once it holds data, it is no target any more.
    let err = migrate(a_dir.path(), target.url()).await.unwrap_err();
    let message = format!("{:#}", anyhow::Error::from(err));
    assert!(
        message.contains("not empty") && message.contains("events"),
        "{message}"
    );
}

#[tokio::test]
async fn refuses_a_target_that_holds_anything() {
    let Some(server) = server("refuses_a_target_that_holds_anything") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let node = sqlite_node(dir.path()).await;
    let (_, alice) = user(&node).await;
    alice
        .create_space(SpaceType::Channel, "c", "C")
        .await
        .unwrap();
    drop(alice);
    node.stop().await;

    let target = TestDatabase::create(&server).await.unwrap();
    let mut conn = sqlx::PgConnection::connect(target.url()).await.unwrap();
    sqlx::raw_sql("CREATE TABLE notes (x INT); INSERT INTO notes VALUES (1), (2)")
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    let err = migrate(dir.path(), target.url()).await.unwrap_err();
    assert!(
        matches!(&err, MigrateError::Copy(CopyError::NotEmpty { found, .. }) if found.contains("notes (2 rows)")),
        "{err}"
    );
    assert_eq!(tables_in(target.url()).await, 1, "nothing was added");
}

#[tokio::test]
async fn refuses_while_the_node_runs() {
    let Some(server) = server("refuses_while_the_node_runs") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let node = sqlite_node(dir.path()).await;
    let target = TestDatabase::create(&server).await.unwrap();
    let err = migrate(dir.path(), target.url()).await.unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, MigrateError::NodeRunning { .. }), "{message}");
    assert!(
        message.contains("stop it first")
            && message.contains(&format!("pid {}", std::process::id())),
        "{message}"
    );
    assert_eq!(
        tables_in(target.url()).await,
        0,
        "the target was not touched"
    );
    node.stop().await;
}

#[tokio::test]
async fn a_tampered_log_stops_the_copy_at_its_space_and_seq() {
    let Some(server) = server("a_tampered_log_stops_the_copy_at_its_space_and_seq") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let node = sqlite_node(dir.path()).await;
    let (_, alice) = user(&node).await;
    let space = alice
        .create_space(SpaceType::Channel, "c", "C")
        .await
        .unwrap()
        .space;
    for i in 0..4 {
        alice.post(&space, &format!("p{i}"), "x").await.unwrap();
    }
    drop(alice);
    node.stop().await;

    // Edit event 3 in the file: another timestamp, the sequencer's signature no longer holds.
    let db = dir.path().join("northstar.db");
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    let edited = sqlx::query(
        "UPDATE events SET json = replace(json, '\"timestamp\":', '\"timestamp\":9') \
         WHERE space = $1 AND seq = 3",
    )
    .bind(space.as_str())
    .execute(&mut conn)
    .await
    .unwrap();
    assert_eq!(edited.rows_affected(), 1);
    conn.close().await.unwrap();

    let target = TestDatabase::create(&server).await.unwrap();
    for attempt in 0..2 {
        let err = migrate(dir.path(), target.url()).await.unwrap_err();
        let message = format!("{:#}", anyhow::Error::from(err));
        assert!(
            message.contains(&format!("the log of {space} fails at seq 3")),
            "attempt {attempt}: {message}"
        );
        // Rolled back: nothing but the schema, so the same command may run again (the second
        // attempt fails on the log again, not on the target).
        copy::check_target(target.url()).await.unwrap();
    }
}

#[tokio::test]
async fn a_table_the_copy_does_not_know_stops_it_before_anything_is_copied() {
    let Some(server) = server("a_table_the_copy_does_not_know_stops_it_before_anything_is_copied")
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let node = sqlite_node(dir.path()).await;
    let (_, alice) = user(&node).await;
    alice
        .create_space(SpaceType::Channel, "c", "C")
        .await
        .unwrap();
    drop(alice);
    node.stop().await;
    // As if a later schema added a table this copy has not learnt: its rows would be lost.
    let db = dir.path().join("northstar.db");
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    sqlx::raw_sql("CREATE TABLE streams (id TEXT); INSERT INTO streams VALUES ('s')")
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();

    let target = TestDatabase::create(&server).await.unwrap();
    let err = migrate(dir.path(), target.url()).await.unwrap_err();
    assert!(
        matches!(&err, MigrateError::Copy(CopyError::UnknownTable { side: "source", table }) if table == "streams"),
        "{err}"
    );
    copy::check_target(target.url()).await.unwrap();
}
