//! DIDs (`spec/protocol.md` §2.2) and addresses (§4.1): every text is read as a DID, a space
//! id, a space URI, a beam path, a beam URI and an authority.
//!
//! Properties:
//! - a DID that parses prints back to the same text (one text per key), is 56 characters long,
//!   and is the DID of its own public key; a refusal has a §2.2 name, and the first three steps
//!   of §2.2 (length, prefix, `z`) decide as the table says;
//! - 32 input bytes taken as a public key: the key is accepted exactly when the DID text made
//!   from it parses, and both refuse it with the same error;
//! - every address that parses prints back to the same text and parses again to an equal value,
//!   and its parts rebuild it; an authority that is accepted has §4.1's length and characters;
//! - no text is both a space URI and a beam URI.
#![no_main]

use libfuzzer_sys::fuzz_target;
use northstar_fuzz::{DID_ERRORS, text};
use northstar_protocol::Did;
use northstar_protocol::address::{
    self, BeamPath, BeamUri, MAX_AUTHORITY_LEN, MAX_UNIQUE_ID_LEN, SpaceId, SpaceUri,
};
use northstar_protocol::did::{DID_KEY_PREFIX, ED25519_MULTICODEC};

fuzz_target!(|data: &[u8]| {
    if let Ok(key) = <[u8; 32]>::try_from(data) {
        check_public_key(&key);
    }
    let text = text(data);
    check_did(&text);
    check_addresses(&text);
});

fn check_did(text: &str) {
    match Did::parse(text) {
        Ok(did) => {
            assert_eq!(did.as_str(), text, "a DID prints as another text");
            assert_eq!(did.to_string(), text);
            assert_eq!(text.len(), 56);
            assert!(text.starts_with("did:key:z6Mk"));
            let own = Did::from_public_key(did.public_key()).expect("a parsed DID's key is valid");
            assert_eq!(own.as_str(), text, "not the DID of its own key");
            assert_eq!(Did::parse(text).expect("parses again"), did);
        }
        Err(e) => {
            let code = e.code();
            assert!(DID_ERRORS.contains(&code), "no §2.2 name: {e:?}");
            let first_steps = if text.len() > 128 {
                Some("too_long")
            } else if !text.starts_with(DID_KEY_PREFIX) {
                Some("not_did_key")
            } else if !text[DID_KEY_PREFIX.len()..].starts_with('z') {
                Some("not_base58btc")
            } else {
                None
            };
            match first_steps {
                Some(expected) => assert_eq!(code, expected, "§2.2 step order for {text:?}"),
                None => assert!(
                    !matches!(code, "too_long" | "not_did_key" | "not_base58btc"),
                    "{code} for {text:?}, which passes steps 1 to 3"
                ),
            }
        }
    }
}

fn check_public_key(key: &[u8; 32]) {
    let mut raw = ED25519_MULTICODEC.to_vec();
    raw.extend_from_slice(key);
    let text = format!("{DID_KEY_PREFIX}{}", multibase_base58btc(&raw));
    match (Did::from_public_key(key), Did::parse(&text)) {
        (Ok(from_key), Ok(parsed)) => {
            assert_eq!(from_key.as_str(), text);
            assert_eq!(parsed, from_key);
            assert_eq!(parsed.public_key(), key);
        }
        (Err(a), Err(b)) => {
            assert_eq!(
                a, b,
                "the key and its DID are refused for different reasons"
            );
            assert!(matches!(a.code(), "invalid_point" | "weak_key"), "{a:?}");
        }
        (a, b) => panic!("the key gives {a:?}, its DID {text} gives {b:?}"),
    }
}

/// base58btc with its multibase `z`, from the DID of a known key: the protocol crate does not
/// export its encoder, and its `Did` only prints valid keys. Bitcoin's alphabet, big-endian,
/// each leading zero byte as `1` (§2.1).
fn multibase_base58btc(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 58] = b"123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";
    let mut digits: Vec<u8> = Vec::new(); // little-endian base-58 digits
    for &byte in bytes {
        let mut carry = u32::from(byte);
        for digit in &mut digits {
            carry += u32::from(*digit) << 8;
            *digit = (carry % 58) as u8;
            carry /= 58;
        }
        while carry > 0 {
            digits.push((carry % 58) as u8);
            carry /= 58;
        }
    }
    let zeros = bytes.iter().take_while(|&&b| b == 0).count();
    let mut out = String::from("z");
    out.extend(std::iter::repeat_n('1', zeros));
    out.extend(
        digits
            .iter()
            .rev()
            .map(|&d| char::from(ALPHABET[usize::from(d)])),
    );
    out
}

fn check_addresses(text: &str) {
    if let Some(id) = round_trip(text, SpaceId::parse) {
        assert!(text.len() <= 121, "longer than the longest space id");
        assert!((1..=MAX_UNIQUE_ID_LEN).contains(&id.unique_id().len()));
        let rebuilt = SpaceId::new(id.space_type(), id.owner(), id.unique_id())
            .expect("a parsed space id's parts build it again");
        assert_eq!(rebuilt, id);
        assert_eq!(rebuilt.as_str(), text);
    }
    let space_uri = round_trip(text, SpaceUri::parse);
    if let Some(uri) = &space_uri {
        assert!(address::check_authority(&uri.authority).is_ok());
    }
    round_trip(text, BeamPath::parse);
    let beam_uri = round_trip(text, BeamUri::parse);
    if let Some(uri) = &beam_uri {
        assert!(address::check_authority(&uri.authority).is_ok());
    }
    assert!(
        !(space_uri.is_some() && beam_uri.is_some()),
        "{text:?} is both a space URI and a beam URI"
    );
    if address::check_authority(text).is_ok() {
        assert!((1..=MAX_AUTHORITY_LEN).contains(&text.len()));
        assert!(
            text.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b)),
            "{text:?}"
        );
    }
}

/// `text` parsed with `parse`, if it parses: it then prints back to `text` and parses again to
/// an equal value.
fn round_trip<T, E>(text: &str, parse: fn(&str) -> Result<T, E>) -> Option<T>
where
    T: std::fmt::Display + PartialEq + std::fmt::Debug,
{
    let parsed = parse(text).ok()?;
    let printed = parsed.to_string();
    assert_eq!(printed, text, "prints as another text");
    let again = parse(&printed).ok();
    assert_eq!(
        again.as_ref(),
        Some(&parsed),
        "parses again to another value"
    );
    Some(parsed)
}
