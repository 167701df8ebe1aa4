//! `parley admin …`: moderation and operations on the server's data directory, through the same
//! `parley_server::moderation` service the web console uses.

use std::path::PathBuf;

use anyhow::{bail, Context as _, Result};
use parley_server::fanout::Announced;

use crate::account::username;
use crate::args::{AdminArgs, AdminCommand};
use crate::output;

pub async fn run(args: AdminArgs) -> Result<()> {
    // Where the server is, as `parley server` finds it: flags over its file over the default.
    let file = match &args.config {
        Some(path) => parley_server::config::FileConfig::load(path)?,
        None => Default::default(),
    };
    let data = args
        .data
        .or(file.data)
        .unwrap_or_else(|| PathBuf::from("parley-data"));
    let database_url = args.database_url.or(file.database_url);
    let nats = args.nats.or(file.nats);
    let moderation =
        parley_server::open_moderation(&data, database_url.as_deref(), nats.as_deref()).await?;
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
            announced(
                moderation.finish_announcements().await,
                "its live connections close at the nodes' next session check",
            );
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
            announced(
                moderation.finish_announcements().await,
                "members learn of it when they next sync",
            );
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
                .rotate_franking_key(who, &data)
                .await
                .map_err(api)?;
            output::line(&format!("franking key {id} is now current"));
        }
    }
    Ok(())
}

/// Who was told at once, on one line; when nobody was, a warning on stderr saying what happens
/// instead (`later`).
fn announced(announced: Announced, later: &str) {
    match announced {
        Announced::Nothing => {}
        Announced::Nats => output::line("announced to every node over NATS"),
        Announced::LocalNodes(0) => output::warning(&format!(
            "no node running on this data directory on this machine was told (give --nats to \
             reach the nodes of a deployment): {later}"
        )),
        Announced::LocalNodes(nodes) => output::line(&format!(
            "announced to {nodes} node(s) running on this data directory on this machine \
             (give --nats to reach the nodes of a deployment)"
        )),
        Announced::Failed(why) => output::warning(&format!("{why}; nothing announced: {later}")),
    }
}

fn changed_or_not(name: &str, changed: bool, done: &str, unchanged: &str) -> String {
    format!("{name} {}", if changed { done } else { unchanged })
}
