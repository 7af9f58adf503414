//! What the figures depend on besides the code: the CPU, the memory, the file system under the
//! data directories and how fast it syncs, and the open-files limit.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;

use super::report::percentile;

/// The machine the benchmark ran on.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    /// `/proc/cpuinfo`'s first `model name`.
    pub cpu_model: String,
    /// Logical CPUs listed in `/proc/cpuinfo`.
    pub logical_cpus: usize,
    /// `std::thread::available_parallelism`: what the ceilings use as "all cores".
    pub cores: usize,
    /// `MemTotal`, GiB.
    pub memory_gib: f64,
    /// `/proc/sys/kernel/osrelease`.
    pub kernel: String,
    /// Where the nodes' data directories were made.
    pub data_root: PathBuf,
    /// The file system type of `data_root`, from `/proc/mounts`.
    pub data_fs: String,
    /// The median time to write 4 KiB and `fdatasync` it in `data_root`: what an acknowledged
    /// write costs at least.
    pub fsync_p50_ms: f64,
    /// The open-files limit in force (after raising the soft limit to the hard one).
    pub nofile_soft: u64,
    /// The hard open-files limit.
    pub nofile_hard: u64,
    /// The build profile of this binary.
    pub build: String,
}

impl Machine {
    /// Look at the machine; `data_root` is where the nodes will keep their data.
    pub fn probe(data_root: &Path) -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .and_then(|rest| rest.split_once(':'))
            .map_or_else(|| "unknown".to_owned(), |(_, m)| m.trim().to_owned());
        let logical_cpus = cpuinfo
            .lines()
            .filter(|l| l.starts_with("processor"))
            .count();
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let memory_gib = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|rest| {
                rest.trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<f64>()
                    .ok()
            })
            .map_or(0.0, |kib| kib / (1024.0 * 1024.0));
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map_or_else(|_| "unknown".to_owned(), |k| k.trim().to_owned());
        let (nofile_soft, nofile_hard) =
            rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap_or((0, 0));
        Self {
            cpu_model,
            logical_cpus,
            cores: cores(),
            memory_gib,
            kernel,
            data_root: data_root.to_owned(),
            data_fs: file_system(data_root),
            fsync_p50_ms: fsync_p50_ms(data_root).unwrap_or(f64::NAN),
            nofile_soft,
            nofile_hard,
            build: if cfg!(debug_assertions) {
                "debug (figures are not meaningful; use --release)".into()
            } else {
                "release".into()
            },
        }
    }
}

/// The cores the ceilings spread over.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// Raise the soft open-files limit to the hard limit; returns the limit now in force.
pub fn raise_nofile() -> u64 {
    let Ok((soft, hard)) = rlimit::getrlimit(rlimit::Resource::NOFILE) else {
        return 1024;
    };
    if soft >= hard {
        return soft;
    }
    match rlimit::setrlimit(rlimit::Resource::NOFILE, hard, hard) {
        Ok(()) => hard,
        Err(_) => soft,
    }
}

/// A process's resident set size, KiB (`VmRSS` in `/proc/<pid>/status`).
pub fn rss_kib(pid: u32) -> std::io::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| std::io::Error::other("no VmRSS line"))
}

/// A process's CPU time so far, user and system, all its threads, seconds (`utime` and
/// `stime` in `/proc/<pid>/stat`).
pub fn cpu_secs(pid: u32) -> std::io::Result<f64> {
    // USER_HZ, the unit of those fields: 100 on every architecture Linux runs this on.
    const TICKS_PER_SEC: f64 = 100.0;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name may hold spaces and parentheses: the fields start after the last ')'.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    // After the name: state is field 3, utime 14 and stime 15 (one-based, name at 2).
    let ticks = |i: usize| fields.get(i - 3).and_then(|f| f.parse::<u64>().ok());
    match (ticks(14), ticks(15)) {
        (Some(user), Some(system)) => Ok((user + system) as f64 / TICKS_PER_SEC),
        _ => Err(std::io::Error::other(
            "no utime and stime in /proc/<pid>/stat",
        )),
    }
}

/// The type of the file system holding `path`: the longest mount point that contains it.
fn file_system(path: &Path) -> String {
    let path = path.canonicalize().unwrap_or_else(|_| path.to_owned());
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    mounts
        .lines()
        .filter_map(|l| {
            let mut fields = l.split_whitespace();
            let (_dev, mount, fs) = (fields.next()?, fields.next()?, fields.next()?);
            path.starts_with(mount)
                .then(|| (mount.len(), fs.to_owned()))
        })
        .max_by_key(|(len, _)| *len)
        .map_or_else(|| "unknown".to_owned(), |(_, fs)| fs)
}

/// Write 4 KiB and `fdatasync`, 64 times; the median in ms.
fn fsync_p50_ms(dir: &Path) -> std::io::Result<f64> {
    let path = dir.join("fsync-probe");
    let mut file = std::fs::File::create(&path)?;
    let block = [0x5au8; 4096];
    let mut samples = Vec::with_capacity(64);
    for _ in 0..64 {
        let start = Instant::now();
        file.write_all(&block)?;
        file.sync_data()?;
        samples.push(start.elapsed().as_secs_f64() * 1e3);
    }
    drop(file);
    std::fs::remove_file(&path)?;
    samples.sort_by(f64::total_cmp);
    Ok(percentile(&samples, 50.0))
}
