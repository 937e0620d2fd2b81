//! Operating the service, seen from outside: the real binary runs a person's whole way through
//! (signup, confirmation, a campaign, a one-click unsubscribe, the preference page, erasure)
//! and an operator's (an opt-out by API), while Prometheus scrapes `METRICS_ADDR` and the logs
//! go to a pipe. Each test runs its own process, so the counters are that process's alone.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::flows::{html_of, link_in, text_of};
use common::{Captured, SmtpSink, Stage, TestDb, WAIT, base_settings};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// The service as an operator runs it: `letterhead serve` with its stderr captured.
struct Served {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    /// Reads stderr into `lines` until the process closes it.
    reader: Option<std::thread::JoinHandle<()>>,
    settings: Vec<(String, String)>,
    base: String,
    metrics: String,
    http: reqwest::Client,
}

impl Served {
    /// Starts `letterhead serve` on ports of its own (read back from its first lines), with
    /// metrics on and these settings on top of the tests' usual ones.
    fn start(db: &TestDb, sink: &SmtpSink, extra: &[(&str, &str)]) -> Self {
        let mut settings = base_settings(&db.url, sink.port);
        settings.push(("METRICS_ADDR".into(), "127.0.0.1:0".into()));
        settings.push(("DEFAULT_LIST".into(), "weekly:The Weekly".into()));
        settings.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let mut child = letterhead(&settings)
            .arg("serve")
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().unwrap();
        let collected = lines.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                collected.lock().unwrap().push(line);
            }
        });
        let mut served = Served {
            child,
            lines,
            reader: Some(reader),
            settings,
            base: String::new(),
            metrics: String::new(),
            http: reqwest::Client::new(),
        };
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            let log = served.log();
            let listening = address_after(&log, "listening on http://");
            let metrics = address_after(&log, "metrics: http://");
            if let (Some(listening), Some(metrics)) = (listening, metrics) {
                served.base = format!("http://{listening}");
                served.metrics = format!("http://{metrics}/metrics");
                return served;
            }
            if let Ok(Some(status)) = served.child.try_wait() {
                panic!("letterhead serve exited ({status}):\n{log}");
            }
            assert!(std::time::Instant::now() < deadline, "no start-up lines:\n{log}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Everything logged so far.
    fn log(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    /// Stops the service (SIGKILL; the test is done with it) and returns its whole log.
    fn stop(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // The process is gone, so its stderr ends: the reader has read every line once it returns.
        if let Some(reader) = self.reader.take() {
            reader.join().unwrap();
        }
        self.log()
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// An API key, made as an operator makes one: with the command line.
    fn create_api_key(&self) -> String {
        let out = letterhead(&self.settings)
            .args(["api-key", "create", "--name", "operations"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .last()
            .unwrap()
            .to_owned()
    }

    /// Every series of the scrape, by name and labels as Prometheus shows them.
    async fn scrape(&self) -> Scrape {
        let res = self.http.get(&self.metrics).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        let content_type = res.headers()["content-type"].to_str().unwrap().to_owned();
        assert!(
            content_type.starts_with("text/plain; version=0.0.4"),
            "{content_type}"
        );
        let text = res.text().await.unwrap();
        let series = text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .map(|l| {
                let (name, value) = l.rsplit_once(' ').unwrap();
                (name.to_owned(), value.parse().unwrap())
            })
            .collect();
        Scrape { text, series }
    }

    /// Waits until the outbox has nothing queued or being sent (through the API).
    async fn wait_for_outbox_drained(&self, key: &str) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let status: Value = self
                .http
                .get(self.url("/api/v1/status"))
                .bearer_auth(key)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if status["outbox"]["queued"] == 0 && status["outbox"]["sending"] == 0 {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "outbox never drained: {status}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `letterhead` binary with exactly these settings (nothing inherited but PATH).
fn letterhead(settings: &[(String, String)]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_letterhead"));
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(settings.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null());
    command
}

/// The `host:port` that follows `prefix` in the log.
fn address_after(log: &str, prefix: &str) -> Option<String> {
    let start = log.find(prefix)? + prefix.len();
    let address: String = log[start..]
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
        .collect();
    Some(address)
}

struct Scrape {
    text: String,
    series: HashMap<String, f64>,
}

impl Scrape {
    /// A series' value; a series never touched counts as 0.
    fn get(&self, series: &str) -> f64 {
        self.series.get(series).copied().unwrap_or(0.0)
    }
}

/// What the flow showed that must never reach a log line or a label: addresses (also as a
/// form encodes them), names, and every token and key the flow used.
#[derive(Default)]
struct Personal(Vec<String>);

impl Personal {
    fn address(&mut self, address: &str) {
        self.0.push(address.to_owned());
        self.0.push(address.replace('@', "%40"));
        self.0.push(address.split('@').next().unwrap().to_owned());
    }

    /// A name, also as a form encodes it, and its last word.
    fn name(&mut self, name: &str) {
        self.0.push(name.to_owned());
        self.0.push(name.replace(' ', "+"));
        self.0.push(name.rsplit(' ').next().unwrap().to_owned());
    }

    /// Every link token in an email, whole and each of its signed parts.
    fn tokens_in(&mut self, message: &Captured) {
        for text in [text_of(message), html_of(message)] {
            for prefix in ["/confirm/", "/unsubscribe/", "/preferences/"] {
                for (at, _) in text.match_indices(prefix) {
                    let token: String = text[at + prefix.len()..]
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
                        .collect();
                    let parts: Vec<&str> = token.split('.').collect();
                    assert_eq!(parts.len(), 3, "a signed token in {prefix}: {token}");
                    self.0.push(parts[1].to_owned());
                    self.0.push(parts[2].to_owned());
                    self.0.push(token);
                }
            }
        }
    }

    fn secret(&mut self, secret: &str) {
        self.0.push(secret.to_owned());
    }

    /// The first of them that `text` contains.
    fn found_in(&self, text: &str) -> Option<&str> {
        self.0.iter().map(String::as_str).find(|p| text.contains(p))
    }
}

const ADA: &str = "ada.lovelace@example.org";
const GRACE: &str = "grace.hopper@example.org";
/// An address the relay refuses (550, quoting it in its reply).
const REFUSED: &str = "refused.reader@example.org";
/// An address on the suppression list (it bounced before).
const BOUNCED: &str = "bounced.reader@example.org";

/// What the flow leaves for the checks.
struct Flow {
    key: String,
    personal: Personal,
    /// The `x-request-id` of Grace's signup.
    signup_request_id: String,
}

/// Four signups (one by form, one by JSON, one the relay refuses, one suppressed before it
/// signs up), a malformed one, two confirmations, a campaign to the two confirmed, Ada's
/// one-click unsubscribe, her preference page and her erasure, and Grace's opt-out recorded by
/// an operator through the API.
async fn run_flow(served: &Served, sink: &SmtpSink) -> Flow {
    let http = &served.http;
    let mut personal = Personal::default();
    for address in [ADA, GRACE, REFUSED, BOUNCED] {
        personal.address(address);
    }
    for name in ["Ada Lovelace", "Grace Hopper", "Ada Kingsley-Noel"] {
        personal.name(name);
    }
    let key = served.create_api_key();
    personal.secret(&key);
    sink.reply(Stage::Rcpt, "refused.reader", 550, None);
    let suppressed = http
        .post(served.url("/api/v1/suppressions"))
        .bearer_auth(&key)
        .json(&json!({"email": BOUNCED, "reason": "bounce"}))
        .send()
        .await
        .unwrap();
    assert!(suppressed.status().is_success(), "{}", suppressed.status());

    let form = "email=ada.lovelace%40example.org&name=Ada+Lovelace&list=weekly&consent=yes&age_confirmed=yes";
    let res = http
        .post(served.url("/subscribe"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let res = http
        .post(served.url("/subscribe"))
        .json(&json!({"email": GRACE, "name": "Grace Hopper", "list": ["weekly"], "consent": true, "age_confirmed": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let signup_request_id = res.headers()["x-request-id"].to_str().unwrap().to_owned();
    for address in [REFUSED, BOUNCED] {
        let res = http
            .post(served.url("/subscribe"))
            .json(&json!({"email": address, "list": ["weekly"], "consent": true, "age_confirmed": true}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::ACCEPTED);
    }
    // A body that is not a JSON object, but an address: refused, and not quoted in any log.
    let res = http
        .post(served.url("/subscribe"))
        .header("content-type", "application/json")
        .body(format!("\"{ADA}\""))
        .send()
        .await
        .unwrap();
    assert!(res.status().is_client_error(), "{}", res.status());

    // The two confirmations arrive (the refused one is not accepted, the suppressed one not sent).
    let confirmations = sink.wait_for(2, WAIT).await;
    for message in &confirmations {
        personal.tokens_in(message);
        let link = link_in(&text_of(message), "/confirm/");
        let res = http.post(served.url(&link)).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
    }
    served.wait_for_outbox_drained(&key).await;

    let res = http
        .post(served.url("/api/v1/campaigns"))
        .bearer_auth(&key)
        .json(&json!({"subject": "This week", "lists": ["weekly"], "markdown": "# Hello {{ name }}\n\nOur letter."}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    let id = res.json::<Value>().await.unwrap()["id"].as_i64().unwrap();
    let res = http
        .post(served.url(&format!("/api/v1/campaigns/{id}/send")))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let all = sink.wait_for(4, WAIT).await;
    let campaign: Vec<&Captured> = all[2..].iter().collect();
    for message in &campaign {
        personal.tokens_in(message);
    }
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let c: Value = http
            .get(served.url(&format!("/api/v1/campaigns/{id}")))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if c["status"] == "sent" {
            assert_eq!(c["sent"], 2, "{c}");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "campaign never sent: {c}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Ada leaves with one click, opens her preference page, renames herself, and is erased.
    let to_ada = campaign
        .iter()
        .find(|m| m.rcpt_to == [ADA])
        .expect("the campaign reached Ada");
    let text = text_of(to_ada);
    let unsubscribe = served.url(&link_in(&text, "/unsubscribe/"));
    let res = http
        .post(&unsubscribe)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("List-Unsubscribe=One-Click")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let preferences = served.url(&link_in(&text, "/preferences/"));
    let page = http.get(&preferences).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert!(
        page.text().await.unwrap().contains(ADA),
        "the page shows her address"
    );
    let res = http
        .post(&preferences)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("name=Ada+Kingsley-Noel")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let erase = format!("{preferences}/erase");
    assert_eq!(http.get(&erase).send().await.unwrap().status(), StatusCode::OK);
    assert_eq!(http.post(&erase).send().await.unwrap().status(), StatusCode::OK);

    // Grace writes in to leave; the operator records it, after a first try with a body that
    // is not a JSON object but her address (refused, and quoted in no log line).
    let res = http
        .post(served.url("/api/v1/unsubscribes"))
        .bearer_auth(&key)
        .header("content-type", "application/json")
        .body(format!("\"{GRACE}\""))
        .send()
        .await
        .unwrap();
    assert!(res.status().is_client_error(), "{}", res.status());
    let res = http
        .post(served.url("/api/v1/unsubscribes"))
        .bearer_auth(&key)
        .json(&json!({"email": GRACE}))
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success(), "{}", res.status());
    Flow {
        key,
        personal,
        signup_request_id,
    }
}

/// The counters move by what happened, the gauges read the state, and no label carries an
/// address, a name or a token. The default logs are plain text without colour codes, one line
/// per request with its request id, route, status and latency.
#[tokio::test(flavor = "multi_thread")]
async fn metrics_count_what_happened_and_name_no_one() {
    let db = TestDb::new().await;
    let sink = SmtpSink::start().await;
    let served = Served::start(&db, &sink, &[]);
    let before = served.scrape().await;
    let flow = run_flow(&served, &sink).await;
    served.wait_for_outbox_drained(&flow.key).await;
    let after = served.scrape().await;
    let moved = |series: &str| after.get(series) - before.get(series);

    for (series, expected) in [
        ("letterhead_signups_total", 4.0),
        ("letterhead_confirmations_total", 2.0),
        (r#"letterhead_unsubscribes_total{via="one_click"}"#, 1.0),
        (r#"letterhead_unsubscribes_total{via="operator"}"#, 1.0),
        (r#"letterhead_unsubscribes_total{via="page"}"#, 0.0),
        ("letterhead_erasures_total", 1.0),
        (
            r#"letterhead_messages_total{kind="confirmation",outcome="sent"}"#,
            2.0,
        ),
        (
            r#"letterhead_messages_total{kind="confirmation",outcome="failed"}"#,
            1.0,
        ),
        (
            r#"letterhead_messages_total{kind="confirmation",outcome="suppressed"}"#,
            1.0,
        ),
        (
            r#"letterhead_messages_total{kind="campaign",outcome="sent"}"#,
            2.0,
        ),
        (
            r#"letterhead_messages_total{kind="campaign",outcome="failed"}"#,
            0.0,
        ),
        (
            r#"letterhead_http_requests_total{method="POST",route="/subscribe",status="2xx"}"#,
            4.0,
        ),
        (
            r#"letterhead_http_requests_total{method="POST",route="/subscribe",status="4xx"}"#,
            1.0,
        ),
        (
            r#"letterhead_http_requests_total{method="POST",route="/confirm/{token}",status="2xx"}"#,
            2.0,
        ),
        (
            r#"letterhead_http_requests_total{method="POST",route="/unsubscribe/{token}",status="2xx"}"#,
            1.0,
        ),
        (
            r#"letterhead_http_requests_total{method="GET",route="/preferences/{token}",status="2xx"}"#,
            1.0,
        ),
        (
            r#"letterhead_http_requests_total{method="POST",route="/preferences/{token}/erase",status="2xx"}"#,
            1.0,
        ),
        (
            r#"letterhead_http_request_duration_seconds_count{method="POST",route="/subscribe",status="2xx"}"#,
            4.0,
        ),
        // Four messages accepted (two confirmations, two campaign emails), one refused; five
        // signed (the suppressed confirmation never was).
        (r#"letterhead_smtp_send_duration_seconds_count{result="ok"}"#, 4.0),
        (
            r#"letterhead_smtp_send_duration_seconds_count{result="permanent"}"#,
            1.0,
        ),
        ("letterhead_dkim_sign_duration_seconds_count", 5.0),
    ] {
        assert_eq!(moved(series), expected, "{series}\n{}", after.text);
    }
    assert_eq!(after.get("letterhead_relay_paused"), 0.0, "{}", after.text);
    let max = after.get("letterhead_db_pool_max_connections");
    assert!(max >= 1.0, "{}", after.text);
    let in_use = after.get(r#"letterhead_db_pool_connections{state="in_use"}"#);
    assert!((0.0..=max).contains(&in_use), "{}", after.text);
    // The backlogs are read at most every few seconds: wait for a reading after the flow.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let scrape = served.scrape().await;
        let queued = [
            r#"letterhead_queue_depth{queue="outbox",status="queued"}"#,
            r#"letterhead_queue_depth{queue="outbox",status="sending"}"#,
            r#"letterhead_queue_depth{queue="campaign_recipients",status="queued"}"#,
            r#"letterhead_queue_depth{queue="campaign_recipients",status="sending"}"#,
        ];
        if queued.iter().all(|s| scrape.series.get(*s) == Some(&0.0)) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{}", scrape.text);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    if let Some(found) = flow.personal.found_in(&after.text) {
        panic!("the scrape shows {found:?}:\n{}", after.text);
    }

    let log = served.stop();
    assert!(!log.contains('\x1b'), "no colour codes in a pipe:\n{log}");
    let request = log
        .lines()
        .find(|l| l.contains(&flow.signup_request_id) && l.contains("finished processing request"))
        .unwrap_or_else(|| panic!("no line for request {}:\n{log}", flow.signup_request_id));
    for part in ["route=\"/subscribe\"", "method=POST", "status=202", "latency="] {
        assert!(request.contains(part), "{part} in {request}");
    }
    if let Some(found) = flow.personal.found_in(&log) {
        panic!("the log shows {found:?}:\n{log}");
    }
}

/// At the most verbose level, in JSON, no line carries an address, a name, a token, the API
/// key or the database password, and every request ends with a line naming its request id.
#[tokio::test(flavor = "multi_thread")]
async fn no_personal_data_in_any_log_line_even_at_trace() {
    let db = TestDb::new().await;
    let sink = SmtpSink::start().await;
    // The test server lets any password in (trust); the service must not repeat this one.
    let password = "db-password-never-logged";
    let database_url = if db.is_postgres() {
        let mut url = url::Url::parse(&db.url).unwrap();
        url.set_password(Some(password)).unwrap();
        url.to_string()
    } else {
        db.url.clone()
    };
    let served = Served::start(
        &db,
        &sink,
        &[
            ("RUST_LOG", "trace"),
            ("LOG_FORMAT", "json"),
            ("DATABASE_URL", &database_url),
        ],
    );
    let mut flow = run_flow(&served, &sink).await;
    flow.personal.secret(password);
    served.wait_for_outbox_drained(&flow.key).await;
    let log = served.stop();

    let lines: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not one JSON object ({e}): {l}")))
        .collect();
    assert!(
        lines.len() > 50,
        "the whole flow is in the log: {} lines",
        lines.len()
    );
    let finished: Vec<&Value> = lines
        .iter()
        .filter(|l| l["fields"]["message"] == "finished processing request")
        .collect();
    assert!(finished.len() >= 15, "{} requests", finished.len());
    for line in &finished {
        let id = line["span"]["request_id"].as_str().unwrap_or_default();
        assert_eq!(id.len(), 36, "a request id: {line}");
        assert!(line["span"]["route"].is_string(), "{line}");
        assert!(line["fields"]["status"].is_number(), "{line}");
        assert!(line["fields"]["latency"].is_string(), "{line}");
    }
    assert!(
        finished
            .iter()
            .any(|l| l["span"]["request_id"] == flow.signup_request_id.as_str()
                && l["span"]["route"] == "/subscribe"
                && l["fields"]["status"] == 202),
        "the signup's line"
    );
    if let Some(found) = flow.personal.found_in(&log) {
        let line = log.lines().find(|l| l.contains(found));
        panic!("the log shows {found:?}: {}", line.unwrap_or_default());
    }
}
