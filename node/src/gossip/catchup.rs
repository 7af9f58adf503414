//! Catch-up: pulling a replica's missing events from the sequencer or any member node.
//!
//! A pull reads a seq range (`space.events`), verifies every event and hands it to the writer,
//! as a pipeline: while the writer commits a page, the next is verified and the one after it
//! fetched, with at most [`PAGES_IN_FLIGHT`] pages held. It runs on a gap, after a join, at
//! start-up and every `sync_interval_secs` (config) for every replica.

use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use northstar_protocol::address::SpaceId;
use northstar_protocol::api::EventPage;
use northstar_protocol::chain::Chain;
use northstar_protocol::rpc::SpaceApiClient;
use northstar_protocol::wire::{Event, Home, Payload};
use northstar_protocol::{ContentId, Did};
use serde_json::value::RawValue;
use tokio::sync::{Semaphore, SemaphorePermit, mpsc};

use crate::federation::{LinkError, Links};
use crate::spaces::replica::verify_page;
use crate::spaces::{Identified, SequenceError, SequencerHandle};
use crate::store::Store;

/// Events per catch-up page (a source also cuts pages by bytes, to fit one message).
const PULL_PAGE: u32 = 200;

/// Pages one catch-up holds at most, from the request that fetches a page to the commit that
/// stores it: one being fetched, one being verified, one being committed. Each stage then
/// overlaps the other two (the network, the cores, the writer and its disk); a deeper pipeline
/// would only hold more memory, since the slowest stage sets the pace. A page that has to wait
/// for a slot waits before it is asked for.
const PAGES_IN_FLIGHT: usize = 3;

/// Pulls missing events from other nodes.
#[derive(Debug, Clone)]
pub struct CatchUp {
    links: Arc<Links>,
    store: Store,
    writer: SequencerHandle,
    own: Did,
    metrics: Option<Arc<crate::metrics::Metrics>>,
    delivery: Option<Arc<crate::delivery::Delivery>>,
}

/// Why a catch-up did not reach its target.
#[derive(Debug, thiserror::Error)]
pub enum CatchUpError {
    /// No source answered.
    #[error("no node could serve the missing events: {0}")]
    Unreachable(String),
    /// A source sent an event that does not verify.
    #[error("{source_node} sent an event that does not verify: {reason}")]
    Forged {
        /// Who sent it.
        source_node: String,
        /// What was wrong.
        reason: String,
    },
    /// The writer failed.
    #[error(transparent)]
    Writer(#[from] SequenceError),
}

/// Where a catch-up reads a space's log: a node over a link (or, in tests, memory).
pub(crate) trait PageSource: Sync {
    /// Who serves the pages, for errors and logs.
    fn name(&self) -> &str;

    /// Up to `limit` events of `space` with `seq > since`, oldest first.
    fn page(
        &self,
        space: &SpaceId,
        since: u64,
        limit: u32,
    ) -> impl Future<Output = Result<EventPage, CatchUpError>> + Send;
}

/// A node's `space.events`, over this node's link to it.
struct LinkSource<'a> {
    links: &'a Links,
    authority: &'a str,
}

impl PageSource for LinkSource<'_> {
    fn name(&self) -> &str {
        self.authority
    }

    async fn page(
        &self,
        space: &SpaceId,
        since: u64,
        limit: u32,
    ) -> Result<EventPage, CatchUpError> {
        let unreachable = |e: LinkError| CatchUpError::Unreachable(e.to_string());
        let link = self.links.get(self.authority).await.map_err(unreachable)?;
        SpaceApiClient::events(link.client.as_ref(), space.clone(), since, limit, None)
            .await
            .map_err(|e| unreachable(LinkError::from_call(self.authority, e)))
    }
}

/// A page of events, verified, with their ids.
struct VerifiedPage<'a> {
    events: Vec<Identified>,
    /// The highest seq in the page: where the writer's head must be once it took the page.
    last: u64,
    /// The page's place among the [`PAGES_IN_FLIGHT`], given back once it is committed.
    _slot: SemaphorePermit<'a>,
}

/// A page asked for before the page before it was verified.
struct Ahead<'a> {
    /// Where it starts: it is used only if the page before it, verified, ends there.
    since: u64,
    page: Result<EventPage, CatchUpError>,
    slot: SemaphorePermit<'a>,
}

/// What one pull is after, and from where.
struct Pull<'a, S> {
    space: &'a SpaceId,
    source: &'a S,
    /// Start a new replica from its genesis, which must name this sequencer.
    create: Option<&'a Did>,
    /// Stop once the head reaches this seq (else at the source's head).
    until: Option<u64>,
}

/// How a pipeline ended without an error.
#[derive(Debug, PartialEq, Eq)]
enum Ended {
    /// Every page was taken: the source had no more, or the target was reached. The head.
    Done(u64),
    /// The writer stopped inside a page (a gap the source skipped over); the pages after it
    /// were dropped. The head.
    Short(u64),
}

impl CatchUp {
    /// Catch-up for the node `own`, pulling over `links` into `writer`.
    pub fn new(links: Arc<Links>, store: Store, writer: SequencerHandle, own: Did) -> Self {
        Self {
            links,
            store,
            writer,
            own,
            metrics: None,
            delivery: None,
        }
    }

    /// Count the events each catch-up adds in `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<crate::metrics::Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Report each replica's head to its sequencer through `delivery` after each sync
    /// (delivery health, `spec/protocol.md` §9.9).
    pub fn with_delivery(mut self, delivery: Arc<crate::delivery::Delivery>) -> Self {
        self.delivery = Some(delivery);
        self
    }

    /// Pull events of `space` from the first of `sources` that answers, until `until` (or the
    /// source's head). `create` starts a replica this node does not hold yet from its genesis,
    /// which must name `expect_sequencer`, the node we asked to join. Returns the new head.
    pub async fn run(
        &self,
        space: &SpaceId,
        sources: &[String],
        create: Option<&Did>,
        until: Option<u64>,
    ) -> Result<u64, CatchUpError> {
        let mut failures = Vec::new();
        for source in sources {
            let source = LinkSource {
                links: &self.links,
                authority: source,
            };
            let pull = Pull {
                space,
                source: &source,
                create,
                until,
            };
            match self.pull(&pull).await {
                Ok(head) => return Ok(head),
                Err(CatchUpError::Writer(e)) => return Err(CatchUpError::Writer(e)),
                Err(e) => failures.push(e.to_string()),
            }
        }
        Err(CatchUpError::Unreachable(failures.join("; ")))
    }

    async fn pull(&self, pull: &Pull<'_, impl PageSource>) -> Result<u64, CatchUpError> {
        let space = pull.space;
        let mut head = match self
            .store
            .space(space.as_str())
            .await
            .map_err(SequenceError::from)?
        {
            Some(row) => row.head_seq,
            None if pull.create.is_some() => 0,
            None => {
                return Err(CatchUpError::Unreachable(format!(
                    "{space} is not replicated here"
                )));
            }
        };
        loop {
            match self.pipeline(pull, head).await? {
                Ended::Done(end) => return Ok(end),
                // Ask again from what the writer holds, as a sequential pull would have, but
                // only while that moves: a source that keeps skipping the same seq is done.
                Ended::Short(end) if end > head => head = end,
                Ended::Short(end) => return Ok(end),
            }
        }
    }

    /// Fetch and verify pages from `from` on while the writer commits the ones before: at most
    /// [`PAGES_IN_FLIGHT`] pages are held at once. Only verified pages reach the writer, each
    /// in one transaction, so stopping anywhere leaves a replica that is a gap-free prefix of
    /// the log, and the next pull resumes from its head. After a fetch or verification error,
    /// the pages verified before it are still committed and then the error is returned.
    async fn pipeline(
        &self,
        pull: &Pull<'_, impl PageSource>,
        from: u64,
    ) -> Result<Ended, CatchUpError> {
        let committed = AtomicU64::new(from);
        let slots = Semaphore::new(PAGES_IN_FLIGHT);
        // Never full: the slots bound the pages, wherever they are.
        let (tx, rx) = mpsc::channel(PAGES_IN_FLIGHT);
        let mut fetch = pin!(self.fetch(pull, &committed, &slots, tx));
        let mut commit = pin!(self.commit(pull, rx, &committed));
        let mut fetched = None;
        loop {
            tokio::select! {
                result = &mut fetch, if fetched.is_none() => fetched = Some(result),
                // Returning drops the fetcher, and with it any page it still holds.
                ended = &mut commit => {
                    return match (ended?, fetched) {
                        (Ended::Done(_), Some(Err(e))) => Err(e),
                        (ended, _) => Ok(ended),
                    };
                }
            }
        }
    }

    /// The fetching half of [`CatchUp::pipeline`]: fetch and verify pages, in order, into
    /// `pages`, until the source has no more, `until` is reached or the committer stops. While
    /// a page is verified, the next one is already asked for, from where the unverified page
    /// says it ends; once verified, it is used only if the page really ends there.
    async fn fetch<'a>(
        &self,
        pull: &Pull<'_, impl PageSource>,
        committed: &AtomicU64,
        slots: &'a Semaphore,
        pages: mpsc::Sender<VerifiedPage<'a>>,
    ) -> Result<(), CatchUpError> {
        let Pull {
            space,
            source,
            create,
            until,
        } = *pull;
        let mut cursor = committed.load(Ordering::Relaxed);
        // Set up once: a space's sequencer never changes, and a new replica's genesis is not in
        // the store until its page commits, while the next pages are already being verified.
        let mut chain: Option<Chain> = None;
        let mut ahead: Option<Ahead<'a>> = None;
        loop {
            // Another pull of the same space may have moved the head past this one.
            cursor = cursor.max(committed.load(Ordering::Relaxed));
            if until.is_some_and(|u| cursor >= u) {
                return Ok(());
            }
            let (page, slot) = match ahead.take() {
                Some(ahead) if ahead.since == cursor => (ahead.page?, ahead.slot),
                stale => {
                    // A page that starts elsewhere gives its slot back before we wait for one.
                    drop(stale);
                    let slot = slots.acquire().await.map_err(|_| {
                        CatchUpError::Unreachable("the catch-up was stopped".into())
                    })?;
                    (source.page(space, cursor, PULL_PAGE).await?, slot)
                }
            };
            if page.events.is_empty() {
                return Ok(());
            }
            let mut checker = match chain.take() {
                // Another pull moved the head: continue from there, its id unknown here (the
                // writer checks the link to what it holds).
                Some(c) if c.head() < cursor => {
                    Chain::after(space.clone(), c.sequencer().clone(), cursor, None)
                }
                Some(c) => c,
                None => self.chain_of(space, &page, create, cursor).await?,
            };
            let source_head = page.head_seq;
            // Only a hint: the page is not verified yet.
            let next = claimed_end(&page.events)
                .filter(|&end| end > cursor && end < source_head && until.is_none_or(|u| end < u))
                // With no slot free the writer is the slowest stage: asking early gains nothing.
                .and_then(|end| slots.try_acquire().ok().map(|slot| (end, slot)));
            // Parsing and strict verification take most of a catch-up: spread them over every
            // core, off the async workers.
            let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
            let verify = tokio::task::spawn_blocking(move || {
                let verified = verify_page(&mut checker, &page.events, threads);
                (checker, verified)
            });
            let verified = match next {
                Some((since, slot)) => {
                    let (verified, page) =
                        tokio::join!(verify, source.page(space, since, PULL_PAGE));
                    ahead = Some(Ahead { since, page, slot });
                    verified
                }
                None => verify.await,
            };
            let (checker, verified) = verified.map_err(|e| forged(source.name(), e))?;
            let events = verified.map_err(|e| forged(source.name(), e))?;
            let last = checker.head();
            chain = Some(checker);
            let page = VerifiedPage {
                events,
                last,
                _slot: slot,
            };
            if pages.send(page).await.is_err() {
                // The committer stopped; it says why.
                return Ok(());
            }
            // Pages are cut by bytes as well as by count: only the source's head says when
            // there is no more. A page that does not move the cursor ends the pull, so a
            // source replaying old events cannot keep it going.
            if last >= source_head || last <= cursor {
                return Ok(());
            }
            cursor = last;
        }
    }

    /// The committing half of [`CatchUp::pipeline`]: hand each verified page to the writer and
    /// wait for its commit before the next, so pages land in order.
    async fn commit(
        &self,
        pull: &Pull<'_, impl PageSource>,
        mut pages: mpsc::Receiver<VerifiedPage<'_>>,
        committed: &AtomicU64,
    ) -> Result<Ended, CatchUpError> {
        let mut head = committed.load(Ordering::Relaxed);
        while let Some(page) = pages.recv().await {
            let outcome = self
                .writer
                .replicate_identified(page.events, pull.create.is_some())
                .await?;
            if let Some(metrics) = &self.metrics {
                metrics.caught_up.inc_by(u64::from(outcome.accepted));
            }
            if let Some(reason) = outcome.refused {
                return Err(forged(pull.source.name(), reason));
            }
            head = head.max(outcome.head);
            committed.store(head, Ordering::Relaxed);
            if outcome.head < page.last {
                return Ok(Ended::Short(head));
            }
        }
        Ok(Ended::Done(head))
    }

    /// The chain a pull's pages must continue: the replica's, from its head, or for a new
    /// replica the one its genesis starts, which must name the node we joined through.
    async fn chain_of(
        &self,
        space: &SpaceId,
        page: &EventPage,
        create: Option<&Did>,
        cursor: u64,
    ) -> Result<Chain, CatchUpError> {
        if let Some(row) = self
            .store
            .space(space.as_str())
            .await
            .map_err(SequenceError::from)?
        {
            let sequencer = Did::parse(&row.sequencer).map_err(|e| forged("the store", e))?;
            let head_id = match row.head_seq == cursor {
                true => Some(ContentId::parse(&row.head_id).map_err(|e| forged("the store", e))?),
                false => None,
            };
            return Ok(Chain::after(space.clone(), sequencer, cursor, head_id));
        }
        let first = page.events.first().map(|raw| raw.get()).unwrap_or_default();
        let event: Event = northstar_protocol::canonical::from_str_strict(first)
            .map_err(|e| forged("the sequencer", e))?;
        match (&event.payload, create) {
            (Payload::Create(genesis), Some(expected)) if &genesis.sequencer == expected => {
                genesis.verify().map_err(|e| forged("the sequencer", e))?;
                genesis
                    .check_rules()
                    .map_err(|e| forged("the sequencer", e))?;
                Ok(Chain::from_start(space.clone(), genesis.sequencer.clone()))
            }
            _ => Err(forged(
                "the sequencer",
                "the first event is not a genesis naming the node we joined through",
            )),
        }
    }

    /// Every replica: ask its sequencer (else its other member nodes) for what it missed.
    pub async fn sync_all(&self) {
        let replicas = match self.store.replicated_spaces(self.own.as_str()).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %crate::report::Causes(&e), "cannot list replicas to sync");
                return;
            }
        };
        for row in replicas {
            let Ok(space) = SpaceId::parse(&row.id) else {
                continue;
            };
            let mut sources = vec![row.authority.clone()];
            if let Ok(members) = self.store.members(&row.id).await {
                for m in members {
                    if let Some(home) = m
                        .home
                        .filter(|h| h.node != self.own.as_str() && !sources.contains(&h.authority))
                    {
                        sources.push(home.authority);
                    }
                }
            }
            match self.run(&space, &sources, None, None).await {
                Ok(head) => {
                    if let (Some(delivery), Ok(sequencer)) =
                        (&self.delivery, Did::parse(&row.sequencer))
                    {
                        delivery.held(&space, head, Home::new(sequencer, row.authority.clone()));
                    }
                }
                Err(e) => {
                    tracing::debug!(space = %space, error = %crate::report::Causes(&e), "sync incomplete");
                }
            }
        }
    }
}

/// Where a page says it ends: the seq of its last event, read without checking anything else.
fn claimed_end(events: &[Box<RawValue>]) -> Option<u64> {
    #[derive(serde::Deserialize)]
    struct Seq {
        seq: u64,
    }
    let last = events.last()?;
    serde_json::from_str::<Seq>(last.get()).ok().map(|s| s.seq)
}

fn forged(source: &str, reason: impl std::fmt::Display) -> CatchUpError {
    CatchUpError::Forged {
        source_node: source.to_owned(),
        reason: reason.to_string(),
    }
}

#[cfg(test)]
#[path = "catchup_tests.rs"]
mod tests;
