//! Policy versions (published by the policy capability; read here for consent evidence).

use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder};

use super::entities::policy_version;

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
