//! Raw protobuf requests to the server, as a hostile or a hand-rolled client sends them: no
//! retries, no connection reuse, errors as (HTTP status, code, message).

use parley_protocol::{v1, ErrorCode};
use prost::Message;

/// A 2xx answer decoded, or the error body as (status, code, message).
fn answer<R: Message + Default>(status: u16, bytes: &[u8]) -> Result<R, (u16, ErrorCode, String)> {
    if (200..300).contains(&status) {
        Ok(R::decode(bytes).expect("decodes"))
    } else {
        let error = v1::ErrorBody::decode(bytes).expect("error body decodes");
        Err((status, ErrorCode::from_u32(error.code), error.message))
    }
}

pub struct Raw {
    pub http: reqwest::Client,
    pub base: String,
    token: Option<String>,
}

impl Raw {
    pub fn new(base: &str, token: Option<String>) -> Raw {
        // No connection reuse: the server closes a connection after refusing an oversized body,
        // and a pooled connection would then fail the next request.
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .unwrap();
        Raw {
            http,
            base: base.to_owned(),
            token,
        }
    }

    pub async fn post_bytes(&self, path: &str, body: Vec<u8>) -> (u16, Vec<u8>) {
        self.send_bytes(reqwest::Method::POST, path, body).await
    }

    pub async fn send_bytes(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Vec<u8>,
    ) -> (u16, Vec<u8>) {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("content-type", parley_protocol::CONTENT_TYPE)
            .body(body);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        (status, response.bytes().await.unwrap().to_vec())
    }

    pub async fn post<Q: Message, R: Message + Default>(
        &self,
        path: &str,
        body: &Q,
    ) -> Result<R, (u16, ErrorCode, String)> {
        let (status, bytes) = self.post_bytes(path, body.encode_to_vec()).await;
        answer(status, &bytes)
    }

    pub async fn put<Q: Message, R: Message + Default>(
        &self,
        path: &str,
        body: &Q,
    ) -> Result<R, (u16, ErrorCode, String)> {
        let (status, bytes) = self
            .send_bytes(reqwest::Method::PUT, path, body.encode_to_vec())
            .await;
        answer(status, &bytes)
    }

    pub async fn get<R: Message + Default>(
        &self,
        path: &str,
    ) -> Result<R, (u16, ErrorCode, String)> {
        let mut request = self.http.get(format!("{}{path}", self.base));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        let bytes = response.bytes().await.unwrap();
        answer(status, &bytes)
    }

    pub async fn healthy(&self) -> bool {
        let response = self.http.get(format!("{}/healthz", self.base)).send().await;
        response.map(|r| r.status().is_success()).unwrap_or(false)
    }
}
