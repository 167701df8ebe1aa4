//! Franking evidence kept with each received message, and reading it back for a report.

use rusqlite::{params, Connection, OptionalExtension};

use super::messages::{message_from_row, MessageRow};
use crate::error::ClientError;

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
    let accepted_at: Option<i64> = row.get(14)?;
    let frank: Option<Vec<u8>> = row.get(15)?;
    let key_id: Option<i64> = row.get(16)?;
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
    payload, aad, hidden, notice, history, accepted_at, frank, frank_key_id FROM messages";

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
