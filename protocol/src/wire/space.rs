//! A space's founding statement and membership requests (`spec/` §4.3, §4.4).

use serde::{Deserialize, Serialize};

use crate::address::{SpaceId, check_authority};
use crate::did::Did;
use crate::keys::Keypair;
use crate::sign::{self, Domain, Signature, SignatureError};
use crate::wire::{MAX_NAME_LEN, RuleError, check_len, signed_object};

/// The largest fan-out a space's broadcast tree may have.
pub const MAX_FANOUT: u32 = 64;

/// The owner's signed statement that founds a space and names its sequencer node, so every
/// member can check the chain of authority: owner → sequencer → events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpaceGenesis {
    /// The space; its owner part names the signer.
    pub space: SpaceId,
    /// A human name, at most 256 bytes.
    pub name: String,
    /// The node DID that sequences the space.
    pub sequencer: Did,
    /// The sequencer's `host[:port]`, the authority of the space's URI.
    pub authority: String,
    /// Children per node in the space's broadcast tree (1 to [`MAX_FANOUT`]); every member
    /// node builds the same tree from it.
    pub fanout: u32,
    /// Creation time, ms since the Unix epoch.
    pub created_at: u64,
    /// The owner's signature.
    pub sig: Signature,
}
signed_object!(SpaceGenesis, Domain::SpaceGenesis);

impl SpaceGenesis {
    /// A genesis signed by the space's owner.
    pub fn create(
        owner: &Keypair,
        space: SpaceId,
        name: &str,
        sequencer: Did,
        authority: &str,
        fanout: u32,
        created_at: u64,
    ) -> Result<Self, SignatureError> {
        let mut genesis = Self {
            space,
            name: name.to_owned(),
            sequencer,
            authority: authority.to_owned(),
            fanout,
            created_at,
            sig: Signature::UNSIGNED,
        };
        let signer = genesis.space.owner().clone();
        sign::sign(&mut genesis, owner, &signer)?;
        Ok(genesis)
    }

    /// Check the owner's signature.
    pub fn verify(&self) -> Result<(), SignatureError> {
        sign::verify(self, self.space.owner())
    }

    /// Check the rules that do not need the signature: lengths and the authority's shape.
    pub fn check_rules(&self) -> Result<(), RuleError> {
        check_len("name", &self.name, MAX_NAME_LEN)?;
        if !(1..=MAX_FANOUT).contains(&self.fanout) {
            return Err(RuleError::Fanout(self.fanout));
        }
        check_authority(&self.authority).map_err(RuleError::Address)
    }
}

/// What a membership request asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MembershipAction {
    /// The actor joins (subject = actor).
    Join,
    /// The actor leaves (subject = actor).
    Leave,
    /// The actor invites the subject (into a `dm`, only the owner may).
    Invite,
    /// The actor removes the subject, who may join again (owner only).
    Kick,
    /// The actor removes the subject for good (owner only).
    Ban,
}

impl MembershipAction {
    /// The action's name on the wire, which is also the kind of the event it becomes.
    pub const fn as_str(self) -> &'static str {
        match self {
            MembershipAction::Join => "join",
            MembershipAction::Leave => "leave",
            MembershipAction::Invite => "invite",
            MembershipAction::Kick => "kick",
            MembershipAction::Ban => "ban",
        }
    }
}

/// A request, signed by its actor, to change who belongs to a space.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Membership {
    /// The space.
    pub space: SpaceId,
    /// Who asks (the signer).
    pub actor: Did,
    /// What is asked.
    pub action: MembershipAction,
    /// Whom it concerns: the actor for join and leave, another DID otherwise.
    pub subject: Did,
    /// For a join, and only then: the node that will hold the joiner's replica of the space and
    /// speak for the joiner to the sequencer (the joiner's home node).
    #[serde(
        default,
        deserialize_with = "crate::canonical::present",
        skip_serializing_if = "Option::is_none"
    )]
    pub home: Option<Home>,
    /// When the actor signed it, ms since the Unix epoch.
    pub created_at: u64,
    /// The actor's signature.
    pub sig: Signature,
}

/// A user's home node: its DID and its `host[:port]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Home {
    /// The node's DID.
    pub node: Did,
    /// The node's authority.
    pub authority: String,
    /// The node's uplink for live streams, kbit/s, as the node declares it (`node.info`'s
    /// `stream_capacity`); absent means [`DEFAULT_CAPACITY`]. Stream trees order member
    /// nodes by it (`spec/protocol.md` §10.5).
    #[serde(
        default,
        deserialize_with = "crate::canonical::present",
        skip_serializing_if = "Option::is_none"
    )]
    pub capacity: Option<u32>,
}

/// The stream uplink assumed for a home that declares none, kbit/s.
pub const DEFAULT_CAPACITY: u32 = 10_000;

impl Home {
    /// A home without a declared capacity.
    pub fn new(node: Did, authority: impl Into<String>) -> Self {
        Self {
            node,
            authority: authority.into(),
            capacity: None,
        }
    }

    /// The declared capacity, or [`DEFAULT_CAPACITY`].
    pub fn capacity(&self) -> u32 {
        self.capacity.unwrap_or(DEFAULT_CAPACITY)
    }
}
signed_object!(Membership, Domain::Membership);

impl Membership {
    /// A request signed by `actor` (a join is made with [`Membership::join`], which names
    /// the joiner's home).
    pub fn create(
        actor: &Keypair,
        space: SpaceId,
        action: MembershipAction,
        subject: Did,
        created_at: u64,
    ) -> Result<Self, SignatureError> {
        Self::signed(actor, space, action, subject, None, created_at)
    }

    /// A join by `actor`, naming its home node.
    pub fn join(
        actor: &Keypair,
        space: SpaceId,
        home: Home,
        created_at: u64,
    ) -> Result<Self, SignatureError> {
        let subject = actor.did().clone();
        Self::signed(
            actor,
            space,
            MembershipAction::Join,
            subject,
            Some(home),
            created_at,
        )
    }

    fn signed(
        actor: &Keypair,
        space: SpaceId,
        action: MembershipAction,
        subject: Did,
        home: Option<Home>,
        created_at: u64,
    ) -> Result<Self, SignatureError> {
        let mut request = Self {
            space,
            actor: actor.did().clone(),
            action,
            subject,
            home,
            created_at,
            sig: Signature::UNSIGNED,
        };
        let signer = request.actor.clone();
        sign::sign(&mut request, actor, &signer)?;
        Ok(request)
    }

    /// Check the actor's signature.
    pub fn verify(&self) -> Result<(), SignatureError> {
        sign::verify(self, &self.actor)
    }

    /// Check that the subject fits the action. Who may do what is the sequencer's call.
    pub fn check_rules(&self) -> Result<(), RuleError> {
        let action = self.action.as_str();
        let self_directed = matches!(
            self.action,
            MembershipAction::Join | MembershipAction::Leave
        );
        match (self_directed, self.subject == self.actor) {
            (true, false) => return Err(RuleError::SubjectNotActor { action }),
            (false, true) => return Err(RuleError::SubjectIsActor { action }),
            _ => {}
        }
        match (&self.home, self.action == MembershipAction::Join) {
            (None, true) => Err(RuleError::HomeRequired),
            (Some(_), false) => Err(RuleError::HomeNotAllowed { action }),
            (Some(home), true) => Ok(check_authority(&home.authority)?),
            (None, false) => Ok(()),
        }
    }
}
