//! The node's JSON-RPC envelope handling (`spec/protocol.md` §6.1): what one WebSocket message
//! is (too big, a batch, a request, a notification, or refused) before any method runs.
//!
//! TODO(lead): not built yet. The node classifies messages inside `node/src/connection.rs`,
//! which has no pure function to call; `node/src/envelope.rs` (another branch) brings one. Once
//! it is merged:
//! 1. fill in [`classify`] below: call the module and map its answer onto [`Class`];
//! 2. uncomment the `rpc_envelope` `[[bin]]` entry in `fuzz/Cargo.toml` (it requires the
//!    `node` feature, which `.ci/run` then turns on by itself);
//! 3. `cargo +nightly fuzz run --sanitizer none --features node rpc_envelope` for a minute; its
//!    seeds are in `fuzz/corpus/rpc_envelope/` already (`scripts/fuzz-seeds.py`).
//!
//! The first input byte sets the limits (bit 0: batches on, with `max_batch` 4; otherwise off),
//! the rest is the message. `max_frame_bytes` is small here so that the fuzzer reaches it.
//!
//! Properties, from §6.1:
//! - a message over `max_frame_bytes` is refused unread, and only such a message;
//! - a message whose first non-whitespace character is `[` is a batch, and only such one; with
//!   batches off it gets −32005; on, −32700 if it is not JSON, −32600 if empty, −32010 if longer
//!   than `max_batch`, else its entries are taken one by one;
//! - a request is a JSON object with `"jsonrpc": "2.0"`, its method as a string and its id, a
//!   number or a string; a notification is such an object without `id`;
//! - a message refused as not JSON (−32700) is not JSON; one refused as not a request (−32600)
//!   is JSON; a refusal answers with `"id": null` or the message's own id;
//! - whitespace around a message changes nothing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use northstar_fuzz::text;
use serde_json::Value;

/// `max_frame_bytes` for the fuzzer: small, so that too-big messages are found.
const MAX_FRAME_BYTES: usize = 2048;

/// `max_batch` when batches are on.
const MAX_BATCH: usize = 4;

/// What the node makes of one message, in §6.1's terms.
#[derive(Debug, Clone, PartialEq)]
enum Class {
    /// Longer than `max_frame_bytes`: refused with −32007 and `"id": null`, unread.
    TooBig,
    /// A batch: the number of entries taken, or the one error code the whole batch got.
    Batch(Result<usize, i32>),
    /// A request to run.
    Request { id: Value, method: String },
    /// A notification: nothing runs, nothing is answered.
    Notification,
    /// Refused with this JSON-RPC error code, answered with this id.
    Refused { code: i32, id: Value },
}

/// TODO(lead): the node's classification of `text`, mapped onto [`Class`]. For example, if
/// `envelope.rs` offers `classify(text, &Limits) -> Envelope`:
///
/// ```ignore
/// use northstar_node::envelope::{self, Envelope};
/// match envelope::classify(text, &limits(max_frame_bytes, max_batch)) {
///     Envelope::TooBig => Class::TooBig,
///     Envelope::Batch(entries) => Class::Batch(Ok(entries.len())),
///     Envelope::BatchRefused(error) => Class::Batch(Err(error.code())),
///     Envelope::Request(request) => Class::Request {
///         id: serde_json::to_value(&request.id).expect("an id is JSON"),
///         method: request.method.to_string(),
///     },
///     Envelope::Notification => Class::Notification,
///     Envelope::Refused { id, error } => Class::Refused {
///         code: error.code(),
///         id: serde_json::to_value(&id).expect("an id is JSON"),
///     },
/// }
/// ```
fn classify(text: &str, max_frame_bytes: usize, max_batch: usize) -> Class {
    let _ = (text, max_frame_bytes, max_batch);
    unimplemented!("rpc_envelope: connect `classify` to node/src/envelope.rs (see the file docs)")
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let max_batch = if flags & 1 == 1 { MAX_BATCH } else { 0 };
    let text = text(rest);
    let class = classify(&text, MAX_FRAME_BYTES, max_batch);
    check(&text, &class, max_batch);

    let padded = format!(" \n{text}\t\r");
    if padded.len() <= MAX_FRAME_BYTES {
        assert_eq!(
            classify(&padded, MAX_FRAME_BYTES, max_batch),
            class,
            "whitespace around the message changed what it is"
        );
    }
});

fn check(text: &str, class: &Class, max_batch: usize) {
    let too_big = text.len() > MAX_FRAME_BYTES;
    assert_eq!(
        *class == Class::TooBig,
        too_big,
        "{class:?} for {} bytes",
        text.len()
    );
    if too_big {
        return;
    }
    let is_batch = text
        .trim_start_matches([' ', '\t', '\n', '\r'])
        .starts_with('[');
    assert_eq!(matches!(class, Class::Batch(_)), is_batch, "{class:?}");
    let json = serde_json::from_str::<Value>(text).ok();
    match class {
        Class::TooBig => unreachable!("handled above"),
        Class::Batch(answer) => {
            let expected = match &json {
                _ if max_batch == 0 => Err(-32005),
                Some(Value::Array(entries)) if entries.is_empty() => Err(-32600),
                Some(Value::Array(entries)) if entries.len() > max_batch => Err(-32010),
                Some(Value::Array(entries)) => Ok(entries.len()),
                _ => Err(-32700),
            };
            assert_eq!(*answer, expected, "the batch's answer");
        }
        Class::Request { id, method } => {
            let object = json.as_ref().and_then(Value::as_object);
            let object = object.expect("a request is a JSON object");
            assert_eq!(object.get("jsonrpc"), Some(&Value::from("2.0")));
            assert_eq!(object.get("method"), Some(&Value::from(method.as_str())));
            assert_eq!(object.get("id"), Some(id));
            assert!(id.is_number() || id.is_string(), "a request's id is {id}");
        }
        Class::Notification => {
            let object = json.as_ref().and_then(Value::as_object);
            let object = object.expect("a notification is a JSON object");
            assert_eq!(object.get("jsonrpc"), Some(&Value::from("2.0")));
            assert!(object.get("method").is_some_and(Value::is_string));
            assert!(!object.contains_key("id"), "a notification with an id");
        }
        Class::Refused { code, id } => {
            match code {
                -32700 => assert!(json.is_none(), "not JSON, yet it parses"),
                -32600 => assert!(json.is_some(), "JSON, yet refused as not JSON"),
                _ => {}
            }
            let own = json.as_ref().and_then(|v| v.get("id"));
            assert!(id.is_null() || Some(id) == own, "answered with id {id}");
        }
    }
}
