//! Account and messaging commands: register, send, sync, chats, history, the terminal UI and
//! safety numbers.

use anyhow::{Context as _, Result};
use parley_client::{ChatRef, Client, ClientOptions};

use crate::args::ClientArgs;
use crate::output;

/// The address a registration stores when none is given.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:7878";

pub fn options(args: &ClientArgs) -> ClientOptions {
    ClientOptions {
        server: args.server.clone(),
        ca_cert: args.ca_cert.clone(),
        ciphersuite: None,
        on_wait: Some(output::waiting_for_home),
    }
}

pub fn home(args: &ClientArgs) -> Result<&std::path::Path> {
    args.home
        .as_deref()
        .context("no device directory: give --home DIR or set PARLEY_HOME")
}

/// Opens the registered device in `--home`.
pub fn open(args: &ClientArgs) -> Result<Client> {
    Ok(Client::open(home(args)?, options(args))?)
}

pub fn username(name: &str) -> Result<parley_protocol::Username> {
    parley_protocol::Username::parse(name).map_err(|e| anyhow::anyhow!("{name:?}: {e}"))
}

pub async fn register(args: ClientArgs, name: &str) -> Result<()> {
    let server = args.server.clone().unwrap_or_else(|| DEFAULT_SERVER.into());
    let client = match Client::register(home(&args)?, &server, name, options(&args)).await {
        Err(e) if e.server_code() == Some(parley_protocol::ErrorCode::UsernameTaken) => {
            anyhow::bail!(
                "{name} is already taken. If it is your account, make this device one of its \
                 devices instead: `parley --home DIR link {name}`, then approve the code it \
                 shows on a device you already use (`parley devices approve CODE`)"
            )
        }
        other => other?,
    };
    output::line(&format!(
        "registered {} (device {})",
        client.username(),
        client.device_id()
    ));
    Ok(())
}

pub async fn send(args: ClientArgs, chat: &str, text: &str, reply_to: Option<&str>) -> Result<()> {
    let client = open(&args)?;
    let sent = client
        .send_reply(&ChatRef::parse(chat)?, text, reply_to)
        .await?;
    if sent.status == "sending" {
        eprintln!(
            "parley: server unreachable; message {} queued and will be sent on the next sync",
            sent.id
        );
    }
    Ok(())
}

/// Prints transfer progress on stderr for files of more than one part.
fn progress(
    verb: &'static str,
) -> impl Fn(&str, parley_client::attachments::Progress) + Send + Sync {
    move |name, p| {
        if p.total > u64::from(parley_protocol::limits::ATTACHMENT_PART_BYTES) {
            let mb = |bytes: u64| bytes as f64 / 1e6;
            eprintln!(
                "parley: {verb} {}: {:.1} of {:.1} MB",
                output::sanitize(name),
                mb(p.done),
                mb(p.total)
            );
        }
    }
}

pub async fn send_file(
    args: ClientArgs,
    chat: &str,
    file: &std::path::Path,
    caption: Option<&str>,
    reply_to: Option<&str>,
) -> Result<()> {
    let client = open(&args)?;
    let sent = client
        .send_file(
            &ChatRef::parse(chat)?,
            file,
            caption,
            reply_to,
            &progress("uploading"),
        )
        .await?;
    if sent.status == "sending" {
        eprintln!(
            "parley: server unreachable; message {} queued and will be sent on the next sync",
            sent.id
        );
    }
    println!("{}", sent.id);
    Ok(())
}

pub async fn save_attachment(
    args: ClientArgs,
    message_id: &str,
    index: usize,
    out: Option<&std::path::Path>,
) -> Result<()> {
    let client = open(&args)?;
    let path = client
        .save_attachment(message_id, index, out, &progress("downloading"))
        .await?;
    println!("{}", path.display());
    Ok(())
}

pub async fn edit(args: ClientArgs, message_id: &str, text: &str) -> Result<()> {
    let client = open(&args)?;
    let edited = client.edit(message_id, text).await?;
    output::message(&edited, false);
    queued_notice(&client)
}

pub async fn delete(args: ClientArgs, message_id: &str) -> Result<()> {
    let client = open(&args)?;
    let deleted = client.delete(message_id).await?;
    output::message(&deleted, false);
    queued_notice(&client)
}

pub async fn react(args: ClientArgs, message_id: &str, emoji: &str, remove: bool) -> Result<()> {
    let client = open(&args)?;
    let reacted = client.react(message_id, emoji, remove).await?;
    output::message(&reacted, false);
    queued_notice(&client)
}

/// Says so when the change just made waits in the outbox.
fn queued_notice(client: &Client) -> Result<()> {
    if client.has_unsent()? {
        eprintln!("parley: server unreachable; the change is queued and goes out on the next sync");
    }
    Ok(())
}

pub async fn sync(args: ClientArgs, json: bool, follow: bool) -> Result<()> {
    let client = open(&args)?;
    if follow {
        let stop = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        let mut typing = client.typing_events();
        let show_typing = async {
            loop {
                match typing.recv().await {
                    Ok(event) => output::typing(&event, json),
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                        std::future::pending::<()>().await
                    }
                }
            }
        };
        let follow = client.follow(
            |m| output::message(m, json),
            |up| tracing::info!(connected = up, "live connection"),
            stop,
        );
        tokio::select! {
            result = follow => result?,
            () = show_typing => {}
        }
    } else {
        for message in client.sync().await? {
            output::message(&message, json);
        }
    }
    Ok(())
}

pub fn chats(args: ClientArgs, json: bool) -> Result<()> {
    for chat in open(&args)?.chats()? {
        output::chat(&chat, json);
    }
    Ok(())
}

pub fn history(args: ClientArgs, chat: &str, json: bool, limit: u32) -> Result<()> {
    for message in open(&args)?.history(&ChatRef::parse(chat)?, limit)? {
        output::message(&message, json);
    }
    Ok(())
}

/// The terminal UI; on a device with no account yet, it first registers or links one.
pub async fn tui(args: ClientArgs) -> Result<()> {
    let home = home(&args)?;
    let client = match Client::open(home, options(&args)) {
        Err(parley_client::ClientError::NoAccount(_)) => {
            let server = args.server.clone().unwrap_or_else(|| DEFAULT_SERVER.into());
            match parley_tui::start(home, &server, options(&args)).await? {
                Some(client) => client,
                None => return Ok(()),
            }
        }
        opened => opened?,
    };
    Ok(parley_tui::run(client).await?)
}

/// Shows or changes the stored server address. A `--server` given with it is ignored: the
/// address to store is the argument.
pub fn server_address(args: ClientArgs, url: Option<&str>) -> Result<()> {
    let client = open(&ClientArgs {
        server: None,
        ..args
    })?;
    match url {
        None => output::server_address(&client.stored_server()?),
        Some(url) => {
            let stored = client.set_server(url)?;
            output::line(&format!("server address stored: {stored}"));
        }
    }
    Ok(())
}

pub fn safety_number(args: ClientArgs, name: &str, mark_verified: Option<&str>) -> Result<()> {
    let client = open(&args)?;
    let peer = username(name)?;
    if let Some(digits) = mark_verified {
        client.mark_verified(&peer, digits)?;
    }
    let number = client.safety_number(&peer)?;
    output::line(&number.digits);
    if number.verified {
        output::line(&format!("{name} is verified"));
    }
    Ok(())
}
