//! A hand-rolled device, for tests that play a lying server: its own keys, KeyPackages under
//! any account key and certificate, and a way to plant it in the server's database.

use openmls::prelude::tls_codec::Serialize as _;
use openmls::prelude::{CredentialWithKey, KeyPackage};
use openmls_basic_credential::SignatureKeyPair;
use openmls_rust_crypto::OpenMlsRustCrypto;
use openmls_traits::signatures::Signer as _;
use parley_mls::certificate::{AccountKey, DeviceCertificate};
use parley_mls::{certified_credential, suite};
use parley_protocol::{v1, DeviceId};

use super::{Raw, TestServer};

/// A device's keys as a hand-rolled client holds them.
pub struct RawDevice {
    pub signer: SignatureKeyPair,
    pub device_id: DeviceId,
}

impl RawDevice {
    pub fn new() -> RawDevice {
        RawDevice {
            signer: SignatureKeyPair::new(suite::DEFAULT_CIPHERSUITE.signature_algorithm())
                .unwrap(),
            device_id: DeviceId::from_bytes(rand_bytes()),
        }
    }

    pub fn public(&self) -> Vec<u8> {
        self.signer.to_public_vec()
    }

    pub fn registration(
        &self,
        username: &str,
        account_key: &AccountKey,
        certificate: &DeviceCertificate,
    ) -> v1::RegisterRequest {
        v1::RegisterRequest {
            username: username.into(),
            signature_key: self.public(),
            proof: self
                .signer
                .sign(&v1::register_proof_input(username, &self.public()))
                .unwrap(),
            device_id: self.device_id.to_vec(),
            account_key: account_key.public().to_bytes().to_vec(),
            certificate: certificate.encode(),
            restore: false,
            restore_secret: Vec::new(),
            backup_id: Vec::new(),
        }
    }

    pub async fn login(&self, server: &str) -> Raw {
        let raw = Raw::new(server, None);
        let challenge: v1::ChallengeResponse = raw
            .post(
                "/v1/auth/challenge",
                &v1::ChallengeRequest {
                    device_id: self.device_id.to_vec(),
                },
            )
            .await
            .unwrap();
        let signature = self
            .signer
            .sign(&v1::login_signature_input(
                self.device_id.as_bytes(),
                &challenge.challenge,
            ))
            .unwrap();
        let login: v1::LoginResponse = raw
            .post(
                "/v1/auth/login",
                &v1::LoginRequest {
                    device_id: self.device_id.to_vec(),
                    challenge: challenge.challenge,
                    signature,
                },
            )
            .await
            .unwrap();
        Raw::new(server, Some(login.token))
    }

    /// A KeyPackage of this device whose credential carries `certificate` under `account_key`.
    pub fn key_package(
        &self,
        account_key: &AccountKey,
        certificate: &DeviceCertificate,
    ) -> Vec<u8> {
        let credential = CredentialWithKey {
            credential: certified_credential(&account_key.public(), certificate),
            signature_key: self.public().into(),
        };
        let ciphersuite = suite::DEFAULT_CIPHERSUITE;
        KeyPackage::builder()
            .leaf_node_capabilities(suite::leaf_capabilities(ciphersuite))
            .build(
                ciphersuite,
                &OpenMlsRustCrypto::default(),
                &self.signer,
                credential,
            )
            .unwrap()
            .key_package()
            .tls_serialize_detached()
            .unwrap()
    }
}

pub fn rand_bytes<const N: usize>() -> [u8; N] {
    use openmls_traits::{random::OpenMlsRand as _, OpenMlsProvider as _};
    OpenMlsRustCrypto::default().rand().random_array().unwrap()
}

/// Plays a server that adds a device to alice's account: a row in its database with a
/// KeyPackage whose certificate the server made, as it may make anything but alice's key.
pub fn plant_device(server: &TestServer, username: &str, package: &[u8], device: &RawDevice) {
    let conn = server.database();
    conn.execute(
        "INSERT INTO devices (id, user_id, signature_key, created_at)
         VALUES (?1, (SELECT id FROM users WHERE username = ?2), ?3, 0)",
        rusqlite::params![device.device_id.to_vec(), username, device.public()],
    )
    .unwrap();
    conn.execute(
        "INSERT INTO key_packages (device_id, last_resort, data) VALUES (?1, 1, ?2)",
        rusqlite::params![device.device_id.to_vec(), package],
    )
    .unwrap();
}
