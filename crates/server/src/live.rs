//! The live connection (`GET /v1/ws`): one WebSocket per device that carries, both ways, what
//! would otherwise take three HTTP requests per message (hint, fetch, ack).
//!
//! - Without a `StartPush` the server sends queue heads only (hints); the client fetches over
//!   HTTP. Old clients keep working.
//! - After `StartPush { after }` the server pushes the queue items themselves, in order, in
//!   batches; they stay queued until the client acknowledges them with an `Ack` frame, so a
//!   connection that drops loses nothing (the next one starts from the client's cursor). A
//!   cursor beyond the device's queue head is refused as `GET /v1/queue` refuses it, and the
//!   connection closes (close code 4400, the same message).
//! - `LiveSubmit` frames are submissions answered by `LiveResult`s. Several may be in flight,
//!   which is what lets the store's group commit gather them into one transaction.
//!
//! Like the HTTP handlers, this module holds no rules: submissions, fetches and acks go to the
//! delivery service, which owns them. What each client frame does is decided in [`dispatch`],
//! without sockets (so that it can be fuzzed); this module carries it out.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ws::{Message as WsMessage, WebSocket};
use parley_protocol::{v1, DeviceId, ErrorCode, UserId};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::accounts::Authenticated;
use crate::{ApiError, App};

pub mod dispatch;

use dispatch::{Action, Check, FrameState, Push, SUBMISSIONS_IN_FLIGHT};

/// Most items in one pushed frame (the store also caps a page's bytes).
const PUSH_BATCH: u32 = 512;
/// A client that does not take a frame within this time is dropped.
const SEND_TIMEOUT: Duration = Duration::from_secs(30);
/// Pushes and acknowledgements rely on a session check at most this old; every submission
/// checks the session first, and idle connections check every `session_check`.
const SESSION_RECHECK: Duration = Duration::from_secs(1);
/// Close code for a connection whose session ended (suspension, expiry): 4000 + HTTP 401.
const SESSION_ENDED: u16 = 4401;
/// The most bytes a close frame's reason may hold (RFC 6455: 125 with the code).
const MAX_CLOSE_REASON: usize = 123;

/// Live connections one device may hold open at once on a node, and one account over all its
/// devices.
const CONNECTIONS_PER_DEVICE: usize = 4;
const CONNECTIONS_PER_ACCOUNT: usize = 16;
/// Control frames (pings, unsolicited pongs) a client may send per second, and in a burst.
const CONTROL_PER_SECOND: u32 = 10;
const CONTROL_BURST: u32 = 50;

#[derive(Default)]
struct Counts {
    devices: HashMap<DeviceId, usize>,
    accounts: HashMap<UserId, usize>,
}

/// Open live connections by device and by account on this node.
#[derive(Default)]
pub(crate) struct LiveConnections {
    counts: Arc<Mutex<Counts>>,
}

/// One admitted connection; dropping it frees its place.
pub(crate) struct Slot {
    counts: Arc<Mutex<Counts>>,
    device: DeviceId,
    user: UserId,
}

fn lock(counts: &Mutex<Counts>) -> std::sync::MutexGuard<'_, Counts> {
    counts.lock().unwrap_or_else(|p| p.into_inner())
}

impl LiveConnections {
    /// A place for one more connection of `device`, or an error saying whose share is used up.
    pub(crate) fn admit(&self, device: &Authenticated) -> Result<Slot, ApiError> {
        let (device_id, user) = (device.0.device_id, device.0.user_id);
        let mut counts = lock(&self.counts);
        if counts.devices.get(&device_id).copied().unwrap_or(0) >= CONNECTIONS_PER_DEVICE {
            return Err(ApiError::new(
                ErrorCode::RateLimited,
                format!("this device has {CONNECTIONS_PER_DEVICE} live connections open already"),
            ));
        }
        if counts.accounts.get(&user).copied().unwrap_or(0) >= CONNECTIONS_PER_ACCOUNT {
            return Err(ApiError::new(
                ErrorCode::RateLimited,
                format!("this account has {CONNECTIONS_PER_ACCOUNT} live connections open already"),
            ));
        }
        *counts.devices.entry(device_id).or_default() += 1;
        *counts.accounts.entry(user).or_default() += 1;
        Ok(Slot {
            counts: self.counts.clone(),
            device: device_id,
            user,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = lock(&self.counts);
        fn release<K: std::hash::Hash + Eq>(map: &mut HashMap<K, usize>, key: &K) {
            if let Some(count) = map.get_mut(key) {
                *count -= 1;
                if *count == 0 {
                    map.remove(key);
                }
            }
        }
        release(&mut counts.devices, &self.device);
        release(&mut counts.accounts, &self.user);
    }
}

/// Control frames within their rate: a token bucket.
struct ControlBudget {
    tokens: f64,
    at: tokio::time::Instant,
}

impl ControlBudget {
    fn new() -> Self {
        ControlBudget {
            tokens: CONTROL_BURST as f64,
            at: tokio::time::Instant::now(),
        }
    }

    fn take(&mut self) -> bool {
        let now = tokio::time::Instant::now();
        let refill = now.duration_since(self.at).as_secs_f64() * CONTROL_PER_SECOND as f64;
        self.tokens = (self.tokens + refill).min(CONTROL_BURST as f64);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

pub(crate) async fn session(app: Arc<App>, device: Authenticated, socket: WebSocket, slot: Slot) {
    let device_id = device.0.device_id;
    let Ok(head) = app.delivery.queue_head(device_id).await else {
        return;
    };
    // Subscribed before the first check: a suspension after it is heard.
    let ended = app.fanout.local().sessions_ended();
    let mut heads = app.fanout.subscribe(device_id, head).await;
    let typing = app.fanout.local().subscribe_typing(device_id);
    app.metrics.live_connections.inc();
    let period = app.config.session_check;
    let mut check = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let outcome = Session {
        app: app.clone(),
        device: Arc::new(device),
        socket,
        frames: FrameState::default(),
        last_head_sent: None,
        ack: None,
        ended,
        check,
        checked_at: tokio::time::Instant::now(),
        control: ControlBudget::new(),
        typing,
        typing_out: Vec::new(),
    }
    .run(&mut heads)
    .await;
    drop(slot);
    drop(heads);
    app.metrics.live_connections.dec();
    app.fanout.release(device_id);
    tracing::debug!(device = %device_id, reason = outcome, "live connection closed");
}

struct Session {
    app: Arc<App>,
    device: Arc<Authenticated>,
    socket: WebSocket,
    /// Pushing, acknowledgements and submissions as client frames left them.
    frames: FrameState,
    last_head_sent: Option<u64>,
    /// The acknowledgement being written (while `frames.acking`).
    ack: Option<JoinHandle<()>>,
    /// Accounts whose sessions a moderator ended.
    ended: tokio::sync::broadcast::Receiver<parley_protocol::Username>,
    /// The periodic session check.
    check: tokio::time::Interval,
    /// When the session was last found valid.
    checked_at: tokio::time::Instant,
    control: ControlBudget,
    /// Typing indicators for this device, and those waiting for the next frame.
    typing: tokio::sync::broadcast::Receiver<Arc<v1::Typing>>,
    typing_out: Vec<v1::Typing>,
}

/// Why a connection ends when its session did.
const ENDED: &str = "session ended";

impl Session {
    /// Checks the session in the store (expiry, suspension, a session deleted by another
    /// process); on failure tells the client why and ends the connection.
    async fn recheck(&mut self) -> Result<(), &'static str> {
        match self.app.accounts.still_valid(&self.device).await {
            Ok(()) => {
                self.checked_at = tokio::time::Instant::now();
                Ok(())
            }
            Err(e) if e.code() == parley_protocol::ErrorCode::Unauthenticated => {
                self.close(SESSION_ENDED, "the session has ended").await;
                Err(ENDED)
            }
            // The store is unavailable: the connection stays, and so does the next check.
            Err(e) => {
                tracing::warn!(error = %e.0, "session check failed");
                Ok(())
            }
        }
    }

    /// Sends a close frame (the reason cut to what one holds), waiting at most a second.
    async fn close(&mut self, code: u16, reason: &str) {
        let mut end = reason.len().min(MAX_CLOSE_REASON);
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        let close = axum::extract::ws::CloseFrame {
            code,
            reason: reason[..end].into(),
        };
        let _ = tokio::time::timeout(
            Duration::from_secs(1),
            self.socket.send(WsMessage::Close(Some(close))),
        )
        .await;
    }

    /// A check at most [`SESSION_RECHECK`] old.
    async fn recent_check(&mut self) -> Result<(), &'static str> {
        if self.checked_at.elapsed() >= SESSION_RECHECK {
            self.recheck().await?;
        }
        Ok(())
    }

    async fn run(mut self, heads: &mut tokio::sync::watch::Receiver<u64>) -> &'static str {
        // Boxed: the channel allocates its first block of slots up front, and most connections
        // never submit anything (an idle connection should cost little).
        let (results_tx, mut results_rx) =
            mpsc::channel::<Box<v1::LiveResult>>(SUBMISSIONS_IN_FLIGHT);
        let mut results = Vec::new();
        loop {
            let head = *heads.borrow_and_update();
            let mut frame = v1::ServerFrame {
                queue_head: head,
                ..Default::default()
            };
            let mut more_to_push = false;
            if let Push::On { sent } = self.frames.push {
                if head > sent {
                    if let Err(e) = self.recent_check().await {
                        return e;
                    }
                    match self
                        .app
                        .delivery
                        .push_batch(&self.device, sent, head, PUSH_BATCH)
                        .await
                    {
                        // At most about a frame's worth (`delivery::PUSH_PAGE_BYTES`).
                        Ok(batch) => {
                            let pushed_up_to = batch.items.last().map_or(batch.head, |i| i.seq);
                            self.app
                                .metrics
                                .messages_out
                                .inc_by(batch.items.len() as u64);
                            frame.items = batch.items;
                            frame.expired_up_to = batch.expired_up_to;
                            frame.queue_head = frame.queue_head.max(batch.head);
                            self.frames.pushed(pushed_up_to);
                            more_to_push = pushed_up_to < frame.queue_head;
                        }
                        // The store is unavailable: the items stay queued, the next hint retries.
                        Err(e) => tracing::warn!(error = %e.0, "push fetch failed"),
                    }
                }
            }
            while let Ok(result) = results_rx.try_recv() {
                results.push(*result);
            }
            self.frames.answered(results.len());
            frame.results = std::mem::take(&mut results);
            frame.typing = std::mem::take(&mut self.typing_out);
            if self.last_head_sent != Some(frame.queue_head)
                || !frame.items.is_empty()
                || !frame.results.is_empty()
                || !frame.typing.is_empty()
            {
                let bytes = parley_protocol::encode(&frame);
                // A slow client never holds more than one frame of ours: the send is awaited.
                match tokio::time::timeout(
                    SEND_TIMEOUT,
                    self.socket.send(WsMessage::Binary(bytes.into())),
                )
                .await
                {
                    Ok(Ok(())) => self.last_head_sent = Some(frame.queue_head),
                    Ok(Err(_)) => return "send failed",
                    Err(_) => return "client too slow",
                }
            }
            tokio::select! {
                // Answers first: they free capacity and the client is waiting for them.
                biased;
                result = results_rx.recv() => match result {
                    Some(result) => results.push(*result),
                    None => return "results channel closed",
                },
                () = std::future::ready(()), if more_to_push => {}
                changed = heads.changed() => if changed.is_err() { return "hints closed" },
                typing = self.typing.recv() => match typing {
                    Ok(typing) => self.typing_out.push((*typing).clone()),
                    // Missed ones are stale by now.
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return "shutting down",
                },
                _ = self.check.tick() => if let Err(e) = self.recheck().await { return e },
                ended = self.ended.recv() => match ended {
                    Ok(user) if user != self.device.0.username => {}
                    // Ours, or announcements were missed: check.
                    Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        if let Err(e) = self.recheck().await { return e }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return "shutting down",
                },
                () = wait_for(&mut self.ack), if self.ack.is_some() => {
                    self.ack = None;
                    if let Some(up_to) = self.frames.ack_finished() {
                        self.start_ack(up_to);
                    }
                }
                inbound = self.socket.recv(), if self.frames.reading() => {
                    match inbound {
                        Some(Ok(WsMessage::Binary(bytes))) => {
                            if let Err(e) = self.handle(&bytes, head, &results_tx).await {
                                return e;
                            }
                        }
                        Some(Ok(WsMessage::Close(_))) | None | Some(Err(_)) => return "closed",
                        // Pings are answered below us, each answer a frame to write: within a
                        // rate, so that pongs a client never reads cannot pile up.
                        Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_))) => {
                            if !self.control.take() {
                                return "too many control frames";
                            }
                        }
                        // Text frames mean nothing here.
                        Some(Ok(_)) => {}
                    }
                }
            }
        }
    }

    /// One client frame, decided by [`FrameState::on_frame`]. Every submission checks the
    /// session first; other frames rely on a check at most a second old.
    async fn handle(
        &mut self,
        bytes: &[u8],
        head: u64,
        results: &mpsc::Sender<Box<v1::LiveResult>>,
    ) -> Result<(), &'static str> {
        let step = self
            .frames
            .on_frame(bytes, self.app.config.max_frame_bytes, head)?;
        match step.check {
            Check::Now => self.recheck().await?,
            Check::Recent => self.recent_check().await?,
        }
        match step.action {
            Action::Done => {}
            Action::Ack(up_to) => self.start_ack(up_to),
            Action::CheckHead { after } => self.confirm_push(after, head).await?,
            Action::Typing(typing) => {
                if let Err(e) = self.app.forward_typing(&self.device, typing).await {
                    tracing::debug!(error = %e.0, "typing indicator not forwarded");
                }
            }
            Action::Submit { request_id, submit } => {
                let (app, device, results) =
                    (self.app.clone(), self.device.clone(), results.clone());
                tokio::spawn(async move {
                    let outcome = match submit {
                        Err(e) => Err(e),
                        Ok(submit) => app.submit(&device, submit).await,
                    };
                    let result = match outcome {
                        Ok(accepted) => v1::LiveResult {
                            request_id,
                            accepted: Some(accepted),
                            error: None,
                        },
                        Err(e) => v1::LiveResult {
                            request_id,
                            accepted: None,
                            error: Some(e.0.to_wire()),
                        },
                    };
                    // The connection is gone: the outcome is stored and a retry finds it.
                    let _ = results.send(Box::new(result)).await;
                });
            }
        }
        Ok(())
    }

    /// A push cursor beyond the head this connection knows, against the store's head. Refused,
    /// it gets `GET /v1/queue`'s message in a close frame whose code is 4000 + the HTTP status
    /// (4400), and the connection ends rather than carry on without pushing: a client that
    /// ignored the refusal would wait for pushes forever.
    async fn confirm_push(&mut self, after: u64, head: u64) -> Result<(), &'static str> {
        let stored = match self.app.delivery.queue_head(self.device.0.device_id).await {
            Ok(stored) => Some(stored),
            // The store says why where it fails.
            Err(e) => {
                tracing::debug!(error = %e.0, "queue head check failed");
                None
            }
        };
        if let Err(refused) = self.frames.confirm_push(after, head, stored) {
            self.close(4000 + refused.code().http_status(), &refused.0.message)
                .await;
            return Err("push cursor beyond the head");
        }
        Ok(())
    }

    fn start_ack(&mut self, up_to: u64) {
        let (app, device) = (self.app.clone(), self.device.clone());
        self.ack = Some(tokio::spawn(async move {
            if let Err(e) = app.delivery.ack(&device, up_to).await {
                // Unacknowledged items are pushed again on the next connection: nothing lost.
                // Debug: any client can make its acks fail (beyond its head), and a failing
                // store is logged as an error where it fails.
                tracing::debug!(error = %e.0, "live acknowledgement failed");
            }
        }));
    }
}

async fn wait_for(task: &mut Option<JoinHandle<()>>) {
    if let Some(task) = task {
        let _ = task.await;
    }
}
