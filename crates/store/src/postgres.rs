//! [`Store`] on PostgreSQL, for several stateless server nodes sharing one database.
//!
//! The SQL sticks to what PostgreSQL-compatible distributed databases (CockroachDB, YugabyteDB)
//! also run: no advisory locks, no LISTEN/NOTIFY. Per-group ordering comes from a row lock on the
//! group (`SELECT … FOR UPDATE`) inside the accepting transaction, so two nodes receiving
//! competing commits for one group serialize on that row. Tables are keyed by group id or by
//! device id first, so that they partition along those keys. A transaction that loses a
//! serialization conflict is run again.

use std::time::Duration;

use async_trait::async_trait;
use parley_protocol::{DeviceId, GroupId, MessageId, UserId, Username};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Postgres, Row, Transaction};

use crate::model::*;
use crate::{Store, StoreError, StoreResult};

const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE users (
    id            BYTEA PRIMARY KEY,
    username      TEXT NOT NULL UNIQUE,
    created_at    BIGINT NOT NULL,
    suspended_at  BIGINT
);
CREATE TABLE devices (
    id             BYTEA PRIMARY KEY,
    user_id        BYTEA NOT NULL,
    signature_key  BYTEA NOT NULL UNIQUE,
    queue_head     BIGINT NOT NULL DEFAULT 0,
    expired_up_to  BIGINT NOT NULL DEFAULT 0,
    created_at     BIGINT NOT NULL
);
CREATE INDEX devices_user ON devices (user_id);
CREATE TABLE challenges (
    nonce       BYTEA PRIMARY KEY,
    device_id   BYTEA NOT NULL,
    expires_at  BIGINT NOT NULL
);
CREATE TABLE sessions (
    token_hash  BYTEA PRIMARY KEY,
    device_id   BYTEA NOT NULL,
    expires_at  BIGINT NOT NULL
);
CREATE INDEX sessions_device ON sessions (device_id);
CREATE TABLE key_packages (
    device_id    BYTEA NOT NULL,
    id           BIGSERIAL NOT NULL,
    last_resort  BOOLEAN NOT NULL,
    data         BYTEA NOT NULL,
    PRIMARY KEY (device_id, id)
);
CREATE TABLE groups (
    id             BYTEA PRIMARY KEY,
    epoch          BIGINT NOT NULL,
    next_seq       BIGINT NOT NULL,
    state_version  BIGINT NOT NULL DEFAULT 0,
    public_state   BYTEA NOT NULL,
    created_at     BIGINT NOT NULL
);
CREATE TABLE group_members (
    group_id    BYTEA NOT NULL,
    device_id   BYTEA NOT NULL,
    leaf_index  BIGINT NOT NULL,
    PRIMARY KEY (group_id, device_id)
);
CREATE INDEX group_members_device ON group_members (device_id);
-- A message is stored once, keyed by its group; queue rows point at it.
CREATE TABLE payloads (
    group_id       BYTEA NOT NULL,
    group_seq      BIGINT NOT NULL,
    kind           SMALLINT NOT NULL,
    sender_device  BYTEA NOT NULL,
    message_id     BYTEA NOT NULL,
    accepted_at    BIGINT NOT NULL,
    refs           BIGINT NOT NULL,
    data           BYTEA NOT NULL,
    franking_tag   BYTEA,
    PRIMARY KEY (group_id, group_seq, kind)
);
CREATE TABLE queue (
    device_id    BYTEA NOT NULL,
    seq          BIGINT NOT NULL,
    group_id     BYTEA NOT NULL,
    group_seq    BIGINT NOT NULL,
    kind         SMALLINT NOT NULL,
    enqueued_at  BIGINT NOT NULL,
    PRIMARY KEY (device_id, seq)
);
CREATE INDEX queue_enqueued ON queue (enqueued_at);
CREATE TABLE submissions (
    device_id    BYTEA NOT NULL,
    message_id   BYTEA NOT NULL,
    fingerprint  BYTEA NOT NULL,
    group_id     BYTEA NOT NULL,
    group_seq    BIGINT NOT NULL,
    epoch        BIGINT NOT NULL,
    accepted_at  BIGINT NOT NULL,
    PRIMARY KEY (device_id, message_id)
);
CREATE UNIQUE INDEX submissions_replay ON submissions (group_id, fingerprint);
CREATE INDEX submissions_accepted ON submissions (accepted_at);
INSERT INTO users (id, username, created_at) VALUES ('\x00000000000000000000000000000000', 'parley', 0);
INSERT INTO devices (id, user_id, signature_key, created_at)
    VALUES ('\x00000000000000000000000000000000', '\x00000000000000000000000000000000',
            '\x0000000000000000000000000000000000000000000000000000000000000000', 0);
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
"#,
    r#"
-- A payload is freed once no queue row points at it, found through this index, instead of by a
-- reference count: every recipient's acknowledgement decremented the count on the same row, so
-- the acknowledgements of a large group waited for each other's commits one at a time.
-- The count stays, unused and nullable, only so that nodes of the previous version keep working
-- beside upgraded ones during a rolling upgrade (they still write it; counting down to zero
-- there means every pointer is gone anyway).
CREATE INDEX queue_payload ON queue (group_id, group_seq, kind);
ALTER TABLE payloads ALTER COLUMN refs DROP NOT NULL;
-- For the sweep of payloads left behind by a node that stopped between the two steps.
CREATE INDEX payloads_accepted ON payloads (accepted_at);
"#,
];

/// Transactions lost to a serialization conflict are retried this many times.
const MAX_ATTEMPTS: usize = 10;
const MAX_FETCH_BYTES: usize = 16 * 1024 * 1024;

pub struct PgStore {
    pool: PgPool,
}

type Tx<'a> = Transaction<'a, Postgres>;

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        StoreError::Backend(e.to_string())
    }
}

fn retryable(error: &StoreError) -> bool {
    matches!(error, StoreError::Backend(text) if text.contains("40001") || text.contains("40P01")
        || text.contains("could not serialize") || text.contains("deadlock detected")
        || text.contains("restart transaction"))
}

fn sql_error(e: sqlx::Error) -> StoreError {
    // Keep the SQLSTATE in the message so that `retryable` can see it.
    match &e {
        sqlx::Error::Database(db) => StoreError::Backend(format!(
            "{} ({})",
            db.message(),
            db.code().unwrap_or_default()
        )),
        _ => StoreError::Backend(e.to_string()),
    }
}

fn id<T: AsRef<[u8]>>(value: &T) -> Vec<u8> {
    value.as_ref().to_vec()
}

fn device_id(bytes: Vec<u8>) -> StoreResult<DeviceId> {
    DeviceId::from_slice(&bytes).map_err(|e| StoreError::Backend(e.to_string()))
}

fn group_id(bytes: Vec<u8>) -> StoreResult<GroupId> {
    GroupId::from_slice(&bytes).map_err(|e| StoreError::Backend(e.to_string()))
}

fn username(text: String) -> StoreResult<Username> {
    Username::parse(&text).map_err(|e| StoreError::Backend(e.to_string()))
}

const DEVICE_COLUMNS: &str =
    "d.id, d.user_id, u.username, d.signature_key, u.suspended_at FROM devices d JOIN users u ON u.id = d.user_id";

fn device_from_row(row: &sqlx::postgres::PgRow) -> StoreResult<DeviceRecord> {
    Ok(DeviceRecord {
        device_id: device_id(row.try_get(0).map_err(sql_error)?)?,
        user_id: UserId::from_slice(&row.try_get::<Vec<u8>, _>(1).map_err(sql_error)?)
            .map_err(|e| StoreError::Backend(e.to_string()))?,
        username: username(row.try_get(2).map_err(sql_error)?)?,
        signature_key: row.try_get(3).map_err(sql_error)?,
        suspended: row
            .try_get::<Option<i64>, _>(4)
            .map_err(sql_error)?
            .is_some(),
    })
}

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

async fn count_key_packages(
    executor: impl sqlx::PgExecutor<'_>,
    device: &DeviceId,
) -> StoreResult<KeyPackageCount> {
    let row = sqlx::query(
        "SELECT COUNT(*) FILTER (WHERE NOT last_resort), COUNT(*) FILTER (WHERE last_resort)
         FROM key_packages WHERE device_id = $1",
    )
    .bind(id(device.as_bytes()))
    .fetch_one(executor)
    .await
    .map_err(sql_error)?;
    let one_time: i64 = row.try_get(0).map_err(sql_error)?;
    let last_resort: i64 = row.try_get(1).map_err(sql_error)?;
    Ok(KeyPackageCount {
        one_time: one_time as u32,
        has_last_resort: last_resort > 0,
    })
}

async fn find_submission_in(
    executor: impl sqlx::PgExecutor<'_>,
    device: &DeviceId,
    message: &MessageId,
) -> StoreResult<Option<StoredSubmission>> {
    let row = sqlx::query(
        "SELECT fingerprint, group_id, group_seq, epoch, accepted_at FROM submissions
         WHERE device_id = $1 AND message_id = $2",
    )
    .bind(id(device.as_bytes()))
    .bind(id(message.as_bytes()))
    .fetch_optional(executor)
    .await
    .map_err(sql_error)?;
    row.map(|row| stored_submission(&row)).transpose()
}

/// An idempotency record read as columns 0 to 4: fingerprint, group, group sequence, epoch,
/// acceptance time.
fn stored_submission(row: &sqlx::postgres::PgRow) -> StoreResult<StoredSubmission> {
    Ok(StoredSubmission {
        fingerprint: row.try_get(0).map_err(sql_error)?,
        accepted: Accepted {
            group_id: group_id(row.try_get(1).map_err(sql_error)?)?,
            group_seq: row.try_get::<i64, _>(2).map_err(sql_error)? as u64,
            epoch: row.try_get::<i64, _>(3).map_err(sql_error)? as u64,
            accepted_at: row.try_get(4).map_err(sql_error)?,
            duplicate: true,
            deliveries: Vec::new(),
        },
    })
}

/// Appends a pointer to each device's queue, with one statement for the sequence numbers and
/// one for the rows, whatever the number of recipients.
async fn enqueue(
    tx: &mut Tx<'_>,
    devices: &[DeviceId],
    group: &GroupId,
    group_seq: u64,
    kind: ItemKind,
    now: Millis,
    deliveries: &mut Vec<(DeviceId, u64)>,
) -> StoreResult<()> {
    if devices.is_empty() {
        return Ok(());
    }
    let ids: Vec<Vec<u8>> = devices.iter().map(|d| id(d.as_bytes())).collect();
    let rows = sqlx::query(
        "UPDATE devices SET queue_head = queue_head + 1 WHERE id = ANY($1) RETURNING id, queue_head",
    )
    .bind(&ids)
    .fetch_all(&mut **tx)
    .await
    .map_err(sql_error)?;
    let mut devices_out = Vec::with_capacity(rows.len());
    let mut seqs = Vec::with_capacity(rows.len());
    for row in rows {
        let device: Vec<u8> = row.try_get(0).map_err(sql_error)?;
        let seq: i64 = row.try_get(1).map_err(sql_error)?;
        deliveries.push((device_id(device.clone())?, seq as u64));
        devices_out.push(device);
        seqs.push(seq);
    }
    sqlx::query(
        "INSERT INTO queue (device_id, seq, group_id, group_seq, kind, enqueued_at)
         SELECT d, s, $3, $4, $5, $6 FROM UNNEST($1::bytea[], $2::bigint[]) AS t(d, s)",
    )
    .bind(&devices_out)
    .bind(&seqs)
    .bind(id(group.as_bytes()))
    .bind(group_seq as i64)
    .bind(kind as i16)
    .bind(now)
    .execute(&mut **tx)
    .await
    .map_err(sql_error)?;
    Ok(())
}

async fn insert_payload(
    tx: &mut Tx<'_>,
    kind: ItemKind,
    submission: &Submission,
    group_seq: u64,
    data: &[u8],
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO payloads (group_id, group_seq, kind, sender_device, message_id, accepted_at, data, franking_tag)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(id(submission.group_id.as_bytes()))
    .bind(group_seq as i64)
    .bind(kind as i16)
    .bind(id(submission.sender.as_bytes()))
    .bind(id(submission.message_id.as_bytes()))
    .bind(submission.accepted_at)
    .bind(data)
    .bind(if kind == ItemKind::GroupMessage { submission.franking_tag.clone() } else { None })
    .execute(&mut **tx)
    .await
    .map_err(sql_error)?;
    Ok(())
}

/// The payload key a queue row points at.
type PayloadKey = (Vec<u8>, i64, i16);

/// Deletes those of `released` that no queue row points at any more. Runs after the transaction
/// that deleted the queue rows has committed, on its own: two recipients acknowledging the last
/// two pointers at once each still see the other's pointer inside their own transactions, but
/// whichever of these statements runs last sees neither. (A node that stops in between leaves
/// the payload to `expire`'s sweep.)
async fn release_payloads(pool: &PgPool, released: &[PayloadKey]) -> StoreResult<()> {
    let unique: std::collections::BTreeSet<&PayloadKey> = released.iter().collect();
    if unique.is_empty() {
        return Ok(());
    }
    let groups: Vec<&[u8]> = unique.iter().map(|k| k.0.as_slice()).collect();
    let seqs: Vec<i64> = unique.iter().map(|k| k.1).collect();
    let kinds: Vec<i16> = unique.iter().map(|k| k.2).collect();
    sqlx::query(
        "DELETE FROM payloads p
         USING UNNEST($1::bytea[], $2::bigint[], $3::smallint[]) AS r(group_id, group_seq, kind)
         WHERE p.group_id = r.group_id AND p.group_seq = r.group_seq AND p.kind = r.kind
           AND NOT EXISTS (SELECT 1 FROM queue q
                           WHERE q.group_id = p.group_id AND q.group_seq = p.group_seq
                             AND q.kind = p.kind)",
    )
    .bind(groups)
    .bind(seqs)
    .bind(kinds)
    .execute(pool)
    .await
    .map_err(sql_error)?;
    Ok(())
}

fn payload_key(row: &sqlx::postgres::PgRow, first: usize) -> StoreResult<PayloadKey> {
    Ok((
        row.try_get(first).map_err(sql_error)?,
        row.try_get(first + 1).map_err(sql_error)?,
        row.try_get(first + 2).map_err(sql_error)?,
    ))
}

/// Stores an accepted message in one round trip: its payload, a pointer and a sequence number for
/// every recipient, the group's next sequence number and the idempotency record (with `epoch`,
/// the group's epoch once the message is applied).
async fn store_message(
    tx: &mut Tx<'_>,
    submission: &Submission,
    recipients: &[DeviceId],
    group_seq: u64,
    epoch: u64,
) -> StoreResult<Accepted> {
    let recipients: Vec<Vec<u8>> = recipients.iter().map(|d| id(d.as_bytes())).collect();
    let rows = sqlx::query(
        "WITH payload AS (
             INSERT INTO payloads (group_id, group_seq, kind, sender_device, message_id,
                                   accepted_at, data, franking_tag)
             SELECT $1, $2, $3, $4, $5, $6, $7, $8 WHERE cardinality($9::bytea[]) > 0
         ), heads AS (
             UPDATE devices SET queue_head = queue_head + 1 WHERE id = ANY($9)
             RETURNING id, queue_head
         ), pointers AS (
             INSERT INTO queue (device_id, seq, group_id, group_seq, kind, enqueued_at)
             SELECT id, queue_head, $1, $2, $3, $6 FROM heads
         ), sequence AS (
             UPDATE groups SET next_seq = $2 + 1 WHERE id = $1
         ), record AS (
             INSERT INTO submissions (device_id, message_id, fingerprint, group_id, group_seq,
                                      epoch, accepted_at)
             VALUES ($4, $5, $10, $1, $2, $11, $6)
         )
         SELECT id, queue_head FROM heads",
    )
    .bind(id(submission.group_id.as_bytes()))
    .bind(group_seq as i64)
    .bind(ItemKind::GroupMessage as i16)
    .bind(id(submission.sender.as_bytes()))
    .bind(id(submission.message_id.as_bytes()))
    .bind(submission.accepted_at)
    .bind(&submission.payload)
    .bind(submission.franking_tag.clone())
    .bind(&recipients)
    .bind(&submission.fingerprint)
    .bind(epoch as i64)
    .fetch_all(&mut **tx)
    .await
    .map_err(sql_error)?;
    let deliveries = rows
        .into_iter()
        .map(|row| {
            let device: Vec<u8> = row.try_get(0).map_err(sql_error)?;
            let seq: i64 = row.try_get(1).map_err(sql_error)?;
            Ok((device_id(device)?, seq as u64))
        })
        .collect::<StoreResult<Vec<_>>>()?;
    Ok(Accepted {
        group_id: submission.group_id,
        group_seq,
        epoch,
        accepted_at: submission.accepted_at,
        duplicate: false,
        deliveries,
    })
}

async fn accept_in(tx: &mut Tx<'_>, submission: &Submission) -> StoreResult<Accepted> {
    let group = id(submission.group_id.as_bytes());
    // The row lock that orders everything accepted into this group, across all nodes.
    let row =
        sqlx::query("SELECT epoch, next_seq, state_version FROM groups WHERE id = $1 FOR UPDATE")
            .bind(&group)
            .fetch_optional(&mut **tx)
            .await
            .map_err(sql_error)?
            .ok_or(StoreError::UnknownGroup)?;
    let epoch: i64 = row.try_get(0).map_err(sql_error)?;
    let next_seq: i64 = row.try_get(1).map_err(sql_error)?;
    let state_version: i64 = row.try_get(2).map_err(sql_error)?;
    // Under the group's lock (so that a concurrent copy of this submission is seen as one), in
    // one round trip: an earlier result for this message id, the members, and whether this
    // ciphertext was accepted before.
    let checks = sqlx::query(
        "SELECT s.fingerprint, s.group_id, s.group_seq, s.epoch, s.accepted_at,
                ARRAY(SELECT device_id FROM group_members WHERE group_id = $3),
                EXISTS(SELECT 1 FROM submissions WHERE group_id = $3 AND fingerprint = $4)
         FROM (SELECT 1) AS one
         LEFT JOIN submissions s ON s.device_id = $1 AND s.message_id = $2",
    )
    .bind(id(submission.sender.as_bytes()))
    .bind(id(submission.message_id.as_bytes()))
    .bind(&group)
    .bind(&submission.fingerprint)
    .fetch_one(&mut **tx)
    .await
    .map_err(sql_error)?;
    if checks
        .try_get::<Option<Vec<u8>>, _>(0)
        .map_err(sql_error)?
        .is_some()
    {
        let previous = stored_submission(&checks)?;
        if previous.fingerprint != submission.fingerprint {
            return Err(StoreError::IdempotencyConflict);
        }
        return Ok(previous.accepted);
    }
    if epoch as u64 != submission.epoch {
        return Err(StoreError::WrongEpoch {
            current: epoch as u64,
        });
    }
    if let Some(transition) = &submission.transition {
        if transition.expected_state_version != state_version as u64 {
            return Err(StoreError::StateChanged);
        }
    }
    let members: Vec<Vec<u8>> = checks.try_get(5).map_err(sql_error)?;
    let members = members
        .into_iter()
        .map(device_id)
        .collect::<StoreResult<Vec<_>>>()?;
    if !members.contains(&submission.sender) && submission.sender != SYSTEM_DEVICE {
        return Err(StoreError::NotMember);
    }
    let recipients: Vec<DeviceId> = members
        .into_iter()
        .filter(|d| *d != submission.sender)
        .collect();
    if checks.try_get::<bool, _>(6).map_err(sql_error)? {
        return Err(StoreError::Replay);
    }
    let group_seq = next_seq as u64;
    // Every message is stored the same way; a commit then changes the group and sends its
    // Welcome in the same transaction.
    let Some(transition) = &submission.transition else {
        return store_message(tx, submission, &recipients, group_seq, epoch as u64).await;
    };
    let mut accepted =
        store_message(tx, submission, &recipients, group_seq, transition.new_epoch).await?;
    sqlx::query("UPDATE groups SET epoch = $2, public_state = $3, state_version = state_version + 1 WHERE id = $1")
        .bind(&group)
        .bind(transition.new_epoch as i64)
        .bind(&transition.new_public_state)
        .execute(&mut **tx)
        .await
        .map_err(sql_error)?;
    sqlx::query("DELETE FROM group_members WHERE group_id = $1")
        .bind(&group)
        .execute(&mut **tx)
        .await
        .map_err(sql_error)?;
    let devices: Vec<Vec<u8>> = transition
        .members
        .iter()
        .map(|m| id(m.device_id.as_bytes()))
        .collect();
    let leaves: Vec<i64> = transition
        .members
        .iter()
        .map(|m| m.leaf_index as i64)
        .collect();
    sqlx::query(
        "INSERT INTO group_members (group_id, device_id, leaf_index)
         SELECT $1, d, l FROM UNNEST($2::bytea[], $3::bigint[]) AS t(d, l)",
    )
    .bind(&group)
    .bind(&devices)
    .bind(&leaves)
    .execute(&mut **tx)
    .await
    .map_err(sql_error)?;
    if let Some(welcome) = &transition.welcome {
        insert_payload(
            tx,
            ItemKind::Welcome,
            submission,
            group_seq,
            &welcome.payload,
        )
        .await?;
        enqueue(
            tx,
            &welcome.recipients,
            &submission.group_id,
            group_seq,
            ItemKind::Welcome,
            submission.accepted_at,
            &mut accepted.deliveries,
        )
        .await?;
    }
    Ok(accepted)
}

/// Runs `work` in a transaction, again when it loses a serialization conflict.
macro_rules! transaction {
    ($store:expr, |$tx:ident| $body:expr) => {{
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut $tx = $store.pool.begin().await.map_err(sql_error)?;
            let result: StoreResult<_> = async { $body }.await;
            let result = match result {
                Ok(value) => $tx.commit().await.map_err(sql_error).map(|_| value),
                Err(e) => {
                    let _ = $tx.rollback().await;
                    Err(e)
                }
            };
            match result {
                Err(e) if retryable(&e) && attempt < MAX_ATTEMPTS => {
                    tokio::time::sleep(Duration::from_millis(5 * attempt as u64)).await;
                    continue;
                }
                other => break other,
            }
        }
    }};
}

impl PgStore {
    /// Connects (retrying for a while, as the database may still be starting) and migrates.
    pub async fn connect(url: &str) -> StoreResult<PgStore> {
        let options: PgConnectOptions = url
            .parse()
            .map_err(|e: sqlx::Error| StoreError::Backend(e.to_string()))?;
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await
            .map_err(sql_error)?;
        let store = PgStore { pool };
        store.migrate().await?;
        Ok(store)
    }

    async fn migrate(&self) -> StoreResult<()> {
        // Nodes starting together race to create the version table: the loser retries.
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.migrate_once().await {
                Err(e) if attempt < 5 => {
                    tracing::debug!(error = %e, "schema migration raced another node; retrying");
                    tokio::time::sleep(Duration::from_millis(100 * attempt)).await;
                }
                other => return other,
            }
        }
    }

    async fn migrate_once(&self) -> StoreResult<()> {
        sqlx::raw_sql(
            "CREATE TABLE IF NOT EXISTS parley_schema (id INT PRIMARY KEY, version BIGINT NOT NULL);
             INSERT INTO parley_schema (id, version) VALUES (1, 0) ON CONFLICT (id) DO NOTHING;",
        )
        .execute(&self.pool)
        .await
        .map_err(sql_error)?;
        let mut tx = self.pool.begin().await.map_err(sql_error)?;
        // One migrator at a time across nodes: a row lock (no LOCK TABLE, no advisory locks).
        let applied: i64 =
            sqlx::query_scalar("SELECT version FROM parley_schema WHERE id = 1 FOR UPDATE")
                .fetch_one(&mut *tx)
                .await
                .map_err(sql_error)?;
        for (index, migration) in MIGRATIONS.iter().enumerate().skip(applied.max(0) as usize) {
            sqlx::raw_sql(migration)
                .execute(&mut *tx)
                .await
                .map_err(sql_error)?;
            sqlx::query("UPDATE parley_schema SET version = $1 WHERE id = 1")
                .bind((index + 1) as i64)
                .execute(&mut *tx)
                .await
                .map_err(sql_error)?;
        }
        tx.commit().await.map_err(sql_error)?;
        Ok(())
    }

    /// Runs one statement outside the Store interface (tests check the database's own guards).
    pub async fn raw_execute(&self, sql: &str) -> StoreResult<()> {
        sqlx::raw_sql(sql)
            .execute(&self.pool)
            .await
            .map_err(sql_error)?;
        Ok(())
    }

    /// Drops every Parley table (tests use a fresh schema per run).
    pub async fn reset(url: &str) -> StoreResult<()> {
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .connect(url)
            .await
            .map_err(sql_error)?;
        sqlx::raw_sql(
            "DROP TABLE IF EXISTS parley_schema, users, devices, challenges, sessions, key_packages, groups,
               group_members, payloads, queue, submissions, reports, admin_tokens, audit_log CASCADE;
             DROP FUNCTION IF EXISTS audit_log_append_only CASCADE;",
        )
        .execute(&pool)
        .await
        .map_err(sql_error)?;
        Ok(())
    }
}

#[async_trait]
impl Store for PgStore {
    async fn create_account(&self, account: NewAccount) -> StoreResult<()> {
        transaction!(self, |tx| {
            let taken: bool =
                sqlx::query_scalar("SELECT EXISTS(SELECT 1 FROM users WHERE username = $1)")
                    .bind(account.username.as_str())
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(sql_error)?;
            if taken {
                return Err(StoreError::UsernameTaken);
            }
            let key_taken: bool =
                sqlx::query_scalar("SELECT EXISTS(SELECT 1 FROM devices WHERE signature_key = $1)")
                    .bind(&account.signature_key)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(sql_error)?;
            if key_taken {
                return Err(StoreError::KeyTaken);
            }
            sqlx::query("INSERT INTO users (id, username, created_at) VALUES ($1, $2, $3)")
                .bind(id(account.user_id.as_bytes()))
                .bind(account.username.as_str())
                .bind(account.now)
                .execute(&mut *tx)
                .await
                .map_err(|e| match sql_error(e) {
                    StoreError::Backend(text) if text.contains("23505") => {
                        StoreError::UsernameTaken
                    }
                    other => other,
                })?;
            sqlx::query("INSERT INTO devices (id, user_id, signature_key, created_at) VALUES ($1, $2, $3, $4)")
                .bind(id(account.device_id.as_bytes()))
                .bind(id(account.user_id.as_bytes()))
                .bind(&account.signature_key)
                .bind(account.now)
                .execute(&mut *tx)
                .await
                .map_err(sql_error)?;
            Ok(())
        })
    }

    async fn device(&self, device: DeviceId) -> StoreResult<Option<DeviceRecord>> {
        let row = sqlx::query(&format!("SELECT {DEVICE_COLUMNS} WHERE d.id = $1"))
            .bind(id(device.as_bytes()))
            .fetch_optional(&self.pool)
            .await
            .map_err(sql_error)?;
        row.as_ref().map(device_from_row).transpose()
    }

    async fn user_devices(&self, name: &Username) -> StoreResult<Vec<DeviceRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {DEVICE_COLUMNS} WHERE u.username = $1 ORDER BY d.id"
        ))
        .bind(name.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(sql_error)?;
        rows.iter().map(device_from_row).collect()
    }

    async fn put_challenge(&self, challenge: Challenge) -> StoreResult<()> {
        sqlx::query("INSERT INTO challenges (nonce, device_id, expires_at) VALUES ($1, $2, $3)")
            .bind(&challenge.nonce)
            .bind(id(challenge.device_id.as_bytes()))
            .bind(challenge.expires_at)
            .execute(&self.pool)
            .await
            .map_err(sql_error)?;
        Ok(())
    }

    async fn take_challenge(&self, nonce: &[u8]) -> StoreResult<Option<Challenge>> {
        let row =
            sqlx::query("DELETE FROM challenges WHERE nonce = $1 RETURNING device_id, expires_at")
                .bind(nonce)
                .fetch_optional(&self.pool)
                .await
                .map_err(sql_error)?;
        row.map(|row| {
            Ok(Challenge {
                nonce: nonce.to_vec(),
                device_id: device_id(row.try_get(0).map_err(sql_error)?)?,
                expires_at: row.try_get(1).map_err(sql_error)?,
            })
        })
        .transpose()
    }

    async fn create_session(&self, session: NewSession) -> StoreResult<()> {
        sqlx::query("INSERT INTO sessions (token_hash, device_id, expires_at) VALUES ($1, $2, $3)")
            .bind(&session.token_hash)
            .bind(id(session.device_id.as_bytes()))
            .bind(session.expires_at)
            .execute(&self.pool)
            .await
            .map_err(sql_error)?;
        Ok(())
    }

    async fn session(&self, token_hash: &[u8], now: Millis) -> StoreResult<Option<DeviceRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {DEVICE_COLUMNS} JOIN sessions s ON s.device_id = d.id
             WHERE s.token_hash = $1 AND s.expires_at > $2 AND u.suspended_at IS NULL"
        ))
        .bind(token_hash)
        .bind(now)
        .fetch_optional(&self.pool)
        .await
        .map_err(sql_error)?;
        row.as_ref().map(device_from_row).transpose()
    }

    async fn add_key_packages(
        &self,
        device: DeviceId,
        one_time: Vec<Vec<u8>>,
        last_resort: Option<Vec<u8>>,
    ) -> StoreResult<KeyPackageCount> {
        transaction!(self, |tx| {
            let before = count_key_packages(&mut *tx, &device).await?;
            if before.one_time as usize + one_time.len()
                > parley_protocol::limits::MAX_KEY_PACKAGES_PER_DEVICE
            {
                return Err(StoreError::TooManyKeyPackages);
            }
            if !one_time.is_empty() {
                sqlx::query(
                    "INSERT INTO key_packages (device_id, last_resort, data) SELECT $1, false, d FROM UNNEST($2::bytea[]) AS t(d)",
                )
                .bind(id(device.as_bytes()))
                .bind(&one_time)
                .execute(&mut *tx)
                .await
                .map_err(sql_error)?;
            }
            if let Some(package) = &last_resort {
                sqlx::query("DELETE FROM key_packages WHERE device_id = $1 AND last_resort")
                    .bind(id(device.as_bytes()))
                    .execute(&mut *tx)
                    .await
                    .map_err(sql_error)?;
                sqlx::query(
                    "INSERT INTO key_packages (device_id, last_resort, data) VALUES ($1, true, $2)",
                )
                .bind(id(device.as_bytes()))
                .bind(package)
                .execute(&mut *tx)
                .await
                .map_err(sql_error)?;
            }
            count_key_packages(&mut *tx, &device).await
        })
    }

    async fn key_package_count(&self, device: DeviceId) -> StoreResult<KeyPackageCount> {
        count_key_packages(&self.pool, &device).await
    }

    async fn claim_key_package(&self, device: DeviceId) -> StoreResult<Option<ClaimedKeyPackage>> {
        transaction!(self, |tx| {
            // SKIP LOCKED: concurrent claims take different packages instead of waiting.
            let one_time: Option<Vec<u8>> = sqlx::query_scalar(
                "DELETE FROM key_packages WHERE device_id = $1 AND id = (
                    SELECT id FROM key_packages WHERE device_id = $1 AND NOT last_resort
                    ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED)
                 RETURNING data",
            )
            .bind(id(device.as_bytes()))
            .fetch_optional(&mut *tx)
            .await
            .map_err(sql_error)?;
            if let Some(data) = one_time {
                return Ok(Some(ClaimedKeyPackage {
                    device_id: device,
                    data,
                    last_resort: false,
                }));
            }
            let remaining: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM key_packages WHERE device_id = $1 AND NOT last_resort",
            )
            .bind(id(device.as_bytes()))
            .fetch_one(&mut *tx)
            .await
            .map_err(sql_error)?;
            if remaining > 0 {
                // Others hold the remaining ones right now; try again.
                return Err(StoreError::Backend("key packages busy (40001)".into()));
            }
            let last: Option<Vec<u8>> = sqlx::query_scalar(
                "SELECT data FROM key_packages WHERE device_id = $1 AND last_resort",
            )
            .bind(id(device.as_bytes()))
            .fetch_optional(&mut *tx)
            .await
            .map_err(sql_error)?;
            Ok(last.map(|data| ClaimedKeyPackage {
                device_id: device,
                data,
                last_resort: true,
            }))
        })
    }

    async fn create_group(&self, group: NewGroup) -> StoreResult<()> {
        transaction!(self, |tx| {
            let inserted = sqlx::query(
                "INSERT INTO groups (id, epoch, next_seq, public_state, created_at) VALUES ($1, $2, 1, $3, $4)
                 ON CONFLICT (id) DO NOTHING",
            )
            .bind(id(group.group_id.as_bytes()))
            .bind(group.epoch as i64)
            .bind(&group.public_state)
            .bind(group.now)
            .execute(&mut *tx)
            .await
            .map_err(sql_error)?;
            if inserted.rows_affected() == 0 {
                return Err(StoreError::GroupExists);
            }
            let devices: Vec<Vec<u8>> = group
                .members
                .iter()
                .map(|m| id(m.device_id.as_bytes()))
                .collect();
            let leaves: Vec<i64> = group.members.iter().map(|m| m.leaf_index as i64).collect();
            sqlx::query(
                "INSERT INTO group_members (group_id, device_id, leaf_index)
                 SELECT $1, d, l FROM UNNEST($2::bytea[], $3::bigint[]) AS t(d, l)",
            )
            .bind(id(group.group_id.as_bytes()))
            .bind(&devices)
            .bind(&leaves)
            .execute(&mut *tx)
            .await
            .map_err(sql_error)?;
            Ok(())
        })
    }

    async fn group(&self, group: GroupId) -> StoreResult<Option<GroupRecord>> {
        let row = sqlx::query(
            "SELECT epoch, public_state, (SELECT COUNT(*) FROM group_members WHERE group_id = $1), state_version
             FROM groups WHERE id = $1",
        )
        .bind(id(group.as_bytes()))
        .fetch_optional(&self.pool)
        .await
        .map_err(sql_error)?;
        row.map(|row| {
            Ok(GroupRecord {
                group_id: group,
                epoch: row.try_get::<i64, _>(0).map_err(sql_error)? as u64,
                public_state: row.try_get(1).map_err(sql_error)?,
                member_count: row.try_get::<i64, _>(2).map_err(sql_error)? as u64,
                state_version: row.try_get::<i64, _>(3).map_err(sql_error)? as u64,
            })
        })
        .transpose()
    }

    async fn is_member(&self, group: GroupId, device: DeviceId) -> StoreResult<bool> {
        sqlx::query_scalar(
            "SELECT EXISTS(SELECT 1 FROM group_members WHERE group_id = $1 AND device_id = $2)",
        )
        .bind(id(group.as_bytes()))
        .bind(id(device.as_bytes()))
        .fetch_one(&self.pool)
        .await
        .map_err(sql_error)
    }

    async fn find_submission(
        &self,
        device: DeviceId,
        message: MessageId,
    ) -> StoreResult<Option<StoredSubmission>> {
        find_submission_in(&self.pool, &device, &message).await
    }

    async fn accept(&self, submission: Submission) -> StoreResult<Accepted> {
        transaction!(self, |tx| accept_in(&mut tx, &submission).await)
    }

    async fn fetch_queue(
        &self,
        device: DeviceId,
        after: u64,
        limit: u32,
    ) -> StoreResult<QueuePage> {
        let head = sqlx::query("SELECT queue_head, expired_up_to FROM devices WHERE id = $1")
            .bind(id(device.as_bytes()))
            .fetch_optional(&self.pool)
            .await
            .map_err(sql_error)?;
        let (head, expired_up_to) = match head {
            Some(row) => (
                row.try_get::<i64, _>(0).map_err(sql_error)?,
                row.try_get::<i64, _>(1).map_err(sql_error)?,
            ),
            None => (0, 0),
        };
        let rows = sqlx::query(
            "SELECT q.seq, p.kind, p.group_id, p.group_seq, p.sender_device, u.username, p.message_id,
                    p.accepted_at, p.data, p.franking_tag
             FROM queue q
             JOIN payloads p ON p.group_id = q.group_id AND p.group_seq = q.group_seq AND p.kind = q.kind
             JOIN devices d ON d.id = p.sender_device
             JOIN users u ON u.id = d.user_id
             WHERE q.device_id = $1 AND q.seq > $2
             ORDER BY q.seq LIMIT $3",
        )
        .bind(id(device.as_bytes()))
        .bind(after as i64)
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await
        .map_err(sql_error)?;
        let mut entries = Vec::new();
        let mut bytes = 0;
        for row in rows {
            let payload: Vec<u8> = row.try_get(8).map_err(sql_error)?;
            if !entries.is_empty() && bytes + payload.len() > MAX_FETCH_BYTES {
                break;
            }
            bytes += payload.len();
            let message: Vec<u8> = row.try_get(6).map_err(sql_error)?;
            entries.push(QueueEntry {
                seq: row.try_get::<i64, _>(0).map_err(sql_error)? as u64,
                kind: ItemKind::from_i64(row.try_get::<i16, _>(1).map_err(sql_error)? as i64),
                group_id: group_id(row.try_get(2).map_err(sql_error)?)?,
                group_seq: row.try_get::<i64, _>(3).map_err(sql_error)? as u64,
                sender_device: device_id(row.try_get(4).map_err(sql_error)?)?,
                sender_username: username(row.try_get(5).map_err(sql_error)?)?,
                message_id: MessageId::from_slice(&message)
                    .map_err(|e| StoreError::Backend(e.to_string()))?,
                accepted_at: row.try_get(7).map_err(sql_error)?,
                payload,
                franking_tag: row.try_get(9).map_err(sql_error)?,
            });
        }
        Ok(QueuePage {
            entries,
            head: head as u64,
            expired_up_to: expired_up_to as u64,
        })
    }

    async fn ack(&self, device: DeviceId, up_to: u64) -> StoreResult<()> {
        let released: Vec<PayloadKey> = transaction!(self, |tx| {
            let rows = sqlx::query("DELETE FROM queue WHERE device_id = $1 AND seq <= $2 RETURNING group_id, group_seq, kind")
                .bind(id(device.as_bytes()))
                .bind(up_to as i64)
                .fetch_all(&mut *tx)
                .await
                .map_err(sql_error)?;
            rows.iter()
                .map(|row| payload_key(row, 0))
                .collect::<StoreResult<Vec<_>>>()
        })?;
        release_payloads(&self.pool, &released).await
    }

    async fn queue_head(&self, device: DeviceId) -> StoreResult<u64> {
        let head: Option<i64> = sqlx::query_scalar("SELECT queue_head FROM devices WHERE id = $1")
            .bind(id(device.as_bytes()))
            .fetch_optional(&self.pool)
            .await
            .map_err(sql_error)?;
        Ok(head.unwrap_or(0) as u64)
    }

    async fn queue_depth(&self) -> StoreResult<u64> {
        let depth: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM queue")
            .fetch_one(&self.pool)
            .await
            .map_err(sql_error)?;
        Ok(depth as u64)
    }

    async fn expire(&self, before: Millis, now: Millis) -> StoreResult<u64> {
        let (expired, released) = transaction!(self, |tx| {
            let rows = sqlx::query(
                "DELETE FROM queue WHERE enqueued_at < $1 RETURNING device_id, seq, group_id, group_seq, kind",
            )
            .bind(before)
            .fetch_all(&mut *tx)
            .await
            .map_err(sql_error)?;
            let mut released = Vec::new();
            for row in &rows {
                let device: Vec<u8> = row.try_get(0).map_err(sql_error)?;
                let seq: i64 = row.try_get(1).map_err(sql_error)?;
                sqlx::query(
                    "UPDATE devices SET expired_up_to = GREATEST(expired_up_to, $2) WHERE id = $1",
                )
                .bind(&device)
                .bind(seq)
                .execute(&mut *tx)
                .await
                .map_err(sql_error)?;
                released.push(payload_key(row, 2)?);
            }
            for statement in ["DELETE FROM submissions WHERE accepted_at < $1"] {
                sqlx::query(statement)
                    .bind(before)
                    .execute(&mut *tx)
                    .await
                    .map_err(sql_error)?;
            }
            for statement in [
                "DELETE FROM challenges WHERE expires_at < $1",
                "DELETE FROM sessions WHERE expires_at < $1",
            ] {
                sqlx::query(statement)
                    .bind(now)
                    .execute(&mut *tx)
                    .await
                    .map_err(sql_error)?;
            }
            Ok((rows.len() as u64, released))
        })?;
        release_payloads(&self.pool, &released).await?;
        // Payloads whose last pointers went while their node stopped before freeing them.
        sqlx::query(
            "DELETE FROM payloads p WHERE accepted_at < $1
               AND NOT EXISTS (SELECT 1 FROM queue q
                               WHERE q.group_id = p.group_id AND q.group_seq = p.group_seq
                                 AND q.kind = p.kind)",
        )
        .bind(before)
        .execute(&self.pool)
        .await
        .map_err(sql_error)?;
        Ok(expired)
    }

    async fn create_report(&self, report: NewReport) -> StoreResult<u64> {
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
        .fetch_optional(&self.pool)
        .await
        .map_err(sql_error)?;
        inserted
            .map(|id| id as u64)
            .ok_or(StoreError::DuplicateReport)
    }

    async fn reports(&self, status: Option<ReportStatus>) -> StoreResult<Vec<Report>> {
        let rows = sqlx::query(&format!(
            "SELECT {REPORT_COLUMNS} FROM reports WHERE ($1::text IS NULL OR status = $1) ORDER BY id"
        ))
        .bind(status.map(|s| s.as_str()))
        .fetch_all(&self.pool)
        .await
        .map_err(sql_error)?;
        rows.iter().map(report_from_row).collect()
    }

    async fn report(&self, report: u64) -> StoreResult<Option<Report>> {
        let row = sqlx::query(&format!(
            "SELECT {REPORT_COLUMNS} FROM reports WHERE id = $1"
        ))
        .bind(report as i64)
        .fetch_optional(&self.pool)
        .await
        .map_err(sql_error)?;
        row.as_ref().map(report_from_row).transpose()
    }

    async fn set_report_status(
        &self,
        report: u64,
        status: ReportStatus,
        audit: AuditEntry,
    ) -> StoreResult<bool> {
        transaction!(self, |tx| {
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

    async fn set_suspended(
        &self,
        user: &Username,
        suspended: bool,
        audit: AuditEntry,
    ) -> StoreResult<bool> {
        transaction!(self, |tx| {
            let changed = if suspended {
                sqlx::query("UPDATE users SET suspended_at = $2 WHERE username = $1 AND suspended_at IS NULL")
                    .bind(user.as_str())
                    .bind(audit.at)
                    .execute(&mut *tx)
                    .await
                    .map_err(sql_error)?
                    .rows_affected()
            } else {
                sqlx::query("UPDATE users SET suspended_at = NULL WHERE username = $1 AND suspended_at IS NOT NULL")
                    .bind(user.as_str())
                    .execute(&mut *tx)
                    .await
                    .map_err(sql_error)?
                    .rows_affected()
            };
            if suspended {
                sqlx::query(
                    "DELETE FROM sessions WHERE device_id IN (
                        SELECT d.id FROM devices d JOIN users u ON u.id = d.user_id WHERE u.username = $1)",
                )
                .bind(user.as_str())
                .execute(&mut *tx)
                .await
                .map_err(sql_error)?;
            }
            if changed > 0 {
                append_audit(&mut tx, &audit).await?;
            }
            Ok(changed > 0)
        })
    }

    async fn memberships(&self, user: &Username) -> StoreResult<Vec<Membership>> {
        let rows = sqlx::query(
            "SELECT m.group_id, m.leaf_index FROM group_members m
             JOIN devices d ON d.id = m.device_id JOIN users u ON u.id = d.user_id
             WHERE u.username = $1 ORDER BY m.group_id, m.leaf_index",
        )
        .bind(user.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(sql_error)?;
        let mut memberships: Vec<Membership> = Vec::new();
        for row in rows {
            let group = group_id(row.try_get(0).map_err(sql_error)?)?;
            let leaf = row.try_get::<i64, _>(1).map_err(sql_error)? as u32;
            match memberships.last_mut() {
                Some(last) if last.group_id == group => last.leaves.push(leaf),
                _ => memberships.push(Membership {
                    group_id: group,
                    leaves: vec![leaf],
                }),
            }
        }
        Ok(memberships)
    }

    async fn add_admin_token(
        &self,
        token_hash: Vec<u8>,
        label: String,
        now: Millis,
    ) -> StoreResult<()> {
        transaction!(self, |tx| {
            sqlx::query(
                "INSERT INTO admin_tokens (token_hash, label, created_at) VALUES ($1, $2, $3)",
            )
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

    async fn admin_token(&self, token_hash: &[u8]) -> StoreResult<Option<String>> {
        sqlx::query_scalar("SELECT label FROM admin_tokens WHERE token_hash = $1")
            .bind(token_hash)
            .fetch_optional(&self.pool)
            .await
            .map_err(sql_error)
    }

    async fn audit(&self, entry: AuditEntry) -> StoreResult<()> {
        transaction!(self, |tx| append_audit(&mut tx, &entry).await)
    }

    async fn audit_log(&self) -> StoreResult<Vec<AuditEntry>> {
        let rows = sqlx::query("SELECT at, moderator, action, subject FROM audit_log ORDER BY id")
            .fetch_all(&self.pool)
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
}
