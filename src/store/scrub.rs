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
//!   row of a page can stay in the page's free space until the page is written again. [`compact`]
//!   (VACUUM FULL, `letterhead retention compact`) rewrites the tables and removes that too.
//!
//! The request that erases only asks for a scrub ([`Scrubber::request`]); one background task
//! runs it, off the request's transaction, and several requests made meanwhile share one run.
//! The same task runs SQLite's routine passive checkpoints, so two checkpoints never contend.

use std::time::Duration;

use sea_orm::{ConnectionTrait, DbErr, Statement};
use tokio::sync::{Notify, watch};

use super::{Db, is_postgres};

/// Every table a person's address, name, IP or user agent can sit in.
const PERSONAL_TABLES: &str =
    "subscribers, subscriptions, consent_events, outbox, address_changes, campaign_recipients";

/// How often SQLite's write-ahead log is copied back passively (see [`Scrubber::run`]).
const PASSIVE_CHECKPOINT_EVERY: Duration = Duration::from_millis(50);

/// How long to wait before trying a scrub again that readers, older transactions or an error
/// held up: SQLite's checkpoint gives up within milliseconds, so it may try again soon.
const RETRY_AFTER: Duration = Duration::from_millis(20);
const RETRY_AFTER_ON_POSTGRES: Duration = Duration::from_millis(100);

/// Scrubs asked for and scrubs done, counted, so that whoever asks can wait for theirs.
pub struct Scrubber {
    /// The pool on PostgreSQL; on SQLite a connection of its own with a short busy timeout
    /// (`connect_checkpointer`), so that a checkpoint never holds the write lock for long.
    db: Db,
    wake: Notify,
    requested: watch::Sender<u64>,
    done: watch::Sender<u64>,
}

impl Scrubber {
    pub async fn connect(pool: &Db, url: &str) -> Result<Self, DbErr> {
        let db = if is_postgres(pool) {
            pool.clone()
        } else {
            super::connect_checkpointer(url).await?
        };
        Ok(Scrubber {
            db,
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
    /// write-ahead log back passively every 50 ms.
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
        let mut pause = PASSIVE_CHECKPOINT_EVERY;
        // PostgreSQL: the next transaction id when the scrub for `horizon_for` was first tried.
        let (mut horizon, mut horizon_for): (Option<i64>, u64) = (None, 0);
        loop {
            let pending = *self.requested.borrow() > *self.done.borrow();
            if !pending {
                pause = PASSIVE_CHECKPOINT_EVERY;
            }
            tokio::select! {
                _ = tokio::time::sleep(pause), if sqlite || pending => {}
                _ = self.wake.notified() => {}
                _ = stop.changed() => return,
            }
            let target = *self.requested.borrow();
            if target > *self.done.borrow() {
                // Deletions asked to be scrubbed since need a horizon taken after them.
                if horizon_for != target {
                    (horizon, horizon_for) = (None, target);
                }
                let outcome = if sqlite {
                    truncate_wal(&self.db).await
                } else {
                    vacuum_when_unseen(&self.db, &mut horizon).await
                };
                match outcome {
                    Ok(true) => {
                        self.done.send_replace(target);
                    }
                    Ok(false) => pause = retry,
                    Err(e) => {
                        tracing::warn!(error = %e, "wiping deleted data failed; trying again shortly");
                        pause = retry;
                    }
                }
            } else if sqlite
                && let Err(e) = self.db.execute_unprepared("PRAGMA wal_checkpoint(PASSIVE)").await
            {
                tracing::warn!(error = %e, "WAL checkpoint failed; trying again shortly");
            }
        }
    }
}

/// Scrubs now, for a process without the background task (the CLI): tries for up to `patience`
/// while readers hold it up. Returns whether it succeeded.
pub async fn now(db: &Db, patience: Duration) -> Result<bool, DbErr> {
    let deadline = tokio::time::Instant::now() + patience;
    let mut horizon = None;
    loop {
        let done = if is_postgres(db) {
            vacuum_when_unseen(db, &mut horizon).await?
        } else {
            truncate_wal(db).await?
        };
        if done || tokio::time::Instant::now() >= deadline {
            return Ok(done);
        }
        tokio::time::sleep(RETRY_AFTER).await;
    }
}

/// Rewrites the tables that hold personal data, so that not even the free space of their pages
/// keeps a deleted row (PostgreSQL: VACUUM FULL, which locks each table while it copies it).
/// On SQLite, where erasure already overwrites, it only empties the write-ahead log.
pub async fn compact(db: &Db) -> Result<bool, DbErr> {
    if !is_postgres(db) {
        return truncate_wal(db).await;
    }
    let mut horizon = None;
    while !no_transaction_sees_deleted_rows(db, &mut horizon).await? {
        tokio::time::sleep(RETRY_AFTER_ON_POSTGRES).await;
    }
    db.execute_unprepared(&format!("VACUUM FULL {PERSONAL_TABLES}"))
        .await?;
    Ok(true)
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
async fn vacuum_when_unseen(db: &Db, horizon: &mut Option<i64>) -> Result<bool, DbErr> {
    if !no_transaction_sees_deleted_rows(db, horizon).await? {
        return Ok(false);
    }
    // INDEX_CLEANUP ON: with few dead rows VACUUM would otherwise leave their index entries,
    // which hold the address, for a later run.
    db.execute_unprepared(&format!("VACUUM (INDEX_CLEANUP ON) {PERSONAL_TABLES}"))
        .await?;
    Ok(true)
}

/// True when every other session of this database has a snapshot newer than `horizon`, the
/// next transaction id when first asked (set then; the deletions committed before it).
async fn no_transaction_sees_deleted_rows(db: &Db, horizon: &mut Option<i64>) -> Result<bool, DbErr> {
    let backend = db.get_database_backend();
    let xid = match *horizon {
        Some(xid) => xid,
        None => {
            let row = db
                .query_one_raw(Statement::from_string(
                    backend,
                    "SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint",
                ))
                .await?
                .ok_or_else(|| DbErr::Custom("no snapshot".into()))?;
            *horizon.insert(row.try_get_by_index::<i64>(0)?)
        }
    };
    // `age` compares 32-bit transaction ids the way PostgreSQL does, across wraparound.
    let row = db
        .query_one_raw(Statement::from_sql_and_values(
            backend,
            "SELECT COUNT(*) FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid() \
             AND backend_type = 'client backend' \
             AND (age(backend_xmin) > age($1::text::xid) OR age(backend_xid) > age($1::text::xid))",
            [(xid % (1 << 32)).to_string().into()],
        ))
        .await?
        .ok_or_else(|| DbErr::Custom("no count".into()))?;
    Ok(row.try_get_by_index::<i64>(0)? == 0)
}
