//! `spec/vectors/blobs.json` (spec §13.8): blob ids, outboards and verified-stream encodings,
//! a beam with an attachment, and attachments that break the rules. [`build`] makes the file
//! with the implementation; this test checks the stored file is what it makes, and
//! `protocol/tests/blob_vectors.rs` checks every vector through the public API.
//!
//! After a deliberate change, rewrite it with
//! `NORTHSTAR_WRITE_VECTORS=1 cargo test -p northstar-tests --test blob_vectors`.

use std::path::PathBuf;

use northstar_protocol::address::{SpaceId, SpaceType};
use northstar_protocol::blob::{self, Attachment};
use northstar_protocol::sign::Signed;
use northstar_protocol::wire::Beam;
use northstar_protocol::{ContentId, Keypair};
use serde_json::{Value, json};

const T0: u64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z

/// The blob of `len` bytes whose byte `i` is `i mod 251`.
fn blob_bytes(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

fn build() -> Value {
    let mut blobs = Vec::new();
    for len in [0usize, 1, 1024, 16_384, 16_385, 40_000] {
        let bytes = blob_bytes(len);
        let (id, outboard) = blob::outboard(&bytes);
        let encoded = blob::encode_response(&bytes, None);
        let mut case = json!({
            "len": len,
            "blob_id": id.to_string(),
            "outboard_hex": hex::encode(&outboard),
            "encoded_len": encoded.len(),
            "encoded_blake3_hex": blake3::hash(&encoded).to_hex().to_string(),
        });
        if encoded.len() <= 4096 {
            case["encoded_hex"] = json!(hex::encode(&encoded));
        }
        blobs.push(case);
    }
    let big = blob_bytes(40_000);
    let ranges: Vec<Value> = [(20_000u64, 20_100u64), (0, 1), (39_990, 40_000)]
        .into_iter()
        .map(|(start, end)| {
            let body = blob::encode_response(&big, Some(start..end));
            json!({
                "len": 40_000,
                "start": start,
                "end": end,
                "response_hex": hex::encode(&body),
            })
        })
        .collect();

    let alice = Keypair::from_seed(&[0x01; 32]);
    let space = SpaceId::new(SpaceType::Channel, alice.did(), "blobs").expect("a valid space id");
    let cat = blob_bytes(40_000);
    let attachment = Attachment {
        blob: ContentId::of(&cat),
        size: cat.len() as u64,
        media_type: "application/octet-stream".into(),
        name: "pattern.bin".into(),
    };
    let (beam, _) = Beam::post_attached(
        &alice,
        space,
        "alice.example",
        "With a file",
        "See the attachment.",
        vec![attachment.clone()],
        T0 + 5_000,
    )
    .expect("signing works");
    let beam_json = serde_json::to_value(&beam).expect("a beam serializes");
    let attachment_json = serde_json::to_value(&attachment).expect("serializes");
    let bad = |name: &str, field: &str, value: Value, error: &str| {
        let mut a = attachment_json.clone();
        a[field] = value;
        json!({"name": name, "attachment": a, "error": error})
    };
    let invalid = vec![
        bad(
            "path in name",
            "name",
            json!("../etc/passwd"),
            "bad_attachment_name",
        ),
        bad("empty name", "name", json!(""), "bad_attachment_name"),
        bad("long name", "name", json!("n".repeat(257)), "too_long"),
        bad("no subtype", "media_type", json!("image"), "bad_media_type"),
        bad(
            "parameters",
            "media_type",
            json!("text/plain; charset=utf-8"),
            "bad_media_type",
        ),
    ];
    json!({
        "description": "Blobs (spec/protocol.md §13): ids, outboards, verified-stream responses, attachments.",
        "chunk_group_bytes": blob::GROUP_BYTES,
        "blobs": blobs,
        "ranges": ranges,
        "attached_beam": {
            "signer": alice.did().as_str(),
            "object": beam_json,
            "content_id": beam.content_id().expect("an id").to_string(),
        },
        "attachments_invalid": invalid,
    })
}

#[test]
fn blobs_json_is_what_the_implementation_makes() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../spec/vectors/blobs.json");
    let mut text = serde_json::to_string_pretty(&build()).unwrap();
    text.push('\n');
    if std::env::var_os("NORTHSTAR_WRITE_VECTORS").is_some() {
        std::fs::write(&path, &text).unwrap();
    }
    let stored = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    assert!(
        stored == text,
        "spec/vectors/blobs.json differs from what the implementation makes; see this file's doc"
    );
}
