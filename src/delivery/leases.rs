//! The leases a worker holds: outbox rows, or blocks of campaign recipients. A claim leases
//! them for `DELIVERY_LEASE_SECONDS` (15 s by default), and the worker renews every lease it
//! still holds each third of that: a live worker keeps its rows however long the relay takes,
//! and a dead one (kill -9, out of memory, a lost machine) leaves them due again within one
//! lease, for any instance or for itself restarted. A lease is closed once every row it
//! brought is recorded. A graceful stop hands back at once what it has not started.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::watch;

use super::Context;
use crate::store::queue::Queue;
use crate::store::trouble::Trouble;

/// Rows claimed and not yet recorded, and the leases that brought them.
#[derive(Default)]
struct Held {
    /// Row → its lease.
    rows: HashMap<i64, i64>,
    /// Lease → how many of its rows are still in hand.
    leases: HashMap<i64, usize>,
}

pub(super) struct Leases {
    queue: &'static Queue,
    owner: String,
    lease: Duration,
    held: Mutex<Held>,
    renewing: Trouble,
    closing: Trouble,
}

impl Leases {
    pub(super) fn new(queue: &'static Queue, owner: String, lease: Duration) -> Self {
        Leases {
            queue,
            owner,
            lease,
            held: Mutex::new(Held::default()),
            renewing: Trouble::new(match queue.name() {
                "outbox" => "renewing outbox leases",
                _ => "renewing campaign leases",
            }),
            closing: Trouble::new("closing campaign blocks"),
        }
    }

    pub(super) fn owner(&self) -> &str {
        &self.owner
    }

    /// The lease's end for a row claimed or renewed now.
    pub(super) fn until_ms(&self, now_ms: i64) -> i64 {
        now_ms.saturating_add(i64::try_from(self.lease.as_millis()).unwrap_or(i64::MAX / 4))
    }

    /// Holds what a claim leased: `leases`, and the rows each brought as (row, lease). Returns
    /// the leases that brought no row, to be closed at once.
    pub(super) fn hold(&self, leases: &[i64], rows: impl IntoIterator<Item = (i64, i64)>) -> Vec<i64> {
        let mut held = self.held.lock().expect("leases lock");
        let Held {
            rows: by_row,
            leases: left,
        } = &mut *held;
        for lease in leases {
            left.entry(*lease).or_insert(0);
        }
        for (row, lease) in rows {
            by_row.insert(row, lease);
            *left.entry(lease).or_insert(0) += 1;
        }
        let empty: Vec<i64> = leases
            .iter()
            .copied()
            .filter(|lease| left.get(lease) == Some(&0))
            .collect();
        for lease in &empty {
            left.remove(lease);
        }
        empty
    }

    /// The rows' outcomes are recorded (or could not be). Returns the leases that have no row
    /// left in hand, which are no longer renewed and are to be closed.
    pub(super) fn let_go(&self, rows: impl IntoIterator<Item = i64>) -> Vec<i64> {
        let mut held = self.held.lock().expect("leases lock");
        let Held {
            rows: by_row,
            leases: left,
        } = &mut *held;
        let mut done = Vec::new();
        for row in rows {
            let Some(lease) = by_row.remove(&row) else {
                continue;
            };
            if let Some(n) = left.get_mut(&lease) {
                *n -= 1;
                if *n == 0 {
                    left.remove(&lease);
                    done.push(lease);
                }
            }
        }
        done
    }

    /// Closes leases with every row recorded (see [`crate::store::queue::Queue::close`]). On
    /// failure a block's lease lapses and it is claimed again, its recorded rows left alone.
    pub(super) async fn close(&self, ctx: &Context, leases: &[i64]) {
        if leases.is_empty() || !self.queue.closes_leases() {
            return;
        }
        let closed = {
            let _turn = ctx.background_writes.turn().await;
            self.queue
                .close(&ctx.db, &self.owner, leases, crate::store::now_ms())
                .await
        };
        match closed {
            Ok(()) => self.closing.ok(),
            Err(e) => self.closing.failed(&e),
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

    /// The leases held.
    fn held(&self) -> Vec<i64> {
        self.held
            .lock()
            .expect("leases lock")
            .leases
            .keys()
            .copied()
            .collect()
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

    /// Hands back every lease still held (a graceful stop, once the rows in progress are
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
                *self.held.lock().expect("leases lock") = Held::default();
                tracing::info!(queue = self.queue.name(), leases = n, "handed back unsent rows");
            }
            Err(e) => {
                tracing::warn!(queue = self.queue.name(), error = %e, "handing back rows failed; their leases will lapse")
            }
        }
    }
}
