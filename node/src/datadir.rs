//! The data directory: private to its owner, and held by one node process at a time.
//!
//! Two nodes on one directory would share a DID and a database while each keeps its own view
//! of the logs in memory, and so corrupt each other. [`DataDir::claim`] therefore takes an
//! exclusive lock on `northstar.lock` in the directory and keeps it while the node runs; the
//! file names the holder (process id, listening address, start time), so a second node can say
//! which one is in its way. The operating system releases the lock when the holder exits, even
//! after a crash, so a stale file never blocks a restart. The file itself is never removed:
//! removing a lock file that others may have opened lets two processes each hold a lock on a
//! different file of the same name.
//!
//! The directory is created with mode 0700 (its parents too, where they are created), since it
//! holds the node key and the private logs of `dm` spaces.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// The lock file's name in the data directory.
pub const LOCK_FILE: &str = "northstar.lock";

/// Why the data directory cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    /// The directory could not be created.
    #[error("cannot create data directory {path}")]
    Create {
        /// The directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The lock file could not be opened, locked or written.
    #[error("cannot lock data directory {path}")]
    Lock {
        /// The lock file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Another node process holds the directory.
    #[error(
        "data directory {dir} is in use by another northstar node ({holder}); stop that node or start this one with another --data-dir"
    )]
    InUse {
        /// The directory.
        dir: PathBuf,
        /// What the holder wrote about itself.
        holder: String,
    },
}

/// A claimed data directory; the claim ends when this is dropped.
#[derive(Debug)]
pub struct DataDir {
    path: PathBuf,
    /// Holds the lock for as long as it is open.
    _lock: File,
}

impl DataDir {
    /// Create `path` if needed (mode 0700) and claim it for this process, which listens on
    /// `listen`; fails if another process holds it.
    pub fn claim(path: &Path, listen: &str) -> Result<Self, DataDirError> {
        create_private(path).map_err(|source| DataDirError::Create {
            path: path.to_owned(),
            source,
        })?;
        warn_if_shared(path);
        let lock_path = path.join(LOCK_FILE);
        let lock_error = |source| DataDirError::Lock {
            path: lock_path.clone(),
            source,
        };
        let mut file = open_lock_file(&lock_path).map_err(lock_error)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut holder = String::new();
                // The holder wrote its line before it started serving; an empty or unreadable
                // file still names the directory, which is what the operator needs.
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                return Err(DataDirError::InUse {
                    dir: path.to_owned(),
                    holder: if holder.is_empty() {
                        "its details are not written yet".into()
                    } else {
                        holder.to_owned()
                    },
                });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(lock_error(e)),
        }
        let line = format!(
            "pid {}, listening on {listen}, started at {} ms since the epoch",
            std::process::id(),
            crate::clock::now_ms()
        );
        file.set_len(0)
            .and_then(|()| file.seek(SeekFrom::Start(0)))
            .and_then(|_| file.write_all(line.as_bytes()))
            .and_then(|()| file.flush())
            .map_err(lock_error)?;
        Ok(Self {
            path: path.to_owned(),
            _lock: file,
        })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(unix)]
fn create_private(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
}

#[cfg(not(unix))]
fn create_private(path: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(path)
}

/// A directory the operator made readable by others is theirs to decide on; say so once.
#[cfg(unix)]
fn warn_if_shared(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path)
        && meta.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(
            dir = %path.display(),
            mode = format_args!("{:o}", meta.permissions().mode() & 0o777),
            "the data directory is open to other users; it holds the node key and private logs (chmod 700 it)"
        );
    }
}

#[cfg(not(unix))]
fn warn_if_shared(_path: &Path) {}

fn open_lock_file(path: &Path) -> std::io::Result<File> {
    let mut options = OpenOptions::new();
    options.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_claim_is_refused_and_names_the_first() {
        let dir = tempfile::tempdir().unwrap();
        let first = DataDir::claim(dir.path(), "127.0.0.1:1").unwrap();
        let second = DataDir::claim(dir.path(), "127.0.0.1:2").unwrap_err();
        let message = second.to_string();
        assert!(matches!(second, DataDirError::InUse { .. }), "{message}");
        assert!(message.contains("127.0.0.1:1"), "{message}");
        assert!(
            message.contains(&format!("pid {}", std::process::id())),
            "{message}"
        );
        drop(first);
        // Released with its holder: the directory can be claimed again.
        DataDir::claim(dir.path(), "127.0.0.1:3").unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn creates_the_directory_private() {
        use std::os::unix::fs::PermissionsExt;
        let parent = tempfile::tempdir().unwrap();
        let path = parent.path().join("a").join("data");
        let _claim = DataDir::claim(&path, "x").unwrap();
        for dir in [parent.path().join("a"), path.clone()] {
            let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o700, "{}", dir.display());
        }
        let lock = std::fs::metadata(path.join(LOCK_FILE)).unwrap();
        assert_eq!(lock.permissions().mode() & 0o777, 0o600);
    }
}
