//! Canonical JSON: RFC 8785 (JCS) restricted to integers, and a strict parser.
//!
//! Signed objects hold only strings, integers in `[-(2^53-1), 2^53-1]`, booleans, null, arrays
//! and objects. For that subset JCS is short to state, so it is written here rather than pulled
//! in: object members sorted by their keys' UTF-16 code units, no whitespace, integers in plain
//! decimal, strings escaped as JSON.stringify does (`\"`, `\\`, `\b \t \n \f \r`, other controls
//! as `\u00xx` lower-case, everything else literal UTF-8).
//!
//! [`parse_strict`] is the only way untrusted text becomes a signed object's JSON value: it refuses
//! duplicate keys (which different parsers resolve differently, so two verifiers could see two
//! objects), fractional or exponent numbers, and integers outside the safe range.
//! [`check_strict`] applies the same rules to a text without building anything.

use std::borrow::Cow;
use std::cell::Cell;
use std::collections::HashSet;
use std::fmt;
use std::marker::PhantomData;

use serde::Serialize;
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use crate::MAX_SAFE_INTEGER;

/// The ways a JSON text or value fails to be canonical-encodable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CanonicalError {
    /// The text is not JSON.
    #[error("malformed JSON: {reason}")]
    Syntax {
        /// The parser's message, with line and column.
        reason: String,
    },
    /// An object has the same key twice.
    #[error("duplicate key {key:?} in a JSON object")]
    DuplicateKey {
        /// The repeated key.
        key: String,
    },
    /// A number with a fraction or an exponent, or too large for a 64-bit integer.
    #[error("non-integer number {number}: signed objects carry integers only")]
    Float {
        /// The number as parsed.
        number: String,
    },
    /// An integer beyond 2^53-1 in magnitude.
    #[error("integer {number} is outside the safe range -(2^53-1)..=2^53-1")]
    UnsafeInteger {
        /// The integer.
        number: String,
    },
    /// Valid JSON, but not the shape of the object expected (a missing or unknown member, a
    /// member of the wrong type, a malformed DID or id inside it, a `null` where a member must
    /// be absent).
    #[error("wrong shape: {reason}")]
    Shape {
        /// What does not fit.
        reason: String,
    },
    /// A value could not be turned into JSON at all (e.g. a map with non-string keys).
    #[error("cannot encode as JSON: {reason}")]
    Unencodable {
        /// The encoder's message.
        reason: String,
    },
}

impl CanonicalError {
    /// The error's stable name, used in `spec/` and its test vectors.
    pub fn code(&self) -> &'static str {
        match self {
            CanonicalError::Syntax { .. } => "syntax",
            CanonicalError::DuplicateKey { .. } => "duplicate_key",
            CanonicalError::Float { .. } => "float",
            CanonicalError::UnsafeInteger { .. } => "unsafe_integer",
            CanonicalError::Shape { .. } => "shape",
            CanonicalError::Unencodable { .. } => "unencodable",
        }
    }
}

/// Parse JSON text strictly: duplicate keys, floats and unsafe integers are errors.
pub fn parse_strict(text: &str) -> Result<Value, CanonicalError> {
    read_strict::<Value>(text)
}

/// Check JSON text with the rules of [`parse_strict`] without building a value: one pass that
/// keeps nothing but the keys of the objects it is inside. For texts that are decoded some
/// other way afterwards, such as a JSON-RPC request's parameters (`spec/protocol.md` §3.1).
pub fn check_strict(text: &str) -> Result<(), CanonicalError> {
    read_strict::<()>(text)
}

/// Parse JSON text strictly (see [`parse_strict`]) into a typed value.
pub fn from_str_strict<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, CanonicalError> {
    let value = parse_strict(text)?;
    serde_json::from_value(value).map_err(|e| CanonicalError::Shape {
        reason: e.to_string(),
    })
}

/// For optional members: absent means `None`, and an explicit `null` is refused, because a
/// verifier re-encodes what it decoded and would silently drop the `null` the signer covered.
/// Use with `#[serde(default, deserialize_with = "canonical::present", skip_serializing_if =
/// "Option::is_none")]`.
pub fn present<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    T::deserialize(d).map(Some)
}

/// The canonical bytes of a JSON value.
pub fn to_canonical_bytes(value: &Value) -> Result<Vec<u8>, CanonicalError> {
    let mut out = Vec::with_capacity(256);
    write_value(value, &mut out)?;
    Ok(out)
}

/// The canonical bytes of anything serializable.
pub fn to_canonical_vec<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CanonicalError> {
    let value = serde_json::to_value(value).map_err(|e| CanonicalError::Unencodable {
        reason: e.to_string(),
    })?;
    to_canonical_bytes(&value)
}

fn check_integer(n: &serde_json::Number) -> Result<(), CanonicalError> {
    let safe = match (n.as_u64(), n.as_i64()) {
        (Some(u), _) => u <= MAX_SAFE_INTEGER,
        (None, Some(i)) => i.unsigned_abs() <= MAX_SAFE_INTEGER,
        (None, None) => {
            return Err(CanonicalError::Float {
                number: n.to_string(),
            });
        }
    };
    if safe {
        Ok(())
    } else {
        Err(CanonicalError::UnsafeInteger {
            number: n.to_string(),
        })
    }
}

fn write_value(value: &Value, out: &mut Vec<u8>) -> Result<(), CanonicalError> {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => {
            check_integer(n)?;
            out.extend_from_slice(n.to_string().as_bytes());
        }
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(item, out)?;
            }
            out.push(b']');
        }
        Value::Object(map) => write_object(map, out)?,
    }
    Ok(())
}

fn write_object(map: &Map<String, Value>, out: &mut Vec<u8>) -> Result<(), CanonicalError> {
    let mut entries: Vec<(&String, &Value)> = map.iter().collect();
    // JCS orders by UTF-16 code units, which differs from UTF-8 byte order only when a key
    // mixes characters above U+FFFF with ones in U+E000..=U+FFFF.
    entries.sort_by(|a, b| a.0.encode_utf16().cmp(b.0.encode_utf16()));
    out.push(b'{');
    for (i, (key, item)) in entries.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_string(key, out);
        out.push(b':');
        write_value(item, out)?;
    }
    out.push(b'}');
    Ok(())
}

fn write_string(s: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            0x08 => b"\\b",
            0x09 => b"\\t",
            0x0a => b"\\n",
            0x0c => b"\\f",
            0x0d => b"\\r",
            0x00..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        if escape.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.extend_from_slice(b"\\u00");
            out.push(HEX[usize::from(b >> 4)]);
            out.push(HEX[usize::from(b & 0xf)]);
        } else {
            out.extend_from_slice(escape);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// What the strict reader makes of each JSON value it accepts: a [`Value`] for
/// [`parse_strict`], nothing for [`check_strict`]. The rules live once, in [`Strict`]; an
/// output only says how to keep (or drop) what passed them.
trait Output: Sized {
    /// The members of an object being read: enough to find a repeated key.
    type Members<'de>: Default;
    /// The items of an array being read.
    type Items: Default;

    fn null() -> Self;
    fn bool(v: bool) -> Self;
    fn integer(v: serde_json::Number) -> Self;
    fn string(v: Cow<'_, str>) -> Self;
    fn push(items: &mut Self::Items, item: Self);
    fn array(items: Self::Items) -> Self;
    /// Whether the object being read has this key already.
    fn has(members: &Self::Members<'_>, key: &str) -> bool;
    fn insert<'de>(members: &mut Self::Members<'de>, key: Cow<'de, str>, item: Self);
    fn object(members: Self::Members<'_>) -> Self;
}

impl Output for Value {
    type Members<'de> = Map<String, Value>;
    type Items = Vec<Value>;

    fn null() -> Self {
        Value::Null
    }
    fn bool(v: bool) -> Self {
        Value::Bool(v)
    }
    fn integer(v: serde_json::Number) -> Self {
        Value::Number(v)
    }
    fn string(v: Cow<'_, str>) -> Self {
        Value::String(v.into_owned())
    }
    fn push(items: &mut Vec<Value>, item: Self) {
        items.push(item);
    }
    fn array(items: Vec<Value>) -> Self {
        Value::Array(items)
    }
    fn has(members: &Map<String, Value>, key: &str) -> bool {
        members.contains_key(key)
    }
    fn insert<'de>(members: &mut Map<String, Value>, key: Cow<'de, str>, item: Self) {
        members.insert(key.into_owned(), item);
    }
    fn object(members: Map<String, Value>) -> Self {
        Value::Object(members)
    }
}

/// The check keeps nothing but each open object's keys, borrowed from the text where they
/// carry no escapes.
impl Output for () {
    type Members<'de> = HashSet<Cow<'de, str>>;
    type Items = ();

    fn null() {}
    fn bool(_: bool) {}
    fn integer(_: serde_json::Number) {}
    fn string(_: Cow<'_, str>) {}
    fn push((): &mut (), (): ()) {}
    fn array((): ()) {}
    fn has(members: &HashSet<Cow<'_, str>>, key: &str) -> bool {
        members.contains(key)
    }
    fn insert<'de>(members: &mut HashSet<Cow<'de, str>>, key: Cow<'de, str>, (): ()) {
        members.insert(key);
    }
    fn object(_: HashSet<Cow<'_, str>>) {}
}

/// The strict rules of §3.1 as a serde seed, over any [`Output`]. The first fault is kept in
/// `fault`, because serde's error type only carries text.
struct Strict<'a, O> {
    fault: &'a Cell<Option<CanonicalError>>,
    output: PhantomData<fn() -> O>,
}

impl<O> Clone for Strict<'_, O> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<O> Copy for Strict<'_, O> {}

impl<'a, O> Strict<'a, O> {
    fn new(fault: &'a Cell<Option<CanonicalError>>) -> Self {
        Self {
            fault,
            output: PhantomData,
        }
    }

    fn fail<E: de::Error>(self, fault: CanonicalError) -> E {
        let message = fault.to_string();
        self.fault.set(Some(fault));
        E::custom(message)
    }
}

/// Read all of `text` with the strict rules into `O`.
fn read_strict<O: Output>(text: &str) -> Result<O, CanonicalError> {
    let fault = Cell::new(None);
    let mut de = serde_json::Deserializer::from_str(text);
    let parsed = Strict::<O>::new(&fault)
        .deserialize(&mut de)
        .and_then(|value| de.end().map(|()| value));
    parsed.map_err(|e| {
        fault.take().unwrap_or(CanonicalError::Syntax {
            reason: e.to_string(),
        })
    })
}

impl<'de, O: Output> DeserializeSeed<'de> for Strict<'_, O> {
    type Value = O;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<O, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de, O: Output> Visitor<'de> for Strict<'_, O> {
    type Value = O;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<O, E> {
        Ok(O::bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<O, E> {
        if v.unsigned_abs() > MAX_SAFE_INTEGER {
            return Err(self.fail(CanonicalError::UnsafeInteger {
                number: v.to_string(),
            }));
        }
        Ok(O::integer(v.into()))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<O, E> {
        if v > MAX_SAFE_INTEGER {
            return Err(self.fail(CanonicalError::UnsafeInteger {
                number: v.to_string(),
            }));
        }
        Ok(O::integer(v.into()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<O, E> {
        Err(self.fail(CanonicalError::Float {
            number: v.to_string(),
        }))
    }
    fn visit_str<E>(self, v: &str) -> Result<O, E> {
        Ok(O::string(Cow::Borrowed(v)))
    }
    fn visit_string<E>(self, v: String) -> Result<O, E> {
        Ok(O::string(Cow::Owned(v)))
    }
    fn visit_unit<E>(self) -> Result<O, E> {
        Ok(O::null())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<O, A::Error> {
        let mut items = O::Items::default();
        while let Some(item) = seq.next_element_seed(self)? {
            O::push(&mut items, item);
        }
        Ok(O::array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<O, A::Error> {
        let mut members = O::Members::default();
        while let Some(Key(key)) = access.next_key::<Key<'de>>()? {
            // Refused as soon as the key is read: the first fault from the text's start.
            if O::has(&members, &key) {
                return Err(self.fail(CanonicalError::DuplicateKey {
                    key: key.into_owned(),
                }));
            }
            let item = access.next_value_seed(self)?;
            O::insert(&mut members, key, item);
        }
        Ok(O::object(members))
    }
}

/// An object's key, borrowed from the text unless it had escapes.
struct Key<'de>(Cow<'de, str>);

impl<'de> serde::Deserialize<'de> for Key<'de> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object key")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(text: &str) -> String {
        String::from_utf8(to_canonical_bytes(&parse_strict(text).unwrap()).unwrap()).unwrap()
    }

    #[test]
    fn sorts_keys_and_drops_whitespace() {
        assert_eq!(
            canon(r#"{ "b": [1, {"z": true, "a": null}], "a": "x" }"#),
            r#"{"a":"x","b":[1,{"a":null,"z":true}]}"#
        );
    }

    #[test]
    fn sorts_keys_by_utf16_code_units_not_utf8_bytes() {
        // U+1F600 is D83D DE00 in UTF-16, below U+FB01; in UTF-8 it sorts after.
        assert_eq!(
            canon("{\"\u{fb01}\":1,\"\u{1f600}\":2}"),
            "{\"\u{1f600}\":2,\"\u{fb01}\":1}"
        );
    }

    #[test]
    fn escapes_strings_like_json_stringify() {
        assert_eq!(
            canon(r#""\u0008\t\n\u000b\f\r\u001f \" \\ / \u007f é \u2028""#),
            "\"\\b\\t\\n\\u000b\\f\\r\\u001f \\\" \\\\ / \u{7f} é \u{2028}\""
        );
    }

    #[test]
    fn refuses_duplicate_keys_at_any_depth() {
        assert_eq!(
            parse_strict(r#"{"a":{"k":1,"k":2}}"#),
            Err(CanonicalError::DuplicateKey { key: "k".into() })
        );
    }

    #[test]
    fn refuses_floats_and_unsafe_integers() {
        for text in ["1.0", "1e3", "[0.5]", "{\"a\":-2.5E-3}"] {
            assert!(
                matches!(parse_strict(text), Err(CanonicalError::Float { .. })),
                "{text}"
            );
        }
        for text in ["9007199254740992", "-9007199254740992"] {
            assert!(
                matches!(
                    parse_strict(text),
                    Err(CanonicalError::UnsafeInteger { .. })
                ),
                "{text}"
            );
        }
        assert_eq!(canon("9007199254740991"), "9007199254740991");
        assert_eq!(canon("-9007199254740991"), "-9007199254740991");
    }

    #[test]
    fn reports_malformed_json_as_syntax() {
        for text in ["{", "{\"a\":1,}", "[1] 2", "\"\\ud800\"", ""] {
            assert!(
                matches!(parse_strict(text), Err(CanonicalError::Syntax { .. })),
                "{text:?}"
            );
        }
    }

    #[test]
    fn check_strict_agrees_with_parse_strict() {
        let texts = [
            r#"{"a":{"k":1,"k":2}}"#,
            r#"{"a":1,"\u0061":2}"#,
            r#"[{"a":1},{"a":1}]"#,
            "[1.5]",
            r#"{"since":9007199254740992}"#,
            "-9007199254740991",
            "18446744073709551616",
            r#"{"a":"\ud800"}"#,
            "[1,]",
            r#"{"a":[1,{"b":null}],"c":"x"}"#,
            r#"{"a":1,"a":1.5}"#,
        ];
        for text in texts {
            assert_eq!(check_strict(text), parse_strict(text).map(drop), "{text}");
        }
    }
}
