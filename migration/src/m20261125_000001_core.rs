//! The core schema every capability builds on: lists, subscribers, subscriptions, the consent
//! ledger, the outbox, API keys, signing keys, policy versions and suppressions.
//!
//! The outbox's `next_attempt_at_ms` is epoch milliseconds, so that the claim query compares
//! plain integers on both backends. For a row being sent (`status = 'sending'`) it holds the
//! lease's expiry: one indexed condition, `next_attempt_at_ms <= now`, then finds both rows that
//! are due and rows whose worker died.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261125_000001_core"
    }
}

fn fk(
    from: (&'static str, &'static str),
    to: &'static str,
    on_delete: ForeignKeyAction,
) -> ForeignKeyCreateStatement {
    ForeignKey::create()
        .from(from.0, from.1)
        .to(to, "id")
        .on_delete(on_delete)
        .take()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table("lists")
                .col(big_pk_auto("id"))
                .col(string_len_uniq("slug", 64))
                .col(string_len("name", 200))
                .col(text_null("description"))
                .col(boolean("public").default(true))
                .col(timestamp_with_time_zone("created_at"))
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table("subscribers")
                .col(big_pk_auto("id"))
                .col(uuid_uniq("uuid"))
                // As given (domain in ASCII/punycode); `email_key` is the normalized unique key.
                .col(string_len("email", 320))
                .col(string_len_uniq("email_key", 320))
                // The keyed hash of the address (as in suppressions), so set-based sends can
                // leave out suppressed people in SQL.
                .col(string_len("address_hmac", 64))
                .col(string_len_null("name", 200))
                .col(timestamp_with_time_zone("created_at"))
                .col(timestamp_with_time_zone("updated_at"))
                .to_owned(),
        )
        .await?;

        m.create_index(
            Index::create()
                .name("subscribers_address_hmac")
                .table("subscribers")
                .col("address_hmac")
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table("subscriptions")
                .col(big_pk_auto("id"))
                .col(big_integer("subscriber_id"))
                .col(big_integer("list_id"))
                // pending | confirmed | unsubscribed
                .col(string_len("status", 16))
                .col(timestamp_with_time_zone("created_at"))
                .col(timestamp_with_time_zone_null("confirmed_at"))
                .col(timestamp_with_time_zone_null("unsubscribed_at"))
                // When the row last became pending (epoch ms): a confirmation link confirms only
                // what was pending when it was issued (OI-10).
                .col(big_integer_null("pending_since_ms"))
                .foreign_key(&mut fk(
                    ("subscriptions", "subscriber_id"),
                    "subscribers",
                    ForeignKeyAction::Cascade,
                ))
                .foreign_key(&mut fk(
                    ("subscriptions", "list_id"),
                    "lists",
                    ForeignKeyAction::Cascade,
                ))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("subscriptions_subscriber_list")
                .table("subscriptions")
                .col("subscriber_id")
                .col("list_id")
                .unique()
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("subscriptions_list_status")
                .table("subscriptions")
                .col("list_id")
                .col("status")
                .to_owned(),
        )
        .await?;

        // Append-only: rows are inserted, never updated (except that retention blanks ip and
        // user_agent), and deleted only with the person (erasure, retention).
        m.create_table(
            Table::create()
                .table("consent_events")
                .col(big_pk_auto("id"))
                .col(big_integer("subscriber_id"))
                .col(big_integer_null("list_id"))
                // signup | confirm | unsubscribe | resubscribe | import | api_add | agree ...
                .col(string_len("kind", 32))
                .col(timestamp_with_time_zone("occurred_at"))
                .col(string_len("source", 200))
                .col(string_len_null("ip", 64))
                .col(string_len_null("user_agent", 512))
                .col(string_len_null("policy_version", 64))
                .col(text_null("consent_text"))
                .col(text_null("detail"))
                .foreign_key(&mut fk(
                    ("consent_events", "subscriber_id"),
                    "subscribers",
                    ForeignKeyAction::Cascade,
                ))
                .foreign_key(&mut fk(
                    ("consent_events", "list_id"),
                    "lists",
                    ForeignKeyAction::SetNull,
                ))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("consent_events_subscriber")
                .table("consent_events")
                .col("subscriber_id")
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table("outbox")
                .col(big_pk_auto("id"))
                .col(string_len("kind", 32))
                .col(big_integer_null("subscriber_id"))
                .col(string_len("recipient", 320))
                .col(text("payload"))
                // queued | sending | sent | failed | cancelled
                .col(string_len("status", 16))
                .col(integer("attempts").default(0))
                .col(big_integer("next_attempt_at_ms"))
                .col(string_len_null("lease_owner", 64))
                .col(text_null("last_error"))
                .col(string_len_null("message_id", 255))
                .col(string_len_null("dedupe_key", 255).unique_key())
                .col(timestamp_with_time_zone("created_at"))
                .col(timestamp_with_time_zone_null("sent_at"))
                .foreign_key(&mut fk(
                    ("outbox", "subscriber_id"),
                    "subscribers",
                    ForeignKeyAction::Cascade,
                ))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("outbox_due")
                .table("outbox")
                .col("status")
                .col("next_attempt_at_ms")
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("outbox_subscriber")
                .table("outbox")
                .col("subscriber_id")
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table("api_keys")
                .col(big_pk_auto("id"))
                .col(string_len("name", 200))
                // The first characters of the key, shown in listings to tell keys apart.
                .col(string_len("prefix", 16))
                // SHA-256 of the whole key; keys are 256 random bits, so a fast hash is enough.
                .col(string_len_uniq("key_hash", 64))
                .col(timestamp_with_time_zone("created_at"))
                .col(timestamp_with_time_zone_null("last_used_at"))
                .col(timestamp_with_time_zone_null("revoked_at"))
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table("signing_keys")
                .col(big_pk_auto("id"))
                // token | address_hmac
                .col(string_len("purpose", 32))
                .col(string_len("kid", 64))
                .col(string_len("secret", 256))
                .col(timestamp_with_time_zone("created_at"))
                .col(timestamp_with_time_zone_null("retired_at"))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("signing_keys_purpose_kid")
                .table("signing_keys")
                .col("purpose")
                .col("kid")
                .unique()
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table("policy_versions")
                .col(big_pk_auto("id"))
                .col(string_len_uniq("version", 64))
                .col(timestamp_with_time_zone("effective_at"))
                .col(text("summary"))
                .col(string_len("url", 2048))
                .col(boolean("material").default(false))
                .col(string_len("content_hash", 64))
                .col(timestamp_with_time_zone("published_at"))
                .to_owned(),
        )
        .await?;

        // Breach notices: emailed to the people affected and shown on /notices until withdrawn.
        m.create_table(
            Table::create()
                .table("breach_notices")
                .col(big_pk_auto("id"))
                .col(string_len("subject", 500))
                .col(text("body"))
                // What the operator said was affected ("all", addresses counted, a date range).
                .col(text("affected"))
                .col(integer("notified").default(0))
                .col(timestamp_with_time_zone("published_at"))
                .col(timestamp_with_time_zone_null("withdrawn_at"))
                .to_owned(),
        )
        .await?;

        // A change of address waits here until the new address confirms it (GD-2); the link
        // names only this row's uuid, never the address (TK-6).
        m.create_table(
            Table::create()
                .table("address_changes")
                .col(big_pk_auto("id"))
                .col(uuid_uniq("uuid"))
                .col(big_integer("subscriber_id"))
                .col(string_len("new_email", 320))
                .col(timestamp_with_time_zone("created_at"))
                .foreign_key(&mut fk(
                    ("address_changes", "subscriber_id"),
                    "subscribers",
                    ForeignKeyAction::Cascade,
                ))
                .to_owned(),
        )
        .await?;

        // Single-use tokens (confirm, export, ...) are spent by inserting their id here (TK-7).
        m.create_table(
            Table::create()
                .table("spent_tokens")
                .col(string_len("jti", 64).primary_key())
                .col(timestamp_with_time_zone("spent_at"))
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table("suppressions")
                .col(big_pk_auto("id"))
                // HMAC-SHA256 (server secret) of the normalized address: never the address itself.
                .col(string_len_uniq("address_hmac", 64))
                // hard_bounce | complaint | erased | unsubscribed | manual
                .col(string_len("reason", 32))
                .col(timestamp_with_time_zone("created_at"))
                .to_owned(),
        )
        .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            "suppressions",
            "spent_tokens",
            "address_changes",
            "breach_notices",
            "policy_versions",
            "signing_keys",
            "api_keys",
            "outbox",
            "consent_events",
            "subscriptions",
            "subscribers",
            "lists",
        ] {
            m.drop_table(Table::drop().table(table).to_owned()).await?;
        }
        Ok(())
    }
}
