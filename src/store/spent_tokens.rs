//! Single-use tokens: a token is spent by recording its id; a second spend finds it there.

use sea_orm::{ConnectionTrait, DbErr, Statement};

/// Spends `jti`; false when it was spent before.
pub async fn spend(db: &impl ConnectionTrait, jti: &str) -> Result<bool, DbErr> {
    let res = db
        .execute_raw(Statement::from_sql_and_values(
            db.get_database_backend(),
            "INSERT INTO spent_tokens (jti, spent_at) VALUES ($1, $2) ON CONFLICT (jti) DO NOTHING",
            [jti.into(), super::now().into()],
        ))
        .await?;
    Ok(res.rows_affected() > 0)
}

/// Was `jti` spent? For pages that show a link's state before anyone presses its button.
pub async fn is_spent(db: &impl ConnectionTrait, jti: &str) -> Result<bool, DbErr> {
    let row = db
        .query_one_raw(Statement::from_sql_and_values(
            db.get_database_backend(),
            "SELECT 1 FROM spent_tokens WHERE jti = $1",
            [jti.into()],
        ))
        .await?;
    Ok(row.is_some())
}
