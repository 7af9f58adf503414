//! The ceilings and floors the figures are compared with, measured on this machine in the same
//! run: Ed25519 work on all cores (with `ed25519-dalek` directly, over real protocol objects
//! built with `northstar-protocol`), and the latency of a plain WebSocket round trip and of a
//! plain relay hop.
//!
//! The crypto ceilings spread their work over `available_parallelism` threads; they are what
//! the node could reach if signatures were all it did.

use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use futures_util::{SinkExt, StreamExt};
use northstar_protocol::address::{SpaceId, SpaceType};
use northstar_protocol::sign::signing_message;
use northstar_protocol::wire::{AuthChallenge, AuthResponse, BeamRef, Event, Payload};
use northstar_protocol::{ContentId, Did, Domain, Keypair, Signed};
use tokio::net::TcpListener;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::{Bytes, Message};

use super::machine::cores;
use super::nodes::ChildProcess;
use super::plain::PLAIN_SUBCOMMAND;
use super::report::percentile;

/// Distinct signed objects the crypto ceilings cycle through.
const POOL: usize = 256;

/// Signatures per `verify_batch` call: past a few hundred the per-signature cost hardly falls.
const BATCH: usize = 1024;

/// One signature to check.
#[derive(Clone)]
pub struct SignedMessage {
    message: Vec<u8>,
    signature: ed25519_dalek::Signature,
    key: VerifyingKey,
}

impl SignedMessage {
    /// The signature of `object` by `signer`, over the message the protocol signs.
    pub fn of<T: Signed>(object: &T, signer: &Did) -> anyhow::Result<Self> {
        Ok(Self {
            message: object.signed_message()?.0,
            signature: ed25519_dalek::Signature::from_bytes(&object.signature().to_bytes()),
            key: VerifyingKey::from_bytes(signer.public_key())?,
        })
    }

    fn verify_strict(&self) -> bool {
        self.key
            .verify_strict(&self.message, &self.signature)
            .is_ok()
    }
}

/// The wall clock, ms since the Unix epoch, as objects carry it.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn keypair() -> anyhow::Result<Keypair> {
    Keypair::generate().map_err(|e| anyhow::anyhow!("no randomness: {e}"))
}

fn signing_key(key: &Keypair) -> SigningKey {
    SigningKey::from_bytes(&key.seed())
}

/// Run `op(i)` for `i` in `0..total`, split in contiguous ranges over all cores; the time taken.
pub fn on_all_cores(total: usize, op: impl Fn(usize) + Sync) -> Duration {
    let threads = cores().min(total.max(1));
    let per = total.div_ceil(threads);
    let start = Instant::now();
    std::thread::scope(|scope| {
        for t in 0..threads {
            let op = &op;
            scope.spawn(move || {
                for i in (t * per)..((t + 1) * per).min(total) {
                    op(i);
                }
            });
        }
    });
    start.elapsed()
}

fn rate(count: usize, elapsed: Duration) -> f64 {
    count as f64 / elapsed.as_secs_f64().max(1e-9)
}

/// The ingest ceiling's work per event: strict verification of the author's signature of a
/// post (one for the beam and its ref, spec §4.5), and the sequencer's signature on the event
/// that carries the ref.
pub struct IngestWork {
    refs: Vec<SignedMessage>,
    events: Vec<Vec<u8>>,
    sequencer: SigningKey,
}

impl IngestWork {
    /// Real beam refs by a few authors and the events a sequencer would make of them.
    pub fn new() -> anyhow::Result<Self> {
        let owner = keypair()?;
        let sequencer = keypair()?;
        let authors: Vec<Keypair> = (0..16).map(|_| keypair()).collect::<Result<_, _>>()?;
        let space = SpaceId::new(SpaceType::Channel, owner.did(), "bench")?;
        let now = now_ms();
        let (mut refs, mut events) = (Vec::with_capacity(POOL), Vec::with_capacity(POOL));
        let mut prev = ContentId::of(b"genesis");
        for i in 0..POOL {
            let author = &authors[i % authors.len()];
            let beam = ContentId::of(format!("beam {i}").as_bytes());
            let beam_ref = BeamRef::create(author, space.clone(), beam, "127.0.0.1:7700", now)?;
            refs.push(SignedMessage::of(&beam_ref, author.did())?);
            let event = Event::sequence(
                &sequencer,
                space.clone(),
                i as u64 + 2,
                Some(prev),
                now,
                Payload::BeamRef(beam_ref),
            )?;
            events.push(signing_message(Domain::Event, &event.canonical_unsigned()?));
            prev = event.id()?;
        }
        Ok(Self {
            refs,
            events,
            sequencer: signing_key(&sequencer),
        })
    }

    /// Events per second for `events` events on all cores.
    pub fn rate(&self, events: usize) -> anyhow::Result<f64> {
        let failed = std::sync::atomic::AtomicBool::new(false);
        let elapsed = on_all_cores(events, |i| {
            if !self.refs[i % POOL].verify_strict() {
                failed.store(true, std::sync::atomic::Ordering::Relaxed);
            }
            std::hint::black_box(self.sequencer.sign(&self.events[i % POOL]));
        });
        anyhow::ensure!(!failed.into_inner(), "a beam ref did not verify");
        Ok(rate(events, elapsed))
    }

    /// One strict verification and one signature on one core, each; the median of many.
    pub fn single_core_costs(&self) -> (Duration, Duration) {
        let mut verify = Vec::with_capacity(POOL);
        let mut sign = Vec::with_capacity(POOL);
        for i in 0..POOL {
            let t = Instant::now();
            std::hint::black_box(self.refs[i].verify_strict());
            verify.push(t.elapsed().as_secs_f64());
            let t = Instant::now();
            std::hint::black_box(self.sequencer.sign(&self.events[i]));
            sign.push(t.elapsed().as_secs_f64());
        }
        verify.sort_by(f64::total_cmp);
        sign.sort_by(f64::total_cmp);
        (
            Duration::from_secs_f64(percentile(&verify, 50.0)),
            Duration::from_secs_f64(percentile(&sign, 50.0)),
        )
    }
}

/// The auth ceiling's work per handshake: the node signs a challenge and strictly verifies the
/// client's response.
pub struct AuthWork {
    challenges: Vec<Vec<u8>>,
    responses: Vec<SignedMessage>,
    node: SigningKey,
}

impl AuthWork {
    /// Real challenges by one node and responses by several users.
    pub fn new() -> anyhow::Result<Self> {
        let node = keypair()?;
        let now = now_ms();
        let (mut challenges, mut responses) = (Vec::new(), Vec::new());
        for _ in 0..POOL {
            let user = keypair()?;
            let challenge = AuthChallenge::issue(&node, "ws://127.0.0.1:7700", now, now + 60_000)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            challenges.push(signing_message(
                Domain::AuthChallenge,
                &challenge.canonical_unsigned()?,
            ));
            let response = AuthResponse::answer(&user, challenge)?;
            responses.push(SignedMessage::of(&response, user.did())?);
        }
        Ok(Self {
            challenges,
            responses,
            node: signing_key(&node),
        })
    }

    /// Handshakes per second for `count` handshakes on all cores.
    pub fn rate(&self, count: usize) -> anyhow::Result<f64> {
        let failed = std::sync::atomic::AtomicBool::new(false);
        let elapsed = on_all_cores(count, |i| {
            std::hint::black_box(self.node.sign(&self.challenges[i % POOL]));
            if !self.responses[i % POOL].verify_strict() {
                failed.store(true, std::sync::atomic::Ordering::Relaxed);
            }
        });
        anyhow::ensure!(!failed.into_inner(), "a response did not verify");
        Ok(rate(count, elapsed))
    }
}

/// Events per second to batch-verify `signatures` (two per event) on all cores.
pub fn batch_verify_rate(signatures: &[SignedMessage], events: usize) -> anyhow::Result<f64> {
    let chunks: Vec<&[SignedMessage]> = signatures.chunks(BATCH).collect();
    let failed = std::sync::atomic::AtomicBool::new(false);
    let elapsed = on_all_cores(chunks.len(), |i| {
        let chunk = chunks[i];
        let messages: Vec<&[u8]> = chunk.iter().map(|s| s.message.as_slice()).collect();
        let sigs: Vec<ed25519_dalek::Signature> = chunk.iter().map(|s| s.signature).collect();
        let keys: Vec<VerifyingKey> = chunk.iter().map(|s| s.key).collect();
        if ed25519_dalek::verify_batch(&messages, &sigs, &keys).is_err() {
            failed.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    });
    anyhow::ensure!(!failed.into_inner(), "a batch did not verify");
    Ok(rate(events, elapsed))
}

/// The median round trip of one small text message over a plain tokio-tungstenite WebSocket on
/// 127.0.0.1 (Nagle off on both ends), after a warm-up.
pub async fn websocket_round_trip() -> anyhow::Result<Duration> {
    const WARM_UP: usize = 50;
    const TRIPS: usize = 500;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let server = tokio_util::task::AbortOnDropHandle::new(tokio::spawn(async move {
        let (socket, _) = listener.accept().await?;
        socket.set_nodelay(true)?;
        let mut ws = tokio_tungstenite::accept_async(socket).await?;
        while let Some(msg) = ws.next().await {
            let msg = msg?;
            if msg.is_text() {
                ws.send(msg).await?;
            }
        }
        anyhow::Ok(())
    }));
    let (mut ws, _) =
        tokio_tungstenite::connect_async_with_config(format!("ws://{addr}"), None, true).await?;
    let payload = "x".repeat(200);
    let mut samples = Vec::with_capacity(TRIPS);
    for i in 0..WARM_UP + TRIPS {
        let start = Instant::now();
        ws.send(Message::text(payload.clone())).await?;
        ws.next().await.context("the echo server closed")??;
        if i >= WARM_UP {
            samples.push(start.elapsed().as_secs_f64());
        }
    }
    drop(ws);
    drop(server);
    samples.sort_by(f64::total_cmp);
    Ok(Duration::from_secs_f64(percentile(&samples, 50.0)))
}

/// The median time for a binary message of `len` bytes to go from a plain tokio-tungstenite
/// client, through the plain server in its own process ([`super::plain`], `exe __plain`), which
/// reads it on one WebSocket and writes it on another, to a second client, all on 127.0.0.1
/// (Nagle off everywhere): one hop of a relay tree that forwards bytes and checks nothing.
/// `trips` messages after a short warm-up, one every `gap` (back to back if zero): the pace
/// matters, since a process that waits between messages parks its threads, and waking one
/// costs more than the forwarding.
pub async fn websocket_relay_hop(
    exe: &Path,
    len: usize,
    gap: Duration,
    trips: usize,
) -> anyhow::Result<Duration> {
    const WARM_UP: usize = 10;
    let mut tick = (!gap.is_zero()).then(|| tokio::time::interval(gap));
    let relay = ChildProcess::spawn(exe, &[PLAIN_SUBCOMMAND]).await?;
    let url = relay.url();
    let (mut source, _) = tokio_tungstenite::connect_async_with_config(&url, None, true).await?;
    let (mut sink, _) = tokio_tungstenite::connect_async_with_config(&url, None, true).await?;
    // The relay serves a connection once it is upgraded: a round trip on each makes sure.
    for ws in [&mut source, &mut sink] {
        ws.send(Message::text("ready?")).await?;
        ws.next().await.context("the relay closed")??;
    }
    let payload = Bytes::from(vec![0x5a; len]);
    let mut samples = Vec::with_capacity(trips);
    for i in 0..WARM_UP + trips {
        if let Some(tick) = &mut tick {
            tick.tick().await;
        }
        let start = Instant::now();
        source.send(Message::Binary(payload.clone())).await?;
        next_binary(&mut sink).await?;
        if i >= WARM_UP {
            samples.push(start.elapsed().as_secs_f64());
        }
        // The relay sends the source its own message too, untimed.
        next_binary(&mut source).await?;
    }
    drop((source, sink));
    relay.stop().await?;
    samples.sort_by(f64::total_cmp);
    Ok(Duration::from_secs_f64(percentile(&samples, 50.0)))
}

async fn next_binary<S>(ws: &mut WebSocketStream<S>) -> anyhow::Result<()>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    loop {
        if ws.next().await.context("the relay closed")??.is_binary() {
            return Ok(());
        }
    }
}
