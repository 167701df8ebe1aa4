//! The home directory: created readable by its owner only (it holds the device's private keys and
//! session token), and used by one process at a time.
//!
//! A `Client` holds an exclusive lock on `parley.lock` in its home for as long as it lives. A
//! second process opening the same home waits until the first ends (a CLI command finishes, a
//! `parley tui` or `sync --follow` is closed): two processes on one MLS state would encrypt with
//! the same keys and overwrite each other's pending changes. Within one process, clients on the
//! same home share the lock (a test that reopens a home while the old value still lives).

use std::fs::File;
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};

use crate::error::ClientError;

/// The lock file inside the home directory.
pub const LOCK_FILE: &str = "parley.lock";

/// The home's lock, held until dropped (by the last client of this process on that home).
#[derive(Debug, Clone)]
pub struct HomeLock {
    _file: Arc<File>,
}

/// Homes this process holds, by canonical path.
static HELD: Mutex<Vec<(PathBuf, Weak<File>)>> = Mutex::new(Vec::new());

fn config_error(what: &str, path: &Path, e: std::io::Error) -> ClientError {
    ClientError::Config(format!("cannot {what} {}: {e}", path.display()))
}

/// Creates the home directory (mode 0700) if need be, and makes an existing one private.
pub fn create_home(home: &Path) -> Result<(), ClientError> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(home)
        .map_err(|e| config_error("create", home, e))?;
    std::fs::set_permissions(home, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| config_error("restrict access to", home, e))
}

/// Locks the home for this process, waiting while another process holds it; `on_wait` is
/// called once, before waiting, so that a front end can say why nothing happens.
pub fn lock_home(home: &Path, on_wait: Option<fn()>) -> Result<HomeLock, ClientError> {
    create_home(home)?;
    let key = home
        .canonicalize()
        .map_err(|e| config_error("resolve", home, e))?;
    let mut held = HELD.lock().unwrap_or_else(|p| p.into_inner());
    held.retain(|(_, file)| file.strong_count() > 0);
    if let Some(file) = held
        .iter()
        .find(|(path, _)| *path == key)
        .and_then(|(_, f)| f.upgrade())
    {
        return Ok(HomeLock { _file: file });
    }
    let path = key.join(LOCK_FILE);
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .map_err(|e| config_error("open", &path, e))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            if let Some(on_wait) = on_wait {
                on_wait();
            }
            file.lock().map_err(|e| config_error("lock", &path, e))?;
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(config_error("lock", &path, e)),
    }
    // Who holds it, for a curious user; the lock itself is what counts.
    let _ = file.set_len(0);
    let _ = writeln!(file, "{}", std::process::id());
    let file = Arc::new(file);
    held.push((key, Arc::downgrade(&file)));
    Ok(HomeLock { _file: file })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_home_is_created_private_and_locked_once_per_process() {
        let parent = tempfile::tempdir().unwrap();
        let home = parent.path().join("a").join("home");
        let first = lock_home(&home, None).unwrap();
        let mode = std::fs::metadata(&home).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        // The same process may open it again (it shares the lock) without waiting.
        let second = lock_home(&home, Some(|| panic!("waited on our own lock"))).unwrap();
        drop((first, second));
        // Once released, another open file description can take it.
        let file = File::options()
            .write(true)
            .open(home.join(LOCK_FILE))
            .unwrap();
        file.try_lock().unwrap();
    }
}
