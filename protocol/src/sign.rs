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
//! The tag makes a signature made for one kind of object worthless as any other kind. The zero
//! byte cannot occur in a tag or in canonical JSON, so the split is unambiguous. Verification is
//! strict (RFC 8032 §5.1.7 with canonical `S`, and no small-order `R` or key), so a signature
//! cannot be altered into another valid one.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use crate::canonical::{self, CanonicalError};
use crate::did::Did;
use crate::id::ContentId;
use crate::keys::Keypair;

/// The name of the member that carries an object's signature.
pub const SIG_FIELD: &str = "sig";

/// The kinds of signed object, each with its own domain tag.
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
    /// A post's content, signed by its author.
    Beam,
    /// An author placing a beam into a space.
    BeamRef,
    /// An author deleting a beam.
    Tombstone,
    /// A sequenced event, signed by the space's sequencer node.
    Event,
    /// A live frame of a stream, signed by the stream's owner (binary, not JSON: §4.9).
    StreamFrame,
}

impl Domain {
    /// Every domain, in the order of the spec's table.
    pub const ALL: [Domain; 9] = [
        Domain::AuthChallenge,
        Domain::AuthResponse,
        Domain::SpaceGenesis,
        Domain::Membership,
        Domain::Beam,
        Domain::BeamRef,
        Domain::Tombstone,
        Domain::Event,
        Domain::StreamFrame,
    ];

    /// The domain tag, ASCII.
    pub const fn tag(self) -> &'static str {
        match self {
            Domain::AuthChallenge => "northstar/v0/auth-challenge",
            Domain::AuthResponse => "northstar/v0/auth-response",
            Domain::SpaceGenesis => "northstar/v0/space-genesis",
            Domain::Membership => "northstar/v0/membership",
            Domain::Beam => "northstar/v0/beam",
            Domain::BeamRef => "northstar/v0/beam-ref",
            Domain::Tombstone => "northstar/v0/tombstone",
            Domain::Event => "northstar/v0/event",
            Domain::StreamFrame => "northstar/v0/stream-frame",
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
    /// The signature does not verify under the signer's key (strict RFC 8032).
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

    /// Check this signature over `message` under `signer`'s key, strictly.
    pub fn verify_raw(&self, signer: &Did, message: &[u8]) -> bool {
        let sig = ed25519_dalek::Signature::from_bytes(&self.0);
        signer.verifying_key().verify_strict(message, &sig).is_ok()
    }
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

    /// The signature it carries.
    fn signature(&self) -> &Signature;

    /// Where [`sign`] puts the signature.
    fn signature_mut(&mut self) -> &mut Signature;

    /// The canonical bytes of the object without its `sig` member: what its content id hashes
    /// and, after the domain tag, what its signature covers.
    fn canonical_unsigned(&self) -> Result<Vec<u8>, SignatureError> {
        let mut value = serde_json::to_value(self).map_err(|e| CanonicalError::Unencodable {
            reason: e.to_string(),
        })?;
        let Value::Object(map) = &mut value else {
            return Err(SignatureError::NotAnObject);
        };
        map.remove(SIG_FIELD);
        Ok(canonical::to_canonical_bytes(&value)?)
    }

    /// The content id: BLAKE3 of [`Signed::canonical_unsigned`].
    fn content_id(&self) -> Result<ContentId, SignatureError> {
        Ok(ContentId::of(&self.canonical_unsigned()?))
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

/// Sign `object` with `key`, which must be `signer`, the identity the object names.
pub fn sign<T: Signed>(object: &mut T, key: &Keypair, signer: &Did) -> Result<(), SignatureError> {
    if key.did() != signer {
        return Err(SignatureError::SignerMismatch {
            expected: signer.to_string(),
            actual: key.did().to_string(),
        });
    }
    let message = signing_message(T::DOMAIN, &object.canonical_unsigned()?);
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
    let canonical = object.canonical_unsigned()?;
    let message = signing_message(T::DOMAIN, &canonical);
    if object.signature().verify_raw(signer, &message) {
        Ok(ContentId::of(&canonical))
    } else {
        Err(SignatureError::Invalid {
            domain: T::DOMAIN.tag(),
            signer: signer.to_string(),
        })
    }
}

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

    #[test]
    fn every_domain_tag_is_distinct_and_round_trips() {
        let tags: std::collections::HashSet<_> = Domain::ALL.iter().map(|d| d.tag()).collect();
        assert_eq!(tags.len(), Domain::ALL.len());
        for d in Domain::ALL {
            assert_eq!(Domain::from_tag(d.tag()), Some(d));
        }
    }
}
