//! What deleted rows leave on disk, wiped after erasures, address changes and retention
//! (GD-2, GD-3, GD-5): a deleted row must not stay readable by whoever copies the files.
//!
//! - SQLite runs with `secure_delete`, so the database file overwrites deleted content; but the
//!   write-ahead log keeps old page images until it is checkpointed and overwritten. A scrub is a
//!   `wal_checkpoint(TRUNCATE)`: every page goes back to the database file and the log is cut to
//!   nothing.
//! - PostgreSQL keeps deleted row versions in the table's pages until a vacuum. A scrub waits
//!   until no transaction that could still see them is running, then vacuums the tables that hold
//!   personal data. A plain VACUUM frees the versions but does not zero their bytes: the newest
//!   row of a page can stay in the page's free space until the page is written again. Only a
//!   rewrite (VACUUM FULL, [`compact`]) removes that, and it locks each table while it copies
//!   it, so it runs at the hour `COMPACTION_HOUR` names (or right after the vacuum, for small
//!   databases), by whichever instance gets to it first.
//!
//! Every deleting transaction counts itself in the `wipe_due` row ([`note_deletion`]); a wipe
//! that covered them records the count it saw. What is due therefore survives a crash between
//! an erasure and its wipe, and is seen by every instance.
//!
//! The request that erases only asks for a scrub ([`Scrubber::request`]); one background task
//! runs it, off the request's transaction, and several requests made meanwhile share one run.
//! The same task runs SQLite's routine passive checkpoints, so two checkpoints never contend.

use std::time::Duration;

use sea_orm::{ConnectionTrait, DbErr, Statement};
use tokio::sync::{Notify, watch};

use super::trouble::Trouble;
use super::{Db, is_postgres};
use crate::config::CompactionSchedule;

/// Every table a person's address, name, IP or user agent can sit in.
const PERSONAL_TABLES: &str =
    "subscribers, subscriptions, consent_events, outbox, address_changes, campaign_recipients";

/// How often SQLite's write-ahead log is copied back passively (see [`Scrubber::run`]).
const PASSIVE_CHECKPOINT_EVERY: Duration = Duration::from_millis(50);

/// How long to wait before trying a scrub again that readers, older transactions or an error
/// held up: SQLite's checkpoint gives up within milliseconds, so it may try again soon.
const RETRY_AFTER: Duration = Duration::from_millis(20);
const RETRY_AFTER_ON_POSTGRES: Duration = Duration::from_millis(100);

/// How often PostgreSQL's scrubber looks whether a compaction is due in its hour.
const COMPACTION_CHECK_EVERY: Duration = Duration::from_secs(60);

/// The advisory lock one instance holds while it compacts, so that instances sharing the
/// database do not rewrite the same tables one after the other.
const COMPACTION_LOCK: i64 = 0x6c65_7474_6572_6864; // "letterhd"

/// Counts a deleting transaction as due for a wipe. Call inside the transaction that deletes.
pub async fn note_deletion(c: &impl ConnectionTrait) -> Result<(), DbErr> {
    c.execute_unprepared("UPDATE wipe_due SET deletions = deletions + 1 WHERE id = 1")
        .await?;
    Ok(())
}

/// Deleting transactions counted so far, and how many of them the last wipe covered.
async fn wipe_counts(db: &impl ConnectionTrait) -> Result<(i64, i64), DbErr> {
    let row = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT deletions, wiped FROM wipe_due WHERE id = 1",
        ))
        .await?
        .ok_or_else(|| DbErr::Custom("the wipe_due row is missing".into()))?;
    Ok((row.try_get_by_index(0)?, row.try_get_by_index(1)?))
}

/// Records that every deletion counted up to `deletions` is wiped.
async fn record_wiped(db: &impl ConnectionTrait, deletions: i64, compacted: bool) -> Result<(), DbErr> {
    let sql = if compacted {
        "UPDATE wipe_due SET wiped = $1, compacted_at_ms = $2 WHERE id = 1 AND wiped < $1"
    } else {
        "UPDATE wipe_due SET wiped = $1 WHERE id = 1 AND wiped < $1"
    };
    let mut values = vec![deletions.into()];
    if compacted {
        values.push(super::now_ms().into());
    }
    db.execute_raw(Statement::from_sql_and_values(
        db.get_database_backend(),
        sql,
        values,
    ))
    .await?;
    Ok(())
}

/// Scrubs asked for and scrubs done, counted, so that whoever asks can wait for theirs.
/// How often a checkpoint that keeps failing (a full disk) is tried.
const CHECKPOINT_RETRY_WHILE_FAILING: Duration = Duration::from_secs(1);

static CHECKPOINTS: Trouble = Trouble::new("checkpointing the SQLite write-ahead log");
static WIPES: Trouble = Trouble::new("wiping deleted data");

pub struct Scrubber {
    /// The pool on PostgreSQL; on SQLite a connection of its own with a short busy timeout
    /// (`connect_checkpointer`), so that a checkpoint never holds the write lock for long.
    db: Db,
    /// The pool, for recording what was wiped (the checkpointer's busy timeout is too short to
    /// wait for the write lock).
    pool: Db,
    /// PostgreSQL: a connection of its own for compaction, whose lock timeout keeps a rewrite
    /// from queueing (and holding everyone behind it) while traffic holds a table.
    compactor: Option<Db>,
    schedule: CompactionSchedule,
    wake: Notify,
    requested: watch::Sender<u64>,
    done: watch::Sender<u64>,
}

impl Scrubber {
    pub async fn connect(pool: &Db, url: &str, schedule: CompactionSchedule) -> Result<Self, DbErr> {
        let (db, compactor) = if is_postgres(pool) {
            (pool.clone(), Some(super::connect_compactor(url).await?))
        } else {
            (super::connect_checkpointer(url).await?, None)
        };
        Ok(Scrubber {
            db,
            pool: pool.clone(),
            compactor,
            schedule,
            wake: Notify::new(),
            requested: watch::Sender::new(0),
            done: watch::Sender::new(0),
        })
    }

    /// Asks for a scrub of everything deleted until now. Call after the deleting transaction
    /// committed; returns at once.
    pub fn request(&self) {
        self.requested.send_modify(|n| *n += 1);
        self.wake.notify_one();
    }

    /// Waits until every scrub asked for before this call is done.
    pub async fn settled(&self) {
        let wanted = *self.requested.borrow();
        let mut done = self.done.subscribe();
        let _ = done.wait_for(|&n| n >= wanted).await;
    }

    /// The background task: scrubs when asked (until it succeeds) and, on SQLite, copies the
    /// write-ahead log back passively every 50 ms; on PostgreSQL, compacts when due. Deletions
    /// a previous process left unwiped are scrubbed at start.
    ///
    /// SQLite's automatic checkpoint runs inside the commit that crosses 1,000 pages of WAL,
    /// fsyncs included, so every few hundred signups one batch (and everyone waiting for it)
    /// stalled, which was the tail of the signup latency. A PASSIVE checkpoint never blocks
    /// writers or readers; it copies what no reader still needs.
    pub async fn run(&self, mut stop: watch::Receiver<bool>) {
        let sqlite = !is_postgres(&self.db);
        let retry = if sqlite {
            RETRY_AFTER
        } else {
            RETRY_AFTER_ON_POSTGRES
        };
        match wipe_counts(&self.pool).await {
            Ok((deletions, wiped)) if deletions > wiped => self.request(),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "cannot read whether deleted data awaits wiping"),
        }
        let mut pause = PASSIVE_CHECKPOINT_EVERY;
        let mut next_compaction_check = tokio::time::Instant::now();
        // PostgreSQL: where the scrub for `horizon_for` was first tried, and where the
        // scheduled compaction that older transactions hold up was.
        let (mut horizon, mut horizon_for): (Option<Horizon>, u64) = (None, 0);
        let mut compaction_horizon: Option<Horizon> = None;
        loop {
            let pending = *self.requested.borrow() > *self.done.borrow();
            if !pending {
                pause = if CHECKPOINTS.is_failing() {
                    CHECKPOINT_RETRY_WHILE_FAILING
                } else {
                    PASSIVE_CHECKPOINT_EVERY
                };
            }
            tokio::select! {
                _ = tokio::time::sleep(pause), if sqlite || pending => {}
                _ = tokio::time::sleep_until(next_compaction_check), if !sqlite => {}
                _ = self.wake.notified() => {}
                _ = stop.changed() => return,
            }
            let target = *self.requested.borrow();
            if target > *self.done.borrow() {
                // Deletions asked to be scrubbed since need a horizon taken after them.
                if horizon_for != target {
                    (horizon, horizon_for) = (None, target);
                }
                match self.scrub(&mut horizon).await {
                    Ok(true) => {
                        WIPES.ok();
                        self.done.send_replace(target);
                    }
                    Ok(false) => pause = retry,
                    Err(e) => {
                        WIPES.failed(&e);
                        pause = retry;
                    }
                }
            } else if sqlite {
                // Through a full disk the checkpoint fails every time: said once, and tried
                // less often until it works again.
                match self.db.execute_unprepared("PRAGMA wal_checkpoint(PASSIVE)").await {
                    Ok(_) => CHECKPOINTS.ok(),
                    Err(e) => CHECKPOINTS.failed(&e),
                }
            } else if tokio::time::Instant::now() >= next_compaction_check {
                next_compaction_check = tokio::time::Instant::now() + COMPACTION_CHECK_EVERY;
                // Also catches deletions made by another process (the command line).
                if self.schedule.runs_in_hour(time::OffsetDateTime::now_utc().hour()) {
                    match self.compact_if_due(&mut compaction_horizon).await {
                        Ok(Compaction::HeldUp) => {
                            next_compaction_check = tokio::time::Instant::now() + retry;
                        }
                        Ok(Compaction::NotDue | Compaction::Done) => compaction_horizon = None,
                        Err(e) => {
                            tracing::warn!(error = %e, "compaction did not finish; trying again in a minute");
                        }
                    }
                }
            }
        }
    }

    /// One scrub: SQLite empties its log; PostgreSQL vacuums, or compacts when the schedule
    /// says immediately. False when readers held it up.
    async fn scrub(&self, horizon: &mut Option<Horizon>) -> Result<bool, DbErr> {
        match &self.compactor {
            None => truncate_wal_and_record(&self.db, &self.pool).await,
            Some(_) if self.schedule == CompactionSchedule::Immediately => {
                Ok(self.compact_if_due(horizon).await? != Compaction::HeldUp)
            }
            Some(_) => vacuum_when_unseen(&self.db, horizon).await,
        }
    }

    /// Compacts (PostgreSQL) if anything was deleted since the last compaction. Held up while
    /// another instance compacts or a transaction that began before the deletions runs; the
    /// caller then tries again later with the same `horizon`.
    pub async fn compact_if_due(&self, horizon: &mut Option<Horizon>) -> Result<Compaction, DbErr> {
        let Some(compactor) = &self.compactor else {
            return Ok(Compaction::NotDue);
        };
        let (deletions, wiped) = wipe_counts(compactor).await?;
        if deletions <= wiped {
            return Ok(Compaction::NotDue);
        }
        if !advisory_lock(compactor, "pg_try_advisory_lock").await? {
            return Ok(Compaction::HeldUp);
        }
        let outcome = compact(compactor, horizon).await;
        advisory_lock(compactor, "pg_advisory_unlock").await?;
        Ok(if outcome? {
            Compaction::Done
        } else {
            Compaction::HeldUp
        })
    }
}

/// What [`Scrubber::compact_if_due`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compaction {
    NotDue,
    HeldUp,
    Done,
}

/// Where a PostgreSQL wipe stands while older transactions hold it up: the next transaction id
/// when it was first tried, and the deletions counted before then, which are what it covers.
/// Kept from one try to the next, so that transactions begun since cannot keep it waiting.
#[derive(Clone, Copy, Debug)]
pub struct Horizon {
    xid: i64,
    deletions: i64,
}

impl Horizon {
    /// The one `slot` holds, or one taken now (and kept there).
    async fn of(db: &Db, slot: &mut Option<Horizon>) -> Result<Horizon, DbErr> {
        if let Some(h) = *slot {
            return Ok(h);
        }
        // The count first: every deletion it includes committed before the transaction id.
        let (deletions, _) = wipe_counts(db).await?;
        let row = db
            .query_one_raw(Statement::from_string(
                db.get_database_backend(),
                "SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint",
            ))
            .await?
            .ok_or_else(|| DbErr::Custom("no snapshot".into()))?;
        let xid = row.try_get_by_index::<i64>(0)?;
        Ok(*slot.insert(Horizon { xid, deletions }))
    }
}

/// Takes or releases [`COMPACTION_LOCK`] on this (one-connection) pool's session.
async fn advisory_lock(db: &Db, function: &str) -> Result<bool, DbErr> {
    let row = db
        .query_one_raw(Statement::from_sql_and_values(
            db.get_database_backend(),
            format!("SELECT {function}($1)"),
            [COMPACTION_LOCK.into()],
        ))
        .await?
        .ok_or_else(|| DbErr::Custom("no answer to an advisory lock".into()))?;
    row.try_get_by_index::<bool>(0)
}

/// Scrubs now, for a process without the background task (the CLI): tries for up to `patience`
/// while readers hold it up. Returns whether it succeeded.
pub async fn now(db: &Db, patience: Duration) -> Result<bool, DbErr> {
    patiently(patience, RETRY_AFTER, async |horizon| {
        if is_postgres(db) {
            // Compaction stays due: the service runs it at its hour.
            vacuum_when_unseen(db, horizon).await
        } else {
            truncate_wal_and_record(db, db).await
        }
    })
    .await
}

/// Compacts now, for a process without the background task (the CLI): tries for up to
/// `patience` while older transactions hold it up. Returns whether it compacted.
pub async fn compact_within(db: &Db, patience: Duration) -> Result<bool, DbErr> {
    patiently(patience, RETRY_AFTER_ON_POSTGRES, async |horizon| {
        compact(db, horizon).await
    })
    .await
}

/// Tries `attempt` every `pause`, keeping its horizon from one try to the next, until it
/// succeeds or `patience` has passed. Returns whether it succeeded.
async fn patiently(
    patience: Duration,
    pause: Duration,
    mut attempt: impl AsyncFnMut(&mut Option<Horizon>) -> Result<bool, DbErr>,
) -> Result<bool, DbErr> {
    let deadline = tokio::time::Instant::now() + patience;
    let mut horizon = None;
    loop {
        let done = attempt(&mut horizon).await?;
        if done || tokio::time::Instant::now() >= deadline {
            return Ok(done);
        }
        tokio::time::sleep(pause).await;
    }
}

/// Rewrites the tables that hold personal data, so that not even the free space of their pages
/// keeps a deleted row (PostgreSQL: VACUUM FULL, which locks each table while it copies it).
/// On SQLite, where erasure already overwrites, it only empties the write-ahead log. False
/// when readers or older transactions held it up.
async fn compact(db: &Db, horizon: &mut Option<Horizon>) -> Result<bool, DbErr> {
    if !is_postgres(db) {
        return truncate_wal_and_record(db, db).await;
    }
    let h = Horizon::of(db, horizon).await?;
    if !no_transaction_sees_deleted_rows(db, h.xid, Wipe::Rewrite).await? {
        return Ok(false);
    }
    // One table at a time: each is locked only while it is copied.
    for table in PERSONAL_TABLES.split(", ") {
        db.execute_unprepared(&format!("VACUUM FULL {table}")).await?;
    }
    record_wiped(db, h.deletions, true).await?;
    Ok(true)
}

/// SQLite's wipe: empties the write-ahead log through `wal` and records every deletion counted
/// before it as wiped, through `pool`. False when a reader or another checkpoint held it up.
async fn truncate_wal_and_record(wal: &Db, pool: &Db) -> Result<bool, DbErr> {
    let (deletions, _) = wipe_counts(pool).await?;
    let done = truncate_wal(wal).await?;
    if done {
        record_wiped(pool, deletions, false).await?;
    }
    Ok(done)
}

/// Copies the whole write-ahead log into the database file and cuts the log to zero bytes.
/// False when a reader or another checkpoint held it up (SQLite answers with `busy` = 1 rather
/// than an error); the log is then left as it was and the caller tries again.
async fn truncate_wal(db: &Db) -> Result<bool, DbErr> {
    // Copy what can be copied without the write lock first, so that the truncating checkpoint
    // holds it (and every writer waits) only for the last few pages.
    db.execute_unprepared("PRAGMA wal_checkpoint(PASSIVE)").await?;
    let row = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            "PRAGMA wal_checkpoint(TRUNCATE)",
        ))
        .await?;
    let busy = match row {
        Some(row) => row.try_get_by_index::<i64>(0)?,
        None => 0,
    };
    Ok(busy == 0)
}

/// VACUUMs the personal tables once no transaction that began before the deletions is still
/// running: a row version some snapshot may still see is kept by VACUUM, and would stay until
/// the next one. False when such a transaction is still running.
async fn vacuum_when_unseen(db: &Db, horizon: &mut Option<Horizon>) -> Result<bool, DbErr> {
    let h = Horizon::of(db, horizon).await?;
    if !no_transaction_sees_deleted_rows(db, h.xid, Wipe::Vacuum).await? {
        return Ok(false);
    }
    // INDEX_CLEANUP ON: with few dead rows VACUUM would otherwise leave their index entries,
    // which hold the address, for a later run.
    db.execute_unprepared(&format!("VACUUM (INDEX_CLEANUP ON) {PERSONAL_TABLES}"))
        .await?;
    Ok(true)
}

/// How PostgreSQL wipes, which decides whose transactions can keep a deleted row version.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Wipe {
    /// VACUUM: the sessions of this database. Vacuums leave themselves and each other out,
    /// so autovacuum's workers count only while they ANALYZE, which reads under a snapshot.
    Vacuum,
    /// VACUUM FULL also keeps what its own snapshot may see, and a snapshot's oldest
    /// transaction is the oldest one running in any database of the server.
    Rewrite,
}

/// True when no transaction that began before `horizon` (a transaction id; the deletions
/// committed before it) can still see the rows they deleted, for the `wipe` at hand.
async fn no_transaction_sees_deleted_rows(db: &Db, horizon: i64, wipe: Wipe) -> Result<bool, DbErr> {
    // `age` compares 32-bit transaction ids the way PostgreSQL does, across wraparound; the
    // snapshot's oldest transaction is a 64-bit id, like `horizon`.
    let row = db
        .query_one_raw(Statement::from_sql_and_values(
            db.get_database_backend(),
            "SELECT NOT EXISTS (SELECT 1 FROM pg_stat_activity \
               WHERE datname = current_database() AND pid <> pg_backend_pid() \
               AND (backend_type = 'client backend' \
                    OR (backend_type = 'autovacuum worker' AND query LIKE '%ANALYZE%')) \
               AND (age(backend_xmin) > age($1::text::xid) OR age(backend_xid) > age($1::text::xid))) \
             AND ($3 OR pg_snapshot_xmin(pg_current_snapshot()) >= $2::text::xid8)",
            [
                (horizon % (1 << 32)).to_string().into(),
                horizon.to_string().into(),
                (wipe == Wipe::Vacuum).into(),
            ],
        ))
        .await?
        .ok_or_else(|| DbErr::Custom("no answer".into()))?;
    row.try_get_by_index::<bool>(0)
}
