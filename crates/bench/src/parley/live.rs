//! Live connections: submitting, taking pushed items, acknowledging, and measuring latency.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use futures_util::{SinkExt, StreamExt};
use parley_protocol::v1;
use prost::Message as _;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message as WsMessage;

use crate::measure::*;

/// Message ids of the load: step, sending device, and the message's index within the step.
/// The receiver finds the scheduled send time from them.
pub(crate) fn message_id(step: u32, sender: u32, index: u64) -> [u8; 16] {
    let mut id = [0u8; 16];
    id[..4].copy_from_slice(&step.to_be_bytes());
    id[4..8].copy_from_slice(&sender.to_be_bytes());
    id[8..].copy_from_slice(&index.to_be_bytes());
    id
}

/// Delivery latencies of one run, in microseconds.
#[derive(Default)]
pub struct Latencies(Mutex<Vec<u32>>);

impl Latencies {
    pub(crate) fn record(&self, nanos: u64) {
        let micros = u32::try_from(nanos / 1_000).unwrap_or(u32::MAX);
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(micros);
    }

    /// The same quantile as the ejabberd side's ([`percentile`]).
    pub(crate) fn quantile_ms(&self, quantile: f64) -> f64 {
        let mut sorted = self.0.lock().unwrap_or_else(|p| p.into_inner()).clone();
        sorted.sort_unstable();
        percentile(&sorted, quantile)
    }
}

/// What one measured run expects and has seen so far.
pub struct Step {
    pub(crate) id: u32,
    /// Messages each sending device sends in this step.
    pub(crate) per_sender: u64,
    /// Scheduled send time (ns since the load's epoch), by sender * per_sender + index.
    pub(crate) scheduled: Vec<AtomicU64>,
    /// Deliveries still expected per message (1 for a pair, members - 1 in a group).
    pub(crate) expected_per_message: u64,
    pub(crate) seen: Vec<AtomicU64>,
    pub latency: Latencies,
    pub delivered: AtomicU64,
    pub duplicates: AtomicU64,
    pub accepted: AtomicU64,
    pub refused: AtomicU64,
    pub(crate) last_delivery_ns: AtomicU64,
}

impl Step {
    pub fn new(id: u32, senders: usize, per_sender: u64, expected_per_message: u64) -> Step {
        let slots = senders * per_sender as usize;
        Step {
            id,
            per_sender,
            scheduled: (0..slots).map(|_| AtomicU64::new(0)).collect(),
            expected_per_message,
            seen: (0..slots).map(|_| AtomicU64::new(0)).collect(),
            latency: Latencies::default(),
            delivered: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            accepted: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            last_delivery_ns: AtomicU64::new(0),
        }
    }

    pub(crate) fn slot(&self, sender: u32, index: u64) -> usize {
        sender as usize * self.per_sender as usize + index as usize
    }

    pub fn expected(&self) -> u64 {
        self.scheduled.len() as u64 * self.expected_per_message
    }
}

/// The load's clock and the current step, shared by every connection's reader.
pub struct Load {
    pub(crate) epoch: Instant,
    pub(crate) step: RwLock<Arc<Step>>,
    /// Connections whose acknowledgements are all written: the load waits for them.
    pub unacked_connections: AtomicU64,
}

impl Load {
    pub fn new() -> Arc<Load> {
        Arc::new(Load {
            epoch: Instant::now(),
            step: RwLock::new(Arc::new(Step::new(0, 0, 0, 0))),
            unacked_connections: AtomicU64::new(0),
        })
    }

    pub fn now_ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    pub fn set_step(&self, step: Arc<Step>) {
        *self.step.write().unwrap_or_else(|p| p.into_inner()) = step;
    }

    pub(crate) fn step(&self) -> Arc<Step> {
        self.step.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub(crate) fn delivered(&self, message_id: &[u8]) {
        let step = self.step();
        let Ok(id) = <[u8; 16]>::try_from(message_id) else {
            return;
        };
        let step_id = u32::from_be_bytes([id[0], id[1], id[2], id[3]]);
        let sender = u32::from_be_bytes([id[4], id[5], id[6], id[7]]);
        let index =
            u64::from_be_bytes([id[8], id[9], id[10], id[11], id[12], id[13], id[14], id[15]]);
        if step_id != step.id || index >= step.per_sender {
            return;
        }
        let slot = step.slot(sender, index);
        let Some(seen) = step.seen.get(slot) else {
            return;
        };
        if seen.fetch_add(1, Ordering::Relaxed) >= step.expected_per_message {
            step.duplicates.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let now = self.now_ns();
        let scheduled = step.scheduled[slot].load(Ordering::Relaxed);
        step.latency.record(now.saturating_sub(scheduled));
        step.delivered.fetch_add(1, Ordering::Relaxed);
        step.last_delivery_ns.fetch_max(now, Ordering::Relaxed);
    }

    pub(crate) fn result(&self, result: &v1::LiveResult) {
        let step = self.step();
        if result.accepted.is_some() {
            step.accepted.fetch_add(1, Ordering::Relaxed);
        } else {
            step.refused.fetch_add(1, Ordering::Relaxed);
            if let Some(error) = &result.error {
                eprintln!("refused: {}", error.message);
            }
        }
    }
}

/// A device's live connection: frames to send go into `outbox`; a reader task records what
/// arrives and acknowledges pushed items.
pub struct Connection {
    pub outbox: mpsc::UnboundedSender<Vec<u8>>,
}

/// How a connection acknowledges: after this many items or this long after the oldest
/// unacknowledged one, whichever comes first.
pub(crate) const ACK_EVERY_ITEMS: u64 = 256;
pub(crate) const ACK_EVERY: Duration = Duration::from_millis(500);

/// Whether and from where a connection asks the server to push items.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Push {
    /// Hints only (an idle client).
    Off,
    /// Everything queued, from the first item.
    Backlog,
    /// Only what arrives from now on (the load skips the Welcomes of its own setup).
    New,
}

pub async fn connect(
    base: &str,
    token: &str,
    load: Arc<Load>,
    push: Push,
    small_buffers: bool,
) -> Result<Connection> {
    let url = format!("{}/v1/ws", base.replacen("http", "ws", 1));
    let mut request = url.into_client_request()?;
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {token}").parse()?);
    // tungstenite zero-fills the spare room of its read buffer before each read: keep it small.
    let config = Some(
        tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
            .read_buffer_size(if small_buffers { 4096 } else { 16 * 1024 })
            .write_buffer_size(0),
    );
    let (stream, _) = tokio_tungstenite::connect_async_with_config(request, config, true).await?;
    let (mut sink, mut source) = stream.split();
    let (outbox, mut frames) = mpsc::unbounded_channel::<Vec<u8>>();
    let after = match push {
        Push::Off => None,
        Push::Backlog => Some(0),
        // The server's first frame on a connection announces the queue head.
        Push::New => loop {
            match source.next().await {
                Some(Ok(WsMessage::Binary(bytes))) => {
                    break Some(v1::ServerFrame::decode(bytes.as_ref())?.queue_head)
                }
                Some(Ok(_)) => continue,
                _ => bail!("the live connection closed before its first frame"),
            }
        },
    };
    if let Some(after) = after {
        outbox.send(
            v1::ClientFrame {
                body: Some(v1::client_frame::Body::StartPush(v1::StartPush { after })),
            }
            .encode_to_vec(),
        )?;
    }
    tokio::spawn(async move {
        while let Some(frame) = frames.recv().await {
            if sink.feed(WsMessage::Binary(frame.into())).await.is_err() {
                return;
            }
            // Everything already waiting goes out in the same write.
            while let Ok(frame) = frames.try_recv() {
                if sink.feed(WsMessage::Binary(frame.into())).await.is_err() {
                    return;
                }
            }
            if sink.flush().await.is_err() {
                return;
            }
        }
    });
    let acks = outbox.clone();
    tokio::spawn(async move {
        let mut received_up_to = 0u64;
        let mut acked_up_to = 0u64;
        let mut unacked = 0u64;
        let mut ack_due: Option<tokio::time::Instant> = None;
        let ack = |up_to: u64| {
            acks.send(
                v1::ClientFrame {
                    body: Some(v1::client_frame::Body::Ack(v1::Ack { up_to })),
                }
                .encode_to_vec(),
            )
        };
        loop {
            let next = match ack_due {
                Some(due) => tokio::select! {
                    frame = source.next() => frame,
                    () = tokio::time::sleep_until(due) => {
                        if ack(received_up_to).is_err() { return; }
                        acked_up_to = received_up_to;
                        unacked = 0;
                        ack_due = None;
                        load.unacked_connections.fetch_sub(1, Ordering::Relaxed);
                        continue;
                    }
                },
                None => source.next().await,
            };
            let Some(Ok(WsMessage::Binary(bytes))) = next else {
                match next {
                    Some(Ok(_)) => continue,
                    _ => return,
                }
            };
            let Ok(frame) = v1::ServerFrame::decode(bytes.as_ref()) else {
                eprintln!("malformed server frame");
                return;
            };
            for result in &frame.results {
                load.result(result);
            }
            for item in &frame.items {
                if item.kind == v1::ItemKind::GroupMessage as i32 {
                    load.delivered(&item.message_id);
                }
                received_up_to = received_up_to.max(item.seq);
                unacked += 1;
            }
            if received_up_to > acked_up_to {
                if unacked >= ACK_EVERY_ITEMS {
                    if ack(received_up_to).is_err() {
                        return;
                    }
                    acked_up_to = received_up_to;
                    unacked = 0;
                    if ack_due.take().is_some() {
                        load.unacked_connections.fetch_sub(1, Ordering::Relaxed);
                    }
                } else if ack_due.is_none() {
                    ack_due = Some(tokio::time::Instant::now() + ACK_EVERY);
                    load.unacked_connections.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    });
    Ok(Connection { outbox })
}
