//! The test harness: the real application on port 0 with its own database and a real SMTP sink.
//!
//! The database is a temporary SQLite file, or — when `TEST_DATABASE_URL` names a PostgreSQL
//! server — a fresh database created for the test and dropped afterwards.

#![allow(dead_code)]

pub mod bulk;
pub mod dkim_check;
pub mod flows;
pub mod smtp_sink;

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use letterhead::app::Application;
use letterhead::config::{Config, Settings};
use letterhead::delivery;
use letterhead::edge::AppState;
use sea_orm::{ConnectionTrait, Statement};
use tokio::sync::oneshot;

#[allow(unused_imports)]
pub use smtp_sink::{SmtpSink, Stage};

pub const DKIM_DOMAIN: &str = "example.com";
pub const DKIM_SELECTOR: &str = "test";

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

/// The settings every test app starts from: DKIM on with the test key, fast retries.
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
        ("DELIVERY_LEASE_SECONDS", "30".into()),
        ("RATE_LIMIT_PUBLIC_PER_MINUTE", "1000".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
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
}

pub async fn spawn_app() -> TestApp {
    spawn(Spawn::default()).await
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
    let config = Config::from_settings(&Settings::from_pairs(
        settings.iter().map(|(k, v)| (k.as_str(), v.as_str())),
    ))
    .expect("test configuration is valid");
    let app = Application::build(config).await.expect("app builds");
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
    TestApp {
        addr,
        base: format!("http://{addr}"),
        state,
        delivery,
        sink,
        db,
        settings,
        http: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
        shutdown: Some(tx),
        handle: Some(handle),
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
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

    pub async fn create_api_key(&self) -> String {
        let out = self.run_cli(&["api-key", "create", "--name", "tests"]);
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .last()
            .unwrap()
            .to_owned()
    }

    pub async fn query_i64(&self, sql: &str) -> i64 {
        let db = &self.state.db;
        let row = db
            .query_one_raw(Statement::from_string(db.get_database_backend(), sql.to_owned()))
            .await
            .unwrap()
            .expect("a row");
        row.try_get_by_index::<i64>(0).unwrap()
    }

    pub async fn execute(&self, sql: &str) {
        self.state.db.execute_unprepared(sql).await.unwrap();
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
