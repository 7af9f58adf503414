//! What decisions write and read back: a space's state from its rows, and the rows, the live
//! event and the ack of each event decided. Pure.

use std::sync::Arc;

use northstar_protocol::address::SpaceId;
use northstar_protocol::api::Ack;
use northstar_protocol::wire::{Beam, Event, Home, MembershipAction, Payload, SpaceGenesis};
use northstar_protocol::{ContentId, Did};

use super::decide::{Pending, SequenceError};
use super::rules::{Member, MemberChange, SpaceState};
use crate::hub::{InlineBeam, LiveEvent};
use crate::store::{BeamRow, EventRow, HomeRow, MemberRow, Op, SpaceRow, StoreError};

/// A space's state from its stored row and member rows.
pub fn state_from_rows(
    space: &SpaceId,
    row: SpaceRow,
    members: Vec<MemberRow>,
) -> Result<SpaceState, StoreError> {
    let corrupt = |table: &'static str, e: &dyn std::fmt::Display| StoreError::Corrupt {
        table,
        reason: e.to_string(),
    };
    let head_id = ContentId::parse(&row.head_id).map_err(|e| corrupt("spaces", &e))?;
    let sequencer = Did::parse(&row.sequencer).map_err(|e| corrupt("spaces", &e))?;
    let mut restored = Vec::with_capacity(members.len());
    for m in members {
        let home = match m.home {
            Some(h) => Some(Home {
                node: Did::parse(&h.node).map_err(|e| corrupt("members", &e))?,
                authority: h.authority,
                capacity: h.capacity,
            }),
            None => None,
        };
        let did = Did::parse(&m.did).map_err(|e| corrupt("members", &e))?;
        let member = Member {
            state: m.state,
            seq: m.seq,
            home,
        };
        restored.push((did, member));
    }
    Ok(SpaceState::restore(
        space.clone(),
        sequencer,
        row.authority,
        row.fanout,
        row.head_seq,
        head_id,
        restored,
    ))
}

/// A space's row as its genesis founds it.
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
pub(super) fn push_event(
    pending: &mut Pending,
    event: &Event,
    event_id: ContentId,
    changes: &[MemberChange],
) -> Result<(), SequenceError> {
    push_post(pending, event, event_id, changes, None)
}

/// [`push_event`] for an event whose beam the caller holds: `beam_json` is the signed beam
/// its `beam_ref` names, which the live event carries to subscribers that asked for beams
/// inline (so no subscriber reads it back from the store).
pub(super) fn push_post(
    pending: &mut Pending,
    event: &Event,
    event_id: ContentId,
    changes: &[MemberChange],
    beam_json: Option<String>,
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
                capacity: h.capacity,
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
        Payload::Edit(e) => pending.ops.push(super::decide::edit_op(e)?),
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
    let (beam, deletes) = match &event.payload {
        Payload::BeamRef(r) => (
            Some(InlineBeam::new((r.author.clone(), r.beam), beam_json)),
            None,
        ),
        Payload::Tombstone(t) => (None, Some((t.author.clone(), t.beam))),
        // An edit's item carries the version it names (§6.3.21); one that drops history
        // revokes the original's inline copies, as a tombstone does.
        Payload::Edit(e) => (
            Some(InlineBeam::new((e.author.clone(), e.beam), beam_json)),
            e.drop_history.then(|| (e.author.clone(), e.supersedes)),
        ),
        _ => (None, None),
    };
    pending.live.push((
        space,
        Arc::new(LiveEvent::new(event.seq, raw, removes, beam, deletes)),
    ));
    pending.acks.push(Ack {
        space: event.space.clone(),
        event_id,
        seq: event.seq,
    });
    pending.forward.push(event.clone());
    Ok(())
}

pub(super) fn beam_row(beam: &Beam) -> Result<BeamRow, SequenceError> {
    let path = beam.path()?;
    Ok(BeamRow {
        path: path.to_string(),
        id: path.beam.to_string(),
        author: beam.author.to_string(),
        json: serde_json::to_string(beam).map_err(StoreError::from_json)?,
        created_at: beam.created_at,
    })
}
