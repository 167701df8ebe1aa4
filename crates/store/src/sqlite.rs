//! [`Store`] on an embedded SQLite database (WAL, `synchronous = FULL`).
//!
//! Writes go through one writer thread that gathers the jobs waiting at the same moment into one
//! transaction (group commit), each job inside its own savepoint so that one failing job does not
//! undo the others. A job's caller gets its answer only after that transaction has committed, so
//! an acknowledgement always means "durably stored". Reads run on two reader threads with a
//! connection each; WAL lets them run beside the writer.
//!
//! A device's queue is stored as runs over its groups' payloads (see migration 4): a group
//! message costs one payload row and one small in-place update per recipient, and an
//! acknowledgement moves or drops runs instead of deleting a row per item.

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
    r#"
-- Each device's queue as runs instead of one row per item. A run maps a range of the device's
-- sequence numbers onto the payloads that make up a group's log: `single = 0`: the group's
-- messages with ids first_payload..=last_payload that the device did not send itself, one per
-- sequence number; `single = 1`: exactly one payload (a Welcome). A device's open run (at most
-- one, its newest) is extended in place by the group's next message, so a message costs one
-- small row update per recipient, and an acknowledgement moves the start of a run or deletes it.
-- A payload is garbage once it lies below the first payload of every run of its group.
CREATE TABLE queue_runs (
    device_id      BLOB NOT NULL,
    first_seq      INTEGER NOT NULL,
    last_seq       INTEGER NOT NULL,
    group_id       BLOB NOT NULL,
    first_payload  INTEGER NOT NULL,
    last_payload   INTEGER NOT NULL,
    single         INTEGER NOT NULL,
    open           INTEGER NOT NULL,
    PRIMARY KEY (device_id, first_seq)
) WITHOUT ROWID;
CREATE INDEX queue_runs_group ON queue_runs(group_id, first_payload);
CREATE INDEX queue_runs_open ON queue_runs(group_id, device_id) WHERE open = 1;
-- Covers the filter of a group run, so that finding where a run continues reads no payloads.
CREATE INDEX payloads_group ON payloads(group_id, id, kind, sender_device);
-- Queued items of the old layout become runs of one item each.
INSERT INTO queue_runs (device_id, first_seq, last_seq, group_id, first_payload, last_payload, single, open)
    SELECT q.device_id, q.seq, q.seq, p.group_id, p.id, p.id, 1, 0
    FROM queue q JOIN payloads p ON p.id = q.payload_id;
DROP TABLE queue;
-- From now on `devices.queue_head` is only a floor: the head is the larger of it and the last
-- sequence number of the device's runs, and it is raised when runs are deleted.

-- A group's public state (its ratchet tree: hundreds of kilobytes in a large group) lives apart
-- from the row that every message updates: rewriting that row read and compared the whole state
-- each time.
CREATE TABLE group_states (
    group_id      BLOB PRIMARY KEY,
    public_state  BLOB NOT NULL
);
INSERT INTO group_states (group_id, public_state) SELECT id, public_state FROM groups;
ALTER TABLE groups DROP COLUMN public_state;
"#,
];

const DATABASE_FILE: &str = "parley.db";
/// Payload bytes in one queue page.
const MAX_FETCH_BYTES: usize = 16 * 1024 * 1024;
/// Most jobs folded into one transaction.
const MAX_BATCH: usize = 256;
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

/// The device's newest sequence number (the larger of the floor kept in `devices` and the end
/// of its newest run) and how far its queue has expired; zeros for an unknown device.
fn queue_position(conn: &Connection, device: &[u8]) -> rusqlite::Result<(i64, i64)> {
    query_one(
        conn,
        "SELECT MAX(d.queue_head, COALESCE((SELECT MAX(last_seq) FROM queue_runs WHERE device_id = ?1), 0)),
                d.expired_up_to
         FROM devices d WHERE d.id = ?1",
        params![device],
        |row| Ok((row.get(0)?, row.get(1)?)),
    )
    .optional()
    .map(|position| position.unwrap_or((0, 0)))
}

/// Starts a new run for `device` (closing its open one): the next sequence number maps to
/// `payload_id`. Returns that sequence number.
fn start_run(
    tx: &Transaction<'_>,
    device: &DeviceId,
    group: &[u8],
    payload_id: i64,
    single: bool,
) -> StoreResult<u64> {
    let device = blob(device.as_bytes());
    exec(
        tx,
        "UPDATE queue_runs SET open = 0 WHERE device_id = ?1 AND open = 1",
        params![device],
    )?;
    let seq = queue_position(tx, device)?.0 + 1;
    exec(
        tx,
        "INSERT INTO queue_runs (device_id, first_seq, last_seq, group_id, first_payload, last_payload, single, open)
         VALUES (?1, ?2, ?2, ?3, ?4, ?4, ?5, ?6)",
        params![device, seq, group, payload_id, single, !single],
    )?;
    Ok(seq as u64)
}

/// Appends a group message to the queue of every member of `group` but `sender`: members whose
/// newest run is this group's extend it in place (one statement for all of them); the others
/// start a run.
fn enqueue_members(
    tx: &Transaction<'_>,
    group: &[u8],
    sender: &DeviceId,
    recipients: &[DeviceId],
    payload_id: i64,
    deliveries: &mut Vec<(DeviceId, u64)>,
) -> StoreResult<()> {
    let mut extend = tx.prepare_cached(
        "UPDATE queue_runs SET last_seq = last_seq + 1, last_payload = ?3
         WHERE open = 1 AND group_id = ?1
           AND device_id IN (SELECT device_id FROM group_members WHERE group_id = ?1 AND device_id != ?2)
         RETURNING device_id, last_seq",
    )?;
    let rows = extend.query_map(params![group, blob(sender.as_bytes()), payload_id], |row| {
        Ok((device_id(row.get(0)?)?, row.get::<_, i64>(1)? as u64))
    })?;
    let before = deliveries.len();
    for row in rows {
        deliveries.push(row?);
    }
    if deliveries.len() - before < recipients.len() {
        let extended: std::collections::HashSet<DeviceId> =
            deliveries[before..].iter().map(|(d, _)| *d).collect();
        for device in recipients.iter().filter(|d| !extended.contains(*d)) {
            let seq = start_run(tx, device, group, payload_id, false)?;
            deliveries.push((*device, seq));
        }
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

/// Deletes the payloads of `groups` that no run needs any more: those below the first payload
/// of every run of their group (all of them when the group has no run left).
fn collect_garbage(tx: &Transaction<'_>, groups: &[Vec<u8>]) -> StoreResult<()> {
    let unique: std::collections::BTreeSet<&Vec<u8>> = groups.iter().collect();
    let mut delete = tx.prepare_cached(
        "DELETE FROM payloads WHERE group_id = ?1
           AND id < COALESCE((SELECT MIN(first_payload) FROM queue_runs WHERE group_id = ?1), ?2)",
    )?;
    for group in unique {
        delete.execute(params![group, i64::MAX])?;
    }
    Ok(())
}

/// The id of the payload `offset` items after the start of a group run of `device`.
fn run_item(
    tx: &Transaction<'_>,
    device: &[u8],
    group: &[u8],
    first_payload: i64,
    last_payload: i64,
    offset: i64,
) -> StoreResult<Option<i64>> {
    Ok(query_one(
        tx,
        "SELECT id FROM payloads
         WHERE group_id = ?1 AND id BETWEEN ?2 AND ?3 AND kind = 1 AND sender_device != ?4
         ORDER BY id LIMIT 1 OFFSET ?5",
        params![group, first_payload, last_payload, device, offset],
        |row| row.get(0),
    )
    .optional()?)
}

/// Drops the first `count` items of the device's run that starts at `first_seq` (all of them:
/// the run goes). Raises the device's head floor past dropped runs.
fn drop_run_items(tx: &Transaction<'_>, device: &[u8], run: &Run, count: i64) -> StoreResult<()> {
    // Items are left only in a group run that loses fewer than all of them.
    let remaining = if !run.single && count <= run.last_seq - run.first_seq {
        run_item(
            tx,
            device,
            &run.group,
            run.first_payload,
            run.last_payload,
            count,
        )?
    } else {
        None
    };
    match remaining {
        Some(next_payload) => {
            exec(
                tx,
                "UPDATE queue_runs SET first_seq = ?3, first_payload = ?4
                 WHERE device_id = ?1 AND first_seq = ?2",
                params![device, run.first_seq, run.first_seq + count, next_payload],
            )?;
        }
        None => {
            exec(
                tx,
                "DELETE FROM queue_runs WHERE device_id = ?1 AND first_seq = ?2",
                params![device, run.first_seq],
            )?;
            exec(
                tx,
                "UPDATE devices SET queue_head = MAX(queue_head, ?2) WHERE id = ?1",
                params![device, run.last_seq],
            )?;
        }
    }
    Ok(())
}

/// One row of `queue_runs`.
struct Run {
    first_seq: i64,
    last_seq: i64,
    group: Vec<u8>,
    first_payload: i64,
    last_payload: i64,
    single: bool,
}

/// A queued payload; `FROM` included, `WHERE` to follow. The sender's name is looked up once per
/// page and sender ([`SenderNames`]), not joined into every row.
const ITEM_COLUMNS: &str = "p.kind, p.group_id, p.group_seq, p.sender_device, p.message_id,
        p.accepted_at, p.data, p.franking_tag
     FROM payloads p";

/// Usernames of the senders met while reading one page of a queue.
#[derive(Default)]
struct SenderNames(std::collections::HashMap<Vec<u8>, Username>);

impl SenderNames {
    fn of(&mut self, conn: &Connection, device: Vec<u8>) -> rusqlite::Result<Username> {
        if let Some(name) = self.0.get(&device) {
            return Ok(name.clone());
        }
        let name: String = query_one(
            conn,
            "SELECT u.username FROM devices d JOIN users u ON u.id = d.user_id WHERE d.id = ?1",
            params![device],
            |row| row.get(0),
        )?;
        let name = Username::parse(&name).map_err(|e| conversion_error(e.to_string()))?;
        self.0.insert(device, name.clone());
        Ok(name)
    }
}

fn item_from_row(
    conn: &Connection,
    names: &mut SenderNames,
    row: &rusqlite::Row<'_>,
    seq: i64,
) -> rusqlite::Result<QueueEntry> {
    let group: Vec<u8> = row.get(1)?;
    let sender: Vec<u8> = row.get(3)?;
    let message: Vec<u8> = row.get(4)?;
    Ok(QueueEntry {
        seq: seq as u64,
        kind: ItemKind::from_i64(row.get(0)?),
        group_id: GroupId::from_slice(&group).map_err(|e| conversion_error(e.to_string()))?,
        group_seq: row.get::<_, i64>(2)? as u64,
        sender_device: device_id(sender.clone())?,
        sender_username: names.of(conn, sender)?,
        message_id: MessageId::from_slice(&message).map_err(|e| conversion_error(e.to_string()))?,
        accepted_at: row.get(5)?,
        payload: row.get(6)?,
        franking_tag: row.get(7)?,
    })
}

/// The columns [`run_from_row`] reads, of `queue_runs r`.
const RUN_COLUMNS: &str =
    "r.first_seq, r.last_seq, r.group_id, r.first_payload, r.last_payload, r.single";

fn run_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Run> {
    Ok(Run {
        first_seq: row.get(0)?,
        last_seq: row.get(1)?,
        group: row.get(2)?,
        first_payload: row.get(3)?,
        last_payload: row.get(4)?,
        single: row.get(5)?,
    })
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
        enqueue_members(
            tx,
            group,
            &submission.sender,
            &recipients,
            payload_id,
            &mut deliveries,
        )?;
        debug_assert_eq!(deliveries.len(), recipients.len());
    }

    let mut new_epoch = epoch as u64;
    if let Some(transition) = &submission.transition {
        new_epoch = transition.new_epoch;
        exec(
            tx,
            "UPDATE groups SET epoch = ?2, state_version = state_version + 1 WHERE id = ?1",
            params![group, new_epoch as i64],
        )?;
        exec(
            tx,
            "UPDATE group_states SET public_state = ?2 WHERE group_id = ?1",
            params![group, transition.new_public_state],
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
        // A device that left stops growing its run: should it come back, what it missed while
        // away must not count as part of that run.
        exec(
            tx,
            "UPDATE queue_runs SET open = 0
             WHERE open = 1 AND group_id = ?1
               AND device_id NOT IN (SELECT device_id FROM group_members WHERE group_id = ?1)",
            params![group],
        )?;
        if let Some(welcome) = &transition.welcome {
            let welcome_id = insert_payload(
                tx,
                ItemKind::Welcome,
                &submission,
                group_seq,
                &welcome.payload,
            )?;
            for recipient in &welcome.recipients {
                let seq = start_run(tx, recipient, group, welcome_id, true)?;
                deliveries.push((*recipient, seq));
            }
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
                "INSERT INTO groups (id, epoch, next_seq, created_at) VALUES (?1, ?2, 1, ?3)",
                params![id, group.epoch as i64, group.now],
            )?;
            tx.execute(
                "INSERT INTO group_states (group_id, public_state) VALUES (?1, ?2)",
                params![id, group.public_state],
            )?;
            let mut insert = tx.prepare_cached(
                "INSERT INTO group_members (group_id, device_id, leaf_index) VALUES (?1, ?2, ?3)",
            )?;
            for member in &group.members {
                insert.execute(params![
                    id,
                    blob(member.device_id.as_bytes()),
                    member.leaf_index
                ])?;
            }
            Ok(())
        })
        .await
    }

    async fn group(&self, group: GroupId) -> StoreResult<Option<GroupRecord>> {
        self.read(move |conn| {
            Ok(conn
                .query_row(
                    "SELECT g.epoch, s.public_state,
                        (SELECT COUNT(*) FROM group_members WHERE group_id = g.id),
                        g.state_version
                     FROM groups g JOIN group_states s ON s.group_id = g.id
                     WHERE g.id = ?1",
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
            let device_bytes = blob(device.as_bytes());
            let (head, expired_up_to) = queue_position(conn, device_bytes)?;
            let runs = conn
                .prepare_cached(&format!(
                    "SELECT {RUN_COLUMNS} FROM queue_runs r
                     WHERE r.device_id = ?1 AND r.last_seq > ?2 ORDER BY r.first_seq"
                ))?
                .query_map(params![device_bytes, after as i64], run_from_row)?
                .collect::<rusqlite::Result<Vec<Run>>>()?;
            let mut single =
                conn.prepare_cached(&format!("SELECT {ITEM_COLUMNS} WHERE p.id = ?1"))?;
            let mut range = conn.prepare_cached(&format!(
                "SELECT {ITEM_COLUMNS}
                 WHERE p.group_id = ?1 AND p.id BETWEEN ?2 AND ?3 AND p.kind = 1
                   AND p.sender_device != ?4
                 ORDER BY p.id LIMIT ?5 OFFSET ?6"
            ))?;
            // A page stops once it holds MAX_FETCH_BYTES of payload (always at least one item).
            let mut entries: Vec<QueueEntry> = Vec::new();
            let mut bytes = 0;
            let mut names = SenderNames::default();
            'runs: for run in runs {
                let skip = (after as i64 + 1 - run.first_seq).max(0);
                let wanted = limit as i64 - entries.len() as i64;
                if wanted <= 0 {
                    break;
                }
                let mut rows = if run.single {
                    single.query(params![run.first_payload])?
                } else {
                    range.query(params![
                        run.group,
                        run.first_payload,
                        run.last_payload,
                        device_bytes,
                        wanted,
                        skip
                    ])?
                };
                let mut seq = run.first_seq + skip;
                while let Some(row) = rows.next()? {
                    let entry = item_from_row(conn, &mut names, row, seq)?;
                    seq += 1;
                    if !entries.is_empty() && bytes + entry.payload.len() > MAX_FETCH_BYTES {
                        break 'runs;
                    }
                    bytes += entry.payload.len();
                    entries.push(entry);
                }
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
            let device = blob(device.as_bytes());
            let runs = tx
                .prepare_cached(&format!(
                    "SELECT {RUN_COLUMNS} FROM queue_runs r
                     WHERE r.device_id = ?1 AND r.first_seq <= ?2 ORDER BY r.first_seq"
                ))?
                .query_map(params![device, up_to as i64], run_from_row)?
                .collect::<rusqlite::Result<Vec<Run>>>()?;
            let mut groups = Vec::with_capacity(runs.len());
            for run in runs {
                let count = (up_to as i64).min(run.last_seq) - run.first_seq + 1;
                drop_run_items(tx, device, &run, count)?;
                groups.push(run.group);
            }
            collect_garbage(tx, &groups)
        })
        .await
    }

    async fn queue_head(&self, device: DeviceId) -> StoreResult<u64> {
        self.read(move |conn| Ok(queue_position(conn, blob(device.as_bytes()))?.0 as u64))
            .await
    }

    async fn queue_depth(&self) -> StoreResult<u64> {
        self.read(|conn| {
            Ok(conn.query_row(
                "SELECT COALESCE(SUM(last_seq - first_seq + 1), 0) FROM queue_runs",
                [],
                |row| row.get::<_, i64>(0),
            )? as u64)
        })
        .await
    }

    async fn expire(&self, before: Millis, now: Millis) -> StoreResult<u64> {
        self.write(move |tx| {
            // Runs whose first item is older than `before` lose their items up to the first
            // one that is not (the order of a device's queue is kept: no item is dropped
            // while an older one stays).
            let stale = tx
                .prepare_cached(&format!(
                    "SELECT {RUN_COLUMNS}, r.device_id
                     FROM queue_runs r JOIN payloads p ON p.id = r.first_payload
                     WHERE p.accepted_at < ?1"
                ))?
                .query_map(params![before], |row| {
                    Ok((row.get::<_, Vec<u8>>(6)?, run_from_row(row)?))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let mut expired = 0u64;
            let mut groups = Vec::with_capacity(stale.len());
            for (device, run) in stale {
                let count: i64 = if run.single {
                    1
                } else {
                    let times = tx
                        .prepare_cached(
                            "SELECT accepted_at FROM payloads
                             WHERE group_id = ?1 AND id BETWEEN ?2 AND ?3 AND kind = 1
                               AND sender_device != ?4
                             ORDER BY id",
                        )?
                        .query_map(
                            params![run.group, run.first_payload, run.last_payload, device],
                            |row| row.get::<_, i64>(0),
                        )?
                        .collect::<rusqlite::Result<Vec<_>>>()?;
                    times.iter().take_while(|at| **at < before).count() as i64
                };
                drop_run_items(tx, &device, &run, count)?;
                exec(
                    tx,
                    "UPDATE devices SET expired_up_to = MAX(expired_up_to, ?2) WHERE id = ?1",
                    params![device, run.first_seq + count - 1],
                )?;
                expired += count as u64;
                groups.push(run.group);
            }
            collect_garbage(tx, &groups)?;
            tx.execute(
                "DELETE FROM submissions WHERE accepted_at < ?1",
                params![before],
            )?;
            tx.execute("DELETE FROM challenges WHERE expires_at < ?1", params![now])?;
            tx.execute("DELETE FROM sessions WHERE expires_at < ?1", params![now])?;
            Ok(expired)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn payload_count(store: &SqliteStore) -> i64 {
        let conn = Connection::open(store.database_path()).unwrap();
        conn.query_row("SELECT COUNT(*) FROM payloads", [], |row| row.get(0))
            .unwrap()
    }

    /// A database written by the per-item queue layout (migration 3) keeps its undelivered
    /// items, their numbers and its heads when it moves to runs.
    #[tokio::test]
    async fn queued_items_survive_the_move_to_runs() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut conn = Connection::open(dir.path().join(DATABASE_FILE)).unwrap();
            let tx = conn.transaction().unwrap();
            for (index, migration) in MIGRATIONS[..3].iter().enumerate() {
                tx.execute_batch(migration).unwrap();
                tx.pragma_update(None, "user_version", index as i64 + 1)
                    .unwrap();
            }
            tx.execute_batch(
                "INSERT INTO users (id, username, created_at) VALUES
                    (X'01010101010101010101010101010101', 'alice', 1),
                    (X'02020202020202020202020202020202', 'bob', 1);
                 INSERT INTO devices (id, user_id, signature_key, queue_head, created_at) VALUES
                    (X'01010101010101010101010101010101', X'01010101010101010101010101010101', X'01', 0, 1),
                    (X'02020202020202020202020202020202', X'02020202020202020202020202020202', X'02', 7, 1);
                 INSERT INTO groups (id, epoch, next_seq, public_state, created_at) VALUES
                    (X'07070707070707070707070707070707', 1, 3, X'00', 1);
                 INSERT INTO group_members (group_id, device_id, leaf_index) VALUES
                    (X'07070707070707070707070707070707', X'01010101010101010101010101010101', 0),
                    (X'07070707070707070707070707070707', X'02020202020202020202020202020202', 1);
                 INSERT INTO payloads (id, kind, group_id, group_seq, sender_device, message_id, accepted_at, data) VALUES
                    (1, 2, X'07070707070707070707070707070707', 0, X'01010101010101010101010101010101', X'11111111111111111111111111111111', 5, X'77656c636f6d65'),
                    (2, 1, X'07070707070707070707070707070707', 2, X'01010101010101010101010101010101', X'22222222222222222222222222222222', 6, X'6869');
                 INSERT INTO queue (device_id, seq, payload_id, enqueued_at) VALUES
                    (X'02020202020202020202020202020202', 6, 1, 5),
                    (X'02020202020202020202020202020202', 7, 2, 6);",
            )
            .unwrap();
            tx.commit().unwrap();
        }
        let store = SqliteStore::open(dir.path(), SqliteOptions::default()).unwrap();
        let alice = DeviceId::from_bytes([1; 16]);
        let bob = DeviceId::from_bytes([2; 16]);
        let page = store.fetch_queue(bob, 0, 10).await.unwrap();
        let items: Vec<(u64, ItemKind, &[u8])> = page
            .entries
            .iter()
            .map(|e| (e.seq, e.kind, e.payload.as_slice()))
            .collect();
        assert_eq!(
            items,
            [
                (6, ItemKind::Welcome, b"welcome".as_slice()),
                (7, ItemKind::GroupMessage, b"hi".as_slice())
            ]
        );
        assert_eq!(page.head, 7);
        let group = store
            .group(GroupId::from_bytes([7; 16]))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (group.public_state, group.member_count),
            (vec![0], 2),
            "the public state moved to its own table"
        );
        // The numbering goes on from the old head.
        let next = store
            .accept(Submission {
                sender: alice,
                message_id: MessageId::from_bytes([3; 16]),
                fingerprint: b"again".to_vec(),
                group_id: GroupId::from_bytes([7; 16]),
                epoch: 1,
                payload: b"again".to_vec(),
                accepted_at: 7,
                transition: None,
                franking_tag: None,
            })
            .await
            .unwrap();
        assert_eq!(next.deliveries, vec![(bob, 8)]);
        store.ack(bob, 8).await.unwrap();
        assert_eq!(
            payload_count(&store),
            0,
            "acknowledged payloads are deleted"
        );
    }

    /// A group message's payload stays until the last of its recipients has acknowledged it,
    /// then goes; so do messages nobody else needs that sit below it in the group's log.
    #[tokio::test]
    async fn a_payload_goes_with_its_last_recipient() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path(), SqliteOptions::default()).unwrap();
        let devices: Vec<DeviceId> = (1..=3u8).map(|n| DeviceId::from_bytes([n; 16])).collect();
        for (n, device) in devices.iter().enumerate() {
            store
                .create_account(NewAccount {
                    user_id: UserId::from_bytes([n as u8 + 1; 16]),
                    username: Username::parse(&format!("user{n}")).unwrap(),
                    device_id: *device,
                    signature_key: vec![n as u8 + 1; 32],
                    now: 1,
                })
                .await
                .unwrap();
        }
        let group = GroupId::from_bytes([9; 16]);
        store
            .create_group(NewGroup {
                group_id: group,
                epoch: 1,
                public_state: vec![0],
                members: devices
                    .iter()
                    .enumerate()
                    .map(|(i, d)| GroupMember {
                        device_id: *d,
                        leaf_index: i as u32,
                    })
                    .collect(),
                now: 1,
            })
            .await
            .unwrap();
        for (index, sender) in [0usize, 1, 0].into_iter().enumerate() {
            store
                .accept(Submission {
                    sender: devices[sender],
                    message_id: MessageId::from_bytes([index as u8; 16]),
                    fingerprint: vec![index as u8],
                    group_id: group,
                    epoch: 1,
                    payload: vec![index as u8],
                    accepted_at: 5,
                    transition: None,
                    franking_tag: None,
                })
                .await
                .unwrap();
        }
        assert_eq!(payload_count(&store), 3);
        // Device 2 has all three; device 1 has the first and the third; device 0 the second.
        store.ack(devices[2], 3).await.unwrap();
        store.ack(devices[0], 1).await.unwrap();
        assert_eq!(payload_count(&store), 3, "device 1 still needs the first");
        store.ack(devices[1], 1).await.unwrap();
        assert_eq!(payload_count(&store), 1, "only the third is still needed");
        store.ack(devices[1], 2).await.unwrap();
        assert_eq!(payload_count(&store), 0);
        assert_eq!(store.queue_depth().await.unwrap(), 0);
    }
}
