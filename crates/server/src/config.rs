//! Server configuration.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::ServerError;

#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Key files (franking keys, the server's signing key) and, without `database_url`, the
    /// SQLite database. Nodes of one deployment share the same key files.
    pub data_dir: PathBuf,
    /// PostgreSQL instead of the embedded SQLite.
    pub database_url: Option<String>,
    /// NATS servers carrying delivery hints between nodes (in-process hints without).
    pub nats: Option<Vec<String>>,
    pub listen: SocketAddr,
    /// Where `/metrics` is served, apart from the API [default: loopback, the port after
    /// `listen`'s, or any free port when `listen`'s is 0]. Never on the public listener.
    pub metrics_listen: Option<SocketAddr>,
    pub tls: Option<TlsFiles>,
    /// Allow a non-loopback address without TLS (e.g. behind a TLS-terminating proxy).
    pub allow_plaintext_public: bool,
    pub max_frame_bytes: usize,
    pub max_group_members: usize,
    /// Undelivered items older than this are deleted; their devices are told they missed items.
    pub retention: Duration,
    pub session_ttl: Duration,
    /// How often a live connection checks that its session is still valid (expiry, and
    /// suspensions nobody could tell this node of). Suspensions through this node's console,
    /// another node's over NATS, or `parley admin` (over NATS, or through this node's local
    /// socket) end the connections at once.
    pub session_check: Duration,
    /// Sustained submissions per second per account, and the burst above it.
    pub submit_per_second: u32,
    pub submit_burst: u32,
    /// Registrations, logins and KeyPackage claims per second per client address.
    pub auth_per_second: u32,
    pub auth_burst: u32,
    /// Registrations per client address: a burst, refilled at so many an hour.
    pub registration_burst: u32,
    pub registrations_per_hour: u32,
    /// What one account may submit a minute (ciphertexts and Welcomes), in MiB; the whole
    /// budget may go at once.
    pub send_mib_per_minute: u32,
    /// Undelivered bytes one device's queue may hold (application messages; group changes may
    /// take it to twice this, so that a member can still be removed). Beyond it submissions to
    /// the device are refused with "the queue of NAME is full"; nothing queued is dropped.
    pub queue_mib_per_device: u32,
    /// Groups (1:1 chats included) an account may be in and still create another.
    pub max_groups_per_account: u32,
    /// Devices one account may have (linking past it is refused).
    pub max_devices_per_account: u32,
    /// Groups one account may create at once, and how many more an hour.
    pub group_burst: u32,
    pub groups_per_hour: u32,
    /// KeyPackage claims per second for one claimed account (by anyone), and the burst.
    pub claim_per_second: u32,
    pub claim_burst: u32,
    /// Names (and their look-alikes) nobody may register; see [`crate::reserved`].
    pub reserved_names: Vec<String>,
    /// Other origins that serve the web client and may call the API from a browser (CORS).
    pub web_origins: Vec<String>,
    /// Timeouts and connection caps of the API listener (against slowloris).
    pub transport: TransportLimits,
    /// Attachment sizes, the per-account quota and retention.
    pub attachments: crate::attachments::AttachmentLimits,
    /// Where attachment ciphertext is kept.
    pub object_storage: crate::attachments::ObjectStorage,
    /// Attachment bytes one account may upload a minute, in MiB (apart from messages).
    pub upload_mib_per_minute: u32,
}

impl ServerConfig {
    pub fn new(data_dir: PathBuf) -> Self {
        ServerConfig {
            data_dir,
            database_url: None,
            nats: None,
            listen: SocketAddr::from(([127, 0, 0, 1], 7878)),
            metrics_listen: None,
            tls: None,
            allow_plaintext_public: false,
            max_frame_bytes: parley_protocol::limits::MAX_FRAME_BYTES,
            max_group_members: parley_protocol::limits::DEFAULT_MAX_GROUP_MEMBERS,
            retention: Duration::from_secs(30 * 24 * 3600),
            session_ttl: Duration::from_secs(30 * 24 * 3600),
            session_check: Duration::from_secs(2),
            submit_per_second: 200,
            submit_burst: 2000,
            auth_per_second: 50,
            auth_burst: 500,
            registration_burst: 10,
            registrations_per_hour: 60,
            send_mib_per_minute: 64,
            queue_mib_per_device: 256,
            max_groups_per_account: 5000,
            max_devices_per_account: parley_protocol::limits::DEFAULT_MAX_DEVICES_PER_ACCOUNT,
            group_burst: 10,
            groups_per_hour: 20,
            claim_per_second: 1,
            claim_burst: 20,
            web_origins: Vec::new(),
            reserved_names: crate::reserved::DEFAULT_RESERVED
                .iter()
                .map(|s| s.to_string())
                .collect(),
            transport: TransportLimits::default(),
            attachments: crate::attachments::AttachmentLimits {
                max_bytes: parley_protocol::limits::DEFAULT_MAX_ATTACHMENT_BYTES,
                quota_bytes: parley_protocol::limits::DEFAULT_ATTACHMENT_QUOTA_BYTES,
                retention: Duration::from_secs(30 * 24 * 3600),
            },
            object_storage: crate::attachments::ObjectStorage::Local,
            upload_mib_per_minute: 1024,
        }
    }

    /// The metrics listener's address.
    pub fn metrics_address(&self) -> SocketAddr {
        self.metrics_listen.unwrap_or_else(|| {
            let port = match self.listen.port() {
                0 => 0,
                port => port.saturating_add(1),
            };
            SocketAddr::from(([127, 0, 0, 1], port))
        })
    }

    /// Refuses configurations that would expose plaintext HTTP to a network.
    pub fn check(&self) -> Result<(), ServerError> {
        let metrics = self.metrics_address();
        if !metrics.ip().is_loopback() && !self.allow_plaintext_public {
            return Err(ServerError::Config(format!(
                "refusing to serve metrics on {metrics}, which is not loopback: they are \
                 operational data, served without TLS; give --allow-plaintext-public if that \
                 network is private"
            )));
        }
        if self.tls.is_none() && !self.listen.ip().is_loopback() && !self.allow_plaintext_public {
            return Err(ServerError::Config(format!(
                "refusing to listen on {} without TLS: give --tls-cert and --tls-key, \
                 or --allow-plaintext-public behind a TLS proxy",
                self.listen
            )));
        }
        if self.max_frame_bytes > parley_protocol::limits::MAX_FRAME_BYTES {
            return Err(ServerError::Config(format!(
                "max frame size may not exceed {} bytes",
                parley_protocol::limits::MAX_FRAME_BYTES
            )));
        }
        if self.session_check.is_zero() || self.session_ttl.is_zero() {
            return Err(ServerError::Config(
                "session lifetime and check interval must be at least 1 second".into(),
            ));
        }
        if self.submit_per_second == 0
            || self.auth_per_second == 0
            || self.claim_per_second == 0
            || self.registrations_per_hour == 0
            || self.registration_burst == 0
            || self.send_mib_per_minute == 0
            || self.queue_mib_per_device == 0
            || self.max_groups_per_account == 0
            || self.max_devices_per_account == 0
            || self.group_burst == 0
            || self.groups_per_hour == 0
        {
            return Err(ServerError::Config(
                "rate limits must be at least 1 per second".into(),
            ));
        }
        self.transport.check()?;
        Ok(())
    }
}

/// Timeouts and connection caps of the API listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransportLimits {
    /// A request's header (and a new connection's first request) must arrive within this; it
    /// also bounds how long an HTTP/1 connection may wait between requests.
    pub header_timeout: Duration,
    /// A request's whole body must arrive within this.
    pub body_timeout: Duration,
    /// A connection on which nothing is read or written for this long is closed (live
    /// WebSocket connections excepted: they have their own liveness checks).
    pub idle_timeout: Duration,
    /// Open connections from one client address; those beyond are answered 503 and closed.
    pub max_connections_per_address: usize,
    /// Open connections in all; `None`: the file-descriptor limit less a reserve.
    pub max_connections: Option<usize>,
    /// Concurrent streams on one HTTP/2 connection.
    pub http2_max_streams: u32,
}

impl Default for TransportLimits {
    fn default() -> Self {
        TransportLimits {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(120),
            max_connections_per_address: 64,
            max_connections: None,
            http2_max_streams: 16,
        }
    }
}

/// File descriptors kept for the database, key files, the metrics listener and logs.
const DESCRIPTOR_RESERVE: usize = 256;

impl TransportLimits {
    /// The global connection cap: as configured, or below the process's file-descriptor limit
    /// (the soft `RLIMIT_NOFILE`, read from `/proc/self/limits`; 1024 where that is unknown).
    pub fn connection_cap(&self) -> usize {
        self.max_connections.unwrap_or_else(|| {
            let limit = std::fs::read_to_string("/proc/self/limits")
                .ok()
                .and_then(|text| open_files_limit(&text))
                .unwrap_or(1024);
            limit
                .saturating_sub(DESCRIPTOR_RESERVE.min(limit / 2))
                .max(1)
        })
    }

    fn check(&self) -> Result<(), ServerError> {
        if self.header_timeout.is_zero()
            || self.body_timeout.is_zero()
            || self.idle_timeout.is_zero()
        {
            return Err(ServerError::Config(
                "header, body and idle timeouts must be at least 1 second".into(),
            ));
        }
        if self.max_connections_per_address == 0
            || self.max_connections == Some(0)
            || self.http2_max_streams == 0
        {
            return Err(ServerError::Config(
                "connection and stream limits must be at least 1".into(),
            ));
        }
        Ok(())
    }
}

/// The soft limit in `/proc/self/limits`' "Max open files" line (`None` when unlimited).
fn open_files_limit(limits: &str) -> Option<usize> {
    limits
        .lines()
        .find_map(|line| line.strip_prefix("Max open files"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|soft| soft.parse().ok())
}

/// `parley server --config FILE`: the same settings as the command line, in TOML. Every key is
/// optional; command-line flags override the file.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub data: Option<PathBuf>,
    pub listen: Option<SocketAddr>,
    pub metrics_listen: Option<SocketAddr>,
    pub database_url: Option<String>,
    pub nats: Option<Vec<String>>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub allow_plaintext_public: Option<bool>,
    pub max_group_members: Option<usize>,
    pub max_frame_bytes: Option<usize>,
    pub retention_days: Option<u64>,
    pub rate_per_second: Option<u32>,
    pub auth_rate_per_second: Option<u32>,
    /// KeyPackage claims per second for one account (bursts of twenty times this).
    pub claim_rate_per_second: Option<u32>,
    /// Accounts one client address may register at once, and how many more an hour.
    pub registration_burst: Option<u32>,
    pub registrations_per_hour: Option<u32>,
    /// MiB one account may submit a minute.
    pub send_mib_per_minute: Option<u32>,
    /// MiB of undelivered messages one device's queue may hold.
    pub queue_mib_per_device: Option<u32>,
    /// Groups an account may be in and still create another.
    pub max_groups_per_account: Option<u32>,
    /// Devices one account may have.
    pub max_devices_per_account: Option<u32>,
    /// Groups one account may create at once, and how many more an hour.
    pub group_burst: Option<u32>,
    pub groups_per_hour: Option<u32>,
    /// How long a login lasts.
    pub session_ttl_seconds: Option<u64>,
    /// How often a live connection checks its session.
    pub session_check_seconds: Option<u64>,
    /// Names nobody may register, nor anything that looks like them (replaces the default list).
    pub reserved_names: Option<Vec<String>>,
    /// Origins that serve the web client elsewhere and may call the API (CORS).
    pub web_origins: Option<Vec<String>>,
    /// Transport limits; see [`TransportLimits`].
    pub header_timeout_seconds: Option<u64>,
    pub body_timeout_seconds: Option<u64>,
    pub idle_timeout_seconds: Option<u64>,
    pub max_connections_per_address: Option<usize>,
    pub max_connections: Option<usize>,
    pub http2_max_streams: Option<u32>,
    /// Largest attachment, in MiB.
    pub max_attachment_mib: Option<u64>,
    /// MiB of attachments one account may have stored at once.
    pub attachment_quota_mib: Option<u64>,
    /// Days an attachment is kept for devices that have not fetched it.
    pub attachment_retention_days: Option<u64>,
    /// MiB of attachments one account may upload a minute.
    pub upload_mib_per_minute: Option<u32>,
    /// S3-compatible storage for attachments (several nodes): endpoint URL, bucket, region.
    /// Credentials come from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY.
    pub s3_endpoint: Option<String>,
    pub s3_bucket: Option<String>,
    pub s3_region: Option<String>,
}

impl FileConfig {
    /// The transport limits this file sets, over `defaults`.
    pub fn transport(&self, defaults: TransportLimits) -> TransportLimits {
        let seconds = |value: Option<u64>, default: Duration| {
            value.map(Duration::from_secs).unwrap_or(default)
        };
        TransportLimits {
            header_timeout: seconds(self.header_timeout_seconds, defaults.header_timeout),
            body_timeout: seconds(self.body_timeout_seconds, defaults.body_timeout),
            idle_timeout: seconds(self.idle_timeout_seconds, defaults.idle_timeout),
            max_connections_per_address: self
                .max_connections_per_address
                .unwrap_or(defaults.max_connections_per_address),
            max_connections: self.max_connections.or(defaults.max_connections),
            http2_max_streams: self.http2_max_streams.unwrap_or(defaults.http2_max_streams),
        }
    }
}

impl FileConfig {
    pub fn parse(text: &str) -> Result<FileConfig, ServerError> {
        toml::from_str(text).map_err(|e| ServerError::Config(format!("configuration file: {e}")))
    }

    pub fn load(path: &std::path::Path) -> Result<FileConfig, ServerError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ServerError::Config(format!("cannot read {}: {e}", path.display())))?;
        Self::parse(&text)
    }
}

/// An origin as a browser sends it: scheme, host and optional port, nothing else.
pub fn check_web_origin(origin: &str) -> Result<(), String> {
    let rest = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"))
        .ok_or_else(|| format!("web origin must start with https:// or http://: {origin}"))?;
    let valid = !rest.is_empty()
        && rest
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'));
    if valid {
        Ok(())
    } else {
        Err(format!(
            "web origin must be scheme://host[:port] without a path: {origin}"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sample_configuration_parses() {
        let sample = include_str!("../../../docs/parley.toml");
        let config = FileConfig::parse(sample).unwrap();
        assert_eq!(
            config.listen,
            Some(SocketAddr::from(([127, 0, 0, 1], 7878)))
        );
        assert_eq!(config.max_group_members, Some(10_000));
        assert_eq!(config.max_devices_per_account, Some(10));
        assert!(config.database_url.is_none());
    }

    #[test]
    fn the_open_files_limit_is_read_from_proc_limits() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max open files            20000                524288               files\n";
        assert_eq!(open_files_limit(limits), Some(20000));
        assert_eq!(
            open_files_limit("Max open files            unlimited            unlimited"),
            None
        );
        let cap = TransportLimits::default().connection_cap();
        assert!(cap >= 1, "{cap}");
        let set = TransportLimits {
            max_connections: Some(7),
            ..TransportLimits::default()
        };
        assert_eq!(set.connection_cap(), 7);
    }

    #[test]
    fn transport_limits_come_from_the_file() {
        let file = FileConfig::parse(
            "header_timeout_seconds = 1\nbody_timeout_seconds = 2\nhttp2_max_streams = 4\n",
        )
        .unwrap();
        let limits = file.transport(TransportLimits::default());
        assert_eq!(limits.header_timeout, Duration::from_secs(1));
        assert_eq!(limits.body_timeout, Duration::from_secs(2));
        assert_eq!(limits.idle_timeout, Duration::from_secs(120));
        assert_eq!(limits.http2_max_streams, 4);
        assert_eq!(limits.max_connections_per_address, 64);
    }

    #[test]
    fn unknown_keys_are_errors() {
        assert!(FileConfig::parse("lisen = \"127.0.0.1:1\"").is_err());
    }

    #[test]
    fn web_origins_are_scheme_host_and_port_only() {
        assert!(check_web_origin("https://chat.example.org").is_ok());
        assert!(check_web_origin("http://127.0.0.1:8080").is_ok());
        assert!(check_web_origin("https://chat.example.org/").is_err());
        assert!(check_web_origin("chat.example.org").is_err());
        assert!(check_web_origin("https://").is_err());
        assert!(check_web_origin("https://a.org, https://b.org").is_err());
    }
}
