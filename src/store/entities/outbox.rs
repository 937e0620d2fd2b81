//! The `outbox` table.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "outbox")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub kind: OutboxKind,
    pub subscriber_id: Option<i64>,
    pub recipient: String,
    pub payload: String,
    pub status: OutboxStatus,
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

/// What an outbox row sends: the type name of its payload (`delivery::Payload`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, serde::Serialize)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(32))")]
#[serde(rename_all = "snake_case")]
pub enum OutboxKind {
    #[sea_orm(string_value = "test_message")]
    TestMessage,
    #[sea_orm(string_value = "confirmation")]
    Confirmation,
    #[sea_orm(string_value = "export_link")]
    ExportLink,
    #[sea_orm(string_value = "address_change")]
    AddressChange,
    #[sea_orm(string_value = "policy_notice")]
    PolicyNotice,
    #[sea_orm(string_value = "breach_notice")]
    BreachNotice,
    #[sea_orm(string_value = "campaign_test")]
    CampaignTest,
}

impl OutboxKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            OutboxKind::TestMessage => "test_message",
            OutboxKind::Confirmation => "confirmation",
            OutboxKind::ExportLink => "export_link",
            OutboxKind::AddressChange => "address_change",
            OutboxKind::PolicyNotice => "policy_notice",
            OutboxKind::BreachNotice => "breach_notice",
            OutboxKind::CampaignTest => "campaign_test",
        }
    }
}

super::stored_string!(OutboxKind);

/// Where an outbox row is in the claim-and-record protocol (`store::queue`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, serde::Serialize)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(16))")]
#[serde(rename_all = "snake_case")]
pub enum OutboxStatus {
    /// Due at `next_attempt_at_ms`.
    #[sea_orm(string_value = "queued")]
    Queued,
    /// Claimed by a worker, whose lease ends at `next_attempt_at_ms`.
    #[sea_orm(string_value = "sending")]
    Sending,
    #[sea_orm(string_value = "sent")]
    Sent,
    #[sea_orm(string_value = "failed")]
    Failed,
    /// Not sent on purpose (suppressed, no longer wanted).
    #[sea_orm(string_value = "cancelled")]
    Cancelled,
}

impl OutboxStatus {
    pub const fn as_str(self) -> &'static str {
        match self {
            OutboxStatus::Queued => "queued",
            OutboxStatus::Sending => "sending",
            OutboxStatus::Sent => "sent",
            OutboxStatus::Failed => "failed",
            OutboxStatus::Cancelled => "cancelled",
        }
    }
}

super::stored_string!(OutboxStatus);
