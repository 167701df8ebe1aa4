//! Size bounds that both sides agree on. The server may be configured lower, never higher.

/// Largest HTTP body or WebSocket frame the server reads.
pub const MAX_FRAME_BYTES: usize = 8 * 1024 * 1024;
/// Largest MLS message (commit, proposal or application message) in a submission.
pub const MAX_MLS_MESSAGE_BYTES: usize = 4 * 1024 * 1024;
/// Largest Welcome in a submission. Welcomes carry the ratchet tree, which grows with the group.
pub const MAX_WELCOME_BYTES: usize = 6 * 1024 * 1024;
/// Largest plaintext of a text message.
pub const MAX_TEXT_BYTES: usize = 64 * 1024;
/// Largest reaction (one emoji, with its modifiers and joiners).
pub const MAX_REACTION_BYTES: usize = 64;
/// Most edits and deletes a report carries as the versions of its message (10 edits, 1 delete).
pub const MAX_REPORTED_VERSIONS: usize = 11;
/// Most files one message carries.
pub const MAX_ATTACHMENTS: usize = 10;
/// Most files one report carries: all of a message's (each in a blob of the reporter's).
pub const MAX_REPORTED_FILES: usize = MAX_ATTACHMENTS;
/// Largest authenticated data on an application message (room for the franking tag).
pub const MAX_AAD_BYTES: usize = 256;
/// Largest KeyPackage.
pub const MAX_KEY_PACKAGE_BYTES: usize = 16 * 1024;
/// Most KeyPackages in one upload.
pub const MAX_KEY_PACKAGES_PER_UPLOAD: usize = 200;
/// Most KeyPackages a device may keep on the server.
pub const MAX_KEY_PACKAGES_PER_DEVICE: usize = 1000;
/// Bytes of KeyPackages stored for all of one account's devices (a post-quantum KeyPackage is
/// about 2.5 KiB; clients keep about a hundred per device).
pub const MAX_KEY_PACKAGE_BYTES_PER_ACCOUNT: u64 = 4 * 1024 * 1024;
/// Most usernames in one KeyPackage claim.
pub const MAX_CLAIM_USERNAMES: usize = 1000;
/// Most queue items in one fetch.
pub const MAX_FETCH_ITEMS: u32 = 1000;
/// Largest chunk of a blob (a history archive or a backup), one request each.
pub const MAX_BLOB_CHUNK_BYTES: usize = 1024 * 1024;
/// Most chunks in one blob: a blob holds at most 256 MiB.
pub const MAX_BLOB_CHUNKS: u32 = 256;
/// Bytes of one attachment part (one request each); the last part may be shorter.
pub const ATTACHMENT_PART_BYTES: u32 = 4 * 1024 * 1024;
/// Default largest attachment (its ciphertext may be larger by the AEAD tags).
pub const DEFAULT_MAX_ATTACHMENT_BYTES: u64 = 100 * 1024 * 1024;
/// Default bytes of attachments one account may have stored at once.
pub const DEFAULT_ATTACHMENT_QUOTA_BYTES: u64 = 1024 * 1024 * 1024;
/// Largest sealed device name.
pub const MAX_DEVICE_NAME_BYTES: usize = 256;
/// Default cap on devices per account.
pub const DEFAULT_MAX_DEVICES_PER_ACCOUNT: u32 = 10;
/// Link requests an account may have waiting at once.
pub const MAX_PENDING_LINKS_PER_ACCOUNT: u32 = 3;
/// How long a link code works, and how long a history archive or an approved link is kept.
pub const LINK_TTL_MS: i64 = 10 * 60 * 1000;
pub const BLOB_TTL_MS: i64 = 24 * 60 * 60 * 1000;
/// Default cap on group size (in accounts: each may have several devices).
pub const DEFAULT_MAX_GROUP_MEMBERS: usize = 10_000;
/// Receipts are sent in chats of at most this many accounts: each costs one message to every
/// member device, so a batch of them costs O(members²) deliveries (under 1,024 at 32).
pub const MAX_RECEIPT_ACCOUNTS: usize = 32;
/// Largest sealed typing indicator (a nonce, a few bytes of body and the tag).
pub const MAX_TYPING_SEALED_BYTES: usize = 256;
/// Typing indicators one live connection may send: a burst, then one per second.
pub const TYPING_BURST: u32 = 5;
pub const TYPING_PER_SECOND: u32 = 1;
/// A chat's disappearing-message timer: from 30 seconds to 4 weeks.
pub const MIN_DISAPPEAR_S: u32 = 30;
pub const MAX_DISAPPEAR_S: u32 = 28 * 24 * 3600;
