//! Delivery and read receipts: batched ("up to here", in the group's server order), at most
//! one of each kind per chat and sync, and only in chats of at most
//! [`MAX_RECEIPT_ACCOUNTS`] accounts (each receipt is a message to every member device).
//! Read receipts are reciprocal: an account that sends none sees none.

use openmls::prelude::MlsGroup;
use parley_protocol::limits::MAX_RECEIPT_ACCOUNTS;
use parley_protocol::v1;
use rusqlite::Connection;

use crate::client::Client;
use crate::db::{self, ChatState, ReceiptKind};
use crate::error::ClientError;
use crate::groups::{load_active_group, member_accounts};
use crate::names::ChatRef;
use crate::provider::TxProvider;

impl Client {
    /// After receiving: tells each chat with new messages of others that they arrived.
    pub(crate) fn queue_delivery_receipts(&self) -> Result<(), ClientError> {
        let chats = db::all_chats(&self.db())?;
        for chat in chats.iter().filter(|c| c.state == ChatState::Active) {
            if let Err(e) = self.queue_receipt(&chat.group_id, ReceiptKind::Delivered) {
                tracing::warn!(error = %e, "delivery receipt not queued; the next sync tries again");
            }
        }
        Ok(())
    }

    /// Marks a chat as read on this device and, with read receipts on, tells its members.
    pub async fn read(&self, chat: &ChatRef) -> Result<(), ClientError> {
        self.mark_read(chat)?;
        let group_id = self
            .resolve_chat(chat)?
            .ok_or_else(|| ClientError::UnknownChat(chat.to_string()))?;
        let active = db::chat(&self.db(), &group_id)?.is_some_and(|c| c.state == ChatState::Active);
        if active
            && db::read_receipts_on(&self.db())?
            && self.queue_receipt(&group_id, ReceiptKind::Read)?
        {
            // Offline, the receipt waits in the outbox for the next sync.
            match self.flush_outbox().await {
                Err(e) if e.is_transient() => tracing::info!(error = %e, "read receipt queued"),
                other => other?,
            }
        }
        Ok(())
    }

    /// Queues a receipt of `kind` for the newest message of others in the chat, unless we (on
    /// any of our devices) told the chat that much already. Returns whether one was queued.
    fn queue_receipt(&self, group_id: &[u8], kind: ReceiptKind) -> Result<bool, ClientError> {
        let me = self.username().as_str().to_owned();
        let (newest, told) = {
            let conn = self.db();
            (
                db::newest_received(&conn, group_id)?,
                db::receipt(&conn, group_id, &me, kind)?,
            )
        };
        let Some((up_to, up_to_seq)) = newest.filter(|(_, seq)| *seq > told) else {
            return Ok(false);
        };
        let accounts = {
            let conn = self.db();
            let provider = TxProvider::new(&self.crypto, &conn);
            member_accounts(&load_active_group(&provider, group_id)?).len()
        };
        let record = |conn: &Connection| {
            db::record_receipt(conn, group_id, &me, kind, up_to_seq)?;
            // What was read was delivered too.
            if kind == ReceiptKind::Read {
                db::record_receipt(conn, group_id, &me, ReceiptKind::Delivered, up_to_seq)?;
            }
            Ok(())
        };
        if accounts > MAX_RECEIPT_ACCOUNTS {
            // Too large a chat for receipts: noted as told, so that it is not looked at again.
            record(&self.db())?;
            return Ok(false);
        }
        let body = v1::app_payload::Body::Receipt(v1::ReceiptBody {
            kind: match kind {
                ReceiptKind::Delivered => v1::ReceiptKind::Delivered,
                ReceiptKind::Read => v1::ReceiptKind::Read,
            } as i32,
            up_to_seq,
            up_to,
        });
        self.queue_application_with(group_id, body, false, record)?;
        Ok(true)
    }
}

/// A receipt that arrived in a chat, at server position `seq`: recorded, unless it is
/// malformed, claims more than was sent before it, comes from a chat too large for receipts,
/// or is a read receipt while ours are off. One from our own account (another device of ours)
/// also marks the chat read here.
pub(crate) fn accept_receipt(
    conn: &Connection,
    group: &MlsGroup,
    sender: &str,
    own: bool,
    receipt: &v1::ReceiptBody,
    seq: u64,
) -> Result<(), String> {
    let kind = match v1::ReceiptKind::try_from(receipt.kind) {
        Ok(v1::ReceiptKind::Delivered) => ReceiptKind::Delivered,
        Ok(v1::ReceiptKind::Read) => ReceiptKind::Read,
        _ => return Err("unknown receipt kind".into()),
    };
    if receipt.up_to_seq == 0 || receipt.up_to_seq >= seq || !matches!(receipt.up_to.len(), 0 | 16)
    {
        return Err("malformed receipt".into());
    }
    if member_accounts(group).len() > MAX_RECEIPT_ACCOUNTS {
        return Ok(());
    }
    let group_id = group.group_id().as_slice();
    let read_on = db::read_receipts_on(conn).map_err(|e| e.to_string())?;
    if kind == ReceiptKind::Read && !read_on && !own {
        return Ok(());
    }
    (|| {
        db::record_receipt(conn, group_id, sender, kind, receipt.up_to_seq)?;
        if own && kind == ReceiptKind::Read {
            db::record_receipt(
                conn,
                group_id,
                sender,
                ReceiptKind::Delivered,
                receipt.up_to_seq,
            )?;
            db::mark_read_up_to(conn, group_id, receipt.up_to_seq)?;
        }
        Ok::<(), ClientError>(())
    })()
    .map_err(|e| e.to_string())
}
