//! Tests of the pipelined writer on a real SQLite file: many posts at once come back with one
//! contiguous, chained log, and a commit that fails refuses its group and every group decided
//! on top of it, and leaves the writer's memory as the store is.

use std::sync::Arc;

use futures_util::future::join_all;
use northstar_protocol::address::{SpaceId, SpaceType};
use northstar_protocol::wire::{Beam, BeamRef, Payload, SpaceGenesis, Tombstone};
use northstar_protocol::{Keypair, Signed as _};
use sqlx::Connection as _;
use tokio_util::sync::CancellationToken;

use super::{SequencerHandle, Writer};
use crate::hub::Hub;
use crate::store::{Storage, Store};

/// Posts sent at once: enough that groups form while others commit.
const POSTS: usize = 60;

struct Fixture {
    /// The node's key.
    key: Keypair,
    owner: Keypair,
    space: SpaceId,
    handle: SequencerHandle,
    store: Store,
    path: std::path::PathBuf,
    stop: CancellationToken,
    dir: tempfile::TempDir,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let key = Keypair::generate().unwrap();
    let at = Storage::from_url("", dir.path()).unwrap();
    let Storage::Sqlite { path } = &at else {
        panic!("an empty storage URL is SQLite")
    };
    let path = path.clone();
    let store = Store::open(&at, key.did().as_str()).await.unwrap();
    let (writer, handle) = Writer::new(store.clone(), key.clone(), Arc::new(Hub::new(16)), None);
    let stop = CancellationToken::new();
    tokio::spawn(writer.run(stop.clone()));
    let owner = Keypair::generate().unwrap();
    let space = SpaceId::new(SpaceType::Channel, owner.did(), "pipelined").unwrap();
    let genesis = SpaceGenesis::create(
        &owner,
        space.clone(),
        "Pipelined",
        key.did().clone(),
        "127.0.0.1:1",
        3,
        1,
    )
    .unwrap();
    let ack = handle.create(genesis).await.unwrap();
    assert_eq!(ack.seq, 1);
    Fixture {
        key,
        owner,
        space,
        handle,
        store,
        path,
        stop,
        dir,
    }
}

impl Fixture {
    /// The owner posts beam number `n`.
    async fn post(&self, n: usize) -> Result<u64, super::SequenceError> {
        self.post_beam(&self.handle, self.beam(&format!("post {n}")))
            .await
    }

    /// A beam of the owner's titled `title`.
    fn beam(&self, title: &str) -> Beam {
        Beam::post(
            &self.owner,
            self.space.clone(),
            "127.0.0.1:1",
            title,
            "body",
            2,
        )
        .unwrap()
        .0
    }

    /// The owner posts `beam` through the writer behind `handle`.
    async fn post_beam(
        &self,
        handle: &SequencerHandle,
        beam: Beam,
    ) -> Result<u64, super::SequenceError> {
        let beam_ref = BeamRef::create(
            &self.owner,
            self.space.clone(),
            beam.content_id().unwrap(),
            "127.0.0.1:1",
            2,
        )
        .unwrap();
        handle
            .append(
                self.space.clone(),
                Payload::BeamRef(beam_ref),
                Some(beam),
                None,
            )
            .await
            .map(|ack| ack.seq)
    }

    /// The seqs acked to `POSTS` posts sent at once (numbered from `from`), sorted; each post
    /// must be acked.
    async fn acked_seqs(&self, from: usize) -> Vec<u64> {
        let mut seqs: Vec<u64> = self
            .post_many(from)
            .await
            .into_iter()
            .map(Result::unwrap)
            .collect();
        seqs.sort_unstable();
        seqs
    }

    /// `POSTS` posts sent at once, numbered from `from`.
    async fn post_many(&self, from: usize) -> Vec<Result<u64, super::SequenceError>> {
        join_all((from..from + POSTS).map(|n| self.post(n))).await
    }

    /// The stored log's seqs, checked to be chained: each event's `prev` is the id before it.
    async fn chained_seqs(&self) -> Vec<u64> {
        let rows = self
            .store
            .events(self.space.as_str(), 0, u32::MAX)
            .await
            .unwrap();
        let mut prev: Option<String> = None;
        let mut seqs = Vec::new();
        for row in rows {
            let event: northstar_protocol::wire::Event = serde_json::from_str(&row.json).unwrap();
            assert_eq!(event.prev.map(|p| p.to_string()), prev, "seq {}", row.seq);
            assert_eq!(event.id().unwrap().to_string(), row.id);
            prev = Some(row.id);
            seqs.push(row.seq);
        }
        seqs
    }

    /// Another connection to the database file, behind the writer's back.
    async fn connection(&self) -> sqlx::SqliteConnection {
        let url = format!("sqlite://{}", self.path.display());
        sqlx::SqliteConnection::connect(&url).await.unwrap()
    }

    /// Run `sql` with the space's id as `$1` on another connection.
    async fn sneak(&self, sql: &'static str) {
        let mut conn = self.connection().await;
        run(&mut conn, sql, &self.space).await;
        conn.close().await.unwrap();
    }
}

/// Run `sql` on `conn` with `space` as `$1` if it names one.
async fn run(conn: &mut sqlx::SqliteConnection, sql: &'static str, space: &SpaceId) {
    let query = sqlx::query(sql);
    let query = if sql.contains("$1") {
        query.bind(space.as_str())
    } else {
        query
    };
    query.execute(conn).await.unwrap();
}

/// Squat seq 3 of the log behind the writer's back.
const SQUAT: &str = "INSERT INTO events (space, seq, id, kind, author, json) \
                     VALUES ($1, 3, 'squatter', 'beam_ref', 'nobody', '{}')";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn posts_at_once_get_one_contiguous_chained_log() {
    let f = fixture().await;
    let seqs = f.acked_seqs(0).await;
    let expected: Vec<u64> = (2..2 + POSTS as u64).collect();
    assert_eq!(
        seqs, expected,
        "each post acked once, no seq skipped or repeated"
    );
    let stored = f.chained_seqs().await;
    assert_eq!(stored, (1..2 + POSTS as u64).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_commit_refuses_the_groups_on_top_of_it_and_rolls_back() {
    let f = fixture().await;
    assert_eq!(f.post(0).await.unwrap(), 2);
    // A row the writer does not know of takes seq 3: the commit of the group holding seq 3
    // fails, and every group decided on top of it must be refused with it.
    f.sneak(SQUAT).await;
    let results = f.post_many(1).await;
    assert!(
        results.iter().all(Result::is_err),
        "acked on top of a failed commit: {:?}",
        results.iter().filter(|r| r.is_ok()).collect::<Vec<_>>()
    );
    f.sneak("DELETE FROM events WHERE space = $1 AND seq = 3")
        .await;
    // The writer's memory went back to the store's head: the next post takes seq 3, chained
    // to seq 2, and so do the ones after it.
    assert_eq!(f.post(1_000).await.unwrap(), 3);
    let seqs = f.acked_seqs(2_000).await;
    assert_eq!(seqs, (4..4 + POSTS as u64).collect::<Vec<_>>());
    assert_eq!(
        f.chained_seqs().await,
        (1..4 + POSTS as u64).collect::<Vec<_>>()
    );
}

/// Not left to timing: another connection holds the write lock while it squats seq 3, so the
/// commit of the post that takes seq 3 waits for it; a second post is decided on top
/// meanwhile. When the lock goes, the first commit fails; the second is refused, and the
/// writer's memory goes back to seq 2, not to the first post's seq 3.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_group_decided_on_a_blocked_commit_that_fails_is_undone_first() {
    let f = Arc::new(fixture().await);
    assert_eq!(f.post(0).await.unwrap(), 2);
    let mut lock = f.connection().await;
    run(&mut lock, "BEGIN IMMEDIATE", &f.space).await;
    run(&mut lock, SQUAT, &f.space).await;
    let first = tokio::spawn({
        let f = f.clone();
        async move { f.post(1).await }
    });
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let second = tokio::spawn({
        let f = f.clone();
        async move { f.post(2).await }
    });
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    run(&mut lock, "COMMIT", &f.space).await;
    let refused = first.await.unwrap().unwrap_err();
    // The refusal carries the database's own reason, not only "database error".
    let reason = crate::report::Causes(&refused).to_string();
    assert!(
        reason.contains("UNIQUE") || reason.contains("unique") || reason.contains("duplicate"),
        "{reason}"
    );
    assert!(
        second.await.unwrap().is_err(),
        "decided on top of a failed commit"
    );
    f.sneak("DELETE FROM events WHERE space = $1 AND seq = 3")
        .await;
    assert_eq!(f.post(3).await.unwrap(), 3, "the head went back to seq 2");
    assert_eq!(f.chained_seqs().await, vec![1, 2, 3]);
}

/// The WAL is copied into the database file beside the writer: a copy of the database file
/// alone, without its WAL, holds what was committed a moment ago.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_reach_the_database_file_without_waiting_for_the_wal_to_fill() {
    let f = fixture().await;
    for n in 0..5 {
        f.post(n).await.unwrap();
    }
    let copy = f.dir.path().join("copy.db");
    let mut events = 0;
    for _ in 0..50 {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        std::fs::copy(&f.path, &copy).unwrap();
        let url = format!("sqlite://{}", copy.display());
        let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
        events = sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM events")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        conn.close().await.unwrap();
        if events == 6 {
            break;
        }
    }
    assert_eq!(
        events, 6,
        "the genesis and five posts, in the database file itself"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_beam_posted_again_is_refused_before_and_after_a_restart() {
    let f = fixture().await;
    let beam = f.beam("once");
    let path = beam.path().unwrap();
    assert_eq!(f.post_beam(&f.handle, beam.clone()).await.unwrap(), 2);
    let tombstone = Tombstone::create(&f.owner, path.beam, 3).unwrap();
    f.handle.delete(tombstone, path).await.unwrap();
    let refused = |r: Result<u64, super::SequenceError>| {
        assert!(
            matches!(r, Err(super::SequenceError::BeamNotFound(_))),
            "{r:?}"
        );
    };
    // Known as deleted since this writer decided it.
    refused(f.post_beam(&f.handle, beam.clone()).await);
    // A new writer on the same store (a restart) learns it from the store.
    f.stop.cancel();
    let (writer, handle) =
        Writer::new(f.store.clone(), f.key.clone(), Arc::new(Hub::new(16)), None);
    let stop = CancellationToken::new();
    let _stop = stop.clone().drop_guard();
    tokio::spawn(writer.run(stop));
    refused(f.post_beam(&handle, beam).await);
    // Another beam is sequenced as before.
    let other = f.beam("twice");
    assert_eq!(f.post_beam(&handle, other).await.unwrap(), 4);
    assert_eq!(f.chained_seqs().await, [1, 2, 3, 4]);
}

/// A beam row with number `n`, as the store keeps it.
fn beam_row(n: u8) -> crate::store::BeamRow {
    crate::store::BeamRow {
        path: format!("beam/ah/b{n}"),
        id: format!("b{n}"),
        author: "did:key:author".into(),
        json: "{}".into(),
        created_at: u64::from(n),
    }
}

/// Not left to timing: another connection holds the write lock, so a group commit waits
/// inside its transaction, after `BEGIN`; its task is aborted there (as when the writer stops).
/// The connection must not serve the next commit from inside that transaction.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_aborted_inside_its_transaction_does_not_hold_up_the_next() {
    use crate::store::Op;
    let f = fixture().await;
    let mut lock = f.connection().await;
    run(&mut lock, "BEGIN IMMEDIATE", &f.space).await;
    let aborted = tokio::spawn({
        let store = f.store.clone();
        async move { store.commit(&[Op::PutBeam(beam_row(1))]).await }
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    aborted.abort();
    assert!(aborted.await.unwrap_err().is_cancelled());
    run(&mut lock, "COMMIT", &f.space).await;
    f.store
        .commit(&[Op::PutBeam(beam_row(2))])
        .await
        .expect("the next commit is not refused");
    assert_eq!(f.store.beam("beam/ah/b2").await.unwrap(), Some(beam_row(2)));
    assert_eq!(
        f.store.beam("beam/ah/b1").await.unwrap(),
        None,
        "the aborted commit kept nothing"
    );
}
