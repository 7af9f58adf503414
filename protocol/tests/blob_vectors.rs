//! The vectors of `spec/vectors/blobs.json` (spec §13.8) checked through this crate's public
//! API, as a second implementation would: ids, outboards, whole and range responses (and that
//! a changed byte fails), the attached beam, and attachments that break the rules. Runs
//! natively and in the WebAssembly build, like `vectors.rs` (ranges natively only, see
//! below); the file is produced by `tests/tests/blob_vectors.rs`.

use northstar_protocol::ContentId;
use northstar_protocol::blob::{self, Attachment};
use northstar_protocol::sign::Signed;
use northstar_protocol::wire::Beam;
use serde_json::Value;

const BLOBS: &str = include_str!("../../spec/vectors/blobs.json");

fn load() -> Value {
    serde_json::from_str(BLOBS).unwrap()
}

fn bytes(len: u64) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

fn read(
    id: &ContentId,
    body: &[u8],
    range: Option<std::ops::Range<u64>>,
) -> Result<Vec<u8>, blob::StreamError> {
    let mut out = Vec::new();
    blob::verify_stream(id, body, range, None, |_, piece| {
        out.extend_from_slice(piece);
        Ok(())
    })?;
    Ok(out)
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn blob_ids_outboards_and_encodings_match() {
    let v = load();
    assert_eq!(v["chunk_group_bytes"], blob::GROUP_BYTES);
    let cases = v["blobs"].as_array().unwrap();
    assert!(cases.len() >= 4);
    for case in cases {
        let len = case["len"].as_u64().unwrap();
        let data = bytes(len);
        let id: ContentId = case["blob_id"].as_str().unwrap().parse().unwrap();
        assert_eq!(ContentId::of(&data), id, "{len}");
        let (made, outboard) = blob::outboard(&data);
        assert_eq!(made, id);
        assert_eq!(
            hex::encode(outboard),
            case["outboard_hex"].as_str().unwrap()
        );
        let encoded = blob::encode_response(&data, None);
        assert_eq!(encoded.len() as u64, case["encoded_len"].as_u64().unwrap());
        assert_eq!(
            blake3::hash(&encoded).to_hex().as_str(),
            case["encoded_blake3_hex"].as_str().unwrap()
        );
        if let Some(text) = case["encoded_hex"].as_str() {
            assert_eq!(hex::encode(&encoded), text);
        }
        assert_eq!(read(&id, &encoded, None).unwrap(), data);
    }
}

/// Native only: on wasm32, bao-tree 0.17's range traversal converts a node's byte range to
/// `usize` with an `unwrap` that fails for the 32-bit `usize` (iter.rs:439), so a range read
/// panics in the browser build; whole-blob reads (above) work there.
#[cfg(not(target_arch = "wasm32"))]
#[test]
fn range_responses_match_and_any_changed_byte_fails() {
    let v = load();
    for case in v["ranges"].as_array().unwrap() {
        let data = bytes(case["len"].as_u64().unwrap());
        let id = ContentId::of(&data);
        let (start, end) = (
            case["start"].as_u64().unwrap(),
            case["end"].as_u64().unwrap(),
        );
        let response = hex::decode(case["response_hex"].as_str().unwrap()).unwrap();
        assert_eq!(blob::encode_response(&data, Some(start..end)), response);
        assert_eq!(
            read(&id, &response, Some(start..end)).unwrap(),
            &data[start as usize..end as usize]
        );
        for at in 0..response.len() {
            let mut bad = response.clone();
            bad[at] ^= 0x40;
            assert!(
                read(&id, &bad, Some(start..end)).is_err(),
                "byte {at} of {start}..{end}"
            );
        }
    }
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn the_attached_beam_verifies_and_bad_attachments_break_their_rule() {
    let v = load();
    let case = &v["attached_beam"];
    let beam: Beam = serde_json::from_value(case["object"].clone()).unwrap();
    assert_eq!(beam.author.as_str(), case["signer"].as_str().unwrap());
    beam.verify().unwrap();
    beam.check_rules().unwrap();
    assert_eq!(
        beam.content_id().unwrap().to_string(),
        case["content_id"].as_str().unwrap()
    );
    assert_eq!(beam.attachments.len(), 1);
    for case in v["attachments_invalid"].as_array().unwrap() {
        let attachment: Attachment = serde_json::from_value(case["attachment"].clone()).unwrap();
        assert_eq!(
            attachment.check_rules().unwrap_err().code(),
            case["error"].as_str().unwrap(),
            "{}",
            case["name"]
        );
    }
}
