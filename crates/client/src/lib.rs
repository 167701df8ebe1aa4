//! Parley's client library: one device's account, MLS groups, message log, outbox and sync.
//!
//! Every chat is an MLS group (a 1:1 chat has two members), end-to-end encrypted from its first
//! message; there is nothing to switch on. Each state change (MLS state, message log, outbox,
//! dedup record, sync cursor) is one local SQLite transaction, so a crash at any point leaves a
//! state from which the outbox resends and the cursor refetches, without loss or duplicates.
//!
//! No terminal code lives here: the CLI, a terminal UI or a web front end all sit on [`Client`].
#![forbid(unsafe_code)]

// Layers, bottom up; a module imports only from layers below it (README.md has one line per
// module):
//   0  error, provider,        the error type; the openmls provider for one transaction;
//      platform                clock, timers, home and lock, TLS, WebSocket (native/browser)
//   1  names, api, db,         chat names; the server API;
//      attachments             all of the client's SQL; sealing and opening files
//   2  client                  the `Client` value, login and authenticated calls
//   3  trust, key_packages, groups, reports, content (what refers to a message, applied)
//   4  account, views
//   5  outgoing, incoming      (inside outgoing: outbox < commits < group_ops < mod)
//   6  presence, sync         receipts, settings and typing; staying in sync
//   7  devices                 linking a device, the history archive, the device list
// Methods of `Client` are still called upward where the protocol needs it: a change that lost
// its epoch to another member's commit receives that commit first, so `outgoing` calls
// `receive`, and `receive` first settles our own queued commits in `outgoing`.
mod account;
pub mod api;
pub mod attachments;
mod backup;
mod client;
mod content;
mod db;
mod devices;
mod error;
mod groups;
mod incoming;
mod key_packages;
mod names;
mod outgoing;
pub mod platform;
mod presence;
pub mod provider;
mod reports;
mod sync;
mod trust;
mod views;

pub use account::ClientOptions;
pub use backup::{
    BackupReport, BackupStatus, RecoveryKey, RestoreReport, StoredBackup, DEFAULT_BACKUP_MINUTES,
    MAX_BACKUP_MINUTES,
};
pub use client::{Client, TypingView};
pub use db::MessageStatus;
pub use devices::{ApproveEvent, DeviceView, LinkCode, LinkEvent};
pub use error::ClientError;
pub use names::{parse_group_name, ChatRef};
pub use reports::{EvidenceBundle, EvidenceMessage};
pub use views::{
    human_duration, rfc3339, AttachmentView, ChatSummary, GroupStateView, MessageView, Quoted,
    SafetyNumber,
};

/// For tests and benchmarks only.
#[cfg(feature = "test-hooks")]
pub mod testing {
    use std::path::Path;

    use crate::{ChatRef, Client, ClientError, ClientOptions};

    /// The client's database, opened as the client opens it (its schema and openmls' tables),
    /// for a platform's storage test (the browser's in particular).
    pub fn open_database(home: &Path) -> Result<rusqlite::Connection, ClientError> {
        crate::db::open(home)
    }

    /// What sending and receiving one message costs a client, in milliseconds each.
    #[derive(Debug, Clone, Copy)]
    pub struct SendReceiveCost {
        pub send_ms: f64,
        pub receive_ms: f64,
    }

    /// Measures the same work on any platform: two fresh accounts `sender` and `receiver`
    /// (homes under `root`) on `server`; after a first message (the chat's creation) and a
    /// warm-up round of `WARM_UP` messages sent and received, neither counted, `messages`
    /// messages sent one after the other, each until the server stored it, then received by
    /// syncing until all are in (fetch, decrypt, store, acknowledge, and what else a sync
    /// does: receipts, KeyPackages, backups). The warm-up makes it a steady-state cost: a
    /// browser first runs wasm through its baseline compiler and optimises it meanwhile, and
    /// the first sync also does once-only work.
    pub async fn send_receive_cost(
        server: &str,
        root: &Path,
        sender: &str,
        receiver: &str,
        messages: u32,
    ) -> Result<SendReceiveCost, ClientError> {
        let a =
            Client::register(&root.join(sender), server, sender, ClientOptions::default()).await?;
        let b = Client::register(
            &root.join(receiver),
            server,
            receiver,
            ClientOptions::default(),
        )
        .await?;
        let to_b = ChatRef::parse(receiver)?;
        a.send_text(&to_b, "hello").await?;
        b.sync().await?;
        send_all(&a, &to_b, WARM_UP).await?;
        receive_all(&b, WARM_UP).await?;
        let started = crate::platform::Instant::now();
        send_all(&a, &to_b, messages).await?;
        let send_ms = started.elapsed().as_secs_f64() * 1000.0 / f64::from(messages);
        let started = crate::platform::Instant::now();
        receive_all(&b, messages).await?;
        let receive_ms = started.elapsed().as_secs_f64() * 1000.0 / f64::from(messages);
        Ok(SendReceiveCost {
            send_ms,
            receive_ms,
        })
    }

    /// Messages sent and received before the measured ones.
    pub const WARM_UP: u32 = 20;

    async fn send_all(from: &Client, to: &ChatRef, messages: u32) -> Result<(), ClientError> {
        for n in 0..messages {
            from.send_text(to, &format!("message {n} of a benchmark"))
                .await?;
        }
        Ok(())
    }

    async fn receive_all(by: &Client, messages: u32) -> Result<(), ClientError> {
        let mut received = 0;
        for _ in 0..messages + 10 {
            if received >= messages as usize {
                return Ok(());
            }
            received += by.sync().await?.len();
        }
        if received < messages as usize {
            return Err(ClientError::Protocol(format!(
                "received {received} of {messages} messages"
            )));
        }
        Ok(())
    }
}
