//! The native platform: tokio, files with Unix modes, a lock file, rustls, tokio-tungstenite.

mod files;
mod home;
mod live;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

pub use files::*;
pub use home::{create_home, lock_home, HomeLock, LOCK_FILE};
pub use live::LiveSocket;

use crate::error::ClientError;

pub async fn sleep(duration: Duration) {
    tokio::time::sleep(duration).await
}

/// Runs CPU- or disk-bound work (sealing a file) off the async threads.
pub async fn run_blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ClientError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| ClientError::Protocol(format!("background work stopped: {e}")))
}

/// Whether `home` holds a database already.
pub fn database_exists(database: &Path) -> bool {
    database.exists()
}

/// Natively, WAL's shared memory lets the CLI's processes share the database: nothing to do.
pub fn before_journal_mode(_conn: &rusqlite::Connection) -> Result<(), ClientError> {
    Ok(())
}

/// The database holds the device's private keys and session token: mode 0600, created so
/// (SQLite gives its `-wal` and `-shm` files the database file's mode) or made so.
pub fn make_database_private(database: &Path) -> Result<(), ClientError> {
    use std::os::unix::fs::PermissionsExt as _;
    let private = |path: &Path| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(|e| {
            ClientError::Config(format!("cannot restrict access to {}: {e}", path.display()))
        })
    };
    files::private_file_options()
        .write(true)
        .create(true)
        .truncate(false)
        .open(database)
        .map_err(|e| ClientError::Config(format!("cannot create {}: {e}", database.display())))?;
    private(database)?;
    for suffix in ["-wal", "-shm"] {
        let mut name = database.as_os_str().to_owned();
        name.push(suffix);
        let path = std::path::PathBuf::from(name);
        if path.exists() {
            private(&path)?;
        }
    }
    Ok(())
}

/// How the client checks servers: the public web roots plus an optional extra CA.
pub type TlsConfig = Arc<rustls::ClientConfig>;

/// A TLS configuration trusting the public web roots plus an optional extra CA (a PEM file,
/// e.g. a self-signed server certificate).
pub fn tls_config(extra_ca: Option<&Path>) -> Result<TlsConfig, ClientError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = extra_ca {
        let pem = std::fs::read(path).map_err(|e| {
            ClientError::Config(format!("cannot read CA file {}: {e}", path.display()))
        })?;
        for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
            let cert = cert.map_err(|e| ClientError::Config(format!("bad CA file: {e}")))?;
            roots
                .add(cert)
                .map_err(|e| ClientError::Config(format!("bad CA certificate: {e}")))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ClientError::Config(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The HTTP client for one server.
pub fn http_client(tls: &TlsConfig) -> Result<reqwest::Client, ClientError> {
    reqwest::Client::builder()
        .use_preconfigured_tls((**tls).clone())
        .connect_timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| ClientError::Config(e.to_string()))
}

/// Whether a request never reached the server (so that another node may take it).
pub fn never_connected(error: &reqwest::Error) -> bool {
    error.is_connect()
}
