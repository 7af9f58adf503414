//! Who may read a beam, and whose a beam id is, across real nodes on 127.0.0.1.
//!
//! A `dm`'s beams are as private as its log (`spec/protocol.md` §6.3.16): outsiders cannot read
//! them by path, by listing, anonymously, or through another node; members and their home
//! nodes can. A ref names its own author's beam (§6.3.1): a foreign ref is refused by the
//! sequencer, and one that got into a log anyway cannot hold the author's deletion up. A beam
//! a peer serves that does not even parse is a bad beam, not an unreachable peer; a peer of
//! another protocol version is not dialled past its `node.info` (§9.1).

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::{Raw, TestNode, until_seq};
use futures_util::{SinkExt, StreamExt};
use northstar_protocol::address::{BeamPath, BeamUri, SpaceId, SpaceType};
use northstar_protocol::api::ErrorCode;
use northstar_protocol::wire::{AuthChallenge, AuthResponse, Beam, BeamRef};
use northstar_protocol::{Keypair, Signed, method};
use northstar_sdk::{Client, SdkError};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

async fn user(node: &TestNode) -> (Keypair, Client) {
    let key = Keypair::generate().unwrap();
    let client = Client::connect(&node.url, key.clone()).await.unwrap();
    (key, client)
}

/// A raw connection to `node` authenticated as `key` (a user's, or another node's).
async fn raw_as(node: &TestNode, key: &Keypair) -> Raw {
    let mut raw = Raw::connect(&node.url).await;
    raw.authenticate(key).await;
    raw
}

fn code(e: &SdkError) -> Option<ErrorCode> {
    e.code()
}

fn app(c: ErrorCode) -> i64 {
    i64::from(c.code())
}

#[tokio::test]
async fn dm_beams_are_read_only_by_members_and_their_home_nodes() {
    let (a, b, c) = (
        TestNode::start().await,
        TestNode::start().await,
        TestNode::start().await,
    );
    // Members: Alice (owner) and Ann at home on A, Bob and Eve at home on B.
    let (alice_key, alice) = user(&a).await;
    let (ann_key, ann) = user(&a).await;
    let (bob_key, bob) = user(&b).await;
    let (eve_key, eve) = user(&b).await;
    // Outsiders: Dave on A, Oscar on B, Carol on C, and anyone without a key.
    let (_, dave) = user(&a).await;
    let (_, oscar) = user(&b).await;
    let (_, carol) = user(&c).await;
    let anonymous = Client::connect_anonymous(&a.url).await.unwrap();

    let dm = alice
        .create_space(SpaceType::Dm, "circle", "Circle")
        .await
        .unwrap()
        .space;
    let dm_uri = alice.space_uri(&dm);
    for key in [&ann_key, &bob_key, &eve_key] {
        alice.invite(&dm, key.did()).await.unwrap();
    }
    ann.join(&dm).await.unwrap();
    bob.join(&dm_uri).await.unwrap();
    eve.join(&dm_uri).await.unwrap();
    let channel = alice
        .create_space(SpaceType::Channel, "open", "Open")
        .await
        .unwrap()
        .space;

    let private = BeamUri::parse(
        &alice
            .post(&dm, "secret", "for the circle")
            .await
            .unwrap()
            .beam_uri,
    )
    .unwrap();
    let bobs = BeamUri::parse(&bob.post(&dm, "also", "from bob").await.unwrap().beam_uri).unwrap();
    // Posted into the dm now, and into a channel later.
    let both = BeamUri::parse(
        &alice
            .post(&dm, "both", "here and there")
            .await
            .unwrap()
            .beam_uri,
    )
    .unwrap();

    // Members read them, from their home node, which fetches what is stored elsewhere as
    // the home node of a member.
    for (who, beam) in [
        (&alice, &private),
        (&alice, &bobs),
        (&ann, &private),
        (&bob, &private),
        (&bob, &bobs),
        (&eve, &private),
    ] {
        who.get_beam(beam).await.unwrap();
    }

    // Outsiders do not: by path, on the author's home node or another member node, signed in
    // or not.
    for (who, beam) in [
        (&dave, &private),
        (&anonymous, &private),
        (&oscar, &bobs),
        (&oscar, &private),
    ] {
        let err = who.get_beam(beam).await.unwrap_err();
        assert_eq!(code(&err), Some(ErrorCode::NotMember), "{err}");
    }
    // A node that holds no space referring to the beam fetches nothing for anyone.
    let err = carol.get_beam(&private).await.unwrap_err();
    assert_eq!(code(&err), Some(ErrorCode::BeamNotFound), "{err}");
    // A node that is no member's home is refused by the author's node, as any outsider.
    let mut as_c = raw_as(&a, &c.key()).await;
    let (got, message) = as_c
        .err(method::BEAM_GET, json!([private.path.to_string()]))
        .await;
    assert_eq!(got, app(ErrorCode::NotMember), "{message}");
    // Bob's home node is, and reads it for him.
    let mut as_b = raw_as(&a, &b.key()).await;
    as_b.ok(method::BEAM_GET, json!([private.path.to_string()]))
        .await;

    // Listing shows a caller only what it may read.
    let alices = |beams: Vec<Beam>| beams.into_iter().map(|b| b.title).collect::<Vec<_>>();
    let author = alice.did().unwrap().clone();
    assert!(alices(dave.list_beams(&author, 0, 50).await.unwrap()).is_empty());
    assert!(alices(anonymous.list_beams(&author, 0, 50).await.unwrap()).is_empty());
    assert_eq!(
        alices(ann.list_beams(&author, 0, 50).await.unwrap()),
        ["both", "secret"]
    );
    assert_eq!(
        alices(alice.list_beams(&author, 0, 50).await.unwrap()),
        ["both", "secret"]
    );

    // Posted into the channel too, the beam is public; the others stay private.
    repost(&a, &alice_key, &alice, &channel, &both).await;
    dave.get_beam(&both).await.unwrap();
    anonymous.get_beam(&both).await.unwrap();
    assert_eq!(
        alices(dave.list_beams(&author, 0, 50).await.unwrap()),
        ["both"]
    );

    // A kicked member loses access, on its home node's cache too; the node keeps serving the
    // members it is still home to.
    let kicked = alice.kick(&dm, bob_key.did()).await.unwrap();
    let mut feed = eve.subscribe(&dm, 0).await.unwrap();
    until_seq(&mut feed, kicked.seq).await;
    let err = bob.get_beam(&private).await.unwrap_err();
    assert_eq!(code(&err), Some(ErrorCode::NotMember), "{err}");
    eve.get_beam(&private).await.unwrap();
}

/// Post an existing beam of `author`'s into another space: the same signed beam, a new ref.
async fn repost(node: &TestNode, key: &Keypair, author: &Client, space: &SpaceId, beam: &BeamUri) {
    let stored = author.get_beam(beam).await.unwrap();
    let beam_ref = BeamRef::create(
        key,
        space.clone(),
        beam.path.beam,
        &beam.authority,
        stored.created_at + 1,
    )
    .unwrap();
    let mut raw = raw_as(node, key).await;
    raw.ok(method::SPACE_POST, json!([stored, beam_ref])).await;
}

/// `host:port` of a node, the authority its URIs and refs name.
fn authority(node: &TestNode) -> String {
    node.addr.to_string()
}

#[tokio::test]
async fn a_foreign_ref_is_refused_and_cannot_hold_the_authors_delete_up() {
    let (a, b) = (TestNode::start().await, TestNode::start().await);
    let (alice_key, alice) = user(&a).await;
    let (bob_key, bob) = user(&b).await;
    let main = alice
        .create_space(SpaceType::Channel, "main", "Main")
        .await
        .unwrap()
        .space;
    let side = alice
        .create_space(SpaceType::Channel, "side", "Side")
        .await
        .unwrap()
        .space;
    bob.join(&alice.space_uri(&main)).await.unwrap();
    bob.join(&alice.space_uri(&side)).await.unwrap();
    // Bob's home node submits refs signed by Bob, as a member node does.
    let mut as_b = raw_as(&a, &b.key()).await;
    let foreign_ref = |space: &SpaceId, beam| {
        let r = BeamRef::create(&bob_key, space.clone(), beam, &authority(&b), 1).unwrap();
        json!([space.as_str(), {"kind": "beam_ref", "body": r}])
    };

    // A beam the sequencer knows is Alice's: Bob's ref to its id is refused.
    let known = BeamUri::parse(&alice.post(&main, "mine", "x").await.unwrap().beam_uri).unwrap();
    let (got, message) = as_b
        .err(method::FED_SUBMIT, foreign_ref(&main, known.path.beam))
        .await;
    assert_eq!(got, app(ErrorCode::Forbidden), "{message}");
    assert!(message.contains("its own author"), "{message}");

    // An id the sequencer does not know yet cannot be judged: Bob places a ref to the id of a
    // beam Alice will post later (an id covers no signature, so anyone can compute it).
    let (later, later_ref) = Beam::post(
        &alice_key,
        main.clone(),
        &authority(&a),
        "later",
        "posted after the foreign ref",
        7,
    )
    .unwrap();
    let later_id = later.content_id().unwrap();
    as_b.ok(method::FED_SUBMIT, foreign_ref(&side, later_id))
        .await;
    let mut as_alice = raw_as(&a, &alice_key).await;
    let posted = as_alice
        .ok(method::SPACE_POST, json!([later, later_ref]))
        .await;
    let later_uri = BeamUri {
        authority: authority(&a),
        path: later.path().unwrap(),
    };
    // Bob reads it through his node once the ref has reached it.
    let mut feed = bob.subscribe(&main, 0).await.unwrap();
    until_seq(&mut feed, posted["seq"].as_u64().unwrap()).await;
    bob.get_beam(&later_uri).await.unwrap();

    // Alice deletes it: only the space with her own ref gets the tombstone, and the foreign
    // ref in the other space does not refuse it.
    let deleted = alice.delete_beam(&later_uri).await.unwrap();
    let spaces: Vec<_> = deleted.tombstones.iter().map(|t| t.space.clone()).collect();
    assert_eq!(spaces, std::slice::from_ref(&main));
    let err = alice.get_beam(&later_uri).await.unwrap_err();
    assert_eq!(code(&err), Some(ErrorCode::BeamNotFound), "{err}");
    // And on Bob's node, once the tombstone has arrived, it is gone too.
    until_seq(&mut feed, deleted.tombstones[0].seq).await;
    let err = bob.get_beam(&later_uri).await.unwrap_err();
    assert_eq!(code(&err), Some(ErrorCode::BeamNotFound), "{err}");
}

/// What a fake home node saw: the connections it accepted and the methods it was called with.
#[derive(Default)]
struct Seen {
    accepted: AtomicUsize,
    methods: std::sync::Mutex<Vec<String>>,
}

impl Seen {
    fn methods(&self) -> Vec<String> {
        self.methods.lock().unwrap().clone()
    }
}

/// A node at `addr` that answers `node.info` with `info`, proves `key`'s node DID and answers
/// `beam.get` from `beams` (path → the JSON text of its result).
async fn fake_home(
    addr: SocketAddr,
    key: Keypair,
    info: Value,
    beams: Vec<(String, String)>,
) -> Arc<Seen> {
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let seen = Arc::new(Seen::default());
    let log = seen.clone();
    let origin = format!("ws://{addr}");
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            log.accepted.fetch_add(1, Ordering::SeqCst);
            let (key, origin, info, beams, log) = (
                key.clone(),
                origin.clone(),
                info.clone(),
                beams.clone(),
                log.clone(),
            );
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
                    return;
                };
                while let Some(Ok(Message::Text(text))) = ws.next().await {
                    let request: Value = serde_json::from_str(&text).unwrap();
                    let params = &request["params"];
                    let called = request["method"].as_str().unwrap();
                    log.methods.lock().unwrap().push(called.to_owned());
                    let result = match called {
                        m if m == method::NODE_INFO => info.to_string(),
                        m if m == method::AUTH_CHALLENGE => {
                            let now = 1_767_225_600_000_u64;
                            let c =
                                AuthChallenge::issue(&key, &origin, now, u64::MAX >> 12).unwrap();
                            serde_json::to_string(&c).unwrap()
                        }
                        m if m == method::AUTH_RESPOND => {
                            json!({"did": params[0]["did"]}).to_string()
                        }
                        m if m == method::FED_PROVE => {
                            let c: AuthChallenge =
                                serde_json::from_value(params[0].clone()).unwrap();
                            serde_json::to_string(&AuthResponse::answer(&key, c).unwrap()).unwrap()
                        }
                        m if m == method::BEAM_GET => {
                            let path = params[0].as_str().unwrap();
                            beams.iter().find(|(p, _)| p == path).unwrap().1.clone()
                        }
                        other => panic!("the fake home node got {other}"),
                    };
                    let answer = format!(
                        r#"{{"jsonrpc":"2.0","id":{},"result":{result}}}"#,
                        request["id"]
                    );
                    if ws.send(Message::text(answer)).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    seen
}

/// Bob, at home on node B, posts a beam titled each of `titles` into Alice's channel on node A;
/// then B is replaced by a fake that proves B's DID, answers `node.info` as B did but through
/// `info`, and serves each beam's JSON as `serve` rewrites it. Alice, the caller's client on A,
/// and the beams' URIs come back with what the fake saw.
async fn bobs_beams_behind_a_fake(
    titles: &[&str],
    info: impl FnOnce(&mut Value),
    serve: impl Fn(&str, &mut Value),
) -> (TestNode, Client, Vec<BeamUri>, Arc<Seen>) {
    let (a, b) = (TestNode::start().await, TestNode::start().await);
    let (_, alice) = user(&a).await;
    let (bob_key, bob) = user(&b).await;
    let space = alice
        .create_space(SpaceType::Channel, "c", "C")
        .await
        .unwrap()
        .space;
    bob.join(&alice.space_uri(&space)).await.unwrap();
    let mut on_b = raw_as(&b, &bob_key).await;
    let mut uris = Vec::new();
    let mut served = Vec::new();
    for (i, title) in titles.iter().enumerate() {
        let (beam, beam_ref) = Beam::post(
            &bob_key,
            space.clone(),
            &authority(&b),
            title,
            "body",
            10 + i as u64,
        )
        .unwrap();
        on_b.ok(method::SPACE_POST, json!([beam, beam_ref])).await;
        let path: BeamPath = beam.path().unwrap();
        let mut json = serde_json::to_value(&beam).unwrap();
        serve(title, &mut json);
        served.push((path.to_string(), json.to_string()));
        uris.push(BeamUri {
            authority: authority(&b),
            path,
        });
    }
    let (b_addr, b_key) = (b.addr, b.key());
    let mut b_info = on_b.ok(method::NODE_INFO, json!([])).await;
    info(&mut b_info);
    b.stop().await;
    let seen = fake_home(b_addr, b_key, b_info, served).await;
    (a, alice, uris, seen)
}

#[tokio::test]
async fn a_beam_a_peer_serves_that_does_not_parse_is_a_bad_beam_and_the_link_stays() {
    let (_a, alice, uris, seen) = bobs_beams_behind_a_fake(
        &["garbled", "fine"],
        |_| {},
        |title, json| {
            if title == "garbled" {
                // Valid JSON, not a beam: a title must be a string.
                json["title"] = json!(5);
            }
        },
    )
    .await;
    let err = alice.get_beam(&uris[0]).await.unwrap_err();
    assert_eq!(code(&err), Some(ErrorCode::BadSignature), "{err}");
    assert_eq!(alice.get_beam(&uris[1]).await.unwrap().title, "fine");
    assert_eq!(
        seen.accepted.load(Ordering::SeqCst),
        1,
        "the link that brought the garbled beam was kept for the next fetch"
    );
}

#[tokio::test]
async fn a_peer_of_another_protocol_version_is_refused_before_the_handshake() {
    let (_a, alice, uris, seen) =
        bobs_beams_behind_a_fake(&["old"], |info| info["protocol"] = json!(0), |_, _| {}).await;
    let err = alice.get_beam(&uris[0]).await.unwrap_err();
    assert_eq!(code(&err), Some(ErrorCode::PeerUnreachable), "{err}");
    let methods = seen.methods();
    assert!(!methods.is_empty(), "node A never dialled");
    assert!(
        methods.iter().all(|m| m == method::NODE_INFO),
        "A went on past node.info with a version-0 peer: {methods:?}"
    );
}

#[tokio::test]
async fn a_member_who_just_joined_reads_even_where_the_authors_replica_lags() {
    // Carol's dm, sequenced by C; Alice (home A) posted in it; Bob (home B) joins while A is
    // down, so A's replica never hears of his join by push.
    let (a_dir, c_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let slow_sync = |c: &mut northstar_node::config::Config| c.sync_interval_secs = 3600;
    let c = TestNode::start_in(c_dir.path().to_path_buf(), |_| {}).await;
    let a = TestNode::start_in(a_dir.path().to_path_buf(), slow_sync).await;
    let b = TestNode::start().await;
    let (c_addr, a_addr) = (c.addr, a.addr);
    let (_, carol) = user(&c).await;
    let (alice_key, alice) = user(&a).await;
    let (bob_key, bob) = user(&b).await;
    let dm = carol
        .create_space(SpaceType::Dm, "late", "Late")
        .await
        .unwrap()
        .space;
    let uri = carol.space_uri(&dm);
    carol.invite(&dm, alice_key.did()).await.unwrap();
    carol.invite(&dm, bob_key.did()).await.unwrap();
    alice.join(&uri).await.unwrap();
    let beam = BeamUri::parse(&alice.post(&dm, "early", "x").await.unwrap().beam_uri).unwrap();
    a.stop().await;
    bob.join(&uri).await.unwrap();
    // A starts while C is down, so its start-up sync misses the join too; its next sync is an
    // hour away. C's address answers A's dial and hangs up, so the test knows A has tried.
    c.stop().await;
    let stand_in = tokio::net::TcpListener::bind(c_addr).await.unwrap();
    let a = TestNode::start_in(a_dir.path().to_path_buf(), |cfg| {
        slow_sync(cfg);
        cfg.listen = a_addr;
    })
    .await;
    let (dial, _) = tokio::time::timeout(common::TIMEOUT, stand_in.accept())
        .await
        .expect("A's start-up sync dials C")
        .unwrap();
    drop((dial, stand_in));
    let _c = TestNode::start_in(c_dir.path().to_path_buf(), |cfg| cfg.listen = c_addr).await;

    // B fetches for Bob as his home node; A, not knowing the join yet, pulls the dm from C
    // before it refuses. (A's failed sync left C's authority backing off for 100 ms, so the
    // first attempts may meet that; nothing but such a pull can teach A the join.)
    let deadline = tokio::time::Instant::now() + common::TIMEOUT;
    let read = loop {
        match bob.get_beam(&beam).await {
            Ok(read) => break read,
            Err(e) if tokio::time::Instant::now() < deadline => {
                assert_eq!(code(&e), Some(ErrorCode::NotMember), "{e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            Err(e) => panic!("Bob never read the beam: {e}"),
        }
    };
    assert_eq!(read.title, "early");
    drop(a);
}
