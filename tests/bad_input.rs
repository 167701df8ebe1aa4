//! Bad input from shared/design/reliability.md, sent to the real server over raw HTTP: each gets
//! a clear error, nothing is lost, and the server keeps serving.

mod common;

use common::*;
use parley_client::ChatRef;
use parley_protocol::{v1, ErrorCode, Username};
use prost::Message;

fn submit(message_id: [u8; 16], mls: Vec<u8>) -> v1::Submit {
    v1::Submit {
        message_id: message_id.to_vec(),
        mls_message: mls,
        welcome: None,
        expires_in_ms: 0,
    }
}

fn user(name: &str) -> Username {
    Username::parse(name).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_truncated_and_oversized_frames_get_clear_errors() {
    let server = TestServer::start_with(&["--max-frame-bytes", "1048576"]);
    let alice = Device::register(&server.url(), "alice").await;
    let raw = Raw::new(&server.url(), alice.client.api().token());

    // Not protobuf at all.
    let (status, body) = raw.post_bytes("/v1/messages", vec![0xff; 40]).await;
    assert_eq!(status, 400);
    let error = v1::ErrorBody::decode(body.as_slice()).unwrap();
    assert_eq!(ErrorCode::from_u32(error.code), ErrorCode::Malformed);
    assert!(error.message.contains("malformed"), "{}", error.message);

    // Valid protobuf, truncated MLS.
    let result: Result<v1::SubmitResponse, _> = raw
        .post("/v1/messages", &submit([1; 16], vec![0, 1, 2]))
        .await;
    assert_eq!(result.unwrap_err().1, ErrorCode::InvalidMlsMessage);

    // A message id of the wrong size.
    let bad_id = v1::Submit {
        message_id: vec![1, 2, 3],
        mls_message: vec![0; 10],
        welcome: None,
        expires_in_ms: 0,
    };
    let result: Result<v1::SubmitResponse, _> = raw.post("/v1/messages", &bad_id).await;
    assert_eq!(result.unwrap_err().1, ErrorCode::Malformed);

    // Larger than the configured frame limit.
    let (status, body) = raw.post_bytes("/v1/messages", vec![0; 2_000_000]).await;
    assert_eq!(status, 413);
    let error = v1::ErrorBody::decode(body.as_slice()).unwrap();
    assert_eq!(ErrorCode::from_u32(error.code), ErrorCode::TooLarge);

    // An unknown endpoint.
    let (status, _) = raw.post_bytes("/v1/nope", vec![]).await;
    assert_eq!(status, 404);
    assert!(raw.healthy().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_and_usernames_are_checked() {
    let server = TestServer::start();
    let raw = Raw::new(&server.url(), None);
    for hostile in [
        "Alice",
        "al ice",
        "аlice",
        "bob\u{200b}",
        "x",
        "a'; DROP TABLE users;--",
        &"a".repeat(33),
        "e\u{1b}[31m",
    ] {
        let request = v1::RegisterRequest {
            username: hostile.into(),
            signature_key: vec![0; 32],
            proof: vec![0; 64],
            device_id: Vec::new(),
            account_key: Vec::new(),
            certificate: Vec::new(),
            restore: false,
            restore_secret: Vec::new(),
            backup_id: Vec::new(),
        };
        let result: Result<v1::RegisterResponse, _> = raw.post("/v1/accounts", &request).await;
        assert_eq!(
            result.unwrap_err().1,
            ErrorCode::InvalidUsername,
            "{hostile:?} accepted"
        );
    }
    // A registration whose proof does not verify.
    let request = v1::RegisterRequest {
        username: "mallory".into(),
        signature_key: vec![7; 32],
        proof: vec![0; 64],
        device_id: Vec::new(),
        account_key: Vec::new(),
        certificate: Vec::new(),
        restore: false,
        restore_secret: Vec::new(),
        backup_id: Vec::new(),
    };
    let result: Result<v1::RegisterResponse, _> = raw.post("/v1/accounts", &request).await;
    assert!(matches!(
        result.unwrap_err().1,
        ErrorCode::Unauthenticated | ErrorCode::Malformed
    ));

    let _alice = Device::register(&server.url(), "alice").await;
    let taken = tempfile::tempdir().unwrap();
    let again =
        parley_client::Client::register(taken.path(), &server.url(), "alice", Default::default())
            .await;
    assert_eq!(
        again.err().and_then(|e| e.server_code()),
        Some(ErrorCode::UsernameTaken)
    );

    // No token, a forged token, an expired or stolen-and-revoked one all read the same.
    let anonymous = Raw::new(&server.url(), None);
    let result: Result<v1::SubmitResponse, _> = anonymous
        .post("/v1/messages", &submit([1; 16], vec![]))
        .await;
    assert_eq!(result.unwrap_err().0, 401);
    let forged = Raw::new(&server.url(), Some("ab".repeat(32)));
    let result: Result<v1::SubmitResponse, _> =
        forged.post("/v1/messages", &submit([1; 16], vec![])).await;
    assert_eq!(result.unwrap_err().1, ErrorCode::Unauthenticated);

    // A login with a challenge used twice fails the second time.
    let challenge: v1::ChallengeResponse = raw
        .post(
            "/v1/auth/challenge",
            &v1::ChallengeRequest {
                device_id: vec![9; 16],
            },
        )
        .await
        .unwrap();
    let login = v1::LoginRequest {
        device_id: vec![9; 16],
        challenge: challenge.challenge.clone(),
        signature: vec![0; 64],
    };
    let result: Result<v1::LoginResponse, _> = raw.post("/v1/auth/login", &login).await;
    assert_eq!(result.unwrap_err().1, ErrorCode::Unauthenticated);
    let result: Result<v1::LoginResponse, _> = raw.post("/v1/auth/login", &login).await;
    assert_eq!(result.unwrap_err().1, ErrorCode::Unauthenticated);

    // Nobody logs in as the server's own device (all-zero id, which moderation uses), not even
    // with a signature crafted for its all-zero (small-order) key, which non-strict Ed25519
    // verification would accept for one challenge in four.
    let mut forged = vec![1u8];
    forged.extend([0u8; 63]);
    for _ in 0..8 {
        let challenge: v1::ChallengeResponse = raw
            .post(
                "/v1/auth/challenge",
                &v1::ChallengeRequest {
                    device_id: vec![0; 16],
                },
            )
            .await
            .unwrap();
        let login = v1::LoginRequest {
            device_id: vec![0; 16],
            challenge: challenge.challenge,
            signature: forged.clone(),
        };
        let result: Result<v1::LoginResponse, _> = raw.post("/v1/auth/login", &login).await;
        assert_eq!(result.unwrap_err().1, ErrorCode::Unauthenticated);
    }
    // Nor registers a small-order key.
    let request = v1::RegisterRequest {
        username: "weakling".into(),
        signature_key: vec![0; 32],
        proof: forged,
        device_id: Vec::new(),
        account_key: Vec::new(),
        certificate: Vec::new(),
        restore: false,
        restore_secret: Vec::new(),
        backup_id: Vec::new(),
    };
    let result: Result<v1::RegisterResponse, _> = raw.post("/v1/accounts", &request).await;
    assert_eq!(result.unwrap_err().1, ErrorCode::Malformed);

    // Unknown users.
    let alice_raw = Raw::new(&server.url(), _alice.client.api().token());
    let claim = v1::ClaimKeyPackages {
        usernames: vec!["nobody".into()],
    };
    let result: Result<v1::ClaimResponse, _> =
        alice_raw.post("/v1/keypackages/claim", &claim).await;
    assert_eq!(result.unwrap_err().1, ErrorCode::NotFound);
    let err = _alice
        .client
        .send_text(&ChatRef::Direct(user("nobody")), "hi")
        .await
        .unwrap_err();
    assert_eq!(err.server_code(), Some(ErrorCode::NotFound));
    assert!(raw.healthy().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_packages_are_single_use_under_concurrent_claims_then_last_resort() {
    // Claims for one account are rate-limited (tests/hostile/requests.rs); here the store is under test.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("parley.toml");
    std::fs::write(&config, "claim_rate_per_second = 1000\n").unwrap();
    let server = TestServer::start_with(&["--config", config.to_str().unwrap()]);
    let alice = Device::register(&server.url(), "alice").await;
    let bob = Device::register(&server.url(), "bob").await;
    let raw = std::sync::Arc::new(Raw::new(&server.url(), alice.client.api().token()));
    let count: v1::KeyPackageCount = Raw::new(&server.url(), bob.client.api().token())
        .http
        .get(format!("{}/v1/keypackages/count", server.url()))
        .bearer_auth(bob.client.api().token().unwrap())
        .send()
        .await
        .map(|r| async { v1::KeyPackageCount::decode(r.bytes().await.unwrap().as_ref()).unwrap() })
        .unwrap()
        .await;
    let one_time = count.one_time_remaining as usize;
    assert!(one_time >= 20 && count.has_last_resort);

    let claims = (0..one_time + 10).map(|_| {
        let raw = raw.clone();
        tokio::spawn(async move {
            let claim = v1::ClaimKeyPackages {
                usernames: vec!["bob".into()],
            };
            raw.post::<_, v1::ClaimResponse>("/v1/keypackages/claim", &claim)
                .await
                .unwrap()
        })
    });
    let mut one_time_packages = std::collections::HashSet::new();
    let mut last_resort_packages = std::collections::HashSet::new();
    for claim in claims {
        let response = claim.await.unwrap();
        assert_eq!(response.key_packages.len(), 1);
        let package = &response.key_packages[0];
        if package.last_resort {
            last_resort_packages.insert(package.key_package.clone());
        } else {
            assert!(
                one_time_packages.insert(package.key_package.clone()),
                "a one-time package was handed out twice"
            );
        }
    }
    assert_eq!(one_time_packages.len(), one_time);
    assert_eq!(
        last_resort_packages.len(),
        1,
        "the last-resort package stays the same"
    );

    // With only the last-resort package left, Bob can still be reached.
    alice
        .client
        .send_text(&ChatRef::Direct(user("bob")), "via last resort")
        .await
        .unwrap();
    assert_eq!(bob.client.sync().await.unwrap()[0].text, "via last resort");
    // And the sync replenished his pool.
    let bob_raw = Raw::new(&server.url(), bob.client.api().token());
    let count: v1::KeyPackageCount = v1::KeyPackageCount::decode(
        bob_raw
            .http
            .get(format!("{}/v1/keypackages/count", server.url()))
            .bearer_auth(bob.client.api().token().unwrap())
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap()
            .as_ref(),
    )
    .unwrap();
    assert!(count.one_time_remaining >= 20);

    // A KeyPackage with a broken signature is refused.
    let mut tampered = one_time_packages.into_iter().next().unwrap();
    let last = tampered.len() - 1;
    tampered[last] ^= 0x55;
    let upload = v1::UploadKeyPackages {
        key_packages: vec![tampered],
        last_resort: None,
    };
    let result: Result<v1::KeyPackageCount, _> = bob_raw.post("/v1/keypackages", &upload).await;
    assert_eq!(result.unwrap_err().1, ErrorCode::InvalidKeyPackage);
    // And nobody uploads packages in someone else's name.
    let stolen = last_resort_packages.into_iter().next().unwrap();
    let upload = v1::UploadKeyPackages {
        key_packages: vec![],
        last_resort: Some(stolen),
    };
    let result: Result<v1::KeyPackageCount, _> = raw.post("/v1/keypackages", &upload).await;
    assert_eq!(result.unwrap_err().1, ErrorCode::InvalidKeyPackage);
}

/// Finds the bodies of `POST /v1/messages` the proxy forwarded.
fn recorded_submissions(proxy: &FaultyProxy) -> Vec<v1::Submit> {
    proxy
        .recorded
        .lock()
        .unwrap()
        .iter()
        .filter(|chunk| contains(chunk, b"POST /v1/messages"))
        .filter_map(|chunk| {
            let start = chunk.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
            v1::Submit::decode(&chunk[start..]).ok()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replays_wrong_epoch_commits_and_outsiders_are_refused() {
    let server = TestServer::start();
    let proxy = FaultyProxy::start(server.port).await;
    let mut alice = Device::register(&server.url(), "alice").await;
    let bob = Device::register(&server.url(), "bob").await;
    let carol = Device::register(&server.url(), "carol").await;
    alice.reopen(Some(proxy.url()));
    alice
        .client
        .create_group("club", &[user("bob")])
        .await
        .unwrap();
    alice
        .client
        .send_text(&ChatRef::Group("club".into()), "members only")
        .await
        .unwrap();
    alice
        .client
        .add_members("club", &[user("carol")])
        .await
        .unwrap();
    let submissions = recorded_submissions(&proxy);
    assert!(
        submissions.len() >= 4,
        "proxy saw {} submissions",
        submissions.len()
    );
    let alice_raw = Raw::new(&server.url(), alice.client.api().token());

    // The same submission again: the first answer, nothing new stored or delivered.
    let text_submission = submissions[2].clone();
    let again: v1::SubmitResponse = alice_raw
        .post("/v1/messages", &text_submission)
        .await
        .unwrap();
    assert!(again.duplicate);
    // The same message id with other bytes is a conflict.
    let mut conflicting = text_submission.clone();
    conflicting.mls_message = submissions[1].mls_message.clone();
    let result: Result<v1::SubmitResponse, _> = alice_raw.post("/v1/messages", &conflicting).await;
    assert_eq!(result.unwrap_err().1, ErrorCode::IdempotencyConflict);

    // The first add commit (epoch 0) again under a fresh id: the group has moved on.
    let old_commit = submit([0xEE; 16], submissions[0].mls_message.clone());
    let result: Result<v1::SubmitResponse, _> = alice_raw.post("/v1/messages", &old_commit).await;
    let (status, code, message) = result.unwrap_err();
    assert_eq!((status, code), (409, ErrorCode::WrongEpoch));
    assert!(message.contains("wrong epoch (current = "), "{message}");

    // An old application message under a fresh id: wrong epoch as well (the epoch moved).
    let replayed = submit([0xEF; 16], text_submission.mls_message.clone());
    let result: Result<v1::SubmitResponse, _> = alice_raw.post("/v1/messages", &replayed).await;
    assert!(matches!(
        result.unwrap_err().1,
        ErrorCode::WrongEpoch | ErrorCode::Replay
    ));

    // Someone outside the group submits into it.
    let dave = Device::register(&server.url(), "dave").await;
    let dave_raw = Raw::new(&server.url(), dave.client.api().token());
    let result: Result<v1::SubmitResponse, _> = dave_raw
        .post(
            "/v1/messages",
            &submit([3; 16], text_submission.mls_message),
        )
        .await;
    let code = result.unwrap_err().1;
    assert!(
        matches!(code, ErrorCode::NotMember | ErrorCode::WrongEpoch),
        "{code:?}"
    );
    // A member submits a commit signed by someone else (a forged sender).
    let bob_raw = Raw::new(&server.url(), bob.client.api().token());
    let result: Result<v1::SubmitResponse, _> = bob_raw.post("/v1/messages", &old_commit).await;
    assert!(matches!(
        result.unwrap_err().1,
        ErrorCode::WrongEpoch | ErrorCode::Forbidden
    ));

    // Welcome for an unknown group, attached to an application message.
    let mut welcome_alone = submit([4; 16], submissions[2].mls_message.clone());
    welcome_alone.welcome = submissions[0].welcome.clone();
    let result: Result<v1::SubmitResponse, _> =
        alice_raw.post("/v1/messages", &welcome_alone).await;
    assert!(result.is_err());

    // Nothing of this reached the members as a message.
    bob.client.sync().await.unwrap();
    carol.client.sync().await.unwrap();
    // Beside the notice of who added them.
    let texts = |device: &Device| {
        device
            .client
            .history(&ChatRef::Group("club".into()), 10)
            .unwrap()
            .into_iter()
            .filter(|m| m.kind == "text")
            .count()
    };
    assert_eq!(texts(&bob), 1);
    assert_eq!(texts(&carol), 0);
    assert!(alice_raw.healthy().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn floods_are_rate_limited_per_account() {
    let server = TestServer::start_with(&["--rate-per-second", "2"]);
    let alice = Device::register(&server.url(), "alice").await;
    let _bob = Device::register(&server.url(), "bob").await;
    let raw = Raw::new(&server.url(), alice.client.api().token());
    let mut limited = 0;
    for _ in 0..60 {
        let claim = v1::ClaimKeyPackages {
            usernames: vec!["bob".into()],
        };
        if let Err((status, code, _)) = raw
            .post::<_, v1::ClaimResponse>("/v1/keypackages/claim", &claim)
            .await
        {
            assert_eq!((status, code), (429, ErrorCode::RateLimited));
            limited += 1;
        }
    }
    assert!(
        limited >= 30,
        "only {limited} of 60 rapid requests were limited"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_metacharacters_are_just_text() {
    let server = TestServer::start();
    let alice = Device::register(&server.url(), "alice").await;
    let bob = Device::register(&server.url(), "bob").await;
    let name = "x'); DROP TABLE chats; --";
    alice
        .client
        .create_group(name, &[user("bob")])
        .await
        .unwrap();
    let text = "'; DELETE FROM messages WHERE '1'='1";
    alice
        .client
        .send_text(&ChatRef::Group(name.into()), text)
        .await
        .unwrap();
    let received = bob.client.sync().await.unwrap();
    let received: Vec<_> = received.iter().filter(|m| m.kind == "text").collect();
    assert_eq!(received[0].text, text);
    assert_eq!(received[0].chat, format!("#{name}"));
}

/// A device chooses its own id when it registers (so that what it signs can name it): the
/// server keeps it, refuses one already registered or the server's own, and refuses anything
/// but 16 bytes; without one it chooses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_chooses_its_id_once_and_only_a_real_one() {
    let server = TestServer::start();
    let register = |name: &str, device_id: Vec<u8>| {
        let body = proof_register_as(name, device_id);
        let url = format!("{}/v1/accounts", server.url());
        async move {
            let response = reqwest::Client::new()
                .post(url)
                .header("content-type", parley_protocol::CONTENT_TYPE)
                .body(body)
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            (status, response.bytes().await.unwrap().to_vec())
        }
    };
    let (status, body) = register("alice", vec![0xa1; 16]).await;
    assert_eq!(status, 200);
    let registered = v1::RegisterResponse::decode(body.as_slice()).unwrap();
    assert_eq!(registered.device_id, vec![0xa1; 16]);
    let (status, body) = register("bob", vec![0xa1; 16]).await;
    assert_eq!(status, 403);
    assert!(error_of(&body)
        .1
        .contains("device id is already registered"));
    for bad in [vec![0; 16], vec![1; 5], vec![1; 17]] {
        let (status, body) = register("carol", bad.clone()).await;
        assert_eq!(
            (status, error_of(&body).0),
            (400, ErrorCode::Malformed),
            "{bad:?}"
        );
    }
    let (status, body) = register("carol", Vec::new()).await;
    assert_eq!(status, 200);
    let chosen = v1::RegisterResponse::decode(body.as_slice()).unwrap();
    assert_eq!(chosen.device_id.len(), 16);
    // The client library names its device too (and checks that the server kept the name).
    let dave = Device::register(&server.url(), "dave").await;
    let (status, body) = register("erin", dave.client.device_id().to_vec()).await;
    assert_eq!(status, 403, "dave's device id is taken");
    assert!(error_of(&body)
        .1
        .contains("device id is already registered"));
}
