//! The JSON-RPC envelope of one WebSocket text (`spec/protocol.md` §6.1, checks 2 and 3 of
//! §6.3): a request, a notification, a batch of them, or a fault to answer, and which `id` the
//! answer carries.
//!
//! Pure: no I/O and no state. [`classify`] takes any text and never panics; it reads the text
//! once, borrowing the method, the id and the parameters from it (an id or method with escapes
//! is the only thing copied). The rules, in the order they apply to one message:
//!
//! 1. Not JSON: [`Fault::NotJson`], id null.
//! 2. JSON but not an object (nor, at the top, an array): [`Fault::NotRequest`], id null.
//! 3. `jsonrpc`, `method`, `id` or `params` appears twice: [`Fault::NotRequest`], id null.
//!    Other members are ignored, however often they appear.
//! 4. `id` present but not a string or an integer in `0..=2^53-1` (written without sign,
//!    fraction or exponent): [`Fault::NotRequest`], id null, whatever the rest says.
//! 5. No `id`: a notification if `jsonrpc` is `"2.0"` and `method` a string, else
//!    [`Fault::NotRequest`] with id null.
//! 6. A valid id, but `jsonrpc` is not `"2.0"` or `method` is missing or not a string:
//!    [`Fault::NotRequest`] with that id.
//! 7. Otherwise a [`Request`]; its `params`, if present, are [`Params::Structured`] (an array
//!    or an object) or [`Params::Unstructured`] (anything else, `null` included), which the
//!    connection answers with −32602 once the method is known to exist.

use std::borrow::Cow;
use std::fmt;

use crate::MAX_SAFE_INTEGER;
use serde::Deserialize;
use serde::de::{
    self, DeserializeSeed, Deserializer as _, IgnoredAny, MapAccess, SeqAccess, Visitor,
};
use serde_json::value::RawValue;

/// What one WebSocket text is.
#[derive(Debug)]
pub enum Message<'a> {
    /// One request, notification or fault.
    Single(Entry<'a>),
    /// A non-empty array: a batch, whose entries are classified one by one.
    Batch(Batch<'a>),
}

/// One JSON-RPC message, alone or in a batch.
#[derive(Debug, PartialEq, Eq)]
pub enum Entry<'a> {
    /// Run it and answer with its id.
    Request(Request<'a>),
    /// Run nothing and answer nothing.
    Notification,
    /// Answer with this error.
    Refused(Refusal<'a>),
}

/// A request to run.
#[derive(Debug, PartialEq, Eq)]
pub struct Request<'a> {
    /// The id the answer carries.
    pub id: Id<'a>,
    /// The method's wire name.
    pub method: Cow<'a, str>,
    /// The parameters.
    pub params: Params<'a>,
}

/// A request's valid `id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Id<'a> {
    /// An integer in `0..=2^53-1`.
    Number(u64),
    /// A string, with escapes decoded.
    Str(Cow<'a, str>),
}

/// A request's `params` member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Params<'a> {
    /// No `params` member.
    Absent,
    /// A JSON array or object: its text, exactly as received.
    Structured(&'a str),
    /// Present, but neither an array nor an object.
    Unstructured,
}

/// A message the node answers with an error instead of running it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal<'a> {
    /// What is wrong.
    pub fault: Fault,
    /// The id the answer carries: `None` for `null`.
    pub id: Option<Id<'a>>,
    /// What is wrong, for the error's message.
    pub reason: &'static str,
}

/// The two faults of the envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// −32700: the text is not JSON.
    NotJson,
    /// −32600: JSON, but not a JSON-RPC 2.0 request or notification.
    NotRequest,
}

impl Fault {
    /// The JSON-RPC error code.
    pub const fn code(self) -> i32 {
        match self {
            Fault::NotJson => -32700,
            Fault::NotRequest => -32600,
        }
    }
}

/// The entries of a batch, each still to classify.
#[derive(Debug)]
pub struct Batch<'a>(Vec<&'a RawValue>);

impl<'a> Batch<'a> {
    /// How many entries it has (at least one).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Never: an empty array is refused as a whole.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Each entry, classified like a message of its own; an entry that is not an object is
    /// [`Fault::NotRequest`], never [`Fault::NotJson`] (the batch as a whole is JSON).
    pub fn entries(&self) -> impl Iterator<Item = Entry<'a>> + '_ {
        self.0.iter().map(|raw| entry(raw.get()))
    }
}

/// Classify one WebSocket text.
pub fn classify(text: &str) -> Message<'_> {
    let mut de = serde_json::Deserializer::from_str(text);
    let top = Top
        .deserialize(&mut de)
        .and_then(|top| de.end().map(|()| top));
    match top {
        // JSON by RFC 8259's grammar, but holding a value this reader cannot take where it
        // must read one (a number beyond the double range, a lone surrogate escape): not a
        // request, since no part of it can be trusted to be what it seems.
        Err(_) if is_json(text) => Message::Single(unreadable()),
        Err(_) => Message::Single(refused(Fault::NotJson, None, "the message is not JSON")),
        Ok(Shape::Object(members)) => Message::Single(members.classify()),
        Ok(Shape::Array(items)) if items.is_empty() => {
            Message::Single(refused(Fault::NotRequest, None, "an empty batch"))
        }
        Ok(Shape::Array(items)) => Message::Batch(Batch(items)),
        Ok(Shape::Other) => Message::Single(not_an_object()),
    }
}

/// Classify one entry of a batch (a JSON text already known to be valid).
fn entry(text: &str) -> Entry<'_> {
    let mut de = serde_json::Deserializer::from_str(text);
    match de.deserialize_any(Top) {
        Ok(Shape::Object(members)) => members.classify(),
        Ok(_) => not_an_object(),
        // JSON (the batch as a whole is), but not readable here: a key with a lone surrogate
        // escape, say. An entry of a JSON batch is never "not JSON".
        Err(_) => unreadable(),
    }
}

/// Whether `text` is one JSON value by RFC 8259's grammar, whatever its numbers' magnitudes
/// and its escapes' surrogates.
fn is_json(text: &str) -> bool {
    let mut de = serde_json::Deserializer::from_str(text);
    IgnoredAny::deserialize(&mut de).is_ok() && de.end().is_ok()
}

fn unreadable<'a>() -> Entry<'a> {
    refused(
        Fault::NotRequest,
        None,
        "a number beyond the double range or a lone surrogate escape where a request is read",
    )
}

fn refused<'a>(fault: Fault, id: Option<Id<'a>>, reason: &'static str) -> Entry<'a> {
    Entry::Refused(Refusal { fault, id, reason })
}

fn not_an_object<'a>() -> Entry<'a> {
    refused(
        Fault::NotRequest,
        None,
        "a JSON-RPC message must be a JSON object",
    )
}

/// The top of a text: what kind of JSON value it is, and what of it is needed.
enum Shape<'a> {
    Object(Members<'a>),
    Array(Vec<&'a RawValue>),
    Other,
}

/// The envelope's members of an object, as raw text.
#[derive(Default)]
struct Members<'a> {
    jsonrpc: Option<&'a RawValue>,
    method: Option<&'a RawValue>,
    id: Option<&'a RawValue>,
    params: Option<&'a RawValue>,
    repeated: bool,
}

impl<'a> Members<'a> {
    fn classify(self) -> Entry<'a> {
        if self.repeated {
            return refused(
                Fault::NotRequest,
                None,
                "jsonrpc, method, id or params appears twice",
            );
        }
        let id = match self.id {
            None => None,
            Some(raw) => match id(raw.get()) {
                Some(id) => Some(id),
                None => {
                    return refused(
                        Fault::NotRequest,
                        None,
                        "id must be a string or an integer from 0 to 2^53-1",
                    );
                }
            },
        };
        let version = self
            .jsonrpc
            .and_then(|raw| text(raw.get()))
            .is_some_and(|v| v == "2.0");
        let method = self.method.and_then(|raw| text(raw.get()));
        match (id, version, method) {
            (None, true, Some(_)) => Entry::Notification,
            (None, _, _) => refused(
                Fault::NotRequest,
                None,
                "a message without id must be a notification: jsonrpc \"2.0\" and a method",
            ),
            (Some(id), false, _) => refused(Fault::NotRequest, Some(id), "jsonrpc must be \"2.0\""),
            (Some(id), true, None) => refused(
                Fault::NotRequest,
                Some(id),
                "method must be present and a string",
            ),
            (Some(id), true, Some(method)) => Entry::Request(Request {
                id,
                method,
                params: params(self.params),
            }),
        }
    }
}

/// A valid id, or `None`.
fn id(raw: &str) -> Option<Id<'_>> {
    let raw = raw.trim_matches(is_json_space);
    let first = *raw.as_bytes().first()?;
    if first == b'"' {
        return text(raw).map(Id::Str);
    }
    // Digits only: no sign, fraction or exponent, and no leading zero (which is not JSON).
    // Sixteen digits hold 2^53-1; more cannot be a safe integer.
    if raw.len() > 16 || !raw.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if raw.len() > 1 && first == b'0' {
        return None;
    }
    let n: u64 = raw.parse().ok()?;
    (n <= MAX_SAFE_INTEGER).then_some(Id::Number(n))
}

fn params(raw: Option<&RawValue>) -> Params<'_> {
    let Some(raw) = raw else {
        return Params::Absent;
    };
    let raw = raw.get().trim_matches(is_json_space);
    match raw.as_bytes().first() {
        Some(b'[' | b'{') => Params::Structured(raw),
        _ => Params::Unstructured,
    }
}

fn is_json_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r')
}

/// A JSON string's value, borrowed unless it has escapes; `None` for any other JSON value.
fn text(raw: &str) -> Option<Cow<'_, str>> {
    serde_json::from_str::<Text<'_>>(raw).ok().map(|t| t.0)
}

struct Text<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_str(V)
    }
}

/// An object member's name, as far as the envelope cares.
enum Member {
    Jsonrpc,
    Method,
    Id,
    Params,
    Other,
}

impl<'de> Deserialize<'de> for Member {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Member;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a member name")
            }
            fn visit_str<E>(self, v: &str) -> Result<Member, E> {
                Ok(match v {
                    "jsonrpc" => Member::Jsonrpc,
                    "method" => Member::Method,
                    "id" => Member::Id,
                    "params" => Member::Params,
                    _ => Member::Other,
                })
            }
        }
        d.deserialize_identifier(V)
    }
}

/// Reads a JSON value far enough to know its [`Shape`]; the whole value is still checked to be
/// JSON.
struct Top;

impl<'de> DeserializeSeed<'de> for Top {
    type Value = Shape<'de>;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Shape<'de>, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Top {
    type Value = Shape<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<Shape<'de>, E> {
        Ok(Shape::Other)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Shape<'de>, E> {
        Ok(Shape::Other)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Shape<'de>, E> {
        Ok(Shape::Other)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Shape<'de>, E> {
        Ok(Shape::Other)
    }
    fn visit_str<E>(self, _: &str) -> Result<Shape<'de>, E> {
        Ok(Shape::Other)
    }
    fn visit_unit<E>(self) -> Result<Shape<'de>, E> {
        Ok(Shape::Other)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Shape<'de>, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<&'de RawValue>()? {
            items.push(item);
        }
        Ok(Shape::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Shape<'de>, A::Error> {
        let mut members = Members::default();
        while let Some(name) = map.next_key::<Member>()? {
            let slot = match name {
                Member::Jsonrpc => &mut members.jsonrpc,
                Member::Method => &mut members.method,
                Member::Id => &mut members.id,
                Member::Params => &mut members.params,
                Member::Other => {
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
            };
            let value = map.next_value::<&'de RawValue>()?;
            members.repeated |= slot.is_some();
            *slot = Some(value);
        }
        Ok(Shape::Object(members))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn single(text: &str) -> Entry<'_> {
        match classify(text) {
            Message::Single(entry) => entry,
            Message::Batch(_) => panic!("{text} is not a batch"),
        }
    }

    fn refusal(text: &str) -> (i32, Option<Id<'_>>) {
        match single(text) {
            Entry::Refused(r) => (r.fault.code(), r.id),
            other => panic!("{text} should be refused: {other:?}"),
        }
    }

    #[test]
    fn json_it_cannot_read_is_not_a_request_and_never_not_json() {
        // Found by the rpc_envelope fuzz target: RFC 8259 allows any number and any \u escape,
        // so these are JSON, answered -32600, not -32700.
        for text in ["7e7777777", "-1e400", r#""\udc00""#, r#"{"\udc00":1}"#] {
            assert_eq!(refusal(text), (-32600, None), "{text}");
        }
        let batch = classify(r#"[{"\udc00":1},{"jsonrpc":"2.0","method":"m"}]"#);
        let Message::Batch(batch) = batch else {
            panic!("a batch");
        };
        let entries: Vec<_> = batch.entries().collect();
        assert!(
            matches!(&entries[0], Entry::Refused(r) if r.fault == Fault::NotRequest),
            "{entries:?}"
        );
        assert_eq!(entries[1], Entry::Notification);
        assert_eq!(refusal("1e400x").0, -32700);
    }

    #[test]
    fn reads_a_request_with_its_id_method_and_params() {
        let entry = single(r#"{"jsonrpc":"2.0","id":7,"method":"node.info","params":[]}"#);
        assert_eq!(
            entry,
            Entry::Request(Request {
                id: Id::Number(7),
                method: "node.info".into(),
                params: Params::Structured("[]"),
            })
        );
        let entry = single(r#"{"method":"m","jsonrpc":"2.0","id":"a\"b","x":1,"x":2}"#);
        assert!(
            matches!(&entry, Entry::Request(r) if r.id == Id::Str("a\"b".into()) && r.params == Params::Absent),
            "{entry:?}"
        );
    }

    #[test]
    fn refuses_every_odd_id_with_id_null_whatever_the_method() {
        for id in [
            "-1",
            "1.5",
            "1.0",
            "1e2",
            "-0",
            "9007199254740992",
            "18446744073709551616",
            "null",
            "true",
            "false",
            "{}",
            "[1]",
        ] {
            let text =
                format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"space.post","params":[]}}"#);
            assert_eq!(refusal(&text), (-32600, None), "id {id}");
        }
        let max = r#"{"jsonrpc":"2.0","id":9007199254740991,"method":"m"}"#;
        assert!(matches!(single(max), Entry::Request(r) if r.id == Id::Number(MAX_SAFE_INTEGER)));
    }

    #[test]
    fn a_repeated_envelope_member_is_refused_with_id_null() {
        for text in [
            r#"{"jsonrpc":"2.0","id":1,"id":2,"method":"m"}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"m","method":"n"}"#,
            r#"{"jsonrpc":"2.0","jsonrpc":"2.0","id":1,"method":"m"}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"m","params":[],"params":[]}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"m","\u0069d":1}"#,
        ] {
            assert_eq!(refusal(text), (-32600, None), "{text}");
        }
    }

    #[test]
    fn a_valid_id_is_kept_when_the_rest_is_wrong() {
        assert_eq!(
            refusal(r#"{"jsonrpc":"1.0","id":3,"method":"m"}"#),
            (-32600, Some(Id::Number(3)))
        );
        assert_eq!(
            refusal(r#"{"jsonrpc":"2.0","id":"x","method":5}"#),
            (-32600, Some(Id::Str("x".into())))
        );
        assert_eq!(
            refusal(r#"{"jsonrpc":"2.0","id":4}"#),
            (-32600, Some(Id::Number(4)))
        );
    }

    #[test]
    fn notifications_are_exactly_the_well_formed_messages_without_id() {
        assert_eq!(
            single(r#"{"jsonrpc":"2.0","method":"m","params":[1]}"#),
            Entry::Notification
        );
        for text in [
            r#"{"jsonrpc":"2.0"}"#,
            r#"{"method":"m"}"#,
            r#"{"jsonrpc":"2.0","method":null}"#,
            "{}",
        ] {
            assert_eq!(refusal(text), (-32600, None), "{text}");
        }
    }

    #[test]
    fn not_json_and_not_objects() {
        for text in ["{", "", "{\"a\":1} x", "[1,]", "nul", r#"{"id":01}"#] {
            assert_eq!(refusal(text), (-32700, None), "{text:?}");
        }
        for text in ["1", "\"x\"", "null", "true", "[]"] {
            assert_eq!(refusal(text), (-32600, None), "{text:?}");
        }
    }

    #[test]
    fn params_that_are_not_structured_are_marked() {
        for params in ["null", "1", "\"x\"", "true"] {
            let text = format!(r#"{{"jsonrpc":"2.0","id":1,"method":"m","params":{params}}}"#);
            assert!(
                matches!(single(&text), Entry::Request(r) if r.params == Params::Unstructured),
                "{params}"
            );
        }
        let text = r#"{"jsonrpc":"2.0","id":1,"method":"m","params": {"a": [1]} }"#;
        assert!(
            matches!(single(text), Entry::Request(r) if r.params == Params::Structured(r#"{"a": [1]}"#))
        );
    }

    #[test]
    fn batch_entries_are_classified_one_by_one() {
        let Message::Batch(batch) = classify(
            r#"[1, {"jsonrpc":"2.0","method":"m"}, {"jsonrpc":"2.0","id":-1,"method":"m"},
                {"jsonrpc":"2.0","id":2,"method":"m"}]"#,
        ) else {
            panic!("a batch");
        };
        let entries: Vec<_> = batch.entries().collect();
        assert_eq!(entries.len(), 4);
        assert!(
            matches!(&entries[0], Entry::Refused(r) if r.fault == Fault::NotRequest && r.id.is_none())
        );
        assert_eq!(entries[1], Entry::Notification);
        assert!(matches!(&entries[2], Entry::Refused(r) if r.id.is_none()));
        assert!(matches!(&entries[3], Entry::Request(r) if r.id == Id::Number(2)));
    }

    proptest::proptest! {
        #[test]
        fn never_panics(text in "\\PC{0,64}") {
            if let Message::Batch(batch) = classify(&text) {
                batch.entries().for_each(drop);
            }
        }

        #[test]
        fn never_panics_on_near_requests(
            id in "(-?[0-9]{0,20}(\\.[0-9])?|\"[a-z\\\\\"]{0,4}\"|null|\\{\\}|\\[\\])",
            method in "(\"[a-z.]{0,8}\"|[0-9]|null)",
            params in "(\\[\\]|\\{\\}|null|1|\"p\")",
        ) {
            let text = format!(r#"{{"jsonrpc":"2.0","id":{id},"method":{method},"params":{params}}}"#);
            let _ = classify(&text);
            let batch = format!("[{text},{text}]");
            if let Message::Batch(batch) = classify(&batch) {
                batch.entries().for_each(drop);
            }
        }
    }
}
