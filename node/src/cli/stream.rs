//! `northstar stream …`: publish stdin as a stream's frames, write a stream's frames to stdout,
//! and ask a node about a stream. SPACE arguments take a space id or a space URI.
//!
//! `publish` marks the broadcast in the stream's log as `spec/protocol.md` §10.8 describes: a
//! beam titled `live` with body `started at frame N` before its first frame, and one with body
//! `ended after frame M` after its last. `watch` stops at that end mark.
//!
//! JSON keys (a contract): `publish --json` prints one object, `space`, `frames`, `bytes`,
//! `first`, `last` (`null` when nothing was published) and `refused`; `info --json` prints
//! `stream.info`'s result as the SDK reads it ([`StreamInfo`]): `space`, `owner`, `sequencer`,
//! `live`, `newest` and `newest_key` (absent when there is none), `window`, `watchers`,
//! `dropped`, `parents`, `children` and `limits` (`max_frame_bytes`, `max_frames_per_second`,
//! `max_bytes_per_second`). `watch` writes payloads to stdout, so it prints no JSON.

use std::io::{Read, Write};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Subcommand;
use futures_util::StreamExt;
use northstar_sdk::protocol::address::{SpaceId, SpaceUri, URI_SCHEME};
use northstar_sdk::protocol::api::{ErrorCode, StreamInfo};
use northstar_sdk::protocol::frame::MAX_PAYLOAD;
use northstar_sdk::protocol::wire::{Event, Payload};
use northstar_sdk::stream::{Publisher, Watch};
use northstar_sdk::{Client, SdkError, StreamError, parse_space};
use serde_json::json;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::{Global, Output};

/// The title of the beams that mark a broadcast's start and end (§10.8).
const MARK_TITLE: &str = "live";

/// The body of the start mark, before the first frame's number.
const STARTED_AT: &str = "started at frame ";

/// The body of the end mark, before the last frame's number.
const ENDED_AFTER: &str = "ended after frame ";

/// How long `watch` waits for the last frame the end mark names, after the mark or after the
/// last frame that came since.
const END_GRACE: Duration = Duration::from_secs(3);

/// Chunks read ahead from stdin. When they are all waiting, the reading thread blocks, and so
/// does whatever writes into the pipe: the publisher's pace reaches the source.
const INPUT_CHUNKS: usize = 4;

/// Payloads handed to the stdout writer ahead of it. When they are all waiting, the watch
/// waits too, and the node sees a slow watcher.
const OUTPUT_FRAMES: usize = 4;

/// The first wait before watching again after an interruption; it doubles up to
/// [`REWATCH_MAX`].
const REWATCH_FIRST: Duration = Duration::from_millis(100);

/// The longest wait between two attempts to watch again.
const REWATCH_MAX: Duration = Duration::from_secs(5);

#[derive(Debug, Subcommand)]
pub(super) enum StreamCommand {
    /// Publish stdin as the stream's live frames, as its owner, at its sequencer (--node).
    ///
    /// Frames are paced under the node's limits (and --rate), so any input can be piped in:
    /// `ffmpeg -re -i in.mp4 -c copy -f mpegts - | northstar stream publish SPACE`. Prints a
    /// summary at the end: text on stderr, or one JSON object on stdout with --json.
    Publish {
        /// The stream's id or URI.
        space: String,
        /// The most payload bytes per frame; at most the node's limit.
        #[arg(
            long,
            value_name = "N",
            default_value_t = 16384,
            value_parser = clap::value_parser!(u32).range(1..=MAX_PAYLOAD as i64)
        )]
        frame_bytes: u32,
        /// Make every N-th frame a key frame, where a watcher joining late starts; the default
        /// 1 makes every frame one (right for a byte stream such as MPEG-TS).
        #[arg(
            long,
            value_name = "N",
            default_value_t = 1,
            value_parser = clap::value_parser!(u64).range(1..)
        )]
        key_every: u64,
        /// The most payload bytes per second, below the node's own limit: an integer, or with
        /// a suffix k (1024) or M (1048576), as `500k`.
        #[arg(long, value_name = "BYTES_PER_SEC", value_parser = parse_rate)]
        rate: Option<u64>,
    },
    /// Write a stream's frames to stdout, in order, until its owner's end mark (or --frames).
    ///
    /// Stops once the owner's `ended after frame M` mark, posted after the watch began, has
    /// been seen and frame M (or a later one) written, or when 3 s pass after the mark
    /// without a frame. Gaps are reported on stderr. An interrupted watch (the node cut a slow
    /// watcher off, or the connection dropped) resumes after the last frame written.
    Watch {
        /// The stream's id or URI.
        space: String,
        /// Start after this frame number, else at the node's latest key frame.
        #[arg(long, value_name = "N")]
        since: Option<u64>,
        /// Stop after writing this many frames.
        #[arg(long, value_name = "N")]
        frames: Option<u64>,
    },
    /// Print the stream as the node sees it: live or not, newest frames, watchers, tree
    /// neighbours, limits.
    Info {
        /// The stream's id or URI.
        space: String,
    },
}

pub(super) async fn run(
    command: StreamCommand,
    global: &Global,
    out: &Output,
) -> anyhow::Result<()> {
    match command {
        StreamCommand::Publish {
            space,
            frame_bytes,
            key_every,
            rate,
        } => {
            let options = PublishOptions {
                frame_bytes,
                key_every,
                rate,
            };
            publish(global, out, &space, options).await
        }
        StreamCommand::Watch {
            space,
            since,
            frames,
        } => watch(global, &space, since, frames).await,
        StreamCommand::Info { space } => {
            let space = parse_space(&space)?;
            let client = global.connect_as_reader().await?;
            let info = client.stream_info(&space).await?;
            out.print(serde_json::to_value(&info)?, || info_text(&info))
        }
    }
}

struct PublishOptions {
    frame_bytes: u32,
    key_every: u64,
    rate: Option<u64>,
}

/// What a publish run sent.
#[derive(Debug, Default)]
struct Summary {
    frames: u64,
    bytes: u64,
    first: Option<u64>,
    last: Option<u64>,
    refused: u64,
}

async fn publish(
    global: &Global,
    out: &Output,
    space_text: &str,
    options: PublishOptions,
) -> anyhow::Result<()> {
    let space = parse_space(space_text)?;
    let client = global.connect_as_user().await?;
    let mut publisher = match client.publisher(&space).await {
        Err(err) if err.code() == Some(ErrorCode::NotSequencer) => {
            let at = sequencer_authority(&client, &space, space_text).await;
            return Err(anyhow::Error::new(err).context(format!(
                "{} is not this stream's sequencer: publish at {at} (--node ws://{at})",
                global.node
            )));
        }
        other => other?,
    };
    let max = publisher.limits().max_frame_bytes;
    if options.frame_bytes > max {
        bail!(
            "--frame-bytes {} is over the node's limit of {max} bytes per frame",
            options.frame_bytes
        );
    }
    publisher.set_rate(options.rate);

    let mut summary = Summary::default();
    let sent = send_stdin(&client, &mut publisher, &options, &mut summary).await;
    let settled = publisher.settle().await;
    // Every refusal the node sent before its last answer, whether or not `settle` failed on
    // one of them.
    summary.refused = publisher.refused();
    publisher.close().await;
    if let Some(last) = summary.last {
        post_mark(&client, &space, &format!("{ENDED_AFTER}{last}"))
            .await
            .context("cannot post the end mark")?;
    }
    match settled {
        Ok(_) => {}
        Err(err @ SdkError::Stream(StreamError::Refused { .. })) => eprintln!("warning: {err}"),
        // The frames are out; only the node's final word is missing.
        Err(err) => eprintln!("warning: cannot confirm the last frames: {err}"),
    }
    print_summary(out, &space, &summary)?;
    sent?;
    if summary.refused > 0 {
        bail!(
            "the node refused {} frame(s): watchers missed them",
            summary.refused
        );
    }
    Ok(())
}

/// Publish stdin frame by frame until it ends; the start mark goes before the first frame.
async fn send_stdin(
    client: &Client,
    publisher: &mut Publisher,
    options: &PublishOptions,
    summary: &mut Summary,
) -> anyhow::Result<()> {
    let mut input = Input::spawn(options.frame_bytes as usize)?;
    loop {
        // Waiting for the frame budget first lets the payload take in all that came meanwhile.
        publisher.ready().await;
        let Some(payload) = input.next(options.frame_bytes as usize).await? else {
            return Ok(());
        };
        if summary.first.is_none() {
            let body = format!("{STARTED_AT}{}", publisher.next());
            post_mark(client, publisher.space(), &body)
                .await
                .context("cannot post the start mark")?;
        }
        let key = summary.frames.is_multiple_of(options.key_every);
        // A refusal is of a frame sent before: that frame is lost, this payload was not sent
        // and goes on the next try. Each try reports only refusals newer than the last, and
        // none come for frames not sent, so this ends.
        let number = loop {
            match publisher.publish(&payload[..], key).await {
                Ok(number) => break number,
                Err(err @ SdkError::Stream(StreamError::Refused { .. })) => {
                    eprintln!("warning: {err}");
                }
                Err(err) => return Err(err.into()),
            }
        };
        summary.frames += 1;
        summary.bytes += payload.len() as u64;
        summary.first.get_or_insert(number);
        summary.last = Some(number);
    }
}

/// Post a `live` mark; once more on a new connection if the client's has failed (a broadcast
/// can outlast it).
async fn post_mark(client: &Client, space: &SpaceId, body: &str) -> Result<(), SdkError> {
    match client.post(space, MARK_TITLE, body).await {
        Err(err) if err.is_transient() => {
            client
                .reconnect()
                .await?
                .post(space, MARK_TITLE, body)
                .await?;
        }
        other => {
            other?;
        }
    }
    Ok(())
}

fn print_summary(out: &Output, space: &SpaceId, summary: &Summary) -> anyhow::Result<()> {
    if out.json {
        return out.print(
            json!({
                "space": space.as_str(),
                "frames": summary.frames,
                "bytes": summary.bytes,
                "first": summary.first,
                "last": summary.last,
                "refused": summary.refused,
            }),
            String::new,
        );
    }
    let range = match (summary.first, summary.last) {
        (Some(first), Some(last)) => format!(", frames {first} to {last}"),
        _ => String::new(),
    };
    eprintln!(
        "published {} frames, {} bytes{range} of {space}",
        summary.frames, summary.bytes
    );
    Ok(())
}

/// The authority of the stream's sequencer, for a hint: from the URI given, else from the
/// space as this node knows it.
async fn sequencer_authority(client: &Client, space: &SpaceId, given: &str) -> String {
    if given.starts_with(URI_SCHEME)
        && let Ok(uri) = SpaceUri::parse(given)
    {
        return uri.authority;
    }
    match client.get_space(space).await {
        Ok(info) => SpaceUri::parse(&info.uri).map_or(info.uri, |uri| uri.authority),
        Err(_) => "the node in the stream's URI".to_owned(),
    }
}

/// Stdin, read ahead on a thread of its own: a blocking read cannot be cancelled, so it must
/// not run on the runtime's blocking pool, whose shutdown would wait for it. The thread ends at
/// the end of input or when [`Input`] is gone; the process does not wait for it.
struct Input {
    chunks: mpsc::Receiver<std::io::Result<Vec<u8>>>,
    pending: Vec<u8>,
}

impl Input {
    fn spawn(chunk: usize) -> anyhow::Result<Self> {
        let (tx, chunks) = mpsc::channel(INPUT_CHUNKS);
        std::thread::Builder::new()
            .name("stdin".into())
            .spawn(move || {
                let mut stdin = std::io::stdin().lock();
                loop {
                    let mut buf = vec![0; chunk];
                    let read = match stdin.read(&mut buf) {
                        Ok(0) => return,
                        Ok(n) => {
                            buf.truncate(n);
                            Ok(buf)
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                        Err(e) => Err(e),
                    };
                    let failed = read.is_err();
                    if tx.blocking_send(read).is_err() || failed {
                        return;
                    }
                }
            })
            .context("cannot start reading stdin")?;
        Ok(Self::new(chunks))
    }

    fn new(chunks: mpsc::Receiver<std::io::Result<Vec<u8>>>) -> Self {
        Self {
            chunks,
            pending: Vec::new(),
        }
    }

    /// The next payload: between 1 and `max` bytes, all that has arrived up to `max`; `None`
    /// at the end of input.
    async fn next(&mut self, max: usize) -> anyhow::Result<Option<Vec<u8>>> {
        if self.pending.is_empty() {
            match self.chunks.recv().await {
                None => return Ok(None),
                Some(chunk) => self.pending = chunk.context("cannot read stdin")?,
            }
        }
        while self.pending.len() < max {
            match self.chunks.try_recv() {
                Ok(chunk) => self
                    .pending
                    .extend_from_slice(&chunk.context("cannot read stdin")?),
                Err(_) => break,
            }
        }
        let rest = self.pending.split_off(self.pending.len().min(max));
        Ok(Some(std::mem::replace(&mut self.pending, rest)))
    }
}

async fn watch(
    global: &Global,
    space_text: &str,
    since: Option<u64>,
    limit: Option<u64>,
) -> anyhow::Result<()> {
    // One listener for the whole watch, so Ctrl-C ends it whatever it waits for: a frame, a
    // node that is down, or a reader that stopped reading.
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let mut out = Sink::spawn()?;
    let followed = follow(global, space_text, since, limit, &mut out, &mut ctrl_c).await?;
    if followed == Followed::Interrupted {
        return Ok(());
    }
    // Every frame taken is written before the watch ends.
    match or_ctrl_c(&mut ctrl_c, out.finish()).await? {
        None | Some(Ok(())) => Ok(()),
        // The reader went away (a player closed): nothing left to do.
        Some(Err(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Some(Err(e)) => Err(e).context("cannot write to stdout"),
    }
}

/// How [`follow`] ended.
#[derive(Debug, PartialEq, Eq)]
enum Followed {
    /// The stream ended, or the frames asked for came, or stdout stopped taking them.
    Done,
    /// Ctrl-C.
    Interrupted,
}

/// `fut`, unless Ctrl-C comes first: then `None`.
async fn or_ctrl_c<T>(
    ctrl_c: &mut (impl Future<Output = std::io::Result<()>> + Unpin),
    fut: impl Future<Output = T>,
) -> anyhow::Result<Option<T>> {
    tokio::select! {
        done = fut => Ok(Some(done)),
        signal = ctrl_c => {
            signal.context("cannot listen for Ctrl-C")?;
            Ok(None)
        }
    }
}

/// Watch the stream and hand its payloads to `out` until it ends, as `watch` documents.
async fn follow(
    global: &Global,
    space_text: &str,
    since: Option<u64>,
    limit: Option<u64>,
    out: &mut Sink,
    ctrl_c: &mut (impl Future<Output = std::io::Result<()>> + Unpin),
) -> anyhow::Result<Followed> {
    let space = parse_space(space_text)?;
    let mut client = global.connect_as_reader().await?;
    // Only an end mark posted from now on ends this watch.
    let head = client.get_space(&space).await?.head_seq;
    let mut events = client.subscribe(&space, head).await?;
    let mut events_open = true;
    let mut watch = client.watch(&space, since).await?;
    let mut written: u64 = 0;
    let mut last_written: Option<u64> = None;
    let mut end: Option<(u64, Instant)> = None;
    loop {
        if limit.is_some_and(|limit| written >= limit) {
            return Ok(Followed::Done);
        }
        if let Some((last, _)) = end
            && last_written.is_some_and(|written| written >= last)
        {
            return Ok(Followed::Done);
        }
        let deadline = end.map(|(_, at)| at);
        tokio::select! {
            item = watch.next() => match item {
                Some(Ok(frame)) => {
                    if frame.gap > 0 {
                        eprintln!("gap: {} frames missing before frame {}", frame.gap, frame.number);
                    }
                    match or_ctrl_c(ctrl_c, out.write(frame.payload)).await? {
                        None => return Ok(Followed::Interrupted),
                        // The writer stopped; `Sink::finish` says why.
                        Some(false) => return Ok(Followed::Done),
                        Some(true) => {}
                    }
                    written += 1;
                    last_written = Some(frame.number);
                    // While frames still come after the end mark, the grace period runs from
                    // the last one: a reader slower than the stream is not cut short.
                    if let Some((_, at)) = &mut end {
                        *at = Instant::now() + END_GRACE;
                    }
                }
                Some(Err(err)) if err.is_transient() => {
                    eprintln!("watch interrupted: {err}; {}", resume_text(watch.last()));
                    match or_ctrl_c(ctrl_c, rewatch(&client, &watch)).await? {
                        Some(again) => watch = again?,
                        None => return Ok(Followed::Interrupted),
                    }
                }
                Some(Err(err @ SdkError::Stream(
                    StreamError::BadFrame { .. } | StreamError::WrongSpace { .. },
                ))) => eprintln!("warning: skipped a frame: {err}"),
                Some(Err(err)) => return Err(err.into()),
                None => {
                    eprintln!("watch ended; {}", resume_text(watch.last()));
                    match or_ctrl_c(ctrl_c, rewatch(&client, &watch)).await? {
                        Some(again) => watch = again?,
                        None => return Ok(Followed::Interrupted),
                    }
                }
            },
            event = events.next(), if events_open => match event {
                Some(Ok(event)) => {
                    if let Some(last) = end_mark(&mut client, &space, &event).await {
                        eprintln!("the owner ended the broadcast after frame {last}");
                        end = Some((last, Instant::now() + END_GRACE));
                    }
                }
                Some(Err(err)) => {
                    eprintln!(
                        "warning: cannot follow the stream's log, so its end mark: {err}; \
                         stop with Ctrl-C or --frames"
                    );
                    events_open = false;
                }
                None => events_open = false,
            },
            () = sleep_until(deadline), if deadline.is_some() => {
                if let Some((last, _)) = end {
                    eprintln!(
                        "frame {last} did not come: nothing came for {} s after the end mark",
                        END_GRACE.as_secs()
                    );
                }
                return Ok(Followed::Done);
            }
            signal = &mut *ctrl_c => {
                signal.context("cannot listen for Ctrl-C")?;
                return Ok(Followed::Interrupted);
            }
        }
    }
}

/// Stdout, written on a thread of its own: a write blocked on a reader that stopped reading
/// cannot be cancelled, so it must hold neither the task that listens for Ctrl-C nor the
/// runtime's blocking pool, whose shutdown would wait for it. The process does not wait for
/// the thread.
struct Sink {
    payloads: mpsc::Sender<Vec<u8>>,
    done: oneshot::Receiver<std::io::Result<()>>,
}

impl Sink {
    fn spawn() -> anyhow::Result<Self> {
        let (payloads, mut rx) = mpsc::channel::<Vec<u8>>(OUTPUT_FRAMES);
        let (done_tx, done) = oneshot::channel();
        std::thread::Builder::new()
            .name("stdout".into())
            .spawn(move || {
                let mut stdout = std::io::stdout().lock();
                let mut written = || -> std::io::Result<()> {
                    while let Some(payload) = rx.blocking_recv() {
                        stdout.write_all(&payload)?;
                        // One flush for whatever arrived together, not one per frame.
                        if rx.is_empty() {
                            stdout.flush()?;
                        }
                    }
                    stdout.flush()?;
                    Ok(())
                };
                // Nobody listens once the watch has ended without waiting for the writes.
                let _ = done_tx.send(written());
            })
            .context("cannot start writing stdout")?;
        Ok(Self { payloads, done })
    }

    /// Hand a payload to the writer, waiting while it is [`OUTPUT_FRAMES`] behind: `false`
    /// when the writer has stopped, on an error [`Sink::finish`] returns.
    async fn write(&mut self, payload: Vec<u8>) -> bool {
        self.payloads.send(payload).await.is_ok()
    }

    /// Wait until everything handed over is written, or the writer's error.
    async fn finish(self) -> std::io::Result<()> {
        drop(self.payloads);
        // The thread sends before it ends, so a closed channel means it panicked.
        self.done
            .await
            .unwrap_or_else(|_| Err(std::io::Error::other("the stdout writer failed")))
    }
}

fn resume_text(last: Option<u64>) -> String {
    match last {
        Some(last) => format!("watching again after frame {last}"),
        None => "watching again".to_owned(),
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Watch again where `watch` stopped (a new run of the stream included), retrying what may
/// pass with a growing delay.
async fn rewatch(client: &Client, watch: &Watch) -> anyhow::Result<Watch> {
    let mut delay = REWATCH_FIRST;
    loop {
        tokio::time::sleep(delay).await;
        match client.resume_watch(watch).await {
            Ok(watch) => return Ok(watch),
            Err(err) if err.is_transient() => {
                eprintln!(
                    "cannot watch yet: {err}; trying again in {} ms",
                    (delay * 2).min(REWATCH_MAX).as_millis()
                );
            }
            Err(err) => return Err(err.into()),
        }
        delay = (delay * 2).min(REWATCH_MAX);
    }
}

/// The frame an event's end mark names, if the event is the stream owner's end mark. The
/// client's connection is replaced if it has failed (a node drops an anonymous reader's after
/// its `auth_timeout_secs`, and a watch can last longer).
async fn end_mark(client: &mut Client, space: &SpaceId, event: &Event) -> Option<u64> {
    let Payload::BeamRef(beam_ref) = &event.payload else {
        return None;
    };
    if event.author() != space.owner() {
        return None;
    }
    let uri = beam_ref.beam_uri();
    let mut got = client.get_beam(&uri).await;
    if matches!(&got, Err(err) if err.is_transient()) {
        match client.reconnect().await {
            Ok(fresh) => {
                *client = fresh;
                got = client.get_beam(&uri).await;
            }
            Err(err) => got = Err(err),
        }
    }
    match got {
        Ok(beam) => parse_end_mark(&beam.title, &beam.body),
        Err(err) => {
            eprintln!("warning: cannot read the owner's post {uri}: {err}");
            None
        }
    }
}

/// `ended after frame M` under the title `live`: M.
fn parse_end_mark(title: &str, body: &str) -> Option<u64> {
    if title != MARK_TITLE {
        return None;
    }
    body.strip_prefix(ENDED_AFTER)?.trim().parse().ok()
}

/// `--rate`: bytes per second, as an integer with an optional suffix k (1024) or M (1048576).
fn parse_rate(text: &str) -> Result<u64, String> {
    let (digits, unit) = match text.strip_suffix(['k', 'K']) {
        Some(digits) => (digits, 1024),
        None => match text.strip_suffix('M') {
            Some(digits) => (digits, 1024 * 1024),
            None => (text, 1),
        },
    };
    let value: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a byte rate such as 250000, 500k or 2M"))?;
    match value.checked_mul(unit) {
        Some(0) => Err("the rate must be above 0".to_owned()),
        Some(rate) => Ok(rate),
        None => Err(format!("{text:?} is too large")),
    }
}

fn info_text(info: &StreamInfo) -> String {
    let newest = match (info.newest, info.newest_key) {
        (Some(newest), Some(key)) => format!("{newest} (newest key frame {key})"),
        (Some(newest), None) => format!("{newest} (no key frame held)"),
        (None, _) => "none".to_owned(),
    };
    let dids = |dids: &[northstar_sdk::Did]| {
        if dids.is_empty() {
            "none".to_owned()
        } else {
            dids.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        }
    };
    let limits = &info.limits;
    format!(
        "space:     {}\n\
         owner:     {}\n\
         sequencer: {}\n\
         live:      {}\n\
         newest:    {newest}\n\
         window:    {} frames\n\
         watchers:  {} ({} frames dropped for slow watchers)\n\
         parents:   {}\n\
         children:  {}\n\
         limits:    {} bytes per frame, {} frames/s, {} bytes/s",
        info.space,
        info.owner,
        info.sequencer,
        if info.live { "yes" } else { "no" },
        info.window,
        info.watchers,
        info.dropped,
        dids(&info.parents),
        dids(&info.children),
        limits.max_frame_bytes,
        limits.max_frames_per_second,
        limits.max_bytes_per_second,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_take_plain_integers_and_k_or_m() {
        assert_eq!(parse_rate("250000"), Ok(250_000));
        assert_eq!(parse_rate("500k"), Ok(512_000));
        assert_eq!(parse_rate("500K"), Ok(512_000));
        assert_eq!(parse_rate("2M"), Ok(2 * 1024 * 1024));
        for bad in ["", "k", "1.5M", "-1", "2G", "0", "0k", "x"] {
            assert!(parse_rate(bad).is_err(), "{bad}");
        }
        assert!(parse_rate("18446744073709551615k").is_err());
    }

    #[tokio::test]
    async fn payloads_take_in_what_has_arrived_up_to_the_frame_size() {
        let (tx, rx) = mpsc::channel(8);
        let mut input = Input::new(rx);
        for chunk in [&b"ab"[..], b"cde", b"fghij"] {
            tx.send(Ok(chunk.to_vec())).await.unwrap();
        }
        assert_eq!(input.next(4).await.unwrap().unwrap(), b"abcd");
        assert_eq!(input.next(4).await.unwrap().unwrap(), b"efgh");
        assert_eq!(input.next(4).await.unwrap().unwrap(), b"ij");
        tx.send(Ok(b"k".to_vec())).await.unwrap();
        assert_eq!(input.next(4).await.unwrap().unwrap(), b"k");
        tx.send(Err(std::io::Error::other("disk on fire")))
            .await
            .unwrap();
        assert!(input.next(4).await.is_err());
        drop(tx);
        assert_eq!(input.next(4).await.unwrap(), None);
    }

    #[test]
    fn end_marks_are_read_from_the_live_beams_only() {
        assert_eq!(parse_end_mark("live", "ended after frame 1280"), Some(1280));
        assert_eq!(parse_end_mark("live", "started at frame 1"), None);
        assert_eq!(parse_end_mark("Live", "ended after frame 3"), None);
        assert_eq!(parse_end_mark("live", "ended after frame soon"), None);
        let body = format!("{ENDED_AFTER}{}", 42);
        assert_eq!(parse_end_mark(MARK_TITLE, &body), Some(42));
    }
}
