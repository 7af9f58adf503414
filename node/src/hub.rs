//! Live fan-out of committed events to subscribers.
//!
//! Each space with subscribers has one `broadcast` channel whose items are the event's JSON,
//! serialized once and shared by every subscriber. The channel's capacity is the
//! `subscriber_queue` limit: a subscriber that falls that far behind gets `Lagged`, is told and
//! cut off, and may resume from its cursor. Publishing never waits for a subscriber.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use northstar_protocol::Did;
use serde_json::value::RawValue;
use tokio::sync::broadcast;

/// A committed event as subscribers receive it.
#[derive(Debug)]
pub struct LiveEvent {
    /// The event's seq.
    pub seq: u64,
    /// The signed event's JSON.
    pub json: Box<RawValue>,
    /// Whom the event takes out of the space (a leave, kick or ban), so a `dm` subscription of
    /// that DID can end with the event that removed it.
    pub removes: Option<Did>,
}

/// The per-space broadcast channels.
#[derive(Debug)]
pub struct Hub {
    capacity: usize,
    spaces: Mutex<HashMap<String, broadcast::Sender<Arc<LiveEvent>>>>,
}

impl Hub {
    /// A hub whose subscribers may fall `capacity` events behind before they are cut off.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            spaces: Mutex::new(HashMap::new()),
        }
    }

    /// Receive every event of `space` published from now on.
    pub fn subscribe(&self, space: &str) -> broadcast::Receiver<Arc<LiveEvent>> {
        let mut spaces = self.spaces.lock().unwrap_or_else(|p| p.into_inner());
        spaces
            .entry(space.to_owned())
            .or_insert_with(|| broadcast::channel(self.capacity).0)
            .subscribe()
    }

    /// Hand a committed event to the space's subscribers, if it has any.
    pub fn publish(&self, space: &str, event: Arc<LiveEvent>) {
        let mut spaces = self.spaces.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(sender) = spaces.get(space) {
            if sender.receiver_count() == 0 {
                // Nobody listens any more: drop the channel so idle spaces cost nothing.
                spaces.remove(space);
            } else {
                // An error means every receiver went away meanwhile; nothing to deliver.
                let _ = sender.send(event);
            }
        }
    }
}
