//! Recovery on the device: backup settings and state (`backup`), chats a restored device has
//! yet to rejoin (`rejoins`), and GroupInfos the server has yet to get (`group_infos_to_share`).

use rusqlite::{params, Connection, OptionalExtension};

use crate::error::ClientError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupRow {
    pub backup_id: Vec<u8>,
    pub encryption_key: Vec<u8>,
    pub restore_verifier: Vec<u8>,
    pub every_minutes: u32,
    /// Something a backup holds changed since the last one was taken.
    pub changed: bool,
    pub last_at: Option<i64>,
    pub last_bytes: Option<u64>,
}

pub fn backup_settings(conn: &Connection) -> Result<Option<BackupRow>, ClientError> {
    Ok(conn
        .query_row(
            "SELECT backup_id, encryption_key, restore_verifier, every_minutes, changed > stored,
                    last_at,
                    last_bytes FROM backup WHERE id = 1",
            [],
            |row| {
                Ok(BackupRow {
                    backup_id: row.get(0)?,
                    encryption_key: row.get(1)?,
                    restore_verifier: row.get(2)?,
                    every_minutes: row.get(3)?,
                    changed: row.get(4)?,
                    last_at: row.get(5)?,
                    last_bytes: row.get::<_, Option<i64>>(6)?.map(|b| b as u64),
                })
            },
        )
        .optional()?)
}

/// Turns backups on (or changes their keys), with a backup due at once.
pub fn set_backup(conn: &Connection, keys: &BackupRow) -> Result<(), ClientError> {
    conn.execute(
        "INSERT INTO backup (id, backup_id, encryption_key, restore_verifier, every_minutes,
                             changed)
         VALUES (1, ?1, ?2, ?3, ?4, 1)
         ON CONFLICT (id) DO UPDATE SET backup_id = excluded.backup_id,
             encryption_key = excluded.encryption_key,
             restore_verifier = excluded.restore_verifier,
             every_minutes = excluded.every_minutes, changed = backup.changed + 1",
        params![
            keys.backup_id,
            keys.encryption_key,
            keys.restore_verifier,
            keys.every_minutes
        ],
    )?;
    Ok(())
}

/// The change count a backup taken now holds (read in the transaction that exports it).
pub fn backup_change_count(conn: &Connection) -> Result<i64, ClientError> {
    Ok(
        conn.query_row("SELECT changed FROM backup WHERE id = 1", [], |row| {
            row.get(0)
        })?,
    )
}

/// A backup holding changes up to `count` is on the server: only later changes make the next
/// one due (a backup that failed leaves it due).
pub fn mark_backup_stored(
    conn: &Connection,
    at: i64,
    bytes: u64,
    count: i64,
) -> Result<(), ClientError> {
    conn.execute(
        "UPDATE backup SET last_at = ?1, last_bytes = ?2, stored = MAX(stored, ?3)",
        params![at, bytes as i64, count],
    )?;
    Ok(())
}

pub fn add_rejoin(conn: &Connection, group_id: &[u8]) -> Result<(), ClientError> {
    conn.execute(
        "INSERT OR IGNORE INTO rejoins (group_id) VALUES (?1)",
        params![group_id],
    )?;
    Ok(())
}

/// A chat to rejoin, and the external commit on its way if one was built.
#[derive(Debug, Clone)]
pub struct RejoinRow {
    pub group_id: Vec<u8>,
    pub sent: Option<(Vec<u8>, Vec<u8>)>,
}

pub fn rejoins(conn: &Connection) -> Result<Vec<RejoinRow>, ClientError> {
    Ok(conn
        .prepare("SELECT group_id, message_id, mls FROM rejoins ORDER BY group_id")?
        .query_map([], |row| {
            let id: Option<Vec<u8>> = row.get(1)?;
            let mls: Option<Vec<u8>> = row.get(2)?;
            Ok(RejoinRow {
                group_id: row.get(0)?,
                sent: id.zip(mls),
            })
        })?
        .collect::<rusqlite::Result<_>>()?)
}

pub fn set_rejoin_commit(
    conn: &Connection,
    group_id: &[u8],
    commit: Option<(&[u8], &[u8])>,
) -> Result<(), ClientError> {
    conn.execute(
        "UPDATE rejoins SET message_id = ?2, mls = ?3 WHERE group_id = ?1",
        params![group_id, commit.map(|c| c.0), commit.map(|c| c.1)],
    )?;
    Ok(())
}

pub fn delete_rejoin(conn: &Connection, group_id: &[u8]) -> Result<(), ClientError> {
    conn.execute("DELETE FROM rejoins WHERE group_id = ?1", params![group_id])?;
    Ok(())
}

pub fn put_group_info_to_share(
    conn: &Connection,
    group_id: &[u8],
    epoch: u64,
    group_info: &[u8],
) -> Result<(), ClientError> {
    conn.execute(
        "INSERT OR REPLACE INTO group_infos_to_share (group_id, epoch, group_info)
         VALUES (?1, ?2, ?3)",
        params![group_id, epoch as i64, group_info],
    )?;
    Ok(())
}

/// A GroupInfo of ours the server has yet to get.
#[derive(Debug, Clone)]
pub struct GroupInfoToShare {
    pub group_id: Vec<u8>,
    pub epoch: u64,
    pub group_info: Vec<u8>,
}

pub fn group_infos_to_share(conn: &Connection) -> Result<Vec<GroupInfoToShare>, ClientError> {
    Ok(conn
        .prepare("SELECT group_id, epoch, group_info FROM group_infos_to_share")?
        .query_map([], |row| {
            Ok(GroupInfoToShare {
                group_id: row.get(0)?,
                epoch: row.get::<_, i64>(1)? as u64,
                group_info: row.get(2)?,
            })
        })?
        .collect::<rusqlite::Result<_>>()?)
}

pub fn delete_group_info_to_share(
    conn: &Connection,
    group_id: &[u8],
    epoch: u64,
) -> Result<(), ClientError> {
    conn.execute(
        "DELETE FROM group_infos_to_share WHERE group_id = ?1 AND epoch = ?2",
        params![group_id, epoch as i64],
    )?;
    Ok(())
}
