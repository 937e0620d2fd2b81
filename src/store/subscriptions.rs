//! Subscribers, their subscriptions, and the consent ledger.

use std::collections::HashMap;

use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, FromQueryResult, QueryFilter,
    QueryOrder, Set, Statement,
};

use super::entities::campaign_recipient::RecipientStatus;
use super::entities::consent_event::ConsentKind;
use super::entities::subscription::SubscriptionStatus;
use super::entities::{address_change, consent_event, outbox, subscriber, subscription};
use crate::domain::AddressHash;
use crate::domain::{DisplayName, EmailAddress};

#[derive(Debug, Clone, Copy, FromQueryResult)]
pub struct SubscriberRef {
    pub id: i64,
    pub uuid: uuid::Uuid,
    /// A name change waits for confirmation since then (epoch ms).
    pub pending_name_since_ms: Option<i64>,
}

/// The `ON CONFLICT (email_key) DO UPDATE SET` of an upsert of people, `now_ms` naming the
/// parameter that holds the time. Anyone can sign up any address, so a name for a known address
/// (a different one, or one where there was none) never takes effect at once: it waits in
/// `pending_name` until the address's owner confirms it. The name on file again clears a
/// pending change.
pub(crate) fn name_on_conflict(now_ms: &str) -> String {
    format!(
        "pending_name = CASE \
             WHEN excluded.name IS NULL THEN subscribers.pending_name \
             WHEN excluded.name = subscribers.name THEN NULL \
             ELSE excluded.name END, \
         pending_name_since_ms = CASE \
             WHEN excluded.name IS NULL THEN subscribers.pending_name_since_ms \
             WHEN excluded.name = subscribers.name THEN NULL \
             WHEN excluded.name = subscribers.pending_name THEN subscribers.pending_name_since_ms \
             ELSE {now_ms} END"
    )
}

/// The subscriber with this address, created if new; see [`name_on_conflict`] for the name.
pub async fn upsert_subscriber(
    db: &impl ConnectionTrait,
    email: &EmailAddress,
    hash: &AddressHash,
    name: Option<&DisplayName>,
) -> Result<SubscriberRef, DbErr> {
    let email_key = email.normalized();
    let row = SubscriberRow {
        email: email.as_str(),
        email_key: &email_key,
        hmac: hash.as_str(),
        name: name.map(DisplayName::as_str),
    };
    upsert_subscribers(db, &[row])
        .await?
        .remove(&email_key)
        .ok_or_else(|| DbErr::RecordNotFound("upserted subscriber".into()))
}

/// A new subscriber's public id. Time-ordered (UUIDv7, RFC 9562): new people are appended to
/// the uuid index instead of landing on a random page of it, which halved the time of a large
/// import on SQLite. The 74 random bits keep it unguessable; the time it tells is when the
/// person was first added.
pub fn new_subscriber_uuid() -> uuid::Uuid {
    uuid::Uuid::now_v7()
}

/// A subscriber to upsert: the address as given, its normalized key, its keyed hash, a name.
pub struct SubscriberRow<'a> {
    pub email: &'a str,
    pub email_key: &'a str,
    pub hmac: &'a str,
    pub name: Option<&'a str>,
}

#[derive(FromQueryResult)]
struct UpsertedRow {
    id: i64,
    uuid: uuid::Uuid,
    email_key: String,
    pending_name_since_ms: Option<i64>,
}

/// [`upsert_subscriber`] for many people in one statement per chunk, keyed by normalized
/// address. The addresses must be distinct.
pub async fn upsert_subscribers(
    db: &impl ConnectionTrait,
    people: &[SubscriberRow<'_>],
) -> Result<HashMap<String, SubscriberRef>, DbErr> {
    const COLS: usize = 7;
    let (now, now_ms) = super::now_and_ms();
    let backend = db.get_database_backend();
    let mut out = HashMap::with_capacity(people.len());
    for chunk in people.chunks(super::ROWS_PER_STATEMENT) {
        // The time's parameter follows the rows' (SQLite's `?` count in order of appearance).
        let now_param = match backend {
            sea_orm::DbBackend::Postgres => format!("${}", chunk.len() * COLS + 1),
            _ => "?".to_owned(),
        };
        let sql = format!(
            "INSERT INTO subscribers (uuid, email, email_key, name, created_at, updated_at, address_hmac) \
             VALUES {} \
             ON CONFLICT (email_key) DO UPDATE SET {} \
             RETURNING id, uuid, email_key, pending_name_since_ms",
            super::values_list(backend, chunk.len(), COLS),
            name_on_conflict(&now_param),
        );
        let mut values = Vec::with_capacity(chunk.len() * COLS);
        for p in chunk {
            values.extend([
                new_subscriber_uuid().into(),
                p.email.into(),
                p.email_key.into(),
                p.name.map(str::to_owned).into(),
                now.into(),
                now.into(),
                p.hmac.into(),
            ]);
        }
        values.push(now_ms.into());
        let stmt = Statement::from_sql_and_values(db.get_database_backend(), sql, values);
        for row in UpsertedRow::find_by_statement(stmt).all(db).await? {
            out.insert(
                row.email_key,
                SubscriberRef {
                    id: row.id,
                    uuid: row.uuid,
                    pending_name_since_ms: row.pending_name_since_ms,
                },
            );
        }
    }
    Ok(out)
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
struct RequestedRow {
    subscriber_id: i64,
    list_id: i64,
    status: SubscriptionStatus,
    pending_since_ms: Option<i64>,
}

/// What a subscription request left behind: the status afterwards and, when pending, since when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requested {
    pub status: SubscriptionStatus,
    pub pending_since_ms: Option<i64>,
}

/// Makes each (subscriber, list) subscription pending unless it is already pending or
/// confirmed: new rows and rows the person left become pending again (a fresh opt-in is always
/// allowed). One statement per chunk; the pairs must be distinct.
pub async fn request_subscriptions(
    db: &impl ConnectionTrait,
    pairs: &[(i64, i64)],
    now_ms: i64,
) -> Result<HashMap<(i64, i64), Requested>, DbErr> {
    let mut out = HashMap::with_capacity(pairs.len());
    let now = super::now();
    for chunk in pairs.chunks(super::ROWS_PER_STATEMENT) {
        let sql = format!(
            "INSERT INTO subscriptions (subscriber_id, list_id, status, created_at, pending_since_ms) \
             VALUES {} \
             ON CONFLICT (subscriber_id, list_id) DO UPDATE SET \
               pending_since_ms = CASE WHEN subscriptions.status = 'unsubscribed' \
                 THEN excluded.pending_since_ms ELSE subscriptions.pending_since_ms END, \
               status = CASE WHEN subscriptions.status = 'unsubscribed' \
                 THEN 'pending' ELSE subscriptions.status END \
             RETURNING subscriber_id, list_id, status, pending_since_ms",
            super::values_list(db.get_database_backend(), chunk.len(), 5)
        );
        let mut values = Vec::with_capacity(chunk.len() * 5);
        for &(subscriber_id, list_id) in chunk {
            values.extend([
                subscriber_id.into(),
                list_id.into(),
                SubscriptionStatus::Pending.into(),
                now.into(),
                now_ms.into(),
            ]);
        }
        let stmt = Statement::from_sql_and_values(db.get_database_backend(), sql, values);
        for row in RequestedRow::find_by_statement(stmt).all(db).await? {
            out.insert(
                (row.subscriber_id, row.list_id),
                Requested {
                    status: row.status,
                    pending_since_ms: row.pending_since_ms,
                },
            );
        }
    }
    Ok(out)
}

/// A person with something waiting for confirmation: subscriptions (the names of those lists)
/// or a new name.
#[derive(Debug, Clone)]
pub struct PendingConfirmation {
    pub uuid: uuid::Uuid,
    pub name: Option<String>,
    pub new_name: Option<String>,
    pub list_names: Vec<String>,
}

#[derive(FromQueryResult)]
struct PendingRow {
    subscriber_id: i64,
    uuid: uuid::Uuid,
    name: Option<String>,
    pending_name: Option<String>,
    list_name: Option<String>,
}

/// What confirmation emails cover, read when they are sent, per subscriber: absent when
/// nothing is pending (any more) or the person is gone.
pub async fn pending_confirmations(
    db: &impl ConnectionTrait,
    subscriber_ids: &[i64],
) -> Result<HashMap<i64, PendingConfirmation>, DbErr> {
    let mut out: HashMap<i64, PendingConfirmation> = HashMap::with_capacity(subscriber_ids.len());
    for chunk in subscriber_ids.chunks(super::ROWS_PER_STATEMENT) {
        // An id asked twice is found once (`IN`).
        let sql = format!(
            "SELECT s.id AS subscriber_id, s.uuid, s.name, s.pending_name, l.name AS list_name \
             FROM subscribers s \
             LEFT JOIN subscriptions x ON x.subscriber_id = s.id AND x.status = 'pending' \
             LEFT JOIN lists l ON l.id = x.list_id \
             WHERE s.id IN (SELECT column1 FROM {}) AND (l.id IS NOT NULL OR s.pending_name IS NOT NULL) \
             ORDER BY s.id, l.id",
            super::json_rows(db.get_database_backend(), 1, &["bigint"])
        );
        let rows: Vec<[i64; 1]> = chunk.iter().map(|&id| [id]).collect();
        let values = [super::json_rows_value(&rows)];
        let stmt = Statement::from_sql_and_values(db.get_database_backend(), sql, values);
        for row in PendingRow::find_by_statement(stmt).all(db).await? {
            let pending = out
                .entry(row.subscriber_id)
                .or_insert_with(|| PendingConfirmation {
                    uuid: row.uuid,
                    name: row.name,
                    new_name: row.pending_name,
                    list_names: Vec::new(),
                });
            pending.list_names.extend(row.list_name);
        }
    }
    Ok(out)
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
        .col_expr(
            subscription::Column::Status,
            Expr::value(SubscriptionStatus::Confirmed),
        )
        .col_expr(subscription::Column::ConfirmedAt, super::now().into())
        .col_expr(subscription::Column::PendingSinceMs, Option::<i64>::None.into())
        .filter(subscription::Column::Id.is_in(ids))
        .filter(subscription::Column::Status.eq(SubscriptionStatus::Pending))
        .exec(db)
        .await?;
    Ok(res.rows_affected)
}

/// One row of consent evidence (OI-3). Append-only.
#[derive(Debug, Clone)]
pub struct NewConsentEvent {
    pub subscriber_id: i64,
    pub list_id: Option<i64>,
    pub kind: ConsentKind,
    pub source: String,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub policy_version: Option<String>,
    pub consent_text: Option<String>,
    pub detail: Option<serde_json::Value>,
    /// When consent was given, if not now (imported evidence).
    pub occurred_at: Option<time::OffsetDateTime>,
}

impl NewConsentEvent {
    /// An event of `kind` for the person, from `source`, about no list in particular, given
    /// now; the other fields are set as needed.
    pub fn new(subscriber_id: i64, kind: ConsentKind, source: String) -> Self {
        NewConsentEvent {
            subscriber_id,
            list_id: None,
            kind,
            source,
            ip: None,
            user_agent: None,
            policy_version: None,
            consent_text: None,
            detail: None,
            occurred_at: None,
        }
    }
}

pub async fn record_consent(db: &impl ConnectionTrait, e: NewConsentEvent) -> Result<(), DbErr> {
    consent_event::ActiveModel {
        subscriber_id: Set(e.subscriber_id),
        list_id: Set(e.list_id),
        kind: Set(e.kind),
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

/// Many rows of consent evidence in one statement per chunk.
pub async fn record_consents(db: &impl ConnectionTrait, events: Vec<NewConsentEvent>) -> Result<(), DbErr> {
    const COLS: usize = 10;
    let now = super::now();
    let mut events = events.into_iter().peekable();
    while events.peek().is_some() {
        let chunk: Vec<_> = events.by_ref().take(super::ROWS_PER_STATEMENT).collect();
        let sql = format!(
            "INSERT INTO consent_events (subscriber_id, list_id, kind, occurred_at, source, ip, user_agent, \
             policy_version, consent_text, detail) VALUES {}",
            super::values_list(db.get_database_backend(), chunk.len(), COLS)
        );
        let mut values = Vec::with_capacity(chunk.len() * COLS);
        for e in chunk {
            values.extend([
                e.subscriber_id.into(),
                e.list_id.into(),
                e.kind.into(),
                e.occurred_at.unwrap_or(now).into(),
                e.source.into(),
                e.ip.into(),
                e.user_agent.into(),
                e.policy_version.into(),
                e.consent_text.into(),
                e.detail.map(|d| d.to_string()).into(),
            ]);
        }
        db.execute_raw(Statement::from_sql_and_values(
            db.get_database_backend(),
            sql,
            values,
        ))
        .await?;
    }
    Ok(())
}

#[derive(FromQueryResult)]
struct HistoryRow {
    subscriber_id: i64,
    last_id: i64,
    recent: i64,
    queued: i64,
    last_created_at: time::OffsetDateTime,
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

/// The confirmation history of each of these people since `since`, in one statement per
/// chunk. People without any confirmation are absent (their history is the default).
pub async fn confirmation_histories(
    db: &impl ConnectionTrait,
    subscriber_ids: &[i64],
    since: time::OffsetDateTime,
) -> Result<HashMap<i64, ConfirmationHistory>, DbErr> {
    let mut out = HashMap::with_capacity(subscriber_ids.len());
    for chunk in subscriber_ids.chunks(super::ROWS_PER_STATEMENT) {
        // An id asked twice is found once (`IN`).
        let sql = format!(
            "SELECT h.subscriber_id, h.last_id, h.recent, h.queued, o.created_at AS last_created_at \
             FROM (SELECT subscriber_id, MAX(id) AS last_id, \
                     COALESCE(SUM(CASE WHEN created_at >= $1 THEN 1 ELSE 0 END), 0) AS recent, \
                     COALESCE(SUM(CASE WHEN status = 'queued' THEN 1 ELSE 0 END), 0) AS queued \
                   FROM outbox WHERE kind = 'confirmation' AND subscriber_id IN (SELECT column1 FROM {}) \
                   GROUP BY subscriber_id) h \
             JOIN outbox o ON o.id = h.last_id",
            super::json_rows(db.get_database_backend(), 2, &["bigint"])
        );
        let rows: Vec<[i64; 1]> = chunk.iter().map(|&id| [id]).collect();
        let values = vec![since.into(), super::json_rows_value(&rows)];
        let stmt = Statement::from_sql_and_values(db.get_database_backend(), sql, values);
        for row in HistoryRow::find_by_statement(stmt).all(db).await? {
            out.insert(
                row.subscriber_id,
                ConfirmationHistory {
                    last_id: row.last_id,
                    last_created_ms: Some((row.last_created_at.unix_timestamp_nanos() / 1_000_000) as i64),
                    recent: row.recent,
                    queued: row.queued,
                },
            );
        }
    }
    Ok(out)
}

/// A pending change of address, by the id its confirmation link carries.
pub async fn address_change_by_uuid(
    db: &impl ConnectionTrait,
    change: uuid::Uuid,
) -> Result<Option<address_change::Model>, DbErr> {
    address_change::Entity::find()
        .filter(address_change::Column::Uuid.eq(change))
        .one(db)
        .await
}

/// Marks one subscription as left, unless it was already; true when it changed.
pub async fn leave(db: &impl ConnectionTrait, subscriber_id: i64, list_id: i64) -> Result<bool, DbErr> {
    let res = subscription::Entity::update_many()
        .col_expr(
            subscription::Column::Status,
            Expr::value(SubscriptionStatus::Unsubscribed),
        )
        .col_expr(subscription::Column::UnsubscribedAt, super::now().into())
        .col_expr(subscription::Column::PendingSinceMs, Option::<i64>::None.into())
        .filter(subscription::Column::SubscriberId.eq(subscriber_id))
        .filter(subscription::Column::ListId.eq(list_id))
        .filter(subscription::Column::Status.ne(SubscriptionStatus::Unsubscribed))
        .exec(db)
        .await?;
    Ok(res.rows_affected > 0)
}

/// Confirms a subscription to `list_id` by a fresh opt-in of the person themself: the existing
/// row (pending or left) is confirmed, or a confirmed one is created.
pub async fn join_confirmed(
    db: &impl ConnectionTrait,
    subscriber_id: i64,
    list_id: i64,
    existing: Option<i64>,
) -> Result<(), DbErr> {
    match existing {
        Some(id) => {
            subscription::Entity::update_many()
                .col_expr(
                    subscription::Column::Status,
                    Expr::value(SubscriptionStatus::Confirmed),
                )
                .col_expr(subscription::Column::ConfirmedAt, super::now().into())
                .col_expr(subscription::Column::PendingSinceMs, Option::<i64>::None.into())
                .filter(subscription::Column::Id.eq(id))
                .exec(db)
                .await?;
        }
        None => {
            subscription::ActiveModel {
                subscriber_id: Set(subscriber_id),
                list_id: Set(list_id),
                status: Set(SubscriptionStatus::Confirmed),
                created_at: Set(super::now()),
                confirmed_at: Set(Some(super::now())),
                ..Default::default()
            }
            .insert(db)
            .await?;
        }
    }
    Ok(())
}

/// Sets (or clears) a subscriber's display name; a name change waiting for confirmation is
/// dropped (the person has just said what they want to be called).
pub async fn set_name(
    db: &impl ConnectionTrait,
    subscriber_id: i64,
    name: Option<&str>,
) -> Result<(), DbErr> {
    subscriber::Entity::update_many()
        .col_expr(subscriber::Column::Name, name.map(str::to_owned).into())
        .col_expr(subscriber::Column::PendingName, Option::<String>::None.into())
        .col_expr(subscriber::Column::PendingNameSinceMs, Option::<i64>::None.into())
        .col_expr(subscriber::Column::UpdatedAt, super::now().into())
        .filter(subscriber::Column::Id.eq(subscriber_id))
        .exec(db)
        .await?;
    Ok(())
}

/// Deletes the subscriber; foreign keys cascade to subscriptions, consent events, address
/// changes and outbox rows, and a trigger unlinks campaign rows (migration 000010). Outbox
/// rows for the address without a subscriber link (a test send, say) go too, whatever the case
/// it was written in; campaign rows lose the relay's last reply and the Message-ID, which may
/// name the address.
pub async fn delete_subscriber(
    db: &impl ConnectionTrait,
    subscriber: &subscriber::Model,
) -> Result<(), DbErr> {
    let backend = db.get_database_backend();
    db.execute_raw(Statement::from_sql_and_values(
        backend,
        "DELETE FROM outbox WHERE LOWER(recipient) = LOWER($1)",
        [subscriber.email_key.clone().into()],
    ))
    .await?;
    db.execute_raw(Statement::from_sql_and_values(
        backend,
        "UPDATE campaign_recipients SET last_error = NULL, message_id = NULL \
         WHERE subscriber_id = $1 AND status <> 'skipped'",
        [subscriber.id.into()],
    ))
    .await?;
    subscriber::Entity::delete_by_id(subscriber.id).exec(db).await?;
    Ok(())
}

/// Records a change of address waiting for the new address's confirmation.
pub async fn insert_address_change(
    db: &impl ConnectionTrait,
    change: uuid::Uuid,
    subscriber_id: i64,
    new_email: &EmailAddress,
) -> Result<(), DbErr> {
    address_change::ActiveModel {
        uuid: Set(change),
        subscriber_id: Set(subscriber_id),
        new_email: Set(new_email.to_string()),
        created_at: Set(super::now()),
        ..Default::default()
    }
    .insert(db)
    .await?;
    Ok(())
}

/// Changes of address asked for one new address (by anyone) since a time.
#[derive(Debug, Default, Clone, Copy, FromQueryResult)]
pub struct RecentChanges {
    pub count: i64,
    pub newest_id: Option<i64>,
}

pub async fn address_changes_to(
    db: &impl ConnectionTrait,
    new_email: &EmailAddress,
    since: time::OffsetDateTime,
) -> Result<RecentChanges, DbErr> {
    Ok(RecentChanges::find_by_statement(Statement::from_sql_and_values(
        db.get_database_backend(),
        "SELECT COUNT(*) AS count, MAX(id) AS newest_id FROM address_changes \
         WHERE LOWER(new_email) = $1 AND created_at >= $2",
        [new_email.as_str().to_lowercase().into(), since.into()],
    ))
    .one(db)
    .await?
    .unwrap_or_default())
}

/// Gives the subscriber a new address (with its key and keyed hash) and drops the change that
/// asked for it.
pub async fn apply_address_change(
    db: &impl ConnectionTrait,
    change: &address_change::Model,
    new_email: &EmailAddress,
    hash: &AddressHash,
) -> Result<(), DbErr> {
    // Mail queued (or logged) for the old address is the person's: it follows them to the new
    // one, and the old address is kept nowhere.
    db.execute_raw(Statement::from_sql_and_values(
        db.get_database_backend(),
        "UPDATE outbox SET recipient = $1 WHERE subscriber_id = $2 \
         AND LOWER(recipient) = LOWER((SELECT email_key FROM subscribers WHERE id = $2))",
        [new_email.to_string().into(), change.subscriber_id.into()],
    ))
    .await?;
    subscriber::Entity::update_many()
        .col_expr(subscriber::Column::Email, new_email.to_string().into())
        .col_expr(subscriber::Column::EmailKey, new_email.normalized().into())
        .col_expr(subscriber::Column::AddressHmac, hash.as_str().into())
        .col_expr(subscriber::Column::UpdatedAt, super::now().into())
        .filter(subscriber::Column::Id.eq(change.subscriber_id))
        .exec(db)
        .await?;
    address_change::Entity::delete_by_id(change.id).exec(db).await?;
    Ok(())
}

/// A campaign message sent (or not) to one person, for their export.
#[derive(Debug, FromQueryResult)]
pub struct CampaignMessage {
    pub subject: String,
    pub status: RecipientStatus,
    pub sent_at: Option<time::OffsetDateTime>,
    pub message_id: Option<String>,
}

/// Everything held about one person beyond the subscriber row, for their export (GD-1).
pub struct Records {
    pub subscriptions: Vec<subscription::Model>,
    pub consent_events: Vec<consent_event::Model>,
    pub messages: Vec<outbox::Model>,
    pub campaign_messages: Vec<CampaignMessage>,
}

pub async fn records_of(db: &impl ConnectionTrait, subscriber_id: i64) -> Result<Records, DbErr> {
    let consent_events = consent_event::Entity::find()
        .filter(consent_event::Column::SubscriberId.eq(subscriber_id))
        .order_by_asc(consent_event::Column::Id)
        .all(db)
        .await?;
    let messages = outbox::Entity::find()
        .filter(outbox::Column::SubscriberId.eq(subscriber_id))
        .order_by_asc(outbox::Column::Id)
        .all(db)
        .await?;
    let campaign_messages = CampaignMessage::find_by_statement(Statement::from_sql_and_values(
        db.get_database_backend(),
        "SELECT c.subject, r.status, r.sent_at, r.message_id FROM campaign_recipients r \
         JOIN campaigns c ON c.id = r.campaign_id WHERE r.subscriber_id = $1 ORDER BY r.id",
        [subscriber_id.into()],
    ))
    .all(db)
    .await?;
    Ok(Records {
        subscriptions: of_subscriber(db, subscriber_id).await?,
        consent_events,
        messages,
        campaign_messages,
    })
}

/// Subscribes a person added by API or import: confirmed (with consent evidence) or pending.
/// An existing pending subscription takes the new state; any other is left as it is.
pub async fn add_subscription(
    db: &impl ConnectionTrait,
    subscriber_id: i64,
    list_id: i64,
    confirmed: bool,
    now_ms: i64,
) -> Result<(), DbErr> {
    let status = if confirmed {
        SubscriptionStatus::Confirmed
    } else {
        SubscriptionStatus::Pending
    };
    db.execute_raw(Statement::from_sql_and_values(
        db.get_database_backend(),
        "INSERT INTO subscriptions (subscriber_id, list_id, status, created_at, confirmed_at, pending_since_ms) \
         VALUES ($1, $2, $3, $4, $5, $6) \
         ON CONFLICT (subscriber_id, list_id) DO UPDATE SET status = excluded.status, \
           confirmed_at = excluded.confirmed_at, pending_since_ms = excluded.pending_since_ms \
         WHERE subscriptions.status = 'pending'",
        [
            subscriber_id.into(),
            list_id.into(),
            status.into(),
            super::now().into(),
            confirmed.then(super::now).into(),
            (!confirmed).then_some(now_ms).into(),
        ],
    ))
    .await?;
    Ok(())
}

/// The status of each of these subscribers on one list, for those with a subscription there.
pub async fn statuses_on(
    db: &impl ConnectionTrait,
    subscriber_ids: &[i64],
    list_id: i64,
) -> Result<HashMap<i64, SubscriptionStatus>, DbErr> {
    #[derive(FromQueryResult)]
    struct Found {
        subscriber_id: i64,
        status: Option<SubscriptionStatus>,
    }
    let backend = db.get_database_backend();
    let mut out = HashMap::with_capacity(subscriber_ids.len());
    for chunk in subscriber_ids.chunks(super::ROWS_PER_STATEMENT) {
        // A lookup per id, through the (subscriber, list) key: a plan PostgreSQL made while the
        // table was small (a prepared statement keeps it) may otherwise scan the whole list.
        let sql = format!(
            "SELECT v.column1 AS subscriber_id, (SELECT x.status FROM subscriptions x \
             WHERE x.subscriber_id = v.column1 AND x.list_id = $1) AS status FROM {}",
            super::json_rows(backend, 2, &["bigint"])
        );
        let rows: Vec<[i64; 1]> = chunk.iter().map(|&id| [id]).collect();
        let stmt =
            Statement::from_sql_and_values(backend, sql, [list_id.into(), super::json_rows_value(&rows)]);
        out.extend(
            Found::find_by_statement(stmt)
                .all(db)
                .await?
                .into_iter()
                .filter_map(|f| Some((f.subscriber_id, f.status?))),
        );
    }
    Ok(out)
}

/// [`add_subscription`] for many (subscriber, list, confirmed) rows, one statement per chunk;
/// the (subscriber, list) pairs must be distinct.
pub async fn add_subscriptions(
    db: &impl ConnectionTrait,
    rows: &[(i64, i64, bool)],
    now_ms: i64,
) -> Result<(), DbErr> {
    const COLS: usize = 6;
    let now = super::now();
    let backend = db.get_database_backend();
    for chunk in rows.chunks(super::ROWS_PER_STATEMENT) {
        let sql = format!(
            "INSERT INTO subscriptions (subscriber_id, list_id, status, created_at, confirmed_at, pending_since_ms) \
             VALUES {} \
             ON CONFLICT (subscriber_id, list_id) DO UPDATE SET status = excluded.status, \
               confirmed_at = excluded.confirmed_at, pending_since_ms = excluded.pending_since_ms \
             WHERE subscriptions.status = 'pending'",
            super::values_list(backend, chunk.len(), COLS)
        );
        let mut values: Vec<sea_orm::Value> = Vec::with_capacity(chunk.len() * COLS);
        for &(subscriber_id, list_id, confirmed) in chunk {
            let status = if confirmed {
                SubscriptionStatus::Confirmed
            } else {
                SubscriptionStatus::Pending
            };
            values.extend([
                subscriber_id.into(),
                list_id.into(),
                status.into(),
                now.into(),
                confirmed.then_some(now).into(),
                (!confirmed).then_some(now_ms).into(),
            ]);
        }
        db.execute_raw(Statement::from_sql_and_values(backend, sql, values))
            .await?;
    }
    Ok(())
}

/// A subscription as the API lists it.
#[derive(Debug, FromQueryResult, serde::Serialize)]
pub struct ListedSubscription {
    pub uuid: uuid::Uuid,
    pub email: String,
    pub name: Option<String>,
    pub list: String,
    pub status: SubscriptionStatus,
}

/// One page of subscriptions in `status`, optionally of one list; never suppressed addresses
/// (CS-10).
pub async fn page(
    db: &impl ConnectionTrait,
    status: SubscriptionStatus,
    list_slug: Option<&str>,
    limit: i64,
    offset: i64,
) -> Result<Vec<ListedSubscription>, DbErr> {
    let (list_cond, mut values): (&str, Vec<sea_orm::Value>) = match list_slug {
        Some(slug) => ("AND l.slug = $2", vec![status.into(), slug.into()]),
        None => ("", vec![status.into()]),
    };
    let n = values.len();
    let sql = format!(
        "SELECT s.uuid, s.email, s.name, l.slug AS list, x.status FROM subscriptions x \
         JOIN subscribers s ON s.id = x.subscriber_id JOIN lists l ON l.id = x.list_id \
         WHERE x.status = $1 {list_cond} \
         AND NOT EXISTS (SELECT 1 FROM suppressions sp WHERE sp.address_hmac = s.address_hmac) \
         ORDER BY x.id LIMIT ${} OFFSET ${}",
        n + 1,
        n + 2
    );
    values.push(limit.into());
    values.push(offset.into());
    ListedSubscription::find_by_statement(Statement::from_sql_and_values(
        db.get_database_backend(),
        sql,
        values,
    ))
    .all(db)
    .await
}

/// A confirmed subscriber of a list, for a mailing export.
#[derive(Debug, FromQueryResult)]
pub struct ExportedSubscriber {
    /// The subscription's id: the cursor of the next page.
    pub id: i64,
    pub email: String,
    pub name: Option<String>,
}

/// The next 1,000 confirmed, unsuppressed subscribers of a list after subscription `after`
/// (CS-10).
pub async fn confirmed_after(
    db: &impl ConnectionTrait,
    list_id: i64,
    after: i64,
) -> Result<Vec<ExportedSubscriber>, DbErr> {
    ExportedSubscriber::find_by_statement(Statement::from_sql_and_values(
        db.get_database_backend(),
        "SELECT x.id, s.email, s.name FROM subscriptions x JOIN subscribers s ON s.id = x.subscriber_id \
         WHERE x.list_id = $1 AND x.status = 'confirmed' AND x.id > $2 \
         AND NOT EXISTS (SELECT 1 FROM suppressions sp WHERE sp.address_hmac = s.address_hmac) \
         ORDER BY x.id LIMIT 1000",
        [list_id.into(), after.into()],
    ))
    .all(db)
    .await
}
