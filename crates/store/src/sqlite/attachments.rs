//! Attachment records on SQLite: `attachments` (an encrypted file's hash, size, owner, group,
//! upload progress and expiry) and `attachment_recipients` (the devices that have yet to fetch
//! it). The ciphertext itself lives in the server's object store, never here.

use parley_protocol::{DeviceId, GroupId, UserId};
use rusqlite::{params, Connection, OptionalExtension, Row, Transaction};

use super::sql::{blob, conversion_error, device_id, exec, query_one};
use crate::model::*;
use crate::{StoreError, StoreResult};

pub(super) const MIGRATION_12: &str = r#"
CREATE TABLE attachments (
    hash        BLOB PRIMARY KEY,
    size        INTEGER NOT NULL,
    uploader    BLOB NOT NULL,
    user_id     BLOB NOT NULL,
    group_id    BLOB NOT NULL,
    received    INTEGER NOT NULL DEFAULT 0,
    complete    INTEGER NOT NULL DEFAULT 0,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL
);
CREATE INDEX attachments_user ON attachments(user_id);
CREATE INDEX attachments_expiry ON attachments(expires_at);
CREATE TABLE attachment_recipients (
    hash       BLOB NOT NULL,
    device_id  BLOB NOT NULL,
    PRIMARY KEY (hash, device_id)
) WITHOUT ROWID;
"#;

const COLUMNS: &str =
    "hash, size, uploader, user_id, group_id, received, complete, created_at, expires_at";

fn record(row: &Row<'_>) -> rusqlite::Result<AttachmentRecord> {
    let user: Vec<u8> = row.get(3)?;
    let group: Vec<u8> = row.get(4)?;
    Ok(AttachmentRecord {
        hash: row.get(0)?,
        size: row.get::<_, i64>(1)? as u64,
        uploader: device_id(row.get(2)?)?,
        owner: UserId::from_slice(&user).map_err(|e| conversion_error(e.to_string()))?,
        group: GroupId::from_slice(&group).map_err(|e| conversion_error(e.to_string()))?,
        received: row.get::<_, i64>(5)? as u64,
        complete: row.get(6)?,
        created_at: row.get(7)?,
        expires_at: row.get(8)?,
    })
}

pub(super) fn attachment(conn: &Connection, hash: &[u8]) -> StoreResult<Option<AttachmentRecord>> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM attachments WHERE hash = ?1"
        ))?
        .query_row(params![hash], record)
        .optional()?)
}

pub(super) fn create_attachment(
    tx: &Transaction<'_>,
    new: NewAttachment,
) -> StoreResult<AttachmentRecord> {
    let member: Option<Vec<u8>> = tx
        .prepare_cached(
            "SELECT d.user_id FROM group_members m JOIN devices d ON d.id = m.device_id
             WHERE m.group_id = ?1 AND m.device_id = ?2 AND d.revoked_at IS NULL",
        )?
        .query_row(
            params![blob(new.group.as_bytes()), blob(new.uploader.as_bytes())],
            |row| row.get(0),
        )
        .optional()?;
    let Some(user) = member else {
        return Err(StoreError::NotMember);
    };
    if let Some(existing) = attachment(tx, &new.hash)? {
        if existing.owner.as_bytes()[..] == user[..] && existing.group == new.group {
            return Ok(existing);
        }
        return Err(StoreError::AttachmentTaken);
    }
    let used: i64 = query_one(
        tx,
        "SELECT COALESCE(SUM(size), 0) FROM attachments WHERE user_id = ?1",
        params![user],
        |row| row.get(0),
    )?;
    if used as u64 + new.size > new.quota_bytes {
        return Err(StoreError::QuotaExceeded);
    }
    exec(
        tx,
        "INSERT INTO attachments (hash, size, uploader, user_id, group_id, created_at, expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            new.hash,
            new.size as i64,
            blob(new.uploader.as_bytes()),
            user,
            blob(new.group.as_bytes()),
            new.now,
            new.expires_at
        ],
    )?;
    attachment(tx, &new.hash)?.ok_or_else(|| StoreError::Backend("attachment vanished".into()))
}

pub(super) fn advance_attachment(
    tx: &Transaction<'_>,
    hash: &[u8],
    from: u64,
    to: u64,
    complete: bool,
) -> StoreResult<bool> {
    let moved = exec(
        tx,
        "UPDATE attachments SET received = ?3, complete = ?4
         WHERE hash = ?1 AND received = ?2 AND complete = 0",
        params![hash, from as i64, to as i64, complete],
    )?;
    if moved == 1 && complete {
        exec(
            tx,
            "INSERT INTO attachment_recipients (hash, device_id)
             SELECT a.hash, m.device_id FROM attachments a
             JOIN group_members m ON m.group_id = a.group_id
             WHERE a.hash = ?1 AND m.device_id != a.uploader",
            params![hash],
        )?;
    }
    Ok(moved == 1)
}

pub(super) fn attachment_fetched(
    tx: &Transaction<'_>,
    hash: &[u8],
    device: DeviceId,
) -> StoreResult<bool> {
    let removed = exec(
        tx,
        "DELETE FROM attachment_recipients WHERE hash = ?1 AND device_id = ?2",
        params![hash, blob(device.as_bytes())],
    )?;
    if removed == 0 {
        return Ok(false);
    }
    let waiting: bool = query_one(
        tx,
        "SELECT EXISTS(SELECT 1 FROM attachment_recipients WHERE hash = ?1)",
        params![hash],
        |row| row.get(0),
    )?;
    if waiting {
        return Ok(false);
    }
    delete_attachment(tx, hash)?;
    Ok(true)
}

pub(super) fn delete_attachment(tx: &Transaction<'_>, hash: &[u8]) -> StoreResult<()> {
    exec(
        tx,
        "DELETE FROM attachment_recipients WHERE hash = ?1",
        params![hash],
    )?;
    exec(tx, "DELETE FROM attachments WHERE hash = ?1", params![hash])?;
    Ok(())
}

pub(super) fn expire_attachments(
    tx: &Transaction<'_>,
    now: Millis,
    incomplete_before: Millis,
) -> StoreResult<Vec<Vec<u8>>> {
    let hashes = tx
        .prepare_cached(
            "SELECT hash FROM attachments
             WHERE expires_at <= ?1 OR (complete = 0 AND created_at < ?2)",
        )?
        .query_map(params![now, incomplete_before], |row| row.get(0))?
        .collect::<rusqlite::Result<Vec<Vec<u8>>>>()?;
    for hash in &hashes {
        delete_attachment(tx, hash)?;
    }
    Ok(hashes)
}
