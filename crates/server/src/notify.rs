//! Live delivery inside one server process: "device X's queue head is now N", and, when the
//! message was accepted by this process, the message itself.
//!
//! A hint may be lost or coalesced (a `watch` channel keeps only the newest value), which costs
//! latency, never data: the queue in the store is the truth and clients read it by cursor. The
//! recent messages kept per device only spare the live connection a read of what this process
//! just wrote; whenever they do not cover a connection's gap exactly, it reads the store.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use parley_protocol::v1;
use parley_protocol::{DeviceId, Username};
use parley_store::QueueEntry;
use tokio::sync::{broadcast, watch};

/// Recent messages kept per connected device. Live connections take them within moments; a
/// connection that falls further behind reads the store instead.
const RECENT_PER_DEVICE: usize = 128;
/// Larger payloads (big commits, Welcomes) are never kept: they are rare and the store has them.
pub const MAX_RECENT_PAYLOAD: usize = 64 * 1024;

/// A message this node just accepted, as every recipient gets it but for its own sequence. The
/// frank does not depend on the recipient: the first push computes it for all of them.
pub struct LiveEntry {
    pub entry: QueueEntry,
    pub franking: std::sync::OnceLock<Option<v1::FrankingContext>>,
}

/// Typing indicators held for one device's connections; a connection that falls behind
/// loses the oldest (they are stale by then anyway).
const TYPING_BACKLOG: usize = 8;

struct DeviceLive {
    head: watch::Sender<u64>,
    /// Typing indicators from the device's groups: forwarded, never stored.
    typing: broadcast::Sender<Arc<v1::Typing>>,
    /// (queue sequence, message), ascending by sequence.
    recent: VecDeque<(u64, Arc<LiveEntry>)>,
}

pub struct Notifier {
    devices: Mutex<HashMap<DeviceId, DeviceLive>>,
    /// Accounts whose sessions a moderator just ended (suspension): their live connections
    /// check their sessions again at once.
    ended: broadcast::Sender<Username>,
}

/// Suspensions announced at once before a live connection must have looked at them; past it a
/// connection that fell behind checks its session anyway.
const ENDED_BACKLOG: usize = 64;

impl Default for Notifier {
    fn default() -> Self {
        Notifier {
            devices: Mutex::default(),
            ended: broadcast::channel(ENDED_BACKLOG).0,
        }
    }
}

impl Notifier {
    /// The account's sessions ended (it was suspended): its live connections on this node
    /// close once they have checked.
    pub fn end_sessions(&self, user: &Username) {
        // Nobody listening means no live connection on this node.
        let _ = self.ended.send(user.clone());
    }

    /// Accounts whose sessions ended, as [`Notifier::end_sessions`] announces them.
    pub fn sessions_ended(&self) -> broadcast::Receiver<Username> {
        self.ended.subscribe()
    }

    fn devices(&self) -> std::sync::MutexGuard<'_, HashMap<DeviceId, DeviceLive>> {
        self.devices.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Subscribes to a device's queue head, starting from `head`.
    pub fn subscribe(&self, device: DeviceId, head: u64) -> watch::Receiver<u64> {
        let mut devices = self.devices();
        let live = devices
            .entry(device)
            .or_insert_with(|| DeviceLive::new(head));
        advance(&live.head, head);
        live.head.subscribe()
    }

    /// Typing indicators for a device, from now on. Call after [`Notifier::subscribe`].
    pub fn subscribe_typing(&self, device: DeviceId) -> broadcast::Receiver<Arc<v1::Typing>> {
        let mut devices = self.devices();
        let live = devices.entry(device).or_insert_with(|| DeviceLive::new(0));
        live.typing.subscribe()
    }

    /// Hands a typing indicator to those of `devices` with a live connection here; the others
    /// never get it.
    pub fn typing(&self, devices: &[DeviceId], event: &Arc<v1::Typing>) {
        let devices_live = self.devices();
        for device in devices {
            if let Some(live) = devices_live.get(device) {
                // Nobody listening: nothing to do.
                let _ = live.typing.send(event.clone());
            }
        }
    }

    /// New queue heads; with `entry`, the message that each of these sequences holds.
    pub fn notify(&self, deliveries: &[(DeviceId, u64)], entry: Option<&Arc<LiveEntry>>) {
        if deliveries.is_empty() {
            return;
        }
        let entry = entry.filter(|e| e.entry.payload.len() <= MAX_RECENT_PAYLOAD);
        let mut devices = self.devices();
        for (device, head) in deliveries {
            if let Some(live) = devices.get_mut(device) {
                if live.head.receiver_count() == 0 {
                    devices.remove(device);
                    continue;
                }
                if let Some(entry) = entry {
                    // Concurrent acceptances may announce their sequences out of order.
                    let at = live.recent.partition_point(|(seq, _)| seq < head);
                    if live.recent.get(at).is_none_or(|(seq, _)| seq != head) {
                        live.recent.insert(at, (*head, entry.clone()));
                    }
                    if live.recent.len() > RECENT_PER_DEVICE {
                        live.recent.pop_front();
                    }
                }
                advance(&live.head, *head);
            }
        }
    }

    /// The messages at sequences `after + 1 ..= up_to` if every one of them is held here, so
    /// that a connection can push them without reading the store.
    pub fn recent(
        &self,
        device: DeviceId,
        after: u64,
        up_to: u64,
        limit: usize,
    ) -> Option<Vec<(u64, Arc<LiveEntry>)>> {
        let devices = self.devices();
        let recent = &devices.get(&device)?.recent;
        let start = recent.partition_point(|(seq, _)| *seq <= after);
        let wanted = ((up_to - after) as usize).min(limit);
        let found: Vec<_> = recent.range(start..).take(wanted).cloned().collect();
        let contiguous = found.len() == wanted
            && found
                .iter()
                .enumerate()
                .all(|(i, (seq, _))| *seq == after + 1 + i as u64);
        (wanted > 0 && contiguous).then_some(found)
    }

    /// A connection pushed everything up to `up_to`: those messages need not be kept.
    pub fn pushed(&self, device: DeviceId, up_to: u64) {
        if let Some(live) = self.devices().get_mut(&device) {
            while live.recent.front().is_some_and(|(seq, _)| *seq <= up_to) {
                live.recent.pop_front();
            }
        }
    }

    /// Devices with live watchers in this process.
    pub fn devices_live(&self) -> Vec<DeviceId> {
        self.devices()
            .iter()
            .filter(|(_, l)| l.head.receiver_count() > 0)
            .map(|(d, _)| *d)
            .collect()
    }

    /// Live watchers of one device in this process.
    pub fn watchers(&self, device: DeviceId) -> usize {
        self.devices()
            .get(&device)
            .map_or(0, |l| l.head.receiver_count())
    }

    pub fn connected_devices(&self) -> usize {
        self.devices()
            .values()
            .filter(|l| l.head.receiver_count() > 0)
            .count()
    }
}

impl DeviceLive {
    fn new(head: u64) -> DeviceLive {
        DeviceLive {
            head: watch::channel(head).0,
            typing: broadcast::channel(TYPING_BACKLOG).0,
            recent: VecDeque::new(),
        }
    }
}

/// Moves a head forward, never back.
fn advance(sender: &watch::Sender<u64>, head: u64) {
    sender.send_if_modified(|current| {
        let newer = head > *current;
        if newer {
            *current = head;
        }
        newer
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_subscriber_sees_the_newest_head_only_moving_forward() {
        let notifier = Notifier::default();
        let device = DeviceId::from_bytes([1; 16]);
        let mut rx = notifier.subscribe(device, 3);
        notifier.notify(&[(device, 5)], None);
        rx.changed().await.unwrap();
        assert_eq!(*rx.borrow_and_update(), 5);
        notifier.notify(&[(device, 4)], None);
        assert!(!rx.has_changed().unwrap());
    }

    fn entry(payload_len: usize) -> Arc<LiveEntry> {
        let entry = QueueEntry {
            seq: 0,
            kind: parley_store::ItemKind::GroupMessage,
            group_id: parley_protocol::GroupId::from_bytes([2; 16]),
            group_seq: 1,
            sender_device: DeviceId::from_bytes([3; 16]),
            sender_username: parley_protocol::Username::parse("alice").unwrap(),
            message_id: parley_protocol::MessageId::from_bytes([4; 16]),
            accepted_at: 0,
            payload: vec![0; payload_len],
            franking_tag: None,
        };
        Arc::new(LiveEntry {
            entry,
            franking: Default::default(),
        })
    }

    #[tokio::test]
    async fn recent_messages_serve_a_gap_only_when_they_cover_all_of_it() {
        let notifier = Notifier::default();
        let device = DeviceId::from_bytes([1; 16]);
        let _rx = notifier.subscribe(device, 0);
        // Announced out of order, as concurrent acceptances may be.
        notifier.notify(&[(device, 2)], Some(&entry(10)));
        assert!(notifier.recent(device, 0, 2, 10).is_none(), "1 is missing");
        notifier.notify(&[(device, 1)], Some(&entry(10)));
        let both = notifier.recent(device, 0, 2, 10).expect("1 and 2 held");
        assert_eq!(both.iter().map(|(s, _)| *s).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(notifier.recent(device, 0, 2, 1).unwrap().len(), 1, "limit");
        // A head announced without its message (another node's hint) leaves a gap.
        notifier.notify(&[(device, 3)], None);
        assert!(notifier.recent(device, 2, 3, 10).is_none());
        // Pushed messages are dropped; large ones are never kept.
        notifier.pushed(device, 2);
        assert!(notifier.recent(device, 0, 2, 10).is_none());
        notifier.notify(&[(device, 4)], Some(&entry(MAX_RECENT_PAYLOAD + 1)));
        assert!(notifier.recent(device, 3, 4, 10).is_none());
    }

    fn typing_event(n: u8) -> Arc<v1::Typing> {
        Arc::new(v1::Typing {
            group_id: vec![n; 16],
            ..Default::default()
        })
    }

    #[tokio::test]
    async fn typing_reaches_connected_devices_only_and_a_slow_one_loses_the_oldest() {
        let notifier = Notifier::default();
        let (online, offline) = (DeviceId::from_bytes([1; 16]), DeviceId::from_bytes([2; 16]));
        let _heads = notifier.subscribe(online, 0);
        let mut typing = notifier.subscribe_typing(online);
        notifier.typing(&[online, offline], &typing_event(1));
        assert_eq!(typing.recv().await.unwrap().group_id, vec![1; 16]);
        assert!(
            notifier.devices().get(&offline).is_none(),
            "nothing kept for it"
        );
        for n in 0..(TYPING_BACKLOG as u8 + 4) {
            notifier.typing(&[online], &typing_event(n));
        }
        assert!(matches!(
            typing.recv().await,
            Err(broadcast::error::RecvError::Lagged(4))
        ));
        assert_eq!(typing.recv().await.unwrap().group_id, vec![4; 16]);
    }

    #[tokio::test]
    async fn nothing_is_kept_for_devices_without_a_live_connection() {
        let notifier = Notifier::default();
        let device = DeviceId::from_bytes([1; 16]);
        notifier.notify(&[(device, 1)], Some(&entry(10)));
        assert!(notifier.recent(device, 0, 1, 10).is_none());
        let rx = notifier.subscribe(device, 0);
        drop(rx);
        notifier.notify(&[(device, 1)], Some(&entry(10)));
        assert_eq!(notifier.connected_devices(), 0);
    }
}
