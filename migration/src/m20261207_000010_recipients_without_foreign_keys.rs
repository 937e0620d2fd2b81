//! A campaign's audience snapshot without foreign-key checks.
//!
//! PostgreSQL checks a foreign key with a trigger per inserted row: for a million recipients,
//! two million lookups that also lock the campaign and each subscriber, half of the snapshot's
//! time. Neither key needs checking there: the snapshot takes its rows from `subscribers` and
//! its campaign in the same transaction, and only drafts, which have no recipients, are ever
//! deleted. What the subscriber key did on delete (`SET NULL`: erasure and retention unlink a
//! person from every audience, GD-3) a trigger on `subscribers` now does, on both databases.
//!
//! SQLite cannot drop a foreign key, so there the table is rebuilt without them.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261207_000010_recipients_without_foreign_keys"
    }
}

const POSTGRES_UP: &str = r#"
ALTER TABLE campaign_recipients
    DROP CONSTRAINT campaign_recipients_campaign_id_fkey,
    DROP CONSTRAINT campaign_recipients_subscriber_id_fkey;
CREATE FUNCTION unlink_campaign_recipients() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE campaign_recipients SET subscriber_id = NULL WHERE subscriber_id = OLD.id;
    RETURN OLD;
END $$;
CREATE TRIGGER subscribers_unlink_campaign_recipients AFTER DELETE ON subscribers
    FOR EACH ROW EXECUTE FUNCTION unlink_campaign_recipients();
"#;

const POSTGRES_DOWN: &str = r#"
DROP TRIGGER subscribers_unlink_campaign_recipients ON subscribers;
DROP FUNCTION unlink_campaign_recipients();
ALTER TABLE campaign_recipients
    ADD CONSTRAINT campaign_recipients_campaign_id_fkey FOREIGN KEY (campaign_id)
        REFERENCES campaigns (id) ON DELETE CASCADE,
    ADD CONSTRAINT campaign_recipients_subscriber_id_fkey FOREIGN KEY (subscriber_id)
        REFERENCES subscribers (id) ON DELETE SET NULL;
"#;

/// The table as migration 000002 made it, with `{keys}` where its foreign keys were.
const SQLITE_TABLE: &str = r#"CREATE TABLE "campaign_recipients_rebuilt" ( "id" integer NOT NULL PRIMARY KEY AUTOINCREMENT, "campaign_id" integer NOT NULL, "subscriber_id" integer NULL, "list_id" integer NOT NULL, "status" varchar(16) NOT NULL, "attempts" integer NOT NULL DEFAULT 0, "next_attempt_at_ms" integer NOT NULL, "lease_owner" varchar(64) NULL, "last_error" varchar(1000) NULL, "message_id" varchar(255) NULL, "sent_at" timestamp_with_timezone_text NULL{keys} )"#;

const SQLITE_KEYS: &str = r#", FOREIGN KEY ("campaign_id") REFERENCES "campaigns" ("id") ON DELETE CASCADE, FOREIGN KEY ("subscriber_id") REFERENCES "subscribers" ("id") ON DELETE SET NULL"#;

const SQLITE_INDEXES: &str = r#"
CREATE UNIQUE INDEX "campaign_recipients_once" ON "campaign_recipients" ("campaign_id", "subscriber_id");
CREATE INDEX "campaign_recipients_subscriber" ON "campaign_recipients" ("subscriber_id");
CREATE INDEX "campaign_recipients_claimable" ON "campaign_recipients" ("next_attempt_at_ms", "id") WHERE "status" IN ('queued', 'sending');
"#;

const SQLITE_TRIGGER: &str = r#"
CREATE TRIGGER subscribers_unlink_campaign_recipients AFTER DELETE ON subscribers BEGIN
    UPDATE campaign_recipients SET subscriber_id = NULL WHERE subscriber_id = OLD.id;
END;
"#;

/// The table's columns, named: a later migration that adds one back appends it at the end.
const SQLITE_COLUMNS: &str = "id, campaign_id, subscriber_id, list_id, status, attempts, \
    next_attempt_at_ms, lease_owner, last_error, message_id, sent_at";

/// Rebuilds the SQLite table with or without its foreign keys, rows, ids and id sequence kept.
fn sqlite_rebuild(keys: &str) -> String {
    format!(
        "{table};
INSERT INTO campaign_recipients_rebuilt ({SQLITE_COLUMNS}) SELECT {SQLITE_COLUMNS} FROM campaign_recipients;
UPDATE sqlite_sequence SET seq = (SELECT seq FROM sqlite_sequence WHERE name = 'campaign_recipients')
    WHERE name = 'campaign_recipients_rebuilt';
DROP TABLE campaign_recipients;
ALTER TABLE campaign_recipients_rebuilt RENAME TO campaign_recipients;
{SQLITE_INDEXES}",
        table = SQLITE_TABLE.replace("{keys}", keys),
    )
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let db = m.get_connection();
        match db.get_database_backend() {
            DbBackend::Postgres => db.execute_unprepared(POSTGRES_UP).await?,
            _ => {
                db.execute_unprepared(&sqlite_rebuild("")).await?;
                db.execute_unprepared(SQLITE_TRIGGER).await?
            }
        };
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let db = m.get_connection();
        match db.get_database_backend() {
            DbBackend::Postgres => db.execute_unprepared(POSTGRES_DOWN).await?,
            _ => {
                db.execute_unprepared("DROP TRIGGER subscribers_unlink_campaign_recipients")
                    .await?;
                db.execute_unprepared(&sqlite_rebuild(SQLITE_KEYS)).await?
            }
        };
        Ok(())
    }
}
