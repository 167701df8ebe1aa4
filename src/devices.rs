//! `parley link` (on a new device) and `parley devices …` (on any device of the account).

use anyhow::Result;
use parley_client::{ApproveEvent, Client, LinkEvent};

use crate::account::{home, open, options, DEFAULT_SERVER};
use crate::args::{ClientArgs, DevicesCommand};
use crate::output;

pub async fn link(args: ClientArgs, username: &str, name: Option<&str>, json: bool) -> Result<()> {
    let server = args.server.clone().unwrap_or_else(|| DEFAULT_SERVER.into());
    let client = Client::link(
        home(&args)?,
        Some(&server),
        username,
        options(&args),
        |event| output::link_event(&event, json),
    )
    .await?;
    if let Some(name) = name {
        let id = client.device_id().to_string();
        client.rename_device(&id, name).await?;
    }
    output::linked(
        client.username().as_str(),
        &client.device_id().to_string(),
        json,
    );
    Ok(())
}

pub async fn run(args: ClientArgs, command: Option<DevicesCommand>, json: bool) -> Result<()> {
    let client = open(&args)?;
    match command {
        None => output::devices(&client.devices().await?, json),
        Some(DevicesCommand::Approve { code }) => {
            let size = client
                .approve_link(&code, |event| {
                    if let ApproveEvent::HistorySent(_) = event {
                        return;
                    }
                    output::approve_event(&event)
                })
                .await?;
            output::approved(size.chats, size.messages, size.bytes, json);
        }
        Some(DevicesCommand::Revoke { id }) => {
            let chats = client.revoke_device(&id).await?;
            output::line(&format!(
                "revoked the device; removed it from {chats} chats. It can no longer log in"
            ));
        }
        Some(DevicesCommand::Rename { id, name }) => {
            let device = client.rename_device(&id, &name).await?;
            output::line(&format!("renamed {} to {:?}", device.id, device.name));
        }
    }
    Ok(())
}

/// What linking says on stderr while it waits (stdout carries the code and the result).
pub fn describe(event: &LinkEvent) -> Option<String> {
    match event {
        LinkEvent::Code(_) => None,
        LinkEvent::Approved => Some("approved; receiving the chats and their history".into()),
        LinkEvent::Stalled { chunks } => Some(format!(
            "the approving device has sent nothing for a while ({chunks} parts of the history \
             so far); if it stopped, run `parley devices approve CODE` on it again"
        )),
        LinkEvent::HistoryImported { chats, messages } => Some(format!(
            "history received: {messages} messages in {chats} chats"
        )),
    }
}
