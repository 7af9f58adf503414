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

pub(crate) async fn a_removed_space_goes_with_its_rows_and_its_id_is_kept(f: &Fixture) {
    let store = &f.store;
    let (gone, kept) = ("channel/zOwner/gone", "channel/zOwner/kept");
    let mut ops = Vec::new();
    for s in [gone, kept] {
        ops.push(Op::CreateSpace(space(s, "did:key:zOwner", NODE)));
        ops.push(Op::Event(super::event(s, 1)));
        ops.push(member(
            s,
            "did:key:zHere",
            Some(MemberState::Member),
            Some(NODE),
        ));
        ops.push(super::beam_ref("bBeam", s, 1, "did:key:zHere"));
        ops.push(Op::Posted {
            path: "beam/h/bBeam".into(),
            space: s.into(),
        });
    }
    store.commit(&ops).await.unwrap();
    assert!(!store.is_removed(gone).await.unwrap());

    store
        .commit(&[Op::DropSpace {
            space: gone.into(),
            removed_at: 9,
        }])
        .await
        .unwrap();
    assert!(store.space(gone).await.unwrap().is_none());
    assert!(store.events(gone, 0, 10).await.unwrap().is_empty());
    assert!(store.members(gone).await.unwrap().is_empty());
    assert_eq!(
        store
            .spaces_referencing("bBeam", "did:key:zHere")
            .await
            .unwrap(),
        [kept]
    );
    assert!(store.is_removed(gone).await.unwrap());
    // The other space is as it was.
    assert_eq!(store.space(kept).await.unwrap().unwrap().head_seq, 1);
    assert_eq!(store.members(kept).await.unwrap().len(), 1);
    assert!(!store.is_removed(kept).await.unwrap());
    // Removing it again changes nothing.
    store
        .commit(&[Op::DropSpace {
            space: gone.into(),
            removed_at: 10,
        }])
        .await
        .unwrap();
}
