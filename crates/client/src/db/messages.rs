//! The message log: ours and theirs, keyed by message id so that a redelivery is a no-op.

use rusqlite::{params, Connection, OptionalExtension};

use crate::error::ClientError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageStatus {
    /// Ours, in the outbox.
    Sending = 0,
    /// Ours, acknowledged by the server.
    Sent = 1,
    /// Theirs.
    Received = 2,
    /// Ours, refused by the server for good.
    Failed = 3,
}

impl MessageStatus {
    pub fn from_i64(value: i64) -> MessageStatus {
        match value {
            0 => MessageStatus::Sending,
            1 => MessageStatus::Sent,
            3 => MessageStatus::Failed,
            _ => MessageStatus::Received,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            MessageStatus::Sending => "sending",
            MessageStatus::Sent => "sent",
            MessageStatus::Received => "received",
            MessageStatus::Failed => "failed",
        }
    }
}

/// What happened to us in a chat (a row of the log that is not a text).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice {
    /// `sender` added us to the group.
    Added,
    /// `sender` removed us from the group.
    Removed,
    /// The server's moderators removed us (an external proposal `sender` committed).
    RemovedByModerators,
    /// `sender`'s account key is not the one we pinned: their safety number changed.
    IdentityChanged,
    /// `sender`'s account rotated its key after revoking a device (a chain from our pin): the
    /// new key is pinned, and their safety number changed.
    KeyRotated,
    /// `sender` set the chat's disappearing-message timer to `text` seconds (0: off).
    Timer,
}

impl Notice {
    pub fn as_str(self) -> &'static str {
        match self {
            Notice::Added => "added",
            Notice::Removed => "removed",
            Notice::RemovedByModerators => "removed_by_moderators",
            Notice::IdentityChanged => "identity_changed",
            Notice::KeyRotated => "key_rotated",
            Notice::Timer => "timer",
        }
    }

    fn parse(text: &str) -> Option<Notice> {
        [
            Notice::Added,
            Notice::Removed,
            Notice::RemovedByModerators,
            Notice::IdentityChanged,
            Notice::KeyRotated,
            Notice::Timer,
        ]
        .into_iter()
        .find(|n| n.as_str() == text)
    }
}

#[derive(Debug, Clone)]
pub struct MessageRow {
    pub id: Vec<u8>,
    pub group_id: Vec<u8>,
    pub sender: String,
    pub sender_device: Vec<u8>,
    pub text: String,
    pub sent_at: i64,
    pub received_at: i64,
    pub group_seq: Option<u64>,
    pub status: MessageStatus,
    pub payload: Vec<u8>,
    pub aad: Vec<u8>,
    pub hidden: bool,
    /// Set for a notice instead of a text.
    pub notice: Option<Notice>,
    /// Came in a history archive from another device of the account.
    pub history: bool,
}

/// Inserts a message unless one with its id is already there. Returns whether it was new.
pub fn insert_message(conn: &Connection, m: &MessageRow) -> Result<bool, ClientError> {
    let inserted = conn.execute(
        "INSERT OR IGNORE INTO messages
            (id, group_id, sender, sender_device, text, sent_at, received_at, group_seq, status, payload, aad, hidden, notice)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
        params![
            m.id,
            m.group_id,
            m.sender,
            m.sender_device,
            m.text,
            m.sent_at,
            m.received_at,
            m.group_seq.map(|s| s as i64),
            m.status as i64,
            m.payload,
            m.aad,
            m.hidden,
            m.notice.map(Notice::as_str)
        ],
    )?;
    Ok(inserted == 1)
}

/// Ours, accepted by the server at `accepted_at` (the time edits and deletes count from).
pub fn set_message_sent(
    conn: &Connection,
    id: &[u8],
    group_seq: u64,
    accepted_at: i64,
) -> Result<(), ClientError> {
    conn.execute(
        "UPDATE messages SET status = ?2, group_seq = ?3, accepted_at = ?4 WHERE id = ?1",
        params![
            id,
            MessageStatus::Sent as i64,
            group_seq as i64,
            accepted_at
        ],
    )?;
    // Its place in the server order says which timer it falls under, or whether it is one.
    if let Some(row) = message(conn, id)? {
        super::set_expiry(conn, id, &row.group_id, group_seq, accepted_at)?;
        super::apply_own_timer(conn, &row, group_seq, accepted_at)?;
    }
    Ok(())
}

pub fn set_message_status(
    conn: &Connection,
    id: &[u8],
    status: MessageStatus,
) -> Result<(), ClientError> {
    conn.execute(
        "UPDATE messages SET status = ?2 WHERE id = ?1",
        params![id, status as i64],
    )?;
    Ok(())
}

const MESSAGE_COLUMNS: &str =
    "id, group_id, sender, sender_device, text, sent_at, received_at, group_seq, status, payload, aad, hidden, notice, history FROM messages";

// Evidence rows start with the same columns (see `evidence`).
pub(super) fn message_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<MessageRow> {
    Ok(MessageRow {
        id: row.get(0)?,
        group_id: row.get(1)?,
        sender: row.get(2)?,
        sender_device: row.get(3)?,
        text: row.get(4)?,
        sent_at: row.get(5)?,
        received_at: row.get(6)?,
        group_seq: row.get::<_, Option<i64>>(7)?.map(|s| s as u64),
        status: MessageStatus::from_i64(row.get(8)?),
        payload: row.get(9)?,
        aad: row.get(10)?,
        hidden: row.get(11)?,
        notice: row
            .get::<_, Option<String>>(12)?
            .as_deref()
            .and_then(Notice::parse),
        history: row.get(13)?,
    })
}

pub fn message(conn: &Connection, id: &[u8]) -> Result<Option<MessageRow>, ClientError> {
    Ok(conn
        .query_row(
            &format!("SELECT {MESSAGE_COLUMNS} WHERE id = ?1"),
            params![id],
            message_from_row,
        )
        .optional()?)
}

/// Shown messages (not notices) whose hex id starts with `prefix` (lower-case hex): at most
/// two, enough to tell one from several.
pub fn shown_messages_starting(
    conn: &Connection,
    prefix: &str,
) -> Result<Vec<MessageRow>, ClientError> {
    let mut statement = conn.prepare(&format!(
        "SELECT {MESSAGE_COLUMNS} WHERE lower(hex(id)) LIKE ?1 || '%' AND hidden = 0 AND notice IS NULL LIMIT 2"
    ))?;
    let rows = statement.query_map(params![prefix], message_from_row)?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

/// The last `limit` messages of the given groups, oldest first.
pub fn messages_in(
    conn: &Connection,
    group_ids: &[Vec<u8>],
    limit: u32,
) -> Result<Vec<MessageRow>, ClientError> {
    let mut all = Vec::new();
    let mut statement = conn.prepare(&format!(
        "SELECT {MESSAGE_COLUMNS} WHERE group_id = ?1 AND hidden = 0 ORDER BY sent_at DESC, rowid DESC LIMIT ?2"
    ))?;
    for group in group_ids {
        let rows = statement.query_map(params![group, limit as i64], message_from_row)?;
        all.extend(rows.collect::<rusqlite::Result<Vec<_>>>()?);
    }
    all.sort_by_key(|m| (m.sent_at, m.group_seq));
    let skip = all.len().saturating_sub(limit as usize);
    Ok(all.split_off(skip))
}

/// Whether the log holds anything `username` sent: someone we have heard from.
pub fn has_messages_from(conn: &Connection, username: &str) -> Result<bool, ClientError> {
    Ok(conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM messages WHERE sender = ?1)",
        [username],
        |row| row.get(0),
    )?)
}

pub fn last_message(conn: &Connection, group_id: &[u8]) -> Result<Option<MessageRow>, ClientError> {
    Ok(conn
        .query_row(
            &format!("SELECT {MESSAGE_COLUMNS} WHERE group_id = ?1 AND hidden = 0 ORDER BY sent_at DESC, rowid DESC LIMIT 1"),
            params![group_id],
            message_from_row,
        )
        .optional()?)
}

/// Shows a group's hidden notices (kept back until the group's name was known); returns them.
pub fn reveal_notices(conn: &Connection, group_id: &[u8]) -> Result<Vec<MessageRow>, ClientError> {
    let mut statement = conn.prepare(&format!(
        "SELECT {MESSAGE_COLUMNS} WHERE group_id = ?1 AND hidden = 1 AND notice IS NOT NULL ORDER BY rowid"
    ))?;
    let rows = statement
        .query_map(params![group_id], message_from_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    conn.execute(
        "UPDATE messages SET hidden = 0 WHERE group_id = ?1 AND hidden = 1 AND notice IS NOT NULL",
        params![group_id],
    )?;
    Ok(rows
        .into_iter()
        .map(|row| MessageRow {
            hidden: false,
            ..row
        })
        .collect())
}

/// Messages shown that came as history (from another device or a backup); no notices.
pub fn history_count(conn: &Connection) -> Result<u64, ClientError> {
    let count: i64 = conn.query_row(
        "SELECT COUNT(*) FROM messages WHERE history = 1 AND notice IS NULL AND hidden = 0",
        [],
        |row| row.get(0),
    )?;
    Ok(count as u64)
}
