//! A small chat on one channel: alice creates it, bob joins it by its URI, both post, and each
//! prints what their subscription delivers until both messages have arrived.
//!
//! ```text
//! cargo run -p northstar-sdk --example chat -- ws://127.0.0.1:7700
//! ```
//!
//! The node URL comes from the first argument, else `NORTHSTAR_NODE`, else
//! `ws://127.0.0.1:7700`. Both users get fresh keys, so any open node will do.

use std::error::Error;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use northstar_sdk::protocol::address::{SpaceType, SpaceUri};
use northstar_sdk::protocol::wire::Payload;
use northstar_sdk::{Client, EventStream, keystore};

/// How long the whole chat may take.
const TIMEOUT: Duration = Duration::from_secs(20);

type Result<T> = std::result::Result<T, Box<dyn Error + Send + Sync>>;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let url = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("NORTHSTAR_NODE").ok())
        .unwrap_or_else(|| "ws://127.0.0.1:7700".to_owned());
    match tokio::time::timeout(TIMEOUT, chat(&url)).await {
        Ok(Ok(())) => std::process::ExitCode::SUCCESS,
        Ok(Err(err)) => {
            eprintln!("error: {}", chain(err.as_ref()));
            std::process::ExitCode::FAILURE
        }
        Err(_) => {
            eprintln!("error: the chat did not finish within {TIMEOUT:?}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn chat(url: &str) -> Result<()> {
    let alice = Client::connect(url, keystore::ephemeral()?).await?;
    let bob = Client::connect(url, keystore::ephemeral()?).await?;
    println!("node  {} at {url}", alice.node_info().did);

    // A fresh channel each run: unique ids are per owner, and alice is new anyway.
    let stamp = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis();
    let ack = alice
        .create_space(SpaceType::Channel, &format!("chat-{stamp}"), "Chat")
        .await?;
    let uri = alice.space_uri(&ack.space).to_string();
    println!("alice created {uri}");

    // Bob only knows the URI, as if alice had sent it to him.
    let space = SpaceUri::parse(&uri)?;
    bob.join(&space).await?;
    println!("bob joined");

    // Subscribing from seq 0 replays the whole log, so neither misses a message posted
    // before their subscription started.
    let alice_feed = alice.subscribe(&space, 0).await?;
    let bob_feed = bob.subscribe(&space, 0).await?;

    alice
        .post(&space, "hello", "Hi Bob, welcome to the channel!")
        .await?;
    bob.post(&space, "re: hello", "Hi Alice, glad to be here.")
        .await?;

    tokio::try_join!(
        print_messages("alice", &alice, alice_feed, 2),
        print_messages("bob", &bob, bob_feed, 2),
    )?;
    Ok(())
}

/// Print what `feed` delivers until `count` messages (beams) have arrived.
async fn print_messages(
    who: &str,
    client: &Client,
    mut feed: EventStream,
    count: usize,
) -> Result<()> {
    let mut seen = 0;
    while seen < count {
        let Some(event) = feed.next().await else {
            return Err(format!("{who}'s subscription ended early").into());
        };
        let event = event?;
        let Payload::BeamRef(beam_ref) = &event.payload else {
            println!(
                "[{who}] #{} {} by {}",
                event.seq,
                event.payload.kind(),
                event.author()
            );
            continue;
        };
        // The event carries a reference; the text lives with the beam on the author's node.
        let beam = client.get_beam(&beam_ref.beam_uri()).await?;
        println!(
            "[{who}] #{} {}: {} — {}",
            event.seq,
            short(event.author().as_str()),
            beam.title,
            beam.body
        );
        seen += 1;
    }
    Ok(())
}

/// The end of a DID, enough to tell two apart on screen.
fn short(did: &str) -> &str {
    &did[did.len().saturating_sub(8)..]
}

/// An error and its causes on one line.
fn chain(err: &(dyn Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
