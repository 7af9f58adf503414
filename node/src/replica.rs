//! Replicas: how the writer adds events of spaces another node sequences.
//!
//! Events reach here already verified (the sequencer's and the author's signatures, checked by
//! whoever received them). What is left is the chain: an event is added only if it is the next
//! one (`seq = head + 1` and `prev` = the head's id). One already held is a duplicate if its id
//! matches and a fork if it does not: the rival is refused and kept with the held event as proof.
//! An event past a gap stops the batch and asks for a catch-up. Nothing refused is forwarded.

use northstar_protocol::address::SpaceId;
use northstar_protocol::wire::{Event, Payload};
use northstar_protocol::{ContentId, SignatureError};

use crate::sequencer::{Pending, SequenceError, Sequencer, corrupt, now_ms, push_event, space_row};
use crate::space::SpaceState;
use crate::store::Op;

/// An event with its id, computed where it was verified (on any core) so the single writer
/// does not encode it canonically once more.
#[derive(Debug, Clone)]
pub struct Identified {
    event: Event,
    id: ContentId,
}

impl Identified {
    /// The event with its id. The only way to build one, so the id is always the event's.
    pub fn new(event: Event) -> Result<Self, SignatureError> {
        let id = event.id()?;
        Ok(Self { event, id })
    }

    /// The event.
    pub fn event(&self) -> &Event {
        &self.event
    }
}

/// What a batch of events did to the replicas.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Replicated {
    /// Events added.
    pub accepted: u32,
    /// Events already held, identical.
    pub duplicates: u32,
    /// The head of the last space the batch touched, after the batch.
    pub head: u64,
    /// An event came after a gap: the sender (or the sequencer) should be asked for the rest.
    pub gap: bool,
    /// Why the batch stopped early, if it did (a fork, a broken chain, an unknown space).
    pub refused: Option<String>,
}

impl Sequencer {
    /// Add verified `events` (in any order) to the replicas they belong to.
    pub(crate) async fn replicate(
        &mut self,
        mut events: Vec<Identified>,
        create: bool,
    ) -> Result<(Pending, Replicated), SequenceError> {
        events.sort_by(|a, b| {
            a.event
                .space
                .cmp(&b.event.space)
                .then(a.event.seq.cmp(&b.event.seq))
        });
        let mut pending = Pending::default();
        let mut outcome = Replicated::default();
        for event in events {
            let step = match self.replicate_one(&mut pending, event, create).await {
                Ok(step) => step,
                // The events before this one moved the in-memory state and are queued: keep
                // them, so what is committed is what the state says; a later pull brings the
                // rest. (An error before any was queued can be returned as it is.)
                Err(e) if !pending.ops.is_empty() => {
                    tracing::error!(error = %crate::report::Causes(&e), "replication stopped part-way");
                    outcome.refused = Some(format!("the node failed part-way: {e}"));
                    break;
                }
                Err(e) => return Err(e),
            };
            match step {
                Step::Added(head) => {
                    outcome.accepted += 1;
                    outcome.head = head;
                }
                Step::Duplicate(head) => {
                    outcome.duplicates += 1;
                    outcome.head = head;
                }
                Step::Gap(head) => {
                    outcome.gap = true;
                    outcome.head = head;
                    break;
                }
                Step::Refused(reason) => {
                    outcome.refused = Some(reason);
                    break;
                }
            }
        }
        // The gossip layer forwards what was added; acks are for the sequencer's callers only.
        pending.acks.clear();
        Ok((pending, outcome))
    }

    async fn replicate_one(
        &mut self,
        pending: &mut Pending,
        Identified {
            event,
            id: event_id,
        }: Identified,
        create: bool,
    ) -> Result<Step, SequenceError> {
        let space = event.space.clone();
        let own = self.key.did().clone();
        let known = match self.state(&space).await {
            Ok(_) => true,
            Err(SequenceError::SpaceNotFound(_)) => false,
            Err(e) => return Err(e),
        };
        if !known {
            return Ok(self.start_replica(pending, event, event_id, create));
        }
        let state = self
            .spaces
            .get(&space)
            .ok_or_else(|| SequenceError::SpaceNotFound(space.to_string()))?;
        if state.sequencer == own {
            return Ok(Step::Refused(format!("{space} is sequenced here")));
        }
        let head = state.head_seq;
        if event.seq <= head {
            let held = match state.recent_id(event.seq) {
                Some(id) => Some(id),
                None => self.held_id(&space, event.seq).await?,
            };
            return Ok(match held {
                Some(id) if id == event_id => Step::Duplicate(head),
                Some(id) => self.fork(pending, &space, event.seq, id, &event).await?,
                None => Step::Refused(format!("{space} has no event {} here", event.seq)),
            });
        }
        if event.seq > head + 1 {
            return Ok(Step::Gap(head));
        }
        if event.prev != Some(state.head_id) {
            tracing::warn!(space = %space, seq = event.seq, "refused an event that breaks the prev chain");
            return Ok(Step::Refused(format!(
                "event {} of {space} does not link to event {head}",
                event.seq
            )));
        }
        let changes = SpaceState::effects(&event.payload);
        push_event(pending, &event, event_id, &changes)?;
        if let Some(state) = self.spaces.get_mut(&space) {
            state.apply(event.seq, event_id, &changes);
        }
        Ok(Step::Added(event.seq))
    }

    /// The first event of a replica this node asked for: its genesis.
    fn start_replica(
        &mut self,
        pending: &mut Pending,
        event: Event,
        event_id: ContentId,
        create: bool,
    ) -> Step {
        let genesis = match (&event.payload, create, event.seq) {
            (Payload::Create(genesis), true, 1) => genesis.clone(),
            _ => return Step::Refused(format!("{} is not replicated here", event.space)),
        };
        let changes = [SpaceState::owner_change(&genesis)];
        let before = pending.ops.len();
        pending.ops.push(Op::CreateSpace(space_row(&genesis)));
        if let Err(e) = push_event(pending, &event, event_id, &changes) {
            // No space row without its genesis event.
            pending.ops.truncate(before);
            return Step::Refused(e.to_string());
        }
        self.spaces
            .insert(event.space.clone(), SpaceState::genesis(&genesis, event_id));
        Step::Added(1)
    }

    async fn held_id(&self, space: &SpaceId, seq: u64) -> Result<Option<ContentId>, SequenceError> {
        match self.store.event(space.as_str(), seq).await? {
            Some(row) => Ok(Some(
                ContentId::parse(&row.id).map_err(|e| corrupt("events", e))?,
            )),
            None => Ok(None),
        }
    }

    /// Two different events signed for one seq: keep both as proof, refuse the rival.
    async fn fork(
        &self,
        pending: &mut Pending,
        space: &SpaceId,
        seq: u64,
        held: ContentId,
        rival: &Event,
    ) -> Result<Step, SequenceError> {
        let kept = match self.store.event(space.as_str(), seq).await? {
            Some(row) => row.json,
            // Held in this very group, not yet committed: its id is the proof's anchor.
            None => held.to_string(),
        };
        let rival_json =
            serde_json::to_string(rival).map_err(crate::store::StoreError::from_json)?;
        tracing::warn!(
            space = %space,
            seq,
            held = %held,
            "fork: the sequencer signed two different events for one seq; refused the second, kept both as proof"
        );
        pending.ops.push(Op::Fork {
            space: space.to_string(),
            seq,
            kept,
            rival: rival_json,
            detected_at: now_ms(),
        });
        Ok(Step::Refused(format!("fork at seq {seq} of {space}")))
    }
}

enum Step {
    Added(u64),
    Duplicate(u64),
    Gap(u64),
    Refused(String),
}
