//! The recovery key: 160 random bits a person writes down, shown once as 8 groups of 5
//! Crockford base32 characters (the last 40 bits are a checksum, so that a typo is told apart
//! from a wrong key without asking the server). Everything a backup needs comes from it by
//! HKDF-SHA256: the id the server files backups under (which reveals nothing about the key),
//! the key that encrypts them, and the restore secret that lets a restore register a device.
//! Devices keep the first two and the secret's verifier ([`BackupKeys`]), never the recovery
//! key or the secret: a stolen device cannot restore itself back after it is revoked.

use sha2::{Digest, Sha256};

use crate::devices::code::{base32_groups, parse_base32};
use crate::devices::crypto::derive_key;
use crate::error::ClientError;

const SECRET_BYTES: usize = 20;
const CHECK_BYTES: usize = 5;

#[derive(Clone, PartialEq, Eq)]
pub struct RecoveryKey([u8; SECRET_BYTES]);

impl std::fmt::Debug for RecoveryKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RecoveryKey(..)")
    }
}

fn checksum(secret: &[u8]) -> [u8; CHECK_BYTES] {
    let digest = Sha256::digest([b"parley/v1/recovery-check".as_slice(), secret].concat());
    let mut check = [0u8; CHECK_BYTES];
    check.copy_from_slice(&digest[..CHECK_BYTES]);
    check
}

impl RecoveryKey {
    pub fn generate() -> RecoveryKey {
        RecoveryKey(rand::random())
    }

    fn from_bytes(bytes: &[u8]) -> Result<RecoveryKey, ClientError> {
        bytes
            .try_into()
            .map(RecoveryKey)
            .map_err(|_| ClientError::Invalid("the stored recovery key is damaged".into()))
    }

    /// `XXXXX-XXXXX-...`: 8 groups of 5.
    pub fn encode(&self) -> String {
        base32_groups(&[&self.0[..], &checksum(&self.0)[..]].concat(), 5)
    }

    /// Reads a key however it was typed (any case, with or without dashes or spaces).
    pub fn parse(text: &str) -> Result<RecoveryKey, ClientError> {
        let bytes = parse_base32(text, SECRET_BYTES + CHECK_BYTES).ok_or_else(|| {
            ClientError::Invalid(
                "that is not a recovery key: it has 40 characters in 8 groups of 5".into(),
            )
        })?;
        let (secret, check) = bytes.split_at(SECRET_BYTES);
        if checksum(secret) != check {
            return Err(ClientError::Invalid(
                "that recovery key has a typo: check each group of 5 against what you wrote down"
                    .into(),
            ));
        }
        RecoveryKey::from_bytes(secret)
    }

    /// The id the server stores this account's backups under.
    pub(crate) fn backup_id(&self) -> [u8; 32] {
        derive_key(b"parley/v1/backup", &self.0, b"backup id")
    }

    /// The root key backups are encrypted under (each backup derives its own from it).
    pub(crate) fn encryption_key(&self) -> [u8; 32] {
        derive_key(b"parley/v1/backup", &self.0, b"backup encryption")
    }

    /// What a restore shows the server to register a device.
    pub(crate) fn restore_secret(&self) -> [u8; 32] {
        derive_key(b"parley/v1/backup", &self.0, b"restore secret")
    }

    /// What a device keeps to make backups under this key.
    pub(crate) fn backup_keys(&self) -> BackupKeys {
        BackupKeys {
            backup_id: self.backup_id(),
            encryption_key: self.encryption_key(),
            restore_verifier: parley_mls::recovery::restore_verifier(&self.restore_secret()),
        }
    }
}

/// What a device keeps to back up (from the recovery key, which it does not keep).
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct BackupKeys {
    pub backup_id: [u8; 32],
    pub encryption_key: [u8; 32],
    pub restore_verifier: [u8; 32],
}

impl std::fmt::Debug for BackupKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BackupKeys(..)")
    }
}

impl BackupKeys {
    pub(crate) fn from_parts(
        backup_id: &[u8],
        encryption_key: &[u8],
        restore_verifier: &[u8],
    ) -> Result<BackupKeys, ClientError> {
        let damaged = || ClientError::Invalid("the stored backup keys are damaged".into());
        Ok(BackupKeys {
            backup_id: backup_id.try_into().map_err(|_| damaged())?,
            encryption_key: encryption_key.try_into().map_err(|_| damaged())?,
            restore_verifier: restore_verifier.try_into().map_err(|_| damaged())?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_reads_back_however_it_is_typed_and_a_typo_is_caught() {
        let key = RecoveryKey::generate();
        let text = key.encode();
        assert_eq!(text.len(), 8 * 5 + 7, "{text}");
        assert_eq!(text.split('-').count(), 8);
        assert_eq!(RecoveryKey::parse(&text).unwrap(), key);
        let sloppy = text.to_lowercase().replace('-', " ");
        assert_eq!(RecoveryKey::parse(&sloppy).unwrap(), key);
        // One character changed: a typo, not a wrong key.
        let mut typo: Vec<char> = text.chars().collect();
        typo[3] = if typo[3] == 'A' { 'B' } else { 'A' };
        let typo: String = typo.into_iter().collect();
        let error = RecoveryKey::parse(&typo).unwrap_err().to_string();
        assert!(error.contains("typo"), "{error}");
        assert!(RecoveryKey::parse(&text[..text.len() - 1]).is_err());
        assert!(RecoveryKey::parse("").is_err());
    }

    #[test]
    fn the_backup_id_and_the_keys_differ_and_depend_on_the_key() {
        let (a, b) = (RecoveryKey::generate(), RecoveryKey::generate());
        assert_ne!(a.backup_id(), a.encryption_key());
        assert_ne!(a.restore_secret(), a.encryption_key());
        assert_ne!(a.backup_keys().restore_verifier, a.restore_secret());
        assert_ne!(a.backup_id(), b.backup_id());
        assert_ne!(a.encryption_key(), b.encryption_key());
        assert_eq!(
            a.backup_id(),
            RecoveryKey::parse(&a.encode()).unwrap().backup_id()
        );
    }
}
