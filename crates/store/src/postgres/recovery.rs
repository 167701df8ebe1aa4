//! Recovery on PostgreSQL: the newest GroupInfo of each group (`group_infos`), for a restored
//! device's external joins; encrypted backups (`backups`, over blobs that never expire); and
//! devices a restore adds.

use parley_protocol::{DeviceId, GroupId, UserId, Username};
use sqlx::{PgPool, Row};

use super::accounts;
use super::links::{self, lock_account};
use super::sql::{id, sql_error, transaction, Tx};
use crate::model::*;
use crate::{StoreError, StoreResult};

pub(super) const MIGRATION_8: &str = r#"
-- Recovery: the GroupInfo a restored device joins from, and the account's backups.
CREATE TABLE group_infos (
    group_id    BYTEA PRIMARY KEY REFERENCES groups(id),
    epoch       BIGINT NOT NULL,
    group_info  BYTEA NOT NULL
);
CREATE TABLE backups (
    blob_id     BYTEA PRIMARY KEY REFERENCES blobs(id),
    owner       BYTEA NOT NULL REFERENCES users(id),
    backup_id   BYTEA NOT NULL,
    created_at  BIGINT NOT NULL
);
CREATE INDEX backups_owner ON backups(owner, created_at);
-- What a restore must match, per backup id, and which device set it.
CREATE TABLE restore_verifiers (
    owner       BYTEA NOT NULL REFERENCES users(id),
    backup_id   BYTEA NOT NULL,
    verifier    BYTEA NOT NULL,
    set_by      BYTEA NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (owner, backup_id)
);
CREATE INDEX restore_verifiers_setter ON restore_verifiers(set_by);
"#;

/// Deletes backups with their blobs.
async fn delete_backup_blobs(tx: &mut Tx<'_>, blobs: &[Vec<u8>]) -> StoreResult<()> {
    for statement in [
        "DELETE FROM backups WHERE blob_id = ANY($1)",
        "DELETE FROM blob_chunks WHERE blob_id = ANY($1)",
        "DELETE FROM blobs WHERE id = ANY($1)",
    ] {
        sqlx::query(statement)
            .bind(blobs)
            .execute(&mut **tx)
            .await
            .map_err(sql_error)?;
    }
    Ok(())
}

/// A backup's blob is kept until a newer backup replaces it.
const NEVER: Millis = i64::MAX;

pub(super) async fn put_group_info(
    pool: &PgPool,
    group: GroupId,
    epoch: u64,
    info: Vec<u8>,
) -> StoreResult<bool> {
    transaction!(pool, |tx| {
        let current: Option<i64> =
            sqlx::query_scalar("SELECT epoch FROM groups WHERE id = $1 FOR SHARE")
                .bind(id(group.as_bytes()))
                .fetch_optional(&mut *tx)
                .await
                .map_err(sql_error)?;
        if current != Some(epoch as i64) {
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO group_infos (group_id, epoch, group_info) VALUES ($1, $2, $3)
             ON CONFLICT (group_id) DO UPDATE SET epoch = excluded.epoch,
                                                  group_info = excluded.group_info",
        )
        .bind(id(group.as_bytes()))
        .bind(epoch as i64)
        .bind(&info)
        .execute(&mut *tx)
        .await
        .map_err(sql_error)?;
        Ok(true)
    })
}

pub(super) async fn group_info(
    pool: &PgPool,
    group: GroupId,
) -> StoreResult<Option<StoredGroupInfo>> {
    let row = sqlx::query("SELECT epoch, group_info FROM group_infos WHERE group_id = $1")
        .bind(id(group.as_bytes()))
        .fetch_optional(pool)
        .await
        .map_err(sql_error)?;
    row.map(|row| {
        Ok(StoredGroupInfo {
            epoch: row.try_get::<i64, _>(0).map_err(sql_error)? as u64,
            group_info: row.try_get(1).map_err(sql_error)?,
        })
    })
    .transpose()
}

pub(super) async fn account_in_group(
    pool: &PgPool,
    group: GroupId,
    user: UserId,
) -> StoreResult<bool> {
    sqlx::query_scalar(
        "SELECT EXISTS(SELECT 1 FROM group_members m JOIN devices d ON d.id = m.device_id
                       WHERE m.group_id = $1 AND d.user_id = $2)",
    )
    .bind(id(group.as_bytes()))
    .bind(id(user.as_bytes()))
    .fetch_one(pool)
    .await
    .map_err(sql_error)
}

pub(super) async fn register_backup(pool: &PgPool, backup: NewBackup) -> StoreResult<()> {
    transaction!(pool, |tx| {
        lock_account(&mut tx, backup.owner).await?;
        let row = sqlx::query(
            "SELECT sealed FROM blobs WHERE id = $1 AND owner = $2 AND reader IS NULL
             AND expires_at > $3 FOR UPDATE",
        )
        .bind(&backup.blob_id)
        .bind(id(backup.owner.as_bytes()))
        .bind(backup.now)
        .fetch_optional(&mut *tx)
        .await
        .map_err(sql_error)?
        .ok_or(StoreError::UnknownBlob)?;
        if !row.try_get::<bool, _>(0).map_err(sql_error)? {
            return Err(StoreError::BlobState("only a sealed blob can be a backup"));
        }
        let kept: Option<Vec<u8>> = sqlx::query_scalar(
            "SELECT verifier FROM restore_verifiers WHERE owner = $1 AND backup_id = $2",
        )
        .bind(id(backup.owner.as_bytes()))
        .bind(&backup.backup_id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(sql_error)?;
        match kept {
            Some(kept) if kept != backup.restore_verifier => {
                return Err(StoreError::VerifierMismatch)
            }
            Some(_) => {}
            None => {
                let keys: i64 =
                    sqlx::query_scalar("SELECT COUNT(*) FROM restore_verifiers WHERE owner = $1")
                        .bind(id(backup.owner.as_bytes()))
                        .fetch_one(&mut *tx)
                        .await
                        .map_err(sql_error)?;
                if keys >= i64::from(crate::MAX_RECOVERY_KEYS) {
                    return Err(StoreError::TooManyRecoveryKeys);
                }
                sqlx::query(
                    "INSERT INTO restore_verifiers (owner, backup_id, verifier, set_by, created_at)
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(id(backup.owner.as_bytes()))
                .bind(&backup.backup_id)
                .bind(&backup.restore_verifier)
                .bind(id(backup.set_by.as_bytes()))
                .bind(backup.now)
                .execute(&mut *tx)
                .await
                .map_err(sql_error)?;
            }
        }
        sqlx::query(
            "INSERT INTO backups (blob_id, owner, backup_id, created_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (blob_id) DO NOTHING",
        )
        .bind(&backup.blob_id)
        .bind(id(backup.owner.as_bytes()))
        .bind(&backup.backup_id)
        .bind(backup.now)
        .execute(&mut *tx)
        .await
        .map_err(sql_error)?;
        sqlx::query("UPDATE blobs SET expires_at = $2 WHERE id = $1")
            .bind(&backup.blob_id)
            .bind(NEVER)
            .execute(&mut *tx)
            .await
            .map_err(sql_error)?;
        let older: Vec<Vec<u8>> = sqlx::query_scalar(
            "SELECT blob_id FROM backups WHERE owner = $1 AND backup_id = $2
             ORDER BY created_at DESC, blob_id DESC OFFSET $3",
        )
        .bind(id(backup.owner.as_bytes()))
        .bind(&backup.backup_id)
        .bind(backup.keep as i64)
        .fetch_all(&mut *tx)
        .await
        .map_err(sql_error)?;
        delete_backup_blobs(&mut tx, &older).await?;
        Ok(())
    })
}

async fn backup_records(
    pool: &PgPool,
    rows: Vec<sqlx::postgres::PgRow>,
) -> StoreResult<Vec<BackupRecord>> {
    let mut records = Vec::with_capacity(rows.len());
    for row in rows {
        let blob_id: Vec<u8> = row.try_get(0).map_err(sql_error)?;
        if let Some(blob) = links::blob(pool, &blob_id, 0).await? {
            records.push(BackupRecord {
                backup_id: row.try_get(1).map_err(sql_error)?,
                created_at: row.try_get(2).map_err(sql_error)?,
                blob,
            });
        }
    }
    Ok(records)
}

pub(super) async fn latest_backup(
    pool: &PgPool,
    username: &Username,
    backup_id: &[u8],
) -> StoreResult<Option<BackupRecord>> {
    let rows = sqlx::query(
        "SELECT b.blob_id, b.backup_id, b.created_at FROM backups b JOIN users u ON u.id = b.owner
         WHERE u.username = $1 AND b.backup_id = $2
         ORDER BY b.created_at DESC, b.blob_id DESC LIMIT 1",
    )
    .bind(username.as_str())
    .bind(backup_id)
    .fetch_all(pool)
    .await
    .map_err(sql_error)?;
    Ok(backup_records(pool, rows).await?.pop())
}

pub(super) async fn backups(pool: &PgPool, user: UserId) -> StoreResult<Vec<BackupRecord>> {
    let rows = sqlx::query(
        "SELECT blob_id, backup_id, created_at FROM backups WHERE owner = $1
         ORDER BY created_at DESC, blob_id DESC",
    )
    .bind(id(user.as_bytes()))
    .fetch_all(pool)
    .await
    .map_err(sql_error)?;
    backup_records(pool, rows).await
}

pub(super) async fn restore_verifier(
    pool: &PgPool,
    user: UserId,
    backup_id: &[u8],
) -> StoreResult<Option<Vec<u8>>> {
    sqlx::query_scalar("SELECT verifier FROM restore_verifiers WHERE owner = $1 AND backup_id = $2")
        .bind(id(user.as_bytes()))
        .bind(backup_id)
        .fetch_optional(pool)
        .await
        .map_err(sql_error)
}

/// A revoked device's restore verifiers go, with the backups under them: it may know their
/// recovery key.
pub(super) async fn forget_restores_set_by(tx: &mut Tx<'_>, device: DeviceId) -> StoreResult<()> {
    let blobs: Vec<Vec<u8>> = sqlx::query_scalar(
        "SELECT b.blob_id FROM backups b JOIN restore_verifiers v
             ON v.owner = b.owner AND v.backup_id = b.backup_id
         WHERE v.set_by = $1",
    )
    .bind(id(device.as_bytes()))
    .fetch_all(&mut **tx)
    .await
    .map_err(sql_error)?;
    delete_backup_blobs(tx, &blobs).await?;
    sqlx::query("DELETE FROM restore_verifiers WHERE set_by = $1")
        .bind(id(device.as_bytes()))
        .execute(&mut **tx)
        .await
        .map_err(sql_error)?;
    Ok(())
}

pub(super) async fn add_restored_device(
    pool: &PgPool,
    device: RestoredDevice,
) -> StoreResult<parley_protocol::DeviceId> {
    transaction!(pool, |tx| {
        lock_account(&mut tx, device.user_id).await?;
        let devices: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM devices WHERE user_id = $1 AND revoked_at IS NULL",
        )
        .bind(id(device.user_id.as_bytes()))
        .fetch_one(&mut *tx)
        .await
        .map_err(sql_error)?;
        if devices as u64 >= device.max_devices as u64 {
            return Err(StoreError::TooManyDevices);
        }
        accounts::check_device_unused(&mut tx, device.device_id, &device.signature_key).await?;
        sqlx::query(
            "INSERT INTO devices (id, user_id, signature_key, created_at, last_seen)
             VALUES ($1, $2, $3, $4, $4)",
        )
        .bind(id(device.device_id.as_bytes()))
        .bind(id(device.user_id.as_bytes()))
        .bind(&device.signature_key)
        .bind(device.now)
        .execute(&mut *tx)
        .await
        .map_err(sql_error)?;
        Ok(device.device_id)
    })
}
