//! `POST /api/v1/unsubscribes`: an opt-out received by mail or phone, recorded at once. The
//! answer is the same whether or not the address was known.

use axum::extract::State;
use axum::http::StatusCode;
use axum::{Json, Router, routing::post};
use serde::Deserialize;

use crate::app::AppState;
use crate::domain::EmailAddress;
use crate::store::lists;
use crate::web::{AppError, FieldError};

pub fn routes() -> Router<AppState> {
    Router::new().route("/api/v1/unsubscribes", post(create))
}

#[derive(Deserialize)]
struct Unsubscribe {
    email: Option<String>,
    lists: Option<Vec<String>>,
}

async fn create(
    State(state): State<AppState>,
    Json(body): Json<Unsubscribe>,
) -> Result<(StatusCode, Json<serde_json::Value>), AppError> {
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
    crate::leaving::unsubscribe_by_address(&state, &email, ids.as_deref(), "operator:api").await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(serde_json::json!({ "status": "recorded" })),
    ))
}
