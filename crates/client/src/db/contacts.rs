//! Account keys this device has pinned, by username: the first key seen for an account is
//! trusted (and checked in person through safety numbers); a different key later is an
//! identity change, never silently accepted.

use rusqlite::{params, Connection, OptionalExtension};

use crate::error::ClientError;

/// What pinning a key for a username found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pin {
    /// First sight: the key is now pinned.
    New,
    /// The pinned key.
    Same,
    /// Another key than the pinned one, which stays pinned.
    Changed,
}

pub fn pinned_key(conn: &Connection, username: &str) -> Result<Option<Vec<u8>>, ClientError> {
    Ok(conn
        .query_row(
            "SELECT account_key FROM contacts WHERE username = ?1",
            params![username],
            |row| row.get(0),
        )
        .optional()?)
}

/// Marks `key` as `username`'s key checked in person, if it is still the pinned one.
pub fn set_verified(conn: &Connection, username: &str, key: &[u8]) -> Result<bool, ClientError> {
    Ok(conn.execute(
        "UPDATE contacts SET verified_key = account_key WHERE username = ?1 AND account_key = ?2",
        params![username, key],
    )? == 1)
}

/// Whether the key pinned for `username` is the one the user checked (a later key, even one
/// reached by a verified rotation, asks for a new check).
pub fn is_verified(conn: &Connection, username: &str) -> Result<bool, ClientError> {
    Ok(conn
        .query_row(
            "SELECT verified_key IS NOT NULL AND verified_key = account_key FROM contacts
             WHERE username = ?1",
            params![username],
            |row| row.get(0),
        )
        .optional()?
        .unwrap_or(false))
}

/// The pinned key as an account key (none if unpinned or not 32 bytes).
pub fn pinned_account_key(
    conn: &Connection,
    username: &str,
) -> Result<Option<parley_mls::certificate::AccountPublicKey>, ClientError> {
    Ok(pinned_key(conn, username)?
        .and_then(|k| <[u8; 32]>::try_from(k.as_slice()).ok())
        .map(parley_mls::certificate::AccountPublicKey::from_bytes))
}

/// Remembers that a device of `username` was revoked (by that account's key).
pub fn insert_revoked(
    conn: &Connection,
    username: &str,
    device: &[u8],
    at: i64,
) -> Result<(), ClientError> {
    conn.execute(
        "INSERT OR IGNORE INTO revoked_devices (username, device_id, revoked_at) VALUES (?1, ?2, ?3)",
        params![username, device, at],
    )?;
    Ok(())
}

/// The one device of `username` we know revoked whose hex id starts with `prefix` (four digits
/// or more).
pub fn revoked_matching(
    conn: &Connection,
    username: &str,
    prefix: &str,
) -> Result<Option<String>, ClientError> {
    let prefix = prefix.trim().to_ascii_lowercase();
    if prefix.len() < 4 {
        return Ok(None);
    }
    let mut statement =
        conn.prepare("SELECT device_id FROM revoked_devices WHERE username = ?1")?;
    let matching: Vec<String> = statement
        .query_map(params![username], |row| row.get::<_, Vec<u8>>(0))?
        .collect::<rusqlite::Result<Vec<_>>>()?
        .into_iter()
        .map(hex::encode)
        .filter(|id| id.starts_with(&prefix))
        .collect();
    Ok(match matching.as_slice() {
        [one] => Some(one.clone()),
        _ => None,
    })
}

pub fn is_revoked(conn: &Connection, username: &str, device: &[u8]) -> Result<bool, ClientError> {
    Ok(conn.query_row(
        "SELECT EXISTS(SELECT 1 FROM revoked_devices WHERE username = ?1 AND device_id = ?2)",
        params![username, device],
        |row| row.get(0),
    )?)
}

/// Pins `key` for `username` unless a key is pinned already, and says how `key` compares.
pub fn pin(conn: &Connection, username: &str, key: &[u8], now: i64) -> Result<Pin, ClientError> {
    match pinned_key(conn, username)? {
        Some(pinned) if pinned == key => Ok(Pin::Same),
        Some(_) => Ok(Pin::Changed),
        None => {
            conn.execute(
                "INSERT INTO contacts (username, account_key, pinned_at) VALUES (?1, ?2, ?3)",
                params![username, key, now],
            )?;
            Ok(Pin::New)
        }
    }
}

/// Moves `username`'s pin to `key`: only after a rotation chain from the pinned key verified.
pub fn repin(conn: &Connection, username: &str, key: &[u8], now: i64) -> Result<(), ClientError> {
    conn.execute(
        "UPDATE contacts SET account_key = ?2, pinned_at = ?3 WHERE username = ?1",
        params![username, key, now],
    )?;
    Ok(())
}

/// Remembers rotations followed for `username` (oldest first).
pub fn add_followed(
    conn: &Connection,
    username: &str,
    rotations: &[Vec<u8>],
) -> Result<(), ClientError> {
    for rotation in rotations {
        conn.execute(
            "INSERT OR IGNORE INTO followed_rotations (username, statement) VALUES (?1, ?2)",
            params![username, rotation],
        )?;
    }
    Ok(())
}

/// The rotations followed for `username`, oldest first (the newest `MAX_CHAIN`).
pub fn followed(conn: &Connection, username: &str) -> Result<Vec<Vec<u8>>, ClientError> {
    let mut statement = conn.prepare(
        "SELECT statement FROM (SELECT seq, statement FROM followed_rotations
         WHERE username = ?1 ORDER BY seq DESC LIMIT ?2) ORDER BY seq",
    )?;
    let rows = statement
        .query_map(
            params![username, parley_mls::rotation::MAX_CHAIN as i64],
            |row| row.get(0),
        )?
        .collect::<rusqlite::Result<Vec<Vec<u8>>>>()?;
    Ok(rows)
}
