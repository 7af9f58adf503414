//! The signed objects clients and nodes exchange.
//!
//! Every object here is a JSON object with a `sig` member ([`crate::sign`]) and unknown
//! members refused, so what a verifier re-encodes is exactly what the signer signed. Optional
//! members are omitted when absent, never `null`. Shapes are normative in `spec/` §4.
//!
//! - [`auth`]: the challenge a node issues and the response that proves a DID.
//! - [`space`]: a space's genesis and membership requests.
//! - [`beam`]: beams, the refs that place them in spaces, and tombstones.
//! - [`event`]: the sequencer-signed entries of a space's log.
//! - [`edit`]: an author's new version of one of its beams, and how versions resolve.

pub mod auth;
pub mod beam;
pub mod edit;
pub mod event;
pub mod space;

pub use auth::{AuthChallenge, AuthResponse, ChallengeRefused};
pub use beam::{Beam, BeamRef, Tombstone};
pub use edit::Edit;
pub use event::{Event, EventError, Payload};
pub use space::{DEFAULT_CAPACITY, Home, Membership, MembershipAction, SpaceGenesis};

/// Implements [`crate::Signed`] for a struct whose signature lives in a `sig` field, with the
/// trait's other items given in braces where the kind differs from the default (a post's beam
/// and ref).
macro_rules! signed_object {
    ($ty:ty, $domain:expr) => {
        $crate::wire::signed_object!($ty, $domain, {});
    };
    ($ty:ty, $domain:expr, { $($item:tt)* }) => {
        impl $crate::sign::Signed for $ty {
            const DOMAIN: $crate::sign::Domain = $domain;
            fn signature(&self) -> &$crate::sign::Signature {
                &self.sig
            }
            fn signature_mut(&mut self) -> &mut $crate::sign::Signature {
                &mut self.sig
            }
            $($item)*
        }
    };
}
pub(crate) use signed_object;

/// The longest text field (name, title) in bytes.
pub const MAX_NAME_LEN: usize = 256;

/// The longest beam body in bytes. A node may set a lower limit.
pub const MAX_BODY_LEN: usize = 64 * 1024;

/// Why a well-formed object breaks a rule of its kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    /// A text field is longer than the protocol allows.
    #[error("{field} is {len} bytes, longer than the limit of {max}")]
    TooLong {
        /// The field.
        field: &'static str,
        /// Its length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// An authority or other address that is malformed.
    #[error(transparent)]
    Address(#[from] crate::address::AddressError),
    /// An origin that is not `ws://` or `wss://` followed by an authority.
    #[error("origin must be ws:// or wss:// followed by host[:port]")]
    BadOrigin,
    /// A membership request whose subject does not fit its action.
    #[error("{action} must name the actor as subject")]
    SubjectNotActor {
        /// The action.
        action: &'static str,
    },
    /// A fan-out outside 1..=64.
    #[error("fanout {0} is outside 1..=64")]
    Fanout(u32),
    /// A join without the joiner's home node.
    #[error("a join must name the joiner's home node")]
    HomeRequired,
    /// A home node on anything but a join.
    #[error("{action} must not name a home node")]
    HomeNotAllowed {
        /// The action.
        action: &'static str,
    },
    /// A challenge that expires no later than it was issued, so no answer could ever be in
    /// time.
    #[error("expires_at {expires_at} is not later than issued_at {issued_at}")]
    BadExpiry {
        /// When it was issued.
        issued_at: u64,
        /// When it expires.
        expires_at: u64,
    },
    /// More attachments than [`crate::blob::MAX_ATTACHMENTS`].
    #[error("{count} attachments, more than the limit of {max}")]
    TooManyAttachments {
        /// How many the beam carries.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// An attachment name that is empty, `.`, `..`, or has `/`, `\` or control characters.
    #[error("an attachment name must be a plain file name")]
    BadAttachmentName,
    /// A media type that is not `type/subtype` of RFC 6838 restricted names.
    #[error("media_type must be type/subtype (RFC 6838), without parameters")]
    BadMediaType,
    /// One blob attached twice to one beam.
    #[error("a beam attaches each blob at most once")]
    DuplicateAttachment,
    /// A size past the largest safe integer.
    #[error("size {size} is larger than 2^53 - 1")]
    TooLarge {
        /// The size.
        size: u64,
    },
    /// A membership request whose subject is the actor where it must be someone else.
    #[error("{action} must name another member as subject")]
    SubjectIsActor {
        /// The action.
        action: &'static str,
    },
    /// An edit numbered 0, the original's own number.
    #[error("an edit's version must be 1 or more; the original is version 0")]
    ZeroVersion,
    /// An edit whose version is the beam it supersedes.
    #[error("an edit must name a beam other than the one it supersedes")]
    SelfEdit,
}

impl RuleError {
    /// The error's stable name, used in `spec/` and its test vectors.
    pub fn code(&self) -> &'static str {
        match self {
            RuleError::TooLong { .. } => "too_long",
            RuleError::Address(_) => "bad_address",
            RuleError::BadOrigin => "bad_origin",
            RuleError::SubjectNotActor { .. } => "subject_not_actor",
            RuleError::SubjectIsActor { .. } => "subject_is_actor",
            RuleError::HomeRequired => "home_required",
            RuleError::Fanout(_) => "bad_fanout",
            RuleError::HomeNotAllowed { .. } => "home_not_allowed",
            RuleError::BadExpiry { .. } => "bad_expiry",
            RuleError::TooManyAttachments { .. } => "too_many_attachments",
            RuleError::BadAttachmentName => "bad_attachment_name",
            RuleError::BadMediaType => "bad_media_type",
            RuleError::DuplicateAttachment => "duplicate_attachment",
            RuleError::TooLarge { .. } => "too_large",
            RuleError::ZeroVersion => "zero_version",
            RuleError::SelfEdit => "self_edit",
        }
    }
}

pub(crate) fn check_len(field: &'static str, text: &str, max: usize) -> Result<(), RuleError> {
    if text.len() > max {
        return Err(RuleError::TooLong {
            field,
            len: text.len(),
            max,
        });
    }
    Ok(())
}
