//! One subscription's delivery (`space.subscribe`, `spec/protocol.md` §6.3.14): the backlog
//! from the store, then live events from the hub, in seq order with no gap and no duplicate.
//!
//! A [`Feed`] is a stream the connection polls itself, only when its socket can take more: the
//! backlog is read at the subscriber's pace, and live events wait in the hub's bounded channel
//! until the connection writes them. A subscriber that falls more than `subscriber_queue`
//! events behind the live events is cut off with `slow_subscriber`. Live events are the hub's
//! shared JSON: a thousand subscribers of a space hold one copy of each event.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;

use futures_util::Stream;
use northstar_protocol::Did;
use northstar_protocol::address::{SpaceId, SpaceType};
use northstar_protocol::api::ErrorCode;
use northstar_protocol::wire::{Event, Payload};
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;

use super::{Api, ApiError};
use crate::hub::LiveEvent;
use crate::store::EventRow;

/// What a subscription delivers next.
#[derive(Debug)]
pub enum FeedItem {
    /// One event, as a `space.event` notification's `result`.
    Event(EventJson),
    /// The subscription's last notification: its `error` text.
    End(String),
}

/// An event's signed JSON: shared with every live subscriber, or read for this one.
#[derive(Debug)]
pub enum EventJson {
    /// A live event from the hub.
    Live(Arc<LiveEvent>),
    /// An event from the store's backlog.
    Stored(String),
}

impl EventJson {
    /// The JSON text.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Live(event) => event.json.get(),
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
    live: broadcast::Receiver<Arc<LiveEvent>>,
    page: VecDeque<EventRow>,
    state: State,
}

impl Api {
    /// Open a subscription to `space` from `since` for `reader`, if they may read it.
    pub async fn subscribe(
        self: &Arc<Self>,
        space: SpaceId,
        since: u64,
        reader: Option<Did>,
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
                        return Some(FeedItem::Event(EventJson::Stored(row.json)));
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
                            return Some(FeedItem::Event(EventJson::Live(event)));
                        }
                        // A hole: events committed after the subscription began but before the
                        // backlog read ended. Fill it from the store.
                        Ok(_) => self.state = State::Backlog { more: true },
                        Err(RecvError::Lagged(_)) => {
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
                State::Ending(format!(
                    "{}: the node failed; resume from the last seq received",
                    ErrorCode::Internal.name()
                ))
            }
        }
    }
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
