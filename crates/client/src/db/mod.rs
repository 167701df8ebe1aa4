//! The device's local database: account, chats, message log, outbox and sync cursor, beside
//! openmls' own tables in the same SQLite file (so one transaction covers them all).
//!
//! This module owns the schema, its migrations and opening the file; the submodules hold the
//! queries, one per table family. All of the client's SQL lives under `db` (openmls' storage
//! provider, in `provider`, keeps its own), so the rest of the crate calls these functions and
//! never writes a query.

mod account;
mod archive;
mod backup;
mod chats;
mod contacts;
mod disappearing;
mod evidence;
mod files;
mod link;
mod messages;
mod outbox;
mod receipts;
mod refs;
mod set_aside;

use std::path::Path;

use rusqlite::Connection;

use crate::error::ClientError;
use crate::provider;

// Callers name queries `db::xyz`, whatever table family they belong to.
pub use account::*;
pub use archive::*;
pub use backup::*;
pub use chats::*;
pub use contacts::*;
pub use disappearing::*;
pub use evidence::*;
pub use files::*;
pub use link::*;
pub use messages::*;
pub use outbox::*;
pub use receipts::*;
pub use refs::*;
pub use set_aside::*;

/// The database file inside the account's home directory.
pub const DATABASE_FILE: &str = "parley.db";

/// Opens (creating if need be) the database in `home` and brings openmls' tables and ours up
/// to date.
pub fn open(home: &Path) -> Result<Connection, ClientError> {
    crate::platform::create_home(home)?;
    crate::platform::make_database_private(&home.join(DATABASE_FILE))?;
    let mut conn = Connection::open(home.join(DATABASE_FILE))?;
    conn.busy_timeout(std::time::Duration::from_secs(30))?;
    crate::platform::before_journal_mode(&conn)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    // Deleted and purged content is overwritten, not left readable in free pages.
    conn.pragma_update(None, "secure_delete", "ON")?;
    provider::migrate(&mut conn).map_err(ClientError::Config)?;
    migrate(&mut conn)?;
    Ok(conn)
}

/// Moves the write-ahead log into the database file and empties it: afterwards, what was
/// deleted or overwritten (with `secure_delete`) is gone from both files.
pub fn checkpoint(conn: &Connection) -> Result<(), ClientError> {
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
    Ok(())
}

pub use crate::platform::now_ms;

// Applied in order, each once: `user_version` counts those applied. Append only; never edit or
// reorder one, or existing databases would open differently.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE account (
    id             INTEGER PRIMARY KEY CHECK (id = 1),
    server         TEXT NOT NULL,
    username       TEXT NOT NULL,
    user_id        BLOB NOT NULL,
    device_id      BLOB NOT NULL,
    signature_key  BLOB NOT NULL,
    token          TEXT,
    cursor         INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE chats (
    group_id      BLOB PRIMARY KEY,
    kind          INTEGER NOT NULL,   -- 0 unknown yet, 1 direct, 2 group
    name          TEXT NOT NULL,      -- peer username (direct) or group name
    state         INTEGER NOT NULL,   -- 0 active, 1 leaving, 2 removed
    created_at    INTEGER NOT NULL,
    last_activity INTEGER NOT NULL
);
CREATE INDEX chats_name ON chats(kind, name);
CREATE TABLE messages (
    id             BLOB PRIMARY KEY,  -- the message id: redelivery is a no-op
    group_id       BLOB NOT NULL,
    sender         TEXT NOT NULL,
    sender_device  BLOB NOT NULL,
    text           TEXT NOT NULL,
    sent_at        INTEGER NOT NULL,
    received_at    INTEGER NOT NULL,
    group_seq      INTEGER,
    status         INTEGER NOT NULL,  -- see MessageStatus
    payload        BLOB NOT NULL,     -- the exact AppPayload bytes (franking evidence)
    aad            BLOB NOT NULL,
    hidden         INTEGER NOT NULL DEFAULT 0  -- chat metadata, not a message to show
);
CREATE INDEX messages_chat ON messages(group_id, sent_at);
-- Received messages whose franking tag or sender did not verify: kept aside, never shown.
CREATE TABLE unverifiable (
    queue_seq    INTEGER PRIMARY KEY,
    group_id     BLOB NOT NULL,
    sender       TEXT NOT NULL,
    reason       TEXT NOT NULL,
    received_at  INTEGER NOT NULL
);
CREATE TABLE outbox (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id   BLOB NOT NULL UNIQUE,
    group_id     BLOB NOT NULL,
    kind         INTEGER NOT NULL,    -- see OutboxKind
    mls          BLOB NOT NULL,
    welcome      BLOB,
    epoch        INTEGER NOT NULL
);
"#,
    r#"
-- Franking evidence kept with each received message, for reports.
ALTER TABLE messages ADD COLUMN accepted_at INTEGER;
ALTER TABLE messages ADD COLUMN frank BLOB;
ALTER TABLE messages ADD COLUMN frank_key_id INTEGER;
CREATE INDEX messages_seq ON messages(group_id, group_seq);
CREATE TABLE blocked (
    username    TEXT PRIMARY KEY,
    blocked_at  INTEGER NOT NULL
);
"#,
    r#"
-- What the user has seen: messages received after this time count as unread.
ALTER TABLE chats ADD COLUMN last_read INTEGER NOT NULL DEFAULT 0;
"#,
    r#"
-- What happened to us in a chat, shown among its messages: NULL for a text, else a Notice
-- (`sender` is who did it).
ALTER TABLE messages ADD COLUMN notice TEXT;
"#,
    r#"
-- Multi-device: the account key (its secret, held by every device of the account; NULL for a
-- device from before, whose own signature key is its account key) and this device's
-- certificate under it (NULL: the device presents a plain credential).
ALTER TABLE account ADD COLUMN account_secret BLOB;
ALTER TABLE account ADD COLUMN certificate BLOB;
-- Account keys pinned on first sight, by username (see `contacts`).
CREATE TABLE contacts (
    username     TEXT PRIMARY KEY,
    account_key  BLOB NOT NULL,
    pinned_at    INTEGER NOT NULL,
    changed_at   INTEGER
);
"#,
    r#"
-- Multi-device: messages that came in a history archive from another device of the account.
ALTER TABLE messages ADD COLUMN history INTEGER NOT NULL DEFAULT 0;
-- A new device's link in progress (see `link`), until its history is imported.
CREATE TABLE pending_link (
    id             INTEGER PRIMARY KEY CHECK (id = 1),
    server         TEXT NOT NULL,
    username       TEXT NOT NULL,
    device_id      BLOB NOT NULL,
    signature_key  BLOB NOT NULL,
    link_id        BLOB NOT NULL,
    secret         BLOB NOT NULL,
    hpke_secret    BLOB NOT NULL,
    expires_at     INTEGER NOT NULL
);
"#,
    r#"
-- Devices their account revoked (a signed statement seen in a chat, or our own doing): never
-- accepted again, whatever a server says.
CREATE TABLE revoked_devices (
    username    TEXT NOT NULL,
    device_id   BLOB NOT NULL,
    revoked_at  INTEGER NOT NULL,
    PRIMARY KEY (username, device_id)
);
"#,
    r#"
-- Recovery: backup settings (what the recovery key gives a device to back up with, never the
-- key itself; `changed` is set by the triggers below when anything a backup holds changes),
-- chats a restored device still has to rejoin, and the GroupInfos of our accepted commits
-- that the server is still to get.
CREATE TABLE backup (
    id                INTEGER PRIMARY KEY CHECK (id = 1),
    backup_id         BLOB NOT NULL,
    encryption_key    BLOB NOT NULL,
    restore_verifier  BLOB NOT NULL,
    every_minutes  INTEGER NOT NULL,
    -- Counts changes; `stored` is the count the last stored backup holds.
    changed        INTEGER NOT NULL DEFAULT 1,
    stored         INTEGER NOT NULL DEFAULT 0,
    last_at        INTEGER,
    last_bytes     INTEGER
);
CREATE TRIGGER backup_message_added AFTER INSERT ON messages BEGIN UPDATE backup SET changed = changed + 1; END;
CREATE TRIGGER backup_message_changed AFTER UPDATE ON messages BEGIN UPDATE backup SET changed = changed + 1; END;
CREATE TRIGGER backup_message_deleted AFTER DELETE ON messages BEGIN UPDATE backup SET changed = changed + 1; END;
CREATE TRIGGER backup_chat_added AFTER INSERT ON chats BEGIN UPDATE backup SET changed = changed + 1; END;
CREATE TRIGGER backup_chat_changed AFTER UPDATE ON chats BEGIN UPDATE backup SET changed = changed + 1; END;
CREATE TRIGGER backup_contact_added AFTER INSERT ON contacts BEGIN UPDATE backup SET changed = changed + 1; END;
CREATE TRIGGER backup_contact_changed AFTER UPDATE ON contacts BEGIN UPDATE backup SET changed = changed + 1; END;
CREATE TRIGGER backup_revocation_added AFTER INSERT ON revoked_devices BEGIN UPDATE backup SET changed = changed + 1; END;
CREATE TABLE rejoins (
    group_id    BLOB PRIMARY KEY,
    -- The external commit on its way, kept so that a retry sends the very same one.
    message_id  BLOB,
    mls         BLOB
);
CREATE TABLE group_infos_to_share (
    group_id    BLOB PRIMARY KEY,
    epoch       INTEGER NOT NULL,
    group_info  BLOB NOT NULL
);
"#,
    // Our account's key rotations (oldest first): a re-certified leaf carries the chain, so
    // that members follow it from the key they pinned.
    r#"
CREATE TABLE own_rotations (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    statement   BLOB NOT NULL UNIQUE
);
-- A rotation this device made for a revocation, until it knows whether the server took it
-- (a crash between the two must not leave the device with the old key only).
CREATE TABLE pending_rotation (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    secret      BLOB NOT NULL,
    certificate BLOB NOT NULL,
    statement   BLOB NOT NULL,
    revoked     BLOB NOT NULL   -- the device whose revocation it goes with
);
-- Set when the account key rotated, until every leaf of ours carries the new key.
ALTER TABLE account ADD COLUMN recertify INTEGER NOT NULL DEFAULT 0;
-- The rotations this device followed, per account: a leaf under an earlier key on the chain
-- (a commit still in the queue when the pin moved on) is not an identity change.
CREATE TABLE followed_rotations (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    username    TEXT NOT NULL,
    statement   BLOB NOT NULL,
    UNIQUE (username, statement)
);
-- While a restore is under way (until the lost devices are revoked), the time of the backup
-- it restores from: an interrupted restore is resumed.
ALTER TABLE account ADD COLUMN restoring INTEGER;
"#,
    // Messages that refer to others (see `refs`): the reply target of a text, and edits,
    // deletes and reactions by their target. Each of the latter is also a hidden row of
    // `messages`, its evidence.
    r#"
ALTER TABLE messages ADD COLUMN reply_to BLOB;
CREATE TABLE message_refs (
    id        BLOB PRIMARY KEY,
    target    BLOB NOT NULL,
    kind      INTEGER NOT NULL,          -- see RefKind
    text      TEXT NOT NULL,             -- an edit's text, a reaction's emoji
    remove    INTEGER NOT NULL DEFAULT 0,
    by_admin  INTEGER NOT NULL DEFAULT 0,
    purged    INTEGER NOT NULL DEFAULT 0 -- its earlier versions' window is over and dealt with
);
CREATE INDEX message_refs_target ON message_refs(target);
CREATE INDEX message_refs_unpurged ON message_refs(purged, kind);
"#,
    // Attachments (see `files`): uploads under way, and each ciphertext's one key.
    r#"
CREATE TABLE outgoing_files (
    ciphertext_sha256  BLOB PRIMARY KEY,
    group_id           BLOB NOT NULL,
    sealed_path        TEXT NOT NULL,
    attachment         BLOB NOT NULL,   -- the v1::Attachment the message will carry
    caption            TEXT NOT NULL,
    reply_to           BLOB,
    created_at         INTEGER NOT NULL
);
CREATE TABLE attachment_keys (
    ciphertext_sha256  BLOB PRIMARY KEY,
    binding            BLOB NOT NULL    -- SHA-256 over the key, plaintext hash, size, chunking
);
"#,
    // Receipts (see `receipts`), the account's read-receipt setting, and our messages that
    // carry only a receipt or a setting (forgotten once sent).
    r#"
CREATE TABLE receipts (
    group_id   BLOB NOT NULL,
    username   TEXT NOT NULL,
    kind       INTEGER NOT NULL,   -- see ReceiptKind
    up_to_seq  INTEGER NOT NULL,
    PRIMARY KEY (group_id, username, kind)
);
CREATE TABLE transient_messages (
    id  BLOB PRIMARY KEY
);
ALTER TABLE account ADD COLUMN read_receipts INTEGER NOT NULL DEFAULT 1;
ALTER TABLE account ADD COLUMN read_receipts_changed INTEGER NOT NULL DEFAULT 0;
"#,
    // Disappearing messages (see `disappearing`): each chat's timer changes by server
    // position, and when each message goes.
    r#"
CREATE TABLE chat_timers (
    group_id   BLOB NOT NULL,
    from_seq   INTEGER NOT NULL,   -- applies to messages after this position
    seconds    INTEGER NOT NULL,   -- 0: off
    PRIMARY KEY (group_id, from_seq)
);
ALTER TABLE messages ADD COLUMN expires_at INTEGER;
CREATE INDEX messages_expiry ON messages(expires_at) WHERE expires_at IS NOT NULL;
"#,
    // Contacts checked in person (see `contacts`): the account key whose safety number the
    // user compared; verified while it is still the pinned key.
    r#"
ALTER TABLE contacts ADD COLUMN verified_key BLOB;
"#,
];

pub fn migrate(conn: &mut Connection) -> Result<(), ClientError> {
    let applied: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
    let tx = conn.transaction()?;
    for (index, migration) in MIGRATIONS.iter().enumerate().skip(applied.max(0) as usize) {
        tx.execute_batch(migration)?;
        tx.pragma_update(None, "user_version", (index + 1) as i64)?;
    }
    tx.commit()?;
    Ok(())
}
