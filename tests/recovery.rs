//! Backups and recovery from the loss of every device (issue 13), against the real server
//! binary on loopback: a restored device has the history up to the last backup, is in every
//! chat again, and messages flow both ways; a wrong or mistyped key fails clearly; the server
//! reads no backup and a changed one is refused.

mod common;

use common::*;
use parley_client::{ChatRef, Client, ClientOptions, RecoveryKey};
use parley_protocol::Username;

fn user(name: &str) -> Username {
    Username::parse(name).unwrap()
}

fn texts_of(messages: &[parley_client::MessageView]) -> Vec<String> {
    messages
        .iter()
        .filter(|m| m.kind == "text")
        .map(|m| m.text.clone())
        .collect()
}

async fn restore(
    server: &str,
    key: &str,
) -> Result<(tempfile::TempDir, Client, parley_client::RestoreReport), parley_client::ClientError> {
    let home = tempfile::tempdir().unwrap();
    let (client, report) =
        Client::restore(home.path(), server, "alice", key, ClientOptions::default()).await?;
    Ok((home, client, report))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_every_device_is_lost_a_restored_device_has_the_history_and_messages_flow_both_ways()
{
    let server = TestServer::start();
    let alice = Device::register(&server.url(), "alice").await;
    let bob = Device::register(&server.url(), "bob").await;
    let to_alice = ChatRef::Direct(user("alice"));
    let to_bob = ChatRef::Direct(user("bob"));
    let team = ChatRef::Group("team".into());
    bob.client
        .send_text(&to_alice, "hello alice")
        .await
        .unwrap();
    alice.client.sync().await.unwrap();
    alice.client.send_text(&to_bob, "hi bob").await.unwrap();
    alice
        .client
        .create_group("team", &[user("bob")])
        .await
        .unwrap();
    bob.client.sync().await.unwrap();
    bob.client.send_text(&team, "team before").await.unwrap();
    let (_second_home, second, _) = link_device(&server.url(), &alice.client).await;
    second.sync().await.unwrap();

    let (key, first) = alice.client.enable_backup(60).await.unwrap();
    assert_eq!((first.chats, first.messages > 0), (2, true), "{first:?}");
    bob.client
        .send_text(&to_alice, "after enabling")
        .await
        .unwrap();
    alice.client.sync().await.unwrap();
    alice.client.backup_now().await.unwrap();
    let safety_before = bob.client.safety_number(&user("alice")).unwrap();

    // Every device is lost.
    drop(alice);
    drop(second);
    drop(_second_home);

    let (_home, restored, report) = restore(&server.url(), &key.encode()).await.unwrap();
    assert_eq!(
        (
            report.chats,
            report.rejoined,
            report.waiting,
            report.revoked_devices
        ),
        (2, 2, 0, 2),
        "{report:?}"
    );
    let direct = restored.history(&to_bob, 100).unwrap();
    assert_eq!(
        texts_of(&direct),
        ["hello alice", "hi bob", "after enabling"],
        "the 1:1 history, in order"
    );
    assert!(direct.iter().all(|m| m.history), "marked as history");
    assert_eq!(
        texts_of(&restored.history(&team, 100).unwrap()),
        ["team before"]
    );
    assert_eq!(
        restored.devices().await.unwrap().len(),
        1,
        "the lost devices are revoked"
    );

    // New messages flow both ways, in the 1:1 chat and the group.
    bob.client
        .send_text(&to_alice, "welcome back")
        .await
        .unwrap();
    bob.client.send_text(&team, "team again").await.unwrap();
    let received = texts_of(&restored.sync().await.unwrap());
    assert!(
        received.contains(&"welcome back".to_string()),
        "{received:?}"
    );
    assert!(received.contains(&"team again".to_string()), "{received:?}");
    restored.send_text(&to_bob, "i am back").await.unwrap();
    restored.send_text(&team, "back in the team").await.unwrap();
    let at_bob = bob.client.sync().await.unwrap();
    let from_alice: Vec<(String, String)> = at_bob
        .iter()
        .filter(|m| m.kind == "text")
        .map(|m| (m.sender.clone(), m.text.clone()))
        .collect();
    assert!(
        from_alice.contains(&("alice".into(), "i am back".into())),
        "{from_alice:?}"
    );
    assert!(
        from_alice.contains(&("alice".into(), "back in the team".into())),
        "{from_alice:?}"
    );
    // The same account to bob, in the same chats. The lost devices knew the account key, so
    // the restore rotated it, once: bob followed the signed rotation and was told, once per
    // chat, that the safety number changed; nothing was refused.
    assert_ne!(
        bob.client.safety_number(&user("alice")).unwrap(),
        safety_before
    );
    let rotated = at_bob
        .iter()
        .filter(|m| m.kind == "notice" && m.text.contains("new account key"))
        .count();
    assert!(rotated <= 2, "one notice per chat at most: {at_bob:?}");
    assert!(
        at_bob
            .iter()
            .all(|m| !m.text.contains("compare it with them again")
                || m.text.contains("new account key")),
        "no unexplained identity change: {at_bob:?}"
    );
    assert_eq!(bob.client.unverifiable_count().unwrap(), 0);
    assert_eq!(bob.client.chats().unwrap().len(), 2);
    // Backups carry on from the restored device under the same key.
    assert!(restored.backup_status().await.unwrap().enabled);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_or_mistyped_recovery_key_fails_clearly_and_restores_nothing() {
    let server = TestServer::start();
    let alice = Device::register(&server.url(), "alice").await;
    let (key, _) = alice.client.enable_backup(60).await.unwrap();

    let wrong = RecoveryKey::generate().encode();
    let error = restore(&server.url(), &wrong)
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(
        error.contains("no backup of alice under this recovery key"),
        "{error}"
    );

    let mut typo: Vec<char> = key.encode().chars().collect();
    typo[0] = if typo[0] == 'Z' { 'Y' } else { 'Z' };
    let typo: String = typo.into_iter().collect();
    let error = restore(&server.url(), &typo)
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(error.contains("typo"), "{error}");

    // Another name with the right key: the same answer as a wrong key.
    let home = tempfile::tempdir().unwrap();
    let error = Client::restore(
        home.path(),
        &server.url(),
        "mallory",
        &key.encode(),
        ClientOptions::default(),
    )
    .await
    .err()
    .unwrap()
    .to_string();
    assert!(error.contains("no backup of mallory"), "{error}");
    assert_eq!(
        alice.client.devices().await.unwrap().len(),
        1,
        "nothing registered"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_reads_no_backup_and_a_changed_backup_is_refused() {
    let server = TestServer::start();
    let alice = Device::register(&server.url(), "alice").await;
    let bob = Device::register(&server.url(), "bob").await;
    bob.client
        .send_text(
            &ChatRef::Direct(user("alice")),
            "the secret plan for tuesday",
        )
        .await
        .unwrap();
    alice.client.sync().await.unwrap();
    alice
        .client
        .create_group("plotters", &[user("bob")])
        .await
        .unwrap();
    let (key, _) = alice.client.enable_backup(60).await.unwrap();
    let everything = server.all_bytes();
    for plaintext in [b"the secret plan for tuesday".as_slice(), b"plotters"] {
        assert!(!contains(&everything, plaintext));
    }
    assert!(!contains(&everything, key.encode().as_bytes()));

    // The server (or whoever writes its disk) replaces the backup's bytes.
    server
        .database()
        .execute(
            "UPDATE blob_chunks SET data = randomblob(length(data))
             WHERE blob_id IN (SELECT blob_id FROM backups)",
            [],
        )
        .unwrap();
    let error = restore(&server.url(), &key.encode())
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(error.contains("does not decrypt"), "{error}");
    assert_eq!(
        alice.client.devices().await.unwrap().len(),
        1,
        "nothing registered"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backups_run_by_themselves_after_changes_and_the_server_keeps_the_newest_three() {
    let server = TestServer::start();
    let alice = Device::register(&server.url(), "alice").await;
    let bob = Device::register(&server.url(), "bob").await;
    // 0 minutes: after every change.
    let (key, _) = alice.client.enable_backup(0).await.unwrap();
    let first = alice.client.backup_status().await.unwrap();
    assert_eq!(first.stored.len(), 1);
    // Nothing changed: a sync stores no backup.
    alice.client.sync().await.unwrap();
    assert_eq!(alice.client.backup_status().await.unwrap(), first);
    for n in 0..4 {
        bob.client
            .send_text(&ChatRef::Direct(user("alice")), &format!("message {n}"))
            .await
            .unwrap();
        alice.client.sync().await.unwrap();
    }
    let status = alice.client.backup_status().await.unwrap();
    assert_eq!(status.stored.len(), 3, "{status:?}");
    assert!(!status.changes_pending, "{status:?}");
    assert_ne!(status.last_backup_at, first.last_backup_at);
    // The newest holds every message.
    let (_home, restored, _) = restore(&server.url(), &key.encode()).await.unwrap();
    let history = restored
        .history(&ChatRef::Direct(user("bob")), 100)
        .unwrap();
    assert_eq!(
        texts_of(&history),
        ["message 0", "message 1", "message 2", "message 3"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_shows_the_recovery_key_once_and_restores_with_it() {
    let server = TestServer::start();
    let url = server.url();
    let home = tempfile::tempdir().unwrap();
    let (status, _, err) = cli(home.path(), &url, &["register", "alice"]);
    assert_eq!(status, 0, "{err}");
    let bob = Device::register(&url, "bob").await;
    bob.client
        .send_text(&ChatRef::Direct(user("alice")), "kept safe")
        .await
        .unwrap();
    assert_eq!(cli(home.path(), &url, &["sync"]).0, 0);

    let (status, out, err) = cli(home.path(), &url, &["backup", "enable"]);
    assert_eq!(status, 0, "{err}");
    let first = out.lines().next().unwrap();
    let key = first
        .strip_prefix("recovery key: ")
        .expect(first)
        .to_owned();
    assert_eq!(key.split('-').count(), 8, "{key}");
    let (status, _, err) = cli(home.path(), &url, &["backup", "enable"]);
    assert_ne!(status, 0);
    assert!(err.contains("on already"), "{err}");
    let (status, out, err) = cli(home.path(), &url, &["backup", "now", "--json"]);
    assert_eq!(status, 0, "{err}");
    assert!(json_lines(&out)[0]["bytes"].as_u64().unwrap() > 0, "{out}");
    let (status, out, err) = cli(home.path(), &url, &["backup", "status", "--json"]);
    assert_eq!(status, 0, "{err}");
    let backup = &json_lines(&out)[0];
    assert_eq!(backup["enabled"], true, "{out}");
    assert_eq!(backup["stored"].as_array().unwrap().len(), 2, "{out}");

    let fresh = tempfile::tempdir().unwrap();
    let (status, _, err) = cli(
        fresh.path(),
        &url,
        &["restore", "alice", "--recovery-key", "not-a-key"],
    );
    assert_ne!(status, 0);
    assert!(err.contains("not a recovery key"), "{err}");
    let (status, out, err) = cli(
        fresh.path(),
        &url,
        &[
            "restore",
            "alice",
            "--recovery-key",
            &key.to_lowercase(),
            "--json",
        ],
    );
    assert_eq!(status, 0, "{err}");
    let report = &json_lines(&out)[0];
    assert_eq!(
        (
            report["rejoined"].as_u64(),
            report["revoked_devices"].as_u64()
        ),
        (Some(1), Some(1)),
        "{out}"
    );
    let (status, out, _) = cli(fresh.path(), &url, &["history", "bob", "--json"]);
    assert_eq!(status, 0);
    assert!(out.contains("kept safe"), "{out}");
}

/// A device of an account that is not in a group cannot join it by external commit, even with
/// the group's state in hand: the server refuses the commit, and the group goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_external_commit_from_an_account_not_in_the_group_is_refused() {
    use openmls::prelude::tls_codec::{Deserialize as _, Serialize as _};
    use openmls::prelude::*;
    use parley_protocol::{v1, ErrorCode};

    let server = TestServer::start();
    let alice = Device::register(&server.url(), "alice").await;
    let bob = Device::register(&server.url(), "bob").await;
    let carol = Device::register(&server.url(), "carol").await;
    alice
        .client
        .create_group("team", &[user("bob")])
        .await
        .unwrap();
    carol.client.create_group("solo", &[]).await.unwrap();
    let team_id = with_stored_group(&alice, "team", |group, _, _| {
        group.group_id().as_slice().to_vec()
    });
    let path = format!("/v1/groups/{}/group-info", hex::encode(&team_id));
    // Only a device of an account in the group may fetch its state...
    let as_carol = Raw::new(&server.url(), carol.client.api().token());
    let refused: Result<v1::GroupInfoBundle, _> = as_carol.get(&path).await;
    assert_eq!(refused.unwrap_err().0, 404);
    // ...but suppose carol got it from bob anyway.
    let bundle: v1::GroupInfoBundle = Raw::new(&server.url(), bob.client.api().token())
        .get(&path)
        .await
        .unwrap();
    assert_eq!(
        bundle.epoch, bundle.group_epoch,
        "alice shared the newest state"
    );
    let commit = with_stored_group(&carol, "solo", |solo, provider, signer| {
        let info = match MlsMessageIn::tls_deserialize_exact(bundle.group_info.as_slice())
            .unwrap()
            .extract()
        {
            MlsMessageBodyIn::GroupInfo(info) => info,
            _ => panic!("not a GroupInfo"),
        };
        let tree = RatchetTreeIn::tls_deserialize_exact(bundle.ratchet_tree.as_slice()).unwrap();
        let credential = CredentialWithKey {
            credential: solo.own_leaf_node().unwrap().credential().clone(),
            signature_key: signer.to_public_vec().into(),
        };
        let capabilities = parley_mls::suite::leaf_capabilities(info.ciphersuite());
        let (_, commit) = MlsGroup::external_commit_builder()
            .with_ratchet_tree(tree)
            .build_group(provider, info, credential)
            .unwrap()
            .leaf_node_parameters(
                LeafNodeParameters::builder()
                    .with_capabilities(capabilities)
                    .build(),
            )
            .load_psks(provider.storage())
            .unwrap()
            .build(provider.rand(), provider.crypto(), signer, |_| true)
            .unwrap()
            .finalize(provider)
            .unwrap();
        commit.into_commit().tls_serialize_detached().unwrap()
    });
    let submit = v1::Submit {
        message_id: vec![9; 16],
        mls_message: commit,
        welcome: None,
        expires_in_ms: 0,
    };
    let result: Result<v1::SubmitResponse, _> = as_carol.post("/v1/messages", &submit).await;
    let (status, code, message) = result.unwrap_err();
    assert_eq!((status, code), (403, ErrorCode::Forbidden), "{message}");
    assert!(
        message.contains("account already in the group"),
        "{message}"
    );
    // The group goes on as it was.
    bob.client.sync().await.unwrap();
    bob.client
        .send_text(&ChatRef::Group("team".into()), "just us")
        .await
        .unwrap();
    let received = alice.client.sync().await.unwrap();
    assert!(received.iter().any(|m| m.text == "just us"), "{received:?}");
}

/// What members upload for external joins is checked: only the group's current state, of the
/// group it names, small, from a member.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_members_current_small_group_info_is_kept() {
    use parley_protocol::{v1, ErrorCode};

    let server = TestServer::start();
    let alice = Device::register(&server.url(), "alice").await;
    let bob = Device::register(&server.url(), "bob").await;
    let carol = Device::register(&server.url(), "carol").await;
    alice
        .client
        .create_group("team", &[user("bob")])
        .await
        .unwrap();
    alice
        .client
        .create_group("other", &[user("bob")])
        .await
        .unwrap();
    let group_path = |chat: &str| {
        let id = with_stored_group(&alice, chat, |group, _, _| {
            group.group_id().as_slice().to_vec()
        });
        format!("/v1/groups/{}/group-info", hex::encode(id))
    };
    let (team, other) = (group_path("team"), group_path("other"));
    let as_bob = Raw::new(&server.url(), bob.client.api().token());
    let current: v1::GroupInfoBundle = as_bob.get(&team).await.unwrap();
    let upload = |epoch, group_info: Vec<u8>| v1::GroupInfoUpload { epoch, group_info };

    // Alice's own (she made the last commit) again: kept.
    let as_alice = Raw::new(&server.url(), alice.client.api().token());
    let ok: Result<v1::SealBlob, _> = as_alice
        .put(&team, &upload(current.epoch, current.group_info.clone()))
        .await;
    assert!(ok.is_ok(), "{ok:?}");
    let refusals = [
        (
            // Signed by alice, uploaded by bob.
            as_bob
                .put::<_, v1::SealBlob>(&team, &upload(current.epoch, current.group_info.clone()))
                .await,
            ErrorCode::InvalidMlsMessage,
        ),
        (
            as_bob
                .put::<_, v1::SealBlob>(
                    &team,
                    &upload(current.epoch + 1, current.group_info.clone()),
                )
                .await,
            ErrorCode::WrongEpoch,
        ),
        (
            as_bob
                .put::<_, v1::SealBlob>(&team, &upload(current.epoch, b"not mls".to_vec()))
                .await,
            ErrorCode::InvalidMlsMessage,
        ),
        (
            // team's GroupInfo filed under another group.
            as_alice
                .put::<_, v1::SealBlob>(&other, &upload(current.epoch, current.group_info.clone()))
                .await,
            ErrorCode::InvalidMlsMessage,
        ),
        (
            as_bob
                .put::<_, v1::SealBlob>(&team, &upload(current.epoch, vec![0; 17 * 1024]))
                .await,
            ErrorCode::TooLarge,
        ),
        (
            Raw::new(&server.url(), carol.client.api().token())
                .put::<_, v1::SealBlob>(&team, &upload(current.epoch, current.group_info.clone()))
                .await,
            ErrorCode::NotMember,
        ),
    ];
    for (result, expected) in refusals {
        let (_, code, message) = result.unwrap_err();
        assert_eq!(code, expected, "{message}");
    }
    let still: v1::GroupInfoBundle = as_bob.get(&team).await.unwrap();
    assert_eq!(still.group_info, current.group_info);
}

/// A revoked device knows the account key and what its account backs up with, but no longer
/// what restores it: the backups it set up are gone with it, and the account key alone
/// registers nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_device_cannot_restore_itself_back() {
    use openmls_basic_credential::SignatureKeyPair;
    use openmls_traits::signatures::Signer as _;
    use parley_mls::certificate::AccountKey;
    use parley_protocol::{v1, DeviceId, ErrorCode};

    let server = TestServer::start();
    let alice = Device::register(&server.url(), "alice").await;
    let (stolen_home, stolen, _) = link_device(&server.url(), &alice.client).await;
    // The device that is later stolen is the one that turned backups on (its user saw the key).
    let (stolen_key, _) = stolen.enable_backup(60).await.unwrap();
    let stolen_id = stolen.device_id().to_string();
    drop(stolen);
    alice.client.revoke_device(&stolen_id).await.unwrap();

    let error = restore(&server.url(), &stolen_key.encode())
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(error.contains("no backup of alice"), "{error}");

    // With the account key from its disk, it certifies a fresh device and asks to restore.
    let secret: Vec<u8> = rusqlite::Connection::open(stolen_home.path().join("parley.db"))
        .unwrap()
        .query_row("SELECT account_secret FROM account", [], |row| row.get(0))
        .unwrap();
    let account_key = AccountKey::from_secret_bytes(&secret.try_into().unwrap());
    let signer =
        SignatureKeyPair::new(parley_mls::suite::DEFAULT_CIPHERSUITE.signature_algorithm())
            .unwrap();
    let device = DeviceId::from_bytes([0x42; 16]);
    let public = signer.to_public_vec();
    let certificate = account_key.certify(&user("alice"), device, &public, 1);
    let request = v1::RegisterRequest {
        username: "alice".into(),
        signature_key: public.clone(),
        proof: signer
            .sign(&v1::register_proof_input("alice", &public))
            .unwrap(),
        device_id: device.to_vec(),
        account_key: account_key.public().to_bytes().to_vec(),
        certificate: certificate.encode(),
        restore: true,
        restore_secret: vec![1; 32],
        backup_id: vec![2; 32],
    };
    let refused: Result<v1::RegisterResponse, _> = Raw::new(&server.url(), None)
        .post("/v1/accounts", &request)
        .await;
    let (status, code, message) = refused.unwrap_err();
    assert_eq!((status, code), (403, ErrorCode::Forbidden), "{message}");
    // The revocation rotated the account key: the one on the stolen disk is no longer it.
    assert!(message.contains("changed its key"), "{message}");
    assert_eq!(alice.client.devices().await.unwrap().len(), 1);
    // Under the current key but without the restore secret, it is refused too.
    let current: v1::UserDevices = Raw::new(&server.url(), alice.client.api().token())
        .get("/v1/users/alice")
        .await
        .unwrap();
    let refused: Result<v1::RegisterResponse, _> = Raw::new(&server.url(), None)
        .post(
            "/v1/accounts",
            &v1::RegisterRequest {
                account_key: current.account_key,
                ..request.clone()
            },
        )
        .await;
    let (status, _, message) = refused.unwrap_err();
    assert!(matches!(status, 401 | 403), "{status} {message}");

    // The remaining device turns backups on itself. A device linked then gets what backing up
    // needs; revoked, it cannot download the account's backups with that.
    let (key, _) = alice.client.enable_backup(60).await.unwrap();
    let (spare_home, spare, _) = link_device(&server.url(), &alice.client).await;
    let spare_id = spare.device_id().to_string();
    drop(spare);
    let backup_id: Vec<u8> = rusqlite::Connection::open(spare_home.path().join("parley.db"))
        .unwrap()
        .query_row("SELECT backup_id FROM backup", [], |row| row.get(0))
        .unwrap();
    alice.client.revoke_device(&spare_id).await.unwrap();
    alice.client.backup_now().await.unwrap();
    let fetch = v1::BackupRequest {
        username: "alice".into(),
        backup_id,
        restore_secret: vec![0; 32],
        blob_id: Vec::new(),
        index: 0,
    };
    let refused: Result<v1::BackupInfo, _> = Raw::new(&server.url(), None)
        .post("/v1/backups/fetch", &fetch)
        .await;
    assert_eq!(refused.unwrap_err().0, 404);
    // The key the user wrote down restores.
    let (_home, _restored, report) = restore(&server.url(), &key.encode()).await.unwrap();
    assert_eq!(report.revoked_devices, 1, "{report:?}");
}

/// A chat with a change waiting to be committed (a member leaving) is rejoined once a member
/// has committed it, not before: the join would have dropped the change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chat_with_a_pending_change_is_rejoined_after_a_member_commits_it() {
    let server = TestServer::start();
    let alice = Device::register(&server.url(), "alice").await;
    let bob = Device::register(&server.url(), "bob").await;
    let carol = Device::register(&server.url(), "carol").await;
    let team = ChatRef::Group("team".into());
    alice
        .client
        .create_group("team", &[user("bob"), user("carol")])
        .await
        .unwrap();
    bob.client.sync().await.unwrap();
    carol.client.sync().await.unwrap();
    let (key, _) = alice.client.enable_backup(60).await.unwrap();
    drop(alice);
    // Carol leaves: her proposal waits for a member to commit it.
    carol.client.leave_group("team").await.unwrap();

    let (_home, restored, report) = restore(&server.url(), &key.encode()).await.unwrap();
    assert_eq!((report.rejoined, report.waiting), (0, 1), "{report:?}");
    // Bob commits carol's leaving; the restored device's next sync rejoins.
    bob.client.sync().await.unwrap();
    restored.sync().await.unwrap();
    restored
        .send_text(&team, "back, without carol")
        .await
        .unwrap();
    let received = texts_of(&bob.client.sync().await.unwrap());
    assert!(
        received.contains(&"back, without carol".to_string()),
        "{received:?}"
    );
    let members = bob.client.group_state(&team).unwrap();
    assert!(!format!("{members:?}").contains("carol"), "{members:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_that_stopped_after_registering_is_resumed_in_the_same_home() {
    let server = TestServer::start();
    let alice = Device::register(&server.url(), "alice").await;
    let bob = Device::register(&server.url(), "bob").await;
    let to_bob = ChatRef::Direct(user("bob"));
    bob.client
        .send_text(&ChatRef::Direct(user("alice")), "hello alice")
        .await
        .unwrap();
    alice.client.sync().await.unwrap();
    let (key, _) = alice.client.enable_backup(60).await.unwrap();
    drop(alice);

    // The restore registers, then loses the answer to the lost device's revocation.
    let port: u16 = server.url().rsplit(':').next().unwrap().parse().unwrap();
    let proxy = FaultyProxy::start(port).await;
    proxy.arm("/revoke", Fault::DropResponse);
    let home = tempfile::tempdir().unwrap();
    let first = Client::restore(
        home.path(),
        &proxy.url(),
        "alice",
        &key.encode(),
        ClientOptions::default(),
    )
    .await;
    assert!(first.is_err(), "the restore stopped");
    // Run again in the same home, it carries on instead of refusing the home or registering
    // yet another device.
    let (restored, report) = Client::restore(
        home.path(),
        &server.url(),
        "alice",
        &key.encode(),
        ClientOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(report.messages, 1, "{report:?}");
    let devices = restored.devices().await.unwrap();
    assert_eq!(
        devices.len(),
        1,
        "only the restored device is left: {devices:?}"
    );
    assert_eq!(
        texts_of(&restored.history(&to_bob, 10).unwrap()),
        ["hello alice"]
    );
    restored.send_text(&to_bob, "back").await.unwrap();
    let at_bob = texts_of(&bob.client.sync().await.unwrap());
    assert!(at_bob.contains(&"back".to_string()), "{at_bob:?}");
    assert_eq!(bob.client.unverifiable_count().unwrap(), 0);
    // Another account's restore into this home is refused.
    drop(restored);
    let other = Client::restore(
        home.path(),
        &server.url(),
        "bob",
        &key.encode(),
        ClientOptions::default(),
    )
    .await;
    assert!(other.is_err());
}
