//! The single writer: orders, signs, commits and then broadcasts every event this node sequences.
//!
//! Requests arrive already verified (signatures are checked by the RPC handlers, in parallel, on
//! any core). The writer takes whatever is queued, up to `MAX_GROUP`, decides each with the
//! spaces' state machines ([`crate::space`]), signs the events, commits them all in one
//! transaction, and only then answers each caller and publishes to subscribers. So concurrent
//! posts share one fsync, and an acknowledged event is always durable.

use std::collections::HashMap;
use std::sync::Arc;

use northstar_protocol::address::{BeamPath, SpaceId};
use northstar_protocol::api::Ack;
use northstar_protocol::wire::{Beam, Event, MembershipAction, Payload, SpaceGenesis, Tombstone};
use northstar_protocol::{ContentId, Did, Keypair, SignatureError};
use serde_json::value::RawValue;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::hub::{Hub, LiveEvent};
use crate::space::{MemberChange, Refusal, SpaceState};
use crate::store::{BeamRow, EventRow, Op, SpaceRow, Store, StoreError};

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

enum Request {
    Create {
        genesis: Box<SpaceGenesis>,
        reply: Reply<Ack>,
    },
    Append {
        space: SpaceId,
        payload: Box<Payload>,
        beam: Option<Beam>,
        reply: Reply<Ack>,
    },
    Delete {
        tombstone: Box<Tombstone>,
        path: BeamPath,
        reply: Reply<Vec<Ack>>,
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
    pub async fn append(
        &self,
        space: SpaceId,
        payload: Payload,
        beam: Option<Beam>,
    ) -> Result<Ack, SequenceError> {
        self.ask(|reply| Request::Append {
            space,
            payload: Box::new(payload),
            beam,
            reply,
        })
        .await
    }

    /// Delete a stored beam and append its verified tombstone to every space that referenced it.
    pub async fn delete(
        &self,
        tombstone: Tombstone,
        path: BeamPath,
    ) -> Result<Vec<Ack>, SequenceError> {
        self.ask(|reply| Request::Delete {
            tombstone: Box::new(tombstone),
            path,
            reply,
        })
        .await
    }
}

/// The writer task's state.
pub struct Sequencer {
    rx: mpsc::Receiver<Request>,
    store: Store,
    key: Keypair,
    hub: Arc<Hub>,
    spaces: HashMap<SpaceId, SpaceState>,
    now: fn() -> u64,
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// What one request turned into, before the commit.
struct Pending {
    ops: Vec<Op>,
    events: Vec<(String, Arc<LiveEvent>)>,
    acks: Vec<Ack>,
}

impl Sequencer {
    /// A writer over `store`, signing with the node's `key`, publishing to `hub`.
    pub fn new(store: Store, key: Keypair, hub: Arc<Hub>) -> (Self, SequencerHandle) {
        let (tx, rx) = mpsc::channel(QUEUE);
        let sequencer = Self {
            rx,
            store,
            key,
            hub,
            spaces: HashMap::new(),
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
        tracing::debug!("sequencer stopped");
    }

    async fn process(&mut self, group: Vec<Request>) {
        let mut ops = Vec::new();
        let mut published = Vec::new();
        let mut replies: Vec<Finish> = Vec::new();
        let mut touched = Vec::new();
        for request in group {
            match request {
                Request::Create { genesis, reply } => {
                    touched.push(genesis.space.clone());
                    match self.create(*genesis).await {
                        Ok(p) => queue(&mut ops, &mut published, &mut replies, p, reply, first),
                        Err(e) => drop(reply.send(Err(e))),
                    }
                }
                Request::Append {
                    space,
                    payload,
                    beam,
                    reply,
                } => {
                    touched.push(space.clone());
                    match self.append(&space, *payload, beam).await {
                        Ok(p) => queue(&mut ops, &mut published, &mut replies, p, reply, first),
                        Err(e) => drop(reply.send(Err(e))),
                    }
                }
                Request::Delete {
                    tombstone,
                    path,
                    reply,
                } => match self.delete(*tombstone, path, &mut touched).await {
                    Ok(p) => queue(&mut ops, &mut published, &mut replies, p, reply, all),
                    Err(e) => drop(reply.send(Err(e))),
                },
            }
        }
        if ops.is_empty() {
            return;
        }
        let committed = self.store.commit(&ops).await;
        if let Err(e) = &committed {
            tracing::error!(error = %e, "commit failed; the group's requests are refused");
            // The in-memory states ran ahead of the store: forget them, reload on next use.
            for space in touched {
                self.spaces.remove(&space);
            }
        }
        for reply in replies {
            reply(committed.as_ref().map(|_| ()));
        }
        if committed.is_ok() {
            for (space, event) in published {
                self.hub.publish(&space, event);
            }
        }
    }

    async fn create(&mut self, genesis: SpaceGenesis) -> Result<Pending, SequenceError> {
        let id = genesis.space.clone();
        if self.spaces.contains_key(&id) || self.store.space(id.as_str()).await?.is_some() {
            return Err(SequenceError::SpaceExists(id.to_string()));
        }
        let row = SpaceRow {
            id: id.to_string(),
            space_type: id.space_type().as_str().to_owned(),
            owner: id.owner().to_string(),
            name: genesis.name.clone(),
            sequencer: genesis.sequencer.to_string(),
            authority: genesis.authority.clone(),
            head_seq: 0,
            head_id: String::new(),
            created_at: genesis.created_at,
        };
        let owner = id.owner().clone();
        let event = Event::sequence(
            &self.key,
            id.clone(),
            1,
            None,
            (self.now)(),
            Payload::Create(genesis),
        )?;
        let mut pending = Pending {
            ops: vec![Op::CreateSpace(row)],
            events: Vec::new(),
            acks: Vec::new(),
        };
        let event_id = event.id()?;
        self.spaces
            .insert(id.clone(), SpaceState::genesis(id.clone(), event_id));
        push_event(
            &mut pending,
            &event,
            event_id,
            &[(owner, Some(crate::store::MemberState::Member))],
        )?;
        Ok(pending)
    }

    async fn append(
        &mut self,
        space: &SpaceId,
        payload: Payload,
        beam: Option<Beam>,
    ) -> Result<Pending, SequenceError> {
        let state = self.state(space).await?;
        let changes = state.admit(&payload)?;
        let (seq, prev) = (state.head_seq + 1, state.head_id);
        let mut pending = Pending {
            ops: Vec::new(),
            events: Vec::new(),
            acks: Vec::new(),
        };
        if let Some(beam) = beam {
            pending.ops.push(Op::PutBeam(beam_row(&beam)?));
        }
        if let Payload::BeamRef(r) = &payload {
            pending.ops.push(Op::BeamRef {
                beam: r.beam.to_string(),
                space: space.to_string(),
                seq,
            });
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
        touched: &mut Vec<SpaceId>,
    ) -> Result<Pending, SequenceError> {
        let path_text = path.to_string();
        if self.store.beam(&path_text).await?.is_none() {
            return Err(SequenceError::BeamNotFound(path_text));
        }
        let mut pending = Pending {
            ops: vec![Op::DeleteBeam {
                path: path_text,
                beam: tombstone.beam.to_string(),
                author: tombstone.author.to_string(),
                tombstone: serde_json::to_string(&tombstone).map_err(StoreError::from_json)?,
            }],
            events: Vec::new(),
            acks: Vec::new(),
        };
        let mut spaces = Vec::new();
        for space in self
            .store
            .spaces_referencing(&tombstone.beam.to_string())
            .await?
        {
            let space = SpaceId::parse(&space).map_err(|e| corrupt("beam_refs", e))?;
            // Snapshot each state: if any space refuses, none of them may move.
            let saved = self.state(&space).await?.clone();
            spaces.push((space, saved));
        }
        for (space, _) in &spaces {
            match self
                .append(space, Payload::Tombstone(tombstone.clone()), None)
                .await
            {
                Ok(more) => {
                    touched.push(space.clone());
                    pending.ops.extend(more.ops);
                    pending.events.extend(more.events);
                    pending.acks.extend(more.acks);
                }
                Err(e) => {
                    for (space, saved) in spaces {
                        self.spaces.insert(space, saved);
                    }
                    return Err(e);
                }
            }
        }
        Ok(pending)
    }

    async fn state(&mut self, space: &SpaceId) -> Result<&SpaceState, SequenceError> {
        if !self.spaces.contains_key(space) {
            let row = self
                .store
                .space(space.as_str())
                .await?
                .filter(|row| row.sequencer == self.key.did().as_str())
                .ok_or_else(|| SequenceError::SpaceNotFound(space.to_string()))?;
            let head_id = ContentId::parse(&row.head_id).map_err(|e| corrupt("spaces", e))?;
            let mut members = Vec::new();
            for (did, member_state) in self.store.members(space.as_str()).await? {
                members.push((
                    Did::parse(&did).map_err(|e| corrupt("members", e))?,
                    member_state,
                ));
            }
            let state = SpaceState::restore(space.clone(), row.head_seq, head_id, members);
            self.spaces.insert(space.clone(), state);
        }
        self.spaces
            .get(space)
            .ok_or_else(|| SequenceError::SpaceNotFound(space.to_string()))
    }
}

fn corrupt(table: &'static str, e: impl std::fmt::Display) -> SequenceError {
    SequenceError::Store(StoreError::Corrupt {
        table,
        reason: e.to_string(),
    })
}

/// Which acks a request's reply carries: the first (a single append) or all (a deletion).
fn first(acks: Vec<Ack>) -> Option<Ack> {
    acks.into_iter().next()
}
fn all(acks: Vec<Ack>) -> Option<Vec<Ack>> {
    Some(acks)
}

fn queue<T: Send + 'static>(
    ops: &mut Vec<Op>,
    published: &mut Vec<(String, Arc<LiveEvent>)>,
    replies: &mut Vec<Finish>,
    pending: Pending,
    reply: Reply<T>,
    pick: fn(Vec<Ack>) -> Option<T>,
) {
    ops.extend(pending.ops);
    published.extend(pending.events);
    let acks = pending.acks;
    replies.push(Box::new(move |committed| {
        let answer = match committed {
            Ok(()) => pick(acks).ok_or(SequenceError::ShuttingDown),
            Err(e) => Err(SequenceError::Store(StoreError::Corrupt {
                table: "commit",
                reason: e.to_string(),
            })),
        };
        // The caller may have gone away; the event is committed all the same.
        let _ = reply.send(answer);
    }));
}

fn push_event(
    pending: &mut Pending,
    event: &Event,
    event_id: ContentId,
    changes: &[MemberChange],
) -> Result<(), SequenceError> {
    let json = serde_json::to_string(event).map_err(StoreError::from_json)?;
    let space = event.space.to_string();
    for (did, state) in changes {
        pending.ops.push(Op::Member {
            space: space.clone(),
            did: did.to_string(),
            state: *state,
            seq: event.seq,
        });
    }
    pending.ops.push(Op::Event(EventRow {
        space: space.clone(),
        seq: event.seq,
        id: event_id.to_string(),
        kind: event.payload.kind().to_owned(),
        author: event.author().to_string(),
        json: json.clone(),
    }));
    let raw = RawValue::from_string(json).map_err(StoreError::from_json)?;
    pending.events.push((
        space,
        Arc::new(LiveEvent {
            seq: event.seq,
            json: raw,
            removes: match &event.payload {
                Payload::Membership(m)
                    if matches!(
                        m.action,
                        MembershipAction::Leave | MembershipAction::Kick | MembershipAction::Ban
                    ) =>
                {
                    Some(m.subject.clone())
                }
                _ => None,
            },
        }),
    ));
    pending.acks.push(Ack {
        space: event.space.clone(),
        event_id,
        seq: event.seq,
    });
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
