//! Helpers every SQLite concern module uses: cached statements and row conversions.

use parley_protocol::DeviceId;
use rusqlite::Connection;

/// Runs a statement through the connection's statement cache: parsing SQL costs more than
/// running these small statements, and the hot paths run them for every message.
pub(super) fn exec(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> rusqlite::Result<usize> {
    conn.prepare_cached(sql)?.execute(params)
}

/// [`exec`] for a statement that returns one row.
pub(super) fn query_one<T>(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    row: impl FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<T> {
    conn.prepare_cached(sql)?.query_row(params, row)
}

pub(super) fn blob<T: AsRef<[u8]>>(value: &T) -> &[u8] {
    value.as_ref()
}

pub(super) fn device_id(bytes: Vec<u8>) -> rusqlite::Result<DeviceId> {
    DeviceId::from_slice(&bytes).map_err(|e| conversion_error(e.to_string()))
}

pub(super) fn conversion_error(message: String) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Blob, message.into())
}
