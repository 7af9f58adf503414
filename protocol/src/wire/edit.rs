//! Beam edits: an author's signed new version of one of its beams (`spec/` §4.10).
//!
//! A version is an ordinary beam (§4.5), stored at its own path on the author's home node. The
//! [`Edit`] names it (`beam`), the beam it supersedes (`supersedes`, always the *original*,
//! version 0) and its version number. Every edit of a beam names the same original, so the
//! versions of a beam are a set, not a chain: the current one is the greatest by
//! [`VersionKey`] (version, then the edit's content id in its text's byte order), which every
//! node and client computes alike from whichever edits it holds ([`resolve`]).
//!
//! The version's beam names the edit's content id in its `ref` and carries the author's post
//! signature of that pair (§4.5), so it verifies alone as any beam does; the edit has its own
//! domain tag and signature.

use serde::{Deserialize, Serialize};

use crate::did::Did;
use crate::id::ContentId;
use crate::keys::Keypair;
use crate::sign::{self, Domain, Signature, SignatureError, Signed};
use crate::wire::beam::Beam;
use crate::wire::{RuleError, signed_object};

/// An author's signed statement that `beam` is version `version` of the beam `supersedes`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Edit {
    /// The content id of the beam holding this version's content.
    pub beam: ContentId,
    /// The content id of the original beam (version 0) this version supersedes.
    pub supersedes: ContentId,
    /// The author of both beams; the signer.
    pub author: Did,
    /// The version number: 1 or more (the original is version 0).
    pub version: u64,
    /// When the author made the edit, ms since the Unix epoch.
    pub edited_at: u64,
    /// Whether every version below this one is to be deleted (`spec/` §4.10).
    pub drop_history: bool,
    /// The author's signature.
    pub sig: Signature,
}
signed_object!(Edit, Domain::Edit);

/// What orders the versions of one beam: the version number, then the content id of the edit
/// that made it, compared as its multibase text's bytes. The original is `(0, its own id)`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct VersionKey {
    /// The version number.
    pub version: u64,
    /// The edit's content id as text (the original's own id for version 0).
    pub id: String,
}

impl Edit {
    /// A new version of `author`'s beam `original`: the version's beam and the edit, signed.
    /// The beam's `created_at` is `edited_at`.
    pub fn create(
        author: &Keypair,
        original: ContentId,
        version: u64,
        title: &str,
        body: &str,
        edited_at: u64,
        drop_history: bool,
    ) -> Result<(Beam, Self), SignatureError> {
        let mut beam = Beam {
            author: author.did().clone(),
            title: title.to_owned(),
            body: body.to_owned(),
            created_at: edited_at,
            attachments: Vec::new(),
            // A placeholder until the edit's id is known; not part of the beam's id.
            posted_with: ContentId::from_bytes([0; 32]),
            sig: Signature::UNSIGNED,
        };
        let mut edit = Self {
            beam: beam.content_id()?,
            supersedes: original,
            author: author.did().clone(),
            version,
            edited_at,
            drop_history,
            sig: Signature::UNSIGNED,
        };
        let signer = edit.author.clone();
        sign::sign(&mut edit, author, &signer)?;
        beam.posted_with = edit.content_id()?;
        sign::sign(&mut beam, author, &signer)?;
        Ok((beam, edit))
    }

    /// Check the author's signature.
    pub fn verify(&self) -> Result<(), SignatureError> {
        sign::verify(self, &self.author)
    }

    /// The rule checks of §4.10: `version` is at least 1, and `beam` is not `supersedes`.
    pub fn check_rules(&self) -> Result<(), RuleError> {
        if self.version == 0 {
            return Err(RuleError::ZeroVersion);
        }
        if self.beam == self.supersedes {
            return Err(RuleError::SelfEdit);
        }
        Ok(())
    }

    /// Where this edit places it among the versions of its beam.
    pub fn key(&self) -> Result<VersionKey, SignatureError> {
        Ok(VersionKey {
            version: self.version,
            id: self.content_id()?.to_string(),
        })
    }

    /// Whether `beam`, whose content id is `id`, is this edit's version: the edit names it, the
    /// beam names the edit in its `ref`, and both have one author. The beam's own signature is
    /// still to be checked.
    pub fn holds(&self, beam: &Beam, id: &ContentId) -> Result<bool, SignatureError> {
        Ok(self.beam == *id
            && beam.author == self.author
            && beam.posted_with == self.content_id()?)
    }
}

/// The key of the original beam `original`: version 0.
pub fn original_key(original: &ContentId) -> VersionKey {
    VersionKey {
        version: 0,
        id: original.to_string(),
    }
}

/// The current version among `edits` of one beam by one author: the greatest by
/// [`VersionKey`]; `None` if there is no edit (the original is current). Every node and client
/// holding the same edits gets the same answer, whatever order they arrived in.
pub fn resolve<'a>(
    edits: impl IntoIterator<Item = &'a Edit>,
) -> Result<Option<&'a Edit>, SignatureError> {
    let mut best: Option<(VersionKey, &Edit)> = None;
    for edit in edits {
        let key = edit.key()?;
        if best.as_ref().is_none_or(|(b, _)| key > *b) {
            best = Some((key, edit));
        }
    }
    Ok(best.map(|(_, e)| e))
}

/// The key below which `edits` delete every version: that of the greatest edit asking to drop
/// history, if any. A version whose key is below it is gone, whichever order the edits came in.
pub fn dropped_below<'a>(
    edits: impl IntoIterator<Item = &'a Edit>,
) -> Result<Option<VersionKey>, SignatureError> {
    resolve(edits.into_iter().filter(|e| e.drop_history))?
        .map(Edit::key)
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice() -> Keypair {
        Keypair::from_seed(&[1; 32])
    }

    #[test]
    fn a_version_verifies_alone_and_names_its_edit() {
        let original = ContentId::of(b"original");
        let (beam, edit) = Edit::create(&alice(), original, 1, "t", "b", 9, false).unwrap();
        edit.verify().unwrap();
        beam.verify().unwrap();
        assert!(edit.holds(&beam, &beam.content_id().unwrap()).unwrap());
        edit.check_rules().unwrap();
        // The edit's signature is of its own kind: as a post it does not verify.
        let mut tampered = edit.clone();
        tampered.version = 2;
        assert!(tampered.verify().is_err());
    }

    #[test]
    fn rule_checks_refuse_version_zero_and_an_edit_of_itself() {
        let original = ContentId::of(b"original");
        let (_, mut edit) = Edit::create(&alice(), original, 1, "t", "b", 9, false).unwrap();
        edit.version = 0;
        assert_eq!(edit.check_rules().unwrap_err().code(), "zero_version");
        edit.version = 1;
        edit.supersedes = edit.beam;
        assert_eq!(edit.check_rules().unwrap_err().code(), "self_edit");
    }

    /// Two devices of one author publish version 1 with different content: every order of
    /// arrival resolves to the same one, the edit with the greater id text.
    #[test]
    fn conflicting_versions_resolve_alike_in_any_order() {
        let original = ContentId::of(b"original");
        let (_, a) = Edit::create(&alice(), original, 1, "t", "from a", 9, false).unwrap();
        let (_, b) = Edit::create(&alice(), original, 1, "t", "from b", 9, false).unwrap();
        let winner = if a.key().unwrap() > b.key().unwrap() {
            &a
        } else {
            &b
        };
        assert_eq!(resolve([&a, &b]).unwrap(), Some(winner));
        assert_eq!(resolve([&b, &a]).unwrap(), Some(winner));
        // A higher version wins over any id.
        let (_, c) = Edit::create(&alice(), original, 2, "t", "later", 9, false).unwrap();
        assert_eq!(resolve([&a, &c, &b]).unwrap(), Some(&c));
        assert_eq!(resolve(std::iter::empty()).unwrap(), None);
    }

    #[test]
    fn history_is_dropped_below_the_greatest_dropping_edit() {
        let original = ContentId::of(b"original");
        let (_, one) = Edit::create(&alice(), original, 1, "t", "1", 9, true).unwrap();
        let (_, two) = Edit::create(&alice(), original, 2, "t", "2", 9, false).unwrap();
        let (_, three) = Edit::create(&alice(), original, 3, "t", "3", 9, true).unwrap();
        assert_eq!(dropped_below([&two]).unwrap(), None);
        assert_eq!(
            dropped_below([&one, &two]).unwrap(),
            Some(one.key().unwrap())
        );
        assert_eq!(
            dropped_below([&three, &one, &two]).unwrap(),
            Some(three.key().unwrap())
        );
        assert!(original_key(&original) < one.key().unwrap());
    }
}
