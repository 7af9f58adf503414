//! Domain-separated signatures over canonical bytes.
//!
//! A signed object is a JSON object whose `sig` member holds an Ed25519 signature. The signed
//! message is the object kind's domain tag, one zero byte, and the canonical bytes
//! ([`crate::canonical`]) of the object without its `sig` member:
//!
//! ```text
//! message = tag || 0x00 || JCS(object minus "sig")
//! ```
//!
//! A beam and a beam ref are the exception: both carry one signature of their post statement,
//! `tag || 0x00 || JCS({"beam": beam id, "ref": ref id})` ([`post_message`], `spec/` §4.5).
//!
//! The tag makes a signature made for one kind of object worthless as any other kind. The zero
//! byte cannot occur in a tag or in canonical JSON, so the split is unambiguous.
//!
//! Verification (`spec/` §3.4) refuses every encoding that could let one signature take a
//! second form (`S` at or above the group order, a non-canonical or small-order `R`; keys are
//! checked when a DID is parsed), then checks the cofactored equation
//! `[8][S]B = [8]R + [8][h]A` as ZIP 215 defines it. Under that equation a single check and a
//! batch check ([`Batch`]) give the same answer for every input, so nodes that batch and nodes
//! that do not can never disagree about an event.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use crate::canonical::{self, CanonicalError};
use crate::did::Did;
use crate::id::ContentId;
use crate::keys::Keypair;

/// The name of the member that carries an object's signature.
pub const SIG_FIELD: &str = "sig";

/// The kinds of signed message, each with its own domain tag (a post's covers a beam and its
/// ref together).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Domain {
    /// A node's challenge to a connecting client or node.
    AuthChallenge,
    /// A client's (or node's) answer to a challenge.
    AuthResponse,
    /// The owner's founding statement of a space.
    SpaceGenesis,
    /// An author's request to act on a space (join, leave, invite, kick, …).
    Membership,
    /// An author's post: a beam and the ref that places it into a space, under one signature
    /// (`spec/` §4.5). A beam and a ref both carry a signature of this kind.
    Post,
    /// An author deleting a beam.
    Tombstone,
    /// A sequenced event, signed by the space's sequencer node.
    Event,
    /// A live frame of a stream, signed by the stream's owner (binary, not JSON: §4.9).
    StreamFrame,
    /// An author publishing a new version of one of its beams (`spec/` §4.10).
    Edit,
}

impl Domain {
    /// Every domain, in the order of the spec's table.
    pub const ALL: [Domain; 9] = [
        Domain::AuthChallenge,
        Domain::AuthResponse,
        Domain::SpaceGenesis,
        Domain::Membership,
        Domain::Post,
        Domain::Tombstone,
        Domain::Event,
        Domain::StreamFrame,
        Domain::Edit,
    ];

    /// The domain tag, ASCII.
    pub const fn tag(self) -> &'static str {
        match self {
            Domain::AuthChallenge => "northstar/v2/auth-challenge",
            Domain::AuthResponse => "northstar/v2/auth-response",
            Domain::SpaceGenesis => "northstar/v2/space-genesis",
            Domain::Membership => "northstar/v2/membership",
            Domain::Post => "northstar/v2/post",
            Domain::Tombstone => "northstar/v2/tombstone",
            Domain::Event => "northstar/v2/event",
            Domain::StreamFrame => "northstar/v2/stream-frame",
            Domain::Edit => "northstar/v2/edit",
        }
    }

    /// The domain whose tag this is.
    pub fn from_tag(tag: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|d| d.tag() == tag)
    }
}

/// The ways signing or verifying fails.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The object cannot be canonically encoded (a float, an unsafe integer, …).
    #[error("object cannot be canonically encoded")]
    Canonical(#[from] CanonicalError),
    /// The object did not serialize to a JSON object.
    #[error("a signed object must be a JSON object")]
    NotAnObject,
    /// The key that signs is not the one the object names as its signer.
    #[error("signer mismatch: the object names {expected}, the key is {actual}")]
    SignerMismatch {
        /// The DID the object names.
        expected: String,
        /// The DID of the key offered.
        actual: String,
    },
    /// The signature does not verify under the signer's key (`spec/` §3.4).
    #[error("bad {domain} signature by {signer}")]
    Invalid {
        /// The domain tag of the object.
        domain: &'static str,
        /// Who should have signed.
        signer: String,
    },
}

impl SignatureError {
    /// The error's stable name, used in `spec/` and its test vectors.
    pub fn code(&self) -> &'static str {
        match self {
            SignatureError::Canonical(e) => e.code(),
            SignatureError::NotAnObject => "not_an_object",
            SignatureError::SignerMismatch { .. } => "signer_mismatch",
            SignatureError::Invalid { .. } => "invalid_signature",
        }
    }
}

/// An Ed25519 signature. On the wire: multibase base64url without padding (`u` + 86 chars).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Signature([u8; 64]);

/// Why a signature text was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureTextError {
    /// Not `u` followed by base64url.
    #[error("signature must be multibase base64url ('u' prefix, no padding)")]
    Encoding,
    /// Not 64 bytes.
    #[error("signature must be 64 bytes, found {0}")]
    Length(usize),
}

impl Signature {
    /// The all-zero placeholder an object carries before it is signed. Never valid.
    pub const UNSIGNED: Signature = Signature([0; 64]);

    /// From raw bytes (`R || S`).
    pub const fn from_bytes(bytes: [u8; 64]) -> Self {
        Self(bytes)
    }

    /// The raw bytes (`R || S`).
    pub fn to_bytes(&self) -> [u8; 64] {
        self.0
    }

    /// Parse the wire form.
    pub fn parse(text: &str) -> Result<Self, SignatureTextError> {
        let b64 = text.strip_prefix('u').ok_or(SignatureTextError::Encoding)?;
        let raw = multibase::Base::Base64Url
            .decode(b64)
            .map_err(|_| SignatureTextError::Encoding)?;
        let bytes: [u8; 64] = raw
            .try_into()
            .map_err(|raw: Vec<u8>| SignatureTextError::Length(raw.len()))?;
        let sig = Self(bytes);
        // Base64 leaves spare bits in the last character; only the canonical text is accepted,
        // so each signature has exactly one wire form.
        if sig.to_string() != text {
            return Err(SignatureTextError::Encoding);
        }
        Ok(sig)
    }

    /// Check this signature over `message` under `signer`'s key by the rules of `spec/` §3.4.
    pub fn verify_raw(&self, signer: &Did, message: &[u8]) -> bool {
        self.well_formed()
            && signer
                .checker()
                .verify(&ed25519_zebra::Signature::from_bytes(&self.0), message)
                .is_ok()
    }

    /// The encoding checks of `spec/` §3.4 that come before the equation: `R` is the canonical
    /// encoding of a point that is not of small order. (`S < ℓ` is checked with the equation,
    /// and whether `R` decodes at all with it.)
    ///
    /// The only encodings with `y < p` that are not canonical put the sign bit on `x = 0`,
    /// that is on `y = 1` or `y = p − 1`: points of small order. So refusing `y ≥ p` and every
    /// `y` of a small-order point, whatever the sign bit, refuses exactly the encodings §3.4
    /// refuses.
    fn well_formed(&self) -> bool {
        let mut y = [0u8; 32];
        y.copy_from_slice(&self.0[..32]);
        y[31] &= 0x7f;
        below_p(&y) && !SMALL_ORDER_Y.contains(&y)
    }
}

/// The `y` coordinates of the eight points of small order (the torsion subgroup), little-endian:
/// 1 (the identity), p − 1 (order 2), 0 (the two points of order 4) and the two `y` of the four
/// points of order 8. Checked against the curve in the tests below.
const SMALL_ORDER_Y: [[u8; 32]; 5] = [
    hex32("0100000000000000000000000000000000000000000000000000000000000000"),
    hex32("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),
    hex32("0000000000000000000000000000000000000000000000000000000000000000"),
    hex32("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a"),
    hex32("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05"),
];

/// 32 bytes from 64 hex digits, at compile time.
const fn hex32(text: &str) -> [u8; 32] {
    const fn digit(c: u8) -> u8 {
        match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            _ => panic!("not a lower-case hex digit"),
        }
    }
    let text = text.as_bytes();
    assert!(text.len() == 64, "not 64 hex digits");
    let mut out = [0u8; 32];
    let mut i = 0;
    while i < 32 {
        out[i] = digit(text[2 * i]) << 4 | digit(text[2 * i + 1]);
        i += 1;
    }
    out
}

/// Whether a field element's 32 bytes (little-endian, top bit clear) are below p = 2^255 − 19:
/// only the 19 values from p to 2^255 − 1 are not, and they all end in `0x7f` after 30 bytes
/// of `0xff`.
fn below_p(y: &[u8; 32]) -> bool {
    !(y[31] == 0x7f && y[1..31].iter().all(|&b| b == 0xff) && y[0] >= 0xed)
}

impl fmt::Display for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&multibase::encode(multibase::Base::Base64Url, self.0))
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({self})")
    }
}

impl Serialize for Signature {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Signature {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// An object that carries its own signature in a `sig` member.
pub trait Signed: Serialize {
    /// The object's kind.
    const DOMAIN: Domain;

    /// The members left out of the object's content: its signature, and for a beam the id of
    /// the ref it was signed with (`spec/` §3.5).
    const NOT_CONTENT: &'static [&'static str] = &[SIG_FIELD];

    /// The signature it carries.
    fn signature(&self) -> &Signature;

    /// Where [`sign`] puts the signature.
    fn signature_mut(&mut self) -> &mut Signature;

    /// The canonical bytes of the object without the members of [`Signed::NOT_CONTENT`]: what
    /// its content id hashes and, for every kind but a post's beam and ref, what its signature
    /// covers after the domain tag.
    fn canonical_unsigned(&self) -> Result<Vec<u8>, SignatureError> {
        let mut value = serde_json::to_value(self).map_err(|e| CanonicalError::Unencodable {
            reason: e.to_string(),
        })?;
        let Value::Object(map) = &mut value else {
            return Err(SignatureError::NotAnObject);
        };
        for member in Self::NOT_CONTENT {
            map.remove(*member);
        }
        Ok(canonical::to_canonical_bytes(&value)?)
    }

    /// The content id: BLAKE3 of [`Signed::canonical_unsigned`].
    fn content_id(&self) -> Result<ContentId, SignatureError> {
        Ok(ContentId::of(&self.canonical_unsigned()?))
    }

    /// The message its signature covers, and its content id from the same canonical bytes.
    /// By default `tag || 0x00 || canonical`; a beam and a ref cover their post (§4.5).
    fn signed_message(&self) -> Result<(Vec<u8>, ContentId), SignatureError> {
        let canonical = self.canonical_unsigned()?;
        Ok((
            signing_message(Self::DOMAIN, &canonical),
            ContentId::of(&canonical),
        ))
    }
}

/// The message a signature covers: `tag || 0x00 || canonical`.
pub fn signing_message(domain: Domain, canonical: &[u8]) -> Vec<u8> {
    let tag = domain.tag().as_bytes();
    let mut message = Vec::with_capacity(tag.len() + 1 + canonical.len());
    message.extend_from_slice(tag);
    message.push(0);
    message.extend_from_slice(canonical);
    message
}

/// The message of a post's one signature (`spec/` §4.5): the post tag, a zero byte and the
/// canonical bytes of `{"beam": beam, "ref": beam_ref}`, the content ids of the beam and of
/// the ref that posts it. A beam and a ref signed together carry the same signature.
pub fn post_message(beam: &ContentId, beam_ref: &ContentId) -> Vec<u8> {
    // Both ids are base32 without quotes or escapes, and "beam" sorts before "ref", so this is
    // the canonical form (a test below checks it against the encoder). Written straight into
    // the message: it is built for every post a node receives.
    use std::io::Write as _;
    let tag = Domain::Post.tag().as_bytes();
    let mut message = Vec::with_capacity(tag.len() + 1 + 128);
    message.extend_from_slice(tag);
    message.push(0);
    // Writing into a Vec cannot fail.
    let _ = write!(message, r#"{{"beam":"{beam}","ref":"{beam_ref}"}}"#);
    message
}

/// Sign `object` with `key`, which must be `signer`, the identity the object names.
pub fn sign<T: Signed>(object: &mut T, key: &Keypair, signer: &Did) -> Result<(), SignatureError> {
    if key.did() != signer {
        return Err(SignatureError::SignerMismatch {
            expected: signer.to_string(),
            actual: key.did().to_string(),
        });
    }
    let (message, _) = object.signed_message()?;
    *object.signature_mut() = key.sign_raw(&message);
    Ok(())
}

/// Check `object`'s signature under `signer`, strictly.
pub fn verify<T: Signed>(object: &T, signer: &Did) -> Result<(), SignatureError> {
    verify_with_id(object, signer).map(drop)
}

/// [`verify`], returning the object's content id ([`Signed::content_id`]) from the same
/// canonical bytes, so a reader that needs both encodes the object once.
pub fn verify_with_id<T: Signed>(object: &T, signer: &Did) -> Result<ContentId, SignatureError> {
    let (message, id) = object.signed_message()?;
    if object.signature().verify_raw(signer, &message) {
        Ok(id)
    } else {
        Err(SignatureError::Invalid {
            domain: T::DOMAIN.tag(),
            signer: signer.to_string(),
        })
    }
}

/// Signatures checked together, which costs about half as much per signature as checking each
/// alone and gives the same answer (`spec/` §3.4): all of them verify, or not.
///
/// A batch says only whether every signature verifies; a caller that needs to know which one
/// failed checks them one by one after a failed batch, which is rare (a forger's page).
#[derive(Default)]
pub struct Batch {
    items: Vec<ed25519_zebra::batch::Item>,
    /// A queued signature failed the encoding checks, so the batch cannot verify.
    refused: bool,
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Queue `object`'s signature under `signer`, returning the object's content id from the
    /// same canonical bytes.
    pub fn queue<T: Signed>(
        &mut self,
        object: &T,
        signer: &Did,
    ) -> Result<ContentId, SignatureError> {
        let (message, id) = object.signed_message()?;
        self.queue_raw(object.signature(), signer, &message);
        Ok(id)
    }

    /// Queue a signature over `message` under `signer` (the message is hashed now, not kept).
    pub fn queue_raw(&mut self, signature: &Signature, signer: &Did, message: &[u8]) {
        if !signature.well_formed() {
            self.refused = true;
            return;
        }
        let key = ed25519_zebra::VerificationKeyBytes::from(*signer.public_key());
        let sig = ed25519_zebra::Signature::from_bytes(&signature.0);
        self.items.push((key, sig, message).into());
    }

    /// Whether every queued signature verifies (an empty batch does).
    pub fn verify(self) -> bool {
        if self.refused {
            return false;
        }
        match self.items.len() {
            0 => true,
            1 => self
                .items
                .into_iter()
                .all(|item| item.verify_single().is_ok()),
            _ => {
                let mut seed = [0u8; 32];
                if getrandom::fill(&mut seed).is_err() {
                    // Without fresh randomness a batch could be fooled; one by one cannot.
                    return self
                        .items
                        .into_iter()
                        .all(|item| item.verify_single().is_ok());
                }
                let mut verifier = ed25519_zebra::batch::Verifier::new();
                for item in self.items {
                    verifier.queue(item);
                }
                verifier.verify(Keystream::new(&seed)).is_ok()
            }
        }
    }
}

/// The random weights of a batch: BLAKE3's extendable output keyed with 32 bytes from the
/// operating system. The weights must be unpredictable to whoever chose the signatures.
struct Keystream(blake3::OutputReader);

impl Keystream {
    fn new(seed: &[u8; 32]) -> Self {
        Self(blake3::Hasher::new_keyed(seed).finalize_xof())
    }
}

impl rand_core::TryRng for Keystream {
    type Error = std::convert::Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        let mut bytes = [0u8; 4];
        self.0.fill(&mut bytes);
        Ok(u32::from_le_bytes(bytes))
    }

    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        let mut bytes = [0u8; 8];
        self.0.fill(&mut bytes);
        Ok(u64::from_le_bytes(bytes))
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        self.0.fill(dst);
        Ok(())
    }
}

impl rand_core::TryCryptoRng for Keystream {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_text_round_trips_and_refuses_other_forms() {
        let sig = Signature::from_bytes([7; 64]);
        let text = sig.to_string();
        assert!(text.starts_with('u'));
        assert_eq!(text.len(), 87);
        assert_eq!(Signature::parse(&text), Ok(sig));
        assert_eq!(
            Signature::parse(&format!("z{}", &text[1..])),
            Err(SignatureTextError::Encoding)
        );
        assert_eq!(
            Signature::parse(&format!("{text}==")),
            Err(SignatureTextError::Encoding)
        );
        assert_eq!(
            Signature::parse("uAAAA"),
            Err(SignatureTextError::Length(3))
        );
    }

    use curve25519_dalek::edwards::CompressedEdwardsY;

    #[test]
    fn the_small_order_table_holds_the_torsion_subgroup() {
        // The eight points: each y of the table with both signs, where the sign names a point
        // (x = 0 for y = ±1 has one point only).
        let mut points = std::collections::HashSet::new();
        for y in SMALL_ORDER_Y {
            for sign in [0x00, 0x80] {
                let mut bytes = y;
                bytes[31] |= sign;
                let point = CompressedEdwardsY(bytes).decompress().expect("a point");
                assert!(point.is_small_order(), "{}", hex::encode(bytes));
                points.insert(point.compress().to_bytes());
            }
        }
        assert_eq!(points.len(), 8, "the torsion subgroup has eight points");
    }

    /// `well_formed` refuses exactly the encodings that are not canonical or name a point of
    /// small order, by the curve library: on every encoding near the edges (y close to 0, 1,
    /// p − 1 and p, both signs), on the small-order points, and on a spread of others.
    #[test]
    fn well_formed_agrees_with_the_curve_library() {
        let mut rs = Vec::new();
        for low in 0u8..=40 {
            for (fill, top) in [(0x00, 0x00), (0xff, 0x7f)] {
                let mut y = [fill; 32];
                y[31] = top;
                y[0] = if fill == 0 { low } else { 0xff - low };
                rs.push(y);
                y[31] |= 0x80;
                rs.push(y);
            }
        }
        for y in SMALL_ORDER_Y {
            rs.push(y);
            let mut negative = y;
            negative[31] |= 0x80;
            rs.push(negative);
        }
        for i in 0u32..2000 {
            rs.push(*blake3::hash(&i.to_le_bytes()).as_bytes());
        }
        let mut decoded = 0;
        for r in rs {
            let mut sig = [0u8; 64];
            sig[..32].copy_from_slice(&r);
            let ours = Signature::from_bytes(sig).well_formed();
            // What does not decode is left to the equation, which refuses it.
            let Some(point) = CompressedEdwardsY(r).decompress() else {
                continue;
            };
            decoded += 1;
            let canonical = point.compress().to_bytes() == r;
            assert_eq!(
                ours,
                canonical && !point.is_small_order(),
                "{}",
                hex::encode(r)
            );
        }
        assert!(decoded > 1000, "the cases reach the curve: {decoded}");
    }

    #[test]
    fn the_post_message_is_the_canonical_form_of_its_statement() {
        let beam = ContentId::of(b"beam");
        let beam_ref = ContentId::of(b"ref");
        let statement = serde_json::json!({"ref": beam_ref.to_string(), "beam": beam.to_string()});
        let canonical = canonical::to_canonical_bytes(&statement).expect("two strings encode");
        assert_eq!(
            post_message(&beam, &beam_ref),
            signing_message(Domain::Post, &canonical)
        );
    }

    #[test]
    fn every_domain_tag_is_distinct_and_round_trips() {
        let tags: std::collections::HashSet<_> = Domain::ALL.iter().map(|d| d.tag()).collect();
        assert_eq!(tags.len(), Domain::ALL.len());
        for d in Domain::ALL {
            assert_eq!(Domain::from_tag(d.tag()), Some(d));
        }
    }
}
