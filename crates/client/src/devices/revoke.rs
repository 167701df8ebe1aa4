//! Revoking a device of the account (`parley devices revoke ID`) from another of its devices:
//! the account key signs the revocation, and a new account key replaces the one the revoked
//! device knew (`rotation`); the server then refuses the device everywhere (no login, no
//! session, no KeyPackage) and takes the new key; every chat it was in gets a commit removing it
//! (and re-certifying our leaf under the new key) and the signed revocation, so that every
//! member refuses it from then on.

use openmls::prelude::LeafNodeIndex;
use parley_mls::revocation::DeviceRevocation;
use parley_mls::rotation::AccountRotation;
use parley_mls::DeviceIdentity;
use parley_protocol::{v1, DeviceId};

use crate::client::Client;
use crate::db::{self, now_ms, ChatState};
use crate::error::ClientError;

/// Whether a revocation rotates the account key, and to which devices the new key goes.
enum Rotate {
    /// To every device but the revoked one.
    SealingToAllOthers,
    /// To every device but these (all leaving).
    SealingToNoneOf(Vec<DeviceId>),
    /// Not at all: a rotation went with an earlier revocation of the same batch.
    No,
}

impl Client {
    /// Revokes the device `id` names; returns in how many chats it was removed.
    pub async fn revoke_device(&self, id: &str) -> Result<usize, ClientError> {
        self.revoke_device_rotating(id, Rotate::SealingToAllOthers)
            .await
    }

    /// Revokes several devices at once (a restore: all the others are lost): the account key
    /// rotates once, with the first revocation, sealed to none of them.
    pub(crate) async fn revoke_devices(&self, ids: &[DeviceId]) -> Result<usize, ClientError> {
        let mut removed = 0;
        for (n, id) in ids.iter().enumerate() {
            let rotate = match n {
                0 => Rotate::SealingToNoneOf(ids.to_vec()),
                _ => Rotate::No,
            };
            removed += self.revoke_device_rotating(&id.to_hex(), rotate).await?;
        }
        Ok(removed)
    }

    async fn revoke_device_rotating(&self, id: &str, rotate: Rotate) -> Result<usize, ClientError> {
        self.finish_pending_rotation().await?;
        // A key another device rotated to and sealed for us is taken up first: the server
        // takes revocations under the current key only.
        self.replenish_key_packages().await?;
        // A revocation that stopped partway (the device is no longer listed) is finished by
        // naming the device again; the account key rotated the first time.
        let (hex_id, listed) = match self.find_device(id).await {
            Ok(device) if device.current => {
                return Err(ClientError::Invalid(
                    "that is this device: revoke it from another device of the account".into(),
                ))
            }
            Ok(device) => (device.id, true),
            Err(e) => (
                db::revoked_matching(&self.db(), self.username().as_str(), id)?.ok_or(e)?,
                false,
            ),
        };
        let target =
            DeviceId::parse_hex(&hex_id).map_err(|e| ClientError::Protocol(e.to_string()))?;
        let statement = self
            .account_key()
            .revoke(self.username(), target, now_ms() as u64);
        let rotation = match (listed, rotate) {
            (true, Rotate::SealingToAllOthers) => self.prepare_rotation(&[target]).await?,
            (true, Rotate::SealingToNoneOf(leaving)) => self.prepare_rotation(&leaving).await?,
            _ => None,
        };
        let names = match rotation {
            Some(_) => self.devices().await?,
            None => Vec::new(),
        };
        if let Some(rotation) = &rotation {
            let kept = db::PendingRotation {
                secret: rotation.new_key.to_secret_bytes().to_vec(),
                certificate: rotation.certificate.encode(),
                statement: rotation.statement.encode(),
                revoked: target.to_vec(),
            };
            db::set_pending_rotation(&self.db(), Some(&kept))?;
        }
        // The server first: from now on the device can do nothing, also not race the removals.
        let request = v1::RevokeDevice {
            revocation: statement.encode(),
            rotation: rotation
                .as_ref()
                .map(|r| r.statement.encode())
                .unwrap_or_default(),
            keys: rotation
                .as_ref()
                .map(|r| r.sealed.clone())
                .unwrap_or_default(),
        };
        let path = format!("/v1/devices/{hex_id}/revoke");
        match self
            .authed(|| self.api.post::<_, v1::DeviceList>(&path, &request, true))
            .await
        {
            Ok(_) => {}
            // Not known whether the server took it: settled at the next attempt.
            Err(e) if e.is_transient() => return Err(e),
            Err(e) => {
                db::set_pending_rotation(&self.db(), None)?;
                return Err(e);
            }
        }
        if let Some(rotation) = rotation {
            let statement = rotation.statement.encode();
            self.hold_new_key(rotation.new_key, rotation.certificate, &[statement])?;
            db::set_pending_rotation(&self.db(), None)?;
            // Device names are sealed under the account key: seal them again under the new one.
            for device in names
                .iter()
                .filter(|d| !d.name.is_empty() && d.id != hex_id)
            {
                if let Err(e) = self.rename_device(&device.id, &device.name).await {
                    tracing::warn!(error = %e, "a device name was not sealed again");
                }
            }
        }
        db::insert_revoked(
            &self.db(),
            self.username().as_str(),
            target.as_bytes(),
            now_ms(),
        )?;
        // Into the chats: the revocation and the rotation, never the sealed keys.
        let request = v1::RevokeDevice {
            keys: Vec::new(),
            ..request
        };
        // Caught up first; not a full sync, which would re-certify our leaves in commits of
        // their own: the removals below do it in the same commit.
        self.receive().await?;
        let chats: Vec<Vec<u8>> = db::all_chats(&self.db())?
            .into_iter()
            .filter(|c| c.state == ChatState::Active)
            .map(|c| c.group_id)
            .collect();
        let rotation_aad = self.rotation_aad()?;
        let mut removed = 0;
        for group_id in chats {
            // The signed revocation goes to every chat (every device of the account was in
            // each), also where an earlier, interrupted attempt already removed the device.
            if !self.has_member_device(&group_id, target)? {
                self.queue_application(
                    &group_id,
                    v1::app_payload::Body::Revoked(request.clone()),
                    false,
                )?;
                continue;
            }
            self.run_commit(&group_id, |group, provider| {
                let leaves: Vec<LeafNodeIndex> = group
                    .members()
                    .filter(|m| {
                        DeviceIdentity::from_credential(&m.credential)
                            .is_ok_and(|id| id.device_id == target)
                    })
                    .map(|m| m.index)
                    .collect();
                self.commit_removing(group, provider, leaves, &rotation_aad)
            })
            .await?;
            self.queue_application(
                &group_id,
                v1::app_payload::Body::Revoked(request.clone()),
                false,
            )?;
            removed += 1;
        }
        match self.flush_outbox().await {
            Err(e) if !e.is_transient() => return Err(e),
            _ => {}
        }
        // The rotation took all the account's KeyPackages: publish ours under the new key, so
        // that others can add us, and a later rotation can seal to us.
        self.replenish_key_packages().await?;
        Ok(removed)
    }

    /// Records a revocation a member sent: it must be signed by the account key we pinned for
    /// that member, for a device of that member's own account, or by the key that the
    /// revocation's own rotation (signed by both) moved from to the one we pinned.
    pub(crate) fn accept_revocation(
        &self,
        tx: &rusqlite::Connection,
        sender: &parley_protocol::Username,
        revoked: &v1::RevokeDevice,
    ) -> Result<(), String> {
        let statement = DeviceRevocation::decode(&revoked.revocation).map_err(|e| e.to_string())?;
        if statement.username != *sender {
            return Err("a revocation of another account's device".into());
        }
        let pinned = db::pinned_account_key(tx, sender.as_str())
            .map_err(|e| e.to_string())?
            .ok_or("a revocation from an account we have no key for")?;
        // Signed by the pinned key, or by one the pin has moved on from along the chain (this
        // revocation's own rotation, or those we followed): the queue may still hold it when
        // the pin has moved on.
        let rotation: Vec<AccountRotation> = AccountRotation::decode(&revoked.rotation)
            .ok()
            .filter(|r| r.verify().is_ok() && r.username == *sender)
            .into_iter()
            .collect();
        let signed_by_pin = statement.verify(&pinned).is_ok();
        let signed_earlier = || -> Result<bool, String> {
            let signer = match rotation.first() {
                Some(r) if statement.verify(&r.old_key).is_ok() => r.old_key,
                _ => return Ok(false),
            };
            Ok(signer != pinned
                && crate::trust::is_earlier_key(tx, sender, &rotation, &signer)
                    .map_err(|e| e.to_string())?)
        };
        if !signed_by_pin && !signed_earlier()? {
            return Err("the revocation is not signed by the account's key".into());
        }
        db::insert_revoked(
            tx,
            sender.as_str(),
            statement.device.as_bytes(),
            statement.revoked_at_ms as i64,
        )
        .map_err(|e| e.to_string())
    }
}
