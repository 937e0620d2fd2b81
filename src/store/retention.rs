//! Retention: personal data is deleted when its period ends (GD-5 and the policy's promise).
//!
//! - Signups never confirmed go after `UNCONFIRMED_RETENTION_DAYS`.
//! - IP addresses and user agents kept with consent evidence (for abuse detection only) are
//!   blanked after `ABUSE_DATA_RETENTION_DAYS`; the rest of the evidence stays.
//! - People who left — unsubscribed from everything, or hard-bounced — go after
//!   `RETENTION_DAYS_AFTER_LEAVING`: subscriber, names, consent evidence, send log. Only the
//!   keyed-hash suppression of the address stays (GD-4), and campaign totals, whose rows then
//!   name no one.
//!
//! Runs periodically, in bounded batches of idempotent statements, so several instances may run
//! it at once. Logs counts, never addresses. The clock is a parameter: tests move time instead of
//! sleeping, and `letterhead retention run --dry-run` counts without deleting.

use sea_orm::{ConnectionTrait, DbErr, FromQueryResult, Statement, Value};

use super::Db;
use super::daily_counts::{self, Counter};
use crate::config::RetentionConfig;

const BATCH: i64 = 1000;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct RetentionReport {
    pub unconfirmed_subscriptions_deleted: u64,
    /// New names given at a signup and never confirmed.
    pub unconfirmed_names_dropped: u64,
    pub subscribers_deleted: u64,
    pub consent_events_anonymized: u64,
    pub leavers_deleted: u64,
    pub bounced_deleted: u64,
}

impl RetentionReport {
    /// Whether the run deleted or blanked anything, which then wants wiping from disk
    /// (`scrub`).
    pub fn deleted_anything(&self) -> bool {
        *self != RetentionReport::default()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Apply,
    /// Count what would be deleted; change nothing.
    DryRun,
}

/// Rows matched by `condition` (with `$1` bound to `cutoff`) in `table`: deleted or updated by
/// `action` in batches, or only counted.
async fn batched(
    db: &Db,
    mode: Mode,
    table: &str,
    condition: &str,
    action: &str,
    cutoff: Value,
) -> Result<u64, DbErr> {
    let backend = db.get_database_backend();
    if mode == Mode::DryRun {
        #[derive(FromQueryResult)]
        struct N {
            n: i64,
        }
        let n = N::find_by_statement(Statement::from_sql_and_values(
            backend,
            format!("SELECT COUNT(*) AS n FROM {table} t WHERE {condition}"),
            [cutoff],
        ))
        .one(db)
        .await?
        .map_or(0, |r| r.n);
        return Ok(u64::try_from(n).unwrap_or(0));
    }
    // Counted as due for a wipe before anything goes, so that a crash in between leaves it
    // due (each batch commits on its own).
    let due = db
        .query_one_raw(Statement::from_sql_and_values(
            backend,
            format!("SELECT 1 FROM {table} t WHERE {condition} LIMIT 1"),
            [cutoff.clone()],
        ))
        .await?;
    if due.is_none() {
        return Ok(0);
    }
    super::scrub::note_deletion(db).await?;
    let mut total = 0;
    loop {
        let sql = format!("{action} WHERE id IN (SELECT t.id FROM {table} t WHERE {condition} LIMIT $2)");
        let res = db
            .execute_raw(Statement::from_sql_and_values(
                backend,
                sql,
                [cutoff.clone(), BATCH.into()],
            ))
            .await?;
        total += res.rows_affected();
        if res.rows_affected() < BATCH as u64 {
            return Ok(total);
        }
    }
}

/// Subscribers who have subscriptions and left every one of them before the cut-off.
const LEFT_EVERYTHING: &str = "EXISTS (SELECT 1 FROM subscriptions x WHERE x.subscriber_id = t.id) \
    AND NOT EXISTS (SELECT 1 FROM subscriptions x WHERE x.subscriber_id = t.id \
    AND (x.status <> 'unsubscribed' OR x.unsubscribed_at IS NULL OR x.unsubscribed_at >= $1))";

/// Subscribers whose address hard-bounced (or drew a complaint) before the cut-off.
const BOUNCED: &str = "EXISTS (SELECT 1 FROM suppressions sp WHERE sp.address_hmac = t.address_hmac \
    AND sp.reason IN ('hard_bounce', 'complaint') AND sp.created_at < $1)";

pub async fn run(
    db: &Db,
    cfg: &RetentionConfig,
    now: time::OffsetDateTime,
    mode: Mode,
) -> Result<RetentionReport, DbErr> {
    let unconfirmed_cutoff_ms = ((now - cfg.unconfirmed).unix_timestamp_nanos() / 1_000_000) as i64;
    let mut report = RetentionReport {
        unconfirmed_subscriptions_deleted: batched(
            db,
            mode,
            "subscriptions",
            "t.status = 'pending' AND t.pending_since_ms < $1",
            "DELETE FROM subscriptions",
            unconfirmed_cutoff_ms.into(),
        )
        .await?,
        ..Default::default()
    };
    report.unconfirmed_names_dropped = batched(
        db,
        mode,
        "subscribers",
        "t.pending_name_since_ms < $1",
        "UPDATE subscribers SET pending_name = NULL, pending_name_since_ms = NULL",
        unconfirmed_cutoff_ms.into(),
    )
    .await?;
    // People left with no subscription at all and nothing ever confirmed were only ever
    // unconfirmed signups: they go entirely (their evidence and queued mail with them).
    report.subscribers_deleted = batched(
        db,
        mode,
        "subscribers",
        "t.created_at < $1 AND NOT EXISTS (SELECT 1 FROM subscriptions x WHERE x.subscriber_id = t.id) \
         AND NOT EXISTS (SELECT 1 FROM consent_events c WHERE c.subscriber_id = t.id AND c.kind <> 'signup')",
        "DELETE FROM subscribers",
        (now - cfg.unconfirmed).into(),
    )
    .await?;
    report.consent_events_anonymized = batched(
        db,
        mode,
        "consent_events",
        "t.occurred_at < $1 AND (t.ip IS NOT NULL OR t.user_agent IS NOT NULL)",
        "UPDATE consent_events SET ip = NULL, user_agent = NULL",
        (now - cfg.abuse_data).into(),
    )
    .await?;
    let leaving_cutoff: Value = (now - cfg.after_leaving).into();
    if mode == Mode::Apply {
        // Remember every leaver's address as opted out before forgetting them (CS-11, GD-4).
        db.execute_raw(Statement::from_sql_and_values(
            db.get_database_backend(),
            format!(
                "INSERT INTO suppressions (address_hmac, reason, created_at) \
                 SELECT t.address_hmac, 'unsubscribed', $2 FROM subscribers t WHERE {LEFT_EVERYTHING} \
                 ON CONFLICT (address_hmac) DO NOTHING"
            ),
            [leaving_cutoff.clone(), super::now().into()],
        ))
        .await?;
    }
    report.leavers_deleted = batched(
        db,
        mode,
        "subscribers",
        LEFT_EVERYTHING,
        "DELETE FROM subscribers",
        leaving_cutoff.clone(),
    )
    .await?;
    report.bounced_deleted = batched(
        db,
        mode,
        "subscribers",
        BOUNCED,
        "DELETE FROM subscribers",
        leaving_cutoff,
    )
    .await?;
    if mode == Mode::Apply {
        // What was deleted is kept as counts per day: the evidence that retention ran.
        daily_counts::add(
            db,
            &[
                (
                    Counter::RetentionUnconfirmed,
                    report.unconfirmed_subscriptions_deleted,
                ),
                (
                    Counter::RetentionUnconfirmedNames,
                    report.unconfirmed_names_dropped,
                ),
                (Counter::RetentionNeverConfirmed, report.subscribers_deleted),
                (Counter::RetentionAbuseData, report.consent_events_anonymized),
                (Counter::RetentionLeavers, report.leavers_deleted),
                (Counter::RetentionBounced, report.bounced_deleted),
            ],
        )
        .await?;
    }
    Ok(report)
}
