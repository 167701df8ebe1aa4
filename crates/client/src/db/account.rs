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
