//! `parley restore NAME --recovery-key KEY`: every device of the account is lost; a fresh
//! device fetches the newest backup the recovery key names, decrypts it, registers itself as a
//! device of the account (certified with the recovered account key), takes in the history,
//! rejoins every chat by external commit ([`super::rejoin`]) and revokes the lost devices.

use std::path::Path;

use parley_mls::certificate::AccountKey;
use parley_protocol::{v1, DeviceId, ErrorCode, Username};
use prost::Message as _;
use serde::Serialize;

use super::RecoveryKey;
use crate::account::{ClientOptions, NewDevice, RestoreProof};
use crate::api::{self, ServerApi};
use crate::client::Client;
use crate::db;
use crate::devices::archive::MAX_ARCHIVE_BYTES;
use crate::devices::crypto::decrypt_archive;
use crate::error::ClientError;
use crate::platform::lock_home;
use crate::views::rfc3339;

/// What a restore brought back.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RestoreReport {
    /// When the backup restored from was made.
    pub backup_at: String,
    pub chats: u64,
    pub messages: u64,
    /// Chats this device is a member of again.
    pub rejoined: u64,
    /// Chats still to rejoin (their members have not shared the group's state yet); later syncs
    /// try again.
    pub waiting: u64,
    /// The account's lost devices, revoked.
    pub revoked_devices: u64,
}

fn unreadable() -> ClientError {
    ClientError::Protocol("the backup does not decrypt: it was changed on the server".into())
}

/// Fetches and decrypts the newest backup under `key`.
async fn fetch_backup(
    api: &ServerApi,
    username: &Username,
    key: &RecoveryKey,
) -> Result<v1::AccountBackup, ClientError> {
    let mut request = v1::BackupRequest {
        username: username.to_string(),
        backup_id: key.backup_id().to_vec(),
        restore_secret: key.restore_secret().to_vec(),
        blob_id: Vec::new(),
        index: 0,
    };
    let info: v1::BackupInfo = match api.post("/v1/backups/fetch", &request, false).await {
        Ok(info) => info,
        Err(e) if e.server_code() == Some(ErrorCode::NotFound) => {
            return Err(ClientError::Invalid(format!(
                "no backup of {username} under this recovery key: check the name and the key"
            )))
        }
        Err(e) => return Err(e),
    };
    if info.chunks > parley_protocol::limits::MAX_BLOB_CHUNKS
        || info.bytes > MAX_ARCHIVE_BYTES as u64
    {
        return Err(ClientError::Protocol("the backup is too large".into()));
    }
    request.blob_id = info.blob_id.clone();
    let mut chunks = Vec::with_capacity(info.chunks as usize);
    let mut bytes = 0;
    for index in 0..info.chunks {
        request.index = index;
        let chunk: v1::BlobChunk = api.post("/v1/backups/fetch/chunk", &request, false).await?;
        bytes += chunk.data.len();
        if bytes > MAX_ARCHIVE_BYTES {
            return Err(ClientError::Protocol("the backup is too large".into()));
        }
        chunks.push(chunk.data);
    }
    let plaintext = decrypt_archive(&key.encryption_key(), &chunks).map_err(|_| unreadable())?;
    let backup = v1::AccountBackup::decode(plaintext.as_slice()).map_err(|_| unreadable())?;
    if backup.username != username.as_str() {
        return Err(ClientError::Protocol(format!(
            "the backup is of {}, not {username}",
            backup.username
        )));
    }
    Ok(backup)
}

/// Registers this home's device from `backup` and stores, in one transaction, the account,
/// the history, the chats to rejoin and the backup settings, marked as a restore under way.
/// Returns how many messages came back.
async fn register_from_backup(
    conn: &rusqlite::Connection,
    api: &ServerApi,
    username: &Username,
    key: &RecoveryKey,
    backup: &v1::AccountBackup,
    options: &ClientOptions,
) -> Result<u64, ClientError> {
    let secret: [u8; 32] = backup
        .account_secret
        .as_slice()
        .try_into()
        .map_err(|_| unreadable())?;
    let account_key = AccountKey::from_secret_bytes(&secret);
    let history = backup.history.clone().unwrap_or_default();
    let proof = RestoreProof {
        backup_id: key.backup_id().to_vec(),
        restore_secret: key.restore_secret().to_vec(),
    };
    let device = NewDevice::register(api, username, &account_key, options, Some(proof)).await?;
    let tx = conn.unchecked_transaction()?;
    device.store(&tx, api, username, &account_key)?;
    let messages = db::import_archive(&tx, &history)?;
    // Open chats come back once this device has rejoined them.
    for chat in history.chats.iter().filter(|c| c.state == 0) {
        db::add_rejoin(&tx, &chat.group_id)?;
    }
    // Backups carry on under the same key.
    db::set_backup(
        &tx,
        &super::backup_row(&key.backup_keys(), backup.every_minutes),
    )?;
    db::set_restoring(&tx, Some(backup.created_at_ms))?;
    tx.commit()?;
    Ok(messages)
}

impl Client {
    /// Makes a fresh device in `home` a device of `username` again from its newest backup.
    pub async fn restore(
        home: &Path,
        server: &str,
        username: &str,
        recovery_key: &str,
        options: ClientOptions,
    ) -> Result<(Client, RestoreReport), ClientError> {
        let username =
            Username::parse(username).map_err(|e| ClientError::Invalid(e.to_string()))?;
        let key = RecoveryKey::parse(recovery_key)?;
        let lock = lock_home(home, options.on_wait)?;
        let conn = db::open(home)?;
        // A restore that stopped after this device registered is resumed in the same home,
        // from what it stored then (the backup itself may be gone: revoking the device that
        // made it deletes it).
        let restoring_from = match db::account(&conn)? {
            None => None,
            Some(account) if account.username == username.as_str() => {
                let started = db::restoring(&conn)?;
                let same_key = db::backup_settings(&conn)?
                    .is_some_and(|b| b.backup_id == key.backup_id().as_slice());
                match started {
                    Some(at) if same_key => Some(at),
                    Some(_) => {
                        return Err(ClientError::Invalid(
                            "this restore was started with another recovery key".into(),
                        ))
                    }
                    None => return Err(ClientError::AccountExists(home.to_owned())),
                }
            }
            Some(_) => return Err(ClientError::AccountExists(home.to_owned())),
        };
        let mut options = options;
        let (backup_at, messages) = match restoring_from {
            Some(at) => {
                // The server named now, for this session (as `--server` does elsewhere).
                options.server.get_or_insert_with(|| server.to_owned());
                (at, db::history_count(&conn)?)
            }
            None => {
                let api = ServerApi::new(server, api::tls_config(options.ca_cert.as_deref())?)?;
                let backup = fetch_backup(&api, &username, &key).await?;
                let messages =
                    register_from_backup(&conn, &api, &username, &key, &backup, &options).await?;
                (backup.created_at_ms, messages)
            }
        };
        drop(conn);
        let client = Client::open_locked(home, options, lock)?;
        client.login().await?;
        // A revocation the server took before the restore stopped rotated the key: hold it
        // before publishing KeyPackages, which the server takes under the new key only.
        client.finish_pending_rotation().await?;
        client.learn_own_rotations().await?;
        client.replenish_key_packages().await?;
        let (rejoined, waiting) = client.rejoin_chats().await?;
        let revoked_devices = client.revoke_lost_devices().await?;
        db::set_restoring(&client.db(), None)?;
        tracing::info!(rejoined, waiting, revoked_devices, "device restored");
        let report = RestoreReport {
            backup_at: rfc3339(backup_at),
            chats: db::all_chats(&client.db())?.len() as u64,
            messages,
            rejoined,
            waiting,
            revoked_devices,
        };
        Ok((client, report))
    }

    /// Revokes every other device of the account: a restore means they are lost, and a lost
    /// device must not keep reading the account's chats.
    /// The account key rotates once with them: the lost devices knew it.
    /// A resumed restore also finishes revocations the server took but whose removals did not
    /// happen: the devices are no longer listed, yet still in our chats.
    pub(crate) async fn revoke_lost_devices(&self) -> Result<u64, ClientError> {
        self.finish_pending_rotation().await?;
        let mut lost: Vec<DeviceId> = self
            .devices()
            .await?
            .into_iter()
            .filter(|d| !d.current)
            .filter_map(|d| DeviceId::parse_hex(&d.id).ok())
            .collect();
        for device in self.own_devices_in_chats(true)?.into_keys() {
            let revoked = db::is_revoked(&self.db(), self.username().as_str(), device.as_bytes())?;
            if revoked && !lost.contains(&device) {
                lost.push(device);
            }
        }
        self.revoke_devices(&lost).await?;
        Ok(lost.len() as u64)
    }
}
