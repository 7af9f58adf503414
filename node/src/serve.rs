//! `northstar serve`: load the configuration, set up logging, run the node until a signal.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use northstar_node::config::{Config, LogFormat, Overrides};
use tokio_util::sync::CancellationToken;

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
    /// Children per node in the broadcast trees of the spaces this node sequences.
    #[arg(long, value_name = "K")]
    pub fanout: Option<u32>,
}

/// Run the node until SIGINT or SIGTERM.
pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let overrides = Overrides {
        data_dir: args.data_dir,
        listen: args.listen,
        public_url: args.public_url,
        fanout: args.fanout,
    };
    // Loaded before logging starts, since it says how to log; an error is printed by `main`.
    let mut config = Config::load(args.config.as_deref(), std::env::vars(), &overrides)?;
    init_logging(config.log_format);
    for name in Config::unknown_variables(std::env::vars()) {
        tracing::warn!(variable = %name, "not a config key, so ignored: a misspelt one? (config.example.toml lists them)");
    }
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    // With port 0 the OS picks one; the origin derived from `listen` must name the real port.
    config.listen = listener
        .local_addr()
        .context("cannot read the listening address")?;
    let shutdown = CancellationToken::new();
    let signals = tokio::spawn(stop_on_signal(shutdown.clone()));
    let result = northstar_node::run(config, listener, shutdown).await;
    signals.abort();
    Ok(result?)
}

/// Log to stderr in `format`, at the levels `RUST_LOG` asks for (`info` by default).
fn init_logging(format: LogFormat) {
    // PostgreSQL's notices (a table that exists already, at each start) are not news.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx::postgres::notice=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        // Colour codes only for a person at a terminal; files and pipes get plain text.
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
    }
}

async fn stop_on_signal(shutdown: CancellationToken) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch SIGTERM; only Ctrl-C stops the node");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
    tracing::info!("shutdown requested");
    shutdown.cancel();
}
