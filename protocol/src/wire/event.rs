//! Sequenced events: the entries of a space's log (`spec/` §4.8).
//!
//! The sequencer verifies the author's signed payload, gives it the next `seq`, links it to the
//! previous event's id (`prev`), stamps its time and signs the whole. An event's id is its
//! content id. The first event (`seq` 1) is the space's genesis and has no `prev`; every later
//! event's `prev` is the id of event `seq - 1`, so a missing `seq` is a visible gap and two
//! different signed events for one `seq` prove the sequencer forked the log.

use serde::{Deserialize, Serialize};

use crate::address::SpaceId;
use crate::did::Did;
use crate::id::ContentId;
use crate::keys::Keypair;
use crate::sign::{self, Batch, Domain, Signature, SignatureError, Signed};
use crate::wire::beam::{BeamRef, Tombstone};
use crate::wire::edit::Edit;
use crate::wire::signed_object;
use crate::wire::space::{Membership, SpaceGenesis};

/// What an event carries: one author-signed object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    tag = "kind",
    content = "body",
    rename_all = "snake_case",
    deny_unknown_fields
)]
pub enum Payload {
    /// The space's genesis; only ever at `seq` 1.
    Create(SpaceGenesis),
    /// A join, leave, invite, kick or ban.
    Membership(Membership),
    /// A beam posted into the space.
    BeamRef(BeamRef),
    /// A beam referenced by the space was deleted.
    Tombstone(Tombstone),
    /// A beam referenced by the space has a new version (`spec/` §4.10).
    Edit(Edit),
}

impl Payload {
    /// The payload's author: whoever signed it.
    pub fn author(&self) -> &Did {
        match self {
            Payload::Create(g) => g.space.owner(),
            Payload::Membership(m) => &m.actor,
            Payload::BeamRef(r) => &r.author,
            Payload::Tombstone(t) => &t.author,
            Payload::Edit(e) => &e.author,
        }
    }

    /// The event kind shown to people and scripts: `create`, `join`, `leave`, `invite`,
    /// `kick`, `ban`, `beam`, `tombstone` or `edit`.
    pub fn kind(&self) -> &'static str {
        match self {
            Payload::Create(_) => "create",
            Payload::Membership(m) => m.action.as_str(),
            Payload::BeamRef(_) => "beam",
            Payload::Tombstone(_) => "tombstone",
            Payload::Edit(_) => "edit",
        }
    }

    /// Check the author's signature.
    pub fn verify(&self) -> Result<(), SignatureError> {
        match self {
            Payload::Create(g) => g.verify(),
            Payload::Membership(m) => m.verify(),
            Payload::BeamRef(r) => r.verify(),
            Payload::Tombstone(t) => t.verify(),
            Payload::Edit(e) => e.verify(),
        }
    }

    /// Who signed it: the author, but for a tombstone its home node signed.
    pub fn signer(&self) -> &Did {
        match self {
            Payload::Tombstone(t) => t.signer(),
            other => other.author(),
        }
    }

    /// Queue the signer's signature into `batch` instead of checking it now.
    pub fn queue(&self, batch: &mut Batch) -> Result<(), SignatureError> {
        let signer = self.signer();
        match self {
            Payload::Create(g) => batch.queue(g, signer),
            Payload::Membership(m) => batch.queue(m, signer),
            Payload::BeamRef(r) => batch.queue(r, signer),
            Payload::Tombstone(t) => batch.queue(t, signer),
            Payload::Edit(e) => batch.queue(e, signer),
        }
        .map(drop)
    }

    /// The space the payload names, if it names one (a tombstone and an edit do not).
    pub fn space(&self) -> Option<&SpaceId> {
        match self {
            Payload::Create(g) => Some(&g.space),
            Payload::Membership(m) => Some(&m.space),
            Payload::BeamRef(r) => Some(&r.space),
            Payload::Tombstone(_) | Payload::Edit(_) => None,
        }
    }
}

/// An entry of a space's log, signed by the space's sequencer node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Event {
    /// The space.
    pub space: SpaceId,
    /// The position in the log, from 1, without gaps.
    pub seq: u64,
    /// The id of event `seq - 1`; absent exactly when `seq` is 1.
    #[serde(
        default,
        deserialize_with = "crate::canonical::present",
        skip_serializing_if = "Option::is_none"
    )]
    pub prev: Option<ContentId>,
    /// When the sequencer sequenced it, ms since the Unix epoch.
    pub timestamp: u64,
    /// The author-signed content.
    pub payload: Payload,
    /// The sequencer's signature.
    pub sig: Signature,
}
signed_object!(Event, Domain::Event);

/// Why an event is not a valid entry of its log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    /// A signature (the sequencer's or the author's) does not verify.
    #[error(transparent)]
    Signature(#[from] SignatureError),
    /// `seq` is 0.
    #[error("seq must start at 1")]
    ZeroSeq,
    /// `prev` is present at seq 1 or absent later.
    #[error("prev must be absent exactly at seq 1 (seq {seq})")]
    PrevPresence {
        /// The event's seq.
        seq: u64,
    },
    /// A create payload anywhere but seq 1, or something else at seq 1.
    #[error("the genesis must be exactly the event at seq 1 (seq {seq})")]
    GenesisPlacement {
        /// The event's seq.
        seq: u64,
    },
    /// The payload names another space than the event.
    #[error("payload names space {payload}, the event {event}")]
    SpaceMismatch {
        /// The event's space.
        event: String,
        /// The payload's space.
        payload: String,
    },
}

impl EventError {
    /// The error's stable name, used in `spec/` and its test vectors.
    pub fn code(&self) -> &'static str {
        match self {
            EventError::Signature(e) => e.code(),
            EventError::ZeroSeq => "zero_seq",
            EventError::PrevPresence { .. } => "prev_presence",
            EventError::GenesisPlacement { .. } => "genesis_placement",
            EventError::SpaceMismatch { .. } => "space_mismatch",
        }
    }
}

impl Event {
    /// Sequence `payload` as event `seq` after `prev`, signed by the sequencer's node key.
    pub fn sequence(
        sequencer: &Keypair,
        space: SpaceId,
        seq: u64,
        prev: Option<ContentId>,
        timestamp: u64,
        payload: Payload,
    ) -> Result<Self, SignatureError> {
        let mut event = Self {
            space,
            seq,
            prev,
            timestamp,
            payload,
            sig: Signature::UNSIGNED,
        };
        let signer = sequencer.did().clone();
        sign::sign(&mut event, sequencer, &signer)?;
        Ok(event)
    }

    /// The event's author: whoever signed the payload.
    pub fn author(&self) -> &Did {
        self.payload.author()
    }

    /// Check everything one event can show by itself: its shape (seq, prev, genesis place,
    /// space), the sequencer's signature and the author's. Whether `prev` is the id of the
    /// event before is the log's check.
    pub fn verify(&self, sequencer: &Did) -> Result<(), EventError> {
        self.verify_id(sequencer).map(drop)
    }

    /// [`Event::verify`], returning the event's id from the bytes the signature was checked
    /// over: one canonical encoding for both.
    pub fn verify_id(&self, sequencer: &Did) -> Result<ContentId, EventError> {
        self.check_shape()?;
        let id = sign::verify_with_id(self, sequencer)?;
        self.payload.verify()?;
        Ok(id)
    }

    /// [`Event::verify_id`] with both signatures queued into `batch` instead of checked: the
    /// event is good only if the batch verifies. A batch gives the answer of checking one by
    /// one (`spec/` §3.4), but not which signature failed; for that, check one by one.
    pub fn queue_checks(
        &self,
        sequencer: &Did,
        batch: &mut Batch,
    ) -> Result<ContentId, EventError> {
        self.check_shape()?;
        let id = batch.queue(self, sequencer)?;
        self.payload.queue(batch)?;
        Ok(id)
    }

    /// The checks of the table in `spec/` §4.8 before the signatures.
    fn check_shape(&self) -> Result<(), EventError> {
        if self.seq == 0 {
            return Err(EventError::ZeroSeq);
        }
        if self.prev.is_some() != (self.seq > 1) {
            return Err(EventError::PrevPresence { seq: self.seq });
        }
        if matches!(self.payload, Payload::Create(_)) != (self.seq == 1) {
            return Err(EventError::GenesisPlacement { seq: self.seq });
        }
        if let Some(space) = self.payload.space().filter(|s| **s != self.space) {
            return Err(EventError::SpaceMismatch {
                event: self.space.to_string(),
                payload: space.to_string(),
            });
        }
        Ok(())
    }

    /// The event's id.
    pub fn id(&self) -> Result<ContentId, SignatureError> {
        self.content_id()
    }
}
