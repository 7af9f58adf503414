//! `beam.*`: beams stored here, fetched from their author's node, and deleted.

use jsonrpsee::Extensions;
use jsonrpsee::core::{RpcResult, async_trait};
use northstar_protocol::Did;
use northstar_protocol::address::BeamPath;
use northstar_protocol::api::{BeamDeleted, ErrorCode};
use northstar_protocol::rpc::{BeamApiClient, BeamApiServer};
use northstar_protocol::wire::{Beam, Payload, Tombstone};

use super::{
    Api, ApiError, Handler, bad_signature, malformed, not_signer, relayed, session, unreachable,
};
use crate::federation::LinkError;
use crate::store::BeamRow;

#[async_trait]
impl BeamApiServer for Handler {
    async fn get(&self, _ext: &Extensions, path: String, home: Option<String>) -> RpcResult<Beam> {
        let parsed = BeamPath::parse(&path).map_err(|e| malformed("path", e))?;
        Ok(self.0.beam(parsed, home).await?)
    }

    async fn list(
        &self,
        _ext: &Extensions,
        author: Did,
        before: u64,
        limit: u32,
    ) -> RpcResult<Vec<Beam>> {
        let before = if before == 0 { u64::MAX >> 11 } else { before };
        let limit = limit.clamp(1, self.0.config.limits.max_page);
        let rows = self
            .0
            .store
            .beams_by_author(author.as_str(), before, limit, self.0.page_bytes())
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
        tombstone.verify().map_err(|_| bad_signature("tombstone"))?;
        let api = &self.0;
        let path = BeamPath::new(&tombstone.author, tombstone.beam);
        let deleted = api
            .sequencer
            .delete(tombstone.clone(), path)
            .await
            .map_err(ApiError::from)?;
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
}

impl Api {
    /// A beam: stored here, cached here, or fetched from `home` (its author's node), checked
    /// against the path, and cached while a space replicated here refers to it.
    async fn beam(&self, path: BeamPath, home: Option<String>) -> Result<Beam, ApiError> {
        let text = path.to_string();
        let not_found = || ApiError::new(ErrorCode::BeamNotFound, format!("no beam at {text}"));
        if let Some(row) = self.store.beam(&text).await? {
            return serde_json::from_str(&row.json).map_err(ApiError::internal);
        }
        if let Some(json) = self.store.cached_beam(&text).await? {
            return serde_json::from_str(&json).map_err(ApiError::internal);
        }
        let Some(home) = home.filter(|h| *h != self.config.authority()) else {
            return Err(not_found());
        };
        // Fetch only beams a space held here refers to: this node is not an open relay to
        // any host a caller names, and it keeps (and purges) what it fetched with those spaces.
        let id = path.beam.to_string();
        if self.store.is_tombstoned(&id).await? || !self.store.referenced_at(&id, &home).await? {
            return Err(not_found());
        }
        let link = self.links.get(&home).await.map_err(unreachable)?;
        let beam = BeamApiClient::get(link.client.as_ref(), text.clone(), None)
            .await
            .map_err(|e| relayed(LinkError::from_call(&home, e)))?;
        let got = beam.path().map_err(|e| malformed("fetched beam", e))?;
        if got != path || beam.verify().is_err() {
            tracing::warn!(peer = %home, path = %text, "a node served a beam that does not match its path");
            return Err(ApiError::new(
                ErrorCode::BadSignature,
                format!("{home} served a beam that does not match {text}"),
            ));
        }
        let row = BeamRow {
            path: text,
            id: path.beam.to_string(),
            author: beam.author.to_string(),
            json: serde_json::to_string(&beam).map_err(ApiError::internal)?,
            created_at: beam.created_at,
        };
        self.store.cache_beam(&row).await?;
        Ok(beam)
    }
}
