//! A name given at a re-signup waits for the person's confirmation before it replaces the one
//! on file: anyone can type an address into the form, only its owner can confirm.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261206_000004_pending_name"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite alters one thing at a time.
        m.alter_table(
            Table::alter()
                .table("subscribers")
                .add_column(ColumnDef::new("pending_name").text().null())
                .to_owned(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table("subscribers")
                .add_column(ColumnDef::new("pending_name_since_ms").big_integer().null())
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for column in ["pending_name_since_ms", "pending_name"] {
            m.alter_table(Table::alter().table("subscribers").drop_column(column).to_owned())
                .await?;
        }
        Ok(())
    }
}
