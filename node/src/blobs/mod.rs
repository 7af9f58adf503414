//! The blobs service: files attached to beams (`spec/protocol.md` §13).
//!
//! It owns the `blobs` and `blob_refs` tables and the directory `{data_dir}/blobs/`, where a
//! blob `{id}` lives beside its post-order outboard `{id}.obao`; uploads are written under
//! `tmp/` and renamed into place once durable, so a blob file is either whole or absent.
//!
//! # Layout
//! - this file: tickets, quotas, storing a stream, opening a blob, the sweep.
//! - `file`: the blocking side: writing a stream while hashing it and building its outboard,
//!   and encoding a stored blob into a response, each on a blocking thread joined to async
//!   code by a bounded channel.
//! - `http`: the `/blob` routes of the node's HTTP server, and fetching from other nodes.
//!
//! Uses [`crate::store`] for its tables; [`crate::rpc`] and [`crate::server`] use it.

mod file;
pub mod http;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use northstar_protocol::blob::BlobTicket;
use northstar_protocol::wire::Beam;
use northstar_protocol::{ContentId, Did, Keypair};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Blobs as BlobConfig;
use crate::store::{BlobRow, Store, StoreError};

pub use file::Encoded;

/// How long a ticket is accepted, ms.
const TICKET_TTL_MS: u64 = 10 * 60 * 1000;

/// Pieces of an upload waiting for the writing thread. Full, the reading of the request body
/// waits (backpressure on the sender); each piece is what hyper read, at most a few 10s of KiB.
const UPLOAD_QUEUE: usize = 16;

/// Why a blob operation failed, each with the name the spec gives it (§13.7).
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// Malformed input.
    #[error("{0}")]
    BadRequest(String),
    /// A missing, foreign or expired ticket.
    #[error("{0}")]
    BadTicket(&'static str),
    /// The caller may not read it.
    #[error("{0}")]
    NotMember(String),
    /// Neither held nor fetchable.
    #[error("{0}")]
    NotFound(String),
    /// An upload without a length.
    #[error("an upload needs Content-Length")]
    LengthRequired,
    /// Larger than `max_size`.
    #[error("the blob is {size} bytes; this node stores blobs of at most {max}")]
    TooLarge {
        /// The upload's size.
        size: u64,
        /// The limit.
        max: u64,
    },
    /// Past the owner's quota.
    #[error(
        "storing {size} more bytes would take you to {total} bytes, over your quota of {quota}"
    )]
    Quota {
        /// The upload's size.
        size: u64,
        /// What the owner would hold.
        total: u64,
        /// The limit.
        quota: u64,
    },
    /// The other node could not be reached or sent a bad stream.
    #[error("{0}")]
    Peer(String),
    /// A file operation failed.
    #[error("blob file operation failed")]
    Io(#[from] std::io::Error),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl BlobError {
    /// The error's name in the spec (§13.7).
    pub fn name(&self) -> &'static str {
        match self {
            BlobError::BadRequest(_) => "bad_request",
            BlobError::BadTicket(_) => "bad_ticket",
            BlobError::NotMember(_) => "not_member",
            BlobError::NotFound(_) => "blob_not_found",
            BlobError::LengthRequired => "length_required",
            BlobError::TooLarge { .. } => "blob_too_large",
            BlobError::Quota { .. } => "quota_exceeded",
            BlobError::Peer(_) => "peer_unreachable",
            BlobError::Io(_) | BlobError::Store(_) => "internal",
        }
    }

    /// The HTTP status of the error (§13.7).
    pub fn status(&self) -> u16 {
        match self {
            BlobError::BadRequest(_) => 400,
            BlobError::BadTicket(_) => 401,
            BlobError::NotMember(_) => 403,
            BlobError::NotFound(_) => 404,
            BlobError::LengthRequired => 411,
            BlobError::TooLarge { .. } => 413,
            BlobError::Quota { .. } => 507,
            BlobError::Peer(_) => 502,
            BlobError::Io(_) | BlobError::Store(_) => 500,
        }
    }
}

/// The blobs service.
#[derive(Debug)]
pub struct Blobs {
    dir: PathBuf,
    config: BlobConfig,
    store: Store,
    /// The key of the tickets' MACs, derived from the node's key: tickets need no table and
    /// outlive a restart.
    ticket_key: [u8; 32],
    /// Names temporary files apart.
    next_tmp: AtomicU64,
    /// The blocking threads that write and read blob files.
    tasks: TaskTracker,
    /// Bytes of uploads admitted but not yet recorded, by owner: counted against the quota so
    /// that concurrent uploads cannot together pass it.
    in_flight: Mutex<HashMap<Did, u64>>,
    /// Held while an admission reads what an owner stores, and while an admitted upload moves
    /// from in flight to stored, so that no admission sees the bytes in neither place.
    admission: tokio::sync::Mutex<()>,
    /// Blobs being fetched from another node to be kept here: one fetch writes a copy, and a
    /// reader meanwhile is relayed, so readers cannot make the node write a blob many times.
    fetching: Mutex<std::collections::HashSet<ContentId>>,
}

/// The claim of the one fetch that keeps a copy of a blob, given up on drop.
#[derive(Debug)]
pub struct Fetching {
    blobs: std::sync::Arc<Blobs>,
    id: ContentId,
}

impl Drop for Fetching {
    fn drop(&mut self) {
        self.blobs
            .fetching
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&self.id);
    }
}

/// An admitted upload's share of its owner's quota, held until the blob is recorded (or the
/// upload fails) and given back on drop.
#[derive(Debug)]
pub struct Admitted<'a> {
    blobs: &'a Blobs,
    owner: Did,
    size: u64,
}

impl Admitted<'_> {
    /// Record the stored blob for its owner and give the share back; whether it was new.
    pub async fn record(self, id: &ContentId, media_type: &str) -> Result<bool, BlobError> {
        let blobs = self.blobs;
        let admission = blobs.admission.lock().await;
        let new = blobs
            .record(id, self.size, &self.owner, media_type, false)
            .await;
        // The share goes back before the next admission may read what the owner stores.
        drop(self);
        drop(admission);
        new
    }
}

impl Drop for Admitted<'_> {
    fn drop(&mut self) {
        let mut in_flight = self
            .blobs
            .in_flight
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(bytes) = in_flight.get_mut(&self.owner) {
            *bytes = bytes.saturating_sub(self.size);
            if *bytes == 0 {
                in_flight.remove(&self.owner);
            }
        }
    }
}

impl Blobs {
    /// The service over `{data_dir}/blobs`, created if needed.
    pub fn new(
        data_dir: &Path,
        config: BlobConfig,
        store: Store,
        key: &Keypair,
        tasks: TaskTracker,
    ) -> std::io::Result<Self> {
        let dir = data_dir.join("blobs");
        std::fs::create_dir_all(dir.join("tmp"))?;
        // Leftovers of uploads a crash interrupted.
        for entry in std::fs::read_dir(dir.join("tmp"))?.flatten() {
            let _ = std::fs::remove_file(entry.path()); // Best effort: a stale temp file only costs space.
        }
        Ok(Self {
            dir,
            config,
            store,
            ticket_key: blake3::derive_key("northstar 2026-12 blob tickets", key.seed().as_ref()),
            next_tmp: AtomicU64::new(0),
            tasks,
            in_flight: Mutex::default(),
            admission: tokio::sync::Mutex::default(),
            fetching: Mutex::default(),
        })
    }

    /// A ticket for `did` at `now` (ms): `{expires}.{did}.{mac}`.
    pub fn ticket(&self, did: &Did, now: u64) -> BlobTicket {
        let expires_at = now + TICKET_TTL_MS;
        let claim = format!("{expires_at}.{did}");
        let mac = blake3::keyed_hash(&self.ticket_key, claim.as_bytes());
        BlobTicket {
            ticket: format!("{claim}.{}", mac.to_hex()),
            expires_at,
        }
    }

    /// The DID a ticket names, if this node issued it and it has not expired at `now`.
    pub fn check_ticket(&self, ticket: &str, now: u64) -> Result<Did, BlobError> {
        let bad = BlobError::BadTicket("the ticket was not issued by this node");
        let (claim, mac) = ticket.rsplit_once('.').ok_or(bad)?;
        let expected = blake3::keyed_hash(&self.ticket_key, claim.as_bytes());
        // blake3::Hash compares in constant time.
        if blake3::Hash::from_hex(mac).ok() != Some(expected) {
            return Err(BlobError::BadTicket(
                "the ticket was not issued by this node",
            ));
        }
        let (expires, did) = claim
            .split_once('.')
            .ok_or(BlobError::BadTicket("malformed ticket"))?;
        let expires: u64 = expires
            .parse()
            .map_err(|_| BlobError::BadTicket("malformed ticket"))?;
        if expires <= now {
            return Err(BlobError::BadTicket(
                "the ticket expired; ask blob.ticket for another",
            ));
        }
        Did::parse(did).map_err(|_| BlobError::BadTicket("malformed ticket"))
    }

    fn data_path(&self, id: &ContentId) -> PathBuf {
        self.dir.join(id.to_string())
    }

    fn tmp_path(&self) -> PathBuf {
        let n = self.next_tmp.fetch_add(1, Ordering::Relaxed);
        self.dir
            .join("tmp")
            .join(format!("{}-{n}", crate::clock::now_ms()))
    }

    /// Refuse an upload of `size` bytes by `owner` that breaks the size limit or the quota,
    /// counting the owner's uploads still in flight; keep the returned share until the blob is
    /// recorded.
    pub async fn admit(&self, owner: &Did, size: u64) -> Result<Admitted<'_>, BlobError> {
        if size > self.config.max_size {
            return Err(BlobError::TooLarge {
                size,
                max: self.config.max_size,
            });
        }
        let _admission = self.admission.lock().await;
        let held = self.store.owned_blob_bytes(owner.as_str()).await?;
        let mut in_flight = self
            .in_flight
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let pending = in_flight.get(owner).copied().unwrap_or(0);
        let total = held.saturating_add(pending).saturating_add(size);
        if total > self.config.quota {
            return Err(BlobError::Quota {
                size,
                total,
                quota: self.config.quota,
            });
        }
        *in_flight.entry(owner.clone()).or_default() += size;
        Ok(Admitted {
            blobs: self,
            owner: owner.clone(),
            size,
        })
    }

    /// Start storing a blob of `size` bytes: the caller sends its bytes, in order, on the
    /// returned sender and then drops it; [`Storing::finish`] waits for the blob to be durable.
    pub fn store_stream(&self, size: u64) -> (mpsc::Sender<Bytes>, Storing) {
        let (tx, rx) = mpsc::channel(UPLOAD_QUEUE);
        let job = file::Store {
            data: self.tmp_path(),
            outboard: self.tmp_path(),
            dir: self.dir.clone(),
            size,
        };
        let handle = self.tasks.spawn_blocking(move || job.run(rx));
        (tx, Storing { handle })
    }

    /// Claim the fetch of `id` that keeps a copy here; `None` while another fetch holds it.
    pub fn claim_fetch(self: &std::sync::Arc<Self>, id: ContentId) -> Option<Fetching> {
        let mut fetching = self
            .fetching
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        fetching.insert(id).then(|| Fetching {
            blobs: self.clone(),
            id,
        })
    }

    /// Record a stored blob; whether it was new.
    pub async fn record(
        &self,
        id: &ContentId,
        size: u64,
        owner: &Did,
        media_type: &str,
        cached: bool,
    ) -> Result<bool, BlobError> {
        let row = BlobRow {
            id: id.to_string(),
            size,
            owner: owner.to_string(),
            media_type: media_type.to_owned(),
            created_at: crate::clock::now_ms(),
            cached,
        };
        Ok(self.store.insert_blob(&row).await?)
    }

    /// The row of a blob held here, if its file is here too.
    pub async fn held(&self, id: &ContentId) -> Result<Option<BlobRow>, BlobError> {
        let Some(row) = self.store.blob(&id.to_string()).await? else {
            return Ok(None);
        };
        Ok(self.data_path(id).exists().then_some(row))
    }

    /// Encode the bytes `range` (all when `None`) of a blob held here, as a response body
    /// streamed from a blocking thread (§13.2).
    pub fn encode(
        &self,
        id: &ContentId,
        size: u64,
        range: Option<std::ops::Range<u64>>,
    ) -> Encoded {
        let data = self.data_path(id);
        let mut outboard = data.clone().into_os_string();
        outboard.push(".obao");
        file::encode(&self.tasks, data, outboard.into(), *id, size, range)
    }

    /// Check, before a post, that this node holds every blob `beam` attaches, owned by its
    /// author, with the attachment's size (§13.5).
    pub async fn check_attached(&self, beam: &Beam) -> Result<(), String> {
        for attachment in &beam.attachments {
            let row = self
                .held(&attachment.blob)
                .await
                .map_err(|e| format!("cannot read blob {}: {e}", attachment.blob))?;
            match row {
                Some(row) if row.owner == beam.author.as_str() && row.size == attachment.size => {}
                Some(row) if row.owner != beam.author.as_str() => {
                    return Err(format!("blob {} is not the author's", attachment.blob));
                }
                Some(row) => {
                    return Err(format!(
                        "blob {} is {} bytes, not {}",
                        attachment.blob, row.size, attachment.size
                    ));
                }
                None => {
                    return Err(format!(
                        "blob {} is not on this node: upload it first",
                        attachment.blob
                    ));
                }
            }
        }
        Ok(())
    }

    /// Record that the beam at `path` (stored or cached here) attaches `blob`.
    pub async fn attach(&self, blob: &ContentId, path: &str) -> Result<(), BlobError> {
        Ok(self.store.add_blob_ref(&blob.to_string(), path).await?)
    }

    /// Whether the beam at `path` is recorded as attaching `blob`.
    pub async fn attached(&self, blob: &ContentId, path: &str) -> Result<bool, BlobError> {
        Ok(self.store.blob_ref(&blob.to_string(), path).await?)
    }

    /// One sweep at `now` (ms): forget the refs of beams that went, then delete cached copies
    /// no beam attaches and own blobs released for longer than the grace period. Returns how
    /// many blobs were deleted.
    pub async fn sweep(&self, now: u64) -> Result<usize, BlobError> {
        self.store.drop_stale_blob_refs(now).await?;
        let cutoff = now.saturating_sub(self.config.grace_secs.saturating_mul(1000));
        let doomed = self.store.doomed_blobs(cutoff).await?;
        for id in &doomed {
            let data = self.dir.join(id);
            let outboard = self.dir.join(format!("{id}.obao"));
            for path in [data, outboard] {
                match tokio::fs::remove_file(&path).await {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e.into()),
                }
            }
            self.store.delete_blob(id).await?;
            tracing::debug!(blob = %id, "blob deleted");
        }
        Ok(doomed.len())
    }

    /// Sweep every `sweep_secs` until `stop`, on `tasks`.
    pub fn spawn_sweeper(
        self: &std::sync::Arc<Self>,
        tasks: &TaskTracker,
        stop: CancellationToken,
    ) {
        let this = self.clone();
        let every = Duration::from_secs(self.config.sweep_secs.max(1));
        tasks.spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = stop.cancelled() => break,
                    _ = tick.tick() => {}
                }
                if let Err(e) = this.sweep(crate::clock::now_ms()).await {
                    tracing::warn!(error = %crate::report::Causes(&e), "blob sweep failed");
                }
            }
        });
    }
}

/// An upload being written: see [`Blobs::store_stream`].
#[derive(Debug)]
pub struct Storing {
    handle: tokio::task::JoinHandle<std::io::Result<ContentId>>,
}

impl Storing {
    /// Wait until the blob is durable in place; its id. Fails if fewer or more bytes than
    /// announced were sent.
    pub async fn finish(self) -> Result<ContentId, BlobError> {
        match self.handle.await {
            Ok(result) => Ok(result?),
            Err(e) => Err(BlobError::Io(std::io::Error::other(e))),
        }
    }
}
