//! Beam edits on real nodes (`spec/protocol.md` §4.10, §6.3.25, §6.3.26): an edit reaches a
//! subscriber on another node, history and drop-history (old versions gone from the home node
//! and from a member node's cache), conflicting versions from two devices of one author resolve
//! the same on every node, and the refusals.

mod common;

use common::{TestNode, until_seq};
use northstar_protocol::address::{BeamPath, BeamUri, SpaceId, SpaceType};
use northstar_protocol::api::ErrorCode;
use northstar_protocol::wire::edit::resolve;
use northstar_protocol::wire::{Edit, Event, Payload};
use northstar_protocol::{Keypair, Signed};
use northstar_sdk::Client;

async fn user(node: &TestNode, key: &Keypair) -> Client {
    Client::connect(&node.url, key.clone()).await.unwrap()
}

/// Node A sequences Alice's channel; Bob, whose home is node B, joined it and posted a beam
/// there. Returns the nodes, the clients, the space and the beam's URI.
async fn bob_posts_on_b() -> (
    TestNode,
    TestNode,
    Client,
    Client,
    Keypair,
    SpaceId,
    BeamUri,
) {
    let (a, b) = (TestNode::start().await, TestNode::start().await);
    let bob_key = Keypair::generate().unwrap();
    let (alice, bob) = (
        user(&a, &Keypair::generate().unwrap()).await,
        user(&b, &bob_key).await,
    );
    let space = alice
        .create_space(SpaceType::Channel, "edits", "Edits")
        .await
        .unwrap()
        .space;
    bob.join(&alice.space_uri(&space)).await.unwrap();
    let posted = bob.post(&space, "first", "version 0").await.unwrap();
    let uri = BeamUri::parse(&posted.beam_uri).unwrap();
    (a, b, alice, bob, bob_key, space, uri)
}

fn edits_in(events: &[Event]) -> Vec<Edit> {
    events
        .iter()
        .filter_map(|e| match &e.payload {
            Payload::Edit(edit) => Some(edit.clone()),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn an_edit_reaches_a_subscriber_on_another_node_with_its_version() {
    let (_a, _b, alice, bob, _, space, uri) = bob_posts_on_b().await;
    let mut feed = alice.subscribe(&space, 0).await.unwrap();
    let mut inline = bob.subscribe_with_beams(&space, 3).await.unwrap();

    let edited = bob
        .edit_beam(&uri, "first", "version 1", false)
        .await
        .unwrap();
    assert_eq!(edited.edits.len(), 1, "the channel got the edit");
    let seq = edited.edits[0].seq;
    assert_eq!(seq, 4);

    // Alice, on the sequencer's node, sees the edit event, signed by Bob, naming his beam.
    let seen = until_seq(&mut feed, seq).await;
    let Payload::Edit(edit) = &seen.last().unwrap().payload else {
        panic!("not an edit: {:?}", seen.last());
    };
    assert_eq!(edit.supersedes, uri.path.beam);
    assert_eq!(edit.version, 1);
    assert!(!edit.drop_history);

    // On Bob's node the edit event carries the new version inline, checked by the SDK.
    let item = tokio::time::timeout(common::TIMEOUT, futures_util::StreamExt::next(&mut inline))
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(item.event.seq, seq);
    assert_eq!(
        item.beam.as_ref().map(|b| b.body.as_str()),
        Some("version 1")
    );

    // Alice reads the newest version by default, through her node, from Bob's.
    let current = alice.current_beam(&uri).await.unwrap();
    assert_eq!(current.body, "version 1");
    let version_uri = BeamUri::parse(&edited.beam_uri).unwrap();
    assert_eq!(
        alice.get_beam(&version_uri).await.unwrap().body,
        "version 1"
    );
    // The original is still there, and history lists both.
    assert_eq!(alice.get_beam(&uri).await.unwrap().body, "version 0");
    let history = alice.beam_history(&uri).await.unwrap();
    let bodies: Vec<_> = history
        .versions
        .iter()
        .map(|v| v.beam.body.as_str())
        .collect();
    assert_eq!(bodies, ["version 0", "version 1"]);
}

#[tokio::test]
async fn drop_history_deletes_old_versions_on_the_home_node_and_in_caches() {
    let (_a, _b, alice, bob, _, _space, uri) = bob_posts_on_b().await;
    let one = bob.edit_beam(&uri, "t", "version 1", false).await.unwrap();
    let one_uri = BeamUri::parse(&one.beam_uri).unwrap();
    // Alice reads both through node A, which caches them.
    assert_eq!(alice.get_beam(&uri).await.unwrap().body, "version 0");
    assert_eq!(alice.get_beam(&one_uri).await.unwrap().body, "version 1");
    // A bare path is answered only from what node A holds: the cached copies.
    assert_eq!(alice.get_beam(&uri.path).await.unwrap().body, "version 0");
    assert_eq!(
        alice.get_beam(&one_uri.path).await.unwrap().body,
        "version 1"
    );
    let history = bob.beam_history(&uri).await.unwrap();
    assert_eq!(history.versions.len(), 2);

    let two = bob.edit_beam(&uri, "t", "version 2", true).await.unwrap();
    let two_uri = BeamUri::parse(&two.beam_uri).unwrap();
    assert_eq!(two.edits.len(), 1);

    // The home node keeps only version 2; the older ones are gone from it.
    let history = bob.beam_history(&uri).await.unwrap();
    let versions: Vec<_> = history
        .versions
        .iter()
        .map(|v| (v.edit.as_ref().map(|e| e.version), v.beam.body.as_str()))
        .collect();
    assert_eq!(versions, [(Some(2), "version 2")]);
    for gone in [&uri, &one_uri] {
        let err = bob.get_beam(gone).await.unwrap_err();
        assert_eq!(err.code(), Some(ErrorCode::BeamNotFound), "{err}");
    }
    // Node A's cache dropped them when the edit was sequenced there, and the home node no
    // longer serves them.
    for gone in [&uri.path, &one_uri.path] {
        let err = alice.get_beam(gone).await.unwrap_err();
        assert_eq!(err.code(), Some(ErrorCode::BeamNotFound), "{err}");
    }
    for gone in [&uri, &one_uri] {
        let err = alice.get_beam(gone).await.unwrap_err();
        assert_eq!(err.code(), Some(ErrorCode::BeamNotFound), "{err}");
    }
    // The beam lives on as its current version.
    assert_eq!(alice.current_beam(&uri).await.unwrap().body, "version 2");
    assert_eq!(alice.get_beam(&two_uri).await.unwrap().body, "version 2");

    // It is still deleted by its original's URI, though that content is gone: every version
    // goes with it, on the home node and from node A's cache.
    let deleted = bob.delete_beam(&uri).await.unwrap();
    assert_eq!(deleted.tombstones.len(), 1);
    let err = bob.get_beam(&two_uri).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::BeamNotFound), "{err}");
    let err = alice.get_beam(&two_uri.path).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::BeamNotFound), "{err}");
}

#[tokio::test]
async fn conflicting_versions_from_two_devices_resolve_the_same_on_every_node() {
    let (a, _b, alice, bob, bob_key, space, uri) = bob_posts_on_b().await;
    let c = TestNode::start().await;
    let carol = user(&c, &Keypair::generate().unwrap()).await;
    carol.join(&alice.space_uri(&space)).await.unwrap();

    // Two devices of Bob's, both at version 0, both publish version 1 with other content.
    let laptop = &bob;
    let phone = Client::connect(&_b.url, bob_key.clone()).await.unwrap();
    let (beam_x, x) = Edit::create(
        &bob_key,
        uri.path.beam,
        1,
        "t",
        "from the laptop",
        10,
        false,
    )
    .unwrap();
    let (beam_y, y) =
        Edit::create(&bob_key, uri.path.beam, 1, "t", "from the phone", 10, false).unwrap();
    let (winner, loser) = if x.key().unwrap() > y.key().unwrap() {
        ((beam_x, x), (beam_y, y))
    } else {
        ((beam_y, y), (beam_x, x))
    };
    let winner_id = winner.1.content_id().unwrap();
    // The winner first: a node that let the last one win would pick the loser.
    let first = laptop
        .publish_edit(winner.0.clone(), winner.1.clone())
        .await
        .unwrap();
    let last = phone
        .publish_edit(loser.0.clone(), loser.1.clone())
        .await
        .unwrap();
    let head = last.edits[0].seq;
    assert!(head > first.edits[0].seq);

    // The home node's history ends with the winner.
    let history = bob.beam_history(&uri).await.unwrap();
    assert_eq!(
        history.versions.len(),
        3,
        "both versions are kept as history"
    );
    let current = history.versions.last().unwrap();
    assert_eq!(
        current.edit.as_ref().unwrap().content_id().unwrap(),
        winner_id
    );
    assert_eq!(current.beam.body, winner.0.body);

    // Each node resolves the edits in its own copy of the log to the same winner.
    for client in [&alice, &carol, &bob] {
        let mut feed = client.subscribe(&space, 0).await.unwrap();
        let events = until_seq(&mut feed, head).await;
        let edits = edits_in(&events);
        assert_eq!(edits.len(), 2);
        assert_eq!(
            resolve(&edits).unwrap().unwrap().content_id().unwrap(),
            winner_id
        );
    }
    let loser_uri = BeamUri {
        authority: uri.authority.clone(),
        path: BeamPath::new(&loser.1.author, loser.1.beam),
    };
    let winner_uri = BeamUri {
        authority: uri.authority.clone(),
        path: BeamPath::new(&winner.1.author, winner.1.beam),
    };
    // Node A (the sequencer) and node C (a replica, whose edit rows came with its copy of the
    // log), holding every version once read through them, answer history from their own rows.
    for client in [&alice, &carol] {
        client.get_beam(&uri).await.unwrap();
        client.get_beam(&loser_uri).await.unwrap();
        client.get_beam(&winner_uri).await.unwrap();
        let local = client.beam_history(&uri.path).await.unwrap();
        assert_eq!(local.versions.len(), 3, "original and both versions cached");
        let last = local.versions.last().unwrap();
        assert_eq!(last.edit.as_ref().unwrap().content_id().unwrap(), winner_id);
    }
    assert_eq!(alice.current_beam(&uri).await.unwrap().body, winner.0.body);
    drop(a);
}

#[tokio::test]
async fn edits_of_someone_elses_beam_of_a_deleted_beam_and_of_an_old_version_are_refused() {
    let (_a, b, alice, bob, bob_key, _space, uri) = bob_posts_on_b().await;

    // Mallory, on Bob's node, signs an edit of Bob's beam under her own key.
    let mallory_key = Keypair::generate().unwrap();
    let mallory = user(&b, &mallory_key).await;
    let (beam, edit) =
        Edit::create(&mallory_key, uri.path.beam, 1, "t", "mine now", 10, false).unwrap();
    let err = mallory.publish_edit(beam, edit).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::NotAuthor), "{err}");
    // Signed by Bob but sent on Mallory's connection.
    let (beam, edit) = Edit::create(&bob_key, uri.path.beam, 1, "t", "x", 10, false).unwrap();
    let err = mallory.publish_edit(beam, edit).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::NotSigner), "{err}");
    // At a node that is not the beam's home.
    let bob_on_a = Client::connect(&_a.url, bob_key.clone()).await.unwrap();
    let err = bob_on_a
        .edit_beam_as(&uri, 1, "t", "elsewhere", false)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::BeamNotFound), "{err}");

    // Version 2, then version 1: below the current one.
    bob.edit_beam_as(&uri, 2, "t", "two", false).await.unwrap();
    let err = bob
        .edit_beam_as(&uri, 1, "t", "one", false)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::StaleVersion), "{err}");
    // Version 0 breaks the edit's rules.
    let err = bob
        .edit_beam_as(&uri, 0, "t", "zero", false)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::MalformedObject), "{err}");

    // Deleted: no new versions.
    bob.delete_beam(&uri).await.unwrap();
    let err = bob
        .edit_beam_as(&uri, 3, "t", "three", false)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::BeamDeleted), "{err}");
    // And the deletion took the versions with it.
    let err = alice.beam_history(&uri).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::BeamNotFound), "{err}");
}

/// Edits of one beam sent at once from several devices of its author are taken one at a time:
/// each is checked against the edits taken before it, so in the order the home node took them
/// the versions never go down, and each one refused is refused as stale.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_edits_are_checked_in_the_order_they_are_taken() {
    let node = TestNode::start().await;
    let key = Keypair::generate().unwrap();
    let author = user(&node, &key).await;
    let space = author
        .create_space(SpaceType::Channel, "drafts", "Drafts")
        .await
        .unwrap()
        .space;
    let posted = author.post(&space, "t", "version 0").await.unwrap();
    let uri = BeamUri::parse(&posted.beam_uri).unwrap();
    let mut devices = Vec::new();
    for _ in 0..8 {
        devices.push(user(&node, &key).await);
    }
    let versions = [5u64, 2, 7, 1, 8, 3, 6, 4];
    let sends = devices.iter().zip(versions).map(|(device, version)| {
        let uri = uri.clone();
        async move {
            let body = format!("version {version}");
            (
                version,
                device.edit_beam_as(&uri, version, "t", &body, false).await,
            )
        }
    });
    let outcomes = futures_util::future::join_all(sends).await;
    let mut taken = Vec::new();
    for (version, outcome) in outcomes {
        match outcome {
            Ok(edited) => taken.push((edited.edits[0].seq, version)),
            Err(err) => assert_eq!(err.code(), Some(ErrorCode::StaleVersion), "{err}"),
        }
    }
    taken.sort();
    let in_order: Vec<u64> = taken.iter().map(|(_, v)| *v).collect();
    assert!(
        in_order.windows(2).all(|w| w[0] <= w[1]),
        "versions taken in this order: {in_order:?}"
    );
    assert!(in_order.contains(&8), "the highest version is never stale");
}
