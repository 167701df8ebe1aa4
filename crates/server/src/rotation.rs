//! Account-key rotation at revocation, as the server sees it (docs/multi-device.md): it checks
//! that a rotation is signed by the account's current key and the new one, swaps the key in the
//! revocation's transaction, keeps the chain for contacts to follow, and holds each remaining
//! device's sealed new key, which it cannot open, until that device takes it up.

use parley_mls::certificate::AccountPublicKey;
use parley_mls::rotation::AccountRotation;
use parley_protocol::{v1, DeviceId, ErrorCode, Username};
use parley_store::NewRotation;
use prost::Message;

use crate::accounts::Authenticated;
use crate::links::{bytes16, Links};
use crate::ApiError;

/// Largest sealed new key for one device: the KeyPackage sealed to, a post-quantum KEM output,
/// the sealed key and certificate, and the sealer's signature.
pub(crate) const MAX_SEALED_ROTATION_KEYS_BYTES: usize =
    parley_protocol::limits::MAX_KEY_PACKAGE_BYTES + 4096;

/// The newest rotations a client follows (`parley_mls::rotation::MAX_CHAIN`).
fn tail(mut rotations: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    let excess = rotations
        .len()
        .saturating_sub(parley_mls::rotation::MAX_CHAIN);
    rotations.drain(..excess);
    rotations
}

impl Links {
    /// The rotation that goes with a revocation: signed by the account's current key and the
    /// new one, for this account, with at most one sealed key per device the account may have.
    pub(crate) fn check_rotation(
        &self,
        device: &Authenticated,
        account_key: &AccountPublicKey,
        request: &v1::RevokeDevice,
    ) -> Result<Option<NewRotation>, ApiError> {
        if request.rotation.is_empty() {
            if !request.keys.is_empty() {
                return Err(ApiError::malformed("sealed keys without a rotation"));
            }
            return Ok(None);
        }
        let rotation = AccountRotation::decode(&request.rotation)
            .map_err(|e| ApiError::malformed(e.to_string()))?;
        rotation
            .verify()
            .map_err(|e| ApiError::forbidden(e.to_string()))?;
        if rotation.username != device.0.username || rotation.old_key != *account_key {
            return Err(ApiError::forbidden(
                "the rotation is not from this account's current key",
            ));
        }
        if request.keys.len() > self.max_devices as usize {
            return Err(ApiError::new(
                ErrorCode::TooLarge,
                "more sealed keys than an account has devices",
            ));
        }
        let keys = request
            .keys
            .iter()
            .map(|sealed| {
                if sealed.encoded_len() > MAX_SEALED_ROTATION_KEYS_BYTES {
                    return Err(ApiError::new(ErrorCode::TooLarge, "sealed keys too large"));
                }
                let to = DeviceId::from_bytes(bytes16(&sealed.device_id, "a device id")?);
                Ok((to, sealed.encode_to_vec()))
            })
            .collect::<Result<Vec<_>, ApiError>>()?;
        Ok(Some(NewRotation {
            old_key: rotation.old_key.to_bytes().to_vec(),
            new_key: rotation.new_key.to_bytes().to_vec(),
            statement: request.rotation.clone(),
            keys,
        }))
    }

    /// An account's rotations, for a client that claimed a KeyPackage under another key than
    /// the one it pinned.
    pub async fn rotations(&self, username: &str) -> Result<v1::AccountRotations, ApiError> {
        let username = Username::parse(username).map_err(|e| ApiError::malformed(e.to_string()))?;
        let user = self
            .store
            .user_devices(&username)
            .await?
            .first()
            .map(|d| d.user_id);
        let rotations = match user {
            Some(user) => tail(self.store.account_rotations(user).await?),
            None => Vec::new(),
        };
        Ok(v1::AccountRotations { rotations })
    }

    /// What waits for this device after its account's key rotated.
    pub async fn waiting_rotation(
        &self,
        device: &Authenticated,
    ) -> Result<v1::WaitingRotation, ApiError> {
        let Some(sealed) = self.store.rotation_keys(device.0.device_id).await? else {
            return Err(ApiError::new(
                ErrorCode::NotFound,
                "no new account key waits for this device",
            ));
        };
        let keys = v1::SealedRotationKeys::decode(sealed.as_slice())
            .map_err(|_| ApiError::new(ErrorCode::Internal, "stored sealed keys are malformed"))?;
        Ok(v1::WaitingRotation {
            rotations: tail(self.store.account_rotations(device.0.user_id).await?),
            keys: Some(keys),
        })
    }

    pub async fn finish_rotation(
        &self,
        device: &Authenticated,
    ) -> Result<v1::WaitingRotation, ApiError> {
        self.store.finish_rotation(device.0.device_id).await?;
        Ok(v1::WaitingRotation::default())
    }
}
