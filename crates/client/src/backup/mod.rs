//! Backups (docs/multi-device.md, "Backup and recovery"): the account key, the chat list and
//! the whole message log, encrypted on the device under a key derived from the recovery key,
//! stored on the server as an opaque blob it keeps the newest few of. Backups run by
//! themselves after a change, at most every so many minutes ([`Client::backup_if_due`]), and
//! `restore` (in [`restore`]) makes a fresh device the account's again.

mod key;
mod rejoin;
mod restore;

use parley_protocol::v1;
use prost::Message as _;
use serde::Serialize;

use key::BackupKeys;
pub use key::RecoveryKey;
pub use restore::RestoreReport;

use crate::client::Client;
use crate::db::{self, now_ms};
use crate::devices::crypto::encrypt_archive;
use crate::error::ClientError;
use crate::views::rfc3339;

/// How often backups run when the user does not say: at most once an hour, after a change.
pub const DEFAULT_BACKUP_MINUTES: u32 = 60;
/// The longest interval between backups a user may choose: a week.
pub const MAX_BACKUP_MINUTES: u32 = 7 * 24 * 60;

/// One backup stored.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct BackupReport {
    pub chats: u64,
    pub messages: u64,
    /// Encrypted bytes stored on the server.
    pub bytes: u64,
    pub at: String,
}

/// One backup the server keeps.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct StoredBackup {
    pub created_at: String,
    pub bytes: u64,
}

/// What `parley backup status` shows.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct BackupStatus {
    pub enabled: bool,
    /// Backups run after a change, at most this often (0: after every change).
    pub every_minutes: Option<u32>,
    pub last_backup_at: Option<String>,
    pub last_backup_bytes: Option<u64>,
    /// Something changed since the last backup, which the next one will hold.
    pub changes_pending: bool,
    /// The backups the server keeps, newest first.
    pub stored: Vec<StoredBackup>,
}

/// What the device stores to back up under `keys`.
fn backup_row(keys: &BackupKeys, every_minutes: u32) -> db::BackupRow {
    db::BackupRow {
        backup_id: keys.backup_id.to_vec(),
        encryption_key: keys.encryption_key.to_vec(),
        restore_verifier: keys.restore_verifier.to_vec(),
        every_minutes,
        changed: true,
        last_at: None,
        last_bytes: None,
    }
}

fn backups_off() -> ClientError {
    ClientError::Invalid("backups are off: `parley backup enable` turns them on".into())
}

impl Client {
    /// Turns backups on: makes the recovery key, which the caller shows once, and stores the
    /// first backup. Refused for an account from before multi-device (it has no account key to
    /// restore) and when backups are on already.
    pub async fn enable_backup(
        &self,
        every_minutes: u32,
    ) -> Result<(RecoveryKey, BackupReport), ClientError> {
        if every_minutes > MAX_BACKUP_MINUTES {
            return Err(ClientError::Invalid(format!(
                "backups run at least once a week: at most {MAX_BACKUP_MINUTES} minutes"
            )));
        }
        if self.keys().certificate.is_none() {
            return Err(ClientError::Invalid(
                "this account was made before Parley had account keys, so it cannot be restored \
                 from a backup; register a new account to use backups"
                    .into(),
            ));
        }
        if db::backup_settings(&self.db())?.is_some() {
            return Err(ClientError::Invalid(
                "backups are on already (`parley backup status`); the recovery key was shown \
                 when they were turned on"
                    .into(),
            ));
        }
        let key = RecoveryKey::generate();
        db::set_backup(&self.db(), &backup_row(&key.backup_keys(), every_minutes))?;
        let report = self.backup_now().await?;
        Ok((key, report))
    }

    /// Stores a backup now, whether one is due or not.
    pub async fn backup_now(&self) -> Result<BackupReport, ClientError> {
        let settings = db::backup_settings(&self.db())?.ok_or_else(backups_off)?;
        let keys = BackupKeys::from_parts(
            &settings.backup_id,
            &settings.encryption_key,
            &settings.restore_verifier,
        )?;
        let (plaintext, chats, messages, count) = {
            let conn = self.db();
            let tx = conn.unchecked_transaction()?;
            let history = db::export_archive(&tx)?;
            let count = db::backup_change_count(&tx)?;
            tx.commit()?;
            let (chats, messages) = (history.chats.len() as u64, history.messages.len() as u64);
            let backup = v1::AccountBackup {
                username: self.username().to_string(),
                account_secret: self.account_key().to_secret_bytes().to_vec(),
                history: Some(history),
                created_at_ms: now_ms(),
                every_minutes: settings.every_minutes,
            };
            (backup.encode_to_vec(), chats, messages, count)
        };
        let chunks = encrypt_archive(&keys.encryption_key, &plaintext)?;
        match self.store_backup(&keys, &chunks).await {
            Ok(bytes) => {
                let at = now_ms();
                db::mark_backup_stored(&self.db(), at, bytes, count)?;
                tracing::info!(chats, messages, bytes, "backup stored");
                Ok(BackupReport {
                    chats,
                    messages,
                    bytes,
                    at: rfc3339(at),
                })
            }
            Err(e) => Err(e),
        }
    }

    /// Uploads the encrypted chunks as a blob only the account reads, and files it as the
    /// newest backup under the key's backup id.
    async fn store_backup(
        &self,
        keys: &BackupKeys,
        chunks: &[Vec<u8>],
    ) -> Result<u64, ClientError> {
        let request = v1::CreateBlob {
            reader_device: Vec::new(),
        };
        let created: v1::CreateBlobResponse = self
            .authed(|| self.api.post("/v1/blobs", &request, true))
            .await?;
        let stored = async {
            let bytes = self.upload_blob(&created.blob_id, chunks).await?;
            let register = v1::RegisterBackup {
                blob_id: created.blob_id.clone(),
                backup_id: keys.backup_id.to_vec(),
                restore_verifier: keys.restore_verifier.to_vec(),
            };
            let _: v1::BackupInfo = self
                .authed(|| self.api.post("/v1/backups", &register, true))
                .await?;
            Ok::<_, ClientError>(bytes)
        }
        .await;
        if stored.is_err() {
            // An unfinished upload would hold one of the account's few blob slots for a day.
            let path = format!("/v1/blobs/{}", hex::encode(&created.blob_id));
            let _ = self.authed(|| self.api.delete::<v1::SealBlob>(&path)).await;
        }
        stored
    }

    /// Stores a backup if backups are on, something changed since the last one, and the last
    /// one is old enough. Sync calls this.
    pub async fn backup_if_due(&self) -> Result<Option<BackupReport>, ClientError> {
        let Some(settings) = db::backup_settings(&self.db())? else {
            return Ok(None);
        };
        let interval = i64::from(settings.every_minutes) * 60_000;
        let due = settings.changed
            && settings
                .last_at
                .is_none_or(|last| now_ms().saturating_sub(last) >= interval);
        if !due {
            return Ok(None);
        }
        self.backup_now().await.map(Some)
    }

    pub async fn backup_status(&self) -> Result<BackupStatus, ClientError> {
        let settings = db::backup_settings(&self.db())?;
        let stored = match &settings {
            Some(_) => {
                let list: v1::BackupList = self.authed(|| self.api.get("/v1/backups")).await?;
                list.backups
                    .iter()
                    .map(|b| StoredBackup {
                        created_at: rfc3339(b.created_at_ms),
                        bytes: b.bytes,
                    })
                    .collect()
            }
            None => Vec::new(),
        };
        Ok(BackupStatus {
            enabled: settings.is_some(),
            every_minutes: settings.as_ref().map(|s| s.every_minutes),
            last_backup_at: settings.as_ref().and_then(|s| s.last_at).map(rfc3339),
            last_backup_bytes: settings.as_ref().and_then(|s| s.last_bytes),
            changes_pending: settings.is_some_and(|s| s.changed),
            stored,
        })
    }
}
