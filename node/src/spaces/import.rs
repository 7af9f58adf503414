//! What `space.import` takes in: one page of a space's log from an export file, checked whole
//! before the writer sees any of it (`spec/protocol.md` §11.2). Pure.
//!
//! A page is good when every entry parses strictly, every event verifies under the space's
//! sequencer, the events held already here are the very ones held (anything else is a fork),
//! the others continue the log held (or start it at its genesis) one after another, every beam
//! is the one its event's ref names (or the version its edit names), validly signed, and, for a `dm`, the importer is a member
//! by the log as it stands after the page. The first entry that fails names the page's fault.

use std::collections::HashMap;

use northstar_protocol::address::{BeamPath, SpaceId, SpaceType};
use northstar_protocol::api::EventItem;
use northstar_protocol::canonical::from_str_strict;
use northstar_protocol::chain::{Chain, Place};
use northstar_protocol::verify::check_inline_beam;
use northstar_protocol::wire::{Beam, Event, Payload};
use northstar_protocol::{ContentId, Did};

use super::replica::Identified;
use super::rules::SpaceState;
use crate::store::MemberState;

/// What this node holds of the space, as far as a page needs it.
#[derive(Debug, Clone)]
pub struct Held {
    /// The node that signs the space's events.
    pub sequencer: Did,
    /// The seq of the last event held.
    pub head: u64,
    /// Its id.
    pub head_id: ContentId,
    /// The ids of the held events the page names (by seq).
    pub ids: HashMap<u64, ContentId>,
    /// Whether the importer is a member now (asked only of a `dm`).
    pub member: bool,
}

/// A page that passed: the events this node does not hold yet, and the beams it carried.
#[derive(Debug)]
pub struct Checked {
    /// The sequencer the events verify under.
    pub sequencer: Did,
    /// New events, in log order, each the next one.
    pub events: Vec<Identified>,
    /// Each beam with its path.
    pub beams: Vec<(BeamPath, Beam)>,
}

/// Why a page is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImportError {
    /// An entry fails a check.
    #[error("entry {index}{}: {reason}", seq.map(|s| format!(" (event {s})")).unwrap_or_default())]
    Entry {
        /// Its place in the page, from 0.
        index: usize,
        /// Its event's seq, when it could be read.
        seq: Option<u64>,
        /// What is wrong.
        reason: String,
    },
    /// An event differs from the one held at its seq, both validly signed.
    #[error(
        "entry {index} (event {seq}): the log held here has another event {held} at this seq: \
         this log and the one held diverge (a fork)"
    )]
    Fork {
        /// Its place in the page, from 0.
        index: usize,
        /// The seq.
        seq: u64,
        /// The id held.
        held: ContentId,
    },
    /// A `dm` whose log, after the page, does not make the importer a member.
    #[error("{space} is a dm; only its members may import it, and {did} is not one by its log")]
    NotMember {
        /// The space.
        space: String,
        /// The importer.
        did: String,
    },
}

fn entry(index: usize, seq: Option<u64>, reason: impl ToString) -> ImportError {
    ImportError::Entry {
        index,
        seq,
        reason: reason.to_string(),
    }
}

/// Check a page of `space` for `importer` against what this node holds of it (`None`: nothing).
pub fn check_page(
    space: &SpaceId,
    held: Option<&Held>,
    importer: &Did,
    items: &[EventItem],
) -> Result<Checked, ImportError> {
    let mut events = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        let event: Event = from_str_strict(item.event.get()).map_err(|e| entry(index, None, e))?;
        events.push(event);
    }
    let sequencer = match (held, events.first()) {
        (Some(held), _) => held.sequencer.clone(),
        (
            None,
            Some(Event {
                seq: 1,
                payload: Payload::Create(genesis),
                ..
            }),
        ) => genesis.sequencer.clone(),
        (None, first) => {
            return Err(entry(
                0,
                first.map(|e| e.seq),
                "this node holds nothing of the space: the first page must start at its genesis",
            ));
        }
    };
    let mut chain = match held {
        Some(held) => Chain::after(
            space.clone(),
            sequencer.clone(),
            held.head,
            Some(held.head_id),
        ),
        None => Chain::from_start(space.clone(), sequencer.clone()),
    };
    let held_head = chain.head();
    let mut member = held.is_some_and(|h| h.member);
    let mut checked = Checked {
        sequencer: sequencer.clone(),
        events: Vec::new(),
        beams: Vec::new(),
    };
    for (index, (event, item)) in events.into_iter().zip(items).enumerate() {
        let seq = Some(event.seq);
        if event.space != *space {
            return Err(entry(index, seq, format!("an event of {}", event.space)));
        }
        let id = event
            .verify_id(&sequencer)
            .map_err(|e| entry(index, seq, e))?;
        if let Some(beam) = &item.beam {
            checked
                .beams
                .push(check_beam(&event, beam).map_err(|e| entry(index, seq, e))?);
        }
        if event.seq <= held_head {
            let held_id = held.and_then(|h| h.ids.get(&event.seq));
            match held_id {
                Some(held_id) if *held_id == id => continue,
                Some(held_id) => {
                    return Err(ImportError::Fork {
                        index,
                        seq: event.seq,
                        held: *held_id,
                    });
                }
                None => return Err(entry(index, seq, "not in log order")),
            }
        }
        match chain.link(&event, id).map_err(|e| entry(index, seq, e))? {
            Place::Next => chain.advance(event.seq, id),
            Place::Ahead => {
                return Err(entry(
                    index,
                    seq,
                    format!(
                        "expected event {}: the events between are missing",
                        chain.head() + 1
                    ),
                ));
            }
            Place::Head | Place::Behind => {
                return Err(entry(index, seq, "not in log order"));
            }
        }
        for change in SpaceState::effects(&event.payload) {
            if change.did == *importer {
                member = change.state == Some(MemberState::Member);
            }
        }
        checked
            .events
            .push(Identified::new(event).map_err(|e| entry(index, seq, e))?);
    }
    if space.space_type() == SpaceType::Dm && !member {
        return Err(ImportError::NotMember {
            space: space.to_string(),
            did: importer.to_string(),
        });
    }
    Ok(checked)
}

/// The beam `raw` carried with the verified `event`: it parses strictly and is, checked as a
/// client checks an inline beam, the beam the event's ref names or the version its edit names,
/// validly signed by its author.
fn check_beam(
    event: &Event,
    raw: &serde_json::value::RawValue,
) -> Result<(BeamPath, Beam), String> {
    let path = match &event.payload {
        Payload::BeamRef(r) => BeamPath::new(&r.author, r.beam),
        Payload::Edit(e) => BeamPath::new(&e.author, e.beam),
        _ => return Err("a beam with an event that is neither a beam_ref nor an edit".into()),
    };
    let beam: Beam = from_str_strict(raw.get()).map_err(|e| format!("its beam: {e}"))?;
    check_inline_beam(event, &beam).map_err(|e| format!("its beam: {e}"))?;
    Ok((path, beam))
}

#[cfg(test)]
mod tests {
    use northstar_protocol::Keypair;
    use northstar_protocol::wire::{BeamRef, SpaceGenesis};

    use super::*;

    struct Log {
        node: Keypair,
        owner: Keypair,
        space: SpaceId,
        events: Vec<Event>,
    }

    impl Log {
        fn new(space_type: SpaceType, len: u64) -> Self {
            let node = Keypair::from_seed(&[1; 32]);
            let owner = Keypair::from_seed(&[2; 32]);
            let space = SpaceId::new(space_type, owner.did(), "log").unwrap();
            let genesis = SpaceGenesis::create(
                &owner,
                space.clone(),
                "Log",
                node.did().clone(),
                "127.0.0.1:1",
                10,
                1,
            )
            .unwrap();
            let mut log = Self {
                node,
                owner,
                space,
                events: Vec::new(),
            };
            log.push(Payload::Create(genesis), 1);
            for salt in 2..=len {
                log.post(salt);
            }
            log
        }

        fn post(&mut self, salt: u64) {
            let beam = ContentId::of(&salt.to_be_bytes());
            let r = BeamRef::create(&self.owner, self.space.clone(), beam, "127.0.0.1:1", salt)
                .unwrap();
            self.push(Payload::BeamRef(r), salt);
        }

        fn push(&mut self, payload: Payload, timestamp: u64) {
            let seq = self.events.len() as u64 + 1;
            let prev = self.events.last().map(|e| e.id().unwrap());
            let event = Event::sequence(
                &self.node,
                self.space.clone(),
                seq,
                prev,
                timestamp,
                payload,
            )
            .unwrap();
            self.events.push(event);
        }

        fn items(&self, range: std::ops::Range<usize>) -> Vec<EventItem> {
            self.events[range].iter().map(item).collect()
        }

        /// What a node holding the first `n` events knows.
        fn held(&self, n: usize) -> Held {
            Held {
                sequencer: self.node.did().clone(),
                head: n as u64,
                head_id: self.events[n - 1].id().unwrap(),
                ids: self.events[..n]
                    .iter()
                    .map(|e| (e.seq, e.id().unwrap()))
                    .collect(),
                member: false,
            }
        }
    }

    fn item(event: &Event) -> EventItem {
        EventItem {
            event: serde_json::value::to_raw_value(event).unwrap(),
            beam: None,
        }
    }

    fn stranger() -> Did {
        Keypair::from_seed(&[7; 32]).did().clone()
    }

    #[test]
    fn a_new_replica_starts_at_the_genesis_of_the_page() {
        let log = Log::new(SpaceType::Channel, 4);
        let checked = check_page(&log.space, None, &stranger(), &log.items(0..4)).unwrap();
        assert_eq!(checked.events.len(), 4);
        assert_eq!(&checked.sequencer, log.node.did());
        let err = check_page(&log.space, None, &stranger(), &log.items(1..4)).unwrap_err();
        assert!(
            matches!(
                err,
                ImportError::Entry {
                    index: 0,
                    seq: Some(2),
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn held_events_pass_only_as_the_very_events_held() {
        let mut log = Log::new(SpaceType::Channel, 5);
        let held = log.held(3);
        let checked = check_page(&log.space, Some(&held), &stranger(), &log.items(1..5)).unwrap();
        let seqs: Vec<u64> = checked.events.iter().map(|i| i.event().seq).collect();
        assert_eq!(seqs, vec![4, 5], "only what is not held");
        // The sequencer signs another event 3.
        log.events.truncate(2);
        log.post(99);
        let err = check_page(&log.space, Some(&held), &stranger(), &log.items(1..3)).unwrap_err();
        assert!(
            matches!(
                err,
                ImportError::Fork {
                    index: 1,
                    seq: 3,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn a_hole_or_a_forged_event_names_its_entry() {
        let log = Log::new(SpaceType::Channel, 5);
        let holed = [log.items(0..2), log.items(3..5)].concat();
        let err = check_page(&log.space, None, &stranger(), &holed).unwrap_err();
        assert!(
            matches!(
                err,
                ImportError::Entry {
                    index: 2,
                    seq: Some(4),
                    ..
                }
            ),
            "{err}"
        );
        let mut forged = log.events[2].clone();
        forged.timestamp += 1;
        let page = [log.items(0..2), vec![item(&forged)]].concat();
        let err = check_page(&log.space, None, &stranger(), &page).unwrap_err();
        assert!(
            matches!(
                err,
                ImportError::Entry {
                    index: 2,
                    seq: Some(3),
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn a_dm_goes_only_to_a_member_by_its_log() {
        let log = Log::new(SpaceType::Dm, 3);
        let err = check_page(&log.space, None, &stranger(), &log.items(0..3)).unwrap_err();
        assert!(matches!(err, ImportError::NotMember { .. }), "{err}");
        let owner = log.owner.did().clone();
        assert!(check_page(&log.space, None, &owner, &log.items(0..3)).is_ok());
    }
}
