//! API keys for `/api/v1`: 256 random bits shown once, stored only as a SHA-256 hash.

use base64::Engine;
use rand::RngCore;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, EntityTrait, FromQueryResult, QueryFilter, QueryOrder, Set, Statement,
};
use sha2::{Digest, Sha256};

use super::entities::api_key;
use super::{Db, now};
use sea_orm::DbErr;

const KEY_PREFIX: &str = "lh_";

fn hash(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

pub struct CreatedKey {
    pub id: i64,
    /// The only time the plain key exists outside the caller's hands.
    pub key: String,
}

pub async fn create(db: &Db, name: &str) -> Result<CreatedKey, DbErr> {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let key = format!(
        "{KEY_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    );
    let model = api_key::ActiveModel {
        name: Set(name.to_owned()),
        prefix: Set(key[..KEY_PREFIX.len() + 6].to_owned()),
        key_hash: Set(hash(&key)),
        created_at: Set(now()),
        ..Default::default()
    }
    .insert(db)
    .await?;
    Ok(CreatedKey { id: model.id, key })
}

pub async fn list(db: &Db) -> Result<Vec<api_key::Model>, DbErr> {
    api_key::Entity::find()
        .order_by_asc(api_key::Column::Id)
        .all(db)
        .await
}

/// Revokes by id; returns false when there was no such active key.
pub async fn revoke(db: &Db, id: i64) -> Result<bool, DbErr> {
    let res = api_key::Entity::update_many()
        .col_expr(api_key::Column::RevokedAt, now().into())
        .filter(api_key::Column::Id.eq(id))
        .filter(api_key::Column::RevokedAt.is_null())
        .exec(db)
        .await?;
    Ok(res.rows_affected > 0)
}

/// The active key this bearer token names, if any.
pub async fn authenticate(db: &Db, presented: &str) -> Result<Option<api_key::Model>, DbErr> {
    if !presented.starts_with(KEY_PREFIX) || presented.len() > 128 {
        return Ok(None);
    }
    let found = api_key::Entity::find()
        .filter(api_key::Column::KeyHash.eq(hash(presented)))
        .filter(api_key::Column::RevokedAt.is_null())
        .one(db)
        .await?;
    if let Some(key) = &found {
        // Record use at most once a minute: a write per request would be waste.
        let stale = key
            .last_used_at
            .is_none_or(|t| now() - t > time::Duration::minutes(1));
        if stale {
            api_key::Entity::update_many()
                .col_expr(api_key::Column::LastUsedAt, now().into())
                .filter(api_key::Column::Id.eq(key.id))
                .exec(db)
                .await?;
        }
    }
    Ok(found)
}

/// The name of the key a dashboard session was opened with, while the session holds: the key
/// is not revoked and the session (its token id) was not signed out. Checked on every request,
/// so revoking a key ends its sessions at once.
pub async fn session_key_name(db: &Db, key_id: i64, session: &str) -> Result<Option<String>, DbErr> {
    #[derive(FromQueryResult)]
    struct Row {
        name: String,
    }
    Ok(Row::find_by_statement(Statement::from_sql_and_values(
        db.get_database_backend(),
        "SELECT name FROM api_keys WHERE id = $1 AND revoked_at IS NULL \
         AND NOT EXISTS (SELECT 1 FROM spent_tokens WHERE jti = $2)",
        [key_id.into(), session.into()],
    ))
    .one(db)
    .await?
    .map(|r| r.name))
}
