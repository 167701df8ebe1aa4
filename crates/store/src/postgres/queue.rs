//! The Delivery Service's queues on PostgreSQL: `payloads` (each message stored once, keyed by its
//! group), the per-device `queue` of pointers at them, and `submissions` (idempotency records);
//! accepting, fetching, acknowledging and expiring.

use parley_protocol::{DeviceId, GroupId, MessageId};
use sqlx::{PgPool, Row};

use super::sql::{device_id, group_id, id, sql_error, transaction, username, Tx};
use super::{accounts, groups};
use crate::model::*;
use crate::{StoreError, StoreResult};

pub(super) const MIGRATION_1: &str = r#"
-- A message is stored once, keyed by its group; queue rows point at it.
CREATE TABLE payloads (
    group_id       BYTEA NOT NULL,
    group_seq      BIGINT NOT NULL,
    kind           SMALLINT NOT NULL,
    sender_device  BYTEA NOT NULL,
    message_id     BYTEA NOT NULL,
    accepted_at    BIGINT NOT NULL,
    refs           BIGINT NOT NULL,
    data           BYTEA NOT NULL,
    franking_tag   BYTEA,
    PRIMARY KEY (group_id, group_seq, kind)
);
CREATE TABLE queue (
    device_id    BYTEA NOT NULL,
    seq          BIGINT NOT NULL,
    group_id     BYTEA NOT NULL,
    group_seq    BIGINT NOT NULL,
    kind         SMALLINT NOT NULL,
    enqueued_at  BIGINT NOT NULL,
    PRIMARY KEY (device_id, seq)
);
CREATE INDEX queue_enqueued ON queue (enqueued_at);
CREATE TABLE submissions (
    device_id    BYTEA NOT NULL,
    message_id   BYTEA NOT NULL,
    fingerprint  BYTEA NOT NULL,
    group_id     BYTEA NOT NULL,
    group_seq    BIGINT NOT NULL,
    epoch        BIGINT NOT NULL,
    accepted_at  BIGINT NOT NULL,
    PRIMARY KEY (device_id, message_id)
);
CREATE UNIQUE INDEX submissions_replay ON submissions (group_id, fingerprint);
CREATE INDEX submissions_accepted ON submissions (accepted_at);
"#;

pub(super) const MIGRATION_2: &str = r#"
-- A payload is freed once no queue row points at it, found through this index, instead of by a
-- reference count: every recipient's acknowledgement decremented the count on the same row, so
-- the acknowledgements of a large group waited for each other's commits one at a time.
-- The count stays, unused and nullable, only so that nodes of the previous version keep working
-- beside upgraded ones during a rolling upgrade (they still write it; counting down to zero
-- there means every pointer is gone anyway).
CREATE INDEX queue_payload ON queue (group_id, group_seq, kind);
ALTER TABLE payloads ALTER COLUMN refs DROP NOT NULL;
-- For the sweep of payloads left behind by a node that stopped between the two steps.
CREATE INDEX payloads_accepted ON payloads (accepted_at);
"#;

pub(super) const MIGRATION_4: &str = r#"
-- Bytes of undelivered payloads in each device's queue (a recipient's queue has a byte
-- budget): each pointer records its payload's size, charged to the device when the pointer is
-- written and released, by a trigger, whenever it is deleted, by whatever statement: nodes of
-- the previous version, during a rolling upgrade, delete pointers too. The pointers they write
-- record 0 and are not charged either.
ALTER TABLE queue ADD COLUMN size BIGINT NOT NULL DEFAULT 0;
UPDATE queue q SET size = octet_length(p.data) FROM payloads p
    WHERE p.group_id = q.group_id AND p.group_seq = q.group_seq AND p.kind = q.kind;
ALTER TABLE devices ADD COLUMN queued_bytes BIGINT NOT NULL DEFAULT 0;
UPDATE devices d SET queued_bytes = COALESCE((SELECT SUM(size) FROM queue WHERE device_id = d.id), 0);
CREATE OR REPLACE FUNCTION queue_release_bytes() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE devices d SET queued_bytes = GREATEST(0, d.queued_bytes - g.bytes)
    FROM (SELECT device_id, SUM(size) AS bytes FROM gone GROUP BY device_id) g
    WHERE d.id = g.device_id AND g.bytes > 0;
    RETURN NULL;
END $$;
CREATE TRIGGER queue_release_bytes AFTER DELETE ON queue REFERENCING OLD TABLE AS gone
    FOR EACH STATEMENT EXECUTE FUNCTION queue_release_bytes();
"#;

pub(super) const MIGRATION_11: &str = r#"
-- Disappearing messages: when the ciphertext is overwritten, delivered or not.
ALTER TABLE payloads ADD COLUMN expires_at BIGINT;
CREATE INDEX payloads_expiry ON payloads (expires_at) WHERE expires_at IS NOT NULL;
"#;

pub(super) async fn find_submission(
    executor: impl sqlx::PgExecutor<'_>,
    device: &DeviceId,
    message: &MessageId,
) -> StoreResult<Option<StoredSubmission>> {
    let row = sqlx::query(
        "SELECT fingerprint, group_id, group_seq, epoch, accepted_at FROM submissions
         WHERE device_id = $1 AND message_id = $2",
    )
    .bind(id(device.as_bytes()))
    .bind(id(message.as_bytes()))
    .fetch_optional(executor)
    .await
    .map_err(sql_error)?;
    row.map(|row| stored_submission(&row)).transpose()
}

/// An idempotency record read as columns 0 to 4: fingerprint, group, group sequence, epoch,
/// acceptance time.
fn stored_submission(row: &sqlx::postgres::PgRow) -> StoreResult<StoredSubmission> {
    Ok(StoredSubmission {
        fingerprint: row.try_get(0).map_err(sql_error)?,
        accepted: Accepted {
            group_id: group_id(row.try_get(1).map_err(sql_error)?)?,
            group_seq: row.try_get::<i64, _>(2).map_err(sql_error)? as u64,
            epoch: row.try_get::<i64, _>(3).map_err(sql_error)? as u64,
            accepted_at: row.try_get(4).map_err(sql_error)?,
            duplicate: true,
            deliveries: Vec::new(),
        },
    })
}

/// Appends a pointer to each device's queue, with one statement for the sequence numbers and
/// one for the rows, whatever the number of recipients.
#[allow(clippy::too_many_arguments)]
async fn enqueue(
    tx: &mut Tx<'_>,
    devices: &[DeviceId],
    group: &GroupId,
    group_seq: u64,
    kind: ItemKind,
    (size, limit): (usize, u64),
    now: Millis,
    deliveries: &mut Vec<(DeviceId, u64)>,
) -> StoreResult<()> {
    if devices.is_empty() {
        return Ok(());
    }
    let ids: Vec<Vec<u8>> = devices.iter().map(|d| id(d.as_bytes())).collect();
    let rows = sqlx::query(
        "UPDATE devices SET queue_head = queue_head + 1, queued_bytes = queued_bytes + $2
         WHERE id = ANY($1) RETURNING id, queue_head, queued_bytes",
    )
    .bind(&ids)
    .bind(size as i64)
    .fetch_all(&mut **tx)
    .await
    .map_err(sql_error)?;
    refuse_full_queue(tx, &rows, limit).await?;
    let mut devices_out = Vec::with_capacity(rows.len());
    let mut seqs = Vec::with_capacity(rows.len());
    for row in rows {
        let device: Vec<u8> = row.try_get(0).map_err(sql_error)?;
        let seq: i64 = row.try_get(1).map_err(sql_error)?;
        deliveries.push((device_id(device.clone())?, seq as u64));
        devices_out.push(device);
        seqs.push(seq);
    }
    sqlx::query(
        "INSERT INTO queue (device_id, seq, group_id, group_seq, kind, enqueued_at, size)
         SELECT d, s, $3, $4, $5, $6, $7 FROM UNNEST($1::bytea[], $2::bigint[]) AS t(d, s)",
    )
    .bind(&devices_out)
    .bind(&seqs)
    .bind(id(group.as_bytes()))
    .bind(group_seq as i64)
    .bind(kind as i16)
    .bind(now)
    .bind(size as i64)
    .execute(&mut **tx)
    .await
    .map_err(sql_error)?;
    Ok(())
}

async fn insert_payload(
    tx: &mut Tx<'_>,
    kind: ItemKind,
    submission: &Submission,
    group_seq: u64,
    data: &[u8],
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO payloads (group_id, group_seq, kind, sender_device, message_id, accepted_at, data, franking_tag, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(id(submission.group_id.as_bytes()))
    .bind(group_seq as i64)
    .bind(kind as i16)
    .bind(id(submission.sender.as_bytes()))
    .bind(id(submission.message_id.as_bytes()))
    .bind(submission.accepted_at)
    .bind(data)
    .bind(if kind == ItemKind::GroupMessage { submission.franking_tag.clone() } else { None })
    .bind(if kind == ItemKind::GroupMessage { submission.expires_at } else { None })
    .execute(&mut **tx)
    .await
    .map_err(sql_error)?;
    Ok(())
}

/// Fails with [`StoreError::QueueFull`] when one of `rows` (device id, _, queued bytes after
/// the charge) is beyond `limit`; the caller's transaction then rolls the charge back.
async fn refuse_full_queue(
    tx: &mut Tx<'_>,
    rows: &[sqlx::postgres::PgRow],
    limit: u64,
) -> StoreResult<()> {
    for row in rows {
        let queued: i64 = row.try_get(2).map_err(sql_error)?;
        if queued as u64 > limit {
            let device: Vec<u8> = row.try_get(0).map_err(sql_error)?;
            return Err(StoreError::QueueFull(
                accounts::username_of(tx, &device).await?,
            ));
        }
    }
    Ok(())
}

/// The payload key a queue row points at.
type PayloadKey = (Vec<u8>, i64, i16);

/// Deletes those of `released` that no queue row points at any more. Runs after the transaction
/// that deleted the queue rows has committed, on its own: two recipients acknowledging the last
/// two pointers at once each still see the other's pointer inside their own transactions, but
/// whichever of these statements runs last sees neither. (A node that stops in between leaves
/// the payload to `expire`'s sweep.)
async fn release_payloads(pool: &PgPool, released: &[PayloadKey]) -> StoreResult<()> {
    let unique: std::collections::BTreeSet<&PayloadKey> = released.iter().collect();
    if unique.is_empty() {
        return Ok(());
    }
    let groups: Vec<&[u8]> = unique.iter().map(|k| k.0.as_slice()).collect();
    let seqs: Vec<i64> = unique.iter().map(|k| k.1).collect();
    let kinds: Vec<i16> = unique.iter().map(|k| k.2).collect();
    sqlx::query(
        "DELETE FROM payloads p
         USING UNNEST($1::bytea[], $2::bigint[], $3::smallint[]) AS r(group_id, group_seq, kind)
         WHERE p.group_id = r.group_id AND p.group_seq = r.group_seq AND p.kind = r.kind
           AND NOT EXISTS (SELECT 1 FROM queue q
                           WHERE q.group_id = p.group_id AND q.group_seq = p.group_seq
                             AND q.kind = p.kind)",
    )
    .bind(groups)
    .bind(seqs)
    .bind(kinds)
    .execute(pool)
    .await
    .map_err(sql_error)?;
    Ok(())
}

fn payload_key(row: &sqlx::postgres::PgRow, first: usize) -> StoreResult<PayloadKey> {
    Ok((
        row.try_get(first).map_err(sql_error)?,
        row.try_get(first + 1).map_err(sql_error)?,
        row.try_get(first + 2).map_err(sql_error)?,
    ))
}

/// Stores an accepted message in one round trip: its payload, a pointer and a sequence number for
/// every recipient, the group's next sequence number and the idempotency record (with `epoch`,
/// the group's epoch once the message is applied).
async fn store_message(
    tx: &mut Tx<'_>,
    submission: &Submission,
    recipients: &[DeviceId],
    group_seq: u64,
    epoch: u64,
) -> StoreResult<Accepted> {
    let recipients: Vec<Vec<u8>> = recipients.iter().map(|d| id(d.as_bytes())).collect();
    let rows = sqlx::query(
        "WITH payload AS (
             INSERT INTO payloads (group_id, group_seq, kind, sender_device, message_id,
                                   accepted_at, data, franking_tag, expires_at)
             SELECT $1, $2, $3, $4, $5, $6, $7, $8, $13 WHERE cardinality($9::bytea[]) > 0
         ), heads AS (
             UPDATE devices SET queue_head = queue_head + 1, queued_bytes = queued_bytes + $12
             WHERE id = ANY($9)
             RETURNING id, queue_head, queued_bytes
         ), pointers AS (
             INSERT INTO queue (device_id, seq, group_id, group_seq, kind, enqueued_at, size)
             SELECT id, queue_head, $1, $2, $3, $6, $12 FROM heads
         ), sequence AS (
             UPDATE groups SET next_seq = $2 + 1 WHERE id = $1
         ), record AS (
             INSERT INTO submissions (device_id, message_id, fingerprint, group_id, group_seq,
                                      epoch, accepted_at)
             VALUES ($4, $5, $10, $1, $2, $11, $6)
         )
         SELECT id, queue_head, queued_bytes FROM heads",
    )
    .bind(id(submission.group_id.as_bytes()))
    .bind(group_seq as i64)
    .bind(ItemKind::GroupMessage as i16)
    .bind(id(submission.sender.as_bytes()))
    .bind(id(submission.message_id.as_bytes()))
    .bind(submission.accepted_at)
    .bind(&submission.payload)
    .bind(submission.franking_tag.clone())
    .bind(&recipients)
    .bind(&submission.fingerprint)
    .bind(epoch as i64)
    .bind(submission.payload.len() as i64)
    .bind(submission.expires_at)
    .fetch_all(&mut **tx)
    .await
    .map_err(sql_error)?;
    refuse_full_queue(tx, &rows, submission.queue_limit).await?;
    let deliveries = rows
        .into_iter()
        .map(|row| {
            let device: Vec<u8> = row.try_get(0).map_err(sql_error)?;
            let seq: i64 = row.try_get(1).map_err(sql_error)?;
            Ok((device_id(device)?, seq as u64))
        })
        .collect::<StoreResult<Vec<_>>>()?;
    Ok(Accepted {
        group_id: submission.group_id,
        group_seq,
        epoch,
        accepted_at: submission.accepted_at,
        duplicate: false,
        deliveries,
    })
}

pub(super) async fn accept(pool: &PgPool, submission: Submission) -> StoreResult<Accepted> {
    transaction!(pool, |tx| accept_in(&mut tx, &submission).await)
}

async fn accept_in(tx: &mut Tx<'_>, submission: &Submission) -> StoreResult<Accepted> {
    let group = id(submission.group_id.as_bytes());
    let (epoch, next_seq, state_version) = groups::lock(tx, &group).await?;
    // Under the group's lock (so that a concurrent copy of this submission is seen as one), in
    // one round trip: an earlier result for this message id, the members, and whether this
    // ciphertext was accepted before.
    let checks = sqlx::query(
        "SELECT s.fingerprint, s.group_id, s.group_seq, s.epoch, s.accepted_at,
                ARRAY(SELECT device_id FROM group_members WHERE group_id = $3),
                EXISTS(SELECT 1 FROM submissions WHERE group_id = $3 AND fingerprint = $4)
         FROM (SELECT 1) AS one
         LEFT JOIN submissions s ON s.device_id = $1 AND s.message_id = $2",
    )
    .bind(id(submission.sender.as_bytes()))
    .bind(id(submission.message_id.as_bytes()))
    .bind(&group)
    .bind(&submission.fingerprint)
    .fetch_one(&mut **tx)
    .await
    .map_err(sql_error)?;
    if checks
        .try_get::<Option<Vec<u8>>, _>(0)
        .map_err(sql_error)?
        .is_some()
    {
        let previous = stored_submission(&checks)?;
        if previous.fingerprint != submission.fingerprint {
            return Err(StoreError::IdempotencyConflict);
        }
        return Ok(previous.accepted);
    }
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
    let members: Vec<Vec<u8>> = checks.try_get(5).map_err(sql_error)?;
    let members = members
        .into_iter()
        .map(device_id)
        .collect::<StoreResult<Vec<_>>>()?;
    let joining = submission.transition.as_ref().is_some_and(|t| t.joining);
    if !members.contains(&submission.sender) && submission.sender != SYSTEM_DEVICE && !joining {
        return Err(StoreError::NotMember);
    }
    let recipients: Vec<DeviceId> = members
        .into_iter()
        .filter(|d| *d != submission.sender)
        .collect();
    if checks.try_get::<bool, _>(6).map_err(sql_error)? {
        return Err(StoreError::Replay);
    }
    let group_seq = next_seq as u64;
    // Every message is stored the same way; a commit then changes the group and sends its
    // Welcome in the same transaction.
    let Some(transition) = &submission.transition else {
        return store_message(tx, submission, &recipients, group_seq, epoch as u64).await;
    };
    let mut accepted =
        store_message(tx, submission, &recipients, group_seq, transition.new_epoch).await?;
    groups::apply_transition(tx, &group, transition).await?;
    if let Some(welcome) = &transition.welcome {
        insert_payload(
            tx,
            ItemKind::Welcome,
            submission,
            group_seq,
            &welcome.payload,
        )
        .await?;
        enqueue(
            tx,
            &welcome.recipients,
            &submission.group_id,
            group_seq,
            ItemKind::Welcome,
            (welcome.payload.len(), submission.queue_limit),
            submission.accepted_at,
            &mut accepted.deliveries,
        )
        .await?;
    }
    Ok(accepted)
}

pub(super) async fn fetch_queue(
    pool: &PgPool,
    device: DeviceId,
    after: u64,
    limit: u32,
    max_bytes: usize,
) -> StoreResult<QueuePage> {
    let head = sqlx::query("SELECT queue_head, expired_up_to FROM devices WHERE id = $1")
        .bind(id(device.as_bytes()))
        .fetch_optional(pool)
        .await
        .map_err(sql_error)?;
    let (head, expired_up_to) = match head {
        Some(row) => (
            row.try_get::<i64, _>(0).map_err(sql_error)?,
            row.try_get::<i64, _>(1).map_err(sql_error)?,
        ),
        None => (0, 0),
    };
    let rows = sqlx::query(
        "SELECT q.seq, p.kind, p.group_id, p.group_seq, p.sender_device, u.username, p.message_id,
                p.accepted_at, p.data, p.franking_tag
         FROM (SELECT seq, group_id, group_seq, kind, size,
                      SUM(size) OVER (ORDER BY seq) AS running
               FROM queue WHERE device_id = $1 AND seq > $2 ORDER BY seq LIMIT $3) q
         JOIN payloads p ON p.group_id = q.group_id AND p.group_seq = q.group_seq AND p.kind = q.kind
         JOIN devices d ON d.id = p.sender_device
         JOIN users u ON u.id = d.user_id
         -- Only the payloads that fit the page are read (the first always does).
         WHERE q.running - q.size < $4
         ORDER BY q.seq",
    )
    .bind(id(device.as_bytes()))
    .bind(after as i64)
    .bind(limit as i64)
    .bind(max_bytes as i64)
    .fetch_all(pool)
    .await
    .map_err(sql_error)?;
    let mut entries = Vec::new();
    let mut bytes = 0;
    for row in rows {
        let payload: Vec<u8> = row.try_get(8).map_err(sql_error)?;
        if !entries.is_empty() && bytes + payload.len() > max_bytes {
            break;
        }
        bytes += payload.len();
        let message: Vec<u8> = row.try_get(6).map_err(sql_error)?;
        entries.push(QueueEntry {
            seq: row.try_get::<i64, _>(0).map_err(sql_error)? as u64,
            kind: ItemKind::from_i64(row.try_get::<i16, _>(1).map_err(sql_error)? as i64),
            group_id: group_id(row.try_get(2).map_err(sql_error)?)?,
            group_seq: row.try_get::<i64, _>(3).map_err(sql_error)? as u64,
            sender_device: device_id(row.try_get(4).map_err(sql_error)?)?,
            sender_username: username(row.try_get(5).map_err(sql_error)?)?,
            message_id: MessageId::from_slice(&message)
                .map_err(|e| StoreError::Backend(e.to_string()))?,
            accepted_at: row.try_get(7).map_err(sql_error)?,
            payload,
            franking_tag: row.try_get(9).map_err(sql_error)?,
        });
    }
    Ok(QueuePage {
        entries,
        head: head as u64,
        expired_up_to: expired_up_to as u64,
    })
}

pub(super) async fn ack(pool: &PgPool, device: DeviceId, up_to: u64) -> StoreResult<()> {
    let released: Vec<PayloadKey> = transaction!(pool, |tx| {
        // The pointers' bytes are released by the `queue_release_bytes` trigger.
        let rows = sqlx::query(
            "DELETE FROM queue WHERE device_id = $1 AND seq <= $2 RETURNING group_id, group_seq, kind",
        )
        .bind(id(device.as_bytes()))
        .bind(up_to as i64)
        .fetch_all(&mut *tx)
        .await
        .map_err(sql_error)?;
        rows.iter()
            .map(|row| payload_key(row, 0))
            .collect::<StoreResult<Vec<_>>>()
    })?;
    release_payloads(pool, &released).await
}

pub(super) async fn queue_head(pool: &PgPool, device: DeviceId) -> StoreResult<u64> {
    let head: Option<i64> = sqlx::query_scalar("SELECT queue_head FROM devices WHERE id = $1")
        .bind(id(device.as_bytes()))
        .fetch_optional(pool)
        .await
        .map_err(sql_error)?;
    Ok(head.unwrap_or(0) as u64)
}

pub(super) async fn queue_depth(pool: &PgPool) -> StoreResult<u64> {
    let depth: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM queue")
        .fetch_one(pool)
        .await
        .map_err(sql_error)?;
    Ok(depth as u64)
}

pub(super) async fn expire(pool: &PgPool, before: Millis, now: Millis) -> StoreResult<u64> {
    let (expired, released) = transaction!(pool, |tx| {
        // Disappearing messages whose time came: zeros of the same length (see SQLite's).
        sqlx::query(
            "UPDATE payloads SET data = decode(repeat('00', length(data)), 'hex'),
                 franking_tag = NULL, expires_at = NULL
             WHERE expires_at <= $1",
        )
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(sql_error)?;
        let rows = sqlx::query(
            "DELETE FROM queue WHERE enqueued_at < $1
             RETURNING device_id, seq, group_id, group_seq, kind",
        )
        .bind(before)
        .fetch_all(&mut *tx)
        .await
        .map_err(sql_error)?;
        let mut released = Vec::new();
        for row in &rows {
            let device: Vec<u8> = row.try_get(0).map_err(sql_error)?;
            let seq: i64 = row.try_get(1).map_err(sql_error)?;
            sqlx::query(
                "UPDATE devices SET expired_up_to = GREATEST(expired_up_to, $2) WHERE id = $1",
            )
            .bind(&device)
            .bind(seq)
            .execute(&mut *tx)
            .await
            .map_err(sql_error)?;
            released.push(payload_key(row, 2)?);
        }
        sqlx::query("DELETE FROM submissions WHERE accepted_at < $1")
            .bind(before)
            .execute(&mut *tx)
            .await
            .map_err(sql_error)?;
        accounts::expire_logins(&mut tx, now).await?;
        Ok((rows.len() as u64, released))
    })?;
    release_payloads(pool, &released).await?;
    // Payloads whose last pointers went while their node stopped before freeing them.
    sqlx::query(
        "DELETE FROM payloads p WHERE accepted_at < $1
           AND NOT EXISTS (SELECT 1 FROM queue q
                           WHERE q.group_id = p.group_id AND q.group_seq = p.group_seq
                             AND q.kind = p.kind)",
    )
    .bind(before)
    .execute(pool)
    .await
    .map_err(sql_error)?;
    Ok(expired)
}
