//! What the dashboard shows: counts over the existing tables, grouped by campaign, list, day,
//! notice or status. Every query here returns aggregates; none returns an address, a name or
//! anything else that names a person (GD-7).
//!
//! Days are UTC days, `YYYY-MM-DD`, as in `daily_counts`.

use std::collections::HashMap;

use sea_orm::{
    ConnectionTrait, DbBackend, DbErr, EntityTrait, FromQueryResult, QueryOrder, QuerySelect, Statement,
};

use super::entities::campaign;
use super::entities::campaign_recipient::RecipientStatus;
use super::entities::consent_event::ConsentKind;
use super::entities::outbox::{OutboxKind, OutboxStatus};
use super::entities::subscription::SubscriptionStatus;
use super::entities::suppression::SuppressionReason;

/// The UTC day of a timestamp column, as `YYYY-MM-DD`.
fn day_of_column(backend: DbBackend, column: &str) -> String {
    match backend {
        DbBackend::Postgres => format!("to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD')"),
        // SQLite's date() reads the stored offset and answers in UTC.
        _ => format!("date({column})"),
    }
}

/// `IN (…)` over the ids in parameter `$param`.
fn in_ids(backend: DbBackend, param: usize) -> String {
    format!(
        "IN (SELECT column1 FROM {})",
        super::json_rows(backend, param, &["bigint"])
    )
}

fn ids_value(ids: &[i64]) -> sea_orm::Value {
    let rows: Vec<[i64; 1]> = ids.iter().map(|&id| [id]).collect();
    super::json_rows_value(&rows)
}

/// The newest campaigns, newest first.
pub async fn recent_campaigns(db: &impl ConnectionTrait, limit: u64) -> Result<Vec<campaign::Model>, DbErr> {
    campaign::Entity::find()
        .order_by_desc(campaign::Column::Id)
        .limit(limit)
        .all(db)
        .await
}

/// The names of the lists each of these campaigns goes to.
pub async fn campaign_list_names(
    db: &impl ConnectionTrait,
    campaign_ids: &[i64],
) -> Result<HashMap<i64, Vec<String>>, DbErr> {
    #[derive(FromQueryResult)]
    struct Row {
        campaign_id: i64,
        name: String,
    }
    let backend = db.get_database_backend();
    let rows = Row::find_by_statement(Statement::from_sql_and_values(
        backend,
        format!(
            "SELECT cl.campaign_id, l.name FROM campaign_lists cl JOIN lists l ON l.id = cl.list_id \
             WHERE cl.campaign_id {} ORDER BY l.id",
            in_ids(backend, 1)
        ),
        [ids_value(campaign_ids)],
    ))
    .all(db)
    .await?;
    let mut out: HashMap<i64, Vec<String>> = HashMap::new();
    for r in rows {
        out.entry(r.campaign_id).or_default().push(r.name);
    }
    Ok(out)
}

/// A campaign's recipients by where they are.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RecipientCounts {
    /// Waiting, or being sent now.
    pub queued: i64,
    pub sent: i64,
    pub failed: i64,
    pub skipped: i64,
    pub cancelled: i64,
    /// Sent since the `recent_since` the counts were asked with.
    pub sent_recently: i64,
}

/// Recipient counts of each of these campaigns, in one query.
pub async fn recipient_counts(
    db: &impl ConnectionTrait,
    campaign_ids: &[i64],
    recent_since: time::OffsetDateTime,
) -> Result<HashMap<i64, RecipientCounts>, DbErr> {
    #[derive(FromQueryResult)]
    struct Row {
        campaign_id: i64,
        status: RecipientStatus,
        n: i64,
        recent: i64,
    }
    let backend = db.get_database_backend();
    let rows = Row::find_by_statement(Statement::from_sql_and_values(
        backend,
        format!(
            "SELECT campaign_id, status, COUNT(*) AS n, \
             CAST(SUM(CASE WHEN status = 'sent' AND sent_at >= $2 THEN 1 ELSE 0 END) AS BIGINT) AS recent \
             FROM campaign_recipients WHERE campaign_id {} GROUP BY campaign_id, status",
            in_ids(backend, 1)
        ),
        [ids_value(campaign_ids), recent_since.into()],
    ))
    .all(db)
    .await?;
    let mut out: HashMap<i64, RecipientCounts> = HashMap::new();
    for r in rows {
        let c = out.entry(r.campaign_id).or_default();
        match r.status {
            RecipientStatus::Queued => c.queued += r.n,
            RecipientStatus::Sent => c.sent += r.n,
            RecipientStatus::Failed => c.failed += r.n,
            RecipientStatus::Skipped => c.skipped += r.n,
            RecipientStatus::Cancelled => c.cancelled += r.n,
        }
        c.sent_recently += r.recent;
    }
    Ok(out)
}

/// A list and how many people are on it, by the state of their subscription.
#[derive(Debug, Clone, PartialEq, Eq, FromQueryResult)]
pub struct ListCounts {
    pub id: i64,
    pub slug: String,
    pub name: String,
    pub confirmed: i64,
    pub pending: i64,
    pub unsubscribed: i64,
}

pub async fn list_counts(db: &impl ConnectionTrait) -> Result<Vec<ListCounts>, DbErr> {
    let count = |status: SubscriptionStatus| {
        format!(
            "CAST(SUM(CASE WHEN x.status = '{}' THEN 1 ELSE 0 END) AS BIGINT)",
            status.as_str()
        )
    };
    ListCounts::find_by_statement(Statement::from_string(
        db.get_database_backend(),
        format!(
            "SELECT l.id, l.slug, l.name, {} AS confirmed, {} AS pending, {} AS unsubscribed \
             FROM lists l LEFT JOIN subscriptions x ON x.list_id = l.id \
             GROUP BY l.id, l.slug, l.name ORDER BY l.id",
            count(SubscriptionStatus::Confirmed),
            count(SubscriptionStatus::Pending),
            count(SubscriptionStatus::Unsubscribed),
        ),
    ))
    .all(db)
    .await
}

/// Consent events of one kind on one list on one day.
#[derive(Debug, Clone, PartialEq, Eq, FromQueryResult)]
pub struct ConsentDay {
    pub list_id: Option<i64>,
    pub kind: ConsentKind,
    pub day: String,
    pub n: i64,
}

/// Signups, confirmations and unsubscribes per list and day since `since`, from the consent
/// evidence still kept (an erased person's, or one retention deleted, no longer counts).
pub async fn consent_by_day(
    db: &impl ConnectionTrait,
    since: time::OffsetDateTime,
) -> Result<Vec<ConsentDay>, DbErr> {
    let backend = db.get_database_backend();
    ConsentDay::find_by_statement(Statement::from_sql_and_values(
        backend,
        format!(
            "SELECT list_id, kind, {} AS day, COUNT(*) AS n FROM consent_events \
             WHERE occurred_at >= $1 AND kind IN ('{}', '{}', '{}') GROUP BY 1, 2, 3 ORDER BY 3",
            day_of_column(backend, "occurred_at"),
            ConsentKind::Signup.as_str(),
            ConsentKind::Confirm.as_str(),
            ConsentKind::Unsubscribe.as_str(),
        ),
        [since.into()],
    ))
    .all(db)
    .await
}

/// Suppressions added on one day for one reason.
#[derive(Debug, Clone, PartialEq, Eq, FromQueryResult)]
pub struct SuppressionDay {
    pub reason: SuppressionReason,
    pub day: String,
    pub n: i64,
}

pub async fn suppressions_by_day(
    db: &impl ConnectionTrait,
    since: time::OffsetDateTime,
) -> Result<Vec<SuppressionDay>, DbErr> {
    let backend = db.get_database_backend();
    SuppressionDay::find_by_statement(Statement::from_sql_and_values(
        backend,
        format!(
            "SELECT reason, {} AS day, COUNT(*) AS n FROM suppressions WHERE created_at >= $1 \
             GROUP BY 1, 2 ORDER BY 2",
            day_of_column(backend, "created_at"),
        ),
        [since.into()],
    ))
    .all(db)
    .await
}

/// Every suppression kept, by reason.
pub async fn suppression_totals(db: &impl ConnectionTrait) -> Result<Vec<(SuppressionReason, i64)>, DbErr> {
    #[derive(FromQueryResult)]
    struct Row {
        reason: SuppressionReason,
        n: i64,
    }
    let rows = Row::find_by_statement(Statement::from_string(
        db.get_database_backend(),
        "SELECT reason, COUNT(*) AS n FROM suppressions GROUP BY reason",
    ))
    .all(db)
    .await?;
    Ok(rows.into_iter().map(|r| (r.reason, r.n)).collect())
}

/// Where the notices of one policy version or breach notice are, from the outbox rows still
/// kept (an erased person's row goes with them).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Reach {
    /// Accepted by the relay.
    pub sent: i64,
    /// Queued or being sent.
    pub due: i64,
    pub failed: i64,
    /// Not sent on purpose: the address was suppressed (bounced, complained) by then.
    pub cancelled: i64,
}

/// The reach of every policy version (by id) and of every breach notice (by id).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct NoticeReach {
    pub policies: HashMap<i64, Reach>,
    pub breaches: HashMap<i64, Reach>,
}

pub async fn notice_reach(db: &impl ConnectionTrait) -> Result<NoticeReach, DbErr> {
    #[derive(FromQueryResult)]
    struct Row {
        kind: OutboxKind,
        payload: String,
        status: OutboxStatus,
        n: i64,
    }
    // Every notice row of one version (or breach notice) carries the same payload, which
    // names it: `{"type": "policy_notice", "policy_id": 3, ...}`.
    #[derive(serde::Deserialize)]
    struct Names {
        policy_id: Option<i64>,
        notice_id: Option<i64>,
    }
    let rows = Row::find_by_statement(Statement::from_string(
        db.get_database_backend(),
        format!(
            "SELECT kind, payload, status, COUNT(*) AS n FROM outbox WHERE kind IN ('{}', '{}') \
             GROUP BY kind, payload, status",
            OutboxKind::PolicyNotice.as_str(),
            OutboxKind::BreachNotice.as_str(),
        ),
    ))
    .all(db)
    .await?;
    let mut out = NoticeReach::default();
    for r in rows {
        let Ok(names) = serde_json::from_str::<Names>(&r.payload) else {
            continue;
        };
        let reach = match (r.kind, names.policy_id, names.notice_id) {
            (OutboxKind::PolicyNotice, Some(id), _) => out.policies.entry(id).or_default(),
            (OutboxKind::BreachNotice, _, Some(id)) => out.breaches.entry(id).or_default(),
            _ => continue,
        };
        match r.status {
            OutboxStatus::Sent => reach.sent += r.n,
            OutboxStatus::Queued | OutboxStatus::Sending => reach.due += r.n,
            OutboxStatus::Failed => reach.failed += r.n,
            OutboxStatus::Cancelled => reach.cancelled += r.n,
        }
    }
    Ok(out)
}

/// The consent evidence kept.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Evidence {
    /// Events of each kind, with how many of them still hold an IP address or user agent.
    pub by_kind: Vec<(ConsentKind, i64, i64)>,
    /// People with at least one event.
    pub people: i64,
}

pub async fn consent_evidence(db: &impl ConnectionTrait) -> Result<Evidence, DbErr> {
    #[derive(FromQueryResult)]
    struct Row {
        kind: ConsentKind,
        n: i64,
        with_abuse_data: i64,
    }
    #[derive(FromQueryResult)]
    struct People {
        n: i64,
    }
    let backend = db.get_database_backend();
    let rows = Row::find_by_statement(Statement::from_string(
        backend,
        "SELECT kind, COUNT(*) AS n, \
         CAST(SUM(CASE WHEN ip IS NOT NULL OR user_agent IS NOT NULL THEN 1 ELSE 0 END) AS BIGINT) \
         AS with_abuse_data FROM consent_events GROUP BY kind ORDER BY kind",
    ))
    .all(db)
    .await?;
    let people = People::find_by_statement(Statement::from_string(
        backend,
        "SELECT COUNT(DISTINCT subscriber_id) AS n FROM consent_events",
    ))
    .one(db)
    .await?
    .map_or(0, |p| p.n);
    Ok(Evidence {
        by_kind: rows
            .into_iter()
            .map(|r| (r.kind, r.n, r.with_abuse_data))
            .collect(),
        people,
    })
}

/// Messages due now and not yet claimed: transactional ones, and recipients of campaigns that
/// are sending.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Waiting {
    pub due: i64,
    /// When the longest-waiting of them became due (epoch milliseconds).
    pub oldest_due_ms: Option<i64>,
}

pub async fn waiting(db: &impl ConnectionTrait, now_ms: i64) -> Result<Waiting, DbErr> {
    #[derive(FromQueryResult)]
    struct Row {
        n: i64,
        oldest: Option<i64>,
    }
    let mut out = Waiting::default();
    let statements = [
        // `status IN ('queued', 'sending')` as the claim index is defined, so it serves here.
        "SELECT COUNT(*) AS n, MIN(next_attempt_at_ms) AS oldest FROM outbox \
         WHERE status IN ('queued', 'sending') AND status = 'queued' AND next_attempt_at_ms <= $1"
            .to_owned(),
        // The due rows of blocks free to claim.
        format!(
            "SELECT COUNT(*) AS n, MIN(r.next_attempt_at_ms) AS oldest FROM campaign_blocks b \
             JOIN campaign_recipients r ON {} AND r.next_attempt_at_ms <= $1 \
             WHERE b.next_attempt_at_ms <= $1 \
             AND b.campaign_id IN (SELECT id FROM campaigns WHERE status = 'sending')",
            super::queue::queued_in_block("b")
        ),
    ];
    for sql in statements {
        let row = Row::find_by_statement(Statement::from_sql_and_values(
            db.get_database_backend(),
            sql,
            [now_ms.into()],
        ))
        .one(db)
        .await?;
        if let Some(r) = row {
            out.due += r.n;
            out.oldest_due_ms = match (out.oldest_due_ms, r.oldest) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
    }
    Ok(out)
}
