//! KeyPackages on SQLite: the `key_packages` table, each device's one-time packages and its
//! last-resort one.

use parley_protocol::DeviceId;
use rusqlite::{params, Connection, OptionalExtension, Transaction};

use super::sql::blob;
use crate::model::*;
use crate::{StoreError, StoreResult};

pub(super) const MIGRATION_1: &str = r#"
CREATE TABLE key_packages (
    id           INTEGER PRIMARY KEY,
    device_id    BLOB NOT NULL REFERENCES devices(id),
    last_resort  INTEGER NOT NULL,
    data         BLOB NOT NULL
);
CREATE INDEX key_packages_device ON key_packages(device_id, last_resort, id);
"#;

pub(super) fn count_key_packages(
    conn: &Connection,
    device: &DeviceId,
) -> StoreResult<KeyPackageCount> {
    let (one_time, last_resort): (i64, i64) = conn.query_row(
        "SELECT COALESCE(SUM(last_resort = 0), 0), COALESCE(SUM(last_resort = 1), 0)
         FROM key_packages WHERE device_id = ?1",
        params![blob(device.as_bytes())],
        |row| Ok((row.get(0)?, row.get(1)?)),
    )?;
    Ok(KeyPackageCount {
        one_time: one_time as u32,
        has_last_resort: last_resort > 0,
    })
}

pub(super) fn add_key_packages(
    tx: &Transaction<'_>,
    device: DeviceId,
    one_time: Vec<Vec<u8>>,
    last_resort: Option<Vec<u8>>,
) -> StoreResult<KeyPackageCount> {
    let before = count_key_packages(tx, &device)?;
    if before.one_time as usize + one_time.len()
        > parley_protocol::limits::MAX_KEY_PACKAGES_PER_DEVICE
    {
        return Err(StoreError::TooManyKeyPackages);
    }
    let mut insert = tx.prepare_cached(
        "INSERT INTO key_packages (device_id, last_resort, data) VALUES (?1, ?2, ?3)",
    )?;
    for package in &one_time {
        insert.execute(params![blob(device.as_bytes()), 0, package])?;
    }
    if let Some(package) = &last_resort {
        tx.execute(
            "DELETE FROM key_packages WHERE device_id = ?1 AND last_resort = 1",
            params![blob(device.as_bytes())],
        )?;
        insert.execute(params![blob(device.as_bytes()), 1, package])?;
    }
    let account_bytes: i64 = tx.query_row(
        "SELECT COALESCE(SUM(length(data)), 0) FROM key_packages WHERE device_id IN
             (SELECT id FROM devices WHERE user_id = (SELECT user_id FROM devices WHERE id = ?1))",
        params![blob(device.as_bytes())],
        |row| row.get(0),
    )?;
    if account_bytes as u64 > parley_protocol::limits::MAX_KEY_PACKAGE_BYTES_PER_ACCOUNT {
        return Err(StoreError::TooManyKeyPackages);
    }
    count_key_packages(tx, &device)
}

/// Must run as a write job: the writer serializes claims, so a one-time package goes out once.
pub(super) fn claim_key_package(
    tx: &Transaction<'_>,
    device: DeviceId,
) -> StoreResult<Option<ClaimedKeyPackage>> {
    let one_time = tx
        .query_row(
            "DELETE FROM key_packages WHERE id = (
                SELECT id FROM key_packages WHERE device_id = ?1 AND last_resort = 0
                ORDER BY id LIMIT 1)
             RETURNING data",
            params![blob(device.as_bytes())],
            |row| row.get::<_, Vec<u8>>(0),
        )
        .optional()?;
    if let Some(data) = one_time {
        return Ok(Some(ClaimedKeyPackage {
            device_id: device,
            data,
            last_resort: false,
        }));
    }
    let last_resort = tx
        .query_row(
            "SELECT data FROM key_packages WHERE device_id = ?1 AND last_resort = 1",
            params![blob(device.as_bytes())],
            |row| row.get::<_, Vec<u8>>(0),
        )
        .optional()?;
    Ok(last_resort.map(|data| ClaimedKeyPackage {
        device_id: device,
        data,
        last_resort: true,
    }))
}

/// Must run as a write job, like [`claim_key_package`]; an error rolls the job back.
pub(super) fn claim_key_packages(
    tx: &Transaction<'_>,
    users: Vec<Vec<DeviceId>>,
) -> StoreResult<Vec<Vec<ClaimedKeyPackage>>> {
    let mut claimed = Vec::with_capacity(users.len());
    for (index, devices) in users.into_iter().enumerate() {
        let mut packages = Vec::with_capacity(devices.len());
        for device in devices {
            packages.extend(claim_key_package(tx, device)?);
        }
        if packages.is_empty() {
            return Err(StoreError::NoKeyPackage(index));
        }
        claimed.push(packages);
    }
    Ok(claimed)
}
