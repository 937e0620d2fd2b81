//! Policy versions and breach notices, and the notices they queue.

use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, Set,
    Statement, Value,
};

use super::entities::{breach_notice, policy_version};

/// The version in force at `at`: the latest whose effective date has come.
pub async fn in_force(
    db: &impl ConnectionTrait,
    at: time::OffsetDateTime,
) -> Result<Option<policy_version::Model>, DbErr> {
    // Few rows; filtering in Rust keeps the comparison exact on SQLite too.
    Ok(policy_version::Entity::find()
        .order_by_desc(policy_version::Column::EffectiveAt)
        .all(db)
        .await?
        .into_iter()
        .find(|p| p.effective_at <= at))
}

pub async fn by_version(
    db: &impl ConnectionTrait,
    version: &str,
) -> Result<Option<policy_version::Model>, DbErr> {
    policy_version::Entity::find()
        .filter(policy_version::Column::Version.eq(version))
        .one(db)
        .await
}

pub async fn all(db: &impl ConnectionTrait) -> Result<Vec<policy_version::Model>, DbErr> {
    policy_version::Entity::find()
        .order_by_desc(policy_version::Column::EffectiveAt)
        .all(db)
        .await
}

/// Breach notices, newest first; only those in force when `in_force_only`.
pub async fn breach_notices(
    db: &impl ConnectionTrait,
    in_force_only: bool,
) -> Result<Vec<breach_notice::Model>, DbErr> {
    let mut q = breach_notice::Entity::find().order_by_desc(breach_notice::Column::Id);
    if in_force_only {
        q = q.filter(breach_notice::Column::WithdrawnAt.is_null());
    }
    q.all(db).await
}

pub async fn withdraw_breach_notice(
    db: &impl ConnectionTrait,
    id: i64,
) -> Result<Option<breach_notice::Model>, DbErr> {
    breach_notice::Entity::update_many()
        .col_expr(breach_notice::Column::WithdrawnAt, super::now().into())
        .filter(breach_notice::Column::Id.eq(id))
        .filter(breach_notice::Column::WithdrawnAt.is_null())
        .exec(db)
        .await?;
    breach_notice::Entity::find_by_id(id).one(db).await
}

/// The newest material version already in force, if any: marketing then needs consent given
/// under it (an agreement, or a signup, confirmation or import since it took effect).
pub async fn material_in_force(
    db: &impl ConnectionTrait,
    at: time::OffsetDateTime,
) -> Result<Option<policy_version::Model>, DbErr> {
    Ok(policy_version::Entity::find()
        .filter(policy_version::Column::Material.eq(true))
        .order_by_desc(policy_version::Column::EffectiveAt)
        .all(db)
        .await?
        .into_iter()
        .find(|p| p.effective_at <= at))
}

pub async fn policy_by_id(
    db: &impl ConnectionTrait,
    id: i64,
) -> Result<Option<policy_version::Model>, DbErr> {
    policy_version::Entity::find_by_id(id).one(db).await
}

pub async fn breach_notice_by_id(
    db: &impl ConnectionTrait,
    id: i64,
) -> Result<Option<breach_notice::Model>, DbErr> {
    breach_notice::Entity::find_by_id(id).one(db).await
}

/// Who a notice goes to.
pub enum NoticeAudience<'a> {
    /// Everyone who may get a notice.
    All,
    /// Of those, the people with these addresses (normalized).
    Addresses(&'a [String]),
    /// Of those, the people who signed up in `[from, until)`.
    SignedUp {
        from: time::OffsetDateTime,
        until: time::OffsetDateTime,
    },
}

/// Who may get a notice: confirmed at some point (people who left included: a notice is
/// transactional), not suppressed except for having left.
const NOTICE_AUDIENCE: &str = "EXISTS (SELECT 1 FROM subscriptions x WHERE x.subscriber_id = s.id \
     AND x.confirmed_at IS NOT NULL) \
     AND NOT EXISTS (SELECT 1 FROM suppressions sp WHERE sp.address_hmac = s.address_hmac \
     AND sp.reason <> 'unsubscribed')";

/// Queues one notice per person of `audience` in set-based statements. The dedupe key (the
/// prefix and the person's id) makes a second run queue nothing new. Returns how many were
/// queued.
pub async fn queue_notices(
    db: &impl ConnectionTrait,
    kind: &str,
    payload: &serde_json::Value,
    dedupe_prefix: &str,
    audience: NoticeAudience<'_>,
) -> Result<u64, DbErr> {
    match audience {
        NoticeAudience::All => queue_notices_where(db, kind, payload, dedupe_prefix, "", Vec::new()).await,
        NoticeAudience::Addresses(keys) => {
            let rows: Vec<[&str; 1]> = keys.iter().map(|k| [k.as_str()]).collect();
            let source = super::json_rows(db.get_database_backend(), 1, &["text"]);
            let condition = format!("AND s.email_key IN (SELECT column1 FROM {source})");
            let values = vec![super::json_rows_value(&rows)];
            queue_notices_where(db, kind, payload, dedupe_prefix, &condition, values).await
        }
        NoticeAudience::SignedUp { from, until } => {
            let condition = "AND s.created_at >= $1 AND s.created_at < $2";
            let values = vec![from.into(), until.into()];
            queue_notices_where(db, kind, payload, dedupe_prefix, condition, values).await
        }
    }
}

async fn queue_notices_where(
    db: &impl ConnectionTrait,
    kind: &str,
    payload: &serde_json::Value,
    dedupe_prefix: &str,
    extra_condition: &str,
    mut values: Vec<Value>,
) -> Result<u64, DbErr> {
    let n = values.len();
    let sql = format!(
        "INSERT INTO outbox (kind, subscriber_id, recipient, payload, status, attempts, next_attempt_at_ms, \
         dedupe_key, created_at) \
         SELECT ${k}, s.id, s.email, ${p}, 'queued', 0, ${ms}, ${d} || CAST(s.id AS TEXT), ${now} \
         FROM subscribers s WHERE {NOTICE_AUDIENCE} {extra_condition} \
         ON CONFLICT (dedupe_key) DO NOTHING",
        k = n + 1,
        p = n + 2,
        ms = n + 3,
        d = n + 4,
        now = n + 5,
    );
    values.extend([
        kind.into(),
        payload.to_string().into(),
        super::now_ms().into(),
        dedupe_prefix.into(),
        super::now().into(),
    ]);
    let res = db
        .execute_raw(Statement::from_sql_and_values(
            db.get_database_backend(),
            sql,
            values,
        ))
        .await?;
    Ok(res.rows_affected())
}

/// A policy version to record.
pub struct NewPolicyVersion<'a> {
    pub version: &'a str,
    pub effective_at: time::OffsetDateTime,
    pub summary: &'a str,
    pub url: &'a str,
    pub material: bool,
    pub content_hash: String,
}

pub async fn insert_policy(
    db: &impl ConnectionTrait,
    new: NewPolicyVersion<'_>,
) -> Result<policy_version::Model, DbErr> {
    policy_version::ActiveModel {
        version: Set(new.version.to_owned()),
        effective_at: Set(new.effective_at),
        summary: Set(new.summary.to_owned()),
        url: Set(new.url.to_owned()),
        material: Set(new.material),
        content_hash: Set(new.content_hash),
        published_at: Set(super::now()),
        ..Default::default()
    }
    .insert(db)
    .await
}

/// Records a breach notice (shown on /notices), with no one notified yet.
pub async fn insert_breach_notice(
    db: &impl ConnectionTrait,
    subject: &str,
    body: String,
    affected: String,
) -> Result<breach_notice::Model, DbErr> {
    breach_notice::ActiveModel {
        subject: Set(subject.to_owned()),
        body: Set(body),
        affected: Set(affected),
        notified: Set(0),
        published_at: Set(super::now()),
        ..Default::default()
    }
    .insert(db)
    .await
}

/// Records how many people a breach notice was queued for.
pub async fn set_notified(
    db: &impl ConnectionTrait,
    notice: breach_notice::Model,
    notified: u64,
) -> Result<breach_notice::Model, DbErr> {
    let mut active: breach_notice::ActiveModel = notice.into();
    active.notified = Set(i32::try_from(notified).unwrap_or(i32::MAX));
    active.update(db).await
}
