//! Attachments: files sent with a message, end to end encrypted (docs/messenger-basics.md,
//! "Attachments"). `crypto` seals and opens files; uploading and downloading their ciphertext
//! build on it.

mod crypto;

pub use crypto::{ciphertext_len, open_file, seal_file, SealedFile, CHUNK_BYTES};
