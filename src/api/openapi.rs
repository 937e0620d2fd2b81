//! The OpenAPI document: the `/api/v1` operations come from the handlers' `#[utoipa::path]`
//! (see [`super::openapi_document`]); this adds what they share: the error body, the bearer
//! key, the service's description, and the public endpoints other sites call.

use std::sync::OnceLock;

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{OpenApi, SecurityRequirement};
use utoipa::{IntoResponses, ToSchema};

/// An error as every endpoint reports it: RFC 7807 `application/problem+json`.
#[derive(ToSchema)]
#[allow(dead_code)] // describes the body `crate::web::error` writes
pub struct Problem {
    /// Always `about:blank`.
    #[schema(rename = "type")]
    kind: String,
    title: String,
    /// The HTTP status code.
    status: u16,
    detail: String,
    /// One entry per invalid field (422 only).
    errors: Option<Vec<FieldProblem>>,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct FieldProblem {
    field: String,
    message: String,
}

/// The errors any `/api/v1` operation may answer.
#[derive(IntoResponses)]
#[allow(dead_code)]
pub enum ApiErrors {
    #[response(
        status = 400,
        description = "Malformed request (unreadable JSON, wrong types)",
        content_type = "application/problem+json"
    )]
    BadRequest(Problem),
    #[response(
        status = 401,
        description = "Missing or unknown API key",
        content_type = "application/problem+json"
    )]
    Unauthorized(Problem),
    #[response(
        status = 404,
        description = "No such resource",
        content_type = "application/problem+json"
    )]
    NotFound(Problem),
    #[response(
        status = 409,
        description = "Conflicts with the current state (e.g. a campaign already sending)",
        content_type = "application/problem+json"
    )]
    Conflict(Problem),
    #[response(
        status = 422,
        description = "Invalid fields, one message per field",
        content_type = "application/problem+json"
    )]
    Unprocessable(Problem),
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
    // Every /api/v1 operation needs the key; the public ones below do not.
    let needs_key = vec![SecurityRequirement::new("api_key", Vec::<String>::new())];
    for item in api.paths.paths.values_mut() {
        for op in [
            &mut item.get,
            &mut item.post,
            &mut item.put,
            &mut item.patch,
            &mut item.delete,
        ]
        .into_iter()
        .flatten()
        {
            op.security = Some(needs_key.clone());
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
        for (method, op) in [
            ("get", &mut item.get),
            ("post", &mut item.post),
            ("put", &mut item.put),
            ("patch", &mut item.patch),
            ("delete", &mut item.delete),
        ] {
            if let Some(op) = op {
                op.operation_id = Some(format!("{method}_{name}"));
            }
        }
    }
    api
}

/// The document as JSON, built once.
pub fn document_json() -> &'static str {
    static JSON: OnceLock<String> = OnceLock::new();
    JSON.get_or_init(|| {
        super::openapi_document()
            .to_json()
            .expect("the document serializes")
    })
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
    axum::extract::State(state): axum::extract::State<crate::app::AppState>,
) -> axum::response::Html<String> {
    static DOCUMENT: OnceLock<OpenApi> = OnceLock::new();
    let api = DOCUMENT.get_or_init(super::openapi_document);
    axum::response::Html(templates::api_docs::page(&state.site(), &operations(api)).into_string())
}

/// The operations of the document, in path order, for the docs page.
fn operations(api: &OpenApi) -> Vec<templates::api_docs::Operation> {
    use utoipa::openapi::RefOr;
    let schema_name = |schema: &Option<RefOr<utoipa::openapi::schema::Schema>>| match schema {
        Some(RefOr::Ref(r)) => r.ref_location.rsplit('/').next().unwrap_or("").to_owned(),
        Some(RefOr::T(_)) => "inline schema".to_owned(),
        None => "no schema".to_owned(),
    };
    let mut out = Vec::new();
    for (path, item) in &api.paths.paths {
        let methods = [
            ("GET", &item.get),
            ("POST", &item.post),
            ("PUT", &item.put),
            ("PATCH", &item.patch),
            ("DELETE", &item.delete),
        ];
        for (method, op) in methods {
            let Some(op) = op else { continue };
            out.push(templates::api_docs::Operation {
                method: method.to_owned(),
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
                        format!(
                            "{} ({place}): {}",
                            p.name,
                            p.description.clone().unwrap_or_default()
                        )
                    })
                    .collect(),
                request_body: op
                    .request_body
                    .as_ref()
                    .and_then(|b| match b {
                        RefOr::T(b) => Some(b),
                        RefOr::Ref(_) => None,
                    })
                    .map(|b| {
                        b.content
                            .iter()
                            .map(|(ct, c)| match c {
                                RefOr::T(c) => format!("{ct} {}", schema_name(&c.schema)),
                                RefOr::Ref(r) => format!("{ct} {}", r.ref_location),
                            })
                            .collect::<Vec<_>>()
                            .join(", ")
                    }),
                responses: op
                    .responses
                    .responses
                    .iter()
                    .map(|(status, r)| {
                        let description = match r {
                            RefOr::T(r) => r.description.clone(),
                            RefOr::Ref(r) => r.ref_location.clone(),
                        };
                        (status.clone(), description)
                    })
                    .collect(),
            });
        }
    }
    out.sort_by(|a, b| (&a.tag, &a.path).cmp(&(&b.tag, &b.path)));
    out
}
