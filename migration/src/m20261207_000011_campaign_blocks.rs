//! Campaign audiences leased in blocks instead of row by row.
//!
//! A worker used to claim each recipient row: it locked the row and wrote a new version of it
//! (`sending`, its lease) with an entry in every index, and recording the outcome wrote another
//! version with entries in every index again, since `status` decided membership of the claim
//! index. Now a worker leases a block: a range of one campaign's recipient ids, in a table of
//! its own, one row per few hundred recipients. Recipient rows stay `queued` until their
//! outcome is recorded, no index covers `status`, so on PostgreSQL that one write per recipient
//! can be a heap-only (HOT) update, for which the table leaves room on each page.
//!
//! Rows a worker of the earlier version held (`sending`) are queued again, due when their
//! lease lapses: those workers must be gone (the earlier version cannot read this schema).

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;
use sea_orm_migration::sea_orm::DbBackend;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261207_000011_campaign_blocks"
    }
}

/// Recipient ids per block when the migration covers rows already queued (the snapshot's own
/// size is `store::campaigns::BLOCK_ROWS`).
const BLOCK_ROWS: i64 = 256;

/// Room left on each page of `campaign_recipients` for the new version of a row recording its
/// outcome, so that the update stays on the page (HOT) and touches no index.
const FILLFACTOR: u32 = 60;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table("campaign_blocks")
                .col(big_pk_auto("id"))
                .col(big_integer("campaign_id"))
                // The block: the campaign's recipient rows with ids in first_id..=last_id.
                .col(big_integer("first_id"))
                .col(big_integer("last_id"))
                // When due; for a leased block, when the lease expires (as in the outbox).
                .col(big_integer("next_attempt_at_ms"))
                .col(string_len_null("lease_owner", 64))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("campaign_blocks_claimable")
                .table("campaign_blocks")
                .col("next_attempt_at_ms")
                .col("id")
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("campaign_blocks_campaign")
                .table("campaign_blocks")
                .col("campaign_id")
                .to_owned(),
        )
        .await?;
        let db = m.get_connection();
        // Due when their lease lapses, as before; the attempt their claim counted is taken
        // back, as a hand-back does, since the record now counts it.
        db.execute_unprepared(
            "UPDATE campaign_recipients SET status = 'queued', attempts = attempts - 1 WHERE status = 'sending'",
        )
        .await?;
        db.execute_unprepared(&format!(
            "INSERT INTO campaign_blocks (campaign_id, first_id, last_id, next_attempt_at_ms) \
             SELECT campaign_id, MIN(id), MAX(id), MIN(next_attempt_at_ms) FROM campaign_recipients \
             WHERE status = 'queued' GROUP BY campaign_id, id / {BLOCK_ROWS}"
        ))
        .await?;
        m.drop_index(
            Index::drop()
                .name("campaign_recipients_claimable")
                .table("campaign_recipients")
                .to_owned(),
        )
        .await?;
        db.execute_unprepared("ALTER TABLE campaign_recipients DROP COLUMN lease_owner")
            .await?;
        if db.get_database_backend() == DbBackend::Postgres {
            db.execute_unprepared(&format!(
                "ALTER TABLE campaign_recipients SET (fillfactor = {FILLFACTOR})"
            ))
            .await?;
        }
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let db = m.get_connection();
        if db.get_database_backend() == DbBackend::Postgres {
            db.execute_unprepared("ALTER TABLE campaign_recipients RESET (fillfactor)")
                .await?;
        }
        db.execute_unprepared("ALTER TABLE campaign_recipients ADD COLUMN lease_owner varchar(64) NULL")
            .await?;
        // As migration 000003 made it (its condition as the earlier claim reads it).
        m.create_index(
            Index::create()
                .name("campaign_recipients_claimable")
                .table("campaign_recipients")
                .col("next_attempt_at_ms")
                .col("id")
                .and_where(Expr::col("status").is_in(["queued", "sending"]))
                .to_owned(),
        )
        .await?;
        m.drop_table(Table::drop().table("campaign_blocks").to_owned())
            .await?;
        Ok(())
    }
}
