//! `northstar serve`: load the configuration, set up logging, run the node until a signal.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;

/// Flags of `northstar serve`; each overrides the config file and the environment.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// A TOML config file (see config.example.toml).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Where the node keeps its key and database.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// The address to listen on, e.g. 0.0.0.0:7700.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// The origin clients must see in challenges, e.g. wss://node.example.
    #[arg(long, value_name = "URL")]
    pub public_url: Option<String>,
}

/// Run the node.
pub async fn run(_args: ServeArgs) -> anyhow::Result<()> {
    anyhow::bail!("serve is being built")
}
