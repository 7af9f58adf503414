//! Copying a node's SQLite database into an empty PostgreSQL database, checking every log on
//! the way: what `northstar admin migrate-storage` does once the node is stopped (see
//! [`crate::migrate`]).
//!
//! - [`check_target`] looks at the target before anything is written to it: it must hold no
//!   table but this schema's, and those empty.
//! - [`copy`] copies every table in **one** transaction of the target. Each space's log is read
//!   in order and goes through the protocol's chain check ([`Chain`](northstar_protocol::chain::Chain)): seq 1 is the genesis,
//!   which names the sequencer every event must verify under; each event has the next seq,
//!   links to the one before (`prev`) and carries valid signatures; the stored id is the
//!   event's; the space's head is its last event. A log that fails stops the copy with the
//!   space, the seq and why, and the transaction is rolled back: the target is left as
//!   [`check_target`] accepts it, so the copy can simply be run again once the source is fixed.
//!
//! Rows are copied as they are; the schema (`migrations/postgres`) is the target's own, made by
//! [`Store::open`] before the copy, which also records the node's DID in it.

use std::borrow::Cow;
use std::time::Duration;

use futures_util::TryStreamExt;
use sqlx::postgres::PgConnection;
use sqlx::{AssertSqlSafe, Connection as _, Postgres, QueryBuilder, Row as _, Transaction};

use super::log_check::LogCheck;
use super::queries::Dialect;
use super::{Backend, Store, StoreError, redact};

/// Events read from the source per query, and per progress step of a long log.
const EVENTS_PER_PAGE: u32 = 1_000;

/// Rows per multi-row insert: far below PostgreSQL's 65,535 bound values.
const ROWS_PER_INSERT: usize = 500;

/// A log longer than this reports its progress part-way.
const LONG_LOG: u64 = 10 * EVENTS_PER_PAGE as u64;

/// How long connecting to the target may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// SQLSTATE of a wrong password or an unknown user.
const LOGIN_REFUSED: &str = "28P01";

/// SQLSTATE of a login no `pg_hba.conf` line lets in from here.
const NO_LOGIN_RULE: &str = "28000";

/// SQLSTATE of a connection to a database that does not exist.
const NO_SUCH_DATABASE: &str = "3D000";

/// Why a copy did not happen or stopped.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// Nothing answered at the target's address.
    #[error(
        "cannot reach the database server of {target}: is PostgreSQL running there, and are the \
         host and port right?"
    )]
    Unreachable {
        /// The URL, password hidden.
        target: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The server refused the user name or password.
    #[error(
        "the database server refused the login of {target}: check the user name and password \
         in --to"
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
        "the database named in {target} does not exist: create it first, empty \
         (createdb -O USER NAME)"
    )]
    NoDatabase {
        /// The URL, password hidden.
        target: String,
        /// The server's reason.
        #[source]
        source: sqlx::Error,
    },
    /// The target refused the connection or could not be read.
    #[error("cannot connect to the target database {target}")]
    Connect {
        /// The URL, password hidden.
        target: String,
        /// The cause.
        #[source]
        source: sqlx::Error,
    },
    /// The target holds something already.
    #[error(
        "the target database {target} is not empty: it holds {found}. migrate-storage copies \
         only into an empty database: give it a new one (CREATE DATABASE …), or drop and \
         recreate this one if what it holds is not needed"
    )]
    NotEmpty {
        /// The URL, password hidden.
        target: String,
        /// What is there: tables and their rows.
        found: String,
    },
    /// A table of the node's schema that the copy does not know: copying without it would
    /// lose its rows.
    #[error(
        "the {side} database has table {table}, which migrate-storage does not know how to copy: \
         this binary's copy is behind its schema (a bug); nothing was copied"
    )]
    UnknownTable {
        /// `source` or `target`.
        side: &'static str,
        /// The table.
        table: String,
    },
    /// The copy runs from an SQLite store into a PostgreSQL store only.
    #[error("the copy goes from an SQLite database to a PostgreSQL one")]
    WrongBackends,
    /// A space's log fails the check; nothing was copied.
    #[error("the log of {space} fails at seq {seq}: {reason}")]
    BadLog {
        /// The space.
        space: String,
        /// The first seq that fails (0: the space row itself).
        seq: u64,
        /// Why.
        reason: String,
    },
    /// The rows copied do not add up (a bug, or rows the copy cannot place); nothing was kept.
    #[error(
        "{copied} rows of {table} were copied, but the source holds {source_rows} and the target \
         {target}; nothing was kept"
    )]
    Count {
        /// The table.
        table: &'static str,
        /// Rows copied.
        copied: u64,
        /// Rows in the source.
        source_rows: u64,
        /// Rows in the target.
        target: u64,
    },
    /// A read or write failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for CopyError {
    fn from(e: sqlx::Error) -> Self {
        CopyError::Store(StoreError::Query(e))
    }
}

/// What the copy reports as it goes.
#[derive(Debug, Clone, Copy)]
pub enum Progress<'a> {
    /// A space's log was checked and copied (`done` of `of` spaces).
    Space {
        /// The space id.
        space: &'a str,
        /// Its events.
        events: u64,
        /// Spaces done so far, this one included.
        done: usize,
        /// Spaces in all.
        of: usize,
    },
    /// A long log, part-way: `events` checked and copied so far.
    Events {
        /// The space id.
        space: &'a str,
        /// Events so far.
        events: u64,
    },
    /// A table was copied.
    Table {
        /// The table.
        table: &'a str,
        /// Its rows.
        rows: u64,
    },
}

/// What was copied: every table with its rows, in the order copied.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Copied {
    /// `(table, rows)`.
    pub tables: Vec<(&'static str, u64)>,
}

impl Copied {
    /// The rows copied into `table`.
    pub fn rows(&self, table: &str) -> u64 {
        self.tables
            .iter()
            .find(|(t, _)| *t == table)
            .map_or(0, |(_, n)| *n)
    }
}

/// A column's type, as both schemas store it.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Text,
    NullableText,
    Int,
    NullableInt,
}

/// A table copied row for row.
struct Table {
    name: &'static str,
    columns: &'static [(&'static str, Kind)],
    /// The order rows are read in (a key), so a copy is the same every time.
    order: &'static str,
}

use Kind::{Int, NullableInt, NullableText, Text};

const SPACES: Table = Table {
    name: "spaces",
    columns: &[
        ("id", Text),
        ("type", Text),
        ("owner", Text),
        ("name", Text),
        ("sequencer", Text),
        ("authority", Text),
        ("head_seq", Int),
        ("head_id", Text),
        ("created_at", Int),
        ("fanout", Int),
    ],
    order: "id",
};

const EVENTS: Table = Table {
    name: "events",
    columns: &[
        ("space", Text),
        ("seq", Int),
        ("id", Text),
        ("kind", Text),
        ("author", Text),
        ("json", Text),
    ],
    order: "space, seq",
};

/// The tables copied as they are, after the spaces and their logs, in an order that keeps
/// every reference valid.
const TABLES: [Table; 12] = [
    Table {
        name: "members",
        columns: &[
            ("space", Text),
            ("did", Text),
            ("state", Text),
            ("seq", Int),
            ("home", NullableText),
            ("authority", NullableText),
            ("capacity", NullableInt),
        ],
        order: "space, did",
    },
    Table {
        name: "forks",
        columns: &[
            ("space", Text),
            ("seq", Int),
            ("kept", Text),
            ("rival", Text),
            ("detected_at", Int),
        ],
        order: "space, seq, rival",
    },
    Table {
        name: "beams",
        columns: &[
            ("path", Text),
            ("id", Text),
            ("author", Text),
            ("json", Text),
            ("created_at", Int),
        ],
        order: "id",
    },
    Table {
        name: "beam_refs",
        columns: &[
            ("beam", Text),
            ("space", Text),
            ("seq", Int),
            ("author", NullableText),
            ("home", NullableText),
        ],
        order: "beam, space, seq",
    },
    Table {
        name: "beam_posts",
        columns: &[("path", Text), ("space", Text)],
        order: "path, space",
    },
    Table {
        name: "tombstones",
        columns: &[("beam", Text), ("author", Text), ("json", Text)],
        order: "beam",
    },
    Table {
        name: "beam_cache",
        columns: &[
            ("path", Text),
            ("id", Text),
            ("author", Text),
            ("json", Text),
        ],
        order: "path",
    },
    Table {
        name: "users",
        columns: &[
            ("did", Text),
            ("first_seen", NullableInt),
            ("last_seen", NullableInt),
            ("access", NullableText),
            ("banned_at", NullableInt),
        ],
        order: "did",
    },
    Table {
        name: "removed_spaces",
        columns: &[("id", Text), ("removed_at", Int)],
        order: "id",
    },
    Table {
        name: "edits",
        columns: &[
            ("id", Text),
            ("original", Text),
            ("author", Text),
            ("version", Int),
            ("beam", Text),
            ("drop_history", Int),
            ("json", Text),
        ],
        order: "id",
    },
    // The blobs' records; their files stay where they are, in the data directory.
    Table {
        name: "blobs",
        columns: &[
            ("id", Text),
            ("size", Int),
            ("owner", Text),
            ("media_type", Text),
            ("created_at", Int),
            ("cached", Int),
            ("released_at", NullableInt),
        ],
        order: "id",
    },
    Table {
        name: "blob_refs",
        columns: &[("blob", Text), ("beam", Text)],
        order: "blob, beam",
    },
];

/// The tables of the schema that hold no node data: the migrations' record, and the node's DID
/// (which [`Store::open`] writes and checks).
const BOOKKEEPING: [&str; 2] = ["_sqlx_migrations", "node_identity"];

fn data_tables() -> impl Iterator<Item = &'static Table> {
    [&SPACES, &EVENTS].into_iter().chain(TABLES.iter())
}

/// Whether `table` is one of the node's tables, copied or bookkeeping.
fn known(table: &str) -> bool {
    BOOKKEEPING.contains(&table) || data_tables().any(|t| t.name == table)
}

/// One value of a row on its way from the source to the target.
#[derive(Debug, Clone)]
pub(super) enum Value {
    Text(String),
    /// A NULL of a text column.
    Null,
    Int(i64),
    /// A NULL of an integer column: PostgreSQL takes a NULL only of the column's type.
    NullInt,
}

/// Check that the PostgreSQL database at `url` is empty: no table but this schema's (and
/// those with no rows; the migrations' record and a node DID may be there, so a copy that
/// failed can be run again). Connects on its own, before anything writes to the database.
pub async fn check_target(url: &str) -> Result<(), CopyError> {
    let target = redact(url);
    let connect = async {
        let mut conn = PgConnection::connect(url).await?;
        let found = target_contents(&mut conn).await;
        // A goodbye that fails changes nothing.
        drop(conn.close().await);
        found
    };
    let found = tokio::time::timeout(CONNECT_TIMEOUT, connect)
        .await
        .unwrap_or_else(|_| {
            Err(sqlx::Error::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no answer in {} s", CONNECT_TIMEOUT.as_secs()),
            )))
        })
        .map_err(|source| connect_error(target.clone(), source))?;
    if found.is_empty() {
        Ok(())
    } else {
        Err(CopyError::NotEmpty {
            target,
            found: found.join(", "),
        })
    }
}

/// The error for a failed connection to `target`, by what the network or the server said.
fn connect_error(target: String, source: sqlx::Error) -> CopyError {
    let code = source
        .as_database_error()
        .and_then(|e| e.code())
        .map(Cow::into_owned);
    match (source, code.as_deref()) {
        (sqlx::Error::Io(source), _) => CopyError::Unreachable { target, source },
        (source, Some(LOGIN_REFUSED | NO_LOGIN_RULE)) => CopyError::LoginRefused { target, source },
        (source, Some(NO_SUCH_DATABASE)) => CopyError::NoDatabase { target, source },
        (source, _) => CopyError::Connect { target, source },
    }
}

/// What keeps the database on `conn` from being an empty target, described for a person.
async fn target_contents(conn: &mut PgConnection) -> Result<Vec<String>, sqlx::Error> {
    let tables = sqlx::query(
        "SELECT table_schema, table_name FROM information_schema.tables \
         WHERE table_schema NOT IN ('pg_catalog', 'information_schema') \
         AND table_schema NOT LIKE 'pg\\_%' ORDER BY table_schema, table_name",
    )
    .fetch_all(&mut *conn)
    .await?;
    let mut found = Vec::new();
    for row in tables {
        let (schema, name): (String, String) = (row.get(0), row.get(1));
        let ours = schema == "public" && known(&name);
        if ours && BOOKKEEPING.contains(&name.as_str()) {
            continue;
        }
        let label = if schema == "public" {
            name.clone()
        } else {
            format!("{schema}.{name}")
        };
        // Counted up to a bound: enough to say what is there without reading all of it.
        let rows: i64 = sqlx::query(AssertSqlSafe(format!(
            "SELECT count(*) FROM (SELECT 1 FROM \"{}\".\"{}\" LIMIT 1001) AS t",
            schema.replace('"', "\"\""),
            name.replace('"', "\"\"")
        )))
        .fetch_one(&mut *conn)
        .await?
        .get(0);
        match (ours, rows) {
            (true, 0) => {}
            (_, 1001..) => found.push(format!("table {label} (over 1,000 rows)")),
            (_, 1) => found.push(format!("table {label} (1 row)")),
            (_, n) => found.push(format!("table {label} ({n} rows)")),
        }
    }
    Ok(found)
}

/// Copy everything in `source` (an SQLite store) into `target` (a PostgreSQL store whose
/// schema is made and which [`check_target`] found empty), in one transaction of the target,
/// checking every log; `progress` hears of each space and table as it is done.
pub async fn copy(
    source: &Store,
    target: &Store,
    progress: &mut dyn FnMut(Progress<'_>),
) -> Result<Copied, CopyError> {
    let (Backend::Sqlite(from), Backend::Postgres(to)) = (&source.backend, &target.backend) else {
        return Err(CopyError::WrongBackends);
    };
    let from = &from.pool;
    let mut tx = to.pool.begin().await?;
    // Nobody else writes these tables until the copy is committed or rolled back, and the
    // check that they are empty holds for the whole copy.
    let names: Vec<&str> = data_tables().map(|t| t.name).collect();
    sqlx::query(AssertSqlSafe(format!(
        "LOCK TABLE {} IN ACCESS EXCLUSIVE MODE",
        names.join(", ")
    )))
    .execute(&mut *tx)
    .await?;
    let found = target_contents(&mut tx).await?;
    if !found.is_empty() {
        return Err(CopyError::NotEmpty {
            target: "the target".into(),
            found: found.join(", "),
        });
    }
    check_schemas(from, &mut tx).await?;
    let mut copied = Copied::default();
    let mut spaces = Vec::new();
    let rows = copy_rows(from, &mut tx, &SPACES, |row| spaces.push(space_head(row))).await?;
    progress(Progress::Table {
        table: SPACES.name,
        rows,
    });
    copied.tables.push((SPACES.name, rows));
    let mut events = 0;
    for (done, space) in spaces.iter().enumerate() {
        let n = copy_log(from, &mut tx, space, progress).await?;
        events += n;
        progress(Progress::Space {
            space: &space.id,
            events: n,
            done: done + 1,
            of: spaces.len(),
        });
    }
    copied.tables.push((EVENTS.name, events));
    for table in &TABLES {
        let rows = copy_rows(from, &mut tx, table, |_| {}).await?;
        progress(Progress::Table {
            table: table.name,
            rows,
        });
        copied.tables.push((table.name, rows));
    }
    check_counts(from, &mut tx, &copied).await?;
    tx.commit().await?;
    Ok(copied)
}

/// Check that both databases hold only tables the copy knows, so nothing is left behind.
async fn check_schemas(
    from: &sqlx::SqlitePool,
    tx: &mut Transaction<'_, Postgres>,
) -> Result<(), CopyError> {
    let source_tables: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' \
         AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'",
    )
    .fetch_all(from)
    .await?;
    let target_tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::TEXT FROM information_schema.tables WHERE table_schema = 'public'",
    )
    .fetch_all(&mut **tx)
    .await?;
    for (side, tables) in [("source", source_tables), ("target", target_tables)] {
        if let Some(table) = tables.into_iter().find(|t| !known(t)) {
            return Err(CopyError::UnknownTable { side, table });
        }
    }
    Ok(())
}

/// Check that every table holds as many rows in the target as in the source, and as were
/// copied: no row was skipped on the way (an event of no space, say).
async fn check_counts(
    from: &sqlx::SqlitePool,
    tx: &mut Transaction<'_, Postgres>,
    copied: &Copied,
) -> Result<(), CopyError> {
    for &(table, rows) in &copied.tables {
        let count = format!("SELECT count(*) FROM {table}");
        let source: i64 = sqlx::query_scalar(AssertSqlSafe(count.clone()))
            .fetch_one(from)
            .await?;
        let target: i64 = sqlx::query_scalar(AssertSqlSafe(count))
            .fetch_one(&mut **tx)
            .await?;
        let (source, target) = (
            u64::try_from(source).unwrap_or(0),
            u64::try_from(target).unwrap_or(0),
        );
        if source != rows || target != rows {
            return Err(CopyError::Count {
                table,
                copied: rows,
                source_rows: source,
                target,
            });
        }
    }
    Ok(())
}

/// A space row, as far as checking its log needs.
pub(super) struct SpaceHead {
    pub(super) id: String,
    pub(super) sequencer: String,
    pub(super) head_seq: u64,
    pub(super) head_id: String,
}

/// Copy every row of `table`, showing each to `seen` on its way; returns how many.
async fn copy_rows(
    from: &sqlx::SqlitePool,
    tx: &mut Transaction<'_, Postgres>,
    table: &Table,
    mut seen: impl FnMut(&[Value]),
) -> Result<u64, CopyError> {
    let columns: Vec<&str> = table.columns.iter().map(|(c, _)| *c).collect();
    let select = format!(
        "SELECT {} FROM {} ORDER BY {}",
        columns.join(", "),
        table.name,
        table.order
    );
    let mut rows = sqlx::query(AssertSqlSafe(select)).fetch(from);
    let mut batch: Vec<Vec<Value>> = Vec::with_capacity(ROWS_PER_INSERT);
    let mut count = 0;
    while let Some(row) = rows.try_next().await? {
        let values = read_row(&row, table)?;
        seen(&values);
        batch.push(values);
        count += 1;
        if batch.len() == ROWS_PER_INSERT {
            insert(tx, table, &batch).await?;
            batch.clear();
        }
    }
    insert(tx, table, &batch).await?;
    Ok(count)
}

fn read_row(row: &sqlx::sqlite::SqliteRow, table: &Table) -> Result<Vec<Value>, CopyError> {
    table
        .columns
        .iter()
        .enumerate()
        .map(|(i, (column, kind))| {
            let value = match kind {
                Text => row.try_get::<String, _>(i).map(Value::Text),
                NullableText => row
                    .try_get::<Option<String>, _>(i)
                    .map(|v| v.map_or(Value::Null, Value::Text)),
                Int => row.try_get::<i64, _>(i).map(Value::Int),
                NullableInt => row
                    .try_get::<Option<i64>, _>(i)
                    .map(|v| v.map_or(Value::NullInt, Value::Int)),
            };
            value.map_err(|e| {
                CopyError::Store(StoreError::Corrupt {
                    table: table.name,
                    reason: format!("column {column}: {e}"),
                })
            })
        })
        .collect()
}

fn space_head(values: &[Value]) -> SpaceHead {
    let text = |i: usize| match values.get(i) {
        Some(Value::Text(s)) => s.clone(),
        _ => String::new(),
    };
    let int = |i: usize| match values.get(i) {
        Some(Value::Int(n)) => u64::try_from(*n).unwrap_or(0),
        _ => 0,
    };
    // The column order of SPACES.
    SpaceHead {
        id: text(0),
        sequencer: text(4),
        head_seq: int(6),
        head_id: text(7),
    }
}

async fn insert(
    tx: &mut Transaction<'_, Postgres>,
    table: &Table,
    rows: &[Vec<Value>],
) -> Result<(), CopyError> {
    if rows.is_empty() {
        return Ok(());
    }
    let columns: Vec<&str> = table.columns.iter().map(|(c, _)| *c).collect();
    let mut q = QueryBuilder::<Postgres>::new(format!(
        "INSERT INTO {} ({}) ",
        table.name,
        columns.join(", ")
    ));
    q.push_values(rows, |mut b, row| {
        for value in row {
            match value {
                Value::Text(s) => b.push_bind(storable(s)),
                Value::Null => b.push_bind(None::<String>),
                Value::NullInt => b.push_bind(None::<i64>),
                Value::Int(n) => b.push_bind(*n),
            };
        }
    });
    q.build().execute(&mut **tx).await?;
    Ok(())
}

/// Text as PostgreSQL can hold it, by the backend's own rule.
fn storable(text: &str) -> String {
    match <Postgres as Dialect>::storable(text) {
        Cow::Borrowed(s) => s.to_owned(),
        Cow::Owned(s) => s,
    }
}

/// Check and copy the log of `space`; returns its length.
async fn copy_log(
    from: &sqlx::SqlitePool,
    tx: &mut Transaction<'_, Postgres>,
    space: &SpaceHead,
    progress: &mut dyn FnMut(Progress<'_>),
) -> Result<u64, CopyError> {
    let mut check = LogCheck::new(space)?;
    loop {
        let rows = sqlx::query(
            "SELECT space, seq, id, kind, author, json FROM events \
             WHERE space = $1 AND seq > $2 ORDER BY seq LIMIT $3",
        )
        .bind(&space.id)
        .bind(i64::try_from(check.last).unwrap_or(i64::MAX))
        .bind(i64::from(EVENTS_PER_PAGE))
        .fetch_all(from)
        .await?;
        if rows.is_empty() {
            break;
        }
        let mut page = Vec::with_capacity(rows.len());
        for row in &rows {
            let values = read_row(row, &EVENTS)?;
            check.next(&values)?;
            page.push(values);
        }
        for chunk in page.chunks(ROWS_PER_INSERT) {
            insert(tx, &EVENTS, chunk).await?;
        }
        if space.head_seq >= LONG_LOG {
            progress(Progress::Events {
                space: &space.id,
                events: check.last,
            });
        }
    }
    check.finish()
}
