//! Encrypted attachments on the server: uploads in parts, addressed by the SHA-256 of their
//! ciphertext, readable by the members of one group. Mirrored in `proto/parley_v1.proto` like
//! the rest of [`super`]; the flow is in docs/messenger-basics.md.
//!
//! `POST /v1/attachments` creates (or finds, to resume) an upload; `PUT
//! /v1/attachments/{hash}/parts/{index}` takes part `index` as the raw body, only the next one
//! and each exactly `part_bytes` long but the last; after the last part the server hashes the
//! whole and keeps it only if it matches. `GET /v1/attachments/{hash}` is the status, `GET
//! /v1/attachments/{hash}/parts/{index}` a part, and `POST /v1/attachments/{hash}/fetched` says
//! that this device has the file (once every member device has, it is deleted).

use prost::Message;

#[derive(Clone, PartialEq, Message)]
pub struct CreateAttachment {
    /// SHA-256 of the whole ciphertext: the attachment's address.
    #[prost(bytes = "vec", tag = "1")]
    pub ciphertext_sha256: Vec<u8>,
    /// Ciphertext bytes.
    #[prost(uint64, tag = "2")]
    pub size: u64,
    /// The group (1:1 chats are groups) whose members may read it.
    #[prost(bytes = "vec", tag = "3")]
    pub group_id: Vec<u8>,
    /// Deleted after this many milliseconds at the latest (a disappearing chat's timer); 0:
    /// the server's retention.
    #[prost(uint64, tag = "4")]
    pub expires_in_ms: u64,
}

#[derive(Clone, PartialEq, Message)]
pub struct AttachmentStatus {
    #[prost(uint64, tag = "1")]
    pub size: u64,
    /// Bytes stored so far, in whole parts from the start: the next part is `received /
    /// part_bytes`.
    #[prost(uint64, tag = "2")]
    pub received: u64,
    /// Every part is in and the whole matched its hash: it can be read.
    #[prost(bool, tag = "3")]
    pub complete: bool,
    #[prost(uint32, tag = "4")]
    pub part_bytes: u32,
    #[prost(int64, tag = "5")]
    pub expires_at_ms: i64,
}
