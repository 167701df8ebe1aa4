//! Routes for several devices per account: links, blobs and the device list. Each handler
//! decodes, calls one method of [`crate::links::Links`], and encodes.

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::response::IntoResponse;
use axum::routing::{get, post, put};
use axum::Router;
use parley_protocol::limits::MAX_BLOB_CHUNK_BYTES;
use std::sync::Arc;

use super::AUTH_BODY_BYTES;
use super::{decode, AppState, Proto, Reader, RegistrationAllowed, Sender, Submitter, FEW_FIELDS};
use crate::{ApiError, App};

/// A revocation with a sealed new account key for each remaining device (each at most
/// `MAX_SEALED_ROTATION_KEYS_BYTES`; their number is checked against the device cap).
const REVOKE_BODY_BYTES: usize = 1024 * 1024;
/// A chunk and its protobuf framing.
const CHUNK_BODY_BYTES: usize = MAX_BLOB_CHUNK_BYTES + 64;

fn id_from_hex(text: &str) -> Result<Vec<u8>, ApiError> {
    hex::decode(text).map_err(|_| ApiError::malformed("ids in paths are hexadecimal"))
}

async fn create_link(
    State(app): AppState,
    _allowed: RegistrationAllowed,
    body: Bytes,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Proto(
        app.links
            .create(decode(&app, body, FEW_FIELDS).await?)
            .await?,
    ))
}

async fn get_link(
    State(app): AppState,
    Reader(device): Reader,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Proto(app.links.get(&device, &id_from_hex(&id)?).await?))
}

async fn approve_link(
    State(app): AppState,
    Submitter(device): Submitter,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<impl IntoResponse, ApiError> {
    let request = decode(&app, body, FEW_FIELDS).await?;
    Ok(Proto(
        app.links
            .approve(&device, &id_from_hex(&id)?, request)
            .await?,
    ))
}

async fn create_blob(
    State(app): AppState,
    Submitter(device): Submitter,
    body: Bytes,
) -> Result<impl IntoResponse, ApiError> {
    let request = decode(&app, body, FEW_FIELDS).await?;
    Ok(Proto(app.links.create_blob(&device, request).await?))
}

async fn blob_status(
    State(app): AppState,
    Reader(device): Reader,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Proto(app.links.status(&device, &id_from_hex(&id)?).await?))
}

async fn delete_blob(
    State(app): AppState,
    Submitter(device): Submitter,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    app.links.delete_blob(&device, &id_from_hex(&id)?).await?;
    Ok(Proto(parley_protocol::v1::SealBlob { chunks: 0 }))
}

async fn put_chunk(
    State(app): AppState,
    sender: Sender,
    Path((id, index)): Path<(String, u32)>,
    body: Bytes,
) -> Result<impl IntoResponse, ApiError> {
    // Chunks count against the account's byte budget, like messages.
    if !sender.charged {
        app.rates
            .check_sent_bytes(&sender.device.0.user_id, body.len())?;
    }
    let chunk = decode(&app, body, FEW_FIELDS).await?;
    Ok(Proto(
        app.links
            .put_chunk(&sender.device, &id_from_hex(&id)?, index, chunk)
            .await?,
    ))
}

async fn get_chunk(
    State(app): AppState,
    Reader(device): Reader,
    Path((id, index)): Path<(String, u32)>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Proto(
        app.links.chunk(&device, &id_from_hex(&id)?, index).await?,
    ))
}

async fn seal_blob(
    State(app): AppState,
    Submitter(device): Submitter,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<impl IntoResponse, ApiError> {
    let request = decode(&app, body, FEW_FIELDS).await?;
    Ok(Proto(
        app.links.seal(&device, &id_from_hex(&id)?, request).await?,
    ))
}

async fn devices(
    State(app): AppState,
    Reader(device): Reader,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Proto(app.links.devices(&device).await?))
}

async fn rename_device(
    State(app): AppState,
    Submitter(device): Submitter,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<impl IntoResponse, ApiError> {
    let request = decode(&app, body, FEW_FIELDS).await?;
    Ok(Proto(
        app.links
            .rename(&device, &id_from_hex(&id)?, request)
            .await?,
    ))
}

async fn revoke_device(
    State(app): AppState,
    Submitter(device): Submitter,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<impl IntoResponse, ApiError> {
    // A revocation carries a sealed new key for each remaining device (up to the cap).
    let fields = FEW_FIELDS + 8 * app.config.max_devices_per_account as usize;
    let request = decode(&app, body, fields).await?;
    Ok(Proto(
        app.links
            .revoke(&device, &id_from_hex(&id)?, request)
            .await?,
    ))
}

async fn account_rotations(
    State(app): AppState,
    Reader(_device): Reader,
    Path(username): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Proto(app.links.rotations(&username).await?))
}

async fn waiting_rotation(
    State(app): AppState,
    Reader(device): Reader,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Proto(app.links.waiting_rotation(&device).await?))
}

async fn finish_rotation(
    State(app): AppState,
    Submitter(device): Submitter,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Proto(app.links.finish_rotation(&device).await?))
}

pub(super) fn routes() -> Router<Arc<App>> {
    let small = || DefaultBodyLimit::max(AUTH_BODY_BYTES);
    Router::new()
        .route("/v1/links", post(create_link).layer(small()))
        .route("/v1/links/{id}", get(get_link))
        .route("/v1/links/{id}/approve", post(approve_link).layer(small()))
        .route("/v1/blobs", post(create_blob).layer(small()))
        .route("/v1/blobs/{id}", get(blob_status).delete(delete_blob))
        .route(
            "/v1/blobs/{id}/{index}",
            get(get_chunk).merge(put(put_chunk).layer(DefaultBodyLimit::max(CHUNK_BODY_BYTES))),
        )
        .route("/v1/blobs/{id}/seal", post(seal_blob).layer(small()))
        .route("/v1/devices", get(devices))
        .route("/v1/devices/{id}/name", post(rename_device).layer(small()))
        .route(
            "/v1/devices/{id}/revoke",
            post(revoke_device).layer(DefaultBodyLimit::max(REVOKE_BODY_BYTES)),
        )
        .route("/v1/devices/self/rotation", get(waiting_rotation))
        .route(
            "/v1/devices/self/rotation/done",
            post(finish_rotation).layer(small()),
        )
        .route("/v1/accounts/{username}/rotations", get(account_rotations))
}
