//! The log-chain check: whether an event is the next entry of a space's log as a reader holds it.
//!
//! A log is valid when its first event is the space's genesis at seq 1, sequenced by the node the
//! genesis names, every later event has the next seq, and each `prev` is the id of the event
//! before (`spec/protocol.md` §5). Nodes (replicas, catch-up, copying a store) and the SDK all
//! check logs through [`Chain`], so the rule is written once.
//!
//! [`Chain::accept`] verifies an event's signatures and places it. [`Chain::link`] places an
//! event whose signatures the caller verified already (on other cores, say), without moving the
//! chain; [`Chain::advance`] then moves it. Neither reads anything but its arguments.

use crate::Did;
use crate::address::SpaceId;
use crate::id::ContentId;
use crate::sign::SignatureError;
use crate::wire::{Event, EventError, Payload};

/// Where an event falls relative to a chain's head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// The next event: `seq = head + 1`, and it links to the head (or starts the log).
    Next,
    /// The head itself again, identical.
    Head,
    /// An event before the head: whether it is the one held is for the holder to compare.
    Behind,
    /// An event past the next one: the events between are missing.
    Ahead,
}

/// Why an event cannot be an entry of the log a chain follows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    /// The event belongs to another space.
    #[error("event {seq} of {actual} is not of {expected}")]
    WrongSpace {
        /// The space followed.
        expected: String,
        /// The event's space.
        actual: String,
        /// The event's seq.
        seq: u64,
    },
    /// The event fails by itself: its shape or a signature.
    #[error("event {seq} fails verification")]
    Event {
        /// The event's seq.
        seq: u64,
        /// What is wrong with it.
        #[source]
        source: EventError,
    },
    /// The genesis names another sequencer than the one the chain checks signatures against.
    #[error("the genesis names sequencer {named}, the log is signed by {signer}")]
    WrongSequencer {
        /// The sequencer the genesis names.
        named: String,
        /// The DID the events were checked against.
        signer: String,
    },
    /// The event's `prev` is not the id of the head.
    #[error("event {seq} does not link to event {head}")]
    BrokenLink {
        /// The event's seq.
        seq: u64,
        /// The head it should link to.
        head: u64,
    },
    /// Another event than the one held, validly signed for the same seq: the sequencer forked
    /// its log, and the two events together prove it.
    #[error("fork at seq {seq}: the sequencer signed {held} and {rival}")]
    Fork {
        /// The seq.
        seq: u64,
        /// The event held.
        held: ContentId,
        /// The other one.
        rival: ContentId,
    },
    /// The event has no id (it does not encode canonically).
    #[error("event {seq} has no id")]
    NoId {
        /// The event's seq.
        seq: u64,
        /// Why.
        #[source]
        source: SignatureError,
    },
}

/// A reader's position in one space's log: the space, the node that signs its events, the seq of
/// the last event held and, when known, that event's id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    space: SpaceId,
    sequencer: Did,
    head: u64,
    head_id: Option<ContentId>,
}

impl Chain {
    /// A log read from its start: its first event must be the genesis, naming `sequencer`.
    pub fn from_start(space: SpaceId, sequencer: Did) -> Self {
        Self {
            space,
            sequencer,
            head: 0,
            head_id: None,
        }
    }

    /// A log held up to event `head`, whose id is `head_id`. Pass `None` when the id is
    /// unknown (a reader resuming from a cursor): the next event's `prev` is then taken on
    /// trust, its signatures are not.
    pub fn after(space: SpaceId, sequencer: Did, head: u64, head_id: Option<ContentId>) -> Self {
        Self {
            space,
            sequencer,
            head,
            head_id,
        }
    }

    /// The chain that starts at `genesis`, which must be the space's first event: a create
    /// payload signed by the space's owner, sequenced (signed) by the node it names.
    pub fn from_genesis(genesis: &Event) -> Result<Self, ChainError> {
        let Payload::Create(create) = &genesis.payload else {
            return Err(ChainError::Event {
                seq: genesis.seq,
                source: EventError::GenesisPlacement { seq: genesis.seq },
            });
        };
        let mut chain = Self::from_start(genesis.space.clone(), create.sequencer.clone());
        chain.accept(genesis)?;
        Ok(chain)
    }

    /// The space followed.
    pub fn space(&self) -> &SpaceId {
        &self.space
    }

    /// The node whose signature every event carries.
    pub fn sequencer(&self) -> &Did {
        &self.sequencer
    }

    /// The seq of the last event held (0 before the genesis).
    pub fn head(&self) -> u64 {
        self.head
    }

    /// The id of the last event held, if known.
    pub fn head_id(&self) -> Option<ContentId> {
        self.head_id
    }

    /// Verify `event` (its shape and both signatures) and place it; the chain moves to it if
    /// it is the next event.
    pub fn accept(&mut self, event: &Event) -> Result<Place, ChainError> {
        self.check_space(event)?;
        event
            .verify(&self.sequencer)
            .map_err(|source| ChainError::Event {
                seq: event.seq,
                source,
            })?;
        let id = event.id().map_err(|source| ChainError::NoId {
            seq: event.seq,
            source,
        })?;
        let place = self.link(event, id)?;
        if place == Place::Next {
            self.advance(event.seq, id);
        }
        Ok(place)
    }

    /// Place `event`, with id `id`, whose signatures the caller verified under
    /// [`Chain::sequencer`]. The chain does not move.
    pub fn link(&self, event: &Event, id: ContentId) -> Result<Place, ChainError> {
        self.check_space(event)?;
        if let Payload::Create(genesis) = &event.payload
            && genesis.sequencer != self.sequencer
        {
            return Err(ChainError::WrongSequencer {
                named: genesis.sequencer.to_string(),
                signer: self.sequencer.to_string(),
            });
        }
        if event.seq == self.head
            && let Some(held) = self.head_id
        {
            return if held == id {
                Ok(Place::Head)
            } else {
                Err(ChainError::Fork {
                    seq: event.seq,
                    held,
                    rival: id,
                })
            };
        }
        if event.seq <= self.head {
            return Ok(Place::Behind);
        }
        if event.seq > self.head + 1 {
            return Ok(Place::Ahead);
        }
        // `verify` placed the genesis at seq 1 and nowhere else, and `prev` exactly after it.
        if let Some(head_id) = self.head_id
            && event.prev != Some(head_id)
        {
            return Err(ChainError::BrokenLink {
                seq: event.seq,
                head: self.head,
            });
        }
        if self.head == 0 && !matches!(event.payload, Payload::Create(_)) {
            return Err(ChainError::Event {
                seq: event.seq,
                source: EventError::GenesisPlacement { seq: event.seq },
            });
        }
        Ok(Place::Next)
    }

    /// Move the head to event `seq` with id `id` (after [`Chain::link`] said it is next).
    pub fn advance(&mut self, seq: u64, id: ContentId) {
        self.head = seq;
        self.head_id = Some(id);
    }

    fn check_space(&self, event: &Event) -> Result<(), ChainError> {
        if event.space != self.space {
            return Err(ChainError::WrongSpace {
                expected: self.space.to_string(),
                actual: event.space.to_string(),
                seq: event.seq,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Keypair;
    use crate::address::SpaceType;
    use crate::wire::{BeamRef, SpaceGenesis};

    struct Log {
        owner: Keypair,
        node: Keypair,
        space: SpaceId,
        events: Vec<Event>,
    }

    impl Log {
        fn new(len: u64) -> Self {
            let owner = Keypair::from_seed(&[1; 32]);
            let node = Keypair::from_seed(&[2; 32]);
            let space = SpaceId::new(SpaceType::Channel, owner.did(), "chain").unwrap();
            let mut log = Self {
                owner,
                node,
                space,
                events: Vec::new(),
            };
            let genesis = SpaceGenesis::create(
                &log.owner,
                log.space.clone(),
                "Chain",
                log.node.did().clone(),
                "127.0.0.1:1",
                10,
                1,
            )
            .unwrap();
            log.push(Payload::Create(genesis));
            for seq in 2..=len {
                log.post(seq);
            }
            log
        }

        fn post(&mut self, salt: u64) {
            let beam = ContentId::of(&salt.to_be_bytes());
            let r = BeamRef::create(&self.owner, self.space.clone(), beam, "127.0.0.1:1", salt)
                .unwrap();
            self.push(Payload::BeamRef(r));
        }

        fn push(&mut self, payload: Payload) {
            let seq = self.events.len() as u64 + 1;
            let prev = self.events.last().map(|e| e.id().unwrap());
            let event =
                Event::sequence(&self.node, self.space.clone(), seq, prev, seq, payload).unwrap();
            self.events.push(event);
        }

        fn chain(&self) -> Chain {
            Chain::from_start(self.space.clone(), self.node.did().clone())
        }
    }

    #[test]
    fn accepts_a_whole_log_from_its_genesis() {
        let log = Log::new(5);
        let mut chain = log.chain();
        for event in &log.events {
            assert_eq!(chain.accept(event).unwrap(), Place::Next);
        }
        assert_eq!(chain.head(), 5);
        assert_eq!(chain.head_id(), Some(log.events[4].id().unwrap()));
        let from_genesis = Chain::from_genesis(&log.events[0]).unwrap();
        assert_eq!(from_genesis.head(), 1);
    }

    #[test]
    fn refuses_a_log_that_does_not_start_with_its_genesis() {
        let log = Log::new(3);
        let mut chain = log.chain();
        assert_eq!(chain.accept(&log.events[1]).unwrap(), Place::Ahead);
        // A reader that trusts the head it names still gets the check at seq 1.
        let mut odd = Chain::after(log.space.clone(), log.node.did().clone(), 0, None);
        assert_eq!(odd.accept(&log.events[2]).unwrap(), Place::Ahead);
        assert!(Chain::from_genesis(&log.events[1]).is_err());
    }

    #[test]
    fn tells_the_head_again_from_a_fork_at_the_head() {
        let mut log = Log::new(3);
        let mut chain = log.chain();
        for event in &log.events {
            chain.accept(event).unwrap();
        }
        assert_eq!(chain.accept(&log.events[2]).unwrap(), Place::Head);
        assert_eq!(chain.accept(&log.events[1]).unwrap(), Place::Behind);
        // The sequencer signs another event 3.
        log.events.truncate(2);
        log.post(99);
        let err = chain.accept(&log.events[2]).unwrap_err();
        assert!(matches!(err, ChainError::Fork { seq: 3, .. }), "{err}");
    }

    #[test]
    fn refuses_an_event_that_does_not_link_to_the_head() {
        let mut log = Log::new(3);
        let mut chain = log.chain();
        for event in &log.events[..2] {
            chain.accept(event).unwrap();
        }
        let mut rival = log.events[2].clone();
        rival.prev = Some(ContentId::of(b"elsewhere"));
        rival = Event::sequence(
            &log.node,
            rival.space,
            rival.seq,
            rival.prev,
            rival.timestamp,
            rival.payload,
        )
        .unwrap();
        let err = chain.accept(&rival).unwrap_err();
        assert_eq!(err, ChainError::BrokenLink { seq: 3, head: 2 });
        assert_eq!(chain.head(), 2);
        // The honest event 3 still follows.
        log.events.truncate(3);
        assert_eq!(chain.accept(&log.events[2]).unwrap(), Place::Next);
    }

    #[test]
    fn refuses_a_forged_signature_and_another_signer() {
        let log = Log::new(2);
        let mut chain = log.chain();
        chain.accept(&log.events[0]).unwrap();
        let mut forged = log.events[1].clone();
        forged.timestamp += 1;
        assert!(matches!(
            chain.accept(&forged),
            Err(ChainError::Event { seq: 2, .. })
        ));
        let stranger = Keypair::from_seed(&[3; 32]);
        let mut other = Chain::from_start(log.space.clone(), stranger.did().clone());
        assert!(matches!(
            other.accept(&log.events[0]),
            Err(ChainError::Event { seq: 1, .. })
        ));
        assert_eq!(chain.head(), 1);
    }

    #[test]
    fn refuses_a_genesis_naming_another_sequencer_and_another_space() {
        let log = Log::new(1);
        let stranger = Keypair::from_seed(&[4; 32]);
        // Signed by the stranger as sequencer, naming the log's node: the names disagree.
        let mut genesis = log.events[0].clone();
        genesis = Event::sequence(
            &stranger,
            genesis.space,
            1,
            None,
            genesis.timestamp,
            genesis.payload,
        )
        .unwrap();
        let mut chain = Chain::from_start(log.space.clone(), stranger.did().clone());
        assert!(matches!(
            chain.accept(&genesis),
            Err(ChainError::WrongSequencer { .. })
        ));
        let elsewhere = SpaceId::new(SpaceType::Channel, log.owner.did(), "other").unwrap();
        let mut chain = Chain::from_start(elsewhere, log.node.did().clone());
        assert!(matches!(
            chain.accept(&log.events[0]),
            Err(ChainError::WrongSpace { .. })
        ));
    }
}
