//! [`Store`] on an embedded SQLite database (WAL, `synchronous = FULL`).
//!
//! Writes go through one writer thread that gathers the jobs waiting at the same moment into one
//! transaction (group commit), each job inside its own savepoint so that one failing job does not
//! undo the others. A job's caller gets its answer only after that transaction has committed, so
//! an acknowledgement always means "durably stored". Reads use a small pool of connections on
//! blocking threads; WAL lets them run beside the writer.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use parley_protocol::{DeviceId, GroupId, MessageId, UserId, Username};
use rusqlite::{params, Connection, OptionalExtension, Transaction};
use std::time::Instant;

use tokio::sync::oneshot;

use crate::model::*;
use crate::{Store, StoreError, StoreResult};

/// Schema migrations, applied in order; `PRAGMA user_version` records how many have run.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE users (
    id          BLOB PRIMARY KEY,
    username    TEXT NOT NULL UNIQUE,
    created_at  INTEGER NOT NULL
);
CREATE TABLE devices (
    id             BLOB PRIMARY KEY,
    user_id        BLOB NOT NULL REFERENCES users(id),
    signature_key  BLOB NOT NULL UNIQUE,
    queue_head     INTEGER NOT NULL DEFAULT 0,
    expired_up_to  INTEGER NOT NULL DEFAULT 0,
    created_at     INTEGER NOT NULL
);
CREATE INDEX devices_user ON devices(user_id);
CREATE TABLE challenges (
    nonce       BLOB PRIMARY KEY,
    device_id   BLOB NOT NULL,
    expires_at  INTEGER NOT NULL
);
CREATE TABLE sessions (
    token_hash  BLOB PRIMARY KEY,
    device_id   BLOB NOT NULL REFERENCES devices(id),
    expires_at  INTEGER NOT NULL
);
CREATE TABLE key_packages (
    id           INTEGER PRIMARY KEY,
    device_id    BLOB NOT NULL REFERENCES devices(id),
    last_resort  INTEGER NOT NULL,
    data         BLOB NOT NULL
);
CREATE INDEX key_packages_device ON key_packages(device_id, last_resort, id);
CREATE TABLE groups (
    id            BLOB PRIMARY KEY,
    epoch         INTEGER NOT NULL,
    next_seq      INTEGER NOT NULL,
    -- Bumped by every handshake message: a compare-and-set guard for the public state.
    state_version INTEGER NOT NULL DEFAULT 0,
    public_state  BLOB NOT NULL,
    created_at    INTEGER NOT NULL
);
CREATE TABLE group_members (
    group_id    BLOB NOT NULL REFERENCES groups(id),
    device_id   BLOB NOT NULL REFERENCES devices(id),
    leaf_index  INTEGER NOT NULL,
    PRIMARY KEY (group_id, device_id)
) WITHOUT ROWID;
CREATE INDEX group_members_device ON group_members(device_id);
-- A message is stored once; `refs` counts the queue entries that still point at it.
CREATE TABLE payloads (
    id             INTEGER PRIMARY KEY,
    kind           INTEGER NOT NULL,
    group_id       BLOB NOT NULL,
    group_seq      INTEGER NOT NULL,
    sender_device  BLOB NOT NULL,
    message_id     BLOB NOT NULL,
    accepted_at    INTEGER NOT NULL,
    refs           INTEGER NOT NULL,
    data           BLOB NOT NULL
);
-- Each device's queue: small pointers in the device's own monotonic sequence.
CREATE TABLE queue (
    device_id    BLOB NOT NULL,
    seq          INTEGER NOT NULL,
    payload_id   INTEGER NOT NULL,
    enqueued_at  INTEGER NOT NULL,
    PRIMARY KEY (device_id, seq)
) WITHOUT ROWID;
CREATE INDEX queue_enqueued ON queue(enqueued_at);
-- Idempotency: (device, message id) -> the first result.
CREATE TABLE submissions (
    device_id    BLOB NOT NULL,
    message_id   BLOB NOT NULL,
    fingerprint  BLOB NOT NULL,
    group_id     BLOB NOT NULL,
    group_seq    INTEGER NOT NULL,
    epoch        INTEGER NOT NULL,
    accepted_at  INTEGER NOT NULL,
    PRIMARY KEY (device_id, message_id)
) WITHOUT ROWID;
CREATE INDEX submissions_accepted ON submissions(accepted_at);
-- The same ciphertext twice in a group is a replay, whatever message id it comes with.
CREATE UNIQUE INDEX submissions_replay ON submissions(group_id, fingerprint);
"#,
    r#"
-- Message franking and moderation.
ALTER TABLE payloads ADD COLUMN franking_tag BLOB;
ALTER TABLE users ADD COLUMN suspended_at INTEGER;
-- The server itself, as the sender of moderation proposals (the MLS external sender).
INSERT INTO users (id, username, created_at) VALUES (zeroblob(16), 'parley', 0);
INSERT INTO devices (id, user_id, signature_key, created_at) VALUES (zeroblob(16), zeroblob(16), zeroblob(32), 0);
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
"#,
    r#"
-- A payload is deleted once no queue entry points at it, found through this index. It replaces
-- the `refs` count, whose decrement rewrote a group message's payload row once per recipient's
-- acknowledgement.
CREATE INDEX queue_payload ON queue(payload_id);
ALTER TABLE payloads DROP COLUMN refs;
"#,
];

const DATABASE_FILE: &str = "parley.db";
/// Payload bytes in one queue page.
const MAX_FETCH_BYTES: usize = 16 * 1024 * 1024;
/// Most jobs folded into one transaction.
const MAX_BATCH: usize = 256;
/// Up to this many recipients a message is enqueued one recipient at a time.
const FEW_RECIPIENTS: usize = 4;
/// How long a busy writer waits for more jobs before it commits.
const BATCH_LINGER: std::time::Duration = std::time::Duration::from_micros(1000);
/// The WAL file is cut back to this size after a checkpoint.
const WAL_SIZE_LIMIT: i64 = 16 * 1024 * 1024;

#[derive(Debug, Clone)]
pub struct SqliteOptions {
    /// `synchronous = FULL` (default): a commit survives power loss. NORMAL is faster in WAL
    /// mode and survives a process crash, not an OS crash.
    pub synchronous_full: bool,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        SqliteOptions {
            synchronous_full: true,
        }
    }
}

trait WriteJob: Send {
    /// Runs inside the batch transaction; returns whether the job succeeded.
    fn run(&mut self, tx: &Transaction<'_>) -> bool;
    /// Answers the caller once the batch's fate is known.
    fn finish(self: Box<Self>, committed: Result<(), String>);
}

struct Job<T, F> {
    work: Option<F>,
    result: Option<StoreResult<T>>,
    reply: oneshot::Sender<StoreResult<T>>,
}

impl<T, F> WriteJob for Job<T, F>
where
    T: Send,
    F: FnOnce(&Transaction<'_>) -> StoreResult<T> + Send,
{
    fn run(&mut self, tx: &Transaction<'_>) -> bool {
        let result = match self.work.take() {
            Some(work) => work(tx),
            None => Err(StoreError::Backend("job ran twice".into())),
        };
        let ok = result.is_ok();
        self.result = Some(result);
        ok
    }

    fn finish(self: Box<Self>, committed: Result<(), String>) {
        let answer = match committed {
            Ok(()) => self
                .result
                .unwrap_or_else(|| Err(StoreError::Backend("job did not run".into()))),
            Err(e) => Err(StoreError::Backend(e)),
        };
        let _ = self.reply.send(answer);
    }
}

/// A read, run on one of the reader threads with that thread's connection.
type ReadJob = Box<dyn FnOnce(&Connection) + Send>;

/// Reader threads, each with its own connection: reads run beside the writer (WAL) and never
/// on the async runtime's threads. Two suffice: the server's reads are short and bounded.
const READER_THREADS: usize = 2;

pub struct SqliteStore {
    path: PathBuf,
    writer: std::sync::mpsc::Sender<Box<dyn WriteJob>>,
    readers: std::sync::mpsc::Sender<ReadJob>,
}

fn open_connection(path: &Path, options: &SqliteOptions) -> StoreResult<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    // Each job of a group commit runs in a savepoint, whose undo copies of the pages it touches
    // go to a statement journal: in memory, not to a temporary file on every page.
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    conn.pragma_update(
        None,
        "synchronous",
        if options.synchronous_full {
            "FULL"
        } else {
            "NORMAL"
        },
    )?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    Ok(conn)
}

fn migrate(conn: &mut Connection) -> StoreResult<()> {
    let applied: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
    let tx = conn.transaction()?;
    for (index, migration) in MIGRATIONS.iter().enumerate().skip(applied.max(0) as usize) {
        tx.execute_batch(migration)?;
        tx.pragma_update(None, "user_version", (index + 1) as i64)?;
    }
    tx.commit()?;
    Ok(())
}

impl SqliteStore {
    /// Opens (creating if needed) `parley.db` in `dir` and applies pending migrations.
    pub fn open(dir: &Path, options: SqliteOptions) -> StoreResult<SqliteStore> {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::Backend(format!("cannot create {}: {e}", dir.display())))?;
        let path = dir.join(DATABASE_FILE);
        let mut conn = open_connection(&path, &options)?;
        migrate(&mut conn)?;
        // The writer checkpoints (SQLite's automatic checkpoint, every 1,000 pages) between its
        // own transactions, so each checkpoint completes and the WAL starts over small. (A
        // checkpoint on another connection never catches up with a busy writer: the WAL then
        // grows to hundreds of megabytes and every restart of it stalls the writer.)
        conn.pragma_update(None, "journal_size_limit", WAL_SIZE_LIMIT)?;
        let (writer, jobs) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("parley-sqlite-writer".into())
            .spawn(move || writer_loop(conn, jobs))
            .map_err(|e| StoreError::Backend(format!("cannot start writer thread: {e}")))?;
        let (readers, reads) = std::sync::mpsc::channel::<ReadJob>();
        let reads = Arc::new(Mutex::new(reads));
        for index in 0..READER_THREADS {
            let conn = open_connection(&path, &options)?;
            let reads = reads.clone();
            std::thread::Builder::new()
                .name(format!("parley-sqlite-reader-{index}"))
                .spawn(move || reader_loop(conn, reads))
                .map_err(|e| StoreError::Backend(format!("cannot start reader thread: {e}")))?;
        }
        Ok(SqliteStore {
            path,
            writer,
            readers,
        })
    }

    pub fn database_path(&self) -> &Path {
        &self.path
    }

    async fn write<T, F>(&self, work: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>) -> StoreResult<T> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            work: Some(work),
            result: None,
            reply,
        };
        self.writer
            .send(Box::new(job))
            .map_err(|_| StoreError::Backend("writer thread stopped".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Backend("writer thread dropped a job".into()))?
    }

    async fn read<T, F>(&self, work: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job: ReadJob = Box::new(move |conn| {
            let _ = reply.send(work(conn));
        });
        self.readers
            .send(job)
            .map_err(|_| StoreError::Backend("reader threads stopped".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Backend("a reader thread dropped a read".into()))?
    }
}

/// Runs reads until the store is dropped; the threads take turns at the shared queue.
fn reader_loop(conn: Connection, reads: Arc<Mutex<std::sync::mpsc::Receiver<ReadJob>>>) {
    loop {
        let next = match reads.lock() {
            Ok(queue) => queue.recv(),
            Err(_) => return,
        };
        match next {
            Ok(job) => job(&conn),
            Err(_) => return,
        }
    }
}

fn writer_loop(mut conn: Connection, jobs: std::sync::mpsc::Receiver<Box<dyn WriteJob>>) {
    let mut busy = false;
    while let Ok(first) = jobs.recv() {
        let mut batch = vec![first];
        // Under load, linger a moment so that more submissions share the commit (and its fsync):
        // a commit costs about as much for 1 job as for 50. An idle server commits at once.
        let linger_until = busy.then(|| Instant::now() + BATCH_LINGER);
        while batch.len() < MAX_BATCH {
            let next = match linger_until {
                Some(until) => {
                    let left = until.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        jobs.try_recv().ok()
                    } else {
                        jobs.recv_timeout(left).ok()
                    }
                }
                None => jobs.try_recv().ok(),
            };
            match next {
                Some(job) => batch.push(job),
                None => break,
            }
        }
        busy = batch.len() > 1;
        let outcome = run_batch(&mut conn, &mut batch);
        for job in batch {
            job.finish(outcome.clone());
        }
    }
}

fn run_batch(conn: &mut Connection, batch: &mut [Box<dyn WriteJob>]) -> Result<(), String> {
    let tx = conn.transaction().map_err(|e| e.to_string())?;
    for job in batch.iter_mut() {
        exec(&tx, "SAVEPOINT job", []).map_err(|e| e.to_string())?;
        if !job.run(&tx) {
            exec(&tx, "ROLLBACK TO job", []).map_err(|e| e.to_string())?;
        }
        exec(&tx, "RELEASE job", []).map_err(|e| e.to_string())?;
    }
    tx.commit().map_err(|e| e.to_string())
}

/// Runs a statement through the connection's statement cache: parsing SQL costs more than
/// running these small statements, and the hot paths run them for every message.
fn exec(conn: &Connection, sql: &str, params: impl rusqlite::Params) -> rusqlite::Result<usize> {
    conn.prepare_cached(sql)?.execute(params)
}

/// [`exec`] for a statement that returns one row.
fn query_one<T>(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    row: impl FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<T> {
    conn.prepare_cached(sql)?.query_row(params, row)
}

// ----------------------------------------------------------------------------------------------
// Row helpers

fn blob<T: AsRef<[u8]>>(value: &T) -> &[u8] {
    value.as_ref()
}

fn device_id(bytes: Vec<u8>) -> rusqlite::Result<DeviceId> {
    DeviceId::from_slice(&bytes).map_err(|e| conversion_error(e.to_string()))
}

fn conversion_error(message: String) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Blob, message.into())
}

fn device_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<DeviceRecord> {
    let device: Vec<u8> = row.get(0)?;
    let user: Vec<u8> = row.get(1)?;
    let username: String = row.get(2)?;
    Ok(DeviceRecord {
        device_id: device_id(device)?,
        user_id: UserId::from_slice(&user).map_err(|e| conversion_error(e.to_string()))?,
        username: Username::parse(&username).map_err(|e| conversion_error(e.to_string()))?,
        signature_key: row.get(3)?,
        suspended: row.get::<_, Option<i64>>(4)?.is_some(),
    })
}

const DEVICE_COLUMNS: &str =
    "d.id, d.user_id, u.username, d.signature_key, u.suspended_at FROM devices d JOIN users u ON u.id = d.user_id";

fn count_key_packages(conn: &Connection, device: &DeviceId) -> StoreResult<KeyPackageCount> {
    let (one_time, last_resort): (i64, i64) = conn.query_row(
        "SELECT COALESCE(SUM(last_resort = 0), 0), COALESCE(SUM(last_resort = 1), 0)
         FROM key_packages WHERE device_id = ?1",
        params![blob(device.as_bytes())],
        |row| Ok((row.get(0)?, row.get(1)?)),
    )?;
    Ok(KeyPackageCount {
        one_time: one_time as u32,
        has_last_resort: last_resort > 0,
    })
}

fn find_submission_in(
    conn: &Connection,
    device: &DeviceId,
    message: &MessageId,
) -> StoreResult<Option<StoredSubmission>> {
    let row = query_one(
        conn,
        "SELECT fingerprint, group_id, group_seq, epoch, accepted_at FROM submissions
             WHERE device_id = ?1 AND message_id = ?2",
        params![blob(device.as_bytes()), blob(message.as_bytes())],
        |row| {
            Ok((
                row.get::<_, Vec<u8>>(0)?,
                row.get::<_, Vec<u8>>(1)?,
                row.get::<_, i64>(2)?,
                row.get::<_, i64>(3)?,
                row.get::<_, i64>(4)?,
            ))
        },
    )
    .optional()?;
    row.map(|(fingerprint, group, seq, epoch, at)| {
        Ok(StoredSubmission {
            fingerprint,
            accepted: Accepted {
                group_id: GroupId::from_slice(&group)
                    .map_err(|e| StoreError::Backend(e.to_string()))?,
                group_seq: seq as u64,
                epoch: epoch as u64,
                accepted_at: at,
                duplicate: true,
                deliveries: Vec::new(),
            },
        })
    })
    .transpose()
}

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

fn append_audit(tx: &Transaction<'_>, entry: &AuditEntry) -> StoreResult<()> {
    tx.execute(
        "INSERT INTO audit_log (at, moderator, action, subject) VALUES (?1, ?2, ?3, ?4)",
        params![entry.at, entry.moderator, entry.action, entry.subject],
    )?;
    Ok(())
}

/// Appends one pointer to each device's queue.
fn enqueue(
    tx: &Transaction<'_>,
    devices: &[DeviceId],
    payload_id: i64,
    now: Millis,
    deliveries: &mut Vec<(DeviceId, u64)>,
) -> StoreResult<()> {
    let mut bump = tx.prepare_cached(
        "UPDATE devices SET queue_head = queue_head + 1 WHERE id = ?1 RETURNING queue_head",
    )?;
    let mut insert = tx.prepare_cached(
        "INSERT INTO queue (device_id, seq, payload_id, enqueued_at) VALUES (?1, ?2, ?3, ?4)",
    )?;
    for device in devices {
        let seq: i64 = bump.query_row(params![blob(device.as_bytes())], |row| row.get(0))?;
        insert.execute(params![blob(device.as_bytes()), seq, payload_id, now])?;
        deliveries.push((*device, seq as u64));
    }
    Ok(())
}

/// [`enqueue`] for every member of `group` but `sender`, in two statements whatever the group's
/// size: one statement per recipient costs more than the rows it writes.
fn enqueue_members(
    tx: &Transaction<'_>,
    group: &[u8],
    sender: &DeviceId,
    payload_id: i64,
    now: Millis,
    deliveries: &mut Vec<(DeviceId, u64)>,
) -> StoreResult<()> {
    exec(
        tx,
        "UPDATE devices SET queue_head = queue_head + 1
         WHERE id IN (SELECT device_id FROM group_members WHERE group_id = ?1 AND device_id != ?2)",
        params![group, blob(sender.as_bytes())],
    )?;
    let mut insert = tx.prepare_cached(
        "INSERT INTO queue (device_id, seq, payload_id, enqueued_at)
         SELECT d.id, d.queue_head, ?3, ?4
         FROM group_members m JOIN devices d ON d.id = m.device_id
         WHERE m.group_id = ?1 AND m.device_id != ?2
         RETURNING device_id, seq",
    )?;
    let rows = insert.query_map(
        params![group, blob(sender.as_bytes()), payload_id, now],
        |row| Ok((device_id(row.get(0)?)?, row.get::<_, i64>(1)? as u64)),
    )?;
    for row in rows {
        deliveries.push(row?);
    }
    Ok(())
}

fn insert_payload(
    tx: &Transaction<'_>,
    kind: ItemKind,
    submission: &Submission,
    group_seq: u64,
    data: &[u8],
) -> StoreResult<i64> {
    exec(tx,
        "INSERT INTO payloads (kind, group_id, group_seq, sender_device, message_id, accepted_at, data, franking_tag)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            kind as i64,
            blob(submission.group_id.as_bytes()),
            group_seq as i64,
            blob(submission.sender.as_bytes()),
            blob(submission.message_id.as_bytes()),
            submission.accepted_at,
            data,
            if kind == ItemKind::GroupMessage { submission.franking_tag.as_deref() } else { None }
        ],
    )?;
    Ok(tx.last_insert_rowid())
}

/// Deletes the payloads among `released` that no queue entry points at any more.
fn release_payloads(tx: &Transaction<'_>, released: &[i64]) -> StoreResult<()> {
    let unique: std::collections::BTreeSet<i64> = released.iter().copied().collect();
    let mut referenced =
        tx.prepare_cached("SELECT EXISTS(SELECT 1 FROM queue WHERE payload_id = ?1)")?;
    let mut delete = tx.prepare_cached("DELETE FROM payloads WHERE id = ?1")?;
    for id in unique {
        if !referenced.query_row(params![id], |row| row.get::<_, bool>(0))? {
            delete.execute(params![id])?;
        }
    }
    Ok(())
}

fn accept_in(tx: &Transaction<'_>, submission: Submission) -> StoreResult<Accepted> {
    if let Some(previous) = find_submission_in(tx, &submission.sender, &submission.message_id)? {
        if previous.fingerprint != submission.fingerprint {
            return Err(StoreError::IdempotencyConflict);
        }
        return Ok(previous.accepted);
    }
    let group = blob(submission.group_id.as_bytes());
    let (epoch, next_seq, state_version): (i64, i64, i64) = tx
        .query_row(
            "SELECT epoch, next_seq, state_version FROM groups WHERE id = ?1",
            params![group],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
        )
        .optional()?
        .ok_or(StoreError::UnknownGroup)?;
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
    let recipients: Vec<DeviceId> = {
        let mut members =
            tx.prepare_cached("SELECT device_id FROM group_members WHERE group_id = ?1")?;
        let all = members
            .query_map(params![group], |row| device_id(row.get(0)?))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        // The server itself (moderation proposals) sends into groups it is no member of.
        if !all.contains(&submission.sender) && submission.sender != SYSTEM_DEVICE {
            return Err(StoreError::NotMember);
        }
        // Removed members receive the commit that removes them; new members get the Welcome.
        all.into_iter()
            .filter(|d| *d != submission.sender)
            .collect()
    };
    let replay: bool = query_one(
        tx,
        "SELECT EXISTS(SELECT 1 FROM submissions WHERE group_id = ?1 AND fingerprint = ?2)",
        params![group, submission.fingerprint],
        |row| row.get(0),
    )?;
    if replay {
        return Err(StoreError::Replay);
    }
    let group_seq = next_seq as u64;
    let mut deliveries = Vec::with_capacity(recipients.len());
    // Nobody to deliver to (a group of one): nothing to store but the order and the record.
    if !recipients.is_empty() {
        let payload_id = insert_payload(
            tx,
            ItemKind::GroupMessage,
            &submission,
            group_seq,
            &submission.payload,
        )?;
        // A few recipients (a 1:1 chat): one statement each is cheapest. A group: two in all.
        if recipients.len() <= FEW_RECIPIENTS {
            enqueue(
                tx,
                &recipients,
                payload_id,
                submission.accepted_at,
                &mut deliveries,
            )?;
        } else {
            enqueue_members(
                tx,
                group,
                &submission.sender,
                payload_id,
                submission.accepted_at,
                &mut deliveries,
            )?;
        }
        debug_assert_eq!(deliveries.len(), recipients.len());
    }

    let mut new_epoch = epoch as u64;
    if let Some(transition) = &submission.transition {
        new_epoch = transition.new_epoch;
        exec(
            tx,
            "UPDATE groups SET epoch = ?2, public_state = ?3, state_version = state_version + 1
             WHERE id = ?1",
            params![group, new_epoch as i64, transition.new_public_state],
        )?;
        exec(
            tx,
            "DELETE FROM group_members WHERE group_id = ?1",
            params![group],
        )?;
        let mut insert = tx.prepare_cached(
            "INSERT INTO group_members (group_id, device_id, leaf_index) VALUES (?1, ?2, ?3)",
        )?;
        for member in &transition.members {
            insert.execute(params![
                group,
                blob(member.device_id.as_bytes()),
                member.leaf_index
            ])?;
        }
        if let Some(welcome) = &transition.welcome {
            let welcome_id = insert_payload(
                tx,
                ItemKind::Welcome,
                &submission,
                group_seq,
                &welcome.payload,
            )?;
            enqueue(
                tx,
                &welcome.recipients,
                welcome_id,
                submission.accepted_at,
                &mut deliveries,
            )?;
        }
    }
    exec(
        tx,
        "UPDATE groups SET next_seq = ?2 WHERE id = ?1",
        params![group, next_seq + 1],
    )?;
    exec(tx,
        "INSERT INTO submissions (device_id, message_id, fingerprint, group_id, group_seq, epoch, accepted_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            blob(submission.sender.as_bytes()),
            blob(submission.message_id.as_bytes()),
            submission.fingerprint,
            group,
            group_seq as i64,
            new_epoch as i64,
            submission.accepted_at
        ],
    )?;
    Ok(Accepted {
        group_id: submission.group_id,
        group_seq,
        epoch: new_epoch,
        accepted_at: submission.accepted_at,
        duplicate: false,
        deliveries,
    })
}

#[async_trait]
impl Store for SqliteStore {
    async fn create_account(&self, account: NewAccount) -> StoreResult<()> {
        self.write(move |tx| {
            let taken: bool = tx.query_row(
                "SELECT EXISTS(SELECT 1 FROM users WHERE username = ?1)",
                params![account.username.as_str()],
                |row| row.get(0),
            )?;
            if taken {
                return Err(StoreError::UsernameTaken);
            }
            let key_taken: bool = tx.query_row(
                "SELECT EXISTS(SELECT 1 FROM devices WHERE signature_key = ?1)",
                params![account.signature_key],
                |row| row.get(0),
            )?;
            if key_taken {
                return Err(StoreError::KeyTaken);
            }
            tx.execute(
                "INSERT INTO users (id, username, created_at) VALUES (?1, ?2, ?3)",
                params![blob(account.user_id.as_bytes()), account.username.as_str(), account.now],
            )?;
            tx.execute(
                "INSERT INTO devices (id, user_id, signature_key, created_at) VALUES (?1, ?2, ?3, ?4)",
                params![
                    blob(account.device_id.as_bytes()),
                    blob(account.user_id.as_bytes()),
                    account.signature_key,
                    account.now
                ],
            )?;
            Ok(())
        })
        .await
    }

    async fn device(&self, device: DeviceId) -> StoreResult<Option<DeviceRecord>> {
        self.read(move |conn| {
            Ok(conn
                .query_row(
                    &format!("SELECT {DEVICE_COLUMNS} WHERE d.id = ?1"),
                    params![blob(device.as_bytes())],
                    device_from_row,
                )
                .optional()?)
        })
        .await
    }

    async fn user_devices(&self, username: &Username) -> StoreResult<Vec<DeviceRecord>> {
        let username = username.clone();
        self.read(move |conn| {
            let mut statement = conn.prepare_cached(&format!(
                "SELECT {DEVICE_COLUMNS} WHERE u.username = ?1 ORDER BY d.id"
            ))?;
            let rows = statement.query_map(params![username.as_str()], device_from_row)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn put_challenge(&self, challenge: Challenge) -> StoreResult<()> {
        self.write(move |tx| {
            tx.execute(
                "INSERT INTO challenges (nonce, device_id, expires_at) VALUES (?1, ?2, ?3)",
                params![
                    challenge.nonce,
                    blob(challenge.device_id.as_bytes()),
                    challenge.expires_at
                ],
            )?;
            Ok(())
        })
        .await
    }

    async fn take_challenge(&self, nonce: &[u8]) -> StoreResult<Option<Challenge>> {
        let nonce = nonce.to_vec();
        self.write(move |tx| {
            let found = tx
                .query_row(
                    "DELETE FROM challenges WHERE nonce = ?1 RETURNING device_id, expires_at",
                    params![nonce],
                    |row| Ok((row.get::<_, Vec<u8>>(0)?, row.get::<_, i64>(1)?)),
                )
                .optional()?;
            found
                .map(|(device, expires_at)| {
                    Ok(Challenge {
                        nonce: nonce.clone(),
                        device_id: device_id(device)?,
                        expires_at,
                    })
                })
                .transpose()
                .map_err(|e: rusqlite::Error| e.into())
        })
        .await
    }

    async fn create_session(&self, session: NewSession) -> StoreResult<()> {
        self.write(move |tx| {
            tx.execute(
                "INSERT INTO sessions (token_hash, device_id, expires_at) VALUES (?1, ?2, ?3)",
                params![
                    session.token_hash,
                    blob(session.device_id.as_bytes()),
                    session.expires_at
                ],
            )?;
            Ok(())
        })
        .await
    }

    async fn session(&self, token_hash: &[u8], now: Millis) -> StoreResult<Option<DeviceRecord>> {
        let token_hash = token_hash.to_vec();
        self.read(move |conn| {
            Ok(conn
                .query_row(
                    &format!(
                        "SELECT {DEVICE_COLUMNS} JOIN sessions s ON s.device_id = d.id
                         WHERE s.token_hash = ?1 AND s.expires_at > ?2 AND u.suspended_at IS NULL"
                    ),
                    params![token_hash, now],
                    device_from_row,
                )
                .optional()?)
        })
        .await
    }

    async fn add_key_packages(
        &self,
        device: DeviceId,
        one_time: Vec<Vec<u8>>,
        last_resort: Option<Vec<u8>>,
    ) -> StoreResult<KeyPackageCount> {
        self.write(move |tx| {
            let before = count_key_packages(tx, &device)?;
            if before.one_time as usize + one_time.len()
                > parley_protocol::limits::MAX_KEY_PACKAGES_PER_DEVICE
            {
                return Err(StoreError::TooManyKeyPackages);
            }
            let mut insert = tx.prepare_cached(
                "INSERT INTO key_packages (device_id, last_resort, data) VALUES (?1, ?2, ?3)",
            )?;
            for package in &one_time {
                insert.execute(params![blob(device.as_bytes()), 0, package])?;
            }
            if let Some(package) = &last_resort {
                tx.execute(
                    "DELETE FROM key_packages WHERE device_id = ?1 AND last_resort = 1",
                    params![blob(device.as_bytes())],
                )?;
                insert.execute(params![blob(device.as_bytes()), 1, package])?;
            }
            count_key_packages(tx, &device)
        })
        .await
    }

    async fn key_package_count(&self, device: DeviceId) -> StoreResult<KeyPackageCount> {
        self.read(move |conn| count_key_packages(conn, &device))
            .await
    }

    async fn claim_key_package(&self, device: DeviceId) -> StoreResult<Option<ClaimedKeyPackage>> {
        // A write job: claims are serialized by the writer, so a one-time package goes out once.
        self.write(move |tx| {
            let one_time = tx
                .query_row(
                    "DELETE FROM key_packages WHERE id = (
                        SELECT id FROM key_packages WHERE device_id = ?1 AND last_resort = 0
                        ORDER BY id LIMIT 1)
                     RETURNING data",
                    params![blob(device.as_bytes())],
                    |row| row.get::<_, Vec<u8>>(0),
                )
                .optional()?;
            if let Some(data) = one_time {
                return Ok(Some(ClaimedKeyPackage {
                    device_id: device,
                    data,
                    last_resort: false,
                }));
            }
            let last_resort = tx
                .query_row(
                    "SELECT data FROM key_packages WHERE device_id = ?1 AND last_resort = 1",
                    params![blob(device.as_bytes())],
                    |row| row.get::<_, Vec<u8>>(0),
                )
                .optional()?;
            Ok(last_resort.map(|data| ClaimedKeyPackage {
                device_id: device,
                data,
                last_resort: true,
            }))
        })
        .await
    }

    async fn create_group(&self, group: NewGroup) -> StoreResult<()> {
        self.write(move |tx| {
            let id = blob(group.group_id.as_bytes());
            let exists: bool = tx.query_row(
                "SELECT EXISTS(SELECT 1 FROM groups WHERE id = ?1)",
                params![id],
                |row| row.get(0),
            )?;
            if exists {
                return Err(StoreError::GroupExists);
            }
            tx.execute(
                "INSERT INTO groups (id, epoch, next_seq, public_state, created_at) VALUES (?1, ?2, 1, ?3, ?4)",
                params![id, group.epoch as i64, group.public_state, group.now],
            )?;
            let mut insert = tx.prepare_cached(
                "INSERT INTO group_members (group_id, device_id, leaf_index) VALUES (?1, ?2, ?3)",
            )?;
            for member in &group.members {
                insert.execute(params![id, blob(member.device_id.as_bytes()), member.leaf_index])?;
            }
            Ok(())
        })
        .await
    }

    async fn group(&self, group: GroupId) -> StoreResult<Option<GroupRecord>> {
        self.read(move |conn| {
            Ok(conn
                .query_row(
                    "SELECT epoch, public_state,
                        (SELECT COUNT(*) FROM group_members WHERE group_id = groups.id),
                        state_version
                     FROM groups WHERE id = ?1",
                    params![blob(group.as_bytes())],
                    |row| {
                        Ok(GroupRecord {
                            group_id: group,
                            epoch: row.get::<_, i64>(0)? as u64,
                            public_state: row.get(1)?,
                            member_count: row.get::<_, i64>(2)? as u64,
                            state_version: row.get::<_, i64>(3)? as u64,
                        })
                    },
                )
                .optional()?)
        })
        .await
    }

    async fn is_member(&self, group: GroupId, device: DeviceId) -> StoreResult<bool> {
        self.read(move |conn| {
            Ok(conn.query_row(
                "SELECT EXISTS(SELECT 1 FROM group_members WHERE group_id = ?1 AND device_id = ?2)",
                params![blob(group.as_bytes()), blob(device.as_bytes())],
                |row| row.get(0),
            )?)
        })
        .await
    }

    async fn find_submission(
        &self,
        device: DeviceId,
        message: MessageId,
    ) -> StoreResult<Option<StoredSubmission>> {
        self.read(move |conn| find_submission_in(conn, &device, &message))
            .await
    }

    async fn accept(&self, submission: Submission) -> StoreResult<Accepted> {
        self.write(move |tx| accept_in(tx, submission)).await
    }

    async fn fetch_queue(
        &self,
        device: DeviceId,
        after: u64,
        limit: u32,
    ) -> StoreResult<QueuePage> {
        self.read(move |conn| {
            let (head, expired_up_to): (i64, i64) = conn
                .query_row(
                    "SELECT queue_head, expired_up_to FROM devices WHERE id = ?1",
                    params![blob(device.as_bytes())],
                    |row| Ok((row.get(0)?, row.get(1)?)),
                )
                .optional()?
                .unwrap_or((0, 0));
            let mut statement = conn.prepare_cached(
                "SELECT q.seq, p.kind, p.group_id, p.group_seq, p.sender_device, u.username,
                        p.message_id, p.accepted_at, p.data, p.franking_tag
                 FROM queue q
                 JOIN payloads p ON p.id = q.payload_id
                 JOIN devices d ON d.id = p.sender_device
                 JOIN users u ON u.id = d.user_id
                 WHERE q.device_id = ?1 AND q.seq > ?2
                 ORDER BY q.seq LIMIT ?3",
            )?;
            let rows = statement.query_map(
                params![blob(device.as_bytes()), after as i64, limit as i64],
                |row| {
                    let group: Vec<u8> = row.get(2)?;
                    let sender: Vec<u8> = row.get(4)?;
                    let username: String = row.get(5)?;
                    let message: Vec<u8> = row.get(6)?;
                    Ok(QueueEntry {
                        seq: row.get::<_, i64>(0)? as u64,
                        kind: ItemKind::from_i64(row.get(1)?),
                        group_id: GroupId::from_slice(&group)
                            .map_err(|e| conversion_error(e.to_string()))?,
                        group_seq: row.get::<_, i64>(3)? as u64,
                        sender_device: device_id(sender)?,
                        sender_username: Username::parse(&username)
                            .map_err(|e| conversion_error(e.to_string()))?,
                        message_id: MessageId::from_slice(&message)
                            .map_err(|e| conversion_error(e.to_string()))?,
                        accepted_at: row.get(7)?,
                        payload: row.get(8)?,
                        franking_tag: row.get(9)?,
                    })
                },
            )?;
            // A page stops once it holds MAX_FETCH_BYTES of payload (always at least one item).
            let mut entries = Vec::new();
            let mut bytes = 0;
            for row in rows {
                let entry = row?;
                if !entries.is_empty() && bytes + entry.payload.len() > MAX_FETCH_BYTES {
                    break;
                }
                bytes += entry.payload.len();
                entries.push(entry);
            }
            Ok(QueuePage {
                entries,
                head: head as u64,
                expired_up_to: expired_up_to as u64,
            })
        })
        .await
    }

    async fn ack(&self, device: DeviceId, up_to: u64) -> StoreResult<()> {
        self.write(move |tx| {
            let released = {
                let mut delete = tx.prepare_cached(
                    "DELETE FROM queue WHERE device_id = ?1 AND seq <= ?2 RETURNING payload_id",
                )?;
                let rows = delete
                    .query_map(params![blob(device.as_bytes()), up_to as i64], |row| {
                        row.get(0)
                    })?
                    .collect::<rusqlite::Result<Vec<i64>>>()?;
                rows
            };
            release_payloads(tx, &released)
        })
        .await
    }

    async fn queue_head(&self, device: DeviceId) -> StoreResult<u64> {
        self.read(move |conn| {
            let head: Option<i64> = conn
                .query_row(
                    "SELECT queue_head FROM devices WHERE id = ?1",
                    params![blob(device.as_bytes())],
                    |row| row.get(0),
                )
                .optional()?;
            Ok(head.unwrap_or(0) as u64)
        })
        .await
    }

    async fn queue_depth(&self) -> StoreResult<u64> {
        self.read(|conn| {
            Ok(
                conn.query_row("SELECT COUNT(*) FROM queue", [], |row| row.get::<_, i64>(0))?
                    as u64,
            )
        })
        .await
    }

    async fn expire(&self, before: Millis, now: Millis) -> StoreResult<u64> {
        self.write(move |tx| {
            let expired = {
                let mut delete = tx.prepare_cached(
                    "DELETE FROM queue WHERE enqueued_at < ?1 RETURNING device_id, seq, payload_id",
                )?;
                let rows = delete
                    .query_map(params![before], |row| {
                        Ok((
                            row.get::<_, Vec<u8>>(0)?,
                            row.get::<_, i64>(1)?,
                            row.get::<_, i64>(2)?,
                        ))
                    })?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                rows
            };
            let mut mark = tx.prepare_cached(
                "UPDATE devices SET expired_up_to = MAX(expired_up_to, ?2) WHERE id = ?1",
            )?;
            for (device, seq, _) in &expired {
                mark.execute(params![device, seq])?;
            }
            let payloads: Vec<i64> = expired.iter().map(|(_, _, payload)| *payload).collect();
            release_payloads(tx, &payloads)?;
            tx.execute(
                "DELETE FROM submissions WHERE accepted_at < ?1",
                params![before],
            )?;
            tx.execute("DELETE FROM challenges WHERE expires_at < ?1", params![now])?;
            tx.execute("DELETE FROM sessions WHERE expires_at < ?1", params![now])?;
            Ok(expired.len() as u64)
        })
        .await
    }

    async fn create_report(&self, report: NewReport) -> StoreResult<u64> {
        self.write(move |tx| {
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
        })
        .await
    }

    async fn reports(&self, status: Option<ReportStatus>) -> StoreResult<Vec<Report>> {
        self.read(move |conn| {
            let mut statement = conn.prepare(&format!(
                "SELECT {REPORT_COLUMNS} FROM reports WHERE (?1 IS NULL OR status = ?1) ORDER BY id"
            ))?;
            let rows = statement.query_map(params![status.map(|s| s.as_str())], report_from_row)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn report(&self, id: u64) -> StoreResult<Option<Report>> {
        self.read(move |conn| {
            Ok(conn
                .query_row(
                    &format!("SELECT {REPORT_COLUMNS} FROM reports WHERE id = ?1"),
                    params![id as i64],
                    report_from_row,
                )
                .optional()?)
        })
        .await
    }

    async fn set_report_status(
        &self,
        id: u64,
        status: ReportStatus,
        audit: AuditEntry,
    ) -> StoreResult<bool> {
        self.write(move |tx| {
            let changed = tx.execute(
                "UPDATE reports SET status = ?2 WHERE id = ?1",
                params![id as i64, status.as_str()],
            )?;
            if changed > 0 {
                append_audit(tx, &audit)?;
            }
            Ok(changed > 0)
        })
        .await
    }

    async fn set_suspended(
        &self,
        username: &Username,
        suspended: bool,
        audit: AuditEntry,
    ) -> StoreResult<bool> {
        let username = username.clone();
        self.write(move |tx| {
            let changed = if suspended {
                tx.execute(
                    "UPDATE users SET suspended_at = ?2 WHERE username = ?1 AND suspended_at IS NULL",
                    params![username.as_str(), audit.at],
                )?
            } else {
                tx.execute(
                    "UPDATE users SET suspended_at = NULL WHERE username = ?1 AND suspended_at IS NOT NULL",
                    params![username.as_str()],
                )?
            };
            if suspended {
                // Its sessions end now.
                tx.execute(
                    "DELETE FROM sessions WHERE device_id IN (
                        SELECT d.id FROM devices d JOIN users u ON u.id = d.user_id WHERE u.username = ?1)",
                    params![username.as_str()],
                )?;
            }
            if changed > 0 {
                append_audit(tx, &audit)?;
            }
            Ok(changed > 0)
        })
        .await
    }

    async fn memberships(&self, username: &Username) -> StoreResult<Vec<Membership>> {
        let username = username.clone();
        self.read(move |conn| {
            let mut statement = conn.prepare(
                "SELECT m.group_id, m.leaf_index FROM group_members m
                 JOIN devices d ON d.id = m.device_id JOIN users u ON u.id = d.user_id
                 WHERE u.username = ?1 ORDER BY m.group_id, m.leaf_index",
            )?;
            let rows = statement
                .query_map(params![username.as_str()], |row| {
                    Ok((row.get::<_, Vec<u8>>(0)?, row.get::<_, i64>(1)? as u32))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let mut memberships: Vec<Membership> = Vec::new();
            for (group, leaf) in rows {
                let group_id =
                    GroupId::from_slice(&group).map_err(|e| StoreError::Backend(e.to_string()))?;
                match memberships.last_mut() {
                    Some(last) if last.group_id == group_id => last.leaves.push(leaf),
                    _ => memberships.push(Membership {
                        group_id,
                        leaves: vec![leaf],
                    }),
                }
            }
            Ok(memberships)
        })
        .await
    }

    async fn add_admin_token(
        &self,
        token_hash: Vec<u8>,
        label: String,
        now: Millis,
    ) -> StoreResult<()> {
        self.write(move |tx| {
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
        })
        .await
    }

    async fn admin_token(&self, token_hash: &[u8]) -> StoreResult<Option<String>> {
        let token_hash = token_hash.to_vec();
        self.read(move |conn| {
            Ok(conn
                .query_row(
                    "SELECT label FROM admin_tokens WHERE token_hash = ?1",
                    params![token_hash],
                    |row| row.get(0),
                )
                .optional()?)
        })
        .await
    }

    async fn audit(&self, entry: AuditEntry) -> StoreResult<()> {
        self.write(move |tx| append_audit(tx, &entry)).await
    }

    async fn audit_log(&self) -> StoreResult<Vec<AuditEntry>> {
        self.read(|conn| {
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
        })
        .await
    }
}
