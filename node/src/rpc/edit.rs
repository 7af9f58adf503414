//! `beam.edit` and `beam.history`: new versions of a beam, stored on the author's home node and
//! carried into every space that refers to the beam as an edit event (`spec/protocol.md`
//! §4.10, §6.3.25, §6.3.26).
//!
//! Which version is current and which ones an edit dropped are the protocol's pure rules
//! ([`northstar_protocol::wire::edit`]); the order a new edit must respect is [`check_order`]
//! here. The rows are written by the writer (`crate::spaces`), the reads go through the store.

use jsonrpsee::core::client::ClientT;
use jsonrpsee::rpc_params;
use northstar_protocol::address::{BeamPath, BeamUri, author_hash};
use northstar_protocol::api::{BeamEdited, BeamHistory, BeamVersion, ErrorCode};
use northstar_protocol::canonical::from_str_strict;
use northstar_protocol::wire::edit::{VersionKey, dropped_below, original_key, resolve};
use northstar_protocol::wire::{Beam, Edit, Payload};
use northstar_protocol::{ContentId, Did, SignatureError, Signed, method, verify};
use serde_json::value::RawValue;

use super::{Api, ApiError, bad_signature, malformed, not_signer, relayed, unreachable};
use crate::federation::LinkError;
use crate::store::StoreError;

/// Why a new edit does not fit the versions held (`stale_version`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OrderError {
    /// Its version is below the current one's.
    #[error("version {version} is below the current version {current}")]
    Below {
        /// The edit's version.
        version: u64,
        /// The current version's number.
        current: u64,
    },
    /// Its content is already a version of the beam.
    #[error("beam {0} is already a version of this beam")]
    Known(ContentId),
    /// An edit could not be encoded.
    #[error(transparent)]
    Sign(#[from] SignatureError),
}

/// Whether `edit` may be added to `held`, the edits of its beam held on the home node: its
/// version is not below the current one (an equal version with other content is a conflict,
/// which resolution settles, `spec/` §4.10), and its beam is not one of the versions already.
pub fn check_order(held: &[Edit], edit: &Edit) -> Result<(), OrderError> {
    if let Some(known) = held.iter().find(|e| e.beam == edit.beam) {
        return Err(OrderError::Known(known.beam));
    }
    let current = resolve(held)?.map_or(0, |e| e.version);
    if edit.version < current {
        return Err(OrderError::Below {
            version: edit.version,
            current,
        });
    }
    Ok(())
}

impl Api {
    /// `beam.edit` for `user`, after the parameters decoded (§6.3.25).
    pub(super) async fn edit_beam(
        &self,
        user: &Did,
        beam: Beam,
        edit: Edit,
    ) -> Result<BeamEdited, ApiError> {
        for signer in [&edit.author, &beam.author] {
            if signer != user {
                return Err(not_signer(signer, user));
            }
        }
        beam.check_rules().map_err(|e| malformed("beam", e))?;
        edit.check_rules().map_err(|e| malformed("edit", e))?;
        let beam_id = beam.content_id().map_err(ApiError::internal)?;
        if !edit.holds(&beam, &beam_id).map_err(ApiError::internal)? {
            return Err(malformed(
                "edit",
                "its beam must be the beam sent, naming the edit's content id in its ref",
            ));
        }
        edit.verify().map_err(|_| bad_signature("edit"))?;
        beam.verify().map_err(|_| bad_signature("beam"))?;
        let original = edit.supersedes.to_string();
        let path = BeamPath::new(user, edit.supersedes);
        // Until the writer has stored this edit, no other edit is checked: two sent at once
        // would each be checked against the edits held before either.
        let order = self.edit_order.lock().await;
        if self.store.is_tombstoned(&original).await? {
            return Err(ApiError::new(
                ErrorCode::BeamDeleted,
                format!("{path} was deleted; a deleted beam has no new versions"),
            ));
        }
        let held = self.edits(&original, user.as_str()).await?;
        if !self.stores_beam(&path, &held).await? {
            return Err(self.not_here(&edit.supersedes, user, &path).await?);
        }
        check_order(&held, &edit)
            .map_err(|e| ApiError::new(ErrorCode::StaleVersion, format!("{path}: {e}")))?;
        let uri = BeamUri {
            authority: self.config.authority(),
            path: BeamPath::new(user, beam_id),
        }
        .to_string();
        let done = self.sequencer.edit(edit.clone(), beam).await?;
        drop(order);
        // The original's inline copies go at once when the edit drops them; the edit events of
        // spaces sequenced elsewhere do the same on the nodes they reach.
        if edit.drop_history {
            self.hub.revoke(&(edit.author.clone(), edit.supersedes));
        }
        let mut edits = done.acks;
        for (space, authority, sequencer) in done.remote {
            match self
                .submit(
                    &authority,
                    Some(&sequencer),
                    space.clone(),
                    Payload::Edit(edit.clone()),
                )
                .await
            {
                Ok(ack) => edits.push(ack),
                Err(e) => {
                    tracing::warn!(space = %space, error = %e.message(), "edit not delivered to the sequencer")
                }
            }
        }
        Ok(BeamEdited {
            beam_uri: uri,
            edits,
        })
    }

    /// The edits of `author`'s beam `original` held here.
    async fn edits(&self, original: &str, author: &str) -> Result<Vec<Edit>, ApiError> {
        let mut edits = Vec::new();
        for json in self.store.edits_of(original, author).await? {
            edits.push(serde_json::from_str(&json).map_err(|e| {
                ApiError::internal(StoreError::Corrupt {
                    table: "edits",
                    reason: e.to_string(),
                })
            })?);
        }
        Ok(edits)
    }

    /// Whether this node stores the beam at `path` or one of its versions (after an edit that
    /// dropped history, the original's content is gone but the beam lives on).
    async fn stores_beam(&self, path: &BeamPath, held: &[Edit]) -> Result<bool, ApiError> {
        if self.store.beam(&path.to_string()).await?.is_some() {
            return Ok(true);
        }
        for edit in held {
            let version = BeamPath::new(&edit.author, edit.beam).to_string();
            if self.store.beam(&version).await?.is_some() {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// The error for an edit of a beam this node does not store: `not_author` if it knows a
    /// beam with that id by someone else, else `beam_not_found`.
    async fn not_here(
        &self,
        id: &ContentId,
        user: &Did,
        path: &BeamPath,
    ) -> Result<ApiError, ApiError> {
        let text = id.to_string();
        let mut authors: Vec<String> = self
            .store
            .known_beams(std::slice::from_ref(&text))
            .await?
            .into_iter()
            .map(|k| k.author)
            .collect();
        authors.extend(self.store.ref_authors(&text).await?);
        Ok(match authors.into_iter().find(|a| a != user.as_str()) {
            Some(owner) => ApiError::new(
                ErrorCode::NotAuthor,
                format!("beam {id} is {owner}'s; only its author edits it"),
            ),
            None => ApiError::new(
                ErrorCode::BeamNotFound,
                format!("{path} is not stored on this node (edit a beam at its home node)"),
            ),
        })
    }

    /// `beam.history` for `caller` (§6.3.26): asked of the beam's home node when `home` names
    /// another node, else from what this node holds.
    pub(super) async fn history(
        &self,
        path: BeamPath,
        home: Option<String>,
        caller: Option<&Did>,
    ) -> Result<BeamHistory, ApiError> {
        let text = path.to_string();
        let not_found = || ApiError::new(ErrorCode::BeamNotFound, format!("no beam at {text}"));
        let id = path.beam.to_string();
        if self.store.is_tombstoned(&id).await? {
            return Err(not_found());
        }
        let Some(author) = self.author_at(&path).await? else {
            return Err(not_found());
        };
        if let Some(home) = home.filter(|h| *h != self.config.authority()) {
            if !self.store.referenced_at(&id, &author, &home).await? {
                return Err(not_found());
            }
            self.may_read(&text, &id, &author, caller).await?;
            return self.fetch_history(&home, &path).await;
        }
        self.may_read(&text, &id, &author, caller).await?;
        let edits = self.edits(&id, &author).await?;
        let floor = dropped_below(&edits).map_err(ApiError::internal)?;
        let kept = |key: &VersionKey| floor.as_ref().is_none_or(|f| key >= f);
        let mut versions = Vec::new();
        if kept(&original_key(&path.beam))
            && let Some(json) = self.held_beam_json(&text).await?
        {
            versions.push(BeamVersion {
                beam: serde_json::from_str(&json).map_err(ApiError::internal)?,
                edit: None,
            });
        }
        let mut keyed = Vec::with_capacity(edits.len());
        for edit in edits {
            keyed.push((edit.key().map_err(ApiError::internal)?, edit));
        }
        keyed.sort_by(|a, b| a.0.cmp(&b.0));
        for (key, edit) in keyed {
            let at = BeamPath::new(&edit.author, edit.beam).to_string();
            if !kept(&key) {
                continue;
            }
            if let Some(json) = self.held_beam_json(&at).await? {
                versions.push(BeamVersion {
                    beam: serde_json::from_str(&json).map_err(ApiError::internal)?,
                    edit: Some(edit),
                });
            }
        }
        if versions.is_empty() {
            return Err(not_found());
        }
        Ok(BeamHistory {
            path: text,
            versions,
        })
    }

    /// The DID whose hash `path` names, as the beam stored here or a ref held here shows it.
    async fn author_at(&self, path: &BeamPath) -> Result<Option<String>, ApiError> {
        let text = path.to_string();
        if let Some(row) = self.store.beam(&text).await? {
            return Ok(Some(row.author));
        }
        if let Some(row) = self.store.cached_beam(&text).await? {
            return Ok(Some(row.author));
        }
        Ok(self
            .store
            .ref_authors(&path.beam.to_string())
            .await?
            .into_iter()
            .find(|a| Did::parse(a).is_ok_and(|did| author_hash(&did) == path.author_hash)))
    }

    /// The JSON of the beam at `path`, stored or cached here.
    async fn held_beam_json(&self, path: &str) -> Result<Option<String>, ApiError> {
        Ok(match self.store.beam(path).await? {
            Some(row) => Some(row.json),
            None => self.store.cached_beam(path).await?.map(|row| row.json),
        })
    }

    /// `beam.history` at the beam's home node, read strictly and checked as a client checks it.
    async fn fetch_history(&self, home: &str, path: &BeamPath) -> Result<BeamHistory, ApiError> {
        let text = path.to_string();
        let link = self.links.get(home).await.map_err(unreachable)?;
        let raw: Box<RawValue> = link
            .client
            .request(method::BEAM_HISTORY, rpc_params![text.clone()])
            .await
            .map_err(|e| relayed(LinkError::from_call(home, e)))?;
        let bad = |why: String| {
            tracing::warn!(peer = %home, path = %text, reason = %why, "a node served a wrong beam history");
            ApiError::new(
                ErrorCode::BadSignature,
                format!("{home} served a wrong history of {text}: {why}"),
            )
        };
        let history: BeamHistory = from_str_strict(raw.get()).map_err(|e| bad(e.to_string()))?;
        verify::check_history(&history, path).map_err(|e| bad(e.to_string()))?;
        Ok(history)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use northstar_protocol::Keypair;

    fn edit(version: u64, body: &str) -> Edit {
        let alice = Keypair::from_seed(&[1; 32]);
        Edit::create(&alice, ContentId::of(b"o"), version, "t", body, 5, false)
            .unwrap()
            .1
    }

    #[test]
    fn an_equal_version_is_a_conflict_and_is_taken() {
        let held = [edit(1, "a")];
        check_order(&held, &edit(1, "b")).unwrap();
        check_order(&held, &edit(2, "b")).unwrap();
    }

    #[test]
    fn refuses_a_version_below_the_current_one() {
        let held = [edit(1, "a"), edit(3, "c")];
        assert_eq!(
            check_order(&held, &edit(2, "b")).unwrap_err(),
            OrderError::Below {
                version: 2,
                current: 3
            }
        );
    }

    #[test]
    fn refuses_content_that_is_a_version_already() {
        let held = [edit(1, "a")];
        assert!(matches!(
            check_order(&held, &edit(1, "a")),
            Err(OrderError::Known(_))
        ));
    }
}
