//! The JSON-RPC methods (`spec/protocol.md` §6, §9).
//!
//! Handlers verify what the caller signed (in parallel, on any worker), check who may do what,
//! and hand writes to the single writer ([`crate::spaces::writer`]); a write into a space another
//! node sequences goes to that node over a federation link. [`ApiError`] is the one place where
//! failures become JSON-RPC error objects.
//!
//! - this file: shared state, errors, `node.*` and `auth.*`;
//! - `space`: `space.*` but subscriptions;
//! - `import`: `space.import`, a page of an exported log;
//! - `feed`: what a `space.subscribe` delivers (the transport, [`crate::connection`], serves it);
//! - `beam`: `beam.*`;
//! - `fed`: `fed.*`, what nodes ask each other;
//! - `stream`: `stream.info` (the transport serves the other `stream.*` methods).

mod beam;
mod blob;
mod edit;
mod fed;
pub mod feed;
mod import;
mod space;
mod stream;

use std::sync::Arc;

use jsonrpsee::Extensions;
use jsonrpsee::core::{RpcResult, async_trait};
use jsonrpsee::types::ErrorObjectOwned;
use northstar_protocol::Did;
use northstar_protocol::address::{SpaceId, SpaceType, SpaceUri};
use northstar_protocol::api::{Ack, Authenticated, ErrorCode, LimitsInfo, NodeInfo, SpaceInfo};
use northstar_protocol::rpc::{
    AuthApiServer, BeamApiServer, FedApiClient, FedApiServer, NodeApiServer, SpaceApiServer,
    StreamApiServer,
};
use northstar_protocol::wire::{
    AuthChallenge, AuthResponse, Membership, MembershipAction, Payload,
};
use tokio_util::task::TaskTracker;

use crate::auth::{AuthError, Authenticator, Session};
use crate::clock::now_ms;
use crate::config::Config;
use crate::federation::{LinkError, Links};
use crate::gossip::CatchUp;
use crate::hub::Hub;
use crate::spaces::replica::Verified;
use crate::spaces::rules::Refusal;
use crate::spaces::{SequenceError, SequencerHandle};
use crate::store::{SpaceRow, Store, StoreError};
use crate::streams::{StreamError, Streams};

/// A failure as the caller sees it: a stable code and a precise message.
#[derive(Debug)]
pub struct ApiError {
    code: ErrorCode,
    message: String,
}

impl ApiError {
    /// The message the caller sees.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The code the caller sees.
    pub fn code(&self) -> ErrorCode {
        self.code
    }

    /// A client-facing error.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    /// An internal fault: the caller gets a generic message, the log gets the whole chain.
    pub fn internal(error: impl std::error::Error + 'static) -> Self {
        tracing::error!(error = %crate::report::Causes(&error), "internal error");
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

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Refused { code, message } => ApiError::new(code, message),
            AuthError::Internal(e) => ApiError::internal(e),
        }
    }
}

impl From<AuthError> for ErrorObjectOwned {
    fn from(e: AuthError) -> Self {
        ApiError::from(e).into()
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
                    Refusal::NotHome | Refusal::ForeignBeam { .. } => ErrorCode::Forbidden,
                };
                Self::new(code, message)
            }
            SequenceError::SpaceNotFound(_) => Self::new(ErrorCode::SpaceNotFound, message),
            SequenceError::SpaceExists(_) => Self::new(ErrorCode::SpaceExists, message),
            SequenceError::BeamNotFound(_) => Self::new(ErrorCode::BeamNotFound, message),
            SequenceError::BeamDeleted(_) => Self::new(ErrorCode::BeamDeleted, message),
            SequenceError::ShuttingDown => Self::new(ErrorCode::ShuttingDown, message),
            SequenceError::Store(e) => Self::internal(e),
            SequenceError::Sign(e) => Self::internal(e),
        }
    }
}

impl From<StreamError> for ApiError {
    fn from(e: StreamError) -> Self {
        let message = e.to_string();
        let code = match e {
            StreamError::SpaceNotFound(_) => ErrorCode::SpaceNotFound,
            StreamError::NotAStream(_) => ErrorCode::NotAStream,
            StreamError::NotOwner { .. } => ErrorCode::Forbidden,
            StreamError::NotSequencer { .. } => ErrorCode::NotSequencer,
            StreamError::Malformed(_) | StreamError::Foreign(_) => ErrorCode::MalformedObject,
            StreamError::NotPublishing(_) => ErrorCode::NotPublishing,
            StreamError::FrameTooLarge { .. } => ErrorCode::FrameTooLarge,
            StreamError::BadSignature => ErrorCode::BadSignature,
            StreamError::FrameOrder { .. } => ErrorCode::FrameOrder,
            StreamError::FrameRate { .. } => ErrorCode::FrameRate,
            StreamError::ByteRate { .. } => ErrorCode::ByteRate,
            StreamError::Store(e) => return Self::internal(e),
        };
        Self::new(code, message)
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
    /// The node's key, to prove its identity to peers (`fed.prove`).
    pub node_key: northstar_protocol::Keypair,
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
    /// Links to other nodes.
    pub links: Arc<Links>,
    /// Live streams.
    pub streams: Arc<Streams>,
    /// Pulls missing events of replicas.
    pub catch_up: CatchUp,
    /// Background work a request starts but does not wait for (catch-ups after a gap).
    pub background: TaskTracker,
    /// Spaces with a catch-up under way that a request started (a gap to fill, a replica to
    /// refresh before a beam read is refused): at most one each.
    pub filling: Arc<std::sync::Mutex<std::collections::HashSet<SpaceId>>>,
    /// Where the spaces this node holds live, so a post or a push needs no database read to
    /// learn it. A space's sequencer and its authority are written once, with the space's
    /// row, and never change, so an entry never goes stale; the map is cleared when it
    /// reaches [`MAX_KNOWN_SPACES`].
    pub known_spaces: std::sync::Mutex<std::collections::HashMap<SpaceId, Whereabouts>>,
    /// When the node started, and what its status page counted last.
    pub status: crate::status::Status,
    /// The node's metrics.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Delivery health of the spaces sequenced here, and the heads reported to sequencers.
    pub delivery: Arc<crate::delivery::Delivery>,
    /// Blobs: files attached to beams.
    pub blobs: Arc<crate::blobs::Blobs>,
    /// Held by `beam.edit` from reading a beam's edits until the writer has stored the new
    /// one, so each edit is checked against every edit taken before it (edits are rare; one
    /// lock for the node keeps it simple).
    pub edit_order: tokio::sync::Mutex<()>,
}

/// The most entries of [`Api::known_spaces`].
pub const MAX_KNOWN_SPACES: usize = 4096;

/// Where a space lives, from this node's point of view.
#[derive(Debug, Clone)]
pub enum Whereabouts {
    /// This node sequences it.
    Here,
    /// Another node sequences it and this node holds a replica.
    Replica(Arc<Sequencer>),
    /// This node does not know it.
    Unknown,
}

/// A space this node holds a replica of, and the node that sequences it.
#[derive(Debug)]
pub struct Sequencer {
    /// Its DID, which signs the space's events.
    pub did: Did,
    /// Its authority (`host:port`), where the space's log is pulled from.
    pub authority: String,
    /// The space's events pushed here and verified lately, so that the copy the second
    /// parent pushes is not verified again. Locked while a push is verified.
    pub pushed: tokio::sync::Mutex<Verified>,
}

/// Build the module holding every method.
pub fn methods(
    api: Arc<Api>,
) -> Result<jsonrpsee::RpcModule<()>, jsonrpsee::core::RegisterMethodError> {
    let mut module = jsonrpsee::RpcModule::new(());
    module.merge(NodeApiServer::into_rpc(Handler(api.clone())))?;
    module.merge(AuthApiServer::into_rpc(Handler(api.clone())))?;
    module.merge(SpaceApiServer::into_rpc(Handler(api.clone())))?;
    module.merge(BeamApiServer::into_rpc(Handler(api.clone())))?;
    module.merge(FedApiServer::into_rpc(Handler(api.clone())))?;
    module.merge(northstar_protocol::rpc::BlobApiServer::into_rpc(Handler(
        api.clone(),
    )))?;
    module.merge(StreamApiServer::into_rpc(Handler(api)))?;
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
                // A member, or a member's home node (which replicates the dm for it).
                Some(did) => self.store.may_read_dm(space.as_str(), did.as_str()).await?,
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
        self.write(space, Payload::Membership(request)).await
    }

    /// How many bytes of events or beams one page may carry: the message limit, less room for
    /// the response's own framing.
    fn page_bytes(&self) -> usize {
        (self.config.limits.max_frame_bytes as usize).saturating_sub(4096)
    }

    async fn whereabouts(&self, space: &SpaceId) -> Result<Whereabouts, ApiError> {
        let lock = || self.known_spaces.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(known) = lock().get(space) {
            return Ok(known.clone());
        }
        let found = match self.store.space(space.as_str()).await? {
            Some(row) if row.sequencer == self.did.as_str() => Whereabouts::Here,
            Some(row) => Whereabouts::Replica(Arc::new(Sequencer {
                did: Did::parse(&row.sequencer).map_err(|e| {
                    ApiError::internal(StoreError::Corrupt {
                        table: "spaces",
                        reason: e.to_string(),
                    })
                })?,
                authority: row.authority,
                pushed: tokio::sync::Mutex::default(),
            })),
            // Not remembered: the space may be created or joined at any moment.
            None => return Ok(Whereabouts::Unknown),
        };
        let mut known = lock();
        if known.len() >= MAX_KNOWN_SPACES {
            known.clear();
        }
        known.insert(space.clone(), found.clone());
        Ok(found)
    }

    /// Append a verified payload signed by one of this node's users: here if this node
    /// sequences the space, else through its sequencer; then wait until the replica here holds
    /// the new event, so the user reads what they wrote.
    async fn write(&self, space: SpaceId, payload: Payload) -> Result<Ack, ApiError> {
        match self.whereabouts(&space).await? {
            Whereabouts::Here => Ok(self.sequencer.append(space, payload, None, None).await?),
            Whereabouts::Replica(at) => {
                let ack = self
                    .submit(&at.authority, Some(&at.did), space.clone(), payload)
                    .await?;
                self.settle(&space, &at.authority, ack.seq).await;
                Ok(ack)
            }
            Whereabouts::Unknown => Err(ApiError::new(
                ErrorCode::SpaceNotFound,
                format!("no space {space} on this node"),
            )),
        }
    }

    /// Ask the sequencer at `authority` (which must prove to be `expected`, when known) to
    /// append `payload`.
    async fn submit(
        &self,
        authority: &str,
        expected: Option<&Did>,
        space: SpaceId,
        payload: Payload,
    ) -> Result<Ack, ApiError> {
        let link = self.links.get(authority).await.map_err(unreachable)?;
        if let Some(expected) = expected.filter(|d| **d != link.did) {
            return Err(ApiError::new(
                ErrorCode::PeerUnreachable,
                format!(
                    "{authority} is {}, not the space's sequencer {expected}",
                    link.did
                ),
            ));
        }
        match FedApiClient::submit(link.client.as_ref(), space, payload).await {
            Ok(ack) => Ok(ack),
            Err(e) => {
                let e = LinkError::from_call(authority, e);
                if matches!(e, LinkError::Transport { .. }) {
                    self.links.drop_link(authority).await;
                }
                Err(relayed(e))
            }
        }
    }

    /// Pull the replica of `space` up to `seq` from `authority`; if that fails, the push or the
    /// next sync brings it, so this only logs.
    async fn settle(&self, space: &SpaceId, authority: &str, seq: u64) {
        let sources = [authority.to_owned()];
        if let Err(e) = self.catch_up.run(space, &sources, None, Some(seq)).await {
            tracing::debug!(space = %space, error = %crate::report::Causes(&e), "replica not yet at the acknowledged seq");
        }
    }
}

/// A peer that could not be reached.
fn unreachable(e: LinkError) -> ApiError {
    ApiError::new(ErrorCode::PeerUnreachable, e.to_string())
}

/// A remote node's refusal, passed on with its code when it is one of ours.
fn relayed(e: LinkError) -> ApiError {
    match e {
        LinkError::Refused { code, message, .. } => ApiError::new(
            ErrorCode::from_code(code).unwrap_or(ErrorCode::Internal),
            message,
        ),
        other => unreachable(other),
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
            protocol: northstar_protocol::PROTOCOL_VERSION,
            public_url: c.origin(),
            authority: c.authority(),
            fanout: c.fanout,
            stream_capacity: c.streams.capacity_kbps,
            limits: LimitsInfo {
                max_frame_bytes: l.max_frame_bytes,
                max_batch: l.max_batch,
                max_subscriptions_per_connection: l.max_subscriptions_per_connection,
                requests_per_second: l.requests_per_second,
                request_burst: l.request_burst,
                requests_per_second_per_ip: l.requests_per_second_per_ip,
                request_burst_per_ip: l.request_burst_per_ip,
                requests_per_second_per_did: l.requests_per_second_per_did,
                request_burst_per_did: l.request_burst_per_did,
                auth_timeout_secs: l.auth_timeout_secs,
                challenge_ttl_secs: l.challenge_ttl_secs,
                subscriber_queue: l.subscriber_queue,
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
        let answered = self.0.auth.respond(session, &response, now_ms());
        let outcome = match &answered {
            Ok(_) => "ok",
            Err(AuthError::Refused { code, .. }) => code.name(),
            Err(AuthError::Internal(_)) => "internal",
        };
        self.0
            .metrics
            .auth
            .get_or_create(&crate::metrics::OutcomeLabel { outcome })
            .inc();
        let did = answered?;
        tracing::debug!(conn = session.id, did = %did, "authenticated");
        self.0.auth.signed_in(&did, session);
        self.0.auth.access().seen(&did, now_ms()).await;
        Ok(Authenticated { did })
    }
}
