//! The JSON-RPC API's result types and error codes (`spec/protocol.md` §6).
//!
//! The methods themselves are declared once in `crate::rpc`; these are the plain data types
//! they carry, usable without any RPC library.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::address::{SpaceId, SpaceType};
use crate::did::Did;
use crate::id::ContentId;

/// Application error codes. They sit outside JSON-RPC's reserved range -32768..=-32000; the
/// table in `spec/protocol.md` §6.4 lists them all, and a test checks it does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// The method needs an authenticated connection.
    AuthRequired,
    /// The response answers a challenge issued by another node.
    WrongNode,
    /// The challenge names another origin than this node's.
    WrongOrigin,
    /// The challenge expired.
    ChallengeExpired,
    /// The challenge's nonce was answered before.
    NonceReused,
    /// The nonce was issued to another connection, or never issued.
    NonceForeign,
    /// A signature does not verify.
    BadSignature,
    /// A DID is malformed.
    MalformedDid,
    /// The registration policy does not admit this DID.
    NotAllowed,
    /// An object is malformed or breaks a rule of its kind.
    MalformedObject,
    /// The request signs as someone else than the connection's DID.
    NotSigner,
    /// The space does not exist here.
    SpaceNotFound,
    /// The caller must be a member.
    NotMember,
    /// The caller may not do this.
    Forbidden,
    /// A space with this id exists already.
    SpaceExists,
    /// A dm is joined only after an invite.
    InviteRequired,
    /// The DID is banned from the space.
    Banned,
    /// The subject is a member already.
    AlreadyMember,
    /// The beam does not exist here (or was deleted).
    BeamNotFound,
    /// Too many requests; slow down.
    RateLimited,
    /// The request is larger than allowed.
    TooLarge,
    /// The connection holds as many subscriptions as allowed.
    TooManySubscriptions,
    /// The subscriber fell too far behind and was cut off; resume from its cursor.
    SlowSubscriber,
    /// The node failed; the details are in its log.
    Internal,
    /// The node is shutting down.
    ShuttingDown,
    /// Another node this request needs (a space's sequencer, a beam's home) cannot be reached.
    PeerUnreachable,
}

impl ErrorCode {
    /// Every code, in the order of the spec's table.
    pub const ALL: [ErrorCode; 26] = [
        ErrorCode::AuthRequired,
        ErrorCode::WrongNode,
        ErrorCode::WrongOrigin,
        ErrorCode::ChallengeExpired,
        ErrorCode::NonceReused,
        ErrorCode::NonceForeign,
        ErrorCode::BadSignature,
        ErrorCode::MalformedDid,
        ErrorCode::NotAllowed,
        ErrorCode::MalformedObject,
        ErrorCode::NotSigner,
        ErrorCode::SpaceNotFound,
        ErrorCode::NotMember,
        ErrorCode::Forbidden,
        ErrorCode::SpaceExists,
        ErrorCode::InviteRequired,
        ErrorCode::Banned,
        ErrorCode::AlreadyMember,
        ErrorCode::BeamNotFound,
        ErrorCode::RateLimited,
        ErrorCode::TooLarge,
        ErrorCode::TooManySubscriptions,
        ErrorCode::SlowSubscriber,
        ErrorCode::Internal,
        ErrorCode::ShuttingDown,
        ErrorCode::PeerUnreachable,
    ];

    /// The numeric code on the wire.
    pub const fn code(self) -> i32 {
        match self {
            ErrorCode::AuthRequired => 1001,
            ErrorCode::WrongNode => 1002,
            ErrorCode::WrongOrigin => 1003,
            ErrorCode::ChallengeExpired => 1004,
            ErrorCode::NonceReused => 1005,
            ErrorCode::NonceForeign => 1006,
            ErrorCode::BadSignature => 1007,
            ErrorCode::MalformedDid => 1008,
            ErrorCode::NotAllowed => 1009,
            ErrorCode::MalformedObject => 1101,
            ErrorCode::NotSigner => 1102,
            ErrorCode::SpaceNotFound => 1201,
            ErrorCode::NotMember => 1202,
            ErrorCode::Forbidden => 1203,
            ErrorCode::SpaceExists => 1204,
            ErrorCode::InviteRequired => 1205,
            ErrorCode::Banned => 1206,
            ErrorCode::AlreadyMember => 1207,
            ErrorCode::BeamNotFound => 1301,
            ErrorCode::RateLimited => 1401,
            ErrorCode::TooLarge => 1402,
            ErrorCode::TooManySubscriptions => 1403,
            ErrorCode::SlowSubscriber => 1404,
            ErrorCode::Internal => 1500,
            ErrorCode::ShuttingDown => 1501,
            ErrorCode::PeerUnreachable => 1601,
        }
    }

    /// The code's stable name, as in the spec's table.
    pub const fn name(self) -> &'static str {
        match self {
            ErrorCode::AuthRequired => "auth_required",
            ErrorCode::WrongNode => "wrong_node",
            ErrorCode::WrongOrigin => "wrong_origin",
            ErrorCode::ChallengeExpired => "challenge_expired",
            ErrorCode::NonceReused => "nonce_reused",
            ErrorCode::NonceForeign => "nonce_foreign",
            ErrorCode::BadSignature => "bad_signature",
            ErrorCode::MalformedDid => "malformed_did",
            ErrorCode::NotAllowed => "not_allowed",
            ErrorCode::MalformedObject => "malformed_object",
            ErrorCode::NotSigner => "not_signer",
            ErrorCode::SpaceNotFound => "space_not_found",
            ErrorCode::NotMember => "not_member",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::SpaceExists => "space_exists",
            ErrorCode::InviteRequired => "invite_required",
            ErrorCode::Banned => "banned",
            ErrorCode::AlreadyMember => "already_member",
            ErrorCode::BeamNotFound => "beam_not_found",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::TooManySubscriptions => "too_many_subscriptions",
            ErrorCode::SlowSubscriber => "slow_subscriber",
            ErrorCode::Internal => "internal",
            ErrorCode::ShuttingDown => "shutting_down",
            ErrorCode::PeerUnreachable => "peer_unreachable",
        }
    }

    /// The code for a wire number, if it is one of ours.
    pub fn from_code(code: i32) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.code() == code)
    }
}

/// What `node.info` tells anyone who asks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeInfo {
    /// The node's DID.
    pub did: Did,
    /// The software's name and version, e.g. `northstar/0.1.0`.
    pub version: String,
    /// The origin challenges carry, e.g. `wss://node.example`.
    pub public_url: String,
    /// The `host[:port]` of this node's URIs.
    pub authority: String,
    /// The fan-out this node gives the broadcast trees of spaces created on it; a genesis sent
    /// to `space.create` must carry it.
    pub fanout: u32,
    /// The limits clients must respect.
    pub limits: LimitsInfo,
}

/// The limits a client can see.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsInfo {
    /// Largest message, bytes.
    pub max_frame_bytes: u32,
    /// Most calls per batch; 0 means batches are off.
    pub max_batch: u32,
    /// Most subscriptions per connection.
    pub max_subscriptions_per_connection: u32,
    /// Sustained requests per second per connection.
    pub requests_per_second: u32,
    /// Requests a connection may save up; also the refusals, counted as `spec/protocol.md`
    /// §6.1 says, after which the next refusal drops the connection.
    pub request_burst: u32,
    /// Sustained requests per second shared by the connections of one address; 0: no such
    /// budget.
    pub requests_per_second_per_ip: u32,
    /// Requests the connections of one address may save up together.
    pub request_burst_per_ip: u32,
    /// Sustained requests per second shared by the connections of one DID; 0: no such budget.
    pub requests_per_second_per_did: u32,
    /// Requests the connections of one DID may save up together.
    pub request_burst_per_did: u32,
    /// Seconds to authenticate.
    pub auth_timeout_secs: u32,
    /// Seconds from a challenge's `issued_at` to its `expires_at`.
    pub challenge_ttl_secs: u32,
    /// Events a subscriber may fall behind before it is cut off with `slow_subscriber`.
    pub subscriber_queue: u32,
    /// Most events per `space.events` page.
    pub max_page: u32,
}

/// The answer to a successful `auth.respond`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Authenticated {
    /// The DID the connection now acts as.
    pub did: Did,
}

/// The acknowledgement of an appended event: it is durable when this arrives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ack {
    /// The space.
    pub space: SpaceId,
    /// The event's id.
    pub event_id: ContentId,
    /// The event's position.
    pub seq: u64,
}

/// The acknowledgement of a posted beam.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BeamPosted {
    /// The ref event's id.
    pub event_id: ContentId,
    /// The ref event's position.
    pub seq: u64,
    /// `northstar://{home}/beam/{authorHash}/{beamId}`.
    pub beam_uri: String,
}

/// The result of a beam deletion.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BeamDeleted {
    /// The tombstone events appended, one per space that referenced the beam.
    pub tombstones: Vec<Ack>,
}

/// A space as `space.get` and `space.list` show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpaceInfo {
    /// The space id.
    pub id: SpaceId,
    /// `northstar://{authority}/{id}`.
    pub uri: String,
    /// Its type.
    #[serde(rename = "type")]
    pub space_type: SpaceType,
    /// Its name.
    pub name: String,
    /// Its owner.
    pub owner: Did,
    /// Its sequencer node.
    pub sequencer: Did,
    /// The seq of its last event.
    pub head_seq: u64,
}

/// One member of a space and its state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberInfo {
    /// The member.
    pub did: Did,
    /// `member`, `invited` or `banned`.
    pub state: String,
    /// For a member: the authority of its home node, which holds its replica of the space.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub home: Option<String>,
}

/// A page of a space's log.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventPage {
    /// Events with `seq > since`, oldest first, exactly as the sequencer signed them.
    pub events: Vec<Box<RawValue>>,
    /// The seq of the space's last event when the page was read.
    pub head_seq: u64,
}
