//! The operator's channel: `{data_dir}/admin.sock`, a Unix socket only the node's own user
//! (and root) may use, speaking newline-delimited JSON-RPC 2.0 (`spec/protocol.md` §12).
//!
//! - `socket`: creating the socket safely (mode 0600 before it has its name, a stale one from
//!   a crash replaced, a live one refused), accepting with a peer-credential check, and the
//!   line framing.
//! - this file: the requests and what each method does, through [`crate::rpc::Api`] and
//!   [`crate::access::Access`].
//!
//! Uses `rpc` (the node's state and its beam removal), `access`, `auth`, `store`, `status`.

mod socket;

use std::sync::Arc;

use northstar_protocol::Did;
use northstar_protocol::address::{BeamPath, BeamUri, SpaceId, SpaceUri};
use northstar_protocol::api::ErrorCode;
use northstar_protocol::method::admin as method;
use serde::Deserialize;
use serde_json::{Value, json};

pub use socket::{AdminError, SOCKET_FILE, Socket};

use crate::rpc::{Api, ApiError};

/// JSON-RPC's own codes for a request that cannot be served at all.
const PARSE_ERROR: i64 = -32700;
const INVALID_REQUEST: i64 = -32600;
const METHOD_NOT_FOUND: i64 = -32601;
const INVALID_PARAMS: i64 = -32602;

/// A request line as sent.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Request {
    jsonrpc: String,
    #[serde(default)]
    id: Value,
    method: String,
    #[serde(default)]
    params: Value,
}

/// A failure as the operator's client sees it.
#[derive(Debug)]
struct Failure {
    code: i64,
    message: String,
    name: Option<&'static str>,
}

impl Failure {
    fn rpc(code: i64, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            name: None,
        }
    }
}

impl From<ApiError> for Failure {
    fn from(e: ApiError) -> Self {
        Self {
            code: e.code().code().into(),
            message: e.message().to_owned(),
            name: Some(e.code().name()),
        }
    }
}

impl From<crate::store::StoreError> for Failure {
    fn from(e: crate::store::StoreError) -> Self {
        ApiError::internal(e).into()
    }
}

/// The answer to one request line: a JSON-RPC response object, without its newline.
pub async fn answer(api: &Api, line: &[u8]) -> String {
    let request: Request = match serde_json::from_slice::<Value>(line) {
        Err(e) => {
            return reply(
                &Value::Null,
                Err(Failure::rpc(PARSE_ERROR, format!("not JSON: {e}"))),
            );
        }
        Ok(value) => {
            let id = value.get("id").cloned().unwrap_or(Value::Null);
            match serde_json::from_value(value) {
                Ok(request) => request,
                Err(e) => {
                    let failure = Failure::rpc(INVALID_REQUEST, format!("not a request: {e}"));
                    return reply(&id, Err(failure));
                }
            }
        }
    };
    if request.jsonrpc != "2.0" {
        let failure = Failure::rpc(INVALID_REQUEST, "jsonrpc must be \"2.0\"");
        return reply(&request.id, Err(failure));
    }
    let result = call(api, &request.method, request.params).await;
    reply(&request.id, result)
}

fn reply(id: &Value, result: Result<Value, Failure>) -> String {
    let object = match result {
        Ok(result) => json!({"jsonrpc": "2.0", "id": id, "result": result}),
        Err(f) => {
            let mut error = json!({"code": f.code, "message": f.message});
            if let Some(name) = f.name {
                error["data"] = json!(name);
            }
            json!({"jsonrpc": "2.0", "id": id, "error": error})
        }
    };
    object.to_string()
}

/// The parameters naming one DID.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DidParams {
    did: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BeamParams {
    uri: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SpaceParams {
    space: String,
}

fn params<T: serde::de::DeserializeOwned>(params: Value) -> Result<T, Failure> {
    // No params at all reads as an empty object, so a method without any may omit them.
    let params = if params.is_null() { json!({}) } else { params };
    serde_json::from_value(params)
        .map_err(|e| Failure::rpc(INVALID_PARAMS, format!("invalid params: {e}")))
}

fn did(params: DidParams) -> Result<Did, Failure> {
    Did::parse(&params.did).map_err(|e| {
        ApiError::new(ErrorCode::MalformedDid, format!("{:?}: {e}", params.did)).into()
    })
}

async fn call(api: &Api, name: &str, raw: Value) -> Result<Value, Failure> {
    match name {
        method::USERS => {
            params::<serde_json::Map<String, Value>>(raw)?;
            users(api).await
        }
        method::ALLOW | method::DENY => {
            let did = did(params(raw)?)?;
            let allow = name == method::ALLOW;
            let access = api.auth.access();
            if allow {
                access.allow(&did).await?;
            } else {
                access.deny(&did).await?;
            }
            // Denied now: its open sessions go too, as a new handshake would be refused.
            let closed = if access.check(&did).is_err() {
                api.auth.kill_sessions_of(&did)
            } else {
                0
            };
            tracing::info!(did = %did, allow, closed, "the operator changed the allow-list");
            Ok(json!({
                "did": did.as_str(),
                "allowed": access.allowed(&did).0,
                "policy": access.policy().name(),
                "closed": closed,
            }))
        }
        method::BAN => {
            let did = did(params(raw)?)?;
            api.auth.access().ban(&did, crate::clock::now_ms()).await?;
            let closed = api.auth.kill_sessions_of(&did);
            tracing::info!(did = %did, closed, "the operator banned a DID from the node");
            Ok(json!({"did": did.as_str(), "banned": true, "closed": closed}))
        }
        method::UNBAN => {
            let did = did(params(raw)?)?;
            let was = api.auth.access().unban(&did).await?;
            tracing::info!(did = %did, was_banned = was, "the operator lifted a node-wide ban");
            Ok(json!({"did": did.as_str(), "banned": false, "was_banned": was}))
        }
        method::REMOVE_BEAM => {
            let BeamParams { uri } = params(raw)?;
            let path = beam_path(&uri)?;
            let deleted = api.remove_beam(&path).await?;
            tracing::info!(beam = %path, spaces = deleted.tombstones.len(), "the operator removed a beam");
            Ok(json!({
                "path": path.to_string(),
                "tombstones": deleted.tombstones,
            }))
        }
        method::REMOVE_SPACE => {
            let SpaceParams { space } = params(raw)?;
            let id = space_id(&space)?;
            let removed = api.remove_space(&id).await?;
            tracing::info!(space = %id, sequenced_here = removed.sequenced_here, "the operator removed a space");
            Ok(json!({
                "space": id.as_str(),
                "sequenced_here": removed.sequenced_here,
                "member_nodes": removed.member_nodes,
                "member_nodes_told": removed.told,
            }))
        }
        method::STATS => {
            params::<serde_json::Map<String, Value>>(raw)?;
            stats(api).await
        }
        other => Err(Failure::rpc(
            METHOD_NOT_FOUND,
            format!("no admin method {other:?}"),
        )),
    }
}

/// A beam named by its URI (`northstar://host/beam/…`) or its path (`beam/…`).
fn beam_path(text: &str) -> Result<BeamPath, Failure> {
    let parsed = if text.contains("://") {
        BeamUri::parse(text).map(|u| u.path)
    } else {
        BeamPath::parse(text)
    };
    parsed.map_err(|e| ApiError::new(ErrorCode::MalformedObject, format!("{text:?}: {e}")).into())
}

/// A space named by its URI (`northstar://host/{type}/…`) or its id.
fn space_id(text: &str) -> Result<SpaceId, Failure> {
    let parsed = if text.contains("://") {
        SpaceUri::parse(text).map(|u| u.space)
    } else {
        SpaceId::parse(text)
    };
    parsed.map_err(|e| ApiError::new(ErrorCode::MalformedObject, format!("{text:?}: {e}")).into())
}

/// Every DID the node knows as a user: those that authenticated, those the operator decided
/// about, the config file's allow-list, and the members whose home this node is.
async fn users(api: &Api) -> Result<Value, Failure> {
    use std::collections::BTreeMap;
    let access = api.auth.access();
    let mut known: BTreeMap<String, crate::store::UserRow> = BTreeMap::new();
    let blank = |did: &str| crate::store::UserRow {
        did: did.to_owned(),
        first_seen: None,
        last_seen: None,
        allowed: None,
        banned_at: None,
    };
    for row in api.store.users().await? {
        known.insert(row.did.clone(), row);
    }
    for did in api.store.home_members(api.did.as_str()).await? {
        known.entry(did.clone()).or_insert_with(|| blank(&did));
    }
    for did in access.configured() {
        known
            .entry(did.to_string())
            .or_insert_with(|| blank(did.as_str()));
    }
    let users: Vec<Value> = known
        .into_values()
        .map(|row| {
            let parsed = Did::parse(&row.did).ok();
            let (allowed, decided) = parsed
                .as_ref()
                .map_or((false, None), |did| access.allowed(did));
            let by = match (access.policy(), decided) {
                (crate::config::Policy::Open, _) => "open",
                (_, Some(_)) => "operator",
                (_, None) => "config",
            };
            json!({
                "did": row.did,
                "first_seen": row.first_seen,
                "last_seen": row.last_seen,
                "allowed": allowed,
                "allowed_by": by,
                "banned": row.banned_at.is_some(),
                "banned_at": row.banned_at,
            })
        })
        .collect();
    Ok(json!({"policy": access.policy().name(), "users": users}))
}

/// What the node holds and serves, counted now.
async fn stats(api: &Api) -> Result<Value, Failure> {
    let counts = api.store.counts(api.did.as_str()).await?;
    let storage = api.config.storage().map_err(ApiError::internal)?;
    let (backend, bytes) = match &storage {
        crate::store::Storage::Sqlite { path } => {
            // The database with its write-ahead log: what the node takes on disk.
            let size = |suffix: &str| {
                let mut name = path.clone().into_os_string();
                name.push(suffix);
                std::fs::metadata(name).map_or(0, |m| m.len())
            };
            ("sqlite", Some(size("") + size("-wal")))
        }
        crate::store::Storage::Postgres { .. } => ("postgres", None),
    };
    Ok(json!({
        "node": api.did.as_str(),
        "version": crate::status::VERSION,
        "protocol": northstar_protocol::PROTOCOL_VERSION,
        "uptime_secs": api.status.uptime().as_secs(),
        "users": counts.users,
        "known_users": api.store.users().await?.len(),
        "spaces_sequenced": counts.spaces_sequenced,
        "spaces_replicated": counts.spaces_replicated,
        "peers": counts.peers,
        "connections": api.metrics.connections.get(),
        "database": {"backend": backend, "bytes": bytes},
    }))
}

/// Serve the admin socket until `shutdown`; see [`Socket`].
pub fn spawn(
    socket: Socket,
    api: Arc<Api>,
    tasks: &tokio_util::task::TaskTracker,
    shutdown: tokio_util::sync::CancellationToken,
) {
    tasks.spawn(socket.serve(api, shutdown));
}
