//! The crate's one error type, and the conversion every openmls failure goes through.

use std::path::PathBuf;

use parley_protocol::{ErrorCode, WireError};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{0}")]
    Server(WireError),
    /// The server refused a message for now (a recipient's queue is full): it stays in the
    /// outbox and goes out with a later sync.
    #[error("{0}; the message is kept and goes out with a later sync")]
    Kept(WireError),
    #[error("network: {0}")]
    Network(String),
    #[error("protocol: {0}")]
    Protocol(String),
    #[error("configuration: {0}")]
    Config(String),
    #[error("no account in {0}: run `parley register NAME` first")]
    NoAccount(PathBuf),
    #[error("an account already exists in {0}")]
    AccountExists(PathBuf),
    #[error("not logged in")]
    NotLoggedIn,
    #[error("{0}")]
    Invalid(String),
    #[error("no chat named {0}")]
    UnknownChat(String),
    #[error(
        "{0}'s account identity is not the one you first saw: their safety number changed. \
         Nothing was sent to the new identity; compare safety numbers with {0} in person"
    )]
    IdentityChanged(String),
    #[error("MLS: {0}")]
    Mls(String),
    #[error("local database: {0}")]
    Database(#[from] rusqlite::Error),
}

impl ClientError {
    pub fn server_code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Server(e) | ClientError::Kept(e) => Some(e.code),
            _ => None,
        }
    }

    /// The message did not go out yet but is kept: a later sync sends it.
    pub fn is_kept(&self) -> bool {
        matches!(self, ClientError::Kept(_))
    }

    /// A recipient's queue on the server is full: the submission stays in the outbox and is
    /// retried later, and the group's later submissions wait behind it.
    pub fn is_queue_full(&self) -> bool {
        self.server_code() == Some(ErrorCode::QueueFull)
    }

    /// True when retrying later may succeed (the server was unreachable or busy).
    pub fn is_transient(&self) -> bool {
        match self {
            ClientError::Network(_) => true,
            ClientError::Server(e) => matches!(
                e.code,
                ErrorCode::Unavailable | ErrorCode::RateLimited | ErrorCode::Internal
            ),
            _ => false,
        }
    }
}

pub(crate) fn mls_error(e: impl std::fmt::Display) -> ClientError {
    ClientError::Mls(e.to_string())
}
