//! Items 6, 7, 9, 10, 11: strict content types and cursors, metrics off the public listener,
//! reserved names, KeyPackage claims that cannot drain an account, private files.

use super::*;

async fn post(url: &str, content_type: Option<&str>, body: Vec<u8>) -> (u16, Vec<u8>) {
    let mut request = reqwest::Client::new().post(url).body(body);
    if let Some(content_type) = content_type {
        request = request.header("content-type", content_type);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.bytes().await.unwrap().to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_bodies_of_any_other_content_type_are_refused_with_415() {
    let server = TestServer::start();
    let watch = Watch::start(&server);
    let url = format!("{}/v1/accounts", server.url());
    // What a web page can send cross-site without a preflight, and no content type at all.
    for (i, content_type) in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
        None,
    ]
    .into_iter()
    .enumerate()
    {
        let name = format!("victim{i}");
        let (status, body) = post(&url, content_type, proof_register(&name)).await;
        assert_eq!(status, 415, "{content_type:?} registered {name}");
        let (_, message) = error_of(&body);
        assert!(message.contains(PROTOBUF), "{message}");
    }
    let (status, _) = post(&url, Some(PROTOBUF), proof_register("alice")).await;
    assert_eq!(status, 200);
    watch
        .assert_cost_below(
            "api_bodies_of_any_other_content_type_are_refused_with_415",
            SMALL_ATTACK_KIB,
        )
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_cursor_or_an_acknowledgement_beyond_the_head_is_refused() {
    let server = TestServer::start();
    let watch = Watch::start(&server);
    let alice = Device::register(&server.url(), "alice").await;
    let token = token(&alice);
    let http = reqwest::Client::new();
    for after in [1u64, 1 << 40, u64::MAX] {
        let response = http
            .get(format!("{}/v1/queue?after={after}", server.url()))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let body = response.bytes().await.unwrap();
        assert_eq!(status, 400, "after={after}");
        let (code, message) = error_of(&body);
        assert_eq!(code, ErrorCode::Malformed);
        assert!(message.contains("beyond the queue head 0"), "{message}");
    }
    for up_to in [1u64, u64::MAX] {
        let response = http
            .post(format!("{}/v1/queue/ack", server.url()))
            .bearer_auth(&token)
            .header("content-type", PROTOBUF)
            .body(v1::Ack { up_to }.encode_to_vec())
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let body = response.bytes().await.unwrap();
        assert_eq!(status, 400, "ack up_to={up_to}");
        let (_, message) = error_of(&body);
        assert!(message.contains("beyond the queue head 0"), "{message}");
    }
    let response = http
        .get(format!("{}/v1/queue?after=0", server.url()))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    watch
        .assert_cost_below(
            "a_queue_cursor_or_an_acknowledgement_beyond_the_head_is_refused",
            SMALL_ATTACK_KIB,
        )
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_served_only_on_their_own_loopback_listener() {
    let server = TestServer::start();
    let watch = Watch::start(&server);
    let public = reqwest::get(format!("{}/metrics", server.url()))
        .await
        .unwrap();
    assert_eq!(public.status().as_u16(), 404);
    let text = public.text().await.unwrap();
    assert!(!text.contains("parley_"), "{text}");

    let metrics = reqwest::get(format!("{}/metrics", server.metrics_url()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("parley_live_connections"), "{metrics}");
    // The metrics listener serves nothing else.
    let api = reqwest::get(format!("{}/v1/info", server.metrics_url()))
        .await
        .unwrap();
    assert_eq!(api.status().as_u16(), 404);

    // A public metrics address needs saying so.
    let dir = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(BIN)
        .args(["server", "--data"])
        .arg(dir.path())
        .args(["--listen", "127.0.0.1:0", "--metrics-listen", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(err.contains("metrics"), "{err}");
    watch
        .assert_cost_below(
            "metrics_are_served_only_on_their_own_loopback_listener",
            SMALL_ATTACK_KIB,
        )
        .await;
}

// Item 11: reserved and look-alike names.

async fn register_status(server: &TestServer, name: &str) -> (u16, Vec<u8>) {
    post(
        &format!("{}/v1/accounts", server.url()),
        Some(PROTOBUF),
        proof_register(name),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reserved_names_and_their_look_alikes_cannot_be_registered() {
    let server = TestServer::start();
    let watch = Watch::start(&server);
    for name in [
        "admin",
        "administrator",
        "moderator",
        "support",
        "security",
        "system",
        "parley",
        "moderat0r",
        "rnoderator",
        "m0derat0r",
        "adm1n",
        "admln",
        "supp0rt",
        "secur1ty",
        "sys_tem",
        "admin_",
        "admin1",
        "parley_support",
    ] {
        let (status, body) = register_status(&server, name).await;
        assert_eq!(status, 400, "{name} was registered");
        let (code, message) = error_of(&body);
        assert_eq!(code, ErrorCode::InvalidUsername, "{name}");
        assert!(message.contains("reserved"), "{name}: {message}");
    }
    for name in ["alice", "admiral", "sysop_fan", "supporter_of_cats", "mod"] {
        let (status, _) = register_status(&server, name).await;
        assert_eq!(status, 200, "{name} was refused");
    }
    watch
        .assert_cost_below(
            "reserved_names_and_their_look_alikes_cannot_be_registered",
            SMALL_ATTACK_KIB,
        )
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reserved_name_list_is_configurable() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("parley.toml");
    std::fs::write(&config, "reserved_names = [\"acme\", \"helpdesk\"]\n").unwrap();
    let server = TestServer::start_with(&["--config", config.to_str().unwrap()]);
    let watch = Watch::start(&server);
    for name in ["acme", "acrne", "help_desk", "he1pdesk"] {
        assert_eq!(register_status(&server, name).await.0, 400, "{name}");
    }
    // The list replaces the default one.
    assert_eq!(register_status(&server, "support").await.0, 200);
    watch
        .assert_cost_below("the_reserved_name_list_is_configurable", SMALL_ATTACK_KIB)
        .await;
}

// Item 6: KeyPackages cannot be drained.

async fn claim(server: &TestServer, token: &str, names: &[&str]) -> (u16, Vec<u8>) {
    let response = reqwest::Client::new()
        .post(format!("{}/v1/keypackages/claim", server.url()))
        .bearer_auth(token)
        .header("content-type", PROTOBUF)
        .body(
            v1::ClaimKeyPackages {
                usernames: names.iter().map(|n| n.to_string()).collect(),
            }
            .encode_to_vec(),
        )
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.bytes().await.unwrap().to_vec())
}

async fn one_time_left(server: &TestServer, device: &Device) -> u32 {
    let response = reqwest::Client::new()
        .get(format!("{}/v1/keypackages/count", server.url()))
        .bearer_auth(token(device))
        .send()
        .await
        .unwrap();
    v1::KeyPackageCount::decode(response.bytes().await.unwrap().as_ref())
        .unwrap()
        .one_time_remaining
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_claim_takes_at_most_one_package_per_device_and_a_failed_claim_takes_none() {
    let server = TestServer::start();
    let mallory = Device::register(&server.url(), "mallory").await;
    let bob = Device::register(&server.url(), "bob").await;
    let before = one_time_left(&server, &bob).await;

    // The victim named a thousand times.
    let (status, body) = claim(&server, &token(&mallory), &["bob"; 1000]).await;
    assert_eq!(status, 200);
    let claimed = v1::ClaimResponse::decode(body.as_ref())
        .unwrap()
        .key_packages;
    eprintln!(
        "one claim naming bob 1000 times returned {} packages, {} last-resort",
        claimed.len(),
        claimed.iter().filter(|p| p.last_resort).count()
    );
    assert_eq!(claimed.len(), 1);
    assert_eq!(one_time_left(&server, &bob).await, before - 1);

    // A claim that fails for one name takes nothing from the others.
    let (status, body) = claim(&server, &token(&mallory), &["bob", "nobody_here"]).await;
    assert_eq!(status, 404);
    assert!(error_of(&body).1.contains("nobody_here"));
    assert_eq!(one_time_left(&server, &bob).await, before - 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_for_one_account_are_rate_limited_whoever_makes_them() {
    let server = TestServer::start();
    let watch = Watch::start(&server);
    let bob = Device::register(&server.url(), "bob").await;
    let mut claimers = Vec::new();
    for i in 0..3 {
        claimers.push(Device::register(&server.url(), &format!("mallory{i}")).await);
    }
    let before = one_time_left(&server, &bob).await;
    let started = Instant::now();
    let mut granted = 0;
    let mut limited = 0;
    for round in 0..40 {
        let claimer = &claimers[round % claimers.len()];
        let (status, body) = claim(&server, &token(claimer), &["bob"]).await;
        match status {
            200 => granted += 1,
            429 => {
                limited += 1;
                assert!(error_of(&body).1.contains("bob"));
            }
            other => panic!("claim answered {other}"),
        }
    }
    let taken = before - one_time_left(&server, &bob).await;
    eprintln!(
        "40 claims for bob by 3 accounts in {:?}: {granted} granted, {limited} limited, {taken} packages taken",
        started.elapsed()
    );
    assert!(granted <= 25, "{granted} claims granted");
    assert_eq!(taken, granted);
    // Another account is not affected.
    let (status, _) = claim(&server, &token(&bob), &["mallory0"]).await;
    assert_eq!(status, 200);
    watch
        .assert_cost_below(
            "claims_for_one_account_are_rate_limited_whoever_makes_them",
            SMALL_ATTACK_KIB,
        )
        .await;
}

// Item 7 (server side): files only their owner can read.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_data_directory_and_every_file_in_it_are_for_their_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let server = TestServer::start();
    let watch = Watch::start(&server);
    // Something in the database and its write-ahead log.
    let alice = Device::register(&server.url(), "alice").await;
    drop(alice);
    let mode =
        |path: &std::path::Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    let data = server.data_dir();
    let mut seen = vec![format!("{} {:o}", data.display(), mode(&data))];
    assert_eq!(mode(&data), 0o700, "{}", seen[0]);
    let files = walk(&data);
    for name in [
        "parley.db",
        "parley.db-wal",
        "parley.db-shm",
        "franking-keys.json",
    ] {
        assert!(
            files.iter().any(|f| f.ends_with(name)),
            "{name} in {files:?}"
        );
    }
    for file in &files {
        seen.push(format!("{} {:o}", file.display(), mode(file)));
        assert_eq!(mode(file), 0o600, "{seen:?}");
    }
    eprintln!("{seen:?}");
    watch
        .assert_cost_below(
            "the_data_directory_and_every_file_in_it_are_for_their_owner_only",
            SMALL_ATTACK_KIB,
        )
        .await;
}

// Item 2: bounded memory per connection.
