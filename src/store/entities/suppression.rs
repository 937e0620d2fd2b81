//! The `suppressions` table.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "suppressions")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub address_hmac: String,
    pub reason: SuppressionReason,
    pub created_at: TimeDateTimeWithTimeZone,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

/// Why an address must not be mailed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, serde::Serialize)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(32))")]
#[serde(rename_all = "snake_case")]
pub enum SuppressionReason {
    #[sea_orm(string_value = "hard_bounce")]
    HardBounce,
    #[sea_orm(string_value = "complaint")]
    Complaint,
    #[sea_orm(string_value = "erased")]
    Erased,
    /// Left every list: remembered beyond retention so no import brings the address back.
    #[sea_orm(string_value = "unsubscribed")]
    Unsubscribed,
    #[sea_orm(string_value = "manual")]
    Manual,
}

impl SuppressionReason {
    pub const fn as_str(self) -> &'static str {
        match self {
            SuppressionReason::HardBounce => "hard_bounce",
            SuppressionReason::Complaint => "complaint",
            SuppressionReason::Erased => "erased",
            SuppressionReason::Unsubscribed => "unsubscribed",
            SuppressionReason::Manual => "manual",
        }
    }
}

super::stored_string!(SuppressionReason);
