//! The files of a reported message: the reporter uploads each one's plaintext as a blob of its
//! own, and the server keeps it for moderators only if its size and SHA-256 match what the
//! franked message says (`Attachment.plaintext_sha256`, inside the payload whose frank was
//! verified). A file that does not match refuses the whole report.
//!
//! A kept file goes to the object store under `reports/`, outside any attachment's lifetime;
//! the console serves it as a download, never inline.

use std::sync::Arc;

use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, WriteMultipart};
use parley_protocol::{limits, v1, ErrorCode};
use parley_store::Store;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::accounts::{random_bytes, Authenticated};
use crate::{now_ms, ApiError};

/// A reported file as the report keeps it (in its context, next to the messages).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct VerifiedFile {
    pub name: String,
    pub size: u64,
    pub content_type: String,
    /// SHA-256 of the plaintext (hex), as the franked message says.
    pub sha256: String,
    /// Where the object store keeps it.
    pub object: String,
}

fn refused(why: &str) -> ApiError {
    ApiError::new(
        ErrorCode::Forbidden,
        format!("report rejected: a reported file {why}"),
    )
}

fn unavailable(error: object_store::Error) -> ApiError {
    tracing::error!(error = %error, "object storage failure");
    ApiError::new(ErrorCode::Unavailable, "file storage unavailable; retry")
}

/// Checks and keeps the reported files of a message whose verified payload names
/// `attachments`; the blobs they came in are deleted.
pub(crate) async fn keep(
    store: &Arc<dyn Store>,
    objects: &Arc<dyn ObjectStore>,
    reporter: &Authenticated,
    attachments: &[v1::Attachment],
    files: &[v1::ReportedFile],
) -> Result<Vec<VerifiedFile>, ApiError> {
    if files.len() > attachments.len() || files.len() > limits::MAX_REPORTED_FILES {
        return Err(refused("is not one of the message's"));
    }
    let mut kept = Vec::new();
    for (n, file) in files.iter().enumerate() {
        let attachment = match attachments.get(file.index as usize) {
            _ if files[..n].iter().any(|f| f.index == file.index) => Err(refused("is given twice")),
            None => Err(refused("is not one of the message's")),
            Some(attachment) => keep_one(store, objects, reporter, attachment, &file.blob_id).await,
        };
        match attachment {
            Ok(file) => kept.push(file),
            // One file refused refuses the report: the ones kept before it go again.
            Err(e) => {
                forget(objects, &kept).await;
                return Err(e);
            }
        }
    }
    for file in files {
        store.delete_blob(&file.blob_id).await?;
    }
    Ok(kept)
}

/// Deletes kept files again (their report was refused after all).
pub(crate) async fn forget(objects: &Arc<dyn ObjectStore>, kept: &[VerifiedFile]) {
    for file in kept {
        if let Err(e) = objects
            .delete(&ObjectPath::from(file.object.as_str()))
            .await
        {
            tracing::warn!(error = %e, "a refused report's file was not deleted");
        }
    }
}

async fn keep_one(
    store: &Arc<dyn Store>,
    objects: &Arc<dyn ObjectStore>,
    reporter: &Authenticated,
    attachment: &v1::Attachment,
    blob_id: &[u8],
) -> Result<VerifiedFile, ApiError> {
    let blob = store
        .blob(blob_id, now_ms())
        .await?
        .filter(|b| b.owner == reporter.0.user_id && b.sealed)
        .ok_or_else(|| refused("was not uploaded"))?;
    if blob.bytes != attachment.size {
        return Err(refused("has another size than its message says"));
    }
    let object = format!("reports/{}", hex::encode(random_bytes::<16>()));
    let path = ObjectPath::from(object.as_str());
    let upload = objects.put_multipart(&path).await.map_err(unavailable)?;
    let mut writer = WriteMultipart::new(upload);
    let mut hash = Sha256::new();
    for index in 0..blob.chunks {
        let chunk = store
            .blob_chunk(blob_id, index)
            .await?
            .ok_or_else(|| refused("is incomplete"))?;
        hash.update(&chunk);
        writer.write(&chunk);
    }
    if hash.finalize().as_slice() != attachment.plaintext_sha256.as_slice() {
        let _ = writer.abort().await;
        return Err(refused(
            "does not match the hash its franked message carries",
        ));
    }
    writer.finish().await.map_err(unavailable)?;
    Ok(VerifiedFile {
        name: attachment
            .name
            .chars()
            .filter(|c| !c.is_control())
            .collect(),
        size: attachment.size,
        content_type: attachment
            .content_type
            .chars()
            .filter(|c| !c.is_control())
            .collect(),
        sha256: hex::encode(&attachment.plaintext_sha256),
        object,
    })
}

/// A kept file's bytes, for a moderator.
pub(crate) async fn open(
    objects: &Arc<dyn ObjectStore>,
    file: &VerifiedFile,
) -> Result<bytes::Bytes, ApiError> {
    if !file.object.starts_with("reports/") {
        return Err(ApiError::new(ErrorCode::NotFound, "no such file"));
    }
    objects
        .get(&ObjectPath::from(file.object.as_str()))
        .await
        .map_err(unavailable)?
        .bytes()
        .await
        .map_err(unavailable)
}
