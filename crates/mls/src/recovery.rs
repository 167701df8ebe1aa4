//! What lets a restore register a device: a secret derived from the recovery key that no device
//! stores, checked by the server against a verifier (its hash) that devices hand it with each
//! backup. A stolen device knows the verifier and the account key, but not the secret, so once
//! revoked it cannot restore itself back.

use sha2::{Digest, Sha256};

/// Bytes of a restore secret and of its verifier.
pub const RESTORE_SECRET_LEN: usize = 32;

/// The verifier the server keeps for a restore secret.
pub fn restore_verifier(secret: &[u8]) -> [u8; 32] {
    Sha256::digest([b"parley/v1/restore-verifier\0".as_slice(), secret].concat()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_verifier_depends_on_the_whole_secret() {
        let secret = [7u8; RESTORE_SECRET_LEN];
        let mut other = secret;
        other[31] ^= 1;
        assert_ne!(restore_verifier(&secret), restore_verifier(&other));
        assert_ne!(restore_verifier(&secret).as_slice(), secret.as_slice());
        assert_eq!(restore_verifier(&secret), restore_verifier(&secret));
    }
}
