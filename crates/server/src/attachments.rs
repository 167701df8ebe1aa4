//! Encrypted attachments, as the server sees them: ciphertext blobs addressed by their SHA-256,
//! uploaded in parts (resumable: the next part is always `received / part_bytes`), checked
//! against their hash on completion, readable by the members of one group, and deleted once
//! every member device has fetched them or their retention ends.
//!
//! The ciphertext goes to an [`ObjectStore`] (the data directory's `attachments/` on one node,
//! S3-compatible storage for several); the records (who, how much, until when) to the
//! [`Store`]. The server never sees a key: the file's key and its plaintext hash travel inside
//! the MLS message that names the attachment (see `parley_client::attachments`).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, PutPayload};
use parley_protocol::limits::ATTACHMENT_PART_BYTES;
use parley_protocol::{v1, ErrorCode, GroupId};
use parley_store::{AttachmentRecord, NewAttachment, Store};
use sha2::{Digest, Sha256};

use crate::accounts::Authenticated;
use crate::links::bytes16;
use crate::{now_ms, ApiError, ServerError};

/// An upload that has not completed within this long is deleted.
const INCOMPLETE_TTL_MS: i64 = 24 * 60 * 60 * 1000;
/// The AEAD tag per 64 KiB chunk of the client's format, as slack over the plaintext limit.
const TAG_SLACK_PER_MIB: u64 = 16 * 16;

/// Where attachment ciphertext is kept.
#[derive(Debug, Clone)]
pub enum ObjectStorage {
    /// `attachments/` in the data directory: one node.
    Local,
    /// An S3-compatible bucket: several nodes. Credentials come from the environment
    /// (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`), never from the command line.
    S3 {
        endpoint: String,
        bucket: String,
        region: String,
    },
}

#[derive(Debug, Clone)]
pub struct AttachmentLimits {
    /// Largest file (plaintext); its ciphertext may be larger by the AEAD tags.
    pub max_bytes: u64,
    /// Bytes of attachments one account may have stored at once.
    pub quota_bytes: u64,
    /// How long a complete attachment is kept for devices that have not fetched it.
    pub retention: Duration,
}

pub struct Attachments {
    store: Arc<dyn Store>,
    objects: Arc<dyn ObjectStore>,
    limits: AttachmentLimits,
}

fn unavailable(error: object_store::Error) -> ApiError {
    tracing::error!(error = %error, "object storage failure");
    ApiError::new(
        ErrorCode::Unavailable,
        "attachment storage unavailable; retry",
    )
}

fn not_found() -> ApiError {
    // The same answer for an attachment that does not exist and one the caller may not read.
    ApiError::new(ErrorCode::NotFound, "no such attachment")
}

fn part_path(hash: &[u8], index: u64) -> ObjectPath {
    ObjectPath::from(format!("attachments/{}/{index:06}", hex::encode(hash)))
}

fn part_count(size: u64) -> u64 {
    size.div_ceil(u64::from(ATTACHMENT_PART_BYTES))
}

fn status(record: &AttachmentRecord) -> v1::AttachmentStatus {
    v1::AttachmentStatus {
        size: record.size,
        received: record.received,
        complete: record.complete,
        part_bytes: ATTACHMENT_PART_BYTES,
        expires_at_ms: record.expires_at,
    }
}

/// Opens the configured object storage.
pub fn open_objects(
    storage: &ObjectStorage,
    data_dir: &Path,
) -> Result<Arc<dyn ObjectStore>, ServerError> {
    match storage {
        ObjectStorage::Local => {
            let dir = data_dir.join("objects");
            std::fs::create_dir_all(&dir).map_err(|e| {
                ServerError::Config(format!("cannot create {}: {e}", dir.display()))
            })?;
            let local = object_store::local::LocalFileSystem::new_with_prefix(&dir)
                .map_err(|e| ServerError::Config(format!("object storage: {e}")))?;
            Ok(Arc::new(local))
        }
        ObjectStorage::S3 {
            endpoint,
            bucket,
            region,
        } => {
            let s3 = object_store::aws::AmazonS3Builder::from_env()
                .with_endpoint(endpoint)
                .with_bucket_name(bucket)
                .with_region(region)
                .with_allow_http(endpoint.starts_with("http://"))
                .with_virtual_hosted_style_request(false)
                .build()
                .map_err(|e| ServerError::Config(format!("S3 storage: {e}")))?;
            Ok(Arc::new(s3))
        }
    }
}

impl Attachments {
    pub fn new(
        store: Arc<dyn Store>,
        objects: Arc<dyn ObjectStore>,
        limits: AttachmentLimits,
    ) -> Self {
        Attachments {
            store,
            objects,
            limits,
        }
    }

    fn max_ciphertext(&self) -> u64 {
        let mib = self.limits.max_bytes.div_ceil(1 << 20).max(1);
        self.limits.max_bytes + mib * TAG_SLACK_PER_MIB + 64
    }

    /// Starts an upload, or finds the caller's upload of the same ciphertext to resume it.
    pub async fn create(
        &self,
        device: &Authenticated,
        request: v1::CreateAttachment,
    ) -> Result<v1::AttachmentStatus, ApiError> {
        let hash = hash_from(&request.ciphertext_sha256)?;
        if request.size == 0 {
            return Err(ApiError::malformed("an attachment is not empty"));
        }
        if request.size > self.max_ciphertext() {
            return Err(ApiError::new(
                ErrorCode::TooLarge,
                format!(
                    "attachments are at most {} MiB on this server",
                    self.limits.max_bytes >> 20
                ),
            ));
        }
        let group = GroupId::from_bytes(bytes16(&request.group_id, "a group id")?);
        let now = now_ms();
        let retention = self.limits.retention.as_millis() as i64;
        let keep = match request.expires_in_ms {
            0 => retention,
            wanted => (wanted.min(i64::MAX as u64) as i64).min(retention),
        };
        let record = self
            .store
            .create_attachment(NewAttachment {
                hash: hash.to_vec(),
                size: request.size,
                uploader: device.0.device_id,
                group,
                quota_bytes: self.limits.quota_bytes,
                now,
                expires_at: now.saturating_add(keep),
            })
            .await?;
        Ok(status(&record))
    }

    /// The record, if the caller may read it: a current member of its group, or its uploader.
    async fn readable(
        &self,
        device: &Authenticated,
        hash: &[u8],
    ) -> Result<AttachmentRecord, ApiError> {
        let hash = hash_from(hash)?;
        let record = self
            .store
            .attachment(&hash)
            .await?
            .filter(|r| r.expires_at > now_ms())
            .ok_or_else(not_found)?;
        if record.uploader == device.0.device_id
            || self
                .store
                .account_in_group(record.group, device.0.user_id)
                .await?
        {
            Ok(record)
        } else {
            Err(not_found())
        }
    }

    pub async fn status(
        &self,
        device: &Authenticated,
        hash: &[u8],
    ) -> Result<v1::AttachmentStatus, ApiError> {
        Ok(status(&self.readable(device, hash).await?))
    }

    /// Takes part `index` of the caller's upload. A part the server has already is
    /// acknowledged again without being written (a retry after a lost answer).
    pub async fn put_part(
        &self,
        device: &Authenticated,
        hash: &[u8],
        index: u64,
        bytes: bytes::Bytes,
    ) -> Result<v1::AttachmentStatus, ApiError> {
        let record = self.readable(device, hash).await?;
        if record.uploader != device.0.device_id {
            return Err(not_found());
        }
        let part = u64::from(ATTACHMENT_PART_BYTES);
        let next = record.received / part;
        if record.complete || index < next {
            return Ok(status(&record));
        }
        if index > next {
            return Err(ApiError::malformed(format!(
                "parts go in order: part {next} is next"
            )));
        }
        let expected = part.min(record.size - record.received);
        if bytes.len() as u64 != expected {
            return Err(ApiError::malformed(format!(
                "part {index} is {expected} bytes, not {}",
                bytes.len()
            )));
        }
        self.objects
            .put(
                &part_path(&record.hash, index),
                PutPayload::from_bytes(bytes),
            )
            .await
            .map_err(unavailable)?;
        let received = record.received + expected;
        let last = received == record.size;
        if last {
            self.verify_whole(&record).await?;
        }
        if !self
            .store
            .advance_attachment(&record.hash, record.received, received, last)
            .await?
        {
            // Another request of the same upload took this part: say where it stands.
            return Ok(status(&self.readable(device, hash).await?));
        }
        if last {
            tracing::info!(device = %device.0.device_id, bytes = record.size, "attachment uploaded");
        }
        Ok(v1::AttachmentStatus {
            received,
            complete: last,
            ..status(&record)
        })
    }

    /// Hashes the stored parts; a mismatch deletes the upload (its sender must start again).
    async fn verify_whole(&self, record: &AttachmentRecord) -> Result<(), ApiError> {
        let mut hasher = Sha256::new();
        for index in 0..part_count(record.size) {
            let part = self
                .objects
                .get(&part_path(&record.hash, index))
                .await
                .map_err(unavailable)?
                .bytes()
                .await
                .map_err(unavailable)?;
            hasher.update(&part);
        }
        if hasher.finalize().as_slice() == record.hash.as_slice() {
            return Ok(());
        }
        self.delete(record).await?;
        Err(ApiError::malformed(
            "the uploaded bytes do not match the attachment's hash; the upload was discarded",
        ))
    }

    pub async fn get_part(
        &self,
        device: &Authenticated,
        hash: &[u8],
        index: u64,
    ) -> Result<bytes::Bytes, ApiError> {
        let record = self.readable(device, hash).await?;
        if !record.complete {
            return Err(ApiError::new(
                ErrorCode::NotReady,
                "the attachment is still being uploaded",
            ));
        }
        if index >= part_count(record.size) {
            return Err(ApiError::new(ErrorCode::NotFound, "no such part"));
        }
        self.objects
            .get(&part_path(&record.hash, index))
            .await
            .map_err(unavailable)?
            .bytes()
            .await
            .map_err(unavailable)
    }

    /// The caller's device has the file; the last member device to say so deletes it.
    pub async fn fetched(&self, device: &Authenticated, hash: &[u8]) -> Result<(), ApiError> {
        let record = self.readable(device, hash).await?;
        if self
            .store
            .attachment_fetched(&record.hash, device.0.device_id)
            .await?
        {
            self.delete_objects(&record.hash, record.size).await;
        }
        Ok(())
    }

    async fn delete(&self, record: &AttachmentRecord) -> Result<(), ApiError> {
        self.store.delete_attachment(&record.hash).await?;
        self.delete_objects(&record.hash, record.size).await;
        Ok(())
    }

    /// Deletes the parts; a failure is logged, and the listing sweep retries later.
    async fn delete_objects(&self, hash: &[u8], size: u64) {
        for index in 0..part_count(size) {
            match self.objects.delete(&part_path(hash, index)).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => tracing::warn!(error = %e, "could not delete an attachment part"),
            }
        }
    }

    /// Deletes attachments past their retention and uploads that never completed; returns
    /// how many.
    pub async fn expire(&self) -> Result<usize, ApiError> {
        let now = now_ms();
        let expired = self
            .store
            .expire_attachments(now, now - INCOMPLETE_TTL_MS)
            .await?;
        for hash in &expired {
            self.delete_prefix(hash).await;
        }
        Ok(expired.len())
    }

    /// Deletes every part under the hash (the record, and with it the size, is gone).
    async fn delete_prefix(&self, hash: &[u8]) {
        use futures_util::StreamExt;
        let prefix = ObjectPath::from(format!("attachments/{}", hex::encode(hash)));
        let mut listing = self.objects.list(Some(&prefix));
        while let Some(item) = listing.next().await {
            match item {
                Ok(meta) => {
                    if let Err(e) = self.objects.delete(&meta.location).await {
                        tracing::warn!(error = %e, "could not delete an expired attachment part");
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "could not list an expired attachment");
                    break;
                }
            }
        }
    }
}

fn hash_from(bytes: &[u8]) -> Result<[u8; 32], ApiError> {
    bytes
        .try_into()
        .map_err(|_| ApiError::malformed("an attachment is named by a 32-byte SHA-256"))
}
