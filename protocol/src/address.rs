//! Names of spaces and beams: space ids, `northstar://` URIs and beam paths.
//!
//! - Space id: `{type}/{ownerKeyId}/{uniqueId}`, e.g. `channel/z6Mk…/general`.
//! - Space URI: `northstar://{authority}/{spaceId}`, where the authority (`host[:port]`) is the
//!   sequencer node's.
//! - Beam path: `beam/{authorHash}/{beamId}`; beam URI: `northstar://{authority}/{beamPath}`,
//!   the authority being the author's home node. `authorHash` is the content id (BLAKE3, base32)
//!   of the author's DID text, so paths have a fixed shape whatever the DID method.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::did::{DID_KEY_PREFIX, Did, DidError};
use crate::id::{ContentId, ContentIdError};

/// The URI scheme of spaces and beams.
pub const URI_SCHEME: &str = "northstar://";

/// The longest unique id a space may have, in bytes.
pub const MAX_UNIQUE_ID_LEN: usize = 64;

/// The longest authority (`host[:port]`) a URI may carry, in bytes.
pub const MAX_AUTHORITY_LEN: usize = 253 + 6;

/// The ways a space id, URI or beam path can be wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    /// The space type is not `channel`, `dm` or `stream`.
    #[error("unknown space type {0:?}: expected channel, dm or stream")]
    UnknownSpaceType(String),
    /// Not three `/`-separated parts.
    #[error("malformed space id {0:?}: expected type/ownerKey/uniqueId")]
    MalformedSpaceId(String),
    /// The owner part is not a did:key's key id.
    #[error("bad owner key in space id")]
    BadOwner(#[source] DidError),
    /// The unique id is empty, too long, or has characters outside `A-Z a-z 0-9 . _ ~ -`.
    #[error("bad unique id {0:?}: 1 to 64 characters from A-Z, a-z, 0-9, '.', '_', '~', '-'")]
    BadUniqueId(String),
    /// The text does not start with `northstar://`.
    #[error("not a northstar:// URI: {0:?}")]
    NotNorthstarUri(String),
    /// The authority is empty, too long, or has characters a host and port cannot have.
    #[error("bad authority {0:?} in URI: expected host[:port]")]
    BadAuthority(String),
    /// Not `beam/{authorHash}/{beamId}`.
    #[error("malformed beam path {0:?}: expected beam/authorHash/beamId")]
    MalformedBeamPath(String),
    /// The author hash or beam id is not a content id.
    #[error("bad content id in beam path")]
    BadBeamId(#[source] ContentIdError),
}

/// The three kinds of space.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SpaceType {
    /// Public broadcast: anyone may read and join; members post.
    Channel,
    /// Private group: members only, for reading and writing; joining needs an invite.
    Dm,
    /// One writer (the owner), many readers, live.
    Stream,
}

impl SpaceType {
    /// The type's name on the wire.
    pub const fn as_str(self) -> &'static str {
        match self {
            SpaceType::Channel => "channel",
            SpaceType::Dm => "dm",
            SpaceType::Stream => "stream",
        }
    }
}

impl fmt::Display for SpaceType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SpaceType {
    type Err = AddressError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "channel" => Ok(SpaceType::Channel),
            "dm" => Ok(SpaceType::Dm),
            "stream" => Ok(SpaceType::Stream),
            other => Err(AddressError::UnknownSpaceType(other.to_owned())),
        }
    }
}

/// A space's id: its type, its owner and a unique id chosen by the owner.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpaceId {
    text: Box<str>,
    space_type: SpaceType,
    owner: Did,
}

impl SpaceId {
    /// Build a space id, checking the unique id.
    pub fn new(space_type: SpaceType, owner: &Did, unique_id: &str) -> Result<Self, AddressError> {
        check_unique_id(unique_id)?;
        let text = format!("{space_type}/{}/{unique_id}", owner.key_id());
        Ok(Self {
            text: text.into_boxed_str(),
            space_type,
            owner: owner.clone(),
        })
    }

    /// Parse `{type}/{ownerKeyId}/{uniqueId}`.
    pub fn parse(text: &str) -> Result<Self, AddressError> {
        let malformed = || AddressError::MalformedSpaceId(truncate(text));
        let mut parts = text.splitn(3, '/');
        let (Some(kind), Some(owner), Some(unique)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(malformed());
        };
        let space_type = kind.parse()?;
        let owner =
            Did::parse(&format!("{DID_KEY_PREFIX}{owner}")).map_err(AddressError::BadOwner)?;
        Self::new(space_type, &owner, unique)
    }

    /// The space's type.
    pub fn space_type(&self) -> SpaceType {
        self.space_type
    }

    /// The space's owner.
    pub fn owner(&self) -> &Did {
        &self.owner
    }

    /// The unique id part.
    pub fn unique_id(&self) -> &str {
        let skip = self.space_type.as_str().len() + 1 + self.owner.key_id().len() + 1;
        &self.text[skip..]
    }

    /// The id text.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

fn check_unique_id(unique: &str) -> Result<(), AddressError> {
    let ok = !unique.is_empty()
        && unique.len() <= MAX_UNIQUE_ID_LEN
        && unique
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'~' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(AddressError::BadUniqueId(truncate(unique)))
    }
}

fn truncate(text: &str) -> String {
    text.chars().take(80).collect()
}

/// Check a URI authority: `host[:port]`, DNS name, IPv4 or bracketed IPv6.
pub fn check_authority(authority: &str) -> Result<(), AddressError> {
    let ok = !authority.is_empty()
        && authority.len() <= MAX_AUTHORITY_LEN
        && authority
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'));
    if ok {
        Ok(())
    } else {
        Err(AddressError::BadAuthority(truncate(authority)))
    }
}

/// `origin` (`ws://` or `wss://`, then an authority) in the form in which origins are compared
/// (`spec/` §4.2.1): scheme and host in lower case, and the scheme's default port (80 for
/// `ws`, 443 for `wss`) left out. `None` if `origin` is not a scheme and an authority.
///
/// `WSS://Node.Example:443` gives `wss://node.example`; `ws://node.example:7700` stays as it is.
pub fn normal_origin(origin: &str) -> Option<String> {
    let lower = origin.to_ascii_lowercase();
    let (scheme, authority, default_port) = if let Some(rest) = lower.strip_prefix("wss://") {
        ("wss", rest, ":443")
    } else if let Some(rest) = lower.strip_prefix("ws://") {
        ("ws", rest, ":80")
    } else {
        return None;
    };
    check_authority(authority).ok()?;
    let authority = authority.strip_suffix(default_port).unwrap_or(authority);
    if authority.is_empty() || authority.ends_with(':') {
        return None;
    }
    Some(format!("{scheme}://{authority}"))
}

/// Whether two origins are the same once both are in normal form ([`normal_origin`]); false
/// if either is not an origin.
pub fn same_origin(a: &str, b: &str) -> bool {
    match (normal_origin(a), normal_origin(b)) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

/// `northstar://{authority}/{path}` split into its two parts.
fn split_uri(uri: &str) -> Result<(&str, &str), AddressError> {
    let rest = uri
        .strip_prefix(URI_SCHEME)
        .ok_or_else(|| AddressError::NotNorthstarUri(truncate(uri)))?;
    let (authority, path) = rest
        .split_once('/')
        .ok_or_else(|| AddressError::NotNorthstarUri(truncate(uri)))?;
    check_authority(authority)?;
    Ok((authority, path))
}

/// `northstar://{authority}/{spaceId}`: where a space lives and what it is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SpaceUri {
    /// The sequencer node's `host[:port]`.
    pub authority: String,
    /// The space.
    pub space: SpaceId,
}

impl SpaceUri {
    /// Parse a space URI.
    pub fn parse(uri: &str) -> Result<Self, AddressError> {
        let (authority, path) = split_uri(uri)?;
        Ok(Self {
            authority: authority.to_owned(),
            space: SpaceId::parse(path)?,
        })
    }
}

impl fmt::Display for SpaceUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{URI_SCHEME}{}/{}", self.authority, self.space)
    }
}

/// The `authorHash` of a beam path: the content id of the author's DID text.
pub fn author_hash(author: &Did) -> ContentId {
    ContentId::of(author.as_str().as_bytes())
}

/// `beam/{authorHash}/{beamId}`: where a beam is stored on its author's home node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BeamPath {
    /// [`author_hash`] of the beam's author.
    pub author_hash: ContentId,
    /// The beam's content id.
    pub beam: ContentId,
}

impl BeamPath {
    /// The path of `beam` by `author`.
    pub fn new(author: &Did, beam: ContentId) -> Self {
        Self {
            author_hash: author_hash(author),
            beam,
        }
    }

    /// Parse `beam/{authorHash}/{beamId}`.
    pub fn parse(path: &str) -> Result<Self, AddressError> {
        let malformed = || AddressError::MalformedBeamPath(truncate(path));
        let mut parts = path.split('/');
        let (Some("beam"), Some(author), Some(beam), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(malformed());
        };
        Ok(Self {
            author_hash: author.parse().map_err(AddressError::BadBeamId)?,
            beam: beam.parse().map_err(AddressError::BadBeamId)?,
        })
    }
}

impl fmt::Display for BeamPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "beam/{}/{}", self.author_hash, self.beam)
    }
}

/// `northstar://{authority}/beam/{authorHash}/{beamId}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BeamUri {
    /// The author's home node, `host[:port]`.
    pub authority: String,
    /// The beam's path there.
    pub path: BeamPath,
}

impl BeamUri {
    /// Parse a beam URI.
    pub fn parse(uri: &str) -> Result<Self, AddressError> {
        let (authority, path) = split_uri(uri)?;
        Ok(Self {
            authority: authority.to_owned(),
            path: BeamPath::parse(path)?,
        })
    }
}

impl fmt::Display for BeamUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{URI_SCHEME}{}/{}", self.authority, self.path)
    }
}

impl fmt::Display for SpaceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for SpaceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SpaceId({})", self.text)
    }
}

impl FromStr for SpaceId {
    type Err = AddressError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for SpaceId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for SpaceId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// Why a URL cannot be dialled as a node.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad node URL {url:?}: {reason}")]
pub struct BadUrl {
    /// The URL as given.
    pub url: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

/// The origin of a node URL: its scheme, `://` and authority, byte for byte as written, without
/// path, query or fragment. `ws://127.0.0.1:7700/rpc` gives `ws://127.0.0.1:7700`.
///
/// Only the schemes `ws://` and `wss://` (in any case) are accepted, and the authority must be
/// a `host[:port]` as the protocol defines it (no user info). Origins are compared in their
/// normal form (`northstar_protocol::address::normal_origin`), so case and default ports do
/// not matter.
pub fn origin_of(url: &str) -> Result<&str, BadUrl> {
    let bad = |reason| BadUrl {
        url: url.to_owned(),
        reason,
    };
    let scheme_len = ["wss://", "ws://"]
        .iter()
        .find(|scheme| {
            url.get(..scheme.len())
                .is_some_and(|s| s.eq_ignore_ascii_case(scheme))
        })
        .map(|scheme| scheme.len())
        .ok_or_else(|| bad("the scheme must be ws:// or wss://"))?;
    let rest = &url[scheme_len..];
    let authority_len = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    check_authority(&rest[..authority_len])
        .map_err(|_| bad("expected host[:port] after the scheme"))?;
    let origin_len = url.len() - rest.len() + authority_len;
    Ok(&url[..origin_len])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::Keypair;

    #[test]
    fn space_id_and_uri_round_trip() {
        let owner = Keypair::from_seed(&[3; 32]).did().clone();
        let id = SpaceId::new(SpaceType::Dm, &owner, "team-42").unwrap();
        assert_eq!(id.unique_id(), "team-42");
        assert_eq!(SpaceId::parse(id.as_str()).unwrap(), id);
        let uri = SpaceUri {
            authority: "node.example:7700".into(),
            space: id.clone(),
        };
        let text = uri.to_string();
        assert_eq!(
            text,
            format!(
                "northstar://node.example:7700/dm/{}/team-42",
                owner.key_id()
            )
        );
        assert_eq!(SpaceUri::parse(&text).unwrap(), uri);
    }

    #[test]
    fn refuses_bad_space_ids() {
        let owner = Keypair::from_seed(&[3; 32]).did().clone();
        let key = owner.key_id();
        assert!(matches!(
            SpaceId::parse(&format!("room/{key}/x")),
            Err(AddressError::UnknownSpaceType(_))
        ));
        assert!(matches!(
            SpaceId::parse(&format!("channel/{key}")),
            Err(AddressError::MalformedSpaceId(_))
        ));
        assert!(matches!(
            SpaceId::parse("channel/z6MkNOPE/x"),
            Err(AddressError::BadOwner(_))
        ));
        for bad in ["", "a/b", "a b", "é", &"x".repeat(65)] {
            assert!(
                matches!(
                    SpaceId::parse(&format!("channel/{key}/{bad}")),
                    Err(AddressError::BadUniqueId(_))
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn beam_uri_round_trips_and_refuses_bad_paths() {
        let author = Keypair::from_seed(&[4; 32]).did().clone();
        let uri = BeamUri {
            authority: "127.0.0.1:9000".into(),
            path: BeamPath::new(&author, ContentId::of(b"beam")),
        };
        assert_eq!(BeamUri::parse(&uri.to_string()).unwrap(), uri);
        assert!(matches!(
            BeamUri::parse("northstar://h/beams/x/y"),
            Err(AddressError::MalformedBeamPath(_))
        ));
        assert!(matches!(
            BeamUri::parse("https://h/beam/x/y"),
            Err(AddressError::NotNorthstarUri(_))
        ));
        assert!(matches!(
            BeamUri::parse("northstar://h o/beam/x/y"),
            Err(AddressError::BadAuthority(_))
        ));
    }

    #[test]
    fn origins_compare_without_case_and_default_ports() {
        for (given, normal) in [
            ("wss://node.example", "wss://node.example"),
            ("WSS://Node.Example:443", "wss://node.example"),
            ("wss://node.example:7700", "wss://node.example:7700"),
            ("ws://node.example:80", "ws://node.example"),
            ("ws://node.example:443", "ws://node.example:443"),
            ("wss://node.example:80", "wss://node.example:80"),
            ("ws://127.0.0.1:7700", "ws://127.0.0.1:7700"),
            ("wss://[::1]:443", "wss://[::1]"),
            ("wss://[::1]:7700", "wss://[::1]:7700"),
        ] {
            assert_eq!(normal_origin(given).as_deref(), Some(normal), "{given}");
        }
        for bad in [
            "https://node.example",
            "wss://",
            "wss://:443",
            "wss://a b",
            "node.example",
        ] {
            assert_eq!(normal_origin(bad), None, "{bad}");
        }
        assert!(same_origin("wss://Node.Example:443", "wss://node.example"));
        assert!(!same_origin("ws://node.example", "wss://node.example"));
        assert!(!same_origin(
            "wss://node.example:7700",
            "wss://node.example"
        ));
        assert!(!same_origin("wss://", "wss://"));
    }
}
