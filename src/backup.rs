//! `parley backup …` (turning backups on, storing one now, their status) and `parley restore`
//! (a fresh device becomes the account's again).

use anyhow::Result;
use parley_client::{BackupReport, Client, DEFAULT_BACKUP_MINUTES};

use crate::account::{home, open, options, DEFAULT_SERVER};
use crate::args::{BackupCommand, ClientArgs};
use crate::output;

fn stored(report: &BackupReport) -> String {
    format!(
        "backup stored: {} messages in {} chats, {} bytes encrypted",
        report.messages, report.chats, report.bytes
    )
}

pub async fn run(args: ClientArgs, command: BackupCommand, json: bool) -> Result<()> {
    let client = open(&args)?;
    match command {
        BackupCommand::Enable { every } => {
            let every = every.unwrap_or(DEFAULT_BACKUP_MINUTES);
            let (key, report) = client.enable_backup(every).await?;
            if json {
                output::json(&serde_json::json!({
                    "recovery_key": key.encode(),
                    "backup": report,
                }));
            } else {
                output::line(&format!("recovery key: {}", key.encode()));
                output::line(
                    "Write it down and keep it safe: it is shown only this once, and with it \
                     anyone can restore this account (`parley restore NAME --recovery-key KEY`).",
                );
                output::line(&stored(&report));
            }
        }
        BackupCommand::Now => {
            let report = client.backup_now().await?;
            if json {
                output::json(&report);
            } else {
                output::line(&stored(&report));
            }
        }
        BackupCommand::Status => {
            let status = client.backup_status().await?;
            if json {
                output::json(&status);
            } else if !status.enabled {
                output::line("backups are off (`parley backup enable` turns them on)");
            } else {
                let every = status.every_minutes.unwrap_or_default();
                output::line(&format!(
                    "backups are on: after changes, at most every {every} minutes"
                ));
                match (&status.last_backup_at, status.last_backup_bytes) {
                    (Some(at), Some(bytes)) => output::line(&format!(
                        "last backup from this device: {at}, {bytes} bytes"
                    )),
                    _ => output::line("no backup from this device yet"),
                }
                if status.changes_pending {
                    output::line("changes since then go into the next backup");
                }
                output::line(&format!("the server keeps {}:", status.stored.len()));
                for backup in &status.stored {
                    output::line(&format!("  {}  {} bytes", backup.created_at, backup.bytes));
                }
            }
        }
    }
    Ok(())
}

pub async fn restore(args: ClientArgs, username: &str, key: &str, json: bool) -> Result<()> {
    let server = args.server.clone().unwrap_or_else(|| DEFAULT_SERVER.into());
    let (client, report) =
        Client::restore(home(&args)?, &server, username, key, options(&args)).await?;
    if json {
        output::json(&report);
    } else {
        output::line(&format!(
            "restored {} from the backup of {}: {} messages in {} chats",
            client.username(),
            report.backup_at,
            report.messages,
            report.chats
        ));
        output::line(&format!(
            "rejoined {} chats{}; revoked {} lost devices",
            report.rejoined,
            if report.waiting > 0 {
                format!(
                    " ({} wait for a member to come online; `parley sync` retries)",
                    report.waiting
                )
            } else {
                String::new()
            },
            report.revoked_devices
        ));
    }
    Ok(())
}
