//! Recovery from the loss of every device: encrypted backups under a key only the user holds,
//! and the GroupInfos a restored device rejoins its chats from by external commit. Mirrored in
//! `proto/parley_v1.proto` like the rest of [`super`].

use prost::Message;

/// `PUT /v1/groups/{id}/group-info`, by a member after its commit was accepted: the GroupInfo
/// of the group's current epoch (with the external public key, without the ratchet tree, which
/// the server has).
#[derive(Clone, PartialEq, Message)]
pub struct GroupInfoUpload {
    #[prost(uint64, tag = "1")]
    pub epoch: u64,
    #[prost(bytes = "vec", tag = "2")]
    pub group_info: Vec<u8>,
}

/// `GET /v1/groups/{id}/group-info`, by a device of an account in the group: what an external
/// commit starts from. `epoch` may be behind the group's when no member uploaded since.
#[derive(Clone, PartialEq, Message)]
pub struct GroupInfoBundle {
    #[prost(uint64, tag = "1")]
    pub epoch: u64,
    #[prost(bytes = "vec", tag = "2")]
    pub group_info: Vec<u8>,
    /// TLS-serialized ratchet tree of the group's current epoch.
    #[prost(bytes = "vec", tag = "3")]
    pub ratchet_tree: Vec<u8>,
    /// The group's current epoch.
    #[prost(uint64, tag = "4")]
    pub group_epoch: u64,
}

/// `POST /v1/backups`: a sealed blob of the account's (no reader) becomes its newest backup,
/// under `backup_id` (32 bytes derived from the recovery key). The server keeps the newest few.
/// The first backup under an id sets its restore verifier; later ones must carry the same.
#[derive(Clone, PartialEq, Message)]
pub struct RegisterBackup {
    #[prost(bytes = "vec", tag = "1")]
    pub blob_id: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    pub backup_id: Vec<u8>,
    #[prost(bytes = "vec", tag = "3")]
    pub restore_verifier: Vec<u8>,
}

/// `POST /v1/backups/fetch` (no session): the newest backup under `backup_id`, answered with a
/// [`BackupInfo`]; `POST /v1/backups/fetch/chunk`: chunk `index` of blob `blob_id` of it. Both
/// need the restore secret (which no device keeps), so that a device that knows the backup id
/// and key (a revoked one too) cannot download the account's later backups.
#[derive(Clone, PartialEq, Message)]
pub struct BackupRequest {
    #[prost(string, tag = "1")]
    pub username: String,
    #[prost(bytes = "vec", tag = "2")]
    pub backup_id: Vec<u8>,
    #[prost(bytes = "vec", tag = "3")]
    pub restore_secret: Vec<u8>,
    #[prost(bytes = "vec", tag = "4")]
    pub blob_id: Vec<u8>,
    #[prost(uint32, tag = "5")]
    pub index: u32,
}

/// One backup.
#[derive(Clone, PartialEq, Message)]
pub struct BackupInfo {
    #[prost(bytes = "vec", tag = "1")]
    pub blob_id: Vec<u8>,
    #[prost(uint32, tag = "2")]
    pub chunks: u32,
    #[prost(uint64, tag = "3")]
    pub bytes: u64,
    #[prost(int64, tag = "4")]
    pub created_at_ms: i64,
}

/// `GET /v1/backups`: the account's backups, newest first.
#[derive(Clone, PartialEq, Message)]
pub struct BackupList {
    #[prost(message, repeated, tag = "1")]
    pub backups: Vec<BackupInfo>,
}

/// What a backup holds, encrypted on the device under keys derived from the recovery key: what
/// a fresh device needs to become a device of the account again.
#[derive(Clone, PartialEq, Message)]
pub struct AccountBackup {
    #[prost(string, tag = "1")]
    pub username: String,
    /// The account key's secret half (Ed25519 seed).
    #[prost(bytes = "vec", tag = "2")]
    pub account_secret: Vec<u8>,
    #[prost(message, optional, tag = "3")]
    pub history: Option<super::HistoryArchive>,
    #[prost(int64, tag = "4")]
    pub created_at_ms: i64,
    /// How often the account backs up, for the restored device to carry on.
    #[prost(uint32, tag = "5")]
    pub every_minutes: u32,
}
