//! Staying in sync: one full round (receive, flush the outbox, commit others' pending
//! proposals, top up KeyPackages) and following the live connection, which runs a round each
//! time the server says the queue moved.

use std::future::Future;
use std::time::Duration;

use crate::client::Client;
use crate::db;
use crate::error::ClientError;
use crate::views::MessageView;

impl Client {
    /// Full sync: receive, send what waits in the outbox, commit others' pending proposals,
    /// top up KeyPackages (taking up a rotated account key first) and re-certify our leaves.
    pub async fn sync(&self) -> Result<Vec<MessageView>, ClientError> {
        self.finish_pending_rotation().await?;
        crate::content::purge_replaced(&self.db(), crate::db::now_ms())?;
        self.forget_expired()?;
        let mut shown = self.receive().await?;
        // Told once per chat and sync: "delivered up to here".
        self.queue_delivery_receipts()?;
        // Files an earlier run left half uploaded go on; their messages follow.
        self.resume_uploads(&|_, _| {}).await?;
        self.flush_outbox().await?;
        crate::db::forget_sent_transients(&self.db())?;
        // A recipient who has not caught up holds back that chat's sends, not the sync.
        for refused in self.all_held_back().await {
            tracing::warn!("not sent yet: {refused}");
        }
        self.commit_pending_proposals().await?;
        // Committing may have pulled in more messages (a lost epoch race).
        shown.extend(self.receive().await?);
        self.replenish_key_packages().await?;
        // After the account's key rotated, each chat gets our leaf under the new key.
        self.recertify_leaves().await?;
        self.share_group_infos().await;
        // A restored device rejoins the chats that could not be rejoined at once.
        if let Err(e) = self.rejoin_chats().await {
            tracing::warn!(error = %e, "rejoining chats failed; the next sync tries again");
        }
        // Backups run by themselves; a failed one is due again at the next sync.
        if let Err(e) = self.backup_if_due().await {
            tracing::warn!(error = %e, "backup failed; the next sync tries again");
        }
        Ok(shown)
    }

    /// Stays connected and calls `on_message` for every new message until `stop` resolves.
    /// Reconnects by itself; `on_state` hears whether the live connection is up.
    pub async fn follow(
        &self,
        mut on_message: impl FnMut(&MessageView),
        mut on_state: impl FnMut(bool),
        stop: impl Future<Output = ()>,
    ) -> Result<(), ClientError> {
        tokio::pin!(stop);
        let mut backoff = Duration::from_millis(250);
        loop {
            let session = async {
                let mut live = self.open_live().await?;
                on_state(true);
                for message in self.sync().await? {
                    on_message(&message);
                }
                // Typing indicators from front ends go out on this connection while it lasts.
                let (typing_tx, mut typing_rx) = tokio::sync::mpsc::channel(16);
                let _outgoing = OutgoingTyping::install(self, typing_tx);
                loop {
                    tokio::select! {
                        frame = live.next_frame() => {
                            let Some(frame) = frame? else { break };
                            for typing in &frame.typing {
                                let view = crate::presence::open_typing(self, &self.db(), typing);
                                if let Some(view) = view {
                                    // Nobody listening: nothing to do.
                                    let _ = self.live.incoming.send(view);
                                }
                            }
                            if frame.queue_head > db::cursor(&self.db())? {
                                for message in self.sync().await? {
                                    on_message(&message);
                                }
                            }
                        }
                        Some(typing) = typing_rx.recv() => live.send_typing(typing).await?,
                        // A disappearing message goes at its time, also while nothing arrives.
                        () = until_next_expiry(self) => {
                            self.forget_expired()?;
                        }
                    }
                }
                Ok::<(), ClientError>(())
            };
            tokio::select! {
                _ = &mut stop => return Ok(()),
                result = session => {
                    on_state(false);
                    match result {
                        Ok(()) => backoff = Duration::from_millis(250),
                        Err(e) if e.is_transient() => tracing::info!(error = %e, "live connection lost; reconnecting"),
                        Err(e) => return Err(e),
                    }
                }
            }
            tokio::select! {
                _ = &mut stop => return Ok(()),
                _ = crate::platform::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(10));
        }
    }
}

/// The running `follow` connection, as `send_typing` finds it; gone with the connection.
struct OutgoingTyping<'a>(&'a Client);

impl<'a> OutgoingTyping<'a> {
    fn install(
        client: &'a Client,
        sender: tokio::sync::mpsc::Sender<parley_protocol::v1::Typing>,
    ) -> Self {
        *client
            .live
            .outgoing
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(sender);
        OutgoingTyping(client)
    }
}

impl Drop for OutgoingTyping<'_> {
    fn drop(&mut self) {
        *self
            .0
            .live
            .outgoing
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = None;
    }
}

/// Resolves when the earliest disappearing message is due (never, if there is none).
async fn until_next_expiry(client: &Client) {
    let next = db::next_expiry(&client.db()).ok().flatten();
    match next {
        Some(at) => {
            let wait = (at - db::now_ms()).max(0) as u64;
            crate::platform::sleep(Duration::from_millis(wait)).await
        }
        None => std::future::pending().await,
    }
}
