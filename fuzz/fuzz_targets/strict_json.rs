//! The strict JSON parser and the canonical encoder (`spec/protocol.md` §3.1, §3.2).
//!
//! Properties, for any text:
//! - a refusal has one of the four parse error names of §3.1;
//! - what parses encodes canonically; the canonical text parses again to the same value and
//!   encodes to the same bytes (idempotence), and equals what an independent encoder written
//!   here from §3.2 produces;
//! - strict parsing accepts a subset of JSON: serde_json accepts every text the strict parser
//!   accepts (and sees the same value in it), and the strict parser calls `syntax` only texts
//!   that serde_json refuses too;
//! - for a text that starts with a number, the verdict is the one §3.1's rules give.
#![no_main]

use libfuzzer_sys::fuzz_target;
use northstar_fuzz::text;
use northstar_protocol::canonical::{self, CanonicalError};
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let text = text(data);
    let parsed = canonical::parse_strict(&text);
    let lenient = serde_json::from_str::<Value>(&text);
    match &parsed {
        Ok(value) => check_canonical(value),
        Err(e) => {
            assert!(
                matches!(
                    e.code(),
                    "syntax" | "duplicate_key" | "float" | "unsafe_integer"
                ),
                "a parse error without a §3.1 name: {e:?}"
            );
        }
    }
    match (&parsed, &lenient) {
        (Ok(strict), Ok(lenient)) => assert_eq!(strict, lenient, "serde_json reads another value"),
        (Ok(_), Err(e)) => panic!("strict parsing accepted a text serde_json refuses: {e}"),
        (Err(CanonicalError::Syntax { reason }), Ok(_)) => {
            panic!("`syntax` for a text serde_json accepts: {reason}")
        }
        _ => {}
    }
    if let Some(expected) = number_verdict(&text) {
        let got = parsed.as_ref().map(|_| ()).map_err(CanonicalError::code);
        assert_eq!(got, expected, "§3.1 verdict for the number {text:?}");
    }
});

fn check_canonical(value: &Value) {
    let canon = canonical::to_canonical_bytes(value).expect("a strictly parsed value encodes");
    let canon_text = std::str::from_utf8(&canon).expect("canonical bytes are UTF-8");
    assert_eq!(canon_text, reference_encoding(value), "differs from §3.2");
    let again = canonical::parse_strict(canon_text).expect("the canonical text parses strictly");
    assert_eq!(&again, value, "the canonical text reads as another value");
    let twice = canonical::to_canonical_bytes(&again).expect("it encodes again");
    assert_eq!(twice, canon, "canonical encoding is not idempotent");
}

/// §3.2 written out again, independently of `canonical.rs`: members sorted by UTF-16 code units,
/// no whitespace, and scalars as serde_json's compact writer puts them, whose string escapes
/// are JSON.stringify's (the short escapes, other controls as lower-case `\u00xx`, nothing else
/// escaped).
fn reference_encoding(value: &Value) -> String {
    let mut out = String::new();
    write_reference(value, &mut out);
    out
}

fn write_reference(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut members: Vec<(&String, &Value)> = map.iter().collect();
            members.sort_by_key(|(name, _)| name.encode_utf16().collect::<Vec<u16>>());
            out.push('{');
            for (i, (name, item)) in members.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&serde_json::to_string(name).expect("a string serializes"));
                out.push(':');
                write_reference(item, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_reference(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&serde_json::to_string(scalar).expect("a scalar serializes")),
    }
}

/// What §3.1 says of a text that starts (after whitespace) with a number: `Ok` or the error
/// name. `None` for any other text.
///
/// The number is read as one token, as JSON lexers read it, without backtracking: a `.` must be
/// followed by a digit, an `e` or `E` by an optional sign and a digit, and a `0` that begins the
/// integer part by no digit; a token that breaks this is `syntax`. A fault of a whole token is
/// met before anything after it: `1.5.5` is `float`, `1.5e` is `syntax`.
fn number_verdict(text: &str) -> Option<Result<(), &'static str>> {
    let text = text.trim_start_matches(WHITESPACE);
    if !text.starts_with(|c: char| c == '-' || c.is_ascii_digit()) {
        return None;
    }
    let Some(token) = number_token(text) else {
        return Some(Err("syntax"));
    };
    let fault = number_fault(token);
    if fault.is_some() {
        return fault.map(Err);
    }
    Some(
        if text[token.len()..]
            .trim_start_matches(WHITESPACE)
            .is_empty()
        {
            Ok(())
        } else {
            Err("syntax")
        },
    )
}

const WHITESPACE: [char; 4] = [' ', '\t', '\n', '\r'];

/// The number token at the start of `text`, `None` if it is malformed (RFC 8259's grammar,
/// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`, read without backtracking).
fn number_token(text: &str) -> Option<&str> {
    let bytes = text.as_bytes();
    let digits = |from: usize| {
        bytes[from..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count()
    };
    let mut i = usize::from(bytes.first() == Some(&b'-'));
    let int_digits = digits(i);
    if int_digits == 0 || (int_digits > 1 && bytes[i] == b'0') {
        return None;
    }
    i += int_digits;
    if bytes.get(i) == Some(&b'.') {
        let n = digits(i + 1);
        if n == 0 {
            return None;
        }
        i += 1 + n;
    }
    if matches!(bytes.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(bytes.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let n = digits(i);
        if n == 0 {
            return None;
        }
        i += n;
    }
    Some(&text[..i])
}

/// §3.1's fault of a well-formed number token, if it has one.
fn number_fault(token: &str) -> Option<&'static str> {
    let magnitude: f64 = token.parse().expect("a well-formed number parses as f64");
    if !magnitude.is_finite() {
        // Beyond a double's range, whether written with an exponent or as an integer literal.
        return Some("syntax");
    }
    if token.contains(['.', 'e', 'E']) || token == "-0" {
        return Some("float");
    }
    // An integer literal: outside [-2^63, 2^64-1] `float`, beyond ±(2^53-1) `unsafe_integer`.
    let Ok(n) = token.parse::<i128>() else {
        return Some("float");
    };
    if n < -(1 << 63) || n > i128::from(u64::MAX) {
        Some("float")
    } else if n.unsigned_abs() > (1 << 53) - 1 {
        Some("unsafe_integer")
    } else {
        None
    }
}
