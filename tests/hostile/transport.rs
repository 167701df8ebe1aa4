//! Item 3 (and the rates of item 5): slow or silent connections, connection caps, HTTP/2
//! streams, and rates checked before a body is read.

use super::*;

/// A configuration file for the server with short transport timeouts (seconds).
fn transport_config(server_dir: &std::path::Path, header: u64, body: u64) -> std::path::PathBuf {
    let path = server_dir.join(format!("transport-{header}-{body}.toml"));
    std::fs::write(
        &path,
        format!("header_timeout_seconds = {header}\nbody_timeout_seconds = {body}\n"),
    )
    .unwrap();
    path
}

fn started_with_transport(header: u64, body: u64) -> (tempfile::TempDir, TestServer) {
    let dir = tempfile::tempdir().unwrap();
    let config = transport_config(dir.path(), header, body);
    let server = TestServer::start_with(&["--config", config.to_str().unwrap()]);
    (dir, server)
}

/// Connects from another loopback address (127.0.0.2), so that the per-address cap applies to
/// the attacker and not to the test's own /healthz probes from 127.0.0.1.
async fn connect_from(source: [u8; 4], port: u16) -> std::io::Result<tokio::net::TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(std::net::SocketAddr::from((source, 0)))?;
    socket
        .connect(std::net::SocketAddr::from(([127, 0, 0, 1], port)))
        .await
}

/// Reads until the server closes the connection (or errs), up to `within`; what it sent.
async fn read_until_closed(
    stream: &mut tokio::net::TcpStream,
    within: Duration,
) -> Option<Vec<u8>> {
    use tokio::io::AsyncReadExt;
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + within;
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(got),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_beyond_the_per_address_cap_are_refused_and_healthz_keeps_answering() {
    // Long header timeout: what closes the excess here is the cap, not the timeout.
    let (_dir, server) = started_with_transport(30, 30);
    let watch = Watch::start(&server);
    let mut held = Vec::new();
    for _ in 0..600 {
        match connect_from([127, 0, 0, 2], server.port).await {
            Ok(stream) => held.push(stream),
            Err(e) => panic!("connect failed: {e}"),
        }
    }
    // Every connection beyond the cap is answered 503 (or closed) at once.
    let mut refused = 0;
    let mut answered_503 = 0;
    for stream in held.iter_mut() {
        if let Some(got) = read_until_closed(stream, Duration::from_millis(20)).await {
            refused += 1;
            if got.starts_with(b"HTTP/1.1 503") {
                answered_503 += 1;
            }
        }
    }
    let slowest = watch.finish().await.slowest_health;
    eprintln!(
        "600 silent connections from 127.0.0.2: {refused} closed at once ({answered_503} with 503), slowest /healthz {slowest:?}"
    );
    assert!(refused >= 600 - 64, "only {refused} of 600 were refused");
    assert!(answered_503 >= 600 - 64, "only {answered_503} answered 503");
    assert!(
        slowest < Duration::from_millis(500),
        "/healthz took {slowest:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_a_header_or_nothing_at_all_is_closed_after_the_header_timeout() {
    use tokio::io::AsyncWriteExt;
    let (_dir, server) = started_with_transport(1, 2);
    let watch = Watch::start(&server);
    let mut half = connect_from([127, 0, 0, 3], server.port).await.unwrap();
    half.write_all(b"GET /healthz HTTP/1.1\r\nHost: parley\r\nX-Slow: ")
        .await
        .unwrap();
    let mut silent = connect_from([127, 0, 0, 3], server.port).await.unwrap();
    let started = Instant::now();
    let half_closed = read_until_closed(&mut half, Duration::from_secs(5)).await;
    let half_after = started.elapsed();
    let silent_closed = read_until_closed(&mut silent, Duration::from_secs(5)).await;
    let silent_after = started.elapsed();
    eprintln!(
        "header timeout 1 s: half a header closed after {half_after:?} ({}), a silent connection after {silent_after:?} ({})",
        half_closed.is_some(),
        silent_closed.is_some()
    );
    assert!(half_closed.is_some(), "half a header kept open for 5 s");
    assert!(
        silent_closed.is_some(),
        "a silent connection kept open for 5 s"
    );
    assert!(half_after < Duration::from_millis(2500), "{half_after:?}");
    assert!(
        silent_after < Duration::from_millis(2500),
        "{silent_after:?}"
    );
    watch
        .assert_cost_below(
            "half_a_header_or_nothing_at_all_is_closed_after_the_header_timeout",
            SMALL_ATTACK_KIB,
        )
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unfinished_bodies_hold_little_memory_and_are_closed_after_the_body_timeout() {
    use tokio::io::AsyncWriteExt;
    let (_dir, server) = started_with_transport(1, 2);
    let alice = Device::register(&server.url(), "alice").await;
    let token = token(&alice);
    let watch = Watch::start(&server);
    let length = 8 * 1024 * 1024 - 1024;
    let mut streams = Vec::new();
    for i in 0..50u8 {
        let mut stream = connect_from([127, 0, 1, 1 + i], server.port).await.unwrap();
        let head = format!(
            "POST /v1/messages HTTP/1.1\r\nHost: parley\r\nAuthorization: Bearer {token}\r\nContent-Type: {PROTOBUF}\r\nContent-Length: {length}\r\n\r\n"
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        stream.write_all(&[0x0a; 1024]).await.unwrap();
        streams.push(stream);
    }
    let started = Instant::now();
    let mut closed = 0;
    for stream in streams.iter_mut() {
        let left = Duration::from_secs(5).saturating_sub(started.elapsed());
        if read_until_closed(stream, left).await.is_some() {
            closed += 1;
        }
    }
    let after = started.elapsed();
    let cost = watch.finish().await;
    let (grown, slowest) = (cost.peak_kib, cost.slowest_health);
    eprintln!(
        "50 unfinished 8 MiB bodies, body timeout 2 s: {closed} closed within {after:?}, peak server memory +{grown} KiB, slowest /healthz {slowest:?}"
    );
    assert_eq!(closed, 50, "{closed} of 50 closed within 5 s");
    assert_bounded(grown, 32 * 1024, slowest, Duration::from_millis(500));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_connections_may_open_only_a_few_streams_at_once() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = TestServer::start();
    let watch = Watch::start(&server);
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", server.port))
        .await
        .unwrap();
    // Prior-knowledge HTTP/2: the preface and an empty SETTINGS frame.
    stream
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await
        .unwrap();
    // The server's first frame is its SETTINGS.
    let mut header = [0u8; 9];
    tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut header))
        .await
        .expect("server SETTINGS in time")
        .unwrap();
    assert_eq!(header[3], 0x4, "first frame is not SETTINGS: {header:?}");
    let length = u32::from_be_bytes([0, header[0], header[1], header[2]]) as usize;
    let mut payload = vec![0u8; length];
    stream.read_exact(&mut payload).await.unwrap();
    let streams = payload
        .chunks_exact(6)
        .find(|s| u16::from_be_bytes([s[0], s[1]]) == 0x3)
        .map(|s| u32::from_be_bytes([s[2], s[3], s[4], s[5]]));
    eprintln!("HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS: {streams:?}");
    assert!(
        streams.is_some_and(|n| n <= 16),
        "the server allows {streams:?} concurrent streams"
    );
    watch
        .assert_cost_below(
            "http2_connections_may_open_only_a_few_streams_at_once",
            SMALL_ATTACK_KIB,
        )
        .await;
}

fn started_with_settings(settings: &str) -> (tempfile::TempDir, TestServer) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("transport.toml");
    std::fs::write(&path, settings).unwrap();
    let server = TestServer::start_with(&["--config", path.to_str().unwrap()]);
    (dir, server)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_connection_is_closed_but_a_quiet_live_connection_is_not() {
    use tokio::io::AsyncWriteExt;
    let (_dir, server) = started_with_settings(
        "idle_timeout_seconds = 1\nheader_timeout_seconds = 10\nbody_timeout_seconds = 10\n",
    );
    let alice = Device::register(&server.url(), "alice").await;
    let mut live = open_live(&server.url(), &token(&alice)).await;
    // An HTTP/2 connection that opens no stream: idle.
    let mut idle = connect_from([127, 0, 0, 5], server.port).await.unwrap();
    idle.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await
        .unwrap();
    let started = Instant::now();
    let closed = read_until_closed(&mut idle, Duration::from_secs(5)).await;
    let after = started.elapsed();
    tokio::time::sleep(Duration::from_millis(2500).saturating_sub(after)).await;
    eprintln!(
        "idle timeout 1 s: an idle HTTP/2 connection closed after {after:?} ({}); a live connection quiet for 2.5 s still answers",
        closed.is_some()
    );
    assert!(closed.is_some(), "the idle connection stayed open for 5 s");
    assert!(after < Duration::from_millis(2500), "{after:?}");
    assert_live(&mut live).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_global_connection_cap_connections_are_answered_503_and_the_server_recovers() {
    let (_dir, server) = started_with_settings(
        "max_connections = 40\nheader_timeout_seconds = 1\nbody_timeout_seconds = 2\n",
    );
    let mut held = Vec::new();
    // 30 from each of two addresses: each under the per-address cap, 60 in all.
    for i in 0..60u8 {
        held.push(
            connect_from([127, 0, 2, 1 + i % 2], server.port)
                .await
                .unwrap(),
        );
    }
    let mut answered_503 = 0;
    for stream in held.iter_mut() {
        if let Some(got) = read_until_closed(stream, Duration::from_millis(20)).await {
            if got.starts_with(b"HTTP/1.1 503") {
                answered_503 += 1;
            }
        }
    }
    // The silent ones time out after 1 s, and the server serves again.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let started = Instant::now();
    let health = reqwest::get(format!("{}/healthz", server.url()))
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0);
    eprintln!(
        "60 silent connections, global cap 40: {answered_503} answered 503; after the header timeout /healthz answers {health} in {:?}",
        started.elapsed()
    );
    assert_eq!(answered_503, 20);
    assert_eq!(health, 200);
}

// Item 5: a client over its rate is refused before its body is read.

/// Sends a request's head announcing a body of `length` bytes, then only `body` (all of it, or
/// the start of a body that never completes); the status the server answers within `within`
/// and how long it took, or None if it waits for the rest.
async fn answer_to_body(
    server: &TestServer,
    source: [u8; 4],
    path: &str,
    headers: &str,
    length: usize,
    body: &[u8],
    within: Duration,
) -> Option<(u16, Duration)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = connect_from(source, server.port).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\n{headers}Content-Length: {length}\r\n\r\n",
        server.port
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    let started = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !got.windows(2).any(|w| w == b"\r\n") {
        let left = within.saturating_sub(started.elapsed());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Err(_) | Ok(Ok(0)) | Ok(Err(_)) => return None,
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
    let status = std::str::from_utf8(&got)
        .ok()
        .and_then(|text| text.split(' ').nth(1))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {:?}", String::from_utf8_lossy(&got)));
    Some((status, started.elapsed()))
}

/// Spends a rate by small, complete requests from `source` until one is answered 429.
async fn exhaust(server: &TestServer, source: [u8; 4], path: &str, headers: &str, body: &[u8]) {
    let within = Duration::from_secs(5);
    for _ in 0..200 {
        let answer = answer_to_body(server, source, path, headers, body.len(), body, within).await;
        if let Some((429, _)) = answer {
            return;
        }
    }
    panic!("{path}: no 429 after 200 requests");
}

/// A route, its headers, a small body that spends its rate, the body announced, and the
/// attacker's address.
type Attack<'a> = (&'a str, &'a str, &'a [u8], usize, [u8; 4]);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_over_its_rate_is_answered_429_at_once_without_the_server_waiting_for_its_body() {
    // Low rates (bursts of ten), so that a few requests spend them; the body timeout is the
    // default 30 s, which is how long a server that reads the body first waits.
    let server = TestServer::start_with(&["--rate-per-second", "1", "--auth-rate-per-second", "1"]);
    let watch = Watch::start(&server);
    let alice = Device::register(&server.url(), "alice").await;
    let bearer = format!(
        "Authorization: Bearer {}\r\nContent-Type: {PROTOBUF}\r\n",
        token(&alice)
    );
    let protobuf = format!("Content-Type: {PROTOBUF}\r\n");
    let form = format!(
        "Content-Type: application/x-www-form-urlencoded\r\nOrigin: http://127.0.0.1:{}\r\n",
        server.port
    );
    let frame = 8 * 1024 * 1024 - 1024;
    // Per address for the authentication calls and console sign-ins, per account for
    // everything a device sends.
    let junk: &[u8] = &[0x0a, 0x0a];
    let wrong_token: &[u8] = b"token=wrong";
    let attacks: [Attack; 10] = [
        ("/v1/accounts", &protobuf, junk, 4000, [127, 0, 2, 1]),
        ("/v1/auth/challenge", &protobuf, junk, 4000, [127, 0, 2, 2]),
        ("/v1/auth/login", &protobuf, junk, 4000, [127, 0, 2, 3]),
        ("/v1/messages", &bearer, junk, frame, [127, 0, 2, 4]),
        ("/v1/groups", &bearer, junk, frame, [127, 0, 2, 4]),
        (
            "/v1/keypackages",
            &bearer,
            junk,
            4 * 1024 * 1024 - 1024,
            [127, 0, 2, 4],
        ),
        (
            "/v1/keypackages/claim",
            &bearer,
            junk,
            60 * 1024,
            [127, 0, 2, 4],
        ),
        (
            "/v1/reports",
            &bearer,
            junk,
            2 * 1024 * 1024 - 1024,
            [127, 0, 2, 4],
        ),
        ("/admin/login", &form, wrong_token, 4000, [127, 0, 2, 5]),
        // The same account from another address: the limit is the account's.
        ("/v1/messages", &bearer, junk, frame, [127, 0, 2, 6]),
    ];
    let mut answers = Vec::new();
    for (path, headers, spend, length, source) in attacks {
        // Spent just before, so that no token refills in between.
        exhaust(&server, source, path, headers, spend).await;
        let start = vec![0x0a; 1024.min(length / 2)];
        let within = Duration::from_secs(5);
        let answer = answer_to_body(&server, source, path, headers, length, &start, within).await;
        eprintln!("{path}: an unfinished {length}-byte body over the rate: answered {answer:?}");
        answers.push((path, answer));
    }
    for (path, answer) in answers {
        let (status, after) = answer
            .unwrap_or_else(|| panic!("{path}: no answer in 5 s, the server waits for the body"));
        assert_eq!(status, 429, "{path}");
        assert!(
            after < Duration::from_secs(1),
            "{path}: answered after {after:?}"
        );
    }
    // Within the rate, a body is read and decoded as before.
    let within = Duration::from_secs(5);
    let answer = answer_to_body(
        &server,
        [127, 0, 2, 7],
        "/v1/auth/challenge",
        &protobuf,
        2,
        junk,
        within,
    )
    .await;
    assert_eq!(answer.map(|(status, _)| status), Some(400));
    watch.assert_cost_below("a_client_over_its_rate_is_answered_429_at_once_without_the_server_waiting_for_its_body", SMALL_ATTACK_KIB).await;
}

/// Past its byte budget for the minute, an account's submission is refused by its announced
/// length, before its body is read (before: read in full, up to 8 MiB, then refused; 64
/// connections of one address could hold 512 MiB that way).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_submission_past_the_byte_budget_is_refused_before_its_body_is_read() {
    let server = TestServer::start_with(&["--send-mib-per-minute", "8"]);
    let watch = Watch::start(&server);
    let alice = Device::register(&server.url(), "alice").await;
    let bearer = format!(
        "Authorization: Bearer {}\r\nContent-Type: {PROTOBUF}\r\n",
        token(&alice)
    );
    // Two junk submissions of 4 MiB spend the budget (refused as invalid MLS, but read).
    for i in 0..2u8 {
        let junk = v1::Submit {
            message_id: vec![i; 16],
            mls_message: vec![i; 4 << 20],
            welcome: None,
            expires_in_ms: 0,
        };
        let response = reqwest::Client::new()
            .post(format!("{}/v1/messages", server.url()))
            .header("content-type", PROTOBUF)
            .bearer_auth(token(&alice))
            .body(junk.encode_to_vec())
            .send()
            .await
            .unwrap();
        assert_ne!(response.status().as_u16(), 429, "within the budget");
    }
    let length = 4 << 20;
    let start = vec![0x0a; 1024];
    let answer = answer_to_body(
        &server,
        [127, 0, 3, 1],
        "/v1/messages",
        &bearer,
        length,
        &start,
        Duration::from_secs(5),
    )
    .await;
    eprintln!("an unfinished 4 MiB submission past the byte budget: answered {answer:?}");
    let (status, after) = answer.expect("no answer in 5 s: the server waits for the body");
    assert_eq!(status, 429);
    assert!(after < Duration::from_secs(1), "answered after {after:?}");
    watch
        .assert_cost_below(
            "a_submission_past_the_byte_budget_is_refused_before_its_body_is_read",
            SMALL_ATTACK_KIB,
        )
        .await;
}
