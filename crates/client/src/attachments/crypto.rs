//! Encrypting a file for sending and opening a received one, in streaming chunks so that a
//! 100 MiB file never sits in memory whole.
//!
//! AES-256-GCM under a fresh random key per file, [`CHUNK_BYTES`] of plaintext per chunk; each
//! chunk's nonce is its index and its associated data binds the index and the chunk count, so
//! chunks cannot be reordered, dropped or the file truncated. AES-GCM does not commit to its
//! key: a crafted ciphertext can open to two different files under two keys (the "invisible
//! salamander"). So the message that carries the key also carries the SHA-256 of the plaintext,
//! inside the franked payload, and [`open_file`] shows nothing unless the whole file matches it.

use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use sha2::{Digest, Sha256};

use crate::error::ClientError;
use crate::platform as files;

/// Plaintext bytes per chunk.
pub const CHUNK_BYTES: u32 = 64 * 1024;
/// AES-GCM's tag on each chunk.
const TAG_BYTES: u64 = 16;

/// What the message carrying an encrypted file must hold to open it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedFile {
    pub key: [u8; 32],
    pub size: u64,
    pub chunk_bytes: u32,
    pub plaintext_sha256: [u8; 32],
    pub ciphertext_sha256: [u8; 32],
}

/// Chunks of a file of `size` bytes: at least one (an empty file is one empty chunk).
fn chunk_count(size: u64, chunk_bytes: u32) -> Result<u32, ClientError> {
    let count = size.div_ceil(u64::from(chunk_bytes)).max(1);
    u32::try_from(count).map_err(|_| ClientError::Invalid("the file is too large".into()))
}

/// Bytes of the ciphertext of a file of `size` bytes.
pub fn ciphertext_len(size: u64, chunk_bytes: u32) -> Result<u64, ClientError> {
    Ok(size + TAG_BYTES * u64::from(chunk_count(size, chunk_bytes)?))
}

fn nonce(index: u32) -> [u8; 12] {
    let mut nonce = [0u8; 12];
    nonce[8..].copy_from_slice(&index.to_be_bytes());
    nonce
}

fn aad(index: u32, total: u32) -> Vec<u8> {
    [
        b"parley/v1/attachment-chunk\0".as_slice(),
        &index.to_be_bytes(),
        &total.to_be_bytes(),
    ]
    .concat()
}

fn io_error(what: &str, path: &Path, e: std::io::Error) -> ClientError {
    ClientError::Invalid(format!("{what} {}: {e}", path.display()))
}

/// Reads up to `buffer.len()` bytes, fewer only at the end of the input.
fn read_full(reader: &mut impl Read, buffer: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        match reader.read(&mut buffer[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

/// Encrypts the file at `source` into `sealed` (created, owner-only) under a fresh key.
pub fn seal_file(source: &Path, sealed: &Path) -> Result<SealedFile, ClientError> {
    let size = files::file_len(source).map_err(|e| io_error("cannot read", source, e))?;
    let key: [u8; 32] = rand::random();
    let cipher = Aes256Gcm::new((&key).into());
    let total = chunk_count(size, CHUNK_BYTES)?;
    let mut input =
        BufReader::new(files::open_file(source).map_err(|e| io_error("cannot open", source, e))?);
    let mut output = BufWriter::new(private_file(sealed)?);
    let (mut plain_hash, mut cipher_hash) = (Sha256::new(), Sha256::new());
    let mut buffer = vec![0u8; CHUNK_BYTES as usize];
    let mut read = 0u64;
    for index in 0..total {
        let n =
            read_full(&mut input, &mut buffer).map_err(|e| io_error("cannot read", source, e))?;
        read += n as u64;
        plain_hash.update(&buffer[..n]);
        let chunk = cipher
            .encrypt(
                Nonce::from_slice(&nonce(index)),
                Payload {
                    msg: &buffer[..n],
                    aad: &aad(index, total),
                },
            )
            .map_err(|_| ClientError::Invalid("cannot encrypt the file".into()))?;
        cipher_hash.update(&chunk);
        output
            .write_all(&chunk)
            .map_err(|e| io_error("cannot write", sealed, e))?;
    }
    // A file that changed while it was read would not match its own hash on arrival.
    if read != size
        || input
            .read(&mut [0u8; 1])
            .map_err(|e| io_error("cannot read", source, e))?
            != 0
    {
        return Err(ClientError::Invalid(format!(
            "{} changed while it was being encrypted",
            source.display()
        )));
    }
    output
        .flush()
        .map_err(|e| io_error("cannot write", sealed, e))?;
    Ok(SealedFile {
        key,
        size,
        chunk_bytes: CHUNK_BYTES,
        plaintext_sha256: plain_hash.finalize().into(),
        ciphertext_sha256: cipher_hash.finalize().into(),
    })
}

/// Why a received file is refused.
fn refused(why: &str) -> ClientError {
    ClientError::Invalid(format!("the attachment is refused: {why}"))
}

/// Opens the ciphertext at `sealed` into `out`, all or nothing: the ciphertext's hash is
/// checked before decrypting, and the plaintext (written to a temporary file beside `out`)
/// becomes `out` only when its size and hash match what the message said.
pub fn open_file(sealed: &Path, expected: &SealedFile, out: &Path) -> Result<(), ClientError> {
    if expected.chunk_bytes == 0 || expected.chunk_bytes > 16 * 1024 * 1024 {
        return Err(refused("its chunk size is out of range"));
    }
    let total = chunk_count(expected.size, expected.chunk_bytes)?;
    let length = files::file_len(sealed).map_err(|e| io_error("cannot read", sealed, e))?;
    if length != ciphertext_len(expected.size, expected.chunk_bytes)? {
        return Err(refused("its length does not match its size"));
    }
    let mut hash = Sha256::new();
    let mut file = files::open_file(sealed).map_err(|e| io_error("cannot open", sealed, e))?;
    std::io::copy(&mut file, &mut hash).map_err(|e| io_error("cannot read", sealed, e))?;
    if hash.finalize().as_slice() != expected.ciphertext_sha256 {
        return Err(refused("the stored file was changed"));
    }
    let partial = partial_path(out);
    let result = decrypt_into(sealed, expected, total, &partial);
    match result {
        Ok(()) => files::rename_file(&partial, out).map_err(|e| io_error("cannot write", out, e)),
        Err(e) => {
            let _ = files::remove_file(&partial);
            Err(e)
        }
    }
}

fn decrypt_into(
    sealed: &Path,
    expected: &SealedFile,
    total: u32,
    partial: &Path,
) -> Result<(), ClientError> {
    let cipher = Aes256Gcm::new((&expected.key).into());
    let mut input =
        BufReader::new(files::open_file(sealed).map_err(|e| io_error("cannot open", sealed, e))?);
    let mut output = BufWriter::new(private_file(partial)?);
    let mut hash = Sha256::new();
    let mut buffer = vec![0u8; expected.chunk_bytes as usize + TAG_BYTES as usize];
    for index in 0..total {
        let n =
            read_full(&mut input, &mut buffer).map_err(|e| io_error("cannot read", sealed, e))?;
        let plain = cipher
            .decrypt(
                Nonce::from_slice(&nonce(index)),
                Payload {
                    msg: &buffer[..n],
                    aad: &aad(index, total),
                },
            )
            .map_err(|_| refused("it does not decrypt with the key its message carries"))?;
        hash.update(&plain);
        output
            .write_all(&plain)
            .map_err(|e| io_error("cannot write", partial, e))?;
    }
    if hash.finalize().as_slice() != expected.plaintext_sha256 {
        return Err(refused(
            "its content does not match the hash its message carries",
        ));
    }
    output
        .flush()
        .map_err(|e| io_error("cannot write", partial, e))?;
    Ok(())
}

fn partial_path(out: &Path) -> PathBuf {
    let mut name = out.as_os_str().to_owned();
    name.push(".part");
    PathBuf::from(name)
}

/// A new file readable by its owner only (it holds ciphertext or a received file).
fn private_file(path: &Path) -> Result<files::FileWriter, ClientError> {
    files::create_private_file(path).map_err(|e| io_error("cannot create", path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_of(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    fn patterned(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8).collect()
    }

    #[test]
    fn a_sealed_file_opens_byte_identical_whatever_its_size() {
        let dir = tempfile::tempdir().unwrap();
        for len in [0, 1, CHUNK_BYTES as usize, CHUNK_BYTES as usize * 3 + 17] {
            let plain = patterned(len);
            let source = file_of(dir.path(), "in", &plain);
            let sealed = dir.path().join("sealed");
            let info = seal_file(&source, &sealed).unwrap();
            assert_eq!(
                std::fs::metadata(&sealed).unwrap().len(),
                ciphertext_len(len as u64, CHUNK_BYTES).unwrap()
            );
            let out = dir.path().join("out");
            open_file(&sealed, &info, &out).unwrap();
            assert_eq!(std::fs::read(&out).unwrap(), plain, "{len} bytes");
        }
    }

    #[test]
    fn a_changed_ciphertext_another_key_or_another_hash_is_refused_and_nothing_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let source = file_of(dir.path(), "in", &patterned(200_000));
        let sealed = dir.path().join("sealed");
        let info = seal_file(&source, &sealed).unwrap();
        let out = dir.path().join("out");

        let mut flipped = std::fs::read(&sealed).unwrap();
        flipped[100_000] ^= 1;
        let flipped_path = file_of(dir.path(), "flipped", &flipped);
        let err = open_file(&flipped_path, &info, &out).unwrap_err();
        assert!(err.to_string().contains("changed"), "{err}");

        // The same ciphertext under a second key (what a salamander's second message says).
        let other_key = SealedFile {
            key: rand::random(),
            ..info.clone()
        };
        let err = open_file(&sealed, &other_key, &out).unwrap_err();
        assert!(err.to_string().contains("does not decrypt"), "{err}");

        let other_hash = SealedFile {
            plaintext_sha256: [7; 32],
            ..info.clone()
        };
        let err = open_file(&sealed, &other_hash, &out).unwrap_err();
        assert!(err.to_string().contains("does not match the hash"), "{err}");
        assert!(!out.exists() && !partial_path(&out).exists());

        let truncated = file_of(
            dir.path(),
            "short",
            &std::fs::read(&sealed).unwrap()[..1000],
        );
        assert!(open_file(&truncated, &info, &out).is_err());
        assert!(!out.exists());
    }
}
