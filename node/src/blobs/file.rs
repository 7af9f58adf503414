//! The blocking side of blobs: file writes with hashing, and encoding from files.
//!
//! Both run on blocking threads and meet async code at a bounded channel: an upload's bytes
//! come in pieces, are written to a temporary file and hashed into the outboard in one pass;
//! a download's response is encoded one chunk group at a time and sent out in pieces. Neither
//! ever holds more than a chunk group and the channel's pieces in memory.

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::ops::Range;
use std::path::PathBuf;

use bao_tree::io::outboard::PostOrderOutboard;
use bytes::Bytes;
use northstar_protocol::ContentId;
use northstar_protocol::blob;
use tokio::sync::mpsc;
use tokio_util::task::TaskTracker;

/// Pieces of a response waiting to be sent. Full, the encoding thread waits for the socket.
const RESPONSE_QUEUE: usize = 8;

/// How many bytes of a response are gathered into one piece.
const RESPONSE_PIECE: usize = 64 * 1024;

/// Write a blob of `size` bytes to `data`, its outboard to `outboard`, then move both into `dir`
/// under the blob's id.
pub(super) struct Store {
    pub(super) data: PathBuf,
    pub(super) outboard: PathBuf,
    pub(super) dir: PathBuf,
    pub(super) size: u64,
}

impl Store {
    pub(super) fn run(self, rx: mpsc::Receiver<Bytes>) -> io::Result<ContentId> {
        let result = self.write(rx);
        if result.is_err() {
            // Nothing of a failed upload stays; a file that was never created is fine.
            let _ = std::fs::remove_file(&self.data);
            let _ = std::fs::remove_file(&self.outboard);
        }
        result
    }

    fn write(&self, rx: mpsc::Receiver<Bytes>) -> io::Result<ContentId> {
        let data = File::create(&self.data)?;
        let mut tee = Tee {
            rx,
            piece: Bytes::new(),
            out: BufWriter::with_capacity(blob::GROUP_BYTES as usize, data),
            read: 0,
        };
        let obao = File::create(&self.outboard)?;
        let mut obao = BufWriter::new(obao);
        let root =
            bao_tree::io::sync::outboard_post_order(&mut tee, blob::tree(self.size), &mut obao)
                .map_err(|e| match e.kind() {
                    io::ErrorKind::UnexpectedEof => io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("the body ended after {} of {} bytes", tee.read, self.size),
                    ),
                    _ => e,
                })?;
        // The announced size must be the whole body.
        if !tee.piece.is_empty() || tee.rx.blocking_recv().is_some() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("the body is longer than its {} bytes", self.size),
            ));
        }
        let data = tee.out.into_inner().map_err(|e| e.into_error())?;
        data.sync_all()?;
        let obao = obao.into_inner().map_err(|e| e.into_error())?;
        obao.sync_all()?;
        let id = ContentId::from_bytes(*root.as_bytes());
        let name = id.to_string();
        std::fs::rename(&self.outboard, self.dir.join(format!("{name}.obao")))?;
        std::fs::rename(&self.data, self.dir.join(&name))?;
        File::open(&self.dir)?.sync_all()?;
        Ok(id)
    }
}

/// A reader over the pieces of a channel that copies what it reads into `out`.
struct Tee {
    rx: mpsc::Receiver<Bytes>,
    piece: Bytes,
    out: BufWriter<File>,
    read: u64,
}

impl Read for Tee {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.piece.is_empty() {
            match self.rx.blocking_recv() {
                Some(piece) => self.piece = piece,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.piece.len());
        let piece = self.piece.split_to(n);
        buf[..n].copy_from_slice(&piece);
        self.out.write_all(&piece)?;
        self.read += n as u64;
        Ok(n)
    }
}

/// A response being encoded on a blocking thread: its pieces, in order, then the end; an
/// error ends it early (a reader sees a truncated stream and refuses it, §13.2).
#[derive(Debug)]
pub struct Encoded {
    /// The pieces of the response.
    pub rx: mpsc::Receiver<io::Result<Bytes>>,
}

pub(super) fn encode(
    tasks: &TaskTracker,
    data: PathBuf,
    outboard: PathBuf,
    id: ContentId,
    size: u64,
    range: Option<Range<u64>>,
) -> Encoded {
    let (tx, rx) = mpsc::channel(RESPONSE_QUEUE);
    tasks.spawn_blocking(move || {
        let mut out = Pieces {
            tx: tx.clone(),
            buf: Vec::with_capacity(RESPONSE_PIECE),
        };
        let result = (|| -> io::Result<()> {
            let data = File::open(&data)?;
            let outboard = PostOrderOutboard {
                root: blake3::Hash::from_bytes(*id.as_bytes()),
                tree: blob::tree(size),
                data: File::open(&outboard)?,
            };
            out.write_all(&blob::size_header(size))?;
            // Not re-hashed here: every reader checks every chunk (§13.2), and a node that
            // fetches keeps only what passed, so a second hash on the way out would only
            // halve the node's throughput.
            bao_tree::io::sync::encode_ranges(
                &data,
                &outboard,
                &blob::response_ranges(size, range),
                &mut out,
            )
            .map_err(io::Error::from)?;
            out.flush()
        })();
        if let Err(e) = result {
            // The reader may be gone already (then nobody needs to know).
            if e.kind() == io::ErrorKind::BrokenPipe {
                tracing::debug!(blob = %id, "blob reader went away");
            } else {
                tracing::warn!(blob = %id, error = %crate::report::Causes(&e), "blob encoding stopped");
            }
            let _ = tx.blocking_send(Err(e));
        }
    });
    Encoded { rx }
}

/// A writer that sends what it is given, in pieces of [`RESPONSE_PIECE`], on a channel.
struct Pieces {
    tx: mpsc::Sender<io::Result<Bytes>>,
    buf: Vec<u8>,
}

impl Write for Pieces {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= RESPONSE_PIECE {
            self.flush()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let piece = Bytes::from(std::mem::replace(
            &mut self.buf,
            Vec::with_capacity(RESPONSE_PIECE),
        ));
        self.tx
            .blocking_send(Ok(piece))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the reader went away"))
    }
}
