//! The real `parley` server processes of a deployment, pinned and metered.

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{anyhow, Context, Result};

use crate::measure::*;

use super::*;

/// The real `parley` binary (next to this one), on a free port.
pub struct ParleyServer {
    pub(crate) child: Child,
    /// Its own fresh data directory, or the one the nodes of a deployment share (key files).
    pub(crate) data: Arc<tempfile::TempDir>,
    pub base: String,
}

impl ParleyServer {
    /// Starts a server on its embedded SQLite store, in a fresh data directory, pinned to `core`.
    pub fn start(core: usize) -> Result<ParleyServer> {
        ParleyServer::start_with(core, Arc::new(tempfile::tempdir()?), &[])
    }

    /// Starts a server pinned to `core` with more flags. Rate limits are lifted: the load comes
    /// from a few addresses and accounts at rates no single person sends at.
    pub(crate) fn start_with(
        core: usize,
        data: Arc<tempfile::TempDir>,
        flags: &[String],
    ) -> Result<ParleyServer> {
        let exe = std::env::current_exe()?.with_file_name("parley");
        anyhow::ensure!(
            exe.exists(),
            "{} not found: build it with `cargo build --release -p parley`",
            exe.display()
        );
        let mut child = crate::measure::pinned(core, &exe)
            .args(["server", "--listen", "127.0.0.1:0", "--data"])
            .arg(data.path())
            .args(flags)
            .args(["--rate-per-second", "10000000"])
            .args(["--auth-rate-per-second", "10000000"])
            .env("PARLEY_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("cannot start the parley server (is taskset installed?)")?;
        let stdout = child.stdout.take().context("no server stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let base = loop {
            let line = lines
                .next()
                .ok_or_else(|| anyhow!("the server exited before listening"))??;
            if let Some(address) = line.strip_prefix("parley server listening on ") {
                break address.trim().to_owned();
            }
        };
        Ok(ParleyServer { child, data, base })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

/// What a workload runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deployment {
    /// One node on its embedded SQLite store: the default.
    Single,
    /// This many nodes sharing a private PostgreSQL and NATS (the scale-out deployment).
    Cluster(usize),
}

/// The processes of a deployment, every one pinned to the server core: on this 2-core machine
/// the multi-node figures show what the scale-out path costs, not how it scales.
pub struct Servers {
    pub(crate) nodes: Vec<ParleyServer>,
    // Declared after the nodes, so dropped after them.
    pub(crate) postgres: Option<parley_testkit::TestPostgres>,
    pub(crate) nats: Option<parley_testkit::TestNats>,
}

impl Servers {
    pub fn start(deployment: Deployment, core: usize) -> Result<Servers> {
        match deployment {
            Deployment::Single => Ok(Servers {
                nodes: vec![ParleyServer::start(core)?],
                postgres: None,
                nats: None,
            }),
            Deployment::Cluster(count) => {
                let postgres = parley_testkit::TestPostgres::start();
                pin_process_tree(postgres.pid().context("postgres is not running")?, core)?;
                let nats = parley_testkit::TestNats::start(1);
                for pid in nats.pids() {
                    pin_process_tree(pid, core)?;
                }
                let shared = Arc::new(tempfile::tempdir()?);
                let flags = [
                    "--database-url".to_owned(),
                    postgres.url(),
                    "--nats".to_owned(),
                    nats.url(0),
                ];
                let nodes = (0..count)
                    .map(|_| ParleyServer::start_with(core, shared.clone(), &flags))
                    .collect::<Result<Vec<_>>>()?;
                Ok(Servers {
                    nodes,
                    postgres: Some(postgres),
                    nats: Some(nats),
                })
            }
        }
    }

    /// The node that device number `index` connects to: devices are spread over the nodes in
    /// turn, so that the two sides of a pair are on different nodes.
    pub fn base(&self, index: usize) -> &str {
        &self.nodes[index % self.nodes.len()].base
    }

    /// One live connection per device, taking new pushes, device i on node `base(i)`.
    pub(crate) async fn connect_all(
        &self,
        devices: &[Device],
        load: &Arc<Load>,
    ) -> Result<Vec<Connection>> {
        let mut connections = Vec::with_capacity(devices.len());
        for (index, device) in devices.iter().enumerate() {
            connections.push(
                connect(
                    self.base(index),
                    &device.token,
                    load.clone(),
                    Push::New,
                    false,
                )
                .await?,
            );
        }
        Ok(connections)
    }

    pub fn first(&self) -> &ParleyServer {
        &self.nodes[0]
    }

    pub fn pids(&self) -> String {
        let pids: Vec<String> = self.nodes.iter().map(|n| n.pid().to_string()).collect();
        pids.join(", ")
    }

    /// CPU of every process of the deployment. The store's share is the SQLite threads of the
    /// nodes, or PostgreSQL (all its processes).
    pub fn cpu(&self) -> Result<CpuSplit> {
        let mut split = CpuSplit::default();
        for node in &self.nodes {
            let node = CpuSplit::of(node.pid())?;
            split.total_s += node.total_s;
            split.store_s += node.store_s;
        }
        if let Some(pid) = self.postgres.as_ref().and_then(|p| p.pid()) {
            let postgres = process_tree_cpu_seconds(pid)?;
            split.total_s += postgres;
            split.store_s += postgres;
        }
        for pid in self.nats.iter().flat_map(|n| n.pids()) {
            split.total_s += process_tree_cpu_seconds(pid)?;
        }
        Ok(split)
    }
}

/// Where a Parley server's CPU time went: all of it, and the part its SQLite threads (the writer
/// and the readers, named `parley-sqlite-*`) used. The rest is the async runtime: sockets,
/// WebSocket and protobuf framing, MLS framing checks, franks, fan-out. The split says how fast
/// the server could go if the store cost nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuSplit {
    pub total_s: f64,
    pub store_s: f64,
}

impl CpuSplit {
    pub fn of(pid: u32) -> Result<CpuSplit> {
        let mut store_s = 0.0;
        for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
            let task = task?.path();
            // A thread that ends between listing and reading is not a store thread.
            let Ok(name) = std::fs::read_to_string(task.join("comm")) else {
                continue;
            };
            if name.starts_with("parley-sqlite") {
                store_s += stat_cpu_seconds(&task.join("stat").to_string_lossy())?;
            }
        }
        Ok(CpuSplit {
            total_s: cpu_seconds(pid)?,
            store_s,
        })
    }

    pub fn since(self, before: CpuSplit) -> CpuSplit {
        CpuSplit {
            total_s: self.total_s - before.total_s,
            store_s: self.store_s - before.store_s,
        }
    }

    /// Microseconds of server CPU per unit of work, outside the store.
    pub fn outside_store_us(&self, units: u64) -> f64 {
        (self.total_s - self.store_s) / units.max(1) as f64 * 1e6
    }

    pub fn store_share(&self) -> f64 {
        if self.total_s > 0.0 {
            self.store_s / self.total_s
        } else {
            0.0
        }
    }
}

/// CPU seconds used so far by this process, the load generator (pinned to the other core).
pub(crate) fn load_cpu_seconds() -> Result<f64> {
    cpu_seconds(std::process::id())
}

/// The server's CPU and the load core's busy share over one measured interval.
pub(crate) struct Meter {
    pub(crate) server: CpuSplit,
    pub(crate) load_s: f64,
    pub(crate) started: Instant,
}

impl Meter {
    /// Starts measuring, given the server's CPU now.
    pub(crate) fn start(server: CpuSplit) -> Result<Meter> {
        Ok(Meter {
            server,
            load_s: load_cpu_seconds()?,
            started: Instant::now(),
        })
    }

    /// Given the server's CPU now: its CPU since the start, and the load core's busy share.
    pub(crate) fn stop(self, server: CpuSplit) -> Result<(CpuSplit, f64)> {
        let busy = (load_cpu_seconds()? - self.load_s) / self.started.elapsed().as_secs_f64();
        Ok((server.since(self.server), busy))
    }
}

impl Drop for ParleyServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
