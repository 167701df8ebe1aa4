//! Routes for encrypted attachments. Each handler decodes, calls one method of
//! [`crate::attachments::Attachments`], and encodes; parts travel as raw bodies.

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequestParts, Path, State};
use axum::http::{header, request::Parts};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;
use parley_protocol::limits::ATTACHMENT_PART_BYTES;
use std::sync::Arc;

use super::{decode, AppState, Proto, Reader, Submitter, AUTH_BODY_BYTES, FEW_FIELDS};
use crate::accounts::Authenticated;
use crate::{ApiError, App};

fn hash_from_hex(text: &str) -> Result<Vec<u8>, ApiError> {
    hex::decode(text).map_err(|_| ApiError::malformed("attachment hashes in paths are hexadecimal"))
}

/// A [`Submitter`] whose announced part fits its account's upload budget for the minute,
/// charged before the body is read (a part without a length is charged once read).
struct Uploader {
    device: Authenticated,
    charged: bool,
}

impl FromRequestParts<Arc<App>> for Uploader {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, ApiError> {
        let Submitter(device) = Submitter::from_request_parts(parts, app).await?;
        let announced = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        if let Some(length) = announced {
            app.rates.check_uploaded_bytes(&device.0.user_id, length)?;
        }
        Ok(Uploader {
            device,
            charged: announced.is_some(),
        })
    }
}

async fn create(
    State(app): AppState,
    Submitter(device): Submitter,
    body: Bytes,
) -> Result<impl IntoResponse, ApiError> {
    let request = decode(&app, body, FEW_FIELDS).await?;
    Ok(Proto(app.attachments.create(&device, request).await?))
}

async fn status(
    State(app): AppState,
    Reader(device): Reader,
    Path(hash): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Proto(
        app.attachments
            .status(&device, &hash_from_hex(&hash)?)
            .await?,
    ))
}

async fn put_part(
    State(app): AppState,
    uploader: Uploader,
    Path((hash, index)): Path<(String, u64)>,
    body: Bytes,
) -> Result<impl IntoResponse, ApiError> {
    if !uploader.charged {
        app.rates
            .check_uploaded_bytes(&uploader.device.0.user_id, body.len())?;
    }
    Ok(Proto(
        app.attachments
            .put_part(&uploader.device, &hash_from_hex(&hash)?, index, body)
            .await?,
    ))
}

async fn get_part(
    State(app): AppState,
    Reader(device): Reader,
    Path((hash, index)): Path<(String, u64)>,
) -> Result<impl IntoResponse, ApiError> {
    let bytes = app
        .attachments
        .get_part(&device, &hash_from_hex(&hash)?, index)
        .await?;
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], bytes))
}

async fn fetched(
    State(app): AppState,
    Submitter(device): Submitter,
    Path(hash): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let hash = hash_from_hex(&hash)?;
    app.attachments.fetched(&device, &hash).await?;
    Ok(Proto(parley_protocol::v1::AttachmentStatus::default()))
}

pub(super) fn routes() -> Router<Arc<App>> {
    let small = || DefaultBodyLimit::max(AUTH_BODY_BYTES);
    Router::new()
        .route("/v1/attachments", post(create).layer(small()))
        .route("/v1/attachments/{hash}", get(status))
        .route(
            "/v1/attachments/{hash}/parts/{index}",
            get(get_part)
                .put(put_part)
                .layer(DefaultBodyLimit::max(ATTACHMENT_PART_BYTES as usize)),
        )
        .route(
            "/v1/attachments/{hash}/fetched",
            post(fetched).layer(small()),
        )
}
