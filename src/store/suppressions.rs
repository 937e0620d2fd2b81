//! The suppression store: keyed hashes of addresses that must not be mailed (hard bounces,
//! complaints, erasures). Never the address itself (GD-4).

use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, FromQueryResult, QueryFilter, Statement};

use super::entities::suppression;
pub use super::entities::suppression::SuppressionReason;
use crate::domain::AddressHash;

/// Records a suppression; a repeat is a no-op.
pub async fn add(
    db: &impl ConnectionTrait,
    hash: &AddressHash,
    reason: SuppressionReason,
) -> Result<(), DbErr> {
    db.execute_raw(Statement::from_sql_and_values(
        db.get_database_backend(),
        "INSERT INTO suppressions (address_hmac, reason, created_at) VALUES ($1, $2, $3) \
         ON CONFLICT (address_hmac) DO NOTHING",
        [hash.as_str().into(), reason.into(), super::now().into()],
    ))
    .await
    .map(|_| ())
}

/// Why the address is suppressed, if it is.
pub async fn reason(
    db: &impl ConnectionTrait,
    hash: &AddressHash,
) -> Result<Option<SuppressionReason>, DbErr> {
    Ok(suppression::Entity::find()
        .filter(suppression::Column::AddressHmac.eq(hash.as_str()))
        .one(db)
        .await?
        .map(|s| s.reason))
}

/// Why each of these addresses is suppressed, for those that are (keyed by hash).
pub async fn reasons(
    db: &impl ConnectionTrait,
    hashes: &[AddressHash],
) -> Result<std::collections::HashMap<String, SuppressionReason>, DbErr> {
    #[derive(FromQueryResult)]
    struct Found {
        address_hmac: String,
        reason: SuppressionReason,
    }
    let backend = db.get_database_backend();
    // An address asked twice is found once.
    let sql = format!(
        "SELECT address_hmac, reason FROM suppressions WHERE address_hmac IN (SELECT column1 FROM {})",
        super::json_rows(backend, 1, &["text"])
    );
    let rows: Vec<[&str; 1]> = hashes.iter().map(|h| [h.as_str()]).collect();
    let stmt = Statement::from_sql_and_values(backend, sql, [super::json_rows_value(&rows)]);
    Ok(Found::find_by_statement(stmt)
        .all(db)
        .await?
        .into_iter()
        .map(|s| (s.address_hmac, s.reason))
        .collect())
}

/// Lifts a suppression of one of these reasons (a fresh, confirmed opt-in lifts an erasure).
pub async fn lift(
    db: &impl ConnectionTrait,
    hash: &AddressHash,
    reasons: &[SuppressionReason],
) -> Result<(), DbErr> {
    suppression::Entity::delete_many()
        .filter(suppression::Column::AddressHmac.eq(hash.as_str()))
        .filter(suppression::Column::Reason.is_in(reasons.iter().copied()))
        .exec(db)
        .await
        .map(|_| ())
}
