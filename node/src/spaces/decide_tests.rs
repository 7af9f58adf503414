//! Unit tests of the writer's decisions: sequencing, replication, deletion, rollback.

use northstar_protocol::address::SpaceType;
use northstar_protocol::chain::{Chain, Place};
use northstar_protocol::wire::BeamRef;

use super::*;
use crate::spaces::replica::Identified;
use crate::spaces::rules::SpaceState;

/// A node, the space's owner, and what the node's store holds, applied by hand.
struct Fixture {
    core: Core,
    owner: Keypair,
    space: SpaceId,
    genesis: SpaceGenesis,
}

fn pair(byte: u8) -> Keypair {
    Keypair::from_seed(&[byte; 32])
}

impl Fixture {
    fn new(node: &Keypair) -> Self {
        let owner = pair(1);
        let space = SpaceId::new(SpaceType::Channel, owner.did(), "decide").unwrap();
        let genesis =
            SpaceGenesis::create(&owner, space.clone(), "D", node.did().clone(), "n", 2, 1)
                .unwrap();
        Self {
            core: Core::new(node.clone()),
            owner,
            space,
            genesis,
        }
    }

    /// Decide `inputs` with reads answered from nothing stored but what `reads` holds.
    fn decide(&mut self, inputs: Vec<Input>, mut reads: Reads) -> Decided {
        for _ in 0..READ_ROUNDS_IN_TESTS {
            let needs = self.core.needs(&inputs, &reads);
            for space in needs.spaces {
                reads.spaces.insert(space, None);
            }
            for beam in needs.beams {
                reads.beams.insert(beam, Vec::new());
            }
            for key in needs.refs {
                reads.refs.insert(key, false);
            }
            for path in needs.stored {
                reads.stored.insert(path, false);
            }
            for key in needs.referencing {
                reads.referencing.insert(key, Vec::new());
            }
            for key in needs.held {
                reads.held.insert(key, None);
            }
        }
        self.core.decide(inputs, &reads, 1_000)
    }

    fn post(&self, author: &Keypair, n: u8) -> Input {
        let r = BeamRef::create(
            author,
            self.space.clone(),
            ContentId::of(&[n]),
            "n",
            u64::from(n),
        )
        .unwrap();
        Input::Append {
            space: self.space.clone(),
            payload: Box::new(Payload::BeamRef(r)),
            beam: None,
            via: None,
        }
    }

    /// The owner posts a beam with `body`, carried with its ref (as a post to this node is).
    fn post_carrying(&self, body: &str) -> (BeamPath, Input) {
        let (beam, r) = Beam::post(&self.owner, self.space.clone(), "n", "t", body, 5).unwrap();
        let path = beam.path().unwrap();
        let input = Input::Append {
            space: self.space.clone(),
            payload: Box::new(Payload::BeamRef(r)),
            beam: Some(Box::new(beam)),
            via: None,
        };
        (path, input)
    }

    /// Decide the space's genesis.
    fn create_space(&mut self) {
        self.decide(
            vec![Input::Create(Box::new(self.genesis.clone()))],
            Reads::default(),
        );
    }
}

const READ_ROUNDS_IN_TESTS: usize = 3;

fn acks(decided: &Decided) -> Vec<u64> {
    decided
        .outcomes
        .iter()
        .filter_map(|o| match o {
            Outcome::Ack(a) => Some(a.seq),
            _ => None,
        })
        .collect()
}

#[test]
fn sequences_a_group_in_order_linking_each_event_to_the_one_before() {
    let node = pair(9);
    let mut f = Fixture::new(&node);
    let inputs = vec![
        Input::Create(Box::new(f.genesis.clone())),
        f.post(&f.owner, 1),
        f.post(&f.owner, 2),
    ];
    let decided = f.decide(inputs, Reads::default());
    assert_eq!(acks(&decided), vec![1, 2, 3]);
    let mut chain = Chain::from_start(f.space.clone(), node.did().clone());
    for event in &decided.forward {
        assert_eq!(chain.accept(event).unwrap(), Place::Next);
        assert_eq!(event.timestamp, 1_000);
    }
    assert_eq!(f.core.state(&f.space).unwrap().head_seq, 3);
}

#[test]
fn refuses_a_post_by_a_non_member_and_keeps_the_rest_of_the_group() {
    let node = pair(9);
    let mut f = Fixture::new(&node);
    let stranger = pair(4);
    let inputs = vec![
        Input::Create(Box::new(f.genesis.clone())),
        f.post(&stranger, 1),
        f.post(&f.owner, 2),
    ];
    let decided = f.decide(inputs, Reads::default());
    assert!(matches!(
        &decided.outcomes[1],
        Outcome::Refused(SequenceError::Refused(r)) if matches!(**r, Refusal::NotMember(_))
    ));
    assert_eq!(acks(&decided), vec![1, 2]);
}

#[test]
fn a_space_not_stored_is_not_found_and_a_second_genesis_exists() {
    let node = pair(9);
    let mut f = Fixture::new(&node);
    let post = f.post(&f.owner, 1);
    let decided = f.decide(vec![post], Reads::default());
    assert!(matches!(
        decided.outcomes[0],
        Outcome::Refused(SequenceError::SpaceNotFound(_))
    ));
    let genesis = f.genesis.clone();
    let decided = f.decide(
        vec![
            Input::Create(Box::new(genesis.clone())),
            Input::Create(Box::new(genesis)),
        ],
        Reads::default(),
    );
    assert!(matches!(
        decided.outcomes[1],
        Outcome::Refused(SequenceError::SpaceExists(_))
    ));
}

#[test]
fn rollback_puts_the_state_back_after_a_failed_commit() {
    let node = pair(9);
    let mut f = Fixture::new(&node);
    f.create_space();
    let post = f.post(&f.owner, 1);
    let mut decided = f.decide(vec![post], Reads::default());
    assert_eq!(f.core.state(&f.space).unwrap().head_seq, 2);
    f.core.rollback(decided.take_saved());
    assert_eq!(f.core.state(&f.space).unwrap().head_seq, 1);
    // The same post is then sequenced at 2 again.
    let post = f.post(&f.owner, 1);
    assert_eq!(acks(&f.decide(vec![post], Reads::default())), vec![2]);
}

/// A member node's core holding the sequencer's first `len` events of the log `log`.
fn replica_of(log: &[Event], len: usize) -> Core {
    let mut core = Core::new(pair(7));
    let events = log[..len]
        .iter()
        .map(|e| Identified::new(e.clone()).unwrap())
        .collect();
    let mut reads = Reads::default();
    reads.spaces.insert(log[0].space.clone(), None);
    let decided = core.decide(
        vec![Input::Replicate {
            events,
            create: true,
        }],
        &reads,
        1,
    );
    assert!(matches!(&decided.outcomes[0], Outcome::Replicated(r) if r.accepted as usize == len));
    core
}

/// The sequencer's log: a genesis and `posts` refs.
fn log(node: &Keypair, posts: u8) -> (Fixture, Vec<Event>) {
    let mut f = Fixture::new(node);
    let mut inputs = vec![Input::Create(Box::new(f.genesis.clone()))];
    for n in 0..posts {
        inputs.push(f.post(&f.owner, n));
    }
    let decided = f.decide(inputs, Reads::default());
    let events = decided.forward.clone();
    (f, events)
}

fn replicate(core: &mut Core, events: &[Event], reads: &Reads) -> (Replicated, Vec<Op>) {
    let events = events
        .iter()
        .map(|e| Identified::new(e.clone()).unwrap())
        .collect();
    let mut decided = core.decide(
        vec![Input::Replicate {
            events,
            create: false,
        }],
        reads,
        5,
    );
    decided.take_saved();
    match decided.outcomes.pop() {
        Some(Outcome::Replicated(r)) => (r, decided.ops),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_replica_adds_the_next_event_counts_duplicates_and_stops_at_a_gap() {
    let node = pair(9);
    let (_, events) = log(&node, 5);
    let mut core = replica_of(&events, 3);
    let reads = Reads::default();
    // 3 again is a duplicate; 5 comes after a gap.
    let (r, _) = replicate(&mut core, &[events[2].clone(), events[4].clone()], &reads);
    assert_eq!((r.duplicates, r.accepted, r.gap, r.head), (1, 0, true, 3));
    let (r, ops) = replicate(&mut core, &events[3..], &reads);
    assert_eq!((r.accepted, r.head, r.gap), (3, 6, false));
    assert_eq!(
        ops.iter().filter(|op| matches!(op, Op::Event(_))).count(),
        3
    );
}

#[test]
fn a_replica_refuses_a_fork_and_keeps_both_events_as_proof() {
    let node = pair(9);
    let (f, events) = log(&node, 3);
    let mut core = replica_of(&events, 4);
    // The sequencer signs another event 3, linked like the real one.
    let r = BeamRef::create(&f.owner, f.space.clone(), ContentId::of(b"x"), "n", 9).unwrap();
    let rival = Event::sequence(
        &node,
        f.space.clone(),
        3,
        events[2].prev,
        7,
        Payload::BeamRef(r),
    )
    .unwrap();
    let id = rival.id().unwrap();
    // The event held at 3 is the one the proof keeps: read, since it is not the head.
    let item = vec![Input::Replicate {
        events: vec![Identified::new(rival.clone()).unwrap()],
        create: false,
    }];
    assert_eq!(
        core.needs(&item, &Reads::default()).held,
        vec![(f.space.clone(), 3)]
    );
    let mut reads = Reads::default();
    let held_json = serde_json::to_string(&events[2]).unwrap();
    reads.held.insert(
        (f.space.clone(), 3),
        Some((events[2].id().unwrap(), held_json.clone())),
    );
    let (r, ops) = replicate(&mut core, &[rival], &reads);
    assert!(r.refused.unwrap().contains("fork at seq 3"));
    let proof = ops.iter().find_map(|op| match op {
        Op::Fork {
            seq, kept, rival, ..
        } => Some((*seq, kept.clone(), rival.clone())),
        _ => None,
    });
    let (seq, kept, rival) = proof.expect("a fork proof");
    assert_eq!((seq, kept), (3, held_json));
    let rival: Event = serde_json::from_str(&rival).unwrap();
    assert_eq!(rival.id().unwrap(), id);
    assert!(!ops.iter().any(|op| matches!(op, Op::Event(_))));
}

#[test]
fn a_replica_that_forgot_its_recent_events_asks_for_the_held_one() {
    let node = pair(9);
    let (f, events) = log(&node, 3);
    let mut core = replica_of(&events, 4);
    core.forget();
    // After a restart the state comes back with only its head remembered.
    let head = events[3].id().unwrap();
    let state = SpaceState::restore(
        f.space.clone(),
        node.did().clone(),
        "n".into(),
        2,
        4,
        head,
        Vec::new(),
    );
    let mut reads = Reads::default();
    reads.spaces.insert(f.space.clone(), Some(state));
    let old = vec![Input::Replicate {
        events: vec![Identified::new(events[1].clone()).unwrap()],
        create: false,
    }];
    assert_eq!(core.needs(&old, &reads).held, vec![(f.space.clone(), 2)]);
    reads.held.insert(
        (f.space.clone(), 2),
        Some((events[1].id().unwrap(), String::new())),
    );
    let (r, ops) = replicate(&mut core, &events[1..2], &reads);
    assert_eq!((r.duplicates, r.refused), (1, None));
    assert!(ops.is_empty());
}

#[test]
fn a_replica_starts_only_from_a_genesis_it_asked_for() {
    let node = pair(9);
    let (_, events) = log(&node, 1);
    let mut core = Core::new(pair(7));
    let mut reads = Reads::default();
    reads.spaces.insert(events[0].space.clone(), None);
    let (r, ops) = replicate(&mut core, &events, &reads);
    assert!(r.refused.unwrap().contains("not replicated here"));
    assert!(ops.is_empty());
    // Asked for, but starting past the genesis.
    let events_after = vec![Identified::new(events[1].clone()).unwrap()];
    let decided = core.decide(
        vec![Input::Replicate {
            events: events_after,
            create: true,
        }],
        &reads,
        1,
    );
    assert!(matches!(&decided.outcomes[0], Outcome::Replicated(r) if r.refused.is_some()));
}

#[test]
fn deleting_a_beam_appends_its_tombstone_where_its_author_posted_it() {
    let node = pair(9);
    let mut f = Fixture::new(&node);
    let (path, post) = f.post_carrying("b");
    f.decide(
        vec![Input::Create(Box::new(f.genesis.clone())), post],
        Reads::default(),
    );
    let tombstone = Tombstone::create(&f.owner, path.beam, 6).unwrap();
    let delete = vec![Input::Delete {
        tombstone: Box::new(tombstone),
        path,
    }];
    let mut reads = Reads::default();
    reads.stored.insert(path.to_string(), true);
    reads
        .referencing
        .insert((path.beam, f.owner.did().clone()), vec![f.space.clone()]);
    assert!(f.core.needs(&delete, &reads).is_empty());
    let decided = f.core.decide(delete, &reads, 7);
    match &decided.outcomes[0] {
        Outcome::Deleted(d) => {
            assert_eq!(d.acks.iter().map(|a| a.seq).collect::<Vec<_>>(), vec![3]);
            assert!(d.remote.is_empty());
        }
        other => panic!("{other:?}"),
    }
    assert!(
        decided
            .ops
            .iter()
            .any(|op| matches!(op, Op::DeleteBeam { .. }))
    );
    // A second post of that id is then refused in the same way the store would.
    let mut reads = Reads::default();
    reads.beams.insert(
        path.beam,
        vec![Known {
            author: f.owner.did().clone(),
            deleted: true,
        }],
    );
    let r = BeamRef::create(&f.owner, f.space.clone(), path.beam, "n", 8).unwrap();
    let again = Input::Append {
        space: f.space.clone(),
        payload: Box::new(Payload::BeamRef(r)),
        beam: None,
        via: None,
    };
    let decided = f.core.decide(vec![again], &reads, 8);
    assert!(matches!(
        decided.outcomes[0],
        Outcome::Refused(SequenceError::BeamNotFound(_))
    ));
}

#[test]
fn a_post_carrying_its_beam_asks_the_store_only_about_ids_that_may_be_deleted() {
    let node = pair(9);
    let mut f = Fixture::new(&node);
    f.create_space();
    let (first, post) = f.post_carrying("body 1");
    let first = first.beam;
    // Tombstones not known yet: the store is asked.
    let asked = f.core.needs(std::slice::from_ref(&post), &Reads::default());
    assert_eq!(asked.beams, [first]);
    // Known, and none of them this id: nothing to ask.
    let (deleted, _) = f.post_carrying("body 2");
    let deleted = deleted.beam;
    f.core
        .know_tombstones(Tombstones::from_store(Some(vec![deleted])));
    assert!(
        f.core
            .needs(std::slice::from_ref(&post), &Reads::default())
            .is_empty()
    );
    // The deleted id is asked about; so is any ref that comes without its beam.
    let (_, repost) = f.post_carrying("body 2");
    let asked = f
        .core
        .needs(std::slice::from_ref(&repost), &Reads::default());
    assert_eq!(asked.beams, [deleted]);
    let without = f.post(&f.owner, 3);
    let asked = f
        .core
        .needs(std::slice::from_ref(&without), &Reads::default());
    assert_eq!(asked.beams, [ContentId::of(&[3])]);
    // Too many tombstones to keep: every id is asked about again.
    let many = (0..=MAX_KNOWN_TOMBSTONES as u32)
        .map(|n| ContentId::of(&n.to_be_bytes()))
        .collect();
    f.core.know_tombstones(Tombstones::from_store(Some(many)));
    let asked = f.core.needs(std::slice::from_ref(&post), &Reads::default());
    assert_eq!(asked.beams, [first]);
}

#[test]
fn a_tombstone_signed_by_a_node_is_appended_only_from_the_authors_home_node() {
    let node = pair(9);
    let mut f = Fixture::new(&node);
    let post = f.post(&f.owner, 1);
    f.decide(
        vec![Input::Create(Box::new(f.genesis.clone())), post],
        Reads::default(),
    );
    let beam = ContentId::of(&[1]);
    let mut reads = Reads::default();
    reads
        .refs
        .insert((beam, f.space.clone(), f.owner.did().clone()), true);
    let stranger = pair(7);
    let removal = |by: &Keypair| Input::Append {
        space: f.space.clone(),
        payload: Box::new(Payload::Tombstone(
            Tombstone::by_node(by, beam, f.owner.did().clone(), 5).unwrap(),
        )),
        beam: None,
        via: Some(by.did().clone()),
    };
    // Another node cannot remove the owner's beam, even though it signed and carried it.
    let decided = f.core.decide(vec![removal(&stranger)], &reads, 6);
    assert!(
        matches!(
            &decided.outcomes[0],
            Outcome::Refused(SequenceError::Refused(r)) if matches!(**r, Refusal::Forbidden(_))
        ),
        "{:?}",
        decided.outcomes[0]
    );
    // The owner's home (this node, the sequencer) can.
    let decided = f.core.decide(vec![removal(&node)], &reads, 7);
    assert_eq!(acks(&decided), [3]);
}

#[test]
fn an_edit_stores_its_version_and_is_appended_where_its_author_posted_the_beam() {
    let node = pair(9);
    let mut f = Fixture::new(&node);
    let (path, post) = f.post_carrying("b");
    f.decide(
        vec![Input::Create(Box::new(f.genesis.clone())), post],
        Reads::default(),
    );
    let (version, edit) =
        northstar_protocol::wire::Edit::create(&f.owner, path.beam, 1, "t", "v1", 6, true).unwrap();
    let input = |edit: &northstar_protocol::wire::Edit| Input::Edit {
        edit: Box::new(edit.clone()),
        beam: Box::new(version.clone()),
    };
    let mut reads = Reads::default();
    reads.beams.insert(
        path.beam,
        vec![Known {
            author: f.owner.did().clone(),
            deleted: false,
        }],
    );
    reads
        .referencing
        .insert((path.beam, f.owner.did().clone()), vec![f.space.clone()]);
    assert!(f.core.needs(&[input(&edit)], &reads).is_empty());
    let decided = f.core.decide(vec![input(&edit)], &reads, 7);
    match &decided.outcomes[0] {
        Outcome::Deleted(d) => {
            assert_eq!(d.acks.iter().map(|a| a.seq).collect::<Vec<_>>(), vec![3]);
            assert!(d.remote.is_empty());
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        decided
            .ops
            .iter()
            .filter(|op| matches!(op, Op::Edit { .. }))
            .count(),
        1,
        "the edit's row is written once"
    );
    assert!(decided.ops.iter().any(|op| matches!(op, Op::PutBeam(_))));
    assert!(matches!(
        &decided.forward[0].payload,
        Payload::Edit(e) if *e == edit
    ));

    // Once the beam is deleted, an edit of it is refused.
    let mut reads = Reads::default();
    reads.beams.insert(
        path.beam,
        vec![Known {
            author: f.owner.did().clone(),
            deleted: true,
        }],
    );
    reads
        .referencing
        .insert((path.beam, f.owner.did().clone()), vec![f.space.clone()]);
    let decided = f.core.decide(vec![input(&edit)], &reads, 8);
    assert!(matches!(
        decided.outcomes[0],
        Outcome::Refused(SequenceError::BeamDeleted(_))
    ));
}
