//! `/api/v1/notices/breach`: email the people a breach affected and post the notice on
//! /notices until it is withdrawn.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use time::format_description::well_known::Rfc3339;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::domain::{EmailAddress, HeaderText};
use crate::edge::AppState;
use crate::edge::json::JsonObject;
use crate::edge::schemas as fields;
use crate::edge::{AppError, FieldError};
use crate::services::notices::Affected;
use crate::store::entities::breach_notice;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(index, publish))
        .routes(routes!(withdraw))
}

#[derive(Deserialize)]
struct BreachInput {
    subject: Option<String>,
    body: Option<String>,
    affected: Option<Value>,
}

const BODY_MAX_CHARS: usize = 100_000;

impl utoipa::PartialSchema for BreachInput {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        let mut body = fields::not_blank("The notice, as plain text");
        body["maxLength"] = BODY_MAX_CHARS.into();
        fields::schema(json!({
            "type": "object",
            "required": ["subject", "body", "affected"],
            "properties": {
                "subject": fields::header_text(HeaderText::MAX_CHARS, "The email's subject: one line"),
                "body": body,
                "affected": {
                    "description": "Who is told: \"all\", a list of addresses, or the people who signed \
                                    up between `from` and `until` (`from` before `until`)",
                    "oneOf": [
                        {"type": "string", "enum": ["all"]},
                        {"type": "array", "items": fields::email("An affected address")},
                        {"type": "object", "required": ["from", "until"], "properties": {
                            "from": fields::date_time("Start of the time range"),
                            "until": fields::date_time("End of the time range"),
                        }},
                    ],
                },
            },
            "example": {"subject": "A security incident", "affected": "all",
                        "body": "On 3 March we found that ..."},
        }))
    }
}
impl utoipa::ToSchema for BreachInput {}

#[derive(Serialize, utoipa::ToSchema)]
#[schema(example = json!({"id": 1, "subject": "A security incident", "body": "On 3 March we found that ...",
    "affected": "all", "notified": 1200, "published_at": "2027-03-04T09:00:00Z", "withdrawn_at": null}))]
struct BreachView {
    id: i64,
    subject: String,
    body: String,
    affected: String,
    notified: i32,
    published_at: String,
    withdrawn_at: Option<String>,
}

impl From<breach_notice::Model> for BreachView {
    fn from(n: breach_notice::Model) -> Self {
        BreachView {
            id: n.id,
            subject: n.subject,
            body: n.body,
            affected: n.affected,
            notified: n.notified,
            published_at: n.published_at.format(&Rfc3339).unwrap_or_default(),
            withdrawn_at: n.withdrawn_at.and_then(|t| t.format(&Rfc3339).ok()),
        }
    }
}

fn parse_affected(v: Option<&Value>) -> Result<Affected, String> {
    let time = |v: Option<&Value>| {
        v.and_then(Value::as_str)
            .and_then(|s| time::OffsetDateTime::parse(s, &Rfc3339).ok())
    };
    match v {
        Some(Value::String(s)) if s == "all" => Ok(Affected::All),
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| {
                i.as_str()
                    .and_then(|s| EmailAddress::parse(s).ok())
                    .ok_or("every address must be valid")
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Affected::Addresses)
            .map_err(str::to_owned),
        Some(Value::Object(o)) => match (time(o.get("from")), time(o.get("until"))) {
            (Some(from), Some(until)) if from < until => Ok(Affected::SignedUp { from, until }),
            _ => Err("a time range needs RFC 3339 \"from\" before \"until\"".into()),
        },
        _ => Err("must be \"all\", a list of addresses, or {\"from\", \"until\"}".into()),
    }
}

#[derive(Serialize, utoipa::ToSchema)]
struct BreachPublished {
    id: i64,
    /// Notices queued, one per affected person
    notified: u64,
    notice: BreachView,
}

#[utoipa::path(post, path = "/api/v1/notices/breach", tag = "notices", summary = "Publish a breach notice to the affected people", request_body = BreachInput, responses((status = 201, description = "Published", body = BreachPublished), super::openapi::JsonBodyErrors))]
#[tracing::instrument(level = "debug", skip_all)]
async fn publish(
    State(state): State<AppState>,
    JsonObject(input): JsonObject<BreachInput>,
) -> Result<(StatusCode, Json<BreachPublished>), AppError> {
    let mut errors = Vec::new();
    let subject = HeaderText::parse(input.subject.as_deref().unwrap_or(""))
        .map_err(|e| {
            errors.push(FieldError {
                field: "subject".into(),
                message: format!("the subject {e}"),
            })
        })
        .ok();
    let body = input.body.unwrap_or_default();
    if body.trim().is_empty() || body.chars().count() > BODY_MAX_CHARS {
        errors.push(FieldError {
            field: "body".into(),
            message: "must be 1-100000 characters".into(),
        });
    }
    let affected = parse_affected(input.affected.as_ref())
        .map_err(|m| {
            errors.push(FieldError {
                field: "affected".into(),
                message: m,
            })
        })
        .ok();
    let (Some(subject), Some(affected)) = (subject, affected) else {
        return Err(AppError::unprocessable(errors));
    };
    if !errors.is_empty() {
        return Err(AppError::unprocessable(errors));
    }
    let (notice, queued) = state.notices.publish_breach(subject, body, affected).await?;
    Ok((
        StatusCode::CREATED,
        Json(BreachPublished {
            id: notice.id,
            notified: queued,
            notice: notice.into(),
        }),
    ))
}

#[utoipa::path(get, path = "/api/v1/notices/breach", tag = "notices", summary = "All breach notices", responses((status = 200, description = "Notices", body = [BreachView])))]
#[tracing::instrument(level = "debug", skip_all)]
async fn index(State(state): State<AppState>) -> Result<Json<Vec<BreachView>>, AppError> {
    Ok(Json(
        crate::store::policies::breach_notices(&state.db, false)
            .await?
            .into_iter()
            .map(Into::into)
            .collect(),
    ))
}

#[utoipa::path(post, path = "/api/v1/notices/breach/{id}/withdraw", tag = "notices", summary = "Withdraw a breach notice (what is not sent yet stays unsent)", params(("id" = i64, Path, description = "Notice id")), responses((status = 200, description = "Withdrawn", body = BreachView), super::openapi::BadRequest, super::openapi::NotFound))]
#[tracing::instrument(level = "debug", skip_all)]
async fn withdraw(State(state): State<AppState>, Path(id): Path<i64>) -> Result<Json<BreachView>, AppError> {
    crate::store::policies::withdraw_breach_notice(&state.db, id)
        .await?
        .map(|n| Json(n.into()))
        .ok_or_else(AppError::not_found)
}
