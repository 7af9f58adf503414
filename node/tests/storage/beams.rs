//! Conformance cases: beams, refs, posts, tombstones, the cache, paging by author, and the read rule.

use super::*;

// ---- beams, refs, tombstones, cache ----------------------------------------------------

pub(super) async fn beams_refs_posts_and_forks_are_inserted_once(f: &Fixture) {
    let store = &f.store;
    channel_with_events(store, 1).await;
    let path = "beam/ah/b1";
    let first = beam(path, "b1", "did:key:author", 5);
    let again = BeamRow {
        json: "{\"other\":true}".into(),
        ..first.clone()
    };
    let fork = Op::Fork {
        space: CHANNEL.into(),
        seq: 1,
        kept: "kept".into(),
        rival: "rival".into(),
        detected_at: 9,
    };
    let posted = Op::Posted {
        path: path.into(),
        space: "channel/other/c".into(),
    };
    let group = |b: &BeamRow| {
        vec![
            Op::PutBeam(b.clone()),
            posted.clone(),
            beam_ref("b1", CHANNEL, 1, "did:key:author"),
            fork.clone(),
        ]
    };
    store.commit(&group(&first)).await.unwrap();
    store.commit(&group(&again)).await.unwrap();
    // Twice in one group, too.
    store
        .commit(&[group(&again), group(&again)].concat())
        .await
        .unwrap();
    assert_eq!(
        store.beam(path).await.unwrap(),
        Some(first),
        "the first copy stays"
    );
    assert_eq!(
        store.beam("beam/other/b1").await.unwrap(),
        None,
        "a beam is found only under its own path"
    );
    assert_eq!(store.ref_authors("b1").await.unwrap(), ["did:key:author"]);
    assert_eq!(
        store
            .spaces_referencing("b1", "did:key:author")
            .await
            .unwrap(),
        [CHANNEL]
    );
    assert_eq!(store.forks(CHANNEL).await.unwrap().len(), 1);
    assert!(
        store
            .references("b1", CHANNEL, "did:key:author")
            .await
            .unwrap()
    );
    assert!(
        !store
            .references("b1", CHANNEL, "did:key:other")
            .await
            .unwrap()
    );
    assert!(
        store
            .referenced_at("b1", "did:key:author", "did:key:home")
            .await
            .unwrap()
    );
    assert!(
        !store
            .referenced_at("b1", "did:key:author", "did:key:elsewhere")
            .await
            .unwrap()
    );
}

pub(super) async fn a_deleted_beam_never_comes_back(f: &Fixture) {
    let store = &f.store;
    let path = "beam/ah/b1";
    let b = beam(path, "b1", "did:key:author", 5);
    store.commit(&[Op::PutBeam(b.clone())]).await.unwrap();
    store
        .commit(&[delete(path, "b1", "did:key:author")])
        .await
        .unwrap();
    assert_eq!(store.beam(path).await.unwrap(), None);
    assert!(store.is_tombstoned("b1").await.unwrap());
    // Put again, alone or in the group that deletes it: the tombstone keeps it out.
    store.commit(&[Op::PutBeam(b.clone())]).await.unwrap();
    store
        .commit(&[Op::PutBeam(b.clone()), delete(path, "b1", "did:key:author")])
        .await
        .unwrap();
    assert_eq!(store.beam(path).await.unwrap(), None);
    assert!(
        store
            .beams_by_author(
                "did:key:author",
                u64::MAX >> 11,
                10,
                1 << 20,
                Some("did:key:author")
            )
            .await
            .unwrap()
            .is_empty()
    );
    // A beam deleted before it ever arrived never arrives.
    store
        .commit(&[
            delete("beam/ah/b2", "b2", "did:key:author"),
            Op::PutBeam(beam("beam/ah/b2", "b2", "did:key:author", 6)),
        ])
        .await
        .unwrap();
    assert_eq!(store.beam("beam/ah/b2").await.unwrap(), None);
    assert!(!store.is_tombstoned("b3").await.unwrap());
}

pub(super) async fn a_cached_copy_needs_a_ref_by_its_author_and_goes_with_its_tombstone(
    f: &Fixture,
) {
    let store = &f.store;
    channel_with_events(store, 2).await;
    let path = "beam/ah/b1";
    let copy = beam(path, "b1", "did:key:author", 5);
    assert!(!store.cache_beam(&copy).await.unwrap(), "no ref: not kept");
    store
        .commit(&[beam_ref("b1", CHANNEL, 1, "did:key:someone-else")])
        .await
        .unwrap();
    assert!(
        !store.cache_beam(&copy).await.unwrap(),
        "a ref by another: not kept"
    );
    store
        .commit(&[beam_ref("b1", CHANNEL, 2, "did:key:author")])
        .await
        .unwrap();
    assert!(store.cache_beam(&copy).await.unwrap());
    assert!(!store.cache_beam(&copy).await.unwrap(), "kept once");
    let cached = store.cached_beam(path).await.unwrap().unwrap();
    assert_eq!((cached.id.as_str(), cached.created_at), ("b1", 0));
    // Only its author's tombstone purges it.
    let uncache = |author: &str| Op::Uncache {
        beam: "b1".into(),
        author: author.into(),
    };
    store
        .commit(&[uncache("did:key:someone-else")])
        .await
        .unwrap();
    assert!(store.cached_beam(path).await.unwrap().is_some());
    store.commit(&[uncache("did:key:author")]).await.unwrap();
    assert_eq!(store.cached_beam(path).await.unwrap(), None);
    // Once deleted, never cached again.
    store
        .commit(&[delete(path, "b1", "did:key:author")])
        .await
        .unwrap();
    assert!(!store.cache_beam(&copy).await.unwrap());
    assert_eq!(store.cached_beam(path).await.unwrap(), None);
}

// ---- paging ----------------------------------------------------------------------------

pub(super) async fn beams_by_author_are_paged_newest_first_by_count_and_bytes(f: &Fixture) {
    let store = &f.store;
    let author = "did:key:author";
    // Two at time 20, so the path breaks the tie; one by another author.
    let beams = [
        beam("beam/ah/a", "a", author, 10),
        beam("beam/ah/c", "c", author, 20),
        beam("beam/ah/b", "b", author, 20),
        beam("beam/ah/d", "d", author, 30),
        beam("beam/xx/e", "e", "did:key:other", 25),
    ];
    store
        .commit(&beams.iter().cloned().map(Op::PutBeam).collect::<Vec<_>>())
        .await
        .unwrap();
    let list =
        |before, limit, bytes| store.beams_by_author(author, before, limit, bytes, Some(author));
    let ids = |rows: Vec<BeamRow>| rows.into_iter().map(|b| b.id).collect::<Vec<_>>();
    assert_eq!(
        ids(list(100, 10, usize::MAX).await.unwrap()),
        ["d", "b", "c", "a"]
    );
    assert_eq!(ids(list(30, 2, usize::MAX).await.unwrap()), ["b", "c"]);
    // Each JSON is `{"beam":"x"}`: 12 bytes.
    assert_eq!(ids(list(100, 10, 24).await.unwrap()), ["d", "b"]);
    assert_eq!(
        ids(list(100, 10, 1).await.unwrap()),
        ["d"],
        "one beam even if too big"
    );
    assert!(list(10, 10, usize::MAX).await.unwrap().is_empty());
}

// ---- the read rule ---------------------------------------------------------------------

pub(super) async fn a_beam_posted_into_a_remote_channel_is_public_until_deleted(f: &Fixture) {
    let store = &f.store;
    let path = "beam/bah/bid";
    let readable = |caller| store.beam_readable(path, "bid", "did:key:author", caller);
    assert!(!readable(None).await.unwrap(), "no ref: its author's alone");
    assert!(readable(Some("did:key:author")).await.unwrap());
    store
        .commit(&[
            Op::PutBeam(beam(path, "bid", "did:key:author", 1)),
            Op::Posted {
                path: path.into(),
                space: "channel/owner/c".into(),
            },
        ])
        .await
        .unwrap();
    assert!(
        readable(None).await.unwrap(),
        "posted into a channel: public"
    );
    assert!(readable(Some("did:key:stranger")).await.unwrap());
    store
        .commit(&[delete(path, "bid", "did:key:author")])
        .await
        .unwrap();
    assert!(store.beam(path).await.unwrap().is_none());
    assert!(
        !readable(None).await.unwrap(),
        "its posts went with its content"
    );
}

pub(super) async fn a_beam_posted_only_into_a_dm_is_read_by_its_members_and_their_homes(
    f: &Fixture,
) {
    let store = &f.store;
    let path = "beam/bah/bid";
    store
        .commit(&[
            Op::CreateSpace(space(DM, "did:key:owner", "did:key:seq")),
            member(
                DM,
                "did:key:m",
                Some(MemberState::Member),
                Some("did:key:home"),
            ),
            member(DM, "did:key:i", Some(MemberState::Invited), None),
            Op::PutBeam(beam(path, "bid", "did:key:author", 1)),
            Op::Posted {
                path: path.into(),
                space: DM.into(),
            },
        ])
        .await
        .unwrap();
    let readable = |caller| store.beam_readable(path, "bid", "did:key:author", caller);
    for (caller, may) in [
        (None, false),
        (Some("did:key:author"), true),
        (Some("did:key:m"), true),
        (Some("did:key:home"), true),
        (Some("did:key:i"), false),
        (Some("did:key:outsider"), false),
    ] {
        assert_eq!(readable(caller).await.unwrap(), may, "{caller:?}");
    }
    let listed =
        |caller| store.beams_by_author("did:key:author", u64::MAX >> 11, 10, 1 << 20, caller);
    assert_eq!(listed(Some("did:key:m")).await.unwrap().len(), 1);
    assert!(listed(Some("did:key:outsider")).await.unwrap().is_empty());
    assert!(listed(None).await.unwrap().is_empty());
    assert_eq!(
        store
            .replicated_dm_spaces_of_beam(path, "bid", "did:key:author", NODE)
            .await
            .unwrap(),
        [(DM.to_owned(), "seq.example".to_owned())]
    );
    assert!(
        store
            .replicated_dm_spaces_of_beam(path, "bid", "did:key:author", "did:key:seq")
            .await
            .unwrap()
            .is_empty(),
        "sequenced here"
    );
}

pub(super) async fn a_ref_counts_for_the_read_rule_only_if_its_author_placed_it(f: &Fixture) {
    let store = &f.store;
    channel_with_events(store, 2).await;
    let path = "beam/bah/bid";
    store
        .commit(&[
            Op::PutBeam(beam(path, "bid", "did:key:author", 1)),
            beam_ref("bid", CHANNEL, 1, "did:key:impostor"),
        ])
        .await
        .unwrap();
    let readable = |caller| store.beam_readable(path, "bid", "did:key:author", caller);
    assert!(!readable(None).await.unwrap(), "someone else's ref");
    store
        .commit(&[beam_ref("bid", CHANNEL, 2, "did:key:author")])
        .await
        .unwrap();
    assert!(
        readable(None).await.unwrap(),
        "its author's ref in a channel"
    );
    let mut authors = store.ref_authors("bid").await.unwrap();
    authors.sort();
    assert_eq!(authors, ["did:key:author", "did:key:impostor"]);
}

pub(super) async fn known_beams_tell_stored_cached_and_deleted_apart(f: &Fixture) {
    let store = &f.store;
    channel_with_events(store, 1).await;
    store
        .commit(&[
            Op::PutBeam(beam("beam/ah/stored", "stored", "did:key:a", 1)),
            Op::PutBeam(beam("beam/ah/deleted", "deleted", "did:key:a", 1)),
            beam_ref("cached", CHANNEL, 1, "did:key:c"),
        ])
        .await
        .unwrap();
    store
        .commit(&[delete("beam/ah/deleted", "deleted", "did:key:a")])
        .await
        .unwrap();
    assert!(
        store
            .cache_beam(&beam("beam/ch/cached", "cached", "did:key:c", 0))
            .await
            .unwrap()
    );
    let asked: Vec<String> = ["stored", "deleted", "cached", "unknown"]
        .map(String::from)
        .to_vec();
    let mut known: Vec<(String, String, bool)> = store
        .known_beams(&asked)
        .await
        .unwrap()
        .into_iter()
        .map(|k| (k.id, k.author, k.deleted))
        .collect();
    known.sort();
    assert_eq!(
        known,
        [
            ("cached".into(), "did:key:c".into(), false),
            ("deleted".into(), "did:key:a".into(), true),
            ("stored".into(), "did:key:a".into(), false),
        ]
    );
    assert!(store.known_beams(&[]).await.unwrap().is_empty());
}

// ---- edits (spec §4.10) -----------------------------------------------------------------

fn edit(id: &str, version: u64, beam: &str, drop_history: bool) -> Op {
    Op::Edit {
        id: id.into(),
        original: "o1".into(),
        author: "did:key:a".into(),
        version,
        beam: beam.into(),
        drop_history,
        json: format!("{{\"edit\":\"{id}\"}}"),
    }
}

pub(super) async fn a_dropping_edit_deletes_every_version_below_it_in_any_order(f: &Fixture) {
    let store = &f.store;
    channel_with_events(store, 1).await;
    let author = "did:key:a";
    store
        .commit(&[
            beam_ref("o1", CHANNEL, 1, author),
            Op::PutBeam(beam("beam/ah/o1", "o1", author, 1)),
            Op::PutBeam(beam("beam/ah/v1", "v1", author, 2)),
            edit("e1", 1, "v1", false),
            edit("e3", 3, "v3", false),
        ])
        .await
        .unwrap();
    // An edit kept twice is kept once; a version named by an edit is cached with the refs of
    // its original.
    store.commit(&[edit("e1", 1, "v1", false)]).await.unwrap();
    assert!(
        store
            .cache_beam(&beam("beam/ah/v3", "v3", author, 4))
            .await
            .unwrap()
    );
    assert!(
        !store
            .cache_beam(&beam("beam/ah/x9", "x9", author, 4))
            .await
            .unwrap(),
        "a beam no ref and no edit names is not cached"
    );
    assert_eq!(
        store.version_of("v3").await.unwrap(),
        Some(("o1".into(), author.into()))
    );

    // Version 2 drops history: the original and version 1 go, version 3 (above) stays.
    store
        .commit(&[
            Op::PutBeam(beam("beam/ah/v2", "v2", author, 3)),
            edit("e2", 2, "v2", true),
        ])
        .await
        .unwrap();
    assert_eq!(store.beam("beam/ah/o1").await.unwrap(), None);
    assert_eq!(store.beam("beam/ah/v1").await.unwrap(), None);
    assert!(store.beam("beam/ah/v2").await.unwrap().is_some());
    assert!(store.cached_beam("beam/ah/v3").await.unwrap().is_some());

    // An edit below the dropping one that arrives after it is dropped too; one of the same
    // version with a greater id is above it and stays.
    store
        .commit(&[
            Op::PutBeam(beam("beam/ah/v1b", "v1b", author, 5)),
            edit("e0", 1, "v1b", false),
            Op::PutBeam(beam("beam/ah/v2b", "v2b", author, 6)),
            edit("e9", 2, "v2b", false),
        ])
        .await
        .unwrap();
    assert_eq!(store.beam("beam/ah/v1b").await.unwrap(), None);
    assert!(store.beam("beam/ah/v2b").await.unwrap().is_some());
    assert_eq!(store.edits_of("o1", author).await.unwrap().len(), 5);

    // Deleting the beam takes its versions, stored and cached.
    store
        .commit(&[
            Op::DeleteBeam {
                path: "beam/ah/o1".into(),
                beam: "o1".into(),
                author: author.into(),
                tombstone: "{}".into(),
            },
            Op::Uncache {
                beam: "o1".into(),
                author: author.into(),
            },
        ])
        .await
        .unwrap();
    assert_eq!(store.beam("beam/ah/v2").await.unwrap(), None);
    assert_eq!(store.beam("beam/ah/v2b").await.unwrap(), None);
    assert_eq!(store.cached_beam("beam/ah/v3").await.unwrap(), None);
}
