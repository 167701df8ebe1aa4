//! B1 to B4 on Parley.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use futures_util::StreamExt;

use crate::measure::*;

use super::*;

/// B1's world: devices in pairs, each pair a two-member MLS group, every device connected live.
pub struct Pairs {
    pub(crate) servers: Servers,
    pub(crate) devices: Vec<Device>,
    pub(crate) connections: Vec<Connection>,
    pub(crate) load: Arc<Load>,
    pub(crate) steps: u32,
}

/// The text of every load message: 200 bytes, as in the peers' runs.
pub(crate) fn load_text() -> String {
    "x".repeat(200)
}

pub struct RelayFigures {
    pub sent: u64,
    pub accepted: u64,
    pub delivered: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub server_cpu_s_per_1000: f64,
    pub server_cpu: CpuSplit,
    /// Busy share of the load generator's core while the load ran.
    pub load_core_busy: f64,
}

impl Pairs {
    pub async fn start(deployment: Deployment, users: usize) -> Result<Pairs> {
        let servers = Servers::start(deployment, 0)?;
        let http = Http::new(&servers.first().base)?;
        let devices = register_pairs(&http, "pair", users).await?;
        let load = Load::new();
        let connections = servers.connect_all(&devices, &load).await?;
        Ok(Pairs {
            servers,
            devices,
            connections,
            load,
            steps: 0,
        })
    }

    /// Open loop at `rate` messages per second for `duration`: message i is due at i / rate
    /// and goes from device i mod users to its partner. Latency runs from the due time (so a
    /// stalled sender shows up as latency) to the pushed item's arrival at the partner.
    pub async fn run(&mut self, rate: u32, duration: Duration) -> Result<RelayFigures> {
        self.steps += 1;
        let users = self.devices.len();
        let total = (rate as f64 * duration.as_secs_f64()) as u64;
        let per_sender = total.div_ceil(users as u64);
        let total = per_sender * users as u64;
        // Encrypting is the clients' work, not the server's: done before the clock starts.
        let text = load_text();
        let step_id = self.steps;
        let frames: Vec<Vec<Vec<u8>>> = self
            .devices
            .iter_mut()
            .enumerate()
            .map(|(sender, device)| {
                (0..per_sender)
                    .map(|index| {
                        device.submission_frame(message_id(step_id, sender as u32, index), &text)
                    })
                    .collect::<Result<Vec<_>>>()
            })
            .collect::<Result<_>>()?;
        let step = Arc::new(Step::new(step_id, users, per_sender, 1));
        self.load.set_step(step.clone());
        // For attaching a profiler to the server while the load runs.
        eprintln!(
            "  (step {step_id}: {rate} msgs/s for {duration:?}, server pid {})",
            self.servers.pids()
        );
        let meter = Meter::start(self.servers.cpu()?)?;
        let start = self.load.now_ns();
        let mut frames: Vec<std::vec::IntoIter<Vec<u8>>> =
            frames.into_iter().map(Vec::into_iter).collect();
        let mut sent = 0u64;
        let mut tick = tokio::time::interval(Duration::from_millis(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        while sent < total {
            tick.tick().await;
            let elapsed = self.load.now_ns() - start;
            let due = ((elapsed as f64 / 1e9) * rate as f64).min(total as f64) as u64;
            while sent < due {
                let sender = (sent % users as u64) as usize;
                let index = sent / users as u64;
                let scheduled = start + (sent as f64 * 1e9 / rate as f64) as u64;
                step.scheduled[step.slot(sender as u32, index)].store(scheduled, Ordering::Relaxed);
                let frame = frames[sender].next().context("ran out of frames")?;
                self.connections[sender]
                    .outbox
                    .send(frame)
                    .map_err(|_| anyhow!("connection {sender} closed"))?;
                sent += 1;
            }
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while (step.delivered.load(Ordering::Relaxed) < total
            || step.accepted.load(Ordering::Relaxed) + step.refused.load(Ordering::Relaxed) < total)
            && Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let (cpu, load_core_busy) = meter.stop(self.servers.cpu()?)?;
        // Let the last acknowledgements land before the next step.
        while self.load.unacked_connections.load(Ordering::Relaxed) > 0 && Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let delivered = step.delivered.load(Ordering::Relaxed);
        Ok(RelayFigures {
            sent: total,
            accepted: step.accepted.load(Ordering::Relaxed),
            delivered,
            p50_ms: step.latency.quantile_ms(0.50),
            p99_ms: step.latency.quantile_ms(0.99),
            server_cpu_s_per_1000: cpu.total_s / total as f64 * 1000.0,
            server_cpu: cpu,
            load_core_busy,
        })
    }
}

pub struct GroupFigures {
    pub messages: u64,
    pub deliveries: u64,
    pub deliveries_per_s: f64,
    pub time_to_last_ms: f64,
    pub server_cpu: CpuSplit,
    pub load_core_busy: f64,
}

/// B2: one sender and `members - 1` online receivers in one group; the sender keeps `window`
/// submissions in flight. Deliveries per second run from the first send to the last delivery.
pub async fn group_fan_out(
    deployment: Deployment,
    members: usize,
    messages: u64,
    window: u64,
) -> Result<GroupFigures> {
    let servers = Servers::start(deployment, 0)?;
    let http = Http::new(&servers.first().base)?;
    let mut devices = register_many(&http, "member", members, 64).await?;
    let (creator, others) = devices.split_at_mut(1);
    create_group(&http, &mut creator[0], others, 250, false).await?;
    let load = Load::new();
    let connections = servers.connect_all(&devices, &load).await?;
    // Let the Welcomes drain before the clock starts.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let text = load_text();
    let frames = (0..messages)
        .map(|index| devices[0].submission_frame(message_id(1, 0, index), &text))
        .collect::<Result<Vec<_>>>()?;
    let step = Arc::new(Step::new(1, 1, messages, members as u64 - 1));
    load.set_step(step.clone());
    eprintln!("  (fan-out into {members}: server pid {})", servers.pids());
    let meter = Meter::start(servers.cpu()?)?;
    let start = load.now_ns();
    let mut sent = 0u64;
    let mut frames = frames.into_iter();
    while sent < messages {
        let answered = step.accepted.load(Ordering::Relaxed) + step.refused.load(Ordering::Relaxed);
        if sent - answered >= window {
            tokio::time::sleep(Duration::from_micros(200)).await;
            continue;
        }
        step.scheduled[step.slot(0, sent)].store(load.now_ns(), Ordering::Relaxed);
        connections[0]
            .outbox
            .send(frames.next().context("ran out of frames")?)
            .map_err(|_| anyhow!("sender connection closed"))?;
        sent += 1;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while step.delivered.load(Ordering::Relaxed) < step.expected() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let deliveries = step.delivered.load(Ordering::Relaxed);
    let elapsed = (step.last_delivery_ns.load(Ordering::Relaxed) - start) as f64 / 1e9;
    let (server_cpu, load_core_busy) = meter.stop(servers.cpu()?)?;
    drop(connections);
    Ok(GroupFigures {
        messages,
        deliveries,
        deliveries_per_s: deliveries as f64 / elapsed,
        time_to_last_ms: step.latency.quantile_ms(1.0),
        server_cpu,
        load_core_busy,
    })
}

pub struct DensityFigures {
    pub bytes_per_connection: f64,
    pub logins_per_s: f64,
    pub idle_cpu_percent: f64,
}

/// B3: `count` devices register and log in, then each opens its live connection and stays
/// idle. Memory per connection is the server's RSS growth from before the first connection to
/// after the last, divided by their number.
pub async fn connection_density(count: usize) -> Result<DensityFigures> {
    let server = ParleyServer::start(0)?;
    let http = Http::new(&server.base)?;
    let started = Instant::now();
    let devices = register_many(&http, "idle", count, 128).await?;
    let logins_per_s = count as f64 / started.elapsed().as_secs_f64();
    let tokens: Vec<String> = devices.into_iter().map(|d| d.token).collect();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = rss_bytes(server.pid())?;
    let load = Load::new();
    let connections = futures_util::stream::iter(tokens.iter())
        .map(|token| connect(&server.base, token, load.clone(), Push::Off, true))
        .buffered(64)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<Vec<_>>>()?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = rss_bytes(server.pid())?;
    let cpu_before = cpu_seconds(server.pid())?;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let idle_cpu_percent = (cpu_seconds(server.pid())? - cpu_before) / 5.0 * 100.0;
    drop(connections);
    Ok(DensityFigures {
        bytes_per_connection: after.saturating_sub(before) as f64 / count as f64,
        logins_per_s,
        idle_cpu_percent,
    })
}

pub struct OfflineFigures {
    pub enqueue_per_s: f64,
    pub drain_per_s: f64,
    pub bytes_per_message: f64,
    pub drained: u64,
    /// Server CPU while the backlog drained.
    pub drain_cpu: CpuSplit,
    pub drain_load_core_busy: f64,
}

/// B4: `users` devices in pairs; the second of each pair is offline while the first sends it
/// `per_user` messages (enqueue rate: durable acknowledgements per second, 64 in flight per
/// sender); then all recipients connect at once and drain (drain rate: items pushed and
/// received per second until the last one).
pub async fn offline_drain(users: usize, per_user: u64) -> Result<OfflineFigures> {
    let server = ParleyServer::start(0)?;
    let http = Http::new(&server.base)?;
    let mut devices = register_pairs(&http, "offline", users).await?;
    let load = Load::new();
    let senders: Vec<usize> = (0..users).step_by(2).collect();
    let text = load_text();
    let frames: Vec<Vec<Vec<u8>>> = senders
        .iter()
        .map(|&sender| {
            (0..per_user)
                .map(|index| {
                    devices[sender].submission_frame(message_id(1, sender as u32, index), &text)
                })
                .collect::<Result<Vec<_>>>()
        })
        .collect::<Result<_>>()?;
    let step = Arc::new(Step::new(1, users, per_user, 1));
    load.set_step(step.clone());
    let mut connections = Vec::new();
    for &sender in &senders {
        connections.push(
            connect(
                &server.base,
                &devices[sender].token,
                load.clone(),
                Push::New,
                false,
            )
            .await?,
        );
    }
    let db_before = dir_bytes(server.data.path())?;
    let start = Instant::now();
    let total = senders.len() as u64 * per_user;
    for (connection, frames) in connections.iter().zip(frames) {
        for frame in frames {
            connection
                .outbox
                .send(frame)
                .map_err(|_| anyhow!("sender connection closed"))?;
        }
    }
    let deadline = Instant::now() + Duration::from_secs(300);
    while step.accepted.load(Ordering::Relaxed) + step.refused.load(Ordering::Relaxed) < total
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let enqueue_per_s = total as f64 / start.elapsed().as_secs_f64();
    anyhow::ensure!(
        step.refused.load(Ordering::Relaxed) == 0,
        "the server refused submissions"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let bytes_per_message =
        dir_bytes(server.data.path())?.saturating_sub(db_before) as f64 / total as f64;
    eprintln!("  (drain: server pid {})", server.pid());
    let meter = Meter::start(CpuSplit::of(server.pid())?)?;
    let started_drain = load.now_ns();
    let _receivers = futures_util::stream::iter(devices.iter().skip(1).step_by(2))
        .map(|device| {
            connect(
                &server.base,
                &device.token,
                load.clone(),
                Push::Backlog,
                false,
            )
        })
        .buffered(64)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<Vec<_>>>()?;
    while step.delivered.load(Ordering::Relaxed) < total && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let delivered = step.delivered.load(Ordering::Relaxed);
    anyhow::ensure!(delivered == total, "{delivered} of {total} drained");
    let drain_s = (step.last_delivery_ns.load(Ordering::Relaxed) - started_drain) as f64 / 1e9;
    let (drain_cpu, drain_load_core_busy) = meter.stop(CpuSplit::of(server.pid())?)?;
    Ok(OfflineFigures {
        enqueue_per_s,
        drain_per_s: total as f64 / drain_s,
        bytes_per_message,
        drained: total,
        drain_cpu,
        drain_load_core_busy,
    })
}
