//! Linking this (new) device to an existing account (`parley link NAME`): ask the server for a
//! link, show the code, wait for a device of the account to approve it, open the sealed bundle
//! (the account key and this device's certificate), publish KeyPackages, then take the
//! Welcomes and the history archive. What it needs to resume after a restart is kept in the
//! home (`pending_link`) until the history is in.

use std::path::Path;
use std::time::Duration;

use crate::platform::Instant;

use openmls_basic_credential::SignatureKeyPair;
use openmls_rust_crypto::RustCrypto;
use openmls_traits::signatures::Signer as _;
use openmls_traits::OpenMlsProvider as _;
use parley_mls::certificate::{AccountKey, DeviceCertificate};
use parley_protocol::{v1, DeviceId, ErrorCode, UserId, Username};
use prost::Message as _;

use super::code::LinkCode;
use super::crypto;
use crate::account::ClientOptions;
use crate::api::{self, ServerApi};
use crate::client::{login_with, Client};
use crate::db::{self, now_ms, PendingLinkRow};
use crate::error::{mls_error, ClientError};
use crate::key_packages::KEY_PACKAGE_BATCH;
use crate::platform::lock_home;
use crate::provider::TxProvider;

const POLL: Duration = Duration::from_millis(500);
/// After approval, how long the history may take to start arriving before we give up.
const HISTORY_WAIT: Duration = Duration::from_secs(10 * 60);
/// No progress from the approving device for this long: say so (and keep waiting).
pub(crate) const STALL: Duration = Duration::from_secs(10);

/// What linking is doing, for a front end to show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkEvent {
    /// Show this code (and its QR code) and enter it on a device of the account.
    Code(String),
    /// A device of the account approved this one.
    Approved,
    /// The approving device has sent nothing for a while: it may have stopped.
    Stalled { chunks: u32 },
    /// The history is in.
    HistoryImported { chats: u64, messages: u64 },
}

/// The code a pending link shows.
fn code_of(pending: &PendingLinkRow) -> Result<LinkCode, ClientError> {
    Ok(LinkCode {
        link_id: pending
            .link_id
            .as_slice()
            .try_into()
            .map_err(|_| expired_error())?,
        secret: pending
            .secret
            .as_slice()
            .try_into()
            .map_err(|_| expired_error())?,
    })
}

fn expired_error() -> ClientError {
    ClientError::Invalid(
        "the link code expired before a device approved it; run `parley link` again".into(),
    )
}

impl Client {
    /// Links a new device in `home` to `username`'s account, or resumes a link that was
    /// interrupted there.
    pub async fn link(
        home: &Path,
        server: Option<&str>,
        username: &str,
        options: ClientOptions,
        mut events: impl FnMut(LinkEvent),
    ) -> Result<Client, ClientError> {
        let username =
            Username::parse(username).map_err(|e| ClientError::Invalid(e.to_string()))?;
        let lock = lock_home(home, options.on_wait)?;
        let conn = db::open(home)?;
        let pending = db::pending_link(&conn)?;
        let account = db::account(&conn)?;
        if let Some(pending) = &pending {
            if pending.username != username.as_str() {
                return Err(ClientError::Invalid(format!(
                    "this home is linking to {} already",
                    pending.username
                )));
            }
        }
        let tls = api::tls_config(options.ca_cert.as_deref())?;
        let crypto = RustCrypto::default();
        let ciphersuite = options
            .ciphersuite
            .unwrap_or(parley_mls::suite::DEFAULT_CIPHERSUITE);
        let pending = match (account.is_some(), pending) {
            (true, None) => return Err(ClientError::AccountExists(home.to_owned())),
            (_, Some(pending)) => {
                if account.is_none() {
                    events(LinkEvent::Code(code_of(&pending)?.encode()));
                }
                pending
            }
            (false, None) => {
                let server = server.ok_or_else(|| {
                    ClientError::Invalid("name the server to link through (--server URL)".into())
                })?;
                let api = ServerApi::new(server, tls.clone())?;
                let signer =
                    SignatureKeyPair::new(ciphersuite.signature_algorithm()).map_err(mls_error)?;
                let pending = request_link(&api, &crypto, &signer, &username).await?;
                let tx = conn.unchecked_transaction()?;
                signer
                    .store(TxProvider::new(&crypto, &tx).storage())
                    .map_err(mls_error)?;
                db::insert_pending_link(&tx, &pending)?;
                tx.commit()?;
                events(LinkEvent::Code(code_of(&pending)?.encode()));
                pending
            }
        };
        if account.is_none() {
            let signer = SignatureKeyPair::read(
                TxProvider::new(&crypto, &conn).storage(),
                &pending.signature_key,
                ciphersuite.signature_algorithm(),
            )
            .ok_or_else(|| ClientError::Config("the new device's key is missing".into()))?;
            let api = ServerApi::new(server.unwrap_or(&pending.server), tls)?;
            let row = wait_for_approval(&api, &crypto, &signer, &pending).await?;
            let tx = conn.unchecked_transaction()?;
            db::insert_account(&tx, &row)?;
            tx.commit()?;
            events(LinkEvent::Approved);
        }
        drop(conn);
        let client = Client::open_locked(home, options, lock)?;
        if account.is_none() {
            client.upload_key_packages(KEY_PACKAGE_BATCH, true).await?;
        }
        client.learn_own_rotations().await?;
        client.receive_history(&pending, &mut events).await?;
        Ok(client)
    }

    /// Takes Welcomes as they come and waits for the archive; imports it once sealed.
    async fn receive_history(
        &self,
        pending: &PendingLinkRow,
        events: &mut impl FnMut(LinkEvent),
    ) -> Result<(), ClientError> {
        let link_path = format!("/v1/links/{}", hex::encode(&pending.link_id));
        let link: v1::PendingLink = self.authed(|| self.api.get(&link_path)).await?;
        let blob_path = format!("/v1/blobs/{}", hex::encode(&link.archive_blob));
        let key = crypto::archive_key(&pending.link_id, &pending.secret);
        let deadline = Instant::now() + HISTORY_WAIT;
        let mut last_progress = Instant::now();
        let mut stalled = false;
        let mut seen = (0u32, 0u64);
        loop {
            // Welcomes first: the chats exist before their history lands in them.
            let received = self.receive().await?;
            let status: v1::BlobStatus = self.authed(|| self.api.get(&blob_path)).await?;
            if status.sealed {
                let size = self
                    .import_archive_blob(&link.archive_blob, &key, status.chunks)
                    .await?;
                events(LinkEvent::HistoryImported {
                    chats: size.chats,
                    messages: size.messages,
                });
                self.sync().await?;
                return Ok(());
            }
            if !received.is_empty() || (status.chunks, status.bytes) != seen {
                seen = (status.chunks, status.bytes);
                last_progress = Instant::now();
                stalled = false;
            } else if !stalled && last_progress.elapsed() > STALL {
                stalled = true;
                events(LinkEvent::Stalled {
                    chunks: status.chunks,
                });
            }
            if Instant::now() > deadline {
                return Err(ClientError::Invalid(
                    "the history did not arrive: run `parley devices approve CODE` again on \
                     the approving device, then `parley link` here again"
                        .into(),
                ));
            }
            crate::platform::sleep(POLL).await;
        }
    }
}

/// Makes the new device's keys and asks the server for a link.
async fn request_link(
    api: &ServerApi,
    crypto: &RustCrypto,
    signer: &SignatureKeyPair,
    username: &Username,
) -> Result<PendingLinkRow, ClientError> {
    let device_id = DeviceId::from_bytes(rand::random());
    let (hpke_secret, hpke_public) = crypto::hpke_key_pair(crypto)?;
    let secret: [u8; super::code::SECRET_LEN] = rand::random();
    let public = signer.to_public_vec();
    let mac = crypto::link_mac(
        &secret,
        &v1::link_mac_input(
            username.as_str(),
            device_id.as_bytes(),
            &public,
            &hpke_public,
        ),
    );
    let proof = signer
        .sign(&v1::link_proof_input(
            username.as_str(),
            device_id.as_bytes(),
            &hpke_public,
        ))
        .map_err(|e| ClientError::Mls(format!("signing failed: {e:?}")))?;
    let created: v1::CreateLinkResponse = api
        .post(
            "/v1/links",
            &v1::CreateLink {
                username: username.to_string(),
                device_id: device_id.to_vec(),
                signature_key: public.clone(),
                hpke_key: hpke_public,
                proof,
                mac,
            },
            false,
        )
        .await?;
    if created.link_id.len() != super::code::LINK_ID_LEN {
        return Err(ClientError::Protocol(
            "the server's link id is malformed".into(),
        ));
    }
    Ok(PendingLinkRow {
        server: api.base(),
        username: username.to_string(),
        device_id: device_id.to_vec(),
        signature_key: public,
        link_id: created.link_id,
        secret: secret.to_vec(),
        hpke_secret,
        expires_at: created.expires_at_ms,
    })
}

/// Waits until a device of the account approves the link (this device can then log in), and
/// opens the bundle it sealed to us. Returns the account row to store.
async fn wait_for_approval(
    api: &ServerApi,
    crypto: &RustCrypto,
    signer: &SignatureKeyPair,
    pending: &PendingLinkRow,
) -> Result<db::AccountRow, ClientError> {
    let device =
        DeviceId::from_slice(&pending.device_id).map_err(|e| ClientError::Config(e.to_string()))?;
    let token = loop {
        if now_ms() > pending.expires_at {
            return Err(expired_error());
        }
        match login_with(api, signer, device).await {
            Ok(token) => break token,
            Err(ClientError::Server(e)) if e.code == ErrorCode::Unauthenticated => {}
            Err(e) if e.is_transient() => {}
            Err(e) => return Err(e),
        }
        crate::platform::sleep(POLL).await;
    };
    api.set_token(Some(token.clone()));
    let link: v1::PendingLink = api
        .get(&format!("/v1/links/{}", hex::encode(&pending.link_id)))
        .await?;
    let opened = crypto::open_bundle(
        crypto,
        &pending.hpke_secret,
        &pending.link_id,
        &pending.secret,
        &link.sealed_bundle,
    )?;
    let bundle = v1::LinkBundle::decode(opened.as_slice())
        .map_err(|_| ClientError::Protocol("the link bundle does not parse".into()))?;
    let secret: [u8; 32] = bundle
        .account_secret
        .as_slice()
        .try_into()
        .map_err(|_| ClientError::Protocol("the account key is malformed".into()))?;
    let account_key = AccountKey::from_secret_bytes(&secret);
    let certificate = DeviceCertificate::decode(&bundle.certificate)
        .map_err(|e| ClientError::Protocol(e.to_string()))?;
    certificate
        .verify(&account_key.public())
        .map_err(|e| ClientError::Protocol(format!("our certificate: {e}")))?;
    if certificate.device != device
        || certificate.device_key != pending.signature_key
        || certificate.username.as_str() != pending.username
    {
        return Err(ClientError::Protocol(
            "the certificate we were given is for another device".into(),
        ));
    }
    let user_id =
        UserId::from_slice(&bundle.user_id).map_err(|e| ClientError::Protocol(e.to_string()))?;
    Ok(db::AccountRow {
        server: pending.server.clone(),
        username: pending.username.clone(),
        user_id: user_id.to_vec(),
        device_id: pending.device_id.clone(),
        signature_key: pending.signature_key.clone(),
        token: Some(token),
        account_secret: Some(secret.to_vec()),
        certificate: Some(bundle.certificate),
    })
}
