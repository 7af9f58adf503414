//! The client-side commands of `northstar`: keys and DIDs. They use the SDK, never the node's
//! internals, so what they do is what any app can do.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use northstar_sdk::protocol::did::ED25519_MULTICODEC;
use northstar_sdk::{Did, keystore};
use serde_json::json;

/// Northstar: a self-hosted, federated WebSocket node with did:key identity.
#[derive(Debug, Parser)]
#[command(name = "northstar", version, about)]
pub struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

/// Flags every command accepts, before or after the subcommand.
#[derive(Debug, Args)]
struct Global {
    /// Machine output: one JSON object per line.
    #[arg(long, global = true)]
    json: bool,
    /// The user's key file [default: $NORTHSTAR_KEY, else ~/.config/northstar/key.json].
    #[arg(long, global = true, value_name = "FILE")]
    key: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the node.
    Serve(crate::serve::ServeArgs),
    /// Create and inspect user keys.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Inspect DIDs.
    #[command(subcommand)]
    Did(DidCommand),
}

#[derive(Debug, Subcommand)]
enum KeyCommand {
    /// Generate a new key, save it (never overwriting) and print its DID.
    Generate {
        /// Where to write the key [default: --key, else $NORTHSTAR_KEY, else the config dir].
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Print the DID of a key file.
    Show {
        /// The key file [default: --key, else $NORTHSTAR_KEY, else the config dir].
        file: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum DidCommand {
    /// Print a DID's parts and public key; fails with the reason if the DID is malformed.
    Inspect {
        /// The DID, `did:key:z6Mk…`.
        did: String,
    },
}

/// Run one command.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let out = Output {
        json: cli.global.json,
    };
    match cli.command {
        Command::Serve(args) => crate::serve::run(args).await,
        Command::Key(KeyCommand::Generate { out: file }) => {
            let path = keystore::key_path(file.or(cli.global.key).as_deref())?;
            let pair = keystore::generate(&path)?;
            out.print(
                json!({"did": pair.did().as_str(), "path": path.display().to_string()}),
                || format!("{}\n(key written to {})", pair.did(), path.display()),
            )
        }
        Command::Key(KeyCommand::Show { file }) => {
            let path = keystore::key_path(file.or(cli.global.key).as_deref())?;
            let pair = keystore::load(&path)?;
            out.print(
                json!({"did": pair.did().as_str(), "path": path.display().to_string()}),
                || pair.did().to_string(),
            )
        }
        Command::Did(DidCommand::Inspect { did }) => {
            let parsed = Did::parse(&did).with_context(|| format!("invalid DID {did:?}"))?;
            inspect(&out, &parsed)
        }
    }
}

fn inspect(out: &Output, did: &Did) -> anyhow::Result<()> {
    let key_hex = hex::encode(did.public_key());
    let codec_hex = hex::encode(ED25519_MULTICODEC);
    out.print(
        json!({
            "did": did.as_str(),
            "method": "key",
            "method_specific_id": did.key_id(),
            "multibase": "base58btc",
            "multicodec": "ed25519-pub",
            "multicodec_hex": codec_hex,
            "public_key_hex": key_hex,
        }),
        || {
            format!(
                "did:            {did}\n\
                 method:         key\n\
                 multibase:      base58btc (z)\n\
                 multicodec:     ed25519-pub (0x{codec_hex})\n\
                 public key:     {key_hex}"
            )
        },
    )
}

/// Prints either JSON (one object per line) or text for people.
struct Output {
    json: bool,
}

impl Output {
    fn print(
        &self,
        value: serde_json::Value,
        human: impl FnOnce() -> String,
    ) -> anyhow::Result<()> {
        let mut stdout = std::io::stdout().lock();
        if self.json {
            writeln!(stdout, "{value}")?;
        } else {
            writeln!(stdout, "{}", human())?;
        }
        Ok(())
    }
}
