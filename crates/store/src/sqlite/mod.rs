//! [`Store`] on an embedded SQLite database (WAL, `synchronous = FULL`).
//!
//! Writes go through one writer thread that gathers the jobs waiting at the same moment into one
//! transaction (group commit), each job inside its own savepoint so that one failing job does not
//! undo the others. A job's caller gets its answer only after that transaction has committed, so
//! an acknowledgement always means "durably stored". Reads run on two reader threads with a
//! connection each; WAL lets them run beside the writer.
//!
//! This module owns the connections and threads; the SQL lives in one module per concern, each
//! with the migrations for its tables ([`migrations`] puts them in order). Every [`Store`] method
//! here only picks the writer or a reader and calls its concern's function.

mod accounts;
mod attachments;
mod groups;
mod keypackages;
mod links;
mod migrations;
mod moderation;
mod queue;
mod recovery;
mod rotation;
mod sql;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use parley_protocol::{DeviceId, GroupId, MessageId, UserId, Username};
use rusqlite::{Connection, Transaction};
use std::time::Instant;

use tokio::sync::oneshot;

use crate::model::*;
use crate::{Store, StoreError, StoreResult};
use sql::exec;

/// The database file inside the data directory.
pub const DATABASE_FILE: &str = "parley.db";
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

/// The data directory (0700) and the database with its WAL and shared-memory files (0600) are
/// for their owner only, whatever the umask: the database holds reported plaintexts. SQLite
/// gives the `-wal` and `-shm` files the database file's mode, so the database is created
/// first, by us; files of an older installation are tightened.
fn private_files(dir: &Path, database: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let tighten = |path: &Path, mode: u32| -> std::io::Result<()> {
        match std::fs::metadata(path) {
            Ok(meta) if meta.permissions().mode() & 0o077 != 0 => {
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            }
            Ok(_) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    };
    tighten(dir, 0o700)?;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(database)?;
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let mut name = database.as_os_str().to_owned();
        name.push(suffix);
        tighten(Path::new(&name), 0o600)?;
    }
    Ok(())
}

impl SqliteStore {
    /// Opens (creating if needed) `parley.db` in `dir` and applies pending migrations.
    pub fn open(dir: &Path, options: SqliteOptions) -> StoreResult<SqliteStore> {
        let path = dir.join(DATABASE_FILE);
        private_files(dir, &path)
            .map_err(|e| StoreError::Backend(format!("cannot create {}: {e}", dir.display())))?;
        let mut conn = open_connection(&path, &options)?;
        migrations::migrate(&mut conn)?;
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

/// Each method runs its concern's function as a write job (one transaction in a group commit) or
/// on a reader thread.
#[async_trait]
impl Store for SqliteStore {
    // Accounts, devices, sessions
    async fn create_account(&self, account: NewAccount) -> StoreResult<()> {
        self.write(move |tx| accounts::create_account(tx, account))
            .await
    }

    async fn device(&self, device: DeviceId) -> StoreResult<Option<DeviceRecord>> {
        self.read(move |conn| accounts::device(conn, device)).await
    }

    async fn user_devices(&self, username: &Username) -> StoreResult<Vec<DeviceRecord>> {
        let username = username.clone();
        self.read(move |conn| accounts::user_devices(conn, &username))
            .await
    }

    async fn account_devices(&self, user: UserId) -> StoreResult<Vec<AccountDeviceRecord>> {
        self.read(move |conn| accounts::account_devices(conn, user))
            .await
    }

    async fn rename_device(&self, device: DeviceId, sealed_name: Vec<u8>) -> StoreResult<()> {
        self.write(move |tx| accounts::rename_device(tx, device, sealed_name))
            .await
    }

    async fn revoke_device(
        &self,
        device: DeviceId,
        by: DeviceId,
        revocation: Vec<u8>,
        rotation: Option<NewRotation>,
        now: Millis,
    ) -> StoreResult<bool> {
        self.write(move |tx| {
            let revoked = accounts::revoke_device(tx, device, by, revocation, now)?;
            if let Some(rotation) = rotation {
                rotation::rotate(tx, by, rotation, now)?;
            }
            Ok(revoked)
        })
        .await
    }

    async fn account_rotations(&self, user: UserId) -> StoreResult<Vec<Vec<u8>>> {
        self.read(move |conn| rotation::account_rotations(conn, user))
            .await
    }

    async fn rotation_keys(&self, device: DeviceId) -> StoreResult<Option<Vec<u8>>> {
        self.read(move |conn| rotation::rotation_keys(conn, device))
            .await
    }

    async fn finish_rotation(&self, device: DeviceId) -> StoreResult<()> {
        self.write(move |tx| rotation::finish_rotation(tx, device))
            .await
    }

    async fn create_link(&self, link: NewLink) -> StoreResult<()> {
        self.write(move |tx| links::create_link(tx, link)).await
    }

    async fn link(&self, link_id: &[u8], now: Millis) -> StoreResult<Option<LinkRecord>> {
        let link_id = link_id.to_vec();
        self.read(move |conn| links::link(conn, &link_id, now))
            .await
    }

    async fn approve_link(&self, approval: LinkApproval) -> StoreResult<DeviceRecord> {
        self.write(move |tx| links::approve_link(tx, approval))
            .await
    }

    async fn create_blob(&self, blob: NewBlob) -> StoreResult<()> {
        self.write(move |tx| links::create_blob(tx, blob)).await
    }

    async fn blob(&self, blob_id: &[u8], now: Millis) -> StoreResult<Option<BlobRecord>> {
        let blob_id = blob_id.to_vec();
        self.read(move |conn| links::blob_record(conn, &blob_id, now))
            .await
    }

    async fn put_blob_chunk(
        &self,
        blob_id: &[u8],
        index: u32,
        data: Vec<u8>,
        now: Millis,
    ) -> StoreResult<()> {
        let blob_id = blob_id.to_vec();
        self.write(move |tx| links::put_blob_chunk(tx, &blob_id, index, data, now))
            .await
    }

    async fn seal_blob(&self, blob_id: &[u8], chunks: u32, now: Millis) -> StoreResult<()> {
        let blob_id = blob_id.to_vec();
        self.write(move |tx| links::seal_blob(tx, &blob_id, chunks, now))
            .await
    }

    async fn blob_chunk(&self, blob_id: &[u8], index: u32) -> StoreResult<Option<Vec<u8>>> {
        let blob_id = blob_id.to_vec();
        self.read(move |conn| links::blob_chunk(conn, &blob_id, index))
            .await
    }

    async fn delete_blob(&self, blob_id: &[u8]) -> StoreResult<()> {
        let blob_id = blob_id.to_vec();
        self.write(move |tx| links::delete_blob(tx, &blob_id)).await
    }

    async fn expire_links_and_blobs(&self, now: Millis) -> StoreResult<u64> {
        self.write(move |tx| links::expire_links_and_blobs(tx, now))
            .await
    }

    async fn put_group_info(&self, group: GroupId, epoch: u64, info: Vec<u8>) -> StoreResult<bool> {
        self.write(move |tx| recovery::put_group_info(tx, group, epoch, info))
            .await
    }

    async fn group_info(&self, group: GroupId) -> StoreResult<Option<StoredGroupInfo>> {
        self.read(move |conn| recovery::group_info(conn, group))
            .await
    }

    async fn account_in_group(&self, group: GroupId, user: UserId) -> StoreResult<bool> {
        self.read(move |conn| recovery::account_in_group(conn, group, user))
            .await
    }

    async fn register_backup(&self, backup: NewBackup) -> StoreResult<()> {
        self.write(move |tx| recovery::register_backup(tx, backup))
            .await
    }

    async fn latest_backup(
        &self,
        username: &Username,
        backup_id: &[u8],
    ) -> StoreResult<Option<BackupRecord>> {
        let (username, backup_id) = (username.clone(), backup_id.to_vec());
        self.read(move |conn| recovery::latest_backup(conn, &username, &backup_id))
            .await
    }

    async fn backups(&self, user: UserId) -> StoreResult<Vec<BackupRecord>> {
        self.read(move |conn| recovery::backups(conn, user)).await
    }

    async fn restore_verifier(
        &self,
        user: UserId,
        backup_id: &[u8],
    ) -> StoreResult<Option<Vec<u8>>> {
        let backup_id = backup_id.to_vec();
        self.read(move |conn| recovery::restore_verifier(conn, user, &backup_id))
            .await
    }

    async fn add_restored_device(&self, device: RestoredDevice) -> StoreResult<DeviceRecord> {
        self.write(move |tx| recovery::add_restored_device(tx, device))
            .await
    }

    async fn put_challenge(&self, challenge: Challenge) -> StoreResult<()> {
        self.write(move |tx| accounts::put_challenge(tx, challenge))
            .await
    }

    async fn take_challenge(&self, nonce: &[u8]) -> StoreResult<Option<Challenge>> {
        let nonce = nonce.to_vec();
        self.write(move |tx| accounts::take_challenge(tx, nonce))
            .await
    }

    async fn create_session(&self, session: NewSession) -> StoreResult<()> {
        self.write(move |tx| accounts::create_session(tx, session))
            .await
    }

    async fn session(&self, token_hash: &[u8], now: Millis) -> StoreResult<Option<DeviceRecord>> {
        let token_hash = token_hash.to_vec();
        self.read(move |conn| accounts::session(conn, &token_hash, now))
            .await
    }

    // KeyPackages
    async fn add_key_packages(
        &self,
        device: DeviceId,
        one_time: Vec<Vec<u8>>,
        last_resort: Option<Vec<u8>>,
    ) -> StoreResult<KeyPackageCount> {
        self.write(move |tx| keypackages::add_key_packages(tx, device, one_time, last_resort))
            .await
    }

    async fn key_package_count(&self, device: DeviceId) -> StoreResult<KeyPackageCount> {
        self.read(move |conn| keypackages::count_key_packages(conn, &device))
            .await
    }

    async fn claim_key_package(&self, device: DeviceId) -> StoreResult<Option<ClaimedKeyPackage>> {
        // A write job, never a read: see `keypackages::claim_key_package`.
        self.write(move |tx| keypackages::claim_key_package(tx, device))
            .await
    }

    async fn claim_key_packages(
        &self,
        users: Vec<Vec<DeviceId>>,
    ) -> StoreResult<Vec<Vec<ClaimedKeyPackage>>> {
        self.write(move |tx| keypackages::claim_key_packages(tx, users))
            .await
    }

    // Groups
    async fn create_group(&self, group: NewGroup) -> StoreResult<()> {
        self.write(move |tx| groups::create_group(tx, group)).await
    }

    async fn group(&self, group: GroupId) -> StoreResult<Option<GroupRecord>> {
        self.read(move |conn| groups::group(conn, group)).await
    }

    async fn is_member(&self, group: GroupId, device: DeviceId) -> StoreResult<bool> {
        self.read(move |conn| groups::is_member(conn, group, device))
            .await
    }

    async fn group_devices(&self, group: GroupId) -> StoreResult<Vec<DeviceId>> {
        self.read(move |conn| groups::group_devices(conn, group))
            .await
    }

    async fn memberships(&self, username: &Username) -> StoreResult<Vec<Membership>> {
        let username = username.clone();
        self.read(move |conn| groups::memberships(conn, &username))
            .await
    }

    // Delivery Service queues
    async fn find_submission(
        &self,
        device: DeviceId,
        message: MessageId,
    ) -> StoreResult<Option<StoredSubmission>> {
        self.read(move |conn| queue::find_submission(conn, &device, &message))
            .await
    }

    async fn accept(&self, submission: Submission) -> StoreResult<Accepted> {
        self.write(move |tx| queue::accept(tx, submission)).await
    }

    async fn fetch_queue_within(
        &self,
        device: DeviceId,
        after: u64,
        limit: u32,
        max_bytes: usize,
    ) -> StoreResult<QueuePage> {
        self.read(move |conn| queue::fetch_queue(conn, device, after, limit, max_bytes))
            .await
    }

    async fn ack(&self, device: DeviceId, up_to: u64) -> StoreResult<()> {
        self.write(move |tx| queue::ack(tx, device, up_to)).await
    }

    async fn queue_head(&self, device: DeviceId) -> StoreResult<u64> {
        self.read(move |conn| queue::queue_head(conn, device)).await
    }

    async fn queue_depth(&self) -> StoreResult<u64> {
        self.read(queue::queue_depth).await
    }

    async fn expire(&self, before: Millis, now: Millis) -> StoreResult<u64> {
        self.write(move |tx| queue::expire(tx, before, now)).await
    }

    // Attachments
    async fn create_attachment(&self, new: NewAttachment) -> StoreResult<AttachmentRecord> {
        self.write(move |tx| attachments::create_attachment(tx, new))
            .await
    }

    async fn attachment(&self, hash: &[u8]) -> StoreResult<Option<AttachmentRecord>> {
        let hash = hash.to_vec();
        self.read(move |conn| attachments::attachment(conn, &hash))
            .await
    }

    async fn advance_attachment(
        &self,
        hash: &[u8],
        from: u64,
        to: u64,
        complete: bool,
    ) -> StoreResult<bool> {
        let hash = hash.to_vec();
        self.write(move |tx| attachments::advance_attachment(tx, &hash, from, to, complete))
            .await
    }

    async fn attachment_fetched(&self, hash: &[u8], device: DeviceId) -> StoreResult<bool> {
        let hash = hash.to_vec();
        self.write(move |tx| attachments::attachment_fetched(tx, &hash, device))
            .await
    }

    async fn delete_attachment(&self, hash: &[u8]) -> StoreResult<()> {
        let hash = hash.to_vec();
        self.write(move |tx| attachments::delete_attachment(tx, &hash))
            .await
    }

    async fn expire_attachments(
        &self,
        now: Millis,
        incomplete_before: Millis,
    ) -> StoreResult<Vec<Vec<u8>>> {
        self.write(move |tx| attachments::expire_attachments(tx, now, incomplete_before))
            .await
    }

    // Moderation
    async fn create_report(&self, report: NewReport) -> StoreResult<u64> {
        self.write(move |tx| moderation::create_report(tx, report))
            .await
    }

    async fn reports(&self, status: Option<ReportStatus>) -> StoreResult<Vec<Report>> {
        self.read(move |conn| moderation::reports(conn, status))
            .await
    }

    async fn report(&self, id: u64) -> StoreResult<Option<Report>> {
        self.read(move |conn| moderation::report(conn, id)).await
    }

    async fn set_report_status(
        &self,
        id: u64,
        status: ReportStatus,
        audit: AuditEntry,
    ) -> StoreResult<bool> {
        self.write(move |tx| moderation::set_report_status(tx, id, status, audit))
            .await
    }

    async fn set_suspended(
        &self,
        username: &Username,
        suspended: bool,
        audit: AuditEntry,
    ) -> StoreResult<bool> {
        let username = username.clone();
        self.write(move |tx| moderation::set_suspended(tx, &username, suspended, audit))
            .await
    }

    async fn add_admin_token(
        &self,
        token_hash: Vec<u8>,
        label: String,
        now: Millis,
    ) -> StoreResult<()> {
        self.write(move |tx| moderation::add_admin_token(tx, token_hash, label, now))
            .await
    }

    async fn admin_token(&self, token_hash: &[u8]) -> StoreResult<Option<String>> {
        let token_hash = token_hash.to_vec();
        self.read(move |conn| moderation::admin_token(conn, &token_hash))
            .await
    }

    async fn create_admin_session(
        &self,
        session_hash: Vec<u8>,
        token_hash: Vec<u8>,
        now: Millis,
        expires_at: Millis,
    ) -> StoreResult<bool> {
        self.write(move |tx| {
            moderation::create_admin_session(tx, session_hash, token_hash, expires_at, now)
        })
        .await
    }

    async fn admin_session(&self, session_hash: &[u8], now: Millis) -> StoreResult<Option<String>> {
        let session_hash = session_hash.to_vec();
        self.read(move |conn| moderation::admin_session(conn, &session_hash, now))
            .await
    }

    async fn end_admin_session(&self, session_hash: &[u8]) -> StoreResult<()> {
        let session_hash = session_hash.to_vec();
        self.write(move |tx| moderation::end_admin_session(tx, &session_hash))
            .await
    }

    async fn revoke_admin_tokens(&self, label: &str, audit: AuditEntry) -> StoreResult<u64> {
        let label = label.to_owned();
        self.write(move |tx| moderation::revoke_admin_tokens(tx, &label, &audit))
            .await
    }

    async fn audit(&self, entry: AuditEntry) -> StoreResult<()> {
        self.write(move |tx| moderation::append_audit(tx, &entry))
            .await
    }

    async fn audit_log(&self) -> StoreResult<Vec<AuditEntry>> {
        self.read(moderation::audit_log).await
    }
}
