//! Verifiable reports and moderation (shared/design/franking.md).
//!
//! A report carries the exact payload bytes of a received message and the frank the server put
//! on it. The server recomputes the tag from the payload and its salt, and the frank from the tag
//! and the context, in constant time; only then does it store the reported text for moderators.
//! It never sees anything nobody reported.
//!
//! Moderators dismiss reports, suspend and unsuspend accounts, and remove a suspended account
//! from its groups: the server, listed in every group's ExternalSenders extension, issues MLS
//! Remove proposals that the remaining members' clients commit. Every action is audited.

use std::path::Path;
use std::sync::Arc;

use governor::{DefaultKeyedRateLimiter, Quota};
use openmls::prelude::tls_codec::Deserialize as _;
use openmls::prelude::tls_codec::Serialize as _;
use openmls::prelude::{
    ExternalProposal, GroupEpoch, GroupId as MlsGroupId, LeafNodeIndex, MlsMessageIn,
    ProcessedMessageContent, SenderExtensionIndex,
};
use openmls_basic_credential::SignatureKeyPair;
use openmls_rust_crypto::{OpenMlsRustCrypto, RustCrypto};
use parley_mls::franking::{self, FrankContext};
use parley_mls::DeviceIdentity;
use parley_protocol::{limits, v1, DeviceId, ErrorCode, GroupId, MessageId, Username};
use parley_store::{
    AuditEntry, GroupTransition, NewReport, Report, ReportStatus, Store, StoreError, Submission,
    SYSTEM_DEVICE, SYSTEM_USERNAME,
};
use prost::Message as _;
use serde::Serialize;

use crate::accounts::Authenticated;
use crate::fanout::{Announced, AnnouncingFanout, Fanout};
use crate::franking::FrankingKeys;
use crate::public_state::PublicGroupState;
use crate::{now_ms, ApiError};

const SIGNER_FILE: &str = "server-signer.json";
/// Most neighbouring messages one report may carry.
const MAX_CONTEXT: usize = 20;
const MAX_REASON_CHARS: usize = 1000;

/// The server's MLS identity as an external sender: its own signature key, kept in the data
/// directory (mode 0600), and the credential `parley:000…0`.
pub struct ServerIdentity {
    pub signer: SignatureKeyPair,
    pub identity: DeviceIdentity,
}

impl ServerIdentity {
    pub fn open(data_dir: &Path) -> Result<ServerIdentity, crate::ServerError> {
        let path = data_dir.join(SIGNER_FILE);
        if !path.exists() {
            let signer = SignatureKeyPair::new(openmls::prelude::SignatureScheme::ED25519)
                .map_err(|e| {
                    crate::ServerError::Config(format!("cannot create the server key: {e:?}"))
                })?;
            let bytes = serde_json::to_vec(&signer).map_err(|e| {
                crate::ServerError::Config(format!("cannot store the server key: {e}"))
            })?;
            // Nodes starting together on a shared directory: the first one creates the key.
            crate::franking::create_private_file(&path, &bytes)?;
        }
        let mut signer = None;
        for _ in 0..20 {
            match std::fs::read(&path)
                .ok()
                .and_then(|text| serde_json::from_slice::<SignatureKeyPair>(&text).ok())
            {
                Some(found) => {
                    signer = Some(found);
                    break;
                }
                // Another node may be writing it this instant.
                None => std::thread::sleep(std::time::Duration::from_millis(25)),
            }
        }
        let signer = signer.ok_or_else(|| {
            crate::ServerError::Config(format!("{} is malformed", path.display()))
        })?;
        let identity = DeviceIdentity::new(
            Username::parse(SYSTEM_USERNAME)
                .map_err(|e| crate::ServerError::Config(e.to_string()))?,
            SYSTEM_DEVICE,
        );
        Ok(ServerIdentity { signer, identity })
    }

    pub fn external_sender(&self) -> openmls::prelude::ExternalSender {
        openmls::prelude::ExternalSender::new(
            self.signer.to_public_vec().into(),
            self.identity.to_credential(),
        )
    }

    pub fn info(&self) -> v1::ServerInfo {
        v1::ServerInfo {
            external_sender_key: self.signer.to_public_vec(),
            external_sender_identity: self.identity.to_bytes(),
        }
    }
}

/// One verified message of a report, as the moderator sees it.
#[derive(Debug, Clone, Serialize)]
pub struct VerifiedMessage {
    pub sender: String,
    pub text: String,
    pub group_seq: u64,
    pub accepted_at_ms: i64,
    /// Set for a version of the reported message: "edit" (a later text) or "delete"; "file"
    /// for one of its files.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<crate::reported_files::VerifiedFile>,
}

/// What a verified payload is, as far as a report needs to know.
enum VerifiedBody {
    Text,
    /// An edit or delete of the message with this id.
    Version(Vec<u8>),
}

pub struct Moderation {
    store: Arc<dyn Store>,
    keys: Arc<FrankingKeys>,
    identity: Arc<ServerIdentity>,
    fanout: Arc<dyn Fanout>,
    /// In `parley admin`, which holds no live connections: what the nodes must be told.
    announcer: Option<Arc<AnnouncingFanout>>,
    reporters: DefaultKeyedRateLimiter<DeviceId>,
    /// Where reported files are kept.
    objects: Option<Arc<dyn object_store::ObjectStore>>,
    /// Console sign-in attempts per client address: guessing a token is throttled.
    sign_ins: DefaultKeyedRateLimiter<std::net::IpAddr>,
}

/// One console sign-in attempt the throttle allowed; [`Moderation::sign_in`] spends it.
pub struct SignInAttempt {
    client: std::net::IpAddr,
}

/// How long a console session lasts after sign-in.
pub const CONSOLE_SESSION_MS: i64 = 8 * 3600 * 1000;
/// Console sign-in attempts per client address: a burst of this many, then one every 6 s.
const SIGN_IN_BURST: u32 = 10;

fn forged(why: &str) -> ApiError {
    ApiError::new(ErrorCode::Forbidden, format!("report rejected: {why}"))
}

impl Moderation {
    pub fn new(
        store: Arc<dyn Store>,
        keys: Arc<FrankingKeys>,
        identity: Arc<ServerIdentity>,
        fanout: Arc<dyn Fanout>,
    ) -> Self {
        let quota =
            Quota::per_minute(std::num::NonZeroU32::new(20).unwrap_or(std::num::NonZeroU32::MIN))
                .allow_burst(std::num::NonZeroU32::new(20).unwrap_or(std::num::NonZeroU32::MIN));
        Moderation {
            store,
            keys,
            identity,
            fanout,
            announcer: None,
            objects: None,
            reporters: DefaultKeyedRateLimiter::keyed(quota),
            sign_ins: DefaultKeyedRateLimiter::keyed(
                Quota::per_minute(std::num::NonZeroU32::MIN.saturating_add(9))
                    .allow_burst(std::num::NonZeroU32::MIN.saturating_add(SIGN_IN_BURST - 1)),
            ),
        }
    }

    /// Where reported files are kept (a server's object store; `parley admin` has none).
    pub fn with_objects(mut self, objects: Arc<dyn object_store::ObjectStore>) -> Self {
        self.objects = Some(objects);
        self
    }

    /// The bytes of file `index` of report `id`, for a moderator.
    pub async fn report_file(
        &self,
        id: u64,
        index: usize,
    ) -> Result<Option<(crate::reported_files::VerifiedFile, bytes::Bytes)>, ApiError> {
        let (Some(report), Some(objects)) = (self.store.report(id).await?, &self.objects) else {
            return Ok(None);
        };
        let files: Vec<crate::reported_files::VerifiedFile> =
            serde_json::from_str::<Vec<serde_json::Value>>(&report.report.context)
                .unwrap_or_default()
                .into_iter()
                .filter_map(|entry| serde_json::from_value(entry.get("file")?.clone()).ok())
                .collect();
        let Some(file) = files.into_iter().nth(index) else {
            return Ok(None);
        };
        let bytes = crate::reported_files::open(objects, &file).await?;
        Ok(Some((file, bytes)))
    }

    /// Moderation in a process that serves no live connections (`parley admin`): what the
    /// nodes must hear at once goes to `announcer`, and out with
    /// [`Moderation::finish_announcements`].
    pub fn announcing(
        store: Arc<dyn Store>,
        keys: Arc<FrankingKeys>,
        identity: Arc<ServerIdentity>,
        announcer: Arc<AnnouncingFanout>,
    ) -> Self {
        let mut moderation = Self::new(store, keys, identity, announcer.clone());
        moderation.announcer = Some(announcer);
        moderation
    }

    /// Tells the nodes what the actions so far must let them know (ended sessions, hints),
    /// and says who heard it. Nothing to do in a server process, whose fanout announces at
    /// once.
    pub async fn finish_announcements(&self) -> Announced {
        match &self.announcer {
            Some(announcer) => announcer.finish().await,
            None => Announced::Nothing,
        }
    }

    /// Checks one message of a report: its frank under the key it names, and that the payload
    /// names the same sender as the context. Returns the verified text.
    fn verify(&self, message: &v1::ReportedMessage) -> Result<VerifiedMessage, ApiError> {
        match self.verify_any(message)? {
            (verified, VerifiedBody::Text) => Ok(verified),
            _ => Err(forged("only text messages can be reported")),
        }
    }

    /// Checks one message of a report, of any kind a report may carry; returns its payload's
    /// message id too.
    fn verify_any(
        &self,
        message: &v1::ReportedMessage,
    ) -> Result<(VerifiedMessage, VerifiedBody), ApiError> {
        let key = self
            .keys
            .key(message.key_id)
            .ok_or_else(|| forged("unknown or retired franking key"))?;
        let payload = v1::AppPayload::decode(message.payload.as_slice())
            .map_err(|_| forged("payload does not parse"))?;
        if payload.salt.len() != franking::SALT_LEN {
            return Err(forged("bad salt"));
        }
        let tag = franking::franking_tag(&payload.salt, &message.payload);
        let context = FrankContext {
            sender_username: &message.sender_username,
            sender_device: &message.sender_device,
            group_id: &message.group_id,
            group_seq: message.group_seq,
            accepted_at_ms: message.accepted_at_ms,
            key_id: message.key_id,
        };
        if !franking::verify_frank(&key, &tag, &context, &message.frank) {
            return Err(forged("the frank does not match this message"));
        }
        if payload.sender_username != message.sender_username
            || payload.sender_device != message.sender_device
        {
            return Err(forged("the payload names another sender"));
        }
        let (text, version, body) = match payload.body {
            Some(v1::app_payload::Body::Text(body)) => (body.text, None, VerifiedBody::Text),
            Some(v1::app_payload::Body::Edit(edit)) => {
                (edit.text, Some("edit"), VerifiedBody::Version(edit.target))
            }
            Some(v1::app_payload::Body::Delete(delete)) => (
                String::new(),
                Some("delete"),
                VerifiedBody::Version(delete.target),
            ),
            _ => return Err(forged("only text messages can be reported")),
        };
        let verified = VerifiedMessage {
            sender: message.sender_username.clone(),
            text,
            group_seq: message.group_seq,
            accepted_at_ms: message.accepted_at_ms,
            version,
            file: None,
        };
        Ok((verified, body))
    }

    /// The reported message and its versions (its edits and its delete), each verified. The
    /// reported message is its first version, or, once the device purged that, its latest edit.
    fn verify_versions(
        &self,
        message: &v1::ReportedMessage,
        versions: &[v1::ReportedMessage],
    ) -> Result<(VerifiedMessage, Vec<VerifiedMessage>), ApiError> {
        if versions.len() > limits::MAX_REPORTED_VERSIONS {
            return Err(ApiError::new(
                ErrorCode::TooLarge,
                format!("at most {} versions", limits::MAX_REPORTED_VERSIONS),
            ));
        }
        let (mut reported, body) = self.verify_any(message)?;
        let original = match body {
            VerifiedBody::Text => v1::AppPayload::decode(message.payload.as_slice())
                .map(|p| p.message_id)
                .map_err(|_| forged("payload does not parse"))?,
            VerifiedBody::Version(target) if reported.version == Some("edit") => target,
            VerifiedBody::Version(_) => return Err(forged("a delete cannot be reported")),
        };
        // As the moderator reads it: the reported text, whichever version it is.
        reported.version = None;
        let mut verified = Vec::new();
        for version in versions {
            if version.group_id != message.group_id {
                return Err(forged("a version from another chat"));
            }
            let (checked, body) = self.verify_any(version)?;
            let fits = match body {
                VerifiedBody::Version(target) => target == original,
                VerifiedBody::Text => false,
            };
            // Only the sender edits; a delete may come from a group admin.
            if !fits || (checked.version == Some("edit") && checked.sender != reported.sender) {
                return Err(forged("a version that is not of the reported message"));
            }
            verified.push(checked);
        }
        verified.sort_by_key(|v| v.group_seq);
        Ok((reported, verified))
    }

    pub async fn report(
        &self,
        reporter: &Authenticated,
        request: v1::ReportRequest,
    ) -> Result<v1::ReportResponse, ApiError> {
        self.reporters
            .check_key(&reporter.0.device_id)
            .map_err(|_| {
                ApiError::new(ErrorCode::RateLimited, "too many reports; try again later")
            })?;
        let message = request
            .message
            .as_ref()
            .ok_or_else(|| ApiError::malformed("a report needs a message"))?;
        if request.context.len() > MAX_CONTEXT {
            return Err(ApiError::new(
                ErrorCode::TooLarge,
                format!("at most {MAX_CONTEXT} context messages"),
            ));
        }
        let reason: String = request
            .reason
            .chars()
            .filter(|c| !c.is_control())
            .take(MAX_REASON_CHARS)
            .collect();
        let group_id = GroupId::from_slice(&message.group_id)
            .map_err(|e| ApiError::malformed(e.to_string()))?;
        let accused_device = DeviceId::from_slice(&message.sender_device)
            .map_err(|e| ApiError::malformed(e.to_string()))?;
        let accused =
            Username::parse(&message.sender_username).map_err(|_| forged("bad sender name"))?;
        let (verified, versions) = self.verify_versions(message, &request.versions)?;
        let mut context = Vec::new();
        for neighbour in &request.context {
            if neighbour.group_id != message.group_id {
                return Err(forged("context from another chat"));
            }
            context.push(self.verify(neighbour)?);
        }
        context.extend(versions);
        // Checked before any file is kept: a refused report leaves nothing behind.
        if !self.store.is_member(group_id, reporter.0.device_id).await? {
            return Err(ApiError::new(
                ErrorCode::NotMember,
                "report rejected: the reporter is not a member of that chat",
            ));
        }
        if !request.files.is_empty() {
            let objects = self.objects.as_ref().ok_or_else(|| {
                ApiError::new(ErrorCode::Unavailable, "reported files cannot be kept here")
            })?;
            let attachments =
                match v1::AppPayload::decode(message.payload.as_slice()).map(|p| p.body) {
                    Ok(Some(v1::app_payload::Body::Text(text))) => text.attachments,
                    _ => Vec::new(),
                };
            for file in crate::reported_files::keep(
                &self.store,
                objects,
                reporter,
                &attachments,
                &request.files,
            )
            .await?
            {
                context.push(VerifiedMessage {
                    sender: verified.sender.clone(),
                    text: String::new(),
                    group_seq: message.group_seq,
                    accepted_at_ms: message.accepted_at_ms,
                    version: Some("file"),
                    file: Some(file),
                });
            }
        }
        let created = self
            .store
            .create_report(NewReport {
                created_at: now_ms(),
                reporter: reporter.0.username.clone(),
                accused,
                accused_device,
                group_id,
                group_seq: message.group_seq,
                message_accepted_at: message.accepted_at_ms,
                text: verified.text,
                reason,
                context: serde_json::to_string(&context).unwrap_or_else(|_| "[]".into()),
            })
            .await;
        if created.is_err() {
            // Not stored (a duplicate, the store down): its files go again.
            if let Some(objects) = &self.objects {
                let kept: Vec<_> = context.iter().filter_map(|m| m.file.clone()).collect();
                crate::reported_files::forget(objects, &kept).await;
            }
        }
        let id = created.map_err(|e| match e {
            StoreError::DuplicateReport => {
                ApiError::new(ErrorCode::Replay, "report rejected: already reported")
            }
            other => other.into(),
        })?;
        tracing::info!(report = id, group = %group_id, "verified report received");
        Ok(v1::ReportResponse { report_id: id })
    }

    pub async fn reports(&self, status: Option<ReportStatus>) -> Result<Vec<Report>, ApiError> {
        Ok(self.store.reports(status).await?)
    }

    pub async fn report_by_id(&self, id: u64) -> Result<Option<Report>, ApiError> {
        Ok(self.store.report(id).await?)
    }

    fn audit(moderator: &str, action: &str, subject: &str) -> AuditEntry {
        AuditEntry {
            at: now_ms(),
            moderator: moderator.into(),
            action: action.into(),
            subject: subject.into(),
        }
    }

    pub async fn dismiss(&self, moderator: &str, id: u64) -> Result<bool, ApiError> {
        let audit = Self::audit(moderator, "dismiss report", &id.to_string());
        Ok(self
            .store
            .set_report_status(id, ReportStatus::Dismissed, audit)
            .await?)
    }

    /// Suspends an account: its sessions end, it cannot log in or send, and its live
    /// connections on every node close at once. Open reports against it are marked actioned.
    pub async fn suspend(&self, moderator: &str, user: &Username) -> Result<bool, ApiError> {
        if user.as_str() == SYSTEM_USERNAME {
            return Err(ApiError::forbidden(
                "the server's own account cannot be suspended",
            ));
        }
        self.require_account(user).await?;
        let changed = self
            .store
            .set_suspended(user, true, Self::audit(moderator, "suspend", user.as_str()))
            .await?;
        // Also when it was suspended already: an earlier announcement may have been lost.
        self.fanout.end_sessions(user);
        for report in self.store.reports(Some(ReportStatus::Open)).await? {
            if report.report.accused == *user {
                let audit = Self::audit(moderator, "action report", &report.id.to_string());
                self.store
                    .set_report_status(report.id, ReportStatus::Actioned, audit)
                    .await?;
            }
        }
        Ok(changed)
    }

    pub async fn unsuspend(&self, moderator: &str, user: &Username) -> Result<bool, ApiError> {
        self.require_account(user).await?;
        Ok(self
            .store
            .set_suspended(
                user,
                false,
                Self::audit(moderator, "unsuspend", user.as_str()),
            )
            .await?)
    }

    /// A moderator who names an account that does not exist has mistyped it: say so rather than
    /// report "nothing changed".
    async fn require_account(&self, user: &Username) -> Result<(), ApiError> {
        if self.store.user_devices(user).await?.is_empty() {
            return Err(ApiError::new(
                ErrorCode::NotFound,
                format!("there is no account named {user}"),
            ));
        }
        Ok(())
    }

    /// Proposes the removal of a suspended account from every group of three or more accounts
    /// it is in. Returns how many groups got a proposal; the members' clients commit them.
    ///
    /// A chat of two accounts (every 1:1 chat) is left alone: removing one of two would leave
    /// the other writing into a chat nobody reads, with each message shown as "sent". The
    /// suspension already stops the account's sending; what its partner sends stays queued for
    /// it and is read if the suspension is lifted.
    pub async fn remove_from_groups(
        &self,
        moderator: &str,
        user: &Username,
    ) -> Result<usize, ApiError> {
        let suspended = self
            .store
            .user_devices(user)
            .await?
            .first()
            .is_some_and(|d| d.suspended);
        if !suspended {
            return Err(ApiError::forbidden(
                "only a suspended account is removed from its groups",
            ));
        }
        let memberships = self.store.memberships(user).await?;
        let mut proposed = 0;
        for membership in &memberships {
            match self.accounts_in(membership.group_id).await {
                Ok(accounts) if accounts <= 2 => {
                    tracing::info!(group = %membership.group_id, "chat of two left alone");
                    continue;
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(group = %membership.group_id, error = %e.0, "group unreadable");
                    continue;
                }
            }
            match self
                .propose_removal(membership.group_id, &membership.leaves)
                .await
            {
                Ok(()) => proposed += 1,
                Err(e) => {
                    tracing::warn!(group = %membership.group_id, error = %e.0, "removal proposal failed")
                }
            }
        }
        self.store
            .audit(Self::audit(moderator, "remove from groups", user.as_str()))
            .await?;
        Ok(proposed)
    }

    /// How many accounts (not devices) a group has, from its public state.
    async fn accounts_in(&self, group_id: GroupId) -> Result<usize, ApiError> {
        let record = self
            .store
            .group(group_id)
            .await?
            .ok_or_else(|| ApiError::new(ErrorCode::NotFound, "unknown group"))?;
        let public = PublicGroupState::load(
            &MlsGroupId::from_slice(group_id.as_bytes()),
            &record.public_state,
        )
        .map_err(|_| ApiError::new(ErrorCode::Internal, "group state unreadable"))?;
        let accounts: std::collections::BTreeSet<Username> = public
            .group
            .members()
            .filter_map(|m| DeviceIdentity::from_credential(&m.credential).ok())
            .map(|id| id.username)
            .collect();
        Ok(accounts.len())
    }

    async fn propose_removal(&self, group_id: GroupId, leaves: &[u32]) -> Result<(), ApiError> {
        for leaf in leaves {
            let mut proposed = false;
            for _ in 0..8 {
                let record = self
                    .store
                    .group(group_id)
                    .await?
                    .ok_or_else(|| ApiError::new(ErrorCode::NotFound, "unknown group"))?;
                let identity = self.identity.clone();
                let leaf = *leaf;
                let ExternalRemoval {
                    proposal,
                    new_state,
                    members,
                } = tokio::task::spawn_blocking(move || {
                    external_removal(
                        &identity.signer,
                        group_id,
                        record.epoch,
                        &record.public_state,
                        leaf,
                    )
                })
                .await
                .map_err(|_| ApiError::new(ErrorCode::Internal, "proposal failed"))??;
                let submission = Submission {
                    sender: SYSTEM_DEVICE,
                    message_id: MessageId::from_bytes(rand::random()),
                    fingerprint: proposal.clone(),
                    group_id,
                    epoch: record.epoch,
                    payload: proposal,
                    accepted_at: now_ms(),
                    // A moderator's removal goes through however full the queues are.
                    queue_limit: u64::MAX,
                    expires_at: None,
                    transition: Some(GroupTransition {
                        joining: false,
                        expected_state_version: record.state_version,
                        new_epoch: record.epoch,
                        new_public_state: new_state,
                        members,
                        welcome: None,
                    }),
                    franking_tag: None,
                };
                match self.store.accept(submission).await {
                    Ok(accepted) => {
                        self.fanout.publish(accepted.deliveries.clone(), None);
                        proposed = true;
                        break;
                    }
                    Err(StoreError::StateChanged) | Err(StoreError::WrongEpoch { .. }) => continue,
                    Err(e) => return Err(e.into()),
                }
            }
            if !proposed {
                return Err(ApiError::new(
                    ErrorCode::Unavailable,
                    "the group kept changing; removal not proposed",
                ));
            }
        }
        Ok(())
    }
}

/// A server proposal with the group's public state after queueing it, and its (unchanged) members.
struct ExternalRemoval {
    proposal: Vec<u8>,
    new_state: Vec<u8>,
    members: Vec<parley_store::GroupMember>,
}

/// Builds an external Remove proposal for `leaf`, signed by the server, and queues it in the
/// group's public state so that the commit that covers it validates.
fn external_removal(
    signer: &SignatureKeyPair,
    group_id: GroupId,
    epoch: u64,
    state: &[u8],
    leaf: u32,
) -> Result<ExternalRemoval, ApiError> {
    let mls_group_id = MlsGroupId::from_slice(group_id.as_bytes());
    let proposal = ExternalProposal::new_remove::<OpenMlsRustCrypto>(
        LeafNodeIndex::new(leaf),
        mls_group_id.clone(),
        GroupEpoch::from(epoch),
        signer,
        SenderExtensionIndex::new(0),
    )
    .map_err(|e| {
        ApiError::new(
            ErrorCode::Internal,
            format!("cannot build the proposal: {e}"),
        )
    })?
    .tls_serialize_detached()
    .map_err(|_| ApiError::new(ErrorCode::Internal, "cannot encode the proposal"))?;
    let mut public = PublicGroupState::load(&mls_group_id, state)
        .map_err(|_| ApiError::new(ErrorCode::Internal, "group state unreadable"))?;
    let message = MlsMessageIn::tls_deserialize_exact(proposal.as_slice())
        .ok()
        .and_then(|m| m.try_into_protocol_message().ok())
        .ok_or_else(|| ApiError::new(ErrorCode::Internal, "own proposal does not parse"))?;
    let processed = public
        .group
        .process_message(&RustCrypto::default(), message)
        .map_err(|e| {
            ApiError::invalid_mls(format!("the group refuses the server's proposal: {e}"))
        })?;
    match processed.into_content() {
        ProcessedMessageContent::ProposalMessage(queued)
        | ProcessedMessageContent::ExternalJoinProposalMessage(queued) => {
            public
                .group
                .add_proposal(&public.storage, *queued)
                .map_err(|_| ApiError::new(ErrorCode::Internal, "cannot queue the proposal"))?;
        }
        _ => {
            return Err(ApiError::new(
                ErrorCode::Internal,
                "unexpected processing result",
            ))
        }
    }
    let members = crate::delivery::store_members(&crate::delivery::member_list(&public.group)?);
    Ok(ExternalRemoval {
        proposal,
        new_state: public.encode(),
        members,
    })
}

impl Moderation {
    /// Creates an admin token for the web console; only its hash is stored.
    pub async fn create_admin_token(&self, label: &str) -> Result<String, ApiError> {
        let token = hex::encode(rand::random::<[u8; 32]>());
        self.store
            .add_admin_token(
                crate::accounts::token_hash(&token),
                label.to_owned(),
                now_ms(),
            )
            .await?;
        Ok(token)
    }

    /// The moderator behind an admin token.
    pub async fn moderator(&self, token: &str) -> Result<Option<String>, ApiError> {
        if token.len() != 64 {
            return Ok(None);
        }
        Ok(self
            .store
            .admin_token(&crate::accounts::token_hash(token))
            .await?)
    }

    /// A console sign-in attempt from `client`, if its address is within the throttle
    /// (guessing a token is slow). Asked for before the sign-in form is read.
    pub fn sign_in_attempt(&self, client: std::net::IpAddr) -> Result<SignInAttempt, ApiError> {
        if self.sign_ins.check_key(&client).is_err() {
            tracing::warn!(%client, "console sign-in throttled");
            return Err(ApiError::new(
                ErrorCode::RateLimited,
                "too many sign-in attempts; wait a minute",
            ));
        }
        Ok(SignInAttempt { client })
    }

    /// Signs a moderator in to the console with an admin token: returns a fresh session id (the
    /// cookie's value, never the token itself), or None for a wrong token. Each attempt is one
    /// the throttle allowed ([`Moderation::sign_in_attempt`]); failures are logged.
    pub async fn sign_in(
        &self,
        attempt: SignInAttempt,
        token: &str,
    ) -> Result<Option<String>, ApiError> {
        let SignInAttempt { client } = attempt;
        let session = hex::encode(rand::random::<[u8; 32]>());
        let now = now_ms();
        let valid = token.len() == 64
            && self
                .store
                .create_admin_session(
                    crate::accounts::token_hash(&session),
                    crate::accounts::token_hash(token),
                    now,
                    now + CONSOLE_SESSION_MS,
                )
                .await?;
        if !valid {
            tracing::warn!(%client, "console sign-in failed: not a valid admin token");
            return Ok(None);
        }
        Ok(Some(session))
    }

    /// The moderator signed in to a console session that has not expired.
    pub async fn console_moderator(&self, session: &str) -> Result<Option<String>, ApiError> {
        if session.len() != 64 {
            return Ok(None);
        }
        let hash = crate::accounts::token_hash(session);
        Ok(self.store.admin_session(&hash, now_ms()).await?)
    }

    /// Ends a console session.
    pub async fn sign_out(&self, session: &str) -> Result<(), ApiError> {
        let hash = crate::accounts::token_hash(session);
        Ok(self.store.end_admin_session(&hash).await?)
    }

    /// Revokes every admin token labelled `label`; their console sessions end with them.
    pub async fn revoke_admin_token(&self, moderator: &str, label: &str) -> Result<u64, ApiError> {
        let audit = Self::audit(moderator, "revoke admin token", label);
        let revoked = self.store.revoke_admin_tokens(label, audit).await?;
        if revoked == 0 {
            return Err(ApiError::new(
                ErrorCode::NotFound,
                format!("there is no admin token labelled {label}"),
            ));
        }
        Ok(revoked)
    }

    /// Adds a franking key and makes it current, with its audit entry.
    pub async fn rotate_franking_key(
        &self,
        moderator: &str,
        data_dir: &Path,
    ) -> Result<u32, ApiError> {
        let id = FrankingKeys::rotate(data_dir)
            .map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string()))?;
        self.store
            .audit(Self::audit(
                moderator,
                "rotate franking key",
                &id.to_string(),
            ))
            .await?;
        Ok(id)
    }

    pub async fn audit_log(&self) -> Result<Vec<AuditEntry>, ApiError> {
        Ok(self.store.audit_log().await?)
    }
}

impl Moderation {
    pub async fn is_suspended(&self, user: &Username) -> Result<bool, ApiError> {
        Ok(self
            .store
            .user_devices(user)
            .await?
            .first()
            .is_some_and(|d| d.suspended))
    }
}
