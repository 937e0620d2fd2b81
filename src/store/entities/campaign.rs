//! The `campaigns` table.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "campaigns")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub subject: String,
    pub from_address: Option<String>,
    pub markdown: Option<String>,
    pub html: Option<String>,
    pub text: Option<String>,
    pub status: CampaignStatus,
    pub send_at: Option<TimeDateTimeWithTimeZone>,
    pub recipients: i64,
    pub created_at: TimeDateTimeWithTimeZone,
    pub updated_at: TimeDateTimeWithTimeZone,
    pub started_at: Option<TimeDateTimeWithTimeZone>,
    pub finished_at: Option<TimeDateTimeWithTimeZone>,
    /// Why delivery paused it (the relay refused its content); none when the operator did, or
    /// when it is not paused.
    pub paused_reason: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

/// Where a campaign is: a draft, waiting for its time, going out, held, or done.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, serde::Serialize)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(16))")]
#[serde(rename_all = "snake_case")]
pub enum CampaignStatus {
    #[sea_orm(string_value = "draft")]
    Draft,
    #[sea_orm(string_value = "scheduled")]
    Scheduled,
    #[sea_orm(string_value = "sending")]
    Sending,
    #[sea_orm(string_value = "paused")]
    Paused,
    #[sea_orm(string_value = "sent")]
    Sent,
    #[sea_orm(string_value = "cancelled")]
    Cancelled,
}

impl CampaignStatus {
    pub const fn as_str(self) -> &'static str {
        match self {
            CampaignStatus::Draft => "draft",
            CampaignStatus::Scheduled => "scheduled",
            CampaignStatus::Sending => "sending",
            CampaignStatus::Paused => "paused",
            CampaignStatus::Sent => "sent",
            CampaignStatus::Cancelled => "cancelled",
        }
    }
}

super::stored_string!(CampaignStatus);
