//! Blobs: files attached to beams, named by the BLAKE3 hash of their bytes and moved with
//! verified streaming (`spec/protocol.md` §13).
//!
//! A blob's id is a [`ContentId`]: BLAKE3 of its bytes, the same hash and multibase form as
//! every other content id. Its bytes travel in the *verified-stream encoding* of `bao-tree`:
//! the BLAKE3 tree of the blob cut into chunk groups of [`GROUP_BYTES`], sent in pre-order
//! with each parent's two child hashes before its children. A reader that knows the blob's id
//! checks every parent pair and every chunk group against the hash above it as it arrives,
//! so it never accepts a byte the id does not vouch for, and it can ask for a byte range (a
//! seek in a video) and check that range alone.
//!
//! A response body is the blob's size (8 bytes, little-endian) followed by the encoding of
//! [`response_ranges`]: the asked range widened to whole 1 KiB chunks, plus the blob's last
//! chunk, whose check proves the size.
//!
//! Beams name their blobs in [`Attachment`]s, under the author's signature.

use std::ops::Range;

use bao_tree::io::sync::DecodeResponseIter;
use bao_tree::io::{BaoContentItem, DecodeError};
use bao_tree::{BaoTree, BlockSize, ByteRanges, ChunkNum, ChunkRanges};
use serde::{Deserialize, Serialize};

use crate::id::ContentId;
use crate::wire::{MAX_NAME_LEN, RuleError};

/// log2 of the chunks (1 KiB each) in a chunk group: 16 KiB groups.
pub const CHUNK_GROUP_LOG: u8 = 4;

/// The tree's chunk groups.
pub const BLOCK_SIZE: BlockSize = BlockSize::from_chunk_log(CHUNK_GROUP_LOG);

/// The bytes of one chunk group: the unit a reader checks and a node reads from disk.
pub const GROUP_BYTES: u64 = 1024 << CHUNK_GROUP_LOG;

/// The bytes of one BLAKE3 chunk: the granularity of a range.
pub const CHUNK_BYTES: u64 = 1024;

/// The length of the size header that opens every response body.
pub const SIZE_HEADER_LEN: usize = 8;

/// The most attachments one beam carries.
pub const MAX_ATTACHMENTS: usize = 16;

/// The longest media type, in bytes (RFC 6838 §4.2: 127 for each of type and subtype; one
/// limit for the whole keeps the rule simple).
pub const MAX_MEDIA_TYPE_LEN: usize = 127;

/// The result of `blob.ticket` (§13.3.1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlobTicket {
    /// The bearer ticket, opaque to its holder.
    pub ticket: String,
    /// When it stops being accepted, ms since the Unix epoch.
    pub expires_at: u64,
}

/// The answer to an upload (§13.3.2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Uploaded {
    /// The blob's id.
    pub blob: ContentId,
    /// Its size in bytes.
    pub size: u64,
}

/// The body of a refused blob request (§13.7).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobRefusal {
    /// The error's name.
    pub error: String,
    /// What was wrong, for people.
    pub message: String,
}

/// The media type of a response body (§13.3.3).
pub const STREAM_MEDIA_TYPE: &str = "application/vnd.northstar.blob-stream";

/// A blob URI's parts (§13.1): `northstar://{authority}/beam/{authorHash}/{beamId}/{blobId}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobUri {
    /// The beam's home node.
    pub authority: String,
    /// The beam that attaches the blob, `beam/{authorHash}/{beamId}`.
    pub beam: String,
    /// The blob.
    pub blob: ContentId,
}

impl BlobUri {
    /// Parse a blob URI.
    pub fn parse(text: &str) -> Option<Self> {
        let (beam_uri, blob) = text.rsplit_once('/')?;
        let beam = crate::address::BeamUri::parse(beam_uri).ok()?;
        Some(Self {
            authority: beam.authority,
            beam: beam.path.to_string(),
            blob: ContentId::parse(blob).ok()?,
        })
    }
}

impl std::fmt::Display for BlobUri {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "northstar://{}/{}/{}",
            self.authority, self.beam, self.blob
        )
    }
}

/// A file a beam carries: the blob's id and size, and how to show it. Signed with the beam.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Attachment {
    /// The blob's id: BLAKE3 of its bytes.
    pub blob: ContentId,
    /// Its size in bytes.
    pub size: u64,
    /// Its media type, `type/subtype` (RFC 6838 restricted names, no parameters).
    pub media_type: String,
    /// A file name to save it as: 1 to 256 bytes, no `/`, `\` or control characters.
    pub name: String,
}

impl Attachment {
    /// Check the limits of one attachment (`spec/` §13.6).
    pub fn check_rules(&self) -> Result<(), RuleError> {
        crate::wire::check_len("attachment name", &self.name, MAX_NAME_LEN)?;
        if self.name.is_empty()
            || self.name == "."
            || self.name == ".."
            || self
                .name
                .chars()
                .any(|c| c == '/' || c == '\\' || c.is_control())
        {
            return Err(RuleError::BadAttachmentName);
        }
        if !is_media_type(&self.media_type) {
            return Err(RuleError::BadMediaType);
        }
        if self.size > crate::MAX_SAFE_INTEGER {
            return Err(RuleError::TooLarge { size: self.size });
        }
        Ok(())
    }
}

/// Deserialize a beam's `attachments`: present means at least one, since an empty list is
/// written by leaving the member out (a `[]` would give the same beam a second encoding).
pub fn non_empty<'de, D>(d: D) -> Result<Vec<Attachment>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    let list = Vec::<Attachment>::deserialize(d)?;
    if list.is_empty() {
        return Err(serde::de::Error::custom(
            "attachments must be left out, not empty",
        ));
    }
    Ok(list)
}

/// Check a beam's attachments: at most [`MAX_ATTACHMENTS`], each within its limits, no blob
/// named twice.
pub fn check_attachments(attachments: &[Attachment]) -> Result<(), RuleError> {
    if attachments.len() > MAX_ATTACHMENTS {
        return Err(RuleError::TooManyAttachments {
            count: attachments.len(),
            max: MAX_ATTACHMENTS,
        });
    }
    for (i, attachment) in attachments.iter().enumerate() {
        attachment.check_rules()?;
        if attachments[..i].iter().any(|a| a.blob == attachment.blob) {
            return Err(RuleError::DuplicateAttachment);
        }
    }
    Ok(())
}

/// Whether `text` is `type/subtype` with RFC 6838 restricted names: each starts with a letter
/// or digit and goes on with letters, digits and ``!#$&-^_.+``; no parameters.
pub fn is_media_type(text: &str) -> bool {
    fn name(part: &str) -> bool {
        let mut chars = part.chars();
        chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
            && chars.all(|c| c.is_ascii_alphanumeric() || "!#$&-^_.+".contains(c))
    }
    text.len() <= MAX_MEDIA_TYPE_LEN
        && text
            .split_once('/')
            .is_some_and(|(kind, sub)| name(kind) && name(sub))
}

/// The tree of a blob of `size` bytes.
pub fn tree(size: u64) -> BaoTree {
    BaoTree::new(size, BLOCK_SIZE)
}

/// The chunks a response for `range` (all of the blob when `None`) of a blob of `size` bytes
/// carries: the range widened to whole chunks, and the last chunk, whose check proves `size`.
/// An empty or out-of-bounds range carries the last chunk alone.
pub fn response_ranges(size: u64, range: Option<Range<u64>>) -> ChunkRanges {
    let asked = match range {
        None => return ChunkRanges::all(),
        Some(r) => r.start.min(size)..r.end.min(size),
    };
    let last = ChunkNum::chunks(size).0.saturating_sub(1);
    let mut ranges = bao_tree::io::round_up_to_chunks(&ByteRanges::from(asked));
    ranges |= ChunkRanges::from(ChunkNum(last)..ChunkNum(last + 1));
    ranges
}

/// The size header of a response body.
pub fn size_header(size: u64) -> [u8; SIZE_HEADER_LEN] {
    size.to_le_bytes()
}

/// The id and post-order outboard (the tree's parent pairs, as a node stores them beside the
/// blob) of the bytes `data`. For small blobs and test vectors; nodes hash from files.
pub fn outboard(data: &[u8]) -> (ContentId, Vec<u8>) {
    let mut pairs = Vec::new();
    // Reading a slice of exactly the tree's size and writing into a Vec cannot fail; if it
    // did, the plain hash is still the blob's id and an empty outboard fails every encoding.
    let root = bao_tree::io::sync::outboard_post_order(data, tree(data.len() as u64), &mut pairs)
        .unwrap_or_else(|_| blake3::hash(data));
    (ContentId::from_bytes(*root.as_bytes()), pairs)
}

/// The response body for `range` (all when `None`) of the blob `data`: its size header and
/// the verified-stream encoding of [`response_ranges`]. For small blobs and test vectors;
/// nodes encode from files.
pub fn encode_response(data: &[u8], range: Option<Range<u64>>) -> Vec<u8> {
    let size = data.len() as u64;
    let (id, pairs) = outboard(data);
    let ob = bao_tree::io::outboard::PostOrderMemOutboard {
        root: blake3::Hash::from_bytes(*id.as_bytes()),
        tree: tree(size),
        data: pairs,
    };
    let mut encoded = size_header(size).to_vec();
    // Encoding from a consistent in-memory outboard into a Vec cannot fail; a cut encoding
    // would fail every reader's check, never pass it.
    let _ = bao_tree::io::sync::encode_ranges_validated(
        data,
        &ob,
        &response_ranges(size, range),
        &mut encoded,
    );
    encoded
}

/// Why a verified stream was refused. Every variant names the byte offset of the chunk (or
/// the first chunk under the parent) where the check failed; nothing at or after it was
/// handed out.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// A chunk group's bytes do not hash to what the tree says.
    #[error("blob chunk at byte {offset} does not match the blob's hash")]
    CorruptChunk {
        /// The chunk's first byte.
        offset: u64,
    },
    /// A parent's pair of child hashes does not hash to what the tree says.
    #[error("blob tree node over byte {offset} does not match the blob's hash")]
    CorruptParent {
        /// The first byte under the node.
        offset: u64,
    },
    /// The stream ended before the chunk or node at `offset`.
    #[error("blob stream ended before byte {offset}")]
    Truncated {
        /// Where the data stopped.
        offset: u64,
    },
    /// The size header is missing.
    #[error("blob stream has no size header")]
    NoSize,
    /// The size header disagrees with the size the reader knew (an attachment's).
    #[error("blob stream says {found} bytes, expected {expected}")]
    WrongSize {
        /// The size the reader expected.
        expected: u64,
        /// The size the stream claims.
        found: u64,
    },
    /// Reading the stream failed.
    #[error("reading the blob stream failed")]
    Io(#[source] std::io::Error),
}

impl StreamError {
    fn from_decode(e: DecodeError) -> Self {
        match e {
            DecodeError::LeafHashMismatch(chunk) => Self::CorruptChunk {
                offset: chunk.to_bytes(),
            },
            DecodeError::ParentHashMismatch(node) => Self::CorruptParent {
                offset: node.chunk_range().start.to_bytes(),
            },
            DecodeError::LeafNotFound(chunk) => Self::Truncated {
                offset: chunk.to_bytes(),
            },
            DecodeError::ParentNotFound(node) => Self::Truncated {
                offset: node.chunk_range().start.to_bytes(),
            },
            DecodeError::Io(e) => Self::Io(e),
        }
    }
}

/// A reader's side of a verified stream: read `body`, a response for `range` (all of the blob
/// when `None`) of blob `id`, and hand each checked piece of the asked range to `sink` in
/// order, as (offset, bytes). Returns the blob's size, proven by the last chunk's check. With
/// `expected_size` (an attachment's), a size header that differs is refused before any data.
///
/// Blocking (`std::io::Read`); an async reader runs it on a blocking thread. The first piece
/// that fails its check ends the read with an error naming its offset: nothing at or after
/// it reaches `sink`. An error from `sink` ends the read as [`StreamError::Io`].
pub fn verify_stream<R: std::io::Read>(
    id: &ContentId,
    mut body: R,
    range: Option<Range<u64>>,
    expected_size: Option<u64>,
    mut sink: impl FnMut(u64, &[u8]) -> std::io::Result<()>,
) -> Result<u64, StreamError> {
    let mut header = [0; SIZE_HEADER_LEN];
    body.read_exact(&mut header).map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => StreamError::NoSize,
        _ => StreamError::Io(e),
    })?;
    let size = u64::from_le_bytes(header);
    if let Some(expected) = expected_size
        && expected != size
    {
        return Err(StreamError::WrongSize {
            expected,
            found: size,
        });
    }
    let ranges = response_ranges(size, range.clone());
    let wanted = range.map_or(0..size, |r| r.start.min(size)..r.end.min(size));
    let items = DecodeResponseIter::new(
        blake3::Hash::from_bytes(*id.as_bytes()),
        tree(size),
        body,
        &ranges,
    );
    for item in items {
        let BaoContentItem::Leaf(leaf) = item.map_err(StreamError::from_decode)? else {
            continue;
        };
        let end = leaf.offset + leaf.data.len() as u64;
        let from = wanted.start.max(leaf.offset);
        let to = wanted.end.min(end);
        if from >= to {
            // The last chunk, sent to prove the size, outside the asked range.
            continue;
        }
        // Both bounds lie within this leaf, whose length is a usize.
        let piece = &leaf.data[(from - leaf.offset) as usize..(to - leaf.offset) as usize];
        sink(from, piece).map_err(StreamError::Io)?;
    }
    Ok(size)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 % 251) as u8).collect()
    }

    fn read_all(
        id: &ContentId,
        body: &[u8],
        range: Option<Range<u64>>,
    ) -> Result<Vec<u8>, StreamError> {
        let mut out = Vec::new();
        verify_stream(id, body, range, None, |_, piece| {
            out.extend_from_slice(piece);
            Ok(())
        })?;
        Ok(out)
    }

    #[test]
    fn a_blobs_id_is_its_blake3_hash_and_its_stream_reads_back() {
        for len in [0, 1, 1024, 16 * 1024, 16 * 1024 + 1, 100_000] {
            let bytes = data(len);
            let (id, outboard) = outboard(&bytes);
            let encoded = encode_response(&bytes, None);
            assert_eq!(id, ContentId::of(&bytes));
            assert_eq!(outboard.len() as u64, tree(len as u64).outboard_size());
            assert_eq!(read_all(&id, &encoded, None).unwrap(), bytes, "{len}");
        }
    }

    #[test]
    fn a_flipped_byte_fails_at_its_chunk() {
        let bytes = data(100_000);
        let id = ContentId::of(&bytes);
        let mut encoded = encode_response(&bytes, None);
        // The tree of 7 groups has 6 parents (64 bytes each) before the data of the last
        // group; flip the last byte of the body: the last group (from 98304) must fail.
        let last = encoded.len() - 1;
        encoded[last] ^= 1;
        let mut good = 0;
        let err = verify_stream(&id, &encoded[..], None, None, |_, piece| {
            good += piece.len();
            Ok(())
        })
        .unwrap_err();
        assert_eq!(good, 6 * 16 * 1024);
        assert!(
            matches!(err, StreamError::CorruptChunk { offset: 98304 }),
            "{err:?}"
        );
        // Known size: a header that disagrees is refused before any data.
        let err = verify_stream(&id, &encoded[..], None, Some(5), |_, _| Ok(())).unwrap_err();
        assert!(matches!(err, StreamError::WrongSize { expected: 5, .. }));
    }

    #[test]
    fn a_range_reads_alone_and_proves_the_size() {
        let bytes = data(200_000);
        let id = ContentId::of(&bytes);
        let range = 50_000..50_100;
        let mut body = encode_response(&bytes, Some(range.clone()));
        assert!(body.len() < 5_000, "{}", body.len());
        assert_eq!(
            read_all(&id, &body, Some(range.clone())).unwrap(),
            &bytes[50_000..50_100]
        );
        // A lie about the size fails the last chunk's check.
        body[..8].copy_from_slice(&(bytes.len() as u64 + 1).to_le_bytes());
        assert!(read_all(&id, &body, Some(range)).is_err());
    }

    #[test]
    fn attachments_are_signed_and_absent_when_empty() {
        use crate::address::{SpaceId, SpaceType};
        use crate::keys::Keypair;
        use crate::sign::Signed;
        use crate::wire::Beam;
        let alice = Keypair::from_seed(&[1; 32]);
        let space = SpaceId::new(SpaceType::Channel, alice.did(), "s").unwrap();
        let (plain, _) = Beam::post(&alice, space.clone(), "h", "t", "b", 7).unwrap();
        let text = serde_json::to_string(&plain).unwrap();
        assert!(!text.contains("attachments"));
        // `[]` is a second encoding of "none": refused.
        let empty = text.replacen('{', "{\"attachments\":[],", 1);
        assert!(serde_json::from_str::<Beam>(&empty).is_err());
        let attachment = Attachment {
            blob: ContentId::of(b"cat"),
            size: 3,
            media_type: "image/png".into(),
            name: "cat.png".into(),
        };
        let (beam, _) =
            Beam::post_attached(&alice, space, "h", "t", "b", vec![attachment.clone()], 7).unwrap();
        beam.verify().unwrap();
        assert_ne!(beam.content_id().unwrap(), plain.content_id().unwrap());
        let back: Beam = serde_json::from_str(&serde_json::to_string(&beam).unwrap()).unwrap();
        assert_eq!(back, beam);
        // Changing an attachment breaks the author's signature.
        let mut forged = beam.clone();
        forged.attachments[0].size = 4;
        assert!(forged.verify().is_err());
    }

    #[test]
    fn attachment_limits_are_rules() {
        let ok = Attachment {
            blob: ContentId::of(b"x"),
            size: 1,
            media_type: "image/png".into(),
            name: "cat.png".into(),
        };
        check_attachments(std::slice::from_ref(&ok)).unwrap();
        let with = |f: &dyn Fn(&mut Attachment)| {
            let mut a = ok.clone();
            f(&mut a);
            a.check_rules().unwrap_err().code()
        };
        assert_eq!(with(&|a| a.name = "../x".into()), "bad_attachment_name");
        assert_eq!(with(&|a| a.name = String::new()), "bad_attachment_name");
        assert_eq!(with(&|a| a.name = "n".repeat(257)), "too_long");
        assert_eq!(with(&|a| a.media_type = "image".into()), "bad_media_type");
        assert_eq!(
            with(&|a| a.media_type = "text/plain; charset=utf-8".into()),
            "bad_media_type"
        );
        assert_eq!(with(&|a| a.size = 1 << 60), "too_large");
        let many: Vec<Attachment> = (0..=MAX_ATTACHMENTS)
            .map(|i| Attachment {
                blob: ContentId::of(&[i as u8]),
                ..ok.clone()
            })
            .collect();
        assert_eq!(
            check_attachments(&many).unwrap_err().code(),
            "too_many_attachments"
        );
        assert_eq!(
            check_attachments(&[ok.clone(), ok]).unwrap_err().code(),
            "duplicate_attachment"
        );
    }
}
