//! Leaving and data rights through HTTP and the SMTP sink: one-click unsubscribe (RFC 8058),
//! tokens, the preference page, export, change of address, erasure and suppression
//! (LU-3..7, TK-1..8, CS-6, CS-8, CS-9, GD-1..4).

mod common;

use std::time::Duration;

use common::flows::{self, link_in, text_of};
use common::{OFFERS, TestApp, WAIT, WEEKLY, base64url_json, spawn_with_lists};
use letterhead::domain::EmailAddress;
use letterhead::tokens::{ManageClaims, Purpose};
use reqwest::StatusCode;
use sea_orm::{ConnectionTrait, Statement};

async fn app() -> TestApp {
    spawn_with_lists(&[WEEKLY, OFFERS]).await
}

/// Signs up to both lists and confirms; returns the subscriber's uuid.
async fn confirmed_on_both_lists(app: &TestApp, email: &str) -> uuid::Uuid {
    flows::confirmed(app, email, &["weekly", "offers"]).await
}

/// LU-3, LU-4, LU-7, CS-6: a one-click POST, url-encoded or multipart, without cookies,
/// unsubscribes from exactly that list and answers 200 (never a redirect), the same each time.
#[tokio::test]
async fn lu3_one_click_post_unsubscribes_in_both_encodings() {
    let app = app().await;
    let weekly = app.list_id("weekly").await;
    let a = confirmed_on_both_lists(&app, "form@example.org").await;
    let b = confirmed_on_both_lists(&app, "multi@example.org").await;

    let url_a = app.unsubscribe_path(a, weekly);
    let res = app.post_form(&url_a, "List-Unsubscribe=One-Click").await;
    assert_eq!(res.status(), StatusCode::OK);
    let first_body = res.text().await.unwrap();
    assert_eq!(
        app.subscription_status("form@example.org", "weekly").await,
        "unsubscribed"
    );
    assert_eq!(
        app.subscription_status("form@example.org", "offers").await,
        "confirmed",
        "only that list (LU-4)"
    );

    let url_b = app.unsubscribe_path(b, weekly);
    let form = reqwest::multipart::Form::new().text("List-Unsubscribe", "One-Click");
    let res = app
        .http
        .post(app.url(&url_b))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        app.subscription_status("multi@example.org", "weekly").await,
        "unsubscribed"
    );

    // LU-7: a repeat answers the same.
    let again = app.post_form(&url_a, "List-Unsubscribe=One-Click").await;
    assert_eq!(again.status(), StatusCode::OK);
    // The same page; only the freshly signed preference link in it differs.
    let mask = |body: &str| {
        let start = body.find("/preferences/").unwrap();
        let end = start + body[start..].find('"').unwrap();
        format!("{}{}", &body[..start], &body[end..])
    };
    assert_eq!(mask(&again.text().await.unwrap()), mask(&first_body));
    assert_eq!(
        app.query_i64(
            "SELECT COUNT(*) FROM consent_events WHERE kind = 'unsubscribe' AND source = 'one-click'"
        )
        .await,
        2,
        "one event per real change"
    );
}

/// LU-6: a GET (link scanners prefetch) never unsubscribes; it shows a page whose button POSTs.
#[tokio::test]
async fn lu6_get_on_the_unsubscribe_uri_changes_nothing() {
    let app = app().await;
    let a = confirmed_on_both_lists(&app, "reader@example.org").await;
    let url = app.unsubscribe_path(a, app.list_id("weekly").await);
    for _ in 0..3 {
        let res = app.get(&url).await;
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(res.headers()["referrer-policy"], "no-referrer");
        assert_eq!(res.headers()["cache-control"], "no-store");
        let html = res.text().await.unwrap();
        assert!(html.contains("method=\"post\"") && html.contains("List-Unsubscribe"));
        assert!(html.contains("Weekly News"));
    }
    assert_eq!(
        app.subscription_status("reader@example.org", "weekly").await,
        "confirmed"
    );
}

/// LU-5, TK-1..4: tampered, swapped, unsigned or unknown-key tokens are 4xx and change nothing.
#[tokio::test]
async fn lu5_forged_and_swapped_tokens_are_4xx_and_change_nothing() {
    let app = app().await;
    let a = confirmed_on_both_lists(&app, "target@example.org").await;
    let weekly = app.list_id("weekly").await;
    let token = app
        .unsubscribe_path(a, weekly)
        .trim_start_matches("/unsubscribe/")
        .to_owned();
    let manage = app
        .preferences_path(a)
        .trim_start_matches("/preferences/")
        .to_owned();
    let [_, body, sig]: [&str; 3] = token.split('.').collect::<Vec<_>>().try_into().unwrap();
    let mut altered = token.clone().into_bytes();
    let mid = altered.len() / 2;
    altered[mid] = if altered[mid] == b'x' { b'y' } else { b'x' };
    let cases = [
        String::from_utf8(altered).unwrap(),
        format!("{}.{body}.", base64url_json(&serde_json::json!({"alg": "none"}))),
        format!(
            "{}.{body}.{sig}",
            base64url_json(&serde_json::json!({"alg": "HS512", "kid": "k1"}))
        ),
        format!(
            "{}.{body}.{sig}",
            base64url_json(&serde_json::json!({"alg": "HS256", "kid": "nope"}))
        ),
        format!(
            "{}.{body}.{sig}",
            base64url_json(&serde_json::json!({"alg": "HS256", "kid": "'; DROP TABLE subscribers; --"}))
        ),
        format!(
            "{}.{body}.{sig}",
            base64url_json(&serde_json::json!({"alg": "HS256", "kid": "x".repeat(5000)}))
        ),
        manage.clone(), // a manage token is not an unsubscribe token (TK-3)
        "%00%0d%0a".into(),
    ];
    for bad in &cases {
        for method in [reqwest::Method::GET, reqwest::Method::POST] {
            let res = app
                .http
                .request(method.clone(), app.url(&format!("/unsubscribe/{bad}")))
                .header("Content-Type", "application/x-www-form-urlencoded")
                .body("List-Unsubscribe=One-Click")
                .send()
                .await
                .unwrap();
            assert!(res.status().is_client_error(), "{method} {bad}: {}", res.status());
        }
    }
    // And the other way round: an unsubscribe token does not open the preference page.
    let res = app.get(&format!("/preferences/{token}")).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let res = app.post(&format!("/preferences/{token}/erase")).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        app.subscription_status("target@example.org", "weekly").await,
        "confirmed"
    );
    assert_eq!(app.query_i64("SELECT COUNT(*) FROM subscribers").await, 1);
}

/// CS-8, TK-4: after `letterhead keys rotate`, links signed with the old key still work, new
/// links use the new key, and a running instance learns the new key when it meets it.
#[tokio::test]
async fn cs8_old_links_survive_key_rotation() {
    let app = app().await;
    let a = confirmed_on_both_lists(&app, "keeper@example.org").await;
    let weekly = app.list_id("weekly").await;
    let old_link = app.unsubscribe_path(a, weekly);
    let out = app.run_cli(&["keys", "rotate"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("new signing key"));

    // A second instance started after the rotation signs with the new key...
    let second = app.another_instance().await;
    let new_link = second.preferences_path(a);
    let kid = |link: &str| {
        let token = link.rsplit('/').next().unwrap();
        jsonwebtoken::decode_header(token).unwrap().kid.unwrap()
    };
    assert_ne!(kid(&old_link), kid(&new_link));
    // ...the first instance accepts it (reloads the keys), and the old link works on both.
    assert_eq!(app.get(&new_link).await.status(), StatusCode::OK);
    let res = second
        .http
        .post(second.url(&old_link))
        .body("List-Unsubscribe=One-Click")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        app.subscription_status("keeper@example.org", "weekly").await,
        "unsubscribed"
    );
}

/// TK-4: `letterhead keys retire` withdraws a leaked key. Links signed with it stop working on
/// every instance — a page that says why, not "invalid" — while links signed with the key
/// that replaced it work; the running instance rereads the keys itself (what its housekeeping
/// does every 30 s) and one started later knows at once. The last key cannot be retired.
#[tokio::test]
async fn tk4_a_retired_key_signs_nothing_that_still_works() {
    let app = app().await;
    let a = confirmed_on_both_lists(&app, "leaked@example.org").await;
    let weekly = app.list_id("weekly").await;
    let old_unsubscribe = app.unsubscribe_path(a, weekly);
    let old_prefs = app.preferences_path(a);

    let (mut cli, _env) = app.cli();
    let only = cli.args(["keys", "retire", "k1"]).output().unwrap();
    assert!(!only.status.success());
    assert!(String::from_utf8_lossy(&only.stderr).contains("only signing key"));
    app.run_cli(&["keys", "rotate"]);
    let out = app.run_cli(&["keys", "retire", "k1"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("key k1 retired"));
    let (mut cli, _env) = app.cli();
    let unknown = cli.args(["keys", "retire", "k0"]).output().unwrap();
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no token signing key k0"));

    assert!(app.state.tokens.reload(&app.state.db).await);
    let second = app.another_instance().await;
    for instance in [&app, &second] {
        let page = instance.get(&old_prefs).await;
        assert_eq!(page.status(), StatusCode::GONE);
        assert!(page.text().await.unwrap().contains("withdrew the key"));
        let res = instance
            .http
            .post(instance.url(&old_unsubscribe))
            .body("List-Unsubscribe=One-Click")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::GONE);
    }
    assert_eq!(
        app.subscription_status("leaked@example.org", "weekly").await,
        "confirmed"
    );
    // New links are signed with the key that is left, and work everywhere.
    assert_eq!(
        second.get(&app.preferences_path(a)).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        app.one_click_unsubscribe(a, weekly).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        app.subscription_status("leaked@example.org", "weekly").await,
        "unsubscribed"
    );
}

/// CS-9: the preference page offers "unsubscribe from all", which leaves every list at once
/// and remembers the opt-out as a keyed-hash suppression; a new confirmed opt-in lifts it.
#[tokio::test]
async fn cs9_unsubscribe_from_all_on_the_preference_page() {
    let app = app().await;
    let a = confirmed_on_both_lists(&app, "all@example.org").await;
    let prefs = app.preferences_path(a);
    let page = app.get(&prefs).await;
    assert_eq!(page.status(), StatusCode::OK);
    assert_eq!(page.headers()["referrer-policy"], "no-referrer");
    let html = page.text().await.unwrap();
    assert!(
        html.contains("Unsubscribe from all")
            && html.contains(&format!("action=\"{prefs}/unsubscribe-all\""))
    );
    assert!(html.contains("all@example.org"));

    let res = app.post(&format!("{prefs}/unsubscribe-all")).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        app.subscription_status("all@example.org", "weekly").await,
        "unsubscribed"
    );
    assert_eq!(
        app.subscription_status("all@example.org", "offers").await,
        "unsubscribed"
    );
    assert_eq!(
        app.query_i64("SELECT COUNT(*) FROM suppressions WHERE reason = 'unsubscribed'")
            .await,
        1
    );

    confirmed_on_both_lists(&app, "all@example.org").await;
    assert_eq!(
        app.subscription_status("all@example.org", "weekly").await,
        "confirmed"
    );
    assert_eq!(
        app.query_i64("SELECT COUNT(*) FROM suppressions").await,
        0,
        "a fresh confirmed opt-in lifts it"
    );
}

/// The preference form: per-list toggles and the name.
#[tokio::test]
async fn preferences_change_lists_and_name() {
    let app = app().await;
    let a = confirmed_on_both_lists(&app, "toggler@example.org").await;
    let prefs = app.preferences_path(a);
    let res = app.post_form(&prefs, "list=weekly&name=Zo%C3%AB+Renamed").await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.text().await.unwrap().contains("saved"));
    assert_eq!(
        app.subscription_status("toggler@example.org", "weekly").await,
        "confirmed"
    );
    assert_eq!(
        app.subscription_status("toggler@example.org", "offers").await,
        "unsubscribed"
    );
    assert_eq!(
        app.query_i64("SELECT COUNT(*) FROM subscribers WHERE name = 'Zoë Renamed'")
            .await,
        1
    );
    // Ticking it again is a fresh opt-in by the mailbox's owner, recorded as such.
    app.post_form(&prefs, "list=weekly&list=offers&name=Zo%C3%AB")
        .await;
    assert_eq!(
        app.subscription_status("toggler@example.org", "offers").await,
        "confirmed"
    );
    assert_eq!(
        app.query_i64(
            "SELECT COUNT(*) FROM consent_events WHERE kind = 'resubscribe' AND consent_text IS NOT NULL"
        )
        .await,
        1
    );
    let bad = app.post_form(&prefs, "name=Bad%0D%0ABcc%3A+x%40y.z").await;
    assert_eq!(bad.status(), StatusCode::UNPROCESSABLE_ENTITY);
}

/// GD-2: a new address takes effect only after it confirms.
#[tokio::test]
async fn gd2_a_change_of_address_waits_for_the_new_address_to_confirm() {
    let app = app().await;
    let a = confirmed_on_both_lists(&app, "old@example.org").await;
    let prefs = app.preferences_path(a);
    let before = app.sink.messages().len();
    let res = app
        .post_form(&format!("{prefs}/address"), "email=new%40example.org")
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let msgs = app.sink.wait_for(before + 1, WAIT).await;
    let m = &msgs[before];
    assert_eq!(m.rcpt_to, vec!["new@example.org".to_string()]);
    let link = link_in(&text_of(m), "/change-address/");
    assert_eq!(
        app.query_i64("SELECT COUNT(*) FROM subscribers WHERE email_key = 'old@example.org'")
            .await,
        1
    );
    // GET changes nothing.
    assert_eq!(app.get(&link).await.status(), StatusCode::OK);
    assert_eq!(
        app.query_i64("SELECT COUNT(*) FROM subscribers WHERE email_key = 'old@example.org'")
            .await,
        1
    );
    assert_eq!(app.post(&link).await.status(), StatusCode::OK);
    assert_eq!(
        app.query_i64("SELECT COUNT(*) FROM subscribers WHERE email_key = 'new@example.org'")
            .await,
        1
    );
    assert_eq!(
        app.subscription_status("new@example.org", "weekly").await,
        "confirmed"
    );
}

/// Address-change confirmations cannot mail-bomb anyone: sixty requests from one preference
/// link at once reach the victim a few times a day at most (the signup confirmations' cap),
/// and an address that opted out or is suppressed gets none; the page answers the same.
#[tokio::test]
async fn address_change_confirmations_cannot_mail_bomb_anyone() {
    let app = app().await;
    let key = app.create_api_key().await;
    let a = confirmed_on_both_lists(&app, "attacker@example.org").await;
    let prefs = app.preferences_path(a);
    let before = app.sink.messages().len();
    let form = |to: &str| format!("email={}", to.replace('@', "%40"));
    let (path, body) = (format!("{prefs}/address"), form("victim@example.org"));
    let requests = (0..60).map(|_| app.post_form(&path, &body));
    let mut pages = Vec::new();
    for res in futures::future::join_all(requests).await {
        assert_eq!(res.status(), StatusCode::OK);
        pages.push(res.text().await.unwrap());
    }
    assert!(
        pages
            .iter()
            .all(|p| p.contains("We sent a confirmation link to the new address"))
    );
    // The first confirmation arrives; then nothing of the kind is left to send.
    app.wait_for_mail_to(before, "victim@example.org").await;
    app.wait_until(
        "SELECT COUNT(*) FROM outbox WHERE kind = 'address_change' AND status IN ('queued', 'sending')",
        0,
        WAIT,
    )
    .await;
    let to_victim = app.sink.messages()[before..]
        .iter()
        .filter(|m| m.rcpt_to == vec!["victim@example.org".to_string()])
        .count();
    assert!(
        (1..=3).contains(&to_victim),
        "{to_victim} confirmations reached the victim"
    );

    // Opted out everywhere (by the operator), or suppressed: nothing, and the same page.
    let res = app
        .api_post(
            &key,
            "/api/v1/unsubscribes",
            &serde_json::json!({"email": "left@example.org"}),
        )
        .await;
    assert!(res.status().is_success());
    let before = app.sink.messages().len();
    let page = app
        .post_form(&format!("{prefs}/address"), &form("left@example.org"))
        .await
        .text()
        .await
        .unwrap();
    assert!(page.contains("We sent a confirmation link to the new address"));
    assert_eq!(
        app.query_i64("SELECT COUNT(*) FROM outbox WHERE kind = 'address_change' AND LOWER(recipient) = 'left@example.org'")
            .await,
        0
    );
    assert_eq!(app.sink.messages().len(), before);
}

/// GD-1, TK-7: the export goes only through a link mailed to the address; it holds the
/// subscriptions, the consent evidence and the messages sent; the link works once.
#[tokio::test]
async fn gd1_export_arrives_by_mail_and_holds_everything() {
    let app = app().await;
    let a = confirmed_on_both_lists(&app, "curious@example.org").await;
    let prefs = app.preferences_path(a);
    let before = app.sink.messages().len();
    let res = app.post(&format!("{prefs}/export")).await;
    assert_eq!(res.status(), StatusCode::OK);
    let msgs = app.sink.wait_for(before + 1, WAIT).await;
    assert_eq!(msgs[before].rcpt_to, vec!["curious@example.org".to_string()]);
    let link = link_in(&text_of(&msgs[before]), "/export/");
    let page = app.page(&link).await;
    assert!(page.contains("method=\"post\""), "GET shows a button");

    let res = app.post(&link).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(
        res.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("attachment")
    );
    let data: serde_json::Value = res.json().await.unwrap();
    assert_eq!(data["subscriber"]["email"], "curious@example.org");
    assert_eq!(data["subscriptions"].as_array().unwrap().len(), 2);
    let events = data["consent_events"].as_array().unwrap();
    assert!(
        events
            .iter()
            .any(|e| e["kind"] == "signup" && e["ip"] == "127.0.0.1" && e["consent_text"].is_string())
    );
    assert!(events.iter().any(|e| e["kind"] == "confirm"));
    let messages = data["messages"].as_array().unwrap();
    assert!(
        messages
            .iter()
            .any(|m| m["kind"] == "confirmation" && m["status"] == "sent")
    );

    let again = app.post(&link).await;
    assert_eq!(again.status(), StatusCode::GONE, "single use");
}

/// Every text value stored anywhere in the database that contains `needle`.
async fn occurrences(app: &TestApp, needle: &str) -> Vec<String> {
    let db = &app.state.db;
    let backend = db.get_database_backend();
    let tables_sql = if app.db.is_postgres() {
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
    } else {
        "SELECT name FROM sqlite_master WHERE type = 'table'"
    };
    let tables: Vec<String> = db
        .query_all_raw(Statement::from_string(backend, tables_sql.to_owned()))
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.try_get_by_index::<String>(0).unwrap())
        .collect();
    let mut found = Vec::new();
    for t in tables {
        let cols_sql = if app.db.is_postgres() {
            format!("SELECT column_name FROM information_schema.columns WHERE table_name = '{t}'")
        } else {
            format!("SELECT name FROM pragma_table_info('{t}')")
        };
        let cols: Vec<String> = db
            .query_all_raw(Statement::from_string(backend, cols_sql))
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.try_get_by_index::<String>(0).unwrap())
            .collect();
        let cond = cols
            .iter()
            .map(|c| format!("LOWER(CAST(\"{c}\" AS TEXT)) LIKE $1"))
            .collect::<Vec<_>>()
            .join(" OR ");
        let n = db
            .query_one_raw(Statement::from_sql_and_values(
                backend,
                format!("SELECT COUNT(*) FROM \"{t}\" WHERE {cond}"),
                [format!("%{}%", needle.to_lowercase()).into()],
            ))
            .await
            .unwrap()
            .unwrap()
            .try_get_by_index::<i64>(0)
            .unwrap();
        if n > 0 {
            found.push(t);
        }
    }
    found
}

/// GD-3, GD-4: erasure at once; afterwards the address is in no column of the database, only a
/// keyed hash stays; no mail follows; a fresh confirmed opt-in still works. (tests/erasure.rs
/// reads the database's files.)
#[tokio::test]
async fn gd3_gd4_erase_leaves_only_a_keyed_hash() {
    let app = app().await;
    let a = confirmed_on_both_lists(&app, "Forget.Me@example.org").await;
    let prefs = app.preferences_path(a);
    app.post(&format!("{prefs}/export")).await; // leaves a send-log row
    app.sink.wait_for(2, WAIT).await;
    assert!(!occurrences(&app, "forget.me@example.org").await.is_empty());
    let sent_before = app.sink.messages().len();

    let res = app.post(&format!("{prefs}/erase")).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        occurrences(&app, "forget.me@example.org").await,
        Vec::<String>::new()
    );
    assert_eq!(occurrences(&app, "forget.me").await, Vec::<String>::new());
    let hash = app
        .state
        .address_hasher
        .hash(&EmailAddress::parse("forget.me@example.org").unwrap());
    assert_eq!(
        app.query_i64(&format!(
            "SELECT COUNT(*) FROM suppressions WHERE address_hmac = '{}' AND reason = 'erased'",
            hash.as_str()
        ))
        .await,
        1
    );
    // No plain or unkeyed hash of the address anywhere.
    use sha2::Digest;
    let plain_sha = hex::encode(sha2::Sha256::digest(b"forget.me@example.org"));
    assert!(occurrences(&app, &plain_sha).await.is_empty());
    // The preference link is dead, and no mail follows.
    assert_eq!(app.get(&prefs).await.status(), StatusCode::GONE);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(app.sink.messages().len(), sent_before);

    // A fresh, confirmed opt-in is still possible (GD-4).
    confirmed_on_both_lists(&app, "forget.me@example.org").await;
    assert_eq!(
        app.subscription_status("forget.me@example.org", "weekly").await,
        "confirmed"
    );
}

/// Suppression feed: `POST /api/v1/suppressions`; mail to the address is not sent.
#[tokio::test]
async fn suppressions_from_the_api_stop_mail() {
    let app = app().await;
    let key = app.create_api_key().await;
    let res = app.suppress(&key, "Complainer@example.org", "complaint").await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let bad = app.suppress(&key, "x", "whatever").await;
    assert_eq!(bad.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        app.query_i64("SELECT COUNT(*) FROM suppressions WHERE reason = 'complaint'")
            .await,
        1
    );
    assert!(
        occurrences(&app, "complainer").await.is_empty(),
        "only the keyed hash is stored"
    );

    app.run_cli(&["send-test", "--to", "complainer@example.org"]);
    app.run_cli(&["send-test", "--to", "fine@example.org"]);
    app.sink.wait_for(1, WAIT).await;
    app.wait_until("SELECT COUNT(*) FROM outbox WHERE status = 'cancelled'", 1, WAIT)
        .await;
    assert_eq!(
        app.sink
            .messages()
            .iter()
            .filter(|m| m.rcpt_to[0] == "complainer@example.org")
            .count(),
        0
    );
    // A purpose the token module knows, for completeness of TK-3 coverage.
    assert!(
        app.state
            .keyring()
            .verify::<ManageClaims>(&app.state.keyring().issue(Purpose::Export, "x", None, None))
            .is_err()
    );
}

/// TK-1..5 for every kind of link: each route refuses tokens of every other purpose, forged
/// and altered ones, with a 4xx and never a 5xx; unsubscribe tokens do not expire, the others do.
#[tokio::test]
async fn every_token_route_refuses_every_other_purpose_and_forgeries() {
    let app = app().await;
    let a = confirmed_on_both_lists(&app, "owner@example.org").await;
    let weekly = app.list_id("weekly").await;
    let ring = app.state.keyring();
    let sub = a.to_string();
    let token_of = |link: url::Url| link.path().rsplit('/').next().unwrap().to_owned();
    let tokens = [
        (
            "/confirm/",
            ring.issue(Purpose::Confirm, &sub, Some("0"), Some(Duration::from_secs(600))),
        ),
        ("/unsubscribe/", token_of(app.state.links.unsubscribe(a, weekly))),
        ("/preferences/", token_of(app.state.links.preferences(a))),
        ("/export/", token_of(app.state.links.export(a))),
        (
            "/change-address/",
            token_of(app.state.links.address_change(uuid::Uuid::new_v4())),
        ),
    ];
    for (route, _) in &tokens {
        for (other_route, token) in &tokens {
            if route == other_route {
                continue;
            }
            for method in [reqwest::Method::GET, reqwest::Method::POST] {
                let res = app
                    .http
                    .request(method.clone(), app.url(&format!("{route}{token}")))
                    .send()
                    .await
                    .unwrap();
                assert!(
                    res.status().is_client_error(),
                    "{method} {route} with a {other_route} token: {}",
                    res.status()
                );
            }
        }
        let forged = format!("{route}eyJhbGciOiJub25lIn0.eyJwdXIiOiJtYW5hZ2UifQ.");
        let res = app.post(&forged).await;
        assert!(res.status().is_client_error(), "{forged}: {}", res.status());
    }
    // TK-6: no personal data inside any token: opaque ids only.
    for (_, token) in &tokens {
        use base64::Engine;
        let payload = token.split('.').nth(1).unwrap();
        let json = String::from_utf8(
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(payload)
                .unwrap(),
        )
        .unwrap();
        assert!(
            !json.contains('@') && !json.to_lowercase().contains("owner"),
            "{json}"
        );
    }
    // TK-5: unsubscribe links carry no expiry; preference links last at least 60 days; the
    // single-use kinds expire within days.
    let claims = |t: &str, p| ring.verify_claims(t, p).unwrap();
    assert_eq!(claims(&tokens[1].1, Purpose::Unsubscribe).exp, None);
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    assert!(claims(&tokens[2].1, Purpose::Manage).exp.unwrap() - now >= 60 * 86_400);
    assert!(claims(&tokens[3].1, Purpose::Export).exp.unwrap() - now <= 2 * 86_400);
    assert!(claims(&tokens[4].1, Purpose::ChangeAddress).exp.unwrap() - now <= 7 * 86_400);
    assert_eq!(
        app.subscription_status("owner@example.org", "weekly").await,
        "confirmed",
        "nothing changed"
    );
}
