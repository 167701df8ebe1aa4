//! Disappearing messages: setting a chat's timer, and forgetting what it says is over. The
//! rules and the schema are in `db::disappearing`; docs/messenger-basics.md has the design.

use parley_protocol::limits::{MAX_DISAPPEAR_S, MIN_DISAPPEAR_S};
use parley_protocol::v1;

use crate::client::Client;
use crate::db::{self, ChatKind};
use crate::error::ClientError;
use crate::names::ChatRef;
use crate::provider::TxProvider;

impl Client {
    /// Sets a chat's disappearing-message timer (`None` or 0: off) for the messages sent
    /// after it: any member may in a 1:1 chat, only admins in a group.
    pub async fn set_disappearing(
        &self,
        chat: &ChatRef,
        seconds: Option<u32>,
    ) -> Result<(), ClientError> {
        let seconds = seconds.unwrap_or(0);
        if seconds != 0 && !(MIN_DISAPPEAR_S..=MAX_DISAPPEAR_S).contains(&seconds) {
            return Err(ClientError::Invalid(
                "a disappearing timer is from 30 seconds to 4 weeks".into(),
            ));
        }
        let group_id = self
            .resolve_chat(chat)?
            .ok_or_else(|| ClientError::UnknownChat(chat.to_string()))?;
        {
            let conn = self.db();
            let direct = db::chat(&conn, &group_id)?.is_some_and(|c| c.kind == ChatKind::Direct);
            let provider = TxProvider::new(&self.crypto, &conn);
            let group = crate::groups::load_active_group(&provider, &group_id)?;
            if !direct && !crate::groups::admin_of_group(&conn, &group, self.username())? {
                return Err(ClientError::Invalid(
                    "only a group admin sets its disappearing timer".into(),
                ));
            }
        }
        let body = v1::app_payload::Body::Settings(v1::SettingsBody {
            read_receipts: None,
            disappear_after_s: Some(seconds),
        });
        self.send_body(&group_id, body, false, None).await?;
        Ok(())
    }

    /// A chat's disappearing-message timer in seconds (0: off).
    pub fn disappearing(&self, chat: &ChatRef) -> Result<u32, ClientError> {
        let group_id = self
            .resolve_chat(chat)?
            .ok_or_else(|| ClientError::UnknownChat(chat.to_string()))?;
        Ok(db::current_timer(&self.db(), &group_id)?.0)
    }
}
