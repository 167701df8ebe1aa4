//! Sending: application messages, group changes (commits), and the outbox that carries both to
//! the server until it acknowledges them. Sending a text lives here; the layers under it are
//! `group_ops` (create, add, remove, make admin, leave), built on `commits` (commits and the
//! wrong-epoch retry), built on `outbox` (queue, submit, settle).

mod commits;
mod group_ops;
pub(crate) mod outbox;
mod references;

pub(crate) use outbox::HeldBack;

use parley_protocol::v1;

use crate::client::Client;
use crate::db::{self, ChatKind};
use crate::error::ClientError;
use crate::names::ChatRef;
use crate::views::MessageView;

impl Client {
    /// Sends a text message. A 1:1 chat is created on first use; the peer may be offline.
    /// Returns the message as stored locally; its status says whether the server has it yet.
    pub async fn send_text(&self, chat: &ChatRef, text: &str) -> Result<MessageView, ClientError> {
        self.send_reply(chat, text, None).await
    }

    /// Sends a text message, answering the message `reply_to` (its id) when given.
    pub async fn send_reply(
        &self,
        chat: &ChatRef,
        text: &str,
        reply_to: Option<&str>,
    ) -> Result<MessageView, ClientError> {
        check_text(text)?;
        let (group_id, reply_to) = self.sending_target(chat, reply_to).await?;
        let body = v1::app_payload::Body::Text(v1::TextBody {
            text: text.to_owned(),
            reply_to,
            ..Default::default()
        });
        self.send_body(&group_id, body, true, None).await
    }

    /// The chat to send to (a 1:1 chat is created on first use) and the id of the message
    /// answered, which must be in that chat.
    pub(crate) async fn sending_target(
        &self,
        chat: &ChatRef,
        reply_to: Option<&str>,
    ) -> Result<(Vec<u8>, Option<Vec<u8>>), ClientError> {
        let group_id = match (self.resolve_chat(chat)?, chat) {
            (Some(group_id), _) => group_id,
            (None, ChatRef::Direct(peer)) => {
                if reply_to.is_some() {
                    return Err(ClientError::UnknownChat(chat.to_string()));
                }
                if peer == self.username() {
                    return Err(ClientError::Invalid(
                        "you cannot start a chat with yourself".into(),
                    ));
                }
                self.create_group_with(ChatKind::Direct, peer.as_str(), std::slice::from_ref(peer))
                    .await?
            }
            (None, ChatRef::Group(name)) => {
                return Err(ClientError::UnknownChat(format!("#{name}")))
            }
        };
        let reply_to = match reply_to {
            Some(id) => {
                let target = self.shown_message(id)?;
                if target.group_id != group_id {
                    return Err(ClientError::Invalid(format!(
                        "message {id} is not in the chat {chat}"
                    )));
                }
                Some(target.id)
            }
            None => None,
        };
        Ok((group_id, reply_to))
    }

    /// Encrypts and sends one application message in a chat, after what must go first; returns
    /// the message it shows as (`shows`: the message an edit, delete or reaction changes, else
    /// the one sent). A refusal that holds the chat back is an error; the message waits in
    /// the outbox and goes out with a later sync.
    pub(crate) async fn send_body(
        &self,
        group_id: &[u8],
        body: v1::app_payload::Body,
        log: bool,
        shows: Option<&[u8]>,
    ) -> Result<MessageView, ClientError> {
        self.send_body_with(group_id, body, log, shows, |_| Ok(()))
            .await
    }

    /// [`Self::send_body`], running `also` in the transaction that queues the message.
    pub(crate) async fn send_body_with(
        &self,
        group_id: &[u8],
        body: v1::app_payload::Body,
        log: bool,
        shows: Option<&[u8]>,
        also: impl FnOnce(&rusqlite::Connection) -> Result<(), ClientError> + Send,
    ) -> Result<MessageView, ClientError> {
        // Our earlier group changes must be settled before new messages are encrypted, and
        // others' proposals committed (a member who left, received but not yet committed).
        self.settle_pending_changes(group_id).await?;
        self.commit_pending_in(group_id).await?;
        let message_id = self.queue_application_with(group_id, body, log, also)?;
        let flushed = self.flush_outbox().await;
        let (status, view) = {
            let conn = self.db();
            let sent = db::message(&conn, message_id.as_bytes())?
                .ok_or_else(|| ClientError::Protocol("sent message vanished".into()))?;
            let status = sent.status;
            let shown = match shows {
                Some(id) => db::message(&conn, id)?
                    .ok_or_else(|| ClientError::Protocol("changed message vanished".into()))?,
                None => sent,
            };
            (status, self.view_of(&conn, shown)?)
        };
        match flushed {
            Ok(()) if status == db::MessageStatus::Sending => {
                match self.held_back(group_id).await {
                    Some(refused) => Err(ClientError::Kept(refused)),
                    None => Ok(view),
                }
            }
            Ok(()) => Ok(view),
            Err(e) if e.is_transient() => {
                tracing::info!(error = %e, "message queued; will retry");
                Ok(view)
            }
            Err(e) => Err(e),
        }
    }
}

/// A text we can send: not empty, not too long.
pub(crate) fn check_text(text: &str) -> Result<(), ClientError> {
    if text.trim().is_empty() {
        return Err(ClientError::Invalid("the message is empty".into()));
    }
    if text.len() > parley_protocol::limits::MAX_TEXT_BYTES {
        return Err(ClientError::Invalid(format!(
            "message is longer than {} bytes",
            parley_protocol::limits::MAX_TEXT_BYTES
        )));
    }
    Ok(())
}
