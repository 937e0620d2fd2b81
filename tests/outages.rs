//! The database going away and coming back, seen from outside. PostgreSQL is cut off by a TCP
//! forwarder between the service and the server (connections closed, new ones refused); SQLite
//! meets a full disk (its file on a small tmpfs, filled up, then freed). Meanwhile `/healthz`,
//! pages and the API answer 503 quickly, the workers back off without spending attempts or
//! filling the log, and once the database is back everything resumes with no restart and
//! nothing answered with success is missing.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::tcp_proxy::TcpProxy;
use common::{NEWS, Spawn, TestDb, WAIT, free_port, spawn};
use letterhead::store::entities::subscriber;
use reqwest::StatusCode;
use sea_orm::{ConnectionTrait, EntityTrait};
use serde_json::json;

/// The longest any request may take while the database is away (the pool waits 5 s).
const ANSWERED_WITHIN: Duration = Duration::from_secs(10);

enum Outage {
    /// PostgreSQL behind a forwarder the test cuts.
    Cut(Arc<TcpProxy>),
    /// SQLite on a small tmpfs mounted at this directory.
    FullDisk(tempfile::TempDir),
}

impl Outage {
    fn filler(dir: &tempfile::TempDir) -> PathBuf {
        dir.path().join("filler")
    }

    fn begin(&self) {
        match self {
            Outage::Cut(proxy) => proxy.down(),
            Outage::FullDisk(dir) => {
                let mut file = std::fs::File::create(Self::filler(dir)).unwrap();
                let block = vec![0u8; 64 * 1024];
                // Until the disk is full (ENOSPC), then byte by byte for the last of it.
                while file.write_all(&block).is_ok() {}
                while file.write_all(&[0]).is_ok() {}
            }
        }
    }

    fn end(&self) {
        match self {
            Outage::Cut(proxy) => proxy.up(),
            Outage::FullDisk(dir) => std::fs::remove_file(Self::filler(dir)).unwrap(),
        }
    }
}

impl Drop for Outage {
    fn drop(&mut self) {
        if let Outage::FullDisk(dir) = self {
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(dir.path())
                .status();
        }
    }
}

/// `letterhead serve` with its stderr collected.
struct Served {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    reader: Option<std::thread::JoinHandle<()>>,
    base: String,
}

impl Served {
    fn log_since(&self, from: usize) -> Vec<String> {
        self.lines.lock().unwrap()[from..].to_vec()
    }

    fn log_len(&self) -> usize {
        self.lines.lock().unwrap().len()
    }

    fn stop(mut self) -> Vec<String> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(reader) = self.reader.take() {
            reader.join().unwrap();
        }
        self.lines.lock().unwrap().clone()
    }
}

/// A signup through the JSON endpoint; returns the status and how long the answer took.
async fn sign_up(http: &reqwest::Client, base: &str, email: &str) -> (reqwest::Response, Duration) {
    let started = Instant::now();
    let res = http
        .post(format!("{base}/subscribe"))
        .json(&json!({"email": email, "list": ["news"], "consent": true, "age_confirmed": true}))
        .send()
        .await
        .unwrap();
    (res, started.elapsed())
}

/// Waits for `/healthz` to answer 200; fails with `what` after [`WAIT`].
async fn wait_until_healthy(http: &reqwest::Client, base: &str, what: &str) {
    let deadline = Instant::now() + WAIT;
    while !http
        .get(format!("{base}/healthz"))
        .send()
        .await
        .is_ok_and(|r| r.status() == StatusCode::OK)
    {
        assert!(Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn timed(request: reqwest::RequestBuilder) -> reqwest::Response {
    let started = Instant::now();
    let res = request.send().await.unwrap();
    assert!(
        started.elapsed() < ANSWERED_WITHIN,
        "answered after {:?}",
        started.elapsed()
    );
    res
}

fn is_problem(res: &reqwest::Response) -> bool {
    res.headers()["content-type"] == "application/problem+json"
}

#[tokio::test]
async fn the_database_going_away_gives_503s_and_everything_resumes_when_it_returns() {
    // The database, and how the test takes it away.
    let (db, outage, url) = match std::env::var("TEST_DATABASE_URL") {
        Ok(u) if u.starts_with("postgres") => {
            let db = TestDb::new().await;
            let proxy = TcpProxy::start("127.0.0.1:5432".into()).await;
            let mut url = url::Url::parse(&db.url).unwrap();
            let server = format!("{}:{}", url.host_str().unwrap(), url.port().unwrap_or(5432));
            assert_eq!(server, "127.0.0.1:5432", "the forwarder's target");
            url.set_port(Some(proxy.port)).unwrap();
            (db, Outage::Cut(proxy), url.to_string())
        }
        _ => {
            let dir = tempfile::tempdir().unwrap();
            let mounted = std::process::Command::new("mount")
                .args(["-t", "tmpfs", "-o", "size=6m", "tmpfs"])
                .arg(dir.path())
                .status()
                .is_ok_and(|s| s.success());
            if !mounted {
                // Mounting needs root (CI runs as root, so there it runs).
                eprintln!("skipped: mounting a small tmpfs for the full-disk case needs root");
                return;
            }
            let db = TestDb::sqlite_in(dir.path());
            let url = db.url.clone();
            (db, Outage::FullDisk(dir), url)
        }
    };
    let db = Arc::new(db);

    // Three confirmed readers and an API key, then the service as its own process.
    let setup = spawn(Spawn {
        db: Some(db.clone()),
        lists: vec![NEWS],
        ..Default::default()
    })
    .await;
    common::bulk::seed_confirmed(&setup.state.db, "news", 3).await;
    let list = setup.list_id("news").await;
    let mut unsubscribe_paths = Vec::new();
    for reader in subscriber::Entity::find().all(&setup.state.db).await.unwrap() {
        unsubscribe_paths.push(setup.unsubscribe_path(reader.uuid, list));
    }
    let key = setup.create_api_key().await;
    let sink = setup.sink.clone();
    let (mut cmd, _env) = setup.cli();
    setup.stop().await;
    let port = free_port();
    let mut child = cmd
        .arg("serve")
        .env("DATABASE_URL", &url)
        .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
        .env("RUST_LOG", "info,sqlx=warn,sea_orm=warn")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = Arc::new(Mutex::new(Vec::new()));
    let reader = {
        let stderr = child.stderr.take().unwrap();
        let lines = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                lines.lock().unwrap().push(line);
            }
        })
    };
    let served = Served {
        child,
        lines,
        reader: Some(reader),
        base: format!("http://127.0.0.1:{port}"),
    };
    let base = served.base.clone();
    let http = reqwest::Client::new();
    wait_until_healthy(&http, &base, "the service did not start").await;

    // Before: signups and unsubscribes answered with success, confirmations delivered.
    let mut accepted = Vec::new();
    for i in 0..5 {
        let email = format!("before{i}@example.org");
        let (res, _) = sign_up(&http, &base, &email).await;
        assert_eq!(res.status(), StatusCode::ACCEPTED);
        accepted.push(email);
    }
    for path in &unsubscribe_paths[..2] {
        let res = http
            .post(format!("{base}{path}"))
            .body("List-Unsubscribe=One-Click")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
    }
    sink.wait_for(5, WAIT).await;

    // The outage. A full disk lets writes go on while the write-ahead log has room: write
    // until one is refused (a signup answered with success until then must be kept).
    let log_from = served.log_len();
    outage.begin();
    let outage_began = Instant::now();
    let mut refused = None;
    for i in 0..500 {
        let email = format!("during{i}@example.org");
        let (res, took) = sign_up(&http, &base, &email).await;
        assert!(took < ANSWERED_WITHIN, "a signup took {took:?}");
        match res.status() {
            StatusCode::ACCEPTED => accepted.push(email),
            _ => {
                refused = Some(res);
                break;
            }
        }
    }
    let refused = refused.expect("writes are refused while the database is away");
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(is_problem(&refused), "{:?}", refused.headers());
    assert!(refused.headers().contains_key("retry-after"));

    let health = timed(http.get(format!("{base}/healthz"))).await;
    assert_eq!(health.status(), StatusCode::SERVICE_UNAVAILABLE);
    // PostgreSQL cut off refuses everything. A full disk still takes a write small enough for
    // the room a refused one left in SQLite's log, so there each is a success or a 503.
    let cut_off = matches!(outage, Outage::Cut(_));
    let created = timed(
        http.post(format!("{base}/api/v1/lists"))
            .bearer_auth(&key)
            .json(&json!({"slug": "offers", "name": "Offers"})),
    )
    .await;
    if cut_off || !created.status().is_success() {
        assert_eq!(created.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(is_problem(&created));
    }
    let left = timed(
        http.post(format!("{base}{}", unsubscribe_paths[2]))
            .header("accept", "text/html")
            .body("List-Unsubscribe=One-Click"),
    )
    .await;
    if cut_off || !left.status().is_success() {
        assert_eq!(left.status(), StatusCode::SERVICE_UNAVAILABLE);
        let page = left.text().await.unwrap();
        assert!(page.contains("<html") && page.contains("try again"), "{page}");
    }

    // The workers keep trying meanwhile.
    tokio::time::sleep(Duration::from_secs(8).saturating_sub(outage_began.elapsed())).await;
    outage.end();
    let outage_log = served.log_since(log_from);

    // Back: healthy, and writes work at once; the workers resume by themselves.
    wait_until_healthy(&http, &base, "/healthz did not recover").await;
    let (res, _) = sign_up(&http, &base, "after@example.org").await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    accepted.push("after@example.org".into());
    let res = http
        .post(format!("{base}{}", unsubscribe_paths[2]))
        .body("List-Unsubscribe=One-Click")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    // The confirmation to the signup after the outage arrives: the outbox worker is back
    // (its pause between claims is at most 30 s).
    let deadline = Instant::now() + Duration::from_secs(45);
    while !sink
        .messages()
        .iter()
        .any(|m| m.rcpt_to.iter().any(|r| r == "after@example.org"))
    {
        assert!(Instant::now() < deadline, "no confirmation after the outage");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let log = served.stop();

    // Nothing answered with success is missing; no attempt was spent on the outage.
    let conn = sea_orm::Database::connect(&db.url).await.unwrap();
    let count = |sql: &'static str| {
        let conn = &conn;
        async move {
            conn.query_one_raw(sea_orm::Statement::from_string(conn.get_database_backend(), sql))
                .await
                .unwrap()
                .unwrap()
                .try_get_by_index::<i64>(0)
                .unwrap()
        }
    };
    let emails: Vec<String> = subscriber::Entity::find()
        .all(&conn)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.email)
        .collect();
    for email in &accepted {
        assert!(emails.contains(email), "{email} was accepted and is missing");
    }
    assert_eq!(
        count("SELECT COUNT(*) FROM subscriptions WHERE status = 'unsubscribed'").await,
        3
    );
    assert_eq!(
        count("SELECT COUNT(*) FROM outbox WHERE status = 'failed'").await,
        0
    );
    assert!(
        count("SELECT CAST(COALESCE(MAX(attempts), 0) AS BIGINT) FROM outbox").await <= 2,
        "the outage spent attempts"
    );
    conn.close().await.unwrap();

    // The log of the outage: each request's own line aside, a few lines in all, not a line per
    // retry.
    let background: Vec<&String> = outage_log
        .iter()
        .filter(|l| !l.contains("request_id") && (l.contains("WARN") || l.contains("ERROR")))
        .collect();
    assert!(
        background.len() <= 12,
        "{} background warnings during an 8 s outage:\n{}",
        background.len(),
        background
            .iter()
            .map(|l| l.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    );
    // Each task that said it was failing says when it works again. (Cut off from PostgreSQL,
    // the workers' claims fail for sure; a full disk may leave room for them.)
    let task_of = |line: &str| {
        line.split("task=")
            .nth(1)
            .map(|t| t.split(' ').next().unwrap_or("").to_owned())
    };
    let failing: Vec<String> = log
        .iter()
        .filter(|l| l.contains("retrying quietly"))
        .filter_map(|l| task_of(l))
        .collect();
    if cut_off {
        assert!(!failing.is_empty(), "the workers' failing claims are logged");
    }
    for task in failing {
        assert!(
            log.iter()
                .any(|l| l.contains("works again") && task_of(l).as_deref() == Some(task.as_str())),
            "{task} failed and its recovery is not logged"
        );
    }
    drop(outage);
}
