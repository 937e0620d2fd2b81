//! The `consent_events` table.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "consent_events")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub subscriber_id: i64,
    pub list_id: Option<i64>,
    pub kind: String,
    pub occurred_at: TimeDateTimeWithTimeZone,
    pub source: String,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub policy_version: Option<String>,
    pub consent_text: Option<String>,
    pub detail: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
