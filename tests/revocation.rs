//! Revoking a device of an account (issue 13), against the real server binary on loopback: the
//! revoked device reads nothing sent later, cannot log in or come back, and the account's other
//! devices and its partners carry on.

mod common;

use common::*;
use parley_client::ChatRef;
use parley_protocol::{v1, Username};

fn user(name: &str) -> Username {
    Username::parse(name).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_device_reads_nothing_more_cannot_log_in_or_return_and_the_rest_carry_on() {
    let server = TestServer::start();
    let alice = Device::register(&server.url(), "alice").await;
    let bob = Device::register(&server.url(), "bob").await;
    let to_alice = ChatRef::Direct(user("alice"));
    let to_bob = ChatRef::Direct(user("bob"));
    bob.client.send_text(&to_alice, "before").await.unwrap();
    alice.client.sync().await.unwrap();
    alice
        .client
        .create_group("team", &[user("bob")])
        .await
        .unwrap();
    let (_home2, lost, _) = link_device(&server.url(), &alice.client).await;
    let (_home3, alice3, _) = link_device(&server.url(), &alice.client).await;
    lost.sync().await.unwrap();
    alice3.sync().await.unwrap();
    let lost_token = lost.api().token();
    let lost_id = lost.device_id().to_string();

    // Revoked from the third device, by the first digits of its id.
    let removed = alice3.revoke_device(&lost_id[..8]).await.unwrap();
    assert_eq!(removed, 2, "the 1:1 chat and #team");
    let listed: Vec<String> = alice
        .client
        .devices()
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.id)
        .collect();
    assert!(!listed.contains(&lost_id), "{listed:?}");
    assert_eq!(listed.len(), 2);

    // Later messages: everyone else reads them; the revoked device gets nothing.
    bob.client.sync().await.unwrap();
    bob.client.send_text(&to_alice, "after").await.unwrap();
    bob.client
        .send_text(&ChatRef::Group("team".into()), "team after")
        .await
        .unwrap();
    for device in [&alice.client, &alice3] {
        let texts: Vec<String> = device
            .sync()
            .await
            .unwrap()
            .into_iter()
            .map(|m| m.text)
            .collect();
        assert!(texts.contains(&"after".to_string()), "{texts:?}");
        assert!(texts.contains(&"team after".to_string()), "{texts:?}");
    }
    let err = lost.sync().await.unwrap_err();
    assert!(err.to_string().contains("revoked"), "{err}");
    // Its session ended at once and it cannot log in again.
    let raw = Raw::new(&server.url(), lost_token);
    let queue: Result<v1::QueueBatch, _> = raw.get("/v1/queue?after=0&limit=10").await;
    assert_eq!(queue.unwrap_err().0, 401);
    let err = lost.login().await.unwrap_err();
    assert!(err.to_string().contains("revoked"), "{err}");
    // Its KeyPackages are gone: a new group with alice holds only her remaining devices.
    bob.client
        .create_group("later", &[user("alice")])
        .await
        .unwrap();
    let state = bob
        .client
        .group_state(&ChatRef::Group("later".into()))
        .unwrap();
    assert_eq!(
        state.devices, 3,
        "bob and alice's two remaining devices: {state:?}"
    );
    // The account's devices and partners carry on, both ways.
    alice.client.send_text(&to_bob, "still here").await.unwrap();
    let texts: Vec<String> = bob
        .client
        .sync()
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.text)
        .collect();
    assert!(texts.contains(&"still here".to_string()), "{texts:?}");
    // A device does not revoke itself, and a revoked one is not found again.
    let own = alice.client.device_id().to_string();
    assert!(alice
        .client
        .revoke_device(&own)
        .await
        .unwrap_err()
        .to_string()
        .contains("this device"));
    assert_eq!(
        alice3.revoke_device(&lost_id).await.unwrap(),
        0,
        "revoking again finds nothing left to remove"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_brings_a_revoked_device_back_is_refused_by_the_accounts_partners() {
    let server = TestServer::start();
    let alice = Device::register(&server.url(), "alice").await;
    let bob = Device::register(&server.url(), "bob").await;
    bob.client
        .send_text(&ChatRef::Direct(user("alice")), "hi")
        .await
        .unwrap();
    alice.client.sync().await.unwrap();
    let (_home2, lost, _) = link_device(&server.url(), &alice.client).await;
    lost.sync().await.unwrap();
    // The server kept a copy of one of the device's KeyPackages before it was revoked.
    let conn = server.database();
    let kept: Vec<u8> = conn
        .query_row(
            "SELECT data FROM key_packages WHERE device_id = ?1 LIMIT 1",
            [lost.device_id().to_vec()],
            |row| row.get(0),
        )
        .unwrap();
    alice
        .client
        .revoke_device(&lost.device_id().to_string())
        .await
        .unwrap();
    // Bob learned of the revocation in the chat the device was removed from.
    bob.client.sync().await.unwrap();
    assert_eq!(bob.client.unverifiable_count().unwrap(), 0);
    let known: i64 = rusqlite::Connection::open(bob.home.path().join("parley.db"))
        .unwrap()
        .query_row("SELECT COUNT(*) FROM revoked_devices", [], |row| row.get(0))
        .unwrap();
    assert_eq!(known, 1, "bob holds the signed revocation");
    // Now the server un-revokes it and offers the old KeyPackage again.
    conn.execute(
        "UPDATE devices SET revoked_at = NULL WHERE id = ?1",
        [lost.device_id().to_vec()],
    )
    .unwrap();
    conn.execute(
        "INSERT INTO key_packages (device_id, last_resort, data) VALUES (?1, 1, ?2)",
        rusqlite::params![lost.device_id().to_vec(), kept],
    )
    .unwrap();
    let err = bob
        .client
        .create_group("team", &[user("alice")])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("revoked"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_revokes_a_device_by_its_id() {
    let server = TestServer::start();
    let alice = Device::register(&server.url(), "alice").await;
    let (_home2, second, _) = link_device(&server.url(), &alice.client).await;
    let id = second.device_id().to_string();
    drop(second);
    // The CLI is another process: it needs the home free of this one's lock.
    let Device { home, client } = alice;
    drop(client);
    let home = home.path().to_owned();
    let (status, out, err) = cli(&home, &server.url(), &["devices", "revoke", &id[..6]]);
    assert_eq!(status, 0, "{err}");
    assert!(out.contains("revoked the device"), "{out}");
    let (_, out, _) = cli(&home, &server.url(), &["devices", "--json"]);
    assert_eq!(json_lines(&out).len(), 1, "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_that_stopped_partway_is_finished_by_revoking_again() {
    let server = TestServer::start();
    let mut alice = Device::register(&server.url(), "alice").await;
    let bob = Device::register(&server.url(), "bob").await;
    bob.client
        .send_text(&ChatRef::Direct(user("alice")), "hi")
        .await
        .unwrap();
    alice.client.sync().await.unwrap();
    let (_home2, lost, _) = link_device(&server.url(), &alice.client).await;
    let lost_id = lost.device_id().to_string();
    let port: u16 = server.url().rsplit(':').next().unwrap().parse().unwrap();
    let proxy = FaultyProxy::start(port).await;
    alice.reopen(Some(proxy.url()));
    // The server revokes it, then the removal commit is lost on the way.
    proxy.arm("POST /v1/messages", Fault::DropRequest);
    assert!(alice.client.revoke_device(&lost_id).await.is_err());
    bob.client.sync().await.unwrap();
    let state = bob
        .client
        .group_state(&ChatRef::Direct(user("alice")))
        .unwrap();
    assert_eq!(state.devices, 3, "still in the chat: {state:?}");
    // It is no longer listed, but naming it again finishes the job.
    alice.client.revoke_device(&lost_id[..8]).await.unwrap();
    bob.client.sync().await.unwrap();
    let state = bob
        .client
        .group_state(&ChatRef::Direct(user("alice")))
        .unwrap();
    assert_eq!(state.devices, 2, "{state:?}");
    let known: i64 = rusqlite::Connection::open(bob.home.path().join("parley.db"))
        .unwrap()
        .query_row("SELECT COUNT(*) FROM revoked_devices", [], |row| row.get(0))
        .unwrap();
    assert_eq!(known, 1, "bob has the signed revocation");
}

/// The account key the server has registered for `username`.
async fn registered_key(
    server: &TestServer,
    reader: &parley_client::Client,
    username: &str,
) -> Vec<u8> {
    let devices: v1::UserDevices = Raw::new(&server.url(), reader.api().token())
        .get(&format!("/v1/users/{username}"))
        .await
        .unwrap();
    devices.account_key
}

fn texts(views: Vec<parley_client::MessageView>) -> Vec<String> {
    views.into_iter().map(|m| m.text).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_rotates_the_account_key_and_devices_and_partners_follow_it() {
    let server = TestServer::start();
    let alice = Device::register(&server.url(), "alice").await;
    let bob = Device::register(&server.url(), "bob").await;
    let carol = Device::register(&server.url(), "carol").await;
    let erin = Device::register(&server.url(), "erin").await;
    let to_alice = ChatRef::Direct(user("alice"));
    let team = ChatRef::Group("team".into());
    bob.client.send_text(&to_alice, "hi").await.unwrap();
    alice.client.sync().await.unwrap();
    alice
        .client
        .create_group("team", &[user("bob"), user("carol")])
        .await
        .unwrap();
    // Erin knows alice from a group, and stays offline through the rotation.
    erin.client
        .create_group("erin's", &[user("alice")])
        .await
        .unwrap();
    let (_home2, lost, _) = link_device(&server.url(), &alice.client).await;
    let (_home3, alice3, _) = link_device(&server.url(), &alice.client).await;
    for device in [&lost, &alice3, &bob.client, &carol.client] {
        device.sync().await.unwrap();
    }
    let old_key = registered_key(&server, &bob.client, "alice").await;
    // Bob compared the number with alice in person and marked her verified.
    let shown = bob.client.safety_number(&user("alice")).unwrap();
    assert!(!shown.verified);
    let first = if shown.digits.starts_with('1') {
        "2"
    } else {
        "1"
    };
    let wrong = format!("{first}{}", &shown.digits[1..]);
    assert!(
        bob.client.mark_verified(&user("alice"), &wrong).is_err(),
        "digits that are not the number are refused"
    );
    assert!(!bob.client.safety_number(&user("alice")).unwrap().verified);
    bob.client
        .mark_verified(&user("alice"), &shown.digits)
        .unwrap();
    assert!(
        bob.client
            .mark_verified(&user("zed"), &shown.digits)
            .is_err(),
        "no chat, no key to verify"
    );
    let bobs_number = bob.client.safety_number(&user("alice")).unwrap();
    assert!(bobs_number.verified);

    alice3
        .revoke_device(&lost.device_id().to_string())
        .await
        .unwrap();
    let new_key = registered_key(&server, &bob.client, "alice").await;
    assert_ne!(new_key, old_key, "the server holds the new account key");

    // The first device takes the new key up at its next sync and re-certifies its leaves.
    alice.client.sync().await.unwrap();
    assert_eq!(
        alice.client.safety_number(&user("bob")).unwrap().digits,
        alice3.safety_number(&user("bob")).unwrap().digits,
        "both remaining devices hold the same account key"
    );
    // Partners follow the signed rotation: a notice, a new safety number, nothing refused.
    let notices: Vec<String> = bob
        .client
        .sync()
        .await
        .unwrap()
        .into_iter()
        .filter(|m| m.kind == "notice")
        .map(|m| m.text)
        .collect();
    assert!(
        notices.iter().any(|n| n.contains("new account key")),
        "{notices:?}"
    );
    let bobs_new_number = bob.client.safety_number(&user("alice")).unwrap();
    assert_ne!(bobs_new_number.digits, bobs_number.digits);
    assert!(
        !bobs_new_number.verified,
        "a new account key asks for a new check in person"
    );
    carol.client.sync().await.unwrap();
    for device in [&alice.client, &alice3, &bob.client, &carol.client] {
        assert_eq!(device.unverifiable_count().unwrap(), 0);
    }

    // Messages flow both ways, from and to both remaining devices, in 1:1 and group chats.
    alice
        .client
        .send_text(&team, "from the first")
        .await
        .unwrap();
    alice3
        .send_text(&ChatRef::Direct(user("bob")), "from the third")
        .await
        .unwrap();
    let seen = texts(bob.client.sync().await.unwrap());
    assert!(seen.contains(&"from the first".to_string()), "{seen:?}");
    assert!(seen.contains(&"from the third".to_string()), "{seen:?}");
    assert!(texts(carol.client.sync().await.unwrap()).contains(&"from the first".to_string()));
    bob.client.send_text(&to_alice, "reply").await.unwrap();
    for device in [&alice.client, &alice3] {
        assert!(texts(device.sync().await.unwrap()).contains(&"reply".to_string()));
    }
    // Erin, who pinned the old key, follows the server's chain when she next claims alice.
    erin.client
        .create_group("erin's second", &[user("alice")])
        .await
        .unwrap();
    let shown = texts(erin.client.sync().await.unwrap());
    assert_eq!(erin.client.unverifiable_count().unwrap(), 0, "{shown:?}");
    // New devices are linked under the new key.
    let (_home4, alice4, _) = link_device(&server.url(), &alice.client).await;
    alice4.sync().await.unwrap();
    bob.client
        .send_text(&to_alice, "to all three")
        .await
        .unwrap();
    assert!(texts(alice4.sync().await.unwrap()).contains(&"to all three".to_string()));
    assert_eq!(bob.client.unverifiable_count().unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_old_account_key_a_revoked_device_kept_certifies_nothing_a_partner_accepts() {
    let server = TestServer::start();
    let alice = Device::register(&server.url(), "alice").await;
    let bob = Device::register(&server.url(), "bob").await;
    bob.client
        .send_text(&ChatRef::Direct(user("alice")), "hi")
        .await
        .unwrap();
    alice.client.sync().await.unwrap();
    let (lost_home, lost, _) = link_device(&server.url(), &alice.client).await;
    lost.sync().await.unwrap();
    alice
        .client
        .revoke_device(&lost.device_id().to_string())
        .await
        .unwrap();
    bob.client.sync().await.unwrap();
    drop(lost);
    // The revoked device still holds the old account key in its home.
    let old_secret: Vec<u8> = rusqlite::Connection::open(lost_home.path().join("parley.db"))
        .unwrap()
        .query_row("SELECT account_secret FROM account", [], |row| row.get(0))
        .unwrap();
    let old_key =
        parley_mls::certificate::AccountKey::from_secret_bytes(&old_secret.try_into().unwrap());
    // With it, it certifies a new device, which the server (colluding) plants in alice's account.
    let forged = RawDevice::new();
    let certificate = old_key.certify(&user("alice"), forged.device_id, &forged.public(), 1);
    let package = forged.key_package(&old_key, &certificate);
    plant_device(&server, "alice", &package, &forged);
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
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_whose_answer_was_lost_is_taken_up_at_the_next_sync() {
    let server = TestServer::start();
    let mut alice = Device::register(&server.url(), "alice").await;
    let bob = Device::register(&server.url(), "bob").await;
    let to_alice = ChatRef::Direct(user("alice"));
    bob.client.send_text(&to_alice, "hi").await.unwrap();
    alice.client.sync().await.unwrap();
    let (_home2, lost, _) = link_device(&server.url(), &alice.client).await;
    let lost_id = lost.device_id().to_string();
    let old_key = registered_key(&server, &bob.client, "alice").await;
    let port: u16 = server.url().rsplit(':').next().unwrap().parse().unwrap();
    let proxy = FaultyProxy::start(port).await;
    alice.reopen(Some(proxy.url()));
    // The server takes the revocation and the new key; its answer never arrives.
    proxy.arm("/revoke", Fault::DropResponse);
    assert!(alice.client.revoke_device(&lost_id).await.is_err());
    assert_ne!(registered_key(&server, &bob.client, "alice").await, old_key);
    // The next sync finds that the server took the kept rotation, and holds the new key.
    alice.client.sync().await.unwrap();
    alice.client.revoke_device(&lost_id[..8]).await.unwrap();
    bob.client.sync().await.unwrap();
    let state = bob.client.group_state(&to_alice).unwrap();
    assert_eq!(state.devices, 2, "{state:?}");
    bob.client.send_text(&to_alice, "after").await.unwrap();
    assert!(texts(alice.client.sync().await.unwrap()).contains(&"after".to_string()));
    alice
        .client
        .send_text(&ChatRef::Direct(user("bob")), "back")
        .await
        .unwrap();
    assert!(texts(bob.client.sync().await.unwrap()).contains(&"back".to_string()));
    assert_eq!(bob.client.unverifiable_count().unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_new_account_key_goes_only_to_devices_the_accounts_chats_show() {
    let server = TestServer::start();
    let alice = Device::register(&server.url(), "alice").await;
    let bob = Device::register(&server.url(), "bob").await;
    bob.client
        .send_text(&ChatRef::Direct(user("alice")), "hi")
        .await
        .unwrap();
    alice.client.sync().await.unwrap();
    let (lost_home, lost, _) = link_device(&server.url(), &alice.client).await;
    let (_home3, alice3, _) = link_device(&server.url(), &alice.client).await;
    lost.sync().await.unwrap();
    alice3.sync().await.unwrap();
    drop(lost);
    // The device about to be revoked gives the old account key to the server, which lists a
    // device of its own under it in alice's account, with a KeyPackage.
    let old_secret: Vec<u8> = rusqlite::Connection::open(lost_home.path().join("parley.db"))
        .unwrap()
        .query_row("SELECT account_secret FROM account", [], |row| row.get(0))
        .unwrap();
    let old_key =
        parley_mls::certificate::AccountKey::from_secret_bytes(&old_secret.try_into().unwrap());
    let planted = RawDevice::new();
    let certificate = old_key.certify(&user("alice"), planted.device_id, &planted.public(), 1);
    plant_device(
        &server,
        "alice",
        &planted.key_package(&old_key, &certificate),
        &planted,
    );
    let lost_id = {
        let conn = server.database();
        let ids: Vec<Vec<u8>> = conn
            .prepare("SELECT id FROM devices WHERE revoked_at IS NULL")
            .unwrap()
            .query_map([], |row| row.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert!(ids.len() >= 4);
        hex::decode(
            alice
                .client
                .devices()
                .await
                .unwrap()
                .into_iter()
                .find(|d| {
                    !d.current
                        && d.id != alice3.device_id().to_string()
                        && d.id != hex::encode(planted.device_id.as_bytes())
                })
                .unwrap()
                .id,
        )
        .unwrap()
    };
    alice
        .client
        .revoke_device(&hex::encode(&lost_id))
        .await
        .unwrap();
    let sealed_to = |device: &[u8]| -> i64 {
        server
            .database()
            .query_row(
                "SELECT COUNT(*) FROM rotation_keys WHERE device_id = ?1",
                [device.to_vec()],
                |row| row.get(0),
            )
            .unwrap()
    };
    assert_eq!(
        sealed_to(planted.device_id.as_bytes()),
        0,
        "the planted device gets nothing"
    );
    assert_eq!(sealed_to(alice3.device_id().as_bytes()), 1);
    // The real remaining device takes the key up and carries on.
    alice3.sync().await.unwrap();
    assert_eq!(sealed_to(alice3.device_id().as_bytes()), 0, "taken up");
    alice3
        .send_text(&ChatRef::Direct(user("bob")), "still me")
        .await
        .unwrap();
    assert!(texts(bob.client.sync().await.unwrap()).contains(&"still me".to_string()));
    assert_eq!(bob.client.unverifiable_count().unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_offline_through_two_revocations_takes_up_the_newest_key() {
    let server = TestServer::start();
    let alice = Device::register(&server.url(), "alice").await;
    let bob = Device::register(&server.url(), "bob").await;
    bob.client
        .send_text(&ChatRef::Direct(user("alice")), "hi")
        .await
        .unwrap();
    alice.client.sync().await.unwrap();
    let (_h2, offline, _) = link_device(&server.url(), &alice.client).await;
    let (_h3, third, _) = link_device(&server.url(), &alice.client).await;
    let (_h4, fourth, _) = link_device(&server.url(), &alice.client).await;
    for device in [&offline, &third, &fourth] {
        device.sync().await.unwrap();
    }
    // Two revocations while one device stays offline: the first took its KeyPackages.
    alice
        .client
        .revoke_device(&third.device_id().to_string())
        .await
        .unwrap();
    alice
        .client
        .revoke_device(&fourth.device_id().to_string())
        .await
        .unwrap();
    offline.sync().await.unwrap();
    assert_eq!(
        offline.safety_number(&user("bob")).unwrap().digits,
        alice.client.safety_number(&user("bob")).unwrap().digits,
        "it holds the newest key"
    );
    offline
        .send_text(&ChatRef::Direct(user("bob")), "back online")
        .await
        .unwrap();
    assert!(texts(bob.client.sync().await.unwrap()).contains(&"back online".to_string()));
    assert_eq!(bob.client.unverifiable_count().unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_that_has_not_taken_up_the_new_key_yet_can_still_revoke() {
    let server = TestServer::start();
    let alice = Device::register(&server.url(), "alice").await;
    let bob = Device::register(&server.url(), "bob").await;
    bob.client
        .send_text(&ChatRef::Direct(user("alice")), "hi")
        .await
        .unwrap();
    alice.client.sync().await.unwrap();
    let (_h2, second, _) = link_device(&server.url(), &alice.client).await;
    let (_h3, third, _) = link_device(&server.url(), &alice.client).await;
    let (_h4, fourth, _) = link_device(&server.url(), &alice.client).await;
    for device in [&second, &third, &fourth] {
        device.sync().await.unwrap();
    }
    alice
        .client
        .revoke_device(&third.device_id().to_string())
        .await
        .unwrap();
    // The second device has not synced since: it takes the new key up, then processes the
    // commits under it that still wait in its queue, and revokes the fourth.
    second
        .revoke_device(&fourth.device_id().to_string())
        .await
        .unwrap();
    assert_eq!(second.unverifiable_count().unwrap(), 0);
    alice.client.sync().await.unwrap();
    assert_eq!(alice.client.devices().await.unwrap().len(), 2);
    assert_eq!(alice.client.unverifiable_count().unwrap(), 0);
    bob.client.sync().await.unwrap();
    let state = bob
        .client
        .group_state(&ChatRef::Direct(user("alice")))
        .unwrap();
    assert_eq!(state.devices, 3, "bob and alice's two devices: {state:?}");
    assert_eq!(bob.client.unverifiable_count().unwrap(), 0);
}
