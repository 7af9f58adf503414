//! Live fan-out of committed events to subscribers.
//!
//! Each space with subscribers has one `broadcast` channel whose items are the event's JSON,
//! serialized once and shared by every subscriber. The channel's capacity is the
//! `subscriber_queue` limit: a subscriber that falls that far behind gets `Lagged`, is told and
//! cut off, and may resume from its cursor. Publishing never waits for a subscriber.
//!
//! Subscribers that asked for beams inline (`spec/protocol.md` §6.3.14) share one more text per
//! event, the *item* `{"event":…,"beam":…}`, composed by the first of them to deliver it
//! ([`LiveEvent::item`]). The beam comes with the event from the writer, which holds the beam of
//! a post it sequences; an event without one (a replicated event, say) is delivered without a
//! beam, and the client asks `beam.get`. No subscriber reads the store for a live event.
//!
//! A deleted beam is never inlined: the hub remembers the events of each space still in its
//! channel that carry a beam, and a tombstone (or [`Hub::revoke`], for a deletion whose
//! tombstone goes to another node's space) marks those of that beam revoked before anything
//! later is published. A subscriber still behind delivers such an event without its beam.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use northstar_protocol::{ContentId, Did};
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
    /// For a `beam_ref` event whose beam the writer had in hand: that beam, to inline.
    pub beam: Option<InlineBeam>,
    /// For a tombstone: the beam it deletes, whose inline copies are revoked when it is
    /// published.
    pub deletes: Option<BeamKey>,
    /// The item with the beam, composed once for every subscriber that asked for beams.
    with_beam: OnceLock<Box<str>>,
    /// The item without a beam, composed once likewise.
    without_beam: OnceLock<Box<str>>,
}

/// A beam by its author and id: what a ref names and a tombstone deletes (`spec/protocol.md`
/// §4.6: refs match beams by both).
pub type BeamKey = (Did, ContentId);

/// The beam a live `beam_ref` event carries to subscribers that asked for it.
#[derive(Debug)]
pub struct InlineBeam {
    /// Whose beam and which.
    pub key: BeamKey,
    /// The signed beam's JSON, exactly as stored.
    pub json: Box<str>,
    /// Set once the beam is deleted: from then on the event is delivered without it.
    revoked: AtomicBool,
}

impl InlineBeam {
    /// The beam `key` whose signed JSON is `json`.
    pub fn new(key: BeamKey, json: String) -> Self {
        Self {
            key,
            json: json.into_boxed_str(),
            revoked: AtomicBool::new(false),
        }
    }
}

impl LiveEvent {
    /// A live event; `beam` and `deletes` as the fields say.
    pub fn new(
        seq: u64,
        json: Box<RawValue>,
        removes: Option<Did>,
        beam: Option<InlineBeam>,
        deletes: Option<BeamKey>,
    ) -> Self {
        Self {
            seq,
            json,
            removes,
            beam,
            deletes,
            with_beam: OnceLock::new(),
            without_beam: OnceLock::new(),
        }
    }

    /// The `result` of a notification to a subscriber that asked for beams inline:
    /// `{"event":…,"beam":…}` while the beam is here and not deleted, `{"event":…}` otherwise.
    /// Each form is composed at most once, whoever asks first.
    pub fn item(&self) -> &str {
        match &self.beam {
            Some(beam) if !beam.revoked.load(Ordering::Acquire) => self
                .with_beam
                .get_or_init(|| compose_item(self.json.get(), Some(&beam.json))),
            _ => self
                .without_beam
                .get_or_init(|| compose_item(self.json.get(), None)),
        }
    }
}

/// An event item's text (`spec/protocol.md` §6.3.14), from the event's and the beam's JSON.
pub fn compose_item(event: &str, beam: Option<&str>) -> Box<str> {
    const EVENT: &str = r#"{"event":"#;
    const BEAM: &str = r#","beam":"#;
    let mut out = String::with_capacity(
        EVENT.len() + event.len() + beam.map_or(0, |b| BEAM.len() + b.len()) + 1,
    );
    out.push_str(EVENT);
    out.push_str(event);
    if let Some(beam) = beam {
        out.push_str(BEAM);
        out.push_str(beam);
    }
    out.push('}');
    out.into_boxed_str()
}

/// One space's channel, and its events still in the channel that carry a beam.
#[derive(Debug)]
struct Channel {
    sender: broadcast::Sender<Arc<LiveEvent>>,
    /// At most `capacity` entries: an older event has left the channel (a subscriber that
    /// had not taken it is cut off as slow), so it needs no revoking.
    inlined: VecDeque<Weak<LiveEvent>>,
}

/// The per-space broadcast channels.
#[derive(Debug)]
pub struct Hub {
    capacity: usize,
    spaces: Mutex<HashMap<String, Channel>>,
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
            .or_insert_with(|| Channel {
                sender: broadcast::channel(self.capacity).0,
                inlined: VecDeque::new(),
            })
            .sender
            .subscribe()
    }

    /// Hand a committed event to the space's subscribers, if it has any.
    pub fn publish(&self, space: &str, event: Arc<LiveEvent>) {
        let mut spaces = self.spaces.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(key) = &event.deletes {
            revoke_in(&spaces, key);
        }
        if let Some(channel) = spaces.get_mut(space) {
            if channel.sender.receiver_count() == 0 {
                // Nobody listens any more: drop the channel so idle spaces cost nothing.
                spaces.remove(space);
            } else {
                if event.beam.is_some() {
                    if channel.inlined.len() >= self.capacity {
                        channel.inlined.pop_front();
                    }
                    channel.inlined.push_back(Arc::downgrade(&event));
                }
                // An error means every receiver went away meanwhile; nothing to deliver.
                let _ = channel.sender.send(event);
            }
        }
    }

    /// Stop inlining the beam `key` in every event still waiting for a subscriber: it was
    /// deleted.
    pub fn revoke(&self, key: &BeamKey) {
        let spaces = self.spaces.lock().unwrap_or_else(|p| p.into_inner());
        revoke_in(&spaces, key);
    }
}

fn revoke_in(spaces: &HashMap<String, Channel>, key: &BeamKey) {
    for channel in spaces.values() {
        for event in channel.inlined.iter().filter_map(Weak::upgrade) {
            if let Some(beam) = event.beam.as_ref().filter(|b| b.key == *key) {
                beam.revoked.store(true, Ordering::Release);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use northstar_protocol::Keypair;

    fn event(seq: u64, beam: Option<InlineBeam>, deletes: Option<BeamKey>) -> Arc<LiveEvent> {
        let json = RawValue::from_string(format!(r#"{{"seq":{seq}}}"#)).unwrap();
        Arc::new(LiveEvent::new(seq, json, None, beam, deletes))
    }

    fn key(n: u8) -> BeamKey {
        let did = Keypair::from_seed(&[n; 32]).did().clone();
        (did, ContentId::of(&[n]))
    }

    #[test]
    fn an_item_carries_the_beam_and_is_composed_once() {
        let live = event(3, Some(InlineBeam::new(key(1), r#"{"b":1}"#.into())), None);
        let first = live.item();
        assert_eq!(first, r#"{"event":{"seq":3},"beam":{"b":1}}"#);
        // The same text, not a copy: every subscriber shares it.
        assert!(std::ptr::eq(first, live.item()));
        let plain = event(4, None, None);
        assert_eq!(plain.item(), r#"{"event":{"seq":4}}"#);
    }

    #[test]
    fn a_tombstone_revokes_the_beam_of_events_still_in_the_channel() {
        let hub = Hub::new(8);
        let mut rx = hub.subscribe("s");
        let mut other = hub.subscribe("t");
        let kept = event(2, Some(InlineBeam::new(key(2), "{}".into())), None);
        let gone = event(3, Some(InlineBeam::new(key(1), "{}".into())), None);
        hub.publish("s", kept.clone());
        hub.publish("s", gone.clone());
        // The tombstone of key 1 in another space still revokes it here.
        hub.publish("t", event(9, None, Some(key(1))));
        assert!(rx.try_recv().unwrap().item().contains("beam"));
        assert_eq!(rx.try_recv().unwrap().item(), r#"{"event":{"seq":3}}"#);
        assert!(other.try_recv().is_ok());
        hub.revoke(&key(2));
        assert_eq!(kept.item(), r#"{"event":{"seq":2}}"#);
    }
}
