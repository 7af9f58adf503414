//! Property tests: round-trips of every encoding, and signatures that fail on any change.

use northstar_protocol::address::{SpaceId, SpaceType};
use northstar_protocol::canonical::{parse_strict, to_canonical_bytes};
use northstar_protocol::sign::{self, Signature, Signed};
use northstar_protocol::wire::{Beam, BeamRef};
use northstar_protocol::{ContentId, Did, Keypair, MAX_SAFE_INTEGER};
use proptest::prelude::*;
use serde_json::Value;

fn safe_int() -> impl Strategy<Value = i64> {
    let max = MAX_SAFE_INTEGER as i64;
    -max..=max
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        safe_int().prop_map(Value::from),
        any::<String>().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(any::<String>(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A post by `author` into a fixed channel of theirs.
fn post(author: &Keypair, title: &str, body: &str, created_at: u64) -> (Beam, BeamRef) {
    let space = SpaceId::new(SpaceType::Channel, author.did(), "props").unwrap();
    Beam::post(author, space, "home.example", title, body, created_at).unwrap()
}

proptest! {
    #[test]
    fn did_text_round_trips(seed in any::<[u8; 32]>()) {
        let pair = Keypair::from_seed(&seed);
        let parsed = Did::parse(pair.did().as_str()).unwrap();
        prop_assert_eq!(&parsed, pair.did());
        prop_assert_eq!(parsed.as_str(), pair.did().as_str());
        prop_assert_eq!(Did::from_public_key(parsed.public_key()).unwrap(), parsed);
    }

    #[test]
    fn canonical_bytes_parse_back_to_the_same_value(value in json_value()) {
        let canon = to_canonical_bytes(&value).unwrap();
        let text = std::str::from_utf8(&canon).unwrap();
        let reparsed = parse_strict(text).unwrap();
        prop_assert_eq!(&reparsed, &value);
        // Canonicalizing is idempotent.
        prop_assert_eq!(to_canonical_bytes(&reparsed).unwrap(), canon);
    }

    #[test]
    fn any_whitespace_and_key_order_give_the_same_canonical_bytes(value in json_value()) {
        let pretty = serde_json::to_string_pretty(&value).unwrap();
        let compact = serde_json::to_string(&value).unwrap();
        prop_assert_eq!(
            to_canonical_bytes(&parse_strict(&pretty).unwrap()).unwrap(),
            to_canonical_bytes(&parse_strict(&compact).unwrap()).unwrap()
        );
    }

    #[test]
    fn signed_beam_verifies_and_survives_the_wire(
        seed in any::<[u8; 32]>(),
        title in ".{0,40}",
        body in any::<String>(),
        created_at in 0..=MAX_SAFE_INTEGER,
    ) {
        let author = Keypair::from_seed(&seed);
        let (beam, beam_ref) = post(&author, &title, &body, created_at);
        beam.verify().unwrap();
        beam_ref.verify().unwrap();
        // One signature, carried by both, each verifiable alone (spec §4.5).
        prop_assert_eq!(beam.sig, beam_ref.sig);
        prop_assert_eq!(beam_ref.beam, beam.content_id().unwrap());
        prop_assert_eq!(beam.posted_with, beam_ref.content_id().unwrap());
        let text = serde_json::to_string(&beam).unwrap();
        let back: Beam = northstar_protocol::canonical::from_str_strict(&text).unwrap();
        back.verify().unwrap();
        prop_assert_eq!(back.content_id().unwrap(), beam.content_id().unwrap());
    }

    #[test]
    fn a_post_signature_binds_the_beam_and_the_ref_to_each_other(
        seed in any::<[u8; 32]>(),
        body in any::<String>(),
        other in any::<[u8; 32]>(),
    ) {
        let author = Keypair::from_seed(&seed);
        let (beam, beam_ref) = post(&author, "t", &body, 1);
        // A beam that names another ref, or a ref that names another beam, no longer verifies.
        let mut moved = beam.clone();
        moved.posted_with = ContentId::from_bytes(other);
        prop_assume!(moved.posted_with != beam.posted_with);
        prop_assert!(moved.verify().is_err());
        let mut swapped = beam_ref.clone();
        swapped.beam = ContentId::from_bytes(other);
        prop_assert!(swapped.verify().is_err());
        // The ref's placement is covered: another space, home, time or nonce breaks it.
        let mut elsewhere = beam_ref.clone();
        elsewhere.home = "other.example".into();
        prop_assert!(elsewhere.verify().is_err());
        let mut other_space = beam_ref.clone();
        other_space.space = SpaceId::new(SpaceType::Channel, author.did(), "other").unwrap();
        prop_assert!(other_space.verify().is_err());
        let mut later = beam_ref.clone();
        later.created_at += 1;
        prop_assert!(later.verify().is_err());
        let mut renonced = beam_ref.clone();
        renonced.nonce.push('x');
        prop_assert!(renonced.verify().is_err());
    }

    #[test]
    fn flipping_any_signature_bit_fails_verification(
        seed in any::<[u8; 32]>(),
        body in any::<String>(),
        bit in 0usize..512,
    ) {
        let author = Keypair::from_seed(&seed);
        let (mut beam, _) = post(&author, "t", &body, 1);
        let mut bytes = beam.sig.to_bytes();
        bytes[bit / 8] ^= 1 << (bit % 8);
        beam.sig = Signature::from_bytes(bytes);
        prop_assert!(beam.verify().is_err());
    }

    #[test]
    fn changing_the_signed_content_fails_verification(
        seed in any::<[u8; 32]>(),
        body in any::<String>(),
        extra in any::<char>(),
    ) {
        let author = Keypair::from_seed(&seed);
        let (beam, _) = post(&author, "t", &body, 1);
        let mut edited = beam.clone();
        edited.body.push(extra);
        prop_assert!(edited.verify().is_err());
        let mut later = beam.clone();
        later.created_at += 1;
        prop_assert!(later.verify().is_err());
        // Someone else's key never verifies it.
        let other = Keypair::from_seed(&[seed[0] ^ 0xff; 32]);
        prop_assert!(sign::verify(&beam, other.did()).is_err());
    }

    #[test]
    fn content_id_and_signature_texts_round_trip(
        digest in any::<[u8; 32]>(),
        sig in prop::collection::vec(any::<u8>(), 64),
    ) {
        let id = ContentId::from_bytes(digest);
        prop_assert_eq!(ContentId::parse(&id.to_string()).unwrap(), id);
        let sig = Signature::from_bytes(sig.try_into().unwrap());
        prop_assert_eq!(Signature::parse(&sig.to_string()).unwrap(), sig);
    }

    #[test]
    fn space_ids_round_trip(seed in any::<[u8; 32]>(), unique in "[A-Za-z0-9._~-]{1,64}", kind in 0u8..3) {
        let owner = Keypair::from_seed(&seed);
        let kind = [SpaceType::Channel, SpaceType::Dm, SpaceType::Stream][usize::from(kind)];
        let id = SpaceId::new(kind, owner.did(), &unique).unwrap();
        let back = SpaceId::parse(id.as_str()).unwrap();
        prop_assert_eq!(back.unique_id(), unique.as_str());
        prop_assert_eq!(back.owner(), owner.did());
        prop_assert_eq!(back, id);
    }
}
