//! Blobs on real nodes (spec §13): upload and checked download, ranges, a chunk corrupted on
//! the serving node's disk, the size limit and the quota, a member node fetching and caching
//! through a beam, deletion reaching the author's node and the cache, and a dm's blob refused
//! to a non-member.

mod common;

use std::ops::Range;
use std::path::PathBuf;

use common::{TIMEOUT, TestNode};
use northstar_protocol::ContentId;
use northstar_protocol::address::{BeamUri, SpaceType};
use northstar_protocol::blob::{Attachment, StreamError};
use northstar_protocol::{Keypair, Signed};
use northstar_sdk::{BlobClientError, BlobRead, Client};
use tokio::io::AsyncReadExt;

async fn user(node: &TestNode) -> Client {
    let key = Keypair::generate().unwrap();
    Client::connect(&node.url, key).await.unwrap()
}

/// `len` bytes that differ from chunk to chunk.
fn bytes(len: usize, seed: u8) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    let mut counter = 0u64;
    while out.len() < len {
        let block = blake3::hash(&[&counter.to_le_bytes()[..], &[seed]].concat());
        out.extend_from_slice(block.as_bytes());
        counter += 1;
    }
    out.truncate(len);
    out
}

async fn upload(client: &Client, data: &[u8]) -> Result<ContentId, BlobClientError> {
    let size = data.len() as u64;
    let reader = std::io::Cursor::new(data.to_vec());
    Ok(client
        .upload_blob(reader, size, Some("application/octet-stream"))
        .await?
        .blob)
}

async fn read(client: &Client, id: &ContentId, what: BlobRead) -> Result<Vec<u8>, std::io::Error> {
    let mut reader = client
        .download_blob(id, what)
        .await
        .map_err(std::io::Error::other)?;
    let mut out = Vec::new();
    tokio::time::timeout(TIMEOUT, reader.read_to_end(&mut out))
        .await
        .expect("the download ends in time")?;
    Ok(out)
}

fn ranged(range: Range<u64>) -> BlobRead {
    BlobRead {
        range: Some(range),
        ..BlobRead::default()
    }
}

fn blob_file(node: &TestNode, id: &ContentId) -> PathBuf {
    node.data_dir.join("blobs").join(id.to_string())
}

#[tokio::test]
async fn a_blob_goes_up_and_comes_back_checked_whole_or_by_range() {
    let node = TestNode::start().await;
    let alice = user(&node).await;
    let data = bytes(3_000_000, 1);
    let id = upload(&alice, &data).await.unwrap();
    assert_eq!(id, ContentId::of(&data));
    assert!(blob_file(&node, &id).exists());
    assert_eq!(read(&alice, &id, BlobRead::default()).await.unwrap(), data);
    // A range, including one across chunk groups and one that ends past the blob.
    for range in [1_000_000..1_000_100, 16_000..50_000, 2_999_990..3_100_000] {
        let end = range.end.min(data.len() as u64) as usize;
        let got = read(&alice, &id, ranged(range.clone())).await.unwrap();
        assert_eq!(got, &data[range.start as usize..end], "{range:?}");
    }
    // Uploading the same bytes again is the same blob.
    assert_eq!(upload(&alice, &data).await.unwrap(), id);
    // Someone else, naming no beam, may not read it.
    let bob = user(&node).await;
    let err = bob
        .download_blob(&id, BlobRead::default())
        .await
        .unwrap_err();
    assert_eq!(err.name(), Some("not_member"), "{err}");
}

#[tokio::test]
async fn a_chunk_corrupted_on_the_serving_nodes_disk_fails_at_that_chunk() {
    let node = TestNode::start().await;
    let alice = user(&node).await;
    let data = bytes(1_000_000, 2);
    let id = upload(&alice, &data).await.unwrap();
    // Flip one byte inside the chunk group starting at 294912 (the 19th of 16 KiB).
    let path = blob_file(&node, &id);
    let mut stored = std::fs::read(&path).unwrap();
    stored[300_000] ^= 0x01;
    std::fs::write(&path, &stored).unwrap();

    let mut reader = alice.download_blob(&id, BlobRead::default()).await.unwrap();
    let mut got = Vec::new();
    let err = reader.read_to_end(&mut got).await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
    let stream = err
        .get_ref()
        .and_then(|e| e.downcast_ref::<StreamError>())
        .expect("a typed stream error");
    assert!(
        matches!(stream, StreamError::CorruptChunk { offset: 294_912 }),
        "{stream:?}"
    );
    // Everything before the bad chunk arrived, and nothing from it on.
    assert_eq!(got, &data[..294_912]);
    // A range away from the damage still reads.
    assert_eq!(
        read(&alice, &id, ranged(600_000..600_010)).await.unwrap(),
        &data[600_000..600_010]
    );
}

#[tokio::test]
async fn uploads_over_the_size_limit_or_the_quota_are_refused() {
    let node = TestNode::start_with(|c| {
        c.blobs.max_size = 100_000;
        c.blobs.quota = 150_000;
    })
    .await;
    let alice = user(&node).await;
    let err = upload(&alice, &bytes(100_001, 3)).await.unwrap_err();
    assert_eq!(err.name(), Some("blob_too_large"), "{err}");
    upload(&alice, &bytes(100_000, 4)).await.unwrap();
    let err = upload(&alice, &bytes(60_000, 5)).await.unwrap_err();
    assert_eq!(err.name(), Some("quota_exceeded"), "{err}");
    assert!(err.to_string().contains("quota"), "{err}");
    // The quota is per owner.
    let bob = user(&node).await;
    upload(&bob, &bytes(60_000, 5)).await.unwrap();
}

/// A page of any origin may use `/blob` (spec §13.3, "Browsers"): the preflight says what it
/// may send, and every answer, a refusal too, may be read by it. A read without a ticket still
/// gets only what anyone may.
#[tokio::test]
async fn blob_answers_may_be_read_by_pages_of_any_origin() {
    let node = TestNode::start().await;
    let alice = user(&node).await;
    let id = upload(&alice, &bytes(1_000, 11)).await.unwrap();
    let origin = [("Origin", "https://app.example")];
    let preflight = common::request_with(
        node.addr,
        "OPTIONS",
        "/blob",
        &[
            origin[0],
            ("Access-Control-Request-Method", "POST"),
            (
                "Access-Control-Request-Headers",
                "authorization,content-type",
            ),
        ],
    )
    .await;
    assert_eq!(preflight.status, 204);
    assert_eq!(preflight.header("access-control-allow-origin"), Some("*"));
    assert_eq!(
        preflight.header("access-control-allow-methods"),
        Some("GET, POST")
    );
    assert_eq!(
        preflight.header("access-control-allow-headers"),
        Some("Authorization, Content-Type")
    );
    // Without a ticket or a beam: refused, and the page can read why.
    let refused = common::request_with(node.addr, "GET", &format!("/blob/{id}"), &origin).await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert_eq!(refused.header("access-control-allow-origin"), Some("*"));
    assert!(
        refused.body.contains(r#""error":"not_member""#),
        "{}",
        refused.body
    );
    // With the owner's ticket: the stream, readable by the page.
    let ticket = alice.blob_ticket().await.unwrap().ticket;
    let bearer = format!("Bearer {ticket}");
    let read = common::request_with(
        node.addr,
        "GET",
        &format!("/blob/{id}"),
        &[origin[0], ("Authorization", &bearer)],
    )
    .await;
    assert_eq!(read.status, 200);
    assert_eq!(read.header("access-control-allow-origin"), Some("*"));
    assert_eq!(
        read.header("content-type"),
        Some(northstar_protocol::blob::STREAM_MEDIA_TYPE)
    );
}

/// Two readers of one blob a member node does not hold: the first one's fetch keeps the copy,
/// and the second, while that fetch is under way, is relayed from the home node without writing
/// a second copy.
#[tokio::test]
async fn one_fetch_keeps_a_copy_and_a_second_reader_meanwhile_is_relayed() {
    let (a, b) = (TestNode::start().await, TestNode::start().await);
    let alice = user(&a).await;
    let bob = user(&b).await;
    let space = alice
        .create_space(SpaceType::Channel, "clips", "Clips")
        .await
        .unwrap()
        .space;
    bob.join(&alice.space_uri(&space)).await.unwrap();
    let data = bytes(40_000_000, 12);
    let id = upload(&alice, &data).await.unwrap();
    let attachment = Attachment {
        blob: id,
        size: data.len() as u64,
        media_type: "video/mp4".into(),
        name: "clip.mp4".into(),
    };
    let posted = alice
        .post_attached(&space, "clip", "", vec![attachment])
        .await
        .unwrap();
    let uri = BeamUri::parse(&posted.beam_uri).unwrap();
    let through = BlobRead {
        beam: Some(uri.path.to_string()),
        home: Some(uri.authority.clone()),
        size: Some(data.len() as u64),
        ..BlobRead::default()
    };
    // The first reader takes a little and stops: its fetch waits on it, holding the claim.
    let mut first = bob.download_blob(&id, through.clone()).await.unwrap();
    // (40 MB: more than the channels and loopback socket buffers between the nodes hold.)
    let mut start = vec![0; 1000];
    first.read_exact(&mut start).await.unwrap();
    assert_eq!(start, data[..1000]);
    // The second reads the whole blob meanwhile, relayed. A fetch of its own would have kept
    // a copy a moment after its last byte; none comes while the first fetch waits.
    assert_eq!(read(&bob, &id, through).await.unwrap(), data);
    let cached = blob_file(&b, &id);
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    assert!(!cached.exists(), "the relayed read kept no copy");
    // The first reader goes on; its fetch keeps the copy.
    let mut rest = Vec::new();
    tokio::time::timeout(TIMEOUT, first.read_to_end(&mut rest))
        .await
        .expect("the first read ends in time")
        .unwrap();
    assert_eq!(rest, data[1000..]);
    appears(&cached).await;
}

/// Whether an upload is being written on `node` (its temporary file exists).
fn uploading(node: &TestNode) -> bool {
    std::fs::read_dir(node.data_dir.join("blobs").join("tmp"))
        .map(|mut dir| dir.next().is_some())
        .unwrap_or(false)
}

#[tokio::test]
async fn uploads_in_flight_count_against_the_quota() {
    let node = TestNode::start_with(|c| c.blobs.quota = 150_000).await;
    let alice = user(&node).await;
    // The first upload sends half its bytes and waits, admitted and being written.
    let first = bytes(100_000, 6);
    let (mut writer, reader) = tokio::io::duplex(64 * 1024);
    let sender = alice.clone();
    let pending = tokio::spawn(async move {
        sender
            .upload_blob(reader, 100_000, Some("application/octet-stream"))
            .await
    });
    use tokio::io::AsyncWriteExt;
    writer.write_all(&first[..50_000]).await.unwrap();
    tokio::time::timeout(TIMEOUT, async {
        while !uploading(&node) {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the first upload is being written");
    // Nothing is stored yet, but the second would take alice past her quota with the first.
    let err = upload(&alice, &bytes(60_000, 7)).await.unwrap_err();
    assert_eq!(err.name(), Some("quota_exceeded"), "{err}");
    assert!(err.to_string().contains("160000"), "{err}");
    writer.write_all(&first[50_000..]).await.unwrap();
    drop(writer);
    let stored = tokio::time::timeout(TIMEOUT, pending)
        .await
        .expect("the first upload ends in time")
        .unwrap()
        .unwrap();
    assert_eq!(stored.blob, ContentId::of(&first));
    // A failed upload gives its share back: one cut short, then one that fits.
    let (mut writer, reader) = tokio::io::duplex(64 * 1024);
    let sender = alice.clone();
    let cut = tokio::spawn(async move {
        sender
            .upload_blob(reader, 40_000, Some("application/octet-stream"))
            .await
    });
    writer.write_all(&bytes(10_000, 8)).await.unwrap();
    drop(writer);
    let outcome = tokio::time::timeout(TIMEOUT, cut)
        .await
        .expect("the cut upload ends in time")
        .unwrap();
    assert!(outcome.is_err(), "a body short of its length is refused");
    // The node lets the share go when its side of the upload ends, which the client need not
    // wait for: until then the next upload is refused for the quota, and after it stored.
    let third = bytes(50_000, 9);
    tokio::time::timeout(TIMEOUT, async {
        loop {
            match upload(&alice, &third).await {
                Ok(_) => break,
                Err(err) if err.name() == Some("quota_exceeded") => {
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
                Err(err) => panic!("{err}"),
            }
        }
    })
    .await
    .expect("the cut upload's share is given back");
    let err = upload(&alice, &bytes(1, 10)).await.unwrap_err();
    assert_eq!(err.name(), Some("quota_exceeded"), "{err}");
}

/// Wait until `path` exists.
async fn appears(path: &std::path::Path) {
    tokio::time::timeout(TIMEOUT, async {
        while !path.exists() {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{} did not appear", path.display()));
}

/// Wait until `path` is gone.
async fn gone(path: &std::path::Path) {
    tokio::time::timeout(TIMEOUT, async {
        while path.exists() {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{} is still there", path.display()));
}

#[tokio::test]
async fn a_member_node_fetches_checks_and_caches_and_deletion_clears_both() {
    let sweep = |c: &mut northstar_node::config::Config| {
        c.blobs.grace_secs = 0;
        c.blobs.sweep_secs = 1;
    };
    let (a, b) = (
        TestNode::start_with(sweep).await,
        TestNode::start_with(sweep).await,
    );
    let alice = user(&a).await;
    let bob = user(&b).await;
    let space = alice
        .create_space(SpaceType::Channel, "files", "Files")
        .await
        .unwrap()
        .space;
    bob.join(&alice.space_uri(&space)).await.unwrap();
    let mut events = bob.subscribe(&space, 0).await.unwrap();
    let data = bytes(2_500_000, 6);
    let id = upload(&alice, &data).await.unwrap();
    let attachment = Attachment {
        blob: id,
        size: data.len() as u64,
        media_type: "video/mp4".into(),
        name: "clip.mp4".into(),
    };
    // A beam may only attach a blob its home node holds for its author.
    let stranger = Attachment {
        blob: ContentId::of(b"not uploaded"),
        ..attachment.clone()
    };
    let err = alice
        .post_attached(&space, "no", "", vec![stranger])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("upload it first"), "{err}");
    let posted = alice
        .post_attached(&space, "A clip", "watch", vec![attachment])
        .await
        .unwrap();
    let uri = BeamUri::parse(&posted.beam_uri).unwrap();
    common::until_seq(&mut events, posted.seq).await;
    // Bob reads the beam through his node, then the blob through it.
    let beam = bob.get_beam(&uri).await.unwrap();
    assert_eq!(beam.attachments[0].blob, id);
    let through = BlobRead {
        beam: Some(uri.path.to_string()),
        home: Some(uri.authority.clone()),
        size: Some(data.len() as u64),
        ..BlobRead::default()
    };
    // A range of a blob B does not hold is relayed from A, proofs and all, and not kept.
    let cached = blob_file(&b, &id);
    let mut seek = through.clone();
    seek.range = Some(2_000_000..2_100_000);
    assert_eq!(
        read(&bob, &id, seek).await.unwrap(),
        &data[2_000_000..2_100_000]
    );
    assert!(!cached.exists(), "a range alone is not cached");
    // The whole blob comes through B as B checks it, and B keeps the checked copy.
    assert_eq!(read(&bob, &id, through.clone()).await.unwrap(), data);
    appears(&cached).await;
    // A range from the copy.
    let mut range = through.clone();
    range.range = Some(123_456..123_999);
    assert_eq!(
        read(&bob, &id, range).await.unwrap(),
        &data[123_456..123_999]
    );

    // Alice deletes the beam: the blob goes from her node and from B's cache.
    let original = blob_file(&a, &id);
    alice.delete_beam(&uri).await.unwrap();
    gone(&original).await;
    gone(&cached).await;
    let err = bob.download_blob(&id, through).await.unwrap_err();
    assert!(
        matches!(err.name(), Some("blob_not_found" | "not_member")),
        "{err}"
    );
    let _ = beam.content_id().unwrap();
}

#[tokio::test]
async fn a_dm_blob_is_refused_to_a_non_member() {
    let node = TestNode::start().await;
    let alice = user(&node).await;
    let carol = user(&node).await;
    let dm = alice
        .create_space(SpaceType::Dm, "secret", "Secret")
        .await
        .unwrap()
        .space;
    let data = bytes(50_000, 7);
    let id = upload(&alice, &data).await.unwrap();
    let posted = alice
        .post_attached(
            &dm,
            "private",
            "",
            vec![Attachment {
                blob: id,
                size: 50_000,
                media_type: "image/png".into(),
                name: "x.png".into(),
            }],
        )
        .await
        .unwrap();
    let uri = BeamUri::parse(&posted.beam_uri).unwrap();
    let through = BlobRead {
        beam: Some(uri.path.to_string()),
        ..BlobRead::default()
    };
    let err = carol.download_blob(&id, through.clone()).await.unwrap_err();
    assert_eq!(err.name(), Some("not_member"), "{err}");
    // Its member reads it through the beam.
    assert_eq!(read(&alice, &id, through).await.unwrap(), data);
}
