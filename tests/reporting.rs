//! Verifiable reports (message franking) and moderation, end to end with the real server.

mod common;

use common::*;
use parley_client::{ChatRef, EvidenceBundle};
use parley_protocol::{v1, ErrorCode, Username};
use prost::Message;

fn user(name: &str) -> Username {
    Username::parse(name).unwrap()
}

fn reports(server: &TestServer) -> Vec<serde_json::Value> {
    let (status, out, err) = admin(server, &["reports", "--json"]);
    assert_eq!(status, 0, "{err}");
    json_lines(&out)
}

/// Changes one byte of a hex field.
fn flip(hex_text: &str, at: usize) -> String {
    let mut bytes = hex::decode(hex_text).unwrap();
    let at = at.min(bytes.len() - 1);
    bytes[at] ^= 0x01;
    hex::encode(bytes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reported_messages_reach_moderators_verified_and_forgeries_do_not() {
    let server = TestServer::start();
    let alice = Device::register(&server.url(), "alice").await;
    let bob = Device::register(&server.url(), "bob").await;
    let carol = Device::register(&server.url(), "carol").await;
    let private_text = unique("never-reported");
    alice
        .client
        .send_text(&ChatRef::Direct(user("bob")), &private_text)
        .await
        .unwrap();
    alice
        .client
        .send_text(&ChatRef::Direct(user("bob")), "buy cheap pills now")
        .await
        .unwrap();
    alice
        .client
        .create_group("club", &[user("bob"), user("carol")])
        .await
        .unwrap();
    alice
        .client
        .send_text(&ChatRef::Group("club".into()), "group abuse")
        .await
        .unwrap();
    let received = bob.client.sync().await.unwrap();
    let direct = received
        .iter()
        .find(|m| m.text == "buy cheap pills now")
        .unwrap();
    let in_group = received.iter().find(|m| m.text == "group abuse").unwrap();

    // A 1:1 message with the message before it as context, and a group message.
    let bundle = bob.client.report_bundle(&direct.id, "spam", 1).unwrap();
    assert_eq!(bundle.context.len(), 1);
    bob.client.send_report(&bundle).await.unwrap();
    let group_bundle = bob
        .client
        .report_bundle(&in_group.id, "harassment", 0)
        .unwrap();
    bob.client.send_report(&group_bundle).await.unwrap();
    let queue = reports(&server);
    assert_eq!(queue.len(), 2);
    assert_eq!(queue[0]["text"], "buy cheap pills now");
    assert_eq!(queue[0]["accused"], "alice");
    assert_eq!(queue[0]["reporter"], "bob");
    assert_eq!(queue[0]["reason"], "spam");
    assert_eq!(queue[0]["status"], "open");
    assert_eq!(
        queue[0]["context"][0]["text"],
        private_text.as_str(),
        "context is what the reporter chose to add"
    );
    assert_eq!(queue[1]["text"], "group abuse");
    assert_eq!(queue[1]["reason"], "harassment");

    // Forgeries and replays.
    let refused = |result: Result<u64, parley_client::ClientError>| {
        result.unwrap_err().server_code().unwrap()
    };
    assert_eq!(
        refused(bob.client.send_report(&bundle).await),
        ErrorCode::Replay,
        "a report sent twice"
    );
    let fresh = bob.client.report_bundle(&direct.id, "again", 0).unwrap();
    let mut altered_text = fresh.clone();
    let text_at = hex::decode(&fresh.message.payload)
        .unwrap()
        .windows(4)
        .position(|w| w == b"buy ")
        .unwrap();
    altered_text.message.payload = flip(&fresh.message.payload, text_at);
    let mut altered_salt = fresh.clone();
    altered_salt.message.payload = flip(&fresh.message.payload, 2);
    let mut other_frank = fresh.clone();
    other_frank.message.frank = group_bundle.message.frank.clone();
    let mut other_context = fresh.clone();
    other_context.message.group_seq += 1;
    let mut other_sender = fresh.clone();
    other_sender.message.sender = "carol".into();
    for (label, forged) in [
        ("text changed", altered_text),
        ("salt changed", altered_salt),
        ("another message's frank", other_frank),
        ("another position", other_context),
        ("another sender", other_sender),
    ] {
        let code = refused(bob.client.send_report(&forged).await);
        assert_eq!(code, ErrorCode::Forbidden, "{label}");
    }
    // Carol is not in Alice and Bob's chat: she cannot report from it, even with Bob's bundle.
    assert_eq!(
        refused(carol.client.send_report(&fresh).await),
        ErrorCode::NotMember
    );
    assert_eq!(
        reports(&server).len(),
        2,
        "nothing forged reached the queue"
    );

    // The export / from-file round trip.
    let file = bob.home.path().join("evidence.json");
    std::fs::write(&file, serde_json::to_vec(&fresh).unwrap()).unwrap();
    let back: EvidenceBundle = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(back, fresh);

    // A moderator dismisses the group report.
    let (status, out, _) = admin(&server, &["dismiss", &queue[1]["id"].to_string()]);
    assert_eq!(status, 0, "{out}");
    assert_eq!(reports(&server)[1]["status"], "dismissed");
    let (_, human, _) = admin(&server, &["reports"]);
    assert!(
        human.contains("[open] alice reported by bob (spam): buy cheap pills now"),
        "{human}"
    );

    // Reporters are rate-limited.
    let mut limited = false;
    for _ in 0..30 {
        if bob
            .client
            .send_report(&bundle)
            .await
            .unwrap_err()
            .server_code()
            == Some(ErrorCode::RateLimited)
        {
            limited = true;
            break;
        }
    }
    assert!(limited, "30 reports in a row were never rate-limited");

    // Only reported texts (and the context the reporter chose) are on the server.
    let never = unique("unreported");
    alice
        .client
        .send_text(&ChatRef::Direct(user("bob")), &never)
        .await
        .unwrap();
    bob.client.sync().await.unwrap();
    assert!(
        !contains(&server.all_bytes(), never.as_bytes()),
        "an unreported message is readable on the server"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_with_a_wrong_franking_tag_is_never_shown() {
    let server = TestServer::start();
    let alice = Device::register(&server.url(), "alice").await;
    let bob = Device::register(&server.url(), "bob").await;
    alice
        .client
        .send_text(&ChatRef::Direct(user("bob")), "hello")
        .await
        .unwrap();
    assert_eq!(bob.client.sync().await.unwrap().len(), 1);

    // Alice's modified client puts a tag that does not commit to the payload.
    let forged = with_stored_group(&alice, "bob", |group, provider, signer| {
        let payload = v1::AppPayload {
            salt: vec![1; 16],
            sender_username: "alice".into(),
            sender_device: alice.client.device_id().to_vec(),
            message_id: vec![9; 16],
            sent_at_ms: 1,
            body: Some(v1::app_payload::Body::Text(v1::TextBody {
                text: "unreportable".into(),
                ..Default::default()
            })),
        }
        .encode_to_vec();
        group.set_aad(
            v1::MessageAad {
                franking_tag: vec![0; 32],
            }
            .encode_to_vec(),
        );
        group
            .create_message(provider, signer, &payload)
            .unwrap()
            .to_bytes()
            .unwrap()
    });
    let submit = v1::Submit {
        message_id: vec![9; 16],
        mls_message: forged,
        welcome: None,
        expires_in_ms: 0,
    };
    let response = reqwest::Client::new()
        .post(format!("{}/v1/messages", server.url()))
        .header("content-type", parley_protocol::CONTENT_TYPE)
        .bearer_auth(alice.client.api().token().unwrap())
        .body(submit.encode_to_vec())
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success());

    assert!(
        bob.client.sync().await.unwrap().is_empty(),
        "an unverifiable message was shown"
    );
    assert_eq!(bob.client.unverifiable_count().unwrap(), 1);
    assert!(bob
        .client
        .history(&ChatRef::Direct(user("alice")), 10)
        .unwrap()
        .iter()
        .all(|m| m.text != "unreportable"));
}

/// Alice, bob and carol in bob's group #town, everyone synced.
async fn town_of_three(server: &TestServer) -> (Device, Device, Device) {
    let alice = Device::register(&server.url(), "alice").await;
    let bob = Device::register(&server.url(), "bob").await;
    let carol = Device::register(&server.url(), "carol").await;
    bob.client
        .create_group("town", &[user("alice"), user("carol")])
        .await
        .unwrap();
    alice.client.sync().await.unwrap();
    carol.client.sync().await.unwrap();
    (alice, bob, carol)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suspended_account_cannot_send_and_is_removed_from_its_groups() {
    let server = TestServer::start();
    let (alice, bob, carol) = town_of_three(&server).await;
    alice
        .client
        .send_text(&ChatRef::Group("town".into()), "abuse")
        .await
        .unwrap();
    let abuse = carol.client.sync().await.unwrap().pop().unwrap();
    carol
        .client
        .send_report(&carol.client.report_bundle(&abuse.id, "abuse", 0).unwrap())
        .await
        .unwrap();

    let (status, _, err) = admin(&server, &["suspend", "alice"]);
    assert_eq!(status, 0, "{err}");
    assert_eq!(reports(&server)[0]["status"], "actioned");
    // Its session ended, and it cannot log in again.
    let err = alice
        .client
        .send_text(&ChatRef::Group("town".into()), "more")
        .await
        .unwrap_err();
    assert!(
        matches!(
            err.server_code(),
            Some(ErrorCode::Forbidden | ErrorCode::Unauthenticated)
        ),
        "{err}"
    );
    assert!(alice.client.login().await.is_err());

    let (status, out, err) = admin(&server, &["remove-from-groups", "alice"]);
    assert_eq!(status, 0, "{err}");
    assert!(out.contains("1 group"), "{out}");
    // The remaining members commit the server's proposal.
    bob.client.sync().await.unwrap();
    carol.client.sync().await.unwrap();
    bob.client.sync().await.unwrap();
    let town = ChatRef::Group("town".into());
    assert_eq!(
        bob.client.group_state(&town).unwrap().members,
        ["bob", "carol"]
    );
    assert_eq!(
        bob.client.group_state(&town).unwrap(),
        carol.client.group_state(&town).unwrap()
    );
    bob.client.send_text(&town, "without alice").await.unwrap();
    assert_eq!(carol.client.sync().await.unwrap()[0].text, "without alice");

    let (_, audit, _) = admin(&server, &["audit"]);
    assert!(
        audit.contains("suspend alice") && audit.contains("remove from groups alice"),
        "{audit}"
    );
    let (status, _, _) = admin(&server, &["unsuspend", "alice"]);
    assert_eq!(status, 0);
    alice.client.login().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn franking_keys_rotate_and_old_franks_still_verify() {
    let server = TestServer::start();
    let alice = Device::register(&server.url(), "alice").await;
    let bob = Device::register(&server.url(), "bob").await;
    let chat = ChatRef::Direct(user("bob"));
    alice
        .client
        .send_text(&chat, "under key one")
        .await
        .unwrap();
    let old = bob.client.sync().await.unwrap().pop().unwrap();

    let (status, out, _) = admin(&server, &["rotate-franking-key"]);
    assert_eq!(status, 0);
    assert!(out.contains("franking key 2 is now current"), "{out}");
    // The running server picks the new key up from its data directory.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    alice
        .client
        .send_text(&chat, "under key two")
        .await
        .unwrap();
    let new = bob.client.sync().await.unwrap().pop().unwrap();

    let old_bundle = bob.client.report_bundle(&old.id, "old", 0).unwrap();
    let new_bundle = bob.client.report_bundle(&new.id, "new", 0).unwrap();
    assert_eq!(
        (old_bundle.message.key_id, new_bundle.message.key_id),
        (1, 2)
    );
    bob.client.send_report(&old_bundle).await.unwrap();
    bob.client.send_report(&new_bundle).await.unwrap();
    let texts: Vec<String> = reports(&server)
        .iter()
        .map(|r| r["text"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(texts, ["under key one", "under key two"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_online_hear_of_a_removal_proposed_by_the_cli_at_once() {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::Message as WsMessage;
    let server = TestServer::start();
    let (_alice, _bob, carol) = town_of_three(&server).await;
    let (status, _, err) = admin(&server, &["suspend", "alice"]);
    assert_eq!(status, 0, "{err}");

    // Carol is online: a live connection, which announces her queue head.
    let url = format!("{}/v1/ws", server.url().replacen("http", "ws", 1));
    let mut request = url.into_client_request().unwrap();
    let token = carol.client.api().token().unwrap().to_owned();
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    let mut socket = tokio_tungstenite::connect_async(request).await.unwrap().0;
    let head = |message: Option<Result<WsMessage, _>>| match message {
        Some(Ok(WsMessage::Binary(bytes))) => {
            v1::ServerFrame::decode(bytes.as_ref())
                .expect("a ServerFrame")
                .queue_head
        }
        other => panic!("not a frame: {other:?}"),
    };
    let before = head(socket.next().await);

    let (status, out, err) = admin(&server, &["remove-from-groups", "alice"]);
    let done = std::time::Instant::now();
    assert_eq!(status, 0, "{err}");
    assert!(out.contains("announced to 1 node"), "{out}");
    // The proposal is queued for her, and the hint that says so arrives at once (it used to be
    // lost: members learnt of it at their next sync).
    let next = tokio::time::timeout(std::time::Duration::from_secs(10), socket.next())
        .await
        .expect("no hint within 10 s");
    let after = head(next);
    eprintln!(
        "queue head {before} -> {after}, {:?} after `parley admin remove-from-groups` returned",
        done.elapsed()
    );
    assert_eq!(after, before + 1);
    assert!(done.elapsed() < std::time::Duration::from_secs(1));
}

/// Reports filed from any device of an account verify, for messages the device received
/// itself, for those it got in the history when it was linked, and for messages sent from any
/// device of the accused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_from_a_linked_device_verify_also_for_history_and_for_any_senders_device() {
    let server = TestServer::start();
    let alice = Device::register(&server.url(), "alice").await;
    let bob = Device::register(&server.url(), "bob").await;
    let to_bob = ChatRef::Direct(user("bob"));
    alice
        .client
        .send_text(&to_bob, "abuse before the link")
        .await
        .unwrap();
    bob.client.sync().await.unwrap();
    let (_bob_home, bob2, _) = link_device(&server.url(), &bob.client).await;
    let (_alice_home, alice2, _) = link_device(&server.url(), &alice.client).await;
    alice2
        .send_text(&to_bob, "abuse from alice's second device")
        .await
        .unwrap();
    let received = bob2.sync().await.unwrap();
    let live = received
        .iter()
        .find(|m| m.text == "abuse from alice's second device")
        .expect("received live on bob's second device");
    let history = bob2
        .history(&ChatRef::Direct(user("alice")), 10)
        .unwrap()
        .into_iter()
        .find(|m| m.text == "abuse before the link")
        .expect("in bob's history on his second device");
    assert!(history.history);
    for (message, reason) in [(&history, "from the history"), (live, "live")] {
        let bundle = bob2.report_bundle(&message.id, reason, 0).unwrap();
        bob2.send_report(&bundle).await.unwrap();
    }
    let queue = reports(&server);
    let texts: Vec<(&str, &str, &str)> = queue
        .iter()
        .map(|r| {
            (
                r["text"].as_str().unwrap(),
                r["accused"].as_str().unwrap(),
                r["reporter"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        texts,
        [
            ("abuse before the link", "alice", "bob"),
            ("abuse from alice's second device", "alice", "bob")
        ]
    );
}
