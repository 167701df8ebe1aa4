//! A new device's link in progress: what it needs to finish linking after a restart (its
//! ephemeral HPKE secret and the link code's secret), until the history is imported.

use rusqlite::{params, Connection, OptionalExtension};

use crate::error::ClientError;

#[derive(Debug, Clone)]
pub struct PendingLinkRow {
    pub server: String,
    pub username: String,
    pub device_id: Vec<u8>,
    pub signature_key: Vec<u8>,
    pub link_id: Vec<u8>,
    pub secret: Vec<u8>,
    pub hpke_secret: Vec<u8>,
    pub expires_at: i64,
}

pub fn insert_pending_link(conn: &Connection, link: &PendingLinkRow) -> Result<(), ClientError> {
    conn.execute(
        "INSERT OR REPLACE INTO pending_link
            (id, server, username, device_id, signature_key, link_id, secret, hpke_secret,
             expires_at)
         VALUES (1, ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            link.server,
            link.username,
            link.device_id,
            link.signature_key,
            link.link_id,
            link.secret,
            link.hpke_secret,
            link.expires_at
        ],
    )?;
    Ok(())
}

pub fn pending_link(conn: &Connection) -> Result<Option<PendingLinkRow>, ClientError> {
    Ok(conn
        .query_row(
            "SELECT server, username, device_id, signature_key, link_id, secret, hpke_secret,
                    expires_at
             FROM pending_link WHERE id = 1",
            [],
            |row| {
                Ok(PendingLinkRow {
                    server: row.get(0)?,
                    username: row.get(1)?,
                    device_id: row.get(2)?,
                    signature_key: row.get(3)?,
                    link_id: row.get(4)?,
                    secret: row.get(5)?,
                    hpke_secret: row.get(6)?,
                    expires_at: row.get(7)?,
                })
            },
        )
        .optional()?)
}

pub fn delete_pending_link(conn: &Connection) -> Result<(), ClientError> {
    conn.execute("DELETE FROM pending_link", [])?;
    Ok(())
}
