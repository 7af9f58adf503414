//! Blobs: uploading a file to the home node and reading one back, checked chunk by chunk
//! (`spec/protocol.md` §13).
//!
//! Blobs travel over plain HTTP on the node's port, with a ticket from `blob.ticket` on this
//! client's authenticated connection. A download is checked against the blob's id as it
//! arrives ([`northstar_protocol::blob::verify_stream`], on a blocking thread): the reader
//! yields only bytes that passed, and fails at the first chunk that does not, with an
//! [`std::io::Error`] of kind `InvalidData` whose inner error is the
//! [`StreamError`] naming the chunk's offset.

use std::io;
use std::ops::Range;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper::{Request, header};
use northstar_protocol::blob::{self, Attachment, BlobRefusal, BlobTicket, StreamError, Uploaded};
use northstar_protocol::rpc::{BlobApiClient, SpaceApiClient};
use northstar_protocol::wire::Beam;
use northstar_protocol::{ContentId, method};
use tokio::io::{AsyncRead, ReadBuf};
use tokio::sync::mpsc;
use tokio_util::io::{StreamReader, SyncIoBridge};

use crate::address::AsSpaceId;
use crate::client::{call, now_ms};
use crate::{Client, SdkError};
use northstar_protocol::api::BeamPosted;

/// Pieces of a transfer in flight between the network and the checking thread (each up to
/// a few 10s of KiB). Full, the side that feeds it waits.
const PIECES: usize = 16;

/// The most bytes of an upload read from its reader and sent at once (the default, 4 KiB,
/// costs a write and a frame per 4 KiB and held uploads to about 100 MiB/s).
const UPLOAD_PIECE: usize = 256 * 1024;

/// Why a blob transfer failed.
#[derive(Debug, thiserror::Error)]
pub enum BlobClientError {
    /// The RPC part (the ticket, the post) failed.
    #[error(transparent)]
    Sdk(#[from] SdkError),
    /// The node refused the request (§13.7).
    #[error("the node refused the blob request ({status}, {error}): {message}")]
    Refused {
        /// The HTTP status.
        status: u16,
        /// The error's name in the spec.
        error: String,
        /// The node's message, for people.
        message: String,
    },
    /// The HTTP exchange failed.
    #[error("blob transfer with {url} failed: {reason}")]
    Http {
        /// The node's URL.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// The stream failed its check.
    #[error(transparent)]
    Stream(#[from] StreamError),
    /// Reading the file to upload failed.
    #[error("reading the blob to upload failed")]
    Io(#[from] io::Error),
}

impl BlobClientError {
    /// The error's name in the spec, if the node refused.
    pub fn name(&self) -> Option<&str> {
        match self {
            BlobClientError::Refused { error, .. } => Some(error),
            _ => None,
        }
    }
}

/// Which blob to read and through what (§13.3.3).
#[derive(Debug, Clone, Default)]
pub struct BlobRead {
    /// The path of a beam that attaches it, by which the caller may read it; `None` for a
    /// blob of the caller's own.
    pub beam: Option<String>,
    /// The authority of that beam's home node, when it is not the node this client is on.
    pub home: Option<String>,
    /// The bytes `[a, b)` only; `None` for all of it.
    pub range: Option<Range<u64>>,
    /// The size the reader knows (an attachment's): a stream claiming another is refused.
    pub size: Option<u64>,
}

impl Client {
    /// `blob.ticket` (user): a ticket for the blob transport.
    pub async fn blob_ticket(&self) -> Result<BlobTicket, SdkError> {
        self.key(method::BLOB_TICKET)?;
        call(method::BLOB_TICKET, BlobApiClient::ticket(self.rpc())).await
    }

    /// `space.post` of a beam carrying `attachments`, whose blobs this client uploaded to its
    /// home node first (§13.5).
    pub async fn post_attached(
        &self,
        space: &impl AsSpaceId,
        title: &str,
        body: &str,
        attachments: Vec<Attachment>,
    ) -> Result<BeamPosted, SdkError> {
        let key = self.key(method::SPACE_POST)?;
        let (beam, beam_ref) = Beam::post_attached(
            key,
            space.space_id().clone(),
            &self.node_info().authority,
            title,
            body,
            attachments,
            now_ms()?,
        )?;
        beam.check_rules()?;
        beam_ref.check_rules()?;
        call(
            method::SPACE_POST,
            SpaceApiClient::post(self.rpc(), beam, beam_ref),
        )
        .await
    }

    /// The node's authority (`host[:port]`), and whether it is dialled over TLS (`wss://`,
    /// then `https://` for blobs).
    fn http_base(&self) -> Result<(String, bool), BlobClientError> {
        let url = self.url();
        let origin = crate::auth::origin_of(url).map_err(|e| BlobClientError::Http {
            url: url.to_owned(),
            reason: e.to_string(),
        })?;
        let tls = origin[..3].eq_ignore_ascii_case("wss");
        let authority = &origin[if tls { 6 } else { 5 }..];
        Ok((authority.to_owned(), tls))
    }

    async fn send(
        &self,
        request: Request<http_body_util::combinators::UnsyncBoxBody<Bytes, io::Error>>,
    ) -> Result<(hyper::Response<hyper::body::Incoming>, AbortOnDrop), BlobClientError> {
        let (authority, tls) = self.http_base()?;
        let http = |reason: String| BlobClientError::Http {
            url: authority.clone(),
            reason,
        };
        let tcp = tokio::net::TcpStream::connect(&authority)
            .await
            .map_err(|e| http(e.to_string()))?;
        // Over `wss://` the node's certificate is verified exactly as the client's WebSocket
        // verifies it (the client's `Trust`).
        let (mut sender, driver) = if tls {
            let config = self
                .trust()
                .client_config()
                .map_err(|e| http(e.to_string()))?;
            let host = authority
                .rsplit_once(':')
                .map_or(authority.as_str(), |(host, _)| host)
                .trim_start_matches('[')
                .trim_end_matches(']');
            let name = rustls_pki_types::ServerName::try_from(host.to_owned())
                .map_err(|e| http(e.to_string()))?;
            let stream = tokio_rustls::TlsConnector::from(config)
                .connect(name, tcp)
                .await
                .map_err(|e| http(e.to_string()))?;
            handshake(stream).await.map_err(|e| http(e.to_string()))?
        } else {
            handshake(tcp).await.map_err(|e| http(e.to_string()))?
        };
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| http(e.to_string()))?;
        if response.status().is_success() {
            return Ok((response, driver));
        }
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| http(e.to_string()))?
            .to_bytes();
        let refusal: BlobRefusal = serde_json::from_slice(&body).unwrap_or(BlobRefusal {
            error: String::new(),
            message: String::from_utf8_lossy(&body).into_owned(),
        });
        Err(BlobClientError::Refused {
            status,
            error: refusal.error,
            message: refusal.message,
        })
    }

    /// Upload `size` bytes read from `reader` to this client's node as a blob of
    /// `media_type` (§13.3.2). The bytes are streamed; the answer names the blob's id.
    pub async fn upload_blob<R>(
        &self,
        reader: R,
        size: u64,
        media_type: Option<&str>,
    ) -> Result<Uploaded, BlobClientError>
    where
        R: AsyncRead + Send + Unpin + 'static,
    {
        let ticket = self.blob_ticket().await?;
        let (authority, _) = self.http_base()?;
        let stream = tokio_util::io::ReaderStream::with_capacity(reader, UPLOAD_PIECE)
            .map(|piece| piece.map(Frame::data));
        let body = StreamBody::new(stream).boxed_unsync();
        let request = Request::post("/blob")
            .header(header::HOST, &authority)
            .header(header::AUTHORIZATION, format!("Bearer {}", ticket.ticket))
            .header(header::CONTENT_LENGTH, size)
            .header(
                header::CONTENT_TYPE,
                media_type.unwrap_or("application/octet-stream"),
            )
            .body(body)
            .map_err(|e| BlobClientError::Http {
                url: authority.clone(),
                reason: e.to_string(),
            })?;
        let (response, _driver) = self.send(request).await?;
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| BlobClientError::Http {
                url: authority.clone(),
                reason: e.to_string(),
            })?
            .to_bytes();
        serde_json::from_slice(&body).map_err(|e| BlobClientError::Http {
            url: authority,
            reason: format!("the upload's answer does not parse: {e}"),
        })
    }

    /// Read blob `id` (all of it, or `what.range`), checked against the id as it arrives
    /// (§13.2). The reader fails at the first chunk that does not match, with
    /// [`StreamError`] inside an `InvalidData` error.
    pub async fn download_blob(
        &self,
        id: &ContentId,
        what: BlobRead,
    ) -> Result<BlobReader, BlobClientError> {
        let ticket = self.blob_ticket().await?;
        let (authority, _) = self.http_base()?;
        let mut query = Vec::new();
        if let Some(beam) = &what.beam {
            query.push(format!("beam={beam}"));
        }
        if let Some(home) = &what.home {
            query.push(format!("home={home}"));
        }
        if let Some(range) = &what.range {
            query.push(format!("range={}-{}", range.start, range.end));
        }
        let target = if query.is_empty() {
            format!("/blob/{id}")
        } else {
            format!("/blob/{id}?{}", query.join("&"))
        };
        let request = Request::get(target)
            .header(header::HOST, &authority)
            .header(header::AUTHORIZATION, format!("Bearer {}", ticket.ticket))
            .body(
                http_body_util::Empty::new()
                    .map_err(|never| match never {})
                    .boxed_unsync(),
            )
            .map_err(|e| BlobClientError::Http {
                url: authority.clone(),
                reason: e.to_string(),
            })?;
        let (response, driver) = self.send(request).await?;
        // The blocking check reads the body itself, through a bridge to this runtime.
        let body = response
            .into_body()
            .into_data_stream()
            .map(|piece| piece.map_err(io::Error::other));
        let reader = SyncIoBridge::new(StreamReader::new(body));
        let (out_tx, out_rx) = mpsc::channel::<io::Result<Bytes>>(PIECES);
        let id = *id;
        let range = what.range.clone();
        let expected = what.size;
        let failed = out_tx.clone();
        let checker = tokio::task::spawn_blocking(move || {
            let result = blob::verify_stream(&id, reader, range, expected, |_, piece| {
                out_tx
                    .blocking_send(Ok(Bytes::copy_from_slice(piece)))
                    .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "reader dropped"))
            });
            if let Err(e) = result {
                // Gone already if the application dropped the reader.
                let _ = failed.blocking_send(Err(io::Error::new(io::ErrorKind::InvalidData, e)));
            }
        });
        Ok(BlobReader {
            rx: out_rx,
            piece: Bytes::new(),
            _tasks: (driver, checker),
        })
    }
}

/// Aborts its task when dropped.
#[derive(Debug)]
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A blob being read: only checked bytes, in order ([`Client::download_blob`]).
#[derive(Debug)]
pub struct BlobReader {
    rx: mpsc::Receiver<io::Result<Bytes>>,
    piece: Bytes,
    /// The network feeder and the connection's driver (aborted with the reader), and the
    /// checking thread (which ends when its output is dropped).
    _tasks: (AbortOnDrop, tokio::task::JoinHandle<()>),
}

impl AsyncRead for BlobReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        while self.piece.is_empty() {
            match self.rx.poll_recv(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => return Poll::Ready(Ok(())),
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(e)),
                Poll::Ready(Some(Ok(piece))) => self.piece = piece,
            }
        }
        let n = buf.remaining().min(self.piece.len());
        let piece = self.piece.split_to(n);
        buf.put_slice(&piece);
        Poll::Ready(Ok(()))
    }
}

type BlobBody = http_body_util::combinators::UnsyncBoxBody<Bytes, io::Error>;

/// An HTTP/1 exchange on `io`: the request sender, and the connection's driver, owned by
/// whoever reads the response.
async fn handshake<S>(
    io: S,
) -> Result<
    (
        hyper::client::conn::http1::SendRequest<BlobBody>,
        AbortOnDrop,
    ),
    hyper::Error,
>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let (sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(io)).await?;
    let driver = AbortOnDrop(tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "blob connection failed");
        }
    }));
    Ok((sender, driver))
}
