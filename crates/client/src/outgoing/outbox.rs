//! The outbox: encrypting an application message into it, submitting everything in it in
//! order, and settling each entry once the server accepts or refuses it. Commits and proposals
//! go through here too; `commits` builds them.
//!
//! An application message refused for a past epoch (another member's commit came first) is
//! encrypted again in the new epoch and resent, under the same message id.

use openmls::prelude::*;
use parley_mls::franking;
use parley_protocol::{v1, ErrorCode, MessageId};
use prost::Message as _;
use rand::RngCore;

use crate::client::Client;
use crate::db::{self, now_ms, ChatState, MessageStatus, OutboxKind};
use crate::error::{mls_error, ClientError};
use crate::groups::{load_active_group, load_group};
use crate::provider::TxProvider;

/// How often a change is rebuilt after losing its epoch to a concurrent commit.
pub(crate) const MAX_EPOCH_RETRIES: usize = 10;

/// A fresh random 16-byte id, for messages, outbox entries and new groups.
pub(crate) fn random_id() -> MessageId {
    let mut bytes = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    MessageId::from_bytes(bytes)
}

/// Groups whose next message met a full recipient queue in the last flush, with the server's
/// refusal: their messages wait in the outbox, in order, for a later flush. Not an error of the
/// flush: other chats, and this chat's group changes, go on.
pub(crate) type HeldBack = std::collections::HashMap<Vec<u8>, parley_protocol::WireError>;

/// The server refused a submission because another member's commit moved the epoch first.
pub(crate) fn is_wrong_epoch(error: &ClientError) -> bool {
    error.server_code() == Some(ErrorCode::WrongEpoch)
}

impl Client {
    /// Flushes group changes of ours still in the outbox for this group.
    pub(crate) async fn settle_pending_changes(&self, group_id: &[u8]) -> Result<(), ClientError> {
        let pending = {
            let conn = self.db();
            db::outbox_has_group(&conn, group_id, OutboxKind::Commit)?
                || db::outbox_has_group(&conn, group_id, OutboxKind::Proposal)?
        };
        if pending {
            self.flush_outbox().await?;
        }
        Ok(())
    }

    /// Submits our unresolved group changes before anything else is processed: messages that
    /// follow an accepted commit of ours belong to the epoch it starts, so it must be merged
    /// first (after a crash between the server's acceptance and our merge, for instance).
    pub(crate) async fn settle_own_commits(&self) -> Result<(), ClientError> {
        let rows = db::outbox(&self.db())?;
        for row in rows
            .into_iter()
            .filter(|r| r.kind != OutboxKind::Application)
        {
            let submit = v1::Submit {
                message_id: row.message_id.clone(),
                mls_message: row.mls.clone(),
                welcome: row.welcome.clone(),
                // Commits and proposals never disappear.
                expires_in_ms: 0,
            };
            match self
                .authed(|| self.api.post("/v1/messages", &submit, true))
                .await
            {
                Ok(accepted) => self.on_accepted(&row, &accepted)?,
                Err(e) if e.is_transient() => return Err(e),
                Err(e) => {
                    tracing::info!(error = %e, "server refused a queued group change");
                    self.on_refused(&row)?;
                }
            }
        }
        Ok(())
    }

    /// Encrypts an application payload and puts it in the outbox, in one local transaction.
    /// `log` says whether it goes into the message log (texts do, chat metadata does not).
    pub(crate) fn queue_application(
        &self,
        group_id: &[u8],
        body: v1::app_payload::Body,
        log: bool,
    ) -> Result<MessageId, ClientError> {
        self.queue_application_with(group_id, body, log, |_| Ok(()))
    }

    /// [`Self::queue_application`], running `also` in the same transaction.
    pub(crate) fn queue_application_with(
        &self,
        group_id: &[u8],
        body: v1::app_payload::Body,
        log: bool,
        also: impl FnOnce(&rusqlite::Connection) -> Result<(), ClientError>,
    ) -> Result<MessageId, ClientError> {
        let message_id = random_id();
        let mut salt = [0u8; franking::SALT_LEN];
        rand::rngs::OsRng.fill_bytes(&mut salt);
        let sent_at = now_ms();
        let text = match &body {
            v1::app_payload::Body::Text(t) => t.text.clone(),
            _ => String::new(),
        };
        let is_delete = matches!(body, v1::app_payload::Body::Delete(_));
        // A receipt or a setting is evidence of nothing: its row goes once it is sent.
        let transient = matches!(
            body,
            v1::app_payload::Body::Receipt(_) | v1::app_payload::Body::Settings(_)
        );
        let payload = v1::AppPayload {
            salt: salt.to_vec(),
            sender_username: self.identity.username.to_string(),
            sender_device: self.identity.device_id.to_vec(),
            message_id: message_id.to_vec(),
            sent_at_ms: sent_at,
            body: Some(body),
        }
        .encode_to_vec();
        let aad = v1::MessageAad {
            franking_tag: franking::franking_tag(&salt, &payload).to_vec(),
        }
        .encode_to_vec();

        let conn = self.db();
        let tx = conn.unchecked_transaction()?;
        let provider = TxProvider::new(&self.crypto, &tx);
        let mut group = load_active_group(&provider, group_id)?;
        group.set_aad(aad.clone());
        let ciphertext = group
            .create_message(&provider, &self.signer, &payload)
            .map_err(mls_error)?
            .to_bytes()
            .map_err(mls_error)?;
        db::insert_message(
            &tx,
            &db::MessageRow {
                id: message_id.to_vec(),
                group_id: group_id.to_vec(),
                sender: self.identity.username.to_string(),
                sender_device: self.identity.device_id.to_vec(),
                text,
                sent_at,
                received_at: sent_at,
                group_seq: None,
                status: MessageStatus::Sending,
                payload: payload.clone(),
                aad,
                // Chat metadata is kept (re-encryption reads it) but never shown.
                hidden: !log,
                notice: None,
                history: false,
            },
        )?;
        // A delete of someone else's message counts only from a group admin.
        let by_admin = is_delete && crate::groups::admin_of_group(&tx, &group, self.username())?;
        db::index_references(&tx, message_id.as_bytes(), &payload, by_admin)?;
        if log {
            db::touch_chat(&tx, group_id, sent_at)?;
        }
        db::push_outbox(
            &tx,
            message_id.as_bytes(),
            group_id,
            OutboxKind::Application,
            &ciphertext,
            None,
            group.epoch().as_u64(),
        )?;
        if transient {
            db::mark_transient(&tx, message_id.as_bytes())?;
        }
        also(&tx)?;
        tx.commit()?;
        Ok(message_id)
    }

    /// Encrypts a queued application message again in the group's current epoch (after the
    /// server refused the old epoch). Same message id, same payload, new ciphertext.
    fn reencrypt(&self, row: &db::OutboxRow) -> Result<(), ClientError> {
        let conn = self.db();
        let stored = db::message(&conn, &row.message_id)?
            .ok_or_else(|| ClientError::Protocol("queued message missing from the log".into()))?;
        let tx = conn.unchecked_transaction()?;
        let provider = TxProvider::new(&self.crypto, &tx);
        let mut group = load_active_group(&provider, &row.group_id)?;
        group.set_aad(stored.aad.clone());
        let ciphertext = group
            .create_message(&provider, &self.signer, &stored.payload)
            .map_err(mls_error)?
            .to_bytes()
            .map_err(mls_error)?;
        db::replace_outbox_mls(&tx, row.seq, &ciphertext, group.epoch().as_u64())?;
        tx.commit()?;
        Ok(())
    }

    /// How long the server keeps an entry's ciphertext at most: a message in a chat whose
    /// timer is on goes from the server when it goes from the devices.
    fn expires_in_ms(&self, row: &db::OutboxRow) -> Result<u64, ClientError> {
        if row.kind != OutboxKind::Application {
            return Ok(0);
        }
        Ok(u64::from(db::current_timer(&self.db(), &row.group_id)?.0) * 1000)
    }

    /// Whether anything waits in the outbox.
    pub fn has_unsent(&self) -> Result<bool, ClientError> {
        Ok(!db::outbox_is_empty(&self.db())?)
    }

    /// Submits everything in the outbox, in order. Stops at the first transient failure (the
    /// rest waits for the next attempt, keeping order); a permanent refusal drops that entry
    /// and is returned after the others were tried.
    pub async fn flush_outbox(&self) -> Result<(), ClientError> {
        if db::outbox_is_empty(&self.db())? {
            return Ok(());
        }
        let mut held_back = self.flush_lock.lock().await;
        held_back.clear();
        let mut first_error = None;
        let rows = db::outbox(&self.db())?;
        for row in rows {
            // A group change goes ahead of the group's held-back messages (the server gives
            // changes room beyond a full queue, so that a stuck member can be removed); the
            // messages then fail their epoch and are encrypted again in the change's.
            if held_back.contains_key(&row.group_id) && row.kind == OutboxKind::Application {
                continue;
            }
            let mut epoch_retries = 0;
            loop {
                let current = db::outbox_entry(&self.db(), row.seq)?;
                let Some(current) = current else { break };
                let submit = v1::Submit {
                    message_id: current.message_id.clone(),
                    mls_message: current.mls.clone(),
                    welcome: current.welcome.clone(),
                    expires_in_ms: self.expires_in_ms(&current)?,
                };
                let result: Result<v1::SubmitResponse, _> = self
                    .authed(|| self.api.post("/v1/messages", &submit, true))
                    .await;
                match result {
                    Ok(accepted) => {
                        self.on_accepted(&current, &accepted)?;
                        break;
                    }
                    Err(e) if e.is_transient() => return Err(e),
                    // A message waits for the recipient to catch up; a group change is refused
                    // like any other (its author tries again), so that no stale change waits.
                    Err(ClientError::Server(refused))
                        if refused.code == ErrorCode::QueueFull
                            && current.kind == OutboxKind::Application =>
                    {
                        tracing::info!("a recipient's queue is full; the submission waits");
                        held_back.insert(current.group_id.clone(), refused);
                        break;
                    }
                    Err(e)
                        if is_wrong_epoch(&e)
                            && current.kind == OutboxKind::Application
                            && epoch_retries < MAX_EPOCH_RETRIES =>
                    {
                        epoch_retries += 1;
                        self.receive().await?;
                        if let Err(e) = self.reencrypt(&current) {
                            // Removed from the group meanwhile: this message cannot go out.
                            self.on_refused(&current)?;
                            first_error.get_or_insert(e);
                            break;
                        }
                    }
                    Err(e) => {
                        tracing::info!(error = %e, epoch = current.epoch, "server refused a queued submission");
                        self.on_refused(&current)?;
                        if current.kind != OutboxKind::Application && is_wrong_epoch(&e) {
                            // The caller that built this change rebuilds it on the new epoch.
                            return Err(e);
                        }
                        first_error.get_or_insert(e);
                        break;
                    }
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Why the last flush held back this group's submissions, if it did.
    pub(crate) async fn held_back(&self, group_id: &[u8]) -> Option<parley_protocol::WireError> {
        self.flush_lock.lock().await.get(group_id).cloned()
    }

    /// Every refusal that holds submissions back after the last flush.
    pub(crate) async fn all_held_back(&self) -> Vec<parley_protocol::WireError> {
        self.flush_lock.lock().await.values().cloned().collect()
    }

    fn on_accepted(
        &self,
        row: &db::OutboxRow,
        accepted: &v1::SubmitResponse,
    ) -> Result<(), ClientError> {
        let conn = self.db();
        let tx = conn.unchecked_transaction()?;
        let provider = TxProvider::new(&self.crypto, &tx);
        match row.kind {
            OutboxKind::Commit => {
                if let Some(mut group) = load_group(&provider, &row.group_id)? {
                    if group.pending_commit().is_some() {
                        group.merge_pending_commit(&provider).map_err(mls_error)?;
                        if group.is_active() {
                            self.keep_group_info_to_share(&tx, &provider, &group)?;
                        }
                    }
                }
            }
            OutboxKind::Application => db::set_message_sent(
                &tx,
                &row.message_id,
                accepted.group_seq,
                accepted.accepted_at_ms,
            )?,
            OutboxKind::Proposal => {}
        }
        db::delete_outbox(&tx, row.seq)?;
        tx.commit()?;
        Ok(())
    }

    fn on_refused(&self, row: &db::OutboxRow) -> Result<(), ClientError> {
        let conn = self.db();
        let tx = conn.unchecked_transaction()?;
        let provider = TxProvider::new(&self.crypto, &tx);
        match row.kind {
            OutboxKind::Commit => {
                if let Some(mut group) = load_group(&provider, &row.group_id)? {
                    group
                        .clear_pending_commit(provider.storage())
                        .map_err(mls_error)?;
                }
            }
            OutboxKind::Application => {
                db::set_message_status(&tx, &row.message_id, MessageStatus::Failed)?
            }
            OutboxKind::Proposal => db::set_chat_state(&tx, &row.group_id, ChatState::Active)?,
        }
        db::delete_outbox(&tx, row.seq)?;
        tx.commit()?;
        Ok(())
    }
}
