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
