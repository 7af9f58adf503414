//! The Northstar node: spaces, beams and sequenced events over JSON-RPC on WebSockets.
//!
//! # Layout
//! Each module uses only modules listed above it.
//! - [`report`]: errors in the log with their whole cause chain.
//! - [`clock`]: the wall clock, read by actors only.
//! - [`store`]: the storage interface over SQLite or PostgreSQL, and its invariants.
//! - [`config`]: the layered configuration (defaults, TOML, `NORTHSTAR_*`, flags).
//! - [`datadir`]: the data directory, private and held by one node process at a time.
//! - [`tls`]: the certificate the listener serves (swapped at run time) and whom dials trust.
//! - [`acme`]: obtaining and renewing the listener's certificate by ACME.
//! - [`migrate`]: moving a stopped node from SQLite to PostgreSQL (`admin migrate-storage`).
//! - [`hub`]: live fan-out of committed events to subscribers.
//! - [`spaces`]: the spaces' rules, the writer's decisions without I/O, the single writer
//!   around them, and the broadcast trees.
//! - [`streams`]: live stream frames: each stream's window, watches and budgets, and the links
//!   a member node keeps to its parents in the stream's tree.
//! - [`federation`]: authenticated, pooled links to other nodes.
//! - [`gossip`]: pushing events down broadcast trees and pulling what is missing.
//! - [`access`]: who may authenticate: the registration policy and the operator's runtime
//!   allow, deny and ban decisions.
//! - [`auth`]: connection sessions and the challenge-response handshake.
//! - [`blobs`]: files attached to beams: their tables and files, uploads, verified-stream
//!   responses, fetching from other nodes, the sweep; and the `/blob` HTTP routes.
//! - [`admission`]: how many connections the node holds, per address and in all.
//! - [`rpc`]: the JSON-RPC methods and the one mapping from errors to error objects.
//! - [`connection`]: one WebSocket session: reading, running calls, batched writes.
//! - [`app`]: the web app at `/app/`, its files embedded in the binary at compile time.
//! - [`server`]: the listener (plain or TLS), connection limits and the WebSocket upgrade.
//! - [`status`]: the plain HTTP pages on the same port: health checks, the status page and
//!   `/.well-known/northstar`.
//! - [`admin`]: the operator's channel, a Unix socket in the data directory (`admin.sock`).
//!
//! [`run`] wires them together; the `northstar` binary adds arguments, logging and signals.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod access;
pub mod acme;
pub mod admin;
pub mod admission;
pub mod app;
pub mod auth;
pub mod blobs;
pub mod clock;
pub mod config;
pub mod connection;
pub mod datadir;
pub mod delivery;
pub mod federation;
pub mod gossip;
pub mod hub;
pub mod metrics;
pub mod migrate;
pub mod report;
pub mod rpc;
pub mod server;
#[cfg(test)]
mod sim;
pub mod spaces;
pub mod status;
pub mod store;
pub mod streams;
pub mod tls;

use std::path::Path;
use std::sync::Arc;

use northstar_protocol::{KeyFileError, Keypair};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{Config, ConfigError, TlsSource};
use crate::datadir::{DataDir, DataDirError};
use crate::store::{Store, StoreError};

/// The node key's file name in the data directory.
pub const NODE_KEY_FILE: &str = "node.key.json";

/// Why the node could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The configuration is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The data directory could not be created, or another node holds it.
    #[error(transparent)]
    DataDir(#[from] DataDirError),
    /// The node key could not be read or created.
    #[error(transparent)]
    Key(#[from] KeyFileError),
    /// The operating system's random source failed.
    #[error("no randomness for a node key: {0}")]
    Random(String),
    /// The database could not be opened or migrated.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The writer task panicked; what it had acknowledged is on disk, the rest was refused.
    #[error("the writer failed: {0}")]
    Writer(String),
    /// The RPC methods could not be registered (a bug).
    #[error("cannot register RPC methods: {0}")]
    Methods(String),
    /// A TLS certificate, key or CA file is unusable.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// ACME could not be set up.
    #[error(transparent)]
    Acme(#[from] acme::AcmeError),
    /// The admin socket could not be created, or another node answers on it.
    #[error(transparent)]
    Admin(#[from] admin::AdminError),
    /// The metrics address could not be listened on.
    /// The blob directory could not be made ready.
    #[error("cannot open the blob directory under the data directory")]
    Blobs(#[source] std::io::Error),
    #[error("cannot serve metrics on metrics_listen = {listen}")]
    Metrics {
        /// The address.
        listen: std::net::SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// Load the node key from `data_dir`, creating it on first start.
pub fn node_key(data_dir: &Path) -> Result<Keypair, NodeError> {
    let path = data_dir.join(NODE_KEY_FILE);
    if path.exists() {
        return Ok(Keypair::load(&path)?);
    }
    let key = Keypair::generate().map_err(|e| NodeError::Random(e.to_string()))?;
    key.save(&path)?;
    tracing::info!(path = %path.display(), did = %key.did(), "created node key");
    Ok(key)
}

/// Run a node on `listener` until `shutdown` is cancelled; then stop accepting, close the
/// connections, finish queued writes and close the store.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), NodeError> {
    let address = listener
        .local_addr()
        .map_or_else(|_| "?".into(), |a| a.to_string());
    // Held until the store is closed, at the end of this function.
    let data_dir = DataDir::claim(&config.data_dir, &address)?;
    // Before the store opens: a node that answers on the socket is running here.
    let admin_socket = admin::Socket::bind(&config.data_dir)?;
    let key = node_key(&config.data_dir)?;
    let storage = config.storage()?;
    let store = Store::open(&storage, key.did().as_str()).await?;
    tracing::info!(%storage, "database open");
    let hub = Arc::new(hub::Hub::new(config.limits.subscriber_queue as usize));
    let delivery = Arc::new(delivery::Delivery::default());
    let mut metrics = metrics::Metrics::default();
    metrics.register_collector(delivery.clone());
    let link_states = Arc::new(federation::LinkStates::default());
    metrics.register_collector(link_states.clone());
    let metrics = Arc::new(metrics);
    let dial_tls = tls::client_config(config.tls_ca())?;
    let links = Arc::new(
        federation::Links::new(key.clone(), config.origin())
            .with_metrics(metrics.clone())
            .with_tls(dial_tls.clone()),
    );
    link_states.watch(&links);
    // Gossip and background work stop before the writer, so nothing waits on a closed writer.
    let tasks = TaskTracker::new();
    let gossip_stop = CancellationToken::new();
    let tls = start_tls(&config, dial_tls, &tasks, gossip_stop.clone())?;
    if let Some(listen) = config.metrics_address()? {
        let metrics_listener = TcpListener::bind(listen)
            .await
            .map_err(|source| NodeError::Metrics { listen, source })?;
        tracing::info!(listen = %listen, "metrics served at /metrics");
        metrics::serve(
            metrics_listener,
            metrics.clone(),
            &tasks,
            gossip_stop.clone(),
        );
    }
    let (outbox, committed) = spaces::routing::Outbox::new();
    gossip::forwarder(
        committed,
        links.clone(),
        key.did().clone(),
        metrics.clone(),
        &tasks,
        gossip_stop.clone(),
    );
    let (writer, handle) =
        spaces::Writer::new(store.clone(), key.clone(), hub.clone(), Some(outbox));
    let writer = writer
        .with_metrics(metrics.clone())
        .with_delivery(delivery.clone());
    delivery.spawn_reporter(links.clone(), &tasks, gossip_stop.clone());
    let writer_stop = CancellationToken::new();
    let writer = tokio::spawn(writer.run(writer_stop.clone()));
    let catch_up = gossip::CatchUp::new(
        links.clone(),
        store.clone(),
        handle.clone(),
        key.did().clone(),
    )
    .with_metrics(metrics.clone())
    .with_delivery(delivery.clone());
    let sync_every = std::time::Duration::from_secs(u64::from(config.sync_interval_secs));
    gossip::spawn_sync(catch_up.clone(), sync_every, &tasks, gossip_stop.clone());
    let streams = streams::Streams::new(
        key.did().clone(),
        &config.origin(),
        config.streams.clone(),
        sync_every,
        store.clone(),
        tasks.clone(),
        gossip_stop.clone(),
    );
    let access = Arc::new(access::Access::load(config.registration.clone(), store.clone()).await?);
    let auth = auth::Authenticator::new(
        key.clone(),
        config.origin(),
        config.limits.challenge_ttl_secs,
        access,
    );
    let blobs = Arc::new(
        blobs::Blobs::new(
            &config.data_dir,
            config.blobs.clone(),
            store.clone(),
            &key,
            tasks.clone(),
        )
        .map_err(NodeError::Blobs)?,
    );
    blobs.spawn_sweeper(&tasks, gossip_stop.clone());
    let api = Arc::new(rpc::Api {
        did: key.did().clone(),
        node_key: key.clone(),
        config: config.clone(),
        auth,
        store: store.clone(),
        sequencer: handle,
        hub,
        links,
        streams,
        catch_up,
        background: tasks.clone(),
        filling: Arc::default(),
        known_spaces: std::sync::Mutex::default(),
        status: status::Status::default(),
        metrics: metrics.clone(),
        delivery,
        blobs,
        edit_order: tokio::sync::Mutex::default(),
    });
    let module = rpc::methods(api.clone()).map_err(|e| NodeError::Methods(e.to_string()))?;
    tracing::info!(version = status::VERSION, protocol = northstar_protocol::PROTOCOL_VERSION, did = %key.did(), listen = %address, public_url = %config.origin(), "node ready");
    admin::spawn(admin_socket, api.clone(), &tasks, shutdown.clone());
    let shared = connection::Shared {
        methods: module.into(),
        api,
        limits: config.limits.clone(),
        trusted_proxies: config.trusted_networks()?,
        app: config.app.then(|| app::App::new(&config.origin())),
    };
    server::serve(listener, shared, tls, shutdown).await;
    gossip_stop.cancel();
    tasks.close();
    if tokio::time::timeout(std::time::Duration::from_secs(5), tasks.wait())
        .await
        .is_err()
    {
        tracing::warn!("background work did not stop in time");
    }
    writer_stop.cancel();
    let writer = writer.await;
    store.close().await;
    drop(data_dir);
    if let Err(e) = writer {
        tracing::error!(error = %crate::report::Causes(&e), "the writer task failed");
        return Err(NodeError::Writer(e.to_string()));
    }
    tracing::info!("node stopped");
    Ok(())
}

/// The listener's TLS, if the configuration asks for it: certificate files, read again on
/// SIGHUP, or ACME, whose directory is verified with `dial_tls`.
fn start_tls(
    config: &Config,
    dial_tls: rustls::ClientConfig,
    tasks: &TaskTracker,
    stop: CancellationToken,
) -> Result<Option<tokio_rustls::TlsAcceptor>, NodeError> {
    match config.tls_source()? {
        TlsSource::Off => Ok(None),
        TlsSource::Files { cert, key } => {
            let resolver = Arc::new(tls::Resolver::from_files(&cert, &key)?);
            tracing::info!(cert = %cert.display(), "serving TLS; SIGHUP reloads the certificate");
            tls::reload_on_sighup(resolver.clone(), tasks, stop);
            Ok(Some(tls::acceptor(resolver, false)?))
        }
        TlsSource::Acme {
            domain,
            email,
            directory,
        } => {
            let resolver = Arc::new(tls::Resolver::default());
            let settings = acme::Settings {
                domain,
                email,
                directory,
                dir: config.data_dir.join("acme"),
            };
            acme::spawn(settings, resolver.clone(), dial_tls, tasks, stop)?;
            Ok(Some(tls::acceptor(resolver, true)?))
        }
    }
}
