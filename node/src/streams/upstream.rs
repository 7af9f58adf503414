//! The links a member node keeps upstream while it has watchers of a stream it does not
//! sequence (`spec/protocol.md` §10.6): one to each parent in the stream's tree, and one to the
//! sequencer while no parent link is open. Each link is a WebSocket on which the node calls
//! `stream.watch` as any client would, with `since` set to the newest frame it took, and takes
//! the frames that come: placed by header, checked once, handed to its own watches.
//!
//! One task per stream decides which links should run (every 200 ms); one task per link dials,
//! watches and reads, and after a failure dials again after a backoff. A link that delivers a
//! frame that fails its checks is closed: the parent misbehaves, and the other parent (or the
//! sequencer) goes on.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use northstar_protocol::frame::Header;
use northstar_protocol::method;
use northstar_protocol::wire::Home;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::{Stream, StreamError, Streams};
use crate::clock::now_ms;

/// How often the links of a stream are looked at.
const TICK: Duration = Duration::from_millis(200);

/// How long no parent link may be open before the node also watches at the sequencer.
const FALLBACK_AFTER: Duration = Duration::from_millis(500);

/// How long the links stay after the last watch went.
const IDLE: Duration = Duration::from_secs(10);

/// The wait after a failed link; it doubles up to [`MAX_BACKOFF`], and starts again from here
/// after a link that was up for [`STEADY`] or ended its watch cleanly.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// How long a link must have been up for its failure to count as a new one, not one more of a
/// run of failures.
const STEADY: Duration = MAX_BACKOFF;

/// How long a dial and the WebSocket handshake may take.
const DIAL_TIMEOUT: Duration = Duration::from_secs(5);

/// The longest message read on a link: the largest frame the encoding allows. The sequencer
/// sets the stream's real limit; a relay takes what it took.
const MAX_MESSAGE: usize = northstar_protocol::frame::MAX_PAYLOAD + 2048;

/// Start the upstream links of `stream`, unless they run already.
pub fn ensure(streams: Arc<Streams>, stream: Arc<Stream>) {
    let stop = streams.stop.child_token();
    let Some(run) = stream.start_upstream(&stop) else {
        return;
    };
    let span = tracing::debug_span!("upstream", space = %stream.space, run);
    let tasks = streams.tasks.clone();
    tasks.spawn(manage(streams, stream, run, stop).instrument(span));
}

/// One running link.
struct Link {
    up: Arc<AtomicBool>,
    stop: CancellationToken,
}

impl Drop for Link {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Run the links of `stream` for the run `run` of them, until `stop` or no watch is left.
async fn manage(streams: Arc<Streams>, stream: Arc<Stream>, run: u64, stop: CancellationToken) {
    let mut links: HashMap<Home, Link> = HashMap::new();
    let mut tree_read = Instant::now();
    let mut parentless_since = Instant::now();
    loop {
        if stop.is_cancelled() || stream.retire_upstream(run, now_ms(), IDLE) {
            break;
        }
        if tree_read.elapsed() >= streams.sync_every {
            tree_read = Instant::now();
            if let Err(e) = streams.refresh_tree(&stream).await {
                tracing::debug!(error = %crate::report::Causes(&e), "cannot read the stream's tree");
            }
        }
        let parents = stream.routing().parents(&streams.own, &stream.sequencer);
        let parent_up = parents
            .iter()
            .any(|p| links.get(p).is_some_and(|l| l.up.load(Ordering::Relaxed)));
        if parent_up {
            parentless_since = Instant::now();
        }
        let mut wanted = parents;
        if (wanted.is_empty() || parentless_since.elapsed() >= FALLBACK_AFTER)
            && !wanted.contains(&stream.sequencer)
        {
            wanted.push(stream.sequencer.clone());
        }
        links.retain(|home, _| wanted.contains(home));
        for home in wanted {
            links.entry(home.clone()).or_insert_with(|| {
                let link = Link {
                    up: Arc::new(AtomicBool::new(false)),
                    stop: stop.child_token(),
                };
                let span = tracing::debug_span!("link", peer = %home.authority);
                streams.tasks.spawn(
                    follow_loop(
                        streams.clone(),
                        stream.clone(),
                        home,
                        link.up.clone(),
                        link.stop.clone(),
                    )
                    .instrument(span),
                );
                link
            });
        }
        tokio::select! {
            () = stop.cancelled() => break,
            () = tokio::time::sleep(TICK) => {}
        }
    }
    drop(links);
    // Only this run's mark: a watch may have started the next run since this one retired.
    stream.stop_upstream(run);
    stop.cancel();
    tracing::debug!("upstream links closed");
}

/// Keep one link open until `stop`: dial, watch, read; after a failure wait and dial again.
async fn follow_loop(
    streams: Arc<Streams>,
    stream: Arc<Stream>,
    target: Home,
    up: Arc<AtomicBool>,
    stop: CancellationToken,
) {
    let mut backoff = Backoff::default();
    loop {
        let mut up_since = None;
        let result = tokio::select! {
            () = stop.cancelled() => return,
            result = follow(&streams, &stream, &target, &up, &mut up_since) => result,
        };
        up.store(false, Ordering::Relaxed);
        let steady = up_since.is_some_and(|since: Instant| since.elapsed() >= STEADY);
        let wait = backoff.wait(result.is_ok() || steady);
        match result {
            Ok(()) => tracing::debug!("upstream ended the watch"),
            Err(e) => {
                tracing::debug!(error = %crate::report::Causes(&e), ?wait, "upstream link failed");
            }
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
        }
    }
}

/// The waits between a link's dials.
#[derive(Debug)]
struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            next: FIRST_BACKOFF,
        }
    }
}

impl Backoff {
    /// The wait before dialling again after a link ended: [`FIRST_BACKOFF`] if it went well
    /// (`fresh`: up for [`STEADY`], or ended cleanly), else double the wait before, up to
    /// [`MAX_BACKOFF`].
    fn wait(&mut self, fresh: bool) -> Duration {
        if fresh {
            self.next = FIRST_BACKOFF;
        }
        let wait = self.next;
        self.next = (wait * 2).min(MAX_BACKOFF);
        wait
    }
}

/// Why an upstream link ended.
#[derive(Debug, thiserror::Error)]
enum LinkError {
    #[error("cannot reach {0}: {1}")]
    Dial(String, String),
    #[error("the link broke")]
    Broken(#[from] tokio_tungstenite::tungstenite::Error),
    #[error("the parent refused stream.watch: {0}")]
    Refused(String),
    #[error("the parent sent a bad frame")]
    BadFrame(#[source] StreamError),
}

/// Dial `target`, watch the stream there and take its frames until the link ends.
async fn follow(
    streams: &Streams,
    stream: &Stream,
    target: &Home,
    up: &AtomicBool,
    up_since: &mut Option<Instant>,
) -> Result<(), LinkError> {
    let url = format!("{}://{}/", streams.scheme, target.authority);
    let dial = |e: String| LinkError::Dial(target.authority.clone(), e);
    let tcp = tokio::time::timeout(DIAL_TIMEOUT, TcpStream::connect(&target.authority))
        .await
        .map_err(|_| dial("timed out".into()))?
        .map_err(|e| dial(e.to_string()))?;
    // Frames are latency-bound; the kernel must not hold them back.
    tcp.set_nodelay(true).map_err(|e| dial(e.to_string()))?;
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE))
        .max_frame_size(Some(MAX_MESSAGE));
    let (mut ws, _) = tokio::time::timeout(
        DIAL_TIMEOUT,
        tokio_tungstenite::client_async_with_config(url.as_str(), tcp, Some(config)),
    )
    .await
    .map_err(|_| dial("the WebSocket handshake timed out".into()))??;
    let params = match stream.newest() {
        Some(since) => json!([stream.space, since]),
        None => json!([stream.space]),
    };
    let request =
        json!({"jsonrpc": "2.0", "id": 1, "method": method::STREAM_WATCH, "params": params});
    ws.send(Message::text(request.to_string())).await?;
    while let Some(message) = ws.next().await {
        match message? {
            Message::Binary(bytes) => {
                let header = Header::read(&bytes).map_err(|e| LinkError::BadFrame(e.into()))?;
                stream
                    .relay(&header, bytes, &streams.limits, now_ms())
                    .map_err(LinkError::BadFrame)?;
            }
            Message::Text(text) => {
                let Ok(value) = serde_json::from_str::<Value>(text.as_str()) else {
                    continue;
                };
                if value.get("id") == Some(&json!(1)) {
                    if let Some(error) = value.get("error") {
                        return Err(LinkError::Refused(error.to_string()));
                    }
                    up.store(true, Ordering::Relaxed);
                    *up_since = Some(Instant::now());
                } else if value.get("method").and_then(Value::as_str) == Some(method::STREAM_CLOSED)
                {
                    return Ok(());
                }
            }
            Message::Close(_) => return Ok(()),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_its_cap_and_starts_again_after_a_link_that_went_well() {
        let mut backoff = Backoff::default();
        let waits: Vec<_> = (0..8).map(|_| backoff.wait(false).as_millis()).collect();
        assert_eq!(waits, [100, 200, 400, 800, 1600, 3200, 5000, 5000]);
        // A link that stayed up, then failed: the first wait again, doubling from there.
        assert_eq!(backoff.wait(true), FIRST_BACKOFF);
        assert_eq!(backoff.wait(false), FIRST_BACKOFF * 2);
    }
}
