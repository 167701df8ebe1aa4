//! Reporting a message to the moderators, and blocking an account.

use anyhow::{bail, Context as _, Result};

use crate::account::{open, username};
use crate::args::{ClientArgs, ReportArgs};
use crate::output;

pub async fn report(client: ClientArgs, args: ReportArgs) -> Result<()> {
    let client = open(&client)?;
    let bundle = match (args.from_file, args.message_id) {
        (Some(file), _) => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            serde_json::from_str(&text)
                .with_context(|| format!("{} is not an evidence bundle", file.display()))?
        }
        (None, Some(id)) => client.report_bundle(&id, &args.reason, args.context)?,
        (None, None) => bail!("name the message to report, or give --from-file"),
    };
    match args.export {
        Some(file) => {
            std::fs::write(&file, serde_json::to_vec_pretty(&bundle)?)
                .with_context(|| format!("cannot write {}", file.display()))?;
            output::line(&format!("evidence written to {}", file.display()));
        }
        None => {
            let saved: Vec<(usize, std::path::PathBuf)> =
                args.files.into_iter().enumerate().collect();
            let id = if args.without_missing_files {
                client
                    .send_report_without_missing_files(&bundle, &saved)
                    .await?
            } else {
                client.send_report_with_files(&bundle, &saved).await?
            };
            output::line(&format!("report {id} received by the server"));
        }
    }
    Ok(())
}

pub async fn block(args: ClientArgs, name: &str) -> Result<()> {
    let user = username(name)?;
    open(&args)?.block(&user).await?;
    output::line(&format!(
        "{user} is blocked: their messages are no longer shown"
    ));
    Ok(())
}

pub fn unblock(args: ClientArgs, name: &str) -> Result<()> {
    let user = username(name)?;
    open(&args)?.unblock(&user)?;
    output::line(&format!(
        "{user} is unblocked: their new messages are shown"
    ));
    Ok(())
}

pub fn blocked(args: ClientArgs) -> Result<()> {
    for user in open(&args)?.blocked()? {
        output::line(&user);
    }
    Ok(())
}
