//! Live streams spoken raw on the wire: the owner's publishing connection, which signs its
//! frames, and watchers that read and check each frame they get, each in a task of its own.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt, TryStreamExt};
use northstar_protocol::address::SpaceId;
use northstar_protocol::frame::{Frame, Header};
use northstar_protocol::{Keypair, method};
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::{Bytes, Message};
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

use crate::bench::ceiling::now_ms;
use crate::bench::raw::{self, RawConn};
use crate::bench::report::median;

/// Watches opened at once.
const OPEN_CONCURRENCY: usize = 64;

/// Every `KEY_EVERY`-th frame is a key frame.
const KEY_EVERY: u64 = 25;

/// `n` connections to `url`, each watching `space`.
pub async fn watch_all(url: &str, space: &SpaceId, n: usize) -> anyhow::Result<Vec<raw::Ws>> {
    futures_util::stream::iter(0..n)
        .map(|_| async move {
            let mut conn = RawConn::connect(url).await?;
            conn.call(method::STREAM_WATCH, json!([space])).await?;
            anyhow::Ok(conn.into_ws())
        })
        .buffered(OPEN_CONCURRENCY)
        .try_collect()
        .await
}

/// `stream.info` of `space` at `url`.
pub async fn stream_info(url: &str, space: &SpaceId) -> anyhow::Result<Value> {
    RawConn::connect(url)
        .await?
        .call(method::STREAM_INFO, json!([space]))
        .await
}

/// A stream's owner, numbering and signing its frames.
pub struct Owner {
    /// The owner's key.
    pub key: Keypair,
    /// The stream.
    pub space: SpaceId,
    /// The number of the next frame.
    pub next: u64,
}

impl Owner {
    /// The next frame, of `size` payload bytes, encoded.
    pub fn sign(&mut self, size: usize) -> anyhow::Result<Vec<u8>> {
        let number = self.next;
        let frame = Frame::sign(
            &self.key,
            self.space.clone(),
            number,
            now_ms(),
            number % KEY_EVERY == 1,
            vec![number as u8; size],
        )?;
        self.next += 1;
        Ok(frame.encode()?)
    }

    /// The next `count` frames.
    pub fn sign_burst(&mut self, count: usize, size: usize) -> anyhow::Result<Vec<Vec<u8>>> {
        (0..count).map(|_| self.sign(size)).collect()
    }

    /// The length of a frame of `size` payload bytes.
    pub fn frame_len(&self, size: usize) -> anyhow::Result<usize> {
        Ok(self.sample(size)?.len())
    }

    /// The median time to verify a frame of `size` payload bytes on one core, seconds.
    pub fn verify_cost(&self, size: usize) -> anyhow::Result<f64> {
        const TIMES: usize = 200;
        let bytes = self.sample(size)?;
        let header = Header::read(&bytes)?;
        let mut samples = Vec::with_capacity(TIMES);
        for _ in 0..TIMES {
            let start = Instant::now();
            header.verify(&bytes)?;
            samples.push(start.elapsed().as_secs_f64());
        }
        Ok(median(&samples))
    }

    /// A frame like the next, not counted.
    fn sample(&self, size: usize) -> anyhow::Result<Vec<u8>> {
        let frame = Frame::sign(
            &self.key,
            self.space.clone(),
            self.next,
            now_ms(),
            false,
            vec![0; size],
        )?;
        Ok(frame.encode()?)
    }
}

/// The owner's publishing connection to the stream's sequencer.
pub struct Publisher {
    /// Who signs, and the next number.
    pub owner: Owner,
    sink: SplitSink<raw::Ws, Message>,
    /// `stream.refused` notices received, and the first.
    refused: watch::Receiver<(u64, Option<String>)>,
    _reader: AbortOnDropHandle<()>,
}

impl Publisher {
    /// Authenticate as the owner at `url` and call `stream.publish`.
    pub async fn open(url: &str, key: &Keypair, space: &SpaceId) -> anyhow::Result<Self> {
        let mut conn = RawConn::connect(url).await?;
        conn.authenticate(key).await?;
        let answer = conn.call(method::STREAM_PUBLISH, json!([space])).await?;
        let next = answer["next"]
            .as_u64()
            .context("stream.publish gave no next")?;
        let (sink, mut stream) = conn.into_ws().split();
        let (tx, refused) = watch::channel((0, None));
        // Taken frames get no answer (§10.2): all the publisher reads is refusals.
        let reader = tokio::spawn(async move {
            while let Some(Ok(message)) = stream.next().await {
                let Message::Text(text) = message else {
                    continue;
                };
                let Ok(value) = serde_json::from_str::<Value>(&text) else {
                    continue;
                };
                if value["method"] == method::STREAM_REFUSED {
                    tx.send_modify(|(n, first)| {
                        *n += 1;
                        first.get_or_insert_with(|| value["params"].to_string());
                    });
                }
            }
        });
        Ok(Self {
            owner: Owner {
                key: key.clone(),
                space: space.clone(),
                next,
            },
            sink,
            refused,
            _reader: AbortOnDropHandle::new(reader),
        })
    }

    /// Send `frames` back to back, one flush at the end.
    pub async fn send_all(&mut self, frames: &[Bytes]) -> anyhow::Result<()> {
        for frame in frames {
            // A clone shares the bytes.
            self.sink.feed(Message::Binary(frame.clone())).await?;
        }
        self.sink.flush().await?;
        Ok(())
    }

    /// Sign and send `count` frames of `size` bytes at `rate` per second, on schedule; when
    /// each was sent, by number.
    pub async fn paced(
        &mut self,
        count: u64,
        rate: f64,
        size: usize,
    ) -> anyhow::Result<HashMap<u64, Instant>> {
        let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
        let mut sent = HashMap::with_capacity(count as usize);
        for _ in 0..count {
            tick.tick().await;
            let number = self.owner.next;
            let frame = self.owner.sign(size)?;
            sent.insert(number, Instant::now());
            self.sink.send(Message::binary(frame)).await?;
        }
        Ok(sent)
    }

    /// Fail if the node refused a frame: the limits are raised, so none should be.
    pub fn check(&self) -> anyhow::Result<()> {
        let (n, first) = &*self.refused.borrow();
        if *n > 0 {
            bail!(
                "the node refused {n} frames; the first: {}",
                first.as_deref().unwrap_or("?")
            );
        }
        Ok(())
    }
}

/// What one watcher saw.
pub struct Watched {
    /// Its connection, to read again in the next run.
    pub ws: raw::Ws,
    /// `(number, when)` of each frame above the last it took.
    pub seen: Vec<(u64, Instant)>,
    /// Why it stopped on its own before the last frame: a bad frame, the watch ended, the
    /// connection closed. `None` also when it was stopped, the last frame not come.
    pub ended: Option<String>,
}

/// Watchers reading frames, each in a task of its own, until the frame numbered `until`.
pub struct Followers {
    tasks: Vec<AbortOnDropHandle<Watched>>,
    /// Frames received by all, to tell when nothing more is coming.
    progress: Arc<AtomicU64>,
    /// The newest number each watcher took (0 for none yet).
    newest: Arc<[AtomicU64]>,
    /// Watchers done.
    done: watch::Receiver<usize>,
    stop: CancellationToken,
}

impl Followers {
    /// Start reading each connection; watcher `i` verifies the signature of each frame whose
    /// number is `i` modulo `verify_every`.
    pub fn spawn(conns: Vec<raw::Ws>, space: &SpaceId, until: u64, verify_every: u64) -> Self {
        let progress = Arc::new(AtomicU64::new(0));
        let newest: Arc<[AtomicU64]> = conns.iter().map(|_| AtomicU64::new(0)).collect();
        let (done_tx, done) = watch::channel(0);
        let done_tx = Arc::new(done_tx);
        let stop = CancellationToken::new();
        let tasks = conns
            .into_iter()
            .enumerate()
            .map(|(i, ws)| {
                let reading = Reading {
                    index: i,
                    newest: newest.clone(),
                    space: space.clone(),
                    until,
                    verify_every,
                    verify_at: i as u64 % verify_every,
                    progress: progress.clone(),
                    stop: stop.clone(),
                };
                let done_tx = done_tx.clone();
                AbortOnDropHandle::new(tokio::spawn(async move {
                    let watched = reading.follow(ws).await;
                    done_tx.send_modify(|n| *n += 1);
                    watched
                }))
            })
            .collect();
        Self {
            tasks,
            progress,
            newest,
            done,
            stop,
        }
    }

    /// The newest number the slowest watcher took (0 if one took none).
    pub fn slowest(&self) -> u64 {
        self.newest
            .iter()
            .map(|n| n.load(Ordering::Relaxed))
            .min()
            .unwrap_or(0)
    }

    /// Wait until every watcher has the last frame, or nothing has arrived anywhere for
    /// `quiet`, or `limit` has passed; then stop those still reading. What each saw.
    pub async fn collect(
        mut self,
        quiet: Duration,
        limit: Duration,
    ) -> anyhow::Result<Vec<Watched>> {
        let total = self.tasks.len();
        let deadline = tokio::time::Instant::now() + limit;
        let mut heard = (self.progress.load(Ordering::Relaxed), Instant::now());
        let look_every = quiet / 4;
        loop {
            tokio::select! {
                all = self.done.wait_for(|n| *n >= total) => {
                    all.context("the watchers are gone")?;
                    break;
                }
                () = tokio::time::sleep(look_every) => {}
            }
            let now = Instant::now();
            let progress = self.progress.load(Ordering::Relaxed);
            if progress != heard.0 {
                heard = (progress, now);
            } else if now - heard.1 >= quiet {
                break;
            }
            if tokio::time::Instant::now() >= deadline {
                break;
            }
        }
        self.stop.cancel();
        let mut watched = Vec::with_capacity(total);
        for task in self.tasks {
            watched.push(task.await.context("a watcher's task failed")?);
        }
        Ok(watched)
    }
}

/// How one watcher reads.
struct Reading {
    /// Which watcher: its slot in `newest`.
    index: usize,
    newest: Arc<[AtomicU64]>,
    space: SpaceId,
    until: u64,
    verify_every: u64,
    verify_at: u64,
    progress: Arc<AtomicU64>,
    stop: CancellationToken,
}

impl Reading {
    /// Read frames until the one numbered `until` (or a later one) arrives or `stop` fires.
    /// Each frame's header is read strictly and must name the stream; a frame not above the
    /// last taken (late, from a relay's slower parent) is ignored, as §10.3 asks of watchers.
    async fn follow(self, mut ws: raw::Ws) -> Watched {
        let mut seen = Vec::new();
        let mut newest: Option<u64> = None;
        let ended = loop {
            let message = tokio::select! {
                biased;
                () = self.stop.cancelled() => break None,
                message = ws.next() => message,
            };
            let at = Instant::now();
            let bytes = match message {
                Some(Ok(Message::Binary(bytes))) => bytes,
                Some(Ok(Message::Text(text))) => {
                    let value: Value = serde_json::from_str(&text).unwrap_or_default();
                    if value["method"] == method::STREAM_CLOSED {
                        break Some(format!("the node ended the watch: {}", value["params"]));
                    }
                    continue;
                }
                Some(Ok(Message::Close(_))) | None => break Some("the connection closed".into()),
                Some(Ok(_)) => continue,
                Some(Err(e)) => break Some(e.to_string()),
            };
            let header = match Header::read(&bytes) {
                Ok(header) => header,
                Err(e) => break Some(format!("not a frame: {e}")),
            };
            if header.space != self.space {
                break Some(format!("a frame of {}", header.space));
            }
            if header.number % self.verify_every == self.verify_at
                && let Err(e) = header.verify(&bytes)
            {
                break Some(format!("frame {}: {e}", header.number));
            }
            if newest.is_some_and(|n| header.number <= n) {
                continue;
            }
            newest = Some(header.number);
            seen.push((header.number, at));
            self.progress.fetch_add(1, Ordering::Relaxed);
            self.newest[self.index].store(header.number, Ordering::Relaxed);
            if header.number >= self.until {
                break None;
            }
        };
        Watched { ws, seen, ended }
    }
}
