//! Blobs: upload and download MiB/s on loopback, next to a plain file copy and a plain BLAKE3
//! hash of the same bytes in the same run.
//!
//! A file of `blob_bytes` made once in the data root is uploaded with the SDK
//! (`Client::upload_blob`, which streams it) to a node in its own process, then read back with
//! `Client::download_blob`, which checks every chunk as it arrives; the bytes read are
//! counted and dropped. In the same run the same file is copied with `std::fs::copy` and
//! fsynced (the upload is fsynced too), and hashed with one thread of BLAKE3 (the node hashes
//! one upload on one thread). The floor of each transfer is half the slower of the two: the
//! node streams the bytes through its socket, its disk and its hash once each.
//!
//! Then, each run, through a member node (a second node in its own process, whose user joined
//! the channel of a post that attaches another file of the same size): a 1 MiB range from the
//! middle, and the time to the first byte and the rate of the whole file, none held by the
//! member node beforehand (a range is relayed from the home node; the whole file is passed on
//! as it is fetched, checked and kept).

use std::io::Write as _;
use std::path::Path;
use std::time::Instant;

use anyhow::Context as _;
use northstar_protocol::address::{BeamUri, SpaceType};
use northstar_protocol::blob::{Attachment, StreamError};
use northstar_sdk::{BlobRead, Client};
use tokio::io::AsyncReadExt;

use super::nodes::{ChildProcess, NODE_SUBCOMMAND, new_data_dir};
use super::report::{Bound, Row, Series, Unit};
use super::{Bench, Scenario, keypair};

const MIB: f64 = 1024.0 * 1024.0;

/// Run the scenario.
pub async fn run(bench: &mut Bench<'_>) -> anyhow::Result<Vec<Row>> {
    let settings = bench.settings;
    let size = settings.blob_bytes;
    let root = bench.root().to_path_buf();
    let root = root.as_path();
    let source = root.join("blob-source.bin");
    make_file(&source, size)?;
    let dir = new_data_dir(root)?;
    let dir_arg = dir.to_str().context("non-UTF-8 data directory")?;
    let node =
        ChildProcess::spawn(&settings.exe, &[NODE_SUBCOMMAND, "--data-dir", dir_arg]).await?;
    let client = Client::connect(&node.url(), keypair()?).await?;
    let (mut up, mut down, mut copy_s, mut hash_s) =
        (Series::default(), Series::default(), Vec::new(), Vec::new());
    for run in 0..settings.runs {
        let copy = timed_copy(&source, &root.join("blob-copy.bin"))?;
        let hash = timed_hash(&source)?;
        let floor = 0.5 * copy.min(hash);
        let started = Instant::now();
        let file = tokio::fs::File::open(&source).await?;
        let uploaded = client
            .upload_blob(file, size, Some("application/octet-stream"))
            .await?;
        let upload = size as f64 / MIB / started.elapsed().as_secs_f64();
        let started = Instant::now();
        let mut reader = client
            .download_blob(&uploaded.blob, BlobRead::default())
            .await?;
        let mut buf = vec![0; 256 * 1024];
        let mut read = 0u64;
        loop {
            let n = reader.read(&mut buf).await.map_err(|e| {
                match e.get_ref().and_then(|e| e.downcast_ref::<StreamError>()) {
                    Some(stream) => anyhow::anyhow!("download failed its check: {stream}"),
                    None => anyhow::Error::new(e),
                }
            })?;
            if n == 0 {
                break;
            }
            read += n as u64;
        }
        anyhow::ensure!(read == size, "downloaded {read} of {size} bytes");
        let download = size as f64 / MIB / started.elapsed().as_secs_f64();
        up.push(upload, floor);
        down.push(download, floor);
        copy_s.push(copy);
        hash_s.push(hash);
        bench.progress(
            Scenario::Blobs,
            format!(
                "run {}/{}: upload {upload:.0} MiB/s, download {download:.0} MiB/s; copy \
                 {copy:.0} MiB/s, BLAKE3 {hash:.0} MiB/s",
                run + 1,
                settings.runs
            ),
        );
    }
    let member = through_member(bench, &client, &source, size).await?;
    node.stop().await?;
    let _ = std::fs::remove_file(&source);
    let _ = std::fs::remove_file(root.join("blob-copy.bin"));
    let mib = size / (1024 * 1024);
    let mut rows = vec![
        Row {
            samples: up.figure,
            ..Row::new(
                Scenario::Blobs,
                format!("blob upload, {mib} MiB, SDK to node"),
                Unit::MiBPerSec,
            )
        }
        .with_bound(Bound::floor("0.5 × min(copy, BLAKE3)", up.bound)),
        Row {
            samples: down.figure,
            ..Row::new(
                Scenario::Blobs,
                format!("blob download, {mib} MiB, checked by the SDK"),
                Unit::MiBPerSec,
            )
        }
        .with_bound(Bound::floor("0.5 × min(copy, BLAKE3)", down.bound)),
        Row {
            samples: copy_s,
            ..Row::new(
                Scenario::Blobs,
                format!("plain file copy + fsync, {mib} MiB"),
                Unit::MiBPerSec,
            )
        },
        Row {
            samples: hash_s,
            ..Row::new(
                Scenario::Blobs,
                format!("plain BLAKE3 of the file, one thread, {mib} MiB"),
                Unit::MiBPerSec,
            )
        },
    ];
    rows.extend(member);
    Ok(rows)
}

/// The member-node figures, each run with a post on the home node (`client`'s) attaching a new
/// file of `size` bytes (`source` with its first bytes changed), read by a user of a second
/// node that does not hold it yet.
async fn through_member(
    bench: &mut Bench<'_>,
    client: &Client,
    source: &Path,
    size: u64,
) -> anyhow::Result<Vec<Row>> {
    let settings = bench.settings;
    let root = bench.root().to_path_buf();
    let space = client
        .create_space(SpaceType::Channel, "blob-bench", "Blob bench")
        .await?
        .space;
    let dir = new_data_dir(&root)?;
    let dir_arg = dir.to_str().context("non-UTF-8 data directory")?;
    let member =
        ChildProcess::spawn(&settings.exe, &[NODE_SUBCOMMAND, "--data-dir", dir_arg]).await?;
    let reader = Client::connect(&member.url(), keypair()?).await?;
    reader.join(&client.space_uri(&space)).await?;
    let other = root.join("blob-other.bin");
    let (mut range_s, mut first_s, mut rate_s) = (Vec::new(), Vec::new(), Vec::new());
    for run in 0..settings.runs {
        std::fs::copy(source, &other)?;
        {
            use std::io::{Seek, SeekFrom};
            let mut file = std::fs::OpenOptions::new().write(true).open(&other)?;
            file.seek(SeekFrom::Start(0))?;
            file.write_all(format!("member run {run}").as_bytes())?;
            file.sync_all()?;
        }
        let file = tokio::fs::File::open(&other).await?;
        let uploaded = client.upload_blob(file, size, Some("video/mp4")).await?;
        let attachment = Attachment {
            blob: uploaded.blob,
            size,
            media_type: "video/mp4".into(),
            name: "clip.mp4".into(),
        };
        let posted = client
            .post_attached(&space, "clip", "", vec![attachment])
            .await?;
        let uri = BeamUri::parse(&posted.beam_uri)?;
        let through = BlobRead {
            beam: Some(uri.path.to_string()),
            home: Some(uri.authority.clone()),
            size: Some(size),
            ..BlobRead::default()
        };

        let middle = size / 2;
        let range = middle..(middle + 1024 * 1024).min(size);
        let started = Instant::now();
        let ranged = BlobRead {
            range: Some(range.clone()),
            ..through.clone()
        };
        let mut ranged = reader.download_blob(&uploaded.blob, ranged).await?;
        let mut bytes = Vec::new();
        ranged.read_to_end(&mut bytes).await?;
        let range_ms = started.elapsed().as_secs_f64() * 1000.0;
        anyhow::ensure!(
            bytes.len() as u64 == range.end - range.start,
            "the range read {} bytes",
            bytes.len()
        );

        let started = Instant::now();
        let mut whole = reader.download_blob(&uploaded.blob, through).await?;
        let mut buf = vec![0; 256 * 1024];
        let mut first_ms = None;
        let mut read = 0u64;
        loop {
            let n = whole.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            first_ms.get_or_insert_with(|| started.elapsed().as_secs_f64() * 1000.0);
            read += n as u64;
        }
        let rate = size as f64 / MIB / started.elapsed().as_secs_f64();
        anyhow::ensure!(
            read == size,
            "read {read} of {size} bytes through the member node"
        );
        let first_ms = first_ms.context("no byte came through the member node")?;
        bench.progress(
            Scenario::Blobs,
            format!(
                "run {}/{} through a member node: 1 MiB range {range_ms:.0} ms, first byte \
                 {first_ms:.0} ms, whole file {rate:.0} MiB/s",
                run + 1,
                settings.runs
            ),
        );
        range_s.push(range_ms);
        first_s.push(first_ms);
        rate_s.push(rate);
    }
    member.stop().await?;
    let _ = std::fs::remove_file(&other);
    let mib = size / (1024 * 1024);
    let row = |name: String, unit, samples| Row {
        samples,
        ..Row::new(Scenario::Blobs, name, unit)
    };
    Ok(vec![
        row(
            format!("blob 1 MiB range through a member node not holding it ({mib} MiB blob)"),
            Unit::Millis,
            range_s,
        ),
        row(
            format!("blob first byte through a member node not holding it ({mib} MiB blob)"),
            Unit::Millis,
            first_s,
        ),
        row(
            format!("blob download through a member node fetching it, {mib} MiB"),
            Unit::MiBPerSec,
            rate_s,
        ),
    ])
}

/// Write `size` bytes that differ from block to block.
fn make_file(path: &Path, size: u64) -> anyhow::Result<()> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut xof = blake3::Hasher::new().update(b"blob bench").finalize_xof();
    let mut block = vec![0; 1024 * 1024];
    let mut left = size;
    while left > 0 {
        let n = left.min(block.len() as u64) as usize;
        xof.fill(&mut block[..n]);
        out.write_all(&block[..n])?;
        left -= n as u64;
    }
    out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    Ok(())
}

/// MiB/s of copying `from` to `to` and making the copy durable.
fn timed_copy(from: &Path, to: &Path) -> anyhow::Result<f64> {
    let started = Instant::now();
    let bytes = std::fs::copy(from, to)?;
    std::fs::File::open(to)?.sync_all()?;
    Ok(bytes as f64 / MIB / started.elapsed().as_secs_f64())
}

/// MiB/s of reading `path` and hashing it with BLAKE3 on one thread.
fn timed_hash(path: &Path) -> anyhow::Result<f64> {
    let started = Instant::now();
    let mut file = std::fs::File::open(path)?;
    let mut hasher = blake3::Hasher::new();
    let bytes = std::io::copy(&mut file, &mut hasher)?;
    std::hint::black_box(hasher.finalize());
    Ok(bytes as f64 / MIB / started.elapsed().as_secs_f64())
}
