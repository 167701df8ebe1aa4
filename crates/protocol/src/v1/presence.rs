//! Receipts, typing indicators and settings that travel between devices. Mirrored in
//! `proto/parley_v1.proto` like the rest of [`super`]; the rules are in
//! docs/messenger-basics.md.
//!
//! Receipts and settings are application messages (inside MLS, franked like any other).
//! Typing indicators are not: they go over the live connection only, sealed under a key the
//! group's MLS exporter gives its members for the epoch, and the server neither stores nor
//! queues them.

use prost::Message;

/// "Delivered (or read) everything of this chat up to here": one per chat and batch, never
/// one per message (draft-mahy-mimi-message-status, batched).
#[derive(Clone, PartialEq, Message)]
pub struct ReceiptBody {
    #[prost(enumeration = "ReceiptKind", tag = "1")]
    pub kind: i32,
    /// The group's server order: every message at or below it is covered.
    #[prost(uint64, tag = "2")]
    pub up_to_seq: u64,
    /// The id of the message at `up_to_seq` (MIMI names messages by id).
    #[prost(bytes = "vec", tag = "3")]
    pub up_to: Vec<u8>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum ReceiptKind {
    Unspecified = 0,
    Delivered = 1,
    Read = 2,
}

/// A setting changed. `read_receipts` is the sender's account-wide choice (its other devices
/// take it up; other members ignore it). `disappear_after_s` is the chat's timer (0: off; else
/// [`crate::limits::MIN_DISAPPEAR_S`] to [`crate::limits::MAX_DISAPPEAR_S`]), set by any
/// member of a 1:1 chat and by admins in groups, for the messages after it in server order.
#[derive(Clone, PartialEq, Message)]
pub struct SettingsBody {
    #[prost(bool, optional, tag = "1")]
    pub read_receipts: Option<bool>,
    #[prost(uint32, optional, tag = "2")]
    pub disappear_after_s: Option<u32>,
}

/// A typing indicator on the live connection. The client fills `group_id`, `epoch` and
/// `sealed`; the server sets the sender from the session before forwarding it to the group's
/// other devices that are online. `sealed` is AES-256-GCM under the group's exporter secret
/// for the epoch (label `parley typing`), a 12-byte nonce first; it opens to a [`TypingBody`].
#[derive(Clone, PartialEq, Message)]
pub struct Typing {
    #[prost(bytes = "vec", tag = "1")]
    pub group_id: Vec<u8>,
    #[prost(uint64, tag = "2")]
    pub epoch: u64,
    #[prost(bytes = "vec", tag = "3")]
    pub sealed: Vec<u8>,
    #[prost(string, tag = "4")]
    pub sender_username: String,
    #[prost(bytes = "vec", tag = "5")]
    pub sender_device: Vec<u8>,
}

#[derive(Clone, PartialEq, Message)]
pub struct TypingBody {
    /// The sender's clock: a replayed indicator is stale.
    #[prost(int64, tag = "1")]
    pub sent_at_ms: i64,
    /// Stopped typing (the text was sent or cleared).
    #[prost(bool, tag = "2")]
    pub stopped: bool,
}

#[cfg(test)]
mod tests {
    use super::super::{app_payload, client_frame, AppPayload, ClientFrame, ServerFrame};
    use super::*;

    fn round_trip<M: Message + Default + PartialEq + std::fmt::Debug>(message: M) {
        let bytes = message.encode_to_vec();
        assert_eq!(M::decode(bytes.as_slice()).unwrap(), message);
    }

    #[test]
    fn receipts_settings_and_typing_survive_the_wire() {
        let payload = |body| AppPayload {
            message_id: vec![1; 16],
            body: Some(body),
            ..Default::default()
        };
        round_trip(payload(app_payload::Body::Receipt(ReceiptBody {
            kind: ReceiptKind::Read as i32,
            up_to_seq: 9,
            up_to: vec![2; 16],
        })));
        round_trip(payload(app_payload::Body::Settings(SettingsBody {
            read_receipts: Some(false),
            disappear_after_s: Some(3600),
        })));
        let typing = Typing {
            group_id: vec![3; 16],
            epoch: 4,
            sealed: vec![5; 40],
            sender_username: "alice".into(),
            sender_device: vec![6; 16],
        };
        round_trip(ClientFrame {
            body: Some(client_frame::Body::Typing(typing.clone())),
        });
        round_trip(ServerFrame {
            typing: vec![typing],
            ..Default::default()
        });
    }
}
