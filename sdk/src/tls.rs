//! [`Trust`]: which certificates a client accepts from a node it dials over `wss://`.
//!
//! By default, those that verify (WebPKI) against the system's roots. An app that talks to
//! nodes with certificates of a private CA adds that CA's certificate(s) in PEM; they are
//! trusted in addition to the system's roots, for the client's connection and its stream
//! connections alike.

use std::path::Path;
use std::sync::Arc;

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

/// Why extra CA certificates could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    /// The file could not be read.
    #[error("cannot read CA file {path}")]
    Read {
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The PEM holds no certificate, or one that does not parse.
    #[error("{what} holds no PEM certificate{reason}")]
    Pem {
        /// The file, or "the PEM given".
        what: String,
        /// What the parser said, if anything (`": …"`).
        reason: String,
    },
    /// rustls refused the settings.
    #[error("cannot set up TLS")]
    Setup(#[source] rustls::Error),
}

/// The certificates a client trusts on `wss://`: the system's roots, plus any CA certificates
/// added here. `Trust::default()` is the system's roots alone.
#[derive(Debug, Clone, Default)]
pub struct Trust {
    extra: Vec<CertificateDer<'static>>,
}

impl Trust {
    /// The system's roots alone.
    pub fn system() -> Self {
        Self::default()
    }

    /// Trust also the CA certificates in `pem` (one or more `CERTIFICATE` blocks).
    pub fn with_ca_pem(mut self, pem: &[u8]) -> Result<Self, TrustError> {
        self.extra.extend(parse(pem, "the PEM given".to_owned())?);
        Ok(self)
    }

    /// Trust also the CA certificates in the PEM file at `path`.
    pub fn with_ca_file(mut self, path: impl AsRef<Path>) -> Result<Self, TrustError> {
        let path = path.as_ref();
        let pem = std::fs::read(path).map_err(|source| TrustError::Read {
            path: path.display().to_string(),
            source,
        })?;
        self.extra.extend(parse(&pem, path.display().to_string())?);
        Ok(self)
    }

    /// How many CA certificates were added.
    pub fn extra_count(&self) -> usize {
        self.extra.len()
    }

    /// The rustls settings that verify as this says.
    pub(crate) fn client_config(&self) -> Result<Arc<rustls::ClientConfig>, TrustError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier =
            rustls_platform_verifier::Verifier::new_with_extra_roots(self.extra.iter().cloned())
                .map_err(TrustError::Setup)?
                .with_provider(provider.clone());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(TrustError::Setup)?
            .dangerous()
            // The platform's verifier, with the extra roots: the checks are WebPKI's.
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_no_client_auth();
        Ok(Arc::new(config))
    }
}

fn parse(pem: &[u8], what: String) -> Result<Vec<CertificateDer<'static>>, TrustError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TrustError::Pem {
            what: what.clone(),
            reason: format!(": {e}"),
        })?;
    if certs.is_empty() {
        return Err(TrustError::Pem {
            what,
            reason: String::new(),
        });
    }
    Ok(certs)
}
