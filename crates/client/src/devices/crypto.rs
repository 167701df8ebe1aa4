//! The cryptography of linking, built from well-kept crates only: HMAC-SHA256 (the link MAC),
//! HPKE (the link bundle, through openmls' crypto provider), HKDF-SHA256 and AES-256-GCM (the
//! history archive and device names).

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use hmac::{Hmac, Mac};
use openmls_rust_crypto::RustCrypto;
use openmls_traits::crypto::OpenMlsCrypto;
use openmls_traits::types::{HpkeAeadType, HpkeCiphertext, HpkeConfig, HpkeKdfType, HpkeKemType};
use sha2::Sha256;

use crate::error::ClientError;

/// Plaintext bytes per archive chunk: its ciphertext and framing stay under the server's 1 MiB.
pub(crate) const ARCHIVE_CHUNK_BYTES: usize = 512 * 1024;
const X25519_KEY_BYTES: usize = 32;

fn hpke_config() -> HpkeConfig {
    HpkeConfig(
        HpkeKemType::DhKem25519,
        HpkeKdfType::HkdfSha256,
        HpkeAeadType::AesGcm128,
    )
}

fn crypto_error(what: &str) -> ClientError {
    ClientError::Protocol(format!("{what} failed"))
}

pub(crate) fn link_mac(secret: &[u8], input: &[u8]) -> Vec<u8> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC takes any key");
    mac.update(input);
    mac.finalize().into_bytes().to_vec()
}

/// Whether `mac` is the link MAC of `input` (in constant time).
pub(crate) fn link_mac_matches(secret: &[u8], input: &[u8], mac: &[u8]) -> bool {
    let mut check = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC takes any key");
    check.update(input);
    check.verify_slice(mac).is_ok()
}

/// A fresh X25519 key pair for the link bundle: (secret, public).
pub(crate) fn hpke_key_pair(crypto: &RustCrypto) -> Result<(Vec<u8>, Vec<u8>), ClientError> {
    let ikm: [u8; 32] = rand::random();
    let pair = crypto
        .derive_hpke_keypair(hpke_config(), &ikm)
        .map_err(|_| crypto_error("making the link key"))?;
    let private: &[u8] = pair.private.as_ref();
    Ok((private.to_vec(), pair.public))
}

/// The HPKE `info`: binds the bundle to this link and to its code's secret.
fn bundle_info(link_id: &[u8], secret: &[u8]) -> Vec<u8> {
    [b"parley/v1/link-bundle\0".as_slice(), link_id, secret].concat()
}

pub(crate) fn seal_bundle(
    crypto: &RustCrypto,
    public: &[u8],
    link_id: &[u8],
    secret: &[u8],
    plaintext: &[u8],
) -> Result<Vec<u8>, ClientError> {
    let sealed = crypto
        .hpke_seal(
            hpke_config(),
            public,
            &bundle_info(link_id, secret),
            &[],
            plaintext,
        )
        .map_err(|_| crypto_error("sealing the link bundle"))?;
    Ok([sealed.kem_output.as_slice(), sealed.ciphertext.as_slice()].concat())
}

pub(crate) fn open_bundle(
    crypto: &RustCrypto,
    private: &[u8],
    link_id: &[u8],
    secret: &[u8],
    sealed: &[u8],
) -> Result<Vec<u8>, ClientError> {
    if sealed.len() <= X25519_KEY_BYTES {
        return Err(crypto_error("opening the link bundle"));
    }
    let (kem_output, ciphertext) = sealed.split_at(X25519_KEY_BYTES);
    let input = HpkeCiphertext {
        kem_output: kem_output.to_vec().into(),
        ciphertext: ciphertext.to_vec().into(),
    };
    crypto
        .hpke_open(
            hpke_config(),
            &input,
            private,
            &bundle_info(link_id, secret),
            &[],
        )
        .map_err(|_| crypto_error("opening the link bundle (it is not for this device)"))
}

pub(crate) fn derive_key(salt: &[u8], ikm: &[u8], label: &[u8]) -> [u8; 32] {
    let mut key = [0u8; 32];
    hkdf::Hkdf::<Sha256>::new(Some(salt), ikm)
        .expand(label, &mut key)
        .expect("32 bytes is a valid HKDF-SHA256 length");
    key
}

/// The history archive's root key: from the link code's secret, so that any device holding the
/// code can resume a transfer, and the server, which never sees the secret, cannot read it. Each
/// upload derives its own key from it with a fresh salt (see [`encrypt_archive`]).
pub(crate) fn archive_key(link_id: &[u8], secret: &[u8]) -> [u8; 32] {
    derive_key(link_id, secret, b"parley/v1/link-archive")
}

const ARCHIVE_SALT_BYTES: usize = 16;

/// The key of one upload: a resumed transfer encrypts a log that has grown since, and must not
/// reuse the nonces of the first attempt under the same key.
fn upload_key(root: &[u8; 32], salt: &[u8]) -> [u8; 32] {
    derive_key(salt, root, b"parley/v1/archive-upload")
}

fn chunk_nonce(index: u32) -> [u8; 12] {
    let mut nonce = [0u8; 12];
    nonce[8..].copy_from_slice(&index.to_be_bytes());
    nonce
}

/// Each chunk authenticates its index and the total, so that the server can neither reorder,
/// drop nor truncate chunks unnoticed.
fn chunk_aad(index: u32, total: u32) -> Vec<u8> {
    [
        b"parley/v1/archive-chunk\0".as_slice(),
        &index.to_be_bytes(),
        &total.to_be_bytes(),
    ]
    .concat()
}

/// Encrypts an archive into chunks, under a key of this upload alone (a fresh salt, sent in
/// the clear at the start of chunk 0).
pub(crate) fn encrypt_archive(
    root: &[u8; 32],
    plaintext: &[u8],
) -> Result<Vec<Vec<u8>>, ClientError> {
    let salt: [u8; ARCHIVE_SALT_BYTES] = rand::random();
    let cipher = Aes256Gcm::new((&upload_key(root, &salt)).into());
    let pieces: Vec<&[u8]> = if plaintext.is_empty() {
        vec![&[]]
    } else {
        plaintext.chunks(ARCHIVE_CHUNK_BYTES).collect()
    };
    let total = u32::try_from(pieces.len()).map_err(|_| crypto_error("archive too large"))?;
    let mut chunks = pieces
        .iter()
        .enumerate()
        .map(|(index, piece)| {
            let index = index as u32;
            cipher
                .encrypt(
                    Nonce::from_slice(&chunk_nonce(index)),
                    Payload {
                        msg: piece,
                        aad: &chunk_aad(index, total),
                    },
                )
                .map_err(|_| crypto_error("encrypting the archive"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    chunks[0].splice(0..0, salt);
    Ok(chunks)
}

pub(crate) fn decrypt_archive(root: &[u8; 32], chunks: &[Vec<u8>]) -> Result<Vec<u8>, ClientError> {
    let unreadable = || {
        ClientError::Protocol(
            "the history archive does not decrypt: it was changed or is not for this link".into(),
        )
    };
    let (salt, first) = chunks
        .first()
        .filter(|c| c.len() >= ARCHIVE_SALT_BYTES)
        .map(|c| c.split_at(ARCHIVE_SALT_BYTES))
        .ok_or_else(unreadable)?;
    let cipher = Aes256Gcm::new((&upload_key(root, salt)).into());
    let total = chunks.len() as u32;
    let mut plaintext = Vec::new();
    for (index, chunk) in chunks.iter().enumerate() {
        let body = if index == 0 { first } else { chunk.as_slice() };
        let index = index as u32;
        let piece = cipher
            .decrypt(
                Nonce::from_slice(&chunk_nonce(index)),
                Payload {
                    msg: body,
                    aad: &chunk_aad(index, total),
                },
            )
            .map_err(|_| unreadable())?;
        plaintext.extend_from_slice(&piece);
    }
    Ok(plaintext)
}

/// Device names are sealed under a key from the account key: the server stores them unread.
pub(crate) fn seal_name(account_secret: &[u8], name: &str) -> Result<Vec<u8>, ClientError> {
    let key = derive_key(b"", account_secret, b"parley/v1/device-name");
    let nonce: [u8; 12] = rand::random();
    let sealed = Aes256Gcm::new((&key).into())
        .encrypt(Nonce::from_slice(&nonce), name.as_bytes())
        .map_err(|_| crypto_error("sealing the device name"))?;
    Ok([nonce.as_slice(), &sealed].concat())
}

pub(crate) fn open_name(account_secret: &[u8], sealed: &[u8]) -> Option<String> {
    if sealed.len() < 12 {
        return None;
    }
    let key = derive_key(b"", account_secret, b"parley/v1/device-name");
    let (nonce, ciphertext) = sealed.split_at(12);
    let plain = Aes256Gcm::new((&key).into())
        .decrypt(Nonce::from_slice(nonce), ciphertext)
        .ok()?;
    String::from_utf8(plain).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bundle_opens_only_with_its_key_and_its_codes_secret() {
        let crypto = RustCrypto::default();
        let (private, public) = hpke_key_pair(&crypto).unwrap();
        let sealed = seal_bundle(&crypto, &public, b"link0001", &[1; 16], b"bundle").unwrap();
        assert_eq!(
            open_bundle(&crypto, &private, b"link0001", &[1; 16], &sealed).unwrap(),
            b"bundle"
        );
        assert!(open_bundle(&crypto, &private, b"link0001", &[2; 16], &sealed).is_err());
        assert!(open_bundle(&crypto, &private, b"link0002", &[1; 16], &sealed).is_err());
        let (other, _) = hpke_key_pair(&crypto).unwrap();
        assert!(open_bundle(&crypto, &other, b"link0001", &[1; 16], &sealed).is_err());
    }

    #[test]
    fn an_archive_survives_its_chunks_in_order_only() {
        let key = archive_key(b"link0001", &[3; 16]);
        let plaintext: Vec<u8> = (0..ARCHIVE_CHUNK_BYTES * 2 + 10).map(|i| i as u8).collect();
        let chunks = encrypt_archive(&key, &plaintext).unwrap();
        assert_eq!(chunks.len(), 3);
        assert_eq!(decrypt_archive(&key, &chunks).unwrap(), plaintext);
        let mut swapped = chunks.clone();
        swapped.swap(0, 1);
        assert!(decrypt_archive(&key, &swapped).is_err(), "reordered");
        assert!(decrypt_archive(&key, &chunks[..2]).is_err(), "truncated");
        let mut flipped = chunks.clone();
        flipped[2][0] ^= 1;
        assert!(decrypt_archive(&key, &flipped).is_err(), "changed");
        let other = archive_key(b"link0002", &[3; 16]);
        assert!(
            decrypt_archive(&other, &chunks).is_err(),
            "another link's key"
        );
        assert!(decrypt_archive(&key, &encrypt_archive(&key, b"").unwrap())
            .unwrap()
            .is_empty());
        assert!(decrypt_archive(&key, &[]).is_err());
        assert!(decrypt_archive(&key, &[vec![0; 5]]).is_err());
    }

    #[test]
    fn every_upload_of_an_archive_has_its_own_key() {
        let key = archive_key(b"link0001", &[3; 16]);
        let first = encrypt_archive(&key, b"the same log").unwrap();
        let again = encrypt_archive(&key, b"the same log").unwrap();
        assert_ne!(first, again, "a resumed upload reuses no key and nonce");
        assert_eq!(decrypt_archive(&key, &again).unwrap(), b"the same log");
    }

    #[test]
    fn a_link_mac_covers_its_input() {
        let mac = link_mac(&[1; 16], b"keys");
        assert!(link_mac_matches(&[1; 16], b"keys", &mac));
        assert!(!link_mac_matches(&[1; 16], b"keyz", &mac));
        assert!(!link_mac_matches(&[2; 16], b"keys", &mac));
    }

    #[test]
    fn a_device_name_opens_with_the_account_key_only() {
        let sealed = seal_name(&[4; 32], "laptop").unwrap();
        assert_eq!(open_name(&[4; 32], &sealed).as_deref(), Some("laptop"));
        assert_eq!(open_name(&[5; 32], &sealed), None);
        assert_eq!(open_name(&[4; 32], &sealed[..5]), None);
    }
}
