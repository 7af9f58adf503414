//! A space's rules as a plain state machine: who may do what, and what each event changes.
//!
//! [`SpaceState::admit`] decides, without I/O, whether a verified payload may be appended and
//! which membership changes it makes; [`SpaceState::apply`] moves the state past an appended
//! event. The sequencer and (later) replicas use the same code, so they cannot disagree.

use std::collections::HashMap;

use northstar_protocol::address::{SpaceId, SpaceType};
use northstar_protocol::wire::{MembershipAction, Payload};
use northstar_protocol::{ContentId, Did};

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
    /// A genesis can only start a space.
    #[error("a space's genesis can only be its first event")]
    SecondGenesis,
}

/// A change to one member's state; `None` removes the member.
pub type MemberChange = (Did, Option<MemberState>);

/// What the sequencer knows about one space.
#[derive(Debug, Clone)]
pub struct SpaceState {
    /// The space.
    pub id: SpaceId,
    /// Seq of the last event.
    pub head_seq: u64,
    /// Id of the last event.
    pub head_id: ContentId,
    members: HashMap<Did, MemberState>,
}

impl SpaceState {
    /// The state right after the genesis event `genesis_id`: the owner is the only member.
    pub fn genesis(id: SpaceId, genesis_id: ContentId) -> Self {
        let owner = id.owner().clone();
        Self {
            id,
            head_seq: 1,
            head_id: genesis_id,
            members: HashMap::from([(owner, MemberState::Member)]),
        }
    }

    /// The state as stored.
    pub fn restore(
        id: SpaceId,
        head_seq: u64,
        head_id: ContentId,
        members: impl IntoIterator<Item = (Did, MemberState)>,
    ) -> Self {
        Self {
            id,
            head_seq,
            head_id,
            members: members.into_iter().collect(),
        }
    }

    /// A DID's state, if it has one.
    pub fn member_state(&self, did: &Did) -> Option<MemberState> {
        self.members.get(did).copied()
    }

    /// Whether `did` may read the space: anyone for channels and streams, members for a dm.
    pub fn may_read(&self, did: Option<&Did>) -> bool {
        match self.id.space_type() {
            SpaceType::Channel | SpaceType::Stream => true,
            SpaceType::Dm => did.is_some_and(|d| self.is_member(d)),
        }
    }

    /// Whether `did` is a member.
    pub fn is_member(&self, did: &Did) -> bool {
        self.member_state(did) == Some(MemberState::Member)
    }

    /// Decide whether `payload` (signature already verified) may be appended, and what it
    /// changes. Tombstones are admitted by the caller, which knows where the beam was posted.
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
            Payload::Tombstone(_) => Ok(Vec::new()),
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
                Ok(vec![(subject.clone(), change)])
            }
        }
    }

    /// Move past the appended event `seq` with id `id`, applying its membership changes.
    pub fn apply(&mut self, seq: u64, id: ContentId, changes: &[MemberChange]) {
        self.head_seq = seq;
        self.head_id = id;
        for (did, state) in changes {
            match state {
                Some(state) => self.members.insert(did.clone(), *state),
                None => self.members.remove(did),
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
        SpaceState::genesis(id, ContentId::of(b"genesis"))
    }

    fn act(
        state: &SpaceState,
        actor: &Keypair,
        action: MembershipAction,
        subject: &Did,
    ) -> Payload {
        Payload::Membership(
            Membership::create(actor, state.id.clone(), action, subject.clone(), 1).unwrap(),
        )
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
        assert!(!dm.may_read(Some(bob.did())));
        assert!(!dm.may_read(None));
        run(&mut dm, |s| {
            act(s, &owner, MembershipAction::Invite, bob.did())
        })
        .unwrap();
        assert!(
            !dm.may_read(Some(bob.did())),
            "an invite alone does not open the dm"
        );
        run(&mut dm, |s| act(s, &bob, MembershipAction::Join, bob.did())).unwrap();
        assert!(dm.may_read(Some(bob.did())));
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

    #[test]
    fn channel_membership_follows_join_leave_kick_and_ban() {
        let (owner, bob) = (pair(1), pair(2));
        let mut ch = space(SpaceType::Channel, &owner);
        assert!(ch.may_read(None));
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
