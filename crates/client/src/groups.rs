//! Opening MLS groups: the configuration every Parley group is created or joined with, loading
//! a group from the provider, and finding the group behind a chat name. Sending, receiving and
//! the views all sit on top of this; it knows nothing of them.

use openmls::prelude::*;
use parley_mls::{DeviceIdentity, Roles};

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

/// The group, if we are still an active member of it and not being removed by the server's
/// moderators (their proposal waits for another member to commit it; until then nothing we
/// could send or commit would be accepted: openmls refuses to encrypt beside a pending
/// proposal, and a commit cannot remove its own sender).
pub(crate) fn load_active_group(
    provider: &TxProvider<'_>,
    group_id: &[u8],
) -> Result<MlsGroup, ClientError> {
    match load_group(provider, group_id)? {
        Some(group) if group.is_active() => {
            if removal_by_moderators_pending(&group) {
                return Err(ClientError::Invalid(
                    "the server's moderators are removing you from this chat; \
                     it can no longer be written to"
                        .into(),
                ));
            }
            Ok(group)
        }
        _ => Err(ClientError::Invalid(
            "you are no longer a member of this chat".into(),
        )),
    }
}

/// Whether the server (as external sender) proposed removing us and nobody committed it yet.
pub(crate) fn removal_by_moderators_pending(group: &MlsGroup) -> bool {
    let own = group.own_leaf_index();
    group.pending_proposals().any(|p| {
        matches!(p.sender(), Sender::External(_))
            && matches!(p.proposal(), Proposal::Remove(r) if r.removed() == own)
    })
}

pub(crate) fn load_group(
    provider: &TxProvider<'_>,
    group_id: &[u8],
) -> Result<Option<MlsGroup>, ClientError> {
    MlsGroup::load(provider.storage(), &GroupId::from_slice(group_id)).map_err(mls_error)
}

/// The accounts (usernames) in a group.
pub(crate) fn member_accounts(group: &MlsGroup) -> std::collections::BTreeSet<String> {
    group
        .members()
        .filter_map(|m| DeviceIdentity::from_credential(&m.credential).ok())
        .map(|id| id.username.to_string())
        .collect()
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

    /// The chats a name refers to, for reading (history spans the chats with a peer, and a
    /// group's earlier incarnations): a username's chats, a group's chats by name, or the one
    /// group a handle (`#team@1a2b3c4d`) names. A group name that two active groups share is
    /// ambiguous: the error lists their handles.
    pub(crate) fn chats_for(
        &self,
        conn: &rusqlite::Connection,
        chat: &ChatRef,
    ) -> Result<Vec<db::ChatRow>, ClientError> {
        let name = match chat {
            ChatRef::Direct(peer) => return db::chats_named(conn, ChatKind::Direct, peer.as_str()),
            ChatRef::Group(name) => name,
        };
        let named = db::chats_named(conn, ChatKind::Group, name)?;
        let active: Vec<&db::ChatRow> = named
            .iter()
            .filter(|c| c.state == db::ChatState::Active)
            .collect();
        if active.len() > 1 {
            let handles: Vec<String> = active
                .iter()
                .map(|c| format!("{} ({})", chat_handle(c), self.others_in(conn, &c.group_id)))
                .collect();
            return Err(ClientError::Invalid(format!(
                "#{name} is ambiguous: {}; name one of them",
                handles.join(", ")
            )));
        }
        if !named.is_empty() {
            return Ok(named);
        }
        let Some((base, prefix)) = parse_handle(name) else {
            return Ok(Vec::new());
        };
        Ok(db::chats_named(conn, ChatKind::Group, base)?
            .into_iter()
            .filter(|c| hex::encode(&c.group_id).starts_with(prefix))
            .collect())
    }

    /// Who else is in a group, for telling groups apart: "with alice, bob".
    fn others_in(&self, conn: &rusqlite::Connection, group_id: &[u8]) -> String {
        let provider = TxProvider::new(&self.crypto, conn);
        let mut names: Vec<String> = load_group(&provider, group_id)
            .ok()
            .flatten()
            .map(|g| {
                g.members()
                    .filter_map(|m| parley_mls::DeviceIdentity::from_credential(&m.credential).ok())
                    .map(|id| id.username.to_string())
                    .filter(|u| u != self.username().as_str())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names.dedup();
        if names.is_empty() {
            "only you".into()
        } else {
            format!("with {}", names.join(" "))
        }
    }

    /// The group behind a chat name, if it is active.
    pub(crate) fn resolve_chat(&self, chat: &ChatRef) -> Result<Option<Vec<u8>>, ClientError> {
        let conn = self.db();
        let row = match chat {
            ChatRef::Direct(peer) => db::find_chat(&conn, ChatKind::Direct, peer.as_str())?,
            ChatRef::Group(_) => self
                .chats_for(&conn, chat)?
                .into_iter()
                .find(|c| c.state == db::ChatState::Active),
        };
        Ok(row.map(|r| r.group_id))
    }

    /// Like `resolve_chat`, for operations that need the chat to exist.
    pub(crate) fn require_group(&self, chat: &ChatRef) -> Result<Vec<u8>, ClientError> {
        self.resolve_chat(chat)?
            .ok_or_else(|| ClientError::UnknownChat(chat.to_string()))
    }
}

/// Hex digits of the group id in a handle: 8 (4 bytes) tell a user's groups apart.
const HANDLE_HEX: usize = 8;

/// A group's handle, unique among the user's chats: `#team@1a2b3c4d` (the group id's start,
/// the same on every member's device).
pub(crate) fn chat_handle(chat: &db::ChatRow) -> String {
    let id = hex::encode(&chat.group_id);
    format!("#{}@{}", chat.name, &id[..HANDLE_HEX.min(id.len())])
}

/// `team@1a2b3c4d` as (name, id prefix).
fn parse_handle(text: &str) -> Option<(&str, &str)> {
    let (base, prefix) = text.rsplit_once('@')?;
    let hex_digits = prefix.len() == HANDLE_HEX
        && prefix
            .chars()
            .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c));
    (hex_digits && !base.is_empty()).then_some((base, prefix))
}

/// Whether `user` is an admin of this group chat (a 1:1 chat has none), as its state says now.
pub(crate) fn admin_of_group(
    conn: &rusqlite::Connection,
    group: &MlsGroup,
    user: &parley_protocol::Username,
) -> Result<bool, ClientError> {
    let is_group = db::chat(conn, group.group_id().as_slice())?
        .is_some_and(|chat| chat.kind == ChatKind::Group);
    Ok(is_group
        && parley_mls::Roles::from_extensions(group.extensions())
            .is_ok_and(|roles| roles.is_admin(user)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_handle_is_a_name_and_eight_hex_digits() {
        assert_eq!(parse_handle("team@1a2b3c4d"), Some(("team", "1a2b3c4d")));
        assert_eq!(parse_handle("a@b@00000000"), Some(("a@b", "00000000")));
        assert_eq!(parse_handle("team@1a2b"), None);
        assert_eq!(parse_handle("team@1A2B3C4D"), None);
        assert_eq!(parse_handle("@1a2b3c4d"), None);
        assert_eq!(parse_handle("team"), None);
    }
}
