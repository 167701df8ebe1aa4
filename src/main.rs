//! `parley`: the server and the command-line client in one binary. This file parses arguments and
//! dispatches; each command family lives in its own module and prints through `output`.
#![forbid(unsafe_code)]

mod account;
mod admin;
mod args;
mod backup;
mod devices;
mod groups;
mod output;
mod presence;
mod reports;
mod server;

use std::io::IsTerminal as _;

use anyhow::Result;
use clap::Parser as _;

use args::{Cli, Command};

fn main() {
    let cli = Cli::parse();
    init_logging(&cli.command);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            output::fail(&anyhow::anyhow!("cannot start the runtime: {e}"));
        }
    };
    if let Err(e) = runtime.block_on(run(cli)) {
        output::fail(&e);
    }
}

/// Logs go to stderr, coloured only on a terminal and never under `NO_COLOR`.
fn init_logging(command: &Command) {
    let is_server = matches!(command, Command::Server(_));
    // openmls logs key material at debug level: it stays at warn whatever PARLEY_LOG says.
    let level = std::env::var("PARLEY_LOG")
        .unwrap_or_else(|_| if is_server { "info" } else { "warn" }.into());
    let filter = format!("{level},openmls=warn");
    // The terminal UI owns the screen: nothing may be printed beside it.
    let quiet = matches!(command, Command::Tui(_));
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    let ansi = !quiet && !no_color && std::io::stderr().is_terminal();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_ansi(ansi)
        .with_writer(move || -> Box<dyn std::io::Write> {
            if quiet {
                Box::new(std::io::sink())
            } else {
                Box::new(std::io::stderr())
            }
        })
        .init();
}

async fn run(cli: Cli) -> Result<()> {
    let top = cli.client;
    match cli.command {
        Command::Server(args) => {
            top.refuse_for("server")?;
            server::run(*args).await
        }
        Command::Admin(args) => {
            top.refuse_for("admin")?;
            admin::run(args).await
        }
        Command::Register { client, username } => {
            account::register(top.or(client), &username).await
        }
        Command::Send {
            client,
            chat,
            text,
            reply_to,
            file: Some(file),
            caption,
        } => {
            let caption = caption.or(text);
            account::send_file(
                top.or(client),
                &chat,
                &file,
                caption.as_deref(),
                reply_to.as_deref(),
            )
            .await
        }
        Command::Send {
            client,
            chat,
            text,
            reply_to,
            file: None,
            ..
        } => {
            let text = text.unwrap_or_default();
            account::send(top.or(client), &chat, &text, reply_to.as_deref()).await
        }
        Command::Attachment {
            command:
                args::AttachmentCommand::Save {
                    client,
                    message_id,
                    out,
                    index,
                },
        } => account::save_attachment(top.or(client), &message_id, index, out.as_deref()).await,
        Command::Edit {
            client,
            message_id,
            text,
        } => account::edit(top.or(client), &message_id, &text).await,
        Command::Delete { client, message_id } => {
            account::delete(top.or(client), &message_id).await
        }
        Command::React {
            client,
            message_id,
            emoji,
            remove,
        } => account::react(top.or(client), &message_id, &emoji, remove).await,
        Command::Read { client, chat } => presence::read(top.or(client), &chat).await,
        Command::Settings {
            client,
            chat,
            disappearing,
            read_receipts,
        } => presence::settings(top.or(client), chat.as_deref(), disappearing, read_receipts).await,
        Command::Typing {
            client,
            chat,
            stopped,
        } => presence::typing(top.or(client), &chat, stopped).await,
        Command::Sync {
            client,
            json,
            follow,
        } => account::sync(top.or(client), json, follow).await,
        Command::Chats { client, json } => account::chats(top.or(client), json),
        Command::History {
            client,
            chat,
            json,
            limit,
        } => account::history(top.or(client), &chat, json, limit),
        Command::Tui(client) => account::tui(top.or(client)).await,
        Command::SafetyNumber {
            client,
            username,
            mark_verified,
        } => account::safety_number(top.or(client), &username, mark_verified.as_deref()),
        Command::Block { client, username } => reports::block(top.or(client), &username).await,
        Command::Unblock { client, username } => reports::unblock(top.or(client), &username),
        Command::Blocked(client) => reports::blocked(top.or(client)),
        Command::Report(args) => {
            let client = top.or(args.client.clone());
            reports::report(client, args).await
        }
        Command::ServerAddress { client, url } => {
            account::server_address(top.or(client), url.as_deref())
        }
        Command::Group { client, command } => groups::run(top.or(client), command).await,
        Command::Link {
            client,
            username,
            name,
            json,
        } => devices::link(top.or(client), &username, name.as_deref(), json).await,
        Command::Devices {
            client,
            json,
            command,
        } => devices::run(top.or(client), command, json).await,
        Command::Backup {
            client,
            json,
            command,
        } => backup::run(top.or(client), command, json).await,
        Command::Restore {
            client,
            username,
            recovery_key,
            json,
        } => backup::restore(top.or(client), &username, &recovery_key, json).await,
    }
}
