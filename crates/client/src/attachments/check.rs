//! What a received message may say about its attachments, and the names and types of files.

use std::path::Path;

use parley_protocol::v1;
use prost::Message;

use super::crypto::SealedFile;
use crate::error::ClientError;

/// Most attachments one message may carry.
pub use parley_protocol::limits::MAX_ATTACHMENTS;
const MAX_NAME_BYTES: usize = 255;
const MAX_CONTENT_TYPE_BYTES: usize = 127;
/// Largest plaintext chunk a sender may choose (the reader holds one in memory).
const MAX_CHUNK_BYTES: u32 = 16 * 1024 * 1024;
/// Largest file a message may announce (a server may allow less, never more).
const MAX_SIZE: u64 = 4 << 30;

impl TryFrom<&v1::Attachment> for SealedFile {
    type Error = ClientError;

    fn try_from(attachment: &v1::Attachment) -> Result<Self, ClientError> {
        let bytes32 = |bytes: &[u8], what: &str| -> Result<[u8; 32], ClientError> {
            bytes
                .try_into()
                .map_err(|_| ClientError::Invalid(format!("an attachment's {what} is 32 bytes")))
        };
        if attachment.chunk_bytes == 0 || attachment.chunk_bytes > MAX_CHUNK_BYTES {
            return Err(ClientError::Invalid(
                "an attachment's chunk size is out of range".into(),
            ));
        }
        if attachment.size > MAX_SIZE {
            return Err(ClientError::Invalid("an attachment is too large".into()));
        }
        Ok(SealedFile {
            key: bytes32(&attachment.key, "key")?,
            size: attachment.size,
            chunk_bytes: attachment.chunk_bytes,
            plaintext_sha256: bytes32(&attachment.plaintext_sha256, "plaintext hash")?,
            ciphertext_sha256: bytes32(&attachment.ciphertext_sha256, "ciphertext hash")?,
        })
    }
}

/// Whether the attachments of a received text are well formed; the reason when not.
pub fn check_attachments(attachments: &[v1::Attachment]) -> Result<(), String> {
    if attachments.len() > MAX_ATTACHMENTS {
        return Err(format!("more than {MAX_ATTACHMENTS} attachments"));
    }
    for attachment in attachments {
        SealedFile::try_from(attachment).map_err(|e| e.to_string())?;
        if attachment.name.len() > MAX_NAME_BYTES
            || attachment.content_type.len() > MAX_CONTENT_TYPE_BYTES
        {
            return Err("an attachment's name or type is too long".into());
        }
    }
    Ok(())
}

/// The attachments a stored payload names (none for anything but a text).
pub fn attachments_of(payload: &[u8]) -> Vec<v1::Attachment> {
    match v1::AppPayload::decode(payload).map(|p| p.body) {
        Ok(Some(v1::app_payload::Body::Text(text))) => text.attachments,
        _ => Vec::new(),
    }
}

/// A name safe to create in a directory: the last component only, no control characters, no
/// leading dots (so never `..` nor a hidden file).
pub fn safe_file_name(path: &Path) -> String {
    let raw = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let cleaned: String = raw
        .chars()
        .filter(|c| !c.is_control() && *c != '/' && *c != '\\')
        .collect();
    let cleaned = cleaned.trim().trim_start_matches('.').to_owned();
    let mut name = if cleaned.is_empty() {
        "attachment".to_owned()
    } else {
        cleaned
    };
    while name.len() > MAX_NAME_BYTES {
        name.pop();
    }
    name
}

/// A media type from the file's extension; `application/octet-stream` when unknown.
pub fn content_type_for(name: &str) -> &'static str {
    let extension = name
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match extension.as_str() {
        "jpg" | "jpeg" => "image/jpeg",
        "png" => "image/png",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "heic" => "image/heic",
        "svg" => "image/svg+xml",
        "pdf" => "application/pdf",
        "txt" => "text/plain",
        "md" => "text/markdown",
        "zip" => "application/zip",
        "mp3" => "audio/mpeg",
        "ogg" | "opus" => "audio/ogg",
        "m4a" => "audio/mp4",
        "mp4" => "video/mp4",
        "webm" => "video/webm",
        "mov" => "video/quicktime",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn received_names_cannot_leave_the_directory() {
        assert_eq!(safe_file_name(Path::new("../../etc/passwd")), "passwd");
        assert_eq!(safe_file_name(Path::new("..")), "attachment");
        assert_eq!(safe_file_name(Path::new(".bashrc")), "bashrc");
        assert_eq!(safe_file_name(Path::new("a\nb\u{7}.jpg")), "ab.jpg");
        assert_eq!(safe_file_name(Path::new("")), "attachment");
        assert!(safe_file_name(Path::new(&"x".repeat(400))).len() <= MAX_NAME_BYTES);
    }

    #[test]
    fn malformed_attachments_are_refused() {
        let good = v1::Attachment {
            name: "a.jpg".into(),
            content_type: "image/jpeg".into(),
            size: 10,
            key: vec![1; 32],
            chunk_bytes: 65536,
            ciphertext_sha256: vec![2; 32],
            plaintext_sha256: vec![3; 32],
        };
        assert!(check_attachments(std::slice::from_ref(&good)).is_ok());
        let short_key = v1::Attachment {
            key: vec![1; 16],
            ..good.clone()
        };
        assert!(check_attachments(&[short_key]).is_err());
        let no_chunks = v1::Attachment {
            chunk_bytes: 0,
            ..good.clone()
        };
        assert!(check_attachments(&[no_chunks]).is_err());
        assert!(check_attachments(&vec![good; MAX_ATTACHMENTS + 1]).is_err());
        assert_eq!(content_type_for("Photo.JPG"), "image/jpeg");
        assert_eq!(content_type_for("noext"), "application/octet-stream");
    }
}
