//! Helpers every PostgreSQL concern module uses: errors, retried transactions and row
//! conversions.

use parley_protocol::{DeviceId, GroupId, Username};
use sqlx::{Postgres, Transaction};

use crate::{StoreError, StoreResult};

/// Transactions lost to a serialization conflict are retried this many times.
pub(super) const MAX_ATTEMPTS: usize = 10;

pub(super) type Tx<'a> = Transaction<'a, Postgres>;

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        StoreError::Backend(e.to_string())
    }
}

pub(super) fn retryable(error: &StoreError) -> bool {
    matches!(error, StoreError::Backend(text) if text.contains("40001") || text.contains("40P01")
        || text.contains("could not serialize") || text.contains("deadlock detected")
        || text.contains("restart transaction"))
}

pub(super) fn sql_error(e: sqlx::Error) -> StoreError {
    // Keep the SQLSTATE in the message so that `retryable` can see it.
    match &e {
        sqlx::Error::Database(db) => StoreError::Backend(format!(
            "{} ({})",
            db.message(),
            db.code().unwrap_or_default()
        )),
        _ => StoreError::Backend(e.to_string()),
    }
}

/// Runs `$body` in a transaction on `$pool`, again when it loses a serialization conflict.
macro_rules! transaction {
    ($pool:expr, |$tx:ident| $body:expr) => {{
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut $tx = $pool
                .begin()
                .await
                .map_err($crate::postgres::sql::sql_error)?;
            let result: $crate::StoreResult<_> = async { $body }.await;
            let result = match result {
                Ok(value) => $tx
                    .commit()
                    .await
                    .map_err($crate::postgres::sql::sql_error)
                    .map(|_| value),
                Err(e) => {
                    let _ = $tx.rollback().await;
                    Err(e)
                }
            };
            match result {
                Err(e)
                    if $crate::postgres::sql::retryable(&e)
                        && attempt < $crate::postgres::sql::MAX_ATTEMPTS =>
                {
                    ::tokio::time::sleep(::std::time::Duration::from_millis(5 * attempt as u64))
                        .await;
                    continue;
                }
                other => break other,
            }
        }
    }};
}
pub(super) use transaction;

pub(super) fn id<T: AsRef<[u8]>>(value: &T) -> Vec<u8> {
    value.as_ref().to_vec()
}

pub(super) fn device_id(bytes: Vec<u8>) -> StoreResult<DeviceId> {
    DeviceId::from_slice(&bytes).map_err(|e| StoreError::Backend(e.to_string()))
}

pub(super) fn group_id(bytes: Vec<u8>) -> StoreResult<GroupId> {
    GroupId::from_slice(&bytes).map_err(|e| StoreError::Backend(e.to_string()))
}

pub(super) fn username(text: String) -> StoreResult<Username> {
    Username::parse(&text).map_err(|e| StoreError::Backend(e.to_string()))
}
