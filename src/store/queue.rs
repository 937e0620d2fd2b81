//! The claim-and-record protocol shared by the outbox and campaign recipients.
//!
//! A row is due when `status` is `queued` (or `sending` with an expired lease) and
//! `next_attempt_at_ms <= now`. Claiming sets `sending`, the owner, the lease expiry (into
//! `next_attempt_at_ms`) and counts the attempt. On PostgreSQL `FOR UPDATE SKIP LOCKED` lets
//! several instances claim at once without waiting on each other; SQLite serializes writers.
//! Outcomes are recorded only while the owner still holds the lease.

use sea_orm::{ConnectionTrait, DbErr, FromQueryResult, Statement, Value};

use super::daily_counts::{self, Counter};
use super::entities::campaign_recipient::RecipientStatus;
use super::entities::outbox::OutboxStatus;
use super::is_postgres;

pub struct Queue {
    table: &'static str,
    /// The status of rows deliberately not sent.
    skipped_status: &'static str,
    /// Extra condition on claimable rows, per database (`true`: PostgreSQL).
    claim_filter: fn(bool) -> &'static str,
}

pub static OUTBOX: Queue = Queue {
    table: "outbox",
    skipped_status: OutboxStatus::Cancelled.as_str(),
    claim_filter: |_| "",
};

pub static CAMPAIGN_RECIPIENTS: Queue = Queue {
    table: "campaign_recipients",
    skipped_status: RecipientStatus::Skipped.as_str(),
    claim_filter: |postgres| {
        if postgres {
            // PostgreSQL estimates the join from campaign_id's statistics and takes the
            // claimable index. (With SQLite's `+` below it cannot: it misjudges the join and
            // sorts every due row for each claim.)
            "AND campaign_id IN (SELECT id FROM campaigns WHERE status = 'sending')"
        } else {
            // The unary `+` keeps SQLite from choosing the (campaign_id, …) index, which
            // without statistics it prefers, and then sorting every due row of the campaign
            // for each claim.
            "AND +campaign_id IN (SELECT id FROM campaigns WHERE status = 'sending')"
        }
    },
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
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Backlog {
    pub queued: i64,
    pub sending: i64,
}

#[derive(FromQueryResult)]
struct StatusCount {
    status: String,
    n: i64,
}

impl Queue {
    /// The table's name.
    pub fn name(&self) -> &'static str {
        self.table
    }

    /// How many rows wait (`queued`) and how many a worker holds (`sending`). It reads the
    /// claimable index, whose condition it repeats, so its cost follows the backlog, not the
    /// history of sent rows.
    pub async fn backlog(&self, db: &impl ConnectionTrait) -> Result<Backlog, DbErr> {
        let rows = StatusCount::find_by_statement(Statement::from_string(
            db.get_database_backend(),
            format!(
                "SELECT status, COUNT(*) AS n FROM {} WHERE status IN ('queued', 'sending') GROUP BY status",
                self.table
            ),
        ))
        .all(db)
        .await?;
        let mut backlog = Backlog::default();
        for row in rows {
            match row.status.as_str() {
                "queued" => backlog.queued = row.n,
                _ => backlog.sending = row.n,
            }
        }
        Ok(backlog)
    }

    /// The claim statement: takes up to `$4` due rows, oldest first, for owner `$1` with a
    /// lease until `$2` (due: `next_attempt_at_ms <= $3`), and returns `returning`.
    pub fn claim_sql(&self, postgres: bool, returning: &str) -> String {
        let lock = if postgres { "FOR UPDATE SKIP LOCKED" } else { "" };
        format!(
            "UPDATE {t} SET status = 'sending', lease_owner = $1, next_attempt_at_ms = $2, \
             attempts = attempts + 1 \
             WHERE id IN (SELECT id FROM {t} WHERE status IN ('queued', 'sending') \
             AND next_attempt_at_ms <= $3 {f} ORDER BY next_attempt_at_ms, id LIMIT $4 {lock}) \
             RETURNING {returning}",
            t = self.table,
            f = (self.claim_filter)(postgres),
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

    /// Extends the leases `owner` holds on `ids` until `until_ms`: the worker's heartbeat, so
    /// that a short lease holds for as long as a live worker needs it. Returns the rows renewed.
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

    /// Hands back rows `owner` claimed and did not attempt (a graceful stop): due again at
    /// `now_ms` for any worker, the attempt their claim counted taken back.
    pub async fn release(
        &self,
        db: &impl ConnectionTrait,
        owner: &str,
        ids: &[i64],
        now_ms: i64,
    ) -> Result<u64, DbErr> {
        self.for_held(
            db,
            "status = 'queued', lease_owner = NULL, next_attempt_at_ms = $2, attempts = attempts - 1",
            owner,
            ids,
            now_ms,
            false,
        )
        .await
    }

    /// `UPDATE … SET {set}` on the rows of `ids` that `owner` still holds, `$2` bound to `at_ms`.
    /// With `skip_locked` (PostgreSQL), rows another statement has locked are left alone: a
    /// renewal that waited on the recorder's locks while the recorder waited on its own could
    /// deadlock, and the aborted record left its rows to lapse and be sent twice. A row being
    /// recorded needs no renewal, and any other is renewed a third of a lease later.
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
        let held = "lease_owner = $1 AND status = 'sending'";
        for chunk in ids.chunks(super::ROWS_PER_STATEMENT) {
            let v = super::json_rows(db.get_database_backend(), 3, &["bigint"]);
            let targets = if skip_locked && is_postgres(db) {
                format!(
                    "SELECT id FROM {t} WHERE id IN (SELECT column1 FROM {v}) AND {held} \
                     FOR UPDATE SKIP LOCKED",
                    t = self.table
                )
            } else {
                format!("SELECT column1 FROM {v}")
            };
            let sql = format!(
                "UPDATE {t} SET {set} WHERE id IN ({targets}) AND {held}",
                t = self.table
            );
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

    /// Records the outcome; false when the lease was lost (another worker took the row over).
    pub async fn record(
        &self,
        db: &impl ConnectionTrait,
        id: i64,
        owner: &str,
        outcome: Outcome,
    ) -> Result<bool, DbErr> {
        let (set, values): (String, Vec<Value>) = match outcome {
            Outcome::Sent { message_id } => (
                "status = 'sent', sent_at = $3, message_id = $4, last_error = NULL".into(),
                vec![super::now().into(), message_id.into()],
            ),
            Outcome::Retry { at_ms, error } => (
                "status = 'queued', next_attempt_at_ms = $3, last_error = $4".into(),
                vec![at_ms.into(), truncate(error).into()],
            ),
            Outcome::Deferred { at_ms, error } => (
                "status = 'queued', next_attempt_at_ms = $3, last_error = $4, attempts = attempts - 1".into(),
                vec![at_ms.into(), truncate(error).into()],
            ),
            Outcome::Failed { error } => (
                "status = 'failed', last_error = $3".into(),
                vec![truncate(error).into()],
            ),
            Outcome::Skipped { reason } => (
                format!("status = '{}', last_error = $3", self.skipped_status),
                vec![truncate(reason).into()],
            ),
            Outcome::Cancelled => ("status = 'cancelled', last_error = NULL".into(), vec![]),
        };
        let sql = format!(
            "UPDATE {} SET {set}, lease_owner = NULL WHERE id = $1 AND lease_owner = $2 AND status = 'sending'",
            self.table
        );
        let mut all: Vec<Value> = vec![id.into(), owner.into()];
        all.extend(values);
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
            .filter_map(|(counter, result)| counter.filter(|_| *result == Ok(true)).map(|c| (c, 1)))
            .collect();
        if let Err(e) = daily_counts::add(db, &recorded).await {
            // The outcomes stand; only the day's statistics miss them.
            tracing::warn!(error = %e, "counting delivery outcomes failed");
        }
        results
    }

    /// Marks rows sent with their Message-IDs, fenced by the lease; returns the ids recorded.
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
        // A repeated row matches the same recipient row, which is updated once.
        let v = super::json_rows(db.get_database_backend(), 3, &["bigint", "text"]);
        let sql = format!(
            "UPDATE {t} SET status = 'sent', sent_at = $2, message_id = v.column2, last_error = NULL, \
             lease_owner = NULL FROM {v} \
             WHERE {t}.id = v.column1 AND {t}.lease_owner = $1 AND {t}.status = 'sending' RETURNING id",
            t = self.table
        );
        let rows: Vec<(i64, &str)> = sent.iter().map(|(_, id, m)| (*id, m.as_str())).collect();
        let all: Vec<Value> = vec![owner.into(), super::now().into(), super::json_rows_value(&rows)];
        let rows = Recorded::find_by_statement(Statement::from_sql_and_values(
            db.get_database_backend(),
            sql,
            all,
        ))
        .all(db)
        .await?;
        Ok(rows.into_iter().map(|r| r.id).collect())
    }
}
