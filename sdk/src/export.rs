//! Space export files (`spec/protocol.md` §11): a space's whole log, read from a node and
//! verified as it is read, and the check of such a file before anything of it is imported.
//!
//! Both directions verify through the SDK's log cursor, the checks every event a node serves goes
//! through: each event under the sequencer its space's genesis names, each linked to the one
//! before it from the genesis on, each beam against the ref it came with. A file is a header
//! line ([`ExportHeader`]) and then one [`EventItem`] per line, in log order; the events are
//! the bytes the node served, exactly as the sequencer signed them.

use northstar_protocol::Signed;
use northstar_protocol::address::{BeamPath, BeamUri, SpaceId};
use northstar_protocol::api::{EventItem, ExportHeader};
use northstar_protocol::canonical::{self, CanonicalError};
use northstar_protocol::wire::{Event, Payload};
use serde_json::value::RawValue;

use crate::address::AsSpaceId;
use crate::client::{Client, now_ms};
use crate::error::SdkError;
use crate::verify::{Accepted, LogCursor, VerifyError};

/// A space's log being read from a node for an export: [`LogExport::next_page`] until `None`.
///
/// The log is read up to the head the node named when the export began, so the file matches
/// its header even while the space goes on.
#[derive(Debug)]
pub struct LogExport {
    client: Client,
    header: ExportHeader,
    cursor: LogCursor,
}

impl Client {
    /// `space.get` and then `space.events` page by page (public; member for a dm): the whole
    /// log of `space` for an export file, each event verified under the space's sequencer and
    /// linked to the one before it from the genesis on. With `beams`, each `beam_ref` comes
    /// with its beam and each `edit` with its version when it can still be read: sent inline
    /// by the node, else fetched with `beam.get` (a ref's beam from the ref's home, a version
    /// from the node read); a beam the node refuses (deleted, dropped, not readable, its home
    /// unreachable) is left out.
    pub async fn export_log(
        &self,
        space: &impl AsSpaceId,
        beams: bool,
    ) -> Result<LogExport, SdkError> {
        let space = space.space_id();
        let info = self.get_space(space).await?;
        let sequencer = self.space_sequencer(space).await?;
        let header = ExportHeader {
            format: ExportHeader::FORMAT.to_owned(),
            version: ExportHeader::VERSION,
            space: space.clone(),
            sequencer: sequencer.clone(),
            uri: info.uri,
            events: info.head_seq,
            beams,
            exported_at: now_ms()?,
        };
        Ok(LogExport {
            client: self.clone(),
            header,
            cursor: LogCursor::new(space.clone(), sequencer, 0),
        })
    }
}

impl LogExport {
    /// The file's first line.
    pub fn header(&self) -> &ExportHeader {
        &self.header
    }

    /// The seq of the last event read so far.
    pub fn position(&self) -> u64 {
        self.cursor.last()
    }

    /// The next page of the log as lines of the file, verified; `None` once the head the
    /// export began at is reached.
    pub async fn next_page(&mut self) -> Result<Option<Vec<EventItem>>, SdkError> {
        let since = self.cursor.last();
        let head = self.header.events;
        if since >= head {
            return Ok(None);
        }
        let space = self.header.space.clone();
        let limit = self.client.node_info().limits.max_page;
        let page = self
            .client
            .events_page(&space, since, limit, self.header.beams)
            .await?;
        let wanted = usize::try_from(head - since).unwrap_or(usize::MAX);
        let raws: Vec<Box<RawValue>> = page.events.into_iter().take(wanted).collect();
        if raws.is_empty() {
            return Err(self.cursor.gap().into());
        }
        let checked = match &page.beams {
            Some(beams) if self.header.beams => {
                // Beams of refs past the head may ride along: keep only the page's.
                let beams = keep_named(&raws, beams, &space);
                self.cursor.accept_page_with_beams(&raws, &beams)?
            }
            _ => self
                .cursor
                .accept_page(&raws)?
                .into_iter()
                .map(|event| crate::EventWithBeam { event, beam: None })
                .collect(),
        };
        let mut items = Vec::with_capacity(raws.len());
        for (raw, item) in raws.into_iter().zip(checked) {
            let beam = match item.beam {
                Some(beam) => Some(beam),
                None if self.header.beams => self.fetch_beam(&item.event).await?,
                None => None,
            };
            let beam = beam
                .map(|beam| serde_json::value::to_raw_value(&beam))
                .transpose()
                .map_err(|e| SdkError::Verify(malformed_beam(&space, item.event.seq, e)))?;
            items.push(EventItem { event: raw, beam });
        }
        Ok(Some(items))
    }

    /// The beam `event` refers to (a ref's beam, from the ref's home; an edit's version, from
    /// the node read), if it can still be read.
    async fn fetch_beam(
        &self,
        event: &Event,
    ) -> Result<Option<northstar_protocol::wire::Beam>, SdkError> {
        let fetched = match &event.payload {
            Payload::BeamRef(r) => {
                let uri = BeamUri {
                    authority: r.home.clone(),
                    path: BeamPath::new(&r.author, r.beam),
                };
                self.client.get_beam(&uri).await
            }
            Payload::Edit(e) => {
                let version = self
                    .client
                    .get_beam(&BeamPath::new(&e.author, e.beam))
                    .await;
                // get_beam checked the path; the version must also name this edit.
                if let Ok(beam) = &version {
                    northstar_protocol::verify::check_version(e, beam).map_err(SdkError::Verify)?;
                }
                version
            }
            _ => return Ok(None),
        };
        match fetched {
            Ok(beam) => Ok(Some(beam)),
            // Deleted, not readable by this user, or its home is away: not in the file.
            Err(SdkError::Node { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// The beams of `beams` that a `beam_ref` or an `edit` of `events` names.
fn keep_named(
    events: &[Box<RawValue>],
    beams: &[Box<RawValue>],
    space: &SpaceId,
) -> Vec<Box<RawValue>> {
    let named: Vec<(String, String)> = events
        .iter()
        .filter_map(|raw| crate::verify::parse_event(raw, space).ok())
        .filter_map(|event| match event.payload {
            Payload::BeamRef(r) => Some((r.beam.to_string(), r.author.to_string())),
            Payload::Edit(e) => Some((e.beam.to_string(), e.author.to_string())),
            _ => None,
        })
        .collect();
    beams
        .iter()
        .filter(|raw| {
            let Ok(beam) = canonical::from_str_strict::<northstar_protocol::wire::Beam>(raw.get())
            else {
                // Left in, so the page's check names it.
                return true;
            };
            beam.content_id().is_ok_and(|id| {
                named
                    .iter()
                    .any(|(b, a)| *b == id.to_string() && *a == beam.author.to_string())
            })
        })
        .cloned()
        .collect()
}

fn malformed_beam(space: &SpaceId, seq: u64, e: serde_json::Error) -> VerifyError {
    VerifyError::MalformedBeam {
        space: space.to_string(),
        seq,
        source: CanonicalError::Unencodable {
            reason: e.to_string(),
        },
    }
}

/// Where in an export file the first fault is, and what it is.
#[derive(Debug, thiserror::Error)]
#[error("line {line}{}: {fault}", seq.map(|s| format!(" (event {s})")).unwrap_or_default())]
pub struct FileError {
    /// The line, from 1 (the header).
    pub line: u64,
    /// The seq of the event on that line, when it could be read.
    pub seq: Option<u64>,
    /// What is wrong.
    #[source]
    pub fault: FileFault,
}

/// What is wrong with a line of an export file.
#[derive(Debug, thiserror::Error)]
pub enum FileFault {
    /// The header is not one this SDK reads.
    #[error("not a Northstar space export: {0}")]
    Header(String),
    /// The line does not parse strictly as an entry.
    #[error("not an entry: {0}")]
    Malformed(#[from] CanonicalError),
    /// The entry fails verification, or does not follow the entry before it.
    #[error(transparent)]
    Verify(#[from] VerifyError),
    /// The file ends before the events its header counts.
    #[error("the file ends after event {last}, its header counts {expected}")]
    Short {
        /// The last seq read.
        last: u64,
        /// The events the header counts.
        expected: u64,
    },
    /// An entry past the events its header counts.
    #[error("an event past the {expected} the header counts")]
    Long {
        /// The events the header counts.
        expected: u64,
    },
}

/// The check of an export file, line by line, before anything of it is imported.
#[derive(Debug)]
pub struct FileCheck {
    header: ExportHeader,
    cursor: LogCursor,
    line: u64,
}

impl FileCheck {
    /// Start with the file's first line, its header.
    pub fn new(first_line: &str) -> Result<Self, FileError> {
        let at_header = |fault| FileError {
            line: 1,
            seq: None,
            fault,
        };
        let header: ExportHeader = canonical::from_str_strict(first_line)
            .map_err(|e| at_header(FileFault::Header(e.to_string())))?;
        if header.format != ExportHeader::FORMAT || header.version != ExportHeader::VERSION {
            return Err(at_header(FileFault::Header(format!(
                "format {} version {}, this reads {} version {}",
                header.format,
                header.version,
                ExportHeader::FORMAT,
                ExportHeader::VERSION
            ))));
        }
        let cursor = LogCursor::new(header.space.clone(), header.sequencer.clone(), 0);
        Ok(Self {
            header,
            cursor,
            line: 1,
        })
    }

    /// The file's header. Its `sequencer` is checked against the genesis the file carries,
    /// which its owner signed.
    pub fn header(&self) -> &ExportHeader {
        &self.header
    }

    /// Check the next line: it must be the next event of the log, verified, with (if it
    /// carries one) the beam its ref names. Returns the entry and its event.
    pub fn accept(&mut self, line: &str) -> Result<(EventItem, Event), FileError> {
        self.line += 1;
        let expected = self.cursor.last() + 1;
        let fail = |seq, fault| FileError {
            line: self.line,
            seq,
            fault,
        };
        let item: EventItem =
            canonical::from_str_strict(line).map_err(|e| fail(None, FileFault::Malformed(e)))?;
        let seq = canonical::from_str_strict::<Event>(item.event.get())
            .ok()
            .map(|e| e.seq);
        if expected > self.header.events {
            return Err(fail(
                seq,
                FileFault::Long {
                    expected: self.header.events,
                },
            ));
        }
        let (placed, checked) = self
            .cursor
            .accept_item(&item)
            .map_err(|e| fail(seq, FileFault::Verify(e)))?;
        if placed != Accepted::Next {
            let actual = checked.event.seq;
            return Err(fail(
                Some(actual),
                FileFault::Verify(VerifyError::OutOfOrder {
                    space: self.header.space.to_string(),
                    expected,
                    actual,
                }),
            ));
        }
        Ok((item, checked.event))
    }

    /// The end of the file: every event its header counts was there.
    pub fn finish(&self) -> Result<(), FileError> {
        let last = self.cursor.last();
        if last < self.header.events {
            return Err(FileError {
                line: self.line + 1,
                seq: None,
                fault: FileFault::Short {
                    last,
                    expected: self.header.events,
                },
            });
        }
        Ok(())
    }
}

impl Client {
    /// `space.import` (key; for a dm, a member by the log): one page of entries of an export
    /// file, checked already with [`FileCheck`]; the node checks them again and stores them all
    /// or none.
    pub async fn import_page(
        &self,
        space: &impl AsSpaceId,
        items: Vec<EventItem>,
    ) -> Result<northstar_protocol::api::SpaceImported, SdkError> {
        use northstar_protocol::method::SPACE_IMPORT;
        use northstar_protocol::rpc::SpaceApiClient;
        self.key(SPACE_IMPORT)?;
        let space = space.space_id().clone();
        crate::client::call(
            SPACE_IMPORT,
            SpaceApiClient::import(self.rpc(), space, items),
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VECTOR: &str = include_str!("../../spec/vectors/export.jsonl");

    /// Check every line of `text`; the first error.
    fn check(text: &str) -> Result<FileCheck, FileError> {
        let mut lines = text.lines();
        let mut check = FileCheck::new(lines.next().unwrap_or_default())?;
        for line in lines {
            check.accept(line)?;
        }
        check.finish()?;
        Ok(check)
    }

    #[test]
    fn the_specs_export_vector_passes_every_check() {
        let check = check(VECTOR).unwrap();
        assert_eq!(check.header().events, 4);
        let lines: Vec<&str> = VECTOR.lines().collect();
        let mut again = FileCheck::new(lines[0]).unwrap();
        let (item, event) = again.accept(lines[1]).unwrap();
        assert_eq!(event.seq, 1);
        // An entry is kept exactly as written: the event's bytes are the file's.
        assert!(lines[1].contains(item.event.get()));
    }

    #[test]
    fn a_changed_byte_names_the_line_and_the_event() {
        // Event 3's ref, one digit of its time changed: its author's signature fails.
        let tampered = VECTOR.replacen("1767225602000", "1767225602001", 1);
        let err = check(&tampered).unwrap_err();
        assert_eq!((err.line, err.seq), (4, Some(3)), "{err}");
        assert!(matches!(
            err.fault,
            FileFault::Verify(VerifyError::BadEvent { seq: 3, .. })
        ));
    }

    #[test]
    fn a_missing_or_extra_event_and_a_foreign_header_are_refused() {
        let lines: Vec<&str> = VECTOR.lines().collect();
        let dropped = [lines[0], lines[1], lines[3], lines[4]].join("\n");
        let err = check(&dropped).unwrap_err();
        assert_eq!((err.line, err.seq), (3, Some(3)), "{err}");
        let short = lines[..4].join("\n");
        let err = check(&short).unwrap_err();
        assert!(
            matches!(
                err.fault,
                FileFault::Short {
                    last: 3,
                    expected: 4
                }
            ),
            "{err}"
        );
        let long = [&lines[..], &[lines[4]]].concat().join("\n");
        assert!(matches!(
            check(&long).unwrap_err().fault,
            FileFault::Long { .. }
        ));
        let other = VECTOR.replacen("\"version\":1", "\"version\":2", 1);
        let err = check(&other).unwrap_err();
        assert_eq!(err.line, 1);
        // A header naming another sequencer than the genesis does.
        let stranger = northstar_protocol::Keypair::from_seed(&[9; 32]);
        let named = VECTOR.replacen(
            "did:key:z6MkvRXNYcE7MMduynWTgeKbDaT1iijDSC8pZqXZc8rHPrf2",
            stranger.did().as_str(),
            1,
        );
        let err = check(&named).unwrap_err();
        assert_eq!((err.line, err.seq), (2, Some(1)), "{err}");
    }
}
