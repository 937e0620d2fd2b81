//! Public HTTP: pages for people (and their JSON twins), health, and the middleware every
//! public route shares (per-IP rate limit).

pub mod client_ip;
pub mod error;
mod leave;
mod privacy;
pub mod rate_limit;
mod subscribe;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::app::AppState;
pub use error::{AppError, FieldError};
use rate_limit::IpLimiter;

/// Routes for the public: every one behind the per-IP limit.
pub fn public_routes(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/openapi.json", get(crate::api::openapi::serve_document))
        .route("/api/docs", get(crate::api::openapi::serve_docs))
        .merge(subscribe::routes())
        .merge(leave::routes())
        .merge(privacy::routes())
        .route_layer(middleware::from_fn_with_state(state.clone(), limit_per_ip))
        .merge(leave::one_click_routes().route_layer(middleware::from_fn_with_state(state, limit_one_click)))
}

/// Applies `limiter` to the client's IP.
async fn limit_ip(state: &AppState, limiter: &IpLimiter, req: Request, next: Next) -> Response {
    let ip = client_ip::client_ip(req.headers(), req.extensions(), state.config.trust_proxy_headers);
    if let Some(ip) = ip
        && let Err(e) = limiter.check(&ip)
    {
        return e.into_response();
    }
    next.run(req).await
}

async fn limit_one_click(State(state): State<AppState>, req: Request, next: Next) -> Response {
    limit_ip(&state, &state.limits.one_click, req, next).await
}

async fn limit_per_ip(State(state): State<AppState>, req: Request, next: Next) -> Response {
    limit_ip(&state, &state.limits.public, req, next).await
}

/// The public endpoints other sites and mail clients call, for the OpenAPI document.
pub fn public_openapi() -> utoipa::openapi::OpenApi {
    use utoipa::OpenApi;
    #[derive(OpenApi)]
    #[openapi(paths(healthz, subscribe::submit, leave::unsubscribe))]
    struct Public;
    Public::openapi()
}

/// 200 when the service is up and its database answers; 503 otherwise.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "public",
    summary = "Up, and the database answers",
    responses(
        (status = 200, description = "Up", body = String, content_type = "text/plain"),
        (status = 503,
            description = "The database does not answer (a page, or a problem to a request that asks for \
                           JSON)",
            content((crate::api::openapi::Problem = "application/problem+json"), (String = "text/html"))),
        (status = 429, description = "Too many requests from this IP; see Retry-After",
            content((crate::api::openapi::Problem = "application/problem+json"), (String = "text/html"))),
    )
)]
pub(crate) async fn healthz(State(state): State<AppState>) -> Result<&'static str, AppError> {
    crate::store::ping(&state.db).await.map_err(|e| {
        tracing::warn!(error = %e, "health check: database unavailable");
        AppError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "Unavailable",
            "The database does not answer.",
        )
    })?;
    Ok("ok")
}

/// A link token that did not verify: a 4xx page (or problem), never a 5xx (TK-1..4).
pub fn token_rejected(err: crate::tokens::TokenError) -> AppError {
    use crate::tokens::TokenError;
    match err {
        TokenError::Expired => AppError::new(
            StatusCode::GONE,
            "This link has expired",
            "Links in our emails work only for a limited time. Please start again.",
        ),
        TokenError::Invalid | TokenError::UnknownKey | TokenError::WrongPurpose => AppError::new(
            StatusCode::BAD_REQUEST,
            "This link is not valid",
            "The link may have been cut off or changed. Please use the link exactly as it arrived.",
        ),
    }
}
