//! `/api/v1/policies`: publish a privacy policy version (and notify everyone), list versions.
//! 201 the first time, 200 for the same version with the same content (nothing new is sent),
//! 409 for the same version with other content.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::json;
use time::format_description::well_known::Rfc3339;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::edge::AppState;
use crate::edge::json::JsonObject;
use crate::edge::schemas as fields;
use crate::edge::{AppError, FieldError};
use crate::services::notices::{NewPolicy, PublishOutcome};
use crate::store::entities::policy_version;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(index, publish))
}

#[derive(Deserialize)]
pub struct PolicyInput {
    pub version: Option<String>,
    pub effective_at: Option<String>,
    pub summary: Option<String>,
    pub url: Option<String>,
    #[serde(default)]
    pub material: bool,
    /// Accept an `effective_at` in the past: the version is recorded as already applying.
    #[serde(default)]
    pub already_in_effect: bool,
}

/// [`PolicyInput`] as [`parse`] checks it.
impl utoipa::PartialSchema for PolicyInput {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        fields::schema(json!({
            "type": "object",
            "required": ["version", "effective_at", "summary", "url"],
            "properties": {
                "version": fields::trimmed_match("[A-Za-z0-9._-]{1,64}", "1-64 letters, digits, '.', '_' or '-' (trimmed)"),
                "effective_at": fields::date_time("When the version takes effect: not in the past (422) unless `already_in_effect`"),
                "summary": fields::trimmed_text(10_000, "What changed, for the notice: 1-10000 characters (trimmed)"),
                "url": fields::http_url("Where the full policy is"),
                "material": {"type": "boolean", "default": false,
                             "description": "A material change: once in force, marketing goes only to people who consented under it"},
                "already_in_effect": {"type": "boolean", "default": false,
                             "description": "Accept an `effective_at` in the past: the version is recorded as already applying"},
            },
            // A date far ahead, so the example stays valid (tests send it).
            "example": {"version": "2099-01", "effective_at": "2099-01-01T00:00:00Z",
                        "summary": "We now keep bounce records for 30 days.",
                        "url": "https://example.com/privacy"},
        }))
    }
}
impl utoipa::ToSchema for PolicyInput {}

#[derive(Serialize, utoipa::ToSchema)]
#[schema(example = json!({"id": 3, "version": "2027-01", "effective_at": "2027-01-01T00:00:00Z",
    "summary": "We now keep bounce records for 30 days.", "url": "https://example.com/privacy",
    "material": false, "published_at": "2026-12-01T09:00:00Z", "notices_queued": 1200}))]
struct PolicyView {
    id: i64,
    version: String,
    effective_at: String,
    summary: String,
    url: String,
    material: bool,
    published_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    notices_queued: Option<u64>,
}

fn view(p: policy_version::Model, queued: Option<u64>) -> PolicyView {
    PolicyView {
        id: p.id,
        version: p.version,
        effective_at: p.effective_at.format(&Rfc3339).unwrap_or_default(),
        summary: p.summary,
        url: p.url,
        material: p.material,
        published_at: p.published_at.format(&Rfc3339).unwrap_or_default(),
        notices_queued: queued,
    }
}

/// Checks the input; shared with the CLI.
pub fn parse(input: PolicyInput) -> Result<NewPolicy, Vec<FieldError>> {
    let mut errors = Vec::new();
    let mut err = |field: &str, message: &str| {
        errors.push(FieldError {
            field: field.into(),
            message: message.into(),
        })
    };
    let version = input.version.unwrap_or_default().trim().to_owned();
    if version.is_empty()
        || version.len() > 64
        || !version
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
    {
        err("version", "must be 1-64 letters, digits, '.', '_' or '-'");
    }
    let effective_at =
        time::OffsetDateTime::parse(input.effective_at.as_deref().unwrap_or("").trim(), &Rfc3339)
            .map_err(|_| {
                err(
                    "effective_at",
                    "must be an RFC 3339 date-time, e.g. 2027-01-01T00:00:00Z",
                )
            })
            .ok();
    let summary = input.summary.unwrap_or_default().trim().to_owned();
    if summary.is_empty() || summary.chars().count() > 10_000 {
        err("summary", "must be 1-10000 characters");
    }
    let url = url::Url::parse(input.url.as_deref().unwrap_or("").trim())
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https"));
    if url.is_none() {
        err("url", "must be an http(s) URL");
    }
    match (effective_at, url) {
        (Some(effective_at), Some(url)) if errors.is_empty() => Ok(NewPolicy {
            version,
            effective_at: effective_at.to_offset(time::UtcOffset::UTC),
            summary,
            url,
            material: input.material,
            already_in_effect: input.already_in_effect,
        }),
        _ => Err(errors),
    }
}

#[utoipa::path(post, path = "/api/v1/policies", tag = "policies", summary = "Publish a privacy policy version; every user gets a notice", request_body = PolicyInput, responses((status = 201, description = "Published; notices queued", body = PolicyView), (status = 200, description = "This version was published before with the same content: nothing new is sent", body = PolicyView), super::openapi::JsonBodyErrors, super::openapi::Conflict))]
#[tracing::instrument(level = "debug", skip_all)]
async fn publish(
    State(state): State<AppState>,
    JsonObject(input): JsonObject<PolicyInput>,
) -> Result<(StatusCode, Json<PolicyView>), AppError> {
    let new = parse(input).map_err(AppError::unprocessable)?;
    match state.notices.publish_policy_idempotent(new).await? {
        PublishOutcome::Published { policy, queued } => {
            Ok((StatusCode::CREATED, Json(view(policy, Some(queued)))))
        }
        PublishOutcome::AlreadyPublished { policy } => Ok((StatusCode::OK, Json(view(policy, Some(0))))),
        PublishOutcome::Conflict => Err(AppError::conflict(
            "This version was published before with other content; publish a new version.",
        )),
    }
}

#[utoipa::path(get, path = "/api/v1/policies", tag = "policies", summary = "All policy versions", responses((status = 200, description = "Versions", body = [PolicyView])))]
#[tracing::instrument(level = "debug", skip_all)]
async fn index(State(state): State<AppState>) -> Result<Json<Vec<PolicyView>>, AppError> {
    Ok(Json(
        crate::store::policies::all(&state.db)
            .await?
            .into_iter()
            .map(|p| view(p, None))
            .collect(),
    ))
}
