//! Typing indicators: sealed under a key the group's MLS exporter gives its members for the
//! epoch, sent on the live connection, forwarded by the server to the group's devices that
//! are online, and never stored or queued by anyone. A member whose epoch differs cannot open
//! one and drops it; nothing is lost, since an indicator is stale within seconds.

use std::time::Duration;

use crate::platform::Instant;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use openmls::prelude::MlsGroup;
use parley_protocol::{v1, DeviceId, Username};
use prost::Message as _;
use rand::RngCore as _;
use rusqlite::Connection;

use crate::client::{Client, TypingView};
use crate::db::{self, now_ms};
use crate::error::ClientError;
use crate::groups::{load_active_group, load_group};
use crate::names::ChatRef;
use crate::provider::TxProvider;

const EXPORTER_LABEL: &str = "parley typing";
/// While the user goes on typing, a chat is told again at most this often; a front end shows
/// "typing…" for [`Client::TYPING_SHOWN_FOR`] after the last indicator.
pub const TYPING_REPEAT: Duration = Duration::from_secs(3);
/// An indicator older than this (by the sender's clock) is a replay or stale.
const MAX_AGE_MS: i64 = 30_000;
const NONCE_LEN: usize = 12;

fn typing_key(client: &Client, group: &MlsGroup) -> Result<Vec<u8>, ClientError> {
    group
        .export_secret(&client.crypto, EXPORTER_LABEL, b"", 32)
        .map_err(|e| ClientError::Protocol(format!("typing key: {e:?}")))
}

/// What the seal binds besides its body: the group, the epoch and the sender.
fn associated_data(group_id: &[u8], epoch: u64, sender: &str, device: &[u8]) -> Vec<u8> {
    let mut aad = b"parley/v1/typing\0".to_vec();
    aad.extend_from_slice(group_id);
    aad.extend_from_slice(&epoch.to_be_bytes());
    aad.extend_from_slice(sender.as_bytes());
    aad.push(0);
    aad.extend_from_slice(device);
    aad
}

impl Client {
    /// How long a front end shows "typing…" after an indicator.
    pub const TYPING_SHOWN_FOR: Duration = Duration::from_secs(6);

    /// Tells the chat's other devices that are online now that we are typing (or stopped).
    /// While typing goes on, this sends at most once per [`TYPING_REPEAT`] per chat and says
    /// whether it sent. Goes out on the running [`Client::follow`] connection, or on one of
    /// its own.
    pub async fn send_typing(&self, chat: &ChatRef, stopped: bool) -> Result<bool, ClientError> {
        let group_id = self
            .resolve_chat(chat)?
            .ok_or_else(|| ClientError::UnknownChat(chat.to_string()))?;
        {
            let mut last = self
                .live
                .last_sent
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if stopped {
                last.remove(&group_id);
            } else if last
                .get(&group_id)
                .is_some_and(|at| at.elapsed() < TYPING_REPEAT)
            {
                return Ok(false);
            } else {
                last.insert(group_id.clone(), Instant::now());
            }
        }
        let typing = self.seal_typing(&group_id, stopped)?;
        let running = self
            .live
            .outgoing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        match running {
            // A full channel means indicators are piling up: this one is not needed.
            Some(sender) => {
                let _ = sender.try_send(typing);
            }
            None => {
                let mut live = self.open_live().await?;
                live.send_typing(typing).await?;
                live.close().await;
            }
        }
        Ok(true)
    }

    fn seal_typing(&self, group_id: &[u8], stopped: bool) -> Result<v1::Typing, ClientError> {
        let conn = self.db();
        let provider = TxProvider::new(&self.crypto, &conn);
        let group = load_active_group(&provider, group_id)?;
        let key = typing_key(self, &group)?;
        let epoch = group.epoch().as_u64();
        let mut nonce = [0u8; NONCE_LEN];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let body = v1::TypingBody {
            sent_at_ms: now_ms(),
            stopped,
        }
        .encode_to_vec();
        let aad = associated_data(
            group_id,
            epoch,
            self.username().as_str(),
            self.device_id().as_bytes(),
        );
        let cipher = Aes256Gcm::new_from_slice(&key)
            .map_err(|_| ClientError::Protocol("typing key length".into()))?;
        let sealed = cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: &body,
                    aad: &aad,
                },
            )
            .map_err(|_| ClientError::Protocol("sealing a typing indicator failed".into()))?;
        Ok(v1::Typing {
            group_id: group_id.to_vec(),
            epoch,
            sealed: [nonce.as_slice(), &sealed].concat(),
            ..Default::default()
        })
    }

    /// Typing indicators as they arrive while [`Client::follow`] runs.
    pub fn typing_events(&self) -> tokio::sync::broadcast::Receiver<TypingView> {
        self.live.incoming.subscribe()
    }

    /// Fires when what a front end shows changed without a new message: a receipt moved a
    /// message to delivered or read, or messages disappeared.
    pub fn change_events(&self) -> tokio::sync::broadcast::Receiver<()> {
        self.live.changed.subscribe()
    }
}

/// An indicator from the live connection, as a front end shows it; `None` for one we cannot
/// open (another epoch, not a chat of ours, forged, stale) or do not show (ours, blocked).
pub(crate) fn open_typing(
    client: &Client,
    conn: &Connection,
    typing: &v1::Typing,
) -> Option<TypingView> {
    let sender = Username::parse(&typing.sender_username).ok()?;
    let device = DeviceId::from_slice(&typing.sender_device).ok()?;
    if sender == *client.username() || db::is_blocked(conn, sender.as_str()).ok()? {
        return None;
    }
    let provider = TxProvider::new(&client.crypto, conn);
    let group = load_group(&provider, &typing.group_id).ok()??;
    if !group.is_active() || group.epoch().as_u64() != typing.epoch {
        return None;
    }
    // The sender must be a member: the server vouches for the name, the group for the member.
    let member = crate::groups::member_accounts(&group).contains(sender.as_str());
    if !member || typing.sealed.len() <= NONCE_LEN {
        return None;
    }
    let key = typing_key(client, &group).ok()?;
    let cipher = Aes256Gcm::new_from_slice(&key).ok()?;
    let (nonce, sealed) = typing.sealed.split_at(NONCE_LEN);
    let aad = associated_data(
        &typing.group_id,
        typing.epoch,
        sender.as_str(),
        device.as_bytes(),
    );
    let body = cipher
        .decrypt(
            Nonce::from_slice(nonce),
            Payload {
                msg: sealed,
                aad: &aad,
            },
        )
        .ok()?;
    let body = v1::TypingBody::decode(body.as_slice()).ok()?;
    if now_ms().abs_diff(body.sent_at_ms) > MAX_AGE_MS as u64 {
        return None;
    }
    let chat = db::chat(conn, &typing.group_id).ok()??;
    Some(TypingView {
        chat: crate::views::chat_label(conn, &chat).ok()?,
        sender: sender.to_string(),
        stopped: body.stopped,
    })
}
