//! Where a user's key lives, and creating or loading it.
//!
//! The key file is the one named by the `NORTHSTAR_KEY` environment variable if it is set, or
//! else `key.json` in the user's Northstar config directory (`$XDG_CONFIG_HOME/northstar` or
//! `~/.config/northstar` on Linux, the platform's config directory elsewhere).

use std::path::{Path, PathBuf};

use northstar_protocol::{KeyFileError, Keypair};

/// The environment variable that names the key file.
pub const KEY_ENV: &str = "NORTHSTAR_KEY";

/// The key file's name inside the config directory.
pub const KEY_FILE_NAME: &str = "key.json";

/// Why no key could be had.
#[derive(Debug, thiserror::Error)]
pub enum KeystoreError {
    /// No path was given, `NORTHSTAR_KEY` is unset and the platform has no config directory.
    #[error("no key file location: set {KEY_ENV} or pass a path")]
    NoLocation,
    /// The operating system's random source failed.
    #[error("no randomness for a new key: {0}")]
    Random(String),
    /// Reading or writing the key file failed.
    #[error(transparent)]
    File(#[from] KeyFileError),
}

/// The key file to use: `explicit` if given, else `NORTHSTAR_KEY`, else the default location.
pub fn key_path(explicit: Option<&Path>) -> Result<PathBuf, KeystoreError> {
    if let Some(path) = explicit {
        return Ok(path.to_owned());
    }
    if let Some(path) = std::env::var_os(KEY_ENV).filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(path));
    }
    default_key_path().ok_or(KeystoreError::NoLocation)
}

/// `key.json` in the user's Northstar config directory, if the platform has one.
pub fn default_key_path() -> Option<PathBuf> {
    dirs::config_dir().map(|dir| dir.join("northstar").join(KEY_FILE_NAME))
}

/// Generate a new key and save it at `path` (never overwriting).
pub fn generate(path: &Path) -> Result<Keypair, KeystoreError> {
    let pair = ephemeral()?;
    pair.save(path)?;
    Ok(pair)
}

/// A new key that is never saved: for tests, examples and throwaway identities.
pub fn ephemeral() -> Result<Keypair, KeystoreError> {
    Keypair::generate().map_err(|e| KeystoreError::Random(e.to_string()))
}

/// Load the key at `path`.
pub fn load(path: &Path) -> Result<Keypair, KeystoreError> {
    Ok(Keypair::load(path)?)
}

/// The key to act as, if there is one: a file named by `explicit` or `NORTHSTAR_KEY` must load;
/// the file at the default location is loaded if it exists. `None` when no file was named and
/// there is none at the default location, e.g. for commands that read public data.
pub fn load_if_present(explicit: Option<&Path>) -> Result<Option<Keypair>, KeystoreError> {
    let named = explicit.is_some() || std::env::var_os(KEY_ENV).is_some_and(|p| !p.is_empty());
    if named {
        return load(&key_path(explicit)?).map(Some);
    }
    let Some(path) = default_key_path() else {
        return Ok(None);
    };
    match std::fs::symlink_metadata(&path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        // Any other outcome, including an unreadable file, is for `load` to report.
        _ => load(&path).map(Some),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_path_wins_over_everything() {
        let path = Path::new("/tmp/explicit.json");
        assert_eq!(key_path(Some(path)).unwrap(), path);
    }

    #[test]
    fn a_named_key_file_must_exist() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.json");
        assert!(matches!(
            load_if_present(Some(&missing)),
            Err(KeystoreError::File(KeyFileError::Io { .. }))
        ));
        let path = dir.path().join("k.json");
        let pair = generate(&path).unwrap();
        let loaded = load_if_present(Some(&path)).unwrap().unwrap();
        assert_eq!(loaded.did(), pair.did());
    }

    #[test]
    fn generated_key_loads_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.json");
        let pair = generate(&path).unwrap();
        assert_eq!(load(&path).unwrap().did(), pair.did());
        assert!(matches!(
            generate(&path),
            Err(KeystoreError::File(KeyFileError::Exists { .. }))
        ));
    }
}
