//! The records the store reads and writes.

use parley_protocol::{DeviceId, GroupId, MessageId, UserId, Username};

/// Milliseconds since the Unix epoch.
pub type Millis = i64;

/// An account-key rotation that goes with a revocation (`parley_mls::rotation`): checked by the
/// server, stored as given.
#[derive(Debug, Clone)]
pub struct NewRotation {
    pub old_key: Vec<u8>,
    pub new_key: Vec<u8>,
    pub statement: Vec<u8>,
    /// The new key sealed to each remaining device.
    pub keys: Vec<(DeviceId, Vec<u8>)>,
}

#[derive(Debug, Clone)]
pub struct NewAccount {
    pub user_id: UserId,
    pub username: Username,
    pub device_id: DeviceId,
    pub signature_key: Vec<u8>,
    /// The account key (32 bytes) that certifies the account's devices.
    pub account_key: Vec<u8>,
    pub now: Millis,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRecord {
    pub device_id: DeviceId,
    pub user_id: UserId,
    pub username: Username,
    pub signature_key: Vec<u8>,
    /// The account's key, which must certify every leaf of this account.
    pub account_key: Vec<u8>,
    /// Suspended by a moderator: cannot log in or send.
    pub suspended: bool,
    /// Revoked by another device of its account: never logs in or joins anything again.
    pub revoked: bool,
}

/// The server's own device: the sender of moderation proposals (MLS external sender).
pub const SYSTEM_DEVICE: DeviceId = DeviceId::from_const([0; 16]);
/// The username behind [`SYSTEM_DEVICE`]; nobody can register it.
pub const SYSTEM_USERNAME: &str = "parley";

#[derive(Debug, Clone)]
pub struct Challenge {
    pub nonce: Vec<u8>,
    pub device_id: DeviceId,
    pub expires_at: Millis,
}

#[derive(Debug, Clone)]
pub struct NewSession {
    /// SHA-256 of the bearer token: a stolen database yields no usable token.
    pub token_hash: Vec<u8>,
    pub device_id: DeviceId,
    pub expires_at: Millis,
    /// The login's time: the device's `last_seen`.
    pub now: Millis,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyPackageCount {
    pub one_time: u32,
    pub has_last_resort: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedKeyPackage {
    pub device_id: DeviceId,
    pub data: Vec<u8>,
    pub last_resort: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupMember {
    pub device_id: DeviceId,
    pub leaf_index: u32,
}

#[derive(Debug, Clone)]
pub struct NewGroup {
    pub group_id: GroupId,
    pub epoch: u64,
    /// The Delivery Service's public view of the group (opaque to the store).
    pub public_state: Vec<u8>,
    pub members: Vec<GroupMember>,
    pub now: Millis,
    /// Groups each member's account may be in, this one included (the members of a new group
    /// are its creator's devices); beyond it [`crate::StoreError::TooManyGroups`].
    pub max_groups: u64,
}

#[derive(Debug, Clone)]
pub struct GroupRecord {
    pub group_id: GroupId,
    pub epoch: u64,
    pub public_state: Vec<u8>,
    pub member_count: u64,
    pub state_version: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ItemKind {
    GroupMessage = 1,
    Welcome = 2,
}

impl ItemKind {
    pub(crate) fn from_i64(value: i64) -> ItemKind {
        if value == 2 {
            ItemKind::Welcome
        } else {
            ItemKind::GroupMessage
        }
    }
}

/// A message accepted by the Delivery Service, with what it changes.
#[derive(Debug, Clone)]
pub struct Submission {
    pub sender: DeviceId,
    pub message_id: MessageId,
    /// Hash of the submitted bytes: a retry with other content is a conflict, not a duplicate.
    pub fingerprint: Vec<u8>,
    pub group_id: GroupId,
    /// The epoch the message was made in; must be the group's current epoch.
    pub epoch: u64,
    pub payload: Vec<u8>,
    pub accepted_at: Millis,
    pub transition: Option<GroupTransition>,
    /// The franking tag from an application message's authenticated data.
    pub franking_tag: Option<Vec<u8>>,
    /// A disappearing message: its ciphertext is overwritten at this time, delivered or not.
    pub expires_at: Option<Millis>,
    /// Bytes of undelivered items each recipient's queue may hold once this message (and its
    /// Welcome) is in it; a recipient beyond it refuses the whole submission
    /// ([`crate::StoreError::QueueFull`]).
    pub queue_limit: u64,
}

/// What an accepted handshake message does to the group.
#[derive(Debug, Clone)]
pub struct GroupTransition {
    /// The `state_version` the new state was computed from (compare-and-set).
    pub expected_state_version: u64,
    pub new_epoch: u64,
    pub new_public_state: Vec<u8>,
    /// Membership after the message (unchanged for a proposal).
    pub members: Vec<GroupMember>,
    pub welcome: Option<WelcomeDelivery>,
    /// The sender joins with this very message (an external commit the Delivery Service
    /// authorized), so it is not a member before it.
    pub joining: bool,
}

#[derive(Debug, Clone)]
pub struct WelcomeDelivery {
    pub payload: Vec<u8>,
    pub recipients: Vec<DeviceId>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    pub group_id: GroupId,
    pub group_seq: u64,
    pub epoch: u64,
    pub accepted_at: Millis,
    pub duplicate: bool,
    /// Each recipient device with its new queue head (empty for a duplicate).
    pub deliveries: Vec<(DeviceId, u64)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSubmission {
    pub fingerprint: Vec<u8>,
    pub accepted: Accepted,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueEntry {
    pub seq: u64,
    pub kind: ItemKind,
    pub group_id: GroupId,
    pub group_seq: u64,
    pub sender_device: DeviceId,
    pub sender_username: Username,
    pub message_id: MessageId,
    pub accepted_at: Millis,
    pub payload: Vec<u8>,
    pub franking_tag: Option<Vec<u8>>,
}

#[derive(Debug, Clone, Default)]
pub struct QueuePage {
    pub entries: Vec<QueueEntry>,
    pub head: u64,
    pub expired_up_to: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportStatus {
    Open,
    Actioned,
    Dismissed,
}

impl ReportStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ReportStatus::Open => "open",
            ReportStatus::Actioned => "actioned",
            ReportStatus::Dismissed => "dismissed",
        }
    }

    pub fn parse(text: &str) -> Option<ReportStatus> {
        match text {
            "open" => Some(ReportStatus::Open),
            "actioned" => Some(ReportStatus::Actioned),
            "dismissed" => Some(ReportStatus::Dismissed),
            _ => None,
        }
    }
}

/// A verified report: the reported text is what the accused account sent (its frank checked).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewReport {
    pub created_at: Millis,
    pub reporter: Username,
    pub accused: Username,
    pub accused_device: DeviceId,
    pub group_id: GroupId,
    pub group_seq: u64,
    pub message_accepted_at: Millis,
    pub text: String,
    pub reason: String,
    /// JSON array of the neighbouring messages that came with the report, each verified.
    pub context: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub id: u64,
    pub status: ReportStatus,
    pub report: NewReport,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub at: Millis,
    pub moderator: String,
    pub action: String,
    pub subject: String,
}

/// A group a user is in, with the leaves of that user's devices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    pub group_id: GroupId,
    pub leaves: Vec<u32>,
}

/// A new device's request to join an account (`parley link`), waiting for a device of the
/// account to approve it. The server stores the keys and the MAC; only the link code's holder
/// can check the MAC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewLink {
    pub link_id: Vec<u8>,
    pub user_id: UserId,
    pub device_id: DeviceId,
    pub signature_key: Vec<u8>,
    pub hpke_key: Vec<u8>,
    pub mac: Vec<u8>,
    pub now: Millis,
    pub expires_at: Millis,
    /// Links the account may have waiting at once, this one included.
    pub max_pending: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkRecord {
    pub link_id: Vec<u8>,
    pub user_id: UserId,
    pub username: Username,
    pub device_id: DeviceId,
    pub signature_key: Vec<u8>,
    pub hpke_key: Vec<u8>,
    pub mac: Vec<u8>,
    /// Until approved: when the code stops working; once approved: when the record goes.
    pub expires_at: Millis,
    pub approved_at: Option<Millis>,
    pub archive_blob: Option<Vec<u8>>,
    pub sealed_bundle: Option<Vec<u8>>,
}

/// Approving a link: the new device becomes a device of the account, once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkApproval {
    pub link_id: Vec<u8>,
    pub sealed_bundle: Vec<u8>,
    pub archive_blob: Vec<u8>,
    pub now: Millis,
    /// How long the approved link (and so the bundle) stays readable.
    pub kept_until: Millis,
    /// Devices the account may have, the new one included.
    pub max_devices: u32,
}

/// An empty blob: chunks come later, then a seal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewBlob {
    pub blob_id: Vec<u8>,
    pub owner: UserId,
    /// The one device that may read it; `None`: any device of the owner.
    pub reader: Option<DeviceId>,
    pub now: Millis,
    pub expires_at: Millis,
    /// Blobs the owner may have at once, this one included.
    pub max_per_account: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobRecord {
    pub blob_id: Vec<u8>,
    pub owner: UserId,
    pub reader: Option<DeviceId>,
    pub chunks: u32,
    pub bytes: u64,
    pub sealed: bool,
    pub updated_at: Millis,
    pub expires_at: Millis,
}

/// A device as its account sees it in `parley devices`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountDeviceRecord {
    pub device_id: DeviceId,
    pub sealed_name: Vec<u8>,
    pub added_at: Millis,
    pub last_seen: Millis,
}

/// The newest GroupInfo a member uploaded for a group, which a restored device joins from by
/// external commit (the server keeps the ratchet tree itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredGroupInfo {
    pub epoch: u64,
    pub group_info: Vec<u8>,
}

/// A sealed blob registered as one of the account's encrypted backups, under an id derived
/// from the recovery key (the server cannot tell which key).
#[derive(Debug, Clone)]
pub struct NewBackup {
    pub owner: UserId,
    pub backup_id: Vec<u8>,
    pub blob_id: Vec<u8>,
    /// The restore verifier the backup was made with: the first backup under an id sets it for
    /// that id, later ones must carry the same ([`crate::StoreError::VerifierMismatch`]).
    pub restore_verifier: Vec<u8>,
    /// The device storing it: if it is revoked, the verifiers it set go, with their backups.
    pub set_by: DeviceId,
    pub now: Millis,
    /// How many of the account's backups are kept; older ones are deleted with their blobs.
    pub keep: u32,
}

#[derive(Debug, Clone)]
pub struct BackupRecord {
    pub backup_id: Vec<u8>,
    pub created_at: Millis,
    pub blob: BlobRecord,
}

/// A device a restore adds to its account: certified by the account key, no approval by
/// another device (there is none left).
#[derive(Debug, Clone)]
pub struct RestoredDevice {
    pub user_id: UserId,
    pub device_id: DeviceId,
    pub signature_key: Vec<u8>,
    pub now: Millis,
    pub max_devices: u32,
}

/// An encrypted attachment's record: its ciphertext lives in the object store under `hash`
/// (its SHA-256); this says who may read it and how much of it is there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachmentRecord {
    pub hash: Vec<u8>,
    /// Ciphertext bytes, as announced at creation.
    pub size: u64,
    pub uploader: DeviceId,
    pub owner: UserId,
    /// Its readers are this group's members.
    pub group: GroupId,
    /// Bytes stored so far, in whole parts from the start.
    pub received: u64,
    /// Every part is in and the whole matched `hash`.
    pub complete: bool,
    pub created_at: Millis,
    pub expires_at: Millis,
}

/// A new upload: refused with [`crate::StoreError::QuotaExceeded`] when the owner's live
/// attachments and this one would exceed `quota_bytes`.
#[derive(Debug, Clone)]
pub struct NewAttachment {
    pub hash: Vec<u8>,
    pub size: u64,
    pub uploader: DeviceId,
    pub group: GroupId,
    pub quota_bytes: u64,
    pub now: Millis,
    pub expires_at: Millis,
}
