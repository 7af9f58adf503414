//! `northstar admin` against running nodes: the admin socket in the data directory (mode 0600,
//! refused to other users), and each command through the real binary: users, allow and deny
//! at runtime, a node-wide ban (sessions, handshakes and federation submissions), a beam
//! removed on its home node and on the node that sequences its space, a space removed (a replica,
//! and a sequenced space whose member node is told), stats, and malformed request lines.
//!
//! These run `northstar serve` children (the binary is only reachable from this crate's tests,
//! hence here rather than in `tests/`).

mod serve;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;

use serde_json::Value;

use serve::{Serve, WAIT, json_lines, new_key, northstar, one, run};

/// `northstar --json admin ARGS… --data-dir DIR`.
fn admin(data: &Path, args: &[&str]) -> Output {
    northstar()
        .arg("--json")
        .arg("admin")
        .args(args)
        .arg("--data-dir")
        .arg(data)
        .output()
        .unwrap()
}

/// The result of a successful admin command.
fn admin_ok(data: &Path, args: &[&str]) -> Value {
    one(&admin(data, args))
}

/// The error object of a failed command (`--json` prints it on stderr).
fn refusal(out: &Output) -> Value {
    assert!(!out.status.success(), "the command succeeded");
    serde_json::from_slice(&out.stderr).unwrap_or_else(|_| {
        panic!(
            "stderr is not one JSON object: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn did_of(key: &Path) -> String {
    one(&northstar()
        .args(["--json", "key", "show"])
        .arg(key)
        .output()
        .unwrap())["did"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn create_channel(node: &Serve, key: &Path, id: &str) -> Output {
    run(
        node,
        key,
        &[
            "space", "create", "--type", "channel", "--name", id, "--id", id, "--json",
        ],
    )
}

fn user<'a>(users: &'a Value, did: &str) -> &'a Value {
    users["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["did"] == did)
        .unwrap_or_else(|| panic!("{did} is not listed: {users}"))
}

/// One request line on the socket, and the answer line.
fn exchange(stream: &mut UnixStream, reader: &mut BufReader<UnixStream>, line: &[u8]) -> Value {
    stream.write_all(line).unwrap();
    let mut answer = String::new();
    reader.read_line(&mut answer).unwrap();
    serde_json::from_str(&answer).unwrap_or_else(|_| panic!("not JSON: {answer:?}"))
}

#[test]
fn the_socket_is_private_and_allow_and_deny_apply_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("node");
    let node = Serve::start_with_env(
        &data,
        &[],
        &[("NORTHSTAR_REGISTRATION_POLICY", "allow_list")],
    );
    let socket = data.join("admin.sock");
    let meta = std::fs::metadata(&socket).unwrap();
    assert!(std::os::unix::fs::FileTypeExt::is_socket(&meta.file_type()));
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);

    let alice = new_key(dir.path(), "alice");
    let did = did_of(&alice);
    // Not on the allow-list: refused at authentication.
    let refused = refusal(&create_channel(&node, &alice, "before"));
    assert_eq!(refused["name"], "not_allowed", "{refused}");

    // Allowed at runtime: the same client authenticates, the node still running.
    let allowed = admin_ok(&data, &["allow", &did]);
    assert_eq!(allowed["allowed"], true);
    assert_eq!(allowed["policy"], "allow_list");
    one(&create_channel(&node, &alice, "after"));
    let users = admin_ok(&data, &["users"]);
    let listed = user(&users, &did);
    assert_eq!(listed["allowed"], true);
    assert_eq!(listed["allowed_by"], "operator");
    assert_eq!(listed["banned"], false);
    assert!(listed["last_seen"].as_u64().is_some(), "{listed}");

    // Denied again: refused again.
    assert_eq!(admin_ok(&data, &["deny", &did])["allowed"], false);
    let refused = refusal(&create_channel(&node, &alice, "denied"));
    assert_eq!(refused["name"], "not_allowed", "{refused}");
    assert_eq!(user(&admin_ok(&data, &["users"]), &did)["allowed"], false);

    // The decision is in the database: after a restart, allowed again and then still allowed.
    admin_ok(&data, &["allow", &did]);
    drop(node);
    let node = Serve::start_with_env(
        &data,
        &[],
        &[("NORTHSTAR_REGISTRATION_POLICY", "allow_list")],
    );
    one(&create_channel(&node, &alice, "restarted"));

    // A bad DID is the node's clear refusal, with its code.
    let bad = refusal(&admin(&data, &["ban", "did:key:nope"]));
    assert_eq!(bad["name"], "malformed_did", "{bad}");
}

#[test]
fn a_ban_closes_open_sessions_and_refuses_the_did_until_lifted() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("node");
    let node = Serve::start(&data, &[]);
    let alice = new_key(dir.path(), "alice");
    let did = did_of(&alice);
    let created = one(&create_channel(&node, &alice, "hall"));
    let space = created["id"].as_str().unwrap();

    // An authenticated session that stays open: a tail from the start.
    let mut tail = northstar()
        .args(["--node", &node.url, "--key"])
        .arg(&alice)
        .args(["space", "tail", space, "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(tail.stdout.take().unwrap()).lines();
    let first: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(first["kind"], "create");

    let banned = admin_ok(&data, &["ban", &did]);
    assert_eq!(banned["banned"], true);
    assert!(banned["closed"].as_u64().unwrap() >= 1, "{banned}");
    // The tail's connection was closed: it ends.
    let (done, ended) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(tail.wait());
    });
    ended
        .recv_timeout(WAIT)
        .expect("the banned session stayed open")
        .unwrap();

    let refused = refusal(&create_channel(&node, &alice, "again"));
    assert_eq!(refused["name"], "banned", "{refused}");
    assert!(
        refused["error"]
            .as_str()
            .unwrap()
            .contains("banned from this node"),
        "{refused}"
    );
    assert_eq!(user(&admin_ok(&data, &["users"]), &did)["banned"], true);

    let lifted = admin_ok(&data, &["unban", &did]);
    assert_eq!(lifted["was_banned"], true);
    one(&create_channel(&node, &alice, "again"));
}

#[test]
fn remove_beam_deletes_it_on_its_home_node_and_on_the_sequencer_of_its_space() {
    let dir = tempfile::tempdir().unwrap();
    let a = Serve::start(&dir.path().join("a"), &[]);
    let b_data = dir.path().join("b");
    let b = Serve::start(&b_data, &[]);
    let (alice, bob) = (new_key(dir.path(), "alice"), new_key(dir.path(), "bob"));
    let created = one(&create_channel(&a, &alice, "hub"));
    let (space, uri) = (
        created["id"].as_str().unwrap(),
        created["uri"].as_str().unwrap(),
    );
    // Bob's home is B; the space lives on A. His beam is stored on B, its ref in A's log.
    one(&run(&b, &bob, &["space", "join", uri, "--json"]));
    let posted = one(&run(
        &b,
        &bob,
        &[
            "beam",
            "post",
            space,
            "--title",
            "Spam",
            "--body",
            "against the rules",
            "--json",
        ],
    ));
    let beam_uri = posted["beam_uri"].as_str().unwrap().to_owned();
    // A has it too now, fetched from B and cached.
    assert_eq!(
        one(&run(&a, &alice, &["beam", "get", &beam_uri, "--json"]))["body"],
        "against the rules"
    );

    // B's operator removes it.
    let removed = admin_ok(&b_data, &["remove-beam", &beam_uri]);
    assert_eq!(
        removed["tombstones"].as_array().unwrap().len(),
        1,
        "{removed}"
    );

    for (node, key) in [(&b, &bob), (&a, &alice)] {
        let gone = refusal(&run(node, key, &["beam", "get", &beam_uri, "--json"]));
        assert_eq!(gone["name"], "beam_not_found", "{gone}");
    }
    // A's log ends with the tombstone, signed by B.
    let events = json_lines(&run(&a, &alice, &["space", "events", space, "--json"]));
    assert_eq!(events.last().unwrap()["kind"], "tombstone");
    let b_did = one(&northstar()
        .args(["--json", "--node", &b.url, "node", "info"])
        .output()
        .unwrap())["did"]
        .clone();
    let last = events.last().unwrap();
    assert_eq!(last["author"], did_of(&bob), "{last}");
    assert_eq!(last["removed_by"], b_did, "{last}");

    // Removing it again: not found, clearly.
    let again = refusal(&admin(&b_data, &["remove-beam", &beam_uri]));
    assert_eq!(again["name"], "beam_not_found", "{again}");
}

#[test]
fn stats_count_what_the_node_holds() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("node");
    let node = Serve::start(&data, &[]);
    let (alice, bob) = (new_key(dir.path(), "alice"), new_key(dir.path(), "bob"));
    let created = one(&create_channel(&node, &alice, "one"));
    one(&create_channel(&node, &bob, "two"));
    one(&run(
        &node,
        &bob,
        &["space", "join", created["uri"].as_str().unwrap(), "--json"],
    ));
    let mut tail = northstar()
        .args(["--node", &node.url, "--key"])
        .arg(&alice)
        .args(["space", "tail", created["id"].as_str().unwrap(), "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(tail.stdout.take().unwrap()).lines();
    lines.next().unwrap().unwrap();

    let stats = admin_ok(&data, &["stats"]);
    assert_eq!(stats["spaces_sequenced"], 2, "{stats}");
    assert_eq!(stats["spaces_replicated"], 0, "{stats}");
    assert_eq!(stats["users"], 2, "{stats}");
    assert_eq!(stats["known_users"], 2, "{stats}");
    // The tail's connection at least; others may still be closing.
    assert!(stats["connections"].as_i64().unwrap() >= 1, "{stats}");
    assert_eq!(stats["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(stats["database"]["backend"], "sqlite");
    let on_disk = std::fs::metadata(data.join("northstar.db")).unwrap().len();
    assert!(
        stats["database"]["bytes"].as_u64().unwrap() >= on_disk,
        "{stats}"
    );
    let info = one(&northstar()
        .args(["--json", "--node", &node.url, "node", "info"])
        .output()
        .unwrap());
    assert_eq!(stats["node"], info["did"]);
    let _ = tail.kill();
    let _ = tail.wait();

    // Text output for people, too.
    let text = northstar()
        .args(["admin", "stats", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(text.status.success());
    assert!(String::from_utf8_lossy(&text.stdout).contains("2 sequenced"));
}

#[test]
fn a_malformed_line_gets_an_error_and_the_node_stays_up() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("node");
    let node = Serve::start(&data, &[]);
    let socket = data.join("admin.sock");
    let mut stream = UnixStream::connect(&socket).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());

    let answer = exchange(&mut stream, &mut reader, b"{not json\n");
    assert_eq!(answer["error"]["code"], -32700, "{answer}");
    let answer = exchange(&mut stream, &mut reader, b"[1, 2]\n");
    assert_eq!(answer["error"]["code"], -32600, "{answer}");
    let answer = exchange(
        &mut stream,
        &mut reader,
        b"{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"admin.nothing\"}\n",
    );
    assert_eq!(answer["error"]["code"], -32601, "{answer}");
    assert_eq!(answer["id"], 7);
    let answer = exchange(
        &mut stream,
        &mut reader,
        b"{\"jsonrpc\":\"2.0\",\"id\":8,\"method\":\"admin.ban\",\"params\":{\"who\":1}}\n",
    );
    assert_eq!(answer["error"]["code"], -32602, "{answer}");
    // The same connection still answers.
    let answer = exchange(
        &mut stream,
        &mut reader,
        b"{\"jsonrpc\":\"2.0\",\"id\":9,\"method\":\"admin.stats\"}\n",
    );
    assert_eq!(answer["id"], 9);
    assert!(answer["result"]["uptime_secs"].is_u64(), "{answer}");

    // A line past the limit: an error, and that connection is closed.
    let long = vec![b'x'; 70 * 1024];
    stream.write_all(&long).unwrap();
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    let answer: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(answer["error"]["code"], -32600, "{answer}");
    line.clear();
    assert_eq!(reader.read_line(&mut line).unwrap_or(0), 0, "{line}");

    // The node serves on.
    assert!(admin_ok(&data, &["stats"])["uptime_secs"].is_u64());
    let alice = new_key(dir.path(), "alice");
    one(&create_channel(&node, &alice, "still"));
}

#[test]
fn a_clean_stop_removes_the_socket_and_the_client_says_no_node_answers() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("node");
    let mut node = Serve::start(&data, &[]);
    let socket = data.join("admin.sock");
    assert!(socket.exists());
    // A clean stop (SIGTERM) removes the socket.
    let status = Command::new("kill")
        .args(["-TERM", &node.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    node.child.wait().unwrap();
    assert!(!socket.exists(), "the socket outlived a clean stop");
    // The client says what is wrong when no node runs.
    let out = refusal(&admin(&data, &["stats"]));
    assert!(
        out["error"].as_str().unwrap().contains("admin socket"),
        "{out}"
    );
}

/// Copy of the `northstar` binary where another user can run it.
fn binary_for_others(dir: &Path) -> PathBuf {
    let bin = dir.join("northstar");
    std::fs::copy(env!("CARGO_BIN_EXE_northstar"), &bin).unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    bin
}

#[test]
fn another_user_is_refused() {
    // The effective uid, from the `id` tool (no libc in this crate).
    let uid = String::from_utf8(Command::new("id").arg("-u").output().unwrap().stdout).unwrap();
    if uid.trim() != "0" {
        eprintln!(
            "skipped: running as another user needs root (this test runs as uid {})",
            uid.trim()
        );
        return;
    }
    if Command::new("setpriv").arg("--version").output().is_err() {
        eprintln!("skipped: setpriv (util-linux) is not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let data = dir.path().join("node");
    let node = Serve::start(&data, &[]);
    let bin = binary_for_others(dir.path());
    let as_nobody = || {
        Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(&bin)
            .args(["--json", "admin", "stats", "--data-dir"])
            .arg(&data)
            .env_remove("NORTHSTAR_KEY")
            .env_remove("NORTHSTAR_NODE")
            .output()
            .unwrap()
    };
    // With the data directory as the node made it (0700), the file system refuses.
    let out = as_nobody();
    let err = refusal(&out);
    assert!(
        err["error"].as_str().unwrap().contains("admin socket"),
        "{err}"
    );

    // With the directory and the socket opened to everyone, the node refuses by the peer's uid.
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(
        data.join("admin.sock"),
        std::fs::Permissions::from_mode(0o666),
    )
    .unwrap();
    let out = as_nobody();
    let err = refusal(&out);
    assert_eq!(err["name"], "forbidden", "{err}");
    assert!(
        err["error"]
            .as_str()
            .unwrap()
            .contains("only the node's own user"),
        "{err}"
    );
    node.wait_for_log("admin connection refused");
    // Root still gets in.
    assert!(admin_ok(&data, &["stats"])["uptime_secs"].is_u64());
}

#[test]
fn remove_space_drops_a_replica_for_good_and_a_sequenced_space_with_its_id() {
    let dir = tempfile::tempdir().unwrap();
    let a_data = dir.path().join("a");
    let b_data = dir.path().join("b");
    let a = Serve::start(&a_data, &[]);
    let b = Serve::start(&b_data, &[]);
    let (alice, bob) = (new_key(dir.path(), "alice"), new_key(dir.path(), "bob"));
    let created = one(&create_channel(&a, &alice, "rules"));
    let (space, uri) = (
        created["id"].as_str().unwrap().to_owned(),
        created["uri"].as_str().unwrap().to_owned(),
    );
    one(&run(&b, &bob, &["space", "join", &uri, "--json"]));
    assert_eq!(admin_ok(&b_data, &["stats"])["spaces_replicated"], 1);

    // B's operator drops B's replica: gone there, and a new join through B is refused.
    let removed = admin_ok(&b_data, &["remove-space", &uri]);
    assert_eq!(removed["sequenced_here"], false, "{removed}");
    assert_eq!(admin_ok(&b_data, &["stats"])["spaces_replicated"], 0);
    let gone = refusal(&run(&b, &bob, &["space", "events", &space, "--json"]));
    assert_eq!(gone["name"], "space_not_found", "{gone}");
    let again = refusal(&run(&b, &bob, &["space", "join", &uri, "--json"]));
    assert_eq!(again["name"], "space_not_found", "{again}");
    // A still has it.
    let events = json_lines(&run(&a, &alice, &["space", "events", &space, "--json"]));
    assert_eq!(events.len(), 2);

    // A's operator removes the space A sequences: gone, and its id cannot be taken again.
    let removed = admin_ok(&a_data, &["remove-space", &space]);
    assert_eq!(removed["sequenced_here"], true, "{removed}");
    assert_eq!(admin_ok(&a_data, &["stats"])["spaces_sequenced"], 0);
    let gone = refusal(&run(&a, &alice, &["space", "events", &space, "--json"]));
    assert_eq!(gone["name"], "space_not_found", "{gone}");
    let taken = refusal(&create_channel(&a, &alice, "rules"));
    assert_eq!(taken["name"], "space_exists", "{taken}");
    let missing = refusal(&admin(&a_data, &["remove-space", &space]));
    assert_eq!(missing["name"], "space_not_found", "{missing}");

    // A space A sequences that B replicates: A tells B, which drops its replica too.
    let told = one(&create_channel(&a, &alice, "told"));
    let (told_id, told_uri) = (told["id"].as_str().unwrap(), told["uri"].as_str().unwrap());
    one(&run(&b, &bob, &["space", "join", told_uri, "--json"]));
    assert_eq!(admin_ok(&b_data, &["stats"])["spaces_replicated"], 1);
    let removed = admin_ok(&a_data, &["remove-space", told_uri]);
    assert_eq!(removed["member_nodes"], 1, "{removed}");
    assert_eq!(removed["member_nodes_told"], 1, "{removed}");
    assert_eq!(admin_ok(&b_data, &["stats"])["spaces_replicated"], 0);
    let gone = refusal(&run(&b, &bob, &["space", "events", told_id, "--json"]));
    assert_eq!(gone["name"], "space_not_found", "{gone}");
}

#[test]
fn a_ban_refuses_federation_submissions_by_the_did_but_not_its_home_nodes_removals() {
    let dir = tempfile::tempdir().unwrap();
    let a_data = dir.path().join("a");
    let a = Serve::start(&a_data, &[]);
    let b_data = dir.path().join("b");
    let b = Serve::start(&b_data, &[]);
    let (alice, bob) = (new_key(dir.path(), "alice"), new_key(dir.path(), "bob"));
    let created = one(&create_channel(&a, &alice, "hub"));
    let (space, uri) = (
        created["id"].as_str().unwrap(),
        created["uri"].as_str().unwrap(),
    );
    one(&run(&b, &bob, &["space", "join", uri, "--json"]));
    let post = |title: &str| {
        run(
            &b,
            &bob,
            &[
                "beam", "post", space, "--title", title, "--body", "b", "--json",
            ],
        )
    };
    let posted = one(&post("before"));

    // A bans Bob: his next post, submitted by his home node B, is refused by A.
    admin_ok(&a_data, &["ban", &did_of(&bob)]);
    let refused = refusal(&post("after"));
    assert_eq!(refused["name"], "banned", "{refused}");

    // B's operator removes Bob's earlier beam: the tombstone B signed still reaches A's log.
    let removed = admin_ok(
        &b_data,
        &["remove-beam", posted["beam_uri"].as_str().unwrap()],
    );
    assert_eq!(
        removed["tombstones"].as_array().unwrap().len(),
        1,
        "{removed}"
    );
    let events = json_lines(&run(&a, &alice, &["space", "events", space, "--json"]));
    assert_eq!(events.last().unwrap()["kind"], "tombstone");
}
