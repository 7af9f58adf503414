//! Content ids: BLAKE3 hashes of canonical bytes.
//!
//! On the wire a content id is multibase base32 (RFC 4648 lower-case alphabet, no padding,
//! prefix `b`) of the 32-byte digest: 53 characters, safe in URLs and file names, and cheap to
//! encode on hot paths (unlike base58, which is quadratic).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A BLAKE3 content id.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContentId([u8; 32]);

/// Why a text is not a content id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContentIdError {
    /// Not `b` followed by lower-case base32.
    #[error("content id must be multibase base32 ('b' prefix, lower case, no padding)")]
    Encoding,
    /// Not 32 bytes.
    #[error("content id must be 32 bytes, found {0}")]
    Length(usize),
}

impl ContentId {
    /// The id of some canonical bytes.
    pub fn of(canonical: &[u8]) -> Self {
        Self(*blake3::hash(canonical).as_bytes())
    }

    /// From a raw digest.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The raw digest.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Parse the wire form.
    pub fn parse(text: &str) -> Result<Self, ContentIdError> {
        let b32 = text.strip_prefix('b').ok_or(ContentIdError::Encoding)?;
        let raw = multibase::Base::Base32Lower
            .decode(b32)
            .map_err(|_| ContentIdError::Encoding)?;
        let bytes: [u8; 32] = raw
            .try_into()
            .map_err(|raw: Vec<u8>| ContentIdError::Length(raw.len()))?;
        let id = Self(bytes);
        // Base32 leaves spare bits in the last character: accept only the canonical text.
        if id.to_string() != text {
            return Err(ContentIdError::Encoding);
        }
        Ok(id)
    }
}

impl fmt::Display for ContentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&multibase::encode(multibase::Base::Base32Lower, self.0))
    }
}

impl fmt::Debug for ContentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ContentId({self})")
    }
}

impl FromStr for ContentId {
    type Err = ContentIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for ContentId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ContentId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_round_trips_and_refuses_other_forms() {
        let id = ContentId::of(b"");
        let text = id.to_string();
        assert_eq!(text.len(), 53);
        assert_eq!(ContentId::parse(&text), Ok(id));
        assert_eq!(
            ContentId::parse(&text.to_uppercase()),
            Err(ContentIdError::Encoding)
        );
        assert_eq!(
            ContentId::parse(&format!("z{}", &text[1..])),
            Err(ContentIdError::Encoding)
        );
        assert_eq!(ContentId::parse("baaaa"), Err(ContentIdError::Length(2)));
    }
}
