//! The OpenAPI document: the `/api/v1` operations come from the handlers' `#[utoipa::path]`
//! (see [`super::openapi_document`]); this adds what they share: the error body, the bearer
//! key, the service's description, and the public endpoints other sites call.

use std::collections::HashMap;
use std::sync::OnceLock;

use axum::http::Method;

use serde_json::{Value, json};
use templates::api_docs as docs;
use utoipa::IntoResponses;
use utoipa::openapi::path::{Operation, PathItem};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{License, OpenApi, SecurityRequirement};

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
    // Not utoipa's own author and licence, which it puts there by default.
    api.info.contact = None;
    api.info.license = Some(License::new(env!("CARGO_PKG_LICENSE")));
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

/// The methods the document gives `route` (a route template such as `/api/v1/lists/{slug}`,
/// as axum's `MatchedPath` gives it), with HEAD where there is GET (a GET route serves it);
/// `None` for a route the document does not describe.
pub fn documented_methods(route: &str) -> Option<&'static [Method]> {
    static METHODS_BY_ROUTE: OnceLock<HashMap<String, Vec<Method>>> = OnceLock::new();
    let methods_by_route = METHODS_BY_ROUTE.get_or_init(|| {
        let methods = |item: &PathItem| {
            let mut methods: Vec<Method> = operations_of(item)
                .filter_map(|(m, _)| Method::from_bytes(m.to_uppercase().as_bytes()).ok())
                .collect();
            if methods.contains(&Method::GET) {
                methods.push(Method::HEAD);
            }
            methods.sort_by(|a, b| a.as_str().cmp(b.as_str()));
            methods
        };
        document()
            .paths
            .paths
            .iter()
            .map(|(path, item)| (path.clone(), methods(item)))
            .collect()
    });
    methods_by_route.get(route).map(Vec::as_slice)
}

/// The document as JSON, built once.
pub fn document_json() -> &'static str {
    static JSON: OnceLock<String> = OnceLock::new();
    JSON.get_or_init(|| document().to_json().expect("the document serializes"))
}

/// `GET /openapi.json`
#[tracing::instrument(level = "debug", skip_all)]
pub async fn serve_document() -> impl axum::response::IntoResponse {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        document_json(),
    )
}

/// `GET /api/docs`: the document as a page.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn serve_docs(
    axum::extract::State(state): axum::extract::State<crate::edge::AppState>,
) -> axum::response::Html<String> {
    static OPERATIONS: OnceLock<(docs::Body, Vec<docs::Operation>)> = OnceLock::new();
    let doc: &Value = document_value();
    let (problem, operations) = OPERATIONS.get_or_init(|| {
        let problem =
            json!({"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}});
        let problem = bodies(doc, &problem).pop().expect("one body");
        (problem, docs_operations(doc))
    });
    let page = templates::api_docs::page(
        &state.site(),
        doc["openapi"].as_str().unwrap_or("3"),
        problem,
        operations,
    );
    axum::response::Html(page.into_string())
}

/// The document as JSON values, which the page reads.
fn document_value() -> &'static Value {
    static VALUE: OnceLock<Value> = OnceLock::new();
    VALUE.get_or_init(|| serde_json::from_str(document_json()).expect("the document is JSON"))
}

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// The operations of the document, by tag and path, for the docs page.
fn docs_operations(doc: &Value) -> Vec<docs::Operation> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().into_iter().flatten() {
        for method in METHODS {
            let Some(op) = item.get(method) else { continue };
            let text = |key: &str| op[key].as_str().unwrap_or("").to_owned();
            out.push(docs::Operation {
                method: method.to_uppercase(),
                path: path.clone(),
                tag: op["tags"][0].as_str().unwrap_or("").to_owned(),
                summary: text("summary"),
                description: text("description"),
                needs_key: op["security"].as_array().is_some_and(|s| !s.is_empty()),
                parameters: op["parameters"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|p| {
                        let schema = resolve(doc, &p["schema"]);
                        docs::Field {
                            name: p["name"].as_str().unwrap_or("").to_owned(),
                            place: p["in"].as_str().unwrap_or("").to_owned(),
                            kind: kind(&p["schema"]),
                            required: p["required"] == true,
                            description: p["description"].as_str().unwrap_or("").to_owned(),
                            constraints: constraints(schema),
                        }
                    })
                    .collect(),
                request_bodies: bodies(doc, &resolve(doc, &op["requestBody"])["content"]),
                responses: op["responses"]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(status, r)| {
                        let r = resolve(doc, r);
                        docs::Response {
                            status: status.clone(),
                            description: r["description"].as_str().unwrap_or("").to_owned(),
                            bodies: bodies(doc, &r["content"]),
                        }
                    })
                    .collect(),
            });
        }
    }
    out.sort_by(|a, b| (&a.tag, &a.path).cmp(&(&b.tag, &b.path)));
    out
}

/// The schema a `$ref` points to (in this document), or the value itself.
fn resolve<'a>(doc: &'a Value, value: &'a Value) -> &'a Value {
    match value["$ref"].as_str().and_then(|r| r.strip_prefix('#')) {
        Some(pointer) => doc.pointer(pointer).unwrap_or(&Value::Null),
        None => value,
    }
}

/// The bodies of a `content` map, one per content type.
fn bodies(doc: &Value, content: &Value) -> Vec<docs::Body> {
    let Some(content) = content.as_object() else {
        return Vec::new();
    };
    content
        .iter()
        .map(|(content_type, media)| {
            let schema = resolve(doc, &media["schema"]);
            let (fields, rules) = fields_of(doc, schema);
            let example = match schema
                .get("example")
                .cloned()
                .or_else(|| media.get("example").cloned())
            {
                Some(Value::String(text)) if !content_type.contains("json") => Some(text),
                Some(example) => serde_json::to_string_pretty(&example).ok(),
                None if content_type.contains("json") => {
                    serde_json::to_string_pretty(&example_of(doc, schema, 0)).ok()
                }
                None => None,
            };
            docs::Body {
                content_type: content_type.clone(),
                schema: kind(&media["schema"]),
                description: schema["description"].as_str().unwrap_or("").to_owned(),
                fields,
                rules,
                example,
            }
        })
        .collect()
}

/// The fields of an object schema (also of the parts of an `allOf`), and the rules its
/// `oneOf` or `anyOf` set between them.
fn fields_of(doc: &Value, schema: &Value) -> (Vec<docs::Field>, Vec<String>) {
    let mut fields = Vec::new();
    let mut rules = Vec::new();
    let parts: Vec<&Value> = match schema["allOf"].as_array() {
        Some(parts) => parts.iter().map(|p| resolve(doc, p)).collect(),
        None => vec![schema],
    };
    for part in parts {
        let required: Vec<&str> = part["required"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        for (name, field) in part["properties"].as_object().into_iter().flatten() {
            let resolved = resolve(doc, field);
            fields.push(docs::Field {
                name: name.clone(),
                place: String::new(),
                kind: kind(field),
                required: required.contains(&name.as_str()),
                description: resolved["description"].as_str().unwrap_or("").to_owned(),
                constraints: constraints(resolved),
            });
        }
        for choice in ["oneOf", "anyOf"] {
            let Some(branches) = part[choice].as_array() else {
                continue;
            };
            let described: Vec<String> = branches
                .iter()
                .map(|b| {
                    let needs: Vec<String> = b["required"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_str)
                        .map(|f| format!("`{f}`"))
                        .collect();
                    let absent: Vec<String> = b["properties"]
                        .as_object()
                        .into_iter()
                        .flatten()
                        .filter(|(_, p)| p["type"] == "null")
                        .map(|(f, _)| format!("`{f}`"))
                        .collect();
                    let mut text = b["description"].as_str().unwrap_or("").to_owned();
                    if !needs.is_empty() {
                        text = format!("{text} {} given", needs.join(" and ")).trim().to_owned();
                    }
                    if !absent.is_empty() {
                        text = format!("{text}, without {}", absent.join(" or "));
                    }
                    text
                })
                .collect();
            let how = if choice == "oneOf" {
                "Exactly one of"
            } else {
                "At least one of"
            };
            rules.push(format!("{how}: {}.", described.join("; or ")));
        }
    }
    (fields, rules)
}

/// A schema's name, or its type (`string (email)`, `array of ListView`, `"a" or "b"`).
fn kind(schema: &Value) -> String {
    if let Some(name) = schema["$ref"].as_str().and_then(|r| r.rsplit('/').next()) {
        return name.to_owned();
    }
    let types: Vec<&str> = match &schema["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    if types.len() == 6 {
        return "any".into();
    }
    let nullable = types.contains(&"null");
    let mut label = if let Some(values) = schema["enum"].as_array() {
        values
            .iter()
            .filter(|v| !v.is_null())
            .map(Value::to_string)
            .collect::<Vec<_>>()
            .join(" or ")
    } else if let Some(branches) = schema["oneOf"].as_array().or(schema["anyOf"].as_array()) {
        let mut kinds: Vec<String> = Vec::new();
        for k in branches.iter().map(kind) {
            if !kinds.contains(&k) {
                kinds.push(k);
            }
        }
        kinds.join(", or ")
    } else {
        match types.iter().find(|t| **t != "null") {
            Some(&"array") => format!("array of {}", kind(&schema["items"])),
            Some(&"object") if schema["properties"].is_object() => {
                let names: Vec<&str> = schema["properties"]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(k, _)| k.as_str())
                    .collect();
                format!("object {{{}}}", names.join(", "))
            }
            Some(_) if types.len() > 1 + usize::from(nullable) => {
                let named: Vec<&str> = types.iter().copied().filter(|t| *t != "null").collect();
                named.join(", ")
            }
            Some(t) => match schema["format"].as_str() {
                Some(format) => format!("{t} ({format})"),
                None => (*t).to_owned(),
            },
            None if nullable => "null".into(),
            None => "any".into(),
        }
    };
    if nullable && label != "null" {
        label.push_str(", or null");
    }
    label
}

/// A schema's constraints besides its type, as a reader wants them.
fn constraints(schema: &Value) -> String {
    let mut out = Vec::new();
    let number = |key: &str| schema[key].as_u64();
    match (number("minLength"), number("maxLength")) {
        (Some(min), Some(max)) => out.push(format!("{min}-{max} characters")),
        (Some(min), None) => out.push(format!("at least {min} characters")),
        (None, Some(max)) => out.push(format!("at most {max} characters")),
        (None, None) => {}
    }
    if let Some(min) = number("minItems") {
        out.push(format!("at least {min} item{}", if min == 1 { "" } else { "s" }));
    }
    if let Some(min) = schema["minimum"].as_i64() {
        out.push(format!("at least {min}"));
    }
    if let Some(default) = schema.get("default") {
        out.push(format!("default {default}"));
    }
    // Long patterns spell out whitespace and control characters; the description says them.
    if let Some(pattern) = schema["pattern"].as_str().filter(|p| p.len() <= 40) {
        out.push(format!("matches `{pattern}`"));
    }
    out.join("; ")
}

/// An example value for a schema without one of its own: its fields' examples, else values of
/// the right type.
fn example_of(doc: &Value, schema: &Value, depth: usize) -> Value {
    let schema = resolve(doc, schema);
    if let Some(example) = schema.get("example") {
        return example.clone();
    }
    if depth > 4 {
        return Value::Null;
    }
    if let Some(first) = schema["enum"].as_array().and_then(|v| v.first()) {
        return first.clone();
    }
    if let Some(parts) = schema["allOf"].as_array() {
        let mut merged = serde_json::Map::new();
        for part in parts {
            if let Value::Object(o) = example_of(doc, part, depth + 1) {
                merged.extend(o);
            }
        }
        return Value::Object(merged);
    }
    if let Some(first) = schema["oneOf"]
        .as_array()
        .or(schema["anyOf"].as_array())
        .and_then(|b| b.first())
    {
        return example_of(doc, first, depth + 1);
    }
    let t = match &schema["type"] {
        Value::String(t) => t.as_str(),
        Value::Array(ts) => ts
            .iter()
            .filter_map(Value::as_str)
            .find(|t| *t != "null")
            .unwrap_or("null"),
        _ => "object",
    };
    match t {
        "object" => Value::Object(
            schema["properties"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, v)| (k.clone(), example_of(doc, v, depth + 1)))
                .collect(),
        ),
        "array" => Value::Array(vec![example_of(doc, &schema["items"], depth + 1)]),
        "integer" | "number" => Value::from(1),
        "boolean" => Value::Bool(true),
        "string" => Value::from(match schema["format"].as_str() {
            Some("date-time") => "2027-01-01T09:00:00Z",
            Some("date") => "2027-01-01",
            Some("email") => "ada@example.org",
            Some("uuid") => "0190f3a2-7b4c-7d8e-9f00-112233445566",
            _ => "text",
        }),
        _ => Value::Null,
    }
}
