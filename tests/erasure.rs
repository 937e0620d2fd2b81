//! GD-2, GD-3, GD-4, GD-5 on disk: what an erasure, a change of address or the retention job
//! deletes is gone from the database's files too, read as bytes, as anyone who copies them
//! would read them: SQLite's database, write-ahead log and shared-memory files; PostgreSQL's
//! table and index pages (through `pageinspect`). Searched for: the address in any case, the
//! name, and unkeyed hashes of the address.

mod common;

use common::flows::{self, link_in, text_of};
use std::time::Duration;

use common::{OFFERS, Spawn, TestApp, WAIT, WEEKLY, spawn, spawn_with_lists};
use letterhead::store::scrub::Compaction;
use reqwest::StatusCode;
use sea_orm::{ConnectionTrait, Statement};
use sha2::Digest;

/// What must not be found: a label and the bytes; text is compared case-insensitively.
struct Trace {
    label: String,
    bytes: Vec<u8>,
    text: bool,
}

/// The address (any case), the name, and SHA-256 / SHA-512 of the address as given and in
/// lower case, in hex and raw.
fn traces_of(address: &str, name: Option<&str>) -> Vec<Trace> {
    let text = |label: &str, s: &str| Trace {
        label: label.to_owned(),
        bytes: s.to_lowercase().into_bytes(),
        text: true,
    };
    let mut out = vec![text("the address", address)];
    if let Some(name) = name {
        out.push(text("the name", name));
    }
    for spelling in [address.to_owned(), address.to_lowercase()] {
        let digests = [
            ("SHA-256", sha2::Sha256::digest(spelling.as_bytes()).to_vec()),
            ("SHA-512", sha2::Sha512::digest(spelling.as_bytes()).to_vec()),
        ];
        for (alg, digest) in digests {
            out.push(text(&format!("{alg} hex of {spelling}"), &hex::encode(&digest)));
            out.push(Trace {
                label: format!("{alg} of {spelling}"),
                bytes: digest,
                text: false,
            });
        }
    }
    out
}

/// The traces found in `haystack`.
fn found_in(haystack: &[u8], traces: &[Trace]) -> Vec<String> {
    let lower = haystack.to_ascii_lowercase();
    traces
        .iter()
        .filter(|t| {
            let hay = if t.text { &lower } else { haystack };
            hay.windows(t.bytes.len()).any(|w| w == t.bytes.as_slice())
        })
        .map(|t| t.label.clone())
        .collect()
}

/// The rows of `sql`: a relation's name and bytes of it.
async fn rows_of_bytes(app: &TestApp, sql: &str) -> Vec<(String, Vec<u8>)> {
    let db = &app.state.db;
    db.query_all_raw(Statement::from_string(db.get_database_backend(), sql.to_owned()))
        .await
        .unwrap()
        .into_iter()
        .map(|r| {
            (
                r.try_get_by_index::<String>(0).unwrap(),
                r.try_get_by_index::<Vec<u8>>(1).unwrap(),
            )
        })
        .collect()
}

/// Every page of every relation of the database with storage (tables, indexes, TOAST, the
/// catalogs), as PostgreSQL would write it to disk.
const EVERY_PAGE: &str = "SELECT c.relname::text, get_raw_page(c.oid::regclass::text, 'main', g) FROM pg_class c \
    CROSS JOIN LATERAL generate_series(0, pg_relation_size(c.oid) / current_setting('block_size')::int - 1) g \
    WHERE c.relkind IN ('r', 'i', 't', 'm') AND c.relpersistence <> 't'";

/// The data of every row version (live or dead) in the tables' pages, and of every index
/// entry in their B-tree pages past the meta page.
const EVERY_ROW_VERSION: &str = "SELECT c.relname::text, t.t_data FROM pg_class c \
    CROSS JOIN LATERAL generate_series(0, pg_relation_size(c.oid) / 8192 - 1) g \
    CROSS JOIN LATERAL heap_page_items(get_raw_page(c.oid::regclass::text, 'main', g)) t \
    WHERE c.relkind IN ('r', 't') AND c.relnamespace IN ('public'::regnamespace, 'pg_toast'::regnamespace) \
    AND t.t_data IS NOT NULL \
    UNION ALL \
    SELECT c.relname::text, decode(replace(i.data, ' ', ''), 'hex') FROM pg_class c JOIN pg_am a ON a.oid = c.relam \
    CROSS JOIN LATERAL generate_series(1, pg_relation_size(c.oid) / 8192 - 1) g \
    CROSS JOIN LATERAL bt_page_items(get_raw_page(c.oid::regclass::text, 'main', g)) i \
    WHERE c.relkind = 'i' AND a.amname = 'btree' \
    AND c.relnamespace IN ('public'::regnamespace, 'pg_toast'::regnamespace) AND i.data IS NOT NULL";

/// Where the traces are on disk: per SQLite file, or per kind of PostgreSQL storage (pages,
/// and on `versions_only` just the row versions and index entries).
async fn on_disk(app: &TestApp, traces: &[Trace], versions_only: bool) -> Vec<String> {
    let mut found = Vec::new();
    if app.db.is_postgres() {
        app.state
            .db
            .execute_unprepared("CREATE EXTENSION IF NOT EXISTS pageinspect")
            .await
            .unwrap();
        let sql = if versions_only {
            EVERY_ROW_VERSION
        } else {
            EVERY_PAGE
        };
        for (relation, page) in rows_of_bytes(app, sql).await {
            for label in found_in(&page, traces) {
                found.push(format!("{label} in a page of {relation}"));
            }
        }
    } else {
        let path = app.db.url.trim_start_matches("sqlite://");
        let path = path.split('?').next().unwrap();
        for file in [path.to_owned(), format!("{path}-wal"), format!("{path}-shm")] {
            let bytes = std::fs::read(&file).unwrap_or_default();
            for label in found_in(&bytes, traces) {
                found.push(format!("{label} in {file}"));
            }
        }
    }
    found.sort();
    found.dedup();
    found
}

/// An app whose PostgreSQL compaction follows each erasure at once (`COMPACTION_HOUR=immediately`).
async fn spawn_compacting_at_once(lists: &[common::List]) -> TestApp {
    spawn(Spawn {
        lists: lists.to_vec(),
        overrides: vec![("COMPACTION_HOUR", "immediately".into())],
        ..Default::default()
    })
    .await
}

/// Waits for the wipe the service does by itself after a deletion, then asserts that nothing
/// is left: on SQLite in any of the three files; on PostgreSQL in no byte of any page.
async fn assert_gone_from_disk(app: &TestApp, traces: &[Trace]) {
    app.state.scrubber.settled().await;
    assert_eq!(on_disk(app, traces, false).await, Vec::<String>::new());
    assert_eq!(
        app.query_i64("SELECT deletions - wiped FROM wipe_due").await,
        0,
        "nothing is left due"
    );
}

/// What the scrubber's scheduled compaction does once nothing holds it up any longer.
async fn compaction(app: &TestApp) -> Compaction {
    let mut horizon = None;
    loop {
        match app.state.scrubber.compact_if_due(&mut horizon).await.unwrap() {
            Compaction::HeldUp => tokio::time::sleep(Duration::from_millis(50)).await,
            done => return done,
        }
    }
}

/// Subscribes `address` to the weekly list, confirmed, then erases the person through
/// `DELETE /api/v1/subscribers/{id}`.
async fn erase_through_the_api(app: &TestApp, address: &str) {
    let id = flows::confirmed(app, address, &["weekly"]).await;
    let key = app.create_api_key().await;
    let res = app.api_delete(&key, &format!("/api/v1/subscribers/{id}")).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
}

/// Others on the lists, so that the person's rows share their pages with rows that stay.
async fn neighbours(app: &TestApp) {
    for i in 0..3 {
        flows::confirmed(app, &format!("neighbour{i}@example.org"), &["weekly"]).await;
    }
}

/// GD-3, GD-4: after an erasure from the preference page, neither the address (as typed, or as
/// a test send wrote it in capitals), nor the name, nor an unkeyed hash of the address is in
/// the database's files; the erasure's suppression is a keyed hash.
#[tokio::test]
async fn gd3_an_erased_address_is_nowhere_in_the_database_files() {
    let app = spawn_compacting_at_once(&[WEEKLY, OFFERS]).await;
    neighbours(&app).await;
    let person = flows::confirmed_with_name(
        &app,
        "Forget.Me@example.org",
        "Forgettable Person",
        &["weekly", "offers"],
    )
    .await;
    let prefs = app.preferences_path(person);
    let before = app.sink.messages().len();
    app.post(&format!("{prefs}/export")).await; // a send-log row
    app.run_cli(&["send-test", "--to", "FORGET.ME@example.org"]); // a row without a subscriber
    app.sink.wait_for(before + 2, WAIT).await;
    let traces = traces_of("Forget.Me@example.org", Some("Forgettable Person"));
    assert!(
        on_disk(&app, &traces, true).await.len() >= 2,
        "the search finds the address and the name while they are held"
    );

    assert_eq!(app.post(&format!("{prefs}/erase")).await.status(), StatusCode::OK);
    assert_gone_from_disk(&app, &traces).await;
    assert_eq!(
        app.query_i64("SELECT COUNT(*) FROM suppressions WHERE reason = 'erased'")
            .await,
        1
    );
}

/// GD-3: erasing through `DELETE /api/v1/subscribers/{id}` wipes the files the same way.
#[tokio::test]
async fn gd3_an_address_erased_through_the_api_is_nowhere_in_the_database_files() {
    let app = spawn_compacting_at_once(&[WEEKLY]).await;
    neighbours(&app).await;
    erase_through_the_api(&app, "api.erased@example.org").await;
    assert_gone_from_disk(&app, &traces_of("api.erased@example.org", None)).await;
}

/// Asks on the preference page for the person's mail to go to `new`, and confirms it there.
async fn change_address(app: &TestApp, person: uuid::Uuid, new: &str) {
    let prefs = app.preferences_path(person);
    let before = app.sink.messages().len();
    let form = format!("email={}", new.replace('@', "%40"));
    let res = app.post_form(&format!("{prefs}/address"), &form).await;
    assert_eq!(res.status(), StatusCode::OK);
    let msgs = app.sink.wait_for(before + 1, WAIT).await;
    let link = link_in(&text_of(&msgs[before]), "/change-address/");
    assert_eq!(app.post(&link).await.status(), StatusCode::OK);
}

/// GD-2: once a new address is confirmed, the old one is nowhere in the files, also not in
/// the mail log that was sent to it.
#[tokio::test]
async fn gd2_a_replaced_address_is_nowhere_in_the_database_files() {
    let app = spawn_compacting_at_once(&[WEEKLY]).await;
    neighbours(&app).await;
    let person = flows::confirmed(&app, "Old.Address@example.org", &["weekly"]).await;
    change_address(&app, person, "new.address@example.org").await;
    assert_eq!(
        app.query_i64("SELECT COUNT(*) FROM outbox WHERE recipient = 'new.address@example.org'")
            .await,
        2,
        "the confirmation sent to the old address is logged under the new one"
    );
    assert_gone_from_disk(&app, &traces_of("Old.Address@example.org", None)).await;
}

/// GD-5: a person the retention job deletes (`letterhead retention run`, another process) is
/// wiped from the files as well: the command line empties SQLite's log itself; on PostgreSQL
/// the service's scrubber finds the deletion due on its next round and compacts.
#[tokio::test]
async fn gd5_a_person_deleted_by_retention_is_nowhere_in_the_database_files() {
    let app = spawn_compacting_at_once(&[WEEKLY]).await;
    neighbours(&app).await;
    let person = flows::confirmed(&app, "long.gone@example.org", &["weekly"]).await;
    let prefs = app.preferences_path(person);
    let res = app.post(&format!("{prefs}/unsubscribe-all")).await;
    assert_eq!(res.status(), StatusCode::OK);
    app.backdate_leaving("long.gone@example.org", &["weekly"], 400)
        .await;
    let out = app.run_cli(&["retention", "run"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        app.query_i64("SELECT COUNT(*) FROM subscribers WHERE email_key = 'long.gone@example.org'")
            .await,
        0
    );
    if app.db.is_postgres() {
        assert_eq!(compaction(&app).await, Compaction::Done);
    }
    assert_gone_from_disk(&app, &traces_of("long.gone@example.org", None)).await;
}

/// GD-3 with the default schedule: right after an erasure PostgreSQL keeps no row version or
/// index entry of the address, and the compaction due at `COMPACTION_HOUR` (what the scrubber
/// runs once that hour comes) leaves it in no byte of any page; then nothing is due.
#[tokio::test]
async fn gd3_the_nightly_compaction_removes_what_the_vacuum_left() {
    let app = spawn_with_lists(&[WEEKLY]).await;
    neighbours(&app).await;
    erase_through_the_api(&app, "nightly.erased@example.org").await;
    app.state.scrubber.settled().await;
    let traces = traces_of("nightly.erased@example.org", None);
    assert_eq!(on_disk(&app, &traces, true).await, Vec::<String>::new());
    if !app.db.is_postgres() {
        // SQLite overwrote at once; its wipe is complete.
        assert_gone_from_disk(&app, &traces).await;
        return;
    }
    assert_eq!(
        app.query_i64("SELECT deletions - wiped FROM wipe_due").await,
        1,
        "the erasure awaits its compaction"
    );
    assert_eq!(compaction(&app).await, Compaction::Done);
    assert_gone_from_disk(&app, &traces).await;
    assert!(
        app.query_i64("SELECT COUNT(*) FROM wipe_due WHERE compacted_at_ms IS NOT NULL")
            .await
            == 1
    );
    assert_eq!(compaction(&app).await, Compaction::NotDue, "nothing is due twice");
}

/// GD-3: `letterhead retention compact`, run by an operator, does at once what the nightly
/// compaction would: no byte of the erased address is left, and nothing is due.
#[tokio::test]
async fn gd3_the_compaction_on_demand_removes_what_the_vacuum_left() {
    let app = spawn_with_lists(&[WEEKLY]).await;
    neighbours(&app).await;
    erase_through_the_api(&app, "on.demand@example.org").await;
    app.state.scrubber.settled().await;
    let out = app.run_cli(&["retention", "compact"]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.starts_with("compacted in"), "{said}");
    assert_gone_from_disk(&app, &traces_of("on.demand@example.org", None)).await;
}

/// GD-2 with a transaction open in another database of the same server, begun before the
/// change: VACUUM FULL keeps what its own snapshot may see, and that snapshot goes back to the
/// oldest transaction running anywhere on the server. The compaction waits for it to end
/// instead of keeping the old address and calling it wiped.
#[tokio::test]
async fn gd2_a_transaction_elsewhere_on_the_server_holds_the_compaction_up_until_it_ends() {
    let app = spawn_compacting_at_once(&[WEEKLY]).await;
    if !app.db.is_postgres() {
        return;
    }
    neighbours(&app).await;
    let person = flows::confirmed(&app, "Before.Then@example.org", &["weekly"]).await;
    let admin = std::env::var("TEST_DATABASE_URL").unwrap();
    let elsewhere = sea_orm::Database::connect(&admin).await.unwrap();
    let open = sea_orm::TransactionTrait::begin(&elsewhere).await.unwrap();
    open.execute_unprepared("SELECT txid_current()").await.unwrap();

    change_address(&app, person, "after.now@example.org").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        app.query_i64("SELECT deletions - wiped FROM wipe_due").await,
        1,
        "held up while the older transaction runs"
    );

    open.commit().await.unwrap();
    assert_gone_from_disk(&app, &traces_of("Before.Then@example.org", None)).await;
}
