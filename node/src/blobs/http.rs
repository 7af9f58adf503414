//! The `/blob` routes (`spec/protocol.md` §13.3): uploads, downloads, and fetching a blob from
//! the home node of a beam that attaches it (§13.4).
//!
//! Who may read is decided by the beam a request names, read as `beam.get` reads it
//! (`Api::beam`), so a blob is never more visible than the beams that carry it.

use std::convert::Infallible;
use std::io;
use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use northstar_protocol::address::BeamPath;
use northstar_protocol::blob::{self, BlobRefusal, Uploaded};
use northstar_protocol::rpc::BlobApiClient;
use northstar_protocol::{ContentId, Did};
use tokio_util::io::{StreamReader, SyncIoBridge};

use super::{BlobError, Encoded};
use crate::rpc::Api;

/// The body of a blob response: a JSON answer or a streamed encoding.
pub type BlobBody = UnsyncBoxBody<Bytes, io::Error>;

/// The media type of an upload without `Content-Type`.
const DEFAULT_MEDIA_TYPE: &str = "application/octet-stream";

/// Whether `path` is one of the blob routes.
pub fn serves(path: &str) -> bool {
    path == "/blob" || path.starts_with("/blob/")
}

/// Answer a blob request. Every answer may be read by a page of any origin (CORS): blob
/// requests carry their authority in a ticket (`Authorization: Bearer`), never in a cookie, so
/// a page without a ticket gets nothing it could not get by itself, and an app on its own
/// origin can use the browser SDK's blob calls.
pub async fn answer(api: &Arc<Api>, req: Request<Incoming>) -> Response<BlobBody> {
    let mut response = route(api, req).await;
    response.headers_mut().insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    response
}

async fn route(api: &Arc<Api>, req: Request<Incoming>) -> Response<BlobBody> {
    let result = match (req.method(), req.uri().path()) {
        // A browser's preflight before a request with a ticket or a type: what it may send.
        (&Method::OPTIONS, _) => {
            let mut response = Response::new(full(Bytes::new()));
            *response.status_mut() = StatusCode::NO_CONTENT;
            let headers = response.headers_mut();
            headers.insert(
                header::ACCESS_CONTROL_ALLOW_METHODS,
                HeaderValue::from_static("GET, POST"),
            );
            headers.insert(
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                HeaderValue::from_static("Authorization, Content-Type"),
            );
            headers.insert(
                header::ACCESS_CONTROL_MAX_AGE,
                HeaderValue::from_static("600"),
            );
            return response;
        }
        (&Method::POST, "/blob") => upload(api, req).await,
        (&Method::GET, path) => match path.strip_prefix("/blob/") {
            Some(id) => download(api, id, &req).await,
            None => Err(BlobError::BadRequest("GET /blob/{id}".into())),
        },
        _ => Err(BlobError::BadRequest(
            "blob requests are POST /blob and GET /blob/{id}".into(),
        )),
    };
    result.unwrap_or_else(|e| refusal(&e))
}

fn refusal(e: &BlobError) -> Response<BlobBody> {
    let message = match e {
        BlobError::Io(_) | BlobError::Store(_) => {
            tracing::error!(error = %crate::report::Causes(e), "blob request failed");
            "internal error; the node's log has the details".to_owned()
        }
        other => {
            tracing::debug!(error = %other, "blob request refused");
            other.to_string()
        }
    };
    let body = BlobRefusal {
        error: e.name().to_owned(),
        message,
    };
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json(status, &body)
}

fn json<T: serde::Serialize>(status: StatusCode, value: &T) -> Response<BlobBody> {
    // Serialising these plain structs cannot fail; an empty body would still carry the status.
    let text = serde_json::to_vec(value).unwrap_or_default();
    let mut response = Response::new(full(Bytes::from(text)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

fn full(bytes: Bytes) -> BlobBody {
    Full::new(bytes)
        .map_err(|never: Infallible| match never {})
        .boxed_unsync()
}

/// The DID of the request's ticket, if it carries one.
fn bearer(api: &Api, headers: &HeaderMap) -> Result<Option<Did>, BlobError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let ticket = value
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or(BlobError::BadTicket(
            "Authorization must be Bearer {ticket}",
        ))?;
    api.blobs
        .check_ticket(ticket.trim(), crate::clock::now_ms())
        .map(Some)
}

async fn upload(api: &Api, req: Request<Incoming>) -> Result<Response<BlobBody>, BlobError> {
    let owner = bearer(api, req.headers())?.ok_or(BlobError::BadTicket(
        "an upload needs a ticket (blob.ticket)",
    ))?;
    let size: u64 = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .ok_or(BlobError::LengthRequired)?;
    let media_type = match req.headers().get(header::CONTENT_TYPE) {
        None => DEFAULT_MEDIA_TYPE.to_owned(),
        Some(v) => {
            let text = v.to_str().unwrap_or_default().trim().to_ascii_lowercase();
            if !blob::is_media_type(&text) {
                return Err(BlobError::BadRequest(format!(
                    "Content-Type {text:?} is not a media type type/subtype without parameters"
                )));
            }
            text
        }
    };
    // Held until the blob is recorded: a second upload meanwhile counts this one's bytes.
    let admitted = api.blobs.admit(&owner, size).await?;
    let (tx, storing) = api.blobs.store_stream(size);
    let mut body = req.into_body();
    let mut failed = None;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => {
                if let Ok(data) = frame.into_data()
                    && tx.send(data).await.is_err()
                {
                    // The writer stopped (a body longer than announced, a full disk): its
                    // error says why.
                    break;
                }
            }
            Err(e) => {
                failed = Some(e);
                break;
            }
        }
    }
    drop(tx);
    let id = storing.finish().await;
    if let Some(e) = failed {
        return Err(BlobError::BadRequest(format!("the upload broke off: {e}")));
    }
    // A body shorter or longer than its Content-Length is the client's fault; any other
    // failure (a full disk) is the node's.
    let id = id.map_err(|e| match e {
        BlobError::Io(io)
            if matches!(
                io.kind(),
                io::ErrorKind::UnexpectedEof | io::ErrorKind::InvalidData
            ) =>
        {
            BlobError::BadRequest(io.to_string())
        }
        other => other,
    })?;
    let new = admitted.record(&id, &media_type).await?;
    tracing::debug!(blob = %id, size, owner = %owner, new, "blob stored");
    let status = if new {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(json(status, &Uploaded { blob: id, size }))
}

/// The query parameters of a download.
#[derive(Debug, Default)]
struct Query {
    beam: Option<String>,
    home: Option<String>,
    range: Option<Range<u64>>,
}

fn query(text: Option<&str>) -> Result<Query, BlobError> {
    let mut query = Query::default();
    for pair in text
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
    {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "beam" => query.beam = Some(value.to_owned()),
            "home" => query.home = Some(value.to_owned()),
            "range" => query.range = Some(parse_range(value)?),
            other => {
                return Err(BlobError::BadRequest(format!(
                    "unknown parameter {other:?}"
                )));
            }
        }
    }
    Ok(query)
}

/// `a-b`: the bytes `[a, b)`.
pub fn parse_range(text: &str) -> Result<Range<u64>, BlobError> {
    let bad = || BlobError::BadRequest(format!("range {text:?} must be a-b with a <= b"));
    let (a, b) = text.split_once('-').ok_or_else(bad)?;
    let (a, b): (u64, u64) = (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?);
    if a > b {
        return Err(bad());
    }
    Ok(a..b)
}

async fn download(
    api: &Arc<Api>,
    id: &str,
    req: &Request<Incoming>,
) -> Result<Response<BlobBody>, BlobError> {
    let id = ContentId::parse(id).map_err(|e| BlobError::BadRequest(e.to_string()))?;
    let caller = bearer(api, req.headers())?;
    let query = query(req.uri().query())?;
    let held = api.blobs.held(&id).await?;
    let size = match &query.beam {
        None => match held {
            Some(row) if caller.as_ref().is_some_and(|c| c.as_str() == row.owner) => row.size,
            _ => {
                return Err(BlobError::NotMember(
                    "name a beam that attaches this blob (beam=beam/{authorHash}/{beamId})".into(),
                ));
            }
        },
        Some(path) => {
            let parsed =
                BeamPath::parse(path).map_err(|e| BlobError::BadRequest(format!("beam: {e}")))?;
            let beam = api
                .beam(parsed, query.home.clone(), caller.as_ref())
                .await
                .map_err(|e| match e.code() {
                    northstar_protocol::api::ErrorCode::NotMember => {
                        BlobError::NotMember(e.message().to_owned())
                    }
                    northstar_protocol::api::ErrorCode::PeerUnreachable => {
                        BlobError::Peer(e.message().to_owned())
                    }
                    _ => BlobError::NotFound(e.message().to_owned()),
                })?;
            let attachment = beam
                .attachments
                .iter()
                .find(|a| a.blob == id)
                .ok_or_else(|| BlobError::NotFound(format!("beam {path} does not attach {id}")))?;
            match held {
                Some(row) => row.size,
                None => {
                    let home = query
                        .home
                        .clone()
                        .filter(|h| *h != api.config.authority())
                        .ok_or_else(|| BlobError::NotFound(format!("blob {id} is not here")))?;
                    let upstream = open_home(api, &home, path, &id, query.range.clone()).await?;
                    // A range is relayed as the home node sends it, its proofs included, and not
                    // kept: a reader seeking in a large file waits for its range, not the file.
                    // So is the whole blob while another reader's fetch is keeping a copy.
                    let claim = match query.range {
                        Some(_) => None,
                        None => api.blobs.claim_fetch(id),
                    };
                    let Some(claim) = claim else {
                        return Ok(encoded(upstream.into_body().map_err(io::Error::other)));
                    };
                    let wanted = Wanted {
                        home,
                        path: path.clone(),
                        id,
                        size: attachment.size,
                        author: beam.author.clone(),
                        media_type: attachment.media_type.clone(),
                    };
                    return Ok(fetch_through(api, upstream, wanted, claim));
                }
            }
        }
    };
    let Encoded { rx } = api.blobs.encode(&id, size, query.range);
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|piece| (piece.map(Frame::data), rx))
    });
    Ok(encoded(StreamBody::new(stream)))
}

/// A verified-stream response (§13.2) of `body`.
fn encoded<B>(body: B) -> Response<BlobBody>
where
    B: hyper::body::Body<Data = Bytes, Error = io::Error> + Send + 'static,
{
    let mut response = Response::new(body.boxed_unsync());
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(blob::STREAM_MEDIA_TYPE),
    );
    response
}

/// A blob a member node fetches from the home node of a beam that attaches it.
struct Wanted {
    home: String,
    /// The beam's path.
    path: String,
    id: ContentId,
    size: u64,
    author: Did,
    media_type: String,
}

/// The whole blob from its home node, as `upstream` brings it, streamed to the caller as it
/// comes and, in the same pass, checked chunk by chunk and written; the checked copy is kept as
/// a cached blob (§13.4). The caller's reader checks what it gets itself; a stream the check
/// refuses ends the caller's response with an error and is not kept. The fetch goes on if the
/// caller leaves, so the copy is there for the next reader; `claim` is held until it ends.
fn fetch_through(
    api: &Arc<Api>,
    upstream: Response<Incoming>,
    wanted: Wanted,
    claim: super::Fetching,
) -> Response<BlobBody> {
    let (out_tx, out_rx) = tokio::sync::mpsc::channel::<io::Result<Bytes>>(super::UPLOAD_QUEUE);
    let task_api = api.clone();
    api.background.spawn(async move {
        let api = task_api;
        let outcome = cache_from(&api, upstream, &wanted, &out_tx).await;
        // Another reader may fetch to keep a copy from now on (none is needed if this one
        // kept it).
        drop(claim);
        match outcome {
            Ok(()) => tracing::debug!(blob = %wanted.id, home = %wanted.home, "blob fetched and cached"),
            Err(e) => {
                tracing::debug!(blob = %wanted.id, home = %wanted.home, error = %e, "blob fetch failed");
                // The caller, if still there, learns the stream broke off.
                let _ = out_tx.send(Err(io::Error::other(e.to_string()))).await;
            }
        }
    });
    let stream = futures_util::stream::unfold(out_rx, |mut rx| async move {
        rx.recv().await.map(|piece| (piece.map(Frame::data), rx))
    });
    encoded(StreamBody::new(stream))
}

/// The pass of [`fetch_through`]: every piece of `upstream` to the caller (while it listens)
/// and to the checker, whose checked bytes are written; then the blob recorded.
async fn cache_from(
    api: &Api,
    upstream: Response<Incoming>,
    wanted: &Wanted,
    caller: &tokio::sync::mpsc::Sender<io::Result<Bytes>>,
) -> Result<(), BlobError> {
    let unreachable = |what: String| BlobError::Peer(format!("{}: {what}", wanted.home));
    let (tx, storing) = api.blobs.store_stream(wanted.size);
    let (raw_tx, raw_rx) = tokio::sync::mpsc::channel::<Bytes>(super::UPLOAD_QUEUE);
    let (expected, size) = (wanted.id, wanted.size);
    // The blocking check reads what the loop below passes it, through a bridge to this runtime.
    let pieces = futures_util::stream::unfold(raw_rx, |mut rx| async move {
        rx.recv().await.map(|piece| (Ok::<_, io::Error>(piece), rx))
    });
    let reader = SyncIoBridge::new(StreamReader::new(Box::pin(pieces)));
    let check = api.background.spawn_blocking(move || {
        blob::verify_stream(&expected, reader, None, Some(size), |_, piece| {
            tx.blocking_send(Bytes::copy_from_slice(piece))
                .map_err(|_| io::Error::other("the blob writer stopped"))
        })
    });
    let mut body = upstream.into_body();
    let mut listening = true;
    let mut broke = None;
    while let Some(frame) = body.frame().await {
        let data = match frame {
            Ok(frame) => match frame.into_data() {
                Ok(data) => data,
                Err(_) => continue,
            },
            Err(e) => {
                broke = Some(unreachable(e.to_string()));
                break;
            }
        };
        if listening && caller.send(Ok(data.clone())).await.is_err() {
            listening = false;
        }
        if raw_tx.send(data).await.is_err() {
            break;
        }
    }
    drop(raw_tx);
    let checked = check
        .await
        .map_err(|e| BlobError::Io(io::Error::other(e)))?;
    let stored = storing.finish().await;
    if let Some(e) = broke {
        return Err(e);
    }
    checked.map_err(|e| unreachable(format!("sent a bad stream: {e}")))?;
    if stored? != wanted.id {
        return Err(unreachable("sent another blob".into()));
    }
    api.blobs
        .record(&wanted.id, size, &wanted.author, &wanted.media_type, true)
        .await?;
    api.blobs.attach(&wanted.id, &wanted.path).await?;
    Ok(())
}

/// `GET /blob/{id}?beam={path}[&range=a-b]` on the home node `home`, with a ticket of this
/// node's: its answer once it said yes, the body still to come.
async fn open_home(
    api: &Api,
    home: &str,
    path: &str,
    id: &ContentId,
    range: Option<Range<u64>>,
) -> Result<Response<Incoming>, BlobError> {
    let unreachable = |what: String| BlobError::Peer(format!("{home}: {what}"));
    let link = api
        .links
        .get(home)
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    let ticket = link
        .client
        .ticket()
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    // Over TLS when the federation is, the home node's certificate verified as links verify it.
    let stream = api
        .links
        .connect_http(home)
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| unreachable(e.to_string()))?;
    let mut target = format!("/blob/{id}?beam={path}");
    if let Some(range) = range {
        target.push_str(&format!("&range={}-{}", range.start, range.end));
    }
    let request = Request::get(target)
        .header(header::HOST, home)
        .header(header::AUTHORIZATION, format!("Bearer {}", ticket.ticket))
        // One request per connection: it closes once the body is read.
        .header(header::CONNECTION, "close")
        .body(http_body_util::Empty::<Bytes>::new())
        .map_err(|e| BlobError::BadRequest(e.to_string()))?;
    api.background.spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %crate::report::Causes(&e), "blob fetch connection failed");
        }
    });
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    if !response.status().is_success() {
        return Err(unreachable(format!("answered {}", response.status())));
    }
    Ok(response)
}
