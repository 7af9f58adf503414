//! `northstar space export SPACE FILE` and `northstar space import FILE` (`spec/protocol.md`
//! §11): a space's verified log to a file and back into any node, with progress on stderr (a
//! bar on a terminal, plain lines otherwise).
//!
//! JSON keys (a contract): `export` prints `space`, `file`, `events`, `beams`; `import` prints
//! `space`, `file`, `events` (new on the node), `beams` (new on the node), `head_seq`.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, IsTerminal, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};

use anyhow::Context;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use northstar_sdk::protocol::address::SpaceType;
use northstar_sdk::protocol::api::EventItem;
use northstar_sdk::protocol::wire::{Event, MembershipAction, Payload};
use northstar_sdk::{Did, FileCheck, parse_space};
use serde_json::json;

use super::{Global, Output};

/// Room a request keeps for its envelope and the space id, besides its entries.
const ENVELOPE_BYTES: usize = 4096;

/// Bytes an entry adds around its event and beam: `{"event":…,"beam":…},`.
const ENTRY_BYTES: usize = 24;

/// A plain progress line at most every this many events (and at the end).
const PLAIN_STEP: u64 = 1000;

/// Progress of a long step: a bar when stderr is a terminal, plain lines on stderr otherwise.
/// Nothing goes to stdout; with `--json` there are no plain lines either, so stderr holds at
/// most the one JSON object of a failure.
struct Progress {
    bar: Option<ProgressBar>,
    label: &'static str,
    total: u64,
    shown: u64,
    plain: bool,
}

impl Progress {
    fn new(out: &Output, label: &'static str, total: u64) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
            if let Ok(style) =
                ProgressStyle::with_template("{msg:>10} [{bar:40}] {pos}/{len} events ({eta})")
            {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.set_message(label);
            bar
        });
        Self {
            bar,
            label,
            total,
            shown: 0,
            plain: !out.json,
        }
    }

    fn set(&mut self, position: u64) {
        match &self.bar {
            Some(bar) => bar.set_position(position),
            None if self.plain
                && (position >= self.shown + PLAIN_STEP || position == self.total) =>
            {
                self.shown = position;
                eprintln!("{}: {position}/{} events", self.label, self.total);
            }
            None => {}
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// `space export`: read the log (verified by the SDK as it comes) into `FILE.partial`, then
/// rename it, so a failed export leaves no file that looks whole.
pub(super) async fn export(
    global: &Global,
    out: &Output,
    space: &str,
    file: &Path,
    beams: bool,
) -> anyhow::Result<()> {
    let space = parse_space(space).with_context(|| format!("invalid space {space:?}"))?;
    let client = global.connect_as_reader().await?;
    let mut log = client.export_log(&space, beams).await?;
    let partial = partial_path(file);
    let written = async {
        let mut writer = BufWriter::new(
            File::create(&partial)
                .with_context(|| format!("cannot create {}", partial.display()))?,
        );
        writeln!(writer, "{}", serde_json::to_string(log.header())?)?;
        let mut progress = Progress::new(out, "exporting", log.header().events);
        let (mut events, mut with_beams) = (0u64, 0u64);
        while let Some(page) = log.next_page().await? {
            for item in &page {
                writeln!(writer, "{}", serde_json::to_string(item)?)?;
                events += 1;
                with_beams += u64::from(item.beam.is_some());
            }
            progress.set(log.position());
        }
        progress.finish();
        writer.flush()?;
        writer
            .into_inner()
            .map_err(|e| e.into_error())?
            .sync_all()?;
        anyhow::Ok((events, with_beams))
    }
    .await;
    let (events, with_beams) = match written {
        Ok(counts) => counts,
        Err(e) => {
            // The partial file is ours and worthless; a failure to remove it changes nothing.
            let _ = std::fs::remove_file(&partial);
            return Err(e.context(format!("cannot export {space}")));
        }
    };
    std::fs::rename(&partial, file)
        .with_context(|| format!("cannot move {} to {}", partial.display(), file.display()))?;
    out.print(
        json!({
            "space": space.as_str(),
            "file": file.display().to_string(),
            "events": events,
            "beams": with_beams,
        }),
        || {
            format!(
                "exported {events} events and {with_beams} beams of {space} to {}",
                file.display()
            )
        },
    )
}

fn partial_path(file: &Path) -> PathBuf {
    let mut name = file.as_os_str().to_owned();
    name.push(".partial");
    PathBuf::from(name)
}

/// An export file read and verified whole.
struct Verified {
    space: northstar_sdk::protocol::address::SpaceId,
    items: Vec<EventItem>,
    /// For each DID the log makes a member: how many entries, from the first, do so.
    members_by: HashMap<Did, usize>,
}

/// Read and verify every line of `file`: the first fault stops it, with its line and seq.
fn verify_file(out: &Output, file: &Path) -> anyhow::Result<Verified> {
    let reader = BufReader::new(
        File::open(file).with_context(|| format!("cannot open {}", file.display()))?,
    );
    let mut lines = reader.lines();
    let first = lines
        .next()
        .transpose()?
        .with_context(|| format!("{} is empty", file.display()))?;
    let mut check = FileCheck::new(&first)?;
    let total = check.header().events;
    let mut progress = Progress::new(out, "verifying", total);
    let (mut items, mut members_by) = (Vec::new(), HashMap::new());
    for line in lines {
        let line = line?;
        if line.is_empty() {
            continue;
        }
        let (item, event) = check.accept(&line)?;
        items.push(item);
        if let Some(did) = made_member(&event) {
            members_by.entry(did.clone()).or_insert(items.len());
        }
        progress.set(items.len() as u64);
    }
    check.finish()?;
    progress.finish();
    Ok(Verified {
        space: check.header().space.clone(),
        items,
        members_by,
    })
}

/// `space import`: verify the whole file first and send nothing if any of it fails; then send
/// it in pages the node's limits allow.
pub(super) async fn import(global: &Global, out: &Output, file: &Path) -> anyhow::Result<()> {
    let verified = verify_file(out, file)
        .with_context(|| format!("{} is refused; nothing was sent", file.display()))?;
    let client = global.connect_as_user().await?;
    let limits = &client.node_info().limits;
    let max_bytes = (limits.max_frame_bytes as usize).saturating_sub(ENVELOPE_BYTES);
    let sizes: Vec<usize> = verified
        .items
        .iter()
        .map(|i| ENTRY_BYTES + i.event.get().len() + i.beam.as_ref().map_or(0, |b| b.get().len()))
        .collect();
    // A dm's first page must make the importer a member, or the node refuses it.
    // (All of it when the log never does: the node then gives the refusal.)
    let first_len = match (verified.space.space_type(), client.did()) {
        (SpaceType::Dm, Some(me)) => verified
            .members_by
            .get(me)
            .copied()
            .unwrap_or(verified.items.len()),
        _ => 1,
    };
    let pages = pages(
        &sizes,
        limits.max_page.max(1) as usize,
        max_bytes,
        first_len,
    );
    let mut progress = Progress::new(out, "importing", verified.items.len() as u64);
    let (mut events, mut beams, mut head_seq) = (0u64, 0u64, 0u64);
    let mut items = verified.items;
    let mut sent = 0usize;
    for range in pages {
        let page: Vec<EventItem> = items.drain(..range.len()).collect();
        let done = client
            .import_page(&verified.space, page)
            .await
            .with_context(|| {
                format!(
                    "the node refused entries {}..={} of {} (lines {}..={}); the pages before were stored",
                    range.start,
                    range.end - 1,
                    file.display(),
                    range.start + 2,
                    range.end + 1
                )
            })?;
        sent += range.len();
        events += u64::from(done.events);
        beams += u64::from(done.beams);
        head_seq = done.head_seq;
        progress.set(sent as u64);
    }
    progress.finish();
    let space = verified.space;
    out.print(
        json!({
            "space": space.as_str(),
            "file": file.display().to_string(),
            "events": events,
            "beams": beams,
            "head_seq": head_seq,
        }),
        || {
            format!(
                "imported {space} from {}: {events} new events, {beams} new beams, head at seq {head_seq}",
                file.display()
            )
        },
    )
}

/// The DID `event` makes a member: the owner at the genesis, the subject of a join.
fn made_member(event: &Event) -> Option<&Did> {
    match &event.payload {
        Payload::Create(g) => Some(g.space.owner()),
        Payload::Membership(m) if m.action == MembershipAction::Join => Some(&m.subject),
        _ => None,
    }
}

/// Cut entries of `sizes` bytes into pages of at most `max_count` entries and `max_bytes`
/// bytes (an entry larger than that goes alone, for the node to refuse), the first page at
/// least `first_len` entries long.
fn pages(
    sizes: &[usize],
    max_count: usize,
    max_bytes: usize,
    first_len: usize,
) -> Vec<Range<usize>> {
    let mut pages = Vec::new();
    let mut start = 0;
    while start < sizes.len() {
        let (mut end, mut bytes) = (start, 0usize);
        while end < sizes.len() {
            let must = pages.is_empty() && end < first_len;
            let fits = end - start < max_count && bytes + sizes[end] <= max_bytes;
            if !(must || fits || end == start) {
                break;
            }
            bytes += sizes[end];
            end += 1;
        }
        pages.push(start..end);
        start = end;
    }
    pages
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_keep_to_the_count_and_the_bytes() {
        assert_eq!(pages(&[10; 5], 2, 100, 1), vec![0..2, 2..4, 4..5]);
        assert_eq!(pages(&[40, 40, 40], 10, 100, 1), vec![0..2, 2..3]);
        // Too large alone: sent alone, for the node to refuse with its limit.
        assert_eq!(pages(&[500, 10], 10, 100, 1), vec![0..1, 1..2]);
        assert!(pages(&[], 10, 100, 1).is_empty());
    }

    #[test]
    fn a_dm_first_page_reaches_the_importers_join() {
        assert_eq!(pages(&[10; 6], 2, 100, 4), vec![0..4, 4..6]);
    }
}
