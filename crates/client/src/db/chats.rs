//! Chats: one row per MLS group, with its kind, name, state, activity and read marker.

use rusqlite::{params, Connection, OptionalExtension};

use crate::error::ClientError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChatKind {
    Unknown = 0,
    Direct = 1,
    Group = 2,
}

impl ChatKind {
    fn from_i64(value: i64) -> ChatKind {
        match value {
            1 => ChatKind::Direct,
            2 => ChatKind::Group,
            _ => ChatKind::Unknown,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChatState {
    Active = 0,
    Leaving = 1,
    Removed = 2,
}

impl ChatState {
    fn from_i64(value: i64) -> ChatState {
        match value {
            1 => ChatState::Leaving,
            2 => ChatState::Removed,
            _ => ChatState::Active,
        }
    }
}

#[derive(Debug, Clone)]
pub struct ChatRow {
    pub group_id: Vec<u8>,
    pub kind: ChatKind,
    pub name: String,
    pub state: ChatState,
    pub last_activity: i64,
}

fn chat_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<ChatRow> {
    Ok(ChatRow {
        group_id: row.get(0)?,
        kind: ChatKind::from_i64(row.get(1)?),
        name: row.get(2)?,
        state: ChatState::from_i64(row.get(3)?),
        last_activity: row.get(4)?,
    })
}

const CHAT_COLUMNS: &str = "group_id, kind, name, state, last_activity FROM chats";

pub fn insert_chat(
    conn: &Connection,
    group_id: &[u8],
    kind: ChatKind,
    name: &str,
    now: i64,
) -> Result<(), ClientError> {
    conn.execute(
        "INSERT INTO chats (group_id, kind, name, state, created_at, last_activity)
         VALUES (?1, ?2, ?3, 0, ?4, ?4)
         ON CONFLICT (group_id) DO UPDATE SET state = 0",
        params![group_id, kind as i64, name, now],
    )?;
    Ok(())
}

pub fn chat(conn: &Connection, group_id: &[u8]) -> Result<Option<ChatRow>, ClientError> {
    Ok(conn
        .query_row(
            &format!("SELECT {CHAT_COLUMNS} WHERE group_id = ?1"),
            params![group_id],
            chat_from_row,
        )
        .optional()?)
}

/// The active chat of this kind and name. For a direct chat created by both sides at once, both
/// pick the same one: the lowest group id.
pub fn find_chat(
    conn: &Connection,
    kind: ChatKind,
    name: &str,
) -> Result<Option<ChatRow>, ClientError> {
    let order = if kind == ChatKind::Direct {
        "group_id ASC"
    } else {
        "created_at DESC"
    };
    Ok(conn
        .query_row(
            &format!("SELECT {CHAT_COLUMNS} WHERE kind = ?1 AND name = ?2 AND state = 0 ORDER BY {order} LIMIT 1"),
            params![kind as i64, name],
            chat_from_row,
        )
        .optional()?)
}

/// Every chat of this kind and name, including ones left (history spans them all).
pub fn chats_named(
    conn: &Connection,
    kind: ChatKind,
    name: &str,
) -> Result<Vec<ChatRow>, ClientError> {
    let mut statement = conn.prepare(&format!(
        "SELECT {CHAT_COLUMNS} WHERE kind = ?1 AND name = ?2"
    ))?;
    let rows = statement.query_map(params![kind as i64, name], chat_from_row)?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

pub fn all_chats(conn: &Connection) -> Result<Vec<ChatRow>, ClientError> {
    let mut statement = conn.prepare(&format!(
        "SELECT {CHAT_COLUMNS} ORDER BY last_activity DESC"
    ))?;
    let rows = statement.query_map([], chat_from_row)?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

pub fn set_chat_meta(
    conn: &Connection,
    group_id: &[u8],
    kind: ChatKind,
    name: &str,
) -> Result<(), ClientError> {
    conn.execute(
        "UPDATE chats SET kind = ?2, name = ?3 WHERE group_id = ?1",
        params![group_id, kind as i64, name],
    )?;
    Ok(())
}

pub fn set_chat_state(
    conn: &Connection,
    group_id: &[u8],
    state: ChatState,
) -> Result<(), ClientError> {
    conn.execute(
        "UPDATE chats SET state = ?2 WHERE group_id = ?1",
        params![group_id, state as i64],
    )?;
    Ok(())
}

pub fn touch_chat(conn: &Connection, group_id: &[u8], at: i64) -> Result<(), ClientError> {
    conn.execute(
        "UPDATE chats SET last_activity = MAX(last_activity, ?2) WHERE group_id = ?1",
        params![group_id, at],
    )?;
    Ok(())
}

pub fn mark_read(conn: &Connection, group_ids: &[Vec<u8>], now: i64) -> Result<(), ClientError> {
    for group in group_ids {
        conn.execute(
            "UPDATE chats SET last_read = MAX(last_read, ?2) WHERE group_id = ?1",
            params![group, now],
        )?;
    }
    Ok(())
}

pub fn unread(conn: &Connection, group_id: &[u8]) -> Result<u64, ClientError> {
    Ok(conn.query_row(
        "SELECT COUNT(*) FROM messages m JOIN chats c ON c.group_id = m.group_id
         WHERE m.group_id = ?1 AND m.hidden = 0 AND m.status = 2 AND m.received_at > c.last_read",
        params![group_id],
        |row| row.get::<_, i64>(0),
    )? as u64)
}
