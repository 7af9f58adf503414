//! The admin socket: created safely, served to the node's own user and root only.
//!
//! Creation: the data directory is private already (mode 0700), and the socket is moreover
//! bound under a temporary name, given mode 0600, and only then renamed to `admin.sock`, so
//! there is no moment at which `admin.sock` exists with looser permissions. A socket file left
//! by a crashed node (nothing answers on it) is replaced; one that answers belongs to a running
//! node and the start is refused. On a clean stop the file is removed (if it is still ours).
//!
//! Each accepted connection's peer credentials (`SO_PEERCRED`) are checked as well: a peer
//! whose uid is neither the node's nor root's is refused with an error line and logged.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::rpc::Api;

/// The socket's file name in the data directory.
pub const SOCKET_FILE: &str = "admin.sock";

/// The longest request line, newline included; a longer one is answered with an error and the
/// connection closed (the rest of the line cannot be told from the next request).
pub const MAX_LINE: usize = 64 * 1024;

/// The most admin connections served at once; more wait in the kernel's backlog.
const MAX_CONNECTIONS: usize = 8;

/// How long a connection may stay silent between requests before it is closed, so forgotten
/// clients do not hold the [`MAX_CONNECTIONS`] places.
const IDLE: std::time::Duration = std::time::Duration::from_secs(300);

/// Why the admin socket could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// A node answers on the socket already.
    #[error(
        "another node answers on {path}: one node runs on a data directory at a time; stop the other one first"
    )]
    InUse {
        /// The socket.
        path: PathBuf,
    },
    /// The socket could not be created.
    #[error("cannot create the admin socket {path}")]
    Create {
        /// The socket.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// The bound admin socket.
#[derive(Debug)]
pub struct Socket {
    listener: UnixListener,
    path: PathBuf,
    /// The node's own uid (the socket file's owner).
    uid: u32,
    /// The socket file's identity, so only our own file is removed at the end.
    inode: (u64, u64),
}

impl Socket {
    /// Create `{data_dir}/admin.sock`, mode 0600.
    pub fn bind(data_dir: &Path) -> Result<Self, AdminError> {
        let path = data_dir.join(SOCKET_FILE);
        let create = |source| AdminError::Create {
            path: path.clone(),
            source,
        };
        if std::fs::symlink_metadata(&path).is_ok() {
            if std::os::unix::net::UnixStream::connect(&path).is_ok() {
                return Err(AdminError::InUse { path });
            }
            tracing::info!(path = %path.display(), "replacing a stale admin socket");
            std::fs::remove_file(&path).map_err(create)?;
        }
        let temporary = data_dir.join(format!(".{SOCKET_FILE}.{}", std::process::id()));
        match std::fs::remove_file(&temporary) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(create(e)),
            _ => {}
        }
        let listener = UnixListener::bind(&temporary).map_err(create)?;
        let named = std::fs::set_permissions(&temporary, std::fs::Permissions::from_mode(0o600))
            .and_then(|()| std::fs::rename(&temporary, &path));
        if let Err(e) = named {
            // Best effort: the error below is what matters.
            let _ = std::fs::remove_file(&temporary);
            return Err(create(e));
        }
        let meta = std::fs::metadata(&path).map_err(create)?;
        Ok(Self {
            listener,
            path,
            uid: meta.uid(),
            inode: (meta.dev(), meta.ino()),
        })
    }

    /// Where the socket is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Serve until `shutdown`, then remove the socket file.
    pub async fn serve(self, api: Arc<Api>, shutdown: CancellationToken) {
        let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        let connections = TaskTracker::new();
        tracing::info!(path = %self.path.display(), "admin socket open");
        loop {
            let permit = tokio::select! {
                () = shutdown.cancelled() => break,
                permit = slots.clone().acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_) => break,
                },
            };
            let stream = tokio::select! {
                () = shutdown.cancelled() => break,
                accepted = self.listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        tracing::warn!(error = %crate::report::Causes(&e), "admin accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let uid = match stream.peer_cred() {
                Ok(cred) => cred.uid(),
                Err(e) => {
                    tracing::warn!(error = %crate::report::Causes(&e), "admin connection without peer credentials; refused");
                    continue;
                }
            };
            if uid != self.uid && uid != 0 {
                tracing::warn!(
                    uid,
                    node_uid = self.uid,
                    "admin connection refused: only the node's own user and root may use the admin socket"
                );
                refuse(stream).await;
                continue;
            }
            let api = api.clone();
            let stop = shutdown.clone();
            let span = tracing::debug_span!("admin", uid);
            connections.spawn(
                async move {
                    serve_connection(stream, &api, stop).await;
                    drop(permit);
                }
                .instrument(span),
            );
        }
        connections.close();
        connections.wait().await;
        self.remove();
    }

    fn remove(&self) {
        let ours =
            std::fs::symlink_metadata(&self.path).is_ok_and(|m| (m.dev(), m.ino()) == self.inode);
        if !ours {
            return;
        }
        if let Err(e) = std::fs::remove_file(&self.path) {
            tracing::warn!(error = %crate::report::Causes(&e), "cannot remove the admin socket");
        }
    }
}

/// Tell a peer that may not use the socket so, and hang up.
async fn refuse(mut stream: UnixStream) {
    let line = super::reply(
        &serde_json::Value::Null,
        Err(super::Failure::from(crate::rpc::ApiError::new(
            northstar_protocol::api::ErrorCode::Forbidden,
            "only the node's own user and root may use the admin socket",
        ))),
    );
    // The peer may be gone already; it was refused either way.
    let _ = stream.write_all(format!("{line}\n").as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// Answer request lines until the peer closes, sends a line too long, or the node stops.
async fn serve_connection(stream: UnixStream, api: &Api, shutdown: CancellationToken) {
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    let mut line = Vec::new();
    loop {
        line.clear();
        let limit = u64::try_from(MAX_LINE).unwrap_or(u64::MAX);
        let mut limited = (&mut read).take(limit);
        let got = tokio::select! {
            () = shutdown.cancelled() => return,
            got = tokio::time::timeout(IDLE, limited.read_until(b'\n', &mut line)) => match got {
                Ok(got) => got,
                Err(_) => {
                    tracing::debug!("admin connection idle; closed");
                    return;
                }
            },
        };
        match got {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) => {
                tracing::debug!(error = %crate::report::Causes(&e), "admin connection read failed");
                return;
            }
        }
        let ended = line.last() == Some(&b'\n');
        if !ended && line.len() >= MAX_LINE {
            let answer = super::reply(
                &serde_json::Value::Null,
                Err(super::Failure::rpc(
                    super::INVALID_REQUEST,
                    format!("a request line may hold at most {MAX_LINE} bytes"),
                )),
            );
            let _ = write.write_all(format!("{answer}\n").as_bytes()).await;
            return;
        }
        let request = line.strip_suffix(b"\n").unwrap_or(&line);
        if request.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let answer = super::answer(api, request).await;
        if write
            .write_all(format!("{answer}\n").as_bytes())
            .await
            .is_err()
        {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_live_socket_is_refused_and_a_stale_one_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let first = Socket::bind(dir.path()).unwrap();
        let mode = std::fs::metadata(first.path())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        // Something answers on it: a second node must not take it over.
        match Socket::bind(dir.path()) {
            Err(AdminError::InUse { path }) => assert_eq!(path, first.path()),
            other => panic!("{other:?}"),
        }
        // The holder died without removing its file: the next one replaces it.
        drop(first);
        let second = Socket::bind(dir.path()).unwrap();
        UnixStream::connect(second.path()).await.unwrap();
        // No temporary name is left behind.
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, [SOCKET_FILE]);
    }
}
