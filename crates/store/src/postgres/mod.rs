//! [`Store`] on PostgreSQL, for several stateless server nodes sharing one database.
//!
//! The SQL sticks to what PostgreSQL-compatible distributed databases (CockroachDB, YugabyteDB)
//! also run: no advisory locks, no LISTEN/NOTIFY. Per-group ordering comes from a row lock on the
//! group (`SELECT … FOR UPDATE`) inside the accepting transaction, so two nodes receiving
//! competing commits for one group serialize on that row. Tables are keyed by group id or by
//! device id first, so that they partition along those keys. A transaction that loses a
//! serialization conflict is run again.
//!
//! This module owns the pool; the SQL lives in one module per concern, each with the migrations
//! for its tables ([`migrations`] puts them in order). Every [`Store`] method here only calls its
//! concern's function.

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

use std::time::Duration;

use async_trait::async_trait;
use parley_protocol::{DeviceId, GroupId, MessageId, UserId, Username};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;

use crate::model::*;
use crate::{Store, StoreError, StoreResult};
use sql::sql_error;

pub struct PgStore {
    pool: PgPool,
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
        migrations::migrate(&store.pool).await?;
        Ok(store)
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
               group_members, payloads, queue, submissions, reports, admin_tokens, admin_sessions, audit_log,
               links, blobs, blob_chunks, group_infos, backups, restore_verifiers,
               account_rotations, rotation_keys, attachments, attachment_recipients CASCADE;
             DROP FUNCTION IF EXISTS audit_log_append_only CASCADE;
             DROP FUNCTION IF EXISTS queue_release_bytes CASCADE;",
        )
        .execute(&pool)
        .await
        .map_err(sql_error)?;
        Ok(())
    }
}

#[async_trait]
impl Store for PgStore {
    // Accounts, devices, sessions
    async fn create_account(&self, account: NewAccount) -> StoreResult<()> {
        accounts::create_account(&self.pool, account).await
    }

    async fn device(&self, device: DeviceId) -> StoreResult<Option<DeviceRecord>> {
        accounts::device(&self.pool, device).await
    }

    async fn user_devices(&self, name: &Username) -> StoreResult<Vec<DeviceRecord>> {
        accounts::user_devices(&self.pool, name).await
    }

    async fn put_challenge(&self, challenge: Challenge) -> StoreResult<()> {
        accounts::put_challenge(&self.pool, challenge).await
    }

    async fn account_devices(&self, user: UserId) -> StoreResult<Vec<AccountDeviceRecord>> {
        accounts::account_devices(&self.pool, user).await
    }

    async fn rename_device(&self, device: DeviceId, sealed_name: Vec<u8>) -> StoreResult<()> {
        accounts::rename_device(&self.pool, device, sealed_name).await
    }

    async fn revoke_device(
        &self,
        device: DeviceId,
        by: DeviceId,
        revocation: Vec<u8>,
        rotation: Option<NewRotation>,
        now: Millis,
    ) -> StoreResult<bool> {
        accounts::revoke_device(&self.pool, device, by, revocation, rotation, now).await
    }

    async fn account_rotations(&self, user: UserId) -> StoreResult<Vec<Vec<u8>>> {
        rotation::account_rotations(&self.pool, user).await
    }

    async fn rotation_keys(&self, device: DeviceId) -> StoreResult<Option<Vec<u8>>> {
        rotation::rotation_keys(&self.pool, device).await
    }

    async fn finish_rotation(&self, device: DeviceId) -> StoreResult<()> {
        rotation::finish_rotation(&self.pool, device).await
    }

    // Linking devices, blobs
    async fn create_link(&self, link: NewLink) -> StoreResult<()> {
        links::create_link(&self.pool, link).await
    }

    async fn link(&self, link_id: &[u8], now: Millis) -> StoreResult<Option<LinkRecord>> {
        links::link(&self.pool, link_id, now).await
    }

    async fn approve_link(&self, approval: LinkApproval) -> StoreResult<DeviceRecord> {
        let device = links::approve_link(&self.pool, approval).await?;
        accounts::device(&self.pool, device)
            .await?
            .ok_or_else(|| StoreError::Backend("the linked device vanished".into()))
    }

    async fn put_group_info(&self, group: GroupId, epoch: u64, info: Vec<u8>) -> StoreResult<bool> {
        recovery::put_group_info(&self.pool, group, epoch, info).await
    }

    async fn group_info(&self, group: GroupId) -> StoreResult<Option<StoredGroupInfo>> {
        recovery::group_info(&self.pool, group).await
    }

    async fn account_in_group(&self, group: GroupId, user: UserId) -> StoreResult<bool> {
        recovery::account_in_group(&self.pool, group, user).await
    }

    async fn register_backup(&self, backup: NewBackup) -> StoreResult<()> {
        recovery::register_backup(&self.pool, backup).await
    }

    async fn latest_backup(
        &self,
        username: &Username,
        backup_id: &[u8],
    ) -> StoreResult<Option<BackupRecord>> {
        recovery::latest_backup(&self.pool, username, backup_id).await
    }

    async fn backups(&self, user: UserId) -> StoreResult<Vec<BackupRecord>> {
        recovery::backups(&self.pool, user).await
    }

    async fn restore_verifier(
        &self,
        user: UserId,
        backup_id: &[u8],
    ) -> StoreResult<Option<Vec<u8>>> {
        recovery::restore_verifier(&self.pool, user, backup_id).await
    }

    async fn add_restored_device(&self, device: RestoredDevice) -> StoreResult<DeviceRecord> {
        let device = recovery::add_restored_device(&self.pool, device).await?;
        accounts::device(&self.pool, device)
            .await?
            .ok_or_else(|| StoreError::Backend("the restored device vanished".into()))
    }

    async fn create_blob(&self, blob: NewBlob) -> StoreResult<()> {
        links::create_blob(&self.pool, blob).await
    }

    async fn blob(&self, blob_id: &[u8], now: Millis) -> StoreResult<Option<BlobRecord>> {
        links::blob(&self.pool, blob_id, now).await
    }

    async fn put_blob_chunk(
        &self,
        blob_id: &[u8],
        index: u32,
        data: Vec<u8>,
        now: Millis,
    ) -> StoreResult<()> {
        links::put_blob_chunk(&self.pool, blob_id, index, data, now).await
    }

    async fn seal_blob(&self, blob_id: &[u8], chunks: u32, now: Millis) -> StoreResult<()> {
        links::seal_blob(&self.pool, blob_id, chunks, now).await
    }

    async fn blob_chunk(&self, blob_id: &[u8], index: u32) -> StoreResult<Option<Vec<u8>>> {
        links::blob_chunk(&self.pool, blob_id, index).await
    }

    async fn delete_blob(&self, blob_id: &[u8]) -> StoreResult<()> {
        links::delete_blob(&self.pool, blob_id).await
    }

    async fn expire_links_and_blobs(&self, now: Millis) -> StoreResult<u64> {
        links::expire_links_and_blobs(&self.pool, now).await
    }

    async fn take_challenge(&self, nonce: &[u8]) -> StoreResult<Option<Challenge>> {
        accounts::take_challenge(&self.pool, nonce).await
    }

    async fn create_session(&self, session: NewSession) -> StoreResult<()> {
        accounts::create_session(&self.pool, session).await
    }

    async fn session(&self, token_hash: &[u8], now: Millis) -> StoreResult<Option<DeviceRecord>> {
        accounts::session(&self.pool, token_hash, now).await
    }

    // KeyPackages
    async fn add_key_packages(
        &self,
        device: DeviceId,
        one_time: Vec<Vec<u8>>,
        last_resort: Option<Vec<u8>>,
    ) -> StoreResult<KeyPackageCount> {
        keypackages::add_key_packages(&self.pool, device, one_time, last_resort).await
    }

    async fn key_package_count(&self, device: DeviceId) -> StoreResult<KeyPackageCount> {
        keypackages::count_key_packages(&self.pool, &device).await
    }

    async fn claim_key_package(&self, device: DeviceId) -> StoreResult<Option<ClaimedKeyPackage>> {
        keypackages::claim_key_package(&self.pool, device).await
    }

    async fn claim_key_packages(
        &self,
        users: Vec<Vec<DeviceId>>,
    ) -> StoreResult<Vec<Vec<ClaimedKeyPackage>>> {
        keypackages::claim_key_packages(&self.pool, users).await
    }

    // Groups
    async fn create_group(&self, group: NewGroup) -> StoreResult<()> {
        groups::create_group(&self.pool, group).await
    }

    async fn group(&self, group: GroupId) -> StoreResult<Option<GroupRecord>> {
        groups::group(&self.pool, group).await
    }

    async fn is_member(&self, group: GroupId, device: DeviceId) -> StoreResult<bool> {
        groups::is_member(&self.pool, group, device).await
    }

    async fn group_devices(&self, group: GroupId) -> StoreResult<Vec<DeviceId>> {
        groups::group_devices(&self.pool, group).await
    }

    async fn memberships(&self, user: &Username) -> StoreResult<Vec<Membership>> {
        groups::memberships(&self.pool, user).await
    }

    // Delivery Service queues
    async fn find_submission(
        &self,
        device: DeviceId,
        message: MessageId,
    ) -> StoreResult<Option<StoredSubmission>> {
        queue::find_submission(&self.pool, &device, &message).await
    }

    async fn accept(&self, submission: Submission) -> StoreResult<Accepted> {
        queue::accept(&self.pool, submission).await
    }

    async fn fetch_queue_within(
        &self,
        device: DeviceId,
        after: u64,
        limit: u32,
        max_bytes: usize,
    ) -> StoreResult<QueuePage> {
        queue::fetch_queue(&self.pool, device, after, limit, max_bytes).await
    }

    async fn ack(&self, device: DeviceId, up_to: u64) -> StoreResult<()> {
        queue::ack(&self.pool, device, up_to).await
    }

    async fn queue_head(&self, device: DeviceId) -> StoreResult<u64> {
        queue::queue_head(&self.pool, device).await
    }

    async fn queue_depth(&self) -> StoreResult<u64> {
        queue::queue_depth(&self.pool).await
    }

    async fn expire(&self, before: Millis, now: Millis) -> StoreResult<u64> {
        queue::expire(&self.pool, before, now).await
    }

    // Attachments
    async fn create_attachment(&self, new: NewAttachment) -> StoreResult<AttachmentRecord> {
        attachments::create_attachment(&self.pool, new).await
    }

    async fn attachment(&self, hash: &[u8]) -> StoreResult<Option<AttachmentRecord>> {
        attachments::attachment(&self.pool, hash).await
    }

    async fn advance_attachment(
        &self,
        hash: &[u8],
        from: u64,
        to: u64,
        complete: bool,
    ) -> StoreResult<bool> {
        attachments::advance_attachment(&self.pool, hash, from, to, complete).await
    }

    async fn attachment_fetched(&self, hash: &[u8], device: DeviceId) -> StoreResult<bool> {
        attachments::attachment_fetched(&self.pool, hash, device).await
    }

    async fn delete_attachment(&self, hash: &[u8]) -> StoreResult<()> {
        attachments::delete_attachment(&self.pool, hash).await
    }

    async fn expire_attachments(
        &self,
        now: Millis,
        incomplete_before: Millis,
    ) -> StoreResult<Vec<Vec<u8>>> {
        attachments::expire_attachments(&self.pool, now, incomplete_before).await
    }

    // Moderation
    async fn create_report(&self, report: NewReport) -> StoreResult<u64> {
        moderation::create_report(&self.pool, report).await
    }

    async fn reports(&self, status: Option<ReportStatus>) -> StoreResult<Vec<Report>> {
        moderation::reports(&self.pool, status).await
    }

    async fn report(&self, report: u64) -> StoreResult<Option<Report>> {
        moderation::report(&self.pool, report).await
    }

    async fn set_report_status(
        &self,
        report: u64,
        status: ReportStatus,
        audit: AuditEntry,
    ) -> StoreResult<bool> {
        moderation::set_report_status(&self.pool, report, status, audit).await
    }

    async fn set_suspended(
        &self,
        user: &Username,
        suspended: bool,
        audit: AuditEntry,
    ) -> StoreResult<bool> {
        moderation::set_suspended(&self.pool, user, suspended, audit).await
    }

    async fn add_admin_token(
        &self,
        token_hash: Vec<u8>,
        label: String,
        now: Millis,
    ) -> StoreResult<()> {
        moderation::add_admin_token(&self.pool, token_hash, label, now).await
    }

    async fn admin_token(&self, token_hash: &[u8]) -> StoreResult<Option<String>> {
        moderation::admin_token(&self.pool, token_hash).await
    }

    async fn create_admin_session(
        &self,
        session_hash: Vec<u8>,
        token_hash: Vec<u8>,
        now: Millis,
        expires_at: Millis,
    ) -> StoreResult<bool> {
        moderation::create_admin_session(&self.pool, session_hash, token_hash, now, expires_at)
            .await
    }

    async fn admin_session(&self, session_hash: &[u8], now: Millis) -> StoreResult<Option<String>> {
        moderation::admin_session(&self.pool, session_hash, now).await
    }

    async fn end_admin_session(&self, session_hash: &[u8]) -> StoreResult<()> {
        moderation::end_admin_session(&self.pool, session_hash).await
    }

    async fn revoke_admin_tokens(&self, label: &str, audit: AuditEntry) -> StoreResult<u64> {
        moderation::revoke_admin_tokens(&self.pool, label, audit).await
    }

    async fn audit(&self, entry: AuditEntry) -> StoreResult<()> {
        moderation::audit(&self.pool, entry).await
    }

    async fn audit_log(&self) -> StoreResult<Vec<AuditEntry>> {
        moderation::audit_log(&self.pool).await
    }
}
