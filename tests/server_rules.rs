//! Rules the server enforces on its own, even against a client that skips its checks; and how
//! it is reached (TLS, loopback only).

mod common;

use common::*;
use openmls::prelude::LeafNodeIndex;
use parley_client::{ChatRef, Client, ClientOptions};
use parley_protocol::{v1, ErrorCode, Username};
use prost::Message;

fn user(name: &str) -> Username {
    Username::parse(name).unwrap()
}

async fn submit_raw(
    server: &str,
    token: &str,
    mls: Vec<u8>,
    welcome: Option<Vec<u8>>,
) -> Result<v1::SubmitResponse, (ErrorCode, String)> {
    let body = v1::Submit {
        message_id: rand_id(),
        mls_message: mls,
        welcome,
        expires_in_ms: 0,
    }
    .encode_to_vec();
    let response = reqwest::Client::new()
        .post(format!("{server}/v1/messages"))
        .header("content-type", parley_protocol::CONTENT_TYPE)
        .bearer_auth(token)
        .body(body)
        .send()
        .await
        .unwrap();
    let ok = response.status().is_success();
    let bytes = response.bytes().await.unwrap();
    if ok {
        Ok(v1::SubmitResponse::decode(bytes.as_ref()).unwrap())
    } else {
        let error = v1::ErrorBody::decode(bytes.as_ref()).unwrap();
        Err((ErrorCode::from_u32(error.code), error.message))
    }
}

fn rand_id() -> Vec<u8> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    nanos.to_be_bytes().to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_refuses_commits_that_break_the_roles() {
    let server = TestServer::start();
    let alice = Device::register(&server.url(), "alice").await;
    let bob = Device::register(&server.url(), "bob").await;
    let carol = Device::register(&server.url(), "carol").await;
    alice
        .client
        .create_group("rules", &[user("bob"), user("carol")])
        .await
        .unwrap();
    bob.client.sync().await.unwrap();
    carol.client.sync().await.unwrap();
    let epoch = alice
        .client
        .group_state(&ChatRef::Group("rules".into()))
        .unwrap()
        .epoch;

    // Bob is not an admin: removing Carol is refused by the server itself.
    let commit = with_stored_group(&bob, "rules", |group, provider, signer| {
        let carol_leaf = group
            .members()
            .find(|m| {
                parley_mls::DeviceIdentity::from_credential(&m.credential)
                    .is_ok_and(|id| id.username == user("carol"))
            })
            .map(|m| m.index)
            .unwrap_or(LeafNodeIndex::new(2));
        let (commit, _, _) = group
            .remove_members(provider, signer, &[carol_leaf])
            .unwrap();
        commit.to_bytes().unwrap()
    });
    // Submitted by Carol, it is a forged sender.
    let (code, message) = submit_raw(
        &server.url(),
        &carol.client.api().token().unwrap(),
        commit.clone(),
        None,
    )
    .await
    .unwrap_err();
    assert_eq!(code, ErrorCode::Forbidden, "{message}");
    assert!(message.contains("another member"), "{message}");
    let (code, message) = submit_raw(
        &server.url(),
        &bob.client.api().token().unwrap(),
        commit,
        None,
    )
    .await
    .unwrap_err();
    assert_eq!(code, ErrorCode::Forbidden, "{message}");
    assert!(message.contains("admin"), "{message}");

    // Nor may Bob make himself an admin.
    let commit = with_stored_group(&bob, "rules", |group, provider, signer| {
        let roles = parley_mls::Roles::with_admin(user("alice")).with_added_admin(user("bob"));
        let mut extensions = group.extensions().clone();
        extensions.add_or_replace(roles.to_extension()).unwrap();
        let (commit, _, _) = group
            .update_group_context_extensions(provider, extensions, signer)
            .unwrap();
        commit.to_bytes().unwrap()
    });
    let (code, _) = submit_raw(
        &server.url(),
        &bob.client.api().token().unwrap(),
        commit,
        None,
    )
    .await
    .unwrap_err();
    assert_eq!(code, ErrorCode::Forbidden);

    // Nothing moved: the group is where it was, and Alice (admin) can still do both.
    assert_eq!(
        alice
            .client
            .group_state(&ChatRef::Group("rules".into()))
            .unwrap()
            .epoch,
        epoch
    );
    alice
        .client
        .make_admin("rules", &user("bob"))
        .await
        .unwrap();
    bob.client.sync().await.unwrap();
    bob.client
        .remove_members("rules", &[user("carol")])
        .await
        .unwrap();
    alice.client.sync().await.unwrap();
    let state = alice
        .client
        .group_state(&ChatRef::Group("rules".into()))
        .unwrap();
    assert_eq!(state.members, ["alice", "bob"]);
    assert_eq!(state.admins, ["alice", "bob"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_are_capped_at_the_configured_size() {
    let server = TestServer::start_with(&["--max-group-members", "3"]);
    let mut devices = Vec::new();
    for name in ["alice", "bob", "carol", "dave"] {
        devices.push(Device::register(&server.url(), name).await);
    }
    devices[0]
        .client
        .create_group("small", &[user("bob"), user("carol")])
        .await
        .unwrap();
    let err = devices[0]
        .client
        .add_members("small", &[user("dave")])
        .await
        .unwrap_err();
    assert_eq!(err.server_code(), Some(ErrorCode::GroupTooLarge), "{err}");
    assert!(err.to_string().contains("limited to 3"), "{err}");
    // The refused commit was discarded; the group still works.
    devices[0]
        .client
        .send_text(&ChatRef::Group("small".into()), "still fine")
        .await
        .unwrap();
    let received = devices[2].client.sync().await.unwrap();
    // After "alice added you to #small".
    assert_eq!(received.last().unwrap().text, "still fine");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_serves_clients_that_trust_the_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, _) = self_signed_certificate(dir.path());
    let server = TestServer::start_with(&[
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ]);
    let url = format!("https://localhost:{}", server.port);
    let options = ClientOptions {
        ca_cert: Some(cert.clone()),
        ..Default::default()
    };
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let alice = Client::register(a.path(), &url, "alice", options.clone())
        .await
        .unwrap();
    let bob = Client::register(b.path(), &url, "bob", options.clone())
        .await
        .unwrap();
    alice
        .send_text(&ChatRef::Direct(user("bob")), "over tls")
        .await
        .unwrap();
    assert_eq!(bob.sync().await.unwrap()[0].text, "over tls");
    // A client that does not trust the certificate refuses to talk.
    let c = tempfile::tempdir().unwrap();
    let err = Client::register(c.path(), &url, "carol", ClientOptions::default())
        .await
        .err()
        .unwrap();
    assert!(err.is_transient(), "{err}");
}

#[test]
fn without_tls_the_server_refuses_public_addresses() {
    let data = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(BIN)
        .args(["server", "--listen", "0.0.0.0:0", "--data"])
        .arg(data.path())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("without TLS"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_cannot_swap_a_members_leaf_for_an_unregistered_key() {
    use openmls_traits::OpenMlsProvider;
    let server = TestServer::start();
    let alice = Device::register(&server.url(), "alice").await;
    let bob = Device::register(&server.url(), "bob").await;
    let carol = Device::register(&server.url(), "carol").await;
    alice
        .client
        .create_group("swap", &[user("bob"), user("carol")])
        .await
        .unwrap();
    bob.client.sync().await.unwrap();

    // Alice (an admin) removes Carol's leaf and adds one that claims to be Carol's device but
    // carries a key Alice made: an impersonation only the directory check can catch.
    let (commit, welcome) = with_stored_group(&alice, "swap", |group, provider, signer| {
        let ciphersuite = group.ciphersuite();
        let impostor_key =
            openmls_basic_credential::SignatureKeyPair::new(ciphersuite.signature_algorithm())
                .unwrap();
        impostor_key.store(provider.storage()).unwrap();
        let carol_identity =
            parley_mls::DeviceIdentity::new(user("carol"), carol.client.device_id());
        let credential = openmls::prelude::CredentialWithKey {
            credential: carol_identity.to_credential(),
            signature_key: impostor_key.to_public_vec().into(),
        };
        let package = openmls::prelude::KeyPackage::builder()
            .leaf_node_capabilities(parley_mls::suite::leaf_capabilities(ciphersuite))
            .build(ciphersuite, provider, &impostor_key, credential)
            .unwrap()
            .key_package()
            .clone();
        let carol_leaf = group
            .members()
            .find(|m| {
                parley_mls::DeviceIdentity::from_credential(&m.credential)
                    .is_ok_and(|id| id.username == user("carol"))
            })
            .unwrap()
            .index;
        let bundle = group
            .commit_builder()
            .propose_removals([carol_leaf])
            .propose_adds([package])
            .load_psks(provider.storage())
            .unwrap()
            .build(provider.rand(), provider.crypto(), signer, |_| true)
            .unwrap()
            .stage_commit(provider)
            .unwrap();
        let welcome = bundle.to_welcome_msg().unwrap().to_bytes().unwrap();
        let (commit, _, _) = bundle.into_contents();
        (commit.to_bytes().unwrap(), welcome)
    });
    let (code, message) = submit_raw(
        &server.url(),
        &alice.client.api().token().unwrap(),
        commit,
        Some(welcome),
    )
    .await
    .unwrap_err();
    assert_eq!(code, ErrorCode::Forbidden);
    assert!(message.contains("registered identity"), "{message}");
    // Carol is still herself in the group.
    alice
        .client
        .send_text(&ChatRef::Group("swap".into()), "still carol?")
        .await
        .unwrap();
    assert_eq!(
        carol.client.sync().await.unwrap().last().unwrap().text,
        "still carol?"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_configured_web_origins_may_call_the_api_from_a_browser() {
    let server = TestServer::start_with(&["--web-origin", "https://chat.example.org"]);
    let http = reqwest::Client::new();
    let preflight = |origin: &'static str| {
        http.request(
            reqwest::Method::OPTIONS,
            format!("{}/v1/queue?after=0", server.url()),
        )
        .header("origin", origin)
        .header("access-control-request-method", "GET")
        .header("access-control-request-headers", "authorization")
        .send()
    };
    let allowed = preflight("https://chat.example.org").await.unwrap();
    assert!(allowed.status().is_success(), "{}", allowed.status());
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "https://chat.example.org"
    );
    let methods = allowed.headers()["access-control-allow-methods"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(methods.contains("PUT"), "{methods}");
    let other = preflight("https://evil.example").await.unwrap();
    assert!(other.headers().get("access-control-allow-origin").is_none());

    // An ordinary answer to the web origin carries the header too; the console's do not.
    let info = http
        .get(format!("{}/v1/info", server.url()))
        .header("origin", "https://chat.example.org")
        .send()
        .await
        .unwrap();
    assert_eq!(info.status(), 200);
    assert_eq!(
        info.headers()["access-control-allow-origin"],
        "https://chat.example.org"
    );
    let console = http
        .get(format!("{}/admin", server.url()))
        .header("origin", "https://chat.example.org")
        .send()
        .await
        .unwrap();
    assert!(console
        .headers()
        .get("access-control-allow-origin")
        .is_none());
}

#[test]
fn a_web_origin_with_a_path_is_refused_at_start() {
    let data = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(BIN)
        .args(["server", "--listen", "127.0.0.1:0", "--web-origin"])
        .arg("https://chat.example.org/app")
        .arg("--data")
        .arg(data.path())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("without a path"), "{stderr}");
}
