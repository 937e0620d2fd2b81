//! The claim-and-record protocol shared by the outbox and campaign audiences.
//!
//! A worker leases what it sends: an outbox row, or a block of a campaign's recipient rows
//! (`campaign_blocks`: a range of ids, a few hundred rows). A lease is due when it is free or
//! expired and `next_attempt_at_ms <= now`. Claiming sets the owner and the lease expiry (into
//! `next_attempt_at_ms`). On PostgreSQL `FOR UPDATE SKIP LOCKED` lets several instances claim
//! at once without waiting on each other; SQLite serializes writers.
//!
//! Outbox rows carry their own lease (`status = 'sending'`), the claim counts the attempt, and
//! an outcome is recorded only while the owner still holds it. Recipient rows stay `queued`
//! under their block's lease until an outcome is recorded, which counts the attempt and moves
//! them on once: that one write per recipient touches no indexed column, so on PostgreSQL it is
//! a heap-only update. A block whose rows are all recorded is closed: deleted, or due again
//! when its earliest retry is.

use sea_orm::{ConnectionTrait, DbErr, FromQueryResult, Statement, Value};

use super::daily_counts::{self, Counter};
use super::entities::campaign_recipient::RecipientStatus;
use super::entities::outbox::OutboxStatus;
use super::is_postgres;

pub struct Queue {
    table: &'static str,
    /// The status of rows deliberately not sent.
    skipped_status: &'static str,
    leases: Leased,
}

/// Where a queue keeps its leases.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Leased {
    /// On each row (`status = 'sending'`, `lease_owner`).
    Rows,
    /// On blocks of rows in this table (`first_id`, `last_id`, `campaign_id`).
    Blocks(&'static str),
}

pub static OUTBOX: Queue = Queue {
    table: "outbox",
    skipped_status: OutboxStatus::Cancelled.as_str(),
    leases: Leased::Rows,
};

pub static CAMPAIGN_RECIPIENTS: Queue = Queue {
    table: "campaign_recipients",
    skipped_status: RecipientStatus::Skipped.as_str(),
    leases: Leased::Blocks("campaign_blocks"),
};

/// The outcome of one send.
#[derive(Debug, Clone)]
pub enum Outcome {
    Sent {
        message_id: String,
    },
    Retry {
        at_ms: i64,
        error: String,
    },
    /// The relay could not be reached: try again later without counting the attempt.
    Deferred {
        at_ms: i64,
        error: String,
    },
    Failed {
        error: String,
    },
    /// Not sent on purpose (suppressed, unsubscribed, erased): no error.
    Skipped {
        reason: String,
    },
    /// Not sent because what it belonged to was cancelled meanwhile.
    Cancelled,
}

impl Outcome {
    /// The per-day counter the outcome adds to; not sending on purpose counts nowhere.
    fn counter(&self) -> Option<Counter> {
        match self {
            Outcome::Sent { .. } => Some(Counter::Sent),
            Outcome::Retry { .. } => Some(Counter::Retried),
            Outcome::Deferred { .. } => Some(Counter::Deferred),
            Outcome::Failed { .. } => Some(Counter::Failed),
            Outcome::Skipped { .. } | Outcome::Cancelled => None,
        }
    }
}

fn truncate(mut s: String) -> String {
    if s.len() > 1000 {
        let mut cut = 1000;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s
}

/// The rows of a queue still to be sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, FromQueryResult)]
pub struct Backlog {
    pub queued: i64,
    pub sending: i64,
}

/// The condition that row `r` of `campaign_recipients` is a queued row of `block` (a
/// `campaign_blocks` row or its alias). `+r.campaign_id` keeps SQLite on the primary key: it
/// would otherwise read every row of the campaign through the (campaign_id, subscriber_id)
/// index instead of the block's ids.
pub(super) fn queued_in_block(block: &str) -> String {
    format!(
        "r.id BETWEEN {block}.first_id AND {block}.last_id AND +r.campaign_id = {block}.campaign_id \
         AND r.status = 'queued'"
    )
}

impl Queue {
    /// The table's name.
    pub fn name(&self) -> &'static str {
        self.table
    }

    /// Whether a lease, once every row it brought is recorded, is to be closed
    /// ([`Self::close`]): a block is; an outbox row's record let go of its lease.
    pub fn closes_leases(&self) -> bool {
        matches!(self.leases, Leased::Blocks(_))
    }

    /// The table that holds the leases.
    fn lease_table(&self) -> &'static str {
        match self.leases {
            Leased::Rows => self.table,
            Leased::Blocks(blocks) => blocks,
        }
    }

    /// The leases owner `$1` holds, in [`Self::lease_table`].
    fn held_by_owner(&self) -> &'static str {
        match self.leases {
            Leased::Rows => "lease_owner = $1 AND status = 'sending'",
            Leased::Blocks(_) => "lease_owner = $1",
        }
    }

    /// How many rows wait (`queued`) and how many a worker holds (`sending`). Its cost
    /// follows the backlog, not the history of sent rows: on the outbox it reads the
    /// claimable index, whose condition it repeats; for campaigns it reads the rows of the
    /// blocks left.
    pub async fn backlog(&self, db: &impl ConnectionTrait) -> Result<Backlog, DbErr> {
        let sql = match self.leases {
            Leased::Rows => format!(
                "SELECT CAST(COALESCE(SUM(CASE WHEN status = 'queued' THEN 1 ELSE 0 END), 0) AS BIGINT) AS queued, \
                 CAST(COALESCE(SUM(CASE WHEN status = 'sending' THEN 1 ELSE 0 END), 0) AS BIGINT) AS sending \
                 FROM {} WHERE status IN ('queued', 'sending')",
                self.table
            ),
            Leased::Blocks(blocks) => format!(
                "SELECT CAST(COALESCE(SUM(CASE WHEN b.lease_owner IS NULL THEN 1 ELSE 0 END), 0) AS BIGINT) AS queued, \
                 CAST(COALESCE(SUM(CASE WHEN b.lease_owner IS NULL THEN 0 ELSE 1 END), 0) AS BIGINT) AS sending \
                 FROM {blocks} b JOIN {t} r ON {}",
                queued_in_block("b"),
                t = self.table
            ),
        };
        Ok(
            Backlog::find_by_statement(Statement::from_string(db.get_database_backend(), sql))
                .one(db)
                .await?
                .unwrap_or_default(),
        )
    }

    /// The claim statement of a queue leased by rows: takes up to `$4` due rows, oldest
    /// first, for owner `$1` with a lease until `$2` (due: `next_attempt_at_ms <= $3`), and
    /// returns `returning`.
    pub fn claim_sql(&self, postgres: bool, returning: &str) -> String {
        debug_assert!(self.leases == Leased::Rows, "{} is leased by blocks", self.table);
        let lock = if postgres { "FOR UPDATE SKIP LOCKED" } else { "" };
        format!(
            "UPDATE {t} SET status = 'sending', lease_owner = $1, next_attempt_at_ms = $2, \
             attempts = attempts + 1 \
             WHERE id IN (SELECT id FROM {t} WHERE status IN ('queued', 'sending') \
             AND next_attempt_at_ms <= $3 ORDER BY next_attempt_at_ms, id LIMIT $4 {lock}) \
             RETURNING {returning}",
            t = self.table,
        )
    }

    pub async fn claim<T: FromQueryResult>(
        &self,
        db: &impl ConnectionTrait,
        owner: &str,
        now_ms: i64,
        lease_until_ms: i64,
        limit: u32,
        returning: &str,
    ) -> Result<Vec<T>, DbErr> {
        T::find_by_statement(Statement::from_sql_and_values(
            db.get_database_backend(),
            self.claim_sql(is_postgres(db), returning),
            [
                owner.into(),
                lease_until_ms.into(),
                now_ms.into(),
                i64::from(limit).into(),
            ],
        ))
        .all(db)
        .await
    }

    /// Extends the leases `owner` holds on `ids` (rows or blocks) until `until_ms`: the
    /// worker's heartbeat, so that a short lease holds for as long as a live worker needs it.
    /// Returns the leases renewed.
    pub async fn renew(
        &self,
        db: &impl ConnectionTrait,
        owner: &str,
        ids: &[i64],
        until_ms: i64,
    ) -> Result<u64, DbErr> {
        self.for_held(db, "next_attempt_at_ms = $2", owner, ids, until_ms, true)
            .await
    }

    /// Hands back leases `owner` holds and did not finish (a graceful stop): due again at
    /// `now_ms` for any worker. An outbox row's attempt, counted by its claim, is taken back;
    /// a block's rows have counted none.
    pub async fn release(
        &self,
        db: &impl ConnectionTrait,
        owner: &str,
        ids: &[i64],
        now_ms: i64,
    ) -> Result<u64, DbErr> {
        let set = match self.leases {
            Leased::Rows => {
                "status = 'queued', lease_owner = NULL, next_attempt_at_ms = $2, attempts = attempts - 1"
            }
            Leased::Blocks(_) => "lease_owner = NULL, next_attempt_at_ms = $2",
        };
        self.for_held(db, set, owner, ids, now_ms, false).await
    }

    /// `UPDATE … SET {set}` on the leases of `ids` that `owner` still holds, `$2` bound to
    /// `at_ms`. With `skip_locked` (PostgreSQL), leases another statement has locked are left
    /// alone: an outbox renewal that waited on the recorder's locks while the recorder waited
    /// on its own could deadlock, and the aborted record left its rows to lapse and be sent
    /// twice. A row being recorded needs no renewal, and any other is renewed a third of a
    /// lease later.
    async fn for_held(
        &self,
        db: &impl ConnectionTrait,
        set: &str,
        owner: &str,
        ids: &[i64],
        at_ms: i64,
        skip_locked: bool,
    ) -> Result<u64, DbErr> {
        let mut changed = 0;
        let (table, held) = (self.lease_table(), self.held_by_owner());
        for chunk in ids.chunks(super::ROWS_PER_STATEMENT) {
            let v = super::json_rows(db.get_database_backend(), 3, &["bigint"]);
            let targets = if skip_locked && is_postgres(db) {
                format!(
                    "SELECT id FROM {table} WHERE id IN (SELECT column1 FROM {v}) AND {held} \
                     FOR UPDATE SKIP LOCKED"
                )
            } else {
                format!("SELECT column1 FROM {v}")
            };
            let sql = format!("UPDATE {table} SET {set} WHERE id IN ({targets}) AND {held}");
            let rows: Vec<(i64,)> = chunk.iter().map(|id| (*id,)).collect();
            let values: Vec<Value> = vec![owner.into(), at_ms.into(), super::json_rows_value(&rows)];
            changed += db
                .execute_raw(Statement::from_sql_and_values(
                    db.get_database_backend(),
                    sql,
                    values,
                ))
                .await?
                .rows_affected();
        }
        Ok(changed)
    }

    /// How a record is fenced, and what it does besides the outcome's own columns, as (extra
    /// `SET` terms, `WHERE` condition); binds the owner into `params` where the fence needs it.
    /// An outbox row is recorded only while its owner still holds its lease, which the record
    /// lets go; its claim counted the attempt (taken back for a deferral). A recipient is
    /// recorded once, while still `queued`, and the record counts the attempt (not a deferral).
    fn record_fence(&self, deferred: bool, owner: &str, params: &mut Vec<Value>) -> (&'static str, String) {
        match self.leases {
            Leased::Rows => {
                params.push(owner.into());
                let set = if deferred {
                    ", lease_owner = NULL, attempts = attempts - 1"
                } else {
                    ", lease_owner = NULL"
                };
                (
                    set,
                    format!("lease_owner = ${} AND status = 'sending'", params.len()),
                )
            }
            Leased::Blocks(_) => {
                let set = if deferred { "" } else { ", attempts = attempts + 1" };
                (set, "status = 'queued'".into())
            }
        }
    }

    /// Records the outcome; false when it was not the owner's to record: an outbox row's
    /// lease was lost, or a recipient's outcome was recorded already (by a worker that took
    /// over a lapsed block).
    pub async fn record(
        &self,
        db: &impl ConnectionTrait,
        id: i64,
        owner: &str,
        outcome: Outcome,
    ) -> Result<bool, DbErr> {
        // $1 the id; the fence's owner, if any; then the outcome's values.
        let mut all: Vec<Value> = vec![id.into()];
        let deferred = matches!(outcome, Outcome::Deferred { .. });
        let (extra, fence) = self.record_fence(deferred, owner, &mut all);
        let n = all.len();
        let p = |k: usize| format!("${}", n + k);
        let set: String = match outcome {
            Outcome::Sent { message_id } => {
                let set = format!(
                    "status = 'sent', sent_at = {}, message_id = {}, last_error = NULL",
                    p(1),
                    p(2)
                );
                all.extend([super::now().into(), message_id.into()]);
                set
            }
            Outcome::Retry { at_ms, error } | Outcome::Deferred { at_ms, error } => {
                all.extend([at_ms.into(), truncate(error).into()]);
                format!(
                    "status = 'queued', next_attempt_at_ms = {}, last_error = {}",
                    p(1),
                    p(2)
                )
            }
            Outcome::Failed { error } => {
                all.push(truncate(error).into());
                format!("status = 'failed', last_error = {}", p(1))
            }
            Outcome::Skipped { reason } => {
                all.push(truncate(reason).into());
                format!("status = '{}', last_error = {}", self.skipped_status, p(1))
            }
            Outcome::Cancelled => "status = 'cancelled', last_error = NULL".into(),
        };
        let sql = format!("UPDATE {} SET {set}{extra} WHERE id = $1 AND {fence}", self.table);
        let res = db
            .execute_raw(Statement::from_sql_and_values(
                db.get_database_backend(),
                sql,
                all,
            ))
            .await?;
        Ok(res.rows_affected() > 0)
    }
    /// Records the outcomes of one owner's sends; says per outcome whether it was recorded
    /// (false: the lease was lost). Sent outcomes, nearly all of them, share one statement per
    /// chunk; the rest are recorded one by one. What was recorded is added to the day's
    /// counters in one more statement.
    pub async fn record_many(
        &self,
        db: &impl ConnectionTrait,
        owner: &str,
        outcomes: Vec<(i64, Outcome)>,
    ) -> Vec<Result<bool, String>> {
        let counters: Vec<Option<Counter>> = outcomes.iter().map(|(_, o)| o.counter()).collect();
        let mut results: Vec<Result<bool, String>> = Vec::with_capacity(outcomes.len());
        let mut sent: Vec<(usize, i64, String)> = Vec::new();
        for (i, (id, outcome)) in outcomes.into_iter().enumerate() {
            match outcome {
                Outcome::Sent { message_id } => {
                    results.push(Ok(false));
                    sent.push((i, id, message_id));
                }
                other => results.push(self.record(db, id, owner, other).await.map_err(|e| e.to_string())),
            }
        }
        // On PostgreSQL the statement that records them counts the sent rows too (one round
        // trip, not two).
        let counted_sent = is_postgres(db);
        for chunk in sent.chunks(super::ROWS_PER_STATEMENT) {
            match self.record_sent(db, owner, chunk).await {
                Ok(recorded) => {
                    for (i, id, _) in chunk {
                        results[*i] = Ok(recorded.contains(id));
                    }
                }
                Err(e) => {
                    for (i, _, _) in chunk {
                        results[*i] = Err(e.to_string());
                    }
                }
            }
        }
        let recorded: Vec<(Counter, u64)> = counters
            .into_iter()
            .zip(&results)
            .filter_map(|(counter, result)| {
                counter
                    .filter(|c| *result == Ok(true) && !(counted_sent && *c == Counter::Sent))
                    .map(|c| (c, 1))
            })
            .collect();
        if let Err(e) = daily_counts::add(db, &recorded).await {
            // The outcomes stand; only the day's statistics miss them.
            tracing::warn!(error = %e, "counting delivery outcomes failed");
        }
        results
    }

    /// Marks rows sent with their Message-IDs, fenced as [`Self::record`] is; returns the ids
    /// recorded. On PostgreSQL it also adds them to the day's `sent` counter.
    async fn record_sent(
        &self,
        db: &impl ConnectionTrait,
        owner: &str,
        sent: &[(usize, i64, String)],
    ) -> Result<Vec<i64>, DbErr> {
        #[derive(FromQueryResult)]
        struct Recorded {
            id: i64,
        }
        let backend = db.get_database_backend();
        let rows: Vec<(i64, &str)> = sent.iter().map(|(_, id, m)| (*id, m.as_str())).collect();
        let now = super::now();
        // $1 the time; the fence's owner, if any; then the rows.
        let mut all: Vec<Value> = vec![now.into()];
        let (extra, fence) = self.record_fence(false, owner, &mut all);
        let v = super::json_rows(backend, all.len() + 1, &["bigint", "text"]);
        all.push(super::json_rows_value(&rows));
        let update = format!(
            "UPDATE {t} SET status = 'sent', sent_at = $1, message_id = v.column2, last_error = NULL\
             {extra} FROM {v} WHERE {t}.id = v.column1 AND {fence} RETURNING {t}.id",
            t = self.table
        );
        let sql = if is_postgres(db) {
            let day = format!("${}", all.len() + 1);
            all.push(daily_counts::day_of(now).into());
            format!(
                "WITH recorded AS ({update}), counted AS ({}) SELECT id FROM recorded",
                daily_counts::counting("recorded", Counter::Sent, &day, "$1")
            )
        } else {
            update
        };
        // A repeated row matches the same recipient row, which is updated once.
        let rows = Recorded::find_by_statement(Statement::from_sql_and_values(backend, sql, all))
            .all(db)
            .await?;
        Ok(rows.into_iter().map(|r| r.id).collect())
    }

    /// Closes blocks `owner` holds whose claimed rows are all recorded: a block with no row
    /// left to send is deleted; one with rows to retry is let go, due when the first of them
    /// is. (Nothing to do for a queue leased by rows, see [`Self::closes_leases`].)
    pub async fn close(
        &self,
        db: &impl ConnectionTrait,
        owner: &str,
        blocks: &[i64],
        now_ms: i64,
    ) -> Result<(), DbErr> {
        let Leased::Blocks(b) = self.leases else {
            return Ok(());
        };
        let backend = db.get_database_backend();
        let rows_left = format!("FROM {t} r WHERE {}", queued_in_block(b), t = self.table);
        for id in blocks {
            let deleted = db
                .execute_raw(Statement::from_sql_and_values(
                    backend,
                    format!("DELETE FROM {b} WHERE id = $1 AND lease_owner = $2 AND NOT EXISTS (SELECT 1 {rows_left})"),
                    [(*id).into(), owner.into()],
                ))
                .await?
                .rows_affected();
            if deleted == 0 {
                db.execute_raw(Statement::from_sql_and_values(
                    backend,
                    format!(
                        "UPDATE {b} SET lease_owner = NULL, \
                         next_attempt_at_ms = COALESCE((SELECT MIN(r.next_attempt_at_ms) {rows_left}), $3) \
                         WHERE id = $1 AND lease_owner = $2"
                    ),
                    [(*id).into(), owner.into(), now_ms.into()],
                ))
                .await?;
            }
        }
        Ok(())
    }
}
