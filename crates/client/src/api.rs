//! The client's side of the wire: typed HTTP calls and the live WebSocket.

use std::sync::Mutex;
use std::time::Duration;

use futures_util::StreamExt as _;
use parley_protocol::{v1, ErrorCode, WireError};
use prost::Message;
use reqwest::{Method, StatusCode};

use crate::error::ClientError;
use crate::platform::LiveSocket;

/// How long one request may take, its answer included (a 4 MiB part on a slow link).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

pub use crate::platform::{tls_config, TlsConfig};

/// The server, reached at one of several addresses (nodes of one deployment): a request that
/// cannot connect moves on to the next node.
pub struct ServerApi {
    bases: Vec<String>,
    current: std::sync::atomic::AtomicUsize,
    http: reqwest::Client,
    tls: TlsConfig,
    token: Mutex<Option<String>>,
}

impl ServerApi {
    /// `bases` is one address or several, comma-separated.
    pub fn new(bases: &str, tls: TlsConfig) -> Result<Self, ClientError> {
        let bases: Vec<String> = bases
            .split(',')
            .map(|b| b.trim().trim_end_matches('/').to_owned())
            .filter(|b| !b.is_empty())
            .collect();
        if bases.is_empty() {
            return Err(ClientError::Config("no server address".into()));
        }
        if let Some(bad) = bases
            .iter()
            .find(|b| !(b.starts_with("http://") || b.starts_with("https://")))
        {
            return Err(ClientError::Config(format!(
                "server address must start with http:// or https://: {bad}"
            )));
        }
        let http = crate::platform::http_client(&tls)?;
        Ok(ServerApi {
            bases,
            current: std::sync::atomic::AtomicUsize::new(0),
            http,
            tls,
            token: Mutex::new(None),
        })
    }

    /// All addresses, as stored (comma-separated).
    pub fn base(&self) -> String {
        self.bases.join(",")
    }

    fn current_base(&self) -> &str {
        &self.bases[self.current.load(std::sync::atomic::Ordering::Relaxed) % self.bases.len()]
    }

    fn fail_over(&self) {
        self.current
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn set_token(&self, token: Option<String>) {
        *self.token.lock().unwrap_or_else(|p| p.into_inner()) = token;
    }

    pub fn token(&self) -> Option<String> {
        self.token.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    async fn call<R: Message + Default>(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        authenticated: bool,
    ) -> Result<R, ClientError> {
        let body = body.map(|b| (parley_protocol::CONTENT_TYPE, b));
        let bytes = self.call_bytes(method, path, body, authenticated).await?;
        R::decode(bytes.as_ref())
            .map_err(|e| ClientError::Protocol(format!("malformed answer from server: {e}")))
    }

    /// A request whose answer is taken as raw bytes (empty for "no content").
    async fn call_bytes(
        &self,
        method: Method,
        path: &str,
        body: Option<(&'static str, Vec<u8>)>,
        authenticated: bool,
    ) -> Result<bytes::Bytes, ClientError> {
        let mut attempts = 0;
        let mut sent_again = false;
        loop {
            attempts += 1;
            match self
                .call_once(method.clone(), path, body.clone(), authenticated)
                .await
            {
                // Only a request that never connected is safe to send elsewhere blindly; any
                // other is retried by its caller with the same message id anyway.
                Err(ClientError::Network(e))
                    if e.starts_with(CONNECT_FAILED) && attempts < self.bases.len() =>
                {
                    self.fail_over();
                }
                // A kept-alive connection the server closed as the request went out (its
                // keep-alive timeout fired): a GET changes nothing, so it goes once more, on
                // a new connection.
                Err(ClientError::Network(e))
                    if e.starts_with(REQUEST_FAILED) && method == Method::GET && !sent_again =>
                {
                    sent_again = true;
                }
                other => return other,
            }
        }
    }

    async fn call_once(
        &self,
        method: Method,
        path: &str,
        body: Option<(&'static str, Vec<u8>)>,
        authenticated: bool,
    ) -> Result<bytes::Bytes, ClientError> {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.current_base()))
            .timeout(REQUEST_TIMEOUT);
        if let Some((content_type, body)) = body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, content_type)
                .body(body);
        }
        if authenticated {
            let token = self.token().ok_or(ClientError::NotLoggedIn)?;
            request = request.bearer_auth(token);
        }
        let response = request
            .send()
            .await
            .map_err(|e| ClientError::Network(describe(&e)))?;
        let status = response.status();
        // Read within a bound: a hostile or broken server cannot make us hold any amount.
        let too_large = || {
            ClientError::Protocol(format!(
                "the server's answer is larger than {} MiB; refused",
                MAX_RESPONSE_BYTES >> 20
            ))
        };
        if response
            .content_length()
            .is_some_and(|length| length > MAX_RESPONSE_BYTES as u64)
        {
            return Err(too_large());
        }
        let mut body = Vec::new();
        let mut chunks = response.bytes_stream();
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk.map_err(|e| ClientError::Network(describe(&e)))?;
            if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        let bytes = bytes::Bytes::from(body);
        if status.is_success() {
            if status == StatusCode::NO_CONTENT {
                return Ok(bytes::Bytes::new());
            }
            return Ok(bytes);
        }
        let error = v1::ErrorBody::decode(bytes.as_ref())
            .ok()
            // An empty body decodes as an empty ErrorBody: that is not Parley speaking either.
            .filter(|body| !body.message.trim().is_empty())
            .map(WireError::from_wire)
            .unwrap_or_else(|| {
                // Not from Parley's own handlers (a proxy, say): a 4xx will not go away by
                // retrying, a 5xx may.
                let code = match status.as_u16() {
                    413 => ErrorCode::TooLarge,
                    400..=499 => ErrorCode::Malformed,
                    _ => ErrorCode::Unavailable,
                };
                WireError::new(code, format!("server answered HTTP {status}"))
            });
        Err(ClientError::Server(error))
    }

    /// `PUT` of raw bytes (an attachment part); the answer is a protobuf message.
    pub async fn put_raw<R: Message + Default>(
        &self,
        path: &str,
        bytes: Vec<u8>,
    ) -> Result<R, ClientError> {
        let body = Some(("application/octet-stream", bytes));
        let answer = self.call_bytes(Method::PUT, path, body, true).await?;
        R::decode(answer.as_ref())
            .map_err(|e| ClientError::Protocol(format!("malformed answer from server: {e}")))
    }

    /// `GET` of raw bytes (an attachment part).
    pub async fn get_raw(&self, path: &str) -> Result<bytes::Bytes, ClientError> {
        self.call_bytes(Method::GET, path, None, true).await
    }

    pub async fn post<Q: Message, R: Message + Default>(
        &self,
        path: &str,
        body: &Q,
        auth: bool,
    ) -> Result<R, ClientError> {
        self.call(Method::POST, path, Some(body.encode_to_vec()), auth)
            .await
    }

    pub async fn put<Q: Message, R: Message + Default>(
        &self,
        path: &str,
        body: &Q,
    ) -> Result<R, ClientError> {
        self.call(Method::PUT, path, Some(body.encode_to_vec()), true)
            .await
    }

    pub async fn delete<R: Message + Default>(&self, path: &str) -> Result<R, ClientError> {
        self.call(Method::DELETE, path, None, true).await
    }

    pub async fn get<R: Message + Default>(&self, path: &str) -> Result<R, ClientError> {
        self.call(Method::GET, path, None, true).await
    }

    pub async fn get_public<R: Message + Default>(&self, path: &str) -> Result<R, ClientError> {
        self.call(Method::GET, path, None, false).await
    }

    /// Opens the live WebSocket; each frame carries the device's queue head.
    pub async fn connect_live(&self) -> Result<LiveConnection, ClientError> {
        let url = format!("{}/v1/ws", self.current_base().replacen("http", "ws", 1));
        let token = self.token().ok_or(ClientError::NotLoggedIn)?;
        let socket = LiveSocket::connect(&url, &token, &self.tls)
            .await
            // Next time, another node.
            .inspect_err(|_| self.fail_over())?;
        Ok(LiveConnection { socket })
    }
}

/// The largest answer the client reads from the server: a queue page (16 MiB past its first
/// item), a group's public state for the largest groups, an attachment part (4 MiB).
const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;

fn describe(error: &reqwest::Error) -> String {
    if crate::platform::never_connected(error) {
        CONNECT_FAILED.into()
    } else if error.is_timeout() {
        "the server did not answer in time".into()
    } else {
        format!("{REQUEST_FAILED}: {error}")
    }
}

const CONNECT_FAILED: &str = "cannot connect to the server";
const REQUEST_FAILED: &str = "request failed";

pub struct LiveConnection {
    socket: LiveSocket,
}

impl LiveConnection {
    /// Waits for the next queue-head hint. `None` when the server closed the connection.
    pub async fn next_head(&mut self) -> Result<Option<u64>, ClientError> {
        Ok(self.next_frame().await?.map(|frame| frame.queue_head))
    }

    /// Waits for the next frame: the queue head, and typing indicators. `None` when the
    /// server closed the connection.
    pub async fn next_frame(&mut self) -> Result<Option<v1::ServerFrame>, ClientError> {
        let Some(bytes) = self.socket.recv().await? else {
            return Ok(None);
        };
        let frame = v1::ServerFrame::decode(bytes.as_slice())
            .map_err(|e| ClientError::Protocol(format!("malformed live frame: {e}")))?;
        Ok(Some(frame))
    }

    /// Sends a typing indicator.
    pub async fn send_typing(&mut self, typing: v1::Typing) -> Result<(), ClientError> {
        let frame = v1::ClientFrame {
            body: Some(v1::client_frame::Body::Typing(typing)),
        };
        self.socket.send(frame.encode_to_vec()).await
    }

    /// Closes the connection politely (what was sent is delivered first).
    pub async fn close(self) {
        self.socket.close().await
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio::net::{TcpListener, TcpStream};

    use super::*;

    const ANSWER: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";

    /// Reads one request head (these requests have no body).
    async fn read_request(stream: &mut TcpStream) -> bool {
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            match stream.read(&mut byte).await {
                Ok(1) => head.push(byte[0]),
                _ => return false,
            }
        }
        true
    }

    /// A server that answers the first request on each connection, keeps it open, and closes
    /// it unanswered when the next request comes: a keep-alive timeout firing just as a
    /// request arrives on the pooled connection. Counts the requests it read.
    async fn server_closing_kept_connections() -> (String, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(AtomicUsize::new(0));
        let counted = requests.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let counted = counted.clone();
                tokio::spawn(async move {
                    if !read_request(&mut stream).await {
                        return;
                    }
                    counted.fetch_add(1, Ordering::SeqCst);
                    stream.write_all(ANSWER).await.unwrap();
                    if read_request(&mut stream).await {
                        counted.fetch_add(1, Ordering::SeqCst);
                    }
                    // Dropped unanswered.
                });
            }
        });
        (base, requests)
    }

    #[tokio::test]
    async fn a_get_on_a_kept_connection_the_server_closed_is_sent_again_on_a_new_one() {
        let (base, requests) = server_closing_kept_connections().await;
        let api = ServerApi::new(&base, tls_config(None).unwrap()).unwrap();
        api.get_public::<v1::ErrorBody>("/v1/info").await.unwrap();
        api.get_public::<v1::ErrorBody>("/v1/info").await.unwrap();
        assert_eq!(requests.load(Ordering::SeqCst), 3, "sent once more");
    }

    #[tokio::test]
    async fn a_post_on_such_a_connection_is_not_sent_again_by_the_transport() {
        // Its caller decides (a message is retried with its id, which the server dedups).
        let (base, requests) = server_closing_kept_connections().await;
        let api = ServerApi::new(&base, tls_config(None).unwrap()).unwrap();
        api.get_public::<v1::ErrorBody>("/v1/info").await.unwrap();
        let error = api
            .post::<_, v1::ErrorBody>("/v1/anything", &v1::ErrorBody::default(), false)
            .await
            .unwrap_err();
        assert!(matches!(error, ClientError::Network(_)), "{error:?}");
        assert_eq!(requests.load(Ordering::SeqCst), 2);
    }
}
