//! Group commit: a batch of [`Op`]s in one transaction, written once for every backend.
//!
//! One statement per kind of row for the whole group instead of one per row, and on SQLite one
//! query for the whole transaction: `BEGIN`, the statements and `COMMIT`, which SQLite's driver
//! runs in order on its worker thread. Each query is a round trip (to that thread, or over the
//! network to PostgreSQL), and the task waiting for it shares the cores with every connection's
//! verification: one round trip per commit instead of one per statement shortens the time
//! from a post to its ack. PostgreSQL takes one statement per query when values are bound, so
//! there the statements go one by one inside a transaction. The order between kinds keeps every
//! reference valid and every guard effective: spaces before their rows, tombstones before the
//! beam inserts they guard, members in the order the log changed them.

use sqlx::QueryBuilder;

use super::queries::{Dialect, ROWS_PER_STATEMENT, Sql, to_i64};
use super::{BeamRow, EventRow, Op, StoreError};

/// The statements of one group, written in order.
struct Statements<DB: sqlx::Database> {
    /// The statement being written; with [`Dialect::SCRIPTS`], every statement so far.
    current: QueryBuilder<DB>,
    /// Whether `current` holds nothing yet.
    empty: bool,
    /// Finished statements, each a query of its own (unless [`Dialect::SCRIPTS`], where the
    /// whole transaction, `BEGIN` to `COMMIT`, is one query).
    done: Vec<QueryBuilder<DB>>,
}

impl<DB: Dialect> Statements<DB> {
    fn new() -> Self {
        Self {
            current: QueryBuilder::new(if DB::SCRIPTS { "BEGIN" } else { "" }),
            empty: !DB::SCRIPTS,
            done: Vec::new(),
        }
    }

    /// Start the next statement and return it to be written.
    fn next(&mut self) -> &mut QueryBuilder<DB> {
        if !self.empty {
            if DB::SCRIPTS {
                self.current.push("; ");
            } else {
                let last = std::mem::replace(&mut self.current, QueryBuilder::new(""));
                self.done.push(last);
            }
        }
        self.empty = false;
        &mut self.current
    }

    /// Every query, in order.
    fn finish(mut self) -> Vec<QueryBuilder<DB>> {
        if DB::SCRIPTS {
            self.current.push("; COMMIT");
        }
        if !self.empty {
            self.done.push(self.current);
        }
        self.done
    }
}

/// The longest script kept prepared in the writer connection's statement cache: one post's
/// group is about 1.5 KiB, so this keeps the groups of a quiet node, whose few shapes recur,
/// and leaves out the many shapes of a busy node's big groups.
const CACHED_SCRIPT_BYTES: usize = 4096;

/// The writer's connection while a script runs on it. Dropped before the script ended (the
/// commit's task aborted) or with a failed rollback, the connection may still be inside the
/// script's transaction, which the pool would not notice: it is closed instead of reused.
struct Scripting<DB: sqlx::Database> {
    conn: sqlx::pool::PoolConnection<DB>,
    /// The script committed, or was rolled back.
    settled: bool,
}

impl<DB: sqlx::Database> Drop for Scripting<DB> {
    fn drop(&mut self) {
        if !self.settled {
            self.conn.close_on_drop();
        }
    }
}

impl<DB> Sql<DB>
where
    DB: Dialect + sqlx::database::HasStatementCache,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    DB::Arguments: sqlx::IntoArguments<DB>,
    for<'a> &'a str: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    for<'a> String: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    for<'a> Option<&'a str>: sqlx::Encode<'a, DB>,
    for<'a> Option<i64>: sqlx::Encode<'a, DB>,
    for<'a> i64: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
{
    /// Apply `ops` in one transaction; returns once it is durable. If any statement fails
    /// (a seq already taken, say), nothing of the group is kept.
    pub(super) async fn commit(&self, ops: &[Op]) -> Result<(), StoreError> {
        let mut statements = Statements::new();
        statements.group(ops);
        let queries = statements.finish();
        if DB::SCRIPTS {
            let mut conn = Scripting {
                conn: self.writer.acquire().await?,
                settled: false,
            };
            for mut query in queries {
                // A script's text changes with the number of rows of each kind in the group.
                // A short one (a group of a post or two, what a quiet node commits) comes back
                // again and again, and preparing it anew took about 0.2 ms of a 0.6 ms commit:
                // it is kept in the connection's statement cache. A long one would hardly be
                // met again, and would hold every statement of a big group prepared: it is not.
                let cached = query.sql().as_str().len() <= CACHED_SCRIPT_BYTES;
                let done = query
                    .build()
                    .persistent(cached)
                    .execute(&mut *conn.conn)
                    .await;
                if let Err(e) = done {
                    // The script stopped at the statement that failed, inside its transaction
                    // (unless `BEGIN` itself failed: then the rollback fails, and the
                    // connection, which may be in a transaction no one knows of, is closed).
                    match sqlx::query("ROLLBACK").execute(&mut *conn.conn).await {
                        Ok(_) => conn.settled = true,
                        Err(rollback) => {
                            tracing::warn!(error = %crate::report::Causes(&rollback), "cannot roll back a failed group commit; its connection is closed");
                        }
                    }
                    return Err(e.into());
                }
            }
            conn.settled = true;
            return Ok(());
        }
        let mut tx = self.writer.begin().await?;
        for mut query in queries {
            query.build().execute(&mut *tx).await?;
        }
        // An error above returns early and drops `tx`, which rolls the whole group back.
        tx.commit().await?;
        Ok(())
    }
}

/// The statements of each kind of row, written once for both backends.
impl<DB> Statements<DB>
where
    DB: Dialect,
    for<'a> &'a str: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    for<'a> String: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    for<'a> Option<&'a str>: sqlx::Encode<'a, DB>,
    for<'a> Option<i64>: sqlx::Encode<'a, DB>,
    for<'a> i64: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
{
    /// Write the statements of `ops`, in the order that keeps every reference valid and every
    /// guard effective.
    fn group(&mut self, ops: &[Op]) {
        for op in ops.iter().filter(|op| matches!(op, Op::CreateSpace(_))) {
            self.op(op);
        }
        for op in ops
            .iter()
            .filter(|op| matches!(op, Op::DeleteBeam { .. } | Op::Uncache { .. }))
        {
            self.op(op);
        }
        let beams: Vec<&BeamRow> = ops
            .iter()
            .filter_map(|op| match op {
                Op::PutBeam(b) => Some(b),
                _ => None,
            })
            .collect();
        self.beams(&beams);
        // After the beams: an edit's purge also reaches versions the group itself stored.
        for op in ops.iter().filter(|op| matches!(op, Op::Edit { .. })) {
            self.op(op);
        }
        self.posts(ops);
        for op in ops
            .iter()
            .filter(|op| matches!(op, Op::Member { .. } | Op::Fork { .. }))
        {
            self.op(op);
        }
        self.refs(ops);
        self.events(ops);
        // Last: whatever the group wrote into a space it removes goes with it.
        for op in ops.iter().filter(|op| matches!(op, Op::DropSpace { .. })) {
            self.op(op);
        }
    }

    fn beams(&mut self, beams: &[&BeamRow]) {
        for chunk in beams.chunks(ROWS_PER_STATEMENT) {
            // A deleted beam never comes back: its tombstone (inserted before, in this
            // transaction or earlier) keeps the row out. Both backends name the columns of a
            // `VALUES` list `column1`, `column2`, …; a `VALUES` list rather than a `UNION ALL`
            // of `SELECT`s, which PostgreSQL takes far longer to plan.
            let q = self.next();
            q.push(
                "INSERT INTO beams (path, id, author, json, created_at) \
                 SELECT column1, column2, column3, column4, column5 FROM (",
            );
            q.push_values(chunk, |mut row, b| {
                row.push_bind(b.path.as_str())
                    .push_bind(b.id.as_str())
                    .push_bind(b.author.as_str())
                    .push_bind(b.json.as_str())
                    .push_bind(to_i64(b.created_at));
            });
            q.push(
                ") AS v WHERE NOT EXISTS (SELECT 1 FROM tombstones t WHERE t.beam = v.column2) ",
            );
            q.push("ON CONFLICT (id) DO NOTHING");
        }
    }

    fn posts(&mut self, ops: &[Op]) {
        let posts: Vec<(&str, &str)> = ops
            .iter()
            .filter_map(|op| match op {
                Op::Posted { path, space } => Some((path.as_str(), space.as_str())),
                _ => None,
            })
            .collect();
        for chunk in posts.chunks(ROWS_PER_STATEMENT) {
            let q = self.next();
            q.push("INSERT INTO beam_posts (path, space) ");
            q.push_values(chunk, |mut row, (path, space)| {
                row.push_bind(*path).push_bind(*space);
            });
            q.push(" ON CONFLICT DO NOTHING");
        }
    }

    fn refs(&mut self, ops: &[Op]) {
        let refs: Vec<&Op> = ops
            .iter()
            .filter(|op| matches!(op, Op::BeamRef { .. }))
            .collect();
        for chunk in refs.chunks(ROWS_PER_STATEMENT) {
            let q = self.next();
            q.push("INSERT INTO beam_refs (beam, space, seq, author, home) ");
            q.push_values(chunk, |mut row, op| {
                if let Op::BeamRef {
                    beam,
                    space,
                    seq,
                    author,
                    home,
                } = op
                {
                    row.push_bind(beam.as_str())
                        .push_bind(space.as_str())
                        .push_bind(to_i64(*seq))
                        .push_bind(author.as_str())
                        .push_bind(home.as_str());
                }
            });
            q.push(" ON CONFLICT DO NOTHING");
        }
    }

    fn events(&mut self, ops: &[Op]) {
        let events: Vec<&EventRow> = ops
            .iter()
            .filter_map(|op| match op {
                Op::Event(e) => Some(e),
                _ => None,
            })
            .collect();
        for chunk in events.chunks(ROWS_PER_STATEMENT) {
            // No `ON CONFLICT`: a seq already stored fails the group (an id hashes the event
            // with its space and seq, so the primary key keeps ids unique too).
            let q = self.next();
            q.push("INSERT INTO events (space, seq, id, kind, author, json) ");
            q.push_values(chunk, |mut row, e| {
                row.push_bind(e.space.as_str())
                    .push_bind(to_i64(e.seq))
                    .push_bind(e.id.as_str())
                    .push_bind(e.kind.as_str())
                    .push_bind(e.author.as_str())
                    .push_bind(e.json.as_str());
            });
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
            let q = self.next();
            q.push("UPDATE spaces SET head_seq = ")
                .push_bind(to_i64(seq))
                .push(", head_id = ")
                .push_bind(id)
                .push(" WHERE id = ")
                .push_bind(space);
        }
    }

    /// Delete from `table` (`beams` or `beam_cache`) every version of `author`'s beam
    /// `original` (`spec/` §4.10): a deleted beam takes its versions with it.
    fn versions_gone(&mut self, table: &str, original: &str, author: &str) {
        let q = self.next();
        q.push(format!("DELETE FROM {table} WHERE author = "));
        q.push_bind(author.to_owned());
        q.push(" AND id IN (SELECT beam FROM edits WHERE original = ");
        q.push_bind(original.to_owned());
        q.push(" AND author = ");
        q.push_bind(author.to_owned());
        q.push(")");
    }

    /// Delete from `table` every version of `author`'s beam `original` whose key (version,
    /// then edit id text) is below that of an edit of it that drops history, the original
    /// included.
    fn dropped_versions_gone(&mut self, table: &str, original: &str, author: &str) {
        let q = self.next();
        q.push(format!("DELETE FROM {table} WHERE author = "));
        q.push_bind(author.to_owned());
        q.push(" AND EXISTS (SELECT 1 FROM edits d WHERE d.original = ");
        q.push_bind(original.to_owned());
        q.push(" AND d.author = ");
        q.push_bind(author.to_owned());
        q.push(" AND d.drop_history = 1) AND (id = ");
        q.push_bind(original.to_owned());
        q.push(" OR id IN (SELECT e.beam FROM edits e WHERE e.original = ");
        q.push_bind(original.to_owned());
        q.push(" AND e.author = ");
        q.push_bind(author.to_owned());
        q.push(" AND EXISTS (SELECT 1 FROM edits d WHERE d.original = e.original AND d.author = e.author AND d.drop_history = 1 AND (d.version > e.version OR (d.version = e.version AND d.id > e.id)))))");
    }

    /// One change that has a statement of its own.
    fn op(&mut self, op: &Op) {
        match op {
            Op::CreateSpace(s) => {
                let q = self.next();
                q.push(
                    "INSERT INTO spaces (id, type, owner, name, sequencer, authority, head_seq, \
                     head_id, created_at, fanout) ",
                );
                q.push_values([s], |mut row, s| {
                    row.push_bind(s.id.as_str())
                        .push_bind(s.space_type.as_str())
                        .push_bind(s.owner.as_str())
                        .push_bind(DB::storable(&s.name).into_owned())
                        .push_bind(s.sequencer.as_str())
                        .push_bind(s.authority.as_str())
                        .push_bind(to_i64(s.head_seq))
                        .push_bind(s.head_id.as_str())
                        .push_bind(to_i64(s.created_at))
                        .push_bind(i64::from(s.fanout));
                });
            }
            Op::Member {
                space,
                did,
                state: Some(state),
                seq,
                home,
            } => {
                let q = self.next();
                q.push("INSERT INTO members (space, did, state, seq, home, authority, capacity) ");
                q.push_values([()], |mut row, ()| {
                    row.push_bind(space.as_str())
                        .push_bind(did.as_str())
                        .push_bind(state.as_str())
                        .push_bind(to_i64(*seq))
                        .push_bind(home.as_ref().map(|h| h.node.as_str()))
                        .push_bind(home.as_ref().map(|h| h.authority.as_str()))
                        .push_bind(home.as_ref().and_then(|h| h.capacity).map(i64::from));
                });
                q.push(
                    " ON CONFLICT (space, did) DO UPDATE SET state = excluded.state, \
                     seq = excluded.seq, home = excluded.home, authority = excluded.authority, \
                     capacity = excluded.capacity",
                );
            }
            Op::Member {
                space,
                did,
                state: None,
                ..
            } => {
                self.next()
                    .push("DELETE FROM members WHERE space = ")
                    .push_bind(space.as_str())
                    .push(" AND did = ")
                    .push_bind(did.as_str());
            }
            // Written for the whole group at once by `beams`, `posts`, `refs`
            // and `events`.
            Op::PutBeam(_) | Op::Posted { .. } | Op::BeamRef { .. } | Op::Event(_) => {}
            Op::Uncache { beam, author } => {
                self.next()
                    .push("DELETE FROM beam_cache WHERE id = ")
                    .push_bind(beam.as_str())
                    .push(" AND author = ")
                    .push_bind(author.as_str());
                self.versions_gone("beam_cache", beam, author);
            }
            Op::Edit {
                id,
                original,
                author,
                version,
                beam,
                drop_history,
                json,
            } => {
                let q = self.next();
                q.push(
                    "INSERT INTO edits (id, original, author, version, beam, drop_history, json) ",
                );
                q.push_values([()], |mut row, ()| {
                    row.push_bind(id.as_str())
                        .push_bind(original.as_str())
                        .push_bind(author.as_str())
                        .push_bind(to_i64(*version))
                        .push_bind(beam.as_str())
                        .push_bind(i64::from(*drop_history))
                        .push_bind(json.as_str());
                });
                q.push(" ON CONFLICT (id) DO NOTHING");
                // Whichever order the edits came in, what is below the greatest dropping edit
                // is gone: so an edit that arrives after a dropping one above it is dropped too.
                for table in ["beams", "beam_cache"] {
                    self.dropped_versions_gone(table, original, author);
                }
            }
            Op::Fork {
                space,
                seq,
                kept,
                rival,
                detected_at,
            } => {
                let q = self.next();
                q.push("INSERT INTO forks (space, seq, kept, rival, detected_at) ");
                q.push_values([()], |mut row, ()| {
                    row.push_bind(space.as_str())
                        .push_bind(to_i64(*seq))
                        .push_bind(kept.as_str())
                        .push_bind(rival.as_str())
                        .push_bind(to_i64(*detected_at));
                });
                q.push(" ON CONFLICT DO NOTHING");
            }
            Op::DeleteBeam {
                path,
                beam,
                author,
                tombstone,
            } => {
                self.next()
                    .push("DELETE FROM beams WHERE id = ")
                    .push_bind(beam.as_str())
                    .push(" AND path = ")
                    .push_bind(path.as_str());
                // Where it was posted says who may read it; with the content gone, nothing is
                // left to read.
                self.next()
                    .push("DELETE FROM beam_posts WHERE path = ")
                    .push_bind(path.as_str());
                self.versions_gone("beams", beam, author);
                let q = self.next();
                q.push("INSERT INTO tombstones (beam, author, json) ");
                q.push_values([()], |mut row, ()| {
                    row.push_bind(beam.as_str())
                        .push_bind(author.as_str())
                        .push_bind(tombstone.as_str());
                });
                q.push(" ON CONFLICT (beam) DO NOTHING");
            }
            Op::DropSpace { space, removed_at } => {
                // Children first: they reference the space's row.
                for table in ["events", "members", "beam_refs", "beam_posts", "forks"] {
                    self.next()
                        .push(format!("DELETE FROM {table} WHERE space = "))
                        .push_bind(space.as_str());
                }
                self.next()
                    .push("DELETE FROM spaces WHERE id = ")
                    .push_bind(space.as_str());
                let q = self.next();
                q.push("INSERT INTO removed_spaces (id, removed_at) ");
                q.push_values([()], |mut row, ()| {
                    row.push_bind(space.as_str()).push_bind(to_i64(*removed_at));
                });
                q.push(" ON CONFLICT (id) DO NOTHING");
            }
        }
    }
}
