//! Messages that refer to others (MIMI's model): replies, edits, deletes and reactions. An edit,
//! delete or reaction is a hidden row of `messages` (its franked evidence) and a row here,
//! indexed by its target; what a message shows is worked out from both when it is read
//! (`crate::content`), so the order in which they arrived does not matter.

use parley_protocol::v1;
use prost::Message as _;
use rusqlite::{params, Connection};

use crate::error::ClientError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefKind {
    Edit = 1,
    Delete = 2,
    Reaction = 3,
}

impl RefKind {
    fn from_i64(value: i64) -> Option<RefKind> {
        match value {
            1 => Some(RefKind::Edit),
            2 => Some(RefKind::Delete),
            3 => Some(RefKind::Reaction),
            _ => None,
        }
    }
}

/// A message referring to a target, with what the rules need of its own row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefRow {
    pub id: Vec<u8>,
    pub kind: RefKind,
    /// An edit's text, a reaction's emoji; empty once purged.
    pub text: String,
    pub remove: bool,
    /// Sent by a group admin (a delete of someone else's message).
    pub by_admin: bool,
    pub group_id: Vec<u8>,
    pub sender: String,
    /// The server's acceptance time (the send time while ours is on its way).
    pub at: i64,
    pub group_seq: Option<u64>,
}

/// Indexes what a stored message's payload refers to: its reply target, or the target of an
/// edit, delete or reaction. `by_admin` marks a delete sent by a group admin. A payload of
/// another kind (or one already purged) indexes nothing.
pub fn index_references(
    conn: &Connection,
    id: &[u8],
    payload: &[u8],
    by_admin: bool,
) -> Result<(), ClientError> {
    let Ok(payload) = v1::AppPayload::decode(payload) else {
        return Ok(());
    };
    let (target, kind, text, remove) = match payload.body {
        Some(v1::app_payload::Body::Text(text)) => {
            if let Some(reply_to) = text.reply_to.filter(|r| r.len() == 16) {
                conn.execute(
                    "UPDATE messages SET reply_to = ?2 WHERE id = ?1",
                    params![id, reply_to],
                )?;
            }
            return Ok(());
        }
        Some(v1::app_payload::Body::Edit(edit)) => (edit.target, RefKind::Edit, edit.text, false),
        Some(v1::app_payload::Body::Delete(delete)) => {
            (delete.target, RefKind::Delete, String::new(), false)
        }
        Some(v1::app_payload::Body::Reaction(reaction)) => (
            reaction.target,
            RefKind::Reaction,
            reaction.emoji,
            reaction.remove,
        ),
        _ => return Ok(()),
    };
    conn.execute(
        "INSERT OR IGNORE INTO message_refs (id, target, kind, text, remove, by_admin)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![id, target, kind as i64, text, remove, by_admin],
    )?;
    Ok(())
}

/// The message a stored message answers, if any.
pub fn reply_to(conn: &Connection, id: &[u8]) -> Result<Option<Vec<u8>>, ClientError> {
    use rusqlite::OptionalExtension as _;
    Ok(conn
        .query_row(
            "SELECT reply_to FROM messages WHERE id = ?1",
            params![id],
            |row| row.get(0),
        )
        .optional()?
        .flatten())
}

/// When the server accepted a message (its send time while ours is on its way).
pub fn acceptance_time(conn: &Connection, id: &[u8]) -> Result<Option<i64>, ClientError> {
    use rusqlite::OptionalExtension as _;
    Ok(conn
        .query_row(
            "SELECT COALESCE(accepted_at, sent_at) FROM messages WHERE id = ?1",
            params![id],
            |row| row.get(0),
        )
        .optional()?)
}

/// Every message referring to `target`, in no particular order. Ours that the server refused
/// for good are left out.
pub fn refs_to(conn: &Connection, target: &[u8]) -> Result<Vec<RefRow>, ClientError> {
    let mut statement = conn.prepare_cached(
        "SELECT r.id, r.kind, r.text, r.remove, r.by_admin, m.group_id, m.sender,
                COALESCE(m.accepted_at, m.sent_at), m.group_seq
         FROM message_refs r JOIN messages m ON m.id = r.id
         WHERE r.target = ?1 AND m.status != 3",
    )?;
    let rows = statement.query_map(params![target], |row| {
        Ok((
            row.get::<_, Vec<u8>>(0)?,
            row.get::<_, i64>(1)?,
            row.get::<_, String>(2)?,
            row.get::<_, bool>(3)?,
            row.get::<_, bool>(4)?,
            row.get::<_, Vec<u8>>(5)?,
            row.get::<_, String>(6)?,
            row.get::<_, i64>(7)?,
            row.get::<_, Option<i64>>(8)?,
        ))
    })?;
    let mut refs = Vec::new();
    for row in rows {
        let (id, kind, text, remove, by_admin, group_id, sender, at, seq) = row?;
        if let Some(kind) = RefKind::from_i64(kind) {
            refs.push(RefRow {
                id,
                kind,
                text,
                remove,
                by_admin,
                group_id,
                sender,
                at,
                group_seq: seq.map(|s| s as u64),
            });
        }
    }
    Ok(refs)
}

/// Targets with edits or deletes accepted before `before` that were not purged yet: the
/// candidates for [`purge_texts`].
pub fn purge_candidates(conn: &Connection, before: i64) -> Result<Vec<Vec<u8>>, ClientError> {
    let mut statement = conn.prepare(
        "SELECT DISTINCT r.target FROM message_refs r JOIN messages m ON m.id = r.id
         WHERE r.kind IN (1, 2) AND r.purged = 0 AND COALESCE(m.accepted_at, m.sent_at) < ?1",
    )?;
    let rows = statement.query_map(params![before], |row| row.get(0))?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

/// Forgets the texts of these messages (an original or edits): the text and the payload that
/// carried it. Their ids, senders and times stay, so that what refers to them still resolves.
pub fn purge_texts(conn: &Connection, ids: &[Vec<u8>]) -> Result<(), ClientError> {
    for id in ids {
        conn.execute(
            "UPDATE messages SET text = '', payload = x'' WHERE id = ?1 AND (text != '' OR payload != x'')",
            params![id],
        )?;
        conn.execute(
            "UPDATE message_refs SET text = '', purged = 1 WHERE id = ?1 AND kind != 3",
            params![id],
        )?;
    }
    Ok(())
}

/// Marks the refs of `target` accepted before `before` as dealt with by a purge.
pub fn mark_purged(conn: &Connection, target: &[u8], before: i64) -> Result<(), ClientError> {
    conn.execute(
        "UPDATE message_refs SET purged = 1 WHERE target = ?1 AND kind IN (1, 2) AND id IN
            (SELECT id FROM messages WHERE COALESCE(accepted_at, sent_at) < ?2)",
        params![target, before],
    )?;
    Ok(())
}
