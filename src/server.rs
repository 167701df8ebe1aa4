//! `parley server`: the configuration file and flags become a `ServerConfig`, then the server
//! runs until Ctrl+C or SIGTERM.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Result};
use parley_server::{ServerConfig, TlsFiles};

use crate::args::ServerArgs;

pub async fn run(args: ServerArgs) -> Result<()> {
    parley_server::run(config(args)?, shutdown()).await?;
    Ok(())
}

/// Longest retention and session lifetime a configuration may ask for (a hundred years).
const MAX_DAYS: u64 = 36_500;

/// Flags over the file over the defaults.
fn config(args: ServerArgs) -> Result<ServerConfig> {
    let args_attachments = AttachmentArgs {
        max_mib: args.max_attachment_mib,
        quota_mib: args.attachment_quota_mib,
        retention_days: args.attachment_days,
        upload_mib_per_minute: None,
        s3_endpoint: args.s3_endpoint.clone(),
        s3_bucket: args.s3_bucket.clone(),
        s3_region: args.s3_region.clone(),
    };
    let file = match &args.config {
        Some(path) => parley_server::config::FileConfig::load(path)?,
        None => Default::default(),
    };
    let transport = file.transport(Default::default());
    let file_attachments = AttachmentArgs {
        max_mib: file.max_attachment_mib,
        quota_mib: file.attachment_quota_mib,
        retention_days: file.attachment_retention_days,
        upload_mib_per_minute: file.upload_mib_per_minute,
        s3_endpoint: file.s3_endpoint.clone(),
        s3_bucket: file.s3_bucket.clone(),
        s3_region: file.s3_region.clone(),
    };
    let data = args
        .data
        .or(file.data)
        .unwrap_or_else(|| PathBuf::from("parley-data"));
    let mut config = ServerConfig::new(data);
    config.transport = transport;
    let defaults = ServerConfig::new(PathBuf::new());
    config.listen = args.listen.or(file.listen).unwrap_or(defaults.listen);
    config.metrics_listen = args.metrics_listen.or(file.metrics_listen);
    config.database_url = args.database_url.or(file.database_url);
    config.nats = args.nats.or(file.nats);
    config.tls = match (
        args.tls_cert.or(file.tls_cert),
        args.tls_key.or(file.tls_key),
    ) {
        (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
        (None, None) => None,
        _ => bail!("give both a TLS certificate and its key, or neither"),
    };
    config.allow_plaintext_public =
        args.allow_plaintext_public || file.allow_plaintext_public.unwrap_or(false);
    config.max_group_members = args
        .max_group_members
        .or(file.max_group_members)
        .unwrap_or(defaults.max_group_members);
    config.max_frame_bytes = args
        .max_frame_bytes
        .or(file.max_frame_bytes)
        .unwrap_or(defaults.max_frame_bytes);
    if let Some(days) = args.retention_days.or(file.retention_days) {
        // Bounded: a huge value wrapped (days * 86400, then milliseconds as i64) to a cut-off in
        // the future, and the first expiry run deleted every queued message.
        if days > MAX_DAYS {
            bail!("a retention of {days} days is too long (at most {MAX_DAYS})");
        }
        config.retention = Duration::from_secs(days * 24 * 3600);
    }
    // A rate allows bursts of ten times itself.
    let rate = |flag: Option<u32>, file: Option<u32>, default: u32| {
        let rate = flag.or(file).unwrap_or(default);
        (rate, rate.saturating_mul(10))
    };
    (config.submit_per_second, config.submit_burst) = rate(
        args.rate_per_second,
        file.rate_per_second,
        defaults.submit_per_second,
    );
    (config.auth_per_second, config.auth_burst) = rate(
        args.auth_rate_per_second,
        file.auth_rate_per_second,
        defaults.auth_per_second,
    );
    config.registration_burst = args
        .registration_burst
        .or(file.registration_burst)
        .unwrap_or(defaults.registration_burst);
    config.registrations_per_hour = args
        .registrations_per_hour
        .or(file.registrations_per_hour)
        .unwrap_or(defaults.registrations_per_hour);
    config.send_mib_per_minute = args
        .send_mib_per_minute
        .or(file.send_mib_per_minute)
        .unwrap_or(defaults.send_mib_per_minute);
    config.queue_mib_per_device = args
        .queue_mib_per_device
        .or(file.queue_mib_per_device)
        .unwrap_or(defaults.queue_mib_per_device);
    config.max_groups_per_account = args
        .max_groups_per_account
        .or(file.max_groups_per_account)
        .unwrap_or(defaults.max_groups_per_account);
    config.max_devices_per_account = args
        .max_devices_per_account
        .or(file.max_devices_per_account)
        .unwrap_or(defaults.max_devices_per_account);
    config.group_burst = args
        .group_burst
        .or(file.group_burst)
        .unwrap_or(defaults.group_burst);
    config.groups_per_hour = args
        .groups_per_hour
        .or(file.groups_per_hour)
        .unwrap_or(defaults.groups_per_hour);
    attachments(&mut config, args_attachments, file_attachments)?;
    if let Some(seconds) = file.session_ttl_seconds {
        // Bounded for the same reason: expiry is now plus this, in milliseconds as i64.
        if seconds > MAX_DAYS * 24 * 3600 {
            bail!("a session lifetime of {seconds} s is too long (at most {MAX_DAYS} days)");
        }
        config.session_ttl = Duration::from_secs(seconds);
    }
    if let Some(rate) = file.claim_rate_per_second {
        (config.claim_per_second, config.claim_burst) = (rate, rate.saturating_mul(20));
    }
    config.web_origins = if args.web_origins.is_empty() {
        file.web_origins.unwrap_or_default()
    } else {
        args.web_origins.clone()
    };
    for origin in &config.web_origins {
        parley_server::config::check_web_origin(origin).map_err(anyhow::Error::msg)?;
    }
    if let Some(names) = file.reserved_names {
        config.reserved_names = names;
    }
    if let Some(seconds) = file.session_check_seconds {
        config.session_check = Duration::from_secs(seconds);
    }
    Ok(config)
}

struct AttachmentArgs {
    max_mib: Option<u64>,
    quota_mib: Option<u64>,
    retention_days: Option<u64>,
    upload_mib_per_minute: Option<u32>,
    s3_endpoint: Option<String>,
    s3_bucket: Option<String>,
    s3_region: Option<String>,
}

/// Attachment limits and storage: flags over the file over the defaults.
fn attachments(
    config: &mut ServerConfig,
    args: AttachmentArgs,
    file: AttachmentArgs,
) -> Result<()> {
    const MAX_MIB: u64 = 1 << 30;
    if let Some(mib) = args.max_mib.or(file.max_mib) {
        if mib == 0 || mib > MAX_MIB {
            bail!("the largest attachment must be 1 to {MAX_MIB} MiB");
        }
        config.attachments.max_bytes = mib << 20;
    }
    if let Some(mib) = args.quota_mib.or(file.quota_mib) {
        if mib > MAX_MIB {
            bail!("an attachment quota is at most {MAX_MIB} MiB");
        }
        config.attachments.quota_bytes = mib << 20;
    }
    if let Some(days) = args.retention_days.or(file.retention_days) {
        if days == 0 || days > MAX_DAYS {
            bail!("attachments are kept 1 to {MAX_DAYS} days");
        }
        config.attachments.retention = Duration::from_secs(days * 24 * 3600);
    }
    if let Some(mib) = file.upload_mib_per_minute {
        config.upload_mib_per_minute = mib;
    }
    let endpoint = args.s3_endpoint.or(file.s3_endpoint);
    let bucket = args.s3_bucket.or(file.s3_bucket);
    config.object_storage = match (endpoint, bucket) {
        (Some(endpoint), Some(bucket)) => parley_server::attachments::ObjectStorage::S3 {
            endpoint,
            bucket,
            region: args
                .s3_region
                .or(file.s3_region)
                .unwrap_or_else(|| "us-east-1".into()),
        },
        (None, None) => parley_server::attachments::ObjectStorage::Local,
        _ => bail!("S3 storage needs both an endpoint and a bucket"),
    };
    Ok(())
}

/// Resolves on Ctrl+C or SIGTERM (systemd's stop).
async fn shutdown() {
    let mut terminate =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async {
            match terminate.as_mut() {
                Some(s) => { s.recv().await; }
                None => std::future::pending().await,
            }
        } => {}
    }
    tracing::info!("shutting down");
}
