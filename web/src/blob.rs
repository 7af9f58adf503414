//! Blobs from a page (`spec/protocol.md` §13): upload a file with a ticket of the client's
//! identity, post a beam that attaches it, and download one whole, every chunk checked against
//! its id before the app gets a byte.
//!
//! Transfers use `fetch` to the node's origin (`ws://` gives `http://`, `wss://` gives
//! `https://`), which answers pages of any origin (§13.3, CORS). A download is held in memory whole while it is checked: the browser SDK reads whole files
//! (images, documents) and no ranges (see the known gap of §13.2 on 32-bit targets).

use northstar_protocol::ContentId;
use northstar_protocol::blob::{self, Attachment, BlobRefusal, BlobTicket, Uploaded};
use northstar_protocol::method::BLOB_TICKET;
use wasm_bindgen::prelude::wasm_bindgen;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;

use crate::Error;
use crate::client::{Client, Inner, Params, beam_arg, promise, space_arg, to_js};
use crate::options::AppOptions;
use crate::rpc::js_text;

#[wasm_bindgen(typescript_custom_section)]
const TYPES: &str = r#"
/** `POST /blob`'s answer (§13.3.2): the blob's id and size. */
export interface Uploaded { blob: string; size: number; }
/** `Client.downloadBlob`'s options: the beam that attaches the blob (its path or URI; a URI
 * names its home node, which this node fetches the blob from), and the size the reader expects
 * (an attachment's `size`). Without `beam`, only the blob's owner may read it. */
export interface BlobReadOptions { beam?: string; home?: string; size?: number; }
"#;

#[wasm_bindgen]
impl Client {
    /// `blob.ticket`, then `POST /blob` on the node's origin: store `data` (a `Blob`, a `File`,
    /// or bytes) on this identity's node, as `mediaType` (default
    /// `application/octet-stream`). Attach the answer's id and size to a post with
    /// `postAttached`. A refusal (`blob_too_large`, `quota_exceeded`, …) is an `rpc` error whose
    /// `code` is the HTTP status.
    #[wasm_bindgen(js_name = uploadBlob, unchecked_return_type = "Promise<Uploaded>")]
    pub fn upload_blob(
        &self,
        #[wasm_bindgen(unchecked_param_type = "Blob | Uint8Array | ArrayBuffer")] data: JsValue,
        #[wasm_bindgen(js_name = mediaType)] media_type: Option<String>,
    ) -> js_sys::Promise {
        let inner = self.inner.clone();
        promise(async move {
            let media_type = media_type.unwrap_or_else(|| "application/octet-stream".into());
            if !blob::is_media_type(&media_type) {
                return Err(Error::BadArgument {
                    what: "mediaType",
                    reason: format!("{media_type:?} is not a type/subtype without parameters"),
                });
            }
            let ticket = ticket(&inner).await?;
            let headers = headers(&[
                ("Authorization", &format!("Bearer {}", ticket.ticket)),
                ("Content-Type", &media_type),
            ])?;
            let init = web_sys::RequestInit::new();
            init.set_method("POST");
            init.set_headers(&headers.into());
            init.set_body(&data);
            let url = format!("{}/blob", http_origin(&inner));
            let response = fetch(&url, &init).await?;
            if !response.ok() {
                return Err(refused(response, "POST /blob").await);
            }
            let text = text(&response).await?;
            let uploaded: Uploaded =
                serde_json::from_str(&text).map_err(|source| Error::BadAnswer {
                    method: "POST /blob",
                    source,
                })?;
            to_js(&uploaded)
        })
    }

    /// `space.post` of a beam that carries `attachments` (each `{blob, size, media_type, name}`,
    /// blobs uploaded to this node by this identity): the attachments are signed with the beam.
    #[wasm_bindgen(js_name = postAttached, unchecked_return_type = "Promise<BeamPosted>")]
    pub fn post_attached(
        &self,
        space: &str,
        title: String,
        body: String,
        #[wasm_bindgen(unchecked_param_type = "Attachment[]")] attachments: JsValue,
    ) -> js_sys::Promise {
        let inner = self.inner.clone();
        let space = space_arg(space);
        promise(async move {
            let (space, _) = space?;
            let attachments = parse_attachments(&attachments)?;
            to_js(&inner.post(space, &title, &body, attachments).await?)
        })
    }

    /// `GET /blob/{id}`: the blob's bytes, whole, after every chunk was checked against `id`
    /// (and the size against `options.size`, when given). A stream that fails the check is a
    /// `verification` error naming the offset; nothing of it is returned. The client's ticket
    /// goes with the request, so a dm's member reads its blobs.
    #[wasm_bindgen(js_name = downloadBlob, unchecked_return_type = "Promise<Uint8Array>")]
    pub fn download_blob(
        &self,
        id: &str,
        #[wasm_bindgen(unchecked_param_type = "BlobReadOptions | undefined")] options: JsValue,
    ) -> js_sys::Promise {
        let inner = self.inner.clone();
        let id = ContentId::parse(id).map_err(|e| Error::BadArgument {
            what: "blob",
            reason: e.to_string(),
        });
        promise(async move {
            let id = id?;
            let options = AppOptions(&options);
            let size = options.whole("size")?;
            let mut query = Vec::new();
            if let Some(beam) = options.string("beam")? {
                let (path, home) = beam_arg(&beam)?;
                query.push(format!("beam={path}"));
                if let Some(home) = options.string("home")?.or(home) {
                    query.push(format!("home={home}"));
                }
            }
            let init = web_sys::RequestInit::new();
            if inner.keypair().is_some() {
                let ticket = ticket(&inner).await?;
                let bearer = format!("Bearer {}", ticket.ticket);
                init.set_headers(&headers(&[("Authorization", &bearer)])?.into());
            }
            let mut url = format!("{}/blob/{id}", http_origin(&inner));
            if !query.is_empty() {
                url.push('?');
                url.push_str(&query.join("&"));
            }
            let response = fetch(&url, &init).await?;
            if !response.ok() {
                return Err(refused(response, "GET /blob").await);
            }
            let buffer = JsFuture::from(response.array_buffer().map_err(|e| transfer(&url, &e))?)
                .await
                .map_err(|e| transfer(&url, &e))?;
            let encoded = js_sys::Uint8Array::new(&buffer).to_vec();
            let mut bytes = Vec::new();
            blob::verify_stream(&id, &encoded[..], None, size, |_, piece| {
                bytes.extend_from_slice(piece);
                Ok(())
            })?;
            Ok(js_sys::Uint8Array::from(&bytes[..]).into())
        })
    }
}

/// `blob.ticket` for the client's identity.
async fn ticket(inner: &Inner) -> Result<BlobTicket, Error> {
    inner.key(BLOB_TICKET)?;
    inner
        .connection()?
        .call(BLOB_TICKET, &Params::new().text())
        .await
}

/// The node's HTTP origin: its WebSocket origin with `http` for `ws`.
fn http_origin(inner: &Inner) -> String {
    let origin = inner.origin();
    match origin.get(..4) {
        Some(scheme) if scheme.eq_ignore_ascii_case("wss:") => format!("https{}", &origin[3..]),
        _ => format!("http{}", origin.get(2..).unwrap_or_default()),
    }
}

fn headers(pairs: &[(&str, &str)]) -> Result<web_sys::Headers, Error> {
    let headers = web_sys::Headers::new().map_err(|e| Error::BadArgument {
        what: "headers",
        reason: js_text(&e),
    })?;
    for (name, value) in pairs {
        headers.set(name, value).map_err(|e| Error::BadArgument {
            what: "headers",
            reason: js_text(&e),
        })?;
    }
    Ok(headers)
}

fn transfer(url: &str, e: &JsValue) -> Error {
    Error::Connection {
        url: url.to_owned(),
        reason: js_text(e),
    }
}

/// `fetch(url, init)` in this page or worker.
async fn fetch(url: &str, init: &web_sys::RequestInit) -> Result<web_sys::Response, Error> {
    let global = js_sys::global();
    let pending = if let Some(window) = global.dyn_ref::<web_sys::Window>() {
        window.fetch_with_str_and_init(url, init)
    } else if let Some(worker) = global.dyn_ref::<web_sys::WorkerGlobalScope>() {
        worker.fetch_with_str_and_init(url, init)
    } else {
        return Err(transfer(
            url,
            &JsValue::from_str("this context has no fetch"),
        ));
    };
    let response = JsFuture::from(pending)
        .await
        .map_err(|e| transfer(url, &e))?;
    response
        .dyn_into::<web_sys::Response>()
        .map_err(|e| transfer(url, &e))
}

/// The body of `response` as text.
async fn text(response: &web_sys::Response) -> Result<String, Error> {
    let url = response.url();
    Ok(
        JsFuture::from(response.text().map_err(|e| transfer(&url, &e))?)
            .await
            .map_err(|e| transfer(&url, &e))?
            .as_string()
            .unwrap_or_default(),
    )
}

/// A refusal as an `rpc` error with the HTTP status as its code and the spec's name for it
/// (§13.7), from the body the node sent with it.
async fn refused(response: web_sys::Response, method: &'static str) -> Error {
    let status = response.status();
    let text = match text(&response).await {
        Ok(text) => text,
        Err(e) => return e,
    };
    let refusal: Option<BlobRefusal> = serde_json::from_str(&text).ok();
    Error::Rpc {
        method,
        code: i64::from(status),
        name: refusal.as_ref().map(|r| r.error.clone()),
        message: refusal.map_or_else(|| format!("the node answered {status}"), |r| r.message),
    }
}

/// The app's attachments, as the protocol reads them (strictly).
fn parse_attachments(value: &JsValue) -> Result<Vec<Attachment>, Error> {
    let bad = |reason: String| Error::BadArgument {
        what: "attachments",
        reason,
    };
    let text = js_sys::JSON::stringify(value)
        .map_err(|e| bad(js_text(&e)))?
        .as_string()
        .ok_or_else(|| bad("not JSON".into()))?;
    serde_json::from_str(&text).map_err(|e| bad(e.to_string()))
}
