//! Readings both systems' load generators take the same way: CPU time and resident memory from
//! /proc, process trees (to pin and meter PostgreSQL's backends too), latency percentiles.

use std::fs;
use std::process::{Command, Stdio};

use anyhow::{anyhow, Result};

/// utime + stime of a process, in seconds.
pub fn cpu_seconds(pid: u32) -> Result<f64> {
    stat_cpu_seconds(&format!("/proc/{pid}/stat"))
}

/// utime + stime from a `/proc/.../stat` file (of a process or of one of its threads).
pub fn stat_cpu_seconds(path: &str) -> Result<f64> {
    let stat = fs::read_to_string(path)?;
    // The command name may contain spaces: fields are counted after its closing parenthesis.
    let rest = stat
        .rsplit_once(')')
        .ok_or_else(|| anyhow!("unexpected {path}"))?
        .1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| -> Result<f64> {
        Ok(fields
            .get(i)
            .ok_or_else(|| anyhow!("short {path}"))?
            .parse::<u64>()? as f64)
    };
    // Fields 14 and 15 (utime, stime); USER_HZ is 100 on Linux.
    Ok((tick(11)? + tick(12)?) / 100.0)
}

/// Resident set size of a process, in bytes.
pub fn rss_bytes(pid: u32) -> Result<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .ok_or_else(|| anyhow!("no VmRSS for pid {pid}"))?;
    let kib: u64 = line
        .trim_start_matches("VmRSS:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()?;
    Ok(kib * 1024)
}

/// The latency (ms) at or below which `q` of the sorted microsecond latencies fall; both
/// systems' figures are computed this way.
pub fn percentile(sorted: &[u32], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    f64::from(sorted[rank - 1]) / 1000.0
}

/// A process and its descendants (PostgreSQL's backends), from /proc.
pub fn process_tree(root: u32) -> Result<Vec<u32>> {
    let mut parents: Vec<(u32, u32)> = Vec::new();
    for entry in std::fs::read_dir("/proc")? {
        let Ok(pid) = entry?.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        // A process that ends while we look is no longer part of the tree.
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|ppid| ppid.parse::<u32>().ok());
        if let Some(ppid) = ppid {
            parents.push((pid, ppid));
        }
    }
    let mut tree = vec![root];
    let mut index = 0;
    while index < tree.len() {
        let parent = tree[index];
        tree.extend(
            parents
                .iter()
                .filter(|(_, p)| *p == parent)
                .map(|(c, _)| *c),
        );
        index += 1;
    }
    Ok(tree)
}

/// Pins a process and its descendants (PostgreSQL's backends) to `core`.
pub fn pin_process_tree(root: u32, core: usize) -> Result<()> {
    for pid in process_tree(root)? {
        let status = Command::new("taskset")
            .args(["-a", "-p", "-c", &core.to_string(), &pid.to_string()])
            .stdout(Stdio::null())
            .status()?;
        anyhow::ensure!(status.success(), "cannot pin process {pid}");
    }
    Ok(())
}

pub fn process_tree_cpu_seconds(root: u32) -> Result<f64> {
    let mut total = 0.0;
    for pid in process_tree(root)? {
        // Counted only if still there when read.
        total += cpu_seconds(pid).unwrap_or(0.0);
    }
    Ok(total)
}

/// Bytes in the files directly inside `dir` (a data directory's database and WAL).
pub fn dir_bytes(dir: &std::path::Path) -> Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        if meta.is_file() {
            total += meta.len();
        }
    }
    Ok(total)
}

/// `program` started pinned to one core (`taskset -c CORE program`): both systems' servers run
/// on core 0, the load on core 1.
pub fn pinned(core: usize, program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut command = Command::new("taskset");
    command.arg("-c").arg(core.to_string()).arg(program);
    command
}
