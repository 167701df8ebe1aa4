//! Opening MLS groups: the configuration every Parley group is created or joined with, loading
//! a group from the provider, and finding the group behind a chat name. Sending, receiving and
//! the views all sit on top of this; it knows nothing of them.

use openmls::prelude::*;
use parley_mls::Roles;

use crate::client::Client;
use crate::db::{self, ChatKind};
use crate::error::{mls_error, ClientError};
use crate::names::ChatRef;
use crate::provider::TxProvider;

/// Past epochs whose message keys a member keeps, for messages that were sent just before a
/// commit it already merged.
const MAX_PAST_EPOCHS: usize = 8;

fn wire_format_policy() -> WireFormatPolicy {
    // Handshake messages go out as PublicMessages so that the Delivery Service can validate them
    // and learn membership; application messages are always PrivateMessages.
    MIXED_PLAINTEXT_WIRE_FORMAT_POLICY
}

/// How we join a group from a Welcome: the same settings as `Client::create_config`.
pub(crate) fn join_config() -> MlsGroupJoinConfig {
    MlsGroupJoinConfig::builder()
        .wire_format_policy(wire_format_policy())
        .use_ratchet_tree_extension(false)
        .max_past_epochs(MAX_PAST_EPOCHS)
        .sender_ratchet_configuration(SenderRatchetConfiguration::new(100, 10_000))
        .build()
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
    /// A group we create: we are its admin and the server its external sender.
    pub(crate) fn create_config(
        &self,
        server: ExternalSender,
    ) -> Result<MlsGroupCreateConfig, ClientError> {
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

    /// Like `resolve_chat`, for operations that need the chat to exist.
    pub(crate) fn require_group(&self, chat: &ChatRef) -> Result<Vec<u8>, ClientError> {
        self.resolve_chat(chat)?
            .ok_or_else(|| ClientError::UnknownChat(chat.to_string()))
    }
}
