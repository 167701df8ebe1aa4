//! Sending: application messages, group changes (commits), and the outbox that carries both to
//! the server until it acknowledges them.
//!
//! A commit stays pending in openmls until the server accepts it; then it is merged. If another
//! member's commit won the epoch, ours is discarded (`clear_pending_commit`), the winner is
//! fetched and merged, and the change is built again on top of it.

use openmls::prelude::tls_codec::{Deserialize as _, Serialize as _};
use openmls::prelude::*;
use parley_mls::{franking, DeviceIdentity, Roles};
use parley_protocol::{v1, ErrorCode, MessageId, Username};
use prost::Message as _;
use rand::RngCore;

use crate::db::{self, ChatKind, ChatState, MessageStatus, OutboxKind};
use crate::provider::TxProvider;
use crate::views::MessageView;
use crate::{mls_error, now_ms, ChatRef, Client, ClientError};

/// Most members added by one commit (a post-quantum KeyPackage is about 2.7 KB).
const MAX_ADDS_PER_COMMIT: usize = 1000;
/// How often a change is rebuilt after losing its epoch to a concurrent commit.
const MAX_EPOCH_RETRIES: usize = 10;
/// Past epochs whose message keys a member keeps, for messages that were sent just before a
/// commit it already merged.
const MAX_PAST_EPOCHS: usize = 8;

fn random_id() -> MessageId {
    let mut bytes = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    MessageId::from_bytes(bytes)
}

pub(crate) fn wire_format_policy() -> WireFormatPolicy {
    // Handshake messages go out as PublicMessages so that the Delivery Service can validate them
    // and learn membership; application messages are always PrivateMessages.
    MIXED_PLAINTEXT_WIRE_FORMAT_POLICY
}

pub(crate) fn join_config() -> MlsGroupJoinConfig {
    MlsGroupJoinConfig::builder()
        .wire_format_policy(wire_format_policy())
        .use_ratchet_tree_extension(false)
        .max_past_epochs(MAX_PAST_EPOCHS)
        .sender_ratchet_configuration(SenderRatchetConfiguration::new(100, 10_000))
        .build()
}

fn is_wrong_epoch(error: &ClientError) -> bool {
    error.server_code() == Some(ErrorCode::WrongEpoch)
}

/// The group, if we are still an active member of it.
pub(crate) fn load_active_group(
    provider: &TxProvider<'_>,
    group_id: &[u8],
) -> Result<MlsGroup, ClientError> {
    match load_group(provider, group_id)? {
        Some(group) if group.is_active() => Ok(group),
        _ => Err(ClientError::Invalid(
            "you are no longer a member of this chat".into(),
        )),
    }
}

pub(crate) fn load_group(
    provider: &TxProvider<'_>,
    group_id: &[u8],
) -> Result<Option<MlsGroup>, ClientError> {
    MlsGroup::load(provider.storage(), &GroupId::from_slice(group_id)).map_err(mls_error)
}

impl Client {
    fn create_config(&self, server: ExternalSender) -> Result<MlsGroupCreateConfig, ClientError> {
        let roles = Roles::with_admin(self.identity.username.clone());
        let extensions =
            parley_mls::suite::group_context_extensions(&roles, Some(server)).map_err(mls_error)?;
        Ok(MlsGroupCreateConfig::builder()
            .ciphersuite(self.ciphersuite)
            .wire_format_policy(wire_format_policy())
            .use_ratchet_tree_extension(false)
            .max_past_epochs(MAX_PAST_EPOCHS)
            .sender_ratchet_configuration(SenderRatchetConfiguration::new(100, 10_000))
            .capabilities(parley_mls::suite::leaf_capabilities(self.ciphersuite))
            .with_group_context_extensions(extensions)
            .build())
    }

    /// The group behind a chat name, if it is active.
    pub(crate) fn resolve_chat(&self, chat: &ChatRef) -> Result<Option<Vec<u8>>, ClientError> {
        let conn = self.db();
        let row = match chat {
            ChatRef::Direct(peer) => db::find_chat(&conn, ChatKind::Direct, peer.as_str())?,
            ChatRef::Group(name) => db::find_chat(&conn, ChatKind::Group, name)?,
        };
        Ok(row.map(|r| r.group_id))
    }

    fn require_group(&self, chat: &ChatRef) -> Result<Vec<u8>, ClientError> {
        self.resolve_chat(chat)?
            .ok_or_else(|| ClientError::UnknownChat(chat.to_string()))
    }

    /// Sends a text message. A 1:1 chat is created on first use; the peer may be offline.
    /// Returns the message as stored locally; its status says whether the server has it yet.
    pub async fn send_text(&self, chat: &ChatRef, text: &str) -> Result<MessageView, ClientError> {
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
        // Our earlier group changes must be settled before new messages are encrypted.
        self.settle_pending_changes(&group_id).await?;
        let body = v1::app_payload::Body::Text(v1::TextBody {
            text: text.to_owned(),
            ..Default::default()
        });
        let message_id = self.queue_application(&group_id, body, true)?;
        match self.flush_outbox().await {
            Ok(()) => {}
            Err(e) if e.is_transient() => {
                tracing::info!(error = %e, "message queued; will retry");
            }
            Err(e) => return Err(e),
        }
        let conn = self.db();
        let row = db::message(&conn, message_id.as_bytes())?
            .ok_or_else(|| ClientError::Protocol("sent message vanished".into()))?;
        self.view_of(&conn, row)
    }

    /// Flushes group changes of ours still in the outbox for this group.
    async fn settle_pending_changes(&self, group_id: &[u8]) -> Result<(), ClientError> {
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
        let message_id = random_id();
        let mut salt = [0u8; franking::SALT_LEN];
        rand::rngs::OsRng.fill_bytes(&mut salt);
        let sent_at = now_ms();
        let text = match &body {
            v1::app_payload::Body::Text(t) => t.text.clone(),
            v1::app_payload::Body::Meta(_) => String::new(),
        };
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
                payload,
                aad,
                // Chat metadata is kept (re-encryption reads it) but never shown.
                hidden: !log,
            },
        )?;
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

    /// Submits everything in the outbox, in order. Stops at the first transient failure (the
    /// rest waits for the next attempt, keeping order); a permanent refusal drops that entry
    /// and is returned after the others were tried.
    pub async fn flush_outbox(&self) -> Result<(), ClientError> {
        if db::outbox_is_empty(&self.db())? {
            return Ok(());
        }
        let _one_at_a_time = self.flush_lock.lock().await;
        let mut first_error = None;
        let rows = db::outbox(&self.db())?;
        for row in rows {
            let mut epoch_retries = 0;
            loop {
                let current = db::outbox_entry(&self.db(), row.seq)?;
                let Some(current) = current else { break };
                let submit = v1::Submit {
                    message_id: current.message_id.clone(),
                    mls_message: current.mls.clone(),
                    welcome: current.welcome.clone(),
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
                    }
                }
            }
            OutboxKind::Application => {
                db::set_message_sent(&tx, &row.message_id, accepted.group_seq)?
            }
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

    /// Builds a commit with `build`, submits it, and merges it once accepted. When another
    /// commit won the epoch, fetches it and builds again.
    pub(crate) async fn run_commit<F>(&self, group_id: &[u8], build: F) -> Result<(), ClientError>
    where
        F: Fn(
            &mut MlsGroup,
            &TxProvider<'_>,
        ) -> Result<(MlsMessageOut, Option<MlsMessageOut>), ClientError>,
    {
        for _ in 0..MAX_EPOCH_RETRIES {
            // Nothing of ours may be queued ahead of the commit (see `settle_own_commits`).
            self.flush_outbox().await?;
            let built_at = {
                let conn = self.db();
                let tx = conn.unchecked_transaction()?;
                let provider = TxProvider::new(&self.crypto, &tx);
                let mut group = load_active_group(&provider, group_id)?;
                let (commit, welcome) = build(&mut group, &provider)?;
                let welcome = welcome
                    .map(|w| w.to_bytes())
                    .transpose()
                    .map_err(mls_error)?;
                db::push_outbox(
                    &tx,
                    random_id().as_bytes(),
                    group_id,
                    OutboxKind::Commit,
                    &commit.to_bytes().map_err(mls_error)?,
                    welcome.as_deref(),
                    group.epoch().as_u64(),
                )?;
                tx.commit()?;
                group.epoch().as_u64()
            };
            match self.flush_outbox().await {
                // Merged only if the server accepted it; a change discarded on the way (lost
                // its epoch) is built again.
                Ok(()) if self.epoch_of(group_id)? > built_at => return Ok(()),
                Ok(()) => self.receive().await.map(|_| ())?,
                Err(e) if is_wrong_epoch(&e) => {
                    self.receive().await?;
                    continue;
                }
                Err(e) => return Err(e),
            }
        }
        Err(ClientError::Invalid(
            "the group is changing too fast; try again".into(),
        ))
    }

    fn epoch_of(&self, group_id: &[u8]) -> Result<u64, ClientError> {
        let conn = self.db();
        let provider = TxProvider::new(&self.crypto, &conn);
        Ok(load_group(&provider, group_id)?.map_or(0, |g| g.epoch().as_u64()))
    }

    /// Claims one KeyPackage per device of each user and checks each one.
    async fn claim_key_packages(&self, users: &[Username]) -> Result<Vec<KeyPackage>, ClientError> {
        let request = v1::ClaimKeyPackages {
            usernames: users.iter().map(|u| u.to_string()).collect(),
        };
        let claimed: v1::ClaimResponse = self
            .authed(|| self.api.post("/v1/keypackages/claim", &request, true))
            .await?;
        let mut packages = Vec::new();
        for claimed in claimed.key_packages {
            let package = KeyPackageIn::tls_deserialize_exact(claimed.key_package.as_slice())
                .map_err(|_| ClientError::Protocol("claimed key package does not parse".into()))?
                .validate(&self.crypto, ProtocolVersion::Mls10)
                .map_err(|e| {
                    ClientError::Protocol(format!("claimed key package does not verify: {e}"))
                })?;
            let identity = DeviceIdentity::from_credential(package.leaf_node().credential())
                .map_err(|e| ClientError::Protocol(e.to_string()))?;
            if identity.username.as_str() != claimed.username
                || identity.device_id.as_bytes() != claimed.device_id.as_slice()
            {
                return Err(ClientError::Protocol(
                    "claimed key package belongs to someone else".into(),
                ));
            }
            if package.ciphersuite() != self.ciphersuite {
                return Err(ClientError::Protocol(format!(
                    "{} uses another ciphersuite ({:?})",
                    claimed.username,
                    package.ciphersuite()
                )));
            }
            packages.push(package);
        }
        Ok(packages)
    }

    /// Creates a group holding us, tells the server about it, adds `members`, and sends the
    /// chat's metadata encrypted.
    async fn create_group_with(
        &self,
        kind: ChatKind,
        name: &str,
        members: &[Username],
    ) -> Result<Vec<u8>, ClientError> {
        let key_packages = self.claim_key_packages(members).await?;
        let config = self.create_config(self.server_as_external_sender().await?)?;
        let group_id = random_id().to_vec();
        let (group_info, ratchet_tree) = {
            let conn = self.db();
            let tx = conn.unchecked_transaction()?;
            let provider = TxProvider::new(&self.crypto, &tx);
            let group = MlsGroup::new_with_group_id(
                &provider,
                &self.signer,
                &config,
                GroupId::from_slice(&group_id),
                self.credential(),
            )
            .map_err(mls_error)?;
            let group_info = group
                .export_group_info(provider.crypto(), &self.signer, false)
                .map_err(mls_error)?
                .to_bytes()
                .map_err(mls_error)?;
            let ratchet_tree = group
                .export_ratchet_tree()
                .tls_serialize_detached()
                .map_err(mls_error)?;
            db::insert_chat(&tx, &group_id, kind, name, now_ms())?;
            tx.commit()?;
            (group_info, ratchet_tree)
        };
        let create = v1::CreateGroup {
            group_info,
            ratchet_tree,
        };
        match self
            .authed(|| {
                self.api
                    .post::<_, v1::CreateGroupResponse>("/v1/groups", &create, true)
            })
            .await
        {
            Ok(_) => {}
            // A retry after a lost answer: the group is ours (its id is random).
            Err(e) if e.server_code() == Some(ErrorCode::GroupExists) => {}
            Err(e) => {
                self.forget_group(&group_id)?;
                return Err(e);
            }
        }
        self.commit_adds(&group_id, &key_packages).await?;
        self.send_meta(&group_id, kind, name).await?;
        Ok(group_id)
    }

    /// Adds members in commits of at most [`MAX_ADDS_PER_COMMIT`], which keeps each commit under
    /// the server's message size limit.
    async fn commit_adds(
        &self,
        group_id: &[u8],
        key_packages: &[KeyPackage],
    ) -> Result<(), ClientError> {
        for chunk in key_packages.chunks(MAX_ADDS_PER_COMMIT) {
            self.run_commit(group_id, |group, provider| {
                let (commit, welcome, _) = group
                    .add_members(provider, &self.signer, chunk)
                    .map_err(mls_error)?;
                Ok((commit, Some(welcome)))
            })
            .await?;
        }
        Ok(())
    }

    /// The server's external-sender identity, which every new group lists (moderation).
    async fn server_as_external_sender(&self) -> Result<ExternalSender, ClientError> {
        let info: v1::ServerInfo = self.api.get_public("/v1/info").await?;
        let identity = DeviceIdentity::parse(&info.external_sender_identity)
            .map_err(|e| ClientError::Protocol(format!("server identity: {e}")))?;
        if identity.username.as_str() != "parley" || info.external_sender_key.len() != 32 {
            return Err(ClientError::Protocol(
                "the server's external-sender identity is malformed".into(),
            ));
        }
        Ok(ExternalSender::new(
            info.external_sender_key.into(),
            identity.to_credential(),
        ))
    }

    fn forget_group(&self, group_id: &[u8]) -> Result<(), ClientError> {
        let conn = self.db();
        let tx = conn.unchecked_transaction()?;
        let provider = TxProvider::new(&self.crypto, &tx);
        if let Some(mut group) = load_group(&provider, group_id)? {
            group.delete(provider.storage()).map_err(mls_error)?;
        }
        db::set_chat_state(&tx, group_id, ChatState::Removed)?;
        tx.commit()?;
        Ok(())
    }

    /// Sends the chat's kind and name, encrypted, so that members who just joined learn them.
    async fn send_meta(
        &self,
        group_id: &[u8],
        kind: ChatKind,
        name: &str,
    ) -> Result<(), ClientError> {
        let meta = v1::GroupMeta {
            kind: match kind {
                ChatKind::Direct => v1::ChatKind::Direct as i32,
                _ => v1::ChatKind::Group as i32,
            },
            name: if kind == ChatKind::Direct {
                String::new()
            } else {
                name.to_owned()
            },
        };
        self.queue_application(group_id, v1::app_payload::Body::Meta(meta), false)?;
        match self.flush_outbox().await {
            Err(e) if !e.is_transient() => Err(e),
            _ => Ok(()),
        }
    }

    /// Creates a group chat named `name` with us as admin and `members` in it.
    pub async fn create_group(&self, name: &str, members: &[Username]) -> Result<(), ClientError> {
        let name = crate::parse_group_name(name)?;
        if members.iter().any(|m| m == self.username()) {
            return Err(ClientError::Invalid(
                "you are in the group already; list the others".into(),
            ));
        }
        self.create_group_with(ChatKind::Group, &name, members)
            .await?;
        Ok(())
    }

    fn member_usernames(
        &self,
        group_id: &[u8],
    ) -> Result<Vec<(LeafNodeIndex, Username)>, ClientError> {
        let conn = self.db();
        let provider = TxProvider::new(&self.crypto, &conn);
        let group = load_group(&provider, group_id)?
            .ok_or_else(|| ClientError::Invalid("not a member".into()))?;
        group
            .members()
            .map(|m| {
                DeviceIdentity::from_credential(&m.credential)
                    .map(|id| (m.index, id.username))
                    .map_err(|e| ClientError::Protocol(e.to_string()))
            })
            .collect()
    }

    /// Adds users (all their devices) to a group. Any member may add.
    pub async fn add_members(&self, name: &str, users: &[Username]) -> Result<(), ClientError> {
        let chat = ChatRef::Group(crate::parse_group_name(name)?);
        let group_id = self.require_group(&chat)?;
        let present = self.member_usernames(&group_id)?;
        let new: Vec<Username> = users
            .iter()
            .filter(|u| !present.iter().any(|(_, p)| p == *u))
            .cloned()
            .collect();
        if new.is_empty() {
            return Err(ClientError::Invalid("they are all members already".into()));
        }
        let key_packages = self.claim_key_packages(&new).await?;
        self.commit_adds(&group_id, &key_packages).await?;
        self.send_meta(&group_id, ChatKind::Group, &crate::parse_group_name(name)?)
            .await
    }

    /// Removes users (all their devices) from a group. Only admins may remove others.
    pub async fn remove_members(&self, name: &str, users: &[Username]) -> Result<(), ClientError> {
        let chat = ChatRef::Group(crate::parse_group_name(name)?);
        let group_id = self.require_group(&chat)?;
        self.run_commit(&group_id, |group, provider| {
            let leaves: Vec<LeafNodeIndex> = group
                .members()
                .filter(|m| {
                    DeviceIdentity::from_credential(&m.credential)
                        .is_ok_and(|id| users.contains(&id.username))
                })
                .map(|m| m.index)
                .collect();
            if leaves.is_empty() {
                return Err(ClientError::Invalid("none of them is a member".into()));
            }
            let roles = Roles::from_extensions(group.extensions()).map_err(mls_error)?;
            if !roles.is_admin(self.username()) {
                return Err(ClientError::Invalid(
                    "only an admin may remove members".into(),
                ));
            }
            let (commit, welcome, _) = group
                .remove_members(provider, &self.signer, &leaves)
                .map_err(mls_error)?;
            Ok((commit, welcome))
        })
        .await
    }

    /// Makes a member an admin. Only admins may.
    pub async fn make_admin(&self, name: &str, user: &Username) -> Result<(), ClientError> {
        let chat = ChatRef::Group(crate::parse_group_name(name)?);
        let group_id = self.require_group(&chat)?;
        self.run_commit(&group_id, |group, provider| {
            let roles = Roles::from_extensions(group.extensions()).map_err(mls_error)?;
            if !roles.is_admin(self.username()) {
                return Err(ClientError::Invalid(
                    "only an admin may appoint admins".into(),
                ));
            }
            let is_member = group.members().any(|m| {
                DeviceIdentity::from_credential(&m.credential).is_ok_and(|id| id.username == *user)
            });
            if !is_member {
                return Err(ClientError::Invalid(format!("{user} is not a member")));
            }
            let mut extensions = group.extensions().clone();
            extensions
                .add_or_replace(roles.with_added_admin(user.clone()).to_extension())
                .map_err(mls_error)?;
            let (commit, welcome, _) = group
                .update_group_context_extensions(provider, extensions, &self.signer)
                .map_err(mls_error)?;
            Ok((commit, welcome))
        })
        .await
    }

    /// Leaves a group: proposes our own removal, which the next member online commits.
    pub async fn leave_group(&self, name: &str) -> Result<(), ClientError> {
        let chat = ChatRef::Group(crate::parse_group_name(name)?);
        let group_id = self.require_group(&chat)?;
        for _ in 0..MAX_EPOCH_RETRIES {
            self.settle_pending_changes(&group_id).await?;
            {
                let conn = self.db();
                let tx = conn.unchecked_transaction()?;
                let provider = TxProvider::new(&self.crypto, &tx);
                let mut group = load_active_group(&provider, &group_id)?;
                let proposal = group
                    .leave_group(&provider, &self.signer)
                    .map_err(mls_error)?;
                db::push_outbox(
                    &tx,
                    random_id().as_bytes(),
                    &group_id,
                    OutboxKind::Proposal,
                    &proposal.to_bytes().map_err(mls_error)?,
                    None,
                    group.epoch().as_u64(),
                )?;
                db::set_chat_state(&tx, &group_id, ChatState::Leaving)?;
                tx.commit()?;
            }
            match self.flush_outbox().await {
                Ok(()) => return Ok(()),
                Err(e) if is_wrong_epoch(&e) => {
                    self.receive().await?;
                    continue;
                }
                Err(e) => return Err(e),
            }
        }
        Err(ClientError::Invalid(
            "the group is changing too fast; try again".into(),
        ))
    }

    /// Commits proposals other members left for us to commit (members leaving).
    pub(crate) async fn commit_pending_proposals(&self) -> Result<(), ClientError> {
        let groups: Vec<Vec<u8>> = {
            let conn = self.db();
            let provider = TxProvider::new(&self.crypto, &conn);
            let mut waiting = Vec::new();
            for chat in db::all_chats(&conn)?
                .into_iter()
                .filter(|c| c.state == ChatState::Active)
            {
                if let Some(group) = load_group(&provider, &chat.group_id)? {
                    let own = group.own_leaf_index();
                    let others_pending = group
                        .pending_proposals()
                        .any(|p| !matches!(p.sender(), Sender::Member(leaf) if *leaf == own));
                    if group.is_active() && others_pending {
                        waiting.push(chat.group_id);
                    }
                }
            }
            waiting
        };
        for group_id in groups {
            let result = self
                .run_commit(&group_id, |group, provider| {
                    if group.pending_proposals().next().is_none() {
                        return Err(ClientError::Invalid("nothing to commit".into()));
                    }
                    let (commit, welcome, _) = group
                        .commit_to_pending_proposals(provider, &self.signer)
                        .map_err(mls_error)?;
                    Ok((commit, welcome))
                })
                .await;
            match result {
                Ok(()) | Err(ClientError::Invalid(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}
