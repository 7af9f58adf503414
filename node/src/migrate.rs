//! Moving a stopped node from SQLite to PostgreSQL: what `northstar admin migrate-storage --to
//! postgres://…` does.
//!
//! 1. The node's configuration (as `serve` reads it) names its data directory and its SQLite
//!    database; the target must be a `postgres://` URL.
//! 2. The data directory is claimed ([`DataDir::claim`]): while the node runs it holds the
//!    claim, and the migration refuses, naming it.
//! 3. The target must be empty ([`copy::check_target`]), before anything is written to it.
//! 4. Both databases are opened as the node opens them ([`Store::open`]): the source's schema
//!    brought up to date and checked to belong to this node, the target's schema made and the
//!    node's DID recorded in it, so the migrated database is this node's and no other's.
//! 5. Everything is copied in one transaction of the target, every log checked on the way
//!    ([`copy::copy`]): a log that fails stops the copy with its space and seq, and leaves the
//!    target with nothing in it but the schema, so the migration can be run again as it is.
//!
//! The source is never changed, except that an SQLite database from before the node recorded
//! its DID gets that record, as it would at the node's next start.

use std::path::PathBuf;

use northstar_protocol::{Did, KeyFileError, Keypair};

use crate::NODE_KEY_FILE;
use crate::config::{Config, ConfigError};
use crate::datadir::{DataDir, DataDirError};
use crate::store::copy::{self, Copied, CopyError, Progress};
use crate::store::{Storage, Store, StoreError, redact};

/// What the lock file says of a migration while it holds the data directory.
const CLAIMED_BY: &str = "nothing (northstar admin migrate-storage)";

/// Why a migration did not happen.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    /// The configuration is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// `--to` is not a PostgreSQL URL.
    #[error(
        "--to must name a PostgreSQL database, postgres://USER:PASSWORD@HOST:PORT/DATABASE; \
         got {given}"
    )]
    NotPostgres {
        /// What was given, as far as it may be shown: a URL that does not parse may hold a
        /// password where none is expected.
        given: String,
    },
    /// The node's storage is PostgreSQL already.
    #[error(
        "this node's storage_url names PostgreSQL already ({storage}); migrate-storage copies a \
         node's SQLite database: unset storage_url (or NORTHSTAR_STORAGE_URL) to name the SQLite \
         one"
    )]
    NotSqlite {
        /// The configured storage.
        storage: Storage,
    },
    /// There is no data directory.
    #[error("no data directory at {dir}: pass the node's --data-dir (or its --config)")]
    NoDataDir {
        /// The directory.
        dir: PathBuf,
    },
    /// The node is running.
    #[error(
        "the node is running on {dir} ({holder}): stop it first; migrate-storage copies a \
         stopped node's data"
    )]
    NodeRunning {
        /// The data directory.
        dir: PathBuf,
        /// What the running node wrote about itself.
        holder: String,
    },
    /// The data directory could not be claimed for another reason.
    #[error(transparent)]
    DataDir(DataDirError),
    /// The data directory has no node key.
    #[error("no node key at {path}: is {dir} a node's data directory?")]
    NoNodeKey {
        /// Where the key should be.
        path: PathBuf,
        /// The data directory.
        dir: PathBuf,
    },
    /// The node key could not be read.
    #[error(transparent)]
    Key(#[from] KeyFileError),
    /// There is no SQLite database to copy.
    #[error("no SQLite database at {path}: this node has no data to migrate")]
    NoDatabase {
        /// The file.
        path: PathBuf,
    },
    /// The source database could not be opened.
    #[error("cannot open the node's SQLite database")]
    Source(#[source] StoreError),
    /// The target database could not be opened.
    #[error("cannot open the target database")]
    Target(#[source] StoreError),
    /// The copy failed or was refused; the target holds no data.
    #[error(transparent)]
    Copy(#[from] CopyError),
}

/// What a migration did.
#[derive(Debug, Clone)]
pub struct Migrated {
    /// The node's DID, now recorded in the target.
    pub node: Did,
    /// The database copied from.
    pub source: Storage,
    /// The target's URL, password hidden.
    pub target: String,
    /// The rows copied, by table.
    pub copied: Copied,
}

/// What a migration tells as it goes.
#[derive(Debug, Clone, Copy)]
pub enum Step<'a> {
    /// Both ends are known, the node is stopped and the target is empty.
    Start {
        /// The node.
        node: &'a Did,
        /// The source.
        source: &'a Storage,
        /// The target's URL, password hidden.
        target: &'a str,
    },
    /// The copy moved on.
    Copy(Progress<'a>),
}

/// Copy the data of the stopped node that `config` describes into the empty PostgreSQL
/// database at `to`, checking every log; `step` hears how it goes.
pub async fn migrate_storage(
    config: &Config,
    to: &str,
    step: &mut dyn FnMut(Step<'_>),
) -> Result<Migrated, MigrateError> {
    let target_storage = match Storage::from_url(to, &config.data_dir) {
        Ok(storage @ Storage::Postgres { .. })
            if to.starts_with("postgres://") || to.starts_with("postgresql://") =>
        {
            storage
        }
        _ => {
            let given = if to.trim().is_empty() {
                "nothing".to_owned()
            } else if to.contains("://") {
                redact(to)
            } else {
                // Without `scheme://`, a password cannot be told from the rest: not shown.
                "a value that is not such a URL".to_owned()
            };
            return Err(MigrateError::NotPostgres { given });
        }
    };
    let source = config.storage()?;
    let Storage::Sqlite { path } = &source else {
        return Err(MigrateError::NotSqlite { storage: source });
    };
    let dir = &config.data_dir;
    if !dir.is_dir() {
        return Err(MigrateError::NoDataDir { dir: dir.clone() });
    }
    // Held until the copy is done: no node can start on the directory meanwhile.
    let claim = DataDir::claim(dir, CLAIMED_BY).map_err(|e| match e {
        DataDirError::InUse { dir, holder } => MigrateError::NodeRunning { dir, holder },
        other => MigrateError::DataDir(other),
    })?;
    let key_path = dir.join(NODE_KEY_FILE);
    if !key_path.is_file() {
        return Err(MigrateError::NoNodeKey {
            path: key_path,
            dir: dir.clone(),
        });
    }
    let key = Keypair::load(&key_path)?;
    if !path.is_file() {
        return Err(MigrateError::NoDatabase { path: path.clone() });
    }
    let target = redact(to);
    copy::check_target(to).await?;
    step(Step::Start {
        node: key.did(),
        source: &source,
        target: &target,
    });
    let node = key.did().as_str();
    let from = Store::open(&source, node)
        .await
        .map_err(MigrateError::Source)?;
    let into = match Store::open(&target_storage, node).await {
        Ok(store) => store,
        Err(e) => {
            from.close().await;
            return Err(MigrateError::Target(e));
        }
    };
    let copied = copy::copy(&from, &into, &mut |p| step(Step::Copy(p))).await;
    from.close().await;
    into.close().await;
    drop(claim);
    Ok(Migrated {
        node: key.did().clone(),
        source,
        target,
        copied: copied?,
    })
}
