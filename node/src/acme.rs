//! ACME (RFC 8555): a certificate for `acme_domain`, obtained and renewed in the background and
//! served without a restart.
//!
//! The CA validates the domain with TLS-ALPN-01 (RFC 8737) on the node's own listener: while an
//! order is pending, [`Resolver`] answers handshakes that offer `acme-tls/1` with the
//! challenge's certificate. So the node needs no second port; `acme_domain` must reach the
//! node's listener on port 443.
//!
//! The account and the certificate live in `{data_dir}/acme/`, so a restart serves the stored
//! certificate and orders nothing until renewal is due: when a third of its lifetime is left
//! (30 days of Let's Encrypt's 90). A failed order is retried after a minute, the wait doubling
//! up to an hour; the certificate served so far stays meanwhile.
//!
//! The ACME client is `instant-acme`; its HTTP requests go through `Https`, a small client on
//! the node's own hyper and rustls, verifying the directory as peers are verified (the system's
//! roots plus `tls_ca`).

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, BodyWrapper, BytesResponse, ChallengeType,
    HttpClient, Identifier, NewAccount, NewOrder, OrderStatus, RetryPolicy,
};
use rustls::sign::CertifiedKey;
use rustls_pki_types::ServerName;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::tls::{Resolver, TlsError};

/// The first wait after a failed order; it doubles up to [`MAX_RETRY`].
const FIRST_RETRY: Duration = Duration::from_secs(60);
const MAX_RETRY: Duration = Duration::from_secs(3600);

/// How long one HTTP request to the CA may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// How long an order may take to become ready, and its certificate to be issued.
const ORDER_TIMEOUT: Duration = Duration::from_secs(120);

/// Why a certificate could not be obtained or stored.
#[derive(Debug, thiserror::Error)]
pub enum AcmeError {
    /// The CA refused, or could not be reached.
    #[error("ACME")]
    Protocol(#[from] instant_acme::Error),
    /// The CA offered no TLS-ALPN-01 challenge.
    #[error("the CA offers no tls-alpn-01 challenge for {domain}")]
    NoChallenge {
        /// The domain.
        domain: String,
    },
    /// An authorization or the order ended in a state other than valid.
    #[error("the {what} for {domain} is {status}")]
    NotValid {
        /// `authorization` or `order`.
        what: &'static str,
        /// The domain.
        domain: String,
        /// Its state.
        status: String,
    },
    /// The challenge certificate could not be made.
    #[error("cannot make the challenge certificate")]
    Challenge(#[from] rcgen::Error),
    /// A file in the ACME directory could not be read or written.
    #[error("cannot use {path}")]
    File {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The stored account could not be read.
    #[error("{path} is not an ACME account this node wrote")]
    Account {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// The certificate could not be used.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The certificate's validity could not be read.
    #[error("cannot read the validity of the certificate: {0}")]
    Validity(String),
}

/// What ACME needs: the domain, the CA and where to keep things.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The domain to certify.
    pub domain: String,
    /// The contact address, if any.
    pub email: Option<String>,
    /// The directory URL.
    pub directory: String,
    /// `{data_dir}/acme`.
    pub dir: PathBuf,
}

/// The account as stored: with the directory it belongs to, so that a new `acme_directory`
/// gets an account of its own.
#[derive(Serialize, Deserialize)]
struct StoredAccount {
    directory: String,
    credentials: AccountCredentials,
}

/// A certificate being served and when it should be renewed.
struct Served {
    renew_at: SystemTime,
}

/// Start serving the stored certificate, if there is one, through `resolver`, and obtain and
/// renew one in the background until `stop`. `tls` verifies the directory.
pub fn spawn(
    settings: Settings,
    resolver: Arc<Resolver>,
    tls: rustls::ClientConfig,
    tasks: &TaskTracker,
    stop: CancellationToken,
) -> Result<(), AcmeError> {
    std::fs::create_dir_all(&settings.dir).map_err(|source| AcmeError::File {
        path: settings.dir.clone(),
        source,
    })?;
    let acme = Acme {
        settings,
        resolver,
        http: Https(Arc::new(tls)),
    };
    let mut served = match acme.load_stored() {
        Ok(served) => served,
        Err(e) => {
            tracing::warn!(error = %crate::report::Causes(&e), "the stored ACME certificate is unusable; ordering a new one");
            None
        }
    };
    tasks.spawn(async move {
        let mut failures = 0u32;
        loop {
            let wait = served.as_ref().map_or(Duration::ZERO, |s| {
                s.renew_at
                    .duration_since(SystemTime::now())
                    .unwrap_or_default()
            });
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(wait) => {}
            }
            let obtained = tokio::select! {
                () = stop.cancelled() => return,
                obtained = acme.obtain() => obtained,
            };
            match obtained {
                Ok(now) => {
                    failures = 0;
                    served = Some(now);
                }
                Err(e) => {
                    let retry = FIRST_RETRY
                        .saturating_mul(1 << failures.min(6))
                        .min(MAX_RETRY);
                    failures = failures.saturating_add(1);
                    tracing::error!(domain = %acme.settings.domain, error = %crate::report::Causes(&e), retry_secs = retry.as_secs(), "cannot obtain a certificate by ACME");
                    tokio::select! {
                        () = stop.cancelled() => return,
                        () = tokio::time::sleep(retry) => {}
                    }
                }
            }
        }
    });
    Ok(())
}

struct Acme {
    settings: Settings,
    resolver: Arc<Resolver>,
    http: Https,
}

impl Acme {
    fn cert_path(&self) -> PathBuf {
        self.settings
            .dir
            .join(format!("{}.cert.pem", self.settings.domain))
    }

    fn key_path(&self) -> PathBuf {
        self.settings
            .dir
            .join(format!("{}.key.pem", self.settings.domain))
    }

    fn account_path(&self) -> PathBuf {
        self.settings.dir.join("account.json")
    }

    /// Serve the stored certificate, if there is one.
    fn load_stored(&self) -> Result<Option<Served>, AcmeError> {
        let (cert, key) = (self.cert_path(), self.key_path());
        if !cert.exists() || !key.exists() {
            return Ok(None);
        }
        self.install(&cert, &key).map(Some)
    }

    /// Serve the certificate in `cert` with `key` from the next handshake on.
    fn install(&self, cert: &Path, key: &Path) -> Result<Served, AcmeError> {
        let certified = crate::tls::load_certified(cert, key)?;
        let renew_at = renewal_time(&certified)?;
        self.resolver.set(certified);
        tracing::info!(domain = %self.settings.domain, renew_in_secs = renew_at.duration_since(SystemTime::now()).unwrap_or_default().as_secs(), "serving the ACME certificate");
        Ok(Served { renew_at })
    }

    /// The account: the stored one for this directory, or a new one.
    async fn account(&self) -> Result<Account, AcmeError> {
        let path = self.account_path();
        if let Ok(text) = std::fs::read_to_string(&path) {
            let stored: StoredAccount =
                serde_json::from_str(&text).map_err(|source| AcmeError::Account {
                    path: path.clone(),
                    source,
                })?;
            if stored.directory == self.settings.directory {
                return Ok(Account::builder_with_http(Box::new(self.http.clone()))
                    .from_credentials(stored.credentials)
                    .await?);
            }
        }
        let contact = self
            .settings
            .email
            .as_ref()
            .map(|email| format!("mailto:{email}"));
        let contacts: Vec<&str> = contact.iter().map(String::as_str).collect();
        let (account, credentials) = Account::builder_with_http(Box::new(self.http.clone()))
            .create(
                &NewAccount {
                    contact: &contacts,
                    terms_of_service_agreed: true,
                    only_return_existing: false,
                },
                self.settings.directory.clone(),
                None,
            )
            .await?;
        let stored = StoredAccount {
            directory: self.settings.directory.clone(),
            credentials,
        };
        let text = serde_json::to_string(&stored).map_err(|source| AcmeError::Account {
            path: path.clone(),
            source,
        })?;
        write_private(&path, text.as_bytes())?;
        tracing::info!(directory = %self.settings.directory, "created an ACME account");
        Ok(account)
    }

    /// Order a certificate, answer its challenge, store and serve it.
    async fn obtain(&self) -> Result<Served, AcmeError> {
        let domain = self.settings.domain.clone();
        tracing::info!(domain = %domain, directory = %self.settings.directory, "ordering a certificate by ACME");
        let account = self.account().await?;
        let identifiers = [Identifier::Dns(domain.clone())];
        let mut order = account.new_order(&NewOrder::new(&identifiers)).await?;
        let result = self.answer_and_finish(&mut order).await;
        // The challenge certificate goes whatever happened.
        self.resolver.clear_challenge(&domain);
        let (chain, key) = result?;
        let (cert_path, key_path) = (self.cert_path(), self.key_path());
        // The key first: a certificate on disk always has its key beside it.
        write_private(&key_path, key.as_bytes())?;
        write_private(&cert_path, chain.as_bytes())?;
        self.install(&cert_path, &key_path)
    }

    /// The certificate chain and its key, in PEM.
    async fn answer_and_finish(
        &self,
        order: &mut instant_acme::Order,
    ) -> Result<(String, String), AcmeError> {
        let domain = &self.settings.domain;
        let mut authorizations = order.authorizations();
        while let Some(authorization) = authorizations.next().await {
            let mut authorization = authorization?;
            match authorization.status {
                AuthorizationStatus::Pending => {}
                AuthorizationStatus::Valid => continue,
                other => {
                    return Err(AcmeError::NotValid {
                        what: "authorization",
                        domain: domain.clone(),
                        status: format!("{other:?}"),
                    });
                }
            }
            let mut challenge = authorization
                .challenge(ChallengeType::TlsAlpn01)
                .ok_or_else(|| AcmeError::NoChallenge {
                    domain: domain.clone(),
                })?;
            let certified = challenge_certificate(domain, challenge.key_authorization().digest())?;
            self.resolver.set_challenge(domain, certified);
            challenge.set_ready().await?;
        }
        let retries = RetryPolicy::new().timeout(ORDER_TIMEOUT);
        let status = order.poll_ready(&retries).await?;
        if status != OrderStatus::Ready {
            return Err(AcmeError::NotValid {
                what: "order",
                domain: domain.clone(),
                status: format!("{status:?}"),
            });
        }
        let key = order.finalize().await?;
        let chain = order.poll_certificate(&retries).await?;
        Ok((chain, key))
    }
}

/// The self-signed certificate that answers a TLS-ALPN-01 challenge for `domain`: its only
/// name is `domain`, and its critical `acmeIdentifier` extension holds `digest`, the SHA-256 of
/// the key authorization (RFC 8737 §3).
fn challenge_certificate(
    domain: &str,
    digest: impl AsRef<[u8]>,
) -> Result<CertifiedKey, AcmeError> {
    let mut params = rcgen::CertificateParams::new(vec![domain.to_owned()])?;
    params.custom_extensions = vec![rcgen::CustomExtension::new_acme_identifier(digest.as_ref())];
    let key = rcgen::KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    let private = rustls_pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
    // Not `from_der`: its check that key and certificate match parses the certificate with
    // WebPKI, which refuses the critical extension this certificate must have.
    let signing = crate::tls::provider()
        .key_provider
        .load_private_key(private)
        .map_err(|e| AcmeError::Tls(TlsError::Setup(e)))?;
    Ok(CertifiedKey::new(vec![cert.der().clone()], signing))
}

/// When the certificate should be renewed: when a third of its lifetime is left.
fn renewal_time(certified: &CertifiedKey) -> Result<SystemTime, AcmeError> {
    use x509_cert::der::Decode;
    let leaf = certified.end_entity_cert().map_err(|e| {
        AcmeError::Validity(format!("the certificate file holds no certificate: {e}"))
    })?;
    let cert = x509_cert::Certificate::from_der(leaf.as_ref())
        .map_err(|e| AcmeError::Validity(e.to_string()))?;
    let validity = cert.tbs_certificate().validity();
    let not_before = SystemTime::UNIX_EPOCH + validity.not_before.to_date_time().unix_duration();
    let not_after = SystemTime::UNIX_EPOCH + validity.not_after.to_date_time().unix_duration();
    let lifetime = not_after.duration_since(not_before).unwrap_or_default();
    Ok(not_after
        .checked_sub(lifetime / 3)
        .unwrap_or(SystemTime::UNIX_EPOCH))
}

/// Write `data` to `path`, readable by the node's user only, replacing the file at once.
fn write_private(path: &Path, data: &[u8]) -> Result<(), AcmeError> {
    let io = |source| AcmeError::File {
        path: path.to_owned(),
        source,
    };
    let temporary = path.with_extension("tmp");
    {
        use std::io::Write;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(&temporary).map_err(io)?;
        file.write_all(data).map_err(io)?;
        file.sync_all().map_err(io)?;
    }
    std::fs::rename(&temporary, path).map_err(io)
}

/// instant-acme's HTTP client: one HTTPS/1.1 connection per request, verified by the node's
/// dial settings. ACME makes a handful of requests per order, so no pool.
#[derive(Clone)]
struct Https(Arc<rustls::ClientConfig>);

impl HttpClient for Https {
    fn request(
        &self,
        req: http::Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>> {
        let tls = self.0.clone();
        Box::pin(async move {
            tokio::time::timeout(REQUEST_TIMEOUT, send(tls, req))
                .await
                .unwrap_or_else(|_| Err("the ACME server did not answer in time".into()))
                .map_err(instant_acme::Error::Other)
        })
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

async fn send(
    tls: Arc<rustls::ClientConfig>,
    req: http::Request<BodyWrapper<Bytes>>,
) -> Result<BytesResponse, BoxError> {
    let uri = req.uri().clone();
    if uri.scheme_str() != Some("https") {
        return Err(format!("{uri} is not an https:// URL").into());
    }
    let host = uri.host().ok_or("the URL names no host")?.to_owned();
    let port = uri.port_u16().unwrap_or(443);
    let tcp = tokio::net::TcpStream::connect((host.as_str(), port)).await?;
    let name = ServerName::try_from(host.trim_start_matches('[').trim_end_matches(']'))?.to_owned();
    let stream = tokio_rustls::TlsConnector::from(tls)
        .connect(name, tcp)
        .await?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    // The request line carries the path only; the host goes in its header.
    let (mut parts, body) = req.into_parts();
    let authority = uri.authority().ok_or("the URL names no host")?.as_str();
    parts
        .headers
        .insert(http::header::HOST, http::HeaderValue::from_str(authority)?);
    parts.uri = uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .parse::<http::Uri>()?;
    let request = http::Request::from_parts(parts, body);
    let exchange = async {
        let response = sender.send_request(request).await?;
        let (parts, body) = response.into_parts();
        let body = body.collect().await?.to_bytes();
        Ok::<_, BoxError>((parts, body))
    };
    let mut connection = std::pin::pin!(connection);
    let mut exchange = std::pin::pin!(exchange);
    let (parts, body) = tokio::select! {
        biased;
        done = &mut exchange => done?,
        ended = &mut connection => {
            ended?;
            exchange.await?
        }
    };
    Ok(BytesResponse::from(http::Response::from_parts(
        parts,
        BodyWrapper::from(body.to_vec()),
    )))
}
