//! The live WebSocket on tokio-tungstenite (TLS by rustls).

use tokio_tungstenite::tungstenite::Message as WsMessage;

use super::TlsConfig;
use crate::error::ClientError;

pub struct LiveSocket {
    stream: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
}

fn lost(e: impl std::fmt::Display) -> ClientError {
    ClientError::Network(format!("live connection: {e}"))
}

impl LiveSocket {
    /// Connects to `url` (`ws://` or `wss://`) as the device holding `token`.
    pub async fn connect(url: &str, token: &str, tls: &TlsConfig) -> Result<Self, ClientError> {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut request = url
            .into_client_request()
            .map_err(|e| ClientError::Config(e.to_string()))?;
        let value = format!("Bearer {token}")
            .parse()
            .map_err(|_| ClientError::Protocol("token is not a valid header".into()))?;
        request.headers_mut().insert("authorization", value);
        let connector = tokio_tungstenite::Connector::Rustls(tls.clone());
        let (stream, _) =
            tokio_tungstenite::connect_async_tls_with_config(request, None, false, Some(connector))
                .await
                .map_err(|e| ClientError::Network(format!("live connection failed: {e}")))?;
        Ok(LiveSocket { stream })
    }

    /// The next binary frame; `None` once the server closed the connection.
    pub async fn recv(&mut self) -> Result<Option<Vec<u8>>, ClientError> {
        use futures_util::StreamExt;
        while let Some(frame) = self.stream.next().await {
            match frame.map_err(lost)? {
                WsMessage::Binary(bytes) => return Ok(Some(bytes.to_vec())),
                WsMessage::Close(_) => return Ok(None),
                _ => {}
            }
        }
        Ok(None)
    }

    pub async fn send(&mut self, frame: Vec<u8>) -> Result<(), ClientError> {
        use futures_util::SinkExt;
        self.stream
            .send(WsMessage::Binary(frame.into()))
            .await
            .map_err(lost)
    }

    /// Closes politely (what was sent is delivered first).
    pub async fn close(mut self) {
        let _ = self.stream.close(None).await;
    }
}
