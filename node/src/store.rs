//! Durable storage: an SQLite file in the data directory (WAL, `synchronous=FULL`).
//!
//! Invariants the schema (`migrations/sqlite`) and this module keep:
//! - A space's events are append-only, `(space, seq)` unique and gap-free from 1, ids unique.
//! - `spaces.head_seq/head_id` and `members` change only in the transaction that appends the
//!   event that changes them, so a reader never sees one without the other.
//! - [`Store::commit`] returns only after the transaction is durable: an acknowledged write
//!   survives a crash of the process or the machine.
//! - Writes come from one task (the sequencer); reads may come from anywhere.
//! - Refs are matched to beams by author and id, never by id alone; a beam's `beam_posts` rows
//!   (where it was posted through this node) go with its content when it is deleted.

use std::path::Path;
use std::str::FromStr;
use std::sync::LazyLock;
use std::time::Duration;

use futures_util::TryStreamExt;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{AssertSqlSafe, QueryBuilder, Row, Sqlite, Transaction};

/// Connections for concurrent reads (the writer takes one of them per batch).
const POOL_CONNECTIONS: u32 = 8;

/// How long a query waits for SQLite's write lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a storage operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be opened or created.
    #[error("cannot open database {path}")]
    Open {
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: sqlx::Error,
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
}

/// A space as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpaceRow {
    /// Space id text.
    pub id: String,
    /// `channel`, `dm` or `stream`.
    pub space_type: String,
    /// Owner DID text.
    pub owner: String,
    /// Human name.
    pub name: String,
    /// Sequencer node DID text.
    pub sequencer: String,
    /// Sequencer authority.
    pub authority: String,
    /// Seq of the last event.
    pub head_seq: u64,
    /// Id of the last event.
    pub head_id: String,
    /// Creation time (ms).
    pub created_at: u64,
    /// Children per node in the space's broadcast tree.
    pub fanout: u32,
}

/// An event as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRow {
    /// Space id text.
    pub space: String,
    /// Position in the log.
    pub seq: u64,
    /// Content id text.
    pub id: String,
    /// Display kind (`create`, `join`, `beam`, …).
    pub kind: String,
    /// Author DID text.
    pub author: String,
    /// The signed event's JSON.
    pub json: String,
}

/// A member's state in a space.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MemberState {
    /// May read and (per the space's type) write.
    Member,
    /// Invited into a `dm`, not yet joined.
    Invited,
    /// Removed for good.
    Banned,
}

impl MemberState {
    /// The stored name.
    pub const fn as_str(self) -> &'static str {
        match self {
            MemberState::Member => "member",
            MemberState::Invited => "invited",
            MemberState::Banned => "banned",
        }
    }
}

impl FromStr for MemberState {
    type Err = StoreError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "member" => Ok(MemberState::Member),
            "invited" => Ok(MemberState::Invited),
            "banned" => Ok(MemberState::Banned),
            other => Err(StoreError::Corrupt {
                table: "members",
                reason: format!("unknown state {other:?}"),
            }),
        }
    }
}

/// A member row: a DID's state in a space and, for members, its home node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberRow {
    /// The DID text.
    pub did: String,
    /// Its state.
    pub state: MemberState,
    /// The event that set the state.
    pub seq: u64,
    /// For a member: its home node's DID and authority.
    pub home: Option<HomeRow>,
}

/// A home node as stored.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HomeRow {
    /// The node's DID text.
    pub node: String,
    /// The node's authority.
    pub authority: String,
}

/// A beam as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BeamRow {
    /// `beam/{authorHash}/{beamId}`.
    pub path: String,
    /// Content id text.
    pub id: String,
    /// Author DID text.
    pub author: String,
    /// The signed beam's JSON.
    pub json: String,
    /// Creation time (ms).
    pub created_at: u64,
}

/// A beam this node stores, caches or deleted (see [`Store::known_beams`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownBeam {
    /// Content id text.
    pub id: String,
    /// Author DID text.
    pub author: String,
    /// Whether it was deleted here (its tombstone is kept).
    pub deleted: bool,
}

/// One change inside a [`Store::commit`] batch.
#[derive(Debug, Clone)]
pub enum Op {
    /// A new space (its first event follows as an [`Op::Event`]).
    CreateSpace(SpaceRow),
    /// Append an event and move the space's head to it.
    Event(EventRow),
    /// Set a member's state (or remove it with `None`).
    Member {
        /// Space id text.
        space: String,
        /// Member DID text.
        did: String,
        /// New state; `None` removes the row.
        state: Option<MemberState>,
        /// The event that set it.
        seq: u64,
        /// For a member, its home node.
        home: Option<HomeRow>,
    },
    /// Store a beam's content.
    PutBeam(BeamRow),
    /// Record that the beam at `path` was posted through this node, its home, into `space`,
    /// which another node sequences (idempotent; removed with the beam).
    Posted {
        /// The beam's path.
        path: String,
        /// Space id text.
        space: String,
    },
    /// Record that `author` placed `beam` in `space` at `seq` (idempotent).
    BeamRef {
        /// Beam content id text.
        beam: String,
        /// Space id text.
        space: String,
        /// The ref event.
        seq: u64,
        /// The beam's author, DID text.
        author: String,
        /// The author's home node, where the beam is fetched from.
        home: String,
    },
    /// Drop a cached copy of a beam authored elsewhere, if `author` wrote it.
    Uncache {
        /// Beam content id text.
        beam: String,
        /// The tombstone's author, DID text.
        author: String,
    },
    /// Keep the proof that a sequencer signed two events for one seq.
    Fork {
        /// Space id text.
        space: String,
        /// The seq.
        seq: u64,
        /// The event held.
        kept: String,
        /// The event refused.
        rival: String,
        /// When it was seen (ms).
        detected_at: u64,
    },
    /// Delete a beam's content and keep its tombstone.
    DeleteBeam {
        /// The beam's path.
        path: String,
        /// Beam content id text.
        beam: String,
        /// Author DID text.
        author: String,
        /// The signed tombstone's JSON.
        tombstone: String,
    },
}

/// The node's database.
#[derive(Debug, Clone)]
pub struct Store {
    pool: SqlitePool,
}

fn to_i64(v: u64) -> i64 {
    // Every stored integer is a seq or a time, both within 2^53 by the protocol's rules.
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

impl Store {
    /// Open (creating if needed) the database at `path` and bring its schema up to date.
    ///
    /// The database and its WAL files are readable by their owner only (mode 0600): they hold
    /// the logs of private spaces.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        make_private(path).map_err(|source| StoreError::Open {
            path: path.display().to_string(),
            source: sqlx::Error::Io(source),
        })?;
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            // A multi-row insert keeps a statement journal of the pages it changes, so it can be
            // undone alone; past 64 KiB SQLite spills it to a temporary file, which every page
            // of replicated events did (write syscalls: about 4% of a catch-up's CPU, half that
            // as copies in memory). Durability is the WAL's business, not this journal's.
            .pragma("temp_store", "memory")
            .busy_timeout(BUSY_TIMEOUT);
        let pool = SqlitePoolOptions::new()
            .max_connections(POOL_CONNECTIONS)
            .connect_with(options)
            .await
            .map_err(|source| StoreError::Open {
                path: path.display().to_string(),
                source,
            })?;
        sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
        Ok(Self { pool })
    }

    /// Close every connection, checkpointing the WAL.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Apply `ops` in one transaction; returns once it is durable.
    pub async fn commit(&self, ops: &[Op]) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        // One statement per kind of row for the whole group instead of one per row: each
        // statement is a round trip to SQLite's thread, which is what bounded ingest. The
        // order between kinds keeps every reference valid and every guard effective: spaces
        // before their rows, tombstones before the beam inserts they guard, members in the
        // order the log changed them.
        for op in ops.iter().filter(|op| matches!(op, Op::CreateSpace(_))) {
            apply(&mut tx, op).await?;
        }
        for op in ops
            .iter()
            .filter(|op| matches!(op, Op::DeleteBeam { .. } | Op::Uncache { .. }))
        {
            apply(&mut tx, op).await?;
        }
        let beams: Vec<&BeamRow> = ops
            .iter()
            .filter_map(|op| match op {
                Op::PutBeam(b) => Some(b),
                _ => None,
            })
            .collect();
        insert_beams(&mut tx, &beams).await?;
        insert_posts(&mut tx, ops).await?;
        for op in ops
            .iter()
            .filter(|op| matches!(op, Op::Member { .. } | Op::Fork { .. }))
        {
            apply(&mut tx, op).await?;
        }
        insert_refs(&mut tx, ops).await?;
        insert_events(&mut tx, ops).await?;
        tx.commit().await?;
        Ok(())
    }

    /// A space by id.
    pub async fn space(&self, id: &str) -> Result<Option<SpaceRow>, StoreError> {
        let row = sqlx::query(
            "SELECT id, type, owner, name, sequencer, authority, head_seq, head_id, created_at, fanout \
             FROM spaces WHERE id = ?",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| space_row(&r)))
    }

    /// The spaces in which `did` is a member or is invited, or which it owns.
    pub async fn spaces_of(&self, did: &str) -> Result<Vec<SpaceRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, type, owner, name, sequencer, authority, head_seq, head_id, created_at, fanout \
             FROM spaces WHERE owner = ?1 OR id IN \
             (SELECT space FROM members WHERE did = ?1 AND state IN ('member', 'invited')) \
             ORDER BY created_at, id",
        )
        .bind(did)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(space_row).collect())
    }

    /// Every member row of a space, in DID order.
    pub async fn members(&self, space: &str) -> Result<Vec<MemberRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT did, state, seq, home, authority FROM members WHERE space = ? ORDER BY did",
        )
        .bind(space)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let home = match (r.get::<Option<String>, _>(3), r.get::<Option<String>, _>(4)) {
                    (Some(node), Some(authority)) => Some(HomeRow { node, authority }),
                    _ => None,
                };
                Ok(MemberRow {
                    did: r.get(0),
                    state: r.get::<String, _>(1).parse()?,
                    seq: to_u64(r.get(2)),
                    home,
                })
            })
            .collect()
    }

    /// Whether `did` is a member of `space`, or the home node of one.
    pub async fn may_read_dm(&self, space: &str, did: &str) -> Result<bool, StoreError> {
        let row = sqlx::query(
            "SELECT 1 FROM members WHERE space = ?1 AND state = 'member' \
             AND (did = ?2 OR home = ?2) LIMIT 1",
        )
        .bind(space)
        .bind(did)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.is_some())
    }

    /// The spaces this node replicates: every space whose sequencer is not `own_did`.
    pub async fn replicated_spaces(&self, own_did: &str) -> Result<Vec<SpaceRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, type, owner, name, sequencer, authority, head_seq, head_id, created_at, fanout \
             FROM spaces WHERE sequencer <> ? ORDER BY id",
        )
        .bind(own_did)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(space_row).collect())
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
        let row = sqlx::query("SELECT path, id, author, json, 0 FROM beam_cache WHERE path = ?")
            .bind(path)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| beam_row(&r)))
    }

    /// Keep a verified copy of a beam authored elsewhere, if a space stored here carries a ref
    /// to it by its author.
    pub async fn cache_beam(&self, beam: &BeamRow) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT INTO beam_cache (path, id, author, json) \
             SELECT ?1, ?2, ?3, ?4 \
             WHERE EXISTS (SELECT 1 FROM beam_refs WHERE beam = ?2 AND author = ?3) \
             AND NOT EXISTS (SELECT 1 FROM tombstones WHERE beam = ?2) \
             ON CONFLICT (path) DO NOTHING",
        )
        .bind(&beam.path)
        .bind(&beam.id)
        .bind(&beam.author)
        .bind(&beam.json)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
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
        let mut rows = sqlx::query(
            "SELECT space, seq, id, kind, author, json FROM events \
             WHERE space = ? AND seq > ? ORDER BY seq LIMIT ?",
        )
        .bind(space)
        .bind(to_i64(since))
        .bind(i64::from(limit))
        .fetch(&self.pool);
        let mut out = Vec::new();
        let mut bytes = 0usize;
        while let Some(r) = rows.try_next().await? {
            let json: String = r.get(5);
            bytes = bytes.saturating_add(json.len());
            if bytes > max_bytes && !out.is_empty() {
                break;
            }
            out.push(EventRow {
                space: r.get(0),
                seq: to_u64(r.get(1)),
                id: r.get(2),
                kind: r.get(3),
                author: r.get(4),
                json,
            });
        }
        Ok(out)
    }

    /// A beam by path.
    pub async fn beam(&self, path: &str) -> Result<Option<BeamRow>, StoreError> {
        let row =
            sqlx::query("SELECT path, id, author, json, created_at FROM beams WHERE path = ?")
                .bind(path)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.map(|r| beam_row(&r)))
    }

    /// What this node knows of the beams with these ids (content id texts): each one it
    /// stores, caches or deleted, with its author. A beam id names one author's beam, so this
    /// tells whose a ref to one of them may be.
    pub async fn known_beams(&self, beams: &[String]) -> Result<Vec<KnownBeam>, StoreError> {
        let mut found = Vec::new();
        for chunk in beams.chunks(ROWS_PER_STATEMENT) {
            let mut q = QueryBuilder::<Sqlite>::new(
                "SELECT beam, author, 1 FROM tombstones WHERE beam IN (",
            );
            in_list(&mut q, chunk);
            q.push(" UNION ALL SELECT id, author, 0 FROM beams WHERE id IN (");
            in_list(&mut q, chunk);
            q.push(" UNION ALL SELECT id, author, 0 FROM beam_cache WHERE id IN (");
            in_list(&mut q, chunk);
            let rows = q.build().fetch_all(&self.pool).await?;
            found.extend(rows.iter().map(|r| KnownBeam {
                id: r.get(0),
                author: r.get(1),
                deleted: r.get::<i64, _>(2) != 0,
            }));
        }
        Ok(found)
    }

    /// Whether a beam with this id was deleted.
    pub async fn is_tombstoned(&self, beam: &str) -> Result<bool, StoreError> {
        let row = sqlx::query("SELECT 1 FROM tombstones WHERE beam = ?")
            .bind(beam)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.is_some())
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
        static SQL: LazyLock<String> = LazyLock::new(|| {
            format!(
                "SELECT b.path, b.id, b.author, b.json, b.created_at FROM beams b \
                 WHERE b.author = ?1 AND b.created_at < ?2 AND {} \
                 ORDER BY b.created_at DESC, b.path LIMIT ?3",
                readable("b.path", "b.id", "b.author", "?4")
            )
        });
        let mut rows = sqlx::query(AssertSqlSafe(SQL.as_str()))
            .bind(author)
            .bind(to_i64(before))
            .bind(i64::from(limit))
            .bind(caller)
            .fetch(&self.pool);
        let mut out = Vec::new();
        let mut bytes = 0usize;
        while let Some(r) = rows.try_next().await? {
            let row = beam_row(&r);
            bytes = bytes.saturating_add(row.json.len());
            if bytes > max_bytes && !out.is_empty() {
                break;
            }
            out.push(row);
        }
        Ok(out)
    }

    /// Whether `caller` (a user or node DID; `None` for an anonymous connection) may read the
    /// beam at `path` with content id `id` by `author`: the rule of spec §6.3.16, as this module writes it in SQL once.
    pub async fn beam_readable(
        &self,
        path: &str,
        id: &str,
        author: &str,
        caller: Option<&str>,
    ) -> Result<bool, StoreError> {
        static SQL: LazyLock<String> =
            LazyLock::new(|| format!("SELECT {}", readable("?1", "?2", "?3", "?4")));
        let row = sqlx::query(AssertSqlSafe(SQL.as_str()))
            .bind(path)
            .bind(id)
            .bind(author)
            .bind(caller)
            .fetch_one(&self.pool)
            .await?;
        Ok(row.get::<i64, _>(0) != 0)
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
        let rows = sqlx::query(
            "SELECT s.id, s.authority FROM spaces s WHERE s.type = 'dm' AND s.sequencer <> ?4 \
             AND s.id IN (SELECT space FROM beam_posts WHERE path = ?1 \
                          UNION SELECT space FROM beam_refs WHERE beam = ?2 AND author = ?3) \
             ORDER BY s.id",
        )
        .bind(path)
        .bind(id)
        .bind(author)
        .bind(own_did)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    /// The authors of the refs to beam id `beam` in the spaces stored here, each once: a path
    /// names its author only by hash, and these are the candidates.
    pub async fn ref_authors(&self, beam: &str) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query(
            "SELECT DISTINCT author FROM beam_refs WHERE beam = ? AND author IS NOT NULL",
        )
        .bind(beam)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// Whether `author` placed `beam` in `space`.
    pub async fn references(
        &self,
        beam: &str,
        space: &str,
        author: &str,
    ) -> Result<bool, StoreError> {
        let row = sqlx::query(
            "SELECT 1 FROM beam_refs WHERE beam = ? AND space = ? AND author = ? LIMIT 1",
        )
        .bind(beam)
        .bind(space)
        .bind(author)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.is_some())
    }

    /// Whether a space stored here carries a ref by `author` to `beam` naming `home` as the
    /// beam's home node.
    pub async fn referenced_at(
        &self,
        beam: &str,
        author: &str,
        home: &str,
    ) -> Result<bool, StoreError> {
        let row = sqlx::query(
            "SELECT 1 FROM beam_refs WHERE beam = ? AND author = ? AND home = ? LIMIT 1",
        )
        .bind(beam)
        .bind(author)
        .bind(home)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.is_some())
    }

    /// The fork proofs kept for `space`: (seq, the event held, the rival refused).
    pub async fn forks(&self, space: &str) -> Result<Vec<(u64, String, String)>, StoreError> {
        let rows = sqlx::query("SELECT seq, kept, rival FROM forks WHERE space = ? ORDER BY seq")
            .bind(space)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .iter()
            .map(|r| (to_u64(r.get(0)), r.get(1), r.get(2)))
            .collect())
    }

    /// The spaces that carry a ref by `author` to `beam`, each once. Refs by anyone else name
    /// another path (`beam/{authorHash}/{beam}`), where no beam of theirs is, so they do not
    /// count.
    pub async fn spaces_referencing(
        &self,
        beam: &str,
        author: &str,
    ) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query(
            "SELECT DISTINCT space FROM beam_refs WHERE beam = ? AND author = ? ORDER BY space",
        )
        .bind(beam)
        .bind(author)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }
}

/// The read rule for beams (`spec/protocol.md` §6.3.16) as an SQL condition over a beam's
/// path, id and author and the caller (column names or parameters; a `NULL` caller is an
/// anonymous connection). A beam's refs are those by its author in the spaces stored here,
/// and, on its home node, the spaces its author posted it into (`beam_posts`). It is readable
/// when one of them is a channel or a stream (posting there publishes it), by its author, and
/// by each `member` of one of its `dm` spaces and each such member's home node. A beam with no
/// ref at all is its author's alone.
fn readable(path: &str, id: &str, author: &str, caller: &str) -> String {
    format!(
        "({author} = {caller} \
         OR EXISTS (SELECT 1 FROM beam_posts p WHERE p.path = {path} AND p.space NOT LIKE 'dm/%') \
         OR EXISTS (SELECT 1 FROM beam_refs r WHERE r.beam = {id} AND r.author = {author} \
                    AND r.space NOT LIKE 'dm/%') \
         OR EXISTS (SELECT 1 FROM beam_posts p JOIN members m ON m.space = p.space \
                    WHERE p.path = {path} AND m.state = 'member' \
                    AND (m.did = {caller} OR m.home = {caller})) \
         OR EXISTS (SELECT 1 FROM beam_refs r JOIN members m ON m.space = r.space \
                    WHERE r.beam = {id} AND r.author = {author} AND m.state = 'member' \
                    AND (m.did = {caller} OR m.home = {caller})))"
    )
}

/// Create the database file with mode 0600 if it is missing, and narrow the database and its
/// WAL and shared-memory files to 0600 if an older node made them wider. SQLite gives the WAL
/// and shared-memory files it creates later the mode of the database file.
#[cfg(unix)]
fn make_private(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    if !path.exists() {
        let created = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path);
        match created {
            Ok(_) => {}
            // Created meanwhile by someone else: narrowed below like any existing file.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
    let files = ["", "-wal", "-shm"].map(|suffix| {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        std::path::PathBuf::from(name)
    });
    for file in files {
        match std::fs::metadata(&file) {
            Ok(meta) if meta.permissions().mode() & 0o077 != 0 => {
                std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600))?;
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(not(unix))]
fn make_private(_path: &Path) -> std::io::Result<()> {
    Ok(())
}

/// `(?, ?, …)` for the values, closing the parenthesis the caller opened.
fn in_list(q: &mut QueryBuilder<Sqlite>, values: &[String]) {
    let mut list = q.separated(", ");
    for value in values {
        list.push_bind(value.clone());
    }
    q.push(")");
}

/// Rows per multi-row statement: far below SQLite's limit of 32,766 bound values.
const ROWS_PER_STATEMENT: usize = 500;

async fn insert_beams(
    tx: &mut Transaction<'_, Sqlite>,
    beams: &[&BeamRow],
) -> Result<(), StoreError> {
    for chunk in beams.chunks(ROWS_PER_STATEMENT) {
        // A deleted beam never comes back: its tombstone (inserted before, in this transaction
        // or earlier) keeps the row out.
        let mut q = QueryBuilder::<Sqlite>::new(
            "INSERT INTO beams (path, id, author, json, created_at) SELECT v.* FROM (",
        );
        for (i, b) in chunk.iter().enumerate() {
            q.push(if i == 0 {
                "SELECT "
            } else {
                " UNION ALL SELECT "
            });
            q.push_bind(&b.path).push(" AS path, ");
            q.push_bind(&b.id).push(" AS id, ");
            q.push_bind(&b.author).push(" AS author, ");
            q.push_bind(&b.json).push(" AS json, ");
            q.push_bind(to_i64(b.created_at)).push(" AS created_at");
        }
        q.push(") AS v WHERE NOT EXISTS (SELECT 1 FROM tombstones t WHERE t.beam = v.id) ");
        q.push("ON CONFLICT (path) DO NOTHING");
        q.build().execute(&mut **tx).await?;
    }
    Ok(())
}

async fn insert_posts(tx: &mut Transaction<'_, Sqlite>, ops: &[Op]) -> Result<(), StoreError> {
    let posts: Vec<(&String, &String)> = ops
        .iter()
        .filter_map(|op| match op {
            Op::Posted { path, space } => Some((path, space)),
            _ => None,
        })
        .collect();
    for chunk in posts.chunks(ROWS_PER_STATEMENT) {
        let mut q = QueryBuilder::<Sqlite>::new("INSERT INTO beam_posts (path, space) ");
        q.push_values(chunk, |mut row, (path, space)| {
            row.push_bind(*path).push_bind(*space);
        });
        q.push(" ON CONFLICT DO NOTHING");
        q.build().execute(&mut **tx).await?;
    }
    Ok(())
}

async fn insert_refs(tx: &mut Transaction<'_, Sqlite>, ops: &[Op]) -> Result<(), StoreError> {
    let refs: Vec<&Op> = ops
        .iter()
        .filter(|op| matches!(op, Op::BeamRef { .. }))
        .collect();
    for chunk in refs.chunks(ROWS_PER_STATEMENT) {
        let mut q =
            QueryBuilder::<Sqlite>::new("INSERT INTO beam_refs (beam, space, seq, author, home) ");
        q.push_values(chunk, |mut row, op| {
            if let Op::BeamRef {
                beam,
                space,
                seq,
                author,
                home,
            } = op
            {
                row.push_bind(beam)
                    .push_bind(space)
                    .push_bind(to_i64(*seq))
                    .push_bind(author)
                    .push_bind(home);
            }
        });
        q.push(" ON CONFLICT DO NOTHING");
        q.build().execute(&mut **tx).await?;
    }
    Ok(())
}

async fn insert_events(tx: &mut Transaction<'_, Sqlite>, ops: &[Op]) -> Result<(), StoreError> {
    let events: Vec<&EventRow> = ops
        .iter()
        .filter_map(|op| match op {
            Op::Event(e) => Some(e),
            _ => None,
        })
        .collect();
    for chunk in events.chunks(ROWS_PER_STATEMENT) {
        let mut q =
            QueryBuilder::<Sqlite>::new("INSERT INTO events (space, seq, id, kind, author, json) ");
        q.push_values(chunk, |mut row, e| {
            row.push_bind(&e.space)
                .push_bind(to_i64(e.seq))
                .push_bind(&e.id)
                .push_bind(&e.kind)
                .push_bind(&e.author)
                .push_bind(&e.json);
        });
        q.build().execute(&mut **tx).await?;
    }
    // Each space's head moves once, to its last event of the group.
    let mut heads: Vec<(&str, u64, &str)> = Vec::new();
    for e in &events {
        match heads.iter_mut().find(|(space, _, _)| *space == e.space) {
            Some(head) if head.1 < e.seq => *head = (&e.space, e.seq, &e.id),
            Some(_) => {}
            None => heads.push((&e.space, e.seq, &e.id)),
        }
    }
    for (space, seq, id) in heads {
        sqlx::query("UPDATE spaces SET head_seq = ?, head_id = ? WHERE id = ?")
            .bind(to_i64(seq))
            .bind(id)
            .bind(space)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

fn space_row(r: &sqlx::sqlite::SqliteRow) -> SpaceRow {
    SpaceRow {
        id: r.get(0),
        space_type: r.get(1),
        owner: r.get(2),
        name: r.get(3),
        sequencer: r.get(4),
        authority: r.get(5),
        head_seq: to_u64(r.get(6)),
        head_id: r.get(7),
        created_at: to_u64(r.get(8)),
        fanout: u32::try_from(r.get::<i64, _>(9)).unwrap_or(1),
    }
}

fn beam_row(r: &sqlx::sqlite::SqliteRow) -> BeamRow {
    BeamRow {
        path: r.get(0),
        id: r.get(1),
        author: r.get(2),
        json: r.get(3),
        created_at: to_u64(r.get(4)),
    }
}

async fn apply(tx: &mut Transaction<'_, Sqlite>, op: &Op) -> Result<(), StoreError> {
    match op {
        Op::CreateSpace(s) => {
            sqlx::query(
                "INSERT INTO spaces (id, type, owner, name, sequencer, authority, head_seq, \
                 head_id, created_at, fanout) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(&s.id)
            .bind(&s.space_type)
            .bind(&s.owner)
            .bind(&s.name)
            .bind(&s.sequencer)
            .bind(&s.authority)
            .bind(to_i64(s.head_seq))
            .bind(&s.head_id)
            .bind(to_i64(s.created_at))
            .bind(i64::from(s.fanout))
            .execute(&mut **tx)
            .await?;
        }
        Op::Member {
            space,
            did,
            state: Some(state),
            seq,
            home,
        } => {
            sqlx::query(
                "INSERT INTO members (space, did, state, seq, home, authority) \
                 VALUES (?, ?, ?, ?, ?, ?) \
                 ON CONFLICT (space, did) DO UPDATE SET state = excluded.state, \
                 seq = excluded.seq, home = excluded.home, authority = excluded.authority",
            )
            .bind(space)
            .bind(did)
            .bind(state.as_str())
            .bind(to_i64(*seq))
            .bind(home.as_ref().map(|h| &h.node))
            .bind(home.as_ref().map(|h| &h.authority))
            .execute(&mut **tx)
            .await?;
        }
        Op::Member {
            space,
            did,
            state: None,
            ..
        } => {
            sqlx::query("DELETE FROM members WHERE space = ? AND did = ?")
                .bind(space)
                .bind(did)
                .execute(&mut **tx)
                .await?;
        }
        // Written for the whole group at once by `insert_beams`, `insert_posts`, `insert_refs`
        // and `insert_events`.
        Op::PutBeam(_) | Op::Posted { .. } | Op::BeamRef { .. } | Op::Event(_) => {}
        Op::Uncache { beam, author } => {
            sqlx::query("DELETE FROM beam_cache WHERE id = ? AND author = ?")
                .bind(beam)
                .bind(author)
                .execute(&mut **tx)
                .await?;
        }
        Op::Fork {
            space,
            seq,
            kept,
            rival,
            detected_at,
        } => {
            sqlx::query(
                "INSERT INTO forks (space, seq, kept, rival, detected_at) VALUES (?, ?, ?, ?, ?) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(space)
            .bind(to_i64(*seq))
            .bind(kept)
            .bind(rival)
            .bind(to_i64(*detected_at))
            .execute(&mut **tx)
            .await?;
        }
        Op::DeleteBeam {
            path,
            beam,
            author,
            tombstone,
        } => {
            sqlx::query("DELETE FROM beams WHERE path = ?")
                .bind(path)
                .execute(&mut **tx)
                .await?;
            // Where it was posted says who may read it; with the content gone, nothing is left
            // to read.
            sqlx::query("DELETE FROM beam_posts WHERE path = ?")
                .bind(path)
                .execute(&mut **tx)
                .await?;
            sqlx::query(
                "INSERT INTO tombstones (beam, author, json) VALUES (?, ?, ?) \
                 ON CONFLICT (beam) DO NOTHING",
            )
            .bind(beam)
            .bind(author)
            .bind(tombstone)
            .execute(&mut **tx)
            .await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn beam(path: &str) -> BeamRow {
        BeamRow {
            path: path.into(),
            id: "bid".into(),
            author: "did:key:author".into(),
            json: "{}".into(),
            created_at: 1,
        }
    }

    #[tokio::test]
    async fn a_beam_posted_into_a_remote_channel_is_public_until_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("n.db")).await.unwrap();
        let path = "beam/bah/bid";
        let readable = |caller| store.beam_readable(path, "bid", "did:key:author", caller);
        store
            .commit(&[
                Op::PutBeam(beam(path)),
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
        assert!(readable(Some("did:key:author")).await.unwrap());
        store
            .commit(&[Op::DeleteBeam {
                path: path.into(),
                beam: "bid".into(),
                author: "did:key:author".into(),
                tombstone: "{}".into(),
            }])
            .await
            .unwrap();
        assert!(store.beam(path).await.unwrap().is_none());
        assert!(
            !readable(None).await.unwrap(),
            "its posts went with its content"
        );
        store.close().await;
    }

    #[tokio::test]
    async fn a_beam_posted_only_into_a_dm_is_read_by_its_members_and_their_homes() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("n.db")).await.unwrap();
        let path = "beam/bah/bid";
        let dm = "dm/owner/d";
        let space = SpaceRow {
            id: dm.into(),
            space_type: "dm".into(),
            owner: "did:key:owner".into(),
            name: "D".into(),
            sequencer: "did:key:seq".into(),
            authority: "seq.example".into(),
            head_seq: 0,
            head_id: String::new(),
            created_at: 1,
            fanout: 10,
        };
        let member = |did: &str, state, home: Option<&str>| Op::Member {
            space: dm.into(),
            did: did.into(),
            state: Some(state),
            seq: 1,
            home: home.map(|node| HomeRow {
                node: node.into(),
                authority: "home.example".into(),
            }),
        };
        store
            .commit(&[
                Op::CreateSpace(space),
                member("did:key:m", MemberState::Member, Some("did:key:home")),
                member("did:key:i", MemberState::Invited, None),
                Op::PutBeam(beam(path)),
                Op::Posted {
                    path: path.into(),
                    space: dm.into(),
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
        store.close().await;
    }
}
