//! Sending and saving files: a file is sealed on this device, its ciphertext uploaded in parts
//! (resumable: an interrupted upload goes on from the server's count at the next sync), and
//! only then is the message that carries its key sent. Saving downloads the parts (resumable
//! too), checks the ciphertext's and the plaintext's hashes and writes the file, all or nothing,
//! then tells the server this device has it.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use parley_protocol::v1;

use super::check::{content_type_for, safe_file_name};
use super::crypto::{seal_file, SealedFile};
use crate::client::Client;
use crate::db;
use crate::error::ClientError;
use crate::names::ChatRef;
use crate::platform as files;
use crate::views::MessageView;

/// Where a transfer stands, for a progress display.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    pub done: u64,
    pub total: u64,
}

/// Called after each part.
pub type OnProgress<'a> = &'a (dyn Fn(&str, Progress) + Send + Sync);

fn io(what: &str, path: &Path, e: std::io::Error) -> ClientError {
    ClientError::Invalid(format!("{what} {}: {e}", path.display()))
}

impl Client {
    pub(crate) fn files_dir(&self) -> Result<PathBuf, ClientError> {
        let dir = self.home.join("files");
        files::ensure_private_dir(&dir).map_err(|e| io("cannot create", &dir, e))?;
        Ok(dir)
    }

    /// Sends the file at `path` (with a caption, answering `reply_to` when given). The
    /// message goes once the whole ciphertext is on the server; an upload interrupted before
    /// goes on with the next sync, and the message with it.
    pub async fn send_file(
        &self,
        chat: &ChatRef,
        path: &Path,
        caption: Option<&str>,
        reply_to: Option<&str>,
        progress: OnProgress<'_>,
    ) -> Result<MessageView, ClientError> {
        let caption = caption.unwrap_or_default();
        if caption.len() > parley_protocol::limits::MAX_TEXT_BYTES {
            return Err(ClientError::Invalid("the caption is too long".into()));
        }
        let name = safe_file_name(path);
        let size = files::file_len(path).map_err(|e| io("cannot read", path, e))?;
        if size > parley_protocol::limits::DEFAULT_MAX_ATTACHMENT_BYTES {
            return Err(ClientError::Invalid(format!(
                "{name} is larger than {} MiB",
                parley_protocol::limits::DEFAULT_MAX_ATTACHMENT_BYTES >> 20
            )));
        }
        let (group_id, reply_to) = self.sending_target(chat, reply_to).await?;
        let sealed_path = self.files_dir()?.join(format!(
            "outgoing-{}.sealed",
            crate::outgoing::outbox::random_id().to_hex()
        ));
        let sealed = {
            let (source, target) = (path.to_owned(), sealed_path.clone());
            crate::platform::run_blocking(move || seal_file(&source, &target)).await??
        };
        let attachment = v1::Attachment {
            name: name.clone(),
            content_type: content_type_for(&name).to_owned(),
            size: sealed.size,
            key: sealed.key.to_vec(),
            chunk_bytes: sealed.chunk_bytes,
            ciphertext_sha256: sealed.ciphertext_sha256.to_vec(),
            plaintext_sha256: sealed.plaintext_sha256.to_vec(),
        };
        let file = db::OutgoingFile {
            group_id,
            sealed_path: sealed_path.to_string_lossy().into_owned(),
            attachment,
            caption: caption.to_owned(),
            reply_to,
            created_at: db::now_ms(),
        };
        db::insert_outgoing_file(&self.db(), &file)?;
        let _claim = self
            .claim_upload(&file.attachment.ciphertext_sha256)
            .ok_or_else(|| ClientError::Invalid("this file is being sent already".into()))?;
        self.finish_outgoing_file(file, progress).await
    }

    /// Marks an upload as this call's until the claim drops; `None` if another call has it.
    fn claim_upload(&self, hash: &[u8]) -> Option<UploadClaim<'_>> {
        let mut uploading = self.uploading.lock().unwrap_or_else(|p| p.into_inner());
        uploading
            .insert(hash.to_vec())
            .then(|| UploadClaim(self, hash.to_vec()))
    }

    /// Goes on with uploads an earlier run left unfinished; returns the messages sent.
    pub async fn resume_uploads(
        &self,
        progress: OnProgress<'_>,
    ) -> Result<Vec<MessageView>, ClientError> {
        let files = db::outgoing_files(&self.db())?;
        let mut sent = Vec::new();
        for file in files {
            // One the user is sending right now is that call's to finish.
            let Some(_claim) = self.claim_upload(&file.attachment.ciphertext_sha256) else {
                continue;
            };
            match self.finish_outgoing_file(file.clone(), progress).await {
                Ok(view) => sent.push(view),
                Err(e) if e.is_transient() => {
                    tracing::info!(error = %e, "upload interrupted; the next sync goes on");
                }
                // Refused for good (the file changed, a quota, a chat left): given up, so that
                // it does not block every later sync.
                Err(e) => {
                    tracing::warn!(error = %e, file = %file.attachment.name, "upload given up");
                    db::delete_outgoing_file(&self.db(), &file.attachment.ciphertext_sha256)?;
                    let _ = files::remove_file(Path::new(&file.sealed_path));
                }
            }
        }
        Ok(sent)
    }

    /// Uploads what the server lacks of the file, then sends its message and forgets the
    /// upload in the transaction that queues the message.
    async fn finish_outgoing_file(
        &self,
        file: db::OutgoingFile,
        progress: OnProgress<'_>,
    ) -> Result<MessageView, ClientError> {
        let sealed_path = PathBuf::from(&file.sealed_path);
        let hash = file.attachment.ciphertext_sha256.clone();
        let size = files::file_len(&sealed_path).map_err(|e| io("cannot read", &sealed_path, e))?;
        self.upload(&file, &sealed_path, size, progress).await?;
        let body = v1::app_payload::Body::Text(v1::TextBody {
            text: file.caption.clone(),
            reply_to: file.reply_to.clone(),
            attachments: vec![file.attachment.clone()],
        });
        let attachment = file.attachment.clone();
        let view = self
            .send_body_with(&file.group_id, body, true, None, move |tx| {
                if !db::bind_attachment_key(tx, &attachment)? {
                    return Err(ClientError::Invalid(
                        "this file's ciphertext is known under another key".into(),
                    ));
                }
                db::delete_outgoing_file(tx, &attachment.ciphertext_sha256)
            })
            .await;
        if db::outgoing_files(&self.db())?
            .iter()
            .all(|f| f.attachment.ciphertext_sha256 != hash)
        {
            let _ = files::remove_file(&sealed_path);
        }
        view
    }

    /// For tests: seals and uploads a file to the chat of message `in_chat_of` without
    /// sending any message, and returns what a message naming it would carry.
    #[cfg(feature = "test-hooks")]
    pub async fn upload_unchecked(
        &self,
        in_chat_of: &str,
        path: &Path,
    ) -> Result<v1::Attachment, ClientError> {
        let target = self.shown_message(in_chat_of)?;
        let sealed_path = self.files_dir()?.join(format!(
            "outgoing-{}.sealed",
            crate::outgoing::outbox::random_id().to_hex()
        ));
        let sealed = seal_file(path, &sealed_path)?;
        let attachment = v1::Attachment {
            name: safe_file_name(path),
            content_type: content_type_for(&safe_file_name(path)).to_owned(),
            size: sealed.size,
            key: sealed.key.to_vec(),
            chunk_bytes: sealed.chunk_bytes,
            ciphertext_sha256: sealed.ciphertext_sha256.to_vec(),
            plaintext_sha256: sealed.plaintext_sha256.to_vec(),
        };
        let file = db::OutgoingFile {
            group_id: target.group_id,
            sealed_path: sealed_path.to_string_lossy().into_owned(),
            attachment,
            caption: String::new(),
            reply_to: None,
            created_at: db::now_ms(),
        };
        let size = files::file_len(&sealed_path).map_err(|e| io("cannot read", &sealed_path, e))?;
        self.upload(&file, &sealed_path, size, &|_, _| {}).await?;
        let _ = files::remove_file(&sealed_path);
        Ok(file.attachment)
    }

    async fn upload(
        &self,
        file: &db::OutgoingFile,
        sealed_path: &Path,
        size: u64,
        progress: OnProgress<'_>,
    ) -> Result<(), ClientError> {
        let hash = &file.attachment.ciphertext_sha256;
        // In a disappearing chat the server forgets the file with its message.
        let timer = db::current_timer(&self.db(), &file.group_id)?.0;
        let create = v1::CreateAttachment {
            ciphertext_sha256: hash.clone(),
            size,
            group_id: file.group_id.clone(),
            expires_in_ms: u64::from(timer) * 1000,
        };
        let mut status: v1::AttachmentStatus = self
            .authed(|| self.api.post("/v1/attachments", &create, true))
            .await?;
        let part_bytes = part_size(&status)?;
        let mut source =
            files::open_file(sealed_path).map_err(|e| io("cannot open", sealed_path, e))?;
        let name = &file.attachment.name;
        while !status.complete {
            if status.received > size {
                return Err(ClientError::Protocol(
                    "the server counts more of the file than there is".into(),
                ));
            }
            let index = status.received / part_bytes;
            let length = part_bytes.min(size - status.received);
            let mut part = vec![0u8; length as usize];
            source
                .seek(SeekFrom::Start(status.received))
                .and_then(|_| source.read_exact(&mut part))
                .map_err(|e| io("cannot read", sealed_path, e))?;
            let path = format!("/v1/attachments/{}/parts/{index}", hex::encode(hash));
            status = self
                .authed(|| self.api.put_raw(&path, part.clone()))
                .await?;
            progress(
                name,
                Progress {
                    done: status.received,
                    total: size,
                },
            );
        }
        Ok(())
    }

    /// Downloads, checks and writes the `index`th attachment of the message `message_id` to
    /// `out` (default: its name in the current directory); returns where it went. Nothing is
    /// written unless the whole file matches the hashes its message carries.
    pub async fn save_attachment(
        &self,
        message_id: &str,
        index: usize,
        out: Option<&Path>,
        progress: OnProgress<'_>,
    ) -> Result<PathBuf, ClientError> {
        let row = self.shown_message(message_id)?;
        let view = self.view_of(&self.db(), row.clone())?;
        if view.deleted {
            return Err(ClientError::Invalid("that message was deleted".into()));
        }
        let attachment = super::check::attachments_of(&row.payload)
            .into_iter()
            .nth(index)
            .ok_or_else(|| {
                ClientError::Invalid(format!("message {message_id} has no attachment {index}"))
            })?;
        let out = match out {
            Some(path) => path.to_owned(),
            None => PathBuf::from(safe_file_name(Path::new(&attachment.name))),
        };
        if files::file_exists(&out) {
            return Err(ClientError::Invalid(format!(
                "{} exists already; give another path with --out",
                out.display()
            )));
        }
        self.fetch_attachment(&attachment, &out, progress).await?;
        Ok(out)
    }

    /// Downloads, checks and writes one attachment to `out`, all or nothing, and tells the
    /// server this device has it.
    pub(crate) async fn fetch_attachment(
        &self,
        attachment: &v1::Attachment,
        out: &Path,
        progress: OnProgress<'_>,
    ) -> Result<(), ClientError> {
        let expected = SealedFile::try_from(attachment)?;
        let sealed = self.files_dir()?.join(format!(
            "incoming-{}.sealed",
            hex::encode(&attachment.ciphertext_sha256)
        ));
        self.download(attachment, &sealed, progress).await?;
        let (from, to, wanted) = (sealed.clone(), out.to_owned(), expected);
        let opened =
            crate::platform::run_blocking(move || super::open_file(&from, &wanted, &to)).await?;
        // A refused download is not kept: the next try fetches it again.
        let _ = files::remove_file(&sealed);
        opened?;
        let path = format!(
            "/v1/attachments/{}/fetched",
            hex::encode(&attachment.ciphertext_sha256)
        );
        let empty = v1::CreateAttachment::default();
        if let Err(e) = self
            .authed(|| {
                self.api
                    .post::<_, v1::AttachmentStatus>(&path, &empty, true)
            })
            .await
        {
            tracing::info!(error = %e, "could not tell the server the file was fetched");
        }
        Ok(())
    }

    /// Fetches the ciphertext into `sealed`, going on from what an earlier try left there.
    async fn download(
        &self,
        attachment: &v1::Attachment,
        sealed: &Path,
        progress: OnProgress<'_>,
    ) -> Result<(), ClientError> {
        let hash = hex::encode(&attachment.ciphertext_sha256);
        let status_path = format!("/v1/attachments/{hash}");
        let status: v1::AttachmentStatus = self
            .authed(|| self.api.get(&status_path))
            .await
            .map_err(|e| match e {
                ClientError::Server(ref wire)
                    if wire.code == parley_protocol::ErrorCode::NotFound =>
                {
                    ClientError::Invalid(
                        "the server no longer has this file (every device fetched it, or it \
                         expired)"
                            .into(),
                    )
                }
                other => other,
            })?;
        if !status.complete {
            return Err(ClientError::Invalid(
                "the file is still being uploaded; try again later".into(),
            ));
        }
        let part_bytes = part_size(&status)?;
        // The server says how large the ciphertext is; the franked message says it too.
        let expected = super::crypto::ciphertext_len(attachment.size, attachment.chunk_bytes)?;
        if status.size != expected {
            return Err(ClientError::Invalid(
                "the server has a file of another size than the message says; refused".into(),
            ));
        }
        let mut file =
            files::append_private_file(sealed).map_err(|e| io("cannot write", sealed, e))?;
        // Whole parts only: a part cut off by an interruption is fetched again.
        let have = file.size().map_err(|e| io("cannot read", sealed, e))?;
        let mut done = (have / part_bytes * part_bytes).min(status.size);
        file.set_len(done)
            .map_err(|e| io("cannot write", sealed, e))?;
        while done < status.size {
            let index = done / part_bytes;
            let part_path = format!("/v1/attachments/{hash}/parts/{index}");
            let part = self.authed(|| self.api.get_raw(&part_path)).await?;
            let expected = part_bytes.min(status.size - done);
            if part.len() as u64 != expected {
                let _ = files::remove_file(sealed);
                return Err(ClientError::Invalid(
                    "the server sent a part of the wrong length; refused".into(),
                ));
            }
            file.write_all(&part)
                .map_err(|e| io("cannot write", sealed, e))?;
            done += expected;
            progress(
                &attachment.name,
                Progress {
                    done,
                    total: status.size,
                },
            );
        }
        file.sync_all().map_err(|e| io("cannot write", sealed, e))?;
        Ok(())
    }
}

/// An upload this call is making (see [`Client::claim_upload`]).
struct UploadClaim<'a>(&'a Client, Vec<u8>);

impl Drop for UploadClaim<'_> {
    fn drop(&mut self) {
        self.0
            .uploading
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.1);
    }
}

/// The part size the server uses, if it is one a client can work with.
fn part_size(status: &v1::AttachmentStatus) -> Result<u64, ClientError> {
    match status.part_bytes {
        0 => Err(ClientError::Protocol("the server gave no part size".into())),
        bytes if bytes > parley_protocol::limits::ATTACHMENT_PART_BYTES => Err(
            ClientError::Protocol("the server's attachment parts are too large".into()),
        ),
        bytes => Ok(u64::from(bytes)),
    }
}
