//! Item 1: a suspended account or an ended session loses its live connections at once; live
//! push cursors and acknowledgements are checked like the HTTP ones.

use super::*;

/// After the session ended: within `bound` the server closes the connection, and before that
/// it answers no submission.
async fn assert_ended_within(socket: &mut Socket, bound: Duration) {
    let _ = socket.send(WsMessage::Binary(live_submit(2).into())).await;
    let _ = socket.send(WsMessage::Ping(b"hi".to_vec().into())).await;
    let seen = observe(socket, bound + Duration::from_secs(5)).await;
    assert!(
        !seen
            .frames
            .iter()
            .any(|f| f.results.iter().any(|r| r.request_id == 2)),
        "a submission was processed after the session ended: {seen:?}"
    );
    let closed = seen
        .closed_after
        .unwrap_or_else(|| panic!("the connection stayed open: {seen:?}"));
    eprintln!("closed {closed:?} after the session ended");
    assert!(closed <= bound, "closed only after {closed:?}");
}

// Item 1: suspension, revocation and expiry end every session at once.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suspended_account_loses_its_open_live_connection_and_can_submit_nothing_on_it() {
    let server = TestServer::start();
    let watch = Watch::start(&server);
    let alice = Device::register(&server.url(), "alice").await;
    let mut socket = open_live(&server.url(), &token(&alice)).await;
    assert_live(&mut socket).await;

    // Suspended from another process (the CLI), which cannot tell the server directly.
    let (status, _, err) = admin(&server, &["suspend", "alice"]);
    assert_eq!(status, 0, "{err}");
    assert_ended_within(&mut socket, Duration::from_secs(3)).await;
    // And no new connection is possible.
    let url = format!("{}/v1/ws", server.url().replacen("http", "ws", 1));
    let mut request = url.into_client_request().unwrap();
    request.headers_mut().insert(
        "authorization",
        format!("Bearer {}", token(&alice)).parse().unwrap(),
    );
    assert!(tokio_tungstenite::connect_async(request).await.is_err());
    watch
        .assert_cost_below(
            "a_suspended_account_loses_its_open_live_connection_and_can_submit_nothing_on_it",
            SMALL_ATTACK_KIB,
        )
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suspension_by_the_cli_closes_the_live_connection_of_a_single_node_without_nats_at_once()
{
    // The node checks sessions only once a minute on its own: what closes the connection in
    // time is the command telling it.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("parley.toml");
    std::fs::write(&config, "session_check_seconds = 60\n").unwrap();
    let server = TestServer::start_with(&["--config", config.to_str().unwrap()]);
    let alice = Device::register(&server.url(), "alice").await;
    let mut socket = open_live(&server.url(), &token(&alice)).await;
    assert_live(&mut socket).await;
    let started = Instant::now();
    let (status, out, err) = admin(&server, &["suspend", "alice"]);
    assert_eq!(status, 0, "{err}");
    eprintln!("parley admin suspend took {:?}", started.elapsed());
    assert!(out.contains("announced to 1 node"), "{out}");
    // Nothing sent on the connection: anything the client sends would have the server check
    // the session, which is not what is measured here.
    let seen = observe(&mut socket, Duration::from_secs(10)).await;
    let closed = seen
        .closed_after
        .unwrap_or_else(|| panic!("open 10 s after the suspension: {seen:?}"));
    eprintln!("closed {closed:?} after `parley admin suspend` returned");
    assert!(closed < Duration::from_secs(1), "closed after {closed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_session_ends_its_open_live_connection() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("parley.toml");
    std::fs::write(&config, "session_ttl_seconds = 3\n").unwrap();
    let server = TestServer::start_with(&["--config", config.to_str().unwrap()]);
    let watch = Watch::start(&server);
    let alice = Device::register(&server.url(), "alice").await;
    let mut socket = open_live(&server.url(), &token(&alice)).await;
    let opened = Instant::now();
    assert_live(&mut socket).await;
    let seen = observe(&mut socket, Duration::from_secs(10)).await;
    let closed = seen
        .closed_after
        .map(|_| opened.elapsed())
        .unwrap_or_else(|| panic!("open 10 s after a 3 s session: {seen:?}"));
    eprintln!("a 3 s session's connection closed after {closed:?}");
    assert!(closed <= Duration::from_secs(6), "closed after {closed:?}");
    watch
        .assert_cost_below(
            "an_expired_session_ends_its_open_live_connection",
            SMALL_ATTACK_KIB,
        )
        .await;
}

// Item 9: strict requests.

/// `GET /v1/queue?after=`: status and body.
async fn fetch_queue(server: &TestServer, token: &str, after: u64) -> (u16, Vec<u8>) {
    let response = reqwest::Client::new()
        .get(format!("{}/v1/queue?after={after}", server.url()))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.bytes().await.unwrap().to_vec())
}

fn live_frame(body: v1::client_frame::Body) -> WsMessage {
    WsMessage::Binary(v1::ClientFrame { body: Some(body) }.encode_to_vec().into())
}

fn start_push(after: u64) -> WsMessage {
    live_frame(v1::client_frame::Body::StartPush(v1::StartPush { after }))
}

/// Alice sends bob `count` texts; bob's token and queue as HTTP shows it.
async fn bob_with_messages(server: &TestServer, count: usize) -> (Device, String, v1::QueueBatch) {
    let alice = Device::register(&server.url(), "alice").await;
    let bob = Device::register(&server.url(), "bob").await;
    let chat = parley_client::ChatRef::Direct(parley_protocol::Username::parse("bob").unwrap());
    for i in 0..count {
        alice
            .client
            .send_text(&chat, &format!("text {i}"))
            .await
            .unwrap();
    }
    let token = token(&bob);
    let (status, body) = fetch_queue(server, &token, 0).await;
    assert_eq!(status, 200);
    let queue = v1::QueueBatch::decode(body.as_slice()).unwrap();
    assert!(queue.head >= count as u64, "{queue:?}");
    (bob, token, queue)
}

/// A push cursor past the head is not one the server gave out: pushing from the head instead
/// (as it once did) would hide the items the client has not got. The live connection refuses
/// it as `GET /v1/queue` does, in its close frame: code 4000 + the HTTP status, same message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_push_cursor_beyond_the_head_is_refused_like_a_queue_cursor_and_closes_cleanly() {
    let server = TestServer::start();
    let watch = Watch::start(&server);
    let (_bob, token, queue) = bob_with_messages(&server, 2).await;
    let head = queue.head;
    for after in [head + 1, 1 << 40, u64::MAX] {
        let (status, body) = fetch_queue(&server, &token, after).await;
        let (code, message) = error_of(&body);
        assert_eq!((status, code), (400, ErrorCode::Malformed), "{message}");

        let mut socket = open_live(&server.url(), &token).await;
        socket.send(start_push(after)).await.unwrap();
        let seen = observe(&mut socket, Duration::from_secs(3)).await;
        assert!(seen.frames.iter().all(|f| f.items.is_empty()), "{seen:?}");
        let (close_code, reason) = seen
            .close
            .clone()
            .unwrap_or_else(|| panic!("after={after}: no close frame: {seen:?}"));
        assert_eq!(close_code, 4000 + code.http_status(), "{reason}");
        assert_eq!(reason, message);
    }
    // The boundary, the head itself, is a valid cursor, and the connection keeps serving: a
    // cursor before it then gets every item, as HTTP lists them.
    let mut socket = open_live(&server.url(), &token).await;
    socket.send(start_push(head)).await.unwrap();
    socket.send(start_push(0)).await.unwrap();
    let seen = observe(&mut socket, Duration::from_secs(2)).await;
    assert_eq!(seen.closed_after, None, "{seen:?}");
    let pushed: Vec<u64> = seen
        .frames
        .iter()
        .flat_map(|f| f.items.iter().map(|i| i.seq))
        .collect();
    let listed: Vec<u64> = queue.items.iter().map(|i| i.seq).collect();
    assert_eq!(pushed, listed);
    watch
        .assert_cost_below(
            "a_live_push_cursor_beyond_the_head_is_refused_like_a_queue_cursor_and_closes_cleanly",
            SMALL_ATTACK_KIB,
        )
        .await;
}

/// Any client can make its acknowledgements fail (beyond its head): that must not reach the
/// warning level operators watch, nor acknowledge anything, nor cost the connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_live_acknowledgements_are_logged_below_warn_and_acknowledge_nothing() {
    let server = TestServer::start();
    let watch = Watch::start(&server);
    let (_bob, token, queue) = bob_with_messages(&server, 1).await;
    let logged_before = std::fs::read(server.log_path()).unwrap().len();
    let mut socket = open_live(&server.url(), &token).await;
    for up_to in [queue.head + 1, u64::MAX] {
        let ack = v1::client_frame::Body::Ack(v1::Ack { up_to });
        socket.send(live_frame(ack)).await.unwrap();
        // One at a time: a second ack while the first runs would be folded into it.
        let _ = observe(&mut socket, Duration::from_millis(500)).await;
    }
    assert_live(&mut socket).await;
    let (status, body) = fetch_queue(&server, &token, 0).await;
    assert_eq!(status, 200);
    assert_eq!(v1::QueueBatch::decode(body.as_slice()).unwrap(), queue);

    let log = std::fs::read(server.log_path()).unwrap();
    let log = String::from_utf8_lossy(&log[logged_before..]);
    let failures: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("live acknowledgement failed"))
        .collect();
    assert_eq!(failures.len(), 2, "{log}");
    assert!(failures.iter().all(|l| l.contains("DEBUG")), "{failures:?}");
    let warnings: Vec<&str> = log.lines().filter(|l| l.contains(" WARN ")).collect();
    assert!(warnings.is_empty(), "{warnings:?}");
    watch
        .assert_cost_below(
            "failed_live_acknowledgements_are_logged_below_warn_and_acknowledge_nothing",
            SMALL_ATTACK_KIB,
        )
        .await;
}

// Item 10: operational data is not public.
