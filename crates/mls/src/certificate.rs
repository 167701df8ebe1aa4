//! An account's identity and the certificates it gives its devices (see docs/multi-device.md).
//!
//! The account key (Ed25519) is held by the account's devices and nobody else; the server and
//! the account's contacts know its public half. A [`DeviceCertificate`] binds one device's MLS
//! signature key to the account: a leaf or KeyPackage for an account is accepted only with a
//! certificate that verifies under that account's key, so a server that holds no account key
//! cannot add a device to anyone's account.
//! Credentials carry the certificate: see [`crate::identity`].

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use parley_protocol::{DeviceId, Username};
use rand::RngCore;

/// What the account key signs: this prefix, then the certificate's fields as encoded.
const SIGNED_CONTEXT: &[u8] = b"parley/v1/device-certificate\0";
/// A device's MLS signature public key (Ed25519: 32 bytes; room for larger suites).
const MAX_DEVICE_KEY_BYTES: usize = 256;

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum CertificateError {
    #[error("the device certificate does not parse")]
    Malformed,
    #[error("the device certificate is not signed by this account's key")]
    BadSignature,
    #[error("the account key is not a valid Ed25519 key")]
    BadAccountKey,
}

/// The account key, as the account's devices hold it.
#[derive(Clone)]
pub struct AccountKey(SigningKey);

/// The public half of an account key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AccountPublicKey([u8; 32]);

impl AccountKey {
    /// A fresh account key, from the operating system's random source.
    pub fn generate() -> AccountKey {
        let mut secret = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut secret);
        AccountKey(SigningKey::from_bytes(&secret))
    }

    /// The secret, for the devices' own storage and for link bundles and backups only.
    pub fn to_secret_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    pub fn from_secret_bytes(secret: &[u8; 32]) -> AccountKey {
        AccountKey(SigningKey::from_bytes(secret))
    }

    /// Signs `message` (each caller prefixes its own context).
    pub(crate) fn sign_raw(&self, message: &[u8]) -> [u8; 64] {
        self.0.sign(message).to_bytes()
    }

    pub fn public(&self) -> AccountPublicKey {
        AccountPublicKey(self.0.verifying_key().to_bytes())
    }

    /// Certifies `device_key` as the MLS signature key of `device` of `username`.
    pub fn certify(
        &self,
        username: &Username,
        device: DeviceId,
        device_key: &[u8],
        issued_at_ms: u64,
    ) -> DeviceCertificate {
        let mut certificate = DeviceCertificate {
            username: username.clone(),
            device,
            device_key: device_key.to_vec(),
            issued_at_ms,
            signature: [0; 64],
        };
        let signed = [SIGNED_CONTEXT, &certificate.fields()].concat();
        certificate.signature = self.0.sign(&signed).to_bytes();
        certificate
    }
}

impl AccountPublicKey {
    pub fn from_bytes(bytes: [u8; 32]) -> AccountPublicKey {
        AccountPublicKey(bytes)
    }

    pub fn to_bytes(&self) -> [u8; 32] {
        self.0
    }
}

/// A device's certificate: its MLS signature key, certified by its account's key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceCertificate {
    pub username: Username,
    pub device: DeviceId,
    pub device_key: Vec<u8>,
    pub issued_at_ms: u64,
    signature: [u8; 64],
}

impl DeviceCertificate {
    /// Checks the certificate against the account's key.
    pub fn verify(&self, account: &AccountPublicKey) -> Result<(), CertificateError> {
        let key =
            VerifyingKey::from_bytes(&account.0).map_err(|_| CertificateError::BadAccountKey)?;
        let signed = [SIGNED_CONTEXT, &self.fields()].concat();
        key.verify_strict(&signed, &Signature::from_bytes(&self.signature))
            .map_err(|_| CertificateError::BadSignature)
    }

    /// The signed fields: the username (a length byte, then its bytes), the device id (16
    /// bytes), the device key (a 2-byte big-endian length, then its bytes), the issue time
    /// (8 bytes big-endian).
    fn fields(&self) -> Vec<u8> {
        let name = self.username.as_str().as_bytes();
        let mut out = Vec::with_capacity(1 + name.len() + 16 + 2 + self.device_key.len() + 8);
        out.push(name.len() as u8);
        out.extend_from_slice(name);
        out.extend_from_slice(self.device.as_bytes());
        out.extend_from_slice(&(self.device_key.len() as u16).to_be_bytes());
        out.extend_from_slice(&self.device_key);
        out.extend_from_slice(&self.issued_at_ms.to_be_bytes());
        out
    }

    /// The fields, then the 64-byte signature.
    pub fn encode(&self) -> Vec<u8> {
        [self.fields(), self.signature.to_vec()].concat()
    }

    /// Parses an encoded certificate (without checking its signature: see
    /// [`DeviceCertificate::verify`]). Refuses trailing bytes.
    pub fn decode(bytes: &[u8]) -> Result<DeviceCertificate, CertificateError> {
        let mut reader = Reader(bytes);
        let name_len = reader.take(1)?[0] as usize;
        let name =
            std::str::from_utf8(reader.take(name_len)?).map_err(|_| CertificateError::Malformed)?;
        let username = Username::parse(name).map_err(|_| CertificateError::Malformed)?;
        let device =
            DeviceId::from_slice(reader.take(16)?).map_err(|_| CertificateError::Malformed)?;
        let key_len = u16::from_be_bytes(reader.array()?) as usize;
        if key_len > MAX_DEVICE_KEY_BYTES {
            return Err(CertificateError::Malformed);
        }
        let device_key = reader.take(key_len)?.to_vec();
        let issued_at_ms = u64::from_be_bytes(reader.array()?);
        let signature: [u8; 64] = reader.array()?;
        if !reader.0.is_empty() {
            return Err(CertificateError::Malformed);
        }
        Ok(DeviceCertificate {
            username,
            device,
            device_key,
            issued_at_ms,
            signature,
        })
    }
}

/// Reads fields off the front of a byte slice, refusing to read past its end.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], CertificateError> {
        if self.0.len() < n {
            return Err(CertificateError::Malformed);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], CertificateError> {
        self.take(N)?
            .try_into()
            .map_err(|_| CertificateError::Malformed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice() -> Username {
        Username::parse("alice").unwrap()
    }

    #[test]
    fn a_certificate_verifies_under_its_account_key_only() {
        let account = AccountKey::generate();
        let certificate = account.certify(&alice(), DeviceId::from_bytes([1; 16]), &[7; 32], 42);
        assert_eq!(certificate.verify(&account.public()), Ok(()));
        let other = AccountKey::generate();
        assert_eq!(
            certificate.verify(&other.public()),
            Err(CertificateError::BadSignature)
        );
    }

    #[test]
    fn every_certified_field_is_covered_by_the_signature() {
        let account = AccountKey::generate();
        let good = account.certify(&alice(), DeviceId::from_bytes([1; 16]), &[7; 32], 42);
        let mut changed = vec![good.clone(); 4];
        changed[0].username = Username::parse("mallory").unwrap();
        changed[1].device = DeviceId::from_bytes([2; 16]);
        changed[2].device_key = vec![8; 32];
        changed[3].issued_at_ms = 43;
        for forged in changed {
            assert_eq!(
                forged.verify(&account.public()),
                Err(CertificateError::BadSignature),
                "{forged:?}"
            );
        }
    }

    #[test]
    fn a_certificate_survives_encoding_and_a_damaged_one_does_not_parse_or_verify() {
        let account = AccountKey::generate();
        let certificate = account.certify(&alice(), DeviceId::from_bytes([1; 16]), &[7; 32], 42);
        let bytes = certificate.encode();
        let decoded = DeviceCertificate::decode(&bytes).unwrap();
        assert_eq!(decoded, certificate);
        assert_eq!(decoded.verify(&account.public()), Ok(()));
        // Every truncation, and a trailing byte, is refused.
        for end in 0..bytes.len() {
            assert!(DeviceCertificate::decode(&bytes[..end]).is_err(), "{end}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(DeviceCertificate::decode(&longer).is_err());
        // A flipped bit parses (or not) but never verifies.
        for i in 0..bytes.len() {
            let mut flipped = bytes.clone();
            flipped[i] ^= 0x01;
            if let Ok(parsed) = DeviceCertificate::decode(&flipped) {
                assert!(parsed.verify(&account.public()).is_err(), "bit at {i}");
            }
        }
    }

    #[test]
    fn an_account_key_comes_back_from_its_secret() {
        let account = AccountKey::generate();
        let again = AccountKey::from_secret_bytes(&account.to_secret_bytes());
        assert_eq!(again.public(), account.public());
        assert_ne!(AccountKey::generate().public(), account.public());
    }
}
