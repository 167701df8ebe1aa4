//! `parley read`, `parley settings` and `parley typing`: how a chat stands, not what is said.

use anyhow::{bail, Result};
use parley_client::ChatRef;

use crate::account::open;
use crate::args::ClientArgs;

pub async fn read(args: ClientArgs, chat: &str) -> Result<()> {
    let client = open(&args)?;
    client.read(&ChatRef::parse(chat)?).await?;
    Ok(())
}

/// Shows the settings, or changes the ones given: the account's, and a chat's when named.
pub async fn settings(
    args: ClientArgs,
    chat: Option<&str>,
    disappearing: Option<u32>,
    read_receipts: Option<bool>,
) -> Result<()> {
    let client = open(&args)?;
    let chat = chat.map(ChatRef::parse).transpose()?;
    match (&chat, disappearing) {
        (Some(chat), Some(seconds)) => client.set_disappearing(chat, Some(seconds)).await?,
        (None, Some(_)) => {
            bail!("name the chat whose timer to set: parley settings CHAT --disappearing 1h")
        }
        _ => {}
    }
    if let Some(on) = read_receipts {
        client.set_read_receipts(on).await?;
    }
    let state = if client.read_receipts()? { "on" } else { "off" };
    println!("read receipts: {state}");
    if let Some(chat) = &chat {
        let timer = match client.disappearing(chat)? {
            0 => "off".to_owned(),
            seconds => parley_client::human_duration(seconds),
        };
        println!("disappearing messages in {chat}: {timer}");
    }
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

/// A disappearing timer as typed: `30s`, `5m`, `1h`, `2d`, `1w`, or `off` (0).
pub fn timer(value: &str) -> Result<u32, String> {
    if value == "off" {
        return Ok(0);
    }
    let (number, unit) = value.split_at(
        value
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(value.len()),
    );
    let size = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 604_800,
        _ => {
            return Err(format!(
                "{value:?}: give a time like 30s, 5m, 1h, 2d or 1w, or off"
            ))
        }
    };
    let seconds = number
        .parse::<u32>()
        .ok()
        .and_then(|n| n.checked_mul(size))
        .ok_or_else(|| format!("{value:?}: give a time like 30s, 5m, 1h, 2d or 1w, or off"))?;
    let (min, max) = (
        parley_protocol::limits::MIN_DISAPPEAR_S,
        parley_protocol::limits::MAX_DISAPPEAR_S,
    );
    if !(min..=max).contains(&seconds) {
        return Err(format!("{value:?}: a timer is from 30s to 4w"));
    }
    Ok(seconds)
}

#[cfg(test)]
mod tests {
    use super::timer;

    #[test]
    fn timers_read_as_people_type_them_within_30_seconds_and_4_weeks() {
        assert_eq!(timer("30s"), Ok(30));
        assert_eq!(timer("1h"), Ok(3600));
        assert_eq!(timer("4w"), Ok(28 * 86_400));
        assert_eq!(timer("off"), Ok(0));
        for bad in ["29s", "5w", "1y", "h", "", "-1h", "99999999999s"] {
            assert!(timer(bad).is_err(), "{bad}");
        }
    }
}
