//! Edits, deletes and reactions: messages that change an earlier one (`content` says how).
//! Each is checked here against the rules every recipient applies, so that the user hears
//! "too late" instead of sending a change nobody will show.

use parley_protocol::v1;

use crate::client::Client;
use crate::content::{self, DELETE_WINDOW_MS, EDIT_WINDOW_MS, MAX_EDITS};
use crate::db::{self, now_ms, MessageRow};
use crate::error::ClientError;
use crate::groups::load_active_group;
use crate::incoming::is_reaction;
use crate::provider::TxProvider;
use crate::views::MessageView;

impl Client {
    /// A message this device shows, by its id or an unambiguous start of it (at least 6 hex
    /// digits).
    pub(crate) fn shown_message(&self, id: &str) -> Result<MessageRow, ClientError> {
        let prefix = id.trim().to_ascii_lowercase();
        if prefix.len() < 6 || prefix.len() > 32 || !prefix.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(ClientError::Invalid(format!(
                "{id:?} is not a message id (give its hex id, or at least its first 6 digits)"
            )));
        }
        let mut found = db::shown_messages_starting(&self.db(), &prefix)?;
        match found.len() {
            0 => Err(ClientError::Invalid(format!("no message {id} in any chat"))),
            1 => Ok(found.remove(0)),
            _ => Err(ClientError::Invalid(format!(
                "{id} starts several messages' ids: give more of it"
            ))),
        }
    }

    /// Replaces the text of one of our messages, for everyone; returns it as it shows now.
    pub async fn edit(&self, message_id: &str, text: &str) -> Result<MessageView, ClientError> {
        super::check_text(text)?;
        let target = self.shown_message(message_id)?;
        if target.sender != self.username().as_str() {
            return Err(ClientError::Invalid(
                "only its sender can edit a message".into(),
            ));
        }
        let (at, resolved) = self.resolved(&target)?;
        if resolved.deleted.is_some() {
            return Err(ClientError::Invalid("that message was deleted".into()));
        }
        if resolved.edits.len() >= MAX_EDITS {
            return Err(ClientError::Invalid(format!(
                "a message can be edited at most {MAX_EDITS} times"
            )));
        }
        if now_ms() - at > EDIT_WINDOW_MS {
            return Err(ClientError::Invalid(
                "a message can be edited only within 24 hours of sending it".into(),
            ));
        }
        let body = v1::app_payload::Body::Edit(v1::EditBody {
            target: target.id.clone(),
            text: text.to_owned(),
        });
        self.send_body(&target.group_id, body, false, Some(&target.id))
            .await
    }

    /// Deletes a message for everyone: one of ours, or, as a group admin, anyone's; within
    /// 24 hours of its sending. Returns it as it shows now.
    pub async fn delete(&self, message_id: &str) -> Result<MessageView, ClientError> {
        let target = self.shown_message(message_id)?;
        let ours = target.sender == self.username().as_str();
        if !ours && !self.is_admin_in(&target.group_id)? {
            return Err(ClientError::Invalid(
                "only its sender or a group admin can delete a message".into(),
            ));
        }
        let (at, resolved) = self.resolved(&target)?;
        if resolved.deleted.is_some() {
            return Err(ClientError::Invalid(
                "that message was deleted already".into(),
            ));
        }
        if now_ms() - at > DELETE_WINDOW_MS {
            return Err(ClientError::Invalid(
                "a message can be deleted only within 24 hours of its sending".into(),
            ));
        }
        let body = v1::app_payload::Body::Delete(v1::DeleteBody {
            target: target.id.clone(),
        });
        self.send_body(&target.group_id, body, false, Some(&target.id))
            .await
    }

    /// Puts a reaction on a message, or takes ours back (`remove`). Returns the message as it
    /// shows now; doing what is done already sends nothing.
    pub async fn react(
        &self,
        message_id: &str,
        emoji: &str,
        remove: bool,
    ) -> Result<MessageView, ClientError> {
        if !is_reaction(emoji) {
            return Err(ClientError::Invalid(format!(
                "{emoji:?} is not a reaction: give one emoji"
            )));
        }
        let target = self.shown_message(message_id)?;
        let (_, resolved) = self.resolved(&target)?;
        if resolved.deleted.is_some() {
            return Err(ClientError::Invalid("that message was deleted".into()));
        }
        let me = self.username().as_str();
        let present = resolved
            .reactions
            .get(emoji)
            .is_some_and(|users| users.iter().any(|u| u == me));
        if present != remove {
            let conn = self.db();
            return self.view_of(&conn, target);
        }
        let body = v1::app_payload::Body::Reaction(v1::ReactionBody {
            target: target.id.clone(),
            emoji: emoji.to_owned(),
            remove,
        });
        self.send_body(&target.group_id, body, false, Some(&target.id))
            .await
    }

    /// For tests: sends `body` in the chat of message `in_chat_of` without any of the checks
    /// above, as a client that breaks the rules would.
    #[cfg(feature = "test-hooks")]
    pub async fn send_unchecked(
        &self,
        in_chat_of: &str,
        body: v1::app_payload::Body,
    ) -> Result<MessageView, ClientError> {
        let target = self.shown_message(in_chat_of)?;
        self.send_body(&target.group_id, body, false, Some(&target.id))
            .await
    }

    fn resolved(&self, target: &MessageRow) -> Result<(i64, content::Resolved), ClientError> {
        let conn = self.db();
        let at = db::acceptance_time(&conn, &target.id)?.unwrap_or(target.sent_at);
        let resolved = content::resolve_stored(
            &conn,
            &target.id,
            &target.group_id,
            &target.sender,
            &target.text,
        )?;
        Ok((at, resolved))
    }

    /// Whether we are an admin of the group chat, as its current state says.
    fn is_admin_in(&self, group_id: &[u8]) -> Result<bool, ClientError> {
        let conn = self.db();
        let provider = TxProvider::new(&self.crypto, &conn);
        let group = load_active_group(&provider, group_id)?;
        crate::groups::admin_of_group(&conn, &group, self.username())
    }
}
