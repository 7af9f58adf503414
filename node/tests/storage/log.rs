//! Conformance cases: the event logs, their paging, fork proofs, and opening a database again.

use super::*;

// ---- the log ---------------------------------------------------------------------------

pub(super) async fn events_append_in_order_and_move_the_head(f: &Fixture) {
    let store = &f.store;
    channel_with_events(store, 2).await;
    store
        .commit(&[Op::Event(event(CHANNEL, 3)), Op::Event(event(CHANNEL, 4))])
        .await
        .unwrap();
    assert_eq!(seqs(store, CHANNEL).await, [1, 2, 3, 4]);
    let head = store.space(CHANNEL).await.unwrap().unwrap();
    assert_eq!(
        (head.head_seq, head.head_id.as_str()),
        (4, "channel/owner/c#4")
    );
    assert_eq!(
        store.event(CHANNEL, 3).await.unwrap(),
        Some(event(CHANNEL, 3))
    );
    assert_eq!(store.event(CHANNEL, 5).await.unwrap(), None);
    assert_eq!(store.space("channel/owner/none").await.unwrap(), None);
}

pub(super) async fn a_taken_seq_fails_the_whole_group(f: &Fixture) {
    let store = &f.store;
    channel_with_events(store, 2).await;
    let path = "beam/ah/b1";
    let group = [
        Op::PutBeam(beam(path, "b1", "did:key:author", 5)),
        member(CHANNEL, "did:key:joiner", Some(MemberState::Member), None),
        beam_ref("b1", CHANNEL, 3, "did:key:author"),
        Op::Event(event(CHANNEL, 3)),
        // Seq 2 is taken: the group fails, with everything above.
        Op::Event(EventRow {
            id: "another id".into(),
            ..event(CHANNEL, 2)
        }),
    ];
    assert!(store.commit(&group).await.is_err());
    assert_eq!(seqs(store, CHANNEL).await, [1, 2]);
    assert_eq!(store.space(CHANNEL).await.unwrap().unwrap().head_seq, 2);
    assert_eq!(store.beam(path).await.unwrap(), None);
    assert!(store.members(CHANNEL).await.unwrap().is_empty());
    assert!(store.ref_authors("b1").await.unwrap().is_empty());

    // The store is still usable after the failures.
    store.commit(&[Op::Event(event(CHANNEL, 3))]).await.unwrap();
    assert_eq!(seqs(store, CHANNEL).await, [1, 2, 3]);

    // A group of the failed one's shape, now valid: on SQLite the same script text, which the
    // writer's connection keeps prepared, runs again from its start after failing midway.
    let group = [
        Op::PutBeam(beam(path, "b1", "did:key:author", 5)),
        member(CHANNEL, "did:key:joiner", Some(MemberState::Member), None),
        beam_ref("b1", CHANNEL, 4, "did:key:author"),
        Op::Event(event(CHANNEL, 4)),
        Op::Event(event(CHANNEL, 5)),
    ];
    store.commit(&group).await.unwrap();
    assert_eq!(seqs(store, CHANNEL).await, [1, 2, 3, 4, 5]);
    assert!(store.beam(path).await.unwrap().is_some());
    assert_eq!(store.members(CHANNEL).await.unwrap().len(), 1);
}

pub(super) async fn a_group_larger_than_one_statement_is_stored_whole(f: &Fixture) {
    let store = &f.store;
    let n = 1_234;
    let mut ops = vec![Op::CreateSpace(space(CHANNEL, "did:key:owner", NODE))];
    for seq in 1..=n {
        let id = format!("b{seq}");
        ops.push(Op::PutBeam(beam(
            &format!("beam/ah/{id}"),
            &id,
            "did:key:author",
            seq,
        )));
        ops.push(beam_ref(&id, CHANNEL, seq, "did:key:author"));
        ops.push(Op::Event(event(CHANNEL, seq)));
    }
    store.commit(&ops).await.unwrap();
    assert_eq!(seqs(store, CHANNEL).await, (1..=n).collect::<Vec<_>>());
    assert_eq!(store.space(CHANNEL).await.unwrap().unwrap().head_seq, n);
    let ids: Vec<String> = (1..=n).map(|seq| format!("b{seq}")).collect();
    assert_eq!(store.known_beams(&ids).await.unwrap().len(), ids.len());
}

pub(super) async fn events_are_paged_by_count_and_bytes(f: &Fixture) {
    let store = &f.store;
    channel_with_events(store, 10).await;
    // Each event's JSON is `{"seq":N}`: 9 bytes for one digit, 10 for two.
    let page = |since, limit, bytes| store.events_within(CHANNEL, since, limit, bytes);
    let got = |events: Vec<EventRow>| events.iter().map(|e| e.seq).collect::<Vec<_>>();
    assert_eq!(got(page(0, 3, usize::MAX).await.unwrap()), [1, 2, 3]);
    assert_eq!(got(page(7, 100, usize::MAX).await.unwrap()), [8, 9, 10]);
    assert_eq!(got(page(0, 100, 27).await.unwrap()), [1, 2, 3]);
    assert_eq!(got(page(0, 100, 26).await.unwrap()), [1, 2]);
    assert_eq!(
        got(page(4, 100, 1).await.unwrap()),
        [5],
        "one event even if too big"
    );
    assert!(page(10, 100, 1).await.unwrap().is_empty());
    assert!(
        store
            .events("channel/owner/none", 0, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

pub(super) async fn every_rival_of_a_fork_is_kept(f: &Fixture) {
    let store = &f.store;
    channel_with_events(store, 3).await;
    let fork = |seq, rival: &str| Op::Fork {
        space: CHANNEL.into(),
        seq,
        kept: format!("kept {seq}"),
        rival: rival.into(),
        detected_at: 100,
    };
    store
        .commit(&[fork(3, "r3"), fork(2, "r2b"), fork(2, "r2a")])
        .await
        .unwrap();
    let forks = store.forks(CHANNEL).await.unwrap();
    let got: Vec<(u64, &str, &str)> = forks
        .iter()
        .map(|(seq, kept, rival)| (*seq, kept.as_str(), rival.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            (2, "kept 2", "r2a"),
            (2, "kept 2", "r2b"),
            (3, "kept 3", "r3")
        ]
    );
    assert!(store.forks("channel/owner/none").await.unwrap().is_empty());
}

// ---- opening ---------------------------------------------------------------------------

pub(super) async fn the_database_belongs_to_the_first_node_that_opens_it(f: &Fixture) {
    // Closed first: while a node has a PostgreSQL database open, no other process may open it
    // at all (`a_second_process_on_a_database_in_use_is_refused_until_the_first_closes`).
    f.store.close().await;
    let other = "did:key:z6MkAnotherNode";
    let err = Store::open(&f.storage, other).await.unwrap_err();
    match &err {
        StoreError::OtherNode { owner, node, .. } => {
            assert_eq!((owner.as_str(), node.as_str()), (NODE, other));
        }
        e => panic!("expected OtherNode, got {e:?}"),
    }
    let text = err.to_string();
    assert!(text.contains(NODE) && text.contains(other), "{text}");
    // Its own node opens it again.
    let again = Store::open(&f.storage, NODE).await.unwrap();
    again.close().await;
}

pub(super) async fn commits_survive_closing_and_reopening(f: &Fixture) {
    channel_with_events(&f.store, 3).await;
    f.store
        .commit(&[Op::PutBeam(beam("beam/ah/b", "b", "did:key:a", 1))])
        .await
        .unwrap();
    f.store.close().await;
    let reopened = Store::open(&f.storage, NODE).await.unwrap();
    assert_eq!(seqs(&reopened, CHANNEL).await, [1, 2, 3]);
    assert!(reopened.beam("beam/ah/b").await.unwrap().is_some());
    reopened.close().await;
}

pub(super) async fn a_schema_from_a_newer_binary_is_refused(f: &Fixture) {
    f.store.close().await;
    // What a newer binary leaves behind: a migration this one does not have.
    let future = "INSERT INTO _sqlx_migrations \
                  (version, description, success, checksum, execution_time) \
                  VALUES (99999, 'from the future', TRUE, X'00', 0)";
    match &f.storage {
        Storage::Sqlite { path } => {
            use sqlx::Connection;
            let mut db = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
                .await
                .unwrap();
            sqlx::raw_sql(future).execute(&mut db).await.unwrap();
            db.close().await.unwrap();
        }
        Storage::Postgres { url } => {
            use sqlx::Connection;
            let mut db = sqlx::PgConnection::connect(url).await.unwrap();
            let future = future.replace("X'00'", "'\\x00'::bytea");
            sqlx::raw_sql(sqlx::AssertSqlSafe(future))
                .execute(&mut db)
                .await
                .unwrap();
            db.close().await.unwrap();
        }
    }
    let err = Store::open(&f.storage, NODE).await.unwrap_err();
    assert!(
        matches!(err, StoreError::NewerSchema { version: 99999, .. }),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains("newer northstar; upgrade the binary"),
        "{err}"
    );
}
