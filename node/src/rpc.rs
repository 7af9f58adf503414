//! The JSON-RPC methods: `node.*`, `auth.*`, `space.*`, `beam.*` (`spec/protocol.md` §6).
//!
//! Handlers verify what the caller signed (in parallel, on any worker), check who may do what,
//! and hand writes to the single writer ([`crate::sequencer`]). [`ApiError`] is the one place
//! where failures become JSON-RPC error objects.

use std::sync::Arc;

use jsonrpsee::core::{RpcResult, SubscriptionResult, async_trait};
use jsonrpsee::types::ErrorObjectOwned;
use jsonrpsee::{Extensions, PendingSubscriptionSink, SendTimeoutError, SubscriptionMessage};
use northstar_protocol::address::{BeamPath, SpaceId, SpaceType, SpaceUri};
use northstar_protocol::api::{
    Ack, Authenticated, BeamDeleted, BeamPosted, ErrorCode, EventPage, LimitsInfo, MemberInfo,
    NodeInfo, SpaceInfo,
};
use northstar_protocol::rpc::{AuthApiServer, BeamApiServer, NodeApiServer, SpaceApiServer};
use northstar_protocol::wire::{
    AuthChallenge, AuthResponse, Beam, BeamRef, Membership, MembershipAction, Payload,
    SpaceGenesis, Tombstone,
};
use northstar_protocol::{Did, Signed};
use serde_json::value::RawValue;
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;

use crate::auth::{Authenticator, Session};
use crate::config::Config;
use crate::hub::{Hub, LiveEvent};
use crate::sequencer::{SequenceError, SequencerHandle, now_ms};
use crate::space::Refusal;
use crate::store::{SpaceRow, Store, StoreError};

/// A failure as the caller sees it: a stable code and a precise message.
#[derive(Debug)]
pub struct ApiError {
    code: ErrorCode,
    message: String,
}

impl ApiError {
    /// A client-facing error.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    /// An internal fault: the caller gets a generic message, the log gets the whole chain.
    pub fn internal(error: impl std::error::Error) -> Self {
        let mut chain = error.to_string();
        let mut source = error.source();
        while let Some(cause) = source {
            chain.push_str(": ");
            chain.push_str(&cause.to_string());
            source = cause.source();
        }
        tracing::error!(error = %chain, "internal error");
        Self::new(
            ErrorCode::Internal,
            "internal error; the node's log has the details",
        )
    }
}

impl From<ApiError> for ErrorObjectOwned {
    fn from(e: ApiError) -> Self {
        ErrorObjectOwned::owned(e.code.code(), e.message, Some(e.code.name()))
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        Self::internal(e)
    }
}

impl From<SequenceError> for ApiError {
    fn from(e: SequenceError) -> Self {
        let message = e.to_string();
        match e {
            SequenceError::Refused(r) => {
                let code = match *r {
                    Refusal::NotMember(_) => ErrorCode::NotMember,
                    Refusal::Forbidden(_) | Refusal::SecondGenesis => ErrorCode::Forbidden,
                    Refusal::InviteRequired => ErrorCode::InviteRequired,
                    Refusal::Banned(_) => ErrorCode::Banned,
                    Refusal::AlreadyMember(_) => ErrorCode::AlreadyMember,
                };
                Self::new(code, message)
            }
            SequenceError::SpaceNotFound(_) => Self::new(ErrorCode::SpaceNotFound, message),
            SequenceError::SpaceExists(_) => Self::new(ErrorCode::SpaceExists, message),
            SequenceError::BeamNotFound(_) => Self::new(ErrorCode::BeamNotFound, message),
            SequenceError::ShuttingDown => Self::new(ErrorCode::ShuttingDown, message),
            SequenceError::Store(e) => Self::internal(e),
            SequenceError::Sign(e) => Self::internal(e),
        }
    }
}

fn malformed(what: &str, e: impl std::fmt::Display) -> ApiError {
    ApiError::new(ErrorCode::MalformedObject, format!("{what}: {e}"))
}

fn bad_signature(what: &str) -> ApiError {
    ApiError::new(
        ErrorCode::BadSignature,
        format!("the {what}'s signature does not verify"),
    )
}

/// The state every handler shares.
#[derive(Debug)]
pub struct Api {
    /// The node's DID.
    pub did: Did,
    /// The configuration.
    pub config: Config,
    /// The handshake.
    pub auth: Authenticator,
    /// The database.
    pub store: Store,
    /// The writer.
    pub sequencer: SequencerHandle,
    /// Live fan-out.
    pub hub: Arc<Hub>,
}

/// Build the module holding every method.
pub fn methods(
    api: Arc<Api>,
) -> Result<jsonrpsee::RpcModule<()>, jsonrpsee::core::RegisterMethodError> {
    let mut module = jsonrpsee::RpcModule::new(());
    module.merge(NodeApiServer::into_rpc(Handler(api.clone())))?;
    module.merge(AuthApiServer::into_rpc(Handler(api.clone())))?;
    module.merge(SpaceApiServer::into_rpc(Handler(api.clone())))?;
    module.merge(BeamApiServer::into_rpc(Handler(api)))?;
    Ok(module)
}

/// The handlers; a newtype so each generated server trait can be implemented once.
#[derive(Debug, Clone)]
pub struct Handler(Arc<Api>);

fn session(ext: &Extensions) -> Result<&Arc<Session>, ApiError> {
    ext.get::<Arc<Session>>()
        .ok_or_else(|| ApiError::internal(std::io::Error::other("connection has no session")))
}

impl Api {
    fn space_info(&self, row: &SpaceRow) -> Result<SpaceInfo, ApiError> {
        let corrupt = |e: &dyn std::fmt::Display| {
            ApiError::internal(StoreError::Corrupt {
                table: "spaces",
                reason: e.to_string(),
            })
        };
        let id = SpaceId::parse(&row.id).map_err(|e| corrupt(&e))?;
        Ok(SpaceInfo {
            uri: SpaceUri {
                authority: row.authority.clone(),
                space: id.clone(),
            }
            .to_string(),
            space_type: id.space_type(),
            owner: id.owner().clone(),
            id,
            name: row.name.clone(),
            sequencer: Did::parse(&row.sequencer).map_err(|e| corrupt(&e))?,
            head_seq: row.head_seq,
        })
    }

    /// The space, if `reader` may read it: anyone may read a channel or stream, only members a dm.
    async fn readable(&self, space: &SpaceId, reader: Option<&Did>) -> Result<SpaceRow, ApiError> {
        let not_found = || {
            ApiError::new(
                ErrorCode::SpaceNotFound,
                format!("no space {space} on this node"),
            )
        };
        let row = self
            .store
            .space(space.as_str())
            .await?
            .ok_or_else(not_found)?;
        if space.space_type() == SpaceType::Dm {
            let member = match reader {
                Some(did) => self
                    .store
                    .members(space.as_str())
                    .await?
                    .iter()
                    .any(|(d, s)| d == did.as_str() && *s == crate::store::MemberState::Member),
                None => false,
            };
            if !member {
                return Err(ApiError::new(
                    ErrorCode::NotMember,
                    format!("{space} is a dm; only its members may read it"),
                ));
            }
        }
        Ok(row)
    }

    async fn membership(
        &self,
        ext: &Extensions,
        request: Membership,
        action: MembershipAction,
    ) -> Result<Ack, ApiError> {
        let user = session(ext)?.user()?;
        if request.action != action {
            return Err(malformed(
                "request",
                format!(
                    "action is {}, this method takes {}",
                    request.action.as_str(),
                    action.as_str()
                ),
            ));
        }
        if &request.actor != user {
            return Err(not_signer(&request.actor, user));
        }
        request
            .check_rules()
            .map_err(|e| malformed("membership", e))?;
        request.verify().map_err(|_| bad_signature("membership"))?;
        let space = request.space.clone();
        Ok(self
            .sequencer
            .append(space, Payload::Membership(request), None)
            .await?)
    }
}

fn not_signer(signer: &Did, user: &Did) -> ApiError {
    ApiError::new(
        ErrorCode::NotSigner,
        format!("signed by {signer}, but this connection is {user}"),
    )
}

#[async_trait]
impl NodeApiServer for Handler {
    async fn info(&self) -> RpcResult<NodeInfo> {
        let c = &self.0.config;
        let l = &c.limits;
        Ok(NodeInfo {
            did: self.0.did.clone(),
            version: format!("northstar/{}", env!("CARGO_PKG_VERSION")),
            public_url: c.origin(),
            authority: c.authority(),
            limits: LimitsInfo {
                max_frame_bytes: l.max_frame_bytes,
                max_batch: l.max_batch,
                max_subscriptions_per_connection: l.max_subscriptions_per_connection,
                requests_per_second: l.requests_per_second,
                auth_timeout_secs: l.auth_timeout_secs,
                max_page: l.max_page,
            },
        })
    }
}

#[async_trait]
impl AuthApiServer for Handler {
    async fn challenge(&self, ext: &Extensions) -> RpcResult<AuthChallenge> {
        Ok(self.0.auth.challenge(session(ext)?, now_ms())?)
    }

    async fn respond(&self, ext: &Extensions, response: AuthResponse) -> RpcResult<Authenticated> {
        let session = session(ext)?;
        let did = self.0.auth.respond(session, &response, now_ms())?;
        tracing::debug!(conn = session.id, did = %did, "authenticated");
        Ok(Authenticated { did })
    }
}

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
        genesis.verify().map_err(|_| bad_signature("genesis"))?;
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

    async fn join(&self, ext: &Extensions, request: Membership) -> RpcResult<Ack> {
        Ok(self
            .0
            .membership(ext, request, MembershipAction::Join)
            .await?)
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
        for (did, state) in rows {
            members.push(MemberInfo {
                did: Did::parse(&did).map_err(ApiError::internal)?,
                state: state.as_str().to_owned(),
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
        if api
            .store
            .is_tombstoned(&id.to_string())
            .await
            .map_err(ApiError::from)?
        {
            return Err(
                ApiError::new(ErrorCode::BeamNotFound, format!("beam {id} was deleted")).into(),
            );
        }
        beam.verify().map_err(|_| bad_signature("beam"))?;
        beam_ref.verify().map_err(|_| bad_signature("beam_ref"))?;
        let beam_uri = beam_ref.beam_uri().to_string();
        let space = beam_ref.space.clone();
        let ack = api
            .sequencer
            .append(space, Payload::BeamRef(beam_ref), Some(beam))
            .await
            .map_err(ApiError::from)?;
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
    ) -> RpcResult<EventPage> {
        let api = &self.0;
        let row = api.readable(&space, session(ext)?.did()).await?;
        let limit = limit.clamp(1, api.config.limits.max_page);
        let rows = api
            .store
            .events(space.as_str(), since, limit)
            .await
            .map_err(ApiError::from)?;
        let mut events = Vec::with_capacity(rows.len());
        for row in rows {
            events.push(RawValue::from_string(row.json).map_err(ApiError::internal)?);
        }
        Ok(EventPage {
            events,
            head_seq: row.head_seq,
        })
    }

    async fn subscribe_events(
        &self,
        pending: PendingSubscriptionSink,
        ext: &Extensions,
        space: SpaceId,
        since: u64,
    ) -> SubscriptionResult {
        let api = self.0.clone();
        let reader = session(ext).ok().and_then(|s| s.did().cloned());
        if let Err(e) = api.readable(&space, reader.as_ref()).await {
            pending.reject(ErrorObjectOwned::from(e)).await;
            return Ok(());
        }
        // Subscribe before reading the backlog, so nothing committed in between is missed.
        let live = api.hub.subscribe(space.as_str());
        let sink = pending.accept().await?;
        let watch = reader.filter(|_| space.space_type() == SpaceType::Dm);
        let feed = Feed {
            api,
            sink,
            space,
            cursor: since,
            watch,
        };
        feed.run(live).await.map_err(Into::into)
    }
}

/// How long a notification may wait for room in the connection's outgoing queue before the
/// subscriber counts as too slow.
const SEND_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// One subscription's delivery: backlog from the store, then live events from the hub.
struct Feed {
    api: Arc<Api>,
    sink: jsonrpsee::SubscriptionSink,
    space: SpaceId,
    cursor: u64,
    /// For a dm: the subscriber, whose removal ends the subscription.
    watch: Option<Did>,
}

impl Feed {
    async fn run(mut self, mut live: broadcast::Receiver<Arc<LiveEvent>>) -> Result<(), String> {
        self.catch_up().await?;
        loop {
            let event = tokio::select! {
                () = self.sink.closed() => return Ok(()),
                event = live.recv() => event,
            };
            match event {
                Ok(event) if event.seq <= self.cursor => {}
                Ok(event) if event.seq == self.cursor + 1 => {
                    self.send(event.json.clone()).await?;
                    self.cursor = event.seq;
                    if self.watch.is_some() && event.removes == self.watch {
                        return Err(format!(
                            "{}: the subscriber is no longer a member of this dm",
                            ErrorCode::NotMember.name()
                        ));
                    }
                }
                // A hole: events committed after we subscribed but before the backlog read
                // ended. Fill it from the store.
                Ok(_) => self.catch_up().await?,
                Err(RecvError::Lagged(_)) => {
                    return Err(format!(
                        "{}: fell behind by more than {} events; resume from seq {}",
                        ErrorCode::SlowSubscriber.name(),
                        self.api.config.limits.subscriber_queue,
                        self.cursor
                    ));
                }
                Err(RecvError::Closed) => return Ok(()),
            }
        }
    }

    /// Send every stored event after the cursor.
    async fn catch_up(&mut self) -> Result<(), String> {
        let page = self.api.config.limits.max_page;
        loop {
            let rows = self
                .api
                .store
                .events(self.space.as_str(), self.cursor, page)
                .await
                .map_err(|e| internal_text(&e))?;
            let full = rows.len() == page as usize;
            for row in rows {
                let raw = RawValue::from_string(row.json).map_err(|e| internal_text(&e))?;
                self.send(raw).await?;
                self.cursor = row.seq;
            }
            if !full {
                return Ok(());
            }
        }
    }

    /// Queue one notification, waiting at most [`SEND_TIMEOUT`] for room: the backlog flows at
    /// the subscriber's pace, and one that stops reading is cut off.
    async fn send(&mut self, raw: Box<RawValue>) -> Result<(), String> {
        let message = SubscriptionMessage::from(raw);
        match self.sink.send_timeout(message, SEND_TIMEOUT).await {
            Ok(()) => Ok(()),
            Err(SendTimeoutError::Timeout(_)) => Err(format!(
                "{}: the connection did not read for {} s; resume from seq {}",
                ErrorCode::SlowSubscriber.name(),
                SEND_TIMEOUT.as_secs(),
                self.cursor
            )),
            Err(SendTimeoutError::Closed(_)) => Err("the subscriber went away".to_owned()),
        }
    }
}

/// The text a subscription ends with after an internal fault: generic, with the details logged.
fn internal_text(e: &dyn std::fmt::Display) -> String {
    tracing::error!(error = %e, "subscription failed");
    format!(
        "{}: the node failed; resume from the last seq received",
        ErrorCode::Internal.name()
    )
}

#[async_trait]
impl BeamApiServer for Handler {
    async fn get(&self, _ext: &Extensions, path: String) -> RpcResult<Beam> {
        let parsed = BeamPath::parse(&path).map_err(|e| malformed("path", e))?;
        let row = self
            .0
            .store
            .beam(&parsed.to_string())
            .await
            .map_err(ApiError::from)?
            .ok_or_else(|| ApiError::new(ErrorCode::BeamNotFound, format!("no beam at {path}")))?;
        Ok(serde_json::from_str(&row.json).map_err(ApiError::internal)?)
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
            .beams_by_author(author.as_str(), before, limit)
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
        let path = BeamPath::new(&tombstone.author, tombstone.beam);
        let tombstones = self
            .0
            .sequencer
            .delete(tombstone, path)
            .await
            .map_err(ApiError::from)?;
        Ok(BeamDeleted { tombstones })
    }
}
