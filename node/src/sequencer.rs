//! The single writer: every change to the database goes through this one task.
//!
//! For spaces this node sequences, it orders, signs and commits events; for spaces it
//! replicates ([`crate::replica`]), it checks the chain of events that arrive already verified
//! and commits them. Requests arrive with signatures checked (by the RPC handlers, in parallel,
//! on any core). The writer takes whatever is queued, up to `MAX_GROUP`, decides each with the
//! spaces' state machines ([`crate::space`]), commits them all in one transaction, and only then
//! answers each caller, publishes to local subscribers and hands the events to the gossip layer
//! for the space's broadcast tree. So concurrent posts share one fsync, and an acknowledged event
//! is always durable.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use northstar_protocol::address::{BeamPath, SpaceId};
use northstar_protocol::api::Ack;
use northstar_protocol::wire::{Beam, Event, MembershipAction, Payload, SpaceGenesis, Tombstone};
use northstar_protocol::{ContentId, Did, Keypair, SignatureError};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::gossip::{Forward, ForwardSender, Routing};
use crate::hub::{Hub, LiveEvent};
use crate::replica::{Identified, Replicated};
use crate::space::{Member, MemberChange, Refusal, SpaceState};
use crate::store::{BeamRow, EventRow, HomeRow, Op, SpaceRow, Store, StoreError};

/// Requests waiting for the writer. When full, callers wait: that is the write path's
/// backpressure.
const QUEUE: usize = 4096;

/// The most requests committed in one transaction.
const MAX_GROUP: usize = 256;

/// Why the writer refused or failed a request.
#[derive(Debug, thiserror::Error)]
pub enum SequenceError {
    /// The space's rules refuse it.
    #[error(transparent)]
    Refused(Box<Refusal>),
    /// No such space is sequenced here.
    #[error("space {0} is not sequenced by this node")]
    SpaceNotFound(String),
    /// A space with this id exists.
    #[error("space {0} already exists")]
    SpaceExists(String),
    /// The beam to delete is not stored here.
    #[error("beam {0} is not stored on this node")]
    BeamNotFound(String),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Signing failed (an object that cannot be encoded).
    #[error(transparent)]
    Sign(#[from] SignatureError),
    /// The node is shutting down.
    #[error("the node is shutting down")]
    ShuttingDown,
}

impl From<Refusal> for SequenceError {
    fn from(r: Refusal) -> Self {
        SequenceError::Refused(Box::new(r))
    }
}

type Reply<T> = oneshot::Sender<Result<T, SequenceError>>;

/// Answers one request once the group's commit is known.
type Finish = Box<dyn FnOnce(Result<(), &StoreError>) + Send>;

/// What a deletion did here, and what is left for other sequencers.
#[derive(Debug, Default)]
pub struct Deleted {
    /// Tombstone events appended to spaces this node sequences.
    pub acks: Vec<Ack>,
    /// Spaces sequenced elsewhere that referred to the beam, with their sequencer's authority
    /// and DID.
    pub remote: Vec<(SpaceId, String, Did)>,
}

enum Request {
    Create {
        genesis: Box<SpaceGenesis>,
        reply: Reply<Ack>,
    },
    Append {
        space: SpaceId,
        payload: Box<Payload>,
        beam: Option<Beam>,
        via: Option<Did>,
        reply: Reply<Ack>,
    },
    Delete {
        tombstone: Box<Tombstone>,
        path: BeamPath,
        reply: Reply<Deleted>,
    },
    StoreBeam {
        beam: Box<Beam>,
        space: SpaceId,
        reply: Reply<()>,
    },
    Replicate {
        events: Vec<Identified>,
        create: bool,
        reply: Reply<Replicated>,
    },
}

/// A cloneable handle to the writer.
#[derive(Debug, Clone)]
pub struct SequencerHandle {
    tx: mpsc::Sender<Request>,
}

impl SequencerHandle {
    async fn ask<T>(&self, make: impl FnOnce(Reply<T>) -> Request) -> Result<T, SequenceError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(make(reply))
            .await
            .map_err(|_| SequenceError::ShuttingDown)?;
        answer.await.map_err(|_| SequenceError::ShuttingDown)?
    }

    /// Found a space from its verified genesis.
    pub async fn create(&self, genesis: SpaceGenesis) -> Result<Ack, SequenceError> {
        self.ask(|reply| Request::Create {
            genesis: Box::new(genesis),
            reply,
        })
        .await
    }

    /// Append a verified payload (with the beam it refers to, stored in the same transaction).
    /// `via` is the node that submitted it for one of its users, if it came over federation.
    pub async fn append(
        &self,
        space: SpaceId,
        payload: Payload,
        beam: Option<Beam>,
        via: Option<Did>,
    ) -> Result<Ack, SequenceError> {
        self.ask(|reply| Request::Append {
            space,
            payload: Box::new(payload),
            beam,
            via,
            reply,
        })
        .await
    }

    /// Delete a stored beam and append its verified tombstone to every space this node
    /// sequences that referred to it; the spaces sequenced elsewhere are returned.
    pub async fn delete(
        &self,
        tombstone: Tombstone,
        path: BeamPath,
    ) -> Result<Deleted, SequenceError> {
        self.ask(|reply| Request::Delete {
            tombstone: Box::new(tombstone),
            path,
            reply,
        })
        .await
    }

    /// Store a verified beam by one of this node's users, posted into `space` (before its ref
    /// goes to that space's remote sequencer).
    pub async fn store_beam(&self, beam: Beam, space: SpaceId) -> Result<(), SequenceError> {
        self.ask(|reply| Request::StoreBeam {
            beam: Box::new(beam),
            space,
            reply,
        })
        .await
    }

    /// Add verified events to replicas. `create` allows a space this node does not hold yet to
    /// start from its genesis (only for a join this node asked for).
    pub async fn replicate(
        &self,
        events: Vec<Event>,
        create: bool,
    ) -> Result<Replicated, SequenceError> {
        // The ids are computed here, in the caller's task, rather than by the single writer.
        let events = events
            .into_iter()
            .map(Identified::new)
            .collect::<Result<Vec<_>, _>>()?;
        self.replicate_identified(events, create).await
    }

    /// Like [`SequencerHandle::replicate`], for events whose ids the caller computed already
    /// (catch-up does, on the cores that verified them).
    pub async fn replicate_identified(
        &self,
        events: Vec<Identified>,
        create: bool,
    ) -> Result<Replicated, SequenceError> {
        self.ask(|reply| Request::Replicate {
            events,
            create,
            reply,
        })
        .await
    }
}

/// The writer task's state.
pub struct Sequencer {
    rx: mpsc::Receiver<Request>,
    pub(crate) store: Store,
    pub(crate) key: Keypair,
    hub: Arc<Hub>,
    pub(crate) spaces: HashMap<SpaceId, SpaceState>,
    /// Each space's tree and the `members_version` it was built at.
    routes: HashMap<SpaceId, (u64, Arc<Routing>)>,
    /// What the group being decided has done to beams, which the store cannot show yet.
    group: GroupBeams,
    forward: Option<ForwardSender>,
    now: fn() -> u64,
}

/// Beams touched by the group being decided: the store shows none of it until the commit.
#[derive(Debug, Default)]
struct GroupBeams {
    /// Paths stored.
    stored: HashSet<String>,
    /// Beam ids deleted.
    deleted: HashSet<ContentId>,
    /// (beam id, space, author) refs appended.
    refs: Vec<(ContentId, SpaceId, Did)>,
    /// Of the beams the group's refs name, those deleted before the group: read once for the
    /// whole group, since a query per post was what bounded ingest.
    tombstoned: HashSet<ContentId>,
    /// Of the beams the group's refs name, the author of each one this node stores, caches or
    /// deleted, or that the group stores: a ref by anyone else to that id is refused.
    owners: HashMap<ContentId, Did>,
}

/// Spaces kept in memory at most; past that the cache starts again (states reload from the
/// store on their next use).
const MAX_CACHED_SPACES: usize = 4096;

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// What requests turned into, before the commit.
#[derive(Default)]
pub(crate) struct Pending {
    pub(crate) ops: Vec<Op>,
    pub(crate) events: Vec<(String, Arc<LiveEvent>)>,
    pub(crate) acks: Vec<Ack>,
    pub(crate) forward: Vec<Event>,
}

impl Pending {
    fn extend(&mut self, more: Pending) {
        self.ops.extend(more.ops);
        self.events.extend(more.events);
        self.acks.extend(more.acks);
        self.forward.extend(more.forward);
    }
}

impl Sequencer {
    /// A writer over `store`, signing with the node's `key`, publishing to `hub`, and handing
    /// committed events to `forward` for the spaces' broadcast trees.
    pub fn new(
        store: Store,
        key: Keypair,
        hub: Arc<Hub>,
        forward: Option<ForwardSender>,
    ) -> (Self, SequencerHandle) {
        let (tx, rx) = mpsc::channel(QUEUE);
        let sequencer = Self {
            rx,
            store,
            key,
            hub,
            spaces: HashMap::new(),
            routes: HashMap::new(),
            group: GroupBeams::default(),
            forward,
            now: now_ms,
        };
        (sequencer, SequencerHandle { tx })
    }

    /// Serve requests until `shutdown`; then finish what is queued and stop.
    pub async fn run(mut self, shutdown: CancellationToken) {
        loop {
            let first = tokio::select! {
                request = self.rx.recv() => request,
                () = shutdown.cancelled() => {
                    self.rx.close();
                    self.rx.recv().await
                }
            };
            let Some(first) = first else { break };
            let mut group = vec![first];
            while group.len() < MAX_GROUP {
                match self.rx.try_recv() {
                    Ok(request) => group.push(request),
                    Err(_) => break,
                }
            }
            self.process(group).await;
        }
        tracing::debug!("writer stopped");
    }

    async fn process(&mut self, group: Vec<Request>) {
        self.group = GroupBeams::default();
        let mut named: Vec<String> = Vec::new();
        for request in &group {
            if let Request::Append { payload, beam, .. } = request
                && let Payload::BeamRef(r) = payload.as_ref()
            {
                named.push(r.beam.to_string());
                // A post here carries its beam, checked to be the ref's author's.
                if beam.is_some() {
                    self.group.owners.insert(r.beam, r.author.clone());
                }
            }
        }
        match self.store.known_beams(&named).await {
            Ok(known) => {
                for beam in known {
                    let (Ok(id), Ok(author)) =
                        (ContentId::parse(&beam.id), Did::parse(&beam.author))
                    else {
                        continue;
                    };
                    if beam.deleted {
                        self.group.tombstoned.insert(id);
                    }
                    self.group.owners.insert(id, author);
                }
            }
            Err(e) => {
                tracing::error!(error = %crate::report::Causes(&e), "cannot read the beams the group names; the group is refused");
                for request in group {
                    refuse(request, SequenceError::Store(e.clone_for_reply()));
                }
                return;
            }
        }
        if self.spaces.len() > MAX_CACHED_SPACES {
            self.spaces.clear();
            self.routes.clear();
        }
        let mut pending = Pending::default();
        let mut replies: Vec<Finish> = Vec::new();
        // Every space whose in-memory state this group moves, with its state before, so a
        // failed commit can put them back.
        let mut saved: HashMap<SpaceId, Option<SpaceState>> = HashMap::new();
        for request in group {
            match request {
                Request::Create { genesis, reply } => {
                    self.save(&mut saved, &genesis.space);
                    let result = self.create(*genesis).await;
                    finish(&mut pending, &mut replies, result, reply, |p| {
                        first(&p.acks)
                    });
                }
                Request::Append {
                    space,
                    payload,
                    beam,
                    via,
                    reply,
                } => {
                    self.save(&mut saved, &space);
                    let result = self.append(&space, *payload, beam, via.as_ref()).await;
                    finish(&mut pending, &mut replies, result, reply, |p| {
                        first(&p.acks)
                    });
                }
                Request::Delete {
                    tombstone,
                    path,
                    reply,
                } => {
                    let result = self.delete(*tombstone, path, &mut saved).await;
                    match result {
                        Ok((more, remote)) => {
                            let acks = more.acks.clone();
                            pending.extend(more);
                            replies.push(answer_after_commit(reply, Deleted { acks, remote }));
                        }
                        Err(e) => drop(reply.send(Err(e))),
                    }
                }
                Request::StoreBeam { beam, space, reply } => match beam_row(&beam) {
                    Ok(row) => {
                        self.group.stored.insert(row.path.clone());
                        pending.ops.push(Op::Posted {
                            path: row.path.clone(),
                            space: space.to_string(),
                        });
                        pending.ops.push(Op::PutBeam(row));
                        replies.push(answer_after_commit(reply, ()));
                    }
                    Err(e) => drop(reply.send(Err(e))),
                },
                Request::Replicate {
                    events,
                    create,
                    reply,
                } => {
                    // A batch is mostly one space: save each space once, not once per event.
                    let mut last: Option<&SpaceId> = None;
                    for item in &events {
                        let space = &item.event().space;
                        if last != Some(space) {
                            self.save(&mut saved, space);
                            last = Some(space);
                        }
                    }
                    match self.replicate(events, create).await {
                        Ok((more, outcome)) => {
                            pending.extend(more);
                            replies.push(answer_after_commit(reply, outcome));
                        }
                        Err(e) => drop(reply.send(Err(e))),
                    }
                }
            }
        }
        if pending.ops.is_empty() {
            for reply in replies {
                reply(Ok(()));
            }
            return;
        }
        let committed = self.store.commit(&pending.ops).await;
        if let Err(e) = &committed {
            tracing::error!(error = %crate::report::Causes(e), "commit failed; the group's requests are refused");
            for (space, state) in saved {
                self.routes.remove(&space);
                match state {
                    Some(state) => self.spaces.insert(space, state),
                    None => self.spaces.remove(&space),
                };
            }
        }
        for reply in replies {
            reply(committed.as_ref().map(|_| ()));
        }
        if committed.is_ok() {
            for (space, event) in pending.events {
                self.hub.publish(&space, event);
            }
            self.hand_to_gossip(pending.forward);
        }
    }

    fn save(&self, saved: &mut HashMap<SpaceId, Option<SpaceState>>, space: &SpaceId) {
        saved
            .entry(space.clone())
            .or_insert_with(|| self.spaces.get(space).cloned());
    }

    /// Give committed events to the gossip layer, grouped by space, with the children this node
    /// forwards them to in each space's tree.
    fn hand_to_gossip(&mut self, events: Vec<Event>) {
        let Some(forward) = self.forward.clone() else {
            return;
        };
        let mut by_space: HashMap<SpaceId, Vec<Event>> = HashMap::new();
        for event in events {
            by_space.entry(event.space.clone()).or_default().push(event);
        }
        for (space, events) in by_space {
            let Some(routing) = self.routing(&space) else {
                continue;
            };
            let targets = routing.children(self.key.did());
            if targets.is_empty() {
                continue;
            }
            forward.send(Forward {
                space,
                targets,
                events: Arc::new(events),
            });
        }
    }

    /// The space's broadcast tree, rebuilt only when its membership changed: deriving the
    /// member nodes walks every member, too much to do for every committed batch.
    pub(crate) fn routing(&mut self, space: &SpaceId) -> Option<Arc<Routing>> {
        let state = self.spaces.get(space)?;
        if let Some((_, routing)) = self
            .routes
            .get(space)
            .filter(|(version, _)| *version == state.members_version)
        {
            return Some(routing.clone());
        }
        let fanout = usize::try_from(state.fanout).unwrap_or(1);
        let routing = Arc::new(Routing::new(
            state.sequencer.clone(),
            state.member_nodes(),
            fanout,
        ));
        self.routes
            .insert(space.clone(), (state.members_version, routing.clone()));
        Some(routing)
    }

    async fn create(&mut self, genesis: SpaceGenesis) -> Result<Pending, SequenceError> {
        let id = genesis.space.clone();
        if self.spaces.contains_key(&id) || self.store.space(id.as_str()).await?.is_some() {
            return Err(SequenceError::SpaceExists(id.to_string()));
        }
        let event = Event::sequence(
            &self.key,
            id.clone(),
            1,
            None,
            (self.now)(),
            Payload::Create(genesis.clone()),
        )?;
        let mut pending = Pending {
            ops: vec![Op::CreateSpace(space_row(&genesis))],
            ..Pending::default()
        };
        let event_id = event.id()?;
        let state = SpaceState::genesis(&genesis, event_id);
        push_event(
            &mut pending,
            &event,
            event_id,
            &[SpaceState::owner_change(&genesis)],
        )?;
        self.spaces.insert(id, state);
        Ok(pending)
    }

    async fn append(
        &mut self,
        space: &SpaceId,
        payload: Payload,
        beam: Option<Beam>,
        via: Option<&Did>,
    ) -> Result<Pending, SequenceError> {
        let own = self.key.did().clone();
        match &payload {
            Payload::Tombstone(t) => {
                let pending_ref =
                    self.group.refs.iter().any(|(beam, s, author)| {
                        *beam == t.beam && s == space && *author == t.author
                    });
                let committed_ref = self
                    .store
                    .references(&t.beam.to_string(), space.as_str(), t.author.as_str())
                    .await?;
                if !(pending_ref || committed_ref) {
                    return Err(Refusal::Forbidden(
                        "this space has no ref to that beam by the tombstone's author",
                    )
                    .into());
                }
            }
            Payload::BeamRef(r)
                if self.group.deleted.contains(&r.beam)
                    || self.group.tombstoned.contains(&r.beam) =>
            {
                return Err(SequenceError::BeamNotFound(format!("{} (deleted)", r.beam)));
            }
            Payload::BeamRef(r) => {
                if let Some(owner) = self.group.owners.get(&r.beam).filter(|o| **o != r.author) {
                    return Err(Refusal::ForeignBeam {
                        beam: r.beam,
                        owner: owner.clone(),
                    }
                    .into());
                }
            }
            _ => {}
        }
        let state = self.state(space).await?;
        if state.sequencer != own {
            return Err(SequenceError::SpaceNotFound(space.to_string()));
        }
        if let Some(via) = via {
            check_home(state, &payload, via)?;
        }
        let changes = state.admit(&payload)?;
        let (seq, prev) = (state.head_seq + 1, state.head_id);
        let mut pending = Pending::default();
        // A post into a space sequenced here: its ref is in the log in the same transaction,
        // so no `Op::Posted` is needed to know it (and the hot path writes one row less).
        if let Some(beam) = beam {
            pending.ops.push(Op::PutBeam(beam_row(&beam)?));
        }
        let event = Event::sequence(
            &self.key,
            space.clone(),
            seq,
            Some(prev),
            (self.now)(),
            payload,
        )?;
        let event_id = event.id()?;
        if let Payload::BeamRef(r) = &event.payload {
            self.group
                .refs
                .push((r.beam, space.clone(), r.author.clone()));
        }
        push_event(&mut pending, &event, event_id, &changes)?;
        if let Some(state) = self.spaces.get_mut(space) {
            state.apply(seq, event_id, &changes);
        }
        Ok(pending)
    }

    async fn delete(
        &mut self,
        tombstone: Tombstone,
        path: BeamPath,
        saved: &mut HashMap<SpaceId, Option<SpaceState>>,
    ) -> Result<(Pending, Vec<(SpaceId, String, Did)>), SequenceError> {
        let path_text = path.to_string();
        let stored =
            self.group.stored.contains(&path_text) || self.store.beam(&path_text).await?.is_some();
        if !stored || self.group.deleted.contains(&tombstone.beam) {
            return Err(SequenceError::BeamNotFound(path_text));
        }
        let mut pending = Pending {
            ops: vec![Op::DeleteBeam {
                path: path_text,
                beam: tombstone.beam.to_string(),
                author: tombstone.author.to_string(),
                tombstone: serde_json::to_string(&tombstone).map_err(StoreError::from_json)?,
            }],
            ..Pending::default()
        };
        let own = self.key.did().clone();
        let mut local = Vec::new();
        let mut remote = Vec::new();
        let mut referencing = Vec::new();
        // Only the author's own refs: anyone else's ref to this id names another path, where
        // no beam is, and must not be able to hold the deletion up.
        for space in self
            .store
            .spaces_referencing(&tombstone.beam.to_string(), tombstone.author.as_str())
            .await?
        {
            referencing.push(SpaceId::parse(&space).map_err(|e| corrupt("beam_refs", e))?);
        }
        // Refs appended earlier in this group are not in the store yet.
        for (beam, space, author) in &self.group.refs {
            if *beam == tombstone.beam
                && *author == tombstone.author
                && !referencing.contains(space)
            {
                referencing.push(space.clone());
            }
        }
        for space in referencing {
            let state = self.state(&space).await?;
            if state.sequencer == own {
                local.push((space.clone(), state.clone()));
            } else if let Some(row) = self.store.space(space.as_str()).await? {
                let sequencer = Did::parse(&row.sequencer).map_err(|e| corrupt("spaces", e))?;
                remote.push((space, row.authority, sequencer));
            }
        }
        for (space, before) in &local {
            saved
                .entry(space.clone())
                .or_insert_with(|| Some(before.clone()));
            match self
                .append(space, Payload::Tombstone(tombstone.clone()), None, None)
                .await
            {
                Ok(more) => pending.extend(more),
                Err(e) => {
                    // If any space refuses, none of them may move.
                    for (space, before) in local {
                        self.spaces.insert(space, before);
                    }
                    return Err(e);
                }
            }
        }
        self.group.deleted.insert(tombstone.beam);
        Ok((pending, remote))
    }

    /// A space's state, loaded from the store on first use.
    pub(crate) async fn state(&mut self, space: &SpaceId) -> Result<&SpaceState, SequenceError> {
        if !self.spaces.contains_key(space) {
            let state = self
                .load(space)
                .await?
                .ok_or_else(|| SequenceError::SpaceNotFound(space.to_string()))?;
            self.spaces.insert(space.clone(), state);
        }
        self.spaces
            .get(space)
            .ok_or_else(|| SequenceError::SpaceNotFound(space.to_string()))
    }

    async fn load(&self, space: &SpaceId) -> Result<Option<SpaceState>, SequenceError> {
        let Some(row) = self.store.space(space.as_str()).await? else {
            return Ok(None);
        };
        let head_id = ContentId::parse(&row.head_id).map_err(|e| corrupt("spaces", e))?;
        let sequencer = Did::parse(&row.sequencer).map_err(|e| corrupt("spaces", e))?;
        let mut members = Vec::new();
        for m in self.store.members(space.as_str()).await? {
            let home = match m.home {
                Some(h) => Some(northstar_protocol::wire::Home {
                    node: Did::parse(&h.node).map_err(|e| corrupt("members", e))?,
                    authority: h.authority,
                }),
                None => None,
            };
            let did = Did::parse(&m.did).map_err(|e| corrupt("members", e))?;
            members.push((
                did,
                Member {
                    state: m.state,
                    seq: m.seq,
                    home,
                },
            ));
        }
        Ok(Some(SpaceState::restore(
            space.clone(),
            sequencer,
            row.fanout,
            row.head_seq,
            head_id,
            members,
        )))
    }
}

/// A request a node submits for one of its users must come from that user's home node.
fn check_home(state: &SpaceState, payload: &Payload, via: &Did) -> Result<(), Refusal> {
    let home = match payload {
        Payload::Membership(m) if m.action == MembershipAction::Join => m.home.as_ref(),
        Payload::Membership(m) => state.home_of(&m.actor),
        Payload::BeamRef(r) => {
            let home = state.home_of(&r.author);
            if home.is_some_and(|h| h.authority != r.home) {
                return Err(Refusal::NotHome);
            }
            home
        }
        // Anyone may carry an author's signed deletion.
        Payload::Tombstone(_) => return Ok(()),
        Payload::Create(_) => return Err(Refusal::SecondGenesis),
    };
    match home {
        Some(home) if &home.node == via => Ok(()),
        _ => Err(Refusal::NotHome),
    }
}

pub(crate) fn corrupt(table: &'static str, e: impl std::fmt::Display) -> SequenceError {
    SequenceError::Store(StoreError::Corrupt {
        table,
        reason: e.to_string(),
    })
}

/// Answer a request that will not be decided.
fn refuse(request: Request, error: SequenceError) {
    // Callers that went away need no answer.
    match request {
        Request::Create { reply, .. } | Request::Append { reply, .. } => {
            let _ = reply.send(Err(error));
        }
        Request::Delete { reply, .. } => {
            let _ = reply.send(Err(error));
        }
        Request::StoreBeam { reply, .. } => {
            let _ = reply.send(Err(error));
        }
        Request::Replicate { reply, .. } => {
            let _ = reply.send(Err(error));
        }
    }
}

fn first(acks: &[Ack]) -> Option<Ack> {
    acks.first().cloned()
}

/// Queue a request's changes and its reply: the ack it picks from them once committed.
fn finish(
    pending: &mut Pending,
    replies: &mut Vec<Finish>,
    result: Result<Pending, SequenceError>,
    reply: Reply<Ack>,
    pick: fn(&Pending) -> Option<Ack>,
) {
    match result {
        Ok(more) => {
            let answer = pick(&more);
            pending.extend(more);
            match answer {
                Some(ack) => replies.push(answer_after_commit(reply, ack)),
                None => drop(reply.send(Err(SequenceError::ShuttingDown))),
            }
        }
        Err(e) => drop(reply.send(Err(e))),
    }
}

fn answer_after_commit<T: Send + 'static>(reply: Reply<T>, answer: T) -> Finish {
    Box::new(move |committed| {
        let answer = match committed {
            Ok(()) => Ok(answer),
            Err(e) => Err(SequenceError::Store(StoreError::Corrupt {
                table: "commit",
                reason: e.to_string(),
            })),
        };
        // The caller may have gone away; what was committed stays committed.
        let _ = reply.send(answer);
    })
}

pub(crate) fn space_row(genesis: &SpaceGenesis) -> SpaceRow {
    let id = &genesis.space;
    SpaceRow {
        id: id.to_string(),
        space_type: id.space_type().as_str().to_owned(),
        owner: id.owner().to_string(),
        name: genesis.name.clone(),
        sequencer: genesis.sequencer.to_string(),
        authority: genesis.authority.clone(),
        head_seq: 0,
        head_id: String::new(),
        created_at: genesis.created_at,
        fanout: genesis.fanout,
    }
}

/// Queue the rows, the live event, the ack and the forwarding of one event. It fails only
/// before it queues anything, so a caller never holds half an event.
pub(crate) fn push_event(
    pending: &mut Pending,
    event: &Event,
    event_id: ContentId,
    changes: &[MemberChange],
) -> Result<(), SequenceError> {
    // Serialised once, straight into the shared form subscribers get (no re-parse).
    let raw = serde_json::value::to_raw_value(event).map_err(StoreError::from_json)?;
    let json = raw.get().to_owned();
    let space = event.space.to_string();
    for change in changes {
        pending.ops.push(Op::Member {
            space: space.clone(),
            did: change.did.to_string(),
            state: change.state,
            seq: event.seq,
            home: change.home.as_ref().map(|h| HomeRow {
                node: h.node.to_string(),
                authority: h.authority.clone(),
            }),
        });
    }
    match &event.payload {
        Payload::BeamRef(r) => pending.ops.push(Op::BeamRef {
            beam: r.beam.to_string(),
            space: space.clone(),
            seq: event.seq,
            author: r.author.to_string(),
            home: r.home.clone(),
        }),
        Payload::Tombstone(t) => pending.ops.push(Op::Uncache {
            beam: t.beam.to_string(),
            author: t.author.to_string(),
        }),
        _ => {}
    }
    pending.ops.push(Op::Event(EventRow {
        space: space.clone(),
        seq: event.seq,
        id: event_id.to_string(),
        kind: event.payload.kind().to_owned(),
        author: event.author().to_string(),
        json,
    }));
    let removes = match &event.payload {
        Payload::Membership(m)
            if matches!(
                m.action,
                MembershipAction::Leave | MembershipAction::Kick | MembershipAction::Ban
            ) =>
        {
            Some(m.subject.clone())
        }
        _ => None,
    };
    pending.events.push((
        space,
        Arc::new(LiveEvent {
            seq: event.seq,
            json: raw,
            removes,
        }),
    ));
    pending.acks.push(Ack {
        space: event.space.clone(),
        event_id,
        seq: event.seq,
    });
    pending.forward.push(event.clone());
    Ok(())
}

fn beam_row(beam: &Beam) -> Result<BeamRow, SequenceError> {
    let path = beam.path()?;
    Ok(BeamRow {
        path: path.to_string(),
        id: path.beam.to_string(),
        author: beam.author.to_string(),
        json: serde_json::to_string(beam).map_err(StoreError::from_json)?,
        created_at: beam.created_at,
    })
}
