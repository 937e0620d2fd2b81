//! `/api/v1`: the authenticated JSON API for marketing and operators. Every route is behind a
//! bearer API key and a per-key rate limit; errors are `application/problem+json`.

use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use utoipa_axum::{router::OpenApiRouter, routes};

mod bounded_rows;
mod campaigns;
mod lists;
mod notices;
pub mod openapi;
pub mod policies;
mod subscribers;
mod suppressions;
mod unsubscribes;

use std::net::IpAddr;

use crate::delivery::RelayState;
use crate::edge::AppError;
use crate::edge::AppState;
use crate::store::{api_keys, outbox};

/// The authenticated caller, put into request extensions by [`require_api_key`].
#[derive(Debug, Clone, Copy)]
pub struct ApiCaller {
    pub key_id: i64,
}

/// Every `/api/v1` route with its documentation: the router and the OpenAPI document are
/// built from the same handlers (`#[utoipa::path]`), so no route goes undocumented.
fn documented_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(status))
        .merge(lists::routes())
        .merge(suppressions::routes())
        .merge(policies::routes())
        .merge(notices::routes())
        .merge(campaigns::routes())
        .merge(subscribers::routes())
        .merge(unsubscribes::routes())
}

/// The OpenAPI document of the whole API (served at `/openapi.json`).
pub fn openapi_document() -> utoipa::openapi::OpenApi {
    let (_, api) = documented_routes().split_for_parts();
    let (_, import) = subscribers::import_routes().split_for_parts();
    openapi::complete(api.merge_from(import))
}

/// The document and its page, public and behind the per-IP limit like every public page.
pub fn document_routes(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/openapi.json", axum::routing::get(openapi::serve_document))
        .route("/api/docs", axum::routing::get(openapi::serve_docs))
        .route_layer(middleware::from_fn_with_state(
            state,
            crate::edge::rate_limit::per_ip,
        ))
}

pub fn routes(state: AppState) -> Router<AppState> {
    let (router, _) = documented_routes().split_for_parts();
    router.route_layer(middleware::from_fn_with_state(state, require_api_key))
}

/// Routes that stream large uploads: no body limit, and a long timeout of their own.
pub fn long_running_routes(state: AppState) -> Router<AppState> {
    let (router, _) = subscribers::import_routes().split_for_parts();
    router
        .layer(axum::extract::DefaultBodyLimit::disable())
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            std::time::Duration::from_secs(3600),
        ))
        .route_layer(middleware::from_fn_with_state(state, require_api_key))
}

/// The document is the contract of the paths it describes. A method it does not list for a
/// path answers 405 with an `Allow` naming exactly the documented methods (and HEAD with GET),
/// whether or not the router has a handler for it, so nothing is served undocumented. An
/// `/api/v1` route the document lacks altogether (added with `.route(..)` instead of
/// `routes!(..)` and `#[utoipa::path]`) answers 404, so the omission fails the first test that
/// calls it. Layered over every route in `app.rs`, so it sees `MatchedPath`.
pub async fn only_documented_methods(req: Request, next: Next) -> Response {
    let Some(route) = req.extensions().get::<MatchedPath>() else {
        return next.run(req).await;
    };
    match openapi::documented_methods(route.as_str()) {
        Some(allowed) if !allowed.contains(req.method()) => {
            let allow = allowed.iter().map(|m| m.as_str()).collect::<Vec<_>>().join(", ");
            let mut res = AppError::new(
                axum::http::StatusCode::METHOD_NOT_ALLOWED,
                "Method not allowed",
                format!("This address accepts {allow}."),
            )
            .into_response();
            if let Ok(allow) = header::HeaderValue::from_str(&allow) {
                res.headers_mut().insert(header::ALLOW, allow);
            }
            res
        }
        None if route.as_str().starts_with("/api/v1/") => {
            tracing::error!(
                route = route.as_str(),
                "refused: route missing from the OpenAPI document"
            );
            AppError::not_found().into_response()
        }
        _ => next.run(req).await,
    }
}

async fn require_api_key(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .map(str::to_owned);
    // An IP that keeps presenting missing or unknown keys is refused before the database is
    // asked; a valid key costs its IP nothing here.
    let ip =
        crate::edge::client_ip::client_ip(req.headers(), req.extensions(), state.config.trust_proxy_headers);
    let failures = &state.limits.api_key_failures;
    if let Some(ip) = &ip
        && let Err(e) = failures.check(ip)
    {
        return e.into_response();
    }
    let refused = |ip: Option<IpAddr>| match ip.map(|ip| failures.failed(&ip)) {
        Some(Err(too_many)) => too_many.into_response(),
        _ => AppError::unauthorized().into_response(),
    };
    let Some(presented) = presented else {
        return refused(ip);
    };
    let key = match api_keys::authenticate(&state.db, &presented).await {
        Ok(Some(key)) => key,
        Ok(None) => return refused(ip),
        Err(e) => return AppError::from(e).into_response(),
    };
    if let Err(e) = state.limits.api.check(&key.id) {
        return e.into_response();
    }
    req.extensions_mut().insert(ApiCaller { key_id: key.id });
    next.run(req).await
}

#[derive(serde::Serialize)]
struct Status {
    outbox: outbox::StatusCounts,
    relay: RelayStatus,
}

/// Whether delivery is sending, or paused because of the relay (and why, since and until when).
#[derive(serde::Serialize)]
struct RelayStatus {
    state: &'static str,
    reason: Option<String>,
    since: Option<String>,
    until: Option<String>,
}

impl From<RelayState> for RelayStatus {
    fn from(state: RelayState) -> Self {
        let ts = |t: time::OffsetDateTime| t.format(&time::format_description::well_known::Rfc3339).ok();
        match state {
            RelayState::Sending => RelayStatus {
                state: "sending",
                reason: None,
                since: None,
                until: None,
            },
            RelayState::Paused { reason, since, until } => RelayStatus {
                state: "paused",
                reason: Some(reason),
                since: ts(since),
                until: ts(until),
            },
        }
    }
}

impl utoipa::PartialSchema for Status {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use crate::edge::schemas::{date_time, one_of, or_null};
        let count = |description: &str| serde_json::json!({"type": "integer", "minimum": 0, "description": description});
        crate::edge::schemas::schema(serde_json::json!({
            "type": "object",
            "required": ["outbox", "relay"],
            "properties": {"outbox": {
                "type": "object",
                "description": "Transactional emails (confirmations, notices, export links, test sends) by status",
                "required": ["queued", "sending", "sent", "failed", "cancelled"],
                "properties": {
                    "queued": count("Waiting for their turn (or for a retry)"),
                    "sending": count("Claimed by a worker"),
                    "sent": count("Accepted by the relay"),
                    "failed": count("Given up"),
                    "cancelled": count("Not sent, on purpose (e.g. the address was suppressed)"),
                },
            }, "relay": {
                "type": "object",
                "description": "Whether this instance's delivery is sending, or paused because the relay cannot be \
                                reached or refuses the session, our credentials or the sender (no message \
                                spends an attempt meanwhile)",
                "required": ["state", "reason", "since", "until"],
                "properties": {
                    "state": one_of(&["sending", "paused"], "Sending, or waiting for the relay"),
                    "reason": {"type": ["string", "null"], "description": "Why delivery is paused: the relay's reply, or what failed (null while sending)"},
                    "since": or_null(date_time("When the pause began (null while sending)")),
                    "until": or_null(date_time("When delivery tries the relay again (null while sending)")),
                },
            }},
            "example": {"outbox": {"queued": 3, "sending": 1, "sent": 1520, "failed": 2, "cancelled": 4},
                        "relay": {"state": "paused", "reason": "the relay refused our credentials (AUTH): 535 5.7.8 authentication failed",
                                  "since": "2027-03-01T10:00:00Z", "until": "2027-03-01T10:00:08Z"}},
        }))
    }
}
impl utoipa::ToSchema for Status {}

/// Delivery at a glance: outbox rows by status, and whether the relay takes mail.
#[utoipa::path(get, path = "/api/v1/status", tag = "delivery", summary = "Outbox rows by status, and the relay's state", responses((status = 200, description = "Counts and the relay's state", body = Status)))]
#[tracing::instrument(level = "debug", skip_all)]
async fn status(State(state): State<AppState>) -> Result<Json<Status>, AppError> {
    Ok(Json(Status {
        outbox: outbox::counts(&state.db).await?,
        relay: state.relay.state().into(),
    }))
}

#[cfg(test)]
mod tests {
    use axum::Router;
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use axum::middleware;
    use axum::routing::get;
    use tower::ServiceExt;

    /// What the app does with a route or method someone added without documenting it.
    #[tokio::test]
    async fn a_route_missing_from_the_document_is_refused() {
        let app = Router::new()
            .route(
                "/api/v1/lists",
                get(|| async { "documented" }).put(|| async { "undocumented method" }),
            )
            .route("/api/v1/undocumented", get(|| async { "undocumented route" }))
            .route("/privacy", get(|| async { "not the API" }))
            .layer(middleware::from_fn(super::only_documented_methods));
        let answer = |method: &str, uri: &str| {
            let request = Request::builder().method(method).uri(uri).body(Body::empty());
            let app = app.clone();
            async move { app.oneshot(request.unwrap()).await.unwrap() }
        };
        let status = |method: &'static str, uri: &'static str| {
            let answer = answer(method, uri);
            async move { answer.await.status() }
        };
        assert_eq!(status("GET", "/api/v1/lists").await, StatusCode::OK);
        assert_eq!(status("HEAD", "/api/v1/lists").await, StatusCode::OK);
        let put = answer("PUT", "/api/v1/lists").await;
        assert_eq!(put.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(put.headers()["allow"], "GET, HEAD, POST");
        assert_eq!(status("GET", "/api/v1/undocumented").await, StatusCode::NOT_FOUND);
        assert_eq!(status("GET", "/privacy").await, StatusCode::OK);
    }
}
