//! Several stateless server nodes on one PostgreSQL database and a three-node NATS cluster, all
//! real processes on loopback.

mod common;

use std::time::Duration;

use common::*;
use parley_client::{ChatRef, Client, ClientOptions};
use parley_protocol::Username;
use parley_testkit::{TestNats, TestPostgres};
use tokio::sync::mpsc;

fn user(name: &str) -> Username {
    Username::parse(name).unwrap()
}

struct Deployment {
    postgres: TestPostgres,
    nats: TestNats,
    shared: tempfile::TempDir,
    nodes: Vec<TestServer>,
}

impl Deployment {
    fn start(nodes: usize) -> Deployment {
        let postgres = TestPostgres::start();
        let nats = TestNats::start(3);
        let shared = tempfile::tempdir().unwrap();
        let mut deployment = Deployment {
            postgres,
            nats,
            shared,
            nodes: Vec::new(),
        };
        for node in 0..nodes {
            deployment.add_node(node);
        }
        deployment
    }

    fn add_node(&mut self, node: usize) {
        self.add_node_with(node, &[]);
    }

    fn add_node_with(&mut self, node: usize, extra: &[&str]) {
        // Each node prefers a different NATS server and knows them all.
        let mut nats: Vec<String> = (0..3).map(|i| self.nats.url((i + node) % 3)).collect();
        nats.dedup();
        let url = self.postgres.url();
        let nats = nats.join(",");
        let mut args = vec!["--database-url", &url, "--nats", &nats];
        args.extend_from_slice(extra);
        let server = TestServer::start_node(self.shared.path(), &args);
        self.nodes.push(server);
    }

    fn url(&self, node: usize) -> String {
        self.nodes[node].url()
    }
}

async fn register_at(servers: &str, name: &str) -> Device {
    let home = tempfile::tempdir().unwrap();
    let client = Client::register(home.path(), servers, name, ClientOptions::default())
        .await
        .unwrap();
    Device { home, client }
}

/// Follows a device's live connection, forwarding message texts.
fn follow(
    device: std::sync::Arc<Device>,
) -> (
    mpsc::UnboundedReceiver<String>,
    tokio::sync::oneshot::Sender<()>,
) {
    let (tx, rx) = mpsc::unbounded_channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let _ = device
            .client
            .follow(
                move |m| {
                    let _ = tx.send(m.text.clone());
                },
                |_| {},
                async {
                    let _ = stop_rx.await;
                },
            )
            .await;
    });
    (rx, stop_tx)
}

async fn next(rx: &mut mpsc::UnboundedReceiver<String>, within: Duration) -> String {
    tokio::time::timeout(within, rx.recv())
        .await
        .expect("message in time")
        .expect("follower alive")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_through_node_one_reaches_a_follower_on_node_two_at_once() {
    let deployment = Deployment::start(2);
    let alice = register_at(&deployment.url(0), "alice").await;
    let bob = std::sync::Arc::new(register_at(&deployment.url(1), "bob").await);
    alice
        .client
        .send_text(&ChatRef::Direct(user("bob")), "first")
        .await
        .unwrap();
    let (mut texts, stop) = follow(bob.clone());
    assert_eq!(next(&mut texts, Duration::from_secs(20)).await, "first");
    // Live: the follower only syncs when a hint arrives, and the hint crosses nodes over NATS.
    for i in 0..5 {
        let sent = std::time::Instant::now();
        alice
            .client
            .send_text(&ChatRef::Direct(user("bob")), &format!("live {i}"))
            .await
            .unwrap();
        assert_eq!(
            next(&mut texts, Duration::from_secs(3)).await,
            format!("live {i}")
        );
        assert!(sent.elapsed() < Duration::from_secs(3));
    }
    let _ = stop.send(());

    // Operators see it in Prometheus' text format.
    let metrics = reqwest::get(format!("{}/metrics", deployment.nodes[0].metrics_url()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let counter = |name: &str| -> u64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} missing from /metrics"))
    };
    assert!(counter("parley_messages_in_total") >= 6, "{metrics}");
    assert!(
        metrics.contains("parley_request_seconds_bucket{route=\"/v1/messages\""),
        "{metrics}"
    );
    assert!(metrics.contains("parley_queue_depth"));
    let node_two = reqwest::get(format!("{}/metrics", deployment.nodes[1].metrics_url()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(node_two.contains("parley_messages_out_total"), "{node_two}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn competing_commits_on_two_nodes_converge() {
    let deployment = Deployment::start(2);
    let alice = register_at(&deployment.url(0), "alice").await;
    let bob = register_at(&deployment.url(1), "bob").await;
    for name in ["carol", "dave", "erin", "frank"] {
        register_at(&deployment.url(0), name).await;
    }
    alice
        .client
        .create_group("race", &[user("bob")])
        .await
        .unwrap();
    bob.client.sync().await.unwrap();
    let race = ChatRef::Group("race".into());
    for (a, b) in [("carol", "dave"), ("erin", "frank")] {
        let (a, b) = ([user(a)], [user(b)]);
        let (ra, rb) = tokio::join!(
            alice.client.add_members("race", &a),
            bob.client.add_members("race", &b)
        );
        ra.unwrap();
        rb.unwrap();
    }
    alice.client.sync().await.unwrap();
    bob.client.sync().await.unwrap();
    let state = alice.client.group_state(&race).unwrap();
    assert_eq!(state, bob.client.group_state(&race).unwrap());
    assert_eq!(
        state.members,
        ["alice", "bob", "carol", "dave", "erin", "frank"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_of_a_killed_node_reconnect_to_another_and_lose_nothing() {
    let mut deployment = Deployment::start(2);
    let both = format!("{},{}", deployment.url(1), deployment.url(0));
    let alice = register_at(&deployment.url(0), "alice").await;
    // Bob's app knows both nodes and starts on node two.
    let bob = std::sync::Arc::new(register_at(&both, "bob").await);
    alice
        .client
        .send_text(&ChatRef::Direct(user("bob")), "before")
        .await
        .unwrap();
    let (mut texts, stop) = follow(bob.clone());
    assert_eq!(next(&mut texts, Duration::from_secs(20)).await, "before");

    deployment.nodes[1].kill();
    let mut sent = Vec::new();
    for i in 0..10 {
        let text = format!("after {i}");
        alice
            .client
            .send_text(&ChatRef::Direct(user("bob")), &text)
            .await
            .unwrap();
        sent.push(text);
    }
    let mut got = Vec::new();
    while got.len() < sent.len() {
        got.push(next(&mut texts, Duration::from_secs(30)).await);
    }
    assert_eq!(got, sent);
    let _ = stop.send(());
    let history = bob
        .client
        .history(&ChatRef::Direct(user("alice")), 100)
        .unwrap();
    assert_eq!(history.len(), 11, "nothing lost, nothing twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_restart_loses_no_acknowledged_message() {
    let mut deployment = Deployment::start(1);
    let alice = register_at(&deployment.url(0), "alice").await;
    let bob = register_at(&deployment.url(0), "bob").await;
    let chat = ChatRef::Direct(user("bob"));
    let mut sent = Vec::new();
    for i in 0..10 {
        let text = format!("before restart {i}");
        assert_eq!(
            alice.client.send_text(&chat, &text).await.unwrap().status,
            "sent"
        );
        sent.push(text);
    }
    deployment.postgres.restart();
    for i in 0..10 {
        let text = format!("after restart {i}");
        // The server reconnects to the database; at worst a message waits in the outbox.
        alice.client.send_text(&chat, &text).await.unwrap();
        sent.push(text);
    }
    for _ in 0..20 {
        if alice.client.sync().await.is_ok()
            && alice
                .client
                .history(&chat, 100)
                .unwrap()
                .iter()
                .all(|m| m.status == "sent")
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let mut received = Vec::new();
    for _ in 0..20 {
        if let Ok(batch) = bob.client.sync().await {
            received.extend(batch.into_iter().map(|m| m.text));
        }
        if received.len() >= sent.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(received, sent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_continues_when_a_nats_node_stops() {
    let mut deployment = Deployment::start(2);
    let alice = register_at(&deployment.url(0), "alice").await;
    let bob = std::sync::Arc::new(register_at(&deployment.url(1), "bob").await);
    alice
        .client
        .send_text(&ChatRef::Direct(user("bob")), "warm-up")
        .await
        .unwrap();
    let (mut texts, stop) = follow(bob.clone());
    assert_eq!(next(&mut texts, Duration::from_secs(20)).await, "warm-up");
    // Node one's preferred NATS server goes away (node zero's is another one).
    deployment.nats.stop(1);
    for i in 0..5 {
        alice
            .client
            .send_text(&ChatRef::Direct(user("bob")), &format!("still live {i}"))
            .await
            .unwrap();
        assert_eq!(
            next(&mut texts, Duration::from_secs(10)).await,
            format!("still live {i}")
        );
    }
    let _ = stop.send(());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suspension_on_one_nodes_console_closes_live_connections_on_the_others_at_once() {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut deployment = Deployment::start(1);
    // Node two checks sessions only once a minute on its own: what closes the connection in
    // time is the announcement over NATS.
    let config = deployment.shared.path().join("slow-check.toml");
    std::fs::write(&config, "session_check_seconds = 60\n").unwrap();
    deployment.add_node_with(1, &["--config", config.to_str().unwrap()]);
    let alice = register_at(&deployment.url(1), "alice").await;
    let url = format!("{}/v1/ws", deployment.url(1).replacen("http", "ws", 1));
    let mut request = url.into_client_request().unwrap();
    let token = alice.client.api().token().unwrap().to_owned();
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    let mut socket = tokio_tungstenite::connect_async(request).await.unwrap().0;
    // The first frame announces the queue head: the session is running.
    assert!(matches!(socket.next().await, Some(Ok(_))));

    let output = std::process::Command::new(BIN)
        .args(["admin", "--data"])
        .arg(deployment.shared.path())
        .args(["--database-url", &deployment.postgres.url(), "token"])
        .output()
        .unwrap();
    assert!(output.status.success());
    let admin_token = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    let console = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let signed_in = console
        .post(format!("{}/admin/login", deployment.url(0)))
        .header("origin", deployment.url(0))
        .form(&[("token", admin_token.as_str())])
        .send()
        .await
        .unwrap();
    let cookie = signed_in
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .expect("a session cookie")
        .to_owned();
    let suspended_at = std::time::Instant::now();
    let response = console
        .post(format!("{}/admin/users/alice/suspend", deployment.url(0)))
        .header("cookie", &cookie)
        .header("origin", deployment.url(0))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_redirection(), "{}", response.status());
    let closed = closed_after(&mut socket, suspended_at, Duration::from_secs(20))
        .await
        .expect("the connection on node two stayed open");
    eprintln!("closed on the other node {closed:?} after the suspension");
    assert!(closed < Duration::from_secs(2), "closed after {closed:?}");
}

/// A live connection of `device` to a node, once its session runs (the first frame arrived).
async fn live_on(
    node: &str,
    device: &Device,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let url = format!("{}/v1/ws", node.replacen("http", "ws", 1));
    let mut request = url.into_client_request().unwrap();
    let token = device.client.api().token().unwrap().to_owned();
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    let mut socket = tokio_tungstenite::connect_async(request).await.unwrap().0;
    // The first frame announces the queue head: the session is running.
    assert!(matches!(socket.next().await, Some(Ok(_))));
    socket
}

/// How long after `since` the server closed the connection (at most `within`).
async fn closed_after(
    socket: &mut tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    since: std::time::Instant,
    within: Duration,
) -> Option<Duration> {
    use futures_util::StreamExt;
    tokio::time::timeout(within, async {
        loop {
            match socket.next().await {
                Some(Ok(tokio_tungstenite::tungstenite::Message::Close(_)))
                | Some(Err(_))
                | None => break since.elapsed(),
                Some(Ok(_)) => {}
            }
        }
    })
    .await
    .ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suspension_by_the_cli_closes_live_connections_on_every_node_at_once() {
    // Both nodes check sessions only once a minute on their own: what closes the connections
    // in time is the command's announcement over NATS.
    let mut deployment = Deployment::start(0);
    let config = deployment.shared.path().join("slow-check.toml");
    std::fs::write(&config, "session_check_seconds = 60\n").unwrap();
    for node in 0..2 {
        deployment.add_node_with(node, &["--config", config.to_str().unwrap()]);
    }
    let alice = register_at(&deployment.url(0), "alice").await;
    let bob = register_at(&deployment.url(0), "bob").await;
    let mut alice_sockets = [
        live_on(&deployment.url(0), &alice).await,
        live_on(&deployment.url(1), &alice).await,
    ];
    let mut bob_sockets = [
        live_on(&deployment.url(0), &bob).await,
        live_on(&deployment.url(1), &bob).await,
    ];
    let nats = (0..3)
        .map(|i| deployment.nats.url(i))
        .collect::<Vec<_>>()
        .join(",");

    // With the deployment's flags: --nats as `parley server` takes it.
    let started = std::time::Instant::now();
    let output = std::process::Command::new(BIN)
        .args(["admin", "--data"])
        .arg(deployment.shared.path())
        .args(["--database-url", &deployment.postgres.url()])
        .args(["--nats", &nats, "suspend", "alice"])
        .output()
        .unwrap();
    let done = std::time::Instant::now();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let out = String::from_utf8_lossy(&output.stdout);
    assert!(out.contains("over NATS"), "{out}");
    for (node, socket) in alice_sockets.iter_mut().enumerate() {
        let closed = closed_after(socket, done, Duration::from_secs(10)).await;
        eprintln!(
            "node {node}: closed {closed:?} after `parley admin suspend` returned ({:?} after it started)",
            done - started
        );
        let closed = closed.unwrap_or_else(|| panic!("node {node}: still open 10 s later"));
        assert!(
            closed < Duration::from_secs(1),
            "node {node}: closed after {closed:?}"
        );
    }
    // Bob's connections are not alice's: still open.
    for socket in bob_sockets.iter_mut() {
        assert_eq!(
            closed_after(socket, done, Duration::from_millis(500)).await,
            None
        );
    }

    // With the server's configuration file, which names the data, database and NATS servers.
    let server_config = deployment.shared.path().join("parley.toml");
    std::fs::write(
        &server_config,
        format!(
            "data = {:?}\ndatabase_url = {:?}\nnats = [{}]\n",
            deployment.shared.path(),
            deployment.postgres.url(),
            (0..3)
                .map(|i| format!("{:?}", deployment.nats.url(i)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    )
    .unwrap();
    let output = std::process::Command::new(BIN)
        .args(["admin", "--config"])
        .arg(&server_config)
        .args(["suspend", "bob"])
        .output()
        .unwrap();
    let done = std::time::Instant::now();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for (node, socket) in bob_sockets.iter_mut().enumerate() {
        let closed = closed_after(socket, done, Duration::from_secs(10)).await;
        eprintln!("node {node}: bob's connection closed {closed:?} after `parley admin --config` returned");
        let closed = closed.unwrap_or_else(|| panic!("node {node}: still open 10 s later"));
        assert!(
            closed < Duration::from_secs(1),
            "node {node}: closed after {closed:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_linked_on_another_node_gets_the_history_and_a_revoked_one_nothing() {
    let deployment = Deployment::start(2);
    let alice = register_at(&deployment.url(0), "alice").await;
    let bob = register_at(&deployment.url(1), "bob").await;
    bob.client
        .send_text(&ChatRef::Direct(user("alice")), "history across nodes")
        .await
        .unwrap();
    alice.client.sync().await.unwrap();
    // The new device talks to node two, the approver to node one.
    let (_home, alice2, _) = link_device(&deployment.url(1), &alice.client).await;
    let history: Vec<(String, bool)> = alice2
        .history(&ChatRef::Direct(user("bob")), 10)
        .unwrap()
        .into_iter()
        .map(|m| (m.text, m.history))
        .collect();
    assert_eq!(history, [("history across nodes".to_string(), true)]);
    bob.client
        .send_text(&ChatRef::Direct(user("alice")), "to both")
        .await
        .unwrap();
    for device in [&alice.client, &alice2] {
        let texts: Vec<String> = device
            .sync()
            .await
            .unwrap()
            .into_iter()
            .map(|m| m.text)
            .collect();
        assert_eq!(texts, ["to both"]);
    }
    // Revoked through node one, the device on node two loses its session at once.
    alice
        .client
        .revoke_device(&alice2.device_id().to_string())
        .await
        .unwrap();
    let err = alice2.sync().await.unwrap_err();
    assert!(err.to_string().contains("revoked"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_made_through_one_node_restores_through_another() {
    let deployment = Deployment::start(2);
    let alice = register_at(&deployment.url(0), "alice").await;
    let bob = register_at(&deployment.url(1), "bob").await;
    bob.client
        .send_text(&ChatRef::Direct(user("alice")), "backed up across nodes")
        .await
        .unwrap();
    alice.client.sync().await.unwrap();
    let (key, _) = alice.client.enable_backup(60).await.unwrap();
    drop(alice);
    // The restored device talks to node two.
    let home = tempfile::tempdir().unwrap();
    let (restored, report) = parley_client::Client::restore(
        home.path(),
        &deployment.url(1),
        "alice",
        &key.encode(),
        parley_client::ClientOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(
        (report.rejoined, report.revoked_devices),
        (1, 1),
        "{report:?}"
    );
    let history: Vec<String> = restored
        .history(&ChatRef::Direct(user("bob")), 10)
        .unwrap()
        .into_iter()
        .map(|m| m.text)
        .collect();
    assert_eq!(history, ["backed up across nodes"]);
    restored
        .send_text(&ChatRef::Direct(user("bob")), "back, via node two")
        .await
        .unwrap();
    let texts: Vec<String> = bob
        .client
        .sync()
        .await
        .unwrap()
        .into_iter()
        .filter(|m| m.kind == "text")
        .map(|m| m.text)
        .collect();
    assert_eq!(texts, ["back, via node two"]);
    // The restore revoked the lost device and so rotated alice's key, across nodes too.
    assert_eq!(bob.client.unverifiable_count().unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typing_on_node_one_reaches_a_follower_on_node_two_and_receipts_cross_nodes() {
    let deployment = Deployment::start(2);
    let alice = register_at(&deployment.url(0), "alice").await;
    let bob = std::sync::Arc::new(register_at(&deployment.url(1), "bob").await);
    let to_bob = ChatRef::Direct(user("bob"));
    let sent = alice.client.send_text(&to_bob, "first").await.unwrap();
    let mut typing = bob.client.typing_events();
    let (mut texts, stop) = follow(bob.clone());
    assert_eq!(next(&mut texts, Duration::from_secs(20)).await, "first");
    // The follower's sync sent a delivery receipt through node two.
    alice.client.sync().await.unwrap();
    let status = |client: &Client| {
        client
            .history(&to_bob, 10)
            .unwrap()
            .into_iter()
            .find(|m| m.id == sent.id)
            .unwrap()
            .status
    };
    assert_eq!(status(&alice.client), "delivered");
    // Typing crosses nodes over NATS, and only to the device that is online.
    let mut heard = None;
    for _ in 0..20 {
        alice.client.send_typing(&to_bob, true).await.unwrap();
        if let Ok(Ok(event)) = tokio::time::timeout(Duration::from_millis(500), typing.recv()).await
        {
            heard = Some(event);
            break;
        }
    }
    let heard = heard.expect("bob heard alice typing");
    assert_eq!(
        (heard.chat.as_str(), heard.sender.as_str()),
        ("alice", "alice")
    );
    let _ = stop.send(());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_sent_through_node_one_to_s3_reaches_node_two_and_a_new_device_by_reference() {
    let s3 = parley_testkit::TestS3::start();
    let mut deployment = Deployment::start(0);
    let (database, nats, endpoint) = (
        deployment.postgres.url(),
        deployment.nats.url(0),
        s3.endpoint(),
    );
    for _ in 0..2 {
        let node = TestServer::start_node_with_env(
            deployment.shared.path(),
            &[
                "--database-url",
                &database,
                "--nats",
                &nats,
                "--s3-endpoint",
                &endpoint,
                "--s3-bucket",
                &s3.bucket,
            ],
            &[
                ("AWS_ACCESS_KEY_ID", parley_testkit::S3_ACCESS_KEY),
                ("AWS_SECRET_ACCESS_KEY", parley_testkit::S3_SECRET_KEY),
            ],
        );
        deployment.nodes.push(node);
    }
    let alice = register_at(&deployment.url(0), "alice").await;
    let bob = register_at(&deployment.url(1), "bob").await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("plan.bin");
    let bytes: Vec<u8> = (0..5_000_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&file, &bytes).unwrap();
    let sent = alice
        .client
        .send_file(
            &ChatRef::Direct(user("bob")),
            &file,
            Some("the plan"),
            None,
            &|_, _| {},
        )
        .await
        .unwrap();
    let bucket = s3.storage().join(&s3.bucket);
    let stored = walk(&bucket);
    assert_eq!(stored.len(), 2, "two parts: {stored:?}");
    bob.client.sync().await.unwrap();
    // bob's new device gets the message with the history and fetches the same ciphertext.
    let (_home, bob2, _) = link_device(&deployment.url(1), &bob.client).await;
    assert_eq!(walk(&bucket), stored, "nothing uploaded again");
    // (The new device first: the server keeps a file until the devices that were in the chat
    // when it was sent have fetched it.)
    for (device, name) in [(&bob2, "two.bin"), (&bob.client, "one.bin")] {
        let saved = device
            .save_attachment(&sent.id, 0, Some(&dir.path().join(name)), &|_, _| {})
            .await
            .unwrap();
        assert!(std::fs::read(saved).unwrap() == bytes);
    }
    assert!(
        walk(&bucket).is_empty(),
        "fetched by every device, deleted from the bucket"
    );
}
