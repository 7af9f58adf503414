//! The wire names of the JSON-RPC methods and notifications (`spec/protocol.md` §6.2).
//!
//! The `rpc` traits declare the same names for `jsonrpsee`; these constants are for code that
//! speaks the wire without a generated client or server (a raw call whose result is checked
//! strictly, the node's own transport, tests). The node's tests check that each one names a
//! method the node serves.

/// `node.info`.
pub const NODE_INFO: &str = "node.info";
/// `auth.challenge`.
pub const AUTH_CHALLENGE: &str = "auth.challenge";
/// `auth.respond`.
pub const AUTH_RESPOND: &str = "auth.respond";
/// `space.create`.
pub const SPACE_CREATE: &str = "space.create";
/// `space.get`.
pub const SPACE_GET: &str = "space.get";
/// `space.list`.
pub const SPACE_LIST: &str = "space.list";
/// `space.join`.
pub const SPACE_JOIN: &str = "space.join";
/// `space.leave`.
pub const SPACE_LEAVE: &str = "space.leave";
/// `space.invite`.
pub const SPACE_INVITE: &str = "space.invite";
/// `space.kick`.
pub const SPACE_KICK: &str = "space.kick";
/// `space.ban`.
pub const SPACE_BAN: &str = "space.ban";
/// `space.members`.
pub const SPACE_MEMBERS: &str = "space.members";
/// `space.post`.
pub const SPACE_POST: &str = "space.post";
/// `space.events`.
pub const SPACE_EVENTS: &str = "space.events";
/// `space.health`.
pub const SPACE_HEALTH: &str = "space.health";
/// `space.subscribe`.
pub const SPACE_SUBSCRIBE: &str = "space.subscribe";
/// `space.unsubscribe`.
pub const SPACE_UNSUBSCRIBE: &str = "space.unsubscribe";
/// `space.event`: the notifications of a subscription.
pub const SPACE_EVENT: &str = "space.event";
/// `space.import`.
pub const SPACE_IMPORT: &str = "space.import";
/// `beam.get`.
pub const BEAM_GET: &str = "beam.get";
/// `beam.list`.
pub const BEAM_LIST: &str = "beam.list";
/// `beam.delete`.
pub const BEAM_DELETE: &str = "beam.delete";
/// `beam.receipts`.
pub const BEAM_RECEIPTS: &str = "beam.receipts";
/// `beam.edit`.
pub const BEAM_EDIT: &str = "beam.edit";
/// `beam.history`.
pub const BEAM_HISTORY: &str = "beam.history";
/// `fed.prove`.
pub const FED_PROVE: &str = "fed.prove";
/// `fed.submit`.
pub const FED_SUBMIT: &str = "fed.submit";
/// `fed.push`.
pub const FED_PUSH: &str = "fed.push";
/// `fed.heads`.
pub const FED_HEADS: &str = "fed.heads";
/// `fed.receipts`.
pub const FED_RECEIPTS: &str = "fed.receipts";
/// `fed.space_removed`.
pub const FED_SPACE_REMOVED: &str = "fed.space_removed";
/// `stream.publish`.
pub const STREAM_PUBLISH: &str = "stream.publish";
/// `stream.watch`.
pub const STREAM_WATCH: &str = "stream.watch";
/// `stream.unwatch`.
pub const STREAM_UNWATCH: &str = "stream.unwatch";
/// `stream.info`.
pub const STREAM_INFO: &str = "stream.info";
/// `blob.ticket`.
pub const BLOB_TICKET: &str = "blob.ticket";
/// `stream.refused`: the notification for a frame the node did not take.
pub const STREAM_REFUSED: &str = "stream.refused";
/// `stream.closed`: the notification for a watch the node ended.
pub const STREAM_CLOSED: &str = "stream.closed";

/// Every method a client or node may call, in the order of the spec's table (§6.2).
pub const ALL: [&str; 35] = [
    NODE_INFO,
    AUTH_CHALLENGE,
    AUTH_RESPOND,
    SPACE_CREATE,
    SPACE_GET,
    SPACE_LIST,
    SPACE_JOIN,
    SPACE_LEAVE,
    SPACE_INVITE,
    SPACE_KICK,
    SPACE_BAN,
    SPACE_MEMBERS,
    SPACE_POST,
    SPACE_EVENTS,
    SPACE_HEALTH,
    SPACE_SUBSCRIBE,
    SPACE_UNSUBSCRIBE,
    SPACE_IMPORT,
    BEAM_GET,
    BEAM_LIST,
    BEAM_DELETE,
    BEAM_RECEIPTS,
    BEAM_EDIT,
    BEAM_HISTORY,
    FED_PROVE,
    FED_SUBMIT,
    FED_PUSH,
    FED_HEADS,
    FED_RECEIPTS,
    FED_SPACE_REMOVED,
    STREAM_PUBLISH,
    STREAM_WATCH,
    STREAM_UNWATCH,
    STREAM_INFO,
    BLOB_TICKET,
];

/// The methods of a node's local admin channel (`spec/protocol.md` §12): a Unix socket only
/// the node's operator reaches, not part of the federation wire.
pub mod admin {
    /// `admin.users`.
    pub const USERS: &str = "admin.users";
    /// `admin.allow`.
    pub const ALLOW: &str = "admin.allow";
    /// `admin.deny`.
    pub const DENY: &str = "admin.deny";
    /// `admin.ban`.
    pub const BAN: &str = "admin.ban";
    /// `admin.unban`.
    pub const UNBAN: &str = "admin.unban";
    /// `admin.remove_beam`.
    pub const REMOVE_BEAM: &str = "admin.remove_beam";
    /// `admin.remove_space`.
    pub const REMOVE_SPACE: &str = "admin.remove_space";
    /// `admin.stats`.
    pub const STATS: &str = "admin.stats";
}
