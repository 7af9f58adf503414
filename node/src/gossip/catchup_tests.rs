//! Tests of the catch-up pipeline against sources in memory: read-ahead, pages that end elsewhere
//! than they claim, forged events, sources that go away or skip, and rival logs.

use std::sync::Mutex;

use northstar_protocol::address::SpaceType;
use northstar_protocol::wire::{BeamRef, SpaceGenesis};
use northstar_protocol::{ContentId, Keypair};
use tokio_util::sync::CancellationToken;

use super::*;
use crate::hub::Hub;
use crate::spaces::Writer;

/// Events per page in these tests: small, so a short log is many pages.
const PAGE: usize = 5;

/// A space's log as its sequencer signed it.
struct Log {
    owner: Keypair,
    key: Keypair,
    space: SpaceId,
    events: Vec<Event>,
}

impl Log {
    /// A genesis and `len - 1` beam refs, signed by a fresh sequencer key.
    fn new(len: u64) -> Self {
        let owner = Keypair::generate().unwrap();
        let key = Keypair::generate().unwrap();
        let space = SpaceId::new(SpaceType::Channel, owner.did(), "pipeline").unwrap();
        let mut log = Self {
            owner,
            key,
            space,
            events: Vec::new(),
        };
        log.events = log.chain(len, u64::MAX);
        log
    }

    fn sequencer(&self) -> &Did {
        self.key.did()
    }

    /// The log's events up to `len`, whose beams differ from `fork` on: a sequencer that
    /// signs it after signing the log has forked.
    fn chain(&self, len: u64, fork: u64) -> Vec<Event> {
        let genesis = SpaceGenesis::create(
            &self.owner,
            self.space.clone(),
            "Pipeline",
            self.key.did().clone(),
            "127.0.0.1:1",
            3,
            1,
        )
        .unwrap();
        let mut events = vec![
            Event::sequence(
                &self.key,
                self.space.clone(),
                1,
                None,
                1,
                Payload::Create(genesis),
            )
            .unwrap(),
        ];
        for seq in 2..=len {
            let prev = events.last().unwrap().id().unwrap();
            let beam =
                ContentId::of(&[seq.to_be_bytes(), u64::from(seq >= fork).to_be_bytes()].concat());
            let beam_ref =
                BeamRef::create(&self.owner, self.space.clone(), beam, "127.0.0.1:1", seq).unwrap();
            let event = Event::sequence(
                &self.key,
                self.space.clone(),
                seq,
                Some(prev),
                seq,
                Payload::BeamRef(beam_ref),
            )
            .unwrap();
            events.push(event);
        }
        events
    }
}

/// A source serving a log from memory, `PAGE` events at a time, that records how far ahead
/// of the replica's committed head it was asked to read.
struct Memory {
    log: Vec<Box<RawValue>>,
    space: SpaceId,
    replica: Store,
    /// Requests from this `since` on fail, as if the source went away.
    gone_from: Option<u64>,
    /// The seqs this source leaves out of its pages.
    skips: Vec<u64>,
    /// Serve each page but the genesis's newest first, so it ends elsewhere than its last
    /// event claims.
    reversed: bool,
    /// Pages asked for.
    requests: AtomicU64,
    /// The largest `since - committed head` seen.
    lead: Mutex<u64>,
}

impl Memory {
    fn new(events: &[Event], space: &SpaceId, replica: &Store) -> Self {
        Self {
            log: events
                .iter()
                .map(|e| serde_json::value::to_raw_value(e).unwrap())
                .collect(),
            space: space.clone(),
            replica: replica.clone(),
            gone_from: None,
            skips: Vec::new(),
            reversed: false,
            requests: AtomicU64::new(0),
            lead: Mutex::new(0),
        }
    }

    fn lead(&self) -> u64 {
        *self.lead.lock().unwrap()
    }
}

impl PageSource for Memory {
    fn name(&self) -> &str {
        "memory"
    }

    async fn page(
        &self,
        space: &SpaceId,
        since: u64,
        limit: u32,
    ) -> Result<EventPage, CatchUpError> {
        assert_eq!(space, &self.space);
        self.requests.fetch_add(1, Ordering::Relaxed);
        // Read after the request, so the head is if anything ahead of the one the
        // fetcher saw: the lead recorded is never more than the real one.
        let head = self
            .replica
            .space(space.as_str())
            .await
            .unwrap()
            .map_or(0, |row| row.head_seq);
        {
            let mut lead = self.lead.lock().unwrap();
            *lead = (*lead).max(since.saturating_sub(head));
        }
        if self.gone_from.is_some_and(|from| since >= from) {
            return Err(CatchUpError::Unreachable("memory went away".into()));
        }
        let mut events: Vec<_> = self
            .log
            .iter()
            .zip(1u64..)
            .filter(|(_, seq)| *seq > since && !self.skips.contains(seq))
            .take(PAGE.min(limit as usize))
            .map(|(raw, _)| raw.clone())
            .collect();
        if self.reversed && since > 0 {
            events.reverse();
        }
        Ok(EventPage {
            events,
            head_seq: self.log.len() as u64,
            beams: None,
        })
    }
}

/// A pull of the whole log from `source`; `create` for a replica not held yet.
fn pull<'a>(log: &'a Log, source: &'a Memory, create: bool) -> Pull<'a, Memory> {
    Pull {
        space: &log.space,
        source,
        create: create.then(|| log.sequencer()),
        until: None,
    }
}

/// A member node's writer and catch-up over a fresh store, stopped on drop.
struct Member {
    catch_up: CatchUp,
    store: Store,
    stop: CancellationToken,
    _dir: tempfile::TempDir,
}

impl Drop for Member {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn member() -> Member {
    let dir = tempfile::tempdir().unwrap();
    let key = Keypair::generate().unwrap();
    let at = crate::store::Storage::from_url("", dir.path()).unwrap();
    let store = Store::open(&at, key.did().as_str()).await.unwrap();
    let (writer, handle) = Writer::new(store.clone(), key.clone(), Arc::new(Hub::new(16)), None);
    let stop = CancellationToken::new();
    tokio::spawn(writer.run(stop.clone()));
    let links = Arc::new(Links::new(key.clone(), "ws://127.0.0.1:1".into()));
    Member {
        catch_up: CatchUp::new(links, store.clone(), handle, key.did().clone()),
        store,
        stop,
        _dir: dir,
    }
}

/// The replica's log: (seq, id) of every stored event, in order.
async fn held(store: &Store, space: &SpaceId) -> Vec<(u64, String)> {
    let rows = store.events(space.as_str(), 0, u32::MAX).await.unwrap();
    rows.into_iter().map(|r| (r.seq, r.id)).collect()
}

/// A later pull from an honest source, on the replica as it was left, ends with the
/// whole log.
async fn resumes_to_the_whole_log(member: &Member, log: &Log) {
    let honest = Memory::new(&log.events, &log.space, &member.store);
    let head = member
        .catch_up
        .pull(&pull(log, &honest, false))
        .await
        .unwrap();
    assert_eq!(head, log.events.len() as u64);
    assert_eq!(held(&member.store, &log.space).await, ids(&log.events));
}

fn ids(events: &[Event]) -> Vec<(u64, String)> {
    events
        .iter()
        .map(|e| (e.seq, e.id().unwrap().to_string()))
        .collect()
}

#[tokio::test]
async fn pulls_a_new_replica_over_many_pages_with_bounded_read_ahead() {
    let log = Log::new(60);
    let member = member().await;
    let source = Memory::new(&log.events, &log.space, &member.store);
    let head = member
        .catch_up
        .pull(&pull(&log, &source, true))
        .await
        .unwrap();
    assert_eq!(head, 60);
    assert_eq!(held(&member.store, &log.space).await, ids(&log.events));
    // One page committing and one verified while the next is asked for: never more.
    let most = (PAGES_IN_FLIGHT as u64 - 1) * PAGE as u64;
    assert!(source.lead() <= most, "read {} ahead", source.lead());
    // Each page asked for once: a page asked for ahead of its verified predecessor is
    // used, not asked for again.
    assert_eq!(source.requests.load(Ordering::Relaxed), 60 / PAGE as u64);
}

#[tokio::test]
async fn a_page_that_ends_elsewhere_than_it_claims_is_asked_for_again_from_its_real_end() {
    let log = Log::new(60);
    let member = member().await;
    let mut source = Memory::new(&log.events, &log.space, &member.store);
    source.reversed = true;
    let head = member
        .catch_up
        .pull(&pull(&log, &source, true))
        .await
        .unwrap();
    assert_eq!(head, 60);
    assert_eq!(held(&member.store, &log.space).await, ids(&log.events));
    // Pages asked for from a claimed end were dropped and asked for again.
    assert!(source.requests.load(Ordering::Relaxed) > 60 / PAGE as u64);
    let most = (PAGES_IN_FLIGHT as u64 - 1) * PAGE as u64;
    assert!(source.lead() <= most, "read {} ahead", source.lead());
}

#[tokio::test]
async fn a_forged_event_stops_the_pipeline_after_the_pages_before_it_and_a_later_pull_resumes() {
    let log = Log::new(60);
    let member = member().await;
    let mut forged = log.events.clone();
    // Any change voids the sequencer's signature.
    forged[32].timestamp += 1;
    let source = Memory::new(&forged, &log.space, &member.store);
    let err = member
        .catch_up
        .pull(&pull(&log, &source, true))
        .await
        .unwrap_err();
    assert!(matches!(err, CatchUpError::Forged { .. }), "{err}");
    // Every page before the forged event's page is in; nothing of or after it is.
    assert_eq!(
        held(&member.store, &log.space).await,
        ids(&log.events[..30])
    );

    resumes_to_the_whole_log(&member, &log).await;
}

#[tokio::test]
async fn a_catch_up_cut_off_mid_pipeline_resumes_with_an_identical_log() {
    let log = Log::new(60);
    let member = member().await;
    let mut source = Memory::new(&log.events, &log.space, &member.store);
    source.gone_from = Some(25);
    let err = member
        .catch_up
        .pull(&pull(&log, &source, true))
        .await
        .unwrap_err();
    assert!(matches!(err, CatchUpError::Unreachable(_)), "{err}");
    assert_eq!(
        held(&member.store, &log.space).await,
        ids(&log.events[..25])
    );

    resumes_to_the_whole_log(&member, &log).await;
}

#[tokio::test]
async fn a_source_that_skips_a_seq_leaves_the_replica_at_the_gap() {
    let log = Log::new(60);
    let member = member().await;
    let mut source = Memory::new(&log.events, &log.space, &member.store);
    source.skips = vec![18];
    let head = member
        .catch_up
        .pull(&pull(&log, &source, true))
        .await
        .unwrap();
    assert_eq!(head, 17);
    assert_eq!(
        held(&member.store, &log.space).await,
        ids(&log.events[..17])
    );
}

#[tokio::test]
async fn a_rival_log_that_does_not_link_to_the_held_head_is_refused_and_not_kept() {
    let log = Log::new(60);
    let member = member().await;
    let mut source = Memory::new(&log.events, &log.space, &member.store);
    source.gone_from = Some(30);
    member
        .catch_up
        .pull(&pull(&log, &source, true))
        .await
        .unwrap_err();
    assert_eq!(
        held(&member.store, &log.space).await,
        ids(&log.events[..30])
    );

    // The same sequencer's key signs a different event 30 and a chain after it: its 31
    // does not link to the 30 held here.
    let rival = log.chain(60, 30);
    assert_eq!(ids(&rival[..29]), ids(&log.events[..29]));
    assert_ne!(ids(&rival[29..30]), ids(&log.events[29..30]));
    let source = Memory::new(&rival, &log.space, &member.store);
    let err = member
        .catch_up
        .pull(&pull(&log, &source, false))
        .await
        .unwrap_err();
    assert!(matches!(err, CatchUpError::Forged { .. }), "{err}");
    assert_eq!(
        held(&member.store, &log.space).await,
        ids(&log.events[..30])
    );
}
