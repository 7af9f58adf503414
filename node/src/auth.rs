//! Connection sessions and the challenge-response handshake (`spec/protocol.md` §5).
//!
//! A [`Session`] is one WebSocket connection: its peer, the DID it proved (once), the nonces
//! issued on it and its request budget. Nonces live in their session, so a nonce answered on
//! another connection is unknown there (`nonce_foreign`), one answered twice is
//! `nonce_reused`, and nothing of a connection's nonces outlives it.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use northstar_protocol::api::ErrorCode;
use northstar_protocol::wire::{AuthChallenge, AuthResponse};
use northstar_protocol::{Did, Keypair};
use tokio_util::sync::CancellationToken;

use crate::config::{Policy, Registration};
use crate::rpc::ApiError;

/// The most nonces one connection remembers, answered or not; a new one pushes out the oldest.
const NONCES_PER_SESSION: usize = 8;

/// One connection.
#[derive(Debug)]
pub struct Session {
    /// A number unique among this node's connections.
    pub id: u64,
    /// The peer's address.
    pub peer: SocketAddr,
    did: OnceLock<Did>,
    bucket: Mutex<Bucket>,
    kill: CancellationToken,
    nonces: Mutex<VecDeque<Issued>>,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
    /// Requests refused in a row; a peer that ignores `rate_limited` is cut off.
    refused: u32,
}

impl Session {
    /// A new, unauthenticated session; `kill` drops the connection at once.
    pub fn new(id: u64, peer: SocketAddr, kill: CancellationToken, burst: u32) -> Self {
        Self {
            id,
            peer,
            did: OnceLock::new(),
            bucket: Mutex::new(Bucket {
                tokens: f64::from(burst),
                last: Instant::now(),
                refused: 0,
            }),
            kill,
            nonces: Mutex::new(VecDeque::new()),
        }
    }

    /// Drop the connection at once, with whatever it had in flight.
    pub fn kill(&self) {
        self.kill.cancel();
    }

    /// The token that [`Session::kill`] cancels.
    pub fn kill_token(&self) -> CancellationToken {
        self.kill.clone()
    }

    /// The DID this connection proved, if any.
    pub fn did(&self) -> Option<&Did> {
        self.did.get()
    }

    /// The DID this connection proved, or `auth_required`.
    pub fn user(&self) -> Result<&Did, ApiError> {
        self.did().ok_or_else(|| {
            ApiError::new(
                ErrorCode::AuthRequired,
                "this method needs an authenticated connection: call auth.challenge, then auth.respond",
            )
        })
    }

    /// Take `cost` requests from the budget: `rate` per second, at most `burst` saved up.
    pub fn take(&self, cost: u32, rate: u32, burst: u32) -> bool {
        let mut bucket = self.bucket.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let earned = now.duration_since(bucket.last).as_secs_f64() * f64::from(rate);
        bucket.tokens = (bucket.tokens + earned).min(f64::from(burst));
        bucket.last = now;
        if bucket.tokens >= f64::from(cost) {
            bucket.tokens -= f64::from(cost);
            bucket.refused = 0;
            true
        } else {
            bucket.refused = bucket.refused.saturating_add(cost);
            if bucket.refused > burst {
                tracing::debug!(
                    refused = bucket.refused,
                    "closing: the peer ignores rate_limited"
                );
                self.kill();
            }
            false
        }
    }
}

#[derive(Debug)]
struct Issued {
    nonce: String,
    answered: bool,
}

/// What the handshake needs to know about this node.
#[derive(Debug)]
pub struct Authenticator {
    key: Keypair,
    origin: String,
    ttl_ms: u64,
    registration: Registration,
}

impl Authenticator {
    /// The handshake for the node with `key`, reachable at `origin`.
    pub fn new(key: Keypair, origin: String, ttl_secs: u32, registration: Registration) -> Self {
        Self {
            key,
            origin,
            ttl_ms: u64::from(ttl_secs) * 1000,
            registration,
        }
    }

    /// Issue a challenge bound to `session`.
    pub fn challenge(&self, session: &Session, now: u64) -> Result<AuthChallenge, ApiError> {
        let challenge = AuthChallenge::issue(&self.key, &self.origin, now, now + self.ttl_ms)
            .map_err(ApiError::internal)?;
        let mut nonces = session.nonces.lock().unwrap_or_else(|p| p.into_inner());
        if nonces.len() == NONCES_PER_SESSION {
            nonces.pop_front();
        }
        nonces.push_back(Issued {
            nonce: challenge.nonce.clone(),
            answered: false,
        });
        drop(nonces);
        Ok(challenge)
    }

    /// Check a response in the order of §5.4; on success the session acts as its DID.
    pub fn respond(
        &self,
        session: &Session,
        response: &AuthResponse,
        now: u64,
    ) -> Result<Did, ApiError> {
        let challenge = &response.challenge;
        if &challenge.node != self.key.did() {
            return Err(ApiError::new(
                ErrorCode::WrongNode,
                format!(
                    "the challenge was issued by {}, not by this node",
                    challenge.node
                ),
            ));
        }
        challenge.verify().map_err(|_| {
            ApiError::new(
                ErrorCode::BadSignature,
                "the challenge's node signature does not verify",
            )
        })?;
        if challenge.origin != self.origin {
            return Err(ApiError::new(
                ErrorCode::WrongOrigin,
                format!(
                    "the challenge names origin {:?}, this node is {:?}",
                    challenge.origin, self.origin
                ),
            ));
        }
        if challenge.expires_at < now {
            return Err(ApiError::new(
                ErrorCode::ChallengeExpired,
                "the challenge expired; ask for a new one",
            ));
        }
        {
            let mut nonces = session.nonces.lock().unwrap_or_else(|p| p.into_inner());
            let entry = nonces
                .iter_mut()
                .find(|i| i.nonce == challenge.nonce)
                .ok_or_else(|| {
                    ApiError::new(
                        ErrorCode::NonceForeign,
                        "the challenge was not issued on this connection",
                    )
                })?;
            if entry.answered {
                return Err(ApiError::new(
                    ErrorCode::NonceReused,
                    "the challenge was answered already",
                ));
            }
            entry.answered = true;
        }
        response.verify().map_err(|_| {
            ApiError::new(
                ErrorCode::BadSignature,
                "the response's signature does not verify",
            )
        })?;
        let did = &response.did;
        if self.registration.policy == Policy::AllowList && !self.registration.allow.contains(did) {
            return Err(ApiError::new(
                ErrorCode::NotAllowed,
                format!("{did} is not on this node's allow-list"),
            ));
        }
        if let Some(existing) = session.did().filter(|existing| *existing != did) {
            return Err(ApiError::new(
                ErrorCode::Forbidden,
                format!("this connection is already authenticated as {existing}"),
            ));
        }
        // Two responses racing on one connection: only the first DID sticks.
        if session.did.set(did.clone()).is_err() && session.did() != Some(did) {
            return Err(ApiError::new(
                ErrorCode::Forbidden,
                "this connection is already authenticated as another DID",
            ));
        }
        Ok(did.clone())
    }
}
