//! What the node says of itself over plain HTTP on its one port, for operators, load balancers
//! and tools:
//!
//! - `GET /health/live`: the process serves (always 200 while it does).
//! - `GET /health/ready`: the database answers; 503 when it does not.
//! - `GET /`: a small HTML status page: the node's DID, version, uptime, what it holds, how
//!   to connect, and a link to the web app ([`crate::app`]) when it is served.
//! - `GET /.well-known/northstar`: the same facts as JSON.
//! - `/health`: the older liveness check, answered as it always was (`{"status":"ok"}`, any
//!   method), for the scripts that use it.
//!
//! Counting what the node holds scans tables, and these paths need no authentication, so the
//! counts are kept for [`COUNTS_TTL`] and a flood of requests costs one count per period.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use hyper::header::{self, HeaderValue};
use hyper::{Method, Response, StatusCode};
use northstar_protocol::PROTOCOL_VERSION;
use serde::Serialize;

use crate::rpc::Api;
use crate::store::Counts;

/// The node's version, as its package says.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// How long counts are served before they are counted again.
pub const COUNTS_TTL: Duration = Duration::from_secs(5);

/// When the node started, and the counts last taken.
#[derive(Debug)]
pub struct Status {
    started: Instant,
    counted: tokio::sync::Mutex<Option<(Instant, Counts)>>,
    /// The last database failure a readiness check saw, for the log (logged once per change).
    last_failure: Mutex<Option<String>>,
}

impl Default for Status {
    fn default() -> Self {
        Self {
            started: Instant::now(),
            counted: tokio::sync::Mutex::new(None),
            last_failure: Mutex::new(None),
        }
    }
}

impl Status {
    /// How long the node has run.
    pub fn uptime(&self) -> std::time::Duration {
        self.started.elapsed()
    }
}

/// The facts of `/.well-known/northstar` and of the status page.
#[derive(Debug, Clone, Serialize)]
pub struct Facts {
    /// The node's DID.
    pub node: String,
    /// The node's version.
    pub version: &'static str,
    /// The Northstar protocol version it speaks.
    pub protocol: u32,
    /// The WebSocket URL clients and nodes connect to.
    pub url: String,
    /// Who may register: `open` or `allow_list`.
    pub registration: String,
    /// Seconds since the node started.
    pub uptime_secs: u64,
    /// What the node holds.
    #[serde(flatten)]
    pub counts: Counts,
}

/// The answer to a plain HTTP request (one that does not ask for a WebSocket).
pub async fn answer(api: &Api, method: &Method, path: &str) -> Response<String> {
    if path == "/health" {
        // Exactly as before the other paths existed: any method, no content type.
        let mut response = Response::new("{\"status\":\"ok\"}".to_owned());
        *response.status_mut() = StatusCode::OK;
        return response;
    }
    if method != Method::GET && method != Method::HEAD {
        let mut response = text(
            StatusCode::METHOD_NOT_ALLOWED,
            "this port answers GET; JSON-RPC goes over a WebSocket",
        );
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    match path {
        "/health/live" => json(
            StatusCode::OK,
            &serde_json::json!({ "status": "live", "version": VERSION }),
        ),
        "/health/ready" => ready(api).await,
        "/.well-known/northstar" => match facts(api).await {
            Ok(facts) => json(StatusCode::OK, &facts),
            Err(reason) => json(
                StatusCode::SERVICE_UNAVAILABLE,
                &serde_json::json!({ "error": reason, "version": VERSION }),
            ),
        },
        "/" => match facts(api).await {
            Ok(facts) => html(StatusCode::OK, page(&facts, api.config.app)),
            Err(reason) => html(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "<!doctype html><meta charset=\"utf-8\"><title>Northstar node</title>\
                     <p>This Northstar node cannot read its database: {}</p>\n",
                    escape(&reason)
                ),
            ),
        },
        _ => text(
            StatusCode::NOT_FOUND,
            "not found: this port serves /, /.well-known/northstar, /health/live, \
             /health/ready and JSON-RPC over WebSocket",
        ),
    }
}

async fn ready(api: &Api) -> Response<String> {
    let checked = api.store.ping().await;
    let failure = checked
        .as_ref()
        .err()
        .map(|e| crate::report::Causes(e).to_string());
    {
        let mut last = api
            .status
            .last_failure
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if *last != failure {
            match &failure {
                Some(reason) => {
                    tracing::warn!(error = %reason, "not ready: the database does not answer")
                }
                None if last.is_some() => tracing::info!("ready again: the database answers"),
                None => {}
            }
            last.clone_from(&failure);
        }
    }
    match failure {
        None => json(
            StatusCode::OK,
            &serde_json::json!({ "status": "ready", "version": VERSION, "database": "ok" }),
        ),
        Some(reason) => json(
            StatusCode::SERVICE_UNAVAILABLE,
            &serde_json::json!({ "status": "unready", "version": VERSION, "database": reason }),
        ),
    }
}

/// The node's facts, with counts at most [`COUNTS_TTL`] old; the reason if they cannot be
/// counted.
pub async fn facts(api: &Api) -> Result<Facts, String> {
    let counts = {
        // One count at a time: requests that arrive meanwhile wait for it and share it.
        let mut counted = api.status.counted.lock().await;
        match *counted {
            Some((at, counts)) if at.elapsed() < COUNTS_TTL => counts,
            _ => {
                let counts = api.store.counts(api.did.as_str()).await.map_err(|e| {
                    let reason = crate::report::Causes(&e).to_string();
                    tracing::warn!(error = %reason, "cannot count what the node holds");
                    "the database does not answer".to_owned()
                })?;
                *counted = Some((Instant::now(), counts));
                counts
            }
        }
    };
    Ok(Facts {
        node: api.did.to_string(),
        version: VERSION,
        protocol: PROTOCOL_VERSION,
        url: api.config.origin(),
        registration: api.config.registration.policy.name().to_owned(),
        uptime_secs: api.status.started.elapsed().as_secs(),
        counts,
    })
}

/// The status page; `app`: whether the web app is served, and so linked.
fn page(facts: &Facts, app: bool) -> String {
    let Facts {
        node,
        version,
        protocol,
        url,
        registration,
        uptime_secs,
        counts,
    } = facts;
    let (node, url, registration) = (escape(node), escape(url), escape(registration));
    let uptime = uptime(*uptime_secs);
    let app = if app {
        "<p>In a browser: <a href=\"/app/\" id=\"app\">the web app</a>.</p>\n"
    } else {
        ""
    };
    let Counts {
        users,
        spaces_sequenced,
        spaces_replicated,
        peers,
    } = counts;
    format!(
        "<!doctype html>
<html lang=\"en\">
<head>
<meta charset=\"utf-8\">
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">
<title>Northstar node</title>
<style>
body {{ font: 16px/1.5 system-ui, sans-serif; max-width: 44rem; margin: 2rem auto; padding: 0 1rem; }}
code {{ background: #f3f3f3; padding: 0 .25rem; word-break: break-all; }}
th {{ text-align: left; padding-right: 1rem; font-weight: normal; color: #555; }}
pre {{ background: #f3f3f3; padding: .75rem; overflow-x: auto; }}
</style>
</head>
<body>
<h1>Northstar node</h1>
<table>
<tr><th>Node</th><td><code id=\"node\">{node}</code></td></tr>
<tr><th>Version</th><td>{version} (protocol {protocol})</td></tr>
<tr><th>Up for</th><td>{uptime}</td></tr>
<tr><th>Users</th><td id=\"users\">{users}</td></tr>
<tr><th>Spaces</th><td>{spaces_sequenced} sequenced here, {spaces_replicated} replicated</td></tr>
<tr><th>Peers</th><td>{peers} other nodes</td></tr>
<tr><th>Registration</th><td>{registration}</td></tr>
</table>
<h2>Connect</h2>
<p>Apps and other nodes connect to <code id=\"url\">{url}</code> (JSON-RPC 2.0 over WebSocket).
With the command-line client:</p>
<pre>northstar --node {url} node info</pre>
{app}<p>The same facts as JSON: <a href=\"/.well-known/northstar\">/.well-known/northstar</a>.
Health: <a href=\"/health/live\">/health/live</a>, <a href=\"/health/ready\">/health/ready</a>.</p>
</body>
</html>
"
    )
}

/// `3 d 4 h`, `5 h 2 min`, `12 min`, `40 s`.
fn uptime(secs: u64) -> String {
    let (days, hours, minutes) = (secs / 86_400, secs / 3_600 % 24, secs / 60 % 60);
    match (days, hours, minutes) {
        (0, 0, 0) => format!("{secs} s"),
        (0, 0, m) => format!("{m} min"),
        (0, h, m) => format!("{h} h {m} min"),
        (d, h, _) => format!("{d} d {h} h"),
    }
}

/// `text` with the characters HTML gives a meaning escaped.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn with_type(status: StatusCode, body: String, content_type: &'static str) -> Response<String> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

fn json(status: StatusCode, value: &impl Serialize) -> Response<String> {
    let body = serde_json::to_string(value).unwrap_or_else(|_| "{}".to_owned());
    with_type(status, body, "application/json")
}

fn html(status: StatusCode, body: String) -> Response<String> {
    with_type(status, body, "text/html; charset=utf-8")
}

/// A plain-text answer.
pub fn text(status: StatusCode, body: &'static str) -> Response<String> {
    with_type(status, body.to_owned(), "text/plain; charset=utf-8")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uptime_reads_in_the_largest_units() {
        assert_eq!(uptime(40), "40 s");
        assert_eq!(uptime(12 * 60 + 5), "12 min");
        assert_eq!(uptime(5 * 3600 + 2 * 60), "5 h 2 min");
        assert_eq!(uptime(3 * 86_400 + 4 * 3600 + 59), "3 d 4 h");
    }

    #[test]
    fn text_put_in_a_page_cannot_open_markup() {
        assert_eq!(
            escape(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }
}
