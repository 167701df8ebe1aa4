//! A device's revocation: the account key's signed statement that one of its devices is no
//! longer the account's. The revoking device sends it to the server (which then refuses the
//! device everywhere) and into every chat it removes the device from, so that every member
//! refuses that device from then on, whatever a server later claims.

use ed25519_dalek::{Signature, VerifyingKey};
use parley_protocol::{DeviceId, Username};

use crate::certificate::{AccountKey, AccountPublicKey, CertificateError};

const SIGNED_CONTEXT: &[u8] = b"parley/v1/device-revocation\0";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceRevocation {
    pub username: Username,
    pub device: DeviceId,
    pub revoked_at_ms: u64,
    signature: [u8; 64],
}

fn fields(username: &Username, device: DeviceId, revoked_at_ms: u64) -> Vec<u8> {
    let name = username.as_str().as_bytes();
    let mut out = Vec::with_capacity(1 + name.len() + 16 + 8);
    out.push(name.len() as u8);
    out.extend_from_slice(name);
    out.extend_from_slice(device.as_bytes());
    out.extend_from_slice(&revoked_at_ms.to_be_bytes());
    out
}

impl AccountKey {
    /// Revokes `device` of `username`.
    pub fn revoke(
        &self,
        username: &Username,
        device: DeviceId,
        revoked_at_ms: u64,
    ) -> DeviceRevocation {
        let signed = [SIGNED_CONTEXT, &fields(username, device, revoked_at_ms)].concat();
        DeviceRevocation {
            username: username.clone(),
            device,
            revoked_at_ms,
            signature: self.sign_raw(&signed),
        }
    }
}

impl DeviceRevocation {
    pub fn verify(&self, account: &AccountPublicKey) -> Result<(), CertificateError> {
        let key = VerifyingKey::from_bytes(&account.to_bytes())
            .map_err(|_| CertificateError::BadAccountKey)?;
        let signed = [
            SIGNED_CONTEXT,
            &fields(&self.username, self.device, self.revoked_at_ms),
        ]
        .concat();
        key.verify_strict(&signed, &Signature::from_bytes(&self.signature))
            .map_err(|_| CertificateError::BadSignature)
    }

    pub fn encode(&self) -> Vec<u8> {
        [
            fields(&self.username, self.device, self.revoked_at_ms),
            self.signature.to_vec(),
        ]
        .concat()
    }

    pub fn decode(bytes: &[u8]) -> Result<DeviceRevocation, CertificateError> {
        let malformed = || CertificateError::Malformed;
        let (&name_len, rest) = bytes.split_first().ok_or_else(malformed)?;
        let name_len = name_len as usize;
        if rest.len() != name_len + 16 + 8 + 64 {
            return Err(malformed());
        }
        let (name, rest) = rest.split_at(name_len);
        let username = std::str::from_utf8(name)
            .ok()
            .and_then(|n| Username::parse(n).ok())
            .ok_or_else(malformed)?;
        let (device, rest) = rest.split_at(16);
        let device = DeviceId::from_slice(device).map_err(|_| malformed())?;
        let (time, signature) = rest.split_at(8);
        Ok(DeviceRevocation {
            username,
            device,
            revoked_at_ms: u64::from_be_bytes(time.try_into().map_err(|_| malformed())?),
            signature: signature.try_into().map_err(|_| malformed())?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_revocation_verifies_under_its_account_key_and_covers_every_field() {
        let account = AccountKey::generate();
        let alice = Username::parse("alice").unwrap();
        let revocation = account.revoke(&alice, DeviceId::from_bytes([3; 16]), 7);
        let decoded = DeviceRevocation::decode(&revocation.encode()).unwrap();
        assert_eq!(decoded, revocation);
        assert_eq!(decoded.verify(&account.public()), Ok(()));
        assert!(decoded.verify(&AccountKey::generate().public()).is_err());
        let mut other = revocation.clone();
        other.device = DeviceId::from_bytes([4; 16]);
        assert!(other.verify(&account.public()).is_err());
        let bytes = revocation.encode();
        for end in 0..bytes.len() {
            assert!(DeviceRevocation::decode(&bytes[..end]).is_err());
        }
    }
}
