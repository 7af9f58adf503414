//! One node end to end, driven through the SDK as an app would: spaces of each type, posting,
//! paging, subscriptions with resume, deletion, and who may read and write what.

mod common;

use std::collections::HashSet;

use common::{TIMEOUT, TestNode};
use futures_util::StreamExt;
use northstar_protocol::address::{SpaceId, SpaceType};
use northstar_protocol::api::ErrorCode;
use northstar_protocol::wire::Payload;
use northstar_protocol::{Keypair, Signed};
use northstar_sdk::{Client, SdkError};

async fn user(node: &TestNode) -> Client {
    Client::connect(&node.url, Keypair::generate().unwrap())
        .await
        .unwrap()
}

fn refused(result: Result<impl std::fmt::Debug, SdkError>, code: ErrorCode) {
    match result {
        Err(e) => assert_eq!(e.code(), Some(code), "{e}"),
        Ok(v) => panic!("expected {code:?}, got {v:?}"),
    }
}

async fn next_event(stream: &mut northstar_sdk::EventStream) -> northstar_protocol::wire::Event {
    tokio::time::timeout(TIMEOUT, stream.next())
        .await
        .expect("no event in time")
        .expect("stream ended")
        .expect("stream error")
}

#[tokio::test]
async fn channel_join_post_subscribe_get_and_delete() {
    let node = TestNode::start().await;
    let alice = user(&node).await;
    let bob = user(&node).await;
    let ack = alice
        .create_space(SpaceType::Channel, "general", "General")
        .await
        .unwrap();
    assert_eq!(ack.seq, 1);
    let space = ack.space.clone();
    let uri = alice.space_uri(&space);
    assert_eq!(
        uri.to_string(),
        format!("northstar://{}/{space}", alice.node_info().authority)
    );

    let mut feed = alice.subscribe(&space, 0).await.unwrap();
    assert_eq!(next_event(&mut feed).await.payload.kind(), "create");

    // Bob joins by URI and posts; Alice's subscription sees both, in order.
    let joined = bob.join(&uri).await.unwrap();
    assert_eq!(joined.seq, 2);
    let posted = bob.post(&space, "Hello", "first post").await.unwrap();
    assert_eq!(posted.seq, 3);
    let join_event = next_event(&mut feed).await;
    assert_eq!((join_event.seq, join_event.payload.kind()), (2, "join"));
    assert_eq!(join_event.author(), bob.did().unwrap());
    let beam_event = next_event(&mut feed).await;
    assert_eq!(beam_event.seq, 3);
    assert_eq!(beam_event.id().unwrap(), posted.event_id);

    let beam_uri = northstar_protocol::address::BeamUri::parse(&posted.beam_uri).unwrap();
    let beam = alice.get_beam(&beam_uri).await.unwrap();
    assert_eq!(
        (beam.title.as_str(), beam.body.as_str()),
        ("Hello", "first post")
    );
    let listed = alice.list_beams(bob.did().unwrap(), 0, 10).await.unwrap();
    assert_eq!(listed, vec![beam.clone()]);
    let spaces = bob.list_spaces().await.unwrap();
    assert_eq!(spaces.len(), 1);
    assert_eq!(spaces[0].id, space);

    // Only the author deletes; then the content is gone and a tombstone is in the log.
    assert!(
        alice.delete_beam(&beam_uri).await.is_err(),
        "only the author may delete"
    );
    alice.get_beam(&beam_uri).await.unwrap();
    let deleted = bob.delete_beam(&beam_uri).await.unwrap();
    assert_eq!(deleted.tombstones.len(), 1);
    assert_eq!(deleted.tombstones[0].seq, 4);
    let tombstone = next_event(&mut feed).await;
    match &tombstone.payload {
        Payload::Tombstone(t) => assert_eq!(t.beam, beam.content_id().unwrap()),
        other => panic!("expected a tombstone, got {other:?}"),
    }
    refused(alice.get_beam(&beam_uri).await, ErrorCode::BeamNotFound);
    assert!(
        alice
            .list_beams(bob.did().unwrap(), 0, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn a_dm_is_invisible_to_non_members_until_invited_and_joined() {
    let node = TestNode::start().await;
    let (alice, bob, eve) = (user(&node).await, user(&node).await, user(&node).await);
    let anonymous = Client::connect_anonymous(&node.url).await.unwrap();
    let space = alice
        .create_space(SpaceType::Dm, "secret", "Secret")
        .await
        .unwrap()
        .space;
    alice
        .post(&space, "plans", "for members only")
        .await
        .unwrap();

    for outsider in [&eve, &anonymous] {
        refused(outsider.get_space(&space).await, ErrorCode::NotMember);
        refused(outsider.members(&space).await, ErrorCode::NotMember);
        refused(outsider.events(&space, 0, 10).await, ErrorCode::NotMember);
        match outsider.subscribe(&space, 0).await {
            Err(e) => assert_eq!(e.code(), Some(ErrorCode::NotMember), "{e}"),
            Ok(mut stream) => {
                let first = tokio::time::timeout(TIMEOUT, stream.next()).await.unwrap();
                let err = first.expect("an error item").unwrap_err();
                assert_eq!(err.code(), Some(ErrorCode::NotMember), "{err}");
            }
        }
    }
    refused(eve.join(&space).await, ErrorCode::InviteRequired);
    refused(
        eve.post(&space, "hi", "let me in").await,
        ErrorCode::NotMember,
    );
    // Only the owner invites into a dm.
    alice.invite(&space, bob.did().unwrap()).await.unwrap();
    bob.join(&space).await.unwrap();
    refused(
        bob.invite(&space, eve.did().unwrap()).await,
        ErrorCode::Forbidden,
    );
    let events = bob.events(&space, 0, 100).await.unwrap();
    let kinds: Vec<_> = events.iter().map(|e| e.payload.kind()).collect();
    assert_eq!(kinds, ["create", "beam", "invite", "join"]);

    // A member's subscription ends with the event that removes it.
    let mut feed = bob.subscribe(&space, 4).await.unwrap();
    alice.kick(&space, bob.did().unwrap()).await.unwrap();
    let kick = next_event(&mut feed).await;
    assert_eq!(kick.payload.kind(), "kick");
    alice.post(&space, "after", "bob is gone").await.unwrap();
    let after = tokio::time::timeout(TIMEOUT, feed.next()).await.unwrap();
    match after {
        Some(Err(e)) => assert_eq!(e.code(), Some(ErrorCode::NotMember), "{e}"),
        other => panic!("a removed member must not see more: {other:?}"),
    }
    refused(bob.events(&space, 0, 10).await, ErrorCode::NotMember);
}

#[tokio::test]
async fn only_the_owner_writes_to_a_stream_and_bans_stick() {
    let node = TestNode::start().await;
    let (owner, viewer) = (user(&node).await, user(&node).await);
    let space = owner
        .create_space(SpaceType::Stream, "live", "Live")
        .await
        .unwrap()
        .space;
    viewer.join(&space).await.unwrap();
    refused(viewer.post(&space, "x", "y").await, ErrorCode::Forbidden);
    owner.post(&space, "frame", "1").await.unwrap();
    refused(
        viewer.kick(&space, owner.did().unwrap()).await,
        ErrorCode::Forbidden,
    );
    owner.ban(&space, viewer.did().unwrap()).await.unwrap();
    refused(viewer.join(&space).await, ErrorCode::Banned);
    refused(
        owner.create_space(SpaceType::Stream, "live", "Again").await,
        ErrorCode::SpaceExists,
    );
}

#[tokio::test]
async fn pages_and_subscriptions_resume_without_gap_or_duplicate() {
    let node = TestNode::start_with(|c| c.limits.max_page = 7).await;
    let alice = user(&node).await;
    let space = alice
        .create_space(SpaceType::Channel, "busy", "Busy")
        .await
        .unwrap()
        .space;
    for i in 0..20 {
        alice.post(&space, &format!("p{i}"), "x").await.unwrap();
    }
    // Pages are capped by max_page and continue from the last seq.
    let first = alice.events(&space, 0, 100).await.unwrap();
    assert_eq!(
        first.iter().map(|e| e.seq).collect::<Vec<_>>(),
        (1..=7).collect::<Vec<_>>()
    );
    let later = alice.events(&space, 18, 100).await.unwrap();
    assert_eq!(
        later.iter().map(|e| e.seq).collect::<Vec<_>>(),
        [19, 20, 21]
    );

    // A subscription from seq 10 while posts keep coming: 11..=41, each once, in order.
    let mut feed = alice.subscribe(&space, 10).await.unwrap();
    let writer = {
        let alice = alice.clone();
        let space = space.clone();
        tokio::spawn(async move {
            for i in 0..20 {
                alice.post(&space, &format!("q{i}"), "y").await.unwrap();
            }
        })
    };
    let mut seen = Vec::new();
    while seen.len() < 31 {
        seen.push(next_event(&mut feed).await.seq);
    }
    writer.await.unwrap();
    assert_eq!(seen, (11..=41).collect::<Vec<_>>());
    let unique: HashSet<_> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len());
}

#[tokio::test]
async fn a_subscription_resumes_across_a_node_restart() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start_in(dir.path().to_path_buf(), |_| {}).await;
    let addr = node.addr;
    let key = Keypair::generate().unwrap();
    let alice = Client::connect(&node.url, key.clone()).await.unwrap();
    let space = alice
        .create_space(SpaceType::Channel, "durable", "Durable")
        .await
        .unwrap()
        .space;
    let mut feed = alice.subscribe(&space, 0).await.unwrap();
    assert_eq!(next_event(&mut feed).await.seq, 1);
    node.stop().await;

    // Same data, same address: the stream reconnects and picks up where it was.
    let node = TestNode::start_in(dir.path().to_path_buf(), |c| c.listen = addr).await;
    let writer = Client::connect(&node.url, key).await.unwrap();
    writer.post(&space, "after", "restart").await.unwrap();
    let event = next_event(&mut feed).await;
    assert_eq!((event.seq, event.payload.kind()), (2, "beam"));
}

#[tokio::test]
async fn a_connection_holds_at_most_its_subscription_limit() {
    let node = TestNode::start_with(|c| c.limits.max_subscriptions_per_connection = 2).await;
    let alice = user(&node).await;
    let space: SpaceId = alice
        .create_space(SpaceType::Channel, "s", "S")
        .await
        .unwrap()
        .space;
    let _a = alice.subscribe(&space, 0).await.unwrap();
    let _b = alice.subscribe(&space, 0).await.unwrap();
    let third = alice.subscribe(&space, 0).await;
    match third {
        Err(e) => assert!(
            e.to_string().contains("-32006")
                || e.to_string().to_lowercase().contains("subscription"),
            "{e}"
        ),
        Ok(mut stream) => {
            let item = tokio::time::timeout(TIMEOUT, stream.next()).await.unwrap();
            assert!(
                matches!(item, Some(Err(_))),
                "a third subscription must be refused"
            );
        }
    }
}

#[tokio::test]
async fn origins_match_whatever_the_case_of_the_url_and_the_public_url() {
    // The node's public URL with its host in capitals: challenges carry it as written, and
    // both sides compare origins in normal form.
    let port = common::free_port();
    let node = TestNode::start_with(|c| {
        c.listen.set_port(port);
        c.public_url = format!("ws://LocalHost:{port}/");
    })
    .await;
    assert_eq!(node.url, format!("ws://LocalHost:{port}"));
    // A client dialling it in another case authenticates, and so does one dialling the
    // normal form.
    for url in [
        format!("WS://LOCALHOST:{port}"),
        format!("ws://localhost:{port}"),
    ] {
        let client = Client::connect(&url, Keypair::generate().unwrap())
            .await
            .unwrap_or_else(|e| panic!("{url}: {e}"));
        assert!(client.did().is_some());
    }
    // Another port is another origin: the client refuses to sign the node's challenge.
    let other = format!("ws://127.0.0.1:{port}");
    let err = Client::connect(&other, Keypair::generate().unwrap())
        .await
        .err()
        .unwrap();
    assert!(err.to_string().contains("origin"), "{err}");
}
