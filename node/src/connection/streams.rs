//! What a connection does for live streams (`spec/protocol.md` §10): `stream.publish`,
//! `stream.watch` and `stream.unwatch`, served here because they change what the connection
//! itself carries, and the notices it sends about frames and watches.

use std::sync::Arc;

use jsonrpsee::core::server::{MethodResponse, ResponsePayload};
use jsonrpsee::types::error::reject_too_many_subscriptions;
use jsonrpsee::types::{ErrorObjectOwned, Id, Params};
use northstar_protocol::address::SpaceId;
use northstar_protocol::api::{StreamNotice, StreamPublishing};
use northstar_protocol::method;
use serde::Deserialize;

use super::Done;
use super::Shared;
use super::calls::into_text;
use crate::auth::Session;
use crate::rpc::ApiError;
use crate::streams::Refused;

/// `stream.publish`: check the caller may publish the stream here; the connection then takes
/// its frames.
pub(super) async fn publish(
    shared: Arc<Shared>,
    session: Arc<Session>,
    id: Id<'static>,
    params: Params<'static>,
) -> Done {
    let max = shared.max_response();
    let refuse = |e: ErrorObjectOwned| Done::Reply(into_text(MethodResponse::error(id.clone(), e)));
    let space = match one_space(&params) {
        Ok(space) => space,
        Err(e) => return refuse(e),
    };
    let caller = match session.user() {
        Ok(caller) => caller.clone(),
        Err(e) => return refuse(ApiError::from(e).into()),
    };
    let streams = &shared.api.streams;
    match streams.publisher(&space, &caller).await {
        Ok(stream) => {
            let answer = StreamPublishing {
                space,
                next: stream.next(),
                limits: streams.limits().limits(),
            };
            let reply = into_text(MethodResponse::response(
                id,
                ResponsePayload::success(answer),
                max,
            ));
            Done::Publishing { reply, stream }
        }
        Err(e) => refuse(ApiError::from(e).into()),
    }
}

/// A `stream.watch` call, its parameters read.
pub(super) struct Watch {
    pub space: SpaceId,
    pub since: Option<u64>,
    /// Whether the connection has room for the watch (or it replaces one).
    pub room: bool,
}

/// `stream.watch`: open a watch; its frames follow the answer. Checked in the order of §10.3:
/// the space, then the room for one more watch.
pub(super) async fn watch(shared: Arc<Shared>, id: Id<'static>, watch: Watch) -> Done {
    let max = shared.max_response();
    let refuse =
        |e: ErrorObjectOwned| Done::NotOpened(into_text(MethodResponse::error(id.clone(), e)));
    let streams = &shared.api.streams;
    if !watch.room {
        if let Err(e) = streams.open(&watch.space).await {
            return refuse(ApiError::from(e).into());
        }
        let limit = shared.limits.max_subscriptions_per_connection;
        return refuse(reject_too_many_subscriptions(limit));
    }
    match streams.watch(&watch.space, watch.since).await {
        Ok((answer, feed)) => Done::Watching {
            reply: into_text(MethodResponse::response(
                id,
                ResponsePayload::success(answer),
                max,
            )),
            feed,
        },
        Err(e) => refuse(ApiError::from(e).into()),
    }
}

/// The space `stream.unwatch` names, if it names one: `[space]` or `{"space"}`.
pub(super) fn unwatch_params(params: &Params<'_>) -> Result<SpaceId, ErrorObjectOwned> {
    one_space(params)
}

fn one_space(params: &Params<'_>) -> Result<SpaceId, ErrorObjectOwned> {
    #[derive(Deserialize)]
    struct Named {
        space: SpaceId,
    }
    if params.is_object() {
        return Ok(params.parse::<Named>()?.space);
    }
    params.sequence().next()
}

/// `stream.watch`'s parameters: `[space, since?]` or `{"space", "since"?}`.
pub(super) fn watch_params(
    params: &Params<'_>,
) -> Result<(SpaceId, Option<u64>), ErrorObjectOwned> {
    #[derive(Deserialize)]
    struct Named {
        space: SpaceId,
        #[serde(default)]
        since: Option<u64>,
    }
    if params.is_object() {
        let named: Named = params.parse()?;
        return Ok((named.space, named.since));
    }
    let mut sequence = params.sequence();
    let space = sequence.next()?;
    let since = sequence.optional_next()?;
    Ok((space, since))
}

/// The `stream.refused` notification for a frame the node did not take.
pub(super) fn refused(refused: Refused) -> String {
    let error = ApiError::from(refused.error);
    notice(
        method::STREAM_REFUSED,
        &StreamNotice {
            space: refused.space,
            number: refused.number,
            code: error.code().code(),
            name: error.code().name().into(),
            message: error.message().into(),
        },
    )
}

/// A notification `name` with `params`.
pub(super) fn notice(name: &str, params: &StreamNotice) -> String {
    // A notice always serialises: strings and integers only.
    let params = serde_json::to_string(params).unwrap_or_default();
    format!(r#"{{"jsonrpc":"2.0","method":"{name}","params":{params}}}"#)
}
