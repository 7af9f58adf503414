//! A 200 MB blob uploaded to one node and read through another, byte-identical, while each
//! node's peak memory stays well below the blob's size (spec §13.3: no node holds a blob in
//! memory).
//!
//! Each node runs in a child process, so its peak resident memory (`VmHWM` in
//! `/proc/PID/status`) is its own: this test binary started again with `--ignored --exact
//! blob_node_process`, which runs a real node on the data dir named by
//! `NORTHSTAR_TEST_DATA_DIR` and prints its address. The test process streams the upload from
//! a generator and hashes the download as it reads it, so it holds neither either.

mod common;

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use common::child::NodeProcess;
use northstar_protocol::address::{BeamUri, SpaceType};
use northstar_protocol::blob::Attachment;
use northstar_protocol::{ContentId, Keypair};
use northstar_sdk::{BlobRead, Client};
use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};

/// The blob's size.
const SIZE: u64 = 200 * 1024 * 1024;

/// The most a node may hold at its peak: well below the blob (a debug build of the node with
/// its database and runtime starts at some 20-40 MB).
const PEAK_LIMIT_KB: u64 = 96 * 1024;

/// How long the transfers may take (debug builds hash at a few 100 MB/s).
const TRANSFER_TIMEOUT: Duration = Duration::from_secs(300);

/// Not a test on its own: the node the parent test starts in a child process.
#[tokio::test]
#[ignore = "started by a_200_mb_blob_crosses_two_nodes_in_bounded_memory in a child process"]
async fn blob_node_process() {
    common::child::serve("a_200_mb_blob_crosses_two_nodes_in_bounded_memory").await;
}

/// `len` bytes made on the fly: byte `i` is a mix of `i` that no chunk repeats.
struct Generator {
    at: u64,
    len: u64,
}

impl AsyncRead for Generator {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let n = (buf.remaining() as u64).min(self.len - self.at) as usize;
        let at = self.at;
        let bytes: Vec<u8> = (0..n as u64)
            .map(|i| {
                let x = at + i;
                (x ^ (x >> 13) ^ (x >> 27)) as u8
            })
            .collect();
        buf.put_slice(&bytes);
        self.at += n as u64;
        Poll::Ready(Ok(()))
    }
}

async fn hash_of(mut reader: impl AsyncRead + Unpin) -> (u64, blake3::Hash) {
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0; 256 * 1024];
    let mut total = 0;
    loop {
        let n = reader.read(&mut buf).await.unwrap();
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        total += n as u64;
    }
    (total, hasher.finalize())
}

#[tokio::test]
async fn a_200_mb_blob_crosses_two_nodes_in_bounded_memory() {
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (a, b) = (
        NodeProcess::spawn("blob_node_process", dir_a.path()),
        NodeProcess::spawn("blob_node_process", dir_b.path()),
    );
    let alice = Client::connect(&a.url, Keypair::generate().unwrap())
        .await
        .unwrap();
    let bob = Client::connect(&b.url, Keypair::generate().unwrap())
        .await
        .unwrap();
    let space = alice
        .create_space(SpaceType::Channel, "big", "Big")
        .await
        .unwrap()
        .space;
    bob.join(&alice.space_uri(&space)).await.unwrap();
    let mut events = bob.subscribe(&space, 0).await.unwrap();

    let (_, expected) = hash_of(Generator { at: 0, len: SIZE }).await;
    let uploaded = tokio::time::timeout(
        TRANSFER_TIMEOUT,
        alice.upload_blob(Generator { at: 0, len: SIZE }, SIZE, Some("video/mp4")),
    )
    .await
    .expect("the upload ends in time")
    .unwrap();
    assert_eq!(uploaded.blob, ContentId::from_bytes(*expected.as_bytes()));
    assert_eq!(uploaded.size, SIZE);
    let posted = alice
        .post_attached(
            &space,
            "a big file",
            "",
            vec![Attachment {
                blob: uploaded.blob,
                size: SIZE,
                media_type: "video/mp4".into(),
                name: "big.mp4".into(),
            }],
        )
        .await
        .unwrap();
    let uri = BeamUri::parse(&posted.beam_uri).unwrap();
    common::until_seq(&mut events, posted.seq).await;
    bob.get_beam(&uri).await.unwrap();

    let reader = bob
        .download_blob(
            &uploaded.blob,
            BlobRead {
                beam: Some(uri.path.to_string()),
                home: Some(uri.authority.clone()),
                size: Some(SIZE),
                ..BlobRead::default()
            },
        )
        .await
        .unwrap();
    let (len, got) = tokio::time::timeout(TRANSFER_TIMEOUT, hash_of(reader))
        .await
        .expect("the download ends in time");
    assert_eq!(len, SIZE);
    assert_eq!(
        got, expected,
        "the bytes read through node B are the bytes uploaded to A"
    );

    let (peak_a, peak_b) = (a.peak_kb(), b.peak_kb());
    println!("peak resident memory: home node {peak_a} KiB, member node {peak_b} KiB");
    assert!(peak_a < PEAK_LIMIT_KB, "home node peaked at {peak_a} KiB");
    assert!(peak_b < PEAK_LIMIT_KB, "member node peaked at {peak_b} KiB");
}
