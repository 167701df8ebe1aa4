//! What people do in a messenger every day (issue 14), end to end against the real server on
//! loopback: replies, edits with their versions, deletes and reactions, on two devices of each
//! account, in 1:1 chats and groups; the rules every recipient applies (only the sender edits,
//! at most 10 times, within 24 hours of the server's acceptance; admins may delete too); and
//! edited or deleted messages that stay reportable with every version.

mod common;

use common::*;
use parley_client::{ChatRef, Client, MessageView};
use parley_protocol::{v1, Username};

fn user(name: &str) -> Username {
    Username::parse(name).unwrap()
}

/// The message with this id as the device shows it now.
fn shown(client: &Client, chat: &ChatRef, id: &str) -> MessageView {
    let history = client.history(chat, 100).unwrap();
    history
        .into_iter()
        .find(|m| m.id == id)
        .unwrap_or_else(|| panic!("{} does not show message {id}", client.device_id()))
}

fn reactions(pairs: &[(&str, &[&str])]) -> std::collections::BTreeMap<String, Vec<String>> {
    pairs
        .iter()
        .map(|(emoji, users)| {
            (
                emoji.to_string(),
                users.iter().map(|u| u.to_string()).collect(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_edits_deletes_and_reactions_reach_both_devices_of_both_accounts() {
    let server = TestServer::start();
    let alice = Device::register(&server.url(), "alice").await;
    let bob = Device::register(&server.url(), "bob").await;
    let to_bob = ChatRef::Direct(user("bob"));
    let to_alice = ChatRef::Direct(user("alice"));

    let hello = alice.client.send_text(&to_bob, "hello bob").await.unwrap();
    bob.client.sync().await.unwrap();
    // An edit before the second devices exist: they learn it from the history.
    let edited = alice.client.edit(&hello.id, "hello, bob").await.unwrap();
    assert_eq!((edited.text.as_str(), edited.edited), ("hello, bob", true));
    let changed = bob.client.sync().await.unwrap();
    assert_eq!(
        changed
            .iter()
            .map(|m| (m.id.as_str(), m.text.as_str()))
            .collect::<Vec<_>>(),
        [(hello.id.as_str(), "hello, bob")],
        "an edit shows as the message it changes, not as a new one"
    );
    let (_alice2_home, alice2, _) = link_device(&server.url(), &alice.client).await;
    let (_bob2_home, bob2, _) = link_device(&server.url(), &bob.client).await;
    for device in [&alice.client, &bob.client] {
        device.sync().await.unwrap();
    }

    // bob answers from his second device; alice's second device reacts to the answer.
    let answer = bob2
        .send_reply(&to_alice, "hi!", Some(&hello.id[..8]))
        .await
        .unwrap();
    assert_eq!(answer.reply_to.as_deref(), Some(hello.id.as_str()));
    alice2.sync().await.unwrap();
    alice2.react(&answer.id, "👍", false).await.unwrap();
    bob.client.sync().await.unwrap();
    bob.client.react(&hello.id, "🎉", false).await.unwrap();
    bob2.sync().await.unwrap();
    let unreacted = bob2.react(&hello.id, "🎉", true).await.unwrap();
    assert!(unreacted.reactions.is_empty(), "{unreacted:?}");

    // alice sends a message, bob answers it, and alice takes it back from her other device.
    let oops = alice
        .client
        .send_text(&to_bob, "oops, wrong chat")
        .await
        .unwrap();
    bob.client.sync().await.unwrap();
    let about_oops = bob
        .client
        .send_reply(&to_alice, "what?", Some(&oops.id))
        .await
        .unwrap();
    alice2.sync().await.unwrap();
    let deleted = alice2.delete(&oops.id).await.unwrap();
    assert!(deleted.deleted && deleted.text.is_empty());
    alice.client.sync().await.unwrap();
    alice.client.edit(&hello.id, "hello bob!").await.unwrap();

    for (device, chat) in [
        (&alice.client, &to_bob),
        (&alice2, &to_bob),
        (&bob.client, &to_alice),
        (&bob2, &to_alice),
    ] {
        device.sync().await.unwrap();
        let who = device.device_id();
        let history = device.history(chat, 100).unwrap();
        assert_eq!(
            history.iter().filter(|m| m.kind == "text").count(),
            4,
            "{who}: edits, deletes and reactions are no lines of their own: {history:?}"
        );
        let hello_now = shown(device, chat, &hello.id);
        assert_eq!(hello_now.text, "hello bob!", "{who}");
        assert!(hello_now.edited, "{who}");
        assert_eq!(hello_now.versions, ["hello bob", "hello, bob"], "{who}");
        assert!(hello_now.reactions.is_empty(), "{who}: {hello_now:?}");
        let answer_now = shown(device, chat, &answer.id);
        assert_eq!(answer_now.reply_to.as_deref(), Some(hello.id.as_str()));
        let quoted = answer_now.quoted.expect("the answer quotes its message");
        assert_eq!(
            (quoted.sender.as_str(), quoted.text.as_str()),
            ("alice", "hello bob!")
        );
        assert_eq!(
            answer_now.reactions,
            reactions(&[("👍", &["alice"])]),
            "{who}"
        );
        let oops_now = shown(device, chat, &oops.id);
        assert!(
            oops_now.deleted && oops_now.text.is_empty(),
            "{who}: {oops_now:?}"
        );
        assert_eq!(oops_now.deleted_by, None, "{who}: deleted by its sender");
        let about_oops_now = shown(device, chat, &about_oops.id);
        assert!(
            about_oops_now
                .quoted
                .is_some_and(|q| q.deleted && q.text.is_empty()),
            "{who}: a reply to a deleted message shows it as deleted"
        );
    }

    // Only the sender edits, only once per deletion, and only messages that exist.
    let refused = bob.client.edit(&hello.id, "not mine").await.unwrap_err();
    assert!(refused.to_string().contains("only its sender"), "{refused}");
    let refused = alice.client.edit(&oops.id, "back").await.unwrap_err();
    assert!(refused.to_string().contains("deleted"), "{refused}");
    let refused = bob.client.delete(&hello.id).await.unwrap_err();
    assert!(refused.to_string().contains("only its sender"), "{refused}");
    let refused = alice
        .client
        .edit("00112233445566778899aabbccddeeff", "x")
        .await;
    assert!(refused.unwrap_err().to_string().contains("no message"));
    let refused = alice.client.react(&hello.id, "two words", false).await;
    assert!(refused.unwrap_err().to_string().contains("not a reaction"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_group_replies_edits_deletes_and_reactions_reach_both_devices_of_every_account() {
    let server = TestServer::start();
    let alice = Device::register(&server.url(), "alice").await;
    let bob = Device::register(&server.url(), "bob").await;
    let carol = Device::register(&server.url(), "carol").await;
    alice
        .client
        .create_group("team", &[user("bob"), user("carol")])
        .await
        .unwrap();
    for device in [&bob.client, &carol.client] {
        device.sync().await.unwrap();
    }
    let (_a2, alice2, _) = link_device(&server.url(), &alice.client).await;
    let (_b2, bob2, _) = link_device(&server.url(), &bob.client).await;
    let (_c2, carol2, _) = link_device(&server.url(), &carol.client).await;
    let team = ChatRef::Group("team".into());
    let all = [
        &alice.client,
        &alice2,
        &bob.client,
        &bob2,
        &carol.client,
        &carol2,
    ];
    let sync_all = || async {
        for device in all {
            device.sync().await.unwrap();
        }
    };
    sync_all().await;

    let question = alice2.send_text(&team, "lunch at noon?").await.unwrap();
    sync_all().await;
    let answer = bob2
        .send_reply(&team, "noon works", Some(&question.id))
        .await
        .unwrap();
    carol.client.react(&question.id, "👍", false).await.unwrap();
    bob.client.react(&question.id, "👍", false).await.unwrap();
    sync_all().await;
    carol2.react(&question.id, "👍", true).await.unwrap();
    alice
        .client
        .edit(&question.id, "lunch at 12:30?")
        .await
        .unwrap();
    bob.client.delete(&answer.id).await.unwrap();
    sync_all().await;
    for device in all {
        let q = shown(device, &team, &question.id);
        assert_eq!(q.text, "lunch at 12:30?", "{}", device.device_id());
        assert_eq!(q.versions, ["lunch at noon?"]);
        assert_eq!(
            q.reactions,
            reactions(&[("👍", &["bob"])]),
            "carol took hers back"
        );
        let a = shown(device, &team, &answer.id);
        assert!(a.deleted && a.text.is_empty(), "{a:?}");
        assert_eq!(a.reply_to.as_deref(), Some(question.id.as_str()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_group_recipients_apply_only_the_edits_and_deletes_the_rules_allow() {
    let mut server = TestServer::start();
    let alice = Device::register(&server.url(), "alice").await;
    let bob = Device::register(&server.url(), "bob").await;
    let carol = Device::register(&server.url(), "carol").await;
    let team = ChatRef::Group("team".into());
    alice
        .client
        .create_group("team", &[user("bob"), user("carol")])
        .await
        .unwrap();
    for device in [&bob.client, &carol.client] {
        device.sync().await.unwrap();
    }
    let by_carol = carol
        .client
        .send_text(&team, "carol's words")
        .await
        .unwrap();
    let by_bob = bob.client.send_text(&team, "bob's words").await.unwrap();
    let bob_later = bob.client.send_text(&team, "bob, later").await.unwrap();
    bob.client.sync().await.unwrap();

    // bob is no admin: his client refuses, and recipients ignore what a rogue client sends.
    let refused = bob.client.delete(&by_carol.id).await.unwrap_err();
    assert!(refused.to_string().contains("group admin"), "{refused}");
    let target = hex::decode(&by_carol.id).unwrap();
    bob.client
        .send_unchecked(
            &by_carol.id,
            v1::app_payload::Body::Delete(v1::DeleteBody {
                target: target.clone(),
            }),
        )
        .await
        .unwrap();
    bob.client
        .send_unchecked(
            &by_carol.id,
            v1::app_payload::Body::Edit(v1::EditBody {
                target,
                text: "carol says something else".into(),
            }),
        )
        .await
        .unwrap();
    for device in [&alice.client, &carol.client] {
        device.sync().await.unwrap();
        let now = shown(device, &team, &by_carol.id);
        assert_eq!(now.text, "carol's words", "{}", device.device_id());
        assert!(!now.deleted && !now.edited, "{now:?}");
    }

    // Ten edits pass; the eleventh is refused by bob's client and, sent anyway, by everyone.
    for i in 1..=10 {
        bob.client
            .edit(&by_bob.id, &format!("bob's words, take {i}"))
            .await
            .unwrap();
    }
    let refused = bob.client.edit(&by_bob.id, "take 11").await.unwrap_err();
    assert!(refused.to_string().contains("at most 10"), "{refused}");
    bob.client
        .send_unchecked(
            &by_bob.id,
            v1::app_payload::Body::Edit(v1::EditBody {
                target: hex::decode(&by_bob.id).unwrap(),
                text: "take 11".into(),
            }),
        )
        .await
        .unwrap();
    for device in [&alice.client, &carol.client, &bob.client] {
        device.sync().await.unwrap();
        let now = shown(device, &team, &by_bob.id);
        assert_eq!(now.text, "bob's words, take 10", "{}", device.device_id());
        assert_eq!(now.versions.len(), 10);
        assert_eq!(now.versions[0], "bob's words");
    }

    // An admin may delete anyone's message, and is shown as such.
    let deleted = alice.client.delete(&by_carol.id).await.unwrap();
    assert_eq!(deleted.deleted_by.as_deref(), Some("alice"));
    for device in [&bob.client, &carol.client] {
        device.sync().await.unwrap();
        let now = shown(device, &team, &by_carol.id);
        assert!(now.deleted && now.text.is_empty(), "{now:?}");
        assert_eq!(now.deleted_by.as_deref(), Some("alice"));
    }

    // A day later by the server's clock, an edit and a delete of the earlier message arrive
    // too late: bob's client does not know the time has passed, everyone refuses them.
    server.restart_ahead("+25h");
    bob.client.edit(&bob_later.id, "too late").await.unwrap();
    alice.client.sync().await.unwrap();
    alice.client.delete(&bob_later.id).await.unwrap();
    for device in [&alice.client, &bob.client, &carol.client] {
        device.sync().await.unwrap();
        let now = shown(device, &team, &bob_later.id);
        assert_eq!(now.text, "bob, later", "{}", device.device_id());
        assert!(!now.edited && !now.deleted, "{now:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edited_or_deleted_message_stays_reportable_with_every_version() {
    let server = TestServer::start();
    let alice = Device::register(&server.url(), "alice").await;
    let bob = Device::register(&server.url(), "bob").await;
    let to_alice = ChatRef::Direct(user("alice"));
    let abuse = bob
        .client
        .send_text(&to_alice, "an abusive first version")
        .await
        .unwrap();
    alice.client.sync().await.unwrap();
    bob.client
        .edit(&abuse.id, "a harmless second version")
        .await
        .unwrap();
    let gone = bob
        .client
        .send_text(&to_alice, "abuse, then deleted")
        .await
        .unwrap();
    alice.client.sync().await.unwrap();
    bob.client.delete(&gone.id).await.unwrap();
    alice.client.sync().await.unwrap();
    let to_bob = ChatRef::Direct(user("bob"));
    assert_eq!(
        shown(&alice.client, &to_bob, &abuse.id).text,
        "a harmless second version"
    );
    assert!(shown(&alice.client, &to_bob, &gone.id).deleted);

    let bundle = alice.client.report_bundle(&abuse.id, "abuse", 0).unwrap();
    assert_eq!(bundle.versions.len(), 1);
    alice.client.send_report(&bundle).await.unwrap();
    let bundle = alice.client.report_bundle(&gone.id, "abuse", 0).unwrap();
    alice.client.send_report(&bundle).await.unwrap();

    let (status, out, err) = admin(&server, &["reports", "--json"]);
    assert_eq!(status, 0, "{err}");
    let reports = json_lines(&out);
    let edited = reports
        .iter()
        .find(|r| r["text"] == "an abusive first version")
        .expect("the first version is reported");
    assert_eq!(edited["versions"][0]["version"], "edit");
    assert_eq!(edited["versions"][0]["text"], "a harmless second version");
    let deleted = reports
        .iter()
        .find(|r| r["text"] == "abuse, then deleted")
        .expect("the deleted message is reported");
    assert_eq!(deleted["versions"][0]["version"], "delete");
    assert_eq!(deleted["versions"][0]["sender"], "bob");

    // A version that belongs to another message is refused as forged.
    let mut forged = alice.client.report_bundle(&abuse.id, "abuse", 0).unwrap();
    let other = alice.client.report_bundle(&gone.id, "x", 0).unwrap();
    forged.versions = other.versions;
    forged.reason = "forged".into();
    let refused = alice.client.send_report(&forged).await.unwrap_err();
    assert!(
        refused.to_string().contains("not of the reported message"),
        "{refused}"
    );
}

#[test]
fn the_cli_replies_edits_deletes_and_reacts_and_history_json_shows_it() {
    let server = TestServer::start();
    let url = server.url();
    let (alice, bob) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let run = |home: &tempfile::TempDir, args: &[&str]| {
        let (status, out, err) = cli(home.path(), &url, args);
        assert_eq!(status, 0, "{args:?}: {err}");
        out
    };
    run(&alice, &["register", "alice"]);
    run(&bob, &["register", "bob"]);
    run(&alice, &["send", "bob", "lunch at noon?"]);
    let received = json_lines(&run(&bob, &["sync", "--json"]));
    let question = received[0]["id"].as_str().unwrap().to_owned();
    run(
        &bob,
        &["send", "alice", "yes", "--reply-to", &question[..10]],
    );
    run(&alice, &["sync"]);
    let out = run(&alice, &["edit", &question, "lunch at one?"]);
    assert!(out.contains("lunch at one? (edited)"), "{out}");
    // bob's sync prints the changed message again (same id), not a new one.
    let changed = json_lines(&run(&bob, &["sync", "--json"]));
    assert_eq!(changed.len(), 1, "{changed:?}");
    assert_eq!(changed[0]["id"], question.as_str());
    assert_eq!(changed[0]["edited"], true);
    let out = run(&bob, &["react", &question, "👍"]);
    assert!(out.contains("[👍 bob]"), "{out}");
    run(&alice, &["send", "bob", "never mind"]);
    run(&bob, &["sync"]);
    let history = json_lines(&run(&alice, &["history", "bob", "--json"]));
    let never_mind = history.last().unwrap()["id"].as_str().unwrap().to_owned();
    run(&alice, &["delete", &never_mind]);

    run(&alice, &["sync"]);
    run(&bob, &["sync"]);
    for home in [&alice, &bob] {
        let peer = if std::ptr::eq(home, &alice) {
            "bob"
        } else {
            "alice"
        };
        let history = json_lines(&run(home, &["history", peer, "--json"]));
        assert_eq!(history.len(), 3, "{history:?}");
        assert_eq!(history[0]["text"], "lunch at one?");
        assert_eq!(history[0]["edited"], true);
        assert_eq!(
            history[0]["versions"],
            serde_json::json!(["lunch at noon?"])
        );
        assert_eq!(history[0]["reactions"], serde_json::json!({"👍": ["bob"]}));
        assert_eq!(history[1]["reply_to"], question.as_str());
        assert_eq!(history[2]["deleted"], true, "{peer}'s chat: {history:?}");
        assert_eq!(history[2]["text"], "");
    }
    let human = run(&bob, &["history", "alice"]);
    assert!(
        human.contains("bob (reply to alice: \"lunch at one?\"): yes"),
        "{human}"
    );
    assert!(human.contains("alice: (deleted)"), "{human}");

    // Clear refusals.
    let (status, _, err) = cli(bob.path(), &url, &["edit", &question, "mine now"]);
    assert_eq!(status, 1);
    assert!(err.contains("only its sender can edit"), "{err}");
    let (status, _, err) = cli(bob.path(), &url, &["react", "abc", "👍"]);
    assert_eq!(status, 1);
    assert!(err.contains("not a message id"), "{err}");
}
