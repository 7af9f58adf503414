//! The stored vectors of `spec/vectors/` checked through this crate's public API, as a second
//! implementation would check them: `primitives.json` (RFC 8032, did:key, BLAKE3, multibase) and
//! every vector of `northstar.json` (DIDs, canonical form, signatures, content ids, events,
//! frames, the signature rule's edges). Positive vectors must verify; negative ones must fail
//! with their error code.
//!
//! The same file runs natively (`cargo test -p northstar-protocol --test vectors`) and inside the
//! WebAssembly build, under wasm-bindgen-test's runner in Node.js:
//! `cargo test -p northstar-protocol --target wasm32-unknown-unknown --no-default-features
//! --test vectors` (README.md, "WebAssembly"). The vectors are compiled in, since a WebAssembly
//! test has no file system. `northstar.json` itself is produced, and kept equal to what the
//! implementation makes, by `tests/tests/vectors.rs`.

#[path = "vectors/signature_rules.rs"]
mod signature_rules;

use northstar_protocol::address::{BeamUri, SpaceUri};
use northstar_protocol::canonical::{self, CanonicalError};
use northstar_protocol::frame::{self, Frame};
use northstar_protocol::sign::{self, Domain, Signature, Signed};
use northstar_protocol::wire::edit::{dropped_below, resolve};
use northstar_protocol::wire::{
    AuthChallenge, AuthResponse, Beam, BeamRef, Edit, Event, Membership, SpaceGenesis, Tombstone,
};
use northstar_protocol::{ContentId, Did, Keypair};
use serde_json::Value;

const PRIMITIVES: &str = include_str!("../../spec/vectors/primitives.json");
const NORTHSTAR: &str = include_str!("../../spec/vectors/northstar.json");

fn load(name: &str) -> Value {
    let text = match name {
        "primitives.json" => PRIMITIVES,
        "northstar.json" => NORTHSTAR,
        other => panic!("no vector file {other}"),
    };
    serde_json::from_str(text).unwrap()
}

fn s(v: &Value) -> &str {
    v.as_str()
        .unwrap_or_else(|| panic!("expected a string, got {v}"))
}

fn seed(v: &Value) -> [u8; 32] {
    hex::decode(s(v)).unwrap().try_into().unwrap()
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn ed25519_matches_rfc8032() {
    let v = load("primitives.json");
    let cases = v["ed25519"]["cases"].as_array().unwrap();
    assert!(cases.len() >= 3);
    for case in cases {
        let pair = Keypair::from_seed(&seed(&case["seed_hex"]));
        assert_eq!(
            hex::encode(pair.did().public_key()),
            s(&case["public_key_hex"])
        );
        let message = hex::decode(s(&case["message_hex"])).unwrap();
        let sig = pair.sign_raw(&message);
        assert_eq!(
            hex::encode(sig.to_bytes()),
            s(&case["signature_hex"]),
            "{}",
            case["name"]
        );
        assert!(sig.verify_raw(pair.did(), &message));
        let mut flipped = message.clone();
        flipped.push(0);
        assert!(!sig.verify_raw(pair.did(), &flipped));
    }
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn did_key_matches_the_published_vectors() {
    let v = load("primitives.json");
    let cases = v["did_key"]["cases"].as_array().unwrap();
    assert!(!cases.is_empty());
    for case in cases {
        let did = Did::parse(s(&case["did"])).unwrap();
        assert_eq!(hex::encode(did.public_key()), s(&case["public_key_hex"]));
        if let Some(seed_hex) = case.get("seed_hex") {
            assert_eq!(Keypair::from_seed(&seed(seed_hex)).did(), &did);
        }
    }
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn blake3_matches_the_official_vectors() {
    let v = load("primitives.json");
    for case in v["blake3"]["cases"].as_array().unwrap() {
        let len = case["input_len"].as_u64().unwrap() as usize;
        let input: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        assert_eq!(
            hex::encode(ContentId::of(&input).as_bytes()),
            s(&case["hash_hex"]),
            "length {len}"
        );
    }
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn base58btc_keeps_leading_zeros() {
    let v = load("primitives.json");
    for case in v["base58btc"]["cases"].as_array().unwrap() {
        let bytes = hex::decode(s(&case["bytes_hex"])).unwrap();
        let text = s(&case["multibase"]);
        assert_eq!(multibase_encode(&bytes), text);
        assert_eq!(multibase_decode(text), bytes);
    }
}

// The DID code encodes base58btc with the multibase crate; check that crate on its own.
fn multibase_encode(bytes: &[u8]) -> String {
    multibase::encode(multibase::Base::Base58Btc, bytes)
}

fn multibase_decode(text: &str) -> Vec<u8> {
    let (base, bytes) = multibase::decode(text).unwrap();
    assert_eq!(base, multibase::Base::Base58Btc);
    bytes
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn frame_vectors_check_out() {
    let v = load("northstar.json");
    let frames = &v["frames"];
    for c in frames["valid"].as_array().unwrap() {
        let bytes = hex::decode(s(&c["hex"])).unwrap();
        let frame = Frame::decode(&bytes).unwrap();
        frame.verify().unwrap();
        assert_eq!(frame.space.as_str(), s(&c["space"]));
        assert_eq!(frame.number, c["number"].as_u64().unwrap());
        assert_eq!(frame.timestamp, c["timestamp"].as_u64().unwrap());
        assert_eq!(frame.key, c["key"].as_bool().unwrap());
        assert_eq!(hex::encode(&frame.payload), s(&c["payload_hex"]));
        // The raw steps: the signature covers the tag, a zero byte and the bytes before it.
        let signed = &bytes[..bytes.len() - frame::SIGNATURE_LEN];
        let message = hex::decode(s(&c["signing_message_hex"])).unwrap();
        assert_eq!(message, sign::signing_message(Domain::StreamFrame, signed));
        let signer = Did::parse(s(&c["signer"])).unwrap();
        assert!(frame.sig.verify_raw(&signer, &message), "{}", c["name"]);
    }
    let invalid = frames["invalid"].as_array().unwrap();
    assert!(invalid.len() >= 7);
    for c in invalid {
        let bytes = hex::decode(s(&c["hex"])).unwrap();
        let err = Frame::decode(&bytes).and_then(|f| f.verify()).unwrap_err();
        assert_eq!(err.code(), s(&c["error"]), "{}", c["name"]);
    }
}

/// Check one stored vector's object the way a verifier does: strict parse, typed decode, verify.
fn verify_text(kind: &str, text: &str, signer: &Did) -> Result<ContentId, String> {
    fn typed<T: serde::de::DeserializeOwned + Signed>(
        text: &str,
        signer: &Did,
    ) -> Result<ContentId, String> {
        let object: T =
            canonical::from_str_strict(text).map_err(|e: CanonicalError| e.code().to_owned())?;
        sign::verify(&object, signer).map_err(|e| e.code().to_owned())?;
        object.content_id().map_err(|e| e.code().to_owned())
    }
    match kind {
        "auth_challenge" => typed::<AuthChallenge>(text, signer),
        "auth_response" => typed::<AuthResponse>(text, signer),
        "space_genesis" => typed::<SpaceGenesis>(text, signer),
        "membership" => typed::<Membership>(text, signer),
        "beam" => typed::<Beam>(text, signer),
        "beam_ref" => typed::<BeamRef>(text, signer),
        "tombstone" => typed::<Tombstone>(text, signer),
        "edit" => typed::<Edit>(text, signer),
        "event" => {
            let event: Event = canonical::from_str_strict(text).map_err(|e| e.code().to_owned())?;
            event.verify(signer).map_err(|e| e.code().to_owned())?;
            event.id().map_err(|e| e.code().to_owned())
        }
        other => panic!("unknown kind {other}"),
    }
}

/// The group `edit_resolution` (§4.10): the edits named, read from `signed`, resolve to
/// `current`, whose version is `current_beam`, and drop what is below `dropped_below`; each
/// version's beam names its edit, and each edit supersedes `original`.
fn check_edit_resolution(v: &Value) {
    let signed = v["signed"].as_array().unwrap();
    let object = |name: &str| {
        signed
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("no vector {name}"))["object"]
            .to_string()
    };
    for case in v["edit_resolution"].as_array().unwrap() {
        let mut edits = Vec::new();
        for name in case["edits"].as_array().unwrap() {
            let name = s(name);
            let edit: Edit = canonical::from_str_strict(&object(name)).unwrap();
            edit.verify().unwrap();
            edit.check_rules().unwrap();
            assert_eq!(edit.supersedes.to_string(), s(&case["original"]));
            let version: Beam =
                canonical::from_str_strict(&object(&format!("{name}_version"))).unwrap();
            northstar_protocol::verify::check_version(&edit, &version).unwrap();
            edits.push(edit);
        }
        let current = resolve(&edits).unwrap().unwrap();
        assert_eq!(
            current.content_id().unwrap().to_string(),
            s(&case["current"])
        );
        assert_eq!(current.beam.to_string(), s(&case["current_beam"]));
        let floor = dropped_below(&edits).unwrap();
        match floor {
            None => assert!(case["dropped_below"].is_null()),
            Some(k) => {
                assert_eq!(
                    k.version,
                    case["dropped_below"]["version"].as_u64().unwrap()
                );
                assert_eq!(k.id, s(&case["dropped_below"]["id"]));
            }
        }
    }
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn every_stored_vector_checks_out_through_the_public_api() {
    let v = load("northstar.json");
    for k in v["keys"].as_array().unwrap() {
        let pair = Keypair::from_seed(&seed(&k["seed_hex"]));
        assert_eq!(pair.did().as_str(), s(&k["did"]));
        assert_eq!(
            hex::encode(pair.did().public_key()),
            s(&k["public_key_hex"])
        );
    }
    for c in v["canonical"].as_array().unwrap() {
        let value = canonical::parse_strict(s(&c["input"])).unwrap();
        let canon = canonical::to_canonical_bytes(&value).unwrap();
        assert_eq!(std::str::from_utf8(&canon).unwrap(), s(&c["canonical"]));
    }
    for c in v["canonical_invalid"].as_array().unwrap() {
        let err = canonical::parse_strict(s(&c["input"])).unwrap_err();
        assert_eq!(err.code(), s(&c["error"]), "{}", c["input"]);
    }
    for c in v["dids_invalid"].as_array().unwrap() {
        let err = Did::parse(s(&c["did"])).unwrap_err();
        assert_eq!(err.code(), s(&c["error"]), "{}", c["did"]);
    }
    let signed = v["signed"].as_array().unwrap();
    assert_eq!(signed.len(), 16);
    for c in signed {
        let tag = s(&c["domain_tag"]);
        let signer = Did::parse(s(&c["signer"])).unwrap();
        let text = c["object"].to_string();
        let kind = s(&c["kind"]);
        // The raw steps, as a second implementation would take them (§3.4, §3.5, §4.5).
        let mut value = canonical::parse_strict(&text).unwrap();
        let sig = Signature::parse(s(&value["sig"])).unwrap();
        let members = value.as_object_mut().unwrap();
        members.remove("sig");
        let posted_with = if kind == "beam" {
            Some(s(&members.remove("ref").unwrap()).to_owned())
        } else {
            None
        };
        let canon = canonical::to_canonical_bytes(&value).unwrap();
        assert_eq!(
            std::str::from_utf8(&canon).unwrap(),
            s(&c["canonical_unsigned"])
        );
        let id = ContentId::of(&canon).to_string();
        let signed_text = match (kind, posted_with) {
            ("beam", Some(r)) => format!(r#"{{"beam":"{id}","ref":"{r}"}}"#),
            ("beam_ref", _) => format!(r#"{{"beam":"{}","ref":"{id}"}}"#, s(&value["beam"])),
            _ => String::from_utf8(canon.clone()).unwrap(),
        };
        assert_eq!(signed_text, s(&c["signed_text"]));
        let mut message = tag.as_bytes().to_vec();
        message.push(0);
        message.extend_from_slice(signed_text.as_bytes());
        assert_eq!(hex::encode(&message), s(&c["signing_message_hex"]));
        assert!(sig.verify_raw(&signer, &message), "{}", c["name"]);
        assert_eq!(id, s(&c["content_id"]));
        // And through the typed API.
        let id = verify_text(kind, &text, &signer).unwrap();
        assert_eq!(id.to_string(), s(&c["content_id"]));
    }
    check_edit_resolution(&v);
    signature_rules::check(v["signature_rules"].as_array().unwrap());
    for c in v["signed_invalid"].as_array().unwrap() {
        let signer = Did::parse(s(&c["signer"])).unwrap();
        let err = verify_text(s(&c["kind"]), s(&c["object_text"]), &signer).unwrap_err();
        assert_eq!(err, s(&c["error"]), "{}", c["name"]);
    }
    for space in v["addresses"]["spaces"].as_array().unwrap() {
        let uri = SpaceUri::parse(s(&space["uri"])).unwrap();
        assert_eq!(uri.space.as_str(), s(&space["space_id"]));
        assert_eq!(uri.space.owner().as_str(), s(&space["owner"]));
        assert_eq!(uri.space.unique_id(), s(&space["unique_id"]));
        assert_eq!(uri.space.space_type().as_str(), s(&space["type"]));
    }
    for beam in v["addresses"]["beams"].as_array().unwrap() {
        let uri = BeamUri::parse(s(&beam["uri"])).unwrap();
        let author = Did::parse(s(&beam["author"])).unwrap();
        assert_eq!(uri.path.author_hash.to_string(), s(&beam["author_hash"]));
        assert_eq!(
            northstar_protocol::address::author_hash(&author).to_string(),
            s(&beam["author_hash"])
        );
        assert_eq!(uri.path.beam.to_string(), s(&beam["beam_id"]));
    }
}
