//! The `Client` value itself: the state every operation shares (database connection, crypto,
//! server API, device key and identity), its accessors, and the authenticated-call wrapper.
//!
//! The operations live beside what they touch (`account`, `key_packages`, `outgoing`,
//! `incoming`, `sync`, `views`, `reports`), each as an `impl Client` block.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use openmls::prelude::*;
use openmls_basic_credential::SignatureKeyPair;
use openmls_rust_crypto::RustCrypto;
use openmls_traits::signatures::Signer as _;
use parley_mls::certificate::{AccountKey, DeviceCertificate};
use parley_mls::{certified_credential, DeviceIdentity};
use parley_protocol::{v1, DeviceId, ErrorCode, UserId, Username};
use rusqlite::Connection;

use crate::api::ServerApi;
use crate::db;
use crate::error::ClientError;

// The fields are crate-visible because each module's `impl Client` block works on them.
pub struct Client {
    pub(crate) home: PathBuf,
    pub(crate) conn: Mutex<Connection>,
    pub(crate) crypto: RustCrypto,
    pub(crate) api: ServerApi,
    pub(crate) signer: SignatureKeyPair,
    pub(crate) identity: DeviceIdentity,
    /// The account key and this device's certificate; they change when the account rotates
    /// its key (`devices::rotation`).
    pub(crate) keys: Mutex<AccountKeys>,
    pub(crate) user_id: UserId,
    pub(crate) ciphersuite: Ciphersuite,
    /// One flush of the outbox at a time, and one pass over the queue at a time (a front end may
    /// sync in the background while the user sends). The flush lock guards what the last flush
    /// had to hold back.
    pub(crate) flush_lock: tokio::sync::Mutex<crate::outgoing::HeldBack>,
    pub(crate) receive_lock: tokio::sync::Mutex<()>,
    /// Typing indicators going out over, and coming in from, the live connection.
    pub(crate) live: LiveChannels,
    /// Uploads under way in this process, by ciphertext hash: a sync's resumption leaves
    /// them to the call that is uploading them.
    pub(crate) uploading: Mutex<std::collections::HashSet<Vec<u8>>>,
    /// This process's exclusive hold on the home (see `home`), for the client's whole life.
    pub(crate) _home_lock: crate::platform::HomeLock,
}

/// Someone is typing in a chat (or stopped), as the live connection told us. Never stored.
#[derive(Debug, Clone, serde::Serialize, PartialEq, Eq)]
pub struct TypingView {
    /// The chat as `MessageView::chat` names it.
    pub chat: String,
    pub sender: String,
    pub stopped: bool,
}

/// What travels on the live connection besides queue hints. Typing indicators are not
/// messages: nothing here is stored, and what finds no listener is gone.
pub(crate) struct LiveChannels {
    /// The running `follow` loop's connection, if there is one: indicators go out on it.
    pub(crate) outgoing: Mutex<Option<tokio::sync::mpsc::Sender<v1::Typing>>>,
    /// Indicators received, for front ends ([`Client::typing_events`]).
    pub(crate) incoming: tokio::sync::broadcast::Sender<TypingView>,
    /// When we last told each chat (by group id) that we are typing.
    pub(crate) last_sent: Mutex<std::collections::HashMap<Vec<u8>, crate::platform::Instant>>,
    /// Something shown changed without a new message: a receipt came, a message disappeared.
    pub(crate) changed: tokio::sync::broadcast::Sender<()>,
}

impl Default for LiveChannels {
    fn default() -> Self {
        LiveChannels {
            outgoing: Mutex::default(),
            incoming: tokio::sync::broadcast::channel(64).0,
            last_sent: Mutex::default(),
            changed: tokio::sync::broadcast::channel(4).0,
        }
    }
}

/// The account key, shared by the account's devices (it certifies each of them), and this
/// device's certificate under it; `None`: a device from before multi-device, whose signature
/// key is the account key and which presents a plain credential.
#[derive(Clone)]
pub(crate) struct AccountKeys {
    pub(crate) account_key: AccountKey,
    pub(crate) certificate: Option<DeviceCertificate>,
}

impl Client {
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

    /// The account key as this device holds it now.
    pub(crate) fn account_key(&self) -> AccountKey {
        self.keys().account_key
    }

    pub(crate) fn keys(&self) -> AccountKeys {
        self.keys.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub(crate) fn set_keys(&self, keys: AccountKeys) {
        *self.keys.lock().unwrap_or_else(|p| p.into_inner()) = keys;
    }

    pub(crate) fn credential(&self) -> CredentialWithKey {
        let keys = self.keys();
        let credential = match &keys.certificate {
            Some(certificate) => certified_credential(&keys.account_key.public(), certificate),
            None => self.identity.to_credential(),
        };
        CredentialWithKey {
            credential,
            signature_key: self.signer.to_public_vec().into(),
        }
    }

    /// Signs a fresh server challenge and stores the session token.
    pub async fn login(&self) -> Result<(), ClientError> {
        let token = login_with(&self.api, &self.signer, self.identity.device_id).await?;
        db::set_token(&self.db(), &token)?;
        self.api.set_token(Some(token));
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

    /// Opens the live connection, logging in first if there is no session, and once more if
    /// the session expired.
    pub(crate) async fn open_live(&self) -> Result<crate::api::LiveConnection, ClientError> {
        if self.api.token().is_none() {
            self.login().await?;
        }
        match self.api.connect_live().await {
            Ok(live) => Ok(live),
            Err(_) => {
                self.login().await?;
                self.api.connect_live().await
            }
        }
    }

    /// How many received messages were set aside because they did not verify.
    pub fn unverifiable_count(&self) -> Result<u64, ClientError> {
        db::unverifiable_count(&self.db())
    }

    pub fn api(&self) -> &ServerApi {
        &self.api
    }
}

/// Logs a device in (a fresh challenge, signed) and returns the session token.
pub(crate) async fn login_with(
    api: &ServerApi,
    signer: &SignatureKeyPair,
    device: DeviceId,
) -> Result<String, ClientError> {
    let device_id = device.to_vec();
    let challenge: v1::ChallengeResponse = api
        .post(
            "/v1/auth/challenge",
            &v1::ChallengeRequest {
                device_id: device_id.clone(),
            },
            false,
        )
        .await?;
    let signature = signer
        .sign(&v1::login_signature_input(&device_id, &challenge.challenge))
        .map_err(|e| ClientError::Mls(format!("signing failed: {e:?}")))?;
    let login: v1::LoginResponse = api
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
    Ok(login.token)
}
