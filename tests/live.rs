//! The live connection (`GET /v1/ws`) as a client that pushes and submits over it sees it:
//! items pushed in order and kept until acknowledged, submissions answered on the connection and
//! deduplicated by message id, and bad frames refused without harm. Real server binary, real
//! clients for setup, raw WebSocket frames for the protocol under test.

mod common;

use std::time::Duration;

use common::*;
use futures_util::{SinkExt, StreamExt};
use parley_client::ChatRef;
use parley_protocol::{v1, Username};
use prost::Message as _;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message as WsMessage;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

fn user(name: &str) -> Username {
    Username::parse(name).unwrap()
}

async fn open_live(server: &TestServer, device: &Device) -> Socket {
    let url = format!("{}/v1/ws", server.url().replacen("http", "ws", 1));
    let mut request = url.into_client_request().unwrap();
    let token = device.client.api().token().expect("logged in");
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    tokio_tungstenite::connect_async(request).await.unwrap().0
}

async fn send_frame(socket: &mut Socket, body: v1::client_frame::Body) {
    let frame = v1::ClientFrame { body: Some(body) }.encode_to_vec();
    socket.send(WsMessage::Binary(frame.into())).await.unwrap();
}

/// The next server frame, or `None` once the server closed the connection.
async fn next_frame(socket: &mut Socket) -> Option<v1::ServerFrame> {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(10), socket.next())
            .await
            .expect("a frame within 10 s")?;
        match message {
            Ok(WsMessage::Binary(bytes)) => {
                return Some(v1::ServerFrame::decode(bytes.as_ref()).expect("a ServerFrame"))
            }
            Ok(WsMessage::Close(_)) | Err(_) => return None,
            Ok(_) => {}
        }
    }
}

/// Reads frames until the pushed items reach the queue head the server announced.
async fn items_up_to_head(socket: &mut Socket) -> Vec<v1::QueueItem> {
    let mut items = Vec::new();
    loop {
        let frame = next_frame(socket).await.expect("connection open");
        items.extend(frame.items);
        if items.last().map_or(0, |i| i.seq) >= frame.queue_head && frame.queue_head > 0 {
            return items;
        }
    }
}

async fn start_push(socket: &mut Socket, after: u64) {
    send_frame(
        socket,
        v1::client_frame::Body::StartPush(v1::StartPush { after }),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushed_items_arrive_in_order_and_stay_queued_until_acknowledged() {
    let server = TestServer::start();
    let alice = Device::register(&server.url(), "alice").await;
    let bob = Device::register(&server.url(), "bob").await;
    let chat = ChatRef::Direct(user("bob"));
    alice.client.send_text(&chat, "one").await.unwrap();

    let mut live = open_live(&server, &bob).await;
    start_push(&mut live, 0).await;
    let backlog = items_up_to_head(&mut live).await;
    let seqs: Vec<u64> = backlog.iter().map(|i| i.seq).collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
    assert_eq!(backlog[0].kind, v1::ItemKind::Welcome as i32);
    let last = backlog.last().unwrap();
    assert_eq!(last.sender_username, "alice");
    assert!(
        last.franking.as_ref().is_some_and(|f| f.frank.len() == 32),
        "application messages carry a frank"
    );

    // A message sent now is pushed on the open connection, next in sequence.
    let sent = alice.client.send_text(&chat, "two").await.unwrap();
    let pushed = items_up_to_head(&mut live).await;
    assert_eq!(pushed.len(), 1);
    assert_eq!(pushed[0].seq, last.seq + 1);
    assert_eq!(hex::encode(&pushed[0].message_id), sent.id);

    // Nothing was acknowledged: a new connection gets everything again.
    drop(live);
    let mut again = open_live(&server, &bob).await;
    start_push(&mut again, 0).await;
    let replayed = items_up_to_head(&mut again).await;
    assert_eq!(replayed.len(), backlog.len() + 1);
    assert_eq!(replayed.last().unwrap().message_id, pushed[0].message_id);

    // Acknowledged on the connection, the items leave the queue.
    let head = replayed.last().unwrap().seq;
    send_frame(
        &mut again,
        v1::client_frame::Body::Ack(v1::Ack { up_to: head }),
    )
    .await;
    let mut left = u64::MAX;
    for _ in 0..100 {
        let batch: v1::QueueBatch = bob.client.api().get("/v1/queue?after=0").await.unwrap();
        left = batch.items.len() as u64;
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(left, 0, "acknowledged items are deleted");

    // A cursor past the head cannot skip what comes next: it is refused, closing the
    // connection (tests/hostile/sessions.rs has the close frame), and from the head the next one comes.
    let mut third = open_live(&server, &bob).await;
    start_push(&mut third, head + 1_000).await;
    let mut closed = false;
    for _ in 0..5 {
        if next_frame(&mut third).await.is_none() {
            closed = true;
            break;
        }
    }
    assert!(closed, "a cursor beyond the head was accepted");
    let mut fourth = open_live(&server, &bob).await;
    start_push(&mut fourth, head).await;
    alice.client.send_text(&chat, "three").await.unwrap();
    let next = items_up_to_head(&mut fourth).await;
    assert_eq!(next[0].seq, head + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_submissions_are_answered_and_deduplicated_by_message_id() {
    let server = TestServer::start();
    let proxy = FaultyProxy::start(server.port).await;
    let alice = Device::register(&proxy.url(), "alice").await;
    let bob = Device::register(&server.url(), "bob").await;
    let chat = ChatRef::Direct(user("bob"));
    alice.client.send_text(&chat, "one").await.unwrap();
    // The upload of "two" never reaches the server: it waits in Alice's outbox.
    proxy.arm("POST /v1/messages", Fault::DropRequest);
    let two = alice.client.send_text(&chat, "two").await.unwrap();
    assert_eq!(two.status, "sending");
    let (message_id, mls): (Vec<u8>, Vec<u8>) =
        rusqlite::Connection::open(alice.home.path().join("parley.db"))
            .unwrap()
            .query_row(
                "SELECT message_id, mls FROM outbox ORDER BY seq LIMIT 1",
                [],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .unwrap();
    assert_eq!(hex::encode(&message_id), two.id);

    let mut bob_live = open_live(&server, &bob).await;
    start_push(&mut bob_live, 0).await;
    let before = items_up_to_head(&mut bob_live).await;

    let mut alice_live = open_live(&server, &alice).await;
    let submit = |request_id| {
        v1::client_frame::Body::Submit(v1::LiveSubmit {
            request_id,
            submit: Some(v1::Submit {
                message_id: message_id.clone(),
                mls_message: mls.clone(),
                welcome: None,
                expires_in_ms: 0,
            }),
        })
    };
    let mut results = Vec::new();
    for request_id in [7, 8] {
        send_frame(&mut alice_live, submit(request_id)).await;
        while results.len() < (request_id - 6) as usize {
            results.extend(next_frame(&mut alice_live).await.unwrap().results);
        }
    }
    let first = results[0].accepted.clone().expect("accepted");
    let second = results[1].accepted.clone().expect("answered again");
    assert_eq!((results[0].request_id, results[1].request_id), (7, 8));
    assert!(!first.duplicate);
    assert!(second.duplicate, "the same message id is stored once");
    assert_eq!(first.group_seq, second.group_seq);

    // Bob gets it once, pushed.
    let pushed = items_up_to_head(&mut bob_live).await;
    assert_eq!(pushed.len(), 1);
    assert_eq!(pushed[0].message_id, message_id);
    assert_eq!(pushed[0].seq, before.last().unwrap().seq + 1);

    // Alice's app uploads its outbox later: the server answers with the first result, and
    // Bob's app shows "two" once.
    alice.client.sync().await.unwrap();
    drop(bob_live);
    let texts: Vec<String> = bob
        .client
        .sync()
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.text)
        .collect();
    assert_eq!(texts, ["one", "two"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_live_frames_are_refused_and_the_server_carries_on() {
    let server = TestServer::start_with(&["--max-frame-bytes", "1048576"]);
    let alice = Device::register(&server.url(), "alice").await;

    // A submission the server cannot use is answered with an error; the connection stays.
    let mut live = open_live(&server, &alice).await;
    send_frame(
        &mut live,
        v1::client_frame::Body::Submit(v1::LiveSubmit {
            request_id: 1,
            submit: Some(v1::Submit {
                message_id: vec![1; 16],
                mls_message: b"not MLS at all".to_vec(),
                welcome: None,
                expires_in_ms: 0,
            }),
        }),
    )
    .await;
    send_frame(
        &mut live,
        v1::client_frame::Body::Submit(v1::LiveSubmit {
            request_id: 2,
            submit: None,
        }),
    )
    .await;
    let mut results = Vec::new();
    while results.len() < 2 {
        results.extend(next_frame(&mut live).await.expect("still open").results);
    }
    results.sort_by_key(|r| r.request_id);
    for result in &results {
        let error = result.error.as_ref().expect("refused");
        assert!(result.accepted.is_none());
        assert!(!error.message.is_empty());
    }
    assert_eq!(
        results[0].error.as_ref().unwrap().code,
        parley_protocol::ErrorCode::InvalidMlsMessage as u32
    );

    // A frame that is not a ClientFrame ends the connection.
    live.send(WsMessage::Binary(vec![0xff; 9].into()))
        .await
        .unwrap();
    assert!(next_frame(&mut live).await.is_none(), "closed");

    // So does a frame over the size limit.
    let mut live = open_live(&server, &alice).await;
    let _ = live
        .send(WsMessage::Binary(vec![0u8; 2_000_000].into()))
        .await;
    let mut closed = false;
    for _ in 0..5 {
        if next_frame(&mut live).await.is_none() {
            closed = true;
            break;
        }
    }
    assert!(closed, "an oversized frame closes the connection");

    // Nothing of this harmed the server.
    let mut live = open_live(&server, &alice).await;
    start_push(&mut live, 0).await;
    let frame = next_frame(&mut live).await.expect("served");
    assert!(frame.items.is_empty());
}

/// Opens the live connection as a browser must: no headers of its own, the session token as
/// a WebSocket subprotocol beside `parley.v1`.
async fn open_live_as_browser(
    server: &TestServer,
    token: &str,
) -> Result<
    (
        Socket,
        tokio_tungstenite::tungstenite::handshake::client::Response,
    ),
    tokio_tungstenite::tungstenite::Error,
> {
    let url = format!("{}/v1/ws", server.url().replacen("http", "ws", 1));
    let mut request = url.into_client_request().unwrap();
    request.headers_mut().insert(
        "sec-websocket-protocol",
        format!("parley.v1, parley.bearer.{token}").parse().unwrap(),
    );
    tokio_tungstenite::connect_async(request).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_authenticates_the_live_connection_with_a_subprotocol() {
    let server = TestServer::start();
    let alice = Device::register(&server.url(), "alice").await;
    let bob = Device::register(&server.url(), "bob").await;
    alice
        .client
        .send_text(&ChatRef::Direct(user("bob")), "hello")
        .await
        .unwrap();

    let token = bob.client.api().token().expect("logged in");
    let (mut live, response) = open_live_as_browser(&server, &token).await.unwrap();
    // The server picks `parley.v1`; the token is never echoed back.
    let chosen = response.headers().get("sec-websocket-protocol").unwrap();
    assert_eq!(chosen, "parley.v1");
    start_push(&mut live, 0).await;
    let items = items_up_to_head(&mut live).await;
    assert_eq!(items.last().unwrap().sender_username, "alice");

    // A wrong token in the subprotocol is refused before any upgrade.
    let wrong = "0".repeat(64);
    let refused = open_live_as_browser(&server, &wrong).await.unwrap_err();
    match refused {
        tokio_tungstenite::tungstenite::Error::Http(response) => {
            assert_eq!(response.status(), 401)
        }
        other => panic!("expected 401, got {other}"),
    }
    // Nor does the subprotocol carry a token into any other request, even one that claims
    // to upgrade.
    let http = reqwest::Client::new();
    for (method, path) in [
        (reqwest::Method::GET, "/v1/queue?after=0"),
        (reqwest::Method::POST, "/v1/queue/ack"),
    ] {
        let answer = http
            .request(method, format!("{}{path}", server.url()))
            .header("upgrade", "websocket")
            .header("content-type", parley_protocol::CONTENT_TYPE)
            .header(
                "sec-websocket-protocol",
                format!("parley.v1, parley.bearer.{token}"),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 401, "{path}");
    }
    // And the live route takes it only beside `parley.v1`.
    let url = format!("{}/v1/ws", server.url().replacen("http", "ws", 1));
    let mut request = url.into_client_request().unwrap();
    request.headers_mut().insert(
        "sec-websocket-protocol",
        format!("parley.bearer.{token}").parse().unwrap(),
    );
    assert!(tokio_tungstenite::connect_async(request).await.is_err());
}
