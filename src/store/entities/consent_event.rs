//! The `consent_events` table.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "consent_events")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub subscriber_id: i64,
    pub list_id: Option<i64>,
    pub kind: ConsentKind,
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

/// What a row of consent evidence records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, serde::Serialize)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(32))")]
#[serde(rename_all = "snake_case")]
pub enum ConsentKind {
    /// A signup through the form or its JSON twin (consent given, not yet confirmed).
    #[sea_orm(string_value = "signup")]
    Signup,
    /// The confirmation link was used.
    #[sea_orm(string_value = "confirm")]
    Confirm,
    #[sea_orm(string_value = "unsubscribe")]
    Unsubscribe,
    /// A list (re)joined on the preference page.
    #[sea_orm(string_value = "resubscribe")]
    Resubscribe,
    /// Added by a CSV import.
    #[sea_orm(string_value = "import")]
    Import,
    /// Added through the API.
    #[sea_orm(string_value = "api_add")]
    ApiAdd,
    /// Agreement to a material policy version.
    #[sea_orm(string_value = "agree")]
    Agree,
    /// A change of address, confirmed by the new address.
    #[sea_orm(string_value = "address_change")]
    AddressChange,
}

impl ConsentKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            ConsentKind::Signup => "signup",
            ConsentKind::Confirm => "confirm",
            ConsentKind::Unsubscribe => "unsubscribe",
            ConsentKind::Resubscribe => "resubscribe",
            ConsentKind::Import => "import",
            ConsentKind::ApiAdd => "api_add",
            ConsentKind::Agree => "agree",
            ConsentKind::AddressChange => "address_change",
        }
    }
}

super::stored_string!(ConsentKind);
