//! Live streams through the command line, as the README shows them: `northstar serve` children
//! for a sequencer and member nodes, `northstar stream publish` fed by a pipe on the sequencer,
//! `northstar stream watch` on member nodes, and what either says when it cannot go on.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rand::{RngCore, SeedableRng};
use serde_json::Value;
use serve::{Serve, WAIT, new_key, northstar, one, run};

mod serve;

/// How long the 20 MB broadcast may take end to end: it is paced to about 6 s.
const BROADCAST: Duration = Duration::from_secs(90);

/// `stream publish` of `input` with `flags`, to its end: its status and stderr.
fn publish(
    node: &Serve,
    owner: &Path,
    space: &str,
    flags: &[&str],
    input: &[u8],
    what: &str,
) -> (std::process::ExitStatus, String) {
    let mut cmd = northstar();
    cmd.args(["--node", &node.url, "--key"])
        .arg(owner)
        .args(["stream", "publish", space])
        .args(flags)
        .stdin(Stdio::piped());
    let mut publisher = Running::spawn(cmd);
    publisher
        .child
        .stdin
        .take()
        .unwrap()
        .write_all(input)
        .unwrap();
    let (status, _, stderr) = publisher.finish(WAIT, what);
    (status, stderr)
}

/// A stream owned by `owner` on `sequencer`: its id and URI.
fn create_stream(sequencer: &Serve, owner: &Path, id: &str) -> (String, String) {
    let created = one(&run(
        sequencer,
        owner,
        &[
            "space", "create", "--type", "stream", "--name", id, "--id", id, "--json",
        ],
    ));
    (
        created["id"].as_str().unwrap().to_owned(),
        created["uri"].as_str().unwrap().to_owned(),
    )
}

fn stream_info(node: &Serve, key: &Path, space: &str) -> Value {
    one(&run(node, key, &["stream", "info", space, "--json"]))
}

/// A child whose stdout and stderr are collected on threads; `finish` waits for it.
struct Running {
    child: Child,
    stdout: mpsc::Receiver<Vec<u8>>,
    stderr: mpsc::Receiver<String>,
}

impl Running {
    fn spawn(cmd: Command) -> Self {
        let (go, start) = mpsc::channel();
        go.send(()).unwrap();
        Self::spawn_reading_when(cmd, start)
    }

    /// As [`Running::spawn`], but stdout is not read until `start` says so: the child blocks
    /// on its writes meanwhile, like a watcher piped into a stalled player.
    fn spawn_reading_when(mut cmd: Command, start: mpsc::Receiver<()>) -> Self {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (out_tx, stdout) = mpsc::channel();
        let mut out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            let _ = start.recv();
            let mut all = Vec::new();
            let _ = out.read_to_end(&mut all);
            let _ = out_tx.send(all);
        });
        let (err_tx, stderr) = mpsc::channel();
        let mut err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            let mut all = String::new();
            let _ = err.read_to_string(&mut all);
            let _ = err_tx.send(all);
        });
        Self {
            child,
            stdout,
            stderr,
        }
    }

    /// Wait for the child to close its output and exit, within `within`.
    fn finish(
        mut self,
        within: Duration,
        what: &str,
    ) -> (std::process::ExitStatus, Vec<u8>, String) {
        let deadline = Instant::now() + within;
        let left = || deadline.saturating_duration_since(Instant::now());
        let stdout = self.stdout.recv_timeout(left());
        let stderr = self.stderr.recv_timeout(left());
        let (Ok(stdout), Ok(stderr)) = (stdout, stderr) else {
            let _ = self.child.kill();
            panic!("{what} did not end within {within:?}");
        };
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(!left().is_zero(), "{what} did not exit");
            std::thread::sleep(Duration::from_millis(20));
        };
        (status, stdout, stderr)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Poll `ready` every 100 ms until it holds, for at most [`WAIT`].
fn wait_until(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !ready() {
        assert!(
            Instant::now() < deadline,
            "{what} did not happen within {WAIT:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn twenty_megabytes_piped_into_publish_come_out_of_watch_three_tiers_down_byte_identical() {
    let dir = tempfile::tempdir().unwrap();
    // Fan-out 1: member i's parents are members i-1 and i-2, member 0's the sequencer, so the
    // third member is three tiers down.
    let sequencer = Serve::start(&dir.path().join("seq"), &["--fanout", "1"]);
    let members: Vec<Serve> = (0..3)
        .map(|i| Serve::start(&dir.path().join(format!("m{i}")), &[]))
        .collect();
    let owner = new_key(dir.path(), "owner");
    let (space, uri) = create_stream(&sequencer, &owner, "live");
    let users: Vec<PathBuf> = (0..3)
        .map(|i| new_key(dir.path(), &format!("user{i}")))
        .collect();
    for (member, user) in members.iter().zip(&users) {
        one(&run(member, user, &["space", "join", &uri, "--json"]));
    }

    // With fan-out 1 each tier holds one node and each member has two parents: the member
    // whose parents are both members is three tiers down. Find it once every member knows
    // the whole tree.
    let did_of = |node: &Serve| {
        one(&run(node, &owner, &["node", "info", "--json"]))["did"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let seq_did = did_of(&sequencer);
    let member_dids: Vec<String> = members.iter().map(did_of).collect();
    let mut last = None;
    wait_until("every member learns the whole tree", || {
        let parents: Vec<Vec<String>> = members
            .iter()
            .zip(&users)
            .map(|(m, u)| {
                let info = stream_info(m, u, &space);
                serde_json::from_value(info["parents"].clone()).unwrap()
            })
            .collect();
        let deep: Vec<usize> = (0..3)
            .filter(|&i| parents[i].len() == 2 && !parents[i].contains(&seq_did))
            .collect();
        let top = (0..3).filter(|&i| parents[i] == [seq_did.clone()]).count();
        if let ([i], 1) = (deep.as_slice(), top) {
            let others: Vec<&String> = (0..3)
                .filter(|&j| j != *i)
                .map(|j| &member_dids[j])
                .collect();
            assert!(
                others.iter().all(|d| parents[*i].contains(d)),
                "{parents:?}"
            );
            last = Some(*i);
            true
        } else {
            false
        }
    });
    let last = last.unwrap();

    // The watcher on the last member starts before anything is published.
    let mut watch_cmd = northstar();
    watch_cmd
        .args(["--node", &members[last].url, "--key"])
        .arg(&users[last])
        .args(["stream", "watch", &space]);
    let watcher = Running::spawn(watch_cmd);
    // Every node of the chain watches its parents once it has a watcher: wait until each one
    // counts a watch per child (and the last member its watcher), so no frame is published
    // before the whole path is open.
    let nodes: Vec<(&Serve, &PathBuf, bool)> = std::iter::once((&sequencer, &owner, false))
        .chain(
            members
                .iter()
                .zip(&users)
                .enumerate()
                .map(|(i, (m, u))| (m, u, i == last)),
        )
        .collect();
    wait_until("every link of the chain is open", || {
        nodes.iter().all(|(node, key, watched_here)| {
            let info = stream_info(node, key, &space);
            let local = u64::from(*watched_here);
            info["watchers"].as_u64().unwrap()
                >= info["children"].as_array().unwrap().len() as u64 + local
        })
    });

    let mut input = vec![0u8; 20 * 1024 * 1024];
    rand_chacha::ChaCha8Rng::seed_from_u64(11).fill_bytes(&mut input);
    let mut publish_cmd = northstar();
    publish_cmd
        .args(["--node", &sequencer.url, "--key"])
        .arg(&owner)
        .args(["stream", "publish", &uri, "--json"])
        .stdin(Stdio::piped());
    let started = Instant::now();
    let mut publisher = Running::spawn(publish_cmd);
    let mut stdin = publisher.child.stdin.take().unwrap();
    let feeding = input.clone();
    let feeder = std::thread::spawn(move || {
        // Pipe writes of an odd size, so frames are cut by the publisher, not by the writes.
        for chunk in feeding.chunks(10_000) {
            stdin.write_all(chunk).unwrap();
        }
    });
    let (status, stdout, stderr) = publisher.finish(BROADCAST, "stream publish");
    let published_in = started.elapsed();
    feeder.join().unwrap();
    assert!(status.success(), "stream publish failed: {stderr}");
    let summary: Value = serde_json::from_slice(&stdout).unwrap();
    // How the input is cut into frames depends on how far stdin runs ahead of the publisher
    // (a frame takes whatever has arrived, up to 16 KiB): count them, do not predict them.
    let frames = summary["frames"].as_u64().unwrap();
    assert!(frames >= input.len().div_ceil(16_384) as u64, "{summary}");
    assert_eq!(summary["space"], space.as_str());
    assert_eq!(summary["bytes"], input.len() as u64);
    let (first, last_frame) = (summary["first"].as_u64(), summary["last"].as_u64());
    assert_eq!(first, Some(1), "{summary}");
    // No gap in the numbers: last - first + 1 frames, all of them counted.
    assert_eq!(
        last_frame.zip(first).map(|(l, f)| l - f + 1),
        Some(frames),
        "{summary}"
    );
    assert_eq!(summary["refused"], 0);

    let (status, watched, log) = watcher.finish(WAIT, "stream watch");
    let watched_in = started.elapsed();
    assert!(status.success(), "stream watch failed: {log}");
    assert!(!log.contains("gap"), "the watcher saw gaps: {log}");
    assert_eq!(watched.len(), input.len(), "watch stderr: {log}");
    assert!(
        watched == input,
        "the watched bytes differ from the published ones"
    );
    eprintln!(
        "20 MiB in {frames} frames: published in {:.1} s ({:.2} MiB/s), watched three tiers down \
         by {:.1} s",
        published_in.as_secs_f64(),
        20.0 / published_in.as_secs_f64(),
        watched_in.as_secs_f64(),
    );

    // The broadcast is marked in the log, as the watcher found it.
    let events = run(
        &members[last],
        &users[last],
        &["space", "events", &space, "--json"],
    );
    assert!(events.status.success());
    let beams: Vec<String> = String::from_utf8(events.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|e| e["kind"] == "beam")
        .map(|e| e["beam_uri"].as_str().unwrap().to_owned())
        .collect();
    let bodies: Vec<String> = beams
        .iter()
        .map(|uri| {
            let beam = one(&run(
                &members[last],
                &users[last],
                &["beam", "get", uri, "--json"],
            ));
            assert_eq!(beam["title"], "live");
            beam["body"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(
        bodies,
        [
            "started at frame 1".to_owned(),
            format!("ended after frame {frames}")
        ]
    );
}

#[test]
fn the_cli_explains_what_it_cannot_do_and_watches_a_given_number_of_frames() {
    let dir = tempfile::tempdir().unwrap();
    let sequencer = Serve::start(&dir.path().join("seq"), &[]);
    let member = Serve::start(&dir.path().join("member"), &[]);
    let (owner, viewer) = (new_key(dir.path(), "owner"), new_key(dir.path(), "viewer"));
    let (space, uri) = create_stream(&sequencer, &owner, "radio");
    one(&run(&member, &viewer, &["space", "join", &uri, "--json"]));

    // Frames are published at the sequencer only; the error names it.
    let refused = run(&member, &owner, &["stream", "publish", &space]);
    assert!(!refused.status.success());
    let err = String::from_utf8(refused.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "{err}");
    let authority = uri
        .trim_start_matches("northstar://")
        .split('/')
        .next()
        .unwrap();
    assert!(
        err.contains("not_sequencer") && err.contains(&format!("--node ws://{authority}")),
        "{err}"
    );

    // Frames larger than the node takes are refused before anything is sent.
    let too_big = run(
        &sequencer,
        &owner,
        &["stream", "publish", &space, "--frame-bytes", "70000"],
    );
    assert!(!too_big.status.success());
    let err = String::from_utf8(too_big.stderr).unwrap();
    assert!(err.contains("over the node's limit of 65536"), "{err}");

    // Only the owner publishes.
    let forbidden = run(&sequencer, &viewer, &["stream", "publish", &space]);
    assert!(!forbidden.status.success());
    let err = String::from_utf8(forbidden.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("only the stream's owner") && err.contains("signs its frames"),
        "{err}"
    );

    // An empty input publishes nothing and marks nothing.
    let mut empty = northstar();
    empty
        .args(["--node", &sequencer.url, "--key"])
        .arg(&owner)
        .args(["stream", "publish", &space, "--json"])
        .stdin(Stdio::null());
    let (status, stdout, stderr) = Running::spawn(empty).finish(WAIT, "empty publish");
    assert!(status.success(), "{stderr}");
    let summary: Value = serde_json::from_slice(&stdout).unwrap();
    assert_eq!(
        (summary["frames"].as_u64(), summary["last"].is_null()),
        (Some(0), true)
    );

    // A watcher that wants three frames stops after three, resuming after --since.
    let mut watch_cmd = northstar();
    watch_cmd
        .args(["--node", &member.url, "--key"])
        .arg(&viewer)
        .args(["stream", "watch", &space, "--since", "0", "--frames", "3"]);
    let watcher = Running::spawn(watch_cmd);
    wait_until("the member relays to the watcher", || {
        stream_info(&sequencer, &owner, &space)["watchers"].as_u64() >= Some(1)
            && stream_info(&member, &viewer, &space)["watchers"].as_u64() >= Some(1)
    });
    let (status, stderr) = publish(
        &sequencer,
        &owner,
        &space,
        &["--frame-bytes", "4", "--key-every", "2", "--rate", "1k"],
        b"aaaabbbbccccdddd",
        "small publish",
    );
    assert!(status.success(), "{stderr}");
    assert!(
        stderr.contains("published 4 frames, 16 bytes, frames 1 to 4"),
        "{stderr}"
    );
    let (status, watched, log) = watcher.finish(WAIT, "three-frame watch");
    assert!(status.success(), "{log}");
    assert_eq!(watched, b"aaaabbbbcccc", "{log}");

    let info = stream_info(&sequencer, &owner, &space);
    assert_eq!(
        (info["newest"].as_u64(), info["newest_key"].as_u64()),
        (Some(4), Some(3))
    );
    assert_eq!(info["limits"]["max_frame_bytes"], 65_536);
    // The keys the README promises for `stream info --json`.
    let mut keys: Vec<&str> = info
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "children",
            "dropped",
            "limits",
            "live",
            "newest",
            "newest_key",
            "owner",
            "parents",
            "sequencer",
            "space",
            "watchers",
            "window"
        ]
    );
    let text = run(&sequencer, &owner, &["stream", "info", &space]);
    let text = String::from_utf8(text.stdout).unwrap();
    assert!(text.contains("newest:    4 (newest key frame 3)"), "{text}");
}

#[test]
fn a_watcher_cut_off_as_slow_watches_again_reports_the_gap_and_still_ends() {
    let dir = tempfile::tempdir().unwrap();
    // Small queues and a short cut-off, so a watcher whose reader stalls is cut off quickly,
    // and a small window, so what it missed is gone when it watches again.
    let node = Serve::start_with_env(
        &dir.path().join("seq"),
        &[],
        &[
            ("NORTHSTAR_STREAMS_WATCHER_QUEUE", "4"),
            ("NORTHSTAR_STREAMS_WATCHER_CUTOFF_SECS", "1"),
            ("NORTHSTAR_STREAMS_WINDOW_FRAMES", "16"),
        ],
    );
    let (owner, viewer) = (new_key(dir.path(), "owner"), new_key(dir.path(), "viewer"));
    let (space, _) = create_stream(&node, &owner, "flood");

    // A viewer who is not a member watches; its stdout is not read for now.
    let (read_now, start_reading) = mpsc::channel();
    let mut watch_cmd = northstar();
    watch_cmd
        .args(["--node", &node.url, "--key"])
        .arg(&viewer)
        .args(["stream", "watch", &space]);
    let watcher = Running::spawn_reading_when(watch_cmd, start_reading);
    wait_until("the watch opens", || {
        stream_info(&node, &owner, &space)["watchers"].as_u64() == Some(1)
    });

    const BLOCK: usize = 64 * 1024;
    let mut input = vec![0u8; 480 * BLOCK];
    rand_chacha::ChaCha8Rng::seed_from_u64(12).fill_bytes(&mut input);
    let mut publish_cmd = northstar();
    publish_cmd
        .args(["--node", &node.url, "--key"])
        .arg(&owner)
        .args(["stream", "publish", &space, "--frame-bytes", "65536"])
        .stdin(Stdio::piped());
    let mut publisher = Running::spawn(publish_cmd);
    let mut stdin = publisher.child.stdin.take().unwrap();
    let feeding = input.clone();
    let feeder = std::thread::spawn(move || stdin.write_all(&feeding).unwrap());

    // The stalled watch is cut off while the broadcast goes on.
    wait_until("the node cuts the stalled watcher off", || {
        let info = stream_info(&node, &owner, &space);
        info["watchers"].as_u64() == Some(0) && info["dropped"].as_u64() > Some(0)
    });
    read_now.send(()).unwrap();

    let (status, _, stderr) = publisher.finish(BROADCAST, "stream publish");
    feeder.join().unwrap();
    assert!(status.success(), "{stderr}");
    let (status, watched, log) = watcher.finish(WAIT, "stream watch");
    assert!(status.success(), "{log}");
    assert!(
        log.contains("slow_watcher (1708)") && log.contains("watching again after frame"),
        "{log}"
    );
    assert!(log.contains("gap: "), "{log}");
    eprintln!("the cut-off watcher said:\n{log}");

    // What came out is the input with whole frames missing, in order, through the last one.
    assert_eq!(watched.len() % BLOCK, 0);
    assert!(watched.len() < input.len());
    let mut blocks = input.chunks(BLOCK);
    for (i, got) in watched.chunks(BLOCK).enumerate() {
        assert!(
            blocks.any(|block| block == got),
            "output frame {i} is not the input's next frames"
        );
    }
    assert_eq!(
        watched[watched.len() - BLOCK..],
        input[input.len() - BLOCK..]
    );
}

#[test]
fn an_anonymous_watcher_outlives_the_auth_deadline_and_still_ends() {
    let dir = tempfile::tempdir().unwrap();
    // A node drops a connection that has not authenticated within auth_timeout_secs, unless it
    // holds a watch: make that one second. The watcher's subscription to the log (for the end
    // mark) is dropped; its watch is not.
    let node = Serve::start_with_env(
        &dir.path().join("seq"),
        &[],
        &[("NORTHSTAR_LIMITS_AUTH_TIMEOUT_SECS", "1")],
    );
    let owner = new_key(dir.path(), "owner");
    let (space, _) = create_stream(&node, &owner, "long");

    // No key anywhere: the watcher reads anonymously.
    let home = dir.path().join("home");
    std::fs::create_dir(&home).unwrap();
    let mut watch_cmd = northstar();
    watch_cmd
        .env("HOME", &home)
        .env("XDG_CONFIG_HOME", &home)
        .args(["--node", &node.url, "stream", "watch", &space]);
    let watcher = Running::spawn(watch_cmd);
    wait_until("the watch opens", || {
        stream_info(&node, &owner, &space)["watchers"].as_u64() == Some(1)
    });

    // About four seconds of frames, well past the deadline.
    let mut input = vec![0u8; 4000];
    rand_chacha::ChaCha8Rng::seed_from_u64(13).fill_bytes(&mut input);
    let (status, stderr) = publish(
        &node,
        &owner,
        &space,
        &["--frame-bytes", "100", "--rate", "1k"],
        &input,
        "slow publish",
    );
    assert!(status.success(), "{stderr}");

    let (status, watched, log) = watcher.finish(WAIT, "anonymous watch");
    assert!(status.success(), "{log}");
    assert!(!log.contains("watching again after frame"), "{log}");
    assert!(watched == input, "{log}");
}

#[test]
fn ctrl_c_ends_a_watch_that_waits_for_its_node_to_come_back() {
    let dir = tempfile::tempdir().unwrap();
    let node = Serve::start(&dir.path().join("seq"), &[]);
    let owner = new_key(dir.path(), "owner");
    let (space, _) = create_stream(&node, &owner, "gone");

    let mut watcher = northstar()
        .args(["--node", &node.url, "--key"])
        .arg(&owner)
        .args(["stream", "watch", &space])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (line_tx, lines) = mpsc::channel();
    let stderr = watcher.stderr.take().unwrap();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let _ = line_tx.send(line);
        }
    });
    wait_until("the watch opens", || {
        stream_info(&node, &owner, &space)["watchers"].as_u64() == Some(1)
    });

    // The node goes away: the watcher retries, with no end in sight.
    drop(node);
    let deadline = Instant::now() + WAIT;
    loop {
        let line = lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("the watcher did not start watching again");
        if line.contains("cannot watch yet") {
            break;
        }
    }

    let kill = Command::new("kill")
        .args(["-INT", &watcher.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let deadline = Instant::now() + WAIT;
    let status = loop {
        if let Some(status) = watcher.try_wait().unwrap() {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = watcher.kill();
            let _ = watcher.wait();
            panic!("the watcher did not end on Ctrl-C within {WAIT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status}");
}
