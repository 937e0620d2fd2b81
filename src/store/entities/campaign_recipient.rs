//! The `campaign_recipients` table: a campaign's audience, one row per person, leased by the
//! delivery workers in blocks (`campaign_blocks`, `store::queue`).

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "campaign_recipients")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub campaign_id: i64,
    /// None once the person is erased or deleted by retention: the row then only counts.
    pub subscriber_id: Option<i64>,
    pub list_id: i64,
    pub status: RecipientStatus,
    pub attempts: i32,
    pub next_attempt_at_ms: i64,
    pub last_error: Option<String>,
    pub message_id: Option<String>,
    pub sent_at: Option<TimeDateTimeWithTimeZone>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

/// Where one recipient of a campaign is in the claim-and-record protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, serde::Serialize)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(16))")]
#[serde(rename_all = "snake_case")]
pub enum RecipientStatus {
    #[sea_orm(string_value = "queued")]
    Queued,
    #[sea_orm(string_value = "sent")]
    Sent,
    #[sea_orm(string_value = "failed")]
    Failed,
    /// Not sent on purpose (unsubscribed, suppressed, held); `last_error` says why.
    #[sea_orm(string_value = "skipped")]
    Skipped,
    /// Not sent because the campaign was cancelled.
    #[sea_orm(string_value = "cancelled")]
    Cancelled,
}

impl RecipientStatus {
    pub const fn as_str(self) -> &'static str {
        match self {
            RecipientStatus::Queued => "queued",
            RecipientStatus::Sent => "sent",
            RecipientStatus::Failed => "failed",
            RecipientStatus::Skipped => "skipped",
            RecipientStatus::Cancelled => "cancelled",
        }
    }
}

super::stored_string!(RecipientStatus);
