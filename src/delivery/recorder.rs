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

use super::{Context, Delivered};
use crate::store::batch::{Batcher, Grouping};
use crate::store::queue::{Outcome, Queue};

/// How long the first outcome of a group waits for more. Long enough to gather a few dozen
/// outcomes at thousands of messages per second, short next to a lease (minutes) and to what a
/// person watching the progress counts notices.
const LINGER: Duration = Duration::from_millis(5);

pub(super) struct Recorder {
    outcomes: Batcher<Delivered, ()>,
}

impl Recorder {
    /// Starts the recording task; it ends when the `Recorder` is dropped, after writing what
    /// it holds.
    pub(super) fn start(ctx: Arc<Context>, queue: &'static Queue, owner: String, capacity: usize) -> Self {
        let owner: Arc<str> = owner.into();
        let grouping = Grouping::up_to(capacity).lingering(LINGER);
        let outcomes = Batcher::start(grouping, move |group: Vec<Delivered>| {
            let (ctx, owner) = (ctx.clone(), owner.clone());
            async move {
                let n = group.len();
                record(&ctx, queue, &owner, group).await;
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

fn log(delivered: &Delivered) {
    let Delivered { id, kind, outcome } = delivered;
    match outcome {
        Outcome::Sent { .. } => tracing::debug!(id, kind, "sent"),
        Outcome::Retry { error, .. } => tracing::warn!(id, kind, error = %error, "will retry"),
        Outcome::Deferred { .. } => tracing::debug!(id, kind, "deferred"),
        Outcome::Failed { error } => tracing::warn!(id, kind, error = %error, "failed"),
        Outcome::Skipped { reason } => tracing::info!(id, kind, reason = %reason, "skipped"),
        Outcome::Cancelled => tracing::debug!(id, kind, "cancelled before it was sent"),
    }
}

/// Writes one group, fenced by the lease, and logs what could not be recorded.
async fn record(ctx: &Context, queue: &Queue, owner: &str, group: Vec<Delivered>) {
    let mut kinds = Vec::with_capacity(group.len());
    let mut outcomes = Vec::with_capacity(group.len());
    for d in group {
        kinds.push((d.id, d.kind));
        outcomes.push((d.id, d.outcome));
    }
    let results = {
        let _turn = ctx.background_writes.turn().await;
        queue.record_many(&ctx.db, owner, outcomes).await
    };
    for ((id, kind), result) in kinds.into_iter().zip(results) {
        match result {
            Ok(true) => {}
            Ok(false) => tracing::warn!(id, kind, "lease was lost before the outcome was recorded"),
            Err(e) => {
                tracing::error!(id, kind, error = %e, "recording the outcome failed; the lease will expire")
            }
        }
    }
}
