//! Test certificates made in-process (a CA and the leaf certificates it issues), and HTTPS and
//! TLS probes of a node.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::TIMEOUT;

/// A certificate authority of the tests' own.
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    pub pem: String,
}

impl TestCa {
    pub fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Self {
            issuer: Issuer::new(params, key),
            pem: cert.pem(),
        }
    }

    /// A leaf certificate for `names` (DNS names or IP addresses) and its key, in PEM; `serial`
    /// tells two certificates for the same names apart.
    pub fn issue(&self, names: &[&str], serial: u64) -> (String, String) {
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        params.serial_number = Some(rcgen::SerialNumber::from(serial));
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    /// Write the CA certificate to `dir/{file}`.
    pub fn write(&self, dir: &Path, file: &str) -> PathBuf {
        let path = dir.join(file);
        std::fs::write(&path, &self.pem).unwrap();
        path
    }

    /// Issue a certificate for 127.0.0.1 and localhost and write it and its key to
    /// `dir/{stem}.crt` and `dir/{stem}.key`.
    pub fn write_leaf(&self, dir: &Path, stem: &str, serial: u64) -> (PathBuf, PathBuf) {
        let (cert, key) = self.issue(&["127.0.0.1", "localhost"], serial);
        let (cert_path, key_path) = (
            dir.join(format!("{stem}.crt")),
            dir.join(format!("{stem}.key")),
        );
        std::fs::write(&cert_path, cert).unwrap();
        std::fs::write(&key_path, key).unwrap();
        (cert_path, key_path)
    }
}

/// rustls settings trusting only the certificates in `ca_pem`.
pub fn client_config(ca_pem: &[u8]) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// A TLS connection to `addr` as `name`, verified against `ca_pem`.
pub async fn connect(
    addr: SocketAddr,
    name: &str,
    ca_pem: &[u8],
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from(name.to_owned()).unwrap();
    let connect = tokio_rustls::TlsConnector::from(client_config(ca_pem)).connect(name, tcp);
    tokio::time::timeout(TIMEOUT, connect).await.unwrap()
}

/// The leaf certificate `addr` serves now, on a new connection verified against `ca_pem`.
pub async fn served_certificate(addr: SocketAddr, ca_pem: &[u8]) -> Vec<u8> {
    let tls = connect(addr, "127.0.0.1", ca_pem).await.unwrap();
    let (_, session) = tls.get_ref();
    session.peer_certificates().unwrap()[0].to_vec()
}

/// `GET {path}` over HTTPS, verified against `ca_pem`: the status and the body.
pub async fn https_get(addr: SocketAddr, path: &str, ca_pem: &[u8]) -> (u16, String) {
    let mut tls = connect(addr, "127.0.0.1", ca_pem).await.unwrap();
    let head = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    tls.write_all(head.as_bytes()).await.unwrap();
    let mut reply = Vec::new();
    // A server may close without close_notify once it has answered; what came is the answer.
    let _ = tokio::time::timeout(TIMEOUT, tls.read_to_end(&mut reply))
        .await
        .unwrap();
    let reply = String::from_utf8(reply).unwrap();
    let (head, body) = reply.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, body.to_owned())
}

/// The DER of the first certificate in `pem`.
pub fn der_of(pem: &str) -> Vec<u8> {
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .next()
        .unwrap()
        .unwrap()
        .to_vec()
}
