//! The JSON-RPC envelope (`spec/protocol.md` §6.1): what one WebSocket text is (a request, a
//! notification, a batch, or refused) and which id its answer carries, as
//! `northstar_protocol::envelope::classify` decides it for the node's transport.
//!
//! Properties, from §6.1:
//! - a text that is not JSON is refused with −32700 and `"id": null`; every other refusal is
//!   −32600, of a JSON text, answered with `"id": null` or the message's own valid id;
//! - a batch is a non-empty JSON array, and every array is one (an empty one refused); each of
//!   its entries is classified like a message of its own, but never as −32700;
//! - a request is a JSON object with `"jsonrpc": "2.0"`, its method as a string and a valid id
//!   (a string, or an integer in `0..=2^53-1`); its `params` are absent, an array or an object
//!   exactly as in the text, or flagged as neither; a notification is such an object without
//!   `id`;
//! - conversely, a text that parses strictly (§3.1: no member named twice) into such an object
//!   is a request (or a notification), never refused;
//! - whitespace around a text changes nothing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use northstar_fuzz::text;
use northstar_protocol::MAX_SAFE_INTEGER;
use northstar_protocol::canonical::parse_strict;
use northstar_protocol::envelope::{self, Entry, Id, Message, Params};
use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;

/// What the envelope makes of one text, in §6.1's terms.
#[derive(Debug, Clone, PartialEq)]
enum Class {
    /// A batch of these entries.
    Batch(Vec<Class>),
    /// A request to run.
    Request {
        id: Value,
        method: String,
        params: Option<Result<Option<Value>, ()>>,
    },
    /// A notification: nothing runs, nothing is answered.
    Notification,
    /// Refused with this JSON-RPC error code, answered with this id.
    Refused { code: i32, id: Value },
}

fn id_value(id: &Id<'_>) -> Value {
    match id {
        Id::Number(n) => Value::from(*n),
        Id::Str(s) => Value::from(s.as_ref()),
    }
}

fn entry_class(entry: Entry<'_>) -> Class {
    match entry {
        Entry::Request(request) => Class::Request {
            id: id_value(&request.id),
            method: request.method.into_owned(),
            params: match request.params {
                Params::Absent => None,
                Params::Structured(text) => {
                    assert!(is_json(text), "structured params are JSON: {text}");
                    // `None`: JSON that `Value` cannot hold (the strict check refuses it).
                    Some(Ok(serde_json::from_str(text).ok()))
                }
                Params::Unstructured => Some(Err(())),
            },
        },
        Entry::Notification => Class::Notification,
        Entry::Refused(refusal) => Class::Refused {
            code: refusal.fault.code(),
            id: refusal.id.as_ref().map_or(Value::Null, id_value),
        },
    }
}

fn classify(text: &str) -> Class {
    match envelope::classify(text) {
        Message::Single(entry) => entry_class(entry),
        Message::Batch(batch) => {
            assert!(!batch.is_empty(), "an empty batch is refused as a whole");
            let entries: Vec<Class> = batch.entries().map(entry_class).collect();
            assert_eq!(entries.len(), batch.len());
            Class::Batch(entries)
        }
    }
}

/// Whether `text` is one JSON value by RFC 8259's grammar. (`Value` cannot hold a number
/// beyond the double range, such as `1e400`, but such a number is JSON; the envelope only
/// skips over members it does not read.)
fn is_json(text: &str) -> bool {
    let mut de = serde_json::Deserializer::from_str(text);
    serde::de::IgnoredAny::deserialize(&mut de).is_ok() && de.end().is_ok()
}

fuzz_target!(|data: &[u8]| {
    let text = text(data);
    let class = classify(&text);
    let json = serde_json::from_str::<Value>(&text).ok();
    match (&class, &json) {
        (Class::Batch(entries), Some(Value::Array(items))) => {
            assert_eq!(entries.len(), items.len(), "one answer per entry");
            // Each entry's own text: a member named twice is gone from its parsed value.
            let raw: Vec<Box<RawValue>> =
                serde_json::from_str(&text).expect("a JSON array of JSON values");
            for ((entry, item), raw) in entries.iter().zip(items).zip(&raw) {
                assert!(
                    !matches!(entry, Class::Refused { code: -32700, .. }),
                    "an entry of a JSON batch refused as not JSON: {item}"
                );
                check(entry, Some(item), raw.get());
            }
        }
        (Class::Batch(_), None) => assert!(is_json(&text), "a batch that is not JSON"),
        (Class::Batch(_), _) => panic!("a batch that is not a JSON array"),
        (_, Some(Value::Array(items))) => {
            assert!(items.is_empty(), "a non-empty array that is no batch");
            assert_eq!(
                class,
                Class::Refused {
                    code: -32600,
                    id: Value::Null
                }
            );
        }
        _ => check(&class, json.as_ref(), &text),
    }

    let padded = format!(" \n{text}\t\r");
    assert_eq!(
        classify(&padded),
        class,
        "whitespace around the message changed what it is"
    );
});

/// A valid id: a string, or an integer in `0..=2^53-1`.
fn valid_id(id: &Value) -> bool {
    id.is_string() || id.as_u64().is_some_and(|n| n <= MAX_SAFE_INTEGER)
}

/// The properties of one message (alone or a batch's entry) against its parse.
fn check(class: &Class, json: Option<&Value>, text: &str) {
    let object = json.and_then(Value::as_object);
    if json.is_none() && is_json(text) && !matches!(class, Class::Refused { .. }) {
        // JSON with a number `Value` cannot hold: nothing more to compare it with.
        return;
    }
    match class {
        Class::Batch(_) => unreachable!("handled by the caller"),
        Class::Request { id, method, params } => {
            let object = object.expect("a request is a JSON object");
            assert_eq!(object.get("jsonrpc"), Some(&Value::from("2.0")));
            assert_eq!(object.get("method"), Some(&Value::from(method.as_str())));
            assert_eq!(object.get("id"), Some(id));
            assert!(valid_id(id), "a request's id is {id}");
            match (params, object.get("params")) {
                (None, None) => {}
                (Some(Ok(Some(p))), Some(q)) => {
                    assert!(p.is_array() || p.is_object(), "structured params {p}");
                    assert_eq!(p, q);
                }
                (Some(Ok(None)), Some(q)) => assert!(q.is_array() || q.is_object(), "{q}"),
                (Some(Err(())), Some(q)) => assert!(!q.is_array() && !q.is_object(), "{q}"),
                (p, q) => panic!("params {p:?}, but the message has {q:?}"),
            }
        }
        Class::Notification => {
            let object = object.expect("a notification is a JSON object");
            assert_eq!(object.get("jsonrpc"), Some(&Value::from("2.0")));
            assert!(object.get("method").is_some_and(Value::is_string));
            assert!(!object.contains_key("id"), "a notification with an id");
        }
        Class::Refused { code, id } => {
            match code {
                -32700 => assert!(!is_json(text), "not JSON, yet it parses"),
                -32600 => assert!(is_json(text), "JSON, yet refused as not JSON"),
                other => panic!("the envelope refuses only with -32700 or -32600, not {other}"),
            }
            let own = object.and_then(|o| o.get("id"));
            // (A text `Value` cannot hold is only checked for the id's form.)
            assert!(
                id.is_null() || ((Some(id) == own || json.is_none()) && valid_id(id)),
                "answered with id {id}"
            );
            // Completeness: a text with no member named twice that has every part of a
            // request or notification is not refused.
            if let Ok(Value::Object(strict)) = parse_strict(text) {
                let is_message = strict.get("jsonrpc") == Some(&Value::from("2.0"))
                    && strict.get("method").is_some_and(Value::is_string)
                    && strict.get("id").is_none_or(valid_id);
                assert!(!is_message, "a well-formed message was refused: {text}");
            }
        }
    }
}
