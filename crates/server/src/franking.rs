//! The server's franking keys (shared/design/franking.md), kept in the data directory as
//! `franking-keys.json` (mode 0600), each with an id. New franks use the current key; reports are
//! checked with the key their frank names. `parley admin rotate-franking-key` adds a key and
//! makes it current; the running server notices the file change. Deleting an old key from the
//! file ends reportability of the messages franked with it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::RwLock;
use std::time::{Duration, Instant, SystemTime};

use rand::RngCore;
use serde::{Deserialize, Serialize};

/// The key file in the data directory (every deployment has one, SQLite or PostgreSQL).
pub const KEY_FILE: &str = "franking-keys.json";
pub(crate) const KEY_LEN: usize = 32;
/// How often the file's modification time is looked at.
const RECHECK: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum FrankingKeyError {
    #[error("franking key file {0}: {1}")]
    Io(PathBuf, std::io::Error),
    #[error("franking key file {0} is malformed: {1}")]
    Malformed(PathBuf, String),
}

#[derive(Serialize, Deserialize, Clone)]
struct StoredKey {
    id: u32,
    key: String,
    created_at_ms: i64,
}

#[derive(Serialize, Deserialize, Clone)]
struct KeyFile {
    current: u32,
    keys: Vec<StoredKey>,
}

#[derive(Clone)]
struct Keyring {
    current: u32,
    keys: BTreeMap<u32, [u8; KEY_LEN]>,
}

struct Loaded {
    keyring: Keyring,
    modified: Option<SystemTime>,
    checked: Instant,
}

pub struct FrankingKeys {
    path: PathBuf,
    loaded: RwLock<Loaded>,
}

fn now_ms() -> i64 {
    crate::now_ms()
}

fn random_key() -> [u8; KEY_LEN] {
    let mut key = [0u8; KEY_LEN];
    rand::rngs::OsRng.fill_bytes(&mut key);
    key
}

fn read_file(path: &Path) -> Result<Keyring, FrankingKeyError> {
    let text =
        std::fs::read_to_string(path).map_err(|e| FrankingKeyError::Io(path.to_owned(), e))?;
    let file: KeyFile = serde_json::from_str(&text)
        .map_err(|e| FrankingKeyError::Malformed(path.to_owned(), e.to_string()))?;
    let mut keys = BTreeMap::new();
    for stored in file.keys {
        let bytes = hex::decode(&stored.key)
            .ok()
            .and_then(|b| <[u8; KEY_LEN]>::try_from(b).ok())
            .ok_or_else(|| {
                FrankingKeyError::Malformed(
                    path.to_owned(),
                    format!("key {} is not 32 hex bytes", stored.id),
                )
            })?;
        keys.insert(stored.id, bytes);
    }
    if !keys.contains_key(&file.current) {
        return Err(FrankingKeyError::Malformed(
            path.to_owned(),
            "the current key is missing".into(),
        ));
    }
    Ok(Keyring {
        current: file.current,
        keys,
    })
}

fn write_file(path: &Path, file: &KeyFile) -> Result<(), FrankingKeyError> {
    let text = serde_json::to_string_pretty(file)
        .map_err(|e| FrankingKeyError::Malformed(path.to_owned(), e.to_string()))?;
    write_private_file(path, text.as_bytes()).map_err(|e| FrankingKeyError::Io(path.to_owned(), e))
}

fn read_with_retries(path: &Path) -> Result<Keyring, FrankingKeyError> {
    let mut last = None;
    for _ in 0..20 {
        match read_file(path) {
            Ok(keyring) => return Ok(keyring),
            // Another node may be writing it this instant.
            Err(e) => last = Some(e),
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    Err(last.unwrap_or_else(|| FrankingKeyError::Malformed(path.to_owned(), "unreadable".into())))
}

/// Creates a secret file (owner-only) unless it exists already, in which case nothing happens.
pub(crate) fn create_private_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(mut out) => {
            out.write_all(bytes)?;
            out.sync_all()
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// Writes a secret file readable by its owner only: a new file renamed over the old one, so
/// that readers never see half a file.
pub(crate) fn write_private_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let temporary = path.with_extension("tmp");
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temporary)?;
    out.write_all(bytes)?;
    out.sync_all()?;
    std::fs::rename(&temporary, path)
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

impl FrankingKeys {
    /// Opens the key file in `data_dir`, creating it with a first key if there is none.
    pub fn open(data_dir: &Path) -> Result<FrankingKeys, FrankingKeyError> {
        // Owner-only, like everything in it (a PostgreSQL deployment's directory holds only
        // the key files).
        {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(data_dir)
                .map_err(|e| FrankingKeyError::Io(data_dir.to_owned(), e))?;
        }
        let path = data_dir.join(KEY_FILE);
        if !path.exists() {
            let first = KeyFile {
                current: 1,
                keys: vec![StoredKey {
                    id: 1,
                    key: hex::encode(random_key()),
                    created_at_ms: now_ms(),
                }],
            };
            let text = serde_json::to_vec_pretty(&first)
                .map_err(|e| FrankingKeyError::Malformed(path.clone(), e.to_string()))?;
            // Nodes starting together on a shared directory: the first one creates the file.
            create_private_file(&path, &text).map_err(|e| FrankingKeyError::Io(path.clone(), e))?;
        }
        let keyring = read_with_retries(&path)?;
        Ok(FrankingKeys {
            loaded: RwLock::new(Loaded {
                keyring,
                modified: modified(&path),
                checked: Instant::now(),
            }),
            path,
        })
    }

    /// Adds a new key and makes it current. Returns its id.
    pub fn rotate(data_dir: &Path) -> Result<u32, FrankingKeyError> {
        let keys = Self::open(data_dir)?;
        let text = std::fs::read_to_string(&keys.path)
            .map_err(|e| FrankingKeyError::Io(keys.path.clone(), e))?;
        let mut file: KeyFile = serde_json::from_str(&text)
            .map_err(|e| FrankingKeyError::Malformed(keys.path.clone(), e.to_string()))?;
        let id = file.keys.iter().map(|k| k.id).max().unwrap_or(0) + 1;
        file.keys.push(StoredKey {
            id,
            key: hex::encode(random_key()),
            created_at_ms: now_ms(),
        });
        file.current = id;
        write_file(&keys.path, &file)?;
        Ok(id)
    }

    fn keyring(&self) -> Keyring {
        {
            let loaded = self.loaded.read().unwrap_or_else(|p| p.into_inner());
            if loaded.checked.elapsed() < RECHECK {
                return loaded.keyring.clone();
            }
        }
        let mut loaded = self.loaded.write().unwrap_or_else(|p| p.into_inner());
        loaded.checked = Instant::now();
        let now = modified(&self.path);
        if now != loaded.modified {
            match read_file(&self.path) {
                Ok(keyring) => {
                    loaded.keyring = keyring;
                    loaded.modified = now;
                    tracing::info!(current = loaded.keyring.current, "franking keys reloaded");
                }
                Err(e) => {
                    tracing::error!(error = %e, "franking key file unreadable; keeping the keys in memory")
                }
            }
        }
        loaded.keyring.clone()
    }

    /// The key new franks are made with.
    pub fn current(&self) -> (u32, [u8; KEY_LEN]) {
        let keyring = self.keyring();
        let key = keyring
            .keys
            .get(&keyring.current)
            .copied()
            .unwrap_or([0; KEY_LEN]);
        (keyring.current, key)
    }

    pub fn key(&self, id: u32) -> Option<[u8; KEY_LEN]> {
        self.keyring().keys.get(&id).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_created_rotated_and_kept_by_id() {
        let dir = tempfile::tempdir().unwrap();
        let keys = FrankingKeys::open(dir.path()).unwrap();
        let (first_id, first_key) = keys.current();
        assert_eq!(first_id, 1);
        let second_id = FrankingKeys::rotate(dir.path()).unwrap();
        assert_eq!(second_id, 2);
        let reopened = FrankingKeys::open(dir.path()).unwrap();
        assert_eq!(reopened.current().0, 2);
        assert_eq!(
            reopened.key(1),
            Some(first_key),
            "old keys still verify old franks"
        );
        assert_ne!(reopened.key(2), Some(first_key));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
