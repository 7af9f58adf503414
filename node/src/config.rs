//! The node's configuration, layered: defaults, then a TOML file, then `NORTHSTAR_*`
//! environment variables, then command-line flags.
//!
//! Every key has a default, so `northstar serve` needs no file. The environment variable for a
//! top-level key is `NORTHSTAR_{KEY}` (e.g. `NORTHSTAR_LISTEN`), for a key in a section
//! `NORTHSTAR_{SECTION}_{KEY}` (e.g. `NORTHSTAR_LIMITS_MAX_FRAME_BYTES`); its value is read as a
//! TOML value (`42`, `true`, `["a", "b"]`), or as a plain string if it is not one.
//! `config.example.toml` at the repository root documents every key.
//!
//! The layers are merged by `figment`, each under its own name (the defaults, the config file,
//! each variable), so a value that does not fit its key is reported with the key
//! (`limits.max_page`) and the layer it came from. A `NORTHSTAR_*` variable that names no key
//! is reported by [`Config::unknown_variables`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::value::{Dict, Value};
use figment::{Figment, Metadata, Profile, Provider};
use northstar_protocol::Did;
use serde::{Deserialize, Serialize};

use crate::store::Storage;

/// The prefix of every environment variable the node reads.
pub const ENV_PREFIX: &str = "NORTHSTAR_";

/// The node's configuration. Its `Debug` form hides the password in `storage_url`, so a
/// configuration in a log or a panic message never shows it.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where the node keeps its key and (by default) its database.
    pub data_dir: PathBuf,
    /// The address to listen on.
    pub listen: SocketAddr,
    /// The origin clients must see in challenges, e.g. `wss://node.example`. Empty: derived
    /// from `listen` as `ws://{listen}`.
    pub public_url: String,
    /// The database: empty for SQLite at `{data_dir}/northstar.db`, `sqlite://PATH` for
    /// another SQLite file, or `postgres://USER:PASSWORD@HOST:PORT/DATABASE` for PostgreSQL.
    pub storage_url: String,
    /// Children per node in the broadcast trees of the spaces this node sequences.
    pub fanout: u32,
    /// Seconds between checks of every replica against its sequencer for missed events.
    pub sync_interval_secs: u32,
    /// Who may register on this node.
    pub registration: Registration,
    /// Limits on what clients and peers may ask.
    pub limits: Limits,
    /// Live streams: this node's uplink, the per-stream limits, windows and queues.
    pub streams: Streams,
    /// Blobs: the largest, each owner's quota, and when unreferenced ones go (spec §13.7).
    pub blobs: Blobs,
    /// How log lines are written to stderr: `text` for people, `json` (one object per line)
    /// for log collectors.
    pub log_format: LogFormat,
    /// Where Prometheus metrics are served (`GET /metrics`), e.g. `127.0.0.1:9100`; empty:
    /// not served.
    pub metrics_listen: String,
    /// Whether the web app (a chat, and the browser SDK it loads) is served at `/app/` on the
    /// node's port.
    pub app: bool,
    /// Reverse proxies whose `X-Forwarded-For` header is believed: addresses (`127.0.0.1`) or
    /// networks (`10.0.0.0/8`). A connection from one of them is counted and logged as the
    /// client the header names.
    pub trusted_proxies: Vec<String>,
    /// A PEM file with the certificate chain the listener serves (leaf first); with
    /// `tls_key`, the node speaks `wss://` and `https://` itself. Read again on SIGHUP.
    pub tls_cert: String,
    /// A PEM file with the private key of `tls_cert`.
    pub tls_key: String,
    /// A PEM file of CA certificates trusted, besides the system's roots, when the node dials
    /// peers over `wss://` and the ACME directory.
    pub tls_ca: String,
    /// A domain to obtain and renew a certificate for by ACME (TLS-ALPN-01 on `listen`, which
    /// must be reachable on port 443 under that name); the node then serves it. Not together
    /// with `tls_cert`.
    pub acme_domain: String,
    /// The contact address given to the ACME CA with `acme_domain`.
    pub acme_email: String,
    /// The ACME directory URL; Let's Encrypt's production directory by default.
    pub acme_directory: String,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// One line of text per event, coloured at a terminal.
    #[default]
    Text,
    /// One JSON object per line: `timestamp`, `level`, `target`, `fields` and the spans.
    Json,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("data_dir", &self.data_dir)
            .field("listen", &self.listen)
            .field("public_url", &self.public_url)
            .field("storage_url", &crate::store::redact(&self.storage_url))
            .field("fanout", &self.fanout)
            .field("sync_interval_secs", &self.sync_interval_secs)
            .field("registration", &self.registration)
            .field("limits", &self.limits)
            .field("streams", &self.streams)
            .field("blobs", &self.blobs)
            .field("log_format", &self.log_format)
            .field("metrics_listen", &self.metrics_listen)
            .field("app", &self.app)
            .field("trusted_proxies", &self.trusted_proxies)
            .field("tls_cert", &self.tls_cert)
            .field("tls_key", &self.tls_key)
            .field("tls_ca", &self.tls_ca)
            .field("acme_domain", &self.acme_domain)
            .field("acme_email", &self.acme_email)
            .field("acme_directory", &self.acme_directory)
            .finish()
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: default_data_dir(),
            listen: SocketAddr::from(([127, 0, 0, 1], 7700)),
            public_url: String::new(),
            storage_url: String::new(),
            fanout: 10,
            sync_interval_secs: 2,
            registration: Registration::default(),
            limits: Limits::default(),
            streams: Streams::default(),
            blobs: Blobs::default(),
            log_format: LogFormat::default(),
            metrics_listen: String::new(),
            app: true,
            trusted_proxies: Vec::new(),
            tls_cert: String::new(),
            tls_key: String::new(),
            tls_ca: String::new(),
            acme_domain: String::new(),
            acme_email: String::new(),
            acme_directory: LETS_ENCRYPT_DIRECTORY.to_owned(),
        }
    }
}

/// Let's Encrypt's production ACME directory, the default `acme_directory`.
pub const LETS_ENCRYPT_DIRECTORY: &str = "https://acme-v02.api.letsencrypt.org/directory";

/// Where the listener's certificate comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsSource {
    /// Plain `ws://` and `http://`.
    Off,
    /// `tls_cert` and `tls_key`.
    Files {
        /// The certificate chain.
        cert: PathBuf,
        /// Its key.
        key: PathBuf,
    },
    /// ACME for `acme_domain`.
    Acme {
        /// The domain.
        domain: String,
        /// The contact address, if any.
        email: Option<String>,
        /// The directory URL.
        directory: String,
    },
}

/// `$XDG_DATA_HOME/northstar` (or the platform's data directory), else `./northstar-data`.
fn default_data_dir() -> PathBuf {
    dirs::data_dir()
        .map(|d| d.join("northstar"))
        .unwrap_or_else(|| PathBuf::from("northstar-data"))
}

/// The registration policy: who may authenticate as a user of this node.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Registration {
    /// `open`: any DID; `allow_list`: only the DIDs in `allow`.
    pub policy: Policy,
    /// The DIDs allowed when `policy` is `allow_list`.
    pub allow: Vec<Did>,
}

/// Who may register.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Policy {
    /// Anyone with a DID.
    #[default]
    Open,
    /// Only the listed DIDs.
    AllowList,
}

impl Policy {
    /// The policy's name in the config file.
    pub fn name(self) -> &'static str {
        match self {
            Policy::Open => "open",
            Policy::AllowList => "allow_list",
        }
    }
}

/// Limits. Every violation is answered with an error or a close reason, never a crash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// The largest WebSocket message (and JSON-RPC request) accepted, in bytes.
    pub max_frame_bytes: u32,
    /// The most calls in one JSON-RPC batch; 0 turns batches off.
    pub max_batch: u32,
    /// The most connections open at once.
    pub max_connections: u32,
    /// The most connections open at once from one IP address.
    pub max_connections_per_ip: u32,
    /// The most subscriptions one connection may hold.
    pub max_subscriptions_per_connection: u32,
    /// Sustained requests per second allowed per connection.
    pub requests_per_second: u32,
    /// Requests a connection may send in a burst above the sustained rate.
    pub request_burst: u32,
    /// Sustained requests per second allowed to all connections of one address together;
    /// 0 turns this budget off.
    pub requests_per_second_per_ip: u32,
    /// Requests the connections of one address may save up together.
    pub request_burst_per_ip: u32,
    /// Sustained requests per second allowed to all connections authenticated as one DID
    /// together; 0 turns this budget off.
    pub requests_per_second_per_did: u32,
    /// Requests the connections of one DID may save up together.
    pub request_burst_per_did: u32,
    /// TCP connections accepted but not yet upgraded to WebSocket, in all; over it a new TCP
    /// connection is closed at once.
    pub max_pending_connections: u32,
    /// TCP connections not yet upgraded to WebSocket from one address.
    pub max_pending_connections_per_ip: u32,
    /// Seconds a TCP connection has to complete the WebSocket upgrade before it is closed.
    pub handshake_timeout_secs: u32,
    /// Seconds a connection has to authenticate before it is closed.
    pub auth_timeout_secs: u32,
    /// Seconds a challenge stays valid.
    pub challenge_ttl_secs: u32,
    /// Seconds of silence from the peer after which the node sends a WebSocket ping; a peer
    /// silent for as long again after it is dropped. 0 turns pings off.
    pub ping_interval_secs: u32,
    /// Events a subscriber may fall behind a space's new events; past that it is told and cut
    /// off, and may resume from its cursor.
    pub subscriber_queue: u32,
    /// The most events one `space.events` call returns, and the most entries one `space.import`
    /// call takes.
    pub max_page: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_frame_bytes: 128 * 1024,
            max_batch: 0,
            max_connections: 20_000,
            max_connections_per_ip: 256,
            max_subscriptions_per_connection: 64,
            requests_per_second: 200,
            request_burst: 400,
            requests_per_second_per_ip: 1000,
            request_burst_per_ip: 2000,
            requests_per_second_per_did: 1000,
            request_burst_per_did: 2000,
            max_pending_connections: 1024,
            max_pending_connections_per_ip: 64,
            handshake_timeout_secs: 10,
            auth_timeout_secs: 15,
            challenge_ttl_secs: 60,
            ping_interval_secs: 30,
            subscriber_queue: 1024,
            max_page: 500,
        }
    }
}

impl Limits {
    /// How long a connection may stay unauthenticated.
    pub fn auth_timeout(&self) -> Duration {
        Duration::from_secs(u64::from(self.auth_timeout_secs))
    }

    /// How long a TCP connection may take to become a WebSocket session.
    pub fn handshake_timeout(&self) -> Duration {
        Duration::from_secs(u64::from(self.handshake_timeout_secs))
    }

    /// How long a peer may be silent before it is pinged, and then before it is dropped;
    /// `None` if pings are off.
    pub fn ping_interval(&self) -> Option<Duration> {
        (self.ping_interval_secs > 0)
            .then(|| Duration::from_secs(u64::from(self.ping_interval_secs)))
    }
}

/// Live streams (`spec/protocol.md` §10.7).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Streams {
    /// This node's uplink for streams, kbit/s, declared in its users' joins so that stream
    /// trees put slow nodes at the leaves.
    pub capacity_kbps: u32,
    /// The largest payload of a frame published here, bytes.
    pub max_frame_bytes: u32,
    /// A stream's sustained frames per second, and its burst.
    pub max_frames_per_second: u32,
    /// A stream's sustained payload bytes per second, and its burst.
    pub max_bytes_per_second: u32,
    /// The most frames kept per stream for late joiners and resuming watchers.
    pub window_frames: u32,
    /// The oldest frame kept, seconds.
    pub window_secs: u32,
    /// Frames waiting for one watch; a frame that finds it full is dropped for that watch.
    pub watcher_queue: u32,
    /// Seconds a watch may drop every frame before it is ended with `slow_watcher`.
    pub watcher_cutoff_secs: u32,
}

impl Default for Streams {
    fn default() -> Self {
        Self {
            capacity_kbps: northstar_protocol::wire::DEFAULT_CAPACITY,
            max_frame_bytes: 64 * 1024,
            max_frames_per_second: 240,
            max_bytes_per_second: 8 * 1024 * 1024,
            window_frames: 512,
            window_secs: 10,
            watcher_queue: 256,
            watcher_cutoff_secs: 5,
        }
    }
}

/// `[blobs]`: files attached to beams (spec §13.7).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Blobs {
    /// The largest blob stored here, bytes.
    pub max_size: u64,
    /// The most bytes of blobs one owner may store here; cached copies count against no one.
    pub quota: u64,
    /// Seconds an unreferenced blob is kept before it is deleted.
    pub grace_secs: u64,
    /// Seconds between two sweeps for unreferenced blobs and stale cached copies.
    pub sweep_secs: u64,
}

impl Default for Blobs {
    fn default() -> Self {
        Self {
            max_size: 1 << 30,
            quota: 10 << 30,
            grace_secs: 3600,
            sweep_secs: 60,
        }
    }
}

impl Streams {
    /// The limits `stream.publish` and `stream.info` report.
    pub fn limits(&self) -> northstar_protocol::api::StreamLimits {
        northstar_protocol::api::StreamLimits {
            max_frame_bytes: self.max_frame_bytes,
            max_frames_per_second: self.max_frames_per_second,
            max_bytes_per_second: self.max_bytes_per_second,
        }
    }

    /// The longest binary message a connection reads: a frame with the largest payload, its
    /// header, space id and signature (§10.7).
    pub fn max_message(&self) -> usize {
        (self.max_frame_bytes as usize).saturating_add(2048)
    }
}

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("cannot read config file {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The config file, or the result of applying the environment, is not a valid config.
    #[error("invalid configuration{origin}: {reason}")]
    Invalid {
        /// Where the bad value came from (`" in FILE"`, `" from NORTHSTAR_X"`), or empty.
        origin: String,
        /// What is wrong.
        reason: String,
    },
}

/// Values given on the command line; `None` leaves the lower layers' value.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--data-dir`.
    pub data_dir: Option<PathBuf>,
    /// `--listen`.
    pub listen: Option<SocketAddr>,
    /// `--public-url`.
    pub public_url: Option<String>,
    /// `--fanout`.
    pub fanout: Option<u32>,
}

impl Config {
    /// Load the configuration: defaults, then `file` if given, then the environment (`env`
    /// yields `(name, value)` pairs; pass `std::env::vars()`), then `overrides`.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
        overrides: &Overrides,
    ) -> Result<Self, ConfigError> {
        let mut layers = Figment::from(Layer::new(
            "the defaults",
            None,
            to_dict(&Config::default())?,
        ));
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.to_owned(),
                source,
            })?;
            let data: Dict = toml::from_str(&text).map_err(|e| ConfigError::Invalid {
                origin: format!(" in {}", path.display()),
                reason: e.message().to_owned(),
            })?;
            layers = layers.merge(Layer::new(
                format!("config file {}", path.display()),
                Some(path),
                data,
            ));
        }
        let keys = to_table(&Config::default())?;
        for (name, value) in env {
            if let Some(path) = env_key(&keys, &name) {
                let value =
                    <Value as Deserialize>::deserialize(parse_env_value(&value)).map_err(|e| {
                        ConfigError::Invalid {
                            origin: format!(" from {name}"),
                            reason: e.to_string(),
                        }
                    })?;
                let data = nest(&path, value);
                layers = layers.merge(Layer::new(
                    format!("environment variable {name}"),
                    None,
                    data,
                ));
            }
        }
        let mut config: Config = layers.extract().map_err(layer_error)?;
        if let Some(dir) = &overrides.data_dir {
            config.data_dir = dir.clone();
        }
        if let Some(listen) = overrides.listen {
            config.listen = listen;
        }
        if let Some(url) = &overrides.public_url {
            config.public_url = url.clone();
        }
        if let Some(fanout) = overrides.fanout {
            config.fanout = fanout;
        }
        config.validate()?;
        Ok(config)
    }

    /// The origin that challenges carry: `public_url`, or `ws://{listen}` (`wss://{listen}`
    /// with `tls_cert`, `wss://{acme_domain}[:port]` with ACME).
    pub fn origin(&self) -> String {
        // As configured, not put in normal form: the authority in it is the one this node's
        // space URIs and members' homes already name, and changing it (dropping a :443 the
        // operator wrote, say) would make the node take its own URIs for another node's.
        // Challenges are compared in normal form anyway (`same_origin`).
        if self.public_url.is_empty() {
            let acme = self.acme_domain.trim();
            if !acme.is_empty() {
                return match self.listen.port() {
                    443 => format!("wss://{acme}"),
                    port => format!("wss://{acme}:{port}"),
                };
            }
            let scheme = if self.tls_cert.trim().is_empty() {
                "ws"
            } else {
                "wss"
            };
            format!("{scheme}://{}", self.listen)
        } else {
            self.public_url.trim_end_matches('/').to_owned()
        }
    }

    /// The scheme this node dials other nodes with, given its own origin: `wss` behind TLS,
    /// else `ws` (`spec/protocol.md` §9.1). Takes the origin, not the config, so that what
    /// was built from an origin alone can ask too.
    pub fn dial_scheme(origin: &str) -> &'static str {
        if origin.starts_with("wss://") {
            "wss"
        } else {
            "ws"
        }
    }

    /// The `host[:port]` of [`Config::origin`]: the authority of this node's URIs.
    pub fn authority(&self) -> String {
        let origin = self.origin();
        let rest = origin.split_once("://").map_or(origin.as_str(), |(_, r)| r);
        rest.split('/').next().unwrap_or(rest).to_owned()
    }

    /// The database `storage_url` names: SQLite at `{data_dir}/northstar.db` when it is
    /// empty, an SQLite file for `sqlite://PATH`, a PostgreSQL database for `postgres://…`.
    pub fn storage(&self) -> Result<Storage, ConfigError> {
        Storage::from_url(&self.storage_url, &self.data_dir).map_err(|e| ConfigError::Invalid {
            origin: String::new(),
            reason: format!("storage_url: {e}"),
        })
    }

    /// The networks of `trusted_proxies`; an address alone is a network of one.
    pub fn trusted_networks(&self) -> Result<Vec<ipnet::IpNet>, ConfigError> {
        self.trusted_proxies
            .iter()
            .map(|entry| {
                let entry = entry.trim();
                entry
                    .parse::<ipnet::IpNet>()
                    .or_else(|_| entry.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                    .map_err(|_| ConfigError::Invalid {
                        origin: String::new(),
                        reason: format!(
                            "trusted_proxies: {entry:?} is neither an address nor a network \
                             like 10.0.0.0/8"
                        ),
                    })
            })
            .collect()
    }

    /// The address of `metrics_listen`, or `None` when metrics are off.
    pub fn metrics_address(&self) -> Result<Option<SocketAddr>, ConfigError> {
        let text = self.metrics_listen.trim();
        if text.is_empty() {
            return Ok(None);
        }
        text.parse().map(Some).map_err(|_| ConfigError::Invalid {
            origin: String::new(),
            reason: format!(
                "metrics_listen {text:?} must be an address and port, e.g. \"127.0.0.1:9100\", or empty"
            ),
        })
    }

    /// Where the listener's certificate comes from, from `tls_cert`/`tls_key` and
    /// `acme_domain`/`acme_email`/`acme_directory`.
    pub fn tls_source(&self) -> Result<TlsSource, ConfigError> {
        let invalid = |reason: &str| ConfigError::Invalid {
            origin: String::new(),
            reason: reason.to_owned(),
        };
        let (cert, key) = (self.tls_cert.trim(), self.tls_key.trim());
        let domain = self.acme_domain.trim();
        match (cert.is_empty(), key.is_empty(), domain.is_empty()) {
            (true, true, true) => {
                if !self.acme_email.trim().is_empty() {
                    return Err(invalid("acme_email is set but acme_domain is not"));
                }
                Ok(TlsSource::Off)
            }
            (false, false, true) => Ok(TlsSource::Files {
                cert: PathBuf::from(cert),
                key: PathBuf::from(key),
            }),
            (true, true, false) => {
                let directory = self.acme_directory.trim();
                if !directory.starts_with("https://") {
                    return Err(invalid("acme_directory must be an https:// URL"));
                }
                northstar_protocol::address::check_authority(domain)
                    .map_err(|e| invalid(&format!("acme_domain: {e}")))?;
                let email = self.acme_email.trim();
                Ok(TlsSource::Acme {
                    domain: domain.to_owned(),
                    email: (!email.is_empty()).then(|| email.to_owned()),
                    directory: directory.to_owned(),
                })
            }
            (_, _, false) => Err(invalid(
                "acme_domain and tls_cert/tls_key are two sources of one certificate: set one",
            )),
            _ => Err(invalid(
                "tls_cert and tls_key go together: set both or neither",
            )),
        }
    }

    /// The `tls_ca` file, if set.
    pub fn tls_ca(&self) -> Option<&Path> {
        let path = self.tls_ca.trim();
        (!path.is_empty()).then(|| Path::new(path))
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |reason: String| ConfigError::Invalid {
            origin: String::new(),
            reason,
        };
        self.metrics_address()?;
        self.tls_source()?;
        self.trusted_networks()?;
        let origin = self.origin();
        if !(origin.starts_with("ws://") || origin.starts_with("wss://")) {
            return Err(invalid(format!(
                "public_url {origin:?} must start with ws:// or wss://"
            )));
        }
        if self.tls_source()? != TlsSource::Off && !origin.starts_with("wss://") {
            return Err(invalid(format!(
                "public_url {origin:?} must start with wss:// when the node serves TLS"
            )));
        }
        northstar_protocol::address::check_authority(&self.authority())
            .map_err(|e| invalid(format!("public_url: {e}")))?;
        let after_scheme = origin.split_once("://").map_or("", |(_, rest)| rest);
        if after_scheme.contains('/') {
            return Err(invalid(format!(
                "public_url {origin:?} must be scheme://host[:port] with no path"
            )));
        }
        let l = &self.limits;
        if self.blobs.sweep_secs == 0 {
            return Err(invalid("blobs.sweep_secs must be at least 1".into()));
        }
        if self.sync_interval_secs == 0 {
            return Err(invalid("sync_interval_secs must be at least 1".into()));
        }
        if !(1..=northstar_protocol::wire::space::MAX_FANOUT).contains(&self.fanout) {
            return Err(invalid(format!(
                "fanout must be 1 to {}",
                northstar_protocol::wire::space::MAX_FANOUT
            )));
        }
        at_least_one(
            "limits",
            &[
                ("max_frame_bytes", l.max_frame_bytes),
                ("max_connections", l.max_connections),
                ("max_connections_per_ip", l.max_connections_per_ip),
                ("requests_per_second", l.requests_per_second),
                ("auth_timeout_secs", l.auth_timeout_secs),
                ("max_pending_connections", l.max_pending_connections),
                (
                    "max_pending_connections_per_ip",
                    l.max_pending_connections_per_ip,
                ),
                ("handshake_timeout_secs", l.handshake_timeout_secs),
                ("challenge_ttl_secs", l.challenge_ttl_secs),
                ("subscriber_queue", l.subscriber_queue),
                ("max_page", l.max_page),
            ],
        )?;
        let s = &self.streams;
        at_least_one(
            "streams",
            &[
                ("max_frame_bytes", s.max_frame_bytes),
                ("max_frames_per_second", s.max_frames_per_second),
                ("max_bytes_per_second", s.max_bytes_per_second),
                ("window_frames", s.window_frames),
                ("window_secs", s.window_secs),
                ("watcher_queue", s.watcher_queue),
                ("watcher_cutoff_secs", s.watcher_cutoff_secs),
            ],
        )?;
        if s.max_frame_bytes as usize > northstar_protocol::frame::MAX_PAYLOAD {
            return Err(invalid(format!(
                "streams.max_frame_bytes must be at most {}",
                northstar_protocol::frame::MAX_PAYLOAD
            )));
        }
        if l.max_frame_bytes < 4096 {
            return Err(invalid(
                "limits.max_frame_bytes must be at least 4096".into(),
            ));
        }
        self.storage().map(drop)
    }
}

/// `NORTHSTAR_*` variables that are not config keys but are read elsewhere: the CLI's, and
/// those of the tests and scripts (`NORTHSTAR_TEST_*` and the like are matched by prefix).
const OTHER_VARIABLES: &[&str] = &[
    "NORTHSTAR_KEY",
    "NORTHSTAR_NODE",
    "NORTHSTAR_CLI_CONFIG",
    "NORTHSTAR_CA_FILE",
    "NORTHSTAR_TEST_",
    "NORTHSTAR_PG_",
    "NORTHSTAR_IMAGE",
    "NORTHSTAR_PORT_",
    "NORTHSTAR_PROFILE",
    "NORTHSTAR_SKIP_",
    "NORTHSTAR_RUST_LOG",
    "NORTHSTAR_WRITE_",
];

impl Config {
    /// The `NORTHSTAR_*` variables of `env` that name no config key and are not read by
    /// anything else of Northstar's: most likely a misspelt key, which the node would
    /// otherwise ignore without a word.
    pub fn unknown_variables(env: impl IntoIterator<Item = (String, String)>) -> Vec<String> {
        let Ok(base) = to_table(&Config::default()) else {
            return Vec::new();
        };
        env.into_iter()
            .map(|(name, _)| name)
            .filter(|name| name.starts_with(ENV_PREFIX))
            .filter(|name| !OTHER_VARIABLES.iter().any(|other| name.starts_with(other)))
            .filter(|name| env_key(&base, name).is_none())
            .collect()
    }
}

fn to_table(config: &Config) -> Result<toml::Table, ConfigError> {
    toml::Table::try_from(config).map_err(|e| ConfigError::Invalid {
        origin: String::new(),
        reason: e.to_string(),
    })
}

/// The key path (`["limits", "max_page"]`) a `NORTHSTAR_*` variable names, if it names a
/// config key in `keys` (the defaults as a table). Other `NORTHSTAR_*` variables (the CLI's
/// `NORTHSTAR_KEY`, `NORTHSTAR_NODE`) are not config keys and are left alone.
fn env_key(keys: &toml::Table, name: &str) -> Option<Vec<String>> {
    let key = name.strip_prefix(ENV_PREFIX)?.to_ascii_lowercase();
    if keys.get(&key).is_some_and(|v| !v.is_table()) {
        return Some(vec![key]);
    }
    keys.iter().find_map(|(section, inner)| {
        let rest = key.strip_prefix(&format!("{section}_"))?;
        inner
            .as_table()
            .and_then(|t| t.get(rest))
            .map(|_| vec![section.clone(), rest.to_owned()])
    })
}

/// `value` at `path` in an otherwise empty dictionary.
fn nest(path: &[String], value: Value) -> Dict {
    let mut value = value;
    for key in path.iter().skip(1).rev() {
        value = Value::from(Dict::from([(key.clone(), value)]));
    }
    let first = path.first().cloned().unwrap_or_default();
    Dict::from([(first, value)])
}

fn to_dict(config: &Config) -> Result<Dict, ConfigError> {
    Value::serialize(config)
        .ok()
        .and_then(|v| v.into_dict())
        .ok_or_else(|| ConfigError::Invalid {
            origin: String::new(),
            reason: "the defaults do not serialise".to_owned(),
        })
}

/// One layer of the configuration: its values and the name errors give it.
struct Layer {
    metadata: Metadata,
    data: Dict,
}

impl Layer {
    fn new(name: impl Into<String>, file: Option<&Path>, data: Dict) -> Self {
        let metadata = Metadata::named(name.into());
        let metadata = match file {
            Some(path) => metadata.source(figment::Source::File(path.to_owned())),
            None => metadata,
        };
        Self { metadata, data }
    }
}

impl Provider for Layer {
    fn metadata(&self) -> Metadata {
        self.metadata.clone()
    }

    fn data(&self) -> Result<figment::value::Map<Profile, Dict>, figment::Error> {
        Ok(Profile::Default.collect(self.data.clone()))
    }
}

/// A layered value that does not fit its key, with the key (`limits.max_page`) and the layer
/// it came from.
fn layer_error(e: figment::Error) -> ConfigError {
    let origin = match &e.metadata {
        Some(m) if m.name.starts_with("config file ") => {
            format!(" in {}", &m.name["config file ".len()..])
        }
        Some(m) if m.name.starts_with("environment variable ") => {
            format!(" from {}", &m.name["environment variable ".len()..])
        }
        Some(m) => format!(" from {}", m.name),
        None => String::new(),
    };
    let reason = if e.path.is_empty() {
        e.kind.to_string()
    } else {
        format!("{}: {}", e.path.join("."), e.kind)
    };
    ConfigError::Invalid { origin, reason }
}

fn parse_env_value(value: &str) -> toml::Value {
    // `x = VALUE` parses only if VALUE is a TOML value; anything else is taken as a string.
    toml::from_str::<toml::Table>(&format!("x = {value}"))
        .ok()
        .and_then(|mut t| t.remove("x"))
        .unwrap_or_else(|| toml::Value::String(value.to_owned()))
}

/// Check that every key of `section` in `keys` (name, value) is at least 1.
fn at_least_one(section: &str, keys: &[(&str, u32)]) -> Result<(), ConfigError> {
    match keys.iter().find(|(_, value)| *value == 0) {
        Some((name, _)) => Err(ConfigError::Invalid {
            origin: String::new(),
            reason: format!("{section}.{name} must be at least 1"),
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn misspelt_variables_are_found_and_others_of_northstar_are_not() {
        let env = [
            ("NORTHSTAR_LIMITS_MAX_PAGES", "3"),
            ("NORTHSTAR_LIMITS_MAX_PAGE", "3"),
            ("NORTHSTAR_LIMITS", "3"),
            ("NORTHSTAR_LOG_FORMAT", "json"),
            ("NORTHSTAR_KEY", "/k.json"),
            ("NORTHSTAR_TEST_POSTGRES", "postgres://x"),
            ("HOME", "/root"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()));
        assert_eq!(
            Config::unknown_variables(env),
            ["NORTHSTAR_LIMITS_MAX_PAGES", "NORTHSTAR_LIMITS"]
        );
    }

    #[test]
    fn debug_output_hides_the_database_password() {
        let config = Config {
            storage_url: "postgres://node:s3cr3t@db.example/northstar".into(),
            ..Config::default()
        };
        let shown = format!("{config:?}");
        assert!(!shown.contains("s3cr3t"), "{shown}");
        assert!(
            shown.contains("postgres://node:***@db.example/northstar"),
            "{shown}"
        );
    }

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn example_config_parses_and_states_every_default() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config.example.toml");
        let config = Config::load(Some(&path), [], &Overrides::default()).unwrap();
        let defaults = Config::default();
        assert_eq!(config.limits, defaults.limits);
        assert_eq!(config.registration, defaults.registration);
        assert_eq!(config.listen, defaults.listen);
        assert_eq!(config.acme_directory, defaults.acme_directory);
        assert_eq!(config.app, defaults.app);
        assert_eq!(config.tls_source().unwrap(), TlsSource::Off);
    }

    #[test]
    fn tls_keys_pick_the_certificate_source_and_the_default_origin() {
        let load = |pairs: &[(&str, &str)]| Config::load(None, env(pairs), &Overrides::default());
        let files = load(&[
            ("NORTHSTAR_TLS_CERT", "/etc/n/cert.pem"),
            ("NORTHSTAR_TLS_KEY", "/etc/n/key.pem"),
            ("NORTHSTAR_LISTEN", "0.0.0.0:7700"),
        ])
        .unwrap();
        assert_eq!(
            files.tls_source().unwrap(),
            TlsSource::Files {
                cert: "/etc/n/cert.pem".into(),
                key: "/etc/n/key.pem".into()
            }
        );
        assert_eq!(files.origin(), "wss://0.0.0.0:7700");
        let acme = load(&[
            ("NORTHSTAR_ACME_DOMAIN", "node.example"),
            ("NORTHSTAR_ACME_EMAIL", "ops@node.example"),
            ("NORTHSTAR_LISTEN", "0.0.0.0:443"),
        ])
        .unwrap();
        assert_eq!(acme.origin(), "wss://node.example");
        assert!(matches!(
            acme.tls_source().unwrap(),
            TlsSource::Acme { ref directory, .. } if directory == LETS_ENCRYPT_DIRECTORY
        ));
        // Half a pair, two sources at once, or a ws:// origin for a TLS node: refused.
        for bad in [
            &[("NORTHSTAR_TLS_CERT", "/c.pem")][..],
            &[
                ("NORTHSTAR_TLS_CERT", "/c.pem"),
                ("NORTHSTAR_TLS_KEY", "/k.pem"),
                ("NORTHSTAR_ACME_DOMAIN", "node.example"),
            ],
            &[
                ("NORTHSTAR_TLS_CERT", "/c.pem"),
                ("NORTHSTAR_TLS_KEY", "/k.pem"),
                ("NORTHSTAR_PUBLIC_URL", "ws://node.example"),
            ],
            &[("NORTHSTAR_ACME_EMAIL", "ops@node.example")],
            &[
                ("NORTHSTAR_ACME_DOMAIN", "node.example"),
                ("NORTHSTAR_ACME_DIRECTORY", "http://ca.example/dir"),
            ],
        ] {
            assert!(load(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn later_layers_override_earlier_ones() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("n.toml");
        std::fs::write(
            &file,
            "listen = \"127.0.0.1:9000\"\npublic_url = \"wss://from-file.example\"\napp = true\n[limits]\nmax_page = 7\nmax_batch = 3\n",
        )
        .unwrap();
        let config = Config::load(
            Some(&file),
            env(&[
                ("NORTHSTAR_LIMITS_MAX_PAGE", "9"),
                ("NORTHSTAR_PUBLIC_URL", "wss://from-env.example"),
                ("NORTHSTAR_APP", "false"),
                ("NORTHSTAR_KEY", "/not/a/config/key"),
                ("OTHER", "x"),
            ]),
            &Overrides {
                public_url: Some("wss://from-flag.example:8443".into()),
                ..Overrides::default()
            },
        )
        .unwrap();
        assert_eq!(config.listen, "127.0.0.1:9000".parse().unwrap());
        assert_eq!(config.limits.max_batch, 3);
        assert_eq!(config.limits.max_page, 9);
        assert!(!config.app);
        assert_eq!(config.origin(), "wss://from-flag.example:8443");
        assert_eq!(config.authority(), "from-flag.example:8443");
    }

    #[test]
    fn refuses_unknown_keys_and_bad_values_with_their_origin() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("n.toml");
        std::fs::write(&file, "[limits]\nmax_pages = 7\n").unwrap();
        let err = Config::load(Some(&file), [], &Overrides::default()).unwrap_err();
        assert!(err.to_string().contains("max_pages"), "{err}");
        assert!(err.to_string().contains("n.toml"), "{err}");

        // The variable at fault is named, not the good one beside it.
        let err = Config::load(
            None,
            env(&[
                ("NORTHSTAR_FANOUT", "4"),
                ("NORTHSTAR_LIMITS_MAX_PAGE", "many"),
            ]),
            &Overrides::default(),
        )
        .unwrap_err();
        assert!(
            err.to_string().contains(
                "from NORTHSTAR_LIMITS_MAX_PAGE: limits.max_page: invalid type: found string \"many\""
            ),
            "{err}"
        );

        // A bad value in the file: the key and the file, not the environment beside it.
        std::fs::write(&file, "fanout = 3\n[limits]\nmax_page = \"x\"\n").unwrap();
        let err = Config::load(
            Some(&file),
            env(&[("NORTHSTAR_FANOUT", "4")]),
            &Overrides::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("n.toml: limits.max_page: invalid type"),
            "{err}"
        );

        let err = Config::load(
            None,
            env(&[("NORTHSTAR_PUBLIC_URL", "http://x")]),
            &Overrides::default(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("ws://"), "{err}");
    }

    #[test]
    fn storage_is_chosen_by_the_url_and_a_bad_one_is_refused_at_load() {
        let load = |url: &str| {
            Config::load(
                None,
                env(&[("NORTHSTAR_STORAGE_URL", url)]),
                &Overrides::default(),
            )
        };
        let config = load("postgres://node:pw@db.example:5432/northstar").unwrap();
        assert!(matches!(
            config.storage().unwrap(),
            Storage::Postgres { .. }
        ));
        let config = load("").unwrap();
        // Empty is the embedded database in the data directory.
        assert_eq!(
            config.storage().unwrap().to_string(),
            format!("SQLite {}", config.data_dir.join("northstar.db").display())
        );
        let err = load("redis://node:pw@db.example/0")
            .unwrap_err()
            .to_string();
        assert!(err.contains("storage_url"), "{err}");
        assert!(err.contains("unknown scheme"), "{err}");
        assert!(!err.contains(":pw@"), "{err}");
    }

    #[test]
    fn a_zero_limit_or_stream_limit_is_refused_by_its_name() {
        let mut config = Config::default();
        config.limits.max_page = 0;
        let error = config.validate().unwrap_err().to_string();
        assert!(
            error.contains("limits.max_page must be at least 1"),
            "{error}"
        );
        let mut config = Config::default();
        config.streams.watcher_queue = 0;
        let error = config.validate().unwrap_err().to_string();
        assert!(
            error.contains("streams.watcher_queue must be at least 1"),
            "{error}"
        );
        assert!(Config::default().validate().is_ok());
    }

    #[test]
    fn nodes_are_dialled_with_the_scheme_of_the_own_origin() {
        assert_eq!(Config::dial_scheme("wss://node.example"), "wss");
        assert_eq!(Config::dial_scheme("ws://127.0.0.1:7000"), "ws");
    }

    #[test]
    fn origin_defaults_to_the_listen_address() {
        let config = Config::default();
        assert_eq!(config.origin(), "ws://127.0.0.1:7700");
        assert_eq!(config.authority(), "127.0.0.1:7700");
    }
}
