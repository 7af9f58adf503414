//! The plain WebSocket server behind two ceilings: what tokio-tungstenite alone does with the
//! same connections, without JSON-RPC, signatures or storage.
//!
//! It runs in its own process (`bench __plain`), like the node it is compared with. Each
//! connection echoes the text it receives, broadcasts the binary messages it receives (a relay,
//! for the streams floor), and writes what is broadcast, batched: every message queued for it
//! is fed to the socket, then one flush. The command `SEND <first_seq> <count>
//! <file>` on standard input broadcasts `count` copies of the message in `file` with their
//! `"seq":` rewritten to `first_seq`, `first_seq + 1`, … so clients read them like events.
//! `FRAMES <file>` loads the binary messages [`write_binary`] put in `file` (stream frames, for
//! the streams ceiling); `BROADCAST <from> <to>` then broadcasts those numbered `from..to`, in
//! order, so a client can send them a window at a time.

use std::net::SocketAddr;
use std::path::Path;

use anyhow::Context as _;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_util::task::TaskTracker;

/// The hidden subcommand that runs this server in its own process.
pub const PLAIN_SUBCOMMAND: &str = "__plain";

/// Messages a connection may lag behind the broadcast. Larger than any phase of the benchmark,
/// so no connection lags; the slots are allocated once, at start.
const BROADCAST_CAPACITY: usize = 4096;

/// The read buffer per connection: clients send one small message. tungstenite advises about
/// 4 KiB for many mostly idle connections; its default is 128 KiB.
const READ_BUFFER: usize = 4 * 1024;

/// Most messages [`main`] accepts in one `SEND`.
pub const MAX_SEND: usize = BROADCAST_CAPACITY;

/// `bench __plain`: serve until standard input closes.
pub async fn main() -> anyhow::Result<()> {
    let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    println!("READY {}", listener.local_addr()?);
    let (tx, _) = broadcast::channel::<Message>(BROADCAST_CAPACITY);
    let mut loaded = Vec::new();
    let tracker = TaskTracker::new();
    let mut commands = BufReader::new(tokio::io::stdin()).lines();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (socket, _) = accepted?;
                tracker.spawn(serve(socket, tx.clone(), tx.subscribe()));
            }
            line = commands.next_line() => match line? {
                Some(line) => broadcast_command(&line, &tx, &mut loaded)?,
                None => break,
            },
        }
    }
    Ok(())
}

async fn serve(
    socket: TcpStream,
    tx: broadcast::Sender<Message>,
    mut rx: broadcast::Receiver<Message>,
) {
    if socket.set_nodelay(true).is_err() {
        return;
    }
    let config = WebSocketConfig::default().read_buffer_size(READ_BUFFER);
    let Ok(mut ws) = tokio_tungstenite::accept_async_with_config(socket, Some(config)).await else {
        return;
    };
    loop {
        tokio::select! {
            incoming = ws.next() => match incoming {
                Some(Ok(Message::Text(text))) => {
                    if ws.send(Message::Text(text)).await.is_err() {
                        return;
                    }
                }
                Some(Ok(Message::Binary(bytes))) => {
                    // Every connection has a receiver, this one included.
                    let _ = tx.send(Message::Binary(bytes));
                }
                Some(Ok(Message::Close(_)) | Err(_)) | None => return,
                Some(Ok(_)) => {}
            },
            item = rx.recv() => {
                let Ok(first) = item else { return };
                if ws.feed(first).await.is_err() {
                    return;
                }
                while let Ok(more) = rx.try_recv() {
                    if ws.feed(more).await.is_err() {
                        return;
                    }
                }
                if ws.flush().await.is_err() {
                    return;
                }
            }
        }
    }
}

fn broadcast_command(
    line: &str,
    tx: &broadcast::Sender<Message>,
    loaded: &mut Vec<Message>,
) -> anyhow::Result<()> {
    if let Some(file) = line.strip_prefix("FRAMES ") {
        *loaded = read_binary(Path::new(file))?
            .into_iter()
            .map(|m| Message::Binary(m.into()))
            .collect();
        return Ok(());
    }
    if let Some(range) = line.strip_prefix("BROADCAST ") {
        let (from, to) = range.split_once(' ').context("BROADCAST <from> <to>")?;
        let (from, to): (usize, usize) = (from.parse()?, to.parse()?);
        let messages = loaded.get(from..to).context("messages never loaded")?;
        anyhow::ensure!(
            messages.len() <= MAX_SEND,
            "at most {MAX_SEND} messages per BROADCAST"
        );
        for message in messages {
            // No receiver means no client: nothing to deliver. A clone shares the bytes.
            let _ = tx.send(message.clone());
        }
        return Ok(());
    }
    let mut words = line.splitn(4, ' ');
    let (Some("SEND"), Some(first), Some(count), Some(file)) =
        (words.next(), words.next(), words.next(), words.next())
    else {
        anyhow::bail!("unknown command {line:?}");
    };
    let first: u64 = first.parse()?;
    let count: usize = count.parse()?;
    anyhow::ensure!(count <= MAX_SEND, "at most {MAX_SEND} messages per SEND");
    let template = std::fs::read_to_string(Path::new(file))?;
    let messages = with_seqs(&template, first, count)?;
    for message in messages {
        // No receiver means no client: nothing to deliver.
        let _ = tx.send(Message::text(message));
    }
    Ok(())
}

/// Write `messages` to `file` for `FRAMES`: each as its length (4 bytes, big-endian), then its
/// bytes.
pub fn write_binary(file: &Path, messages: &[impl AsRef<[u8]>]) -> anyhow::Result<()> {
    let mut out = Vec::with_capacity(messages.iter().map(|m| m.as_ref().len() + 4).sum());
    for message in messages {
        let message = message.as_ref();
        out.extend_from_slice(&u32::try_from(message.len())?.to_be_bytes());
        out.extend_from_slice(message);
    }
    std::fs::write(file, out)?;
    Ok(())
}

/// The messages [`write_binary`] wrote to `file`.
fn read_binary(file: &Path) -> anyhow::Result<Vec<Vec<u8>>> {
    let bytes = std::fs::read(file)?;
    let mut rest = bytes.as_slice();
    let mut messages = Vec::new();
    while !rest.is_empty() {
        let (len, tail) = rest.split_first_chunk::<4>().context("a cut length")?;
        let len = u32::from_be_bytes(*len) as usize;
        anyhow::ensure!(tail.len() >= len, "a cut message");
        let (message, tail) = tail.split_at(len);
        messages.push(message.to_vec());
        rest = tail;
    }
    Ok(messages)
}

/// `count` copies of `template` whose first `"seq":N` reads `first`, `first + 1`, …
pub fn with_seqs(template: &str, first: u64, count: usize) -> anyhow::Result<Vec<String>> {
    let key = "\"seq\":";
    let start = template.find(key).context("the message has no \"seq\"")? + key.len();
    let digits = template[start..]
        .find(|c: char| !c.is_ascii_digit())
        .context("the seq does not end")?;
    let (head, tail) = (&template[..start], &template[start + digits..]);
    Ok((0..count as u64)
        .map(|i| format!("{head}{}{tail}", first + i))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_messages_come_back_as_written() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("frames");
        let messages = vec![vec![1, 2, 3], Vec::new(), vec![9; 70_000]];
        write_binary(&file, &messages).unwrap();
        assert_eq!(read_binary(&file).unwrap(), messages);
    }

    #[test]
    fn rewrites_only_the_first_seq() {
        let out = with_seqs(r#"{"a":{"seq":41,"x":1},"seq":9}"#, 7, 2).unwrap();
        assert_eq!(
            out,
            [
                r#"{"a":{"seq":7,"x":1},"seq":9}"#,
                r#"{"a":{"seq":8,"x":1},"seq":9}"#
            ]
        );
    }
}
