//! `POST /api/v1/unsubscribes`: an opt-out received by mail or phone, recorded at once. The
//! answer is the same whether or not the address was known.

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
use crate::store::lists;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(create))
}

#[derive(Deserialize)]
struct Unsubscribe {
    email: Option<String>,
    lists: Option<Vec<String>>,
}

impl utoipa::PartialSchema for Unsubscribe {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        fields::schema(serde_json::json!({
            "type": "object",
            "required": ["email"],
            "properties": {
                "email": fields::email("The address that opted out"),
                "lists": {"type": ["array", "null"], "items": fields::slug("A list's slug"),
                          "description": "The lists it left, each of which must exist (default: all)"},
            },
            "example": {"email": "ada@example.org", "lists": ["weekly"]},
        }))
    }
}
impl utoipa::ToSchema for Unsubscribe {}

#[derive(serde::Serialize, utoipa::ToSchema)]
#[schema(example = json!({"status": "recorded"}))]
struct Recorded {
    /// Always `recorded`
    #[schema(value_type = String)]
    status: &'static str,
}

#[utoipa::path(post, path = "/api/v1/unsubscribes", tag = "subscribers", summary = "Record an opt-out received elsewhere (all lists unless lists are named)", request_body = Unsubscribe, responses((status = 202, description = "Recorded (the same answer whether or not the address is known)", body = Recorded), super::openapi::JsonBodyErrors))]
#[tracing::instrument(level = "debug", skip_all)]
async fn create(
    State(state): State<AppState>,
    JsonObject(body): JsonObject<Unsubscribe>,
) -> Result<(StatusCode, Json<Recorded>), AppError> {
    let email = EmailAddress::parse(body.email.as_deref().unwrap_or("")).map_err(|e| {
        AppError::unprocessable(vec![FieldError {
            field: "email".into(),
            message: format!("the address {e}"),
        }])
    })?;
    let ids = match &body.lists {
        None => None,
        Some(slugs) => {
            let mut ids = Vec::new();
            for slug in slugs {
                let list = lists::by_slug(&state.db, slug).await?.ok_or_else(|| {
                    AppError::unprocessable(vec![FieldError {
                        field: "lists".into(),
                        message: format!("there is no list {slug:?}"),
                    }])
                })?;
                ids.push(list.id);
            }
            Some(ids)
        }
    };
    state
        .leaving
        .unsubscribe_by_address(&email, ids.as_deref(), "operator:api")
        .await?;
    Ok((StatusCode::ACCEPTED, Json(Recorded { status: "recorded" })))
}
