//! Per-day counters for what the database keeps no row of: delivery outcomes that leave none
//! behind (a deferral puts its row back in the queue; a failure has no time of its own) and what
//! retention deleted. Aggregate counts only: a row names a day and a counter, never a person.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261206_000007_daily_counts"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table("daily_counts")
                // The UTC day, `YYYY-MM-DD`.
                .col(string_len("day", 10))
                // sent | retried | deferred | failed | retention_* (see store::daily_counts)
                .col(string_len("counter", 32))
                .col(big_integer("n").default(0))
                // When the counter last moved.
                .col(timestamp_with_time_zone("last_at"))
                .primary_key(Index::create().col("day").col("counter"))
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table("daily_counts").to_owned()).await
    }
}
