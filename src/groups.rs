//! `parley group …`: create, add, remove, leave, promote.

use anyhow::{bail, Result};
use parley_protocol::Username;

use crate::account::{open, username};
use crate::args::{ClientArgs, GroupCommand};
use crate::output;

pub async fn run(args: ClientArgs, command: GroupCommand) -> Result<()> {
    let client = open(&args)?;
    match command {
        GroupCommand::Create { name, members } => {
            client
                .create_group(group_name(&name), &usernames(&members)?)
                .await?
        }
        GroupCommand::Add { name, members } => {
            client
                .add_members(group_name(&name), &usernames(&members)?)
                .await?
        }
        GroupCommand::Remove { name, members } => {
            client
                .remove_members(group_name(&name), &usernames(&members)?)
                .await?
        }
        GroupCommand::Leave { name } => client.leave_group(group_name(&name)).await?,
        GroupCommand::Members { name } => {
            let chat = parley_client::ChatRef::Group(group_name(&name).to_owned());
            output::members(&client.group_state(&chat)?);
        }
        GroupCommand::Admin { name, member } => {
            client
                .make_admin(group_name(&name), &username(&member)?)
                .await?
        }
    }
    Ok(())
}

/// Groups may be written `#team` or `team`.
fn group_name(name: &str) -> &str {
    name.strip_prefix('#').unwrap_or(name)
}

fn usernames(names: &[String]) -> Result<Vec<Username>> {
    if names.is_empty() {
        bail!("name at least one user");
    }
    names.iter().map(|n| username(n)).collect()
}
