//! The order of PostgreSQL's schema migrations, and the migrator. Each concern module owns the
//! SQL for its tables; this list only says which parts make up each numbered migration.

use std::time::Duration;

use sqlx::PgPool;

use super::sql::sql_error;
use super::{
    accounts, attachments, groups, keypackages, links, moderation, queue, recovery, rotation,
};
use crate::StoreResult;

/// Schema migrations, applied in order; `parley_schema.version` records how many have run. The
/// parts of one migration run in this order in the same transaction, under the one number: an
/// existing database's numbering never changes, so append new migrations, never renumber.
const MIGRATIONS: &[&[&str]] = &[
    &[
        accounts::MIGRATION_1,
        keypackages::MIGRATION_1,
        groups::MIGRATION_1,
        queue::MIGRATION_1,
        moderation::MIGRATION_1,
    ],
    &[queue::MIGRATION_2],
    &[moderation::MIGRATION_3],
    &[queue::MIGRATION_4],
    &[accounts::MIGRATION_5],
    // Multi-device: linking, blobs, device names.
    &[links::MIGRATION_6],
    &[accounts::MIGRATION_7],
    &[recovery::MIGRATION_8],
    &[rotation::MIGRATION_9],
    // Attachments (their ciphertext is in the object store).
    &[attachments::MIGRATION_10],
    // Disappearing messages.
    &[queue::MIGRATION_11],
];

pub(super) async fn migrate(pool: &PgPool) -> StoreResult<()> {
    // Nodes starting together race to create the version table: the loser retries.
    let mut attempt = 0;
    loop {
        attempt += 1;
        match migrate_once(pool).await {
            Err(e) if attempt < 5 => {
                tracing::debug!(error = %e, "schema migration raced another node; retrying");
                tokio::time::sleep(Duration::from_millis(100 * attempt)).await;
            }
            other => return other,
        }
    }
}

async fn migrate_once(pool: &PgPool) -> StoreResult<()> {
    sqlx::raw_sql(
        "CREATE TABLE IF NOT EXISTS parley_schema (id INT PRIMARY KEY, version BIGINT NOT NULL);
         INSERT INTO parley_schema (id, version) VALUES (1, 0) ON CONFLICT (id) DO NOTHING;",
    )
    .execute(pool)
    .await
    .map_err(sql_error)?;
    let mut tx = pool.begin().await.map_err(sql_error)?;
    // One migrator at a time across nodes: a row lock (no LOCK TABLE, no advisory locks).
    let applied: i64 =
        sqlx::query_scalar("SELECT version FROM parley_schema WHERE id = 1 FOR UPDATE")
            .fetch_one(&mut *tx)
            .await
            .map_err(sql_error)?;
    for (index, parts) in MIGRATIONS.iter().enumerate().skip(applied.max(0) as usize) {
        for part in *parts {
            sqlx::raw_sql(part)
                .execute(&mut *tx)
                .await
                .map_err(sql_error)?;
        }
        sqlx::query("UPDATE parley_schema SET version = $1 WHERE id = 1")
            .bind((index + 1) as i64)
            .execute(&mut *tx)
            .await
            .map_err(sql_error)?;
    }
    tx.commit().await.map_err(sql_error)?;
    Ok(())
}
