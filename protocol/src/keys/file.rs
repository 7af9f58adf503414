//! Key files: a key pair saved to and loaded from a file (`spec/` §2.3).

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::Keypair;

/// The `type` field of a key file.
pub const KEY_FILE_TYPE: &str = "northstar-ed25519-seed";

/// A key file larger than this is not a key file.
const MAX_KEY_FILE_LEN: u64 = 4096;

/// The ways reading or writing a key file fails.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// The file exists already; key files are never overwritten.
    #[error("{path} already exists; refusing to overwrite a key file")]
    Exists {
        /// The file.
        path: PathBuf,
    },
    /// Reading or writing failed.
    #[error("cannot access key file {path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Other users may read the file (Unix): the key may have leaked, so it is not used.
    #[error("{path} is readable by other users (mode {mode:o}); run: chmod 600 {path}")]
    Permissive {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The file is not a Northstar key file.
    #[error("{path} is not a Northstar key file: {reason}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    #[serde(rename = "type")]
    kind: String,
    did: String,
    seed: Zeroizing<String>,
}

impl Keypair {
    /// Write the key to a new file with mode 0600. Refuses to overwrite an existing file.
    /// Creates missing parent directories (mode 0700 on Unix).
    pub fn save(&self, path: &Path) -> Result<(), KeyFileError> {
        let io = |source| KeyFileError::Io {
            path: path.to_owned(),
            source,
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            create_private_dir(parent).map_err(io)?;
        }
        let file = KeyFile {
            kind: KEY_FILE_TYPE.into(),
            did: self.did.to_string(),
            seed: Zeroizing::new(hex::encode(self.seed().as_ref())),
        };
        let text =
            Zeroizing::new(
                serde_json::to_string(&file).map_err(|e| KeyFileError::Malformed {
                    path: path.to_owned(),
                    reason: e.to_string(),
                })?,
            );
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut out = options.open(path).map_err(|source| {
            if source.kind() == std::io::ErrorKind::AlreadyExists {
                KeyFileError::Exists {
                    path: path.to_owned(),
                }
            } else {
                io(source)
            }
        })?;
        out.write_all(text.as_bytes()).map_err(io)?;
        out.write_all(b"\n").map_err(io)?;
        out.sync_all().map_err(io)
    }

    /// Read a key file written by [`Keypair::save`].
    pub fn load(path: &Path) -> Result<Self, KeyFileError> {
        let io = |source| KeyFileError::Io {
            path: path.to_owned(),
            source,
        };
        let malformed = |reason: &str| KeyFileError::Malformed {
            path: path.to_owned(),
            reason: reason.to_owned(),
        };
        let meta = std::fs::metadata(path).map_err(io)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(KeyFileError::Permissive {
                    path: path.to_owned(),
                    mode,
                });
            }
        }
        if meta.len() > MAX_KEY_FILE_LEN {
            return Err(malformed("too large"));
        }
        let text = Zeroizing::new(std::fs::read_to_string(path).map_err(io)?);
        let file: KeyFile = serde_json::from_str(&text).map_err(|e| malformed(&e.to_string()))?;
        if file.kind != KEY_FILE_TYPE {
            return Err(malformed(&format!(
                "type is {:?}, expected {KEY_FILE_TYPE:?}",
                file.kind
            )));
        }
        let mut seed = Zeroizing::new([0u8; 32]);
        hex::decode_to_slice(file.seed.as_bytes(), seed.as_mut())
            .map_err(|_| malformed("seed is not 64 hex digits"))?;
        let pair = Self::from_seed(&seed);
        if pair.did.as_str() != file.did {
            return Err(malformed(
                "the seed does not give the DID written in the file",
            ));
        }
        Ok(pair)
    }
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_then_load_gives_the_same_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/key.json");
        let pair = Keypair::generate().unwrap();
        pair.save(&path).unwrap();
        let loaded = Keypair::load(&path).unwrap();
        assert_eq!(loaded.did(), pair.did());
        assert_eq!(*loaded.seed(), *pair.seed());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn refuses_to_overwrite_a_key_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key.json");
        Keypair::generate().unwrap().save(&path).unwrap();
        let before = std::fs::read(&path).unwrap();
        let err = Keypair::generate().unwrap().save(&path).unwrap_err();
        assert!(matches!(err, KeyFileError::Exists { .. }), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), before);
    }

    #[cfg(unix)]
    #[test]
    fn refuses_a_key_file_others_can_read() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key.json");
        Keypair::generate().unwrap().save(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = Keypair::load(&path).unwrap_err();
        assert!(
            matches!(err, KeyFileError::Permissive { mode: 0o644, .. }),
            "{err}"
        );
    }

    #[test]
    fn refuses_a_key_file_whose_did_does_not_match_its_seed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key.json");
        let a = Keypair::from_seed(&[1; 32]);
        let b = Keypair::from_seed(&[2; 32]);
        let text = format!(
            r#"{{"type":"{KEY_FILE_TYPE}","did":"{}","seed":"{}"}}"#,
            b.did(),
            hex::encode(a.seed().as_ref())
        );
        write_private(&path, &text);
        let err = Keypair::load(&path).unwrap_err();
        assert!(err.to_string().contains("does not give the DID"), "{err}");
    }

    fn write_private(path: &Path, text: &str) {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        options
            .open(path)
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }
}
