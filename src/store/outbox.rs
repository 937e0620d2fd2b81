//! The outbox: every email is a row, written in the transaction of the change that causes it.
//! Workers claim due rows with a lease, let go of the database, send, then record the outcome
//! fenced by their lease (a worker whose lease was taken over records nothing).

use sea_orm::{ConnectionTrait, DbErr, FromQueryResult, Statement, Value};

use super::is_postgres;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutboxStatus {
    Queued,
    Sending,
    Sent,
    Failed,
    Cancelled,
}

impl OutboxStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            OutboxStatus::Queued => "queued",
            OutboxStatus::Sending => "sending",
            OutboxStatus::Sent => "sent",
            OutboxStatus::Failed => "failed",
            OutboxStatus::Cancelled => "cancelled",
        }
    }
}

/// A message to queue. `dedupe_key`, when set, makes the enqueue idempotent: a second row with
/// the same key is silently not inserted (for example one policy notice per person and version).
#[derive(Debug, Clone)]
pub struct NewOutboxMessage {
    pub kind: &'static str,
    pub subscriber_id: Option<i64>,
    pub recipient: String,
    pub payload: serde_json::Value,
    pub dedupe_key: Option<String>,
}

/// Queues a message; returns false when its dedupe key was already used.
pub async fn enqueue(db: &impl ConnectionTrait, msg: NewOutboxMessage) -> Result<bool, DbErr> {
    let res = db
        .execute_raw(Statement::from_sql_and_values(
            db.get_database_backend(),
            "INSERT INTO outbox (kind, subscriber_id, recipient, payload, status, attempts, \
             next_attempt_at_ms, dedupe_key, created_at) \
             VALUES ($1, $2, $3, $4, 'queued', 0, $5, $6, $7) ON CONFLICT (dedupe_key) DO NOTHING",
            [
                msg.kind.into(),
                msg.subscriber_id.into(),
                msg.recipient.into(),
                msg.payload.to_string().into(),
                super::now_ms().into(),
                msg.dedupe_key.into(),
                super::now().into(),
            ],
        ))
        .await?;
    Ok(res.rows_affected() > 0)
}

#[derive(Debug, Clone, FromQueryResult)]
pub struct ClaimedMessage {
    pub id: i64,
    pub kind: String,
    pub subscriber_id: Option<i64>,
    pub recipient: String,
    pub payload: String,
    /// Including this one.
    pub attempts: i32,
}

/// Claims up to `limit` due rows for `owner` until `lease_until_ms`. Rows whose lease expired
/// (their worker died) are due again. On PostgreSQL, `FOR UPDATE SKIP LOCKED` lets several
/// instances claim at once without waiting on or taking each other's rows; SQLite serializes
/// writers, so the single UPDATE is atomic there.
pub async fn claim(
    db: &impl ConnectionTrait,
    owner: &str,
    now_ms: i64,
    lease_until_ms: i64,
    limit: u32,
) -> Result<Vec<ClaimedMessage>, DbErr> {
    let lock = if is_postgres(db) {
        "FOR UPDATE SKIP LOCKED"
    } else {
        ""
    };
    let sql = format!(
        "UPDATE outbox SET status = 'sending', lease_owner = $1, next_attempt_at_ms = $2, \
         attempts = attempts + 1 \
         WHERE id IN (SELECT id FROM outbox WHERE status IN ('queued', 'sending') \
         AND next_attempt_at_ms <= $3 ORDER BY next_attempt_at_ms, id LIMIT $4 {lock}) \
         RETURNING id, kind, subscriber_id, recipient, payload, attempts"
    );
    let rows = ClaimedMessage::find_by_statement(Statement::from_sql_and_values(
        db.get_database_backend(),
        sql,
        [
            owner.into(),
            lease_until_ms.into(),
            now_ms.into(),
            i64::from(limit).into(),
        ],
    ))
    .all(db)
    .await?;
    Ok(rows)
}

/// The outcome of one send, recorded only if `owner` still holds the lease.
#[derive(Debug, Clone)]
pub enum Outcome {
    Sent {
        message_id: String,
    },
    Retry {
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
}

pub async fn record(
    db: &impl ConnectionTrait,
    id: i64,
    owner: &str,
    outcome: Outcome,
) -> Result<bool, DbErr> {
    let (sql, values): (&str, Vec<Value>) = match outcome {
        Outcome::Sent { message_id } => (
            "UPDATE outbox SET status = 'sent', sent_at = $3, message_id = $4, lease_owner = NULL, \
             last_error = NULL WHERE id = $1 AND lease_owner = $2 AND status = 'sending'",
            vec![super::now().into(), message_id.into()],
        ),
        Outcome::Retry { at_ms, error } => (
            "UPDATE outbox SET status = 'queued', next_attempt_at_ms = $3, last_error = $4, \
             lease_owner = NULL WHERE id = $1 AND lease_owner = $2 AND status = 'sending'",
            vec![at_ms.into(), truncate(error).into()],
        ),
        Outcome::Failed { error } => (
            "UPDATE outbox SET status = 'failed', last_error = $3, lease_owner = NULL \
             WHERE id = $1 AND lease_owner = $2 AND status = 'sending'",
            vec![truncate(error).into()],
        ),
        Outcome::Skipped { reason } => (
            "UPDATE outbox SET status = 'cancelled', last_error = $3, lease_owner = NULL \
             WHERE id = $1 AND lease_owner = $2 AND status = 'sending'",
            vec![truncate(reason).into()],
        ),
    };
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

#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct StatusCounts {
    pub queued: i64,
    pub sending: i64,
    pub sent: i64,
    pub failed: i64,
    pub cancelled: i64,
}

#[derive(FromQueryResult)]
struct CountRow {
    status: String,
    n: i64,
}

pub async fn counts(db: &impl ConnectionTrait) -> Result<StatusCounts, DbErr> {
    let rows = CountRow::find_by_statement(Statement::from_string(
        db.get_database_backend(),
        "SELECT status, COUNT(*) AS n FROM outbox GROUP BY status",
    ))
    .all(db)
    .await?;
    let mut c = StatusCounts::default();
    for r in rows {
        match r.status.as_str() {
            "queued" => c.queued = r.n,
            "sending" => c.sending = r.n,
            "sent" => c.sent = r.n,
            "failed" => c.failed = r.n,
            "cancelled" => c.cancelled = r.n,
            _ => {}
        }
    }
    Ok(c)
}
