//! What a replica takes in: events of spaces another node sequences, verified before the writer
//! sees them, and what a batch of them did. Pure.
//!
//! Pushed events ([`verify_pushed`]) are checked one by one against the space's sequencer; a
//! catch-up page ([`verify_page`]) must moreover continue the replica's chain event after event,
//! from its head (or from the genesis for a new replica). Signatures are checked on every core
//! for a large page; the chain, which is cheap, in order after.

use std::collections::HashSet;

use northstar_protocol::address::SpaceId;
use northstar_protocol::chain::{Chain, ChainError, Place};
use northstar_protocol::sign::Batch;
use northstar_protocol::wire::{Event, EventError};
use northstar_protocol::{ContentId, Did, Signature, SignatureError};
use serde_json::value::RawValue;

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

    /// Its id.
    pub fn id(&self) -> ContentId {
        self.id
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

/// Why pushed events or a page were refused before the writer saw them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IncomingError {
    /// An event does not verify by itself.
    #[error("event {seq} of {space}: {source}")]
    Event {
        /// The space.
        space: String,
        /// The event's seq.
        seq: u64,
        /// Why.
        #[source]
        source: EventError,
    },
    /// An event of another space than the one asked about.
    #[error("an event of {actual}, not of {expected}")]
    WrongSpace {
        /// The space asked about.
        expected: String,
        /// The event's space.
        actual: String,
    },
    /// Something that does not parse as an event.
    #[error("a malformed event: {0}")]
    Malformed(String),
    /// The page does not continue the replica's log.
    #[error(transparent)]
    Chain(#[from] ChainError),
}

/// How an event is checked by itself under a sequencer, giving its id:
/// [`Event::verify_id`], passed in so a simulation can remember what it checked already
/// (checking is a pure function of the bytes).
pub type CheckEvent = fn(&Event, &Did) -> Result<ContentId, EventError>;

/// Verify pushed events of `space` under its `sequencer`, each by itself (a push may skip
/// events or repeat them: the writer places them).
pub fn verify_pushed(
    events: Vec<Event>,
    sequencer: &Did,
) -> Result<Vec<Identified>, IncomingError> {
    verify_pushed_with(events, sequencer, Event::verify_id)
}

/// [`verify_pushed`] with the single-event check passed in.
pub fn verify_pushed_with(
    events: Vec<Event>,
    sequencer: &Did,
    check: CheckEvent,
) -> Result<Vec<Identified>, IncomingError> {
    events
        .into_iter()
        .map(|event| check_one(event, sequencer, check))
        .collect()
}

/// Events of one space this node verified lately, each known by its id and its sequencer's
/// signature. The id hashes every byte of the event but that signature, so the pair fixes the
/// whole event: a copy that matches both is the event already checked, and needs no check of
/// its own. A member node has two parents in each broadcast tree, so each pushed event
/// arrives twice, usually within a millisecond.
#[derive(Debug, Default)]
pub struct Verified {
    recent: HashSet<(ContentId, Signature)>,
    older: HashSet<(ContentId, Signature)>,
}

/// How many events [`Verified`] keeps in each of its two generations: pushes carry new
/// events, so a copy arrives long before this many others. Two generations hold a whole
/// push of the most events a push may carry (64), and a replica's memory stays small (about
/// 8 KiB at most), since a node may hold thousands of replicas.
const VERIFIED_GENERATION: usize = 32;

impl Verified {
    fn holds(&self, key: &(ContentId, Signature)) -> bool {
        self.recent.contains(key) || self.older.contains(key)
    }

    fn remember(&mut self, key: (ContentId, Signature)) {
        if self.recent.len() >= VERIFIED_GENERATION {
            self.older = std::mem::take(&mut self.recent);
        }
        self.recent.insert(key);
    }
}

/// [`verify_pushed`], but an event `verified` holds is not checked again, and each event
/// checked here is remembered there. Callers keep one [`Verified`] per space, locked while
/// this runs, so that the second copy of an event waits for the first copy's check instead of
/// repeating it.
pub fn verify_pushed_once(
    events: Vec<Event>,
    sequencer: &Did,
    verified: &mut Verified,
) -> Result<Vec<Identified>, IncomingError> {
    let mut checked = Vec::with_capacity(events.len());
    for event in events {
        let known = event
            .id()
            .ok()
            .map(|id| (id, event.sig))
            .filter(|key| verified.holds(key));
        match known {
            Some((id, _)) => checked.push(Identified { event, id }),
            None => {
                let item = check_one(event, sequencer, Event::verify_id)?;
                verified.remember((item.id, item.event.sig));
                checked.push(item);
            }
        }
    }
    Ok(checked)
}

/// Events checked under `sequencer` with all their signatures in one batch; if the batch fails,
/// one by one, so the error names the first event at fault.
fn check_batched(events: Vec<Event>, sequencer: &Did) -> Result<Vec<Identified>, IncomingError> {
    let mut batch = Batch::new();
    let ids: Result<Vec<_>, _> = events
        .iter()
        .map(|event| event.queue_checks(sequencer, &mut batch))
        .collect();
    if let Ok(ids) = ids
        && batch.verify()
    {
        return Ok(events
            .into_iter()
            .zip(ids)
            .map(|(event, id)| Identified { event, id })
            .collect());
    }
    events
        .into_iter()
        .map(|event| check_one(event, sequencer, Event::verify_id))
        .collect()
}

/// One event checked by itself under `sequencer`, with the id from the bytes its signature
/// was checked over.
fn check_one(
    event: Event,
    sequencer: &Did,
    check: CheckEvent,
) -> Result<Identified, IncomingError> {
    let id = check(&event, sequencer).map_err(|source| IncomingError::Event {
        space: event.space.to_string(),
        seq: event.seq,
        source,
    })?;
    Ok(Identified { event, id })
}

/// How the signatures of a page are checked.
#[derive(Clone, Copy)]
pub enum PageCheck {
    /// All signatures of a thread's share of the page in one batch, which gives the answer of
    /// checking them one by one (`spec/` §3.4) at about half the cost; after a failed batch,
    /// the share is checked one by one to name the event at fault.
    Batched,
    /// Each event by itself with this check.
    Each(CheckEvent),
}

/// Verify a page of `space.events` that must continue `chain`: every event parses strictly,
/// is of the chain's space, verifies under its sequencer, and is the next one or one held
/// already (the writer tells a duplicate from a fork). At a hole (an event missing) the page is
/// cut there. The chain moves to the last event kept. `threads` splits the signature checks (1
/// for none).
pub fn verify_page(
    chain: &mut Chain,
    raws: &[Box<RawValue>],
    threads: usize,
) -> Result<Vec<Identified>, IncomingError> {
    verify_page_with(chain, raws, threads, PageCheck::Batched)
}

/// [`verify_page`] with the way of checking passed in.
pub fn verify_page_with(
    chain: &mut Chain,
    raws: &[Box<RawValue>],
    threads: usize,
    check: PageCheck,
) -> Result<Vec<Identified>, IncomingError> {
    let space = chain.space().clone();
    let sequencer = chain.sequencer().clone();
    let share = |part: &[Box<RawValue>]| -> Result<Vec<Identified>, IncomingError> {
        let mut events = Vec::with_capacity(part.len());
        for raw in part {
            let event: Event = northstar_protocol::canonical::from_str_strict(raw.get())
                .map_err(|e| IncomingError::Malformed(e.to_string()))?;
            check_space(&event, &space)?;
            events.push(event);
        }
        match check {
            PageCheck::Each(check) => events
                .into_iter()
                .map(|event| check_one(event, &sequencer, check))
                .collect(),
            PageCheck::Batched => check_batched(events, &sequencer),
        }
    };
    let events = if threads < 2 || raws.len() < 2 * threads {
        share(raws)?
    } else {
        let chunk = raws.len().div_ceil(threads);
        std::thread::scope(|scope| {
            let parts: Vec<_> = raws
                .chunks(chunk)
                .map(|part| scope.spawn(move || share(part)))
                .collect();
            let mut events = Vec::with_capacity(raws.len());
            for part in parts {
                events.extend(part.join().map_err(|_| {
                    IncomingError::Malformed("a verifier thread panicked".into())
                })??);
            }
            Ok::<_, IncomingError>(events)
        })?
    };
    // Pages come oldest first; one that does not is put in order rather than refused, since
    // the chain, not the order on the wire, is what makes a log.
    let mut events = events;
    events.sort_by_key(|item| item.event().seq);
    let mut taken = 0;
    for item in &events {
        match chain.link(item.event(), item.id())? {
            Place::Next => chain.advance(item.event().seq, item.id()),
            // A source that skipped an event: what came before the hole is still good.
            Place::Ahead => break,
            // Held already (the head moved since the page was asked for): the writer tells a
            // duplicate from a fork against what it holds.
            Place::Head | Place::Behind => {}
        }
        taken += 1;
    }
    events.truncate(taken);
    Ok(events)
}

fn check_space(event: &Event, space: &SpaceId) -> Result<(), IncomingError> {
    if event.space != *space {
        return Err(IncomingError::WrongSpace {
            expected: space.to_string(),
            actual: event.space.to_string(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use northstar_protocol::address::SpaceType;
    use northstar_protocol::wire::{BeamRef, Payload, SpaceGenesis};
    use northstar_protocol::{Keypair, Signature};

    use super::*;

    /// A log of a genesis and `len - 1` refs, signed by `node`.
    fn log(node: &Keypair, len: u64) -> (SpaceId, Vec<Event>) {
        let owner = Keypair::from_seed(&[1; 32]);
        let space = SpaceId::new(SpaceType::Channel, owner.did(), "replica").unwrap();
        let mut events: Vec<Event> = Vec::new();
        for seq in 1..=len {
            let payload = if seq == 1 {
                let genesis =
                    SpaceGenesis::create(&owner, space.clone(), "R", node.did().clone(), "n", 3, 1)
                        .unwrap();
                Payload::Create(genesis)
            } else {
                let beam = ContentId::of(&seq.to_be_bytes());
                Payload::BeamRef(BeamRef::create(&owner, space.clone(), beam, "n", seq).unwrap())
            };
            let prev = events.last().map(|e| e.id().unwrap());
            events.push(Event::sequence(node, space.clone(), seq, prev, seq, payload).unwrap());
        }
        (space, events)
    }

    fn raws(events: &[Event]) -> Vec<Box<RawValue>> {
        events
            .iter()
            .map(|e| serde_json::value::to_raw_value(e).unwrap())
            .collect()
    }

    fn seqs(items: &[Identified]) -> Vec<u64> {
        items.iter().map(|i| i.event().seq).collect()
    }

    #[test]
    fn a_page_continues_the_chain_and_is_cut_at_a_hole() {
        let node = Keypair::from_seed(&[2; 32]);
        let (space, events) = log(&node, 8);
        let mut chain = Chain::from_start(space, node.did().clone());
        let page = verify_page(&mut chain, &raws(&events[..4]), 2).unwrap();
        assert_eq!(seqs(&page), [1, 2, 3, 4]);
        assert_eq!(chain.head(), 4);
        // 6 is missing: 7 and 8 wait for it.
        let mut holed = events[4..].to_vec();
        holed.remove(1);
        let page = verify_page(&mut chain, &raws(&holed), 1).unwrap();
        assert_eq!(seqs(&page), [5]);
        assert_eq!(chain.head(), 5);
        // Served newest first, it is put in order.
        let mut reversed = events[5..].to_vec();
        reversed.reverse();
        let page = verify_page(&mut chain, &raws(&reversed), 1).unwrap();
        assert_eq!(seqs(&page), [6, 7, 8]);
    }

    #[test]
    fn events_held_already_pass_to_the_writer_without_moving_the_chain() {
        let node = Keypair::from_seed(&[2; 32]);
        let (space, events) = log(&node, 4);
        let id = events[2].id().unwrap();
        let mut chain = Chain::after(space, node.did().clone(), 3, Some(id));
        let page = verify_page(&mut chain, &raws(&events[1..]), 1).unwrap();
        assert_eq!(seqs(&page), [2, 3, 4]);
        assert_eq!(chain.head(), 4);
    }

    #[test]
    fn a_new_replica_must_start_at_its_genesis() {
        let node = Keypair::from_seed(&[2; 32]);
        let (space, events) = log(&node, 4);
        let mut chain = Chain::from_start(space, node.did().clone());
        // Without event 1 nothing is next: the page is empty and the chain does not move.
        let page = verify_page(&mut chain, &raws(&events[1..]), 1).unwrap();
        assert!(page.is_empty());
        assert_eq!(chain.head(), 0);
    }

    #[test]
    fn a_forged_or_foreign_event_fails_the_whole_page_and_push() {
        let node = Keypair::from_seed(&[2; 32]);
        let (space, events) = log(&node, 3);
        let mut forged = events.clone();
        forged[1].timestamp += 1;
        let mut chain = Chain::from_start(space.clone(), node.did().clone());
        let err = verify_page(&mut chain, &raws(&forged), 1).unwrap_err();
        assert!(matches!(err, IncomingError::Event { seq: 2, .. }), "{err}");
        assert_eq!(chain.head(), 0);
        let err = verify_pushed(forged, node.did()).unwrap_err();
        assert!(matches!(err, IncomingError::Event { seq: 2, .. }), "{err}");
        // Batched on two threads, a forged author signature in the second share is named too,
        // and the same page unforged passes whole.
        let (long_space, long) = log(&node, 8);
        let mut chain = Chain::from_start(long_space.clone(), node.did().clone());
        assert_eq!(verify_page(&mut chain, &raws(&long), 2).unwrap().len(), 8);
        let mut forged = long.clone();
        let Payload::BeamRef(mut bad_ref) = forged[5].payload.clone() else {
            panic!("event 6 is a beam ref");
        };
        let mut bytes = bad_ref.sig.to_bytes();
        bytes[40] ^= 1;
        bad_ref.sig = Signature::from_bytes(bytes);
        // Sequenced (signed) again by the node: only the author's signature is bad.
        let (prev, at) = (forged[5].prev, forged[5].timestamp);
        forged[5] = Event::sequence(
            &node,
            long_space.clone(),
            6,
            prev,
            at,
            Payload::BeamRef(bad_ref),
        )
        .unwrap();
        let mut chain = Chain::from_start(long_space, node.did().clone());
        let err = verify_page(&mut chain, &raws(&forged), 2).unwrap_err();
        assert!(matches!(err, IncomingError::Event { seq: 6, .. }), "{err}");
        // Signed by another node than the space's sequencer.
        let stranger = Keypair::from_seed(&[3; 32]);
        assert!(verify_pushed(events.clone(), stranger.did()).is_err());
        // A page of another space.
        let (_, other) = log(&node, 1);
        let elsewhere = SpaceId::new(SpaceType::Channel, node.did(), "elsewhere").unwrap();
        let mut chain = Chain::from_start(elsewhere, node.did().clone());
        let err = verify_page(&mut chain, &raws(&other), 1).unwrap_err();
        assert!(matches!(err, IncomingError::WrongSpace { .. }), "{err}");
        // What a push gives back carries the ids of the events, as `Identified::new` computes.
        let pushed = verify_pushed(events.clone(), node.did()).unwrap();
        for (item, event) in pushed.iter().zip(&events) {
            assert_eq!(item.id(), event.id().unwrap());
        }
    }

    #[test]
    fn a_copy_of_a_verified_event_passes_unchecked_and_anything_else_is_checked() {
        let node = Keypair::from_seed(&[2; 32]);
        let (_, events) = log(&node, 3);
        let mut verified = Verified::default();
        let first = verify_pushed_once(events.clone(), node.did(), &mut verified).unwrap();
        assert_eq!(seqs(&first), [1, 2, 3]);
        // The same bytes again pass, with their ids, even under a key that could not have
        // signed them: they were checked already under the space's sequencer.
        let stranger = Keypair::from_seed(&[3; 32]);
        let again = verify_pushed_once(events.clone(), stranger.did(), &mut verified).unwrap();
        for (item, event) in again.iter().zip(&events) {
            assert_eq!(item.id(), event.id().unwrap());
        }
        // A copy with its content changed, or with another signature, is checked and fails.
        let mut changed = events[1].clone();
        changed.timestamp += 1;
        let err = verify_pushed_once(vec![changed], node.did(), &mut verified).unwrap_err();
        assert!(matches!(err, IncomingError::Event { seq: 2, .. }), "{err}");
        let mut resigned = events[2].clone();
        let mut bytes = resigned.sig.to_bytes();
        bytes[10] ^= 1;
        resigned.sig = Signature::from_bytes(bytes);
        let err = verify_pushed_once(vec![resigned], node.did(), &mut verified).unwrap_err();
        assert!(matches!(err, IncomingError::Event { seq: 3, .. }), "{err}");
        // Events that failed are not remembered; old ones are forgotten after two generations.
        let (_, more) = log(&Keypair::from_seed(&[4; 32]), 1);
        let mut filler = Verified::default();
        filler.remember((events[0].id().unwrap(), events[0].sig));
        for n in 0..2 * VERIFIED_GENERATION as u64 {
            filler.remember((ContentId::of(&n.to_be_bytes()), more[0].sig));
        }
        assert!(verify_pushed_once(vec![events[0].clone()], stranger.did(), &mut filler).is_err());
    }
}
