//! The Delivery Service's queues on SQLite: `payloads` (each message stored once), each device's
//! `queue_runs` over them, and `submissions` (idempotency records); accepting, fetching,
//! acknowledging and expiring.
//!
//! A device's queue is stored as runs over its groups' payloads (see [`MIGRATION_4`]): a group
//! message costs one payload row and one small in-place update per recipient, and an
//! acknowledgement moves or drops runs instead of deleting a row per item.

use parley_protocol::{DeviceId, GroupId, MessageId, Username};
use rusqlite::{params, Connection, OptionalExtension, Transaction};

use super::sql::{blob, conversion_error, device_id, exec, query_one};
use super::{accounts, groups};
use crate::model::*;
use crate::{StoreError, StoreResult};

pub(super) const MIGRATION_1: &str = r#"
-- A message is stored once; `refs` counts the queue entries that still point at it.
CREATE TABLE payloads (
    id             INTEGER PRIMARY KEY,
    kind           INTEGER NOT NULL,
    group_id       BLOB NOT NULL,
    group_seq      INTEGER NOT NULL,
    sender_device  BLOB NOT NULL,
    message_id     BLOB NOT NULL,
    accepted_at    INTEGER NOT NULL,
    refs           INTEGER NOT NULL,
    data           BLOB NOT NULL
);
-- Each device's queue: small pointers in the device's own monotonic sequence.
CREATE TABLE queue (
    device_id    BLOB NOT NULL,
    seq          INTEGER NOT NULL,
    payload_id   INTEGER NOT NULL,
    enqueued_at  INTEGER NOT NULL,
    PRIMARY KEY (device_id, seq)
) WITHOUT ROWID;
CREATE INDEX queue_enqueued ON queue(enqueued_at);
-- Idempotency: (device, message id) -> the first result.
CREATE TABLE submissions (
    device_id    BLOB NOT NULL,
    message_id   BLOB NOT NULL,
    fingerprint  BLOB NOT NULL,
    group_id     BLOB NOT NULL,
    group_seq    INTEGER NOT NULL,
    epoch        INTEGER NOT NULL,
    accepted_at  INTEGER NOT NULL,
    PRIMARY KEY (device_id, message_id)
) WITHOUT ROWID;
CREATE INDEX submissions_accepted ON submissions(accepted_at);
-- The same ciphertext twice in a group is a replay, whatever message id it comes with.
CREATE UNIQUE INDEX submissions_replay ON submissions(group_id, fingerprint);
"#;

pub(super) const MIGRATION_2: &str = r#"
-- Message franking: the tag a recipient's report is verified against.
ALTER TABLE payloads ADD COLUMN franking_tag BLOB;
"#;

pub(super) const MIGRATION_3: &str = r#"
-- A payload is deleted once no queue entry points at it, found through this index. It replaces
-- the `refs` count, whose decrement rewrote a group message's payload row once per recipient's
-- acknowledgement.
CREATE INDEX queue_payload ON queue(payload_id);
ALTER TABLE payloads DROP COLUMN refs;
"#;

pub(super) const MIGRATION_4: &str = r#"
-- Each device's queue as runs instead of one row per item. A run maps a range of the device's
-- sequence numbers onto the payloads that make up a group's log: `single = 0`: the group's
-- messages with ids first_payload..=last_payload that the device did not send itself, one per
-- sequence number; `single = 1`: exactly one payload (a Welcome). A device's open run (at most
-- one, its newest) is extended in place by the group's next message, so a message costs one
-- small row update per recipient, and an acknowledgement moves the start of a run or deletes it.
-- A payload is garbage once it lies below the first payload of every run of its group.
CREATE TABLE queue_runs (
    device_id      BLOB NOT NULL,
    first_seq      INTEGER NOT NULL,
    last_seq       INTEGER NOT NULL,
    group_id       BLOB NOT NULL,
    first_payload  INTEGER NOT NULL,
    last_payload   INTEGER NOT NULL,
    single         INTEGER NOT NULL,
    open           INTEGER NOT NULL,
    PRIMARY KEY (device_id, first_seq)
) WITHOUT ROWID;
CREATE INDEX queue_runs_group ON queue_runs(group_id, first_payload);
CREATE INDEX queue_runs_open ON queue_runs(group_id, device_id) WHERE open = 1;
-- Covers the filter of a group run, so that finding where a run continues reads no payloads.
CREATE INDEX payloads_group ON payloads(group_id, id, kind, sender_device);
-- Queued items of the old layout become runs of one item each.
INSERT INTO queue_runs (device_id, first_seq, last_seq, group_id, first_payload, last_payload, single, open)
    SELECT q.device_id, q.seq, q.seq, p.group_id, p.id, p.id, 1, 0
    FROM queue q JOIN payloads p ON p.id = q.payload_id;
DROP TABLE queue;
-- From now on `devices.queue_head` is only a floor: the head is the larger of it and the last
-- sequence number of the device's runs, and it is raised when runs are deleted.
"#;

pub(super) const MIGRATION_6: &str = r#"
-- Bytes of undelivered payloads in each device's queue, charged when a message is accepted and
-- released when it is acknowledged or expires: a recipient's queue has a byte budget.
ALTER TABLE devices ADD COLUMN queued_bytes INTEGER NOT NULL DEFAULT 0;
UPDATE devices SET queued_bytes = COALESCE((
    SELECT SUM(length(p.data)) FROM queue_runs r JOIN payloads p
      ON p.group_id = r.group_id AND p.id BETWEEN r.first_payload AND r.last_payload
     AND (r.single = 1 OR (p.kind = 1 AND p.sender_device != r.device_id))
    WHERE r.device_id = devices.id), 0);
"#;

pub(super) const MIGRATION_13: &str = r#"
-- Disappearing messages: when the ciphertext is overwritten, delivered or not.
ALTER TABLE payloads ADD COLUMN expires_at INTEGER;
CREATE INDEX payloads_expiry ON payloads(expires_at) WHERE expires_at IS NOT NULL;
"#;

pub(super) fn find_submission(
    conn: &Connection,
    device: &DeviceId,
    message: &MessageId,
) -> StoreResult<Option<StoredSubmission>> {
    let row = query_one(
        conn,
        "SELECT fingerprint, group_id, group_seq, epoch, accepted_at FROM submissions
             WHERE device_id = ?1 AND message_id = ?2",
        params![blob(device.as_bytes()), blob(message.as_bytes())],
        |row| {
            Ok((
                row.get::<_, Vec<u8>>(0)?,
                row.get::<_, Vec<u8>>(1)?,
                row.get::<_, i64>(2)?,
                row.get::<_, i64>(3)?,
                row.get::<_, i64>(4)?,
            ))
        },
    )
    .optional()?;
    row.map(|(fingerprint, group, seq, epoch, at)| {
        Ok(StoredSubmission {
            fingerprint,
            accepted: Accepted {
                group_id: GroupId::from_slice(&group)
                    .map_err(|e| StoreError::Backend(e.to_string()))?,
                group_seq: seq as u64,
                epoch: epoch as u64,
                accepted_at: at,
                duplicate: true,
                deliveries: Vec::new(),
            },
        })
    })
    .transpose()
}

/// The device's newest sequence number (the larger of the floor kept in `devices` and the end
/// of its newest run) and how far its queue has expired; zeros for an unknown device.
fn queue_position(conn: &Connection, device: &[u8]) -> rusqlite::Result<(i64, i64)> {
    query_one(
        conn,
        "SELECT MAX(d.queue_head, COALESCE((SELECT MAX(last_seq) FROM queue_runs WHERE device_id = ?1), 0)),
                d.expired_up_to
         FROM devices d WHERE d.id = ?1",
        params![device],
        |row| Ok((row.get(0)?, row.get(1)?)),
    )
    .optional()
    .map(|position| position.unwrap_or((0, 0)))
}

/// Starts a new run for `device` (closing its open one): the next sequence number maps to
/// `payload_id`. Returns that sequence number.
fn start_run(
    tx: &Transaction<'_>,
    device: &DeviceId,
    group: &[u8],
    payload_id: i64,
    single: bool,
) -> StoreResult<u64> {
    let device = blob(device.as_bytes());
    exec(
        tx,
        "UPDATE queue_runs SET open = 0 WHERE device_id = ?1 AND open = 1",
        params![device],
    )?;
    let seq = queue_position(tx, device)?.0 + 1;
    exec(
        tx,
        "INSERT INTO queue_runs (device_id, first_seq, last_seq, group_id, first_payload, last_payload, single, open)
         VALUES (?1, ?2, ?2, ?3, ?4, ?4, ?5, ?6)",
        params![device, seq, group, payload_id, single, !single],
    )?;
    Ok(seq as u64)
}

/// Appends a group message to the queue of every member of `group` but `sender`: members whose
/// newest run is this group's extend it in place (one statement for all of them); the others
/// start a run.
fn enqueue_members(
    tx: &Transaction<'_>,
    group: &[u8],
    sender: &DeviceId,
    recipients: &[DeviceId],
    payload_id: i64,
    deliveries: &mut Vec<(DeviceId, u64)>,
) -> StoreResult<()> {
    let mut extend = tx.prepare_cached(
        "UPDATE queue_runs SET last_seq = last_seq + 1, last_payload = ?3
         WHERE open = 1 AND group_id = ?1
           AND device_id IN (SELECT device_id FROM group_members WHERE group_id = ?1 AND device_id != ?2)
         RETURNING device_id, last_seq",
    )?;
    let rows = extend.query_map(params![group, blob(sender.as_bytes()), payload_id], |row| {
        Ok((device_id(row.get(0)?)?, row.get::<_, i64>(1)? as u64))
    })?;
    let before = deliveries.len();
    for row in rows {
        deliveries.push(row?);
    }
    if deliveries.len() - before < recipients.len() {
        let extended: std::collections::HashSet<DeviceId> =
            deliveries[before..].iter().map(|(d, _)| *d).collect();
        for device in recipients.iter().filter(|d| !extended.contains(*d)) {
            let seq = start_run(tx, device, group, payload_id, false)?;
            deliveries.push((*device, seq));
        }
    }
    Ok(())
}

/// Adds `bytes` to the queue of every member of `group` but `sender`, or refuses: the first
/// member whose queue would then hold more than `limit`.
fn charge_members(
    tx: &Transaction<'_>,
    group: &[u8],
    sender: &DeviceId,
    bytes: usize,
    limit: u64,
) -> StoreResult<()> {
    let mut charge = tx.prepare_cached(
        "UPDATE devices SET queued_bytes = queued_bytes + ?3
         WHERE id IN (SELECT device_id FROM group_members WHERE group_id = ?1 AND device_id != ?2)
         RETURNING id, queued_bytes",
    )?;
    let mut full = None;
    let mut rows = charge.query(params![group, blob(sender.as_bytes()), bytes as i64])?;
    while let Some(row) = rows.next()? {
        if full.is_none() && row.get::<_, i64>(1)? as u64 > limit {
            full = Some(row.get::<_, Vec<u8>>(0)?);
        }
    }
    drop(rows);
    match full {
        Some(device) => Err(StoreError::QueueFull(accounts::username_of(tx, &device)?)),
        None => Ok(()),
    }
}

/// [`charge_members`] for a Welcome's recipients.
fn charge_devices(
    tx: &Transaction<'_>,
    devices: &[DeviceId],
    bytes: usize,
    limit: u64,
) -> StoreResult<()> {
    let mut charge = tx.prepare_cached(
        "UPDATE devices SET queued_bytes = queued_bytes + ?2 WHERE id = ?1 RETURNING queued_bytes",
    )?;
    for device in devices {
        let device = blob(device.as_bytes());
        let queued: Option<i64> = charge
            .query_row(params![device, bytes as i64], |row| row.get(0))
            .optional()?;
        if queued.is_some_and(|queued| queued as u64 > limit) {
            return Err(StoreError::QueueFull(accounts::username_of(tx, device)?));
        }
    }
    Ok(())
}

/// Gives back the bytes of the first `count` items of `run`, which are leaving the device's
/// queue.
fn release(tx: &Transaction<'_>, device: &[u8], run: &Run, count: i64) -> StoreResult<()> {
    let bytes: i64 = if run.single {
        query_one(
            tx,
            "SELECT length(data) FROM payloads WHERE id = ?1",
            params![run.first_payload],
            |row| row.get(0),
        )
        .optional()?
        .unwrap_or(0)
    } else {
        query_one(
            tx,
            "SELECT COALESCE(SUM(n), 0) FROM (
                 SELECT length(data) AS n FROM payloads
                 WHERE group_id = ?1 AND id BETWEEN ?2 AND ?3 AND kind = 1 AND sender_device != ?4
                 ORDER BY id LIMIT ?5)",
            params![
                run.group,
                run.first_payload,
                run.last_payload,
                device,
                count
            ],
            |row| row.get(0),
        )?
    };
    exec(
        tx,
        "UPDATE devices SET queued_bytes = MAX(0, queued_bytes - ?2) WHERE id = ?1",
        params![device, bytes],
    )?;
    Ok(())
}

fn insert_payload(
    tx: &Transaction<'_>,
    kind: ItemKind,
    submission: &Submission,
    group_seq: u64,
    data: &[u8],
) -> StoreResult<i64> {
    exec(tx,
        "INSERT INTO payloads (kind, group_id, group_seq, sender_device, message_id, accepted_at, data, franking_tag, expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        params![
            kind as i64,
            blob(submission.group_id.as_bytes()),
            group_seq as i64,
            blob(submission.sender.as_bytes()),
            blob(submission.message_id.as_bytes()),
            submission.accepted_at,
            data,
            if kind == ItemKind::GroupMessage { submission.franking_tag.as_deref() } else { None },
            if kind == ItemKind::GroupMessage { submission.expires_at } else { None }
        ],
    )?;
    Ok(tx.last_insert_rowid())
}

/// Overwrites the ciphertext of disappearing messages whose time came with zeros of the same
/// length (so that what each queue holds is still counted right); a device that fetches one
/// later gets the zeros and skips it.
fn forget_disappeared(tx: &Transaction<'_>, now: Millis) -> StoreResult<()> {
    exec(
        tx,
        "UPDATE payloads SET data = zeroblob(length(data)), franking_tag = NULL, expires_at = NULL
         WHERE expires_at <= ?1",
        params![now],
    )?;
    Ok(())
}

/// Deletes the payloads of `groups` that no run needs any more: those below the first payload
/// of every run of their group (all of them when the group has no run left).
fn collect_garbage(tx: &Transaction<'_>, groups: &[Vec<u8>]) -> StoreResult<()> {
    let unique: std::collections::BTreeSet<&Vec<u8>> = groups.iter().collect();
    let mut delete = tx.prepare_cached(
        "DELETE FROM payloads WHERE group_id = ?1
           AND id < COALESCE((SELECT MIN(first_payload) FROM queue_runs WHERE group_id = ?1), ?2)",
    )?;
    for group in unique {
        delete.execute(params![group, i64::MAX])?;
    }
    Ok(())
}

/// The id of the payload `offset` items after the start of a group run of `device`.
fn run_item(
    tx: &Transaction<'_>,
    device: &[u8],
    group: &[u8],
    first_payload: i64,
    last_payload: i64,
    offset: i64,
) -> StoreResult<Option<i64>> {
    Ok(query_one(
        tx,
        "SELECT id FROM payloads
         WHERE group_id = ?1 AND id BETWEEN ?2 AND ?3 AND kind = 1 AND sender_device != ?4
         ORDER BY id LIMIT 1 OFFSET ?5",
        params![group, first_payload, last_payload, device, offset],
        |row| row.get(0),
    )
    .optional()?)
}

/// Drops the first `count` items of the device's run that starts at `first_seq` (all of them:
/// the run goes). Raises the device's head floor past dropped runs.
fn drop_run_items(tx: &Transaction<'_>, device: &[u8], run: &Run, count: i64) -> StoreResult<()> {
    release(tx, device, run, count)?;
    // Items are left only in a group run that loses fewer than all of them.
    let remaining = if !run.single && count <= run.last_seq - run.first_seq {
        run_item(
            tx,
            device,
            &run.group,
            run.first_payload,
            run.last_payload,
            count,
        )?
    } else {
        None
    };
    match remaining {
        Some(next_payload) => {
            exec(
                tx,
                "UPDATE queue_runs SET first_seq = ?3, first_payload = ?4
                 WHERE device_id = ?1 AND first_seq = ?2",
                params![device, run.first_seq, run.first_seq + count, next_payload],
            )?;
        }
        None => {
            exec(
                tx,
                "DELETE FROM queue_runs WHERE device_id = ?1 AND first_seq = ?2",
                params![device, run.first_seq],
            )?;
            exec(
                tx,
                "UPDATE devices SET queue_head = MAX(queue_head, ?2) WHERE id = ?1",
                params![device, run.last_seq],
            )?;
        }
    }
    Ok(())
}

/// One row of `queue_runs`.
struct Run {
    first_seq: i64,
    last_seq: i64,
    group: Vec<u8>,
    first_payload: i64,
    last_payload: i64,
    single: bool,
}

/// A queued payload; `FROM` included, `WHERE` to follow. The sender's name is looked up once per
/// page and sender ([`SenderNames`]), not joined into every row.
const ITEM_COLUMNS: &str = "p.kind, p.group_id, p.group_seq, p.sender_device, p.message_id,
        p.accepted_at, p.data, p.franking_tag
     FROM payloads p";

/// Usernames of the senders met while reading one page of a queue.
#[derive(Default)]
struct SenderNames(std::collections::HashMap<Vec<u8>, Username>);

impl SenderNames {
    fn of(&mut self, conn: &Connection, device: Vec<u8>) -> rusqlite::Result<Username> {
        if let Some(name) = self.0.get(&device) {
            return Ok(name.clone());
        }
        let name = accounts::username_of(conn, &device)?;
        self.0.insert(device, name.clone());
        Ok(name)
    }
}

fn item_from_row(
    conn: &Connection,
    names: &mut SenderNames,
    row: &rusqlite::Row<'_>,
    seq: i64,
) -> rusqlite::Result<QueueEntry> {
    let group: Vec<u8> = row.get(1)?;
    let sender: Vec<u8> = row.get(3)?;
    let message: Vec<u8> = row.get(4)?;
    Ok(QueueEntry {
        seq: seq as u64,
        kind: ItemKind::from_i64(row.get(0)?),
        group_id: GroupId::from_slice(&group).map_err(|e| conversion_error(e.to_string()))?,
        group_seq: row.get::<_, i64>(2)? as u64,
        sender_device: device_id(sender.clone())?,
        sender_username: names.of(conn, sender)?,
        message_id: MessageId::from_slice(&message).map_err(|e| conversion_error(e.to_string()))?,
        accepted_at: row.get(5)?,
        payload: row.get(6)?,
        franking_tag: row.get(7)?,
    })
}

/// The columns [`run_from_row`] reads, of `queue_runs r`.
const RUN_COLUMNS: &str =
    "r.first_seq, r.last_seq, r.group_id, r.first_payload, r.last_payload, r.single";

fn run_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Run> {
    Ok(Run {
        first_seq: row.get(0)?,
        last_seq: row.get(1)?,
        group: row.get(2)?,
        first_payload: row.get(3)?,
        last_payload: row.get(4)?,
        single: row.get(5)?,
    })
}

pub(super) fn accept(tx: &Transaction<'_>, submission: Submission) -> StoreResult<Accepted> {
    if let Some(previous) = find_submission(tx, &submission.sender, &submission.message_id)? {
        if previous.fingerprint != submission.fingerprint {
            return Err(StoreError::IdempotencyConflict);
        }
        return Ok(previous.accepted);
    }
    let group = blob(submission.group_id.as_bytes());
    let (epoch, next_seq, state_version) = groups::sequencing(tx, group)?;
    if epoch as u64 != submission.epoch {
        return Err(StoreError::WrongEpoch {
            current: epoch as u64,
        });
    }
    if let Some(transition) = &submission.transition {
        if transition.expected_state_version != state_version as u64 {
            return Err(StoreError::StateChanged);
        }
    }
    let recipients: Vec<DeviceId> = {
        let all = groups::member_devices(tx, group)?;
        // The server itself (moderation proposals) sends into groups it is no member of.
        let joining = submission.transition.as_ref().is_some_and(|t| t.joining);
        if !all.contains(&submission.sender) && submission.sender != SYSTEM_DEVICE && !joining {
            return Err(StoreError::NotMember);
        }
        // Removed members receive the commit that removes them; new members get the Welcome.
        all.into_iter()
            .filter(|d| *d != submission.sender)
            .collect()
    };
    let replay: bool = query_one(
        tx,
        "SELECT EXISTS(SELECT 1 FROM submissions WHERE group_id = ?1 AND fingerprint = ?2)",
        params![group, submission.fingerprint],
        |row| row.get(0),
    )?;
    if replay {
        return Err(StoreError::Replay);
    }
    let group_seq = next_seq as u64;
    let mut deliveries = Vec::with_capacity(recipients.len());
    // Nobody to deliver to (a group of one): nothing to store but the order and the record.
    if !recipients.is_empty() {
        charge_members(
            tx,
            group,
            &submission.sender,
            submission.payload.len(),
            submission.queue_limit,
        )?;
        let payload_id = insert_payload(
            tx,
            ItemKind::GroupMessage,
            &submission,
            group_seq,
            &submission.payload,
        )?;
        enqueue_members(
            tx,
            group,
            &submission.sender,
            &recipients,
            payload_id,
            &mut deliveries,
        )?;
        debug_assert_eq!(deliveries.len(), recipients.len());
    }

    let mut new_epoch = epoch as u64;
    if let Some(transition) = &submission.transition {
        new_epoch = transition.new_epoch;
        groups::apply_transition(tx, group, transition)?;
        // A device that left stops growing its run: should it come back, what it missed while
        // away must not count as part of that run.
        exec(
            tx,
            "UPDATE queue_runs SET open = 0
             WHERE open = 1 AND group_id = ?1
               AND device_id NOT IN (SELECT device_id FROM group_members WHERE group_id = ?1)",
            params![group],
        )?;
        if let Some(welcome) = &transition.welcome {
            charge_devices(
                tx,
                &welcome.recipients,
                welcome.payload.len(),
                submission.queue_limit,
            )?;
            let welcome_id = insert_payload(
                tx,
                ItemKind::Welcome,
                &submission,
                group_seq,
                &welcome.payload,
            )?;
            for recipient in &welcome.recipients {
                let seq = start_run(tx, recipient, group, welcome_id, true)?;
                deliveries.push((*recipient, seq));
            }
        }
    }
    groups::set_next_seq(tx, group, next_seq + 1)?;
    exec(tx,
        "INSERT INTO submissions (device_id, message_id, fingerprint, group_id, group_seq, epoch, accepted_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            blob(submission.sender.as_bytes()),
            blob(submission.message_id.as_bytes()),
            submission.fingerprint,
            group,
            group_seq as i64,
            new_epoch as i64,
            submission.accepted_at
        ],
    )?;
    Ok(Accepted {
        group_id: submission.group_id,
        group_seq,
        epoch: new_epoch,
        accepted_at: submission.accepted_at,
        duplicate: false,
        deliveries,
    })
}

pub(super) fn fetch_queue(
    conn: &Connection,
    device: DeviceId,
    after: u64,
    limit: u32,
    max_bytes: usize,
) -> StoreResult<QueuePage> {
    let device_bytes = blob(device.as_bytes());
    let (head, expired_up_to) = queue_position(conn, device_bytes)?;
    let runs = conn
        .prepare_cached(&format!(
            "SELECT {RUN_COLUMNS} FROM queue_runs r
             WHERE r.device_id = ?1 AND r.last_seq > ?2 ORDER BY r.first_seq"
        ))?
        .query_map(params![device_bytes, after as i64], run_from_row)?
        .collect::<rusqlite::Result<Vec<Run>>>()?;
    let mut single = conn.prepare_cached(&format!("SELECT {ITEM_COLUMNS} WHERE p.id = ?1"))?;
    let mut range = conn.prepare_cached(&format!(
        "SELECT {ITEM_COLUMNS}
         WHERE p.group_id = ?1 AND p.id BETWEEN ?2 AND ?3 AND p.kind = 1
           AND p.sender_device != ?4
         ORDER BY p.id LIMIT ?5 OFFSET ?6"
    ))?;
    // A page stops once it holds `max_bytes` of payload (always at least one item); rows are
    // read one at a time, so no more than one item beyond it is ever in memory.
    let mut entries: Vec<QueueEntry> = Vec::new();
    let mut bytes = 0;
    let mut names = SenderNames::default();
    'runs: for run in runs {
        let skip = (after as i64 + 1 - run.first_seq).max(0);
        let wanted = limit as i64 - entries.len() as i64;
        if wanted <= 0 {
            break;
        }
        let mut rows = if run.single {
            single.query(params![run.first_payload])?
        } else {
            range.query(params![
                run.group,
                run.first_payload,
                run.last_payload,
                device_bytes,
                wanted,
                skip
            ])?
        };
        let mut seq = run.first_seq + skip;
        while let Some(row) = rows.next()? {
            let entry = item_from_row(conn, &mut names, row, seq)?;
            seq += 1;
            if !entries.is_empty() && bytes + entry.payload.len() > max_bytes {
                break 'runs;
            }
            bytes += entry.payload.len();
            entries.push(entry);
        }
    }
    Ok(QueuePage {
        entries,
        head: head as u64,
        expired_up_to: expired_up_to as u64,
    })
}

pub(super) fn ack(tx: &Transaction<'_>, device: DeviceId, up_to: u64) -> StoreResult<()> {
    let device = blob(device.as_bytes());
    let runs = tx
        .prepare_cached(&format!(
            "SELECT {RUN_COLUMNS} FROM queue_runs r
             WHERE r.device_id = ?1 AND r.first_seq <= ?2 ORDER BY r.first_seq"
        ))?
        .query_map(params![device, up_to as i64], run_from_row)?
        .collect::<rusqlite::Result<Vec<Run>>>()?;
    let mut groups = Vec::with_capacity(runs.len());
    for run in runs {
        let count = (up_to as i64).min(run.last_seq) - run.first_seq + 1;
        drop_run_items(tx, device, &run, count)?;
        groups.push(run.group);
    }
    collect_garbage(tx, &groups)
}

pub(super) fn queue_head(conn: &Connection, device: DeviceId) -> StoreResult<u64> {
    Ok(queue_position(conn, blob(device.as_bytes()))?.0 as u64)
}

pub(super) fn queue_depth(conn: &Connection) -> StoreResult<u64> {
    Ok(conn.query_row(
        "SELECT COALESCE(SUM(last_seq - first_seq + 1), 0) FROM queue_runs",
        [],
        |row| row.get::<_, i64>(0),
    )? as u64)
}

pub(super) fn expire(tx: &Transaction<'_>, before: Millis, now: Millis) -> StoreResult<u64> {
    forget_disappeared(tx, now)?;
    // Runs whose first item is older than `before` lose their items up to the first one that is
    // not (the order of a device's queue is kept: no item is dropped while an older one stays).
    let stale = tx
        .prepare_cached(&format!(
            "SELECT {RUN_COLUMNS}, r.device_id
             FROM queue_runs r JOIN payloads p ON p.id = r.first_payload
             WHERE p.accepted_at < ?1"
        ))?
        .query_map(params![before], |row| {
            Ok((row.get::<_, Vec<u8>>(6)?, run_from_row(row)?))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut expired = 0u64;
    let mut groups = Vec::with_capacity(stale.len());
    for (device, run) in stale {
        let count: i64 = if run.single {
            1
        } else {
            let times = tx
                .prepare_cached(
                    "SELECT accepted_at FROM payloads
                     WHERE group_id = ?1 AND id BETWEEN ?2 AND ?3 AND kind = 1
                       AND sender_device != ?4
                     ORDER BY id",
                )?
                .query_map(
                    params![run.group, run.first_payload, run.last_payload, device],
                    |row| row.get::<_, i64>(0),
                )?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            times.iter().take_while(|at| **at < before).count() as i64
        };
        drop_run_items(tx, &device, &run, count)?;
        exec(
            tx,
            "UPDATE devices SET expired_up_to = MAX(expired_up_to, ?2) WHERE id = ?1",
            params![device, run.first_seq + count - 1],
        )?;
        expired += count as u64;
        groups.push(run.group);
    }
    collect_garbage(tx, &groups)?;
    tx.execute(
        "DELETE FROM submissions WHERE accepted_at < ?1",
        params![before],
    )?;
    accounts::expire_logins(tx, now)?;
    Ok(expired)
}

#[cfg(test)]
pub(super) mod tests {
    use super::super::{SqliteOptions, SqliteStore};
    use super::*;
    use crate::Store;
    use parley_protocol::UserId;

    pub(in crate::sqlite) fn payload_count(store: &SqliteStore) -> i64 {
        let conn = Connection::open(store.database_path()).unwrap();
        conn.query_row("SELECT COUNT(*) FROM payloads", [], |row| row.get(0))
            .unwrap()
    }

    /// A group message's payload stays until the last of its recipients has acknowledged it,
    /// then goes; so do messages nobody else needs that sit below it in the group's log.
    #[tokio::test]
    async fn a_payload_goes_with_its_last_recipient() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path(), SqliteOptions::default()).unwrap();
        let devices: Vec<DeviceId> = (1..=3u8).map(|n| DeviceId::from_bytes([n; 16])).collect();
        for (n, device) in devices.iter().enumerate() {
            store
                .create_account(NewAccount {
                    user_id: UserId::from_bytes([n as u8 + 1; 16]),
                    username: Username::parse(&format!("user{n}")).unwrap(),
                    device_id: *device,
                    signature_key: vec![n as u8 + 1; 32],
                    account_key: vec![n as u8 + 1; 32],
                    now: 1,
                })
                .await
                .unwrap();
        }
        let group = GroupId::from_bytes([9; 16]);
        store
            .create_group(NewGroup {
                group_id: group,
                epoch: 1,
                public_state: vec![0],
                members: devices
                    .iter()
                    .enumerate()
                    .map(|(i, d)| GroupMember {
                        device_id: *d,
                        leaf_index: i as u32,
                    })
                    .collect(),
                now: 1,
                max_groups: u64::MAX,
            })
            .await
            .unwrap();
        for (index, sender) in [0usize, 1, 0].into_iter().enumerate() {
            store
                .accept(Submission {
                    sender: devices[sender],
                    message_id: MessageId::from_bytes([index as u8; 16]),
                    fingerprint: vec![index as u8],
                    group_id: group,
                    epoch: 1,
                    payload: vec![index as u8],
                    accepted_at: 5,
                    transition: None,
                    franking_tag: None,
                    queue_limit: u64::MAX,
                    expires_at: None,
                })
                .await
                .unwrap();
        }
        assert_eq!(payload_count(&store), 3);
        // Device 2 has all three; device 1 has the first and the third; device 0 the second.
        store.ack(devices[2], 3).await.unwrap();
        store.ack(devices[0], 1).await.unwrap();
        assert_eq!(payload_count(&store), 3, "device 1 still needs the first");
        store.ack(devices[1], 1).await.unwrap();
        assert_eq!(payload_count(&store), 1, "only the third is still needed");
        store.ack(devices[1], 2).await.unwrap();
        assert_eq!(payload_count(&store), 0);
        assert_eq!(store.queue_depth().await.unwrap(), 0);
    }
}
