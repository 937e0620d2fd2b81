//! The OpenAPI document: the `/api/v1` operations come from the handlers' `#[utoipa::path]`
//! (see [`super::openapi_document`]); this adds what they share: the error body, the bearer
//! key, the service's description, and the public endpoints other sites call.

use std::collections::HashMap;
use std::sync::OnceLock;

use axum::http::Method;

use utoipa::IntoResponses;
use utoipa::openapi::content::Content;
use utoipa::openapi::path::{Operation, PathItem};
use utoipa::openapi::schema::Schema;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{OpenApi, RefOr, Required, SecurityRequirement};

pub use crate::edge::error::Problem;

// Each operation lists the errors its own code (and the extractors it uses) can answer; 401 and
// 429 come from the API-key middleware and are added to every /api/v1 operation by `complete`.
// Descriptions are shared, so a status listed twice (e.g. 400 for a path and for a body) agrees.

const BAD_REQUEST: &str =
    "Malformed request: the body is not readable (JSON or CSV), or a path or query value has the wrong type";

/// 400, for an operation with a typed path or query value, or one that reads CSV.
#[derive(IntoResponses)]
#[response(status = 400, description = BAD_REQUEST, content_type = "application/problem+json")]
#[allow(dead_code)]
pub struct BadRequest(Problem);

/// 404, for an operation on one resource named in its path.
#[derive(IntoResponses)]
#[response(
    status = 404,
    description = "No such resource",
    content_type = "application/problem+json"
)]
#[allow(dead_code)]
pub struct NotFound(Problem);

/// 409, for an operation the resource's current state can refuse.
#[derive(IntoResponses)]
#[response(
    status = 409,
    description = "Conflicts with the current state (e.g. an existing slug, a campaign already sending)",
    content_type = "application/problem+json"
)]
#[allow(dead_code)]
pub struct Conflict(Problem);

/// 422, for an operation that checks a query value.
#[derive(IntoResponses)]
#[response(
    status = 422,
    description = "Invalid input: `errors` names each field and what is wrong with it",
    content_type = "application/problem+json"
)]
#[allow(dead_code)]
pub struct Unprocessable(Problem);

/// What an operation that reads a JSON body can answer before and while it checks the body.
#[derive(IntoResponses)]
#[allow(dead_code)]
pub enum JsonBodyErrors {
    #[response(status = 400, description = BAD_REQUEST, content_type = "application/problem+json")]
    BadRequest(Problem),
    #[response(
        status = 413,
        description = "The body is larger than 1 MiB",
        content_type = "application/problem+json"
    )]
    TooLarge(Problem),
    #[response(
        status = 415,
        description = "The body is not sent as `Content-Type: application/json`",
        content_type = "application/problem+json"
    )]
    NotJson(Problem),
    #[response(
        status = 422,
        description = "A field has the wrong JSON type, or an invalid value: then `errors` names each field \
                       and what is wrong with it",
        content_type = "application/problem+json"
    )]
    Unprocessable(Problem),
}

/// What the API-key middleware answers before any `/api/v1` handler runs.
#[derive(IntoResponses)]
#[allow(dead_code)]
enum KeyErrors {
    #[response(
        status = 401,
        description = "Missing or unknown API key",
        content_type = "application/problem+json"
    )]
    Unauthorized(Problem),
    #[response(
        status = 429,
        description = "Rate limit of this API key exceeded; see Retry-After",
        content_type = "application/problem+json"
    )]
    TooManyRequests(Problem),
}

/// Adds the shared parts to the operations' document.
pub fn complete(mut api: OpenApi) -> OpenApi {
    api.info.title = "letterhead".into();
    api.info.version = env!("CARGO_PKG_VERSION").into();
    api.info.description = Some(
        "The newsletter service's API. `/api/v1` needs `Authorization: Bearer <key>` (keys from \
         `letterhead api-key create`); errors are `application/problem+json`."
            .into(),
    );
    let key = SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build());
    api.components
        .get_or_insert_with(Default::default)
        .add_security_scheme("api_key", key);
    // Every /api/v1 operation needs the key, and so can answer what the key's middleware
    // answers; the public ones merged below need no key.
    let needs_key = vec![SecurityRequirement::new("api_key", Vec::<String>::new())];
    for item in api.paths.paths.values_mut() {
        for (_, op) in operations_of_mut(item) {
            op.security = Some(needs_key.clone());
            op.responses.responses.extend(KeyErrors::responses());
        }
    }
    api.merge(crate::web::public_openapi());
    // Handlers in different modules share names (`create`, `index`): operation ids from the
    // method and path are unique, as OpenAPI requires.
    for (path, item) in api.paths.paths.iter_mut() {
        let name: String = path
            .split('/')
            .filter(|s| !s.is_empty())
            .map(|s| s.trim_matches(|c| c == '{' || c == '}').replace('-', "_"))
            .collect::<Vec<_>>()
            .join("_");
        for (method, op) in operations_of_mut(item) {
            op.operation_id = Some(format!("{method}_{name}"));
        }
    }
    api
}

/// The operations of one path, with their methods as OpenAPI spells them.
fn operations_of(item: &PathItem) -> impl Iterator<Item = (&'static str, &Operation)> {
    [
        ("get", &item.get),
        ("put", &item.put),
        ("post", &item.post),
        ("delete", &item.delete),
        ("options", &item.options),
        ("head", &item.head),
        ("patch", &item.patch),
        ("trace", &item.trace),
    ]
    .into_iter()
    .filter_map(|(method, op)| op.as_ref().map(|op| (method, op)))
}

fn operations_of_mut(item: &mut PathItem) -> impl Iterator<Item = (&'static str, &mut Operation)> {
    [
        ("get", &mut item.get),
        ("put", &mut item.put),
        ("post", &mut item.post),
        ("delete", &mut item.delete),
        ("options", &mut item.options),
        ("head", &mut item.head),
        ("patch", &mut item.patch),
        ("trace", &mut item.trace),
    ]
    .into_iter()
    .filter_map(|(method, op)| op.as_mut().map(|op| (method, op)))
}

/// The document, built once.
fn document() -> &'static OpenApi {
    static DOCUMENT: OnceLock<OpenApi> = OnceLock::new();
    DOCUMENT.get_or_init(super::openapi_document)
}

/// Does the document describe `method` on `route` (a route template such as
/// `/api/v1/lists/{slug}`, as axum's `MatchedPath` gives it)? HEAD is served by GET routes.
pub fn documents(method: &Method, route: &str) -> bool {
    static METHODS_BY_ROUTE: OnceLock<HashMap<String, Vec<&'static str>>> = OnceLock::new();
    let methods_by_route = METHODS_BY_ROUTE.get_or_init(|| {
        document()
            .paths
            .paths
            .iter()
            .map(|(path, item)| (path.clone(), operations_of(item).map(|(m, _)| m).collect()))
            .collect()
    });
    let method = if *method == Method::HEAD {
        "GET"
    } else {
        method.as_str()
    };
    methods_by_route
        .get(route)
        .is_some_and(|methods| methods.iter().any(|m| m.eq_ignore_ascii_case(method)))
}

/// The document as JSON, built once.
pub fn document_json() -> &'static str {
    static JSON: OnceLock<String> = OnceLock::new();
    JSON.get_or_init(|| document().to_json().expect("the document serializes"))
}

/// `GET /openapi.json`
pub async fn serve_document() -> impl axum::response::IntoResponse {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        document_json(),
    )
}

/// `GET /api/docs`: the document as a page.
pub async fn serve_docs(
    axum::extract::State(state): axum::extract::State<crate::edge::AppState>,
) -> axum::response::Html<String> {
    let version = serde_json::to_value(&document().openapi).unwrap_or_default();
    let page = templates::api_docs::page(
        &state.site(),
        version.as_str().unwrap_or("3"),
        &operations(document()),
    );
    axum::response::Html(page.into_string())
}

/// The operations of the document, by tag and path, for the docs page.
fn operations(api: &OpenApi) -> Vec<templates::api_docs::Operation> {
    let mut out = Vec::new();
    for (path, item) in &api.paths.paths {
        for (method, op) in operations_of(item) {
            out.push(templates::api_docs::Operation {
                method: method.to_uppercase(),
                path: path.clone(),
                tag: op
                    .tags
                    .as_ref()
                    .and_then(|t| t.first())
                    .cloned()
                    .unwrap_or_default(),
                summary: op.summary.clone().unwrap_or_default(),
                needs_key: op.security.as_ref().is_some_and(|s| !s.is_empty()),
                parameters: op
                    .parameters
                    .iter()
                    .flatten()
                    .filter_map(|p| match p {
                        RefOr::T(p) => Some(p),
                        RefOr::Ref(_) => None,
                    })
                    .map(|p| {
                        let place = serde_json::to_value(&p.parameter_in)
                            .ok()
                            .and_then(|v| v.as_str().map(str::to_owned))
                            .unwrap_or_default();
                        let required = if matches!(p.required, Required::True) {
                            ", required"
                        } else {
                            ""
                        };
                        let kind = p.schema.as_ref().map(schema_label).unwrap_or_default();
                        let description = p.description.as_deref().unwrap_or("");
                        format!("{} ({place}{required}, {kind}): {description}", p.name)
                    })
                    .collect(),
                request_body: op.request_body.as_ref().and_then(|b| match b {
                    RefOr::T(b) => Some(contents(&b.content)),
                    RefOr::Ref(_) => None,
                }),
                responses: op
                    .responses
                    .responses
                    .iter()
                    .map(|(status, r)| match r {
                        RefOr::T(r) => templates::api_docs::Response {
                            status: status.clone(),
                            description: r.description.clone(),
                            content: contents(&r.content),
                        },
                        RefOr::Ref(r) => templates::api_docs::Response {
                            status: status.clone(),
                            description: r.ref_location.clone(),
                            content: String::new(),
                        },
                    })
                    .collect(),
            });
        }
    }
    out.sort_by(|a, b| (&a.tag, &a.path).cmp(&(&b.tag, &b.path)));
    out
}

/// `content/type Schema` for each content of a body, e.g. `application/json CampaignInput`.
fn contents<'a>(content: impl IntoIterator<Item = (&'a String, &'a RefOr<Content>)>) -> String {
    content
        .into_iter()
        .map(|(content_type, c)| match c {
            RefOr::T(c) => match &c.schema {
                Some(schema) => format!("{content_type} {}", schema_label(schema)),
                None => content_type.clone(),
            },
            RefOr::Ref(r) => format!("{content_type} {}", r.ref_location),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// A schema's name, or its type when it has no name (`string`, `array of ListView`).
fn schema_label(schema: &RefOr<Schema>) -> String {
    let schema = match schema {
        RefOr::Ref(r) => return r.ref_location.rsplit('/').next().unwrap_or("").to_owned(),
        RefOr::T(schema) => serde_json::to_value(schema).unwrap_or_default(),
    };
    let name_of = |s: &serde_json::Value| {
        if let Some(r) = s["$ref"].as_str() {
            return r.rsplit('/').next().unwrap_or("").to_owned();
        }
        match &s["type"] {
            serde_json::Value::String(t) => t.clone(),
            serde_json::Value::Array(types) => types
                .iter()
                .filter_map(|t| t.as_str())
                .collect::<Vec<_>>()
                .join(" or "),
            _ => "schema".to_owned(),
        }
    };
    match schema["type"].as_str() {
        Some("array") => format!("array of {}", name_of(&schema["items"])),
        _ => name_of(&schema),
    }
}
