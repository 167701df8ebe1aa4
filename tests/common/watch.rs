//! What an attack costs the server while it runs: the peak growth of its resident memory and
//! the slowest `/healthz` answer, sampled from the start of the watch to its end.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::TestServer;

/// A `/healthz` that does not answer within this counts as this slow.
const HEALTH_GIVE_UP: Duration = Duration::from_secs(10);

/// Memory and health bounds for an attack that should cost the server next to nothing.
pub const SMALL_ATTACK_KIB: u64 = 64 * 1024;
pub const HEALTH_WITHIN: Duration = Duration::from_millis(500);

pub struct Watch {
    stop: Arc<AtomicBool>,
    peak: tokio::task::JoinHandle<u64>,
    slowest: tokio::task::JoinHandle<Duration>,
    before_kib: u64,
    pid: u32,
}

/// What a watch saw.
#[derive(Debug, Clone, Copy)]
pub struct Cost {
    /// Peak resident memory over the watch, less that at its start.
    pub peak_kib: u64,
    /// Resident memory at the end, less that at the start.
    pub end_kib: u64,
    pub slowest_health: Duration,
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

impl Watch {
    pub fn start(server: &TestServer) -> Watch {
        let pid = server.pid();
        let before_kib = rss_kib(pid);
        let stop = Arc::new(AtomicBool::new(false));
        let peak = tokio::spawn({
            let stop = stop.clone();
            async move {
                let mut peak = before_kib;
                while !stop.load(Ordering::Relaxed) {
                    peak = peak.max(rss_kib(pid));
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                peak.saturating_sub(before_kib)
            }
        });
        let url = format!("{}/healthz", server.url());
        let slowest = tokio::spawn({
            let stop = stop.clone();
            async move {
                let http = reqwest::Client::new();
                let mut slowest = Duration::ZERO;
                while !stop.load(Ordering::Relaxed) {
                    let started = Instant::now();
                    let ok = tokio::time::timeout(HEALTH_GIVE_UP, http.get(&url).send())
                        .await
                        .is_ok_and(|r| r.is_ok_and(|r| r.status().is_success()));
                    slowest = slowest.max(if ok {
                        started.elapsed()
                    } else {
                        HEALTH_GIVE_UP
                    });
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                slowest
            }
        });
        Watch {
            stop,
            peak,
            slowest,
            before_kib,
            pid,
        }
    }

    pub async fn finish(self) -> Cost {
        self.stop.store(true, Ordering::Relaxed);
        let end_kib = rss_kib(self.pid).saturating_sub(self.before_kib);
        Cost {
            peak_kib: self.peak.await.unwrap_or(0),
            end_kib,
            slowest_health: self.slowest.await.unwrap_or(HEALTH_GIVE_UP),
        }
    }

    /// Ends the watch on `attack`: the server grew by less than `kib` at its peak, and answered
    /// `/healthz` within [`HEALTH_WITHIN`] throughout.
    pub async fn assert_cost_below(self, attack: &str, kib: u64) -> Cost {
        let cost = self.finish().await;
        eprintln!(
            "{attack}: peak server memory +{} KiB, slowest /healthz {:?}",
            cost.peak_kib, cost.slowest_health
        );
        assert_bounded(cost.peak_kib, kib, cost.slowest_health, HEALTH_WITHIN);
        cost
    }
}

/// The server grew by less than `kib` (`grown_kib`, however measured) and its slowest
/// `/healthz` (`slowest`) came within `health`.
pub fn assert_bounded(grown_kib: u64, kib: u64, slowest: Duration, health: Duration) {
    assert!(grown_kib < kib, "memory grew by {grown_kib} KiB");
    assert!(slowest < health, "/healthz took {slowest:?}");
}
