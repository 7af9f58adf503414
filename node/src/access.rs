//! Who may use the node, as its operator decides at runtime (`northstar admin allow|deny|ban`).
//!
//! [`Access`] holds the config file's registration policy and the decisions stored in the
//! `users` table, loaded at start and changed only through [`Access::allow`],
//! [`Access::deny`], [`Access::ban`] and [`Access::unban`], which write the table before they
//! change what the node enforces, so a decision the operator was told about survives a restart.
//! The checks ([`Access::check`]) read memory only: they sit on the handshake's path.
//!
//! Rules: a DID the operator banned is refused whatever the policy; under `allow_list` a DID
//! the operator allowed or denied at runtime is decided by that, any other by the config
//! file's `registration.allow`; under `open` every DID not banned may register.

use std::collections::{HashMap, HashSet};
use std::sync::RwLock;

use northstar_protocol::Did;

use crate::config::{Policy, Registration};
use crate::store::{Store, StoreError};

/// How often one DID's `last_seen` is written at most, in ms: a client that reconnects in a
/// loop costs one write a minute, not one per handshake.
const SEEN_EVERY_MS: u64 = 60_000;

/// The most DIDs whose last write of `last_seen` is remembered; past it the memory is cleared
/// (and the next handshake of each writes again).
const MAX_SEEN: usize = 10_000;

/// Why a DID may not authenticate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    /// The operator banned it from the node.
    Banned,
    /// The registration policy is `allow_list` and it is not on the list.
    NotAllowed,
}

/// The node's access rules and the operator's runtime decisions.
#[derive(Debug)]
pub struct Access {
    registration: Registration,
    /// Where decisions are kept; `None` for rules that live in memory only (unit tests).
    store: Option<Store>,
    state: RwLock<State>,
    /// When each DID's `last_seen` was last written (ms).
    seen: std::sync::Mutex<HashMap<Did, u64>>,
}

#[derive(Debug, Default)]
struct State {
    /// The operator's runtime allow (`true`) and deny (`false`) decisions.
    decided: HashMap<Did, bool>,
    banned: HashSet<Did>,
}

impl Access {
    /// The rules of `registration` and the decisions stored in `store`.
    pub async fn load(registration: Registration, store: Store) -> Result<Self, StoreError> {
        let mut state = State::default();
        for row in store.users().await? {
            // A DID that no longer parses cannot authenticate anyway.
            let Ok(did) = Did::parse(&row.did) else {
                tracing::warn!(did = %row.did, "a stored user's DID does not parse; ignored");
                continue;
            };
            if let Some(allowed) = row.allowed {
                state.decided.insert(did.clone(), allowed);
            }
            if row.banned_at.is_some() {
                state.banned.insert(did);
            }
        }
        Ok(Self {
            registration,
            store: Some(store),
            state: RwLock::new(state),
            seen: std::sync::Mutex::default(),
        })
    }

    /// The rules of `registration` alone, with decisions kept in memory only.
    pub fn fixed(registration: Registration) -> Self {
        Self {
            registration,
            store: None,
            state: RwLock::default(),
            seen: std::sync::Mutex::default(),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        // The state is two sets changed in one statement each; a panic cannot leave it torn.
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether `did` may authenticate.
    pub fn check(&self, did: &Did) -> Result<(), Denied> {
        let state = self.read();
        if state.banned.contains(did) {
            return Err(Denied::Banned);
        }
        if self.registration.policy == Policy::Open {
            return Ok(());
        }
        let allowed = state
            .decided
            .get(did)
            .copied()
            .unwrap_or_else(|| self.registration.allow.contains(did));
        if allowed {
            Ok(())
        } else {
            Err(Denied::NotAllowed)
        }
    }

    /// Whether `did` is banned from the node.
    pub fn is_banned(&self, did: &Did) -> bool {
        self.read().banned.contains(did)
    }

    /// Whether `did` may authenticate under the allow-list (bans aside), and whether that is
    /// the operator's runtime decision (`Some`) or the config file's (`None`).
    pub fn allowed(&self, did: &Did) -> (bool, Option<bool>) {
        let decided = self.read().decided.get(did).copied();
        let allowed = match self.registration.policy {
            Policy::Open => true,
            Policy::AllowList => decided.unwrap_or_else(|| self.registration.allow.contains(did)),
        };
        (allowed, decided)
    }

    /// The registration policy.
    pub fn policy(&self) -> Policy {
        self.registration.policy
    }

    /// The config file's allow-list.
    pub fn configured(&self) -> &[Did] {
        &self.registration.allow
    }

    /// Allow `did` from now on, persisted.
    pub async fn allow(&self, did: &Did) -> Result<(), StoreError> {
        if let Some(store) = &self.store {
            store.set_access(did.as_str(), true).await?;
        }
        self.write().decided.insert(did.clone(), true);
        Ok(())
    }

    /// Deny `did` from now on (overriding the config file's allow-list), persisted.
    pub async fn deny(&self, did: &Did) -> Result<(), StoreError> {
        if let Some(store) = &self.store {
            store.set_access(did.as_str(), false).await?;
        }
        self.write().decided.insert(did.clone(), false);
        Ok(())
    }

    /// Ban `did` from the node at `now` (ms), persisted.
    pub async fn ban(&self, did: &Did, now: u64) -> Result<(), StoreError> {
        if let Some(store) = &self.store {
            store.ban_user(did.as_str(), now).await?;
        }
        self.write().banned.insert(did.clone());
        Ok(())
    }

    /// Lift the ban of `did`, persisted; whether it was banned.
    pub async fn unban(&self, did: &Did) -> Result<bool, StoreError> {
        if let Some(store) = &self.store {
            store.unban_user(did.as_str()).await?;
        }
        Ok(self.write().banned.remove(did))
    }

    /// Record that `did` authenticated at `now` (ms), at most once a minute per DID. A failed
    /// write is logged and costs the handshake nothing: `last_seen` is a courtesy.
    pub async fn seen(&self, did: &Did, now: u64) {
        {
            let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
            if seen
                .get(did)
                .is_some_and(|at| now.saturating_sub(*at) < SEEN_EVERY_MS)
            {
                return;
            }
            if seen.len() >= MAX_SEEN {
                seen.clear();
            }
            seen.insert(did.clone(), now);
        }
        let Some(store) = &self.store else {
            return;
        };
        if let Err(e) = store.user_seen(did.as_str(), now).await {
            tracing::warn!(error = %crate::report::Causes(&e), "cannot record when a user was seen");
        }
    }
}
