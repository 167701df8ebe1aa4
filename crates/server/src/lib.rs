//! Parley's server: accounts and device authentication, the KeyPackage directory, and the MLS
//! Delivery Service, served over HTTP (request/response) and a WebSocket (live hints).
//!
//! Layers, top to bottom: [`http`] (handlers: decode, call a service, encode) → services
//! ([`accounts`], [`keypackages`], [`delivery`]) → [`parley_store::Store`]. Handlers never touch
//! the store; only services do.
#![forbid(unsafe_code)]

pub mod accounts;
pub mod admin;
pub mod attachments;
pub mod config;
pub mod delivery;
pub mod error;
pub mod fanout;
pub mod franking;
pub mod http;
pub mod keypackages;
pub mod links;
pub mod live;
mod local;
pub mod metrics;
pub mod moderation;
pub mod notify;
pub mod public_state;
pub mod rate;
pub mod recovery;
pub mod reported_files;
pub mod reserved;
pub mod rotation;
pub mod transport;
mod typing;
pub mod web_client;

use std::sync::Arc;

pub use config::{ServerConfig, TlsFiles};
pub use error::{ApiError, ServerError};
use parley_store::{PgStore, SqliteOptions, SqliteStore, Store};

/// Everything a request handler can reach.
pub struct App {
    pub config: ServerConfig,
    pub accounts: accounts::Accounts,
    pub key_packages: keypackages::KeyPackages,
    pub links: links::Links,
    pub attachments: attachments::Attachments,
    pub recovery: recovery::Recovery,
    pub delivery: delivery::Delivery,
    pub fanout: Arc<dyn fanout::Fanout>,
    pub metrics: Arc<metrics::Metrics>,
    pub rates: rate::RateLimits,
    pub moderation: moderation::Moderation,
    pub identity: Arc<moderation::ServerIdentity>,
    /// Live connections per device and per account.
    pub(crate) live: live::LiveConnections,
}

impl App {
    pub fn new(
        config: ServerConfig,
        store: Arc<dyn Store>,
        fanout: Arc<dyn fanout::Fanout>,
    ) -> Result<Arc<App>, ServerError> {
        let keys = Arc::new(
            franking::FrankingKeys::open(&config.data_dir)
                .map_err(|e| ServerError::Config(e.to_string()))?,
        );
        let identity = Arc::new(moderation::ServerIdentity::open(&config.data_dir)?);
        let objects = attachments::open_objects(&config.object_storage, &config.data_dir)?;
        let metrics = Arc::new(metrics::Metrics::default());
        Ok(Arc::new(App {
            attachments: attachments::Attachments::new(
                store.clone(),
                objects.clone(),
                config.attachments.clone(),
            ),
            accounts: accounts::Accounts::new(
                store.clone(),
                config.session_ttl,
                reserved::ReservedNames::new(&config.reserved_names),
            ),
            key_packages: keypackages::KeyPackages::new(store.clone()),
            links: links::Links::new(store.clone(), config.max_devices_per_account),
            recovery: recovery::Recovery::new(store.clone(), config.max_devices_per_account),
            delivery: delivery::Delivery::new(
                store.clone(),
                fanout.clone(),
                config.max_group_members,
                delivery::Budgets {
                    queue_bytes: u64::from(config.queue_mib_per_device) << 20,
                    groups_per_account: u64::from(config.max_groups_per_account),
                },
                keys.clone(),
                identity.external_sender(),
                metrics.deliveries.clone(),
            ),
            moderation: moderation::Moderation::new(store, keys, identity.clone(), fanout.clone())
                .with_objects(objects.clone()),
            identity,
            fanout,
            metrics,
            rates: rate::RateLimits::new(&config),
            live: live::LiveConnections::default(),
            config,
        }))
    }

    /// A submission from either transport, rate-limited and counted in the metrics.
    pub(crate) async fn submit(
        &self,
        device: &accounts::Authenticated,
        submit: parley_protocol::v1::Submit,
    ) -> Result<parley_protocol::v1::SubmitResponse, ApiError> {
        self.rates.check_submission(&device.0.user_id)?;
        self.submit_checked(device, submit, false).await
    }

    /// A submission whose rate was checked already (before its body was decoded), and whose
    /// bytes were charged to the account's budget already if `charged` (by the request's
    /// `Content-Length`, before the body was read).
    pub(crate) async fn submit_checked(
        &self,
        device: &accounts::Authenticated,
        submit: parley_protocol::v1::Submit,
        charged: bool,
    ) -> Result<parley_protocol::v1::SubmitResponse, ApiError> {
        let bytes = submit.mls_message.len() + submit.welcome.as_ref().map_or(0, Vec::len);
        let budget = match charged {
            true => Ok(()),
            false => self.rates.check_sent_bytes(&device.0.user_id, bytes),
        };
        let result = match budget {
            Ok(()) => self.delivery.submit(device, submit).await,
            Err(e) => Err(e),
        };
        match &result {
            Ok(accepted) if !accepted.duplicate => self.metrics.messages_in.inc(),
            Ok(_) => {}
            Err(e) => {
                self.metrics
                    .rejections
                    .with_label_values(&[format!("{:?}", e.code()).as_str()])
                    .inc();
                tracing::debug!(device = %device.0.device_id, code = ?e.code(), "submission refused");
            }
        }
        result
    }
}

/// Opens the embedded SQLite store in the configured data directory.
pub fn open_sqlite_store(config: &ServerConfig) -> Result<Arc<dyn Store>, ServerError> {
    let store = SqliteStore::open(&config.data_dir, SqliteOptions::default())?;
    Ok(Arc::new(store))
}

/// Moderation on a data directory, for the `parley admin` commands (the server may be running
/// on the same directory: SQLite serializes the writers). What the nodes must hear at once (a
/// suspension ends live connections, a removal proposal is a hint) is announced over `nats` when
/// the deployment uses it, else to the nodes running on `data_dir` on this machine, by
/// [`moderation::Moderation::finish_announcements`].
pub async fn open_moderation(
    data_dir: &std::path::Path,
    database_url: Option<&str>,
    nats: Option<&[String]>,
) -> Result<moderation::Moderation, ServerError> {
    // Opening an empty directory would create a new, empty server there: a mistyped --data.
    let marker = match database_url {
        Some(_) => data_dir.join(franking::KEY_FILE),
        None => data_dir.join(parley_store::SQLITE_DATABASE_FILE),
    };
    if !marker.exists() {
        return Err(ServerError::Config(format!(
            "{} holds no server data (no {}): give --data the server's data directory",
            data_dir.display(),
            marker.file_name().unwrap_or_default().to_string_lossy()
        )));
    }
    let store: Arc<dyn Store> = match database_url {
        Some(url) => Arc::new(PgStore::connect(url).await?),
        None => Arc::new(SqliteStore::open(data_dir, SqliteOptions::default())?),
    };
    let keys = Arc::new(
        franking::FrankingKeys::open(data_dir).map_err(|e| ServerError::Config(e.to_string()))?,
    );
    let identity = Arc::new(moderation::ServerIdentity::open(data_dir)?);
    let announcer = Arc::new(fanout::AnnouncingFanout::new(
        data_dir.to_owned(),
        nats.map(<[String]>::to_vec),
    ));
    Ok(moderation::Moderation::announcing(
        store, keys, identity, announcer,
    ))
}

/// Runs the server until `shutdown` resolves.
pub async fn run(
    config: ServerConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    config.check()?;
    let store: Arc<dyn Store> = match &config.database_url {
        Some(url) => Arc::new(PgStore::connect(url).await?),
        None => open_sqlite_store(&config)?,
    };
    let fanout: Arc<dyn fanout::Fanout> = match &config.nats {
        Some(servers) => Arc::new(fanout::NatsFanout::connect(servers).await?),
        None => Arc::new(fanout::InProcessFanout::default()),
    };
    let app = App::new(config, store, fanout)?;
    // `parley admin` on this machine tells the node through it; removed when the node stops.
    let _socket = local::listen(&app);
    http::serve(app, shutdown).await
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
