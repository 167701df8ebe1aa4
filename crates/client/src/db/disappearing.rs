//! Disappearing messages: each chat's timer, as it changed at positions of the group's server
//! order (`chat_timers`), and when each message goes (`messages.expires_at`). A message takes
//! the timer in force before its position, counted from the server's acceptance time, so that
//! every device computes the same time. Purging deletes the message, what refers to it, and
//! its attachments' keys; with `secure_delete` and a checkpoint the bytes are gone.

use parley_protocol::v1;
use prost::Message as _;
use rusqlite::{params, Connection, OptionalExtension};

use super::{MessageRow, MessageStatus, Notice};

use crate::error::ClientError;

/// The timer (seconds, 0: off) for a message at position `seq` of the chat.
pub fn timer_at(conn: &Connection, group_id: &[u8], seq: u64) -> Result<u32, ClientError> {
    Ok(conn
        .query_row(
            "SELECT seconds FROM chat_timers WHERE group_id = ?1 AND from_seq < ?2
             ORDER BY from_seq DESC LIMIT 1",
            params![group_id, seq as i64],
            |row| row.get::<_, i64>(0),
        )
        .optional()?
        .unwrap_or(0) as u32)
}

/// The chat's timer now, and the position it took effect after.
pub fn current_timer(conn: &Connection, group_id: &[u8]) -> Result<(u32, u64), ClientError> {
    Ok(conn
        .query_row(
            "SELECT seconds, from_seq FROM chat_timers WHERE group_id = ?1
             ORDER BY from_seq DESC LIMIT 1",
            params![group_id],
            |row| Ok((row.get::<_, i64>(0)? as u32, row.get::<_, i64>(1)? as u64)),
        )
        .optional()?
        .unwrap_or((0, 0)))
}

/// The timer changed to `seconds` at position `from_seq`. Messages already stored after that
/// position, up to the next change, take it: one of ours may have been accepted after the
/// change before we heard of it, and every device must agree on when it goes.
pub fn record_timer(
    conn: &Connection,
    group_id: &[u8],
    from_seq: u64,
    seconds: u32,
) -> Result<(), ClientError> {
    conn.execute(
        "INSERT OR REPLACE INTO chat_timers (group_id, from_seq, seconds) VALUES (?1, ?2, ?3)",
        params![group_id, from_seq as i64, seconds],
    )?;
    conn.execute(
        "UPDATE messages SET expires_at = CASE WHEN ?3 > 0 THEN accepted_at + ?3 * 1000 END
         WHERE group_id = ?1 AND group_seq > ?2 AND accepted_at IS NOT NULL AND notice IS NULL
           AND group_seq <= COALESCE((SELECT MIN(from_seq) FROM chat_timers
                                      WHERE group_id = ?1 AND from_seq > ?2), group_seq)",
        params![group_id, from_seq as i64, seconds],
    )?;
    Ok(())
}

/// Sets when a message at position `seq`, accepted at `accepted_at`, goes (if the chat's timer
/// was on for it).
pub fn set_expiry(
    conn: &Connection,
    id: &[u8],
    group_id: &[u8],
    seq: u64,
    accepted_at: i64,
) -> Result<(), ClientError> {
    let seconds = timer_at(conn, group_id, seq)?;
    if seconds > 0 {
        conn.execute(
            "UPDATE messages SET expires_at = ?2 WHERE id = ?1",
            params![id, accepted_at + i64::from(seconds) * 1000],
        )?;
    }
    Ok(())
}

/// Sets a message's expiry as another device of the account computed it (history).
pub fn set_expires_at(conn: &Connection, id: &[u8], at: Option<i64>) -> Result<(), ClientError> {
    conn.execute(
        "UPDATE messages SET expires_at = ?2 WHERE id = ?1",
        params![id, at],
    )?;
    Ok(())
}

pub fn expires_at(conn: &Connection, id: &[u8]) -> Result<Option<i64>, ClientError> {
    Ok(conn
        .query_row(
            "SELECT expires_at FROM messages WHERE id = ?1",
            params![id],
            |row| row.get(0),
        )
        .optional()?
        .flatten())
}

/// The earliest time a message goes, if any does.
pub fn next_expiry(conn: &Connection) -> Result<Option<i64>, ClientError> {
    Ok(conn.query_row(
        "SELECT MIN(expires_at) FROM messages WHERE expires_at IS NOT NULL",
        [],
        |row| row.get(0),
    )?)
}

/// Deletes the messages whose time came, with the edits, deletes and reactions that refer to
/// them and the keys of their attachments. Returns the payloads of the messages deleted (their
/// attachments' local files are the caller's to remove).
pub fn purge_expired(conn: &Connection, now: i64) -> Result<Vec<Vec<u8>>, ClientError> {
    let expired: Vec<(Vec<u8>, Vec<u8>)> = conn
        .prepare("SELECT id, payload FROM messages WHERE expires_at <= ?1")?
        .query_map(params![now], |row| Ok((row.get(0)?, row.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    if expired.is_empty() {
        return Ok(Vec::new());
    }
    let tx = conn.unchecked_transaction()?;
    for (id, payload) in &expired {
        // What refers to it goes with it: reactions, edits, a delete.
        tx.execute(
            "DELETE FROM messages WHERE id IN (SELECT id FROM message_refs WHERE target = ?1)",
            params![id],
        )?;
        tx.execute(
            "DELETE FROM message_refs WHERE target = ?1 OR id = ?1",
            params![id],
        )?;
        tx.execute("DELETE FROM messages WHERE id = ?1", params![id])?;
        for attachment in crate::attachments::attachments_of(payload) {
            tx.execute(
                "DELETE FROM attachment_keys WHERE ciphertext_sha256 = ?1",
                params![attachment.ciphertext_sha256],
            )?;
        }
    }
    tx.commit()?;
    Ok(expired.into_iter().map(|(_, payload)| payload).collect())
}

/// The timer a settings payload sets, if it sets one.
pub fn timer_in(payload: &[u8]) -> Option<u32> {
    match v1::AppPayload::decode(payload).ok()?.body? {
        v1::app_payload::Body::Settings(settings) => settings.disappear_after_s,
        _ => None,
    }
}

/// A timer change at position `seq`, by `sender` (its message `id`): recorded, and shown as a
/// line in the chat. The line's id follows from the message's, so that every device of an
/// account has the same one.
pub fn change_timer(
    conn: &Connection,
    change: &MessageRow,
    seq: u64,
    accepted_at: i64,
    seconds: u32,
    own: bool,
) -> Result<(), ClientError> {
    record_timer(conn, &change.group_id, seq, seconds)?;
    let id = timer_notice_id(&change.id);
    super::insert_message(
        conn,
        &MessageRow {
            id,
            group_id: change.group_id.clone(),
            sender: change.sender.clone(),
            sender_device: change.sender_device.clone(),
            text: seconds.to_string(),
            sent_at: accepted_at,
            received_at: accepted_at,
            group_seq: Some(seq),
            // Ours does not count as unread.
            status: if own {
                MessageStatus::Sent
            } else {
                MessageStatus::Received
            },
            payload: Vec::new(),
            aad: Vec::new(),
            hidden: false,
            notice: Some(Notice::Timer),
            history: false,
        },
    )?;
    Ok(())
}

/// One of our messages was accepted at position `seq`: if it changed the chat's timer, the
/// change takes effect there.
pub(super) fn apply_own_timer(
    conn: &Connection,
    row: &MessageRow,
    seq: u64,
    accepted_at: i64,
) -> Result<(), ClientError> {
    if let Some(seconds) = timer_in(&row.payload) {
        change_timer(conn, row, seq, accepted_at, seconds, true)?;
    }
    Ok(())
}

fn timer_notice_id(change: &[u8]) -> Vec<u8> {
    use sha2::{Digest, Sha256};
    Sha256::new()
        .chain_update(b"parley/v1/timer\0")
        .chain_update(change)
        .finalize()[..16]
        .to_vec()
}

/// The chat line of the timer change `change` (a message id).
pub fn notice_for_timer(
    conn: &Connection,
    change: &[u8],
) -> Result<Option<MessageRow>, ClientError> {
    super::message(conn, &timer_notice_id(change))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message_at(conn: &Connection, id: u8, seq: u64, accepted_at: i64) {
        super::super::insert_message(
            conn,
            &MessageRow {
                id: vec![id; 16],
                group_id: vec![1; 16],
                sender: "alice".into(),
                sender_device: vec![2; 16],
                text: format!("message {id}"),
                sent_at: accepted_at,
                received_at: accepted_at,
                group_seq: Some(seq),
                status: MessageStatus::Sent,
                payload: Vec::new(),
                aad: Vec::new(),
                hidden: false,
                notice: None,
                history: false,
            },
        )
        .unwrap();
        conn.execute(
            "UPDATE messages SET accepted_at = ?2 WHERE id = ?1",
            params![vec![id; 16], accepted_at],
        )
        .unwrap();
        set_expiry(conn, &[id; 16], &[1; 16], seq, accepted_at).unwrap();
    }

    #[test]
    fn a_timer_heard_of_late_reaches_the_messages_after_it_and_not_beyond_the_next_change() {
        let home = tempfile::tempdir().unwrap();
        let conn = super::super::open(home.path()).unwrap();
        // Ours at 5 and 8, accepted before we heard of the changes at 3 (on) and 7 (off).
        message_at(&conn, 1, 2, 1_000);
        message_at(&conn, 2, 5, 2_000);
        message_at(&conn, 3, 8, 3_000);
        assert_eq!(expires_at(&conn, &[2; 16]).unwrap(), None);
        record_timer(&conn, &[1; 16], 7, 0).unwrap();
        record_timer(&conn, &[1; 16], 3, 30).unwrap();
        assert_eq!(
            expires_at(&conn, &[1; 16]).unwrap(),
            None,
            "before the change"
        );
        assert_eq!(expires_at(&conn, &[2; 16]).unwrap(), Some(32_000));
        assert_eq!(
            expires_at(&conn, &[3; 16]).unwrap(),
            None,
            "after it was turned off"
        );
        // Off at 3 after all (the change is replaced): nothing goes.
        record_timer(&conn, &[1; 16], 3, 0).unwrap();
        assert_eq!(expires_at(&conn, &[2; 16]).unwrap(), None);
        assert_eq!(purge_expired(&conn, i64::MAX).unwrap().len(), 0);
    }
}
