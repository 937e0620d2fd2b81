//! Scenario helpers shared by test files: lists, a confirmed subscriber through the real HTTP
//! flow, and reading links out of captured mail.

use std::time::Duration;

use letterhead::domain::{EmailAddress, ListSlug};
use reqwest::StatusCode;
use sea_orm::{ConnectionTrait, Statement};

use super::TestApp;
use super::smtp_sink::Captured;

pub const WAIT: Duration = Duration::from_secs(20);

/// Creates a public list behind the API's back, so the form's cache is told to forget.
pub async fn add_list(app: &TestApp, slug: &str, name: &str) -> i64 {
    let list =
        letterhead::store::lists::create(&app.state.db, &ListSlug::parse(slug).unwrap(), name, None, true)
            .await
            .unwrap();
    app.state.public_lists.forget();
    list.id
}

pub fn text_of(m: &Captured) -> String {
    mail_parser::MessageParser::default()
        .parse(&m.data)
        .unwrap()
        .body_text(0)
        .unwrap()
        .into_owned()
}

pub fn html_of(m: &Captured) -> String {
    mail_parser::MessageParser::default()
        .parse(&m.data)
        .unwrap()
        .body_html(0)
        .unwrap()
        .into_owned()
}

/// The first link in `text` that starts with `prefix` (a path such as "/confirm/").
pub fn link_in(text: &str, prefix: &str) -> String {
    let start = text
        .find(prefix)
        .unwrap_or_else(|| panic!("no {prefix} link in\n{text}"));
    text[start..].split_whitespace().next().unwrap().to_owned()
}

/// Signs up to `lists` and confirms, through HTTP and the sink; returns the subscriber's uuid.
pub async fn confirmed(app: &TestApp, email: &str, lists: &[&str]) -> uuid::Uuid {
    let before = app.sink.messages().len();
    let res = app
        .http
        .post(app.url("/subscribe"))
        .json(&serde_json::json!({"email": email, "list": lists, "consent": true, "age_confirmed": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let msgs = app.sink.wait_for(before + 1, WAIT).await;
    let m = msgs
        .iter()
        .rev()
        .find(|m| m.rcpt_to[0] == email.to_ascii_lowercase() || m.rcpt_to[0] == email)
        .unwrap();
    let path = link_in(&text_of(m), "/confirm/");
    assert_eq!(
        app.http.post(app.url(&path)).send().await.unwrap().status(),
        StatusCode::OK
    );
    letterhead::store::subscriptions::subscriber_by_email(&app.state.db, &EmailAddress::parse(email).unwrap())
        .await
        .unwrap()
        .unwrap()
        .uuid
}

/// The status of `email`'s subscription to `list`, or "none".
pub async fn status(app: &TestApp, email: &str, list: &str) -> String {
    let db = &app.state.db;
    db.query_one_raw(Statement::from_sql_and_values(
        db.get_database_backend(),
        "SELECT x.status FROM subscriptions x JOIN subscribers s ON s.id = x.subscriber_id \
         JOIN lists l ON l.id = x.list_id WHERE s.email_key = $1 AND l.slug = $2",
        [email.to_ascii_lowercase().into(), list.into()],
    ))
    .await
    .unwrap()
    .map(|r| r.try_get_by_index::<String>(0).unwrap())
    .unwrap_or_else(|| "none".into())
}
