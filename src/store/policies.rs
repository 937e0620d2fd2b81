//! Policy versions (published by the policy capability; read here for consent evidence).

use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder};

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
