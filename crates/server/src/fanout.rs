//! Live delivery hints across server nodes.
//!
//! A hint says "device X's queue head is now N". It carries no message and is never the truth:
//! the database holds the queues and clients read them by cursor, so a lost hint costs latency,
//! never data. [`InProcessFanout`] serves a single node; [`NatsFanout`] carries hints between
//! nodes over a NATS cluster, on one subject per device that only the node holding that device's
//! live connection subscribes to. [`AnnouncingFanout`] serves `parley admin`, which holds no
//! live connections: it tells the nodes, over NATS or through their local sockets.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt;
use parley_protocol::{v1, DeviceId, Username};
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
    /// Forwards a typing indicator to those of `devices` that have a live connection on any
    /// node, at most once and never stored: one that nobody hears now is gone.
    fn typing(&self, devices: Vec<DeviceId>, event: Arc<v1::Typing>) {
        self.local().typing(&devices, &event);
    }
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
    /// process that could not tell this node) find out at their next periodic check.
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

/// The first byte of a typing indicator on a device's subject.
const TYPING_TAG: u8 = 0x54;
/// Largest typing indicator taken from NATS (its sealed part and sender, with room).
const MAX_TYPING_FRAME: usize = 1024;

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

    fn typing(&self, devices: Vec<DeviceId>, event: Arc<v1::Typing>) {
        // Connections on this node hear it here; those on others through NATS, on the same
        // subject as hints (a hint is 8 bytes; an indicator is longer and starts with a tag).
        let (local, remote): (Vec<_>, Vec<_>) = devices
            .into_iter()
            .partition(|d| self.local.watchers(*d) > 0);
        self.local.typing(&local, &event);
        if remote.is_empty() {
            return;
        }
        let mut payload = vec![TYPING_TAG];
        payload.extend(parley_protocol::encode(&*event));
        let client = self.client.clone();
        tokio::spawn(async move {
            for device in remote {
                // Lost on the way: the indicator is gone, nothing else.
                let _ = client
                    .publish(subject(&device), payload.clone().into())
                    .await;
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
                            let payload = message.payload.as_ref();
                            if let Ok(bytes) = <[u8; 8]>::try_from(payload) {
                                local.notify(&[(device, u64::from_be_bytes(bytes))], None);
                            } else if let Some(typing) =
                                payload.strip_prefix(&[TYPING_TAG]).and_then(|b| {
                                    parley_protocol::decode::<v1::Typing>(b, MAX_TYPING_FRAME).ok()
                                })
                            {
                                local.typing(&[device], &Arc::new(typing));
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

/// Something a process without live connections tells the nodes that have them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Announcement {
    /// A device's queue head (as [`Fanout::publish`] announces it).
    Head(DeviceId, u64),
    /// An account's sessions ended (as [`Fanout::end_sessions`] announces it).
    Ended(Username),
}

/// Who heard what [`AnnouncingFanout::finish`] announced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Announced {
    /// There was nothing to announce.
    Nothing,
    /// Published over NATS: every node of the deployment heard it.
    Nats,
    /// Without NATS: this many nodes running on the data directory on this machine confirmed
    /// it (none: no node is running here).
    LocalNodes(usize),
    /// Not announced, for this reason; the nodes find out at their periodic session check.
    Failed(String),
}

/// Hints and ended sessions from a process that holds no live connections (`parley admin`),
/// for the nodes that do: over NATS when the deployment uses it, the same messages a node
/// publishes ([`NatsFanout`]), else through the sockets of the nodes running on the data
/// directory on this machine ([`crate::local`]). Kept until [`AnnouncingFanout::finish`]
/// sends them all at once.
pub struct AnnouncingFanout {
    local: Notifier,
    nats: Option<Vec<String>>,
    data_dir: PathBuf,
    queued: Mutex<Vec<Announcement>>,
}

/// How long `parley admin` waits for NATS (connecting, then flushing).
const ANNOUNCE_TIMEOUT: Duration = Duration::from_secs(5);

impl AnnouncingFanout {
    /// Announcements over the given NATS servers, or without them to the local nodes on
    /// `data_dir`. Connects only in [`AnnouncingFanout::finish`], if there is anything to say.
    pub fn new(data_dir: PathBuf, nats: Option<Vec<String>>) -> AnnouncingFanout {
        AnnouncingFanout {
            local: Notifier::default(),
            nats,
            data_dir,
            queued: Mutex::new(Vec::new()),
        }
    }

    fn queue(&self, announcements: impl IntoIterator<Item = Announcement>) {
        self.queued
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(announcements);
    }

    /// Sends everything announced so far and says who heard it.
    pub async fn finish(&self) -> Announced {
        let queued = std::mem::take(&mut *self.queued.lock().unwrap_or_else(|p| p.into_inner()));
        if queued.is_empty() {
            return Announced::Nothing;
        }
        match &self.nats {
            Some(servers) => {
                match tokio::time::timeout(ANNOUNCE_TIMEOUT, publish_all(servers, &queued)).await {
                    Ok(Ok(())) => Announced::Nats,
                    Ok(Err(e)) => Announced::Failed(e),
                    Err(_) => Announced::Failed(format!(
                        "NATS did not answer within {ANNOUNCE_TIMEOUT:?}"
                    )),
                }
            }
            None => Announced::LocalNodes(crate::local::announce(&self.data_dir, &queued).await),
        }
    }
}

async fn publish_all(servers: &[String], announcements: &[Announcement]) -> Result<(), String> {
    let addresses = servers
        .iter()
        .map(|s| s.parse::<async_nats::ServerAddr>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("bad NATS address: {e}"))?;
    let client = async_nats::ConnectOptions::new()
        .name("parley-admin")
        .connection_timeout(ANNOUNCE_TIMEOUT)
        .connect(addresses)
        .await
        .map_err(|e| format!("cannot connect to NATS: {e}"))?;
    for announcement in announcements {
        let (subject, payload) = match announcement {
            Announcement::Head(device, head) => (subject(device), head.to_be_bytes().to_vec()),
            Announcement::Ended(user) => {
                (ENDED_SUBJECT.to_owned(), user.as_str().as_bytes().to_vec())
            }
        };
        client
            .publish(subject, payload.into())
            .await
            .map_err(|e| format!("cannot publish on NATS: {e}"))?;
    }
    client
        .flush()
        .await
        .map_err(|e| format!("cannot flush to NATS: {e}"))
}

#[async_trait]
impl Fanout for AnnouncingFanout {
    fn local(&self) -> &Notifier {
        // Nobody is connected to this process.
        &self.local
    }

    fn publish(&self, deliveries: Vec<(DeviceId, u64)>, _entry: Option<Arc<LiveEntry>>) {
        self.queue(
            deliveries
                .into_iter()
                .map(|(device, head)| Announcement::Head(device, head)),
        );
    }

    async fn subscribe(&self, device: DeviceId, head: u64) -> watch::Receiver<u64> {
        self.local.subscribe(device, head)
    }

    fn release(&self, _device: DeviceId) {}

    async fn hints_lost(&self) {
        std::future::pending::<()>().await
    }

    fn end_sessions(&self, user: &Username) {
        self.queue([Announcement::Ended(user.clone())]);
    }
}
