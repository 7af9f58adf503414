//! `space.*`: spaces, their members and their logs (subscriptions are in `feed`).

use jsonrpsee::Extensions;
use jsonrpsee::core::{RpcResult, async_trait};
use northstar_protocol::Did;
use northstar_protocol::address::{SpaceId, SpaceType};
use northstar_protocol::api::{
    Ack, BeamPosted, ErrorCode, EventItem, EventPage, MemberInfo, SpaceHealth, SpaceImported,
    SpaceInfo,
};
use northstar_protocol::rpc::SpaceApiServer;
use northstar_protocol::sign::{self, Signed};
use northstar_protocol::wire::{
    Beam, BeamRef, Membership, MembershipAction, Payload, SpaceGenesis,
};
use serde_json::value::RawValue;

use super::{Api, ApiError, Handler, Whereabouts, bad_signature, malformed, not_signer, session};
use crate::store::EventRow;

#[async_trait]
impl SpaceApiServer for Handler {
    async fn create(&self, ext: &Extensions, genesis: SpaceGenesis) -> RpcResult<Ack> {
        let api = &self.0;
        let user = session(ext)?.user()?;
        if genesis.space.owner() != user {
            return Err(not_signer(genesis.space.owner(), user).into());
        }
        genesis.check_rules().map_err(|e| malformed("genesis", e))?;
        if genesis.sequencer != api.did {
            return Err(malformed(
                "genesis",
                format!("sequencer must be this node, {}", api.did),
            )
            .into());
        }
        if genesis.authority != api.config.authority() {
            return Err(malformed(
                "genesis",
                format!("authority must be {}", api.config.authority()),
            )
            .into());
        }
        if genesis.fanout != api.config.fanout {
            return Err(malformed(
                "genesis",
                format!("fanout must be this node's, {}", api.config.fanout),
            )
            .into());
        }
        genesis.verify().map_err(|_| bad_signature("genesis"))?;
        if api
            .store
            .is_removed(genesis.space.as_str())
            .await
            .map_err(ApiError::from)?
        {
            return Err(ApiError::new(
                ErrorCode::SpaceExists,
                format!(
                    "{} was removed by this node's operator; pick another id",
                    genesis.space
                ),
            )
            .into());
        }
        Ok(api
            .sequencer
            .create(genesis)
            .await
            .map_err(ApiError::from)?)
    }

    async fn get(&self, ext: &Extensions, space: SpaceId) -> RpcResult<SpaceInfo> {
        let row = self.0.readable(&space, session(ext)?.did()).await?;
        Ok(self.0.space_info(&row)?)
    }

    async fn list(&self, ext: &Extensions) -> RpcResult<Vec<SpaceInfo>> {
        let user = session(ext)?.user()?;
        let rows = self
            .0
            .store
            .spaces_of(user.as_str())
            .await
            .map_err(ApiError::from)?;
        Ok(rows
            .iter()
            .map(|r| self.0.space_info(r))
            .collect::<Result<_, _>>()?)
    }

    async fn join(
        &self,
        ext: &Extensions,
        request: Membership,
        sequencer: Option<String>,
    ) -> RpcResult<Ack> {
        Ok(self.0.join(ext, request, sequencer).await?)
    }

    async fn leave(&self, ext: &Extensions, request: Membership) -> RpcResult<Ack> {
        Ok(self
            .0
            .membership(ext, request, MembershipAction::Leave)
            .await?)
    }

    async fn invite(&self, ext: &Extensions, request: Membership) -> RpcResult<Ack> {
        Ok(self
            .0
            .membership(ext, request, MembershipAction::Invite)
            .await?)
    }

    async fn kick(&self, ext: &Extensions, request: Membership) -> RpcResult<Ack> {
        Ok(self
            .0
            .membership(ext, request, MembershipAction::Kick)
            .await?)
    }

    async fn ban(&self, ext: &Extensions, request: Membership) -> RpcResult<Ack> {
        Ok(self
            .0
            .membership(ext, request, MembershipAction::Ban)
            .await?)
    }

    async fn members(&self, ext: &Extensions, space: SpaceId) -> RpcResult<Vec<MemberInfo>> {
        self.0.readable(&space, session(ext)?.did()).await?;
        let rows = self
            .0
            .store
            .members(space.as_str())
            .await
            .map_err(ApiError::from)?;
        let mut members = Vec::with_capacity(rows.len());
        for row in rows {
            members.push(MemberInfo {
                did: Did::parse(&row.did).map_err(ApiError::internal)?,
                state: row.state.as_str().to_owned(),
                home: row.home.map(|h| h.authority),
            });
        }
        Ok(members)
    }

    async fn post(&self, ext: &Extensions, beam: Beam, beam_ref: BeamRef) -> RpcResult<BeamPosted> {
        let api = &self.0;
        let user = session(ext)?.user()?;
        if &beam.author != user || &beam_ref.author != user {
            return Err(not_signer(&beam.author, user).into());
        }
        beam.check_rules().map_err(|e| malformed("beam", e))?;
        beam_ref
            .check_rules()
            .map_err(|e| malformed("beam_ref", e))?;
        if beam_ref.home != api.config.authority() {
            return Err(malformed(
                "beam_ref",
                format!("home must be this node, {}", api.config.authority()),
            )
            .into());
        }
        let id = beam.content_id().map_err(|e| malformed("beam", e))?;
        if beam_ref.beam != id {
            return Err(malformed(
                "beam_ref",
                format!("names beam {}, the beam's id is {id}", beam_ref.beam),
            )
            .into());
        }
        let ref_id = sign::verify_with_id(&beam_ref, &beam_ref.author)
            .map_err(|_| bad_signature("beam_ref"))?;
        // Posted together, the beam carries the ref's signature of the same message (§4.5), so
        // the check above covered it; a beam signed with an earlier ref is checked on its own.
        if !beam.signed_with(&id, &beam_ref, &ref_id) {
            beam.verify().map_err(|_| bad_signature("beam"))?;
        }
        api.blobs
            .check_attached(&beam)
            .await
            .map_err(|reason| malformed("beam", reason))?;
        let attached: Vec<_> = beam.attachments.iter().map(|a| a.blob).collect();
        let beam_path = beam_ref.beam_uri().path.to_string();
        let beam_uri = beam_ref.beam_uri().to_string();
        let space = beam_ref.space.clone();
        let ack = match api.whereabouts(&space).await? {
            Whereabouts::Here => api
                .sequencer
                .append(space, Payload::BeamRef(beam_ref), Some(beam), None)
                .await
                .map_err(ApiError::from)?,
            // The content stays here, with its author; only the ref goes to the sequencer.
            // (Here, the writer refuses a deleted beam itself, in the same commit group.)
            Whereabouts::Replica(_) => {
                if api
                    .store
                    .is_tombstoned(&id.to_string())
                    .await
                    .map_err(ApiError::from)?
                {
                    return Err(ApiError::new(
                        ErrorCode::BeamNotFound,
                        format!("beam {id} was deleted"),
                    )
                    .into());
                }
                api.sequencer
                    .store_beam(beam, space.clone())
                    .await
                    .map_err(ApiError::from)?;
                api.write(space, Payload::BeamRef(beam_ref)).await?
            }
            Whereabouts::Unknown => {
                return Err(ApiError::new(
                    ErrorCode::SpaceNotFound,
                    format!("no space {space} on this node"),
                )
                .into());
            }
        };
        for blob in &attached {
            api.blobs
                .attach(blob, &beam_path)
                .await
                .map_err(ApiError::internal)?;
        }
        Ok(BeamPosted {
            event_id: ack.event_id,
            seq: ack.seq,
            beam_uri,
        })
    }

    async fn events(
        &self,
        ext: &Extensions,
        space: SpaceId,
        since: u64,
        limit: u32,
        beams: Option<bool>,
    ) -> RpcResult<EventPage> {
        let api = &self.0;
        let row = api.readable(&space, session(ext)?.did()).await?;
        let limit = limit.clamp(1, api.config.limits.max_page);
        let rows = api
            .store
            .events_within(space.as_str(), since, limit, api.page_bytes())
            .await
            .map_err(ApiError::from)?;
        if beams == Some(true) {
            return Ok(api.page_with_beams(rows, row.head_seq).await?);
        }
        let mut events = Vec::with_capacity(rows.len());
        for row in rows {
            events.push(RawValue::from_string(row.json).map_err(ApiError::internal)?);
        }
        Ok(EventPage {
            events,
            head_seq: row.head_seq,
            beams: None,
        })
    }

    async fn health(&self, ext: &Extensions, space: SpaceId) -> RpcResult<SpaceHealth> {
        let api = &self.0;
        let user = session(ext)?.user()?;
        if space.owner() != user {
            return Err(ApiError::new(
                ErrorCode::Forbidden,
                format!("only the owner of {space} sees its delivery health"),
            )
            .into());
        }
        if !api.follow(&space).await? {
            return Err(match api.whereabouts(&space).await? {
                Whereabouts::Unknown => {
                    ApiError::new(ErrorCode::SpaceNotFound, format!("no space {space} here"))
                }
                _ => ApiError::new(
                    ErrorCode::NotSequencer,
                    format!("{space} is sequenced by another node; ask it"),
                ),
            }
            .into());
        }
        api.delivery.health(&space).ok_or_else(|| {
            ApiError::new(ErrorCode::SpaceNotFound, format!("no space {space} here")).into()
        })
    }

    async fn import(
        &self,
        ext: &Extensions,
        space: SpaceId,
        items: Vec<EventItem>,
    ) -> RpcResult<SpaceImported> {
        Ok(self.0.import(ext, space, items).await?)
    }
}

impl Api {
    /// A page of `rows` with the beams their refs name that this node holds (§6.3.13), each
    /// once. The caller may read the space, so it may read each of them (see
    /// [`super::feed`]). The page stops before its events and beams together would pass the
    /// page size; the first event is always in it, its beam only if it fits.
    async fn page_with_beams(
        &self,
        rows: Vec<EventRow>,
        head_seq: u64,
    ) -> Result<EventPage, ApiError> {
        let budget = self.page_bytes();
        let mut used = 0usize;
        let mut events = Vec::with_capacity(rows.len());
        let mut beams = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for row in rows {
            let beam = self
                .held_beam(&row)
                .await?
                .filter(|json| seen.insert(json.clone()));
            let beam_len = beam.as_ref().map_or(0, String::len);
            if used + row.json.len() + beam_len > budget {
                if !events.is_empty() {
                    break;
                }
                // The first event alone always fits (the store cut the page so); its beam
                // is left for `beam.get`.
                used += row.json.len();
                events.push(RawValue::from_string(row.json).map_err(ApiError::internal)?);
                continue;
            }
            used += row.json.len() + beam_len;
            events.push(RawValue::from_string(row.json).map_err(ApiError::internal)?);
            if let Some(json) = beam {
                beams.push(RawValue::from_string(json).map_err(ApiError::internal)?);
            }
        }
        Ok(EventPage {
            events,
            head_seq,
            beams: Some(beams),
        })
    }

    /// A join of a space this node holds may name the authority of its URI, as a client that
    /// joins by URI does; it must be the space's (its genesis's), or the client meant a space of
    /// the same id sequenced somewhere else.
    async fn check_sequencer_named(
        &self,
        space: &SpaceId,
        sequencer: Option<&str>,
    ) -> Result<(), ApiError> {
        let Some(named) = sequencer else {
            return Ok(());
        };
        let row = self.store.space(space.as_str()).await?;
        match row {
            Some(row) if row.authority != named => Err(malformed(
                "sequencer",
                format!(
                    "{space} held here is sequenced at {}, not at {named}",
                    row.authority
                ),
            )),
            _ => Ok(()),
        }
    }

    /// A join through this node, the joiner's home: here if this node sequences the space,
    /// else through the sequencer named by the space's URI, after which this node holds a
    /// verified replica of the log up to the join.
    async fn join(
        &self,
        ext: &Extensions,
        request: Membership,
        sequencer: Option<String>,
    ) -> Result<Ack, ApiError> {
        let user = session(ext)?.user()?;
        if request.action != MembershipAction::Join {
            return Err(malformed("request", "space.join takes a join"));
        }
        if &request.actor != user {
            return Err(not_signer(&request.actor, user));
        }
        request
            .check_rules()
            .map_err(|e| malformed("membership", e))?;
        let own_authority = self.config.authority();
        match &request.home {
            Some(home) if home.node == self.did && home.authority == own_authority => {}
            _ => {
                return Err(malformed(
                    "membership",
                    format!(
                        "a join through this node must name it as home: {} at {own_authority}",
                        self.did
                    ),
                ));
            }
        }
        let capacity = self.config.streams.capacity_kbps;
        if request.space.space_type() == SpaceType::Stream
            && let Some(declared) = request.home.as_ref().and_then(|h| h.capacity)
            && declared != capacity
        {
            return Err(malformed(
                "membership",
                format!("home.capacity is {declared}; this node declares {capacity} kbit/s"),
            ));
        }
        request.verify().map_err(|_| bad_signature("membership"))?;
        let space = request.space.clone();
        let payload = Payload::Membership(request);
        if !matches!(self.whereabouts(&space).await?, Whereabouts::Unknown) {
            self.check_sequencer_named(&space, sequencer.as_deref())
                .await?;
            return self.write(space, payload).await;
        }
        let Some(authority) = sequencer.filter(|a| *a != own_authority) else {
            return Err(ApiError::new(
                ErrorCode::SpaceNotFound,
                format!("no space {space} on this node; join it by its URI to reach its sequencer"),
            ));
        };
        // A space the operator removed is not replicated here again.
        if self.store.is_removed(space.as_str()).await? {
            return Err(ApiError::new(
                ErrorCode::SpaceNotFound,
                format!("{space} was removed from this node by its operator"),
            ));
        }
        northstar_protocol::address::check_authority(&authority)
            .map_err(|e| malformed("sequencer", e))?;
        let link = self
            .links
            .get(&authority)
            .await
            .map_err(super::unreachable)?;
        let sources = [authority.clone()];
        let ack = match self.submit(&authority, None, space.clone(), payload).await {
            Ok(ack) => ack,
            // Joined before, but the replica never arrived (the fetch after the join failed):
            // fetch it now, so joining again repairs it.
            Err(e) if e.code() == ErrorCode::AlreadyMember => {
                let fetched = self
                    .catch_up
                    .run(&space, &sources, Some(&link.did), None)
                    .await;
                if fetched.is_ok() {
                    tracing::info!(space = %space, "fetched the missing replica of a joined space");
                }
                return Err(e);
            }
            Err(e) => return Err(e),
        };
        self.catch_up
            .run(&space, &sources, Some(&link.did), Some(ack.seq))
            .await
            .map_err(|e| {
                ApiError::new(
                    ErrorCode::PeerUnreachable,
                    format!(
                        "joined, but the replica could not be fetched yet (join again to retry): {e}"
                    ),
                )
            })?;
        tracing::info!(space = %space, sequencer = %authority, "joined a remote space; replicating it");
        Ok(ack)
    }
}

/// What `admin remove-space` did.
#[derive(Debug)]
pub struct RemovedSpace {
    /// Whether this node sequenced the space (else it dropped its replica).
    pub sequenced_here: bool,
    /// For a space sequenced here, how many other member nodes it had.
    pub member_nodes: usize,
    /// How many of them acknowledged `fed.space_removed`.
    pub told: usize,
}

impl Api {
    /// Drop `space` from this node by the operator's decision: its log, members and refs go,
    /// and it is neither created nor replicated here again (spec §12).
    pub async fn remove_space(&self, space: &SpaceId) -> Result<RemovedSpace, ApiError> {
        let Some(row) = self.store.space(space.as_str()).await? else {
            return Err(ApiError::new(
                ErrorCode::SpaceNotFound,
                format!("no space {space} on this node"),
            ));
        };
        let sequenced_here = row.sequencer == self.did.as_str();
        // The member nodes to tell, read before the members go.
        let mut homes: Vec<String> = Vec::new();
        if sequenced_here {
            for member in self.store.members(space.as_str()).await? {
                if let Some(home) = member.home.filter(|h| h.node != self.did.as_str())
                    && !homes.contains(&home.authority)
                {
                    homes.push(home.authority);
                }
            }
        }
        self.sequencer.remove(space.clone()).await?;
        self.known_spaces
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(space);
        let mut told = 0;
        for authority in &homes {
            match self.tell_removed(authority, space).await {
                Ok(()) => told += 1,
                Err(e) => {
                    tracing::warn!(space = %space, node = %authority, error = %e.message(), "a member node was not told of the space's removal")
                }
            }
        }
        Ok(RemovedSpace {
            sequenced_here,
            member_nodes: homes.len(),
            told,
        })
    }

    /// `fed.space_removed` to the member node at `authority`.
    async fn tell_removed(&self, authority: &str, space: &SpaceId) -> Result<(), ApiError> {
        let link = self
            .links
            .get(authority)
            .await
            .map_err(super::unreachable)?;
        northstar_protocol::rpc::FedApiClient::space_removed(link.client.as_ref(), space.clone())
            .await
            .map(drop)
            .map_err(|e| super::relayed(crate::federation::LinkError::from_call(authority, e)))
    }
}
