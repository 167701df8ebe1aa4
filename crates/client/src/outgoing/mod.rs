//! Sending: application messages, group changes (commits), and the outbox that carries both to
//! the server until it acknowledges them. Sending a text lives here; the layers under it are
//! `group_ops` (create, add, remove, make admin, leave), built on `commits` (commits and the
//! wrong-epoch retry), built on `outbox` (queue, submit, settle).

mod commits;
mod group_ops;
pub(crate) mod outbox;

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
        if text.trim().is_empty() {
            return Err(ClientError::Invalid("the message is empty".into()));
        }
        if text.len() > parley_protocol::limits::MAX_TEXT_BYTES {
            return Err(ClientError::Invalid(format!(
                "message is longer than {} bytes",
                parley_protocol::limits::MAX_TEXT_BYTES
            )));
        }
        let group_id = match (self.resolve_chat(chat)?, chat) {
            (Some(group_id), _) => group_id,
            (None, ChatRef::Direct(peer)) => {
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
        // Our earlier group changes must be settled before new messages are encrypted, and
        // others' proposals committed (a member who left, received but not yet committed).
        self.settle_pending_changes(&group_id).await?;
        self.commit_pending_in(&group_id).await?;
        let body = v1::app_payload::Body::Text(v1::TextBody {
            text: text.to_owned(),
            ..Default::default()
        });
        let message_id = self.queue_application(&group_id, body, true)?;
        let flushed = self.flush_outbox().await;
        let view = {
            let conn = self.db();
            let row = db::message(&conn, message_id.as_bytes())?
                .ok_or_else(|| ClientError::Protocol("sent message vanished".into()))?;
            self.view_of(&conn, row)?
        };
        match flushed {
            Ok(()) if view.status == "sending" => match self.held_back(&group_id).await {
                Some(mut refused) => {
                    refused
                        .message
                        .push_str("; the message is kept and goes out with a later sync");
                    Err(ClientError::Server(refused))
                }
                None => Ok(view),
            },
            Ok(()) => Ok(view),
            Err(e) if e.is_transient() => {
                tracing::info!(error = %e, "message queued; will retry");
                Ok(view)
            }
            Err(e) => Err(e),
        }
    }
}
