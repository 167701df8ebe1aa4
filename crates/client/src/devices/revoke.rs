//! Revoking a device of the account (`parley devices revoke ID`) from another of its devices:
//! the account key signs the revocation; the server then refuses the device everywhere (no
//! login, no session, no KeyPackage); every chat it was in gets a commit removing it and the
//! signed revocation, so that every member refuses it from then on.

use openmls::prelude::LeafNodeIndex;
use parley_mls::revocation::DeviceRevocation;
use parley_mls::DeviceIdentity;
use parley_protocol::{v1, DeviceId};

use crate::client::Client;
use crate::db::{self, now_ms, ChatState};
use crate::error::{mls_error, ClientError};

impl Client {
    /// Revokes the device `id` names; returns in how many chats it was removed.
    pub async fn revoke_device(&self, id: &str) -> Result<usize, ClientError> {
        // A revocation that stopped partway (the device is no longer listed) is finished by
        // naming the device again.
        let hex_id = match self.find_device(id).await {
            Ok(device) if device.current => {
                return Err(ClientError::Invalid(
                    "that is this device: revoke it from another device of the account".into(),
                ))
            }
            Ok(device) => device.id,
            Err(e) => db::revoked_matching(&self.db(), self.username().as_str(), id)?.ok_or(e)?,
        };
        let target =
            DeviceId::parse_hex(&hex_id).map_err(|e| ClientError::Protocol(e.to_string()))?;
        let statement = self
            .account_key
            .revoke(self.username(), target, now_ms() as u64);
        // The server first: from now on the device can do nothing, also not race the removals.
        let request = v1::RevokeDevice {
            revocation: statement.encode(),
        };
        let path = format!("/v1/devices/{hex_id}/revoke");
        let _: v1::DeviceList = self.authed(|| self.api.post(&path, &request, true)).await?;
        db::insert_revoked(
            &self.db(),
            self.username().as_str(),
            target.as_bytes(),
            now_ms(),
        )?;
        self.sync().await?;
        let chats: Vec<Vec<u8>> = db::all_chats(&self.db())?
            .into_iter()
            .filter(|c| c.state == ChatState::Active)
            .map(|c| c.group_id)
            .collect();
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
                let (commit, welcome, _) = group
                    .remove_members(provider, &self.signer, &leaves)
                    .map_err(mls_error)?;
                Ok((commit, welcome))
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
        Ok(removed)
    }

    /// Records a revocation a member sent: it must be signed by the account key we pinned for
    /// that member, for a device of that member's own account.
    pub(crate) fn accept_revocation(
        &self,
        tx: &rusqlite::Connection,
        sender: &parley_protocol::Username,
        revocation: &[u8],
    ) -> Result<(), String> {
        let statement = DeviceRevocation::decode(revocation).map_err(|e| e.to_string())?;
        if statement.username != *sender {
            return Err("a revocation of another account's device".into());
        }
        let pinned = db::pinned_key(tx, sender.as_str())
            .map_err(|e| e.to_string())?
            .and_then(|k| <[u8; 32]>::try_from(k.as_slice()).ok())
            .ok_or("a revocation from an account we have no key for")?;
        statement
            .verify(&parley_mls::certificate::AccountPublicKey::from_bytes(
                pinned,
            ))
            .map_err(|e| e.to_string())?;
        db::insert_revoked(
            tx,
            sender.as_str(),
            statement.device.as_bytes(),
            statement.revoked_at_ms as i64,
        )
        .map_err(|e| e.to_string())
    }
}
