//! `GET /openapi.json` (generated from the handlers) and `GET /api/docs` (rendered from it).
//!
//! The /api/v1 router and the document are built from the same `#[utoipa::path]` annotations;
//! a route or method that bypasses them is refused by `api::only_documented_methods`. These
//! tests check the other direction against the running app: every documented operation is
//! served, every other method on a documented path is a 405 naming the documented ones, what
//! the app answers is what the document says it answers, and a body's required fields are the
//! ones its handler requires. (`.ci/schemathesis` fuzzes the same promises.)

mod common;

use common::{Spawn, TestApp, spawn, spawn_app};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

async fn document(app: &TestApp) -> Value {
    let res = app.get("/openapi.json").await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["content-type"], "application/json");
    res.json().await.unwrap()
}

/// (method, path) of every operation in the document.
fn operations(doc: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in [
            "get", "put", "post", "delete", "options", "head", "patch", "trace",
        ] {
            if item.get(method).is_some() {
                out.push((method.to_owned(), path.clone()));
            }
        }
    }
    out
}

/// A component schema's object parts: itself, or the parts of its `allOf`.
fn object_parts<'a>(doc: &'a Value, schema: &str) -> Vec<&'a Value> {
    let schema = &doc["components"]["schemas"][schema];
    match schema["allOf"].as_array() {
        Some(parts) => parts.iter().collect(),
        None => vec![schema],
    }
}

/// The property names of a component schema, sorted.
fn properties(doc: &Value, schema: &str) -> Vec<String> {
    let mut names: Vec<String> = object_parts(doc, schema)
        .into_iter()
        .filter_map(|part| part["properties"].as_object())
        .flat_map(|p| p.keys().cloned())
        .collect();
    assert!(!names.is_empty(), "no schema {schema}");
    names.sort();
    names
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(str::to_owned))
        .collect()
}

/// The fields a schema requires of `body`: its `required`, and those of the `oneOf`/`anyOf`
/// branch `body` takes (the one whose required fields it all has).
fn required_of(doc: &Value, schema: &str, body: &Value) -> Vec<String> {
    let mut required = Vec::new();
    for part in object_parts(doc, schema) {
        required.extend(strings(&part["required"]));
        for choice in ["oneOf", "anyOf"] {
            let taken = part[choice].as_array().into_iter().flatten().find(|branch| {
                let needs = strings(&branch["required"]);
                !needs.is_empty() && needs.iter().all(|f| body.get(f).is_some())
            });
            if let Some(branch) = taken {
                required.extend(strings(&branch["required"]));
            }
        }
    }
    required.sort();
    required.dedup();
    required
}

/// The media type of a response, without parameters (`text/csv; charset=utf-8` -> `text/csv`).
fn media_type(res: &reqwest::Response) -> String {
    res.headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .unwrap_or("")
        .trim()
        .to_owned()
}

/// Asserts that `res` is an answer the document promises for `method route`: its status is
/// listed for the operation, with the media type the response has, and a problem body has
/// the Problem schema's fields. Returns the status and the body.
async fn assert_documented(
    doc: &Value,
    method: &str,
    route: &str,
    res: reqwest::Response,
) -> (StatusCode, Value) {
    let status = res.status();
    let documented = &doc["paths"][route][method]["responses"][status.as_str()];
    assert!(
        documented.is_object(),
        "{method} {route} answered {status}, which its documentation does not list"
    );
    let media = media_type(&res);
    let body = res.text().await.unwrap();
    if let Some(content) = documented["content"].as_object() {
        assert!(
            content.contains_key(&media),
            "{method} {route} {status} answered {media}; documented: {:?}",
            content.keys().collect::<Vec<_>>()
        );
    }
    let body: Value = serde_json::from_str(&body).unwrap_or(Value::String(body));
    if media == "application/problem+json" {
        for field in ["type", "title", "status", "detail"] {
            assert!(
                body.get(field).is_some(),
                "{method} {route}: problem without {field}: {body}"
            );
        }
        assert_eq!(body["status"], status.as_u16());
    }
    (status, body)
}

#[tokio::test]
async fn the_document_describes_the_api_with_its_key_and_error_body() {
    let app = spawn_app().await;
    let doc = document(&app).await;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let scheme = &doc["components"]["securitySchemes"]["api_key"];
    assert_eq!(
        (&scheme["type"], &scheme["scheme"]),
        (&json!("http"), &json!("bearer"))
    );
    let ops = operations(&doc);
    let api: Vec<_> = ops.iter().filter(|(_, p)| p.starts_with("/api/v1/")).collect();
    assert!(api.len() >= 30, "the whole API: {api:?}");
    for (method, path) in &api {
        let op = &doc["paths"][path][method];
        assert_eq!(
            op["security"],
            json!([{"api_key": []}]),
            "{method} {path} needs the key"
        );
        assert!(
            op["summary"].as_str().is_some_and(|s| !s.is_empty()),
            "{method} {path} has a summary"
        );
        // The key's middleware answers these for every operation.
        for status in ["401", "429"] {
            assert!(
                op["responses"][status]["content"]["application/problem+json"].is_object(),
                "{method} {path} documents {status}"
            );
        }
    }
    // Every documented error is a Problem (public pages may also answer it as HTML).
    for (method, path) in &ops {
        for (status, response) in doc["paths"][path][method]["responses"].as_object().unwrap() {
            if status.starts_with('4') || status.starts_with('5') {
                assert_eq!(
                    response["content"]["application/problem+json"]["schema"]["$ref"],
                    "#/components/schemas/Problem",
                    "{method} {path} {status}"
                );
            }
        }
    }
    // Every JSON body, asked or answered, is a named schema with its fields.
    for (method, path) in &ops {
        let op = &doc["paths"][path][method];
        let mut bodies = vec![&op["requestBody"]["content"]["application/json"]["schema"]];
        for response in op["responses"].as_object().unwrap().values() {
            bodies.push(&response["content"]["application/json"]["schema"]);
        }
        for schema in bodies.into_iter().filter(|s| !s.is_null()) {
            let schema = if schema["type"] == "array" {
                &schema["items"]
            } else {
                schema
            };
            let name = schema["$ref"]
                .as_str()
                .unwrap_or_else(|| panic!("{method} {path}: {schema}"));
            let name = name.rsplit('/').next().unwrap();
            assert!(!properties(&doc, name).is_empty(), "{method} {path}: {name}");
        }
    }
    // An operation lists the errors it can answer, not every error there is.
    let statuses = |method: &str, path: &str| -> Vec<String> {
        let mut statuses: Vec<String> = doc["paths"][path][method]["responses"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        statuses.sort();
        statuses
    };
    assert_eq!(statuses("get", "/api/v1/lists"), ["200", "401", "429"]);
    assert_eq!(
        statuses("get", "/api/v1/lists/{slug}"),
        ["200", "401", "404", "429"]
    );
    for public in [
        ("post", "/subscribe"),
        ("post", "/unsubscribe/{token}"),
        ("get", "/healthz"),
    ] {
        let public = (public.0.to_owned(), public.1.to_owned());
        assert!(ops.contains(&public), "{public:?} is documented");
        assert!(
            doc["paths"][&public.1][&public.0]["security"].is_null(),
            "{public:?} needs no key"
        );
    }
    let mut ids: Vec<&str> = ops
        .iter()
        .map(|(m, p)| doc["paths"][p][m]["operationId"].as_str().unwrap())
        .collect();
    let count = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), count, "operation ids are unique");
    assert_eq!(
        properties(&doc, "Problem"),
        ["detail", "errors", "status", "title", "type"]
    );
    assert_eq!(
        properties(&doc, "NewList"),
        ["description", "name", "public", "slug"]
    );
    // The CSV endpoints say so.
    let import = &doc["paths"]["/api/v1/lists/{slug}/subscribers/import"]["post"];
    assert!(import["requestBody"]["content"]["text/csv"].is_object());
    assert!(
        import["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "confirm" && p["in"] == "query")
    );
    let export = &doc["paths"]["/api/v1/lists/{slug}/subscribers/export"]["get"];
    assert!(export["responses"]["200"]["content"]["text/csv"].is_object());
}

/// Every documented path and method is a real route: without a key, each /api/v1 operation
/// answers 401 as a problem (a path or method the router lacks would be 404 or 405).
#[tokio::test]
async fn every_documented_operation_is_served() {
    // Every operation is asked without a key, from one IP: more than its allowance of failures.
    let app = common::spawn(common::Spawn {
        overrides: vec![("RATE_LIMIT_API_KEY_FAILURES_PER_MINUTE", "1000".into())],
        ..Default::default()
    })
    .await;
    let doc = document(&app).await;
    for (method, path) in operations(&doc) {
        if !path.starts_with("/api/v1/") {
            continue;
        }
        let url = app.url(&path.replace("{id}", "1").replace("{slug}", "weekly"));
        let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let res = app.http.request(method.clone(), url).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{method} {path}");
        assert_eq!(
            res.headers()["content-type"],
            "application/problem+json",
            "{method} {path}"
        );
    }
}

/// The campaign a marketing tool creates is described by the schemas of the handler's own
/// types: the documented request fields are accepted, and the answer has the documented fields.
#[tokio::test]
async fn creating_a_campaign_takes_and_answers_what_the_document_says() {
    let app = spawn_app().await;
    let doc = document(&app).await;
    let create = &doc["paths"]["/api/v1/campaigns"]["post"];
    assert_eq!(
        create["requestBody"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/CampaignInput"
    );
    let input = properties(&doc, "CampaignInput");
    for field in ["subject", "lists", "markdown", "html", "text", "from"] {
        assert!(
            input.iter().any(|f| f == field),
            "CampaignInput has {field}: {input:?}"
        );
    }
    let key = app.create_api_key().await;
    app.add_list("weekly", "Weekly").await;
    let body = json!({"subject": "Hello", "lists": ["weekly"], "markdown": "Hi", "from": "news@example.com"});
    assert!(body.as_object().unwrap().keys().all(|k| input.contains(k)));
    let res = app.create_campaign(&key, &body).await;
    let (status, campaign) = assert_documented(&doc, "post", "/api/v1/campaigns", res).await;
    assert_eq!(status, StatusCode::CREATED, "{campaign}");
    assert_eq!(
        create["responses"]["201"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/CampaignView"
    );
    let mut answered: Vec<String> = campaign.as_object().unwrap().keys().cloned().collect();
    answered.sort();
    assert_eq!(answered, properties(&doc, "CampaignView"));
}

/// Errors provoked for real, each checked against the operation's documented responses.
#[tokio::test]
async fn the_errors_the_app_answers_are_the_documented_ones() {
    let app = spawn_app().await;
    let doc = document(&app).await;
    let key = app.create_api_key().await;
    let http = &app.http;
    let list = json!({"slug": "weekly", "name": "Weekly"});
    let post_list = || app.api(&key, Method::POST, "/api/v1/lists");
    let cases: Vec<(&str, &str, reqwest::RequestBuilder, StatusCode)> = vec![
        (
            "post",
            "/api/v1/lists",
            post_list().json(&list),
            StatusCode::CREATED,
        ),
        (
            "post",
            "/api/v1/lists",
            post_list().json(&list),
            StatusCode::CONFLICT,
        ),
        (
            "post",
            "/api/v1/lists",
            post_list().header("content-type", "application/json").body("{"),
            StatusCode::BAD_REQUEST,
        ),
        (
            "post",
            "/api/v1/lists",
            post_list().body(list.to_string()),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            "post",
            "/api/v1/lists",
            post_list().json(&json!({"slug": 5})),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "post",
            "/api/v1/lists",
            post_list().json(&json!({"slug": "Not a slug!"})),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "post",
            "/api/v1/lists",
            post_list().json(&json!({"name": "x".repeat((1 << 20) + 16)})),
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
        (
            "post",
            "/api/v1/lists",
            http.post(app.url("/api/v1/lists")).json(&list),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "get",
            "/api/v1/lists/{slug}",
            app.api(&key, Method::GET, "/api/v1/lists/nope"),
            StatusCode::NOT_FOUND,
        ),
        (
            "get",
            "/api/v1/campaigns/{id}",
            app.api(&key, Method::GET, "/api/v1/campaigns/abc"),
            StatusCode::BAD_REQUEST,
        ),
        (
            "get",
            "/api/v1/campaigns/{id}",
            app.api(&key, Method::GET, "/api/v1/campaigns/999"),
            StatusCode::NOT_FOUND,
        ),
        (
            "get",
            "/api/v1/subscribers",
            app.api(&key, Method::GET, "/api/v1/subscribers?status=gone"),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "get",
            "/api/v1/subscribers",
            app.api(&key, Method::GET, "/api/v1/subscribers?page=first"),
            StatusCode::BAD_REQUEST,
        ),
        (
            "post",
            "/api/v1/lists/{slug}/subscribers/import",
            app.api(&key, Method::POST, "/api/v1/lists/weekly/subscribers/import")
                .header("content-type", "text/csv")
                .body("name\nAda\n"),
            StatusCode::BAD_REQUEST,
        ),
        (
            "post",
            "/api/v1/lists/{slug}/subscribers/import",
            app.api(&key, Method::POST, "/api/v1/lists/weekly/subscribers/import")
                .header("content-type", "text/csv")
                .body("email,name,consented_at,consent_source\nada@example.org,Ada,2024-01-01,fair stand\n"),
            StatusCode::OK,
        ),
        (
            "post",
            "/api/v1/lists/{slug}/subscribers/import",
            app.api(&key, Method::POST, "/api/v1/lists/weekly/subscribers/import")
                .multipart(reqwest::multipart::Form::new().text("file", "email\nbo@example.org\n")),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            "get",
            "/api/v1/lists/{slug}/subscribers/export",
            app.api(&key, Method::GET, "/api/v1/lists/weekly/subscribers/export"),
            StatusCode::OK,
        ),
        (
            "post",
            "/subscribe",
            http.post(app.url("/subscribe"))
                .json(&json!({"email": "bo@example.org", "list": ["weekly"]})),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "post",
            "/unsubscribe/{token}",
            http.post(app.url("/unsubscribe/forged"))
                .header("content-type", "application/x-www-form-urlencoded")
                .body("List-Unsubscribe=One-Click"),
            StatusCode::BAD_REQUEST,
        ),
    ];
    for (method, route, request, expected) in cases {
        let res = request.send().await.unwrap();
        let (status, body) = assert_documented(&doc, method, route, res).await;
        assert_eq!(status, expected, "{method} {route}: {body}");
        if route.ends_with("/import") && status == StatusCode::OK {
            let mut answered: Vec<String> = body.as_object().unwrap().keys().cloned().collect();
            answered.sort();
            assert_eq!(answered, properties(&doc, "ImportReport"));
        }
    }
}

#[tokio::test]
async fn the_docs_page_lists_every_operation_and_loads_nothing() {
    let app = spawn_app().await;
    let doc = document(&app).await;
    let res = app.get("/api/docs").await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let csp = res.headers()["content-security-policy"].clone();
    let page = res.text().await.unwrap();
    for (method, path) in operations(&doc) {
        let shown = format!("{} {}", method.to_uppercase(), path);
        assert!(page.contains(&shown), "{shown} on the page");
    }
    // Each body with its fields (type, required or not), its rules and an example.
    let create = page
        .split("<code>POST /api/v1/campaigns</code>")
        .nth(1)
        .and_then(|rest| rest.split("<article>").next())
        .expect("the campaign's operation");
    assert!(create.contains("<code>application/json</code> <strong>CampaignInput</strong>"));
    assert!(
        create.contains("<td><code>subject</code></td><td>string</td><td>required</td>"),
        "{create}"
    );
    assert!(
        create.contains("<td><code>send_at</code></td><td>string (date-time), or null</td><td>optional</td>")
    );
    assert!(create.contains("Exactly one of: <code>markdown</code> given"));
    assert!(create.contains("Example:</p><pre>{"), "an example body");
    assert!(
        create.contains("<strong>CampaignView</strong>"),
        "the answer's fields"
    );
    assert!(create.contains("<code>recipients</code>"));
    assert!(page.contains("text/csv"), "the CSV endpoints' content type");
    assert!(
        page.contains("<td><code>id</code></td><td>path</td><td>integer (int64)</td><td>required</td>"),
        "parameters with place and type"
    );
    // Descriptions are text with code spans, not markdown source.
    assert!(!page.contains('`'), "no markdown left on the page");
    assert!(page.contains("<section id=\"problem\">"), "the error body, once");
    assert!(!page.to_lowercase().contains("<script"), "no JavaScript");
    assert!(!page.contains("url("), "no assets pulled in by the inline style");
    // Links and assets, if any, stay on this site (or are mail addresses).
    for attribute in ["src=\"", "href=\"", "action=\"", "srcset=\"", "data=\""] {
        for value in page.split(attribute).skip(1) {
            let value = value.split('"').next().unwrap_or("");
            assert!(
                value.starts_with('/') && !value.starts_with("//")
                    || value.starts_with('#')
                    || value.starts_with("mailto:"),
                "{attribute}{value}\" points elsewhere"
            );
        }
    }
    assert!(!page.contains("<link"), "no stylesheets from anywhere");
    // The page gets the same Content-Security-Policy as every other page.
    let privacy = app.get("/privacy").await;
    assert_eq!(csp, privacy.headers()["content-security-policy"]);
}

#[tokio::test]
async fn the_document_and_page_are_rate_limited_per_ip() {
    let app = spawn(Spawn {
        overrides: vec![("RATE_LIMIT_PUBLIC_PER_MINUTE", "2".into())],
        ..Default::default()
    })
    .await;
    let mut statuses = Vec::new();
    for path in ["/openapi.json", "/api/docs", "/openapi.json", "/api/docs"] {
        statuses.push(app.get(path).await.status());
    }
    assert_eq!(
        statuses,
        [
            StatusCode::OK,
            StatusCode::OK,
            StatusCode::TOO_MANY_REQUESTS,
            StatusCode::TOO_MANY_REQUESTS
        ]
    );
}

/// The API key's limit answers the 429 every /api/v1 operation documents.
#[tokio::test]
async fn the_api_key_limit_is_the_documented_429() {
    let app = spawn(Spawn {
        overrides: vec![("RATE_LIMIT_API_PER_MINUTE", "1".into())],
        ..Default::default()
    })
    .await;
    let doc = document(&app).await;
    let key = app.create_api_key().await;
    let get = || app.api_get(&key, "/api/v1/status");
    let (first, _) = assert_documented(&doc, "get", "/api/v1/status", get().await).await;
    assert_eq!(first, StatusCode::OK);
    let res = get().await;
    assert!(res.headers().contains_key("retry-after"));
    let (second, _) = assert_documented(&doc, "get", "/api/v1/status", res).await;
    assert_eq!(second, StatusCode::TOO_MANY_REQUESTS);
}

/// Every method a documented path does not list answers 405 with an `Allow` of exactly the
/// documented ones (HEAD with GET), before any key is asked for; a path nobody serves is a 404,
/// a problem under /api and a page elsewhere.
#[tokio::test]
async fn undeclared_methods_are_405_with_the_documented_allow() {
    let app = spawn_app().await;
    let doc = document(&app).await;
    let key = app.create_api_key().await;
    for (path, item) in doc["paths"].as_object().unwrap() {
        let mut documented: Vec<&str> = ["GET", "PUT", "POST", "DELETE", "PATCH"]
            .into_iter()
            .filter(|m| item.get(m.to_lowercase()).is_some())
            .collect();
        if documented.contains(&"GET") {
            documented.push("HEAD");
        }
        documented.sort();
        let url = app.url(
            &path
                .replace("{id}", "1")
                .replace("{slug}", "weekly")
                .replace("{token}", "t"),
        );
        for method in [
            "GET", "HEAD", "PUT", "POST", "DELETE", "PATCH", "OPTIONS", "TRACE",
        ] {
            if documented.contains(&method) {
                continue;
            }
            let res = app
                .http
                .request(Method::from_bytes(method.as_bytes()).unwrap(), &url)
                .bearer_auth(&key)
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
            let allow = res.headers()["allow"].to_str().unwrap().to_owned();
            let mut allowed: Vec<&str> = allow.split(',').map(str::trim).collect();
            allowed.sort();
            assert_eq!(allowed, documented, "{method} {path}: Allow: {allow}");
            if path.starts_with("/api/") && method != "HEAD" {
                assert_eq!(res.headers()["content-type"], "application/problem+json");
                let problem: Value = res.json().await.unwrap();
                assert_eq!(problem["status"], 405);
            }
        }
    }
    // No key needed to learn that a method is not there.
    let res = app.http.put(app.url("/api/v1/lists")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(res.headers()["allow"], "GET, HEAD, POST");

    for method in [Method::GET, Method::POST, Method::from_bytes(b"TRACE").unwrap()] {
        let res = app
            .api(&key, method.clone(), "/api/v1/nothing-here")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::NOT_FOUND, "{method}");
        assert_eq!(res.headers()["content-type"], "application/problem+json");
        let res = app
            .http
            .request(method.clone(), app.url("/nothing-here"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::NOT_FOUND, "{method}");
        assert!(
            res.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/html"),
            "{method}"
        );
    }
}

/// A body's documented required fields are exactly those its handler requires: the example
/// of each schema is accepted, and leaving out one field is a 422 naming that field when, and
/// only when, the document requires it.
#[tokio::test]
async fn required_fields_are_the_ones_the_handlers_require() {
    let app = spawn_app().await;
    let doc = document(&app).await;
    let key = app.create_api_key().await;
    app.add_list("weekly", "Weekly").await;
    let campaign = app
        .draft_campaign(
            &key,
            &json!({"subject": "S", "lists": ["weekly"], "markdown": "Hi"}),
        )
        .await;
    let campaign_path = format!("/api/v1/campaigns/{campaign}");
    let operations = [
        (Method::POST, "/api/v1/lists", "NewList"),
        (Method::POST, "/api/v1/campaigns", "CampaignInput"),
        (Method::PATCH, campaign_path.as_str(), "CampaignInput"),
        (Method::POST, "/api/v1/policies", "PolicyInput"),
        (Method::POST, "/api/v1/subscribers", "NewSubscriber"),
        (Method::POST, "/api/v1/suppressions", "NewSuppression"),
        (Method::POST, "/api/v1/unsubscribes", "Unsubscribe"),
        (Method::POST, "/api/v1/test-recipients", "NewTestRecipient"),
        (Method::POST, "/api/v1/notices/breach", "BreachInput"),
        (Method::POST, "/subscribe", "SignupRequest"),
    ];
    for (method, path, schema) in operations {
        let example = doc["components"]["schemas"][schema]["example"].clone();
        let send = |body: Value| {
            let request = if path.starts_with("/api/") {
                app.api(&key, method.clone(), path)
            } else {
                app.http.request(method.clone(), app.url(path))
            };
            async move { request.json(&body).send().await.unwrap() }
        };
        let res = send(example.clone()).await;
        // 409: valid, but the example's list or policy version exists by now.
        assert!(
            res.status().is_success() || res.status() == StatusCode::CONFLICT,
            "{method} {path} refused its example: {}",
            res.text().await.unwrap()
        );
        let mut required_by_handler = Vec::new();
        for field in example.as_object().unwrap().keys() {
            let mut body = example.clone();
            body.as_object_mut().unwrap().remove(field);
            let res = send(body).await;
            if res.status() == StatusCode::UNPROCESSABLE_ENTITY {
                let problem: Value = res.json().await.unwrap();
                let named = problem["errors"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|e| e["field"] == field.as_str());
                assert!(named, "{method} {path} without {field}: {problem}");
                required_by_handler.push(field.clone());
            }
        }
        required_by_handler.sort();
        assert_eq!(
            required_by_handler,
            required_of(&doc, schema, &example),
            "{method} {path}: what the handler requires of {schema}, and what the document says"
        );
    }
}
