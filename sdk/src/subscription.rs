//! [`EventStream`]: a space's events, verified and in order, that survives disconnects.
//!
//! A task owned by the stream (aborted when the stream is dropped) follows the node's
//! `space.subscribe` notifications through a log cursor: an event already seen is skipped, the
//! next one is delivered, and one further ahead means the node skipped some, which are fetched
//! with `space.events` first. When the subscription ends (the connection dropped, the node cut a
//! slow subscriber off, or the client's own buffer overflowed) the task subscribes again from the
//! last seq it delivered, on a new authenticated connection if the old one is gone, waiting a
//! bounded, growing delay between attempts. So the consumer sees every event once, in order.
//!
//! What cannot be retried ends the stream after one `Err`: an event that does not verify, or a
//! refusal such as `not_member`.
//!
//! [`EventWithBeamStream`] is the same task on a subscription that asked for the beams inline:
//! each item's beam is checked against its event's ref before it is delivered.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::Stream;
use jsonrpsee::core::client::Subscription;
use northstar_protocol::address::SpaceId;
use northstar_protocol::api::EventItem;
use northstar_protocol::canonical::CanonicalError;
use northstar_protocol::wire::Event;
use tokio::sync::mpsc;
use tokio_util::task::AbortOnDropHandle;
use tracing::{Instrument, debug, debug_span};

use crate::client::Client;
use crate::error::SdkError;
use crate::verify::{Accepted, EventWithBeam, LogCursor, VerifyError};

/// Events the task may have delivered that the consumer has not taken yet. When it is full the
/// task waits; notifications then queue in the connection's per-subscription buffer, and if that
/// overflows too the subscription ends and is resumed from the cursor, so nothing is lost.
const STREAM_BUFFER: usize = 64;

/// The first wait before subscribing again.
const BACKOFF_FIRST: Duration = Duration::from_millis(100);

/// The longest wait between two attempts to subscribe again.
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// The most events fetched per `space.events` call when filling a gap, if the node sets no
/// lower `max_page`.
const FILL_PAGE: u32 = 500;

/// A space's events, each verified under the space's sequencer and linked to the one before,
/// delivered once and in `seq` order; see the [module docs](self).
///
/// Yields `Err` once, then ends, when something cannot be retried. Dropping the stream stops
/// its task and unsubscribes.
#[derive(Debug)]
pub struct EventStream {
    /// The same subscription without beams inline; its items lose their (absent) beam.
    inner: EventWithBeamStream,
}

impl EventStream {
    /// Subscribe on `client` from the cursor's position and start the task that follows.
    pub(crate) async fn start(client: Client, cursor: LogCursor) -> Result<Self, SdkError> {
        let inner = EventWithBeamStream::follow(client, cursor, false).await?;
        Ok(Self { inner })
    }

    /// The space followed.
    pub fn space(&self) -> &SpaceId {
        self.inner.space()
    }
}

impl Stream for EventStream {
    type Item = Result<Event, SdkError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Pin::new(&mut self.inner)
            .poll_next(cx)
            .map(|item| item.map(|item| item.map(|item| item.event)))
    }
}

/// Like [`EventStream`], on a subscription that asked for the beams inline
/// (`spec/protocol.md` §6.3.14): each event comes with the beam its `beam_ref` names when the
/// node sent it, checked against the ref as [`Client::get_beam`] checks its answer. A beam
/// that fails the check ends the stream with that `Err`, as a bad event does. Gaps are filled
/// from pages that ask for beams too.
#[derive(Debug)]
pub struct EventWithBeamStream {
    space: SpaceId,
    rx: mpsc::Receiver<Result<EventWithBeam, SdkError>>,
    _task: AbortOnDropHandle<()>,
}

impl EventWithBeamStream {
    /// Subscribe with beams inline on `client` from the cursor's position and start the task
    /// that follows.
    pub(crate) async fn start(client: Client, cursor: LogCursor) -> Result<Self, SdkError> {
        Self::follow(client, cursor, true).await
    }

    /// Subscribe (with beams inline if `beams`) and start the task that follows.
    async fn follow(client: Client, cursor: LogCursor, beams: bool) -> Result<Self, SdkError> {
        let (space, rx, task) = follow(client, cursor, beams).await?;
        Ok(Self {
            space,
            rx,
            _task: task,
        })
    }

    /// The space followed.
    pub fn space(&self) -> &SpaceId {
        &self.space
    }
}

impl Stream for EventWithBeamStream {
    type Item = Result<EventWithBeam, SdkError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx)
    }
}

/// What either stream's task hands over.
type Follow = (
    SpaceId,
    mpsc::Receiver<Result<EventWithBeam, SdkError>>,
    AbortOnDropHandle<()>,
);

/// Subscribe (with beams inline if `beams`) and start the task that follows.
async fn follow(client: Client, cursor: LogCursor, beams: bool) -> Result<Follow, SdkError> {
    let space = cursor.space().clone();
    let subscription = client.subscribe_raw(&space, cursor.last(), beams).await?;
    let (tx, rx) = mpsc::channel(STREAM_BUFFER);
    let follower = Follower {
        client,
        cursor,
        beams,
        tx,
    };
    let span = debug_span!("subscription", space = %space, beams);
    let task = tokio::spawn(follower.run(subscription).instrument(span));
    Ok((space, rx, AbortOnDropHandle::new(task)))
}

/// A `space.subscribe` subscription of either form.
pub(crate) enum RawSubscription {
    /// Notifications carry events.
    Plain(Subscription<Event>),
    /// Notifications carry event items, with beams inline.
    Inline(Subscription<EventItem>),
}

/// One notification of either form.
enum Notified {
    Plain(Box<Event>),
    Inline(EventItem),
}

impl RawSubscription {
    async fn next(&mut self) -> Option<Result<Notified, serde_json::Error>> {
        match self {
            Self::Plain(sub) => Some(sub.next().await?.map(|e| Notified::Plain(Box::new(e)))),
            Self::Inline(sub) => Some(sub.next().await?.map(Notified::Inline)),
        }
    }
}

/// Why the task stopped.
enum Stop {
    /// The stream was dropped: no one to tell.
    Dropped,
    /// Something that cannot be retried.
    Failed(SdkError),
}

impl From<SdkError> for Stop {
    fn from(err: SdkError) -> Self {
        Stop::Failed(err)
    }
}

impl From<VerifyError> for Stop {
    fn from(err: VerifyError) -> Self {
        Stop::Failed(err.into())
    }
}

/// The task behind an [`EventStream`] or an [`EventWithBeamStream`].
struct Follower {
    client: Client,
    cursor: LogCursor,
    /// Whether the subscription and the pages that fill its gaps ask for beams inline.
    beams: bool,
    tx: mpsc::Sender<Result<EventWithBeam, SdkError>>,
}

impl Follower {
    async fn run(mut self, subscription: RawSubscription) {
        if let Stop::Failed(err) = self.follow_all(subscription).await {
            debug!(error = %err, last = self.cursor.last(), "subscription failed");
            // If the stream was dropped meanwhile there is no one left to tell.
            let _ = self.tx.send(Err(err)).await;
        }
    }

    async fn follow_all(&mut self, mut subscription: RawSubscription) -> Stop {
        let mut failures: u32 = 0;
        loop {
            match self.follow(&mut subscription).await {
                Ok(progressed) => {
                    if progressed {
                        failures = 0;
                    }
                    debug!(last = self.cursor.last(), "subscription ended");
                }
                Err(Stop::Failed(err)) if err.is_transient() => {
                    debug!(error = %err, last = self.cursor.last(), "subscription interrupted");
                }
                Err(stop) => return stop,
            }
            subscription = match self.resume(&mut failures).await {
                Ok(subscription) => subscription,
                Err(stop) => return stop,
            };
        }
    }

    /// Deliver events until the subscription ends; whether any came.
    async fn follow(&mut self, subscription: &mut RawSubscription) -> Result<bool, Stop> {
        let mut progressed = false;
        while let Some(item) = subscription.next().await {
            let item = item.map_err(|e| VerifyError::MalformedEvent {
                space: self.cursor.space().to_string(),
                source: CanonicalError::Shape {
                    reason: e.to_string(),
                },
            })?;
            let (placed, item) = match item {
                Notified::Plain(event) => (
                    self.cursor.accept(&event)?,
                    EventWithBeam {
                        event: *event,
                        beam: None,
                    },
                ),
                Notified::Inline(item) => self.cursor.accept_item(&item)?,
            };
            self.handle(placed, item).await?;
            progressed = true;
        }
        Ok(progressed)
    }

    async fn handle(&mut self, placed: Accepted, item: EventWithBeam) -> Result<(), Stop> {
        match placed {
            Accepted::Seen => Ok(()),
            Accepted::Next => self.deliver(item).await,
            Accepted::Ahead => {
                self.fill(item.event.seq).await?;
                match self.cursor.accept(&item.event)? {
                    Accepted::Seen => Ok(()),
                    Accepted::Next => self.deliver(item).await,
                    Accepted::Ahead => Err(self.cursor.gap().into()),
                }
            }
        }
    }

    /// Fetch and deliver the events between the cursor and `until`.
    async fn fill(&mut self, until: u64) -> Result<(), Stop> {
        let max_page = self.client.node_info().limits.max_page;
        let limit = if max_page == 0 {
            FILL_PAGE
        } else {
            max_page.min(FILL_PAGE)
        };
        debug!(from = self.cursor.last(), until, "filling a gap");
        while self.cursor.last() + 1 < until {
            let space = self.cursor.space().clone();
            let page = self
                .client
                .events_page(&space, self.cursor.last(), limit, self.beams)
                .await?;
            if page.events.is_empty() {
                return Err(self.cursor.gap().into());
            }
            let items = if self.beams {
                let beams = page.beams.as_deref().unwrap_or_default();
                self.cursor.accept_page_with_beams(&page.events, beams)?
            } else {
                self.cursor
                    .accept_page(&page.events)?
                    .into_iter()
                    .map(|event| EventWithBeam { event, beam: None })
                    .collect()
            };
            for item in items {
                self.deliver(item).await?;
            }
        }
        Ok(())
    }

    async fn deliver(&mut self, item: EventWithBeam) -> Result<(), Stop> {
        self.tx.send(Ok(item)).await.map_err(|_| Stop::Dropped)
    }

    /// Subscribe again from the cursor, reconnecting first if the connection is gone; retry
    /// what is transient after a growing delay.
    async fn resume(&mut self, failures: &mut u32) -> Result<RawSubscription, Stop> {
        loop {
            if self.tx.is_closed() {
                return Err(Stop::Dropped);
            }
            tokio::time::sleep(backoff(*failures)).await;
            *failures = failures.saturating_add(1);
            if !self.client.is_connected() {
                match self.client.reconnect().await {
                    Ok(client) => self.client = client,
                    Err(err) if err.is_transient() => {
                        debug!(error = %err, attempt = *failures, "reconnect failed");
                        continue;
                    }
                    Err(err) => return Err(err.into()),
                }
            }
            let space = self.cursor.space().clone();
            match self
                .client
                .subscribe_raw(&space, self.cursor.last(), self.beams)
                .await
            {
                Ok(subscription) => {
                    debug!(since = self.cursor.last(), "subscribed again");
                    return Ok(subscription);
                }
                Err(err) if err.is_transient() => {
                    debug!(error = %err, attempt = *failures, "subscribing again failed");
                }
                Err(err) => return Err(err.into()),
            }
        }
    }
}

/// The wait before attempt `failures + 1`: doubling from [`BACKOFF_FIRST`], at most
/// [`BACKOFF_MAX`].
fn backoff(failures: u32) -> Duration {
    BACKOFF_FIRST
        .saturating_mul(1u32.checked_shl(failures.min(16)).unwrap_or(u32::MAX))
        .min(BACKOFF_MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_stays_bounded() {
        assert_eq!(backoff(0), Duration::from_millis(100));
        assert_eq!(backoff(1), Duration::from_millis(200));
        assert_eq!(backoff(3), Duration::from_millis(800));
        assert_eq!(backoff(6), BACKOFF_MAX);
        assert_eq!(backoff(u32::MAX), BACKOFF_MAX);
    }
}
