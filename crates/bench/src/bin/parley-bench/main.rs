//! `parley-bench`: the workloads of shared/design/benchmarks.md (B0 to B5), printed as a table of
//! figure, Parley, peer, ratio and target: B1, B2 and B4 side by side with ejabberd, NATS as the
//! routing ceiling, raw SQLite and PostgreSQL as the storage references, raw openmls for B5, and
//! B1 and B2 again on two nodes over PostgreSQL + NATS. docs/performance.md says how to read it.
//!
//! Run: `cargo build --release -p parley -p parley-bench && target/release/parley-bench` (options: `--quick`,
//! `--only b0,…,b5`, `--no-peers`, `--no-cluster`, `--rates a,b [--nodes N]`, `--hold S`,
//! `--users N`, `--per-user N`).
#![forbid(unsafe_code)]

mod b0;
mod b5;
mod workloads;

use b0::*;
use b5::*;
use workloads::*;

use std::time::Duration;

use anyhow::Result;
use parley_bench::parley::Deployment;

pub(crate) struct Row {
    pub(crate) figure: String,
    pub(crate) parley: f64,
    pub(crate) reference: Option<f64>,
    pub(crate) unit: &'static str,
    pub(crate) target: Option<&'static str>,
}

/// A figure with as many decimals as it needs.
pub(crate) fn figure(value: f64) -> String {
    if !value.is_finite() {
        "-".into()
    } else if value.abs() >= 100.0 {
        let whole = format!("{:.0}", value);
        // Thousands separators, for reading at a glance.
        let mut out = String::new();
        for (i, c) in whole.chars().enumerate() {
            if i > 0 && (whole.len() - i) % 3 == 0 && c != '-' {
                out.push(',');
            }
            out.push(c);
        }
        out
    } else if value.abs() >= 1.0 {
        format!("{value:.2}")
    } else {
        format!("{value:.3}")
    }
}

/// The table as Markdown: it reads in a terminal and pastes into docs/performance.md.
pub(crate) fn print(rows: &[Row]) {
    println!();
    println!("| figure | Parley | peer | ratio | target |");
    println!("|---|---:|---:|---:|---|");
    for row in rows {
        let peer = row.reference.map(figure).unwrap_or_else(|| "-".into());
        let ratio = row
            .reference
            .filter(|r| *r != 0.0)
            .map(|r| format!("{:.2}", row.parley / r))
            .unwrap_or_else(|| "-".into());
        println!(
            "| {} ({}) | {} | {} | {} | {} |",
            row.figure,
            row.unit,
            figure(row.parley),
            peer,
            ratio,
            row.target.unwrap_or("")
        );
    }
}

/// What to run and how long.
pub(crate) struct Plan {
    pub(crate) quick: bool,
    pub(crate) only: Option<Vec<String>>,
    /// Seconds each B1 rate is held.
    pub(crate) hold: Duration,
    pub(crate) users: usize,
    /// B1 at these rates instead of a ramp.
    pub(crate) rates: Option<Vec<u32>>,
    /// Skip the peers (for profiling Parley alone).
    pub(crate) no_peers: bool,
    /// B4: messages queued per offline user.
    pub(crate) per_user: Option<u64>,
    /// Skip the multi-node rows (B1 and B2 on PostgreSQL + NATS).
    pub(crate) no_cluster: bool,
    /// `--rates` against this many nodes on PostgreSQL + NATS instead of one on SQLite.
    pub(crate) nodes: Option<usize>,
}

/// The multi-node rows: two nodes, as in a small scale-out deployment.
pub(crate) const CLUSTER: Deployment = Deployment::Cluster(2);

impl Plan {
    pub(crate) fn wants(&self, workload: &str) -> bool {
        self.only
            .as_ref()
            .is_none_or(|only| only.iter().any(|w| w == workload))
    }
}

/// The server runs on core 0 and this load generator on core 1: re-run ourselves pinned.
pub(crate) fn pin_to_load_core() -> Result<()> {
    use std::os::unix::process::CommandExt as _;
    if std::env::var_os("PARLEY_BENCH_PINNED").is_some() {
        return Ok(());
    }
    let exe = std::env::current_exe()?;
    let error = std::process::Command::new("taskset")
        .args(["-c", "1"])
        .arg(exe)
        .args(std::env::args().skip(1))
        .env("PARLEY_BENCH_PINNED", "1")
        .exec();
    Err(anyhow::anyhow!(
        "cannot re-run pinned with taskset: {error}"
    ))
}

pub(crate) fn main() -> Result<()> {
    pin_to_load_core()?;
    let args: Vec<String> = std::env::args().collect();
    let value = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1).cloned())
    };
    let quick = args.iter().any(|a| a == "--quick");
    let plan = Plan {
        quick,
        only: value("--only").map(|o| o.split(',').map(str::to_owned).collect()),
        hold: Duration::from_secs(
            value("--hold").map_or(Ok(if quick { 3 } else { 10 }), |v| v.parse())?,
        ),
        users: value("--users").map_or(Ok(1_000), |v| v.parse())?,
        rates: value("--rates")
            .map(|r| {
                r.split(',')
                    .map(str::parse)
                    .collect::<Result<Vec<u32>, _>>()
            })
            .transpose()?,
        no_peers: args.iter().any(|a| a == "--no-peers"),
        per_user: value("--per-user").map(|v| v.parse()).transpose()?,
        no_cluster: args.iter().any(|a| a == "--no-cluster"),
        nodes: value("--nodes").map(|v| v.parse()).transpose()?,
    };
    let (messages, group_size, echo_seconds) = if quick {
        (1_000, 100, 0.5)
    } else {
        (5_000, 1_000, 2.0)
    };
    println!(
        "parley-bench ({} build): server on core 0, load on core 1",
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
    );
    let mut rows = Vec::new();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let mut nats = Vec::new();
    let mut raw_read = 0.0;
    if plan.wants("b0") || plan.wants("b2") || plan.wants("b4") {
        let (round_trips, p99) = runtime.block_on(loopback_echo(echo_seconds))?;
        row(
            &mut rows,
            "B0 loopback echo, 100 connections, 64 B",
            round_trips,
            None,
            "round trips/s",
            None,
        );
        row(&mut rows, "B0 loopback echo p99", p99, None, "ms", None);
        for (subscribers, messages) in [(1usize, 200_000usize), (100, 5_000), (1_000, 500)] {
            let messages = if quick { messages / 10 } else { messages };
            match runtime.block_on(nats_fan_out(subscribers, messages)) {
                Ok(rate) => {
                    nats.push((subscribers, rate));
                    row(
                        &mut rows,
                        format!("B0 NATS fan-out, 1 to {subscribers}, 64 B"),
                        rate,
                        None,
                        "deliveries/s",
                        None,
                    );
                }
                Err(e) => println!("B0 NATS fan-out skipped: {e}"),
            }
        }
        // The raw insert runs: messages per transaction, and how many messages in all.
        let runs: Vec<(usize, usize)> = [1usize, 16, 256]
            .into_iter()
            .map(|per| {
                let count = if per == 1 { 1_000 } else { 20_000 };
                (per, if quick { count / 4 } else { count })
            })
            .collect();
        for (full, label) in [(true, "FULL"), (false, "NORMAL")] {
            for &(per, count) in &runs {
                let rate = sqlite_inserts(full, per, count)?;
                row(
                    &mut rows,
                    format!("B0 SQLite {label}, {per} message(s) per transaction"),
                    rate,
                    None,
                    "msgs/s",
                    None,
                );
            }
        }
        match runtime.block_on(postgres_inserts(&runs)) {
            Ok(rates) => {
                for ((per, _), rate) in runs.iter().zip(rates) {
                    row(
                        &mut rows,
                        format!("B0 PostgreSQL, {per} message(s) per transaction"),
                        rate,
                        None,
                        "msgs/s",
                        None,
                    );
                }
            }
            Err(e) => println!("B0 PostgreSQL inserts skipped: {e}"),
        }
        raw_read = sqlite_reads(1_000, if quick { 20 } else { 200 })?;
        row(
            &mut rows,
            "B0 SQLite read, queue rows joined to payloads",
            raw_read,
            None,
            "rows/s",
            None,
        );
    }
    if plan.wants("b1") {
        runtime.block_on(b1(&plan, &mut rows))?;
    }
    if plan.wants("b2") {
        runtime.block_on(b2(&plan, &mut rows, &nats))?;
    }
    if plan.wants("b3") {
        runtime.block_on(b3(&plan, &mut rows))?;
    }
    if plan.wants("b4") {
        runtime.block_on(b4(&plan, &mut rows, raw_read))?;
    }
    if plan.wants("b5") {
        b5(&mut rows, messages, group_size)?;
    }
    print(&rows);
    Ok(())
}
