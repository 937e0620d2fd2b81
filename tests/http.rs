//! The HTTP surface every capability shares: health, errors as pages or problem+json, API keys,
//! rate limits, security headers; and the database connections under it.

mod common;

use common::{OFFERS, Spawn, WEEKLY, spawn, spawn_app, spawn_with_lists};
use reqwest::StatusCode;

#[tokio::test]
async fn healthz_answers_when_the_database_does() {
    let app = spawn_app().await;
    let res = app.get("/healthz").await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.headers().contains_key("x-request-id"));
    assert_eq!(res.headers()["x-content-type-options"], "nosniff");
    assert_eq!(res.headers()["referrer-policy"], "no-referrer");
    assert_eq!(res.headers()["cache-control"], "no-store");
}

/// With Nagle's algorithm on, a statement above 16 KB over TLS (a batch of signups under load)
/// waits for PostgreSQL's delayed ACK, 40 ms. Every connection of the pool must have
/// TCP_NODELAY (sqlx sets it since 0.9.1). SQLite has no sockets.
#[tokio::test]
async fn postgres_connections_have_nagle_off() {
    use sea_orm::{ConnectionTrait, DbBackend, Statement};
    let app = spawn_app().await;
    if !app.db.is_postgres() {
        return;
    }
    // Queries at once, so that the pool opens several connections; each names its own socket.
    let port_query = || {
        app.state.db.query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT inet_client_port() AS port FROM pg_sleep(0.1)",
        ))
    };
    let rows = futures::future::join_all((0..4).map(|_| port_query())).await;
    let mut ports: Vec<u16> = rows
        .into_iter()
        .map(|row| {
            let port: i32 = row
                .unwrap()
                .unwrap()
                .try_get("", "port")
                .expect("a TCP connection");
            u16::try_from(port).unwrap()
        })
        .collect();
    ports.sort_unstable();
    ports.dedup();
    assert!(ports.len() > 1, "several connections were opened: {ports:?}");
    for port in ports {
        assert_eq!(
            nodelay_of_local_port(port),
            Some(true),
            "the connection from local port {port}"
        );
    }
}

/// Whether this process's TCP socket bound to `local_port` has TCP_NODELAY (`None` when there
/// is none). Each socket is looked at through a duplicate of its descriptor, which
/// `pidfd_getfd` hands out without unsafe code.
fn nodelay_of_local_port(local_port: u16) -> Option<bool> {
    use rustix::process::{PidfdFlags, PidfdGetfdFlags, getpid, pidfd_getfd, pidfd_open};
    let me = pidfd_open(getpid(), PidfdFlags::empty()).ok()?;
    for entry in std::fs::read_dir("/proc/self/fd").ok()?.flatten() {
        let Some(fd) = entry.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        let is_socket = std::fs::read_link(entry.path())
            .is_ok_and(|target| target.as_os_str().as_encoded_bytes().starts_with(b"socket:"));
        if !is_socket {
            continue;
        }
        let Ok(copy) = pidfd_getfd(&me, fd, PidfdGetfdFlags::empty()) else {
            continue;
        };
        let socket = socket2::SockRef::from(&copy);
        let port = socket
            .local_addr()
            .ok()
            .and_then(|a| a.as_socket())
            .map(|a| a.port());
        if port == Some(local_port) {
            return socket.tcp_nodelay().ok();
        }
    }
    None
}

/// The probe above tells the two settings apart (else the test above could not fail).
#[test]
fn the_socket_probe_tells_nagle_on_from_off() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let stream = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let local = stream.local_addr().unwrap().port();
    assert_eq!(
        nodelay_of_local_port(local),
        Some(false),
        "Nagle is on by default"
    );
    stream.set_nodelay(true).unwrap();
    assert_eq!(nodelay_of_local_port(local), Some(true));
}

#[tokio::test]
async fn unknown_paths_are_a_404_page_for_people_and_problem_json_for_programs() {
    let app = spawn_app().await;
    let page = app.get("/no/such/page").await;
    assert_eq!(page.status(), StatusCode::NOT_FOUND);
    assert!(
        page.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let body = page.text().await.unwrap();
    assert!(body.contains("Not found") && body.contains("1 Example Street"));

    let api = app.get("/api/v1/nothing").await;
    assert_eq!(api.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        api.headers()["content-type"],
        "application/problem+json",
        "API paths always answer JSON"
    );
    let json = app
        .http
        .get(app.url("/no/such/page"))
        .header("Accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(json.status(), StatusCode::NOT_FOUND);
    assert_eq!(json.headers()["content-type"], "application/problem+json");
    let problem: serde_json::Value = json.json().await.unwrap();
    assert_eq!(problem["status"], 404);
    assert_eq!(problem["title"], "Not found");
}

#[tokio::test]
async fn the_api_wants_a_valid_unrevoked_key() {
    let app = spawn_app().await;
    let status = "/api/v1/status";
    let res = app.get(status).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    let res = app.api_get("lh_not-a-real-key", status).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);

    let key = app.create_api_key().await;
    let res = app.api_get(&key, status).await;
    assert_eq!(res.status(), StatusCode::OK);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["outbox"]["queued"], 0);

    // Only a hash is stored.
    let plain = app
        .query_i64(&format!("SELECT COUNT(*) FROM api_keys WHERE key_hash = '{key}'"))
        .await;
    assert_eq!(plain, 0);

    let listing = String::from_utf8(app.run_cli(&["api-key", "list"]).stdout).unwrap();
    assert!(listing.contains("active") && !listing.contains(&key));
    // A header, then one key per line with a readable creation time.
    let mut lines = listing.lines();
    assert!(lines.next().unwrap().starts_with("ID"), "{listing}");
    let row = lines.next().unwrap();
    assert!(row.contains(" UTC"), "{listing}");
    let id = row.split_whitespace().next().unwrap().to_owned();
    app.run_cli(&["api-key", "revoke", &id]);
    let res = app.api_get(&key, status).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn api_key_create_prints_the_key_alone_on_the_last_line() {
    let app = spawn_app().await;
    let out = app.run_cli(&["api-key", "create", "--name", "marketing"]);
    let stdout = String::from_utf8(out.stdout).unwrap();
    let last = stdout.lines().last().unwrap();
    assert!(
        last.starts_with("lh_") && !last.contains(' ') && last.len() > 40,
        "{last:?}"
    );
}

#[tokio::test]
async fn public_endpoints_are_rate_limited_per_ip_with_retry_after() {
    let app = spawn(Spawn {
        overrides: vec![("RATE_LIMIT_PUBLIC_PER_MINUTE", "3".into())],
        ..Default::default()
    })
    .await;
    for _ in 0..3 {
        assert_eq!(app.get("/privacy").await.status(), StatusCode::OK);
    }
    let res = app
        .http
        .get(app.url("/privacy"))
        .header("Accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = res.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry));
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    // A monitor polling /healthz from the same IP (a busy NAT) is not refused with the pages.
    for _ in 0..20 {
        assert_eq!(app.get("/healthz").await.status(), StatusCode::OK);
    }
}

/// Requests with a missing or unknown API key are limited per IP: past the allowance the IP
/// gets 429 before the database is asked, a valid key included; another IP is not affected.
#[tokio::test]
async fn unknown_api_keys_are_limited_per_ip() {
    let app = spawn(Spawn {
        overrides: vec![("TRUST_PROXY_HEADERS", "true".into())],
        ..Default::default()
    })
    .await;
    let key = app.create_api_key().await;
    let from = |ip: &'static str, key: String| {
        app.http
            .get(app.url("/api/v1/status"))
            .header("X-Forwarded-For", ip)
            .header("Authorization", format!("Bearer {key}"))
            .send()
    };
    let mut statuses = Vec::new();
    for i in 0..40 {
        let res = from("203.0.113.7", format!("lh_wrong{i}")).await.unwrap();
        statuses.push(res.status());
    }
    assert!(
        statuses[..30].iter().all(|s| *s == StatusCode::UNAUTHORIZED),
        "{statuses:?}"
    );
    assert!(
        statuses[30..].iter().all(|s| *s == StatusCode::TOO_MANY_REQUESTS),
        "{statuses:?}"
    );
    let blocked = from("203.0.113.7", key.clone()).await.unwrap();
    assert_eq!(blocked.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(blocked.headers().contains_key("retry-after"));
    assert_eq!(from("198.51.100.9", key).await.unwrap().status(), StatusCode::OK);
}

#[tokio::test]
async fn the_api_is_rate_limited_per_key() {
    let app = spawn(Spawn {
        overrides: vec![("RATE_LIMIT_API_PER_MINUTE", "2".into())],
        ..Default::default()
    })
    .await;
    let key = app.create_api_key().await;
    let other = app.create_api_key().await;
    for _ in 0..2 {
        let res = app.api_get(&key, "/api/v1/status").await;
        assert_eq!(res.status(), StatusCode::OK);
    }
    let res = app.api_get(&key, "/api/v1/status").await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(res.headers().contains_key("retry-after"));
    let res = app.api_get(&other, "/api/v1/status").await;
    assert_eq!(res.status(), StatusCode::OK, "another key has its own allowance");
}

/// `/` is the organisation's home page: its name, each public list with a link that opens the
/// form with that list chosen, and the privacy policy and notices.
#[tokio::test]
async fn the_home_page_offers_the_public_lists() {
    let empty = spawn_app().await;
    let res = empty.get("/").await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(
        res.text()
            .await
            .unwrap()
            .contains("no newsletter to subscribe to yet")
    );

    let app = spawn_with_lists(&[WEEKLY, OFFERS]).await;
    let res = app.get("/").await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let page = res.text().await.unwrap();
    for needle in [
        "Example Newsletter Ltd",
        "Weekly News",
        "href=\"/subscribe?list=weekly\"",
        "Special Offers",
        "href=\"/subscribe?list=offers\"",
        "href=\"/privacy\"",
        "href=\"/notices\"",
    ] {
        assert!(page.contains(needle), "{needle} in {page}");
    }
    // The link opens the form for that list.
    let form = app.page("/subscribe?list=offers").await;
    assert!(
        form.contains("type=\"hidden\" name=\"list\" value=\"offers\"")
            && form.contains("You are subscribing to <strong>Special Offers</strong>"),
        "{form}"
    );
}

/// Slow clients cannot exhaust the server: a connection whose headers arrive a byte at a time
/// is closed once `HEADER_READ_TIMEOUT_SECONDS` passes, and with more such clients than
/// `MAX_CONNECTIONS` the rest wait in the backlog while the server keeps answering others.
#[tokio::test]
async fn slow_headers_are_cut_off_and_the_server_keeps_serving() {
    use std::time::{Duration, Instant};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let app = spawn(Spawn {
        overrides: vec![
            ("HEADER_READ_TIMEOUT_SECONDS", "1".into()),
            ("MAX_CONNECTIONS", "20".into()),
        ],
        ..Default::default()
    })
    .await;
    let mut dribblers = Vec::new();
    for _ in 0..30 {
        let mut stream = tokio::net::TcpStream::connect(app.addr).await.unwrap();
        stream.write_all(b"GET /healthz HTTP/1.1\r\nHo").await.unwrap();
        dribblers.push(tokio::spawn(async move {
            // One byte every 200 ms until the server hangs up (or answers, with a 408).
            let started = Instant::now();
            let mut buf = [0u8; 512];
            while started.elapsed() < Duration::from_secs(60) {
                if stream.write_all(b"x").await.is_err() {
                    return started.elapsed();
                }
                match tokio::time::timeout(Duration::from_millis(200), stream.read(&mut buf)).await {
                    Ok(_) => return started.elapsed(),
                    Err(_) => continue,
                }
            }
            started.elapsed()
        }));
    }
    // A client that keeps no idle connection: the server drops one idle for a second.
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let healthz = || client.get(app.url("/healthz")).send();
    let res = healthz().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK, "others are served meanwhile");
    for dribbler in dribblers {
        let open_for = dribbler.await.unwrap();
        assert!(
            open_for < Duration::from_secs(60),
            "a slow client kept its connection for a minute"
        );
    }
    assert_eq!(healthz().await.unwrap().status(), StatusCode::OK);
}
