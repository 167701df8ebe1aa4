//! Linking a new device to an account (issue 13), against the real server binary on loopback:
//! history on the new device, every chat joined, codes that expire and work once, a server
//! that lies about the new device's keys, an approver that stops mid-transfer.

mod common;

use common::*;
use parley_client::ChatRef;
use parley_protocol::Username;

fn user(name: &str) -> Username {
    Username::parse(name).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_linked_device_has_the_history_and_every_chat_and_speaks_as_the_same_account() {
    let server = TestServer::start();
    let alice = Device::register(&server.url(), "alice").await;
    let bob = Device::register(&server.url(), "bob").await;
    let carol = Device::register(&server.url(), "carol").await;
    let bob_chat = ChatRef::Direct(user("bob"));
    let alice_chat = ChatRef::Direct(user("alice"));
    let team = ChatRef::Group("team".into());
    bob.client.send_text(&alice_chat, "hi alice").await.unwrap();
    alice.client.sync().await.unwrap();
    alice.client.send_text(&bob_chat, "hi bob").await.unwrap();
    alice
        .client
        .create_group("team", &[user("bob"), user("carol")])
        .await
        .unwrap();
    carol.client.sync().await.unwrap();
    carol.client.send_text(&team, "team hello").await.unwrap();
    alice.client.sync().await.unwrap();
    let number_before = bob.client.safety_number(&user("alice")).unwrap();
    // Alice compared bob's safety number in person (not carol's).
    let bobs = alice.client.safety_number(&user("bob")).unwrap();
    alice
        .client
        .mark_verified(&user("bob"), &bobs.digits)
        .unwrap();

    let (_home, alice2, _) = link_device(&server.url(), &alice.client).await;

    // The new device knows whom the account verified.
    assert!(alice2.safety_number(&user("bob")).unwrap().verified);
    assert!(!alice2.safety_number(&user("carol")).unwrap().verified);

    // The history, in order, marked as history.
    assert_eq!(
        texts(&alice2.history(&bob_chat, 50).unwrap()),
        [
            ("bob".into(), "hi alice".into(), true),
            ("alice".into(), "hi bob".into(), true)
        ]
    );
    assert_eq!(
        texts(&alice2.history(&team, 50).unwrap()),
        [("carol".into(), "team hello".into(), true)]
    );
    // New messages reach both of alice's devices.
    bob.client.sync().await.unwrap();
    bob.client
        .send_text(&alice_chat, "after the link")
        .await
        .unwrap();
    for device in [&alice.client, &alice2] {
        let received = device.sync().await.unwrap();
        assert_eq!(
            texts(&received),
            [("bob".into(), "after the link".into(), false)],
            "{}",
            device.device_id()
        );
    }
    carol.client.sync().await.unwrap();
    carol.client.send_text(&team, "team again").await.unwrap();
    let received = alice2.sync().await.unwrap();
    assert_eq!(
        texts(&received),
        [("carol".into(), "team again".into(), false)]
    );
    // What the new device sends: the partner sees alice, the first device sees it as sent.
    alice2.send_text(&bob_chat, "from my laptop").await.unwrap();
    let at_bob: Vec<_> = bob
        .client
        .sync()
        .await
        .unwrap()
        .into_iter()
        .filter(|m| m.chat == "alice")
        .collect();
    assert_eq!(
        texts(&at_bob),
        [("alice".into(), "from my laptop".into(), false)]
    );
    let at_alice: Vec<_> = alice
        .client
        .sync()
        .await
        .unwrap()
        .into_iter()
        .filter(|m| m.text != "team again")
        .collect();
    assert_eq!(
        texts(&at_alice),
        [("alice".into(), "from my laptop".into(), false)]
    );
    assert_eq!(at_alice[0].status, "sent", "ours, from another device");
    assert_eq!(
        at_alice[0].chat, "bob",
        "in the chat with bob, not with ourselves"
    );
    // Bob still has one chat with alice, and the same safety number.
    let bob_chats: Vec<String> = bob
        .client
        .chats()
        .unwrap()
        .into_iter()
        .map(|c| c.chat)
        .collect();
    assert_eq!(
        bob_chats.iter().filter(|c| *c == "alice").count(),
        1,
        "{bob_chats:?}"
    );
    assert_eq!(
        bob.client.safety_number(&user("alice")).unwrap(),
        number_before
    );
    // Both devices are listed on each.
    let devices = alice.client.devices().await.unwrap();
    assert_eq!(devices.len(), 2);
    assert_eq!(
        devices
            .iter()
            .filter(|d| d.current)
            .map(|d| d.id.clone())
            .collect::<Vec<_>>(),
        [alice.client.device_id().to_string()]
    );
    let seen_from_new = alice2.devices().await.unwrap();
    assert!(seen_from_new
        .iter()
        .any(|d| d.current && d.id == alice2.device_id().to_string()));
    // A group alice makes now has both of her devices.
    alice2
        .create_group("later", &[user("carol")])
        .await
        .unwrap();
    alice.client.sync().await.unwrap();
    carol.client.sync().await.unwrap();
    carol
        .client
        .send_text(&ChatRef::Group("later".into()), "both see this")
        .await
        .unwrap();
    for device in [&alice.client, &alice2] {
        let received = device.sync().await.unwrap();
        assert_eq!(
            texts(&received),
            [("carol".into(), "both see this".into(), false)]
        );
    }
}

fn history_texts(client: &parley_client::Client, chat: &ChatRef) -> Vec<String> {
    let history = match client.history(chat, 100) {
        Err(parley_client::ClientError::UnknownChat(_)) => Vec::new(),
        other => other.unwrap(),
    };
    history
        .into_iter()
        .filter(|m| m.kind == "text")
        .map(|m| m.text)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_third_device_gets_everything_once_also_what_arrives_during_the_link() {
    let server = TestServer::start();
    let alice = Device::register(&server.url(), "alice").await;
    let bob = Device::register(&server.url(), "bob").await;
    let to_alice = ChatRef::Direct(user("alice"));
    let to_bob = ChatRef::Direct(user("bob"));
    bob.client.send_text(&to_alice, "one").await.unwrap();
    alice.client.sync().await.unwrap();
    let (_home2, alice2, _) = link_device(&server.url(), &alice.client).await;
    alice2
        .send_text(&to_bob, "two, from the second device")
        .await
        .unwrap();
    alice.client.sync().await.unwrap();

    let third = LinkingDevice::start(&server.url(), "alice").await;
    bob.client.sync().await.unwrap();
    bob.client
        .send_text(&to_alice, "three, while linking")
        .await
        .unwrap();
    let runtime = tokio::runtime::Handle::current();
    let size = alice
        .client
        .approve_link(&third.code, |event| {
            // Bob goes on writing while alice's devices are busy linking: once when the new
            // device is approved (before it is in the chat), once it is in every chat.
            let text = match event {
                parley_client::ApproveEvent::Approved { .. } => "four, at approval",
                parley_client::ApproveEvent::Added { done, total } if done == total => {
                    "five, once it is in the chat"
                }
                _ => return,
            };
            tokio::task::block_in_place(|| {
                runtime.block_on(async {
                    bob.client.sync().await.unwrap();
                    bob.client.send_text(&to_alice, text).await.unwrap();
                })
            });
        })
        .await
        .unwrap();
    assert!(size.messages >= 3, "{size:?}");
    let alice3 = third.task.await.unwrap().unwrap();
    alice3.sync().await.unwrap();
    assert_eq!(
        history_texts(&alice3, &to_bob),
        [
            "one",
            "two, from the second device",
            "three, while linking",
            "four, at approval",
            "five, once it is in the chat"
        ],
        "each exactly once, in order"
    );
    // All three devices carry on, and bob sees one alice.
    bob.client.send_text(&to_alice, "six").await.unwrap();
    for device in [&alice.client, &alice2, &alice3] {
        device.sync().await.unwrap();
        assert_eq!(history_texts(device, &to_bob).last().unwrap(), "six");
    }
    assert_eq!(alice.client.devices().await.unwrap().len(), 3);
    let state = bob.client.group_state(&to_alice).unwrap();
    assert_eq!(state.members, ["alice", "bob"], "{state:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_the_server_changes_on_the_way_are_caught_by_the_code_and_nothing_is_approved() {
    let server = TestServer::start();
    let alice = Device::register(&server.url(), "alice").await;
    let new_device = LinkingDevice::start(&server.url(), "alice").await;
    // The server swaps in keys of its own for the new device's.
    server
        .database()
        .execute(
            "UPDATE links SET signature_key = randomblob(32), hpke_key = randomblob(32)",
            [],
        )
        .unwrap();
    let err = alice
        .client
        .approve_link(&new_device.code, |_| {})
        .await
        .unwrap_err();
    assert!(err.to_string().contains("do not match the code"), "{err}");
    assert_eq!(
        alice.client.devices().await.unwrap().len(),
        1,
        "nothing approved"
    );
    new_device.task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_code_expires_must_be_typed_right_and_works_once() {
    let server = TestServer::start();
    let alice = Device::register(&server.url(), "alice").await;
    let stale = LinkingDevice::start(&server.url(), "alice").await;
    server
        .database()
        .execute("UPDATE links SET expires_at = 1", [])
        .unwrap();
    let err = alice
        .client
        .approve_link(&stale.code, |_| {})
        .await
        .unwrap_err();
    assert!(err.to_string().contains("expired"), "{err}");
    stale.task.abort();

    let new_device = LinkingDevice::start(&server.url(), "alice").await;
    // One character off: the code's secret no longer matches the keys.
    let mut typo: Vec<char> = new_device.code.chars().collect();
    let last = typo.len() - 2;
    typo[last] = if typo[last] == 'A' { 'B' } else { 'A' };
    let typo: String = typo.into_iter().collect();
    let err = alice.client.approve_link(&typo, |_| {}).await.unwrap_err();
    assert!(err.to_string().contains("do not match the code"), "{err}");
    let err = alice
        .client
        .approve_link("not a code", |_| {})
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not a link code"), "{err}");

    alice
        .client
        .approve_link(&new_device.code, |_| {})
        .await
        .unwrap();
    new_device.task.await.unwrap().unwrap();
    let err = alice
        .client
        .approve_link(&new_device.code, |_| {})
        .await
        .unwrap_err();
    assert!(err.to_string().contains("used already"), "{err}");
    assert_eq!(alice.client.devices().await.unwrap().len(), 2);
}

/// Alice, with one message from bob in her 1:1 chat, talking to the server through a proxy
/// that can drop her requests; bob.
async fn alice_behind_a_proxy(server: &TestServer, text: &str) -> (Device, Device, FaultyProxy) {
    let mut alice = Device::register(&server.url(), "alice").await;
    let bob = Device::register(&server.url(), "bob").await;
    bob.client
        .send_text(&ChatRef::Direct(user("alice")), text)
        .await
        .unwrap();
    alice.client.sync().await.unwrap();
    let port: u16 = server.url().rsplit(':').next().unwrap().parse().unwrap();
    let proxy = FaultyProxy::start(port).await;
    alice.reopen(Some(proxy.url()));
    (alice, bob, proxy)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approver_that_stops_mid_transfer_is_reported_and_approving_again_finishes() {
    let server = TestServer::start();
    let (alice, _bob, proxy) = alice_behind_a_proxy(&server, "before the link").await;
    let new_device = LinkingDevice::start(&server.url(), "alice").await;
    // The approver's connection dies as it uploads the history, as if it were killed.
    proxy.arm("PUT /v1/blobs/", Fault::DropRequest);
    let err = alice
        .client
        .approve_link(&new_device.code, |_| {})
        .await
        .unwrap_err();
    assert!(
        proxy.fired.load(std::sync::atomic::Ordering::SeqCst),
        "{err}"
    );
    // The new device notices that nothing comes any more and says so.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !new_device.said(|e| matches!(e, parley_client::LinkEvent::Stalled { .. })) {
        assert!(
            std::time::Instant::now() < deadline,
            "the stall was never reported"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert!(!new_device.task.is_finished());
    // Approving again with the same code resumes the transfer.
    alice
        .client
        .approve_link(&new_device.code, |_| {})
        .await
        .unwrap();
    let alice2 = new_device.task.await.unwrap().unwrap();
    assert_eq!(
        history_texts(&alice2, &ChatRef::Direct(user("bob"))),
        ["before the link"]
    );
    assert_eq!(
        alice.client.devices().await.unwrap().len(),
        2,
        "one device, linked once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_links_no_more_devices_than_the_server_allows() {
    let server = TestServer::start_with(&["--max-devices-per-account", "2"]);
    let alice = Device::register(&server.url(), "alice").await;
    let (_home, _alice2, _) = link_device(&server.url(), &alice.client).await;
    let third = LinkingDevice::start(&server.url(), "alice").await;
    let err = alice
        .client
        .approve_link(&third.code, |_| {})
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("as many devices as this server allows"),
        "{err}"
    );
    assert!(err.to_string().contains("parley devices revoke"), "{err}");
    assert_eq!(alice.client.devices().await.unwrap().len(), 2);
    third.task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_history_archive_is_readable_by_its_new_device_only_and_a_changed_one_is_refused() {
    let server = TestServer::start();
    let (alice, bob, proxy) = alice_behind_a_proxy(&server, "secret history").await;
    // Stop the approver just before it seals the archive, so that it stays on the server.
    let new_device = LinkingDevice::start(&server.url(), "alice").await;
    proxy.arm("/seal", Fault::DropRequest);
    assert!(alice
        .client
        .approve_link(&new_device.code, |_| {})
        .await
        .is_err());
    let blob: Vec<u8> = server
        .database()
        .query_row("SELECT archive_blob FROM links", [], |row| row.get(0))
        .unwrap();
    let blob = hex::encode(blob);
    // Nobody but the new device reads it: not another account, not alice's other device.
    for token in [bob.client.api().token(), alice.client.api().token()] {
        let raw = Raw::new(&server.url(), token);
        let read: Result<parley_protocol::v1::BlobChunk, _> =
            raw.get(&format!("/v1/blobs/{blob}/0")).await;
        assert_eq!(read.unwrap_err().0, 404);
    }
    let bob_raw = Raw::new(&server.url(), bob.client.api().token());
    let status: Result<parley_protocol::v1::BlobStatus, _> =
        bob_raw.get(&format!("/v1/blobs/{blob}")).await;
    assert_eq!(status.unwrap_err().0, 404);
    // The server changes a byte of it; then it is sealed.
    server
        .database()
        .execute(
            "UPDATE blob_chunks SET data = CAST(X'00' || substr(data, 2) AS BLOB)",
            [],
        )
        .unwrap();
    let alice_raw = Raw::new(&server.url(), alice.client.api().token());
    let sealed: parley_protocol::v1::BlobStatus = alice_raw
        .post(
            &format!("/v1/blobs/{blob}/seal"),
            &parley_protocol::v1::SealBlob { chunks: 1 },
        )
        .await
        .unwrap();
    assert!(sealed.sealed);
    let Err(err) = new_device.task.await.unwrap() else {
        panic!("a changed archive was imported");
    };
    assert!(err.to_string().contains("does not decrypt"), "{err}");
    // Nothing of it was stored.
    let again = parley_client::Client::open(new_device.home.path(), Default::default()).unwrap();
    assert!(history_texts(&again, &ChatRef::Direct(user("bob"))).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_links_a_device_approves_it_and_lists_and_renames_devices() {
    use std::io::{BufRead as _, BufReader};
    let server = TestServer::start();
    let url = server.url();
    let (alice, bob, alice2) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    assert_eq!(cli(alice.path(), &url, &["register", "alice"]).0, 0);
    assert_eq!(cli(bob.path(), &url, &["register", "bob"]).0, 0);
    assert_eq!(
        cli(bob.path(), &url, &["send", "alice", "hello from bob"]).0,
        0
    );
    assert_eq!(cli(alice.path(), &url, &["sync"]).0, 0);
    // A taken name says how to link instead.
    let (status, _, stderr) = cli(alice2.path(), &url, &["register", "alice"]);
    assert_ne!(status, 0);
    assert!(stderr.contains("parley --home DIR link alice"), "{stderr}");

    let mut link = std::process::Command::new(BIN)
        .arg("--home")
        .arg(alice2.path())
        .args([
            "--server", &url, "link", "alice", "--name", "laptop", "--json",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(link.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    let code = serde_json::from_str::<serde_json::Value>(&first).unwrap()["link_code"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, out, err) = cli(alice.path(), &url, &["devices", "approve", &code]);
    assert_eq!(status, 0, "{err}");
    assert!(out.contains("linked: sent the history"), "{out}");
    let finished = link.wait_with_output().unwrap();
    assert!(
        finished.status.success(),
        "{}",
        String::from_utf8_lossy(&finished.stderr)
    );
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    assert!(rest.contains("\"linked\":\"alice\""), "{rest}");

    let (status, out, _) = cli(alice2.path(), &url, &["history", "bob", "--json"]);
    assert_eq!(status, 0);
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 1, "{out}");
    assert_eq!(lines[0]["text"], "hello from bob");
    assert_eq!(lines[0]["history"], true);

    let (status, out, _) = cli(alice.path(), &url, &["devices", "--json"]);
    assert_eq!(status, 0);
    let devices = json_lines(&out);
    assert_eq!(devices.len(), 2, "{out}");
    assert_eq!(devices[0]["current"], true);
    assert_eq!(
        devices[1]["name"], "laptop",
        "named by itself, read by the other"
    );
    let second = devices[1]["id"].as_str().unwrap().to_owned();
    let (status, out, _) = cli(
        alice.path(),
        &url,
        &["devices", "rename", &second[..6], "old laptop"],
    );
    assert_eq!(status, 0, "{out}");
    let (_, out, _) = cli(alice2.path(), &url, &["devices"]);
    assert!(
        out.contains("old laptop") && out.contains("(this device)"),
        "{out}"
    );
    // The server stores the names sealed.
    assert!(!contains(&server.all_bytes(), b"old laptop"));
    assert!(!contains(&server.all_bytes(), b"hello from bob"));
}

/// Every chat a device makes also claims its account's other devices; the claim rate that
/// protects an account's KeyPackages from others must not hold the account itself back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn making_many_chats_is_not_held_back_by_claims_of_ones_own_devices() {
    let server = TestServer::start_with(&["--registration-burst", "40", "--group-burst", "40"]);
    let alice = Device::register(&server.url(), "alice").await;
    let (_home, _second, _) = link_device(&server.url(), &alice.client).await;
    let mut others = Vec::new();
    for i in 0..22 {
        others.push(Device::register(&server.url(), &format!("member{i}")).await);
    }
    for i in 0..22 {
        alice
            .client
            .create_group(&format!("g{i}"), &[user(&format!("member{i}"))])
            .await
            .unwrap_or_else(|e| panic!("group {i}: {e}"));
    }
}

/// A server that hands one new device the history archive made for another (both encrypted,
/// both genuine) is caught: each archive opens only with its own link code's key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_archive_made_for_another_device_is_refused() {
    let server = TestServer::start();
    let (alice, _bob, proxy) = alice_behind_a_proxy(&server, "history").await;
    // Two new devices whose archives are uploaded but not sealed (the approver stops).
    let second = LinkingDevice::start(&server.url(), "alice").await;
    proxy.arm("/seal", Fault::DropRequest);
    assert!(alice
        .client
        .approve_link(&second.code, |_| {})
        .await
        .is_err());
    let third = LinkingDevice::start(&server.url(), "alice").await;
    proxy.arm("/seal", Fault::DropRequest);
    assert!(alice
        .client
        .approve_link(&third.code, |_| {})
        .await
        .is_err());
    second.task.abort();
    let db = server.database();
    let blobs: Vec<Vec<u8>> = db
        .prepare("SELECT archive_blob FROM links ORDER BY created_at")
        .unwrap()
        .query_map([], |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(blobs.len(), 2);
    // The server puts the second device's archive where the third device's was, and seals it.
    db.execute("DELETE FROM blob_chunks WHERE blob_id = ?1", [&blobs[1]])
        .unwrap();
    let moved = db
        .execute(
            "UPDATE blob_chunks SET blob_id = ?2 WHERE blob_id = ?1",
            [&blobs[0], &blobs[1]],
        )
        .unwrap();
    assert!(moved >= 1);
    let raw = Raw::new(&server.url(), alice.client.api().token());
    let sealed: parley_protocol::v1::BlobStatus = raw
        .post(
            &format!("/v1/blobs/{}/seal", hex::encode(&blobs[1])),
            &parley_protocol::v1::SealBlob {
                chunks: moved as u32,
            },
        )
        .await
        .unwrap();
    assert!(sealed.sealed);
    let Err(err) = third.task.await.unwrap() else {
        panic!("another device's archive was imported");
    };
    assert!(err.to_string().contains("does not decrypt"), "{err}");
}
