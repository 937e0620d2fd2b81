//! The operator's dashboard over HTTP, as a browser uses it: signing in with an API key, the
//! session cookie, CSRF refusals, a revoked key, the limits, the campaign buttons, and each
//! page's numbers against what the database holds.

mod common;

use common::flows::{confirmed, sign_up};
use common::{NEWS, OFFERS, Spawn, Stage, TestApp, WAIT, spawn, spawn_with_lists};
use reqwest::{Response, StatusCode};
use serde_json::json;

const SIGN_IN_COOKIE: &str = "letterhead_admin_sign_in";
const SESSION_COOKIE: &str = "letterhead_admin";

/// The `Set-Cookie` header that sets (or clears) cookie `name`.
fn set_cookie(res: &Response, name: &str) -> Option<String> {
    res.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(str::to_owned)
}

/// `name=value` of a `Set-Cookie` header, as a browser sends it back.
fn pair(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap().to_owned()
}

fn location(res: &Response) -> &str {
    res.headers()["location"].to_str().unwrap()
}

/// The value of the first `csrf` field of a page.
fn csrf_in(page: &str) -> String {
    let at = page.find(r#"name="csrf" value=""#).expect("a csrf field") + r#"name="csrf" value=""#.len();
    page[at..page[at..].find('"').unwrap() + at].to_owned()
}

/// The number shown in the element with id `id` (thousands separators removed).
fn number(page: &str, id: &str) -> i64 {
    let at = page
        .find(&format!(r#"id="{id}""#))
        .unwrap_or_else(|| panic!("no element {id} on the page"));
    let text_starts = at + page[at..].find('>').unwrap() + 1;
    let text = &page[text_starts..text_starts + page[text_starts..].find('<').unwrap()];
    text.replace(',', "")
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("{id} shows {text:?}"))
}

/// The text of the element with id `id`.
fn text_of(page: &str, id: &str) -> String {
    let at = page
        .find(&format!(r#"id="{id}""#))
        .unwrap_or_else(|| panic!("no element {id} on the page"));
    let text_starts = at + page[at..].find('>').unwrap() + 1;
    page[text_starts..text_starts + page[text_starts..].find('<').unwrap()].to_owned()
}

/// The numbers of the chart table's row for `day`, in the order of the chart's series.
fn day_row(page: &str, chart: &str, day: &str) -> Vec<i64> {
    let figure = &page[page.find(&format!(r#"<figure id="{chart}""#)).unwrap()..];
    let figure = &figure[..figure.find("</figure>").unwrap()];
    let Some(at) = figure.find(&format!(r#"data-day="{day}""#)) else {
        return Vec::new();
    };
    let row = &figure[at..at + figure[at..].find("</tr>").unwrap()];
    row.split(r#"<td class="n">"#)
        .skip(1)
        .map(|cell| cell[..cell.find('<').unwrap()].replace(',', "").parse().unwrap())
        .collect()
}

fn today() -> String {
    letterhead::store::daily_counts::day_of(time::OffsetDateTime::now_utc())
}

fn form(fields: &[(&str, &str)]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(fields)
        .finish()
}

/// The sign-in form as a browser gets it: its cookie and its CSRF token.
async fn sign_in_form(app: &TestApp) -> (String, String) {
    let res = app.get("/admin/sign-in").await;
    assert_eq!(res.status(), StatusCode::OK);
    let cookie = set_cookie(&res, SIGN_IN_COOKIE).expect("the form sets its cookie");
    let page = res.text().await.unwrap();
    (pair(&cookie), csrf_in(&page))
}

async fn post_sign_in(app: &TestApp, cookie: &str, csrf: &str, key: &str) -> Response {
    app.http
        .post(app.url("/admin/sign-in"))
        .header("cookie", cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[("csrf", csrf), ("key", key)]))
        .send()
        .await
        .unwrap()
}

/// A browser signed in to the dashboard: it sends its session cookie back.
struct Dashboard<'a> {
    app: &'a TestApp,
    cookie: String,
}

async fn sign_in<'a>(app: &'a TestApp, key: &str) -> Dashboard<'a> {
    let (cookie, csrf) = sign_in_form(app).await;
    let res = post_sign_in(app, &cookie, &csrf, key).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&res), "/admin/campaigns");
    let session = set_cookie(&res, SESSION_COOKIE).expect("a session cookie");
    Dashboard {
        app,
        cookie: pair(&session),
    }
}

impl Dashboard<'_> {
    async fn get(&self, path: &str) -> Response {
        self.app
            .http
            .get(self.app.url(path))
            .header("cookie", &self.cookie)
            .send()
            .await
            .unwrap()
    }

    /// A page that must answer 200.
    async fn page(&self, path: &str) -> String {
        let res = self.get(path).await;
        assert_eq!(res.status(), StatusCode::OK, "GET {path}");
        res.text().await.unwrap()
    }

    /// The session's CSRF token, as its pages carry it.
    async fn csrf(&self) -> String {
        csrf_in(&self.page("/admin/campaigns").await)
    }

    async fn post_with(&self, path: &str, fields: &[(&str, &str)], origin: Option<&str>) -> Response {
        let mut req = self
            .app
            .http
            .post(self.app.url(path))
            .header("cookie", &self.cookie)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form(fields));
        if let Some(origin) = origin {
            req = req.header("origin", origin);
        }
        req.send().await.unwrap()
    }

    /// A press of a button: the form with the session's token, from the dashboard's origin.
    async fn press(&self, path: &str) -> Response {
        let csrf = self.csrf().await;
        self.post_with(path, &[("csrf", &csrf)], Some(&self.app.base))
            .await
    }
}

#[tokio::test]
async fn an_api_key_signs_in_and_signing_out_ends_the_session() {
    let app = spawn_with_lists(&[NEWS]).await;
    let key = app.create_api_key().await;

    let res = app.get("/admin/campaigns").await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&res), "/admin/sign-in");

    let res = app.get("/admin/sign-in").await;
    let form_cookie = set_cookie(&res, SIGN_IN_COOKIE).unwrap();
    assert!(form_cookie.contains("HttpOnly") && form_cookie.contains("SameSite=Strict"));
    assert!(!form_cookie.contains("Secure"), "PUBLIC_URL is http here");
    let page = res.text().await.unwrap();
    assert!(page.contains(r#"type="password" name="key""#));

    let (cookie, csrf) = sign_in_form(&app).await;
    let wrong = post_sign_in(&app, &cookie, &csrf, "lh_not-a-key-of-ours").await;
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert!(set_cookie(&wrong, SESSION_COOKIE).is_none());
    assert!(wrong.text().await.unwrap().contains("not an active API key"));

    let res = post_sign_in(&app, &cookie, &csrf, &key).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let session = set_cookie(&res, SESSION_COOKIE).unwrap();
    for attribute in ["Path=/admin", "Max-Age=28800", "HttpOnly", "SameSite=Strict"] {
        assert!(session.contains(attribute), "{attribute} in {session}");
    }
    assert!(
        !session.contains(&key),
        "the cookie carries a signed session, not the key"
    );
    let dashboard = Dashboard {
        app: &app,
        cookie: pair(&session),
    };
    let page = dashboard.page("/admin/campaigns").await;
    assert!(page.contains("Signed in with the API key <strong>tests</strong>"));
    for section in ["/admin/lists", "/admin/deliverability", "/admin/compliance"] {
        assert!(page.contains(&format!(r#"href="{section}""#)));
        dashboard.page(section).await;
    }
    let res = dashboard.get("/admin").await;
    assert_eq!(location(&res), "/admin/campaigns");

    let out = dashboard.press("/admin/sign-out").await;
    assert_eq!(out.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&out), "/admin/sign-in?signed-out");
    assert!(set_cookie(&out, SESSION_COOKIE).unwrap().contains("Max-Age=0"));
    // The cookie, kept by someone who copied it, opens nothing any more.
    let res = dashboard.get("/admin/campaigns").await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&res), "/admin/sign-in?ended");
}

#[tokio::test]
async fn the_session_cookie_is_secure_when_the_public_url_is_https() {
    let app = spawn(Spawn {
        overrides: vec![("PUBLIC_URL", "https://news.example.com".into())],
        ..Default::default()
    })
    .await;
    let key = app.create_api_key().await;
    let (cookie, csrf) = sign_in_form(&app).await;
    assert!(cookie.starts_with(SIGN_IN_COOKIE));
    let res = post_sign_in(&app, &cookie, &csrf, &key).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let session = set_cookie(&res, SESSION_COOKIE).unwrap();
    assert!(session.ends_with("; Secure"), "{session}");
    // A form posted from the public origin is this site's.
    let dashboard = Dashboard {
        app: &app,
        cookie: pair(&session),
    };
    let csrf = dashboard.csrf().await;
    let out = dashboard
        .post_with(
            "/admin/sign-out",
            &[("csrf", &csrf)],
            Some("https://news.example.com"),
        )
        .await;
    assert_eq!(out.status(), StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn a_form_without_the_sessions_token_or_from_another_site_is_refused() {
    let app = spawn_with_lists(&[NEWS]).await;
    let key = app.create_api_key().await;
    let dashboard = sign_in(&app, &key).await;
    let csrf = dashboard.csrf().await;

    for (fields, origin) in [
        (vec![], None),
        (vec![("csrf", "forged")], None),
        (vec![("csrf", &csrf[1..])], None),
        (vec![("csrf", csrf.as_str())], Some("https://evil.example")),
        (vec![("csrf", csrf.as_str())], Some("null")),
    ] {
        let res = dashboard.post_with("/admin/sign-out", &fields, origin).await;
        assert_eq!(res.status(), StatusCode::FORBIDDEN, "{fields:?} from {origin:?}");
        assert!(res.text().await.unwrap().contains("This form cannot be accepted"));
    }
    // Nothing was done: the session still holds.
    dashboard.page("/admin/campaigns").await;

    // Another session's token is not this one's.
    let other = sign_in(&app, &key).await;
    let res = dashboard
        .post_with("/admin/sign-out", &[("csrf", &other.csrf().await)], None)
        .await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);

    // The sign-in form: its token is bound to its cookie, which a second tab shares.
    let (cookie, csrf) = sign_in_form(&app).await;
    let (other_cookie, _) = sign_in_form(&app).await;
    let second_tab = app
        .http
        .get(app.url("/admin/sign-in"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(csrf_in(&second_tab.text().await.unwrap()), csrf);
    for (cookie, csrf) in [
        ("", csrf.as_str()),
        (other_cookie.as_str(), csrf.as_str()),
        (cookie.as_str(), "x"),
    ] {
        let res = post_sign_in(&app, cookie, csrf, &key).await;
        assert_eq!(res.status(), StatusCode::FORBIDDEN);
        assert!(set_cookie(&res, SESSION_COOKIE).is_none());
    }

    // A campaign button pressed without the token changes nothing.
    let id = app
        .draft_campaign(
            &key,
            &json!({"subject": "Draft", "lists": ["news"], "markdown": "Hi"}),
        )
        .await;
    let res = dashboard
        .post_with(&format!("/admin/campaigns/{id}/cancel"), &[], None)
        .await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(app.campaign(&key, id).await["status"], "draft");
}

#[tokio::test]
async fn revoking_the_key_ends_its_sessions() {
    let app = spawn_with_lists(&[NEWS]).await;
    let key = app.create_api_key().await;
    let dashboard = sign_in(&app, &key).await;
    dashboard.page("/admin/lists").await;

    let keys = letterhead::store::api_keys::list(&app.state.db).await.unwrap();
    app.run_cli(&["api-key", "revoke", &keys[0].id.to_string()]);

    let res = dashboard.get("/admin/lists").await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&res), "/admin/sign-in?ended");
    assert!(set_cookie(&res, SESSION_COOKIE).unwrap().contains("Max-Age=0"));
    let page = app.page("/admin/sign-in?ended").await;
    assert!(page.contains("its API key was revoked"));
    let (cookie, csrf) = sign_in_form(&app).await;
    assert_eq!(
        post_sign_in(&app, &cookie, &csrf, &key).await.status(),
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn wrong_keys_are_limited_per_ip_as_the_apis_are() {
    let app = spawn(Spawn {
        overrides: vec![("RATE_LIMIT_API_KEY_FAILURES_PER_MINUTE", "2".into())],
        ..Default::default()
    })
    .await;
    let key = app.create_api_key().await;
    let (cookie, csrf) = sign_in_form(&app).await;
    let mut statuses = Vec::new();
    for _ in 0..3 {
        statuses.push(post_sign_in(&app, &cookie, &csrf, "lh_guess").await.status());
    }
    assert_eq!(
        statuses,
        [
            StatusCode::UNAUTHORIZED,
            StatusCode::UNAUTHORIZED,
            StatusCode::TOO_MANY_REQUESTS
        ]
    );
    // The IP is held off, the right key too, and the API shares the allowance.
    let res = post_sign_in(&app, &cookie, &csrf, &key).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(res.headers().contains_key("retry-after"));
    assert_eq!(
        app.api_get("lh_guess", "/api/v1/lists").await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[tokio::test]
async fn signed_in_pages_count_against_the_keys_limit_with_its_api_calls() {
    let app = spawn(Spawn {
        overrides: vec![("RATE_LIMIT_API_PER_MINUTE", "3".into())],
        ..Default::default()
    })
    .await;
    let key = app.create_api_key().await;
    let dashboard = sign_in(&app, &key).await;
    dashboard.page("/admin/lists").await;
    dashboard.page("/admin/compliance").await;
    assert_eq!(app.api_get(&key, "/api/v1/lists").await.status(), StatusCode::OK);
    let res = dashboard.get("/admin/lists").await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(res.headers().contains_key("retry-after"));
    assert_eq!(
        app.api_get(&key, "/api/v1/lists").await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[tokio::test]
async fn the_campaigns_page_shows_progress_and_its_buttons_pause_resume_and_cancel() {
    let app = spawn(Spawn {
        lists: vec![NEWS],
        // One recipient is refused for now again and again, so the campaign stays sending.
        overrides: vec![("DELIVERY_MAX_ATTEMPTS", "1000".into())],
        ..Default::default()
    })
    .await;
    let key = app.create_api_key().await;
    for who in ["ann", "bob", "carol", "dave"] {
        confirmed(&app, &format!("{who}@example.org"), &["news"]).await;
    }
    app.sink.reply(Stage::Rcpt, "carol@", 550, None);
    app.sink.reply(Stage::Rcpt, "dave@", 451, None);
    let id = app
        .draft_campaign(
            &key,
            &json!({"subject": "Spring news", "lists": ["news"], "markdown": "Hello {{ name }}"}),
        )
        .await;
    app.send_campaign(&key, id).await;
    app.wait_until(
        &format!("SELECT COUNT(*) FROM campaign_recipients WHERE campaign_id = {id} AND status IN ('sent', 'failed')"),
        3,
        WAIT,
    )
    .await;

    let dashboard = sign_in(&app, &key).await;
    let page = dashboard.page("/admin/campaigns").await;
    let c = |what: &str| format!("c{id}-{what}");
    assert_eq!(text_of(&page, &c("status")), "sending");
    let count = |status: &str| {
        format!("SELECT COUNT(*) FROM campaign_recipients WHERE campaign_id = {id} AND status = '{status}'")
    };
    assert_eq!(number(&page, &c("sent")), app.query_i64(&count("sent")).await);
    assert_eq!(number(&page, &c("sent")), 2);
    assert_eq!(number(&page, &c("failed")), app.query_i64(&count("failed")).await);
    assert_eq!(number(&page, &c("failed")), 1);
    assert_eq!(number(&page, &c("skipped")), 0);
    assert_eq!(
        number(&page, &c("recipients")),
        app.query_i64(&format!("SELECT recipients FROM campaigns WHERE id = {id}"))
            .await
    );
    assert_eq!(number(&page, &c("queued")), 1);
    assert!(
        page.contains(&format!(r#"id="{}""#, c("pace"))),
        "a pace while sending"
    );
    assert!(page.contains(&format!(r#"action="/admin/campaigns/{id}/pause""#)));
    assert!(!page.contains(&format!(r#"action="/admin/campaigns/{id}/resume""#)));
    assert!(page.contains("Spring news"));
    for who in ["ann", "bob", "carol", "dave"] {
        assert!(!page.contains(who), "no recipient is named");
    }

    let res = dashboard.press(&format!("/admin/campaigns/{id}/pause")).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&res), format!("/admin/campaigns#c{id}"));
    assert_eq!(app.campaign(&key, id).await["status"], "paused");
    let page = dashboard.page("/admin/campaigns").await;
    assert_eq!(text_of(&page, &c("status")), "paused");
    assert!(page.contains(&format!(r#"action="/admin/campaigns/{id}/resume""#)));
    let again = dashboard.press(&format!("/admin/campaigns/{id}/pause")).await;
    assert_eq!(again.status(), StatusCode::CONFLICT);
    assert!(
        again
            .text()
            .await
            .unwrap()
            .contains("A campaign that is paused cannot be paused.")
    );

    let res = dashboard.press(&format!("/admin/campaigns/{id}/resume")).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(app.campaign(&key, id).await["status"], "sending");

    let res = dashboard.press(&format!("/admin/campaigns/{id}/cancel")).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(app.campaign(&key, id).await["status"], "cancelled");
    let page = dashboard.page("/admin/campaigns").await;
    assert_eq!(text_of(&page, &c("status")), "cancelled");
    assert!(
        !page.contains(&format!("/admin/campaigns/{id}/")),
        "no button is left"
    );

    for (path, status) in [
        (format!("/admin/campaigns/{id}/restart"), StatusCode::NOT_FOUND),
        ("/admin/campaigns/999999/pause".to_owned(), StatusCode::NOT_FOUND),
        ("/admin/campaigns/x/pause".to_owned(), StatusCode::BAD_REQUEST),
    ] {
        assert_eq!(dashboard.press(&path).await.status(), status, "{path}");
    }
}

#[tokio::test]
async fn the_lists_page_counts_subscriptions_and_consent_per_day() {
    let app = spawn_with_lists(&[NEWS, OFFERS]).await;
    let key = app.create_api_key().await;
    confirmed(&app, "ann@example.org", &["news", "offers"]).await;
    let bob = confirmed(&app, "bob@example.org", &["news"]).await;
    sign_up(&app, "carol@example.org", None, &["news"]).await;
    let news = app.list_id("news").await;
    assert_eq!(
        app.one_click_unsubscribe(bob, news).await.status(),
        StatusCode::OK
    );

    let dashboard = sign_in(&app, &key).await;
    let page = dashboard.page("/admin/lists").await;
    for slug in ["news", "offers"] {
        for status in ["confirmed", "pending", "unsubscribed"] {
            let in_db = app
                .query_i64(&format!(
                    "SELECT COUNT(*) FROM subscriptions x JOIN lists l ON l.id = x.list_id \
                     WHERE l.slug = '{slug}' AND x.status = '{status}'"
                ))
                .await;
            assert_eq!(
                number(&page, &format!("list-{slug}-{status}")),
                in_db,
                "{slug} {status}"
            );
        }
    }
    assert_eq!(
        (
            number(&page, "list-news-confirmed"),
            number(&page, "list-news-pending"),
            number(&page, "list-news-unsubscribed")
        ),
        (1, 1, 1)
    );
    for slug in ["news", "offers"] {
        let events = |kind: &str| {
            format!(
                "SELECT COUNT(*) FROM consent_events c JOIN lists l ON l.id = c.list_id \
                 WHERE l.slug = '{slug}' AND c.kind = '{kind}'"
            )
        };
        let expected = vec![
            app.query_i64(&events("signup")).await,
            app.query_i64(&events("confirm")).await,
            app.query_i64(&events("unsubscribe")).await,
        ];
        let chart = format!("chart-{slug}");
        for (i, n) in expected.iter().enumerate() {
            assert_eq!(
                number(&page, &format!("{chart}-total-{i}")),
                *n,
                "{chart} series {i}"
            );
        }
        assert_eq!(day_row(&page, &chart, &today()), expected, "{chart} today");
    }
    assert_eq!(day_row(&page, "chart-news", &today()), [3, 2, 1]);
    assert!(page.contains("<svg"));
    for who in ["ann", "bob", "carol"] {
        assert!(!page.contains(who), "no person is named");
    }
}

#[tokio::test]
async fn the_deliverability_page_counts_sends_deferrals_failures_and_suppressions() {
    let app = spawn_with_lists(&[NEWS]).await;
    let key = app.create_api_key().await;
    confirmed(&app, "ann@example.org", &["news"]).await;
    confirmed(&app, "bob@example.org", &["news"]).await;
    // Ann's message is refused once for now, Bob's for good (a hard bounce).
    app.sink.reply(Stage::Rcpt, "ann@", 451, Some(1));
    app.sink.reply(Stage::Rcpt, "bob@", 550, None);
    assert_eq!(
        app.suppress(&key, "someone@example.org", "complaint")
            .await
            .status(),
        StatusCode::CREATED
    );
    let id = app
        .draft_campaign(
            &key,
            &json!({"subject": "News", "lists": ["news"], "markdown": "Hi"}),
        )
        .await;
    app.send_campaign(&key, id).await;
    app.wait_for_campaign(&key, id, "sent").await;
    app.wait_until(
        "SELECT COUNT(*) FROM outbox WHERE status IN ('queued', 'sending')",
        0,
        WAIT,
    )
    .await;

    let dashboard = sign_in(&app, &key).await;
    let page = dashboard.page("/admin/deliverability").await;
    let sent_rows = app
        .query_i64(
            "SELECT (SELECT COUNT(*) FROM outbox WHERE status = 'sent') \
             + (SELECT COUNT(*) FROM campaign_recipients WHERE status = 'sent')",
        )
        .await;
    let failed_rows = app
        .query_i64(
            "SELECT (SELECT COUNT(*) FROM outbox WHERE status = 'failed') \
             + (SELECT COUNT(*) FROM campaign_recipients WHERE status = 'failed')",
        )
        .await;
    let counter = |names: &str| {
        format!("SELECT CAST(COALESCE(SUM(n), 0) AS BIGINT) FROM daily_counts WHERE counter IN ({names})")
    };
    let suppressed = app
        .query_i64("SELECT COUNT(*) FROM suppressions WHERE reason IN ('hard_bounce', 'complaint', 'manual')")
        .await;
    // Two confirmations and Ann's message; Bob's failed; Ann's was put off once.
    assert_eq!((sent_rows, failed_rows, suppressed), (3, 1, 2));
    assert_eq!(number(&page, "chart-sent-total-0"), sent_rows);
    assert_eq!(
        number(&page, "chart-sent-total-0"),
        app.query_i64(&counter("'sent'")).await
    );
    assert_eq!(number(&page, "chart-trouble-total-0"), 1);
    assert_eq!(
        number(&page, "chart-trouble-total-0"),
        app.query_i64(&counter("'retried', 'deferred'")).await
    );
    assert_eq!(number(&page, "chart-trouble-total-1"), failed_rows);
    assert_eq!(number(&page, "chart-trouble-total-2"), suppressed);
    assert_eq!(day_row(&page, "chart-sent", &today()), [3]);
    assert_eq!(day_row(&page, "chart-trouble", &today()), [1, 1, 2]);
    assert_eq!(number(&page, "relay-due"), 0);
    assert!(page.contains("<strong>Up to date: nothing is waiting to be sent.</strong>"));
    assert!(page.contains(&format!("SMTP relay 127.0.0.1:{}", app.sink.port)));
    for who in ["ann", "bob", "someone"] {
        assert!(!page.contains(who), "no person is named");
    }
}

#[tokio::test]
async fn the_compliance_page_shows_whom_each_notice_reached_and_what_retention_deleted() {
    let app = spawn_with_lists(&[NEWS]).await;
    let key = app.create_api_key().await;
    confirmed(&app, "ann@example.org", &["news"]).await;
    confirmed(&app, "bob@example.org", &["news"]).await;
    let dave = confirmed(&app, "dave@example.org", &["news"]).await;
    let news = app.list_id("news").await;
    assert_eq!(
        app.one_click_unsubscribe(dave, news).await.status(),
        StatusCode::OK
    );
    // Bob's mailbox refuses everything from now on.
    app.sink.reply(Stage::Rcpt, "bob@", 550, None);

    let res = app
        .api_post(
            &key,
            "/api/v1/policies",
            &json!({"version": "2027-01", "effective_at": "2026-12-01T00:00:00Z", "already_in_effect": true,
                    "summary": "Shorter retention.", "url": "https://example.com/privacy/2027-01"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let policy: serde_json::Value = res.json().await.unwrap();
    let notices = "SELECT COUNT(*) FROM outbox WHERE kind = 'policy_notice' AND status IN ('sent', 'failed')";
    app.wait_until(notices, 3, WAIT).await;
    let res = app
        .api_post(
            &key,
            "/api/v1/notices/breach",
            &json!({"subject": "A security incident", "body": "What happened.", "affected": "all"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let breach: serde_json::Value = res.json().await.unwrap();
    app.wait_until(
        "SELECT COUNT(*) FROM outbox WHERE kind = 'breach_notice' AND status = 'sent'",
        2,
        WAIT,
    )
    .await;

    // Dave left long ago: retention deletes him.
    app.backdate_leaving("dave@example.org", &["news"], 400).await;
    app.run_cli(&["retention", "run"]);

    let dashboard = sign_in(&app, &key).await;
    let page = dashboard.page("/admin/compliance").await;
    let p = format!("policy-{}", policy["id"]);
    let in_outbox = |kind: &str, status: &str| {
        format!("SELECT COUNT(*) FROM outbox WHERE kind = '{kind}' AND status = '{status}'")
    };
    assert_eq!(
        number(&page, &format!("{p}-sent")),
        app.query_i64(&in_outbox("policy_notice", "sent")).await
    );
    assert_eq!(
        number(&page, &format!("{p}-failed")),
        app.query_i64(&in_outbox("policy_notice", "failed")).await
    );
    // Ann is told; Bob's mailbox refused; Dave's row went with him.
    assert_eq!(
        (
            number(&page, &format!("{p}-sent")),
            number(&page, &format!("{p}-due")),
            number(&page, &format!("{p}-failed"))
        ),
        (1, 0, 1)
    );
    let b = format!("breach-{}", breach["id"]);
    assert_eq!(
        number(&page, &format!("{b}-queued")),
        2,
        "Ann and Dave (Bob bounced)"
    );
    assert_eq!(
        number(&page, &format!("{b}-sent")),
        app.query_i64(&in_outbox("breach_notice", "sent")).await
    );
    assert_eq!(number(&page, &format!("{b}-due")), 0);

    assert_eq!(
        number(&page, "evidence-people"),
        app.query_i64("SELECT COUNT(DISTINCT subscriber_id) FROM consent_events")
            .await
    );
    assert_eq!(number(&page, "evidence-people"), 2);
    assert_eq!(number(&page, "retention_leavers-all"), 1);
    assert_eq!(
        number(&page, "retention_leavers-90"),
        app.query_i64(
            "SELECT CAST(COALESCE(SUM(n), 0) AS BIGINT) FROM daily_counts WHERE counter = 'retention_leavers'"
        )
        .await
    );
    assert_eq!(
        number(&page, "opted-out"),
        app.query_i64("SELECT COUNT(*) FROM suppressions WHERE reason = 'unsubscribed'")
            .await
    );
    assert_eq!(number(&page, "opted-out"), 1);
    assert_eq!(number(&page, "erased"), 0);
    for who in ["ann", "bob", "dave"] {
        assert!(!page.contains(who), "no person is named");
    }
}

#[tokio::test]
async fn the_pages_run_no_script_and_load_nothing_from_elsewhere() {
    let app = spawn_with_lists(&[NEWS]).await;
    let key = app.create_api_key().await;
    confirmed(&app, "ann@example.org", &["news"]).await;
    let dashboard = sign_in(&app, &key).await;
    for path in [
        "/admin/campaigns",
        "/admin/lists",
        "/admin/deliverability",
        "/admin/compliance",
    ] {
        let res = dashboard.get(path).await;
        assert_eq!(res.status(), StatusCode::OK);
        let csp = res.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(csp.contains("default-src 'none'") && !csp.contains("script-src"));
        assert_eq!(res.headers()["referrer-policy"], "same-origin");
        assert_eq!(res.headers()["cache-control"], "no-store");
        let page = res.text().await.unwrap();
        assert!(!page.contains("<script"), "{path}");
        assert!(
            !page.contains("src=\"http") && !page.contains("href=\"http"),
            "{path}"
        );
    }
}
