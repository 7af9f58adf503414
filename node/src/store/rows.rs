//! The rows and changes the storage interface speaks, the same on every backend.

use std::str::FromStr;

use super::StoreError;

/// A space as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpaceRow {
    /// Space id text.
    pub id: String,
    /// `channel`, `dm` or `stream`.
    pub space_type: String,
    /// Owner DID text.
    pub owner: String,
    /// Human name.
    pub name: String,
    /// Sequencer node DID text.
    pub sequencer: String,
    /// Sequencer authority.
    pub authority: String,
    /// Seq of the last event.
    pub head_seq: u64,
    /// Id of the last event.
    pub head_id: String,
    /// Creation time (ms).
    pub created_at: u64,
    /// Children per node in the space's broadcast tree.
    pub fanout: u32,
}

/// An event as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRow {
    /// Space id text.
    pub space: String,
    /// Position in the log.
    pub seq: u64,
    /// Content id text.
    pub id: String,
    /// Display kind (`create`, `join`, `beam`, …).
    pub kind: String,
    /// Author DID text.
    pub author: String,
    /// The signed event's JSON.
    pub json: String,
}

/// A member's state in a space.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MemberState {
    /// May read and (per the space's type) write.
    Member,
    /// Invited into a `dm`, not yet joined.
    Invited,
    /// Removed for good.
    Banned,
}

impl MemberState {
    /// The stored name.
    pub const fn as_str(self) -> &'static str {
        match self {
            MemberState::Member => "member",
            MemberState::Invited => "invited",
            MemberState::Banned => "banned",
        }
    }
}

impl FromStr for MemberState {
    type Err = StoreError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "member" => Ok(MemberState::Member),
            "invited" => Ok(MemberState::Invited),
            "banned" => Ok(MemberState::Banned),
            other => Err(StoreError::Corrupt {
                table: "members",
                reason: format!("unknown state {other:?}"),
            }),
        }
    }
}

/// A member row: a DID's state in a space and, for members, its home node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberRow {
    /// The DID text.
    pub did: String,
    /// Its state.
    pub state: MemberState,
    /// The event that set the state.
    pub seq: u64,
    /// For a member: its home node's DID and authority.
    pub home: Option<HomeRow>,
}

/// A home node as stored.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HomeRow {
    /// The node's DID text.
    pub node: String,
    /// The node's authority.
    pub authority: String,
    /// The stream uplink its join declared, kbit/s.
    pub capacity: Option<u32>,
}

/// A beam as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BeamRow {
    /// `beam/{authorHash}/{beamId}`.
    pub path: String,
    /// Content id text.
    pub id: String,
    /// Author DID text.
    pub author: String,
    /// The signed beam's JSON.
    pub json: String,
    /// Creation time (ms).
    pub created_at: u64,
}

/// A beam this node stores, caches or deleted (see [`Store::known_beams`](super::Store::known_beams)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownBeam {
    /// Content id text.
    pub id: String,
    /// Author DID text.
    pub author: String,
    /// Whether it was deleted here (its tombstone is kept).
    pub deleted: bool,
}

/// One change inside a [`Store::commit`](super::Store::commit) batch.
#[derive(Debug, Clone)]
pub enum Op {
    /// A new space (its first event follows as an [`Op::Event`]).
    CreateSpace(SpaceRow),
    /// Append an event and move the space's head to it.
    Event(EventRow),
    /// Set a member's state (or remove it with `None`).
    Member {
        /// Space id text.
        space: String,
        /// Member DID text.
        did: String,
        /// New state; `None` removes the row.
        state: Option<MemberState>,
        /// The event that set it.
        seq: u64,
        /// For a member, its home node.
        home: Option<HomeRow>,
    },
    /// Store a beam's content.
    PutBeam(BeamRow),
    /// Record that the beam at `path` was posted through this node, its home, into `space`,
    /// which another node sequences (idempotent; removed with the beam).
    Posted {
        /// The beam's path.
        path: String,
        /// Space id text.
        space: String,
    },
    /// Record that `author` placed `beam` in `space` at `seq` (idempotent).
    BeamRef {
        /// Beam content id text.
        beam: String,
        /// Space id text.
        space: String,
        /// The ref event.
        seq: u64,
        /// The beam's author, DID text.
        author: String,
        /// The author's home node, where the beam is fetched from.
        home: String,
    },
    /// Drop a cached copy of a beam authored elsewhere, if `author` wrote it.
    Uncache {
        /// Beam content id text.
        beam: String,
        /// The tombstone's author, DID text.
        author: String,
    },
    /// Keep an edit (idempotent), then delete the content of every version of its beam below
    /// the greatest edit of that beam that drops history, stored or cached (`spec/` §4.10).
    Edit {
        /// The edit's content id text.
        id: String,
        /// The original beam's content id text.
        original: String,
        /// The author, DID text.
        author: String,
        /// The version number.
        version: u64,
        /// The version's beam id text.
        beam: String,
        /// Whether the edit drops the versions below it.
        drop_history: bool,
        /// The signed edit's JSON.
        json: String,
    },
    /// Keep the proof that a sequencer signed two events for one seq.
    Fork {
        /// Space id text.
        space: String,
        /// The seq.
        seq: u64,
        /// The event held.
        kept: String,
        /// The event refused.
        rival: String,
        /// When it was seen (ms).
        detected_at: u64,
    },
    /// Delete a beam's content and keep its tombstone.
    DeleteBeam {
        /// The beam's path.
        path: String,
        /// Beam content id text.
        beam: String,
        /// Author DID text.
        author: String,
        /// The signed tombstone's JSON.
        tombstone: String,
    },
    /// Drop a space the operator removed, with its log, members, refs, posts and fork
    /// proofs, and remember its id so it is neither created nor replicated again.
    DropSpace {
        /// Space id text.
        space: String,
        /// When (ms).
        removed_at: u64,
    },
}

/// What the node holds, counted for its status page and `/.well-known/northstar`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counts {
    /// Users whose home is this node: distinct DIDs that are members of a space through it.
    pub users: u64,
    /// Spaces this node sequences.
    pub spaces_sequenced: u64,
    /// Spaces this node holds a replica of.
    pub spaces_replicated: u64,
    /// Other nodes this node knows in the spaces it holds: their sequencers and the home
    /// nodes of their members.
    pub peers: u64,
}

/// What the node knows of one DID for its operator (the `users` table): when it authenticated,
/// and what the operator decided about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRow {
    /// DID text.
    pub did: String,
    /// Its first authentication here (ms), if it authenticated since the table existed.
    pub first_seen: Option<u64>,
    /// Its latest authentication written (ms; written at most once a minute per DID).
    pub last_seen: Option<u64>,
    /// `Some(true)` if the operator allowed it at runtime, `Some(false)` if denied, `None` if
    /// the config file decides.
    pub allowed: Option<bool>,
    /// When the operator banned it from the node, while banned.
    pub banned_at: Option<u64>,
}
