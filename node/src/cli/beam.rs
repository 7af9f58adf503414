//! `northstar beam …`. URI arguments take a beam URI or a bare beam path.
//!
//! JSON keys (a contract): `post` prints `event_id`, `seq`, `beam_uri`; `get` prints the beam
//! (`author`, `title`, `body`, `created_at`, `sig`) with its `id`, `path` and `uri`; `delete`
//! prints `beam` and `tombstones` (each `space`, `event_id`, `seq`); `receipts` prints `path`,
//! `nodes`, `applied` and `spaces` (each `space`, `seq`, `applied`, `pending`, and `error` when
//! the space could not be asked).

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
    /// Print a beam, after checking its author's signature and its id.
    Get {
        /// The beam's URI (or path `beam/…/…`).
        uri: String,
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
        BeamCommand::Get { uri } => {
            let path = parse_beam(&uri)?;
            let client = global.connect_as_reader().await?;
            // A URI names the author's home node, from which this node fetches a beam it does
            // not hold; a bare path can only be looked up here.
            let beam = if uri.starts_with(URI_SCHEME) {
                client.get_beam(&BeamUri::parse(&uri)?).await?
            } else {
                client.get_beam(&path).await?
            };
            let uri = beam_uri(&client, &uri);
            let mut value = serde_json::to_value(&beam)?;
            if let Value::Object(map) = &mut value {
                map.insert("id".into(), path.beam.to_string().into());
                map.insert("path".into(), path.to_string().into());
                map.insert("uri".into(), uri.into());
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
    }
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
