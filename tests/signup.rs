//! Double opt-in through HTTP and the SMTP sink: the form, the JSON endpoint, the confirmation
//! email and link, consent evidence, abuse protection and retention (OI-1..11, GD-5, GD-6, CS-4).

mod common;

use std::time::Duration;

use common::flows::confirmation_link;
use common::{
    OFFERS, Spawn, TestApp, WAIT, WEEKLY, base64url_json, dkim_check, header_values, spawn, spawn_with_lists,
};
use letterhead::domain::EmailAddress;
use letterhead::services::notices::NewPolicy;
use letterhead::store::subscriptions;
use letterhead::store::suppressions::{self, SuppressionReason};
use letterhead::tokens::Purpose;
use reqwest::StatusCode;

async fn app_with_lists() -> TestApp {
    spawn_with_lists(&[WEEKLY, OFFERS]).await
}

/// Submits the signup form as a browser does (this test's user agent included).
async fn submit_form(app: &TestApp, body: &str) -> reqwest::Response {
    app.http
        .post(app.url("/subscribe"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .header("User-Agent", "SignupTest/1.0")
        .body(body.to_owned())
        .send()
        .await
        .unwrap()
}

fn good_form(email: &str) -> String {
    format!(
        "email={}&name=Zo%C3%AB&list=weekly&consent=yes&age_confirmed=yes",
        urlencode(email)
    )
}

/// The answer page with the address it names (masked, as typed) taken out: that part differs
/// by what was typed, never by the address's state.
fn without_typed_address(page: String, email: &str) -> String {
    let masked = EmailAddress::parse(email).unwrap().masked();
    assert!(page.contains(&masked), "the page names {masked}: {page}");
    page.replace(&masked, "(address)")
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// Confirms `email`'s pending subscriptions, written as following the link leaves them (without
/// the link's consent evidence).
async fn confirm_in_store(app: &TestApp, email: &str) {
    let db = &app.state.db;
    let subscriber = subscriptions::subscriber_by_email(db, &EmailAddress::parse(email).unwrap())
        .await
        .unwrap()
        .unwrap();
    let ids = subscriptions::of_subscriber(db, subscriber.id)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.id)
        .collect();
    subscriptions::confirm(db, ids).await.unwrap();
}

/// OI-1, OI-3, OI-4, OI-5, CS-4, DK-1: a signup stays pending, gets one transactional,
/// signed confirmation with the postal address, and its evidence is recorded.
#[tokio::test]
async fn oi1_a_signup_gets_only_a_confirmation_and_stays_pending() {
    let app = app_with_lists().await;
    app.state
        .notices
        .publish_policy(NewPolicy {
            version: "2026-01".into(),
            effective_at: time::macros::datetime!(2026-01-01 0:00 UTC),
            summary: "First".into(),
            url: "https://example.com/privacy".parse().unwrap(),
            material: false,
            already_in_effect: true,
        })
        .await
        .unwrap();
    let res = submit_form(&app, &good_form("reader@example.org")).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.text().await.unwrap().contains("check your inbox"));

    let msgs = app.sink.wait_for(1, WAIT).await;
    let m = &msgs[0];
    let raw = m.text();
    assert_eq!(m.rcpt_to, vec!["reader@example.org".to_string()]);
    assert_eq!(m.mail_from, "notices@example.com", "transactional sender (GY-7)");
    assert!(header_values(&raw, "List-Unsubscribe").is_empty());
    assert!(dkim_check::passes(&m.data).await);
    let parsed = mail_parser::MessageParser::default().parse(&m.data).unwrap();
    assert_eq!(parsed.subject(), Some("Please confirm your subscription"));
    assert_eq!(parsed.to().unwrap().first().unwrap().name(), Some("Zoë"));
    let text = parsed.body_text(0).unwrap();
    for needle in [
        "Example Newsletter Ltd",
        "Weekly News",
        "ignore this email",
        "works until",
        "1 Example Street",
        "privacy@example.com",
    ] {
        assert!(text.contains(needle), "OI-4: {needle:?} missing from\n{text}");
        assert!(
            parsed.body_html(0).unwrap().contains(needle),
            "{needle:?} missing from the HTML part"
        );
    }
    assert_eq!(
        app.subscription_status("reader@example.org", "weekly").await,
        "pending"
    );

    // OI-3: the evidence.
    let n = app
        .query_i64(&format!(
            "SELECT COUNT(*) FROM consent_events WHERE kind = 'signup' AND ip = '127.0.0.1' \
             AND user_agent = 'SignupTest/1.0' AND source = 'form:/subscribe' AND policy_version = '2026-01' \
             AND consent_text = '{}' AND detail = '{{\"age_confirmed\":true,\"list\":\"weekly\"}}' \
             AND list_id IS NOT NULL",
            letterhead::services::signup::CONSENT_TEXT
        ))
        .await;
    assert_eq!(n, 1);
    // Nothing but the confirmation went out.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(app.sink.messages().len(), 1);
}

/// OI-11, OI-3, TK-7, TK-8: GET shows a button and changes nothing; POST confirms and records
/// time, IP and user agent; a repeat shows success again.
#[tokio::test]
async fn oi11_get_on_the_link_changes_nothing_and_post_confirms() {
    let app = app_with_lists().await;
    submit_form(&app, &good_form("clicker@example.org")).await;
    let msgs = app.sink.wait_for(1, WAIT).await;
    let path = confirmation_link(&msgs[0]);

    let page = app.get(&path).await;
    assert_eq!(page.status(), StatusCode::OK);
    assert_eq!(page.headers()["referrer-policy"], "no-referrer");
    assert_eq!(page.headers()["cache-control"], "no-store");
    let html = page.text().await.unwrap();
    assert!(html.contains("method=\"post\"") && html.contains(&format!("action=\"{path}\"")));
    assert_eq!(
        app.subscription_status("clicker@example.org", "weekly").await,
        "pending",
        "GET must not confirm"
    );

    let res = app
        .http
        .post(app.url(&path))
        .header("User-Agent", "Clicker/2.0")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.text().await.unwrap().contains("confirmed"));
    assert_eq!(
        app.subscription_status("clicker@example.org", "weekly").await,
        "confirmed"
    );
    let n = app
        .query_i64(
            "SELECT COUNT(*) FROM consent_events WHERE kind = 'confirm' AND ip = '127.0.0.1' AND user_agent = 'Clicker/2.0'",
        )
        .await;
    assert_eq!(n, 1);

    let again = app.post(&path).await;
    assert_eq!(again.status(), StatusCode::OK);
    assert!(again.text().await.unwrap().contains("confirmed"));
    assert_eq!(
        app.query_i64("SELECT COUNT(*) FROM consent_events WHERE kind = 'confirm'")
            .await,
        1,
        "single use"
    );
}

/// OI-2, GD-6: consent and age confirmation are required; the form comes back with the values
/// and a message per field; JSON gets problem+json with the same fields. Nothing is stored.
#[tokio::test]
async fn oi2_gd6_missing_consent_or_age_is_refused_with_field_errors() {
    let app = app_with_lists().await;
    let res = submit_form(
        &app,
        "email=keep%40example.org&name=Kept&list=weekly&consent=&age_confirmed=",
    )
    .await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let html = res.text().await.unwrap();
    assert!(
        html.contains("value=\"keep@example.org\"") && html.contains("value=\"Kept\""),
        "values kept"
    );
    assert!(html.contains("id=\"consent-error\"") && html.contains("id=\"age_confirmed-error\""));

    for body in [
        serde_json::json!({"email": "j@example.org", "list": ["weekly"], "age_confirmed": true}),
        serde_json::json!({"email": "j@example.org", "list": ["weekly"], "consent": false, "age_confirmed": true}),
        serde_json::json!({"email": "j@example.org", "list": ["weekly"], "consent": true}),
    ] {
        let res = app.post_json("/subscribe", &body).await;
        assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(res.headers()["content-type"], "application/problem+json");
        let p: serde_json::Value = res.json().await.unwrap();
        let fields: Vec<&str> = p["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["field"].as_str().unwrap())
            .collect();
        assert!(
            fields.contains(&"consent") || fields.contains(&"age_confirmed"),
            "{p}"
        );
    }
    assert_eq!(app.query_i64("SELECT COUNT(*) FROM subscribers").await, 0);
    assert_eq!(app.query_i64("SELECT COUNT(*) FROM outbox").await, 0);
}

#[tokio::test]
async fn bad_addresses_names_and_lists_are_field_errors_not_crashes() {
    let app = app_with_lists().await;
    let long_name = "x".repeat(300);
    for (body, field) in [
        (
            serde_json::json!({"email": "a@b.c\r\nBcc: x@y.z", "list": ["weekly"], "consent": true, "age_confirmed": true}),
            "email",
        ),
        (
            serde_json::json!({"email": "not-an-address", "list": "weekly", "consent": true, "age_confirmed": true}),
            "email",
        ),
        (
            serde_json::json!({"email": "ok@example.org", "name": long_name, "list": "weekly", "consent": true, "age_confirmed": true}),
            "name",
        ),
        (
            serde_json::json!({"email": "ok@example.org", "name": "Bad\u{7}Name", "list": "weekly", "consent": true, "age_confirmed": true}),
            "name",
        ),
        (
            serde_json::json!({"email": "ok@example.org", "list": ["nope"], "consent": true, "age_confirmed": true}),
            "list",
        ),
        (
            serde_json::json!({"email": "ok@example.org", "consent": true, "age_confirmed": true}),
            "list",
        ),
    ] {
        let res = app.post_json("/subscribe", &body).await;
        assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY, "{body}");
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
    let res = app
        .http
        .post(app.url("/subscribe"))
        .header("Content-Type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    let res = app
        .http
        .post(app.url("/subscribe"))
        .body(vec![b'a'; 2 * 1024 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(app.query_i64("SELECT COUNT(*) FROM subscribers").await, 0);
}

/// The form's lists are cached briefly. A list deleted meanwhile by another instance (here:
/// through the store, behind this one's back) is left out of a signup that names it, which is still answered as
/// accepted and subscribes to the other lists. A list added or deleted through the API is seen
/// at once.
#[tokio::test]
async fn lists_cached_for_the_form_follow_the_api_and_a_list_deleted_meanwhile_is_skipped() {
    let app = app_with_lists().await;
    assert!(app.page("/subscribe").await.contains("Special Offers"));
    let offers = app.list_id("offers").await;
    letterhead::store::lists::delete(&app.state.db, offers)
        .await
        .unwrap();
    let res = submit_form(
        &app,
        "email=both%40example.org&list=weekly&list=offers&consent=yes&age_confirmed=yes",
    )
    .await;
    assert_eq!(
        res.status(),
        StatusCode::OK,
        "answered as accepted: {:?}",
        res.text().await
    );
    assert_eq!(
        app.subscription_status("both@example.org", "weekly").await,
        "pending"
    );
    assert_eq!(app.query_i64("SELECT COUNT(*) FROM subscriptions").await, 1);
    app.sink.wait_for(1, WAIT).await;

    let key = app.create_api_key().await;
    let created = app
        .api_post(
            &key,
            "/api/v1/lists",
            &serde_json::json!({"slug": "daily", "name": "Daily Digest"}),
        )
        .await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let form = app.page("/subscribe").await;
    assert!(
        form.contains("Daily Digest"),
        "a list created through the API is offered at once"
    );
    let deleted = app.api_delete(&key, "/api/v1/lists/daily").await;
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    let signup = serde_json::json!({"email": "late@example.org", "lists": ["daily"], "consent": true, "age_confirmed": true});
    let res = app.post_json("/subscribe", &signup).await;
    assert_eq!(
        res.status(),
        StatusCode::UNPROCESSABLE_ENTITY,
        "a list deleted through the API is gone at once"
    );
}

/// The JSON endpoint: 202 and the same pending state, with its own source in the evidence.
#[tokio::test]
async fn a_json_signup_is_accepted_with_202() {
    let app = app_with_lists().await;
    let signup = serde_json::json!({"email": "api@example.org", "list": ["weekly", "offers"], "consent": true, "age_confirmed": true});
    let res = app.post_json("/subscribe", &signup).await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    app.sink.wait_for(1, WAIT).await;
    assert_eq!(
        app.subscription_status("api@example.org", "weekly").await,
        "pending"
    );
    assert_eq!(
        app.subscription_status("api@example.org", "offers").await,
        "pending"
    );
    assert_eq!(
        app.query_i64("SELECT COUNT(*) FROM consent_events WHERE source = 'json:/subscribe'")
            .await,
        2
    );
}

/// OI-9: new, pending, confirmed, unsubscribed and erased addresses get the same answer, and
/// each gets what it should (confirmed: nothing; unsubscribed and erased: a fresh confirmation).
#[tokio::test]
async fn oi9_every_state_gets_the_same_answer() {
    let app = app_with_lists().await;
    // pending@ signed up; confirmed@ signed up and confirmed; left@ signed up and left; erased@
    // was erased earlier, so only the keyed hash of the address is left.
    submit_form(&app, &good_form("pending@example.org")).await;
    submit_form(&app, &good_form("confirmed@example.org")).await;
    submit_form(&app, &good_form("left@example.org")).await;
    app.sink.wait_for(3, WAIT).await;
    confirm_in_store(&app, "confirmed@example.org").await;
    app.leave_in_store("left@example.org", &["weekly"]).await;
    let erased = EmailAddress::parse("erased@example.org").unwrap();
    suppressions::add(
        &app.state.db,
        &app.state.address_hasher.hash(&erased),
        SuppressionReason::Erased,
    )
    .await
    .unwrap();
    let before = app.sink.messages().len();

    let mut answers = Vec::new();
    for email in [
        "new@example.org",
        "pending@example.org",
        "confirmed@example.org",
        "left@example.org",
        "erased@example.org",
    ] {
        let form = submit_form(&app, &good_form(email)).await;
        let form = (
            form.status(),
            without_typed_address(form.text().await.unwrap(), email),
        );
        let signup =
            serde_json::json!({"email": email, "list": "weekly", "consent": true, "age_confirmed": true});
        let json = app.post_json("/subscribe", &signup).await;
        let json = (json.status(), json.text().await.unwrap());
        answers.push((form, json));
    }
    assert!(
        answers.windows(2).all(|w| w[0] == w[1]),
        "answers differ: {answers:#?}"
    );

    // new, left and erased each get one fresh confirmation; pending got one minutes ago that
    // still covers it; confirmed gets nothing.
    app.sink.wait_for(before + 3, WAIT).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let new: Vec<String> = app.sink.messages()[before..]
        .iter()
        .flat_map(|m| m.rcpt_to.clone())
        .collect();
    assert_eq!(new.len(), 3, "{new:?}");
    assert!(!new.contains(&"confirmed@example.org".to_string()), "{new:?}");
    for email in ["new@example.org", "left@example.org", "erased@example.org"] {
        assert!(
            new.contains(&email.to_string()),
            "{email} should get a confirmation: {new:?}"
        );
    }
    assert_eq!(
        app.subscription_status("confirmed@example.org", "weekly").await,
        "confirmed"
    );
    assert_eq!(
        app.subscription_status("left@example.org", "weekly").await,
        "pending"
    );
}

/// OI-10: a link issued before the person opted out does not subscribe them again, not even
/// after a later signup made the list pending again.
#[tokio::test]
async fn oi10_an_old_link_does_not_resubscribe_someone_who_left() {
    let app = app_with_lists().await;
    submit_form(&app, &good_form("leaver@example.org")).await;
    let first = confirmation_link(&app.sink.wait_for(1, WAIT).await[0]);
    // They leave before following the link.
    app.leave_in_store("leaver@example.org", &["weekly"]).await;
    let res = app.post(&first).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.text().await.unwrap().contains("nothing to confirm"));
    assert_eq!(
        app.subscription_status("leaver@example.org", "weekly").await,
        "unsubscribed"
    );

    // A later signup: the list is pending again, but only the new link may confirm it.
    submit_form(&app, &good_form("leaver@example.org")).await;
    let msgs = app.sink.wait_for(2, WAIT).await;
    let second = confirmation_link(&msgs[1]);
    let old_again = {
        // The first link was spent above; this is what an unspent copy of it would be: the same
        // subscriber and the same first signup, signed anew.
        let claims = app
            .state
            .keyring()
            .verify_claims(&first[9..], Purpose::Confirm)
            .unwrap();
        let sub = claims.sub.clone();
        let issued = claims.aux.clone().unwrap();
        format!(
            "/confirm/{}",
            app.state.keyring().issue(
                Purpose::Confirm,
                &sub,
                Some(&issued),
                Some(Duration::from_secs(3600))
            )
        )
    };
    app.post(&old_again).await;
    assert_eq!(
        app.subscription_status("leaver@example.org", "weekly").await,
        "pending",
        "old link must not confirm"
    );
    app.post(&second).await;
    assert_eq!(
        app.subscription_status("leaver@example.org", "weekly").await,
        "confirmed"
    );
}

/// A re-signup with another name changes the name only once the address's owner confirms it:
/// alone, it gets a confirmation of its own; with a new list, the list's confirmation covers
/// it. The same name again, or a correction on the preference page, drops a pending change.
#[tokio::test]
async fn a_new_name_at_a_re_signup_applies_after_confirmation() {
    use common::flows::{confirmed_with_name, sign_up, text_of};
    let app = spawn(Spawn {
        overrides: vec![("CONFIRMATIONS_PER_ADDRESS_PER_DAY", "10".into())],
        lists: vec![WEEKLY, OFFERS],
        ..Default::default()
    })
    .await;
    let address = EmailAddress::parse("ann@example.org").unwrap();
    let name_on_file = async || {
        subscriptions::subscriber_by_email(&app.state.db, &address)
            .await
            .unwrap()
            .unwrap()
            .name
    };
    confirmed_with_name(&app, "ann@example.org", "Ann", &["weekly"]).await;

    // Already on weekly: only the name is new.
    let m = sign_up(&app, "ann@example.org", Some("Ann Smith"), &["weekly"]).await;
    let parsed = mail_parser::MessageParser::default().parse(&m.data).unwrap();
    assert_eq!(parsed.subject(), Some("Please confirm the change to your name"));
    let text = text_of(&m);
    assert!(text.contains("to call you \u{201c}Ann Smith\u{201d}"), "{text}");
    assert_eq!(
        name_on_file().await.as_deref(),
        Some("Ann"),
        "not before confirmation"
    );
    let link = confirmation_link(&m);
    let done = app.post(&link).await;
    assert_eq!(done.status(), StatusCode::OK);
    let page = done.text().await.unwrap();
    assert!(
        page.contains("your new name is confirmed") && page.contains("Ann Smith"),
        "{page}"
    );
    assert_eq!(name_on_file().await.as_deref(), Some("Ann Smith"));

    // A new list and a new name: one confirmation covers both.
    let m = sign_up(&app, "ann@example.org", Some("Ann S."), &["offers"]).await;
    let text = text_of(&m);
    assert!(
        text.contains("subscribe this email address to") && text.contains("Offers"),
        "{text}"
    );
    assert!(
        text.contains("also asks us to call you \u{201c}Ann S.\u{201d}"),
        "{text}"
    );
    let page = app.post(&confirmation_link(&m)).await.text().await.unwrap();
    assert!(page.contains("Offers") && page.contains("Ann S."), "{page}");
    assert_eq!(name_on_file().await.as_deref(), Some("Ann S."));

    // Where there was no name, a stranger's is not taken either: it waits for the owner.
    common::flows::confirmed(&app, "bob@example.org", &["weekly"]).await;
    let m = sign_up(&app, "bob@example.org", Some("Mallory was here"), &["weekly"]).await;
    assert!(text_of(&m).contains("to call you \u{201c}Mallory was here\u{201d}"));
    let bob = EmailAddress::parse("bob@example.org").unwrap();
    let bob = subscriptions::subscriber_by_email(&app.state.db, &bob)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(bob.name, None, "no name taken without the owner's confirmation");

    // The name on file again clears what a stranger may have typed in between.
    let before = app.sink.messages().len();
    let res = app
        .post_json(
            "/subscribe",
            &serde_json::json!({"email": "ann@example.org", "name": "Mallory was here",
            "list": ["weekly"], "consent": true, "age_confirmed": true}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let stranger = app.wait_for_mail_to(before, "ann@example.org").await;
    let res = app
        .post_json(
            "/subscribe",
            &serde_json::json!({"email": "ann@example.org", "name": "Ann S.",
            "list": ["weekly"], "consent": true, "age_confirmed": true}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let page = app
        .post(&confirmation_link(&stranger))
        .await
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("already confirmed") && !page.contains("Mallory"),
        "{page}"
    );
    assert_eq!(name_on_file().await.as_deref(), Some("Ann S."));
}

/// OI-6: at most three confirmation emails a day to one address, whoever asks; the answers
/// stay the same (OI-9). (Resending is allowed at once here to reach the cap quickly.)
#[tokio::test]
async fn oi6_confirmations_to_one_address_are_capped() {
    let app = spawn(Spawn {
        overrides: vec![("CONFIRMATION_RESEND_MINUTES", "0".into())],
        lists: vec![WEEKLY],
        ..Default::default()
    })
    .await;
    let mut statuses = Vec::new();
    for i in 0..6 {
        let res = submit_form(&app, &good_form("victim@example.org")).await;
        statuses.push(res.status());
        // Each previous confirmation has been sent before the next request.
        if i < 3 {
            app.sink.wait_for(i + 1, WAIT).await;
            app.wait_until("SELECT COUNT(*) FROM outbox WHERE status = 'queued'", 0, WAIT)
                .await;
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(statuses.iter().all(|s| *s == StatusCode::OK));
    assert_eq!(app.sink.messages().len(), 3);
}

/// OI-7: signups are rate-limited per IP with 429 and Retry-After.
#[tokio::test]
async fn oi7_signups_are_rate_limited_per_ip() {
    let app = spawn(Spawn {
        overrides: vec![("RATE_LIMIT_SIGNUP_PER_MINUTE", "2".into())],
        lists: vec![WEEKLY],
        ..Default::default()
    })
    .await;
    for i in 0..2 {
        assert_eq!(
            submit_form(&app, &good_form(&format!("r{i}@example.org")))
                .await
                .status(),
            StatusCode::OK
        );
    }
    let res = submit_form(&app, &good_form("r3@example.org")).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(res.headers().contains_key("retry-after"));
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let signup = serde_json::json!({"email": "r4@example.org", "list": "weekly", "consent": true, "age_confirmed": true});
    let res = app.post_json("/subscribe", &signup).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
}

/// OI-8: a filled honeypot is answered like a success and stores and sends nothing.
#[tokio::test]
async fn oi8_a_filled_honeypot_stores_and_sends_nothing() {
    let app = app_with_lists().await;
    let normal = submit_form(&app, &good_form("human@example.org")).await;
    let (normal_status, normal_body) = (
        normal.status(),
        without_typed_address(normal.text().await.unwrap(), "human@example.org"),
    );
    let bot = submit_form(
        &app,
        &format!(
            "{}&website=http%3A%2F%2Fspam.example",
            good_form("bot@example.org")
        ),
    )
    .await;
    assert_eq!(
        (
            bot.status(),
            without_typed_address(bot.text().await.unwrap(), "bot@example.org")
        ),
        (normal_status, normal_body)
    );
    app.sink.wait_for(1, WAIT).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        app.query_i64("SELECT COUNT(*) FROM subscribers WHERE email_key = 'bot@example.org'")
            .await,
        0
    );
    assert_eq!(app.sink.messages().len(), 1);
}

/// 1,000 concurrent identical signups end as one subscription per list and one confirmation.
#[tokio::test]
async fn a_thousand_concurrent_identical_signups_make_one_subscription_and_one_confirmation() {
    let app = app_with_lists().await;
    let body = "email=crowd%40example.org&list=weekly&list=offers&consent=yes&age_confirmed=yes";
    let requests = (0..1000).map(|_| {
        let http = app.http.clone();
        let url = app.url("/subscribe");
        async move {
            http.post(url)
                .header("Content-Type", "application/x-www-form-urlencoded")
                .body(body)
                .send()
                .await
                .unwrap()
                .status()
        }
    });
    let statuses = futures::future::join_all(requests).await;
    assert!(
        statuses.iter().all(|s| *s == StatusCode::OK),
        "{:?}",
        statuses.iter().find(|s| **s != StatusCode::OK)
    );
    assert_eq!(app.query_i64("SELECT COUNT(*) FROM subscribers").await, 1);
    assert_eq!(app.query_i64("SELECT COUNT(*) FROM subscriptions").await, 2);
    assert_eq!(
        app.query_i64("SELECT COUNT(*) FROM outbox WHERE kind = 'confirmation'")
            .await,
        1
    );
    app.sink.wait_for(1, WAIT).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(app.sink.messages().len(), 1);
}

/// TK-1..5 on confirmation links: other purposes, altered bytes, `none`, unknown keys are 4xx
/// pages and change nothing; an expired link offers to sign up again.
#[tokio::test]
async fn forged_swapped_and_expired_confirmation_links_are_4xx() {
    let app = app_with_lists().await;
    submit_form(&app, &good_form("target@example.org")).await;
    let path = confirmation_link(&app.sink.wait_for(1, WAIT).await[0]);
    let token = path.trim_start_matches("/confirm/").to_owned();
    let claims = app
        .state
        .keyring()
        .verify_claims(&token, Purpose::Confirm)
        .unwrap();

    let body = token.split('.').nth(1).unwrap();
    let unsub = app
        .state
        .keyring()
        .issue(Purpose::Unsubscribe, &claims.sub, claims.aux.as_deref(), None);
    let mut altered = token.clone().into_bytes();
    let i = altered.len() - 5;
    altered[i] = if altered[i] == b'A' { b'B' } else { b'A' };
    let forged = [
        unsub,
        String::from_utf8(altered).unwrap(),
        format!(
            "{}.{body}.",
            base64url_json(&serde_json::json!({"alg": "none", "typ": "JWT"}))
        ),
        format!(
            "{}.{body}.{}",
            base64url_json(&serde_json::json!({"alg": "HS256", "kid": "../../etc/passwd"})),
            token.split('.').nth(2).unwrap()
        ),
        format!(
            "{}.{body}.{}",
            base64url_json(&serde_json::json!({"alg": "RS256", "kid": "k1"})),
            token.split('.').nth(2).unwrap()
        ),
        "not-a-token".into(),
        "a.b.c".into(),
    ];
    for bad in forged {
        for method in [reqwest::Method::GET, reqwest::Method::POST] {
            let res = app
                .http
                .request(method.clone(), app.url(&format!("/confirm/{bad}")))
                .send()
                .await
                .unwrap();
            assert!(res.status().is_client_error(), "{method} {bad}: {}", res.status());
        }
    }
    assert_eq!(
        app.subscription_status("target@example.org", "weekly").await,
        "pending"
    );

    let expired = {
        use jsonwebtoken::{Algorithm, EncodingKey, Header};
        let secret = letterhead::store::keys::load(&app.state.db, letterhead::store::keys::KeyPurpose::Token)
            .await
            .unwrap()
            .remove(0);
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(secret.0);
        let mut c = claims.clone();
        c.exp = Some(c.iat - 10);
        jsonwebtoken::encode(&header, &c, &EncodingKey::from_secret(secret.1.as_bytes())).unwrap()
    };
    let res = app.post(&format!("/confirm/{expired}")).await;
    assert_eq!(res.status(), StatusCode::GONE);
    assert!(
        res.text().await.unwrap().contains("href=\"/subscribe\""),
        "offers to sign up again"
    );
    assert_eq!(
        app.subscription_status("target@example.org", "weekly").await,
        "pending"
    );
}

/// The form: unchecked consent box, age box, labels, honeypot, no third-party assets; one
/// list chosen by `?list=`.
#[tokio::test]
async fn the_form_has_an_unchecked_consent_box_and_loads_nothing_from_elsewhere() {
    let app = app_with_lists().await;
    let html = app.page("/subscribe").await;
    assert!(html.contains("name=\"consent\" value=\"yes\" required"));
    assert!(!html.contains("name=\"consent\" value=\"yes\" checked"));
    assert!(html.contains("name=\"age_confirmed\""));
    assert!(html.contains("<label for=\"email\">"));
    assert!(html.contains("name=\"website\""), "honeypot");
    assert!(html.contains("href=\"/privacy\""));
    assert!(
        !html.contains("src=\"http") && !html.contains("<script"),
        "no third-party assets, no JS"
    );
    assert!(html.contains("value=\"weekly\"") && html.contains("value=\"offers\""));
    let one = app.page("/subscribe?list=offers").await;
    assert!(one.contains("type=\"hidden\" name=\"list\" value=\"offers\""));
    assert!(!one.contains("value=\"weekly\""));
}

/// GD-5: unconfirmed signups go after the retention period; IPs and user agents go after the
/// abuse-retention period while the rest of the evidence stays. The clock is moved, not slept.
#[tokio::test]
async fn gd5_retention_removes_unconfirmed_signups_and_then_ips() {
    let app = app_with_lists().await;
    submit_form(&app, &good_form("never@example.org")).await;
    submit_form(&app, &good_form("keeper@example.org")).await;
    let msgs = app.sink.wait_for(2, WAIT).await;
    let keeper = msgs
        .iter()
        .find(|m| m.rcpt_to[0] == "keeper@example.org")
        .unwrap();
    app.post(&confirmation_link(keeper)).await;

    let cfg = app.state.config.retention.clone();
    let now = time::OffsetDateTime::now_utc();
    let report = letterhead::store::retention::run(
        &app.state.db,
        &cfg,
        now + time::Duration::days(6),
        letterhead::store::retention::Mode::Apply,
    )
    .await
    .unwrap();
    assert_eq!(report.subscribers_deleted, 0, "not yet");
    let report = letterhead::store::retention::run(
        &app.state.db,
        &cfg,
        now + time::Duration::days(8),
        letterhead::store::retention::Mode::Apply,
    )
    .await
    .unwrap();
    assert_eq!(report.unconfirmed_subscriptions_deleted, 1);
    assert_eq!(report.subscribers_deleted, 1);
    assert_eq!(
        app.query_i64("SELECT COUNT(*) FROM subscribers WHERE email_key = 'never@example.org'")
            .await,
        0
    );
    assert_eq!(
        app.subscription_status("keeper@example.org", "weekly").await,
        "confirmed"
    );
    assert_eq!(
        app.query_i64("SELECT COUNT(*) FROM consent_events WHERE ip IS NOT NULL")
            .await,
        2
    );

    let report = letterhead::store::retention::run(
        &app.state.db,
        &cfg,
        now + time::Duration::days(31),
        letterhead::store::retention::Mode::Apply,
    )
    .await
    .unwrap();
    assert_eq!(report.consent_events_anonymized, 2);
    assert_eq!(
        app.query_i64("SELECT COUNT(*) FROM consent_events WHERE ip IS NOT NULL OR user_agent IS NOT NULL")
            .await,
        0
    );
    assert_eq!(
        app.query_i64("SELECT COUNT(*) FROM consent_events WHERE policy_version IS NULL AND source <> '' AND kind IN ('signup','confirm')").await,
        2,
        "the rest of the evidence stays"
    );
    let again = letterhead::store::retention::run(
        &app.state.db,
        &cfg,
        now + time::Duration::days(31),
        letterhead::store::retention::Mode::Apply,
    )
    .await
    .unwrap();
    assert_eq!(again, Default::default(), "idempotent");
}

/// A fresh install takes a signup out of the box: `DEFAULT_LIST` creates the first list at
/// start-up, once, and only when there is no list at all.
#[tokio::test]
async fn a_fresh_install_offers_the_default_list_and_takes_a_signup() {
    let first = spawn(Spawn {
        overrides: vec![("DEFAULT_LIST", "weekly:The Weekly".into())],
        ..Default::default()
    })
    .await;
    let form = first.page("/subscribe").await;
    assert!(
        form.contains("The Weekly") && form.contains("value=\"weekly\""),
        "the form offers the default list: {form}"
    );
    let mail = common::flows::sign_up(&first, "first@example.org", None, &["weekly"]).await;
    assert_eq!(mail.rcpt_to, vec!["first@example.org".to_string()]);

    // A second instance on the same database, and a restart with another DEFAULT_LIST, add
    // nothing: a list exists.
    let again = spawn(Spawn {
        overrides: vec![("DEFAULT_LIST", "monthly:The Monthly".into())],
        ..Spawn::sharing(first.db.clone(), first.sink.clone())
    })
    .await;
    assert_eq!(again.query_i64("SELECT COUNT(*) FROM lists").await, 1);
    assert!(!again.page("/subscribe").await.contains("The Monthly"));
}

/// A form sent back with a message keeps what the person entered, the two boxes included, so
/// that fixing the one field and sending again works; a new form leaves both unticked (OI-2).
#[tokio::test]
async fn a_refused_form_comes_back_as_it_was_sent() {
    let app = app_with_lists().await;
    let res = app
        .post_form(
            "/subscribe",
            "email=not-an-address&name=Kept&list=weekly&consent=yes&age_confirmed=yes",
        )
        .await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let html = res.text().await.unwrap();
    assert!(html.contains("value=\"not-an-address\"") && html.contains("value=\"Kept\""));
    assert!(
        html.contains("name=\"consent\" value=\"yes\"")
            && html.contains("aria-describedby=\"consent-error\" checked"),
        "the consent box stays ticked: {html}"
    );
    assert!(
        html.contains("aria-describedby=\"age_confirmed-error\" checked"),
        "the age box stays ticked: {html}"
    );
    let fresh = app.page("/subscribe").await;
    assert!(
        !fresh.contains(" checked"),
        "a new form has nothing ticked: {fresh}"
    );
}
