//! Size bounds that both sides agree on. The server may be configured lower, never higher.

/// Largest HTTP body or WebSocket frame the server reads.
pub const MAX_FRAME_BYTES: usize = 8 * 1024 * 1024;
/// Largest MLS message (commit, proposal or application message) in a submission.
pub const MAX_MLS_MESSAGE_BYTES: usize = 4 * 1024 * 1024;
/// Largest Welcome in a submission. Welcomes carry the ratchet tree, which grows with the group.
pub const MAX_WELCOME_BYTES: usize = 6 * 1024 * 1024;
/// Largest plaintext of a text message.
pub const MAX_TEXT_BYTES: usize = 64 * 1024;
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
/// Default cap on group size.
pub const DEFAULT_MAX_GROUP_MEMBERS: usize = 10_000;
