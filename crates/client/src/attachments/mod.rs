//! Attachments: files sent with a message, end to end encrypted (docs/messenger-basics.md,
//! "Attachments"). `crypto` seals and opens files; `transfer` uploads and downloads their
//! ciphertext; `check` says what a received message may carry.

mod check;
mod crypto;
mod transfer;

pub use check::{attachments_of, check_attachments, safe_file_name, MAX_ATTACHMENTS};
pub use crypto::{ciphertext_len, open_file, seal_file, SealedFile, CHUNK_BYTES};
pub use transfer::{OnProgress, Progress};
