//! Databases written by an older node: what it stored is still found after the migrations
//! this one adds. SQLite only (the default store of every node that can be upgraded in place).

use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};

use super::*;

/// Migrations 0001–0007: the layout in which beams were keyed by path.
const KEYED_BY_PATH: usize = 7;

/// A SQLite file at `path` migrated up to (and including) migration number `last`.
async fn older_database(path: &std::path::Path, last: usize) -> sqlx::SqlitePool {
    let mut migrator = sqlx::migrate!("./migrations/sqlite");
    let older: Vec<_> = migrator.migrations.iter().take(last).cloned().collect();
    assert_eq!(older.len(), last, "migration {last} exists");
    migrator.migrations = older.into();
    let options = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true);
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await
        .unwrap();
    migrator.run(&pool).await.unwrap();
    pool
}

#[tokio::test]
async fn beams_keyed_by_path_are_found_by_path_and_author_after_the_upgrade() {
    let dir = tempfile::tempdir().unwrap();
    let storage = Storage::from_url("", dir.path()).unwrap();
    let file = dir.path().join(northstar_node::store::DEFAULT_SQLITE_FILE);
    let old = older_database(&file, KEYED_BY_PATH).await;
    // Inserted newest first: the new layout must not depend on the order rows were written.
    for (path, id, created_at) in [("beam/ah/b2", "b2", 20), ("beam/ah/b1", "b1", 10)] {
        sqlx::query(
            "INSERT INTO beams (path, id, author, json, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(path)
        .bind(id)
        .bind("did:key:author")
        .bind(format!("{{\"beam\":\"{id}\"}}"))
        .bind(created_at)
        .execute(&old)
        .await
        .unwrap();
    }
    old.close().await;

    let store = Store::open(&storage, NODE).await.unwrap();
    assert_eq!(
        store.beam("beam/ah/b1").await.unwrap(),
        Some(beam("beam/ah/b1", "b1", "did:key:author", 10))
    );
    assert_eq!(
        store.beam("beam/other/b1").await.unwrap(),
        None,
        "a beam is found only under its own path"
    );
    let listed = store
        .beams_by_author(
            "did:key:author",
            u64::MAX,
            10,
            usize::MAX,
            Some("did:key:author"),
        )
        .await
        .unwrap();
    let ids: Vec<&str> = listed.iter().map(|b| b.id.as_str()).collect();
    assert_eq!(ids, ["b2", "b1"], "newest first");
    // Its content id still keeps a beam unique: storing it again changes nothing.
    let again = BeamRow {
        json: "{\"other\":true}".into(),
        ..beam("beam/ah/b2", "b2", "did:key:author", 20)
    };
    store.commit(&[Op::PutBeam(again)]).await.unwrap();
    assert_eq!(
        store.beam("beam/ah/b2").await.unwrap(),
        Some(beam("beam/ah/b2", "b2", "did:key:author", 20))
    );
    store.close().await;
}

/// Migrations 0001–0008: the last layout of protocol v1, before the database recorded its
/// protocol version.
const PROTOCOL_V1: usize = 8;

#[tokio::test]
async fn a_database_a_v1_node_opened_is_refused_by_name_and_left_as_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let storage = Storage::from_url("", dir.path()).unwrap();
    let file = dir.path().join(northstar_node::store::DEFAULT_SQLITE_FILE);
    let old = older_database(&file, PROTOCOL_V1).await;
    // What a v1 node wrote at its first start: its DID, and nothing about the protocol.
    sqlx::query("INSERT INTO node_identity (id, did) VALUES (1, $1)")
        .bind(NODE)
        .execute(&old)
        .await
        .unwrap();
    old.close().await;

    let err = Store::open(&storage, NODE).await.unwrap_err();
    match &err {
        StoreError::OtherProtocol { holds, speaks, .. } => {
            assert_eq!((*holds, *speaks), (1, northstar_protocol::PROTOCOL_VERSION));
        }
        e => panic!("expected OtherProtocol, got {e:?}"),
    }
    let text = err.to_string();
    assert!(
        text.contains("v1") && text.contains("new data directory"),
        "{text}"
    );
    // Refused every time, not claimed by the attempt.
    let again = Store::open(&storage, NODE).await.unwrap_err();
    assert!(
        matches!(again, StoreError::OtherProtocol { .. }),
        "{again:?}"
    );

    // A database no node has opened yet is this version's, whatever migrations it had.
    let fresh = tempfile::tempdir().unwrap();
    let storage = Storage::from_url("", fresh.path()).unwrap();
    let file = fresh
        .path()
        .join(northstar_node::store::DEFAULT_SQLITE_FILE);
    older_database(&file, PROTOCOL_V1).await.close().await;
    Store::open(&storage, NODE).await.unwrap().close().await;
    Store::open(&storage, NODE).await.unwrap().close().await;
}
