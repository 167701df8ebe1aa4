//! What front ends show: chats and messages, as plain data (serializable to JSON).

use rusqlite::Connection;
use serde::Serialize;

use crate::db::{self, ChatKind, ChatRow, ChatState, MessageRow};
use crate::{ChatRef, Client, ClientError};

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
    /// sending, sent, received or failed.
    pub status: String,
    /// Position in the group's server order, once known.
    pub group_seq: Option<u64>,
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
}

pub(crate) fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

pub(crate) fn chat_label(chat: &ChatRow) -> String {
    match chat.kind {
        ChatKind::Direct => chat.name.clone(),
        ChatKind::Group | ChatKind::Unknown => format!("#{}", chat.name),
    }
}

impl Client {
    pub(crate) fn view_of(
        &self,
        conn: &Connection,
        row: MessageRow,
    ) -> Result<MessageView, ClientError> {
        let chat = db::chat(conn, &row.group_id)?
            .map(|c| chat_label(&c))
            .unwrap_or_else(|| {
                format!(
                    "#{}",
                    hex::encode(&row.group_id[..4.min(row.group_id.len())])
                )
            });
        Ok(MessageView {
            id: hex::encode(&row.id),
            chat,
            sender: row.sender,
            text: row.text,
            sent_at: rfc3339(row.sent_at),
            status: row.status.as_str().to_owned(),
            group_seq: row.group_seq,
        })
    }

    /// Chats, most recently active first.
    pub fn chats(&self) -> Result<Vec<ChatSummary>, ClientError> {
        let conn = self.db();
        db::all_chats(&conn)?
            .into_iter()
            .map(|chat| {
                let last_message = db::last_message(&conn, &chat.group_id)?
                    .map(|row| self.view_of(&conn, row))
                    .transpose()?;
                Ok(ChatSummary {
                    chat: chat_label(&chat),
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
                })
            })
            .collect()
    }

    /// The last `limit` messages of a chat, oldest first.
    pub fn history(&self, chat: &ChatRef, limit: u32) -> Result<Vec<MessageView>, ClientError> {
        let conn = self.db();
        let chats = match chat {
            ChatRef::Direct(peer) => db::chats_named(&conn, ChatKind::Direct, peer.as_str())?,
            ChatRef::Group(name) => db::chats_named(&conn, ChatKind::Group, name)?,
        };
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
    /// Usernames of the members, sorted, one entry per device.
    pub members: Vec<String>,
    pub admins: Vec<String>,
    pub epoch_authenticator: String,
}

impl Client {
    pub fn group_state(&self, chat: &ChatRef) -> Result<GroupStateView, ClientError> {
        let group_id = self
            .resolve_chat(chat)?
            .ok_or_else(|| ClientError::UnknownChat(chat.to_string()))?;
        let conn = self.db();
        let provider = crate::provider::TxProvider::new(&self.crypto, &conn);
        let group = crate::outgoing::load_group(&provider, &group_id)?
            .ok_or_else(|| ClientError::UnknownChat(chat.to_string()))?;
        let mut members: Vec<String> = group
            .members()
            .filter_map(|m| parley_mls::DeviceIdentity::from_credential(&m.credential).ok())
            .map(|id| id.username.to_string())
            .collect();
        members.sort();
        let admins = parley_mls::Roles::from_extensions(group.extensions())
            .map(|r| r.admins().map(|a| a.to_string()).collect())
            .unwrap_or_default();
        Ok(GroupStateView {
            epoch: group.epoch().as_u64(),
            members,
            admins,
            epoch_authenticator: hex::encode(group.epoch_authenticator().as_slice()),
        })
    }
}
