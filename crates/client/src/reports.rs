//! Reporting a received message (message franking): the evidence bundle holds the exact payload
//! bytes, with their salt, and the frank the server put on the message. The server checks both
//! and learns nothing else.

use parley_protocol::{v1, ErrorCode, Username};
use serde::{Deserialize, Serialize};

use crate::client::Client;
use crate::db::{self, now_ms};
use crate::error::ClientError;

/// Most neighbouring messages a report carries.
pub const MAX_CONTEXT: u32 = 20;

/// A report as a file (`parley report --export`): everything the server needs to verify it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct EvidenceBundle {
    pub version: u32,
    pub reason: String,
    pub message: EvidenceMessage,
    #[serde(default)]
    pub context: Vec<EvidenceMessage>,
    /// The message's edits and its delete, each franked: every version of it.
    #[serde(default)]
    pub versions: Vec<EvidenceMessage>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct EvidenceMessage {
    /// The message id (hex), for people reading the file.
    pub id: String,
    /// The text, for people reading the file; the server reads it from `payload`.
    pub text: String,
    /// The exact decrypted payload (hex), salt included.
    pub payload: String,
    pub sender: String,
    pub sender_device: String,
    pub group_id: String,
    pub group_seq: u64,
    pub accepted_at_ms: i64,
    pub key_id: u32,
    pub frank: String,
}

fn invalid(what: &str) -> ClientError {
    ClientError::Invalid(format!("evidence bundle: {what}"))
}

impl EvidenceMessage {
    fn from_evidence(evidence: db::Evidence) -> Result<Self, ClientError> {
        let franked = evidence.franked.ok_or_else(|| {
            ClientError::Invalid(
                "this message carries no frank (only received messages can be reported)".into(),
            )
        })?;
        let m = evidence.message;
        Ok(EvidenceMessage {
            id: hex::encode(&m.id),
            text: m.text,
            payload: hex::encode(&m.payload),
            sender: m.sender,
            sender_device: hex::encode(&m.sender_device),
            group_id: hex::encode(&m.group_id),
            group_seq: m.group_seq.unwrap_or(0),
            accepted_at_ms: franked.accepted_at,
            key_id: franked.key_id,
            frank: hex::encode(franked.frank),
        })
    }

    fn to_wire(&self) -> Result<v1::ReportedMessage, ClientError> {
        let bytes = |field: &str, text: &str| {
            hex::decode(text).map_err(|_| invalid(&format!("{field} is not hex")))
        };
        Ok(v1::ReportedMessage {
            payload: bytes("payload", &self.payload)?,
            sender_username: self.sender.clone(),
            sender_device: bytes("sender_device", &self.sender_device)?,
            group_id: bytes("group_id", &self.group_id)?,
            group_seq: self.group_seq,
            accepted_at_ms: self.accepted_at_ms,
            key_id: self.key_id,
            frank: bytes("frank", &self.frank)?,
        })
    }
}

impl EvidenceBundle {
    /// The report request this bundle stands for: every hex field decoded, nothing else
    /// checked (the server verifies the franks).
    pub fn to_wire(&self) -> Result<v1::ReportRequest, ClientError> {
        if self.version != 1 {
            return Err(invalid("unknown version"));
        }
        Ok(v1::ReportRequest {
            message: Some(self.message.to_wire()?),
            reason: self.reason.clone(),
            context: self
                .context
                .iter()
                .map(EvidenceMessage::to_wire)
                .collect::<Result<_, _>>()?,
            versions: self
                .versions
                .iter()
                .map(EvidenceMessage::to_wire)
                .collect::<Result<_, _>>()?,
            files: Vec::new(),
        })
    }
}

impl Client {
    /// Builds the evidence bundle for a received message, with up to `context` neighbouring
    /// messages of the same chat.
    pub fn report_bundle(
        &self,
        message_id: &str,
        reason: &str,
        context: u32,
    ) -> Result<EvidenceBundle, ClientError> {
        if context > MAX_CONTEXT {
            return Err(ClientError::Invalid(format!(
                "at most {MAX_CONTEXT} context messages"
            )));
        }
        let id = hex::decode(message_id)
            .map_err(|_| ClientError::Invalid(format!("{message_id:?} is not a message id")))?;
        let conn = self.db();
        let mut evidence = db::evidence(&conn, &id)?
            .ok_or_else(|| ClientError::Invalid(format!("no message {message_id}")))?;
        // Every version the device keeps, each franked: the edits (whose texts the refs hold)
        // and the delete, in server order.
        let mut refs = db::refs_to(&conn, &id)?;
        refs.retain(|r| r.kind != db::RefKind::Reaction);
        refs.sort_by_key(|r| (r.at, r.group_seq));
        let mut versions = Vec::new();
        for r in refs {
            if let Some(mut version) = db::evidence(&conn, &r.id)? {
                if version.franked.is_some() && !version.message.payload.is_empty() {
                    version.message.text = r.text;
                    versions.push(version);
                }
            }
        }
        // Once the first version is purged (a week after it was replaced), the latest edit
        // stands for the message.
        if evidence.message.payload.is_empty() {
            let latest = versions
                .iter()
                .rposition(|v| !v.message.text.is_empty())
                .ok_or_else(|| {
                    ClientError::Invalid(format!(
                        "message {message_id} is no longer kept on this device"
                    ))
                })?;
            evidence = versions.remove(latest);
            versions.truncate(latest);
        }
        let (group_id, group_seq) = (
            evidence.message.group_id.clone(),
            evidence.message.group_seq.unwrap_or(0),
        );
        let neighbours = if context > 0 {
            db::neighbours(&conn, &group_id, group_seq, context)?
        } else {
            Vec::new()
        };
        Ok(EvidenceBundle {
            version: 1,
            reason: reason.to_owned(),
            message: EvidenceMessage::from_evidence(evidence)?,
            context: neighbours
                .into_iter()
                .map(EvidenceMessage::from_evidence)
                .collect::<Result<_, _>>()?,
            versions: versions
                .into_iter()
                .map(EvidenceMessage::from_evidence)
                .collect::<Result<_, _>>()?,
        })
    }

    /// Sends a report; returns the server's report id. The reported message's files go with
    /// it: fetched again from the server, or, where the server no longer has one, the copy
    /// the user saved (`saved`: index and path), checked against its hash first.
    pub async fn send_report(&self, bundle: &EvidenceBundle) -> Result<u64, ClientError> {
        self.send_report_with_files(bundle, &[]).await
    }

    /// [`Self::send_report`] with saved copies of the message's files.
    pub async fn send_report_with_files(
        &self,
        bundle: &EvidenceBundle,
        saved: &[(usize, std::path::PathBuf)],
    ) -> Result<u64, ClientError> {
        self.send_report_as(bundle, saved, false).await
    }

    /// [`Self::send_report_with_files`], leaving out the files the server no longer has and
    /// nobody saved a copy of: the message still goes, naming them and their hashes. (A report
    /// is made once per message: the ones left out cannot follow later.)
    pub async fn send_report_without_missing_files(
        &self,
        bundle: &EvidenceBundle,
        saved: &[(usize, std::path::PathBuf)],
    ) -> Result<u64, ClientError> {
        self.send_report_as(bundle, saved, true).await
    }

    async fn send_report_as(
        &self,
        bundle: &EvidenceBundle,
        saved: &[(usize, std::path::PathBuf)],
        leave_out_missing: bool,
    ) -> Result<u64, ClientError> {
        let mut request = bundle.to_wire()?;
        let payload = request
            .message
            .as_ref()
            .map(|m| m.payload.clone())
            .unwrap_or_default();
        let attachments = crate::attachments::attachments_of(&payload);
        if let Some((index, _)) = saved.iter().find(|(i, _)| *i >= attachments.len()) {
            return Err(ClientError::Invalid(format!(
                "the reported message has no file {index}"
            )));
        }
        for (index, attachment) in attachments.iter().enumerate() {
            let saved = saved.iter().find(|(i, _)| *i == index).map(|(_, p)| p);
            match self.upload_reported_file(attachment, saved).await {
                Ok(blob_id) => request.files.push(v1::ReportedFile {
                    index: index as u32,
                    blob_id,
                }),
                // Gone from the server and no copy given: the file cannot go with the report,
                // but the message still can (it names the file and its hash), if so asked.
                Err(e) if saved.is_none() && leave_out_missing => {
                    tracing::warn!(error = %e, "a file of the reported message is not included")
                }
                Err(e) => return Err(e),
            }
        }
        let response: v1::ReportResponse = self
            .authed(|| self.api.post("/v1/reports", &request, true))
            .await?;
        Ok(response.report_id)
    }

    /// Uploads a reported file's plaintext as a blob of ours; returns its id.
    async fn upload_reported_file(
        &self,
        attachment: &v1::Attachment,
        saved: Option<&std::path::PathBuf>,
    ) -> Result<Vec<u8>, ClientError> {
        use sha2::{Digest, Sha256};
        use std::io::Read;
        let temporary = self.files_dir()?.join(format!(
            "report-{}.plain",
            hex::encode(&attachment.ciphertext_sha256)
        ));
        let path = match saved {
            Some(path) => path.clone(),
            None => {
                let _ = crate::platform::remove_file(&temporary);
                self.fetch_attachment(attachment, &temporary, &|_, _| {})
                    .await
                    .map_err(|e| {
                        ClientError::Invalid(format!(
                            "cannot fetch the reported file {} again ({e}); give the copy you \
                             saved with --file, or report without it with --without-missing-files",
                            attachment.name
                        ))
                    })?;
                temporary.clone()
            }
        };
        let result = async {
            let unreadable = |e: std::io::Error| {
                ClientError::Invalid(format!("cannot read {}: {e}", path.display()))
            };
            // Checked before anything goes: a wrong copy is refused here, clearly.
            let mut hash = Sha256::new();
            std::io::copy(
                &mut crate::platform::open_file(&path).map_err(unreadable)?,
                &mut hash,
            )
            .map_err(unreadable)?;
            if hash.finalize().as_slice() != attachment.plaintext_sha256.as_slice() {
                return Err(ClientError::Invalid(format!(
                    "{} is not the reported file: its hash differs",
                    path.display()
                )));
            }
            let mut file = crate::platform::open_file(&path).map_err(unreadable)?;
            let create = v1::CreateBlob::default();
            let created: v1::CreateBlobResponse = self
                .authed(|| self.api.post("/v1/blobs", &create, true))
                .await?;
            let blob = hex::encode(&created.blob_id);
            let mut chunks = 0u32;
            let mut buffer = vec![0u8; parley_protocol::limits::MAX_BLOB_CHUNK_BYTES];
            loop {
                let mut filled = 0;
                while filled < buffer.len() {
                    match file.read(&mut buffer[filled..]) {
                        Ok(0) => break,
                        Ok(n) => filled += n,
                        Err(e) => return Err(unreadable(e)),
                    }
                }
                if filled == 0 {
                    break;
                }
                let chunk = v1::BlobChunk {
                    data: buffer[..filled].to_vec(),
                };
                let chunk_path = format!("/v1/blobs/{blob}/{chunks}");
                let _: v1::BlobStatus = self.authed(|| self.api.put(&chunk_path, &chunk)).await?;
                chunks += 1;
            }
            let seal = v1::SealBlob { chunks };
            let seal_path = format!("/v1/blobs/{blob}/seal");
            let _: v1::BlobStatus = self
                .authed(|| self.api.post(&seal_path, &seal, true))
                .await?;
            Ok(created.blob_id)
        }
        .await;
        let _ = crate::platform::remove_file(&temporary);
        result
    }

    /// Stops showing messages from an account (they are still received, kept and reportable).
    /// A name the server does not know is refused: it is a typo, and blocking it would protect
    /// from nothing. Someone we have a chat with or heard from is known already, so blocking
    /// them works offline too.
    pub async fn block(&self, user: &Username) -> Result<(), ClientError> {
        if user == self.username() {
            return Err(ClientError::Invalid("you cannot block yourself".into()));
        }
        let known = {
            let conn = self.db();
            !db::chats_named(&conn, db::ChatKind::Direct, user.as_str())?.is_empty()
                || db::has_messages_from(&conn, user.as_str())?
        };
        if !known {
            self.require_account(user).await?;
        }
        db::block(&self.db(), user.as_str(), now_ms())
    }

    /// Shows an account's messages again (those received while it was blocked stay hidden).
    pub fn unblock(&self, user: &Username) -> Result<(), ClientError> {
        if db::unblock(&self.db(), user.as_str())? {
            Ok(())
        } else {
            Err(ClientError::Invalid(format!("{user} is not blocked")))
        }
    }

    /// The accounts blocked on this device, by name.
    pub fn blocked(&self) -> Result<Vec<String>, ClientError> {
        db::blocked(&self.db())
    }

    async fn require_account(&self, user: &Username) -> Result<(), ClientError> {
        let path = format!("/v1/users/{user}");
        let found: Result<v1::UserDevices, ClientError> = self.authed(|| self.api.get(&path)).await;
        match found {
            Err(ClientError::Server(e)) if e.code == ErrorCode::NotFound => Err(
                ClientError::Invalid(format!("there is no account named {user}")),
            ),
            other => other.map(|_| ()),
        }
    }
}
