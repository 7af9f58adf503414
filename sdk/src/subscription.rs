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

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::Stream;
use jsonrpsee::core::client::Subscription;
use northstar_protocol::address::SpaceId;
use northstar_protocol::canonical::CanonicalError;
use northstar_protocol::wire::Event;
use tokio::sync::mpsc;
use tokio_util::task::AbortOnDropHandle;
use tracing::{Instrument, debug, debug_span};

use crate::client::Client;
use crate::error::SdkError;
use crate::verify::{Accepted, LogCursor, VerifyError};

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
    space: SpaceId,
    rx: mpsc::Receiver<Result<Event, SdkError>>,
    _task: AbortOnDropHandle<()>,
}

impl EventStream {
    /// Subscribe on `client` from the cursor's position and start the task that follows.
    pub(crate) async fn start(client: Client, cursor: LogCursor) -> Result<Self, SdkError> {
        let space = cursor.space().clone();
        let subscription = client.subscribe_raw(&space, cursor.last()).await?;
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        let follower = Follower { client, cursor, tx };
        let span = debug_span!("subscription", space = %space);
        let task = tokio::spawn(follower.run(subscription).instrument(span));
        Ok(Self {
            space,
            rx,
            _task: AbortOnDropHandle::new(task),
        })
    }

    /// The space followed.
    pub fn space(&self) -> &SpaceId {
        &self.space
    }
}

impl Stream for EventStream {
    type Item = Result<Event, SdkError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx)
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

/// The task behind an [`EventStream`].
struct Follower {
    client: Client,
    cursor: LogCursor,
    tx: mpsc::Sender<Result<Event, SdkError>>,
}

impl Follower {
    async fn run(mut self, subscription: Subscription<Event>) {
        if let Stop::Failed(err) = self.follow_all(subscription).await {
            debug!(error = %err, last = self.cursor.last(), "subscription failed");
            // If the stream was dropped meanwhile there is no one left to tell.
            let _ = self.tx.send(Err(err)).await;
        }
    }

    async fn follow_all(&mut self, mut subscription: Subscription<Event>) -> Stop {
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
    async fn follow(&mut self, subscription: &mut Subscription<Event>) -> Result<bool, Stop> {
        let mut progressed = false;
        while let Some(item) = subscription.next().await {
            let event = item.map_err(|e| VerifyError::MalformedEvent {
                space: self.cursor.space().to_string(),
                source: CanonicalError::Shape {
                    reason: e.to_string(),
                },
            })?;
            self.handle(event).await?;
            progressed = true;
        }
        Ok(progressed)
    }

    async fn handle(&mut self, event: Event) -> Result<(), Stop> {
        match self.cursor.accept(&event)? {
            Accepted::Seen => Ok(()),
            Accepted::Next => self.deliver(event).await,
            Accepted::Ahead => {
                self.fill(event.seq).await?;
                match self.cursor.accept(&event)? {
                    Accepted::Seen => Ok(()),
                    Accepted::Next => self.deliver(event).await,
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
                .events_page(&space, self.cursor.last(), limit)
                .await?;
            if page.events.is_empty() {
                return Err(self.cursor.gap().into());
            }
            for event in self.cursor.accept_page(&page.events)? {
                self.deliver(event).await?;
            }
        }
        Ok(())
    }

    async fn deliver(&mut self, event: Event) -> Result<(), Stop> {
        self.tx.send(Ok(event)).await.map_err(|_| Stop::Dropped)
    }

    /// Subscribe again from the cursor, reconnecting first if the connection is gone; retry
    /// what is transient after a growing delay.
    async fn resume(&mut self, failures: &mut u32) -> Result<Subscription<Event>, Stop> {
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
            match self.client.subscribe_raw(&space, self.cursor.last()).await {
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
