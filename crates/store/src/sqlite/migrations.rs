//! The order of SQLite's schema migrations. Each concern module owns the SQL for its tables;
//! this list only says which parts make up each numbered migration.

use rusqlite::{Connection, Transaction};

use super::{
    accounts, attachments, groups, keypackages, links, moderation, queue, recovery, rotation,
};
use crate::StoreResult;

/// Schema migrations, applied in order; `PRAGMA user_version` records how many have run. The
/// parts of one migration run in this order in the same transaction, under the one number: an
/// existing database's numbering never changes, so append new migrations, never renumber.
pub(super) const MIGRATIONS: &[&[&str]] = &[
    &[
        accounts::MIGRATION_1,
        keypackages::MIGRATION_1,
        groups::MIGRATION_1,
        queue::MIGRATION_1,
    ],
    // Message franking and moderation.
    &[
        queue::MIGRATION_2,
        accounts::MIGRATION_2,
        moderation::MIGRATION_2,
    ],
    &[queue::MIGRATION_3],
    &[queue::MIGRATION_4, groups::MIGRATION_4],
    &[moderation::MIGRATION_5],
    &[queue::MIGRATION_6],
    &[accounts::MIGRATION_7],
    // Multi-device: linking, blobs, device names.
    &[accounts::MIGRATION_8, links::MIGRATION_8],
    &[accounts::MIGRATION_9],
    &[recovery::MIGRATION_10],
    // Account-key rotation at revocation.
    &[rotation::MIGRATION_11],
    // Attachments (their ciphertext is in the object store).
    &[attachments::MIGRATION_12],
    &[queue::MIGRATION_13],
];

/// Applies the migrations that have not run yet, in one transaction.
pub(super) fn migrate(conn: &mut Connection) -> StoreResult<()> {
    let applied: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
    let tx = conn.transaction()?;
    apply(&tx, applied.max(0) as usize, MIGRATIONS.len())?;
    tx.commit()?;
    Ok(())
}

/// Runs migrations `from + 1 ..= to`, recording each in `user_version`.
fn apply(tx: &Transaction<'_>, from: usize, to: usize) -> StoreResult<()> {
    for (index, parts) in MIGRATIONS.iter().enumerate().take(to).skip(from) {
        for part in *parts {
            tx.execute_batch(part)?;
        }
        tx.pragma_update(None, "user_version", (index + 1) as i64)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::queue::tests::payload_count;
    use super::super::{SqliteOptions, SqliteStore, DATABASE_FILE};
    use super::*;
    use crate::model::*;
    use crate::Store;
    use parley_protocol::{DeviceId, GroupId, MessageId};

    /// A database written by the per-item queue layout (migration 3) keeps its undelivered
    /// items, their numbers and its heads when it moves to runs.
    #[tokio::test]
    async fn queued_items_survive_the_move_to_runs() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut conn = Connection::open(dir.path().join(DATABASE_FILE)).unwrap();
            let tx = conn.transaction().unwrap();
            apply(&tx, 0, 3).unwrap();
            tx.execute_batch(
                "INSERT INTO users (id, username, created_at) VALUES
                    (X'01010101010101010101010101010101', 'alice', 1),
                    (X'02020202020202020202020202020202', 'bob', 1);
                 INSERT INTO devices (id, user_id, signature_key, queue_head, created_at) VALUES
                    (X'01010101010101010101010101010101', X'01010101010101010101010101010101', X'01', 0, 1),
                    (X'02020202020202020202020202020202', X'02020202020202020202020202020202', X'02', 7, 1);
                 INSERT INTO groups (id, epoch, next_seq, public_state, created_at) VALUES
                    (X'07070707070707070707070707070707', 1, 3, X'00', 1);
                 INSERT INTO group_members (group_id, device_id, leaf_index) VALUES
                    (X'07070707070707070707070707070707', X'01010101010101010101010101010101', 0),
                    (X'07070707070707070707070707070707', X'02020202020202020202020202020202', 1);
                 INSERT INTO payloads (id, kind, group_id, group_seq, sender_device, message_id, accepted_at, data) VALUES
                    (1, 2, X'07070707070707070707070707070707', 0, X'01010101010101010101010101010101', X'11111111111111111111111111111111', 5, X'77656c636f6d65'),
                    (2, 1, X'07070707070707070707070707070707', 2, X'01010101010101010101010101010101', X'22222222222222222222222222222222', 6, X'6869');
                 INSERT INTO queue (device_id, seq, payload_id, enqueued_at) VALUES
                    (X'02020202020202020202020202020202', 6, 1, 5),
                    (X'02020202020202020202020202020202', 7, 2, 6);",
            )
            .unwrap();
            tx.commit().unwrap();
        }
        let store = SqliteStore::open(dir.path(), SqliteOptions::default()).unwrap();
        let alice = DeviceId::from_bytes([1; 16]);
        let bob = DeviceId::from_bytes([2; 16]);
        let page = store.fetch_queue(bob, 0, 10).await.unwrap();
        let items: Vec<(u64, ItemKind, &[u8])> = page
            .entries
            .iter()
            .map(|e| (e.seq, e.kind, e.payload.as_slice()))
            .collect();
        assert_eq!(
            items,
            [
                (6, ItemKind::Welcome, b"welcome".as_slice()),
                (7, ItemKind::GroupMessage, b"hi".as_slice())
            ]
        );
        assert_eq!(page.head, 7);
        let group = store
            .group(GroupId::from_bytes([7; 16]))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (group.public_state, group.member_count),
            (vec![0], 2),
            "the public state moved to its own table"
        );
        let queued_bytes = || -> i64 {
            Connection::open(store.database_path())
                .unwrap()
                .query_row(
                    "SELECT queued_bytes FROM devices WHERE id = ?1",
                    [bob.as_bytes().to_vec()],
                    |row| row.get(0),
                )
                .unwrap()
        };
        assert_eq!(queued_bytes(), 9, "the Welcome and the message count");
        // The numbering goes on from the old head.
        let next = store
            .accept(Submission {
                sender: alice,
                message_id: MessageId::from_bytes([3; 16]),
                fingerprint: b"again".to_vec(),
                group_id: GroupId::from_bytes([7; 16]),
                epoch: 1,
                payload: b"again".to_vec(),
                accepted_at: 7,
                transition: None,
                franking_tag: None,
                queue_limit: u64::MAX,
                expires_at: None,
            })
            .await
            .unwrap();
        assert_eq!(next.deliveries, vec![(bob, 8)]);
        assert_eq!(queued_bytes(), 14);
        store.ack(bob, 8).await.unwrap();
        assert_eq!(queued_bytes(), 0, "acknowledged bytes are released");
        assert_eq!(
            payload_count(&store),
            0,
            "acknowledged payloads are deleted"
        );
    }

    /// An account from before multi-device keeps working: its device's signature key becomes
    /// its account key, so its plain credential still counts as certified.
    #[tokio::test]
    async fn an_account_from_before_multi_device_gets_its_device_key_as_account_key() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut conn = Connection::open(dir.path().join(DATABASE_FILE)).unwrap();
            let tx = conn.transaction().unwrap();
            apply(&tx, 0, 6).unwrap();
            tx.execute_batch(
                "INSERT INTO users (id, username, created_at) VALUES
                    (X'01010101010101010101010101010101', 'alice', 1);
                 INSERT INTO devices (id, user_id, signature_key, created_at) VALUES
                    (X'01010101010101010101010101010101', X'01010101010101010101010101010101', X'0505', 1);",
            )
            .unwrap();
            tx.commit().unwrap();
        }
        let store = SqliteStore::open(dir.path(), SqliteOptions::default()).unwrap();
        let device = store
            .device(DeviceId::from_bytes([1; 16]))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(device.account_key, vec![5, 5]);
    }
}
