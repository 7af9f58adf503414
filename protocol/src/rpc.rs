//! The JSON-RPC API, declared once (`spec/protocol.md` §6).
//!
//! Each trait is one method family; `jsonrpsee` generates the node's server trait (feature
//! `server`) and the SDK's typed client (feature `client`) from the same declaration, so the
//! two cannot drift. Wire names are `{family}.{method}`; parameters are positional.
//!
//! Auth needed, per method: "public" methods work on any connection; "user" methods need a
//! connection authenticated with `auth.respond`; "member" reads of a `dm` need the caller to be
//! a member (channels and streams are public reads).

// The client-only build rewrites the traits and no longer names these.
#[cfg_attr(not(feature = "server"), allow(unused_imports))]
use jsonrpsee::core::{RpcResult, SubscriptionResult};
use jsonrpsee::proc_macros::rpc;

use crate::address::SpaceId;
use crate::api::{
    Ack, Authenticated, BeamDeleted, BeamEdited, BeamHistory, BeamPosted, BeamReceipts, EventItem,
    EventPage, HeadReport, MemberInfo, NodeInfo, SpaceHealth, SpaceImported, SpaceInfo,
    SpaceReceipt, StreamInfo,
};
use crate::did::Did;
use crate::wire::{
    AuthChallenge, AuthResponse, Beam, BeamRef, Edit, Event, Membership, Payload, SpaceGenesis,
    Tombstone,
};

/// `node.*`: facts about the node.
#[cfg_attr(
    all(feature = "server", feature = "client"),
    rpc(server, client, namespace = "node", namespace_separator = ".")
)]
#[cfg_attr(
    all(feature = "server", not(feature = "client")),
    rpc(server, namespace = "node", namespace_separator = ".")
)]
#[cfg_attr(
    all(feature = "client", not(feature = "server")),
    rpc(client, namespace = "node", namespace_separator = ".")
)]
pub trait NodeApi {
    /// `node.info` (public): the node's DID, version, public URL and limits.
    #[method(name = "info")]
    async fn info(&self) -> RpcResult<NodeInfo>;
}

/// `auth.*`: the challenge-response handshake (§5).
#[cfg_attr(
    all(feature = "server", feature = "client"),
    rpc(server, client, namespace = "auth", namespace_separator = ".")
)]
#[cfg_attr(
    all(feature = "server", not(feature = "client")),
    rpc(server, namespace = "auth", namespace_separator = ".")
)]
#[cfg_attr(
    all(feature = "client", not(feature = "server")),
    rpc(client, namespace = "auth", namespace_separator = ".")
)]
pub trait AuthApi {
    /// `auth.challenge` (public): a fresh challenge bound to this connection.
    #[method(name = "challenge", with_extensions)]
    async fn challenge(&self) -> RpcResult<AuthChallenge>;

    /// `auth.respond` (public): answer a challenge; the connection then acts as the DID.
    #[method(name = "respond", with_extensions)]
    async fn respond(&self, response: AuthResponse) -> RpcResult<Authenticated>;
}

/// `space.*`: spaces, their members and their logs.
#[cfg_attr(
    all(feature = "server", feature = "client"),
    rpc(server, client, namespace = "space", namespace_separator = ".")
)]
#[cfg_attr(
    all(feature = "server", not(feature = "client")),
    rpc(server, namespace = "space", namespace_separator = ".")
)]
#[cfg_attr(
    all(feature = "client", not(feature = "server")),
    rpc(client, namespace = "space", namespace_separator = ".")
)]
pub trait SpaceApi {
    /// `space.create` (user): found a space sequenced by this node; the genesis is signed by
    /// the caller, names this node as sequencer and this node's authority.
    #[method(name = "create", with_extensions)]
    async fn create(&self, genesis: SpaceGenesis) -> RpcResult<Ack>;

    /// `space.get` (public; member for a dm): one space.
    #[method(name = "get", with_extensions)]
    async fn get(&self, space: SpaceId) -> RpcResult<SpaceInfo>;

    /// `space.list` (user): the spaces the caller owns, belongs to or is invited into.
    #[method(name = "list", with_extensions)]
    async fn list(&self) -> RpcResult<Vec<SpaceInfo>>;

    /// `space.join` (user): a signed join request by the caller, naming this node as home.
    /// `sequencer` is the authority of the space's URI; when it is another node's, this node
    /// joins through that sequencer and becomes a member node holding a verified replica.
    #[method(name = "join", with_extensions)]
    async fn join(&self, request: Membership, sequencer: Option<String>) -> RpcResult<Ack>;

    /// `space.leave` (user): a signed leave request by the caller.
    #[method(name = "leave", with_extensions)]
    async fn leave(&self, request: Membership) -> RpcResult<Ack>;

    /// `space.invite` (user): a signed invite by the caller (the owner, for a dm).
    #[method(name = "invite", with_extensions)]
    async fn invite(&self, request: Membership) -> RpcResult<Ack>;

    /// `space.kick` (user, owner): a signed kick by the caller; the subject may join again.
    #[method(name = "kick", with_extensions)]
    async fn kick(&self, request: Membership) -> RpcResult<Ack>;

    /// `space.ban` (user, owner): a signed ban by the caller; the subject may not join again.
    #[method(name = "ban", with_extensions)]
    async fn ban(&self, request: Membership) -> RpcResult<Ack>;

    /// `space.members` (public; member for a dm): who belongs, is invited or is banned.
    #[method(name = "members", with_extensions)]
    async fn members(&self, space: SpaceId) -> RpcResult<Vec<MemberInfo>>;

    /// `space.post` (user, member; owner for a stream): store the caller's beam on this node
    /// and append its ref to the space.
    #[method(name = "post", with_extensions)]
    async fn post(&self, beam: Beam, beam_ref: BeamRef) -> RpcResult<BeamPosted>;

    /// `space.events` (public; member for a dm): events with `seq > since`, oldest first, at
    /// most `limit` (capped by the node's `max_page`). With `beams` true the page also carries
    /// the beams its refs name that the node holds and the caller may read ([`EventPage::beams`]).
    #[method(name = "events", with_extensions)]
    async fn events(
        &self,
        space: SpaceId,
        since: u64,
        limit: u32,
        beams: Option<bool>,
    ) -> RpcResult<EventPage>;

    /// `space.health` (user, owner; at the sequencer): how far each member node is behind,
    /// from the heads they report (`spec/protocol.md` §9.9).
    #[method(name = "health", with_extensions)]
    async fn health(&self, space: SpaceId) -> RpcResult<SpaceHealth>;

    /// `space.import` (user; for a dm, a member by the log itself): one page of a space's log,
    /// read from an export file (`spec/protocol.md` §11.2). The node verifies every event, the
    /// chain from what it holds and every beam, and stores the page as a replica only if all
    /// of it passes; a refusal names the first bad entry.
    #[method(name = "import", with_extensions)]
    async fn import(&self, space: SpaceId, items: Vec<EventItem>) -> RpcResult<SpaceImported>;
}

/// `space.subscribe` and `space.unsubscribe`: live event streams.
///
/// A family of its own because the node serves it in its WebSocket transport rather than
/// through `jsonrpsee`'s subscription machinery: there, every subscriber of a space shares the
/// event's JSON, serialised once, and a connection's notifications are written in batches. The
/// server trait exists for test doubles; the wire names and shapes are the same either way.
#[cfg_attr(
    all(feature = "server", feature = "client"),
    rpc(server, client, namespace = "space", namespace_separator = ".")
)]
#[cfg_attr(
    all(feature = "server", not(feature = "client")),
    rpc(server, namespace = "space", namespace_separator = ".")
)]
#[cfg_attr(
    all(feature = "client", not(feature = "server")),
    rpc(client, namespace = "space", namespace_separator = ".")
)]
pub trait SpaceEventsApi {
    /// `space.subscribe` (public; member for a dm): every event with `seq > since`, the
    /// backlog first and then live, with no gap and no duplicate; notifications are
    /// `space.event`. A subscriber that falls behind is closed with `slow_subscriber` and
    /// may resume from the last seq it saw.
    ///
    /// This declares the plain form. A third parameter, `beams` (optional boolean), asks for
    /// the beams inline: each notification's `result` is then an
    /// [`EventItem`] rather than an [`Event`]. One declaration cannot
    /// give one method two item types, so a client opens that form by its wire names
    /// ([`crate::method::SPACE_SUBSCRIBE`]), as the SDK does.
    #[subscription(name = "subscribe" => "event", unsubscribe = "unsubscribe", item = Event, with_extensions)]
    async fn subscribe_events(&self, space: SpaceId, since: u64) -> SubscriptionResult;
}

/// `beam.*`: beams stored on this node.
#[cfg_attr(
    all(feature = "server", feature = "client"),
    rpc(server, client, namespace = "beam", namespace_separator = ".")
)]
#[cfg_attr(
    all(feature = "server", not(feature = "client")),
    rpc(server, namespace = "beam", namespace_separator = ".")
)]
#[cfg_attr(
    all(feature = "client", not(feature = "server")),
    rpc(client, namespace = "beam", namespace_separator = ".")
)]
pub trait BeamApi {
    /// `beam.get` (reader: anyone for a beam posted into a channel or stream; its author, the
    /// members of its dm spaces and their home nodes for one posted only into dm spaces): a
    /// beam by its path `beam/{authorHash}/{beamId}`. `home` is the authority of the beam's URI;
    /// a beam stored elsewhere is fetched from that node, verified, and cached while a space
    /// this node holds carries a ref to it by its author.
    #[method(name = "get", with_extensions)]
    async fn get(&self, path: String, home: Option<String>) -> RpcResult<Beam>;

    /// `beam.list` (public; lists only the beams the caller may read): beams by `author`,
    /// newest first, created before `before` (ms; 0 for now), at most `limit`.
    #[method(name = "list", with_extensions)]
    async fn list(&self, author: Did, before: u64, limit: u32) -> RpcResult<Vec<Beam>>;

    /// `beam.delete` (user, author): delete the caller's beam; its content is gone and a
    /// tombstone is appended to every space that referenced it.
    #[method(name = "delete", with_extensions)]
    async fn delete(&self, tombstone: Tombstone) -> RpcResult<BeamDeleted>;

    /// `beam.receipts` (user, author; at the beam's home node): on how many of the nodes that
    /// held a deleted beam its tombstone has taken effect (`spec/protocol.md` §9.9).
    #[method(name = "receipts", with_extensions)]
    async fn receipts(&self, path: String) -> RpcResult<BeamReceipts>;

    /// `beam.edit` (user, author; at the beam's home node): publish `beam` as a new version of
    /// the caller's beam that `edit` supersedes; the edit is appended to every space that
    /// carries a ref to that beam (`spec/protocol.md` §6.3.25).
    #[method(name = "edit", with_extensions)]
    async fn edit(&self, beam: Beam, edit: Edit) -> RpcResult<BeamEdited>;

    /// `beam.history` (reader, as for `beam.get` of the original): the versions of the beam at
    /// `path`, oldest first; the last is the current one (`spec/protocol.md` §6.3.26).
    #[method(name = "history", with_extensions)]
    async fn history(&self, path: String, home: Option<String>) -> RpcResult<BeamHistory>;
}

/// `fed.*`: what nodes ask each other (`spec/protocol.md` §9). Every method needs a connection
/// authenticated as a node: the DID a node proves is its node DID.
#[cfg_attr(
    all(feature = "server", feature = "client"),
    rpc(server, client, namespace = "fed", namespace_separator = ".")
)]
#[cfg_attr(
    all(feature = "server", not(feature = "client")),
    rpc(server, namespace = "fed", namespace_separator = ".")
)]
#[cfg_attr(
    all(feature = "client", not(feature = "server")),
    rpc(client, namespace = "fed", namespace_separator = ".")
)]
pub trait FedApi {
    /// `fed.prove` (user): sign a response to the caller's own challenge, so the caller knows
    /// which node it reached. The challenge must be issued by the caller's DID.
    #[method(name = "prove", with_extensions)]
    async fn prove(&self, challenge: AuthChallenge) -> RpcResult<AuthResponse>;

    /// `fed.submit` (user, a home node): ask the sequencer to append a payload signed by one of
    /// the caller's users: a join naming the caller as home, or a leave, invite, kick, ban,
    /// beam ref or tombstone by a member whose home is the caller.
    #[method(name = "submit", with_extensions)]
    async fn submit(&self, space: SpaceId, payload: Payload) -> RpcResult<Ack>;

    /// `fed.push` (user): events of spaces this node replicates, from a parent in the space's
    /// broadcast tree. Returns how many were new.
    #[method(name = "push", with_extensions)]
    async fn push(&self, events: Vec<Event>) -> RpcResult<u32>;

    /// `fed.heads` (user, a member node): report the heads of replicas of spaces this node
    /// sequences; the answer is how many were taken (`spec/protocol.md` §9.9).
    #[method(name = "heads", with_extensions)]
    async fn heads(&self, heads: Vec<HeadReport>) -> RpcResult<u32>;

    /// `fed.receipts` (user, a member node of the space): which nodes holding `space` hold its
    /// event `seq` (a tombstone), as their reports say.
    #[method(name = "receipts", with_extensions)]
    async fn receipts(&self, space: SpaceId, seq: u64) -> RpcResult<SpaceReceipt>;

    /// `fed.space_removed` (user, the space's sequencer): the caller's operator removed
    /// `space`, which the caller sequences; the callee drops its replica for good. Returns
    /// whether it held one.
    #[method(name = "space_removed", with_extensions)]
    async fn space_removed(&self, space: SpaceId) -> RpcResult<bool>;
}

/// `stream.*` served by `jsonrpsee`: facts about a live stream (`spec/protocol.md` §10).
///
/// `stream.publish`, `stream.watch` and `stream.unwatch` change what the connection itself
/// carries (binary frames in either direction), so the node's WebSocket transport serves them
/// and they are named only in [`crate::method`].
#[cfg_attr(
    all(feature = "server", feature = "client"),
    rpc(server, client, namespace = "stream", namespace_separator = ".")
)]
#[cfg_attr(
    all(feature = "server", not(feature = "client")),
    rpc(server, namespace = "stream", namespace_separator = ".")
)]
#[cfg_attr(
    all(feature = "client", not(feature = "server")),
    rpc(client, namespace = "stream", namespace_separator = ".")
)]
pub trait StreamApi {
    /// `stream.info` (public): the stream as this node sees it: its newest frames, watchers,
    /// tree neighbours and limits.
    #[method(name = "info")]
    async fn info(&self, space: SpaceId) -> RpcResult<StreamInfo>;
}

/// `blob.*`: tickets for the blob transport, which is plain HTTP (`spec/protocol.md` §13.3).
#[cfg_attr(
    all(feature = "server", feature = "client"),
    rpc(server, client, namespace = "blob", namespace_separator = ".")
)]
#[cfg_attr(
    all(feature = "server", not(feature = "client")),
    rpc(server, namespace = "blob", namespace_separator = ".")
)]
#[cfg_attr(
    all(feature = "client", not(feature = "server")),
    rpc(client, namespace = "blob", namespace_separator = ".")
)]
pub trait BlobApi {
    /// `blob.ticket` (user; a node's link too): a bearer ticket naming the caller's DID, for
    /// uploads and reads over `/blob` until it expires (§13.3.1).
    #[method(name = "ticket", with_extensions)]
    async fn ticket(&self) -> RpcResult<crate::blob::BlobTicket>;
}
