//! Receipts (see `presence::receipts`): how far each account has had (`Delivered`) and read
//! (`Read`) each chat, in the group's server order. Our own rows say how far we told the chat,
//! from this device or another of ours. Messages that only carry a receipt or a setting are
//! `transient`: their rows go once the server has them.

use rusqlite::{params, Connection, OptionalExtension};

use crate::error::ClientError;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReceiptKind {
    Delivered = 1,
    Read = 2,
}

/// Moves an account's receipt in a chat forward (never back); true if it moved.
pub fn record_receipt(
    conn: &Connection,
    group_id: &[u8],
    username: &str,
    kind: ReceiptKind,
    up_to_seq: u64,
) -> Result<bool, ClientError> {
    let changed = conn.execute(
        "INSERT INTO receipts (group_id, username, kind, up_to_seq) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (group_id, username, kind) DO UPDATE SET up_to_seq = excluded.up_to_seq
         WHERE excluded.up_to_seq > receipts.up_to_seq",
        params![group_id, username, kind as i64, up_to_seq as i64],
    )?;
    Ok(changed > 0)
}

/// How far an account's receipt of `kind` reaches in a chat (0: none).
pub fn receipt(
    conn: &Connection,
    group_id: &[u8],
    username: &str,
    kind: ReceiptKind,
) -> Result<u64, ClientError> {
    Ok(conn
        .query_row(
            "SELECT up_to_seq FROM receipts WHERE group_id = ?1 AND username = ?2 AND kind = ?3",
            params![group_id, username, kind as i64],
            |row| row.get::<_, i64>(0),
        )
        .optional()?
        .unwrap_or(0) as u64)
}

/// Every account's receipts in a chat but `except`'s: (username, delivered, read), where
/// delivered already counts what was read.
pub fn receipts_in(
    conn: &Connection,
    group_id: &[u8],
    except: &str,
) -> Result<Vec<(String, u64, u64)>, ClientError> {
    let mut statement = conn.prepare_cached(
        "SELECT username,
                MAX(up_to_seq),
                COALESCE(MAX(CASE WHEN kind = 2 THEN up_to_seq END), 0)
         FROM receipts WHERE group_id = ?1 AND username != ?2 GROUP BY username",
    )?;
    let rows = statement
        .query_map(params![group_id, except], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, i64>(1)? as u64,
                row.get::<_, i64>(2)? as u64,
            ))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

/// The newest message of others this device shows in a chat, in server order (id, seq):
/// what a receipt covers. Messages that came with a linked device's history are not counted
/// (their senders heard from our other devices).
pub fn newest_received(
    conn: &Connection,
    group_id: &[u8],
) -> Result<Option<(Vec<u8>, u64)>, ClientError> {
    Ok(conn
        .query_row(
            "SELECT id, group_seq FROM messages
             WHERE group_id = ?1 AND group_seq IS NOT NULL AND status = 2 AND hidden = 0
               AND notice IS NULL AND history = 0
             ORDER BY group_seq DESC LIMIT 1",
            params![group_id],
            |row| Ok((row.get::<_, Vec<u8>>(0)?, row.get::<_, i64>(1)? as u64)),
        )
        .optional()?)
}

/// Marks a chat read up to the message at `up_to_seq` (our other device read it).
pub fn mark_read_up_to(
    conn: &Connection,
    group_id: &[u8],
    up_to_seq: u64,
) -> Result<(), ClientError> {
    conn.execute(
        "UPDATE chats SET last_read = MAX(last_read, COALESCE(
             (SELECT MAX(received_at) FROM messages WHERE group_id = ?1 AND group_seq <= ?2), 0))
         WHERE group_id = ?1",
        params![group_id, up_to_seq as i64],
    )?;
    Ok(())
}

/// A message of ours that only carries a receipt or a setting: its row goes once sent.
pub fn mark_transient(conn: &Connection, message_id: &[u8]) -> Result<(), ClientError> {
    conn.execute(
        "INSERT OR IGNORE INTO transient_messages (id) VALUES (?1)",
        params![message_id],
    )?;
    Ok(())
}

/// Forgets the transient messages the server has.
pub fn forget_sent_transients(conn: &Connection) -> Result<(), ClientError> {
    conn.execute(
        "DELETE FROM messages WHERE status = 1 AND id IN (SELECT id FROM transient_messages)",
        [],
    )?;
    conn.execute(
        "DELETE FROM transient_messages WHERE id NOT IN (SELECT id FROM messages)",
        [],
    )?;
    Ok(())
}

/// Whether this account sends read receipts (and so sees others').
pub fn read_receipts_on(conn: &Connection) -> Result<bool, ClientError> {
    Ok(conn.query_row("SELECT read_receipts FROM account", [], |row| row.get(0))?)
}

/// The account's read receipts and when they were last changed.
pub fn read_receipts_setting(conn: &Connection) -> Result<(bool, i64), ClientError> {
    Ok(conn.query_row(
        "SELECT read_receipts, read_receipts_changed FROM account",
        [],
        |row| Ok((row.get(0)?, row.get(1)?)),
    )?)
}

/// Sets the account's read receipts as of `at`; an older change (another device's, arriving
/// late) loses. True if it applied.
pub fn set_read_receipts(conn: &Connection, on: bool, at: i64) -> Result<bool, ClientError> {
    let changed = conn.execute(
        "UPDATE account SET read_receipts = ?1, read_receipts_changed = ?2
         WHERE read_receipts_changed <= ?2",
        params![on, at],
    )?;
    Ok(changed > 0)
}
