//! A round of signups written by one PostgreSQL statement.
//!
//! On PostgreSQL a statement costs the server far more for its round trip (wake-ups, protocol,
//! TLS) than for its rows: under the signup benchmark the executor's time was under a quarter of the
//! server's CPU, and a batch was nine round trips (BEGIN, policy, list lock, four writes, the
//! confirmation history, COMMIT). Here data-modifying CTEs do all of it in one statement, which
//! is atomic on its own: no BEGIN or COMMIT either. The rows travel as two JSON documents, so
//! the statement's text is the same for every batch size and is prepared once per connection.
//!
//! It does what `signup::write_round` does on SQLite (which has no data-modifying CTEs) with the
//! same rules; the whole test suite runs on both databases to keep the two alike. The
//! confirmation rule is the signup service's `confirmation_due`, written in SQL.

use sea_orm::{ConnectionTrait, DbErr, Statement};

/// One person of the round. Addresses (`email_key`) are distinct within a round.
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

/// A list a person chose, with the consent event's detail.
#[derive(serde::Serialize)]
pub struct SignupChoice {
    pub email_key: String,
    pub list_id: i64,
    pub detail: String,
}

/// What the confirmation rule needs besides the rows.
pub struct ConfirmationRule<'a> {
    /// Payload of a confirmation's outbox row.
    pub payload: &'a str,
    pub consent_text: &'a str,
    pub per_day: i64,
    pub resend_after_ms: i64,
}

/// Upserts the people, makes their chosen lists pending (lists deleted meanwhile are left out,
/// the others locked against deletion), records a consent event per list with the policy
/// version in force, and queues a confirmation for each person one is due to.
pub async fn write_round_postgres(
    db: &impl ConnectionTrait,
    people: &[SignupPerson<'_>],
    choices: &[SignupChoice],
    rule: &ConfirmationRule<'_>,
) -> Result<(), DbErr> {
    let (now, now_ms) = super::now_and_ms();
    let since = now - time::Duration::days(1);
    let people = serde_json::to_string(people).map_err(|e| DbErr::Custom(e.to_string()))?;
    let choices = serde_json::to_string(choices).map_err(|e| DbErr::Custom(e.to_string()))?;
    let values: Vec<sea_orm::Value> = vec![
        people.into(),
        choices.into(),
        now.into(),
        now_ms.into(),
        rule.consent_text.into(),
        since.into(),
        rule.per_day.into(),
        rule.resend_after_ms.into(),
        rule.payload.into(),
    ];
    db.execute_raw(Statement::from_sql_and_values(
        db.get_database_backend(),
        WRITE_ROUND,
        values,
    ))
    .await
    .map(|_| ())
}

/// $1 people, $2 choices (JSON), $3 now, $4 now (epoch ms), $5 consent text, $6 a day ago,
/// $7 confirmations per day, $8 resend after (ms), $9 confirmation payload.
///
/// Rows are written in address and (subscriber, list) order, so that concurrent rounds lock
/// in one order. The history is read from the statement's snapshot, before its own insert; a
/// concurrent round that saw the same history computes the same dedupe key, and only one of
/// the two confirmations is inserted.
const WRITE_ROUND: &str = "\
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
    ON CONFLICT (email_key) DO UPDATE SET name = COALESCE(subscribers.name, excluded.name)
    RETURNING id, email_key
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
), consents AS (
    INSERT INTO consent_events (subscriber_id, list_id, kind, occurred_at, source, ip, user_agent,
        policy_version, consent_text, detail)
    SELECT subscriber_id, list_id, 'signup', $3, source, ip, user_agent,
        (SELECT version FROM policy_versions WHERE effective_at <= $3 ORDER BY effective_at DESC LIMIT 1),
        $5, detail
    FROM pairs
), newest_pending AS (
    SELECT subscriber_id, MAX(COALESCE(pending_since_ms, $4)) AS newest_ms
    FROM requested WHERE status = 'pending' GROUP BY subscriber_id
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
