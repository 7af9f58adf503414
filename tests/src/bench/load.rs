//! Load from SDK clients: posts at a steady rate, or with a window in flight, each recorded
//! with when it was sent and the seq its ack gave it.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures_util::{StreamExt, TryStreamExt};
use northstar_protocol::address::SpaceId;
use northstar_sdk::Client;
use tokio::task::JoinSet;

/// A chat-sized beam body.
pub const BODY: &str = "Northstar benchmark beam: a chat-sized message of about two hundred \
                        bytes, long enough to look like what people post and short enough to \
                        keep the figure about the node rather than about copying bytes.";

/// Post `count` beams at `rate` per second, on schedule whether or not earlier posts were
/// acknowledged (so a slow node shows as latency, not as fewer posts); when each was sent, by
/// seq.
pub async fn post_paced(
    author: &Client,
    space: &SpaceId,
    count: usize,
    rate: f64,
) -> anyhow::Result<HashMap<u64, Instant>> {
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    let mut tasks = JoinSet::new();
    for i in 0..count {
        tick.tick().await;
        let (author, space) = (author.clone(), space.clone());
        tasks.spawn(async move {
            let sent = Instant::now();
            let ack = author.post(&space, &format!("paced #{i}"), BODY).await?;
            anyhow::Ok((ack.seq, sent))
        });
    }
    let mut sent = HashMap::with_capacity(count);
    while let Some(done) = tasks.join_next().await {
        let (seq, at) = done??;
        sent.insert(seq, at);
    }
    Ok(sent)
}

/// Post `count` beams with up to `window` in flight on the author's one connection; when each
/// was sent, by seq.
pub async fn post_window(
    author: &Client,
    space: &SpaceId,
    count: usize,
    window: usize,
) -> anyhow::Result<HashMap<u64, Instant>> {
    futures_util::stream::iter(0..count)
        .map(|i| async move {
            let sent = Instant::now();
            let ack = author.post(space, &format!("window #{i}"), BODY).await?;
            anyhow::Ok((ack.seq, sent))
        })
        .buffer_unordered(window.max(1))
        .try_collect()
        .await
}
