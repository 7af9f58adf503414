//! `northstar beam edit` and `northstar beam history`, run as a user runs them: a node in its
//! own process, the CLI in others; a post, two edits (the second dropping history), the history
//! in text and JSON, and the refusal of an edit by someone else.

mod serve;

use serve::{Serve, json_lines, new_key, one, run};

#[test]
fn the_cli_edits_a_beam_and_shows_its_history() {
    let dir = tempfile::tempdir().unwrap();
    let node = Serve::start(&dir.path().join("node"), &[]);
    let (alice, bob) = (new_key(dir.path(), "alice"), new_key(dir.path(), "bob"));
    let created = one(&run(
        &node,
        &alice,
        &[
            "space", "create", "--type", "channel", "--name", "Notes", "--id", "notes", "--json",
        ],
    ));
    let space = created["id"].as_str().unwrap().to_owned();
    let posted = one(&run(
        &node,
        &alice,
        &[
            "beam", "post", &space, "--title", "Plan", "--body", "draft", "--json",
        ],
    ));
    let beam_uri = posted["beam_uri"].as_str().unwrap().to_owned();

    let edited = one(&run(
        &node,
        &alice,
        &[
            "beam",
            "edit",
            &beam_uri,
            "--title",
            "Plan",
            "--body",
            "second draft",
            "--json",
        ],
    ));
    assert_eq!(edited["edits"].as_array().unwrap().len(), 1, "{edited}");
    assert_eq!(edited["edits"][0]["seq"], 3, "{edited}");
    assert_ne!(edited["beam_uri"], beam_uri.as_str());

    let history = one(&run(&node, &bob, &["beam", "history", &beam_uri, "--json"]));
    let versions = history["versions"].as_array().unwrap();
    let seen: Vec<_> = versions
        .iter()
        .map(|v| (v["version"].as_u64().unwrap(), v["body"].as_str().unwrap()))
        .collect();
    assert_eq!(seen, [(0, "draft"), (1, "second draft")], "{history}");
    assert_eq!(versions[1]["edit"]["version"], 1);

    // A reader gets the newest version by default, and the beam as posted on asking.
    let got = one(&run(&node, &bob, &["beam", "get", &beam_uri, "--json"]));
    assert_eq!(
        (&got["body"], &got["version"]),
        (&"second draft".into(), &1.into()),
        "{got}"
    );
    let got = one(&run(
        &node,
        &bob,
        &["beam", "get", &beam_uri, "--original", "--json"],
    ));
    assert_eq!(got["body"], "draft", "{got}");
    assert!(got.get("version").is_none(), "{got}");

    // The edit event is in the log, shown as `edit`.
    let events = json_lines(&run(&node, &bob, &["space", "events", &space, "--json"]));
    let last = events.last().unwrap();
    assert_eq!(last["kind"], "edit", "{last}");
    assert_eq!(last["version"], 1, "{last}");

    // A final version that drops the drafts: history shows it alone, in text too.
    one(&run(
        &node,
        &alice,
        &[
            "beam",
            "edit",
            &beam_uri,
            "--title",
            "Plan",
            "--body",
            "final",
            "--drop-history",
            "--json",
        ],
    ));
    let history = one(&run(&node, &bob, &["beam", "history", &beam_uri, "--json"]));
    let versions = history["versions"].as_array().unwrap();
    assert_eq!(versions.len(), 1, "{history}");
    assert_eq!(versions[0]["version"], 2);
    assert_eq!(versions[0]["body"], "final");
    let text = run(&node, &bob, &["beam", "history", &beam_uri]);
    assert!(text.status.success());
    let text = String::from_utf8(text.stdout).unwrap();
    assert!(text.starts_with("v2 ") && text.contains("final"), "{text}");
    assert!(!text.contains("draft"), "{text}");

    // Bob may not edit Alice's beam: the CLI says so and fails.
    let refused = run(
        &node,
        &bob,
        &["beam", "edit", &beam_uri, "--title", "x", "--body", "mine"],
    );
    assert!(!refused.status.success());
}
