//! Moderation on PostgreSQL: the `reports`, `admin_tokens` and append-only `audit_log` tables,
//! and the moderator actions that write the audit log in the same transaction.

use parley_protocol::Username;
use sqlx::{PgPool, Row};

use super::accounts;
use super::sql::{device_id, group_id, id, sql_error, transaction, username, Tx};
use crate::model::*;
use crate::{StoreError, StoreResult};

pub(super) const MIGRATION_1: &str = r#"
CREATE TABLE reports (
    id                   BIGSERIAL PRIMARY KEY,
    status               TEXT NOT NULL,
    created_at           BIGINT NOT NULL,
    reporter             TEXT NOT NULL,
    accused              TEXT NOT NULL,
    accused_device       BYTEA NOT NULL,
    group_id             BYTEA NOT NULL,
    group_seq            BIGINT NOT NULL,
    message_accepted_at  BIGINT NOT NULL,
    text                 TEXT NOT NULL,
    reason               TEXT NOT NULL,
    context              TEXT NOT NULL,
    UNIQUE (reporter, group_id, group_seq)
);
CREATE TABLE admin_tokens (
    token_hash  BYTEA PRIMARY KEY,
    label       TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);
CREATE TABLE audit_log (
    id         BIGSERIAL PRIMARY KEY,
    at         BIGINT NOT NULL,
    moderator  TEXT NOT NULL,
    action     TEXT NOT NULL,
    subject    TEXT NOT NULL
);
CREATE FUNCTION audit_log_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'the audit log is append-only';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER audit_log_no_change BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
"#;

const REPORT_COLUMNS: &str =
    "id, status, created_at, reporter, accused, accused_device, group_id, group_seq,
    message_accepted_at, text, reason, context";

fn report_from_row(row: &sqlx::postgres::PgRow) -> StoreResult<Report> {
    let get = |e: sqlx::Error| sql_error(e);
    let status: String = row.try_get(1).map_err(get)?;
    Ok(Report {
        id: row.try_get::<i64, _>(0).map_err(get)? as u64,
        status: ReportStatus::parse(&status).unwrap_or(ReportStatus::Open),
        report: NewReport {
            created_at: row.try_get(2).map_err(get)?,
            reporter: username(row.try_get(3).map_err(get)?)?,
            accused: username(row.try_get(4).map_err(get)?)?,
            accused_device: device_id(row.try_get(5).map_err(get)?)?,
            group_id: group_id(row.try_get(6).map_err(get)?)?,
            group_seq: row.try_get::<i64, _>(7).map_err(get)? as u64,
            message_accepted_at: row.try_get(8).map_err(get)?,
            text: row.try_get(9).map_err(get)?,
            reason: row.try_get(10).map_err(get)?,
            context: row.try_get(11).map_err(get)?,
        },
    })
}

async fn append_audit(tx: &mut Tx<'_>, entry: &AuditEntry) -> StoreResult<()> {
    sqlx::query("INSERT INTO audit_log (at, moderator, action, subject) VALUES ($1, $2, $3, $4)")
        .bind(entry.at)
        .bind(&entry.moderator)
        .bind(&entry.action)
        .bind(&entry.subject)
        .execute(&mut **tx)
        .await
        .map_err(sql_error)?;
    Ok(())
}

pub(super) async fn create_report(pool: &PgPool, report: NewReport) -> StoreResult<u64> {
    let inserted: Option<i64> = sqlx::query_scalar(
        "INSERT INTO reports (status, created_at, reporter, accused, accused_device, group_id, group_seq,
            message_accepted_at, text, reason, context)
         VALUES ('open', $1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
         ON CONFLICT (reporter, group_id, group_seq) DO NOTHING RETURNING id",
    )
    .bind(report.created_at)
    .bind(report.reporter.as_str())
    .bind(report.accused.as_str())
    .bind(id(report.accused_device.as_bytes()))
    .bind(id(report.group_id.as_bytes()))
    .bind(report.group_seq as i64)
    .bind(report.message_accepted_at)
    .bind(&report.text)
    .bind(&report.reason)
    .bind(&report.context)
    .fetch_optional(pool)
    .await
    .map_err(sql_error)?;
    inserted
        .map(|id| id as u64)
        .ok_or(StoreError::DuplicateReport)
}

pub(super) async fn reports(
    pool: &PgPool,
    status: Option<ReportStatus>,
) -> StoreResult<Vec<Report>> {
    let rows = sqlx::query(&format!(
        "SELECT {REPORT_COLUMNS} FROM reports WHERE ($1::text IS NULL OR status = $1) ORDER BY id"
    ))
    .bind(status.map(|s| s.as_str()))
    .fetch_all(pool)
    .await
    .map_err(sql_error)?;
    rows.iter().map(report_from_row).collect()
}

pub(super) async fn report(pool: &PgPool, report: u64) -> StoreResult<Option<Report>> {
    let row = sqlx::query(&format!(
        "SELECT {REPORT_COLUMNS} FROM reports WHERE id = $1"
    ))
    .bind(report as i64)
    .fetch_optional(pool)
    .await
    .map_err(sql_error)?;
    row.as_ref().map(report_from_row).transpose()
}

pub(super) async fn set_report_status(
    pool: &PgPool,
    report: u64,
    status: ReportStatus,
    audit: AuditEntry,
) -> StoreResult<bool> {
    transaction!(pool, |tx| {
        let changed = sqlx::query("UPDATE reports SET status = $2 WHERE id = $1")
            .bind(report as i64)
            .bind(status.as_str())
            .execute(&mut *tx)
            .await
            .map_err(sql_error)?
            .rows_affected();
        if changed > 0 {
            append_audit(&mut tx, &audit).await?;
        }
        Ok(changed > 0)
    })
}

pub(super) async fn set_suspended(
    pool: &PgPool,
    user: &Username,
    suspended: bool,
    audit: AuditEntry,
) -> StoreResult<bool> {
    transaction!(pool, |tx| {
        let changed = accounts::suspend(&mut tx, user, suspended, audit.at).await?;
        if changed > 0 {
            append_audit(&mut tx, &audit).await?;
        }
        Ok(changed > 0)
    })
}

pub(super) async fn add_admin_token(
    pool: &PgPool,
    token_hash: Vec<u8>,
    label: String,
    now: Millis,
) -> StoreResult<()> {
    transaction!(pool, |tx| {
        sqlx::query("INSERT INTO admin_tokens (token_hash, label, created_at) VALUES ($1, $2, $3)")
            .bind(&token_hash)
            .bind(&label)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(sql_error)?;
        let entry = AuditEntry {
            at: now,
            moderator: "cli".into(),
            action: "create admin token".into(),
            subject: label.clone(),
        };
        append_audit(&mut tx, &entry).await
    })
}

/// Console sessions: a random id per sign-in, stored hashed, tied to the token it came from so
/// that revoking the token ends them.
pub(super) const MIGRATION_3: &str = r#"
CREATE TABLE admin_sessions (
    session_hash  BYTEA PRIMARY KEY,
    token_hash    BYTEA NOT NULL,
    expires_at    BIGINT NOT NULL
);
CREATE INDEX admin_sessions_token ON admin_sessions (token_hash);
"#;

pub(super) async fn create_admin_session(
    pool: &PgPool,
    session_hash: Vec<u8>,
    token_hash: Vec<u8>,
    now: Millis,
    expires_at: Millis,
) -> StoreResult<bool> {
    transaction!(pool, |tx| {
        sqlx::query("DELETE FROM admin_sessions WHERE expires_at <= $1")
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(sql_error)?;
        let inserted = sqlx::query(
            "INSERT INTO admin_sessions (session_hash, token_hash, expires_at)
             SELECT $1, token_hash, $3 FROM admin_tokens WHERE token_hash = $2",
        )
        .bind(&session_hash)
        .bind(&token_hash)
        .bind(expires_at)
        .execute(&mut *tx)
        .await
        .map_err(sql_error)?;
        Ok(inserted.rows_affected() == 1)
    })
}

pub(super) async fn admin_session(
    pool: &PgPool,
    session_hash: &[u8],
    now: Millis,
) -> StoreResult<Option<String>> {
    sqlx::query_scalar(
        "SELECT t.label FROM admin_sessions s JOIN admin_tokens t ON t.token_hash = s.token_hash
         WHERE s.session_hash = $1 AND s.expires_at > $2",
    )
    .bind(session_hash)
    .bind(now)
    .fetch_optional(pool)
    .await
    .map_err(sql_error)
}

pub(super) async fn end_admin_session(pool: &PgPool, session_hash: &[u8]) -> StoreResult<()> {
    sqlx::query("DELETE FROM admin_sessions WHERE session_hash = $1")
        .bind(session_hash)
        .execute(pool)
        .await
        .map_err(sql_error)?;
    Ok(())
}

pub(super) async fn revoke_admin_tokens(
    pool: &PgPool,
    label: &str,
    audit: AuditEntry,
) -> StoreResult<u64> {
    transaction!(pool, |tx| {
        sqlx::query(
            "DELETE FROM admin_sessions WHERE token_hash IN
               (SELECT token_hash FROM admin_tokens WHERE label = $1)",
        )
        .bind(label)
        .execute(&mut *tx)
        .await
        .map_err(sql_error)?;
        let revoked = sqlx::query("DELETE FROM admin_tokens WHERE label = $1")
            .bind(label)
            .execute(&mut *tx)
            .await
            .map_err(sql_error)?
            .rows_affected();
        if revoked > 0 {
            append_audit(&mut tx, &audit).await?;
        }
        Ok(revoked)
    })
}

pub(super) async fn admin_token(pool: &PgPool, token_hash: &[u8]) -> StoreResult<Option<String>> {
    sqlx::query_scalar("SELECT label FROM admin_tokens WHERE token_hash = $1")
        .bind(token_hash)
        .fetch_optional(pool)
        .await
        .map_err(sql_error)
}

pub(super) async fn audit(pool: &PgPool, entry: AuditEntry) -> StoreResult<()> {
    transaction!(pool, |tx| append_audit(&mut tx, &entry).await)
}

pub(super) async fn audit_log(pool: &PgPool) -> StoreResult<Vec<AuditEntry>> {
    let rows = sqlx::query("SELECT at, moderator, action, subject FROM audit_log ORDER BY id")
        .fetch_all(pool)
        .await
        .map_err(sql_error)?;
    rows.iter()
        .map(|row| {
            Ok(AuditEntry {
                at: row.try_get(0).map_err(sql_error)?,
                moderator: row.try_get(1).map_err(sql_error)?,
                action: row.try_get(2).map_err(sql_error)?,
                subject: row.try_get(3).map_err(sql_error)?,
            })
        })
        .collect()
}
