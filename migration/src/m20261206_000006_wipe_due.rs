//! One row that says whether deleted personal data may still sit in the database's files: a
//! count of deleting transactions (erasures, address changes, retention batches) and the count
//! the last wipe covered. Kept in the database, not in a process, so that a crash between an
//! erasure and its wipe, or another instance, cannot lose it.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261206_000006_wipe_due"
    }
}

#[derive(DeriveIden)]
enum WipeDue {
    Table,
    Id,
    Deletions,
    Wiped,
    CompactedAtMs,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(WipeDue::Table)
                .col(ColumnDef::new(WipeDue::Id).integer().not_null().primary_key())
                .col(
                    ColumnDef::new(WipeDue::Deletions)
                        .big_integer()
                        .not_null()
                        .default(0),
                )
                .col(ColumnDef::new(WipeDue::Wiped).big_integer().not_null().default(0))
                .col(ColumnDef::new(WipeDue::CompactedAtMs).big_integer().null())
                .to_owned(),
        )
        .await?;
        m.exec_stmt(
            Query::insert()
                .into_table(WipeDue::Table)
                .columns([WipeDue::Id])
                .values_panic([1.into()])
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(WipeDue::Table).to_owned()).await
    }
}
