//! The JSON-RPC API's result types and error codes (`spec/protocol.md` §6).
//!
//! The methods themselves are declared once in `crate::rpc`; these are the plain data types
//! they carry, usable without any RPC library.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::address::{SpaceId, SpaceType};
use crate::did::Did;
use crate::id::ContentId;
use crate::wire::{Beam, Edit};

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
    /// An edit names a beam by another author (`spec/` §4.10).
    NotAuthor,
    /// An edit names a beam that was deleted.
    BeamDeleted,
    /// An edit's version is below the beam's current one, or its content is a version already.
    StaleVersion,
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
    /// A stream method named a space that is not a `stream`.
    NotAStream,
    /// Frames are published at the stream's sequencer node, and this node is not it.
    NotSequencer,
    /// A frame arrived on a connection that has not opened publishing for its stream.
    NotPublishing,
    /// A frame's payload is larger than the node's per-stream limit.
    FrameTooLarge,
    /// The stream's frames per second are over the node's limit.
    FrameRate,
    /// The stream's payload bytes per second are over the node's limit.
    ByteRate,
    /// A frame's number is not above the newest of its stream.
    FrameOrder,
    /// The watcher fell behind for too long and was cut off.
    SlowWatcher,
    /// An entry of an imported log fails verification or does not continue the log held.
    InvalidLog,
    /// An imported log diverges from the one held: one of the two is a fork.
    LogFork,
}

impl ErrorCode {
    /// Every code, in the order of the spec's table.
    pub const ALL: [ErrorCode; 39] = [
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
        ErrorCode::NotAuthor,
        ErrorCode::BeamDeleted,
        ErrorCode::StaleVersion,
        ErrorCode::RateLimited,
        ErrorCode::TooLarge,
        ErrorCode::TooManySubscriptions,
        ErrorCode::SlowSubscriber,
        ErrorCode::Internal,
        ErrorCode::ShuttingDown,
        ErrorCode::PeerUnreachable,
        ErrorCode::NotAStream,
        ErrorCode::NotSequencer,
        ErrorCode::NotPublishing,
        ErrorCode::FrameTooLarge,
        ErrorCode::FrameRate,
        ErrorCode::ByteRate,
        ErrorCode::FrameOrder,
        ErrorCode::SlowWatcher,
        ErrorCode::InvalidLog,
        ErrorCode::LogFork,
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
            ErrorCode::NotAuthor => 1302,
            ErrorCode::BeamDeleted => 1303,
            ErrorCode::StaleVersion => 1304,
            ErrorCode::RateLimited => 1401,
            ErrorCode::TooLarge => 1402,
            ErrorCode::TooManySubscriptions => 1403,
            ErrorCode::SlowSubscriber => 1404,
            ErrorCode::Internal => 1500,
            ErrorCode::ShuttingDown => 1501,
            ErrorCode::PeerUnreachable => 1601,
            ErrorCode::NotAStream => 1701,
            ErrorCode::NotSequencer => 1702,
            ErrorCode::NotPublishing => 1703,
            ErrorCode::FrameTooLarge => 1704,
            ErrorCode::FrameRate => 1705,
            ErrorCode::ByteRate => 1706,
            ErrorCode::FrameOrder => 1707,
            ErrorCode::SlowWatcher => 1708,
            ErrorCode::InvalidLog => 1801,
            ErrorCode::LogFork => 1802,
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
            ErrorCode::NotAuthor => "not_author",
            ErrorCode::BeamDeleted => "beam_deleted",
            ErrorCode::StaleVersion => "stale_version",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::TooManySubscriptions => "too_many_subscriptions",
            ErrorCode::SlowSubscriber => "slow_subscriber",
            ErrorCode::Internal => "internal",
            ErrorCode::ShuttingDown => "shutting_down",
            ErrorCode::PeerUnreachable => "peer_unreachable",
            ErrorCode::NotAStream => "not_a_stream",
            ErrorCode::NotSequencer => "not_sequencer",
            ErrorCode::NotPublishing => "not_publishing",
            ErrorCode::FrameTooLarge => "frame_too_large",
            ErrorCode::FrameRate => "frame_rate",
            ErrorCode::ByteRate => "byte_rate",
            ErrorCode::FrameOrder => "frame_order",
            ErrorCode::SlowWatcher => "slow_watcher",
            ErrorCode::InvalidLog => "invalid_log",
            ErrorCode::LogFork => "log_fork",
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
    /// The protocol version the node speaks ([`crate::PROTOCOL_VERSION`]); a node that does not
    /// say speaks version 0, whose signatures no longer verify.
    #[serde(default)]
    pub protocol: u32,
    /// The origin challenges carry, e.g. `wss://node.example`.
    pub public_url: String,
    /// The `host[:port]` of this node's URIs.
    pub authority: String,
    /// The fan-out this node gives the broadcast trees of spaces created on it; a genesis sent
    /// to `space.create` must carry it.
    pub fanout: u32,
    /// This node's uplink for live streams, kbit/s: a joining client puts it in its join's
    /// `home` (`spec/protocol.md` §10.5), so stream trees put slow nodes at the leaves.
    pub stream_capacity: u32,
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
    /// Most events per `space.events` page, and most entries per `space.import` page.
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

/// The result of a beam edit (`beam.edit`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BeamEdited {
    /// `northstar://{home}/beam/{authorHash}/{versionId}`: the new version's own URI.
    pub beam_uri: String,
    /// The edit events appended, one per space that carries a ref to the beam.
    pub edits: Vec<Ack>,
}

/// One version of a beam in `beam.history`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BeamVersion {
    /// The version's beam, exactly as its author signed it.
    pub beam: Beam,
    /// The edit that made it a version; absent for the original (version 0).
    #[serde(
        default,
        deserialize_with = "crate::canonical::present",
        skip_serializing_if = "Option::is_none"
    )]
    pub edit: Option<Edit>,
}

/// The versions of a beam a node holds (`beam.history`), oldest first by version key
/// (`spec/` §4.10): the last is the current version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BeamHistory {
    /// The original's path, `beam/{authorHash}/{beamId}`.
    pub path: String,
    /// The versions, oldest first; versions an edit dropped are not listed.
    pub versions: Vec<BeamVersion>,
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
    /// Present exactly when the call asked for beams inline (`spec/protocol.md` §6.3.13): the
    /// beams the page's `beam_ref` events name that the node holds and serves, each once and
    /// exactly as its author signed it. A ref whose beam is not here is left for `beam.get`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub beams: Option<Vec<Box<RawValue>>>,
}

/// One `space.event` notification's `result` on a subscription that asked for beams inline
/// (`spec/protocol.md` §6.3.14): the event, and the beam its `beam_ref` names when the node
/// holds and serves it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventItem {
    /// The event, exactly as the sequencer signed it.
    pub event: Box<RawValue>,
    /// The beam, exactly as its author signed it; absent for any other kind of event and when
    /// the node does not inline it (the client then asks `beam.get`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub beam: Option<Box<RawValue>>,
}

/// What `space.import` did with one page of a log (`spec/protocol.md` §11).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpaceImported {
    /// The space.
    pub space: SpaceId,
    /// The events of the page the node did not hold and stored.
    pub events: u32,
    /// The beams of the page the node did not hold and kept.
    pub beams: u32,
    /// The seq of the last event the node holds of the space after the page.
    pub head_seq: u64,
}

/// The first line of a space export file (`spec/protocol.md` §11.1). The lines after it are
/// [`EventItem`]s, one event each, in log order from the genesis.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportHeader {
    /// Always [`ExportHeader::FORMAT`].
    pub format: String,
    /// The format's version: [`ExportHeader::VERSION`].
    pub version: u32,
    /// The space.
    pub space: SpaceId,
    /// The node whose signature every event carries, as the genesis names it.
    pub sequencer: Did,
    /// `northstar://{authority}/{id}` of the space, as the exporting node gave it.
    pub uri: String,
    /// How many events follow: the log from seq 1 to this seq, without a gap.
    pub events: u64,
    /// Whether the exporter asked for the beams the events refer to.
    pub beams: bool,
    /// When the export was made, ms since the Unix epoch.
    pub exported_at: u64,
}

impl ExportHeader {
    /// The format's name.
    pub const FORMAT: &'static str = "northstar-space-export";
    /// The format's version this implementation writes and reads.
    pub const VERSION: u32 = 1;
}

/// The node's limits on each stream's frames (`spec/protocol.md` §10.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamLimits {
    /// Largest payload of one frame, bytes.
    pub max_frame_bytes: u32,
    /// Most frames per second a stream may publish, sustained.
    pub max_frames_per_second: u32,
    /// Most payload bytes per second a stream may publish, sustained.
    pub max_bytes_per_second: u32,
}

/// The answer to `stream.publish`: the connection may now send the stream's frames.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamPublishing {
    /// The stream.
    pub space: SpaceId,
    /// The number the next frame must carry: one more than the last this node took, or 1
    /// when it knows none (then any number is taken).
    pub next: u64,
    /// The limits the frames must keep.
    pub limits: StreamLimits,
}

/// The answer to `stream.watch`: the stream's frames follow as binary messages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamWatching {
    /// The stream.
    pub space: SpaceId,
    /// The number of the first frame sent from the node's recent window, if it sends any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<u64>,
    /// The newest frame number the node holds, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub newest: Option<u64>,
}

/// What `stream.info` tells about a stream on this node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamInfo {
    /// The stream.
    pub space: SpaceId,
    /// Its owner, the only publisher.
    pub owner: Did,
    /// Its sequencer, where frames are published.
    pub sequencer: Did,
    /// Whether this node took a frame within its window's age.
    pub live: bool,
    /// The newest frame number taken here, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub newest: Option<u64>,
    /// The newest key frame number in the window, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub newest_key: Option<u64>,
    /// Frames in the recent window.
    pub window: u32,
    /// Connections watching the stream here (watching clients and child nodes).
    pub watchers: u32,
    /// Frames this node dropped for watchers whose queues were full.
    pub dropped: u64,
    /// This node's parents in the stream's tree (empty on the sequencer).
    pub parents: Vec<Did>,
    /// This node's children in the stream's tree.
    pub children: Vec<Did>,
    /// The publishing limits.
    pub limits: StreamLimits,
}

/// The parameters of the notifications `stream.refused` (a frame the node did not take) and
/// `stream.closed` (a watch the node ended).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamNotice {
    /// The stream; absent when a refused frame could not be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub space: Option<SpaceId>,
    /// The refused frame's number, when it could be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub number: Option<u64>,
    /// The error code (§6.4).
    pub code: i32,
    /// The code's name.
    pub name: String,
    /// What was wrong.
    pub message: String,
}

/// A member node's head of one replica, reported to the space's sequencer (`fed.heads`,
/// `spec/protocol.md` §9.9): the node holds every event up to `seq`, durably.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeadReport {
    /// The space.
    pub space: SpaceId,
    /// The highest seq the node holds, with every event before it.
    pub seq: u64,
}

/// How well a space's events reach its member nodes, as its sequencer sees from their reports
/// (`space.health`, `spec/protocol.md` §9.9).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpaceHealth {
    /// The space.
    pub space: SpaceId,
    /// The sequencer's head: the seq of the newest event.
    pub head: u64,
    /// Member nodes other than the sequencer.
    pub nodes: u32,
    /// Those whose last report holds the head.
    pub at_head: u32,
    /// The most events any reporting member node is behind.
    pub max_lag_events: u64,
    /// The longest any reporting member node has been without an event it should hold: the age
    /// of the oldest event it misses, ms.
    pub max_lag_ms: u64,
    /// Hops from the sequencer to the farthest member node in the broadcast tree.
    pub max_hops: u32,
    /// Each member node, in the tree's order.
    pub members: Vec<NodeHealth>,
}

/// One member node's delivery, within [`SpaceHealth`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeHealth {
    /// The node's DID.
    pub node: Did,
    /// Where it is reached.
    pub authority: String,
    /// Hops from the sequencer in the broadcast tree: 1 for the sequencer's children.
    pub hops: u32,
    /// The head it last reported; absent if it has not reported since the sequencer started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    /// Events it is behind (`head - seq`); absent with `seq`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag_events: Option<u64>,
    /// Age of the oldest event it misses, ms (0 at the head); absent with `seq`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag_ms: Option<u64>,
    /// Ms since its last report; absent with `seq`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reported_ms_ago: Option<u64>,
}

/// Where a deleted beam's tombstone has taken effect, in one space (`fed.receipts`, and a part
/// of [`BeamReceipts`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpaceReceipt {
    /// The space.
    pub space: SpaceId,
    /// The tombstone event's seq in it.
    pub seq: u64,
    /// The nodes holding the space (its sequencer and member nodes) that hold the tombstone
    /// event: their copies of the beam are gone.
    pub applied: Vec<Did>,
    /// Those that have not reported it yet.
    pub pending: Vec<Did>,
    /// Why this space could not be asked (its sequencer unreachable, the tombstone never
    /// placed); `applied` and `pending` are then empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Deletion receipts of a beam (`beam.receipts`, `spec/protocol.md` §9.9).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BeamReceipts {
    /// The beam's path.
    pub path: String,
    /// Distinct nodes that held the beam through one of the spaces that referred to it.
    pub nodes: u32,
    /// Those on which the tombstone has taken effect (in any of those spaces).
    pub applied: u32,
    /// Per space.
    pub spaces: Vec<SpaceReceipt>,
}
