//! `northstar beam …`. URI arguments take a beam URI or a bare beam path.
//!
//! JSON keys (a contract): `post` prints `event_id`, `seq`, `beam_uri`; `get` prints the beam
//! (`author`, `title`, `body`, `created_at`, `sig`) with its `id`, `path` and `uri`; `delete`
//! prints `beam` and `tombstones` (each `space`, `event_id`, `seq`); `receipts` prints `path`,
//! `nodes`, `applied` and `spaces` (each `space`, `seq`, `applied`, `pending`, and `error` when
//! the space could not be asked). `edit` prints `beam_uri` (the new version's) and `edits`
//! (each `space`, `event_id`, `seq`); `history` prints `path` and `versions`, oldest first, each
//! the version's beam (`author`, `title`, `body`, `created_at`, `ref`, `sig`) with its `id`, its
//! `version` (0 for the original) and, for an edit, `edit` (the signed edit).

use clap::Subcommand;
use northstar_sdk::protocol::address::{BeamUri, URI_SCHEME};
use northstar_sdk::{Client, parse_beam, parse_space};
use serde_json::{Value, json};

use super::{Global, Output};

#[derive(Debug, Subcommand)]
pub(super) enum BeamCommand {
    /// Post a beam into a space; prints the event id, its seq and the beam's URI.
    Post {
        /// The space's id or URI.
        space: String,
        /// The title, at most 256 bytes.
        #[arg(long)]
        title: String,
        /// The body, at most 64 KiB.
        #[arg(long)]
        body: String,
        /// A file to attach (repeatable): uploaded to your home node as a blob first.
        #[arg(long = "attach", value_name = "FILE")]
        attach: Vec<std::path::PathBuf>,
    },
    /// Print a beam's newest version (the beam itself if it was never edited), after checking
    /// its author's signature, its id and, for an edit, the edit's chain to the beam.
    Get {
        /// The beam's URI (or path `beam/…/…`).
        uri: String,
        /// Print exactly the beam at this path, not its newest version.
        #[arg(long)]
        original: bool,
    },
    /// Delete one of your beams; every space that referenced it gets a tombstone.
    Delete {
        /// The beam's URI (or path `beam/…/…`).
        uri: String,
    },
    /// After deleting one of your beams: on how many of the nodes that held it the tombstone
    /// has taken effect (ask your home node).
    Receipts {
        /// The beam's URI (or path `beam/…/…`).
        uri: String,
    },
    /// Publish a new version of one of your beams (ask your home node); every space that
    /// referenced it gets an edit event. Prints the new version's URI.
    Edit {
        /// The beam's URI (or path `beam/…/…`): the original, version 0.
        uri: String,
        /// The new title, at most 256 bytes.
        #[arg(long)]
        title: String,
        /// The new body, at most 64 KiB.
        #[arg(long)]
        body: String,
        /// Delete every older version, on your home node and in every cache.
        #[arg(long)]
        drop_history: bool,
    },
    /// Print the versions of a beam, oldest first; the last is the current one.
    History {
        /// The beam's URI (or path `beam/…/…`): the original, version 0.
        uri: String,
    },
}

pub(super) async fn run(command: BeamCommand, global: &Global, out: &Output) -> anyhow::Result<()> {
    match command {
        BeamCommand::Post {
            space,
            title,
            body,
            attach,
        } => {
            let space = parse_space(&space)?;
            let client = global.connect_as_user().await?;
            let posted = if attach.is_empty() {
                client.post(&space, &title, &body).await?
            } else {
                let attachments = super::blob::upload_all(&client, &attach).await?;
                client
                    .post_attached(&space, &title, &body, attachments)
                    .await?
            };
            out.print(
                json!({
                    "event_id": posted.event_id.to_string(),
                    "seq": posted.seq,
                    "beam_uri": posted.beam_uri,
                }),
                || {
                    format!(
                        "event {} seq {}\n{}",
                        posted.event_id, posted.seq, posted.beam_uri
                    )
                },
            )
        }
        BeamCommand::Get { uri, original } => {
            let path = parse_beam(&uri)?;
            let client = global.connect_as_reader().await?;
            // A URI names the author's home node, from which this node fetches a beam it does
            // not hold; a bare path can only be looked up here.
            let (beam, version) = match (uri.starts_with(URI_SCHEME), original) {
                (true, true) => (client.get_beam(&BeamUri::parse(&uri)?).await?, None),
                (false, true) => (client.get_beam(&path).await?, None),
                (true, false) => newest(client.beam_history(&BeamUri::parse(&uri)?).await?)?,
                (false, false) => newest(client.beam_history(&path).await?)?,
            };
            let uri = beam_uri(&client, &uri);
            let mut value = serde_json::to_value(&beam)?;
            if let Value::Object(map) = &mut value {
                map.insert("id".into(), path.beam.to_string().into());
                map.insert("path".into(), path.to_string().into());
                map.insert("uri".into(), uri.into());
                if let Some(version) = version {
                    map.insert("version".into(), version.into());
                }
            }
            out.print(value, || {
                format!(
                    "{}\nby {} at {}\n\n{}",
                    beam.title,
                    beam.author,
                    utc(beam.created_at),
                    beam.body
                )
            })
        }
        BeamCommand::Delete { uri } => {
            let path = parse_beam(&uri)?;
            let client = global.connect_as_user().await?;
            let deleted = client.delete_beam(&path).await?;
            let uri = beam_uri(&client, &uri);
            let tombstones: Vec<Value> = deleted
                .tombstones
                .iter()
                .map(|ack| {
                    json!({
                        "space": ack.space.as_str(),
                        "event_id": ack.event_id.to_string(),
                        "seq": ack.seq,
                    })
                })
                .collect();
            out.print(json!({"beam": uri, "tombstones": tombstones}), || {
                let spaces = deleted.tombstones.len();
                format!("deleted {uri} (tombstone appended to {spaces} space(s))")
            })
        }
        BeamCommand::Receipts { uri } => {
            let path = parse_beam(&uri)?;
            let client = global.connect_as_user().await?;
            let receipts = client.beam_receipts(&path).await?;
            out.print(serde_json::to_value(&receipts)?, || {
                let mut text = format!(
                    "{}: tombstone in effect on {} of {} node(s)",
                    receipts.path, receipts.applied, receipts.nodes
                );
                for space in &receipts.spaces {
                    match &space.error {
                        Some(error) => text.push_str(&format!("\n  {}: {error}", space.space)),
                        None => text.push_str(&format!(
                            "\n  {} seq {}: {} applied, {} pending",
                            space.space,
                            space.seq,
                            space.applied.len(),
                            space.pending.len()
                        )),
                    }
                }
                text
            })
        }
        BeamCommand::Edit {
            uri,
            title,
            body,
            drop_history,
        } => edit(&uri, &title, &body, drop_history, global, out).await,
        BeamCommand::History { uri } => history(&uri, global, out).await,
    }
}

/// `beam edit`.
async fn edit(
    uri: &str,
    title: &str,
    body: &str,
    drop_history: bool,
    global: &Global,
    out: &Output,
) -> anyhow::Result<()> {
    let path = parse_beam(uri)?;
    let client = global.connect_as_user().await?;
    let edited = client.edit_beam(&path, title, body, drop_history).await?;
    let edits: Vec<Value> = edited
        .edits
        .iter()
        .map(|ack| {
            json!({
                "space": ack.space.as_str(),
                "event_id": ack.event_id.to_string(),
                "seq": ack.seq,
            })
        })
        .collect();
    out.print(json!({"beam_uri": edited.beam_uri, "edits": edits}), || {
        format!(
            "{}\n(edit appended to {} space(s))",
            edited.beam_uri,
            edited.edits.len()
        )
    })
}

/// `beam history`.
async fn history(uri: &str, global: &Global, out: &Output) -> anyhow::Result<()> {
    let path = parse_beam(uri)?;
    let client = global.connect_as_reader().await?;
    let history = if uri.starts_with(URI_SCHEME) {
        client.beam_history(&BeamUri::parse(uri)?).await?
    } else {
        client.beam_history(&path).await?
    };
    let mut versions = Vec::with_capacity(history.versions.len());
    let mut text = String::new();
    for version in &history.versions {
        let number = version.edit.as_ref().map_or(0, |e| e.version);
        let id = version
            .edit
            .as_ref()
            .map_or_else(|| path.beam.to_string(), |e| e.beam.to_string());
        let mut value = serde_json::to_value(&version.beam)?;
        if let Value::Object(map) = &mut value {
            map.insert("id".into(), id.clone().into());
            map.insert("version".into(), number.into());
            if let Some(edit) = &version.edit {
                map.insert("edit".into(), serde_json::to_value(edit)?);
            }
        }
        versions.push(value);
        text.push_str(&format!(
            "v{number}  {}  {id}\n  {}\n  {}\n",
            utc(version.beam.created_at),
            version.beam.title,
            version.beam.body
        ));
    }
    out.print(json!({"path": history.path, "versions": versions}), || {
        text.trim_end().to_owned()
    })
}

/// The beam's URI: as given, or for a bare path, on the node asked.
fn beam_uri(client: &Client, given: &str) -> String {
    if given.starts_with(URI_SCHEME) {
        return given.to_owned();
    }
    match parse_beam(given) {
        Ok(path) => BeamUri {
            authority: client.node_info().authority.clone(),
            path,
        }
        .to_string(),
        Err(_) => given.to_owned(),
    }
}

/// `YYYY-MM-DD HH:MM:SS UTC` for ms since the Unix epoch.
fn utc(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (h, m, s) = (rem / 3600, rem % 3600 / 60, rem % 60);
    // Days to a civil date (Howard Hinnant's algorithm), for dates after 1970.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02} {h:02}:{m:02}:{s:02} UTC")
}

/// The newest version of a checked history, and its version number (0: the beam as posted).
fn newest(
    history: northstar_protocol::api::BeamHistory,
) -> anyhow::Result<(northstar_protocol::wire::Beam, Option<u64>)> {
    let current = history
        .versions
        .into_iter()
        .last()
        .ok_or_else(|| anyhow::anyhow!("the node listed no version of {}", history.path))?;
    let version = current.edit.as_ref().map_or(0, |edit| edit.version);
    Ok((current.beam, Some(version)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_formats_known_instants() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(1_767_225_600_000), "2026-01-01 00:00:00 UTC");
        assert_eq!(utc(951_782_400_000 + 3_723_000), "2000-02-29 01:02:03 UTC");
        assert_eq!(utc(4_107_542_399_999), "2100-02-28 23:59:59 UTC");
    }
}
