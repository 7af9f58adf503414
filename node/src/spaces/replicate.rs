//! How a replica takes events of a space another node sequences: the part of [`Core`] that
//! places verified events with the protocol's chain check. Pure.

use northstar_protocol::ContentId;
use northstar_protocol::chain::{Chain, ChainError, Place};
use northstar_protocol::wire::{Event, Payload};

use super::decide::{Core, Pending, Reads, SequenceError};
use super::replica::{Identified, Replicated};
use super::rows::{push_event, space_row};
use super::rules::SpaceState;
use crate::store::Op;

impl Core {
    /// Add verified `events` (in any order) to the replicas they belong to.
    pub(super) fn replicate(
        &mut self,
        mut events: Vec<Identified>,
        create: bool,
        reads: &Reads,
        now: u64,
    ) -> (Pending, Replicated) {
        events.sort_by(|a, b| {
            let (a, b) = (a.event(), b.event());
            a.space.cmp(&b.space).then(a.seq.cmp(&b.seq))
        });
        let mut pending = Pending::default();
        let mut outcome = Replicated::default();
        for item in events {
            match self.replicate_one(&mut pending, item, create, reads, now) {
                Ok(Step::Added(head)) => {
                    outcome.accepted += 1;
                    outcome.head = head;
                }
                Ok(Step::Duplicate(head)) => {
                    outcome.duplicates += 1;
                    outcome.head = head;
                }
                Ok(Step::Gap(head)) => {
                    outcome.gap = true;
                    outcome.head = head;
                    break;
                }
                Ok(Step::Refused(reason)) => {
                    outcome.refused = Some(reason);
                    break;
                }
                // The events before this one moved the state and are queued: keep them, so
                // what is committed is what the state says; a later pull brings the rest.
                Err(e) => {
                    outcome.refused = Some(format!("the node failed part-way: {e}"));
                    break;
                }
            }
        }
        // The gossip layer forwards what was added; acks are for the sequencer's callers only.
        pending.acks.clear();
        (pending, outcome)
    }

    fn replicate_one(
        &mut self,
        pending: &mut Pending,
        item: Identified,
        create: bool,
        reads: &Reads,
        now: u64,
    ) -> Result<Step, SequenceError> {
        let (event, event_id) = (item.event(), item.id());
        let space = event.space.clone();
        let Some(state) = self.spaces.get(&space) else {
            return Ok(self.start_replica(pending, event, event_id, create));
        };
        if state.sequencer == *self.key.did() {
            return Ok(Step::Refused(format!("{space} is sequenced here")));
        }
        let head = state.head_seq;
        let chain = Chain::after(
            space.clone(),
            state.sequencer.clone(),
            head,
            Some(state.head_id),
        );
        let place = match chain.link(event, event_id) {
            Ok(place) => place,
            Err(ChainError::Fork { held, .. }) => {
                return Ok(fork(pending, event, held, reads, now));
            }
            Err(e) => {
                tracing::warn!(space = %space, seq = event.seq, error = %e, "refused an event that does not extend the replica");
                return Ok(Step::Refused(format!(
                    "event {} of {space}: {e}",
                    event.seq
                )));
            }
        };
        match place {
            Place::Head => Ok(Step::Duplicate(head)),
            Place::Ahead => Ok(Step::Gap(head)),
            Place::Behind => {
                let held = match state.recent_id(event.seq) {
                    Some(id) => Some(id),
                    None => reads
                        .held
                        .get(&(space.clone(), event.seq))
                        .and_then(|h| h.as_ref().map(|(id, _)| *id)),
                };
                Ok(match held {
                    Some(id) if id == event_id => Step::Duplicate(head),
                    Some(id) => fork(pending, event, id, reads, now),
                    None => Step::Refused(format!("{space} has no event {} here", event.seq)),
                })
            }
            Place::Next => {
                let changes = SpaceState::effects(&event.payload);
                push_event(pending, event, event_id, &changes)?;
                if let Some(state) = self.spaces.get_mut(&space) {
                    state.apply(event.seq, event_id, &changes);
                }
                Ok(Step::Added(event.seq))
            }
        }
    }

    /// The first event of a replica this node asked for: its genesis, checked by the chain.
    fn start_replica(
        &mut self,
        pending: &mut Pending,
        event: &Event,
        event_id: ContentId,
        create: bool,
    ) -> Step {
        let genesis = match (&event.payload, create) {
            (Payload::Create(genesis), true) => genesis,
            _ => return Step::Refused(format!("{} is not replicated here", event.space)),
        };
        let chain = Chain::from_start(event.space.clone(), genesis.sequencer.clone());
        if let Err(e) = chain.link(event, event_id) {
            return Step::Refused(e.to_string());
        }
        if event.seq != 1 {
            return Step::Refused(format!("{} is not replicated here", event.space));
        }
        let changes = [SpaceState::owner_change(genesis)];
        let before = pending.ops.len();
        pending.ops.push(Op::CreateSpace(space_row(genesis)));
        if let Err(e) = push_event(pending, event, event_id, &changes) {
            // No space row without its genesis event.
            pending.ops.truncate(before);
            return Step::Refused(e.to_string());
        }
        self.spaces
            .insert(event.space.clone(), SpaceState::genesis(genesis, event_id));
        Step::Added(1)
    }
}

enum Step {
    Added(u64),
    Duplicate(u64),
    Gap(u64),
    Refused(String),
}

/// Two different events signed for one seq: keep both as proof, refuse the rival.
fn fork(pending: &mut Pending, rival: &Event, held: ContentId, reads: &Reads, now: u64) -> Step {
    let space = &rival.space;
    let kept = match reads.held.get(&(space.clone(), rival.seq)) {
        Some(Some((_, json))) => json.clone(),
        // Held in this very group or only remembered by id: the id is the proof's anchor.
        _ => held.to_string(),
    };
    let rival_json = match serde_json::to_string(rival) {
        Ok(json) => json,
        Err(e) => return Step::Refused(e.to_string()),
    };
    tracing::warn!(
        space = %space,
        seq = rival.seq,
        held = %held,
        "fork: the sequencer signed two different events for one seq; refused the second, kept both as proof"
    );
    pending.ops.push(Op::Fork {
        space: space.to_string(),
        seq: rival.seq,
        kept,
        rival: rival_json,
        detected_at: now,
    });
    Step::Refused(format!("fork at seq {} of {space}", rival.seq))
}
