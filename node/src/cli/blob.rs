//! `northstar blob …`, and the uploads of `beam post --attach` (spec §13).
//!
//! `blob get` writes the blob's bytes to stdout, or to `--out`; then it prints `blob` and
//! `bytes` (JSON keys, a contract).

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};

use anyhow::Context as _;
use clap::Subcommand;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use northstar_sdk::protocol::ContentId;
use northstar_sdk::protocol::blob::{Attachment, BlobUri};
use northstar_sdk::{BlobRead, Client};
use serde_json::json;
use tokio::io::{AsyncRead, AsyncWriteExt, ReadBuf};

use super::{Global, Output};

#[derive(Debug, Subcommand)]
pub(super) enum BlobCommand {
    /// Download a blob, checking every chunk against its id; writes it to stdout.
    Get {
        /// A blob URI (`northstar://host/beam/{authorHash}/{beamId}/{blobId}`), or the bare id
        /// of a blob of your own.
        blob: String,
        /// Only the bytes `A` to `B` (`A-B`, B excluded).
        #[arg(long)]
        range: Option<String>,
        /// Write to this file instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

pub(super) async fn run(command: BlobCommand, global: &Global, out: &Output) -> anyhow::Result<()> {
    match command {
        BlobCommand::Get {
            blob,
            range,
            out: file,
        } => {
            let (id, mut what) = match BlobUri::parse(&blob) {
                Some(uri) => (
                    uri.blob,
                    BlobRead {
                        beam: Some(uri.beam),
                        home: Some(uri.authority),
                        ..BlobRead::default()
                    },
                ),
                None => (
                    ContentId::parse(&blob)
                        .with_context(|| format!("{blob:?} is neither a blob URI nor a blob id"))?,
                    BlobRead::default(),
                ),
            };
            if let Some(range) = range {
                let (a, b) = range
                    .split_once('-')
                    .and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)))
                    .filter(|(a, b): &(u64, u64)| a <= b)
                    .with_context(|| format!("--range {range:?} must be A-B with A <= B"))?;
                what.range = Some(a..b);
            }
            let client = global.connect_as_user().await?;
            let mut reader = client.download_blob(&id, what).await?;
            let bytes = match &file {
                Some(path) => {
                    let mut f = tokio::fs::File::create(path).await?;
                    let n = tokio::io::copy(&mut reader, &mut f).await?;
                    f.flush().await?;
                    n
                }
                None => {
                    let mut stdout = tokio::io::stdout();
                    let n = tokio::io::copy(&mut reader, &mut stdout).await?;
                    stdout.flush().await?;
                    n
                }
            };
            if file.is_some() {
                out.print(json!({"blob": id.to_string(), "bytes": bytes}), || {
                    format!("{bytes} bytes of {id}, checked")
                })?;
            }
            Ok(())
        }
    }
}

/// Upload each file as a blob of the caller's, with a progress bar on a terminal; the
/// attachments that name them.
pub(super) async fn upload_all(
    client: &Client,
    files: &[PathBuf],
) -> anyhow::Result<Vec<Attachment>> {
    let mut attachments = Vec::with_capacity(files.len());
    for path in files {
        attachments.push(upload(client, path).await?);
    }
    Ok(attachments)
}

async fn upload(client: &Client, path: &Path) -> anyhow::Result<Attachment> {
    let file = tokio::fs::File::open(path)
        .await
        .with_context(|| format!("cannot open {}", path.display()))?;
    let size = file.metadata().await?.len();
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .with_context(|| format!("{} has no file name in UTF-8", path.display()))?
        .to_owned();
    let media_type = media_type(path);
    let bar = std::io::IsTerminal::is_terminal(&std::io::stderr()).then(|| {
        let bar = ProgressBar::with_draw_target(Some(size), ProgressDrawTarget::stderr());
        if let Ok(style) = ProgressStyle::with_template(
            "{msg} [{bar:40}] {bytes}/{total_bytes} ({bytes_per_sec}, {eta})",
        ) {
            bar.set_style(style);
        }
        bar.set_message(name.clone());
        bar
    });
    let reader = Counted {
        inner: file,
        bar: bar.clone(),
    };
    let uploaded = client.upload_blob(reader, size, Some(media_type)).await?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    } else {
        eprintln!(
            "uploaded {name}: {} bytes, blob {}",
            uploaded.size, uploaded.blob
        );
    }
    Ok(Attachment {
        blob: uploaded.blob,
        size: uploaded.size,
        media_type: media_type.to_owned(),
        name,
    })
}

/// A media type from a file's extension; `application/octet-stream` when unknown.
fn media_type(path: &Path) -> &'static str {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    match ext.as_str() {
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "svg" => "image/svg+xml",
        "mp4" => "video/mp4",
        "webm" => "video/webm",
        "mp3" => "audio/mpeg",
        "ogg" => "audio/ogg",
        "pdf" => "application/pdf",
        "txt" => "text/plain",
        "md" => "text/markdown",
        "json" => "application/json",
        "zip" => "application/zip",
        _ => "application/octet-stream",
    }
}

/// A reader that moves a progress bar by what it reads.
struct Counted<R> {
    inner: R,
    bar: Option<ProgressBar>,
}

impl<R: AsyncRead + Unpin> AsyncRead for Counted<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Some(bar) = &self.bar {
            bar.inc((buf.filled().len() - before) as u64);
        }
        polled
    }
}
