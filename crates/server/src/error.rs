//! Errors: [`ApiError`] is what a request gets back; [`ServerError`] stops the server.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use parley_protocol::{ErrorCode, WireError};
use parley_store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("configuration: {0}")]
    Config(String),
    #[error("storage: {0}")]
    Store(#[from] StoreError),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

/// An error answered to a client: a wire error code and a message that names the problem
/// without echoing secrets or content.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError(pub WireError);

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError(WireError::new(code, message))
    }

    pub fn malformed(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Malformed, message)
    }

    pub fn invalid_mls(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidMlsMessage, message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Forbidden, message)
    }

    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unauthenticated, message)
    }

    pub fn code(&self) -> ErrorCode {
        self.0.code
    }
}

impl From<WireError> for ApiError {
    fn from(e: WireError) -> Self {
        ApiError(e)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::UsernameTaken => {
                ApiError::new(ErrorCode::UsernameTaken, "username is already taken")
            }
            StoreError::DeviceIdTaken => {
                ApiError::new(ErrorCode::Forbidden, "device id is already registered")
            }
            StoreError::KeyTaken => {
                ApiError::new(ErrorCode::Forbidden, "signature key is already registered")
            }
            StoreError::GroupExists => {
                ApiError::new(ErrorCode::GroupExists, "group already exists")
            }
            StoreError::UnknownGroup => ApiError::new(ErrorCode::NotFound, "unknown group"),
            StoreError::WrongEpoch { current } => ApiError(WireError::wrong_epoch(current)),
            StoreError::NotMember => {
                ApiError::new(ErrorCode::NotMember, "not a member of this group")
            }
            StoreError::IdempotencyConflict => ApiError::new(
                ErrorCode::IdempotencyConflict,
                "message id was already used for different content",
            ),
            StoreError::TooManyKeyPackages => ApiError::new(
                ErrorCode::TooLarge,
                format!(
                    "too many key packages stored: at most {} per device and {} KiB per account",
                    parley_protocol::limits::MAX_KEY_PACKAGES_PER_DEVICE,
                    parley_protocol::limits::MAX_KEY_PACKAGE_BYTES_PER_ACCOUNT / 1024
                ),
            ),
            StoreError::TooManyGroups => ApiError::new(
                ErrorCode::Forbidden,
                "you are in too many groups to create another; leave some first",
            ),
            StoreError::NoKeyPackage(_) => {
                ApiError::new(ErrorCode::NoKeyPackage, "no key package left")
            }
            StoreError::QueueFull(name) => ApiError::new(
                ErrorCode::QueueFull,
                format!("recipient's queue is full: {name} has too much undelivered; try again once they have caught up"),
            ),
            StoreError::Replay => ApiError::new(ErrorCode::Replay, "replayed message"),
            StoreError::DuplicateReport => ApiError::new(ErrorCode::Replay, "already reported"),
            StoreError::StateChanged => {
                ApiError::new(ErrorCode::Unavailable, "group state is busy; retry")
            }
            StoreError::Revoked => ApiError::new(ErrorCode::Forbidden, "this device was revoked"),
            StoreError::AccountKeyChanged => ApiError::new(
                ErrorCode::Forbidden,
                "the account key changed meanwhile: another device revoked one at the same time",
            ),
            StoreError::TooManyDevices => ApiError::new(
                ErrorCode::TooManyDevices,
                "the account has as many devices as this server allows; \
                 revoke one first (`parley devices revoke ID`)",
            ),
            StoreError::TooManyLinks => ApiError::new(
                ErrorCode::RateLimited,
                "three link requests for this account are waiting already; \
                 approve one or wait ten minutes",
            ),
            StoreError::LinkExpired => ApiError::new(
                ErrorCode::LinkExpired,
                "the link code expired, was used, or is unknown; start again with `parley link`",
            ),
            StoreError::TooManyBlobs => ApiError::new(
                ErrorCode::RateLimited,
                "the account holds too many archives; try again once they are fetched",
            ),
            StoreError::UnknownBlob => ApiError::new(ErrorCode::NotFound, "no such blob"),
            StoreError::TooManyRecoveryKeys => ApiError::new(
                ErrorCode::Forbidden,
                "the account backs up under too many recovery keys",
            ),
            StoreError::VerifierMismatch => ApiError::new(
                ErrorCode::Forbidden,
                "this backup id is kept with another recovery key",
            ),
            StoreError::QuotaExceeded => ApiError::new(
                ErrorCode::TooLarge,
                "your attachment quota is used up; it frees up as recipients fetch your files",
            ),
            StoreError::AttachmentTaken => ApiError::new(
                ErrorCode::Forbidden,
                "an attachment with this hash exists already",
            ),
            StoreError::BlobState(why) => ApiError::new(ErrorCode::Malformed, why),
            StoreError::Backend(detail) => {
                tracing::error!(%detail, "storage failure");
                ApiError::new(ErrorCode::Unavailable, "storage unavailable; retry")
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.0.code.http_status())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = parley_protocol::encode(&self.0.to_wire());
        (
            status,
            [(
                axum::http::header::CONTENT_TYPE,
                parley_protocol::CONTENT_TYPE,
            )],
            body,
        )
            .into_response()
    }
}
