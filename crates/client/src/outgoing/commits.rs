//! Group changes as commits. A commit stays pending in openmls until the server accepts it;
//! then it is merged. If another member's commit won the epoch, ours is discarded
//! (`clear_pending_commit`, in the outbox), the winner is fetched and merged, and the change is
//! built again on top of it.

use openmls::prelude::*;

use super::outbox::{is_wrong_epoch, random_id, MAX_EPOCH_RETRIES};
use crate::client::Client;
use crate::db::{self, ChatState, OutboxKind};
use crate::error::{mls_error, ClientError};
use crate::groups::{load_active_group, load_group, removal_by_moderators_pending};
use crate::provider::TxProvider;

impl Client {
    /// Builds a commit with `build`, submits it, and merges it once accepted. When another
    /// commit won the epoch, fetches it and builds again.
    pub(crate) async fn run_commit<F>(&self, group_id: &[u8], build: F) -> Result<(), ClientError>
    where
        F: Fn(
            &mut MlsGroup,
            &TxProvider<'_>,
        ) -> Result<(MlsMessageOut, Option<MlsMessageOut>), ClientError>,
    {
        for _ in 0..MAX_EPOCH_RETRIES {
            // Nothing of ours may be queued ahead of the commit (see `settle_own_commits`).
            // Messages of ours held back by a full queue may stay ahead of it: flushing passes
            // them, and they are encrypted again in the epoch the change starts.
            self.flush_outbox().await?;
            let built_at = {
                let conn = self.db();
                let tx = conn.unchecked_transaction()?;
                let provider = TxProvider::new(&self.crypto, &tx);
                let mut group = load_active_group(&provider, group_id)?;
                let (commit, welcome) = build(&mut group, &provider)?;
                let welcome = welcome
                    .map(|w| w.to_bytes())
                    .transpose()
                    .map_err(mls_error)?;
                db::push_outbox(
                    &tx,
                    random_id().as_bytes(),
                    group_id,
                    OutboxKind::Commit,
                    &commit.to_bytes().map_err(mls_error)?,
                    welcome.as_deref(),
                    group.epoch().as_u64(),
                )?;
                tx.commit()?;
                group.epoch().as_u64()
            };
            match self.flush_outbox().await {
                // Merged only if the server accepted it; a change discarded on the way (lost
                // its epoch) is built again.
                Ok(()) if self.epoch_of(group_id)? > built_at => {
                    self.share_group_infos().await;
                    return Ok(());
                }
                Ok(()) => self.receive().await.map(|_| ())?,
                Err(e) if is_wrong_epoch(&e) => {
                    self.receive().await?;
                    continue;
                }
                Err(e) => return Err(e),
            }
        }
        Err(ClientError::Invalid(
            "the group is changing too fast; try again".into(),
        ))
    }

    fn epoch_of(&self, group_id: &[u8]) -> Result<u64, ClientError> {
        let conn = self.db();
        let provider = TxProvider::new(&self.crypto, &conn);
        Ok(load_group(&provider, group_id)?.map_or(0, |g| g.epoch().as_u64()))
    }

    /// Commits proposals other members left for us to commit (members leaving).
    pub(crate) async fn commit_pending_proposals(&self) -> Result<(), ClientError> {
        let groups: Vec<Vec<u8>> = db::all_chats(&self.db())?
            .into_iter()
            .filter(|c| c.state == ChatState::Active)
            .map(|c| c.group_id)
            .collect();
        for group_id in groups {
            self.commit_pending_in(&group_id).await?;
        }
        Ok(())
    }

    /// Commits the proposals others left in one group, if there are any for us to commit (our
    /// own removal by the moderators is for the others). openmls encrypts nothing beside a
    /// pending proposal, so a send commits them first.
    pub(crate) async fn commit_pending_in(&self, group_id: &[u8]) -> Result<(), ClientError> {
        let waiting = {
            let conn = self.db();
            let provider = TxProvider::new(&self.crypto, &conn);
            match load_group(&provider, group_id)? {
                Some(group) if group.is_active() => {
                    let own = group.own_leaf_index();
                    let others_pending = group
                        .pending_proposals()
                        .any(|p| !matches!(p.sender(), Sender::Member(leaf) if *leaf == own));
                    others_pending && !removal_by_moderators_pending(&group)
                }
                _ => false,
            }
        };
        if !waiting {
            return Ok(());
        }
        let result = self
            .run_commit(group_id, |group, provider| {
                if group.pending_proposals().next().is_none() {
                    return Err(ClientError::Invalid("nothing to commit".into()));
                }
                let (commit, welcome, _) = group
                    .commit_to_pending_proposals(provider, &self.signer)
                    .map_err(mls_error)?;
                Ok((commit, welcome))
            })
            .await;
        match result {
            Ok(()) | Err(ClientError::Invalid(_)) => Ok(()),
            // Beyond even a group change's room in someone's queue: the next sync tries again;
            // the other groups and the sync go on.
            Err(e) if e.is_queue_full() => {
                tracing::info!("a recipient's queue is full; the pending proposals wait");
                Ok(())
            }
            Err(e) => Err(e),
        }
    }
}
