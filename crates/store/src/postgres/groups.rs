//! Groups on PostgreSQL: the `groups` (epoch, sequence numbers, public state) and
//! `group_members` tables, the row lock that orders a group's messages, and the changes a commit
//! makes.

use parley_protocol::{DeviceId, GroupId, Username};
use sqlx::{PgPool, Row};

use super::sql::{device_id, group_id, id, sql_error, transaction, Tx};
use crate::model::*;
use crate::{StoreError, StoreResult};

pub(super) const MIGRATION_1: &str = r#"
CREATE TABLE groups (
    id             BYTEA PRIMARY KEY,
    epoch          BIGINT NOT NULL,
    next_seq       BIGINT NOT NULL,
    state_version  BIGINT NOT NULL DEFAULT 0,
    public_state   BYTEA NOT NULL,
    created_at     BIGINT NOT NULL
);
CREATE TABLE group_members (
    group_id    BYTEA NOT NULL,
    device_id   BYTEA NOT NULL,
    leaf_index  BIGINT NOT NULL,
    PRIMARY KEY (group_id, device_id)
);
CREATE INDEX group_members_device ON group_members (device_id);
"#;

pub(super) async fn create_group(pool: &PgPool, group: NewGroup) -> StoreResult<()> {
    transaction!(pool, |tx| {
        let inserted = sqlx::query(
            "INSERT INTO groups (id, epoch, next_seq, public_state, created_at) VALUES ($1, $2, 1, $3, $4)
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(id(group.group_id.as_bytes()))
        .bind(group.epoch as i64)
        .bind(&group.public_state)
        .bind(group.now)
        .execute(&mut *tx)
        .await
        .map_err(sql_error)?;
        if inserted.rows_affected() == 0 {
            return Err(StoreError::GroupExists);
        }
        insert_members(&mut tx, group.group_id.as_bytes(), &group.members).await?;
        for member in &group.members {
            let groups: i64 = sqlx::query_scalar(
                "SELECT COUNT(DISTINCT group_id) FROM group_members WHERE device_id IN
                     (SELECT id FROM devices WHERE user_id = (SELECT user_id FROM devices WHERE id = $1))",
            )
            .bind(id(member.device_id.as_bytes()))
            .fetch_one(&mut *tx)
            .await
            .map_err(sql_error)?;
            if groups as u64 > group.max_groups {
                return Err(StoreError::TooManyGroups);
            }
        }
        Ok(())
    })
}

/// Adds `members` to the group, in one statement whatever their number.
async fn insert_members(tx: &mut Tx<'_>, group: &[u8], members: &[GroupMember]) -> StoreResult<()> {
    let devices: Vec<Vec<u8>> = members.iter().map(|m| id(m.device_id.as_bytes())).collect();
    let leaves: Vec<i64> = members.iter().map(|m| m.leaf_index as i64).collect();
    sqlx::query(
        "INSERT INTO group_members (group_id, device_id, leaf_index)
         SELECT $1, d, l FROM UNNEST($2::bytea[], $3::bigint[]) AS t(d, l)",
    )
    .bind(group)
    .bind(&devices)
    .bind(&leaves)
    .execute(&mut **tx)
    .await
    .map_err(sql_error)?;
    Ok(())
}

pub(super) async fn group(pool: &PgPool, group: GroupId) -> StoreResult<Option<GroupRecord>> {
    let row = sqlx::query(
        "SELECT epoch, public_state, (SELECT COUNT(*) FROM group_members WHERE group_id = $1), state_version
         FROM groups WHERE id = $1",
    )
    .bind(id(group.as_bytes()))
    .fetch_optional(pool)
    .await
    .map_err(sql_error)?;
    row.map(|row| {
        Ok(GroupRecord {
            group_id: group,
            epoch: row.try_get::<i64, _>(0).map_err(sql_error)? as u64,
            public_state: row.try_get(1).map_err(sql_error)?,
            member_count: row.try_get::<i64, _>(2).map_err(sql_error)? as u64,
            state_version: row.try_get::<i64, _>(3).map_err(sql_error)? as u64,
        })
    })
    .transpose()
}

pub(super) async fn is_member(
    pool: &PgPool,
    group: GroupId,
    device: DeviceId,
) -> StoreResult<bool> {
    sqlx::query_scalar(
        "SELECT EXISTS(SELECT 1 FROM group_members WHERE group_id = $1 AND device_id = $2)",
    )
    .bind(id(group.as_bytes()))
    .bind(id(device.as_bytes()))
    .fetch_one(pool)
    .await
    .map_err(sql_error)
}

pub(super) async fn group_devices(pool: &PgPool, group: GroupId) -> StoreResult<Vec<DeviceId>> {
    let rows: Vec<Vec<u8>> =
        sqlx::query_scalar("SELECT device_id FROM group_members WHERE group_id = $1")
            .bind(id(group.as_bytes()))
            .fetch_all(pool)
            .await
            .map_err(sql_error)?;
    rows.into_iter().map(device_id).collect()
}

pub(super) async fn memberships(pool: &PgPool, user: &Username) -> StoreResult<Vec<Membership>> {
    let rows = sqlx::query(
        "SELECT m.group_id, m.leaf_index FROM group_members m
         JOIN devices d ON d.id = m.device_id JOIN users u ON u.id = d.user_id
         WHERE u.username = $1 ORDER BY m.group_id, m.leaf_index",
    )
    .bind(user.as_str())
    .fetch_all(pool)
    .await
    .map_err(sql_error)?;
    let mut memberships: Vec<Membership> = Vec::new();
    for row in rows {
        let group = group_id(row.try_get(0).map_err(sql_error)?)?;
        let leaf = row.try_get::<i64, _>(1).map_err(sql_error)? as u32;
        match memberships.last_mut() {
            Some(last) if last.group_id == group => last.leaves.push(leaf),
            _ => memberships.push(Membership {
                group_id: group,
                leaves: vec![leaf],
            }),
        }
    }
    Ok(memberships)
}

/// Locks the group's row for the rest of the transaction and reads its epoch, next sequence
/// number and state version. The row lock orders everything accepted into this group, across
/// all nodes.
pub(super) async fn lock(tx: &mut Tx<'_>, group: &[u8]) -> StoreResult<(i64, i64, i64)> {
    let row =
        sqlx::query("SELECT epoch, next_seq, state_version FROM groups WHERE id = $1 FOR UPDATE")
            .bind(group)
            .fetch_optional(&mut **tx)
            .await
            .map_err(sql_error)?
            .ok_or(StoreError::UnknownGroup)?;
    let epoch: i64 = row.try_get(0).map_err(sql_error)?;
    let next_seq: i64 = row.try_get(1).map_err(sql_error)?;
    let state_version: i64 = row.try_get(2).map_err(sql_error)?;
    Ok((epoch, next_seq, state_version))
}

/// A commit's change of the group: its new epoch, public state and members.
pub(super) async fn apply_transition(
    tx: &mut Tx<'_>,
    group: &[u8],
    transition: &GroupTransition,
) -> StoreResult<()> {
    sqlx::query("UPDATE groups SET epoch = $2, public_state = $3, state_version = state_version + 1 WHERE id = $1")
        .bind(group)
        .bind(transition.new_epoch as i64)
        .bind(&transition.new_public_state)
        .execute(&mut **tx)
        .await
        .map_err(sql_error)?;
    sqlx::query("DELETE FROM group_members WHERE group_id = $1")
        .bind(group)
        .execute(&mut **tx)
        .await
        .map_err(sql_error)?;
    insert_members(tx, group, &transition.members).await
}
