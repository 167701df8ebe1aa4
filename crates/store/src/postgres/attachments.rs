//! Attachment records on PostgreSQL: `attachments` (an encrypted file's hash, size, owner,
//! group, upload progress and expiry) and `attachment_recipients` (the devices that have yet to
//! fetch it). The ciphertext itself lives in the object store, never here.
//!
//! The quota is counted with the account's `users` row locked, so that nodes racing for the
//! last bytes of it cannot both take them.

use parley_protocol::{DeviceId, UserId};
use sqlx::{PgPool, Row};

use super::links::lock_account;
use super::sql::{device_id, group_id, id, sql_error, transaction, Tx};
use crate::model::*;
use crate::{StoreError, StoreResult};

pub(super) const MIGRATION_10: &str = r#"
CREATE TABLE attachments (
    hash        BYTEA PRIMARY KEY,
    size        BIGINT NOT NULL,
    uploader    BYTEA NOT NULL,
    user_id     BYTEA NOT NULL,
    group_id    BYTEA NOT NULL,
    received    BIGINT NOT NULL DEFAULT 0,
    complete    BOOLEAN NOT NULL DEFAULT FALSE,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL
);
CREATE INDEX attachments_user ON attachments(user_id);
CREATE INDEX attachments_expiry ON attachments(expires_at);
CREATE TABLE attachment_recipients (
    hash       BYTEA NOT NULL,
    device_id  BYTEA NOT NULL,
    PRIMARY KEY (hash, device_id)
);
"#;

const COLUMNS: &str =
    "hash, size, uploader, user_id, group_id, received, complete, created_at, expires_at";

fn record(row: &sqlx::postgres::PgRow) -> StoreResult<AttachmentRecord> {
    let user: Vec<u8> = row.try_get(3).map_err(sql_error)?;
    Ok(AttachmentRecord {
        hash: row.try_get(0).map_err(sql_error)?,
        size: row.try_get::<i64, _>(1).map_err(sql_error)? as u64,
        uploader: device_id(row.try_get(2).map_err(sql_error)?)?,
        owner: UserId::from_slice(&user).map_err(|e| StoreError::Backend(e.to_string()))?,
        group: group_id(row.try_get(4).map_err(sql_error)?)?,
        received: row.try_get::<i64, _>(5).map_err(sql_error)? as u64,
        complete: row.try_get(6).map_err(sql_error)?,
        created_at: row.try_get(7).map_err(sql_error)?,
        expires_at: row.try_get(8).map_err(sql_error)?,
    })
}

async fn find(
    executor: impl sqlx::PgExecutor<'_>,
    hash: &[u8],
) -> StoreResult<Option<AttachmentRecord>> {
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM attachments WHERE hash = $1"
    ))
    .bind(hash)
    .fetch_optional(executor)
    .await
    .map_err(sql_error)?;
    row.as_ref().map(record).transpose()
}

pub(super) async fn attachment(
    pool: &PgPool,
    hash: &[u8],
) -> StoreResult<Option<AttachmentRecord>> {
    find(pool, hash).await
}

pub(super) async fn create_attachment(
    pool: &PgPool,
    new: NewAttachment,
) -> StoreResult<AttachmentRecord> {
    transaction!(pool, |tx| {
        let member: Option<Vec<u8>> = sqlx::query_scalar(
            "SELECT d.user_id FROM group_members m JOIN devices d ON d.id = m.device_id
             WHERE m.group_id = $1 AND m.device_id = $2 AND d.revoked_at IS NULL",
        )
        .bind(id(new.group.as_bytes()))
        .bind(id(new.uploader.as_bytes()))
        .fetch_optional(&mut *tx)
        .await
        .map_err(sql_error)?;
        let Some(user) = member else {
            return Err(StoreError::NotMember);
        };
        let user = UserId::from_slice(&user).map_err(|e| StoreError::Backend(e.to_string()))?;
        lock_account(&mut tx, user).await?;
        create_locked(&mut tx, &new, user).await
    })
}

async fn create_locked(
    tx: &mut Tx<'_>,
    new: &NewAttachment,
    user: UserId,
) -> StoreResult<AttachmentRecord> {
    if let Some(existing) = find(&mut **tx, &new.hash).await? {
        if existing.owner == user && existing.group == new.group {
            return Ok(existing);
        }
        return Err(StoreError::AttachmentTaken);
    }
    let used: i64 = sqlx::query_scalar(
        "SELECT COALESCE(SUM(size), 0)::BIGINT FROM attachments WHERE user_id = $1",
    )
    .bind(id(user.as_bytes()))
    .fetch_one(&mut **tx)
    .await
    .map_err(sql_error)?;
    if used as u64 + new.size > new.quota_bytes {
        return Err(StoreError::QuotaExceeded);
    }
    sqlx::query(
        "INSERT INTO attachments (hash, size, uploader, user_id, group_id, created_at, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&new.hash)
    .bind(new.size as i64)
    .bind(id(new.uploader.as_bytes()))
    .bind(id(user.as_bytes()))
    .bind(id(new.group.as_bytes()))
    .bind(new.now)
    .bind(new.expires_at)
    .execute(&mut **tx)
    .await
    .map_err(sql_error)?;
    find(&mut **tx, &new.hash)
        .await?
        .ok_or_else(|| StoreError::Backend("attachment vanished".into()))
}

pub(super) async fn advance_attachment(
    pool: &PgPool,
    hash: &[u8],
    from: u64,
    to: u64,
    complete: bool,
) -> StoreResult<bool> {
    transaction!(pool, |tx| {
        let moved = sqlx::query(
            "UPDATE attachments SET received = $3, complete = $4
             WHERE hash = $1 AND received = $2 AND NOT complete",
        )
        .bind(hash)
        .bind(from as i64)
        .bind(to as i64)
        .bind(complete)
        .execute(&mut *tx)
        .await
        .map_err(sql_error)?
        .rows_affected()
            == 1;
        if moved && complete {
            sqlx::query(
                "INSERT INTO attachment_recipients (hash, device_id)
                 SELECT a.hash, m.device_id FROM attachments a
                 JOIN group_members m ON m.group_id = a.group_id
                 WHERE a.hash = $1 AND m.device_id <> a.uploader",
            )
            .bind(hash)
            .execute(&mut *tx)
            .await
            .map_err(sql_error)?;
        }
        Ok(moved)
    })
}

pub(super) async fn attachment_fetched(
    pool: &PgPool,
    hash: &[u8],
    device: DeviceId,
) -> StoreResult<bool> {
    transaction!(pool, |tx| {
        // The record's row is locked so that two last fetchers cannot both miss the other.
        sqlx::query("SELECT 1 FROM attachments WHERE hash = $1 FOR UPDATE")
            .bind(hash)
            .fetch_optional(&mut *tx)
            .await
            .map_err(sql_error)?;
        let removed =
            sqlx::query("DELETE FROM attachment_recipients WHERE hash = $1 AND device_id = $2")
                .bind(hash)
                .bind(id(device.as_bytes()))
                .execute(&mut *tx)
                .await
                .map_err(sql_error)?
                .rows_affected();
        if removed == 0 {
            return Ok(false);
        }
        let waiting: bool = sqlx::query_scalar(
            "SELECT EXISTS(SELECT 1 FROM attachment_recipients WHERE hash = $1)",
        )
        .bind(hash)
        .fetch_one(&mut *tx)
        .await
        .map_err(sql_error)?;
        if waiting {
            return Ok(false);
        }
        delete_in(&mut tx, hash).await?;
        Ok(true)
    })
}

async fn delete_in(tx: &mut Tx<'_>, hash: &[u8]) -> StoreResult<()> {
    for table in ["attachment_recipients", "attachments"] {
        sqlx::query(&format!("DELETE FROM {table} WHERE hash = $1"))
            .bind(hash)
            .execute(&mut **tx)
            .await
            .map_err(sql_error)?;
    }
    Ok(())
}

pub(super) async fn delete_attachment(pool: &PgPool, hash: &[u8]) -> StoreResult<()> {
    transaction!(pool, |tx| {
        delete_in(&mut tx, hash).await?;
        Ok(())
    })
}

pub(super) async fn expire_attachments(
    pool: &PgPool,
    now: Millis,
    incomplete_before: Millis,
) -> StoreResult<Vec<Vec<u8>>> {
    transaction!(pool, |tx| {
        let hashes: Vec<Vec<u8>> = sqlx::query_scalar(
            "DELETE FROM attachments
             WHERE expires_at <= $1 OR (NOT complete AND created_at < $2) RETURNING hash",
        )
        .bind(now)
        .bind(incomplete_before)
        .fetch_all(&mut *tx)
        .await
        .map_err(sql_error)?;
        sqlx::query("DELETE FROM attachment_recipients WHERE hash = ANY($1)")
            .bind(&hashes)
            .execute(&mut *tx)
            .await
            .map_err(sql_error)?;
        Ok(hashes)
    })
}
