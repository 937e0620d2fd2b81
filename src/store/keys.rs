//! Server secrets kept in the database when they are not configured: token signing keys and
//! the key of the address HMAC. Generated on first start; several instances starting at once
//! agree on one key because the first key's id is fixed and `(purpose, kid)` is unique.

use base64::Engine;
use rand::RngCore;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, Statement};

use super::entities::signing_key;
use super::{Db, begin_write};
use sea_orm::{ConnectionTrait, DbErr};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyPurpose {
    Token,
    AddressHmac,
}

impl KeyPurpose {
    fn as_str(self) -> &'static str {
        match self {
            KeyPurpose::Token => "token",
            KeyPurpose::AddressHmac => "address_hmac",
        }
    }
}

pub fn random_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

async fn insert(db: &Db, purpose: KeyPurpose, kid: &str) -> Result<(), DbErr> {
    let tx = begin_write(db).await?;
    tx.execute_raw(Statement::from_sql_and_values(
        tx.get_database_backend(),
        "INSERT INTO signing_keys (purpose, kid, secret, created_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (purpose, kid) DO NOTHING",
        [
            purpose.as_str().into(),
            kid.into(),
            random_secret().into(),
            super::now().into(),
        ],
    ))
    .await?;
    tx.commit().await
}

/// The keys of one purpose, newest first (the first one signs). Creates the first key if
/// there is none.
pub async fn load_or_create(db: &Db, purpose: KeyPurpose) -> Result<Vec<(String, String)>, DbErr> {
    let mut keys = load(db, purpose).await?;
    if keys.is_empty() {
        insert(db, purpose, "k1").await?;
        keys = load(db, purpose).await?;
    }
    Ok(keys)
}

pub async fn load(db: &Db, purpose: KeyPurpose) -> Result<Vec<(String, String)>, DbErr> {
    Ok(signing_key::Entity::find()
        .filter(signing_key::Column::Purpose.eq(purpose.as_str()))
        .filter(signing_key::Column::RetiredAt.is_null())
        .order_by_desc(signing_key::Column::Id)
        .all(db)
        .await?
        .into_iter()
        .map(|k| (k.kid, k.secret))
        .collect())
}

/// The ids of keys of one purpose that were retired: links signed with them are refused with a
/// page of their own, not as forgeries.
pub async fn retired(db: &Db, purpose: KeyPurpose) -> Result<Vec<String>, DbErr> {
    Ok(signing_key::Entity::find()
        .filter(signing_key::Column::Purpose.eq(purpose.as_str()))
        .filter(signing_key::Column::RetiredAt.is_not_null())
        .all(db)
        .await?
        .into_iter()
        .map(|k| k.kid)
        .collect())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetireOutcome {
    Retired,
    Unknown,
    AlreadyRetired,
    /// The only key left: something must sign new links.
    OnlyKey,
}

/// Retires a key (say, one that leaked): its secret is deleted, so nothing signed with it
/// verifies again, and the newest other key signs from now on.
pub async fn retire(db: &Db, purpose: KeyPurpose, kid: &str) -> Result<RetireOutcome, DbErr> {
    let tx = begin_write(db).await?;
    let keys = signing_key::Entity::find()
        .filter(signing_key::Column::Purpose.eq(purpose.as_str()))
        .all(&tx)
        .await?;
    let Some(key) = keys.iter().find(|k| k.kid == kid) else {
        return Ok(RetireOutcome::Unknown);
    };
    if key.retired_at.is_some() {
        return Ok(RetireOutcome::AlreadyRetired);
    }
    if keys.iter().filter(|k| k.retired_at.is_none()).count() < 2 {
        return Ok(RetireOutcome::OnlyKey);
    }
    tx.execute_raw(Statement::from_sql_and_values(
        tx.get_database_backend(),
        "UPDATE signing_keys SET retired_at = $1, secret = '' WHERE id = $2",
        [super::now().into(), key.id.into()],
    ))
    .await?;
    tx.commit().await?;
    Ok(RetireOutcome::Retired)
}

/// Adds a new signing key that becomes the signer; older keys keep verifying.
pub async fn rotate(db: &Db, purpose: KeyPurpose) -> Result<String, DbErr> {
    load_or_create(db, purpose).await?;
    let kid = format!("k{}", time::OffsetDateTime::now_utc().unix_timestamp());
    insert(db, purpose, &kid).await?;
    Ok(kid)
}
