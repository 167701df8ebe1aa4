//! Rate limits: per account for submissions, per client address for authentication calls.

use std::net::IpAddr;
use std::num::NonZeroU32;

use governor::{DefaultKeyedRateLimiter, Quota};
use parley_protocol::{ErrorCode, UserId};

use crate::{ApiError, ServerConfig};

pub struct RateLimits {
    submissions: DefaultKeyedRateLimiter<UserId>,
    auth: DefaultKeyedRateLimiter<IpAddr>,
}

fn quota(per_second: u32, burst: u32) -> Quota {
    let rate = NonZeroU32::new(per_second.max(1)).unwrap_or(NonZeroU32::MIN);
    let burst = NonZeroU32::new(burst.max(per_second).max(1)).unwrap_or(NonZeroU32::MIN);
    Quota::per_second(rate).allow_burst(burst)
}

impl RateLimits {
    pub fn new(config: &ServerConfig) -> Self {
        RateLimits {
            submissions: DefaultKeyedRateLimiter::keyed(quota(
                config.submit_per_second,
                config.submit_burst,
            )),
            auth: DefaultKeyedRateLimiter::keyed(quota(config.auth_per_second, config.auth_burst)),
        }
    }

    pub fn check_submission(&self, user: &UserId) -> Result<(), ApiError> {
        self.submissions
            .check_key(user)
            .map_err(|_| ApiError::new(ErrorCode::RateLimited, "too many messages; slow down"))
    }

    pub fn check_auth(&self, address: IpAddr) -> Result<(), ApiError> {
        self.auth
            .check_key(&address)
            .map_err(|_| ApiError::new(ErrorCode::RateLimited, "too many requests; slow down"))
    }

    /// Forgets idle keys so the maps stay bounded.
    pub fn prune(&self) {
        self.submissions.retain_recent();
        self.auth.retain_recent();
    }
}
