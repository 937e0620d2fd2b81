//! Delivery: workers that drain the outbox and campaign audiences. Each claims due rows with a
//! lease, lets go of the database, checks the recipient may still be mailed, renders, stamps,
//! signs, sends, then records the outcome.
//!
//! A refusal is about what it names. A 4xx to a message is retried with exponential backoff
//! and jitter; a 5xx to the recipient fails the message, and suppresses the address only when
//! the mailbox does not exist (GY-6). A relay that cannot be reached, or that refuses the
//! session, our credentials or the sender, pauses all delivery for a while (see [`Relay`])
//! without spending anyone's attempts, and delivery resumes by itself; a refused campaign
//! content pauses that campaign. A live worker renews its short leases; one that dies leaves
//! them to lapse, after which its rows are due again (see `leases`): delivery is at-least-once,
//! duplicates bounded by what was in flight.

mod campaign;
mod leases;
mod lookups;
mod payload;
mod prepared;
mod recorder;
mod relay;

pub use payload::Payload;
pub use prepared::{PrepareError, Prepared, prepare_campaign, source_of};
pub use relay::{Relay, RelayState};

use leases::Leases;
use lookups::Lookups;
use recorder::Recorder;

use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use tokio::sync::{Notify, watch};

use crate::config::{DeliveryConfig, SenderIdentity};
use crate::domain::{AddressHash, AddressHasher, EmailAddress};
use crate::mail::{ComposedMessage, SendError, Stamp, StampedMessage, Transport, Turn};
use crate::store::outbox::{self, ClaimedMessage};
use crate::store::queue::{OUTBOX, Outcome, Queue};
use crate::store::suppressions::{self, SuppressionReason};
use crate::store::trouble::Trouble;
use crate::store::{BackgroundWrites, Db};
use crate::tokens::Links;

/// What the workers need, and nothing else of the application.
pub struct Context {
    pub db: Db,
    pub stamp: Stamp,
    pub transport: Transport,
    pub links: Links,
    pub address_hasher: AddressHasher,
    pub cfg: DeliveryConfig,
    pub identity: SenderIdentity,
    /// How long a confirmation link works (OI-5).
    pub confirm_ttl: Duration,
    /// The delivery workers' turns at SQLite's write lock (see [`BackgroundWrites`]).
    pub background_writes: BackgroundWrites,
    pub wakeups: Arc<Wakeups>,
    /// Whether the relay takes mail, shared by the workers (and shown by the API).
    pub relay: Arc<Relay>,
}

/// Pokes for the workers: whoever queues mail or starts a campaign in this process wakes them
/// at once instead of leaving them to their next poll.
#[derive(Default)]
pub struct Wakeups {
    /// Mail was queued in the outbox.
    pub outbox: Notify,
    /// A campaign started or resumed.
    pub campaigns: Notify,
}

/// How long a worker waits between claims while the database cannot be used: 1 s, doubling
/// to 30 s.
const FIRST_DB_PAUSE: Duration = Duration::from_secs(1);
const LONGEST_DB_PAUSE: Duration = Duration::from_secs(30);

/// A queue a worker drains.
trait Job: Send + Sync + 'static {
    /// A row as claimed.
    type ClaimedRow: Send + 'static;
    /// A row as it enters the rows in flight (see [`Job::admit`]).
    type Row: Send + 'static;
    fn name(&self) -> &'static str;
    /// What its claims do, as a trouble report names it ("claiming ...").
    fn claiming(&self) -> &'static str;
    /// The row's id in its queue.
    fn row_id(row: &Self::ClaimedRow) -> i64;
    /// The lease that covers the row: the row itself, or its block.
    fn lease_id(row: &Self::ClaimedRow) -> i64;
    async fn claim(
        &self,
        ctx: &Context,
        owner: &str,
        now: i64,
        lease_until: i64,
    ) -> Result<Claimed<Self::ClaimedRow>, crate::store::Error>;
    /// Readies claimed rows as they enter the rows in flight, a group at a time (campaigns:
    /// their send checks, read together).
    async fn admit(&self, ctx: &Context, rows: Vec<Self::ClaimedRow>) -> Vec<Self::Row>;
    /// The queue the rows come from (outcomes are recorded there).
    fn queue(&self) -> &'static Queue;
    /// Attempts one row: its id, a kind for the logs, and the outcome to record. (Each row is
    /// its own task, so that rendering and signing use every core.)
    fn deliver(
        &self,
        ctx: &Context,
        relay: &Relay,
        row: Self::Row,
    ) -> impl std::future::Future<Output = Delivered> + Send;
    /// After each batch (campaigns: mark finished ones).
    async fn after_batch(&self, _ctx: &Context) {}
    /// Before each claim (campaigns: start scheduled ones whose time has come).
    async fn before_claim(&self, _ctx: &Context) {}
}

/// Runs a worker until `shutdown` turns true, then finishes the rows in hand and returns.
async fn run_job<J: Job>(
    job: J,
    ctx: Arc<Context>,
    relay: Arc<Relay>,
    wakeup: &Notify,
    mut shutdown: watch::Receiver<bool>,
) {
    let job = Arc::new(job);
    let owner = format!("{}-{}", job.name(), uuid::Uuid::new_v4().simple());
    let cfg = ctx.cfg.clone();
    let leases = Arc::new(Leases::new(job.queue(), owner, cfg.lease));
    // The heartbeat runs until the worker has recorded or handed back everything it held.
    let (held_tx, held_rx) = watch::channel(false);
    let heartbeat = tokio::spawn({
        let (ctx, leases) = (ctx.clone(), leases.clone());
        async move { leases.keep_renewed(&ctx, held_rx).await }
    });
    // Outcomes are recorded in groups, off the senders' path (see `recorder`): what is sent
    // and not yet recorded at a crash stays bounded by the rows in flight plus the recorder's.
    let in_flight_max = cfg.in_flight();
    let recorder = Arc::new(Recorder::start(ctx.clone(), leases.clone(), in_flight_max));
    tracing::info!(
        worker = job.name(),
        concurrency = cfg.concurrency,
        in_flight = in_flight_max,
        batch = cfg.batch_size,
        lease_ms = cfg.lease.as_millis() as u64,
        "delivery worker started"
    );
    let claims = Trouble::new(job.claiming());
    let mut db_pause = FIRST_DB_PAUSE;
    loop {
        if stopping(&shutdown) {
            break;
        }
        if let Some(wait) = relay.wait() {
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => {}
            }
            continue;
        }
        // Batches one after another for as long as there is work: the claimer takes the next
        // batch while the last rows of the one before are still being sent, so the relay
        // sessions never wait for a claim (no barrier between batches).
        let (rows_tx, rows_rx) = tokio::sync::mpsc::channel(in_flight_max);
        // Half the channel: the other half keeps the senders busy while a group is admitted.
        let admit_at_most = (in_flight_max / 2).max(1);
        let claimer = {
            let (job, ctx, shutdown, leases, relay, claims) =
                (&*job, &ctx, &shutdown, &*leases, &*relay, &claims);
            async move {
                let mut claimed_any = false;
                loop {
                    if claimed_any {
                        let _turn = ctx.background_writes.turn().await;
                        job.after_batch(ctx).await;
                    }
                    if stopping(shutdown) || relay.wait().is_some() {
                        break;
                    }
                    job.before_claim(ctx).await;
                    let now = crate::store::now_ms();
                    let claimed = {
                        let _turn = ctx.background_writes.turn().await;
                        job.claim(ctx, leases.owner(), now, leases.until_ms(now)).await
                    };
                    let Claimed { leases: leased, rows } = match claimed {
                        Ok(claimed) => {
                            claims.ok();
                            claimed
                        }
                        Err(e) => {
                            claims.failed(&e);
                            break;
                        }
                    };
                    if leased.is_empty() {
                        break;
                    }
                    let empty =
                        leases.hold(&leased, rows.iter().map(|row| (J::row_id(row), J::lease_id(row))));
                    leases.close(ctx, &empty).await;
                    claimed_any = true;
                    // A group is admitted once there is room for all of it, so that what
                    // admission read (a send check) is as fresh as it can be when the rows go.
                    let mut rows = rows.into_iter().peekable();
                    while rows.peek().is_some() {
                        let group: Vec<J::ClaimedRow> = rows.by_ref().take(admit_at_most).collect();
                        let Ok(room) = rows_tx.reserve_many(group.len()).await else {
                            return claimed_any;
                        };
                        for (slot, row) in room.zip(job.admit(ctx, group).await) {
                            slot.send(row);
                        }
                    }
                }
                claimed_any // dropping the sender ends the senders' stream
            }
        };
        // The relay client holds sends to its sessions (DELIVERY_CONCURRENCY); the rest of
        // what is in flight is being checked, rendered or recorded meanwhile.
        let senders = async {
            let mut rows_rx = rows_rx;
            let mut stop = shutdown.clone();
            let mut in_flight = tokio::task::JoinSet::new();
            let mut open = true;
            loop {
                tokio::select! {
                    // A graceful stop takes no more rows: those not started are handed back
                    // below, the ones in flight finish.
                    _ = stop.wait_for(|stop| *stop), if open => {
                        open = false;
                        rows_rx.close();
                    }
                    row = rows_rx.recv(), if open && in_flight.len() < in_flight_max => match row {
                        Some(row) => {
                            let (job, ctx, relay, recorder) =
                                (job.clone(), ctx.clone(), relay.clone(), recorder.clone());
                            in_flight.spawn(async move {
                                let delivered = job.deliver(&ctx, &relay, row).await;
                                recorder.submit(delivered).await;
                            });
                        }
                        None => open = false,
                    },
                    Some(done) = in_flight.join_next(), if !in_flight.is_empty() => {
                        if let Err(e) = done {
                            // The row's lease expires and it is tried again.
                            tracing::error!(worker = job.name(), error = %e, "a delivery task failed");
                        }
                    }
                    else => break,
                }
            }
        };
        let (claimed_any, ()) = tokio::join!(claimer, senders);
        // Finished campaigns are found by their recorded outcomes.
        recorder.flush().await;
        if claims.is_failing() {
            // The database cannot be used: wait longer each time (1 s doubling to 30 s), spend
            // no attempts, and say so once (`Trouble`).
            tokio::select! {
                _ = tokio::time::sleep(db_pause) => {}
                _ = shutdown.changed() => {}
            }
            db_pause = (db_pause * 2).min(LONGEST_DB_PAUSE);
            continue;
        }
        db_pause = FIRST_DB_PAUSE;
        if claimed_any {
            let _turn = ctx.background_writes.turn().await;
            job.after_batch(&ctx).await;
        } else {
            tokio::select! {
                _ = wakeup.notified() => {}
                _ = tokio::time::sleep(cfg.poll_interval) => {}
                _ = shutdown.changed() => {}
            }
        }
    }
    recorder.flush().await;
    leases.release_all(&ctx).await;
    let _ = held_tx.send(true);
    let _ = heartbeat.await;
    tracing::info!(worker = job.name(), "delivery worker stopped");
}

/// What one claim leased, and the rows to send under those leases.
struct Claimed<R> {
    leases: Vec<i64>,
    rows: Vec<R>,
}

/// Whether the worker is to stop: told so, or whoever could tell it is gone.
fn stopping(shutdown: &watch::Receiver<bool>) -> bool {
    *shutdown.borrow() || shutdown.has_changed().is_err()
}

/// Runs the outbox and campaign workers until `shutdown`.
pub async fn run(ctx: Arc<Context>, shutdown: watch::Receiver<bool>) {
    let relay = ctx.relay.clone();
    tokio::join!(
        run_job(
            OutboxJob {
                lookups: Lookups::start(&ctx),
            },
            ctx.clone(),
            relay.clone(),
            &ctx.wakeups.outbox,
            shutdown.clone()
        ),
        run_job(
            campaign::CampaignJob::default(),
            ctx.clone(),
            relay,
            &ctx.wakeups.campaigns,
            shutdown
        ),
    );
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

fn retry_later(cfg: &DeliveryConfig, attempts: i32, error: String) -> Outcome {
    if u32::try_from(attempts).unwrap_or(u32::MAX) >= cfg.max_attempts {
        return Outcome::Failed {
            error: format!("gave up after {attempts} attempts: {error}"),
        };
    }
    let at_ms =
        crate::store::now_ms() + i64::try_from(backoff(cfg.retry_base, attempts).as_millis()).unwrap_or(0);
    Outcome::Retry { at_ms, error }
}

/// Stamps, signs and sends one outbox message; turns the result into an outcome (and
/// suppresses a refused mailbox).
async fn stamp_and_send(
    ctx: &Context,
    relay: &Relay,
    composed: ComposedMessage,
    hash: &AddressHash,
    attempts: i32,
    content_of: ContentOf,
) -> Outcome {
    match stamp_for_turn(ctx, composed, attempts).await {
        Ok((stamped, turn)) => send_stamped(ctx, relay, &stamped, turn, hash, attempts, content_of).await,
        Err(outcome) => outcome,
    }
}

/// Stamps (and signs) a message, then waits for its turn for a relay session.
#[tracing::instrument(level = "debug", skip_all)]
async fn stamp_for_turn(
    ctx: &Context,
    composed: ComposedMessage,
    attempts: i32,
) -> Result<(StampedMessage, Turn), Outcome> {
    let stamped = ctx
        .stamp
        .stamp(composed)
        .map_err(|e| Outcome::Failed { error: e.to_string() })?;
    let turn = ctx
        .transport
        .take_turn()
        .await
        .map_err(|e| retry_later(&ctx.cfg, attempts, e.to_string()))?;
    Ok((stamped, turn))
}

/// What a message is, for a relay that refuses its content (a 5xx after the data).
#[derive(Clone, Copy)]
enum ContentOf {
    /// An email of our own making (confirmation, notice, export link...): the relay's objection
    /// is about the relay (its filter, our account with it), so delivery pauses as for any
    /// relay trouble, and this message waits [`REFUSED_CONTENT_WAITS`] before its next try.
    Outbox,
    /// A campaign's email: that campaign pauses, with the relay's reply as its reason, until
    /// the operator resumes it.
    Campaign(i64),
    /// A test send of a campaign: it fails with the relay's reply, which is what the operator
    /// testing the content wants to learn.
    CampaignTest,
}

/// How long an outbox message whose content the relay refused waits before it is tried
/// again (the rest of the outbox goes on once the relay's pause ends). No attempt is spent.
const REFUSED_CONTENT_WAITS: Duration = Duration::from_secs(60);

/// Sends a stamped message in its turn; turns the result into an outcome. Only a refused
/// mailbox suppresses the address (GY-6); what is about the relay pauses delivery and what is
/// about a campaign's content pauses that campaign, neither spending an attempt.
#[tracing::instrument(level = "debug", skip_all)]
async fn send_stamped(
    ctx: &Context,
    relay: &Relay,
    stamped: &StampedMessage,
    turn: Turn,
    hash: &AddressHash,
    attempts: i32,
    content_of: ContentOf,
) -> Outcome {
    if let Some(rate) = &relay.rate {
        rate.until_ready().await;
    }
    let deferred = |wait: Duration, error: String| Outcome::Deferred {
        at_ms: crate::store::now_ms() + i64::try_from(wait.as_millis()).unwrap_or(0),
        error,
    };
    match ctx.transport.send_in_turn(stamped, turn).await {
        Ok(()) => {
            relay.answered();
            Outcome::Sent {
                message_id: stamped.message_id().to_owned(),
            }
        }
        Err(SendError::Temporary(e)) => retry_later(&ctx.cfg, attempts, e),
        Err(SendError::Unavailable(error)) => deferred(relay.unavailable(&error), error),
        Err(SendError::Permanent {
            message,
            mailbox_unavailable,
        }) => {
            relay.answered();
            if mailbox_unavailable
                && let Err(e) = suppressions::add(&ctx.db, hash, SuppressionReason::HardBounce).await
            {
                tracing::error!(error = %e, "recording the suppression failed");
            }
            Outcome::Failed { error: message }
        }
        Err(SendError::ContentRefused(reply)) => match content_of {
            ContentOf::Outbox => {
                let wait = relay.unavailable(&format!(
                    "the relay refused the content of a transactional email: {reply}"
                ));
                deferred(wait.max(REFUSED_CONTENT_WAITS), reply)
            }
            ContentOf::Campaign(campaign) => {
                relay.answered();
                let reason = format!(
                    "the relay refused the content: {}",
                    recorder::without_addresses(&reply)
                );
                match crate::store::campaigns::pause_because(&ctx.db, campaign, &reason).await {
                    Ok(true) => tracing::warn!(campaign, reason = %reason, "campaign paused"),
                    Ok(false) => {} // paused already (another message of it), or ended
                    Err(e) => {
                        tracing::error!(campaign, error = %e, "pausing the campaign failed");
                        return retry_later(&ctx.cfg, attempts, reply);
                    }
                }
                deferred(Duration::ZERO, reply)
            }
            ContentOf::CampaignTest => {
                relay.answered();
                Outcome::Failed { error: reply }
            }
        },
    }
}

/// What a worker did with one row.
pub(crate) struct Delivered {
    id: i64,
    kind: String,
    outcome: Outcome,
}

/// The outbox: confirmations, notices, data-rights emails, tests.
struct OutboxJob {
    lookups: Lookups,
}

impl Job for OutboxJob {
    type ClaimedRow = ClaimedMessage;
    type Row = ClaimedMessage;

    fn name(&self) -> &'static str {
        "outbox"
    }

    fn claiming(&self) -> &'static str {
        "claiming outbox rows"
    }

    fn row_id(row: &ClaimedMessage) -> i64 {
        row.id
    }

    fn lease_id(row: &ClaimedMessage) -> i64 {
        row.id
    }

    #[tracing::instrument(level = "debug", skip_all, fields(worker = "outbox"))]
    async fn claim(
        &self,
        ctx: &Context,
        owner: &str,
        now: i64,
        lease_until: i64,
    ) -> Result<Claimed<ClaimedMessage>, crate::store::Error> {
        let rows = outbox::claim(&ctx.db, owner, now, lease_until, ctx.cfg.batch_size).await?;
        Ok(Claimed {
            leases: rows.iter().map(|row| row.id).collect(),
            rows,
        })
    }

    async fn admit(&self, _ctx: &Context, rows: Vec<ClaimedMessage>) -> Vec<ClaimedMessage> {
        rows
    }

    fn queue(&self) -> &'static Queue {
        &OUTBOX
    }

    #[tracing::instrument(level = "debug", skip_all, fields(worker = "outbox", id = row.id, kind = %row.kind))]
    async fn deliver(&self, ctx: &Context, relay: &Relay, row: ClaimedMessage) -> Delivered {
        let outcome = self.attempt(ctx, relay, &row).await;
        Delivered {
            id: row.id,
            kind: row.kind,
            outcome,
        }
    }
}

impl OutboxJob {
    async fn attempt(&self, ctx: &Context, relay: &Relay, row: &ClaimedMessage) -> Outcome {
        let cfg = &ctx.cfg;
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
        let hash = ctx.address_hasher.hash(&recipient);
        match self.lookups.suppression(hash.clone()).await {
            Ok(Some(reason)) if !payload.sends_despite(reason) => {
                return Outcome::Skipped {
                    reason: "suppressed".into(),
                };
            }
            Ok(_) => {}
            Err(e) => return retry_later(cfg, row.attempts, e),
        }
        match payload.render(ctx, &self.lookups, recipient, row).await {
            Ok(Some(m)) => {
                let content_of = match payload {
                    Payload::CampaignTest { .. } => ContentOf::CampaignTest,
                    _ => ContentOf::Outbox,
                };
                stamp_and_send(ctx, relay, m, &hash, row.attempts, content_of).await
            }
            Ok(None) => Outcome::Skipped {
                reason: "no longer wanted".into(),
            },
            Err(e) => retry_later(cfg, row.attempts, format!("rendering: {e}")),
        }
    }
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
