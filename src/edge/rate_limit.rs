//! Per-client rate limits (governor, GCRA): one keyed limiter per class of endpoint. Going over
//! is a 429 with `Retry-After`, as a page or problem+json like every other error.

use std::hash::Hash;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::AppError;
use super::{AppState, client_ip};

pub struct KeyedLimiter<K: Hash + Eq + Clone> {
    limiter: DefaultKeyedRateLimiter<K>,
}

impl<K: Hash + Eq + Clone> KeyedLimiter<K> {
    pub fn per_minute(n: u32) -> Arc<Self> {
        Arc::new(Self::new(n))
    }

    fn new(per_minute: u32) -> Self {
        let n = NonZeroU32::new(per_minute).unwrap_or(NonZeroU32::MIN);
        Self {
            limiter: RateLimiter::keyed(Quota::per_minute(n)),
        }
    }

    pub fn check(&self, key: &K) -> Result<(), AppError> {
        self.wait(key).map_err(too_many)
    }

    /// Takes one request from the key's allowance, or says how long until there is one.
    fn wait(&self, key: &K) -> Result<(), std::time::Duration> {
        self.limiter
            .check_key(key)
            .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }

    /// Drops state for keys that are back to full allowance (memory stays bounded).
    pub fn prune(&self) {
        self.limiter.retain_recent();
    }
}

/// A 429 asking the client to come back after `wait`.
fn too_many(wait: std::time::Duration) -> AppError {
    AppError::too_many_requests(wait.as_secs() + 1)
}

pub type IpLimiter = KeyedLimiter<IpAddr>;

/// Failures per client IP (unknown API keys): past the allowance the IP is refused, before any
/// work, until its allowance is back. Successes cost nothing.
pub struct FailureLimiter {
    failures: IpLimiter,
    blocked_until: std::sync::Mutex<std::collections::HashMap<IpAddr, std::time::Instant>>,
}

impl FailureLimiter {
    pub fn per_minute(n: u32) -> Arc<Self> {
        Arc::new(Self {
            failures: KeyedLimiter::new(n),
            blocked_until: Default::default(),
        })
    }

    /// A 429 while the IP is over its allowance of failures.
    pub fn check(&self, ip: &IpAddr) -> Result<(), AppError> {
        let blocked = self.blocked_until.lock().expect("limiter lock");
        match blocked.get(ip) {
            Some(until) if *until > std::time::Instant::now() => Err(too_many(
                until.saturating_duration_since(std::time::Instant::now()),
            )),
            _ => Ok(()),
        }
    }

    /// Counts a failure; a 429 once the IP is over its allowance.
    pub fn failed(&self, ip: &IpAddr) -> Result<(), AppError> {
        self.failures.wait(ip).map_err(|wait| {
            self.blocked_until
                .lock()
                .expect("limiter lock")
                .insert(*ip, std::time::Instant::now() + wait);
            too_many(wait)
        })
    }

    pub fn prune(&self) {
        self.failures.prune();
        let now = std::time::Instant::now();
        self.blocked_until
            .lock()
            .expect("limiter lock")
            .retain(|_, until| *until > now);
    }
}

/// Applies `limiter` to the client's IP.
async fn limit_ip(state: &AppState, limiter: &IpLimiter, req: Request, next: Next) -> Response {
    let ip = client_ip::client_ip(req.headers(), req.extensions(), state.config.trust_proxy_headers);
    if let Some(ip) = ip
        && let Err(e) = limiter.check(&ip)
    {
        return e.into_response();
    }
    next.run(req).await
}

/// Middleware: the per-IP limit of public pages and forms.
pub async fn per_ip(State(state): State<AppState>, req: Request, next: Next) -> Response {
    limit_ip(&state, &state.limits.public, req, next).await
}

/// Middleware: the per-IP limit of `/healthz`, apart from the pages' so that a monitor behind a
/// busy NAT is not refused.
pub async fn health_per_ip(State(state): State<AppState>, req: Request, next: Next) -> Response {
    limit_ip(&state, &state.limits.health, req, next).await
}

/// Middleware: the per-IP limit of one-click unsubscribes (mailbox providers POST from few IPs).
pub async fn one_click_per_ip(State(state): State<AppState>, req: Request, next: Next) -> Response {
    limit_ip(&state, &state.limits.one_click, req, next).await
}
