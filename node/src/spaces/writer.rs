//! The single writer: every change to the database goes through this one task.
//!
//! Requests arrive with signatures checked (by the RPC handlers, in parallel, on any core). The
//! writer takes whatever is queued, up to `MAX_GROUP`, reads what the decisions need from the
//! store, lets [`Core`] decide them all without I/O, commits the result in one transaction, and
//! only then answers each caller, publishes to local subscribers and hands the events to the
//! outbox for the spaces' broadcast trees. So concurrent posts share one fsync, and an
//! acknowledged event is always durable. Commits are pipelined: while one group commits in a
//! task of its own, the requests that arrive are decided into the next group, which commits
//! once the first is durable ([`Writer::run`]). A replica's new events are the exception to
//! "after the commit": they go to the outbox as soon as they are decided (`spec/protocol.md`
//! §9.4). It uses the store, the hub and the pure parts of [`crate::spaces`]; nothing it uses
//! knows about it.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use northstar_protocol::address::{BeamPath, SpaceId};
use northstar_protocol::api::Ack;
use northstar_protocol::wire::{Beam, Edit, Event, Payload, SpaceGenesis, Tombstone};
use northstar_protocol::{ContentId, Did, Keypair};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

use super::decide::{
    Core, Decided, Deleted, Input, Known, MAX_KNOWN_TOMBSTONES, Needs, Outcome, Reads,
    SequenceError, Tombstones,
};
use super::replica::{Identified, Replicated};
use super::routing::{Broadcast, Outbox};
use super::rows::state_from_rows;
use super::rules::SpaceState;
use crate::clock::now_ms;
use crate::delivery::Delivery;
use crate::hub::Hub;
use crate::metrics::Metrics;
use crate::store::{Op, Store, StoreError};

/// Requests waiting for the writer. When full, callers wait: that is the write path's
/// backpressure.
const QUEUE: usize = 4096;

/// The most requests committed in one transaction.
const MAX_GROUP: usize = 256;

/// Rounds of reads before a group is decided: a deletion needs the spaces that refer to its
/// beam before it can ask for their states, and a replica its state before its held events.
const READ_ROUNDS: usize = 3;

type Reply<T> = oneshot::Sender<Result<T, SequenceError>>;

enum Answer {
    Ack(Reply<Ack>),
    Deleted(Reply<Deleted>),
    Stored(Reply<()>),
    Replicated(Reply<Replicated>),
}

struct Request {
    input: Input,
    answer: Answer,
}

/// A cloneable handle to the writer.
#[derive(Debug, Clone)]
pub struct SequencerHandle {
    tx: mpsc::Sender<Request>,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.input.fmt(f)
    }
}

impl SequencerHandle {
    async fn ask<T>(
        &self,
        input: Input,
        answer: impl FnOnce(Reply<T>) -> Answer,
    ) -> Result<T, SequenceError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Request {
                input,
                answer: answer(reply),
            })
            .await
            .map_err(|_| SequenceError::ShuttingDown)?;
        rx.await.map_err(|_| SequenceError::ShuttingDown)?
    }

    /// Found a space from its verified genesis.
    pub async fn create(&self, genesis: SpaceGenesis) -> Result<Ack, SequenceError> {
        self.ask(Input::Create(Box::new(genesis)), Answer::Ack)
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
        let input = Input::Append {
            space,
            payload: Box::new(payload),
            beam: beam.map(Box::new),
            via,
        };
        self.ask(input, Answer::Ack).await
    }

    /// Delete a stored beam and append its verified tombstone to every space this node
    /// sequences that referred to it; the spaces sequenced elsewhere are returned.
    pub async fn delete(
        &self,
        tombstone: Tombstone,
        path: BeamPath,
    ) -> Result<Deleted, SequenceError> {
        let input = Input::Delete {
            tombstone: Box::new(tombstone),
            path,
        };
        self.ask(input, Answer::Deleted).await
    }

    /// Store `beam`, a verified new version of one of this node's users' beams, keep its
    /// verified `edit` and append the edit to every space this node sequences that carries a ref
    /// to the beam; the spaces sequenced elsewhere are returned (`spec/` §6.3.25).
    pub async fn edit(&self, edit: Edit, beam: Beam) -> Result<Deleted, SequenceError> {
        let input = Input::Edit {
            edit: Box::new(edit),
            beam: Box::new(beam),
        };
        self.ask(input, Answer::Deleted).await
    }

    /// Drop `space` and everything of it from this node, by the operator's decision; it is
    /// neither created nor replicated here again.
    pub async fn remove(&self, space: SpaceId) -> Result<(), SequenceError> {
        self.ask(Input::Remove { space }, Answer::Stored).await
    }

    /// Store a verified beam by one of this node's users, posted into `space` (before its ref
    /// goes to that space's remote sequencer).
    pub async fn store_beam(&self, beam: Beam, space: SpaceId) -> Result<(), SequenceError> {
        let input = Input::StoreBeam {
            beam: Box::new(beam),
            space,
        };
        self.ask(input, Answer::Stored).await
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
        self.ask(Input::Replicate { events, create }, Answer::Replicated)
            .await
    }
}

/// The writer task: the core's decisions around the store.
pub struct Writer {
    rx: mpsc::Receiver<Request>,
    store: Store,
    core: Core,
    hub: Arc<Hub>,
    outbox: Option<Outbox<Event>>,
    metrics: Option<Arc<Metrics>>,
    delivery: Option<Arc<Delivery>>,
}

impl Writer {
    /// A writer over `store`, signing with the node's `key`, publishing to `hub`, and handing
    /// committed events to `outbox` for the spaces' broadcast trees.
    pub fn new(
        store: Store,
        key: Keypair,
        hub: Arc<Hub>,
        outbox: Option<Outbox<Event>>,
    ) -> (Self, SequencerHandle) {
        let (tx, rx) = mpsc::channel(QUEUE);
        let writer = Self {
            rx,
            store,
            core: Core::new(key),
            hub,
            outbox,
            metrics: None,
            delivery: None,
        };
        (writer, SequencerHandle { tx })
    }

    /// Tell `delivery` the head, times and tree of each space this node sequences, as its
    /// events commit (delivery health, `spec/protocol.md` §9.9).
    pub fn with_delivery(mut self, delivery: Arc<Delivery>) -> Self {
        self.delivery = Some(delivery);
        self
    }

    /// Record each group commit's size, time and outcome in `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Serve requests until `shutdown`; then finish what is queued and stop.
    ///
    /// Pipelined: while one group commits (on the store's side, a transaction and its fsync),
    /// the writer decides the requests that arrive into the next group, signing its events;
    /// that group commits as soon as the first one is durable. Only a request whose reads
    /// could see the uncommitted group waits for it: any read but a lookup of beam ids neither
    /// uncommitted group touches.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let tombstones = load_tombstones(&self.store).await;
        self.core.know_tombstones(tombstones);
        let mut flight: Option<InFlight> = None;
        let mut forming: Option<Forming> = None;
        let mut closing = false;
        loop {
            let next = tokio::select! {
                // A finished commit first: the group behind it is ready to go.
                biased;
                result = committed(&mut flight) => Next::Committed(result),
                request = self.rx.recv(), if forming.as_ref().is_none_or(Forming::has_room) => {
                    Next::Request(request)
                }
                () = shutdown.cancelled(), if !closing => Next::Shutdown,
            };
            match next {
                Next::Shutdown => {
                    // Finish what is queued; `recv` then ends the loop.
                    closing = true;
                    self.rx.close();
                }
                Next::Committed(result) => {
                    if let Some(done) = flight.take() {
                        self.land(done, result, &mut forming);
                    }
                }
                Next::Request(None) => break,
                Next::Request(Some(first)) => {
                    let mut batch = vec![first];
                    let room = forming.as_ref().map_or(MAX_GROUP, Forming::room);
                    while batch.len() < room {
                        match self.rx.try_recv() {
                            Ok(request) => batch.push(request),
                            Err(_) => break,
                        }
                    }
                    self.decide_batch(batch, &mut flight, &mut forming).await;
                }
            }
            if flight.is_none()
                && let Some(group) = forming.take()
            {
                flight = self.start_commit(group);
            }
        }
        self.settle(&mut flight, &mut forming).await;
        tracing::debug!("writer stopped");
    }

    /// Decide `batch` into the group being formed, reading what it needs from the store. If
    /// those reads could see a group that is decided but not yet durable, the groups before it
    /// are committed first.
    async fn decide_batch(
        &mut self,
        batch: Vec<Request>,
        flight: &mut Option<InFlight>,
        forming: &mut Option<Forming>,
    ) {
        let (inputs, answers): (Vec<Input>, Vec<Answer>) =
            batch.into_iter().map(|r| (r.input, r.answer)).unzip();
        if self.core.over_cache() {
            // The cache may lose only states the store holds: commit everything first.
            self.settle(flight, forming).await;
            self.core.trim();
        }
        let mut reads = Reads::default();
        let mut rounds = 0;
        while rounds < READ_ROUNDS {
            let needs = self.core.needs(&inputs, &reads);
            if needs.is_empty() {
                break;
            }
            let uncommitted: Vec<&Uncommitted> = flight
                .iter()
                .map(|f| &f.touched)
                .chain(forming.iter().map(|f| &f.touched))
                .collect();
            if !independent(&needs, &uncommitted) {
                // Wait until nothing is uncommitted, then ask again: a failed commit may
                // have rolled back what the questions were asked of.
                self.settle(flight, forming).await;
                continue;
            }
            rounds += 1;
            if let Err(e) = read(&self.store, needs, &mut reads).await {
                tracing::error!(error = %crate::report::Causes(&e), "cannot read what the group needs; the group is refused");
                for answer in answers {
                    reply(
                        answer,
                        Outcome::Refused(SequenceError::Store(e.clone_for_reply())),
                    );
                }
                return;
            }
        }
        let mut decided = self.core.decide(inputs, &reads, now_ms());
        // A replica's new events go down the tree before they are durable here: the sequencer
        // holds them durably, and a child that misses them because this commit fails catches
        // up. So a hop costs a verification and a socket write, not this node's fsync. Events
        // this node sequences wait for the commit: their ack promises durability.
        let (ours, theirs) = self.split_forward(std::mem::take(&mut decided.forward));
        let now = self.broadcasts(theirs);
        self.send(now);
        let broadcasts = self.broadcasts(ours);
        let touched = Uncommitted::of(&decided.ops);
        match forming {
            Some(group) => group.absorb(decided, answers, touched, broadcasts),
            None => {
                *forming = Some(Forming {
                    decided,
                    answers,
                    touched,
                    broadcasts,
                });
            }
        }
    }

    /// Commit the group in flight and the one being formed, one after the other, and wait
    /// for both.
    async fn settle(&mut self, flight: &mut Option<InFlight>, forming: &mut Option<Forming>) {
        if let Some(mut done) = flight.take() {
            let result = flatten((&mut done.commit).await);
            self.land(done, result, forming);
        }
        if let Some(group) = forming.take()
            && let Some(mut done) = self.start_commit(group)
        {
            let result = flatten((&mut done.commit).await);
            // Nothing is decided after it yet: a failure has nothing more to undo.
            self.land(done, result, &mut None);
        }
    }

    /// Start committing `group` in a task of its own, so the writer goes on deciding; `None`
    /// if it has nothing to write (each request was refused, or changed nothing), in which
    /// case it is answered now: every group before it is durable.
    fn start_commit(&mut self, group: Forming) -> Option<InFlight> {
        let Forming {
            mut decided,
            answers,
            touched,
            broadcasts,
        } = group;
        let saved = decided.take_saved();
        let ops = std::mem::take(&mut decided.ops);
        let done = Landing {
            decided,
            answers,
            saved,
            broadcasts,
        };
        if ops.is_empty() {
            self.finish(done, Ok(()));
            return None;
        }
        let store = self.store.clone();
        let metrics = self.metrics.clone();
        if let Some(metrics) = &metrics {
            metrics.commit_group_size.observe(done.answers.len() as f64);
        }
        Some(InFlight {
            commit: AbortOnDropHandle::new(tokio::spawn(async move {
                let started = std::time::Instant::now();
                let result = store.commit(&ops).await;
                if let Some(metrics) = metrics {
                    metrics
                        .commit_seconds
                        .observe(started.elapsed().as_secs_f64());
                    let outcome = if result.is_ok() { "ok" } else { "error" };
                    metrics
                        .commits
                        .get_or_create(&crate::metrics::OutcomeLabel { outcome })
                        .inc();
                }
                result
            })),
            done,
            touched,
        })
    }

    /// The commit in flight ended with `result`: if it failed, first refuse the group formed
    /// on top of it (undoing its states, which were moved after the failed group's), then
    /// finish the failed group, whose rollback takes the states back to before it.
    fn land(
        &mut self,
        done: InFlight,
        result: Result<(), StoreError>,
        forming: &mut Option<Forming>,
    ) {
        if result.is_err() {
            self.refuse_forming(forming.take());
        }
        self.finish(done.done, result);
    }

    /// Answer a group whose commit ended with `result`, then publish its events; if the
    /// commit failed, put back the states it moved and refuse it. Any group decided on top of
    /// it must have been rolled back already ([`Writer::land`]).
    fn finish(&mut self, done: Landing, result: Result<(), StoreError>) {
        let Landing {
            decided,
            answers,
            saved,
            broadcasts,
        } = done;
        if let Err(e) = &result {
            tracing::error!(error = %crate::report::Causes(e), "commit failed; the group's requests are refused");
            self.core.rollback(saved);
        }
        let Decided { live, outcomes, .. } = decided;
        for (answer, outcome) in answers.into_iter().zip(outcomes) {
            let outcome = match (&result, outcome) {
                (Err(e), outcome) if !matches!(outcome, Outcome::Refused(_)) => {
                    Outcome::Refused(commit_failed(e))
                }
                (_, outcome) => outcome,
            };
            reply(answer, outcome);
        }
        if result.is_err() {
            return;
        }
        for (space, event) in live {
            self.hub.publish(&space, event);
        }
        if let Some(delivery) = &self.delivery {
            delivery.sequenced(&broadcasts);
        }
        self.send(broadcasts);
    }

    /// Refuse a group decided on top of one whose commit failed, after putting back the
    /// states it moved (which the failed group's rollback then takes further back).
    fn refuse_forming(&mut self, group: Option<Forming>) {
        let Some(Forming {
            mut decided,
            answers,
            ..
        }) = group
        else {
            return;
        };
        self.core.rollback(decided.take_saved());
        for (answer, outcome) in answers.into_iter().zip(decided.outcomes) {
            let outcome = match outcome {
                Outcome::Refused(e) => Outcome::Refused(e),
                _ => Outcome::Refused(SequenceError::Store(StoreError::Corrupt {
                    table: "commit",
                    reason: "the commit of the group before this one failed".to_owned(),
                })),
            };
            reply(answer, outcome);
        }
    }

    /// The events to forward: those of the spaces this node sequences, then the others.
    fn split_forward(&mut self, events: Vec<Event>) -> (Vec<Event>, Vec<Event>) {
        let own = self.core.did().clone();
        events.into_iter().partition(|event| {
            self.core
                .state(&event.space)
                .is_none_or(|state| state.sequencer == own)
        })
    }

    /// One broadcast per space of `events`, in their order, each with the space's tree as it
    /// is now: taken when the events are decided, since the cache of states may be emptied
    /// before they are committed.
    fn broadcasts(&mut self, events: Vec<Event>) -> Vec<Broadcast<Event>> {
        let mut by_space: Vec<(SpaceId, Vec<Event>)> = Vec::new();
        for event in events {
            match by_space.iter_mut().find(|(space, _)| *space == event.space) {
                Some((_, list)) => list.push(event),
                None => by_space.push((event.space.clone(), vec![event])),
            }
        }
        by_space
            .into_iter()
            .filter_map(|(space, items)| {
                let nodes = self.core.tree_nodes(&space)?;
                Some(Broadcast {
                    space,
                    nodes,
                    items: Arc::new(items),
                })
            })
            .collect()
    }

    /// Give broadcasts to the outbox.
    fn send(&self, broadcasts: Vec<Broadcast<Event>>) {
        let Some(outbox) = &self.outbox else {
            return;
        };
        for broadcast in broadcasts {
            outbox.send(broadcast);
        }
    }
}

/// What the writer's loop woke up for.
enum Next {
    Request(Option<Request>),
    Committed(Result<(), StoreError>),
    Shutdown,
}

/// A group decided and being committed.
struct InFlight {
    commit: AbortOnDropHandle<Result<(), StoreError>>,
    done: Landing,
    touched: Uncommitted,
}

/// What is left to do for a group once its commit ends.
struct Landing {
    /// Its events and outcomes (its ops went to the commit).
    decided: Decided,
    answers: Vec<Answer>,
    /// The states it moved, as they were before.
    saved: HashMap<SpaceId, Option<SpaceState>>,
    /// Its events for the spaces' trees, once committed.
    broadcasts: Vec<Broadcast<Event>>,
}

/// The group being decided while the one before it commits.
struct Forming {
    decided: Decided,
    answers: Vec<Answer>,
    touched: Uncommitted,
    broadcasts: Vec<Broadcast<Event>>,
}

impl Forming {
    fn room(&self) -> usize {
        MAX_GROUP.saturating_sub(self.answers.len())
    }

    fn has_room(&self) -> bool {
        self.room() > 0
    }

    fn absorb(
        &mut self,
        decided: Decided,
        answers: Vec<Answer>,
        touched: Uncommitted,
        broadcasts: Vec<Broadcast<Event>>,
    ) {
        self.decided.absorb(decided);
        self.answers.extend(answers);
        self.touched.beams.extend(touched.beams);
        self.broadcasts.extend(broadcasts);
    }
}

/// What a decided, uncommitted group changes that a later group's reads could ask about.
#[derive(Debug, Default)]
struct Uncommitted {
    /// Beam ids whose rows (content, cache, tombstone, refs) it writes.
    beams: HashSet<String>,
}

impl Uncommitted {
    fn of(ops: &[Op]) -> Self {
        let beams = ops
            .iter()
            .filter_map(|op| match op {
                Op::PutBeam(row) => Some(row.id.clone()),
                Op::BeamRef { beam, .. }
                | Op::Uncache { beam, .. }
                | Op::DeleteBeam { beam, .. } => Some(beam.clone()),
                _ => None,
            })
            .collect();
        Self { beams }
    }
}

/// Whether the store answers `needs` the same before and after the `uncommitted` groups
/// commit. Only beam lookups are told apart, by id (a post asks about the beam it refers to, a
/// new one as a rule); any other read (a space's state, a ref, a stored path, the spaces that
/// refer to a beam, a held event) counts as dependent, and waits. Each id is encoded once.
fn independent(needs: &Needs, uncommitted: &[&Uncommitted]) -> bool {
    if uncommitted.is_empty() {
        return true;
    }
    needs.spaces.is_empty()
        && needs.refs.is_empty()
        && needs.stored.is_empty()
        && needs.referencing.is_empty()
        && needs.held.is_empty()
        && needs.beams.iter().all(|id| {
            let id = id.to_string();
            uncommitted.iter().all(|group| !group.beams.contains(&id))
        })
}

/// The result of a commit task; one that did not run to its end (it panicked, or the runtime
/// is going away) counts as a failed commit.
fn flatten(
    result: Result<Result<(), StoreError>, tokio::task::JoinError>,
) -> Result<(), StoreError> {
    result.unwrap_or_else(|e| {
        Err(StoreError::Corrupt {
            table: "commit",
            reason: format!("the commit task ended early: {e}"),
        })
    })
}

/// The result of the commit in flight, when there is one; never, when there is none.
async fn committed(flight: &mut Option<InFlight>) -> Result<(), StoreError> {
    match flight.as_mut() {
        Some(done) => flatten((&mut done.commit).await),
        None => std::future::pending().await,
    }
}

/// The error each request of a group whose commit failed gets.
fn commit_failed(e: &StoreError) -> SequenceError {
    SequenceError::Store(StoreError::Corrupt {
        table: "commit",
        // With its causes: the database's own reason is in the source, not in the message.
        reason: crate::report::Causes(e).to_string(),
    })
}

/// Answer one request; the caller may have gone away, and what was committed stays committed.
fn reply(answer: Answer, outcome: Outcome) {
    let mismatch = || SequenceError::ShuttingDown;
    match answer {
        Answer::Ack(tx) => {
            let _ = tx.send(match outcome {
                Outcome::Ack(ack) => Ok(ack),
                Outcome::Refused(e) => Err(e),
                _ => Err(mismatch()),
            });
        }
        Answer::Deleted(tx) => {
            let _ = tx.send(match outcome {
                Outcome::Deleted(d) => Ok(d),
                Outcome::Refused(e) => Err(e),
                _ => Err(mismatch()),
            });
        }
        Answer::Stored(tx) => {
            let _ = tx.send(match outcome {
                Outcome::Stored => Ok(()),
                Outcome::Refused(e) => Err(e),
                _ => Err(mismatch()),
            });
        }
        Answer::Replicated(tx) => {
            let _ = tx.send(match outcome {
                Outcome::Replicated(r) => Ok(r),
                Outcome::Refused(e) => Err(e),
                _ => Err(mismatch()),
            });
        }
    }
}

/// Answer `needs` from the store into `reads`.
async fn read(store: &Store, needs: Needs, reads: &mut Reads) -> Result<(), StoreError> {
    for space in needs.spaces {
        let state = load_state(store, &space).await?;
        reads.spaces.insert(space, state);
    }
    if !needs.beams.is_empty() {
        let ids: Vec<String> = needs.beams.iter().map(ToString::to_string).collect();
        for id in &needs.beams {
            reads.beams.entry(*id).or_default();
        }
        for beam in store.known_beams(&ids).await? {
            let id = ContentId::parse(&beam.id).map_err(|e| corrupt("beams", e))?;
            let author = Did::parse(&beam.author).map_err(|e| corrupt("beams", e))?;
            reads.beams.entry(id).or_default().push(Known {
                author,
                deleted: beam.deleted,
            });
        }
    }
    for (beam, space, author) in needs.refs {
        let found = store
            .references(&beam.to_string(), space.as_str(), author.as_str())
            .await?;
        reads.refs.insert((beam, space, author), found);
    }
    for path in needs.stored {
        // After an edit dropped history the original's content is gone, but the beam lives on
        // as its versions and is deleted by the original's path (spec §4.10).
        let found = store.beam(&path).await?.is_some() || store.stores_version_of(&path).await?;
        reads.stored.insert(path, found);
    }
    for (beam, author) in needs.referencing {
        let mut spaces = Vec::new();
        for space in store
            .spaces_referencing(&beam.to_string(), author.as_str())
            .await?
        {
            spaces.push(SpaceId::parse(&space).map_err(|e| corrupt("beam_refs", e))?);
        }
        reads.referencing.insert((beam, author), spaces);
    }
    for (space, seq) in needs.held {
        let held = match store.event(space.as_str(), seq).await? {
            Some(row) => Some((
                ContentId::parse(&row.id).map_err(|e| corrupt("events", e))?,
                row.json,
            )),
            None => None,
        };
        reads.held.insert((space, seq), held);
    }
    Ok(())
}

/// The store's tombstones for [`Core::know_tombstones`]: not known (so every post's beam is
/// looked up) if there are too many to keep or they cannot be read.
async fn load_tombstones(store: &Store) -> Tombstones {
    let ids = match store.tombstone_ids(MAX_KNOWN_TOMBSTONES + 1).await {
        // One id that does not parse: not known, rather than known wrong.
        Ok(ids) => ids
            .iter()
            .map(|id| ContentId::parse(id))
            .collect::<Result<Vec<_>, _>>()
            .ok(),
        Err(e) => {
            tracing::warn!(error = %crate::report::Causes(&e), "cannot read the tombstones; each post's beam is looked up in the store");
            None
        }
    };
    Tombstones::from_store(ids)
}

/// A space's state as stored, if it is stored.
pub async fn load_state(store: &Store, space: &SpaceId) -> Result<Option<SpaceState>, StoreError> {
    let Some(row) = store.space(space.as_str()).await? else {
        return Ok(None);
    };
    let members = store.members(space.as_str()).await?;
    state_from_rows(space, row, members).map(Some)
}

fn corrupt(table: &'static str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        table,
        reason: e.to_string(),
    }
}
