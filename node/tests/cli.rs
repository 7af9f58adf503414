//! The `northstar` binary's key and DID commands, run as a user runs them.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn northstar(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_northstar"))
        .args(args)
        .env_remove("NORTHSTAR_KEY")
        .output()
        .unwrap()
}

fn stdout_json(output: &Output) -> Value {
    assert!(
        output.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

fn vectors(name: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../spec/vectors")
        .join(name);
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn did_inspect_decodes_the_published_did_key_vectors() {
    let v = vectors("primitives.json");
    let cases = v["did_key"]["cases"].as_array().unwrap();
    assert!(!cases.is_empty());
    for case in cases {
        let did = case["did"].as_str().unwrap();
        let out = stdout_json(&northstar(&["did", "inspect", did, "--json"]));
        assert_eq!(out["did"], case["did"]);
        assert_eq!(out["public_key_hex"], case["public_key_hex"]);
        let human = northstar(&["did", "inspect", did]);
        let text = String::from_utf8(human.stdout).unwrap();
        assert!(
            text.contains(case["public_key_hex"].as_str().unwrap()),
            "{text}"
        );
    }
}

#[test]
fn did_inspect_rejects_each_malformed_did_with_one_specific_line() {
    let v = vectors("northstar.json");
    let expected_words = |code: &str| match code {
        "not_did_key" => "must start with \"did:key:\"",
        "not_base58btc" => "must start with 'z'",
        "too_long" => "too long",
        "bad_base58" => "invalid base58btc",
        "wrong_multicodec" => "wrong multicodec",
        "wrong_length" => "wrong key length",
        "invalid_point" => "not a curve point",
        "weak_key" => "small-order",
        other => panic!("no message known for {other}"),
    };
    for case in v["dids_invalid"].as_array().unwrap() {
        let did = case["did"].as_str().unwrap();
        let out = northstar(&["did", "inspect", did]);
        assert!(!out.status.success(), "{did} was accepted");
        assert!(out.stdout.is_empty());
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(err.lines().count(), 1, "{err}");
        let code = case["error"].as_str().unwrap();
        assert!(err.contains(expected_words(code)), "{code}: {err}");
    }
}

#[test]
fn key_generate_then_show_agree_and_generate_never_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("alice.json");
    let file_str = file.to_str().unwrap();
    let made = stdout_json(&northstar(&[
        "key", "generate", "--out", file_str, "--json",
    ]));
    let shown = stdout_json(&northstar(&["--json", "key", "show", file_str]));
    assert_eq!(made["did"], shown["did"]);
    let did = made["did"].as_str().unwrap();
    assert!(did.starts_with("did:key:z6Mk"), "{did}");
    // The printed DID is a real one.
    stdout_json(&northstar(&["did", "inspect", did, "--json"]));

    let before = std::fs::read(&file).unwrap();
    let again = northstar(&["key", "generate", "--out", file_str]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("refusing to overwrite"));
    assert_eq!(std::fs::read(&file).unwrap(), before);
}

#[test]
fn northstar_key_env_names_the_default_key_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("from-env.json");
    let run = |args: &[&str], path: &Path| {
        Command::new(env!("CARGO_BIN_EXE_northstar"))
            .args(args)
            .env("NORTHSTAR_KEY", path)
            .output()
            .unwrap()
    };
    let made = stdout_json(&run(&["key", "generate", "--json"], &file));
    assert!(file.exists());
    let shown = stdout_json(&run(&["key", "show", "--json"], &file));
    assert_eq!(made["did"], shown["did"]);
}

#[test]
fn key_show_on_a_missing_file_says_which_file() {
    let out = northstar(&["key", "show", "/nonexistent/dir/key.json"]);
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("/nonexistent/dir/key.json"), "{err}");
}

/// `admin migrate-storage` with the environment's storage settings out of the way.
fn migrate_storage(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_northstar"))
        .args(["admin", "migrate-storage"])
        .args(args)
        .env_remove("NORTHSTAR_STORAGE_URL")
        .env_remove("NORTHSTAR_DATA_DIR")
        .output()
        .unwrap()
}

fn one_error_line(out: &Output) -> String {
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr.clone()).unwrap();
    assert_eq!(err.lines().count(), 1, "{err}");
    err
}

#[test]
fn admin_migrate_storage_refuses_what_it_cannot_copy_in_one_line_without_the_password() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let missing = dir.path().join("missing");
    let target = "postgres://northstar:s3cret@127.0.0.1:1/northstar";
    for (args, says) in [
        (
            vec!["--data-dir", data, "--to", "sqlite:///elsewhere.db"],
            "--to must name a PostgreSQL database",
        ),
        (
            vec!["--data-dir", missing.to_str().unwrap(), "--to", target],
            "no data directory at",
        ),
        (vec!["--data-dir", data, "--to", target], "no node key at"),
    ] {
        let err = one_error_line(&migrate_storage(&args));
        assert!(err.contains(says), "{args:?}: {err}");
        assert!(!err.contains("s3cret"), "{err}");
    }
}

/// With a PostgreSQL server (`NORTHSTAR_TEST_POSTGRES`): a node's data copied by the binary,
/// progress on stderr, and the setting to make on stdout with its password hidden.
#[tokio::test]
async fn admin_migrate_storage_prints_the_storage_url_to_set() {
    use northstar_node::store::testing::{POSTGRES_ENV, TestDatabase};
    use northstar_node::store::{Storage, Store};
    let Some(server) = std::env::var(POSTGRES_ENV).ok().filter(|s| !s.is_empty()) else {
        eprintln!("skipped: set {POSTGRES_ENV} to run migrate-storage against PostgreSQL");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let key = northstar_node::node_key(dir.path()).unwrap();
    let storage = Storage::from_url("", dir.path()).unwrap();
    Store::open(&storage, key.did().as_str())
        .await
        .unwrap()
        .close()
        .await;
    let target = TestDatabase::create(&server).await.unwrap();
    let out = migrate_storage(&[
        "--data-dir",
        dir.path().to_str().unwrap(),
        "--to",
        target.url(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("migrating node {}", key.did())),
        "{stderr}"
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let line = stdout
        .lines()
        .find(|l| l.trim_start().starts_with("storage_url = \"postgres://"))
        .unwrap_or_else(|| panic!("no storage_url line: {stdout}"));
    assert!(line.contains(target.name()), "{line}");
    if let Some(password) = target
        .url()
        .split_once("://")
        .and_then(|(_, rest)| rest.split_once('@'))
        .and_then(|(user, _)| user.split_once(':'))
        .map(|(_, password)| password)
    {
        assert!(!stdout.contains(password) && !stderr.contains(password));
        assert!(line.contains(":***@"), "{line}");
    }
}

#[test]
fn bash_completes_subcommands_from_the_generated_script() {
    let script = northstar(&["completions", "bash"]);
    assert!(script.status.success(), "{script:?}");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("northstar.bash");
    std::fs::write(&file, &script.stdout).unwrap();
    // What bash offers after `northstar sp<Tab>` and `northstar space cr<Tab>`.
    let complete = |words: &str, current: usize| {
        let program = format!(
            "source {}; COMP_WORDS=({words}); COMP_CWORD={current}; \
             COMP_LINE='{words}'; COMP_POINT=${{#COMP_LINE}}; \
             _northstar northstar \"${{COMP_WORDS[$COMP_CWORD]}}\" \"${{COMP_WORDS[$COMP_CWORD-1]}}\"; \
             printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            file.display()
        );
        let out = Command::new("bash")
            .args(["-c", &program])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    assert_eq!(complete("northstar sp", 1).trim(), "space");
    let offered = complete("northstar space cr", 2);
    assert!(offered.lines().any(|l| l == "create"), "{offered}");
    for shell in ["zsh", "fish"] {
        let out = northstar(&["completions", shell]);
        assert!(out.status.success(), "{shell}: {out:?}");
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(
            text.contains("northstar") && text.contains("space"),
            "{shell}"
        );
    }
    assert!(!northstar(&["completions", "tcsh"]).status.success());
}
