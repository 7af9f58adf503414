//! `did:key` identities for Ed25519 keys.
//!
//! A DID is `did:key:` followed by the multibase base58btc (`z`) encoding of the multicodec
//! prefix `0xed 0x01` and the 32-byte public key. Every user and every node is one. A parsed
//! [`Did`] always holds a valid, not small-order curve point, so code that holds a `Did` never
//! has to ask again whether its key is usable.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The text every Ed25519 `did:key` starts with.
pub const DID_KEY_PREFIX: &str = "did:key:";

/// The multicodec code of an Ed25519 public key (0xed), as its unsigned-varint bytes.
pub const ED25519_MULTICODEC: [u8; 2] = [0xed, 0x01];

/// The longest text accepted as a DID: a valid Ed25519 did:key is 56 characters, so anything far
/// longer is refused before base58 decoding spends time on it.
const MAX_DID_LEN: usize = 128;

/// The ways a text can fail to be an Ed25519 `did:key`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DidError {
    /// The text does not start with `did:key:`.
    #[error("not a did:key: it must start with \"did:key:\"")]
    NotDidKey,
    /// The method-specific part is not multibase base58btc (it must start with `z`).
    #[error("not multibase base58btc: the part after \"did:key:\" must start with 'z'")]
    NotBase58Btc,
    /// The text is far longer than any did:key.
    #[error("too long for a did:key ({len} characters)")]
    TooLong {
        /// The length of the text.
        len: usize,
    },
    /// The base58btc part holds a character outside the base58 alphabet.
    #[error("invalid base58btc: {reason}")]
    BadBase58 {
        /// What the decoder found wrong.
        reason: String,
    },
    /// The decoded bytes do not start with the Ed25519 multicodec `0xed 0x01`.
    #[error("wrong multicodec: expected ed25519-pub (0xed 0x01), found 0x{found}")]
    WrongMulticodec {
        /// The first bytes found, hex.
        found: String,
    },
    /// The key after the multicodec prefix is not 32 bytes.
    #[error("wrong key length: expected 32 bytes after the multicodec, found {len}")]
    WrongLength {
        /// The number of key bytes found.
        len: usize,
    },
    /// The 32 bytes do not decode to a point on the Ed25519 curve.
    #[error("not a valid Ed25519 public key: the bytes are not a curve point")]
    InvalidPoint,
    /// The key is a small-order point, for which signatures prove nothing.
    #[error("weak Ed25519 public key: small-order point")]
    WeakKey,
}

impl DidError {
    /// The error's stable name, used in `spec/` and its test vectors.
    pub fn code(&self) -> &'static str {
        match self {
            DidError::NotDidKey => "not_did_key",
            DidError::NotBase58Btc => "not_base58btc",
            DidError::TooLong { .. } => "too_long",
            DidError::BadBase58 { .. } => "bad_base58",
            DidError::WrongMulticodec { .. } => "wrong_multicodec",
            DidError::WrongLength { .. } => "wrong_length",
            DidError::InvalidPoint => "invalid_point",
            DidError::WeakKey => "weak_key",
        }
    }
}

/// An Ed25519 `did:key` identity.
///
/// Holds the text form, the key's bytes and the key decoded for checking signatures, so
/// printing and verifying are both free, and shares them, so cloning is cheap and a `Did` is one
/// pointer wide.
#[derive(Clone)]
pub struct Did(Arc<Inner>);

struct Inner {
    text: Box<str>,
    public: [u8; 32],
    /// The key decoded once, for the signature checks of `spec/` §3.4.
    checker: ed25519_zebra::VerificationKey,
}

impl Did {
    /// The DID of a public key, refusing small-order keys.
    pub fn from_public_key(bytes: &[u8; 32]) -> Result<Self, DidError> {
        let key = VerifyingKey::from_bytes(bytes).map_err(|_| DidError::InvalidPoint)?;
        // The decoder reduces y modulo p, so y >= p would name the same point as y - p: two
        // DIDs for one key. Only the canonical encoding is a valid key.
        if key.to_edwards().compress().as_bytes() != bytes {
            return Err(DidError::InvalidPoint);
        }
        if key.is_weak() {
            return Err(DidError::WeakKey);
        }
        let checker =
            ed25519_zebra::VerificationKey::try_from(*bytes).map_err(|_| DidError::InvalidPoint)?;
        Ok(Self::from_checked(*bytes, checker))
    }

    /// The DID of a key whose bytes were checked, with the key decoded for signature checks.
    pub(crate) fn from_checked(public: [u8; 32], checker: ed25519_zebra::VerificationKey) -> Self {
        let mut raw = Vec::with_capacity(34);
        raw.extend_from_slice(&ED25519_MULTICODEC);
        raw.extend_from_slice(&public);
        let text = format!(
            "{DID_KEY_PREFIX}{}",
            multibase::encode(multibase::Base::Base58Btc, raw)
        );
        Self(Arc::new(Inner {
            text: text.into_boxed_str(),
            public,
            checker,
        }))
    }

    /// Parse and check a `did:key` text. Each way it can be wrong has its own [`DidError`].
    ///
    /// Checking a key costs two field inversions (decompress, and compress again to refuse
    /// non-canonical encodings), about as much as a signature verification, and a node parses
    /// the same few DIDs in every request (author, space owner, member). So the DIDs parsed
    /// lately are remembered: a text seen before returns the same key without the work. Only
    /// valid DIDs are remembered, so errors are always computed afresh.
    pub fn parse(text: &str) -> Result<Self, DidError> {
        if let Some(did) = recent::get(text) {
            return Ok(did);
        }
        let did = Self::parse_uncached(text)?;
        recent::put(&did);
        Ok(did)
    }

    fn parse_uncached(text: &str) -> Result<Self, DidError> {
        if text.len() > MAX_DID_LEN {
            return Err(DidError::TooLong { len: text.len() });
        }
        let msid = text
            .strip_prefix(DID_KEY_PREFIX)
            .ok_or(DidError::NotDidKey)?;
        let b58 = msid.strip_prefix('z').ok_or(DidError::NotBase58Btc)?;
        let raw = multibase::Base::Base58Btc
            .decode(b58)
            .map_err(|e| DidError::BadBase58 {
                reason: e.to_string(),
            })?;
        if raw.len() < 2 || raw[..2] != ED25519_MULTICODEC {
            let found = hex::encode(&raw[..raw.len().min(2)]);
            return Err(DidError::WrongMulticodec { found });
        }
        let key: [u8; 32] = raw[2..]
            .try_into()
            .map_err(|_| DidError::WrongLength { len: raw.len() - 2 })?;
        let did = Self::from_public_key(&key)?;
        // base58 has one encoding per byte string, so re-encoding gives back the input; a
        // mismatch would mean the decoder accepted a non-canonical form.
        if &*did.0.text != text {
            return Err(DidError::BadBase58 {
                reason: "not the canonical encoding".into(),
            });
        }
        Ok(did)
    }

    /// The DID text, `did:key:z6Mk…`.
    pub fn as_str(&self) -> &str {
        &self.0.text
    }

    /// The method-specific id, `z6Mk…`: the DID without `did:key:`. Space ids use it to name
    /// their owner.
    pub fn key_id(&self) -> &str {
        &self.0.text[DID_KEY_PREFIX.len()..]
    }

    /// The 32-byte Ed25519 public key.
    pub fn public_key(&self) -> &[u8; 32] {
        &self.0.public
    }

    /// The key as the signature checks of `spec/` §3.4 use it.
    pub(crate) fn checker(&self) -> &ed25519_zebra::VerificationKey {
        &self.0.checker
    }
}

impl PartialEq for Did {
    fn eq(&self, other: &Self) -> bool {
        self.0.public == other.0.public
    }
}
impl Eq for Did {}

impl std::hash::Hash for Did {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.public.hash(state);
    }
}

impl PartialOrd for Did {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Did {
    /// Orders by the DID text, the order the spec uses wherever DIDs are sorted.
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.text.cmp(&other.0.text)
    }
}

impl fmt::Display for Did {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.text)
    }
}

impl fmt::Debug for Did {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Did({})", self.0.text)
    }
}

impl FromStr for Did {
    type Err = DidError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for Did {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0.text)
    }
}

impl<'de> Deserialize<'de> for Did {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// The DIDs parsed lately, by text; see [`Did::parse`].
mod recent {
    use std::collections::HashMap;
    use std::sync::{Mutex, PoisonError};

    use super::Did;

    /// How many DIDs are remembered; when full, the memory starts over. A node's active
    /// authors and owners fit; a flood of new DIDs costs what parsing them costs anyway.
    const CAPACITY: usize = 4096;

    static RECENT: Mutex<Option<HashMap<Box<str>, Did>>> = Mutex::new(None);

    pub(super) fn get(text: &str) -> Option<Did> {
        let recent = RECENT.lock().unwrap_or_else(PoisonError::into_inner);
        recent.as_ref()?.get(text).cloned()
    }

    pub(super) fn put(did: &Did) {
        let mut recent = RECENT.lock().unwrap_or_else(PoisonError::into_inner);
        let map = recent.get_or_insert_with(HashMap::new);
        if map.len() >= CAPACITY {
            map.clear();
        }
        map.insert(did.as_str().into(), did.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_did_parsed_again_is_remembered_and_an_invalid_one_never() {
        let text = crate::Keypair::from_seed(&[42; 32])
            .did()
            .as_str()
            .to_owned();
        let first = Did::parse(&text).unwrap();
        let again = Did::parse(&text).unwrap();
        assert!(
            Arc::ptr_eq(&first.0, &again.0),
            "the second parse is the first's key"
        );
        // One character off: still refused, however often the valid form was seen.
        let mut bad = text.clone();
        bad.push('x');
        assert!(Did::parse(&bad).is_err());
        assert!(Did::parse(&bad).is_err());
    }

    fn did_with_raw(raw: &[u8]) -> String {
        format!(
            "did:key:{}",
            multibase::encode(multibase::Base::Base58Btc, raw)
        )
    }

    #[test]
    fn rejects_each_malformed_form_with_its_own_error() {
        let base = Did::from_public_key(&[
            0xd7, 0x5a, 0x98, 0x01, 0x82, 0xb1, 0x0a, 0xb7, 0xd5, 0x4b, 0xfe, 0xd3, 0xc9, 0x64,
            0x07, 0x3a, 0x0e, 0xe1, 0x72, 0xf3, 0xda, 0xa6, 0x23, 0x25, 0xaf, 0x02, 0x1a, 0x68,
            0xf7, 0x07, 0x51, 0x1a,
        ])
        .unwrap();
        let msid = base.key_id().to_owned();
        assert_eq!(
            Did::parse(&format!("did:web:{msid}")),
            Err(DidError::NotDidKey)
        );
        assert_eq!(
            Did::parse(&format!("did:key:f{}", &msid[1..])),
            Err(DidError::NotBase58Btc)
        );
        assert!(matches!(
            Did::parse("did:key:z6Mk0OIl"),
            Err(DidError::BadBase58 { .. })
        ));
        let mut raw = vec![0xe7, 0x01];
        raw.extend_from_slice(base.public_key());
        assert!(matches!(
            Did::parse(&did_with_raw(&raw)),
            Err(DidError::WrongMulticodec { .. })
        ));
        let mut short = ED25519_MULTICODEC.to_vec();
        short.extend_from_slice(&base.public_key()[..31]);
        assert_eq!(
            Did::parse(&did_with_raw(&short)),
            Err(DidError::WrongLength { len: 31 })
        );
        // The identity point (y = 1) has order 1.
        let mut weak = ED25519_MULTICODEC.to_vec();
        let mut identity = [0u8; 32];
        identity[0] = 1;
        weak.extend_from_slice(&identity);
        assert_eq!(Did::parse(&did_with_raw(&weak)), Err(DidError::WeakKey));
        assert_eq!(
            Did::parse(&"did:key:z".repeat(20)),
            Err(DidError::TooLong { len: 180 })
        );
    }

    #[test]
    fn rejects_a_non_canonical_key_encoding() {
        // y = p + 3 (p = 2^255 - 19) decodes to the same point as y = 3.
        let mut y = [0xff_u8; 32];
        y[0] = 0xed + 3;
        y[31] = 0x7f;
        let mut raw = ED25519_MULTICODEC.to_vec();
        raw.extend_from_slice(&y);
        assert_eq!(Did::parse(&did_with_raw(&raw)), Err(DidError::InvalidPoint));
    }

    #[test]
    fn rejects_bytes_that_are_not_a_curve_point() {
        // y = 2 has no x on the curve.
        let mut raw = ED25519_MULTICODEC.to_vec();
        let mut y = [0u8; 32];
        y[0] = 2;
        raw.extend_from_slice(&y);
        assert_eq!(Did::parse(&did_with_raw(&raw)), Err(DidError::InvalidPoint));
    }
}
