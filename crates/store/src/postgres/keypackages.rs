//! KeyPackages on PostgreSQL: the `key_packages` table, each device's one-time packages and its
//! last-resort one.

use parley_protocol::DeviceId;
use sqlx::{PgPool, Row};

use super::sql::{id, sql_error, transaction, Tx};
use crate::model::*;
use crate::{StoreError, StoreResult};

pub(super) const MIGRATION_1: &str = r#"
CREATE TABLE key_packages (
    device_id    BYTEA NOT NULL,
    id           BIGSERIAL NOT NULL,
    last_resort  BOOLEAN NOT NULL,
    data         BYTEA NOT NULL,
    PRIMARY KEY (device_id, id)
);
"#;

pub(super) async fn count_key_packages(
    executor: impl sqlx::PgExecutor<'_>,
    device: &DeviceId,
) -> StoreResult<KeyPackageCount> {
    let row = sqlx::query(
        "SELECT COUNT(*) FILTER (WHERE NOT last_resort), COUNT(*) FILTER (WHERE last_resort)
         FROM key_packages WHERE device_id = $1",
    )
    .bind(id(device.as_bytes()))
    .fetch_one(executor)
    .await
    .map_err(sql_error)?;
    let one_time: i64 = row.try_get(0).map_err(sql_error)?;
    let last_resort: i64 = row.try_get(1).map_err(sql_error)?;
    Ok(KeyPackageCount {
        one_time: one_time as u32,
        has_last_resort: last_resort > 0,
    })
}

pub(super) async fn add_key_packages(
    pool: &PgPool,
    device: DeviceId,
    one_time: Vec<Vec<u8>>,
    last_resort: Option<Vec<u8>>,
) -> StoreResult<KeyPackageCount> {
    transaction!(pool, |tx| {
        let before = count_key_packages(&mut *tx, &device).await?;
        if before.one_time as usize + one_time.len()
            > parley_protocol::limits::MAX_KEY_PACKAGES_PER_DEVICE
        {
            return Err(StoreError::TooManyKeyPackages);
        }
        if !one_time.is_empty() {
            sqlx::query(
                "INSERT INTO key_packages (device_id, last_resort, data) SELECT $1, false, d FROM UNNEST($2::bytea[]) AS t(d)",
            )
            .bind(id(device.as_bytes()))
            .bind(&one_time)
            .execute(&mut *tx)
            .await
            .map_err(sql_error)?;
        }
        if let Some(package) = &last_resort {
            sqlx::query("DELETE FROM key_packages WHERE device_id = $1 AND last_resort")
                .bind(id(device.as_bytes()))
                .execute(&mut *tx)
                .await
                .map_err(sql_error)?;
            sqlx::query(
                "INSERT INTO key_packages (device_id, last_resort, data) VALUES ($1, true, $2)",
            )
            .bind(id(device.as_bytes()))
            .bind(package)
            .execute(&mut *tx)
            .await
            .map_err(sql_error)?;
        }
        let account_bytes: i64 = sqlx::query_scalar(
            "SELECT COALESCE(SUM(octet_length(data)), 0)::BIGINT FROM key_packages WHERE device_id IN
                 (SELECT id FROM devices WHERE user_id = (SELECT user_id FROM devices WHERE id = $1))",
        )
        .bind(id(device.as_bytes()))
        .fetch_one(&mut *tx)
        .await
        .map_err(sql_error)?;
        if account_bytes as u64 > parley_protocol::limits::MAX_KEY_PACKAGE_BYTES_PER_ACCOUNT {
            return Err(StoreError::TooManyKeyPackages);
        }
        count_key_packages(&mut *tx, &device).await
    })
}

pub(super) async fn claim_key_package(
    pool: &PgPool,
    device: DeviceId,
) -> StoreResult<Option<ClaimedKeyPackage>> {
    transaction!(pool, |tx| claim_in(&mut tx, device).await)
}

/// One claim for every device of every user in one transaction, or none (see the trait).
pub(super) async fn claim_key_packages(
    pool: &PgPool,
    users: Vec<Vec<DeviceId>>,
) -> StoreResult<Vec<Vec<ClaimedKeyPackage>>> {
    transaction!(pool, |tx| {
        let mut claimed = Vec::with_capacity(users.len());
        for (index, devices) in users.iter().enumerate() {
            let mut packages = Vec::with_capacity(devices.len());
            for device in devices {
                packages.extend(claim_in(&mut tx, *device).await?);
            }
            if packages.is_empty() {
                return Err(StoreError::NoKeyPackage(index));
            }
            claimed.push(packages);
        }
        Ok(claimed)
    })
}

async fn claim_in(tx: &mut Tx<'_>, device: DeviceId) -> StoreResult<Option<ClaimedKeyPackage>> {
    // SKIP LOCKED: concurrent claims take different packages instead of waiting.
    let one_time: Option<Vec<u8>> = sqlx::query_scalar(
        "DELETE FROM key_packages WHERE device_id = $1 AND id = (
            SELECT id FROM key_packages WHERE device_id = $1 AND NOT last_resort
            ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED)
         RETURNING data",
    )
    .bind(id(device.as_bytes()))
    .fetch_optional(&mut **tx)
    .await
    .map_err(sql_error)?;
    if let Some(data) = one_time {
        return Ok(Some(ClaimedKeyPackage {
            device_id: device,
            data,
            last_resort: false,
        }));
    }
    let remaining: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM key_packages WHERE device_id = $1 AND NOT last_resort",
    )
    .bind(id(device.as_bytes()))
    .fetch_one(&mut **tx)
    .await
    .map_err(sql_error)?;
    if remaining > 0 {
        // Others hold the remaining ones right now; try again.
        return Err(StoreError::Backend("key packages busy (40001)".into()));
    }
    let last: Option<Vec<u8>> =
        sqlx::query_scalar("SELECT data FROM key_packages WHERE device_id = $1 AND last_resort")
            .bind(id(device.as_bytes()))
            .fetch_optional(&mut **tx)
            .await
            .map_err(sql_error)?;
    Ok(last.map(|data| ClaimedKeyPackage {
        device_id: device,
        data,
        last_resort: true,
    }))
}
