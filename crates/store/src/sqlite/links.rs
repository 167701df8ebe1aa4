//! Linking devices on SQLite: the `links` table (a new device's request, then its approval) and
//! blobs (`blobs`, `blob_chunks`): opaque chunked uploads such as history archives.

use parley_protocol::UserId;
use rusqlite::{params, Connection, OptionalExtension, Transaction};

use super::accounts;
use super::sql::{blob, conversion_error, device_id, query_one};
use crate::model::*;
use crate::{StoreError, StoreResult};

pub(super) const MIGRATION_8: &str = r#"
CREATE TABLE links (
    id             BLOB PRIMARY KEY,
    user_id        BLOB NOT NULL REFERENCES users(id),
    device_id      BLOB NOT NULL,
    signature_key  BLOB NOT NULL,
    hpke_key       BLOB NOT NULL,
    mac            BLOB NOT NULL,
    created_at     INTEGER NOT NULL,
    expires_at     INTEGER NOT NULL,
    approved_at    INTEGER,
    archive_blob   BLOB,
    sealed_bundle  BLOB
);
CREATE INDEX links_user ON links(user_id, expires_at);
CREATE INDEX links_expiry ON links(expires_at);
CREATE TABLE blobs (
    id          BLOB PRIMARY KEY,
    owner       BLOB NOT NULL REFERENCES users(id),
    reader      BLOB,
    sealed      INTEGER NOT NULL DEFAULT 0,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL
);
CREATE INDEX blobs_owner ON blobs(owner);
CREATE INDEX blobs_expiry ON blobs(expires_at);
CREATE TABLE blob_chunks (
    blob_id  BLOB NOT NULL REFERENCES blobs(id),
    idx      INTEGER NOT NULL,
    data     BLOB NOT NULL,
    PRIMARY KEY (blob_id, idx)
);
"#;

fn user_id(bytes: Vec<u8>) -> rusqlite::Result<UserId> {
    UserId::from_slice(&bytes).map_err(|e| conversion_error(e.to_string()))
}

pub(super) fn create_link(tx: &Transaction<'_>, link: NewLink) -> StoreResult<()> {
    let waiting: u32 = query_one(
        tx,
        "SELECT COUNT(*) FROM links WHERE user_id = ?1 AND approved_at IS NULL AND expires_at > ?2",
        params![blob(link.user_id.as_bytes()), link.now],
        |row| row.get(0),
    )?;
    if waiting >= link.max_pending {
        return Err(StoreError::TooManyLinks);
    }
    accounts::check_device_unused(tx, link.device_id, &link.signature_key)?;
    tx.execute(
        "INSERT INTO links (id, user_id, device_id, signature_key, hpke_key, mac, created_at,
                            expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            link.link_id,
            blob(link.user_id.as_bytes()),
            blob(link.device_id.as_bytes()),
            link.signature_key,
            link.hpke_key,
            link.mac,
            link.now,
            link.expires_at
        ],
    )?;
    Ok(())
}

pub(super) fn link(
    conn: &Connection,
    link_id: &[u8],
    now: Millis,
) -> StoreResult<Option<LinkRecord>> {
    Ok(conn
        .query_row(
            "SELECT l.id, l.user_id, u.username, l.device_id, l.signature_key, l.hpke_key, l.mac,
                    l.expires_at, l.approved_at, l.archive_blob, l.sealed_bundle
             FROM links l JOIN users u ON u.id = l.user_id
             WHERE l.id = ?1 AND l.expires_at > ?2",
            params![link_id, now],
            |row| {
                let username: String = row.get(2)?;
                Ok(LinkRecord {
                    link_id: row.get(0)?,
                    user_id: user_id(row.get(1)?)?,
                    username: parley_protocol::Username::parse(&username)
                        .map_err(|e| conversion_error(e.to_string()))?,
                    device_id: device_id(row.get(3)?)?,
                    signature_key: row.get(4)?,
                    hpke_key: row.get(5)?,
                    mac: row.get(6)?,
                    expires_at: row.get(7)?,
                    approved_at: row.get(8)?,
                    archive_blob: row.get(9)?,
                    sealed_bundle: row.get(10)?,
                })
            },
        )
        .optional()?)
}

pub(super) fn approve_link(
    tx: &Transaction<'_>,
    approval: LinkApproval,
) -> StoreResult<DeviceRecord> {
    let waiting = link(tx, &approval.link_id, approval.now)?
        .filter(|l| l.approved_at.is_none())
        .ok_or(StoreError::LinkExpired)?;
    let devices: u32 = query_one(
        tx,
        "SELECT COUNT(*) FROM devices WHERE user_id = ?1 AND revoked_at IS NULL",
        params![blob(waiting.user_id.as_bytes())],
        |row| row.get(0),
    )?;
    if devices >= approval.max_devices {
        return Err(StoreError::TooManyDevices);
    }
    accounts::check_device_unused(tx, waiting.device_id, &waiting.signature_key)?;
    tx.execute(
        "INSERT INTO devices (id, user_id, signature_key, created_at, last_seen)
         VALUES (?1, ?2, ?3, ?4, ?4)",
        params![
            blob(waiting.device_id.as_bytes()),
            blob(waiting.user_id.as_bytes()),
            waiting.signature_key,
            approval.now
        ],
    )?;
    tx.execute(
        "UPDATE links SET approved_at = ?2, expires_at = ?3, archive_blob = ?4, sealed_bundle = ?5
         WHERE id = ?1",
        params![
            approval.link_id,
            approval.now,
            approval.kept_until,
            approval.archive_blob,
            approval.sealed_bundle
        ],
    )?;
    accounts::device(tx, waiting.device_id)?
        .ok_or_else(|| StoreError::Backend("the linked device vanished".into()))
}

pub(super) fn create_blob(tx: &Transaction<'_>, new: NewBlob) -> StoreResult<()> {
    let held: u32 = query_one(
        tx,
        "SELECT COUNT(*) FROM blobs WHERE owner = ?1 AND expires_at > ?2",
        params![blob(new.owner.as_bytes()), new.now],
        |row| row.get(0),
    )?;
    if held >= new.max_per_account {
        return Err(StoreError::TooManyBlobs);
    }
    tx.execute(
        "INSERT INTO blobs (id, owner, reader, created_at, updated_at, expires_at)
         VALUES (?1, ?2, ?3, ?4, ?4, ?5)",
        params![
            new.blob_id,
            blob(new.owner.as_bytes()),
            new.reader.map(|d| d.to_vec()),
            new.now,
            new.expires_at
        ],
    )?;
    Ok(())
}

pub(super) fn blob_record(
    conn: &Connection,
    blob_id: &[u8],
    now: Millis,
) -> StoreResult<Option<BlobRecord>> {
    Ok(conn
        .query_row(
            "SELECT b.id, b.owner, b.reader, b.sealed, b.updated_at, b.expires_at,
                    (SELECT COUNT(*) FROM blob_chunks c WHERE c.blob_id = b.id),
                    (SELECT COALESCE(SUM(LENGTH(c.data)), 0) FROM blob_chunks c
                     WHERE c.blob_id = b.id)
             FROM blobs b WHERE b.id = ?1 AND b.expires_at > ?2",
            params![blob_id, now],
            |row| {
                let reader: Option<Vec<u8>> = row.get(2)?;
                Ok(BlobRecord {
                    blob_id: row.get(0)?,
                    owner: user_id(row.get(1)?)?,
                    reader: reader.map(device_id).transpose()?,
                    sealed: row.get(3)?,
                    updated_at: row.get(4)?,
                    expires_at: row.get(5)?,
                    chunks: row.get(6)?,
                    bytes: row.get::<_, i64>(7)? as u64,
                })
            },
        )
        .optional()?)
}

pub(super) fn put_blob_chunk(
    tx: &Transaction<'_>,
    blob_id: &[u8],
    index: u32,
    data: Vec<u8>,
    now: Millis,
) -> StoreResult<()> {
    let record = blob_record(tx, blob_id, now)?.ok_or(StoreError::UnknownBlob)?;
    if record.sealed {
        return Err(StoreError::BlobState("the blob is sealed"));
    }
    tx.execute(
        "INSERT INTO blob_chunks (blob_id, idx, data) VALUES (?1, ?2, ?3)
         ON CONFLICT (blob_id, idx) DO UPDATE SET data = excluded.data",
        params![blob_id, index, data],
    )?;
    tx.execute(
        "UPDATE blobs SET updated_at = ?2 WHERE id = ?1",
        params![blob_id, now],
    )?;
    Ok(())
}

pub(super) fn seal_blob(
    tx: &Transaction<'_>,
    blob_id: &[u8],
    chunks: u32,
    now: Millis,
) -> StoreResult<()> {
    let (present, highest): (u32, Option<u32>) = query_one(
        tx,
        "SELECT COUNT(*), MAX(idx) FROM blob_chunks WHERE blob_id = ?1",
        params![blob_id],
        |row| Ok((row.get(0)?, row.get(1)?)),
    )?;
    if present != chunks || highest.map_or(0, |h| h + 1) != chunks {
        return Err(StoreError::BlobState(
            "the blob does not hold exactly those chunks",
        ));
    }
    let sealed = tx.execute(
        "UPDATE blobs SET sealed = 1 WHERE id = ?1 AND expires_at > ?2",
        params![blob_id, now],
    )?;
    if sealed == 0 {
        return Err(StoreError::UnknownBlob);
    }
    Ok(())
}

pub(super) fn blob_chunk(
    conn: &Connection,
    blob_id: &[u8],
    index: u32,
) -> StoreResult<Option<Vec<u8>>> {
    Ok(conn
        .query_row(
            "SELECT data FROM blob_chunks WHERE blob_id = ?1 AND idx = ?2",
            params![blob_id, index],
            |row| row.get(0),
        )
        .optional()?)
}

pub(super) fn delete_blob(tx: &Transaction<'_>, blob_id: &[u8]) -> StoreResult<()> {
    tx.execute("DELETE FROM backups WHERE blob_id = ?1", params![blob_id])?;
    tx.execute(
        "DELETE FROM blob_chunks WHERE blob_id = ?1",
        params![blob_id],
    )?;
    tx.execute("DELETE FROM blobs WHERE id = ?1", params![blob_id])?;
    Ok(())
}

pub(super) fn expire_links_and_blobs(tx: &Transaction<'_>, now: Millis) -> StoreResult<u64> {
    let links = tx.execute("DELETE FROM links WHERE expires_at <= ?1", params![now])?;
    tx.execute(
        "DELETE FROM blob_chunks WHERE blob_id IN (SELECT id FROM blobs WHERE expires_at <= ?1)",
        params![now],
    )?;
    let blobs = tx.execute("DELETE FROM blobs WHERE expires_at <= ?1", params![now])?;
    Ok((links + blobs) as u64)
}
