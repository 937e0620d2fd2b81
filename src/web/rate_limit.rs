//! Per-client rate limits (governor, GCRA): one keyed limiter per class of endpoint. Going over
//! is a 429 with `Retry-After`, as a page or problem+json like every other error.

use std::hash::Hash;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use super::error::AppError;

pub struct KeyedLimiter<K: Hash + Eq + Clone> {
    limiter: DefaultKeyedRateLimiter<K>,
}

impl<K: Hash + Eq + Clone> KeyedLimiter<K> {
    pub fn per_minute(n: u32) -> Arc<Self> {
        let n = NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN);
        Arc::new(Self {
            limiter: RateLimiter::keyed(Quota::per_minute(n)),
        })
    }

    pub fn check(&self, key: &K) -> Result<(), AppError> {
        self.limiter.check_key(key).map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            AppError::too_many_requests(wait.as_secs() + 1)
        })
    }

    /// Drops state for keys that are back to full allowance (memory stays bounded).
    pub fn prune(&self) {
        self.limiter.retain_recent();
    }
}

pub type IpLimiter = KeyedLimiter<IpAddr>;
