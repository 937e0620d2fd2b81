//! Campaigns: drafts, the lists they go to, the audience snapshot (one row per recipient,
//! claimed by delivery workers with leases), and the team's test recipients.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261125_000002_campaigns"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table("campaigns")
                .col(big_pk_auto("id"))
                .col(string_len("subject", 500))
                .col(string_len_null("from_address", 320))
                .col(text_null("markdown"))
                .col(text_null("html"))
                .col(text_null("text"))
                // draft | scheduled | sending | paused | sent | cancelled
                .col(string_len("status", 16))
                .col(timestamp_with_time_zone_null("send_at"))
                .col(big_integer("recipients").default(0))
                .col(timestamp_with_time_zone("created_at"))
                .col(timestamp_with_time_zone("updated_at"))
                .col(timestamp_with_time_zone_null("started_at"))
                .col(timestamp_with_time_zone_null("finished_at"))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table("campaign_lists")
                .col(big_integer("campaign_id"))
                .col(big_integer("list_id"))
                .primary_key(Index::create().col("campaign_id").col("list_id"))
                .foreign_key(
                    ForeignKey::create()
                        .from("campaign_lists", "campaign_id")
                        .to("campaigns", "id")
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .foreign_key(
                    ForeignKey::create()
                        .from("campaign_lists", "list_id")
                        .to("lists", "id")
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table("campaign_recipients")
                .col(big_pk_auto("id"))
                .col(big_integer("campaign_id"))
                // Set to NULL when the person is erased or retention deletes them: the row then
                // names no one and only counts towards the campaign's totals.
                .col(big_integer_null("subscriber_id"))
                // The list through which this person gets the campaign (List-Id, unsubscribe).
                .col(big_integer("list_id"))
                // queued | sending | sent | failed | skipped | cancelled
                .col(string_len("status", 16))
                .col(integer("attempts").default(0))
                // As in the outbox: when due, or for `sending` rows when the lease expires.
                .col(big_integer("next_attempt_at_ms"))
                .col(string_len_null("lease_owner", 64))
                .col(string_len_null("last_error", 1000))
                .col(string_len_null("message_id", 255))
                .col(timestamp_with_time_zone_null("sent_at"))
                .foreign_key(
                    ForeignKey::create()
                        .from("campaign_recipients", "campaign_id")
                        .to("campaigns", "id")
                        .on_delete(ForeignKeyAction::Cascade),
                )
                // Erasure unlinks a person from every audience at once (GD-3); counts stay.
                .foreign_key(
                    ForeignKey::create()
                        .from("campaign_recipients", "subscriber_id")
                        .to("subscribers", "id")
                        .on_delete(ForeignKeyAction::SetNull),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("campaign_recipients_once")
                .table("campaign_recipients")
                .col("campaign_id")
                .col("subscriber_id")
                .unique()
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("campaign_recipients_due")
                .table("campaign_recipients")
                .col("status")
                .col("next_attempt_at_ms")
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("campaign_recipients_subscriber")
                .table("campaign_recipients")
                .col("subscriber_id")
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table("test_recipients")
                .col(big_pk_auto("id"))
                .col(string_len_uniq("email", 320))
                .col(timestamp_with_time_zone("created_at"))
                .to_owned(),
        )
        .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            "test_recipients",
            "campaign_recipients",
            "campaign_lists",
            "campaigns",
        ] {
            m.drop_table(Table::drop().table(table).to_owned()).await?;
        }
        Ok(())
    }
}
