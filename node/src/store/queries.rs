//! The reads of the storage interface, written once for every backend.
//!
//! Each query is one SQL text that SQLite and PostgreSQL both take as it is: `$N` placeholders
//! (SQLite reads `$N` as the N-th bound value, as PostgreSQL does), standard `ON CONFLICT`, no
//! backend's own functions. Where a value's SQL type would differ between them (an integer
//! literal is 64-bit in SQLite, 32-bit in PostgreSQL), the query avoids decoding it: a row's
//! presence answers a yes/no question, and a flag column is `CAST(… AS BIGINT)`.

use std::fmt;
use std::sync::LazyLock;

use futures_util::TryStreamExt;
use sqlx::{AssertSqlSafe, Database, Pool, QueryBuilder, Row};

use super::{
    BeamRow, Counts, EventRow, HomeRow, KnownBeam, MemberRow, SpaceRow, StoreError, UserRow,
};

/// A backend's pool with the queries every backend shares. `DB` is the sqlx driver; the
/// `where` clause on each `impl` block names what the shared SQL needs of it (binding and
/// reading text and 64-bit integers, running on a pooled connection or in a transaction).
pub(super) struct Sql<DB: Database> {
    /// Reads, and writes other than group commits.
    pub(super) pool: Pool<DB>,
    /// Group commits ([`Sql::commit`]). On SQLite a pool of its own holding one connection
    /// that lives as long as the node, so the pages the writer touches stay in that
    /// connection's cache; a connection taken from the shared pool finds its cache stale after
    /// another connection's commit and reads the B-tree again. On PostgreSQL the shared pool.
    pub(super) writer: Pool<DB>,
}

impl<DB: Database> Clone for Sql<DB> {
    fn clone(&self) -> Self {
        Self {
            pool: self.pool.clone(),
            writer: self.writer.clone(),
        }
    }
}

impl<DB: Database> fmt::Debug for Sql<DB> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sql")
            .field("pool", &self.pool)
            .field("writer", &self.writer)
            .finish()
    }
}

/// What a backend does its own way inside the shared SQL.
pub(super) trait Dialect: Database {
    /// `text` as this backend can store it (PostgreSQL's text holds no NUL character).
    fn storable(text: &str) -> std::borrow::Cow<'_, str>;
    /// How many rows a statement changed.
    fn rows_affected(done: &Self::QueryResult) -> u64;
    /// Whether one query may hold several statements with bound values, run in order (a
    /// group commit is then one query, `BEGIN` to `COMMIT`).
    const SCRIPTS: bool;
}

/// Rows per multi-row statement: far below SQLite's limit of 32,766 bound values and
/// PostgreSQL's of 65,535.
pub(super) const ROWS_PER_STATEMENT: usize = 500;

pub(super) fn to_i64(v: u64) -> i64 {
    // Every stored integer is a seq or a time, both within 2^53 by the protocol's rules.
    i64::try_from(v).unwrap_or(i64::MAX)
}

pub(super) fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

const SPACE_COLUMNS: &str =
    "id, type, owner, name, sequencer, authority, head_seq, head_id, created_at, fanout";

impl<DB> Sql<DB>
where
    DB: Dialect,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    DB::Arguments: sqlx::IntoArguments<DB>,
    for<'a> &'a str: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    for<'a> Option<&'a str>: sqlx::Encode<'a, DB>,
    for<'a> i64: sqlx::Encode<'a, DB> + sqlx::Decode<'a, DB> + sqlx::Type<DB>,
    for<'a> String: sqlx::Decode<'a, DB> + sqlx::Type<DB>,
    usize: sqlx::ColumnIndex<DB::Row>,
{
    /// A space by id.
    pub(super) async fn space(&self, id: &str) -> Result<Option<SpaceRow>, StoreError> {
        static SQL: LazyLock<String> =
            LazyLock::new(|| format!("SELECT {SPACE_COLUMNS} FROM spaces WHERE id = $1"));
        let row = sqlx::query(AssertSqlSafe(SQL.as_str()))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| space_row(&r)))
    }

    pub(super) async fn spaces_of(&self, did: &str) -> Result<Vec<SpaceRow>, StoreError> {
        static SQL: LazyLock<String> = LazyLock::new(|| {
            format!(
                "SELECT {SPACE_COLUMNS} FROM spaces WHERE owner = $1 OR id IN \
                 (SELECT space FROM members WHERE did = $1 AND state IN ('member', 'invited')) \
                 ORDER BY created_at, id"
            )
        });
        let rows = sqlx::query(AssertSqlSafe(SQL.as_str()))
            .bind(did)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(space_row).collect())
    }

    pub(super) async fn replicated_spaces(
        &self,
        own_did: &str,
    ) -> Result<Vec<SpaceRow>, StoreError> {
        static SQL: LazyLock<String> = LazyLock::new(|| {
            format!("SELECT {SPACE_COLUMNS} FROM spaces WHERE sequencer <> $1 ORDER BY id")
        });
        let rows = sqlx::query(AssertSqlSafe(SQL.as_str()))
            .bind(own_did)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(space_row).collect())
    }

    pub(super) async fn members(&self, space: &str) -> Result<Vec<MemberRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT did, state, seq, home, authority, capacity FROM members WHERE space = $1 \
             ORDER BY did",
        )
        .bind(space)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let home = match (r.get::<Option<String>, _>(3), r.get::<Option<String>, _>(4)) {
                    (Some(node), Some(authority)) => Some(HomeRow {
                        node,
                        authority,
                        capacity: r
                            .get::<Option<i64>, _>(5)
                            .and_then(|c| u32::try_from(c).ok()),
                    }),
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

    pub(super) async fn may_read_dm(&self, space: &str, did: &str) -> Result<bool, StoreError> {
        let row = sqlx::query(
            "SELECT 1 FROM members WHERE space = $1 AND state = 'member' \
             AND (did = $2 OR home = $2) LIMIT 1",
        )
        .bind(space)
        .bind(did)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.is_some())
    }

    pub(super) async fn cached_beam(&self, path: &str) -> Result<Option<BeamRow>, StoreError> {
        let row = sqlx::query("SELECT path, id, author, json FROM beam_cache WHERE path = $1")
            .bind(path)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| BeamRow {
            path: r.get(0),
            id: r.get(1),
            author: r.get(2),
            json: r.get(3),
            created_at: 0,
        }))
    }

    pub(super) async fn cache_beam(&self, beam: &BeamRow) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT INTO beam_cache (path, id, author, json) \
             SELECT $1, $2, $3, $4 \
             WHERE (EXISTS (SELECT 1 FROM beam_refs WHERE beam = $2 AND author = $3) \
                    OR EXISTS (SELECT 1 FROM edits e JOIN beam_refs r \
                               ON r.beam = e.original AND r.author = e.author \
                               WHERE e.beam = $2 AND e.author = $3)) \
             AND NOT EXISTS (SELECT 1 FROM tombstones WHERE beam = $2) \
             ON CONFLICT (path) DO NOTHING",
        )
        .bind(beam.path.as_str())
        .bind(beam.id.as_str())
        .bind(beam.author.as_str())
        .bind(beam.json.as_str())
        .execute(&self.pool)
        .await?;
        Ok(DB::rows_affected(&done) > 0)
    }

    pub(super) async fn events_within(
        &self,
        space: &str,
        since: u64,
        limit: u32,
        max_bytes: usize,
    ) -> Result<Vec<EventRow>, StoreError> {
        let mut rows = sqlx::query(
            "SELECT space, seq, id, kind, author, json FROM events \
             WHERE space = $1 AND seq > $2 ORDER BY seq LIMIT $3",
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

    pub(super) async fn beam(&self, path: &str) -> Result<Option<BeamRow>, StoreError> {
        // Beams are found by id, the path's last part; the path itself is checked after.
        let Some((_, id)) = path.rsplit_once('/') else {
            return Ok(None);
        };
        let row = sqlx::query(
            "SELECT path, id, author, json, created_at FROM beams WHERE id = $1 AND path = $2",
        )
        .bind(id)
        .bind(path)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| beam_row(&r)))
    }

    pub(super) async fn known_beams(&self, beams: &[String]) -> Result<Vec<KnownBeam>, StoreError> {
        let mut found = Vec::new();
        for chunk in beams.chunks(ROWS_PER_STATEMENT) {
            let mut q = QueryBuilder::<DB>::new(
                "SELECT beam, author, CAST(1 AS BIGINT) FROM tombstones WHERE beam IN (",
            );
            in_list(&mut q, chunk);
            q.push(" UNION ALL SELECT id, author, CAST(0 AS BIGINT) FROM beams WHERE id IN (");
            in_list(&mut q, chunk);
            q.push(" UNION ALL SELECT id, author, CAST(0 AS BIGINT) FROM beam_cache WHERE id IN (");
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

    pub(super) async fn tombstone_ids(&self, limit: usize) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query("SELECT beam FROM tombstones LIMIT $1")
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    pub(super) async fn counts(&self, own_did: &str) -> Result<Counts, StoreError> {
        let row = sqlx::query(
            "SELECT \
             (SELECT count(DISTINCT did) FROM members WHERE home = $1 AND state = 'member'), \
             (SELECT count(*) FROM spaces WHERE sequencer = $1), \
             (SELECT count(*) FROM spaces WHERE sequencer <> $1), \
             (SELECT count(*) FROM (SELECT home AS node FROM members WHERE home IS NOT NULL \
              UNION SELECT sequencer FROM spaces) AS n WHERE node <> $1)",
        )
        .bind(own_did)
        .fetch_one(&self.pool)
        .await?;
        let count = |i: usize| u64::try_from(row.get::<i64, _>(i)).unwrap_or(0);
        Ok(Counts {
            users: count(0),
            spaces_sequenced: count(1),
            spaces_replicated: count(2),
            peers: count(3),
        })
    }

    pub(super) async fn users(&self) -> Result<Vec<UserRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT did, first_seen, last_seen, access, banned_at FROM users ORDER BY did",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let allowed = match r.get::<Option<String>, _>(3).as_deref() {
                    None => None,
                    Some("allow") => Some(true),
                    Some("deny") => Some(false),
                    Some(other) => {
                        return Err(StoreError::Corrupt {
                            table: "users",
                            reason: format!("unknown access {other:?}"),
                        });
                    }
                };
                Ok(UserRow {
                    did: r.get(0),
                    first_seen: r.get::<Option<i64>, _>(1).map(to_u64),
                    last_seen: r.get::<Option<i64>, _>(2).map(to_u64),
                    allowed,
                    banned_at: r.get::<Option<i64>, _>(4).map(to_u64),
                })
            })
            .collect()
    }

    pub(super) async fn user_seen(&self, did: &str, now: u64) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO users (did, first_seen, last_seen) VALUES ($1, $2, $2) \
             ON CONFLICT (did) DO UPDATE SET last_seen = $2, \
             first_seen = COALESCE(users.first_seen, $2)",
        )
        .bind(did)
        .bind(to_i64(now))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub(super) async fn set_access(&self, did: &str, allow: bool) -> Result<(), StoreError> {
        let access = if allow { "allow" } else { "deny" };
        sqlx::query(
            "INSERT INTO users (did, access) VALUES ($1, $2) \
             ON CONFLICT (did) DO UPDATE SET access = $2",
        )
        .bind(did)
        .bind(access)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub(super) async fn ban_user(&self, did: &str, now: u64) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO users (did, banned_at) VALUES ($1, $2) \
             ON CONFLICT (did) DO UPDATE SET banned_at = COALESCE(users.banned_at, $2)",
        )
        .bind(did)
        .bind(to_i64(now))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub(super) async fn unban_user(&self, did: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE users SET banned_at = NULL WHERE did = $1")
            .bind(did)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub(super) async fn home_members(&self, own_did: &str) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query(
            "SELECT DISTINCT did FROM members WHERE home = $1 AND state = 'member' ORDER BY did",
        )
        .bind(own_did)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    pub(super) async fn is_removed(&self, space: &str) -> Result<bool, StoreError> {
        let row = sqlx::query("SELECT 1 FROM removed_spaces WHERE id = $1")
            .bind(space)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.is_some())
    }

    pub(super) async fn ping(&self) -> Result<(), StoreError> {
        // A read of a real table, so a database that lost its tables fails too.
        sqlx::query("SELECT count(*) FROM node_identity")
            .fetch_one(&self.pool)
            .await?;
        Ok(())
    }

    pub(super) async fn edits_of(
        &self,
        original: &str,
        author: &str,
    ) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query(
            "SELECT json FROM edits WHERE original = $1 AND author = $2 ORDER BY version, id",
        )
        .bind(original)
        .bind(author)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    pub(super) async fn stores_version_of(
        &self,
        original: &str,
        prefix: &str,
    ) -> Result<bool, StoreError> {
        let row = sqlx::query(
            "SELECT 1 FROM edits e JOIN beams b ON b.id = e.beam AND b.author = e.author \
             WHERE e.original = $1 AND b.path LIKE $2 LIMIT 1",
        )
        .bind(original)
        .bind(prefix)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.is_some())
    }

    pub(super) async fn version_of(
        &self,
        beam: &str,
    ) -> Result<Option<(String, String)>, StoreError> {
        let row = sqlx::query("SELECT original, author FROM edits WHERE beam = $1 LIMIT 1")
            .bind(beam)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| (r.get(0), r.get(1))))
    }

    pub(super) async fn is_tombstoned(&self, beam: &str) -> Result<bool, StoreError> {
        let row = sqlx::query("SELECT 1 FROM tombstones WHERE beam = $1")
            .bind(beam)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.is_some())
    }

    pub(super) async fn beams_by_author(
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
                 WHERE b.author = $1 AND b.created_at < $2 AND {} \
                 ORDER BY b.created_at DESC, b.id LIMIT $3",
                readable("b.path", "b.id", "b.author", "$4")
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

    pub(super) async fn beam_readable(
        &self,
        path: &str,
        id: &str,
        author: &str,
        caller: Option<&str>,
    ) -> Result<bool, StoreError> {
        static SQL: LazyLock<String> =
            LazyLock::new(|| format!("SELECT 1 WHERE {}", readable("$1", "$2", "$3", "$4")));
        let row = sqlx::query(AssertSqlSafe(SQL.as_str()))
            .bind(path)
            .bind(id)
            .bind(author)
            .bind(caller)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.is_some())
    }

    pub(super) async fn replicated_dm_spaces_of_beam(
        &self,
        path: &str,
        id: &str,
        author: &str,
        own_did: &str,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let rows = sqlx::query(
            "SELECT s.id, s.authority FROM spaces s WHERE s.type = 'dm' AND s.sequencer <> $4 \
             AND s.id IN (SELECT space FROM beam_posts WHERE path = $1 \
                          UNION SELECT space FROM beam_refs WHERE beam = $2 AND author = $3) \
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

    pub(super) async fn ref_authors(&self, beam: &str) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query(
            "SELECT DISTINCT author FROM beam_refs WHERE beam = $1 AND author IS NOT NULL",
        )
        .bind(beam)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    pub(super) async fn references(
        &self,
        beam: &str,
        space: &str,
        author: &str,
    ) -> Result<bool, StoreError> {
        let row = sqlx::query(
            "SELECT 1 FROM beam_refs WHERE beam = $1 AND space = $2 AND author = $3 LIMIT 1",
        )
        .bind(beam)
        .bind(space)
        .bind(author)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.is_some())
    }

    pub(super) async fn referenced_at(
        &self,
        beam: &str,
        author: &str,
        home: &str,
    ) -> Result<bool, StoreError> {
        let row = sqlx::query(
            "SELECT 1 FROM beam_refs WHERE beam = $1 AND author = $2 AND home = $3 LIMIT 1",
        )
        .bind(beam)
        .bind(author)
        .bind(home)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.is_some())
    }

    pub(super) async fn forks(
        &self,
        space: &str,
    ) -> Result<Vec<(u64, String, String)>, StoreError> {
        let rows =
            sqlx::query("SELECT seq, kept, rival FROM forks WHERE space = $1 ORDER BY seq, rival")
                .bind(space)
                .fetch_all(&self.pool)
                .await?;
        Ok(rows
            .iter()
            .map(|r| (to_u64(r.get(0)), r.get(1), r.get(2)))
            .collect())
    }

    pub(super) async fn spaces_referencing(
        &self,
        beam: &str,
        author: &str,
    ) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query(
            "SELECT DISTINCT space FROM beam_refs WHERE beam = $1 AND author = $2 ORDER BY space",
        )
        .bind(beam)
        .bind(author)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// The tombstone events by `author` in `space`: (seq, the signed event's JSON), in log
    /// order. A scan of the space's log, for the occasional `beam.receipts`.
    pub(super) async fn tombstone_events(
        &self,
        space: &str,
        author: &str,
    ) -> Result<Vec<(u64, String)>, StoreError> {
        let rows = sqlx::query(
            "SELECT seq, json FROM events WHERE space = $1 AND kind = 'tombstone' AND author = $2 \
             ORDER BY seq",
        )
        .bind(space)
        .bind(author)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(|r| (to_u64(r.get(0)), r.get(1))).collect())
    }

    /// The DID of the node this database belongs to and the protocol version of its data,
    /// recording `node` and `protocol` if it belongs to none yet (its first start).
    pub(super) async fn owner(
        &self,
        node: &str,
        protocol: u32,
    ) -> Result<(String, i64), StoreError> {
        sqlx::query(
            "INSERT INTO node_identity (id, did, protocol) VALUES (1, $1, $2) \
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(node)
        .bind(i64::from(protocol))
        .execute(&self.pool)
        .await?;
        let row = sqlx::query("SELECT did, protocol FROM node_identity WHERE id = 1")
            .fetch_one(&self.pool)
            .await?;
        Ok((row.get(0), row.get(1)))
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

/// `(…, …)` of bound values, closing the parenthesis the caller opened.
fn in_list<DB>(q: &mut QueryBuilder<DB>, values: &[String])
where
    DB: Database,
    for<'a> &'a str: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
{
    let mut list = q.separated(", ");
    for value in values {
        list.push_bind(value.as_str());
    }
    q.push(")");
}

fn space_row<R: Row>(r: &R) -> SpaceRow
where
    usize: sqlx::ColumnIndex<R>,
    for<'a> i64: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
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

fn beam_row<R: Row>(r: &R) -> BeamRow
where
    usize: sqlx::ColumnIndex<R>,
    for<'a> i64: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    BeamRow {
        path: r.get(0),
        id: r.get(1),
        author: r.get(2),
        json: r.get(3),
        created_at: to_u64(r.get(4)),
    }
}
