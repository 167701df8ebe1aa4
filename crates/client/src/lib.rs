//! Parley's client library: one device's account, MLS groups, message log, outbox and sync.
//!
//! Every chat is an MLS group (a 1:1 chat has two members), end-to-end encrypted from its first
//! message; there is nothing to switch on. Each state change (MLS state, message log, outbox,
//! dedup record, sync cursor) is one local SQLite transaction, so a crash at any point leaves a
//! state from which the outbox resends and the cursor refetches, without loss or duplicates.
//!
//! No terminal code lives here: the CLI, a terminal UI or a web front end all sit on [`Client`].
#![forbid(unsafe_code)]

pub mod api;
mod db;
mod incoming;
mod outgoing;
pub mod provider;
mod reports;
mod views;

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use openmls::prelude::*;
use openmls_basic_credential::SignatureKeyPair;
use openmls_rust_crypto::RustCrypto;
use openmls_traits::signatures::Signer as _;
use parley_mls::DeviceIdentity;
use parley_protocol::{v1, DeviceId, ErrorCode, UserId, Username, WireError};
use rusqlite::Connection;

use api::ServerApi;
use provider::TxProvider;

pub use db::MessageStatus;
pub use reports::{EvidenceBundle, EvidenceMessage};
pub use views::{ChatSummary, GroupStateView, MessageView, SafetyNumber};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{0}")]
    Server(WireError),
    #[error("network: {0}")]
    Network(String),
    #[error("protocol: {0}")]
    Protocol(String),
    #[error("configuration: {0}")]
    Config(String),
    #[error("no account in {0}: run `parley register NAME` first")]
    NoAccount(PathBuf),
    #[error("an account already exists in {0}")]
    AccountExists(PathBuf),
    #[error("not logged in")]
    NotLoggedIn,
    #[error("{0}")]
    Invalid(String),
    #[error("no chat named {0}")]
    UnknownChat(String),
    #[error("MLS: {0}")]
    Mls(String),
    #[error("local database: {0}")]
    Database(#[from] rusqlite::Error),
}

impl ClientError {
    pub fn server_code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Server(e) => Some(e.code),
            _ => None,
        }
    }

    /// True when retrying later may succeed (the server was unreachable or busy).
    pub fn is_transient(&self) -> bool {
        match self {
            ClientError::Network(_) => true,
            ClientError::Server(e) => matches!(
                e.code,
                ErrorCode::Unavailable | ErrorCode::RateLimited | ErrorCode::Internal
            ),
            _ => false,
        }
    }
}

pub(crate) fn mls_error(e: impl std::fmt::Display) -> ClientError {
    ClientError::Mls(e.to_string())
}

/// A chat as the user names it: a peer's username for a 1:1 chat, `#name` for a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChatRef {
    Direct(Username),
    Group(String),
}

impl ChatRef {
    pub fn parse(text: &str) -> Result<ChatRef, ClientError> {
        match text.strip_prefix('#') {
            Some(name) => Ok(ChatRef::Group(parse_group_name(name)?)),
            None => Username::parse(text).map(ChatRef::Direct).map_err(|e| {
                ClientError::Invalid(format!("{text:?}: {e} (groups are written #name)"))
            }),
        }
    }
}

impl std::fmt::Display for ChatRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ChatRef::Direct(user) => write!(f, "{user}"),
            ChatRef::Group(name) => write!(f, "#{name}"),
        }
    }
}

/// Group names: 1 to 64 printable characters, no control characters, no leading '#'.
pub fn parse_group_name(name: &str) -> Result<String, ClientError> {
    let name = name.trim();
    let length = name.chars().count();
    if length == 0 || length > 64 || name.chars().any(|c| c.is_control()) || name.starts_with('#') {
        return Err(ClientError::Invalid(format!(
            "invalid group name {name:?}: 1-64 printable characters"
        )));
    }
    Ok(name.to_owned())
}

/// Options for opening a client.
#[derive(Debug, Clone, Default)]
pub struct ClientOptions {
    /// Overrides the server address stored at registration.
    pub server: Option<String>,
    /// An extra CA certificate (PEM) to trust, for self-signed servers.
    pub ca_cert: Option<PathBuf>,
    /// Ciphersuite for new groups and KeyPackages (defaults to Parley's default).
    pub ciphersuite: Option<Ciphersuite>,
}

const DATABASE_FILE: &str = "parley.db";
/// KeyPackages uploaded at a time, and the level below which the pool is replenished.
const KEY_PACKAGE_BATCH: usize = 50;
const KEY_PACKAGE_LOW_WATER: u32 = 20;

pub struct Client {
    home: PathBuf,
    conn: Mutex<Connection>,
    crypto: RustCrypto,
    api: ServerApi,
    signer: SignatureKeyPair,
    identity: DeviceIdentity,
    user_id: UserId,
    ciphersuite: Ciphersuite,
    /// One flush of the outbox at a time, and one pass over the queue at a time (a front end may
    /// sync in the background while the user sends).
    flush_lock: tokio::sync::Mutex<()>,
    receive_lock: tokio::sync::Mutex<()>,
}

fn open_database(home: &Path) -> Result<Connection, ClientError> {
    std::fs::create_dir_all(home)
        .map_err(|e| ClientError::Config(format!("cannot create {}: {e}", home.display())))?;
    let mut conn = Connection::open(home.join(DATABASE_FILE))?;
    conn.busy_timeout(std::time::Duration::from_secs(30))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    provider::migrate(&mut conn).map_err(ClientError::Config)?;
    db::migrate(&mut conn)?;
    Ok(conn)
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
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
        let conn = open_database(home)?;
        if db::account(&conn)?.is_some() {
            return Err(ClientError::AccountExists(home.to_owned()));
        }
        let api = ServerApi::new(server, api::tls_config(options.ca_cert.as_deref())?)?;
        let ciphersuite = options
            .ciphersuite
            .unwrap_or(parley_mls::suite::DEFAULT_CIPHERSUITE);
        let signer = SignatureKeyPair::new(ciphersuite.signature_algorithm()).map_err(mls_error)?;
        let public = signer.to_public_vec();
        let proof = signer
            .sign(&v1::register_proof_input(username.as_str(), &public))
            .map_err(|e| ClientError::Mls(format!("signing failed: {e:?}")))?;
        let registered: v1::RegisterResponse = api
            .post(
                "/v1/accounts",
                &v1::RegisterRequest {
                    username: username.to_string(),
                    signature_key: public.clone(),
                    proof,
                },
                false,
            )
            .await?;
        let device_id = DeviceId::from_slice(&registered.device_id)
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        let user_id = UserId::from_slice(&registered.user_id)
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        let crypto = RustCrypto::default();
        {
            let tx = conn.unchecked_transaction()?;
            signer
                .store(TxProvider::new(&crypto, &tx).storage())
                .map_err(mls_error)?;
            db::insert_account(
                &tx,
                &db::AccountRow {
                    server: api.base().to_owned(),
                    username: username.to_string(),
                    user_id: user_id.to_vec(),
                    device_id: device_id.to_vec(),
                    signature_key: public,
                    token: None,
                },
            )?;
            tx.commit()?;
        }
        drop(conn);
        let client = Client::open(home, options)?;
        client.login().await?;
        client.upload_key_packages(KEY_PACKAGE_BATCH, true).await?;
        Ok(client)
    }

    /// Opens the account stored in `home`.
    pub fn open(home: &Path, options: ClientOptions) -> Result<Client, ClientError> {
        if !home.join(DATABASE_FILE).exists() {
            return Err(ClientError::NoAccount(home.to_owned()));
        }
        let conn = open_database(home)?;
        let account = db::account(&conn)?.ok_or_else(|| ClientError::NoAccount(home.to_owned()))?;
        if let Some(server) = &options.server {
            db::set_server(&conn, server.trim_end_matches('/'))?;
        }
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
        Ok(Client {
            home: home.to_owned(),
            conn: Mutex::new(conn),
            crypto,
            api,
            signer,
            identity: DeviceIdentity::new(username, device_id),
            user_id,
            ciphersuite,
            flush_lock: tokio::sync::Mutex::new(()),
            receive_lock: tokio::sync::Mutex::new(()),
        })
    }

    pub fn home(&self) -> &Path {
        &self.home
    }

    pub fn username(&self) -> &Username {
        &self.identity.username
    }

    pub fn device_id(&self) -> DeviceId {
        self.identity.device_id
    }

    pub fn user_id(&self) -> UserId {
        self.user_id
    }

    pub(crate) fn db(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn signer_public(&self) -> Vec<u8> {
        self.signer.to_public_vec()
    }

    pub(crate) fn credential(&self) -> CredentialWithKey {
        CredentialWithKey {
            credential: self.identity.to_credential(),
            signature_key: self.signer.to_public_vec().into(),
        }
    }

    /// Signs a fresh server challenge and stores the session token.
    pub async fn login(&self) -> Result<(), ClientError> {
        let device_id = self.identity.device_id.to_vec();
        let challenge: v1::ChallengeResponse = self
            .api
            .post(
                "/v1/auth/challenge",
                &v1::ChallengeRequest {
                    device_id: device_id.clone(),
                },
                false,
            )
            .await?;
        let signature = self
            .signer
            .sign(&v1::login_signature_input(&device_id, &challenge.challenge))
            .map_err(|e| ClientError::Mls(format!("signing failed: {e:?}")))?;
        let login: v1::LoginResponse = self
            .api
            .post(
                "/v1/auth/login",
                &v1::LoginRequest {
                    device_id,
                    challenge: challenge.challenge,
                    signature,
                },
                false,
            )
            .await?;
        db::set_token(&self.db(), &login.token)?;
        self.api.set_token(Some(login.token));
        Ok(())
    }

    /// Runs an authenticated call, logging in first if there is no session or it expired.
    pub(crate) async fn authed<T, F, Fut>(&self, call: F) -> Result<T, ClientError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T, ClientError>>,
    {
        if self.api.token().is_none() {
            self.login().await?;
        }
        match call().await {
            Err(ClientError::Server(e)) if e.code == ErrorCode::Unauthenticated => {
                self.login().await?;
                call().await
            }
            other => other,
        }
    }

    fn new_key_package(
        &self,
        provider: &TxProvider<'_>,
        last_resort: bool,
    ) -> Result<Vec<u8>, ClientError> {
        let mut builder = KeyPackage::builder()
            .leaf_node_capabilities(parley_mls::suite::leaf_capabilities(self.ciphersuite));
        if last_resort {
            builder = builder.mark_as_last_resort();
        }
        let bundle = builder
            .build(self.ciphersuite, provider, &self.signer, self.credential())
            .map_err(mls_error)?;
        use openmls::prelude::tls_codec::Serialize as _;
        bundle
            .key_package()
            .tls_serialize_detached()
            .map_err(mls_error)
    }

    /// Generates and uploads `count` one-time KeyPackages (and a last-resort one if asked).
    /// The private keys are committed locally before the upload, so an upload that fails only
    /// leaves unused keys behind.
    pub async fn upload_key_packages(
        &self,
        count: usize,
        last_resort: bool,
    ) -> Result<v1::KeyPackageCount, ClientError> {
        let upload = {
            let conn = self.db();
            let tx = conn.unchecked_transaction()?;
            let provider = TxProvider::new(&self.crypto, &tx);
            let key_packages = (0..count)
                .map(|_| self.new_key_package(&provider, false))
                .collect::<Result<Vec<_>, _>>()?;
            let last_resort = if last_resort {
                Some(self.new_key_package(&provider, true)?)
            } else {
                None
            };
            tx.commit()?;
            v1::UploadKeyPackages {
                key_packages,
                last_resort,
            }
        };
        self.authed(|| self.api.post("/v1/keypackages", &upload, true))
            .await
    }

    /// Tops the server's pool of this device's KeyPackages up when it runs low.
    pub async fn replenish_key_packages(&self) -> Result<(), ClientError> {
        let count: v1::KeyPackageCount = self
            .authed(|| self.api.get("/v1/keypackages/count"))
            .await?;
        if count.one_time_remaining < KEY_PACKAGE_LOW_WATER || !count.has_last_resort {
            self.upload_key_packages(KEY_PACKAGE_BATCH, !count.has_last_resort)
                .await?;
        }
        Ok(())
    }

    /// How many received messages were set aside because they did not verify.
    pub fn unverifiable_count(&self) -> Result<u64, ClientError> {
        db::unverifiable_count(&self.db())
    }

    pub fn api(&self) -> &ServerApi {
        &self.api
    }
}
