//! On PostgreSQL, the parents of new subscriptions and consent events are checked once per
//! statement instead of once per row.
//!
//! A foreign key checks every inserted row with a query of its own that also locks the parent
//! (`FOR KEY SHARE`): four such queries per person an import adds, a third of its time. The
//! keys become two kinds of trigger that keep what they promised:
//! - after an insert, one statement locks all the rows' subscribers and lists `FOR KEY SHARE`,
//!   as the keys did, and fails with `foreign_key_violation` if any is missing;
//! - a row's subscriber and list never change (the keys would have checked a change; nothing
//!   in letterhead makes one, so it is refused), except that a list's deletion unlinks its
//!   evidence;
//! - deleting a subscriber deletes their subscriptions and consent events, and deleting a list
//!   deletes its subscriptions and unlinks its consent events, as `ON DELETE` did.
//!
//! SQLite keeps its foreign keys: it checks a row by its parent's primary key in the same
//! pass, at no comparable cost.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261207_000013_parents_checked_per_statement"
    }
}

const POSTGRES_UP: &str = r#"
ALTER TABLE subscriptions
    DROP CONSTRAINT subscriptions_subscriber_id_fkey,
    DROP CONSTRAINT subscriptions_list_id_fkey;
ALTER TABLE consent_events
    DROP CONSTRAINT consent_events_subscriber_id_fkey,
    DROP CONSTRAINT consent_events_list_id_fkey;

CREATE FUNCTION lock_new_rows_parents() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    subscriber_ids bigint[];
    list_ids bigint[];
    found bigint;
BEGIN
    SELECT array_agg(DISTINCT subscriber_id),
           array_agg(DISTINCT list_id) FILTER (WHERE list_id IS NOT NULL)
        INTO subscriber_ids, list_ids FROM new_rows;
    SELECT count(*) INTO found FROM
        (SELECT 1 FROM subscribers s WHERE s.id = ANY (subscriber_ids) FOR KEY SHARE) locked;
    IF found <> coalesce(cardinality(subscriber_ids), 0) THEN
        RAISE foreign_key_violation USING MESSAGE = format(
            'insert into %I violates a foreign key: a subscriber it names does not exist', TG_TABLE_NAME);
    END IF;
    SELECT count(*) INTO found FROM
        (SELECT 1 FROM lists l WHERE l.id = ANY (list_ids) FOR KEY SHARE) locked;
    IF found <> coalesce(cardinality(list_ids), 0) THEN
        RAISE foreign_key_violation USING MESSAGE = format(
            'insert into %I violates a foreign key: a list it names does not exist', TG_TABLE_NAME);
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER subscriptions_parents_exist AFTER INSERT ON subscriptions
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION lock_new_rows_parents();
CREATE TRIGGER consent_events_parents_exist AFTER INSERT ON consent_events
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION lock_new_rows_parents();

CREATE FUNCTION refuse_new_parents() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE foreign_key_violation USING MESSAGE = format(
        'update of %I violates a foreign key: the subscriber and list of a row never change', TG_TABLE_NAME);
END $$;
CREATE TRIGGER subscriptions_parents_stay BEFORE UPDATE ON subscriptions FOR EACH ROW
    WHEN (OLD.subscriber_id IS DISTINCT FROM NEW.subscriber_id
        OR (NEW.list_id IS NOT NULL AND OLD.list_id IS DISTINCT FROM NEW.list_id))
    EXECUTE FUNCTION refuse_new_parents();
CREATE TRIGGER consent_events_parents_stay BEFORE UPDATE ON consent_events FOR EACH ROW
    WHEN (OLD.subscriber_id IS DISTINCT FROM NEW.subscriber_id
        OR (NEW.list_id IS NOT NULL AND OLD.list_id IS DISTINCT FROM NEW.list_id))
    EXECUTE FUNCTION refuse_new_parents();

CREATE FUNCTION delete_subscriber_records() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM subscriptions WHERE subscriber_id = OLD.id;
    DELETE FROM consent_events WHERE subscriber_id = OLD.id;
    RETURN OLD;
END $$;
CREATE TRIGGER subscribers_delete_records AFTER DELETE ON subscribers
    FOR EACH ROW EXECUTE FUNCTION delete_subscriber_records();

CREATE FUNCTION delete_list_records() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM subscriptions WHERE list_id = OLD.id;
    UPDATE consent_events SET list_id = NULL WHERE list_id = OLD.id;
    RETURN OLD;
END $$;
CREATE TRIGGER lists_delete_records AFTER DELETE ON lists
    FOR EACH ROW EXECUTE FUNCTION delete_list_records();
"#;

const POSTGRES_DOWN: &str = r#"
DROP TRIGGER lists_delete_records ON lists;
DROP FUNCTION delete_list_records();
DROP TRIGGER subscribers_delete_records ON subscribers;
DROP FUNCTION delete_subscriber_records();
DROP TRIGGER consent_events_parents_stay ON consent_events;
DROP TRIGGER subscriptions_parents_stay ON subscriptions;
DROP FUNCTION refuse_new_parents();
DROP TRIGGER consent_events_parents_exist ON consent_events;
DROP TRIGGER subscriptions_parents_exist ON subscriptions;
DROP FUNCTION lock_new_rows_parents();
ALTER TABLE subscriptions
    ADD CONSTRAINT subscriptions_subscriber_id_fkey FOREIGN KEY (subscriber_id)
        REFERENCES subscribers (id) ON DELETE CASCADE,
    ADD CONSTRAINT subscriptions_list_id_fkey FOREIGN KEY (list_id)
        REFERENCES lists (id) ON DELETE CASCADE;
ALTER TABLE consent_events
    ADD CONSTRAINT consent_events_subscriber_id_fkey FOREIGN KEY (subscriber_id)
        REFERENCES subscribers (id) ON DELETE CASCADE,
    ADD CONSTRAINT consent_events_list_id_fkey FOREIGN KEY (list_id)
        REFERENCES lists (id) ON DELETE SET NULL;
"#;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let db = m.get_connection();
        if db.get_database_backend() == DbBackend::Postgres {
            db.execute_unprepared(POSTGRES_UP).await?;
        }
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let db = m.get_connection();
        if db.get_database_backend() == DbBackend::Postgres {
            db.execute_unprepared(POSTGRES_DOWN).await?;
        }
        Ok(())
    }
}
