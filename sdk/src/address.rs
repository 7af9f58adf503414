//! What the client's methods accept as a space or a beam, and reading either form from text.
//!
//! A space is named by its id or by its URI (which adds the sequencer's authority); a beam by
//! its path or its URI (which adds the author's home node). Methods take either, so an app can
//! pass along whatever it was given.

use northstar_protocol::address::{AddressError, BeamPath, BeamUri, SpaceId, SpaceUri, URI_SCHEME};
use northstar_protocol::api::SpaceInfo;

/// Something that names a space.
pub trait AsSpaceId {
    /// The space's id.
    fn space_id(&self) -> &SpaceId;

    /// The sequencer's authority, when the name carries it (a URI does).
    fn sequencer_authority(&self) -> Option<&str> {
        None
    }
}

impl AsSpaceId for SpaceId {
    fn space_id(&self) -> &SpaceId {
        self
    }
}

impl AsSpaceId for SpaceUri {
    fn space_id(&self) -> &SpaceId {
        &self.space
    }

    fn sequencer_authority(&self) -> Option<&str> {
        Some(&self.authority)
    }
}

impl AsSpaceId for SpaceInfo {
    fn space_id(&self) -> &SpaceId {
        &self.id
    }
}

/// Something that names a beam.
pub trait AsBeamPath {
    /// The beam's path on its home node.
    fn beam_path(&self) -> BeamPath;

    /// The author's home node's authority, when the name carries it (a URI does).
    fn home_authority(&self) -> Option<&str> {
        None
    }
}

impl AsBeamPath for BeamPath {
    fn beam_path(&self) -> BeamPath {
        *self
    }
}

impl AsBeamPath for BeamUri {
    fn beam_path(&self) -> BeamPath {
        self.path
    }

    fn home_authority(&self) -> Option<&str> {
        Some(&self.authority)
    }
}

/// A space given as text: a `northstar://` URI or a bare space id.
pub fn parse_space(text: &str) -> Result<SpaceId, AddressError> {
    if text.starts_with(URI_SCHEME) {
        Ok(SpaceUri::parse(text)?.space)
    } else {
        SpaceId::parse(text)
    }
}

/// A beam given as text: a `northstar://` URI or a bare path `beam/{authorHash}/{beamId}`.
pub fn parse_beam(text: &str) -> Result<BeamPath, AddressError> {
    if text.starts_with(URI_SCHEME) {
        Ok(BeamUri::parse(text)?.path)
    } else {
        BeamPath::parse(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use northstar_protocol::Keypair;
    use northstar_protocol::address::SpaceType;
    use northstar_protocol::id::ContentId;

    #[test]
    fn a_space_is_read_from_its_id_or_its_uri() {
        let owner = Keypair::from_seed(&[1; 32]);
        let id = SpaceId::new(SpaceType::Channel, owner.did(), "general").unwrap();
        let uri = SpaceUri {
            authority: "127.0.0.1:7700".into(),
            space: id.clone(),
        };
        assert_eq!(parse_space(id.as_str()).unwrap(), id);
        assert_eq!(parse_space(&uri.to_string()).unwrap(), id);
        assert_eq!(uri.space_id(), &id);
        assert!(parse_space("northstar://h").is_err());
        assert!(parse_space("general").is_err());
    }

    #[test]
    fn a_beam_is_read_from_its_path_or_its_uri() {
        let author = Keypair::from_seed(&[1; 32]);
        let path = BeamPath::new(author.did(), ContentId::of(b"x"));
        let uri = BeamUri {
            authority: "node.example".into(),
            path,
        };
        assert_eq!(parse_beam(&path.to_string()).unwrap(), path);
        assert_eq!(parse_beam(&uri.to_string()).unwrap(), path);
        assert_eq!(uri.beam_path(), path);
        assert!(parse_beam("beam/x/y").is_err());
    }
}
