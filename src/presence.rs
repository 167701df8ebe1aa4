//! `parley read`, `parley settings` and `parley typing`: how a chat stands, not what is said.

use anyhow::Result;
use parley_client::ChatRef;

use crate::account::open;
use crate::args::ClientArgs;

pub async fn read(args: ClientArgs, chat: &str) -> Result<()> {
    let client = open(&args)?;
    client.read(&ChatRef::parse(chat)?).await?;
    Ok(())
}

/// Shows the settings, or changes the ones given.
pub async fn settings(args: ClientArgs, read_receipts: Option<bool>) -> Result<()> {
    let client = open(&args)?;
    if let Some(on) = read_receipts {
        client.set_read_receipts(on).await?;
    }
    let state = if client.read_receipts()? { "on" } else { "off" };
    println!("read receipts: {state}");
    Ok(())
}

pub async fn typing(args: ClientArgs, chat: &str, stopped: bool) -> Result<()> {
    let client = open(&args)?;
    client.send_typing(&ChatRef::parse(chat)?, stopped).await?;
    Ok(())
}

/// `on` or `off`, as the settings take them.
pub fn on_off(value: &str) -> Result<bool, String> {
    match value {
        "on" => Ok(true),
        "off" => Ok(false),
        other => Err(format!("{other:?}: say on or off")),
    }
}
