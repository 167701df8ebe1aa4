//! Receiving: reading the device's queue in server order, processing each item in one local
//! transaction together with the cursor, and acknowledging what is persisted.

use openmls::prelude::tls_codec::Deserialize as _;
use openmls::prelude::*;
use parley_mls::{
    authorize_commit, franking, introduced_leaves, rotations_in_aad, CertifiedDevice,
    DeviceIdentity, Roles,
};
use parley_protocol::{v1, DeviceId};
use prost::Message as _;

use crate::client::Client;
use crate::db::{self, now_ms, ChatKind, ChatState, MessageStatus, Notice};
use crate::error::{mls_error, ClientError};
use crate::groups::{join_config, load_group};
use crate::names::parse_group_name;
use crate::provider::TxProvider;
use crate::trust::certify_members;
use crate::views::MessageView;

const FETCH_LIMIT: u32 = 500;

/// Why an item was set aside instead of shown.
#[derive(Debug)]
enum Rejected {
    /// Not for us any more (a group we left), or stale: dropped silently.
    Ignored(&'static str),
    /// Failed verification: kept aside as unverifiable.
    Unverifiable(String),
}

impl From<ClientError> for Outcome {
    fn from(e: ClientError) -> Self {
        Outcome::Failed(e)
    }
}

enum Outcome {
    Shown(Vec<MessageView>),
    Rejected(Rejected),
    /// A local failure (database): stop syncing, nothing is committed.
    Failed(ClientError),
}

impl Client {
    /// Fetches, processes and acknowledges everything waiting in this device's queue.
    /// Returns the new messages to show, in server order.
    pub async fn receive(&self) -> Result<Vec<MessageView>, ClientError> {
        self.receive_with_progress(|_, _| {}).await
    }

    /// Like [`Client::receive`], reporting (processed, known total) as it goes.
    pub async fn receive_with_progress(
        &self,
        mut progress: impl FnMut(u64, u64),
    ) -> Result<Vec<MessageView>, ClientError> {
        let _one_at_a_time = self.receive_lock.lock().await;
        self.settle_own_commits().await?;
        let mut shown = Vec::new();
        let mut processed = 0u64;
        loop {
            let cursor = db::cursor(&self.db())?;
            let path = format!("/v1/queue?after={cursor}&limit={FETCH_LIMIT}");
            let batch: v1::QueueBatch = self.authed(|| self.api.get(&path)).await?;
            if batch.expired_up_to > cursor {
                tracing::warn!(
                    missed_up_to = batch.expired_up_to,
                    "some queued items expired before this device fetched them"
                );
            }
            let Some(last) = batch.items.last().map(|i| i.seq) else {
                break;
            };
            for item in &batch.items {
                if item.seq <= cursor {
                    continue;
                }
                shown.extend(self.process_item(item)?);
                processed += 1;
                progress(processed, processed + batch.head.saturating_sub(item.seq));
            }
            // Acknowledged only after the items are committed locally; a lost ack means a
            // redelivery, which the cursor and message ids turn into a no-op.
            let ack = v1::Ack { up_to: last };
            if let Err(e) = self
                .authed(|| self.api.post::<_, v1::Ack>("/v1/queue/ack", &ack, true))
                .await
            {
                tracing::debug!(error = %e, "ack failed; items will be redelivered and skipped");
            }
        }
        Ok(shown)
    }

    /// Processes one queue item and moves the cursor past it, in one local transaction.
    fn process_item(&self, item: &v1::QueueItem) -> Result<Vec<MessageView>, ClientError> {
        let conn = self.db();
        let outcome = {
            let tx = conn.unchecked_transaction()?;
            let provider = TxProvider::new(&self.crypto, &tx);
            let outcome = if item.kind == v1::ItemKind::Welcome as i32 {
                self.process_welcome(&provider, &tx, item)
            } else {
                self.process_group_message(&provider, &tx, item)
            };
            if let Outcome::Shown(views) = outcome {
                db::set_cursor(&tx, item.seq)?;
                tx.commit()?;
                return Ok(views);
            }
            // Whatever a rejected item did to MLS state is rolled back with this transaction.
            outcome
        };
        match outcome {
            Outcome::Failed(e) => Err(e),
            Outcome::Rejected(rejected) => {
                let tx = conn.unchecked_transaction()?;
                match &rejected {
                    Rejected::Unverifiable(reason) => {
                        tracing::warn!(seq = item.seq, %reason, "received item set aside as unverifiable");
                        db::insert_unverifiable(
                            &tx,
                            item.seq,
                            &item.group_id,
                            &item.sender_username,
                            reason,
                            now_ms(),
                        )?;
                    }
                    Rejected::Ignored(reason) => {
                        tracing::debug!(seq = item.seq, %reason, "received item skipped")
                    }
                }
                db::set_cursor(&tx, item.seq)?;
                tx.commit()?;
                Ok(Vec::new())
            }
            Outcome::Shown(_) => Ok(Vec::new()),
        }
    }

    fn process_welcome(
        &self,
        provider: &TxProvider<'_>,
        tx: &rusqlite::Connection,
        item: &v1::QueueItem,
    ) -> Outcome {
        // The server attaches the ratchet tree; the Welcome's signed GroupInfo pins its hash.
        let Ok(bundle) = v1::WelcomeBundle::decode(item.payload.as_slice()) else {
            return Outcome::Rejected(Rejected::Unverifiable(
                "welcome bundle does not parse".into(),
            ));
        };
        let welcome = match MlsMessageIn::tls_deserialize_exact(bundle.welcome.as_slice())
            .map(|m| m.extract())
        {
            Ok(MlsMessageBodyIn::Welcome(welcome)) => welcome,
            _ => return Outcome::Rejected(Rejected::Unverifiable("welcome does not parse".into())),
        };
        let Ok(tree) = RatchetTreeIn::tls_deserialize_exact(bundle.ratchet_tree.as_slice()) else {
            return Outcome::Rejected(Rejected::Unverifiable("ratchet tree does not parse".into()));
        };
        let staged =
            match StagedWelcome::new_from_welcome(provider, &join_config(), welcome, Some(tree)) {
                Ok(staged) => staged,
                Err(e) => {
                    return Outcome::Rejected(Rejected::Unverifiable(format!("cannot join: {e}")))
                }
            };
        // Who added us: the member whose signed GroupInfo the Welcome carries.
        let adder = staged
            .welcome_sender()
            .ok()
            .and_then(|leaf| DeviceIdentity::from_credential(leaf.credential()).ok());
        let group = match staged.into_group(provider) {
            Ok(group) => group,
            Err(e) => {
                return Outcome::Rejected(Rejected::Unverifiable(format!("cannot join: {e}")))
            }
        };
        if Roles::from_extensions(group.extensions()).is_err() {
            return Outcome::Rejected(Rejected::Unverifiable("group has no roles".into()));
        }
        // Every member must be certified by its account, under the key we pinned for it.
        let changed = match certify_members(group.members()) {
            Ok(members) => match self.pin_accounts(tx, &members, &[]) {
                Ok(changed) => changed,
                Err(e) => return Outcome::Failed(e),
            },
            Err(e) => return Outcome::Rejected(Rejected::Unverifiable(e.to_string())),
        };
        let group_id = group.group_id().as_slice().to_vec();
        // Parley group ids are 16 bytes; anything else did not come from a Parley client.
        if group_id.len() != parley_protocol::GroupId::LEN {
            return Outcome::Rejected(Rejected::Unverifiable("group id is not 16 bytes".into()));
        }
        if let Err(e) = db::insert_chat(
            tx,
            &group_id,
            ChatKind::Unknown,
            &hex::encode(&group_id[..4]),
            item.accepted_at_ms,
        ) {
            return Outcome::Failed(e);
        }
        let mut shown = match self.identity_notices(tx, &group_id, &changed, item) {
            Ok(views) => views,
            Err(e) => return Outcome::Failed(e),
        };
        let Some(adder) = adder.filter(|a| a.username != *self.username()) else {
            return Outcome::Shown(shown);
        };
        // A group we are back in is known by name: say so now. A new chat's kind and name
        // arrive next (GroupMeta); the notice waits for them, and a 1:1 chat shows none.
        let known = match db::chat(tx, &group_id) {
            Ok(chat) => chat.is_some_and(|c| c.kind == ChatKind::Group),
            Err(e) => return Outcome::Failed(e),
        };
        let row = notice_row(&group_id, &adder, Notice::Added, item, !known);
        match self.store_notice(tx, row) {
            Outcome::Shown(views) => {
                shown.extend(views);
                Outcome::Shown(shown)
            }
            other => other,
        }
    }

    /// A notice in the chat for each account whose key is not the one we pinned.
    fn identity_notices(
        &self,
        tx: &rusqlite::Connection,
        group_id: &[u8],
        changed: &[(parley_protocol::Username, Notice)],
        item: &v1::QueueItem,
    ) -> Result<Vec<MessageView>, ClientError> {
        let mut shown = Vec::new();
        for (username, notice) in changed {
            let actor = DeviceIdentity::new(username.clone(), DeviceId::from_bytes([0; 16]));
            let row = notice_row(group_id, &actor, *notice, item, false);
            match self.store_notice(tx, row) {
                Outcome::Shown(views) => shown.extend(views),
                Outcome::Failed(e) => return Err(e),
                Outcome::Rejected(_) => {}
            }
        }
        Ok(shown)
    }

    /// Stores a notice; shows it unless it waits hidden for the chat's name.
    fn store_notice(&self, tx: &rusqlite::Connection, row: db::MessageRow) -> Outcome {
        let hidden = row.hidden;
        if let Err(e) = db::insert_message(tx, &row) {
            return Outcome::Failed(e);
        }
        if hidden {
            return Outcome::Shown(Vec::new());
        }
        if let Err(e) = db::touch_chat(tx, &row.group_id, row.sent_at) {
            return Outcome::Failed(e);
        }
        match self.view_of(tx, row) {
            Ok(view) => Outcome::Shown(vec![view]),
            Err(e) => Outcome::Failed(e),
        }
    }

    fn process_group_message(
        &self,
        provider: &TxProvider<'_>,
        tx: &rusqlite::Connection,
        item: &v1::QueueItem,
    ) -> Outcome {
        let mut group = match load_group(provider, &item.group_id) {
            Ok(Some(group)) if group.is_active() => group,
            Ok(_) => return Outcome::Rejected(Rejected::Ignored("not a member of this group")),
            Err(e) => return Outcome::Failed(e),
        };
        // A disappearing message whose time came before we fetched it: the server overwrote it.
        if item.payload.iter().all(|b| *b == 0) {
            return Outcome::Rejected(Rejected::Ignored("disappeared before it was fetched"));
        }
        let message = match MlsMessageIn::tls_deserialize_exact(item.payload.as_slice())
            .ok()
            .and_then(|m| m.try_into_protocol_message().ok())
        {
            Some(message) => message,
            None => {
                return Outcome::Rejected(Rejected::Unverifiable("message does not parse".into()))
            }
        };
        let is_commit = message.content_type() == ContentType::Commit;
        if is_commit && message.epoch() < group.epoch() {
            return Outcome::Rejected(Rejected::Ignored("commit for a past epoch"));
        }
        let members_before: Vec<Member> = group.members().collect();
        let extensions_before = group.extensions().clone();
        let processed = match group.process_message(provider, message) {
            Ok(processed) => processed,
            Err(e) => {
                return Outcome::Rejected(Rejected::Unverifiable(format!("MLS rejected it: {e}")))
            }
        };
        let sender = match DeviceIdentity::from_credential(processed.credential()) {
            Ok(sender) => sender,
            Err(e) => return Outcome::Rejected(Rejected::Unverifiable(e.to_string())),
        };
        // The server's routing data must agree with what the sender signed.
        if sender.username.as_str() != item.sender_username
            || sender.device_id.as_bytes() != item.sender_device.as_slice()
        {
            return Outcome::Rejected(Rejected::Unverifiable(
                "sender does not match its credential".into(),
            ));
        }
        let aad = processed.aad().to_vec();
        let mls_sender = processed.sender().clone();
        match processed.into_content() {
            ProcessedMessageContent::ApplicationMessage(application) => {
                self.accept_application(tx, &group, item, &sender, &aad, application.into_bytes())
            }
            ProcessedMessageContent::StagedCommitMessage(staged) => {
                let rotations = match rotations_in_aad(&aad) {
                    Ok(rotations) => rotations,
                    Err(e) => return Outcome::Rejected(Rejected::Unverifiable(e.to_string())),
                };
                if let Err(e) = authorize_commit(
                    members_before.into_iter(),
                    &extensions_before,
                    &mls_sender,
                    &staged,
                    &rotations,
                ) {
                    return Outcome::Rejected(Rejected::Unverifiable(format!(
                        "commit breaks the group's rules: {e}"
                    )));
                }
                // authorize_commit verified the newcomers' certificates; their keys must also be
                // the ones we pinned.
                let newcomers: Vec<CertifiedDevice> = introduced_leaves(&staged)
                    .filter_map(|leaf| CertifiedDevice::verify_leaf(leaf).ok())
                    .collect();
                let changed = match self.pin_accounts(tx, &newcomers, &rotations) {
                    Ok(changed) => changed,
                    Err(e) => return Outcome::Failed(e),
                };
                // A device joins by itself only under the key we pinned for its account: after
                // a rotation, the old key (which a revoked device knew) brings nobody in, even
                // while some of the account's leaves still carry it.
                // The same for a leaf re-certified along a chain: it must land on our pin.
                if (matches!(mls_sender, Sender::NewMemberCommit) || !rotations.is_empty())
                    && changed.iter().any(|(_, n)| *n == Notice::IdentityChanged)
                {
                    return Outcome::Rejected(Rejected::Unverifiable(
                        "a leaf joins or is re-certified under another account key than the \
                         pinned one"
                            .into(),
                    ));
                }
                for newcomer in &newcomers {
                    match db::is_revoked(
                        tx,
                        newcomer.identity.username.as_str(),
                        newcomer.identity.device_id.as_bytes(),
                    ) {
                        Ok(false) => {}
                        Ok(true) => {
                            return Outcome::Rejected(Rejected::Unverifiable(
                                "commit brings back a device its account revoked".into(),
                            ))
                        }
                        Err(e) => return Outcome::Failed(e),
                    }
                }
                // The server stays the group's external sender (moderation relies on it).
                if extensions_before.external_senders()
                    != staged.group_context().extensions().external_senders()
                {
                    return Outcome::Rejected(Rejected::Unverifiable(
                        "commit changes the group's external senders".into(),
                    ));
                }
                let removed = staged.self_removed();
                let own = group.own_leaf_index();
                // Who wanted us out: a member's own leave proposal, the server's moderators (an
                // external proposal), or else the member who committed the removal.
                let proposer = staged
                    .remove_proposals()
                    .find(|p| p.remove_proposal().removed() == own)
                    .map(|p| p.sender().clone());
                if let Err(e) = group.merge_staged_commit(provider, *staged) {
                    return Outcome::Failed(mls_error(e));
                }
                if !removed {
                    return match self.identity_notices(tx, &item.group_id, &changed, item) {
                        Ok(views) => Outcome::Shown(views),
                        Err(e) => Outcome::Failed(e),
                    };
                }
                if let Err(e) = group.delete(provider.storage()) {
                    return Outcome::Failed(mls_error(e));
                }
                if let Err(e) = db::set_chat_state(tx, &item.group_id, ChatState::Removed) {
                    return Outcome::Failed(e);
                }
                let notice = match proposer {
                    Some(Sender::Member(leaf)) if leaf == own => return Outcome::Shown(Vec::new()),
                    Some(Sender::External(_)) => Notice::RemovedByModerators,
                    _ => Notice::Removed,
                };
                let row = notice_row(&item.group_id, &sender, notice, item, false);
                self.store_notice(tx, row)
            }
            ProcessedMessageContent::ProposalMessage(proposal) => {
                // A member may propose its own removal (leaving); the server, as external
                // sender, may propose removing a suspended account. Both get committed.
                let allowed = matches!(
                    (proposal.proposal(), proposal.sender()),
                    (Proposal::Remove(remove), Sender::Member(leaf)) if remove.removed() == *leaf
                ) || matches!(
                    (proposal.proposal(), proposal.sender()),
                    (Proposal::Remove(_), Sender::External(_))
                );
                if !allowed {
                    return Outcome::Rejected(Rejected::Unverifiable(
                        "only leaving, or a removal by the server, may be proposed".into(),
                    ));
                }
                match group.store_pending_proposal(provider.storage(), *proposal) {
                    Ok(()) => Outcome::Shown(Vec::new()),
                    Err(e) => Outcome::Failed(mls_error(e)),
                }
            }
            _ => Outcome::Rejected(Rejected::Ignored("not a message for this device")),
        }
    }

    /// Verifies an application payload (franking tag, sender) and stores it, once.
    fn accept_application(
        &self,
        tx: &rusqlite::Connection,
        group: &MlsGroup,
        item: &v1::QueueItem,
        sender: &DeviceIdentity,
        aad: &[u8],
        plaintext: Vec<u8>,
    ) -> Outcome {
        let Ok(payload) = v1::AppPayload::decode(plaintext.as_slice()) else {
            return Outcome::Rejected(Rejected::Unverifiable("payload does not parse".into()));
        };
        let Ok(aad_fields) = v1::MessageAad::decode(aad) else {
            return Outcome::Rejected(Rejected::Unverifiable(
                "authenticated data does not parse".into(),
            ));
        };
        // A message whose franking tag does not match could never be reported: not shown.
        if payload.salt.len() != franking::SALT_LEN
            || !franking::verify_franking_tag(&payload.salt, &plaintext, &aad_fields.franking_tag)
        {
            return Outcome::Rejected(Rejected::Unverifiable(
                "franking tag does not verify".into(),
            ));
        }
        if payload.sender_username != sender.username.as_str()
            || DeviceId::from_slice(&payload.sender_device).ok() != Some(sender.device_id)
        {
            return Outcome::Rejected(Rejected::Unverifiable(
                "payload names another sender".into(),
            ));
        }
        match db::is_revoked(tx, sender.username.as_str(), sender.device_id.as_bytes()) {
            Ok(false) => {}
            Ok(true) => {
                return Outcome::Rejected(Rejected::Unverifiable(
                    "sent by a device its account revoked".into(),
                ))
            }
            Err(e) => return Outcome::Failed(e),
        }
        let group_id = group.group_id().as_slice().to_vec();
        let blocked = match db::is_blocked(tx, sender.username.as_str()) {
            Ok(blocked) => blocked,
            Err(e) => return Outcome::Failed(e),
        };
        let mut revealed = Vec::new();
        // An edit, delete or reaction: kept (as evidence) but not shown itself; the message it
        // refers to shows the change.
        let mut refers_to = None;
        let mut by_admin = false;
        let (text, hidden) = match payload.body {
            // Messages from blocked accounts are kept (they can still be reported) but not shown.
            Some(v1::app_payload::Body::Text(body)) => {
                if let Err(why) = crate::attachments::check_attachments(&body.attachments) {
                    return Outcome::Rejected(Rejected::Unverifiable(why));
                }
                // One ciphertext opens to one file: a second key for it is an attack (the
                // "invisible salamander"), and the message is refused.
                for attachment in &body.attachments {
                    match db::bind_attachment_key(tx, attachment) {
                        Ok(true) => {}
                        Ok(false) => {
                            return Outcome::Rejected(Rejected::Unverifiable(
                                "names a known file's ciphertext under another key".into(),
                            ))
                        }
                        Err(e) => return Outcome::Failed(e),
                    }
                }
                (body.text, blocked)
            }
            Some(v1::app_payload::Body::Edit(v1::EditBody { target, text }))
                if target.len() == 16
                    && !text.trim().is_empty()
                    && text.len() <= parley_protocol::limits::MAX_TEXT_BYTES =>
            {
                refers_to = Some(target);
                (String::new(), true)
            }
            Some(v1::app_payload::Body::Delete(v1::DeleteBody { target }))
                if target.len() == 16 =>
            {
                by_admin = match crate::groups::admin_of_group(tx, group, &sender.username) {
                    Ok(admin) => admin,
                    Err(e) => return Outcome::Failed(e),
                };
                refers_to = Some(target);
                (String::new(), true)
            }
            Some(v1::app_payload::Body::Reaction(reaction))
                if reaction.target.len() == 16 && is_reaction(&reaction.emoji) =>
            {
                refers_to = Some(reaction.target);
                (String::new(), true)
            }
            Some(
                v1::app_payload::Body::Edit(_)
                | v1::app_payload::Body::Delete(_)
                | v1::app_payload::Body::Reaction(_),
            ) => {
                return Outcome::Rejected(Rejected::Unverifiable(
                    "malformed edit, delete or reaction".into(),
                ))
            }
            Some(v1::app_payload::Body::Meta(meta)) => {
                let (kind, name) = if meta.kind == v1::ChatKind::Direct as i32 {
                    // A 1:1 chat is named after the other account, also when another device
                    // of ours started it.
                    let peer = group
                        .members()
                        .filter_map(|m| DeviceIdentity::from_credential(&m.credential).ok())
                        .map(|id| id.username)
                        .find(|u| u != self.username())
                        .unwrap_or_else(|| sender.username.clone());
                    (ChatKind::Direct, peer.to_string())
                } else {
                    match parse_group_name(&meta.name) {
                        Ok(name) => (ChatKind::Group, name),
                        Err(_) => {
                            return Outcome::Rejected(Rejected::Unverifiable(
                                "invalid group name".into(),
                            ))
                        }
                    }
                };
                // A chat's kind is set once; "direct" only fits a group of two people.
                let people: std::collections::BTreeSet<String> = group
                    .members()
                    .filter_map(|m| DeviceIdentity::from_credential(&m.credential).ok())
                    .map(|id| id.username.to_string())
                    .collect();
                let current = match db::chat(tx, &group_id) {
                    Ok(chat) => chat.map(|c| c.kind),
                    Err(e) => return Outcome::Failed(e),
                };
                let fits = match kind {
                    ChatKind::Direct => people.len() == 2,
                    _ => true,
                };
                if !fits || current.is_some_and(|c| c != ChatKind::Unknown && c != kind) {
                    return Outcome::Rejected(Rejected::Unverifiable(
                        "chat metadata does not fit the group".into(),
                    ));
                }
                if let Err(e) = db::set_chat_meta(tx, &group_id, kind, &name) {
                    return Outcome::Failed(e);
                }
                // A new group's name is known now: "alice added you to #team" can be shown.
                if current == Some(ChatKind::Unknown) && kind == ChatKind::Group {
                    match db::reveal_notices(tx, &group_id) {
                        Ok(rows) => {
                            for row in rows {
                                match self.view_of(tx, row) {
                                    Ok(view) => revealed.push(view),
                                    Err(e) => return Outcome::Failed(e),
                                }
                            }
                        }
                        Err(e) => return Outcome::Failed(e),
                    }
                }
                (String::new(), true)
            }
            // Kept like any message (it is evidence too), never shown.
            Some(v1::app_payload::Body::Revoked(revoked)) => {
                if let Err(why) = self.accept_revocation(tx, &sender.username, &revoked) {
                    return Outcome::Rejected(Rejected::Unverifiable(format!(
                        "device revocation: {why}"
                    )));
                }
                (String::new(), true)
            }
            // Receipts and settings change state, not the log: no row of their own.
            Some(v1::app_payload::Body::Receipt(receipt)) => {
                let own = sender.username == *self.username();
                return match crate::presence::accept_receipt(
                    tx,
                    group,
                    sender.username.as_str(),
                    own,
                    &receipt,
                    item.group_seq,
                ) {
                    Ok(()) => {
                        // Nobody listening: nothing to do.
                        let _ = self.live.changed.send(());
                        Outcome::Shown(Vec::new())
                    }
                    Err(why) => Outcome::Rejected(Rejected::Unverifiable(why)),
                };
            }
            Some(v1::app_payload::Body::Settings(ref settings)) => {
                let own = sender.username == *self.username();
                return match crate::presence::accept_settings(
                    tx,
                    group,
                    sender,
                    own,
                    settings,
                    &payload,
                    item.group_seq,
                    item.accepted_at_ms,
                ) {
                    Ok(None) => Outcome::Shown(Vec::new()),
                    Ok(Some(line)) => match self.view_of(tx, line) {
                        Ok(view) => Outcome::Shown(vec![view]),
                        Err(e) => Outcome::Failed(e),
                    },
                    Err(why) => Outcome::Rejected(Rejected::Unverifiable(why)),
                };
            }
            None => return Outcome::Rejected(Rejected::Ignored("empty payload")),
        };
        if payload.message_id.len() != 16 {
            return Outcome::Rejected(Rejected::Unverifiable("bad message id".into()));
        }
        let row = db::MessageRow {
            id: payload.message_id,
            group_id: group_id.clone(),
            sender: sender.username.to_string(),
            sender_device: sender.device_id.to_vec(),
            text,
            sent_at: payload.sent_at_ms,
            received_at: now_ms(),
            group_seq: Some(item.group_seq),
            // Sent from another device of ours: ours, as sent.
            status: if sender.username == *self.username() {
                MessageStatus::Sent
            } else {
                MessageStatus::Received
            },
            payload: plaintext,
            aad: aad.to_vec(),
            hidden,
            notice: None,
            history: false,
        };
        let inserted = db::insert_message(tx, &row);
        if let Ok(true) = inserted {
            if let Err(e) = db::index_references(tx, &row.id, &row.payload, by_admin) {
                return Outcome::Failed(e);
            }
            // Under the chat's timer as it stood at the message's position.
            if let Err(e) =
                db::set_expiry(tx, &row.id, &group_id, item.group_seq, item.accepted_at_ms)
            {
                return Outcome::Failed(e);
            }
        }
        if let (Ok(true), Some(franking)) = (&inserted, &item.franking) {
            let franked = db::Franked {
                accepted_at: item.accepted_at_ms,
                frank: franking.frank.clone(),
                key_id: franking.key_id,
            };
            if let Err(e) = db::set_franking(tx, &row.id, &franked) {
                return Outcome::Failed(e);
            }
        }
        match inserted {
            Ok(true) if !hidden => {
                if let Err(e) = db::touch_chat(tx, &group_id, row.sent_at) {
                    return Outcome::Failed(e);
                }
                match self.view_of(tx, row) {
                    Ok(view) => Outcome::Shown(vec![view]),
                    Err(e) => Outcome::Failed(e),
                }
            }
            // What an edit, delete or reaction changed: the message it refers to, when this
            // device has it and shows it.
            Ok(true) if refers_to.is_some() => {
                let target = refers_to.as_deref().unwrap_or_default();
                match db::message(tx, target) {
                    Ok(Some(target)) if !target.hidden && target.notice.is_none() => {
                        match self.view_of(tx, target) {
                            Ok(view) => Outcome::Shown(vec![view]),
                            Err(e) => Outcome::Failed(e),
                        }
                    }
                    Ok(_) => Outcome::Shown(Vec::new()),
                    Err(e) => Outcome::Failed(e),
                }
            }
            // A redelivered message, or metadata (and the notices it revealed).
            Ok(_) => Outcome::Shown(revealed),
            Err(e) => Outcome::Failed(e),
        }
    }
}

/// A notice of what `actor` did to us in a group, at the time the server accepted it. Its id is
/// derived from the queue item, so that it is stored once.
fn notice_row(
    group_id: &[u8],
    actor: &DeviceIdentity,
    notice: Notice,
    item: &v1::QueueItem,
    hidden: bool,
) -> db::MessageRow {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    hasher.update(b"parley/v1/notice\0");
    hasher.update(group_id);
    hasher.update(notice.as_str());
    hasher.update(item.seq.to_be_bytes());
    if matches!(notice, Notice::IdentityChanged | Notice::KeyRotated) {
        // One item can change several accounts' keys: one notice each.
        hasher.update(actor.username.as_str());
    }
    let id = hasher.finalize()[..16].to_vec();
    db::MessageRow {
        id,
        group_id: group_id.to_vec(),
        sender: actor.username.to_string(),
        sender_device: actor.device_id.to_vec(),
        text: String::new(),
        sent_at: item.accepted_at_ms,
        received_at: now_ms(),
        group_seq: None,
        status: MessageStatus::Received,
        payload: Vec::new(),
        aad: Vec::new(),
        hidden,
        notice: Some(notice),
        history: false,
    }
}

/// One emoji as a reaction: not empty, short, no spaces or control characters.
pub(crate) fn is_reaction(emoji: &str) -> bool {
    !emoji.is_empty()
        && emoji.len() <= parley_protocol::limits::MAX_REACTION_BYTES
        && !emoji.chars().any(|c| c.is_whitespace() || c.is_control())
}
