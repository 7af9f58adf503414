//! Stream frames: the live, owner-signed binary payloads of a `stream` space
//! (`spec/protocol.md` §4.9).
//!
//! A frame is not a JSON object and never enters a space's log: it travels as one binary
//! WebSocket message, the same bytes from the publishing client through every relaying node to
//! every watcher, so each node checks it once and forwards it as it came. Its layout (all
//! integers big-endian, no padding):
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 1 | version, [`FRAME_VERSION`] |
//! | 1 | 1 | flags: bit 0 is the key flag ([`FLAG_KEY`]); the other bits are 0 |
//! | 2 | 8 | frame number |
//! | 10 | 8 | the owner's timestamp, ms since the Unix epoch |
//! | 18 | 2 | `L`, the length of the space id |
//! | 20 | 4 | `P`, the length of the payload |
//! | 24 | `L` | the space id, UTF-8 |
//! | 24 + `L` | `P` | the payload |
//! | 24 + `L` + `P` | 64 | the Ed25519 signature of the space's owner |
//!
//! The signature covers the domain tag of [`Domain::StreamFrame`], a zero byte, and every byte
//! before the signature. Numbers and timestamps are at most 2^53 − 1, like every integer of the
//! protocol.

use crate::address::{SpaceId, SpaceType};
use crate::sign::{Domain, Signature, signing_message};
use crate::{Keypair, MAX_SAFE_INTEGER};

/// The layout version this module reads and writes.
pub const FRAME_VERSION: u8 = 1;

/// The flags bit that marks a key frame: a point where a watcher can start.
pub const FLAG_KEY: u8 = 0x01;

/// The bytes before the space id.
pub const HEADER_LEN: usize = 24;

/// The signature's length.
pub const SIGNATURE_LEN: usize = 64;

/// The largest payload the encoding allows; nodes set their own, smaller limit.
pub const MAX_PAYLOAD: usize = 16 * 1024 * 1024;

/// The longest space id a frame may carry (a stream's id is far shorter).
pub const MAX_SPACE_LEN: usize = 1024;

/// Why bytes are not a valid frame, or a frame cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Fewer bytes than the lengths in the header need.
    #[error("a frame of {len} bytes is cut short")]
    Truncated {
        /// The bytes received.
        len: usize,
    },
    /// More bytes than the lengths in the header account for.
    #[error("{extra} bytes after the frame's signature")]
    Trailing {
        /// How many.
        extra: usize,
    },
    /// A layout version this implementation does not know.
    #[error("frame version {0} is unknown (this implementation reads version 1)")]
    Version(u8),
    /// A flags bit that is not defined.
    #[error("frame flags {0:#04x} set an undefined bit")]
    Flags(u8),
    /// A number or timestamp above 2^53 − 1.
    #[error("frame {field} {value} is above 2^53 - 1")]
    UnsafeInteger {
        /// `number` or `timestamp`.
        field: &'static str,
        /// The value.
        value: u64,
    },
    /// A payload longer than [`MAX_PAYLOAD`].
    #[error("a frame payload of {len} bytes is over the encoding's limit of {MAX_PAYLOAD}")]
    TooLarge {
        /// Its length.
        len: usize,
    },
    /// The space id is empty, too long, not UTF-8 or not a space id.
    #[error("the frame's space id is not valid: {0}")]
    Space(String),
    /// The space is not a `stream`.
    #[error("{0} is not a stream: only stream spaces carry frames")]
    NotAStream(String),
    /// The key offered is not the stream owner's.
    #[error("only the stream's owner {owner} signs its frames, not {signer}")]
    NotOwner {
        /// The owner.
        owner: String,
        /// The key offered.
        signer: String,
    },
    /// The signature does not verify under the owner's key (strict RFC 8032).
    #[error("the frame's signature does not verify under the stream owner's key")]
    BadSignature,
}

impl FrameError {
    /// The error's stable name, used in `spec/` and its test vectors.
    pub fn code(&self) -> &'static str {
        match self {
            FrameError::Truncated { .. } => "truncated",
            FrameError::Trailing { .. } => "trailing_bytes",
            FrameError::Version(_) => "frame_version",
            FrameError::Flags(_) => "frame_flags",
            FrameError::UnsafeInteger { .. } => "unsafe_integer",
            FrameError::TooLarge { .. } => "too_large",
            FrameError::Space(_) => "bad_space",
            FrameError::NotAStream(_) => "not_a_stream",
            FrameError::NotOwner { .. } => "not_owner",
            FrameError::BadSignature => "invalid_signature",
        }
    }
}

/// One frame, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The stream.
    pub space: SpaceId,
    /// Its place in the stream: one more than the frame before.
    pub number: u64,
    /// The owner's clock when it was made, ms.
    pub timestamp: u64,
    /// Whether a watcher can start here.
    pub key: bool,
    /// The opaque payload.
    pub payload: Vec<u8>,
    /// The owner's signature.
    pub sig: Signature,
}

impl Frame {
    /// A frame of `space` signed by `owner`, who must be the stream's owner.
    pub fn sign(
        owner: &Keypair,
        space: SpaceId,
        number: u64,
        timestamp: u64,
        key: bool,
        payload: Vec<u8>,
    ) -> Result<Self, FrameError> {
        check_space(&space)?;
        if owner.did() != space.owner() {
            return Err(FrameError::NotOwner {
                owner: space.owner().to_string(),
                signer: owner.did().to_string(),
            });
        }
        let mut frame = Self {
            space,
            number,
            timestamp,
            key,
            payload,
            sig: Signature::UNSIGNED,
        };
        let signed = frame.signed_bytes()?;
        frame.sig = owner.sign_raw(&signing_message(Domain::StreamFrame, &signed));
        Ok(frame)
    }

    /// The frame's bytes on the wire.
    pub fn encode(&self) -> Result<Vec<u8>, FrameError> {
        let mut bytes = self.signed_bytes()?;
        bytes.extend_from_slice(&self.sig.to_bytes());
        Ok(bytes)
    }

    /// Read a frame from its bytes, strictly: every length must match, no byte may be left
    /// over, undefined flags are refused. The signature is not checked here: see
    /// [`Frame::verify`].
    pub fn decode(bytes: &[u8]) -> Result<Self, FrameError> {
        let header = Header::read(bytes)?;
        let payload_end = header.payload.end;
        Ok(Self {
            payload: bytes[header.payload.clone()].to_vec(),
            sig: Signature::from_bytes(fixed(&bytes[payload_end..])),
            space: header.space,
            number: header.number,
            timestamp: header.timestamp,
            key: header.key,
        })
    }

    /// Check the owner's signature (strict RFC 8032) under the stream's owner, whom the space
    /// id names: no other lookup is needed.
    pub fn verify(&self) -> Result<(), FrameError> {
        let signed = self.signed_bytes()?;
        let message = signing_message(Domain::StreamFrame, &signed);
        if self.sig.verify_raw(self.space.owner(), &message) {
            Ok(())
        } else {
            Err(FrameError::BadSignature)
        }
    }

    /// Everything the signature covers: the bytes on the wire before it.
    fn signed_bytes(&self) -> Result<Vec<u8>, FrameError> {
        self.check()?;
        let space = self.space.as_str().as_bytes();
        let mut bytes = Vec::with_capacity(HEADER_LEN + space.len() + self.payload.len() + 64);
        bytes.push(FRAME_VERSION);
        bytes.push(if self.key { FLAG_KEY } else { 0 });
        bytes.extend_from_slice(&self.number.to_be_bytes());
        bytes.extend_from_slice(&self.timestamp.to_be_bytes());
        // Both fit: `check` bounded them.
        bytes.extend_from_slice(&(space.len() as u16).to_be_bytes());
        bytes.extend_from_slice(&(self.payload.len() as u32).to_be_bytes());
        bytes.extend_from_slice(space);
        bytes.extend_from_slice(&self.payload);
        Ok(bytes)
    }

    /// The rules a frame's fields follow, whichever way it was made.
    fn check(&self) -> Result<(), FrameError> {
        check_space(&self.space)?;
        for (field, value) in [("number", self.number), ("timestamp", self.timestamp)] {
            if value > MAX_SAFE_INTEGER {
                return Err(FrameError::UnsafeInteger { field, value });
            }
        }
        if self.payload.len() > MAX_PAYLOAD {
            return Err(FrameError::TooLarge {
                len: self.payload.len(),
            });
        }
        Ok(())
    }
}

/// A frame's fields, read from its bytes without copying the payload: what a relay needs to
/// place and check a frame it forwards as it came.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The stream.
    pub space: SpaceId,
    /// The frame number.
    pub number: u64,
    /// The owner's clock, ms.
    pub timestamp: u64,
    /// Whether a watcher can start here.
    pub key: bool,
    /// Where the payload lies in the bytes; the signature follows it.
    pub payload: std::ops::Range<usize>,
}

impl Header {
    /// Read and check everything but the signature, as strictly as [`Frame::decode`].
    pub fn read(bytes: &[u8]) -> Result<Self, FrameError> {
        let truncated = || FrameError::Truncated { len: bytes.len() };
        let header = bytes.get(..HEADER_LEN).ok_or_else(truncated)?;
        if header[0] != FRAME_VERSION {
            return Err(FrameError::Version(header[0]));
        }
        let flags = header[1];
        if flags & !FLAG_KEY != 0 {
            return Err(FrameError::Flags(flags));
        }
        let number = u64::from_be_bytes(fixed(&header[2..10]));
        let timestamp = u64::from_be_bytes(fixed(&header[10..18]));
        let space_len = usize::from(u16::from_be_bytes(fixed(&header[18..20])));
        let payload_len = u32::from_be_bytes(fixed(&header[20..24]));
        let payload_len =
            usize::try_from(payload_len).map_err(|_| FrameError::TooLarge { len: usize::MAX })?;
        if payload_len > MAX_PAYLOAD {
            return Err(FrameError::TooLarge { len: payload_len });
        }
        let space_end = HEADER_LEN + space_len;
        let payload_end = space_end + payload_len;
        let end = payload_end + SIGNATURE_LEN;
        if bytes.len() < end {
            return Err(truncated());
        }
        if bytes.len() > end {
            return Err(FrameError::Trailing {
                extra: bytes.len() - end,
            });
        }
        let space = std::str::from_utf8(&bytes[HEADER_LEN..space_end])
            .map_err(|e| FrameError::Space(e.to_string()))?;
        let space = SpaceId::parse(space).map_err(|e| FrameError::Space(e.to_string()))?;
        check_space(&space)?;
        for (field, value) in [("number", number), ("timestamp", timestamp)] {
            if value > MAX_SAFE_INTEGER {
                return Err(FrameError::UnsafeInteger { field, value });
            }
        }
        Ok(Self {
            space,
            number,
            timestamp,
            key: flags & FLAG_KEY != 0,
            payload: space_end..payload_end,
        })
    }

    /// Check the owner's signature over `bytes`, the frame this header was read from, without
    /// decoding it again.
    pub fn verify(&self, bytes: &[u8]) -> Result<(), FrameError> {
        let end = self.payload.end;
        let (signed, sig) = match (bytes.get(..end), bytes.get(end..)) {
            (Some(signed), Some(sig)) if sig.len() == SIGNATURE_LEN => (signed, sig),
            _ => return Err(FrameError::Truncated { len: bytes.len() }),
        };
        let sig = Signature::from_bytes(fixed(sig));
        if sig.verify_raw(
            self.space.owner(),
            &signing_message(Domain::StreamFrame, signed),
        ) {
            Ok(())
        } else {
            Err(FrameError::BadSignature)
        }
    }
}

fn check_space(space: &SpaceId) -> Result<(), FrameError> {
    if space.space_type() != SpaceType::Stream {
        return Err(FrameError::NotAStream(space.to_string()));
    }
    let len = space.as_str().len();
    if len == 0 || len > MAX_SPACE_LEN {
        return Err(FrameError::Space(format!("{len} bytes long")));
    }
    Ok(())
}

/// The `N` bytes of a slice whose length the caller has checked.
fn fixed<const N: usize>(bytes: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&bytes[..N]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner() -> Keypair {
        Keypair::from_seed(&[1; 32])
    }

    fn stream() -> SpaceId {
        SpaceId::new(SpaceType::Stream, owner().did(), "live").unwrap()
    }

    fn frame() -> Frame {
        Frame::sign(
            &owner(),
            stream(),
            7,
            1_767_225_600_000,
            true,
            b"abc".to_vec(),
        )
        .unwrap()
    }

    #[test]
    fn round_trips_and_verifies() {
        let frame = frame();
        let bytes = frame.encode().unwrap();
        assert_eq!(bytes[0], FRAME_VERSION);
        assert_eq!(bytes[1], FLAG_KEY);
        assert_eq!(
            bytes.len(),
            HEADER_LEN + stream().as_str().len() + 3 + SIGNATURE_LEN
        );
        let back = Frame::decode(&bytes).unwrap();
        assert_eq!(back, frame);
        back.verify().unwrap();
        let header = Header::read(&bytes).unwrap();
        assert_eq!((header.number, header.key), (7, true));
        assert_eq!(&bytes[header.payload.clone()], b"abc");
        header.verify(&bytes).unwrap();
    }

    #[test]
    fn any_flipped_bit_fails_decoding_or_the_signature() {
        let bytes = frame().encode().unwrap();
        for i in 0..bytes.len() {
            for bit in 0..8 {
                let mut bad = bytes.clone();
                bad[i] ^= 1 << bit;
                let verdict = Frame::decode(&bad).and_then(|f| f.verify());
                assert!(verdict.is_err(), "byte {i} bit {bit} went unnoticed");
                let relayed = Header::read(&bad).and_then(|h| h.verify(&bad));
                assert!(
                    relayed.is_err(),
                    "byte {i} bit {bit} passed the relay's check"
                );
            }
        }
    }

    #[test]
    fn refuses_wrong_lengths_versions_flags_and_trailing_bytes() {
        let bytes = frame().encode().unwrap();
        assert!(matches!(
            Frame::decode(&bytes[..bytes.len() - 1]),
            Err(FrameError::Truncated { .. })
        ));
        assert!(matches!(
            Frame::decode(&bytes[..10]),
            Err(FrameError::Truncated { .. })
        ));
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(
            Frame::decode(&longer),
            Err(FrameError::Trailing { extra: 1 })
        );
        let mut version = bytes.clone();
        version[0] = 2;
        assert_eq!(Frame::decode(&version), Err(FrameError::Version(2)));
        let mut flags = bytes.clone();
        flags[1] = 0x03;
        assert_eq!(Frame::decode(&flags), Err(FrameError::Flags(0x03)));
        let mut huge = bytes;
        huge[20..24].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(
            Frame::decode(&huge),
            Err(FrameError::TooLarge { .. })
        ));
    }

    #[test]
    fn only_the_owner_signs_and_only_streams_carry_frames() {
        let other = Keypair::from_seed(&[2; 32]);
        let err = Frame::sign(&other, stream(), 1, 1, false, Vec::new()).unwrap_err();
        assert!(matches!(err, FrameError::NotOwner { .. }), "{err}");
        let channel = SpaceId::new(SpaceType::Channel, owner().did(), "live").unwrap();
        let err = Frame::sign(&owner(), channel, 1, 1, false, Vec::new()).unwrap_err();
        assert!(matches!(err, FrameError::NotAStream(_)), "{err}");
        // A frame signed by someone else under the owner's stream id does not verify.
        let mut forged = frame();
        forged.sig = other.sign_raw(&signing_message(
            Domain::StreamFrame,
            &forged.signed_bytes().unwrap(),
        ));
        assert_eq!(forged.verify(), Err(FrameError::BadSignature));
        let err = Frame::sign(
            &owner(),
            stream(),
            MAX_SAFE_INTEGER + 1,
            1,
            false,
            Vec::new(),
        )
        .unwrap_err();
        assert!(matches!(err, FrameError::UnsafeInteger { .. }), "{err}");
    }
}
