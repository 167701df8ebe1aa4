//! The device's local database: account, chats, message log, outbox and sync cursor, beside
//! openmls' own tables in the same SQLite file (so one transaction covers them all).

use rusqlite::{params, Connection, OptionalExtension};

use crate::ClientError;

const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE account (
    id             INTEGER PRIMARY KEY CHECK (id = 1),
    server         TEXT NOT NULL,
    username       TEXT NOT NULL,
    user_id        BLOB NOT NULL,
    device_id      BLOB NOT NULL,
    signature_key  BLOB NOT NULL,
    token          TEXT,
    cursor         INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE chats (
    group_id      BLOB PRIMARY KEY,
    kind          INTEGER NOT NULL,   -- 0 unknown yet, 1 direct, 2 group
    name          TEXT NOT NULL,      -- peer username (direct) or group name
    state         INTEGER NOT NULL,   -- 0 active, 1 leaving, 2 removed
    created_at    INTEGER NOT NULL,
    last_activity INTEGER NOT NULL
);
CREATE INDEX chats_name ON chats(kind, name);
CREATE TABLE messages (
    id             BLOB PRIMARY KEY,  -- the message id: redelivery is a no-op
    group_id       BLOB NOT NULL,
    sender         TEXT NOT NULL,
    sender_device  BLOB NOT NULL,
    text           TEXT NOT NULL,
    sent_at        INTEGER NOT NULL,
    received_at    INTEGER NOT NULL,
    group_seq      INTEGER,
    status         INTEGER NOT NULL,  -- see MessageStatus
    payload        BLOB NOT NULL,     -- the exact AppPayload bytes (franking evidence)
    aad            BLOB NOT NULL,
    hidden         INTEGER NOT NULL DEFAULT 0  -- chat metadata, not a message to show
);
CREATE INDEX messages_chat ON messages(group_id, sent_at);
-- Received messages whose franking tag or sender did not verify: kept aside, never shown.
CREATE TABLE unverifiable (
    queue_seq    INTEGER PRIMARY KEY,
    group_id     BLOB NOT NULL,
    sender       TEXT NOT NULL,
    reason       TEXT NOT NULL,
    received_at  INTEGER NOT NULL
);
CREATE TABLE outbox (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id   BLOB NOT NULL UNIQUE,
    group_id     BLOB NOT NULL,
    kind         INTEGER NOT NULL,    -- see OutboxKind
    mls          BLOB NOT NULL,
    welcome      BLOB,
    epoch        INTEGER NOT NULL
);
"#,
    r#"
-- Franking evidence kept with each received message, for reports.
ALTER TABLE messages ADD COLUMN accepted_at INTEGER;
ALTER TABLE messages ADD COLUMN frank BLOB;
ALTER TABLE messages ADD COLUMN frank_key_id INTEGER;
CREATE INDEX messages_seq ON messages(group_id, group_seq);
CREATE TABLE blocked (
    username    TEXT PRIMARY KEY,
    blocked_at  INTEGER NOT NULL
);
"#,
    r#"
-- What the user has seen: messages received after this time count as unread.
ALTER TABLE chats ADD COLUMN last_read INTEGER NOT NULL DEFAULT 0;
"#,
];

pub fn migrate(conn: &mut Connection) -> Result<(), ClientError> {
    let applied: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
    let tx = conn.transaction()?;
    for (index, migration) in MIGRATIONS.iter().enumerate().skip(applied.max(0) as usize) {
        tx.execute_batch(migration)?;
        tx.pragma_update(None, "user_version", (index + 1) as i64)?;
    }
    tx.commit()?;
    Ok(())
}

#[derive(Debug, Clone)]
pub struct AccountRow {
    pub server: String,
    pub username: String,
    pub user_id: Vec<u8>,
    pub device_id: Vec<u8>,
    pub signature_key: Vec<u8>,
    pub token: Option<String>,
}

pub fn account(conn: &Connection) -> Result<Option<AccountRow>, ClientError> {
    Ok(conn
        .query_row(
            "SELECT server, username, user_id, device_id, signature_key, token FROM account WHERE id = 1",
            [],
            |row| {
                Ok(AccountRow {
                    server: row.get(0)?,
                    username: row.get(1)?,
                    user_id: row.get(2)?,
                    device_id: row.get(3)?,
                    signature_key: row.get(4)?,
                    token: row.get(5)?,
                })
            },
        )
        .optional()?)
}

pub fn insert_account(conn: &Connection, account: &AccountRow) -> Result<(), ClientError> {
    conn.execute(
        "INSERT INTO account (id, server, username, user_id, device_id, signature_key, token)
         VALUES (1, ?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            account.server,
            account.username,
            account.user_id,
            account.device_id,
            account.signature_key,
            account.token
        ],
    )?;
    Ok(())
}

pub fn set_token(conn: &Connection, token: &str) -> Result<(), ClientError> {
    conn.execute("UPDATE account SET token = ?1 WHERE id = 1", params![token])?;
    Ok(())
}

pub fn set_server(conn: &Connection, server: &str) -> Result<(), ClientError> {
    conn.execute(
        "UPDATE account SET server = ?1 WHERE id = 1",
        params![server],
    )?;
    Ok(())
}

pub fn cursor(conn: &Connection) -> Result<u64, ClientError> {
    Ok(
        conn.query_row("SELECT cursor FROM account WHERE id = 1", [], |row| {
            row.get::<_, i64>(0)
        })? as u64,
    )
}

pub fn set_cursor(conn: &Connection, cursor: u64) -> Result<(), ClientError> {
    conn.execute(
        "UPDATE account SET cursor = MAX(cursor, ?1) WHERE id = 1",
        params![cursor as i64],
    )?;
    Ok(())
}

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
}

/// Inserts a message unless one with its id is already there. Returns whether it was new.
pub fn insert_message(conn: &Connection, m: &MessageRow) -> Result<bool, ClientError> {
    let inserted = conn.execute(
        "INSERT OR IGNORE INTO messages
            (id, group_id, sender, sender_device, text, sent_at, received_at, group_seq, status, payload, aad, hidden)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
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
            m.hidden
        ],
    )?;
    Ok(inserted == 1)
}

pub fn set_message_sent(conn: &Connection, id: &[u8], group_seq: u64) -> Result<(), ClientError> {
    conn.execute(
        "UPDATE messages SET status = ?2, group_seq = ?3 WHERE id = ?1",
        params![id, MessageStatus::Sent as i64, group_seq as i64],
    )?;
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
    "id, group_id, sender, sender_device, text, sent_at, received_at, group_seq, status, payload, aad, hidden FROM messages";

fn message_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<MessageRow> {
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

pub fn last_message(conn: &Connection, group_id: &[u8]) -> Result<Option<MessageRow>, ClientError> {
    Ok(conn
        .query_row(
            &format!("SELECT {MESSAGE_COLUMNS} WHERE group_id = ?1 AND hidden = 0 ORDER BY sent_at DESC, rowid DESC LIMIT 1"),
            params![group_id],
            message_from_row,
        )
        .optional()?)
}

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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutboxKind {
    Application = 1,
    Commit = 2,
    Proposal = 3,
}

impl OutboxKind {
    fn from_i64(value: i64) -> OutboxKind {
        match value {
            2 => OutboxKind::Commit,
            3 => OutboxKind::Proposal,
            _ => OutboxKind::Application,
        }
    }
}

#[derive(Debug, Clone)]
pub struct OutboxRow {
    pub seq: i64,
    pub message_id: Vec<u8>,
    pub group_id: Vec<u8>,
    pub kind: OutboxKind,
    pub mls: Vec<u8>,
    pub welcome: Option<Vec<u8>>,
    pub epoch: u64,
}

pub fn push_outbox(
    conn: &Connection,
    message_id: &[u8],
    group_id: &[u8],
    kind: OutboxKind,
    mls: &[u8],
    welcome: Option<&[u8]>,
    epoch: u64,
) -> Result<(), ClientError> {
    conn.execute(
        "INSERT INTO outbox (message_id, group_id, kind, mls, welcome, epoch) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![message_id, group_id, kind as i64, mls, welcome, epoch as i64],
    )?;
    Ok(())
}

pub fn replace_outbox_mls(
    conn: &Connection,
    seq: i64,
    mls: &[u8],
    epoch: u64,
) -> Result<(), ClientError> {
    conn.execute(
        "UPDATE outbox SET mls = ?2, epoch = ?3 WHERE seq = ?1",
        params![seq, mls, epoch as i64],
    )?;
    Ok(())
}

const OUTBOX_COLUMNS: &str = "seq, message_id, group_id, kind, mls, welcome, epoch FROM outbox";

fn outbox_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<OutboxRow> {
    Ok(OutboxRow {
        seq: row.get(0)?,
        message_id: row.get(1)?,
        group_id: row.get(2)?,
        kind: OutboxKind::from_i64(row.get(3)?),
        mls: row.get(4)?,
        welcome: row.get(5)?,
        epoch: row.get::<_, i64>(6)? as u64,
    })
}

pub fn outbox(conn: &Connection) -> Result<Vec<OutboxRow>, ClientError> {
    let mut statement = conn.prepare(&format!("SELECT {OUTBOX_COLUMNS} ORDER BY seq"))?;
    let rows = statement.query_map([], outbox_from_row)?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

/// One outbox entry as it is now (re-encryption may have replaced its ciphertext).
pub fn outbox_entry(conn: &Connection, seq: i64) -> Result<Option<OutboxRow>, ClientError> {
    Ok(conn
        .query_row(
            &format!("SELECT {OUTBOX_COLUMNS} WHERE seq = ?1"),
            params![seq],
            outbox_from_row,
        )
        .optional()?)
}

pub fn outbox_is_empty(conn: &Connection) -> Result<bool, ClientError> {
    Ok(
        !conn.query_row("SELECT EXISTS(SELECT 1 FROM outbox)", [], |row| {
            row.get::<_, bool>(0)
        })?,
    )
}

pub fn delete_outbox(conn: &Connection, seq: i64) -> Result<(), ClientError> {
    conn.execute("DELETE FROM outbox WHERE seq = ?1", params![seq])?;
    Ok(())
}

pub fn outbox_has_group(
    conn: &Connection,
    group_id: &[u8],
    kind: OutboxKind,
) -> Result<bool, ClientError> {
    Ok(conn.query_row(
        "SELECT EXISTS(SELECT 1 FROM outbox WHERE group_id = ?1 AND kind = ?2)",
        params![group_id, kind as i64],
        |row| row.get(0),
    )?)
}

/// The franking evidence of a received message: what the server bound its tag to.
#[derive(Debug, Clone)]
pub struct Franked {
    pub accepted_at: i64,
    pub frank: Vec<u8>,
    pub key_id: u32,
}

pub fn set_franking(conn: &Connection, id: &[u8], franked: &Franked) -> Result<(), ClientError> {
    conn.execute(
        "UPDATE messages SET accepted_at = ?2, frank = ?3, frank_key_id = ?4 WHERE id = ?1",
        params![
            id,
            franked.accepted_at,
            franked.frank,
            franked.key_id as i64
        ],
    )?;
    Ok(())
}

/// A message with its franking evidence, for a report.
pub struct Evidence {
    pub message: MessageRow,
    pub franked: Option<Franked>,
}

fn evidence_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Evidence> {
    let message = message_from_row(row)?;
    let accepted_at: Option<i64> = row.get(12)?;
    let frank: Option<Vec<u8>> = row.get(13)?;
    let key_id: Option<i64> = row.get(14)?;
    let franked = match (accepted_at, frank, key_id) {
        (Some(accepted_at), Some(frank), Some(key_id)) => Some(Franked {
            accepted_at,
            frank,
            key_id: key_id as u32,
        }),
        _ => None,
    };
    Ok(Evidence { message, franked })
}

const EVIDENCE_COLUMNS: &str =
    "id, group_id, sender, sender_device, text, sent_at, received_at, group_seq, status, \
    payload, aad, hidden, accepted_at, frank, frank_key_id FROM messages";

pub fn evidence(conn: &Connection, id: &[u8]) -> Result<Option<Evidence>, ClientError> {
    Ok(conn
        .query_row(
            &format!("SELECT {EVIDENCE_COLUMNS} WHERE id = ?1"),
            params![id],
            evidence_from_row,
        )
        .optional()?)
}

/// Up to `count` franked messages of the group just before and just after `group_seq`.
pub fn neighbours(
    conn: &Connection,
    group_id: &[u8],
    group_seq: u64,
    count: u32,
) -> Result<Vec<Evidence>, ClientError> {
    let mut out = Vec::new();
    for (condition, order) in [("group_seq < ?2", "DESC"), ("group_seq > ?2", "ASC")] {
        let mut statement = conn.prepare(&format!(
            "SELECT {EVIDENCE_COLUMNS} WHERE group_id = ?1 AND {condition} AND frank IS NOT NULL AND hidden = 0
             ORDER BY group_seq {order} LIMIT ?3"
        ))?;
        let rows = statement.query_map(
            params![group_id, group_seq as i64, count as i64],
            evidence_from_row,
        )?;
        out.extend(rows.collect::<rusqlite::Result<Vec<_>>>()?);
    }
    out.sort_by_key(|e| e.message.group_seq);
    out.truncate(count as usize);
    Ok(out)
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
