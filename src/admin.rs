//! `parley admin …`: moderation and operations on the server's data directory, through the same
//! `parley_server::moderation` service the web console uses.

use anyhow::{bail, Context as _, Result};

use crate::account::username;
use crate::args::{AdminArgs, AdminCommand};
use crate::output;

pub async fn run(args: AdminArgs) -> Result<()> {
    let moderation =
        parley_server::open_moderation(&args.data, args.database_url.as_deref()).await?;
    let who = args.moderator.as_str();
    // The service answers with wire errors (they also go to the console); here they are lines.
    let api = |e: parley_server::ApiError| anyhow::anyhow!(e.0);
    match args.command {
        AdminCommand::Reports { json, status } => {
            let status = status
                .map(|s| {
                    parley_store::ReportStatus::parse(&s)
                        .context("status is open, actioned or dismissed")
                })
                .transpose()?;
            for report in moderation.reports(status).await.map_err(api)? {
                output::report(&report, json);
            }
        }
        AdminCommand::Dismiss { id } => {
            if !moderation.dismiss(who, id).await.map_err(api)? {
                bail!("no report {id}");
            }
            output::line(&format!("report {id} dismissed"));
        }
        AdminCommand::Suspend { username: name } => {
            let changed = moderation.suspend(who, &username(&name)?).await;
            output::line(&changed_or_not(
                &name,
                changed.map_err(api)?,
                "suspended",
                "was already suspended",
            ));
        }
        AdminCommand::Unsuspend { username: name } => {
            let changed = moderation.unsuspend(who, &username(&name)?).await;
            output::line(&changed_or_not(
                &name,
                changed.map_err(api)?,
                "unsuspended",
                "was not suspended",
            ));
        }
        AdminCommand::RemoveFromGroups { username: name } => {
            let groups = moderation
                .remove_from_groups(who, &username(&name)?)
                .await
                .map_err(api)?;
            output::line(&format!(
                "removal of {name} proposed in {groups} group(s); members commit it when they next sync \
                 (chats of two are left alone)"
            ));
        }
        AdminCommand::Token { label } => {
            output::line(&moderation.create_admin_token(&label).await.map_err(api)?);
        }
        AdminCommand::Audit { json } => {
            for entry in moderation.audit_log().await.map_err(api)? {
                output::audit(&entry, json);
            }
        }
        AdminCommand::RevokeToken { label } => {
            let revoked = moderation
                .revoke_admin_token(who, &label)
                .await
                .map_err(api)?;
            output::line(&format!(
                "{revoked} token(s) labelled {label} revoked; their console sessions ended"
            ));
        }
        AdminCommand::RotateFrankingKey => {
            let id = moderation
                .rotate_franking_key(who, &args.data)
                .await
                .map_err(api)?;
            output::line(&format!("franking key {id} is now current"));
        }
    }
    Ok(())
}

fn changed_or_not(name: &str, changed: bool, done: &str, unchanged: &str) -> String {
    format!("{name} {}", if changed { done } else { unchanged })
}
