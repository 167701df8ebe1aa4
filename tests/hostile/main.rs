//! Hostile clients, with or without an account, against the real server binary: each test is
//! one attack and is named by what must hold. Raw HTTP and WebSocket requests, so that nothing
//! the client library would check on its own stands between the attacker and the server.
//!
//! Each attack is watched (`common::Watch`): the server's resident memory grows by less than a
//! stated bound (64 MiB unless the test states a tighter one) and `/healthz` answers within
//! 500 ms throughout; the figures are printed (`-- --nocapture`).
//!
//! - `sessions`: suspended accounts and ended sessions lose their live connections; live
//!   cursors and acknowledgements are checked (items 1, 9).
//! - `requests`: strict requests, private metrics, reserved names, KeyPackage claims, private
//!   files (items 6, 7, 9, 10, 11).
//! - `memory`: what a connection or a body can make the server hold (items 2, 4).
//! - `transport`: slowloris, connection caps and timeouts, rates checked before bodies (items 3,
//!   5).

#[path = "../common/mod.rs"]
mod common;
mod memory;
mod requests;
mod sessions;
mod transport;

use std::time::{Duration, Instant};

use common::*;
use futures_util::{SinkExt, StreamExt};
use parley_protocol::{v1, ErrorCode};
use prost::Message as _;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message as WsMessage;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

const PROTOBUF: &str = parley_protocol::CONTENT_TYPE;

async fn open_live(server: &str, token: &str) -> Socket {
    let url = format!("{}/v1/ws", server.replacen("http", "ws", 1));
    let mut request = url.into_client_request().unwrap();
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    tokio_tungstenite::connect_async(request).await.unwrap().0
}

fn token(device: &Device) -> String {
    device.client.api().token().expect("logged in").to_owned()
}

/// A WebSocket client on a raw TCP stream that never reads after the handshake.
async fn raw_live(server: &TestServer, token: &str) -> Option<tokio::net::TcpStream> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", server.port))
        .await
        .ok()?;
    let request = format!(
        "GET /v1/ws HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Authorization: Bearer {token}\r\n\r\n",
        server.port
    );
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).await.ok()? == 0 {
            return None;
        }
        head.push(byte[0]);
    }
    head.starts_with(b"HTTP/1.1 101").then_some(stream)
}

/// The live connection answers a ping and a submission while the session is valid.
async fn assert_live(socket: &mut Socket) {
    socket
        .send(WsMessage::Ping(b"hi".to_vec().into()))
        .await
        .unwrap();
    socket
        .send(WsMessage::Binary(live_submit(1).into()))
        .await
        .unwrap();
    let seen = observe(socket, Duration::from_millis(1500)).await;
    assert!(seen.pongs >= 1, "{seen:?}");
    assert!(
        seen.frames
            .iter()
            .any(|f| f.results.iter().any(|r| r.request_id == 1)),
        "{seen:?}"
    );
}

/// What the server does on a live connection within `within`: the frames it sends, and
/// whether it closed the connection (and when).
#[derive(Debug, Default)]
struct Observed {
    frames: Vec<v1::ServerFrame>,
    pongs: usize,
    closed_after: Option<Duration>,
    /// The close frame's code and reason, if the server sent one.
    close: Option<(u16, String)>,
}

async fn observe(socket: &mut Socket, within: Duration) -> Observed {
    let started = Instant::now();
    let mut seen = Observed::default();
    while let Some(left) = within.checked_sub(started.elapsed()) {
        match tokio::time::timeout(left, socket.next()).await {
            Err(_) => break,
            Ok(Some(Ok(WsMessage::Binary(bytes)))) => {
                seen.frames
                    .push(v1::ServerFrame::decode(bytes.as_ref()).expect("a ServerFrame"));
            }
            Ok(Some(Ok(WsMessage::Pong(_)))) => seen.pongs += 1,
            Ok(Some(Ok(WsMessage::Close(frame)))) => {
                seen.close = frame.map(|f| (u16::from(f.code), f.reason.to_string()));
                seen.closed_after = Some(started.elapsed());
                break;
            }
            Ok(Some(Err(_))) | Ok(None) => {
                seen.closed_after = Some(started.elapsed());
                break;
            }
            Ok(Some(Ok(_))) => {}
        }
    }
    seen
}

/// A submission frame that reaches the delivery service (which refuses its message id).
fn live_submit(request_id: u64) -> Vec<u8> {
    v1::ClientFrame {
        body: Some(v1::client_frame::Body::Submit(v1::LiveSubmit {
            request_id,
            submit: Some(v1::Submit {
                message_id: vec![1, 2, 3],
                mls_message: vec![0; 16],
                welcome: None,
                expires_in_ms: 0,
            }),
        })),
    }
    .encode_to_vec()
}
