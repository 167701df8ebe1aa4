//! What is kept but not shown: received items that failed verification, and blocked accounts.

use rusqlite::{params, Connection};

use crate::error::ClientError;

pub fn insert_unverifiable(
    conn: &Connection,
    queue_seq: u64,
    group_id: &[u8],
    sender: &str,
    reason: &str,
    now: i64,
) -> Result<(), ClientError> {
    conn.execute(
        "INSERT OR IGNORE INTO unverifiable (queue_seq, group_id, sender, reason, received_at)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![queue_seq as i64, group_id, sender, reason, now],
    )?;
    Ok(())
}

pub fn unverifiable_count(conn: &Connection) -> Result<u64, ClientError> {
    Ok(
        conn.query_row("SELECT COUNT(*) FROM unverifiable", [], |row| {
            row.get::<_, i64>(0)
        })? as u64,
    )
}

pub fn block(conn: &Connection, username: &str, now: i64) -> Result<(), ClientError> {
    conn.execute(
        "INSERT OR IGNORE INTO blocked (username, blocked_at) VALUES (?1, ?2)",
        params![username, now],
    )?;
    Ok(())
}

pub fn is_blocked(conn: &Connection, username: &str) -> Result<bool, ClientError> {
    Ok(conn.query_row(
        "SELECT EXISTS(SELECT 1 FROM blocked WHERE username = ?1)",
        params![username],
        |row| row.get(0),
    )?)
}

/// Unblocks an account; returns whether it was blocked.
pub fn unblock(conn: &Connection, username: &str) -> Result<bool, ClientError> {
    Ok(conn.execute("DELETE FROM blocked WHERE username = ?1", params![username])? == 1)
}

/// Blocked accounts, by name.
pub fn blocked(conn: &Connection) -> Result<Vec<String>, ClientError> {
    let mut statement = conn.prepare("SELECT username FROM blocked ORDER BY username")?;
    let rows = statement.query_map([], |row| row.get(0))?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}
