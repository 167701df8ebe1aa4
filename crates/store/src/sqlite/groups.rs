//! Groups on SQLite: the `groups` (epoch, sequence numbers), `group_members` and `group_states`
//! (public state) tables, and the changes a commit makes to them.

use parley_protocol::{DeviceId, GroupId, Username};
use rusqlite::{params, Connection, OptionalExtension, Transaction};

use super::sql::{blob, device_id, exec};
use crate::model::*;
use crate::{StoreError, StoreResult};

pub(super) const MIGRATION_1: &str = r#"
CREATE TABLE groups (
    id            BLOB PRIMARY KEY,
    epoch         INTEGER NOT NULL,
    next_seq      INTEGER NOT NULL,
    -- Bumped by every handshake message: a compare-and-set guard for the public state.
    state_version INTEGER NOT NULL DEFAULT 0,
    public_state  BLOB NOT NULL,
    created_at    INTEGER NOT NULL
);
CREATE TABLE group_members (
    group_id    BLOB NOT NULL REFERENCES groups(id),
    device_id   BLOB NOT NULL REFERENCES devices(id),
    leaf_index  INTEGER NOT NULL,
    PRIMARY KEY (group_id, device_id)
) WITHOUT ROWID;
CREATE INDEX group_members_device ON group_members(device_id);
"#;

pub(super) const MIGRATION_4: &str = r#"
-- A group's public state (its ratchet tree: hundreds of kilobytes in a large group) lives apart
-- from the row that every message updates: rewriting that row read and compared the whole state
-- each time.
CREATE TABLE group_states (
    group_id      BLOB PRIMARY KEY,
    public_state  BLOB NOT NULL
);
INSERT INTO group_states (group_id, public_state) SELECT id, public_state FROM groups;
ALTER TABLE groups DROP COLUMN public_state;
"#;

pub(super) fn create_group(tx: &Transaction<'_>, group: NewGroup) -> StoreResult<()> {
    let id = blob(group.group_id.as_bytes());
    let exists: bool = tx.query_row(
        "SELECT EXISTS(SELECT 1 FROM groups WHERE id = ?1)",
        params![id],
        |row| row.get(0),
    )?;
    if exists {
        return Err(StoreError::GroupExists);
    }
    tx.execute(
        "INSERT INTO groups (id, epoch, next_seq, created_at) VALUES (?1, ?2, 1, ?3)",
        params![id, group.epoch as i64, group.now],
    )?;
    tx.execute(
        "INSERT INTO group_states (group_id, public_state) VALUES (?1, ?2)",
        params![id, group.public_state],
    )?;
    insert_members(tx, id, &group.members)?;
    let mut groups_of = tx.prepare_cached(
        "SELECT COUNT(DISTINCT group_id) FROM group_members WHERE device_id IN
             (SELECT id FROM devices WHERE user_id = (SELECT user_id FROM devices WHERE id = ?1))",
    )?;
    for member in &group.members {
        let groups: i64 =
            groups_of.query_row(params![blob(member.device_id.as_bytes())], |row| row.get(0))?;
        if groups as u64 > group.max_groups {
            return Err(StoreError::TooManyGroups);
        }
    }
    Ok(())
}

fn insert_members(tx: &Transaction<'_>, group: &[u8], members: &[GroupMember]) -> StoreResult<()> {
    let mut insert = tx.prepare_cached(
        "INSERT INTO group_members (group_id, device_id, leaf_index) VALUES (?1, ?2, ?3)",
    )?;
    for member in members {
        insert.execute(params![
            group,
            blob(member.device_id.as_bytes()),
            member.leaf_index
        ])?;
    }
    Ok(())
}

pub(super) fn group(conn: &Connection, group: GroupId) -> StoreResult<Option<GroupRecord>> {
    Ok(conn
        .query_row(
            "SELECT g.epoch, s.public_state,
                (SELECT COUNT(*) FROM group_members WHERE group_id = g.id),
                g.state_version
             FROM groups g JOIN group_states s ON s.group_id = g.id
             WHERE g.id = ?1",
            params![blob(group.as_bytes())],
            |row| {
                Ok(GroupRecord {
                    group_id: group,
                    epoch: row.get::<_, i64>(0)? as u64,
                    public_state: row.get(1)?,
                    member_count: row.get::<_, i64>(2)? as u64,
                    state_version: row.get::<_, i64>(3)? as u64,
                })
            },
        )
        .optional()?)
}

pub(super) fn is_member(conn: &Connection, group: GroupId, device: DeviceId) -> StoreResult<bool> {
    Ok(conn.query_row(
        "SELECT EXISTS(SELECT 1 FROM group_members WHERE group_id = ?1 AND device_id = ?2)",
        params![blob(group.as_bytes()), blob(device.as_bytes())],
        |row| row.get(0),
    )?)
}

pub(super) fn group_devices(conn: &Connection, group: GroupId) -> StoreResult<Vec<DeviceId>> {
    let mut members =
        conn.prepare_cached("SELECT device_id FROM group_members WHERE group_id = ?1")?;
    let all = members
        .query_map(params![blob(group.as_bytes())], |row| {
            device_id(row.get(0)?)
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(all)
}

pub(super) fn memberships(conn: &Connection, username: &Username) -> StoreResult<Vec<Membership>> {
    let mut statement = conn.prepare(
        "SELECT m.group_id, m.leaf_index FROM group_members m
         JOIN devices d ON d.id = m.device_id JOIN users u ON u.id = d.user_id
         WHERE u.username = ?1 ORDER BY m.group_id, m.leaf_index",
    )?;
    let rows = statement
        .query_map(params![username.as_str()], |row| {
            Ok((row.get::<_, Vec<u8>>(0)?, row.get::<_, i64>(1)? as u32))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut memberships: Vec<Membership> = Vec::new();
    for (group, leaf) in rows {
        let group_id =
            GroupId::from_slice(&group).map_err(|e| StoreError::Backend(e.to_string()))?;
        match memberships.last_mut() {
            Some(last) if last.group_id == group_id => last.leaves.push(leaf),
            _ => memberships.push(Membership {
                group_id,
                leaves: vec![leaf],
            }),
        }
    }
    Ok(memberships)
}

/// What accepting a message into `group` checks and advances: its epoch, next sequence number
/// and state version.
pub(super) fn sequencing(tx: &Transaction<'_>, group: &[u8]) -> StoreResult<(i64, i64, i64)> {
    tx.query_row(
        "SELECT epoch, next_seq, state_version FROM groups WHERE id = ?1",
        params![group],
        |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
    )
    .optional()?
    .ok_or(StoreError::UnknownGroup)
}

pub(super) fn member_devices(tx: &Transaction<'_>, group: &[u8]) -> StoreResult<Vec<DeviceId>> {
    let mut members =
        tx.prepare_cached("SELECT device_id FROM group_members WHERE group_id = ?1")?;
    let all = members
        .query_map(params![group], |row| device_id(row.get(0)?))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(all)
}

/// A commit's change of the group: its new epoch, public state and members.
pub(super) fn apply_transition(
    tx: &Transaction<'_>,
    group: &[u8],
    transition: &GroupTransition,
) -> StoreResult<()> {
    exec(
        tx,
        "UPDATE groups SET epoch = ?2, state_version = state_version + 1 WHERE id = ?1",
        params![group, transition.new_epoch as i64],
    )?;
    exec(
        tx,
        "UPDATE group_states SET public_state = ?2 WHERE group_id = ?1",
        params![group, transition.new_public_state],
    )?;
    exec(
        tx,
        "DELETE FROM group_members WHERE group_id = ?1",
        params![group],
    )?;
    insert_members(tx, group, &transition.members)
}

pub(super) fn set_next_seq(tx: &Transaction<'_>, group: &[u8], next_seq: i64) -> StoreResult<()> {
    exec(
        tx,
        "UPDATE groups SET next_seq = ?2 WHERE id = ?1",
        params![group, next_seq],
    )?;
    Ok(())
}
