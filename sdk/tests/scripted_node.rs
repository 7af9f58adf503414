//! The client against a scripted node on 127.0.0.1: a jsonrpsee server implementing the
//! protocol's server traits over a fixed, validly signed log, whose subscriptions send exactly
//! the events a test plans (with repeats, holes, forgeries) and then hold or cut off.
//!
//! This checks what a real node cannot easily be made to do: the handshake refusing a challenge
//! for another origin, and the event stream resuming, de-duplicating and filling gaps.

mod scripted;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use jsonrpsee::core::{RpcResult, SubscriptionResult, async_trait};
use jsonrpsee::server::{Server, ServerHandle};
use jsonrpsee::types::ErrorObjectOwned;
use jsonrpsee::{Extensions, PendingSubscriptionSink, RpcModule, SubscriptionMessage};
use northstar_protocol::address::{SpaceId, SpaceType};
use northstar_protocol::api::{
    Ack, Authenticated, EventItem, EventPage, MemberInfo, NodeInfo, SpaceImported, SpaceInfo,
};
use northstar_protocol::rpc::{AuthApiServer, NodeApiServer, SpaceApiServer, SpaceEventsApiServer};
use northstar_protocol::wire::{
    AuthChallenge, AuthResponse, Beam, BeamRef, Event, Membership, Payload, SpaceGenesis,
};
use northstar_protocol::{Keypair, PROTOCOL_VERSION};
use northstar_sdk::auth::{AuthError, ChallengeRefused};
use northstar_sdk::verify::VerifyError;
use northstar_sdk::{Client, SdkError};
use serde_json::value::RawValue;

/// Every wait in these tests ends within this.
const TIMEOUT: Duration = Duration::from_secs(10);
const T: u64 = 1_767_225_600_000;

/// What one `space.subscribe` call does: send these events, then these texts as they are
/// (event items, for a subscription with beams inline), then hold or cut off.
struct Plan {
    send: Vec<Event>,
    items: Vec<String>,
    cut_off: bool,
}

struct Fake {
    node: Keypair,
    origin: String,
    space: SpaceId,
    log: Vec<Event>,
    plans: Mutex<VecDeque<Plan>>,
    subscribed_since: Mutex<Vec<u64>>,
    events_since: Mutex<Vec<u64>>,
    responses: AtomicUsize,
    /// The protocol version its `node.info` states.
    protocol: AtomicU32,
    /// Whether pages asked for beams inline carry a tampered copy of each beam.
    tamper: std::sync::atomic::AtomicBool,
}

#[derive(Clone)]
struct Handler(Arc<Fake>);

fn unsupported() -> ErrorObjectOwned {
    ErrorObjectOwned::owned::<()>(-32601, "not in this script", None)
}

fn raw(event: &Event) -> Box<RawValue> {
    RawValue::from_string(serde_json::to_string(event).unwrap()).unwrap()
}

#[async_trait]
impl NodeApiServer for Handler {
    async fn info(&self) -> RpcResult<NodeInfo> {
        let fake = &self.0;
        // Small pages, so filling a gap takes more than one.
        let mut info = scripted::node_info(fake.node.did(), &fake.origin, 2);
        info.protocol = fake.protocol.load(Ordering::SeqCst);
        Ok(info)
    }
}

#[async_trait]
impl AuthApiServer for Handler {
    async fn challenge(&self, _: &Extensions) -> RpcResult<AuthChallenge> {
        Ok(AuthChallenge::issue(&self.0.node, &self.0.origin, T, u64::MAX >> 11).unwrap())
    }

    async fn respond(&self, _: &Extensions, response: AuthResponse) -> RpcResult<Authenticated> {
        self.0.responses.fetch_add(1, Ordering::SeqCst);
        response.verify().unwrap();
        Ok(Authenticated { did: response.did })
    }
}

#[async_trait]
impl SpaceApiServer for Handler {
    async fn create(&self, _: &Extensions, _: SpaceGenesis) -> RpcResult<Ack> {
        Err(unsupported())
    }

    async fn import(
        &self,
        _: &Extensions,
        _: SpaceId,
        _: Vec<EventItem>,
    ) -> RpcResult<SpaceImported> {
        Err(unsupported())
    }

    async fn get(&self, _: &Extensions, space: SpaceId) -> RpcResult<SpaceInfo> {
        let fake = &self.0;
        assert_eq!(space, fake.space);
        Ok(SpaceInfo {
            id: space.clone(),
            uri: format!("northstar://x/{space}"),
            space_type: space.space_type(),
            name: "General".into(),
            owner: space.owner().clone(),
            sequencer: fake.node.did().clone(),
            head_seq: fake.log.len() as u64,
        })
    }

    async fn list(&self, _: &Extensions) -> RpcResult<Vec<SpaceInfo>> {
        Err(unsupported())
    }

    async fn join(&self, _: &Extensions, _: Membership, _: Option<String>) -> RpcResult<Ack> {
        Err(unsupported())
    }

    async fn leave(&self, _: &Extensions, _: Membership) -> RpcResult<Ack> {
        Err(unsupported())
    }

    async fn invite(&self, _: &Extensions, _: Membership) -> RpcResult<Ack> {
        Err(unsupported())
    }

    async fn kick(&self, _: &Extensions, _: Membership) -> RpcResult<Ack> {
        Err(unsupported())
    }

    async fn ban(&self, _: &Extensions, _: Membership) -> RpcResult<Ack> {
        Err(unsupported())
    }

    async fn members(&self, _: &Extensions, _: SpaceId) -> RpcResult<Vec<MemberInfo>> {
        Err(unsupported())
    }

    async fn post(
        &self,
        _: &Extensions,
        _: Beam,
        _: BeamRef,
    ) -> RpcResult<northstar_protocol::api::BeamPosted> {
        Err(unsupported())
    }

    async fn events(
        &self,
        _: &Extensions,
        _: SpaceId,
        since: u64,
        limit: u32,
        beams: Option<bool>,
    ) -> RpcResult<EventPage> {
        let fake = &self.0;
        fake.events_since.lock().unwrap().push(since);
        let limit = limit.min(2) as usize;
        let page = fake.log.iter().skip(since as usize).take(limit);
        let events = page.clone().map(raw).collect();
        let tamper = fake.tamper.load(Ordering::SeqCst);
        let beams = (beams == Some(true)).then(|| {
            page.filter(|event| event.seq > 1)
                .map(|event| {
                    let beam = beam_of(event.seq);
                    let beam = if tamper { tampered(&beam) } else { beam };
                    RawValue::from_string(serde_json::to_string(&beam).unwrap()).unwrap()
                })
                .collect()
        });
        Ok(EventPage {
            events,
            head_seq: fake.log.len() as u64,
            beams,
        })
    }

    async fn health(
        &self,
        _: &Extensions,
        _: SpaceId,
    ) -> RpcResult<northstar_protocol::api::SpaceHealth> {
        Err(unsupported())
    }
}

#[async_trait]
impl SpaceEventsApiServer for Handler {
    async fn subscribe_events(
        &self,
        pending: PendingSubscriptionSink,
        _: &Extensions,
        _: SpaceId,
        since: u64,
    ) -> SubscriptionResult {
        let fake = self.0.clone();
        fake.subscribed_since.lock().unwrap().push(since);
        let plan = fake.plans.lock().unwrap().pop_front();
        let sink = pending.accept().await?;
        let Some(plan) = plan else {
            sink.closed().await;
            return Ok(());
        };
        for event in &plan.send {
            sink.send(SubscriptionMessage::from(raw(event))).await?;
        }
        for item in &plan.items {
            let item = RawValue::from_string(item.clone()).unwrap();
            sink.send(SubscriptionMessage::from(item)).await?;
        }
        if plan.cut_off {
            return Err("slow_subscriber: cut off by the script".into());
        }
        sink.closed().await;
        Ok(())
    }
}

struct Scripted {
    fake: Arc<Fake>,
    url: String,
    handle: ServerHandle,
}

impl Drop for Scripted {
    fn drop(&mut self) {
        // Stopping twice is the only error, and this is the only place that stops it.
        let _ = self.handle.stop();
    }
}

/// A log of `len` events: the genesis, then posts by the owner.
fn log(node: &Keypair, owner: &Keypair, space: &SpaceId, len: usize) -> Vec<Event> {
    let genesis = SpaceGenesis::create(
        owner,
        space.clone(),
        "General",
        node.did().clone(),
        "x",
        10,
        T,
    )
    .unwrap();
    let mut events =
        vec![Event::sequence(node, space.clone(), 1, None, T, Payload::Create(genesis)).unwrap()];
    for seq in 2..=len as u64 {
        assert_eq!(
            space,
            &post_of(seq).1.space,
            "posts go to the owner's general"
        );
        let (_, beam_ref) = post_of(seq);
        let prev = Some(events.last().unwrap().id().unwrap());
        events.push(
            Event::sequence(
                node,
                space.clone(),
                seq,
                prev,
                T + seq,
                Payload::BeamRef(beam_ref),
            )
            .unwrap(),
        );
    }
    events
}

/// The post of event `seq` (from 2): by the owner, seed 2, into their channel `general`.
fn post_of(seq: u64) -> (Beam, BeamRef) {
    let owner = Keypair::from_seed(&[2; 32]);
    let space = SpaceId::new(SpaceType::Channel, owner.did(), "general").unwrap();
    Beam::post(&owner, space, "x", &format!("post {seq}"), "body", T).unwrap()
}

/// The beam the ref of event `seq` (from 2) names.
fn beam_of(seq: u64) -> Beam {
    post_of(seq).0
}

/// `beam` with another body and its signature kept: it no longer verifies, and its content id
/// is not the one its ref names.
fn tampered(beam: &Beam) -> Beam {
    let mut beam = beam.clone();
    beam.body = "something the author never wrote".into();
    beam
}

/// The event item of `event`, with `beam` inline if given.
fn item(event: &Event, beam: Option<&Beam>) -> String {
    match beam {
        Some(beam) => format!(
            r#"{{"event":{},"beam":{}}}"#,
            serde_json::to_string(event).unwrap(),
            serde_json::to_string(beam).unwrap()
        ),
        None => format!(r#"{{"event":{}}}"#, serde_json::to_string(event).unwrap()),
    }
}

/// Start a scripted node whose challenges name `origin` (or its real origin if `None`).
async fn scripted(
    origin: Option<&str>,
    plans: impl FnOnce(&[Event], &Keypair) -> Vec<Plan>,
) -> Scripted {
    scripted_at("127.0.0.1:0", origin, plans).await
}

/// Start a scripted node listening on `addr`.
async fn scripted_at(
    addr: &str,
    origin: Option<&str>,
    plans: impl FnOnce(&[Event], &Keypair) -> Vec<Plan>,
) -> Scripted {
    let node = Keypair::from_seed(&[1; 32]);
    let owner = Keypair::from_seed(&[2; 32]);
    let space = SpaceId::new(SpaceType::Channel, owner.did(), "general").unwrap();
    let log = log(&node, &owner, &space, 6);
    let plans = plans(&log, &node).into();
    let server = Server::builder().build(addr).await.unwrap();
    let url = format!("ws://{}", server.local_addr().unwrap());
    let fake = Arc::new(Fake {
        node,
        origin: origin.unwrap_or(&url).to_owned(),
        space,
        log,
        plans: Mutex::new(plans),
        subscribed_since: Mutex::default(),
        events_since: Mutex::default(),
        responses: AtomicUsize::new(0),
        protocol: AtomicU32::new(PROTOCOL_VERSION),
        tamper: std::sync::atomic::AtomicBool::new(false),
    });
    let mut module = RpcModule::new(());
    module
        .merge(NodeApiServer::into_rpc(Handler(fake.clone())))
        .unwrap();
    module
        .merge(AuthApiServer::into_rpc(Handler(fake.clone())))
        .unwrap();
    module
        .merge(SpaceApiServer::into_rpc(Handler(fake.clone())))
        .unwrap();
    module
        .merge(SpaceEventsApiServer::into_rpc(Handler(fake.clone())))
        .unwrap();
    let handle = server.start(module);
    Scripted { fake, url, handle }
}

/// A connection to `node` as the test's client key, within [`TIMEOUT`].
async fn try_connect(node: &Scripted) -> Result<Client, SdkError> {
    let key = Keypair::from_seed(&[3; 32]);
    tokio::time::timeout(TIMEOUT, Client::connect(&node.url, key))
        .await
        .expect("connect timed out")
}

/// A node that sends `items` (made from its log) on one subscription, and the client's
/// subscription with beams inline to it; the node lives as long as the first half.
async fn inline_subscription(
    items: impl FnOnce(&[Event]) -> Vec<String>,
) -> (Scripted, northstar_sdk::EventWithBeamStream) {
    let node = scripted(None, |log, _| {
        vec![Plan {
            send: Vec::new(),
            items: items(log),
            cut_off: false,
        }]
    })
    .await;
    let stream = connect(&node)
        .await
        .subscribe_with_beams(&node.fake.space, 0)
        .await
        .unwrap();
    (node, stream)
}

/// The stream's next item (`None` once it ended), failing the test if none comes in time.
async fn next_of<S: futures_util::Stream + Unpin>(stream: &mut S) -> Option<S::Item> {
    tokio::time::timeout(TIMEOUT, stream.next())
        .await
        .expect("no item in time")
}

async fn connect(node: &Scripted) -> Client {
    try_connect(node).await.unwrap()
}

/// The error of a connection to `node` that must fail.
async fn connect_refused(node: &Scripted) -> SdkError {
    try_connect(node).await.unwrap_err()
}

/// The seqs of the first `n` items of the stream, which must all be events.
async fn take_seqs(stream: &mut northstar_sdk::EventStream, n: usize) -> Vec<u64> {
    let mut seqs = Vec::new();
    while seqs.len() < n {
        let item = tokio::time::timeout(TIMEOUT, stream.next())
            .await
            .expect("the stream stalled")
            .expect("the stream ended");
        seqs.push(item.unwrap().seq);
    }
    seqs
}

#[tokio::test]
async fn authenticates_against_a_node_whose_challenge_names_the_dialled_origin() {
    let node = scripted(None, |_, _| Vec::new()).await;
    let client = connect(&node).await;
    assert_eq!(client.did(), Some(Keypair::from_seed(&[3; 32]).did()));
    assert_eq!(&client.node_info().did, node.fake.node.did());
    assert_eq!(node.fake.responses.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn refuses_to_answer_a_challenge_for_another_origin() {
    let node = scripted(Some("wss://elsewhere.example"), |_, _| Vec::new()).await;
    let err = connect_refused(&node).await;
    match &err {
        SdkError::Auth(AuthError::Challenge(ChallengeRefused::WrongOrigin {
            dialled,
            challenge,
        })) => {
            assert_eq!(dialled, &node.url);
            assert_eq!(challenge, "wss://elsewhere.example");
        }
        other => panic!("expected WrongOrigin, got {other:?}"),
    }
    assert_eq!(
        node.fake.responses.load(Ordering::SeqCst),
        0,
        "it signed anyway"
    );
}

#[tokio::test]
async fn refuses_a_node_of_another_protocol_version_by_name() {
    let node = scripted(None, |_, _| Vec::new()).await;
    node.fake.protocol.store(0, Ordering::SeqCst);
    let err = connect_refused(&node).await;
    match &err {
        SdkError::Protocol { node: 0, ours, .. } => assert_eq!(*ours, PROTOCOL_VERSION),
        other => panic!("expected Protocol, got {other:?}"),
    }
    assert!(err.to_string().contains("protocol version 0"), "{err}");
    assert_eq!(
        node.fake.responses.load(Ordering::SeqCst),
        0,
        "it answered the challenge anyway"
    );
}

#[tokio::test]
async fn resumes_after_a_cut_off_without_gap_or_duplicate() {
    let node = scripted(None, |log, _| {
        vec![
            Plan {
                send: log[0..3].to_vec(),
                items: Vec::new(),
                cut_off: true,
            },
            // The node resends what the client has seen; the client must skip it.
            Plan {
                send: log[1..6].to_vec(),
                items: Vec::new(),
                cut_off: false,
            },
        ]
    })
    .await;
    let client = connect(&node).await;
    let mut stream = client.subscribe(&node.fake.space, 0).await.unwrap();
    assert_eq!(take_seqs(&mut stream, 6).await, vec![1, 2, 3, 4, 5, 6]);
    assert_eq!(*node.fake.subscribed_since.lock().unwrap(), vec![0, 3]);
}

#[tokio::test]
async fn reconnects_and_authenticates_again_after_the_connection_drops() {
    let first = scripted(None, |log, _| {
        vec![Plan {
            send: log[0..2].to_vec(),
            items: Vec::new(),
            cut_off: false,
        }]
    })
    .await;
    let client = connect(&first).await;
    let mut stream = client.subscribe(&first.fake.space, 0).await.unwrap();
    assert_eq!(take_seqs(&mut stream, 2).await, vec![1, 2]);

    // The node goes away and comes back at the same address.
    let addr = first.url.trim_start_matches("ws://").to_owned();
    first.handle.stop().unwrap();
    tokio::time::timeout(TIMEOUT, first.handle.clone().stopped())
        .await
        .unwrap();
    let second = scripted_at(&addr, None, |log, _| {
        vec![Plan {
            send: log.to_vec(),
            items: Vec::new(),
            cut_off: false,
        }]
    })
    .await;
    assert_eq!(take_seqs(&mut stream, 4).await, vec![3, 4, 5, 6]);
    assert_eq!(second.fake.responses.load(Ordering::SeqCst), 1);
    assert_eq!(*second.fake.subscribed_since.lock().unwrap(), vec![2]);
    assert!(
        !client.is_connected(),
        "the stream reconnects on its own connection"
    );
}

#[tokio::test]
async fn fills_a_hole_in_the_live_events_from_space_events() {
    let node = scripted(None, |log, _| {
        vec![Plan {
            send: vec![log[0].clone(), log[1].clone(), log[5].clone()],
            items: Vec::new(),
            cut_off: false,
        }]
    })
    .await;
    let client = connect(&node).await;
    let mut stream = client.subscribe(&node.fake.space, 0).await.unwrap();
    assert_eq!(take_seqs(&mut stream, 6).await, vec![1, 2, 3, 4, 5, 6]);
    // The genesis first (to learn the sequencer from it), then pages of two: 3-4, then 5-6.
    assert_eq!(*node.fake.events_since.lock().unwrap(), vec![0, 2, 4]);
}

#[tokio::test]
async fn ends_with_one_error_on_an_event_the_sequencer_did_not_sign() {
    let node = scripted(None, |log, _| {
        let forger = Keypair::from_seed(&[9; 32]);
        let forged = Event::sequence(
            &forger,
            log[1].space.clone(),
            2,
            log[1].prev,
            log[1].timestamp,
            log[1].payload.clone(),
        )
        .unwrap();
        vec![Plan {
            send: vec![log[0].clone(), forged],
            items: Vec::new(),
            cut_off: false,
        }]
    })
    .await;
    let client = connect(&node).await;
    let mut stream = client.subscribe(&node.fake.space, 0).await.unwrap();
    assert_eq!(take_seqs(&mut stream, 1).await, vec![1]);
    let err = next_of(&mut stream).await.unwrap().unwrap_err();
    assert!(
        matches!(err, SdkError::Verify(VerifyError::BadEvent { seq: 2, .. })),
        "{err}"
    );
    assert!(next_of(&mut stream).await.is_none());
}

#[tokio::test]
async fn events_are_verified_and_linked() {
    let node = scripted(None, |_, _| Vec::new()).await;
    let client = connect(&node).await;
    let events = client.events(&node.fake.space, 2, 10).await.unwrap();
    let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, vec![3, 4], "the node's page size caps the answer");
}

#[tokio::test]
async fn inline_beams_are_checked_and_delivered_with_their_events() {
    let (_node, mut stream) = inline_subscription(|log| {
        vec![
            item(&log[0], None),
            item(&log[1], Some(&beam_of(2))),
            // A ref whose beam the node did not inline.
            item(&log[2], None),
        ]
    })
    .await;
    let mut got = Vec::new();
    for _ in 0..3 {
        let item = next_of(&mut stream).await.unwrap().unwrap();
        got.push((item.event.seq, item.beam));
    }
    assert_eq!(
        got,
        vec![(1, None), (2, Some(beam_of(2))), (3, None)],
        "each beam with its own event, none where the node sent none"
    );
}

#[tokio::test]
async fn a_tampered_inline_beam_on_a_subscription_is_an_error_not_data() {
    let (_node, mut stream) = inline_subscription(|log| {
        vec![
            item(&log[0], None),
            item(&log[1], Some(&tampered(&beam_of(2)))),
        ]
    })
    .await;
    let first = next_of(&mut stream).await.unwrap().unwrap();
    assert_eq!((first.event.seq, first.beam), (1, None));
    let err = next_of(&mut stream).await.unwrap().unwrap_err();
    assert!(
        matches!(
            err,
            SdkError::Verify(VerifyError::BadBeam { .. } | VerifyError::WrongBeam { .. })
        ),
        "{err}"
    );
    assert!(
        next_of(&mut stream).await.is_none(),
        "the stream ends after the error"
    );
}

#[tokio::test]
async fn a_beam_beside_an_event_that_names_none_is_an_error() {
    // The genesis names no beam; a beam beside it is the node's fault.
    let (_node, mut stream) =
        inline_subscription(|log| vec![item(&log[0], Some(&beam_of(2)))]).await;
    let err = next_of(&mut stream).await.unwrap().unwrap_err();
    assert!(
        matches!(err, SdkError::Verify(VerifyError::UnaskedBeam { .. })),
        "{err}"
    );
}

#[tokio::test]
async fn pages_pair_each_inline_beam_with_its_ref_and_refuse_a_tampered_one() {
    let node = scripted(None, |_, _| Vec::new()).await;
    let client = connect(&node).await;
    let items = client
        .events_with_beams(&node.fake.space, 1, 10)
        .await
        .unwrap();
    let got: Vec<_> = items.into_iter().map(|i| (i.event.seq, i.beam)).collect();
    assert_eq!(got, vec![(2, Some(beam_of(2))), (3, Some(beam_of(3)))]);

    node.fake.tamper.store(true, Ordering::SeqCst);
    let err = client
        .events_with_beams(&node.fake.space, 1, 10)
        .await
        .unwrap_err();
    // A tampered body changes the content id, so no ref of the page names it.
    assert!(
        matches!(err, SdkError::Verify(VerifyError::UnaskedBeam { .. })),
        "{err}"
    );
    // The plain page asks for no beams and is unaffected.
    let events = client.events(&node.fake.space, 1, 10).await.unwrap();
    assert_eq!(events.len(), 2);
}
