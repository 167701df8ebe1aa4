//! Recovery on SQLite: the newest GroupInfo of each group (`group_infos`), for a restored
//! device's external joins; encrypted backups (`backups`, over blobs that never expire); and
//! devices a restore adds.

use parley_protocol::{DeviceId, GroupId, UserId, Username};
use rusqlite::{params, Connection, OptionalExtension, Transaction};

use super::sql::{blob, query_one};
use super::{accounts, links};
use crate::model::*;
use crate::{StoreError, StoreResult};

pub(super) const MIGRATION_10: &str = r#"
-- Recovery: the GroupInfo a restored device joins from, and the account's backups.
CREATE TABLE group_infos (
    group_id    BLOB PRIMARY KEY REFERENCES groups(id),
    epoch       INTEGER NOT NULL,
    group_info  BLOB NOT NULL
);
CREATE TABLE backups (
    blob_id     BLOB PRIMARY KEY REFERENCES blobs(id),
    owner       BLOB NOT NULL REFERENCES users(id),
    backup_id   BLOB NOT NULL,
    created_at  INTEGER NOT NULL
);
CREATE INDEX backups_owner ON backups(owner, created_at);
-- What a restore must match, per backup id, and which device set it.
CREATE TABLE restore_verifiers (
    owner       BLOB NOT NULL REFERENCES users(id),
    backup_id   BLOB NOT NULL,
    verifier    BLOB NOT NULL,
    set_by      BLOB NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (owner, backup_id)
);
CREATE INDEX restore_verifiers_setter ON restore_verifiers(set_by);
"#;

/// A backup's blob is kept until a newer backup replaces it.
const NEVER: Millis = i64::MAX;

pub(super) fn put_group_info(
    tx: &Transaction<'_>,
    group: GroupId,
    epoch: u64,
    info: Vec<u8>,
) -> StoreResult<bool> {
    let current: Option<i64> = tx
        .query_row(
            "SELECT epoch FROM groups WHERE id = ?1",
            params![blob(group.as_bytes())],
            |row| row.get(0),
        )
        .optional()?;
    if current != Some(epoch as i64) {
        return Ok(false);
    }
    tx.execute(
        "INSERT INTO group_infos (group_id, epoch, group_info) VALUES (?1, ?2, ?3)
         ON CONFLICT (group_id) DO UPDATE SET epoch = excluded.epoch, group_info = excluded.group_info",
        params![blob(group.as_bytes()), epoch as i64, info],
    )?;
    Ok(true)
}

pub(super) fn group_info(
    conn: &Connection,
    group: GroupId,
) -> StoreResult<Option<StoredGroupInfo>> {
    Ok(conn
        .query_row(
            "SELECT epoch, group_info FROM group_infos WHERE group_id = ?1",
            params![blob(group.as_bytes())],
            |row| {
                Ok(StoredGroupInfo {
                    epoch: row.get::<_, i64>(0)? as u64,
                    group_info: row.get(1)?,
                })
            },
        )
        .optional()?)
}

pub(super) fn account_in_group(
    conn: &Connection,
    group: GroupId,
    user: UserId,
) -> StoreResult<bool> {
    Ok(query_one(
        conn,
        "SELECT EXISTS(SELECT 1 FROM group_members m JOIN devices d ON d.id = m.device_id
                       WHERE m.group_id = ?1 AND d.user_id = ?2)",
        params![blob(group.as_bytes()), blob(user.as_bytes())],
        |row| row.get(0),
    )?)
}

pub(super) fn register_backup(tx: &Transaction<'_>, backup: NewBackup) -> StoreResult<()> {
    let sealed = links::blob_record(tx, &backup.blob_id, backup.now)?
        .filter(|b| b.owner == backup.owner && b.reader.is_none())
        .ok_or(StoreError::UnknownBlob)?
        .sealed;
    if !sealed {
        return Err(StoreError::BlobState("only a sealed blob can be a backup"));
    }
    let verifier: Option<Vec<u8>> = tx
        .query_row(
            "SELECT verifier FROM restore_verifiers WHERE owner = ?1 AND backup_id = ?2",
            params![blob(backup.owner.as_bytes()), backup.backup_id],
            |row| row.get(0),
        )
        .optional()?;
    match verifier {
        Some(kept) if kept != backup.restore_verifier => return Err(StoreError::VerifierMismatch),
        Some(_) => {}
        None => {
            let keys: u32 = query_one(
                tx,
                "SELECT COUNT(*) FROM restore_verifiers WHERE owner = ?1",
                params![blob(backup.owner.as_bytes())],
                |row| row.get(0),
            )?;
            if keys >= crate::MAX_RECOVERY_KEYS {
                return Err(StoreError::TooManyRecoveryKeys);
            }
            tx.execute(
                "INSERT INTO restore_verifiers (owner, backup_id, verifier, set_by, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    blob(backup.owner.as_bytes()),
                    backup.backup_id,
                    backup.restore_verifier,
                    blob(backup.set_by.as_bytes()),
                    backup.now
                ],
            )?;
        }
    }
    tx.execute(
        "INSERT INTO backups (blob_id, owner, backup_id, created_at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (blob_id) DO NOTHING",
        params![
            backup.blob_id,
            blob(backup.owner.as_bytes()),
            backup.backup_id,
            backup.now
        ],
    )?;
    tx.execute(
        "UPDATE blobs SET expires_at = ?2 WHERE id = ?1",
        params![backup.blob_id, NEVER],
    )?;
    let older: Vec<Vec<u8>> = tx
        .prepare(
            "SELECT blob_id FROM backups WHERE owner = ?1 AND backup_id = ?2
             ORDER BY created_at DESC, blob_id DESC LIMIT -1 OFFSET ?3",
        )?
        .query_map(
            params![blob(backup.owner.as_bytes()), backup.backup_id, backup.keep],
            |row| row.get(0),
        )?
        .collect::<Result<_, _>>()?;
    for blob_id in older {
        links::delete_blob(tx, &blob_id)?;
    }
    Ok(())
}

fn backup_records(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> StoreResult<Vec<BackupRecord>> {
    let rows: Vec<(Vec<u8>, Vec<u8>, Millis)> = conn
        .prepare(sql)?
        .query_map(params, |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?
        .collect::<Result<_, _>>()?;
    let mut records = Vec::with_capacity(rows.len());
    for (blob_id, backup_id, created_at) in rows {
        if let Some(blob) = links::blob_record(conn, &blob_id, 0)? {
            records.push(BackupRecord {
                backup_id,
                created_at,
                blob,
            });
        }
    }
    Ok(records)
}

pub(super) fn latest_backup(
    conn: &Connection,
    username: &Username,
    backup_id: &[u8],
) -> StoreResult<Option<BackupRecord>> {
    Ok(backup_records(
        conn,
        "SELECT b.blob_id, b.backup_id, b.created_at FROM backups b JOIN users u ON u.id = b.owner
         WHERE u.username = ?1 AND b.backup_id = ?2 ORDER BY b.created_at DESC, b.blob_id DESC LIMIT 1",
        params![username.as_str(), backup_id],
    )?
    .pop())
}

pub(super) fn backups(conn: &Connection, user: UserId) -> StoreResult<Vec<BackupRecord>> {
    backup_records(
        conn,
        "SELECT blob_id, backup_id, created_at FROM backups WHERE owner = ?1
         ORDER BY created_at DESC, blob_id DESC",
        params![blob(user.as_bytes())],
    )
}

pub(super) fn restore_verifier(
    conn: &Connection,
    user: UserId,
    backup_id: &[u8],
) -> StoreResult<Option<Vec<u8>>> {
    Ok(conn
        .query_row(
            "SELECT verifier FROM restore_verifiers WHERE owner = ?1 AND backup_id = ?2",
            params![blob(user.as_bytes()), backup_id],
            |row| row.get(0),
        )
        .optional()?)
}

/// A revoked device's restore verifiers go, with the backups under them: it may know their
/// recovery key.
pub(super) fn forget_restores_set_by(tx: &Transaction<'_>, device: DeviceId) -> StoreResult<()> {
    let blobs: Vec<Vec<u8>> = tx
        .prepare(
            "SELECT b.blob_id FROM backups b JOIN restore_verifiers v
                 ON v.owner = b.owner AND v.backup_id = b.backup_id
             WHERE v.set_by = ?1",
        )?
        .query_map(params![blob(device.as_bytes())], |row| row.get(0))?
        .collect::<Result<_, _>>()?;
    for blob_id in blobs {
        links::delete_blob(tx, &blob_id)?;
    }
    tx.execute(
        "DELETE FROM restore_verifiers WHERE set_by = ?1",
        params![blob(device.as_bytes())],
    )?;
    Ok(())
}

pub(super) fn add_restored_device(
    tx: &Transaction<'_>,
    device: RestoredDevice,
) -> StoreResult<DeviceRecord> {
    let devices: u32 = query_one(
        tx,
        "SELECT COUNT(*) FROM devices WHERE user_id = ?1 AND revoked_at IS NULL",
        params![blob(device.user_id.as_bytes())],
        |row| row.get(0),
    )?;
    if devices >= device.max_devices {
        return Err(StoreError::TooManyDevices);
    }
    accounts::check_device_unused(tx, device.device_id, &device.signature_key)?;
    tx.execute(
        "INSERT INTO devices (id, user_id, signature_key, created_at, last_seen)
         VALUES (?1, ?2, ?3, ?4, ?4)",
        params![
            blob(device.device_id.as_bytes()),
            blob(device.user_id.as_bytes()),
            device.signature_key,
            device.now
        ],
    )?;
    accounts::device(tx, device.device_id)?
        .ok_or_else(|| StoreError::Backend("the restored device vanished".into()))
}
