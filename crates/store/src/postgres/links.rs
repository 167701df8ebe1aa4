//! Linking devices on PostgreSQL: the `links` table (a new device's request, then its approval)
//! and blobs (`blobs`, `blob_chunks`): opaque chunked uploads such as history archives.
//!
//! The per-account bounds (waiting links, devices, blobs) are counted with the account's
//! `users` row locked, so that nodes racing for the last place cannot both take it.

use parley_protocol::UserId;
use sqlx::{PgPool, Row};

use super::accounts;
use super::sql::{device_id, id, sql_error, transaction, username, Tx};
use crate::model::*;
use crate::{StoreError, StoreResult};

pub(super) const MIGRATION_6: &str = r#"
ALTER TABLE devices ADD COLUMN sealed_name BYTEA NOT NULL DEFAULT '\x';
ALTER TABLE devices ADD COLUMN last_seen BIGINT NOT NULL DEFAULT 0;
UPDATE devices SET last_seen = created_at;
CREATE TABLE links (
    id             BYTEA PRIMARY KEY,
    user_id        BYTEA NOT NULL,
    device_id      BYTEA NOT NULL,
    signature_key  BYTEA NOT NULL,
    hpke_key       BYTEA NOT NULL,
    mac            BYTEA NOT NULL,
    created_at     BIGINT NOT NULL,
    expires_at     BIGINT NOT NULL,
    approved_at    BIGINT,
    archive_blob   BYTEA,
    sealed_bundle  BYTEA
);
CREATE INDEX links_user ON links (user_id, expires_at);
CREATE INDEX links_expiry ON links (expires_at);
CREATE TABLE blobs (
    id          BYTEA PRIMARY KEY,
    owner       BYTEA NOT NULL,
    reader      BYTEA,
    sealed      BOOLEAN NOT NULL DEFAULT FALSE,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL
);
CREATE INDEX blobs_owner ON blobs (owner);
CREATE INDEX blobs_expiry ON blobs (expires_at);
CREATE TABLE blob_chunks (
    blob_id  BYTEA NOT NULL,
    idx      INTEGER NOT NULL,
    data     BYTEA NOT NULL,
    PRIMARY KEY (blob_id, idx)
);
"#;

fn user_id(bytes: Vec<u8>) -> StoreResult<UserId> {
    UserId::from_slice(&bytes).map_err(|e| StoreError::Backend(e.to_string()))
}

/// Locks the account's row for the rest of the transaction.
pub(super) async fn lock_account(tx: &mut Tx<'_>, user: UserId) -> StoreResult<()> {
    sqlx::query("SELECT 1 FROM users WHERE id = $1 FOR UPDATE")
        .bind(id(user.as_bytes()))
        .fetch_optional(&mut **tx)
        .await
        .map_err(sql_error)?;
    Ok(())
}

async fn count(tx: &mut Tx<'_>, sql: &str, user: UserId, now: Option<Millis>) -> StoreResult<u32> {
    let mut query = sqlx::query_scalar::<_, i64>(sql).bind(id(user.as_bytes()));
    if let Some(now) = now {
        query = query.bind(now);
    }
    let n = query.fetch_one(&mut **tx).await.map_err(sql_error)?;
    Ok(n as u32)
}

pub(super) async fn create_link(pool: &PgPool, link: NewLink) -> StoreResult<()> {
    transaction!(pool, |tx| {
        lock_account(&mut tx, link.user_id).await?;
        let waiting = count(
            &mut tx,
            "SELECT COUNT(*) FROM links WHERE user_id = $1 AND approved_at IS NULL
             AND expires_at > $2",
            link.user_id,
            Some(link.now),
        )
        .await?;
        if waiting >= link.max_pending {
            return Err(StoreError::TooManyLinks);
        }
        accounts::check_device_unused(&mut tx, link.device_id, &link.signature_key).await?;
        sqlx::query(
            "INSERT INTO links (id, user_id, device_id, signature_key, hpke_key, mac, created_at,
                                expires_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&link.link_id)
        .bind(id(link.user_id.as_bytes()))
        .bind(id(link.device_id.as_bytes()))
        .bind(&link.signature_key)
        .bind(&link.hpke_key)
        .bind(&link.mac)
        .bind(link.now)
        .bind(link.expires_at)
        .execute(&mut *tx)
        .await
        .map_err(sql_error)?;
        Ok(())
    })
}

const LINK_COLUMNS: &str = "l.id, l.user_id, u.username, l.device_id, l.signature_key, l.hpke_key,
    l.mac, l.expires_at, l.approved_at, l.archive_blob, l.sealed_bundle
    FROM links l JOIN users u ON u.id = l.user_id";

fn link_from_row(row: &sqlx::postgres::PgRow) -> StoreResult<LinkRecord> {
    Ok(LinkRecord {
        link_id: row.try_get(0).map_err(sql_error)?,
        user_id: user_id(row.try_get(1).map_err(sql_error)?)?,
        username: username(row.try_get(2).map_err(sql_error)?)?,
        device_id: device_id(row.try_get(3).map_err(sql_error)?)?,
        signature_key: row.try_get(4).map_err(sql_error)?,
        hpke_key: row.try_get(5).map_err(sql_error)?,
        mac: row.try_get(6).map_err(sql_error)?,
        expires_at: row.try_get(7).map_err(sql_error)?,
        approved_at: row.try_get(8).map_err(sql_error)?,
        archive_blob: row.try_get(9).map_err(sql_error)?,
        sealed_bundle: row.try_get(10).map_err(sql_error)?,
    })
}

pub(super) async fn link(
    pool: &PgPool,
    link_id: &[u8],
    now: Millis,
) -> StoreResult<Option<LinkRecord>> {
    let row = sqlx::query(&format!(
        "SELECT {LINK_COLUMNS} WHERE l.id = $1 AND l.expires_at > $2"
    ))
    .bind(link_id)
    .bind(now)
    .fetch_optional(pool)
    .await
    .map_err(sql_error)?;
    row.as_ref().map(link_from_row).transpose()
}

pub(super) async fn approve_link(
    pool: &PgPool,
    approval: LinkApproval,
) -> StoreResult<parley_protocol::DeviceId> {
    transaction!(pool, |tx| {
        let row = sqlx::query(&format!(
            "SELECT {LINK_COLUMNS} WHERE l.id = $1 AND l.expires_at > $2
             AND l.approved_at IS NULL FOR UPDATE OF l"
        ))
        .bind(&approval.link_id)
        .bind(approval.now)
        .fetch_optional(&mut *tx)
        .await
        .map_err(sql_error)?;
        let waiting = row
            .as_ref()
            .map(link_from_row)
            .transpose()?
            .ok_or(StoreError::LinkExpired)?;
        lock_account(&mut tx, waiting.user_id).await?;
        let devices = count(
            &mut tx,
            "SELECT COUNT(*) FROM devices WHERE user_id = $1 AND revoked_at IS NULL",
            waiting.user_id,
            None,
        )
        .await?;
        if devices >= approval.max_devices {
            return Err(StoreError::TooManyDevices);
        }
        accounts::check_device_unused(&mut tx, waiting.device_id, &waiting.signature_key).await?;
        sqlx::query(
            "INSERT INTO devices (id, user_id, signature_key, created_at, last_seen)
             VALUES ($1, $2, $3, $4, $4)",
        )
        .bind(id(waiting.device_id.as_bytes()))
        .bind(id(waiting.user_id.as_bytes()))
        .bind(&waiting.signature_key)
        .bind(approval.now)
        .execute(&mut *tx)
        .await
        .map_err(sql_error)?;
        sqlx::query(
            "UPDATE links SET approved_at = $2, expires_at = $3, archive_blob = $4,
                              sealed_bundle = $5
             WHERE id = $1",
        )
        .bind(&approval.link_id)
        .bind(approval.now)
        .bind(approval.kept_until)
        .bind(&approval.archive_blob)
        .bind(&approval.sealed_bundle)
        .execute(&mut *tx)
        .await
        .map_err(sql_error)?;
        Ok(waiting.device_id)
    })
}

pub(super) async fn create_blob(pool: &PgPool, new: NewBlob) -> StoreResult<()> {
    transaction!(pool, |tx| {
        lock_account(&mut tx, new.owner).await?;
        let held = count(
            &mut tx,
            "SELECT COUNT(*) FROM blobs WHERE owner = $1 AND expires_at > $2",
            new.owner,
            Some(new.now),
        )
        .await?;
        if held >= new.max_per_account {
            return Err(StoreError::TooManyBlobs);
        }
        sqlx::query(
            "INSERT INTO blobs (id, owner, reader, created_at, updated_at, expires_at)
             VALUES ($1, $2, $3, $4, $4, $5)",
        )
        .bind(&new.blob_id)
        .bind(id(new.owner.as_bytes()))
        .bind(new.reader.map(|d| d.to_vec()))
        .bind(new.now)
        .bind(new.expires_at)
        .execute(&mut *tx)
        .await
        .map_err(sql_error)?;
        Ok(())
    })
}

pub(super) async fn blob(
    pool: &PgPool,
    blob_id: &[u8],
    now: Millis,
) -> StoreResult<Option<BlobRecord>> {
    let row = sqlx::query(
        "SELECT b.id, b.owner, b.reader, b.sealed, b.updated_at, b.expires_at,
                (SELECT COUNT(*) FROM blob_chunks c WHERE c.blob_id = b.id),
                (SELECT COALESCE(SUM(LENGTH(c.data)), 0)::BIGINT FROM blob_chunks c
                 WHERE c.blob_id = b.id)
         FROM blobs b WHERE b.id = $1 AND b.expires_at > $2",
    )
    .bind(blob_id)
    .bind(now)
    .fetch_optional(pool)
    .await
    .map_err(sql_error)?;
    row.map(|row| {
        let reader: Option<Vec<u8>> = row.try_get(2).map_err(sql_error)?;
        Ok(BlobRecord {
            blob_id: row.try_get(0).map_err(sql_error)?,
            owner: user_id(row.try_get(1).map_err(sql_error)?)?,
            reader: reader.map(device_id).transpose()?,
            sealed: row.try_get(3).map_err(sql_error)?,
            updated_at: row.try_get(4).map_err(sql_error)?,
            expires_at: row.try_get(5).map_err(sql_error)?,
            chunks: row.try_get::<i64, _>(6).map_err(sql_error)? as u32,
            bytes: row.try_get::<i64, _>(7).map_err(sql_error)? as u64,
        })
    })
    .transpose()
}

pub(super) async fn put_blob_chunk(
    pool: &PgPool,
    blob_id: &[u8],
    index: u32,
    data: Vec<u8>,
    now: Millis,
) -> StoreResult<()> {
    transaction!(pool, |tx| {
        let sealed: Option<bool> = sqlx::query_scalar(
            "SELECT sealed FROM blobs WHERE id = $1 AND expires_at > $2 FOR UPDATE",
        )
        .bind(blob_id)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await
        .map_err(sql_error)?;
        match sealed {
            None => return Err(StoreError::UnknownBlob),
            Some(true) => return Err(StoreError::BlobState("the blob is sealed")),
            Some(false) => {}
        }
        sqlx::query(
            "INSERT INTO blob_chunks (blob_id, idx, data) VALUES ($1, $2, $3)
             ON CONFLICT (blob_id, idx) DO UPDATE SET data = excluded.data",
        )
        .bind(blob_id)
        .bind(index as i32)
        .bind(&data)
        .execute(&mut *tx)
        .await
        .map_err(sql_error)?;
        sqlx::query("UPDATE blobs SET updated_at = $2 WHERE id = $1")
            .bind(blob_id)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(sql_error)?;
        Ok(())
    })
}

pub(super) async fn seal_blob(
    pool: &PgPool,
    blob_id: &[u8],
    chunks: u32,
    now: Millis,
) -> StoreResult<()> {
    transaction!(pool, |tx| {
        // Locked first, as chunk writes lock it: no chunk lands while the blob is sealed.
        let live: Option<bool> = sqlx::query_scalar(
            "SELECT sealed FROM blobs WHERE id = $1 AND expires_at > $2 FOR UPDATE",
        )
        .bind(blob_id)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await
        .map_err(sql_error)?;
        if live.is_none() {
            return Err(StoreError::UnknownBlob);
        }
        let row = sqlx::query("SELECT COUNT(*), MAX(idx) FROM blob_chunks WHERE blob_id = $1")
            .bind(blob_id)
            .fetch_one(&mut *tx)
            .await
            .map_err(sql_error)?;
        let present: i64 = row.try_get(0).map_err(sql_error)?;
        let highest: Option<i32> = row.try_get(1).map_err(sql_error)?;
        if present != i64::from(chunks) || highest.map_or(0, |h| h as i64 + 1) != i64::from(chunks)
        {
            return Err(StoreError::BlobState(
                "the blob does not hold exactly those chunks",
            ));
        }
        let sealed = sqlx::query("UPDATE blobs SET sealed = TRUE WHERE id = $1")
            .bind(blob_id)
            .execute(&mut *tx)
            .await
            .map_err(sql_error)?;
        if sealed.rows_affected() == 0 {
            return Err(StoreError::UnknownBlob);
        }
        Ok(())
    })
}

pub(super) async fn blob_chunk(
    pool: &PgPool,
    blob_id: &[u8],
    index: u32,
) -> StoreResult<Option<Vec<u8>>> {
    sqlx::query_scalar("SELECT data FROM blob_chunks WHERE blob_id = $1 AND idx = $2")
        .bind(blob_id)
        .bind(index as i32)
        .fetch_optional(pool)
        .await
        .map_err(sql_error)
}

pub(super) async fn delete_blob(pool: &PgPool, blob_id: &[u8]) -> StoreResult<()> {
    transaction!(pool, |tx| {
        sqlx::query("DELETE FROM backups WHERE blob_id = $1")
            .bind(blob_id)
            .execute(&mut *tx)
            .await
            .map_err(sql_error)?;
        sqlx::query("DELETE FROM blob_chunks WHERE blob_id = $1")
            .bind(blob_id)
            .execute(&mut *tx)
            .await
            .map_err(sql_error)?;
        sqlx::query("DELETE FROM blobs WHERE id = $1")
            .bind(blob_id)
            .execute(&mut *tx)
            .await
            .map_err(sql_error)?;
        Ok(())
    })
}

pub(super) async fn expire_links_and_blobs(pool: &PgPool, now: Millis) -> StoreResult<u64> {
    transaction!(pool, |tx| {
        let links = sqlx::query("DELETE FROM links WHERE expires_at <= $1")
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(sql_error)?;
        sqlx::query(
            "DELETE FROM blob_chunks WHERE blob_id IN (SELECT id FROM blobs WHERE expires_at <= $1)",
        )
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(sql_error)?;
        let blobs = sqlx::query("DELETE FROM blobs WHERE expires_at <= $1")
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(sql_error)?;
        Ok(links.rows_affected() + blobs.rows_affected())
    })
}
