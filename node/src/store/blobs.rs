//! The `blobs` and `blob_refs` tables, which only the blobs service ([`crate::blobs`]) uses.
//!
//! Invariants: a blob id has one row; a cached copy (`cached = 1`) is never counted against a
//! quota; a `blob_refs` row names a beam path that is stored or cached here, until the next
//! sweep removes the rows of beams that went ([`Store::drop_stale_blob_refs`]).

use sqlx::{AssertSqlSafe, Row};

use super::queries::{Dialect, Sql, to_i64, to_u64};
use super::{Backend, Store, StoreError};

/// A stored blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobRow {
    /// Its id (content id text).
    pub id: String,
    /// Its size in bytes.
    pub size: u64,
    /// Its owner's DID.
    pub owner: String,
    /// Its media type.
    pub media_type: String,
    /// When it was stored, ms.
    pub created_at: u64,
    /// Whether it is a copy of another node's blob.
    pub cached: bool,
}

impl<DB> Sql<DB>
where
    DB: Dialect,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    DB::Arguments: sqlx::IntoArguments<DB>,
    for<'a> &'a str: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    for<'a> i64: sqlx::Encode<'a, DB> + sqlx::Decode<'a, DB> + sqlx::Type<DB>,
    for<'a> String: sqlx::Decode<'a, DB> + sqlx::Type<DB>,
    usize: sqlx::ColumnIndex<DB::Row>,
{
    async fn exec(
        &self,
        sql: &'static str,
        text: &[&str],
        ints: &[i64],
    ) -> Result<u64, StoreError> {
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for t in text {
            query = query.bind(*t);
        }
        for i in ints {
            query = query.bind(*i);
        }
        let done = query.execute(&self.pool).await?;
        Ok(DB::rows_affected(&done))
    }

    async fn blob_row(&self, id: &str) -> Result<Option<BlobRow>, StoreError> {
        let row = sqlx::query(
            "SELECT id, size, owner, media_type, created_at, cached FROM blobs WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| BlobRow {
            id: r.get(0),
            size: to_u64(r.get(1)),
            owner: r.get(2),
            media_type: r.get(3),
            created_at: to_u64(r.get(4)),
            cached: r.get::<i64, _>(5) != 0,
        }))
    }

    async fn owned_bytes(&self, owner: &str) -> Result<u64, StoreError> {
        let row = sqlx::query(
            "SELECT CAST(COALESCE(SUM(size), 0) AS BIGINT) FROM blobs \
             WHERE owner = $1 AND cached = 0",
        )
        .bind(owner)
        .fetch_one(&self.pool)
        .await?;
        Ok(to_u64(row.get(0)))
    }

    async fn has_ref(&self, blob: &str, beam: &str) -> Result<bool, StoreError> {
        let row = sqlx::query("SELECT blob FROM blob_refs WHERE blob = $1 AND beam = $2")
            .bind(blob)
            .bind(beam)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.is_some())
    }

    async fn ids(&self, sql: &'static str, cutoff: i64) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(cutoff)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }
}

macro_rules! on_db {
    ($store:expr, $db:ident => $body:expr) => {
        match &$store.backend {
            Backend::Sqlite($db) => $body,
            Backend::Postgres($db) => $body,
        }
    };
}

impl Store {
    /// Record a blob; whether it was new (a blob stored again keeps its first row).
    pub async fn insert_blob(&self, row: &BlobRow) -> Result<bool, StoreError> {
        let sql = "INSERT INTO blobs (id, owner, media_type, size, created_at, cached) \
                   VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO NOTHING";
        let ints = [
            to_i64(row.size),
            to_i64(row.created_at),
            i64::from(row.cached),
        ];
        let texts = [row.id.as_str(), row.owner.as_str(), row.media_type.as_str()];
        Ok(on_db!(self, db => db.exec(sql, &texts, &ints).await)? > 0)
    }

    /// A blob's row.
    pub async fn blob(&self, id: &str) -> Result<Option<BlobRow>, StoreError> {
        on_db!(self, db => db.blob_row(id).await)
    }

    /// The bytes of the blobs `owner` stores here (cached copies not counted).
    pub async fn owned_blob_bytes(&self, owner: &str) -> Result<u64, StoreError> {
        on_db!(self, db => db.owned_bytes(owner).await)
    }

    /// Record that the beam at `beam` (a path) attaches `blob`; the blob is referenced again.
    pub async fn add_blob_ref(&self, blob: &str, beam: &str) -> Result<(), StoreError> {
        let sql = "INSERT INTO blob_refs (blob, beam) VALUES ($1, $2) ON CONFLICT DO NOTHING";
        on_db!(self, db => db.exec(sql, &[blob, beam], &[]).await)?;
        let sql = "UPDATE blobs SET released_at = NULL WHERE id = $1";
        on_db!(self, db => db.exec(sql, &[blob], &[]).await)?;
        Ok(())
    }

    /// Whether the beam at `beam` is recorded as attaching `blob`.
    pub async fn blob_ref(&self, blob: &str, beam: &str) -> Result<bool, StoreError> {
        on_db!(self, db => db.has_ref(blob, beam).await)
    }

    /// Drop the `blob_refs` rows of beams neither stored nor cached here any more, and mark
    /// the blobs no row refers to as released at `now` (those not released already).
    pub async fn drop_stale_blob_refs(&self, now: u64) -> Result<u64, StoreError> {
        let sql = "DELETE FROM blob_refs WHERE \
                   NOT EXISTS (SELECT 1 FROM beams b WHERE b.path = blob_refs.beam) AND \
                   NOT EXISTS (SELECT 1 FROM beam_cache c WHERE c.path = blob_refs.beam)";
        let dropped = on_db!(self, db => db.exec(sql, &[], &[]).await)?;
        let sql = "UPDATE blobs SET released_at = $1 WHERE released_at IS NULL AND \
                   NOT EXISTS (SELECT 1 FROM blob_refs r WHERE r.blob = blobs.id)";
        on_db!(self, db => db.exec(sql, &[], &[to_i64(now)]).await)?;
        Ok(dropped)
    }

    /// The blobs to delete at a sweep: cached copies no beam here attaches, and own blobs
    /// released at or before `cutoff` (ms).
    pub async fn doomed_blobs(&self, cutoff: u64) -> Result<Vec<String>, StoreError> {
        let sql = "SELECT id FROM blobs WHERE released_at IS NOT NULL AND \
                   (cached = 1 OR released_at <= $1) ORDER BY id";
        on_db!(self, db => db.ids(sql, to_i64(cutoff)).await)
    }

    /// Forget a blob (its files are the caller's to remove).
    pub async fn delete_blob(&self, id: &str) -> Result<(), StoreError> {
        let sql = "DELETE FROM blobs WHERE id = $1";
        on_db!(self, db => db.exec(sql, &[id], &[]).await)?;
        Ok(())
    }
}
