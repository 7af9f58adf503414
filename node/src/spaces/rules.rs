//! A space's rules as a plain state machine: who may do what, and what each event changes.
//!
//! [`SpaceState::admit`] decides, without I/O, whether a verified payload may be appended and
//! which membership changes it makes; [`SpaceState::apply`] moves the state past an appended
//! event; [`SpaceState::effects`] is what a replica applies for an event it did not judge. The
//! member nodes, from which every node derives the same broadcast tree, come from here too.

use std::collections::{HashMap, VecDeque};

use northstar_protocol::address::{SpaceId, SpaceType};
use northstar_protocol::wire::{Home, MembershipAction, Payload, SpaceGenesis};
use northstar_protocol::{ContentId, Did};

use super::routing::TreeNodes;
use crate::store::MemberState;

/// Why a payload may not be appended.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The author must be a member.
    #[error("{0} is not a member of this space")]
    NotMember(Did),
    /// The author is a member but may not do this.
    #[error("forbidden: {0}")]
    Forbidden(&'static str),
    /// A `dm` can only be joined after an invite from its owner.
    #[error("this dm can only be joined after an invite from its owner")]
    InviteRequired,
    /// The DID was banned from the space.
    #[error("{0} is banned from this space")]
    Banned(Did),
    /// The subject is a member already.
    #[error("{0} is already a member")]
    AlreadyMember(Did),
    /// A node submitted a request for a user whose home it is not.
    #[error("the submitting node is not the author's home node in this space")]
    NotHome,
    /// A genesis can only start a space.
    #[error("a space's genesis can only be its first event")]
    SecondGenesis,
    /// A ref names a beam id that belongs to another author's beam.
    #[error(
        "beam {beam} is {owner}'s: a ref names a beam of its own author (the beam's path is beam/{{authorHash}}/{{beamId}} of the ref's author)"
    )]
    ForeignBeam {
        /// The beam id.
        beam: ContentId,
        /// Its author.
        owner: Did,
    },
}

/// A change to one member's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberChange {
    /// Whose state changes.
    pub did: Did,
    /// The new state; `None` removes the DID from the space.
    pub state: Option<MemberState>,
    /// For a join (and the owner at genesis): the member's home node.
    pub home: Option<Home>,
}

/// One DID's standing in a space.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Its state.
    pub state: MemberState,
    /// The event that set it.
    pub seq: u64,
    /// For a member: the node holding its replica and speaking for it.
    pub home: Option<Home>,
}

/// What a node knows about one space: enough to decide requests (as its sequencer) and to
/// build its broadcast tree (as any member node).
#[derive(Debug, Clone)]
pub struct SpaceState {
    /// The space.
    pub id: SpaceId,
    /// The node that sequences it.
    pub sequencer: Did,
    /// Where that node is reached (`host[:port]`).
    pub authority: String,
    /// Children per node in its broadcast tree.
    pub fanout: u32,
    /// Seq of the last event.
    pub head_seq: u64,
    /// Id of the last event.
    pub head_id: ContentId,
    members: HashMap<Did, Member>,
    /// Bumped whenever membership changes, so the broadcast tree is rebuilt only then.
    pub members_version: u64,
    /// The ids of the latest events, so a duplicate can be told from a fork without a read.
    recent: VecDeque<(u64, ContentId)>,
}

/// How many of the latest event ids a state remembers.
const RECENT: usize = 1024;

impl SpaceState {
    /// The state right after the genesis event `genesis_id`: the owner is the only member, at
    /// home on the sequencer.
    pub fn genesis(genesis: &SpaceGenesis, genesis_id: ContentId) -> Self {
        let mut state = Self {
            id: genesis.space.clone(),
            sequencer: genesis.sequencer.clone(),
            authority: genesis.authority.clone(),
            fanout: genesis.fanout,
            head_seq: 0,
            head_id: genesis_id,
            members: HashMap::new(),
            members_version: 0,
            recent: VecDeque::new(),
        };
        state.apply(1, genesis_id, &[Self::owner_change(genesis)]);
        state
    }

    /// The genesis's one change: the owner becomes a member at home on the sequencer.
    pub fn owner_change(genesis: &SpaceGenesis) -> MemberChange {
        MemberChange {
            did: genesis.space.owner().clone(),
            state: Some(MemberState::Member),
            home: Some(Home::new(
                genesis.sequencer.clone(),
                genesis.authority.clone(),
            )),
        }
    }

    /// The state as stored.
    pub fn restore(
        id: SpaceId,
        sequencer: Did,
        authority: String,
        fanout: u32,
        head_seq: u64,
        head_id: ContentId,
        members: impl IntoIterator<Item = (Did, Member)>,
    ) -> Self {
        Self {
            id,
            sequencer,
            authority,
            fanout,
            head_seq,
            head_id,
            members: members.into_iter().collect(),
            members_version: 0,
            recent: VecDeque::from([(head_seq, head_id)]),
        }
    }

    /// The id of event `seq`, if it is among the latest this state remembers.
    pub fn recent_id(&self, seq: u64) -> Option<ContentId> {
        self.recent
            .iter()
            .find(|(s, _)| *s == seq)
            .map(|(_, id)| *id)
    }

    /// A member's home node.
    pub fn home_of(&self, did: &Did) -> Option<&Home> {
        self.members
            .get(did)
            .filter(|m| m.state == MemberState::Member)
            .and_then(|m| m.home.as_ref())
    }

    /// The nodes of the space's broadcast tree, as this state names them: the sequencer, the
    /// fan-out and [`SpaceState::member_nodes`].
    pub fn tree_nodes(&self) -> TreeNodes {
        TreeNodes {
            sequencer: self.sequencer.clone(),
            fanout: self.fanout,
            nodes: self.member_nodes(),
        }
    }

    /// The member nodes other than the sequencer, in the order the broadcast tree uses: by the
    /// earliest seq at which one of its current members joined, then by DID; for a stream,
    /// then stably by capacity, highest first (`spec/protocol.md` §10.5). Each home carries
    /// the capacity of the latest join of a current member at home there.
    pub fn member_nodes(&self) -> Vec<Home> {
        let mut nodes = self.nodes_by_first_join();
        if self.id.space_type() == SpaceType::Stream {
            let mut latest: HashMap<&Did, (u64, Option<u32>)> = HashMap::new();
            for (member, home) in self.homes() {
                let entry = latest.entry(&home.node).or_insert((0, None));
                if member.seq >= entry.0 {
                    *entry = (member.seq, home.capacity);
                }
            }
            for node in &mut nodes {
                node.capacity = latest.get(&node.node).and_then(|(_, c)| *c);
            }
            super::tree::capacity_order(&mut nodes, Home::capacity);
        } else {
            for node in &mut nodes {
                node.capacity = None;
            }
        }
        nodes
    }

    /// The current members with their homes.
    fn homes(&self) -> impl Iterator<Item = (&Member, &Home)> {
        self.members.values().filter_map(|member| {
            let home = member
                .home
                .as_ref()
                .filter(|_| member.state == MemberState::Member)?;
            Some((member, home))
        })
    }

    fn nodes_by_first_join(&self) -> Vec<Home> {
        let mut first: HashMap<&Did, (u64, &Home)> = HashMap::new();
        for (member, home) in self.homes() {
            if home.node == self.sequencer {
                continue;
            }
            let entry = first.entry(&home.node).or_insert((member.seq, home));
            if member.seq < entry.0 {
                *entry = (member.seq, home);
            }
        }
        let mut nodes: Vec<(u64, &Home)> = first.into_values().collect();
        nodes.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.node.cmp(&b.1.node)));
        nodes.into_iter().map(|(_, home)| home.clone()).collect()
    }

    /// A DID's state, if it has one.
    pub fn member_state(&self, did: &Did) -> Option<MemberState> {
        self.members.get(did).map(|m| m.state)
    }

    /// Whether `did` is a member.
    pub fn is_member(&self, did: &Did) -> bool {
        self.member_state(did) == Some(MemberState::Member)
    }

    /// Decide whether `payload` (signature already verified) may be appended, and what it
    /// changes. Tombstones and edits are admitted by the caller, which knows where the beam was
    /// posted.
    pub fn admit(&self, payload: &Payload) -> Result<Vec<MemberChange>, Refusal> {
        let owner = self.id.owner();
        match payload {
            Payload::Create(_) => Err(Refusal::SecondGenesis),
            Payload::BeamRef(r) => {
                if !self.is_member(&r.author) {
                    return Err(Refusal::NotMember(r.author.clone()));
                }
                if self.id.space_type() == SpaceType::Stream && &r.author != owner {
                    return Err(Refusal::Forbidden("only the owner writes to a stream"));
                }
                Ok(Vec::new())
            }
            Payload::Tombstone(_) | Payload::Edit(_) => Ok(Vec::new()),
            Payload::Membership(m) => {
                let subject = &m.subject;
                let state = self.member_state(subject);
                let by_owner = &m.actor == owner;
                let change = match m.action {
                    MembershipAction::Join => match state {
                        Some(MemberState::Member) => {
                            return Err(Refusal::AlreadyMember(subject.clone()));
                        }
                        Some(MemberState::Banned) => return Err(Refusal::Banned(subject.clone())),
                        Some(MemberState::Invited) => Some(MemberState::Member),
                        None if self.id.space_type() == SpaceType::Dm => {
                            return Err(Refusal::InviteRequired);
                        }
                        None => Some(MemberState::Member),
                    },
                    MembershipAction::Leave => {
                        if subject == owner {
                            return Err(Refusal::Forbidden("the owner cannot leave their space"));
                        }
                        if state != Some(MemberState::Member) {
                            return Err(Refusal::NotMember(subject.clone()));
                        }
                        None
                    }
                    MembershipAction::Invite => {
                        if !self.is_member(&m.actor) {
                            return Err(Refusal::NotMember(m.actor.clone()));
                        }
                        if self.id.space_type() == SpaceType::Dm && !by_owner {
                            return Err(Refusal::Forbidden("only the owner invites into a dm"));
                        }
                        match state {
                            Some(MemberState::Member) => {
                                return Err(Refusal::AlreadyMember(subject.clone()));
                            }
                            Some(MemberState::Banned) => {
                                return Err(Refusal::Banned(subject.clone()));
                            }
                            _ => Some(MemberState::Invited),
                        }
                    }
                    MembershipAction::Kick | MembershipAction::Ban => {
                        if !by_owner {
                            return Err(Refusal::Forbidden("only the owner removes members"));
                        }
                        if subject == owner {
                            return Err(Refusal::Forbidden("the owner cannot remove themselves"));
                        }
                        if m.action == MembershipAction::Kick {
                            if state != Some(MemberState::Member) {
                                return Err(Refusal::NotMember(subject.clone()));
                            }
                            None
                        } else {
                            Some(MemberState::Banned)
                        }
                    }
                };
                let home = (change == Some(MemberState::Member))
                    .then(|| m.home.clone())
                    .flatten();
                Ok(vec![MemberChange {
                    did: subject.clone(),
                    state: change,
                    home,
                }])
            }
        }
    }

    /// What an event the sequencer appended changes, without judging it: a replica trusts the
    /// sequencer's signature for the rules and only follows the effects.
    pub fn effects(payload: &Payload) -> Vec<MemberChange> {
        match payload {
            Payload::Create(genesis) => vec![Self::owner_change(genesis)],
            Payload::Membership(m) => {
                let state = match m.action {
                    MembershipAction::Join => Some(MemberState::Member),
                    MembershipAction::Invite => Some(MemberState::Invited),
                    MembershipAction::Ban => Some(MemberState::Banned),
                    MembershipAction::Leave | MembershipAction::Kick => None,
                };
                vec![MemberChange {
                    did: m.subject.clone(),
                    state,
                    home: m
                        .home
                        .clone()
                        .filter(|_| m.action == MembershipAction::Join),
                }]
            }
            Payload::BeamRef(_) | Payload::Tombstone(_) | Payload::Edit(_) => Vec::new(),
        }
    }

    /// Move past the appended event `seq` with id `id`, applying its membership changes.
    pub fn apply(&mut self, seq: u64, id: ContentId, changes: &[MemberChange]) {
        self.head_seq = seq;
        self.head_id = id;
        if self.recent.len() == RECENT {
            self.recent.pop_front();
        }
        self.recent.push_back((seq, id));
        if !changes.is_empty() {
            self.members_version += 1;
        }
        for change in changes {
            match change.state {
                Some(state) => self.members.insert(
                    change.did.clone(),
                    Member {
                        state,
                        seq,
                        home: change.home.clone(),
                    },
                ),
                None => self.members.remove(&change.did),
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use northstar_protocol::Keypair;
    use northstar_protocol::wire::{BeamRef, Membership};

    use super::*;

    fn pair(byte: u8) -> Keypair {
        Keypair::from_seed(&[byte; 32])
    }

    fn space(kind: SpaceType, owner: &Keypair) -> SpaceState {
        let id = SpaceId::new(kind, owner.did(), "s").unwrap();
        let node = pair(9);
        let genesis =
            SpaceGenesis::create(owner, id, "S", node.did().clone(), "seq.example", 3, 1).unwrap();
        SpaceState::genesis(&genesis, ContentId::of(b"genesis"))
    }

    fn home(byte: u8) -> Home {
        Home::new(pair(byte).did().clone(), format!("node{byte}.example"))
    }

    fn act(
        state: &SpaceState,
        actor: &Keypair,
        action: MembershipAction,
        subject: &Did,
    ) -> Payload {
        let request = if action == MembershipAction::Join {
            Membership::join(actor, state.id.clone(), home(20), 1)
        } else {
            Membership::create(actor, state.id.clone(), action, subject.clone(), 1)
        };
        Payload::Membership(request.unwrap())
    }

    fn post(state: &SpaceState, author: &Keypair) -> Payload {
        Payload::BeamRef(
            BeamRef::create(author, state.id.clone(), ContentId::of(b"b"), "h", 1).unwrap(),
        )
    }

    fn run(
        state: &mut SpaceState,
        make: impl FnOnce(&SpaceState) -> Payload,
    ) -> Result<(), Refusal> {
        let payload = make(state);
        let changes = state.admit(&payload)?;
        assert_eq!(
            changes,
            SpaceState::effects(&payload),
            "a replica must follow the same effects"
        );
        assert_eq!(
            changes,
            SpaceState::effects(&payload),
            "a replica must follow the same effects"
        );
        let seq = state.head_seq + 1;
        state.apply(seq, ContentId::of(&seq.to_be_bytes()), &changes);
        Ok(())
    }

    #[test]
    fn dm_requires_an_invite_from_the_owner_and_hides_from_outsiders() {
        let (owner, bob, eve) = (pair(1), pair(2), pair(3));
        let mut dm = space(SpaceType::Dm, &owner);
        assert_eq!(
            run(&mut dm, |s| act(s, &bob, MembershipAction::Join, bob.did())),
            Err(Refusal::InviteRequired)
        );
        assert!(!dm.is_member(bob.did()));
        run(&mut dm, |s| {
            act(s, &owner, MembershipAction::Invite, bob.did())
        })
        .unwrap();
        assert!(
            !dm.is_member(bob.did()),
            "an invite alone does not open the dm"
        );
        run(&mut dm, |s| act(s, &bob, MembershipAction::Join, bob.did())).unwrap();
        assert!(dm.is_member(bob.did()));
        // A member who is not the owner cannot invite.
        assert!(matches!(
            run(&mut dm, |s| act(
                s,
                &bob,
                MembershipAction::Invite,
                eve.did()
            )),
            Err(Refusal::Forbidden(_))
        ));
        assert_eq!(
            run(&mut dm, |s| post(s, &eve)),
            Err(Refusal::NotMember(eve.did().clone()))
        );
        run(&mut dm, |s| post(s, &bob)).unwrap();
    }

    #[test]
    fn only_the_owner_writes_to_a_stream() {
        let (owner, bob) = (pair(1), pair(2));
        let mut stream = space(SpaceType::Stream, &owner);
        run(&mut stream, |s| {
            act(s, &bob, MembershipAction::Join, bob.did())
        })
        .unwrap();
        assert!(matches!(
            run(&mut stream, |s| post(s, &bob)),
            Err(Refusal::Forbidden(_))
        ));
        run(&mut stream, |s| post(s, &owner)).unwrap();
        assert_eq!(stream.head_seq, 3);
    }

    /// The worked example of `spec/protocol.md` §10.5.
    #[test]
    fn a_streams_member_nodes_are_ordered_by_capacity_then_by_first_join() {
        let owner = pair(1);
        let mut stream = space(SpaceType::Stream, &owner);
        let with = |byte: u8, capacity: Option<u32>| Home {
            capacity,
            ..home(byte)
        };
        // Joins, in seq order: N1 declares nothing (10000), N2 2000, N3 50000, N4 10000,
        // N5 2000.
        let joins = [
            (30, with(41, None)),
            (31, with(42, Some(2_000))),
            (32, with(43, Some(50_000))),
            (33, with(44, Some(10_000))),
            (34, with(45, Some(2_000))),
        ];
        let join = |stream: &mut SpaceState, user: u8, home: Home| {
            let request = Membership::join(&pair(user), stream.id.clone(), home, 1).unwrap();
            let changes = stream.admit(&Payload::Membership(request)).unwrap();
            let seq = stream.head_seq + 1;
            stream.apply(seq, ContentId::of(&seq.to_be_bytes()), &changes);
        };
        for (user, home) in joins {
            join(&mut stream, user, home);
        }
        let order = |state: &SpaceState| -> Vec<(String, u32)> {
            state
                .member_nodes()
                .into_iter()
                .map(|h| (h.authority.clone(), h.capacity()))
                .collect()
        };
        let named = |list: &[(u8, u32)]| -> Vec<(String, u32)> {
            list.iter()
                .map(|(b, c)| (format!("node{b}.example"), *c))
                .collect()
        };
        assert_eq!(
            order(&stream),
            named(&[
                (43, 50_000),
                (41, 10_000),
                (44, 10_000),
                (42, 2_000),
                (45, 2_000)
            ])
        );
        // A later join through N2 declaring 60000 is N2's capacity now: it goes first.
        join(&mut stream, 35, with(42, Some(60_000)));
        assert_eq!(
            order(&stream),
            named(&[
                (42, 60_000),
                (43, 50_000),
                (41, 10_000),
                (44, 10_000),
                (45, 2_000)
            ])
        );
        // A channel's tree ignores capacities: the order of first joins.
        let mut channel = space(SpaceType::Channel, &owner);
        join(&mut channel, 30, with(41, Some(1)));
        join(&mut channel, 31, with(42, Some(99_999)));
        let plain: Vec<_> = channel
            .member_nodes()
            .into_iter()
            .map(|h| h.authority)
            .collect();
        assert_eq!(plain, ["node41.example", "node42.example"]);
    }

    #[test]
    fn member_nodes_are_ordered_by_first_join_and_exclude_the_sequencer() {
        let owner = pair(1);
        let mut ch = space(SpaceType::Channel, &owner);
        assert!(
            ch.member_nodes().is_empty(),
            "the owner lives on the sequencer"
        );
        let joiners: Vec<Keypair> = (30..36).map(pair).collect();
        let homes = [home(40), home(41), home(40), home(42), home(41), home(43)];
        for (user, h) in joiners.iter().zip(&homes) {
            let request = Membership::join(user, ch.id.clone(), h.clone(), 1).unwrap();
            let payload = Payload::Membership(request);
            let changes = ch.admit(&payload).unwrap();
            let seq = ch.head_seq + 1;
            ch.apply(seq, ContentId::of(&seq.to_be_bytes()), &changes);
        }
        let order: Vec<_> = ch.member_nodes().into_iter().map(|h| h.authority).collect();
        assert_eq!(
            order,
            [
                "node40.example",
                "node41.example",
                "node42.example",
                "node43.example"
            ]
        );
        // When node 40's first member leaves, its place follows its next member's join.
        let leave = Membership::create(
            &joiners[0],
            ch.id.clone(),
            MembershipAction::Leave,
            joiners[0].did().clone(),
            2,
        )
        .unwrap();
        let changes = ch.admit(&Payload::Membership(leave)).unwrap();
        ch.apply(9, ContentId::of(b"9"), &changes);
        let order: Vec<_> = ch.member_nodes().into_iter().map(|h| h.authority).collect();
        assert_eq!(
            order,
            [
                "node41.example",
                "node40.example",
                "node42.example",
                "node43.example"
            ]
        );
    }

    #[test]
    fn channel_membership_follows_join_leave_kick_and_ban() {
        let (owner, bob) = (pair(1), pair(2));
        let mut ch = space(SpaceType::Channel, &owner);
        assert_eq!(
            run(&mut ch, |s| post(s, &bob)),
            Err(Refusal::NotMember(bob.did().clone()))
        );
        run(&mut ch, |s| act(s, &bob, MembershipAction::Join, bob.did())).unwrap();
        assert_eq!(
            run(&mut ch, |s| act(s, &bob, MembershipAction::Join, bob.did())),
            Err(Refusal::AlreadyMember(bob.did().clone()))
        );
        run(&mut ch, |s| {
            act(s, &bob, MembershipAction::Leave, bob.did())
        })
        .unwrap();
        assert!(!ch.is_member(bob.did()));
        run(&mut ch, |s| act(s, &bob, MembershipAction::Join, bob.did())).unwrap();
        assert!(matches!(
            run(&mut ch, |s| act(
                s,
                &bob,
                MembershipAction::Kick,
                owner.did()
            )),
            Err(Refusal::Forbidden(_))
        ));
        run(&mut ch, |s| {
            act(s, &owner, MembershipAction::Ban, bob.did())
        })
        .unwrap();
        assert_eq!(
            run(&mut ch, |s| act(s, &bob, MembershipAction::Join, bob.did())),
            Err(Refusal::Banned(bob.did().clone()))
        );
        assert!(matches!(
            run(&mut ch, |s| act(
                s,
                &owner,
                MembershipAction::Leave,
                owner.did()
            )),
            Err(Refusal::Forbidden(_))
        ));
    }
}
