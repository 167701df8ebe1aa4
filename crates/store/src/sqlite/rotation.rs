//! Account-key rotations on SQLite: each account's chain of signed rotations
//! (`account_rotations`) and the new key sealed to each remaining device until it takes it up
//! (`rotation_keys`). A rotation is applied inside its revocation's transaction.

use parley_protocol::{DeviceId, UserId};
use rusqlite::{params, Connection, OptionalExtension, Transaction};

use super::sql::blob;
use crate::model::*;
use crate::{StoreError, StoreResult};

pub(super) const MIGRATION_11: &str = r#"
CREATE TABLE account_rotations (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id     BLOB NOT NULL REFERENCES users(id),
    statement   BLOB NOT NULL,
    rotated_at  INTEGER NOT NULL
);
CREATE INDEX account_rotations_user ON account_rotations(user_id, seq);
CREATE TABLE rotation_keys (
    device_id   BLOB PRIMARY KEY REFERENCES devices(id),
    sealed      BLOB NOT NULL
);
"#;

/// Moves the account of `by` from `old_key` to `new_key`: its KeyPackages (all under the old
/// key) go, and each named remaining device gets its sealed keys.
pub(super) fn rotate(
    tx: &Transaction<'_>,
    by: DeviceId,
    rotation: NewRotation,
    now: Millis,
) -> StoreResult<()> {
    let user: Vec<u8> = tx.query_row(
        "SELECT user_id FROM devices WHERE id = ?1",
        params![blob(by.as_bytes())],
        |row| row.get(0),
    )?;
    let moved = tx.execute(
        "UPDATE users SET account_key = ?2 WHERE id = ?1 AND account_key = ?3",
        params![user, rotation.new_key, rotation.old_key],
    )?;
    if moved != 1 {
        return Err(StoreError::AccountKeyChanged);
    }
    tx.execute(
        "INSERT INTO account_rotations (user_id, statement, rotated_at) VALUES (?1, ?2, ?3)",
        params![user, rotation.statement, now],
    )?;
    let of_user = "(SELECT id FROM devices WHERE user_id = ?1)";
    tx.execute(
        &format!("DELETE FROM key_packages WHERE device_id IN {of_user}"),
        params![user],
    )?;
    tx.execute(
        &format!("DELETE FROM rotation_keys WHERE device_id IN {of_user}"),
        params![user],
    )?;
    for (device, sealed) in rotation.keys {
        tx.execute(
            "INSERT INTO rotation_keys (device_id, sealed)
             SELECT id, ?3 FROM devices WHERE id = ?1 AND user_id = ?2 AND revoked_at IS NULL",
            params![blob(device.as_bytes()), user, sealed],
        )?;
    }
    Ok(())
}

pub(super) fn account_rotations(conn: &Connection, user: UserId) -> StoreResult<Vec<Vec<u8>>> {
    let mut statement = conn.prepare_cached(
        "SELECT statement FROM account_rotations WHERE user_id = ?1 ORDER BY seq",
    )?;
    let rows = statement
        .query_map(params![blob(user.as_bytes())], |row| row.get(0))?
        .collect::<rusqlite::Result<Vec<Vec<u8>>>>()?;
    Ok(rows)
}

pub(super) fn rotation_keys(conn: &Connection, device: DeviceId) -> StoreResult<Option<Vec<u8>>> {
    Ok(conn
        .query_row(
            "SELECT sealed FROM rotation_keys WHERE device_id = ?1",
            params![blob(device.as_bytes())],
            |row| row.get(0),
        )
        .optional()?)
}

pub(super) fn finish_rotation(tx: &Transaction<'_>, device: DeviceId) -> StoreResult<()> {
    tx.execute(
        "DELETE FROM rotation_keys WHERE device_id = ?1",
        params![blob(device.as_bytes())],
    )?;
    Ok(())
}
