//! One error type for every handler, and one place that decides how it looks: an HTML page for
//! people, `application/problem+json` (RFC 9457) for the API and for requests that send or ask
//! for JSON. Handlers return [`AppError`]; the `render_errors` middleware writes the body.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::AppState;
pub use crate::domain::FieldError;
use crate::store;

#[derive(Debug, Clone)]
pub struct AppError {
    pub status: StatusCode,
    pub title: String,
    pub detail: String,
    pub errors: Vec<FieldError>,
    pub retry_after: Option<u64>,
    /// For a page reached from an email: what the person can do instead.
    pub way_on: Option<templates::pages::WayOn>,
}

impl AppError {
    pub fn new(status: StatusCode, title: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            status,
            title: title.into(),
            detail: detail.into(),
            errors: Vec::new(),
            retry_after: None,
            way_on: None,
        }
    }
    pub fn with_way_on(mut self, way_on: templates::pages::WayOn) -> Self {
        self.way_on = Some(way_on);
        self
    }
    pub fn not_found() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "Not found",
            "There is nothing at this address.",
        )
    }
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "Bad request", detail)
    }
    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            "A valid API key is required (Authorization: Bearer KEY).",
        )
    }
    pub fn conflict(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "Conflict", detail)
    }
    pub fn unprocessable(errors: Vec<FieldError>) -> Self {
        let mut e = Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid input",
            "Some fields need attention.",
        );
        e.errors = errors;
        e
    }
    pub fn too_many_requests(retry_after: u64) -> Self {
        let mut e = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many requests",
            "Please slow down and try again shortly.",
        );
        e.retry_after = Some(retry_after.max(1));
        e
    }
    /// The database cannot be used just now (unreachable, full, read-only): a 503 that says
    /// to come back shortly, and a warning in the log (the outage is not a bug).
    pub fn unavailable(cause: impl std::fmt::Display) -> Self {
        store::trouble::note_unavailable();
        tracing::warn!(error = %cause, "database unavailable");
        Self::still_unavailable()
    }
    /// The same answer, for a check that only repeats what a write met (nothing new to log).
    pub fn still_unavailable() -> Self {
        let mut e = Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "Unavailable",
            "The service cannot reach its database just now. Please try again in a minute.",
        );
        e.retry_after = Some(30);
        e
    }
    /// Something on our side failed. The cause is logged once here; the client gets no detail.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Something went wrong",
            "Please try again later.",
        )
    }
}

impl From<store::Error> for AppError {
    fn from(e: store::Error) -> Self {
        if store::is_unique_violation(&e) {
            return AppError::conflict("This already exists.");
        }
        if store::is_unavailable(&e) {
            return AppError::unavailable(e);
        }
        AppError::internal(e)
    }
}

impl From<crate::services::Error> for AppError {
    fn from(e: crate::services::Error) -> Self {
        match e {
            crate::services::Error::Invalid(errors) => AppError::unprocessable(errors),
            crate::services::Error::Store(e) => e.into(),
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let mut res = self.status.into_response();
        if let Some(secs) = self.retry_after
            && let Ok(v) = HeaderValue::from_str(&secs.to_string())
        {
            res.headers_mut().insert(header::RETRY_AFTER, v);
        }
        res.extensions_mut().insert(Arc::new(self));
        res
    }
}

/// An error as every endpoint reports it to programs: RFC 9457 `application/problem+json`.
// The same type is written here and described in the OpenAPI document.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(example = json!({"type": "about:blank", "title": "Invalid input", "status": 422,
    "detail": "Some fields need attention.",
    "errors": [{"field": "slug", "message": "must be 1-64 lower-case letters, digits or '-'"}]}))]
pub struct Problem {
    /// Always `about:blank`.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    pub detail: String,
    /// One entry per invalid field (422 only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schema(required = false)]
    pub errors: Vec<FieldError>,
}

/// Does this request want JSON back? API paths always; elsewhere when it sent JSON, or asked
/// for JSON and not for HTML.
pub fn wants_json(req: &Request) -> bool {
    req.uri().path().starts_with("/api/") || wants_json_headers(req.headers())
}

pub fn wants_json_headers(headers: &axum::http::HeaderMap) -> bool {
    let value = |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("");
    let is_json = |v: &str| v.contains("application/json") || v.contains("+json");
    let accept = value(header::ACCEPT);
    is_json(value(header::CONTENT_TYPE)) || (is_json(accept) && !accept.contains("text/html"))
}

/// Renders every error response: ours ([`AppError`]) and axum's own rejections (404, 405,
/// 413, 415, malformed JSON ...), which arrive as short text/plain bodies.
pub async fn render_errors(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let json = wants_json(&req);
    let res = next.run(req).await;
    let status = res.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return res;
    }
    let (mut parts, body) = res.into_parts();
    let err = match parts.extensions.remove::<Arc<AppError>>() {
        Some(err) => (*err).clone(),
        None => {
            let is_text = parts
                .headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_none_or(|v| v.starts_with("text/plain"));
            if !is_text {
                return Response::from_parts(parts, body);
            }
            let bytes = axum::body::to_bytes(body, 4096).await.unwrap_or_default();
            let detail = String::from_utf8_lossy(&bytes).trim().to_owned();
            let title = status.canonical_reason().unwrap_or("Error").to_owned();
            let detail = if detail.is_empty() {
                default_detail(status).to_owned()
            } else {
                detail
            };
            AppError::new(status, title, detail)
        }
    };
    parts.headers.remove(header::CONTENT_LENGTH);
    let body = if json {
        parts.headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        let problem = Problem {
            kind: "about:blank".into(),
            title: err.title,
            status: status.as_u16(),
            detail: err.detail,
            errors: err.errors,
        };
        Body::from(serde_json::to_vec(&problem).unwrap_or_default())
    } else {
        parts.headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
        let page = templates::pages::error_page(
            &state.site(),
            status.as_u16(),
            &err.title,
            &err.detail,
            err.way_on,
        );
        Body::from(page.into_string())
    };
    Response::from_parts(parts, body)
}

fn default_detail(status: StatusCode) -> &'static str {
    match status {
        StatusCode::NOT_FOUND => "There is nothing at this address.",
        StatusCode::METHOD_NOT_ALLOWED => "This address does not accept that method.",
        StatusCode::PAYLOAD_TOO_LARGE => "The request body is too large.",
        StatusCode::REQUEST_TIMEOUT => "The request took too long.",
        _ => "The request could not be handled.",
    }
}
