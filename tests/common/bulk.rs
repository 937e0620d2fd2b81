//! Audiences in bulk, straight into the database, for the tests and benches that need
//! thousands of recipients. (Also compiled into `benches/campaign.rs` by path.)
//!
//! Raw, set-based SQL on purpose: the one seeding that does not go through the store's
//! functions. Three statements write any number of people (10,000 in the tests, up to a million
//! in the benchmark), where adding them one by one through the store would take minutes; the
//! rows are the ones a double opt-in leaves.

use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement};

/// `n` confirmed subscribers (`reader{i}@example.org`, "Reader {i}") of the list `slug`, each
/// with the consent evidence a double opt-in leaves: the signup and its confirmation.
pub async fn seed_confirmed(db: &DatabaseConnection, slug: &str, n: i64) {
    let backend = db.get_database_backend();
    let postgres = backend == DbBackend::Postgres;
    let numbers = if postgres {
        format!("SELECT i FROM generate_series(1, {n}) AS i")
    } else {
        format!(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {n}) SELECT i FROM n"
        )
    };
    let uuid = if postgres {
        "gen_random_uuid()"
    } else {
        "randomblob(16)"
    };
    let now = time::OffsetDateTime::now_utc();
    for sql in [
        format!(
            "INSERT INTO subscribers (uuid, email, email_key, address_hmac, name, created_at, updated_at) \
             SELECT {uuid}, 'reader' || i || '@example.org', 'reader' || i || '@example.org', 'h' || i, \
             'Reader ' || i, $1, $1 FROM ({numbers}) AS numbers"
        ),
        format!(
            "INSERT INTO subscriptions (subscriber_id, list_id, status, created_at, confirmed_at) \
             SELECT id, (SELECT id FROM lists WHERE slug = '{slug}'), 'confirmed', $1, $1 FROM subscribers"
        ),
        format!(
            "INSERT INTO consent_events (subscriber_id, list_id, kind, occurred_at, source, ip, user_agent, \
             policy_version) SELECT s.id, (SELECT id FROM lists WHERE slug = '{slug}'), k.kind, $1, \
             'form:seeded', '192.0.2.1', 'seeded', '1' FROM subscribers s \
             CROSS JOIN (SELECT 'signup' AS kind UNION ALL SELECT 'confirm') AS k"
        ),
    ] {
        db.execute_raw(Statement::from_sql_and_values(backend, sql, [now.into()]))
            .await
            .unwrap();
    }
}
