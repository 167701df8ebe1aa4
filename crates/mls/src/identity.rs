//! What a member's MLS BasicCredential says: which device of which account it is, and the
//! account key that certifies it.
//!
//! A credential identity is `0x00 || account public key (32 bytes) || device certificate`
//! ([`crate::certificate`]). The plain form `username:device-id-hex` of accounts from before
//! multi-device stays readable; such a device is its own account key (the server promoted its
//! signature key when it migrated), so the same rule covers both: a leaf is accepted only as a
//! [`CertifiedDevice`], and that value exists only once its certificate has verified.
//!
//! Who checks the account key itself: the server against the key the account registered, a
//! client against the key it pinned for that username (see the client's `contacts`).

use openmls::prelude::{BasicCredential, Credential, LeafNode};
use parley_protocol::{DeviceId, Username};

use crate::certificate::{AccountPublicKey, CertificateError, DeviceCertificate};

/// The first byte of a certified identity; a plain identity starts with a username's letter.
const CERTIFIED: u8 = 0x00;

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
    #[error("{0}")]
    Certificate(#[from] CertificateError),
    #[error("the device certificate is for another signature key than the leaf's")]
    KeyMismatch,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DeviceIdentity {
    pub username: Username,
    pub device_id: DeviceId,
}

/// A device whose credential verified: its certificate is signed by `account_key` and names the
/// signature key of the leaf it came with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertifiedDevice {
    pub identity: DeviceIdentity,
    pub account_key: AccountPublicKey,
}

/// The credential a device presents: its certificate and the account key that signed it.
pub fn certified_credential(
    account_key: &AccountPublicKey,
    certificate: &DeviceCertificate,
) -> Credential {
    let identity = [
        &[CERTIFIED][..],
        &account_key.to_bytes(),
        &certificate.encode(),
    ]
    .concat();
    BasicCredential::new(identity).into()
}

/// The two forms a credential identity takes.
enum Parsed {
    Certified(AccountPublicKey, DeviceCertificate),
    Plain(DeviceIdentity),
}

fn parse_identity(bytes: &[u8]) -> Result<Parsed, IdentityError> {
    match bytes.split_first() {
        Some((&CERTIFIED, rest)) => {
            let (key, certificate) = rest
                .split_first_chunk::<32>()
                .ok_or(CertificateError::Malformed)?;
            Ok(Parsed::Certified(
                AccountPublicKey::from_bytes(*key),
                DeviceCertificate::decode(certificate)?,
            ))
        }
        _ => DeviceIdentity::parse(bytes).map(Parsed::Plain),
    }
}

fn basic_identity(credential: &Credential) -> Result<Vec<u8>, IdentityError> {
    let basic =
        BasicCredential::try_from(credential.clone()).map_err(|_| IdentityError::NotBasic)?;
    Ok(basic.identity().to_vec())
}

impl DeviceIdentity {
    pub fn new(username: Username, device_id: DeviceId) -> Self {
        DeviceIdentity {
            username,
            device_id,
        }
    }

    /// The plain form, `username:device-id-hex`.
    pub fn to_bytes(&self) -> Vec<u8> {
        format!("{}:{}", self.username, self.device_id.to_hex()).into_bytes()
    }

    /// Parses the plain form.
    pub fn parse(bytes: &[u8]) -> Result<Self, IdentityError> {
        let text = std::str::from_utf8(bytes).map_err(|_| IdentityError::Shape)?;
        let (user, device) = text.split_once(':').ok_or(IdentityError::Shape)?;
        Ok(DeviceIdentity {
            username: Username::parse(user)?,
            device_id: DeviceId::parse_hex(device)?,
        })
    }

    /// Who a credential names, without checking its certificate: for naming the sender of
    /// something MLS has already verified as coming from a leaf that was certified when it
    /// joined. Deciding whether a leaf may join is [`CertifiedDevice::verify`]'s.
    pub fn from_credential(credential: &Credential) -> Result<Self, IdentityError> {
        Ok(match parse_identity(&basic_identity(credential)?)? {
            Parsed::Certified(_, certificate) => {
                DeviceIdentity::new(certificate.username, certificate.device)
            }
            Parsed::Plain(identity) => identity,
        })
    }

    /// The plain credential: for the server's own identity as external sender (never a leaf).
    pub fn to_credential(&self) -> Credential {
        BasicCredential::new(self.to_bytes()).into()
    }
}

impl CertifiedDevice {
    /// Verifies a credential presented with `signature_key`: a certificate signed by the
    /// account key it carries and naming that signature key, or a plain identity whose
    /// signature key is its own account key.
    pub fn verify(
        credential: &Credential,
        signature_key: &[u8],
    ) -> Result<CertifiedDevice, IdentityError> {
        match parse_identity(&basic_identity(credential)?)? {
            Parsed::Certified(account_key, certificate) => {
                certificate.verify(&account_key)?;
                if certificate.device_key != signature_key {
                    return Err(IdentityError::KeyMismatch);
                }
                Ok(CertifiedDevice {
                    identity: DeviceIdentity::new(certificate.username, certificate.device),
                    account_key,
                })
            }
            Parsed::Plain(identity) => {
                let key: [u8; 32] = signature_key
                    .try_into()
                    .map_err(|_| CertificateError::BadAccountKey)?;
                Ok(CertifiedDevice {
                    identity,
                    account_key: AccountPublicKey::from_bytes(key),
                })
            }
        }
    }

    /// Verifies a leaf's credential against the leaf's own signature key.
    pub fn verify_leaf(leaf: &LeafNode) -> Result<CertifiedDevice, IdentityError> {
        Self::verify(leaf.credential(), leaf.signature_key().as_slice())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certificate::AccountKey;

    fn alice() -> Username {
        Username::parse("alice").unwrap()
    }

    #[test]
    fn a_certified_credential_verifies_with_its_own_key_only() {
        let account = AccountKey::generate();
        let device = DeviceId::from_bytes([0xab; 16]);
        let certificate = account.certify(&alice(), device, &[5; 32], 1);
        let credential = certified_credential(&account.public(), &certificate);
        let certified = CertifiedDevice::verify(&credential, &[5; 32]).unwrap();
        assert_eq!(certified.identity, DeviceIdentity::new(alice(), device));
        assert_eq!(certified.account_key, account.public());
        assert_eq!(
            DeviceIdentity::from_credential(&credential).unwrap(),
            certified.identity
        );
        assert_eq!(
            CertifiedDevice::verify(&credential, &[6; 32]),
            Err(IdentityError::KeyMismatch),
            "a certificate for another leaf key"
        );
    }

    #[test]
    fn a_certificate_under_another_account_key_than_the_credential_says_is_refused() {
        let account = AccountKey::generate();
        let forger = AccountKey::generate();
        let certificate = forger.certify(&alice(), DeviceId::from_bytes([1; 16]), &[5; 32], 1);
        let credential = certified_credential(&account.public(), &certificate);
        assert_eq!(
            CertifiedDevice::verify(&credential, &[5; 32]),
            Err(IdentityError::Certificate(CertificateError::BadSignature))
        );
    }

    #[test]
    fn a_plain_identity_is_its_own_account_key() {
        let identity = DeviceIdentity::new(alice(), DeviceId::from_bytes([0xab; 16]));
        let credential = identity.to_credential();
        assert_eq!(
            DeviceIdentity::from_credential(&credential).unwrap(),
            identity
        );
        let certified = CertifiedDevice::verify(&credential, &[9; 32]).unwrap();
        assert_eq!(certified.account_key, AccountPublicKey::from_bytes([9; 32]));
        assert!(CertifiedDevice::verify(&credential, &[9; 31]).is_err());
    }

    #[test]
    fn malformed_identities_are_rejected() {
        for bad in [
            &b"alice"[..],
            b"alice:zz",
            b"Alice:abababababababababababababababab",
            b"\xff:00",
            b"\x00",
            &[0u8; 40],
        ] {
            assert!(DeviceIdentity::parse(bad).is_err());
            let credential: Credential = BasicCredential::new(bad.to_vec()).into();
            assert!(
                DeviceIdentity::from_credential(&credential).is_err(),
                "{bad:?}"
            );
            assert!(CertifiedDevice::verify(&credential, &[0; 32]).is_err());
        }
    }
}
