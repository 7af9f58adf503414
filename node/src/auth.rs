//! Connection sessions and the challenge-response handshake (`spec/protocol.md` §5).
//!
//! A [`Session`] is one WebSocket connection: its peer, the DID it proved (once), the nonces
//! issued on it and its request budgets ([`Budgets`]: its own, and the ones it shares with the
//! other connections of its address and of its DID). Nonces live in their session, so a nonce answered on
//! another connection is unknown there (`nonce_foreign`), one answered twice is
//! `nonce_reused`, and nothing of a connection's nonces outlives it.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use northstar_protocol::api::ErrorCode;
use northstar_protocol::wire::{AuthChallenge, AuthResponse};
use northstar_protocol::{Did, Keypair};
use tokio_util::sync::CancellationToken;

use crate::access::{Access, Denied};
use crate::config::Limits;

/// Why authentication refused a request, with the protocol's error code for it (the RPC layer
/// turns it into an error object).
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// A client fault: the code and the message the caller sees.
    #[error("{message}")]
    Refused {
        /// The protocol's code.
        code: ErrorCode,
        /// What went wrong.
        message: String,
    },
    /// The node could not sign a challenge.
    #[error("cannot issue a challenge")]
    Internal(#[source] northstar_protocol::wire::auth::ChallengeError),
}

impl AuthError {
    fn refused(code: ErrorCode, message: impl Into<String>) -> Self {
        AuthError::Refused {
            code,
            message: message.into(),
        }
    }
}

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
    budgets: Arc<Budgets>,
    own: Mutex<Own>,
    /// The budget of the peer's address; `None` while that budget is off.
    address: Option<Lease<IpAddr>>,
    /// The budget of the DID, taken at the first request after authentication; holds `None`
    /// while that budget is off.
    identity: OnceLock<Option<Lease<Did>>>,
    kill: CancellationToken,
    nonces: Mutex<VecDeque<Issued>>,
}

/// The connection's own budget, and the refusals that count against it.
#[derive(Debug)]
struct Own {
    bucket: Bucket,
    /// Refusals not yet forgiven: each refusal adds its cost, each whole `1 / rate` seconds
    /// between two refusals takes one off. A peer that keeps sending without waiting after
    /// `rate_limited` (a pipelined flood) is cut off once this passes the burst, whether or not
    /// a request of its slips through meanwhile on a refilled token.
    refused: u32,
    last_refusal: Instant,
}

/// Which budget a refused request found empty (`spec/protocol.md` §6.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spent {
    /// The connection's own.
    Connection,
    /// The one shared by the connections of its address.
    Address,
    /// The one shared by the connections authenticated as its DID.
    Identity,
}

impl Spent {
    /// What the `rate_limited` answer says.
    pub fn message(self) -> &'static str {
        match self {
            Spent::Connection => "too many requests on this connection; slow down",
            Spent::Address => "too many requests from this address; slow down",
            Spent::Identity => "too many requests from this DID's connections; slow down",
        }
    }
}

impl Session {
    /// A new, unauthenticated session from `peer` that pays its requests from `budgets`;
    /// `kill` drops the connection at once.
    pub fn new(id: u64, peer: SocketAddr, kill: CancellationToken, budgets: Arc<Budgets>) -> Self {
        let now = Instant::now();
        let address = Shared::lease(&budgets.per_address, address_key(peer.ip()), now);
        Self {
            id,
            peer,
            did: OnceLock::new(),
            own: Mutex::new(Own {
                bucket: Bucket::full(budgets.rate, budgets.burst, now),
                refused: 0,
                last_refusal: now,
            }),
            address,
            identity: OnceLock::new(),
            budgets,
            kill,
            nonces: Mutex::new(VecDeque::new()),
        }
    }

    /// Drop the connection at once, with whatever it had in flight.
    pub fn kill(&self) {
        self.kill.cancel();
    }

    /// Whether the connection is to be dropped.
    pub fn killed(&self) -> bool {
        self.kill.is_cancelled()
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
    pub fn user(&self) -> Result<&Did, AuthError> {
        self.did().ok_or_else(|| {
            AuthError::refused(
                ErrorCode::AuthRequired,
                "this method needs an authenticated connection: call auth.challenge, then auth.respond",
            )
        })
    }

    /// Take `cost` requests from every budget that applies (the connection's, its address's
    /// and, once authenticated, its DID's), or from none. A refusal that brings the
    /// connection's unforgiven refusals past `burst` kills the connection.
    pub fn take(&self, cost: u32) -> Result<(), Spent> {
        let now = Instant::now();
        let identity = self.identity_lease(now);
        // Always locked in this order: own, address, identity.
        let mut own = lock(&self.own);
        let mut address = self.address.as_ref().map(|l| lock(&l.bucket));
        let mut identity = identity.map(|l| lock(&l.bucket));
        let cost = f64::from(cost);
        let spent = if !own.bucket.has(cost, now) {
            Some(Spent::Connection)
        } else if address.as_mut().is_some_and(|b| !b.has(cost, now)) {
            Some(Spent::Address)
        } else if identity.as_mut().is_some_and(|b| !b.has(cost, now)) {
            Some(Spent::Identity)
        } else {
            None
        };
        let Some(spent) = spent else {
            own.bucket.spend(cost);
            for bucket in address.iter_mut().chain(identity.iter_mut()) {
                bucket.spend(cost);
            }
            return Ok(());
        };
        let quiet = now
            .saturating_duration_since(own.last_refusal)
            .as_secs_f64();
        // Whole periods only, so refusals closer together than `1 / rate` never earn any back.
        let forgiven = (quiet * f64::from(self.budgets.rate))
            .floor()
            .min(f64::from(u32::MAX));
        own.last_refusal = now;
        // `cost` came from a u32; `forgiven` is a whole number within u32.
        own.refused = own
            .refused
            .saturating_sub(forgiven as u32)
            .saturating_add(cost as u32);
        if own.refused > self.budgets.burst {
            tracing::debug!(
                refused = own.refused,
                "dropping: the peer ignores rate_limited"
            );
            self.kill();
        }
        Err(spent)
    }

    /// The DID's budget, leased at the first request after authentication.
    fn identity_lease(&self, now: Instant) -> Option<&Lease<Did>> {
        let did = self.did()?;
        self.identity
            .get_or_init(|| Shared::lease(&self.budgets.per_identity, did.clone(), now))
            .as_ref()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic elsewhere cannot leave a bucket in a state worse than a wrong count.
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// The address a connection counts against, for the connection limits and the address's
/// budget: IPv4 as it is, IPv6 by its /64, which one host usually holds whole, and an
/// IPv4-mapped IPv6 address as the IPv4 address it maps.
pub fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut segments = v6.segments();
                segments[4..].fill(0);
                IpAddr::V6(segments.into())
            }
        },
    }
}

/// A token bucket: `rate` tokens a second, at most `burst` saved up.
#[derive(Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
    rate: f64,
    burst: f64,
}

impl Bucket {
    fn full(rate: u32, burst: u32, now: Instant) -> Self {
        Self {
            tokens: f64::from(burst),
            last: now,
            rate: f64::from(rate),
            burst: f64::from(burst),
        }
    }

    /// Refill up to `now`; whether `cost` tokens are there.
    fn has(&mut self, cost: f64, now: Instant) -> bool {
        let earned = now.saturating_duration_since(self.last).as_secs_f64() * self.rate;
        self.tokens = (self.tokens + earned).min(self.burst);
        self.last = self.last.max(now);
        self.tokens >= cost
    }

    fn spend(&mut self, cost: f64) {
        self.tokens -= cost;
    }
}

/// The request budgets of a listener: each connection's own rate, and the budgets its
/// connections share by address and by DID.
#[derive(Debug)]
pub struct Budgets {
    rate: u32,
    /// At least 1.
    burst: u32,
    per_address: Arc<Shared<IpAddr>>,
    per_identity: Arc<Shared<Did>>,
}

impl Budgets {
    /// The budgets of `limits`.
    pub fn new(limits: &Limits) -> Self {
        Self {
            rate: limits.requests_per_second,
            burst: limits.request_burst.max(1),
            per_address: Arc::new(Shared::new(
                limits.requests_per_second_per_ip,
                limits.request_burst_per_ip,
            )),
            per_identity: Arc::new(Shared::new(
                limits.requests_per_second_per_did,
                limits.request_burst_per_did,
            )),
        }
    }

    /// How many addresses and DIDs have a shared budget now: one per address or DID that
    /// has a connection open.
    pub fn shared_entries(&self) -> (usize, usize) {
        (
            lock(&self.per_address.entries).len(),
            lock(&self.per_identity.entries).len(),
        )
    }
}

/// Buckets shared by the connections of one key (an address, a DID). An entry lives while a
/// connection holds a [`Lease`] on it, so there are never more entries than connections.
#[derive(Debug)]
struct Shared<K> {
    /// 0: this budget is off.
    rate: u32,
    burst: u32,
    entries: Mutex<HashMap<K, Entry>>,
}

#[derive(Debug)]
struct Entry {
    bucket: Arc<Mutex<Bucket>>,
    leases: usize,
}

/// A connection's hold on a shared bucket; the last one dropped removes the entry.
#[derive(Debug)]
struct Lease<K: Eq + Hash + Clone> {
    key: K,
    bucket: Arc<Mutex<Bucket>>,
    shared: Arc<Shared<K>>,
}

impl<K: Eq + Hash + Clone> Shared<K> {
    fn new(rate: u32, burst: u32) -> Self {
        Self {
            rate,
            burst: burst.max(1),
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn lease(this: &Arc<Self>, key: K, now: Instant) -> Option<Lease<K>> {
        if this.rate == 0 {
            return None;
        }
        let mut entries = lock(&this.entries);
        let entry = entries.entry(key.clone()).or_insert_with(|| Entry {
            bucket: Arc::new(Mutex::new(Bucket::full(this.rate, this.burst, now))),
            leases: 0,
        });
        entry.leases += 1;
        Some(Lease {
            key,
            bucket: entry.bucket.clone(),
            shared: this.clone(),
        })
    }
}

impl<K: Eq + Hash + Clone> Drop for Lease<K> {
    fn drop(&mut self) {
        let mut entries = lock(&self.shared.entries);
        if let Some(entry) = entries.get_mut(&self.key) {
            entry.leases = entry.leases.saturating_sub(1);
            if entry.leases == 0 {
                entries.remove(&self.key);
            }
        }
    }
}

/// A challenge this session was given: enough to tell it again without checking the node's
/// own signature (its node is this node and its origin this node's origin, checked apart).
#[derive(Debug)]
struct Issued {
    nonce: String,
    issued_at: u64,
    expires_at: u64,
    sig: northstar_protocol::Signature,
    answered: bool,
}

impl Issued {
    /// Whether `challenge`, whose node is this one, is exactly the one issued.
    fn is(&self, challenge: &AuthChallenge, origin: &str) -> bool {
        self.nonce == challenge.nonce
            && self.issued_at == challenge.issued_at
            && self.expires_at == challenge.expires_at
            && self.sig == challenge.sig
            && origin == challenge.origin
    }
}

/// What the handshake needs to know about this node, and the sessions it authenticated.
#[derive(Debug)]
pub struct Authenticator {
    key: Keypair,
    origin: String,
    ttl_ms: u64,
    access: Arc<Access>,
    /// The open sessions of each authenticated DID, so a ban closes them. Entries of closed
    /// sessions are pruned whenever their DID authenticates again, and all of them when the
    /// map reaches [`MAX_SIGNED_IN`] DIDs.
    signed_in: Mutex<HashMap<Did, Vec<std::sync::Weak<Session>>>>,
}

/// The most DIDs [`Authenticator::signed_in`] holds before closed sessions are swept out.
const MAX_SIGNED_IN: usize = 4096;

impl Authenticator {
    /// The handshake for the node with `key`, reachable at `origin`, admitting whom `access`
    /// admits.
    pub fn new(key: Keypair, origin: String, ttl_secs: u32, access: Arc<Access>) -> Self {
        Self {
            key,
            origin,
            ttl_ms: u64::from(ttl_secs) * 1000,
            access,
            signed_in: Mutex::default(),
        }
    }

    /// Who may authenticate.
    pub fn access(&self) -> &Arc<Access> {
        &self.access
    }

    /// Remember `session`, authenticated as `did`, so [`Authenticator::kill_sessions_of`]
    /// finds it.
    pub fn signed_in(&self, did: &Did, session: &Arc<Session>) {
        let mut map = lock(&self.signed_in);
        if map.len() >= MAX_SIGNED_IN {
            map.retain(|_, sessions| {
                sessions.retain(|s| s.strong_count() > 0);
                !sessions.is_empty()
            });
        }
        let sessions = map.entry(did.clone()).or_default();
        sessions.retain(|s| s.strong_count() > 0);
        sessions.push(Arc::downgrade(session));
    }

    /// Drop every open connection authenticated as `did`; how many there were.
    pub fn kill_sessions_of(&self, did: &Did) -> usize {
        let sessions = lock(&self.signed_in).remove(did).unwrap_or_default();
        let mut killed = 0;
        for session in sessions.iter().filter_map(std::sync::Weak::upgrade) {
            session.kill();
            killed += 1;
        }
        killed
    }

    /// Issue a challenge bound to `session`.
    pub fn challenge(&self, session: &Session, now: u64) -> Result<AuthChallenge, AuthError> {
        let challenge = AuthChallenge::issue(&self.key, &self.origin, now, now + self.ttl_ms)
            .map_err(AuthError::Internal)?;
        let mut nonces = session.nonces.lock().unwrap_or_else(|p| p.into_inner());
        if nonces.len() == NONCES_PER_SESSION {
            nonces.pop_front();
        }
        nonces.push_back(Issued {
            nonce: challenge.nonce.clone(),
            issued_at: challenge.issued_at,
            expires_at: challenge.expires_at,
            sig: challenge.sig,
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
    ) -> Result<Did, AuthError> {
        let challenge = &response.challenge;
        if &challenge.node != self.key.did() {
            return Err(AuthError::refused(
                ErrorCode::WrongNode,
                format!(
                    "the challenge was issued by {}, not by this node",
                    challenge.node
                ),
            ));
        }
        // A challenge this session was given, unchanged, carries this node's valid signature:
        // no need to check it again (a verification is most of a handshake's CPU). Any other
        // challenge naming this node is checked, so the answer is the same for every input.
        let issued_here = {
            let nonces = session.nonces.lock().unwrap_or_else(|p| p.into_inner());
            nonces
                .iter()
                .find(|i| i.nonce == challenge.nonce)
                .map(|i| i.is(challenge, &self.origin))
        };
        if issued_here != Some(true) {
            challenge.verify().map_err(|_| {
                AuthError::refused(
                    ErrorCode::BadSignature,
                    "the challenge's node signature does not verify",
                )
            })?;
        }
        if !northstar_protocol::address::same_origin(&challenge.origin, &self.origin) {
            return Err(AuthError::refused(
                ErrorCode::WrongOrigin,
                format!(
                    "the challenge names origin {:?}, this node is {:?}",
                    challenge.origin, self.origin
                ),
            ));
        }
        if challenge.expires_at < now {
            return Err(AuthError::refused(
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
                    AuthError::refused(
                        ErrorCode::NonceForeign,
                        "the challenge was not issued on this connection",
                    )
                })?;
            if entry.answered {
                return Err(AuthError::refused(
                    ErrorCode::NonceReused,
                    "the challenge was answered already",
                ));
            }
            entry.answered = true;
        }
        // The challenge was checked above.
        response.verify_client().map_err(|_| {
            AuthError::refused(
                ErrorCode::BadSignature,
                "the response's signature does not verify",
            )
        })?;
        let did = &response.did;
        match self.access.check(did) {
            Ok(()) => {}
            Err(Denied::Banned) => {
                return Err(AuthError::refused(
                    ErrorCode::Banned,
                    format!("{did} is banned from this node by its operator"),
                ));
            }
            Err(Denied::NotAllowed) => {
                return Err(AuthError::refused(
                    ErrorCode::NotAllowed,
                    format!("{did} is not on this node's allow-list"),
                ));
            }
        }
        if let Some(existing) = session.did().filter(|existing| *existing != did) {
            return Err(AuthError::refused(
                ErrorCode::Forbidden,
                format!("this connection is already authenticated as {existing}"),
            ));
        }
        // Two responses racing on one connection: only the first DID sticks.
        if session.did.set(did.clone()).is_err() && session.did() != Some(did) {
            return Err(AuthError::refused(
                ErrorCode::Forbidden,
                "this connection is already authenticated as another DID",
            ));
        }
        Ok(did.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(per_ip: u32, per_did: u32) -> Limits {
        Limits {
            requests_per_second: 1,
            request_burst: 3,
            requests_per_second_per_ip: per_ip,
            request_burst_per_ip: per_ip,
            requests_per_second_per_did: per_did,
            request_burst_per_did: per_did,
            ..Limits::default()
        }
    }

    /// Every change to an issued challenge is refused as a bad node signature, whether or not
    /// the node checks its own signature again; the challenge as issued passes once.
    #[test]
    fn a_challenge_changed_in_any_field_is_refused_and_the_issued_one_passes() {
        let node = Keypair::generate().unwrap();
        let client = Keypair::generate().unwrap();
        let origin = "ws://127.0.0.1:7700".to_owned();
        let access = Arc::new(Access::fixed(crate::config::Registration::default()));
        let auth = Authenticator::new(node.clone(), origin.clone(), 60, access);
        let budgets = Arc::new(Budgets::new(&limits(100, 100)));
        let s = session(&budgets, "10.0.0.1:1");
        let now = 1_767_225_600_000;
        let issued = auth.challenge(&s, now).unwrap();
        let other = auth.challenge(&s, now).unwrap();
        type Change = Box<dyn Fn(&mut AuthChallenge)>;
        let changes: Vec<(&str, Change)> = vec![
            ("issued_at", Box::new(|c| c.issued_at -= 1)),
            ("expires_at", Box::new(|c| c.expires_at += 1)),
            (
                "origin",
                Box::new(|c| c.origin = "ws://127.0.0.1:7701".into()),
            ),
            ("sig", Box::new(move |c| c.sig = other.sig)),
        ];
        for (field, change) in changes {
            let mut challenge = issued.clone();
            change(&mut challenge);
            let response = AuthResponse::answer(&client, challenge).unwrap();
            match auth.respond(&s, &response, now) {
                Err(AuthError::Refused { code, .. }) => {
                    assert_eq!(code, ErrorCode::BadSignature, "{field}");
                }
                other => panic!("{field}: {other:?}"),
            }
        }
        let response = AuthResponse::answer(&client, issued.clone()).unwrap();
        assert_eq!(&auth.respond(&s, &response, now).unwrap(), client.did());
        // Its client's signature still counts: a response signed by someone else is refused.
        let mut forged = AuthResponse::answer(&client, auth.challenge(&s, now).unwrap()).unwrap();
        forged.did = Keypair::generate().unwrap().did().clone();
        match auth.respond(&s, &forged, now) {
            Err(AuthError::Refused { code, .. }) => assert_eq!(code, ErrorCode::BadSignature),
            other => panic!("forged response: {other:?}"),
        }
    }

    fn session(budgets: &Arc<Budgets>, peer: &str) -> Session {
        Session::new(
            1,
            peer.parse().unwrap(),
            CancellationToken::new(),
            budgets.clone(),
        )
    }

    #[test]
    fn a_request_needs_every_budget_and_takes_from_none_when_one_is_empty() {
        let budgets = Arc::new(Budgets::new(&limits(4, 2)));
        let a = session(&budgets, "10.0.0.1:1");
        let b = session(&budgets, "10.0.0.1:2");
        // The address has 4: three from a (its own burst), one from b, then b finds the
        // address empty while its own budget is full.
        for _ in 0..3 {
            a.take(1).unwrap();
        }
        assert_eq!(a.take(1), Err(Spent::Connection));
        b.take(1).unwrap();
        assert_eq!(b.take(1), Err(Spent::Address));
        // Another address is not affected.
        let c = session(&budgets, "10.0.0.2:1");
        c.take(1).unwrap();
        // Two connections of one DID share its budget of 2.
        let did = Keypair::generate().unwrap().did().clone();
        c.did.set(did.clone()).unwrap();
        let d = session(&budgets, "10.0.0.3:1");
        d.did.set(did).unwrap();
        c.take(1).unwrap();
        d.take(1).unwrap();
        assert_eq!(d.take(1), Err(Spent::Identity));
    }

    #[test]
    fn shared_budgets_live_only_while_a_connection_holds_them() {
        let budgets = Arc::new(Budgets::new(&limits(10, 10)));
        let did = Keypair::generate().unwrap().did().clone();
        let sessions: Vec<Session> = (0..3)
            .map(|i| {
                let s = session(&budgets, &format!("[2001:db8::{i}]:1"));
                s.did.set(did.clone()).unwrap();
                s.take(1).unwrap();
                s
            })
            .collect();
        // One /64, one DID.
        assert_eq!(budgets.shared_entries(), (1, 1));
        drop(sessions);
        assert_eq!(budgets.shared_entries(), (0, 0));

        let off = Arc::new(Budgets::new(&limits(0, 0)));
        let s = session(&off, "10.0.0.1:1");
        s.take(1).unwrap();
        assert_eq!(off.shared_entries(), (0, 0));
    }

    #[test]
    fn a_refusal_after_burst_refusals_in_a_row_kills_the_connection() {
        let budgets = Arc::new(Budgets::new(&limits(0, 0)));
        let s = session(&budgets, "10.0.0.1:1");
        for _ in 0..3 {
            s.take(1).unwrap();
        }
        for _ in 0..3 {
            assert!(s.take(1).is_err());
            assert!(!s.killed());
        }
        assert!(s.take(1).is_err());
        assert!(s.killed());
    }

    #[test]
    fn addresses_count_by_ipv4_and_ipv6_slash_64() {
        let key = |s: &str| address_key(s.parse().unwrap());
        assert_eq!(key("::ffff:10.1.2.3"), key("10.1.2.3"));
        assert_eq!(key("2001:db8:1:2:aaaa::1"), key("2001:db8:1:2:bbbb::2"));
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
    }
}
