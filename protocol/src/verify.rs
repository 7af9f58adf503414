//! A client's checks of what a node sends, before an app sees it: events against their space's
//! sequencer and their log, beams against the path they were asked for. The Rust SDK and the
//! browser SDK (`web/`) both make them through this module, so they cannot drift apart.
//!
//! A node is trusted to serve, not to be honest: every event a client hands out verifies under
//! the sequencer's DID (which the space's genesis names), follows the event before it
//! (`seq` + 1, `prev` = its id), and every beam verifies under its author and has the content id
//! its path names.
//!
//! A beam a node sends inline with an event ([`EventWithBeam`]) is checked exactly as
//! `beam.get`'s answer is: it parses strictly, verifies under its author, has the content id
//! the event's ref names, and its author is the ref's author; beside an `edit` event it is
//! checked as the version the edit names ([`check_version`]). A beam's history
//! ([`check_history`]) is checked edit by edit, in the order of `spec/` §4.10. A beam that fails
//! is an error, never data; so is a beam beside an event that names none.

use crate::address::{BeamPath, SpaceId, author_hash};
use crate::api::BeamHistory;
use crate::api::EventItem;
use crate::canonical::{self, CanonicalError};
use crate::chain::{Chain, ChainError, Place};
use crate::sign::{self, SignatureError};
use crate::wire::edit::{VersionKey, original_key};
use crate::wire::{Beam, Edit, Event, EventError, Payload};
use crate::{ContentId, Did, Signed};
use serde_json::value::RawValue;

/// Why something a node sent was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The node did not serve the space's genesis as its first event, so the space's
    /// sequencer cannot be established.
    #[error("the node did not serve a valid genesis of {space}")]
    NoGenesis {
        /// The space asked about.
        space: String,
    },
    /// The node sent something that does not parse as an event.
    #[error("the node sent a malformed event of {space}")]
    MalformedEvent {
        /// The space asked about.
        space: String,
        /// What is wrong with it.
        #[source]
        source: CanonicalError,
    },
    /// An event fails verification by itself: its shape or a signature.
    #[error("event {seq} of {space} fails verification")]
    BadEvent {
        /// The space.
        space: String,
        /// The event's seq.
        seq: u64,
        /// What is wrong with it.
        #[source]
        source: EventError,
    },
    /// The node sent an event of another space than the one asked about.
    #[error("asked for events of {expected}, the node sent event {seq} of {actual}")]
    WrongSpace {
        /// The space asked about.
        expected: String,
        /// The event's space.
        actual: String,
        /// The event's seq.
        seq: u64,
    },
    /// Events are not consecutive where they must be.
    #[error("events of {space} out of order: expected seq {expected}, got {actual}")]
    OutOfOrder {
        /// The space.
        space: String,
        /// The seq that should have come.
        expected: u64,
        /// The seq that came.
        actual: u64,
    },
    /// An event's `prev` is not the id of the event before: the log was forked or altered.
    #[error("event {seq} of {space} does not link to the event before it")]
    BrokenChain {
        /// The space.
        space: String,
        /// The event's seq.
        seq: u64,
    },
    /// The node announced events it then did not deliver.
    #[error("the node skipped events of {space} after seq {after} and cannot fill the gap")]
    Gap {
        /// The space.
        space: String,
        /// The last seq received before the gap.
        after: u64,
    },
    /// The space's genesis names another sequencer than the one whose signature its events
    /// carry: the node that served the space is not the one its owner chose.
    #[error("the genesis of {space} names sequencer {named}, its events are signed by {signer}")]
    WrongSequencer {
        /// The space.
        space: String,
        /// The sequencer the genesis names.
        named: String,
        /// The DID the events were checked against.
        signer: String,
    },
    /// A beam's signature does not verify under its author.
    #[error("beam {path} is not validly signed by its author")]
    BadBeam {
        /// The path asked for.
        path: String,
        /// Why verification failed.
        #[source]
        source: SignatureError,
    },
    /// A beam is not the one its path names (another content id or another author).
    #[error("asked for beam {expected}, the node sent beam {actual}")]
    WrongBeam {
        /// The path asked for.
        expected: String,
        /// The path of what came.
        actual: String,
    },
    /// A beam sent inline does not parse strictly as a beam.
    #[error("the node sent a malformed beam with event {seq} of {space}")]
    MalformedBeam {
        /// The space.
        space: String,
        /// The seq of the event it came with (for a page: the page's first).
        seq: u64,
        /// What is wrong with it.
        #[source]
        source: CanonicalError,
    },
    /// A beam came inline with an event that is not a `beam_ref`, or in a page whose refs do
    /// not name it.
    #[error("the node sent beam {path} with events of {space} that do not refer to it")]
    UnaskedBeam {
        /// The space.
        space: String,
        /// The beam's path (or what could be made of it).
        path: String,
    },
    /// A beam's history is not what the path's edits make it (`spec/` §4.10, §6.3.26).
    #[error("the node sent a wrong history of beam {path}: {reason}")]
    BadHistory {
        /// The original's path.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// A listing by author returned a beam by someone else.
    #[error("asked for beams by {expected}, the node sent one by {actual}")]
    WrongAuthor {
        /// The author asked about.
        expected: String,
        /// The beam's author.
        actual: String,
    },
}

/// Parse an event exactly as the node sent it, strictly (duplicate keys, floats and unsafe
/// integers refused).
pub fn parse_event(raw: &RawValue, space: &SpaceId) -> Result<Event, VerifyError> {
    canonical::from_str_strict(raw.get()).map_err(|source| VerifyError::MalformedEvent {
        space: space.to_string(),
        source,
    })
}

/// The sequencer a space's first event names, after checking that the event is the space's
/// genesis, signed by the space's owner and sequenced by the node it names.
pub fn genesis_sequencer(raw: &RawValue, space: &SpaceId) -> Result<Did, VerifyError> {
    let event = parse_event(raw, space)?;
    let no_genesis = || VerifyError::NoGenesis {
        space: space.to_string(),
    };
    let Payload::Create(genesis) = &event.payload else {
        return Err(no_genesis());
    };
    if event.seq != 1 || event.space != *space || genesis.space != *space {
        return Err(no_genesis());
    }
    event
        .verify(&genesis.sequencer)
        .map_err(|source| VerifyError::BadEvent {
            space: space.to_string(),
            seq: event.seq,
            source,
        })?;
    Ok(genesis.sequencer.clone())
}

/// What [`LogCursor::accept`] made of an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Accepted {
    /// The next event; the cursor moved to it.
    Next,
    /// An event at or before the cursor: seen already.
    Seen,
    /// An event past the next one: the events after the cursor up to it are missing.
    Ahead,
}

/// A position in one space's log: the protocol's chain check ([`Chain`]) over the events
/// accepted so far.
#[derive(Debug, Clone)]
pub struct LogCursor {
    chain: Chain,
}

impl LogCursor {
    /// A cursor after event `since` of `space`, whose events `sequencer` signs. The id of event
    /// `since` is unknown, so the first event's `prev` is taken on trust (its signature is not).
    pub fn new(space: SpaceId, sequencer: Did, since: u64) -> Self {
        Self {
            chain: Chain::after(space, sequencer, since, None),
        }
    }

    /// A cursor after event `since` of `space`, whose content id is `head_id` when the reader
    /// kept it: then the next event must link to it, so a reader that resumes (after a reload,
    /// say) keeps the whole chain checked.
    pub fn after(space: SpaceId, sequencer: Did, since: u64, head_id: Option<ContentId>) -> Self {
        Self {
            chain: Chain::after(space, sequencer, since, head_id),
        }
    }

    /// The content id of the last event accepted, if known.
    pub fn head_id(&self) -> Option<ContentId> {
        self.chain.head_id()
    }

    /// The DID whose signature every event must carry.
    pub fn sequencer(&self) -> &Did {
        self.chain.sequencer()
    }

    /// The space followed.
    pub fn space(&self) -> &SpaceId {
        self.chain.space()
    }

    /// The last seq accepted.
    pub fn last(&self) -> u64 {
        self.chain.head()
    }

    /// Verify `event` and place it: the next one moves the cursor, provided it links to the
    /// event before.
    pub fn accept(&mut self, event: &Event) -> Result<Accepted, VerifyError> {
        let result = self.chain.accept(event);
        let space = || self.chain.space().to_string();
        match result {
            Ok(Place::Next) => Ok(Accepted::Next),
            Ok(Place::Head | Place::Behind) => Ok(Accepted::Seen),
            Ok(Place::Ahead) => Ok(Accepted::Ahead),
            Err(ChainError::WrongSpace {
                expected,
                actual,
                seq,
            }) => Err(VerifyError::WrongSpace {
                expected,
                actual,
                seq,
            }),
            Err(ChainError::Event { seq, source }) => Err(VerifyError::BadEvent {
                space: space(),
                seq,
                source,
            }),
            Err(ChainError::WrongSequencer { named, signer }) => Err(VerifyError::WrongSequencer {
                space: space(),
                named,
                signer,
            }),
            // A rival for a seq held, a broken link, or an event without an id: the log was
            // forked or altered.
            Err(
                ChainError::BrokenLink { seq, .. }
                | ChainError::Fork { seq, .. }
                | ChainError::NoId { seq, .. },
            ) => Err(VerifyError::BrokenChain {
                space: space(),
                seq,
            }),
        }
    }

    /// Accept a page of `space.events`: every event must be the next one.
    pub fn accept_page(&mut self, raw: &[Box<RawValue>]) -> Result<Vec<Event>, VerifyError> {
        let mut events = Vec::with_capacity(raw.len());
        for raw in raw {
            let event = parse_event(raw, self.chain.space())?;
            let expected = self.last() + 1;
            if self.accept(&event)? != Accepted::Next {
                return Err(VerifyError::OutOfOrder {
                    space: self.space().to_string(),
                    expected,
                    actual: event.seq,
                });
            }
            events.push(event);
        }
        Ok(events)
    }

    /// The error for a gap the node could not fill.
    pub fn gap(&self) -> VerifyError {
        VerifyError::Gap {
            space: self.chain.space().to_string(),
            after: self.chain.head(),
        }
    }
}

/// Check that `beam` is validly signed and is the beam `path` names.
pub fn check_beam(beam: &Beam, path: &BeamPath) -> Result<(), VerifyError> {
    let id = sign::verify_with_id(beam, &beam.author).map_err(|source| VerifyError::BadBeam {
        path: path.to_string(),
        source,
    })?;
    check_path(beam, id, path)
}

/// Check that `beam`, whose content id is `id`, is the beam `path` names: its author's hash
/// and its id.
fn check_path(beam: &Beam, id: ContentId, path: &BeamPath) -> Result<(), VerifyError> {
    let actual = BeamPath {
        author_hash: author_hash(&beam.author),
        beam: id,
    };
    if actual != *path {
        return Err(VerifyError::WrongBeam {
            expected: path.to_string(),
            actual: actual.to_string(),
        });
    }
    Ok(())
}

/// An event, verified, with the beam its `beam_ref` names when the node sent it inline,
/// checked against the ref as `beam.get`'s answer is checked against its path.
///
/// `beam` is `None` for every other kind of event, and for a ref whose beam the node did not
/// inline (it does not hold it, or it was deleted): ask `beam.get` for it (the Rust SDK's `Client::get_beam`),
/// with the ref's beam URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventWithBeam {
    /// The event.
    pub event: Event,
    /// The beam its ref names, if the node sent it.
    pub beam: Option<Beam>,
}

/// Check an inline `beam` against the `beam_ref` event it came with: the beam at
/// `beam/{authorHash(ref.author)}/{ref.beam}`, validly signed, by the ref's author.
///
/// `event` must already be verified. A beam signed together with its ref carries the ref's
/// signature of the same message (spec §4.5), which the event's check already verified, so
/// then only the ids are left to compare.
pub fn check_inline_beam(event: &Event, beam: &Beam) -> Result<(), VerifyError> {
    if let Payload::Edit(edit) = &event.payload {
        return check_version(edit, beam);
    }
    let Payload::BeamRef(r) = &event.payload else {
        return Err(VerifyError::UnaskedBeam {
            space: event.space.to_string(),
            path: beam
                .path()
                .map_or_else(|_| format!("by {}", beam.author), |p| p.to_string()),
        });
    };
    let path = BeamPath::new(&r.author, r.beam);
    let id = beam.content_id().map_err(|e| VerifyError::WrongBeam {
        expected: path.to_string(),
        actual: e.to_string(),
    })?;
    let signed_together = r
        .content_id()
        .is_ok_and(|ref_id| beam.signed_with(&id, r, &ref_id));
    if signed_together {
        check_path(beam, id, &path)?;
    } else {
        check_beam(beam, &path)?;
    }
    // The author hash matched; the DID itself must too (§4.6).
    if beam.author != r.author {
        return Err(VerifyError::WrongBeam {
            expected: path.to_string(),
            actual: format!("{path} by {}", beam.author),
        });
    }
    Ok(())
}

/// Check `beam` as the version `edit` names (`spec/` §4.10): validly signed, at the path
/// `beam/{authorHash(edit.author)}/{edit.beam}`, by the edit's author, naming the edit in its
/// `ref`. `edit` must already be verified.
pub fn check_version(edit: &Edit, beam: &Beam) -> Result<(), VerifyError> {
    let path = BeamPath::new(&edit.author, edit.beam);
    check_beam(beam, &path)?;
    let id = edit.beam;
    if !edit.holds(beam, &id).unwrap_or(false) {
        return Err(VerifyError::WrongBeam {
            expected: format!("{path}, the version its edit names"),
            actual: format!("{path} by {} naming another edit", beam.author),
        });
    }
    Ok(())
}

/// Check a `beam.history` answer for the beam at `path` (`spec/` §6.3.26): the path is the
/// one asked for; the original, if listed, is first and is the beam at `path`; every other
/// version's edit is validly signed by the path's author and supersedes the original, and its
/// beam is the version the edit names; versions are in strictly rising order of their keys
/// (§4.10), and none is below an edit listed that drops history. The last one is current.
pub fn check_history(history: &BeamHistory, path: &BeamPath) -> Result<(), VerifyError> {
    let bad = |reason: String| VerifyError::BadHistory {
        path: path.to_string(),
        reason,
    };
    if history.path != path.to_string() {
        return Err(bad(format!("it names {}", history.path)));
    }
    let mut last: Option<VersionKey> = None;
    let mut floor: Option<VersionKey> = None;
    for (i, version) in history.versions.iter().enumerate() {
        let key = match &version.edit {
            None => {
                if i != 0 {
                    return Err(bad("the original is not first".into()));
                }
                check_beam(&version.beam, path)?;
                original_key(&path.beam)
            }
            Some(edit) => {
                if author_hash(&edit.author) != path.author_hash || edit.supersedes != path.beam {
                    return Err(bad(format!("version {} edits another beam", edit.version)));
                }
                edit.check_rules().map_err(|e| bad(e.to_string()))?;
                edit.verify().map_err(|source| VerifyError::BadBeam {
                    path: path.to_string(),
                    source,
                })?;
                check_version(edit, &version.beam)?;
                let key = edit.key().map_err(|e| bad(e.to_string()))?;
                if edit.drop_history {
                    floor = Some(key.clone());
                }
                key
            }
        };
        if last.as_ref().is_some_and(|l| key <= *l) {
            return Err(bad("its versions are not in rising order".into()));
        }
        last = Some(key);
    }
    if let (Some(floor), Some(first)) = (floor, history.versions.first()) {
        let first_key = match &first.edit {
            None => original_key(&path.beam),
            Some(e) => e.key().map_err(|e| bad(e.to_string()))?,
        };
        if first_key < floor {
            return Err(bad("it lists a version an edit dropped".into()));
        }
    }
    Ok(())
}

/// Parse a beam sent inline with event `seq` of `space`, strictly.
fn parse_inline_beam(raw: &RawValue, space: &SpaceId, seq: u64) -> Result<Beam, VerifyError> {
    canonical::from_str_strict(raw.get()).map_err(|source| VerifyError::MalformedBeam {
        space: space.to_string(),
        seq,
        source,
    })
}

impl LogCursor {
    /// Verify and place one subscription item that asked for beams inline: the event as by
    /// [`LogCursor::accept`], then its beam, if any, against the event's ref.
    pub fn accept_item(
        &mut self,
        item: &EventItem,
    ) -> Result<(Accepted, EventWithBeam), VerifyError> {
        let event = parse_event(&item.event, self.chain.space())?;
        let placed = self.accept(&event)?;
        let beam = match &item.beam {
            Some(raw) => {
                let beam = parse_inline_beam(raw, self.chain.space(), event.seq)?;
                check_inline_beam(&event, &beam)?;
                Some(beam)
            }
            None => None,
        };
        Ok((placed, EventWithBeam { event, beam }))
    }

    /// Accept a page of `space.events` that asked for beams inline: its events as by
    /// [`LogCursor::accept_page`], each `beam_ref` with the beam of `beams` it names. Every
    /// beam must be validly signed and named by a ref of the page.
    pub fn accept_page_with_beams(
        &mut self,
        events: &[Box<RawValue>],
        beams: &[Box<RawValue>],
    ) -> Result<Vec<EventWithBeam>, VerifyError> {
        let first = self.last() + 1;
        let events = self.accept_page(events)?;
        let mut items: Vec<EventWithBeam> = events
            .into_iter()
            .map(|event| EventWithBeam { event, beam: None })
            .collect();
        for raw in beams {
            let beam = parse_inline_beam(raw, self.chain.space(), first)?;
            let unasked = || VerifyError::UnaskedBeam {
                space: self.chain.space().to_string(),
                path: beam
                    .path()
                    .map_or_else(|_| format!("by {}", beam.author), |p| p.to_string()),
            };
            let id = beam.content_id().map_err(|_| unasked())?;
            let mut named = false;
            for item in &mut items {
                let names = match &item.event.payload {
                    Payload::BeamRef(r) => r.beam == id && r.author == beam.author,
                    Payload::Edit(e) => e.beam == id && e.author == beam.author,
                    _ => false,
                };
                if names {
                    check_inline_beam(&item.event, &beam)?;
                    item.beam = Some(beam.clone());
                    named = true;
                }
            }
            if !named {
                return Err(unasked());
            }
        }
        Ok(items)
    }
}

/// Check that `beam`, listed as a beam by `author`, is validly signed by that author.
pub fn check_listed_beam(beam: &Beam, author: &Did) -> Result<(), VerifyError> {
    if beam.author != *author {
        return Err(VerifyError::WrongAuthor {
            expected: author.to_string(),
            actual: beam.author.to_string(),
        });
    }
    let path = beam.path().map_err(|source| VerifyError::BadBeam {
        path: format!("by {author}"),
        source,
    })?;
    check_beam(beam, &path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Keypair;
    use crate::address::SpaceType;
    use crate::wire::{BeamRef, SpaceGenesis};

    const T: u64 = 1_767_225_600_000;

    struct Log {
        node: Keypair,
        owner: Keypair,
        space: SpaceId,
        events: Vec<Event>,
    }

    impl Log {
        fn new() -> Self {
            let node = Keypair::from_seed(&[1; 32]);
            let owner = Keypair::from_seed(&[2; 32]);
            let space = SpaceId::new(SpaceType::Channel, owner.did(), "general").unwrap();
            let genesis = SpaceGenesis::create(
                &owner,
                space.clone(),
                "General",
                node.did().clone(),
                "127.0.0.1:7700",
                10,
                T,
            )
            .unwrap();
            let mut log = Self {
                node,
                owner,
                space,
                events: Vec::new(),
            };
            log.append(Payload::Create(genesis));
            log
        }

        fn append(&mut self, payload: Payload) {
            let prev = self.events.last().map(|e| e.id().unwrap());
            let seq = self.events.len() as u64 + 1;
            let event =
                Event::sequence(&self.node, self.space.clone(), seq, prev, T + seq, payload)
                    .unwrap();
            self.events.push(event);
        }

        fn post(&mut self, title: &str) {
            let (_, r) = Beam::post(
                &self.owner,
                self.space.clone(),
                "127.0.0.1:7700",
                title,
                "body",
                T,
            )
            .unwrap();
            self.append(Payload::BeamRef(r));
        }

        fn cursor(&self, since: u64) -> LogCursor {
            LogCursor::new(self.space.clone(), self.node.did().clone(), since)
        }

        fn raw(&self, range: std::ops::Range<usize>) -> Vec<Box<RawValue>> {
            self.events[range]
                .iter()
                .map(|e| RawValue::from_string(serde_json::to_string(e).unwrap()).unwrap())
                .collect()
        }
    }

    fn log_of(n: usize) -> Log {
        let mut log = Log::new();
        for i in 1..n {
            log.post(&format!("post {i}"));
        }
        log
    }

    #[test]
    fn accepts_a_whole_log_in_order() {
        let log = log_of(5);
        let mut cursor = log.cursor(0);
        let events = cursor.accept_page(&log.raw(0..5)).unwrap();
        assert_eq!(events, log.events);
        assert_eq!(cursor.last(), 5);
    }

    #[test]
    fn skips_seen_events_and_reports_ahead_without_moving() {
        let log = log_of(5);
        let mut cursor = log.cursor(0);
        cursor.accept_page(&log.raw(0..3)).unwrap();
        assert_eq!(cursor.accept(&log.events[1]).unwrap(), Accepted::Seen);
        assert_eq!(cursor.accept(&log.events[4]).unwrap(), Accepted::Ahead);
        assert_eq!(cursor.last(), 3);
        assert_eq!(cursor.accept(&log.events[3]).unwrap(), Accepted::Next);
        assert_eq!(cursor.accept(&log.events[4]).unwrap(), Accepted::Next);
        assert_eq!(cursor.last(), 5);
    }

    #[test]
    fn refuses_a_page_with_a_hole() {
        let log = log_of(4);
        let mut raw = log.raw(0..4);
        raw.remove(2);
        let err = log.cursor(0).accept_page(&raw).unwrap_err();
        assert!(
            matches!(
                err,
                VerifyError::OutOfOrder {
                    expected: 3,
                    actual: 4,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn refuses_an_event_signed_by_another_node() {
        let log = log_of(2);
        let mut cursor = LogCursor::new(
            log.space.clone(),
            Keypair::from_seed(&[7; 32]).did().clone(),
            0,
        );
        let err = cursor.accept(&log.events[0]).unwrap_err();
        assert!(matches!(err, VerifyError::BadEvent { seq: 1, .. }), "{err}");
    }

    #[test]
    fn refuses_an_event_that_does_not_link_to_the_event_before() {
        let log = log_of(4);
        let mut cursor = log.cursor(0);
        cursor.accept_page(&log.raw(0..3)).unwrap();
        // Validly signed by the sequencer, but its prev names another event 3: a forked log.
        let forked = Event::sequence(
            &log.node,
            log.space.clone(),
            4,
            Some(crate::ContentId::of(b"another event 3")),
            T,
            log.events[3].payload.clone(),
        )
        .unwrap();
        let err = cursor.accept(&forked).unwrap_err();
        assert!(
            matches!(err, VerifyError::BrokenChain { seq: 4, .. }),
            "{err}"
        );
        assert_eq!(cursor.last(), 3);
        assert_eq!(cursor.accept(&log.events[3]).unwrap(), Accepted::Next);
    }

    #[test]
    fn refuses_a_genesis_that_names_another_sequencer() {
        let log = Log::new();
        let Payload::Create(mut genesis) = log.events[0].payload.clone() else {
            panic!("seq 1 is the genesis");
        };
        genesis.sequencer = Keypair::from_seed(&[7; 32]).did().clone();
        let genesis = SpaceGenesis::create(
            &log.owner,
            genesis.space,
            &genesis.name,
            genesis.sequencer,
            &genesis.authority,
            genesis.fanout,
            genesis.created_at,
        )
        .unwrap();
        let event = Event::sequence(
            &log.node,
            log.space.clone(),
            1,
            None,
            T,
            Payload::Create(genesis),
        )
        .unwrap();
        let err = log.cursor(0).accept(&event).unwrap_err();
        assert!(matches!(err, VerifyError::WrongSequencer { .. }), "{err}");
    }

    #[test]
    fn refuses_an_event_of_another_space() {
        let log = log_of(1);
        let owner = Keypair::from_seed(&[2; 32]);
        let elsewhere = SpaceId::new(SpaceType::Channel, owner.did(), "random").unwrap();
        let mut cursor = LogCursor::new(elsewhere, log.node.did().clone(), 0);
        let err = cursor.accept(&log.events[0]).unwrap_err();
        assert!(matches!(err, VerifyError::WrongSpace { .. }), "{err}");
    }

    #[test]
    fn refuses_a_malformed_raw_event() {
        let log = log_of(1);
        let text = serde_json::to_string(&log.events[0]).unwrap();
        let dup = text.replacen("{", "{\"seq\":1,", 1);
        let raw = vec![RawValue::from_string(dup).unwrap()];
        let err = log.cursor(0).accept_page(&raw).unwrap_err();
        assert!(matches!(err, VerifyError::MalformedEvent { .. }), "{err}");
    }

    #[test]
    fn checks_a_beam_against_its_path() {
        let author = Keypair::from_seed(&[5; 32]);
        let space = SpaceId::new(SpaceType::Channel, author.did(), "c").unwrap();
        let post = |body: &str| Beam::post(&author, space.clone(), "h", "hi", body, T).unwrap();
        let beam = post("there").0;
        let path = beam.path().unwrap();
        check_beam(&beam, &path).unwrap();
        check_listed_beam(&beam, author.did()).unwrap();

        let other = post("elsewhere").0;
        let err = check_beam(&other, &path).unwrap_err();
        assert!(matches!(err, VerifyError::WrongBeam { .. }), "{err}");

        let mut forged = beam.clone();
        forged.body = "changed".into();
        let err = check_beam(&forged, &forged.path().unwrap()).unwrap_err();
        assert!(matches!(err, VerifyError::BadBeam { .. }), "{err}");

        let stranger = Keypair::from_seed(&[6; 32]);
        let err = check_listed_beam(&beam, stranger.did()).unwrap_err();
        assert!(matches!(err, VerifyError::WrongAuthor { .. }), "{err}");
    }

    /// A vector of `spec/vectors/northstar.json` by name: its signed object.
    fn vector(name: &str) -> serde_json::Value {
        let all: serde_json::Value =
            serde_json::from_str(include_str!("../../spec/vectors/northstar.json")).unwrap();
        all["signed"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == name)
            .unwrap()["object"]
            .clone()
    }

    #[test]
    fn the_specs_inline_beam_example_is_the_vectors_and_passes_the_checks() {
        let spec = include_str!("../../spec/protocol.md");
        let example = spec
            .split("Example: a notification with `beams` = `true`")
            .nth(1)
            .and_then(|rest| rest.split("```json").nth(1))
            .and_then(|block| block.split("```").next())
            .expect("§6.3.21 has its example");
        let note: serde_json::Value = serde_json::from_str(example).unwrap();
        let result = &note["params"]["result"];
        assert_eq!(result["event"], vector("event_3_beam"));
        assert_eq!(result["beam"], vector("beam"));
        let event: Event = serde_json::from_value(result["event"].clone()).unwrap();
        let beam: Beam = serde_json::from_value(result["beam"].clone()).unwrap();
        check_inline_beam(&event, &beam).unwrap();

        // Beside the tombstone, which names no beam to carry, the same beam is refused.
        let tombstone: Event = serde_json::from_value(vector("event_4_tombstone")).unwrap();
        let err = check_inline_beam(&tombstone, &beam).unwrap_err();
        assert!(matches!(err, VerifyError::UnaskedBeam { .. }), "{err}");
        // And a beam by someone else with the same title and body is not the ref's.
        let Payload::BeamRef(r) = &event.payload else {
            panic!("event 3 posts the beam");
        };
        let stranger = Keypair::from_seed(&[7; 32]);
        let (mut other, _) = Beam::post(
            &stranger,
            r.space.clone(),
            &r.home,
            &beam.title,
            &beam.body,
            1,
        )
        .unwrap();
        let err = check_inline_beam(&event, &other).unwrap_err();
        assert!(matches!(err, VerifyError::WrongBeam { .. }), "{err}");
        // Even carrying the ref's signature and naming the ref, it is not the ref's beam.
        other.sig = beam.sig;
        other.posted_with = beam.posted_with;
        assert!(check_inline_beam(&event, &other).is_err());
    }

    /// A beam signed together with its ref is taken on the ref's checked signature; one that
    /// was signed apart (an earlier post of the same beam) is checked on its own.
    #[test]
    fn an_inline_beam_signed_apart_from_its_ref_is_checked_on_its_own() {
        let author = Keypair::from_seed(&[5; 32]);
        let node = Keypair::from_seed(&[1; 32]);
        let space = SpaceId::new(SpaceType::Channel, author.did(), "c").unwrap();
        let (beam, first) = Beam::post(&author, space.clone(), "h", "t", "b", T).unwrap();
        let again = BeamRef::create(&author, space.clone(), first.beam, "h", T + 1).unwrap();
        let event = |r: &BeamRef| {
            Event::sequence(
                &node,
                space.clone(),
                2,
                Some(ContentId::of(b"p")),
                T,
                Payload::BeamRef(r.clone()),
            )
            .unwrap()
        };
        check_inline_beam(&event(&first), &beam).unwrap();
        check_inline_beam(&event(&again), &beam).unwrap();
        // A beam carrying a signature that is not its own (another ref's) fails beside either
        // ref: beside the one it names, the signatures differ, so it is checked alone.
        let mut forged = beam.clone();
        forged.sig = again.sig;
        let err = check_inline_beam(&event(&again), &forged).unwrap_err();
        assert!(matches!(err, VerifyError::BadBeam { .. }), "{err}");
        let err = check_inline_beam(&event(&first), &forged).unwrap_err();
        assert!(matches!(err, VerifyError::BadBeam { .. }), "{err}");
    }

    fn history_of(versions: Vec<(Beam, Option<crate::wire::Edit>)>) -> BeamHistory {
        BeamHistory {
            path: versions[0].0.path().unwrap().to_string(),
            versions: versions
                .into_iter()
                .map(|(beam, edit)| crate::api::BeamVersion { beam, edit })
                .collect(),
        }
    }

    #[test]
    fn a_history_is_checked_against_its_edits_and_their_order() {
        use crate::wire::Edit;
        let alice = Keypair::from_seed(&[1; 32]);
        let space = SpaceId::new(crate::address::SpaceType::Channel, alice.did(), "c").unwrap();
        let (original, _) = Beam::post(&alice, space, "h", "t", "v0", T).unwrap();
        let path = original.path().unwrap();
        let (v1, e1) = Edit::create(&alice, path.beam, 1, "t", "v1", T + 1, false).unwrap();
        let (v2, e2) = Edit::create(&alice, path.beam, 2, "t", "v2", T + 2, true).unwrap();
        let good = history_of(vec![
            (original.clone(), None),
            (v1.clone(), Some(e1.clone())),
            (v2.clone(), Some(e2.clone())),
        ]);
        // A node that kept what version 2 dropped: refused.
        let err = check_history(&good, &path).unwrap_err();
        assert!(matches!(err, VerifyError::BadHistory { .. }), "{err}");
        let dropped = history_of(vec![(v2.clone(), Some(e2.clone()))]);
        let dropped = BeamHistory {
            path: path.to_string(),
            ..dropped
        };
        check_history(&dropped, &path).unwrap();
        // Out of order.
        let (v3, e3) = Edit::create(&alice, path.beam, 3, "t", "v3", T + 3, false).unwrap();
        let swapped = BeamHistory {
            path: path.to_string(),
            versions: vec![
                crate::api::BeamVersion {
                    beam: v3.clone(),
                    edit: Some(e3.clone()),
                },
                crate::api::BeamVersion {
                    beam: v2.clone(),
                    edit: Some(e2.clone()),
                },
            ],
        };
        assert!(check_history(&swapped, &path).is_err());
        // A version paired with another edit's beam.
        let mismatched = BeamHistory {
            path: path.to_string(),
            versions: vec![crate::api::BeamVersion {
                beam: v1,
                edit: Some(e3),
            }],
        };
        assert!(check_history(&mismatched, &path).is_err());
        // An edit by someone else, superseding the same id.
        let mallory = Keypair::from_seed(&[9; 32]);
        let (vm, em) = Edit::create(&mallory, path.beam, 4, "t", "mine", T + 4, false).unwrap();
        let foreign = BeamHistory {
            path: path.to_string(),
            versions: vec![crate::api::BeamVersion {
                beam: vm,
                edit: Some(em),
            }],
        };
        assert!(check_history(&foreign, &path).is_err());
    }
}
