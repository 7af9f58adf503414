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
    /// The content id of the ref the author signed together with this beam (`ref` on the wire).
    /// Like `sig`, it is not part of the beam's content, so it is not in the beam's id.
    #[serde(rename = "ref")]
    pub posted_with: ContentId,
    /// The author's signature of the post: this beam's id and `posted_with` (§4.5).
    pub sig: Signature,
}

impl Signed for Beam {
    const DOMAIN: Domain = Domain::Post;
    const NOT_CONTENT: &'static [&'static str] = &[sign::SIG_FIELD, "ref"];

    fn signature(&self) -> &Signature {
        &self.sig
    }

    fn signature_mut(&mut self) -> &mut Signature {
        &mut self.sig
    }

    fn signed_message(&self) -> Result<(Vec<u8>, ContentId), SignatureError> {
        let id = self.content_id()?;
        Ok((sign::post_message(&id, &self.posted_with), id))
    }
}

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
        let mut beam = Self {
            author: author.did().clone(),
            title: title.to_owned(),
            body: body.to_owned(),
            created_at,
            posted_with: ContentId::of(&[]),
            sig: Signature::UNSIGNED,
        };
        let mut beam_ref = BeamRef {
            space,
            beam: beam.content_id()?,
            author: author.did().clone(),
            home: home.to_owned(),
            created_at,
            sig: Signature::UNSIGNED,
        };
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
        check_len("body", &self.body, MAX_BODY_LEN)
    }

    /// Where the beam lives on its author's node.
    pub fn path(&self) -> Result<BeamPath, SignatureError> {
        Ok(BeamPath::new(&self.author, self.content_id()?))
    }

    /// Whether this beam was signed together with `beam_ref`, whose content id is `ref_id`:
    /// then the two carry one signature of one message, and checking either checks both.
    pub fn signed_with(&self, beam_ref: &BeamRef, ref_id: &ContentId) -> bool {
        self.posted_with == *ref_id && self.sig == beam_ref.sig
    }
}

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
    /// The author's signature of the post: `beam` and this ref's id (§4.5).
    pub sig: Signature,
}

impl Signed for BeamRef {
    const DOMAIN: Domain = Domain::Post;

    fn signature(&self) -> &Signature {
        &self.sig
    }

    fn signature_mut(&mut self) -> &mut Signature {
        &mut self.sig
    }

    fn signed_message(&self) -> Result<(Vec<u8>, ContentId), SignatureError> {
        let id = self.content_id()?;
        Ok((sign::post_message(&self.beam, &id), id))
    }
}

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
        let mut beam_ref = Self {
            space,
            beam,
            author: author.did().clone(),
            home: home.to_owned(),
            created_at,
            sig: Signature::UNSIGNED,
        };
        let signer = beam_ref.author.clone();
        sign::sign(&mut beam_ref, author, &signer)?;
        Ok(beam_ref)
    }

    /// Check the author's signature.
    pub fn verify(&self) -> Result<(), SignatureError> {
        sign::verify(self, &self.author)
    }

    /// Check that `home` is a well-formed authority.
    pub fn check_rules(&self) -> Result<(), RuleError> {
        crate::address::check_authority(&self.home)?;
        Ok(())
    }

    /// The beam's URI.
    pub fn beam_uri(&self) -> BeamUri {
        BeamUri {
            authority: self.home.clone(),
            path: BeamPath::new(&self.author, self.beam),
        }
    }
}

/// An author's signed deletion of a beam. Every space that referenced the beam gets it as an
/// event, and every node that cached the beam drops it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tombstone {
    /// The deleted beam's content id.
    pub beam: ContentId,
    /// The beam's author (the signer).
    pub author: Did,
    /// When the author deleted it, ms since the Unix epoch.
    pub deleted_at: u64,
    /// The author's signature.
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
            sig: Signature::UNSIGNED,
        };
        let signer = tombstone.author.clone();
        sign::sign(&mut tombstone, author, &signer)?;
        Ok(tombstone)
    }

    /// Check the author's signature.
    pub fn verify(&self) -> Result<(), SignatureError> {
        sign::verify(self, &self.author)
    }
}
