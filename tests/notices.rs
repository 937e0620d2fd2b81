//! Policy versions and breach notices through the API, the CLI, the pages and the SMTP sink
//! (CS-1, CS-4, CS-12, CS-13, GD-3, OI-3).

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::flows::{confirmed, html_of, link_in, text_of};
use common::{Spawn, TestApp, WAIT, WEEKLY, dkim_check, header_values, spawn, spawn_with_lists};
use reqwest::StatusCode;

async fn app() -> TestApp {
    spawn_with_lists(&[WEEKLY]).await
}

/// People in every state a notice must respect. Returns the addresses that must get notices.
async fn population(app: &TestApp, key: &str) -> HashSet<String> {
    let weekly = app.list_id("weekly").await;
    confirmed(app, "confirmed@example.org", &["weekly"]).await;
    let left = confirmed(app, "left@example.org", &["weekly"]).await;
    app.one_click_unsubscribe(left, weekly).await;
    let all_gone = confirmed(app, "leftall@example.org", &["weekly"]).await;
    let prefs = app.preferences_path(all_gone);
    app.post(&format!("{prefs}/unsubscribe-all")).await;
    let erased = confirmed(app, "erased@example.org", &["weekly"]).await;
    let prefs = app.preferences_path(erased);
    assert_eq!(app.post(&format!("{prefs}/erase")).await.status(), StatusCode::OK);
    for (email, reason) in [
        ("bounced@example.org", "bounce"),
        ("complained@example.org", "complaint"),
    ] {
        confirmed(app, email, &["weekly"]).await;
        let res = app.suppress(key, email, reason).await;
        assert_eq!(res.status(), StatusCode::CREATED);
    }
    // Never confirmed.
    let signup = serde_json::json!({"email": "pending@example.org", "list": "weekly", "consent": true, "age_confirmed": true});
    app.post_json("/subscribe", &signup).await;
    app.wait_until(
        "SELECT COUNT(*) FROM outbox WHERE status IN ('queued', 'sending')",
        0,
        WAIT,
    )
    .await;
    ["confirmed@example.org", "left@example.org", "leftall@example.org"]
        .into_iter()
        .map(String::from)
        .collect()
}

fn policy(version: &str, summary: &str) -> serde_json::Value {
    serde_json::json!({
        "version": version,
        "effective_at": "2026-12-01T00:00:00Z",
        "already_in_effect": true,
        "summary": summary,
        "url": "https://example.com/privacy/v2"
    })
}

/// CS-12, CS-13: exactly the right people get one notice each (confirmed and people who left:
/// yes; pending, erased, bounced, complained: no); the notice is transactional and truthful.
#[tokio::test]
async fn cs12_a_policy_notice_reaches_exactly_the_right_people() {
    let app = app().await;
    let key = app.create_api_key().await;
    let expected = population(&app, &key).await;
    let before = app.sink.messages().len();

    let res = app
        .api_post(
            &key,
            "/api/v1/policies",
            &policy("2026-12", "We now keep logs for 30 days instead of 90."),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["notices_queued"], 3);
    app.wait_until(
        "SELECT COUNT(*) FROM outbox WHERE kind = 'policy_notice' AND status = 'sent'",
        3,
        WAIT,
    )
    .await;
    let notices = &app.sink.messages()[before..];
    let got: HashSet<String> = notices.iter().map(|m| m.rcpt_to[0].clone()).collect();
    assert_eq!(got, expected);
    assert_eq!(notices.len(), 3, "one each");

    for m in notices {
        let raw = m.text();
        let parsed = mail_parser::MessageParser::default().parse(&m.data).unwrap();
        assert_eq!(
            parsed.subject(),
            Some("Our privacy policy, effective 1 December 2026"),
            "the first version introduces the policy"
        );
        assert_eq!(m.mail_from, "notices@example.com");
        assert_eq!(
            header_values(&raw, "From"),
            vec!["\"Example Newsletter Ltd\" <notices@example.com>"]
        );
        assert!(
            header_values(&raw, "List-Unsubscribe-Post").is_empty(),
            "transactional: no one-click"
        );
        assert!(dkim_check::passes(&m.data).await);
        let (text, html) = (text_of(m), html_of(m));
        assert!(
            text.starts_with("We have published our privacy policy"),
            "the notice comes first:\n{text}"
        );
        for part in [&text, &html] {
            assert!(part.contains("We now keep logs for 30 days"));
            assert!(part.contains("https://example.com/privacy/v2"));
            assert!(part.contains("/preferences/"), "a link to the preference page");
            assert!(part.contains("1 Example Street") && part.contains("privacy@example.com"));
        }
    }
}

/// 201 then 200 with nothing new for the same content; 409 for other content; a second
/// instance publishing the same version at the same time queues nothing twice.
#[tokio::test]
async fn publishing_is_idempotent_and_conflicts_are_409() {
    let app = app().await;
    let key = app.create_api_key().await;
    confirmed(&app, "one@example.org", &["weekly"]).await;
    confirmed(&app, "two@example.org", &["weekly"]).await;
    let other = app.another_instance().await;

    let body = policy("v2", "Shorter retention.");
    let (a, b) = tokio::join!(
        app.api_post(&key, "/api/v1/policies", &body),
        other.api_post(&key, "/api/v1/policies", &body),
    );
    let mut codes = vec![a.status(), b.status()];
    codes.sort();
    assert_eq!(codes, vec![StatusCode::OK, StatusCode::CREATED]);
    let again = app.api_post(&key, "/api/v1/policies", &body).await;
    assert_eq!(again.status(), StatusCode::OK);
    let conflict = app
        .api_post(&key, "/api/v1/policies", &policy("v2", "Something else."))
        .await;
    assert_eq!(conflict.status(), StatusCode::CONFLICT);
    assert_eq!(conflict.headers()["content-type"], "application/problem+json");
    app.wait_until(
        "SELECT COUNT(*) FROM outbox WHERE kind = 'policy_notice' AND status = 'sent'",
        2,
        WAIT,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        app.query_i64("SELECT COUNT(*) FROM outbox WHERE kind = 'policy_notice'")
            .await,
        2
    );
    let bad_policy = serde_json::json!({"version": "bad version!", "effective_at": "tomorrow", "summary": "", "url": "ftp://x"});
    let bad = app.api_post(&key, "/api/v1/policies", &bad_policy).await;
    assert_eq!(bad.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let p: serde_json::Value = bad.json().await.unwrap();
    assert_eq!(p["errors"].as_array().unwrap().len(), 4);
    let list: serde_json::Value = app.api_get(&key, "/api/v1/policies").await.json().await.unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1);
    other.stop().await;
}

/// A restart while notices are being sent: each person still gets exactly one.
#[tokio::test]
async fn a_restart_mid_sending_does_not_double_notices() {
    // One message per batch, so that stopping lands between sends; more people than a
    // stopping worker finishes (what it has claimed: twice DeliveryConfig::in_flight).
    const PEOPLE: usize = 24;
    let app = spawn(Spawn {
        overrides: vec![
            ("DELIVERY_BATCH_SIZE", "1".into()),
            ("DELIVERY_CONCURRENCY", "1".into()),
        ],
        lists: vec![WEEKLY],
        ..Default::default()
    })
    .await;
    for i in 0..PEOPLE {
        confirmed(&app, &format!("p{i}@example.org"), &["weekly"]).await;
    }
    let before = app.sink.messages().len();
    app.sink.delay_data(100);
    let db = app.db.clone();
    let sink = app.sink.clone();
    // Publish through the CLI (a separate process), then stop the service mid-way.
    let publish = [
        "policy",
        "publish",
        "--version",
        "v3",
        "--effective-at",
        "2026-12-24T00:00:00Z",
        "--summary",
        "Clearer wording.",
        "--url",
        "https://example.com/privacy/v3",
    ];
    let out = app.run_cli(&publish);
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("{PEOPLE} notices queued")));
    app.delivery.wakeups.outbox.notify_one();
    while sink.messages().len() < before + 2 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    app.stop().await;
    let delivered_before_restart = sink.messages().len() - before;
    assert!(
        delivered_before_restart < PEOPLE,
        "stopped mid-way ({delivered_before_restart} sent)"
    );
    sink.delay_data(0);
    let restarted = spawn(Spawn::sharing(db, sink.clone())).await;
    restarted
        .wait_until(
            "SELECT COUNT(*) FROM outbox WHERE kind = 'policy_notice' AND status = 'sent'",
            PEOPLE as i64,
            WAIT,
        )
        .await;
    let notices: Vec<String> = sink.messages()[before..]
        .iter()
        .map(|m| m.rcpt_to[0].clone())
        .collect();
    let unique: HashSet<&String> = notices.iter().collect();
    assert_eq!((notices.len(), unique.len()), (PEOPLE, PEOPLE));
    // The CLI answers a repeat like the API.
    let out = restarted.run_cli(&publish);
    assert!(String::from_utf8_lossy(&out.stdout).contains("already published"));
}

/// /privacy: the version in force with its date, the coming one as "effective from", the
/// history; consent evidence records the version in force (OI-3).
#[tokio::test]
async fn the_privacy_page_shows_current_upcoming_and_earlier_versions() {
    let app = app().await;
    let key = app.create_api_key().await;
    let empty = app.page("/privacy").await;
    assert!(empty.contains("No policy version has been published yet"));
    for (v, at) in [
        ("v1", "2025-01-01T00:00:00Z"),
        ("v2", "2026-01-15T00:00:00Z"),
        ("v3", "2099-06-01T00:00:00Z"),
    ] {
        let policy = serde_json::json!({"version": v, "effective_at": at, "already_in_effect": true, "summary": format!("Summary of {v}"), "url": format!("https://example.com/{v}")});
        let res = app.api_post(&key, "/api/v1/policies", &policy).await;
        assert_eq!(res.status(), StatusCode::CREATED);
    }
    let page = app.page("/privacy").await;
    assert!(page.contains("Version v2, effective 15 January 2026"), "{page}");
    assert!(page.contains("Version v3, effective from 1 June 2099"));
    assert!(page.contains("Summary of v2") && page.contains("https://example.com/v2"));
    assert!(page.contains("Version v1, effective 1 January 2025"));
    assert!(
        page.contains("deleted after 7 days") && page.contains("30 days"),
        "retention periods"
    );

    confirmed(&app, "new@example.org", &["weekly"]).await;
    assert_eq!(
        app.query_i64("SELECT COUNT(*) FROM consent_events WHERE policy_version = 'v2' AND kind IN ('signup', 'confirm')").await,
        2
    );
}

/// Breach notices: emailed to the affected (same exclusions), posted on /notices until
/// withdrawn, counts in the answer, the subject exactly as written.
#[tokio::test]
async fn a_breach_notice_is_emailed_and_posted_until_withdrawn() {
    let app = app().await;
    let key = app.create_api_key().await;
    let expected = population(&app, &key).await;
    let before = app.sink.messages().len();
    let subject = "Important: a security incident — Ünïcödé ✓";
    let notice = serde_json::json!({"subject": subject, "body": "On 1 November an attacker read our subscriber list.\n\nWhat we did about it.", "affected": "all"});
    let res = app.api_post(&key, "/api/v1/notices/breach", &notice).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["notified"], 3);
    let id = body["id"].as_i64().unwrap();
    app.wait_until(
        "SELECT COUNT(*) FROM outbox WHERE kind = 'breach_notice' AND status = 'sent'",
        3,
        WAIT,
    )
    .await;
    let got: HashSet<String> = app.sink.messages()[before..]
        .iter()
        .map(|m| m.rcpt_to[0].clone())
        .collect();
    assert_eq!(got, expected);
    let m = &app.sink.messages()[before];
    let parsed = mail_parser::MessageParser::default().parse(&m.data).unwrap();
    assert_eq!(parsed.subject(), Some(subject));
    assert!(text_of(m).starts_with("On 1 November an attacker"));
    assert!(link_in(&text_of(m), "/preferences/").len() > 20);

    let page = app.page("/notices").await;
    assert!(page.contains("On 1 November an attacker read our subscriber list."));
    assert!(app.page("/privacy").await.contains("href=\"/notices\""));

    // Targeted notices: by address, and by signup date.
    let targeted = serde_json::json!({"subject": "Targeted", "body": "Only you.", "affected": ["Confirmed@example.org", "erased@example.org", "nobody@example.org"]});
    let by_address = app.api_post(&key, "/api/v1/notices/breach", &targeted).await;
    assert_eq!(
        by_address.json::<serde_json::Value>().await.unwrap()["notified"],
        1
    );
    let old_signups = serde_json::json!({"subject": "Range", "body": "Old signups.", "affected": {"from": "2000-01-01T00:00:00Z", "until": "2001-01-01T00:00:00Z"}});
    let by_range = app.api_post(&key, "/api/v1/notices/breach", &old_signups).await;
    assert_eq!(by_range.json::<serde_json::Value>().await.unwrap()["notified"], 0);
    let bad_notice = serde_json::json!({"subject": "x\r\nBcc: a@b.c", "body": "", "affected": "some"});
    let bad = app.api_post(&key, "/api/v1/notices/breach", &bad_notice).await;
    assert_eq!(bad.status(), StatusCode::UNPROCESSABLE_ENTITY);

    let res = app
        .api_post_empty(&key, &format!("/api/v1/notices/breach/{id}/withdraw"))
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let page = app.page("/notices").await;
    assert!(
        !page.contains("On 1 November"),
        "withdrawn notices leave the page"
    );
    assert!(page.contains("Only you."));
}

/// A new version whose effective date has passed is refused unless the request says it already
/// applies; a repeat of a published version is answered as before, whatever its date.
#[tokio::test]
async fn a_past_effective_date_needs_an_explicit_flag() {
    let app = app().await;
    let key = app.create_api_key().await;
    let mut body = serde_json::json!({"version": "2026-01", "effective_at": "2026-01-01T00:00:00Z",
        "summary": "First.", "url": "https://example.com/privacy"});
    let res = app.api_post(&key, "/api/v1/policies", &body).await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let p: serde_json::Value = res.json().await.unwrap();
    assert_eq!(p["errors"][0]["field"], "effective_at", "{p}");
    assert!(
        p["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("already_in_effect"),
        "{p}"
    );
    assert_eq!(app.query_i64("SELECT COUNT(*) FROM policy_versions").await, 0);

    let cli = |flag: Option<&str>| {
        let (mut cmd, file) = app.cli();
        cmd.args([
            "policy",
            "publish",
            "--version",
            "2026-02",
            "--effective-at",
            "2026-02-01T00:00:00Z",
            "--summary",
            "Second.",
            "--url",
            "https://example.com/privacy",
        ]);
        cmd.args(flag);
        let out = cmd.output().unwrap();
        drop(file);
        out
    };
    let refused = cli(None);
    assert!(!refused.status.success());
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(
        said.contains("--already-in-effect") && said.contains("in the past"),
        "{said}"
    );
    assert!(cli(Some("--already-in-effect")).status.success());

    body["already_in_effect"] = true.into();
    let res = app.api_post(&key, "/api/v1/policies", &body).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    body["already_in_effect"] = false.into();
    let repeat = app.api_post(&key, "/api/v1/policies", &body).await;
    assert_eq!(
        repeat.status(),
        StatusCode::OK,
        "a retry is not refused for its date"
    );
}
