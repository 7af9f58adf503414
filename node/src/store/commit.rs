//! Group commit: a batch of [`Op`]s in one transaction, written once for every backend.
//!
//! One statement per kind of row for the whole group instead of one per row: each statement is
//! a round trip (to SQLite's worker thread, or over the network to PostgreSQL), which is what
//! bounds ingest. The order between kinds keeps every reference valid and every guard
//! effective: spaces before their rows, tombstones before the beam inserts they guard, members
//! in the order the log changed them.

use sqlx::{QueryBuilder, Transaction};

use super::queries::{Dialect, ROWS_PER_STATEMENT, Sql, to_i64};
use super::{BeamRow, EventRow, Op, StoreError};

impl<DB> Sql<DB>
where
    DB: Dialect,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    DB::Arguments: sqlx::IntoArguments<DB>,
    for<'a> &'a str: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    for<'a> Option<&'a str>: sqlx::Encode<'a, DB>,
    for<'a> Option<i64>: sqlx::Encode<'a, DB>,
    for<'a> i64: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
{
    /// Apply `ops` in one transaction; returns once it is durable. If any statement fails
    /// (a seq already taken, say), nothing of the group is kept.
    pub(super) async fn commit(&self, ops: &[Op]) -> Result<(), StoreError> {
        let mut tx = self.writer.begin().await?;
        for op in ops.iter().filter(|op| matches!(op, Op::CreateSpace(_))) {
            Self::apply(&mut tx, op).await?;
        }
        for op in ops
            .iter()
            .filter(|op| matches!(op, Op::DeleteBeam { .. } | Op::Uncache { .. }))
        {
            Self::apply(&mut tx, op).await?;
        }
        let beams: Vec<&BeamRow> = ops
            .iter()
            .filter_map(|op| match op {
                Op::PutBeam(b) => Some(b),
                _ => None,
            })
            .collect();
        Self::insert_beams(&mut tx, &beams).await?;
        Self::insert_posts(&mut tx, ops).await?;
        for op in ops
            .iter()
            .filter(|op| matches!(op, Op::Member { .. } | Op::Fork { .. }))
        {
            Self::apply(&mut tx, op).await?;
        }
        Self::insert_refs(&mut tx, ops).await?;
        Self::insert_events(&mut tx, ops).await?;
        // An error above returns early and drops `tx`, which rolls the whole group back.
        tx.commit().await?;
        Ok(())
    }

    async fn insert_beams(
        tx: &mut Transaction<'_, DB>,
        beams: &[&BeamRow],
    ) -> Result<(), StoreError> {
        for chunk in beams.chunks(ROWS_PER_STATEMENT) {
            // A deleted beam never comes back: its tombstone (inserted before, in this
            // transaction or earlier) keeps the row out. Both backends name the columns of a
            // `VALUES` list `column1`, `column2`, …; a `VALUES` list rather than a `UNION ALL`
            // of `SELECT`s, which PostgreSQL takes far longer to plan.
            let mut q = QueryBuilder::<DB>::new(
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
            q.build().execute(&mut **tx).await?;
        }
        Ok(())
    }

    async fn insert_posts(tx: &mut Transaction<'_, DB>, ops: &[Op]) -> Result<(), StoreError> {
        let posts: Vec<(&str, &str)> = ops
            .iter()
            .filter_map(|op| match op {
                Op::Posted { path, space } => Some((path.as_str(), space.as_str())),
                _ => None,
            })
            .collect();
        for chunk in posts.chunks(ROWS_PER_STATEMENT) {
            let mut q = QueryBuilder::<DB>::new("INSERT INTO beam_posts (path, space) ");
            q.push_values(chunk, |mut row, (path, space)| {
                row.push_bind(*path).push_bind(*space);
            });
            q.push(" ON CONFLICT DO NOTHING");
            q.build().execute(&mut **tx).await?;
        }
        Ok(())
    }

    async fn insert_refs(tx: &mut Transaction<'_, DB>, ops: &[Op]) -> Result<(), StoreError> {
        let refs: Vec<&Op> = ops
            .iter()
            .filter(|op| matches!(op, Op::BeamRef { .. }))
            .collect();
        for chunk in refs.chunks(ROWS_PER_STATEMENT) {
            let mut q =
                QueryBuilder::<DB>::new("INSERT INTO beam_refs (beam, space, seq, author, home) ");
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
            q.build().execute(&mut **tx).await?;
        }
        Ok(())
    }

    async fn insert_events(tx: &mut Transaction<'_, DB>, ops: &[Op]) -> Result<(), StoreError> {
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
            let mut q =
                QueryBuilder::<DB>::new("INSERT INTO events (space, seq, id, kind, author, json) ");
            q.push_values(chunk, |mut row, e| {
                row.push_bind(e.space.as_str())
                    .push_bind(to_i64(e.seq))
                    .push_bind(e.id.as_str())
                    .push_bind(e.kind.as_str())
                    .push_bind(e.author.as_str())
                    .push_bind(e.json.as_str());
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
            sqlx::query("UPDATE spaces SET head_seq = $1, head_id = $2 WHERE id = $3")
                .bind(to_i64(seq))
                .bind(id)
                .bind(space)
                .execute(&mut **tx)
                .await?;
        }
        Ok(())
    }

    /// One change that has a statement of its own.
    async fn apply(tx: &mut Transaction<'_, DB>, op: &Op) -> Result<(), StoreError> {
        match op {
            Op::CreateSpace(s) => {
                sqlx::query(
                    "INSERT INTO spaces (id, type, owner, name, sequencer, authority, head_seq, \
                     head_id, created_at, fanout) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                )
                .bind(s.id.as_str())
                .bind(s.space_type.as_str())
                .bind(s.owner.as_str())
                .bind(DB::storable(&s.name).as_ref())
                .bind(s.sequencer.as_str())
                .bind(s.authority.as_str())
                .bind(to_i64(s.head_seq))
                .bind(s.head_id.as_str())
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
                    "INSERT INTO members (space, did, state, seq, home, authority, capacity) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7) \
                     ON CONFLICT (space, did) DO UPDATE SET state = excluded.state, \
                     seq = excluded.seq, home = excluded.home, authority = excluded.authority, \
                     capacity = excluded.capacity",
                )
                .bind(space.as_str())
                .bind(did.as_str())
                .bind(state.as_str())
                .bind(to_i64(*seq))
                .bind(home.as_ref().map(|h| h.node.as_str()))
                .bind(home.as_ref().map(|h| h.authority.as_str()))
                .bind(home.as_ref().and_then(|h| h.capacity).map(i64::from))
                .execute(&mut **tx)
                .await?;
            }
            Op::Member {
                space,
                did,
                state: None,
                ..
            } => {
                sqlx::query("DELETE FROM members WHERE space = $1 AND did = $2")
                    .bind(space.as_str())
                    .bind(did.as_str())
                    .execute(&mut **tx)
                    .await?;
            }
            // Written for the whole group at once by `insert_beams`, `insert_posts`,
            // `insert_refs` and `insert_events`.
            Op::PutBeam(_) | Op::Posted { .. } | Op::BeamRef { .. } | Op::Event(_) => {}
            Op::Uncache { beam, author } => {
                sqlx::query("DELETE FROM beam_cache WHERE id = $1 AND author = $2")
                    .bind(beam.as_str())
                    .bind(author.as_str())
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
                    "INSERT INTO forks (space, seq, kept, rival, detected_at) \
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                )
                .bind(space.as_str())
                .bind(to_i64(*seq))
                .bind(kept.as_str())
                .bind(rival.as_str())
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
                sqlx::query("DELETE FROM beams WHERE id = $1 AND path = $2")
                    .bind(beam.as_str())
                    .bind(path.as_str())
                    .execute(&mut **tx)
                    .await?;
                // Where it was posted says who may read it; with the content gone, nothing is
                // left to read.
                sqlx::query("DELETE FROM beam_posts WHERE path = $1")
                    .bind(path.as_str())
                    .execute(&mut **tx)
                    .await?;
                sqlx::query(
                    "INSERT INTO tombstones (beam, author, json) VALUES ($1, $2, $3) \
                     ON CONFLICT (beam) DO NOTHING",
                )
                .bind(beam.as_str())
                .bind(author.as_str())
                .bind(tombstone.as_str())
                .execute(&mut **tx)
                .await?;
            }
        }
        Ok(())
    }
}
