//! Claim indexes that keep a claim's cost independent of the queue's length.
//!
//! A claim takes the `LIMIT` oldest due rows of those `queued` or `sending`, ordered by
//! `(next_attempt_at_ms, id)`. The first indexes led with `status`, so for two statuses the
//! database read every claimable row and sorted them: a claim grew with the backlog (8.7 ms
//! per claim with 28k confirmations queued on PostgreSQL; a 1M-recipient campaign is worse).
//! A partial index over just the claimable rows, in claim order, lets it stop after `LIMIT`.
//! Sent rows leave the index, so it stays as small as the work still to do.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261125_000003_claim_indexes"
    }
}

/// (table, old index, new index)
const QUEUES: [(&str, &str, &str); 2] = [
    ("outbox", "outbox_due", "outbox_claimable"),
    (
        "campaign_recipients",
        "campaign_recipients_due",
        "campaign_recipients_claimable",
    ),
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for (table, old, new) in QUEUES {
            m.drop_index(Index::drop().name(old).table(table).to_owned())
                .await?;
            // The condition must read exactly as the claim's (store/queue.rs): SQLite uses
            // a partial index only when the query repeats its terms.
            m.create_index(
                Index::create()
                    .name(new)
                    .table(table)
                    .col("next_attempt_at_ms")
                    .col("id")
                    .and_where(Expr::col("status").is_in(["queued", "sending"]))
                    .to_owned(),
            )
            .await?;
        }
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for (table, old, new) in QUEUES {
            m.drop_index(Index::drop().name(new).table(table).to_owned())
                .await?;
            m.create_index(
                Index::create()
                    .name(old)
                    .table(table)
                    .col("status")
                    .col("next_attempt_at_ms")
                    .to_owned(),
            )
            .await?;
        }
        Ok(())
    }
}
