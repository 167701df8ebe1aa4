//! The browser platform (wasm32, inside a Dedicated Worker): the worker's event loop and
//! timers, SQLite on OPFS, the browser's TLS and fetch, `WebSocket`.

mod files;
mod live;

use std::path::Path;
use std::time::Duration;

pub use files::*;
pub use live::LiveSocket;

use crate::error::ClientError;

pub async fn sleep(duration: Duration) {
    let millis = u32::try_from(duration.as_millis()).unwrap_or(u32::MAX);
    gloo_timers::future::TimeoutFuture::new(millis).await
}

/// A worker has one thread: the work runs here and now (the page stays responsive, since
/// the page is another thread).
pub async fn run_blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ClientError> {
    Ok(work())
}

/// How many files the OPFS pool holds at least (it grows an older, smaller pool).
const POOL_FILES: u32 = 24;

/// Installs SQLite's OPFS "sync access handle pool" as the default VFS: durable files in the
/// origin's private file system. Call once in the worker, before opening a client. Its
/// handles are exclusive, so a second worker (another tab) cannot open the same pool.
pub async fn install_storage() -> Result<(), ClientError> {
    use sqlite_wasm_vfs::sahpool::{install, OpfsSAHPoolCfg};
    // One file per slot: a database and its write-ahead log take two while open, and a
    // browser may keep a few accounts' databases (the default pool holds six files).
    let config = OpfsSAHPoolCfg {
        initial_capacity: POOL_FILES,
        ..OpfsSAHPoolCfg::default()
    };
    install::<sqlite_wasm_rs::WasmOsCallback>(&config, true)
        .await
        .map(|_| ())
        .map_err(|e| ClientError::Config(format!("browser storage unavailable: {e:?}")))
}

/// Whether the database exists: opened without the right to create it.
pub fn database_exists(database: &Path) -> bool {
    rusqlite::Connection::open_with_flags(database, rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE)
        .is_ok()
}

/// OPFS has no shared memory, so SQLite keeps WAL's index in the connection's own memory
/// only with the database locked exclusively; without that it would keep its rollback
/// journal (two flushes and a file deletion per commit, instead of one flush) and say
/// nothing. One connection at a time is what the browser has anyway: the worker owns the
/// pool, and the client opens its database once.
pub fn before_journal_mode(conn: &rusqlite::Connection) -> Result<(), ClientError> {
    conn.pragma_update(None, "locking_mode", "EXCLUSIVE")?;
    Ok(())
}

/// OPFS is private to the origin already.
pub fn make_database_private(_database: &Path) -> Result<(), ClientError> {
    Ok(())
}

/// The home needs no directory: the database's name is its path inside the OPFS pool.
pub fn create_home(_home: &Path) -> Result<(), ClientError> {
    Ok(())
}

/// One client per account in the browser: the OPFS pool's handles are exclusive to the
/// worker that installed it, and the page takes the account's Web Lock before it starts that
/// worker (so that a second tab is told, not blocked). Nothing more to hold here.
#[derive(Debug, Clone)]
pub struct HomeLock;

pub fn lock_home(home: &Path, _on_wait: Option<fn()>) -> Result<HomeLock, ClientError> {
    create_home(home)?;
    Ok(HomeLock)
}

/// The browser checks certificates itself, against its own roots.
#[derive(Debug, Clone)]
pub struct TlsConfig;

pub fn tls_config(extra_ca: Option<&Path>) -> Result<TlsConfig, ClientError> {
    match extra_ca {
        Some(_) => Err(ClientError::Config(
            "in the browser, certificates are the browser's to trust; no CA file".into(),
        )),
        None => Ok(TlsConfig),
    }
}

pub fn http_client(_tls: &TlsConfig) -> Result<reqwest::Client, ClientError> {
    reqwest::Client::builder()
        .build()
        .map_err(|e| ClientError::Config(e.to_string()))
}

/// Whether a request never reached the server. `fetch` does not tell a refused connection
/// from one lost later; both are request errors without a status.
pub fn never_connected(error: &reqwest::Error) -> bool {
    error.is_request() && !error.is_timeout() && error.status().is_none()
}
