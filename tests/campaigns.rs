//! Campaigns through the API and the SMTP sink: the right audience, personalized and stamped,
//! exact subjects and encodings, retries and suppressions, pause/resume/cancel, schedule, test
//! sends, and an unsubscribe in the middle of a running campaign (CS-1..3, CS-5, CS-7, CS-10,
//! CS-11, GY-6, LU-1..4, MF-3, MF-4, MF-8, GD-7).

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::flows::{html_of, text_of};
use common::{NEWS, OFFERS, Spawn, Stage, TestApp, WAIT, dkim_check, header_values, spawn};
use letterhead::domain::{DisplayName, EmailAddress};
use letterhead::services::subscribers::{AddOutcome, Consent, PersonToAdd};
use letterhead::store::{self, subscriptions};
use reqwest::StatusCode;
use sea_orm::{ConnectionTrait, Statement};

/// Undoes the escapes minijinja's HTML auto-escaping makes in an attribute value.
fn unescape_html(value: &str) -> String {
    value
        .replace("&#x2f;", "/")
        .replace("&#x27;", "'")
        .replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// An app with the lists news and offers, and an API key.
async fn app_with(overrides: Vec<(&'static str, String)>) -> (TestApp, String) {
    let app = spawn(Spawn {
        overrides,
        lists: vec![NEWS, OFFERS],
        ..Default::default()
    })
    .await;
    let key = app.create_api_key().await;
    (app, key)
}

/// How a seeded subscriber stands on their lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seeded {
    Confirmed,
    Pending,
    Left,
}
use Seeded::{Confirmed, Left, Pending};

/// A subscriber of these lists, put in place without any mail: confirmed as the API adds
/// someone with consent evidence; pending as a signup leaves them (its confirmation never
/// sent); or confirmed and then left. Returns their uuid.
async fn seed(app: &TestApp, email: &str, name: Option<&str>, lists: &[&str], how: Seeded) -> uuid::Uuid {
    let db = &app.state.db;
    let address = EmailAddress::parse(email).unwrap();
    let name = name.map(|n| DisplayName::parse(n).unwrap());
    let mut on = Vec::new();
    for slug in lists {
        on.push(store::lists::by_slug(db, slug).await.unwrap().unwrap());
    }
    if how == Pending {
        let hash = app.state.address_hasher.hash(&address);
        let s = subscriptions::upsert_subscriber(db, &address, &hash, name.as_ref())
            .await
            .unwrap();
        for list in &on {
            subscriptions::add_subscription(db, s.id, list.id, false, store::now_ms())
                .await
                .unwrap();
        }
    } else {
        let person = PersonToAdd {
            email: address.clone(),
            name,
            consent: Consent::Evidence {
                consented_at: store::now(),
                source: "seeded by the test".into(),
            },
        };
        let added = app.state.subscribers.add_one(&person, &on).await.unwrap();
        assert_eq!(added, AddOutcome::Added, "{email}");
    }
    let s = subscriptions::subscriber_by_email(db, &address)
        .await
        .unwrap()
        .unwrap();
    if how == Left {
        for list in &on {
            subscriptions::leave(db, s.id, list.id).await.unwrap();
        }
    }
    s.uuid
}

/// Drafts a campaign with `subject` to the news list, starts it and waits until it is sent:
/// its id and the campaign as the API then shows it.
async fn sent_to_news(app: &TestApp, key: &str, subject: &str) -> (i64, serde_json::Value) {
    let id = app.send_to_news(key, subject, "Hello").await;
    (id, app.wait_for_campaign(key, id, "sent").await)
}

const SUBJECT: &str = "Ünïcödé — 日本語 ✓";

/// The right audience (list A only; no pending, unsubscribed, suppressed or erased addresses),
/// once each, personalized, exact subject, unique Message-IDs, only the recipient named, list
/// headers and footer opt-out, DKIM-signed (DK-1: verified by mail-auth and, where installed,
/// dkimpy), progress counts.
#[tokio::test]
async fn a_campaign_reaches_exactly_its_audience_personalized_and_stamped() {
    let (app, key) = app_with(vec![]).await;
    seed(&app, "ann@example.org", Some("Ann"), &["news"], Confirmed).await;
    seed(
        &app,
        "zoe@example.org",
        Some("Zoë"),
        &["news", "offers"],
        Confirmed,
    )
    .await;
    seed(&app, "bob@example.org", Some("Bob"), &["offers"], Confirmed).await;
    seed(&app, "pending@example.org", None, &["news"], Pending).await;
    seed(&app, "left@example.org", None, &["news"], Left).await;
    seed(&app, "bounced@example.org", None, &["news"], Confirmed).await;
    let res = app.suppress(&key, "bounced@example.org", "bounce").await;
    assert_eq!(res.status(), StatusCode::CREATED);

    let campaign = serde_json::json!({
        "subject": SUBJECT,
        "lists": ["news"],
        "markdown": "# Hello {{ name }}\n\nThis week in **{{ list_name }}**.\n\n[Leave]({{ unsubscribe_url }})"
    });
    let res = app.create_campaign(&key, &campaign).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let created: serde_json::Value = res.json().await.unwrap();
    assert_eq!(created["status"], "draft");
    assert_eq!(created["subject"], SUBJECT, "CS-2");
    let id = created["id"].as_i64().unwrap();

    app.send_campaign(&key, id).await;
    let done = app.wait_for_campaign(&key, id, "sent").await;
    assert_eq!(
        (
            done["recipients"].as_i64(),
            done["sent"].as_i64(),
            done["failed"].as_i64()
        ),
        (Some(2), Some(2), Some(0))
    );

    let msgs = app.sink.messages();
    let got: HashSet<String> = msgs.iter().map(|m| m.rcpt_to[0].clone()).collect();
    assert_eq!(
        got,
        HashSet::from(["ann@example.org".to_string(), "zoe@example.org".to_string()])
    );
    assert_eq!(msgs.len(), 2, "once each");
    let ids: HashSet<String> = msgs
        .iter()
        .map(|m| header_values(&m.text(), "Message-ID")[0].clone())
        .collect();
    assert_eq!(ids.len(), 2, "MF-3");
    for m in &msgs {
        let raw = m.text();
        let parsed = mail_parser::MessageParser::default().parse(&m.data).unwrap();
        assert_eq!(parsed.subject(), Some(SUBJECT), "MF-8");
        assert_eq!(m.mail_from, "news@example.com", "marketing From (GY-7)");
        let me = &m.rcpt_to[0];
        for other in [
            "ann@example.org",
            "zoe@example.org",
            "bob@example.org",
            "pending@example.org",
        ] {
            if other != me {
                assert!(!raw.contains(other), "MF-4: {other} appears in {me}'s message");
            }
        }
        assert_eq!(header_values(&raw, "List-Unsubscribe").len(), 1, "LU-1");
        assert_eq!(
            header_values(&raw, "List-Unsubscribe-Post"),
            vec!["List-Unsubscribe=One-Click"]
        );
        assert_eq!(
            header_values(&raw, "List-Id"),
            vec!["<news.list-id.example.com>"],
            "LU-10"
        );
        assert!(dkim_check::passes(&m.data).await, "DK-1");
        let (text, html) = (text_of(m), html_of(m));
        let name = if me == "ann@example.org" { "Ann" } else { "Zoë" };
        assert!(html.contains(&format!("<h1>Hello {name}</h1>")), "{html}");
        // The text part is plain text: the heading underlined, the link numbered and listed.
        let heading = format!("Hello {name}\n====");
        assert!(
            text.replace("\r\n", "\n").contains(&heading) && !text.contains("# Hello"),
            "{text}"
        );
        assert!(
            text.contains("This week in Weekly News.") && text.contains("Leave [1]"),
            "{text}"
        );
        assert!(html.contains("This week in <strong>Weekly News</strong>"));
        for part in [&text, &html] {
            assert!(
                part.contains("/unsubscribe/") && part.contains("/preferences/"),
                "CS-5"
            );
            assert!(part.contains("1 Example Street"), "CS-4");
        }
        // The markdown's own link to `{{ unsubscribe_url }}` is this recipient's link, the
        // one the List-Unsubscribe header carries.
        let leave = html
            .split_once("\">Leave</a>")
            .and_then(|(before, _)| before.rsplit_once("href=\""))
            .map(|(_, href)| unescape_html(href))
            .expect("the Leave link");
        assert_eq!(
            format!("<{leave}>"),
            header_values(&raw, "List-Unsubscribe")[0],
            "{html}"
        );
        assert!(text.contains(&format!("[1] {leave}")), "{text}");
        // GD-7: no tracking pixels or per-recipient redirects were added.
        assert!(!html.contains("<img"));
        let parsed_to = parsed.to().unwrap().first().unwrap();
        assert_eq!(parsed_to.name(), Some(name));
    }
    // LU-1, LU-3: the header's URI works as a one-click endpoint.
    let m = msgs.iter().find(|m| m.rcpt_to[0] == "zoe@example.org").unwrap();
    let uri = header_values(&m.text(), "List-Unsubscribe")[0]
        .trim_matches(['<', '>'])
        .to_owned();
    let uri = uri.replace("http://127.0.0.1:3000", &app.base);
    let res = app
        .http
        .post(&uri)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body("List-Unsubscribe=One-Click")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        app.subscription_status("zoe@example.org", "news").await,
        "unsubscribed"
    );
    assert_eq!(
        app.subscription_status("zoe@example.org", "offers").await,
        "confirmed"
    );
}

/// CS-7: someone who unsubscribes while the campaign runs gets nothing more.
#[tokio::test]
async fn cs7_an_unsubscribe_mid_campaign_stops_the_next_message() {
    let (app, key) = app_with(vec![
        ("DELIVERY_BATCH_SIZE", "1".into()),
        ("DELIVERY_CONCURRENCY", "1".into()),
    ])
    .await;
    let mut people = Vec::new();
    for i in 0..10 {
        people.push(seed(&app, &format!("r{i}@example.org"), None, &["news"], Confirmed).await);
    }
    let news = app.list_id("news").await;
    app.sink.delay_data(300);
    let mark = app.sink.recipients_started().len();
    let id = app
        .draft_campaign(
            &key,
            &serde_json::json!({"subject": "Hi", "lists": ["news"], "markdown": "Hello"}),
        )
        .await;
    app.send_campaign(&key, id).await;
    // Someone whose message has not started leaves while the campaign is under way.
    let addresses: Vec<String> = (0..10).map(|i| format!("r{i}@example.org")).collect();
    let leaver = app.sink.one_not_started(mark, 3, &addresses).await;
    let who = addresses.iter().position(|a| *a == leaver).unwrap();
    let res = app.one_click_unsubscribe(people[who], news).await;
    assert_eq!(res.status(), StatusCode::OK);
    let done = app.wait_for_campaign(&key, id, "sent").await;
    assert!(
        !app.sink.messages().iter().any(|m| m.rcpt_to[0] == leaver),
        "nothing after the opt-out"
    );
    assert_eq!(
        (done["sent"].as_i64(), done["skipped"].as_i64()),
        (Some(9), Some(1))
    );
}

/// GY-6: a 451 is retried; a 550 at RCPT suppresses the address; the campaign goes on.
#[tokio::test]
async fn gy6_retries_and_suppressions_do_not_stop_the_campaign() {
    let (app, key) = app_with(vec![]).await;
    for who in ["ok1", "greylisted", "gone", "ok2"] {
        seed(&app, &format!("{who}@example.org"), None, &["news"], Confirmed).await;
    }
    app.sink.reply(Stage::Rcpt, "greylisted@", 451, Some(1));
    app.sink.reply(Stage::Rcpt, "gone@", 550, None);
    let (id, done) = sent_to_news(&app, &key, "Hi").await;
    assert_eq!(
        (done["sent"].as_i64(), done["failed"].as_i64()),
        (Some(3), Some(1))
    );
    let got: HashSet<String> = app.sink.messages().iter().map(|m| m.rcpt_to[0].clone()).collect();
    assert_eq!(got.len(), 3);
    assert!(got.contains("greylisted@example.org"));
    assert_eq!(
        app.query_i64("SELECT COUNT(*) FROM suppressions WHERE reason = 'hard_bounce'")
            .await,
        1
    );
    // Progress from the command line too.
    let out = app.run_cli(&["campaign", "status", &id.to_string()]);
    let printed = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        printed.contains("sent 3") && printed.contains("failed 1"),
        "{printed}"
    );
    // CS-11: the suppressed address is left out of the next campaign.
    let (_, done) = sent_to_news(&app, &key, "Again").await;
    assert_eq!(done["recipients"].as_i64(), Some(3));
}

/// Pause holds delivery, resume finishes it; cancel stops what is left. The worker claims the
/// whole audience in one batch, so the rows it already holds must heed the pause and the
/// cancel too (checked right before each send).
#[tokio::test]
async fn pause_holds_delivery_resume_finishes_it_and_cancel_stops_the_rest() {
    let (app, key) = app_with(vec![
        ("DELIVERY_BATCH_SIZE", "64".into()),
        ("DELIVERY_CONCURRENCY", "1".into()),
    ])
    .await;
    for i in 0..8 {
        seed(&app, &format!("p{i}@example.org"), None, &["news"], Confirmed).await;
    }
    app.sink.delay_data(100);
    let id = app
        .draft_campaign(
            &key,
            &serde_json::json!({"subject": "Hi", "lists": ["news"], "markdown": "Hello"}),
        )
        .await;
    app.send_campaign(&key, id).await;
    app.sink.wait_for(2, WAIT).await;
    let res = app
        .api_post_empty(&key, &format!("/api/v1/campaigns/{id}/pause"))
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(400)).await;
    let during = app.sink.messages().len();
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(app.sink.messages().len(), during, "nothing is sent while paused");
    assert!(during < 8, "the pause held back claimed rows: {during} sent");
    let paused = app.campaign(&key, id).await;
    assert_eq!(paused["status"], "paused");
    assert_eq!(paused["sent"].as_i64(), Some(during as i64), "{paused}");
    // What was held back is queued again, its attempt not spent.
    let requeued = app
        .query_i64(&format!(
            "SELECT COUNT(*) FROM campaign_recipients WHERE campaign_id = {id} \
             AND status = 'queued' AND attempts = 0"
        ))
        .await;
    assert_eq!(requeued, 8 - during as i64);
    assert_eq!(
        app.api_post_empty(&key, &format!("/api/v1/campaigns/{id}/pause"))
            .await
            .status(),
        StatusCode::CONFLICT
    );
    assert_eq!(
        app.api_post_empty(&key, &format!("/api/v1/campaigns/{id}/resume"))
            .await
            .status(),
        StatusCode::OK
    );
    let done = app.wait_for_campaign(&key, id, "sent").await;
    assert_eq!(done["sent"].as_i64(), Some(8));

    let id2 = app
        .draft_campaign(
            &key,
            &serde_json::json!({"subject": "Second", "lists": ["news"], "markdown": "Hello"}),
        )
        .await;
    let before = app.sink.messages().len();
    app.send_campaign(&key, id2).await;
    app.sink.wait_for(before + 1, WAIT).await;
    assert_eq!(
        app.api_post_empty(&key, &format!("/api/v1/campaigns/{id2}/cancel"))
            .await
            .status(),
        StatusCode::OK
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let c = app.campaign(&key, id2).await;
    assert_eq!(c["status"], "cancelled");
    assert!(c["cancelled"].as_i64().unwrap() >= 5, "{c}");
    let sent_after = app.sink.messages().len() - before;
    assert!(sent_after <= 3, "at most what was in flight: {sent_after}");
    assert_eq!(
        app.api_post_empty(&key, &format!("/api/v1/campaigns/{id2}/resume"))
            .await
            .status(),
        StatusCode::CONFLICT
    );
}

/// A scheduled campaign starts by itself when its time comes.
#[tokio::test]
async fn a_scheduled_campaign_starts_on_time() {
    let (app, key) = app_with(vec![]).await;
    seed(&app, "early@example.org", None, &["news"], Confirmed).await;
    let at = (time::OffsetDateTime::now_utc() + time::Duration::seconds(2))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let id = app
        .draft_campaign(
            &key,
            &serde_json::json!({"subject": "Later", "lists": ["news"], "markdown": "Hello"}),
        )
        .await;
    let res = app
        .api_post(
            &key,
            &format!("/api/v1/campaigns/{id}/schedule"),
            &serde_json::json!({"send_at": at}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    assert_eq!(app.campaign(&key, id).await["status"], "scheduled");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(app.sink.messages().is_empty(), "not before its time");
    app.wait_for_campaign(&key, id, "sent").await;
    assert_eq!(app.sink.messages().len(), 1);
}

/// CS-1, CS-2 and input checks: other domains, unknown lists, broken templates are 422; the
/// subject is kept exactly; drafts can be changed and deleted, started campaigns cannot.
#[tokio::test]
async fn drafts_are_checked_when_written() {
    let (app, key) = app_with(vec![]).await;
    for (body, field) in [
        (
            serde_json::json!({"subject": "Hi", "lists": ["news"], "markdown": "x", "from": "me@gmail.com"}),
            "from",
        ),
        (
            serde_json::json!({"subject": "Hi", "lists": ["news"], "markdown": "x", "from": "editor@evil.example"}),
            "from",
        ),
        (
            serde_json::json!({"subject": "Hi", "lists": ["nope"], "markdown": "x"}),
            "lists",
        ),
        (
            serde_json::json!({"subject": "Hi", "lists": ["news"], "markdown": "{{ email }}"}),
            "markdown",
        ),
        (
            serde_json::json!({"subject": "Hi\r\nBcc: all@example.org", "lists": ["news"], "markdown": "x"}),
            "subject",
        ),
        (
            serde_json::json!({"subject": "Hi", "lists": ["news"]}),
            "markdown",
        ),
    ] {
        let res = app.create_campaign(&key, &body).await;
        assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(res.headers()["content-type"], "application/problem+json");
        let p: serde_json::Value = res.json().await.unwrap();
        assert!(
            p["errors"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["field"] == field),
            "{field}: {p}"
        );
    }
    // A template error points at the line and column of the person's own text, in its field.
    for (body, field, at) in [
        (
            serde_json::json!({"subject": "Hi", "lists": ["news"], "markdown": "# Hi\n\nDear {{ nmae }},"}),
            "markdown",
            "line 3, column 9: `nmae` is not a field",
        ),
        (
            serde_json::json!({"subject": "Hi", "lists": ["news"], "html": "<p>{{ name }}</p>", "text": "Hi\n{% if %}"}),
            "text",
            "line 2",
        ),
    ] {
        let p: serde_json::Value = app.create_campaign(&key, &body).await.json().await.unwrap();
        let error = &p["errors"][0];
        assert_eq!(error["field"], field, "{p}");
        let message = error["message"].as_str().unwrap();
        assert!(message.contains(at), "{message}");
        assert!(
            !message.contains("body.") && !message.contains("part."),
            "{message}"
        );
    }
    let subject = "  [Spaces kept]  Exactly — as written ";
    let campaign = serde_json::json!({"subject": subject, "lists": ["news"], "html": "<p>Hi {{ name }}</p>", "text": "Hi {{ name }}", "from": "editor@example.com"});
    let res = app.create_campaign(&key, &campaign).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let c: serde_json::Value = res.json().await.unwrap();
    assert_eq!(c["subject"], subject);
    let id = c["id"].as_i64().unwrap();
    let preview: serde_json::Value = app
        .api_post_empty(&key, &format!("/api/v1/campaigns/{id}/preview"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(preview["html"], "<p>Hi Sample Reader</p>");
    let res = app
        .api_patch(
            &key,
            &format!("/api/v1/campaigns/{id}"),
            &serde_json::json!({"subject": "Changed", "lists": ["offers"], "markdown": "New"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        res.json::<serde_json::Value>().await.unwrap()["lists"],
        serde_json::json!(["offers"])
    );
    app.send_campaign(&key, id).await;
    let res = app.api_delete(&key, &format!("/api/v1/campaigns/{id}")).await;
    assert_eq!(res.status(), StatusCode::CONFLICT);
    let res = app.api_get(&key, "/api/v1/campaigns/999999").await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
}

/// Test sends go only to team test recipients, with the exact subject and the list headers.
#[tokio::test]
async fn test_sends_go_only_to_team_test_recipients() {
    let (app, key) = app_with(vec![]).await;
    let id = app
        .draft_campaign(
            &key,
            &serde_json::json!({"subject": SUBJECT, "lists": ["news"], "markdown": "Hello {{ name }}"}),
        )
        .await;
    let test_send = async |to: &str| {
        let path = format!("/api/v1/campaigns/{id}/test");
        app.api_post(&key, &path, &serde_json::json!({"to": [to]}))
            .await
            .status()
    };
    assert_eq!(
        test_send("stranger@example.org").await,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    let res = app
        .api_post(
            &key,
            "/api/v1/test-recipients",
            &serde_json::json!({"email": "Team@example.org"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    assert_eq!(test_send("team@example.org").await, StatusCode::ACCEPTED);
    let msgs = app.sink.wait_for(1, WAIT).await;
    let parsed = mail_parser::MessageParser::default()
        .parse(&msgs[0].data)
        .unwrap();
    assert_eq!(parsed.subject(), Some(SUBJECT));
    assert!(text_of(&msgs[0]).contains("Hello Sample Reader"));
    assert_eq!(header_values(&msgs[0].text(), "List-Unsubscribe-Post").len(), 1);
    assert_eq!(
        app.campaign(&key, id).await["status"],
        "draft",
        "a test send starts nothing"
    );
}

/// Two instances on one database share a campaign (each leases blocks of it at the same time)
/// and never send a recipient twice.
#[tokio::test]
async fn two_instances_share_a_campaign_without_duplicates() {
    use letterhead::store::campaigns::BLOCK_ROWS;
    let (first, key) = app_with(vec![]).await;
    let second = spawn(Spawn::sharing(first.db.clone(), first.sink.clone())).await;
    // Three blocks and a part.
    let n = 3 * BLOCK_ROWS + 40;
    common::bulk::seed_confirmed(&first.state.db, "news", n).await;
    first.sink.delay_data(5);
    let id = first
        .draft_campaign(
            &key,
            &serde_json::json!({"subject": "Shared", "lists": ["news"], "markdown": "Hello"}),
        )
        .await;
    first.send_campaign(&key, id).await;
    second.delivery.wakeups.campaigns.notify_one();
    let owners = "SELECT COUNT(DISTINCT lease_owner) FROM campaign_blocks WHERE lease_owner IS NOT NULL";
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut most_owners = 0;
    while first.campaign(&key, id).await["status"] != "sent" {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the campaign never finished"
        );
        most_owners = most_owners.max(first.query_i64(owners).await);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(most_owners, 2, "both instances held blocks at once");
    let done = first.campaign(&key, id).await;
    assert_eq!(done["sent"].as_i64(), Some(n));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let msgs = first.sink.messages();
    let unique: HashSet<String> = msgs.iter().map(|m| m.rcpt_to[0].clone()).collect();
    assert_eq!((msgs.len(), unique.len()), (n as usize, n as usize));
    second.stop().await;
}

/// A preview the database cannot serve is the server's failure (500), not a problem with the
/// campaign (400), so a client does not go looking for a fault in its template.
#[tokio::test]
async fn a_preview_the_database_fails_is_a_server_error() {
    let (app, key) = app_with(vec![]).await;
    let id = app
        .draft_campaign(
            &key,
            &serde_json::json!({"subject": "Hi", "lists": ["news"], "markdown": "Hello"}),
        )
        .await;
    // The campaign's lists can no longer be read; the campaign itself and the API key can.
    app.drop_table("campaign_lists").await;
    let res = app
        .api_post_empty(&key, &format!("/api/v1/campaigns/{id}/preview"))
        .await;
    assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
}

/// Each worker claims its next block in the order of the claim index, on either database, so
/// a claim stops after its blocks instead of sorting every due one, and reads a block's rows by
/// the primary key, not every row of its campaign. Regressions: PostgreSQL was given SQLite's
/// `+campaign_id` (which keeps SQLite off another index), misjudged the join from it, and read
/// and sorted every due row for each claim; SQLite reads a campaign's rows through the
/// (campaign, subscriber) index unless told not to.
#[tokio::test]
async fn a_claim_reads_the_claim_index_and_the_primary_key_on_either_database() {
    use letterhead::services::campaigns::CampaignInput;
    use letterhead::store::campaigns::{BLOCK_ROWS, BLOCK_ROWS_SQL, claim_sql};

    let db = common::TestDb::new().await;
    let settings = common::base_settings(&db.url, 9); // nothing is sent: no server runs
    let app = letterhead::app::Application::build(common::config_from(&settings))
        .await
        .unwrap();
    let state = app.state();
    let slug = letterhead::domain::ListSlug::parse("news").unwrap();
    letterhead::store::lists::create(&state.db, &slug, "News", None, true)
        .await
        .unwrap();
    common::bulk::seed_confirmed(&state.db, "news", 10_000).await;
    let input = CampaignInput {
        subject: Some("Bulk".into()),
        lists: Some(vec!["news".into()]),
        markdown: Some("Hello {{ name }}".into()),
        ..Default::default()
    };
    let valid = state.campaigns.validate(input).await.unwrap();
    let campaign = state.campaigns.create(valid).await.unwrap();
    // The start snapshots the audience (and, on PostgreSQL, refreshes the statistics).
    assert_eq!(state.campaigns.start(campaign.id).await.unwrap(), Some(10_000));
    // Blocks of at most BLOCK_ROWS that cover every recipient once.
    let blocks = |sql: &str| {
        let (db, sql) = (state.db.clone(), sql.to_owned());
        async move {
            db.query_one_raw(Statement::from_string(db.get_database_backend(), sql))
                .await
                .unwrap()
                .unwrap()
                .try_get_by_index::<i64>(0)
                .unwrap()
        }
    };
    let covered = "SELECT COUNT(*) FROM campaign_recipients r WHERE (SELECT COUNT(*) FROM campaign_blocks b \
                   WHERE r.id BETWEEN b.first_id AND b.last_id AND b.campaign_id = r.campaign_id) = 1";
    assert_eq!(
        blocks(covered).await,
        10_000,
        "every recipient in exactly one block"
    );
    let widest = "SELECT MAX(last_id - first_id + 1) FROM campaign_blocks";
    assert!(blocks(widest).await <= BLOCK_ROWS);
    assert!(blocks("SELECT COUNT(*) FROM campaign_blocks").await >= 10_000 / BLOCK_ROWS);

    let postgres = db.is_postgres();
    let plan = |sql: String, values: Vec<sea_orm::Value>| {
        let db = state.db.clone();
        async move {
            let explain = if postgres { "EXPLAIN" } else { "EXPLAIN QUERY PLAN" };
            let plan: Vec<String> = db
                .query_all_raw(Statement::from_sql_and_values(
                    db.get_database_backend(),
                    format!("{explain} {sql}"),
                    values,
                ))
                .await
                .unwrap()
                .iter()
                .map(|row| {
                    // PostgreSQL: one column of text; SQLite: (id, parent, notused, detail).
                    let column = if postgres { 0 } else { 3 };
                    row.try_get_by_index::<String>(column).unwrap()
                })
                .collect();
            plan.join("\n")
        }
    };
    let claim = plan(
        claim_sql(postgres),
        vec!["w".into(), i64::MAX.into(), i64::MAX.into(), 1i64.into()],
    )
    .await;
    assert!(
        claim.contains("campaign_blocks_claimable"),
        "the claim reads the claim index:\n{claim}"
    );
    // The index gives the claim order: no sort of the due blocks (PostgreSQL's `Sort`,
    // SQLite's temporary B-tree).
    assert!(
        !claim.contains("Sort Key: ") && !claim.contains("TEMP B-TREE"),
        "the claim sorts nothing:\n{claim}"
    );
    let rows = plan(
        BLOCK_ROWS_SQL.into(),
        vec![
            1i64.into(),
            1i64.into(),
            256i64.into(),
            campaign.id.into(),
            i64::MAX.into(),
        ],
    )
    .await;
    assert!(
        rows.contains("campaign_recipients_pkey") || rows.contains("INTEGER PRIMARY KEY"),
        "a block's rows are read by the primary key:\n{rows}"
    );
    assert!(
        !rows.contains("campaign_recipients_once"),
        "not through the campaign's every row:\n{rows}"
    );
}

/// A campaign that reaches no one says so and why, instead of a plain `sent`; once it has an
/// audience, the reason is gone.
#[tokio::test]
async fn a_campaign_that_reaches_no_one_says_why() {
    let (app, key) = app_with(vec![]).await;
    let body = serde_json::json!({"subject": "Hi", "lists": ["news"], "markdown": "Hi"});
    let draft = app.campaign(&key, app.draft_campaign(&key, &body).await).await;
    assert!(draft["no_recipients_reason"].is_null(), "{draft}");

    let empty = app.draft_campaign(&key, &body).await;
    app.send_campaign(&key, empty).await;
    let c = app.wait_for_campaign(&key, empty, "sent").await;
    assert_eq!(c["recipients"], 0);
    let reason = c["no_recipients_reason"].as_str().unwrap_or_default();
    assert!(reason.contains("No one had subscribed to Weekly News"), "{c}");

    seed(&app, "pending@example.org", None, &["news"], Pending).await;
    let unconfirmed = app.draft_campaign(&key, &body).await;
    app.send_campaign(&key, unconfirmed).await;
    let c = app.wait_for_campaign(&key, unconfirmed, "sent").await;
    let reason = c["no_recipients_reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("had confirmed their subscription") && reason.contains("(1 signed up"),
        "{c}"
    );
    let out = app.run_cli(&["campaign", "status", &unconfirmed.to_string()]);
    let out = String::from_utf8(out.stdout).unwrap();
    assert!(out.contains("had confirmed their subscription"), "{out}");

    seed(&app, "ann@example.org", None, &["news"], Confirmed).await;
    let reaching = app.draft_campaign(&key, &body).await;
    app.send_campaign(&key, reaching).await;
    let c = app.wait_for_campaign(&key, reaching, "sent").await;
    assert_eq!(c["recipients"], 1);
    assert!(c["no_recipients_reason"].is_null(), "{c}");
}

/// `letterhead campaign status ID --follow` shows progress until the campaign ends: a line
/// per change when its output is not a terminal, the last one complete. The campaign is paused
/// while the command starts, so the test sees it move whatever the machine's speed.
#[tokio::test]
async fn campaign_status_follow_shows_progress_until_the_end() {
    use std::io::{BufRead, BufReader};
    let (app, key) = app_with(vec![("SMTP_RATE_PER_SECOND", "2".into())]).await;
    for i in 0..10 {
        seed(
            &app,
            &format!("reader{i}@example.org"),
            None,
            &["news"],
            Confirmed,
        )
        .await;
    }
    let id = app
        .draft_campaign(
            &key,
            &serde_json::json!({"subject": "Hi", "lists": ["news"], "markdown": "Hi"}),
        )
        .await;
    app.send_campaign(&key, id).await;
    let paused = app
        .api_post_empty(&key, &format!("/api/v1/campaigns/{id}/pause"))
        .await;
    assert_eq!(paused.status(), StatusCode::OK);
    let (mut cmd, settings) = app.cli();
    let mut child = cmd
        .args(["campaign", "status", &id.to_string(), "--follow"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (lines_tx, mut lines_rx) = tokio::sync::mpsc::unbounded_channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let _ = lines_tx.send(line.unwrap());
        }
    });
    let mut lines = Vec::new();
    while let Some(line) = lines_rx.recv().await {
        let resume = line.starts_with("paused");
        lines.push(line);
        if resume {
            let res = app
                .api_post_empty(&key, &format!("/api/v1/campaigns/{id}/resume"))
                .await;
            assert_eq!(res.status(), StatusCode::OK);
        }
    }
    assert!(child.wait().unwrap().success());
    drop(settings);
    let out = lines.join("\n");
    assert_eq!(lines[0], format!("campaign {id}: \"Hi\""), "{out}");
    assert!(
        lines[1].starts_with("paused    [") && lines[1].ends_with("of 10"),
        "{out}"
    );
    assert!(lines.iter().any(|l| l.starts_with("sending")), "{out}");
    assert!(
        lines.iter().any(|l| l.contains("/s") && l.contains(" left")),
        "a rate and the time left: {out}"
    );
    let last = lines.last().unwrap();
    assert!(last.starts_with("sent"), "{out}");
    assert!(
        last.contains("[####################] 100%") && last.contains("sent 10  failed 0  skipped 0  of 10"),
        "{out}"
    );
    assert_eq!(app.sink.messages().len(), 10);
}

/// A campaign template cannot freeze or exhaust the service: the attacks that did (nested
/// `range` loops, huge repeated strings) are refused with a 422 naming the limit, while the
/// service keeps answering; and a template that passes with the sample fields is bounded again
/// for each recipient.
#[tokio::test]
async fn a_campaign_template_cannot_freeze_or_exhaust_the_service() {
    let (app, key) = app_with(vec![]).await;
    let attack =
        |markdown: &str| serde_json::json!({"subject": "Hi", "lists": ["news"], "markdown": markdown});
    let ten = "[1,2,3,4,5,6,7,8,9,10]";
    let deep = format!(
        "{{% for a in {ten} %}}{{% for b in {ten} %}}{{% for c in {ten} %}}{{% for d in {ten} %}}\
         {{% for e in {ten} %}}.{{% endfor %}}{{% endfor %}}{{% endfor %}}{{% endfor %}}{{% endfor %}}"
    );
    for (markdown, limit) in [
        (
            "{% for a in range(100000) %}{% for b in range(1300) %}{% endfor %}{% endfor %}",
            "range is unknown",
        ),
        (deep.as_str(), "too much work"),
        (
            "{% for a in [1,2,3,4,5,6,7,8,9,10] %}{{ 'x' * 100000000 }}{% endfor %}",
            "operator `*`",
        ),
    ] {
        let body = attack(markdown);
        let (a, b, health) = tokio::join!(
            app.create_campaign(&key, &body),
            app.create_campaign(&key, &body),
            app.get("/healthz"),
        );
        assert_eq!(health.status(), StatusCode::OK);
        for res in [a, b] {
            assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY, "{markdown}");
            let p: serde_json::Value = res.json().await.unwrap();
            let message = p["errors"][0]["message"].as_str().unwrap_or_default();
            assert!(message.contains(limit), "{markdown}: {p}");
        }
    }

    // Within the budget for the sample name, over it for a recipient with a long one.
    let cube =
        "{% for a in name %}{% for b in name %}{% for c in name %}.{% endfor %}{% endfor %}{% endfor %}";
    seed(&app, "short@example.org", Some("Al"), &["news"], Confirmed).await;
    seed(
        &app,
        "long@example.org",
        Some(&"Bartholomew ".repeat(8)),
        &["news"],
        Confirmed,
    )
    .await;
    let id = app.draft_campaign(&key, &attack(cube)).await;
    app.send_campaign(&key, id).await;
    let done = app.wait_for_campaign(&key, id, "sent").await;
    assert_eq!(
        (done["sent"].as_i64(), done["failed"].as_i64()),
        (Some(1), Some(1)),
        "{done}"
    );
    let failed = app
        .query_i64("SELECT COUNT(*) FROM campaign_recipients WHERE status = 'failed' AND last_error LIKE '%too much work%'")
        .await;
    assert_eq!(failed, 1);
}

/// Someone on two of a campaign's lists who leaves the one they were queued under still gets
/// the campaign, through the list they are still on (its name and its unsubscribe link); who
/// left both gets nothing.
#[tokio::test]
async fn leaving_one_of_a_campaigns_lists_keeps_the_person_on_the_other() {
    // Workers that only wake when told, so the audience is snapshotted before anyone is sent.
    let (app, key) = app_with(vec![("DELIVERY_POLL_MS", "600000".into())]).await;
    seed(&app, "both@example.org", None, &["news", "offers"], Confirmed).await;
    seed(&app, "gone@example.org", None, &["news", "offers"], Confirmed).await;
    let body = serde_json::json!({"subject": "Hi", "lists": ["news", "offers"],
        "markdown": "Hi from {{ list_name }}"});
    let id = app.draft_campaign(&key, &body).await;
    // Started as `send` starts it, minus the wake-up; paused, so resuming wakes the workers.
    store::campaigns::start(&app.state.db, id).await.unwrap();
    let paused = app
        .api_post_empty(&key, &format!("/api/v1/campaigns/{id}/pause"))
        .await;
    assert_eq!(paused.status(), StatusCode::OK);
    let under_news = app
        .query_i64(&format!(
            "SELECT COUNT(*) FROM campaign_recipients WHERE campaign_id = {id} \
             AND list_id = (SELECT id FROM lists WHERE slug = 'news')"
        ))
        .await;
    assert_eq!(under_news, 2, "both were queued under news");
    for (email, lists) in [
        ("both@example.org", serde_json::json!(["news"])),
        ("gone@example.org", serde_json::json!(["news", "offers"])),
    ] {
        let res = app
            .api_post(
                &key,
                "/api/v1/unsubscribes",
                &serde_json::json!({"email": email, "lists": lists}),
            )
            .await;
        assert!(res.status().is_success(), "{email}");
    }
    let resumed = app
        .api_post_empty(&key, &format!("/api/v1/campaigns/{id}/resume"))
        .await;
    assert_eq!(resumed.status(), StatusCode::OK);
    let done = app.wait_for_campaign(&key, id, "sent").await;
    assert_eq!(
        (done["sent"].as_i64(), done["skipped"].as_i64()),
        (Some(1), Some(1)),
        "{done}"
    );
    let msgs = app.sink.messages();
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0].rcpt_to, vec!["both@example.org".to_owned()]);
    let raw = msgs[0].text();
    assert_eq!(
        header_values(&raw, "List-Id"),
        vec!["<offers.list-id.example.com>"]
    );
    assert!(text_of(&msgs[0]).contains("Hi from Special Offers"));
}

/// GD-3: erasing someone a campaign was sent to unlinks their recipient row (no key checks it
/// any more: a trigger does what `ON DELETE SET NULL` did), and the campaign's counts stay.
#[tokio::test]
async fn gd3_erasing_a_recipient_unlinks_their_row_and_keeps_the_counts() {
    let (app, key) = app_with(vec![]).await;
    let gone = seed(&app, "gone@example.org", None, &["news"], Confirmed).await;
    seed(&app, "stays@example.org", None, &["news"], Confirmed).await;
    let (id, _) = sent_to_news(&app, &key, "Hi").await;

    let res = app.api_delete(&key, &format!("/api/v1/subscribers/{gone}")).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert_eq!(app.campaign(&key, id).await["sent"], 2);
    assert_eq!(
        app.query_i64(
            "SELECT COUNT(*) FROM campaign_recipients WHERE subscriber_id IS NULL AND message_id IS NULL"
        )
        .await,
        1
    );
    assert_eq!(
        app.query_i64(
            "SELECT COUNT(*) FROM campaign_recipients WHERE subscriber_id IS NOT NULL \
             AND subscriber_id NOT IN (SELECT id FROM subscribers)"
        )
        .await,
        0,
        "no row names someone who is gone"
    );
}

/// How many migrations `Migrator::down` undoes to undo the one numbered `number` and every
/// later one.
fn steps_down_through(number: &str) -> u32 {
    use migration::{Migrator, MigratorTrait};
    let names: Vec<String> = Migrator::migrations()
        .iter()
        .map(|m| m.name().to_owned())
        .collect();
    let at = names
        .iter()
        .position(|n| n.contains(&format!("_{number}_")))
        .expect("a migration with that number");
    (names.len() - at) as u32
}

/// Migration 000010 (the audience without foreign keys) undoes and redoes itself with every
/// recipient row and id kept: on SQLite it rebuilds the table both ways.
#[tokio::test]
async fn the_audience_keeps_its_rows_through_migration_000010_down_and_up() {
    use migration::{Migrator, MigratorTrait};
    let (app, key) = app_with(vec![]).await;
    for who in ["a", "b", "c"] {
        seed(&app, &format!("{who}@example.org"), None, &["news"], Confirmed).await;
    }
    sent_to_news(&app, &key, "Hi").await;
    let rows = "SELECT COUNT(*) FROM campaign_recipients WHERE status = 'sent' AND message_id IS NOT NULL";
    let ids = "SELECT CAST(SUM(id) AS BIGINT) FROM campaign_recipients";
    let id_sum = app.query_i64(ids).await;

    Migrator::down(&app.state.db, Some(steps_down_through("000010")))
        .await
        .unwrap();
    assert_eq!(app.query_i64(rows).await, 3);
    assert_eq!(app.query_i64(ids).await, id_sum);
    Migrator::up(&app.state.db, None).await.unwrap();
    assert_eq!(app.query_i64(rows).await, 3);
    assert_eq!(app.query_i64(ids).await, id_sum);
    // The trigger is back: an erasure unlinks the person's row.
    app.state
        .db
        .execute_unprepared("DELETE FROM subscribers WHERE email_key = 'a@example.org'")
        .await
        .unwrap();
    assert_eq!(
        app.query_i64("SELECT COUNT(*) FROM campaign_recipients WHERE subscriber_id IS NULL")
            .await,
        1
    );
}

/// Migration 000011 takes over a campaign in flight: rows a worker of the earlier version held
/// (`sending`, its lease lapsed) are queued again, and they and the queued ones get blocks,
/// which the workers then send; what was sent stays sent. Down and up, every row and id stays.
#[tokio::test]
async fn a_campaign_in_flight_goes_on_through_migration_000011() {
    use migration::{Migrator, MigratorTrait};
    let (app, key) = app_with(vec![]).await;
    for who in ["a", "b", "c"] {
        seed(&app, &format!("{who}@example.org"), None, &["news"], Confirmed).await;
    }
    let (id, _) = sent_to_news(&app, &key, "Hi").await;
    let ids = "SELECT CAST(SUM(id) AS BIGINT) FROM campaign_recipients";
    let id_sum = app.query_i64(ids).await;
    assert_eq!(app.sink.messages().len(), 3);

    Migrator::down(&app.state.db, Some(steps_down_through("000011")))
        .await
        .unwrap();
    assert_eq!(app.query_i64(ids).await, id_sum);
    // As 000010 left a campaign mid-way: a held by a worker that is gone, b queued, c sent.
    for sql in [
        "UPDATE campaign_recipients SET status = 'sending', lease_owner = 'campaigns-gone', \
         next_attempt_at_ms = 0, message_id = NULL, attempts = 1 \
         WHERE subscriber_id = (SELECT id FROM subscribers WHERE email_key = 'a@example.org')",
        "UPDATE campaign_recipients SET status = 'queued', next_attempt_at_ms = 0, message_id = NULL, \
         attempts = 0 WHERE subscriber_id = (SELECT id FROM subscribers WHERE email_key = 'b@example.org')",
        &format!("UPDATE campaigns SET status = 'sending', finished_at = NULL WHERE id = {id}"),
    ] {
        app.state.db.execute_unprepared(sql).await.unwrap();
    }
    Migrator::up(&app.state.db, None).await.unwrap();
    assert_eq!(app.query_i64(ids).await, id_sum);
    assert_eq!(
        app.query_i64("SELECT COUNT(*) FROM campaign_recipients WHERE status = 'queued'")
            .await,
        2,
        "the held row is queued again"
    );
    assert_eq!(app.query_i64("SELECT COUNT(*) FROM campaign_blocks").await, 1);
    app.delivery.wakeups.campaigns.notify_one();
    let done = app.wait_for_campaign(&key, id, "sent").await;
    assert_eq!(done["sent"].as_i64(), Some(3), "{done}");
    let again: Vec<String> = app.sink.messages()[3..]
        .iter()
        .map(|m| m.rcpt_to[0].clone())
        .collect();
    assert_eq!(again.len(), 2, "{again:?}");
    assert!(again.contains(&"a@example.org".to_owned()) && again.contains(&"b@example.org".to_owned()));
    assert_eq!(app.query_i64("SELECT COUNT(*) FROM campaign_blocks").await, 0);
    assert_eq!(
        app.query_i64("SELECT COUNT(*) FROM campaign_recipients WHERE attempts = 1")
            .await,
        3,
        "one attempt each: the old claim's count was taken back"
    );
}
