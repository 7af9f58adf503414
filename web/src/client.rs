//! `Client`: a connection to the user's home node, as the Rust SDK's `Client` is, for
//! JavaScript.
//!
//! `Client.connect` opens the WebSocket, reads `node.info` and answers the node's challenge
//! (§5.2: the challenge must be the node's, for the origin dialled, not expired) before any
//! call; every method signs what the protocol has the user sign, sends it and checks what comes
//! back. When the connection drops, the client dials again with a growing delay, authenticates
//! again, and its subscriptions go on from their cursors; calls made while it is away fail with
//! a `connection` error. `onStatus` tells the app (`"connected"`, `"offline"`, `"closed"`).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::rc::Rc;

use futures_channel::oneshot;
use northstar_protocol::address::{BeamPath, BeamUri, SpaceId, SpaceType, SpaceUri, origin_of};
use northstar_protocol::api::{
    Ack, Authenticated, BeamDeleted, BeamEdited, BeamHistory, BeamPosted, EventPage, NodeInfo,
};
use northstar_protocol::blob::Attachment;
use northstar_protocol::method::{
    AUTH_CHALLENGE, AUTH_RESPOND, BEAM_DELETE, BEAM_EDIT, BEAM_GET, BEAM_HISTORY, NODE_INFO,
    SPACE_CREATE, SPACE_EVENTS, SPACE_GET, SPACE_JOIN, SPACE_LEAVE, SPACE_LIST, SPACE_MEMBERS,
    SPACE_POST,
};
use northstar_protocol::verify::{self, EventWithBeam, LogCursor, VerifyError};
use northstar_protocol::wire::{
    AuthChallenge, AuthResponse, Beam, Edit, Home, Membership, MembershipAction, Payload,
    RuleError, SpaceGenesis, Tombstone,
};
use northstar_protocol::{Did, Keypair, PROTOCOL_VERSION, canonical};
use serde::Serialize;
use serde_json::value::RawValue;
use wasm_bindgen::JsValue;
use wasm_bindgen::prelude::wasm_bindgen;

use crate::Error;
use crate::identity::Identity;
use crate::rpc::Connection;
use crate::subscription::{self, Subscription};

/// How many spaces' sequencers a client remembers (each is one `space.events` call to learn).
const SEQUENCER_CACHE: usize = 256;
/// The first wait before dialling again after the connection dropped, ms; it doubles up to
/// [`RECONNECT_MAX_MS`].
pub(crate) const RECONNECT_FIRST_MS: u32 = 500;
/// The longest wait between two attempts to dial again, ms.
pub(crate) const RECONNECT_MAX_MS: u32 = 30_000;

/// A connection to a node, as one identity or anonymous.
#[wasm_bindgen]
pub struct Client {
    pub(crate) inner: Rc<Inner>,
}

pub(crate) struct Inner {
    url: String,
    origin: String,
    key: Option<Keypair>,
    connection: RefCell<Option<Rc<Connection>>>,
    info: RefCell<NodeInfo>,
    sequencers: RefCell<HashMap<SpaceId, Did>>,
    on_status: RefCell<Option<js_sys::Function>>,
    /// The app closed the client: no more dialling.
    closed: Cell<bool>,
    /// Tasks waiting for the connection to be back (subscriptions after a drop).
    waiting: RefCell<Vec<oneshot::Sender<()>>>,
}

/// Parameters as a JSON array's text.
pub(crate) struct Params(String);

impl Params {
    pub(crate) fn new() -> Self {
        Self(String::from("["))
    }

    pub(crate) fn with(mut self, value: &impl Serialize) -> Result<Self, Error> {
        if self.0.len() > 1 {
            self.0.push(',');
        }
        let text = serde_json::to_string(value).map_err(|e| Error::BadArgument {
            what: "parameter",
            reason: e.to_string(),
        })?;
        self.0.push_str(&text);
        Ok(self)
    }

    pub(crate) fn text(mut self) -> String {
        self.0.push(']');
        self.0
    }
}

/// A space named by its id (held by the node called) or by its URI (whose authority is the
/// sequencer's).
pub(crate) fn space_arg(text: &str) -> Result<(SpaceId, Option<String>), Error> {
    let bad = |e: northstar_protocol::address::AddressError| Error::BadArgument {
        what: "space",
        reason: e.to_string(),
    };
    if text.starts_with(northstar_protocol::address::URI_SCHEME) {
        let uri = SpaceUri::parse(text).map_err(bad)?;
        return Ok((uri.space, Some(uri.authority)));
    }
    Ok((SpaceId::parse(text).map_err(bad)?, None))
}

/// A beam named by its URI (`northstar://{home}/beam/…`) or its path (`beam/…`).
pub(crate) fn beam_arg(text: &str) -> Result<(BeamPath, Option<String>), Error> {
    let bad = |e: northstar_protocol::address::AddressError| Error::BadArgument {
        what: "beam",
        reason: e.to_string(),
    };
    if text.starts_with(northstar_protocol::address::URI_SCHEME) {
        let uri = BeamUri::parse(text).map_err(bad)?;
        return Ok((uri.path, Some(uri.authority)));
    }
    Ok((BeamPath::parse(text).map_err(bad)?, None))
}

/// The outcome of the rule checks a node makes on what a client signs (§4), made before
/// sending it, so the app learns of a bad argument without a round trip.
fn rules(checked: Result<(), RuleError>) -> Result<(), Error> {
    checked.map_err(|e| Error::BadArgument {
        what: "object",
        reason: e.to_string(),
    })
}

/// Now, ms since the Unix epoch.
pub(crate) fn now() -> u64 {
    // `Date.now()` is a whole number of ms, positive since 1970.
    js_sys::Date::now().max(0.0) as u64
}

/// `value` as a JavaScript value, through its JSON text.
pub(crate) fn to_js(value: &impl Serialize) -> Result<JsValue, Error> {
    let text = serde_json::to_string(value).map_err(|e| Error::BadArgument {
        what: "result",
        reason: e.to_string(),
    })?;
    raw_to_js(&text)
}

/// JSON text as a JavaScript value.
pub(crate) fn raw_to_js(text: &str) -> Result<JsValue, Error> {
    js_sys::JSON::parse(text).map_err(|e| Error::BadArgument {
        what: "result",
        reason: crate::rpc::js_text(&e),
    })
}

/// Run `future` as a JavaScript `Promise`.
pub(crate) fn promise(
    future: impl Future<Output = Result<JsValue, Error>> + 'static,
) -> js_sys::Promise {
    wasm_bindgen_futures::future_to_promise(async move { future.await.map_err(JsValue::from) })
}

#[wasm_bindgen(typescript_custom_section)]
const TYPES: &str = r#"
/** `node.info` (§6.3.2). */
export interface NodeInfo { did: string; version: string; protocol: number; public_url: string; authority: string; fanout: number; stream_capacity: number; limits: Record<string, number>; }
/** A space (§6.3.6). */
export interface SpaceInfo { id: string; uri: string; type: "channel" | "dm" | "stream"; name: string; owner: string; sequencer: string; head_seq: number; }
/** The acknowledgement of an appended event (§6.3.5). */
export interface Ack { space: string; event_id: string; seq: number; }
/** `space.post`'s result (§6.3.12). */
export interface BeamPosted { event_id: string; seq: number; beam_uri: string; }
/** `beam.delete`'s result (§6.3.18). */
export interface BeamDeleted { tombstones: Ack[]; }
/** `beam.edit`'s result (§6.3.25): the new version's URI and the edit events appended. */
export interface BeamEdited { beam_uri: string; edits: Ack[]; }
/** A signed edit (§4.10): `beam` is version `version` of the original `supersedes`. */
export interface Edit { beam: string; supersedes: string; author: string; version: number; edited_at: number; drop_history: boolean; sig: string; }
/** One version of a beam: the original has no `edit`. */
export interface BeamVersion { beam: Beam; edit?: Edit; }
/** `beam.history`'s result (§6.3.26), checked: oldest first, the last is current. */
export interface BeamHistory { path: string; versions: BeamVersion[]; }
/** `Client.editBeam`'s options. */
export interface EditOptions {
  /** Delete every earlier version, like a deleted beam (§4.10). */
  dropHistory?: boolean;
  /** The version number; absent: one more than the current version's. Two edits with one
   * number from two devices resolve alike everywhere: the greater edit id wins. */
  version?: number;
}
/** A member of a space (§6.3.11). */
export interface MemberInfo { did: string; state: string; home?: string; }
/** A file a beam carries (§13.5); its bytes are fetched over `/blob` (§13.3). */
export interface Attachment { blob: string; size: number; media_type: string; name: string; }
/** A beam, as its author signed it (§4.5); `attachments` only when it carries files (§13.5). */
export interface Beam { author: string; title: string; body: string; created_at: number; attachments?: Attachment[]; ref?: string; sig: string; }
/** An event as the SDK hands it out: verified under the space's sequencer, linked to the one
 * before it, and, for a `beam_ref`, with its beam checked against the ref. */
export interface VerifiedEvent {
  space: string; seq: number; id: string; timestamp: number;
  kind: "create" | "membership" | "beam_ref" | "tombstone" | "edit";
  /** Who signed the payload: the owner, the member, the author. */
  author: string;
  /** The event exactly as the sequencer signed it (§4.8). */
  event: any;
  /** For a `beam_ref`: the beam, unless it was deleted or its home node is unreachable. */
  beam?: Beam;
  /** For a `beam_ref`: the beam's URI, `northstar://{home}/beam/{authorHash}/{beamId}`. */
  beamUri?: string;
}
/** `Client.subscribe`'s options. */
export interface SubscribeOptions {
  /** The last seq the app has (0 or absent: from the start). */
  since?: number;
  /** The content id of event `since`, as `Subscription.headId` gave it: the chain is then
   * checked across the resume too. */
  headId?: string;
  /** Each verified event, in order, once. */
  onEvent: (event: VerifiedEvent) => void;
  /** The error that ended the subscription: `kind` `"verification"` when the node sent
   * something that fails the checks (nothing of it is handed out), else `"rpc"`. */
  onError?: (error: Error & { kind: string }) => void;
}
"#;

#[wasm_bindgen]
impl Client {
    /// Connect to the node at `url` (`ws://…` or `wss://…`) as `identity`: `node.info`, then
    /// the node's challenge, checked and answered. The identity's secret stays here.
    #[wasm_bindgen(unchecked_return_type = "Promise<Client>")]
    pub fn connect(url: String, identity: &Identity) -> js_sys::Promise {
        let key = identity.keypair().clone();
        promise(async move { Client::dial(url, Some(key)).await.map(JsValue::from) })
    }

    /// Connect to the node at `url` without an identity: public reads only.
    #[wasm_bindgen(js_name = connectAnonymous, unchecked_return_type = "Promise<Client>")]
    pub fn connect_anonymous(url: String) -> js_sys::Promise {
        promise(async move { Client::dial(url, None).await.map(JsValue::from) })
    }

    /// This client's DID, if it has an identity.
    #[wasm_bindgen(getter)]
    pub fn did(&self) -> Option<String> {
        self.inner.key.as_ref().map(|k| k.did().to_string())
    }

    /// The URL dialled.
    #[wasm_bindgen(getter)]
    pub fn url(&self) -> String {
        self.inner.url.clone()
    }

    /// The node's `node.info`.
    #[wasm_bindgen(getter, unchecked_return_type = "NodeInfo")]
    pub fn node(&self) -> Result<JsValue, Error> {
        to_js(&*self.inner.info.borrow())
    }

    /// Whether the connection is up now.
    #[wasm_bindgen(getter)]
    pub fn connected(&self) -> bool {
        self.inner.current().is_some()
    }

    /// Call `listener` with `"connected"`, `"offline"` or `"closed"` when the connection's
    /// state changes.
    #[wasm_bindgen(js_name = onStatus)]
    pub fn on_status(&self, listener: js_sys::Function) {
        *self.inner.on_status.borrow_mut() = Some(listener);
    }

    /// Close the connection for good: subscriptions end, calls fail.
    pub fn close(&self) {
        self.inner.closed.set(true);
        let connection = self.inner.connection.borrow_mut().take();
        if let Some(connection) = connection {
            connection.close();
        }
        self.inner.waiting.borrow_mut().clear();
        self.inner.status("closed");
    }

    /// The space URI of `space` on this node (its sequencer when the space was created here).
    #[wasm_bindgen(js_name = spaceUri)]
    pub fn space_uri(&self, space: &str) -> Result<String, Error> {
        let (space, _) = space_arg(space)?;
        Ok(SpaceUri {
            authority: self.inner.info.borrow().authority.clone(),
            space,
        }
        .to_string())
    }

    /// `space.create`: found a space owned by this identity and sequenced by this node. `type`
    /// is `"channel"`, `"dm"` or `"stream"`; `uniqueId` the last part of its id (letters,
    /// digits, `-`, `_`, `.`); `name` what people see.
    #[wasm_bindgen(js_name = createSpace, unchecked_return_type = "Promise<Ack>")]
    pub fn create_space(
        &self,
        #[wasm_bindgen(js_name = type)] space_type: &str,
        #[wasm_bindgen(js_name = uniqueId)] unique_id: &str,
        name: &str,
    ) -> js_sys::Promise {
        let inner = self.inner.clone();
        let (space_type, unique_id, name) =
            (space_type.to_owned(), unique_id.to_owned(), name.to_owned());
        promise(async move {
            let key = inner.key(SPACE_CREATE)?;
            let space_type: SpaceType = serde_json::from_value(serde_json::Value::String(
                space_type.clone(),
            ))
            .map_err(|_| Error::BadArgument {
                what: "type",
                reason: format!("{space_type:?} is not channel, dm or stream"),
            })?;
            let space = SpaceId::new(space_type, key.did(), &unique_id).map_err(|e| {
                Error::BadArgument {
                    what: "uniqueId",
                    reason: e.to_string(),
                }
            })?;
            let genesis = {
                let info = inner.info.borrow();
                SpaceGenesis::create(
                    key,
                    space,
                    &name,
                    info.did.clone(),
                    &info.authority,
                    info.fanout,
                    now(),
                )?
            };
            genesis.check_rules().map_err(|e| Error::BadArgument {
                what: "space",
                reason: e.to_string(),
            })?;
            let ack: Ack = inner
                .connection()?
                .call(SPACE_CREATE, &Params::new().with(&genesis)?.text())
                .await?;
            to_js(&ack)
        })
    }

    /// `space.get`: one space, by id or URI.
    #[wasm_bindgen(js_name = getSpace, unchecked_return_type = "Promise<SpaceInfo>")]
    pub fn get_space(&self, space: &str) -> js_sys::Promise {
        self.read_space(SPACE_GET, space)
    }

    /// `space.list`: the spaces this identity owns, belongs to or is invited into, on this
    /// node.
    #[wasm_bindgen(js_name = listSpaces, unchecked_return_type = "Promise<SpaceInfo[]>")]
    pub fn list_spaces(&self) -> js_sys::Promise {
        let inner = self.inner.clone();
        promise(async move {
            inner.key(SPACE_LIST)?;
            let raw = inner.connection()?.call_raw(SPACE_LIST, "[]").await?;
            raw_to_js(raw.get())
        })
    }

    /// `space.members`: who belongs to a space, is invited or is banned.
    #[wasm_bindgen(unchecked_return_type = "Promise<MemberInfo[]>")]
    pub fn members(&self, space: &str) -> js_sys::Promise {
        self.read_space(SPACE_MEMBERS, space)
    }

    /// `space.join`: join a space through this node, by its id (a space this node holds) or
    /// its URI (`northstar://{sequencer}/…`: this node then joins through that sequencer and
    /// keeps a replica).
    #[wasm_bindgen(unchecked_return_type = "Promise<Ack>")]
    pub fn join(&self, space: &str) -> js_sys::Promise {
        let inner = self.inner.clone();
        let space = space_arg(space);
        promise(async move {
            let (space, sequencer) = space?;
            let key = inner.key(SPACE_JOIN)?;
            let request = {
                let info = inner.info.borrow();
                let mut home = Home::new(info.did.clone(), info.authority.clone());
                // A stream's tree orders its member nodes by the uplink their joins declare.
                if space.space_type() == SpaceType::Stream {
                    home.capacity = Some(info.stream_capacity);
                }
                Membership::join(key, space, home, now())?
            };
            rules(request.check_rules())?;
            let params = Params::new().with(&request)?.with(&sequencer)?.text();
            let ack: Ack = inner.connection()?.call(SPACE_JOIN, &params).await?;
            to_js(&ack)
        })
    }

    /// `space.leave`: leave a space.
    #[wasm_bindgen(unchecked_return_type = "Promise<Ack>")]
    pub fn leave(&self, space: &str) -> js_sys::Promise {
        let inner = self.inner.clone();
        let space = space_arg(space);
        promise(async move {
            let (space, _) = space?;
            let key = inner.key(SPACE_LEAVE)?;
            let request = Membership::create(
                key,
                space,
                MembershipAction::Leave,
                key.did().clone(),
                now(),
            )?;
            rules(request.check_rules())?;
            let ack: Ack = inner
                .connection()?
                .call(SPACE_LEAVE, &Params::new().with(&request)?.text())
                .await?;
            to_js(&ack)
        })
    }

    /// `space.post`: sign a beam (`title`, `body`) and the ref placing it in `space`, store the
    /// beam on this node (the author's home) and append the ref to the space.
    #[wasm_bindgen(unchecked_return_type = "Promise<BeamPosted>")]
    pub fn post(&self, space: &str, title: &str, body: &str) -> js_sys::Promise {
        let inner = self.inner.clone();
        let space = space_arg(space);
        let (title, body) = (title.to_owned(), body.to_owned());
        promise(async move {
            let (space, _) = space?;
            to_js(&inner.post(space, &title, &body, Vec::new()).await?)
        })
    }

    /// `space.events`: at most `limit` events with `seq > since`, oldest first, each verified
    /// under the space's sequencer and linked to the one before, with its beam when it is a
    /// `beam_ref` (checked against the ref).
    #[wasm_bindgen(unchecked_return_type = "Promise<VerifiedEvent[]>")]
    pub fn events(&self, space: &str, since: f64, limit: u32) -> js_sys::Promise {
        let inner = self.inner.clone();
        let space = space_arg(space);
        promise(async move {
            let (space, _) = space?;
            let since = crate::whole(since, "since")?;
            let sequencer = inner.sequencer(&space).await?;
            let mut cursor = LogCursor::new(space.clone(), sequencer, since);
            let items = inner.page(&mut cursor, limit).await?;
            let array = js_sys::Array::new();
            for item in items {
                let item = inner.complete(item).await?;
                array.push(&subscription::event_to_js(&item)?);
            }
            Ok(array.into())
        })
    }

    /// `space.subscribe`: every event after `options.since`, verified, in order and once: the
    /// backlog first, then live. The subscription goes on by itself after the connection
    /// drops or the node cuts it off as slow; it ends (with `onError`) when the node sends
    /// something that fails verification, or refuses it (e.g. `not_member`).
    #[wasm_bindgen(unchecked_return_type = "Promise<Subscription>")]
    pub fn subscribe(
        &self,
        space: &str,
        #[wasm_bindgen(unchecked_param_type = "SubscribeOptions")] options: JsValue,
    ) -> js_sys::Promise {
        let inner = self.inner.clone();
        let space = space_arg(space);
        promise(async move {
            let (space, _) = space?;
            let options = subscription::Options::read(&options)?;
            let sequencer = inner.sequencer(&space).await?;
            let cursor = LogCursor::after(space, sequencer, options.since, options.head_id);
            let subscription = Subscription::start(inner, cursor, options).await?;
            Ok(subscription.into())
        })
    }

    /// `stream.watch`: a live stream's frames, each checked under the stream's owner, on a
    /// connection of the watch's own; resumed after a drop or a `slow_watcher` cut-off.
    #[wasm_bindgen(unchecked_return_type = "Promise<Watch>")]
    pub fn watch(
        &self,
        space: &str,
        #[wasm_bindgen(unchecked_param_type = "WatchOptions")] options: JsValue,
    ) -> js_sys::Promise {
        let inner = self.inner.clone();
        let space = space_arg(space);
        promise(async move {
            let (space, _) = space?;
            Ok(crate::watch::Watch::start(inner, space, options)
                .await?
                .into())
        })
    }

    /// `beam.get`: a beam, by URI (`northstar://{home}/beam/…`, fetched from its home node by
    /// this one if need be) or path (`beam/…`), checked against it (its author's signature,
    /// its content id, its author).
    #[wasm_bindgen(js_name = getBeam, unchecked_return_type = "Promise<Beam>")]
    pub fn get_beam(&self, beam: &str) -> js_sys::Promise {
        let inner = self.inner.clone();
        let beam = beam_arg(beam);
        promise(async move {
            let (path, home) = beam?;
            let beam = inner.beam(&path, home).await?;
            to_js(&beam)
        })
    }

    /// `beam.history`: the versions of a beam (by URI or path), oldest first, checked: each
    /// edit signed by the beam's author and superseding it, each version the beam its edit
    /// names, in rising order. The last is the current one; versions an edit dropped are not
    /// listed.
    #[wasm_bindgen(js_name = beamHistory, unchecked_return_type = "Promise<BeamHistory>")]
    pub fn beam_history(&self, beam: &str) -> js_sys::Promise {
        let inner = self.inner.clone();
        let beam = beam_arg(beam);
        promise(async move {
            let (path, home) = beam?;
            to_js(&inner.history(&path, home).await?)
        })
    }

    /// The current version of a beam (by URI or path): the last of `beamHistory`, the beam
    /// itself if it was never edited. What a reader shows by default.
    #[wasm_bindgen(js_name = currentBeam, unchecked_return_type = "Promise<Beam>")]
    pub fn current_beam(&self, beam: &str) -> js_sys::Promise {
        let inner = self.inner.clone();
        let beam = beam_arg(beam);
        promise(async move {
            let (path, home) = beam?;
            let history = inner.history(&path, home).await?;
            let current = history.versions.into_iter().last().ok_or_else(|| {
                Error::from(VerifyError::BadHistory {
                    path: path.to_string(),
                    reason: "it lists no version".into(),
                })
            })?;
            to_js(&current.beam)
        })
    }

    /// `beam.edit`: a new version of one of this identity's beams (by URI or path), signed
    /// here; the node appends an edit event to every space that refers to the beam.
    #[wasm_bindgen(js_name = editBeam, unchecked_return_type = "Promise<BeamEdited>")]
    pub fn edit_beam(
        &self,
        beam: &str,
        title: String,
        body: String,
        #[wasm_bindgen(unchecked_param_type = "EditOptions | undefined")] options: JsValue,
    ) -> js_sys::Promise {
        let inner = self.inner.clone();
        let beam = beam_arg(beam);
        promise(async move {
            let (path, home) = beam?;
            let options = crate::options::AppOptions(&options);
            let drop_history = options.boolean("dropHistory")?.unwrap_or(false);
            let chosen = options.whole("version")?;
            let key = inner.key(BEAM_EDIT)?.clone();
            if path.author_hash != northstar_protocol::address::author_hash(key.did()) {
                return Err(Error::BadArgument {
                    what: "beam",
                    reason: format!("{path} is not a beam of {}", key.did()),
                });
            }
            let version = match chosen {
                Some(version) => version,
                None => {
                    let history = inner.history(&path, home).await?;
                    let current = history
                        .versions
                        .last()
                        .and_then(|v| v.edit.as_ref())
                        .map_or(0, |e| e.version);
                    current + 1
                }
            };
            let (new, edit) =
                Edit::create(&key, path.beam, version, &title, &body, now(), drop_history)?;
            rules(new.check_rules())?;
            rules(edit.check_rules())?;
            let edited: BeamEdited = inner
                .connection()?
                .call(BEAM_EDIT, &Params::new().with(&new)?.with(&edit)?.text())
                .await?;
            to_js(&edited)
        })
    }

    /// `beam.delete`: delete one of this identity's beams (by URI or path) with a signed
    /// tombstone, which the node appends to every space that referred to it.
    #[wasm_bindgen(js_name = deleteBeam, unchecked_return_type = "Promise<BeamDeleted>")]
    pub fn delete_beam(&self, beam: &str) -> js_sys::Promise {
        let inner = self.inner.clone();
        let beam = beam_arg(beam);
        promise(async move {
            let (path, _) = beam?;
            let key = inner.key(BEAM_DELETE)?;
            if path.author_hash != northstar_protocol::address::author_hash(key.did()) {
                return Err(Error::BadArgument {
                    what: "beam",
                    reason: format!("{path} is not a beam of {}", key.did()),
                });
            }
            let tombstone = Tombstone::create(key, path.beam, now())?;
            let deleted: BeamDeleted = inner
                .connection()?
                .call(BEAM_DELETE, &Params::new().with(&tombstone)?.text())
                .await?;
            to_js(&deleted)
        })
    }
}

impl Client {
    async fn dial(url: String, key: Option<Keypair>) -> Result<Client, Error> {
        let origin = origin_of(&url)
            .map_err(|e| Error::BadArgument {
                what: "url",
                reason: e.to_string(),
            })?
            .to_owned();
        let (connection, info) = handshake(&url, &origin, key.as_ref(), None).await?;
        let inner = Rc::new(Inner {
            url,
            origin,
            key,
            connection: RefCell::new(None),
            info: RefCell::new(info),
            sequencers: RefCell::new(HashMap::new()),
            on_status: RefCell::new(None),
            closed: Cell::new(false),
            waiting: RefCell::new(Vec::new()),
        });
        Inner::install(&inner, connection);
        Ok(Client { inner })
    }

    fn read_space(&self, method: &'static str, space: &str) -> js_sys::Promise {
        let inner = self.inner.clone();
        let space = space_arg(space);
        promise(async move {
            let (space, _) = space?;
            let raw = inner
                .connection()?
                .call_raw(method, &Params::new().with(&space)?.text())
                .await?;
            raw_to_js(raw.get())
        })
    }
}

/// Open a connection to `url` and go through the handshake of §5 as `key`: `node.info` (the
/// protocol version must be this SDK's), then the node's challenge, checked (§5.2) and
/// answered.
pub(crate) async fn handshake(
    url: &str,
    origin: &str,
    key: Option<&Keypair>,
    live: Option<futures_channel::mpsc::Sender<crate::rpc::Live>>,
) -> Result<(Rc<Connection>, NodeInfo), Error> {
    let connection = Connection::open(url, live).await?;
    let info: NodeInfo = connection.call(NODE_INFO, "[]").await?;
    if info.protocol != PROTOCOL_VERSION {
        return Err(Error::Connection {
            url: url.to_owned(),
            reason: format!(
                "the node speaks protocol version {}, this SDK version {PROTOCOL_VERSION}",
                info.protocol
            ),
        });
    }
    if let Some(key) = key {
        let raw = connection.call_raw(AUTH_CHALLENGE, "[]").await?;
        let challenge: AuthChallenge =
            canonical::from_str_strict(raw.get()).map_err(|source| Error::Malformed {
                what: "challenge",
                source,
            })?;
        challenge.check_as_client(origin, &info.did, now())?;
        let response = AuthResponse::answer(key, challenge)?;
        let authenticated: Authenticated = connection
            .call(AUTH_RESPOND, &Params::new().with(&response)?.text())
            .await?;
        if authenticated.did != *key.did() {
            return Err(Error::Connection {
                url: url.to_owned(),
                reason: format!(
                    "the node authenticated {} instead of {}",
                    authenticated.did,
                    key.did()
                ),
            });
        }
    }
    Ok((connection, info))
}

impl Inner {
    /// Make `connection` the current one, and dial again when it drops.
    fn install(this: &Rc<Inner>, connection: Rc<Connection>) {
        let weak = Rc::downgrade(this);
        connection.on_close(move || {
            if let Some(inner) = weak.upgrade() {
                Inner::lost(&inner);
            }
        });
        *this.connection.borrow_mut() = Some(connection);
        for waiter in this.waiting.borrow_mut().drain(..) {
            let _ = waiter.send(());
        }
        this.status("connected");
    }

    /// The connection dropped: tell the app and dial again until it is back or the app closes
    /// the client.
    fn lost(this: &Rc<Inner>) {
        if this.closed.get() {
            return;
        }
        this.connection.borrow_mut().take();
        this.status("offline");
        let weak = Rc::downgrade(this);
        wasm_bindgen_futures::spawn_local(async move {
            let mut delay = RECONNECT_FIRST_MS;
            loop {
                gloo_timers::future::TimeoutFuture::new(delay).await;
                let Some(inner) = weak.upgrade() else { return };
                if inner.closed.get() {
                    return;
                }
                match handshake(&inner.url, &inner.origin, inner.key.as_ref(), None).await {
                    Ok((connection, info)) => {
                        if inner.closed.get() {
                            connection.close();
                            return;
                        }
                        *inner.info.borrow_mut() = info;
                        Inner::install(&inner, connection);
                        return;
                    }
                    Err(_) => delay = (delay * 2).min(RECONNECT_MAX_MS),
                }
            }
        });
    }

    fn status(&self, status: &str) {
        let listener = self.on_status.borrow().clone();
        if let Some(listener) = listener {
            // An app's listener that throws changes nothing here.
            let _ = listener.call1(&JsValue::NULL, &JsValue::from_str(status));
        }
    }

    pub(crate) fn current(&self) -> Option<Rc<Connection>> {
        self.connection
            .borrow()
            .as_ref()
            .filter(|c| c.is_open())
            .cloned()
    }

    /// The open connection, or a `connection` error while it is away.
    pub(crate) fn connection(&self) -> Result<Rc<Connection>, Error> {
        self.current().ok_or_else(|| Error::Connection {
            url: self.url.clone(),
            reason: if self.closed.get() {
                "the client was closed".to_owned()
            } else {
                "offline; dialling again".to_owned()
            },
        })
    }

    /// The open connection, once it is back; `None` when the client was closed.
    pub(crate) async fn connected(&self) -> Option<Rc<Connection>> {
        loop {
            if self.closed.get() {
                return None;
            }
            if let Some(connection) = self.current() {
                return Some(connection);
            }
            let (tx, rx) = oneshot::channel();
            self.waiting.borrow_mut().push(tx);
            // Cancelled when the client closes: checked again at the top.
            let _ = rx.await;
        }
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.get()
    }

    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    pub(crate) fn origin(&self) -> &str {
        &self.origin
    }

    pub(crate) fn keypair(&self) -> Option<&Keypair> {
        self.key.as_ref()
    }

    pub(crate) fn key(&self, method: &'static str) -> Result<&Keypair, Error> {
        self.key.as_ref().ok_or(Error::Anonymous { method })
    }

    /// The space's sequencer, as its genesis names it (the genesis is checked under the owner,
    /// whose key the space id carries).
    pub(crate) async fn sequencer(&self, space: &SpaceId) -> Result<Did, Error> {
        if let Some(did) = self.sequencers.borrow().get(space) {
            return Ok(did.clone());
        }
        let page = self.events_page(space, 0, 1, false).await?;
        let first = page.events.first().ok_or_else(|| VerifyError::NoGenesis {
            space: space.to_string(),
        })?;
        let sequencer = verify::genesis_sequencer(first, space)?;
        let mut cache = self.sequencers.borrow_mut();
        if cache.len() >= SEQUENCER_CACHE {
            cache.clear();
        }
        cache.insert(space.clone(), sequencer.clone());
        Ok(sequencer)
    }

    async fn events_page(
        &self,
        space: &SpaceId,
        since: u64,
        limit: u32,
        beams: bool,
    ) -> Result<EventPage, Error> {
        let params = Params::new()
            .with(space)?
            .with(&since)?
            .with(&limit)?
            .with(&beams.then_some(true))?
            .text();
        self.connection()?.call(SPACE_EVENTS, &params).await
    }

    /// One page after `cursor`, with beams inline, verified; the cursor moves past it.
    pub(crate) async fn page(
        &self,
        cursor: &mut LogCursor,
        limit: u32,
    ) -> Result<Vec<EventWithBeam>, Error> {
        let page = self
            .events_page(cursor.space(), cursor.last(), limit, true)
            .await?;
        let beams = page.beams.as_deref().unwrap_or_default();
        Ok(cursor.accept_page_with_beams(&page.events, beams)?)
    }

    /// `space.post` of a beam by this identity, with `attachments` signed with it.
    pub(crate) async fn post(
        &self,
        space: SpaceId,
        title: &str,
        body: &str,
        attachments: Vec<Attachment>,
    ) -> Result<BeamPosted, Error> {
        let key = self.key(SPACE_POST)?;
        let authority = self.info.borrow().authority.clone();
        let (beam, beam_ref) =
            Beam::post_attached(key, space, &authority, title, body, attachments, now())?;
        rules(beam.check_rules())?;
        rules(beam_ref.check_rules())?;
        let params = Params::new().with(&beam)?.with(&beam_ref)?.text();
        self.connection()?.call(SPACE_POST, &params).await
    }

    /// `beam.get` of `path` (from `home` if this node does not hold it), checked against it.
    pub(crate) async fn beam(&self, path: &BeamPath, home: Option<String>) -> Result<Beam, Error> {
        let beam: Beam = self.read_beam(BEAM_GET, "beam", path, home).await?;
        verify::check_beam(&beam, path)?;
        Ok(beam)
    }

    /// `beam.history` of the beam at `path` (asking its home node through this one when
    /// `home` names it), checked as the Rust SDK checks it.
    pub(crate) async fn history(
        &self,
        path: &BeamPath,
        home: Option<String>,
    ) -> Result<BeamHistory, Error> {
        let history: BeamHistory = self
            .read_beam(BEAM_HISTORY, "beam history", path, home)
            .await?;
        verify::check_history(&history, path)?;
        Ok(history)
    }

    /// `method` (`beam.get`, `beam.history`) of `path` and `home`, its result read strictly;
    /// `what` names it in an error.
    async fn read_beam<T: serde::de::DeserializeOwned>(
        &self,
        method: &'static str,
        what: &'static str,
        path: &BeamPath,
        home: Option<String>,
    ) -> Result<T, Error> {
        let params = Params::new().with(&path.to_string())?.with(&home)?.text();
        let raw: Box<RawValue> = self.connection()?.call_raw(method, &params).await?;
        canonical::from_str_strict(raw.get()).map_err(|source| Error::Malformed { what, source })
    }

    /// A `beam_ref` whose beam the node did not send inline gets it from `beam.get` (its home
    /// node's, through this node): a beam that was deleted (`beam_not_found`) or cannot be
    /// reached now stays absent; one that fails its checks is an error.
    pub(crate) async fn complete(&self, mut item: EventWithBeam) -> Result<EventWithBeam, Error> {
        if item.beam.is_some() {
            return Ok(item);
        }
        let Payload::BeamRef(r) = &item.event.payload else {
            return Ok(item);
        };
        let path = BeamPath::new(&r.author, r.beam);
        match self.beam(&path, Some(r.home.clone())).await {
            Ok(beam) => {
                if beam.author != r.author {
                    return Err(VerifyError::WrongBeam {
                        expected: path.to_string(),
                        actual: format!("{path} by {}", beam.author),
                    }
                    .into());
                }
                item.beam = Some(beam);
            }
            Err(Error::Rpc { .. } | Error::Connection { .. }) => {}
            Err(e) => return Err(e),
        }
        Ok(item)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPACE: &str = "channel/z6Mkon3Necd6NkkyfoGoHxid2znGc59LU3K7mubaRcFbLfLX/general";

    #[test]
    fn params_are_a_json_array_of_the_values_in_order() {
        let text = Params::new()
            .with(&SPACE)
            .unwrap()
            .with(&7u64)
            .unwrap()
            .with(&None::<bool>)
            .unwrap()
            .text();
        assert_eq!(text, format!(r#"["{SPACE}",7,null]"#));
        assert_eq!(Params::new().text(), "[]");
    }

    #[test]
    fn a_space_is_named_by_id_or_by_uri_whose_authority_is_its_sequencer() {
        let (space, sequencer) = space_arg(SPACE).unwrap();
        assert_eq!((space.as_str(), sequencer), (SPACE, None));
        let (space, sequencer) = space_arg(&format!("northstar://a.example:7700/{SPACE}")).unwrap();
        assert_eq!(space.as_str(), SPACE);
        assert_eq!(sequencer.as_deref(), Some("a.example:7700"));
        for bad in [
            "",
            "channel/nope",
            "northstar://a.example/",
            "https://a.example/x",
        ] {
            let error = space_arg(bad).unwrap_err();
            assert_eq!(error.kind(), "argument", "{bad:?}: {error}");
        }
    }

    #[test]
    fn a_beam_is_named_by_path_or_by_uri_whose_authority_is_its_home() {
        let author = Keypair::from_seed(&[3; 32]);
        let path = BeamPath::new(author.did(), northstar_protocol::ContentId::of(b"beam"));
        let (parsed, home) = beam_arg(&path.to_string()).unwrap();
        assert_eq!((parsed, home), (path, None));
        let (parsed, home) = beam_arg(&format!("northstar://home.example/{path}")).unwrap();
        assert_eq!((parsed, home.as_deref()), (path, Some("home.example")));
        assert_eq!(beam_arg("beam/x/y").unwrap_err().kind(), "argument");
    }
}
