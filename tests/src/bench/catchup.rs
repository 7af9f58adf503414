//! Catch-up: a member node that was offline while 50,000 events were sequenced comes back;
//! how long until it holds them all, and events per second.
//!
//! One member node per run joins the sequencer's channel (in this process, each with a user
//! who joined through it) and is stopped; the owner then posts the events; each run restarts
//! one member node on its data directory and address and times from the start until a
//! subscription on it delivers the last event (the node pulls what it missed as it starts).
//!
//! Ceiling: Ed25519 batch verification (`ed25519_dalek::verify_batch`) of the same signatures,
//! two per event (the author's on the beam ref and the sequencer's on the event), fetched from
//! the sequencer, on all cores.
//!
//! With `--storage sqlite,postgres` the whole scenario runs once per backend, every node of it
//! (sequencer and members) on that backend.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use futures_util::StreamExt;
use northstar_protocol::Did;
use northstar_protocol::address::{SpaceId, SpaceType};
use northstar_protocol::wire::{Event, Payload};
use northstar_sdk::Client;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

use super::ceiling::{SignedMessage, batch_verify_rate};
use super::load::post_window;
use super::nodes::{LocalNode, new_data_dir};
use super::raw::RawConn;
use super::report::{Bound, Row, Series, Unit, count};
use super::storage::Backend;
use super::{Bench, Scenario, keypair};

/// Posts in flight while the missed events are made.
const PREP_WINDOW: usize = 64;

/// Posts per progress line while the missed events are made.
const PREP_CHUNK: usize = 5_000;

/// Events per `space.events` page when fetching the signatures.
const PAGE: u32 = 500;

/// How long one catch-up may take.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(900);

/// Run the scenario on each backend in turn.
pub async fn run(bench: &mut Bench<'_>) -> anyhow::Result<Vec<Row>> {
    let mut rows = Vec::new();
    for &backend in &bench.settings.storage {
        rows.extend(run_on(bench, backend).await?);
    }
    Ok(rows)
}

async fn run_on(bench: &mut Bench<'_>, backend: Backend) -> anyhow::Result<Vec<Row>> {
    let settings = bench.settings;
    let events = settings.catchup_events;
    let prepared = prepare(bench, events, backend).await?;
    let signatures = Arc::new(prepared.signatures);
    let (mut time, mut rate) = (Series::default(), Series::default());
    for (run, (dir, addr, storage_url)) in prepared.offline.into_iter().enumerate() {
        let start = Instant::now();
        let member = LocalNode::start_in(dir, addr, |c| c.storage_url = storage_url).await?;
        wait_for(&member.url, &prepared.space, prepared.target).await?;
        let took = start.elapsed().as_secs_f64();
        member.stop().await?;
        let sigs = signatures.clone();
        let ceiling =
            tokio::task::spawn_blocking(move || batch_verify_rate(&sigs, events)).await??;
        let per_sec = events as f64 / took;
        time.push(took, events as f64 / ceiling);
        rate.push(per_sec, ceiling);
        bench.progress(
            Scenario::Catchup,
            format!(
                "{}, run {}/{}: {events} events in {took:.2} s, {per_sec:.0} events/s (batch \
                 verification {ceiling:.0} events/s)",
                backend.name(),
                run + 1,
                settings.runs
            ),
        );
    }
    drop(prepared.owner);
    prepared.sequencer.stop().await?;
    let cores = bench.machine.cores;
    Ok(vec![
        Row {
            samples: time.figure,
            ..Row::new(
                Scenario::Catchup,
                bench.label(
                    format!("time to catch up {} events", count(events)),
                    backend,
                ),
                Unit::Secs,
            )
        }
        .with_bound(Bound::floor(
            format!("batch verification, {cores} cores"),
            time.bound,
        )),
        Row {
            samples: rate.figure,
            ..Row::new(
                Scenario::Catchup,
                bench.label("events caught up".to_owned(), backend),
                Unit::PerSec,
            )
        }
        .with_bound(Bound::ceiling(
            format!("verify_batch, 2 sigs/event, {cores} cores"),
            rate.bound,
        )),
    ])
}

/// A sequencer whose channel has `events` more events than its offline member nodes hold.
struct Prepared {
    sequencer: LocalNode,
    owner: Client,
    space: SpaceId,
    /// The seq of the last event.
    target: u64,
    /// Each offline member node's data directory, address and `storage_url`: one per run.
    offline: Vec<(PathBuf, SocketAddr, String)>,
    /// Two per missed event: the author's and the sequencer's.
    signatures: Vec<SignedMessage>,
}

/// A node on `backend` with a new data directory.
async fn start(bench: &Bench<'_>, backend: Backend) -> anyhow::Result<(LocalNode, String)> {
    let dir = new_data_dir(bench.root())?;
    let storage_url = bench.storage_url(backend, &dir).await?;
    let url = storage_url.clone();
    let node = LocalNode::start_in(dir, SocketAddr::from(([127, 0, 0, 1], 0)), |c| {
        c.storage_url = url
    })
    .await?;
    Ok((node, storage_url))
}

/// Start a sequencer, have one member node per run join and stop, then post `events` beams;
/// every node on `backend`.
async fn prepare(bench: &Bench<'_>, events: usize, backend: Backend) -> anyhow::Result<Prepared> {
    let (sequencer, _) = start(bench, backend).await?;
    let owner = Client::connect(&sequencer.url, keypair()?).await?;
    let space = owner
        .create_space(SpaceType::Channel, "catchup", "Catch-up")
        .await?
        .space;
    let uri = owner.space_uri(&space);
    let mut offline = Vec::with_capacity(bench.settings.runs);
    for _ in 0..bench.settings.runs {
        let (member, storage_url) = start(bench, backend).await?;
        let user = Client::connect(&member.url, keypair()?).await?;
        user.join(&uri).await?;
        drop(user);
        offline.push((member.data_dir.clone(), member.addr, storage_url));
        member.stop().await?;
    }
    let before = owner.get_space(&space).await?.head_seq;
    let made = Instant::now();
    let mut posted = 0;
    while posted < events {
        let chunk = PREP_CHUNK.min(events - posted);
        post_window(&owner, &space, chunk, PREP_WINDOW).await?;
        posted += chunk;
        bench.progress(
            Scenario::Catchup,
            format!(
                "{}: {posted}/{events} events sequenced while {} member nodes are offline ({:.0} s)",
                backend.name(),
                offline.len(),
                made.elapsed().as_secs_f64()
            ),
        );
    }
    let target = before + events as u64;
    let sequencer_did = owner.node_info().did.clone();
    let signatures = signatures(&sequencer.url, &space, &sequencer_did, before, target).await?;
    anyhow::ensure!(
        signatures.len() == 2 * events,
        "fetched {} signatures for {events} events",
        signatures.len()
    );
    Ok(Prepared {
        sequencer,
        owner,
        space,
        target,
        offline,
        signatures,
    })
}

/// The author's and the sequencer's signature of every event in `since+1..=until`.
async fn signatures(
    url: &str,
    space: &SpaceId,
    sequencer: &Did,
    since: u64,
    until: u64,
) -> anyhow::Result<Vec<SignedMessage>> {
    let mut conn = RawConn::connect(url).await?;
    let mut out = Vec::new();
    let mut cursor = since;
    while cursor < until {
        let page = conn
            .call("space.events", json!([space.as_str(), cursor, PAGE]))
            .await?;
        let events = page["events"].as_array().context("no events in the page")?;
        anyhow::ensure!(
            !events.is_empty(),
            "the log ends at {cursor}, before {until}"
        );
        for raw in events {
            let event: Event = serde_json::from_value(raw.clone())?;
            if event.seq > until {
                break;
            }
            let Payload::BeamRef(beam_ref) = &event.payload else {
                bail!("event {} is not a beam", event.seq);
            };
            out.push(SignedMessage::of(beam_ref, &beam_ref.author)?);
            out.push(SignedMessage::of(&event, sequencer)?);
            cursor = event.seq;
        }
    }
    Ok(out)
}

/// Wait until the node at `url` delivers event `target` of `space` to a subscriber; subscribe
/// again if the subscription ends first.
async fn wait_for(url: &str, space: &SpaceId, target: u64) -> anyhow::Result<()> {
    tokio::time::timeout(CATCH_UP_TIMEOUT, async {
        loop {
            let mut conn = RawConn::connect(url).await?;
            conn.subscribe(space.as_str(), target - 1).await?;
            let mut ws = conn.into_ws();
            while let Some(msg) = ws.next().await {
                let Message::Text(text) = msg? else { continue };
                let note: serde_json::Value = serde_json::from_str(&text)?;
                if note["params"]["result"]["seq"].as_u64() >= Some(target) {
                    return anyhow::Ok(());
                }
                if note["params"].get("error").is_some() {
                    break; // cut off as slow: subscribe again
                }
            }
        }
    })
    .await
    .with_context(|| format!("event {target} did not arrive in time"))?
}
