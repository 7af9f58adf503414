//! The writer's decisions, without I/O: what a group of requests does to the spaces.
//!
//! [`Core`] holds what the writer keeps in memory (each space's [`SpaceState`]). For a group of
//! [`Input`]s it first says what it must know from the store ([`Core::needs`]); the actor
//! around it reads that into [`Reads`], asks again until nothing is missing, then calls
//! [`Core::decide`], a pure function of (state, reads, inputs, now) that returns the rows to
//! commit, the events to publish and forward, and one [`Outcome`] per input. If the commit
//! fails, [`Core::rollback`] puts the states back.
//!
//! For spaces this node sequences it admits, orders and signs events; for replicas it places
//! verified events with the protocol's chain check ([`northstar_protocol::chain`]): the next
//! one is added, one held is a duplicate, a different one for a held seq is a fork (refused,
//! both kept as proof), one past a gap stops the batch.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use northstar_protocol::address::{BeamPath, SpaceId};
use northstar_protocol::api::Ack;
use northstar_protocol::wire::{
    Beam, Edit, Event, MembershipAction, Payload, SpaceGenesis, Tombstone,
};
use northstar_protocol::{ContentId, Did, Keypair, SignatureError, Signed};

use super::replica::{Identified, Replicated};
use super::routing::TreeNodes;
use super::rows::{beam_row, push_event, push_post, space_row};
use super::rules::{Refusal, SpaceState};
use crate::hub::LiveEvent;
use crate::store::{Op, StoreError};

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
    /// The beam to edit was deleted.
    #[error("beam {0} was deleted")]
    BeamDeleted(String),
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

/// A space sequenced elsewhere: its id, its sequencer's authority and DID.
pub type RemoteSpace = (SpaceId, String, Did);

/// A space this node sequences, with its state before the group being decided.
type LocalSpace = (SpaceId, SpaceState);

/// What a deletion or an edit did here, and what is left for other sequencers.
#[derive(Debug, Default)]
pub struct Deleted {
    /// Tombstone (or edit) events appended to spaces this node sequences.
    pub acks: Vec<Ack>,
    /// Spaces sequenced elsewhere that referred to the beam, with their sequencer's authority
    /// and DID.
    pub remote: Vec<RemoteSpace>,
}

/// One request to the writer, its signatures already checked.
#[derive(Debug)]
pub enum Input {
    /// Found a space from its verified genesis.
    Create(Box<SpaceGenesis>),
    /// Append a payload to a space sequenced here, with the beam a ref names if it is new.
    /// `via` is the node that submitted it for one of its users.
    Append {
        /// The space.
        space: SpaceId,
        /// What to append.
        payload: Box<Payload>,
        /// The beam, stored in the same transaction.
        beam: Option<Box<Beam>>,
        /// The submitting node, over federation.
        via: Option<Did>,
    },
    /// Delete a stored beam and append its tombstone where it was posted here.
    Delete {
        /// The author's signed tombstone.
        tombstone: Box<Tombstone>,
        /// The beam's path.
        path: BeamPath,
    },
    /// Store a new version of a beam by one of this node's users and append its edit where the
    /// beam was posted here (`spec/` §4.10).
    Edit {
        /// The author's signed edit.
        edit: Box<Edit>,
        /// The version's beam, checked to be the one the edit names.
        beam: Box<Beam>,
    },
    /// Store a beam by one of this node's users, posted into `space` sequenced elsewhere.
    StoreBeam {
        /// The beam.
        beam: Box<Beam>,
        /// The space it is posted into.
        space: SpaceId,
    },
    /// Drop a space, sequenced here or replicated, by the operator's decision.
    Remove {
        /// The space.
        space: SpaceId,
    },
    /// Add verified events to replicas; `create` lets a replica start from its genesis.
    Replicate {
        /// The events.
        events: Vec<Identified>,
        /// Whether a new replica may start.
        create: bool,
    },
}

/// What one input came to.
#[derive(Debug)]
pub enum Outcome {
    /// An event appended.
    Ack(Ack),
    /// A deletion, or an edit.
    Deleted(Deleted),
    /// A beam stored.
    Stored,
    /// Events replicated.
    Replicated(Replicated),
    /// Refused; nothing of it is committed.
    Refused(SequenceError),
}

/// A beam this node stores, caches or deleted, as the store knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Known {
    /// Its author.
    pub author: Did,
    /// Whether it was deleted (its tombstone is kept).
    pub deleted: bool,
}

/// What the store said, keyed by the question: a key present is a question answered.
#[derive(Debug, Default)]
pub struct Reads {
    /// Spaces' states; `None` for a space not stored here.
    pub spaces: HashMap<SpaceId, Option<SpaceState>>,
    /// The beams known under each id.
    pub beams: HashMap<ContentId, Vec<Known>>,
    /// Whether (beam, space, author) has a ref.
    pub refs: HashMap<(ContentId, SpaceId, Did), bool>,
    /// Whether a beam is stored at each path, or (once an edit dropped the original) one of
    /// the versions of the beam at that path.
    pub stored: HashMap<String, bool>,
    /// The spaces with a ref by the author to each (beam, author).
    pub referencing: HashMap<(ContentId, Did), Vec<SpaceId>>,
    /// The event held at (space, seq): its id and JSON.
    pub held: HashMap<(SpaceId, u64), Option<(ContentId, String)>>,
}

/// The questions for the store that a group still has; see [`Reads`] for their answers.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Needs {
    /// Spaces to load.
    pub spaces: Vec<SpaceId>,
    /// Beam ids to look up.
    pub beams: Vec<ContentId>,
    /// Refs to look for.
    pub refs: Vec<(ContentId, SpaceId, Did)>,
    /// Paths to look for.
    pub stored: Vec<String>,
    /// (beam, author) whose spaces to list.
    pub referencing: Vec<(ContentId, Did)>,
    /// Held events to read.
    pub held: Vec<(SpaceId, u64)>,
}

impl Needs {
    /// Whether every question is answered.
    pub fn is_empty(&self) -> bool {
        self == &Needs::default()
    }
}

/// What a group came to, before its commit.
#[derive(Debug, Default)]
pub struct Decided {
    /// Rows to commit, in one transaction.
    pub ops: Vec<Op>,
    /// Events for local subscribers, once committed.
    pub live: Vec<(String, Arc<LiveEvent>)>,
    /// Events for the spaces' trees, once committed, in order.
    pub forward: Vec<Event>,
    /// One per input, in order.
    pub outcomes: Vec<Outcome>,
    /// The states the group moved, as they were before (for [`Core::rollback`]).
    saved: HashMap<SpaceId, Option<SpaceState>>,
}

impl Decided {
    /// The states to put back if the commit failed.
    pub fn take_saved(&mut self) -> HashMap<SpaceId, Option<SpaceState>> {
        std::mem::take(&mut self.saved)
    }

    /// Add `later`, decided after this one on top of its states, so both commit as one group.
    /// A space both moved keeps the state from before this one.
    pub fn absorb(&mut self, later: Decided) {
        self.ops.extend(later.ops);
        self.live.extend(later.live);
        self.forward.extend(later.forward);
        self.outcomes.extend(later.outcomes);
        for (space, state) in later.saved {
            self.saved.entry(space).or_insert(state);
        }
    }
}

/// One request's changes, merged into the group's once the request is decided.
#[derive(Debug, Default)]
pub(super) struct Pending {
    pub(super) ops: Vec<Op>,
    pub(super) live: Vec<(String, Arc<LiveEvent>)>,
    pub(super) acks: Vec<Ack>,
    pub(super) forward: Vec<Event>,
}

impl Pending {
    fn extend(&mut self, more: Pending) {
        self.ops.extend(more.ops);
        self.live.extend(more.live);
        self.acks.extend(more.acks);
        self.forward.extend(more.forward);
    }
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
    /// Of the beams the group's refs name, those deleted before the group.
    tombstoned: HashSet<ContentId>,
    /// Of the beams the group's refs name, the author of each one this node stores, caches or
    /// deleted, or that the group stores: a ref by anyone else to that id is refused.
    owners: HashMap<ContentId, Did>,
}

/// Beam ids with a tombstone in the store, as far as the writer knows: every id of the
/// `tombstones` table (given by [`Core::know_tombstones`] when the writer starts) and every id
/// it decided a deletion of since (even one whose commit then failed: an id too many only
/// costs a read). Until it is given, or once it would pass [`MAX_KNOWN_TOMBSTONES`], every id
/// may have one and the store is asked. Only the writer adds tombstones, so an id not here has
/// none: a post that carries its own beam then needs no read before it is sequenced.
#[derive(Debug, Default)]
pub struct Tombstones {
    ids: Option<HashSet<ContentId>>,
}

/// Tombstones the writer keeps in memory at most (about 64 bytes each).
pub const MAX_KNOWN_TOMBSTONES: usize = 100_000;

impl Tombstones {
    /// Every id of the store's tombstones, or `None` if there are more than
    /// [`MAX_KNOWN_TOMBSTONES`] (or they could not be read).
    pub fn from_store(ids: Option<Vec<ContentId>>) -> Self {
        Self {
            ids: ids
                .filter(|ids| ids.len() <= MAX_KNOWN_TOMBSTONES)
                .map(|ids| ids.into_iter().collect()),
        }
    }

    /// Whether `id` may have a tombstone.
    fn may_hold(&self, id: &ContentId) -> bool {
        self.ids.as_ref().is_none_or(|ids| ids.contains(id))
    }

    fn insert(&mut self, id: ContentId) {
        if let Some(ids) = &mut self.ids {
            if ids.len() >= MAX_KNOWN_TOMBSTONES {
                self.ids = None;
            } else {
                ids.insert(id);
            }
        }
    }
}

/// Spaces kept in memory at most; past that the cache starts again (states load from the
/// store on their next use).
const MAX_CACHED_SPACES: usize = 4096;

/// The writer's memory and its decisions.
#[derive(Debug)]
pub struct Core {
    pub(super) key: Keypair,
    pub(super) spaces: HashMap<SpaceId, SpaceState>,
    /// Each space's tree nodes and the `members_version` they were derived at.
    trees: HashMap<SpaceId, (u64, Arc<TreeNodes>)>,
    group: GroupBeams,
    tombstones: Tombstones,
    /// While [`Core::edit`] appends its edit: the version's JSON, for the live events.
    edit_inline: Option<String>,
}

impl Core {
    /// The decisions of the node whose key is `key`.
    pub fn new(key: Keypair) -> Self {
        Self {
            key,
            spaces: HashMap::new(),
            trees: HashMap::new(),
            group: GroupBeams::default(),
            tombstones: Tombstones::default(),
            edit_inline: None,
        }
    }

    /// What the store's tombstones are (see [`Tombstones`]).
    pub fn know_tombstones(&mut self, tombstones: Tombstones) {
        self.tombstones = tombstones;
    }

    /// Forget every state (a restart): the store holds what was committed.
    pub fn forget(&mut self) {
        self.spaces.clear();
        self.trees.clear();
    }

    /// What the store must still answer before `inputs` can be decided, given `reads`.
    pub fn needs(&self, inputs: &[Input], reads: &Reads) -> Needs {
        let mut needs = Needs::default();
        for input in inputs {
            match input {
                Input::Create(genesis) => {
                    self.known(reads, &mut needs, &genesis.space);
                }
                Input::Append {
                    space: id,
                    payload,
                    beam,
                    ..
                } => {
                    self.known(reads, &mut needs, id);
                    match payload.as_ref() {
                        // A post that carries its beam asks the store only whether the beam was
                        // deleted: the beam's id hashes its author, so no one else holds it.
                        Payload::BeamRef(r)
                            if !reads.beams.contains_key(&r.beam)
                                && (beam.is_none() || self.tombstones.may_hold(&r.beam)) =>
                        {
                            push_new(&mut needs.beams, r.beam);
                        }
                        Payload::Tombstone(t) => {
                            let key = (t.beam, id.clone(), t.author.clone());
                            if !reads.refs.contains_key(&key) {
                                push_new(&mut needs.refs, key);
                            }
                        }
                        Payload::Edit(e) => {
                            let key = (e.supersedes, id.clone(), e.author.clone());
                            if !reads.refs.contains_key(&key) {
                                push_new(&mut needs.refs, key);
                            }
                            if !reads.beams.contains_key(&e.supersedes) {
                                push_new(&mut needs.beams, e.supersedes);
                            }
                        }
                        _ => {}
                    }
                }
                Input::Delete { tombstone, path } => {
                    let text = path.to_string();
                    if !reads.stored.contains_key(&text) {
                        push_new(&mut needs.stored, text);
                    }
                    let key = (tombstone.beam, tombstone.author.clone());
                    match reads.referencing.get(&key) {
                        Some(spaces) => {
                            for id in spaces {
                                self.known(reads, &mut needs, id);
                            }
                        }
                        None => push_new(&mut needs.referencing, key),
                    }
                }
                Input::Edit { edit, .. } => {
                    if !reads.beams.contains_key(&edit.supersedes) {
                        push_new(&mut needs.beams, edit.supersedes);
                    }
                    let key = (edit.supersedes, edit.author.clone());
                    match reads.referencing.get(&key) {
                        Some(spaces) => {
                            for id in spaces {
                                self.known(reads, &mut needs, id);
                            }
                        }
                        None => push_new(&mut needs.referencing, key),
                    }
                }
                Input::StoreBeam { .. } => {}
                Input::Remove { space } => {
                    self.known(reads, &mut needs, space);
                }
                Input::Replicate { events, .. } => {
                    for item in events {
                        let event = item.event();
                        let Some(state) = self.known(reads, &mut needs, &event.space) else {
                            continue;
                        };
                        let key = (event.space.clone(), event.seq);
                        if event.seq <= state.head_seq
                            && state.recent_id(event.seq) != Some(item.id())
                            && !reads.held.contains_key(&key)
                        {
                            push_new(&mut needs.held, key);
                        }
                    }
                }
            }
        }
        needs
    }

    /// A space's state, from memory or `reads`; a space neither has is asked for.
    fn known<'a>(
        &'a self,
        reads: &'a Reads,
        needs: &mut Needs,
        id: &SpaceId,
    ) -> Option<&'a SpaceState> {
        if let Some(state) = self.spaces.get(id) {
            return Some(state);
        }
        match reads.spaces.get(id) {
            Some(state) => state.as_ref(),
            None => {
                push_new(&mut needs.spaces, id.clone());
                None
            }
        }
    }

    /// Whether more spaces are in memory than are kept: the caller empties the cache with
    /// [`Core::trim`] once nothing decided here is uncommitted (the store then holds every
    /// state the cache would lose), and before it asks [`Core::needs`].
    pub fn over_cache(&self) -> bool {
        self.spaces.len() > MAX_CACHED_SPACES
    }

    /// Forget every space's state and tree; each loads from the store on its next use. Only
    /// when nothing decided is uncommitted, before [`Core::needs`].
    pub fn trim(&mut self) {
        self.spaces.clear();
        self.trees.clear();
    }

    /// Decide `inputs` with what the store said (`reads`, which answer [`Core::needs`]) at
    /// time `now` (ms).
    pub fn decide(&mut self, inputs: Vec<Input>, reads: &Reads, now: u64) -> Decided {
        self.group = GroupBeams::default();
        for (id, state) in &reads.spaces {
            if let Some(state) = state
                && !self.spaces.contains_key(id)
            {
                self.spaces.insert(id.clone(), state.clone());
            }
        }
        for (id, known) in &reads.beams {
            for beam in known {
                if beam.deleted {
                    self.group.tombstoned.insert(*id);
                }
                self.group.owners.insert(*id, beam.author.clone());
            }
        }
        for input in &inputs {
            // A post here carries its beam, checked to be the ref's author's.
            if let Input::Append {
                payload,
                beam: Some(_),
                ..
            } = input
                && let Payload::BeamRef(r) = payload.as_ref()
            {
                self.group.owners.insert(r.beam, r.author.clone());
            }
        }
        let mut decided = Decided::default();
        let mut group = Pending::default();
        for input in inputs {
            let outcome = self.decide_one(input, reads, now, &mut decided.saved, &mut group);
            decided.outcomes.push(outcome);
        }
        decided.ops = group.ops;
        decided.live = group.live;
        decided.forward = group.forward;
        decided
    }

    fn decide_one(
        &mut self,
        input: Input,
        reads: &Reads,
        now: u64,
        saved: &mut HashMap<SpaceId, Option<SpaceState>>,
        group: &mut Pending,
    ) -> Outcome {
        let result = match input {
            Input::Create(genesis) => {
                self.save(saved, &genesis.space);
                self.create(*genesis, now).map(|p| (first_ack(&p), p))
            }
            Input::Append {
                space,
                payload,
                beam,
                via,
            } => {
                self.save(saved, &space);
                self.append(&space, *payload, beam, via.as_ref(), reads, now)
                    .map(|p| (first_ack(&p), p))
            }
            Input::Delete { tombstone, path } => self
                .delete(*tombstone, path, reads, now, saved)
                .map(|(p, remote)| {
                    let acks = p.acks.clone();
                    (Outcome::Deleted(Deleted { acks, remote }), p)
                }),
            Input::Edit { edit, beam } => {
                self.edit(*edit, *beam, reads, now, saved)
                    .map(|(p, remote)| {
                        let acks = p.acks.clone();
                        (Outcome::Deleted(Deleted { acks, remote }), p)
                    })
            }
            Input::StoreBeam { beam, space } => beam_row(&beam).map(|row| {
                self.group.stored.insert(row.path.clone());
                let pending = Pending {
                    ops: vec![
                        Op::Posted {
                            path: row.path.clone(),
                            space: space.to_string(),
                        },
                        Op::PutBeam(row),
                    ],
                    ..Pending::default()
                };
                (Outcome::Stored, pending)
            }),
            Input::Remove { space } => {
                self.save(saved, &space);
                self.trees.remove(&space);
                match self.spaces.remove(&space) {
                    Some(_) => Ok((
                        Outcome::Stored,
                        Pending {
                            ops: vec![Op::DropSpace {
                                space: space.to_string(),
                                removed_at: now,
                            }],
                            ..Pending::default()
                        },
                    )),
                    None => Err(SequenceError::SpaceNotFound(space.to_string())),
                }
            }
            Input::Replicate { events, create } => {
                let mut last = None;
                for item in &events {
                    if last != Some(&item.event().space) {
                        self.save(saved, &item.event().space);
                        last = Some(&item.event().space);
                    }
                }
                let (pending, replicated) = self.replicate(events, create, reads, now);
                Ok((Outcome::Replicated(replicated), pending))
            }
        };
        match result {
            Ok((outcome, pending)) => {
                group.extend(pending);
                outcome
            }
            Err(e) => Outcome::Refused(e),
        }
    }

    /// Put back the states a failed commit would have moved.
    pub fn rollback(&mut self, saved: HashMap<SpaceId, Option<SpaceState>>) {
        for (space, state) in saved {
            self.trees.remove(&space);
            match state {
                Some(state) => self.spaces.insert(space, state),
                None => self.spaces.remove(&space),
            };
        }
    }

    /// The node's DID.
    pub fn did(&self) -> &Did {
        self.key.did()
    }

    /// The nodes of `space`'s broadcast tree, derived again only when its membership changed.
    pub fn tree_nodes(&mut self, space: &SpaceId) -> Option<Arc<TreeNodes>> {
        let state = self.spaces.get(space)?;
        if let Some((_, nodes)) = self
            .trees
            .get(space)
            .filter(|(version, _)| *version == state.members_version)
        {
            return Some(nodes.clone());
        }
        let nodes = Arc::new(state.tree_nodes());
        self.trees
            .insert(space.clone(), (state.members_version, nodes.clone()));
        Some(nodes)
    }

    /// A space's state, if this node holds it (loaded into memory by [`Core::decide`]).
    pub fn state(&self, space: &SpaceId) -> Option<&SpaceState> {
        self.spaces.get(space)
    }

    fn save(&self, saved: &mut HashMap<SpaceId, Option<SpaceState>>, space: &SpaceId) {
        saved
            .entry(space.clone())
            .or_insert_with(|| self.spaces.get(space).cloned());
    }

    fn create(&mut self, genesis: SpaceGenesis, now: u64) -> Result<Pending, SequenceError> {
        let id = genesis.space.clone();
        if self.spaces.contains_key(&id) {
            return Err(SequenceError::SpaceExists(id.to_string()));
        }
        let event = Event::sequence(
            &self.key,
            id.clone(),
            1,
            None,
            now,
            Payload::Create(genesis.clone()),
        )?;
        let mut pending = Pending {
            ops: vec![Op::CreateSpace(space_row(&genesis))],
            ..Pending::default()
        };
        let event_id = event.id()?;
        push_event(
            &mut pending,
            &event,
            event_id,
            &[SpaceState::owner_change(&genesis)],
        )?;
        self.spaces
            .insert(id, SpaceState::genesis(&genesis, event_id));
        Ok(pending)
    }

    fn append(
        &mut self,
        space: &SpaceId,
        payload: Payload,
        beam: Option<Box<Beam>>,
        via: Option<&Did>,
        reads: &Reads,
        now: u64,
    ) -> Result<Pending, SequenceError> {
        match &payload {
            Payload::Tombstone(t) => {
                let in_group =
                    self.group.refs.iter().any(|(beam, s, author)| {
                        *beam == t.beam && s == space && *author == t.author
                    });
                // Asked for a tombstone appended alone; a deletion read the spaces with refs.
                let committed = reads
                    .refs
                    .get(&(t.beam, space.clone(), t.author.clone()))
                    .copied()
                    .unwrap_or(false)
                    || reads
                        .referencing
                        .get(&(t.beam, t.author.clone()))
                        .is_some_and(|spaces| spaces.contains(space));
                if !(in_group || committed) {
                    return Err(Refusal::Forbidden(
                        "this space has no ref to that beam by the tombstone's author",
                    )
                    .into());
                }
            }
            Payload::Edit(e) => {
                if self.group.deleted.contains(&e.supersedes)
                    || self.group.tombstoned.contains(&e.supersedes)
                {
                    return Err(SequenceError::BeamDeleted(e.supersedes.to_string()));
                }
                let committed = reads
                    .refs
                    .get(&(e.supersedes, space.clone(), e.author.clone()))
                    .copied()
                    .unwrap_or(false)
                    || reads
                        .referencing
                        .get(&(e.supersedes, e.author.clone()))
                        .is_some_and(|spaces| spaces.contains(space));
                let in_group = self.group.refs.iter().any(|(beam, s, author)| {
                    *beam == e.supersedes && s == space && *author == e.author
                });
                if !(in_group || committed) {
                    return Err(Refusal::Forbidden(
                        "this space has no ref to that beam by the edit's author",
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
        let state = self
            .spaces
            .get(space)
            .filter(|state| state.sequencer == *self.key.did())
            .ok_or_else(|| SequenceError::SpaceNotFound(space.to_string()))?;
        if let Some(via) = via {
            check_home(state, &payload, via)?;
        }
        // A tombstone a node signed is that node's operator removing the beam: only the beam's
        // home node may, which is the author's home in this space, or this node itself.
        if let Payload::Tombstone(Tombstone {
            node: Some(node),
            author,
            ..
        }) = &payload
        {
            let home = state.home_of(author).map(|h| &h.node);
            if node != self.key.did() && home != Some(node) {
                return Err(Refusal::Forbidden(
                    "a tombstone signed by a node must come from the author's home node",
                )
                .into());
            }
        }
        let changes = state.admit(&payload)?;
        let (seq, prev) = (state.head_seq + 1, state.head_id);
        let mut pending = Pending::default();
        // A post into a space sequenced here: its ref is in the log in the same transaction,
        // so no `Op::Posted` is needed to know it (and the hot path writes one row less).
        // The beam's JSON also rides with the live event, for subscribers that inline beams.
        let mut inline = None;
        if let Some(beam) = beam {
            let row = beam_row(&beam)?;
            inline = Some(row.json.clone());
            pending.ops.push(Op::PutBeam(row));
        } else if matches!(payload, Payload::Edit(_)) {
            inline = self.edit_inline.clone();
        }
        let event = Event::sequence(&self.key, space.clone(), seq, Some(prev), now, payload)?;
        let event_id = event.id()?;
        if let Payload::BeamRef(r) = &event.payload {
            self.group
                .refs
                .push((r.beam, space.clone(), r.author.clone()));
        }
        push_post(&mut pending, &event, event_id, &changes, inline)?;
        if let Some(state) = self.spaces.get_mut(space) {
            state.apply(seq, event_id, &changes);
        }
        Ok(pending)
    }

    /// The spaces that carry `author`'s ref to `beam` (in the store, and appended earlier in
    /// this group, which the store does not hold yet): those this node sequences, with their
    /// state before this group, and the others, with their sequencer's authority and DID.
    fn referring(
        &self,
        beam: ContentId,
        author: &Did,
        reads: &Reads,
    ) -> Result<(Vec<LocalSpace>, Vec<RemoteSpace>), SequenceError> {
        let mut referencing = reads
            .referencing
            .get(&(beam, author.clone()))
            .cloned()
            .unwrap_or_default();
        for (id, space, by) in &self.group.refs {
            if *id == beam && by == author && !referencing.contains(space) {
                referencing.push(space.clone());
            }
        }
        let own = self.key.did();
        let mut local = Vec::new();
        let mut remote = Vec::new();
        for space in referencing {
            let Some(state) = self.spaces.get(&space) else {
                return Err(SequenceError::SpaceNotFound(space.to_string()));
            };
            if state.sequencer == *own {
                local.push((space, state.clone()));
            } else {
                remote.push((space, state.authority.clone(), state.sequencer.clone()));
            }
        }
        Ok((local, remote))
    }

    /// Store the version `beam` of the beam `edit` supersedes and append the edit to every
    /// space this node sequences that carries a ref to that beam by its author; the others are
    /// returned, for the home node to submit the edit to their sequencers. The handler checked
    /// that this node stores the beam, its versions and the edit's order; here only a deletion
    /// decided since can still refuse it.
    fn edit(
        &mut self,
        edit: Edit,
        beam: Beam,
        reads: &Reads,
        now: u64,
        saved: &mut HashMap<SpaceId, Option<SpaceState>>,
    ) -> Result<(Pending, Vec<RemoteSpace>), SequenceError> {
        if self.group.deleted.contains(&edit.supersedes)
            || self.group.tombstoned.contains(&edit.supersedes)
        {
            return Err(SequenceError::BeamDeleted(edit.supersedes.to_string()));
        }
        let row = beam_row(&beam)?;
        self.group.stored.insert(row.path.clone());
        let inline = row.json.clone();
        let mut pending = Pending {
            ops: vec![Op::PutBeam(row), edit_op(&edit)?],
            ..Pending::default()
        };
        let (local, remote) = self.referring(edit.supersedes, &edit.author, reads)?;
        // The version rides with each live edit event, for subscribers that inline beams.
        self.edit_inline = Some(inline);
        for (space, before) in &local {
            saved
                .entry(space.clone())
                .or_insert_with(|| Some(before.clone()));
            match self.append(space, Payload::Edit(edit.clone()), None, None, reads, now) {
                Ok(mut more) => {
                    // The edit's row is written once, above.
                    more.ops.retain(|op| !matches!(op, Op::Edit { .. }));
                    pending.extend(more);
                }
                Err(e) => {
                    self.edit_inline = None;
                    for (space, before) in local {
                        self.spaces.insert(space, before);
                    }
                    return Err(e);
                }
            }
        }
        self.edit_inline = None;
        Ok((pending, remote))
    }

    fn delete(
        &mut self,
        tombstone: Tombstone,
        path: BeamPath,
        reads: &Reads,
        now: u64,
        saved: &mut HashMap<SpaceId, Option<SpaceState>>,
    ) -> Result<(Pending, Vec<RemoteSpace>), SequenceError> {
        let path_text = path.to_string();
        let stored = self.group.stored.contains(&path_text)
            || reads.stored.get(&path_text).copied().unwrap_or(false);
        if !stored || self.group.deleted.contains(&tombstone.beam) {
            return Err(SequenceError::BeamNotFound(path_text));
        }
        self.tombstones.insert(tombstone.beam);
        let mut pending = Pending {
            ops: vec![Op::DeleteBeam {
                path: path_text,
                beam: tombstone.beam.to_string(),
                author: tombstone.author.to_string(),
                tombstone: serde_json::to_string(&tombstone).map_err(StoreError::from_json)?,
            }],
            ..Pending::default()
        };
        // Only the author's own refs: anyone else's ref to this id names another path, where
        // no beam is, and must not be able to hold the deletion up.
        let (local, remote) = self.referring(tombstone.beam, &tombstone.author, reads)?;
        for (space, before) in &local {
            saved
                .entry(space.clone())
                .or_insert_with(|| Some(before.clone()));
            match self.append(
                space,
                Payload::Tombstone(tombstone.clone()),
                None,
                None,
                reads,
                now,
            ) {
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
}

/// The row of an edit: kept on every node that holds it, so every node resolves the same
/// current version and drops what the edit drops (`spec/` §4.10).
pub(super) fn edit_op(edit: &Edit) -> Result<Op, SequenceError> {
    Ok(Op::Edit {
        id: edit.content_id()?.to_string(),
        original: edit.supersedes.to_string(),
        author: edit.author.to_string(),
        version: edit.version,
        beam: edit.beam.to_string(),
        drop_history: edit.drop_history,
        json: serde_json::to_string(edit).map_err(StoreError::from_json)?,
    })
}

fn push_new<T: PartialEq>(list: &mut Vec<T>, item: T) {
    if !list.contains(&item) {
        list.push(item);
    }
}

fn first_ack(pending: &Pending) -> Outcome {
    match pending.acks.first() {
        Some(ack) => Outcome::Ack(ack.clone()),
        // Every append queues exactly one event.
        None => Outcome::Refused(SequenceError::ShuttingDown),
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
        // A version lives on the author's home node, which alone stores it and submits the edit.
        Payload::Edit(e) => state.home_of(&e.author),
        Payload::Create(_) => return Err(Refusal::SecondGenesis),
    };
    match home {
        Some(home) if &home.node == via => Ok(()),
        _ => Err(Refusal::NotHome),
    }
}

#[cfg(test)]
#[path = "decide_tests.rs"]
mod tests;
