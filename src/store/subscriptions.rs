//! Subscribers, their subscriptions, and the consent ledger.

use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, FromQueryResult, QueryFilter, Set,
    Statement,
};

use super::entities::{consent_event, subscriber, subscription};
use crate::address_hash::AddressHash;
use crate::domain::{DisplayName, EmailAddress};

#[derive(Debug, Clone, Copy, FromQueryResult)]
pub struct SubscriberRef {
    pub id: i64,
    pub uuid: uuid::Uuid,
}

/// The subscriber with this address, created if new. An existing name is never overwritten by
/// a signup (anyone can sign up any address); a missing one is filled in.
pub async fn upsert_subscriber(
    db: &impl ConnectionTrait,
    email: &EmailAddress,
    hash: &AddressHash,
    name: Option<&DisplayName>,
) -> Result<SubscriberRef, DbErr> {
    let now = super::now();
    let stmt = Statement::from_sql_and_values(
        db.get_database_backend(),
        "INSERT INTO subscribers (uuid, email, email_key, name, created_at, updated_at, address_hmac) \
         VALUES ($1, $2, $3, $4, $5, $5, $6) \
         ON CONFLICT (email_key) DO UPDATE SET name = COALESCE(subscribers.name, excluded.name) \
         RETURNING id, uuid",
        [
            uuid::Uuid::new_v4().into(),
            email.as_str().into(),
            email.normalized().into(),
            name.map(|n| n.as_str().to_owned()).into(),
            now.into(),
            hash.as_str().into(),
        ],
    );
    SubscriberRef::find_by_statement(stmt)
        .one(db)
        .await?
        .ok_or_else(|| DbErr::RecordNotFound("upserted subscriber".into()))
}

pub async fn subscriber_by_uuid(
    db: &impl ConnectionTrait,
    uuid: uuid::Uuid,
) -> Result<Option<subscriber::Model>, DbErr> {
    subscriber::Entity::find()
        .filter(subscriber::Column::Uuid.eq(uuid))
        .one(db)
        .await
}

pub async fn subscriber_by_id(
    db: &impl ConnectionTrait,
    id: i64,
) -> Result<Option<subscriber::Model>, DbErr> {
    subscriber::Entity::find_by_id(id).one(db).await
}

pub async fn subscriber_by_email(
    db: &impl ConnectionTrait,
    email: &EmailAddress,
) -> Result<Option<subscriber::Model>, DbErr> {
    subscriber::Entity::find()
        .filter(subscriber::Column::EmailKey.eq(email.normalized()))
        .one(db)
        .await
}

#[derive(FromQueryResult)]
struct StatusRow {
    status: String,
    pending_since_ms: Option<i64>,
}

/// Makes the subscription pending unless it is already pending or confirmed: new rows and
/// rows the person left become pending again (a fresh opt-in is always allowed). Returns the
/// status afterwards and, when pending, since when.
pub async fn request_subscription(
    db: &impl ConnectionTrait,
    subscriber_id: i64,
    list_id: i64,
    now_ms: i64,
) -> Result<(String, Option<i64>), DbErr> {
    let stmt = Statement::from_sql_and_values(
        db.get_database_backend(),
        "INSERT INTO subscriptions (subscriber_id, list_id, status, created_at, pending_since_ms) \
         VALUES ($1, $2, 'pending', $3, $4) \
         ON CONFLICT (subscriber_id, list_id) DO UPDATE SET \
           pending_since_ms = CASE WHEN subscriptions.status = 'unsubscribed' \
             THEN excluded.pending_since_ms ELSE subscriptions.pending_since_ms END, \
           status = CASE WHEN subscriptions.status = 'unsubscribed' \
             THEN 'pending' ELSE subscriptions.status END \
         RETURNING status, pending_since_ms",
        [
            subscriber_id.into(),
            list_id.into(),
            super::now().into(),
            now_ms.into(),
        ],
    );
    let row = StatusRow::find_by_statement(stmt)
        .one(db)
        .await?
        .ok_or_else(|| DbErr::RecordNotFound("upserted subscription".into()))?;
    Ok((row.status, row.pending_since_ms))
}

pub async fn of_subscriber(
    db: &impl ConnectionTrait,
    subscriber_id: i64,
) -> Result<Vec<subscription::Model>, DbErr> {
    subscription::Entity::find()
        .filter(subscription::Column::SubscriberId.eq(subscriber_id))
        .all(db)
        .await
}

/// Confirms exactly these subscriptions if they are still pending; returns how many changed.
pub async fn confirm(db: &impl ConnectionTrait, ids: Vec<i64>) -> Result<u64, DbErr> {
    if ids.is_empty() {
        return Ok(0);
    }
    let res = subscription::Entity::update_many()
        .col_expr(subscription::Column::Status, "confirmed".into())
        .col_expr(subscription::Column::ConfirmedAt, super::now().into())
        .col_expr(subscription::Column::PendingSinceMs, Option::<i64>::None.into())
        .filter(subscription::Column::Id.is_in(ids))
        .filter(subscription::Column::Status.eq("pending"))
        .exec(db)
        .await?;
    Ok(res.rows_affected)
}

/// One row of consent evidence (OI-3). Append-only.
#[derive(Debug, Clone, Default)]
pub struct NewConsentEvent {
    pub subscriber_id: i64,
    pub list_id: Option<i64>,
    pub kind: &'static str,
    pub source: String,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub policy_version: Option<String>,
    pub consent_text: Option<String>,
    pub detail: Option<serde_json::Value>,
    /// When consent was given, if not now (imported evidence).
    pub occurred_at: Option<time::OffsetDateTime>,
}

pub async fn record_consent(db: &impl ConnectionTrait, e: NewConsentEvent) -> Result<(), DbErr> {
    consent_event::ActiveModel {
        subscriber_id: Set(e.subscriber_id),
        list_id: Set(e.list_id),
        kind: Set(e.kind.to_owned()),
        occurred_at: Set(e.occurred_at.unwrap_or_else(super::now)),
        source: Set(e.source),
        ip: Set(e.ip),
        user_agent: Set(e.user_agent),
        policy_version: Set(e.policy_version),
        consent_text: Set(e.consent_text),
        detail: Set(e.detail.map(|d| d.to_string())),
        ..Default::default()
    }
    .insert(db)
    .await
    .map(|_| ())
}

#[derive(Debug, Clone, Copy, Default, FromQueryResult)]
struct HistoryRow {
    last_id: i64,
    recent: i64,
    queued: i64,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct ConfirmationHistory {
    /// Id of the newest confirmation row for the person (0 if none).
    pub last_id: i64,
    /// When the newest confirmation was queued (epoch ms).
    pub last_created_ms: Option<i64>,
    /// Confirmations queued since the cut-off.
    pub recent: i64,
    /// Confirmations waiting to be sent (not yet rendered).
    pub queued: i64,
}

pub async fn confirmation_history(
    db: &impl ConnectionTrait,
    subscriber_id: i64,
    since: time::OffsetDateTime,
) -> Result<ConfirmationHistory, DbErr> {
    let stmt = Statement::from_sql_and_values(
        db.get_database_backend(),
        "SELECT COALESCE(MAX(id), 0) AS last_id, \
           COALESCE(SUM(CASE WHEN created_at >= $2 THEN 1 ELSE 0 END), 0) AS recent, \
           COALESCE(SUM(CASE WHEN status = 'queued' THEN 1 ELSE 0 END), 0) AS queued \
         FROM outbox WHERE subscriber_id = $1 AND kind = 'confirmation'",
        [subscriber_id.into(), since.into()],
    );
    let row = HistoryRow::find_by_statement(stmt)
        .one(db)
        .await?
        .unwrap_or_default();
    let last_created_ms = if row.last_id == 0 {
        None
    } else {
        super::entities::outbox::Entity::find_by_id(row.last_id)
            .one(db)
            .await?
            .map(|o| (o.created_at.unix_timestamp_nanos() / 1_000_000) as i64)
    };
    Ok(ConfirmationHistory {
        last_id: row.last_id,
        last_created_ms,
        recent: row.recent,
        queued: row.queued,
    })
}
