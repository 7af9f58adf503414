//! Where the node's data lives: [`Storage`], decided by the scheme of `storage_url`, and the
//! URL with its password hidden for logs and errors.

use std::fmt;
use std::path::{Path, PathBuf};

/// The SQLite file's name in the data directory when `storage_url` is empty.
pub const DEFAULT_SQLITE_FILE: &str = "northstar.db";

/// Which database the node uses.
#[derive(Clone, PartialEq, Eq)]
pub enum Storage {
    /// An embedded SQLite file: nothing to install.
    Sqlite {
        /// The database file (created on first start).
        path: PathBuf,
    },
    /// A database on a PostgreSQL server.
    Postgres {
        /// The URL as configured, password included: show it only through [`redact`] (the
        /// `Display` and `Debug` of [`Storage`] do).
        url: String,
    },
}

/// Why `storage_url` names no database this node can use.
#[derive(Debug, thiserror::Error)]
pub enum StorageUrlError {
    /// Neither SQLite nor PostgreSQL.
    #[error(
        "unknown scheme in {url:?}: leave it empty (or sqlite://PATH) for SQLite, or use \
         postgres://USER:PASSWORD@HOST:PORT/DATABASE for PostgreSQL"
    )]
    UnknownScheme {
        /// The URL, password hidden.
        url: String,
    },
    /// `sqlite://` with no file.
    #[error(
        "{url:?} names no file: use sqlite://PATH, e.g. sqlite:///var/lib/northstar/northstar.db"
    )]
    NoSqlitePath {
        /// The URL.
        url: String,
    },
    /// A `postgres://` URL that does not parse.
    #[error(
        "{url:?} is not a PostgreSQL URL ({reason}): use postgres://USER:PASSWORD@HOST:PORT/DATABASE"
    )]
    Postgres {
        /// The URL, password hidden.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl Storage {
    /// The storage `url` names: empty is SQLite at `{data_dir}/northstar.db`, `sqlite://PATH`
    /// an SQLite file, `postgres://…` (or `postgresql://…`) a PostgreSQL database.
    pub fn from_url(url: &str, data_dir: &Path) -> Result<Self, StorageUrlError> {
        let url = url.trim();
        if url.is_empty() {
            return Ok(Storage::Sqlite {
                path: data_dir.join(DEFAULT_SQLITE_FILE),
            });
        }
        match url.split_once(':') {
            Some(("sqlite", rest)) => {
                let path = rest.strip_prefix("//").unwrap_or(rest);
                if path.is_empty() {
                    return Err(StorageUrlError::NoSqlitePath { url: url.into() });
                }
                Ok(Storage::Sqlite { path: path.into() })
            }
            Some(("postgres" | "postgresql", rest)) if !rest.starts_with("//") => {
                Err(StorageUrlError::Postgres {
                    url: redact(url),
                    reason: "no // after the scheme".into(),
                })
            }
            Some(("postgres" | "postgresql", _)) => {
                super::postgres::check_url(url).map_err(|reason| StorageUrlError::Postgres {
                    url: redact(url),
                    reason,
                })?;
                Ok(Storage::Postgres { url: url.into() })
            }
            _ => Err(StorageUrlError::UnknownScheme { url: redact(url) }),
        }
    }
}

impl fmt::Display for Storage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Storage::Sqlite { path } => write!(f, "SQLite {}", path.display()),
            Storage::Postgres { url } => write!(f, "PostgreSQL {}", redact(url)),
        }
    }
}

impl fmt::Debug for Storage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// `url` with any password replaced by `***`: the one in the user information
/// (`user:password@host`) and a `password=` query parameter.
pub fn redact(url: &str) -> String {
    let (head, query) = match url.split_once('?') {
        Some((head, query)) => (head, Some(query)),
        None => (url, None),
    };
    let mut out = match head.split_once("://") {
        // Everything before the last `@` is user information, even if a password holds an
        // unescaped `/`: better to hide too much than too little.
        Some((scheme, rest)) => match rest.rsplit_once('@') {
            Some((userinfo, host)) => match userinfo.split_once(':') {
                Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
                None => head.to_owned(),
            },
            None => head.to_owned(),
        },
        // Not a URL with an authority: whatever stands between the scheme and the last `@`
        // may be a password.
        None => match (head.split_once(':'), head.rsplit_once('@')) {
            (Some((scheme, _)), Some((_, host))) => format!("{scheme}:***@{host}"),
            _ => head.to_owned(),
        },
    };
    if let Some(query) = query {
        out.push('?');
        let pairs: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((key, _)) if key.eq_ignore_ascii_case("password") => format!("{key}=***"),
                _ => pair.to_owned(),
            })
            .collect();
        out.push_str(&pairs.join("&"));
    }
    out
}

/// `url` naming database `name` on the same server, as the same user.
pub(super) fn with_database(url: &str, name: &str) -> String {
    let (head, query) = match url.split_once('?') {
        Some((head, query)) => (head, format!("?{query}")),
        None => (url, String::new()),
    };
    let (scheme, rest) = head.split_once("://").unwrap_or(("postgres", head));
    // The path starts at the first `/` after the user information.
    let after_userinfo = rest.rfind('@').map_or(0, |at| at + 1);
    let authority_end = rest[after_userinfo..]
        .find('/')
        .map_or(rest.len(), |slash| after_userinfo + slash);
    format!("{scheme}://{}/{name}{query}", &rest[..authority_end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_postgres_url_without_an_authority_is_refused_and_never_shows_its_password() {
        let url = "postgres:x//user:s3cr3t@host/db";
        assert!(!redact(url).contains("s3cr3t"), "{}", redact(url));
        let err = Storage::from_url(url, Path::new("/d"))
            .unwrap_err()
            .to_string();
        assert!(!err.contains("s3cr3t"), "{err}");
        assert!(err.contains("postgres://"), "{err}");
    }

    #[test]
    fn redacts_passwords_in_user_information_and_query() {
        assert_eq!(
            redact("postgres://node:s3cret@db.example:5432/northstar"),
            "postgres://node:***@db.example:5432/northstar"
        );
        assert_eq!(
            redact("postgres://node:pa/ss@db/n?sslmode=disable&password=x"),
            "postgres://node:***@db/n?sslmode=disable&password=***"
        );
        assert_eq!(redact("postgres://node@db/n"), "postgres://node@db/n");
        assert_eq!(redact("sqlite:///var/n.db"), "sqlite:///var/n.db");
    }

    #[test]
    fn storage_is_chosen_by_scheme() {
        let dir = Path::new("/data");
        assert_eq!(
            Storage::from_url("", dir).unwrap(),
            Storage::Sqlite {
                path: "/data/northstar.db".into()
            }
        );
        assert_eq!(
            Storage::from_url("sqlite:///var/lib/n.db", dir).unwrap(),
            Storage::Sqlite {
                path: "/var/lib/n.db".into()
            }
        );
        assert_eq!(
            Storage::from_url("sqlite://n.db", dir).unwrap(),
            Storage::Sqlite {
                path: "n.db".into()
            }
        );
        let pg = "postgresql://u:p@127.0.0.1:5432/n";
        assert_eq!(
            Storage::from_url(pg, dir).unwrap(),
            Storage::Postgres { url: pg.into() }
        );
        let socket = "postgres://northstar@localhost/northstar?host=/run/postgresql";
        assert!(matches!(
            Storage::from_url(socket, dir),
            Ok(Storage::Postgres { .. })
        ));
        let shown = format!("{:?}", Storage::from_url(pg, dir).unwrap());
        assert!(!shown.contains(":p@"), "{shown}");
    }

    #[test]
    fn refuses_unknown_schemes_and_bad_urls_without_showing_the_password() {
        let dir = Path::new("/data");
        let err = Storage::from_url("mysql://u:hunter2@h/db", dir).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("unknown scheme"), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
        let err = Storage::from_url("postgres://u:hunter2@h:notaport/db", dir).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("not a PostgreSQL URL"), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
        assert!(Storage::from_url("sqlite://", dir).is_err());
    }

    #[test]
    fn names_another_database_on_the_same_server() {
        assert_eq!(
            with_database("postgres://u:p@h:5432/postgres?sslmode=disable", "t1"),
            "postgres://u:p@h:5432/t1?sslmode=disable"
        );
        assert_eq!(with_database("postgres://u@h", "t2"), "postgres://u@h/t2");
    }
}
