//! Whom this device trusts: every leaf it accepts must be certified by its account's key
//! (`parley_mls::CertifiedDevice`), and that key must be the one pinned for the account on first
//! sight. A KeyPackage under another key is refused (we would be adding a device the account
//! never certified); a group member under another key is shown as an identity change.

use openmls::prelude::{KeyPackage, Member};
use parley_mls::CertifiedDevice;
use parley_protocol::Username;

use crate::client::Client;
use crate::db::{self, now_ms, Pin};
use crate::error::ClientError;

/// Verifies every member's certificate (a group we join: we trust none of it yet).
pub(crate) fn certify_members(
    members: impl Iterator<Item = Member>,
) -> Result<Vec<CertifiedDevice>, ClientError> {
    members
        .map(|m| {
            CertifiedDevice::verify(&m.credential, &m.signature_key)
                .map_err(|e| ClientError::Protocol(format!("a member is not certified: {e}")))
        })
        .collect()
}

impl Client {
    /// Checks a claimed KeyPackage's certificate and its account key against our pin (pinning
    /// it on first sight).
    pub(crate) fn trust_key_package(
        &self,
        package: &KeyPackage,
    ) -> Result<CertifiedDevice, ClientError> {
        let certified = CertifiedDevice::verify_leaf(package.leaf_node())
            .map_err(|e| ClientError::Protocol(format!("claimed key package: {e}")))?;
        let username = &certified.identity.username;
        if db::is_revoked(
            &self.db(),
            username.as_str(),
            certified.identity.device_id.as_bytes(),
        )? {
            return Err(ClientError::Protocol(format!(
                "the server offered a device {username} revoked; it was left out"
            )));
        }
        match db::pin(
            &self.db(),
            username.as_str(),
            &certified.account_key.to_bytes(),
            now_ms(),
        )? {
            Pin::New | Pin::Same => Ok(certified),
            Pin::Changed => Err(ClientError::IdentityChanged(username.to_string())),
        }
    }

    /// Pins the account keys of devices we now share a group with; returns the accounts whose
    /// key differs from the pinned one.
    pub(crate) fn pin_accounts(
        &self,
        tx: &rusqlite::Connection,
        devices: &[CertifiedDevice],
    ) -> Result<Vec<Username>, ClientError> {
        let mut changed: Vec<Username> = Vec::new();
        for device in devices {
            let username = &device.identity.username;
            let pin = db::pin(
                tx,
                username.as_str(),
                &device.account_key.to_bytes(),
                now_ms(),
            )?;
            if pin == Pin::Changed && !changed.contains(username) {
                changed.push(username.clone());
            }
        }
        Ok(changed)
    }
}
