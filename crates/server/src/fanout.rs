//! Live delivery hints across server nodes.
//!
//! A hint says "device X's queue head is now N". It carries no message and is never the truth:
//! the database holds the queues and clients read them by cursor, so a lost hint costs latency,
//! never data. [`InProcessFanout`] serves a single node; [`NatsFanout`] carries hints between
//! nodes over a NATS cluster, on one subject per device that only the node holding that device's
//! live connection subscribes to.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use futures_util::StreamExt;
use parley_protocol::{DeviceId, Username};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::notify::{LiveEntry, Notifier};

#[async_trait]
pub trait Fanout: Send + Sync + 'static {
    /// Announces new queue heads; `entry` is the message they hold, for connections on this
    /// node. Returns at once; large fan-outs run in the background.
    fn publish(&self, deliveries: Vec<(DeviceId, u64)>, entry: Option<Arc<LiveEntry>>);
    /// This node's live connections and what it just accepted for them.
    fn local(&self) -> &Notifier;
    /// Hints for a device with a live connection on this node, starting from `head`.
    async fn subscribe(&self, device: DeviceId, head: u64) -> watch::Receiver<u64>;
    /// Called when one of the device's live connections on this node closed.
    fn release(&self, device: DeviceId);
    /// Devices with a live connection on this node.
    fn connected_devices(&self) -> usize {
        self.local().connected_devices()
    }
    /// Resolves each time hints may have been lost (the NATS connection came back after a
    /// failure); the caller then re-reads the heads of [`Fanout::local_devices`] from the
    /// database. Never resolves for in-process hints, which cannot be lost.
    async fn hints_lost(&self);
    /// Devices with live connections on this node, to refresh after [`Fanout::hints_lost`].
    fn local_devices(&self) -> Vec<DeviceId> {
        self.local().devices_live()
    }
    /// Gives local watchers a head read from the database.
    fn refresh_local(&self, device: DeviceId, head: u64) {
        self.local().notify(&[(device, head)], None);
    }
    /// The account's sessions ended (suspension): its live connections on every node check
    /// their sessions at once and close. Connections that miss this (a lost NATS message, a
    /// suspension by another process) find out at their next periodic check.
    fn end_sessions(&self, user: &Username) {
        self.local().end_sessions(user);
    }
}

/// Hints within one process.
#[derive(Default)]
pub struct InProcessFanout {
    local: Notifier,
}

#[async_trait]
impl Fanout for InProcessFanout {
    fn local(&self) -> &Notifier {
        &self.local
    }

    fn publish(&self, deliveries: Vec<(DeviceId, u64)>, entry: Option<Arc<LiveEntry>>) {
        self.local.notify(&deliveries, entry.as_ref());
    }

    async fn subscribe(&self, device: DeviceId, head: u64) -> watch::Receiver<u64> {
        self.local.subscribe(device, head)
    }

    fn release(&self, _device: DeviceId) {}

    async fn hints_lost(&self) {
        std::future::pending::<()>().await
    }
}

/// Where nodes announce accounts whose sessions ended (the payload is the username).
const ENDED_SUBJECT: &str = "parley.sessions-ended";

fn subject(device: &DeviceId) -> String {
    format!("parley.hint.{}", device.to_hex())
}

/// Hints between nodes over NATS. Publishing goes to the device's subject; each node
/// subscribes to the subjects of the devices connected to it and feeds its local watchers.
pub struct NatsFanout {
    client: async_nats::Client,
    local: Arc<Notifier>,
    subscriptions: Mutex<HashMap<DeviceId, JoinHandle<()>>>,
    reconnected: Arc<tokio::sync::Notify>,
}

impl NatsFanout {
    /// Connects to any of the given servers; the client fails over between them by itself.
    pub async fn connect(servers: &[String]) -> Result<NatsFanout, crate::ServerError> {
        let addresses = servers
            .iter()
            .map(|s| s.parse::<async_nats::ServerAddr>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| crate::ServerError::Config(format!("bad NATS address: {e}")))?;
        let reconnected = Arc::new(tokio::sync::Notify::new());
        let signal = reconnected.clone();
        let client = async_nats::ConnectOptions::new()
            .name("parley-server")
            .event_callback(move |event| {
                let signal = signal.clone();
                async move {
                    if matches!(event, async_nats::Event::Connected) {
                        tracing::info!("NATS connection (re)established");
                        signal.notify_one();
                    }
                }
            })
            .retry_on_initial_connect()
            .connect(addresses)
            .await
            .map_err(|e| crate::ServerError::Config(format!("cannot connect to NATS: {e}")))?;
        let local = Arc::new(Notifier::default());
        let mut ended = client
            .subscribe(ENDED_SUBJECT)
            .await
            .map_err(|e| crate::ServerError::Config(format!("cannot subscribe on NATS: {e}")))?;
        let listener = local.clone();
        tokio::spawn(async move {
            while let Some(message) = ended.next().await {
                // Anything else on the subject is not ours: ignored.
                if let Some(user) = std::str::from_utf8(&message.payload)
                    .ok()
                    .and_then(|name| Username::parse(name).ok())
                {
                    listener.end_sessions(&user);
                }
            }
        });
        Ok(NatsFanout {
            client,
            local,
            subscriptions: Mutex::new(HashMap::new()),
            reconnected,
        })
    }
}

#[async_trait]
impl Fanout for NatsFanout {
    fn local(&self) -> &Notifier {
        &self.local
    }

    fn publish(&self, deliveries: Vec<(DeviceId, u64)>, entry: Option<Arc<LiveEntry>>) {
        // Devices on this node hear it at once; the others through NATS (hints only: the
        // message itself is in the database they share).
        self.local.notify(&deliveries, entry.as_ref());
        let client = self.client.clone();
        tokio::spawn(async move {
            for (device, head) in deliveries {
                if let Err(e) = client
                    .publish(subject(&device), head.to_be_bytes().to_vec().into())
                    .await
                {
                    tracing::warn!(error = %e, "hint not published; the device will catch up by its cursor");
                }
            }
        });
    }

    async fn subscribe(&self, device: DeviceId, head: u64) -> watch::Receiver<u64> {
        let receiver = self.local.subscribe(device, head);
        let needs_subscription = {
            let subscriptions = self.subscriptions.lock().unwrap_or_else(|p| p.into_inner());
            subscriptions
                .get(&device)
                .is_none_or(|task| task.is_finished())
        };
        if needs_subscription {
            match self.client.subscribe(subject(&device)).await {
                Ok(mut subscriber) => {
                    let local = self.local.clone();
                    let task = tokio::spawn(async move {
                        while let Some(message) = subscriber.next().await {
                            if let Ok(bytes) = <[u8; 8]>::try_from(message.payload.as_ref()) {
                                local.notify(&[(device, u64::from_be_bytes(bytes))], None);
                            }
                        }
                    });
                    let mut subscriptions =
                        self.subscriptions.lock().unwrap_or_else(|p| p.into_inner());
                    if let Some(previous) = subscriptions.insert(device, task) {
                        previous.abort();
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "NATS subscription failed; hints for this device are local only")
                }
            }
        }
        receiver
    }

    fn release(&self, device: DeviceId) {
        if self.local.watchers(device) == 0 {
            let mut subscriptions = self.subscriptions.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(task) = subscriptions.remove(&device) {
                // Dropping the subscriber unsubscribes.
                task.abort();
            }
        }
    }

    async fn hints_lost(&self) {
        self.reconnected.notified().await
    }

    fn end_sessions(&self, user: &Username) {
        // This node at once, the others (and, again, this one) through NATS.
        self.local.end_sessions(user);
        let client = self.client.clone();
        let payload = user.as_str().as_bytes().to_vec();
        tokio::spawn(async move {
            if let Err(e) = client.publish(ENDED_SUBJECT, payload.into()).await {
                tracing::warn!(error = %e, "suspension not announced; other nodes find out at their next session check");
            }
        });
    }
}
