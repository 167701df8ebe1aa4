//! The whole message log as a history archive (for a new device of the account), and importing
//! one: rows keep their ids, so what the new device also receives live is stored once.

use parley_protocol::v1;
use rusqlite::{params, Connection};

use crate::error::ClientError;

pub fn export_archive(conn: &Connection) -> Result<v1::HistoryArchive, ClientError> {
    let mut chats = conn.prepare(
        "SELECT group_id, kind, name, state, created_at, last_activity, last_read,
                COALESCE((SELECT seconds FROM chat_timers t WHERE t.group_id = chats.group_id
                          ORDER BY from_seq DESC LIMIT 1), 0),
                COALESCE((SELECT MAX(from_seq) FROM chat_timers t WHERE t.group_id = chats.group_id), 0)
         FROM chats ORDER BY created_at",
    )?;
    let chats = chats
        .query_map([], |row| {
            Ok(v1::ArchivedChat {
                group_id: row.get(0)?,
                kind: row.get(1)?,
                name: row.get(2)?,
                state: row.get(3)?,
                created_at_ms: row.get(4)?,
                last_activity_ms: row.get(5)?,
                last_read_ms: row.get(6)?,
                disappear_after_s: row.get(7)?,
                disappear_from_seq: row.get::<_, i64>(8)? as u64,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut messages = conn.prepare(
        "SELECT id, group_id, sender, sender_device, text, sent_at, received_at, group_seq,
                status, payload, aad, hidden, notice, accepted_at, frank, frank_key_id,
                COALESCE((SELECT by_admin FROM message_refs r WHERE r.id = messages.id), 0),
                expires_at
         FROM messages ORDER BY sent_at, id",
    )?;
    let messages = messages
        .query_map([], |row| {
            Ok(v1::ArchivedMessage {
                id: row.get(0)?,
                group_id: row.get(1)?,
                sender: row.get(2)?,
                sender_device: row.get(3)?,
                text: row.get(4)?,
                sent_at_ms: row.get(5)?,
                received_at_ms: row.get(6)?,
                group_seq: row.get::<_, Option<i64>>(7)?.map(|s| s as u64),
                status: row.get(8)?,
                payload: row.get(9)?,
                aad: row.get(10)?,
                hidden: row.get(11)?,
                notice: row.get::<_, Option<String>>(12)?.unwrap_or_default(),
                accepted_at_ms: row.get(13)?,
                frank: row.get(14)?,
                frank_key_id: row.get(15)?,
                by_admin: row.get(16)?,
                expires_at_ms: row.get(17)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let contacts = conn
        .prepare(
            "SELECT username, account_key, COALESCE(verified_key = account_key, 0) FROM contacts",
        )?
        .query_map([], |row| {
            Ok(v1::ArchivedContact {
                username: row.get(0)?,
                account_key: row.get(1)?,
                verified: row.get(2)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let revoked = conn
        .prepare("SELECT username, device_id, revoked_at FROM revoked_devices")?
        .query_map([], |row| {
            Ok(v1::ArchivedRevocation {
                username: row.get(0)?,
                device_id: row.get(1)?,
                revoked_at_ms: row.get(2)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    // Every device of an account backs up under the one recovery key.
    let backup = crate::db::backup_settings(conn)?;
    let (read_receipts, read_receipts_changed) = crate::db::read_receipts_setting(conn)?;
    Ok(v1::HistoryArchive {
        read_receipts_off: !read_receipts,
        read_receipts_changed_ms: read_receipts_changed,
        chats,
        messages,
        contacts,
        revoked,
        backup_id: backup
            .as_ref()
            .map(|b| b.backup_id.clone())
            .unwrap_or_default(),
        backup_key: backup
            .as_ref()
            .map(|b| b.encryption_key.clone())
            .unwrap_or_default(),
        restore_verifier: backup
            .as_ref()
            .map(|b| b.restore_verifier.clone())
            .unwrap_or_default(),
        backup_every_minutes: backup.map_or(0, |b| b.every_minutes),
    })
}

/// Stores an archive's chats and messages, marked as history. A chat already known by its
/// Welcome alone (kind unknown) takes the archive's kind and name. Returns the messages that
/// were new.
pub fn import_archive(conn: &Connection, archive: &v1::HistoryArchive) -> Result<u64, ClientError> {
    for chat in &archive.chats {
        conn.execute(
            "INSERT INTO chats (group_id, kind, name, state, created_at, last_activity, last_read)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT (group_id) DO UPDATE SET kind = excluded.kind, name = excluded.name,
                 last_read = MAX(chats.last_read, excluded.last_read)
             WHERE chats.kind = 0",
            params![
                chat.group_id,
                chat.kind,
                chat.name,
                // A chat the account is no longer in stays closed; the others are open only once
                // this device's Welcome arrives (it inserts them active).
                if chat.state == 0 { 2 } else { chat.state },
                chat.created_at_ms,
                chat.last_activity_ms,
                chat.last_read_ms
            ],
        )?;
    }
    // Each chat's timer as it stands: what arrives from now on falls under it.
    for chat in archive.chats.iter().filter(|c| c.disappear_from_seq > 0) {
        crate::db::record_timer(
            conn,
            &chat.group_id,
            chat.disappear_from_seq,
            chat.disappear_after_s,
        )?;
    }
    // Whom the account trusts (and verified) and what it revoked. The account's pins win over
    // what this device pinned on first sight while it waited (a server could have offered it
    // other keys).
    for contact in &archive.contacts {
        conn.execute(
            "INSERT INTO contacts (username, account_key, pinned_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (username) DO UPDATE SET account_key = excluded.account_key",
            params![contact.username, contact.account_key, crate::db::now_ms()],
        )?;
        if contact.verified {
            crate::db::set_verified(conn, &contact.username, &contact.account_key)?;
        }
    }
    for revoked in &archive.revoked {
        crate::db::insert_revoked(
            conn,
            &revoked.username,
            &revoked.device_id,
            revoked.revoked_at_ms,
        )?;
    }
    let backs_up = [
        &archive.backup_id,
        &archive.backup_key,
        &archive.restore_verifier,
    ]
    .iter()
    .all(|part| part.len() == 32);
    if backs_up && crate::db::backup_settings(conn)?.is_none() {
        crate::db::set_backup(
            conn,
            &crate::db::BackupRow {
                backup_id: archive.backup_id.clone(),
                encryption_key: archive.backup_key.clone(),
                restore_verifier: archive.restore_verifier.clone(),
                every_minutes: archive.backup_every_minutes,
                changed: true,
                last_at: None,
                last_bytes: None,
            },
        )?;
    }
    // The account's settings, unless this device heard of a newer change meanwhile.
    crate::db::set_read_receipts(
        conn,
        !archive.read_receipts_off,
        archive.read_receipts_changed_ms,
    )?;
    let mut new = 0;
    for m in &archive.messages {
        let inserted = conn.execute(
            "INSERT OR IGNORE INTO messages
                (id, group_id, sender, sender_device, text, sent_at, received_at, group_seq,
                 status, payload, aad, hidden, notice, accepted_at, frank, frank_key_id, history)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, 1)",
            params![
                m.id,
                m.group_id,
                m.sender,
                m.sender_device,
                m.text,
                m.sent_at_ms,
                m.received_at_ms,
                m.group_seq.map(|s| s as i64),
                m.status,
                m.payload,
                m.aad,
                m.hidden,
                (!m.notice.is_empty()).then_some(m.notice.as_str()),
                m.accepted_at_ms,
                m.frank,
                m.frank_key_id
            ],
        )?;
        if inserted == 1 {
            crate::db::index_references(conn, &m.id, &m.payload, m.by_admin)?;
            crate::db::set_expires_at(conn, &m.id, m.expires_at_ms)?;
        }
        new += inserted as u64;
    }
    Ok(new)
}
