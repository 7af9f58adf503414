//! One subscription's delivery (`space.subscribe`, `spec/protocol.md` §6.3.14): the backlog
//! from the store, then live events from the hub, in seq order with no gap and no duplicate.
//!
//! A [`Feed`] is a stream the connection polls itself, only when its socket can take more: the
//! backlog is read at the subscriber's pace, and live events wait in the hub's bounded channel
//! until the connection writes them. A subscriber that falls more than `subscriber_queue`
//! events behind the live events is cut off with `slow_subscriber`. Live events are the hub's
//! shared JSON: a thousand subscribers of a space hold one copy of each event.
//!
//! A subscription that asked for beams inline delivers event items instead (§6.3.14): for the
//! backlog, each composed here with the beam its ref names if the store holds it (stored or
//! cached; a deleted beam is held by neither); for live events, the hub's shared item, whose
//! beam came from the writer or, for an event the writer did not have it for, from one store
//! lookup per event by whichever subscriber gets there first ([`crate::hub`]). A subscriber
//! may read every beam it is given:
//! the ref that names it is in a space it may read, and such a ref makes it a reader
//! (§6.3.16: public for a channel or stream, the members and their home nodes for a `dm`).

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;

use futures_util::Stream;
use northstar_protocol::Did;
use northstar_protocol::address::{BeamPath, SpaceId, SpaceType};
use northstar_protocol::api::ErrorCode;
use northstar_protocol::wire::{Event, Payload};
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;

use super::{Api, ApiError};
use crate::hub::{BeamKey, LiveEvent, compose_item};
use crate::store::{EventRow, StoreError};

/// What a subscription delivers next.
#[derive(Debug)]
pub enum FeedItem {
    /// One event, as a `space.event` notification's `result`.
    Event(EventJson),
    /// The subscription's last notification: its `error` text.
    End(String),
}

/// An event's signed JSON, or its event item: shared with every live subscriber, or read for
/// this one.
#[derive(Debug)]
pub enum EventJson {
    /// A live event from the hub.
    Live(Arc<LiveEvent>),
    /// A live event from the hub, as its shared event item.
    LiveItem(Arc<LiveEvent>),
    /// An event (or event item) from the store's backlog.
    Stored(String),
}

impl EventJson {
    /// The JSON text.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Live(event) => event.json.get(),
            Self::LiveItem(event) => event.item(),
            Self::Stored(json) => json,
        }
    }
}

/// A subscription's items, boxed so a connection can hold several of them.
pub type FeedStream = Pin<Box<dyn Stream<Item = FeedItem> + Send>>;

/// Where a feed is.
#[derive(Debug)]
enum State {
    /// Delivering stored events; `more` if the last page read was full.
    Backlog { more: bool },
    /// Delivering live events.
    Live,
    /// The next item is the end notification with this text.
    Ending(String),
    /// Nothing more.
    Done,
}

/// One subscription.
pub struct Feed {
    api: Arc<Api>,
    space: SpaceId,
    cursor: u64,
    /// For a dm: the subscriber, whose removal ends the subscription.
    watch: Option<Did>,
    /// Whether to deliver event items with the beams inline.
    beams: bool,
    live: broadcast::Receiver<Arc<LiveEvent>>,
    page: VecDeque<EventRow>,
    state: State,
}

impl Api {
    /// Open a subscription to `space` from `since` for `reader`, if they may read it; with
    /// `beams`, its items carry the beams inline.
    pub async fn subscribe(
        self: &Arc<Self>,
        space: SpaceId,
        since: u64,
        reader: Option<Did>,
        beams: bool,
    ) -> Result<FeedStream, ApiError> {
        self.readable(&space, reader.as_ref()).await?;
        // Subscribe before reading the backlog, so nothing committed in between is missed.
        let live = self.hub.subscribe(space.as_str());
        let watch = reader.filter(|_| space.space_type() == SpaceType::Dm);
        let feed = Feed {
            api: self.clone(),
            space,
            cursor: since,
            watch,
            beams,
            live,
            page: VecDeque::new(),
            state: State::Backlog { more: true },
        };
        Ok(Box::pin(futures_util::stream::unfold(
            feed,
            |mut feed| async move {
                let item = feed.next().await?;
                Some((item, feed))
            },
        )))
    }
}

impl Feed {
    async fn next(&mut self) -> Option<FeedItem> {
        loop {
            match std::mem::replace(&mut self.state, State::Done) {
                State::Done => return None,
                State::Ending(text) => return Some(FeedItem::End(text)),
                State::Backlog { more } => {
                    if let Some(row) = self.page.pop_front() {
                        self.state = State::Backlog { more };
                        let removes_watched = self.watch.is_some()
                            && matches!(row.kind.as_str(), "leave" | "kick" | "ban")
                            && removed_member(&row.json) == self.watch;
                        self.cursor = row.seq;
                        if removes_watched {
                            self.state = State::Ending(removed());
                        }
                        if !self.beams {
                            return Some(FeedItem::Event(EventJson::Stored(row.json)));
                        }
                        return Some(match self.api.held_beam(&row).await {
                            Ok(beam) => FeedItem::Event(EventJson::Stored(
                                compose_item(&row.json, beam.as_deref()).into(),
                            )),
                            Err(e) => self.failed(&e),
                        });
                    }
                    self.state = if more {
                        self.read_page().await
                    } else {
                        State::Live
                    };
                }
                State::Live => {
                    self.state = State::Live;
                    match self.live.recv().await {
                        Ok(event) if event.seq <= self.cursor => {}
                        Ok(event) if event.seq == self.cursor + 1 => {
                            self.cursor = event.seq;
                            if self.watch.is_some() && event.removes == self.watch {
                                self.state = State::Ending(removed());
                            }
                            if !self.beams {
                                return Some(FeedItem::Event(EventJson::Live(event)));
                            }
                            let api = &self.api;
                            event.resolve(|key| api.held_beam_live(key)).await;
                            return Some(FeedItem::Event(EventJson::LiveItem(event)));
                        }
                        // A hole: events committed after the subscription began but before the
                        // backlog read ended. Fill it from the store.
                        Ok(_) => self.state = State::Backlog { more: true },
                        Err(RecvError::Lagged(_)) => {
                            self.api.metrics.slow_subscribers.inc();
                            self.state = State::Ending(format!(
                                "{}: fell behind by more than {} events; resume from seq {}",
                                ErrorCode::SlowSubscriber.name(),
                                self.api.config.limits.subscriber_queue,
                                self.cursor
                            ));
                        }
                        Err(RecvError::Closed) => self.state = State::Done,
                    }
                }
            }
        }
    }

    /// Read the next page of stored events after the cursor.
    async fn read_page(&mut self) -> State {
        let limit = self.api.config.limits.max_page;
        match self
            .api
            .store
            .events(self.space.as_str(), self.cursor, limit)
            .await
        {
            Ok(rows) => {
                let more = rows.len() == limit as usize;
                self.page = rows.into();
                State::Backlog { more }
            }
            Err(e) => {
                tracing::error!(error = %crate::report::Causes(&e), space = %self.space, "subscription failed");
                State::Ending(internal())
            }
        }
    }

    /// End after a fault of the store: the subscriber resumes from the last seq it received,
    /// which is before the event that could not be delivered.
    fn failed(&mut self, e: &StoreError) -> FeedItem {
        tracing::error!(error = %crate::report::Causes(e), space = %self.space, "subscription failed");
        self.state = State::Done;
        FeedItem::End(internal())
    }
}

impl Api {
    /// The signed JSON of the beam a stored `beam_ref` event names, or the version an `edit`
    /// event names (§6.3.21), if this node stores or caches it; `None` for any other event.
    /// Deleted beams and dropped versions are neither stored nor cached.
    pub(super) async fn held_beam(&self, row: &EventRow) -> Result<Option<String>, StoreError> {
        // The display kinds of a `beam_ref` and an `edit` (§4.8), as the store keeps them.
        if row.kind != "beam" && row.kind != "edit" {
            return Ok(None);
        }
        let event: Event = serde_json::from_str(&row.json).map_err(StoreError::from_json)?;
        let key = match event.payload {
            Payload::BeamRef(r) => (r.author, r.beam),
            Payload::Edit(e) => (e.author, e.beam),
            _ => return Ok(None),
        };
        self.held_beam_at(&key).await
    }

    /// The signed JSON of the beam `key` names, if this node stores or caches it.
    async fn held_beam_at(&self, (author, id): &BeamKey) -> Result<Option<String>, StoreError> {
        // A ref names its own author's beam (§4.6), so the path is by the ref's author.
        let path = BeamPath::new(author, *id).to_string();
        Ok(match self.store.beam(&path).await? {
            Some(beam) => Some(beam.json),
            None => self.store.cached_beam(&path).await?.map(|beam| beam.json),
        })
    }

    /// [`Api::held_beam_at`] for a live event, which is delivered without its beam if the
    /// store fails: inlining is optional (§6.3.21), the event is not.
    async fn held_beam_live(&self, key: BeamKey) -> Option<String> {
        match self.held_beam_at(&key).await {
            Ok(json) => json,
            Err(e) => {
                tracing::error!(error = %crate::report::Causes(&e), beam = %key.1, "inline beam lookup failed");
                None
            }
        }
    }
}

/// The text a subscription ends with after a fault of the node.
fn internal() -> String {
    format!(
        "{}: the node failed; resume from the last seq received",
        ErrorCode::Internal.name()
    )
}

/// The text a dm subscription ends with once its subscriber is out.
fn removed() -> String {
    format!(
        "{}: the subscriber is no longer a member of this dm",
        ErrorCode::NotMember.name()
    )
}

/// Whom a stored leave, kick or ban event removes.
fn removed_member(json: &str) -> Option<Did> {
    match serde_json::from_str::<Event>(json).ok()?.payload {
        Payload::Membership(m) => Some(m.subject),
        _ => None,
    }
}
