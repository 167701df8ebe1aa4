//! Recovery from the loss of every device, as the server sees it: encrypted backups it stores
//! but cannot open, the registration of a restored device (certified by the account key, with
//! no device left to approve it), and the GroupInfos that device rejoins its chats from by
//! external commit (see docs/multi-device.md).
//!
//! A backup is found by (username, backup id): the id is derived from the recovery key, so
//! only its holder can name it, and a wrong key finds nothing, which tells a guesser nothing.

use std::sync::Arc;

use openmls::ciphersuite::signable::Verifiable as _;
use openmls::prelude::tls_codec::{Deserialize, Serialize};
use openmls::prelude::{
    GroupId as MlsGroupId, MlsMessageBodyIn, MlsMessageIn, OpenMlsSignaturePublicKey,
};
use parley_protocol::{v1, ErrorCode, GroupId, Username};
use parley_store::{BackupRecord, NewBackup, RestoredDevice, Store};

use crate::accounts::{
    chosen_device_id, verify_certificate, verify_registration_proof, Authenticated,
};
use crate::public_state::PublicGroupState;
use crate::{now_ms, ApiError};

/// Backups kept per account: the newest and two before it.
pub const BACKUPS_KEPT: u32 = 3;
/// A backup id is 32 bytes (HKDF output).
const BACKUP_ID_BYTES: usize = 32;
/// Largest GroupInfo a member may upload (a GroupInfo without its tree is small; the
/// post-quantum external key and extensions stay well below this).
pub const MAX_GROUP_INFO_BYTES: usize = 16 * 1024;

pub struct Recovery {
    store: Arc<dyn Store>,
    max_devices: u32,
}

fn no_backup() -> ApiError {
    ApiError::new(
        ErrorCode::NotFound,
        "no backup for this name and recovery key",
    )
}

/// Whether a restore secret is the one whose verifier the account kept.
fn secret_matches(verifier: Option<&[u8]>, secret: &[u8]) -> bool {
    secret.len() == parley_mls::recovery::RESTORE_SECRET_LEN
        && verifier == Some(parley_mls::recovery::restore_verifier(secret).as_slice())
}

/// A group's public state (CPU-bound: callers run it on a blocking thread).
fn load_public(group_id: GroupId, blob: &[u8]) -> Result<PublicGroupState, ApiError> {
    PublicGroupState::load(&MlsGroupId::from_slice(group_id.as_bytes()), blob)
        .map_err(|_| ApiError::new(ErrorCode::Internal, "group state unreadable"))
}

fn group_id(bytes: &[u8]) -> Result<GroupId, ApiError> {
    GroupId::from_slice(bytes).map_err(|_| ApiError::malformed("a group id is 16 bytes"))
}

fn backup_info(record: &BackupRecord) -> v1::BackupInfo {
    v1::BackupInfo {
        blob_id: record.blob.blob_id.clone(),
        chunks: record.blob.chunks,
        bytes: record.blob.bytes,
        created_at_ms: record.created_at,
    }
}

impl Recovery {
    pub fn new(store: Arc<dyn Store>, max_devices: u32) -> Self {
        Recovery { store, max_devices }
    }

    /// Registers a restored device under its existing account: it proves its own key, and its
    /// certificate verifies under the account key the account registered.
    pub async fn restore(
        &self,
        request: v1::RegisterRequest,
    ) -> Result<v1::RegisterResponse, ApiError> {
        let username = Username::parse(&request.username)
            .map_err(|e| ApiError::new(ErrorCode::InvalidUsername, e.to_string()))?;
        verify_registration_proof(&username, &request)?;
        let device_id = chosen_device_id(&request.device_id)?;
        let account = self
            .store
            .user_devices(&username)
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| ApiError::new(ErrorCode::NotFound, "no account by that name"))?;
        if account.account_key != request.account_key {
            return Err(ApiError::forbidden(
                "this backup's account key is not the account's: the account changed its key",
            ));
        }
        verify_certificate(&username, device_id, &request)?;
        // The account key alone is not enough (a revoked device knows it): the restore secret
        // from the recovery key must match what the account's backups were stored with.
        let verifier = self
            .store
            .restore_verifier(account.user_id, &request.backup_id)
            .await?;
        if !secret_matches(verifier.as_deref(), &request.restore_secret) {
            return Err(ApiError::forbidden(
                "this recovery key does not restore the account",
            ));
        }
        let device = self
            .store
            .add_restored_device(RestoredDevice {
                user_id: account.user_id,
                device_id,
                signature_key: request.signature_key,
                now: now_ms(),
                // A restore revokes the lost devices right after: an account that lost as
                // many devices as it may have can still be restored.
                max_devices: self.max_devices.saturating_add(1),
            })
            .await?;
        tracing::info!(user = %device.user_id, device = %device.device_id, "device restored");
        Ok(v1::RegisterResponse {
            user_id: device.user_id.to_vec(),
            device_id: device.device_id.to_vec(),
        })
    }

    /// Keeps a member's GroupInfo if it is of the group's current epoch and carries the group's
    /// current context (so that nobody can plant another group's, or an old one).
    pub async fn put_group_info(
        &self,
        device: &Authenticated,
        group: &[u8],
        upload: v1::GroupInfoUpload,
    ) -> Result<(), ApiError> {
        let group_id = group_id(group)?;
        if upload.group_info.len() > MAX_GROUP_INFO_BYTES {
            return Err(ApiError::new(ErrorCode::TooLarge, "GroupInfo too large"));
        }
        if !self.store.is_member(group_id, device.0.device_id).await? {
            return Err(parley_store::StoreError::NotMember.into());
        }
        let record = self
            .store
            .group(group_id)
            .await?
            .ok_or_else(|| ApiError::new(ErrorCode::NotFound, "unknown group"))?;
        if record.epoch != upload.epoch {
            return Err(ApiError(parley_protocol::WireError::wrong_epoch(
                record.epoch,
            )));
        }
        let info = upload.group_info.clone();
        let uploader = device.0.device_id;
        let matches = tokio::task::spawn_blocking(move || -> Result<bool, ApiError> {
            let parsed = MlsMessageIn::tls_deserialize_exact(info.as_slice())
                .map_err(|_| ApiError::invalid_mls("GroupInfo does not parse"))?;
            let MlsMessageBodyIn::GroupInfo(info) = parsed.extract() else {
                return Err(ApiError::invalid_mls("expected a GroupInfo"));
            };
            if info.extensions().external_pub().is_none() {
                return Err(ApiError::invalid_mls(
                    "the GroupInfo has no external public key",
                ));
            }
            let state = load_public(group_id, &record.public_state)?;
            let ours = state
                .group
                .group_context()
                .tls_serialize_detached()
                .map_err(|_| ApiError::new(ErrorCode::Internal, "cannot encode the context"))?;
            let theirs = info
                .group_context()
                .tls_serialize_detached()
                .map_err(|_| ApiError::invalid_mls("cannot encode the GroupInfo's context"))?;
            if ours != theirs {
                return Ok(false);
            }
            // Signed by the uploader's own leaf: a member cannot plant a GroupInfo that restored
            // devices would fail to join from.
            let key = state
                .group
                .members()
                .find(|m| {
                    parley_mls::DeviceIdentity::from_credential(&m.credential)
                        .is_ok_and(|id| id.device_id == uploader)
                })
                .map(|m| m.signature_key)
                .ok_or_else(|| ApiError::from(parley_store::StoreError::NotMember))?;
            let key = OpenMlsSignaturePublicKey::new(
                key.into(),
                state.group.ciphersuite().signature_algorithm(),
            )
            .map_err(|_| ApiError::invalid_mls("the uploader's key is unusable"))?;
            info.verify_no_out(&openmls_rust_crypto::RustCrypto::default(), &key)
                .map_err(|_| {
                    ApiError::invalid_mls("the GroupInfo is not signed by the uploader")
                })?;
            Ok(true)
        })
        .await
        .map_err(|_| ApiError::new(ErrorCode::Internal, "GroupInfo check failed"))??;
        if !matches {
            return Err(ApiError::invalid_mls(
                "the GroupInfo is not of the group's current state",
            ));
        }
        if !self
            .store
            .put_group_info(group_id, upload.epoch, upload.group_info)
            .await?
        {
            return Err(ApiError::new(
                ErrorCode::WrongEpoch,
                "the group moved on meanwhile",
            ));
        }
        Ok(())
    }

    /// What a device of an account in the group joins it from: the newest GroupInfo and the
    /// current ratchet tree.
    pub async fn group_info(
        &self,
        device: &Authenticated,
        group: &[u8],
    ) -> Result<v1::GroupInfoBundle, ApiError> {
        let group_id = group_id(group)?;
        if !self
            .store
            .account_in_group(group_id, device.0.user_id)
            .await?
        {
            return Err(ApiError::new(ErrorCode::NotFound, "unknown group"));
        }
        let record = self
            .store
            .group(group_id)
            .await?
            .ok_or_else(|| ApiError::new(ErrorCode::NotFound, "unknown group"))?;
        let stored = self.store.group_info(group_id).await?.ok_or_else(|| {
            ApiError::new(
                ErrorCode::NotReady,
                "no member has shared the group's state yet",
            )
        })?;
        let group_epoch = record.epoch;
        let ratchet_tree = tokio::task::spawn_blocking(move || -> Result<Vec<u8>, ApiError> {
            let state = load_public(group_id, &record.public_state)?;
            state
                .group
                .export_ratchet_tree()
                .tls_serialize_detached()
                .map_err(|_| ApiError::new(ErrorCode::Internal, "cannot export the ratchet tree"))
        })
        .await
        .map_err(|_| ApiError::new(ErrorCode::Internal, "ratchet tree export failed"))??;
        Ok(v1::GroupInfoBundle {
            epoch: stored.epoch,
            group_info: stored.group_info,
            ratchet_tree,
            group_epoch,
        })
    }

    pub async fn register_backup(
        &self,
        device: &Authenticated,
        request: v1::RegisterBackup,
    ) -> Result<v1::BackupInfo, ApiError> {
        if request.backup_id.len() != BACKUP_ID_BYTES {
            return Err(ApiError::malformed("a backup id is 32 bytes"));
        }
        if request.restore_verifier.len() != parley_mls::recovery::RESTORE_SECRET_LEN {
            return Err(ApiError::malformed("a restore verifier is 32 bytes"));
        }
        let now = now_ms();
        self.store
            .register_backup(NewBackup {
                owner: device.0.user_id,
                backup_id: request.backup_id.clone(),
                blob_id: request.blob_id.clone(),
                restore_verifier: request.restore_verifier.clone(),
                set_by: device.0.device_id,
                now,
                keep: BACKUPS_KEPT,
            })
            .await?;
        tracing::info!(user = %device.0.user_id, "backup stored");
        let blob = self
            .store
            .blob(&request.blob_id, now)
            .await?
            .ok_or_else(|| ApiError::new(ErrorCode::Internal, "the backup vanished"))?;
        Ok(v1::BackupInfo {
            blob_id: blob.blob_id,
            chunks: blob.chunks,
            bytes: blob.bytes,
            created_at_ms: now,
        })
    }

    pub async fn backups(&self, device: &Authenticated) -> Result<v1::BackupList, ApiError> {
        Ok(v1::BackupList {
            backups: self
                .store
                .backups(device.0.user_id)
                .await?
                .iter()
                .map(backup_info)
                .collect(),
        })
    }

    /// The newest backup the request names, if its restore secret matches the verifier the
    /// backups under that id were stored with. Every failure is the same "no backup".
    async fn latest(&self, request: &v1::BackupRequest) -> Result<BackupRecord, ApiError> {
        let username = Username::parse(&request.username).map_err(|_| no_backup())?;
        if request.backup_id.len() != BACKUP_ID_BYTES
            || request.restore_secret.len() != parley_mls::recovery::RESTORE_SECRET_LEN
        {
            return Err(no_backup());
        }
        let latest = self
            .store
            .latest_backup(&username, &request.backup_id)
            .await?
            .ok_or_else(no_backup)?;
        let verifier = self
            .store
            .restore_verifier(latest.blob.owner, &request.backup_id)
            .await?;
        if !secret_matches(verifier.as_deref(), &request.restore_secret) {
            return Err(no_backup());
        }
        Ok(latest)
    }

    /// The newest backup a request names, for a device that has no session yet.
    pub async fn backup(&self, request: v1::BackupRequest) -> Result<v1::BackupInfo, ApiError> {
        Ok(backup_info(&self.latest(&request).await?))
    }

    /// A chunk of the backup the request names, by its blob id: a backup stored meanwhile
    /// does not mix its chunks into a download in progress.
    pub async fn backup_chunk(
        &self,
        request: v1::BackupRequest,
    ) -> Result<v1::BlobChunk, ApiError> {
        let latest = self.latest(&request).await?;
        let blob_id = if request.blob_id == latest.blob.blob_id {
            latest.blob.blob_id
        } else {
            // An older backup of the same id, still kept.
            self.store
                .backups(latest.blob.owner)
                .await?
                .into_iter()
                .find(|b| b.blob.blob_id == request.blob_id && b.backup_id == request.backup_id)
                .ok_or_else(no_backup)?
                .blob
                .blob_id
        };
        let data = self
            .store
            .blob_chunk(&blob_id, request.index)
            .await?
            .ok_or_else(|| ApiError::new(ErrorCode::NotFound, "no such chunk"))?;
        Ok(v1::BlobChunk { data })
    }
}
