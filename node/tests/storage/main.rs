//! The storage conformance suite: what [`Store`] promises, checked by behaviour (what reads
//! return after which commits), never by SQL text.
//!
//! Every case is written once, as an `async fn` taking a [`Fixture`], and runs twice: in the
//! `sqlite` module on a fresh SQLite file in every `cargo test`, and in the `postgres` module on
//! a fresh database of its own on the server `NORTHSTAR_TEST_POSTGRES` names (a URL whose user
//! may `CREATE DATABASE`); without that variable the PostgreSQL cases print a notice and pass.
//! The cases live in `log.rs`, `beams.rs`, `spaces.rs` and `users.rs`, and are listed once, below; the
//! errors for a wrong `storage_url` are in `storage_errors.rs`.

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

mod beams;
mod log;
mod spaces;
mod upgrade;
mod users;

/// Runs each named case on both backends.
macro_rules! conformance {
    ($($module:ident :: $case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $case() {
                    let fixture = super::Fixture::sqlite().await;
                    super::$module::$case(&fixture).await;
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
                    super::$module::$case(&fixture).await;
                    fixture.store.close().await;
                }
            )*
        }
    };
}

conformance!(
    log::events_append_in_order_and_move_the_head,
    log::a_taken_seq_fails_the_whole_group,
    log::a_group_larger_than_one_statement_is_stored_whole,
    log::events_are_paged_by_count_and_bytes,
    log::every_rival_of_a_fork_is_kept,
    log::the_database_belongs_to_the_first_node_that_opens_it,
    log::commits_survive_closing_and_reopening,
    log::a_schema_from_a_newer_binary_is_refused,
    spaces::membership_states_and_homes_are_kept_per_space,
    spaces::listings_sort_bytewise,
    spaces::replicated_spaces_are_those_another_node_sequences,
    spaces::a_nul_in_a_space_name_does_not_fail_the_group,
    beams::beams_refs_posts_and_forks_are_inserted_once,
    beams::a_deleted_beam_never_comes_back,
    beams::a_cached_copy_needs_a_ref_by_its_author_and_goes_with_its_tombstone,
    beams::beams_by_author_are_paged_newest_first_by_count_and_bytes,
    beams::a_beam_posted_into_a_remote_channel_is_public_until_deleted,
    beams::a_dropping_edit_deletes_every_version_below_it_in_any_order,
    beams::a_beam_posted_only_into_a_dm_is_read_by_its_members_and_their_homes,
    beams::a_ref_counts_for_the_read_rule_only_if_its_author_placed_it,
    beams::known_beams_tell_stored_cached_and_deleted_apart,
    users::seen_times_and_decisions_are_kept_per_did,
    users::home_members_are_the_members_whose_home_is_this_node,
    users::a_removed_space_goes_with_its_rows_and_its_id_is_kept,
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
            capacity: Some(2500),
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
