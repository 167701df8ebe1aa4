//! Several devices per account, as the server sees them: link requests from new devices,
//! approvals by the account's devices, blobs (history archives) in chunks, and the device list.
//!
//! The server checks what it can without any secret: a new device proves its key, an approval
//! carries a certificate under the account's registered key, a blob is read only by its reader.
//! The link MAC, the sealed bundle and the archive are opaque to it (see docs/multi-device.md).

use std::sync::Arc;

use parley_mls::certificate::{AccountPublicKey, DeviceCertificate};
use parley_mls::revocation::DeviceRevocation;
use parley_protocol::limits::{
    BLOB_TTL_MS, LINK_TTL_MS, MAX_BLOB_CHUNKS, MAX_BLOB_CHUNK_BYTES, MAX_DEVICE_NAME_BYTES,
    MAX_PENDING_LINKS_PER_ACCOUNT,
};
use parley_protocol::{v1, DeviceId, ErrorCode, Username};
use parley_store::{BlobRecord, LinkApproval, LinkRecord, NewBlob, NewLink, Store};

use crate::accounts::{random_bytes, verify, verifying_key, Authenticated};
use crate::{now_ms, ApiError};

/// Blobs one account may hold at once: history archives being handed over, backups, and the
/// files of a report on their way (all of a message's, [`parley_protocol::limits::MAX_REPORTED_FILES`]).
const MAX_BLOBS_PER_ACCOUNT: u32 = parley_protocol::limits::MAX_REPORTED_FILES as u32 + 4;
/// Largest sealed link bundle (an account key, a certificate, an id, HPKE overhead).
const MAX_SEALED_BUNDLE_BYTES: usize = 4096;

pub struct Links {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) max_devices: u32,
}

pub(crate) fn bytes16(bytes: &[u8], what: &str) -> Result<[u8; 16], ApiError> {
    bytes
        .try_into()
        .map_err(|_| ApiError::malformed(format!("{what} must be 16 bytes")))
}

/// The account key the caller's account registered.
pub(crate) fn registered_account_key(device: &Authenticated) -> Result<AccountPublicKey, ApiError> {
    let bytes: [u8; 32] = device
        .0
        .account_key
        .as_slice()
        .try_into()
        .map_err(|_| ApiError::new(ErrorCode::Internal, "the account key is malformed"))?;
    Ok(AccountPublicKey::from_bytes(bytes))
}

fn expired() -> ApiError {
    ApiError::new(
        ErrorCode::LinkExpired,
        "the link code expired, was used, or is unknown; start again with `parley link`",
    )
}

fn no_blob() -> ApiError {
    // The same answer for a blob that does not exist and one the caller may not read.
    ApiError::new(ErrorCode::NotFound, "no such blob")
}

impl Links {
    pub fn new(store: Arc<dyn Store>, max_devices: u32) -> Self {
        Links { store, max_devices }
    }

    /// A new device asks to join an account; it holds its key (the proof) and has not
    /// registered anywhere.
    pub async fn create(
        &self,
        request: v1::CreateLink,
    ) -> Result<v1::CreateLinkResponse, ApiError> {
        let username = Username::parse(&request.username)
            .map_err(|e| ApiError::new(ErrorCode::InvalidUsername, e.to_string()))?;
        let device_id = DeviceId::from_bytes(bytes16(&request.device_id, "a device id")?);
        if device_id == parley_store::SYSTEM_DEVICE {
            return Err(ApiError::malformed("a device id is not all zero"));
        }
        if request.hpke_key.len() != 32 || request.mac.len() != 32 {
            return Err(ApiError::malformed(
                "a link carries a 32-byte HPKE key and a 32-byte MAC",
            ));
        }
        let key = verifying_key(&request.signature_key)?;
        verify(
            &key,
            &v1::link_proof_input(username.as_str(), &request.device_id, &request.hpke_key),
            &request.proof,
        )?;
        let account = self
            .store
            .user_devices(&username)
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| ApiError::new(ErrorCode::NotFound, "unknown user"))?;
        let link_id = random_bytes::<8>().to_vec();
        let now = now_ms();
        self.store
            .create_link(NewLink {
                link_id: link_id.clone(),
                user_id: account.user_id,
                device_id,
                signature_key: request.signature_key,
                hpke_key: request.hpke_key,
                mac: request.mac,
                now,
                expires_at: now + LINK_TTL_MS,
                max_pending: MAX_PENDING_LINKS_PER_ACCOUNT,
            })
            .await?;
        tracing::info!(user = %account.user_id, device = %device_id, "link requested");
        Ok(v1::CreateLinkResponse {
            link_id,
            expires_at_ms: now + LINK_TTL_MS,
        })
    }

    /// A link of the caller's account (the approver, or the new device once approved).
    async fn own_link(
        &self,
        device: &Authenticated,
        link_id: &[u8],
    ) -> Result<LinkRecord, ApiError> {
        if link_id.len() != 8 {
            return Err(ApiError::malformed("a link id is 8 bytes"));
        }
        match self.store.link(link_id, now_ms()).await? {
            Some(link) if link.user_id == device.0.user_id => Ok(link),
            // Another account's link is as unknown as a missing one.
            _ => Err(expired()),
        }
    }

    pub async fn get(
        &self,
        device: &Authenticated,
        link_id: &[u8],
    ) -> Result<v1::PendingLink, ApiError> {
        let link = self.own_link(device, link_id).await?;
        Ok(v1::PendingLink {
            username: link.username.to_string(),
            device_id: link.device_id.to_vec(),
            signature_key: link.signature_key,
            hpke_key: link.hpke_key,
            mac: link.mac,
            expires_at_ms: link.expires_at,
            approved: link.approved_at.is_some(),
            archive_blob: link.archive_blob.unwrap_or_default(),
            sealed_bundle: link.sealed_bundle.unwrap_or_default(),
        })
    }

    /// Registers the link's device under the account: the certificate must be the account
    /// key's, for exactly the device and key of the link.
    pub async fn approve(
        &self,
        device: &Authenticated,
        link_id: &[u8],
        request: v1::ApproveLink,
    ) -> Result<v1::ApproveLinkResponse, ApiError> {
        let link = self.own_link(device, link_id).await?;
        if link.approved_at.is_some() {
            return Err(expired());
        }
        let account_key = registered_account_key(device)?;
        let certificate = DeviceCertificate::decode(&request.certificate)
            .map_err(|e| ApiError::malformed(e.to_string()))?;
        certificate
            .verify(&account_key)
            .map_err(|e| ApiError::forbidden(e.to_string()))?;
        if certificate.username != link.username
            || certificate.device != link.device_id
            || certificate.device_key != link.signature_key
        {
            return Err(ApiError::forbidden(
                "the certificate is not for the device that asked to link",
            ));
        }
        if request.sealed_bundle.is_empty() || request.sealed_bundle.len() > MAX_SEALED_BUNDLE_BYTES
        {
            return Err(ApiError::malformed(
                "the sealed bundle is empty or too large",
            ));
        }
        let blob = self.owned(&request.archive_blob, device).await?;
        if blob.reader != Some(link.device_id) {
            return Err(ApiError::forbidden(
                "the history archive must be readable by the new device only",
            ));
        }
        let now = now_ms();
        let linked = self
            .store
            .approve_link(LinkApproval {
                link_id: link_id.to_vec(),
                sealed_bundle: request.sealed_bundle,
                archive_blob: request.archive_blob,
                now,
                kept_until: now + BLOB_TTL_MS,
                max_devices: self.max_devices,
            })
            .await?;
        tracing::info!(user = %linked.user_id, device = %linked.device_id, "device linked");
        Ok(v1::ApproveLinkResponse {
            device_id: linked.device_id.to_vec(),
        })
    }

    pub async fn create_blob(
        &self,
        device: &Authenticated,
        request: v1::CreateBlob,
    ) -> Result<v1::CreateBlobResponse, ApiError> {
        let reader = match request.reader_device.as_slice() {
            [] => None,
            id => Some(DeviceId::from_bytes(bytes16(id, "a reader device")?)),
        };
        let blob_id = random_bytes::<16>().to_vec();
        let now = now_ms();
        self.store
            .create_blob(NewBlob {
                blob_id: blob_id.clone(),
                owner: device.0.user_id,
                reader,
                now,
                expires_at: now + BLOB_TTL_MS,
                max_per_account: MAX_BLOBS_PER_ACCOUNT,
            })
            .await?;
        Ok(v1::CreateBlobResponse {
            blob_id,
            expires_at_ms: now + BLOB_TTL_MS,
        })
    }

    /// A blob the caller's account owns (it writes, seals and may delete it).
    async fn owned(&self, blob_id: &[u8], device: &Authenticated) -> Result<BlobRecord, ApiError> {
        bytes16(blob_id, "a blob id")?;
        match self.store.blob(blob_id, now_ms()).await? {
            Some(blob) if blob.owner == device.0.user_id => Ok(blob),
            _ => Err(no_blob()),
        }
    }

    /// A blob the caller may read: its reader device, or any device of its owner when it has
    /// none. The owner's other devices do not read a blob made for one device.
    async fn readable_by(
        &self,
        blob_id: &[u8],
        device: &Authenticated,
    ) -> Result<BlobRecord, ApiError> {
        bytes16(blob_id, "a blob id")?;
        match self.store.blob(blob_id, now_ms()).await? {
            Some(blob) if blob.reader == Some(device.0.device_id) => Ok(blob),
            Some(blob) if blob.reader.is_none() && blob.owner == device.0.user_id => Ok(blob),
            _ => Err(no_blob()),
        }
    }

    /// A blob the caller may see the progress of or delete: its reader, or its owner's devices.
    async fn visible_to(
        &self,
        blob_id: &[u8],
        device: &Authenticated,
    ) -> Result<BlobRecord, ApiError> {
        bytes16(blob_id, "a blob id")?;
        match self.store.blob(blob_id, now_ms()).await? {
            Some(blob)
                if blob.reader == Some(device.0.device_id) || blob.owner == device.0.user_id =>
            {
                Ok(blob)
            }
            _ => Err(no_blob()),
        }
    }

    pub async fn put_chunk(
        &self,
        device: &Authenticated,
        blob_id: &[u8],
        index: u32,
        chunk: v1::BlobChunk,
    ) -> Result<v1::BlobStatus, ApiError> {
        if index >= MAX_BLOB_CHUNKS {
            return Err(ApiError::new(
                ErrorCode::TooLarge,
                format!("a blob holds at most {MAX_BLOB_CHUNKS} chunks"),
            ));
        }
        if chunk.data.len() > MAX_BLOB_CHUNK_BYTES {
            return Err(ApiError::new(
                ErrorCode::TooLarge,
                "a chunk holds at most 1 MiB",
            ));
        }
        self.owned(blob_id, device).await?;
        self.store
            .put_blob_chunk(blob_id, index, chunk.data, now_ms())
            .await?;
        self.status_of(blob_id).await
    }

    pub async fn seal(
        &self,
        device: &Authenticated,
        blob_id: &[u8],
        request: v1::SealBlob,
    ) -> Result<v1::BlobStatus, ApiError> {
        self.owned(blob_id, device).await?;
        self.store
            .seal_blob(blob_id, request.chunks, now_ms())
            .await?;
        self.status_of(blob_id).await
    }

    async fn status_of(&self, blob_id: &[u8]) -> Result<v1::BlobStatus, ApiError> {
        let blob = self
            .store
            .blob(blob_id, now_ms())
            .await?
            .ok_or_else(no_blob)?;
        Ok(v1::BlobStatus {
            chunks: blob.chunks,
            sealed: blob.sealed,
            bytes: blob.bytes,
            updated_at_ms: blob.updated_at,
        })
    }

    pub async fn status(
        &self,
        device: &Authenticated,
        blob_id: &[u8],
    ) -> Result<v1::BlobStatus, ApiError> {
        self.visible_to(blob_id, device).await?;
        self.status_of(blob_id).await
    }

    pub async fn chunk(
        &self,
        device: &Authenticated,
        blob_id: &[u8],
        index: u32,
    ) -> Result<v1::BlobChunk, ApiError> {
        let blob = self.readable_by(blob_id, device).await?;
        if !blob.sealed {
            return Err(ApiError::new(
                ErrorCode::NotReady,
                "the blob is still being uploaded",
            ));
        }
        let data = self
            .store
            .blob_chunk(blob_id, index)
            .await?
            .ok_or_else(|| ApiError::new(ErrorCode::NotFound, "no such chunk"))?;
        Ok(v1::BlobChunk { data })
    }

    pub async fn delete_blob(
        &self,
        device: &Authenticated,
        blob_id: &[u8],
    ) -> Result<(), ApiError> {
        self.visible_to(blob_id, device).await?;
        self.store.delete_blob(blob_id).await?;
        Ok(())
    }

    pub async fn devices(&self, device: &Authenticated) -> Result<v1::DeviceList, ApiError> {
        let devices = self.store.account_devices(device.0.user_id).await?;
        Ok(v1::DeviceList {
            devices: devices
                .into_iter()
                .map(|d| v1::AccountDevice {
                    device_id: d.device_id.to_vec(),
                    sealed_name: d.sealed_name,
                    added_at_ms: d.added_at,
                    last_seen_ms: d.last_seen,
                })
                .collect(),
        })
    }

    pub async fn rename(
        &self,
        device: &Authenticated,
        target: &[u8],
        request: v1::RenameDevice,
    ) -> Result<v1::DeviceList, ApiError> {
        if request.sealed_name.len() > MAX_DEVICE_NAME_BYTES {
            return Err(ApiError::new(
                ErrorCode::TooLarge,
                "the device name is too long",
            ));
        }
        let target = DeviceId::from_bytes(bytes16(target, "a device id")?);
        let ours = self
            .store
            .account_devices(device.0.user_id)
            .await?
            .iter()
            .any(|d| d.device_id == target);
        if !ours {
            return Err(ApiError::new(
                ErrorCode::NotFound,
                "no such device in this account",
            ));
        }
        self.store
            .rename_device(target, request.sealed_name)
            .await?;
        self.devices(device).await
    }

    /// Revokes another device of the caller's account, under the account key's signed
    /// statement: it can no longer log in, its sessions and KeyPackages are gone, and no commit
    /// may bring it back.
    pub async fn revoke(
        &self,
        device: &Authenticated,
        target: &[u8],
        request: v1::RevokeDevice,
    ) -> Result<v1::DeviceList, ApiError> {
        let target = DeviceId::from_bytes(bytes16(target, "a device id")?);
        if target == device.0.device_id {
            return Err(ApiError::forbidden(
                "a device does not revoke itself: revoke it from another device of the account",
            ));
        }
        let ours = self
            .store
            .device(target)
            .await?
            .is_some_and(|r| r.user_id == device.0.user_id);
        if !ours {
            return Err(ApiError::new(
                ErrorCode::NotFound,
                "no such device in this account",
            ));
        }
        let statement = DeviceRevocation::decode(&request.revocation)
            .map_err(|e| ApiError::malformed(e.to_string()))?;
        let account_key = registered_account_key(device)?;
        statement
            .verify(&account_key)
            .map_err(|e| ApiError::forbidden(e.to_string()))?;
        if statement.device != target || statement.username != device.0.username {
            return Err(ApiError::forbidden("the revocation names another device"));
        }
        let rotation = self.check_rotation(device, &account_key, &request)?;
        if self
            .store
            .revoke_device(
                target,
                device.0.device_id,
                request.revocation,
                rotation,
                now_ms(),
            )
            .await?
        {
            tracing::info!(user = %device.0.user_id, device = %target, "device revoked");
        }
        self.devices(device).await
    }

    /// Deletes expired links and blobs.
    pub async fn expire(&self) -> Result<u64, ApiError> {
        Ok(self.store.expire_links_and_blobs(now_ms()).await?)
    }
}
