//! Schema migrations for letterhead: one module per schema change, never edited once released.
//! The same migrations run on SQLite and PostgreSQL (sea-query writes each dialect).

pub use sea_orm_migration::prelude::*;

mod m20261125_000001_core;
mod m20261125_000002_campaigns;
mod m20261125_000003_claim_indexes;
mod m20261206_000004_pending_name;
mod m20261206_000005_no_personal_statistics;
mod m20261206_000006_wipe_due;
mod m20261206_000007_daily_counts;
mod m20261206_000008_campaign_paused_reason;
mod m20261206_000009_liveness;
mod m20261207_000010_recipients_without_foreign_keys;
mod m20261207_000011_campaign_blocks;
mod m20261207_000012_no_subscriber_hmac_index;
mod m20261207_000013_parents_checked_per_statement;
mod m20261207_000014_recipients_room_for_every_record;
mod m20261207_000015_parent_locks_by_key;

pub struct Migrator;

/// Runs `sql` on PostgreSQL only, for a change SQLite has no counterpart of (a fill factor, a
/// function's setting).
async fn on_postgres(m: &SchemaManager<'_>, sql: &str) -> Result<(), DbErr> {
    let db = m.get_connection();
    if db.get_database_backend() == sea_orm_migration::sea_orm::DbBackend::Postgres {
        db.execute_unprepared(sql).await?;
    }
    Ok(())
}

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261125_000001_core::Migration),
            Box::new(m20261125_000002_campaigns::Migration),
            Box::new(m20261125_000003_claim_indexes::Migration),
            Box::new(m20261206_000004_pending_name::Migration),
            Box::new(m20261206_000005_no_personal_statistics::Migration),
            Box::new(m20261206_000006_wipe_due::Migration),
            Box::new(m20261206_000007_daily_counts::Migration),
            Box::new(m20261206_000008_campaign_paused_reason::Migration),
            Box::new(m20261206_000009_liveness::Migration),
            Box::new(m20261207_000010_recipients_without_foreign_keys::Migration),
            Box::new(m20261207_000011_campaign_blocks::Migration),
            Box::new(m20261207_000012_no_subscriber_hmac_index::Migration),
            Box::new(m20261207_000013_parents_checked_per_statement::Migration),
            Box::new(m20261207_000014_recipients_room_for_every_record::Migration),
            Box::new(m20261207_000015_parent_locks_by_key::Migration),
        ]
    }
}
