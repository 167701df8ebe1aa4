//! Settings that travel as messages. `read_receipts` is account-wide: a change goes to every
//! chat of ours, where our other devices take it up (the newest change wins) and other members
//! ignore it. They would notice the receipts stop anyway.

use openmls::prelude::MlsGroup;
use parley_mls::DeviceIdentity;
use parley_protocol::limits::{MAX_DISAPPEAR_S, MIN_DISAPPEAR_S};
use parley_protocol::v1;
use rusqlite::Connection;

use crate::client::Client;
use crate::db::{self, ChatKind, ChatState};
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
                disappear_after_s: None,
            });
            if let Err(e) = self.queue_application(&chat.group_id, body, false) {
                tracing::warn!(error = %e, "setting not sent to one chat");
            }
        }
        // Offline, the change waits in the outbox for the next sync.
        match self.flush_outbox().await {
            Err(e) if e.is_transient() => {
                tracing::info!(error = %e, "setting queued");
                Ok(())
            }
            other => other,
        }
    }
}

/// A settings message at position `seq`: one from another device of ours changes the
/// account's setting if it is newer than the one in force; a timer change from a member
/// allowed to make it (anyone in a 1:1 chat, an admin in a group) takes effect after `seq`.
/// Returns the chat line a timer change shows as.
#[allow(clippy::too_many_arguments)]
pub(crate) fn accept_settings(
    conn: &Connection,
    group: &MlsGroup,
    sender: &DeviceIdentity,
    own: bool,
    settings: &v1::SettingsBody,
    message: &v1::AppPayload,
    seq: u64,
    accepted_at: i64,
) -> Result<Option<db::MessageRow>, String> {
    let failed = |e: ClientError| e.to_string();
    if let (true, Some(on)) = (own, settings.read_receipts) {
        db::set_read_receipts(conn, on, message.sent_at_ms).map_err(failed)?;
    }
    let Some(seconds) = settings.disappear_after_s else {
        return Ok(None);
    };
    if seconds != 0 && !(MIN_DISAPPEAR_S..=MAX_DISAPPEAR_S).contains(&seconds) {
        return Err("disappearing timer out of range".into());
    }
    let group_id = group.group_id().as_slice();
    let direct = db::chat(conn, group_id)
        .map_err(failed)?
        .is_some_and(|c| c.kind == ChatKind::Direct);
    if !direct && !crate::groups::admin_of_group(conn, group, &sender.username).map_err(failed)? {
        return Err("only a group admin sets its disappearing timer".into());
    }
    let change = db::MessageRow {
        id: message.message_id.clone(),
        group_id: group_id.to_vec(),
        sender: sender.username.to_string(),
        sender_device: sender.device_id.to_vec(),
        text: String::new(),
        sent_at: message.sent_at_ms,
        received_at: accepted_at,
        group_seq: Some(seq),
        status: db::MessageStatus::Received,
        payload: Vec::new(),
        aad: Vec::new(),
        hidden: true,
        notice: None,
        history: false,
    };
    db::change_timer(conn, &change, seq, accepted_at, seconds, own).map_err(failed)?;
    db::notice_for_timer(conn, &change.id).map_err(failed)
}
