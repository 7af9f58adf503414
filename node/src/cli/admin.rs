//! `northstar admin …`: work on a node's data directory, with the node library itself rather
//! than through the node.
//!
//! - `admin migrate-storage --to postgres://…`: copy the node's SQLite data into an empty
//!   PostgreSQL database, checking every log (`northstar_node::migrate`). Progress goes to
//!   stderr; what to set afterwards to stdout.
//! - `admin backup FILE`: a consistent snapshot of the node's SQLite database, taken while the
//!   node runs (or not); JSON keys `file`, `database`, `events`.
//!
//! The others talk to the running node over its admin socket (`{data_dir}/admin.sock`,
//! `spec/protocol.md` §12), one request each (`channel`): `users`, `allow`, `deny`, `ban`,
//! `unban`, `remove-beam`, `remove-space`, `stats`. With `--json` each prints the node's result object.

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use northstar_node::config::{Config, Overrides};
use northstar_node::migrate::{Step, migrate_storage};
use northstar_node::store::Storage;
use northstar_node::store::copy::Progress;
use serde_json::json;

use super::Output;

mod channel;

#[derive(Debug, Subcommand)]
pub(super) enum AdminCommand {
    /// Copy a stopped node's SQLite data into an empty PostgreSQL database, checking every
    /// log's signatures and chain; then print the storage_url to set.
    MigrateStorage(MigrateStorageArgs),
    /// Write a consistent snapshot of the node's SQLite database to FILE, while the node runs
    /// or not; a node started on it (with the node's key) is the node as it was then.
    Backup(BackupArgs),
    /// List the node's users: DID, first and last authentication, allowed and banned state.
    Users(NodeDir),
    /// Allow a DID to register under the allow_list policy, from now on and after restarts.
    Allow(DidArgs),
    /// Take a DID off the allow-list (also one the config file allows); its sessions close.
    Deny(DidArgs),
    /// Ban a DID from the whole node: its sessions close, it cannot authenticate, and no
    /// federation submission it authored is accepted.
    Ban(DidArgs),
    /// Lift a node-wide ban.
    Unban(DidArgs),
    /// Remove a beam stored here, with a tombstone signed by this node that reaches every
    /// space that referred to it.
    RemoveBeam(BeamArgs),
    /// Remove a space from this node: its log, members and refs go, and it is neither
    /// created nor replicated here again (a replica of another node's space is dropped).
    RemoveSpace(SpaceArgs),
    /// What the node holds and serves: users, spaces, connections, uptime, version, database
    /// size.
    Stats(NodeDir),
}

/// Which node: the data directory (and config file) it was started with.
#[derive(Debug, Args)]
pub(super) struct NodeDir {
    /// The node's TOML config file, as given to `serve`.
    #[arg(long, value_name = "FILE")]
    pub(super) config: Option<PathBuf>,
    /// The node's data directory, as given to `serve`.
    #[arg(long, value_name = "DIR")]
    pub(super) data_dir: Option<PathBuf>,
}

/// A command about one DID.
#[derive(Debug, Args)]
pub(super) struct DidArgs {
    /// The DID, `did:key:z6Mk…`.
    pub(super) did: String,
    #[command(flatten)]
    pub(super) node: NodeDir,
}

/// Flags of `northstar admin remove-space`.
#[derive(Debug, Args)]
pub(super) struct SpaceArgs {
    /// The space's URI (`northstar://HOST/channel/…`) or id.
    pub(super) space: String,
    #[command(flatten)]
    pub(super) node: NodeDir,
}

/// Flags of `northstar admin remove-beam`.
#[derive(Debug, Args)]
pub(super) struct BeamArgs {
    /// The beam's URI (`northstar://HOST/beam/…`) or path (`beam/…`).
    pub(super) uri: String,
    #[command(flatten)]
    pub(super) node: NodeDir,
}

/// Flags of `northstar admin backup`.
#[derive(Debug, Args)]
pub(super) struct BackupArgs {
    /// The file to write; it must not exist.
    pub(super) file: PathBuf,
    /// The node's TOML config file, as given to `serve`.
    #[arg(long, value_name = "FILE")]
    pub(super) config: Option<PathBuf>,
    /// The node's data directory, as given to `serve`.
    #[arg(long, value_name = "DIR")]
    pub(super) data_dir: Option<PathBuf>,
}

/// Flags of `northstar admin migrate-storage`.
#[derive(Debug, Args)]
pub(super) struct MigrateStorageArgs {
    /// The empty PostgreSQL database to copy into, postgres://USER:PASSWORD@HOST:PORT/DATABASE.
    #[arg(long, value_name = "URL")]
    pub(super) to: String,
    /// The node's TOML config file, as given to `serve`.
    #[arg(long, value_name = "FILE")]
    pub(super) config: Option<PathBuf>,
    /// The node's data directory, as given to `serve`.
    #[arg(long, value_name = "DIR")]
    pub(super) data_dir: Option<PathBuf>,
}

pub(super) async fn run(command: AdminCommand, out: &Output) -> anyhow::Result<()> {
    match command {
        AdminCommand::MigrateStorage(args) => migrate(args, out).await,
        AdminCommand::Backup(args) => backup(args, out).await,
        AdminCommand::Users(node) => channel::users(&node, out).await,
        AdminCommand::Allow(args) => channel::allow(&args, true, out).await,
        AdminCommand::Deny(args) => channel::allow(&args, false, out).await,
        AdminCommand::Ban(args) => channel::ban(&args, true, out).await,
        AdminCommand::Unban(args) => channel::ban(&args, false, out).await,
        AdminCommand::RemoveBeam(args) => channel::remove_beam(&args, out).await,
        AdminCommand::RemoveSpace(args) => channel::remove_space(&args, out).await,
        AdminCommand::Stats(node) => channel::stats(&node, out).await,
    }
}

async fn backup(args: BackupArgs, out: &Output) -> anyhow::Result<()> {
    let overrides = Overrides {
        data_dir: args.data_dir,
        ..Overrides::default()
    };
    let config = Config::load(args.config.as_deref(), std::env::vars(), &overrides)?;
    let path = match config.storage()? {
        Storage::Sqlite { path } => path,
        Storage::Postgres { .. } => anyhow::bail!(
            "this node keeps its data in PostgreSQL: back it up with pg_dump (and keep a copy \
             of {})",
            config
                .data_dir
                .join(northstar_node::NODE_KEY_FILE)
                .display()
        ),
    };
    let events = northstar_node::store::backup_sqlite(&path, &args.file)
        .await
        .with_context(|| format!("cannot back up {}", path.display()))?;
    let key = config.data_dir.join(northstar_node::NODE_KEY_FILE);
    out.print(
        json!({
            "file": args.file.display().to_string(),
            "database": path.display().to_string(),
            "events": events,
        }),
        || {
            format!(
                "backed up {} to {} ({events} events, checked).\n\
                 To restore: put it as northstar.db in a data directory beside a copy of {}, \
                 and start the node there (northstar serve --data-dir DIR).",
                path.display(),
                args.file.display(),
                key.display()
            )
        },
    )
}

async fn migrate(args: MigrateStorageArgs, out: &Output) -> anyhow::Result<()> {
    let overrides = Overrides {
        data_dir: args.data_dir,
        ..Overrides::default()
    };
    let config = Config::load(args.config.as_deref(), std::env::vars(), &overrides)?;
    let mut stderr = std::io::stderr().lock();
    let mut step = |step: Step<'_>| {
        // Progress is a courtesy: a closed stderr must not stop the copy.
        let _ = match step {
            Step::Start {
                node,
                source,
                target,
            } => writeln!(
                stderr,
                "migrating node {node}\n  from {source}\n  to   PostgreSQL {target} (empty)"
            ),
            Step::Copy(Progress::Table { table, rows }) => {
                let noun = if rows == 1 { "row" } else { "rows" };
                writeln!(stderr, "{table}: {rows} {noun} copied")
            }
            Step::Copy(Progress::Space {
                space,
                events,
                done,
                of,
            }) => writeln!(
                stderr,
                "  [{done}/{of}] {space}: {events} events, signatures and chain checked, copied"
            ),
            Step::Copy(Progress::Events { space, events }) => {
                writeln!(stderr, "        {space}: {events} events so far")
            }
        };
    };
    let migrated = migrate_storage(&config, &args.to, &mut step).await?;
    let tables: serde_json::Map<String, serde_json::Value> = migrated
        .copied
        .tables
        .iter()
        .map(|(table, rows)| ((*table).to_owned(), json!(rows)))
        .collect();
    out.print(
        json!({
            "node": migrated.node.as_str(),
            "storage_url": migrated.target,
            "tables": tables,
        }),
        || {
            let hidden = if migrated.target.contains("***") {
                " (its password hidden: put it back in place of ***)"
            } else {
                ""
            };
            let spaces = migrated.copied.rows("spaces");
            let events = migrated.copied.rows("events");
            format!(
                "done: {spaces} {} and {events} {} copied, every log checked.\n\
                 To run the node on PostgreSQL, set in its config file{hidden}\n\n    \
                 storage_url = \"{}\"\n\n\
                 or the same URL in NORTHSTAR_STORAGE_URL. The SQLite database is left as it \
                 was.",
                if spaces == 1 { "space" } else { "spaces" },
                if events == 1 { "event" } else { "events" },
                migrated.target
            )
        },
    )
}
