//! Quotas (issue 12, item 5): one address or account cannot fill the server's disk. Each test is
//! one attack against the real server binary, with raw requests where the client library would
//! stop the attacker on its own.

mod common;

use std::time::Instant;

use common::*;
use parley_protocol::{v1, ErrorCode};
use prost::Message as _;

const PROTOBUF: &str = parley_protocol::CONTENT_TYPE;

/// Registration from one address is limited to a small burst (before: 526 accounts in 0.5 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_from_one_address_is_limited_to_a_small_burst() {
    // The harness gives every other server a high limit; this one keeps the defaults.
    let server = TestServer::start_with(&["--registration-burst", "10"]);
    let watch = Watch::start(&server);
    let url = format!("{}/v1/accounts", server.url());
    let http = reqwest::Client::new();
    let started = Instant::now();
    let mut registered = 0;
    let mut refusal = None;
    for i in 0..600 {
        let response = http
            .post(&url)
            .header("content-type", PROTOBUF)
            .body(proof_register(&format!("sybil{i}")))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let body = response.bytes().await.unwrap();
        match status {
            200 => registered += 1,
            429 => {
                refusal.get_or_insert(error_of(&body));
            }
            other => panic!("HTTP {other}"),
        }
        if started.elapsed().as_millis() > 500 {
            break;
        }
    }
    eprintln!(
        "{registered} accounts from one address in {:?}",
        started.elapsed()
    );
    assert!(registered <= 12, "{registered} accounts registered");
    let (code, message) = refusal.expect("refused at some point");
    assert_eq!(code, ErrorCode::RateLimited);
    assert!(message.contains("registrations"), "{message}");
    watch
        .assert_cost_below(
            "registration_from_one_address_is_limited_to_a_small_burst",
            SMALL_ATTACK_KIB,
        )
        .await;
}

/// The status and body of `request`, sent with `token`.
async fn answer_as(token: &str, request: reqwest::RequestBuilder) -> (u16, Vec<u8>) {
    let response = request.bearer_auth(token).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.bytes().await.unwrap().to_vec())
}

/// One account may hand the server only so many bytes a minute (before: 50 messages of 4 MiB,
/// 200 MB, into a recipient's queue in 2 s). The submissions here are 4 MiB of junk, which the
/// server refuses as invalid MLS once it has read them; past the budget it refuses them by
/// their announced length before reading them, as "sending too much" (a client still writing
/// such a body may see the connection reset instead: the server does not read it to say so).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_account_cannot_send_more_than_its_byte_budget_a_minute() {
    let server = TestServer::start_with(&["--send-mib-per-minute", "64"]);
    let watch = Watch::start(&server);
    let alice = Device::register(&server.url(), "alice").await;
    let token = alice.client.api().token().expect("logged in").to_owned();
    let url = format!("{}/v1/messages", server.url());
    let started = std::time::Instant::now();
    let (mut processed, mut refused, mut reset, mut refusal) = (0u64, 0, 0, None);
    let junk = |i: u8, bytes: usize| {
        v1::Submit {
            message_id: vec![i; 16],
            mls_message: vec![i; bytes],
            welcome: None,
            expires_in_ms: 0,
        }
        .encode_to_vec()
    };
    for i in 0..50u8 {
        let request = reqwest::Client::new()
            .post(&url)
            .header("content-type", PROTOBUF)
            .bearer_auth(&token)
            .body(junk(i, 4 << 20));
        match request.send().await {
            Ok(response) if response.status().as_u16() == 429 => {
                refused += 1;
                let body = response.bytes().await.unwrap_or_default();
                refusal.get_or_insert(error_of(&body).1);
            }
            Ok(_) => processed += 4,
            Err(_) => reset += 1,
        }
    }
    eprintln!(
        "{processed} MiB of 200 processed in {:?}; {refused} refused with 429, {reset} reset unread",
        started.elapsed()
    );
    assert!(processed <= 68, "{processed} MiB processed");
    assert_eq!(processed / 4 + refused + reset, 50);
    let message = refusal.expect("some refusals are answered in words");
    assert!(message.contains("sending too much"), "{message}");
    watch
        .assert_cost_below(
            "one_account_cannot_send_more_than_its_byte_budget_a_minute",
            SMALL_ATTACK_KIB,
        )
        .await;
}

/// An account may not create groups with strangers at an unlimited rate (before: 20 groups
/// with one victim in 1.3 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_cannot_create_groups_at_an_unlimited_rate() {
    let server = TestServer::start_with(&["--group-burst", "10"]);
    let watch = Watch::start(&server);
    let mallory = Device::register(&server.url(), "mallory").await;
    let _victim = Device::register(&server.url(), "victim").await;
    let victim = parley_protocol::Username::parse("victim").unwrap();
    let started = Instant::now();
    let mut created = 0;
    let mut refusal = None;
    for i in 0..20 {
        match mallory
            .client
            .create_group(&format!("spam{i}"), std::slice::from_ref(&victim))
            .await
        {
            Ok(()) => created += 1,
            Err(e) => {
                refusal.get_or_insert(e.to_string());
            }
        }
    }
    eprintln!(
        "{created} groups with one victim in {:?}; refusal: {refusal:?}",
        started.elapsed()
    );
    assert!(created <= 10, "{created} groups created");
    let refusal = refusal.expect("refused past the burst");
    assert!(refusal.contains("too many new groups"), "{refusal}");
    watch
        .assert_cost_below(
            "an_account_cannot_create_groups_at_an_unlimited_rate",
            SMALL_ATTACK_KIB,
        )
        .await;
}

/// A recipient's queue has a byte budget (before: one member put 200 MB into a recipient's
/// queue in 2 s, kept 30 days). Past it the sender is told "recipient's queue is full" and the
/// message waits in the sender's outbox; nothing queued is dropped, and once the recipient has
/// caught up the waiting message goes out with the sender's next sync, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_recipient_queue_refuses_the_sender_and_loses_nothing() {
    let server = TestServer::start_with(&["--queue-mib-per-device", "1"]);
    let watch = Watch::start(&server);
    let alice = Device::register(&server.url(), "alice").await;
    let bob = Device::register(&server.url(), "bob").await;
    let to_bob = parley_client::ChatRef::Direct(parley_protocol::Username::parse("bob").unwrap());
    // Texts of 60 KiB: about seventeen fill a 1 MiB queue.
    let text = |i: usize| format!("{i:03} {}", "x".repeat(60 * 1024));
    let mut sent = 0;
    let refusal = loop {
        match alice.client.send_text(&to_bob, &text(sent)).await {
            Ok(_) => sent += 1,
            Err(e) => break e.to_string(),
        }
        assert!(sent < 40, "a 1 MiB queue took {sent} messages of 60 KiB");
    };
    eprintln!("{sent} messages of 60 KiB queued for bob; then: {refusal}");
    assert!((14..=18).contains(&sent), "{sent} accepted");
    assert!(
        refusal.contains("recipient's queue is full: bob"),
        "{refusal}"
    );
    assert!(refusal.contains("kept"), "{refusal}");
    let waiting = alice.client.history(&to_bob, 100).unwrap();
    assert_eq!(waiting.last().map(|m| m.status.as_str()), Some("sending"));
    // Other chats are not held up by bob's queue.
    let carol = Device::register(&server.url(), "carol").await;
    let carol_name = parley_protocol::Username::parse("carol").unwrap();
    let to_carol = parley_client::ChatRef::Direct(carol_name.clone());
    alice
        .client
        .send_text(&to_carol, "unaffected")
        .await
        .unwrap();
    assert_eq!(carol.client.sync().await.unwrap().len(), 1);
    // Group changes may fill a queue to twice the budget, so that bob can still be added to
    // (or removed from) a group; a message there waits like the others, and a change goes
    // ahead of it (the message is then encrypted again in the change's epoch).
    let bob_name = parley_protocol::Username::parse("bob").unwrap();
    alice
        .client
        .create_group("team", std::slice::from_ref(&bob_name))
        .await
        .unwrap();
    let team = parley_client::ChatRef::Group("team".into());
    let to_the_team = format!("to the team {}", "x".repeat(60 * 1024));
    let refusal = alice
        .client
        .send_text(&team, &to_the_team)
        .await
        .unwrap_err();
    assert!(refusal.to_string().contains("kept"), "{refusal}");
    alice
        .client
        .add_members("team", std::slice::from_ref(&carol_name))
        .await
        .unwrap();
    // Bob catches up: everything, oldest first. Then alice's next sync sends what waited.
    let first = bob.client.sync().await.unwrap();
    assert_eq!(first.iter().filter(|m| m.kind == "text").count(), sent);
    assert!(first[0].text.starts_with("000 "), "the oldest was kept");
    alice.client.sync().await.unwrap();
    let last = bob.client.sync().await.unwrap();
    let texts: Vec<&str> = last
        .iter()
        .filter(|m| m.kind == "text")
        .map(|m| &m.text[..m.text.len().min(5)])
        .collect();
    assert_eq!(texts, [&format!("{sent:03} x")[..], "to th"], "{texts:?}");
    let history = alice.client.history(&to_bob, 100).unwrap();
    assert!(
        history
            .iter()
            .all(|m| matches!(m.status.as_str(), "sent" | "delivered")),
        "all sent in the end (and bob's receipts say which he has)"
    );
    watch
        .assert_cost_below(
            "a_full_recipient_queue_refuses_the_sender_and_loses_nothing",
            SMALL_ATTACK_KIB,
        )
        .await;
}

/// An account's groups are a budget too: one in `--max-groups-per-account` groups (1:1 chats
/// included) cannot create another until it leaves one (before: no bound but the rate).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_in_too_many_groups_cannot_create_another() {
    let server = TestServer::start_with(&["--max-groups-per-account", "3"]);
    let watch = Watch::start(&server);
    let mallory = Device::register(&server.url(), "mallory").await;
    let _victim = Device::register(&server.url(), "victim").await;
    let victim = parley_protocol::Username::parse("victim").unwrap();
    for i in 0..3 {
        mallory
            .client
            .create_group(&format!("spam{i}"), std::slice::from_ref(&victim))
            .await
            .unwrap();
    }
    let refusal = mallory
        .client
        .create_group("spam3", std::slice::from_ref(&victim))
        .await
        .unwrap_err()
        .to_string();
    assert!(refusal.contains("too many groups"), "{refusal}");
    mallory.client.leave_group("spam0").await.unwrap();
    let _victim_commits_the_leave = _victim.client.sync().await.unwrap();
    mallory
        .client
        .create_group("spam3", std::slice::from_ref(&victim))
        .await
        .unwrap();
    watch
        .assert_cost_below(
            "an_account_in_too_many_groups_cannot_create_another",
            SMALL_ATTACK_KIB,
        )
        .await;
}

async fn get_as(token: &str, url: &str) -> (u16, Vec<u8>) {
    answer_as(token, reqwest::Client::new().get(url)).await
}

/// Reading is rate-limited per account too: a queue page may be megabytes (before: 3,000
/// pages in a row, all answered).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_account_cannot_read_at_an_unlimited_rate() {
    let server = TestServer::start();
    let watch = Watch::start(&server);
    let alice = Device::register(&server.url(), "alice").await;
    let token = alice.client.api().token().expect("logged in").to_owned();
    let url = format!("{}/v1/queue?after=0", server.url());
    let started = Instant::now();
    let (mut answered, mut refusal) = (0, None);
    // Eight at a time on kept-alive connections: faster than the refill even on a busy machine.
    use futures_util::StreamExt as _;
    let http = reqwest::Client::new();
    let mut reads = futures_util::stream::iter(0..3000)
        .map(|_| answer_as(&token, http.get(&url)))
        .buffer_unordered(8);
    while let Some((status, body)) = reads.next().await {
        match status {
            200 => answered += 1,
            429 => {
                refusal.get_or_insert(error_of(&body).1);
            }
            other => panic!("HTTP {other}"),
        }
    }
    let elapsed = started.elapsed();
    eprintln!("{answered} of 3000 queue reads answered in {elapsed:?}; refusal: {refusal:?}");
    // A burst of 1,000, then 100 a second.
    assert!(
        answered as f64 <= 1000.0 + 100.0 * elapsed.as_secs_f64() + 10.0,
        "{answered} answered"
    );
    assert!(refusal.expect("refused").contains("slow down"));
    watch
        .assert_cost_below(
            "one_account_cannot_read_at_an_unlimited_rate",
            SMALL_ATTACK_KIB,
        )
        .await;
}

/// Unknown tokens cost a store lookup each: an address that sends many is refused for a while
/// before they are looked up (before: 2,000 unknown tokens, 2,000 lookups).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_sending_unknown_tokens_is_refused_for_a_while() {
    let server = TestServer::start();
    let watch = Watch::start(&server);
    let url = format!("{}/v1/keypackages/count", server.url());
    let (mut unauthenticated, mut refusal) = (0, None);
    for i in 0..2000u32 {
        let (status, body) = get_as(&format!("forged-{i:08}"), &url).await;
        match status {
            401 => unauthenticated += 1,
            429 => {
                refusal.get_or_insert(error_of(&body).1);
            }
            other => panic!("HTTP {other}"),
        }
    }
    eprintln!("{unauthenticated} of 2000 unknown tokens looked up; refusal: {refusal:?}");
    assert!(unauthenticated < 600, "{unauthenticated} looked up");
    assert!(refusal
        .expect("refused")
        .contains("too many unknown tokens from this address"));
    watch
        .assert_cost_below(
            "an_address_sending_unknown_tokens_is_refused_for_a_while",
            SMALL_ATTACK_KIB,
        )
        .await;
}
