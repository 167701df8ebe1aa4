//! A restored device rejoins its account's chats by external commit (RFC 9420, 12.4.3.2): from
//! the GroupInfo a member shared and the server's ratchet tree, it commits itself in. The
//! server and every member accept that only for a certified device of an account already in
//! the group (`parley_mls::roles`). The commit is kept until the server answers, so that a
//! retry after a crash sends the very same one.

use openmls::prelude::tls_codec::Deserialize as _;
use openmls::prelude::*;
use parley_mls::DeviceIdentity;
use parley_protocol::{v1, ErrorCode};

use crate::client::Client;
use crate::db::{self, ChatKind};
use crate::error::{mls_error, ClientError};
use crate::groups::{join_config, load_group};
use crate::outgoing::outbox::{is_wrong_epoch, random_id, MAX_EPOCH_RETRIES};
use crate::provider::TxProvider;
use crate::trust::certify_members;

/// Whether a rejoin failed for a reason that passes: retried at the next sync.
fn is_waiting(error: &ClientError) -> bool {
    error.is_transient()
        || matches!(
            error.server_code(),
            Some(ErrorCode::NotReady | ErrorCode::WrongEpoch)
        )
}

impl Client {
    /// Rejoins every chat still to rejoin; returns how many it rejoined and how many wait.
    pub(crate) async fn rejoin_chats(&self) -> Result<(u64, u64), ClientError> {
        let (mut rejoined, mut waiting) = (0, 0);
        let rows = db::rejoins(&self.db())?;
        for row in rows {
            match self.rejoin(&row).await {
                Ok(()) => rejoined += 1,
                Err(e) if is_waiting(&e) => {
                    tracing::info!(error = %e, "a chat waits to be rejoined");
                    waiting += 1;
                }
                Err(e)
                    if matches!(
                        e.server_code(),
                        Some(
                            ErrorCode::NotFound
                                | ErrorCode::Forbidden
                                | ErrorCode::InvalidMlsMessage
                        )
                    ) =>
                {
                    // The account is no longer in that group, or the server will never take
                    // this join: nothing to rejoin, and the kept commit goes.
                    tracing::info!(error = %e, "a chat of the backup cannot be rejoined");
                    self.discard_rejoin(&row.group_id)?;
                    db::delete_rejoin(&self.db(), &row.group_id)?;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "a chat could not be rejoined");
                    waiting += 1;
                }
            }
        }
        Ok((rejoined, waiting))
    }

    async fn rejoin(&self, row: &db::RejoinRow) -> Result<(), ClientError> {
        let group_id = row.group_id.as_slice();
        if let Some((message_id, mls)) = &row.sent {
            match self.submit_rejoin(group_id, message_id, mls).await {
                Err(e) if is_wrong_epoch(&e) => self.discard_rejoin(group_id)?,
                other => return other,
            }
        }
        for _ in 0..MAX_EPOCH_RETRIES {
            let (message_id, mls) = self.build_rejoin(group_id).await?;
            match self.submit_rejoin(group_id, &message_id, &mls).await {
                Err(e) if is_wrong_epoch(&e) => self.discard_rejoin(group_id)?,
                other => return other,
            }
        }
        Err(ClientError::Invalid(
            "the group is changing too fast to rejoin; the next sync tries again".into(),
        ))
    }

    /// Builds the external commit from the group's shared state and keeps it, with the group
    /// it makes, until the server answers.
    async fn build_rejoin(&self, group_id: &[u8]) -> Result<(Vec<u8>, Vec<u8>), ClientError> {
        let path = format!("/v1/groups/{}/group-info", hex::encode(group_id));
        let bundle: v1::GroupInfoBundle = self.authed(|| self.api.get(&path)).await?;
        if bundle.epoch != bundle.group_epoch {
            return Err(ClientError::Server(parley_protocol::WireError::new(
                ErrorCode::NotReady,
                "no member has shared the group's newest state yet",
            )));
        }
        let info = match MlsMessageIn::tls_deserialize_exact(bundle.group_info.as_slice())
            .map(|m| m.extract())
        {
            Ok(MlsMessageBodyIn::GroupInfo(info)) => info,
            _ => return Err(ClientError::Protocol("the GroupInfo does not parse".into())),
        };
        if info.group_id().as_slice() != group_id {
            return Err(ClientError::Protocol(
                "the server sent another group's state".into(),
            ));
        }
        let tree = RatchetTreeIn::tls_deserialize_exact(bundle.ratchet_tree.as_slice())
            .map_err(|_| ClientError::Protocol("the ratchet tree does not parse".into()))?;
        let ciphersuite = info.ciphersuite();
        // After a rotation, our leaf is under a newer key than the account's leaves there.
        let aad = self.rotation_aad()?;
        let own_rotations =
            parley_mls::rotations_in_aad(&aad).map_err(|e| ClientError::Protocol(e.to_string()))?;
        let current = self.account_key().public();
        let conn = self.db();
        let tx = conn.unchecked_transaction()?;
        let provider = TxProvider::new(&self.crypto, &tx);
        // openmls checks the GroupInfo's signature and that the tree is the one it signs.
        let (group, commit) = MlsGroup::external_commit_builder()
            .with_ratchet_tree(tree)
            .with_config(join_config())
            .with_aad(aad)
            .build_group(&provider, info, self.credential())
            .map_err(mls_error)?
            .leaf_node_parameters(
                LeafNodeParameters::builder()
                    .with_capabilities(parley_mls::suite::leaf_capabilities(ciphersuite))
                    .build(),
            )
            .load_psks(provider.storage())
            .map_err(mls_error)?
            .build(provider.rand(), provider.crypto(), &self.signer, |_| true)
            .map_err(mls_error)?
            .finalize(&provider)
            .map_err(mls_error)?;
        // Every member must be certified by its account under the key we pinned for it, and
        // ours must be among them: else this is not our account's chat.
        let members = certify_members(group.members())?;
        for member in &members {
            let (name, device) = (&member.identity.username, member.identity.device_id);
            // Our own revoked devices (the lost ones) are removed right after the join.
            if *name != *self.username() && db::is_revoked(&tx, name.as_str(), device.as_bytes())? {
                return Err(ClientError::Protocol(format!(
                    "the group's state holds a device {name} revoked"
                )));
            }
        }
        self.pin_accounts(&tx, &members, &[])?;
        let own_account_there = members.iter().any(|m| {
            m.identity.username == *self.username()
                && m.identity.device_id != self.identity.device_id
                && (m.account_key == current
                    || parley_mls::rotation::follow(
                        self.username(),
                        &m.account_key,
                        &own_rotations,
                        &current,
                    )
                    .is_ok())
        });
        if !own_account_there {
            return Err(ClientError::Protocol(
                "the group holds no device of this account".into(),
            ));
        }
        let mls = commit.into_commit().to_bytes().map_err(mls_error)?;
        let message_id = random_id().to_vec();
        db::set_rejoin_commit(&tx, group_id, Some((&message_id, &mls)))?;
        tx.commit()?;
        Ok((message_id, mls))
    }

    /// Sends the kept external commit; once accepted, the group is ours and the chat open.
    async fn submit_rejoin(
        &self,
        group_id: &[u8],
        message_id: &[u8],
        mls: &[u8],
    ) -> Result<(), ClientError> {
        let submit = v1::Submit {
            message_id: message_id.to_vec(),
            mls_message: mls.to_vec(),
            welcome: None,
            expires_in_ms: 0,
        };
        let _: v1::SubmitResponse = self
            .authed(|| self.api.post("/v1/messages", &submit, true))
            .await?;
        {
            let conn = self.db();
            let tx = conn.unchecked_transaction()?;
            let provider = TxProvider::new(&self.crypto, &tx);
            let mut group = load_group(&provider, group_id)?
                .ok_or_else(|| ClientError::Protocol("the rejoined group is missing".into()))?;
            if group.pending_commit().is_some() {
                group.merge_pending_commit(&provider).map_err(mls_error)?;
            }
            self.keep_group_info_to_share(&tx, &provider, &group)?;
            // Kind and name come from the backup; the chat is open again.
            db::insert_chat(&tx, group_id, ChatKind::Unknown, "", db::now_ms())?;
            db::delete_rejoin(&tx, group_id)?;
            tx.commit()?;
        }
        self.share_group_infos().await;
        self.remove_revoked_own_devices(group_id).await
    }

    /// Forgets an external commit that lost its epoch, and the group it would have made.
    fn discard_rejoin(&self, group_id: &[u8]) -> Result<(), ClientError> {
        let conn = self.db();
        let tx = conn.unchecked_transaction()?;
        let provider = TxProvider::new(&self.crypto, &tx);
        if let Some(mut group) = load_group(&provider, group_id)? {
            group.delete(provider.storage()).map_err(mls_error)?;
        }
        db::set_rejoin_commit(&tx, group_id, None)?;
        tx.commit()?;
        Ok(())
    }

    /// Removes from a rejoined chat the account's devices it revoked meanwhile (a restore
    /// revokes the lost ones while some chats still wait).
    async fn remove_revoked_own_devices(&self, group_id: &[u8]) -> Result<(), ClientError> {
        let revoked: Vec<LeafNodeIndex> = {
            let conn = self.db();
            let provider = TxProvider::new(&self.crypto, &conn);
            let Some(group) = load_group(&provider, group_id)? else {
                return Ok(());
            };
            let mut leaves = Vec::new();
            for member in group.members() {
                let Ok(id) = DeviceIdentity::from_credential(&member.credential) else {
                    continue;
                };
                if id.username == *self.username()
                    && db::is_revoked(&conn, id.username.as_str(), id.device_id.as_bytes())?
                {
                    leaves.push(member.index);
                }
            }
            leaves
        };
        if revoked.is_empty() {
            return Ok(());
        }
        self.run_commit(group_id, |group, provider| {
            let (commit, welcome, _) = group
                .remove_members(provider, &self.signer, &revoked)
                .map_err(mls_error)?;
            Ok((commit, welcome))
        })
        .await
    }

    /// Keeps the GroupInfo of the epoch our commit just started, for a restored device of any
    /// member's account to rejoin from ([`Client::share_group_infos`] sends it).
    pub(crate) fn keep_group_info_to_share(
        &self,
        tx: &rusqlite::Connection,
        provider: &TxProvider<'_>,
        group: &MlsGroup,
    ) -> Result<(), ClientError> {
        let info = group
            .export_group_info(provider.crypto(), &self.signer, false)
            .map_err(mls_error)?
            .to_bytes()
            .map_err(mls_error)?;
        db::put_group_info_to_share(
            tx,
            group.group_id().as_slice(),
            group.epoch().as_u64(),
            &info,
        )
    }

    /// Hands the server the GroupInfos of our accepted commits, for a restored device to join
    /// from. One that lost to a newer epoch is dropped; a network failure waits for next time.
    pub(crate) async fn share_group_infos(&self) {
        let waiting = match db::group_infos_to_share(&self.db()) {
            Ok(waiting) => waiting,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the GroupInfos to share");
                return;
            }
        };
        for db::GroupInfoToShare {
            group_id,
            epoch,
            group_info,
        } in waiting
        {
            let path = format!("/v1/groups/{}/group-info", hex::encode(&group_id));
            let upload = v1::GroupInfoUpload { epoch, group_info };
            let result: Result<v1::SealBlob, _> =
                self.authed(|| self.api.put(&path, &upload)).await;
            match result {
                Err(e) if e.is_transient() => {
                    tracing::debug!(error = %e, "GroupInfo not shared yet");
                    continue;
                }
                Err(e) => tracing::info!(error = %e, "GroupInfo no longer current"),
                Ok(_) => {}
            }
            if let Err(e) = db::delete_group_info_to_share(&self.db(), &group_id, epoch) {
                tracing::warn!(error = %e, "cannot forget a shared GroupInfo");
            }
        }
    }
}
