//! Crashes and stops, seen from outside: the real binary is killed with SIGKILL in the middle
//! of a campaign or right after it answered, and the work it held is done by a restart or by
//! another instance within 30 s; a live worker keeps its rows however long the relay takes; a
//! graceful stop hands back what it had not started. Delivery is at-least-once, with at most
//! `DeliveryConfig::unrecorded_at_most` duplicates per crash.

mod common;

use std::collections::HashMap;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use common::{NEWS, Spawn, TestApp, TestDb, WAIT, free_port, spawn};
use letterhead::store::entities::subscriber;
use reqwest::StatusCode;
use sea_orm::{ConnectionTrait, EntityTrait};
use serde_json::{Value, json};

/// How soon the work of a dead process must be taken up again (issue: within 30 s).
const RESUMED_WITHIN: Duration = Duration::from_secs(30);

/// `letterhead serve` as a process of its own, with `app`'s settings.
struct Binary {
    child: Child,
    base: String,
    _env: tempfile::NamedTempFile,
}

impl Binary {
    async fn start(app: &TestApp) -> Self {
        let (cmd, env) = app.cli();
        Self::start_with(cmd, env).await
    }

    async fn start_with(mut cmd: Command, env: tempfile::NamedTempFile) -> Self {
        let port = free_port();
        let child = cmd
            .arg("serve")
            .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let deadline = Instant::now() + WAIT;
        while http.get(format!("{base}/healthz")).send().await.is_err() {
            assert!(Instant::now() < deadline, "the binary did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Binary {
            child,
            base,
            _env: env,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// SIGKILL: no graceful stop, nothing flushed, leases left behind.
    fn kill_9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

/// An app with the news list, `n` confirmed readers of it, and an API key; its own worker is
/// stopped, so that the binary started from its settings is the only sender.
async fn readers(n: i64, overrides: Vec<(&'static str, String)>) -> (TestApp, String) {
    let app = spawn(Spawn {
        overrides,
        lists: vec![NEWS],
        ..Default::default()
    })
    .await;
    common::bulk::seed_confirmed(&app.state.db, "news", n).await;
    let key = app.create_api_key().await;
    (app, key)
}

/// Creates and sends a campaign to the news list through `base`'s API; returns its id.
async fn send_campaign(base: &str, key: &str) -> i64 {
    let http = reqwest::Client::new();
    let created: Value = http
        .post(format!("{base}/api/v1/campaigns"))
        .bearer_auth(key)
        .json(&json!({"subject": "Crash", "lists": ["news"], "markdown": "Hello {{ name }}"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created["id"].as_i64().unwrap();
    let res = http
        .post(format!("{base}/api/v1/campaigns/{id}/send"))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    id
}

/// A count straight from the database, with a connection of the test's own (an instance
/// spawned to look would claim rows itself).
async fn count(db: &TestDb, sql: &str) -> i64 {
    let conn = sea_orm::Database::connect(&db.url).await.unwrap();
    let row = conn
        .query_one_raw(sea_orm::Statement::from_string(conn.get_database_backend(), sql))
        .await
        .unwrap()
        .unwrap();
    let n = row.try_get_by_index::<i64>(0).unwrap();
    conn.close().await.unwrap();
    n
}

/// Messages per recipient, as the sink received them.
fn per_recipient(app: &TestApp) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for m in app.sink.messages() {
        for to in m.rcpt_to {
            *counts.entry(to).or_insert(0) += 1;
        }
    }
    counts
}

/// Waits until no recipient of the campaign is left queued or leased; fails after `within`.
async fn wait_until_every_recipient_is_done(db: &TestDb, within: Duration) {
    let started = Instant::now();
    loop {
        let open = count(
            db,
            "SELECT COUNT(*) FROM campaign_recipients WHERE status IN ('queued', 'sending')",
        )
        .await;
        if open == 0 {
            return;
        }
        assert!(
            started.elapsed() < within,
            "{open} recipients still open 30 s after the crash"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The kill -9 scenario: the binary sends a campaign, is killed mid-way while holding leases,
/// and the other instance (already running, or started right after the kill) finishes it
/// within 30 s with every reader served and duplicates within the stated bound.
async fn killed_mid_campaign(second_already_running: bool) {
    const N: i64 = 120;
    // One relay session and a slow relay: the binary claims more rows than it can send before
    // the kill, so it dies holding leases.
    let (setup, key) = readers(N, vec![("DELIVERY_CONCURRENCY", "1".into())]).await;
    let bound = setup.state.config.delivery.unrecorded_at_most();
    let lease = setup.state.config.delivery.lease;
    let (db, sink) = (setup.db.clone(), setup.sink.clone());
    let (cmd, env) = setup.cli();
    setup.stop().await;
    sink.delay_data(50);
    let binary = Binary::start_with(cmd, env).await;
    let id = send_campaign(&binary.base, &key).await;
    let deadline = Instant::now() + WAIT;
    while sink.messages().len() < 10 {
        assert!(Instant::now() < deadline, "the binary sent nothing");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let owners_before = count(
        &db,
        "SELECT COUNT(DISTINCT lease_owner) FROM campaign_blocks WHERE lease_owner IS NOT NULL",
    )
    .await;
    assert_eq!(owners_before, 1, "only the binary holds rows");
    let second = if second_already_running {
        Some(spawn(Spawn::sharing(db.clone(), sink.clone())).await)
    } else {
        None
    };
    binary.kill_9();
    let killed_at = Instant::now();
    let held_by_the_dead = count(
        &db,
        "SELECT COUNT(*) FROM campaign_blocks WHERE lease_owner IS NOT NULL",
    )
    .await;
    assert!(held_by_the_dead > 0, "the binary died holding leases");
    assert!(
        (sink.messages().len() as i64) < N,
        "killed in the middle of the campaign"
    );
    sink.delay_data(0);
    let survivor = match second {
        Some(second) => second,
        None => spawn(Spawn::sharing(db.clone(), sink.clone())).await,
    };
    wait_until_every_recipient_is_done(&db, RESUMED_WITHIN.saturating_sub(killed_at.elapsed())).await;
    let took = killed_at.elapsed();
    assert!(took < RESUMED_WITHIN, "finished {took:?} after the kill");
    // The dead process's rows wait for their lease (15 s by default), no longer.
    assert!(lease <= Duration::from_secs(15));
    let done = survivor.campaign(&key, id).await;
    let counts = per_recipient(&survivor);
    assert_eq!(counts.len() as i64, N, "every reader got the campaign");
    let duplicates: usize = counts.values().map(|n| n - 1).sum();
    assert!(
        duplicates <= bound,
        "{duplicates} duplicates; at most {bound} (DeliveryConfig::unrecorded_at_most)"
    );
    assert_eq!(done["sent"].as_i64(), Some(N), "{done}");
    survivor.stop().await;
}

/// `kill -9` mid-campaign and a restart at once: the restarted process finishes within 30 s.
#[tokio::test]
async fn after_kill_9_a_restart_finishes_the_campaign_within_30_s() {
    killed_mid_campaign(false).await;
}

/// Two instances and one killed: the other finishes the dead one's rows within 30 s, with no
/// restart.
#[tokio::test]
async fn after_kill_9_the_other_instance_finishes_the_campaign_within_30_s() {
    killed_mid_campaign(true).await;
}

/// A live worker renews its leases: a message the relay takes longer than a lease to accept
/// is not taken over by another instance and sent twice.
#[tokio::test]
async fn a_live_worker_keeps_its_rows_however_long_the_relay_takes() {
    let short_lease = vec![("DELIVERY_LEASE_SECONDS", "5".into())];
    let first = spawn(Spawn {
        overrides: short_lease.clone(),
        lists: vec![NEWS],
        ..Default::default()
    })
    .await;
    let second = spawn(Spawn {
        overrides: short_lease,
        ..Spawn::sharing(first.db.clone(), first.sink.clone())
    })
    .await;
    // Twice the lease at DATA.
    first.sink.delay_data(10_000);
    common::flows::sign_up(&first, "slow@example.org", None, &["news"]).await;
    // Both workers polled throughout; give a takeover every chance to show.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(first.sink.messages().len(), 1, "sent once");
    assert_eq!(
        first
            .query_i64("SELECT CAST(attempts AS BIGINT) FROM outbox WHERE status = 'sent'")
            .await,
        1,
        "claimed once"
    );
    second.stop().await;
    first.stop().await;
}

/// A graceful stop (SIGTERM) hands back at once the rows it had claimed and not started: the
/// next instance sends them without waiting for a lease, each exactly once, and the hand-back
/// spends none of their attempts.
#[tokio::test]
async fn a_graceful_stop_hands_back_what_it_had_not_started() {
    const N: i64 = 60;
    let (first, key) = readers(N, vec![("DELIVERY_CONCURRENCY", "1".into())]).await;
    first.sink.delay_data(100);
    let id = send_campaign(&first.base, &key).await;
    first.delivery.wakeups.campaigns.notify_one();
    let deadline = Instant::now() + WAIT;
    while first.sink.messages().len() < 5 {
        assert!(Instant::now() < deadline, "nothing sent");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (db, sink) = (first.db.clone(), first.sink.clone());
    first.stop().await;
    assert_eq!(
        count(
            &db,
            "SELECT COUNT(*) FROM campaign_blocks WHERE lease_owner IS NOT NULL"
        )
        .await,
        0,
        "nothing is left leased"
    );
    let handed_back = count(
        &db,
        "SELECT COUNT(*) FROM campaign_recipients WHERE status = 'queued' AND attempts = 0",
    )
    .await;
    let sent = count(
        &db,
        "SELECT COUNT(*) FROM campaign_recipients WHERE status = 'sent'",
    )
    .await;
    assert!(handed_back > 0, "the stop came mid-campaign");
    assert_eq!(
        handed_back + sent,
        N,
        "every row is sent or handed back untouched"
    );
    sink.delay_data(0);
    let restarted_at = Instant::now();
    let next = spawn(Spawn::sharing(db, sink)).await;
    let done = next.wait_for_campaign(&key, id, "sent").await;
    assert!(
        restarted_at.elapsed() < Duration::from_secs(10),
        "no lease to wait for: {:?}",
        restarted_at.elapsed()
    );
    assert_eq!(done["sent"].as_i64(), Some(N));
    let counts = per_recipient(&next);
    assert_eq!(counts.len() as i64, N);
    assert!(counts.values().all(|n| *n == 1), "each exactly once");
    next.stop().await;
}

/// A one-click unsubscribe answered 200 is in the database before the answer leaves: the
/// process is killed the moment the answers arrive, and every one of them is there.
#[tokio::test]
async fn one_click_unsubscribes_answered_200_survive_kill_9() {
    const N: i64 = 20;
    let (app, _key) = readers(N, vec![]).await;
    let list = app.list_id("news").await;
    let mut paths = Vec::new();
    for reader in subscriber::Entity::find().all(&app.state.db).await.unwrap() {
        paths.push(app.unsubscribe_path(reader.uuid, list));
    }
    assert_eq!(paths.len() as i64, N);
    let binary = Binary::start(&app).await;
    let http = reqwest::Client::new();
    let answers = futures::future::join_all(paths.iter().map(|path| {
        http.post(binary.url(path))
            .body("List-Unsubscribe=One-Click")
            .send()
    }))
    .await;
    binary.kill_9();
    for answer in answers {
        assert_eq!(answer.unwrap().status(), StatusCode::OK);
    }
    assert_eq!(
        app.query_i64("SELECT COUNT(*) FROM subscriptions WHERE status = 'unsubscribed'")
            .await,
        N,
        "every answered unsubscribe is recorded"
    );
    app.stop().await;
}

/// A lease renewal never waits for a row another statement has locked. On PostgreSQL it used
/// to wait for a group the recorder was writing while the recorder waited for it: the deadlock's
/// victim, the record, let its rows lapse, and another claim sent them a second time.
#[tokio::test]
async fn a_lease_renewal_does_not_wait_for_rows_being_recorded() {
    use letterhead::store::{self, queue::OUTBOX};
    use sea_orm::TransactionTrait;
    let db = TestDb::new().await;
    let conn = store::connect(&db.url).await.unwrap();
    if !store::is_postgres(&conn) {
        println!("skipped: SQLite has one writer at a time and no row locks");
        return;
    }
    store::migrate(&conn).await.unwrap();
    conn.execute_unprepared(
        "INSERT INTO outbox (id, kind, recipient, payload, status, attempts, next_attempt_at_ms, \
         lease_owner, created_at) VALUES \
         (1, 'test_message', 'a@example.org', '{}', 'sending', 1, 0, 'w1', CURRENT_TIMESTAMP), \
         (2, 'test_message', 'b@example.org', '{}', 'sending', 1, 0, 'w1', CURRENT_TIMESTAMP)",
    )
    .await
    .unwrap();
    // The recorder's group, not yet committed, holds row 1.
    let recording = conn.begin().await.unwrap();
    recording
        .execute_unprepared("UPDATE outbox SET message_id = '<m>' WHERE id = 1")
        .await
        .unwrap();
    let renewed = tokio::time::timeout(Duration::from_secs(5), OUTBOX.renew(&conn, "w1", &[1, 2], 99))
        .await
        .expect("the renewal waited for the recorder's lock")
        .unwrap();
    assert_eq!(renewed, 1, "row 2 renewed, row 1 (being recorded) left alone");
    recording.rollback().await.unwrap();
    assert_eq!(OUTBOX.renew(&conn, "w1", &[1, 2], 99).await.unwrap(), 2);
}
