//! Typing indicators: forwarded from a live connection to the group's other devices that are
//! online, never stored, never queued. The server cannot read them (they are sealed under the
//! group's MLS exporter secret); it only vouches for who sent them.

use std::sync::Arc;

use parley_protocol::{v1, GroupId};

use crate::accounts::Authenticated;
use crate::{ApiError, App};

impl App {
    /// Forwards a member's typing indicator, with its sender set from the session. Past the
    /// account's typing rate (over all its devices and connections on this node) it is
    /// dropped: an indicator is a courtesy, not a message.
    pub(crate) async fn forward_typing(
        &self,
        device: &Authenticated,
        mut typing: v1::Typing,
    ) -> Result<(), ApiError> {
        self.rates.check_typing(&device.0.user_id)?;
        let group = GroupId::from_slice(&typing.group_id)
            .map_err(|_| ApiError::malformed("a typing indicator names no group"))?;
        let others = self
            .delivery
            .other_members(device.0.device_id, group)
            .await?;
        typing.sender_username = device.0.username.to_string();
        typing.sender_device = device.0.device_id.to_vec();
        self.fanout.typing(others, Arc::new(typing));
        Ok(())
    }
}
