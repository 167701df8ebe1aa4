//! Accounts and devices: registration with a device signature key, and login by signing a
//! server challenge. No passwords, no phone numbers.

use std::sync::Arc;
use std::time::Duration;

use ed25519_dalek::{Signature, VerifyingKey};
use parley_mls::certificate::{AccountPublicKey, DeviceCertificate};
use parley_protocol::{v1, DeviceId, ErrorCode, UserId, Username};
use parley_store::{Challenge, DeviceRecord, NewAccount, NewSession, Store};
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::reserved::ReservedNames;
use crate::{now_ms, ApiError};

const CHALLENGE_TTL_MS: i64 = 60_000;

/// The authenticated device behind a request, and the session it authenticated with (the
/// token's hash), which long-lived connections check again.
#[derive(Debug, Clone)]
pub struct Authenticated(pub DeviceRecord, SessionKey);

/// A session by its token's hash (never the token itself).
#[derive(Clone)]
struct SessionKey(Vec<u8>);

impl std::fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionKey(..)")
    }
}

pub struct Accounts {
    store: Arc<dyn Store>,
    session_ttl: Duration,
    reserved: ReservedNames,
}

pub(crate) fn verifying_key(bytes: &[u8]) -> Result<VerifyingKey, ApiError> {
    let array: [u8; 32] = bytes
        .try_into()
        .map_err(|_| ApiError::malformed("signature key must be a 32-byte Ed25519 public key"))?;
    let key = VerifyingKey::from_bytes(&array)
        .map_err(|_| ApiError::malformed("invalid Ed25519 public key"))?;
    // A small-order key accepts forged signatures under non-strict verification.
    if key.is_weak() {
        return Err(ApiError::malformed("weak Ed25519 public key"));
    }
    Ok(key)
}

pub(crate) fn verify(key: &VerifyingKey, message: &[u8], signature: &[u8]) -> Result<(), ApiError> {
    let signature = Signature::from_slice(signature)
        .map_err(|_| ApiError::malformed("signature must be 64 bytes"))?;
    key.verify_strict(message, &signature)
        .map_err(|_| ApiError::unauthenticated("signature does not verify"))
}

/// A registering device proves it holds the key it registers, for this username.
pub(crate) fn verify_registration_proof(
    username: &Username,
    request: &v1::RegisterRequest,
) -> Result<(), ApiError> {
    let key = verifying_key(&request.signature_key)?;
    verify(
        &key,
        &v1::register_proof_input(username.as_str(), &request.signature_key),
        &request.proof,
    )
}

/// The device id a device chose for itself (its certificate names it).
pub(crate) fn chosen_device_id(bytes: &[u8]) -> Result<DeviceId, ApiError> {
    DeviceId::from_slice(bytes)
        .ok()
        .filter(|d| *d != parley_store::SYSTEM_DEVICE)
        .ok_or_else(|| ApiError::malformed("a device id is 16 bytes, not all zero"))
}

/// The first device's certificate must be the account key's signature over exactly this
/// username, device id and signature key.
pub(crate) fn verify_certificate(
    username: &Username,
    device_id: DeviceId,
    request: &v1::RegisterRequest,
) -> Result<(), ApiError> {
    verifying_key(&request.account_key)?;
    let account_key = AccountPublicKey::from_bytes(
        request
            .account_key
            .as_slice()
            .try_into()
            .map_err(|_| ApiError::malformed("an account key is 32 bytes"))?,
    );
    let certificate = DeviceCertificate::decode(&request.certificate)
        .map_err(|e| ApiError::malformed(e.to_string()))?;
    certificate
        .verify(&account_key)
        .map_err(|e| ApiError::unauthenticated(e.to_string()))?;
    if certificate.username != *username
        || certificate.device != device_id
        || certificate.device_key != request.signature_key
    {
        return Err(ApiError::unauthenticated(
            "the device certificate names another account, device or key",
        ));
    }
    Ok(())
}

pub(crate) fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    bytes
}

pub fn token_hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

impl Accounts {
    pub fn new(store: Arc<dyn Store>, session_ttl: Duration, reserved: ReservedNames) -> Self {
        Accounts {
            store,
            session_ttl,
            reserved,
        }
    }

    pub async fn register(
        &self,
        request: v1::RegisterRequest,
    ) -> Result<v1::RegisterResponse, ApiError> {
        let username = Username::parse(&request.username)
            .map_err(|e| ApiError::new(ErrorCode::InvalidUsername, e.to_string()))?;
        if let Some(reserved) = self.reserved.matching(&username) {
            return Err(ApiError::new(
                ErrorCode::InvalidUsername,
                format!("{username} is reserved (it reads as {reserved}); choose another name"),
            ));
        }
        verify_registration_proof(&username, &request)?;
        let user_id = UserId::from_bytes(random_bytes());
        let device_id = match request.device_id.as_slice() {
            [] if request.account_key.is_empty() => DeviceId::from_bytes(random_bytes()),
            [] => {
                return Err(ApiError::malformed(
                    "a certified device names its device id",
                ))
            }
            chosen => chosen_device_id(chosen)?,
        };
        let account_key = if request.account_key.is_empty() {
            // The device is its own account key (a client from before multi-device).
            request.signature_key.clone()
        } else {
            verify_certificate(&username, device_id, &request)?;
            request.account_key.clone()
        };
        self.store
            .create_account(NewAccount {
                user_id,
                username,
                device_id,
                signature_key: request.signature_key,
                account_key,
                now: now_ms(),
            })
            .await?;
        tracing::info!(user = %user_id, device = %device_id, "account registered");
        Ok(v1::RegisterResponse {
            user_id: user_id.to_vec(),
            device_id: device_id.to_vec(),
        })
    }

    pub async fn challenge(
        &self,
        request: v1::ChallengeRequest,
    ) -> Result<v1::ChallengeResponse, ApiError> {
        let device_id = DeviceId::from_slice(&request.device_id)
            .map_err(|e| ApiError::malformed(e.to_string()))?;
        // Unknown devices get a challenge too, so that the answer does not reveal which exist.
        let nonce = random_bytes::<32>().to_vec();
        self.store
            .put_challenge(Challenge {
                nonce: nonce.clone(),
                device_id,
                expires_at: now_ms() + CHALLENGE_TTL_MS,
            })
            .await?;
        Ok(v1::ChallengeResponse { challenge: nonce })
    }

    pub async fn login(&self, request: v1::LoginRequest) -> Result<v1::LoginResponse, ApiError> {
        let device_id = DeviceId::from_slice(&request.device_id)
            .map_err(|e| ApiError::malformed(e.to_string()))?;
        // The server's own device (moderation's external sender) never has sessions.
        if device_id == parley_store::SYSTEM_DEVICE {
            return Err(ApiError::unauthenticated("unknown device"));
        }
        let challenge = self
            .store
            .take_challenge(&request.challenge)
            .await?
            .ok_or_else(|| ApiError::unauthenticated("unknown or used challenge"))?;
        if challenge.device_id != device_id || challenge.expires_at < now_ms() {
            return Err(ApiError::unauthenticated(
                "challenge expired or issued to another device",
            ));
        }
        let device = self
            .store
            .device(device_id)
            .await?
            .ok_or_else(|| ApiError::unauthenticated("unknown device"))?;
        if device.suspended {
            return Err(ApiError::forbidden("this account is suspended"));
        }
        let key = verifying_key(&device.signature_key)?;
        verify(
            &key,
            &v1::login_signature_input(&request.device_id, &request.challenge),
            &request.signature,
        )?;
        // Said only to the device itself (it signed): nobody else learns which are revoked.
        if device.revoked {
            return Err(ApiError::forbidden(
                "this device was revoked by another device of its account and cannot log in \
                 again; link it anew with `parley link` in a fresh home",
            ));
        }
        let token = hex::encode(random_bytes::<32>());
        let expires_at = now_ms() + self.session_ttl.as_millis() as i64;
        self.store
            .create_session(NewSession {
                token_hash: token_hash(&token),
                device_id,
                expires_at,
                now: now_ms(),
            })
            .await?;
        tracing::info!(device = %device_id, "device logged in");
        Ok(v1::LoginResponse {
            token,
            expires_at_ms: expires_at,
        })
    }

    pub async fn authenticate(&self, token: &str) -> Result<Authenticated, ApiError> {
        if token.len() != 64 {
            return Err(ApiError::unauthenticated("malformed session token"));
        }
        self.store
            .session(&token_hash(token), now_ms())
            .await?
            .filter(|device| device.device_id != parley_store::SYSTEM_DEVICE)
            .map(|device| Authenticated(device, SessionKey(token_hash(token))))
            .ok_or_else(|| ApiError::unauthenticated("unknown or expired session token"))
    }

    /// Checks again that the session behind `device` is still valid: not expired, and its
    /// account not suspended (suspension deletes the account's sessions).
    pub async fn still_valid(&self, device: &Authenticated) -> Result<(), ApiError> {
        match self.store.session(&device.1 .0, now_ms()).await? {
            Some(current) if current.device_id == device.0.device_id && !current.suspended => {
                Ok(())
            }
            _ => Err(ApiError::unauthenticated("the session has ended")),
        }
    }

    pub async fn user_devices(&self, username: &str) -> Result<v1::UserDevices, ApiError> {
        let username = Username::parse(username)
            .map_err(|e| ApiError::new(ErrorCode::InvalidUsername, e.to_string()))?;
        let devices = self.store.user_devices(&username).await?;
        let first = devices
            .first()
            .ok_or_else(|| ApiError::new(ErrorCode::NotFound, "unknown user"))?;
        Ok(v1::UserDevices {
            username: username.to_string(),
            user_id: first.user_id.to_vec(),
            account_key: first.account_key.clone(),
            devices: devices
                .iter()
                .map(|d| v1::DeviceInfo {
                    device_id: d.device_id.to_vec(),
                    signature_key: d.signature_key.clone(),
                })
                .collect(),
        })
    }
}
