//! The README's walk-through, run as a newcomer runs it: `northstar serve` in one process, and
//! the CLI in others: two keys, a channel, a join, a post, the log, a tail, a beam, a clean stop.

mod serve;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;

use serde_json::Value;

use serve::{Serve, WAIT, json_lines, new_key, northstar, one, run};

#[test]
fn newcomer_walk_through() {
    let dir = tempfile::tempdir().unwrap();
    let node = Serve::start(&dir.path().join("node"), &[]);
    let (alice, bob) = (new_key(dir.path(), "alice"), new_key(dir.path(), "bob"));

    let info = one(&run(&node, &alice, &["node", "info", "--json"]));
    assert!(info["did"].as_str().unwrap().starts_with("did:key:z6Mk"));

    let created = one(&run(
        &node,
        &alice,
        &[
            "space", "create", "--type", "channel", "--name", "General", "--id", "general",
            "--json",
        ],
    ));
    let (space, uri) = (
        created["id"].as_str().unwrap(),
        created["uri"].as_str().unwrap(),
    );
    assert!(
        uri.starts_with("northstar://") && uri.ends_with(space),
        "{uri}"
    );

    // Bob tails the channel from the start while he joins and posts.
    let mut tail = northstar()
        .args(["--node", &node.url, "--key"])
        .arg(&bob)
        .args(["space", "tail", space, "--json"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    one(&run(&node, &bob, &["space", "join", uri, "--json"]));
    let posted = one(&run(
        &node,
        &bob,
        &[
            "beam", "post", space, "--title", "Hello", "--body", "from bob", "--json",
        ],
    ));
    assert_eq!(posted["seq"], 3);
    let beam_uri = posted["beam_uri"].as_str().unwrap().to_owned();
    assert!(posted["event_id"].as_str().unwrap().starts_with('b'));

    let (tx, rx) = mpsc::channel();
    let stdout = tail.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut kinds = Vec::new();
    while kinds.len() < 3 {
        let line = rx.recv_timeout(WAIT).expect("tail printed nothing");
        let event: Value = serde_json::from_str(&line).unwrap();
        for key in ["id", "seq", "kind", "author"] {
            assert!(event.get(key).is_some(), "tail line lacks {key}: {line}");
        }
        kinds.push(event["kind"].as_str().unwrap().to_owned());
    }
    assert_eq!(kinds, ["create", "join", "beam"]);
    let _ = tail.kill();
    let _ = tail.wait();

    let events = json_lines(&run(
        &node,
        &alice,
        &["space", "events", space, "--since", "1", "--json"],
    ));
    let seqs: Vec<_> = events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, [2, 3]);
    // The post comes with its beam inline; the join has none.
    assert_eq!(
        (events[1]["title"].as_str(), events[1]["body"].as_str()),
        (Some("Hello"), Some("from bob"))
    );
    assert!(events[0].get("title").is_none());

    let listed = json_lines(&run(&node, &bob, &["space", "list", "--json"]));
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["id"], created["id"]);
    assert_eq!(listed[0]["uri"], created["uri"]);
    assert_eq!(listed[0]["type"], "channel");

    let beam = one(&run(&node, &alice, &["beam", "get", &beam_uri, "--json"]));
    assert_eq!(
        (beam["title"].as_str(), beam["body"].as_str()),
        (Some("Hello"), Some("from bob"))
    );

    // A refusal is one line on stderr and a non-zero exit.
    let created_dm = one(&run(
        &node,
        &alice,
        &[
            "space", "create", "--type", "dm", "--name", "Private", "--id", "private", "--json",
        ],
    ));
    let refused = run(
        &node,
        &bob,
        &["space", "join", created_dm["uri"].as_str().unwrap()],
    );
    assert!(!refused.status.success());
    let err = String::from_utf8(refused.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("invite"), "{err}");
    // With --json the refusal is one JSON object on stderr, with the node's code and its name.
    let refused = run(
        &node,
        &bob,
        &[
            "space",
            "join",
            created_dm["uri"].as_str().unwrap(),
            "--json",
        ],
    );
    assert!(!refused.status.success());
    assert!(refused.stdout.is_empty());
    let err: Value = serde_json::from_slice(&refused.stderr).unwrap();
    assert_eq!(err["name"], "invite_required", "{err}");
    assert!(err["code"].is_i64(), "{err}");
    assert!(err["error"].as_str().unwrap().contains("invite"), "{err}");

    // The owner removes Bob from the channel, then bans him: he cannot join again.
    let bob_did = one(&run(&node, &bob, &["key", "show", "--json"]))["did"]
        .as_str()
        .unwrap()
        .to_owned();
    let channel = created["id"].as_str().unwrap();
    let kicked = one(&run(
        &node,
        &alice,
        &["space", "kick", channel, &bob_did, "--json"],
    ));
    assert_eq!(kicked["space"], created["id"]);
    let members = json_lines(&run(
        &node,
        &alice,
        &["space", "members", channel, "--json"],
    ));
    assert!(
        !members
            .iter()
            .any(|m| m["did"] == bob_did.as_str() && m["state"] == "member"),
        "{members:?}"
    );
    one(&run(
        &node,
        &alice,
        &["space", "ban", channel, &bob_did, "--json"],
    ));
    let again = run(
        &node,
        &bob,
        &["space", "join", created["uri"].as_str().unwrap(), "--json"],
    );
    assert!(!again.status.success());
    let err: Value = serde_json::from_slice(&again.stderr).unwrap();
    assert_eq!(err["name"], "banned", "{err}");

    one(&run(&node, &bob, &["beam", "delete", &beam_uri, "--json"]));
    let gone = run(&node, &alice, &["beam", "get", &beam_uri]);
    assert!(!gone.status.success());

    // SIGTERM: the node stops cleanly and says so.
    let pid = node.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    node.wait_for_log("node stopped");
}

#[test]
fn the_cli_joins_and_posts_through_another_node() {
    let dir = tempfile::tempdir().unwrap();
    let a = Serve::start(&dir.path().join("a"), &[]);
    let b = Serve::start(&dir.path().join("b"), &[]);
    let (alice, bob) = (new_key(dir.path(), "alice"), new_key(dir.path(), "bob"));
    let created = one(&run(
        &a,
        &alice,
        &[
            "space", "create", "--type", "channel", "--name", "Hub", "--id", "hub", "--json",
        ],
    ));
    let (space, uri) = (
        created["id"].as_str().unwrap(),
        created["uri"].as_str().unwrap(),
    );
    // Bob's home is node B; the URI names node A, the sequencer.
    assert_eq!(
        one(&run(&b, &bob, &["space", "join", uri, "--json"]))["seq"],
        2
    );
    let posted = one(&run(
        &b,
        &bob,
        &[
            "beam", "post", space, "--title", "Hi", "--body", "from b", "--json",
        ],
    ));
    let beam_uri = posted["beam_uri"].as_str().unwrap().to_owned();
    // Alice, on node A, sees the post and fetches the beam from Bob's node through hers.
    let events = json_lines(&run(&a, &alice, &["space", "events", space, "--json"]));
    assert_eq!(events.last().unwrap()["kind"], "beam");
    let beam = one(&run(&a, &alice, &["beam", "get", &beam_uri, "--json"]));
    assert_eq!(beam["body"], "from b");

    // The owner sees node B at the head; Bob deletes his beam and sees both nodes drop it.
    let health = until_json(
        || run(&a, &alice, &["space", "health", space, "--json"]),
        |h| h["nodes"] == 1 && h["at_head"] == 1,
    );
    assert_eq!(health["members"][0]["hops"], 1, "{health}");
    run(&b, &bob, &["beam", "delete", &beam_uri, "--json"]);
    let receipts = until_json(
        || run(&b, &bob, &["beam", "receipts", &beam_uri, "--json"]),
        |r| r["applied"] == 2,
    );
    assert_eq!(receipts["nodes"], 2, "{receipts}");
    assert_eq!(receipts["spaces"][0]["space"], space, "{receipts}");
}

/// Run `command` until its one JSON line satisfies `done` (for at most [`WAIT`]); that line.
fn until_json(command: impl Fn() -> std::process::Output, done: impl Fn(&Value) -> bool) -> Value {
    let start = std::time::Instant::now();
    loop {
        let value = one(&command());
        if done(&value) {
            return value;
        }
        assert!(start.elapsed() < WAIT, "never reached: {value}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

#[test]
fn a_second_node_on_the_same_data_directory_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("node");
    let first = Serve::start(&data, &[]);
    let alice = new_key(dir.path(), "alice");

    let second = northstar()
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    assert!(!second.status.success(), "the second node started");
    let err = String::from_utf8(second.stderr).unwrap();
    assert!(err.contains("in use by another northstar node"), "{err}");
    let first_port = first.url.rsplit(':').next().unwrap();
    assert!(
        err.contains(&format!("pid {}", first.child.id())) && err.contains(first_port),
        "the message names the first node: {err}"
    );

    // The first keeps serving, with its database intact.
    let created = one(&run(
        &first,
        &alice,
        &[
            "space", "create", "--type", "channel", "--name", "Still", "--id", "still", "--json",
        ],
    ));
    assert_eq!(
        created["id"].as_str().unwrap().rsplit('/').next(),
        Some("still")
    );

    // Data directory 0700, database and WAL 0600: they hold the node key and private logs.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&data), 0o700);
        for file in ["northstar.db", "northstar.db-wal", "node.key.json"] {
            assert_eq!(mode(&data.join(file)), 0o600, "{file}");
        }
    }
}

#[test]
fn json_logs_are_one_object_per_line_and_the_ready_line_names_the_version() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = northstar()
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("node"))
        .env("NORTHSTAR_LOG_FORMAT", "json")
        // A misspelt key: ignored, but said so.
        .env("NORTHSTAR_FANOUTS", "4")
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    let ready = loop {
        let line = lines
            .recv_timeout(WAIT)
            .expect("a log line before the node is ready");
        let object: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("a log line that is not JSON ({e}): {line}"));
        seen.push(line);
        if object["fields"]["message"] == "node ready" {
            break object;
        }
    };
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(ready["level"], "INFO", "{ready}");
    assert_eq!(
        ready["fields"]["version"],
        env!("CARGO_PKG_VERSION"),
        "{ready}"
    );
    assert_eq!(
        ready["fields"]["protocol"],
        northstar_protocol::PROTOCOL_VERSION
    );
    assert!(
        ready["fields"]["public_url"]
            .as_str()
            .is_some_and(|u| u.starts_with("ws://127.0.0.1:")),
        "{ready}"
    );
    // The lines before it (the key created, the database opened) are JSON too.
    assert!(seen.len() >= 2, "{seen:?}");
    let warned = seen
        .iter()
        .map(|line| serde_json::from_str::<Value>(line).unwrap())
        .any(|o| o["level"] == "WARN" && o["fields"]["variable"] == "NORTHSTAR_FANOUTS");
    assert!(warned, "no warning names NORTHSTAR_FANOUTS: {seen:?}");
}

#[test]
fn an_unknown_log_format_stops_serve_naming_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    let out = northstar()
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("node"))
        .env("NORTHSTAR_LOG_FORMAT", "xml")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("from NORTHSTAR_LOG_FORMAT"), "{err}");
    assert!(err.contains("`xml`") && err.contains("`json`"), "{err}");
}

#[test]
fn a_backup_taken_while_the_node_runs_restores_the_node_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("node");
    let node = Serve::start(&data, &[]);
    let alice = new_key(dir.path(), "alice");
    let created = one(&run(
        &node,
        &alice,
        &[
            "space", "create", "--type", "channel", "--name", "Kept", "--id", "kept", "--json",
        ],
    ));
    let space = created["id"].as_str().unwrap();
    for title in ["one", "two"] {
        one(&run(
            &node,
            &alice,
            &[
                "beam", "post", space, "--title", title, "--body", "b", "--json",
            ],
        ));
    }
    let info = one(&run(&node, &alice, &["node", "info", "--json"]));

    // Taken while the node serves.
    let file = dir.path().join("backup.db");
    let backup = |file: &Path| {
        northstar()
            .args(["admin", "backup"])
            .arg(file)
            .arg("--data-dir")
            .arg(&data)
            .arg("--json")
            .output()
            .unwrap()
    };
    let taken = backup(&file);
    assert!(taken.status.success(), "{taken:?}");
    let taken: Value = serde_json::from_slice(&taken.stdout).unwrap();
    assert_eq!(taken["events"], 3, "{taken}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    // A file that exists is never overwritten.
    let again = backup(&file);
    assert!(!again.status.success());
    let err: Value = serde_json::from_slice(&again.stderr).unwrap();
    assert!(
        err["error"].as_str().unwrap().contains("backup.db"),
        "{err}"
    );

    // Written after the backup: not in it.
    one(&run(
        &node,
        &alice,
        &[
            "beam", "post", space, "--title", "three", "--body", "b", "--json",
        ],
    ));
    drop(node);

    // Restored: the snapshot beside the node's key is the node as it was.
    let restored = dir.path().join("restored");
    std::fs::create_dir(&restored).unwrap();
    std::fs::copy(data.join("node.key.json"), restored.join("node.key.json")).unwrap();
    std::fs::copy(&file, restored.join("northstar.db")).unwrap();
    let node = Serve::start(&restored, &[]);
    let info_after = one(&run(&node, &alice, &["node", "info", "--json"]));
    assert_eq!(info_after["did"], info["did"]);
    let events = json_lines(&run(&node, &alice, &["space", "events", space, "--json"]));
    let seqs: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, [1, 2, 3]);
}

#[test]
fn the_cli_config_file_names_the_default_node_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let node = Serve::start(&dir.path().join("node"), &[]);
    let alice = new_key(dir.path(), "alice");
    let config = dir.path().join("cli.toml");
    std::fs::write(
        &config,
        format!(
            "node = {:?}\nkey = {:?}\n",
            node.url,
            alice.display().to_string()
        ),
    )
    .unwrap();
    let with_config = |args: &[&str]| {
        northstar()
            .args(args)
            .env("NORTHSTAR_CLI_CONFIG", &config)
            .output()
            .unwrap()
    };
    // No --node and no --key: both come from the file.
    let created = one(&with_config(&[
        "space", "create", "--type", "channel", "--name", "Cfg", "--id", "cfg", "--json",
    ]));
    let alice_did = one(&run(&node, &alice, &["key", "show", "--json"]))["did"].clone();
    let spaces = json_lines(&with_config(&["space", "list", "--json"]));
    assert_eq!(spaces[0]["id"], created["id"]);
    assert_eq!(spaces[0]["owner"], alice_did);
    // A flag still wins: another node URL that nothing listens on fails.
    let elsewhere = with_config(&["--node", "ws://127.0.0.1:1", "node", "info"]);
    assert!(!elsewhere.status.success());
}
