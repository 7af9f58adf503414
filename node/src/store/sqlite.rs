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

use super::StoreError;
use super::queries::{Dialect, Sql};

/// Connections for concurrent reads (the writer takes one of them per batch).
const POOL_CONNECTIONS: u32 = 8;

/// How long a query waits for SQLite's write lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// The shared SQL on an SQLite pool.
pub(super) type Db = Sql<Sqlite>;

impl Dialect for Sqlite {
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
        .busy_timeout(BUSY_TIMEOUT);
    let pool = SqlitePoolOptions::new()
        .max_connections(POOL_CONNECTIONS)
        .connect_with(options)
        .await
        .map_err(|source| StoreError::Open {
            path: target.clone(),
            source,
        })?;
    if let Err(e) = sqlx::migrate!("./migrations/sqlite").run(&pool).await {
        pool.close().await;
        return Err(StoreError::from_migrate(&target, e));
    }
    Ok(Sql { pool })
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
