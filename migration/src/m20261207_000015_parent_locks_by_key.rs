//! On PostgreSQL, the statement that locks new rows' parents (migration 000013) finds them by
//! their keys, whatever the planner makes of the table.
//!
//! The lock reads up to 500 rows by primary key. Between a few thousand rows and about a
//! hundred thousand, the planner prices reading the whole of `subscribers` below that many
//! index lookups (it assumes a lookup may go to disk, where the table is in memory), and
//! PL/pgSQL may keep such a plan for the session while an import grows the table. With
//! 100,000 rows imported while signups arrived, locks took 15–57 ms each and the import took
//! 48.6 s instead of 5.2 (docs/benchmarks.md). Sequential scans are off inside the function
//! alone, so each lock is a lookup per key.

use sea_orm_migration::prelude::*;

use crate::on_postgres;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261207_000015_parent_locks_by_key"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    /// SQLite has no such function: it keeps its foreign keys.
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        on_postgres(
            m,
            "ALTER FUNCTION lock_new_rows_parents() SET enable_seqscan = off",
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        on_postgres(m, "ALTER FUNCTION lock_new_rows_parents() RESET enable_seqscan").await
    }
}
