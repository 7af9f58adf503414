//! The calls a connection runs: `jsonrpsee`'s methods with the session in their extensions,
//! `space.subscribe`, and the pieces of answers and notifications written as text.

use std::sync::Arc;

use jsonrpsee::core::server::{MethodCallback, MethodResponse, ResponsePayload};
use jsonrpsee::types::error::{ErrorCode as RpcCode, INVALID_PARAMS_CODE, INVALID_PARAMS_MSG};
use jsonrpsee::types::{ErrorObject, ErrorObjectOwned, Id, Params};
use jsonrpsee::{ConnectionId, Extensions};
use northstar_protocol::address::SpaceId;
use northstar_protocol::api::ErrorCode;
use northstar_protocol::canonical;
use northstar_protocol::envelope::{self, Refusal};
use serde::Deserialize;
use serde_json::Value;

use super::{Call, Done, NOTIFICATION, Shared};
use crate::auth::{Session, Spent};
use crate::rpc::feed::FeedItem;

/// A call of one of the `jsonrpsee` methods, with the session in its extensions.
/// The method must exist (check 5 of §6.3), then its parameters pass [`checked_params`]
/// (the first part of check 7; the method's decoder makes the rest).
pub(super) fn call(
    shared: &Arc<Shared>,
    session: &Arc<Session>,
    name: &str,
    id: Id<'static>,
    params: envelope::Params<'_>,
) -> Result<Call, MethodResponse> {
    let Some(callback) = shared.methods.method(name) else {
        return Err(MethodResponse::error(id, RpcCode::MethodNotFound));
    };
    let params = match checked_params(params) {
        Ok(params) => params,
        Err(e) => return Err(MethodResponse::error(id, e)),
    };
    // Every method with a callback is one of the protocol's, so it has a static name.
    let label = northstar_protocol::method::ALL
        .iter()
        .find(|m| **m == name)
        .copied()
        .unwrap_or("other");
    let metrics = shared.api.metrics.clone();
    let started = std::time::Instant::now();
    let mut extensions = Extensions::new();
    extensions.insert(session.clone());
    let conn = ConnectionId(usize::try_from(session.id).unwrap_or(usize::MAX));
    let max = shared.max_response();
    match callback {
        MethodCallback::Async(callback) => {
            let callback = callback.clone();
            Ok(Box::pin(async move {
                let response = callback(id, params, conn, max, extensions).await;
                metrics.call(label, !response.is_error(), started.elapsed());
                Done::Reply(into_text(response))
            }))
        }
        MethodCallback::Sync(callback) => {
            let response = callback(id, params, max, extensions);
            metrics.call(label, !response.is_error(), started.elapsed());
            Ok(Box::pin(std::future::ready(Done::Reply(into_text(
                response,
            )))))
        }
        // The node registers no jsonrpsee subscriptions: they are served here.
        MethodCallback::Subscription(_) | MethodCallback::Unsubscription(_) => {
            Err(MethodResponse::error(id, RpcCode::MethodNotFound))
        }
    }
}

/// `space.subscribe`: check, open the feed, answer with the subscription's id.
pub(super) async fn subscribe(
    shared: Arc<Shared>,
    session: Arc<Session>,
    id: Id<'static>,
    params: Params<'static>,
    sub: u64,
) -> Done {
    let max = shared.max_response();
    let (space, since, beams) = match parse_subscribe(&params) {
        Ok(parsed) => parsed,
        Err(e) => {
            return Done::NotOpened(into_text(MethodResponse::error(id, e)));
        }
    };
    let reader = session.did().cloned();
    match shared.api.subscribe(space, since, reader, beams).await {
        Ok(feed) => Done::Subscribed {
            reply: into_text(MethodResponse::response(
                id,
                ResponsePayload::success(sub),
                max,
            )),
            id: sub,
            feed,
        },
        Err(e) => Done::NotOpened(into_text(MethodResponse::error(
            id,
            ErrorObjectOwned::from(e),
        ))),
    }
}

/// `space.subscribe`'s parameters: `[space, since, beams?]`, or `{"space", "since",
/// "beams"?}`; `beams` absent or `null` is `false` (§6.3).
pub(super) fn parse_subscribe(
    params: &Params<'_>,
) -> Result<(SpaceId, u64, bool), ErrorObjectOwned> {
    #[derive(Deserialize)]
    struct Named {
        space: SpaceId,
        since: u64,
        #[serde(default)]
        beams: Option<bool>,
    }
    if params.is_object() {
        let named: Named = params.parse()?;
        return Ok((named.space, named.since, named.beams.unwrap_or(false)));
    }
    let mut sequence = params.sequence();
    let space = sequence.next()?;
    let since = sequence.next()?;
    let beams: Option<bool> = sequence.optional_next()?;
    Ok((space, since, beams.unwrap_or(false)))
}

/// The subscription `space.unsubscribe`'s parameters name, if they name one this node could
/// have issued: the first element of an array or the member `subscription` of an object, an
/// integer. Anything else names none, and the call answers `false` rather than failing
/// (§6.3.15), so these parameters skip the strict check.
pub(super) fn subscription_named(params: &str) -> Option<u64> {
    let params: Value = serde_json::from_str(params).ok()?;
    let id = match &params {
        Value::Array(items) => items.first()?,
        Value::Object(members) => members.get("subscription")?,
        _ => return None,
    };
    id.as_u64()
}

/// The parameters as the methods take them, once they are an array or an object (or absent)
/// and their whole text passes the strict rules of §3.1: no repeated key at any depth, no
/// fraction or exponent, no integer beyond 2^53-1. Otherwise −32602, whose data starts with
/// the §3.1 error name.
pub(super) fn checked_params(
    params: envelope::Params<'_>,
) -> Result<Params<'static>, ErrorObjectOwned> {
    match params {
        envelope::Params::Absent => Ok(Params::new(None)),
        envelope::Params::Unstructured => Err(unstructured_params()),
        envelope::Params::Structured(text) => match canonical::check_strict(text) {
            // Copied once: the call outlives the message it came in.
            Ok(()) => Ok(Params::new(Some(text)).into_owned()),
            Err(e) => Err(invalid_params(format!("{}: {e}", e.code()))),
        },
    }
}

pub(super) fn unstructured_params() -> ErrorObjectOwned {
    invalid_params("params must be an array or an object".into())
}

pub(super) fn invalid_params(data: String) -> ErrorObjectOwned {
    ErrorObjectOwned::owned(INVALID_PARAMS_CODE, INVALID_PARAMS_MSG, Some(data))
}

/// A `space.event` notification for subscription `id`.
///
/// Built to its exact length: the WebSocket layer then takes the text's buffer as it is,
/// without allocating a header for a partly used one.
pub(super) fn notification(id: u64, item: &FeedItem) -> String {
    let (field, value) = match item {
        FeedItem::Event(json) => ("result", std::borrow::Cow::Borrowed(json.as_str())),
        FeedItem::End(text) => (
            "error",
            // A string always serialises.
            std::borrow::Cow::Owned(serde_json::to_string(text).unwrap_or_default()),
        ),
    };
    let id = id.to_string();
    let parts = [
        r#"{"jsonrpc":"2.0","method":""#,
        NOTIFICATION,
        r#"","params":{"subscription":"#,
        &id,
        r#",""#,
        field,
        r#"":"#,
        &value,
        "}}",
    ];
    let mut out = String::with_capacity(parts.iter().map(|p| p.len()).sum());
    for part in parts {
        out.push_str(part);
    }
    out
}

/// The id an answer carries, in `jsonrpsee`'s terms.
pub(super) fn rpc_id(id: &envelope::Id<'_>) -> Id<'static> {
    match id {
        envelope::Id::Number(n) => Id::Number(*n),
        envelope::Id::Str(s) => Id::Str(s.clone().into_owned().into()),
    }
}

/// The answer to a message the envelope refused.
pub(super) fn refused(refusal: Refusal<'_>) -> String {
    let id = refusal.id.as_ref().map_or(Id::Null, rpc_id);
    let error = ErrorObject::owned(refusal.fault.code(), refusal.reason, None::<()>);
    into_text(MethodResponse::error(id, error))
}

pub(super) fn into_text(response: MethodResponse) -> String {
    Box::<str>::from(response.into_json()).into_string()
}

/// The answer to a request that found a budget empty; the message says which.
pub(super) fn rate_limited(spent: Spent) -> ErrorObjectOwned {
    ErrorObjectOwned::owned(
        ErrorCode::RateLimited.code(),
        spent.message(),
        Some(ErrorCode::RateLimited.name()),
    )
}
