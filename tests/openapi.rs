//! `GET /openapi.json` (generated from the handlers) and `GET /api/docs` (rendered from it).

mod common;

use common::{Spawn, spawn, spawn_app};
use reqwest::StatusCode;
use serde_json::Value;

async fn document(app: &common::TestApp) -> Value {
    let res = app.http.get(app.url("/openapi.json")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["content-type"], "application/json");
    res.json().await.unwrap()
}

/// (method, path) of every operation in the document.
fn operations(doc: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in ["get", "post", "put", "patch", "delete"] {
            if item.get(method).is_some() {
                out.push((method.to_owned(), path.clone()));
            }
        }
    }
    out
}

#[tokio::test]
async fn the_document_describes_the_api_with_its_key_and_error_body() {
    let app = spawn_app().await;
    let doc = document(&app).await;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    assert_eq!(
        doc["components"]["securitySchemes"]["api_key"]["scheme"],
        "bearer"
    );
    let ops = operations(&doc);
    let api: Vec<_> = ops.iter().filter(|(_, p)| p.starts_with("/api/v1/")).collect();
    assert!(api.len() >= 30, "the whole API: {api:?}");
    for (method, path) in &api {
        let op = &doc["paths"][path][method];
        assert_eq!(
            op["security"][0]["api_key"],
            Value::Array(vec![]),
            "{method} {path} needs the key"
        );
        assert!(
            op["summary"].as_str().is_some_and(|s| !s.is_empty()),
            "{method} {path} has a summary"
        );
        let unauthorized = &op["responses"]["401"]["content"]["application/problem+json"];
        assert!(
            unauthorized.is_object(),
            "{method} {path} documents its problem responses"
        );
    }
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
    // The request bodies are the types the handlers read.
    let schemas = &doc["components"]["schemas"];
    let fields = |name: &str| -> Vec<String> {
        let mut f: Vec<String> = schemas[name]["properties"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        f.sort();
        f
    };
    assert_eq!(
        fields("CampaignInput"),
        ["from", "html", "lists", "markdown", "send_at", "subject", "text"]
    );
    assert_eq!(fields("NewList"), ["description", "name", "public", "slug"]);
    assert_eq!(fields("Problem"), ["detail", "errors", "status", "title", "type"]);
    assert_eq!(
        doc["paths"]["/api/v1/campaigns"]["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/CampaignInput"
    );
}

/// Every documented path and method is a real route: without a key, each /api/v1 operation
/// answers 401 as a problem (a path or method the router lacks would be 404 or 405).
#[tokio::test]
async fn every_documented_operation_is_served() {
    let app = spawn_app().await;
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

#[tokio::test]
async fn the_docs_page_lists_every_operation_and_loads_nothing() {
    let app = spawn_app().await;
    let doc = document(&app).await;
    let res = app.http.get(app.url("/api/docs")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let csp = res.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    let page = res.text().await.unwrap();
    for (method, path) in operations(&doc) {
        let shown = format!("{} {}", method.to_uppercase(), path);
        assert!(page.contains(&shown), "{shown} on the page");
    }
    assert!(page.contains("Request body: <code>application/json CampaignInput</code>"));
    assert!(!page.contains("<script"), "no JavaScript");
    assert!(!page.contains(" src="), "nothing loaded from anywhere");
    assert!(!page.contains("<link"), "no stylesheets from anywhere");
    assert!(
        csp.contains("default-src 'none'") || csp.contains("default-src 'self'"),
        "{csp}"
    );
}

#[tokio::test]
async fn the_document_and_page_are_rate_limited_per_ip() {
    let app = spawn(Spawn {
        overrides: vec![("RATE_LIMIT_PUBLIC_PER_MINUTE", "2".into())],
        ..Default::default()
    })
    .await;
    let mut statuses = Vec::new();
    for path in ["/openapi.json", "/api/docs", "/openapi.json"] {
        statuses.push(app.http.get(app.url(path)).send().await.unwrap().status());
    }
    assert_eq!(
        statuses,
        [StatusCode::OK, StatusCode::OK, StatusCode::TOO_MANY_REQUESTS]
    );
}
