//! Public HTTP: pages for people (and their JSON twins), health, and the middleware every
//! public route shares (per-IP rate limit).

mod form;
mod leaving;
mod notices;
mod signup;

use axum::Router;
use axum::extract::State;
use axum::middleware;
use axum::routing::get;

use crate::edge::error::Problem;
use crate::edge::rate_limit;
use crate::edge::{AppError, AppState};

/// Routes for the public: every one behind the per-IP limit.
pub fn public_routes(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/", get(home))
        .merge(signup::routes())
        .merge(leaving::routes())
        .merge(notices::routes())
        .route_layer(middleware::from_fn_with_state(state.clone(), rate_limit::per_ip))
        .merge(
            Router::new()
                .route("/healthz", get(healthz))
                .route_layer(middleware::from_fn_with_state(
                    state.clone(),
                    rate_limit::health_per_ip,
                )),
        )
        .merge(
            leaving::one_click_routes().route_layer(middleware::from_fn_with_state(
                state,
                rate_limit::one_click_per_ip,
            )),
        )
}

/// The public endpoints other sites and mail clients call, for the OpenAPI document.
pub fn public_openapi() -> utoipa::openapi::OpenApi {
    use utoipa::OpenApi;
    #[derive(OpenApi)]
    #[openapi(paths(
        healthz,
        signup::show_form,
        signup::submit,
        leaving::show_unsubscribe,
        leaving::unsubscribe
    ))]
    struct Public;
    Public::openapi()
}

/// How long a write that failed for want of the database keeps `/healthz` at 503.
const WRITES_FAILED_WITHIN: std::time::Duration = std::time::Duration::from_secs(10);

/// 200 when the service is up and its database takes writes; 503 while it does not, and for
/// 10 s after a write last failed for want of it.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "public",
    summary = "Up, and the database takes writes",
    responses(
        (status = 200, description = "Up", body = String, content_type = "text/plain"),
        (status = 503,
            description = "The database does not take writes (unreachable, full or read-only): a page, or a \
                           problem to a request that asks for JSON",
            content((Problem = "application/problem+json"), (String = "text/html"))),
        (status = 429, description = "Too many requests from this IP; see Retry-After",
            content((Problem = "application/problem+json"), (String = "text/html"))),
    )
)]
#[tracing::instrument(level = "debug", skip_all)]
pub(crate) async fn healthz(State(state): State<AppState>) -> Result<&'static str, AppError> {
    // A write, not a read: a full disk or a read-only database answers reads. And what the
    // other writes met lately: a full disk takes a small write where a larger one fails.
    crate::store::check_writes(&state.db)
        .await
        .map_err(AppError::unavailable)?;
    if crate::store::trouble::unavailable_within(WRITES_FAILED_WITHIN) {
        return Err(AppError::still_unavailable());
    }
    Ok("ok")
}

/// The home page: the organisation, its public lists with a subscribe link each, and links to
/// the privacy policy and the notices.
#[tracing::instrument(level = "debug", skip_all)]
async fn home(State(state): State<AppState>) -> Result<axum::response::Html<String>, AppError> {
    let lists = state.public_lists.get(&state.db).await?;
    let offered: Vec<templates::pages::OfferedList> = lists
        .iter()
        .map(|l| templates::pages::OfferedList {
            slug: &l.slug,
            name: &l.name,
            description: l.description.as_deref(),
        })
        .collect();
    Ok(axum::response::Html(
        templates::pages::home(&state.site(), &offered).into_string(),
    ))
}
