//! The `subscribers` table.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "subscribers")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub uuid: Uuid,
    pub email: String,
    pub email_key: String,
    pub address_hmac: String,
    pub name: Option<String>,
    /// A different name given at a later signup, applied when the person confirms it.
    pub pending_name: Option<String>,
    /// When `pending_name` was given (epoch ms): a confirmation issued before does not cover it.
    pub pending_name_since_ms: Option<i64>,
    pub created_at: TimeDateTimeWithTimeZone,
    pub updated_at: TimeDateTimeWithTimeZone,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
