//! The MLS Delivery Service (shared/design/delivery-service.md).
//!
//! - One commit per epoch: a handshake message is accepted only for the group's current epoch,
//!   and the store re-checks that epoch inside the transaction that accepts it, so of two
//!   competing commits exactly one wins; the other gets `wrong epoch (current = N)`.
//! - Commits and proposals arrive as MLS PublicMessages. The server validates them against its
//!   public view of the group (openmls `PublicGroup`), applies Parley's role rules, checks that
//!   every new leaf is a registered device with its registered key, and so learns membership.
//! - Application messages are PrivateMessages: the server checks epoch and membership and stores
//!   the ciphertext, which it cannot read.
//! - A Welcome is stored in the same transaction as its commit, or not at all.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;

use openmls::prelude::tls_codec::{Deserialize, Serialize as _};
use openmls::prelude::{
    ContentType, GroupId as MlsGroupId, MlsMessageBodyIn, MlsMessageIn, ProcessedMessageContent,
    ProposalStore, ProtocolMessage, PublicGroup, RatchetTreeIn,
};
use openmls_memory_storage::MemoryStorage;
use openmls_rust_crypto::RustCrypto;
use parley_mls::{authorize_commit, rotations_in_aad, CertifiedDevice, DeviceIdentity, Roles};
use parley_protocol::{limits, v1, DeviceId, ErrorCode, GroupId, MessageId};
use parley_store::{
    GroupMember, GroupTransition, ItemKind, NewGroup, QueueEntry, Store, StoreError, Submission,
    WelcomeDelivery,
};
use sha2::{Digest, Sha256};

use crate::accounts::Authenticated;
use crate::fanout::Fanout;
use crate::franking::FrankingKeys;
use crate::notify::LiveEntry;
use crate::public_state::PublicGroupState;
use crate::{now_ms, ApiError};
use parley_mls::franking::{self, FrankContext};
use prost::Message as _;

/// How often a handshake message is re-processed when a concurrent one changed the group first.
const STATE_RETRIES: usize = 8;

pub struct Delivery {
    store: Arc<dyn Store>,
    fanout: Arc<dyn Fanout>,
    max_group_members: usize,
    budgets: Budgets,
    franking: Arc<FrankingKeys>,
    /// The server as MLS external sender, which every group must list first.
    external_sender: openmls::prelude::ExternalSender,
    /// Queue pointers written (the `parley_deliveries_total` metric).
    deliveries: prometheus::IntCounter,
}

/// What one account may store through the Delivery Service.
#[derive(Debug, Clone, Copy)]
pub struct Budgets {
    /// Undelivered bytes a recipient's queue may hold with an application message in it;
    /// group changes may fill it to twice this, so that a stuck member can still be removed.
    pub queue_bytes: u64,
    /// Groups an account may be in and still create another.
    pub groups_per_account: u64,
}

/// What processing a handshake message against the group's public state produced.
struct HandshakeOutcome {
    new_epoch: u64,
    new_state: Vec<u8>,
    members: Vec<(DeviceIdentity, Vec<u8>, u32)>,
    /// Devices that joined with this commit: they get the Welcome.
    added: Vec<DeviceId>,
    /// Leaves whose (device, key) the group did not have before, their certificates verified.
    changed: Vec<(CertifiedDevice, Vec<u8>)>,
    /// The ratchet tree after the commit (TLS-serialized), for joiners.
    ratchet_tree: Vec<u8>,
}

pub(crate) fn member_list(
    group: &PublicGroup,
) -> Result<Vec<(DeviceIdentity, Vec<u8>, u32)>, ApiError> {
    group
        .members()
        .map(|m| {
            let identity = DeviceIdentity::from_credential(&m.credential)
                .map_err(|e| ApiError::invalid_mls(format!("member credential: {e}")))?;
            Ok((identity, m.signature_key, m.index.u32()))
        })
        .collect()
}

/// A leaf as the directory check sees it: device, signature key and the whole credential (a
/// leaf re-certified under a rotated account key keeps its device and key).
type KnownLeaf = (DeviceId, Vec<u8>, Vec<u8>);

fn known_leaves(group: &PublicGroup) -> HashSet<KnownLeaf> {
    group
        .members()
        .filter_map(|m| {
            let identity = DeviceIdentity::from_credential(&m.credential).ok()?;
            let credential = m.credential.tls_serialize_detached().ok()?;
            Some((identity.device_id, m.signature_key, credential))
        })
        .collect()
}

/// Verifies the certificate of every leaf not in `known`: the leaves a commit brings in or
/// re-certifies, or all of a new group's.
fn certified_newcomers(
    group: &PublicGroup,
    known: &HashSet<KnownLeaf>,
) -> Result<Vec<(CertifiedDevice, Vec<u8>)>, ApiError> {
    group
        .members()
        .filter(|m| {
            let leaf = DeviceIdentity::from_credential(&m.credential)
                .ok()
                .zip(m.credential.tls_serialize_detached().ok())
                .map(|(id, credential)| (id.device_id, m.signature_key.clone(), credential));
            leaf.is_none_or(|leaf| !known.contains(&leaf))
        })
        .map(|m| {
            let certified = CertifiedDevice::verify(&m.credential, &m.signature_key)
                .map_err(|e| ApiError::forbidden(format!("leaf is not certified: {e}")))?;
            Ok((certified, m.signature_key))
        })
        .collect()
}

/// How many accounts (not devices) a group holds: the group-size cap counts these.
fn account_count(members: &[(DeviceIdentity, Vec<u8>, u32)]) -> usize {
    members
        .iter()
        .map(|(identity, _, _)| &identity.username)
        .collect::<HashSet<_>>()
        .len()
}

pub(crate) fn store_members(members: &[(DeviceIdentity, Vec<u8>, u32)]) -> Vec<GroupMember> {
    members
        .iter()
        .map(|(identity, _, leaf)| GroupMember {
            device_id: identity.device_id,
            leaf_index: *leaf,
        })
        .collect()
}

/// Parses an MLS message from untrusted bytes (a submission's message or Welcome, a new group's
/// GroupInfo), exactly as the Delivery Service does before anything else; public for the fuzz
/// targets (`crates/fuzz`).
pub fn parse_mls(bytes: &[u8]) -> Result<MlsMessageIn, ApiError> {
    MlsMessageIn::tls_deserialize_exact(bytes)
        .map_err(|_| ApiError::invalid_mls("MLS message does not parse"))
}

fn group_id_of(id: &MlsGroupId) -> Result<GroupId, ApiError> {
    GroupId::from_slice(id.as_slice())
        .map_err(|_| ApiError::invalid_mls("group id must be 16 bytes"))
}

/// Validates a commit or proposal against the group's public state and returns the new state.
/// CPU-bound (signature checks, tree validation): runs on a blocking thread.
fn process_handshake(
    group_id: &MlsGroupId,
    state: &[u8],
    message: ProtocolMessage,
    sender: &DeviceIdentity,
    max_members: usize,
    server: &openmls::prelude::ExternalSender,
    joining: bool,
) -> Result<HandshakeOutcome, ApiError> {
    let crypto = RustCrypto::default();
    let mut public = PublicGroupState::load(group_id, state).map_err(|e| {
        tracing::error!(error = %e, "public group state unreadable");
        ApiError::new(ErrorCode::Internal, "group state unreadable")
    })?;
    // A joiner cannot commit proposals it never saw, and a merge drops them: a moderators'
    // removal or a member's leaving would be lost. It waits until a member commits them.
    let waiting = public
        .group
        .queued_proposals(&public.storage)
        .map_err(|_| ApiError::new(ErrorCode::Internal, "group state unreadable"))?;
    if joining && !waiting.is_empty() {
        return Err(ApiError::new(
            ErrorCode::NotReady,
            "the group has changes waiting for a member to commit them; rejoin later",
        ));
    }
    let members_before = member_list(&public.group)?;
    let leaves_before = known_leaves(&public.group);
    let processed = public
        .group
        .process_message(&crypto, message)
        .map_err(|e| ApiError::invalid_mls(format!("rejected by MLS validation: {e}")))?;
    let claimed = DeviceIdentity::from_credential(processed.credential())
        .map_err(|e| ApiError::invalid_mls(format!("sender credential: {e}")))?;
    if claimed != *sender {
        return Err(ApiError::forbidden(
            "message is signed by another member than the sender",
        ));
    }
    let sender_leaf = processed.sender().clone();
    let rotations =
        rotations_in_aad(processed.aad()).map_err(|e| ApiError::forbidden(e.to_string()));
    match processed.into_content() {
        ProcessedMessageContent::StagedCommitMessage(staged) => {
            authorize_commit(
                public.group.members(),
                public.group.group_context().extensions(),
                &sender_leaf,
                &staged,
                &rotations?,
            )
            .map_err(|e| ApiError::forbidden(e.to_string()))?;
            public
                .group
                .merge_commit(&public.storage, *staged)
                .map_err(|e| ApiError::invalid_mls(format!("cannot merge commit: {e}")))?;
        }
        ProcessedMessageContent::ProposalMessage(proposal) => {
            // Standalone proposals are how a member leaves: it proposes its own removal.
            let own_removal = matches!(
                (proposal.proposal(), proposal.sender()),
                (openmls::prelude::Proposal::Remove(remove), openmls::prelude::Sender::Member(leaf))
                    if remove.removed() == *leaf
            );
            if !own_removal {
                return Err(ApiError::forbidden(
                    "the only standalone proposal allowed is leaving",
                ));
            }
            public
                .group
                .add_proposal(&public.storage, *proposal)
                .map_err(|e| ApiError::invalid_mls(format!("cannot queue proposal: {e}")))?;
        }
        _ => return Err(ApiError::invalid_mls("expected a commit or a proposal")),
    }
    // Moderation depends on the server staying external sender 0: no commit may drop it.
    let server_listed = public
        .group
        .group_context()
        .extensions()
        .external_senders()
        .and_then(|senders| senders.first())
        .is_some_and(|sender| sender == server);
    if !server_listed {
        return Err(ApiError::forbidden(
            "a group must keep the server as its external sender",
        ));
    }
    let members = member_list(&public.group)?;
    if account_count(&members) > max_members {
        return Err(ApiError::new(
            ErrorCode::GroupTooLarge,
            format!("groups are limited to {max_members} members"),
        ));
    }
    let before: HashSet<DeviceId> = members_before
        .iter()
        .map(|(id, _, _)| id.device_id)
        .collect();
    let added: Vec<DeviceId> = members
        .iter()
        .map(|(id, _, _)| id.device_id)
        .filter(|d| !before.contains(d))
        .collect();
    // Every leaf that is new as (identity, key, credential) must be checked against the
    // directory, also one that replaces or re-certifies an existing device's leaf.
    let changed = certified_newcomers(&public.group, &leaves_before)?;
    let ratchet_tree = if added.is_empty() {
        Vec::new()
    } else {
        public
            .group
            .export_ratchet_tree()
            .tls_serialize_detached()
            .map_err(|_| ApiError::new(ErrorCode::Internal, "cannot export the ratchet tree"))?
    };
    Ok(HandshakeOutcome {
        new_epoch: public.group.group_context().epoch().as_u64(),
        new_state: public.encode(),
        members,
        added,
        changed,
        ratchet_tree,
    })
}

fn fingerprint(request: &v1::Submit) -> Vec<u8> {
    let mut hasher = Sha256::new();
    hasher.update((request.mls_message.len() as u64).to_be_bytes());
    hasher.update(&request.mls_message);
    if let Some(welcome) = &request.welcome {
        hasher.update(welcome);
    }
    hasher.finalize().to_vec()
}

impl Delivery {
    pub fn new(
        store: Arc<dyn Store>,
        fanout: Arc<dyn Fanout>,
        max_group_members: usize,
        budgets: Budgets,
        franking: Arc<FrankingKeys>,
        external_sender: openmls::prelude::ExternalSender,
        deliveries: prometheus::IntCounter,
    ) -> Self {
        Delivery {
            store,
            fanout,
            max_group_members,
            budgets,
            franking,
            external_sender,
            deliveries,
        }
    }

    fn identity(device: &Authenticated) -> DeviceIdentity {
        DeviceIdentity::new(device.0.username.clone(), device.0.device_id)
    }

    /// Every leaf must be a registered device of the username it claims, with its registered
    /// key, certified by that account's registered account key.
    async fn check_registered(
        &self,
        members: &[(CertifiedDevice, Vec<u8>)],
    ) -> Result<(), ApiError> {
        for (certified, key) in members {
            let identity = &certified.identity;
            let record = self.store.device(identity.device_id).await?;
            let matches = record.as_ref().is_some_and(|r| {
                !r.revoked
                    && r.username == identity.username
                    && r.signature_key == *key
                    && r.account_key == certified.account_key.to_bytes()
            });
            if !matches {
                return Err(ApiError::forbidden(format!(
                    "leaf for device {} is not that device's registered identity",
                    identity.device_id
                )));
            }
        }
        Ok(())
    }

    pub async fn create_group(
        &self,
        device: &Authenticated,
        request: v1::CreateGroup,
    ) -> Result<v1::CreateGroupResponse, ApiError> {
        let creator = Self::identity(device);
        let server_key = self.external_sender.clone();
        // Verified with the group below: the first GroupInfo a restored device can join from.
        let first_group_info = request.group_info.clone();
        let (group_id, epoch, state, members, certified) = tokio::task::spawn_blocking(move || {
            let info = match parse_mls(&request.group_info)?.extract() {
                MlsMessageBodyIn::GroupInfo(info) => info,
                _ => return Err(ApiError::invalid_mls("expected a GroupInfo")),
            };
            let tree = RatchetTreeIn::tls_deserialize_exact(request.ratchet_tree.as_slice())
                .map_err(|_| ApiError::invalid_mls("ratchet tree does not parse"))?;
            let storage = MemoryStorage::default();
            let (group, _) = PublicGroup::from_external(
                &RustCrypto::default(),
                &storage,
                tree,
                info,
                ProposalStore::new(),
            )
            .map_err(|e| ApiError::invalid_mls(format!("group does not verify: {e}")))?;
            let members = member_list(&group)?;
            if members.len() != 1 || members[0].0 != creator {
                return Err(ApiError::forbidden(
                    "a new group must hold exactly its creator",
                ));
            }
            let roles = Roles::from_group_context(group.group_context())
                .map_err(|e| ApiError::invalid_mls(e.to_string()))?;
            // Moderation needs the server as external sender 0 in every group.
            let server_listed = group
                .group_context()
                .extensions()
                .external_senders()
                .and_then(|senders| senders.first())
                .is_some_and(|sender| *sender == server_key);
            if !server_listed {
                return Err(ApiError::forbidden(
                    "a group must list the server as its external sender (GET /v1/info)",
                ));
            }
            if roles != Roles::with_admin(creator.username.clone()) {
                return Err(ApiError::forbidden(
                    "the creator must be the only admin of a new group",
                ));
            }
            let suite = group.ciphersuite();
            if suite != parley_mls::suite::DEFAULT_CIPHERSUITE
                && suite != parley_mls::suite::CLASSIC_X25519
            {
                return Err(ApiError::invalid_mls("unsupported ciphersuite"));
            }
            let certified = certified_newcomers(&group, &HashSet::new())?;
            let state = PublicGroupState { group, storage };
            let group_id = group_id_of(state.group.group_id())?;
            let epoch = state.group.group_context().epoch().as_u64();
            Ok((group_id, epoch, state.encode(), members, certified))
        })
        .await
        .map_err(|_| ApiError::new(ErrorCode::Internal, "group validation failed"))??;
        self.check_registered(&certified).await?;
        self.store
            .create_group(NewGroup {
                group_id,
                epoch,
                public_state: state,
                members: store_members(&members),
                now: now_ms(),
                max_groups: self.budgets.groups_per_account,
            })
            .await?;
        self.store
            .put_group_info(group_id, epoch, first_group_info)
            .await?;
        tracing::info!(group = %group_id, device = %device.0.device_id, "group created");
        Ok(v1::CreateGroupResponse {
            group_id: group_id.to_vec(),
            epoch,
        })
    }

    pub async fn submit(
        &self,
        device: &Authenticated,
        request: v1::Submit,
    ) -> Result<v1::SubmitResponse, ApiError> {
        let message_id = MessageId::from_slice(&request.message_id)
            .map_err(|e| ApiError::malformed(e.to_string()))?;
        if request.mls_message.len() > limits::MAX_MLS_MESSAGE_BYTES {
            return Err(ApiError::new(ErrorCode::TooLarge, "MLS message too large"));
        }
        if request
            .welcome
            .as_ref()
            .is_some_and(|w| w.len() > limits::MAX_WELCOME_BYTES)
        {
            return Err(ApiError::new(ErrorCode::TooLarge, "Welcome too large"));
        }
        let fingerprint = fingerprint(&request);
        let sender = device.0.device_id;
        let message = parse_mls(&request.mls_message)?
            .try_into_protocol_message()
            .map_err(|_| ApiError::invalid_mls("expected a PublicMessage or PrivateMessage"))?;
        // A retried commit answers with the first result before it is validated again: the
        // group has moved on. (Application messages need no look-up here: the store finds a
        // retry inside the transaction that would accept it.)
        if matches!(message, ProtocolMessage::PublicMessage(_)) {
            if let Some(previous) = self.store.find_submission(sender, message_id).await? {
                if previous.fingerprint != fingerprint {
                    return Err(StoreError::IdempotencyConflict.into());
                }
                return Ok(response(&previous.accepted));
            }
        }
        let mls_group_id = message.group_id().clone();
        let group_id = group_id_of(&mls_group_id)?;
        let epoch = message.epoch().as_u64();

        let submitted_fingerprint = fingerprint.clone();
        // What live connections on this node push without reading it back: the application
        // message as stored (a commit's recipients may get a Welcome instead, so not those).
        let mut live_copy = None;
        let outcome: Result<parley_store::Accepted, ApiError> = match &message {
            ProtocolMessage::PrivateMessage(private) => {
                if private.content_type() != ContentType::Application {
                    return Err(ApiError::invalid_mls(
                        "commits and proposals must be PublicMessages",
                    ));
                }
                if private.aad().len() > limits::MAX_AAD_BYTES {
                    return Err(ApiError::new(
                        ErrorCode::TooLarge,
                        "authenticated data too large",
                    ));
                }
                if request.welcome.is_some() {
                    return Err(ApiError::invalid_mls(
                        "a Welcome travels only with its commit",
                    ));
                }
                // Every application message carries a franking tag, so that it can be reported.
                let franking_tag = v1::MessageAad::decode(private.aad())
                    .ok()
                    .map(|aad| aad.franking_tag)
                    .filter(|tag| tag.len() == parley_mls::franking::TAG_LEN)
                    .ok_or_else(|| {
                        ApiError::invalid_mls("application message without a franking tag")
                    })?;
                live_copy = Some((request.mls_message.clone(), franking_tag.clone()));
                let accepted_at = now_ms();
                // A disappearing message leaves the server when it leaves the devices.
                let expires_at = (request.expires_in_ms > 0).then(|| {
                    let most = u64::from(limits::MAX_DISAPPEAR_S) * 1000;
                    accepted_at.saturating_add(request.expires_in_ms.min(most) as i64)
                });
                self.store
                    .accept(Submission {
                        sender,
                        message_id,
                        fingerprint,
                        group_id,
                        epoch,
                        payload: request.mls_message,
                        accepted_at,
                        transition: None,
                        franking_tag: Some(franking_tag),
                        queue_limit: self.budgets.queue_bytes,
                        expires_at,
                    })
                    .await
                    .map_err(ApiError::from)
            }
            ProtocolMessage::PublicMessage(_) => {
                self.submit_handshake(
                    device,
                    message_id,
                    fingerprint,
                    group_id,
                    mls_group_id,
                    message,
                    request,
                )
                .await
            }
        };
        let accepted = match outcome {
            Ok(accepted) => accepted,
            Err(e)
                if matches!(
                    e.code(),
                    ErrorCode::WrongEpoch | ErrorCode::NotMember | ErrorCode::Replay
                ) =>
            {
                // A concurrent copy of this very submission may have been accepted meanwhile:
                // then this is a retry, and it gets the first result.
                match self.store.find_submission(sender, message_id).await? {
                    Some(previous) if previous.fingerprint == submitted_fingerprint => {
                        return Ok(response(&previous.accepted))
                    }
                    _ => return Err(e),
                }
            }
            Err(e) => return Err(e),
        };
        let entry = live_copy
            .filter(|_| !accepted.duplicate)
            .map(|(payload, tag)| {
                let entry = QueueEntry {
                    seq: 0,
                    kind: ItemKind::GroupMessage,
                    group_id,
                    group_seq: accepted.group_seq,
                    sender_device: sender,
                    sender_username: device.0.username.clone(),
                    message_id,
                    accepted_at: accepted.accepted_at,
                    payload,
                    franking_tag: Some(tag),
                };
                Arc::new(LiveEntry {
                    entry,
                    franking: Default::default(),
                })
            });
        if !accepted.duplicate {
            self.deliveries.inc_by(accepted.deliveries.len() as u64);
        }
        self.fanout.publish(accepted.deliveries.clone(), entry);
        tracing::debug!(
            group = %group_id, device = %sender, seq = accepted.group_seq, epoch = accepted.epoch,
            recipients = accepted.deliveries.len(), "message accepted"
        );
        Ok(response(&accepted))
    }

    #[allow(clippy::too_many_arguments)]
    async fn submit_handshake(
        &self,
        device: &Authenticated,
        message_id: MessageId,
        fingerprint: Vec<u8>,
        group_id: GroupId,
        mls_group_id: MlsGroupId,
        message: ProtocolMessage,
        request: v1::Submit,
    ) -> Result<parley_store::Accepted, ApiError> {
        let sender = Self::identity(device);
        let epoch = message.epoch().as_u64();
        // A device of an account in the group rejoining by itself (after a restore): it is no
        // member before this commit, which `authorize_commit` allows only for such a device.
        let joining = matches!(
            &message,
            ProtocolMessage::PublicMessage(public)
                if matches!(public.sender(), openmls::prelude::Sender::NewMemberCommit)
        );
        for _ in 0..STATE_RETRIES {
            let record = self
                .store
                .group(group_id)
                .await?
                .ok_or_else(|| ApiError::new(ErrorCode::NotFound, "unknown group"))?;
            if record.epoch != epoch {
                return Err(StoreError::WrongEpoch {
                    current: record.epoch,
                }
                .into());
            }
            let member = self.store.is_member(group_id, sender.device_id).await?;
            if joining == member {
                return Err(if joining {
                    ApiError::forbidden("a member does not join its group again")
                } else {
                    StoreError::NotMember.into()
                });
            }
            let (message, sender_identity, mls_group_id) =
                (message.clone(), sender.clone(), mls_group_id.clone());
            let max = self.max_group_members;
            let server = self.external_sender.clone();
            let outcome = tokio::task::spawn_blocking(move || {
                process_handshake(
                    &mls_group_id,
                    &record.public_state,
                    message,
                    &sender_identity,
                    max,
                    &server,
                    joining,
                )
            })
            .await
            .map_err(|_| ApiError::new(ErrorCode::Internal, "commit validation failed"))??;

            // The joiner of an external commit needs no Welcome: it has the group already.
            let added: BTreeSet<DeviceId> = outcome
                .added
                .iter()
                .copied()
                .filter(|d| !joining || *d != sender.device_id)
                .collect();
            self.check_registered(&outcome.changed).await?;
            // The committer may have changed its own leaf (update path): same identity, same key.
            if let Some(own) = outcome
                .members
                .iter()
                .find(|(id, _, _)| id.device_id == sender.device_id)
            {
                if own.0 != sender || own.1 != device.0.signature_key {
                    return Err(ApiError::forbidden(
                        "a member may not change its identity or key",
                    ));
                }
            }
            let welcome = match (&request.welcome, added.is_empty()) {
                (Some(welcome), false) => {
                    match parse_mls(welcome)?.extract() {
                        MlsMessageBodyIn::Welcome(_) => {}
                        _ => {
                            return Err(ApiError::invalid_mls("the welcome field holds no Welcome"))
                        }
                    }
                    let bundle = v1::WelcomeBundle {
                        welcome: welcome.clone(),
                        ratchet_tree: outcome.ratchet_tree.clone(),
                    };
                    Some(WelcomeDelivery {
                        payload: parley_protocol::encode(&bundle),
                        recipients: added.iter().copied().collect(),
                    })
                }
                (None, false) => {
                    return Err(ApiError::invalid_mls(
                        "a commit that adds members needs its Welcome",
                    ))
                }
                (Some(_), true) => {
                    return Err(ApiError::invalid_mls("a Welcome without added members"))
                }
                (None, true) => None,
            };
            let submission = Submission {
                sender: sender.device_id,
                message_id,
                fingerprint: fingerprint.clone(),
                group_id,
                epoch,
                payload: request.mls_message.clone(),
                accepted_at: now_ms(),
                franking_tag: None,
                expires_at: None,
                queue_limit: self.budgets.queue_bytes.saturating_mul(2),
                transition: Some(GroupTransition {
                    joining,
                    expected_state_version: record.state_version,
                    new_epoch: outcome.new_epoch,
                    new_public_state: outcome.new_state,
                    members: store_members(&outcome.members),
                    welcome,
                }),
            };
            match self.store.accept(submission).await {
                Err(StoreError::StateChanged) => continue,
                other => return Ok(other?),
            }
        }
        Err(StoreError::StateChanged.into())
    }

    /// A page of the device's queue for `GET /v1/queue`.
    pub async fn fetch(
        &self,
        device: &Authenticated,
        after: u64,
        limit: u32,
    ) -> Result<v1::QueueBatch, ApiError> {
        self.fetch_within(device, after, limit, parley_store::MAX_PAGE_BYTES)
            .await
    }

    async fn fetch_within(
        &self,
        device: &Authenticated,
        after: u64,
        limit: u32,
        max_bytes: usize,
    ) -> Result<v1::QueueBatch, ApiError> {
        let limit = limit.clamp(1, limits::MAX_FETCH_ITEMS);
        let key = self.franking.current();
        // The stores count in i64: a larger cursor must not wrap into a negative one.
        let page = self
            .store
            .fetch_queue_within(
                device.0.device_id,
                after.min(i64::MAX as u64),
                limit,
                max_bytes,
            )
            .await?;
        // Heads only grow, so a cursor past the head is not one this server gave out (another
        // server's, or a client's bug): reading on would hide the items it is going to get.
        if after > page.head {
            return Err(beyond_head("cursor", after, page.head));
        }
        Ok(v1::QueueBatch {
            items: page
                .entries
                .iter()
                .map(|e| queue_item(e, e.seq, frank_of(e, &key)))
                .collect(),
            head: page.head,
            expired_up_to: page.expired_up_to,
        })
    }

    /// The next items for a live connection that pushed up to `after` and knows of `head`:
    /// from what this node just accepted when it holds all of them, else from the store. About
    /// [`PUSH_PAGE_BYTES`] at a time (at least one item), so that the connections of one
    /// account cannot make the server hold many pages at once.
    pub async fn push_batch(
        &self,
        device: &Authenticated,
        after: u64,
        head: u64,
        limit: u32,
    ) -> Result<v1::QueueBatch, ApiError> {
        let device_id = device.0.device_id;
        let batch = match self
            .fanout
            .local()
            .recent(device_id, after, head, limit as usize)
        {
            Some(recent) => v1::QueueBatch {
                items: recent[..fitting(
                    recent.iter().map(|(_, l)| l.entry.payload.len()),
                    PUSH_PAGE_BYTES,
                )]
                    .iter()
                    .map(|(seq, live)| {
                        let franking = live
                            .franking
                            .get_or_init(|| frank_of(&live.entry, &self.franking.current()));
                        queue_item(&live.entry, *seq, franking.clone())
                    })
                    .collect(),
                head,
                expired_up_to: 0,
            },
            None => {
                self.fetch_within(device, after, limit, PUSH_PAGE_BYTES)
                    .await?
            }
        };
        if let Some(last) = batch.items.last() {
            self.fanout.local().pushed(device_id, last.seq);
        }
        Ok(batch)
    }

    /// Acknowledges the device's queue up to `up_to`, which must not lie beyond its head: that
    /// would acknowledge items not yet queued.
    pub async fn ack(&self, device: &Authenticated, up_to: u64) -> Result<(), ApiError> {
        let head = self.store.queue_head(device.0.device_id).await?;
        if up_to > head {
            return Err(beyond_head("acknowledgement", up_to, head));
        }
        Ok(self.store.ack(device.0.device_id, up_to).await?)
    }

    pub async fn queue_depth(&self) -> Result<u64, ApiError> {
        Ok(self.store.queue_depth().await?)
    }

    pub async fn queue_head(&self, device: DeviceId) -> Result<u64, ApiError> {
        Ok(self.store.queue_head(device).await?)
    }

    /// The group's other member devices, for what `sender` tells them without storing it (a
    /// typing indicator); refused unless `sender` is a member.
    pub async fn other_members(
        &self,
        sender: DeviceId,
        group: GroupId,
    ) -> Result<Vec<DeviceId>, ApiError> {
        let mut devices = self.store.group_devices(group).await?;
        let before = devices.len();
        devices.retain(|d| *d != sender);
        if devices.len() == before {
            return Err(StoreError::NotMember.into());
        }
        Ok(devices)
    }

    /// Deletes what nobody fetched within the retention period.
    pub async fn expire(&self, retention: std::time::Duration) -> Result<u64, ApiError> {
        let now = now_ms();
        Ok(self
            .store
            .expire(now - retention.as_millis() as i64, now)
            .await?)
    }
}

/// A queue entry as the recipient at `seq` gets it.
/// Payload bytes a live push reads, and pushes, at a time: one frame's worth, so that a client
/// that does not read holds at most about one such frame on the server.
pub const PUSH_PAGE_BYTES: usize = 1024 * 1024;

/// How many of the first items, of these payload sizes, fit `max_bytes` (at least one, when
/// there is one): the stores page the same way.
fn fitting(sizes: impl IntoIterator<Item = usize>, max_bytes: usize) -> usize {
    let mut sizes = sizes.into_iter().peekable();
    let any = sizes.peek().is_some();
    let mut bytes = 0;
    let fit = sizes
        .take_while(|size| {
            bytes += size;
            bytes <= max_bytes
        })
        .count();
    fit.max(usize::from(any))
}

fn queue_item(e: &QueueEntry, seq: u64, franking: Option<v1::FrankingContext>) -> v1::QueueItem {
    v1::QueueItem {
        seq,
        kind: match e.kind {
            ItemKind::GroupMessage => v1::ItemKind::GroupMessage as i32,
            ItemKind::Welcome => v1::ItemKind::Welcome as i32,
        },
        group_id: e.group_id.to_vec(),
        group_seq: e.group_seq,
        sender_device: e.sender_device.to_vec(),
        sender_username: e.sender_username.to_string(),
        message_id: e.message_id.to_vec(),
        franking,
        accepted_at_ms: e.accepted_at,
        payload: e.payload.clone(),
    }
}

/// The frank of an application message, computed as the message goes out (no franking state is
/// kept); it binds the sender and the message's place in the group, not the recipient.
fn frank_of(
    e: &QueueEntry,
    key: &(u32, [u8; crate::franking::KEY_LEN]),
) -> Option<v1::FrankingContext> {
    let (key_id, key) = key;
    e.franking_tag.as_ref().map(|tag| {
        let context = FrankContext {
            sender_username: e.sender_username.as_str(),
            sender_device: e.sender_device.as_bytes(),
            group_id: e.group_id.as_bytes(),
            group_seq: e.group_seq,
            accepted_at_ms: e.accepted_at,
            key_id: *key_id,
        };
        v1::FrankingContext {
            key_id: *key_id,
            frank: franking::frank(key, tag, &context).to_vec(),
        }
    })
}

fn response(accepted: &parley_store::Accepted) -> v1::SubmitResponse {
    v1::SubmitResponse {
        group_id: accepted.group_id.to_vec(),
        group_seq: accepted.group_seq,
        epoch: accepted.epoch,
        accepted_at_ms: accepted.accepted_at,
        duplicate: accepted.duplicate,
    }
}

pub(crate) fn beyond_head(what: &str, seq: u64, head: u64) -> ApiError {
    ApiError::malformed(format!(
        "{what} {seq} is beyond the queue head {head}: fetch from your last processed item"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pushed_frame_holds_about_a_mebibyte_and_at_least_one_item() {
        assert_eq!(fitting([300 * 1024; 10], PUSH_PAGE_BYTES), 3);
        assert_eq!(fitting([4 * 1024 * 1024, 10], PUSH_PAGE_BYTES), 1);
        assert_eq!(fitting([], PUSH_PAGE_BYTES), 0);
    }
}
