//! Parley's server: accounts and device authentication, the KeyPackage directory, and the MLS
//! Delivery Service, served over HTTP (request/response) and a WebSocket (live hints).
//!
//! Layers, top to bottom: [`http`] (handlers: decode, call a service, encode) → services
//! ([`accounts`], [`keypackages`], [`delivery`]) → [`parley_store::Store`]. Handlers never touch
//! the store; only services do.
#![forbid(unsafe_code)]

pub mod accounts;
pub mod config;
pub mod delivery;
pub mod error;
pub mod http;
pub mod keypackages;
pub mod notify;
pub mod public_state;
pub mod rate;

use std::sync::Arc;

pub use config::{ServerConfig, TlsFiles};
pub use error::{ApiError, ServerError};
use parley_store::{SqliteOptions, SqliteStore, Store};

/// Everything a request handler can reach.
pub struct App {
    pub config: ServerConfig,
    pub accounts: accounts::Accounts,
    pub key_packages: keypackages::KeyPackages,
    pub delivery: delivery::Delivery,
    pub notifier: Arc<notify::Notifier>,
    pub rates: rate::RateLimits,
}

impl App {
    pub fn new(config: ServerConfig, store: Arc<dyn Store>) -> Arc<App> {
        let notifier = Arc::new(notify::Notifier::default());
        Arc::new(App {
            accounts: accounts::Accounts::new(store.clone(), config.session_ttl),
            key_packages: keypackages::KeyPackages::new(store.clone()),
            delivery: delivery::Delivery::new(store, notifier.clone(), config.max_group_members),
            notifier,
            rates: rate::RateLimits::new(&config),
            config,
        })
    }
}

/// Opens the embedded SQLite store in the configured data directory.
pub fn open_sqlite_store(config: &ServerConfig) -> Result<Arc<dyn Store>, ServerError> {
    let store = SqliteStore::open(&config.data_dir, SqliteOptions::default())?;
    Ok(Arc::new(store))
}

/// Runs the server until `shutdown` resolves.
pub async fn run(
    config: ServerConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    config.check()?;
    let store = open_sqlite_store(&config)?;
    let app = App::new(config, store);
    http::serve(app, shutdown).await
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
