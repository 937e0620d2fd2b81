//! Records the outcomes of a worker's sends in groups, off the senders' path.
//!
//! A send hands its outcome in and is done: its slot among the rows in flight goes to the next
//! row at once, instead of waiting for a database round trip. The recorder writes what has
//! gathered once it has waited [`LINGER`] after the first outcome of a group, or as soon as a
//! group is full. Each statement costs the database about the same whatever its row count, so
//! fewer, larger groups are what lets the database keep up.
//!
//! Crash bound: an outcome is unrecorded while it waits in the queue or in the group being
//! written (each at most `capacity`). With the rows in flight, that is what a `kill -9` can
//! leave sent but not recorded, to be sent again when their leases expire.

use std::sync::Arc;
use std::time::Duration;

use super::leases::Leases;
use super::{Context, Delivered};
use crate::store::batch::{Batcher, Grouping};
use crate::store::queue::Outcome;
use crate::store::trouble::Trouble;

static RECORDING: Trouble = Trouble::new("recording delivery outcomes");

/// How long the first outcome of a group waits for more: long enough to fill a group (the rows
/// in flight) at a few thousand messages a second. Instances that share one database each
/// deliver a share of its rate, and only groups as large as one instance's keep the
/// database's work per message the same (docs/benchmarks.md, two instances). Short next to a
/// lease (seconds) and to what a person watching the progress counts notices.
const LINGER: Duration = Duration::from_millis(15);

pub(super) struct Recorder {
    outcomes: Batcher<Delivered, ()>,
}

impl Recorder {
    /// Starts the recording task; it ends when the `Recorder` is dropped, after writing what
    /// it holds.
    pub(super) fn start(ctx: Arc<Context>, leases: Arc<Leases>, capacity: usize) -> Self {
        let grouping = Grouping::up_to(capacity).lingering(LINGER);
        let outcomes = Batcher::start(grouping, move |group: Vec<Delivered>| {
            let (ctx, leases) = (ctx.clone(), leases.clone());
            async move {
                let n = group.len();
                record(&ctx, &leases, group).await;
                vec![(); n]
            }
        });
        Recorder { outcomes }
    }

    /// Hands in an outcome; waits only while the recorder is full (it is then writing).
    pub(super) async fn submit(&self, delivered: Delivered) {
        log(&delivered);
        if !self.outcomes.submit(delivered).await {
            tracing::error!("the outcome recorder has stopped; the lease will expire");
        }
    }

    /// Returns once every outcome handed in before the call is recorded (or failed to be).
    pub(super) async fn flush(&self) {
        self.outcomes.flush().await;
    }
}

/// Logs and counts an outcome. A relay's reply often quotes the recipient ("550 5.1.1
/// <a@example.org>: Recipient address rejected"): the log line carries it without addresses.
fn log(delivered: &Delivered) {
    let Delivered { id, kind, outcome } = delivered;
    match outcome {
        Outcome::Sent { .. } => tracing::debug!(id, kind, "sent"),
        Outcome::Retry { error, .. } => {
            tracing::warn!(id, kind, error = %without_addresses(error), "will retry")
        }
        Outcome::Deferred { .. } => tracing::debug!(id, kind, "deferred"),
        Outcome::Failed { error } => tracing::warn!(id, kind, error = %without_addresses(error), "failed"),
        Outcome::Skipped { reason } => tracing::info!(id, kind, reason = %reason, "skipped"),
        Outcome::Cancelled => tracing::debug!(id, kind, "cancelled before it was sent"),
    }
    let outcome = match outcome {
        Outcome::Sent { .. } => "sent",
        Outcome::Retry { .. } => "retried",
        Outcome::Deferred { .. } => "deferred",
        Outcome::Failed { .. } => "failed",
        Outcome::Skipped { reason } if reason.starts_with("suppressed") => "suppressed",
        Outcome::Skipped { .. } => "skipped",
        Outcome::Cancelled => "cancelled",
    };
    metrics::counter!("letterhead_messages_total", "kind" => kind_label(kind), "outcome" => outcome)
        .increment(1);
}

/// The kind of email as a metric label: the outbox kinds and `campaign`, a fixed set.
fn kind_label(kind: &str) -> &'static str {
    const KINDS: [&str; 8] = [
        "campaign",
        "confirmation",
        "policy_notice",
        "breach_notice",
        "export_link",
        "address_change",
        "campaign_test",
        "test_message",
    ];
    KINDS.into_iter().find(|k| *k == kind).unwrap_or("other")
}

/// `text` with every word that holds an `@` replaced: what a log line may show of a reply.
pub(super) fn without_addresses(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.contains('@') {
        return text.into();
    }
    let words: Vec<&str> = text
        .split_whitespace()
        .map(|word| if word.contains('@') { "[address]" } else { word })
        .collect();
    words.join(" ").into()
}

/// Writes one group, fenced by the lease, and logs what could not be recorded. Either way
/// the rows are let go, and leases left with no row in hand are closed: a row not recorded is
/// due again when its lease lapses or its block is closed.
#[tracing::instrument(level = "debug", skip_all, fields(rows = group.len()))]
async fn record(ctx: &Context, leases: &Leases, group: Vec<Delivered>) {
    let mut kinds = Vec::with_capacity(group.len());
    let mut outcomes = Vec::with_capacity(group.len());
    for d in group {
        kinds.push((d.id, d.kind));
        outcomes.push((d.id, d.outcome));
    }
    let results = {
        let _turn = ctx.background_writes.turn().await;
        leases.record_many(&ctx.db, outcomes).await
    };
    let done = leases.let_go(kinds.iter().map(|(id, _)| *id));
    leases.close(ctx, &done).await;
    let mut failed = None;
    for ((id, kind), result) in kinds.into_iter().zip(results) {
        match result {
            Ok(true) => {}
            Ok(false) => tracing::warn!(id, kind, "lease was lost before the outcome was recorded"),
            Err(e) => failed = Some(e),
        }
    }
    // Through an outage every group fails alike: one warning, not one per row. The rows are
    // sent again once their leases lapse.
    match failed {
        Some(e) => RECORDING.failed_with(e),
        None => RECORDING.ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_logged_without_addresses() {
        assert_eq!(
            without_addresses("permanent error (550): 5.1.1 <bob@example.org>: Recipient address rejected"),
            "permanent error (550): 5.1.1 [address] Recipient address rejected"
        );
        assert_eq!(without_addresses("connection refused"), "connection refused");
    }

    #[test]
    fn kinds_are_a_fixed_set() {
        assert_eq!(kind_label("confirmation"), "confirmation");
        assert_eq!(kind_label("campaign"), "campaign");
        assert_eq!(kind_label("anything else"), "other");
    }
}
