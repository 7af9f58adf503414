//! Durable storage behind one interface: an embedded SQLite file (the default) or a database
//! on a PostgreSQL server, chosen by [`Storage`] (the `storage_url` setting).
//!
//! [`Store::open`] connects, brings the schema up to date with the backend's own migrations
//! (`migrations/sqlite`, `migrations/postgres`) and checks that the database belongs to this
//! node. Every query the node makes is a method of [`Store`]; no backend's types leave this
//! module.
//!
//! # Layout
//! - `rows`: the rows and the changes ([`Op`]) the interface speaks.
//! - `location`: [`Storage`] from a URL, and [`redact`] to keep passwords out of logs.
//! - `queries` (reads) and `commit` (group commit): the SQL, written once for both backends;
//!   each query is one text both take.
//! - `sqlite`, `postgres`: connecting, migrations and reading connection failures, each
//!   backend in its own file with its own driver types.
//!
//! # Invariants, on every backend
//! - A space's events are append-only, `(space, seq)` unique and gap-free from 1, ids unique;
//!   only the operator's removal of the whole space ([`Op::DropSpace`]) deletes them.
//!   A group that inserts a seq already stored fails as a whole: nothing of it is kept.
//! - `spaces.head_seq/head_id` and `members` change only in the transaction that appends the
//!   event that changes them, so a reader never sees one without the other.
//! - [`Store::commit`] applies a group in one transaction, one statement per kind of row, and
//!   returns only after the transaction is durable: an acknowledged write survives a crash of
//!   the process or the machine.
//! - Inserting a beam, a post, a ref, a fork proof, a tombstone or a cached copy again changes
//!   nothing. A deleted beam never comes back: its tombstone keeps its id out of the beams and
//!   the cache.
//! - Writes come from one task (the sequencer); reads may come from anywhere. The exception is
//!   the `users` table (the operator's allow, deny and ban decisions and when DIDs were last
//!   seen), which holds no log state and is written where those happen.
//! - Refs are matched to beams by author and id, never by id alone; a beam's `beam_posts` rows
//!   (where it was posted through this node) go with its content when it is deleted.
//! - A database belongs to one node: the first node to open it records its DID, and any other
//!   node is refused.
//!
//! # Per backend
//! - SQLite: one file plus its `-wal` and `-shm`, all mode 0600 (they hold private spaces'
//!   logs); WAL with `synchronous=FULL`, so a commit is on disk when it returns; foreign keys
//!   enforced; one writer at a time, others wait up to 10 s for the lock. Group commits go
//!   through one long-lived connection whose page cache stays warm; a task checkpoints the
//!   WAL beside it every 200 ms, so a commit waits for the WAL's fsync only.
//! - PostgreSQL: `synchronous_commit` is left at the server's durable default (`on`): a commit
//!   returns after the server flushed its WAL. Text columns sort bytewise (`COLLATE "C"`), so
//!   every listing comes back in the same order as on SQLite. Text cannot hold a NUL
//!   character: one in a space's name is stored as U+FFFD (the name is a copy; the signed
//!   event keeps the original). A server that cannot be reached, a refused login, a missing
//!   database and a schema from a newer binary each get an error of their own.

mod blobs;
mod commit;
pub mod copy;
mod location;
mod log_check;
mod postgres;
mod queries;
mod rows;
mod sqlite;

pub use blobs::BlobRow;
pub use location::{DEFAULT_SQLITE_FILE, Storage, StorageUrlError, redact};
pub use rows::{
    BeamRow, Counts, EventRow, HomeRow, KnownBeam, MemberRow, MemberState, Op, SpaceRow, UserRow,
};
pub use sqlite::backup as backup_sqlite;

/// Why a storage operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be opened or created.
    #[error("cannot open database {path}")]
    Open {
        /// The file, or the server's URL with its password hidden.
        path: String,
        /// The cause.
        #[source]
        source: sqlx::Error,
    },
    /// Nothing answered at the database server's address.
    #[error(
        "cannot reach the database server of {target}: is PostgreSQL running there, and are the \
         host and port in storage_url right?"
    )]
    Unreachable {
        /// The URL, password hidden.
        target: String,
        /// The cause.
        #[source]
        source: sqlx::Error,
    },
    /// The server refused the user name or password.
    #[error(
        "the database server refused the login of {target}: check the user name and password \
         in storage_url"
    )]
    LoginRefused {
        /// The URL, password hidden.
        target: String,
        /// The server's reason.
        #[source]
        source: sqlx::Error,
    },
    /// The server has no database of that name.
    #[error(
        "the database named in {target} does not exist: create it first (createdb -O USER NAME)"
    )]
    NoDatabase {
        /// The URL, password hidden.
        target: String,
        /// The server's reason.
        #[source]
        source: sqlx::Error,
    },
    /// The database was first opened by another node.
    #[error(
        "the database {target} belongs to node {owner}, not to this node {node}: give each node \
         a database of its own"
    )]
    OtherNode {
        /// The file, or the URL with its password hidden.
        target: String,
        /// The DID recorded in the database.
        owner: String,
        /// This node's DID.
        node: String,
    },
    /// The database holds the data of another protocol version, whose signatures this
    /// node's peers and clients would refuse.
    #[error(
        "the database {target} holds Northstar protocol v{holds} data, and this node speaks \
         v{speaks}, whose signatures differ: start the node on a new data directory or \
         database (the old one is left as it is)"
    )]
    OtherProtocol {
        /// The file, or the URL with its password hidden.
        target: String,
        /// The protocol version recorded in the database.
        holds: i64,
        /// The version this node speaks.
        speaks: u32,
    },
    /// Another node process holds the database (PostgreSQL's advisory lock of northstar).
    #[error(
        "the database {target} is in use by another northstar process: one node runs on a \
         database at a time; stop the other one first"
    )]
    InUse {
        /// The URL with its password hidden.
        target: String,
    },
    /// The database has a migration this binary does not know.
    #[error(
        "the database {target} has schema migration {version}, which this binary does not know: \
         it was created by a newer northstar; upgrade the binary"
    )]
    NewerSchema {
        /// The file, or the URL with its password hidden.
        target: String,
        /// The unknown migration's version.
        version: i64,
    },
    /// A migration failed; the node must not start on a half-migrated database.
    #[error("database migration failed")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A query failed.
    #[error("database error")]
    Query(#[from] sqlx::Error),
    /// A stored value could not be read back (a bug or a damaged file).
    #[error("corrupt row in {table}: {reason}")]
    Corrupt {
        /// The table.
        table: &'static str,
        /// What was wrong.
        reason: String,
    },
}

impl StoreError {
    /// The same failure as text, for the many callers of one failed group (the cause is
    /// logged once where it happened).
    pub fn clone_for_reply(&self) -> Self {
        StoreError::Corrupt {
            table: "group",
            reason: self.to_string(),
        }
    }

    /// A value that could not be encoded as JSON for storage.
    pub fn from_json(e: serde_json::Error) -> Self {
        StoreError::Corrupt {
            table: "json",
            reason: e.to_string(),
        }
    }

    /// A failed migration of the database at `target`; one this binary does not know means a
    /// newer binary made the database.
    fn from_migrate(target: &str, e: sqlx::migrate::MigrateError) -> Self {
        match e {
            sqlx::migrate::MigrateError::VersionMissing(version) => StoreError::NewerSchema {
                target: target.to_owned(),
                version,
            },
            other => StoreError::Migrate(other),
        }
    }
}

/// The node's database.
#[derive(Debug, Clone)]
pub struct Store {
    backend: Backend,
    /// On PostgreSQL, the node's hold on its database, let go by [`Store::close`].
    claim: Option<std::sync::Arc<postgres::Claim>>,
    /// On SQLite, the task that checkpoints the WAL beside the writer: started by the first
    /// group commit (so a store opened only to be read or copied from starts none), stopped
    /// by [`Store::close`] or when the last clone of the store goes.
    checkpointer: std::sync::Arc<std::sync::OnceLock<tokio_util::task::AbortOnDropHandle<()>>>,
}

/// The backends, each a pool of its own driver running the shared SQL. An enum rather than a
/// trait object: the set is closed, each call is a `match` with no allocation, and `async fn`s
/// stay plain (a `dyn` trait would box every future).
#[derive(Debug, Clone)]
enum Backend {
    Sqlite(sqlite::Db),
    Postgres(postgres::Db),
}

/// `$body` with `$db` bound to the backend's [`queries::Sql`], whichever it is.
macro_rules! on_backend {
    ($store:expr, $db:ident => $body:expr) => {
        match &$store.backend {
            Backend::Sqlite($db) => $body,
            Backend::Postgres($db) => $body,
        }
    };
}

impl Store {
    /// Open the database `storage` names (creating an SQLite file if needed), bring its schema
    /// up to date, and check that it belongs to the node `node` (a DID text): the first node
    /// to open a database records its DID, and any other is refused with
    /// [`StoreError::OtherNode`]; likewise its protocol version ([`StoreError::OtherProtocol`]).
    ///
    /// An SQLite database and its WAL files are readable by their owner only (mode 0600):
    /// they hold the logs of private spaces.
    pub async fn open(storage: &Storage, node: &str) -> Result<Self, StoreError> {
        let store = match storage {
            Storage::Sqlite { path } => Self {
                backend: Backend::Sqlite(sqlite::open(path).await?),
                claim: None,
                checkpointer: std::sync::Arc::default(),
            },
            Storage::Postgres { url } => {
                let (db, claim) = postgres::open(url).await?;
                Self {
                    backend: Backend::Postgres(db),
                    claim: Some(std::sync::Arc::new(claim)),
                    checkpointer: std::sync::Arc::default(),
                }
            }
        };
        let speaks = northstar_protocol::PROTOCOL_VERSION;
        let (owner, protocol) = on_backend!(store, db => db.owner(node, speaks).await)?;
        if protocol != i64::from(speaks) {
            store.close().await;
            return Err(StoreError::OtherProtocol {
                target: storage_target(storage),
                holds: protocol,
                speaks,
            });
        }
        if owner != node {
            store.close().await;
            return Err(StoreError::OtherNode {
                target: storage_target(storage),
                owner,
                node: node.to_owned(),
            });
        }
        Ok(store)
    }

    /// Close every connection (on SQLite, checkpointing the WAL; on PostgreSQL, letting go of
    /// the node's lock on the database).
    pub async fn close(&self) {
        if let Some(checkpointer) = self.checkpointer.get() {
            checkpointer.abort();
        }
        on_backend!(self, db => {
            db.writer.close().await;
            db.pool.close().await;
        });
        if let Some(claim) = &self.claim {
            claim.release().await;
        }
    }

    /// Apply `ops` in one transaction; returns once it is durable. If any change fails (an
    /// event whose seq is taken, say), none of the group is kept.
    pub async fn commit(&self, ops: &[Op]) -> Result<(), StoreError> {
        if let Backend::Sqlite(db) = &self.backend {
            self.checkpointer
                .get_or_init(|| sqlite::spawn_checkpointer(db.pool.clone()));
        }
        on_backend!(self, db => db.commit(ops).await)
    }

    /// A space by id.
    pub async fn space(&self, id: &str) -> Result<Option<SpaceRow>, StoreError> {
        on_backend!(self, db => db.space(id).await)
    }

    /// The spaces in which `did` is a member or is invited, or which it owns.
    pub async fn spaces_of(&self, did: &str) -> Result<Vec<SpaceRow>, StoreError> {
        on_backend!(self, db => db.spaces_of(did).await)
    }

    /// Every member row of a space, in DID order.
    pub async fn members(&self, space: &str) -> Result<Vec<MemberRow>, StoreError> {
        on_backend!(self, db => db.members(space).await)
    }

    /// Whether `did` is a member of `space`, or the home node of one.
    pub async fn may_read_dm(&self, space: &str, did: &str) -> Result<bool, StoreError> {
        on_backend!(self, db => db.may_read_dm(space, did).await)
    }

    /// What the node `own_did` holds, counted (each count scans its table).
    pub async fn counts(&self, own_did: &str) -> Result<Counts, StoreError> {
        on_backend!(self, db => db.counts(own_did).await)
    }

    /// Every row of the `users` table, in DID order.
    pub async fn users(&self) -> Result<Vec<UserRow>, StoreError> {
        on_backend!(self, db => db.users().await)
    }

    /// Record that `did` authenticated at `now` (ms).
    pub async fn user_seen(&self, did: &str, now: u64) -> Result<(), StoreError> {
        on_backend!(self, db => db.user_seen(did, now).await)
    }

    /// The operator's runtime decision on `did`: allowed (`true`) or denied.
    pub async fn set_access(&self, did: &str, allow: bool) -> Result<(), StoreError> {
        on_backend!(self, db => db.set_access(did, allow).await)
    }

    /// Ban `did` from the node (a ban already in force keeps its time).
    pub async fn ban_user(&self, did: &str, now: u64) -> Result<(), StoreError> {
        on_backend!(self, db => db.ban_user(did, now).await)
    }

    /// Lift the node-wide ban of `did`, if any.
    pub async fn unban_user(&self, did: &str) -> Result<(), StoreError> {
        on_backend!(self, db => db.unban_user(did).await)
    }

    /// The DIDs that are members of a space held here through this node (`own_did` is their
    /// home), each once, in order.
    pub async fn home_members(&self, own_did: &str) -> Result<Vec<String>, StoreError> {
        on_backend!(self, db => db.home_members(own_did).await)
    }

    /// Whether the operator removed `space` from this node.
    pub async fn is_removed(&self, space: &str) -> Result<bool, StoreError> {
        on_backend!(self, db => db.is_removed(space).await)
    }

    /// Whether the database answers a query.
    pub async fn ping(&self) -> Result<(), StoreError> {
        on_backend!(self, db => db.ping().await)
    }

    /// The spaces this node replicates: every space whose sequencer is not `own_did`.
    pub async fn replicated_spaces(&self, own_did: &str) -> Result<Vec<SpaceRow>, StoreError> {
        on_backend!(self, db => db.replicated_spaces(own_did).await)
    }

    /// The event at `seq` of `space`.
    pub async fn event(&self, space: &str, seq: u64) -> Result<Option<EventRow>, StoreError> {
        Ok(self
            .events(space, seq.saturating_sub(1), 1)
            .await?
            .into_iter()
            .find(|e| e.seq == seq))
    }

    /// A cached copy of a beam authored elsewhere (its `created_at` is not kept: 0).
    pub async fn cached_beam(&self, path: &str) -> Result<Option<BeamRow>, StoreError> {
        on_backend!(self, db => db.cached_beam(path).await)
    }

    /// Keep a verified copy of a beam authored elsewhere, if a space stored here carries a ref
    /// to it by its author and it was not deleted. Whether a copy was added.
    pub async fn cache_beam(&self, beam: &BeamRow) -> Result<bool, StoreError> {
        on_backend!(self, db => db.cache_beam(beam).await)
    }

    /// Events of `space` with `seq > since`, oldest first, at most `limit`.
    pub async fn events(
        &self,
        space: &str,
        since: u64,
        limit: u32,
    ) -> Result<Vec<EventRow>, StoreError> {
        self.events_within(space, since, limit, usize::MAX).await
    }

    /// Like [`Store::events`], but stopping before the events' JSON passes `max_bytes` (at
    /// least one event is returned if there is one), so a page fits in one message.
    pub async fn events_within(
        &self,
        space: &str,
        since: u64,
        limit: u32,
        max_bytes: usize,
    ) -> Result<Vec<EventRow>, StoreError> {
        on_backend!(self, db => db.events_within(space, since, limit, max_bytes).await)
    }

    /// A beam by path.
    pub async fn beam(&self, path: &str) -> Result<Option<BeamRow>, StoreError> {
        on_backend!(self, db => db.beam(path).await)
    }

    /// What this node knows of the beams with these ids (content id texts): each one it
    /// stores, caches or deleted, with its author. A beam id names one author's beam, so this
    /// tells whose a ref to one of them may be.
    pub async fn known_beams(&self, beams: &[String]) -> Result<Vec<KnownBeam>, StoreError> {
        on_backend!(self, db => db.known_beams(beams).await)
    }

    /// The beam ids of at most `limit` tombstones, in no order.
    pub async fn tombstone_ids(&self, limit: usize) -> Result<Vec<String>, StoreError> {
        on_backend!(self, db => db.tombstone_ids(limit).await)
    }

    /// The signed edits (JSON) of `author`'s beam `original` held here, by rising version.
    pub async fn edits_of(&self, original: &str, author: &str) -> Result<Vec<String>, StoreError> {
        on_backend!(self, db => db.edits_of(original, author).await)
    }

    /// If the beam `beam` is a version named by an edit held here: the original it supersedes
    /// and its author.
    pub async fn version_of(&self, beam: &str) -> Result<Option<(String, String)>, StoreError> {
        on_backend!(self, db => db.version_of(beam).await)
    }

    /// Whether one of the versions of the beam at `path` (a beam path) is stored here.
    pub async fn stores_version_of(&self, path: &str) -> Result<bool, StoreError> {
        let Some((prefix, original)) = path.rsplit_once('/') else {
            return Ok(false);
        };
        on_backend!(self, db => db.stores_version_of(original, &format!("{prefix}/%")).await)
    }

    /// Whether a beam with this id was deleted.
    pub async fn is_tombstoned(&self, beam: &str) -> Result<bool, StoreError> {
        on_backend!(self, db => db.is_tombstoned(beam).await)
    }

    /// Beams by `author` that `caller` may read (spec §6.3.16), newest first, created before
    /// `before` (ms), at most `limit`. Beams read stop before their JSON passes `max_bytes`
    /// (at least one is returned if there is one), so a page fits in one message and a large
    /// page costs no more than that.
    pub async fn beams_by_author(
        &self,
        author: &str,
        before: u64,
        limit: u32,
        max_bytes: usize,
        caller: Option<&str>,
    ) -> Result<Vec<BeamRow>, StoreError> {
        on_backend!(self, db => db.beams_by_author(author, before, limit, max_bytes, caller).await)
    }

    /// Whether `caller` (a user or node DID; `None` for an anonymous connection) may read the
    /// beam at `path` with content id `id` by `author`: the rule of spec §6.3.16, which this
    /// module writes in SQL once.
    pub async fn beam_readable(
        &self,
        path: &str,
        id: &str,
        author: &str,
        caller: Option<&str>,
    ) -> Result<bool, StoreError> {
        on_backend!(self, db => db.beam_readable(path, id, author, caller).await)
    }

    /// The `dm` spaces among a beam's refs (as the read rule counts them) that another node
    /// sequences: `(space id, sequencer authority)`.
    pub async fn replicated_dm_spaces_of_beam(
        &self,
        path: &str,
        id: &str,
        author: &str,
        own_did: &str,
    ) -> Result<Vec<(String, String)>, StoreError> {
        on_backend!(self, db => db.replicated_dm_spaces_of_beam(path, id, author, own_did).await)
    }

    /// The authors of the refs to beam id `beam` in the spaces stored here, each once: a path
    /// names its author only by hash, and these are the candidates.
    pub async fn ref_authors(&self, beam: &str) -> Result<Vec<String>, StoreError> {
        on_backend!(self, db => db.ref_authors(beam).await)
    }

    /// Whether `author` placed `beam` in `space`.
    pub async fn references(
        &self,
        beam: &str,
        space: &str,
        author: &str,
    ) -> Result<bool, StoreError> {
        on_backend!(self, db => db.references(beam, space, author).await)
    }

    /// Whether a space stored here carries a ref by `author` to `beam` naming `home` as the
    /// beam's home node.
    pub async fn referenced_at(
        &self,
        beam: &str,
        author: &str,
        home: &str,
    ) -> Result<bool, StoreError> {
        on_backend!(self, db => db.referenced_at(beam, author, home).await)
    }

    /// The tombstone events by `author` in `space`: (seq, the signed event's JSON), in log
    /// order.
    pub async fn tombstone_events(
        &self,
        space: &str,
        author: &str,
    ) -> Result<Vec<(u64, String)>, StoreError> {
        on_backend!(self, db => db.tombstone_events(space, author).await)
    }

    /// The fork proofs kept for `space`: (seq, the event held, the rival refused).
    pub async fn forks(&self, space: &str) -> Result<Vec<(u64, String, String)>, StoreError> {
        on_backend!(self, db => db.forks(space).await)
    }

    /// The spaces that carry a ref by `author` to `beam`, each once. Refs by anyone else name
    /// another path (`beam/{authorHash}/{beam}`), where no beam of theirs is, so they do not
    /// count.
    pub async fn spaces_referencing(
        &self,
        beam: &str,
        author: &str,
    ) -> Result<Vec<String>, StoreError> {
        on_backend!(self, db => db.spaces_referencing(beam, author).await)
    }
}

/// How errors name the database at `storage`: its file, or its URL without the password.
fn storage_target(storage: &Storage) -> String {
    match storage {
        Storage::Sqlite { path } => path.display().to_string(),
        Storage::Postgres { url } => redact(url),
    }
}

/// Fresh PostgreSQL databases for tests: the storage conformance suite and the integration
/// tests give each test (each node) a database of its own on the server that
/// `NORTHSTAR_TEST_POSTGRES` names, so tests run in parallel. Not part of the node's API.
#[doc(hidden)]
pub mod testing {
    pub use super::postgres::TestDatabase;

    /// The environment variable naming a PostgreSQL server (a URL whose user may
    /// `CREATE DATABASE`) for the tests that need one.
    pub const POSTGRES_ENV: &str = "NORTHSTAR_TEST_POSTGRES";
}
