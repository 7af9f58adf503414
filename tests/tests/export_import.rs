//! `northstar space export` and `space import` (`spec/protocol.md` §11), run as a user runs
//! them: the real `northstar` binary against real nodes on 127.0.0.1. A space exported from one
//! node lands byte for byte in an unrelated one; a tampered export is refused at its first bad
//! event, by the command before it sends anything and by the node (`space.import`) for a caller
//! that skips the command's check; and either way the node keeps nothing of the space.
//!
//! The binary is the one `cargo test --workspace` builds beside this test (`target/debug/
//! northstar`); `NORTHSTAR_BIN` names another.

mod common;

use std::path::{Path, PathBuf};

use common::{Raw, TIMEOUT, TestNode};
use northstar_protocol::address::{BeamPath, SpaceId, SpaceType};
use northstar_protocol::api::ErrorCode;
use northstar_protocol::wire::{Event, Payload};
use northstar_protocol::{Keypair, method};
use northstar_sdk::{Client, NodeCode, SdkError, keystore};
use serde_json::{Value, json};

/// The `northstar` binary.
fn northstar_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("NORTHSTAR_BIN") {
        return bin.into();
    }
    // target/debug/deps/export_import-… → target/debug/northstar
    let exe = std::env::current_exe().unwrap();
    let bin = exe.parent().unwrap().parent().unwrap().join("northstar");
    assert!(
        bin.exists(),
        "no {}: build it with `cargo build -p northstar-node` (or run `cargo test --workspace`)",
        bin.display()
    );
    bin
}

/// What one run of the binary did.
struct Run {
    ok: bool,
    stdout: String,
    stderr: String,
}

/// Run `northstar --node NODE --key KEY ARGS…` to its end.
async fn northstar(node: &TestNode, key: &Path, args: &[&str]) -> Run {
    let home = tempfile::tempdir().unwrap();
    let mut cmd = tokio::process::Command::new(northstar_bin());
    cmd.arg("--node")
        .arg(&node.url)
        .arg("--key")
        .arg(key)
        .args(args)
        // No config file or key of whoever runs the tests.
        .env("HOME", home.path())
        .env("XDG_CONFIG_HOME", home.path())
        .env_remove("NORTHSTAR_KEY")
        .env_remove("NORTHSTAR_NODE")
        .kill_on_drop(true);
    let out = tokio::time::timeout(TIMEOUT * 6, cmd.output())
        .await
        .expect("northstar did not finish in time")
        .unwrap();
    Run {
        ok: out.status.success(),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

/// A user with a key file in `dir`, connected to `node`.
async fn user(node: &TestNode, dir: &Path, name: &str) -> (PathBuf, Keypair, Client) {
    let path = dir.join(format!("{name}.json"));
    let key = keystore::generate(&path).unwrap();
    let client = Client::connect(&node.url, key.clone()).await.unwrap();
    (path, key, client)
}

/// A channel of alice's on `node` with posts by her and by bob: 1 genesis, 1 join, 5 posts.
async fn busy_channel(alice: &Client, bob: &Client) -> SpaceId {
    let space = alice
        .create_space(SpaceType::Channel, "general", "General")
        .await
        .unwrap()
        .space;
    alice.post(&space, "one", "first").await.unwrap();
    bob.join(&space).await.unwrap();
    bob.post(&space, "two", "from bob").await.unwrap();
    for n in 3..=5 {
        alice
            .post(&space, &format!("post {n}"), "more")
            .await
            .unwrap();
    }
    space
}

/// Every event of `space` on `node` as the node serves it, each as JSON text.
async fn log_of(node: &TestNode, space: &SpaceId) -> Vec<String> {
    let mut raw = Raw::connect(&node.url).await;
    let mut events: Vec<String> = Vec::new();
    loop {
        let since = events.len();
        let page = raw
            .ok(method::SPACE_EVENTS, json!([space.as_str(), since, 1000]))
            .await;
        let got = page["events"].as_array().unwrap();
        events.extend(got.iter().map(Value::to_string));
        if got.is_empty() || page["head_seq"] == json!(events.len()) {
            return events;
        }
    }
}

/// The paths of the beams a log's refs name.
fn beam_paths(events: &[Event]) -> Vec<BeamPath> {
    events
        .iter()
        .filter_map(|e| match &e.payload {
            Payload::BeamRef(r) => Some(BeamPath::new(&r.author, r.beam)),
            _ => None,
        })
        .collect()
}

fn one_json(run: &Run) -> Value {
    assert!(run.ok, "northstar failed: {}", run.stderr);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 1, "one JSON line on stdout: {:?}", run.stdout);
    serde_json::from_str(lines[0]).unwrap()
}

/// `space export SPACE FILE --beams --json` on `node` as the user of `key`: its JSON line.
async fn export_with_beams(node: &TestNode, key: &Path, space: &SpaceId, file: &Path) -> Value {
    let args = [
        "space",
        "export",
        space.as_str(),
        file.to_str().unwrap(),
        "--beams",
        "--json",
    ];
    one_json(&northstar(node, key, &args).await)
}

/// Whether `node` holds `space` at all.
async fn holds(node: &TestNode, space: &SpaceId) -> bool {
    let client = Client::connect_anonymous(&node.url).await.unwrap();
    match client.get_space(space).await {
        Ok(_) => true,
        Err(SdkError::Node {
            code: NodeCode::App(ErrorCode::SpaceNotFound),
            ..
        }) => false,
        Err(e) => panic!("space.get failed: {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exported_space_imports_byte_for_byte_into_an_unrelated_node() {
    // C takes pages of two events at most: the command sends the file in four.
    let (a, b, c) = (
        TestNode::start().await,
        TestNode::start().await,
        TestNode::start_with(|config| config.limits.max_page = 2).await,
    );
    let dir = tempfile::tempdir().unwrap();
    let (alice_key, _, alice) = user(&a, dir.path(), "alice").await;
    let (_, _, bob) = user(&a, dir.path(), "bob").await;
    let (carol_key, _, _) = user(&b, dir.path(), "carol").await;
    let (dave_key, _, _) = user(&c, dir.path(), "dave").await;
    let space = busy_channel(&alice, &bob).await;

    let with_beams = dir.path().join("general-beams.jsonl");
    let plain = dir.path().join("general.jsonl");
    let exported = export_with_beams(&a, &alice_key, &space, &with_beams).await;
    assert_eq!(exported["events"], json!(7));
    assert_eq!(exported["beams"], json!(5));
    let run = northstar(
        &a,
        &alice_key,
        &["space", "export", space.as_str(), plain.to_str().unwrap()],
    )
    .await;
    assert!(run.ok, "{}", run.stderr);
    assert!(
        run.stdout.contains("exported 7 events and 0 beams"),
        "{}",
        run.stdout
    );
    // Not a terminal: plain progress lines on stderr.
    assert!(
        run.stderr.contains("exporting: 7/7 events"),
        "{}",
        run.stderr
    );

    // With beams, into B.
    let run = northstar(
        &b,
        &carol_key,
        &["space", "import", with_beams.to_str().unwrap(), "--json"],
    )
    .await;
    let imported = one_json(&run);
    assert_eq!(imported["events"], json!(7));
    assert_eq!(imported["beams"], json!(5));
    assert_eq!(imported["head_seq"], json!(7));
    assert_eq!(run.stderr, "", "with --json, no progress lines");

    let original = log_of(&a, &space).await;
    assert_eq!(original.len(), 7);
    assert_eq!(
        log_of(&b, &space).await,
        original,
        "B serves A's events byte for byte"
    );
    // And through the SDK, which verifies them on both.
    let on_a = Client::connect_anonymous(&a.url).await.unwrap();
    let on_b = Client::connect_anonymous(&b.url).await.unwrap();
    let events_a = on_a.events(&space, 0, 100).await.unwrap();
    let events_b = on_b.events(&space, 0, 100).await.unwrap();
    assert_eq!(events_a.len(), 7);
    for (x, y) in events_a.iter().zip(&events_b) {
        assert_eq!(
            serde_json::to_string(x).unwrap(),
            serde_json::to_string(y).unwrap()
        );
    }
    let info_b = on_b.get_space(&space).await.unwrap();
    assert_eq!(info_b.head_seq, 7);
    assert_eq!(
        info_b.sequencer,
        on_a.node_info().did,
        "a replica of A's space"
    );
    for path in beam_paths(&events_a) {
        let from_a = on_a.get_beam(&path).await.unwrap();
        // B has it without asking A: no home is named.
        let from_b = on_b.get_beam(&path).await.unwrap();
        assert_eq!(
            serde_json::to_string(&from_a).unwrap(),
            serde_json::to_string(&from_b).unwrap()
        );
    }

    // Importing again changes nothing: every event is held, identical.
    let again = one_json(
        &northstar(
            &b,
            &carol_key,
            &["space", "import", with_beams.to_str().unwrap(), "--json"],
        )
        .await,
    );
    assert_eq!(again["events"], json!(0));
    assert_eq!(again["beams"], json!(0));
    assert_eq!(log_of(&b, &space).await, original);

    // Without beams, into C: the same log, and no beam.
    let run = northstar(&c, &dave_key, &["space", "import", plain.to_str().unwrap()]).await;
    assert!(run.ok, "{}", run.stderr);
    assert!(
        run.stdout.contains("7 new events, 0 new beams"),
        "{}",
        run.stdout
    );
    // Not a terminal: plain progress lines on stderr.
    assert!(
        run.stderr.contains("verifying: 7/7 events"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("importing: 7/7 events"),
        "{}",
        run.stderr
    );
    assert_eq!(log_of(&c, &space).await, original);
    // A page over the node's max_page is refused whole.
    let mut raw = Raw::connect(&c.url).await;
    raw.authenticate(&Keypair::generate().unwrap()).await;
    let entries = entries(&lines(&plain));
    let (code, message) = raw
        .err(method::SPACE_IMPORT, json!([space.as_str(), entries[..3]]))
        .await;
    assert_eq!(code, i64::from(ErrorCode::TooLarge.code()), "{message}");
    let on_c = Client::connect_anonymous(&c.url).await.unwrap();
    let first = beam_paths(&events_a)[0];
    assert!(matches!(
        on_c.get_beam(&first).await,
        Err(SdkError::Node {
            code: NodeCode::App(ErrorCode::BeamNotFound),
            ..
        })
    ));
}

/// The lines of an export file.
fn lines(file: &Path) -> Vec<String> {
    std::fs::read_to_string(file)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn write_lines(file: &Path, lines: &[String]) {
    std::fs::write(file, lines.join("\n") + "\n").unwrap();
}

/// Line `line` of an export (the entry of event `line - 1`) with its event changed by `edit`.
fn edit_event(lines: &mut [String], line: usize, edit: impl FnOnce(&mut Value)) {
    let mut entry: Value = serde_json::from_str(&lines[line - 1]).unwrap();
    edit(&mut entry["event"]);
    lines[line - 1] = entry.to_string();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_export_is_refused_at_its_first_bad_event_and_nothing_is_stored() {
    let (a, b) = (TestNode::start().await, TestNode::start().await);
    let dir = tempfile::tempdir().unwrap();
    let (alice_key, _, alice) = user(&a, dir.path(), "alice").await;
    let (_, _, bob) = user(&a, dir.path(), "bob").await;
    let (carol_key, _, _) = user(&b, dir.path(), "carol").await;
    let space = busy_channel(&alice, &bob).await;
    let file = dir.path().join("export.jsonl");
    export_with_beams(&a, &alice_key, &space, &file).await;
    let good = lines(&file);
    assert_eq!(good.len(), 8, "a header and seven events");

    // One byte of event 4's body: its author's signature no longer covers it.
    let mut body = good.clone();
    let text = &body[4];
    let at = text.find("\"nonce\":\"").unwrap() + "\"nonce\":\"".len();
    let flipped = if &text[at..=at] == "a" { "b" } else { "a" };
    body[4] = format!("{}{flipped}{}", &text[..at], &text[at + 1..]);
    // Event 5 dropped from the middle.
    let mut dropped = good.clone();
    dropped.remove(5);
    // Event 6's sequencer signature swapped for event 7's.
    let mut signature = good.clone();
    let sig7: Value = serde_json::from_str::<Value>(&good[7]).unwrap()["event"]["sig"].clone();
    edit_event(&mut signature, 7, |e| e["sig"] = sig7);

    for (name, tampered, line, seq) in [
        ("body", body, 5, 4),
        ("dropped", dropped, 6, 6),
        ("signature", signature, 7, 6),
    ] {
        let path = dir.path().join(format!("{name}.jsonl"));
        write_lines(&path, &tampered);
        let run = northstar(&b, &carol_key, &["space", "import", path.to_str().unwrap()]).await;
        assert!(!run.ok, "{name}: the import should fail");
        let at = format!("line {line} (event {seq})");
        assert!(run.stderr.contains(&at), "{name}: {at} in {}", run.stderr);
        assert!(
            run.stderr.contains("nothing was sent"),
            "{name}: {}",
            run.stderr
        );
        assert!(
            !holds(&b, &space).await,
            "{name}: B holds nothing of the space"
        );

        // With --json, the error is one JSON object on stderr and stdout stays empty.
        let run = northstar(
            &b,
            &carol_key,
            &["space", "import", path.to_str().unwrap(), "--json"],
        )
        .await;
        assert!(!run.ok && run.stdout.is_empty(), "{name}: {}", run.stdout);
        let error: Value = serde_json::from_str(run.stderr.trim()).unwrap();
        assert!(
            error["error"].as_str().unwrap().contains(&at),
            "{name}: {error}"
        );
    }
    // The dropped file says what it expected.
    let path = dir.path().join("dropped.jsonl");
    let run = northstar(&b, &carol_key, &["space", "import", path.to_str().unwrap()]).await;
    assert!(
        run.stderr.contains("expected seq 5, got 6"),
        "{}",
        run.stderr
    );
    assert!(!holds(&b, &space).await);

    // The untouched file still goes in.
    let run = northstar(&b, &carol_key, &["space", "import", file.to_str().unwrap()]).await;
    assert!(run.ok, "{}", run.stderr);
    assert_eq!(log_of(&b, &space).await, log_of(&a, &space).await);
}

/// The entries of an export file as `space.import` takes them.
fn entries(lines: &[String]) -> Vec<Value> {
    lines[1..]
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_checks_an_import_page_itself_and_stores_all_of_it_or_nothing() {
    let (a, b) = (TestNode::start().await, TestNode::start().await);
    let dir = tempfile::tempdir().unwrap();
    let (alice_key, _, alice) = user(&a, dir.path(), "alice").await;
    let (_, _, bob) = user(&a, dir.path(), "bob").await;
    let (_, carol, _) = user(&b, dir.path(), "carol").await;
    let space = busy_channel(&alice, &bob).await;
    let file = dir.path().join("export.jsonl");
    export_with_beams(&a, &alice_key, &space, &file).await;
    let good = entries(&lines(&file));

    // Anonymous callers may not import.
    let mut anonymous = Raw::connect(&b.url).await;
    let (code, _) = anonymous
        .err(method::SPACE_IMPORT, json!([space.as_str(), good]))
        .await;
    assert_eq!(code, i64::from(ErrorCode::AuthRequired.code()));

    let mut raw = Raw::connect(&b.url).await;
    raw.authenticate(&carol).await;
    // Entry 2 (event 3) with event 4's signature: refused whole, naming it.
    let mut forged = good.clone();
    forged[2]["event"]["sig"] = good[3]["event"]["sig"].clone();
    let (code, message) = raw
        .err(method::SPACE_IMPORT, json!([space.as_str(), forged]))
        .await;
    assert_eq!(code, i64::from(ErrorCode::InvalidLog.code()), "{message}");
    assert!(message.contains("entry 2 (event 3)"), "{message}");
    assert!(
        !holds(&b, &space).await,
        "nothing of a refused page is stored"
    );

    // A first page that does not start at the genesis.
    let (code, message) = raw
        .err(method::SPACE_IMPORT, json!([space.as_str(), good[1..3]]))
        .await;
    assert_eq!(code, i64::from(ErrorCode::InvalidLog.code()), "{message}");
    assert!(message.contains("entry 0 (event 2)"), "{message}");
    assert!(!holds(&b, &space).await);

    // A good first page, then a page with a hole: the first stays, the second leaves nothing.
    let done = raw
        .ok(method::SPACE_IMPORT, json!([space.as_str(), good[..3]]))
        .await;
    assert_eq!(done["events"], json!(3));
    assert_eq!(done["head_seq"], json!(3));
    let hole = vec![good[3].clone(), good[5].clone(), good[6].clone()];
    let (code, message) = raw
        .err(method::SPACE_IMPORT, json!([space.as_str(), hole]))
        .await;
    assert_eq!(code, i64::from(ErrorCode::InvalidLog.code()), "{message}");
    assert!(message.contains("entry 1 (event 6)"), "{message}");
    let on_b = Client::connect_anonymous(&b.url).await.unwrap();
    assert_eq!(on_b.get_space(&space).await.unwrap().head_seq, 3);

    // A rival event 3, validly signed by the sequencer's key: a fork, refused with its place.
    let mut rival: Event = serde_json::from_value(good[2]["event"].clone()).unwrap();
    rival = Event::sequence(
        &a.key(),
        rival.space,
        rival.seq,
        rival.prev,
        rival.timestamp + 1,
        rival.payload,
    )
    .unwrap();
    let page = json!([{"event": rival}, good[3], good[4]]);
    let (code, message) = raw
        .err(method::SPACE_IMPORT, json!([space.as_str(), page]))
        .await;
    assert_eq!(code, i64::from(ErrorCode::LogFork.code()), "{message}");
    assert!(message.contains("entry 0 (event 3)"), "{message}");
    assert_eq!(on_b.get_space(&space).await.unwrap().head_seq, 3);

    // The rest, overlapping what is held, goes in.
    let done = raw
        .ok(method::SPACE_IMPORT, json!([space.as_str(), good[2..]]))
        .await;
    assert_eq!(done["events"], json!(4));
    assert_eq!(done["head_seq"], json!(7));
    assert_eq!(log_of(&b, &space).await, log_of(&a, &space).await);

    // The sequencer itself takes its own log (nothing new) but not a diverging one.
    let mut at_a = Raw::connect(&a.url).await;
    at_a.authenticate(&Keypair::generate().unwrap()).await;
    let done = at_a
        .ok(method::SPACE_IMPORT, json!([space.as_str(), good]))
        .await;
    assert_eq!(done["events"], json!(0));
    let (code, message) = at_a
        .err(method::SPACE_IMPORT, json!([space.as_str(), page]))
        .await;
    assert_eq!(code, i64::from(ErrorCode::LogFork.code()), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_member_of_a_dm_may_import_it() {
    let (a, b) = (TestNode::start().await, TestNode::start().await);
    let dir = tempfile::tempdir().unwrap();
    let (alice_key, _, alice) = user(&a, dir.path(), "alice").await;
    let (bob_key, bob, bob_on_b) = user(&b, dir.path(), "bob").await;
    let dm = alice
        .create_space(SpaceType::Dm, "pair", "Pair")
        .await
        .unwrap()
        .space;
    alice.post(&dm, "secret", "for members").await.unwrap();
    alice.invite(&dm, bob.did()).await.unwrap();
    let uri = alice.space_uri(&dm);
    bob_on_b.join(&uri).await.unwrap();
    alice.post(&dm, "later", "after the join").await.unwrap();
    let file = dir.path().join("dm.jsonl");
    export_with_beams(&a, &alice_key, &dm, &file).await;

    // Carol is no member: refused, nothing stored.
    let c = TestNode::start().await;
    let (carol_c_key, _, _) = user(&c, dir.path(), "carol-c").await;
    let run = northstar(
        &c,
        &carol_c_key,
        &["space", "import", file.to_str().unwrap(), "--json"],
    )
    .await;
    assert!(!run.ok);
    let error: Value = serde_json::from_str(run.stderr.trim()).unwrap();
    assert_eq!(error["name"], json!("not_member"), "{error}");
    // Bob is one: his node takes it (it holds a replica already, so only what is new).
    let run = northstar(
        &b,
        &bob_key,
        &["space", "import", file.to_str().unwrap(), "--json"],
    )
    .await;
    let done = one_json(&run);
    assert_eq!(done["head_seq"], json!(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edited_beams_versions_travel_with_the_export() {
    let (a, b) = (TestNode::start().await, TestNode::start().await);
    let dir = tempfile::tempdir().unwrap();
    let (alice_key, _, alice) = user(&a, dir.path(), "alice").await;
    let (carol_key, _, _) = user(&b, dir.path(), "carol").await;
    let space = alice
        .create_space(SpaceType::Channel, "notes", "Notes")
        .await
        .unwrap()
        .space;
    let posted = alice.post(&space, "note", "version 0").await.unwrap();
    let original = northstar_sdk::parse_beam(&posted.beam_uri).unwrap();
    alice
        .edit_beam(&original, "note", "version 1", false)
        .await
        .unwrap();
    alice
        .edit_beam(&original, "note", "version 2", false)
        .await
        .unwrap();

    let file = dir.path().join("notes.jsonl");
    let exported = export_with_beams(&a, &alice_key, &space, &file).await;
    // The genesis, the ref and two edits; the original and both versions.
    assert_eq!(exported["events"], json!(4));
    assert_eq!(exported["beams"], json!(3));
    let imported = one_json(
        &northstar(
            &b,
            &carol_key,
            &["space", "import", file.to_str().unwrap(), "--json"],
        )
        .await,
    );
    assert_eq!(imported["events"], json!(4));
    assert_eq!(imported["beams"], json!(3));

    // B answers from what it holds (no home is named), checked by the SDK.
    let on_b = Client::connect_anonymous(&b.url).await.unwrap();
    let history = on_b.beam_history(&original).await.unwrap();
    let bodies: Vec<&str> = history
        .versions
        .iter()
        .map(|v| v.beam.body.as_str())
        .collect();
    assert_eq!(bodies, ["version 0", "version 1", "version 2"]);
    assert_eq!(
        on_b.current_beam(&original).await.unwrap().body,
        "version 2"
    );
}
