//! [`JsonObject`]: axum's `Json` for a request body that must be a JSON object. serde reads a
//! struct from an array of its fields in order too (`[null, "Ada"]`), which no client means and
//! no schema of an object allows.

use axum::Json;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::AppError;

pub struct JsonObject<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonObject<T> {
    type Rejection = Response;

    async fn from_request(req: Request, state: &S) -> Result<Self, Response> {
        // Json's own answers for a body that is not JSON, not an object, or too large.
        let Json(object) = Json::<Map<String, Value>>::from_request(req, state)
            .await
            .map_err(IntoResponse::into_response)?;
        T::deserialize(Value::Object(object))
            .map(JsonObject)
            .map_err(|e| {
                AppError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "Unprocessable Entity",
                    format!("Failed to deserialize the JSON body into the target type: {e}"),
                )
                .into_response()
            })
    }
}
