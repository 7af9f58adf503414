//! The `users` table: when DIDs were seen, and the operator's allow, deny and ban decisions.

use northstar_node::store::{MemberState, Op, UserRow};

use super::{Fixture, NODE, Store, member, space};

async fn row(store: &Store, did: &str) -> Option<UserRow> {
    store
        .users()
        .await
        .unwrap()
        .into_iter()
        .find(|u| u.did == did)
}

pub(crate) async fn seen_times_and_decisions_are_kept_per_did(f: &Fixture) {
    let store = &f.store;
    assert!(store.users().await.unwrap().is_empty());

    // First seen stays, last seen moves.
    store.user_seen("did:key:zAlice", 100).await.unwrap();
    store.user_seen("did:key:zAlice", 250).await.unwrap();
    let alice = row(store, "did:key:zAlice").await.unwrap();
    assert_eq!((alice.first_seen, alice.last_seen), (Some(100), Some(250)));
    assert_eq!((alice.allowed, alice.banned_at), (None, None));

    // A decision about a DID never seen makes a row without times; seeing it later keeps it.
    store.set_access("did:key:zBob", true).await.unwrap();
    store.user_seen("did:key:zBob", 300).await.unwrap();
    let bob = row(store, "did:key:zBob").await.unwrap();
    assert_eq!((bob.allowed, bob.first_seen), (Some(true), Some(300)));
    store.set_access("did:key:zBob", false).await.unwrap();
    assert_eq!(
        row(store, "did:key:zBob").await.unwrap().allowed,
        Some(false)
    );

    // A ban keeps its first time; unban clears it and leaves the rest.
    store.ban_user("did:key:zAlice", 400).await.unwrap();
    store.ban_user("did:key:zAlice", 500).await.unwrap();
    assert_eq!(
        row(store, "did:key:zAlice").await.unwrap().banned_at,
        Some(400)
    );
    store.unban_user("did:key:zAlice").await.unwrap();
    let alice = row(store, "did:key:zAlice").await.unwrap();
    assert_eq!((alice.banned_at, alice.last_seen), (None, Some(250)));
    // Unbanning a DID without a row changes nothing.
    store.unban_user("did:key:zNobody").await.unwrap();

    // Listed in DID order, bytewise.
    let dids: Vec<String> = store
        .users()
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.did)
        .collect();
    assert_eq!(dids, ["did:key:zAlice", "did:key:zBob"]);
}

pub(crate) async fn home_members_are_the_members_whose_home_is_this_node(f: &Fixture) {
    let store = &f.store;
    let s = "channel/zOwner/one";
    store
        .commit(&[
            Op::CreateSpace(space(s, "did:key:zOwner", NODE)),
            member(s, "did:key:zHere", Some(MemberState::Member), Some(NODE)),
            member(
                s,
                "did:key:zAway",
                Some(MemberState::Member),
                Some("did:key:zOther"),
            ),
            member(s, "did:key:zGone", Some(MemberState::Banned), Some(NODE)),
        ])
        .await
        .unwrap();
    assert_eq!(store.home_members(NODE).await.unwrap(), ["did:key:zHere"]);
}
