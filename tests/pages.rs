//! What the visitor's pages say and how they look: the address each page acts on, links that
//! were used already, the erase confirmation, /privacy before the first policy, pages for links
//! that do not work, and the organisation's logo and colour.

mod common;

use common::flows::{self, confirmation_link, link_in, text_of};
use common::{OFFERS, Spawn, TestApp, WEEKLY, spawn, spawn_with_lists};
use letterhead::services::signup::{CONSENT_TEXT, CONSENT_TEXT_WITHOUT_POLICY};
use reqwest::StatusCode;

async fn app() -> TestApp {
    spawn_with_lists(&[WEEKLY, OFFERS]).await
}

/// The part of a page between `<main>` and `</main>`: what it says, without the footer.
fn main_of(page: &str) -> &str {
    let start = page.find("<main>").expect("a main element");
    let end = page.find("</main>").expect("a main element");
    &page[start..end]
}

/// The path of the first link on `page` whose address contains `part`.
fn link_path(page: &str, part: &str) -> String {
    let href = page
        .split("href=\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .find(|href| href.contains(part))
        .unwrap_or_else(|| panic!("no link to {part} in {page}"));
    url::Url::parse(href).map_or_else(|_| href.to_owned(), |u| u.path().to_owned())
}

/// The answer to a signup names the address as typed, masked; the same whatever its state.
#[tokio::test]
async fn the_check_your_inbox_page_names_the_address_masked() {
    let app = app().await;
    let form = "email=Ada.Lovelace%40example.org&list=weekly&consent=yes&age_confirmed=yes";
    let first = app.post_form("/subscribe", form).await;
    assert_eq!(first.status(), StatusCode::OK);
    let first = first.text().await.unwrap();
    assert!(first.contains("<strong>A…@example.org</strong>"), "{first}");
    assert!(!first.contains("Ada.Lovelace"), "never the whole address");
    let again = app.post_form("/subscribe", form).await.text().await.unwrap();
    assert_eq!(again, first, "a repeat (now pending) answers the same (OI-9)");
}

/// Pages behind a signed link name the full address; a used confirmation link says the
/// subscription is confirmed instead of asking again.
#[tokio::test]
async fn a_confirmation_link_names_the_address_and_says_when_its_work_is_done() {
    let app = app().await;
    let mail = flows::sign_up(&app, "reader@example.org", None, &["weekly", "offers"]).await;
    let link = confirmation_link(&mail);

    let ask = app.page(&link).await;
    let ask = main_of(&ask);
    assert!(
        ask.contains("reader@example.org") && ask.contains("Special Offers"),
        "{ask}"
    );
    assert!(ask.contains("method=\"post\""));

    let done = app.post(&link).await.text().await.unwrap();
    assert!(main_of(&done).contains("<strong>reader@example.org</strong> is now subscribed to"));

    for again in [app.get(&link).await, app.post(&link).await] {
        assert_eq!(again.status(), StatusCode::OK);
        let page = again.text().await.unwrap();
        let main = main_of(&page);
        assert!(main.contains("Your subscription is already confirmed"), "{main}");
        assert!(main.contains("Weekly News") && main.contains("Special Offers"));
        assert!(!main.contains("<form"), "no button to press again");
        let prefs = link_path(main, "/preferences/");
        assert_eq!(app.get(&prefs).await.status(), StatusCode::OK, "{prefs}");
    }
    assert_eq!(
        app.query_i64("SELECT COUNT(*) FROM consent_events WHERE kind = 'confirm'")
            .await,
        2,
        "one confirmation per list, once"
    );
}

/// An unsubscribe link for someone already unsubscribed says so, and leads to the preference
/// page, where the list can be taken up again.
#[tokio::test]
async fn a_used_unsubscribe_link_shows_the_state_and_the_way_back() {
    let app = app().await;
    let a = flows::confirmed(&app, "leaver@example.org", &["weekly"]).await;
    let path = app.unsubscribe_path(a, app.list_id("weekly").await);

    let ask = app.page(&path).await;
    let ask = main_of(&ask);
    assert!(
        ask.contains("Unsubscribe from Weekly News?") && ask.contains("<strong>leaver@example.org</strong>")
    );

    assert_eq!(app.post(&path).await.status(), StatusCode::OK);
    let page = app.page(&path).await;
    let main = main_of(&page);
    assert!(
        main.contains("You are already unsubscribed from Weekly News"),
        "{main}"
    );
    assert!(main.contains("leaver@example.org") && !main.contains("<form"));
    let prefs_path = link_path(main, "/preferences/");
    assert_eq!(
        app.post_form(&prefs_path, "list=weekly").await.status(),
        StatusCode::OK
    );
    assert_eq!(
        app.subscription_status("leaver@example.org", "weekly").await,
        "confirmed"
    );
    assert!(
        app.page(&path).await.contains("Unsubscribe from Weekly News?"),
        "subscribed again: the button is back"
    );

    // A person erased since: the link still answers, with nothing to name.
    assert_eq!(
        app.post(&format!("{prefs_path}/erase")).await.status(),
        StatusCode::OK
    );
    let page = app.page(&path).await;
    assert!(main_of(&page).contains("You are already unsubscribed from Weekly News"));
    assert!(!page.contains("leaver@example.org"));
}

/// "Erase my data" is a page of its own: GET shows what goes and one red button, and changes
/// nothing; the POST erases. The preference page only links to it.
#[tokio::test]
async fn erasure_asks_on_a_page_of_its_own() {
    let app = app().await;
    let a = flows::confirmed_with_name(&app, "eraser@example.org", "Eve Raser", &["weekly", "offers"]).await;
    let prefs = app.preferences_path(a);
    let erase = format!("{prefs}/erase");

    let page = app.page(&prefs).await;
    assert!(
        page.contains(&format!("<a class=\"button danger\" href=\"{erase}\">")),
        "{page}"
    );
    assert!(
        !page.contains(&format!("action=\"{erase}\"")),
        "no erase form on the preference page"
    );

    let res = app.get(&erase).await;
    assert_eq!(res.status(), StatusCode::OK);
    let page = res.text().await.unwrap();
    let main = main_of(&page);
    for needle in [
        "eraser@example.org",
        "Eve Raser",
        "Weekly News",
        "Special Offers",
        "cannot be undone",
    ] {
        assert!(main.contains(needle), "{needle:?} in {main}");
    }
    assert_eq!(main.matches("<button").count(), 1, "one button");
    assert!(main.contains(&format!("<form method=\"post\" action=\"{erase}\">")));
    assert!(main.contains("<button class=\"danger confirm\" type=\"submit\">Erase my data now</button>"));
    assert!(
        page.contains("button.danger.confirm{background:var(--danger);color:#fff}"),
        "filled red"
    );
    assert_eq!(
        app.query_i64("SELECT COUNT(*) FROM subscribers").await,
        1,
        "GET erases nothing"
    );

    let done = app.post(&erase).await;
    assert_eq!(done.status(), StatusCode::OK);
    assert!(
        done.text()
            .await
            .unwrap()
            .contains("everything we held about eraser@example.org")
    );
    assert_eq!(app.query_i64("SELECT COUNT(*) FROM subscribers").await, 0);
}

/// The export page names the address; a download link used once says so and leads to the
/// preference page for a new one.
#[tokio::test]
async fn a_spent_download_link_says_what_happened_and_what_to_do() {
    let app = app().await;
    let a = flows::confirmed(&app, "copy@example.org", &["weekly"]).await;
    let before = app.sink.messages().len();
    let asked = app.post(&format!("{}/export", app.preferences_path(a))).await;
    assert!(
        asked
            .text()
            .await
            .unwrap()
            .contains("download link for your data to copy@example.org")
    );
    let mail = app.wait_for_mail_to(before, "copy@example.org").await;
    let link = link_in(&text_of(&mail), "/export/");

    let page = app.page(&link).await;
    assert!(main_of(&page).contains("everything we keep about <strong>copy@example.org</strong>"));
    assert_eq!(app.post(&link).await.status(), StatusCode::OK);

    for again in [app.get(&link).await, app.post(&link).await] {
        assert_eq!(again.status(), StatusCode::GONE);
        let page = again.text().await.unwrap();
        let main = main_of(&page);
        assert!(main.contains("This download link was used already"), "{main}");
        assert!(main.contains("copy@example.org") && !main.contains("<form"));
        assert_eq!(
            app.get(&link_path(main, "/preferences/")).await.status(),
            StatusCode::OK
        );
    }
}

/// Before the first policy takes effect, /privacy says when it will, and the signup form does
/// not claim a policy was read: the evidence records no version and the text shown.
#[tokio::test]
async fn before_the_first_policy_the_form_claims_no_reading() {
    let app = app().await;
    let key = app.create_api_key().await;
    let upcoming = serde_json::json!({"version": "2026-12", "effective_at": "2099-01-01T00:00:00Z",
        "summary": "Our first policy.", "url": "https://example.com/privacy/2026-12"});
    assert_eq!(
        app.api_post(&key, "/api/v1/policies", &upcoming).await.status(),
        StatusCode::CREATED
    );

    let privacy = app.page("/privacy").await;
    assert!(privacy.contains("Our first privacy policy takes effect on <strong>1 January 2099</strong>"));
    assert!(privacy.contains("Version 2026-12, effective from 1 January 2099"));
    assert!(!privacy.contains("No policy version has been published yet"));

    let form = app.page("/subscribe").await;
    assert!(
        form.contains(CONSENT_TEXT_WITHOUT_POLICY) && !form.contains("I have read"),
        "{form}"
    );
    let body = "email=early%40example.org&list=weekly&consent=yes&age_confirmed=yes";
    assert_eq!(app.post_form("/subscribe", body).await.status(), StatusCode::OK);
    let recorded = |text: &str, version: &str| {
        format!(
            "SELECT COUNT(*) FROM consent_events WHERE kind = 'signup' AND consent_text = '{text}' \
             AND policy_version {version}"
        )
    };
    assert_eq!(
        app.query_i64(&recorded(CONSENT_TEXT_WITHOUT_POLICY, "IS NULL"))
            .await,
        1
    );

    let in_force = serde_json::json!({"version": "2025-01", "effective_at": "2025-01-01T00:00:00Z", "already_in_effect": true,
        "summary": "The policy now.", "url": "https://example.com/privacy/2025-01"});
    assert_eq!(
        app.api_post(&key, "/api/v1/policies", &in_force).await.status(),
        StatusCode::CREATED
    );
    let form = app.page("/subscribe").await;
    assert!(form.contains(CONSENT_TEXT) && form.contains("href=\"/privacy\">Privacy policy</a>"));
    let body = "email=later%40example.org&list=weekly&consent=yes&age_confirmed=yes";
    assert_eq!(app.post_form("/subscribe", body).await.status(), StatusCode::OK);
    assert_eq!(app.query_i64(&recorded(CONSENT_TEXT, "= '2025-01'")).await, 1);
}

/// A link from an email that does not work says what to do instead: leave by writing to the
/// contact address, use the links in another email, or sign up again.
#[tokio::test]
async fn dead_ends_offer_a_way_on() {
    let app = app().await;
    let a = flows::confirmed(&app, "lost@example.org", &["weekly"]).await;
    let tamper = |path: String| format!("{}x", path);
    let unsubscribe = tamper(app.unsubscribe_path(a, app.list_id("weekly").await));
    let preferences = tamper(app.preferences_path(a));
    let export = tamper(app.state.links.export(a).path().to_owned());
    let confirm = "/confirm/not.a.token".to_owned();
    let mailto = "<a href=\"mailto:privacy@example.com\">privacy@example.com</a>";

    for res in [
        app.get(&unsubscribe).await,
        app.post_form(&unsubscribe, "List-Unsubscribe=One-Click").await,
    ] {
        assert_eq!(res.status(), StatusCode::BAD_REQUEST);
        let page = res.text().await.unwrap();
        let main = main_of(&page);
        assert!(
            main.contains("You can still unsubscribe")
                && main.contains("<a href=\"mailto:privacy@example.com?subject=Unsubscribe\">"),
            "{main}"
        );
        assert!(main.contains("link at the foot of any other email"));
    }
    for path in [&preferences, &format!("{preferences}/erase"), &export] {
        let page = app.page(path).await;
        let main = main_of(&page);
        assert!(
            main.contains("This link is not valid") && main.contains(mailto),
            "{path}: {main}"
        );
        assert!(main.contains("Manage your preferences"), "{path}");
    }
    let page = app.page(&confirm).await;
    let main = main_of(&page);
    assert!(main.contains("<a href=\"/subscribe\">Sign up again</a>") && main.contains(mailto));

    // Programs still get a problem, not a page.
    let res = app
        .http
        .get(app.url(&unsubscribe))
        .header("Accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    assert_eq!(
        app.subscription_status("lost@example.org", "weekly").await,
        "confirmed"
    );
}

/// Every page is laid out for a phone as for a desktop, in the site's default colour, and
/// loads nothing from elsewhere.
#[tokio::test]
async fn pages_load_nothing_from_elsewhere_by_default() {
    let app = app().await;
    let res = app.get("/subscribe").await;
    let csp = res.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(csp.contains("img-src 'self';"), "{csp}");
    let page = res.text().await.unwrap();
    assert!(
        page.contains("*,*::before,*::after{box-sizing:border-box}"),
        "inputs fit their column"
    );
    assert!(page.contains("--accent:#1f5fa8"));
    assert!(!page.contains("<img") && !page.contains("<script") && !page.contains("<link"));
}

/// BRAND_LOGO_URL and BRAND_ACCENT_COLOR: the logo in the header of every page (the only
/// image from elsewhere, allowed by the CSP), the colour on buttons, links and headings, with
/// button text that reads on it.
#[tokio::test]
async fn the_organisation_logo_and_colour_are_on_every_page() {
    let app = spawn(Spawn {
        overrides: vec![
            ("BRAND_LOGO_URL", "https://cdn.example.com/brand/logo.png".into()),
            ("BRAND_ACCENT_COLOR", "#FFD700".into()),
        ],
        lists: vec![WEEKLY],
        ..Default::default()
    })
    .await;
    for path in ["/", "/subscribe", "/privacy", "/notices", "/unsubscribe/broken"] {
        let res = app.get(path).await;
        let csp = res.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(
            csp.contains("img-src 'self' https://cdn.example.com;"),
            "{path}: {csp}"
        );
        let page = res.text().await.unwrap();
        assert!(
            page.contains("<header class=\"site\"><a href=\"/\"><img src=\"https://cdn.example.com/brand/logo.png\" alt=\"\">"),
            "{path}: {page}"
        );
        assert!(
            page.contains(":root{--accent:#ffd700;--on-accent:#000;"),
            "{path}"
        );
        assert!(!page.contains("<script"));
    }
}
