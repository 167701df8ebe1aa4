//! Moderation on SQLite: the `reports`, `admin_tokens` and append-only `audit_log` tables, and
//! the moderator actions that write the audit log in the same transaction.

use parley_protocol::{GroupId, Username};
use rusqlite::{params, Connection, OptionalExtension, Transaction};

use super::accounts;
use super::sql::{blob, conversion_error, device_id};
use crate::model::*;
use crate::{StoreError, StoreResult};

pub(super) const MIGRATION_2: &str = r#"
CREATE TABLE reports (
    id                   INTEGER PRIMARY KEY,
    status               TEXT NOT NULL,       -- open, actioned, dismissed
    created_at           INTEGER NOT NULL,
    reporter             TEXT NOT NULL,
    accused              TEXT NOT NULL,
    accused_device       BLOB NOT NULL,
    group_id             BLOB NOT NULL,
    group_seq            INTEGER NOT NULL,
    message_accepted_at  INTEGER NOT NULL,
    text                 TEXT NOT NULL,       -- the reported message only, verified by its frank
    reason               TEXT NOT NULL,
    context              TEXT NOT NULL,       -- JSON: neighbouring messages, each verified
    UNIQUE (reporter, group_id, group_seq)
);
CREATE TABLE admin_tokens (
    token_hash  BLOB PRIMARY KEY,
    label       TEXT NOT NULL,
    created_at  INTEGER NOT NULL
);
-- Append-only: every moderator action, never changed or deleted.
CREATE TABLE audit_log (
    id         INTEGER PRIMARY KEY,
    at         INTEGER NOT NULL,
    moderator  TEXT NOT NULL,
    action     TEXT NOT NULL,
    subject    TEXT NOT NULL
);
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
"#;

const REPORT_COLUMNS: &str =
    "id, status, created_at, reporter, accused, accused_device, group_id, group_seq,
    message_accepted_at, text, reason, context";

fn report_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Report> {
    let parse_name =
        |text: String| Username::parse(&text).map_err(|e| conversion_error(e.to_string()));
    let status: String = row.get(1)?;
    let group: Vec<u8> = row.get(6)?;
    Ok(Report {
        id: row.get::<_, i64>(0)? as u64,
        status: ReportStatus::parse(&status).unwrap_or(ReportStatus::Open),
        report: NewReport {
            created_at: row.get(2)?,
            reporter: parse_name(row.get(3)?)?,
            accused: parse_name(row.get(4)?)?,
            accused_device: device_id(row.get(5)?)?,
            group_id: GroupId::from_slice(&group).map_err(|e| conversion_error(e.to_string()))?,
            group_seq: row.get::<_, i64>(7)? as u64,
            message_accepted_at: row.get(8)?,
            text: row.get(9)?,
            reason: row.get(10)?,
            context: row.get(11)?,
        },
    })
}

pub(super) fn append_audit(tx: &Transaction<'_>, entry: &AuditEntry) -> StoreResult<()> {
    tx.execute(
        "INSERT INTO audit_log (at, moderator, action, subject) VALUES (?1, ?2, ?3, ?4)",
        params![entry.at, entry.moderator, entry.action, entry.subject],
    )?;
    Ok(())
}

pub(super) fn create_report(tx: &Transaction<'_>, report: NewReport) -> StoreResult<u64> {
    let inserted = tx.execute(
        "INSERT OR IGNORE INTO reports (status, created_at, reporter, accused, accused_device, group_id,
            group_seq, message_accepted_at, text, reason, context)
         VALUES ('open', ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        params![
            report.created_at,
            report.reporter.as_str(),
            report.accused.as_str(),
            blob(report.accused_device.as_bytes()),
            blob(report.group_id.as_bytes()),
            report.group_seq as i64,
            report.message_accepted_at,
            report.text,
            report.reason,
            report.context
        ],
    )?;
    if inserted == 0 {
        return Err(StoreError::DuplicateReport);
    }
    Ok(tx.last_insert_rowid() as u64)
}

pub(super) fn reports(conn: &Connection, status: Option<ReportStatus>) -> StoreResult<Vec<Report>> {
    let mut statement = conn.prepare(&format!(
        "SELECT {REPORT_COLUMNS} FROM reports WHERE (?1 IS NULL OR status = ?1) ORDER BY id"
    ))?;
    let rows = statement.query_map(params![status.map(|s| s.as_str())], report_from_row)?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

pub(super) fn report(conn: &Connection, id: u64) -> StoreResult<Option<Report>> {
    Ok(conn
        .query_row(
            &format!("SELECT {REPORT_COLUMNS} FROM reports WHERE id = ?1"),
            params![id as i64],
            report_from_row,
        )
        .optional()?)
}

pub(super) fn set_report_status(
    tx: &Transaction<'_>,
    id: u64,
    status: ReportStatus,
    audit: AuditEntry,
) -> StoreResult<bool> {
    let changed = tx.execute(
        "UPDATE reports SET status = ?2 WHERE id = ?1",
        params![id as i64, status.as_str()],
    )?;
    if changed > 0 {
        append_audit(tx, &audit)?;
    }
    Ok(changed > 0)
}

pub(super) fn set_suspended(
    tx: &Transaction<'_>,
    username: &Username,
    suspended: bool,
    audit: AuditEntry,
) -> StoreResult<bool> {
    let changed = accounts::suspend(tx, username, suspended, audit.at)?;
    if changed > 0 {
        append_audit(tx, &audit)?;
    }
    Ok(changed > 0)
}

pub(super) fn add_admin_token(
    tx: &Transaction<'_>,
    token_hash: Vec<u8>,
    label: String,
    now: Millis,
) -> StoreResult<()> {
    tx.execute(
        "INSERT INTO admin_tokens (token_hash, label, created_at) VALUES (?1, ?2, ?3)",
        params![token_hash, label, now],
    )?;
    let entry = AuditEntry {
        at: now,
        moderator: "cli".into(),
        action: "create admin token".into(),
        subject: label,
    };
    append_audit(tx, &entry)
}

/// Console sessions: a random id per sign-in, stored hashed, tied to the token it came from so
/// that revoking the token ends them.
pub(super) const MIGRATION_5: &str = r#"
CREATE TABLE admin_sessions (
    session_hash  BLOB PRIMARY KEY,
    token_hash    BLOB NOT NULL,
    expires_at    INTEGER NOT NULL
);
CREATE INDEX admin_sessions_token ON admin_sessions (token_hash);
"#;

pub(super) fn create_admin_session(
    tx: &Transaction<'_>,
    session_hash: Vec<u8>,
    token_hash: Vec<u8>,
    expires_at: Millis,
    now: Millis,
) -> StoreResult<bool> {
    tx.execute(
        "DELETE FROM admin_sessions WHERE expires_at <= ?1",
        params![now],
    )?;
    let inserted = tx.execute(
        "INSERT INTO admin_sessions (session_hash, token_hash, expires_at)
         SELECT ?1, token_hash, ?3 FROM admin_tokens WHERE token_hash = ?2",
        params![session_hash, token_hash, expires_at],
    )?;
    Ok(inserted == 1)
}

pub(super) fn admin_session(
    conn: &Connection,
    session_hash: &[u8],
    now: Millis,
) -> StoreResult<Option<String>> {
    Ok(conn
        .query_row(
            "SELECT t.label FROM admin_sessions s JOIN admin_tokens t ON t.token_hash = s.token_hash
             WHERE s.session_hash = ?1 AND s.expires_at > ?2",
            params![session_hash, now],
            |row| row.get(0),
        )
        .optional()?)
}

pub(super) fn end_admin_session(tx: &Transaction<'_>, session_hash: &[u8]) -> StoreResult<()> {
    tx.execute(
        "DELETE FROM admin_sessions WHERE session_hash = ?1",
        params![session_hash],
    )?;
    Ok(())
}

pub(super) fn revoke_admin_tokens(
    tx: &Transaction<'_>,
    label: &str,
    audit: &AuditEntry,
) -> StoreResult<u64> {
    tx.execute(
        "DELETE FROM admin_sessions WHERE token_hash IN
           (SELECT token_hash FROM admin_tokens WHERE label = ?1)",
        params![label],
    )?;
    let revoked = tx.execute("DELETE FROM admin_tokens WHERE label = ?1", params![label])?;
    if revoked > 0 {
        append_audit(tx, audit)?;
    }
    Ok(revoked as u64)
}

pub(super) fn admin_token(conn: &Connection, token_hash: &[u8]) -> StoreResult<Option<String>> {
    Ok(conn
        .query_row(
            "SELECT label FROM admin_tokens WHERE token_hash = ?1",
            params![token_hash],
            |row| row.get(0),
        )
        .optional()?)
}

pub(super) fn audit_log(conn: &Connection) -> StoreResult<Vec<AuditEntry>> {
    let mut statement =
        conn.prepare("SELECT at, moderator, action, subject FROM audit_log ORDER BY id")?;
    let rows = statement.query_map([], |row| {
        Ok(AuditEntry {
            at: row.get(0)?,
            moderator: row.get(1)?,
            action: row.get(2)?,
            subject: row.get(3)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}
