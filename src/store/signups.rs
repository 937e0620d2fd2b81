//! Signups, written a batch at a time: the one write path both databases take.
//!
//! A batch is split into rounds in which each address comes once (the service does that); each
//! round upserts its people, makes their chosen lists pending (lists deleted meanwhile are left
//! out, the others are kept from deletion until the batch commits), records a consent event per
//! list with the policy version in force, and queues a confirmation for each person one is due
//! to ([`confirmation_due`]).
//!
//! PostgreSQL does a round in one statement of data-modifying CTEs, atomic on its own, because
//! there a round trip costs the server far more than the rows it carries; the rows travel as two
//! JSON documents, so the statement's text is the same for every batch size. SQLite has no
//! data-modifying CTEs and no round trips, so there the round is a few multi-row statements in
//! the batch's transaction. The confirmation rule is written twice, in [`confirmation_due`] and
//! at the end of [`WRITE_ROUND`]; the whole test suite runs on both databases to keep them
//! alike.

use std::collections::{HashMap, HashSet};

use sea_orm::{ConnectionTrait, DbErr, Statement};

use super::entities::consent_event::ConsentKind;
use super::entities::outbox::OutboxKind;
use super::entities::subscription::SubscriptionStatus;
use super::subscriptions::{self, ConfirmationHistory, NewConsentEvent};
use super::{Db, Tx, begin_write, lists, outbox, policies};

/// One person of a round. Addresses (`email_key`) are distinct within a round.
#[derive(serde::Serialize)]
pub struct SignupPerson<'a> {
    pub uuid: uuid::Uuid,
    pub email: &'a str,
    pub email_key: String,
    pub name: Option<&'a str>,
    pub hmac: &'a str,
    pub source: &'a str,
    pub ip: Option<&'a str>,
    pub user_agent: Option<&'a str>,
}

/// A list a person chose, with the consent event's detail (JSON text).
#[derive(serde::Serialize)]
pub struct SignupChoice {
    pub email_key: String,
    pub list_id: i64,
    pub detail: String,
}

/// The rows of one round.
#[derive(Default)]
pub struct Round<'a> {
    pub people: Vec<SignupPerson<'a>>,
    pub choices: Vec<SignupChoice>,
}

/// What the confirmation rule needs besides the rows.
pub struct ConfirmationRule<'a> {
    /// Payload of a confirmation's outbox row.
    pub payload: &'a serde_json::Value,
    /// The consent statement recorded with each signup.
    pub consent_text: &'a str,
    /// The consent statement recorded while no policy is in force.
    pub consent_text_without_policy: &'a str,
    /// Confirmations to one address per day at most (OI-6).
    pub per_day: i64,
    /// A confirmation that covers what is pending is sent again only after this long.
    pub resend_after_ms: i64,
}

/// Writes a batch of signups, round by round, in one transaction.
pub async fn write(db: &Db, rounds: &[Round<'_>], rule: &ConfirmationRule<'_>) -> Result<(), DbErr> {
    if super::is_postgres(db) {
        // A round is one statement, atomic on its own: a batch of one needs no BEGIN/COMMIT.
        if let [round] = rounds {
            return write_round_postgres(db, round, rule).await;
        }
        let tx = begin_write(db).await?;
        for round in rounds {
            write_round_postgres(&tx, round, rule).await?;
        }
        return tx.commit().await;
    }
    let (now, now_ms) = super::now_and_ms();
    let tx = begin_write(db).await?;
    let policy = policies::in_force(&tx, now).await?.map(|p| p.version);
    // The lists were checked against a cached copy: one deleted since is left out, the rest
    // are kept from being deleted until the batch commits.
    let mut list_ids: Vec<i64> = rounds
        .iter()
        .flat_map(|r| r.choices.iter().map(|c| c.list_id))
        .collect();
    list_ids.sort_unstable();
    list_ids.dedup();
    let existing = lists::lock_existing(&tx, list_ids).await?;
    for round in rounds {
        write_round_sqlite(&tx, round, &existing, policy.as_deref(), rule, now_ms).await?;
    }
    tx.commit().await
}

async fn write_round_sqlite(
    tx: &Tx,
    round: &Round<'_>,
    existing_lists: &HashSet<i64>,
    policy: Option<&str>,
    rule: &ConfirmationRule<'_>,
    now_ms: i64,
) -> Result<(), DbErr> {
    // People in address order, as PostgreSQL's statement writes them.
    let mut people: Vec<&SignupPerson> = round.people.iter().collect();
    people.sort_by(|a, b| a.email_key.cmp(&b.email_key));
    let upserts: Vec<_> = people
        .iter()
        .map(|p| subscriptions::SubscriberRow {
            email: p.email,
            email_key: &p.email_key,
            hmac: p.hmac,
            name: p.name,
        })
        .collect();
    let subscribers = subscriptions::upsert_subscribers(tx, &upserts).await?;
    let subscriber_of = |email_key: &str| {
        subscribers
            .get(email_key)
            .map(|s| s.id)
            .ok_or_else(|| DbErr::RecordNotFound("upserted subscriber".into()))
    };
    let person_of: HashMap<&str, &SignupPerson> = people.iter().map(|p| (p.email_key.as_str(), *p)).collect();
    let chosen: Vec<&SignupChoice> = round
        .choices
        .iter()
        .filter(|c| existing_lists.contains(&c.list_id))
        .collect();

    let mut pairs = Vec::with_capacity(chosen.len());
    for c in &chosen {
        pairs.push((subscriber_of(&c.email_key)?, c.list_id));
    }
    let requested = subscriptions::request_subscriptions(tx, &pairs, now_ms).await?;

    let mut events = Vec::with_capacity(chosen.len());
    // Per person: the newest moment a chosen list became pending. A confirmation created
    // before it does not cover it (its link is issued later, at send time, but may be out).
    let mut newest_pending: HashMap<i64, i64> = HashMap::new();
    for (c, &(id, list_id)) in chosen.iter().zip(&pairs) {
        if let Some(r) = requested.get(&(id, list_id))
            && r.status == SubscriptionStatus::Pending
        {
            let since = r.pending_since_ms.unwrap_or(now_ms);
            let newest = newest_pending.entry(id).or_insert(since);
            *newest = (*newest).max(since);
        }
        let person = person_of[c.email_key.as_str()];
        events.push(NewConsentEvent {
            subscriber_id: id,
            list_id: Some(list_id),
            kind: ConsentKind::Signup,
            source: person.source.to_owned(),
            ip: person.ip.map(str::to_owned),
            user_agent: person.user_agent.map(str::to_owned),
            policy_version: policy.map(str::to_owned),
            consent_text: Some(
                if policy.is_some() {
                    rule.consent_text
                } else {
                    rule.consent_text_without_policy
                }
                .to_owned(),
            ),
            detail: serde_json::from_str(&c.detail).ok(),
            occurred_at: None,
        });
    }
    subscriptions::record_consents(tx, events).await?;
    // A name change waiting for confirmation is confirmed by the same email.
    for s in subscribers.values() {
        if let Some(since) = s.pending_name_since_ms {
            let newest = newest_pending.entry(s.id).or_insert(since);
            *newest = (*newest).max(since);
        }
    }

    let ids: Vec<i64> = people
        .iter()
        .filter_map(|p| subscriber_of(&p.email_key).ok())
        .filter(|id| newest_pending.contains_key(id))
        .collect();
    let histories = subscriptions::confirmation_histories(tx, &ids, day_ago()).await?;
    let mut confirmations = Vec::with_capacity(ids.len());
    for p in &people {
        let id = subscriber_of(&p.email_key)?;
        let Some(&newest) = newest_pending.get(&id) else {
            continue;
        };
        let history = histories.get(&id).copied().unwrap_or_default();
        if let Some(dedupe_key) = confirmation_due(rule, &history, id, newest, now_ms) {
            confirmations.push(confirmation_message(rule, id, p.email, dedupe_key));
        }
    }
    outbox::enqueue_many(tx, confirmations).await?;
    Ok(())
}

/// Queues a confirmation for one person with something pending since `newest_pending_ms`, if
/// one is due (see [`confirmation_due`]).
pub async fn queue_confirmation(
    tx: &Tx,
    subscriber_id: i64,
    email: &str,
    newest_pending_ms: i64,
    rule: &ConfirmationRule<'_>,
) -> Result<(), DbErr> {
    let history = subscriptions::confirmation_histories(tx, &[subscriber_id], day_ago())
        .await?
        .remove(&subscriber_id)
        .unwrap_or_default();
    if let Some(dedupe_key) =
        confirmation_due(rule, &history, subscriber_id, newest_pending_ms, super::now_ms())
    {
        outbox::enqueue(tx, confirmation_message(rule, subscriber_id, email, dedupe_key)).await?;
    }
    Ok(())
}

fn day_ago() -> time::OffsetDateTime {
    super::now() - time::Duration::days(1)
}

/// Whether a confirmation is due, and its dedupe key: nothing is queued already (a queued one
/// renders at send time and covers every list pending by then), and either the last
/// confirmation does not cover what is pending or it is old enough to send again; at most N a
/// day go to one address (OI-6). The dedupe key chains on the newest confirmation, so
/// concurrent requests that saw the same history insert only one. [`WRITE_ROUND`] applies the
/// same rule in SQL: a change here goes there too.
fn confirmation_due(
    rule: &ConfirmationRule<'_>,
    history: &ConfirmationHistory,
    subscriber_id: i64,
    newest_pending_ms: i64,
    now_ms: i64,
) -> Option<String> {
    let wanted = match history.last_created_ms {
        None => true,
        Some(last) => newest_pending_ms > last || now_ms - last >= rule.resend_after_ms,
    };
    (wanted && history.queued == 0 && history.recent < rule.per_day)
        .then(|| format!("confirm:{subscriber_id}:{}", history.last_id))
}

fn confirmation_message(
    rule: &ConfirmationRule<'_>,
    subscriber_id: i64,
    email: &str,
    dedupe_key: String,
) -> outbox::NewOutboxMessage {
    outbox::NewOutboxMessage {
        kind: OutboxKind::Confirmation,
        subscriber_id: Some(subscriber_id),
        recipient: email.to_owned(),
        payload: rule.payload.clone(),
        dedupe_key: Some(dedupe_key),
    }
}

/// A round on PostgreSQL: one statement (see [`WRITE_ROUND`]).
async fn write_round_postgres(
    db: &impl ConnectionTrait,
    round: &Round<'_>,
    rule: &ConfirmationRule<'_>,
) -> Result<(), DbErr> {
    let (now, now_ms) = super::now_and_ms();
    let since = now - time::Duration::days(1);
    let people = serde_json::to_string(&round.people).map_err(|e| DbErr::Custom(e.to_string()))?;
    let choices = serde_json::to_string(&round.choices).map_err(|e| DbErr::Custom(e.to_string()))?;
    let values: Vec<sea_orm::Value> = vec![
        people.into(),
        choices.into(),
        now.into(),
        now_ms.into(),
        rule.consent_text.into(),
        since.into(),
        rule.per_day.into(),
        rule.resend_after_ms.into(),
        rule.payload.to_string().into(),
        rule.consent_text_without_policy.into(),
    ];
    db.execute_raw(Statement::from_sql_and_values(
        db.get_database_backend(),
        WRITE_ROUND.as_str(),
        values,
    ))
    .await
    .map(|_| ())
}

/// $1 people, $2 choices (JSON), $3 now, $4 now (epoch ms), $5 consent text, $6 a day ago,
/// $7 confirmations per day, $8 resend after (ms), $9 confirmation payload, $10 consent text
/// while no policy is in force.
///
/// Rows are written in address and (subscriber, list) order, so that concurrent rounds lock
/// in one order. The history is read from the statement's snapshot, before its own insert; a
/// concurrent round that saw the same history computes the same dedupe key, and only one of
/// the two confirmations is inserted.
static WRITE_ROUND: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    WRITE_ROUND_SQL.replace("{NAME_ON_CONFLICT}", &subscriptions::name_on_conflict("$4"))
});

/// [`WRITE_ROUND`] with the name rule's place marked.
const WRITE_ROUND_SQL: &str = "\
WITH people AS (
    SELECT * FROM json_to_recordset($1::json) AS p(uuid uuid, email text, email_key text, name text,
        hmac text, source text, ip text, user_agent text)
), choices AS (
    SELECT * FROM json_to_recordset($2::json) AS c(email_key text, list_id bigint, detail text)
), locked AS (
    SELECT id FROM lists WHERE id IN (SELECT list_id FROM choices) FOR KEY SHARE
), subscribers_upserted AS (
    INSERT INTO subscribers (uuid, email, email_key, name, created_at, updated_at, address_hmac)
    SELECT uuid, email, email_key, name, $3, $3, hmac FROM people ORDER BY email_key
    ON CONFLICT (email_key) DO UPDATE SET {NAME_ON_CONFLICT}
    RETURNING id, email_key, pending_name_since_ms
), pairs AS (
    SELECT s.id AS subscriber_id, c.list_id, c.detail, p.source, p.ip, p.user_agent
    FROM choices c
    JOIN subscribers_upserted s ON s.email_key = c.email_key
    JOIN people p ON p.email_key = c.email_key
    JOIN locked l ON l.id = c.list_id
), requested AS (
    INSERT INTO subscriptions (subscriber_id, list_id, status, created_at, pending_since_ms)
    SELECT subscriber_id, list_id, 'pending', $3, $4 FROM pairs ORDER BY subscriber_id, list_id
    ON CONFLICT (subscriber_id, list_id) DO UPDATE SET
        pending_since_ms = CASE WHEN subscriptions.status = 'unsubscribed'
            THEN excluded.pending_since_ms ELSE subscriptions.pending_since_ms END,
        status = CASE WHEN subscriptions.status = 'unsubscribed'
            THEN 'pending' ELSE subscriptions.status END
    RETURNING subscriber_id, status, pending_since_ms
), policy AS (
    SELECT version FROM policy_versions WHERE effective_at <= $3 ORDER BY effective_at DESC LIMIT 1
), consents AS (
    INSERT INTO consent_events (subscriber_id, list_id, kind, occurred_at, source, ip, user_agent,
        policy_version, consent_text, detail)
    SELECT subscriber_id, list_id, 'signup', $3, source, ip, user_agent,
        (SELECT version FROM policy), CASE WHEN EXISTS (SELECT 1 FROM policy) THEN $5 ELSE $10 END, detail
    FROM pairs
), newest_pending AS (
    SELECT subscriber_id, MAX(since_ms) AS newest_ms FROM (
        SELECT subscriber_id, COALESCE(pending_since_ms, $4) AS since_ms
        FROM requested WHERE status = 'pending'
        UNION ALL
        SELECT id, pending_name_since_ms FROM subscribers_upserted
        WHERE pending_name_since_ms IS NOT NULL
    ) pending GROUP BY subscriber_id
), history AS (
    SELECT h.subscriber_id, h.last_id, h.recent, h.queued,
        floor(extract(epoch FROM o.created_at) * 1000)::bigint AS last_created_ms
    FROM (SELECT subscriber_id, MAX(id) AS last_id,
            SUM(CASE WHEN created_at >= $6 THEN 1 ELSE 0 END) AS recent,
            SUM(CASE WHEN status = 'queued' THEN 1 ELSE 0 END) AS queued
          FROM outbox WHERE kind = 'confirmation'
            AND subscriber_id IN (SELECT subscriber_id FROM newest_pending)
          GROUP BY subscriber_id) h
    JOIN outbox o ON o.id = h.last_id
)
INSERT INTO outbox (kind, subscriber_id, recipient, payload, next_attempt_at_ms, dedupe_key,
    created_at, status, attempts)
SELECT 'confirmation', n.subscriber_id, p.email, $9, $4,
    'confirm:' || n.subscriber_id || ':' || COALESCE(h.last_id, 0), $3, 'queued', 0
FROM newest_pending n
JOIN subscribers_upserted s ON s.id = n.subscriber_id
JOIN people p ON p.email_key = s.email_key
LEFT JOIN history h ON h.subscriber_id = n.subscriber_id
WHERE COALESCE(h.queued, 0) = 0 AND COALESCE(h.recent, 0) < $7
  AND (h.last_created_ms IS NULL OR n.newest_ms > h.last_created_ms
       OR $4 - h.last_created_ms >= $8)
ORDER BY n.subscriber_id
ON CONFLICT (dedupe_key) DO NOTHING";
