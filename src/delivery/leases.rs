//! The leases a worker holds. A claimed row is leased for `DELIVERY_LEASE_SECONDS` (15 s by
//! default), and the worker renews the leases of every row it still holds each third of that:
//! a live worker keeps its rows however long the relay takes, and a dead one (kill -9, out of
//! memory, a lost machine) leaves them due again within one lease, for any instance or for
//! itself restarted. A graceful stop hands back at once what it has not started.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::watch;

use super::Context;
use crate::store::queue::Queue;
use crate::store::trouble::Trouble;

pub(super) struct Leases {
    queue: &'static Queue,
    owner: String,
    lease: Duration,
    /// Rows claimed and not yet recorded.
    held: Mutex<HashSet<i64>>,
    renewing: Trouble,
}

impl Leases {
    pub(super) fn new(queue: &'static Queue, owner: String, lease: Duration) -> Self {
        Leases {
            queue,
            owner,
            lease,
            held: Mutex::new(HashSet::new()),
            renewing: Trouble::new(match queue.name() {
                "outbox" => "renewing outbox leases",
                _ => "renewing campaign leases",
            }),
        }
    }

    pub(super) fn owner(&self) -> &str {
        &self.owner
    }

    /// The lease's end for a row claimed or renewed now.
    pub(super) fn until_ms(&self, now_ms: i64) -> i64 {
        now_ms.saturating_add(i64::try_from(self.lease.as_millis()).unwrap_or(i64::MAX / 4))
    }

    pub(super) fn hold(&self, ids: impl IntoIterator<Item = i64>) {
        self.held.lock().expect("leases lock").extend(ids);
    }

    /// The row's outcome is recorded (or could not be): its lease is no longer renewed.
    pub(super) fn let_go(&self, ids: impl IntoIterator<Item = i64>) {
        let mut held = self.held.lock().expect("leases lock");
        for id in ids {
            held.remove(&id);
        }
    }

    /// Records outcomes of rows this worker holds (fenced by the lease).
    pub(super) async fn record_many(
        &self,
        db: &crate::store::Db,
        outcomes: Vec<(i64, crate::store::queue::Outcome)>,
    ) -> Vec<Result<bool, String>> {
        self.queue.record_many(db, &self.owner, outcomes).await
    }

    fn held(&self) -> Vec<i64> {
        self.held.lock().expect("leases lock").iter().copied().collect()
    }

    /// Renews the leases of the rows held, every third of a lease, until `stop`.
    pub(super) async fn keep_renewed(&self, ctx: &Context, mut stop: watch::Receiver<bool>) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(self.lease / 3) => {}
                _ = stop.changed() => return,
            }
            let held = self.held();
            if held.is_empty() {
                // Nothing to renew, so nothing failing either.
                self.renewing.ok();
                continue;
            }
            let until = self.until_ms(crate::store::now_ms());
            let renewed = {
                let _turn = ctx.background_writes.turn().await;
                self.queue.renew(&ctx.db, &self.owner, &held, until).await
            };
            // On failure the leases may lapse and another worker take the rows over; the
            // outcome records are fenced by the lease, so nothing is recorded twice.
            match renewed {
                Ok(_) => self.renewing.ok(),
                Err(e) => self.renewing.failed(&e),
            }
        }
    }

    /// Hands back every row still held (a graceful stop, once the rows in progress are
    /// recorded): due at once for any worker, the attempt not counted.
    pub(super) async fn release_all(&self, ctx: &Context) {
        let held = self.held();
        if held.is_empty() {
            return;
        }
        let released = {
            let _turn = ctx.background_writes.turn().await;
            self.queue
                .release(&ctx.db, &self.owner, &held, crate::store::now_ms())
                .await
        };
        match released {
            Ok(n) => {
                self.let_go(held);
                tracing::info!(queue = self.queue.name(), rows = n, "handed back unsent rows");
            }
            Err(e) => {
                tracing::warn!(queue = self.queue.name(), error = %e, "handing back rows failed; their leases will lapse")
            }
        }
    }
}
