//! `northstar space …`. SPACE arguments take a space id or a space URI.
//!
//! JSON keys (a contract): `create` prints `id`, `uri`, `event_id`, `seq`; `join`, `leave`,
//! `invite`, `kick` and `ban` print `space`, `event_id`, `seq`; `list` prints one line per space with `id`, `uri`,
//! `type`, `name`, `owner`, `sequencer`, `head_seq`; `members` one line per member with `did`,
//! `state`; `health` the space's delivery health as `space.health` returns it (`space`, `head`,
//! `nodes`, `at_head`, `max_lag_events`, `max_lag_ms`, `max_hops`, `members`); `events` and `tail` one line per event with `id`, `seq`, `kind`, `author`, `space`,
//! `timestamp` and what the kind carries (see [`event_json`]), and for a post whose beam the
//! node sent inline also `title` and `body`. `export` and `import`: see [`super::export`].

use anyhow::Context;
use clap::{Subcommand, ValueEnum};
use futures_util::StreamExt;
use northstar_sdk::protocol::address::SpaceType;
use northstar_sdk::protocol::address::{SpaceUri, URI_SCHEME};
use northstar_sdk::protocol::api::Ack;
use northstar_sdk::protocol::wire::{Event, Payload};
use northstar_sdk::{Did, EventWithBeam, parse_space};
use serde_json::{Value, json};

use super::{Global, Output};

#[derive(Debug, Subcommand)]
pub(super) enum SpaceCommand {
    /// Found a space owned by your key and sequenced by the node; prints its id and URI.
    Create {
        /// What kind of space.
        #[arg(long = "type", value_name = "TYPE")]
        space_type: Kind,
        /// A human name.
        #[arg(long)]
        name: String,
        /// The unique id: 1 to 64 characters from A-Z a-z 0-9 . _ ~ -
        #[arg(long = "id", value_name = "UNIQUE_ID")]
        unique_id: String,
    },
    /// Join a space (a dm needs an invite first).
    Join {
        /// The space's URI (or id).
        uri: String,
    },
    /// Leave a space.
    Leave {
        /// The space's id or URI.
        space: String,
    },
    /// Invite a DID into a space.
    Invite {
        /// The space's id or URI.
        space: String,
        /// Whom to invite, `did:key:z6Mk…`.
        did: String,
    },
    /// Remove a member from a space you own; they may join again (a dm needs a new invite).
    Kick {
        /// The space's id or URI.
        space: String,
        /// Whom to remove, `did:key:z6Mk…`.
        did: String,
    },
    /// Ban a DID from a space you own: removed if a member, and refused from then on.
    Ban {
        /// The space's id or URI.
        space: String,
        /// Whom to ban, `did:key:z6Mk…`.
        did: String,
    },
    /// List the spaces you own, belong to or are invited into.
    List,
    /// List a space's members, invitees and bans.
    Members {
        /// The space's id or URI.
        space: String,
    },
    /// Show how far each member node of a space you own is behind (ask the space's
    /// sequencer): the heads the member nodes report, lag in events and time, and hops.
    Health {
        /// The space's id or URI.
        space: String,
    },
    /// Print a space's events after a seq, oldest first.
    Events {
        /// The space's id or URI.
        space: String,
        /// Print events after this seq.
        #[arg(long, value_name = "SEQ", default_value_t = 0)]
        since: u64,
        /// Print at most this many (the node may cap it).
        #[arg(long, value_name = "N", default_value_t = 100)]
        limit: u32,
    },
    /// Follow a space: print its events after a seq, then live ones, until Ctrl-C.
    Tail {
        /// The space's id or URI.
        space: String,
        /// Print events after this seq.
        #[arg(long, value_name = "SEQ", default_value_t = 0)]
        since: u64,
    },
    /// Write a space's whole log, verified event by event, to FILE (spec §11).
    Export {
        /// The space's id or URI.
        space: String,
        /// Where to write the export.
        file: std::path::PathBuf,
        /// Also write each beam the log's posts refer to, and each version of an edited one,
        /// that can still be read.
        #[arg(long)]
        beams: bool,
    },
    /// Verify an export FILE whole (every signature, the chain, every beam), then store its
    /// space on the node as a replica; nothing is sent if any of it fails.
    Import {
        /// The export file.
        file: std::path::PathBuf,
    },
}

/// The space types, as the command line spells them.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub(super) enum Kind {
    /// Public: anyone may read and join; members post.
    Channel,
    /// Private group: members only; joining needs an invite.
    Dm,
    /// Only the owner posts; members read live.
    Stream,
}

impl From<Kind> for SpaceType {
    fn from(kind: Kind) -> Self {
        match kind {
            Kind::Channel => SpaceType::Channel,
            Kind::Dm => SpaceType::Dm,
            Kind::Stream => SpaceType::Stream,
        }
    }
}

pub(super) async fn run(
    command: SpaceCommand,
    global: &Global,
    out: &Output,
) -> anyhow::Result<()> {
    match command {
        SpaceCommand::Create {
            space_type,
            name,
            unique_id,
        } => {
            let client = global.connect_as_user().await?;
            let ack = client
                .create_space(space_type.into(), &unique_id, &name)
                .await?;
            let uri = client.space_uri(&ack.space).to_string();
            out.print(
                json!({
                    "id": ack.space.as_str(),
                    "uri": uri,
                    "event_id": ack.event_id.to_string(),
                    "seq": ack.seq,
                }),
                || format!("id:  {}\nuri: {uri}", ack.space),
            )
        }
        SpaceCommand::Join { uri } => {
            let client = global.connect_as_user().await?;
            // A URI names the sequencer, through which the node joins a space it does not hold.
            let ack = if uri.starts_with(URI_SCHEME) {
                client.join(&SpaceUri::parse(&uri)?).await?
            } else {
                client.join(&parse_space(&uri)?).await?
            };
            print_ack(out, &ack, "joined")
        }
        SpaceCommand::Leave { space } => {
            let space = parse_space(&space)?;
            let client = global.connect_as_user().await?;
            let ack = client.leave(&space).await?;
            print_ack(out, &ack, "left")
        }
        SpaceCommand::Invite { space, did } => {
            let (client, space, did) = owner_acts_on(global, &space, &did).await?;
            let ack = client.invite(&space, &did).await?;
            print_ack(out, &ack, &format!("invited {did} to"))
        }
        SpaceCommand::Kick { space, did } => {
            let (client, space, did) = owner_acts_on(global, &space, &did).await?;
            let ack = client.kick(&space, &did).await?;
            print_ack(out, &ack, &format!("removed {did} from"))
        }
        SpaceCommand::Ban { space, did } => {
            let (client, space, did) = owner_acts_on(global, &space, &did).await?;
            let ack = client.ban(&space, &did).await?;
            print_ack(out, &ack, &format!("banned {did} from"))
        }
        SpaceCommand::List => {
            let client = global.connect_as_user().await?;
            for space in client.list_spaces().await? {
                out.print(
                    json!({
                        "id": space.id.as_str(),
                        "uri": space.uri,
                        "type": space.space_type.as_str(),
                        "name": space.name,
                        "owner": space.owner.as_str(),
                        "sequencer": space.sequencer.as_str(),
                        "head_seq": space.head_seq,
                    }),
                    || {
                        format!(
                            "{:<7} {}  {}",
                            space.space_type.as_str(),
                            space.uri,
                            space.name
                        )
                    },
                )?;
            }
            Ok(())
        }
        SpaceCommand::Members { space } => {
            let space = parse_space(&space)?;
            let client = global.connect_as_reader().await?;
            for member in client.members(&space).await? {
                out.print(
                    json!({"did": member.did.as_str(), "state": member.state}),
                    || format!("{:<8} {}", member.state, member.did),
                )?;
            }
            Ok(())
        }
        SpaceCommand::Health { space } => {
            let space = parse_space(&space)?;
            let client = global.connect_as_user().await?;
            let health = client.space_health(&space).await?;
            out.print(serde_json::to_value(&health)?, || health_text(&health))
        }
        SpaceCommand::Events {
            space,
            since,
            limit,
        } => {
            let space = parse_space(&space)?;
            let client = global.connect_as_reader().await?;
            for item in client.events_with_beams(&space, since, limit).await? {
                print_event(out, &item)?;
            }
            Ok(())
        }
        SpaceCommand::Export { space, file, beams } => {
            super::export::export(global, out, &space, &file, beams).await
        }
        SpaceCommand::Import { file } => super::export::import(global, out, &file).await,
        SpaceCommand::Tail { space, since } => {
            let space = parse_space(&space)?;
            let client = global.connect_as_reader().await?;
            let mut events = client.subscribe_with_beams(&space, since).await?;
            loop {
                tokio::select! {
                    next = events.next() => match next {
                        Some(event) => print_event(out, &event?)?,
                        None => return Ok(()),
                    },
                    signal = tokio::signal::ctrl_c() => {
                        signal.context("cannot listen for Ctrl-C")?;
                        return Ok(());
                    }
                }
            }
        }
    }
}

/// The owner's connection, the space and the DID of `invite`, `kick` and `ban`; the space and
/// the DID are checked before anything is dialled.
async fn owner_acts_on(
    global: &Global,
    space: &str,
    did: &str,
) -> anyhow::Result<(
    northstar_sdk::Client,
    northstar_sdk::protocol::address::SpaceId,
    Did,
)> {
    let space = parse_space(space)?;
    let did = Did::parse(did).with_context(|| format!("invalid DID {did:?}"))?;
    Ok((global.connect_as_user().await?, space, did))
}

fn print_ack(out: &Output, ack: &Ack, done: &str) -> anyhow::Result<()> {
    out.print(
        json!({
            "space": ack.space.as_str(),
            "event_id": ack.event_id.to_string(),
            "seq": ack.seq,
        }),
        || {
            format!(
                "{done} {} (event {}, seq {})",
                ack.space, ack.event_id, ack.seq
            )
        },
    )
}

/// An event, and the post's `title` and `body` when the node sent its beam inline (verified by
/// the SDK against the event's ref); a post without them is shown by its `beam_uri` alone, for
/// `beam get`.
fn print_event(out: &Output, item: &EventWithBeam) -> anyhow::Result<()> {
    let mut value = event_json(&item.event)?;
    if let (Some(map), Some(beam)) = (value.as_object_mut(), &item.beam) {
        map.insert("title".into(), beam.title.clone().into());
        map.insert("body".into(), beam.body.clone().into());
    }
    out.print(value, || match &item.beam {
        Some(beam) => format!("{}  {:?}", event_line(&item.event), beam.title),
        None => event_line(&item.event),
    })
}

/// An event as one JSON object: `id`, `seq`, `kind`, `author`, `space`, `timestamp`, and by
/// kind: `name` and `sequencer` (create); `subject` (join, leave, invite, kick, ban);
/// `beam` and `beam_uri` (beam); `beam`, and `removed_by` when the beam's home node removed it
/// (tombstone).
fn event_json(event: &Event) -> anyhow::Result<Value> {
    let mut value = json!({
        "id": event.id()?.to_string(),
        "seq": event.seq,
        "kind": event.payload.kind(),
        "author": event.author().as_str(),
        "space": event.space.as_str(),
        "timestamp": event.timestamp,
    });
    let extra = match &event.payload {
        Payload::Create(genesis) => json!({
            "name": genesis.name,
            "sequencer": genesis.sequencer.as_str(),
        }),
        Payload::Membership(request) => json!({"subject": request.subject.as_str()}),
        Payload::BeamRef(beam_ref) => json!({
            "beam": beam_ref.beam.to_string(),
            "beam_uri": beam_ref.beam_uri().to_string(),
        }),
        Payload::Tombstone(tombstone) => match &tombstone.node {
            Some(node) => json!({"beam": tombstone.beam.to_string(), "removed_by": node.as_str()}),
            None => json!({"beam": tombstone.beam.to_string()}),
        },
        Payload::Edit(edit) => json!({
            "beam": edit.supersedes.to_string(),
            "version": edit.version,
            "version_beam": edit.beam.to_string(),
            "drop_history": edit.drop_history,
        }),
    };
    if let (Some(map), Value::Object(extra)) = (value.as_object_mut(), extra) {
        map.extend(extra);
    }
    Ok(value)
}

/// An event as one line for people: seq, kind, author, and what the kind carries.
fn event_line(event: &Event) -> String {
    let detail = match &event.payload {
        Payload::Create(genesis) => format!("{:?}", genesis.name),
        Payload::Membership(request) if request.subject != request.actor => {
            request.subject.to_string()
        }
        Payload::Membership(_) => String::new(),
        Payload::BeamRef(beam_ref) => beam_ref.beam_uri().to_string(),
        Payload::Tombstone(tombstone) => tombstone.beam.to_string(),
        Payload::Edit(edit) => format!("{} v{} {}", edit.supersedes, edit.version, edit.beam),
    };
    format!(
        "{:>6}  {:<9} {}  {detail}",
        event.seq,
        event.payload.kind(),
        event.author()
    )
    .trim_end()
    .to_owned()
}

/// `space health` for people: a summary line, then one line per member node.
fn health_text(health: &northstar_sdk::protocol::api::SpaceHealth) -> String {
    let mut text = format!(
        "{}: head {}, {} of {} member node(s) at the head, most behind {} event(s) / {} ms, {} hop(s) deep",
        health.space,
        health.head,
        health.at_head,
        health.nodes,
        health.max_lag_events,
        health.max_lag_ms,
        health.max_hops
    );
    for node in &health.members {
        let state = match (node.seq, node.lag_events, node.lag_ms) {
            (Some(seq), Some(events), Some(ms)) => {
                format!("seq {seq}, behind {events} event(s) / {ms} ms")
            }
            _ => "no report yet".to_owned(),
        };
        text.push_str(&format!(
            "\n  {} ({}), {} hop(s): {state}",
            node.node, node.authority, node.hops
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use northstar_sdk::Keypair;
    use northstar_sdk::protocol::address::SpaceId;
    use northstar_sdk::protocol::wire::{Beam, Membership, MembershipAction};

    #[test]
    fn event_json_has_the_contract_keys() {
        let node = Keypair::from_seed(&[1; 32]);
        let alice = Keypair::from_seed(&[2; 32]);
        let bob = Keypair::from_seed(&[3; 32]);
        let space = SpaceId::new(SpaceType::Channel, alice.did(), "general").unwrap();
        let prev = Some(northstar_sdk::protocol::ContentId::of(b"genesis"));

        let join = Membership::create(
            &bob,
            space.clone(),
            MembershipAction::Join,
            bob.did().clone(),
            5,
        )
        .unwrap();
        let event =
            Event::sequence(&node, space.clone(), 2, prev, 6, Payload::Membership(join)).unwrap();
        let value = event_json(&event).unwrap();
        assert_eq!(value["id"], event.id().unwrap().to_string());
        assert_eq!(value["seq"], 2);
        assert_eq!(value["kind"], "join");
        assert_eq!(value["author"], bob.did().as_str());
        assert_eq!(value["subject"], bob.did().as_str());

        let (_, beam_ref) = Beam::post(&bob, space.clone(), "h:1", "t", "b", 7).unwrap();
        let uri = beam_ref.beam_uri().to_string();
        let event = Event::sequence(&node, space, 3, prev, 8, Payload::BeamRef(beam_ref)).unwrap();
        let value = event_json(&event).unwrap();
        assert_eq!(value["kind"], "beam");
        assert_eq!(value["beam_uri"], uri);
        assert!(event_line(&event).contains(&uri));
    }
}
