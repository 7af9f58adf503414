//! Stream frames (`spec/protocol.md` §4.9): every input is read as a frame's bytes, or (first
//! byte 0xff) is a list of changes to one of the vectors' valid frames.
//!
//! Properties:
//! - reading never panics, and a refusal has one of §4.9's error names;
//! - a frame that reads encodes back to exactly the bytes it was read from (one encoding per
//!   frame), and its fields obey §4.9 (a stream, integers within 2^53 − 1);
//! - a frame that also verifies is one of the vectors' frames: nobody but the owner can make one;
//! - the relay's reading (`Header::read` and `Header::verify`, without copying the payload)
//!   agrees with `Frame::decode` and `Frame::verify` on every input, refusals included;
//! - changing any byte of a valid frame makes it fail to read or to verify.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use northstar_fuzz::vectors;
use northstar_protocol::MAX_SAFE_INTEGER;
use northstar_protocol::address::SpaceType;
use northstar_protocol::frame::{Frame, FrameError, Header};

/// Every name §4.9 gives a refusal.
const FRAME_ERRORS: &[&str] = &[
    "truncated",
    "trailing_bytes",
    "frame_version",
    "frame_flags",
    "unsafe_integer",
    "too_large",
    "bad_space",
    "not_a_stream",
    "not_owner",
    "invalid_signature",
];

fuzz_target!(|data: &[u8]| {
    match data.split_first() {
        Some((0xff, changes)) => change_valid(changes),
        _ => {
            if let Some(bytes) = check(data) {
                assert!(
                    valid().contains(&bytes),
                    "a frame verifies that no vector holds"
                );
            }
        }
    }
});

/// Read and verify `bytes`; the bytes again if they are a verified frame.
fn check(bytes: &[u8]) -> Option<Vec<u8>> {
    let verdict = check_decoded(bytes);
    let relayed = Header::read(bytes).and_then(|h| {
        assert_eq!(h.payload.end + 64, bytes.len());
        h.verify(bytes)
    });
    assert_eq!(
        verdict.is_some(),
        relayed.is_ok(),
        "the relay's reading disagrees: {relayed:?}"
    );
    verdict
}

fn check_decoded(bytes: &[u8]) -> Option<Vec<u8>> {
    let frame = match Frame::decode(bytes) {
        Ok(frame) => frame,
        Err(e) => {
            named(&e);
            return None;
        }
    };
    assert_eq!(frame.space.space_type(), SpaceType::Stream);
    assert!(frame.number <= MAX_SAFE_INTEGER && frame.timestamp <= MAX_SAFE_INTEGER);
    let again = frame.encode().expect("a frame that reads encodes");
    assert_eq!(
        again, bytes,
        "a frame reads from bytes it does not encode to"
    );
    match frame.verify() {
        Ok(()) => Some(again),
        Err(e) => {
            named(&e);
            None
        }
    }
}

fn named(e: &FrameError) {
    assert!(FRAME_ERRORS.contains(&e.code()), "unnamed refusal {e:?}");
}

/// Pairs of (position, xor) bytes applied to a valid frame chosen by the first byte.
fn change_valid(changes: &[u8]) {
    let Some((&pick, changes)) = changes.split_first() else {
        return;
    };
    let all = valid();
    let original = &all[usize::from(pick) % all.len()];
    let mut bytes = original.clone();
    for pair in changes.chunks_exact(2) {
        let at = usize::from(pair[0]) % bytes.len();
        bytes[at] ^= pair[1];
    }
    if bytes == *original {
        assert!(
            check(&bytes).is_some(),
            "a vector's frame no longer verifies"
        );
    } else {
        assert!(check(&bytes).is_none(), "a changed frame still verifies");
    }
}

/// The vectors' valid frames, as bytes.
fn valid() -> &'static [Vec<u8>] {
    static VALID: LazyLock<Vec<Vec<u8>>> = LazyLock::new(|| {
        vectors()["frames"]["valid"]
            .as_array()
            .expect("frames.valid is an array")
            .iter()
            .map(|v| hex_bytes(v["hex"].as_str().expect("a hex string")))
            .collect()
    });
    &VALID
}

fn hex_bytes(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex"))
        .collect()
}
