//! The commands that ask the running node over its admin socket: one JSON-RPC request line,
//! one response line (`spec/protocol.md` §12).

use std::path::PathBuf;

use anyhow::Context;
use northstar_node::admin::SOCKET_FILE;
use northstar_node::config::{Config, Overrides};
use northstar_protocol::method::admin as method;
use northstar_sdk::{NodeCode, SdkError};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use super::{BeamArgs, DidArgs, NodeDir, SpaceArgs};
use crate::cli::Output;

/// How long the node may take to answer.
const ANSWER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// The admin socket of the node `dir` names.
fn socket_path(dir: &NodeDir) -> anyhow::Result<PathBuf> {
    let overrides = Overrides {
        data_dir: dir.data_dir.clone(),
        ..Overrides::default()
    };
    let config = Config::load(dir.config.as_deref(), std::env::vars(), &overrides)?;
    Ok(config.data_dir.join(SOCKET_FILE))
}

/// Send one request and return its result, or the node's refusal as an [`SdkError::Node`].
async fn request(dir: &NodeDir, name: &'static str, params: Value) -> anyhow::Result<Value> {
    let path = socket_path(dir)?;
    let stream = tokio::net::UnixStream::connect(&path)
        .await
        .with_context(|| {
            format!(
                "cannot reach the node's admin socket {}: is the node running on this data \
             directory, and is this its user (or root)?",
                path.display()
            )
        })?;
    let (read, mut write) = stream.into_split();
    let line = json!({"jsonrpc": "2.0", "id": 1, "method": name, "params": params});
    // A node that refuses this user answers before reading and hangs up, so a failed send
    // may still have an answer waiting: read it before blaming the send.
    let sent = write.write_all(format!("{line}\n").as_bytes()).await;
    let mut answer = String::new();
    tokio::time::timeout(ANSWER_TIMEOUT, BufReader::new(read).read_line(&mut answer))
        .await
        .context("the node did not answer in time")?
        .context("cannot read the node's answer")?;
    if answer.is_empty() {
        sent.context("cannot send to the admin socket")?;
        anyhow::bail!("the node closed the admin socket without answering");
    }
    let mut answer: Value =
        serde_json::from_str(&answer).context("the node's answer is not JSON")?;
    if let Some(error) = answer.get("error") {
        let code = error["code"]
            .as_i64()
            .and_then(|c| i32::try_from(c).ok())
            .unwrap_or(0);
        return Err(SdkError::Node {
            method: name,
            code: NodeCode::from_code(code),
            message: error["message"].as_str().unwrap_or("").to_owned(),
        }
        .into());
    }
    Ok(answer["result"].take())
}

fn when(ms: &Value) -> String {
    ms.as_u64()
        .map_or_else(|| "-".to_owned(), |ms| format!("{ms}"))
}

pub(super) async fn users(dir: &NodeDir, out: &Output) -> anyhow::Result<()> {
    let result = request(dir, method::USERS, json!({})).await?;
    out.print(result.clone(), || {
        let mut text = format!(
            "registration: {}\n",
            result["policy"].as_str().unwrap_or("?")
        );
        let users = result["users"].as_array().cloned().unwrap_or_default();
        if users.is_empty() {
            text.push_str("no users yet");
        }
        for user in users {
            let allowed = if user["allowed"] == json!(true) {
                "allowed"
            } else {
                "not allowed"
            };
            let banned = if user["banned"] == json!(true) {
                ", banned"
            } else {
                ""
            };
            text.push_str(&format!(
                "{}  {allowed} ({}){banned}  first seen {}  last seen {}\n",
                user["did"].as_str().unwrap_or("?"),
                user["allowed_by"].as_str().unwrap_or("?"),
                when(&user["first_seen"]),
                when(&user["last_seen"]),
            ));
        }
        text.trim_end().to_owned()
    })
}

pub(super) async fn allow(args: &DidArgs, allow: bool, out: &Output) -> anyhow::Result<()> {
    let name = if allow { method::ALLOW } else { method::DENY };
    let result = request(&args.node, name, json!({"did": args.did})).await?;
    out.print(result.clone(), || {
        let verb = if allow { "allowed" } else { "denied" };
        let mut text = format!("{} {verb}", args.did);
        if result["policy"] == json!("open") {
            text.push_str(
                " (the node's registration is open: the allow-list applies under allow_list)",
            );
        }
        if let Some(closed) = result["closed"].as_u64().filter(|n| *n > 0) {
            text.push_str(&format!("; {closed} open connection(s) closed"));
        }
        text
    })
}

pub(super) async fn ban(args: &DidArgs, ban: bool, out: &Output) -> anyhow::Result<()> {
    let name = if ban { method::BAN } else { method::UNBAN };
    let result = request(&args.node, name, json!({"did": args.did})).await?;
    out.print(result.clone(), || {
        if ban {
            let closed = result["closed"].as_u64().unwrap_or(0);
            format!(
                "{} banned from this node; {closed} open connection(s) closed",
                args.did
            )
        } else if result["was_banned"] == json!(true) {
            format!("{} is no longer banned", args.did)
        } else {
            format!("{} was not banned", args.did)
        }
    })
}

pub(super) async fn remove_beam(args: &BeamArgs, out: &Output) -> anyhow::Result<()> {
    let result = request(&args.node, method::REMOVE_BEAM, json!({"uri": args.uri})).await?;
    out.print(result.clone(), || {
        let spaces = result["tombstones"].as_array().map_or(0, Vec::len);
        format!(
            "removed {}; its tombstone, signed by this node, was appended in {spaces} space(s)",
            result["path"].as_str().unwrap_or("?")
        )
    })
}

pub(super) async fn remove_space(args: &SpaceArgs, out: &Output) -> anyhow::Result<()> {
    let result = request(
        &args.node,
        method::REMOVE_SPACE,
        json!({"space": args.space}),
    )
    .await?;
    out.print(result.clone(), || {
        let what = if result["sequenced_here"] == json!(true) {
            "the space this node sequenced"
        } else {
            "this node's replica of"
        };
        format!(
            "removed {what} {}; it is not created or replicated here again",
            result["space"].as_str().unwrap_or("?")
        )
    })
}

pub(super) async fn stats(dir: &NodeDir, out: &Output) -> anyhow::Result<()> {
    let result = request(dir, method::STATS, json!({})).await?;
    out.print(result.clone(), || {
        let r = &result;
        let bytes = r["database"]["bytes"]
            .as_u64()
            .map_or_else(|| "unknown".to_owned(), |b| format!("{b} bytes"));
        format!(
            "node         {}\nversion      {} (protocol {})\nuptime       {} s\n\
             users        {} (members through this node), {} known to the operator\n\
             spaces       {} sequenced, {} replicated\npeers        {}\n\
             connections  {}\ndatabase     {}, {bytes}",
            r["node"].as_str().unwrap_or("?"),
            r["version"].as_str().unwrap_or("?"),
            r["protocol"],
            r["uptime_secs"],
            r["users"],
            r["known_users"],
            r["spaces_sequenced"],
            r["spaces_replicated"],
            r["peers"],
            r["connections"],
            r["database"]["backend"].as_str().unwrap_or("?"),
        )
    })
}
