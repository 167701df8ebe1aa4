//! Group operations: creating a chat (1:1 or group) and telling the server of it, adding and
//! removing members, appointing admins, and leaving.

use openmls::prelude::tls_codec::Serialize as _;
use openmls::prelude::*;
use parley_mls::{DeviceIdentity, Roles};
use parley_protocol::{v1, ErrorCode, Username};

use super::outbox::{is_wrong_epoch, random_id, MAX_EPOCH_RETRIES};
use crate::client::Client;
use crate::db::{self, now_ms, ChatKind, ChatState, OutboxKind};
use crate::error::{mls_error, ClientError};
use crate::groups::{load_active_group, load_group};
use crate::names::{parse_group_name, ChatRef};
use crate::provider::TxProvider;

/// Most members added by one commit (a post-quantum KeyPackage is about 2.7 KB).
const MAX_ADDS_PER_COMMIT: usize = 1000;

impl Client {
    /// chat's metadata encrypted.
    pub(crate) async fn create_group_with(
        &self,
        kind: ChatKind,
        name: &str,
        members: &[Username],
    ) -> Result<Vec<u8>, ClientError> {
        let mut key_packages = self.claim_key_packages(members).await?;
        key_packages.extend(self.own_other_devices().await?);
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
    pub(crate) async fn commit_adds(
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

    /// KeyPackages of our account's other devices, for a chat we make: every device of the
    /// account is in every chat. One that has published none yet is left out now; it joins when
    /// it is linked (see `devices approve`).
    async fn own_other_devices(&self) -> Result<Vec<KeyPackage>, ClientError> {
        match self
            .claim_key_packages(std::slice::from_ref(self.username()))
            .await
        {
            Err(e) if e.server_code() == Some(ErrorCode::NoKeyPackage) => {
                tracing::warn!("another device of this account has no key package; left out");
                Ok(Vec::new())
            }
            other => other,
        }
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
        let name = parse_group_name(name)?;
        // The user's own chats keep distinct names; only others' groups may clash (handles).
        if db::find_chat(&self.db(), ChatKind::Group, &name)?.is_some() {
            return Err(ClientError::Invalid(format!(
                "you are already in a group named #{name}; pick another name"
            )));
        }
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
        let chat = ChatRef::Group(parse_group_name(name)?);
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
        // The group's own name, not the handle it may have been addressed by.
        let stored = db::chat(&self.db(), &group_id)?
            .map(|c| c.name)
            .ok_or_else(|| ClientError::UnknownChat(chat.to_string()))?;
        self.send_meta(&group_id, ChatKind::Group, &stored).await
    }

    /// Removes users (all their devices) from a group. Only admins may remove others.
    pub async fn remove_members(&self, name: &str, users: &[Username]) -> Result<(), ClientError> {
        let chat = ChatRef::Group(parse_group_name(name)?);
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
        let chat = ChatRef::Group(parse_group_name(name)?);
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
        let chat = ChatRef::Group(parse_group_name(name)?);
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
}
