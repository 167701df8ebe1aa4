//! `parley`: the server and the command-line client in one binary.
#![forbid(unsafe_code)]

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use parley_client::{ChatRef, ChatSummary, Client, ClientOptions, MessageView};
use parley_protocol::Username;
use parley_server::{ServerConfig, TlsFiles};

#[derive(Parser)]
#[command(
    name = "parley",
    version,
    about = "End-to-end-encrypted messaging on MLS"
)]
struct Cli {
    /// This device's directory (account, keys, message log).
    #[arg(long, env = "PARLEY_HOME", global = true)]
    home: Option<PathBuf>,
    /// Server address; stored at registration, overridable on any command.
    #[arg(long, env = "PARLEY_SERVER", global = true)]
    server: Option<String>,
    /// Extra CA certificate (PEM) to trust, e.g. a self-signed server's.
    #[arg(long, env = "PARLEY_CA_CERT", global = true)]
    ca_cert: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (embedded SQLite in --data).
    Server(ServerArgs),
    /// Create an account on the server for this device.
    Register { username: String },
    /// Send a message to a user (1:1, created on first use) or to a group (#name).
    Send { chat: String, text: String },
    /// Fetch, decrypt and store new messages, send what waits in the outbox, print new messages.
    Sync {
        #[arg(long)]
        json: bool,
        /// Stay connected and print messages as they arrive.
        #[arg(long)]
        follow: bool,
    },
    /// Manage group chats.
    #[command(subcommand)]
    Group(GroupCommand),
    /// List chats.
    Chats {
        #[arg(long)]
        json: bool,
    },
    /// Report a received message to the server's moderators (verifiable: message franking).
    Report {
        /// The message id, as `sync --json` and `history --json` print it.
        message_id: Option<String>,
        #[arg(long, default_value = "")]
        reason: String,
        /// Add up to N neighbouring messages of the chat as context.
        #[arg(long, default_value_t = 0)]
        context: u32,
        /// Write the evidence bundle (JSON) to FILE instead of sending it.
        #[arg(long)]
        export: Option<PathBuf>,
        /// Send a bundle written earlier with --export.
        #[arg(long, conflicts_with_all = ["message_id", "export"])]
        from_file: Option<PathBuf>,
    },
    /// The full-screen terminal client.
    Tui,
    /// Show the safety number shared with a contact (compare it in person).
    SafetyNumber { username: String },
    /// Stop showing messages from an account.
    Block { username: String },
    /// Moderation, on the server's data directory.
    Admin(AdminArgs),
    /// Show a chat's messages (a username, or #group).
    History {
        chat: String,
        #[arg(long)]
        json: bool,
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
}

#[derive(Subcommand)]
enum GroupCommand {
    /// Create a group with you as admin.
    Create { name: String, members: Vec<String> },
    /// Add members (any member may).
    Add { name: String, members: Vec<String> },
    /// Remove members (admins only).
    Remove { name: String, members: Vec<String> },
    /// Leave a group.
    Leave { name: String },
    /// Make a member an admin (admins only).
    Admin { name: String, member: String },
}

#[derive(Args)]
struct AdminArgs {
    /// The server's data directory.
    #[arg(long, env = "PARLEY_DATA", default_value = "parley-data")]
    data: PathBuf,
    /// The deployment's PostgreSQL database, if it does not use the embedded SQLite.
    #[arg(long, env = "PARLEY_DATABASE_URL")]
    database_url: Option<String>,
    /// Who is acting, for the audit log.
    #[arg(long, default_value = "cli")]
    moderator: String,
    #[command(subcommand)]
    command: AdminCommand,
}

#[derive(Subcommand)]
enum AdminCommand {
    /// List reports (open ones first by id).
    Reports {
        #[arg(long)]
        json: bool,
        /// open, actioned or dismissed.
        #[arg(long)]
        status: Option<String>,
    },
    /// Dismiss a report.
    Dismiss {
        id: u64,
    },
    /// Suspend an account: its sessions end, it cannot log in or send.
    Suspend {
        username: String,
    },
    Unsuspend {
        username: String,
    },
    /// Remove a suspended account from all its groups (the server proposes, members commit).
    RemoveFromGroups {
        username: String,
    },
    /// Create a token for the web moderation console at /admin.
    Token {
        #[arg(long, default_value = "moderator")]
        label: String,
    },
    /// Add a new franking key and make it current.
    RotateFrankingKey,
    /// Print the audit log.
    Audit {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
struct ServerArgs {
    /// A TOML configuration file (see docs/parley.toml); flags override it.
    #[arg(long, env = "PARLEY_CONFIG")]
    config: Option<PathBuf>,
    /// Data directory: key files, and the SQLite database [default: parley-data].
    #[arg(long, env = "PARLEY_DATA")]
    data: Option<PathBuf>,
    /// [default: 127.0.0.1:7878]
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// PostgreSQL (e.g. postgres://user@host/db) instead of the embedded SQLite; several server
    /// nodes can share it.
    #[arg(long, env = "PARLEY_DATABASE_URL")]
    database_url: Option<String>,
    /// NATS servers for delivery hints between nodes: nats://host:4222[,nats://...].
    #[arg(long, env = "PARLEY_NATS", value_delimiter = ',')]
    nats: Option<Vec<String>>,
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Listen on a non-loopback address without TLS (only behind a TLS-terminating proxy).
    #[arg(long)]
    allow_plaintext_public: bool,
    /// [default: 10000]
    #[arg(long)]
    max_group_members: Option<usize>,
    /// [default: 8388608]
    #[arg(long)]
    max_frame_bytes: Option<usize>,
    /// Days an undelivered item is kept [default: 30].
    #[arg(long)]
    retention_days: Option<u64>,
    /// Sustained submissions per second per account [default: 200].
    #[arg(long)]
    rate_per_second: Option<u32>,
    /// Registrations and logins per second per client address [default: 50].
    #[arg(long)]
    auth_rate_per_second: Option<u32>,
}

fn main() {
    let cli = Cli::parse();
    let is_server = matches!(cli.command, Command::Server(_));
    // openmls logs key material at debug level: it stays at warn whatever PARLEY_LOG says.
    let level = std::env::var("PARLEY_LOG").unwrap_or_else(|_| {
        if is_server {
            "info".into()
        } else {
            "warn".into()
        }
    });
    let filter = format!("{level},openmls=warn");
    // The terminal UI owns the screen: nothing may be printed beside it.
    let quiet = matches!(cli.command, Command::Tui);
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(move || -> Box<dyn std::io::Write> {
            if quiet {
                Box::new(std::io::sink())
            } else {
                Box::new(std::io::stderr())
            }
        })
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("parley: cannot start the runtime: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = runtime.block_on(run(cli)) {
        eprintln!("parley: {}", one_line(&e));
        std::process::exit(1);
    }
}

/// An error as one line: the causes joined, newlines flattened.
fn one_line(error: &anyhow::Error) -> String {
    format!("{error:#}").replace('\n', " ")
}

async fn run(cli: Cli) -> Result<()> {
    let options = ClientOptions {
        server: cli.server.clone(),
        ca_cert: cli.ca_cert.clone(),
        ciphersuite: None,
    };
    let home = cli.home.clone();
    let open = || -> Result<Client> {
        let home = home
            .clone()
            .context("no device directory: give --home DIR or set PARLEY_HOME")?;
        Ok(Client::open(&home, options.clone())?)
    };
    match cli.command {
        Command::Server(args) => serve(args).await,
        Command::Register { username } => {
            let home = cli
                .home
                .context("no device directory: give --home DIR or set PARLEY_HOME")?;
            let server = cli.server.unwrap_or_else(|| "http://127.0.0.1:7878".into());
            let client = Client::register(&home, &server, &username, options).await?;
            println!(
                "registered {} (device {})",
                client.username(),
                client.device_id()
            );
            Ok(())
        }
        Command::Send { chat, text } => {
            let client = open()?;
            let chat = ChatRef::parse(&chat)?;
            let sent = client.send_text(&chat, &text).await?;
            if sent.status == "sending" {
                eprintln!("parley: server unreachable; message {} queued and will be sent on the next sync", sent.id);
            }
            Ok(())
        }
        Command::Sync { json, follow } => {
            let client = open()?;
            if follow {
                let stop = async {
                    let _ = tokio::signal::ctrl_c().await;
                };
                client
                    .follow(
                        |m| print_message(m, json),
                        |up| tracing::info!(connected = up, "live connection"),
                        stop,
                    )
                    .await?;
            } else {
                for message in client.sync().await? {
                    print_message(&message, json);
                }
            }
            Ok(())
        }
        Command::Group(command) => {
            let client = open()?;
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
                GroupCommand::Admin { name, member } => {
                    client
                        .make_admin(group_name(&name), &usernames(&[member])?[0])
                        .await?
                }
            }
            Ok(())
        }
        Command::Report {
            message_id,
            reason,
            context,
            export,
            from_file,
        } => {
            let client = open()?;
            let bundle = match (from_file, message_id) {
                (Some(file), _) => {
                    let text = std::fs::read_to_string(&file)
                        .with_context(|| format!("cannot read {}", file.display()))?;
                    serde_json::from_str(&text)
                        .with_context(|| format!("{} is not an evidence bundle", file.display()))?
                }
                (None, Some(id)) => client.report_bundle(&id, &reason, context)?,
                (None, None) => bail!("name the message to report, or give --from-file"),
            };
            match export {
                Some(file) => {
                    std::fs::write(&file, serde_json::to_vec_pretty(&bundle)?)
                        .with_context(|| format!("cannot write {}", file.display()))?;
                    println!("evidence written to {}", file.display());
                }
                None => {
                    let id = client.send_report(&bundle).await?;
                    println!("report {id} received by the server");
                }
            }
            Ok(())
        }
        Command::Block { username } => {
            let client = open()?;
            client.block(&usernames(&[username])?[0])?;
            Ok(())
        }
        Command::Admin(args) => admin(args).await,
        Command::Tui => Ok(parley_tui::run(open()?).await?),
        Command::SafetyNumber { username } => {
            let client = open()?;
            let number = client.safety_number(&usernames(&[username])?[0])?;
            println!("{}", number.digits);
            Ok(())
        }
        Command::Chats { json } => {
            let client = open()?;
            for chat in client.chats()? {
                print_chat(&chat, json);
            }
            Ok(())
        }
        Command::History { chat, json, limit } => {
            let client = open()?;
            for message in client.history(&ChatRef::parse(&chat)?, limit)? {
                print_message(&message, json);
            }
            Ok(())
        }
    }
}

fn group_name(name: &str) -> &str {
    name.strip_prefix('#').unwrap_or(name)
}

fn usernames(names: &[String]) -> Result<Vec<Username>> {
    if names.is_empty() {
        bail!("name at least one user");
    }
    names
        .iter()
        .map(|n| Username::parse(n).map_err(|e| anyhow::anyhow!("{n:?}: {e}")))
        .collect()
}

fn print_message(message: &MessageView, json: bool) {
    let mut out = std::io::stdout().lock();
    let _ = if json {
        writeln!(
            out,
            "{}",
            serde_json::to_string(message).unwrap_or_default()
        )
    } else {
        let when = chrono::DateTime::parse_from_rfc3339(&message.sent_at)
            .map(|t| {
                t.with_timezone(&chrono::Local)
                    .format("%Y-%m-%d %H:%M")
                    .to_string()
            })
            .unwrap_or_else(|_| message.sent_at.clone());
        writeln!(
            out,
            "[{when}] {} {}: {}",
            message.chat,
            message.sender,
            sanitize(&message.text)
        )
    };
    let _ = out.flush();
}

fn print_chat(chat: &ChatSummary, json: bool) {
    if json {
        println!("{}", serde_json::to_string(chat).unwrap_or_default());
        return;
    }
    let last = chat
        .last_message
        .as_ref()
        .map(|m| format!("{}: {}", m.sender, sanitize(&m.text)))
        .unwrap_or_default();
    let state = if chat.state == "active" {
        String::new()
    } else {
        format!(" ({})", chat.state)
    };
    println!("{}{state}  {last}", chat.chat);
}

/// Terminal output never carries control characters from the network.
fn sanitize(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() && c != '\n' && c != '\t' {
                '\u{fffd}'
            } else {
                c
            }
        })
        .collect()
}

async fn serve(args: ServerArgs) -> Result<()> {
    let file = match &args.config {
        Some(path) => parley_server::config::FileConfig::load(path)?,
        None => Default::default(),
    };
    let data = args
        .data
        .or(file.data)
        .unwrap_or_else(|| PathBuf::from("parley-data"));
    let mut config = ServerConfig::new(data);
    let defaults = ServerConfig::new(PathBuf::new());
    config.listen = args.listen.or(file.listen).unwrap_or(defaults.listen);
    config.database_url = args.database_url.or(file.database_url);
    config.nats = args.nats.or(file.nats);
    config.tls = match (
        args.tls_cert.or(file.tls_cert),
        args.tls_key.or(file.tls_key),
    ) {
        (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
        (None, None) => None,
        _ => bail!("give both a TLS certificate and its key, or neither"),
    };
    config.allow_plaintext_public =
        args.allow_plaintext_public || file.allow_plaintext_public.unwrap_or(false);
    config.max_group_members = args
        .max_group_members
        .or(file.max_group_members)
        .unwrap_or(defaults.max_group_members);
    config.max_frame_bytes = args
        .max_frame_bytes
        .or(file.max_frame_bytes)
        .unwrap_or(defaults.max_frame_bytes);
    if let Some(days) = args.retention_days.or(file.retention_days) {
        config.retention = Duration::from_secs(days * 24 * 3600);
    }
    let rate = args
        .rate_per_second
        .or(file.rate_per_second)
        .unwrap_or(defaults.submit_per_second);
    config.submit_per_second = rate;
    config.submit_burst = rate.saturating_mul(10);
    let auth_rate = args
        .auth_rate_per_second
        .or(file.auth_rate_per_second)
        .unwrap_or(defaults.auth_per_second);
    config.auth_per_second = auth_rate;
    config.auth_burst = auth_rate.saturating_mul(10);
    let shutdown = async {
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = async { match terminate.as_mut() { Some(s) => { s.recv().await; } None => std::future::pending().await } } => {}
        }
        tracing::info!("shutting down");
    };
    parley_server::run(config, shutdown).await?;
    Ok(())
}

async fn admin(args: AdminArgs) -> Result<()> {
    let moderation =
        parley_server::open_moderation(&args.data, args.database_url.as_deref()).await?;
    let who = args.moderator.as_str();
    let user = |name: &str| -> Result<Username> {
        Username::parse(name).map_err(|e| anyhow::anyhow!("{name:?}: {e}"))
    };
    match args.command {
        AdminCommand::Reports { json, status } => {
            let status = match status.as_deref() {
                None => None,
                Some(s) => Some(
                    parley_store::ReportStatus::parse(s)
                        .context("status is open, actioned or dismissed")?,
                ),
            };
            for report in moderation
                .reports(status)
                .await
                .map_err(|e| anyhow::anyhow!(e.0))?
            {
                let r = &report.report;
                if json {
                    let context: serde_json::Value =
                        serde_json::from_str(&r.context).unwrap_or_default();
                    let line = serde_json::json!({
                        "id": report.id,
                        "status": report.status.as_str(),
                        "accused": r.accused.as_str(),
                        "reporter": r.reporter.as_str(),
                        "text": r.text,
                        "reason": r.reason,
                        "chat": r.group_id.to_hex(),
                        "group_seq": r.group_seq,
                        "sent_at": rfc3339(r.message_accepted_at),
                        "reported_at": rfc3339(r.created_at),
                        "context": context,
                        "verified": true,
                    });
                    println!("{line}");
                } else {
                    println!(
                        "#{} [{}] {} reported by {} ({}): {}",
                        report.id,
                        report.status.as_str(),
                        r.accused,
                        r.reporter,
                        sanitize(&r.reason),
                        sanitize(&r.text)
                    );
                }
            }
        }
        AdminCommand::Dismiss { id } => {
            if !moderation
                .dismiss(who, id)
                .await
                .map_err(|e| anyhow::anyhow!(e.0))?
            {
                bail!("no report {id}");
            }
            println!("report {id} dismissed");
        }
        AdminCommand::Suspend { username } => {
            let changed = moderation
                .suspend(who, &user(&username)?)
                .await
                .map_err(|e| anyhow::anyhow!(e.0))?;
            println!(
                "{username} {}",
                if changed {
                    "suspended"
                } else {
                    "was already suspended (or is unknown)"
                }
            );
        }
        AdminCommand::Unsuspend { username } => {
            let changed = moderation
                .unsuspend(who, &user(&username)?)
                .await
                .map_err(|e| anyhow::anyhow!(e.0))?;
            println!(
                "{username} {}",
                if changed {
                    "unsuspended"
                } else {
                    "was not suspended"
                }
            );
        }
        AdminCommand::RemoveFromGroups { username } => {
            let groups = moderation
                .remove_from_groups(who, &user(&username)?)
                .await
                .map_err(|e| anyhow::anyhow!(e.0))?;
            println!("removal of {username} proposed in {groups} group(s); members commit it when they next sync");
        }
        AdminCommand::Token { label } => {
            println!(
                "{}",
                moderation
                    .create_admin_token(&label)
                    .await
                    .map_err(|e| anyhow::anyhow!(e.0))?
            );
        }
        AdminCommand::Audit { json } => {
            for entry in moderation
                .audit_log()
                .await
                .map_err(|e| anyhow::anyhow!(e.0))?
            {
                if json {
                    let line = serde_json::json!({"at": rfc3339(entry.at), "moderator": entry.moderator, "action": entry.action, "subject": entry.subject});
                    println!("{line}");
                } else {
                    println!(
                        "{} {} {} {}",
                        rfc3339(entry.at),
                        entry.moderator,
                        entry.action,
                        entry.subject
                    );
                }
            }
        }
        AdminCommand::RotateFrankingKey => {
            let id = parley_server::franking::FrankingKeys::rotate(&args.data)?;
            println!("franking key {id} is now current");
        }
    }
    Ok(())
}

fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
