//! The server's durable state.
//!
//! [`Store`] is the whole interface: operations at the level of the Delivery Service ("accept this
//! submission", "fetch this device's queue"), each one transaction. [`SqliteStore`] implements it
//! on an embedded SQLite database (the default); [`PgStore`] on PostgreSQL, shared by several
//! server nodes.
//!
//! Architecture invariant: only this crate contains SQL. The server's services call [`Store`]
//! methods; HTTP handlers never see a connection.
//!
//! Both backends are laid out the same way, one module per concern owning its tables and their
//! migrations: `accounts`, `keypackages`, `groups`, `queue`, `moderation`, `attachments`, ...; the trait's sections
//! below follow the same split.
//!
//! The store holds ciphertext and opaque ids. It never receives a plaintext message, a group name
//! or a private key, so no query can yield one.
#![forbid(unsafe_code)]

mod model;
mod postgres;
mod sqlite;

pub use model::*;
pub use postgres::PgStore;
pub use sqlite::{SqliteOptions, SqliteStore, DATABASE_FILE as SQLITE_DATABASE_FILE};

use async_trait::async_trait;
use parley_protocol::{DeviceId, GroupId, MessageId, UserId, Username};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("username is already taken")]
    UsernameTaken,
    #[error("signature key is already registered")]
    KeyTaken,
    #[error("device id is already registered")]
    DeviceIdTaken,
    #[error("group already exists")]
    GroupExists,
    #[error("no such group")]
    UnknownGroup,
    #[error("wrong epoch (current = {current})")]
    WrongEpoch { current: u64 },
    #[error("the group's state changed since it was read; process the message again")]
    StateChanged,
    #[error("the account key changed meanwhile (another device rotated it)")]
    AccountKeyChanged,
    #[error("sender is not a member of the group")]
    NotMember,
    #[error("this message was already accepted under another message id (replay)")]
    Replay,
    #[error("this message was already reported by this account")]
    DuplicateReport,
    #[error("message id was already used for different content")]
    IdempotencyConflict,
    /// Beyond [`parley_protocol::limits::MAX_KEY_PACKAGES_PER_DEVICE`] for the device or
    /// [`parley_protocol::limits::MAX_KEY_PACKAGE_BYTES_PER_ACCOUNT`] for its account.
    #[error("too many key packages stored for this device or account")]
    TooManyKeyPackages,
    /// The creator of a new group is already in `NewGroup::max_groups` groups.
    #[error("the account is in too many groups")]
    TooManyGroups,
    /// The user at this index of a claim has no KeyPackage left on any device.
    #[error("no key package left for the user at index {0} of the claim")]
    NoKeyPackage(usize),
    /// A recipient's queue would hold more than the submission's `queue_limit`; nothing was
    /// stored (the oldest items are never dropped to make room).
    #[error("the queue of {0} is full")]
    QueueFull(Username),
    /// The account's attachments would take more than its quota.
    #[error("the account's attachment quota is used up")]
    QuotaExceeded,
    /// Another account's upload, or another group's, holds this hash already.
    #[error("an attachment with this hash exists already")]
    AttachmentTaken,
    /// The device acting was revoked.
    #[error("this device was revoked")]
    Revoked,
    /// The account has `LinkApproval::max_devices` devices already.
    #[error("the account has as many devices as allowed")]
    TooManyDevices,
    /// The account has `NewLink::max_pending` links waiting already.
    #[error("the account has too many link requests waiting")]
    TooManyLinks,
    /// No link by that id is waiting: it expired, was approved, or never existed.
    #[error("the link code expired, was used, or is unknown")]
    LinkExpired,
    /// The account backs up under [`MAX_RECOVERY_KEYS`] keys already.
    #[error("the account backs up under too many recovery keys")]
    TooManyRecoveryKeys,
    /// A backup under an id whose restore verifier is another.
    #[error("this backup id is kept with another recovery key")]
    VerifierMismatch,
    /// The owner has `NewBlob::max_per_account` blobs already.
    #[error("the account has too many blobs stored")]
    TooManyBlobs,
    /// No such blob (or expired).
    #[error("no such blob")]
    UnknownBlob,
    /// A sealed blob takes no more chunks; an unsealed one is not complete.
    #[error("{0}")]
    BlobState(&'static str),
    #[error("storage failure: {0}")]
    Backend(String),
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Backend(e.to_string())
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Payload bytes in one page of a queue (the first item always comes, whatever its size).
pub const MAX_PAGE_BYTES: usize = 16 * 1024 * 1024;

/// Recovery keys (backup ids with a restore verifier) an account may back up under at once;
/// beyond it [`StoreError::TooManyRecoveryKeys`]. Each keeps its own newest backups.
pub const MAX_RECOVERY_KEYS: u32 = 4;

/// Durable state of a Parley server. Every method is one transaction.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    // Accounts, devices, challenges, sessions (`accounts`)
    async fn create_account(&self, account: NewAccount) -> StoreResult<()>;
    async fn device(&self, device: DeviceId) -> StoreResult<Option<DeviceRecord>>;
    async fn user_devices(&self, username: &Username) -> StoreResult<Vec<DeviceRecord>>;
    async fn put_challenge(&self, challenge: Challenge) -> StoreResult<()>;
    /// Removes and returns a challenge: each one is good for one login.
    async fn take_challenge(&self, nonce: &[u8]) -> StoreResult<Option<Challenge>>;
    async fn create_session(&self, session: NewSession) -> StoreResult<()>;
    async fn session(&self, token_hash: &[u8], now: Millis) -> StoreResult<Option<DeviceRecord>>;

    /// The account's devices with what `parley devices` shows.
    async fn account_devices(&self, user: UserId) -> StoreResult<Vec<AccountDeviceRecord>>;
    async fn rename_device(&self, device: DeviceId, sealed_name: Vec<u8>) -> StoreResult<()>;
    /// Revokes a device for good, keeping the account key's signed statement: its sessions and
    /// KeyPackages are deleted in the same transaction, and so are the restore verifiers it set,
    /// with their backups (a revoked device must not be able to restore itself back). Returns whether it was not revoked yet.
    /// [`StoreError::Revoked`] if `by` was revoked meanwhile (two devices revoking each other:
    /// one of them wins).
    /// With a `rotation`, the account's key moves to the new one in the same transaction
    /// ([`StoreError::AccountKeyChanged`] if it is no longer the rotation's old key): all the
    /// account's KeyPackages go, and each remaining device's sealed keys wait for it.
    async fn revoke_device(
        &self,
        device: DeviceId,
        by: DeviceId,
        revocation: Vec<u8>,
        rotation: Option<NewRotation>,
        now: Millis,
    ) -> StoreResult<bool>;
    /// The account's key rotations, oldest first.
    async fn account_rotations(&self, user: UserId) -> StoreResult<Vec<Vec<u8>>>;
    /// The new account key sealed to `device`, while it has not taken it up.
    async fn rotation_keys(&self, device: DeviceId) -> StoreResult<Option<Vec<u8>>>;
    async fn finish_rotation(&self, device: DeviceId) -> StoreResult<()>;

    // Linking a new device, and blobs such as history archives (`links`)
    async fn create_link(&self, link: NewLink) -> StoreResult<()>;
    /// A link that has not expired (waiting, or approved and kept).
    async fn link(&self, link_id: &[u8], now: Millis) -> StoreResult<Option<LinkRecord>>;
    /// Registers the link's device under its account and keeps the sealed bundle for it, in one
    /// transaction, once: [`StoreError::LinkExpired`] if the link is not waiting.
    async fn approve_link(&self, approval: LinkApproval) -> StoreResult<DeviceRecord>;
    async fn create_blob(&self, blob: NewBlob) -> StoreResult<()>;
    async fn blob(&self, blob_id: &[u8], now: Millis) -> StoreResult<Option<BlobRecord>>;
    /// Stores chunk `index` (again, if a retry sends it twice) of an unsealed blob.
    async fn put_blob_chunk(
        &self,
        blob_id: &[u8],
        index: u32,
        data: Vec<u8>,
        now: Millis,
    ) -> StoreResult<()>;
    /// Seals an unexpired blob of exactly `chunks` chunks, all present.
    async fn seal_blob(&self, blob_id: &[u8], chunks: u32, now: Millis) -> StoreResult<()>;
    async fn blob_chunk(&self, blob_id: &[u8], index: u32) -> StoreResult<Option<Vec<u8>>>;
    async fn delete_blob(&self, blob_id: &[u8]) -> StoreResult<()>;
    /// Deletes expired links and blobs; returns how many.
    async fn expire_links_and_blobs(&self, now: Millis) -> StoreResult<u64>;

    // Recovery: GroupInfos for external joins, backups, restored devices (`recovery`)
    /// Keeps a member's GroupInfo if `epoch` is still the group's epoch; returns whether it did.
    async fn put_group_info(&self, group: GroupId, epoch: u64, info: Vec<u8>) -> StoreResult<bool>;
    async fn group_info(&self, group: GroupId) -> StoreResult<Option<StoredGroupInfo>>;
    /// Whether any device of the account is a member of the group.
    async fn account_in_group(&self, group: GroupId, user: UserId) -> StoreResult<bool>;
    /// Registers a sealed blob of the owner's as a backup, never expiring, and deletes the
    /// account's backups beyond the newest `keep`, in one transaction.
    async fn register_backup(&self, backup: NewBackup) -> StoreResult<()>;
    /// The account's newest backup under `backup_id`.
    async fn latest_backup(
        &self,
        username: &Username,
        backup_id: &[u8],
    ) -> StoreResult<Option<BackupRecord>>;
    /// The account's backups, newest first.
    async fn backups(&self, user: UserId) -> StoreResult<Vec<BackupRecord>>;
    /// The restore verifier the account's backups under `backup_id` were made with.
    async fn restore_verifier(
        &self,
        user: UserId,
        backup_id: &[u8],
    ) -> StoreResult<Option<Vec<u8>>>;
    /// Adds a restored device to its account ([`StoreError::TooManyDevices`] past the cap).
    async fn add_restored_device(&self, device: RestoredDevice) -> StoreResult<DeviceRecord>;

    // KeyPackages (`keypackages`)
    async fn add_key_packages(
        &self,
        device: DeviceId,
        one_time: Vec<Vec<u8>>,
        last_resort: Option<Vec<u8>>,
    ) -> StoreResult<KeyPackageCount>;
    async fn key_package_count(&self, device: DeviceId) -> StoreResult<KeyPackageCount>;
    /// Hands out one KeyPackage of `device`: a one-time one, exactly once, or else the
    /// last-resort one, which stays.
    async fn claim_key_package(&self, device: DeviceId) -> StoreResult<Option<ClaimedKeyPackage>>;
    /// One KeyPackage of every device of every user (each a list of devices), as
    /// [`Store::claim_key_package`] hands them out, in one transaction: if some user has none
    /// left on any device, nothing is claimed and the error names that user's index.
    async fn claim_key_packages(
        &self,
        users: Vec<Vec<DeviceId>>,
    ) -> StoreResult<Vec<Vec<ClaimedKeyPackage>>>;

    // Groups: epoch, members, public state (`groups`)
    async fn create_group(&self, group: NewGroup) -> StoreResult<()>;
    async fn group(&self, group: GroupId) -> StoreResult<Option<GroupRecord>>;
    async fn is_member(&self, group: GroupId, device: DeviceId) -> StoreResult<bool>;
    /// The member devices of the group (empty for an unknown group).
    async fn group_devices(&self, group: GroupId) -> StoreResult<Vec<DeviceId>>;
    /// The groups the user's devices are in, with their leaves.
    async fn memberships(&self, username: &Username) -> StoreResult<Vec<Membership>>;

    // Delivery Service: submissions, payloads and per-device queues (`queue`)
    /// The first result of an earlier submission with this idempotency key, if any.
    async fn find_submission(
        &self,
        device: DeviceId,
        message: MessageId,
    ) -> StoreResult<Option<StoredSubmission>>;
    /// Stores a submission and a pointer for every recipient device in one transaction, or
    /// nothing. A retry of a stored submission returns the first result with `duplicate` set.
    async fn accept(&self, submission: Submission) -> StoreResult<Accepted>;
    /// The device's queue after `after`: at most `limit` items and, past the first,
    /// [`MAX_PAGE_BYTES`] of payload.
    async fn fetch_queue(
        &self,
        device: DeviceId,
        after: u64,
        limit: u32,
    ) -> StoreResult<QueuePage> {
        self.fetch_queue_within(device, after, limit, MAX_PAGE_BYTES)
            .await
    }
    /// [`Store::fetch_queue`] with a smaller byte budget (a live push reads about a frame's
    /// worth at a time). Never more than about `max_bytes` is read, whatever `limit` says.
    async fn fetch_queue_within(
        &self,
        device: DeviceId,
        after: u64,
        limit: u32,
        max_bytes: usize,
    ) -> StoreResult<QueuePage>;
    /// Deletes the device's queue entries up to `up_to`, and payloads nobody needs any more.
    async fn ack(&self, device: DeviceId, up_to: u64) -> StoreResult<()>;
    async fn queue_head(&self, device: DeviceId) -> StoreResult<u64>;
    /// Undelivered queue items over all devices (for metrics).
    async fn queue_depth(&self) -> StoreResult<u64>;
    /// Deletes undelivered entries older than `before`, expired challenges and sessions, and
    /// idempotency records older than `before`. Returns how many queue entries expired.
    async fn expire(&self, before: Millis, now: Millis) -> StoreResult<u64>;

    // Attachments: records of encrypted files in the object store (`attachments`)
    /// Records a new upload by a member of its group, or returns the record already there
    /// for this hash when the same account started it for the same group.
    async fn create_attachment(&self, new: NewAttachment) -> StoreResult<AttachmentRecord>;
    async fn attachment(&self, hash: &[u8]) -> StoreResult<Option<AttachmentRecord>>;
    /// Moves an upload on from `from` to `to` bytes (a part arrived); when `complete`, the
    /// group's devices other than the uploader become the ones that must fetch it. False when
    /// another request moved it first.
    async fn advance_attachment(
        &self,
        hash: &[u8],
        from: u64,
        to: u64,
        complete: bool,
    ) -> StoreResult<bool>;
    /// Notes that `device` has the attachment. When every device of the group other than the
    /// uploader has it, the record goes and this returns true: delete the ciphertext.
    async fn attachment_fetched(&self, hash: &[u8], device: DeviceId) -> StoreResult<bool>;
    async fn delete_attachment(&self, hash: &[u8]) -> StoreResult<()>;
    /// Deletes the records past their retention, and uploads still incomplete that began
    /// before `incomplete_before`; returns their hashes, whose ciphertext is to be deleted.
    async fn expire_attachments(
        &self,
        now: Millis,
        incomplete_before: Millis,
    ) -> StoreResult<Vec<Vec<u8>>>;

    // Moderation: reports, admin tokens, audit log (`moderation`)
    /// Stores a verified report; the same reporter reporting the same message again is refused.
    async fn create_report(&self, report: NewReport) -> StoreResult<u64>;
    async fn reports(&self, status: Option<ReportStatus>) -> StoreResult<Vec<Report>>;
    async fn report(&self, id: u64) -> StoreResult<Option<Report>>;
    /// Changes a report's status and appends `audit` in the same transaction.
    async fn set_report_status(
        &self,
        id: u64,
        status: ReportStatus,
        audit: AuditEntry,
    ) -> StoreResult<bool>;
    /// Suspends (ending all sessions) or unsuspends an account, with its audit entry.
    async fn set_suspended(
        &self,
        username: &Username,
        suspended: bool,
        audit: AuditEntry,
    ) -> StoreResult<bool>;
    async fn add_admin_token(
        &self,
        token_hash: Vec<u8>,
        label: String,
        now: Millis,
    ) -> StoreResult<()>;
    /// The label of a valid admin token.
    async fn admin_token(&self, token_hash: &[u8]) -> StoreResult<Option<String>>;
    /// Opens a console session for a valid admin token (and drops expired sessions). False when
    /// the token is not valid.
    async fn create_admin_session(
        &self,
        session_hash: Vec<u8>,
        token_hash: Vec<u8>,
        now: Millis,
        expires_at: Millis,
    ) -> StoreResult<bool>;
    /// The label of the token behind a console session that has not expired.
    async fn admin_session(&self, session_hash: &[u8], now: Millis) -> StoreResult<Option<String>>;
    /// Ends a console session (sign-out).
    async fn end_admin_session(&self, session_hash: &[u8]) -> StoreResult<()>;
    /// Deletes the admin tokens labelled `label` and their sessions, with `audit`. Returns how
    /// many tokens there were.
    async fn revoke_admin_tokens(&self, label: &str, audit: AuditEntry) -> StoreResult<u64>;
    /// Appends to the audit log, which nothing can change or delete.
    async fn audit(&self, entry: AuditEntry) -> StoreResult<()>;
    async fn audit_log(&self) -> StoreResult<Vec<AuditEntry>>;
}
