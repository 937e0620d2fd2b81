//! The test harness: the real application on port 0 with its own database and a real SMTP sink,
//! and [`TestApp`], the app as a test drives it: as a person's browser or mail client does, as
//! a marketing tool with an API key does, and, to look at what happened, through the store.
//!
//! The database is a temporary SQLite file, or — when `TEST_DATABASE_URL` names a PostgreSQL
//! server — a fresh database created for the test and dropped afterwards.

#![allow(dead_code)]

pub mod bulk;
pub mod dkim_check;
pub mod flows;
pub mod smtp_sink;
pub mod tcp_proxy;

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use letterhead::app::Application;
use letterhead::config::{Config, Settings};
use letterhead::delivery;
use letterhead::domain::{EmailAddress, ListSlug};
use letterhead::edge::AppState;
use letterhead::store;
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use sea_orm::{ConnectionTrait, Statement};
use serde_json::Value;
use tokio::sync::oneshot;

#[allow(unused_imports)]
pub use smtp_sink::{Captured, SmtpSink, Stage};

pub const DKIM_DOMAIN: &str = "example.com";
pub const DKIM_SELECTOR: &str = "test";

/// How long a test waits for mail to arrive or a row to change before it fails.
pub const WAIT: Duration = Duration::from_secs(20);

/// A public list: its slug and its name.
pub type List = (&'static str, &'static str);

pub const NEWS: List = ("news", "Weekly News");
pub const WEEKLY: List = ("weekly", "Weekly News");
pub const OFFERS: List = ("offers", "Special Offers");

pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// A database of the test's own.
pub struct TestDb {
    pub url: String,
    _dir: Option<tempfile::TempDir>,
    pg: Option<(String, String)>,
}

impl TestDb {
    pub async fn new() -> Self {
        match std::env::var("TEST_DATABASE_URL")
            .ok()
            .filter(|u| u.starts_with("postgres"))
        {
            Some(admin) => {
                let name = format!("lh_test_{}", uuid::Uuid::new_v4().simple());
                let db = sea_orm::Database::connect(&admin)
                    .await
                    .expect("TEST_DATABASE_URL reachable");
                db.execute_unprepared(&format!("CREATE DATABASE {name}"))
                    .await
                    .unwrap();
                db.close().await.ok();
                let mut url = url::Url::parse(&admin).unwrap();
                url.set_path(&format!("/{name}"));
                TestDb {
                    url: url.to_string(),
                    _dir: None,
                    pg: Some((admin, name)),
                }
            }
            None => {
                let dir = tempfile::tempdir().unwrap();
                let url = format!("sqlite://{}?mode=rwc", dir.path().join("test.db").display());
                TestDb {
                    url,
                    _dir: Some(dir),
                    pg: None,
                }
            }
        }
    }

    /// A SQLite database in `dir` (kept by the caller).
    pub fn sqlite_in(dir: &std::path::Path) -> Self {
        TestDb {
            url: format!("sqlite://{}?mode=rwc", dir.join("test.db").display()),
            _dir: None,
            pg: None,
        }
    }

    pub fn is_postgres(&self) -> bool {
        self.pg.is_some()
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some((admin, name)) = self.pg.take() {
            // Drop runs outside async; a short-lived runtime on its own thread does the work.
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async {
                    if let Ok(db) = sea_orm::Database::connect(&admin).await {
                        let _ = db
                            .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                            .await;
                        let _ = db.close().await;
                    }
                });
            })
            .join();
        }
    }
}

/// The settings every test app starts from: DKIM on with the test key, fast retries, and rate
/// limits high enough that only a test that sets one meets it.
pub fn base_settings(db_url: &str, smtp_port: u16) -> Vec<(String, String)> {
    [
        ("DATABASE_URL", db_url.to_owned()),
        ("LISTEN_ADDR", "127.0.0.1:0".into()),
        ("PUBLIC_URL", "http://127.0.0.1:3000".into()),
        ("MAIL_TRANSPORT", format!("smtp://127.0.0.1:{smtp_port}")),
        ("ORG_NAME", "Example Newsletter Ltd".into()),
        (
            "ORG_POSTAL_ADDRESS",
            "1 Example Street\\n12345 Example City".into(),
        ),
        ("ORG_CONTACT_EMAIL", "privacy@example.com".into()),
        ("MAIL_FROM", "news@example.com".into()),
        ("NOTICE_FROM", "notices@example.com".into()),
        ("DKIM_DOMAIN", DKIM_DOMAIN.into()),
        ("DKIM_SELECTOR", DKIM_SELECTOR.into()),
        (
            "DKIM_PRIVATE_KEY",
            fixture("dkim-test-rsa2048.pem").display().to_string(),
        ),
        ("DELIVERY_POLL_MS", "50".into()),
        ("DELIVERY_RETRY_BASE_MS", "200".into()),
        ("RATE_LIMIT_PUBLIC_PER_MINUTE", "1000".into()),
        ("RATE_LIMIT_SIGNUP_PER_MINUTE", "10000".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// The configuration these settings make (they must be valid).
pub fn config_from(settings: &[(String, String)]) -> Config {
    Config::from_settings(&Settings::from_pairs(
        settings.iter().map(|(k, v)| (k.as_str(), v.as_str())),
    ))
    .expect("test configuration is valid")
}

/// A port on 127.0.0.1 that nothing listens on now (taken and given back at once).
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// `value` as JSON in unpadded base64url: how a token's header and claims are written.
pub fn base64url_json(value: &Value) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(value.to_string())
}

pub struct TestApp {
    pub addr: SocketAddr,
    pub base: String,
    pub state: AppState,
    /// What the delivery workers hold (the stamp, the transport).
    pub delivery: Arc<delivery::Context>,
    pub sink: Arc<SmtpSink>,
    pub db: Arc<TestDb>,
    pub settings: Vec<(String, String)>,
    pub http: reqwest::Client,
    shutdown: Option<oneshot::Sender<()>>,
    handle: Option<tokio::task::JoinHandle<()>>,
}

#[derive(Default)]
pub struct Spawn {
    pub db: Option<Arc<TestDb>>,
    pub sink: Option<Arc<SmtpSink>>,
    pub overrides: Vec<(&'static str, String)>,
    /// Public lists to create once the app runs.
    pub lists: Vec<List>,
}

impl Spawn {
    /// An instance on this database and this SMTP sink: a second server beside a running one,
    /// or a restart.
    pub fn sharing(db: Arc<TestDb>, sink: Arc<SmtpSink>) -> Self {
        Spawn {
            db: Some(db),
            sink: Some(sink),
            ..Default::default()
        }
    }
}

pub async fn spawn_app() -> TestApp {
    spawn(Spawn::default()).await
}

/// An app with these public lists.
pub async fn spawn_with_lists(lists: &[List]) -> TestApp {
    spawn(Spawn {
        lists: lists.to_vec(),
        ..Default::default()
    })
    .await
}

pub async fn spawn(opts: Spawn) -> TestApp {
    // Warnings and errors show with a failing test's output (RUST_LOG for more).
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_test_writer()
        .try_init();
    let db = match opts.db {
        Some(db) => db,
        None => Arc::new(TestDb::new().await),
    };
    let sink = match opts.sink {
        Some(s) => s,
        None => SmtpSink::start().await,
    };
    let mut settings = base_settings(&db.url, sink.port);
    for (k, v) in opts.overrides {
        settings.retain(|(key, _)| key != k);
        settings.push((k.to_owned(), v));
    }
    let app = Application::build(config_from(&settings))
        .await
        .expect("app builds");
    let addr = app.local_addr();
    let state = app.state();
    let delivery = app.delivery();
    let (tx, rx) = oneshot::channel::<()>();
    let handle = tokio::spawn(async move {
        if let Err(e) = app
            .run_until(async {
                let _ = rx.await;
            })
            .await
        {
            eprintln!("the test app stopped with an error: {e:#}");
        }
    });
    let app = TestApp {
        addr,
        base: format!("http://{addr}"),
        state,
        delivery,
        sink,
        db,
        settings,
        http: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            // The server closes a connection idle for HEADER_READ_TIMEOUT_SECONDS (10 s); a
            // client must let go of it sooner, or a request sent just then meets a reset.
            .pool_idle_timeout(std::time::Duration::from_secs(5))
            .build()
            .unwrap(),
        shutdown: Some(tx),
        handle: Some(handle),
    };
    for (slug, name) in opts.lists {
        app.add_list(slug, name).await;
    }
    app
}

/// The app's life: start another instance, stop, kill, run its command line.
impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// A second instance of the service on this app's database and SMTP sink.
    pub async fn another_instance(&self) -> TestApp {
        spawn(Spawn::sharing(self.db.clone(), self.sink.clone())).await
    }

    /// Stops the app gracefully and waits until its server and worker have finished.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.handle.take() {
            tokio::time::timeout(Duration::from_secs(30), h)
                .await
                .expect("graceful stop")
                .unwrap();
        }
    }

    /// Kills the app without a graceful stop (its worker leaves leases behind).
    pub fn abort(mut self) {
        if let Some(h) = self.handle.take() {
            h.abort();
        }
    }

    /// The `letterhead` binary with this app's settings in an env file (nothing inherited).
    pub fn cli(&self) -> (std::process::Command, tempfile::NamedTempFile) {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        for (k, v) in &self.settings {
            writeln!(file, "{k}=\"{v}\"").unwrap();
        }
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_letterhead"));
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .arg("--env-file")
            .arg(file.path());
        (cmd, file)
    }

    pub fn run_cli(&self, args: &[&str]) -> std::process::Output {
        let (mut cmd, _file) = self.cli();
        let out = cmd.args(args).output().expect("letterhead runs");
        assert!(
            out.status.success(),
            "letterhead {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// A new API key, made as an operator makes one (`letterhead api-key create`).
    pub async fn create_api_key(&self) -> String {
        let out = self.run_cli(&["api-key", "create", "--name", "tests"]);
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .last()
            .unwrap()
            .to_owned()
    }
}

/// The public pages and links, as a browser or a mail client uses them.
impl TestApp {
    pub async fn get(&self, path: &str) -> Response {
        self.http.get(self.url(path)).send().await.unwrap()
    }

    /// The page at `path`, as text.
    pub async fn page(&self, path: &str) -> String {
        self.get(path).await.text().await.unwrap()
    }

    /// A POST without a body: a page's button.
    pub async fn post(&self, path: &str) -> Response {
        self.http.post(self.url(path)).send().await.unwrap()
    }

    /// A POST of a url-encoded form.
    pub async fn post_form(&self, path: &str, body: &str) -> Response {
        self.http
            .post(self.url(path))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(body.to_owned())
            .send()
            .await
            .unwrap()
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> Response {
        self.http.post(self.url(path)).json(body).send().await.unwrap()
    }

    /// The path of `subscriber`'s one-click unsubscribe link for one list.
    pub fn unsubscribe_path(&self, subscriber: uuid::Uuid, list_id: i64) -> String {
        self.state
            .links
            .unsubscribe(subscriber, list_id)
            .path()
            .to_owned()
    }

    /// The path of `subscriber`'s preference page.
    pub fn preferences_path(&self, subscriber: uuid::Uuid) -> String {
        self.state.links.preferences(subscriber).path().to_owned()
    }

    /// `subscriber` leaves one list with the POST a mail client sends from List-Unsubscribe.
    pub async fn one_click_unsubscribe(&self, subscriber: uuid::Uuid, list_id: i64) -> Response {
        self.http
            .post(self.url(&self.unsubscribe_path(subscriber, list_id)))
            .body("List-Unsubscribe=One-Click")
            .send()
            .await
            .unwrap()
    }

    /// The first message to `to` among those that arrive after the first `after`.
    pub async fn wait_for_mail_to(&self, after: usize, to: &str) -> Captured {
        let mut wanted = after + 1;
        loop {
            let messages = self.sink.wait_for(wanted, WAIT).await;
            if let Some(m) = messages[after..]
                .iter()
                .find(|m| m.rcpt_to.len() == 1 && m.rcpt_to[0].eq_ignore_ascii_case(to))
            {
                return m.clone();
            }
            wanted = messages.len() + 1;
        }
    }
}

/// The marketing API, as a tool holding an API key calls it.
impl TestApp {
    /// A request to the API, authorized by `key`.
    pub fn api(&self, key: &str, method: Method, path: &str) -> RequestBuilder {
        self.http.request(method, self.url(path)).bearer_auth(key)
    }

    pub async fn api_get(&self, key: &str, path: &str) -> Response {
        self.api(key, Method::GET, path).send().await.unwrap()
    }

    pub async fn api_post(&self, key: &str, path: &str, body: &Value) -> Response {
        self.api(key, Method::POST, path).json(body).send().await.unwrap()
    }

    /// A POST without a body: an action on something that exists (send, pause, withdraw …).
    pub async fn api_post_empty(&self, key: &str, path: &str) -> Response {
        self.api(key, Method::POST, path).send().await.unwrap()
    }

    pub async fn api_patch(&self, key: &str, path: &str, body: &Value) -> Response {
        self.api(key, Method::PATCH, path)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn api_delete(&self, key: &str, path: &str) -> Response {
        self.api(key, Method::DELETE, path).send().await.unwrap()
    }

    /// Adds `email` to the suppression list (`reason`: bounce, complaint, …).
    pub async fn suppress(&self, key: &str, email: &str, reason: &str) -> Response {
        self.api_post(
            key,
            "/api/v1/suppressions",
            &serde_json::json!({"email": email, "reason": reason}),
        )
        .await
    }

    pub async fn create_campaign(&self, key: &str, body: &Value) -> Response {
        self.api_post(key, "/api/v1/campaigns", body).await
    }

    /// Creates a draft campaign; returns its id.
    pub async fn draft_campaign(&self, key: &str, body: &Value) -> i64 {
        let res = self.create_campaign(key, body).await;
        assert_eq!(res.status(), StatusCode::CREATED, "a draft of {body}");
        res.json::<Value>().await.unwrap()["id"]
            .as_i64()
            .expect("the campaign's id")
    }

    /// Drafts a campaign of `markdown` with `subject` to the news list and starts sending it;
    /// returns its id.
    pub async fn send_to_news(&self, key: &str, subject: &str, markdown: &str) -> i64 {
        let body = serde_json::json!({"subject": subject, "lists": ["news"], "markdown": markdown});
        let id = self.draft_campaign(key, &body).await;
        self.send_campaign(key, id).await;
        id
    }

    /// Starts sending a campaign now.
    pub async fn send_campaign(&self, key: &str, id: i64) {
        let res = self
            .api_post_empty(key, &format!("/api/v1/campaigns/{id}/send"))
            .await;
        assert_eq!(res.status(), StatusCode::ACCEPTED, "sending campaign {id}");
    }

    /// The campaign as the API shows it: status, counts, …
    pub async fn campaign(&self, key: &str, id: i64) -> Value {
        self.api_get(key, &format!("/api/v1/campaigns/{id}"))
            .await
            .json()
            .await
            .unwrap()
    }

    /// Waits until the campaign has `status` (panics after 30 s); returns it then.
    pub async fn wait_for_campaign(&self, key: &str, id: i64, status: &str) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let c = self.campaign(key, id).await;
            if c["status"] == status {
                return c;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "campaign never became {status}: {c}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The database, through the store: setting a scenario up, and looking at what happened.
impl TestApp {
    /// Creates a public list behind the API's back, so the form's cache is told to forget;
    /// returns its id.
    pub async fn add_list(&self, slug: &str, name: &str) -> i64 {
        let slug = ListSlug::parse(slug).unwrap();
        let list = store::lists::create(&self.state.db, &slug, name, None, true)
            .await
            .unwrap();
        self.state.public_lists.forget();
        list.id
    }

    pub async fn list_id(&self, slug: &str) -> i64 {
        store::lists::by_slug(&self.state.db, slug)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("no list {slug}"))
            .id
    }

    /// `email` leaves `lists`, written as an unsubscribe leaves the subscription rows (no
    /// consent event, no suppression).
    pub async fn leave_in_store(&self, email: &str, lists: &[&str]) {
        let db = &self.state.db;
        let subscriber = store::subscriptions::subscriber_by_email(db, &EmailAddress::parse(email).unwrap())
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("no subscriber {email}"));
        for slug in lists {
            let list_id = self.list_id(slug).await;
            store::subscriptions::leave(db, subscriber.id, list_id)
                .await
                .unwrap();
        }
    }

    /// The status of `email`'s subscription to `list`, or "none".
    pub async fn subscription_status(&self, email: &str, list: &str) -> String {
        let db = &self.state.db;
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

    /// The single integer `sql` reads (a count, mostly).
    pub async fn query_i64(&self, sql: &str) -> i64 {
        let db = &self.state.db;
        let row = db
            .query_one_raw(Statement::from_string(db.get_database_backend(), sql.to_owned()))
            .await
            .unwrap()
            .expect("a row");
        row.try_get_by_index::<i64>(0).unwrap()
    }

    /// Waits until `sql` (a single integer) returns `expected`.
    pub async fn wait_until(&self, sql: &str, expected: i64, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let got = self.query_i64(sql).await;
            if got == expected {
                return;
            }
            if tokio::time::Instant::now() > deadline {
                panic!("{sql}: expected {expected}, still {got}");
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

/// What the product never does to its database, done in raw SQL so that a test can: age rows,
/// break the schema. Each says why no store function can stand in.
impl TestApp {
    /// Moves the time `email` left `lists` back by `days`. Raw: the product records when someone
    /// leaves as it happens and never moves it; retention is tested on aged rows, not by waiting.
    pub async fn backdate_leaving(&self, email: &str, lists: &[&str], days: i64) {
        for slug in lists {
            self.execute_with(
                "UPDATE subscriptions SET unsubscribed_at = $1 \
                 WHERE subscriber_id = (SELECT id FROM subscribers WHERE email_key = $2) \
                 AND list_id = (SELECT id FROM lists WHERE slug = $3)",
                [
                    days_ago(days).into(),
                    email.to_ascii_lowercase().into(),
                    (*slug).into(),
                ],
            )
            .await;
        }
    }

    /// Moves the creation of every suppression for `reason` back by `days`. Raw: the product
    /// never changes when a suppression was made; retention is tested on aged rows.
    pub async fn backdate_suppressions(&self, reason: &str, days: i64) {
        self.execute_with(
            "UPDATE suppressions SET created_at = $1 WHERE reason = $2",
            [days_ago(days).into(), reason.into()],
        )
        .await;
    }

    /// Drops `table` under the running app. Raw: the product never drops a table; this is how
    /// a test makes the database fail one query while others still work.
    pub async fn drop_table(&self, table: &str) {
        self.state
            .db
            .execute_unprepared(&format!("DROP TABLE {table}"))
            .await
            .unwrap();
    }

    async fn execute_with<const N: usize>(&self, sql: &str, values: [sea_orm::Value; N]) {
        let db = &self.state.db;
        db.execute_raw(Statement::from_sql_and_values(
            db.get_database_backend(),
            sql,
            values,
        ))
        .await
        .unwrap();
    }
}

fn days_ago(days: i64) -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc() - time::Duration::days(days)
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// One header's values (unfolded), by case-insensitive name, from a raw message.
pub fn header_values(raw: &str, name: &str) -> Vec<String> {
    let head = raw.split("\r\n\r\n").next().unwrap_or("");
    let mut out: Vec<String> = Vec::new();
    let mut current: Option<String> = None;
    for line in head.split("\r\n") {
        if line.starts_with(' ') || line.starts_with('\t') {
            if let Some(c) = current.as_mut() {
                c.push_str(line);
            }
            continue;
        }
        if let Some(c) = current.take() {
            out.push(c);
        }
        if let Some((n, v)) = line.split_once(':')
            && n.eq_ignore_ascii_case(name)
        {
            current = Some(v.trim().to_owned());
        }
    }
    if let Some(c) = current {
        out.push(c);
    }
    out
}
