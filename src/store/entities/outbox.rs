//! The `outbox` table.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "outbox")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub kind: String,
    pub subscriber_id: Option<i64>,
    pub recipient: String,
    pub payload: String,
    pub status: String,
    pub attempts: i32,
    pub next_attempt_at_ms: i64,
    pub lease_owner: Option<String>,
    pub last_error: Option<String>,
    pub message_id: Option<String>,
    pub dedupe_key: Option<String>,
    pub created_at: TimeDateTimeWithTimeZone,
    pub sent_at: Option<TimeDateTimeWithTimeZone>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
