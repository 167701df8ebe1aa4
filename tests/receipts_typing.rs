//! Receipts and typing indicators (issue 14), against the real server on loopback: delivery
//! and read receipts in 1:1 chats and groups, batched, reciprocal when off, across an
//! account's devices; no receipts at all past the size bound (a 100-member group); typing
//! indicators that reach online members only, are never queued, and are rate-limited.

mod common;

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use parley_client::{ChatRef, Client, MessageView};
use parley_protocol::Username;

fn user(name: &str) -> Username {
    Username::parse(name).unwrap()
}

fn status(client: &Client, chat: &ChatRef, id: &str) -> String {
    let shown: MessageView = client
        .history(chat, 100)
        .unwrap()
        .into_iter()
        .find(|m| m.id == id)
        .unwrap_or_else(|| panic!("no message {id}"));
    shown.status
}

/// A counter from the server's metrics.
async fn counter(server: &TestServer, name: &str) -> u64 {
    let text = reqwest::get(format!("{}/metrics", server.metrics_url()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in the metrics"))
}

fn unread(client: &Client, chat: &str) -> u64 {
    client
        .chats()
        .unwrap()
        .into_iter()
        .find(|c| c.chat == chat)
        .map(|c| c.unread)
        .unwrap_or_else(|| panic!("no chat {chat}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_direct_chat_shows_delivered_then_read_in_batches_and_on_every_device() {
    let server = TestServer::start();
    let alice = Device::register(&server.url(), "alice").await;
    let bob = Device::register(&server.url(), "bob").await;
    let (to_bob, to_alice) = (ChatRef::Direct(user("bob")), ChatRef::Direct(user("alice")));
    alice.client.send_text(&to_bob, "first").await.unwrap();
    bob.client.sync().await.unwrap();
    let (_home, bob2, _) = link_device(&server.url(), &bob.client).await;
    alice.client.sync().await.unwrap();

    let mut sent = Vec::new();
    for text in ["one", "two", "three", "four", "five"] {
        sent.push(alice.client.send_text(&to_bob, text).await.unwrap());
    }
    assert_eq!(status(&alice.client, &to_bob, &sent[4].id), "sent");
    let before = counter(&server, "parley_messages_in_total").await;
    bob.client.sync().await.unwrap();
    assert_eq!(
        counter(&server, "parley_messages_in_total").await - before,
        1,
        "five messages, one delivery receipt"
    );
    alice.client.sync().await.unwrap();
    for message in &sent {
        assert_eq!(status(&alice.client, &to_bob, &message.id), "delivered");
    }

    // bob's other device had them too: it tells nothing new once it heard bob's receipt.
    bob2.sync().await.unwrap();
    assert_eq!(unread(&bob2, "alice"), 5 + 1);
    bob.client.read(&to_alice).await.unwrap();
    alice.client.sync().await.unwrap();
    for message in &sent {
        assert_eq!(status(&alice.client, &to_bob, &message.id), "read");
    }
    // Read on one device is read on all of them.
    bob2.sync().await.unwrap();
    assert_eq!(
        unread(&bob2, "alice"),
        0,
        "bob read the chat on his first device"
    );
    let before = counter(&server, "parley_messages_in_total").await;
    bob2.read(&to_alice).await.unwrap();
    assert_eq!(
        counter(&server, "parley_messages_in_total").await,
        before,
        "what bob's other device told the chat is not told again"
    );

    // alice's own messages and her receipts from the other side.
    let answer = bob.client.send_text(&to_alice, "hi").await.unwrap();
    alice.client.sync().await.unwrap();
    bob.client.sync().await.unwrap();
    assert_eq!(status(&bob.client, &to_alice, &answer.id), "delivered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reading_offline_marks_the_chat_read_and_the_receipt_follows_with_the_next_sync() {
    let mut server = TestServer::start();
    let alice = Device::register(&server.url(), "alice").await;
    let bob = Device::register(&server.url(), "bob").await;
    let (to_bob, to_alice) = (ChatRef::Direct(user("bob")), ChatRef::Direct(user("alice")));
    let sent = alice
        .client
        .send_text(&to_bob, "read me later")
        .await
        .unwrap();
    bob.client.sync().await.unwrap();
    server.kill();
    bob.client.read(&to_alice).await.unwrap();
    assert_eq!(unread(&bob.client, "alice"), 0);
    server.restart();
    bob.client.sync().await.unwrap();
    alice.client.sync().await.unwrap();
    assert_eq!(status(&alice.client, &to_bob, &sent.id), "read");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_receipts_off_is_reciprocal_and_holds_on_all_of_the_accounts_devices() {
    let server = TestServer::start();
    let alice = Device::register(&server.url(), "alice").await;
    let bob = Device::register(&server.url(), "bob").await;
    let (to_bob, to_alice) = (ChatRef::Direct(user("bob")), ChatRef::Direct(user("alice")));
    alice.client.send_text(&to_bob, "hello").await.unwrap();
    bob.client.sync().await.unwrap();
    let (_home, alice2, _) = link_device(&server.url(), &alice.client).await;
    bob.client.sync().await.unwrap();

    alice.client.set_read_receipts(false).await.unwrap();
    alice2.sync().await.unwrap();
    assert!(
        !alice2.read_receipts().unwrap(),
        "the setting is account-wide"
    );
    let (_home3, alice3, _) = link_device(&server.url(), &alice.client).await;
    assert!(
        !alice3.read_receipts().unwrap(),
        "a new device takes it up with the history"
    );

    // alice sends none: bob never sees "read" for what alice reads...
    let from_bob = bob
        .client
        .send_text(&to_alice, "did you read this?")
        .await
        .unwrap();
    alice.client.sync().await.unwrap();
    alice.client.read(&to_bob).await.unwrap();
    alice2.sync().await.unwrap();
    alice2.read(&to_bob).await.unwrap();
    bob.client.sync().await.unwrap();
    assert_eq!(status(&bob.client, &to_alice, &from_bob.id), "delivered");
    // ...and sees none: bob reads alice's message, alice's devices show it delivered only.
    let from_alice = alice2.send_text(&to_bob, "and this?").await.unwrap();
    bob.client.sync().await.unwrap();
    bob.client.read(&to_alice).await.unwrap();
    for device in [&alice.client, &alice2] {
        device.sync().await.unwrap();
        assert_eq!(status(device, &to_bob, &from_alice.id), "delivered");
    }

    // On again: bob's next read shows.
    alice2.set_read_receipts(true).await.unwrap();
    alice.client.sync().await.unwrap();
    assert!(alice.client.read_receipts().unwrap());
    let again = alice.client.send_text(&to_bob, "now?").await.unwrap();
    bob.client.sync().await.unwrap();
    bob.client.read(&to_alice).await.unwrap();
    alice.client.sync().await.unwrap();
    assert_eq!(status(&alice.client, &to_bob, &again.id), "read");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_message_is_read_once_every_member_read_it_and_receipts_stay_within_the_bound() {
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
    let message = alice.client.send_text(&team, "standup?").await.unwrap();
    let (messages, deliveries) = (
        counter(&server, "parley_messages_in_total").await,
        counter(&server, "parley_deliveries_total").await,
    );
    bob.client.sync().await.unwrap();
    alice.client.sync().await.unwrap();
    assert_eq!(
        status(&alice.client, &team, &message.id),
        "sent",
        "carol has not got it"
    );
    carol.client.sync().await.unwrap();
    alice.client.sync().await.unwrap();
    assert_eq!(status(&alice.client, &team, &message.id), "delivered");
    // The bound: one receipt per member and batch, each to the other member devices.
    assert_eq!(
        counter(&server, "parley_messages_in_total").await - messages,
        2
    );
    assert_eq!(
        counter(&server, "parley_deliveries_total").await - deliveries,
        2 * 2
    );

    bob.client.read(&team).await.unwrap();
    alice.client.sync().await.unwrap();
    assert_eq!(
        status(&alice.client, &team, &message.id),
        "delivered",
        "carol has not read it"
    );
    carol.client.read(&team).await.unwrap();
    alice.client.sync().await.unwrap();
    assert_eq!(status(&alice.client, &team, &message.id), "read");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_member_group_sends_no_receipts_at_all() {
    // A hundred clients on one address keep more connections open than the default allows.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("parley.toml");
    std::fs::write(&config, "max_connections_per_address = 1000\n").unwrap();
    let server = TestServer::start_with(&["--config", config.to_str().unwrap()]);
    let started = Instant::now();
    let names: Vec<String> = (1..100).map(|i| format!("member{i:02}")).collect();
    let alice = Device::register(&server.url(), "alice").await;
    let mut members = Vec::new();
    for name in &names {
        members.push(Device::register(&server.url(), name).await);
    }
    let usernames: Vec<Username> = names.iter().map(|n| user(n)).collect();
    alice.client.create_group("town", &usernames).await.unwrap();
    for member in &members {
        member.client.sync().await.unwrap();
    }
    let town = ChatRef::parse("#town").unwrap();
    let message = alice
        .client
        .send_text(&town, "welcome, all 99 of you")
        .await
        .unwrap();
    let before = counter(&server, "parley_messages_in_total").await;
    for member in &members {
        let got = member.client.sync().await.unwrap();
        assert!(got.iter().any(|m| m.id == message.id));
        member.client.read(&town).await.unwrap();
    }
    assert_eq!(
        counter(&server, "parley_messages_in_total").await,
        before,
        "past {} accounts a chat has no receipts",
        parley_protocol::limits::MAX_RECEIPT_ACCOUNTS
    );
    alice.client.sync().await.unwrap();
    assert_eq!(status(&alice.client, &town, &message.id), "sent");
    eprintln!("100-member group test took {:?}", started.elapsed());
}

/// `parley sync --follow --json` of a home, as a child process whose lines arrive on a channel.
struct Follower {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<serde_json::Value>,
}

impl Follower {
    fn start(home: &std::path::Path, server: &str) -> Follower {
        let mut child = Command::new(env!("CARGO_BIN_EXE_parley"))
            .args(["--home", home.to_str().unwrap(), "--server", server])
            .args(["sync", "--follow", "--json"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Ok(value) = serde_json::from_str(&line) {
                    if tx.send(value).is_err() {
                        break;
                    }
                }
            }
        });
        Follower { child, lines }
    }

    /// Lines until `until` holds for one (returned), or panics after `within`.
    fn wait_for(
        &self,
        within: Duration,
        until: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if until(&line) => return line,
                Ok(_) => {}
                Err(_) => panic!("nothing matching within {within:?}"),
            }
        }
    }

    /// Every line that arrives within `within`.
    fn collect(&self, within: Duration) -> Vec<serde_json::Value> {
        let deadline = Instant::now() + within;
        let mut all = Vec::new();
        while let Ok(line) = self
            .lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            all.push(line);
        }
        all
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn is_typing(line: &serde_json::Value) -> bool {
    line["kind"] == "typing"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typing_reaches_online_members_only_is_never_queued_and_is_rate_limited() {
    let server = TestServer::start();
    let url = server.url();
    let (alice, bob) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let ok = |home: &std::path::Path, args: &[&str]| {
        let (code, out, err) = cli(home, &url, args);
        assert_eq!(code, 0, "parley {args:?}: {out}{err}");
        out
    };
    ok(alice.path(), &["register", "alice"]);
    ok(bob.path(), &["register", "bob"]);
    ok(alice.path(), &["send", "bob", "hello"]);
    ok(bob.path(), &["sync"]);

    let follower = Follower::start(bob.path(), &url);
    // Connected once its first sync is done: alice's indicator finds it online.
    std::thread::sleep(Duration::from_secs(2));
    let before = counter(&server, "parley_deliveries_total").await;
    ok(alice.path(), &["typing", "bob"]);
    let line = follower.wait_for(Duration::from_secs(10), is_typing);
    assert_eq!(
        (
            line["chat"].as_str(),
            line["sender"].as_str(),
            line["stopped"].as_bool()
        ),
        (Some("alice"), Some("alice"), Some(false))
    );
    ok(alice.path(), &["typing", "bob", "--stopped"]);
    let line = follower.wait_for(Duration::from_secs(10), is_typing);
    assert_eq!(line["stopped"].as_bool(), Some(true));
    assert_eq!(
        counter(&server, "parley_deliveries_total").await,
        before,
        "the server queued nothing for the indicators"
    );

    // A flood: past the burst, one a second gets through, whatever the connections.
    let flood = Instant::now();
    for _ in 0..20 {
        cli(alice.path(), &url, &["typing", "bob", "--stopped"]);
    }
    let seconds = flood.elapsed().as_secs() + 1;
    let heard = follower
        .collect(Duration::from_secs(2))
        .into_iter()
        .filter(is_typing)
        .count() as u64;
    let bound = parley_protocol::limits::TYPING_BURST as u64
        + seconds * parley_protocol::limits::TYPING_PER_SECOND as u64;
    assert!(
        heard >= 1 && heard <= bound,
        "{heard} of 20 got through; the bound is {bound}"
    );
    drop(follower);

    // Offline, bob hears nothing of it later: nothing waits for him.
    std::thread::sleep(Duration::from_secs(2));
    ok(alice.path(), &["typing", "bob"]);
    assert_eq!(counter(&server, "parley_deliveries_total").await, before);
    let out = ok(bob.path(), &["sync", "--json"]);
    assert!(!out.contains("typing"), "{out}");
}
