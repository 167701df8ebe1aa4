//! Whom this device trusts: every leaf it accepts must be certified by its account's key
//! (`parley_mls::CertifiedDevice`), and that key must be the one pinned for the account on first
//! sight. A KeyPackage under another key is refused (we would be adding a device the account
//! never certified); a group member under another key is shown as an identity change.

use openmls::prelude::{KeyPackage, Member};
use parley_mls::certificate::AccountPublicKey;
use parley_mls::rotation::{self, AccountRotation};
use parley_mls::CertifiedDevice;
use parley_protocol::{v1, Username};

use crate::client::Client;
use crate::db::{self, now_ms, Notice, Pin};
use crate::error::ClientError;

/// Verifies every member's certificate (a group we join: we trust none of it yet).
pub(crate) fn certify_members(
    members: impl Iterator<Item = Member>,
) -> Result<Vec<CertifiedDevice>, ClientError> {
    members
        .map(|m| {
            CertifiedDevice::verify(&m.credential, &m.signature_key)
                .map_err(|e| ClientError::Protocol(format!("a member is not certified: {e}")))
        })
        .collect()
}

impl Client {
    /// Checks a claimed KeyPackage's certificate and its account key against our pin (pinning
    /// it on first sight).
    pub(crate) fn trust_key_package(
        &self,
        package: &KeyPackage,
    ) -> Result<CertifiedDevice, ClientError> {
        let certified = CertifiedDevice::verify_leaf(package.leaf_node())
            .map_err(|e| ClientError::Protocol(format!("claimed key package: {e}")))?;
        let username = &certified.identity.username;
        if db::is_revoked(
            &self.db(),
            username.as_str(),
            certified.identity.device_id.as_bytes(),
        )? {
            return Err(ClientError::Protocol(format!(
                "the server offered a device {username} revoked; it was left out"
            )));
        }
        match db::pin(
            &self.db(),
            username.as_str(),
            &certified.account_key.to_bytes(),
            now_ms(),
        )? {
            Pin::New | Pin::Same => Ok(certified),
            Pin::Changed => Err(ClientError::IdentityChanged(username.to_string())),
        }
    }

    /// Pins the account keys of devices we now share a group with; returns the accounts whose
    /// key differs from the pinned one, each with its notice: a key that `rotations` lead to
    /// from the pin is pinned in its place (`KeyRotated`); any other stays a warning
    /// (`IdentityChanged`), the pin unchanged.
    pub(crate) fn pin_accounts(
        &self,
        tx: &rusqlite::Connection,
        devices: &[CertifiedDevice],
        rotations: &[AccountRotation],
    ) -> Result<Vec<(Username, Notice)>, ClientError> {
        let mut changed: Vec<(Username, Notice)> = Vec::new();
        // Every device is held to the pin as it stands after any move along the chain: a
        // leaf under the old key beside a rotated one still counts as a change.
        for device in devices {
            let username = &device.identity.username;
            let key = device.account_key.to_bytes();
            if db::pin(tx, username.as_str(), &key, now_ms())? != Pin::Changed {
                continue;
            }
            let notice = if follows_pin(tx, username, rotations, &device.account_key)? {
                db::repin(tx, username.as_str(), &key, now_ms())?;
                let followed: Vec<Vec<u8>> =
                    rotations.iter().map(AccountRotation::encode).collect();
                db::add_followed(tx, username.as_str(), &followed)?;
                Notice::KeyRotated
            } else if is_earlier_key(tx, username, rotations, &device.account_key)? {
                // A leaf under a key the pin has already moved on from, along the chain.
                continue;
            } else {
                Notice::IdentityChanged
            };
            if !changed.contains(&(username.clone(), notice)) {
                changed.push((username.clone(), notice));
            }
        }
        Ok(changed)
    }

    /// After a claim under another key than the pinned one: fetches the account's rotations
    /// from the server and pins `presented` if they lead to it from the pin. The server cannot
    /// forge a rotation away from a key only the account holds.
    pub(crate) async fn follow_rotations(
        &self,
        username: &Username,
        presented: &AccountPublicKey,
    ) -> Result<bool, ClientError> {
        let path = format!("/v1/accounts/{username}/rotations");
        let chain: v1::AccountRotations = self.authed(|| self.api.get(&path)).await?;
        let Ok(rotations) = rotation::decode_chain(&chain.rotations) else {
            return Ok(false);
        };
        let conn = self.db();
        if !follows_pin(&conn, username, &rotations, presented)? {
            return Ok(false);
        }
        db::repin(&conn, username.as_str(), &presented.to_bytes(), now_ms())?;
        db::add_followed(&conn, username.as_str(), &chain.rotations)?;
        tracing::info!("a contact's account key rotated; its new key is pinned");
        Ok(true)
    }
}

fn follows_pin(
    conn: &rusqlite::Connection,
    username: &Username,
    rotations: &[AccountRotation],
    presented: &AccountPublicKey,
) -> Result<bool, ClientError> {
    let Some(pinned) = db::pinned_account_key(conn, username.as_str())? else {
        return Ok(false);
    };
    Ok(rotation::follow(username, &pinned, rotations, presented).is_ok())
}

/// Whether `presented` is a key the account held before the pinned one: the rotations we
/// followed for it (and, for our own account, our own) lead from `presented` to the pin.
pub(crate) fn is_earlier_key(
    conn: &rusqlite::Connection,
    username: &Username,
    rotations: &[AccountRotation],
    presented: &AccountPublicKey,
) -> Result<bool, ClientError> {
    let Some(pinned) = db::pinned_account_key(conn, username.as_str())? else {
        return Ok(false);
    };
    let mut known: Vec<AccountRotation> = Vec::new();
    let own = db::account(conn)?.is_some_and(|a| a.username == username.as_str());
    let mut stored = db::followed(conn, username.as_str())?;
    if own {
        stored.extend(db::own_rotations(conn)?);
    }
    for rotation in stored
        .iter()
        .filter_map(|bytes| AccountRotation::decode(bytes).ok())
        .chain(rotations.iter().cloned())
    {
        if rotation.verify().is_ok() && !known.contains(&rotation) {
            known.push(rotation);
        }
    }
    // Oldest first, so that the chain is walked in order.
    known.sort_by_key(|r| r.rotated_at_ms);
    Ok(rotation::follow(username, presented, &known, &pinned).is_ok())
}
