//! Approving a new device of the account (`parley devices approve CODE`), on any device it has:
//! check the new device's keys against the code, certify it, seal it the account key, add it to
//! every chat, and hand it the history. Running it again with the same code resumes a transfer
//! that stopped (the approval itself happens once).

use std::time::Duration;

use crate::platform::Instant;

use openmls::prelude::KeyPackage;
use parley_protocol::{v1, DeviceId, ErrorCode};
use prost::Message as _;

use super::archive::ArchiveSize;
use super::code::LinkCode;
use super::crypto;
use crate::client::Client;
use crate::db::{self, now_ms, ChatState};
use crate::error::ClientError;

/// How long the approver waits for the new device to upload its KeyPackages.
const KEY_PACKAGE_WAIT: Duration = Duration::from_secs(10 * 60);
const POLL: Duration = Duration::from_millis(500);

/// What approving is doing, for a front end to show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApproveEvent {
    /// The keys matched the code and the device is now the account's.
    Approved { device: String },
    /// Waiting for the new device to come online and publish its keys.
    WaitingForDevice,
    /// Added to `done` of `total` chats.
    Added { done: usize, total: usize },
    /// The history is on its way: the archive was uploaded.
    HistorySent(ArchiveSizeView),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArchiveSizeView {
    pub chats: u64,
    pub messages: u64,
    pub bytes: u64,
}

impl From<ArchiveSize> for ArchiveSizeView {
    fn from(size: ArchiveSize) -> Self {
        ArchiveSizeView {
            chats: size.chats,
            messages: size.messages,
            bytes: size.bytes,
        }
    }
}

impl Client {
    /// Approves the device that shows `code`, adds it to every chat and sends it the history.
    pub async fn approve_link(
        &self,
        code: &str,
        mut events: impl FnMut(ApproveEvent),
    ) -> Result<ArchiveSizeView, ClientError> {
        let code = LinkCode::parse(code)?;
        if self.keys().certificate.is_none() {
            // Its account key is this device's own signature key: handing it over would let the
            // new device log in as this one, and revoking it could not take that back.
            return Err(ClientError::Invalid(
                "this account was made before Parley had several devices per account; linking \
                 another device to it is not possible yet"
                    .into(),
            ));
        }
        let link_hex = hex::encode(code.link_id);
        let path = format!("/v1/links/{link_hex}");
        let link: v1::PendingLink = self.authed(|| self.api.get(&path)).await?;
        if link.username != self.username().as_str() {
            return Err(ClientError::Invalid(
                "that link code is for another account".into(),
            ));
        }
        let keys = v1::link_mac_input(
            &link.username,
            &link.device_id,
            &link.signature_key,
            &link.hpke_key,
        );
        if !crypto::link_mac_matches(&code.secret, &keys, &link.mac) {
            return Err(ClientError::Invalid(
                "the keys the server gives for this link do not match the code: the server \
                 changed them. Nothing was approved; do not link through this server"
                    .into(),
            ));
        }
        let device = DeviceId::from_slice(&link.device_id)
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        let blob = if link.approved {
            // Again with the same code: resume a transfer, unless the device has its history.
            let path = format!("/v1/blobs/{}", hex::encode(&link.archive_blob));
            match self.authed(|| self.api.get::<v1::BlobStatus>(&path)).await {
                Ok(_) => link.archive_blob.clone(),
                Err(e) if e.server_code() == Some(ErrorCode::NotFound) => {
                    return Err(ClientError::Invalid(
                        "this link code was used already: that device is linked".into(),
                    ))
                }
                Err(e) => return Err(e),
            }
        } else {
            self.certify_and_approve(&code, &link, device).await?
        };
        events(ApproveEvent::Approved {
            device: device.to_hex(),
        });
        // Everything this device knows goes into the archive, and the new device must be in
        // every chat before it is made: what others send after the adds reaches it directly.
        self.sync().await?;
        let missing = self.chats_without(device)?;
        if !missing.is_empty() {
            let packages = self
                .own_key_packages(device, missing.len(), &mut events)
                .await?;
            for (done, group_id) in missing.iter().enumerate() {
                let package = packages[done.min(packages.len() - 1)].clone();
                // One commit per chat: it keeps everyone's roles.
                self.commit_adds(group_id, &[package]).await?;
                events(ApproveEvent::Added {
                    done: done + 1,
                    total: missing.len(),
                });
            }
        }
        // What others sent between our sync and the adds went out in epochs the new device
        // cannot read: it goes into the archive.
        self.receive().await?;
        let blob_path = format!("/v1/blobs/{}", hex::encode(&blob));
        let status: v1::BlobStatus = self.authed(|| self.api.get(&blob_path)).await?;
        let size = if status.sealed {
            ArchiveSize::default()
        } else {
            self.upload_archive(&blob, &crypto::archive_key(&code.link_id, &code.secret))
                .await?
        };
        let size = ArchiveSizeView::from(size);
        events(ApproveEvent::HistorySent(size));
        Ok(size)
    }

    /// Certifies the new device, seals the account key to it, and approves the link; returns
    /// the blob the history goes to.
    async fn certify_and_approve(
        &self,
        code: &LinkCode,
        link: &v1::PendingLink,
        device: DeviceId,
    ) -> Result<Vec<u8>, ClientError> {
        let request = v1::CreateBlob {
            reader_device: device.to_vec(),
        };
        let created: v1::CreateBlobResponse = self
            .authed(|| self.api.post("/v1/blobs", &request, true))
            .await?;
        let certificate = self.account_key().certify(
            self.username(),
            device,
            &link.signature_key,
            now_ms() as u64,
        );
        let bundle = v1::LinkBundle {
            account_secret: self.account_key().to_secret_bytes().to_vec(),
            certificate: certificate.encode(),
            user_id: self.user_id().to_vec(),
        };
        let sealed = crypto::seal_bundle(
            &self.crypto,
            &link.hpke_key,
            &code.link_id,
            &code.secret,
            &bundle.encode_to_vec(),
        )?;
        let approve = v1::ApproveLink {
            certificate: certificate.encode(),
            sealed_bundle: sealed,
            archive_blob: created.blob_id.clone(),
        };
        let path = format!("/v1/links/{}/approve", hex::encode(code.link_id));
        let _: v1::ApproveLinkResponse =
            self.authed(|| self.api.post(&path, &approve, true)).await?;
        Ok(created.blob_id)
    }

    /// Our active chats that `device` is not in yet.
    fn chats_without(&self, device: DeviceId) -> Result<Vec<Vec<u8>>, ClientError> {
        let chats = db::all_chats(&self.db())?;
        let mut missing = Vec::new();
        for chat in chats.into_iter().filter(|c| c.state == ChatState::Active) {
            if !self.has_member_device(&chat.group_id, device)? {
                missing.push(chat.group_id);
            }
        }
        Ok(missing)
    }

    /// `count` KeyPackages of our new device (or its last-resort one, which serves every chat),
    /// each certified under our account key; waits while the device has published none.
    async fn own_key_packages(
        &self,
        device: DeviceId,
        count: usize,
        events: &mut impl FnMut(ApproveEvent),
    ) -> Result<Vec<KeyPackage>, ClientError> {
        let deadline = Instant::now() + KEY_PACKAGE_WAIT;
        let mut told = false;
        let mut packages = Vec::new();
        loop {
            let request = v1::ClaimOwnKeyPackages {
                device_id: device.to_vec(),
                count: (count - packages.len()) as u32,
            };
            let claimed: v1::ClaimResponse = self
                .authed(|| self.api.post("/v1/keypackages/claim-own", &request, true))
                .await?;
            let mut last_resort = false;
            for claimed in claimed.key_packages {
                last_resort |= claimed.last_resort;
                if claimed.device_id != device.to_vec()
                    || claimed.username != self.username().as_str()
                {
                    return Err(ClientError::Protocol(
                        "the server handed out another device's key package".into(),
                    ));
                }
                packages.push(self.check_claimed(&claimed)?);
            }
            if packages.len() >= count || (last_resort && !packages.is_empty()) {
                return Ok(packages);
            }
            if Instant::now() > deadline {
                return Err(ClientError::Server(parley_protocol::WireError::new(
                    ErrorCode::NoKeyPackage,
                    "the new device did not come online to finish linking; run \
                     `parley devices approve CODE` again once it is",
                )));
            }
            if !told {
                events(ApproveEvent::WaitingForDevice);
                told = true;
            }
            crate::platform::sleep(POLL).await;
        }
    }
}
