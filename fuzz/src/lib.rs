//! What the fuzz targets share: turning fuzzer bytes into text, the spec's vectors, and the
//! spec's error names.
//!
//! # Layout
//! - [`text`]: fuzzer bytes as the text a receiver would have.
//! - [`vectors`]: `spec/vectors/northstar.json`, built into the binary.
//! - The error-name lists: §2.2, §3.1 and §4's names, for asserting that every refusal has one.

use std::borrow::Cow;
use std::sync::LazyLock;

use serde_json::Value;

/// The bytes as text. Invalid UTF-8 never reaches the parsers (WebSocket text messages are
/// UTF-8, and the node refuses binary ones that are not), so it is replaced rather than skipped:
/// the input still exercises the parser instead of being wasted.
pub fn text(data: &[u8]) -> Cow<'_, str> {
    String::from_utf8_lossy(data)
}

/// `spec/vectors/northstar.json`, parsed once.
pub fn vectors() -> &'static Value {
    static VECTORS: LazyLock<Value> = LazyLock::new(|| {
        serde_json::from_str(include_str!("../../spec/vectors/northstar.json"))
            .expect("spec/vectors/northstar.json is JSON")
    });
    &VECTORS
}

/// A DID of the vectors' keys, by name (`alice`, `bob`, `node`).
pub fn vector_did(name: &str) -> &'static str {
    vectors()["keys"]
        .as_array()
        .expect("keys is an array")
        .iter()
        .find(|k| k["name"] == name)
        .and_then(|k| k["did"].as_str())
        .expect("the vectors name this key")
}

/// The error names of strict parsing and shape (§3.1).
pub const PARSE_ERRORS: [&str; 5] = [
    "syntax",
    "duplicate_key",
    "float",
    "unsafe_integer",
    "shape",
];

/// The error names of DID parsing (§2.2).
pub const DID_ERRORS: [&str; 8] = [
    "too_long",
    "not_did_key",
    "not_base58btc",
    "bad_base58",
    "wrong_multicodec",
    "wrong_length",
    "invalid_point",
    "weak_key",
];
