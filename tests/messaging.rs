//! End-to-end messaging against the real server binary, with client library devices.

mod common;

use common::*;
use parley_client::{ChatRef, MessageView};
use parley_protocol::Username;

fn user(name: &str) -> Username {
    Username::parse(name).unwrap()
}

/// The texts among messages (notices such as "alice added you to #team" left out).
fn texts(messages: &[MessageView]) -> Vec<&str> {
    messages
        .iter()
        .filter(|m| m.kind == "text")
        .map(|m| m.text.as_str())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offline_recipient_receives_everything_later_in_order() {
    let server = TestServer::start();
    let alice = Device::register(&server.url(), "alice").await;
    let bob = Device::register(&server.url(), "bob").await;
    // Bob does nothing: he is offline while Alice writes.
    let sent: Vec<String> = (0..1000).map(|i| unique(&format!("offline-{i}"))).collect();
    for text in &sent {
        let view = alice
            .client
            .send_text(&ChatRef::Direct(user("bob")), text)
            .await
            .unwrap();
        assert_eq!(view.status, "sent");
    }
    let received = bob.client.sync().await.unwrap();
    assert_eq!(
        texts(&received),
        sent.iter().map(String::as_str).collect::<Vec<_>>()
    );
    assert!(received
        .iter()
        .all(|m| m.chat == "alice" && m.sender == "alice"));
    // Nothing is shown twice on the next sync.
    assert!(bob.client.sync().await.unwrap().is_empty());
    assert_eq!(
        bob.client
            .history(&ChatRef::Direct(user("alice")), 1000)
            .unwrap()
            .len(),
        sent.len()
    );

    let everything = server.all_bytes();
    for text in &sent {
        assert!(
            !contains(&everything, text.as_bytes()),
            "server holds plaintext {text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_of_fifty_exchanges_messages_from_several_members() {
    let server = TestServer::start();
    let mut devices = Vec::new();
    for i in 0..50 {
        devices.push(Device::register(&server.url(), &format!("member{i:02}")).await);
    }
    let group_name = unique("fifty");
    let others: Vec<Username> = (1..50).map(|i| user(&format!("member{i:02}"))).collect();
    devices[0]
        .client
        .create_group(&group_name, &others)
        .await
        .unwrap();
    let chat = ChatRef::Group(group_name.clone());

    let mut sent = Vec::new();
    for speaker in [0usize, 7, 23, 49] {
        // Joining happens on sync (the Welcome waits in the queue).
        devices[speaker].client.sync().await.unwrap();
        let text = unique(&format!("from-{speaker}"));
        devices[speaker]
            .client
            .send_text(&chat, &text)
            .await
            .unwrap();
        sent.push((speaker, text));
    }
    for (index, device) in devices.iter().enumerate() {
        device.client.sync().await.unwrap();
        let history = device.client.history(&chat, 100).unwrap();
        let seen: Vec<&str> = texts(&history);
        for (speaker, text) in &sent {
            assert!(
                seen.contains(&text.as_str()),
                "member {index} misses the message of member {speaker}"
            );
        }
        assert_eq!(
            seen.len(),
            sent.len(),
            "member {index} sees duplicates or strangers"
        );
    }
    let states: Vec<_> = devices
        .iter()
        .map(|d| d.client.group_state(&chat).unwrap())
        .collect();
    assert!(
        states.windows(2).all(|w| w[0] == w[1]),
        "members disagree on the group state"
    );
    assert_eq!(states[0].members.len(), 50);

    let everything = server.all_bytes();
    assert!(
        !contains(&everything, group_name.as_bytes()),
        "server holds the group name"
    );
    for (_, text) in &sent {
        assert!(
            !contains(&everything, text.as_bytes()),
            "server holds plaintext {text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_member_cannot_read_later_messages_and_an_added_one_can() {
    let server = TestServer::start();
    let alice = Device::register(&server.url(), "alice").await;
    let bob = Device::register(&server.url(), "bob").await;
    let carol = Device::register(&server.url(), "carol").await;
    let dave = Device::register(&server.url(), "dave").await;
    alice
        .client
        .create_group("team", &[user("bob"), user("carol")])
        .await
        .unwrap();
    let team = ChatRef::Group("team".into());
    alice.client.send_text(&team, "before").await.unwrap();
    assert_eq!(texts(&carol.client.sync().await.unwrap()), ["before"]);

    // Only admins remove others: Bob may not remove Carol.
    bob.client.sync().await.unwrap();
    assert!(bob
        .client
        .remove_members("team", &[user("carol")])
        .await
        .is_err());

    alice
        .client
        .remove_members("team", &[user("carol")])
        .await
        .unwrap();
    alice
        .client
        .add_members("team", &[user("dave")])
        .await
        .unwrap();
    let secret = unique("after-removal");
    alice.client.send_text(&team, &secret).await.unwrap();

    assert!(
        texts(&carol.client.sync().await.unwrap()).is_empty(),
        "a removed member read a later message"
    );
    let carol_chats = carol.client.chats().unwrap();
    assert_eq!(carol_chats[0].state, "left");
    assert!(carol.client.send_text(&team, "still here?").await.is_err());
    assert_eq!(texts(&dave.client.sync().await.unwrap()), [secret.as_str()]);
    assert_eq!(texts(&bob.client.sync().await.unwrap()), [secret.as_str()]);

    // Bob leaves; the next member online commits his departure.
    bob.client.leave_group("team").await.unwrap();
    alice.client.sync().await.unwrap();
    let state = alice.client.group_state(&team).unwrap();
    assert_eq!(state.members, ["alice", "dave"]);
    bob.client.sync().await.unwrap();
    assert_eq!(
        bob.client
            .chats()
            .unwrap()
            .iter()
            .find(|c| c.chat == "#team")
            .unwrap()
            .state,
        "left"
    );
    dave.client.sync().await.unwrap();
    assert_eq!(dave.client.group_state(&team).unwrap(), state);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_members_committing_in_the_same_epoch_converge() {
    let server = TestServer::start();
    let alice = Device::register(&server.url(), "alice").await;
    let bob = Device::register(&server.url(), "bob").await;
    let _carol = Device::register(&server.url(), "carol").await;
    let _dave = Device::register(&server.url(), "dave").await;
    alice
        .client
        .create_group("race", &[user("bob")])
        .await
        .unwrap();
    bob.client.sync().await.unwrap();
    let race = ChatRef::Group("race".into());
    let epoch_before = alice.client.group_state(&race).unwrap().epoch;
    assert_eq!(bob.client.group_state(&race).unwrap().epoch, epoch_before);

    // Both add someone from the same epoch; one wins, the other merges the winner and retries.
    let (carol, dave) = ([user("carol")], [user("dave")]);
    let (a, b) = tokio::join!(
        alice.client.add_members("race", &carol),
        bob.client.add_members("race", &dave)
    );
    a.unwrap();
    b.unwrap();
    alice.client.sync().await.unwrap();
    bob.client.sync().await.unwrap();
    let a_state = alice.client.group_state(&race).unwrap();
    let b_state = bob.client.group_state(&race).unwrap();
    assert_eq!(a_state, b_state);
    assert_eq!(a_state.members, ["alice", "bob", "carol", "dave"]);
    assert!(a_state.epoch >= epoch_before + 2);

    // Bob, not having synced, builds a commit on an epoch that has already moved on: the server
    // refuses it (wrong epoch), Bob merges Alice's commit and builds his again.
    let _erin = Device::register(&server.url(), "erin").await;
    let _frank = Device::register(&server.url(), "frank").await;
    alice
        .client
        .add_members("race", &[user("erin")])
        .await
        .unwrap();
    bob.client
        .add_members("race", &[user("frank")])
        .await
        .unwrap();
    alice.client.sync().await.unwrap();
    let a_state = alice.client.group_state(&race).unwrap();
    assert_eq!(a_state, bob.client.group_state(&race).unwrap());
    assert_eq!(
        a_state.members,
        ["alice", "bob", "carol", "dave", "erin", "frank"]
    );
    let log = std::fs::read_to_string(server.log_path()).unwrap();
    assert!(
        log.contains("WrongEpoch"),
        "the server never refused a stale commit"
    );

    // And both can still talk to each other.
    alice.client.send_text(&race, "from alice").await.unwrap();
    bob.client.send_text(&race, "from bob").await.unwrap();
    assert!(texts(&alice.client.sync().await.unwrap()).contains(&"from bob"));
    assert!(texts(&bob.client.sync().await.unwrap()).contains(&"from alice"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_submission_retried_after_a_dropped_response_is_stored_once() {
    let server = TestServer::start();
    let proxy = FaultyProxy::start(server.port).await;
    let mut alice = Device::register(&server.url(), "alice").await;
    let bob = Device::register(&server.url(), "bob").await;
    alice.reopen(Some(proxy.url()));
    alice
        .client
        .send_text(&ChatRef::Direct(user("bob")), "first")
        .await
        .unwrap();

    // The server stores the message, but its answer never reaches Alice.
    proxy.arm("POST /v1/messages", Fault::DropResponse);
    let view = alice
        .client
        .send_text(&ChatRef::Direct(user("bob")), "only once")
        .await
        .unwrap();
    assert!(proxy.fired.load(std::sync::atomic::Ordering::SeqCst));
    assert_eq!(view.status, "sending");
    // The outbox retries with the same message id; the server answers with the first result.
    alice.client.sync().await.unwrap();
    let history = alice
        .client
        .history(&ChatRef::Direct(user("bob")), 10)
        .unwrap();
    assert_eq!(history.last().unwrap().status, "sent");

    // A request that never arrived is simply sent again.
    proxy.arm("POST /v1/messages", Fault::DropRequest);
    let view = alice
        .client
        .send_text(&ChatRef::Direct(user("bob")), "lost request")
        .await
        .unwrap();
    assert_eq!(view.status, "sending");
    alice.client.sync().await.unwrap();

    let received = bob.client.sync().await.unwrap();
    assert_eq!(texts(&received), ["first", "only once", "lost request"]);

    // An acknowledgement lost on the way back makes the server deliver again; nothing shows twice.
    let mut bob = bob;
    bob.reopen(Some(proxy.url()));
    alice
        .client
        .send_text(&ChatRef::Direct(user("bob")), "ack lost")
        .await
        .unwrap();
    proxy.arm("POST /v1/queue/ack", Fault::DropResponse);
    assert_eq!(texts(&bob.client.receive().await.unwrap()), ["ack lost"]);
    assert!(bob.client.receive().await.unwrap().is_empty());
    assert_eq!(
        bob.client
            .history(&ChatRef::Direct(user("alice")), 10)
            .unwrap()
            .len(),
        4
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_killed_mid_traffic_loses_nothing_and_shows_nothing_twice() {
    let mut server = TestServer::start();
    let alice = std::sync::Arc::new(Device::register(&server.url(), "alice").await);
    let carol = std::sync::Arc::new(Device::register(&server.url(), "carol").await);
    let bob = Device::register(&server.url(), "bob").await;
    alice
        .client
        .create_group("busy", &[user("bob"), user("carol")])
        .await
        .unwrap();
    carol.client.sync().await.unwrap();
    let chat = ChatRef::Group("busy".into());

    // Two members send continuously while the server is killed and restarted under them.
    let sender = |device: std::sync::Arc<Device>, label: &'static str| {
        let chat = chat.clone();
        tokio::spawn(async move {
            let mut sent = Vec::new();
            for i in 0..60 {
                let text = unique(&format!("{label}-{i}"));
                // While the server is down a message waits in the outbox ("sending").
                device.client.send_text(&chat, &text).await.unwrap();
                sent.push(text);
                tokio::time::sleep(std::time::Duration::from_millis(3)).await;
            }
            sent
        })
    };
    let (from_alice, from_carol) = (
        sender(alice.clone(), "alice"),
        sender(carol.clone(), "carol"),
    );
    for _ in 0..3 {
        tokio::time::sleep(std::time::Duration::from_millis(120)).await;
        server.kill();
        tokio::time::sleep(std::time::Duration::from_millis(60)).await;
        server.restart();
    }
    let (from_alice, from_carol) = (from_alice.await.unwrap(), from_carol.await.unwrap());
    for device in [&alice, &carol] {
        device.client.sync().await.unwrap();
        let mine = device.client.history(&chat, 1000).unwrap();
        assert!(mine
            .iter()
            .filter(|m| m.sender == device.client.username().as_str())
            .all(|m| m.status == "sent"));
    }
    bob.client.sync().await.unwrap();
    let history = bob.client.history(&chat, 1000).unwrap();
    for (sender, sent) in [("alice", &from_alice), ("carol", &from_carol)] {
        let got: Vec<&str> = history
            .iter()
            .filter(|m| m.sender == sender && m.kind == "text")
            .map(|m| m.text.as_str())
            .collect();
        assert_eq!(
            got,
            sent.iter().map(String::as_str).collect::<Vec<_>>(),
            "{sender}'s messages lost, doubled or reordered"
        );
    }
    let ids: std::collections::HashSet<&str> = history.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids.len(), history.len());

    let everything = server.all_bytes();
    for text in from_alice.iter().chain(&from_carol) {
        assert!(
            !contains(&everything, text.as_bytes()),
            "server holds plaintext {text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_closed_before_upload_sends_from_its_outbox_on_the_next_start() {
    let mut server = TestServer::start();
    let mut alice = Device::register(&server.url(), "alice").await;
    let bob = Device::register(&server.url(), "bob").await;
    alice
        .client
        .send_text(&ChatRef::Direct(user("bob")), "one")
        .await
        .unwrap();
    server.kill();
    let view = alice
        .client
        .send_text(&ChatRef::Direct(user("bob")), "two")
        .await
        .unwrap();
    assert_eq!(view.status, "sending");
    // The app is closed and started again later, when the server is back.
    alice.reopen(None);
    server.restart();
    alice.client.sync().await.unwrap();
    assert_eq!(texts(&bob.client.sync().await.unwrap()), ["one", "two"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_delivery_pushes_messages_without_polling() {
    let server = TestServer::start();
    let alice = Device::register(&server.url(), "alice").await;
    let bob = Device::register(&server.url(), "bob").await;
    alice
        .client
        .send_text(&ChatRef::Direct(user("bob")), "warm-up")
        .await
        .unwrap();

    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let follower = tokio::spawn(async move {
        bob.client
            .follow(
                move |m| {
                    let _ = tx.send(m.text.clone());
                },
                |_| {},
                async {
                    let _ = stop_rx.await;
                },
            )
            .await
    });
    let first = tokio::time::timeout(std::time::Duration::from_secs(20), rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first, "warm-up");
    alice
        .client
        .send_text(&ChatRef::Direct(user("bob")), "pushed")
        .await
        .unwrap();
    let pushed = tokio::time::timeout(std::time::Duration::from_secs(5), rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(pushed, "pushed");
    let _ = stop_tx.send(());
    follower.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_accepted_while_its_answer_was_lost_is_merged_before_anything_else() {
    let server = TestServer::start();
    let proxy = FaultyProxy::start(server.port).await;
    let mut alice = Device::register(&server.url(), "alice").await;
    let bob = Device::register(&server.url(), "bob").await;
    let _dave = Device::register(&server.url(), "dave").await;
    alice
        .client
        .create_group("lossy", &[user("bob")])
        .await
        .unwrap();
    bob.client.sync().await.unwrap();
    alice.reopen(Some(proxy.url()));

    // The server accepts Alice's commit but she never hears so (the app may even restart).
    proxy.arm("POST /v1/messages", Fault::DropResponse);
    let err = alice
        .client
        .add_members("lossy", &[user("dave")])
        .await
        .unwrap_err();
    assert!(err.is_transient(), "{err}");
    alice.reopen(Some(proxy.url()));

    // Bob is already in the new epoch and writes in it.
    bob.client.sync().await.unwrap();
    assert_eq!(
        bob.client
            .group_state(&ChatRef::Group("lossy".into()))
            .unwrap()
            .members,
        ["alice", "bob", "dave"]
    );
    bob.client
        .send_text(&ChatRef::Group("lossy".into()), "new epoch")
        .await
        .unwrap();

    // Alice's next receive first settles her commit, then reads Bob's message.
    assert_eq!(texts(&alice.client.receive().await.unwrap()), ["new epoch"]);
    assert_eq!(
        alice
            .client
            .group_state(&ChatRef::Group("lossy".into()))
            .unwrap(),
        bob.client
            .group_state(&ChatRef::Group("lossy".into()))
            .unwrap()
    );
    assert_eq!(alice.client.unverifiable_count().unwrap(), 0);
}
