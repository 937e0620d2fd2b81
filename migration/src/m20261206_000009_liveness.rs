//! One row that `/healthz` writes: the health check proves the database takes writes, not only
//! that it answers a read (a full disk or a read-only file answers reads and refuses writes).

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261206_000009_liveness"
    }
}

#[derive(DeriveIden)]
enum Liveness {
    Table,
    Id,
    CheckedAtMs,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(Liveness::Table)
                .col(ColumnDef::new(Liveness::Id).integer().not_null().primary_key())
                .col(
                    ColumnDef::new(Liveness::CheckedAtMs)
                        .big_integer()
                        .not_null()
                        .default(0),
                )
                .to_owned(),
        )
        .await?;
        m.exec_stmt(
            Query::insert()
                .into_table(Liveness::Table)
                .columns([Liveness::Id])
                .values_panic([1.into()])
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(Liveness::Table).to_owned())
            .await
    }
}
