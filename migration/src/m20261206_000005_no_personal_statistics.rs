//! PostgreSQL's planner statistics keep sample values of each column (most common values,
//! histogram bounds) in `pg_statistic`, a copy of addresses and names that erasure cannot reach.
//! The columns that hold them get no statistics: lookups go through unique keys and indexes,
//! which the planner estimates without samples. SQLite keeps no samples unless built with STAT4.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261206_000005_no_personal_statistics"
    }
}

/// (table, column) for every column that can hold an address or a name.
const PERSONAL_COLUMNS: [(&str, &str); 7] = [
    ("subscribers", "email"),
    ("subscribers", "email_key"),
    ("subscribers", "name"),
    ("subscribers", "pending_name"),
    ("outbox", "recipient"),
    ("address_changes", "new_email"),
    ("test_recipients", "email"),
];

async fn set_statistics(m: &SchemaManager<'_>, target: i32) -> Result<(), DbErr> {
    if m.get_database_backend() != sea_orm_migration::sea_orm::DbBackend::Postgres {
        return Ok(());
    }
    for (table, column) in PERSONAL_COLUMNS {
        m.get_connection()
            .execute_unprepared(&format!(
                "ALTER TABLE {table} ALTER COLUMN {column} SET STATISTICS {target}"
            ))
            .await?;
    }
    Ok(())
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        set_statistics(m, 0).await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // -1: back to the server's default_statistics_target.
        set_statistics(m, -1).await
    }
}
