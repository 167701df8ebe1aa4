//! Settings that travel as messages. `read_receipts` is account-wide: a change goes to every
//! chat of ours, where our other devices take it up (the newest change wins) and other members
//! ignore it. They would notice the receipts stop anyway.

use parley_protocol::v1;
use rusqlite::Connection;

use crate::client::Client;
use crate::db::{self, ChatState};
use crate::error::ClientError;

impl Client {
    /// Whether this account sends read receipts (and sees those of others).
    pub fn read_receipts(&self) -> Result<bool, ClientError> {
        db::read_receipts_on(&self.db())
    }

    /// Turns the account's read receipts on or off, on all of its devices.
    pub async fn set_read_receipts(&self, on: bool) -> Result<(), ClientError> {
        let at = db::now_ms();
        db::set_read_receipts(&self.db(), on, at)?;
        let chats = db::all_chats(&self.db())?;
        for chat in chats.iter().filter(|c| c.state == ChatState::Active) {
            let body = v1::app_payload::Body::Settings(v1::SettingsBody {
                read_receipts: Some(on),
            });
            if let Err(e) = self.queue_application(&chat.group_id, body, false) {
                tracing::warn!(error = %e, "setting not sent to one chat");
            }
        }
        self.flush_outbox().await
    }
}

/// A settings message: one from another device of ours changes the account's setting, if it
/// is newer than the one in force.
pub(crate) fn accept_settings(
    conn: &Connection,
    own: bool,
    settings: &v1::SettingsBody,
    sent_at_ms: i64,
) -> Result<(), ClientError> {
    if let (true, Some(on)) = (own, settings.read_receipts) {
        db::set_read_receipts(conn, on, sent_at_ms)?;
    }
    Ok(())
}
