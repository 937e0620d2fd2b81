//! The outbox worker: claim due rows with a lease, let go of the database, check the recipient
//! may still be mailed, render, stamp, sign, send, then record the outcome.
//!
//! A temporary failure (4xx, relay down) is retried with exponential backoff and jitter; a
//! permanent one is recorded as failed, and a refused mailbox (550/551/553) is suppressed
//! (GY-6). A worker that dies leaves its lease to expire, after which the rows are due again:
//! delivery is at-least-once, duplicates bounded by what was in flight.

mod payload;

pub use payload::Payload;

use std::num::NonZeroU32;
use std::time::Duration;

use futures::StreamExt;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use rand::Rng;
use tokio::sync::watch;

use crate::app::AppState;
use crate::domain::EmailAddress;
use crate::mail::SendError;
use crate::store::outbox::{self, ClaimedMessage, Outcome};
use crate::store::suppressions::{self, SuppressionReason};

/// Runs until `shutdown` turns true, then finishes the batch in hand and returns.
pub async fn run(state: AppState, mut shutdown: watch::Receiver<bool>) {
    let owner = format!("{}-{}", hostname_hint(), uuid::Uuid::new_v4().simple());
    let cfg = state.config.delivery.clone();
    let rate = cfg
        .rate_per_second
        .and_then(NonZeroU32::new)
        .map(|n| RateLimiter::direct(Quota::per_second(n)));
    tracing::info!(
        concurrency = cfg.concurrency,
        batch = cfg.batch_size,
        "delivery worker started"
    );
    loop {
        if *shutdown.borrow() {
            break;
        }
        let now = crate::store::now_ms();
        let lease_until = now + i64::try_from(cfg.lease.as_millis()).unwrap_or(i64::MAX / 4);
        let batch = match outbox::claim(&state.db, &owner, now, lease_until, cfg.batch_size).await {
            Ok(batch) => batch,
            Err(e) => {
                tracing::warn!(error = %e, "claiming outbox rows failed; retrying shortly");
                Vec::new()
            }
        };
        if batch.is_empty() {
            tokio::select! {
                _ = state.outbox_wakeup.notified() => {}
                _ = tokio::time::sleep(cfg.poll_interval) => {}
                _ = shutdown.changed() => {}
            }
            continue;
        }
        let claimed = batch.len();
        futures::stream::iter(batch)
            .for_each_concurrent(cfg.concurrency, |row| deliver(&state, &owner, rate.as_ref(), row))
            .await;
        tracing::debug!(claimed, "outbox batch done");
    }
    tracing::info!("delivery worker stopped");
}

fn hostname_hint() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "worker".into())
}

/// Delay before attempt `attempts + 1`: base × 2^(attempts-1), at most an hour, ±25% jitter
/// so that a relay coming back is not hit by every retry at once.
fn backoff(base: Duration, attempts: i32) -> Duration {
    let exp = u32::try_from(attempts.saturating_sub(1).clamp(0, 16)).unwrap_or(16);
    let delay = base
        .saturating_mul(2u32.saturating_pow(exp))
        .min(Duration::from_secs(3600));
    let jitter = rand::rng().random_range(0.75..1.25);
    delay.mul_f64(jitter)
}

async fn deliver(
    state: &AppState,
    owner: &str,
    rate: Option<&DefaultDirectRateLimiter>,
    row: ClaimedMessage,
) {
    let outcome = attempt(state, rate, &row).await;
    match &outcome {
        Outcome::Sent { .. } => tracing::info!(id = row.id, kind = %row.kind, "sent"),
        Outcome::Retry { error, .. } => {
            tracing::warn!(id = row.id, kind = %row.kind, attempt = row.attempts, error = %error, "will retry")
        }
        Outcome::Failed { error } => tracing::warn!(id = row.id, kind = %row.kind, error = %error, "failed"),
        Outcome::Skipped { reason } => {
            tracing::info!(id = row.id, kind = %row.kind, reason = %reason, "skipped")
        }
    }
    match outbox::record(&state.db, row.id, owner, outcome).await {
        Ok(true) => {}
        Ok(false) => tracing::warn!(id = row.id, "lease was lost before the outcome was recorded"),
        Err(e) => {
            tracing::error!(id = row.id, error = %e, "recording the outcome failed; the lease will expire")
        }
    }
}

async fn attempt(state: &AppState, rate: Option<&DefaultDirectRateLimiter>, row: &ClaimedMessage) -> Outcome {
    let cfg = &state.config.delivery;
    let Ok(recipient) = EmailAddress::parse(&row.recipient) else {
        return Outcome::Failed {
            error: "the recipient address is not valid".into(),
        };
    };
    let payload: Payload = match serde_json::from_str(&row.payload) {
        Ok(p) => p,
        Err(e) => {
            return Outcome::Failed {
                error: format!("unreadable payload: {e}"),
            };
        }
    };
    let hash = state.address_hasher.hash(&recipient);
    match suppressions::reason(&state.db, &hash).await {
        Ok(Some(reason)) if !payload.sends_despite(&reason) => {
            return Outcome::Skipped {
                reason: "suppressed".into(),
            };
        }
        Ok(_) => {}
        Err(e) => return retry_later(cfg, row, format!("database: {e}")),
    }
    let composed = match payload.render(state, recipient, row).await {
        Ok(Some(m)) => m,
        Ok(None) => {
            return Outcome::Skipped {
                reason: "no longer wanted".into(),
            };
        }
        Err(e) => return retry_later(cfg, row, format!("rendering: {e}")),
    };
    let stamped = match state.stamp.stamp(composed) {
        Ok(s) => s,
        Err(e) => return Outcome::Failed { error: e.to_string() },
    };
    if let Some(rate) = rate {
        rate.until_ready().await;
    }
    match state.transport.send(&stamped).await {
        Ok(()) => Outcome::Sent {
            message_id: stamped.message_id().to_owned(),
        },
        Err(SendError::Temporary(e)) => retry_later(cfg, row, e),
        Err(SendError::Permanent {
            message,
            mailbox_unavailable,
        }) => {
            if mailbox_unavailable
                && let Err(e) = suppressions::add(&state.db, &hash, SuppressionReason::HardBounce).await
            {
                tracing::error!(id = row.id, error = %e, "recording the suppression failed");
            }
            Outcome::Failed { error: message }
        }
    }
}

fn retry_later(cfg: &crate::config::DeliveryConfig, row: &ClaimedMessage, error: String) -> Outcome {
    if u32::try_from(row.attempts).unwrap_or(u32::MAX) >= cfg.max_attempts {
        return Outcome::Failed {
            error: format!("gave up after {} attempts: {error}", row.attempts),
        };
    }
    let at_ms = crate::store::now_ms()
        + i64::try_from(backoff(cfg.retry_base, row.attempts).as_millis()).unwrap_or(0);
    Outcome::Retry { at_ms, error }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_and_is_capped() {
        let base = Duration::from_secs(10);
        for (attempt, expected) in [(1, 10.0), (2, 20.0), (3, 40.0)] {
            let d = backoff(base, attempt).as_secs_f64();
            assert!(
                d >= expected * 0.75 && d <= expected * 1.25,
                "attempt {attempt}: {d}"
            );
        }
        assert!(backoff(base, 30) <= Duration::from_secs(4500));
    }
}
