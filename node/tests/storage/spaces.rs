//! Conformance cases: spaces, membership and homes, replicated spaces, and the order of listings.

use super::*;

// ---- membership ------------------------------------------------------------------------

pub(super) async fn membership_states_and_homes_are_kept_per_space(f: &Fixture) {
    let store = &f.store;
    store
        .commit(&[
            Op::CreateSpace(space(DM, "did:key:owner", NODE)),
            Op::CreateSpace(space(CHANNEL, "did:key:owner", NODE)),
            member(
                DM,
                "did:key:m",
                Some(MemberState::Member),
                Some("did:key:home"),
            ),
            member(DM, "did:key:i", Some(MemberState::Invited), None),
            member(DM, "did:key:b", Some(MemberState::Member), None),
            member(DM, "did:key:gone", Some(MemberState::Member), None),
        ])
        .await
        .unwrap();
    // Later changes in one group apply in order: banned after member, removed after invited.
    store
        .commit(&[
            member(DM, "did:key:b", Some(MemberState::Banned), None),
            member(DM, "did:key:gone", Some(MemberState::Invited), None),
            member(DM, "did:key:gone", None, None),
        ])
        .await
        .unwrap();
    let members = store.members(DM).await.unwrap();
    let capacities: Vec<Option<u32>> = members
        .iter()
        .filter_map(|m| m.home.as_ref().map(|h| h.capacity))
        .collect();
    assert_eq!(
        capacities,
        [Some(2500)],
        "a home's declared capacity is kept"
    );
    let states: Vec<(&str, MemberState, Option<&str>)> = members
        .iter()
        .map(|m| {
            (
                m.did.as_str(),
                m.state,
                m.home.as_ref().map(|h| h.node.as_str()),
            )
        })
        .collect();
    assert_eq!(
        states,
        [
            ("did:key:b", MemberState::Banned, None),
            ("did:key:i", MemberState::Invited, None),
            ("did:key:m", MemberState::Member, Some("did:key:home")),
        ]
    );
    assert!(
        store.members(CHANNEL).await.unwrap().is_empty(),
        "per space"
    );
    let may = |did| store.may_read_dm(DM, did);
    assert!(may("did:key:m").await.unwrap());
    assert!(may("did:key:home").await.unwrap(), "a member's home node");
    assert!(!may("did:key:i").await.unwrap(), "invited only");
    assert!(!may("did:key:b").await.unwrap(), "banned");
    assert!(!may("did:key:gone").await.unwrap(), "removed");
    let spaces_of = |did| store.spaces_of(did);
    let ids = |rows: Vec<SpaceRow>| rows.into_iter().map(|s| s.id).collect::<Vec<_>>();
    assert_eq!(ids(spaces_of("did:key:m").await.unwrap()), [DM]);
    assert_eq!(ids(spaces_of("did:key:i").await.unwrap()), [DM], "invited");
    assert!(spaces_of("did:key:b").await.unwrap().is_empty(), "banned");
    assert_eq!(
        ids(spaces_of("did:key:owner").await.unwrap()),
        [CHANNEL, DM],
        "owned, by creation time then id"
    );
}

pub(super) async fn listings_sort_bytewise(f: &Fixture) {
    let store = &f.store;
    // Upper case before lower case before `~`, byte by byte, whatever the server's locale.
    let dids = [
        "did:key:zb",
        "did:key:zB",
        "did:key:z~",
        "did:key:za",
        "did:key:z_a",
    ];
    let mut ops: Vec<Op> = vec![Op::CreateSpace(space(CHANNEL, "did:key:owner", NODE))];
    ops.extend(
        dids.iter()
            .map(|did| member(CHANNEL, did, Some(MemberState::Member), None)),
    );
    for (i, id) in ["channel/o/b", "channel/o/B", "channel/o/_", "channel/o/a"]
        .iter()
        .enumerate()
    {
        let mut s = space(id, "did:key:owner", "did:key:elsewhere");
        s.created_at = 7 + u64::try_from(i).unwrap() % 2;
        ops.push(Op::CreateSpace(s));
    }
    store.commit(&ops).await.unwrap();
    let mut sorted = dids.to_vec();
    sorted.sort_unstable();
    let listed: Vec<String> = store
        .members(CHANNEL)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.did)
        .collect();
    assert_eq!(listed, sorted);
    let replicated: Vec<String> = store
        .replicated_spaces(NODE)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(
        replicated,
        ["channel/o/B", "channel/o/_", "channel/o/a", "channel/o/b"]
    );
    let owned: Vec<String> = store
        .spaces_of("did:key:owner")
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(
        owned,
        [
            CHANNEL,
            "channel/o/_",
            "channel/o/b",
            "channel/o/B",
            "channel/o/a"
        ],
        "by creation time (1, 7, 7, 8, 8), then id"
    );
}

pub(super) async fn replicated_spaces_are_those_another_node_sequences(f: &Fixture) {
    let store = &f.store;
    store
        .commit(&[
            Op::CreateSpace(space("channel/o/here", "did:key:owner", NODE)),
            Op::CreateSpace(space("channel/o/there", "did:key:owner", "did:key:far")),
            Op::CreateSpace(space("dm/o/there", "did:key:owner", "did:key:far")),
        ])
        .await
        .unwrap();
    let ids: Vec<String> = store
        .replicated_spaces(NODE)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(ids, ["channel/o/there", "dm/o/there"]);
    let there = store.space("dm/o/there").await.unwrap().unwrap();
    assert_eq!(there, space("dm/o/there", "did:key:owner", "did:key:far"));
}

pub(super) async fn a_nul_in_a_space_name_does_not_fail_the_group(f: &Fixture) {
    let store = &f.store;
    // A name is any string the protocol accepts, and it accepts U+0000, which PostgreSQL's
    // text cannot hold: the group must not fail for it (the signed event keeps the name).
    let mut s = space(CHANNEL, "did:key:owner", NODE);
    s.name = "a\0b".into();
    store
        .commit(&[Op::CreateSpace(s), Op::Event(event(CHANNEL, 1))])
        .await
        .unwrap();
    let stored = store.space(CHANNEL).await.unwrap().unwrap();
    assert!(
        ["a\0b", "a\u{FFFD}b"].contains(&stored.name.as_str()),
        "{:?}",
        stored.name
    );
    assert_eq!(seqs(store, CHANNEL).await, [1]);
}
