//! Disappearing messages (issue 14), against the real server on loopback: a chat's timer
//! (30 s to 4 weeks; any member of a 1:1 chat, admins of a group) takes each message sent after
//! it, with its reactions and its file, from every device (the database's bytes too) and from
//! the server (the queue and the attachment store) at its time.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use parley_client::{ChatRef, Client};
use parley_protocol::Username;

fn user(name: &str) -> Username {
    Username::parse(name).unwrap()
}

/// Every byte of a client home: its database, write-ahead log and files.
fn home_bytes(home: &Path) -> Vec<u8> {
    walk(home)
        .into_iter()
        .flat_map(|f| std::fs::read(f).unwrap_or_default())
        .collect()
}

fn objects(data_dir: &Path) -> Vec<PathBuf> {
    walk(&data_dir.join("objects"))
}

fn shows(client: &Client, chat: &ChatRef, id: &str) -> bool {
    client
        .history(chat, 100)
        .unwrap()
        .iter()
        .any(|m| m.id == id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_30_second_timer_takes_message_reactions_and_file_from_every_device_and_the_server() {
    let server = TestServer::start();
    let alice = Device::register(&server.url(), "alice").await;
    let bob = Device::register(&server.url(), "bob").await;
    let (to_bob, to_alice) = (ChatRef::Direct(user("bob")), ChatRef::Direct(user("alice")));
    let before = alice
        .client
        .send_text(&to_bob, "before the timer")
        .await
        .unwrap();
    bob.client.sync().await.unwrap();
    // bob's second device stays offline: what waits for it in the queue must go too.
    let (bob2_home, bob2, _) = link_device(&server.url(), &bob.client).await;

    assert!(
        alice
            .client
            .set_disappearing(&to_bob, Some(29))
            .await
            .is_err(),
        "under 30 s"
    );
    alice
        .client
        .set_disappearing(&to_bob, Some(30))
        .await
        .unwrap();
    assert_eq!(alice.client.disappearing(&to_bob).unwrap(), 30);
    let lines = bob.client.sync().await.unwrap();
    assert!(
        lines.iter().any(|m| m.kind == "notice"
            && m.text == "alice set messages to disappear 30 seconds after sending"),
        "{lines:?}"
    );
    assert_eq!(bob.client.disappearing(&to_alice).unwrap(), 30);

    let marker = "DISAPPEARING-MARKER-4b1d";
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("note.txt");
    std::fs::write(&file, marker.repeat(1000)).unwrap();
    let sent = alice
        .client
        .send_file(&to_bob, &file, Some(marker), None, &|_, _| {})
        .await
        .unwrap();
    let expires = sent.expires_at.clone().expect("the message disappears");
    let got = bob.client.sync().await.unwrap();
    let received = got.iter().find(|m| m.id == sent.id).expect("bob has it");
    assert_eq!(
        received.expires_at.as_deref(),
        Some(expires.as_str()),
        "the same time everywhere"
    );
    assert!(before.expires_at.is_none(), "earlier messages stay");
    bob.client.react(&sent.id, "👍", false).await.unwrap();
    alice.client.sync().await.unwrap();
    let saved = bob
        .client
        .save_attachment(&sent.id, 0, Some(&dir.path().join("saved.txt")), &|_, _| {})
        .await
        .unwrap();
    assert_eq!(std::fs::read(saved).unwrap(), std::fs::read(&file).unwrap());
    // Until its time, it is there (so that the checks below could fail).
    assert!(contains(&home_bytes(bob.home.path()), marker.as_bytes()));
    assert!(
        !objects(&server.data_dir()).is_empty(),
        "bob2 has not fetched it yet"
    );

    let at = chrono::DateTime::parse_from_rfc3339(&expires).unwrap();
    let wait = (at.timestamp_millis() - chrono::Utc::now().timestamp_millis()).max(0) as u64;
    // The server's housekeeping runs every 10 seconds.
    tokio::time::sleep(Duration::from_millis(wait) + Duration::from_secs(12)).await;

    for (client, chat) in [(&alice.client, &to_bob), (&bob.client, &to_alice)] {
        assert!(!shows(client, chat, &sent.id), "gone from history");
        assert!(
            shows(client, chat, &before.id),
            "what was sent before the timer stays"
        );
    }
    for home in [alice.home.path(), bob.home.path()] {
        assert!(
            !contains(&home_bytes(home), marker.as_bytes()),
            "gone from {home:?}"
        );
    }
    assert!(
        objects(&server.data_dir()).is_empty(),
        "the server deleted the file"
    );
    // The device that was offline never sees it: the server overwrote it in the queue.
    bob2.sync().await.unwrap();
    assert!(!shows(&bob2, &to_alice, &sent.id));
    assert!(shows(&bob2, &to_alice, &before.id));
    assert!(!contains(&home_bytes(bob2_home.path()), marker.as_bytes()));
    assert!(!contains(&server.all_bytes(), marker.as_bytes()));

    // Off again: what follows stays.
    bob.client.set_disappearing(&to_alice, None).await.unwrap();
    alice.client.sync().await.unwrap();
    assert_eq!(alice.client.disappearing(&to_bob).unwrap(), 0);
    let after = alice.client.send_text(&to_bob, "after").await.unwrap();
    assert!(after.expires_at.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_group_only_admins_set_the_timer_and_it_reaches_every_member() {
    let server = TestServer::start();
    let alice = Device::register(&server.url(), "alice").await;
    let bob = Device::register(&server.url(), "bob").await;
    let carol = Device::register(&server.url(), "carol").await;
    alice
        .client
        .create_group("team", &[user("bob"), user("carol")])
        .await
        .unwrap();
    let team = ChatRef::parse("#team").unwrap();
    for device in [&bob, &carol] {
        device.client.sync().await.unwrap();
    }
    let refused = bob
        .client
        .set_disappearing(&team, Some(3600))
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("admin"), "{refused}");
    alice
        .client
        .set_disappearing(&team, Some(3600))
        .await
        .unwrap();
    for device in [&bob, &carol] {
        device.client.sync().await.unwrap();
        assert_eq!(device.client.disappearing(&team).unwrap(), 3600);
    }
    let message = carol
        .client
        .send_text(&team, "gone in an hour")
        .await
        .unwrap();
    bob.client.sync().await.unwrap();
    let seen = bob
        .client
        .history(&team, 10)
        .unwrap()
        .into_iter()
        .find(|m| m.id == message.id)
        .unwrap();
    assert_eq!(seen.expires_at, message.expires_at);
    let lines: Vec<String> = bob
        .client
        .history(&team, 10)
        .unwrap()
        .into_iter()
        .filter(|m| m.kind == "notice")
        .map(|m| m.text)
        .collect();
    assert!(
        lines.contains(&"alice set messages to disappear 1 hour after sending".to_string()),
        "{lines:?}"
    );
}
