//! Rate limits: per account for submissions, their bytes, new groups and reads; per client
//! address for authentication calls, registrations and failed tokens; per claimed account for
//! KeyPackage claims.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use governor::{DefaultKeyedRateLimiter, Quota};
use parley_protocol::{ErrorCode, UserId};

use crate::{ApiError, ServerConfig};

pub struct RateLimits {
    submissions: DefaultKeyedRateLimiter<UserId>,
    auth: DefaultKeyedRateLimiter<IpAddr>,
    /// Registrations per client address: a small burst, then a few an hour.
    registrations: DefaultKeyedRateLimiter<IpAddr>,
    /// KiB submitted per account, refilled over a minute.
    sent_kib: DefaultKeyedRateLimiter<UserId>,
    /// KiB of attachments uploaded per account, refilled over a minute.
    uploaded_kib: DefaultKeyedRateLimiter<UserId>,
    /// Groups created per account: a small burst, then a few an hour.
    groups: DefaultKeyedRateLimiter<UserId>,
    /// KeyPackage claims per claimed account, whoever claims: one-time packages cannot be
    /// drained faster than this.
    claims: DefaultKeyedRateLimiter<UserId>,
    /// Reads per account (queue pages, acknowledgements, lookups, live connections): a queue
    /// page may be megabytes, so reading is not free either.
    reads: DefaultKeyedRateLimiter<UserId>,
    /// Bearer tokens the store did not know, per client address; an address past it is
    /// refused for a while before its tokens are looked up.
    token_failures: DefaultKeyedRateLimiter<IpAddr>,
    /// Typing indicators per account.
    typing: DefaultKeyedRateLimiter<UserId>,
    failing: Mutex<HashMap<IpAddr, Instant>>,
}

/// Reads per second per account, and the burst.
const READS_PER_SECOND: u32 = 100;
const READ_BURST: u32 = 1000;
/// Unknown tokens per second per address, the burst, and how long an address past them waits.
const TOKEN_FAILURES_PER_SECOND: u32 = 20;
const TOKEN_FAILURE_BURST: u32 = 200;
const FAILING_FOR: Duration = Duration::from_secs(10);

/// The key of a client address's limits: an IPv4 address, or an IPv6 address's /64 (one
/// subscriber usually holds a whole /64, and could otherwise take a fresh address per request).
fn per_network(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V4(_) => address,
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(std::net::Ipv6Addr::from(bits))
        }
    }
}

fn quota(per_second: u32, burst: u32) -> Quota {
    let rate = NonZeroU32::new(per_second.max(1)).unwrap_or(NonZeroU32::MIN);
    let burst = NonZeroU32::new(burst.max(per_second).max(1)).unwrap_or(NonZeroU32::MIN);
    Quota::per_second(rate).allow_burst(burst)
}

/// A burst, refilled at `per_hour` an hour.
fn per_hour(per_hour: u32, burst: u32) -> Quota {
    Quota::with_period(Duration::from_secs(3600) / per_hour.max(1))
        .unwrap_or_else(|| Quota::per_hour(NonZeroU32::MIN))
        .allow_burst(NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN))
}

impl RateLimits {
    pub fn new(config: &ServerConfig) -> Self {
        RateLimits {
            submissions: DefaultKeyedRateLimiter::keyed(quota(
                config.submit_per_second,
                config.submit_burst,
            )),
            auth: DefaultKeyedRateLimiter::keyed(quota(config.auth_per_second, config.auth_burst)),
            registrations: DefaultKeyedRateLimiter::keyed(per_hour(
                config.registrations_per_hour,
                config.registration_burst,
            )),
            sent_kib: DefaultKeyedRateLimiter::keyed({
                let kib = NonZeroU32::new(config.send_mib_per_minute.saturating_mul(1024))
                    .unwrap_or(NonZeroU32::MIN);
                Quota::per_minute(kib).allow_burst(kib)
            }),
            uploaded_kib: DefaultKeyedRateLimiter::keyed({
                let kib = NonZeroU32::new(config.upload_mib_per_minute.saturating_mul(1024))
                    .unwrap_or(NonZeroU32::MIN);
                Quota::per_minute(kib).allow_burst(kib)
            }),
            groups: DefaultKeyedRateLimiter::keyed(per_hour(
                config.groups_per_hour,
                config.group_burst,
            )),
            claims: DefaultKeyedRateLimiter::keyed(quota(
                config.claim_per_second,
                config.claim_burst,
            )),
            reads: DefaultKeyedRateLimiter::keyed(quota(READS_PER_SECOND, READ_BURST)),
            token_failures: DefaultKeyedRateLimiter::keyed(quota(
                TOKEN_FAILURES_PER_SECOND,
                TOKEN_FAILURE_BURST,
            )),
            typing: DefaultKeyedRateLimiter::keyed(quota(
                parley_protocol::limits::TYPING_PER_SECOND,
                parley_protocol::limits::TYPING_BURST,
            )),
            failing: Mutex::new(HashMap::new()),
        }
    }

    pub fn check_typing(&self, user: &UserId) -> Result<(), ApiError> {
        self.typing.check_key(user).map_err(|_| {
            ApiError::new(
                ErrorCode::RateLimited,
                "too many typing indicators; slow down",
            )
        })
    }

    pub fn check_read(&self, user: &UserId) -> Result<(), ApiError> {
        self.reads
            .check_key(user)
            .map_err(|_| ApiError::new(ErrorCode::RateLimited, "too many requests; slow down"))
    }

    /// Refuses an address that recently sent too many unknown tokens, before its token costs
    /// a lookup.
    pub fn check_token_address(&self, address: IpAddr) -> Result<(), ApiError> {
        let failing = self.failing.lock().unwrap_or_else(|e| e.into_inner());
        match failing.get(&per_network(address)) {
            Some(until) if *until > Instant::now() => Err(ApiError::new(
                ErrorCode::RateLimited,
                "too many unknown tokens from this address; retry later",
            )),
            _ => Ok(()),
        }
    }

    /// Counts an unknown token against its address.
    pub fn note_token_failure(&self, address: IpAddr) {
        let network = per_network(address);
        if self.token_failures.check_key(&network).is_err() {
            let mut failing = self.failing.lock().unwrap_or_else(|e| e.into_inner());
            failing.insert(network, Instant::now() + FAILING_FOR);
        }
    }

    pub fn check_submission(&self, user: &UserId) -> Result<(), ApiError> {
        self.submissions
            .check_key(user)
            .map_err(|_| ApiError::new(ErrorCode::RateLimited, "too many messages; slow down"))
    }

    pub fn check_auth(&self, address: IpAddr) -> Result<(), ApiError> {
        self.auth
            .check_key(&per_network(address))
            .map_err(|_| ApiError::new(ErrorCode::RateLimited, "too many requests; slow down"))
    }

    pub fn check_registration(&self, address: IpAddr) -> Result<(), ApiError> {
        self.registrations
            .check_key(&per_network(address))
            .map_err(|_| {
                ApiError::new(
                    ErrorCode::RateLimited,
                    "too many registrations from this address; retry later",
                )
            })
    }

    /// Charges `bytes` to the account's budget of bytes a minute.
    pub fn check_sent_bytes(&self, user: &UserId, bytes: usize) -> Result<(), ApiError> {
        let kib = u32::try_from(bytes.div_ceil(1024)).unwrap_or(u32::MAX);
        let kib = NonZeroU32::new(kib).unwrap_or(NonZeroU32::MIN);
        match self.sent_kib.check_key_n(user, kib) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) | Err(_) => Err(ApiError::new(
                ErrorCode::RateLimited,
                "sending too much: this account's byte budget for the minute is spent; retry later",
            )),
        }
    }

    /// Charges `bytes` of an attachment part to the account's upload budget for the minute.
    pub fn check_uploaded_bytes(&self, user: &UserId, bytes: usize) -> Result<(), ApiError> {
        let kib = u32::try_from(bytes.div_ceil(1024)).unwrap_or(u32::MAX);
        let kib = NonZeroU32::new(kib).unwrap_or(NonZeroU32::MIN);
        match self.uploaded_kib.check_key_n(user, kib) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) | Err(_) => Err(ApiError::new(
                ErrorCode::RateLimited,
                "uploading too much: this account's upload budget for the minute is spent; \
                 retry later",
            )),
        }
    }

    pub fn check_group_creation(&self, user: &UserId) -> Result<(), ApiError> {
        self.groups.check_key(user).map_err(|_| {
            ApiError::new(
                ErrorCode::RateLimited,
                "too many new groups from this account; retry later",
            )
        })
    }

    pub fn check_claim(
        &self,
        target: &UserId,
        name: &parley_protocol::Username,
    ) -> Result<(), ApiError> {
        self.claims.check_key(target).map_err(|_| {
            ApiError::new(
                ErrorCode::RateLimited,
                format!("too many key package claims for {name}; retry later"),
            )
        })
    }

    /// Forgets idle keys so the maps stay bounded.
    pub fn prune(&self) {
        self.submissions.retain_recent();
        self.auth.retain_recent();
        self.registrations.retain_recent();
        self.sent_kib.retain_recent();
        self.uploaded_kib.retain_recent();
        self.groups.retain_recent();
        self.claims.retain_recent();
        self.reads.retain_recent();
        self.token_failures.retain_recent();
        self.typing.retain_recent();
        let now = Instant::now();
        self.failing
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|_, until| *until > now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ipv6_subscriber_is_limited_as_one_address_per_64() {
        let one: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let same_64: IpAddr = "2001:db8:1:2:ffff:ffff:ffff:ffff".parse().unwrap();
        let next_64: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(per_network(one), per_network(same_64));
        assert_ne!(per_network(one), per_network(next_64));
        let v4: IpAddr = "192.0.2.7".parse().unwrap();
        assert_eq!(per_network(v4), v4);
    }
}
