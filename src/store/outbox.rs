//! The outbox: every email is a row, written in the transaction of the change that causes it.
//! Workers claim due rows with a lease, let go of the database, send, then record the outcome
//! fenced by their lease (a worker whose lease was taken over records nothing).

use sea_orm::{ConnectionTrait, DbErr, FromQueryResult, Statement};

use super::entities::outbox::{OutboxKind, OutboxStatus};
use super::queue::OUTBOX;
pub use super::queue::Outcome;

/// A message to queue. `dedupe_key`, when set, makes the enqueue idempotent: a second row with
/// the same key is silently not inserted (for example one policy notice per person and version).
#[derive(Debug, Clone)]
pub struct NewOutboxMessage {
    pub kind: OutboxKind,
    pub subscriber_id: Option<i64>,
    pub recipient: String,
    pub payload: serde_json::Value,
    pub dedupe_key: Option<String>,
}

/// Queues a message; returns false when its dedupe key was already used.
pub async fn enqueue(db: &impl ConnectionTrait, msg: NewOutboxMessage) -> Result<bool, DbErr> {
    Ok(enqueue_many(db, vec![msg]).await? > 0)
}

/// Queues many messages in one statement per chunk; returns how many were inserted (rows whose
/// dedupe key was already used are left out).
pub async fn enqueue_many(db: &impl ConnectionTrait, msgs: Vec<NewOutboxMessage>) -> Result<u64, DbErr> {
    const COLS: usize = 9;
    let (now, now_ms) = super::now_and_ms();
    let mut inserted = 0;
    let mut msgs = msgs.into_iter().peekable();
    while msgs.peek().is_some() {
        let chunk: Vec<_> = msgs.by_ref().take(super::ROWS_PER_STATEMENT).collect();
        let sql = format!(
            "INSERT INTO outbox (kind, subscriber_id, recipient, payload, next_attempt_at_ms, dedupe_key, \
             created_at, status, attempts) VALUES {} ON CONFLICT (dedupe_key) DO NOTHING",
            super::values_list(db.get_database_backend(), chunk.len(), COLS)
        );
        let mut values = Vec::with_capacity(chunk.len() * COLS);
        for m in chunk {
            values.extend([
                m.kind.into(),
                m.subscriber_id.into(),
                m.recipient.into(),
                m.payload.to_string().into(),
                now_ms.into(),
                m.dedupe_key.into(),
                now.into(),
                OutboxStatus::Queued.into(),
                0i32.into(),
            ]);
        }
        inserted += db
            .execute_raw(Statement::from_sql_and_values(
                db.get_database_backend(),
                sql,
                values,
            ))
            .await?
            .rows_affected();
    }
    Ok(inserted)
}

#[derive(Debug, Clone, FromQueryResult)]
pub struct ClaimedMessage {
    pub id: i64,
    /// As stored, for the logs: a row of a kind this version does not know (written by a
    /// newer one) then fails alone, when its payload is read, instead of failing the claim of
    /// every row beside it.
    pub kind: String,
    pub subscriber_id: Option<i64>,
    pub recipient: String,
    pub payload: String,
    /// Including this one.
    pub attempts: i32,
}

/// Claims up to `limit` due rows for `owner` until `lease_until_ms` (see [`super::queue`]).
pub async fn claim(
    db: &impl ConnectionTrait,
    owner: &str,
    now_ms: i64,
    lease_until_ms: i64,
    limit: u32,
) -> Result<Vec<ClaimedMessage>, DbErr> {
    OUTBOX
        .claim(
            db,
            owner,
            now_ms,
            lease_until_ms,
            limit,
            "id, kind, subscriber_id, recipient, payload, attempts",
        )
        .await
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
    status: OutboxStatus,
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
        match r.status {
            OutboxStatus::Queued => c.queued = r.n,
            OutboxStatus::Sending => c.sending = r.n,
            OutboxStatus::Sent => c.sent = r.n,
            OutboxStatus::Failed => c.failed = r.n,
            OutboxStatus::Cancelled => c.cancelled = r.n,
        }
    }
    Ok(c)
}
