//! Policy versions and breach notices: the transactional notices the privacy policy promises.
//!
//! Publishing a policy version records it and, in the same transaction, queues one notice per
//! person in one set-based statement: everyone who ever confirmed a subscription (people who
//! left included: the notice is transactional), never erased people (they are gone) and never
//! addresses suppressed for bounces, complaints or by hand. A dedupe key per version and person
//! makes a second publish, a crash or a second instance unable to queue a second notice.

use sea_orm::{ActiveModelTrait, ConnectionTrait, DbErr, Set, Statement, Value};
use sha2::{Digest, Sha256};
use url::Url;

use crate::app::AppState;
use crate::delivery::Payload;
use crate::domain::{EmailAddress, HeaderText};
use crate::store::entities::{breach_notice, policy_version};
use crate::store::{self, begin_write, policies};

/// Who may get a notice: confirmed at some point, not suppressed except for having left.
const NOTICE_AUDIENCE: &str = "EXISTS (SELECT 1 FROM subscriptions x WHERE x.subscriber_id = s.id \
     AND x.confirmed_at IS NOT NULL) \
     AND NOT EXISTS (SELECT 1 FROM suppressions sp WHERE sp.address_hmac = s.address_hmac \
     AND sp.reason <> 'unsubscribed')";

#[derive(Debug, Clone)]
pub struct NewPolicy {
    pub version: String,
    pub effective_at: time::OffsetDateTime,
    pub summary: String,
    pub url: Url,
    pub material: bool,
}

impl NewPolicy {
    fn content_hash(&self) -> String {
        let mut h = Sha256::new();
        for part in [
            self.version.as_str(),
            &self.effective_at.unix_timestamp().to_string(),
            &self.summary,
            self.url.as_str(),
            if self.material { "material" } else { "" },
        ] {
            h.update(part.as_bytes());
            h.update([0]);
        }
        hex::encode(h.finalize())
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum PublishOutcome {
    /// Published now; this many notices queued.
    Published {
        policy: policy_version::Model,
        queued: u64,
    },
    /// The same version with the same content was published before: nothing new.
    AlreadyPublished { policy: policy_version::Model },
    /// The same version exists with other content.
    Conflict,
}

async fn enqueue_for(
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
        store::now_ms().into(),
        dedupe_prefix.into(),
        store::now().into(),
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

pub async fn publish_policy(state: &AppState, new: NewPolicy) -> Result<PublishOutcome, DbErr> {
    let hash = new.content_hash();
    let tx = begin_write(&state.db).await?;
    if let Some(existing) = policies::by_version(&tx, &new.version).await? {
        return Ok(if existing.content_hash == hash {
            PublishOutcome::AlreadyPublished { policy: existing }
        } else {
            PublishOutcome::Conflict
        });
    }
    let policy = policy_version::ActiveModel {
        version: Set(new.version.clone()),
        effective_at: Set(new.effective_at),
        summary: Set(new.summary.clone()),
        url: Set(new.url.to_string()),
        material: Set(new.material),
        content_hash: Set(hash),
        published_at: Set(store::now()),
        ..Default::default()
    }
    .insert(&tx)
    .await?;
    let payload = serde_json::to_value(Payload::PolicyNotice { policy_id: policy.id }).expect("serializes");
    let queued = enqueue_for(
        &tx,
        "policy_notice",
        &payload,
        &format!("policy:{}:", policy.id),
        "",
        Vec::new(),
    )
    .await?;
    tx.commit().await?;
    state.outbox_wakeup.notify_one();
    tracing::info!(version = %policy.version, queued, "policy version published");
    Ok(PublishOutcome::Published { policy, queued })
}

/// Publishing races with itself across instances: a unique violation means another publish of
/// the same version won; read it back and answer as for a repeat.
pub async fn publish_policy_idempotent(state: &AppState, new: NewPolicy) -> Result<PublishOutcome, DbErr> {
    match publish_policy(state, new.clone()).await {
        Err(e) if store::is_unique_violation(&e) => publish_policy(state, new).await,
        other => other,
    }
}

/// Who a breach affected.
#[derive(Debug, Clone)]
pub enum Affected {
    All,
    Addresses(Vec<EmailAddress>),
    /// People who signed up in `[from, until)`.
    SignedUp {
        from: time::OffsetDateTime,
        until: time::OffsetDateTime,
    },
}

impl Affected {
    fn describe(&self) -> String {
        match self {
            Affected::All => "all".into(),
            Affected::Addresses(a) => format!("{} listed addresses", a.len()),
            Affected::SignedUp { from, until } => format!("signed up from {from} until {until}"),
        }
    }
}

/// Records a breach notice, shows it on /notices, and queues one email per affected person
/// (same exclusions as policy notices; erased people get nothing). Returns the notice and how
/// many emails were queued.
pub async fn publish_breach(
    state: &AppState,
    subject: HeaderText,
    body: String,
    affected: Affected,
) -> Result<(breach_notice::Model, u64), DbErr> {
    let tx = begin_write(&state.db).await?;
    let notice = breach_notice::ActiveModel {
        subject: Set(subject.as_str().to_owned()),
        body: Set(body),
        affected: Set(affected.describe()),
        notified: Set(0),
        published_at: Set(store::now()),
        ..Default::default()
    }
    .insert(&tx)
    .await?;
    let payload = serde_json::to_value(Payload::BreachNotice { notice_id: notice.id }).expect("serializes");
    let prefix = format!("breach:{}:", notice.id);
    let queued = match &affected {
        Affected::All => enqueue_for(&tx, "breach_notice", &payload, &prefix, "", Vec::new()).await?,
        Affected::Addresses(addresses) => {
            let mut total = 0;
            for chunk in addresses.chunks(500) {
                let placeholders = crate::store::params(1, chunk.len());
                let values = chunk.iter().map(|a| a.normalized().into()).collect();
                total += enqueue_for(
                    &tx,
                    "breach_notice",
                    &payload,
                    &prefix,
                    &format!("AND s.email_key IN ({placeholders})"),
                    values,
                )
                .await?;
            }
            total
        }
        Affected::SignedUp { from, until } => {
            enqueue_for(
                &tx,
                "breach_notice",
                &payload,
                &prefix,
                "AND s.created_at >= $1 AND s.created_at < $2",
                vec![(*from).into(), (*until).into()],
            )
            .await?
        }
    };
    let mut active: breach_notice::ActiveModel = notice.into();
    active.notified = Set(i32::try_from(queued).unwrap_or(i32::MAX));
    let notice = active.update(&tx).await?;
    tx.commit().await?;
    state.outbox_wakeup.notify_one();
    tracing::info!(id = notice.id, queued, "breach notice published");
    Ok((notice, queued))
}
