//! Ed25519 key pairs, and (feature `keyfile`) key files.
//!
//! A key file is a small JSON object (see `spec/` §2.3):
//! `{"type":"northstar-ed25519-seed","did":"did:key:…","seed":"<64 hex digits>"}`. It is created
//! with mode 0600 and never overwritten; loading checks that the seed gives the DID written
//! beside it, so a damaged file is caught before it signs anything. Key files need a file
//! system, so they sit behind the `keyfile` feature (on by default); a build for the browser
//! leaves it out and keeps its keys elsewhere.

use std::fmt;

use ed25519_dalek::{Signer, SigningKey};
use zeroize::Zeroizing;

use crate::did::Did;
use crate::sign::Signature;

#[cfg(feature = "keyfile")]
mod file;
#[cfg(feature = "keyfile")]
pub use file::{KEY_FILE_TYPE, KeyFileError};

/// An Ed25519 key pair. The secret is zeroized on drop and never printed by `Debug`.
#[derive(Clone)]
pub struct Keypair {
    signing: SigningKey,
    did: Did,
}

impl Keypair {
    /// A new key pair from the operating system's random source.
    pub fn generate() -> Result<Self, getrandom::Error> {
        let mut seed = Zeroizing::new([0u8; 32]);
        getrandom::fill(seed.as_mut())?;
        Ok(Self::from_seed(&seed))
    }

    /// The key pair of a 32-byte seed (the RFC 8032 "secret key").
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        let signing = SigningKey::from_bytes(seed);
        // The same seed gives the same public key under RFC 8032 in both libraries; the second
        // one is decoded for the signature checks of spec/ §3.4.
        let checker = ed25519_zebra::VerificationKey::from(&ed25519_zebra::SigningKey::from(*seed));
        let did = Did::from_checked(signing.verifying_key().to_bytes(), checker);
        Self { signing, did }
    }

    /// The key pair's identity.
    pub fn did(&self) -> &Did {
        &self.did
    }

    /// The 32-byte seed. Handle with care: it is the whole secret.
    pub fn seed(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.signing.to_bytes())
    }

    /// Sign raw bytes. Protocol objects are signed through [`crate::sign`], which adds the
    /// domain tag; this is the primitive under it.
    pub fn sign_raw(&self, message: &[u8]) -> Signature {
        Signature::from_bytes(self.signing.sign(message).to_bytes())
    }
}

impl fmt::Debug for Keypair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keypair")
            .field("did", &self.did)
            .field("secret", &"<redacted>")
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_secret() {
        let pair = Keypair::from_seed(&[0xab; 32]);
        let shown = format!("{pair:?}");
        assert!(shown.contains("redacted"));
        assert!(!shown.to_lowercase().contains("abab"));
    }
}
