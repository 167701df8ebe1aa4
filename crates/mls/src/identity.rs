//! A member's MLS BasicCredential identity is `username:device-id-hex`.
//!
//! The server accepts a leaf only if that device is registered to that username with the leaf's
//! signature key, so a client can trust the username it reads here as much as it trusts the
//! server's directory (safety numbers let users check even that).

use openmls::prelude::{BasicCredential, Credential};
use parley_protocol::{DeviceId, Username};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    #[error("credential is not a basic credential")]
    NotBasic,
    #[error("credential identity is not `username:device`")]
    Shape,
    #[error("credential identity has an invalid username: {0}")]
    Username(#[from] parley_protocol::UsernameError),
    #[error("credential identity has an invalid device id: {0}")]
    Device(#[from] parley_protocol::IdError),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DeviceIdentity {
    pub username: Username,
    pub device_id: DeviceId,
}

impl DeviceIdentity {
    pub fn new(username: Username, device_id: DeviceId) -> Self {
        DeviceIdentity {
            username,
            device_id,
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        format!("{}:{}", self.username, self.device_id.to_hex()).into_bytes()
    }

    pub fn parse(bytes: &[u8]) -> Result<Self, IdentityError> {
        let text = std::str::from_utf8(bytes).map_err(|_| IdentityError::Shape)?;
        let (user, device) = text.split_once(':').ok_or(IdentityError::Shape)?;
        Ok(DeviceIdentity {
            username: Username::parse(user)?,
            device_id: DeviceId::parse_hex(device)?,
        })
    }

    pub fn from_credential(credential: &Credential) -> Result<Self, IdentityError> {
        let basic =
            BasicCredential::try_from(credential.clone()).map_err(|_| IdentityError::NotBasic)?;
        Self::parse(basic.identity())
    }

    pub fn to_credential(&self) -> Credential {
        BasicCredential::new(self.to_bytes()).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_round_trips_through_a_credential() {
        let identity = DeviceIdentity::new(
            Username::parse("alice").unwrap(),
            DeviceId::from_bytes([0xab; 16]),
        );
        let credential = identity.to_credential();
        assert_eq!(
            DeviceIdentity::from_credential(&credential).unwrap(),
            identity
        );
    }

    #[test]
    fn malformed_identities_are_rejected() {
        for bad in [
            &b"alice"[..],
            b"alice:zz",
            b"Alice:abababababababababababababababab",
            b"\xff:00",
        ] {
            assert!(DeviceIdentity::parse(bad).is_err());
        }
    }
}
