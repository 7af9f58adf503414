//! Links to other nodes: dialled on demand, authenticated both ways, pooled, retried with backoff.
//!
//! A node dials `{scheme}://{authority}` with the scheme of its own public URL (a federation
//! runs all on `ws://` or all on `wss://`). It checks the peer's challenge (signed by the peer's
//! node key, naming the URL dialled), answers it as itself, then asks the peer to answer a
//! challenge of its own (`fed.prove`): so each side knows the other's node DID. One connection
//! per peer is kept and shared; after a failure the peer is not dialled again before its backoff
//! has passed (100 ms doubling to 10 s).
//!
//! Over `wss://` the peer's certificate must verify (WebPKI, the system's roots plus `tls_ca`:
//! [`crate::tls::client_config`]); a peer whose certificate does not is refused before any
//! call, counted as the dial outcome `certificate` and logged with the reason.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jsonrpsee::core::ClientError;
use jsonrpsee::ws_client::{WsClient, WsClientBuilder};
use northstar_protocol::Did;
use northstar_protocol::rpc::{AuthApiClient, FedApiClient, NodeApiClient};
use northstar_protocol::wire::{AuthChallenge, AuthResponse};
use northstar_protocol::{Keypair, PROTOCOL_VERSION};

use crate::clock::now_ms;

/// How long a dial, a handshake step or a call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// The first wait after a failed dial; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// The largest message this node sends or accepts on a link.
const MAX_MESSAGE: u32 = 16 * 1024 * 1024;

/// Why a peer could not be reached or did not prove who it is.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LinkError {
    /// The peer failed recently and its backoff has not passed.
    #[error("{authority} is backing off after a failure")]
    BackingOff {
        /// The peer.
        authority: String,
    },
    /// Dialling or a call failed.
    #[error("{authority}: {reason}")]
    Transport {
        /// The peer.
        authority: String,
        /// What failed.
        reason: String,
    },
    /// The peer's TLS certificate did not verify.
    #[error("{authority}: its TLS certificate does not verify: {reason}")]
    Certificate {
        /// The peer.
        authority: String,
        /// What failed.
        reason: String,
    },
    /// The peer's handshake did not check out.
    #[error("{authority} failed the node handshake: {reason}")]
    Handshake {
        /// The peer.
        authority: String,
        /// What was wrong.
        reason: String,
    },
    /// The peer answered with an error object.
    #[error("{authority} refused: {message} ({code})")]
    Refused {
        /// The peer.
        authority: String,
        /// The error code.
        code: i32,
        /// The peer's message.
        message: String,
    },
}

impl LinkError {
    /// The error for a failed call to `authority`.
    pub fn from_call(authority: &str, e: ClientError) -> Self {
        match e {
            ClientError::Call(obj) => LinkError::Refused {
                authority: authority.to_owned(),
                code: obj.code(),
                message: obj.message().to_owned(),
            },
            other => LinkError::Transport {
                authority: authority.to_owned(),
                reason: other.to_string(),
            },
        }
    }
}

/// An authenticated connection to a peer.
#[derive(Debug, Clone)]
pub struct Link {
    /// The RPC client.
    pub client: Arc<WsClient>,
    /// The node DID the peer proved.
    pub did: Did,
    /// The peer's authority.
    pub authority: String,
}

#[derive(Debug, Default)]
struct Peer {
    link: tokio::sync::Mutex<Option<Link>>,
    backoff: Mutex<Backoff>,
}

#[derive(Debug, Default)]
struct Backoff {
    failures: u32,
    until: Option<Instant>,
}

/// The pool of links to other nodes.
#[derive(Debug)]
pub struct Links {
    key: Keypair,
    origin: String,
    scheme: &'static str,
    peers: Mutex<HashMap<String, Arc<Peer>>>,
    metrics: Option<Arc<crate::metrics::Metrics>>,
    /// How `wss://` peers are verified; `None`: jsonrpsee's default (the system's roots).
    tls: Option<rustls::ClientConfig>,
}

impl Links {
    /// Links for the node with `key`, whose own public origin is `origin`.
    pub fn new(key: Keypair, origin: String) -> Self {
        let scheme = crate::config::Config::dial_scheme(&origin);
        Self {
            key,
            origin,
            scheme,
            peers: Mutex::new(HashMap::new()),
            metrics: None,
            tls: None,
        }
    }

    /// Verify `wss://` peers as `tls` says ([`crate::tls::client_config`]).
    pub fn with_tls(mut self, tls: rustls::ClientConfig) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Open a plain TCP connection to a peer's port, wrapped in TLS when links dial `wss://`
    /// (verified as links are), for HTTP exchanges beside the link such as a blob fetch.
    pub async fn connect_http(&self, authority: &str) -> std::io::Result<crate::tls::PeerStream> {
        let tcp = tokio::net::TcpStream::connect(authority).await?;
        if self.scheme != "wss" {
            return Ok(crate::tls::PeerStream::Plain(tcp));
        }
        let config = match &self.tls {
            Some(tls) => tls.clone(),
            None => crate::tls::client_config(None).map_err(std::io::Error::other)?,
        };
        let host = authority
            .rsplit_once(':')
            .map_or(authority, |(host, _)| host)
            .trim_start_matches('[')
            .trim_end_matches(']');
        let name = rustls::pki_types::ServerName::try_from(host.to_owned())
            .map_err(std::io::Error::other)?;
        let stream = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
            .connect(name, tcp)
            .await?;
        Ok(crate::tls::PeerStream::Tls(Box::new(stream)))
    }

    /// Count links made and failed dials in `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<crate::metrics::Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    fn count_dial(&self, outcome: &'static str) {
        if let Some(metrics) = &self.metrics {
            metrics
                .dials
                .get_or_create(&crate::metrics::OutcomeLabel { outcome })
                .inc();
        }
    }

    /// The link to `authority`, dialling and authenticating if there is none.
    pub async fn get(&self, authority: &str) -> Result<Link, LinkError> {
        let peer = {
            let mut peers = self.peers.lock().unwrap_or_else(|p| p.into_inner());
            peers.entry(authority.to_owned()).or_default().clone()
        };
        let mut slot = peer.link.lock().await;
        if let Some(link) = slot.as_ref().filter(|l| l.client.is_connected()) {
            return Ok(link.clone());
        }
        {
            let backoff = peer.backoff.lock().unwrap_or_else(|p| p.into_inner());
            if backoff.until.is_some_and(|until| Instant::now() < until) {
                return Err(LinkError::BackingOff {
                    authority: authority.to_owned(),
                });
            }
        }
        let dialled = tokio::time::timeout(CALL_TIMEOUT * 2, self.dial(authority))
            .await
            .unwrap_or_else(|_| {
                Err(LinkError::Transport {
                    authority: authority.to_owned(),
                    reason: "handshake timed out".into(),
                })
            });
        let mut backoff = peer.backoff.lock().unwrap_or_else(|p| p.into_inner());
        match dialled {
            Ok(link) => {
                self.count_dial("ok");
                *backoff = Backoff::default();
                tracing::debug!(peer = %authority, did = %link.did, "linked");
                *slot = Some(link.clone());
                Ok(link)
            }
            Err(e) => {
                self.count_dial(match e {
                    LinkError::Handshake { .. } => "handshake",
                    LinkError::Certificate { .. } => "certificate",
                    LinkError::Refused { .. } => "refused",
                    LinkError::Transport { .. } | LinkError::BackingOff { .. } => "transport",
                });
                let wait = FIRST_BACKOFF
                    .saturating_mul(1 << backoff.failures.min(8))
                    .min(MAX_BACKOFF);
                backoff.failures = backoff.failures.saturating_add(1);
                backoff.until = Some(Instant::now() + wait);
                *slot = None;
                if let LinkError::Certificate { reason, .. } = &e {
                    // Not the peer's passing trouble: someone must fix a certificate or tls_ca.
                    tracing::warn!(peer = %authority, reason = %reason, "refused a peer: its TLS certificate does not verify");
                }
                tracing::debug!(peer = %authority, error = %crate::report::Causes(&e), ?wait, "link failed");
                Err(e)
            }
        }
    }

    /// Forget a link that failed mid-call, so the next use dials again.
    pub async fn drop_link(&self, authority: &str) {
        let peer = {
            let peers = self.peers.lock().unwrap_or_else(|p| p.into_inner());
            peers.get(authority).cloned()
        };
        if let Some(peer) = peer {
            *peer.link.lock().await = None;
        }
    }

    async fn dial(&self, authority: &str) -> Result<Link, LinkError> {
        let url = format!("{}://{authority}", self.scheme);
        let transport = |reason: String| LinkError::Transport {
            authority: authority.to_owned(),
            reason,
        };
        let handshake = |reason: String| LinkError::Handshake {
            authority: authority.to_owned(),
            reason,
        };
        let mut builder = WsClientBuilder::default()
            .max_request_size(MAX_MESSAGE)
            .max_response_size(MAX_MESSAGE)
            .request_timeout(CALL_TIMEOUT)
            .connection_timeout(CALL_TIMEOUT);
        if let Some(tls) = &self.tls {
            builder = builder.with_custom_cert_store(tls.clone());
        }
        let client = builder.build(&url).await.map_err(|e| {
            if crate::tls::is_certificate_error(&e) {
                LinkError::Certificate {
                    authority: authority.to_owned(),
                    reason: crate::report::Causes(&e).to_string(),
                }
            } else {
                transport(e.to_string())
            }
        })?;
        let info = NodeApiClient::info(&client)
            .await
            .map_err(|e| LinkError::from_call(authority, e))?;
        if info.protocol != PROTOCOL_VERSION {
            return Err(handshake(format!(
                "it speaks Northstar protocol version {}, this node speaks version {PROTOCOL_VERSION}",
                info.protocol
            )));
        }
        let theirs = AuthApiClient::challenge(&client)
            .await
            .map_err(|e| LinkError::from_call(authority, e))?;
        theirs
            .verify()
            .map_err(|_| handshake("its challenge's signature does not verify".into()))?;
        if !northstar_protocol::address::same_origin(&theirs.origin, &url) {
            return Err(handshake(format!(
                "its challenge names origin {:?}, we dialled {url:?}",
                theirs.origin
            )));
        }
        let answer = AuthResponse::answer(&self.key, theirs.clone())
            .map_err(|e| handshake(e.to_string()))?;
        AuthApiClient::respond(&client, answer)
            .await
            .map_err(|e| LinkError::from_call(authority, e))?;
        let now = now_ms();
        let mine = AuthChallenge::issue(&self.key, &self.origin, now, now + 30_000)
            .map_err(|e| handshake(e.to_string()))?;
        let proof = FedApiClient::prove(&client, mine.clone())
            .await
            .map_err(|e| LinkError::from_call(authority, e))?;
        if proof.did != theirs.node || proof.challenge != mine || proof.verify().is_err() {
            return Err(handshake(
                "its proof does not answer our challenge as the node that challenged us".into(),
            ));
        }
        Ok(Link {
            client: Arc::new(client),
            did: theirs.node,
            authority: authority.to_owned(),
        })
    }
}

/// The links of a node by state, for the metrics: `up` (connected), `dialling`, `backing_off`
/// (the last dial failed; the next waits), `down` (closed, to be dialled at the next use).
#[derive(Debug, Default)]
pub struct LinkStates {
    links: Mutex<std::sync::Weak<Links>>,
}

impl LinkStates {
    /// Report the states of `links` from now on.
    pub fn watch(&self, links: &Arc<Links>) {
        *self.links.lock().unwrap_or_else(|p| p.into_inner()) = Arc::downgrade(links);
    }

    /// Links per state, in the order `up`, `dialling`, `backing_off`, `down`.
    fn count(&self) -> [(&'static str, i64); 4] {
        let mut counts = [("up", 0), ("dialling", 0), ("backing_off", 0), ("down", 0)];
        let Some(links) = self
            .links
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .upgrade()
        else {
            return counts;
        };
        let peers: Vec<Arc<Peer>> = links
            .peers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        let now = Instant::now();
        for peer in peers {
            let state = match peer.link.try_lock() {
                // A dial holds the slot while it runs.
                Err(_) => 1,
                Ok(slot) if slot.as_ref().is_some_and(|l| l.client.is_connected()) => 0,
                Ok(_) => {
                    let backoff = peer.backoff.lock().unwrap_or_else(|p| p.into_inner());
                    if backoff.until.is_some_and(|until| now < until) {
                        2
                    } else {
                        3
                    }
                }
            };
            counts[state].1 += 1;
        }
        counts
    }
}

/// The label of [`LinkStates`]' series.
#[derive(Debug, Clone, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct StateLabel {
    state: &'static str,
}

impl prometheus_client::collector::Collector for LinkStates {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::DescriptorEncoder,
    ) -> Result<(), std::fmt::Error> {
        use prometheus_client::encoding::EncodeMetric;
        let mut metric = encoder.encode_descriptor(
            "federation_links",
            "links to other nodes, by state: up, dialling, backing_off (the last dial failed), down",
            None,
            prometheus_client::metrics::MetricType::Gauge,
        )?;
        for (state, count) in self.count() {
            prometheus_client::metrics::gauge::ConstGauge::new(count)
                .encode(metric.encode_family(&StateLabel { state })?)?;
        }
        Ok(())
    }
}
