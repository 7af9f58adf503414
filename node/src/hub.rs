//! Live fan-out of committed events to subscribers.
//!
//! Each space with subscribers has one `broadcast` channel whose items are the event's JSON,
//! serialized once and shared by every subscriber. The channel's capacity is the
//! `subscriber_queue` limit: a subscriber that falls that far behind gets `Lagged`, is told and
//! cut off, and may resume from its cursor. Publishing never waits for a subscriber.
//!
//! Subscribers that asked for beams inline (`spec/protocol.md` §6.3.21) share one more text per
//! event, the *item* `{"event":…,"beam":…}`, composed by the first of them to deliver it
//! ([`LiveEvent::item`]). The beam comes with the event from the writer, which holds the beam of
//! a post it sequences. For a `beam_ref` event without it (one a replica received from the
//! sequencer, say) the first subscriber that asks looks the beam up in the store once, for all
//! of them ([`LiveEvent::resolve`]); plain subscribers never cause a lookup. So the store is read
//! at most once per event, never per subscriber.
//!
//! A deleted beam is never inlined: the hub remembers the `beam_ref` events of each space still
//! in its channel, and a tombstone (or [`Hub::revoke`], for a deletion whose tombstone goes to
//! another node's space) marks those of that beam revoked before anything later is published.
//! A subscriber still behind delivers such an event without its beam.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use northstar_protocol::{ContentId, Did};
use serde_json::value::RawValue;
use tokio::sync::{OnceCell, broadcast};

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
    /// For a `beam_ref` event: the beam it names, to inline.
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

/// The beam a live `beam_ref` event names, for subscribers that asked for it inline.
#[derive(Debug)]
pub struct InlineBeam {
    /// Whose beam and which.
    pub key: BeamKey,
    /// The signed beam's JSON, exactly as stored, or `None` if this node does not hold it:
    /// set by the writer when it had the beam in hand, else by the first [`LiveEvent::resolve`].
    json: OnceCell<Option<Box<str>>>,
    /// Set once the beam is deleted: from then on the event is delivered without it.
    revoked: AtomicBool,
}

impl InlineBeam {
    /// The beam `key`, whose signed JSON the caller holds if `json` is given; otherwise it is
    /// looked up when a subscriber first asks for it.
    pub fn new(key: BeamKey, json: Option<String>) -> Self {
        Self {
            key,
            json: match json {
                Some(json) => OnceCell::new_with(Some(Some(json.into_boxed_str()))),
                None => OnceCell::new(),
            },
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

    /// Make sure the beam this `beam_ref` event names has been looked for: `lookup` finds its
    /// signed JSON (or `None`) and runs at most once per event, however many subscribers
    /// await this at once. Does nothing for an event whose beam the writer gave, or one that
    /// names no beam.
    pub async fn resolve<F, Fut>(&self, lookup: F)
    where
        F: FnOnce(BeamKey) -> Fut,
        Fut: Future<Output = Option<String>>,
    {
        if let Some(beam) = &self.beam {
            let key = beam.key.clone();
            beam.json
                .get_or_init(|| async move { lookup(key).await.map(String::into_boxed_str) })
                .await;
        }
    }

    /// The `result` of a notification to a subscriber that asked for beams inline:
    /// `{"event":…,"beam":…}` while the beam is known here and not deleted, `{"event":…}`
    /// otherwise (also before [`LiveEvent::resolve`]). Each form is composed at most once,
    /// whoever asks first.
    pub fn item(&self) -> &str {
        let held = self
            .beam
            .as_ref()
            .filter(|beam| !beam.revoked.load(Ordering::Acquire))
            .and_then(|beam| beam.json.get())
            .and_then(Option::as_deref);
        match held {
            Some(json) => self
                .with_beam
                .get_or_init(|| compose_item(self.json.get(), Some(json))),
            None => self
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

/// One space's channel, and its `beam_ref` events still in the channel.
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
        let live = event(
            3,
            Some(InlineBeam::new(key(1), Some(r#"{"b":1}"#.into()))),
            None,
        );
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
        let kept = event(2, Some(InlineBeam::new(key(2), Some("{}".into()))), None);
        let gone = event(3, Some(InlineBeam::new(key(1), Some("{}".into()))), None);
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

    #[tokio::test]
    async fn a_beam_not_in_hand_is_looked_up_once_for_every_subscriber() {
        let live = event(5, Some(InlineBeam::new(key(3), None)), None);
        assert_eq!(live.item(), r#"{"event":{"seq":5}}"#, "not looked up yet");
        let lookups = std::sync::atomic::AtomicUsize::new(0);
        for _ in 0..3 {
            live.resolve(|_| async {
                lookups.fetch_add(1, Ordering::SeqCst);
                Some(r#"{"b":3}"#.to_owned())
            })
            .await;
        }
        assert_eq!(lookups.load(Ordering::SeqCst), 1);
        assert_eq!(live.item(), r#"{"event":{"seq":5},"beam":{"b":3}}"#);

        // A beam this node does not hold: looked for once, then delivered without.
        let absent = event(6, Some(InlineBeam::new(key(4), None)), None);
        absent.resolve(|_| async { None }).await;
        absent
            .resolve(|_| async { panic!("looked up twice") })
            .await;
        assert_eq!(absent.item(), r#"{"event":{"seq":6}}"#);
    }
}
