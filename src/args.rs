//! The command line: every command, flag and its one-line help. Parsing only; `main` dispatches.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "parley",
    version,
    about = "End-to-end-encrypted messaging on MLS: the server and the command-line client"
)]
pub struct Cli {
    #[command(flatten)]
    pub client: ClientArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Where a client command finds its device. Accepted before the command (`parley --home A sync`)
/// or after it (`parley sync --home A`); the environment fills what neither gives.
#[derive(Args, Clone, Default)]
pub struct ClientArgs {
    /// This device's directory: account, keys, message log [env: PARLEY_HOME].
    #[arg(long, value_name = "DIR")]
    pub home: Option<PathBuf>,
    /// Server address(es), comma-separated: stored by `register`, for this command only
    /// otherwise (see `server-address`) [env: PARLEY_SERVER].
    #[arg(long, value_name = "URL")]
    pub server: Option<String>,
    /// Extra CA certificate (PEM) to trust, e.g. a self-signed server's [env: PARLEY_CA_CERT].
    #[arg(long, value_name = "FILE")]
    pub ca_cert: Option<PathBuf>,
}

impl ClientArgs {
    /// These flags, given after the command, win over the same given before it.
    pub fn or(self, after: ClientArgs) -> ClientArgs {
        ClientArgs {
            home: after.home.or(self.home),
            server: after.server.or(self.server),
            ca_cert: after.ca_cert.or(self.ca_cert),
        }
        .with_environment()
    }

    fn with_environment(self) -> ClientArgs {
        let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
        ClientArgs {
            home: self.home.or_else(|| var("PARLEY_HOME").map(PathBuf::from)),
            server: self
                .server
                .or_else(|| var("PARLEY_SERVER").map(|v| v.to_string_lossy().into_owned())),
            ca_cert: self
                .ca_cert
                .or_else(|| var("PARLEY_CA_CERT").map(PathBuf::from)),
        }
    }

    /// The server and admin commands have no device: a client flag there is a mistake.
    pub fn refuse_for(&self, command: &str) -> Result<()> {
        if self.home.is_some() || self.server.is_some() || self.ca_cert.is_some() {
            bail!("--home, --server and --ca-cert are for client commands, not `parley {command}`");
        }
        Ok(())
    }
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the server (embedded SQLite in --data, or PostgreSQL).
    Server(Box<ServerArgs>),
    /// Moderation and operations, on the server's data directory.
    Admin(AdminArgs),
    /// Create an account on the server for this device.
    Register {
        #[command(flatten)]
        client: ClientArgs,
        /// The account name: 3 to 32 lowercase letters, digits and '_', starting with a letter.
        username: String,
    },
    /// Make this device another device of an existing account: shows a code to approve on a
    /// device the account has (`parley devices approve CODE`), then receives the history.
    Link {
        #[command(flatten)]
        client: ClientArgs,
        /// The account to join.
        username: String,
        /// What to call this device in `parley devices`, e.g. "laptop".
        #[arg(long)]
        name: Option<String>,
        /// JSON lines instead of text (the first is {"link_code": ...}).
        #[arg(long)]
        json: bool,
    },
    /// The account's devices: list them, or approve, rename one.
    Devices {
        #[command(flatten)]
        client: ClientArgs,
        /// JSON instead of text.
        #[arg(long)]
        json: bool,
        #[command(subcommand)]
        command: Option<DevicesCommand>,
    },
    /// Encrypted backups, to restore the account when every device is lost.
    Backup {
        #[command(flatten)]
        client: ClientArgs,
        /// JSON instead of text.
        #[arg(long, global = true)]
        json: bool,
        #[command(subcommand)]
        command: BackupCommand,
    },
    /// All devices lost: make this fresh device the account's again from its newest backup,
    /// with its chats and history. The lost devices are revoked.
    Restore {
        #[command(flatten)]
        client: ClientArgs,
        /// The account to restore.
        username: String,
        /// The recovery key `parley backup enable` showed (8 groups of 5 characters).
        #[arg(long, env = "PARLEY_RECOVERY_KEY", hide_env_values = true)]
        recovery_key: String,
        /// JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Send a message to a user (1:1, created on first use) or to a group (#name).
    Send {
        #[command(flatten)]
        client: ClientArgs,
        /// A username, or #group.
        chat: String,
        /// The message text (not empty; at most 64 KiB of UTF-8); with --file, its caption.
        #[arg(required_unless_present = "file")]
        text: Option<String>,
        /// Answer this message (its id, as `history --json` shows it, or its first digits).
        #[arg(long, value_name = "MESSAGE_ID")]
        reply_to: Option<String>,
        /// Send this file (any kind, up to the server's limit, 100 MiB by default), encrypted
        /// on this device; prints progress for large ones.
        #[arg(long, value_name = "PATH")]
        file: Option<PathBuf>,
        /// The text going with --file.
        #[arg(long, requires = "file", conflicts_with = "text", value_name = "TEXT")]
        caption: Option<String>,
    },
    /// Files received in messages.
    Attachment {
        #[command(subcommand)]
        command: AttachmentCommand,
    },
    /// Change the text of a message you sent, for everyone (within 24 hours, at most 10 times;
    /// the earlier texts stay visible as its versions).
    Edit {
        #[command(flatten)]
        client: ClientArgs,
        /// The message's id (or its first digits).
        message_id: String,
        /// The new text.
        text: String,
    },
    /// Delete a message for everyone: one you sent, or as a group admin anyone's (within 24
    /// hours).
    Delete {
        #[command(flatten)]
        client: ClientArgs,
        /// The message's id (or its first digits).
        message_id: String,
    },
    /// React to a message with an emoji, or take your reaction back.
    React {
        #[command(flatten)]
        client: ClientArgs,
        /// The message's id (or its first digits).
        message_id: String,
        /// One emoji.
        emoji: String,
        /// Take this reaction back.
        #[arg(long)]
        remove: bool,
    },
    /// Mark a chat as read (and, with read receipts on, tell its members).
    Read {
        #[command(flatten)]
        client: ClientArgs,
        /// A username, or #group.
        chat: String,
    },
    /// Show or change settings: the account's read receipts (off is reciprocal: you see no
    /// one's), and with a chat its disappearing-message timer.
    Settings {
        #[command(flatten)]
        client: ClientArgs,
        /// A username or #group, for the chat's own settings.
        chat: Option<String>,
        /// Messages sent from now on disappear this long after sending, from every device:
        /// 30s to 4w (e.g. 30s, 5m, 1h, 2d, 1w), or off. Any member of a 1:1 chat, admins of
        /// a group.
        #[arg(long, value_name = "TIME|off", value_parser = crate::presence::timer)]
        disappearing: Option<u32>,
        /// Send read receipts (on or off), on all of the account's devices.
        #[arg(long, value_name = "on|off", value_parser = crate::presence::on_off)]
        read_receipts: Option<bool>,
    },
    /// Tell a chat's online members that you are typing (never stored; `sync --follow` and
    /// the TUI show it).
    Typing {
        #[command(flatten)]
        client: ClientArgs,
        /// A username, or #group.
        chat: String,
        /// Say that you stopped.
        #[arg(long)]
        stopped: bool,
    },
    /// Fetch, decrypt and store new messages, send what waits in the outbox, print new messages.
    Sync {
        #[command(flatten)]
        client: ClientArgs,
        /// One JSON object per line and message instead of text.
        #[arg(long)]
        json: bool,
        /// Stay connected and print messages as they arrive (Ctrl+C ends).
        #[arg(long)]
        follow: bool,
    },
    /// List chats, most recently active first, with unread counts.
    Chats {
        #[command(flatten)]
        client: ClientArgs,
        /// One JSON object per line and chat instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Show a chat's messages, oldest first.
    History {
        #[command(flatten)]
        client: ClientArgs,
        /// A username, or #group.
        chat: String,
        /// One JSON object per line and message instead of text.
        #[arg(long)]
        json: bool,
        /// Show at most this many of the newest messages.
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Manage group chats.
    Group {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        command: GroupCommand,
    },
    /// Report a received message to the server's moderators (verifiable: message franking).
    Report(ReportArgs),
    /// Stop showing messages from an account.
    Block {
        #[command(flatten)]
        client: ClientArgs,
        /// The account to block.
        username: String,
    },
    /// Show an account's messages again.
    Unblock {
        #[command(flatten)]
        client: ClientArgs,
        /// The account to unblock.
        username: String,
    },
    /// List the blocked accounts.
    Blocked(ClientArgs),
    /// Show the safety number shared with a contact (compare it in person).
    SafetyNumber {
        #[command(flatten)]
        client: ClientArgs,
        /// The contact.
        username: String,
        /// You compared these digits in person and they matched: mark the contact verified
        /// (refused if they are not the current number; holds until their key changes).
        #[arg(long, value_name = "DIGITS")]
        mark_verified: Option<String>,
    },
    /// The full-screen terminal client.
    Tui(ClientArgs),
    /// Show the stored server address, or store a new one (the only way to change it).
    ServerAddress {
        #[command(flatten)]
        client: ClientArgs,
        /// The new address(es), comma-separated, e.g. https://chat.example.org.
        url: Option<String>,
    },
}

#[derive(Subcommand)]
pub enum BackupCommand {
    /// Turn backups on: shows the recovery key once (write it down; nobody else can restore
    /// the account), stores the first backup; later ones run by themselves after changes.
    Enable {
        /// Back up at most this often, in minutes (0: after every change) [default: 60].
        #[arg(long, value_name = "MINUTES")]
        every: Option<u32>,
    },
    /// Store a backup now.
    Now,
    /// Whether backups are on, the last one, and those the server keeps.
    Status,
}

#[derive(Subcommand)]
pub enum AttachmentCommand {
    /// Download a message's file, check it against the hash its message carries, and write
    /// it (nothing is written unless all of it matches).
    Save {
        #[command(flatten)]
        client: ClientArgs,
        /// The message's id (or its first digits).
        message_id: String,
        /// Where to write it [default: its name, in the current directory].
        #[arg(long, value_name = "PATH")]
        out: Option<PathBuf>,
        /// Which of the message's files, counting from 0 [default: 0].
        #[arg(long, default_value_t = 0, value_name = "N")]
        index: usize,
    },
}

#[derive(Subcommand)]
pub enum DevicesCommand {
    /// Approve the new device showing CODE: it joins every chat and receives the history.
    /// Again with the same code, resumes a transfer that stopped.
    Approve {
        /// The link code the new device shows.
        code: String,
    },
    /// Revoke another device of the account (lost or sold): it is removed from every chat,
    /// cannot read what is sent from now on, and can never log in again.
    Revoke {
        /// The device's id, or its first digits (see `parley devices`).
        id: String,
    },
    /// Name one of the account's devices.
    Rename {
        /// The device's id, or its first digits (see `parley devices`).
        id: String,
        /// Its new name.
        name: String,
    },
}

#[derive(Subcommand)]
pub enum GroupCommand {
    /// Create a group with you as admin.
    Create {
        /// The group's name (#name or name).
        name: String,
        /// The first members' usernames.
        members: Vec<String>,
    },
    /// Add members (any member may).
    Add {
        /// The group (#name or name).
        name: String,
        /// Usernames to add.
        members: Vec<String>,
    },
    /// Remove members (admins only).
    Remove {
        /// The group (#name or name).
        name: String,
        /// Usernames to remove.
        members: Vec<String>,
    },
    /// Leave a group.
    Leave {
        /// The group (#name or name).
        name: String,
    },
    /// List a group's members, admins marked.
    Members {
        /// The group (#name or name).
        name: String,
    },
    /// Make a member an admin (admins only).
    Admin {
        /// The group (#name or name).
        name: String,
        /// The member to promote.
        member: String,
    },
}

#[derive(Args)]
pub struct ReportArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// The message id, as `sync --json` and `history --json` print it.
    pub message_id: Option<String>,
    /// Why you report it; moderators see this.
    #[arg(long, default_value = "")]
    pub reason: String,
    /// Add up to N neighbouring messages of the chat as context.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub context: u32,
    /// Write the evidence bundle (JSON) to FILE instead of sending it.
    #[arg(long, value_name = "FILE")]
    pub export: Option<PathBuf>,
    /// Send a bundle written earlier with --export.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["message_id", "export"])]
    pub from_file: Option<PathBuf>,
    /// Your saved copy of the message's file, when the server no longer has it (it goes with
    /// the report, checked against the hash in the message); once per file, in order.
    #[arg(long = "file", value_name = "PATH")]
    pub files: Vec<PathBuf>,
    /// Report the message even though the server no longer has a file of it and you gave no
    /// copy (the report names the file and its hash; it cannot follow later).
    #[arg(long)]
    pub without_missing_files: bool,
}

#[derive(Args)]
pub struct AdminArgs {
    /// The server's TOML configuration file (as `parley server --config`): its data,
    /// database_url and nats apply here too; flags override it.
    #[arg(long, env = "PARLEY_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The server's data directory (key files, and the SQLite database) [default: parley-data].
    #[arg(long, env = "PARLEY_DATA", value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// The deployment's PostgreSQL database, if it does not use the embedded SQLite.
    #[arg(long, env = "PARLEY_DATABASE_URL", value_name = "URL")]
    pub database_url: Option<String>,
    /// The deployment's NATS servers, nats://host:4222[,nats://...]: a suspension closes the
    /// account's live connections on every node at once. Without, the nodes running on the
    /// data directory on this machine are told.
    #[arg(long, env = "PARLEY_NATS", value_delimiter = ',', value_name = "URL")]
    pub nats: Option<Vec<String>>,
    /// Who is acting, for the audit log.
    #[arg(long, default_value = "cli", value_name = "NAME")]
    pub moderator: String,
    #[command(subcommand)]
    pub command: AdminCommand,
}

#[derive(Subcommand)]
pub enum AdminCommand {
    /// List reports (by id).
    Reports {
        /// One JSON object per line and report instead of text.
        #[arg(long)]
        json: bool,
        /// Only reports in this state: open, actioned or dismissed.
        #[arg(long)]
        status: Option<String>,
    },
    /// Dismiss a report.
    Dismiss {
        /// The report's id, as `reports` prints it.
        id: u64,
    },
    /// Suspend an account: its sessions end (live connections close at once on the nodes
    /// told, see --nats), it cannot log in or send.
    Suspend {
        /// The account.
        username: String,
    },
    /// Lift a suspension: the account can log in and send again.
    Unsuspend {
        /// The account.
        username: String,
    },
    /// Remove a suspended account from its groups of three or more (the server proposes,
    /// members commit); 1:1 chats stay.
    RemoveFromGroups {
        /// The suspended account.
        username: String,
    },
    /// Create a token for the web moderation console at /admin.
    Token {
        /// A name for the token, shown in the audit log.
        #[arg(long, default_value = "moderator")]
        label: String,
    },
    /// Revoke the console tokens with this label; their sessions end at once.
    RevokeToken {
        /// The label given to `token --label`.
        label: String,
    },
    /// Add a new franking key and make it current.
    RotateFrankingKey,
    /// Print the audit log.
    Audit {
        /// One JSON object per line and entry instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
pub struct ServerArgs {
    /// A TOML configuration file (see docs/parley.toml); flags override it.
    #[arg(long, env = "PARLEY_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Data directory: key files, and the SQLite database [default: parley-data].
    #[arg(long, env = "PARLEY_DATA", value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:7878].
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Address serving Prometheus metrics at /metrics, apart from the API [default: 127.0.0.1
    /// and the port after --listen's]; a non-loopback one needs --allow-plaintext-public.
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<SocketAddr>,
    /// PostgreSQL (e.g. postgres://user@host/db) instead of the embedded SQLite; several server
    /// nodes can share it.
    #[arg(long, env = "PARLEY_DATABASE_URL", value_name = "URL")]
    pub database_url: Option<String>,
    /// NATS servers for delivery hints between nodes: nats://host:4222[,nats://...].
    #[arg(long, env = "PARLEY_NATS", value_delimiter = ',', value_name = "URL")]
    pub nats: Option<Vec<String>>,
    /// TLS certificate chain (PEM); serves HTTPS with --tls-key.
    #[arg(long, requires = "tls_key", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM) for --tls-cert.
    #[arg(long, requires = "tls_cert", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// Listen on a non-loopback address without TLS (only behind a TLS-terminating proxy).
    #[arg(long)]
    pub allow_plaintext_public: bool,
    /// An origin (`https://chat.example.org`) that may serve the web client and call this
    /// API from the browser; repeat for several (docs/web-client.md).
    #[arg(long = "web-origin", value_name = "ORIGIN")]
    pub web_origins: Vec<String>,
    /// Most members a group may have [default: 10000].
    #[arg(long, value_name = "N")]
    pub max_group_members: Option<usize>,
    /// Largest request body or WebSocket frame accepted, in bytes [default: 8388608].
    #[arg(long, value_name = "BYTES")]
    pub max_frame_bytes: Option<usize>,
    /// Days an undelivered item is kept [default: 30].
    #[arg(long, value_name = "DAYS")]
    pub retention_days: Option<u64>,
    /// Sustained submissions per second per account; bursts of ten times this [default: 200].
    #[arg(long, value_name = "N")]
    pub rate_per_second: Option<u32>,
    /// Registrations and logins per second per client address; bursts of ten times this
    /// [default: 50].
    #[arg(long, value_name = "N")]
    pub auth_rate_per_second: Option<u32>,
    /// Accounts one client address may register at once [default: 10].
    #[arg(long, value_name = "N")]
    pub registration_burst: Option<u32>,
    /// Further registrations an hour per client address, once the burst is spent [default: 60].
    #[arg(long, value_name = "N")]
    pub registrations_per_hour: Option<u32>,
    /// MiB one account may submit a minute, ciphertexts and Welcomes [default: 64].
    #[arg(long, value_name = "MIB")]
    pub send_mib_per_minute: Option<u32>,
    /// MiB of undelivered messages one device's queue may hold; submissions beyond are refused
    /// ("the queue of NAME is full"), nothing queued is dropped [default: 256].
    #[arg(long, value_name = "MIB")]
    pub queue_mib_per_device: Option<u32>,
    /// Groups (1:1 chats included) an account may be in and still create another; others may
    /// still add it to theirs [default: 5000].
    #[arg(long, value_name = "N")]
    pub max_groups_per_account: Option<u32>,
    /// Devices one account may have; linking another is refused [default: 10].
    #[arg(long, value_name = "N")]
    pub max_devices_per_account: Option<u32>,
    /// Groups (and 1:1 chats) one account may create at once [default: 10].
    #[arg(long, value_name = "N")]
    pub group_burst: Option<u32>,
    /// Further groups an hour per account, once the burst is spent [default: 20].
    #[arg(long, value_name = "N")]
    pub groups_per_hour: Option<u32>,
    /// Largest attachment, in MiB [default: 100].
    #[arg(long, value_name = "MIB")]
    pub max_attachment_mib: Option<u64>,
    /// MiB of attachments one account may have stored at once; they go as recipients fetch
    /// them [default: 1024].
    #[arg(long, value_name = "MIB")]
    pub attachment_quota_mib: Option<u64>,
    /// Days an attachment is kept for devices that have not fetched it [default: 30].
    #[arg(long, value_name = "DAYS")]
    pub attachment_days: Option<u64>,
    /// S3-compatible storage for attachments, needed by several nodes (e.g.
    /// http://127.0.0.1:9000); credentials from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY
    /// [default: the data directory's objects/].
    #[arg(
        long,
        env = "PARLEY_S3_ENDPOINT",
        value_name = "URL",
        requires = "s3_bucket"
    )]
    pub s3_endpoint: Option<String>,
    /// The bucket for --s3-endpoint.
    #[arg(long, env = "PARLEY_S3_BUCKET", value_name = "NAME")]
    pub s3_bucket: Option<String>,
    /// The region for --s3-endpoint [default: us-east-1].
    #[arg(long, env = "PARLEY_S3_REGION", value_name = "REGION")]
    pub s3_region: Option<String>,
}
