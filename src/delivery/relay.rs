//! The relay as every worker of a process sees it: its send rate, and whether it takes mail.
//! When the relay cannot be reached or refuses what is about it rather than a message (the
//! session, our credentials, the sender), delivery pauses: no worker claims until the pause
//! ends, 1 s at first and doubling up to a minute while it keeps failing, and no message
//! spends an attempt. The first message it accepts again ends the pause.
//!
//! The pause is logged when it starts, when its reason changes and when it ends, never once
//! per message; `state` tells the API and the dashboard what it is now.

use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use super::recorder::without_addresses;
use crate::config::DeliveryConfig;

const FIRST_PAUSE: Duration = Duration::from_secs(1);
const LONGEST_PAUSE: Duration = Duration::from_secs(60);

pub struct Relay {
    pub(super) rate: Option<DefaultDirectRateLimiter>,
    state: Mutex<Pausing>,
}

struct Pausing {
    /// Set from the first failure until the relay takes a message again.
    paused: Option<Pause>,
    /// How long the next pause lasts.
    next: Duration,
}

struct Pause {
    reason: String,
    since: time::OffsetDateTime,
    until: Instant,
}

/// What delivery is doing about the relay now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RelayState {
    Sending,
    /// Delivery waits for the relay: why (the relay's last answer, or what failed), since when,
    /// and when it tries again.
    Paused {
        reason: String,
        since: time::OffsetDateTime,
        until: time::OffsetDateTime,
    },
}

impl Relay {
    pub fn new(cfg: &DeliveryConfig) -> Self {
        metrics::gauge!("letterhead_relay_paused").set(0.0);
        Relay {
            rate: cfg
                .rate_per_second
                .and_then(NonZeroU32::new)
                .map(|n| RateLimiter::direct(Quota::per_second(n))),
            state: Mutex::new(Pausing {
                paused: None,
                next: FIRST_PAUSE,
            }),
        }
    }

    /// How long to wait before claiming more work, if delivery is paused.
    pub(super) fn wait(&self) -> Option<Duration> {
        let state = self.state.lock().expect("relay lock");
        let until = state.paused.as_ref()?.until;
        until.checked_duration_since(Instant::now())
    }

    /// The relay failed us for `reason`: pause delivery (or keep it paused). A failure while
    /// a pause runs (the other messages that were in flight) does not lengthen it; one after
    /// it ended doubles the next, up to a minute. Returns how long until the next try.
    pub(super) fn unavailable(&self, reason: &str) -> Duration {
        let reason = without_addresses(reason);
        let now = Instant::now();
        let mut state = self.state.lock().expect("relay lock");
        let length = state.next;
        let running = state.paused.as_ref().filter(|p| p.until > now).map(|p| p.until);
        let until = running.unwrap_or_else(|| {
            state.next = (length * 2).min(LONGEST_PAUSE);
            now + length
        });
        match &mut state.paused {
            None => {
                tracing::warn!(reason = %reason, "the relay is unavailable: delivery paused");
                metrics::gauge!("letterhead_relay_paused").set(1.0);
                state.paused = Some(Pause {
                    reason: reason.into_owned(),
                    since: time::OffsetDateTime::now_utc(),
                    until,
                });
            }
            Some(pause) => {
                if pause.reason != reason {
                    tracing::warn!(reason = %reason, "delivery still paused: the relay's answer changed");
                    pause.reason = reason.into_owned();
                }
                pause.until = until;
            }
        }
        until - now
    }

    /// The relay took a message (or answered about one): delivery goes on, and a later outage
    /// starts again from the shortest pause.
    pub(super) fn answered(&self) {
        let mut state = self.state.lock().expect("relay lock");
        state.next = FIRST_PAUSE;
        if let Some(pause) = state.paused.take() {
            let paused_s = (time::OffsetDateTime::now_utc() - pause.since).whole_seconds();
            tracing::info!(paused_s, "the relay answers again: delivery resumed");
            metrics::gauge!("letterhead_relay_paused").set(0.0);
        }
    }

    /// Sending, or paused with its reason.
    pub fn state(&self) -> RelayState {
        let state = self.state.lock().expect("relay lock");
        match &state.paused {
            None => RelayState::Sending,
            Some(p) => {
                let left = p.until.saturating_duration_since(Instant::now());
                RelayState::Paused {
                    reason: p.reason.clone(),
                    since: p.since,
                    until: time::OffsetDateTime::now_utc() + left,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn relay() -> Relay {
        Relay {
            rate: None,
            state: Mutex::new(Pausing {
                paused: None,
                next: FIRST_PAUSE,
            }),
        }
    }

    #[test]
    fn failures_during_a_pause_do_not_lengthen_it_and_a_success_ends_it() {
        let relay = relay();
        assert_eq!(relay.state(), RelayState::Sending);
        let first = relay.unavailable("connection refused");
        assert!(first <= FIRST_PAUSE && first > FIRST_PAUSE / 2);
        // The rest of what was in flight fails too: the same pause.
        assert!(relay.unavailable("connection refused") <= first);
        assert!(relay.wait().is_some());
        match relay.state() {
            RelayState::Paused { reason, .. } => assert_eq!(reason, "connection refused"),
            RelayState::Sending => panic!("paused"),
        }
        relay.answered();
        assert_eq!(relay.state(), RelayState::Sending);
        assert!(relay.wait().is_none());
    }

    #[test]
    fn each_pause_that_ends_in_another_failure_doubles_up_to_a_minute() {
        let relay = relay();
        let mut lengths = Vec::new();
        for _ in 0..9 {
            relay.unavailable("550 5.7.1 sender rejected");
            lengths.push(relay.state.lock().unwrap().next);
            // The pause ran out.
            relay.state.lock().unwrap().paused.as_mut().unwrap().until = Instant::now();
        }
        let secs: Vec<u64> = lengths.iter().map(Duration::as_secs).collect();
        assert_eq!(secs, [2, 4, 8, 16, 32, 60, 60, 60, 60]);
    }

    #[test]
    fn the_reason_names_no_address() {
        let relay = relay();
        relay.unavailable(
            "the relay refused the sender (MAIL FROM): 553 5.7.1 <news@example.com>: not allowed",
        );
        let RelayState::Paused { reason, .. } = relay.state() else {
            panic!("paused")
        };
        assert_eq!(
            reason,
            "the relay refused the sender (MAIL FROM): 553 5.7.1 [address] not allowed"
        );
    }
}
