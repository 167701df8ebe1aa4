//! Opening a device: registering a new account (device key, server registration, first
//! KeyPackages) and opening the account stored in a home directory.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use openmls::prelude::*;
use openmls_basic_credential::SignatureKeyPair;
use openmls_rust_crypto::RustCrypto;
use openmls_traits::signatures::Signer as _;
use parley_mls::certificate::{AccountKey, DeviceCertificate};
use parley_mls::DeviceIdentity;
use parley_protocol::{v1, DeviceId, UserId, Username};

use crate::api::{self, ServerApi};
use crate::client::{AccountKeys, Client};
use crate::db;
use crate::error::{mls_error, ClientError};
use crate::key_packages::KEY_PACKAGE_BATCH;
use crate::platform::{lock_home, HomeLock};
use crate::provider::TxProvider;

/// Options for opening a client.
#[derive(Debug, Clone, Default)]
pub struct ClientOptions {
    /// A server address for this session only; the stored one changes only by
    /// [`Client::set_server`].
    pub server: Option<String>,
    /// An extra CA certificate (PEM) to trust, for self-signed servers.
    pub ca_cert: Option<PathBuf>,
    /// Ciphersuite for new groups and KeyPackages (defaults to Parley's default).
    pub ciphersuite: Option<Ciphersuite>,
    /// Called once when another process is using the home and opening waits for it to end.
    pub on_wait: Option<fn()>,
}

/// A device this home just registered with the server, certified by the account key.
pub(crate) struct NewDevice {
    signer: SignatureKeyPair,
    device_id: DeviceId,
    user_id: UserId,
    certificate: parley_mls::certificate::DeviceCertificate,
}

/// What a restore adds to a registration: the backup id and the restore secret.
pub(crate) struct RestoreProof {
    pub backup_id: Vec<u8>,
    pub restore_secret: Vec<u8>,
}

impl NewDevice {
    /// Makes a device key and id, certifies them under `account_key` and registers them: a new
    /// account, or (with `restore`) a new device of the existing one.
    pub(crate) async fn register(
        api: &ServerApi,
        username: &Username,
        account_key: &AccountKey,
        options: &ClientOptions,
        restore: Option<RestoreProof>,
    ) -> Result<NewDevice, ClientError> {
        let ciphersuite = options
            .ciphersuite
            .unwrap_or(parley_mls::suite::DEFAULT_CIPHERSUITE);
        let signer = SignatureKeyPair::new(ciphersuite.signature_algorithm()).map_err(mls_error)?;
        let public = signer.to_public_vec();
        let proof = signer
            .sign(&v1::register_proof_input(username.as_str(), &public))
            .map_err(|e| ClientError::Mls(format!("signing failed: {e:?}")))?;
        // The device names itself, so that its certificate can name it.
        let chosen = DeviceId::from_bytes(rand::random());
        let certificate = account_key.certify(username, chosen, &public, db::now_ms() as u64);
        let (restore, restore_secret, backup_id) = match restore {
            Some(proof) => (true, proof.restore_secret, proof.backup_id),
            None => (false, Vec::new(), Vec::new()),
        };
        let registered: v1::RegisterResponse = api
            .post(
                "/v1/accounts",
                &v1::RegisterRequest {
                    username: username.to_string(),
                    signature_key: public,
                    proof,
                    device_id: chosen.to_vec(),
                    account_key: account_key.public().to_bytes().to_vec(),
                    certificate: certificate.encode(),
                    restore,
                    restore_secret,
                    backup_id,
                },
                false,
            )
            .await?;
        let device_id = DeviceId::from_slice(&registered.device_id)
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        if device_id != chosen {
            return Err(ClientError::Protocol(
                "the server registered another device id than ours".into(),
            ));
        }
        let user_id = UserId::from_slice(&registered.user_id)
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        Ok(NewDevice {
            signer,
            device_id,
            user_id,
            certificate,
        })
    }

    /// Stores the device's key and account in the home, and pins our own account key.
    pub(crate) fn store(
        &self,
        tx: &rusqlite::Connection,
        api: &ServerApi,
        username: &Username,
        account_key: &AccountKey,
    ) -> Result<(), ClientError> {
        let crypto = RustCrypto::default();
        self.signer
            .store(TxProvider::new(&crypto, tx).storage())
            .map_err(mls_error)?;
        db::insert_account(
            tx,
            &db::AccountRow {
                server: api.base().to_owned(),
                username: username.to_string(),
                user_id: self.user_id.to_vec(),
                device_id: self.device_id.to_vec(),
                signature_key: self.signer.to_public_vec(),
                token: None,
                account_secret: Some(account_key.to_secret_bytes().to_vec()),
                certificate: Some(self.certificate.encode()),
            },
        )?;
        db::pin(
            tx,
            username.as_str(),
            &account_key.public().to_bytes(),
            db::now_ms(),
        )?;
        Ok(())
    }
}

impl Client {
    /// Creates a device key, registers `username` on the server, and uploads KeyPackages.
    pub async fn register(
        home: &Path,
        server: &str,
        username: &str,
        options: ClientOptions,
    ) -> Result<Client, ClientError> {
        let username =
            Username::parse(username).map_err(|e| ClientError::Invalid(e.to_string()))?;
        let lock = lock_home(home, options.on_wait)?;
        let conn = db::open(home)?;
        if db::account(&conn)?.is_some() {
            return Err(ClientError::AccountExists(home.to_owned()));
        }
        let api = ServerApi::new(server, api::tls_config(options.ca_cert.as_deref())?)?;
        let account_key = AccountKey::generate();
        let device = NewDevice::register(&api, &username, &account_key, &options, None).await?;
        {
            let tx = conn.unchecked_transaction()?;
            device.store(&tx, &api, &username, &account_key)?;
            tx.commit()?;
        }
        drop(conn);
        let client = Client::open_locked(home, options, lock)?;
        client.login().await?;
        client.upload_key_packages(KEY_PACKAGE_BATCH, true).await?;
        Ok(client)
    }

    /// Opens the account stored in `home`, waiting while another process uses it.
    pub fn open(home: &Path, options: ClientOptions) -> Result<Client, ClientError> {
        if !crate::platform::database_exists(&home.join(db::DATABASE_FILE)) {
            return Err(ClientError::NoAccount(home.to_owned()));
        }
        let lock = lock_home(home, options.on_wait)?;
        Client::open_locked(home, options, lock)
    }

    pub(crate) fn open_locked(
        home: &Path,
        options: ClientOptions,
        lock: HomeLock,
    ) -> Result<Client, ClientError> {
        let conn = db::open(home)?;
        let account = db::account(&conn)?.ok_or_else(|| ClientError::NoAccount(home.to_owned()))?;
        let server = options.server.clone().unwrap_or(account.server.clone());
        let api = ServerApi::new(&server, api::tls_config(options.ca_cert.as_deref())?)?;
        api.set_token(account.token.clone());
        let crypto = RustCrypto::default();
        let ciphersuite = options
            .ciphersuite
            .unwrap_or(parley_mls::suite::DEFAULT_CIPHERSUITE);
        let signer = SignatureKeyPair::read(
            TxProvider::new(&crypto, &conn).storage(),
            &account.signature_key,
            ciphersuite.signature_algorithm(),
        )
        .ok_or_else(|| {
            ClientError::Config("device signature key missing from local storage".into())
        })?;
        let username =
            Username::parse(&account.username).map_err(|e| ClientError::Config(e.to_string()))?;
        let device_id = DeviceId::from_slice(&account.device_id)
            .map_err(|e| ClientError::Config(e.to_string()))?;
        let user_id =
            UserId::from_slice(&account.user_id).map_err(|e| ClientError::Config(e.to_string()))?;
        let account_key = account_key_of(&account, &signer)?;
        let certificate = account
            .certificate
            .as_deref()
            .map(DeviceCertificate::decode)
            .transpose()
            .map_err(|e| ClientError::Config(format!("device certificate: {e}")))?;
        // Our own account key is pinned like anyone's (a device from before had none).
        db::pin(
            &conn,
            username.as_str(),
            &account_key.public().to_bytes(),
            db::now_ms(),
        )?;
        Ok(Client {
            home: home.to_owned(),
            conn: Mutex::new(conn),
            crypto,
            api,
            signer,
            identity: DeviceIdentity::new(username, device_id),
            keys: Mutex::new(AccountKeys {
                account_key,
                certificate,
            }),
            user_id,
            ciphersuite,
            flush_lock: tokio::sync::Mutex::new(Default::default()),
            receive_lock: tokio::sync::Mutex::new(()),
            live: Default::default(),
            uploading: Default::default(),
            _home_lock: lock,
        })
    }
}

/// The account key from storage; a device from before multi-device has none stored, and its
/// own signature key is its account key (the server promoted it the same way).
fn account_key_of(
    account: &db::AccountRow,
    signer: &SignatureKeyPair,
) -> Result<AccountKey, ClientError> {
    let secret = match &account.account_secret {
        Some(secret) => secret.clone(),
        None => device_secret(signer)?,
    };
    let secret: &[u8; 32] = secret
        .as_slice()
        .try_into()
        .map_err(|_| ClientError::Config("the account key is not 32 bytes".into()))?;
    let key = AccountKey::from_secret_bytes(secret);
    if account.account_secret.is_none() && key.public().to_bytes() != signer.public() {
        return Err(ClientError::Config(
            "the device key cannot serve as the account key".into(),
        ));
    }
    Ok(key)
}

/// The device's Ed25519 secret. openmls exposes it only in the key pair's serialized form,
/// which it keeps stable for stored key pairs (`private` as a bare byte list).
fn device_secret(signer: &SignatureKeyPair) -> Result<Vec<u8>, ClientError> {
    let unreadable = || ClientError::Config("the device key is unreadable".into());
    let value = serde_json::to_value(signer).map_err(|_| unreadable())?;
    value
        .get("private")
        .and_then(|p| p.as_array())
        .ok_or_else(unreadable)?
        .iter()
        .map(|b| b.as_u64().and_then(|b| u8::try_from(b).ok()))
        .collect::<Option<Vec<u8>>>()
        .ok_or_else(unreadable)
}

impl Client {
    /// The server address stored for this account (comma-separated if several).
    pub fn stored_server(&self) -> Result<String, ClientError> {
        let account =
            db::account(&self.db())?.ok_or_else(|| ClientError::NoAccount(self.home.clone()))?;
        Ok(account.server)
    }

    /// Stores a new server address for this account, for this and later sessions.
    pub fn set_server(&self, address: &str) -> Result<String, ClientError> {
        // Parsed as a connection would parse it: a bad address is refused before it is stored.
        let checked = ServerApi::new(address, api::tls_config(None)?)?.base();
        db::set_server(&self.db(), &checked)?;
        Ok(checked)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_device_from_before_multi_device_is_its_own_account_key() {
        let signer = SignatureKeyPair::new(SignatureScheme::ED25519).unwrap();
        let account = db::AccountRow {
            server: String::new(),
            username: "alice".into(),
            user_id: vec![1; 16],
            device_id: vec![2; 16],
            signature_key: signer.to_public_vec(),
            token: None,
            account_secret: None,
            certificate: None,
        };
        let key = account_key_of(&account, &signer).unwrap();
        assert_eq!(key.public().to_bytes().as_slice(), signer.public());
    }
}
