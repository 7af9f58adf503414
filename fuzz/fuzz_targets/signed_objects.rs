//! Every signed object kind (`spec/protocol.md` §3.3–§3.5, §4): strict decoding, rule checks,
//! signatures and content ids.
//!
//! The first input byte chooses what the rest is:
//! - below 0x80: a text, decoded as the kind `byte % 10` of [`KINDS`] (the signed kinds of §4;
//!   the ninth, the stream frame, is binary and has a target of its own, so it decodes nothing
//!   here);
//! - 0x80 and above: the `byte & 0x7f`-th signed vector of `spec/vectors/northstar.json` (modulo
//!   their number), with a byte of its text changed by each following 3-byte group (a 16-bit
//!   little-endian position, then a value to xor into that byte), at most four changes.
//!
//! Properties:
//! - a refusal by strict decoding has a §3.1 name; a broken rule has one of its kind's names
//!   (§4); a failed check has `invalid_signature` or, for events, one of §4.8's names;
//! - the decoded object re-encodes to exactly the canonical bytes of the text received (the
//!   bytes a signature covers are those of what was received, §3.4), decodes again from them to
//!   the same object, and its content id is the BLAKE3 hash of them without `sig` (§3.5);
//! - the node's JSON-RPC layer decodes parameters with serde_json directly (§3.1): it decodes
//!   every object strict decoding decodes, to the same value, and the only texts it takes that
//!   strict decoding refuses carry an unsafe integer, which no signature can then cover;
//! - nothing verifies but the vectors' own objects: an object whose signatures verify has the
//!   content id of a signed vector of its kind (signatures cannot be forged, so any other
//!   would be a checking bug), and a changed vector that still verifies kept its content id.
#![no_main]

use std::fmt::Debug;
use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use northstar_fuzz::{PARSE_ERRORS, text, vector_did, vectors};
use northstar_protocol::canonical;
use northstar_protocol::sign::Signed;
use northstar_protocol::wire::{
    AuthChallenge, AuthResponse, Beam, BeamRef, Edit, Event, Membership, RuleError, SpaceGenesis,
    Tombstone,
};
use northstar_protocol::{ContentId, Did};
use serde::de::DeserializeOwned;

/// The kinds of signed object a selector byte picks, as the vectors name them (`kind`).
const KINDS: [&str; 10] = [
    "auth_challenge",
    "auth_response",
    "space_genesis",
    "membership",
    "beam",
    "beam_ref",
    "tombstone",
    "event",
    "stream_frame",
    "edit",
];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    if selector < 0x80 {
        let kind = KINDS[usize::from(selector) % KINDS.len()];
        if let Some(id) = check(kind, &text(rest)) {
            assert!(
                signed_vectors()
                    .iter()
                    .any(|(k, _, vector_id)| *k == kind && *vector_id == id),
                "a {kind} verifies with content id {id}, which no vector has"
            );
        }
    } else {
        change_vector(usize::from(selector & 0x7f), rest);
    }
});

fn change_vector(index: usize, changes: &[u8]) {
    let all = signed_vectors();
    let (kind, original, id) = &all[index % all.len()];
    let mut bytes = original.clone().into_bytes();
    let mut changed = false;
    for change in changes.chunks_exact(3).take(4) {
        let position = usize::from(u16::from_le_bytes([change[0], change[1]])) % bytes.len();
        bytes[position] ^= change[2];
        changed |= change[2] != 0;
    }
    match check(kind, &text(&bytes)) {
        Some(verified) => assert_eq!(
            verified, *id,
            "a changed {kind} still verifies, with another content id"
        ),
        None => assert!(changed, "the unchanged vector {original} does not verify"),
    }
}

/// The signed vectors: kind, object as compact JSON text, content id.
fn signed_vectors() -> &'static [(&'static str, String, ContentId)] {
    static SIGNED: LazyLock<Vec<(&'static str, String, ContentId)>> = LazyLock::new(|| {
        vectors()["signed"]
            .as_array()
            .expect("signed is an array")
            .iter()
            .map(|v| {
                let name = v["kind"].as_str().expect("a kind");
                let kind = *KINDS.iter().find(|k| **k == name).expect("a known kind");
                let id = v["content_id"]
                    .as_str()
                    .expect("an id")
                    .parse()
                    .expect("an id");
                (kind, v["object"].to_string(), id)
            })
            .collect()
    });
    &SIGNED
}

/// Decode `text` as a `kind` object and check it through; its content id if it verifies.
fn check(kind: &str, text: &str) -> Option<ContentId> {
    match kind {
        "auth_challenge" => check_kind::<AuthChallenge>(text),
        "auth_response" => check_kind::<AuthResponse>(text),
        "space_genesis" => check_kind::<SpaceGenesis>(text),
        "membership" => check_kind::<Membership>(text),
        "beam" => check_kind::<Beam>(text),
        "beam_ref" => check_kind::<BeamRef>(text),
        "tombstone" => check_kind::<Tombstone>(text),
        "event" => check_kind::<Event>(text),
        "edit" => check_kind::<Edit>(text),
        // Frames are binary, not JSON text: the stream_frame target reads them.
        _ => None,
    }
}

/// What differs between the kinds: their rule checks and how their signatures are checked.
trait Kind: Signed + DeserializeOwned + PartialEq + Debug {
    /// The names of the kind's rule checks (§4, "Rule checks").
    const RULE_ERRORS: &'static [&'static str] = &[];
    /// The names its signature checks can fail with.
    const CHECK_ERRORS: &'static [&'static str] = &["invalid_signature"];
    fn rules(&self) -> Result<(), RuleError> {
        Ok(())
    }
    /// Every signature the kind carries, each under its signer.
    fn verify_all(&self) -> Result<(), &'static str>;
}

/// A kind whose `verify` checks all its signatures, with `check_rules` and its rule names if it
/// has rule checks.
macro_rules! kind {
    ($ty:ty) => {
        impl Kind for $ty {
            fn verify_all(&self) -> Result<(), &'static str> {
                self.verify().map_err(|e| e.code())
            }
        }
    };
    ($ty:ty, rules: $names:expr) => {
        impl Kind for $ty {
            const RULE_ERRORS: &'static [&'static str] = &$names;
            fn rules(&self) -> Result<(), RuleError> {
                self.check_rules()
            }
            fn verify_all(&self) -> Result<(), &'static str> {
                self.verify().map_err(|e| e.code())
            }
        }
    };
}

kind!(AuthChallenge, rules: ["bad_origin", "bad_address", "too_long", "bad_expiry"]);
kind!(AuthResponse);
kind!(SpaceGenesis, rules: ["too_long", "bad_fanout", "bad_address"]);
kind!(
    Membership,
    rules: [
        "subject_not_actor",
        "subject_is_actor",
        "home_required",
        "home_not_allowed",
        "bad_address",
    ]
);
kind!(
    Beam,
    rules: [
        "too_long",
        "too_many_attachments",
        "bad_attachment_name",
        "bad_media_type",
        "duplicate_attachment",
        "too_large",
    ]
);
kind!(BeamRef, rules: ["bad_address", "too_long"]);
kind!(Tombstone);
kind!(Edit, rules: ["zero_version", "self_edit"]);

impl Kind for Event {
    const CHECK_ERRORS: &'static [&'static str] = &[
        "zero_seq",
        "prev_presence",
        "genesis_placement",
        "space_mismatch",
        "invalid_signature",
    ];
    /// §4.8's checks, with the vectors' sequencer (the key named `node`).
    fn verify_all(&self) -> Result<(), &'static str> {
        static SEQUENCER: LazyLock<Did> =
            LazyLock::new(|| Did::parse(vector_did("node")).expect("the vectors' node DID"));
        self.verify(&SEQUENCER).map_err(|e| e.code())
    }
}

fn check_kind<T: Kind>(text: &str) -> Option<ContentId> {
    let strict = canonical::from_str_strict::<T>(text);
    let lenient = serde_json::from_str::<T>(text);
    let object = match (strict, lenient) {
        (Ok(object), Ok(lenient)) => {
            assert_eq!(lenient, object, "serde_json decodes another object");
            object
        }
        (Ok(object), Err(e)) => panic!("the RPC layer's decoder refuses {object:?}: {e}"),
        (Err(e), lenient) => {
            assert!(PARSE_ERRORS.contains(&e.code()), "no §3.1 name: {e:?}");
            if let Ok(lenient) = lenient {
                assert_eq!(
                    e.code(),
                    "unsafe_integer",
                    "the RPC layer's decoder takes what strict decoding refuses: {lenient:?}"
                );
                assert!(
                    lenient.verify_all().is_err(),
                    "an object with an unsafe integer verifies: {lenient:?}"
                );
            }
            return None;
        }
    };

    let mut received = canonical::parse_strict(text).expect("it decoded, so it parses");
    let received_bytes = canonical::to_canonical_bytes(&received).expect("it parsed, so encodes");
    let encoded = canonical::to_canonical_vec(&object).expect("a decoded object encodes");
    assert_eq!(
        String::from_utf8_lossy(&encoded),
        String::from_utf8_lossy(&received_bytes),
        "the object re-encodes to other bytes than those received"
    );
    let canonical_text = std::str::from_utf8(&encoded).expect("canonical bytes are UTF-8");
    let again: T = canonical::from_str_strict(canonical_text).expect("its canonical text decodes");
    assert_eq!(
        again, object,
        "its canonical text decodes to another object"
    );

    let members = received
        .as_object_mut()
        .expect("a signed object is a JSON object");
    for member in T::NOT_CONTENT {
        members.remove(*member);
    }
    let unsigned = object
        .canonical_unsigned()
        .expect("a decoded object encodes");
    assert_eq!(
        unsigned,
        canonical::to_canonical_bytes(&received).expect("encodes"),
        "the content bytes are not those received without `sig` (and a beam's `ref`)"
    );
    let id = object
        .content_id()
        .expect("a decoded object has a content id");
    assert_eq!(id, ContentId::of(&unsigned));

    if let Err(e) = object.rules() {
        assert!(
            T::RULE_ERRORS.contains(&e.code()),
            "not a rule of its kind: {e:?}"
        );
    }
    match object.verify_all() {
        Ok(()) => Some(id),
        Err(code) => {
            assert!(
                T::CHECK_ERRORS.contains(&code),
                "{code} from a signature check"
            );
            None
        }
    }
}
