//! TLS: the certificate the listener serves, and whom the node trusts when it dials.
//!
//! With `tls_cert` and `tls_key`, or with ACME ([`crate::acme`]), the listener speaks TLS on
//! its one port: `wss://` for WebSocket sessions and `https://` for the status pages. The
//! certificate served sits in a [`Resolver`], which can swap it while the node runs: SIGHUP
//! reads the files again ([`Resolver::reload`]), ACME installs each renewal. A reload that fails
//! leaves the certificate served before in place.
//!
//! Dials (peers over `wss://`, the ACME directory) verify the server's certificate with WebPKI
//! against the system's roots plus the certificates of `tls_ca` ([`client_config`]).
//!
//! Everything here uses the `ring` provider, the one jsonrpsee's client brings already.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// The ALPN protocol of ACME's TLS-ALPN-01 challenge (RFC 8737): a handshake that offers it
/// is the CA checking a challenge, answered with the challenge's certificate and then closed.
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// Why a certificate, key or CA file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The file could not be read.
    #[error("cannot read {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The file is not PEM, or holds no certificate.
    #[error("{path} holds no PEM certificate{reason}")]
    NoCertificate {
        /// The file.
        path: PathBuf,
        /// What the PEM parser said, if anything (`": …"`).
        reason: String,
    },
    /// The file holds no private key in PEM (PKCS#8, PKCS#1 or SEC1).
    #[error("{path} holds no usable PEM private key: {reason}")]
    Key {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// The key is not the certificate's.
    #[error("the key in {key} is not the key of the certificate in {cert}: {reason}")]
    Mismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// What rustls said.
        reason: String,
    },
    /// rustls refused the settings (a bug, or a platform without the protocol versions).
    #[error("cannot set up TLS: {0}")]
    Setup(#[from] rustls::Error),
}

/// The crypto provider of every TLS configuration the node builds.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The certificates in the PEM file at `path`, in order (a chain: the leaf first).
pub fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::NoCertificate {
            path: path.to_owned(),
            reason: format!(": {e}"),
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_owned(),
            reason: String::new(),
        });
    }
    Ok(certs)
}

/// The certificate chain in `cert` with the private key in `key`, checked to belong together.
pub fn load_certified(cert: &Path, key: &Path) -> Result<CertifiedKey, TlsError> {
    let chain = read_certificates(cert)?;
    let pem = std::fs::read(key).map_err(|source| TlsError::Read {
        path: key.to_owned(),
        source,
    })?;
    let private = PrivateKeyDer::from_pem_slice(&pem).map_err(|e| TlsError::Key {
        path: key.to_owned(),
        reason: e.to_string(),
    })?;
    CertifiedKey::from_der(chain, private, &provider()).map_err(|e| TlsError::Mismatch {
        cert: cert.to_owned(),
        key: key.to_owned(),
        reason: e.to_string(),
    })
}

/// The certificate the listener serves, swappable while the node runs, and the certificates
/// of pending ACME TLS-ALPN-01 challenges.
#[derive(Debug, Default)]
pub struct Resolver {
    current: RwLock<Option<Arc<CertifiedKey>>>,
    /// Where the served certificate's files are, if it comes from files.
    files: Option<(PathBuf, PathBuf)>,
    /// By domain.
    challenges: Mutex<HashMap<String, Arc<CertifiedKey>>>,
}

impl Resolver {
    /// A resolver serving the certificate in `cert` with the key in `key`: both are read now,
    /// and again on each [`Resolver::reload`].
    pub fn from_files(cert: &Path, key: &Path) -> Result<Self, TlsError> {
        let certified = load_certified(cert, key)?;
        Ok(Self {
            current: RwLock::new(Some(Arc::new(certified))),
            files: Some((cert.to_owned(), key.to_owned())),
            challenges: Mutex::default(),
        })
    }

    /// Read the files again and serve what they hold from the next handshake on. On an error
    /// the certificate served so far stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let Some((cert, key)) = &self.files else {
            return Ok(());
        };
        let certified = load_certified(cert, key)?;
        self.set(certified);
        Ok(())
    }

    /// Whether the served certificate comes from files that [`Resolver::reload`] reads.
    pub fn has_files(&self) -> bool {
        self.files.is_some()
    }

    /// Serve `certified` from the next handshake on.
    pub fn set(&self, certified: CertifiedKey) {
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(certified));
    }

    /// Whether there is a certificate to serve.
    pub fn has_certificate(&self) -> bool {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
    }

    /// Answer TLS-ALPN-01 handshakes for `domain` with `certified` until
    /// [`Resolver::clear_challenge`].
    pub fn set_challenge(&self, domain: &str, certified: CertifiedKey) {
        self.challenges
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(domain.to_ascii_lowercase(), Arc::new(certified));
    }

    /// Stop answering TLS-ALPN-01 handshakes for `domain`.
    pub fn clear_challenge(&self, domain: &str) {
        self.challenges
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&domain.to_ascii_lowercase());
    }
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let challenge = hello
            .alpn()
            .is_some_and(|mut offered| offered.any(|p| p == ACME_TLS_ALPN));
        if challenge {
            // Only the challenge certificate answers a validation handshake (RFC 8737 §3).
            let name = hello.server_name()?.to_ascii_lowercase();
            return self
                .challenges
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&name)
                .cloned();
        }
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// The listener's TLS settings: certificates from `resolver`; with `acme`, the ALPN protocols
/// `http/1.1` and [`ACME_TLS_ALPN`], else no ALPN at all (any client's offer is fine).
pub fn acceptor(
    resolver: Arc<Resolver>,
    acme: bool,
) -> Result<tokio_rustls::TlsAcceptor, TlsError> {
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    if acme {
        config.alpn_protocols = vec![b"http/1.1".to_vec(), ACME_TLS_ALPN.to_vec()];
    }
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// How the node verifies servers it dials: WebPKI against the system's roots plus the
/// certificates in the PEM file `extra_ca`, if given.
pub fn client_config(extra_ca: Option<&Path>) -> Result<rustls::ClientConfig, TlsError> {
    let extra = match extra_ca {
        Some(path) => read_certificates(path)?,
        None => Vec::new(),
    };
    let verifier =
        rustls_platform_verifier::Verifier::new_with_extra_roots(extra)?.with_provider(provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth())
}

/// How rustls's `Error::InvalidCertificate` reads.
const INVALID_CERTIFICATE: &str = "invalid peer certificate";

/// Whether `error`, or one of its causes, is a certificate that did not verify.
pub fn is_certificate_error(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(error);
    while let Some(e) = next {
        // jsonrpsee's handshake error shows the I/O error that holds rustls's but does not
        // give it as a source, so its text is all there is: rustls's own wording.
        if e.to_string().contains(INVALID_CERTIFICATE) {
            return true;
        }
        let rustls_error = e.downcast_ref::<rustls::Error>().or_else(|| {
            e.downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        });
        if matches!(
            rustls_error,
            Some(rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented)
        ) {
            return true;
        }
        next = e.source();
    }
    false
}

/// Reload `resolver`'s files on each SIGHUP until `stop`. A reload that fails is logged with
/// its cause, and the certificate served so far stays.
pub fn reload_on_sighup(
    resolver: Arc<Resolver>,
    tasks: &tokio_util::task::TaskTracker,
    stop: tokio_util::sync::CancellationToken,
) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut hangups = match signal(SignalKind::hangup()) {
            Ok(hangups) => hangups,
            Err(e) => {
                tracing::warn!(error = %crate::report::Causes(&e), "cannot watch SIGHUP; the TLS certificate is not reloaded");
                return;
            }
        };
        tasks.spawn(async move {
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    got = hangups.recv() => if got.is_none() { return },
                }
                match resolver.reload() {
                    Ok(()) => tracing::info!("TLS certificate reloaded"),
                    Err(e) => tracing::error!(
                        error = %crate::report::Causes(&e),
                        "cannot reload the TLS certificate; still serving the one loaded before"
                    ),
                }
            }
        });
    }
    #[cfg(not(unix))]
    let _ = (resolver, tasks, stop);
}

/// A connection to a peer's port: plain, or TLS when links dial `wss://`.
pub enum PeerStream {
    /// `ws://` federations.
    Plain(tokio::net::TcpStream),
    /// `wss://` federations, the peer's certificate verified.
    Tls(Box<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>),
}

impl tokio::io::AsyncRead for PeerStream {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            PeerStream::Plain(s) => std::pin::Pin::new(s).poll_read(cx, buf),
            PeerStream::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl tokio::io::AsyncWrite for PeerStream {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        match self.get_mut() {
            PeerStream::Plain(s) => std::pin::Pin::new(s).poll_write(cx, buf),
            PeerStream::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            PeerStream::Plain(s) => std::pin::Pin::new(s).poll_flush(cx),
            PeerStream::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            PeerStream::Plain(s) => std::pin::Pin::new(s).poll_shutdown(cx),
            PeerStream::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_invalid_certificate_is_told_by_type_or_by_rustls_wording() {
        let unknown = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        assert!(unknown.to_string().contains(INVALID_CERTIFICATE));
        let wrapped = std::io::Error::new(std::io::ErrorKind::InvalidData, unknown);
        assert!(is_certificate_error(&wrapped));
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert!(!is_certificate_error(&refused));
    }
}
