//! The PostgreSQL backend: a pool of connections to a database on a server, named by a
//! `postgres://` URL. The only file that names PostgreSQL's driver types.
//!
//! Durability is the server's: `synchronous_commit` is left at its default (`on`), so a
//! commit returns once the server has flushed its WAL, as SQLite's `synchronous=FULL` does.

use std::borrow::Cow;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgConnection, PgPoolOptions, PgQueryResult};
use sqlx::{AssertSqlSafe, Connection, Postgres};

use super::location::{redact, with_database};
use super::queries::{Dialect, Sql};
use super::{Storage, StoreError};

/// Connections for concurrent reads and the writer's transactions; far below a default
/// server's 100.
const POOL_CONNECTIONS: u32 = 16;

/// How long connecting may take before the server counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// SQLSTATEs of a refused login: a wrong password or unknown user (`28P01`), or no
/// `pg_hba.conf` line letting this user in from here (`28000`).
const LOGIN_REFUSED: [&str; 2] = ["28P01", "28000"];

/// SQLSTATE of a connection to a database that does not exist.
const NO_SUCH_DATABASE: &str = "3D000";

/// The shared SQL on a PostgreSQL pool.
pub(super) type Db = Sql<Postgres>;

impl Dialect for Postgres {
    // The extended protocol takes one statement per query that binds values.
    const SCRIPTS: bool = false;

    fn storable(text: &str) -> Cow<'_, str> {
        if text.contains('\0') {
            Cow::Owned(text.replace('\0', "\u{FFFD}"))
        } else {
            Cow::Borrowed(text)
        }
    }

    fn rows_affected(done: &PgQueryResult) -> u64 {
        done.rows_affected()
    }
}

/// Whether `url` is a PostgreSQL URL the driver can use; if not, why.
pub(super) fn check_url(url: &str) -> Result<(), String> {
    PgConnectOptions::from_str(url)
        .map(drop)
        .map_err(|e| e.to_string())
}

/// The advisory lock a node holds on its database while it runs: one node process per
/// database, as the data directory's lock gives one per SQLite file. The number is fixed so
/// every northstar process asks for the same lock.
const NODE_LOCK: i64 = 0x6e6f_7274_6873_7461; // "northsta"

/// A node's hold on its database: a connection of its own that holds [`NODE_LOCK`]. The server
/// releases the lock when the connection ends, so a node that crashed holds nothing.
pub(super) struct Claim(tokio::sync::Mutex<Option<PgConnection>>);

impl std::fmt::Debug for Claim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Claim")
    }
}

impl Claim {
    /// Take the lock over a new connection, or say that another process holds it.
    async fn take(options: &PgConnectOptions, target: &str) -> Result<Self, StoreError> {
        let mut conn = PgConnection::connect_with(options)
            .await
            .map_err(|e| connect_error(target.to_owned(), e))?;
        let taken: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(NODE_LOCK)
            .fetch_one(&mut conn)
            .await?;
        if !taken {
            // Goodbye to a server that refused us; its answer changes nothing.
            drop(conn.close().await);
            return Err(StoreError::InUse {
                target: target.to_owned(),
            });
        }
        Ok(Self(tokio::sync::Mutex::new(Some(conn))))
    }

    /// Let the lock go (closing its connection); another node may then open the database.
    pub(super) async fn release(&self) {
        if let Some(conn) = self.0.lock().await.take() {
            // Closing releases the lock; if the goodbye fails, the server ends the session.
            drop(conn.close().await);
        }
    }
}

/// Connect to the database at `url`, take the node's lock on it and bring its schema up to
/// date.
pub(super) async fn open(url: &str) -> Result<(Db, Claim), StoreError> {
    let target = redact(url);
    let options = PgConnectOptions::from_str(url).map_err(|source| StoreError::Open {
        path: target.clone(),
        source,
    })?;
    // One connection first, to say why connecting fails: a pool retries a refused
    // connection until its timeout and then reports only that it timed out.
    let probe = tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect_with(&options)).await;
    match probe {
        Err(_) => {
            return Err(StoreError::Unreachable {
                target,
                source: sqlx::Error::Io(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no answer in {} s", CONNECT_TIMEOUT.as_secs()),
                )),
            });
        }
        Ok(Err(e)) => return Err(connect_error(target, e)),
        // The probe has done its job; a failure to say goodbye changes nothing.
        Ok(Ok(probe)) => drop(probe.close().await),
    }
    let claim = Claim::take(&options, &target).await?;
    let pool = match PgPoolOptions::new()
        .max_connections(POOL_CONNECTIONS)
        .acquire_timeout(CONNECT_TIMEOUT)
        .connect_with(options)
        .await
    {
        Ok(pool) => pool,
        Err(e) => {
            claim.release().await;
            return Err(connect_error(target.clone(), e));
        }
    };
    if let Err(e) = sqlx::migrate!("./migrations/postgres").run(&pool).await {
        pool.close().await;
        claim.release().await;
        return Err(StoreError::from_migrate(&target, e));
    }
    if let Err(e) = warn_if_not_durable(&pool, &target).await {
        pool.close().await;
        claim.release().await;
        return Err(e);
    }
    let writer = pool.clone();
    Ok((Sql { pool, writer }, claim))
}

/// Say so if the server acknowledges commits before they are on disk: the node would then
/// acknowledge writes a crash of the server can lose. Left to its operator, who may have
/// reasons (a replica elsewhere), rather than overridden.
async fn warn_if_not_durable(pool: &sqlx::PgPool, target: &str) -> Result<(), StoreError> {
    let setting: String = sqlx::query_scalar("SELECT current_setting('synchronous_commit')")
        .fetch_one(pool)
        .await?;
    if setting == "off" {
        tracing::warn!(
            database = %target,
            synchronous_commit = %setting,
            "the database server acknowledges commits before they are durable"
        );
    }
    Ok(())
}

/// The error for a failed connection to `target`, by what the server or the network said.
fn connect_error(target: String, source: sqlx::Error) -> StoreError {
    let code = source
        .as_database_error()
        .and_then(|e| e.code())
        .map(Cow::into_owned);
    match code.as_deref() {
        Some(code) if LOGIN_REFUSED.contains(&code) => StoreError::LoginRefused { target, source },
        Some(NO_SUCH_DATABASE) => StoreError::NoDatabase { target, source },
        _ if matches!(source, sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut) => {
            StoreError::Unreachable { target, source }
        }
        _ => StoreError::Open {
            path: target,
            source,
        },
    }
}

/// A fresh, empty database on a PostgreSQL server, dropped (with any connection still open to
/// it) when this value is dropped. For tests: each gets a database of its own, so they run in
/// parallel on one server.
pub struct TestDatabase {
    server: String,
    name: String,
    url: String,
}

impl TestDatabase {
    /// Create a database with a new name on the server `server_url` names (a URL of any
    /// database there, whose user may `CREATE DATABASE`).
    pub async fn create(server_url: &str) -> Result<Self, StoreError> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let name = format!(
            "northstar_test_{}_{nanos:x}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let mut admin = PgConnection::connect(server_url)
            .await
            .map_err(|e| connect_error(redact(server_url), e))?;
        // A linguistic collation where the server has ICU, as most production servers sort
        // text by a language's rules rather than by bytes: the tests then show that the
        // schema's bytewise columns do not depend on it.
        let icu = format!(
            "CREATE DATABASE \"{name}\" TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en'"
        );
        if sqlx::raw_sql(AssertSqlSafe(icu))
            .execute(&mut admin)
            .await
            .is_err()
        {
            sqlx::raw_sql(AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
                .execute(&mut admin)
                .await?;
        }
        drop(admin.close().await);
        Ok(Self {
            url: with_database(server_url, &name),
            server: server_url.to_owned(),
            name,
        })
    }

    /// The database's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The database as a node's storage.
    pub fn storage(&self) -> Storage {
        Storage::Postgres {
            url: self.url.clone(),
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let server = self.server.clone();
        let sql = format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name);
        // Drop runs inside the test's runtime, which cannot block on a future: a thread with a
        // runtime of its own does the work, and this waits for it.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async {
                let mut admin = PgConnection::connect(&server).await?;
                sqlx::raw_sql(AssertSqlSafe(sql))
                    .execute(&mut admin)
                    .await?;
                admin.close().await?;
                Ok::<_, sqlx::Error>(())
            })?;
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
        })
        .join();
        match dropped {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("cannot drop test database {}: {e}", self.name),
            Err(_) => eprintln!(
                "cannot drop test database {}: the thread panicked",
                self.name
            ),
        }
    }
}
