//! Live delivery hints inside one server process: "device X's queue head is now N".
//!
//! A hint may be lost or coalesced (a `watch` channel keeps only the newest value), which costs
//! latency, never data: the queue in the store is the truth and clients read it by cursor.

use std::collections::HashMap;
use std::sync::Mutex;

use parley_protocol::DeviceId;
use tokio::sync::watch;

#[derive(Default)]
pub struct Notifier {
    devices: Mutex<HashMap<DeviceId, watch::Sender<u64>>>,
}

impl Notifier {
    /// Subscribes to a device's queue head, starting from `head`.
    pub fn subscribe(&self, device: DeviceId, head: u64) -> watch::Receiver<u64> {
        let mut devices = self.devices.lock().unwrap_or_else(|p| p.into_inner());
        let sender = devices
            .entry(device)
            .or_insert_with(|| watch::channel(head).0);
        sender.send_if_modified(|current| {
            let newer = head > *current;
            if newer {
                *current = head;
            }
            newer
        });
        sender.subscribe()
    }

    pub fn notify(&self, deliveries: &[(DeviceId, u64)]) {
        if deliveries.is_empty() {
            return;
        }
        let mut devices = self.devices.lock().unwrap_or_else(|p| p.into_inner());
        for (device, head) in deliveries {
            if let Some(sender) = devices.get(device) {
                if sender.receiver_count() == 0 {
                    devices.remove(device);
                    continue;
                }
                sender.send_if_modified(|current| {
                    let newer = *head > *current;
                    if newer {
                        *current = *head;
                    }
                    newer
                });
            }
        }
    }

    /// Devices with live watchers in this process.
    pub fn devices(&self) -> Vec<DeviceId> {
        let devices = self.devices.lock().unwrap_or_else(|p| p.into_inner());
        devices
            .iter()
            .filter(|(_, s)| s.receiver_count() > 0)
            .map(|(d, _)| *d)
            .collect()
    }

    /// Live watchers of one device in this process.
    pub fn watchers(&self, device: DeviceId) -> usize {
        let devices = self.devices.lock().unwrap_or_else(|p| p.into_inner());
        devices.get(&device).map_or(0, |s| s.receiver_count())
    }

    pub fn connected_devices(&self) -> usize {
        let devices = self.devices.lock().unwrap_or_else(|p| p.into_inner());
        devices.values().filter(|s| s.receiver_count() > 0).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_subscriber_sees_the_newest_head_only_moving_forward() {
        let notifier = Notifier::default();
        let device = DeviceId::from_bytes([1; 16]);
        let mut rx = notifier.subscribe(device, 3);
        notifier.notify(&[(device, 5)]);
        rx.changed().await.unwrap();
        assert_eq!(*rx.borrow_and_update(), 5);
        notifier.notify(&[(device, 4)]);
        assert!(!rx.has_changed().unwrap());
    }
}
