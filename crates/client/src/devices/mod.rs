//! Several devices per account (docs/multi-device.md): the device list, linking a new device
//! (`link`, on the new device; `approve`, on one the account has), and the history archive
//! that travels between them.

mod approve;
pub(crate) mod archive;
pub(crate) mod code;
pub(crate) mod crypto;
mod link;
mod revoke;
mod rotation;

use parley_protocol::v1;
use serde::Serialize;

pub use approve::ApproveEvent;
pub use code::LinkCode;
pub use link::LinkEvent;

use crate::client::Client;
use crate::error::ClientError;
use crate::views::rfc3339;

/// One of the account's devices, as `parley devices` lists it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct DeviceView {
    /// The device id (hex).
    pub id: String,
    /// The name the account's devices gave it ("" if none).
    pub name: String,
    pub added_at: String,
    pub last_seen: String,
    /// This device.
    pub current: bool,
}

impl Client {
    /// The account's devices, oldest first.
    pub async fn devices(&self) -> Result<Vec<DeviceView>, ClientError> {
        let list: v1::DeviceList = self.authed(|| self.api.get("/v1/devices")).await?;
        let secret = self.account_key().to_secret_bytes();
        Ok(list
            .devices
            .into_iter()
            .map(|d| DeviceView {
                id: hex::encode(&d.device_id),
                name: crypto::open_name(&secret, &d.sealed_name).unwrap_or_default(),
                added_at: rfc3339(d.added_at_ms),
                last_seen: rfc3339(d.last_seen_ms),
                current: d.device_id == self.device_id().to_vec(),
            })
            .collect())
    }

    /// The device of this account that `id` names: its full hex id, or a prefix of it (at least
    /// four digits) that only one device has.
    pub async fn find_device(&self, id: &str) -> Result<DeviceView, ClientError> {
        let id = id.trim().to_ascii_lowercase();
        if id.len() < 4 {
            return Err(ClientError::Invalid(
                "name a device by its id (at least its first four digits): see `parley devices`"
                    .into(),
            ));
        }
        let mut matching: Vec<DeviceView> = self
            .devices()
            .await?
            .into_iter()
            .filter(|d| d.id.starts_with(&id))
            .collect();
        match matching.len() {
            1 => Ok(matching.remove(0)),
            0 => Err(ClientError::Invalid(format!(
                "no device of this account has an id starting with {id}: see `parley devices`"
            ))),
            _ => Err(ClientError::Invalid(format!(
                "several devices have ids starting with {id}: give more digits"
            ))),
        }
    }

    /// Names a device of the account; the name is sealed, the server stores it unread.
    pub async fn rename_device(&self, id: &str, name: &str) -> Result<DeviceView, ClientError> {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 64 || name.chars().any(char::is_control) {
            return Err(ClientError::Invalid(
                "a device name is 1 to 64 printable characters".into(),
            ));
        }
        let device = self.find_device(id).await?;
        let sealed = crypto::seal_name(&self.account_key().to_secret_bytes(), name)?;
        let request = v1::RenameDevice {
            sealed_name: sealed,
        };
        let path = format!("/v1/devices/{}/name", device.id);
        let _: v1::DeviceList = self.authed(|| self.api.post(&path, &request, true)).await?;
        Ok(DeviceView {
            name: name.to_owned(),
            ..device
        })
    }
}
