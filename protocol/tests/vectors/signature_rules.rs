//! The signature rule of `spec/` §3.4 at its edges: the stored cases of `signature_rules`
//! (built by `tests/tests/vectors/signature_rules.rs`) and the answer every node must give.

#[path = "oracles.rs"]
mod oracles;

use northstar_protocol::Did;
use northstar_protocol::sign::{Batch, Signature};
use oracles::{strict, zip215};
use serde_json::Value;

/// Every stored case gives its answer alone, in a batch with an honest signature, and in a
/// batch by itself; and the informative answers (RFC 8032 strict, ZIP 215 alone) are what
/// ed25519-dalek and ed25519-zebra say.
pub fn check(cases: &[Value]) {
    assert!(cases.len() >= 8);
    let parse = |c: &Value| {
        let did = Did::parse(c["signer"].as_str().unwrap()).unwrap();
        let message = hex::decode(c["message_hex"].as_str().unwrap()).unwrap();
        let sig = Signature::parse(c["signature"].as_str().unwrap()).unwrap();
        (did, message, sig)
    };
    let (honest_did, honest_message, honest_sig) = parse(&cases[0]);
    for c in cases {
        let name = &c["name"];
        let valid = c["valid"].as_bool().unwrap();
        let (did, message, sig) = parse(c);
        assert_eq!(sig.verify_raw(&did, &message), valid, "alone: {name}");
        let mut pair = Batch::new();
        pair.queue_raw(&honest_sig, &honest_did, &honest_message);
        pair.queue_raw(&sig, &did, &message);
        assert_eq!(pair.verify(), valid, "batched with an honest one: {name}");
        let mut single = Batch::new();
        single.queue_raw(&sig, &did, &message);
        assert_eq!(single.verify(), valid, "a batch of one: {name}");
        let public: [u8; 32] = hex::decode(c["public_key_hex"].as_str().unwrap())
            .unwrap()
            .try_into()
            .unwrap();
        assert_eq!(did.public_key(), &public, "{name}");
        assert_eq!(
            strict(&public, &message, &sig.to_bytes()),
            c["valid_under_rfc8032_strict"].as_bool().unwrap(),
            "{name}"
        );
        assert_eq!(
            zip215(&public, &message, &sig.to_bytes()),
            c["valid_under_zip215"].as_bool().unwrap(),
            "{name}"
        );
    }
}
