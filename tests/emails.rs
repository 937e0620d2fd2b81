//! Snapshots of every kind of email the service sends, each triggered through the running app
//! and taken as the SMTP sink received it: the headers a recipient sees that do not change from
//! one send to the next, the decoded text part and the decoded HTML part. What does change
//! (link tokens, the confirmation's expiry time, ids) is redacted; Date, Message-ID and the DKIM
//! signature are left out.
//!
//! A change to what recipients see fails here with a diff against `tests/snapshots/`. Review
//! it, then accept it with `cargo insta review` (or `INSTA_UPDATE=always cargo test --test
//! emails` and read `git diff tests/snapshots/`).

mod common;

use std::fmt::Write as _;

use common::flows::{confirmed_with_name, sign_up};
use common::{Captured, NEWS, OFFERS, TestApp, header_values, spawn_with_lists};
use mail_parser::{Address, MessageParser, MimeHeaders};
use reqwest::StatusCode;

/// What varies from run to run, and what stands in for it in the snapshots.
const REDACTIONS: &[(&str, &str)] = &[
    // Signed link tokens (JWTs: three base64url parts; their header always starts `eyJ`).
    (r"eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+", "[token]"),
    // The confirmation link's expiry: a day after the send.
    (
        r"\b\d{2} (?:January|February|March|April|May|June|July|August|September|October|November|December) \d{4}, \d{2}:\d{2} UTC",
        "[expiry]",
    ),
    (
        r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b",
        "[uuid]",
    ),
];

async fn app() -> TestApp {
    spawn_with_lists(&[NEWS, OFFERS]).await
}

/// POSTs `body` to the API at `path`, expecting success; returns the answer's JSON, if any.
async fn api_post(app: &TestApp, key: &str, path: &str, body: serde_json::Value) -> serde_json::Value {
    let res = app.api_post(key, path, &body).await;
    assert!(res.status().is_success(), "POST {path}: {}", res.status());
    res.json().await.unwrap_or(serde_json::Value::Null)
}

const CAMPAIGN_MARKDOWN: &str = "# Hello {{ name }}\n\n\
This week in **{{ list_name }}**: three things worth reading.\n\n\
- A short history of the postcard\n\
- Why *plain text* still matters\n\
- Letters from readers\n\n\
[Your preferences]({{ preferences_url }}) · [Leave {{ list_name }}]({{ unsubscribe_url }})";

fn addresses(address: Option<&Address<'_>>) -> Vec<String> {
    address
        .map(|a| {
            a.iter()
                .map(|addr| match (addr.name(), addr.address()) {
                    (Some(name), Some(email)) => format!("{name} <{email}>"),
                    (None, Some(email)) => email.to_owned(),
                    (name, None) => format!("{} <>", name.unwrap_or_default()),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// What a recipient sees of `m`: the envelope, the headers that do not vary (decoded), the
/// text part and the HTML part (decoded; the HTML broken into lines between adjacent tags).
fn seen(m: &Captured) -> String {
    let raw = m.text();
    let parsed = MessageParser::default()
        .parse(&m.data)
        .expect("a message that parses");
    let mut out = String::new();
    let mut header = |name: &str, values: Vec<String>| {
        if values.is_empty() {
            writeln!(out, "{name}: (none)").unwrap();
        }
        for v in values {
            writeln!(out, "{name}: {v}").unwrap();
        }
    };
    header("Envelope-From", vec![m.mail_from.clone()]);
    header("Envelope-To", m.rcpt_to.clone());
    header("From", addresses(parsed.from()));
    header("Sender", addresses(parsed.sender()));
    header("Reply-To", addresses(parsed.reply_to()));
    header("To", addresses(parsed.to()));
    header(
        "Subject",
        parsed.subject().map(str::to_owned).into_iter().collect(),
    );
    for name in [
        "List-Id",
        "List-Unsubscribe",
        "List-Unsubscribe-Post",
        "MIME-Version",
    ] {
        header(name, header_values(&raw, name));
    }
    let content_type = |ct: Option<&mail_parser::ContentType<'_>>| {
        ct.map(|ct| {
            let mut s = format!("{}/{}", ct.ctype(), ct.subtype().unwrap_or_default());
            if let Some(charset) = ct.attribute("charset") {
                write!(s, "; charset={charset}").unwrap();
            }
            s
        })
        .unwrap_or_else(|| "(none)".into())
    };
    header("Content-Type", vec![content_type(parsed.content_type())]);

    assert_eq!(
        (
            parsed.text_body.len(),
            parsed.html_body.len(),
            parsed.attachments.len()
        ),
        (1, 1, 0),
        "one text part, one HTML part, nothing attached"
    );
    let text_part = &parsed.parts[parsed.text_body[0] as usize];
    let html_part = &parsed.parts[parsed.html_body[0] as usize];
    let (text_type, html_type) = (
        content_type(text_part.content_type()),
        content_type(html_part.content_type()),
    );
    assert!(text_type.starts_with("text/plain"), "{text_type}");
    assert!(html_type.starts_with("text/html"), "{html_type}");
    write!(
        out,
        "\n----- {text_type} -----\n{}\n----- {html_type} -----\n{}\n",
        parsed.body_text(0).unwrap().trim_end(),
        // A line break between adjacent tags, so that a diff points at the element that changed.
        parsed.body_html(0).unwrap().trim_end().replace("><", ">\n<")
    )
    .unwrap();
    out
}

/// Snapshots what the recipient of `m` sees, with what varies redacted.
fn assert_email(app: &TestApp, name: &str, description: &str, m: &Captured) {
    let mut settings = insta::Settings::clone_current();
    settings.set_description(description);
    settings.set_omit_expression(true);
    for (pattern, replacement) in REDACTIONS {
        settings.add_filter(pattern, *replacement);
    }
    // The app's own address (its port changes every run), should a link ever be built from it
    // rather than from PUBLIC_URL.
    settings.add_filter(&app.base.replace('.', r"\."), "[listen address]");
    settings.bind(|| insta::assert_snapshot!(name, seen(m)));
}

/// The double opt-in email (OI-4), after a signup to two lists through `POST /subscribe`.
#[tokio::test]
async fn signup_confirmation() {
    let app = app().await;
    let m = sign_up(&app, "zoe@example.org", Some("Zoë Reader"), &["news", "offers"]).await;
    assert_email(
        &app,
        "signup_confirmation",
        "Signup to two lists (POST /subscribe): the double opt-in email",
        &m,
    );
}

/// A campaign written in markdown, as a subscriber gets it (`POST /api/v1/campaigns/{id}/send`).
#[tokio::test]
async fn campaign_message() {
    let app = app().await;
    confirmed_with_name(&app, "zoe@example.org", "Zoë Reader", &["news"]).await;
    let key = app.create_api_key().await;
    let campaign = serde_json::json!({
        "subject": "This week: postcards, plain text — and you ✉",
        "lists": ["news"],
        "markdown": CAMPAIGN_MARKDOWN,
    });
    let id = app.draft_campaign(&key, &campaign).await;
    let before = app.sink.messages().len();
    app.send_campaign(&key, id).await;
    let m = app.wait_for_mail_to(before, "zoe@example.org").await;
    assert_email(
        &app,
        "campaign_message",
        "A markdown campaign sent to a confirmed subscriber of its list",
        &m,
    );
}

/// A campaign written as HTML and text, from another sender on the domain.
#[tokio::test]
async fn campaign_message_from_html_and_text() {
    let app = app().await;
    confirmed_with_name(&app, "zoe@example.org", "Zoë Reader", &["offers"]).await;
    let key = app.create_api_key().await;
    let campaign = serde_json::json!({
        "subject": "Two offers this week",
        "lists": ["offers"],
        "from": "editor@example.com",
        "html": "<h1>Offers for {{ name }}</h1><p>Half price on <em>everything</em> in {{ list_name }}.</p><p><a href=\"{{ unsubscribe_url }}\">No more offers</a></p>",
        "text": "Offers for {{ name }}\n\nHalf price on everything in {{ list_name }}.\n\nNo more offers: {{ unsubscribe_url }}",
    });
    let id = app.draft_campaign(&key, &campaign).await;
    let before = app.sink.messages().len();
    app.send_campaign(&key, id).await;
    let m = app.wait_for_mail_to(before, "zoe@example.org").await;
    assert_email(
        &app,
        "campaign_message_from_html_and_text",
        "An HTML-and-text campaign with its own sender, sent to a confirmed subscriber",
        &m,
    );
}

/// A campaign's test send to a team test recipient (`POST /api/v1/campaigns/{id}/test`).
#[tokio::test]
async fn campaign_test_send() {
    let app = app().await;
    let key = app.create_api_key().await;
    api_post(
        &app,
        &key,
        "/api/v1/test-recipients",
        serde_json::json!({"email": "team@example.org"}),
    )
    .await;
    let campaign = serde_json::json!({
        "subject": "This week: postcards, plain text — and you ✉",
        "lists": ["news"],
        "markdown": CAMPAIGN_MARKDOWN,
    });
    let id = app.draft_campaign(&key, &campaign).await;
    let before = app.sink.messages().len();
    api_post(
        &app,
        &key,
        &format!("/api/v1/campaigns/{id}/test"),
        serde_json::json!({"to": ["team@example.org"]}),
    )
    .await;
    let m = app.wait_for_mail_to(before, "team@example.org").await;
    assert_email(
        &app,
        "campaign_test_send",
        "A markdown campaign's test send to a team test recipient",
        &m,
    );
}

/// A policy version; its date is fixed (and past) so the snapshots stay as they are.
fn policy(version: &str, material: bool) -> serde_json::Value {
    serde_json::json!({
        "version": version,
        "effective_at": "2026-12-01T00:00:00Z",
        "already_in_effect": true,
        "summary": "We now keep server logs for 30 days instead of 90.\n\nWe no longer use an analytics service.",
        "url": format!("https://example.com/privacy/{version}"),
        "material": material,
    })
}

/// A policy version published with `POST /api/v1/policies`, as its notice reaches a subscriber:
/// the first version, or a change to the one before.
async fn assert_policy_notice(material: bool, first: bool, snapshot: &str, description: &str) {
    let app = app().await;
    let key = app.create_api_key().await;
    if !first {
        api_post(&app, &key, "/api/v1/policies", policy("2026-06", false)).await;
    }
    confirmed_with_name(&app, "zoe@example.org", "Zoë Reader", &["news"]).await;
    let before = app.sink.messages().len();
    let version = if material { "2026-12-m" } else { "2026-12" };
    api_post(&app, &key, "/api/v1/policies", policy(version, material)).await;
    let m = app.wait_for_mail_to(before, "zoe@example.org").await;
    assert_email(&app, snapshot, description, &m);
}

/// The notice of a new privacy policy version (CS-12, CS-13).
#[tokio::test]
async fn policy_notice() {
    assert_policy_notice(
        false,
        false,
        "policy_notice",
        "The notice of a new privacy policy version (not material)",
    )
    .await;
}

/// The notice of the first policy version: it introduces the policy, it changes nothing.
#[tokio::test]
async fn policy_notice_first() {
    assert_policy_notice(
        false,
        true,
        "policy_notice_first",
        "The notice of a first privacy policy version",
    )
    .await;
}

/// The notice of a material policy change: it asks for agreement.
#[tokio::test]
async fn policy_notice_material() {
    assert_policy_notice(
        true,
        false,
        "policy_notice_material",
        "The notice of a material privacy policy change, with the link to agree",
    )
    .await;
}

/// A data breach notice, `POST /api/v1/notices/breach`.
#[tokio::test]
async fn breach_notice() {
    let app = app().await;
    confirmed_with_name(&app, "zoe@example.org", "Zoë Reader", &["news"]).await;
    let key = app.create_api_key().await;
    let before = app.sink.messages().len();
    api_post(
        &app,
        &key,
        "/api/v1/notices/breach",
        serde_json::json!({
            "subject": "Important: a security incident — what it means for you",
            "body": "On 1 November an attacker read our subscriber list: names and email addresses.\n\n\
                     We closed the hole the same day & reset every key. <You> need not do anything.",
            "affected": "all",
        }),
    )
    .await;
    let m = app.wait_for_mail_to(before, "zoe@example.org").await;
    assert_email(
        &app,
        "breach_notice",
        "A data breach notice to everyone affected",
        &m,
    );
}

/// The link to a data export (GD-1), from the preference page's button.
#[tokio::test]
async fn export_link() {
    let app = app().await;
    let zoe = confirmed_with_name(&app, "zoe@example.org", "Zoë Reader", &["news"]).await;
    let prefs = app.preferences_path(zoe);
    let before = app.sink.messages().len();
    let res = app.post(&format!("{prefs}/export")).await;
    assert_eq!(res.status(), StatusCode::OK);
    let m = app.wait_for_mail_to(before, "zoe@example.org").await;
    assert_email(
        &app,
        "export_link",
        "The data export link, asked for on the preference page",
        &m,
    );
}

/// The confirmation of a new address (GD-2), sent to the new address from the preference page.
#[tokio::test]
async fn address_change() {
    let app = app().await;
    let zoe = confirmed_with_name(&app, "zoe@example.org", "Zoë Reader", &["news"]).await;
    let prefs = app.preferences_path(zoe);
    let before = app.sink.messages().len();
    let res = app
        .post_form(&format!("{prefs}/address"), "email=zoe.new%40example.org")
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let m = app.wait_for_mail_to(before, "zoe.new@example.org").await;
    assert_email(
        &app,
        "address_change",
        "The confirmation of a change of address, sent to the new address",
        &m,
    );
}

/// The operator's test message (`letterhead send-test --to ADDRESS`).
#[tokio::test]
async fn operator_test_message() {
    let app = app().await;
    let before = app.sink.messages().len();
    app.run_cli(&["send-test", "--to", "operator@example.org"]);
    let m = app.wait_for_mail_to(before, "operator@example.org").await;
    assert_email(
        &app,
        "operator_test_message",
        "The operator's check of the mail set-up (letterhead send-test)",
        &m,
    );
}
