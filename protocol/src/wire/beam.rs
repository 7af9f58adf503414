//! Beams, the refs that place them in spaces, and tombstones (`spec/` §4.5–4.7).
//!
//! A beam's id is its content id: BLAKE3 of its canonical bytes without `sig` and `ref`. It is
//! stored on its author's home node at `beam/{authorHash}/{beamId}`; spaces carry a [`BeamRef`].
//!
//! An author posts with one signature ([`Beam::post`]): it covers the beam's id and the ref's id
//! (§4.5), and the beam and the ref each carry it. Each still verifies alone: the beam names the
//! ref's id in `ref`, and the ref names the beam's id in `beam`.

use serde::{Deserialize, Serialize};

use crate::address::{BeamPath, BeamUri, SpaceId};
use crate::blob::Attachment;
use crate::did::Did;
use crate::id::ContentId;
use crate::keys::Keypair;
use crate::sign::{self, Domain, Signature, SignatureError, Signed};
use crate::wire::{MAX_BODY_LEN, MAX_NAME_LEN, RuleError, check_len, signed_object};

/// A post's content, signed by its author together with the ref that first posted it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Beam {
    /// The author (the signer).
    pub author: Did,
    /// A title, at most 256 bytes.
    pub title: String,
    /// The body, at most 64 KiB.
    pub body: String,
    /// When the author wrote it, ms since the Unix epoch.
    pub created_at: u64,
    /// The blobs the beam carries (§13.5), in the author's order. Part of the beam's content
    /// and so of its id. Absent on the wire when empty, never `[]`, so a beam without
    /// attachments has the bytes and id it had before attachments existed.
    #[serde(
        default,
        deserialize_with = "crate::blob::non_empty",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub attachments: Vec<Attachment>,
    /// The content id of the ref the author signed together with this beam (`ref` on the wire).
    /// Like `sig`, it is not part of the beam's content, so it is not in the beam's id.
    #[serde(rename = "ref")]
    pub posted_with: ContentId,
    /// The author's signature of the post: this beam's id and `posted_with` (§4.5).
    pub sig: Signature,
}

signed_object!(Beam, Domain::Post, {
    const NOT_CONTENT: &'static [&'static str] = &[sign::SIG_FIELD, "ref"];

    fn signed_message(&self) -> Result<(Vec<u8>, ContentId), SignatureError> {
        let id = self.content_id()?;
        Ok((sign::post_message(&id, &self.posted_with), id))
    }
});

impl Beam {
    /// A post by `author`: a beam and the ref that places it into `space`, signed once. `home`
    /// is the author's home node, where the beam will live.
    pub fn post(
        author: &Keypair,
        space: SpaceId,
        home: &str,
        title: &str,
        body: &str,
        created_at: u64,
    ) -> Result<(Self, BeamRef), SignatureError> {
        Self::post_attached(author, space, home, title, body, Vec::new(), created_at)
    }

    /// A post, as [`Beam::post`], of a beam that carries `attachments` (§13.5).
    pub fn post_attached(
        author: &Keypair,
        space: SpaceId,
        home: &str,
        title: &str,
        body: &str,
        attachments: Vec<Attachment>,
        created_at: u64,
    ) -> Result<(Self, BeamRef), SignatureError> {
        let mut beam = Self {
            author: author.did().clone(),
            title: title.to_owned(),
            body: body.to_owned(),
            created_at,
            attachments,
            // A placeholder until the ref's id is known; not part of the beam's id.
            posted_with: ContentId::from_bytes([0; 32]),
            sig: Signature::UNSIGNED,
        };
        let mut beam_ref = BeamRef::unsigned(author, space, beam.content_id()?, home, created_at)?;
        beam.posted_with = beam_ref.content_id()?;
        let signer = beam.author.clone();
        sign::sign(&mut beam_ref, author, &signer)?;
        beam.sig = beam_ref.sig;
        Ok((beam, beam_ref))
    }

    /// Check the author's signature.
    pub fn verify(&self) -> Result<(), SignatureError> {
        sign::verify(self, &self.author)
    }

    /// Check the protocol's length limits.
    pub fn check_rules(&self) -> Result<(), RuleError> {
        check_len("title", &self.title, MAX_NAME_LEN)?;
        check_len("body", &self.body, MAX_BODY_LEN)?;
        crate::blob::check_attachments(&self.attachments)
    }

    /// Where the beam lives on its author's node.
    pub fn path(&self) -> Result<BeamPath, SignatureError> {
        Ok(BeamPath::new(&self.author, self.content_id()?))
    }

    /// Whether this beam, whose content id is `id`, was signed together with `beam_ref`, whose
    /// content id is `ref_id`: the ref names this beam and its author, the beam names the ref,
    /// and the two carry the same signature. Then both carry one signature of one message by
    /// one key, and checking either checks both. The ids must be the objects' own: the caller
    /// computes them (it needs them anyway) and this does not recompute them.
    pub fn signed_with(&self, id: &ContentId, beam_ref: &BeamRef, ref_id: &ContentId) -> bool {
        beam_ref.beam == *id
            && beam_ref.author == self.author
            && self.posted_with == *ref_id
            && self.sig == beam_ref.sig
    }
}

/// The BLAKE3 key-derivation context of the reference implementation's ref nonces.
const NONCE_CONTEXT: &str = "northstar 2026-12 beam-ref nonce";

/// An author's signed statement placing a beam into a space.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BeamRef {
    /// The space the beam is posted into.
    pub space: SpaceId,
    /// The beam's content id.
    pub beam: ContentId,
    /// The beam's author (the signer).
    pub author: Did,
    /// The author's home node, `host[:port]`, where the beam can be fetched.
    pub home: String,
    /// When the author posted it, ms since the Unix epoch.
    pub created_at: u64,
    /// A value only the author can compute, so that this ref's content id, which a beam signed
    /// with it names in its `ref`, cannot be guessed from the ref's other members (§4.6).
    pub nonce: String,
    /// The author's signature of the post: `beam` and this ref's id (§4.5).
    pub sig: Signature,
}

/// The longest `nonce` of a beam ref, in bytes.
pub const MAX_NONCE_LEN: usize = 64;

signed_object!(BeamRef, Domain::Post, {
    fn signed_message(&self) -> Result<(Vec<u8>, ContentId), SignatureError> {
        let id = self.content_id()?;
        Ok((sign::post_message(&self.beam, &id), id))
    }
});

impl BeamRef {
    /// A ref to `beam` in `space`, signed by the beam's author on its own: how an author posts
    /// a beam it already has into another space.
    pub fn create(
        author: &Keypair,
        space: SpaceId,
        beam: ContentId,
        home: &str,
        created_at: u64,
    ) -> Result<Self, SignatureError> {
        let mut beam_ref = Self::unsigned(author, space, beam, home, created_at)?;
        let signer = beam_ref.author.clone();
        sign::sign(&mut beam_ref, author, &signer)?;
        Ok(beam_ref)
    }

    /// The ref before it is signed, with the reference implementation's nonce: the first 16
    /// bytes of BLAKE3, keyed with a key derived from the author's secret seed, of the
    /// canonical ref without `sig` and with an empty `nonce`, as `u` + base64url (§4.6). Deterministic, so a
    /// retried post is the same object, and unguessable without the author's key.
    fn unsigned(
        author: &Keypair,
        space: SpaceId,
        beam: ContentId,
        home: &str,
        created_at: u64,
    ) -> Result<Self, SignatureError> {
        let mut beam_ref = Self {
            space,
            beam,
            author: author.did().clone(),
            home: home.to_owned(),
            created_at,
            nonce: String::new(),
            sig: Signature::UNSIGNED,
        };
        let key = blake3::derive_key(NONCE_CONTEXT, author.seed().as_ref());
        let digest = blake3::keyed_hash(&key, &beam_ref.canonical_unsigned()?);
        beam_ref.nonce = multibase::encode(multibase::Base::Base64Url, &digest.as_bytes()[..16]);
        Ok(beam_ref)
    }

    /// Check the author's signature.
    pub fn verify(&self) -> Result<(), SignatureError> {
        sign::verify(self, &self.author)
    }

    /// Check that `home` is a well-formed authority and `nonce` is not too long.
    pub fn check_rules(&self) -> Result<(), RuleError> {
        crate::address::check_authority(&self.home)?;
        check_len("nonce", &self.nonce, MAX_NONCE_LEN)
    }

    /// The beam's URI.
    pub fn beam_uri(&self) -> BeamUri {
        BeamUri {
            authority: self.home.clone(),
            path: BeamPath::new(&self.author, self.beam),
        }
    }
}

/// A signed deletion of a beam: by its author, or by the beam's home node when that node's
/// operator removes it (`node` set). Every space that referenced the beam gets it as an
/// event, and every node that cached the beam drops it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tombstone {
    /// The deleted beam's content id.
    pub beam: ContentId,
    /// The beam's author.
    pub author: Did,
    /// When it was deleted, ms since the Unix epoch.
    pub deleted_at: u64,
    /// The beam's home node, when that node removed the beam (spec §6.3.18): then `node`
    /// signs, not `author`. Absent in an author's own deletion.
    #[serde(
        default,
        deserialize_with = "crate::canonical::present",
        skip_serializing_if = "Option::is_none"
    )]
    pub node: Option<Did>,
    /// The signer's signature: `node`'s if present, else `author`'s.
    pub sig: Signature,
}
signed_object!(Tombstone, Domain::Tombstone);

impl Tombstone {
    /// A tombstone for `beam`, signed by its author.
    pub fn create(
        author: &Keypair,
        beam: ContentId,
        deleted_at: u64,
    ) -> Result<Self, SignatureError> {
        let mut tombstone = Self {
            beam,
            author: author.did().clone(),
            deleted_at,
            node: None,
            sig: Signature::UNSIGNED,
        };
        let signer = tombstone.author.clone();
        sign::sign(&mut tombstone, author, &signer)?;
        Ok(tombstone)
    }

    /// A tombstone for `beam` by `author`, signed by `node`, the beam's home node, whose
    /// operator removes it.
    pub fn by_node(
        node: &Keypair,
        beam: ContentId,
        author: Did,
        deleted_at: u64,
    ) -> Result<Self, SignatureError> {
        let mut tombstone = Self {
            beam,
            author,
            deleted_at,
            node: Some(node.did().clone()),
            sig: Signature::UNSIGNED,
        };
        let signer = node.did().clone();
        sign::sign(&mut tombstone, node, &signer)?;
        Ok(tombstone)
    }

    /// Who signs it: `node` if present, else `author`.
    pub fn signer(&self) -> &Did {
        self.node.as_ref().unwrap_or(&self.author)
    }

    /// Check the signer's signature.
    pub fn verify(&self) -> Result<(), SignatureError> {
        sign::verify(self, self.signer())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::address::SpaceType;

    fn space(owner: &Keypair, name: &str) -> SpaceId {
        SpaceId::new(SpaceType::Dm, owner.did(), name).unwrap()
    }

    /// A ref's nonce is the author's to compute: the same post gives the same ref (a retried
    /// post is the same object), another space or another key gives another nonce, so a ref's
    /// id, which a beam names, cannot be confirmed from guessed members without the key.
    #[test]
    fn a_refs_nonce_is_reproducible_by_its_author_only() {
        let alice = Keypair::from_seed(&[1; 32]);
        let post = |space| Beam::post(&alice, space, "h", "t", "b", 7).unwrap();
        let (beam, first) = post(space(&alice, "secret"));
        assert_eq!(post(space(&alice, "secret")).1, first);
        assert_eq!(first.nonce.len(), 23, "u and 16 bytes of base64url");
        assert_ne!(post(space(&alice, "other")).1.nonce, first.nonce);
        // The same members under a nonce computed without Alice's seed give another id.
        let mallory = Keypair::from_seed(&[2; 32]);
        let guessed = BeamRef::unsigned(&mallory, first.space.clone(), first.beam, "h", 7)
            .unwrap()
            .nonce;
        assert_ne!(guessed, first.nonce);
        let mut guess = first.clone();
        guess.nonce = guessed;
        assert_ne!(guess.content_id().unwrap(), beam.posted_with);
    }

    #[test]
    fn a_tombstone_signed_by_a_node_verifies_under_that_node_only() {
        let (alice, home, other) = (
            Keypair::from_seed(&[1; 32]),
            Keypair::from_seed(&[2; 32]),
            Keypair::from_seed(&[3; 32]),
        );
        let beam = ContentId::of(b"spam");
        let removed = Tombstone::by_node(&home, beam, alice.did().clone(), 9).unwrap();
        assert_eq!(removed.signer(), home.did());
        removed.verify().unwrap();
        // Naming another node, or dropping the node (so the author would have signed), fails.
        let mut renamed = removed.clone();
        renamed.node = Some(other.did().clone());
        assert!(renamed.verify().is_err());
        let mut unnamed = removed.clone();
        unnamed.node = None;
        assert!(unnamed.verify().is_err());
        // An author's own tombstone has no `node` on the wire, as before.
        let own = Tombstone::create(&alice, beam, 9).unwrap();
        assert_eq!(own.signer(), alice.did());
        assert!(!serde_json::to_string(&own).unwrap().contains("node"));
        assert!(
            serde_json::to_string(&removed)
                .unwrap()
                .contains("\"node\"")
        );
    }

    #[test]
    fn a_nonce_longer_than_its_limit_breaks_the_refs_rules() {
        let alice = Keypair::from_seed(&[1; 32]);
        let (_, mut beam_ref) = Beam::post(&alice, space(&alice, "s"), "h", "t", "b", 7).unwrap();
        beam_ref.check_rules().unwrap();
        beam_ref.nonce = "n".repeat(MAX_NONCE_LEN + 1);
        let err = beam_ref.check_rules().unwrap_err();
        assert_eq!(err.code(), "too_long");
        beam_ref.nonce = "n".repeat(MAX_NONCE_LEN);
        beam_ref.check_rules().unwrap();
    }
}
