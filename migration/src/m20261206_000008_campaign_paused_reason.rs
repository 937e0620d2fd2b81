//! Why a campaign is paused when delivery paused it, not the operator: the relay refused its
//! content. The operator reads it on the campaign, fixes what the relay objects to, and resumes.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261206_000008_campaign_paused_reason"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table("campaigns")
                .add_column(ColumnDef::new("paused_reason").text().null())
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table("campaigns")
                .drop_column("paused_reason")
                .to_owned(),
        )
        .await
    }
}
