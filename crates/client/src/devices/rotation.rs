//! Rotating the account key when a device is revoked (docs/multi-device.md, "Revocation"). The
//! revoked device knew the account key; with a server that helps, it could otherwise go on
//! certifying devices in the account's name.
//!
//! The revoking device makes a new account key, signs the rotation with the old and the new key,
//! and seals the new key with a new certificate to each remaining device (HPKE to the init key of
//! one of its KeyPackages). The server swaps the account's key in the revocation's transaction.
//! Every device then re-certifies its leaf in each chat by a commit whose authenticated data
//! carries the chain of rotations, so that members move their pin along it.

use std::collections::HashMap;

use openmls::prelude::tls_codec::{Deserialize as _, Serialize as _};
use openmls::prelude::*;
use openmls_traits::signatures::Signer as _;
use openmls_traits::storage::StorageProvider as _;
use openmls_traits::types::HpkeCiphertext;
use parley_mls::certificate::{AccountKey, DeviceCertificate};
use parley_mls::rotation::{self, AccountRotation};
use parley_mls::{CertifiedDevice, DeviceIdentity};
use parley_protocol::{v1, DeviceId};
use prost::Message as _;

use crate::client::{AccountKeys, Client};
use crate::db::{self, now_ms, ChatState};
use crate::error::{mls_error, ClientError};
use crate::groups::load_group;
use crate::provider::TxProvider;

const SEAL_LABEL: &[u8] = b"parley/v1/rotation-keys\0";

/// The HPKE info: the rotation the keys belong to and the device they are for, so that sealed
/// keys cannot be replayed to another device or with another rotation.
fn seal_info(statement: &AccountRotation, device: DeviceId) -> Vec<u8> {
    [SEAL_LABEL, &statement.encode(), device.as_bytes()].concat()
}

fn protocol(e: impl std::fmt::Display) -> ClientError {
    ClientError::Protocol(format!("account key rotation: {e}"))
}

/// A rotation made for a revocation, kept on this device until the server has taken it.
pub(crate) struct PreparedRotation {
    pub(crate) new_key: AccountKey,
    pub(crate) certificate: DeviceCertificate,
    pub(crate) statement: AccountRotation,
    pub(crate) sealed: Vec<v1::SealedRotationKeys>,
}

impl Client {
    /// A new account key for a revocation, sealed to every remaining device but those `leaving`
    /// that this device knows from a chat (its leaf there names its signature key, which the
    /// server cannot change) and that has a KeyPackage left. `None` for an account from before
    /// multi-device, which has no separate account key to rotate.
    pub(crate) async fn prepare_rotation(
        &self,
        leaving: &[DeviceId],
    ) -> Result<Option<PreparedRotation>, ClientError> {
        let keys = self.keys();
        if keys.certificate.is_none() {
            return Ok(None);
        }
        let now = now_ms() as u64;
        let new_key = AccountKey::generate();
        let statement = keys.account_key.rotate_to(&new_key, self.username(), now);
        let own_key = self.signer.to_public_vec();
        let certificate = new_key.certify(self.username(), self.device_id(), &own_key, now);
        let known = self.own_devices_in_chats(false)?;
        let list: v1::DeviceList = self.authed(|| self.api.get("/v1/devices")).await?;
        let mut sealed = Vec::new();
        for device in list.devices {
            let Ok(id) = DeviceId::from_slice(&device.device_id) else {
                continue;
            };
            if leaving.contains(&id) || id == self.device_id() {
                continue;
            }
            // A device the server lists but no chat of ours shows could be the server's own.
            let Some(signature_key) = known.get(&id) else {
                tracing::warn!(
                    "a listed device of the account is in none of our chats; it gets no new \
                     account key and must be linked again"
                );
                continue;
            };
            match self
                .seal_rotation_keys(id, signature_key, &new_key, &statement, now)
                .await
            {
                Ok(Some(keys)) => sealed.push(keys),
                Ok(None) => tracing::warn!(
                    "a device of the account has no KeyPackage of its own key left for the new \
                     account key; it must be linked again"
                ),
                // One device that cannot be sealed to does not hold up the revocation.
                Err(e) => tracing::warn!(error = %e, "a device gets no new account key"),
            }
        }
        Ok(Some(PreparedRotation {
            new_key,
            certificate,
            statement,
            sealed,
        }))
    }

    /// The account's other devices as our chats show them (device id and signature key); the
    /// ones we know revoked only `with_revoked` (a restore removes those that are left).
    pub(crate) fn own_devices_in_chats(
        &self,
        with_revoked: bool,
    ) -> Result<HashMap<DeviceId, Vec<u8>>, ClientError> {
        let conn = self.db();
        let provider = TxProvider::new(&self.crypto, &conn);
        let mut devices = HashMap::new();
        for chat in db::all_chats(&conn)? {
            let Some(group) = load_group(&provider, &chat.group_id)? else {
                continue;
            };
            for member in group.members() {
                let Ok(id) = DeviceIdentity::from_credential(&member.credential) else {
                    continue;
                };
                if id.username == *self.username()
                    && id.device_id != self.device_id()
                    && (with_revoked
                        || !db::is_revoked(&conn, id.username.as_str(), id.device_id.as_bytes())?)
                {
                    devices.insert(id.device_id, member.signature_key);
                }
            }
        }
        Ok(devices)
    }

    async fn seal_rotation_keys(
        &self,
        device: DeviceId,
        signature_key: &[u8],
        new_key: &AccountKey,
        statement: &AccountRotation,
        now: u64,
    ) -> Result<Option<v1::SealedRotationKeys>, ClientError> {
        let request = v1::ClaimOwnKeyPackages {
            device_id: device.to_vec(),
            count: 1,
        };
        let claimed: v1::ClaimResponse = self
            .authed(|| self.api.post("/v1/keypackages/claim-own", &request, true))
            .await?;
        let Some(claimed) = claimed.key_packages.first() else {
            return Ok(None);
        };
        if claimed.device_id != device.to_vec() || claimed.username != self.username().as_str() {
            return Err(protocol(
                "the server handed out another device's key package",
            ));
        }
        // Only to the device's own key, as our chats show it: a KeyPackage the server or a
        // revoked device made, even one certified under the old account key, gets nothing.
        // (Not checked against our pin: it may be one the previous rotation sealed to.)
        let package = KeyPackageIn::tls_deserialize_exact(claimed.key_package.as_slice())
            .map_err(|_| protocol("the key package does not parse"))?
            .validate(&self.crypto, ProtocolVersion::Mls10)
            .map_err(|e| protocol(format!("the key package does not verify: {e}")))?;
        let certified = CertifiedDevice::verify_leaf(package.leaf_node()).map_err(protocol)?;
        if package.leaf_node().signature_key().as_slice() != signature_key
            || certified.identity != DeviceIdentity::new(self.username().clone(), device)
            || package.ciphersuite() != self.ciphersuite
        {
            return Err(protocol(
                "the key package is not of the device's own signature key",
            ));
        }
        let certificate = new_key.certify(self.username(), device, signature_key, now);
        let keys = v1::RotationKeys {
            account_secret: new_key.to_secret_bytes().to_vec(),
            certificate: certificate.encode(),
        };
        let sealed = self
            .crypto
            .hpke_seal(
                self.ciphersuite.hpke_config(),
                package.hpke_init_key().as_slice(),
                &seal_info(statement, device),
                &[],
                &keys.encode_to_vec(),
            )
            .map_err(|e| ClientError::Mls(format!("sealing the new account key: {e:?}")))?;
        let key_package_ref = package
            .hash_ref(&self.crypto)
            .map_err(mls_error)?
            .tls_serialize_detached()
            .map_err(mls_error)?;
        let mut keys = v1::SealedRotationKeys {
            device_id: device.to_vec(),
            key_package_ref,
            kem_output: sealed.kem_output.as_slice().to_vec(),
            ciphertext: sealed.ciphertext.as_slice().to_vec(),
            key_package: claimed.key_package.clone(),
            sealed_by: self.device_id().to_vec(),
            signature: Vec::new(),
        };
        keys.signature = self
            .signer
            .sign(&v1::rotation_keys_signature_input(
                &statement.encode(),
                &keys,
            ))
            .map_err(|e| ClientError::Mls(format!("signing the sealed key: {e:?}")))?;
        Ok(Some(keys))
    }

    /// Holds the new account key from now on (its rotation accepted by the server), and marks
    /// this device's leaves for re-certification.
    pub(crate) fn hold_new_key(
        &self,
        new_key: AccountKey,
        certificate: DeviceCertificate,
        rotations: &[Vec<u8>],
    ) -> Result<(), ClientError> {
        let conn = self.db();
        let tx = conn.unchecked_transaction()?;
        db::set_account_keys(
            &tx,
            &new_key.to_secret_bytes(),
            &certificate.encode(),
            rotations,
        )?;
        db::repin(
            &tx,
            self.username().as_str(),
            &new_key.public().to_bytes(),
            now_ms(),
        )?;
        db::add_followed(&tx, self.username().as_str(), rotations)?;
        tx.commit()?;
        self.set_keys(AccountKeys {
            account_key: new_key,
            certificate: Some(certificate),
        });
        Ok(())
    }

    /// Takes up the account's new key that another device of the account sealed for this one
    /// (the server says one waits). The chain must lead from the key this device holds, the
    /// sealing device must be one of ours that a chat of ours shows (not revoked), and the new
    /// key must be where our own pin leads.
    pub(crate) async fn adopt_rotation(&self) -> Result<(), ClientError> {
        let waiting: v1::WaitingRotation = self
            .authed(|| self.api.get("/v1/devices/self/rotation"))
            .await?;
        let chain = rotation::decode_chain(&waiting.rotations).map_err(protocol)?;
        let latest = chain.last().ok_or_else(|| protocol("no rotation"))?;
        let held = self.account_key().public();
        // Taken up already (the answer to "done" was lost).
        if held == latest.new_key {
            return self.rotation_done().await;
        }
        rotation::follow(self.username(), &held, &chain, &latest.new_key).map_err(protocol)?;
        let own_pin = db::pinned_account_key(&self.db(), self.username().as_str())?.unwrap_or(held);
        if own_pin != held
            && own_pin != latest.new_key
            && rotation::follow(self.username(), &own_pin, &chain, &latest.new_key).is_err()
        {
            return Err(protocol(
                "the offered key is not the one our account rotated to",
            ));
        }
        let sealed = waiting.keys.ok_or_else(|| {
            protocol("no key was sealed for this device: link it to the account again")
        })?;
        self.check_sealer(&sealed, latest)?;
        let keys = self.open_rotation_keys(&sealed, latest)?;
        let secret: [u8; 32] = keys
            .account_secret
            .as_slice()
            .try_into()
            .map_err(|_| protocol("the account key is not 32 bytes"))?;
        let new_key = AccountKey::from_secret_bytes(&secret);
        let certificate = DeviceCertificate::decode(&keys.certificate).map_err(protocol)?;
        let own_key = self.signer.to_public_vec();
        if new_key.public() != latest.new_key
            || certificate.verify(&latest.new_key).is_err()
            || certificate.username != *self.username()
            || certificate.device != self.device_id()
            || certificate.device_key != own_key
        {
            return Err(protocol(
                "the sealed key or certificate does not match the rotation",
            ));
        }
        self.hold_new_key(new_key, certificate, &waiting.rotations)?;
        self.rotation_done().await?;
        tracing::info!("this device now holds the account's new key");
        Ok(())
    }

    async fn rotation_done(&self) -> Result<(), ClientError> {
        let _: v1::WaitingRotation = self
            .authed(|| {
                self.api.post(
                    "/v1/devices/self/rotation/done",
                    &v1::Ack { up_to: 0 },
                    true,
                )
            })
            .await?;
        Ok(())
    }

    /// The sealed keys are signed by a device of ours that a chat of ours shows.
    fn check_sealer(
        &self,
        sealed: &v1::SealedRotationKeys,
        statement: &AccountRotation,
    ) -> Result<(), ClientError> {
        let sealer = DeviceId::from_slice(&sealed.sealed_by).map_err(protocol)?;
        let known = self.own_devices_in_chats(false)?;
        let key = known
            .get(&sealer)
            .ok_or_else(|| protocol("sealed by a device none of our chats shows"))?;
        self.crypto
            .verify_signature(
                self.ciphersuite.signature_algorithm(),
                &v1::rotation_keys_signature_input(&statement.encode(), sealed),
                key,
                &sealed.signature,
            )
            .map_err(|_| protocol("the sealed key is not signed by the device that sealed it"))
    }

    fn open_rotation_keys(
        &self,
        sealed: &v1::SealedRotationKeys,
        statement: &AccountRotation,
    ) -> Result<v1::RotationKeys, ClientError> {
        let hash_ref = KeyPackageRef::tls_deserialize_exact(sealed.key_package_ref.as_slice())
            .map_err(|_| protocol("the key package reference does not parse"))?;
        let conn = self.db();
        let provider = TxProvider::new(&self.crypto, &conn);
        let bundle: KeyPackageBundle = provider
            .storage()
            .key_package(&hash_ref)
            .map_err(mls_error)?
            .ok_or_else(|| protocol("sealed to a key package this device does not have"))?;
        let ciphertext = HpkeCiphertext {
            kem_output: sealed.kem_output.clone().into(),
            ciphertext: sealed.ciphertext.clone().into(),
        };
        let plaintext = self
            .crypto
            .hpke_open(
                self.ciphersuite.hpke_config(),
                &ciphertext,
                bundle.init_private_key(),
                &seal_info(statement, self.device_id()),
                &[],
            )
            .map_err(|_| protocol("the sealed key does not open"))?;
        v1::RotationKeys::decode(plaintext.as_slice()).map_err(protocol)
    }

    /// Settles a rotation this device made for a revocation but did not see answered (it
    /// stopped on the way): holds the new key if the server took it, else forgets it.
    pub(crate) async fn finish_pending_rotation(&self) -> Result<(), ClientError> {
        let Some(pending) = db::pending_rotation(&self.db())? else {
            return Ok(());
        };
        let path = format!("/v1/accounts/{}/rotations", self.username());
        let chain: v1::AccountRotations = self.authed(|| self.api.get(&path)).await?;
        if chain.rotations.contains(&pending.statement) {
            let secret: [u8; 32] = pending
                .secret
                .as_slice()
                .try_into()
                .map_err(|_| protocol("the kept account key is not 32 bytes"))?;
            let certificate = DeviceCertificate::decode(&pending.certificate).map_err(protocol)?;
            self.hold_new_key(
                AccountKey::from_secret_bytes(&secret),
                certificate,
                &[pending.statement],
            )?;
            // The revocation went with it: `devices revoke ID` finishes the removals.
            db::insert_revoked(
                &self.db(),
                self.username().as_str(),
                &pending.revoked,
                now_ms(),
            )?;
        }
        db::set_pending_rotation(&self.db(), None)
    }

    /// A commit removing `leaves`; after a rotation, it also re-certifies our own leaf (the
    /// server takes no leaf of ours under the old key any more), with `rotation_aad` (from
    /// [`Client::rotation_aad`], read before: the database is held while a commit is built).
    pub(crate) fn commit_removing(
        &self,
        group: &mut MlsGroup,
        provider: &TxProvider<'_>,
        leaves: Vec<LeafNodeIndex>,
        rotation_aad: &[u8],
    ) -> Result<(MlsMessageOut, Option<MlsMessageOut>), ClientError> {
        let current = self.account_key().public();
        let stale = group
            .own_leaf_node()
            .and_then(|leaf| CertifiedDevice::verify_leaf(leaf).ok())
            .is_some_and(|leaf| leaf.account_key != current);
        if !stale {
            let (commit, welcome, _) = group
                .remove_members(provider, &self.signer, &leaves)
                .map_err(mls_error)?;
            return Ok((commit, welcome));
        }
        group.set_aad(rotation_aad.to_vec());
        let parameters = LeafNodeParameters::builder()
            .with_credential_with_key(self.credential())
            .build();
        let built = group
            .commit_builder()
            .propose_removals(leaves)
            .leaf_node_parameters(parameters)
            .load_psks(provider.storage())
            .map_err(mls_error)?
            .build(provider.rand(), provider.crypto(), &self.signer, |_| true)
            .map_err(mls_error)?
            .stage_commit(provider)
            .map_err(mls_error);
        group.set_aad(Vec::new());
        let (commit, welcome, _) = built?.into_messages();
        Ok((commit, welcome))
    }

    /// A device that came to the account after rotations (linked, restored) learns the chain
    /// that leads to the key it holds, for the commits that re-certify its leaves and for
    /// joins into chats whose leaves still carry an older key.
    pub(crate) async fn learn_own_rotations(&self) -> Result<(), ClientError> {
        let path = format!("/v1/accounts/{}/rotations", self.username());
        let chain: v1::AccountRotations = self.authed(|| self.api.get(&path)).await?;
        let Ok(rotations) = rotation::decode_chain(&chain.rotations) else {
            return Ok(());
        };
        // Only the unbroken path that ends at the key we hold.
        let held = self.account_key().public();
        let Some(end) = rotations.iter().rposition(|r| r.new_key == held) else {
            return Ok(());
        };
        let mut start = end;
        while start > 0 && rotations[start - 1].new_key == rotations[start].old_key {
            start -= 1;
        }
        let path: Vec<Vec<u8>> = rotations[start..=end]
            .iter()
            .map(AccountRotation::encode)
            .collect();
        db::add_own_rotations(&self.db(), &path)
    }

    /// The authenticated data of a commit that re-certifies this device's leaf: our rotations.
    pub(crate) fn rotation_aad(&self) -> Result<Vec<u8>, ClientError> {
        Ok(v1::CommitAad {
            rotations: db::own_rotations(&self.db())?,
        }
        .encode_to_vec())
    }

    /// Whether this device's leaf in `group_id` still carries an older account key.
    fn leaf_is_stale(&self, group_id: &[u8]) -> Result<bool, ClientError> {
        let conn = self.db();
        let provider = TxProvider::new(&self.crypto, &conn);
        let current = self.account_key().public();
        Ok(match load_group(&provider, group_id)? {
            Some(group) if group.is_active() => {
                CertifiedDevice::verify_leaf(group.own_leaf_node().ok_or_else(|| {
                    ClientError::Mls("our own leaf is missing from the group".into())
                })?)
                .is_ok_and(|leaf| leaf.account_key != current)
            }
            _ => false,
        })
    }

    /// Re-certifies this device's leaf, by an update commit, in every chat where it still
    /// carries an older account key. A chat that cannot take it now is tried at the next sync.
    pub(crate) async fn recertify_leaves(&self) -> Result<(), ClientError> {
        if !db::recertify_pending(&self.db())? {
            return Ok(());
        }
        let chats: Vec<Vec<u8>> = db::all_chats(&self.db())?
            .into_iter()
            .filter(|c| c.state == ChatState::Active)
            .map(|c| c.group_id)
            .collect();
        let mut all_done = true;
        for group_id in chats {
            if !self.leaf_is_stale(&group_id)? {
                continue;
            }
            let aad = self.rotation_aad()?;
            let result = self
                .run_commit(&group_id, |group, provider| {
                    group.set_aad(aad.clone());
                    let parameters = LeafNodeParameters::builder()
                        .with_credential_with_key(self.credential())
                        .build();
                    let (commit, welcome, _) = group
                        .self_update(provider, &self.signer, parameters)
                        .map_err(mls_error)?
                        .into_messages();
                    Ok((commit, welcome))
                })
                .await;
            if let Err(e) = result {
                tracing::warn!(error = %e, "re-certifying a leaf failed; the next sync tries again");
                all_done = false;
            }
        }
        if all_done {
            db::set_recertify_pending(&self.db(), false)?;
        }
        Ok(())
    }
}
