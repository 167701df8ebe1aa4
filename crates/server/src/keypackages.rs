//! The KeyPackage directory: devices upload single-use KeyPackages plus one last-resort package;
//! others claim one per device to add that device to a group while it is offline.

use std::sync::Arc;

use openmls::prelude::tls_codec::Deserialize;
use openmls::prelude::{KeyPackage, KeyPackageIn, ProtocolVersion};
use openmls_rust_crypto::RustCrypto;
use parley_mls::CertifiedDevice;
use parley_protocol::{limits, v1, ErrorCode, Username};
use parley_store::{KeyPackageCount, Store};
use prost::Message as _;

use crate::accounts::Authenticated;
use crate::ApiError;

pub struct KeyPackages {
    store: Arc<dyn Store>,
    crypto: RustCrypto,
}

fn count_to_wire(count: KeyPackageCount) -> v1::KeyPackageCount {
    v1::KeyPackageCount {
        one_time_remaining: count.one_time,
        has_last_resort: count.has_last_resort,
        rotation_waiting: false,
    }
}

impl KeyPackages {
    pub fn new(store: Arc<dyn Store>) -> Self {
        KeyPackages {
            store,
            crypto: RustCrypto::default(),
        }
    }

    /// Checks that a KeyPackage parses, is signed by its leaf key, belongs to the uploading
    /// device (identity and signature key) and is of a suite Parley speaks.
    fn validate(
        &self,
        device: &Authenticated,
        bytes: &[u8],
        last_resort: bool,
    ) -> Result<KeyPackage, ApiError> {
        if bytes.len() > limits::MAX_KEY_PACKAGE_BYTES {
            return Err(ApiError::new(ErrorCode::TooLarge, "key package too large"));
        }
        let invalid = |why: &str| {
            ApiError::new(
                ErrorCode::InvalidKeyPackage,
                format!("invalid key package: {why}"),
            )
        };
        let parsed =
            KeyPackageIn::tls_deserialize_exact(bytes).map_err(|_| invalid("does not parse"))?;
        let package = parsed
            .validate(&self.crypto, ProtocolVersion::Mls10)
            .map_err(|e| invalid(&format!("does not verify ({e})")))?;
        let certified = CertifiedDevice::verify_leaf(package.leaf_node())
            .map_err(|e| invalid(&e.to_string()))?;
        if certified.account_key.to_bytes().as_slice() != device.0.account_key.as_slice() {
            return Err(invalid("not certified by the account's key"));
        }
        let identity = certified.identity;
        if identity.device_id != device.0.device_id || identity.username != device.0.username {
            return Err(invalid("credential names another device"));
        }
        if package.leaf_node().signature_key().as_slice() != device.0.signature_key.as_slice() {
            return Err(invalid("signature key is not the device's"));
        }
        if package.last_resort() != last_resort {
            return Err(invalid("last-resort marking does not match its slot"));
        }
        if parley_mls::suite::DEFAULT_CIPHERSUITE != package.ciphersuite()
            && parley_mls::suite::CLASSIC_X25519 != package.ciphersuite()
        {
            return Err(invalid("unsupported ciphersuite"));
        }
        Ok(package)
    }

    pub async fn upload(
        &self,
        device: &Authenticated,
        request: v1::UploadKeyPackages,
    ) -> Result<v1::KeyPackageCount, ApiError> {
        if request.key_packages.len() > limits::MAX_KEY_PACKAGES_PER_UPLOAD {
            return Err(ApiError::new(
                ErrorCode::TooLarge,
                "too many key packages in one upload",
            ));
        }
        for package in &request.key_packages {
            self.validate(device, package, false)?;
        }
        if let Some(package) = &request.last_resort {
            self.validate(device, package, true)?;
        }
        let count = self
            .store
            .add_key_packages(
                device.0.device_id,
                request.key_packages,
                request.last_resort,
            )
            .await?;
        Ok(count_to_wire(count))
    }

    /// Also says whether a new account key waits for the device: it must take that up before
    /// its KeyPackages are accepted again.
    pub async fn count(&self, device: &Authenticated) -> Result<v1::KeyPackageCount, ApiError> {
        let rotation_waiting = self
            .store
            .rotation_keys(device.0.device_id)
            .await?
            .is_some();
        Ok(v1::KeyPackageCount {
            rotation_waiting,
            ..count_to_wire(self.store.key_package_count(device.0.device_id).await?)
        })
    }

    /// Up to `count` KeyPackages of another device of the caller's own account, one-time ones
    /// first, then its last-resort one as often as needed (it stays valid).
    pub async fn claim_own(
        &self,
        claimer: &Authenticated,
        request: v1::ClaimOwnKeyPackages,
    ) -> Result<v1::ClaimResponse, ApiError> {
        let device = parley_protocol::DeviceId::from_slice(&request.device_id)
            .map_err(|e| ApiError::malformed(e.to_string()))?;
        let count = request.count.min(limits::MAX_FETCH_ITEMS);
        let record = self.store.device(device).await?;
        let ours = record
            .as_ref()
            .is_some_and(|r| r.user_id == claimer.0.user_id && r.device_id != claimer.0.device_id);
        if !ours {
            return Err(ApiError::new(
                ErrorCode::NotFound,
                "no such other device in this account",
            ));
        }
        let mut key_packages = Vec::new();
        for _ in 0..count {
            match self.store.claim_key_package(device).await? {
                Some(claimed) => {
                    let last_resort = claimed.last_resort;
                    key_packages.push(v1::ClaimedKeyPackage {
                        username: claimer.0.username.to_string(),
                        device_id: device.to_vec(),
                        key_package: claimed.data,
                        last_resort,
                    });
                    if last_resort {
                        // The last-resort package is all that is left: it serves every chat.
                        break;
                    }
                }
                None => break,
            }
        }
        // A device that has taken up no rotation since its KeyPackages went with the first one
        // is sealed to again through the KeyPackage that rotation used.
        if key_packages.is_empty() {
            let sealed_to = self
                .store
                .rotation_keys(device)
                .await?
                .and_then(|sealed| v1::SealedRotationKeys::decode(sealed.as_slice()).ok())
                .map(|sealed| sealed.key_package)
                .filter(|package| !package.is_empty());
            if let Some(key_package) = sealed_to {
                key_packages.push(v1::ClaimedKeyPackage {
                    username: claimer.0.username.to_string(),
                    device_id: device.to_vec(),
                    key_package,
                    last_resort: true,
                });
            }
        }
        Ok(v1::ClaimResponse { key_packages })
    }

    /// One KeyPackage for every device of every named user, each user once however often
    /// named, in one transaction: a claim that fails for one user takes nothing from the
    /// others. A user none of whose devices has a package left is an error, so that nobody is
    /// silently left out of a group. `admit` is asked once per user before anything is taken
    /// (the per-account claim rate). The claiming device is never claimed (a device adds its
    /// account's other devices to the groups it makes); its account alone with no other device
    /// contributes nothing.
    pub async fn claim(
        &self,
        claimer: &Authenticated,
        request: v1::ClaimKeyPackages,
        admit: impl Fn(&parley_protocol::UserId, &Username) -> Result<(), ApiError>,
    ) -> Result<v1::ClaimResponse, ApiError> {
        if request.usernames.len() > limits::MAX_CLAIM_USERNAMES {
            return Err(ApiError::new(
                ErrorCode::TooLarge,
                "too many usernames in one claim",
            ));
        }
        let mut usernames = Vec::with_capacity(request.usernames.len());
        for name in &request.usernames {
            let username = Username::parse(name)
                .map_err(|e| ApiError::new(ErrorCode::InvalidUsername, e.to_string()))?;
            if !usernames.contains(&username) {
                usernames.push(username);
            }
        }
        let mut users = Vec::with_capacity(usernames.len());
        let mut claimed_names = Vec::with_capacity(usernames.len());
        for username in usernames {
            let devices = self.store.user_devices(&username).await?;
            let first = devices.first().ok_or_else(|| {
                ApiError::new(ErrorCode::NotFound, format!("unknown user {username}"))
            })?;
            // The claim rate protects an account's packages from others; a device claiming its
            // own account's (for the chats it makes) is not limited by it.
            if first.user_id != claimer.0.user_id {
                admit(&first.user_id, &username)?;
            }
            let others: Vec<_> = devices
                .iter()
                .map(|d| d.device_id)
                .filter(|d| *d != claimer.0.device_id)
                .collect();
            if !others.is_empty() {
                users.push(others);
                claimed_names.push(username);
            }
        }
        let usernames = claimed_names;
        let claimed = match self.store.claim_key_packages(users).await {
            Ok(claimed) => claimed,
            Err(parley_store::StoreError::NoKeyPackage(index)) => {
                let username = usernames.get(index).map_or("a user", |u| u.as_str());
                return Err(ApiError::new(
                    ErrorCode::NoKeyPackage,
                    format!("{username} has no key package left"),
                ));
            }
            Err(e) => return Err(e.into()),
        };
        let key_packages = usernames
            .iter()
            .zip(claimed)
            .flat_map(|(username, packages)| {
                packages
                    .into_iter()
                    .map(move |claimed| v1::ClaimedKeyPackage {
                        username: username.to_string(),
                        device_id: claimed.device_id.to_vec(),
                        key_package: claimed.data,
                        last_resort: claimed.last_resort,
                    })
            })
            .collect();
        Ok(v1::ClaimResponse { key_packages })
    }
}
