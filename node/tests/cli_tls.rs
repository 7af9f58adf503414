//! The CLI against `northstar serve` serving TLS itself, with a certificate of a test CA made
//! here: `--ca-file` (or `NORTHSTAR_CA_FILE`) makes client commands trust that CA; without it
//! they refuse the node and say it is the certificate.

mod serve;

use std::path::Path;

use serve::{Serve, new_key, northstar, one};

/// A CA, and a certificate it issued for 127.0.0.1 with its key, written to `dir`: the paths
/// of the CA certificate, the certificate and the key.
fn test_pki(dir: &Path) -> (String, String, String) {
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&leaf_key, &issuer)
        .unwrap();
    let write = |name: &str, text: String| {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    };
    (
        write("ca.pem", ca_cert.pem()),
        write("node.crt", leaf.pem()),
        write("node.key", leaf_key.serialize_pem()),
    )
}

#[test]
fn client_commands_trust_a_private_ca_given_with_ca_file() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = test_pki(dir.path());
    let node = Serve::start_with_env(
        &dir.path().join("node"),
        &[],
        &[("NORTHSTAR_TLS_CERT", &cert), ("NORTHSTAR_TLS_KEY", &key)],
    );
    assert!(node.url.starts_with("wss://127.0.0.1:"), "{}", node.url);
    let alice = new_key(dir.path(), "alice");

    // --ca-file: info, then a command that authenticates.
    let info = northstar()
        .args([
            "--node",
            &node.url,
            "--ca-file",
            &ca,
            "node",
            "info",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(
        info.status.success(),
        "{}",
        String::from_utf8_lossy(&info.stderr)
    );
    assert!(one(&info)["did"].as_str().unwrap().starts_with("did:key:"));
    let created = northstar()
        .args(["--node", &node.url, "--key"])
        .arg(&alice)
        .args([
            "space", "create", "--type", "channel", "--name", "Tls", "--id", "tls",
        ])
        .args(["--json"])
        .env("NORTHSTAR_CA_FILE", &ca)
        .output()
        .unwrap();
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );

    // Without the CA: refused, and the message says why.
    let refused = northstar()
        .args(["--node", &node.url, "node", "info"])
        .env_remove("NORTHSTAR_CA_FILE")
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("certificate"), "{stderr}");

    // A CA file that is not PEM is reported as such.
    let bad = dir.path().join("bad.pem");
    std::fs::write(&bad, "nothing here").unwrap();
    let refused = northstar()
        .args(["--node", &node.url, "--ca-file"])
        .arg(&bad)
        .args(["node", "info"])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("bad.pem"), "{stderr}");
}
