//! [`Client`]: one WebSocket connection to a node, authenticated as the client's key (or
//! anonymous), with a typed method for each JSON-RPC method of `northstar_protocol::rpc`.
//!
//! Requests are signed here, with the client's key; answers are verified here, before the app
//! sees them (see [`crate::verify`]). Each method's doc names its wire method and what it needs:
//! "key" methods fail with [`SdkError::Anonymous`] on an anonymous client.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonrpsee::core::ClientError;
use jsonrpsee::core::client::SubscriptionClientT;
use jsonrpsee::rpc_params;
use jsonrpsee::ws_client::{WsClient, WsClientBuilder};
use northstar_protocol::address::{SpaceId, SpaceType, SpaceUri, author_hash};
use northstar_protocol::api::{
    Ack, Authenticated, BeamDeleted, BeamEdited, BeamHistory, BeamPosted, BeamReceipts, EventItem,
    EventPage, MemberInfo, NodeInfo, SpaceHealth, SpaceInfo, StreamInfo,
};
use northstar_protocol::method::{
    AUTH_CHALLENGE, AUTH_RESPOND, BEAM_DELETE, BEAM_EDIT, BEAM_GET, BEAM_HISTORY, BEAM_LIST,
    BEAM_RECEIPTS, NODE_INFO, SPACE_BAN, SPACE_CREATE, SPACE_EVENTS, SPACE_GET, SPACE_HEALTH,
    SPACE_INVITE, SPACE_JOIN, SPACE_KICK, SPACE_LEAVE, SPACE_LIST, SPACE_MEMBERS, SPACE_POST,
    SPACE_SUBSCRIBE, SPACE_UNSUBSCRIBE, STREAM_INFO, STREAM_PUBLISH,
};
use northstar_protocol::rpc::{
    AuthApiClient, BeamApiClient, NodeApiClient, SpaceApiClient, SpaceEventsApiClient,
    StreamApiClient,
};
use northstar_protocol::wire::{
    AuthChallenge, AuthResponse, Beam, Edit, Event, Home, Membership, MembershipAction,
    SpaceGenesis, Tombstone,
};
use northstar_protocol::{Did, Keypair, PROTOCOL_VERSION};
use tracing::{debug, instrument};

use crate::address::{AsBeamPath, AsSpaceId};
use crate::auth::{AuthError, check_challenge, origin_of};
use crate::error::SdkError;
use crate::stream::{Publisher, Watch};
use crate::subscription::{EventStream, EventWithBeamStream, RawSubscription};
use crate::tls::Trust;
use crate::verify::{EventWithBeam, LogCursor, check_beam, check_history, check_listed_beam};

/// How long opening the WebSocket may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long one call may take before it fails with a timeout.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// How many spaces' sequencers a client remembers; past that it forgets them all and asks
/// again. A space's sequencer never changes, so the cache is never stale.
const SEQUENCER_CACHE: usize = 1024;

/// A connection to a Northstar node.
///
/// Cloning is cheap and shares the connection. When the connection drops, calls fail with
/// [`SdkError::Transport`]; connect again to go on ([`EventStream`]s reconnect by themselves).
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    rpc: WsClient,
    url: String,
    key: Option<Keypair>,
    trust: Trust,
    info: NodeInfo,
    sequencers: Mutex<HashMap<SpaceId, Did>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("url", &self.inner.url)
            .field("did", &self.did())
            .field("node", &self.inner.info.did)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Connect to the node at `url` (`ws://` or `wss://`) and authenticate as `key`.
    ///
    /// Fetches `node.info`, then runs the handshake of `spec/` §5: the node's challenge must be
    /// signed by the node `node.info` named, name the origin of `url` and not have expired, or
    /// the client refuses to answer it ([`SdkError::Auth`]).
    pub async fn connect(url: &str, key: Keypair) -> Result<Client, SdkError> {
        Self::dial(url, Some(key), Trust::default()).await
    }

    /// Connect to the node at `url` without authenticating: only public methods work.
    pub async fn connect_anonymous(url: &str) -> Result<Client, SdkError> {
        Self::dial(url, None, Trust::default()).await
    }

    /// [`Client::connect`] (with a key) or [`Client::connect_anonymous`] (without), accepting
    /// on `wss://` the certificates `trust` accepts: e.g. those of a private CA besides the
    /// system's roots. Stream connections of this client trust the same.
    pub async fn connect_with(
        url: &str,
        key: Option<Keypair>,
        trust: Trust,
    ) -> Result<Client, SdkError> {
        Self::dial(url, key, trust).await
    }

    /// A new connection to the same node, as the same key.
    pub async fn reconnect(&self) -> Result<Client, SdkError> {
        Self::dial(
            &self.inner.url,
            self.inner.key.clone(),
            self.inner.trust.clone(),
        )
        .await
    }

    #[instrument(skip_all, fields(url))]
    async fn dial(url: &str, key: Option<Keypair>, trust: Trust) -> Result<Client, SdkError> {
        origin_of(url)?;
        // The origin a challenge must name is the one of the URL dialled, so redirects are not
        // followed: jsonrpsee counts the first attempt as one "redirection", so 1 means none.
        let rpc = WsClientBuilder::default()
            .connection_timeout(CONNECT_TIMEOUT)
            .request_timeout(REQUEST_TIMEOUT)
            .max_redirections(1)
            .with_custom_cert_store(trust.client_config()?.as_ref().clone())
            .build(url)
            .await
            .map_err(|source| SdkError::Connect {
                url: url.to_owned(),
                source,
            })?;
        let info = handshake(&mut &rpc, url, key.as_ref()).await?;
        debug!(node = %info.did, authenticated = key.is_some(), "connected");
        Ok(Client {
            inner: Arc::new(Inner {
                rpc,
                url: url.to_owned(),
                key,
                trust,
                info,
                sequencers: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// `node.info` as fetched when the connection opened: the node's DID, authority and limits.
    pub fn node_info(&self) -> &NodeInfo {
        &self.inner.info
    }

    /// The DID the connection acts as; `None` for an anonymous client.
    pub fn did(&self) -> Option<&Did> {
        self.inner.key.as_ref().map(Keypair::did)
    }

    /// The URL dialled.
    pub fn url(&self) -> &str {
        &self.inner.url
    }

    /// Whether the connection is still open.
    pub fn is_connected(&self) -> bool {
        self.inner.rpc.is_connected()
    }

    /// The URI of `space` if this node sequences it: `northstar://{authority}/{space}`.
    pub fn space_uri(&self, space: &impl AsSpaceId) -> SpaceUri {
        SpaceUri {
            authority: self.inner.info.authority.clone(),
            space: space.space_id().clone(),
        }
    }

    /// `space.create` (key): found a space owned by this client's DID and sequenced by this node.
    /// The genesis names the node's DID as sequencer and its authority, as `node.info` gave them.
    pub async fn create_space(
        &self,
        space_type: SpaceType,
        unique_id: &str,
        name: &str,
    ) -> Result<Ack, SdkError> {
        const METHOD: &str = SPACE_CREATE;
        let key = self.key(METHOD)?;
        let info = &self.inner.info;
        let space = SpaceId::new(space_type, key.did(), unique_id)?;
        let genesis = SpaceGenesis::create(
            key,
            space,
            name,
            info.did.clone(),
            &info.authority,
            info.fanout,
            now_ms()?,
        )?;
        genesis.check_rules()?;
        call(METHOD, SpaceApiClient::create(self.rpc(), genesis)).await
    }

    /// `space.get` (public; member for a dm): one space.
    pub async fn get_space(&self, space: &impl AsSpaceId) -> Result<SpaceInfo, SdkError> {
        let space = space.space_id();
        call(SPACE_GET, SpaceApiClient::get(self.rpc(), space.clone())).await
    }

    /// `space.list` (key): the spaces this client's DID owns, belongs to or is invited into.
    pub async fn list_spaces(&self) -> Result<Vec<SpaceInfo>, SdkError> {
        const METHOD: &str = SPACE_LIST;
        self.key(METHOD)?;
        call(METHOD, SpaceApiClient::list(self.rpc())).await
    }

    /// `space.join` (key): join a space through this node, the caller's home (a dm needs an
    /// invite first). Given a URI whose authority is another node's, this node joins through
    /// that sequencer and keeps a replica, so the space is then read here like a local one.
    pub async fn join(&self, space: &impl AsSpaceId) -> Result<Ack, SdkError> {
        const METHOD: &str = SPACE_JOIN;
        let key = self.key(METHOD)?;
        let info = &self.inner.info;
        let mut home = Home::new(info.did.clone(), info.authority.clone());
        // A stream's tree orders its member nodes by the uplink their joins declare (§10.5).
        if space.space_id().space_type() == SpaceType::Stream {
            home.capacity = Some(info.stream_capacity);
        }
        let request = Membership::join(key, space.space_id().clone(), home, now_ms()?)?;
        request.check_rules()?;
        let sequencer = space.sequencer_authority().map(str::to_owned);
        call(METHOD, SpaceApiClient::join(self.rpc(), request, sequencer)).await
    }

    /// `space.leave` (key): leave a space.
    pub async fn leave(&self, space: &impl AsSpaceId) -> Result<Ack, SdkError> {
        self.membership(SPACE_LEAVE, space, MembershipAction::Leave, None)
            .await
    }

    /// `space.invite` (key): invite `did` into a space (into a dm, only its owner may).
    pub async fn invite(&self, space: &impl AsSpaceId, did: &Did) -> Result<Ack, SdkError> {
        self.membership(SPACE_INVITE, space, MembershipAction::Invite, Some(did))
            .await
    }

    /// `space.kick` (key, owner): remove `did` from a space; it may join again.
    pub async fn kick(&self, space: &impl AsSpaceId, did: &Did) -> Result<Ack, SdkError> {
        self.membership(SPACE_KICK, space, MembershipAction::Kick, Some(did))
            .await
    }

    /// `space.ban` (key, owner): remove `did` from a space for good.
    pub async fn ban(&self, space: &impl AsSpaceId, did: &Did) -> Result<Ack, SdkError> {
        self.membership(SPACE_BAN, space, MembershipAction::Ban, Some(did))
            .await
    }

    async fn membership(
        &self,
        method: &'static str,
        space: &impl AsSpaceId,
        action: MembershipAction,
        subject: Option<&Did>,
    ) -> Result<Ack, SdkError> {
        let key = self.key(method)?;
        let subject = subject.unwrap_or(key.did()).clone();
        let request =
            Membership::create(key, space.space_id().clone(), action, subject, now_ms()?)?;
        request.check_rules()?;
        let rpc = self.rpc();
        let answer = match action {
            MembershipAction::Join => SpaceApiClient::join(rpc, request, None).await,
            MembershipAction::Leave => SpaceApiClient::leave(rpc, request).await,
            MembershipAction::Invite => SpaceApiClient::invite(rpc, request).await,
            MembershipAction::Kick => SpaceApiClient::kick(rpc, request).await,
            MembershipAction::Ban => SpaceApiClient::ban(rpc, request).await,
        };
        answer.map_err(|e| SdkError::from_call(method, e))
    }

    /// `space.members` (public; member for a dm): who belongs to a space, is invited or is banned.
    pub async fn members(&self, space: &impl AsSpaceId) -> Result<Vec<MemberInfo>, SdkError> {
        let space = space.space_id().clone();
        call(SPACE_MEMBERS, SpaceApiClient::members(self.rpc(), space)).await
    }

    /// `space.post` (key, member): sign a beam and a ref placing it in `space` (one signature
    /// covers both, spec §4.5), store the beam on this node (the author's home, named by the
    /// ref) and append the ref to the space.
    pub async fn post(
        &self,
        space: &impl AsSpaceId,
        title: &str,
        body: &str,
    ) -> Result<BeamPosted, SdkError> {
        const METHOD: &str = SPACE_POST;
        let key = self.key(METHOD)?;
        let now = now_ms()?;
        let (beam, beam_ref) = Beam::post(
            key,
            space.space_id().clone(),
            &self.inner.info.authority,
            title,
            body,
            now,
        )?;
        beam.check_rules()?;
        beam_ref.check_rules()?;
        call(METHOD, SpaceApiClient::post(self.rpc(), beam, beam_ref)).await
    }

    /// `space.events` (public; member for a dm): at most `limit` events with `seq > since`, oldest first, each verified
    /// under the space's sequencer and linked to the one before it.
    pub async fn events(
        &self,
        space: &impl AsSpaceId,
        since: u64,
        limit: u32,
    ) -> Result<Vec<Event>, SdkError> {
        let space = space.space_id();
        let sequencer = self.space_sequencer(space).await?;
        let page = self.events_page(space, since, limit, false).await?;
        let mut cursor = LogCursor::new(space.clone(), sequencer, since);
        Ok(cursor.accept_page(&page.events)?)
    }

    /// `space.events` with beams inline (public; member for a dm): as [`Client::events`], and
    /// each `beam_ref` event comes with the beam it names when the node sent it, checked as
    /// [`Client::get_beam`] checks its answer (author's signature, the ref's content id, the
    /// ref's author). A beam that fails, or one no ref of the page names, is an error. A ref
    /// without its beam (the node does not hold it, or it was deleted) is left for
    /// [`Client::get_beam`].
    pub async fn events_with_beams(
        &self,
        space: &impl AsSpaceId,
        since: u64,
        limit: u32,
    ) -> Result<Vec<EventWithBeam>, SdkError> {
        let space = space.space_id();
        let sequencer = self.space_sequencer(space).await?;
        let page = self.events_page(space, since, limit, true).await?;
        let mut cursor = LogCursor::new(space.clone(), sequencer, since);
        let beams = page.beams.as_deref().unwrap_or_default();
        Ok(cursor.accept_page_with_beams(&page.events, beams)?)
    }

    /// One raw page of `space.events`, asking for beams inline if `beams`.
    pub(crate) async fn events_page(
        &self,
        space: &SpaceId,
        since: u64,
        limit: u32,
        beams: bool,
    ) -> Result<EventPage, SdkError> {
        let call_events = SpaceApiClient::events(
            self.rpc(),
            space.clone(),
            since,
            limit,
            beams.then_some(true),
        );
        call(SPACE_EVENTS, call_events).await
    }

    /// `space.subscribe` (public; member for a dm): every event with `seq > since`, verified and in order, the backlog
    /// first and then live. The stream resumes by itself after a disconnect or a
    /// `slow_subscriber` cut-off; see [`EventStream`].
    pub async fn subscribe(
        &self,
        space: &impl AsSpaceId,
        since: u64,
    ) -> Result<EventStream, SdkError> {
        let space = space.space_id();
        let sequencer = self.space_sequencer(space).await?;
        EventStream::start(
            self.clone(),
            LogCursor::new(space.clone(), sequencer, since),
        )
        .await
    }

    /// `space.subscribe` with beams inline (public; member for a dm): as
    /// [`Client::subscribe`], and each `beam_ref` event comes with the beam it names when the
    /// node sent it, checked as [`Client::get_beam`] checks its answer; a beam that fails ends
    /// the stream with an error. See [`EventWithBeamStream`].
    pub async fn subscribe_with_beams(
        &self,
        space: &impl AsSpaceId,
        since: u64,
    ) -> Result<EventWithBeamStream, SdkError> {
        let space = space.space_id();
        let sequencer = self.space_sequencer(space).await?;
        EventWithBeamStream::start(
            self.clone(),
            LogCursor::new(space.clone(), sequencer, since),
        )
        .await
    }

    /// The raw `space.subscribe` call, asking for beams inline if `beams`. The plain form is
    /// the declared one; the inline form has another item type, so it is called by its wire
    /// names (see `SpaceEventsApi` in the protocol crate).
    pub(crate) async fn subscribe_raw(
        &self,
        space: &SpaceId,
        since: u64,
        beams: bool,
    ) -> Result<RawSubscription, SdkError> {
        if !beams {
            let call_subscribe =
                SpaceEventsApiClient::subscribe_events(self.rpc(), space.clone(), since);
            return call(SPACE_SUBSCRIBE, call_subscribe)
                .await
                .map(RawSubscription::Plain);
        }
        let call_subscribe = SubscriptionClientT::subscribe::<EventItem, _>(
            self.rpc(),
            SPACE_SUBSCRIBE,
            rpc_params![space, since, true],
            SPACE_UNSUBSCRIBE,
        );
        call(SPACE_SUBSCRIBE, call_subscribe)
            .await
            .map(RawSubscription::Inline)
    }

    /// `beam.get` (reader: anyone for a beam posted into a channel or stream; for one posted only
    /// into dm spaces, its author and their members, else `not_member`): a beam stored, cached or
    /// fetched by this node, checked against the path asked for (its author's signature, its
    /// content id and its author hash).
    pub async fn get_beam(&self, beam: &impl AsBeamPath) -> Result<Beam, SdkError> {
        let path = beam.beam_path();
        let home = beam.home_authority().map(str::to_owned);
        let got = call(
            BEAM_GET,
            BeamApiClient::get(self.rpc(), path.to_string(), home),
        )
        .await?;
        check_beam(&got, &path)?;
        Ok(got)
    }

    /// `beam.list` (public; only the beams this client may read): beams by `author`, newest
    /// first, created before `before` (ms; 0 for now), at most `limit`, each checked as by
    /// [`Client::get_beam`].
    pub async fn list_beams(
        &self,
        author: &Did,
        before: u64,
        limit: u32,
    ) -> Result<Vec<Beam>, SdkError> {
        let call_list = BeamApiClient::list(self.rpc(), author.clone(), before, limit);
        let beams = call(BEAM_LIST, call_list).await?;
        for beam in &beams {
            check_listed_beam(beam, author)?;
        }
        Ok(beams)
    }

    /// `beam.delete` (key, author): delete one of this client's beams with a signed tombstone, which the node
    /// appends to every space that referenced the beam.
    pub async fn delete_beam(&self, beam: &impl AsBeamPath) -> Result<BeamDeleted, SdkError> {
        const METHOD: &str = BEAM_DELETE;
        let key = self.key(METHOD)?;
        let path = beam.beam_path();
        if path.author_hash != author_hash(key.did()) {
            return Err(SdkError::NotAuthor {
                path: path.to_string(),
            });
        }
        let tombstone = Tombstone::create(key, path.beam, now_ms()?)?;
        call(METHOD, BeamApiClient::delete(self.rpc(), tombstone)).await
    }

    /// `beam.edit` (key, author, at the beam's home node): publish a new version of one of this
    /// client's beams with `title` and `body`, numbered one above the current version the home
    /// node's history shows. With `drop_history`, every older version is deleted, on the home
    /// node and in every cache. The node appends the edit to every space that carries a ref to
    /// the beam; readers get the newest version by default (`spec/protocol.md` §4.10).
    pub async fn edit_beam(
        &self,
        beam: &impl AsBeamPath,
        title: &str,
        body: &str,
        drop_history: bool,
    ) -> Result<BeamEdited, SdkError> {
        self.key(BEAM_EDIT)?;
        let path = beam.beam_path();
        let current = self.beam_history(&path).await?;
        let version = current
            .versions
            .last()
            .and_then(|v| v.edit.as_ref())
            .map_or(0, |e| e.version);
        self.edit_beam_as(&path, version + 1, title, body, drop_history)
            .await
    }

    /// [`Client::edit_beam`] with the version number chosen by the caller. Two edits with one
    /// number and different content (two devices of one author, say) are a conflict that every
    /// node and client resolves alike: the edit with the greater content id wins.
    pub async fn edit_beam_as(
        &self,
        beam: &impl AsBeamPath,
        version: u64,
        title: &str,
        body: &str,
        drop_history: bool,
    ) -> Result<BeamEdited, SdkError> {
        let key = self.key(BEAM_EDIT)?;
        let path = beam.beam_path();
        if path.author_hash != author_hash(key.did()) {
            return Err(SdkError::NotAuthor {
                path: path.to_string(),
            });
        }
        let (new, edit) = Edit::create(
            key,
            path.beam,
            version,
            title,
            body,
            now_ms()?,
            drop_history,
        )?;
        self.publish_edit(new, edit).await
    }

    /// `beam.edit` (key) with a version and its edit signed by the caller ([`Edit::create`]):
    /// for an app that signs elsewhere, or that must choose the edit's time.
    pub async fn publish_edit(&self, beam: Beam, edit: Edit) -> Result<BeamEdited, SdkError> {
        self.key(BEAM_EDIT)?;
        call(BEAM_EDIT, BeamApiClient::edit(self.rpc(), beam, edit)).await
    }

    /// `beam.history` (reader, as for [`Client::get_beam`] of the original): the versions of a
    /// beam, oldest first, checked (each edit signed by the beam's author and superseding it,
    /// each version the beam its edit names, in rising order); the last is the current one.
    /// Versions an edit dropped are not listed.
    pub async fn beam_history(&self, beam: &impl AsBeamPath) -> Result<BeamHistory, SdkError> {
        let path = beam.beam_path();
        let home = beam.home_authority().map(str::to_owned);
        let history = call(
            BEAM_HISTORY,
            BeamApiClient::history(self.rpc(), path.to_string(), home),
        )
        .await?;
        check_history(&history, &path)?;
        Ok(history)
    }

    /// The current version of a beam: the last of [`Client::beam_history`], or the beam itself
    /// if it was never edited.
    pub async fn current_beam(&self, beam: &impl AsBeamPath) -> Result<Beam, SdkError> {
        let history = self.beam_history(beam).await?;
        history
            .versions
            .into_iter()
            .last()
            .map(|v| v.beam)
            .ok_or_else(|| {
                SdkError::Verify(crate::verify::VerifyError::BadHistory {
                    path: beam.beam_path().to_string(),
                    reason: "it lists no version".into(),
                })
            })
    }

    /// `beam.receipts` (key, author, at the beam's home node): on how many of the nodes that
    /// held a deleted beam the tombstone has taken effect.
    pub async fn beam_receipts(&self, beam: &impl AsBeamPath) -> Result<BeamReceipts, SdkError> {
        self.key(BEAM_RECEIPTS)?;
        let path = beam.beam_path().to_string();
        call(BEAM_RECEIPTS, BeamApiClient::receipts(self.rpc(), path)).await
    }

    /// `space.health` (key, owner, at the space's sequencer): how far each member node is
    /// behind, from the heads the member nodes report.
    pub async fn space_health(&self, space: &impl AsSpaceId) -> Result<SpaceHealth, SdkError> {
        self.key(SPACE_HEALTH)?;
        let space = space.space_id().clone();
        call(SPACE_HEALTH, SpaceApiClient::health(self.rpc(), space)).await
    }

    /// `stream.publish` (key, the stream's owner, at its sequencer): a [`Publisher`] of the
    /// stream's frames, on a connection of its own to this client's node, as this client's key.
    pub async fn publisher(&self, space: &impl AsSpaceId) -> Result<Publisher, SdkError> {
        let key = self.key(STREAM_PUBLISH)?;
        Publisher::open_trusting(&self.inner.url, key.clone(), space, &self.inner.trust).await
    }

    /// `stream.watch` (public): a [`Watch`] of the stream's frames after `since` (else from the
    /// node's latest key frame), on a connection of its own to this client's node,
    /// authenticated as this client's key if it has one.
    pub async fn watch(
        &self,
        space: &impl AsSpaceId,
        since: Option<u64>,
    ) -> Result<Watch, SdkError> {
        Watch::open_trusting(
            &self.inner.url,
            self.inner.key.as_ref(),
            space,
            since,
            &self.inner.trust,
        )
        .await
    }

    /// `stream.watch` (public) again, after `watch` (of this node, or another) ended: a
    /// [`Watch`] on a new connection to this client's node that goes on where `watch` stopped
    /// (see [`Watch::resume`]), authenticated as this client's key if it has one.
    pub async fn resume_watch(&self, watch: &Watch) -> Result<Watch, SdkError> {
        watch
            .resume_trusting(&self.inner.url, self.inner.key.as_ref(), &self.inner.trust)
            .await
    }

    /// `stream.info` (public): the stream as this node sees it: whether it is live, its newest
    /// frames, its watchers, its neighbours in the stream's tree and its limits.
    pub async fn stream_info(&self, space: &impl AsSpaceId) -> Result<StreamInfo, SdkError> {
        let space = space.space_id().clone();
        call(STREAM_INFO, StreamApiClient::info(self.rpc(), space)).await
    }

    /// The certificates this client accepts on `wss://` (and on its blob transfers).
    pub(crate) fn trust(&self) -> &Trust {
        &self.inner.trust
    }

    pub(crate) fn rpc(&self) -> &WsClient {
        &self.inner.rpc
    }

    pub(crate) fn key(&self, method: &'static str) -> Result<&Keypair, SdkError> {
        self.inner
            .key
            .as_ref()
            .ok_or(SdkError::Anonymous { method })
    }

    /// The sequencer of `space`, from the cache or `space.get`.
    /// The space's sequencer, as its genesis names it: the genesis is checked under the
    /// space's owner (whose key the space id carries), so no node can name another sequencer
    /// and then sign events as it.
    pub(crate) async fn space_sequencer(&self, space: &SpaceId) -> Result<Did, SdkError> {
        if let Some(did) = self.sequencers().get(space) {
            return Ok(did.clone());
        }
        let page = self.events_page(space, 0, 1, false).await?;
        let first = page.events.first().ok_or_else(|| {
            SdkError::Verify(crate::verify::VerifyError::NoGenesis {
                space: space.to_string(),
            })
        })?;
        let sequencer = crate::verify::genesis_sequencer(first, space)?;
        self.remember_sequencer(space, &sequencer);
        Ok(sequencer)
    }

    fn remember_sequencer(&self, space: &SpaceId, sequencer: &Did) {
        let mut cache = self.sequencers();
        if cache.len() >= SEQUENCER_CACHE {
            cache.clear();
        }
        cache.insert(space.clone(), sequencer.clone());
    }

    fn sequencers(&self) -> std::sync::MutexGuard<'_, HashMap<SpaceId, Did>> {
        // The lock guards plain inserts and lookups that cannot leave the map half-changed, so
        // a panic elsewhere while it was held does not make the map wrong.
        self.inner
            .sequencers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Run one call and name its method in any error.
pub(crate) async fn call<T>(
    method: &'static str,
    fut: impl Future<Output = Result<T, ClientError>>,
) -> Result<T, SdkError> {
    fut.await.map_err(|e| SdkError::from_call(method, e))
}

/// The calls of the handshake, on a connection of either kind: the client's jsonrpsee one, or
/// a stream's own socket.
pub(crate) trait Handshake {
    /// `node.info`.
    async fn node_info(&mut self) -> Result<NodeInfo, SdkError>;
    /// `auth.challenge`.
    async fn challenge(&mut self) -> Result<AuthChallenge, SdkError>;
    /// `auth.respond`.
    async fn respond(&mut self, response: AuthResponse) -> Result<Authenticated, SdkError>;
}

impl Handshake for &WsClient {
    async fn node_info(&mut self) -> Result<NodeInfo, SdkError> {
        call(NODE_INFO, NodeApiClient::info(*self)).await
    }

    async fn challenge(&mut self) -> Result<AuthChallenge, SdkError> {
        call(AUTH_CHALLENGE, AuthApiClient::challenge(*self)).await
    }

    async fn respond(&mut self, response: AuthResponse) -> Result<Authenticated, SdkError> {
        call(AUTH_RESPOND, AuthApiClient::respond(*self, response)).await
    }
}

/// The handshake of `spec/` §5 from the client's side, on a connection to `url`: `node.info`
/// (whose protocol version must be this SDK's, [`SdkError::Protocol`]), then, given a key, a
/// challenge that must be signed by the node `node.info` named, name the origin of `url` and
/// not have expired, answered as `key`. Returns the node's `node.info`.
pub(crate) async fn handshake(
    rpc: &mut impl Handshake,
    url: &str,
    key: Option<&Keypair>,
) -> Result<NodeInfo, SdkError> {
    let origin = origin_of(url)?;
    let info = rpc.node_info().await?;
    if info.protocol != PROTOCOL_VERSION {
        return Err(SdkError::Protocol {
            url: url.to_owned(),
            node: info.protocol,
            ours: PROTOCOL_VERSION,
        });
    }
    let Some(key) = key else {
        return Ok(info);
    };
    let challenge = rpc.challenge().await?;
    check_challenge(&challenge, origin, &info.did, now_ms()?)?;
    let response = AuthResponse::answer(key, challenge)?;
    let authenticated = rpc.respond(response).await?;
    if authenticated.did != *key.did() {
        return Err(AuthError::WrongDid {
            expected: key.did().to_string(),
            actual: authenticated.did.to_string(),
        }
        .into());
    }
    Ok(info)
}

/// Now, in ms since the Unix epoch: the time every signed request carries.
pub(crate) fn now_ms() -> Result<u64, SdkError> {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|_| SdkError::Clock)?;
    u64::try_from(since_epoch.as_millis()).map_err(|_| SdkError::Clock)
}
