//! The account row: who this device is, its server and session token, and the sync cursor
//! (the last queue position processed, advanced in the same transaction as the item).

use rusqlite::{params, Connection, OptionalExtension};

use crate::error::ClientError;

#[derive(Debug, Clone)]
pub struct AccountRow {
    pub server: String,
    pub username: String,
    pub user_id: Vec<u8>,
    pub device_id: Vec<u8>,
    pub signature_key: Vec<u8>,
    pub token: Option<String>,
    /// The account key's secret; `None` for a device whose signature key is its account key.
    pub account_secret: Option<Vec<u8>>,
    /// This device's certificate under the account key; `None`: a plain credential.
    pub certificate: Option<Vec<u8>>,
}

pub fn account(conn: &Connection) -> Result<Option<AccountRow>, ClientError> {
    Ok(conn
        .query_row(
            "SELECT server, username, user_id, device_id, signature_key, token, account_secret,
                    certificate
             FROM account WHERE id = 1",
            [],
            |row| {
                Ok(AccountRow {
                    server: row.get(0)?,
                    username: row.get(1)?,
                    user_id: row.get(2)?,
                    device_id: row.get(3)?,
                    signature_key: row.get(4)?,
                    token: row.get(5)?,
                    account_secret: row.get(6)?,
                    certificate: row.get(7)?,
                })
            },
        )
        .optional()?)
}

pub fn insert_account(conn: &Connection, account: &AccountRow) -> Result<(), ClientError> {
    conn.execute(
        "INSERT INTO account (id, server, username, user_id, device_id, signature_key, token,
                              account_secret, certificate)
         VALUES (1, ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            account.server,
            account.username,
            account.user_id,
            account.device_id,
            account.signature_key,
            account.token,
            account.account_secret,
            account.certificate
        ],
    )?;
    Ok(())
}

pub fn set_token(conn: &Connection, token: &str) -> Result<(), ClientError> {
    conn.execute("UPDATE account SET token = ?1 WHERE id = 1", params![token])?;
    Ok(())
}

pub fn set_server(conn: &Connection, server: &str) -> Result<(), ClientError> {
    conn.execute(
        "UPDATE account SET server = ?1 WHERE id = 1",
        params![server],
    )?;
    Ok(())
}

pub fn cursor(conn: &Connection) -> Result<u64, ClientError> {
    Ok(
        conn.query_row("SELECT cursor FROM account WHERE id = 1", [], |row| {
            row.get::<_, i64>(0)
        })? as u64,
    )
}

pub fn set_cursor(conn: &Connection, cursor: u64) -> Result<(), ClientError> {
    conn.execute(
        "UPDATE account SET cursor = MAX(cursor, ?1) WHERE id = 1",
        params![cursor as i64],
    )?;
    Ok(())
}

/// The account key and this device's certificate, after the account rotated its key; the
/// rotation is kept for the leaves this device re-certifies.
pub fn set_account_keys(
    conn: &Connection,
    account_secret: &[u8],
    certificate: &[u8],
    rotations: &[Vec<u8>],
) -> Result<(), ClientError> {
    conn.execute(
        "UPDATE account SET account_secret = ?1, certificate = ?2, recertify = 1 WHERE id = 1",
        params![account_secret, certificate],
    )?;
    add_own_rotations(conn, rotations)
}

/// Our account's rotations, oldest first, kept once each.
pub fn add_own_rotations(conn: &Connection, rotations: &[Vec<u8>]) -> Result<(), ClientError> {
    for rotation in rotations {
        conn.execute(
            "INSERT OR IGNORE INTO own_rotations (statement) VALUES (?1)",
            params![rotation],
        )?;
    }
    Ok(())
}

/// Our account's rotations, oldest first (the last `parley_mls::rotation::MAX_CHAIN`).
pub fn own_rotations(conn: &Connection) -> Result<Vec<Vec<u8>>, ClientError> {
    let mut statement = conn.prepare(
        "SELECT statement FROM (SELECT seq, statement FROM own_rotations ORDER BY seq DESC LIMIT ?1)
         ORDER BY seq",
    )?;
    let rows = statement
        .query_map(params![parley_mls::rotation::MAX_CHAIN as i64], |row| {
            row.get(0)
        })?
        .collect::<rusqlite::Result<Vec<Vec<u8>>>>()?;
    Ok(rows)
}

pub fn recertify_pending(conn: &Connection) -> Result<bool, ClientError> {
    Ok(
        conn.query_row("SELECT recertify FROM account WHERE id = 1", [], |row| {
            row.get::<_, i64>(0)
        })? != 0,
    )
}

pub fn set_recertify_pending(conn: &Connection, pending: bool) -> Result<(), ClientError> {
    conn.execute(
        "UPDATE account SET recertify = ?1 WHERE id = 1",
        params![pending as i64],
    )?;
    Ok(())
}

/// A rotation made for a revocation and not yet known to be taken by the server.
#[derive(Debug, Clone)]
pub struct PendingRotation {
    pub secret: Vec<u8>,
    pub certificate: Vec<u8>,
    pub statement: Vec<u8>,
    /// The device being revoked.
    pub revoked: Vec<u8>,
}

pub fn set_pending_rotation(
    conn: &Connection,
    pending: Option<&PendingRotation>,
) -> Result<(), ClientError> {
    conn.execute("DELETE FROM pending_rotation", [])?;
    if let Some(p) = pending {
        conn.execute(
            "INSERT INTO pending_rotation (id, secret, certificate, statement, revoked)
             VALUES (1, ?1, ?2, ?3, ?4)",
            params![p.secret, p.certificate, p.statement, p.revoked],
        )?;
    }
    Ok(())
}

pub fn pending_rotation(conn: &Connection) -> Result<Option<PendingRotation>, ClientError> {
    Ok(conn
        .query_row(
            "SELECT secret, certificate, statement, revoked FROM pending_rotation WHERE id = 1",
            [],
            |row| {
                Ok(PendingRotation {
                    secret: row.get(0)?,
                    certificate: row.get(1)?,
                    statement: row.get(2)?,
                    revoked: row.get(3)?,
                })
            },
        )
        .optional()?)
}

/// While a restore is under way: the time of the backup it restores from.
pub fn restoring(conn: &Connection) -> Result<Option<i64>, ClientError> {
    Ok(
        conn.query_row("SELECT restoring FROM account WHERE id = 1", [], |row| {
            row.get::<_, Option<i64>>(0)
        })?,
    )
}

pub fn set_restoring(conn: &Connection, backup_at: Option<i64>) -> Result<(), ClientError> {
    conn.execute(
        "UPDATE account SET restoring = ?1 WHERE id = 1",
        params![backup_at],
    )?;
    Ok(())
}
