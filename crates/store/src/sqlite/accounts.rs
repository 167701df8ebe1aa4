//! Accounts on SQLite: the `users`, `devices`, `challenges` and `sessions` tables, with the
//! logins (challenges, sessions) that authenticate a device.

use parley_protocol::{DeviceId, UserId, Username};
use rusqlite::{params, Connection, OptionalExtension, Transaction};

use super::sql::{blob, conversion_error, device_id, query_one};
use crate::model::*;
use crate::{StoreError, StoreResult};

pub(super) const MIGRATION_1: &str = r#"
CREATE TABLE users (
    id          BLOB PRIMARY KEY,
    username    TEXT NOT NULL UNIQUE,
    created_at  INTEGER NOT NULL
);
CREATE TABLE devices (
    id             BLOB PRIMARY KEY,
    user_id        BLOB NOT NULL REFERENCES users(id),
    signature_key  BLOB NOT NULL UNIQUE,
    queue_head     INTEGER NOT NULL DEFAULT 0,
    expired_up_to  INTEGER NOT NULL DEFAULT 0,
    created_at     INTEGER NOT NULL
);
CREATE INDEX devices_user ON devices(user_id);
CREATE TABLE challenges (
    nonce       BLOB PRIMARY KEY,
    device_id   BLOB NOT NULL,
    expires_at  INTEGER NOT NULL
);
CREATE TABLE sessions (
    token_hash  BLOB PRIMARY KEY,
    device_id   BLOB NOT NULL REFERENCES devices(id),
    expires_at  INTEGER NOT NULL
);
"#;

pub(super) const MIGRATION_2: &str = r#"
-- Moderation: suspended accounts.
ALTER TABLE users ADD COLUMN suspended_at INTEGER;
-- The server itself, as the sender of moderation proposals (the MLS external sender).
INSERT INTO users (id, username, created_at) VALUES (zeroblob(16), 'parley', 0);
INSERT INTO devices (id, user_id, signature_key, created_at) VALUES (zeroblob(16), zeroblob(16), zeroblob(32), 0);
"#;

pub(super) const MIGRATION_7: &str = r#"
-- Multi-device: the account key that certifies an account's devices. An account from before
-- had one device, whose signature key becomes its account key (plain credentials stay valid).
ALTER TABLE users ADD COLUMN account_key BLOB;
UPDATE users SET account_key = (
    SELECT d.signature_key FROM devices d WHERE d.user_id = users.id ORDER BY d.created_at, d.id LIMIT 1
);
"#;

pub(super) const MIGRATION_8: &str = r#"
-- Multi-device: a device's name (sealed by the account's devices) and when it last logged in.
ALTER TABLE devices ADD COLUMN sealed_name BLOB NOT NULL DEFAULT X'';
ALTER TABLE devices ADD COLUMN last_seen INTEGER NOT NULL DEFAULT 0;
UPDATE devices SET last_seen = created_at;
"#;

pub(super) const MIGRATION_9: &str = r#"
-- Multi-device: a device revoked by another device of its account, with the account key's
-- signed statement (parley_mls::revocation).
ALTER TABLE devices ADD COLUMN revoked_at INTEGER;
ALTER TABLE devices ADD COLUMN revocation BLOB;
"#;

const DEVICE_COLUMNS: &str = "d.id, d.user_id, u.username, d.signature_key, u.suspended_at, \
     COALESCE(u.account_key, d.signature_key), d.revoked_at FROM devices d JOIN users u ON u.id = d.user_id";

fn device_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<DeviceRecord> {
    let device: Vec<u8> = row.get(0)?;
    let user: Vec<u8> = row.get(1)?;
    let username: String = row.get(2)?;
    Ok(DeviceRecord {
        device_id: device_id(device)?,
        user_id: UserId::from_slice(&user).map_err(|e| conversion_error(e.to_string()))?,
        username: Username::parse(&username).map_err(|e| conversion_error(e.to_string()))?,
        signature_key: row.get(3)?,
        suspended: row.get::<_, Option<i64>>(4)?.is_some(),
        account_key: row.get(5)?,
        revoked: row.get::<_, Option<i64>>(6)?.is_some(),
    })
}

pub(super) fn create_account(tx: &Transaction<'_>, account: NewAccount) -> StoreResult<()> {
    let taken: bool = tx.query_row(
        "SELECT EXISTS(SELECT 1 FROM users WHERE username = ?1)",
        params![account.username.as_str()],
        |row| row.get(0),
    )?;
    if taken {
        return Err(StoreError::UsernameTaken);
    }
    check_device_unused(tx, account.device_id, &account.signature_key)?;
    tx.execute(
        "INSERT INTO users (id, username, created_at, account_key) VALUES (?1, ?2, ?3, ?4)",
        params![
            blob(account.user_id.as_bytes()),
            account.username.as_str(),
            account.now,
            account.account_key
        ],
    )?;
    tx.execute(
        "INSERT INTO devices (id, user_id, signature_key, created_at) VALUES (?1, ?2, ?3, ?4)",
        params![
            blob(account.device_id.as_bytes()),
            blob(account.user_id.as_bytes()),
            account.signature_key,
            account.now
        ],
    )?;
    Ok(())
}

/// A new device's id and signature key must be nobody's yet.
pub(super) fn check_device_unused(
    conn: &Connection,
    device: DeviceId,
    signature_key: &[u8],
) -> StoreResult<()> {
    let key_taken: bool = conn.query_row(
        "SELECT EXISTS(SELECT 1 FROM devices WHERE signature_key = ?1)",
        params![signature_key],
        |row| row.get(0),
    )?;
    if key_taken {
        return Err(StoreError::KeyTaken);
    }
    let id_taken: bool = conn.query_row(
        "SELECT EXISTS(SELECT 1 FROM devices WHERE id = ?1)",
        params![blob(device.as_bytes())],
        |row| row.get(0),
    )?;
    if id_taken {
        return Err(StoreError::DeviceIdTaken);
    }
    Ok(())
}

pub(super) fn account_devices(
    conn: &Connection,
    user: UserId,
) -> StoreResult<Vec<AccountDeviceRecord>> {
    let mut statement = conn.prepare_cached(
        "SELECT id, sealed_name, created_at, last_seen FROM devices
         WHERE user_id = ?1 AND revoked_at IS NULL ORDER BY created_at, id",
    )?;
    let rows = statement.query_map(params![blob(user.as_bytes())], |row| {
        Ok(AccountDeviceRecord {
            device_id: device_id(row.get(0)?)?,
            sealed_name: row.get(1)?,
            added_at: row.get(2)?,
            last_seen: row.get(3)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

pub(super) fn revoke_device(
    tx: &Transaction<'_>,
    device: DeviceId,
    by: DeviceId,
    revocation: Vec<u8>,
    now: Millis,
) -> StoreResult<bool> {
    let by_revoked: Option<i64> = tx.query_row(
        "SELECT revoked_at FROM devices WHERE id = ?1",
        params![blob(by.as_bytes())],
        |row| row.get(0),
    )?;
    if by_revoked.is_some() {
        return Err(StoreError::Revoked);
    }
    let revoked = tx.execute(
        "UPDATE devices SET revoked_at = ?2, revocation = ?3 WHERE id = ?1 AND revoked_at IS NULL",
        params![blob(device.as_bytes()), now, revocation],
    )?;
    tx.execute(
        "DELETE FROM sessions WHERE device_id = ?1",
        params![blob(device.as_bytes())],
    )?;
    for table in ["key_packages", "rotation_keys"] {
        tx.execute(
            &format!("DELETE FROM {table} WHERE device_id = ?1"),
            params![blob(device.as_bytes())],
        )?;
    }
    super::recovery::forget_restores_set_by(tx, device)?;
    Ok(revoked == 1)
}

pub(super) fn rename_device(
    tx: &Transaction<'_>,
    device: DeviceId,
    sealed_name: Vec<u8>,
) -> StoreResult<()> {
    tx.execute(
        "UPDATE devices SET sealed_name = ?2 WHERE id = ?1",
        params![blob(device.as_bytes()), sealed_name],
    )?;
    Ok(())
}

pub(super) fn device(conn: &Connection, device: DeviceId) -> StoreResult<Option<DeviceRecord>> {
    Ok(conn
        .query_row(
            &format!("SELECT {DEVICE_COLUMNS} WHERE d.id = ?1"),
            params![blob(device.as_bytes())],
            device_from_row,
        )
        .optional()?)
}

pub(super) fn user_devices(
    conn: &Connection,
    username: &Username,
) -> StoreResult<Vec<DeviceRecord>> {
    let mut statement = conn.prepare_cached(&format!(
        "SELECT {DEVICE_COLUMNS} WHERE u.username = ?1 AND d.revoked_at IS NULL ORDER BY d.id"
    ))?;
    let rows = statement.query_map(params![username.as_str()], device_from_row)?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

/// The username of a device's account.
pub(super) fn username_of(conn: &Connection, device: &[u8]) -> rusqlite::Result<Username> {
    let name: String = query_one(
        conn,
        "SELECT u.username FROM devices d JOIN users u ON u.id = d.user_id WHERE d.id = ?1",
        params![device],
        |row| row.get(0),
    )?;
    Username::parse(&name).map_err(|e| conversion_error(e.to_string()))
}

pub(super) fn put_challenge(tx: &Transaction<'_>, challenge: Challenge) -> StoreResult<()> {
    tx.execute(
        "INSERT INTO challenges (nonce, device_id, expires_at) VALUES (?1, ?2, ?3)",
        params![
            challenge.nonce,
            blob(challenge.device_id.as_bytes()),
            challenge.expires_at
        ],
    )?;
    Ok(())
}

pub(super) fn take_challenge(
    tx: &Transaction<'_>,
    nonce: Vec<u8>,
) -> StoreResult<Option<Challenge>> {
    let found = tx
        .query_row(
            "DELETE FROM challenges WHERE nonce = ?1 RETURNING device_id, expires_at",
            params![nonce],
            |row| Ok((row.get::<_, Vec<u8>>(0)?, row.get::<_, i64>(1)?)),
        )
        .optional()?;
    found
        .map(|(device, expires_at)| {
            Ok(Challenge {
                nonce: nonce.clone(),
                device_id: device_id(device)?,
                expires_at,
            })
        })
        .transpose()
        .map_err(|e: rusqlite::Error| e.into())
}

pub(super) fn create_session(tx: &Transaction<'_>, session: NewSession) -> StoreResult<()> {
    tx.execute(
        "INSERT INTO sessions (token_hash, device_id, expires_at) VALUES (?1, ?2, ?3)",
        params![
            session.token_hash,
            blob(session.device_id.as_bytes()),
            session.expires_at
        ],
    )?;
    tx.execute(
        "UPDATE devices SET last_seen = ?2 WHERE id = ?1",
        params![blob(session.device_id.as_bytes()), session.now],
    )?;
    Ok(())
}

pub(super) fn session(
    conn: &Connection,
    token_hash: &[u8],
    now: Millis,
) -> StoreResult<Option<DeviceRecord>> {
    Ok(conn
        .query_row(
            &format!(
                "SELECT {DEVICE_COLUMNS} JOIN sessions s ON s.device_id = d.id
                 WHERE s.token_hash = ?1 AND s.expires_at > ?2 AND u.suspended_at IS NULL
                   AND d.revoked_at IS NULL"
            ),
            params![token_hash, now],
            device_from_row,
        )
        .optional()?)
}

/// Suspends (ending its sessions) or unsuspends an account; returns how many accounts changed.
pub(super) fn suspend(
    tx: &Transaction<'_>,
    username: &Username,
    suspended: bool,
    at: Millis,
) -> StoreResult<usize> {
    let changed = if suspended {
        tx.execute(
            "UPDATE users SET suspended_at = ?2 WHERE username = ?1 AND suspended_at IS NULL",
            params![username.as_str(), at],
        )?
    } else {
        tx.execute(
            "UPDATE users SET suspended_at = NULL WHERE username = ?1 AND suspended_at IS NOT NULL",
            params![username.as_str()],
        )?
    };
    if suspended {
        // Its sessions end now.
        tx.execute(
            "DELETE FROM sessions WHERE device_id IN (
                SELECT d.id FROM devices d JOIN users u ON u.id = d.user_id WHERE u.username = ?1)",
            params![username.as_str()],
        )?;
    }
    Ok(changed)
}

/// Deletes the challenges and sessions that have expired by `now`.
pub(super) fn expire_logins(tx: &Transaction<'_>, now: Millis) -> StoreResult<()> {
    tx.execute("DELETE FROM challenges WHERE expires_at < ?1", params![now])?;
    tx.execute("DELETE FROM sessions WHERE expires_at < ?1", params![now])?;
    Ok(())
}
