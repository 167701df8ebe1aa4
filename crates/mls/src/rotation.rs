//! An account key's rotation: the statement, signed by the old key and by the new one, that the
//! account's identity moved from one to the other. A device that revokes another rotates the
//! account key at the same time, since the revoked device knew the old key: with it, and a
//! server that helps, it could otherwise still certify new devices in the account's name.
//!
//! Both signatures are needed: the old key's says the account chose the move, the new key's
//! that whoever moved holds the new key. Contacts follow a chain of rotations from the key they
//! pinned ([`follow`]); the chain cannot lead away from a key nobody but the account holds.
//! The move still changes the account's safety number, and clients say so.

use ed25519_dalek::{Signature, VerifyingKey};
use parley_protocol::Username;

use crate::certificate::{AccountKey, AccountPublicKey, CertificateError};

const SIGNED_CONTEXT: &[u8] = b"parley/v1/account-key-rotation\0";
/// Rotations a chain may hold: one per revocation; a longer one is refused, not walked.
pub const MAX_CHAIN: usize = 64;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountRotation {
    pub username: Username,
    pub old_key: AccountPublicKey,
    pub new_key: AccountPublicKey,
    pub rotated_at_ms: u64,
    old_signature: [u8; 64],
    new_signature: [u8; 64],
}

fn fields(
    username: &Username,
    old_key: &AccountPublicKey,
    new_key: &AccountPublicKey,
    at: u64,
) -> Vec<u8> {
    let name = username.as_str().as_bytes();
    let mut out = Vec::with_capacity(1 + name.len() + 64 + 8);
    out.push(name.len() as u8);
    out.extend_from_slice(name);
    out.extend_from_slice(&old_key.to_bytes());
    out.extend_from_slice(&new_key.to_bytes());
    out.extend_from_slice(&at.to_be_bytes());
    out
}

impl AccountKey {
    /// Moves `username`'s identity from this key to `new`.
    pub fn rotate_to(
        &self,
        new: &AccountKey,
        username: &Username,
        rotated_at_ms: u64,
    ) -> AccountRotation {
        let signed = [
            SIGNED_CONTEXT,
            &fields(username, &self.public(), &new.public(), rotated_at_ms),
        ]
        .concat();
        AccountRotation {
            username: username.clone(),
            old_key: self.public(),
            new_key: new.public(),
            rotated_at_ms,
            old_signature: self.sign_raw(&signed),
            new_signature: new.sign_raw(&signed),
        }
    }
}

fn verify_one(key: &AccountPublicKey, signed: &[u8], signature: &[u8; 64]) -> bool {
    VerifyingKey::from_bytes(&key.to_bytes()).is_ok_and(|k| {
        k.verify_strict(signed, &Signature::from_bytes(signature))
            .is_ok()
    })
}

impl AccountRotation {
    /// Both keys signed it.
    pub fn verify(&self) -> Result<(), CertificateError> {
        let signed = [
            SIGNED_CONTEXT,
            &fields(
                &self.username,
                &self.old_key,
                &self.new_key,
                self.rotated_at_ms,
            ),
        ]
        .concat();
        if self.old_key == self.new_key
            || !verify_one(&self.old_key, &signed, &self.old_signature)
            || !verify_one(&self.new_key, &signed, &self.new_signature)
        {
            return Err(CertificateError::BadSignature);
        }
        Ok(())
    }

    pub fn encode(&self) -> Vec<u8> {
        [
            fields(
                &self.username,
                &self.old_key,
                &self.new_key,
                self.rotated_at_ms,
            ),
            self.old_signature.to_vec(),
            self.new_signature.to_vec(),
        ]
        .concat()
    }

    pub fn decode(bytes: &[u8]) -> Result<AccountRotation, CertificateError> {
        let malformed = || CertificateError::Malformed;
        let (&name_len, rest) = bytes.split_first().ok_or_else(malformed)?;
        let name_len = name_len as usize;
        if rest.len() != name_len + 32 + 32 + 8 + 64 + 64 {
            return Err(malformed());
        }
        let (name, rest) = rest.split_at(name_len);
        let username = std::str::from_utf8(name)
            .ok()
            .and_then(|n| Username::parse(n).ok())
            .ok_or_else(malformed)?;
        let (old_key, rest) = rest.split_first_chunk::<32>().ok_or_else(malformed)?;
        let (new_key, rest) = rest.split_first_chunk::<32>().ok_or_else(malformed)?;
        let (at, rest) = rest.split_first_chunk::<8>().ok_or_else(malformed)?;
        let (old_signature, new_signature) =
            rest.split_first_chunk::<64>().ok_or_else(malformed)?;
        Ok(AccountRotation {
            username,
            old_key: AccountPublicKey::from_bytes(*old_key),
            new_key: AccountPublicKey::from_bytes(*new_key),
            rotated_at_ms: u64::from_be_bytes(*at),
            old_signature: *old_signature,
            new_signature: new_signature.try_into().map_err(|_| malformed())?,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    #[error("a rotation does not parse or verify")]
    Invalid,
    #[error("the rotations are for another account")]
    OtherAccount,
    #[error("the rotations do not lead from the known key to the presented one")]
    Broken,
    #[error("more than {MAX_CHAIN} rotations")]
    TooLong,
}

/// Decodes a chain of encoded rotations (oldest first), each verified.
pub fn decode_chain(encoded: &[Vec<u8>]) -> Result<Vec<AccountRotation>, ChainError> {
    if encoded.len() > MAX_CHAIN {
        return Err(ChainError::TooLong);
    }
    encoded
        .iter()
        .map(|bytes| {
            let rotation = AccountRotation::decode(bytes).map_err(|_| ChainError::Invalid)?;
            rotation.verify().map_err(|_| ChainError::Invalid)?;
            Ok(rotation)
        })
        .collect()
}

/// Walks `chain` from `known` (a key pinned or held) and says whether it reaches `presented`:
/// every step must start at the key the previous one ended at. Rotations before `known` in the
/// chain are skipped, so one chain serves every holder of an older key.
pub fn follow(
    username: &Username,
    known: &AccountPublicKey,
    chain: &[AccountRotation],
    presented: &AccountPublicKey,
) -> Result<(), ChainError> {
    if chain.len() > MAX_CHAIN {
        return Err(ChainError::TooLong);
    }
    if chain.iter().any(|r| r.username != *username) {
        return Err(ChainError::OtherAccount);
    }
    let start = chain
        .iter()
        .position(|r| r.old_key == *known)
        .ok_or(ChainError::Broken)?;
    let mut key = *known;
    for rotation in &chain[start..] {
        if rotation.old_key != key {
            return Err(ChainError::Broken);
        }
        key = rotation.new_key;
        if key == *presented {
            return Ok(());
        }
    }
    Err(ChainError::Broken)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice() -> Username {
        Username::parse("alice").unwrap()
    }

    #[test]
    fn a_rotation_needs_both_signatures_and_covers_every_field() {
        let (old, new) = (AccountKey::generate(), AccountKey::generate());
        let rotation = old.rotate_to(&new, &alice(), 9);
        let decoded = AccountRotation::decode(&rotation.encode()).unwrap();
        assert_eq!(decoded, rotation);
        assert_eq!(decoded.verify(), Ok(()));
        let mut forged = rotation.clone();
        forged.new_key = AccountKey::generate().public();
        assert!(forged.verify().is_err(), "a new key that did not sign");
        let mut renamed = rotation.clone();
        renamed.username = Username::parse("bob").unwrap();
        assert!(renamed.verify().is_err());
        let bytes = rotation.encode();
        for end in 0..bytes.len() {
            assert!(AccountRotation::decode(&bytes[..end]).is_err());
        }
    }

    #[test]
    fn a_chain_is_followed_from_any_key_on_it_and_only_forward() {
        let keys: Vec<AccountKey> = (0..3).map(|_| AccountKey::generate()).collect();
        let chain = vec![
            keys[0].rotate_to(&keys[1], &alice(), 1),
            keys[1].rotate_to(&keys[2], &alice(), 2),
        ];
        let [k0, k1, k2] = [0, 1, 2].map(|i| keys[i].public());
        assert_eq!(follow(&alice(), &k0, &chain, &k2), Ok(()));
        assert_eq!(follow(&alice(), &k1, &chain, &k2), Ok(()));
        assert_eq!(follow(&alice(), &k0, &chain, &k1), Ok(()));
        assert_eq!(follow(&alice(), &k2, &chain, &k0), Err(ChainError::Broken));
        assert_eq!(follow(&alice(), &k1, &chain, &k0), Err(ChainError::Broken));
        let stranger = AccountKey::generate().public();
        assert_eq!(
            follow(&alice(), &stranger, &chain, &k2),
            Err(ChainError::Broken)
        );
        let bob = Username::parse("bob").unwrap();
        assert_eq!(
            follow(&bob, &k0, &chain, &k2),
            Err(ChainError::OtherAccount)
        );
    }

    #[test]
    fn a_chain_with_a_gap_is_broken() {
        let keys: Vec<AccountKey> = (0..4).map(|_| AccountKey::generate()).collect();
        let chain = vec![
            keys[0].rotate_to(&keys[1], &alice(), 1),
            keys[2].rotate_to(&keys[3], &alice(), 2),
        ];
        assert_eq!(
            follow(&alice(), &keys[0].public(), &chain, &keys[3].public()),
            Err(ChainError::Broken)
        );
        let encoded: Vec<Vec<u8>> = chain.iter().map(AccountRotation::encode).collect();
        assert_eq!(decode_chain(&encoded).unwrap(), chain);
        let mut tampered = encoded.clone();
        tampered[1][10] ^= 1;
        assert_eq!(decode_chain(&tampered), Err(ChainError::Invalid));
    }
}
