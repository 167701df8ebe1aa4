//! What front ends show: chats and messages, as plain data (serializable to JSON).

use rusqlite::Connection;
use serde::Serialize;

use crate::client::Client;
use crate::content;
use crate::db::{self, now_ms, ChatKind, ChatRow, ChatState, MessageRow, Notice};
use crate::error::ClientError;
use crate::groups::{chat_handle, load_group};
use crate::names::ChatRef;
use crate::provider::TxProvider;

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct MessageView {
    /// The message id (hex): stable across devices, used to dedup and to report.
    pub id: String,
    /// The peer's username for a 1:1 chat, `#name` for a group.
    pub chat: String,
    pub sender: String,
    pub text: String,
    /// RFC 3339, as the sender's clock said.
    pub sent_at: String,
    /// sending, sent, delivered (every other account in the chat has it), read (every one
    /// read it; shown only while our read receipts are on), received or failed.
    pub status: String,
    /// Position in the group's server order, once known.
    pub group_seq: Option<u64>,
    /// `text` for a message; `notice` for what happened to us in the chat ("alice removed you
    /// from #team"), whose `text` is that sentence and `sender` who did it.
    pub kind: String,
    /// Came with the account's history when this device was linked (sent before it joined).
    pub history: bool,
    /// The id of the message this one answers.
    pub reply_to: Option<String>,
    /// What `reply_to` shows now (its sender and text, or that it was deleted), when this
    /// device has it.
    pub quoted: Option<Quoted>,
    /// Its sender changed the text; `versions` holds the earlier texts, oldest first, for as
    /// long as they are kept (a week after each was replaced).
    pub edited: bool,
    pub versions: Vec<String>,
    /// Taken back for everyone: `text` is empty.
    pub deleted: bool,
    /// Who deleted it when that was a group admin, not its sender.
    pub deleted_by: Option<String>,
    /// Emoji to the accounts that reacted with them.
    pub reactions: std::collections::BTreeMap<String, Vec<String>>,
    /// Files it carries (`parley attachment save ID` writes one); none once deleted.
    pub attachments: Vec<AttachmentView>,
    /// RFC 3339: when it disappears from every device (the chat's timer was on).
    pub expires_at: Option<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct AttachmentView {
    pub name: String,
    /// Plaintext bytes.
    pub size: u64,
    pub content_type: String,
    /// SHA-256 of the file (hex): what a saved copy must hash to.
    pub sha256: String,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Quoted {
    pub sender: String,
    pub text: String,
    pub deleted: bool,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ChatSummary {
    pub chat: String,
    /// direct or group.
    pub kind: String,
    /// active, leaving or left.
    pub state: String,
    pub last_activity: String,
    pub last_message: Option<MessageView>,
    /// Received messages not yet marked read.
    pub unread: u64,
    /// The disappearing-message timer in seconds (0: off).
    pub disappearing: u32,
}

/// How a reply shows the message it answers.
fn quote(conn: &Connection, id: &[u8]) -> Result<Option<Quoted>, ClientError> {
    let Some(row) = db::message(conn, id)? else {
        return Ok(None);
    };
    if row.notice.is_some() || (row.hidden && db::is_blocked(conn, &row.sender)?) {
        return Ok(None);
    }
    let resolved = content::resolve_stored(conn, &row.id, &row.group_id, &row.sender, &row.text)?;
    Ok(Some(Quoted {
        sender: row.sender,
        deleted: resolved.deleted.is_some(),
        text: resolved.text,
    }))
}

/// What one of our sent messages shows once receipts came: `read` when every other account
/// in the chat read it (and our read receipts are on), `delivered` when every one has it.
/// `None` leaves the status as it is.
fn receipt_status(
    client: &Client,
    conn: &Connection,
    group_id: &[u8],
    seq: u64,
) -> Result<Option<&'static str>, ClientError> {
    let me = client.username().as_str();
    let receipts = db::receipts_in(conn, group_id, me)?;
    if receipts.iter().all(|(_, delivered, _)| *delivered < seq) {
        return Ok(None);
    }
    let Some(chat) = db::chat(conn, group_id)? else {
        return Ok(None);
    };
    let others: Vec<String> = match chat.kind {
        ChatKind::Direct => vec![chat.name.clone()],
        _ => {
            let provider = TxProvider::new(&client.crypto, conn);
            match crate::groups::load_group(&provider, group_id)? {
                Some(group) => crate::groups::member_accounts(&group)
                    .into_iter()
                    .filter(|u| u != me)
                    .collect(),
                None => return Ok(None),
            }
        }
    };
    let of = |user: &String| receipts.iter().find(|(u, _, _)| u == user);
    let read_on = db::read_receipts_on(conn)?;
    let all_read = read_on && others.iter().all(|u| of(u).is_some_and(|r| r.2 >= seq));
    let all_delivered = others.iter().all(|u| of(u).is_some_and(|r| r.1 >= seq));
    Ok(if all_read && !others.is_empty() {
        Some("read")
    } else if all_delivered && !others.is_empty() {
        Some("delivered")
    } else {
        None
    })
}

/// A timer as people say it: "30 seconds", "1 hour", "4 weeks".
pub fn human_duration(seconds: u32) -> String {
    let units = [
        (604_800, "week"),
        (86_400, "day"),
        (3_600, "hour"),
        (60, "minute"),
    ];
    let (count, unit) = units
        .iter()
        .find(|(size, _)| seconds >= *size && seconds.is_multiple_of(*size))
        .map_or((seconds, "second"), |(size, unit)| (seconds / size, *unit));
    format!("{count} {unit}{}", if count == 1 { "" } else { "s" })
}

/// Milliseconds since the epoch as RFC 3339 in UTC, the form every front end prints.
pub fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// How a chat is shown and addressed: the peer, `#name`, or the group's handle
/// (`#name@1a2b3c4d`) when several of the user's groups bear that name.
pub(crate) fn chat_label(conn: &Connection, chat: &ChatRow) -> Result<String, ClientError> {
    Ok(match chat.kind {
        ChatKind::Direct => chat.name.clone(),
        ChatKind::Group if db::chats_named(conn, ChatKind::Group, &chat.name)?.len() > 1 => {
            chat_handle(chat)
        }
        ChatKind::Group | ChatKind::Unknown => format!("#{}", chat.name),
    })
}

impl Client {
    pub(crate) fn view_of(
        &self,
        conn: &Connection,
        row: MessageRow,
    ) -> Result<MessageView, ClientError> {
        let chat = db::chat(conn, &row.group_id)?
            .map(|c| chat_label(conn, &c))
            .transpose()?
            .unwrap_or_else(|| {
                format!(
                    "#{}",
                    hex::encode(&row.group_id[..4.min(row.group_id.len())])
                )
            });
        let text = match row.notice {
            None => row.text,
            Some(Notice::Added) => format!("{} added you to {chat}", row.sender),
            Some(Notice::Removed) => format!("{} removed you from {chat}", row.sender),
            Some(Notice::RemovedByModerators) => {
                format!("the server's moderators removed you from {chat}")
            }
            Some(Notice::IdentityChanged) => format!(
                "{}'s safety number has changed: compare it with them again \
                 (parley safety-number {})",
                row.sender, row.sender
            ),
            Some(Notice::Timer) => match row.text.parse::<u32>().unwrap_or(0) {
                0 => format!("{} turned disappearing messages off", row.sender),
                seconds => format!(
                    "{} set messages to disappear {} after sending",
                    row.sender,
                    human_duration(seconds)
                ),
            },
            Some(Notice::KeyRotated) => format!(
                "{} revoked a device and moved to a new account key, so their safety number \
                 has changed: compare it with them again (parley safety-number {})",
                row.sender, row.sender
            ),
        };
        let mut view = MessageView {
            id: hex::encode(&row.id),
            kind: if row.notice.is_some() {
                "notice"
            } else {
                "text"
            }
            .into(),
            chat,
            sender: row.sender,
            text,
            sent_at: rfc3339(row.sent_at),
            status: row.status.as_str().to_owned(),
            group_seq: row.group_seq,
            history: row.history,
            reply_to: None,
            quoted: None,
            edited: false,
            versions: Vec::new(),
            deleted: false,
            deleted_by: None,
            reactions: Default::default(),
            attachments: Vec::new(),
            expires_at: db::expires_at(conn, &row.id)?.map(rfc3339),
        };
        if row.notice.is_none() {
            let resolved =
                content::resolve_stored(conn, &row.id, &row.group_id, &view.sender, &view.text)?;
            view.versions = resolved.versions(&view.text);
            view.edited = !resolved.edits.is_empty();
            view.deleted = resolved.deleted.is_some();
            view.deleted_by = resolved
                .deleted
                .map(|d| d.sender)
                .filter(|by| *by != view.sender);
            view.reactions = resolved.reactions;
            view.text = resolved.text;
            if !view.deleted {
                view.attachments = crate::attachments::attachments_of(&row.payload)
                    .into_iter()
                    .map(|a| AttachmentView {
                        name: crate::attachments::safe_file_name(std::path::Path::new(&a.name)),
                        size: a.size,
                        content_type: a.content_type,
                        sha256: hex::encode(a.plaintext_sha256),
                    })
                    .collect();
            }
            if let (db::MessageStatus::Sent, Some(seq)) = (row.status, row.group_seq) {
                if let Some(status) = receipt_status(self, conn, &row.group_id, seq)? {
                    view.status = status.into();
                }
            }
            if let Some(reply_to) = db::reply_to(conn, &row.id)? {
                view.quoted = quote(conn, &reply_to)?;
                view.reply_to = Some(hex::encode(reply_to));
            }
        }
        Ok(view)
    }

    /// Chats, most recently active first.
    pub fn chats(&self) -> Result<Vec<ChatSummary>, ClientError> {
        self.forget_expired()?;
        let conn = self.db();
        db::all_chats(&conn)?
            .into_iter()
            .map(|chat| {
                let last_message = db::last_message(&conn, &chat.group_id)?
                    .map(|row| self.view_of(&conn, row))
                    .transpose()?;
                Ok(ChatSummary {
                    chat: chat_label(&conn, &chat)?,
                    kind: match chat.kind {
                        ChatKind::Direct => "direct",
                        _ => "group",
                    }
                    .into(),
                    state: match chat.state {
                        ChatState::Active => "active",
                        ChatState::Leaving => "leaving",
                        ChatState::Removed => "left",
                    }
                    .into(),
                    last_activity: rfc3339(chat.last_activity),
                    last_message,
                    unread: db::unread(&conn, &chat.group_id)?,
                    disappearing: db::current_timer(&conn, &chat.group_id)?.0,
                })
            })
            .collect()
    }

    /// The last `limit` messages of a chat, oldest first.
    pub fn history(&self, chat: &ChatRef, limit: u32) -> Result<Vec<MessageView>, ClientError> {
        self.forget_expired()?;
        let conn = self.db();
        let chats = self.chats_for(&conn, chat)?;
        if chats.is_empty() {
            return Err(ClientError::UnknownChat(chat.to_string()));
        }
        let groups: Vec<Vec<u8>> = chats.into_iter().map(|c| c.group_id).collect();
        db::messages_in(&conn, &groups, limit)?
            .into_iter()
            .map(|row| self.view_of(&conn, row))
            .collect()
    }
}

/// A member's view of a group's MLS state. Two members that agree on `epoch` and
/// `epoch_authenticator` hold the same group state.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct GroupStateView {
    pub epoch: u64,
    /// Usernames of the members (accounts), sorted.
    pub members: Vec<String>,
    /// Leaves: every device of every member is one.
    pub devices: usize,
    pub admins: Vec<String>,
    pub epoch_authenticator: String,
}

impl Client {
    pub fn group_state(&self, chat: &ChatRef) -> Result<GroupStateView, ClientError> {
        let group_id = self
            .resolve_chat(chat)?
            .ok_or_else(|| ClientError::UnknownChat(chat.to_string()))?;
        let conn = self.db();
        let provider = TxProvider::new(&self.crypto, &conn);
        let group = load_group(&provider, &group_id)?
            .ok_or_else(|| ClientError::UnknownChat(chat.to_string()))?;
        let mut members: Vec<String> = group
            .members()
            .filter_map(|m| parley_mls::DeviceIdentity::from_credential(&m.credential).ok())
            .map(|id| id.username.to_string())
            .collect();
        let devices = members.len();
        members.sort();
        members.dedup();
        let admins = parley_mls::Roles::from_extensions(group.extensions())
            .map(|r| r.admins().map(|a| a.to_string()).collect())
            .unwrap_or_default();
        Ok(GroupStateView {
            epoch: group.epoch().as_u64(),
            members,
            devices,
            admins,
            epoch_authenticator: hex::encode(group.epoch_authenticator().as_slice()),
        })
    }
}

/// A safety number: a fingerprint of two accounts' keys that both compute alike, to compare in
/// person (as digits, or by scanning the QR code of `qr_payload`). Computed over account keys,
/// not device keys, it stays the same when either account adds or removes a device.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct SafetyNumber {
    pub peer: String,
    /// 60 digits in 12 groups of five.
    pub digits: String,
    pub qr_payload: String,
    /// The user compared it and marked the contact verified, and the key is the same since.
    pub verified: bool,
}

/// 30 digits for one account: SHA-256 over a label, the username and its signature key.
fn party_digits(username: &str, key: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    hasher.update(b"parley/v1/safety-number\0");
    hasher.update(username.as_bytes());
    hasher.update([0]);
    hasher.update(key);
    let digest = hasher.finalize();
    digest[..30]
        .chunks(5)
        .map(|chunk| {
            let value = chunk.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
            format!("{:05}", value % 100_000)
        })
        .collect()
}

impl Client {
    /// The safety number shared with `peer`, over our account key and the one we pinned for
    /// them.
    pub fn safety_number(
        &self,
        peer: &parley_protocol::Username,
    ) -> Result<SafetyNumber, ClientError> {
        let peer_key = self.contact_key(peer)?;
        let all = self.safety_digits(peer, &peer_key);
        let digits = all
            .as_bytes()
            .chunks(5)
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect::<Vec<_>>()
            .join(" ");
        Ok(SafetyNumber {
            peer: peer.to_string(),
            qr_payload: format!("parley-safety:{all}"),
            digits,
            verified: db::is_verified(&self.db(), peer.as_str())?,
        })
    }

    /// Marks `peer` verified: the user compared `digits` (the safety number they were shown)
    /// in person. Refused unless those are the digits of the key pinned now, so a key that
    /// changed meanwhile is never marked. Holds until their account key changes.
    pub fn mark_verified(
        &self,
        peer: &parley_protocol::Username,
        digits: &str,
    ) -> Result<(), ClientError> {
        let key = self.contact_key(peer)?;
        let compared: String = digits.chars().filter(char::is_ascii_digit).collect();
        if compared != self.safety_digits(peer, &key) {
            return Err(ClientError::Invalid(format!(
                "those are not the safety number you share with {peer} now; compare the current one"
            )));
        }
        // Marked only if the pinned key is still the one the digits were made from.
        if !db::set_verified(&self.db(), peer.as_str(), &key)? {
            return Err(ClientError::Invalid(format!(
                "{peer}'s key changed just now; compare the new safety number"
            )));
        }
        Ok(())
    }

    /// The account key pinned for `peer` (never oneself).
    fn contact_key(&self, peer: &parley_protocol::Username) -> Result<Vec<u8>, ClientError> {
        db::pinned_key(&self.db(), peer.as_str())?
            .filter(|_| peer != self.username())
            .ok_or_else(|| ClientError::Invalid(format!("no chat with {peer} yet")))
    }

    /// The 60 digits for this account and `peer` with `peer_key`, the lesser username first.
    fn safety_digits(&self, peer: &parley_protocol::Username, peer_key: &[u8]) -> String {
        let own_key = self.account_key().public().to_bytes().to_vec();
        let own = (self.username().as_str(), own_key.as_slice());
        let theirs = (peer.as_str(), peer_key);
        let (first, second) = if own.0 <= theirs.0 {
            (own, theirs)
        } else {
            (theirs, own)
        };
        format!(
            "{}{}",
            party_digits(first.0, first.1),
            party_digits(second.0, second.1)
        )
    }

    /// Marks a chat's messages as read now.
    pub fn mark_read(&self, chat: &ChatRef) -> Result<(), ClientError> {
        let conn = self.db();
        let chats = self.chats_for(&conn, chat)?;
        let groups: Vec<Vec<u8>> = chats.into_iter().map(|c| c.group_id).collect();
        db::mark_read(&conn, &groups, now_ms())
    }
}
