//! The commands of `northstar` besides `serve`: keys, DIDs, and talking to a node about spaces
//! and beams. Those use the SDK, never the node's internals, so what they do is what any app can
//! do. The `admin` commands are the exception: they work on a node's data directory with the
//! node library, as `serve` does, or talk to the running node over its admin socket there.
//!
//! - [`space`]: `northstar space …`: create, join, leave, invite, list, members, events, tail.
//! - [`export`]: `northstar space export` and `space import`: a space's verified log to a file
//!   and back into any node, with a progress bar.
//! - [`beam`]: `northstar beam …`: post, get, delete.
//! - [`stream`]: `northstar stream …`: publish stdin as a live stream, watch one to stdout, info.
//! - [`admin`]: `northstar admin …`: migrate-storage, backup, and the operator's commands over
//!   the admin socket (users, allow, deny, ban, unban, remove-beam, stats).
//!
//! Output is text for people, or with `--json` one JSON object per line; the keys of the JSON
//! objects are a contract for scripts. Errors are one line on stderr and a non-zero exit.

mod admin;
mod beam;
mod blob;
mod export;
mod space;
mod stream;

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use northstar_sdk::auth::origin_of;
use northstar_sdk::keystore::KeystoreError;
use northstar_sdk::protocol::did::ED25519_MULTICODEC;
use northstar_sdk::protocol::keys::KeyFileError;
use northstar_sdk::{Client, Did, SdkError, Trust, keystore};
use serde_json::json;

/// The node the client commands talk to unless told otherwise.
const DEFAULT_NODE: &str = "ws://127.0.0.1:7700";

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
    /// The node to talk to [default: the CLI config file's `node`, else ws://127.0.0.1:7700].
    #[arg(
        long = "node",
        id = "node",
        global = true,
        value_name = "URL",
        env = "NORTHSTAR_NODE"
    )]
    node_given: Option<String>,
    /// A PEM file of CA certificates to trust on wss://, besides the system's roots (for a
    /// node whose certificate comes from a private CA).
    #[arg(long, global = true, value_name = "FILE", env = "NORTHSTAR_CA_FILE")]
    ca_file: Option<PathBuf>,
    /// The node, once the flag, the environment, the CLI config file and the default are
    /// weighed ([`Global::settle`]).
    #[arg(skip)]
    node: String,
}

/// The CLI's own config file: the default node and key, so a user need not pass `--node` and
/// `--key` to every command. TOML at `$NORTHSTAR_CLI_CONFIG`, else `cli.toml` in the user's
/// Northstar config directory (`~/.config/northstar/cli.toml` on Linux). Flags and the
/// `NORTHSTAR_NODE` / `NORTHSTAR_KEY` variables come first.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct CliFile {
    /// The node to talk to.
    node: Option<String>,
    /// The user's key file.
    key: Option<PathBuf>,
}

impl CliFile {
    /// The file's path: `$NORTHSTAR_CLI_CONFIG`, else the config directory's `cli.toml`.
    fn path() -> Option<PathBuf> {
        std::env::var_os("NORTHSTAR_CLI_CONFIG")
            .filter(|p| !p.is_empty())
            .map(PathBuf::from)
            .or_else(|| dirs::config_dir().map(|dir| dir.join("northstar").join("cli.toml")))
    }

    /// The file at `path`; empty if there is none.
    fn load(path: Option<&std::path::Path>) -> anyhow::Result<Self> {
        let Some(path) = path else {
            return Ok(Self::default());
        };
        match std::fs::read_to_string(path) {
            Ok(text) => toml::from_str(&text)
                .with_context(|| format!("invalid CLI config file {}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(anyhow::Error::new(e).context(format!("cannot read {}", path.display()))),
        }
    }
}

impl Global {
    /// Weigh the node and key: the flag or the environment, else `file`, else the default.
    fn settle(&mut self, file: CliFile) {
        self.node = self
            .node_given
            .clone()
            .or(file.node)
            .unwrap_or_else(|| DEFAULT_NODE.to_owned());
        let key_env = std::env::var_os(northstar_sdk::keystore::KEY_ENV).filter(|v| !v.is_empty());
        if self.key.is_none() && key_env.is_none() {
            self.key = file.key;
        }
    }
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
    /// Ask a node about itself.
    #[command(subcommand)]
    Node(NodeCommand),
    /// Create, join and read spaces.
    #[command(subcommand)]
    Space(space::SpaceCommand),
    /// Post, read and delete beams.
    #[command(subcommand)]
    Beam(beam::BeamCommand),
    /// Publish and watch live streams.
    #[command(subcommand)]
    Stream(stream::StreamCommand),
    /// Download blobs (files attached to beams), checked chunk by chunk.
    #[command(subcommand)]
    Blob(blob::BlobCommand),
    /// The operator's work on a node's data: move it to PostgreSQL (stopped), back it up.
    #[command(subcommand)]
    Admin(admin::AdminCommand),
    /// Print a shell completion script, e.g. `northstar completions bash >
    /// /etc/bash_completion.d/northstar`.
    Completions {
        /// The shell: bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
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

#[derive(Debug, Subcommand)]
enum NodeCommand {
    /// Print the node's DID, version, public URL, authority and limits.
    Info,
}

impl Cli {
    /// Whether `--json` was given: results, and a failure, are printed as JSON.
    pub fn json(&self) -> bool {
        self.global.json
    }
}

/// A failed command as JSON: `error` (the message and its causes, outermost first), and for a
/// refusal by the node `code` (the number on the wire) and `name` (e.g. `not_member`) when
/// the code has one.
pub fn error_json(err: &anyhow::Error) -> serde_json::Value {
    let mut object = json!({ "error": format!("{err:#}") });
    let refusal = err
        .chain()
        .find_map(|cause| match cause.downcast_ref::<SdkError>() {
            Some(SdkError::Node { code, .. }) => Some(*code),
            _ => None,
        });
    if let Some(code) = refusal {
        object["code"] = json!(code.number());
        if let Some(name) = code.app().map(|app| app.name()) {
            object["name"] = json!(name);
        }
    }
    object
}

/// Run one command.
pub async fn run(mut cli: Cli) -> anyhow::Result<()> {
    if !matches!(
        cli.command,
        Command::Serve(_) | Command::Completions { .. } | Command::Admin(_)
    ) {
        cli.global
            .settle(CliFile::load(CliFile::path().as_deref())?);
    }
    let out = Output {
        json: cli.global.json,
    };
    match cli.command {
        Command::Serve(args) => crate::serve::run(args).await,
        Command::Completions { shell } => {
            let mut command = <Cli as clap::CommandFactory>::command();
            // Into memory first: the generator panics on a failed write (a closed pipe).
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut command, "northstar", &mut script);
            match std::io::Write::write_all(&mut std::io::stdout(), &script) {
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                    Err(anyhow::Error::new(e).context("cannot write the completion script"))
                }
                _ => Ok(()),
            }
        }
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
        Command::Node(NodeCommand::Info) => node_info(&cli.global, &out).await,
        Command::Space(command) => space::run(command, &cli.global, &out).await,
        Command::Beam(command) => beam::run(command, &cli.global, &out).await,
        Command::Stream(command) => stream::run(command, &cli.global, &out).await,
        Command::Blob(command) => blob::run(command, &cli.global, &out).await,
        Command::Admin(command) => admin::run(command, &out).await,
    }
}

impl Global {
    /// A connection authenticated as the user's key, for commands that sign.
    async fn connect_as_user(&self) -> anyhow::Result<Client> {
        // A bad URL is the more basic mistake: report it before a missing key.
        origin_of(&self.node)?;
        let path = keystore::key_path(self.key.as_deref())?;
        let key = keystore::load(&path).map_err(|err| match err {
            KeystoreError::File(KeyFileError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                anyhow::anyhow!(
                    "no key file at {}: create one with `northstar key generate`, or pass --key",
                    path.display()
                )
            }
            other => other.into(),
        })?;
        Ok(Client::connect_with(&self.node, Some(key), self.trust()?).await?)
    }

    /// The certificates trusted on wss://: the system's roots, plus `--ca-file`'s.
    fn trust(&self) -> anyhow::Result<Trust> {
        Ok(match &self.ca_file {
            Some(path) => Trust::system().with_ca_file(path)?,
            None => Trust::system(),
        })
    }

    /// A connection for commands that read: authenticated if the user has a key (so private
    /// spaces they belong to can be read), anonymous otherwise.
    async fn connect_as_reader(&self) -> anyhow::Result<Client> {
        let key = keystore::load_if_present(self.key.as_deref())?;
        Ok(Client::connect_with(&self.node, key, self.trust()?).await?)
    }
}

async fn node_info(global: &Global, out: &Output) -> anyhow::Result<()> {
    let client = Client::connect_with(&global.node, None, global.trust()?).await?;
    let info = client.node_info();
    let limits = &info.limits;
    out.print(serde_json::to_value(info)?, || {
        format!(
            "did:        {}\n\
             version:    {}\n\
             public url: {}\n\
             authority:  {}\n\
             limits:     frame {} bytes, batch {}, {} subscriptions per connection, \
             {} requests/s (burst {}), auth within {} s, page {} events",
            info.did,
            info.version,
            info.public_url,
            info.authority,
            limits.max_frame_bytes,
            limits.max_batch,
            limits.max_subscriptions_per_connection,
            limits.requests_per_second,
            limits.request_burst,
            limits.auth_timeout_secs,
            limits.max_page,
        )
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Cli {
        parse_with(args, CliFile::default())
    }

    fn parse_with(args: &[&str], file: CliFile) -> Cli {
        let mut cli = Cli::try_parse_from(std::iter::once("northstar").chain(args.iter().copied()))
            .unwrap_or_else(|e| panic!("{args:?}: {e}"));
        cli.global.settle(file);
        cli
    }

    #[test]
    fn the_cli_config_file_gives_the_node_and_key_unless_a_flag_does() {
        // The environment comes before the file; only check where the tests run without it.
        if std::env::var_os("NORTHSTAR_NODE").is_some()
            || std::env::var_os("NORTHSTAR_KEY").is_some()
        {
            return;
        }
        let file = || CliFile {
            node: Some("wss://home.example".into()),
            key: Some("/home/me/alice.json".into()),
        };
        let cli = parse_with(&["node", "info"], file());
        assert_eq!(cli.global.node, "wss://home.example");
        assert_eq!(
            cli.global.key.as_deref(),
            Some(std::path::Path::new("/home/me/alice.json"))
        );
        let cli = parse_with(
            &[
                "--node",
                "ws://n.example:1",
                "--key",
                "/k.json",
                "node",
                "info",
            ],
            file(),
        );
        assert_eq!(cli.global.node, "ws://n.example:1");
        assert_eq!(
            cli.global.key.as_deref(),
            Some(std::path::Path::new("/k.json"))
        );
        // A file with a key it does not know is refused, naming the file.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cli.toml");
        std::fs::write(&path, "node = \"ws://a:1\"\nnodes = 2\n").unwrap();
        let err = CliFile::load(Some(&path)).unwrap_err();
        assert!(format!("{err:#}").contains("cli.toml"), "{err:#}");
        assert!(CliFile::load(Some(&dir.path().join("absent.toml"))).is_ok());
    }

    #[test]
    fn global_flags_go_before_or_after_the_subcommand() {
        let before = parse(&[
            "--json",
            "--node",
            "ws://n.example:1",
            "--key",
            "/k.json",
            "node",
            "info",
        ]);
        let after = parse(&[
            "space",
            "list",
            "--node",
            "ws://n.example:1",
            "--json",
            "--key",
            "/k.json",
        ]);
        for cli in [before, after] {
            assert!(cli.global.json);
            assert_eq!(cli.global.node, "ws://n.example:1");
            assert_eq!(
                cli.global.key.as_deref(),
                Some(std::path::Path::new("/k.json"))
            );
        }
    }

    #[test]
    fn the_node_defaults_to_the_local_one() {
        // NORTHSTAR_NODE may be set where the tests run; only check the fallback when not.
        if std::env::var_os("NORTHSTAR_NODE").is_none() {
            assert_eq!(parse(&["node", "info"]).global.node, DEFAULT_NODE);
        }
    }

    #[test]
    fn every_client_command_parses() {
        for args in [
            &["node", "info"][..],
            &[
                "space", "create", "--type", "channel", "--name", "General", "--id", "general",
            ],
            &[
                "space", "create", "--type", "dm", "--name", "Us", "--id", "us",
            ],
            &[
                "space", "create", "--type", "stream", "--name", "Live", "--id", "live",
            ],
            &["space", "join", "northstar://h/channel/z6Mk/x"],
            &["space", "leave", "channel/z6Mk/x"],
            &["space", "invite", "channel/z6Mk/x", "did:key:z6Mk"],
            &["space", "list"],
            &["space", "members", "channel/z6Mk/x"],
            &[
                "space",
                "events",
                "channel/z6Mk/x",
                "--since",
                "3",
                "--limit",
                "10",
            ],
            &["space", "tail", "channel/z6Mk/x", "--since", "3"],
            &["space", "export", "channel/z6Mk/x", "x.jsonl", "--beams"],
            &["space", "export", "northstar://h/dm/z6Mk/x", "x.jsonl"],
            &["space", "import", "x.jsonl", "--json"],
            &[
                "beam",
                "post",
                "channel/z6Mk/x",
                "--title",
                "T",
                "--body",
                "B",
            ],
            &["beam", "get", "northstar://h/beam/a/b"],
            &["beam", "delete", "northstar://h/beam/a/b"],
            &["stream", "publish", "stream/z6Mk/x"],
            &[
                "stream",
                "publish",
                "northstar://h/stream/z6Mk/x",
                "--frame-bytes",
                "1000",
                "--key-every",
                "25",
                "--rate",
                "500k",
                "--json",
            ],
            &[
                "stream",
                "watch",
                "stream/z6Mk/x",
                "--since",
                "9",
                "--frames",
                "3",
            ],
            &["stream", "info", "stream/z6Mk/x", "--json"],
            &[
                "admin",
                "migrate-storage",
                "--to",
                "postgres://u:p@h:5432/db",
                "--data-dir",
                "/var/lib/northstar",
                "--config",
                "/etc/northstar.toml",
            ],
        ] {
            parse(args);
        }
        for bad in [
            &["stream", "publish", "s", "--key-every", "0"][..],
            &["stream", "publish", "s", "--frame-bytes", "0"],
            &["stream", "publish", "s", "--frame-bytes", "16777217"],
            &["stream", "publish", "s", "--rate", "fast"],
        ] {
            let args = std::iter::once("northstar").chain(bad.iter().copied());
            assert!(Cli::try_parse_from(args).is_err(), "{bad:?}");
        }
        assert!(
            Cli::try_parse_from([
                "northstar",
                "space",
                "create",
                "--type",
                "room",
                "--name",
                "x",
                "--id",
                "x"
            ])
            .is_err()
        );
    }
}
