//! The history archive between two devices of an account: the whole message log, encrypted
//! under a key from the link code, uploaded as a blob the new device alone may read.

use parley_protocol::{v1, DeviceId};
use prost::Message as _;

use super::crypto::{decrypt_archive, encrypt_archive};
use crate::client::Client;
use crate::db;
use crate::error::ClientError;

/// What an archive held.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ArchiveSize {
    pub chats: u64,
    pub messages: u64,
    /// Encrypted bytes.
    pub bytes: u64,
}

/// Most bytes an archive (or a backup) may take: the server's blob limit.
pub(crate) const MAX_ARCHIVE_BYTES: usize = 256 * 1024 * 1024;

impl Client {
    /// Encrypts the whole log and uploads it into `blob`, then seals it.
    pub(crate) async fn upload_archive(
        &self,
        blob: &[u8],
        key: &[u8; 32],
    ) -> Result<ArchiveSize, ClientError> {
        let (plaintext, chats, messages) = {
            let archive = db::export_archive(&self.db())?;
            (
                archive.encode_to_vec(),
                archive.chats.len() as u64,
                archive.messages.len() as u64,
            )
        };
        let chunks = encrypt_archive(key, &plaintext)?;
        let bytes = self.upload_blob(blob, &chunks).await?;
        Ok(ArchiveSize {
            chats,
            messages,
            bytes,
        })
    }

    /// Uploads chunks into a blob of ours and seals it; returns the bytes uploaded. A retry
    /// sends a chunk again harmlessly.
    pub(crate) async fn upload_blob(
        &self,
        blob: &[u8],
        chunks: &[Vec<u8>],
    ) -> Result<u64, ClientError> {
        let blob_hex = hex::encode(blob);
        let mut bytes = 0;
        for (index, chunk) in chunks.iter().enumerate() {
            bytes += chunk.len() as u64;
            let path = format!("/v1/blobs/{blob_hex}/{index}");
            let body = v1::BlobChunk {
                data: chunk.clone(),
            };
            let _: v1::BlobStatus = self.authed(|| self.api.put(&path, &body)).await?;
        }
        let seal = v1::SealBlob {
            chunks: chunks.len() as u32,
        };
        let path = format!("/v1/blobs/{blob_hex}/seal");
        let _: v1::BlobStatus = self.authed(|| self.api.post(&path, &seal, true)).await?;
        Ok(bytes)
    }

    /// Downloads a sealed archive, decrypts it, stores it as history and deletes the blob.
    pub(crate) async fn import_archive_blob(
        &self,
        blob: &[u8],
        key: &[u8; 32],
        chunks: u32,
    ) -> Result<ArchiveSize, ClientError> {
        if chunks > parley_protocol::limits::MAX_BLOB_CHUNKS {
            return Err(ClientError::Protocol(
                "the history archive is too large".into(),
            ));
        }
        let blob_hex = hex::encode(blob);
        let mut encrypted = Vec::with_capacity(chunks as usize);
        let mut bytes = 0;
        for index in 0..chunks {
            let path = format!("/v1/blobs/{blob_hex}/{index}");
            let chunk: v1::BlobChunk = self.authed(|| self.api.get(&path)).await?;
            bytes += chunk.data.len();
            if bytes > MAX_ARCHIVE_BYTES {
                return Err(ClientError::Protocol(
                    "the history archive is too large".into(),
                ));
            }
            encrypted.push(chunk.data);
        }
        let plaintext = decrypt_archive(key, &encrypted)?;
        let archive = v1::HistoryArchive::decode(plaintext.as_slice())
            .map_err(|_| ClientError::Protocol("the history archive does not parse".into()))?;
        let messages = {
            let conn = self.db();
            let tx = conn.unchecked_transaction()?;
            let new = db::import_archive(&tx, &archive)?;
            db::delete_pending_link(&tx)?;
            tx.commit()?;
            new
        };
        let path = format!("/v1/blobs/{blob_hex}");
        if let Err(e) = self.authed(|| self.api.delete::<v1::SealBlob>(&path)).await {
            // It expires within a day anyway.
            tracing::debug!(error = %e, "could not delete the history archive");
        }
        Ok(ArchiveSize {
            chats: archive.chats.len() as u64,
            messages,
            bytes: bytes as u64,
        })
    }

    /// Whether `device` is a member of the group.
    pub(crate) fn has_member_device(
        &self,
        group_id: &[u8],
        device: DeviceId,
    ) -> Result<bool, ClientError> {
        let conn = self.db();
        let provider = crate::provider::TxProvider::new(&self.crypto, &conn);
        Ok(
            crate::groups::load_group(&provider, group_id)?.is_some_and(|group| {
                group.members().any(|m| {
                    parley_mls::DeviceIdentity::from_credential(&m.credential)
                        .is_ok_and(|id| id.device_id == device)
                })
            }),
        )
    }
}
