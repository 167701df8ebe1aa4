//! Routes for recovery: GroupInfos for external joins, backups, and reading a backup before
//! the restored device has a session (with the restore secret). Each handler decodes, calls one method of
//! [`crate::recovery::Recovery`], and encodes.

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;
use std::sync::Arc;

use super::{decode, AppState, AuthAllowed, Proto, Reader, Submitter, AUTH_BODY_BYTES, FEW_FIELDS};
use crate::recovery::MAX_GROUP_INFO_BYTES;
use crate::{ApiError, App};

fn id_from_hex(text: &str) -> Result<Vec<u8>, ApiError> {
    hex::decode(text).map_err(|_| ApiError::malformed("ids in paths are hexadecimal"))
}

async fn put_group_info(
    State(app): AppState,
    Submitter(device): Submitter,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<impl IntoResponse, ApiError> {
    let upload = decode(&app, body, FEW_FIELDS).await?;
    app.recovery
        .put_group_info(&device, &id_from_hex(&id)?, upload)
        .await?;
    Ok(Proto(parley_protocol::v1::SealBlob { chunks: 0 }))
}

async fn group_info(
    State(app): AppState,
    Reader(device): Reader,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Proto(
        app.recovery.group_info(&device, &id_from_hex(&id)?).await?,
    ))
}

async fn register_backup(
    State(app): AppState,
    Submitter(device): Submitter,
    body: Bytes,
) -> Result<impl IntoResponse, ApiError> {
    let request = decode(&app, body, FEW_FIELDS).await?;
    Ok(Proto(app.recovery.register_backup(&device, request).await?))
}

async fn backups(
    State(app): AppState,
    Reader(device): Reader,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Proto(app.recovery.backups(&device).await?))
}

async fn backup(
    State(app): AppState,
    _allowed: AuthAllowed,
    body: Bytes,
) -> Result<impl IntoResponse, ApiError> {
    let request = decode(&app, body, FEW_FIELDS).await?;
    Ok(Proto(app.recovery.backup(request).await?))
}

async fn backup_chunk(
    State(app): AppState,
    _allowed: AuthAllowed,
    body: Bytes,
) -> Result<impl IntoResponse, ApiError> {
    let request = decode(&app, body, FEW_FIELDS).await?;
    Ok(Proto(app.recovery.backup_chunk(request).await?))
}

pub(super) fn routes() -> Router<Arc<App>> {
    Router::new()
        .route(
            "/v1/groups/{id}/group-info",
            get(group_info)
                .put(put_group_info)
                .layer(DefaultBodyLimit::max(MAX_GROUP_INFO_BYTES + 64)),
        )
        .route(
            "/v1/backups",
            get(backups).merge(post(register_backup).layer(DefaultBodyLimit::max(AUTH_BODY_BYTES))),
        )
        .route(
            "/v1/backups/fetch",
            post(backup).layer(DefaultBodyLimit::max(AUTH_BODY_BYTES)),
        )
        .route(
            "/v1/backups/fetch/chunk",
            post(backup_chunk).layer(DefaultBodyLimit::max(AUTH_BODY_BYTES)),
        )
}
