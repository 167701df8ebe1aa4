//! Several devices per account (issue 13), against the real server binary on loopback: account
//! keys and device certificates, and a server that lies about an account's devices.

mod common;

use common::*;
use openmls::prelude::tls_codec::Serialize as _;
use openmls::prelude::{CredentialWithKey, KeyPackage};
use openmls_rust_crypto::OpenMlsRustCrypto;
use parley_client::ChatRef;
use parley_mls::certificate::AccountKey;
use parley_mls::{certified_credential, suite};
use parley_protocol::{v1, DeviceId, ErrorCode, Username};

fn user(name: &str) -> Username {
    Username::parse(name).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registration_must_carry_a_certificate_of_its_device_under_its_account_key() {
    let server = TestServer::start();
    let raw = Raw::new(&server.url(), None);
    let device = RawDevice::new();
    let account = AccountKey::generate();
    let other = AccountKey::generate();
    let name = user("alice");
    let key = device.public();
    let refused = [
        (
            "signed by another key",
            device.registration(
                "alice",
                &account,
                &other.certify(&name, device.device_id, &key, 1),
            ),
        ),
        (
            "naming another device",
            device.registration(
                "alice",
                &account,
                &account.certify(&name, DeviceId::from_bytes([9; 16]), &key, 1),
            ),
        ),
        (
            "naming another account",
            device.registration(
                "alice",
                &account,
                &account.certify(&user("mallory"), device.device_id, &key, 1),
            ),
        ),
        (
            "naming another key",
            device.registration(
                "alice",
                &account,
                &account.certify(&name, device.device_id, &[7; 32], 1),
            ),
        ),
    ];
    for (why, request) in refused {
        let result: Result<v1::RegisterResponse, _> = raw.post("/v1/accounts", &request).await;
        let (status, code, message) = result.expect_err(why);
        assert_eq!(
            (status, code),
            (401, ErrorCode::Unauthenticated),
            "{why}: {message}"
        );
    }
    let mut garbled = device.registration(
        "alice",
        &account,
        &account.certify(&name, device.device_id, &key, 1),
    );
    garbled.certificate.truncate(20);
    let result: Result<v1::RegisterResponse, _> = raw.post("/v1/accounts", &garbled).await;
    assert_eq!(result.unwrap_err().1, ErrorCode::Malformed);
    let mut unnamed = device.registration(
        "alice",
        &account,
        &account.certify(&name, device.device_id, &key, 1),
    );
    unnamed.device_id.clear();
    let result: Result<v1::RegisterResponse, _> = raw.post("/v1/accounts", &unnamed).await;
    assert_eq!(result.unwrap_err().1, ErrorCode::Malformed);

    let good = device.registration(
        "alice",
        &account,
        &account.certify(&name, device.device_id, &key, 1),
    );
    let _: v1::RegisterResponse = raw.post("/v1/accounts", &good).await.unwrap();
    let devices: v1::UserDevices = {
        let session = device.login(&server.url()).await;
        session.get("/v1/users/alice").await.unwrap()
    };
    assert_eq!(devices.account_key, account.public().to_bytes().to_vec());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_takes_only_key_packages_certified_by_the_accounts_own_key() {
    let server = TestServer::start();
    let device = RawDevice::new();
    let account = AccountKey::generate();
    let name = user("alice");
    let certificate = account.certify(&name, device.device_id, &device.public(), 1);
    let raw = Raw::new(&server.url(), None);
    let _: v1::RegisterResponse = raw
        .post(
            "/v1/accounts",
            &device.registration("alice", &account, &certificate),
        )
        .await
        .unwrap();
    let session = device.login(&server.url()).await;

    // Self-consistent, but under a key the account never registered.
    let stranger = AccountKey::generate();
    let foreign = stranger.certify(&name, device.device_id, &device.public(), 1);
    let upload = v1::UploadKeyPackages {
        key_packages: vec![device.key_package(&stranger, &foreign)],
        last_resort: None,
    };
    let result: Result<v1::KeyPackageCount, _> = session.post("/v1/keypackages", &upload).await;
    let (_, code, message) = result.unwrap_err();
    assert_eq!(code, ErrorCode::InvalidKeyPackage);
    assert!(message.contains("account's key"), "{message}");

    let upload = v1::UploadKeyPackages {
        key_packages: vec![device.key_package(&account, &certificate)],
        last_resort: None,
    };
    let count: v1::KeyPackageCount = session.post("/v1/keypackages", &upload).await.unwrap();
    assert_eq!(count.one_time_remaining, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_the_server_adds_to_an_account_is_refused_by_a_client_that_knows_the_account() {
    let server = TestServer::start();
    let alice = Device::register(&server.url(), "alice").await;
    let bob = Device::register(&server.url(), "bob").await;
    // Bob knows alice: their 1:1 chat pinned her account key.
    bob.client
        .send_text(&ChatRef::Direct(user("alice")), "hi")
        .await
        .unwrap();
    alice.client.sync().await.unwrap();
    let number = bob.client.safety_number(&user("alice")).unwrap();
    assert_eq!(
        number,
        {
            let mut theirs = alice.client.safety_number(&user("bob")).unwrap();
            theirs.peer = "alice".into();
            theirs
        },
        "both sides compute one number"
    );

    // A device under an account key the server made up.
    let fake = RawDevice::new();
    let made_up = AccountKey::generate();
    let certificate = made_up.certify(&user("alice"), fake.device_id, &fake.public(), 1);
    plant_device(
        &server,
        "alice",
        &fake.key_package(&made_up, &certificate),
        &fake,
    );
    let err = bob
        .client
        .create_group("team", &[user("alice")])
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("alice's account identity is not the one you first saw"),
        "{err}"
    );
    assert!(
        bob.client
            .history(&ChatRef::Group("team".into()), 10)
            .map(|h| h.is_empty())
            .unwrap_or(true),
        "no group was made with the planted device"
    );

    // A device that claims alice's real account key, with a certificate the server forged.
    let forged = RawDevice::new();
    let real_key = {
        let devices: v1::UserDevices = Raw::new(&server.url(), bob.client.api().token())
            .get("/v1/users/alice")
            .await
            .unwrap();
        devices.account_key
    };
    let stolen_identity = AccountKey::generate();
    let certificate =
        stolen_identity.certify(&user("alice"), forged.device_id, &forged.public(), 1);
    let mut package_credential_key = [0u8; 32];
    package_credential_key.copy_from_slice(&real_key);
    let credential = CredentialWithKey {
        credential: certified_credential(
            &parley_mls::certificate::AccountPublicKey::from_bytes(package_credential_key),
            &certificate,
        ),
        signature_key: forged.public().into(),
    };
    let ciphersuite = suite::DEFAULT_CIPHERSUITE;
    let package = KeyPackage::builder()
        .leaf_node_capabilities(suite::leaf_capabilities(ciphersuite))
        .build(
            ciphersuite,
            &OpenMlsRustCrypto::default(),
            &forged.signer,
            credential,
        )
        .unwrap()
        .key_package()
        .tls_serialize_detached()
        .unwrap();
    let conn = server.database();
    conn.execute(
        "DELETE FROM key_packages WHERE device_id = ?1",
        [fake.device_id.to_vec()],
    )
    .unwrap();
    conn.execute(
        "DELETE FROM devices WHERE id = ?1",
        [fake.device_id.to_vec()],
    )
    .unwrap();
    drop(conn);
    plant_device(&server, "alice", &package, &forged);
    let err = bob
        .client
        .create_group("team", &[user("alice")])
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("not signed by this account's key"),
        "{err}"
    );

    // Alice's own device still works with bob once the planted device is gone.
    let conn = server.database();
    conn.execute(
        "DELETE FROM key_packages WHERE device_id = ?1",
        [forged.device_id.to_vec()],
    )
    .unwrap();
    conn.execute(
        "DELETE FROM devices WHERE id = ?1",
        [forged.device_id.to_vec()],
    )
    .unwrap();
    drop(conn);
    bob.client
        .create_group("team", &[user("alice")])
        .await
        .unwrap();
    bob.client
        .send_text(&ChatRef::Group("team".into()), "still us")
        .await
        .unwrap();
    let received = alice.client.sync().await.unwrap();
    assert!(
        received.iter().any(|m| m.text == "still us"),
        "{received:?}"
    );
}

/// A member that updates its own leaf to claim another account (same signature key, a
/// certificate for bob under a key it made) would take bob's place and roles: refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_cannot_relabel_its_leaf_as_another_account() {
    let server = TestServer::start();
    let alice = Device::register(&server.url(), "alice").await;
    let bob = Device::register(&server.url(), "bob").await;
    bob.client
        .create_group("team", &[user("alice")])
        .await
        .unwrap();
    alice.client.sync().await.unwrap();
    let commit = with_stored_group(&alice, "team", |group, provider, signer| {
        let made_up = AccountKey::generate();
        let certificate = made_up.certify(
            &user("bob"),
            alice.client.device_id(),
            &signer.to_public_vec(),
            1,
        );
        let credential = CredentialWithKey {
            credential: certified_credential(&made_up.public(), &certificate),
            signature_key: signer.to_public_vec().into(),
        };
        let parameters = openmls::prelude::LeafNodeParameters::builder()
            .with_credential_with_key(credential)
            .build();
        group
            .self_update(provider, signer, parameters)
            .unwrap()
            .commit()
            .tls_serialize_detached()
            .unwrap()
    });
    let raw = Raw::new(&server.url(), alice.client.api().token());
    let submit = v1::Submit {
        message_id: vec![7; 16],
        mls_message: commit,
        welcome: None,
        expires_in_ms: 0,
    };
    let result: Result<v1::SubmitResponse, _> = raw.post("/v1/messages", &submit).await;
    let (status, code, message) = result.unwrap_err();
    assert_eq!((status, code), (403, ErrorCode::Forbidden), "{message}");
    assert!(
        message.contains("same device of the same account"),
        "{message}"
    );
    // The group goes on as it was.
    alice
        .client
        .send_text(&ChatRef::Group("team".into()), "still alice")
        .await
        .unwrap();
    let received = bob.client.sync().await.unwrap();
    assert!(received
        .iter()
        .any(|m| m.text == "still alice" && m.sender == "alice"));
}
