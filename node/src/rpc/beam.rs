//! `beam.*`: beams stored here, fetched from their author's node, and deleted.
//!
//! Who may read a beam is decided from the refs this node knows (`spec/protocol.md` §6.3.16):
//! a beam posted into a channel or a stream is public; one posted only into `dm` spaces is for
//! its author, the members of those spaces and their home nodes, whether it is stored here, cached
//! here or fetched through here. The rule itself is one SQL condition in [`crate::store`].

use jsonrpsee::Extensions;
use jsonrpsee::core::client::ClientT;
use jsonrpsee::core::{RpcResult, async_trait};
use jsonrpsee::rpc_params;
use northstar_protocol::address::{BeamPath, SpaceId, author_hash};
use northstar_protocol::api::{
    BeamDeleted, BeamEdited, BeamHistory, BeamReceipts, ErrorCode, SpaceReceipt,
};
use northstar_protocol::canonical::from_str_strict;
use northstar_protocol::method;
use northstar_protocol::rpc::{BeamApiServer, FedApiClient};
use northstar_protocol::wire::{Beam, Edit, Event, Payload, Tombstone};
use northstar_protocol::{ContentId, Did};
use serde_json::value::RawValue;

use super::{
    Api, ApiError, Handler, bad_signature, malformed, not_signer, relayed, session, unreachable,
};
use crate::federation::LinkError;
use crate::store::BeamRow;

#[async_trait]
impl BeamApiServer for Handler {
    async fn get(&self, ext: &Extensions, path: String, home: Option<String>) -> RpcResult<Beam> {
        let parsed = BeamPath::parse(&path).map_err(|e| malformed("path", e))?;
        let caller = session(ext)?.did().cloned();
        Ok(self.0.beam(parsed, home, caller.as_ref()).await?)
    }

    async fn list(
        &self,
        ext: &Extensions,
        author: Did,
        before: u64,
        limit: u32,
    ) -> RpcResult<Vec<Beam>> {
        let caller = session(ext)?.did();
        let before = if before == 0 { u64::MAX >> 11 } else { before };
        let limit = limit.clamp(1, self.0.config.limits.max_page);
        let rows = self
            .0
            .store
            .beams_by_author(
                author.as_str(),
                before,
                limit,
                self.0.page_bytes(),
                caller.map(Did::as_str),
            )
            .await
            .map_err(ApiError::from)?;
        let mut beams = Vec::with_capacity(rows.len());
        for row in rows {
            beams.push(serde_json::from_str(&row.json).map_err(ApiError::internal)?);
        }
        Ok(beams)
    }

    async fn delete(&self, ext: &Extensions, tombstone: Tombstone) -> RpcResult<BeamDeleted> {
        let user = session(ext)?.user()?;
        if &tombstone.author != user {
            return Err(not_signer(&tombstone.author, user).into());
        }
        if tombstone.node.is_some() {
            return Err(malformed(
                "tombstone",
                "beam.delete takes the author's own tombstone: node must be absent",
            )
            .into());
        }
        tombstone.verify().map_err(|_| bad_signature("tombstone"))?;
        Ok(self.0.delete_everywhere(tombstone).await?)
    }

    async fn receipts(&self, ext: &Extensions, path: String) -> RpcResult<BeamReceipts> {
        let parsed = BeamPath::parse(&path).map_err(|e| malformed("path", e))?;
        let user = session(ext)?.user()?;
        if parsed.author_hash != author_hash(user) {
            return Err(ApiError::new(
                ErrorCode::Forbidden,
                "only a beam's author sees its deletion receipts",
            )
            .into());
        }
        Ok(self.0.receipts(parsed, user).await?)
    }

    async fn edit(&self, ext: &Extensions, beam: Beam, edit: Edit) -> RpcResult<BeamEdited> {
        let user = session(ext)?.user()?;
        Ok(self.0.edit_beam(user, beam, edit).await?)
    }

    async fn history(
        &self,
        ext: &Extensions,
        path: String,
        home: Option<String>,
    ) -> RpcResult<BeamHistory> {
        let parsed = BeamPath::parse(&path).map_err(|e| malformed("path", e))?;
        let caller = session(ext)?.did().cloned();
        Ok(self.0.history(parsed, home, caller.as_ref()).await?)
    }
}

impl Api {
    /// Remove a beam stored here by the operator's decision: a tombstone signed by this node
    /// (its home node) goes where an author's would (spec §6.3.18).
    pub async fn remove_beam(&self, path: &BeamPath) -> Result<BeamDeleted, ApiError> {
        let text = path.to_string();
        let Some(row) = self.store.beam(&text).await? else {
            return Err(ApiError::new(
                ErrorCode::BeamNotFound,
                format!("no beam at {text} is stored on this node (only its home node removes it)"),
            ));
        };
        let author = Did::parse(&row.author).map_err(|e| {
            ApiError::internal(crate::store::StoreError::Corrupt {
                table: "beams",
                reason: e.to_string(),
            })
        })?;
        let tombstone =
            Tombstone::by_node(&self.node_key, path.beam, author, crate::clock::now_ms())
                .map_err(ApiError::internal)?;
        self.delete_everywhere(tombstone).await
    }

    /// Delete the beam `tombstone` names here, append the tombstone to the spaces sequenced
    /// here that referenced it, and submit it to the sequencers of the others.
    async fn delete_everywhere(&self, tombstone: Tombstone) -> Result<BeamDeleted, ApiError> {
        let api = self;
        let path = BeamPath::new(&tombstone.author, tombstone.beam);
        let deleted = api
            .sequencer
            .delete(tombstone.clone(), path)
            .await
            .map_err(ApiError::from)?;
        // The tombstones of spaces sequenced here revoked it already; this covers the spaces
        // sequenced elsewhere, whose tombstone events reach this node later, if at all.
        api.hub.revoke(&(tombstone.author.clone(), tombstone.beam));
        let mut tombstones = deleted.acks;
        // The content is gone here already; each other sequencer appends the tombstone to its
        // space, and its members drop their cached copies when the event reaches them.
        for (space, authority, sequencer) in deleted.remote {
            match api
                .submit(
                    &authority,
                    Some(&sequencer),
                    space.clone(),
                    Payload::Tombstone(tombstone.clone()),
                )
                .await
            {
                Ok(ack) => tombstones.push(ack),
                Err(e) => {
                    tracing::warn!(space = %space, error = %e.message(), "tombstone not delivered to the sequencer")
                }
            }
        }
        Ok(BeamDeleted { tombstones })
    }

    /// Deletion receipts of `author`'s beam at `path` (§9.9): for each space that referred to
    /// it, its tombstone event here, and which nodes hold that event, from the sequencer.
    async fn receipts(&self, path: BeamPath, author: &Did) -> Result<BeamReceipts, ApiError> {
        let text = path.to_string();
        let beam = path.beam.to_string();
        if !self.store.is_tombstoned(&beam).await? {
            return Err(ApiError::new(
                ErrorCode::BeamNotFound,
                format!("no deleted beam at {text}"),
            ));
        }
        let mut spaces = Vec::new();
        for space in self
            .store
            .spaces_referencing(&beam, author.as_str())
            .await?
        {
            let Ok(space) = SpaceId::parse(&space) else {
                continue;
            };
            spaces.push(self.space_receipt(&space, &path, author).await?);
        }
        let mut holders = std::collections::HashSet::new();
        let mut applied = std::collections::HashSet::new();
        for receipt in &spaces {
            holders.extend(receipt.applied.iter().chain(&receipt.pending).cloned());
            applied.extend(receipt.applied.iter().cloned());
        }
        Ok(BeamReceipts {
            path: text,
            nodes: u32::try_from(holders.len()).unwrap_or(u32::MAX),
            applied: u32::try_from(applied.len()).unwrap_or(u32::MAX),
            spaces,
        })
    }

    /// The receipt of one space: its tombstone event for the beam as held here, then who holds
    /// that event, from delivery health here or from the space's sequencer.
    async fn space_receipt(
        &self,
        space: &SpaceId,
        path: &BeamPath,
        author: &Did,
    ) -> Result<SpaceReceipt, ApiError> {
        let failed = |seq: u64, error: String| SpaceReceipt {
            space: space.clone(),
            seq,
            applied: Vec::new(),
            pending: Vec::new(),
            error: Some(error),
        };
        let mut seq = None;
        for (at, json) in self
            .store
            .tombstone_events(space.as_str(), author.as_str())
            .await?
        {
            let event: Event = serde_json::from_str(&json).map_err(ApiError::internal)?;
            if matches!(&event.payload, Payload::Tombstone(t) if t.beam == path.beam) {
                seq = Some(at);
                break;
            }
        }
        let Some(seq) = seq else {
            return Ok(failed(
                0,
                "the tombstone is not in this space's log here yet".to_owned(),
            ));
        };
        let Some(row) = self.store.space(space.as_str()).await? else {
            return Ok(failed(seq, "the space is no longer held here".to_owned()));
        };
        if row.sequencer == self.did.as_str() {
            self.follow(space).await?;
            return Ok(self
                .delivery
                .receipt(space, seq)
                .unwrap_or_else(|| failed(seq, "the space is no longer held here".to_owned())));
        }
        let asked = async {
            let link = self
                .links
                .get(&row.authority)
                .await
                .map_err(|e| e.to_string())?;
            if link.did.as_str() != row.sequencer {
                return Err(format!(
                    "{} is {}, not the space's sequencer {}",
                    row.authority, link.did, row.sequencer
                ));
            }
            FedApiClient::receipts(link.client.as_ref(), space.clone(), seq)
                .await
                .map_err(|e| LinkError::from_call(&row.authority, e).to_string())
        };
        Ok(asked.await.unwrap_or_else(|e| failed(seq, e)))
    }

    /// A beam for `caller`: stored here, cached here, or fetched from `home` (its author's
    /// node) over a link that authenticates as this node, checked against the path, and
    /// cached while a space held here carries a ref to it by its author.
    pub(crate) async fn beam(
        &self,
        path: BeamPath,
        home: Option<String>,
        caller: Option<&Did>,
    ) -> Result<Beam, ApiError> {
        let text = path.to_string();
        let not_found = || ApiError::new(ErrorCode::BeamNotFound, format!("no beam at {text}"));
        let held = match self.store.beam(&text).await? {
            Some(row) => Some(row),
            None => self.store.cached_beam(&text).await?,
        };
        if let Some(row) = held {
            // A version is read by the readers of the beam it supersedes (§4.10).
            let (path, id) = self.reading_key(&text, &row.id, &row.author).await?;
            self.may_read(&path, &id, &row.author, caller).await?;
            return serde_json::from_str(&row.json).map_err(ApiError::internal);
        }
        let Some(home) = home.filter(|h| *h != self.config.authority()) else {
            return Err(not_found());
        };
        // Fetch only beams a space held here refers to, by a ref of the path's author: this
        // node is not an open relay to any host a caller names, and it keeps (and purges)
        // what it fetched with those spaces.
        let id = path.beam.to_string();
        if self.store.is_tombstoned(&id).await? {
            return Err(not_found());
        }
        // A version named by an edit held here is fetched for the refs of its original.
        let version =
            self.store.version_of(&id).await?.filter(|(_, a)| {
                Did::parse(a).is_ok_and(|did| author_hash(&did) == path.author_hash)
            });
        let author = match &version {
            Some((_, author)) => Some(author.clone()),
            None => self
                .store
                .ref_authors(&id)
                .await?
                .into_iter()
                .find(|a| Did::parse(a).is_ok_and(|did| author_hash(&did) == path.author_hash)),
        };
        let Some(author) = author else {
            return Err(not_found());
        };
        let (read_path, read_id) = match &version {
            Some((original, _)) => match ContentId::parse(original) {
                Ok(original) => (
                    BeamPath::new(&Did::parse(&author).map_err(ApiError::internal)?, original)
                        .to_string(),
                    original.to_string(),
                ),
                Err(e) => return Err(ApiError::internal(e)),
            },
            None => (text.clone(), id.clone()),
        };
        if self.store.is_tombstoned(&read_id).await?
            || !self.store.referenced_at(&read_id, &author, &home).await?
        {
            return Err(not_found());
        }
        self.may_read(&read_path, &read_id, &author, caller).await?;
        let beam = self.fetch(&home, &path).await?;
        let row = BeamRow {
            path: text,
            id,
            author,
            json: serde_json::to_string(&beam).map_err(ApiError::internal)?,
            created_at: beam.created_at,
        };
        self.store.cache_beam(&row).await?;
        Ok(beam)
    }

    /// The path and id whose readers read the beam at `path` (id `id`): the beam's own, or for
    /// a version, those of the original it supersedes (§4.10).
    async fn reading_key(
        &self,
        path: &str,
        id: &str,
        author: &str,
    ) -> Result<(String, String), ApiError> {
        let Some((original, _)) = self
            .store
            .version_of(id)
            .await?
            .filter(|(_, a)| a == author)
        else {
            return Ok((path.to_owned(), id.to_owned()));
        };
        let original = ContentId::parse(&original).map_err(ApiError::internal)?;
        let author = Did::parse(author).map_err(ApiError::internal)?;
        Ok((
            BeamPath::new(&author, original).to_string(),
            original.to_string(),
        ))
    }

    /// `not_member` unless `caller` may read the beam (§6.3.16).
    ///
    /// A caller that joined one of the beam's `dm` spaces a moment ago may not be a member yet
    /// in this node's replica of it (the join is on its way down the tree): before refusing an
    /// authenticated caller, this node brings those replicas up to their sequencers' heads once
    /// and asks again. At most one such pull runs per space; a caller that finds one running
    /// gets the answer of the state as it is.
    pub(super) async fn may_read(
        &self,
        path: &str,
        id: &str,
        author: &str,
        caller: Option<&Did>,
    ) -> Result<(), ApiError> {
        let readable = || async {
            self.store
                .beam_readable(path, id, author, caller.map(Did::as_str))
                .await
                .map_err(ApiError::from)
        };
        if readable().await? {
            return Ok(());
        }
        if caller.is_some()
            && self.refresh_dm_replicas(path, id, author).await?
            && readable().await?
        {
            return Ok(());
        }
        Err(ApiError::new(
            ErrorCode::NotMember,
            format!(
                "{path} is posted only in dm spaces; only their members and their home nodes may read it"
            ),
        ))
    }

    /// Pull what the replicated `dm` spaces of a beam's refs lack; whether any pull ran.
    async fn refresh_dm_replicas(
        &self,
        path: &str,
        id: &str,
        author: &str,
    ) -> Result<bool, ApiError> {
        let spaces = self
            .store
            .replicated_dm_spaces_of_beam(path, id, author, self.did.as_str())
            .await?;
        let mut pulled = false;
        for (space, authority) in spaces {
            let Ok(space) = SpaceId::parse(&space) else {
                continue;
            };
            if !self.start_filling(&space) {
                continue;
            }
            if let Err(e) = self.catch_up.run(&space, &[authority], None, None).await {
                tracing::debug!(space = %space, error = %crate::report::Causes(&e), "replica not refreshed for a beam read");
            }
            self.stop_filling(&space);
            pulled = true;
        }
        Ok(pulled)
    }

    /// `beam.get` on the beam's home node. The answer is read strictly and checked against the
    /// path here: a peer that sends something else has sent a bad beam (`bad_signature`), which
    /// says nothing about the link, so the link stays.
    async fn fetch(&self, home: &str, path: &BeamPath) -> Result<Beam, ApiError> {
        let text = path.to_string();
        let link = self.links.get(home).await.map_err(unreachable)?;
        let raw: Box<RawValue> = link
            .client
            .request(method::BEAM_GET, rpc_params![text.clone()])
            .await
            .map_err(|e| relayed(LinkError::from_call(home, e)))?;
        let bad = |why: String| {
            tracing::warn!(peer = %home, path = %text, reason = %why, "a node served a beam that does not match its path");
            ApiError::new(
                ErrorCode::BadSignature,
                format!("{home} served a beam that does not match {text}: {why}"),
            )
        };
        let beam: Beam = from_str_strict(raw.get()).map_err(|e| bad(e.to_string()))?;
        let got = beam.path().map_err(|e| bad(e.to_string()))?;
        if got != *path {
            return Err(bad("another beam".into()));
        }
        beam.verify()
            .map_err(|_| bad("its signature does not verify".into()))?;
        Ok(beam)
    }
}
