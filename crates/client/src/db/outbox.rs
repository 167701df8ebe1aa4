//! The outbox: our submissions (application messages, commits, proposals) in order, until the
//! server acknowledges or refuses them.

use rusqlite::{params, Connection, OptionalExtension};

use crate::error::ClientError;

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
