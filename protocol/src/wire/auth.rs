//! The auth handshake's objects (`spec/` §5).
//!
//! A node issues an [`AuthChallenge`] signed with its node key; the client answers with an
//! [`AuthResponse`] that embeds the whole challenge and is signed with the client's key. The
//! node checks its own signature, the origin, the expiry, and that the nonce is one it issued on
//! this connection and has not seen answered; those checks need the node's state and live there.

use serde::{Deserialize, Serialize};

use crate::address::{check_authority, same_origin};
use crate::did::Did;
use crate::keys::Keypair;
use crate::sign::{self, Domain, Signature, SignatureError};
use crate::wire::{RuleError, check_len, signed_object};

/// A node's challenge, signed by the node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthChallenge {
    /// The node's DID (the signer).
    pub node: Did,
    /// The node's public origin, e.g. `wss://node.example` or `ws://127.0.0.1:7700`: what the
    /// client dialled, if no one is in between.
    pub origin: String,
    /// A fresh random value, multibase base64url of 32 bytes.
    pub nonce: String,
    /// When the node issued it, milliseconds since the Unix epoch.
    pub issued_at: u64,
    /// After this instant (ms since the epoch) the node refuses a response.
    pub expires_at: u64,
    /// The node's signature.
    pub sig: Signature,
}
signed_object!(AuthChallenge, Domain::AuthChallenge);

impl AuthChallenge {
    /// A challenge with a fresh nonce, signed by `node_key`.
    pub fn issue(
        node_key: &Keypair,
        origin: &str,
        issued_at: u64,
        expires_at: u64,
    ) -> Result<Self, ChallengeError> {
        let mut nonce = [0u8; 32];
        getrandom::fill(&mut nonce).map_err(|e| ChallengeError::Random(e.to_string()))?;
        let mut challenge = Self {
            node: node_key.did().clone(),
            origin: origin.to_owned(),
            nonce: multibase::encode(multibase::Base::Base64Url, nonce),
            issued_at,
            expires_at,
            sig: Signature::UNSIGNED,
        };
        let node = challenge.node.clone();
        sign::sign(&mut challenge, node_key, &node)?;
        Ok(challenge)
    }

    /// Check the node's signature.
    pub fn verify(&self) -> Result<(), SignatureError> {
        sign::verify(self, &self.node)
    }

    /// Check the shape of the origin (`ws://` or `wss://` and an authority, no path), the
    /// nonce (at most [`MAX_NONCE_LEN`] bytes) and that it expires after it was issued.
    pub fn check_rules(&self) -> Result<(), RuleError> {
        let authority = self
            .origin
            .strip_prefix("wss://")
            .or_else(|| self.origin.strip_prefix("ws://"))
            .ok_or(RuleError::BadOrigin)?;
        check_authority(authority)?;
        check_len("nonce", &self.nonce, MAX_NONCE_LEN)?;
        if self.expires_at <= self.issued_at {
            return Err(RuleError::BadExpiry {
                issued_at: self.issued_at,
                expires_at: self.expires_at,
            });
        }
        Ok(())
    }
}

/// The longest nonce a challenge may carry, in bytes (a fresh one is 44).
pub const MAX_NONCE_LEN: usize = 64;

/// Why a challenge could not be issued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChallengeError {
    /// The operating system's random source failed.
    #[error("no randomness for a nonce: {0}")]
    Random(String),
    /// Signing failed.
    #[error(transparent)]
    Sign(#[from] SignatureError),
}

/// Why a client refuses to answer a challenge (`spec/protocol.md` §5.2).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChallengeRefused {
    /// The challenge breaks a rule of its kind (origin or nonce shape).
    #[error("the node's challenge is malformed")]
    Malformed(#[source] RuleError),
    /// The challenge's signature does not verify under the DID it names.
    #[error("the node's challenge is not validly signed by {node}")]
    BadSignature {
        /// The DID the challenge names.
        node: String,
        /// Why verification failed.
        #[source]
        source: SignatureError,
    },
    /// The challenge names another origin than the one dialled: answering it could let the node
    /// replay the signature at that other origin.
    #[error(
        "the node's challenge names origin {challenge:?} but the client dialled {dialled:?}; \
         refusing to sign"
    )]
    WrongOrigin {
        /// The origin of the URL dialled.
        dialled: String,
        /// The origin the challenge names.
        challenge: String,
    },
    /// The challenge comes from another node than the one expected.
    #[error("the challenge comes from node {actual}, expected {expected}")]
    WrongNode {
        /// The node expected.
        expected: String,
        /// The node the challenge names.
        actual: String,
    },
    /// The challenge has expired by the client's clock.
    #[error("the node's challenge expired at {expires_at} ms, the client's clock says {now} ms")]
    Expired {
        /// When it expired, ms since the Unix epoch.
        expires_at: u64,
        /// The client's time, ms since the Unix epoch.
        now: u64,
    },
}

impl AuthChallenge {
    /// The client's checks of §5.2 before it signs anything, in order: the challenge's shape,
    /// the node's signature, the origin against the one dialled (compared in normal form), the
    /// node against the one expected, and the expiry against `now` (ms since the Unix epoch).
    /// Every client (the Rust SDK, the browser SDK) answers only after these.
    pub fn check_as_client(
        &self,
        dialled_origin: &str,
        expected_node: &Did,
        now: u64,
    ) -> Result<(), ChallengeRefused> {
        self.check_rules().map_err(ChallengeRefused::Malformed)?;
        self.verify()
            .map_err(|source| ChallengeRefused::BadSignature {
                node: self.node.to_string(),
                source,
            })?;
        if !same_origin(&self.origin, dialled_origin) {
            return Err(ChallengeRefused::WrongOrigin {
                dialled: dialled_origin.to_owned(),
                challenge: self.origin.clone(),
            });
        }
        if self.node != *expected_node {
            return Err(ChallengeRefused::WrongNode {
                expected: expected_node.to_string(),
                actual: self.node.to_string(),
            });
        }
        if self.expires_at <= now {
            return Err(ChallengeRefused::Expired {
                expires_at: self.expires_at,
                now,
            });
        }
        Ok(())
    }
}

/// A client's answer to a challenge, signed by the client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthResponse {
    /// The DID the client proves (the signer).
    pub did: Did,
    /// The challenge, exactly as the node issued it, with the node's signature.
    pub challenge: AuthChallenge,
    /// The client's signature.
    pub sig: Signature,
}
signed_object!(AuthResponse, Domain::AuthResponse);

impl AuthResponse {
    /// Answer `challenge` as `key`.
    pub fn answer(key: &Keypair, challenge: AuthChallenge) -> Result<Self, SignatureError> {
        let mut response = Self {
            did: key.did().clone(),
            challenge,
            sig: Signature::UNSIGNED,
        };
        let did = response.did.clone();
        sign::sign(&mut response, key, &did)?;
        Ok(response)
    }

    /// Check both signatures: the client's over the response and the node's over the embedded
    /// challenge.
    pub fn verify(&self) -> Result<(), SignatureError> {
        self.challenge.verify()?;
        self.verify_client()
    }

    /// Check the client's signature over the response only: for the node that issued the
    /// challenge and has checked it already.
    pub fn verify_client(&self) -> Result<(), SignatureError> {
        sign::verify(self, &self.did)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: u64 = 1_767_225_600_000;

    #[test]
    fn refuses_a_challenge_that_expires_before_it_is_issued() {
        let node = Keypair::from_seed(&[3; 32]);
        let fine = AuthChallenge::issue(&node, "ws://node.example", T, T + 1).unwrap();
        assert_eq!(fine.check_rules(), Ok(()));
        for expires_at in [T, T - 1, 0] {
            let bad = AuthChallenge::issue(&node, "ws://node.example", T, expires_at).unwrap();
            let e = bad.check_rules().unwrap_err();
            assert_eq!(e.code(), "bad_expiry", "{expires_at}: {e}");
        }
    }
}
