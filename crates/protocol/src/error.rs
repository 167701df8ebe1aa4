//! Errors as they travel on the wire: a stable numeric code plus a human-readable message.

use crate::v1;

/// Stable error codes. The numbers are part of the wire format: never reuse one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum ErrorCode {
    Internal = 1,
    Malformed = 2,
    TooLarge = 3,
    Unauthenticated = 4,
    Forbidden = 5,
    NotFound = 6,
    UsernameTaken = 7,
    InvalidUsername = 8,
    RateLimited = 9,
    /// A commit, proposal or application message was not for the group's current epoch.
    WrongEpoch = 10,
    NotMember = 11,
    InvalidMlsMessage = 12,
    NoKeyPackage = 13,
    GroupExists = 14,
    GroupTooLarge = 15,
    /// The same (device, message id) was submitted with different content.
    IdempotencyConflict = 16,
    InvalidKeyPackage = 17,
    Unavailable = 18,
    /// The same ciphertext was already accepted in this group under another message id.
    Replay = 19,
    /// A recipient's queue holds as many undelivered bytes as the server allows; the
    /// submission was not stored (retry once the recipient has caught up).
    QueueFull = 20,
    /// The account has as many devices as the server allows.
    TooManyDevices = 21,
    /// A link code that expired, was used, or never existed.
    LinkExpired = 22,
    /// A blob that is still being uploaded (ask again later).
    NotReady = 23,
}

impl ErrorCode {
    pub fn from_u32(code: u32) -> ErrorCode {
        use ErrorCode::*;
        match code {
            2 => Malformed,
            3 => TooLarge,
            4 => Unauthenticated,
            5 => Forbidden,
            6 => NotFound,
            7 => UsernameTaken,
            8 => InvalidUsername,
            9 => RateLimited,
            10 => WrongEpoch,
            11 => NotMember,
            12 => InvalidMlsMessage,
            13 => NoKeyPackage,
            14 => GroupExists,
            15 => GroupTooLarge,
            16 => IdempotencyConflict,
            17 => InvalidKeyPackage,
            18 => Unavailable,
            19 => Replay,
            20 => QueueFull,
            21 => TooManyDevices,
            22 => LinkExpired,
            23 => NotReady,
            _ => Internal,
        }
    }

    /// The HTTP status that carries this code.
    pub fn http_status(self) -> u16 {
        use ErrorCode::*;
        match self {
            Internal => 500,
            Unavailable => 503,
            Malformed | InvalidUsername | InvalidMlsMessage | InvalidKeyPackage => 400,
            TooLarge => 413,
            Unauthenticated => 401,
            Forbidden | NotMember => 403,
            NotFound | NoKeyPackage => 404,
            UsernameTaken | GroupExists | IdempotencyConflict | WrongEpoch | Replay => 409,
            GroupTooLarge | TooManyDevices => 422,
            LinkExpired => 410,
            NotReady => 425,
            RateLimited => 429,
            QueueFull => 507,
        }
    }
}

/// An error as sent by the server and received by the client.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct WireError {
    pub code: ErrorCode,
    pub message: String,
    /// Set with [`ErrorCode::WrongEpoch`]: the group's current epoch.
    pub current_epoch: Option<u64>,
}

impl WireError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        WireError {
            code,
            message: message.into(),
            current_epoch: None,
        }
    }

    pub fn wrong_epoch(current: u64) -> Self {
        WireError {
            code: ErrorCode::WrongEpoch,
            message: format!("wrong epoch (current = {current})"),
            current_epoch: Some(current),
        }
    }

    pub fn to_wire(&self) -> v1::ErrorBody {
        v1::ErrorBody {
            code: self.code as u32,
            message: self.message.clone(),
            current_epoch: self.current_epoch,
        }
    }

    pub fn from_wire(body: v1::ErrorBody) -> Self {
        WireError {
            code: ErrorCode::from_u32(body.code),
            message: body.message,
            current_epoch: body.current_epoch,
        }
    }
}
