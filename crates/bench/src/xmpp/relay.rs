//! B1 on ejabberd: 1:1 relay between connected pairs at a fixed rate.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Result};
use tokio::net::tcp::OwnedWriteHalf;

use super::conn::*;
use super::server::Ejabberd;
use super::stanza::*;
use super::*;
use crate::measure::*;

pub struct RelayFigures {
    pub offered_per_s: f64,
    pub sent: u64,
    pub delivered: u64,
    pub lost: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub server_cpu_s_per_1000: f64,
}

#[derive(Default)]
pub(crate) struct RelayRun {
    pub(crate) run: u32,
    pub(crate) start: Option<Instant>,
    pub(crate) interval_ns: f64,
    pub(crate) total: u64,
    pub(crate) seen: Vec<u64>,
    pub(crate) delivered: u64,
    pub(crate) duplicates: u64,
    pub(crate) errors: u64,
    pub(crate) latencies_us: Vec<u32>,
}

impl RelayRun {
    pub(crate) fn receive(&mut self, stanza: &[u8]) {
        let Some((b'R', run, seq)) = marker(stanza) else {
            if tag_is(stanza, b"message") && is_error(stanza) {
                self.errors += 1;
            }
            return;
        };
        let Some(start) = self.start else { return };
        if run != self.run || seq >= self.total {
            return;
        }
        let (word, bit) = ((seq / 64) as usize, 1u64 << (seq % 64));
        if self.seen[word] & bit != 0 {
            self.duplicates += 1;
            return;
        }
        self.seen[word] |= bit;
        self.delivered += 1;
        // From the scheduled send time, so a late send counts against the server.
        let late_ns = start.elapsed().as_nanos() as f64 - seq as f64 * self.interval_ns;
        self.latencies_us
            .push((late_ns / 1000.0).clamp(0.0, u32::MAX as f64) as u32);
    }
}

/// B1: `users` connected, authenticated users (registered in-band, initial presence sent) in
/// users/2 pairs, reused for all rates.
pub struct XmppPairs {
    pub(crate) pid: u32,
    pub(crate) run_base: u32,
    pub(crate) runs: u32,
    pub(crate) writers: Vec<OwnedWriteHalf>,
    /// `<message to='partner' type='chat'>` per connection.
    pub(crate) heads: Vec<Vec<u8>>,
    pub(crate) pending: Vec<Vec<u8>>,
    pub(crate) state: Arc<Mutex<RelayRun>>,
    pub(crate) broken: Arc<AtomicBool>,
    /// Set when a run ended with a stanza half written: the streams can no longer be used.
    pub(crate) poisoned: bool,
    pub(crate) _readers: Tasks,
}

impl XmppPairs {
    pub async fn connect(server: &Ejabberd, users: usize) -> Result<XmppPairs> {
        ensure!(
            users >= 2 && users.is_multiple_of(2),
            "B1 needs an even number of users"
        );
        let first = server.allocate_users(users);
        let conns = login_all(server.port(), first, users, true, true).await?;
        let state = Arc::new(Mutex::new(RelayRun::default()));
        let broken = Arc::new(AtomicBool::new(false));
        let mut writers = Vec::with_capacity(users);
        let mut readers = Vec::with_capacity(users);
        let mut heads = Vec::with_capacity(users);
        for (i, conn) in conns.into_iter().enumerate() {
            let state = state.clone();
            let (writer, reader) = conn.split(broken.clone(), move |s| lock(&state).receive(s));
            writers.push(writer);
            readers.push(reader);
            heads.push(
                format!(
                    "<message to='{}@{DOMAIN}' type='chat'>",
                    user_name(first + (i ^ 1))
                )
                .into_bytes(),
            );
        }
        Ok(XmppPairs {
            pid: server.pid(),
            run_base: server.allocate_run(),
            runs: 0,
            writers,
            heads,
            pending: vec![Vec::new(); users],
            state,
            broken,
            poisoned: false,
            _readers: Tasks(readers),
        })
    }

    /// Open loop: message k is due at start + k / rate; every 1 ms tick writes what is due, one
    /// write per connection, round-robin over the pairs in both directions. Latency runs from the
    /// due time (no coordinated omission) to receipt; after `duration` stragglers get up to
    /// STRAGGLERS; lost = sent - delivered (unique sequence numbers).
    pub async fn run(&mut self, rate_per_s: u32, duration: Duration) -> Result<RelayFigures> {
        ensure!(rate_per_s > 0, "rate must be positive");
        ensure!(!self.poisoned, "an earlier run left a stanza half written");
        ensure!(
            !self.broken.load(Ordering::Relaxed),
            "a B1 connection was closed"
        );
        self.runs += 1;
        let run = self.run_base * 1000 + self.runs;
        let total = (f64::from(rate_per_s) * duration.as_secs_f64()).round() as u64;
        let interval_ns = 1e9 / f64::from(rate_per_s);
        let n = self.writers.len();
        let cpu_before = cpu_seconds(self.pid)?;
        let start = Instant::now();
        {
            let mut state = lock(&self.state);
            *state = RelayRun {
                run,
                start: Some(start),
                interval_ns,
                total,
                seen: vec![0; total.div_ceil(64) as usize],
                latencies_us: Vec::with_capacity(total as usize),
                ..RelayRun::default()
            };
        }
        let mut written = vec![0usize; n];
        let mut dirty: Vec<usize> = Vec::with_capacity(n);
        let mut is_dirty = vec![false; n];
        let mut ticker = tokio::time::interval(Duration::from_millis(1));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let give_up = start + duration + STRAGGLERS;
        let mut next = 0u64;
        loop {
            ticker.tick().await;
            let due = ((start.elapsed().as_nanos() as f64 / interval_ns) as u64 + 1).min(total);
            // Everything due since the last tick, round-robin over connections: pair p sends
            // 2p -> 2p+1, then 2p+1 -> 2p.
            while next < due {
                let c = (next % n as u64) as usize;
                let out = &mut self.pending[c];
                out.extend_from_slice(&self.heads[c]);
                push_body(out, b'R', run, next);
                if !is_dirty[c] {
                    is_dirty[c] = true;
                    dirty.push(c);
                }
                next += 1;
            }
            // One write per connection per tick; what the socket does not take waits.
            let mut i = 0;
            while i < dirty.len() {
                let c = dirty[i];
                let out = &self.pending[c];
                let mut failed = None;
                while written[c] < out.len() {
                    match self.writers[c].try_write(&out[written[c]..]) {
                        Ok(k) => written[c] += k,
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                        Err(e) => {
                            failed = Some(e);
                            break;
                        }
                    }
                }
                if let Some(e) = failed {
                    self.poisoned = true;
                    bail!("B1 write failed: {e}");
                }
                if written[c] == out.len() {
                    self.pending[c].clear();
                    written[c] = 0;
                    is_dirty[c] = false;
                    dirty.swap_remove(i);
                } else {
                    i += 1;
                }
            }
            if next >= total && dirty.is_empty() {
                break;
            }
            if Instant::now() > give_up {
                // The server stopped reading: what was not written counts as lost.
                self.poisoned = true;
                break;
            }
        }
        let deadline = (start + duration).max(Instant::now()) + STRAGGLERS;
        while Instant::now() < deadline && lock(&self.state).delivered < total {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let cpu = cpu_seconds(self.pid)? - cpu_before;
        let mut state = lock(&self.state);
        state.start = None;
        ensure!(
            state.errors == 0,
            "B1: {} messages bounced with errors",
            state.errors
        );
        let mut latencies = std::mem::take(&mut state.latencies_us);
        latencies.sort_unstable();
        Ok(RelayFigures {
            offered_per_s: total as f64 / duration.as_secs_f64(),
            sent: total,
            delivered: state.delivered,
            lost: total - state.delivered,
            p50_ms: percentile(&latencies, 0.50),
            p99_ms: percentile(&latencies, 0.99),
            server_cpu_s_per_1000: cpu / total.max(1) as f64 * 1000.0,
        })
    }
}
