//! Protocol version 1 messages. Field numbers are the wire format: add fields, never renumber.
//! Mirrored in `proto/parley_v1.proto`.

use prost::Message;

mod attachments;
mod devices;
mod presence;
mod recovery;
pub use attachments::*;
pub use devices::*;
pub use presence::*;
pub use recovery::*;

// ---------------------------------------------------------------------------------------------
// Errors

#[derive(Clone, PartialEq, Message)]
pub struct ErrorBody {
    #[prost(uint32, tag = "1")]
    pub code: u32,
    #[prost(string, tag = "2")]
    pub message: String,
    #[prost(uint64, optional, tag = "3")]
    pub current_epoch: Option<u64>,
}

// ---------------------------------------------------------------------------------------------
// Accounts and sessions

/// `POST /v1/accounts`. `proof` is the device's Ed25519 signature over
/// [`register_proof_input`]`(username, signature_key)`.
#[derive(Clone, PartialEq, Message)]
pub struct RegisterRequest {
    #[prost(string, tag = "1")]
    pub username: String,
    #[prost(bytes = "vec", tag = "2")]
    pub signature_key: Vec<u8>,
    #[prost(bytes = "vec", tag = "3")]
    pub proof: Vec<u8>,
    /// The device's id, chosen by the device (16 random bytes) so that what it signs can name
    /// it; empty: the server chooses.
    #[prost(bytes = "vec", tag = "4")]
    pub device_id: Vec<u8>,
    /// The account key's public half (32 bytes, Ed25519), made by this first device; empty: the
    /// device's signature key is the account key (accounts from before multi-device).
    #[prost(bytes = "vec", tag = "5")]
    pub account_key: Vec<u8>,
    /// This device's certificate, signed by the account key (`parley_mls::certificate`).
    #[prost(bytes = "vec", tag = "6")]
    pub certificate: Vec<u8>,
    /// A device restored from a backup joins the existing account `username`: its certificate
    /// must verify under the account key the account registered (`account_key` is that key).
    #[prost(bool, tag = "7")]
    pub restore: bool,
    /// For a restore: the secret from the recovery key whose verifier the account's backups
    /// under `backup_id` were stored with (`parley_mls::recovery`).
    #[prost(bytes = "vec", tag = "8")]
    pub restore_secret: Vec<u8>,
    #[prost(bytes = "vec", tag = "9")]
    pub backup_id: Vec<u8>,
}

#[derive(Clone, PartialEq, Message)]
pub struct RegisterResponse {
    #[prost(bytes = "vec", tag = "1")]
    pub user_id: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    pub device_id: Vec<u8>,
}

/// `POST /v1/auth/challenge`.
#[derive(Clone, PartialEq, Message)]
pub struct ChallengeRequest {
    #[prost(bytes = "vec", tag = "1")]
    pub device_id: Vec<u8>,
}

#[derive(Clone, PartialEq, Message)]
pub struct ChallengeResponse {
    #[prost(bytes = "vec", tag = "1")]
    pub challenge: Vec<u8>,
}

/// `POST /v1/auth/login`. `signature` is over [`login_signature_input`]`(device_id, challenge)`.
#[derive(Clone, PartialEq, Message)]
pub struct LoginRequest {
    #[prost(bytes = "vec", tag = "1")]
    pub device_id: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    pub challenge: Vec<u8>,
    #[prost(bytes = "vec", tag = "3")]
    pub signature: Vec<u8>,
}

#[derive(Clone, PartialEq, Message)]
pub struct LoginResponse {
    /// Bearer token for `Authorization: Bearer <token>`.
    #[prost(string, tag = "1")]
    pub token: String,
    #[prost(int64, tag = "2")]
    pub expires_at_ms: i64,
}

/// What a device signs to prove it holds the key it registers.
pub fn register_proof_input(username: &str, signature_key: &[u8]) -> Vec<u8> {
    let mut input = b"parley/v1/register\0".to_vec();
    input.extend_from_slice(username.as_bytes());
    input.push(0);
    input.extend_from_slice(signature_key);
    input
}

/// What a device signs to log in.
pub fn login_signature_input(device_id: &[u8], challenge: &[u8]) -> Vec<u8> {
    let mut input = b"parley/v1/login\0".to_vec();
    input.extend_from_slice(device_id);
    input.extend_from_slice(challenge);
    input
}

// ---------------------------------------------------------------------------------------------
// Directory

/// `GET /v1/users/{username}`.
#[derive(Clone, PartialEq, Message)]
pub struct UserDevices {
    #[prost(string, tag = "1")]
    pub username: String,
    #[prost(bytes = "vec", tag = "2")]
    pub user_id: Vec<u8>,
    #[prost(message, repeated, tag = "3")]
    pub devices: Vec<DeviceInfo>,
    /// The account key that certifies the account's devices (32 bytes).
    #[prost(bytes = "vec", tag = "4")]
    pub account_key: Vec<u8>,
}

#[derive(Clone, PartialEq, Message)]
pub struct DeviceInfo {
    #[prost(bytes = "vec", tag = "1")]
    pub device_id: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    pub signature_key: Vec<u8>,
}

// ---------------------------------------------------------------------------------------------
// KeyPackages

/// `POST /v1/keypackages`: one-time KeyPackages, and optionally a new last-resort one.
#[derive(Clone, PartialEq, Message)]
pub struct UploadKeyPackages {
    #[prost(bytes = "vec", repeated, tag = "1")]
    pub key_packages: Vec<Vec<u8>>,
    #[prost(bytes = "vec", optional, tag = "2")]
    pub last_resort: Option<Vec<u8>>,
}

/// Answer to an upload and to `GET /v1/keypackages/count`.
#[derive(Clone, PartialEq, Message)]
pub struct KeyPackageCount {
    #[prost(uint32, tag = "1")]
    pub one_time_remaining: u32,
    #[prost(bool, tag = "2")]
    pub has_last_resort: bool,
    /// The account's key rotated and this device's new key waits for it
    /// (`GET /v1/devices/self/rotation`).
    #[prost(bool, tag = "3")]
    pub rotation_waiting: bool,
}

/// `POST /v1/keypackages/claim`: one KeyPackage for every device of every named user.
#[derive(Clone, PartialEq, Message)]
pub struct ClaimKeyPackages {
    #[prost(string, repeated, tag = "1")]
    pub usernames: Vec<String>,
}

#[derive(Clone, PartialEq, Message)]
pub struct ClaimedKeyPackage {
    #[prost(string, tag = "1")]
    pub username: String,
    #[prost(bytes = "vec", tag = "2")]
    pub device_id: Vec<u8>,
    #[prost(bytes = "vec", tag = "3")]
    pub key_package: Vec<u8>,
    #[prost(bool, tag = "4")]
    pub last_resort: bool,
}

#[derive(Clone, PartialEq, Message)]
pub struct ClaimResponse {
    #[prost(message, repeated, tag = "1")]
    pub key_packages: Vec<ClaimedKeyPackage>,
}

// ---------------------------------------------------------------------------------------------
// Delivery Service

/// `POST /v1/groups`: start tracking a new group at epoch 0 from its creator's GroupInfo
/// (an MLS message) and ratchet tree (TLS-serialized).
#[derive(Clone, PartialEq, Message)]
pub struct CreateGroup {
    #[prost(bytes = "vec", tag = "1")]
    pub group_info: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    pub ratchet_tree: Vec<u8>,
}

#[derive(Clone, PartialEq, Message)]
pub struct CreateGroupResponse {
    #[prost(bytes = "vec", tag = "1")]
    pub group_id: Vec<u8>,
    #[prost(uint64, tag = "2")]
    pub epoch: u64,
}

/// `POST /v1/messages`: one MLS message (commit, proposal or application message). A commit that
/// adds members carries its Welcome; both are stored in one transaction or neither.
#[derive(Clone, PartialEq, Message)]
pub struct Submit {
    /// Chosen by the client; (device, message_id) makes the submission idempotent.
    #[prost(bytes = "vec", tag = "1")]
    pub message_id: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    pub mls_message: Vec<u8>,
    #[prost(bytes = "vec", optional, tag = "3")]
    pub welcome: Option<Vec<u8>>,
    /// A disappearing message: the server forgets its ciphertext this long after accepting
    /// it, delivered or not (0: kept until delivered or the queue's retention ends).
    #[prost(uint64, tag = "4")]
    pub expires_in_ms: u64,
}

#[derive(Clone, PartialEq, Message)]
pub struct SubmitResponse {
    #[prost(bytes = "vec", tag = "1")]
    pub group_id: Vec<u8>,
    /// Position of the message in the group's total order.
    #[prost(uint64, tag = "2")]
    pub group_seq: u64,
    /// The group's epoch after this message (it moved on if this was a commit).
    #[prost(uint64, tag = "3")]
    pub epoch: u64,
    #[prost(int64, tag = "4")]
    pub accepted_at_ms: i64,
    /// True when this answers a retry of a submission already stored.
    #[prost(bool, tag = "5")]
    pub duplicate: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum ItemKind {
    Unspecified = 0,
    /// A group message: commit, proposal or application message.
    GroupMessage = 1,
    /// A Welcome into a group.
    Welcome = 2,
}

/// The server's frank on an application message: `HMAC-SHA256(K[key_id], tag || ctx)`, where
/// ctx is the queue item's sender, group, group sequence and acceptance time plus `key_id`
/// (`parley_mls::franking::FrankContext`).
#[derive(Clone, PartialEq, Message)]
pub struct FrankingContext {
    #[prost(uint32, tag = "1")]
    pub key_id: u32,
    #[prost(bytes = "vec", tag = "2")]
    pub frank: Vec<u8>,
}

/// One entry of a device's queue.
#[derive(Clone, PartialEq, Message)]
pub struct QueueItem {
    /// The device's own queue sequence; acknowledge up to it.
    #[prost(uint64, tag = "1")]
    pub seq: u64,
    #[prost(enumeration = "ItemKind", tag = "2")]
    pub kind: i32,
    #[prost(bytes = "vec", tag = "3")]
    pub group_id: Vec<u8>,
    #[prost(uint64, tag = "4")]
    pub group_seq: u64,
    #[prost(bytes = "vec", tag = "5")]
    pub sender_device: Vec<u8>,
    #[prost(string, tag = "6")]
    pub sender_username: String,
    #[prost(bytes = "vec", tag = "7")]
    pub message_id: Vec<u8>,
    #[prost(int64, tag = "8")]
    pub accepted_at_ms: i64,
    #[prost(bytes = "vec", tag = "9")]
    pub payload: Vec<u8>,
    #[prost(message, optional, tag = "10")]
    pub franking: Option<FrankingContext>,
}

/// The payload of a Welcome queue item: the Welcome as its committer sent it, and the group's
/// ratchet tree after that commit, attached by the server (which holds the public tree). Keeping
/// the tree out of the Welcome keeps commits and Welcomes small in large groups; the joiner
/// verifies the tree against the signed GroupInfo inside the Welcome.
#[derive(Clone, PartialEq, Message)]
pub struct WelcomeBundle {
    #[prost(bytes = "vec", tag = "1")]
    pub welcome: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    pub ratchet_tree: Vec<u8>,
}

/// `GET /v1/queue?after=N&limit=M`.
#[derive(Clone, PartialEq, Message)]
pub struct QueueBatch {
    #[prost(message, repeated, tag = "1")]
    pub items: Vec<QueueItem>,
    /// Highest sequence ever enqueued for this device.
    #[prost(uint64, tag = "2")]
    pub head: u64,
    /// Items up to this sequence expired unread (retention); the client missed them.
    #[prost(uint64, tag = "3")]
    pub expired_up_to: u64,
}

/// `POST /v1/queue/ack`: everything up to `up_to` is processed and persisted.
#[derive(Clone, PartialEq, Message)]
pub struct Ack {
    #[prost(uint64, tag = "1")]
    pub up_to: u64,
}

/// Frames the server sends on the WebSocket (`GET /v1/ws`). The queue in the server's store is
/// the truth: a frame may carry the items themselves (after [`StartPush`]) or only the head.
#[derive(Clone, PartialEq, Message)]
pub struct ServerFrame {
    /// The device's queue head: items up to it are waiting.
    #[prost(uint64, tag = "1")]
    pub queue_head: u64,
    /// Queue items in order, after the client asked for them with [`StartPush`]. They stay in
    /// the queue until the client acknowledges them ([`ClientFrame`] `ack`).
    #[prost(message, repeated, tag = "2")]
    pub items: Vec<QueueItem>,
    /// Answers to submissions made on this connection, in any order.
    #[prost(message, repeated, tag = "3")]
    pub results: Vec<LiveResult>,
    /// Items at or below this sequence expired unread (as in [`QueueBatch`]).
    #[prost(uint64, tag = "4")]
    pub expired_up_to: u64,
    /// Typing indicators of the device's groups, as they happen (never queued).
    #[prost(message, repeated, tag = "5")]
    pub typing: Vec<Typing>,
}

/// Frames a client sends on the WebSocket. Every frame is optional: a client that sends none
/// gets queue-head hints only and fetches over HTTP.
#[derive(Clone, PartialEq, Message)]
pub struct ClientFrame {
    #[prost(oneof = "client_frame::Body", tags = "1, 2, 3, 4")]
    pub body: Option<client_frame::Body>,
}

pub mod client_frame {
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Body {
        /// A submission, answered by a [`super::LiveResult`] with the same request id.
        #[prost(message, tag = "1")]
        Submit(super::LiveSubmit),
        /// Everything up to this sequence is stored on the device: the server may drop it.
        #[prost(message, tag = "2")]
        Ack(super::Ack),
        /// Push queue items after this sequence on this connection from now on.
        #[prost(message, tag = "3")]
        StartPush(super::StartPush),
        /// A typing indicator for the group's other devices that are online now.
        #[prost(message, tag = "4")]
        Typing(super::Typing),
    }
}

#[derive(Clone, PartialEq, Message)]
pub struct LiveSubmit {
    /// Chosen by the client to match the answer; not an idempotency key (the message id is).
    #[prost(uint64, tag = "1")]
    pub request_id: u64,
    #[prost(message, optional, tag = "2")]
    pub submit: Option<Submit>,
}

#[derive(Clone, PartialEq, Message)]
pub struct StartPush {
    /// The last sequence the client holds; the server pushes from the next one.
    #[prost(uint64, tag = "1")]
    pub after: u64,
}

/// The answer to one [`LiveSubmit`]: exactly one of `accepted` and `error` is set.
#[derive(Clone, PartialEq, Message)]
pub struct LiveResult {
    #[prost(uint64, tag = "1")]
    pub request_id: u64,
    #[prost(message, optional, tag = "2")]
    pub accepted: Option<SubmitResponse>,
    #[prost(message, optional, tag = "3")]
    pub error: Option<ErrorBody>,
}

// ---------------------------------------------------------------------------------------------
// Reports (message franking)

/// A received message as evidence: the exact payload bytes (with the salt) and what the server
/// bound its tag to.
#[derive(Clone, PartialEq, Message)]
pub struct ReportedMessage {
    /// The `AppPayload` bytes, as decrypted.
    #[prost(bytes = "vec", tag = "1")]
    pub payload: Vec<u8>,
    #[prost(string, tag = "2")]
    pub sender_username: String,
    #[prost(bytes = "vec", tag = "3")]
    pub sender_device: Vec<u8>,
    #[prost(bytes = "vec", tag = "4")]
    pub group_id: Vec<u8>,
    #[prost(uint64, tag = "5")]
    pub group_seq: u64,
    #[prost(int64, tag = "6")]
    pub accepted_at_ms: i64,
    #[prost(uint32, tag = "7")]
    pub key_id: u32,
    #[prost(bytes = "vec", tag = "8")]
    pub frank: Vec<u8>,
}

/// `POST /v1/reports`.
#[derive(Clone, PartialEq, Message)]
pub struct ReportRequest {
    #[prost(message, optional, tag = "1")]
    pub message: Option<ReportedMessage>,
    #[prost(string, tag = "2")]
    pub reason: String,
    /// Neighbouring messages of the same chat, each franked.
    #[prost(message, repeated, tag = "3")]
    pub context: Vec<ReportedMessage>,
    /// The edits and the delete that refer to `message`, each franked: every version of it.
    #[prost(message, repeated, tag = "4")]
    pub versions: Vec<ReportedMessage>,
    /// The plaintext of the message's attachments, each uploaded first as a blob of the
    /// reporter's; the server checks it against the hash in the franked message.
    #[prost(message, repeated, tag = "5")]
    pub files: Vec<ReportedFile>,
}

#[derive(Clone, PartialEq, Message)]
pub struct ReportedFile {
    /// Which of the reported message's attachments, counting from 0.
    #[prost(uint32, tag = "1")]
    pub index: u32,
    #[prost(bytes = "vec", tag = "2")]
    pub blob_id: Vec<u8>,
}

#[derive(Clone, PartialEq, Message)]
pub struct ReportResponse {
    #[prost(uint64, tag = "1")]
    pub report_id: u64,
}

/// `GET /v1/info`: what clients need to know about the server.
#[derive(Clone, PartialEq, Message)]
pub struct ServerInfo {
    /// The server's MLS external-sender signature key (Ed25519) and credential identity: every
    /// group lists it in its ExternalSenders extension so that moderation can propose removals.
    #[prost(bytes = "vec", tag = "1")]
    pub external_sender_key: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    pub external_sender_identity: Vec<u8>,
}

// ---------------------------------------------------------------------------------------------
// End-to-end encrypted content (inside MLS application messages; the server never sees these)

/// The plaintext of an MLS application message.
#[derive(Clone, PartialEq, Message)]
pub struct AppPayload {
    /// Fresh random 16 bytes per message: the franking key.
    #[prost(bytes = "vec", tag = "1")]
    pub salt: Vec<u8>,
    #[prost(string, tag = "2")]
    pub sender_username: String,
    #[prost(bytes = "vec", tag = "3")]
    pub sender_device: Vec<u8>,
    #[prost(bytes = "vec", tag = "4")]
    pub message_id: Vec<u8>,
    #[prost(int64, tag = "5")]
    pub sent_at_ms: i64,
    #[prost(oneof = "app_payload::Body", tags = "10, 11, 12, 13, 14, 15, 16, 17")]
    pub body: Option<app_payload::Body>,
}

pub mod app_payload {
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Body {
        #[prost(message, tag = "10")]
        Text(super::TextBody),
        #[prost(message, tag = "11")]
        Meta(super::GroupMeta),
        /// A device of the sender's account was revoked and removed from this chat.
        #[prost(message, tag = "12")]
        Revoked(super::RevokeDevice),
        /// A new text for one of the sender's earlier messages (MIMI `replaces`).
        #[prost(message, tag = "13")]
        Edit(super::EditBody),
        /// Takes a message back for everyone (MIMI `replaces` with an empty body).
        #[prost(message, tag = "14")]
        Delete(super::DeleteBody),
        /// A reaction to a message, or its removal (MIMI `inReplyTo`, disposition reaction).
        #[prost(message, tag = "15")]
        Reaction(super::ReactionBody),
        /// Delivered or read up to a message (MIMI message status, batched).
        #[prost(message, tag = "16")]
        Receipt(super::ReceiptBody),
        /// A setting of the sender's account or of the chat.
        #[prost(message, tag = "17")]
        Settings(super::SettingsBody),
    }
}

#[derive(Clone, PartialEq, Message)]
pub struct TextBody {
    #[prost(string, tag = "1")]
    pub text: String,
    /// The message this one answers (MIMI `inReplyTo`).
    #[prost(bytes = "vec", optional, tag = "2")]
    pub reply_to: Option<Vec<u8>>,
    // Tag 3 (attachment hashes, never used) is retired.
    /// Files sent with the text (MIMI external parts), each encrypted with its own key.
    #[prost(message, repeated, tag = "4")]
    pub attachments: Vec<Attachment>,
}

/// An encrypted file on the server, as the message that carries it describes it. The server
/// stores the ciphertext under its SHA-256; the key and the plaintext's SHA-256 are inside the
/// franked message, so that one ciphertext cannot open to two files that both verify (AES-GCM
/// does not commit to its key: the "invisible salamander").
#[derive(Clone, PartialEq, Message)]
pub struct Attachment {
    /// The file's name, without any directory.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Its media type, e.g. image/jpeg.
    #[prost(string, tag = "2")]
    pub content_type: String,
    /// Plaintext bytes.
    #[prost(uint64, tag = "3")]
    pub size: u64,
    /// The AES-256-GCM key, fresh for this file.
    #[prost(bytes = "vec", tag = "4")]
    pub key: Vec<u8>,
    /// Plaintext bytes per encrypted chunk.
    #[prost(uint32, tag = "5")]
    pub chunk_bytes: u32,
    /// SHA-256 of the ciphertext: the blob's address on the server.
    #[prost(bytes = "vec", tag = "6")]
    pub ciphertext_sha256: Vec<u8>,
    /// SHA-256 of the plaintext: checked before anything of the file is shown.
    #[prost(bytes = "vec", tag = "7")]
    pub plaintext_sha256: Vec<u8>,
}

/// Edits, deletes and reactions refer to their target by its message id: that of the first
/// version, whatever edits followed.
#[derive(Clone, PartialEq, Message)]
pub struct EditBody {
    #[prost(bytes = "vec", tag = "1")]
    pub target: Vec<u8>,
    #[prost(string, tag = "2")]
    pub text: String,
}

#[derive(Clone, PartialEq, Message)]
pub struct DeleteBody {
    #[prost(bytes = "vec", tag = "1")]
    pub target: Vec<u8>,
}

#[derive(Clone, PartialEq, Message)]
pub struct ReactionBody {
    #[prost(bytes = "vec", tag = "1")]
    pub target: Vec<u8>,
    /// One emoji (at most [`crate::limits::MAX_REACTION_BYTES`]).
    #[prost(string, tag = "2")]
    pub emoji: String,
    /// Takes back this account's earlier reaction with the same emoji.
    #[prost(bool, tag = "3")]
    pub remove: bool,
}

/// Chat metadata, sent encrypted after a group is created and after members are added.
#[derive(Clone, PartialEq, Message)]
pub struct GroupMeta {
    #[prost(enumeration = "ChatKind", tag = "1")]
    pub kind: i32,
    /// A group's name (without '#'); empty for a direct chat.
    #[prost(string, tag = "2")]
    pub name: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum ChatKind {
    Unspecified = 0,
    Direct = 1,
    Group = 2,
}

/// The authenticated data of an MLS application message. The server reads it; AEAD and the
/// sender's signature cover it.
#[derive(Clone, PartialEq, Message)]
pub struct MessageAad {
    /// HMAC-SHA256(key = salt, AppPayload bytes): the franking tag.
    #[prost(bytes = "vec", tag = "1")]
    pub franking_tag: Vec<u8>,
}

/// The authenticated data of a commit: the account-key rotations that lead from the key of the
/// committer's old leaf to the key of its new one, when it re-certifies its leaf after its
/// account rotated (`parley_mls::rotation`). Empty otherwise.
#[derive(Clone, PartialEq, Message)]
pub struct CommitAad {
    #[prost(bytes = "vec", repeated, tag = "1")]
    pub rotations: Vec<Vec<u8>>,
}

/// Group roles, carried in an MLS GroupContext extension so that every member and the server see
/// the same list.
#[derive(Clone, PartialEq, Message)]
pub struct GroupRoles {
    #[prost(string, repeated, tag = "1")]
    pub admins: Vec<String>,
}
