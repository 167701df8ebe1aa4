//! Attachments in the client's database: files whose upload is under way (`outgoing_files`:
//! the message naming one is sent once its ciphertext is on the server, and an interrupted
//! upload resumes at the next sync), and the one key each ciphertext opens with
//! (`attachment_keys`: a second message naming the same ciphertext under another key is
//! refused, see `attachments`).

use parley_protocol::v1;
use prost::Message;
use rusqlite::{params, Connection, OptionalExtension};
use sha2::{Digest, Sha256};

use crate::error::ClientError;

#[derive(Debug, Clone)]
pub struct OutgoingFile {
    pub group_id: Vec<u8>,
    pub sealed_path: String,
    pub attachment: v1::Attachment,
    pub caption: String,
    pub reply_to: Option<Vec<u8>>,
    pub created_at: i64,
}

pub fn insert_outgoing_file(conn: &Connection, file: &OutgoingFile) -> Result<(), ClientError> {
    conn.execute(
        "INSERT INTO outgoing_files (ciphertext_sha256, group_id, sealed_path, attachment,
                                     caption, reply_to, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            file.attachment.ciphertext_sha256,
            file.group_id,
            file.sealed_path,
            file.attachment.encode_to_vec(),
            file.caption,
            file.reply_to,
            file.created_at
        ],
    )?;
    Ok(())
}

pub fn outgoing_files(conn: &Connection) -> Result<Vec<OutgoingFile>, ClientError> {
    let mut statement = conn.prepare(
        "SELECT group_id, sealed_path, attachment, caption, reply_to, created_at
         FROM outgoing_files ORDER BY created_at",
    )?;
    let rows = statement
        .query_map([], |row| {
            Ok((
                row.get::<_, Vec<u8>>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, Vec<u8>>(2)?,
                row.get::<_, String>(3)?,
                row.get::<_, Option<Vec<u8>>>(4)?,
                row.get::<_, i64>(5)?,
            ))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    rows.into_iter()
        .map(
            |(group_id, sealed_path, attachment, caption, reply_to, created_at)| {
                Ok(OutgoingFile {
                    group_id,
                    sealed_path,
                    attachment: v1::Attachment::decode(attachment.as_slice()).map_err(|e| {
                        ClientError::Protocol(format!("a stored upload does not parse: {e}"))
                    })?,
                    caption,
                    reply_to,
                    created_at,
                })
            },
        )
        .collect()
}

pub fn delete_outgoing_file(
    conn: &Connection,
    ciphertext_sha256: &[u8],
) -> Result<(), ClientError> {
    conn.execute(
        "DELETE FROM outgoing_files WHERE ciphertext_sha256 = ?1",
        params![ciphertext_sha256],
    )?;
    Ok(())
}

/// What one ciphertext must always open as.
fn binding(attachment: &v1::Attachment) -> Vec<u8> {
    let mut hash = Sha256::new();
    hash.update(b"parley/v1/attachment-binding\0");
    hash.update(&attachment.key);
    hash.update(&attachment.plaintext_sha256);
    hash.update(attachment.size.to_be_bytes());
    hash.update(attachment.chunk_bytes.to_be_bytes());
    hash.finalize().to_vec()
}

/// Records the key a ciphertext opens with; false when it is known with another one (the
/// message naming it now is refused).
pub fn bind_attachment_key(
    conn: &Connection,
    attachment: &v1::Attachment,
) -> Result<bool, ClientError> {
    let wanted = binding(attachment);
    let known: Option<Vec<u8>> = conn
        .query_row(
            "SELECT binding FROM attachment_keys WHERE ciphertext_sha256 = ?1",
            params![attachment.ciphertext_sha256],
            |row| row.get(0),
        )
        .optional()?;
    match known {
        Some(known) => Ok(known == wanted),
        None => {
            conn.execute(
                "INSERT INTO attachment_keys (ciphertext_sha256, binding) VALUES (?1, ?2)",
                params![attachment.ciphertext_sha256, wanted],
            )?;
            Ok(true)
        }
    }
}
