//! Account-key rotations on PostgreSQL: each account's chain of signed rotations
//! (`account_rotations`) and the new key sealed to each remaining device until it takes it up
//! (`rotation_keys`). A rotation is applied inside its revocation's transaction.

use parley_protocol::{DeviceId, UserId};
use sqlx::PgPool;

use super::sql::{id, sql_error, Tx};
use crate::model::*;
use crate::{StoreError, StoreResult};

pub(super) const MIGRATION_9: &str = r#"
CREATE TABLE account_rotations (
    seq         BIGSERIAL PRIMARY KEY,
    user_id     BYTEA NOT NULL REFERENCES users(id),
    statement   BYTEA NOT NULL,
    rotated_at  BIGINT NOT NULL
);
CREATE INDEX account_rotations_user ON account_rotations(user_id, seq);
CREATE TABLE rotation_keys (
    device_id   BYTEA PRIMARY KEY REFERENCES devices(id),
    sealed      BYTEA NOT NULL
);
"#;

/// Moves the account of `by` from `old_key` to `new_key`: its KeyPackages (all under the old
/// key) go, and each named remaining device gets its sealed keys.
pub(super) async fn rotate(
    tx: &mut Tx<'_>,
    by: DeviceId,
    rotation: NewRotation,
    now: Millis,
) -> StoreResult<()> {
    let user: Vec<u8> = sqlx::query_scalar("SELECT user_id FROM devices WHERE id = $1")
        .bind(id(by.as_bytes()))
        .fetch_one(&mut **tx)
        .await
        .map_err(sql_error)?;
    let moved = sqlx::query("UPDATE users SET account_key = $2 WHERE id = $1 AND account_key = $3")
        .bind(&user)
        .bind(&rotation.new_key)
        .bind(&rotation.old_key)
        .execute(&mut **tx)
        .await
        .map_err(sql_error)?;
    if moved.rows_affected() != 1 {
        return Err(StoreError::AccountKeyChanged);
    }
    sqlx::query(
        "INSERT INTO account_rotations (user_id, statement, rotated_at) VALUES ($1, $2, $3)",
    )
    .bind(&user)
    .bind(&rotation.statement)
    .bind(now)
    .execute(&mut **tx)
    .await
    .map_err(sql_error)?;
    for table in ["key_packages", "rotation_keys"] {
        sqlx::query(&format!(
            "DELETE FROM {table} WHERE device_id IN (SELECT id FROM devices WHERE user_id = $1)"
        ))
        .bind(&user)
        .execute(&mut **tx)
        .await
        .map_err(sql_error)?;
    }
    for (device, sealed) in rotation.keys {
        sqlx::query(
            "INSERT INTO rotation_keys (device_id, sealed)
             SELECT id, $3 FROM devices WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL",
        )
        .bind(id(device.as_bytes()))
        .bind(&user)
        .bind(&sealed)
        .execute(&mut **tx)
        .await
        .map_err(sql_error)?;
    }
    Ok(())
}

pub(super) async fn account_rotations(pool: &PgPool, user: UserId) -> StoreResult<Vec<Vec<u8>>> {
    sqlx::query_scalar("SELECT statement FROM account_rotations WHERE user_id = $1 ORDER BY seq")
        .bind(id(user.as_bytes()))
        .fetch_all(pool)
        .await
        .map_err(sql_error)
}

pub(super) async fn rotation_keys(pool: &PgPool, device: DeviceId) -> StoreResult<Option<Vec<u8>>> {
    sqlx::query_scalar("SELECT sealed FROM rotation_keys WHERE device_id = $1")
        .bind(id(device.as_bytes()))
        .fetch_optional(pool)
        .await
        .map_err(sql_error)
}

pub(super) async fn finish_rotation(pool: &PgPool, device: DeviceId) -> StoreResult<()> {
    sqlx::query("DELETE FROM rotation_keys WHERE device_id = $1")
        .bind(id(device.as_bytes()))
        .execute(pool)
        .await
        .map_err(sql_error)?;
    Ok(())
}
