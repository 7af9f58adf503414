//! `fed.*`: what nodes ask each other (`spec/protocol.md` §9).

use std::collections::HashMap;

use jsonrpsee::Extensions;
use jsonrpsee::core::{RpcResult, async_trait};
use northstar_protocol::Did;
use northstar_protocol::address::SpaceId;
use northstar_protocol::api::{Ack, ErrorCode, HeadReport, SpaceReceipt};
use northstar_protocol::rpc::FedApiServer;
use northstar_protocol::wire::{AuthChallenge, AuthResponse, Event, Home, Payload};

use super::{ApiError, Handler, Whereabouts, bad_signature, malformed, session};
use crate::delivery::MAX_HEADS;
use crate::spaces::replica::verify_pushed_once;

/// The most events one `fed.push` may carry: few enough that a push of one more still fits in
/// a message of the default size, so the count limit is the one a peer meets. (The forwarder
/// sends at most 32.)
const MAX_PUSH: usize = 64;

#[async_trait]
impl FedApiServer for Handler {
    async fn prove(&self, ext: &Extensions, challenge: AuthChallenge) -> RpcResult<AuthResponse> {
        let caller = session(ext)?.user()?;
        // Answer only the caller's own challenge, so no one can relay another node's challenge
        // through us and pass as us there.
        if &challenge.node != caller {
            return Err(ApiError::new(
                ErrorCode::Forbidden,
                "fed.prove answers only a challenge issued by the caller's own DID",
            )
            .into());
        }
        challenge.verify().map_err(|_| bad_signature("challenge"))?;
        challenge
            .check_rules()
            .map_err(|e| malformed("challenge", e))?;
        Ok(AuthResponse::answer(&self.0.node_key, challenge).map_err(ApiError::internal)?)
    }

    async fn submit(&self, ext: &Extensions, space: SpaceId, payload: Payload) -> RpcResult<Ack> {
        let via = session(ext)?.user()?.clone();
        match &payload {
            Payload::Create(_) => {
                return Err(malformed("payload", "a genesis is sent with space.create").into());
            }
            Payload::Membership(m) => m.check_rules().map_err(|e| malformed("membership", e))?,
            Payload::BeamRef(r) => r.check_rules().map_err(|e| malformed("beam_ref", e))?,
            Payload::Tombstone(_) => {}
            Payload::Edit(e) => e.check_rules().map_err(|e| malformed("edit", e))?,
        }
        if payload.space().is_some_and(|s| *s != space) {
            return Err(malformed("payload", "it names another space").into());
        }
        // By its signer: a home node's removal of a banned author's beam still goes through.
        if self.0.auth.access().is_banned(payload.signer()) {
            return Err(ApiError::new(
                ErrorCode::Banned,
                format!(
                    "{} is banned from this node by its operator",
                    payload.signer()
                ),
            )
            .into());
        }
        payload.verify().map_err(|_| bad_signature("payload"))?;
        Ok(self
            .0
            .sequencer
            .append(space, payload, None, Some(via))
            .await
            .map_err(ApiError::from)?)
    }

    async fn push(&self, ext: &Extensions, events: Vec<Event>) -> RpcResult<u32> {
        let api = &self.0;
        let from = session(ext)?.user()?.clone();
        if events.len() > MAX_PUSH {
            return Err(ApiError::new(
                ErrorCode::TooLarge,
                format!("at most {MAX_PUSH} events per push"),
            )
            .into());
        }
        let mut by_space: HashMap<SpaceId, Vec<Event>> = HashMap::new();
        for event in events {
            by_space.entry(event.space.clone()).or_default().push(event);
        }
        let mut accepted = 0;
        for (space, events) in by_space {
            // Only replicas this node holds; anything else is not ours to store.
            let Whereabouts::Replica(at) = api.whereabouts(&space).await? else {
                continue;
            };
            let last = events.iter().map(|e| e.seq).max();
            let checked = {
                let mut pushed = at.pushed.lock().await;
                verify_pushed_once(events, &at.did, &mut pushed)
            };
            let events = match checked {
                Ok(events) => events,
                Err(e) => {
                    tracing::warn!(space = %space, from = %from, error = %crate::report::Causes(&e), "refused a pushed event that does not verify");
                    return Err(ApiError::new(ErrorCode::BadSignature, e.to_string()).into());
                }
            };
            let outcome = api
                .sequencer
                .replicate_identified(events, false)
                .await
                .map_err(ApiError::from)?;
            accepted += outcome.accepted;
            if let Some(reason) = &outcome.refused {
                tracing::warn!(space = %space, from = %from, reason = %reason, "refused pushed events");
                return Err(ApiError::new(ErrorCode::MalformedObject, reason.clone()).into());
            }
            if outcome.gap {
                api.fill_gap(space, at.authority.clone());
            } else if let Some(last) = last {
                // Committed, with everything before it: tell the sequencer (§9.9).
                api.delivery.held(
                    &space,
                    last,
                    Home::new(at.did.clone(), at.authority.clone()),
                );
            }
        }
        Ok(accepted)
    }

    async fn heads(&self, ext: &Extensions, heads: Vec<HeadReport>) -> RpcResult<u32> {
        let from = session(ext)?.user()?.clone();
        if heads.len() > MAX_HEADS {
            return Err(ApiError::new(
                ErrorCode::TooLarge,
                format!("at most {MAX_HEADS} heads per report"),
            )
            .into());
        }
        let api = &self.0;
        for head in &heads {
            api.follow(&head.space).await?;
        }
        Ok(api.delivery.report(&from, &heads))
    }

    async fn receipts(
        &self,
        ext: &Extensions,
        space: SpaceId,
        seq: u64,
    ) -> RpcResult<SpaceReceipt> {
        let from = session(ext)?.user()?.clone();
        let api = &self.0;
        if !api.follow(&space).await? {
            return Err(ApiError::new(
                ErrorCode::NotSequencer,
                format!("{space} is not sequenced by this node"),
            )
            .into());
        }
        if !api.delivery.is_member_node(&space, &from) {
            return Err(ApiError::new(
                ErrorCode::Forbidden,
                format!("{from} is not a member node of {space}"),
            )
            .into());
        }
        api.delivery.receipt(&space, seq).ok_or_else(|| {
            ApiError::new(ErrorCode::SpaceNotFound, format!("no space {space} here")).into()
        })
    }

    async fn space_removed(&self, ext: &Extensions, space: SpaceId) -> RpcResult<bool> {
        let caller = session(ext)?.user()?.clone();
        Ok(self.0.replica_removed(&caller, &space).await?)
    }
}

impl super::Api {
    /// Make sure delivery health follows `space` if this node sequences it, loading its tree
    /// and head from the store the first time; false if another node sequences it.
    pub(crate) async fn follow(&self, space: &SpaceId) -> Result<bool, ApiError> {
        if !matches!(self.whereabouts(space).await?, Whereabouts::Here) {
            return Ok(false);
        }
        if self.delivery.follows(space) {
            return Ok(true);
        }
        let Some(state) = crate::spaces::load_state(&self.store, space).await? else {
            return Ok(false);
        };
        let at = self
            .store
            .event(space.as_str(), state.head_seq)
            .await?
            .and_then(|row| {
                #[derive(serde::Deserialize)]
                struct Sequenced {
                    timestamp: u64,
                }
                // Only the time is wanted here; a row that lacks one was checked when stored.
                serde_json::from_str::<Sequenced>(&row.json).ok()
            })
            .map_or(0, |e| e.timestamp);
        self.delivery
            .follow(space, state.tree_nodes(), state.head_seq, at);
        Ok(true)
    }

    /// `fed.space_removed` from `caller`: drop the replica of `space` if `caller` sequences it.
    async fn replica_removed(&self, caller: &Did, space: &SpaceId) -> Result<bool, ApiError> {
        match self.whereabouts(space).await? {
            Whereabouts::Replica(at) if at.did == *caller => {
                self.remove_space(space).await?;
                tracing::info!(space = %space, sequencer = %caller, "the sequencer removed a space; replica dropped");
                Ok(true)
            }
            Whereabouts::Replica(_) | Whereabouts::Here => Err(ApiError::new(
                ErrorCode::Forbidden,
                format!("only the sequencer of {space} may say it was removed"),
            )),
            Whereabouts::Unknown => Ok(false),
        }
    }

    /// Pull what a push skipped over, in the background: the push itself is answered now.
    /// At most one such catch-up runs per space, however many gapped pushes arrive.
    fn fill_gap(&self, space: SpaceId, sequencer: String) {
        if !self.start_filling(&space) {
            return;
        }
        let catch_up = self.catch_up.clone();
        let filling = self.filling.clone();
        self.background.spawn(async move {
            if let Err(e) = catch_up.run(&space, &[sequencer], None, None).await {
                tracing::debug!(space = %space, error = %crate::report::Causes(&e), "gap not filled yet; the next sync retries");
            }
            filling
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&space);
        });
    }

    /// Claim the one pull of `space` allowed at a time; false if one runs already.
    pub(super) fn start_filling(&self, space: &SpaceId) -> bool {
        self.filling
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(space.clone())
    }

    /// End the pull [`Api::start_filling`] claimed.
    pub(super) fn stop_filling(&self, space: &SpaceId) {
        self.filling
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(space);
    }
}
