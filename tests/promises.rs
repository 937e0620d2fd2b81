//! The policy's remaining promises: retention for people who left, leaving by contacting us,
//! and consent to material changes (GD-3..5, CS-6, CS-7, CS-10, CS-12).

mod common;

use std::time::Duration;

use common::flows::{confirmed, link_in, text_of};
use common::{NEWS, OFFERS, Spawn, TestApp, WAIT, spawn};
use letterhead::store::retention::{self, Mode};
use reqwest::{Method, StatusCode};

/// An app with the lists news and offers, and an API key.
async fn app(overrides: Vec<(&'static str, String)>) -> (TestApp, String) {
    let app = spawn(Spawn {
        overrides,
        lists: vec![NEWS, OFFERS],
        ..Default::default()
    })
    .await;
    let key = app.create_api_key().await;
    (app, key)
}

/// Retention for people who left: exactly those past the period go (subscriber, evidence, send
/// log), only the keyed-hash suppression stays, campaign totals stay, no import brings them
/// back; a dry run deletes nothing; the job is idempotent. The clock is moved, not slept.
#[tokio::test]
async fn retention_deletes_exactly_the_people_past_the_period() {
    let (app, key) = app(vec![]).await;
    for who in ["longgone", "recent", "stays", "bounced", "halfway"] {
        confirmed(&app, &format!("{who}@example.org"), &["news", "offers"]).await;
    }
    let campaign = app
        .send_to_news(&key, "Before anyone left", "Hello {{ name }}")
        .await;
    assert_eq!(app.wait_for_campaign(&key, campaign, "sent").await["sent"], 5);
    // longgone left both lists 400 days ago, recent 100 days ago; halfway left only the news
    // list, 400 days ago; bounced hard-bounced 400 days ago.
    let both: &[&str] = &["news", "offers"];
    for (who, lists, days) in [
        ("longgone", both, 400),
        ("recent", both, 100),
        ("halfway", &["news"], 400),
    ] {
        let email = format!("{who}@example.org");
        app.leave_in_store(&email, lists).await;
        app.backdate_leaving(&email, lists, days).await;
    }
    app.suppress(&key, "bounced@example.org", "bounce").await;
    app.backdate_suppressions("hard_bounce", 400).await;
    let now = time::OffsetDateTime::now_utc();

    let cfg = app.state.config.retention.clone();
    let dry = retention::run(&app.state.db, &cfg, now, Mode::DryRun)
        .await
        .unwrap();
    assert_eq!((dry.leavers_deleted, dry.bounced_deleted), (1, 1));
    assert_eq!(
        app.query_i64("SELECT COUNT(*) FROM subscribers").await,
        5,
        "a dry run deletes nothing"
    );
    let out = app.run_cli(&["retention", "run", "--dry-run"]);
    let printed = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        printed.contains("would delete")
            && printed.contains("1 people who left")
            && printed.contains("would remove the IP address")
            && !printed.contains("@"),
        "{printed}"
    );

    let report = retention::run(&app.state.db, &cfg, now, Mode::Apply)
        .await
        .unwrap();
    assert_eq!((report.leavers_deleted, report.bounced_deleted), (1, 1));
    let mut left = Vec::new();
    for w in ["longgone", "recent", "stays", "bounced", "halfway"] {
        left.push(
            app.query_i64(&format!(
                "SELECT COUNT(*) FROM subscribers WHERE email_key = '{w}@example.org'"
            ))
            .await,
        );
    }
    assert_eq!(left, vec![0, 1, 1, 0, 1]);
    assert_eq!(
        app.query_i64(
            "SELECT COUNT(*) FROM consent_events WHERE subscriber_id NOT IN (SELECT id FROM subscribers)"
        )
        .await,
        0
    );
    assert_eq!(
        app.query_i64("SELECT COUNT(*) FROM suppressions WHERE reason = 'unsubscribed'")
            .await,
        1
    );
    // Aggregates stay and name no one.
    assert_eq!(app.campaign(&key, campaign).await["sent"], 5);
    assert_eq!(
        app.query_i64("SELECT COUNT(*) FROM campaign_recipients WHERE subscriber_id IS NULL")
            .await,
        2
    );
    // No import brings them back.
    let res = app
        .api(&key, Method::POST, "/api/v1/lists/news/subscribers/import")
        .body("email,consented_at,consent_source\nlonggone@example.org,2025-01-01,crm\nbounced@example.org,2025-01-01,crm\n")
        .send()
        .await
        .unwrap();
    assert_eq!(res.json::<serde_json::Value>().await.unwrap()["skipped"], 2);
    // Idempotent.
    let again = retention::run(&app.state.db, &cfg, now, Mode::Apply)
        .await
        .unwrap();
    assert_eq!((again.leavers_deleted, again.bounced_deleted), (0, 0));
    // /privacy states the period.
    let page = app.page("/privacy").await;
    assert!(page.contains("365 days"), "{page}");
}

/// Leaving by contacting us: an operator records the opt-out by address; it takes effect at
/// once, even mid-campaign; the answer never says whether the address was known.
#[tokio::test]
async fn an_operator_unsubscribe_takes_effect_mid_campaign() {
    let (app, key) = app(vec![
        ("DELIVERY_BATCH_SIZE", "1".into()),
        ("DELIVERY_CONCURRENCY", "1".into()),
    ])
    .await;
    for i in 0..6 {
        confirmed(&app, &format!("c{i}@example.org"), &["news"]).await;
    }
    let (before, mark) = (app.sink.messages().len(), app.sink.recipients_started().len());
    app.sink.delay_data(400);
    let campaign = app.send_to_news(&key, "News", "Hello {{ name }}").await;
    // The third message is in DATA, held there 400 ms: someone after it leaves.
    let everyone: Vec<String> = (0..6).map(|i| format!("c{i}@example.org")).collect();
    let leaver = app.sink.one_not_started(mark, 3, &everyone).await;
    let answers = futures::future::join_all([leaver.as_str(), "never-heard-of@example.org"].map(|email| {
        app.api(&key, Method::POST, "/api/v1/unsubscribes")
            .json(&serde_json::json!({"email": email}))
            .send()
    }))
    .await;
    let mut bodies = Vec::new();
    for a in answers {
        let a = a.unwrap();
        bodies.push((a.status(), a.text().await.unwrap()));
    }
    assert_eq!(
        bodies[0], bodies[1],
        "the answer does not tell whether the address was known"
    );
    assert_eq!(bodies[0].0, StatusCode::ACCEPTED);
    let done = app.wait_for_campaign(&key, campaign, "sent").await;
    assert!(
        !app.sink.messages()[before..]
            .iter()
            .any(|m| m.rcpt_to[0] == leaver)
    );
    assert_eq!(done["skipped"], 1);
    assert_eq!(app.subscription_status(&leaver, "news").await, "unsubscribed");
    assert_eq!(
        app.query_i64(
            "SELECT COUNT(*) FROM consent_events WHERE kind = 'unsubscribe' AND source = 'operator:api'"
        )
        .await,
        1
    );
    // The CLI does the same, for one list.
    confirmed(&app, "both@example.org", &["news", "offers"]).await;
    app.run_cli(&["unsubscribe", "both@example.org", "--list", "offers"]);
    assert_eq!(
        app.subscription_status("both@example.org", "offers").await,
        "unsubscribed"
    );
    assert_eq!(
        app.subscription_status("both@example.org", "news").await,
        "confirmed"
    );
}

/// A material policy change: its notice asks for agreement; marketing is held back (counted as
/// skipped, with the reason) for people whose consent predates it, until they agree on the
/// link's page; transactional notices continue; the ledger and the export show the agreement.
#[tokio::test]
async fn a_material_change_holds_back_marketing_until_agreement() {
    let (app, key) = app(vec![]).await;
    let x = confirmed(&app, "x@example.org", &["news"]).await;
    confirmed(&app, "y@example.org", &["news"]).await;
    let before = app.sink.messages().len();
    // In force a moment from now: after x's and y's consent.
    let effective = (time::OffsetDateTime::now_utc() + time::Duration::seconds(1))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let policy = serde_json::json!({"version": "2026-11-m", "effective_at": effective,
        "summary": "We will share your name with our sister company.", "url": "https://example.com/p/m", "material": true});
    let res = app.api_post(&key, "/api/v1/policies", &policy).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let notices = app.sink.wait_for(before + 2, WAIT).await;
    let to_x = notices[before..]
        .iter()
        .find(|m| m.rcpt_to[0] == "x@example.org")
        .unwrap();
    let agree = link_in(&text_of(to_x), "/agree/");
    tokio::time::sleep(Duration::from_millis(1100)).await;

    let c1 = app.send_to_news(&key, "Held", "Hello {{ name }}").await;
    let done = app.wait_for_campaign(&key, c1, "sent").await;
    assert_eq!(
        (done["sent"].as_i64(), done["skipped"].as_i64()),
        (Some(0), Some(2))
    );
    let reasons = done["skipped_reasons"].as_object().unwrap();
    assert!(
        reasons
            .keys()
            .all(|r| r.contains("material policy version 2026-11-m")),
        "{reasons:?}"
    );

    // GET shows a button and records nothing; POST records the agreement.
    assert_eq!(app.get(&agree).await.status(), StatusCode::OK);
    assert_eq!(
        app.query_i64("SELECT COUNT(*) FROM consent_events WHERE kind = 'agree'")
            .await,
        0
    );
    let res = app
        .http
        .post(app.url(&agree))
        .header("User-Agent", "Agreer/1")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        app.query_i64("SELECT COUNT(*) FROM consent_events WHERE kind = 'agree' AND policy_version = '2026-11-m' AND ip = '127.0.0.1' AND user_agent = 'Agreer/1'").await,
        1
    );

    let before = app.sink.messages().len();
    let c2 = app
        .send_to_news(&key, "After agreement", "Hello {{ name }}")
        .await;
    let done = app.wait_for_campaign(&key, c2, "sent").await;
    assert_eq!(
        (done["sent"].as_i64(), done["skipped"].as_i64()),
        (Some(1), Some(1))
    );
    let got: Vec<String> = app.sink.messages()[before..]
        .iter()
        .map(|m| m.rcpt_to[0].clone())
        .collect();
    assert_eq!(got, vec!["x@example.org".to_string()]);

    // A new signup under the material version is not held.
    confirmed(&app, "newcomer@example.org", &["news"]).await;
    let c3 = app.send_to_news(&key, "Third", "Hello {{ name }}").await;
    assert_eq!(app.wait_for_campaign(&key, c3, "sent").await["sent"], 2);

    // The export shows the agreement.
    let prefs = app.preferences_path(x);
    let before = app.sink.messages().len();
    app.post(&format!("{prefs}/export")).await;
    let msgs = app.sink.wait_for(before + 1, WAIT).await;
    let link = link_in(&text_of(&msgs[before]), "/export/");
    let data: serde_json::Value = app.post(&link).await.json().await.unwrap();
    assert!(
        data["consent_events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "agree" && e["policy_version"] == "2026-11-m")
    );
    // GD-1: campaign messages are part of "messages sent to them".
    let messages = data["messages"].as_array().unwrap();
    assert!(
        messages
            .iter()
            .any(|m| m["kind"] == "campaign" && m["subject"] == "After agreement" && m["status"] == "sent")
    );
    assert!(
        messages
            .iter()
            .any(|m| m["kind"] == "campaign" && m["subject"] == "Held" && m["status"] == "skipped")
    );
}
