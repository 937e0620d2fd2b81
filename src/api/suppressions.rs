//! `POST /api/v1/suppressions`: a bounce or complaint feed. The address is stored only as its
//! keyed hash (GD-4) and is never mailed again; imports and API adds skip it (CS-10, CS-11).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::domain::EmailAddress;
use crate::edge::AppState;
use crate::edge::json::JsonObject;
use crate::edge::schemas as fields;
use crate::edge::{AppError, FieldError};
use crate::store::suppressions::{self, SuppressionReason};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(create))
}

#[derive(Deserialize)]
struct NewSuppression {
    email: Option<String>,
    reason: Option<String>,
}

impl utoipa::PartialSchema for NewSuppression {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        fields::schema(serde_json::json!({
            "type": "object",
            "required": ["email"],
            "properties": {
                "email": fields::email("The address never to mail again"),
                "reason": fields::or_null(fields::one_of(
                    &["bounce", "hard_bounce", "complaint", "manual"],
                    "Why (default manual); bounce and hard_bounce are the same",
                )),
            },
            "example": {"email": "ada@example.org", "reason": "complaint"},
        }))
    }
}
impl utoipa::ToSchema for NewSuppression {}

#[derive(serde::Serialize, utoipa::ToSchema)]
#[schema(example = json!({"status": "suppressed", "reason": "complaint"}))]
struct Suppressed {
    /// Always `suppressed`
    #[schema(value_type = String)]
    status: &'static str,
    /// hard_bounce, complaint or manual
    #[schema(value_type = String)]
    reason: &'static str,
}

#[utoipa::path(post, path = "/api/v1/suppressions", tag = "suppressions", summary = "Suppress an address (stored as a keyed hash)", request_body = NewSuppression, responses((status = 201, description = "Suppressed", body = Suppressed), super::openapi::JsonBodyErrors))]
#[tracing::instrument(level = "debug", skip_all)]
async fn create(
    State(state): State<AppState>,
    JsonObject(body): JsonObject<NewSuppression>,
) -> Result<(StatusCode, Json<Suppressed>), AppError> {
    let mut errors = Vec::new();
    let email = EmailAddress::parse(body.email.as_deref().unwrap_or(""))
        .map_err(|e| {
            errors.push(FieldError {
                field: "email".into(),
                message: format!("the address {e}"),
            })
        })
        .ok();
    let reason = match body.reason.as_deref().unwrap_or("manual") {
        "bounce" | "hard_bounce" => Some(SuppressionReason::HardBounce),
        "complaint" => Some(SuppressionReason::Complaint),
        "manual" => Some(SuppressionReason::Manual),
        _ => {
            errors.push(FieldError {
                field: "reason".into(),
                message: "must be one of bounce, complaint, manual".into(),
            });
            None
        }
    };
    let (Some(email), Some(reason)) = (email, reason) else {
        return Err(AppError::unprocessable(errors));
    };
    suppressions::add(&state.db, &state.address_hasher.hash(&email), reason).await?;
    Ok((
        StatusCode::CREATED,
        Json(Suppressed {
            status: "suppressed",
            reason: reason.as_str(),
        }),
    ))
}
