//! The storage conformance suite: what [`Store`] promises, checked by behaviour (what reads
//! return after which commits), never by SQL text.
//!
//! Every case is written once, as an `async fn` taking a [`Fixture`], and runs twice: in the
//! `sqlite` module on a fresh SQLite file in every `cargo test`, and in the `postgres` module on
//! a fresh database of its own on the server `NORTHSTAR_TEST_POSTGRES` names (a URL whose user
//! may `CREATE DATABASE`); without that variable the PostgreSQL cases print a notice and pass.
//! The misconfiguration cases at the end need a server only where a server is the point.

use northstar_node::store::testing::{POSTGRES_ENV, TestDatabase};
use northstar_node::store::{
    BeamRow, EventRow, HomeRow, MemberState, Op, SpaceRow, Storage, Store, StoreError,
};

/// The node every fixture's database belongs to.
const NODE: &str = "did:key:z6MkNodeOfTheConformanceSuite";

/// A fresh, empty store and what it lives in; dropping it removes the database.
struct Fixture {
    store: Store,
    storage: Storage,
    _dir: tempfile::TempDir,
    _database: Option<TestDatabase>,
}

impl Fixture {
    async fn sqlite() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::from_url("", dir.path()).unwrap();
        let store = Store::open(&storage, NODE).await.unwrap();
        Self {
            store,
            storage,
            _dir: dir,
            _database: None,
        }
    }

    /// `None` (with a notice) when no PostgreSQL server is named.
    async fn postgres() -> Option<Self> {
        let Ok(server) = std::env::var(POSTGRES_ENV) else {
            eprintln!("{POSTGRES_ENV} is not set: PostgreSQL case skipped");
            return None;
        };
        let database = TestDatabase::create(&server).await.unwrap();
        let storage = database.storage();
        let store = Store::open(&storage, NODE).await.unwrap();
        Some(Self {
            store,
            storage,
            _dir: tempfile::tempdir().unwrap(),
            _database: Some(database),
        })
    }
}

/// Runs each named case on both backends.
macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $case() {
                    let fixture = super::Fixture::sqlite().await;
                    super::$case(&fixture).await;
                    fixture.store.close().await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $case() {
                    let Some(fixture) = super::Fixture::postgres().await else {
                        return;
                    };
                    super::$case(&fixture).await;
                    fixture.store.close().await;
                }
            )*
        }
    };
}

conformance!(
    events_append_in_order_and_move_the_head,
    a_taken_seq_fails_the_whole_group,
    a_group_larger_than_one_statement_is_stored_whole,
    beams_refs_posts_and_forks_are_inserted_once,
    a_deleted_beam_never_comes_back,
    a_cached_copy_needs_a_ref_by_its_author_and_goes_with_its_tombstone,
    events_are_paged_by_count_and_bytes,
    beams_by_author_are_paged_newest_first_by_count_and_bytes,
    membership_states_and_homes_are_kept_per_space,
    listings_sort_bytewise,
    a_beam_posted_into_a_remote_channel_is_public_until_deleted,
    a_beam_posted_only_into_a_dm_is_read_by_its_members_and_their_homes,
    a_ref_counts_for_the_read_rule_only_if_its_author_placed_it,
    replicated_spaces_are_those_another_node_sequences,
    known_beams_tell_stored_cached_and_deleted_apart,
    every_rival_of_a_fork_is_kept,
    a_nul_in_a_space_name_does_not_fail_the_group,
    the_database_belongs_to_the_first_node_that_opens_it,
    commits_survive_closing_and_reopening,
    a_schema_from_a_newer_binary_is_refused,
);

// ---- building blocks -------------------------------------------------------------------

fn space(id: &str, owner: &str, sequencer: &str) -> SpaceRow {
    SpaceRow {
        id: id.into(),
        space_type: id.split('/').next().unwrap_or("channel").into(),
        owner: owner.into(),
        name: format!("name of {id}"),
        sequencer: sequencer.into(),
        authority: "seq.example".into(),
        head_seq: 0,
        head_id: String::new(),
        created_at: 1,
        fanout: 10,
    }
}

fn event(space: &str, seq: u64) -> EventRow {
    EventRow {
        space: space.into(),
        seq,
        id: format!("{space}#{seq}"),
        kind: "beam".into(),
        author: "did:key:author".into(),
        json: format!("{{\"seq\":{seq}}}"),
    }
}

fn beam(path: &str, id: &str, author: &str, created_at: u64) -> BeamRow {
    BeamRow {
        path: path.into(),
        id: id.into(),
        author: author.into(),
        json: format!("{{\"beam\":\"{id}\"}}"),
        created_at,
    }
}

fn beam_ref(beam: &str, space: &str, seq: u64, author: &str) -> Op {
    Op::BeamRef {
        beam: beam.into(),
        space: space.into(),
        seq,
        author: author.into(),
        home: "did:key:home".into(),
    }
}

fn member(space: &str, did: &str, state: Option<MemberState>, home: Option<&str>) -> Op {
    Op::Member {
        space: space.into(),
        did: did.into(),
        state,
        seq: 1,
        home: home.map(|node| HomeRow {
            node: node.into(),
            authority: "home.example".into(),
        }),
    }
}

fn delete(path: &str, id: &str, author: &str) -> Op {
    Op::DeleteBeam {
        path: path.into(),
        beam: id.into(),
        author: author.into(),
        tombstone: format!("{{\"deleted\":\"{id}\"}}"),
    }
}

const CHANNEL: &str = "channel/owner/c";
const DM: &str = "dm/owner/d";

/// A channel sequenced by this node, with events 1..=n.
async fn channel_with_events(store: &Store, n: u64) {
    let mut ops = vec![Op::CreateSpace(space(CHANNEL, "did:key:owner", NODE))];
    ops.extend((1..=n).map(|seq| Op::Event(event(CHANNEL, seq))));
    store.commit(&ops).await.unwrap();
}

async fn seqs(store: &Store, space: &str) -> Vec<u64> {
    let events = store.events(space, 0, 10_000).await.unwrap();
    events.iter().map(|e| e.seq).collect()
}

// ---- the log ---------------------------------------------------------------------------

async fn events_append_in_order_and_move_the_head(f: &Fixture) {
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

async fn a_taken_seq_fails_the_whole_group(f: &Fixture) {
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

    // An id already in the log fails a group too, even at a free seq.
    let reused = EventRow {
        seq: 3,
        ..event(CHANNEL, 1)
    };
    assert!(store.commit(&[Op::Event(reused)]).await.is_err());
    assert_eq!(seqs(store, CHANNEL).await, [1, 2]);

    // The store is still usable after the failures.
    store.commit(&[Op::Event(event(CHANNEL, 3))]).await.unwrap();
    assert_eq!(seqs(store, CHANNEL).await, [1, 2, 3]);
}

async fn a_group_larger_than_one_statement_is_stored_whole(f: &Fixture) {
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

// ---- beams, refs, tombstones, cache ----------------------------------------------------

async fn beams_refs_posts_and_forks_are_inserted_once(f: &Fixture) {
    let store = &f.store;
    channel_with_events(store, 1).await;
    let path = "beam/ah/b1";
    let first = beam(path, "b1", "did:key:author", 5);
    let again = BeamRow {
        json: "{\"other\":true}".into(),
        ..first.clone()
    };
    let fork = Op::Fork {
        space: CHANNEL.into(),
        seq: 1,
        kept: "kept".into(),
        rival: "rival".into(),
        detected_at: 9,
    };
    let posted = Op::Posted {
        path: path.into(),
        space: "channel/other/c".into(),
    };
    let group = |b: &BeamRow| {
        vec![
            Op::PutBeam(b.clone()),
            posted.clone(),
            beam_ref("b1", CHANNEL, 1, "did:key:author"),
            fork.clone(),
        ]
    };
    store.commit(&group(&first)).await.unwrap();
    store.commit(&group(&again)).await.unwrap();
    // Twice in one group, too.
    store
        .commit(&[group(&again), group(&again)].concat())
        .await
        .unwrap();
    assert_eq!(
        store.beam(path).await.unwrap(),
        Some(first),
        "the first copy stays"
    );
    assert_eq!(store.ref_authors("b1").await.unwrap(), ["did:key:author"]);
    assert_eq!(
        store
            .spaces_referencing("b1", "did:key:author")
            .await
            .unwrap(),
        [CHANNEL]
    );
    assert_eq!(store.forks(CHANNEL).await.unwrap().len(), 1);
    assert!(
        store
            .references("b1", CHANNEL, "did:key:author")
            .await
            .unwrap()
    );
    assert!(
        !store
            .references("b1", CHANNEL, "did:key:other")
            .await
            .unwrap()
    );
    assert!(
        store
            .referenced_at("b1", "did:key:author", "did:key:home")
            .await
            .unwrap()
    );
    assert!(
        !store
            .referenced_at("b1", "did:key:author", "did:key:elsewhere")
            .await
            .unwrap()
    );
}

async fn a_deleted_beam_never_comes_back(f: &Fixture) {
    let store = &f.store;
    let path = "beam/ah/b1";
    let b = beam(path, "b1", "did:key:author", 5);
    store.commit(&[Op::PutBeam(b.clone())]).await.unwrap();
    store
        .commit(&[delete(path, "b1", "did:key:author")])
        .await
        .unwrap();
    assert_eq!(store.beam(path).await.unwrap(), None);
    assert!(store.is_tombstoned("b1").await.unwrap());
    // Put again, alone or in the group that deletes it: the tombstone keeps it out.
    store.commit(&[Op::PutBeam(b.clone())]).await.unwrap();
    store
        .commit(&[Op::PutBeam(b.clone()), delete(path, "b1", "did:key:author")])
        .await
        .unwrap();
    assert_eq!(store.beam(path).await.unwrap(), None);
    assert!(
        store
            .beams_by_author(
                "did:key:author",
                u64::MAX >> 11,
                10,
                1 << 20,
                Some("did:key:author")
            )
            .await
            .unwrap()
            .is_empty()
    );
    // A beam deleted before it ever arrived never arrives.
    store
        .commit(&[
            delete("beam/ah/b2", "b2", "did:key:author"),
            Op::PutBeam(beam("beam/ah/b2", "b2", "did:key:author", 6)),
        ])
        .await
        .unwrap();
    assert_eq!(store.beam("beam/ah/b2").await.unwrap(), None);
    assert!(!store.is_tombstoned("b3").await.unwrap());
}

async fn a_cached_copy_needs_a_ref_by_its_author_and_goes_with_its_tombstone(f: &Fixture) {
    let store = &f.store;
    channel_with_events(store, 2).await;
    let path = "beam/ah/b1";
    let copy = beam(path, "b1", "did:key:author", 5);
    assert!(!store.cache_beam(&copy).await.unwrap(), "no ref: not kept");
    store
        .commit(&[beam_ref("b1", CHANNEL, 1, "did:key:someone-else")])
        .await
        .unwrap();
    assert!(
        !store.cache_beam(&copy).await.unwrap(),
        "a ref by another: not kept"
    );
    store
        .commit(&[beam_ref("b1", CHANNEL, 2, "did:key:author")])
        .await
        .unwrap();
    assert!(store.cache_beam(&copy).await.unwrap());
    assert!(!store.cache_beam(&copy).await.unwrap(), "kept once");
    let cached = store.cached_beam(path).await.unwrap().unwrap();
    assert_eq!((cached.id.as_str(), cached.created_at), ("b1", 0));
    // Only its author's tombstone purges it.
    let uncache = |author: &str| Op::Uncache {
        beam: "b1".into(),
        author: author.into(),
    };
    store
        .commit(&[uncache("did:key:someone-else")])
        .await
        .unwrap();
    assert!(store.cached_beam(path).await.unwrap().is_some());
    store.commit(&[uncache("did:key:author")]).await.unwrap();
    assert_eq!(store.cached_beam(path).await.unwrap(), None);
    // Once deleted, never cached again.
    store
        .commit(&[delete(path, "b1", "did:key:author")])
        .await
        .unwrap();
    assert!(!store.cache_beam(&copy).await.unwrap());
    assert_eq!(store.cached_beam(path).await.unwrap(), None);
}

// ---- paging ----------------------------------------------------------------------------

async fn events_are_paged_by_count_and_bytes(f: &Fixture) {
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

async fn beams_by_author_are_paged_newest_first_by_count_and_bytes(f: &Fixture) {
    let store = &f.store;
    let author = "did:key:author";
    // Two at time 20, so the path breaks the tie; one by another author.
    let beams = [
        beam("beam/ah/a", "a", author, 10),
        beam("beam/ah/c", "c", author, 20),
        beam("beam/ah/b", "b", author, 20),
        beam("beam/ah/d", "d", author, 30),
        beam("beam/xx/e", "e", "did:key:other", 25),
    ];
    store
        .commit(&beams.iter().cloned().map(Op::PutBeam).collect::<Vec<_>>())
        .await
        .unwrap();
    let list =
        |before, limit, bytes| store.beams_by_author(author, before, limit, bytes, Some(author));
    let ids = |rows: Vec<BeamRow>| rows.into_iter().map(|b| b.id).collect::<Vec<_>>();
    assert_eq!(
        ids(list(100, 10, usize::MAX).await.unwrap()),
        ["d", "b", "c", "a"]
    );
    assert_eq!(ids(list(30, 2, usize::MAX).await.unwrap()), ["b", "c"]);
    // Each JSON is `{"beam":"x"}`: 12 bytes.
    assert_eq!(ids(list(100, 10, 24).await.unwrap()), ["d", "b"]);
    assert_eq!(
        ids(list(100, 10, 1).await.unwrap()),
        ["d"],
        "one beam even if too big"
    );
    assert!(list(10, 10, usize::MAX).await.unwrap().is_empty());
}

// ---- membership ------------------------------------------------------------------------

async fn membership_states_and_homes_are_kept_per_space(f: &Fixture) {
    let store = &f.store;
    store
        .commit(&[
            Op::CreateSpace(space(DM, "did:key:owner", NODE)),
            Op::CreateSpace(space(CHANNEL, "did:key:owner", NODE)),
            member(
                DM,
                "did:key:m",
                Some(MemberState::Member),
                Some("did:key:home"),
            ),
            member(DM, "did:key:i", Some(MemberState::Invited), None),
            member(DM, "did:key:b", Some(MemberState::Member), None),
            member(DM, "did:key:gone", Some(MemberState::Member), None),
        ])
        .await
        .unwrap();
    // Later changes in one group apply in order: banned after member, removed after invited.
    store
        .commit(&[
            member(DM, "did:key:b", Some(MemberState::Banned), None),
            member(DM, "did:key:gone", Some(MemberState::Invited), None),
            member(DM, "did:key:gone", None, None),
        ])
        .await
        .unwrap();
    let members = store.members(DM).await.unwrap();
    let states: Vec<(&str, MemberState, Option<&str>)> = members
        .iter()
        .map(|m| {
            (
                m.did.as_str(),
                m.state,
                m.home.as_ref().map(|h| h.node.as_str()),
            )
        })
        .collect();
    assert_eq!(
        states,
        [
            ("did:key:b", MemberState::Banned, None),
            ("did:key:i", MemberState::Invited, None),
            ("did:key:m", MemberState::Member, Some("did:key:home")),
        ]
    );
    assert!(
        store.members(CHANNEL).await.unwrap().is_empty(),
        "per space"
    );
    let may = |did| store.may_read_dm(DM, did);
    assert!(may("did:key:m").await.unwrap());
    assert!(may("did:key:home").await.unwrap(), "a member's home node");
    assert!(!may("did:key:i").await.unwrap(), "invited only");
    assert!(!may("did:key:b").await.unwrap(), "banned");
    assert!(!may("did:key:gone").await.unwrap(), "removed");
    let spaces_of = |did| store.spaces_of(did);
    let ids = |rows: Vec<SpaceRow>| rows.into_iter().map(|s| s.id).collect::<Vec<_>>();
    assert_eq!(ids(spaces_of("did:key:m").await.unwrap()), [DM]);
    assert_eq!(ids(spaces_of("did:key:i").await.unwrap()), [DM], "invited");
    assert!(spaces_of("did:key:b").await.unwrap().is_empty(), "banned");
    assert_eq!(
        ids(spaces_of("did:key:owner").await.unwrap()),
        [CHANNEL, DM],
        "owned, by creation time then id"
    );
}

async fn listings_sort_bytewise(f: &Fixture) {
    let store = &f.store;
    // Upper case before lower case before `~`, byte by byte, whatever the server's locale.
    let dids = [
        "did:key:zb",
        "did:key:zB",
        "did:key:z~",
        "did:key:za",
        "did:key:z_a",
    ];
    let mut ops: Vec<Op> = vec![Op::CreateSpace(space(CHANNEL, "did:key:owner", NODE))];
    ops.extend(
        dids.iter()
            .map(|did| member(CHANNEL, did, Some(MemberState::Member), None)),
    );
    for (i, id) in ["channel/o/b", "channel/o/B", "channel/o/_", "channel/o/a"]
        .iter()
        .enumerate()
    {
        let mut s = space(id, "did:key:owner", "did:key:elsewhere");
        s.created_at = 7 + u64::try_from(i).unwrap() % 2;
        ops.push(Op::CreateSpace(s));
    }
    store.commit(&ops).await.unwrap();
    let mut sorted = dids.to_vec();
    sorted.sort_unstable();
    let listed: Vec<String> = store
        .members(CHANNEL)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.did)
        .collect();
    assert_eq!(listed, sorted);
    let replicated: Vec<String> = store
        .replicated_spaces(NODE)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(
        replicated,
        ["channel/o/B", "channel/o/_", "channel/o/a", "channel/o/b"]
    );
    let owned: Vec<String> = store
        .spaces_of("did:key:owner")
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(
        owned,
        [
            CHANNEL,
            "channel/o/_",
            "channel/o/b",
            "channel/o/B",
            "channel/o/a"
        ],
        "by creation time (1, 7, 7, 8, 8), then id"
    );
}

// ---- the read rule ---------------------------------------------------------------------

async fn a_beam_posted_into_a_remote_channel_is_public_until_deleted(f: &Fixture) {
    let store = &f.store;
    let path = "beam/bah/bid";
    let readable = |caller| store.beam_readable(path, "bid", "did:key:author", caller);
    assert!(!readable(None).await.unwrap(), "no ref: its author's alone");
    assert!(readable(Some("did:key:author")).await.unwrap());
    store
        .commit(&[
            Op::PutBeam(beam(path, "bid", "did:key:author", 1)),
            Op::Posted {
                path: path.into(),
                space: "channel/owner/c".into(),
            },
        ])
        .await
        .unwrap();
    assert!(
        readable(None).await.unwrap(),
        "posted into a channel: public"
    );
    assert!(readable(Some("did:key:stranger")).await.unwrap());
    store
        .commit(&[delete(path, "bid", "did:key:author")])
        .await
        .unwrap();
    assert!(store.beam(path).await.unwrap().is_none());
    assert!(
        !readable(None).await.unwrap(),
        "its posts went with its content"
    );
}

async fn a_beam_posted_only_into_a_dm_is_read_by_its_members_and_their_homes(f: &Fixture) {
    let store = &f.store;
    let path = "beam/bah/bid";
    store
        .commit(&[
            Op::CreateSpace(space(DM, "did:key:owner", "did:key:seq")),
            member(
                DM,
                "did:key:m",
                Some(MemberState::Member),
                Some("did:key:home"),
            ),
            member(DM, "did:key:i", Some(MemberState::Invited), None),
            Op::PutBeam(beam(path, "bid", "did:key:author", 1)),
            Op::Posted {
                path: path.into(),
                space: DM.into(),
            },
        ])
        .await
        .unwrap();
    let readable = |caller| store.beam_readable(path, "bid", "did:key:author", caller);
    for (caller, may) in [
        (None, false),
        (Some("did:key:author"), true),
        (Some("did:key:m"), true),
        (Some("did:key:home"), true),
        (Some("did:key:i"), false),
        (Some("did:key:outsider"), false),
    ] {
        assert_eq!(readable(caller).await.unwrap(), may, "{caller:?}");
    }
    let listed =
        |caller| store.beams_by_author("did:key:author", u64::MAX >> 11, 10, 1 << 20, caller);
    assert_eq!(listed(Some("did:key:m")).await.unwrap().len(), 1);
    assert!(listed(Some("did:key:outsider")).await.unwrap().is_empty());
    assert!(listed(None).await.unwrap().is_empty());
    assert_eq!(
        store
            .replicated_dm_spaces_of_beam(path, "bid", "did:key:author", NODE)
            .await
            .unwrap(),
        [(DM.to_owned(), "seq.example".to_owned())]
    );
    assert!(
        store
            .replicated_dm_spaces_of_beam(path, "bid", "did:key:author", "did:key:seq")
            .await
            .unwrap()
            .is_empty(),
        "sequenced here"
    );
}

async fn a_ref_counts_for_the_read_rule_only_if_its_author_placed_it(f: &Fixture) {
    let store = &f.store;
    channel_with_events(store, 2).await;
    let path = "beam/bah/bid";
    store
        .commit(&[
            Op::PutBeam(beam(path, "bid", "did:key:author", 1)),
            beam_ref("bid", CHANNEL, 1, "did:key:impostor"),
        ])
        .await
        .unwrap();
    let readable = |caller| store.beam_readable(path, "bid", "did:key:author", caller);
    assert!(!readable(None).await.unwrap(), "someone else's ref");
    store
        .commit(&[beam_ref("bid", CHANNEL, 2, "did:key:author")])
        .await
        .unwrap();
    assert!(
        readable(None).await.unwrap(),
        "its author's ref in a channel"
    );
    let mut authors = store.ref_authors("bid").await.unwrap();
    authors.sort();
    assert_eq!(authors, ["did:key:author", "did:key:impostor"]);
}

// ---- federation ------------------------------------------------------------------------

async fn replicated_spaces_are_those_another_node_sequences(f: &Fixture) {
    let store = &f.store;
    store
        .commit(&[
            Op::CreateSpace(space("channel/o/here", "did:key:owner", NODE)),
            Op::CreateSpace(space("channel/o/there", "did:key:owner", "did:key:far")),
            Op::CreateSpace(space("dm/o/there", "did:key:owner", "did:key:far")),
        ])
        .await
        .unwrap();
    let ids: Vec<String> = store
        .replicated_spaces(NODE)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(ids, ["channel/o/there", "dm/o/there"]);
    let there = store.space("dm/o/there").await.unwrap().unwrap();
    assert_eq!(there, space("dm/o/there", "did:key:owner", "did:key:far"));
}

async fn known_beams_tell_stored_cached_and_deleted_apart(f: &Fixture) {
    let store = &f.store;
    channel_with_events(store, 1).await;
    store
        .commit(&[
            Op::PutBeam(beam("beam/ah/stored", "stored", "did:key:a", 1)),
            Op::PutBeam(beam("beam/ah/deleted", "deleted", "did:key:a", 1)),
            beam_ref("cached", CHANNEL, 1, "did:key:c"),
        ])
        .await
        .unwrap();
    store
        .commit(&[delete("beam/ah/deleted", "deleted", "did:key:a")])
        .await
        .unwrap();
    assert!(
        store
            .cache_beam(&beam("beam/ch/cached", "cached", "did:key:c", 0))
            .await
            .unwrap()
    );
    let asked: Vec<String> = ["stored", "deleted", "cached", "unknown"]
        .map(String::from)
        .to_vec();
    let mut known: Vec<(String, String, bool)> = store
        .known_beams(&asked)
        .await
        .unwrap()
        .into_iter()
        .map(|k| (k.id, k.author, k.deleted))
        .collect();
    known.sort();
    assert_eq!(
        known,
        [
            ("cached".into(), "did:key:c".into(), false),
            ("deleted".into(), "did:key:a".into(), true),
            ("stored".into(), "did:key:a".into(), false),
        ]
    );
    assert!(store.known_beams(&[]).await.unwrap().is_empty());
}

async fn every_rival_of_a_fork_is_kept(f: &Fixture) {
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

async fn a_nul_in_a_space_name_does_not_fail_the_group(f: &Fixture) {
    let store = &f.store;
    // A name is any string the protocol accepts, and it accepts U+0000, which PostgreSQL's
    // text cannot hold: the group must not fail for it (the signed event keeps the name).
    let mut s = space(CHANNEL, "did:key:owner", NODE);
    s.name = "a\0b".into();
    store
        .commit(&[Op::CreateSpace(s), Op::Event(event(CHANNEL, 1))])
        .await
        .unwrap();
    let stored = store.space(CHANNEL).await.unwrap().unwrap();
    assert!(
        ["a\0b", "a\u{FFFD}b"].contains(&stored.name.as_str()),
        "{:?}",
        stored.name
    );
    assert_eq!(seqs(store, CHANNEL).await, [1]);
}

// ---- opening ---------------------------------------------------------------------------

async fn the_database_belongs_to_the_first_node_that_opens_it(f: &Fixture) {
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

async fn commits_survive_closing_and_reopening(f: &Fixture) {
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

async fn a_schema_from_a_newer_binary_is_refused(f: &Fixture) {
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
