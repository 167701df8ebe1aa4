//! Accounts on PostgreSQL: the `users`, `devices`, `challenges` and `sessions` tables, with the
//! logins (challenges, sessions) that authenticate a device.

use parley_protocol::{DeviceId, UserId, Username};
use sqlx::{PgPool, Row};

use super::sql::{device_id, id, sql_error, transaction, username, Tx};
use crate::model::*;
use crate::{StoreError, StoreResult};

pub(super) const MIGRATION_1: &str = r#"
CREATE TABLE users (
    id            BYTEA PRIMARY KEY,
    username      TEXT NOT NULL UNIQUE,
    created_at    BIGINT NOT NULL,
    suspended_at  BIGINT
);
CREATE TABLE devices (
    id             BYTEA PRIMARY KEY,
    user_id        BYTEA NOT NULL,
    signature_key  BYTEA NOT NULL UNIQUE,
    queue_head     BIGINT NOT NULL DEFAULT 0,
    expired_up_to  BIGINT NOT NULL DEFAULT 0,
    created_at     BIGINT NOT NULL
);
CREATE INDEX devices_user ON devices (user_id);
CREATE TABLE challenges (
    nonce       BYTEA PRIMARY KEY,
    device_id   BYTEA NOT NULL,
    expires_at  BIGINT NOT NULL
);
CREATE TABLE sessions (
    token_hash  BYTEA PRIMARY KEY,
    device_id   BYTEA NOT NULL,
    expires_at  BIGINT NOT NULL
);
CREATE INDEX sessions_device ON sessions (device_id);
-- The server itself, as the sender of moderation proposals (the MLS external sender).
INSERT INTO users (id, username, created_at) VALUES ('\x00000000000000000000000000000000', 'parley', 0);
INSERT INTO devices (id, user_id, signature_key, created_at)
    VALUES ('\x00000000000000000000000000000000', '\x00000000000000000000000000000000',
            '\x0000000000000000000000000000000000000000000000000000000000000000', 0);
"#;

pub(super) const MIGRATION_5: &str = r#"
-- Multi-device: the account key that certifies an account's devices. An account from before
-- had one device, whose signature key becomes its account key (plain credentials stay valid).
ALTER TABLE users ADD COLUMN account_key BYTEA;
UPDATE users SET account_key = (
    SELECT d.signature_key FROM devices d WHERE d.user_id = users.id ORDER BY d.created_at, d.id LIMIT 1
);
"#;

pub(super) const MIGRATION_7: &str = r#"
-- Multi-device: a device revoked by another device of its account, with the account key's
-- signed statement (parley_mls::revocation).
ALTER TABLE devices ADD COLUMN revoked_at BIGINT;
ALTER TABLE devices ADD COLUMN revocation BYTEA;
"#;

const DEVICE_COLUMNS: &str = "d.id, d.user_id, u.username, d.signature_key, u.suspended_at, \
     COALESCE(u.account_key, d.signature_key), d.revoked_at FROM devices d JOIN users u ON u.id = d.user_id";

fn device_from_row(row: &sqlx::postgres::PgRow) -> StoreResult<DeviceRecord> {
    Ok(DeviceRecord {
        device_id: device_id(row.try_get(0).map_err(sql_error)?)?,
        user_id: UserId::from_slice(&row.try_get::<Vec<u8>, _>(1).map_err(sql_error)?)
            .map_err(|e| StoreError::Backend(e.to_string()))?,
        username: username(row.try_get(2).map_err(sql_error)?)?,
        signature_key: row.try_get(3).map_err(sql_error)?,
        suspended: row
            .try_get::<Option<i64>, _>(4)
            .map_err(sql_error)?
            .is_some(),
        account_key: row.try_get(5).map_err(sql_error)?,
        revoked: row
            .try_get::<Option<i64>, _>(6)
            .map_err(sql_error)?
            .is_some(),
    })
}

pub(super) async fn create_account(pool: &PgPool, account: NewAccount) -> StoreResult<()> {
    transaction!(pool, |tx| {
        let taken: bool =
            sqlx::query_scalar("SELECT EXISTS(SELECT 1 FROM users WHERE username = $1)")
                .bind(account.username.as_str())
                .fetch_one(&mut *tx)
                .await
                .map_err(sql_error)?;
        if taken {
            return Err(StoreError::UsernameTaken);
        }
        check_device_unused(&mut tx, account.device_id, &account.signature_key).await?;
        sqlx::query(
            "INSERT INTO users (id, username, created_at, account_key) VALUES ($1, $2, $3, $4)",
        )
        .bind(id(account.user_id.as_bytes()))
        .bind(account.username.as_str())
        .bind(account.now)
        .bind(&account.account_key)
        .execute(&mut *tx)
        .await
        .map_err(|e| match sql_error(e) {
            StoreError::Backend(text) if text.contains("23505") => StoreError::UsernameTaken,
            other => other,
        })?;
        sqlx::query(
            "INSERT INTO devices (id, user_id, signature_key, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(id(account.device_id.as_bytes()))
        .bind(id(account.user_id.as_bytes()))
        .bind(&account.signature_key)
        .bind(account.now)
        .execute(&mut *tx)
        .await
        .map_err(sql_error)?;
        Ok(())
    })
}

/// A new device's id and signature key must be nobody's yet.
pub(super) async fn check_device_unused(
    tx: &mut Tx<'_>,
    device: DeviceId,
    signature_key: &[u8],
) -> StoreResult<()> {
    let key_taken: bool =
        sqlx::query_scalar("SELECT EXISTS(SELECT 1 FROM devices WHERE signature_key = $1)")
            .bind(signature_key)
            .fetch_one(&mut **tx)
            .await
            .map_err(sql_error)?;
    if key_taken {
        return Err(StoreError::KeyTaken);
    }
    let id_taken: bool = sqlx::query_scalar("SELECT EXISTS(SELECT 1 FROM devices WHERE id = $1)")
        .bind(id(device.as_bytes()))
        .fetch_one(&mut **tx)
        .await
        .map_err(sql_error)?;
    if id_taken {
        return Err(StoreError::DeviceIdTaken);
    }
    Ok(())
}

pub(super) async fn account_devices(
    pool: &PgPool,
    user: UserId,
) -> StoreResult<Vec<AccountDeviceRecord>> {
    let rows = sqlx::query(
        "SELECT id, sealed_name, created_at, last_seen FROM devices
         WHERE user_id = $1 AND revoked_at IS NULL ORDER BY created_at, id",
    )
    .bind(id(user.as_bytes()))
    .fetch_all(pool)
    .await
    .map_err(sql_error)?;
    rows.iter()
        .map(|row| {
            Ok(AccountDeviceRecord {
                device_id: device_id(row.try_get(0).map_err(sql_error)?)?,
                sealed_name: row.try_get(1).map_err(sql_error)?,
                added_at: row.try_get(2).map_err(sql_error)?,
                last_seen: row.try_get(3).map_err(sql_error)?,
            })
        })
        .collect()
}

pub(super) async fn revoke_device(
    pool: &PgPool,
    device: DeviceId,
    by: DeviceId,
    revocation: Vec<u8>,
    rotation: Option<NewRotation>,
    now: Millis,
) -> StoreResult<bool> {
    transaction!(pool, |tx| {
        // Both devices' rows locked, in one order: two devices revoking each other serialize,
        // and the second finds itself revoked.
        let mut both = [id(device.as_bytes()), id(by.as_bytes())];
        both.sort();
        for row in &both {
            sqlx::query("SELECT 1 FROM devices WHERE id = $1 FOR UPDATE")
                .bind(row)
                .fetch_optional(&mut *tx)
                .await
                .map_err(sql_error)?;
        }
        let by_revoked: Option<Option<i64>> =
            sqlx::query_scalar("SELECT revoked_at FROM devices WHERE id = $1")
                .bind(id(by.as_bytes()))
                .fetch_optional(&mut *tx)
                .await
                .map_err(sql_error)?;
        if by_revoked.flatten().is_some() {
            return Err(StoreError::Revoked);
        }
        let revoked = sqlx::query(
            "UPDATE devices SET revoked_at = $2, revocation = $3
             WHERE id = $1 AND revoked_at IS NULL",
        )
        .bind(id(device.as_bytes()))
        .bind(now)
        .bind(&revocation)
        .execute(&mut *tx)
        .await
        .map_err(sql_error)?;
        for table in ["sessions", "key_packages", "rotation_keys"] {
            sqlx::query(&format!("DELETE FROM {table} WHERE device_id = $1"))
                .bind(id(device.as_bytes()))
                .execute(&mut *tx)
                .await
                .map_err(sql_error)?;
        }
        super::recovery::forget_restores_set_by(&mut tx, device).await?;
        if let Some(rotation) = rotation.clone() {
            super::rotation::rotate(&mut tx, by, rotation, now).await?;
        }
        Ok(revoked.rows_affected() == 1)
    })
}

pub(super) async fn rename_device(
    pool: &PgPool,
    device: DeviceId,
    sealed_name: Vec<u8>,
) -> StoreResult<()> {
    sqlx::query("UPDATE devices SET sealed_name = $2 WHERE id = $1")
        .bind(id(device.as_bytes()))
        .bind(sealed_name)
        .execute(pool)
        .await
        .map_err(sql_error)?;
    Ok(())
}

pub(super) async fn device(pool: &PgPool, device: DeviceId) -> StoreResult<Option<DeviceRecord>> {
    let row = sqlx::query(&format!("SELECT {DEVICE_COLUMNS} WHERE d.id = $1"))
        .bind(id(device.as_bytes()))
        .fetch_optional(pool)
        .await
        .map_err(sql_error)?;
    row.as_ref().map(device_from_row).transpose()
}

/// The username a device belongs to, inside a transaction.
pub(super) async fn username_of(tx: &mut Tx<'_>, device: &[u8]) -> StoreResult<Username> {
    let name: String = sqlx::query_scalar(
        "SELECT u.username FROM devices d JOIN users u ON u.id = d.user_id WHERE d.id = $1",
    )
    .bind(device)
    .fetch_one(&mut **tx)
    .await
    .map_err(sql_error)?;
    username(name)
}

pub(super) async fn user_devices(pool: &PgPool, name: &Username) -> StoreResult<Vec<DeviceRecord>> {
    let rows = sqlx::query(&format!(
        "SELECT {DEVICE_COLUMNS} WHERE u.username = $1 AND d.revoked_at IS NULL ORDER BY d.id"
    ))
    .bind(name.as_str())
    .fetch_all(pool)
    .await
    .map_err(sql_error)?;
    rows.iter().map(device_from_row).collect()
}

pub(super) async fn put_challenge(pool: &PgPool, challenge: Challenge) -> StoreResult<()> {
    sqlx::query("INSERT INTO challenges (nonce, device_id, expires_at) VALUES ($1, $2, $3)")
        .bind(&challenge.nonce)
        .bind(id(challenge.device_id.as_bytes()))
        .bind(challenge.expires_at)
        .execute(pool)
        .await
        .map_err(sql_error)?;
    Ok(())
}

pub(super) async fn take_challenge(pool: &PgPool, nonce: &[u8]) -> StoreResult<Option<Challenge>> {
    let row =
        sqlx::query("DELETE FROM challenges WHERE nonce = $1 RETURNING device_id, expires_at")
            .bind(nonce)
            .fetch_optional(pool)
            .await
            .map_err(sql_error)?;
    row.map(|row| {
        Ok(Challenge {
            nonce: nonce.to_vec(),
            device_id: device_id(row.try_get(0).map_err(sql_error)?)?,
            expires_at: row.try_get(1).map_err(sql_error)?,
        })
    })
    .transpose()
}

pub(super) async fn create_session(pool: &PgPool, session: NewSession) -> StoreResult<()> {
    transaction!(pool, |tx| {
        sqlx::query("INSERT INTO sessions (token_hash, device_id, expires_at) VALUES ($1, $2, $3)")
            .bind(&session.token_hash)
            .bind(id(session.device_id.as_bytes()))
            .bind(session.expires_at)
            .execute(&mut *tx)
            .await
            .map_err(sql_error)?;
        sqlx::query("UPDATE devices SET last_seen = $2 WHERE id = $1")
            .bind(id(session.device_id.as_bytes()))
            .bind(session.now)
            .execute(&mut *tx)
            .await
            .map_err(sql_error)?;
        Ok(())
    })
}

pub(super) async fn session(
    pool: &PgPool,
    token_hash: &[u8],
    now: Millis,
) -> StoreResult<Option<DeviceRecord>> {
    let row = sqlx::query(&format!(
        "SELECT {DEVICE_COLUMNS} JOIN sessions s ON s.device_id = d.id
         WHERE s.token_hash = $1 AND s.expires_at > $2 AND u.suspended_at IS NULL
           AND d.revoked_at IS NULL"
    ))
    .bind(token_hash)
    .bind(now)
    .fetch_optional(pool)
    .await
    .map_err(sql_error)?;
    row.as_ref().map(device_from_row).transpose()
}

/// Suspends (ending its sessions) or unsuspends an account; returns how many accounts changed.
pub(super) async fn suspend(
    tx: &mut Tx<'_>,
    user: &Username,
    suspended: bool,
    at: Millis,
) -> StoreResult<u64> {
    let changed = if suspended {
        sqlx::query(
            "UPDATE users SET suspended_at = $2 WHERE username = $1 AND suspended_at IS NULL",
        )
        .bind(user.as_str())
        .bind(at)
        .execute(&mut **tx)
        .await
        .map_err(sql_error)?
        .rows_affected()
    } else {
        sqlx::query(
            "UPDATE users SET suspended_at = NULL WHERE username = $1 AND suspended_at IS NOT NULL",
        )
        .bind(user.as_str())
        .execute(&mut **tx)
        .await
        .map_err(sql_error)?
        .rows_affected()
    };
    if suspended {
        sqlx::query(
            "DELETE FROM sessions WHERE device_id IN (
                SELECT d.id FROM devices d JOIN users u ON u.id = d.user_id WHERE u.username = $1)",
        )
        .bind(user.as_str())
        .execute(&mut **tx)
        .await
        .map_err(sql_error)?;
    }
    Ok(changed)
}

/// Deletes the challenges and sessions that have expired by `now`.
pub(super) async fn expire_logins(tx: &mut Tx<'_>, now: Millis) -> StoreResult<()> {
    for statement in [
        "DELETE FROM challenges WHERE expires_at < $1",
        "DELETE FROM sessions WHERE expires_at < $1",
    ] {
        sqlx::query(statement)
            .bind(now)
            .execute(&mut **tx)
            .await
            .map_err(sql_error)?;
    }
    Ok(())
}
