//! Retention (GD-5): signups never confirmed are deleted after a while, and the IP addresses
//! and user agents kept with consent evidence (for abuse detection only) are blanked after a
//! while; the rest of the evidence stays. Runs periodically, in bounded batches, and is safe to
//! run from several instances at once (each batch is one idempotent statement). The clock is a
//! parameter, so tests move time instead of sleeping.

use sea_orm::{ConnectionTrait, DbErr, Statement};

use crate::config::RetentionConfig;
use crate::store::Db;

const BATCH: i64 = 1000;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct RetentionReport {
    pub unconfirmed_subscriptions_deleted: u64,
    pub subscribers_deleted: u64,
    pub consent_events_anonymized: u64,
}

async fn batched(db: &Db, sql: &str, value: sea_orm::Value) -> Result<u64, DbErr> {
    let mut total = 0;
    loop {
        let res = db
            .execute_raw(Statement::from_sql_and_values(
                db.get_database_backend(),
                sql,
                [value.clone(), BATCH.into()],
            ))
            .await?;
        total += res.rows_affected();
        if res.rows_affected() < BATCH as u64 {
            return Ok(total);
        }
    }
}

pub async fn run(
    db: &Db,
    cfg: &RetentionConfig,
    now: time::OffsetDateTime,
) -> Result<RetentionReport, DbErr> {
    let unconfirmed_cutoff_ms = (now - cfg.unconfirmed).unix_timestamp_nanos() / 1_000_000;
    let abuse_cutoff = now - cfg.abuse_data;
    let mut report = RetentionReport {
        unconfirmed_subscriptions_deleted: batched(
            db,
            "DELETE FROM subscriptions WHERE id IN (SELECT id FROM subscriptions \
             WHERE status = 'pending' AND pending_since_ms < $1 LIMIT $2)",
            (unconfirmed_cutoff_ms as i64).into(),
        )
        .await?,
        ..Default::default()
    };
    // People left with no subscription at all and nothing ever confirmed were only ever
    // unconfirmed signups: they go entirely (their evidence and queued mail with them).
    report.subscribers_deleted = batched(
        db,
        "DELETE FROM subscribers WHERE id IN (SELECT s.id FROM subscribers s \
         WHERE s.created_at < $1 \
         AND NOT EXISTS (SELECT 1 FROM subscriptions x WHERE x.subscriber_id = s.id) \
         AND NOT EXISTS (SELECT 1 FROM consent_events c WHERE c.subscriber_id = s.id AND c.kind <> 'signup') \
         LIMIT $2)",
        (now - cfg.unconfirmed).into(),
    )
    .await?;
    report.consent_events_anonymized = batched(
        db,
        "UPDATE consent_events SET ip = NULL, user_agent = NULL WHERE id IN (SELECT id FROM consent_events \
         WHERE occurred_at < $1 AND (ip IS NOT NULL OR user_agent IS NOT NULL) LIMIT $2)",
        abuse_cutoff.into(),
    )
    .await?;
    Ok(report)
}
