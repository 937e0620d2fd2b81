//! Scenarios of several steps that test files share: signing someone up and confirming through
//! HTTP and the SMTP sink, and reading what the mail says.

use letterhead::domain::EmailAddress;
use reqwest::StatusCode;

use super::TestApp;
use super::smtp_sink::Captured;

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

/// The link in a confirmation email's text part.
pub fn confirmation_link(m: &Captured) -> String {
    link_in(&text_of(m), "/confirm/")
}

/// Signs `email` up to `lists` through the form's JSON endpoint (with a name when given) and
/// waits for the confirmation email; returns it as received.
pub async fn sign_up(app: &TestApp, email: &str, name: Option<&str>, lists: &[&str]) -> Captured {
    let before = app.sink.messages().len();
    let mut body = serde_json::json!({"email": email, "list": lists, "consent": true, "age_confirmed": true});
    if let Some(name) = name {
        body["name"] = name.into();
    }
    let res = app.post_json("/subscribe", &body).await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    app.wait_for_mail_to(before, email).await
}

/// Signs up to `lists` and confirms, through HTTP and the sink; returns the subscriber's uuid.
pub async fn confirmed(app: &TestApp, email: &str, lists: &[&str]) -> uuid::Uuid {
    confirm(app, email, sign_up(app, email, None, lists).await).await
}

/// [`confirmed`], with the name given at signup.
pub async fn confirmed_with_name(app: &TestApp, email: &str, name: &str, lists: &[&str]) -> uuid::Uuid {
    confirm(app, email, sign_up(app, email, Some(name), lists).await).await
}

/// Follows the confirmation email's link; returns the subscriber's uuid.
async fn confirm(app: &TestApp, email: &str, confirmation: Captured) -> uuid::Uuid {
    let link = confirmation_link(&confirmation);
    assert_eq!(app.post(&link).await.status(), StatusCode::OK);
    letterhead::store::subscriptions::subscriber_by_email(&app.state.db, &EmailAddress::parse(email).unwrap())
        .await
        .unwrap()
        .expect("the subscriber exists")
        .uuid
}
