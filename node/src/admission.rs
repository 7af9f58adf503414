//! Admission: how many connections the node holds, per address and in all. The server takes a
//! [`Slot`] before it upgrades a connection and another for the session; the session holds its
//! slot until it ends.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use crate::auth::address_key;

/// Connections counted per address and in all: WebSocket sessions, or TCP connections still
/// to upgrade.
#[derive(Debug, Clone)]
pub struct Slots {
    max_per_ip: u32,
    max_total: u32,
    total: Arc<AtomicU32>,
    counts: Arc<Mutex<HashMap<IpAddr, u32>>>,
}

/// One connection's place in the counts; dropping it frees the place.
#[derive(Debug)]
pub struct Slot {
    ip: IpAddr,
    total: Arc<AtomicU32>,
    counts: Arc<Mutex<HashMap<IpAddr, u32>>>,
}

impl Slots {
    /// Counts allowing `max_total` connections, `max_per_ip` from one address.
    pub fn new(max_total: u32, max_per_ip: u32) -> Self {
        Self {
            max_per_ip,
            max_total,
            total: Arc::default(),
            counts: Arc::default(),
        }
    }

    /// A place for a session from `ip`, or why there is none.
    pub fn take(&self, ip: IpAddr) -> Result<Slot, &'static str> {
        let ip = address_key(ip);
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let count = counts.entry(ip).or_insert(0);
        if *count >= self.max_per_ip {
            return Err("too many connections from this address");
        }
        // Taken under the lock, so two sessions cannot both take the last place.
        if self.total.load(Ordering::Relaxed) >= self.max_total {
            return Err("the node has as many connections as it allows");
        }
        self.total.fetch_add(1, Ordering::Relaxed);
        *count += 1;
        Ok(Slot {
            ip,
            total: self.total.clone(),
            counts: self.counts.clone(),
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        self.total.fetch_sub(1, Ordering::Relaxed);
        if let Some(count) = counts.get_mut(&self.ip) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                counts.remove(&self.ip);
            }
        }
    }
}
