//! The SQLite backend: an embedded file in WAL mode with `synchronous=FULL`, private to its
//! owner. The only file that names SQLite's driver types.

use std::borrow::Cow;
use std::path::Path;
use std::time::Duration;

use sqlx::Sqlite;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteQueryResult,
    SqliteSynchronous,
};

use tokio_util::task::AbortOnDropHandle;

use super::StoreError;
use super::queries::{Dialect, Sql};

/// Connections for concurrent reads (the writer takes one of them per batch).
const POOL_CONNECTIONS: u32 = 8;

/// The page cache of the writer's connection, KiB: the tables' and indexes' hot pages of a
/// busy node, kept between commits (SQLite's default is 2 MiB per connection).
const WRITER_CACHE_KIB: u32 = 32 * 1024;

/// The WAL's size in pages at which the writer's own commit checkpoints it: a safety net for
/// when the checkpointer falls behind (64 MiB). SQLite's default of 1,000 pages put a
/// checkpoint, with its copies and its fsync of the database file, inside about every third
/// commit of a busy node.
const WRITER_AUTOCHECKPOINT_PAGES: u32 = 16 * 1024;

/// How often the checkpointer copies committed pages from the WAL into the database file.
/// Each checkpoint ends with an fsync of the database file, which a commit's fsync of the WAL
/// waits behind, so short intervals keep that wait short; but a page rewritten within one
/// interval is copied once, so longer ones write less. With beams appended (few pages per
/// post), at 64 authors, seven runs alternated, medians: 50 ms wrote 7.7 pages per post at
/// 3,330 acks/s with an ack p99 of 36 ms; 200 ms 6.3 pages at 3,640/s, p99 35 ms (500 ms, three
/// runs: 6.1 pages, p99 38 ms). With beams keyed by path, 50 ms had the better p99.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(200);

/// How long a query waits for SQLite's write lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// The shared SQL on an SQLite pool.
pub(super) type Db = Sql<Sqlite>;

impl Dialect for Sqlite {
    // The driver runs each statement of a query in turn on its worker thread, binding the values in order.
    const SCRIPTS: bool = true;

    fn storable(text: &str) -> Cow<'_, str> {
        Cow::Borrowed(text)
    }

    fn rows_affected(done: &SqliteQueryResult) -> u64 {
        done.rows_affected()
    }
}

/// Open (creating if needed) the database at `path` and bring its schema up to date.
pub(super) async fn open(path: &Path) -> Result<Db, StoreError> {
    let target = path.display().to_string();
    make_private(path).map_err(|source| StoreError::Open {
        path: target.clone(),
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
        // After a checkpoint lets the WAL start over, SQLite cuts the file back to this size
        // (64 MiB): a burst does not leave a large WAL behind it.
        .pragma("journal_size_limit", (64 * 1024 * 1024).to_string())
        .busy_timeout(BUSY_TIMEOUT);
    let pool = SqlitePoolOptions::new()
        .max_connections(POOL_CONNECTIONS)
        .connect_with(options.clone())
        .await
        .map_err(|source| StoreError::Open {
            path: target.clone(),
            source,
        })?;
    if let Err(e) = sqlx::migrate!("./migrations/sqlite").run(&pool).await {
        pool.close().await;
        return Err(StoreError::from_migrate(&target, e));
    }
    // Opened after the migrations, so its schema is the final one. One connection, never
    // closed for being idle or old, nor pinged before each commit: its cache is the point.
    let writer = SqlitePoolOptions::new()
        .max_connections(1)
        .min_connections(1)
        .idle_timeout(None)
        .max_lifetime(None)
        .test_before_acquire(false)
        .connect_with(
            options
                .pragma("cache_size", format!("-{WRITER_CACHE_KIB}"))
                .pragma(
                    "wal_autocheckpoint",
                    WRITER_AUTOCHECKPOINT_PAGES.to_string(),
                ),
        )
        .await;
    let writer = match writer {
        Ok(writer) => writer,
        Err(source) => {
            pool.close().await;
            return Err(StoreError::Open {
                path: target,
                source,
            });
        }
    };
    Ok(Sql { pool, writer })
}

/// A task that checkpoints the WAL every [`CHECKPOINT_EVERY`] on a connection of `pool`, so
/// the writer's commits append to the WAL and wait for its fsync only. A passive checkpoint
/// copies what no reader still needs and waits for no one; the writer restarts the WAL from
/// its start once a checkpoint has copied all of it.
pub(super) fn spawn_checkpointer(pool: sqlx::SqlitePool) -> AbortOnDropHandle<()> {
    AbortOnDropHandle::new(tokio::spawn(async move {
        let mut tick = tokio::time::interval(CHECKPOINT_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if pool.is_closed() {
                return;
            }
            if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
                .execute(&pool)
                .await
            {
                // The writer's own checkpoint at WRITER_AUTOCHECKPOINT_PAGES still bounds the
                // WAL; the next tick tries again.
                tracing::warn!(error = %crate::report::Causes(&e), "WAL checkpoint failed");
            }
        }
    }))
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

/// Copy the SQLite database at `path` into the new file `target` as one consistent snapshot
/// (SQLite's `VACUUM INTO`): safe while a node writes to it, since it reads in one transaction
/// of its own. `target` must not exist; it is made with mode 0600, as the logs in it are
/// private. The copy is checked (`PRAGMA integrity_check`) and its events counted; on any
/// failure no file is left behind.
pub async fn backup(path: &Path, target: &Path) -> Result<u64, StoreError> {
    use sqlx::{ConnectOptions, Connection, Row};
    let open_error = |at: &Path, source: sqlx::Error| StoreError::Open {
        path: at.display().to_string(),
        source,
    };
    if !path.exists() {
        return Err(open_error(
            path,
            sqlx::Error::Io(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no database here: is --data-dir (or storage_url) the node's?",
            )),
        ));
    }
    let mut create = std::fs::OpenOptions::new();
    create.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut create, 0o600);
    create
        .open(target)
        .map_err(|e| open_error(target, sqlx::Error::Io(e)))?;
    let copied = async {
        let mut source = SqliteConnectOptions::new()
            .filename(path)
            .read_only(true)
            .connect()
            .await
            .map_err(|e| open_error(path, e))?;
        let into = target.to_string_lossy().into_owned();
        sqlx::query("VACUUM INTO ?1")
            .bind(into)
            .execute(&mut source)
            .await?;
        source.close().await?;
        let mut copy = SqliteConnectOptions::new()
            .filename(target)
            .read_only(true)
            .connect()
            .await
            .map_err(|e| open_error(target, e))?;
        let check: String = sqlx::query("PRAGMA integrity_check")
            .fetch_one(&mut copy)
            .await?
            .get(0);
        if check != "ok" {
            return Err(StoreError::Corrupt {
                table: "backup",
                reason: format!("the copy fails SQLite's integrity check: {check}"),
            });
        }
        let events: i64 = sqlx::query("SELECT count(*) FROM events")
            .fetch_one(&mut copy)
            .await?
            .get(0);
        copy.close().await?;
        Ok(u64::try_from(events).unwrap_or(0))
    }
    .await;
    if copied.is_err() {
        let _ = std::fs::remove_file(target);
    }
    copied
}
