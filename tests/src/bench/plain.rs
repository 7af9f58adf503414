//! The plain WebSocket server behind two ceilings: what tokio-tungstenite alone does with the
//! same connections, without JSON-RPC, signatures or storage.
//!
//! It runs in its own process (`bench __plain`), like the node it is compared with. Each
//! connection echoes what it receives and writes what is broadcast, batched: every message
//! queued for it is fed to the socket, then one flush. The command `SEND <first_seq> <count>
//! <file>` on standard input broadcasts `count` copies of the message in `file` with their
//! `"seq":` rewritten to `first_seq`, `first_seq + 1`, … so clients read them like events.

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
    let tracker = TaskTracker::new();
    let mut commands = BufReader::new(tokio::io::stdin()).lines();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (socket, _) = accepted?;
                tracker.spawn(serve(socket, tx.subscribe()));
            }
            line = commands.next_line() => match line? {
                Some(line) => broadcast_command(&line, &tx)?,
                None => break,
            },
        }
    }
    Ok(())
}

async fn serve(socket: TcpStream, mut rx: broadcast::Receiver<Message>) {
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

fn broadcast_command(line: &str, tx: &broadcast::Sender<Message>) -> anyhow::Result<()> {
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
