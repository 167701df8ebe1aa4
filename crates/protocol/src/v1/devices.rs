//! Several devices per account: linking a new device, blobs (history archives), and the
//! account's device list. Mirrored in `proto/parley_v1.proto` like the rest of [`super`].

use prost::Message;

/// `POST /v1/links` (no session): a new device asks to become a device of `username`. `proof` is
/// its signature over [`link_proof_input`]; `mac` is HMAC-SHA256 over [`link_mac_input`], keyed
/// by the link code's secret, which the server never sees: an approver catches a server that
/// changes the keys.
#[derive(Clone, PartialEq, Message)]
pub struct CreateLink {
    #[prost(string, tag = "1")]
    pub username: String,
    #[prost(bytes = "vec", tag = "2")]
    pub device_id: Vec<u8>,
    #[prost(bytes = "vec", tag = "3")]
    pub signature_key: Vec<u8>,
    /// X25519 public key the link bundle is sealed to (HPKE).
    #[prost(bytes = "vec", tag = "4")]
    pub hpke_key: Vec<u8>,
    #[prost(bytes = "vec", tag = "5")]
    pub proof: Vec<u8>,
    #[prost(bytes = "vec", tag = "6")]
    pub mac: Vec<u8>,
}

#[derive(Clone, PartialEq, Message)]
pub struct CreateLinkResponse {
    /// 8 bytes; with the secret it makes the link code.
    #[prost(bytes = "vec", tag = "1")]
    pub link_id: Vec<u8>,
    #[prost(int64, tag = "2")]
    pub expires_at_ms: i64,
}

/// `GET /v1/links/{id}`, by a device of the account (or, once approved, the new device itself).
#[derive(Clone, PartialEq, Message)]
pub struct PendingLink {
    #[prost(string, tag = "1")]
    pub username: String,
    #[prost(bytes = "vec", tag = "2")]
    pub device_id: Vec<u8>,
    #[prost(bytes = "vec", tag = "3")]
    pub signature_key: Vec<u8>,
    #[prost(bytes = "vec", tag = "4")]
    pub hpke_key: Vec<u8>,
    #[prost(bytes = "vec", tag = "5")]
    pub mac: Vec<u8>,
    #[prost(int64, tag = "6")]
    pub expires_at_ms: i64,
    #[prost(bool, tag = "7")]
    pub approved: bool,
    /// Set once approved: the blob the history archive goes to.
    #[prost(bytes = "vec", tag = "8")]
    pub archive_blob: Vec<u8>,
    /// Set once approved: the link bundle sealed to `hpke_key`.
    #[prost(bytes = "vec", tag = "9")]
    pub sealed_bundle: Vec<u8>,
}

/// `POST /v1/links/{id}/approve`: the new device's certificate (the server registers the device
/// under it), the sealed link bundle, and the blob (made by the approver) for the history.
#[derive(Clone, PartialEq, Message)]
pub struct ApproveLink {
    #[prost(bytes = "vec", tag = "1")]
    pub certificate: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    pub sealed_bundle: Vec<u8>,
    #[prost(bytes = "vec", tag = "3")]
    pub archive_blob: Vec<u8>,
}

#[derive(Clone, PartialEq, Message)]
pub struct ApproveLinkResponse {
    #[prost(bytes = "vec", tag = "1")]
    pub device_id: Vec<u8>,
}

/// What the approver seals to the new device. The server only carries it.
#[derive(Clone, PartialEq, Message)]
pub struct LinkBundle {
    /// The account key's secret (32 bytes).
    #[prost(bytes = "vec", tag = "1")]
    pub account_secret: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    pub certificate: Vec<u8>,
    #[prost(bytes = "vec", tag = "3")]
    pub user_id: Vec<u8>,
}

/// What a new device signs to prove it holds the key it links.
pub fn link_proof_input(username: &str, device_id: &[u8], hpke_key: &[u8]) -> Vec<u8> {
    let mut input = b"parley/v1/link\0".to_vec();
    input.extend_from_slice(username.as_bytes());
    input.push(0);
    input.extend_from_slice(device_id);
    input.extend_from_slice(hpke_key);
    input
}

/// What the link MAC covers: everything the approver certifies or seals to.
pub fn link_mac_input(
    username: &str,
    device_id: &[u8],
    signature_key: &[u8],
    hpke_key: &[u8],
) -> Vec<u8> {
    let mut input = b"parley/v1/link-mac\0".to_vec();
    input.extend_from_slice(username.as_bytes());
    input.push(0);
    input.extend_from_slice(device_id);
    input.extend_from_slice(&(signature_key.len() as u16).to_be_bytes());
    input.extend_from_slice(signature_key);
    input.extend_from_slice(hpke_key);
    input
}

/// `POST /v1/blobs`: an empty blob that one device may read (a history archive for a new
/// device). Chunks go to `PUT /v1/blobs/{id}/{index}` (raw bytes), then `POST
/// /v1/blobs/{id}/seal`; the reader reads `GET /v1/blobs/{id}` (its status) and `GET
/// /v1/blobs/{id}/{index}`, and deletes it with `DELETE /v1/blobs/{id}`.
#[derive(Clone, PartialEq, Message)]
pub struct CreateBlob {
    #[prost(bytes = "vec", tag = "1")]
    pub reader_device: Vec<u8>,
}

#[derive(Clone, PartialEq, Message)]
pub struct CreateBlobResponse {
    #[prost(bytes = "vec", tag = "1")]
    pub blob_id: Vec<u8>,
    #[prost(int64, tag = "2")]
    pub expires_at_ms: i64,
}

#[derive(Clone, PartialEq, Message)]
pub struct SealBlob {
    #[prost(uint32, tag = "1")]
    pub chunks: u32,
}

#[derive(Clone, PartialEq, Message)]
pub struct BlobStatus {
    /// Chunks stored so far.
    #[prost(uint32, tag = "1")]
    pub chunks: u32,
    #[prost(bool, tag = "2")]
    pub sealed: bool,
    #[prost(uint64, tag = "3")]
    pub bytes: u64,
    /// When the last chunk arrived: a reader can tell a stalled upload from a slow one.
    #[prost(int64, tag = "4")]
    pub updated_at_ms: i64,
}

/// `GET /v1/devices`: the account's devices.
#[derive(Clone, PartialEq, Message)]
pub struct DeviceList {
    #[prost(message, repeated, tag = "1")]
    pub devices: Vec<AccountDevice>,
}

#[derive(Clone, PartialEq, Message)]
pub struct AccountDevice {
    #[prost(bytes = "vec", tag = "1")]
    pub device_id: Vec<u8>,
    /// Sealed by the account's devices: the server stores it without reading it.
    #[prost(bytes = "vec", tag = "2")]
    pub sealed_name: Vec<u8>,
    #[prost(int64, tag = "3")]
    pub added_at_ms: i64,
    #[prost(int64, tag = "4")]
    pub last_seen_ms: i64,
}

/// The account key's new secret and a device's certificate under it, sealed to that device
/// (HPKE to the init key of one of its KeyPackages) by the device that rotated the key.
#[derive(Clone, PartialEq, Message)]
pub struct RotationKeys {
    #[prost(bytes = "vec", tag = "1")]
    pub account_secret: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    pub certificate: Vec<u8>,
}

/// A [`RotationKeys`], sealed for one device.
#[derive(Clone, PartialEq, Message)]
pub struct SealedRotationKeys {
    #[prost(bytes = "vec", tag = "1")]
    pub device_id: Vec<u8>,
    /// The KeyPackage whose init key it is sealed to (its hash reference).
    #[prost(bytes = "vec", tag = "2")]
    pub key_package_ref: Vec<u8>,
    #[prost(bytes = "vec", tag = "3")]
    pub kem_output: Vec<u8>,
    #[prost(bytes = "vec", tag = "4")]
    pub ciphertext: Vec<u8>,
    /// The KeyPackage sealed to: a later rotation seals to it again if the device has taken
    /// up neither (its other KeyPackages went with the first rotation).
    #[prost(bytes = "vec", tag = "5")]
    pub key_package: Vec<u8>,
    /// The device that sealed it, and its MLS signature over the rotation and all of the above
    /// (`rotation_keys_signature_input`): the recipient checks it against that device's leaf,
    /// so that a revoked device that knew the old key cannot seal a key of its own choosing.
    #[prost(bytes = "vec", tag = "6")]
    pub sealed_by: Vec<u8>,
    #[prost(bytes = "vec", tag = "7")]
    pub signature: Vec<u8>,
}

/// What the sealing device signs: a label, the rotation, then each field of the sealed keys
/// but the signature, each with a 4-byte length.
pub fn rotation_keys_signature_input(rotation: &[u8], sealed: &SealedRotationKeys) -> Vec<u8> {
    let mut out = b"parley/v1/rotation-keys-signature\0".to_vec();
    for part in [
        rotation,
        &sealed.device_id,
        &sealed.key_package_ref,
        &sealed.kem_output,
        &sealed.ciphertext,
        &sealed.key_package,
        &sealed.sealed_by,
    ] {
        out.extend_from_slice(&(part.len() as u32).to_be_bytes());
        out.extend_from_slice(part);
    }
    out
}

/// `GET /v1/accounts/{username}/rotations`: an account's key rotations, oldest first.
#[derive(Clone, PartialEq, Message)]
pub struct AccountRotations {
    #[prost(bytes = "vec", repeated, tag = "1")]
    pub rotations: Vec<Vec<u8>>,
}

/// `GET /v1/devices/self/rotation`: what waits for this device after its account's key rotated:
/// the whole chain of rotations and its sealed keys. `POST /v1/devices/self/rotation/done`
/// deletes it once the device holds the new key.
#[derive(Clone, PartialEq, Message)]
pub struct WaitingRotation {
    #[prost(bytes = "vec", repeated, tag = "1")]
    pub rotations: Vec<Vec<u8>>,
    #[prost(message, optional, tag = "2")]
    pub keys: Option<SealedRotationKeys>,
}

/// `POST /v1/devices/{id}/name`.
#[derive(Clone, PartialEq, Message)]
pub struct RenameDevice {
    #[prost(bytes = "vec", tag = "1")]
    pub sealed_name: Vec<u8>,
}

/// A blob's chunk, both ways (`PUT` and `GET /v1/blobs/{id}/{index}`).
#[derive(Clone, PartialEq, Message)]
pub struct BlobChunk {
    #[prost(bytes = "vec", tag = "1")]
    pub data: Vec<u8>,
}

/// `POST /v1/keypackages/claim-own`: KeyPackages of one other device of the caller's own
/// account, one per chat it is being added to (linking). Not rate-limited as claims of others
/// are: nobody drains an account's packages but its own devices.
#[derive(Clone, PartialEq, Message)]
pub struct ClaimOwnKeyPackages {
    #[prost(bytes = "vec", tag = "1")]
    pub device_id: Vec<u8>,
    #[prost(uint32, tag = "2")]
    pub count: u32,
}

/// The history a device hands to a new device of its account (and, later, backups): its chats
/// and its whole message log, as the device stores them. Encrypted before it leaves the device.
#[derive(Clone, PartialEq, Message)]
pub struct HistoryArchive {
    #[prost(message, repeated, tag = "1")]
    pub chats: Vec<ArchivedChat>,
    #[prost(message, repeated, tag = "2")]
    pub messages: Vec<ArchivedMessage>,
    /// The account keys the account has pinned: a new device trusts whom its account trusts.
    #[prost(message, repeated, tag = "3")]
    pub contacts: Vec<ArchivedContact>,
    /// Devices their accounts revoked: still refused on the new device.
    #[prost(message, repeated, tag = "4")]
    pub revoked: Vec<ArchivedRevocation>,
    /// When backups are on, what a device needs to make them (from the recovery key, which no
    /// device keeps), so that every device backs up: the backup id, the encryption key and the
    /// restore verifier (`parley_mls::recovery`). Empty: backups are off.
    #[prost(bytes = "vec", tag = "5")]
    pub backup_id: Vec<u8>,
    #[prost(uint32, tag = "6")]
    pub backup_every_minutes: u32,
    #[prost(bytes = "vec", tag = "7")]
    pub backup_key: Vec<u8>,
    #[prost(bytes = "vec", tag = "8")]
    pub restore_verifier: Vec<u8>,
    /// The account's read receipts are off (as of `read_receipts_changed_ms`).
    #[prost(bool, tag = "9")]
    pub read_receipts_off: bool,
    #[prost(int64, tag = "10")]
    pub read_receipts_changed_ms: i64,
}

#[derive(Clone, PartialEq, Message)]
pub struct ArchivedContact {
    #[prost(string, tag = "1")]
    pub username: String,
    #[prost(bytes = "vec", tag = "2")]
    pub account_key: Vec<u8>,
    /// The account's user compared this key's safety number and marked it verified.
    #[prost(bool, tag = "3")]
    pub verified: bool,
}

#[derive(Clone, PartialEq, Message)]
pub struct ArchivedRevocation {
    #[prost(string, tag = "1")]
    pub username: String,
    #[prost(bytes = "vec", tag = "2")]
    pub device_id: Vec<u8>,
    #[prost(int64, tag = "3")]
    pub revoked_at_ms: i64,
}

#[derive(Clone, PartialEq, Message)]
pub struct ArchivedChat {
    #[prost(bytes = "vec", tag = "1")]
    pub group_id: Vec<u8>,
    #[prost(uint32, tag = "2")]
    pub kind: u32,
    #[prost(string, tag = "3")]
    pub name: String,
    #[prost(uint32, tag = "4")]
    pub state: u32,
    #[prost(int64, tag = "5")]
    pub created_at_ms: i64,
    #[prost(int64, tag = "6")]
    pub last_activity_ms: i64,
    #[prost(int64, tag = "7")]
    pub last_read_ms: i64,
    /// The chat's disappearing-message timer (0: off), in force after group position
    /// `disappear_from_seq`.
    #[prost(uint32, tag = "8")]
    pub disappear_after_s: u32,
    #[prost(uint64, tag = "9")]
    pub disappear_from_seq: u64,
}

#[derive(Clone, PartialEq, Message)]
pub struct ArchivedMessage {
    #[prost(bytes = "vec", tag = "1")]
    pub id: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    pub group_id: Vec<u8>,
    #[prost(string, tag = "3")]
    pub sender: String,
    #[prost(bytes = "vec", tag = "4")]
    pub sender_device: Vec<u8>,
    #[prost(string, tag = "5")]
    pub text: String,
    #[prost(int64, tag = "6")]
    pub sent_at_ms: i64,
    #[prost(int64, tag = "7")]
    pub received_at_ms: i64,
    #[prost(uint64, optional, tag = "8")]
    pub group_seq: Option<u64>,
    #[prost(uint32, tag = "9")]
    pub status: u32,
    /// The exact payload and authenticated data: a report from the new device verifies.
    #[prost(bytes = "vec", tag = "10")]
    pub payload: Vec<u8>,
    #[prost(bytes = "vec", tag = "11")]
    pub aad: Vec<u8>,
    #[prost(bool, tag = "12")]
    pub hidden: bool,
    #[prost(string, tag = "13")]
    pub notice: String,
    #[prost(int64, optional, tag = "14")]
    pub accepted_at_ms: Option<i64>,
    #[prost(bytes = "vec", optional, tag = "15")]
    pub frank: Option<Vec<u8>>,
    #[prost(uint32, optional, tag = "16")]
    pub frank_key_id: Option<u32>,
    /// A delete sent by a group admin (not the message's sender): the new device cannot tell
    /// from the payload who was admin then.
    #[prost(bool, tag = "17")]
    pub by_admin: bool,
    /// When a disappearing message goes.
    #[prost(int64, optional, tag = "18")]
    pub expires_at_ms: Option<i64>,
}

/// `POST /v1/devices/{id}/revoke`: the account key's signed statement
/// (`parley_mls::revocation`). Also carried in each chat the device is removed from
/// ([`super::app_payload::Body::Revoked`]), so that every member refuses it.
#[derive(Clone, PartialEq, Message)]
pub struct RevokeDevice {
    #[prost(bytes = "vec", tag = "1")]
    pub revocation: Vec<u8>,
    /// The account key's rotation that goes with the revocation (`parley_mls::rotation`);
    /// empty for an account that cannot rotate (from before multi-device).
    #[prost(bytes = "vec", tag = "2")]
    pub rotation: Vec<u8>,
    /// The new key for each remaining device, sealed to it (to the server only, never into a
    /// chat).
    #[prost(message, repeated, tag = "3")]
    pub keys: Vec<SealedRotationKeys>,
}

#[cfg(test)]
mod tests {
    use super::super::{app_payload, AppPayload};
    use super::*;

    /// Every body of an application payload survives the wire (a oneof lists its tags twice,
    /// on the field and on the variants; a tag missing from the field drops the body).
    #[test]
    fn every_payload_body_round_trips() {
        for body in [
            app_payload::Body::Text(super::super::TextBody {
                text: "hi".into(),
                ..Default::default()
            }),
            app_payload::Body::Meta(super::super::GroupMeta {
                kind: 2,
                name: "team".into(),
            }),
            app_payload::Body::Revoked(RevokeDevice {
                revocation: vec![1, 2, 3],
                rotation: vec![4, 5],
                keys: Vec::new(),
            }),
        ] {
            let payload = AppPayload {
                body: Some(body),
                ..Default::default()
            };
            assert_eq!(
                AppPayload::decode(payload.encode_to_vec().as_slice()).unwrap(),
                payload
            );
        }
    }
}
