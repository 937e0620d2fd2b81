//! A refusal is about what it names, on every SMTP transport. Only a relay refusing the
//! recipient's mailbox at RCPT suppresses an address; a relay that cannot be reached, or that
//! refuses the session, our credentials or the sender, pauses delivery without spending
//! anyone's attempts (and says why in `GET /api/v1/status` and the log, once); a relay that
//! refuses a campaign's content pauses that campaign with the reason.

mod common;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{NEWS, SmtpSink, Spawn, Stage, TestApp, WAIT, free_port, spawn};
use letterhead::domain::EmailAddress;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// An app with the list news on this sink (a new one when `None`), and an API key.
async fn app_with(sink: Option<Arc<SmtpSink>>, overrides: Vec<(&'static str, String)>) -> (TestApp, String) {
    let app = spawn(Spawn {
        sink,
        overrides,
        lists: vec![NEWS],
        ..Default::default()
    })
    .await;
    let key = app.create_api_key().await;
    (app, key)
}

/// `n` confirmed readers of news (`reader{i}@example.org`, imported with consent evidence,
/// the first time), and a campaign to them, sending.
async fn campaign_to_readers(app: &TestApp, key: &str, n: i64, subject: &str) -> i64 {
    if app.query_i64("SELECT COUNT(*) FROM subscribers").await == 0 {
        let mut csv = String::from("email,name,consented_at,consent_source\n");
        for i in 1..=n {
            csv.push_str(&format!("reader{i}@example.org,Reader {i},2026-01-01,crm\n"));
        }
        let res = app
            .api(key, Method::POST, "/api/v1/lists/news/subscribers/import")
            .header("Content-Type", "text/csv")
            .body(csv)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(res.json::<Value>().await.unwrap()["imported"], n);
    }
    let id = app
        .draft_campaign(
            key,
            &json!({"subject": subject, "lists": ["news"], "markdown": "Hello {{ name }}"}),
        )
        .await;
    app.send_campaign(key, id).await;
    id
}

/// The relay's state as `GET /api/v1/status` shows it.
async fn relay_status(app: &TestApp, key: &str) -> Value {
    let res = app.api_get(key, "/api/v1/status").await;
    assert_eq!(res.status(), StatusCode::OK);
    res.json::<Value>().await.unwrap()["relay"].clone()
}

/// Waits until the relay's state is `state`; returns it then.
async fn wait_for_relay(app: &TestApp, key: &str, state: &str) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let relay = relay_status(app, key).await;
        if relay["state"] == state {
            return relay;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the relay never became {state}: {relay}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Waits until delivery has tried the relay again after two pauses ended (three pauses seen,
/// each with its own end), so that a test's "nothing spent" stands after several tries.
async fn wait_for_two_retries(app: &TestApp, key: &str) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut ends = HashSet::new();
    loop {
        let relay = relay_status(app, key).await;
        if relay["state"] == "paused" {
            ends.insert(relay["until"].as_str().unwrap().to_owned());
            if ends.len() >= 3 {
                return relay;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "delivery did not try again: {relay}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Nothing was given up, no one suppressed, and no row that waits spent an attempt.
async fn nothing_spent(app: &TestApp) {
    for sql in [
        "SELECT COUNT(*) FROM suppressions",
        "SELECT COUNT(*) FROM campaign_recipients WHERE status = 'failed'",
        "SELECT COUNT(*) FROM campaign_recipients WHERE status = 'queued' AND attempts > 0",
        "SELECT COUNT(*) FROM outbox WHERE status = 'failed'",
        "SELECT COUNT(*) FROM outbox WHERE status = 'queued' AND attempts > 0",
    ] {
        assert_eq!(app.query_i64(sql).await, 0, "{sql}");
    }
}

/// What the app logs on this test's thread, from the moment it is made. (A `#[tokio::test]`
/// runs the app's tasks on the test's own thread, so this sees what the workers log.)
struct Log {
    lines: Arc<Mutex<Vec<u8>>>,
    _guard: tracing::subscriber::DefaultGuard,
}

impl Log {
    fn capture() -> Self {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let writer = {
            let lines = lines.clone();
            move || LogWriter(lines.clone())
        };
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::INFO)
            .with_ansi(false)
            .with_writer(writer)
            .finish();
        Log {
            lines,
            _guard: tracing::subscriber::set_default(subscriber),
        }
    }

    /// The lines logged so far that contain `text`.
    fn lines_with(&self, text: &str) -> Vec<String> {
        String::from_utf8_lossy(&self.lines.lock().unwrap())
            .lines()
            .filter(|l| l.contains(text))
            .map(str::to_owned)
            .collect()
    }
}

struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A relay refusing the sender at MAIL FROM refuses every message: delivery pauses, says why
/// (once in the log, and in the status), spends no attempt and suppresses no one; when the
/// relay takes mail again, every recipient gets theirs. (It used to fail and suppress the
/// whole audience within a second.)
#[tokio::test]
async fn a_sender_refused_at_mail_from_pauses_delivery_and_suppresses_no_one() {
    let log = Log::capture();
    let (app, key) = app_with(None, vec![]).await;
    app.sink.refuse(Stage::MailFrom, "550 5.7.1 sender rejected");
    let id = campaign_to_readers(&app, &key, 30, "Spring news").await;

    let paused = wait_for_relay(&app, &key, "paused").await;
    assert_eq!(
        paused["reason"],
        "the relay refused the sender (MAIL FROM): 550 5.7.1 sender rejected"
    );
    assert!(
        paused["since"].is_string() && paused["until"].is_string(),
        "{paused}"
    );
    wait_for_two_retries(&app, &key).await;
    nothing_spent(&app).await;
    let c = app.campaign(&key, id).await;
    assert_eq!(
        (c["status"].as_str(), c["failed"].as_i64()),
        (Some("sending"), Some(0)),
        "{c}"
    );
    assert!(app.sink.mail_commands() > 1, "tried more than once");
    assert!(app.sink.messages().is_empty());

    app.sink.accept_again();
    let done = app.wait_for_campaign(&key, id, "sent").await;
    assert_eq!(
        (done["sent"].as_i64(), done["failed"].as_i64()),
        (Some(30), Some(0)),
        "{done}"
    );
    let to: HashSet<String> = app.sink.messages().iter().map(|m| m.rcpt_to[0].clone()).collect();
    assert_eq!(to.len(), 30);
    wait_for_relay(&app, &key, "sending").await;
    // Once when the pause began, whatever the retries and messages in flight; once when it ended.
    let paused_lines = log.lines_with("delivery paused");
    assert_eq!(paused_lines.len(), 1, "{paused_lines:?}");
    assert!(
        paused_lines[0].contains("550 5.7.1 sender rejected"),
        "{paused_lines:?}"
    );
    assert_eq!(log.lines_with("delivery resumed").len(), 1);
}

/// A relay refusing the content after the data refuses the campaign, not its readers: that
/// campaign pauses with the relay's reply as its reason, nothing is suppressed or spent, and
/// another campaign to the same people reaches all of them. Resuming sends what was held.
#[tokio::test]
async fn refused_content_pauses_that_campaign_and_suppresses_no_one() {
    let (app, key) = app_with(None, vec![]).await;
    app.sink.refuse(Stage::Data, "550 5.7.1 content rejected as spam");
    let spam = campaign_to_readers(&app, &key, 10, "Buy now").await;

    let paused = app.wait_for_campaign(&key, spam, "paused").await;
    assert_eq!(
        paused["paused_reason"],
        "the relay refused the content: 550 5.7.1 content rejected as spam"
    );
    app.wait_until(
        "SELECT COUNT(*) FROM campaign_blocks WHERE lease_owner IS NOT NULL",
        0,
        WAIT,
    )
    .await;
    nothing_spent(&app).await;
    assert_eq!(
        app.query_i64("SELECT COUNT(*) FROM campaign_recipients WHERE status = 'queued'")
            .await,
        10
    );
    assert_eq!(
        relay_status(&app, &key).await["state"],
        "sending",
        "the relay itself is fine"
    );

    app.sink.accept_again();
    let news = campaign_to_readers(&app, &key, 10, "Spring news").await;
    let done = app.wait_for_campaign(&key, news, "sent").await;
    assert_eq!(
        (done["recipients"].as_i64(), done["sent"].as_i64()),
        (Some(10), Some(10)),
        "{done}"
    );
    assert_eq!(
        app.campaign(&key, spam).await["status"],
        "paused",
        "held until resumed"
    );

    let res = app
        .api_post_empty(&key, &format!("/api/v1/campaigns/{spam}/resume"))
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let done = app.wait_for_campaign(&key, spam, "sent").await;
    assert_eq!(
        (done["sent"].as_i64(), done["failed"].as_i64()),
        (Some(10), Some(0)),
        "{done}"
    );
    assert!(done["paused_reason"].is_null(), "{done}");
    assert_eq!(app.sink.messages().len(), 20);
}

/// A test send of a campaign whose content the relay refuses fails, which is what the
/// operator testing it wants to learn: nothing pauses, no one is suppressed.
#[tokio::test]
async fn a_test_send_whose_content_is_refused_fails_and_pauses_nothing() {
    let (app, key) = app_with(None, vec![]).await;
    let id = app
        .draft_campaign(
            &key,
            &json!({"subject": "Buy now", "lists": ["news"], "markdown": "Hello {{ name }}"}),
        )
        .await;
    let res = app
        .api_post(
            &key,
            "/api/v1/test-recipients",
            &json!({"email": "team@example.org"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    app.sink.refuse(Stage::Data, "554 5.7.1 content rejected as spam");
    let res = app
        .api_post(
            &key,
            &format!("/api/v1/campaigns/{id}/test"),
            &json!({"to": ["team@example.org"]}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    app.wait_until(
        "SELECT COUNT(*) FROM outbox WHERE kind = 'campaign_test' AND status = 'failed' \
         AND last_error = '554 5.7.1 content rejected as spam'",
        1,
        WAIT,
    )
    .await;
    assert_eq!(app.query_i64("SELECT COUNT(*) FROM suppressions").await, 0);
    assert_eq!(relay_status(&app, &key).await["state"], "sending");
    assert_eq!(app.campaign(&key, id).await["status"], "draft");
}

/// A relay that refuses the session (its greeting) or our credentials (AUTH) holds every
/// message, confirmations included: none fails; each arrives once the relay accepts.
async fn a_refused_session_holds_confirmations(stage: Stage, reply: &str, expected_reason: &str) {
    let sink = SmtpSink::start().await;
    sink.refuse(stage, reply);
    let (app, key) = app_with(
        Some(sink.clone()),
        vec![(
            "MAIL_TRANSPORT",
            format!("smtp://newsletter:wrong-password@127.0.0.1:{}", sink.port),
        )],
    )
    .await;
    let res = app
        .post_json(
            "/subscribe",
            &json!({"email": "ann@example.org", "list": ["news"], "consent": true, "age_confirmed": true}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);

    let paused = wait_for_relay(&app, &key, "paused").await;
    assert_eq!(paused["reason"], expected_reason);
    wait_for_two_retries(&app, &key).await;
    nothing_spent(&app).await;
    assert!(sink.messages().is_empty());

    sink.accept_again();
    app.wait_for_mail_to(0, "ann@example.org").await;
    app.wait_until(
        "SELECT COUNT(*) FROM outbox WHERE kind = 'confirmation' AND status = 'sent' AND attempts = 1",
        1,
        WAIT,
    )
    .await;
    wait_for_relay(&app, &key, "sending").await;
}

#[tokio::test]
async fn wrong_credentials_hold_confirmations_until_the_relay_accepts() {
    a_refused_session_holds_confirmations(
        Stage::Auth,
        "535 5.7.8 authentication credentials invalid",
        "the relay refused our credentials (AUTH): 535 5.7.8 authentication credentials invalid",
    )
    .await;
}

#[tokio::test]
async fn a_554_greeting_holds_confirmations_until_the_relay_accepts() {
    a_refused_session_holds_confirmations(
        Stage::Greeting,
        "554 5.3.2 no service here",
        "the relay refused the session: 554 5.3.2 no service here",
    )
    .await;
}

/// GY-6 precisely: a mailbox refused at RCPT as unknown (5.1.1) suppresses that one address;
/// a recipient refused for policy (5.7.1) fails that message and suppresses no one; everyone
/// else gets theirs.
#[tokio::test]
async fn only_an_unknown_mailbox_at_rcpt_suppresses_the_address() {
    let (app, key) = app_with(None, vec![]).await;
    app.sink.refuse_for(
        Stage::Rcpt,
        "reader1@",
        "550 5.1.1 <reader1@example.org>: user unknown",
    );
    app.sink
        .refuse_for(Stage::Rcpt, "reader2@", "550 5.7.1 recipient refused by policy");
    let first = campaign_to_readers(&app, &key, 3, "Spring news").await;
    let done = app.wait_for_campaign(&key, first, "sent").await;
    assert_eq!(
        (done["sent"].as_i64(), done["failed"].as_i64()),
        (Some(1), Some(2)),
        "{done}"
    );
    assert_eq!(
        app.query_i64("SELECT COUNT(*) FROM campaign_recipients WHERE status = 'failed' AND attempts = 1")
            .await,
        2,
        "a 5xx at RCPT is final"
    );

    let gone = app
        .state
        .address_hasher
        .hash(&EmailAddress::parse("reader1@example.org").unwrap());
    assert_eq!(
        app.query_i64(&format!(
            "SELECT COUNT(*) FROM suppressions WHERE reason = 'hard_bounce' AND address_hmac = '{}'",
            gone.as_str()
        ))
        .await,
        1
    );
    assert_eq!(app.query_i64("SELECT COUNT(*) FROM suppressions").await, 1);
    assert_eq!(relay_status(&app, &key).await["state"], "sending");

    // The next campaign leaves out only the unknown mailbox.
    app.sink.accept_again();
    let next = campaign_to_readers(&app, &key, 3, "Summer news").await;
    let done = app.wait_for_campaign(&key, next, "sent").await;
    assert_eq!(
        (done["recipients"].as_i64(), done["sent"].as_i64()),
        (Some(2), Some(2)),
        "{done}"
    );
}

/// `smtps://` to a port where nothing listens: the same outage as over `smtp://`. With
/// `DELIVERY_MAX_ATTEMPTS=3` and several tries later, no recipient failed or spent an
/// attempt: all are still there to send. (Over lettre's own pool, each recipient used to
/// spend its three attempts and fail.)
#[tokio::test]
async fn implicit_tls_to_a_relay_that_is_down_spends_no_attempts() {
    let port = free_port(); // nothing listens there yet
    let (app, key) = app_with(
        None,
        vec![
            ("MAIL_TRANSPORT", format!("smtps://127.0.0.1:{port}")),
            ("DELIVERY_MAX_ATTEMPTS", "3".into()),
        ],
    )
    .await;
    let id = campaign_to_readers(&app, &key, 5, "Spring news").await;
    let paused = wait_for_two_retries(&app, &key).await;
    assert!(
        paused["reason"]
            .as_str()
            .unwrap()
            .starts_with("connecting to the relay failed"),
        "{paused}"
    );
    nothing_spent(&app).await;
    assert_eq!(app.campaign(&key, id).await["failed"], 0);
    assert_eq!(
        app.query_i64("SELECT COUNT(*) FROM campaign_recipients WHERE status IN ('queued', 'sending')")
            .await,
        5
    );
}

/// `smtps://` to a relay that speaks plain SMTP: TLS fails on every try, the reason says so,
/// and the log says it once, not once per message or per try.
#[tokio::test]
async fn a_tls_failure_is_reported_once() {
    let log = Log::capture();
    let sink = SmtpSink::start().await;
    let (app, key) = app_with(
        Some(sink.clone()),
        vec![("MAIL_TRANSPORT", format!("smtps://127.0.0.1:{}", sink.port))],
    )
    .await;
    campaign_to_readers(&app, &key, 5, "Spring news").await;
    let paused = wait_for_two_retries(&app, &key).await;
    let reason = paused["reason"].as_str().unwrap();
    assert!(reason.starts_with("TLS with the relay failed"), "{paused}");
    nothing_spent(&app).await;
    assert!(sink.sessions() >= 3, "tried on every retry");
    assert!(sink.messages().is_empty(), "nothing in clear");
    let lines = log.lines_with("delivery paused");
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains("TLS with the relay failed"), "{lines:?}");
}
