//! The HTTP calls the load makes, as a client would.

use anyhow::{bail, Result};
use parley_protocol::v1;
use prost::Message as _;

#[derive(Clone)]
pub struct Http {
    pub(crate) client: reqwest::Client,
    pub(crate) base: String,
}

impl Http {
    pub fn new(base: &str) -> Result<Http> {
        Ok(Http {
            client: reqwest::Client::builder()
                .pool_max_idle_per_host(256)
                .build()?,
            base: base.to_owned(),
        })
    }

    pub(crate) async fn call<R: prost::Message + Default>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Vec<u8>>,
        token: Option<&str>,
    ) -> Result<R> {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.base))
            .header("content-type", parley_protocol::CONTENT_TYPE);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.body(body);
        }
        let response = request.send().await?;
        let status = response.status();
        let bytes = response.bytes().await?;
        if !status.is_success() {
            let error = v1::ErrorBody::decode(bytes.as_ref()).unwrap_or_default();
            bail!("{path}: {status}: {}", error.message);
        }
        Ok(R::decode(bytes.as_ref())?)
    }

    pub(crate) async fn post<Q: prost::Message, R: prost::Message + Default>(
        &self,
        path: &str,
        body: &Q,
        token: Option<&str>,
    ) -> Result<R> {
        self.call(
            reqwest::Method::POST,
            path,
            Some(body.encode_to_vec()),
            token,
        )
        .await
    }
}
