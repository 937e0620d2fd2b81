//! `/api/v1/campaigns` and `/api/v1/test-recipients`: drafts, preview, test sends, send,
//! schedule, pause, resume, cancel, and progress. Statistics are counts only: no open pixels,
//! no per-recipient click tracking (GD-7).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::json;
use time::format_description::well_known::Rfc3339;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::domain::{EmailAddress, HeaderText};
use crate::edge::AppState;
use crate::edge::json::JsonObject;
use crate::edge::schemas as fields;
use crate::edge::{AppError, FieldError};
use crate::mail::content::RecipientFields;
use crate::services::campaigns::CampaignInput;
use crate::store::campaigns as db;
use crate::store::entities::campaign::{self, CampaignStatus};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(index, create))
        .routes(routes!(show, update, remove))
        .routes(routes!(preview))
        .routes(routes!(test_send))
        .routes(routes!(send))
        .routes(routes!(schedule))
        .routes(routes!(pause))
        .routes(routes!(resume))
        .routes(routes!(cancel))
        .routes(routes!(add_test_recipient))
}

#[derive(Serialize, utoipa::ToSchema)]
#[schema(example = json!({"id": 7, "status": "sending", "subject": "Our spring news", "lists": ["weekly"],
    "from": null, "send_at": null, "recipients": 1200, "queued": 700, "sent": 480, "failed": 2,
    "skipped": 18, "skipped_reasons": {"unsubscribed": 15, "suppressed": 3}, "cancelled": 0,
    "created_at": "2027-03-01T09:00:00Z", "started_at": "2027-03-01T10:00:00Z", "finished_at": null, "paused_reason": null}))]
pub struct CampaignView {
    id: i64,
    #[schema(schema_with = campaign_status)]
    status: CampaignStatus,
    subject: String,
    lists: Vec<String>,
    from: Option<String>,
    send_at: Option<String>,
    recipients: i64,
    /// Why a started campaign reached no one; null when it has recipients or has not started.
    no_recipients_reason: Option<String>,
    queued: i64,
    sent: i64,
    failed: i64,
    skipped: i64,
    skipped_reasons: std::collections::BTreeMap<String, i64>,
    cancelled: i64,
    created_at: String,
    started_at: Option<String>,
    finished_at: Option<String>,
    /// Why delivery paused the campaign (the relay refused its content); null when it is not
    /// paused, or the operator paused it. Resuming sends again what was held.
    paused_reason: Option<String>,
}

/// [`CampaignInput`] as `Campaigns::validate` checks it: a subject, at least one list, and
/// either markdown or html with text.
impl utoipa::PartialSchema for CampaignInput {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        let content = fields::not_blank;
        let absent = |description: &str| json!({"type": "null", "description": description});
        fields::schema(json!({
            "description": "A campaign: markdown, or html and text (each a template that may use the \
                            recipient's fields). The lists must exist, `from` must be on the sending \
                            domain, and the template must compile.",
            "allOf": [{
                "type": "object",
                "required": ["subject", "lists"],
                "properties": {
                    "subject": fields::header_text(HeaderText::MAX_CHARS, "The subject, sent exactly as written: one line"),
                    "lists": {"type": "array", "minItems": 1, "items": fields::slug("A list's slug"),
                              "description": "The lists whose confirmed subscribers get it"},
                    "markdown": fields::or_null(content("The content as markdown")),
                    "html": fields::or_null(content("The HTML part (with `text`)")),
                    "text": fields::or_null(content("The plain-text part (with `html`)")),
                    "from": fields::or_null(fields::email("The sender, on the sending domain (default: MAIL_FROM)")),
                    "send_at": fields::or_null(fields::date_time("When `send` starts it (default: at once)")),
                },
            }, {
                "oneOf": [
                    {"type": "object", "required": ["markdown"], "properties": {
                        "markdown": content("The content as markdown"),
                        "html": absent("Not with markdown"), "text": absent("Not with markdown")}},
                    {"type": "object", "required": ["html", "text"], "properties": {
                        "html": content("The HTML part"), "text": content("The plain-text part"),
                        "markdown": absent("Not with html and text")}},
                ],
            }],
            "example": {"subject": "Our spring news", "lists": ["weekly"],
                        "markdown": "Hello {{ name }},\n\nspring is here."},
        }))
    }
}
impl utoipa::ToSchema for CampaignInput {}

fn campaign_status() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    fields::schema(fields::one_of(
        &["draft", "scheduled", "sending", "paused", "sent", "cancelled"],
        "Where the campaign is",
    ))
}

fn ts(t: time::OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

async fn view(state: &AppState, c: campaign::Model) -> Result<CampaignView, AppError> {
    let p = db::progress(&state.db, c.id).await?;
    let lists = db::lists_of(&state.db, c.id)
        .await?
        .into_iter()
        .map(|l| l.slug)
        .collect();
    let no_recipients_reason = state.campaigns.why_no_recipients(&c).await?;
    Ok(CampaignView {
        no_recipients_reason,
        id: c.id,
        status: c.status,
        subject: c.subject,
        lists,
        from: c.from_address,
        send_at: c.send_at.map(ts),
        recipients: c.recipients,
        queued: p.queued,
        sent: p.sent,
        failed: p.failed,
        skipped: p.skipped,
        skipped_reasons: p.skipped_reasons,
        cancelled: p.cancelled,
        created_at: ts(c.created_at),
        started_at: c.started_at.map(ts),
        finished_at: c.finished_at.map(ts),
        paused_reason: c.paused_reason,
    })
}

async fn load(state: &AppState, id: i64) -> Result<campaign::Model, AppError> {
    db::get(&state.db, id).await?.ok_or_else(AppError::not_found)
}

#[utoipa::path(post, path = "/api/v1/campaigns", tag = "campaigns", summary = "Create a draft", request_body = CampaignInput, responses((status = 201, description = "Created", body = CampaignView), super::openapi::JsonBodyErrors))]
#[tracing::instrument(level = "debug", skip_all)]
async fn create(
    State(state): State<AppState>,
    JsonObject(input): JsonObject<CampaignInput>,
) -> Result<(StatusCode, Json<CampaignView>), AppError> {
    let valid = state.campaigns.validate(input).await?;
    let c = state.campaigns.create(valid).await?;
    Ok((StatusCode::CREATED, Json(view(&state, c).await?)))
}

#[utoipa::path(get, path = "/api/v1/campaigns", tag = "campaigns", summary = "All campaigns", responses((status = 200, description = "Campaigns", body = [CampaignView])))]
#[tracing::instrument(level = "debug", skip_all)]
async fn index(State(state): State<AppState>) -> Result<Json<Vec<CampaignView>>, AppError> {
    let mut out = Vec::new();
    for c in db::all(&state.db).await? {
        out.push(view(&state, c).await?);
    }
    Ok(Json(out))
}

#[utoipa::path(get, path = "/api/v1/campaigns/{id}", tag = "campaigns", summary = "One campaign, with status and counts", params(("id" = i64, Path, description = "Campaign id")), responses((status = 200, description = "The campaign", body = CampaignView), super::openapi::BadRequest, super::openapi::NotFound))]
#[tracing::instrument(level = "debug", skip_all)]
async fn show(State(state): State<AppState>, Path(id): Path<i64>) -> Result<Json<CampaignView>, AppError> {
    let c = load(&state, id).await?;
    Ok(Json(view(&state, c).await?))
}

#[utoipa::path(patch, path = "/api/v1/campaigns/{id}", tag = "campaigns", summary = "Change a draft", params(("id" = i64, Path, description = "Campaign id")), request_body = CampaignInput, responses((status = 200, description = "The campaign", body = CampaignView), super::openapi::JsonBodyErrors, super::openapi::NotFound, super::openapi::Conflict))]
#[tracing::instrument(level = "debug", skip_all)]
async fn update(
    State(state): State<AppState>,
    Path(id): Path<i64>,
    JsonObject(input): JsonObject<CampaignInput>,
) -> Result<Json<CampaignView>, AppError> {
    load(&state, id).await?;
    let valid = state.campaigns.validate(input).await?;
    if !state.campaigns.update(id, valid).await? {
        return Err(AppError::conflict("Only a draft can be changed."));
    }
    Ok(Json(view(&state, load(&state, id).await?).await?))
}

#[utoipa::path(delete, path = "/api/v1/campaigns/{id}", tag = "campaigns", summary = "Delete a draft", params(("id" = i64, Path, description = "Campaign id")), responses((status = 204, description = "Deleted"), super::openapi::BadRequest, super::openapi::NotFound, super::openapi::Conflict))]
#[tracing::instrument(level = "debug", skip_all)]
async fn remove(State(state): State<AppState>, Path(id): Path<i64>) -> Result<StatusCode, AppError> {
    load(&state, id).await?;
    if !state.campaigns.delete_draft(id).await? {
        return Err(AppError::conflict(
            "Only a draft can be deleted; cancel a campaign that has started.",
        ));
    }
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize, utoipa::ToSchema)]
struct Preview {
    subject: String,
    html: String,
    text: String,
}

#[utoipa::path(post, path = "/api/v1/campaigns/{id}/preview", tag = "campaigns", summary = "Render with sample fields", params(("id" = i64, Path, description = "Campaign id")), responses((status = 200, description = "Rendered", body = Preview), (status = 400, description = "The id is not a number, or the campaign does not render", body = super::openapi::Problem, content_type = "application/problem+json"), super::openapi::NotFound))]
#[tracing::instrument(level = "debug", skip_all)]
async fn preview(State(state): State<AppState>, Path(id): Path<i64>) -> Result<Json<Preview>, AppError> {
    load(&state, id).await?;
    let prepared = state.campaigns.prepare(id).await.map_err(|e| match e {
        crate::services::campaigns::PrepareError::Database(e) => AppError::from(e),
        crate::services::campaigns::PrepareError::Gone => AppError::not_found(),
        crate::services::campaigns::PrepareError::Invalid(why) => AppError::bad_request(why),
    })?;
    let sample = RecipientFields::sample(prepared.lists.first().map(|l| l.name.as_str()).unwrap_or(""));
    let (html, text) = prepared.content.render(&sample).map_err(AppError::bad_request)?;
    Ok(Json(Preview {
        subject: prepared.subject.to_string(),
        html,
        text,
    }))
}

#[derive(Deserialize)]
struct TestSend {
    to: Option<Vec<String>>,
}

impl utoipa::PartialSchema for TestSend {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        fields::schema(json!({
            "type": "object",
            "required": ["to"],
            "properties": {
                "to": {"type": "array", "minItems": 1,
                       "items": fields::email("A team test recipient (see /api/v1/test-recipients)"),
                       "description": "Who gets the test: each must be a team test recipient"},
            },
            "example": {"to": ["team@example.com"]},
        }))
    }
}
impl utoipa::ToSchema for TestSend {}

/// What a test send answers.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(example = json!({"status": "queued", "recipients": 2}))]
struct TestQueued {
    /// Always `queued`
    #[schema(value_type = String)]
    status: &'static str,
    /// How many test messages were queued
    recipients: usize,
}

#[utoipa::path(post, path = "/api/v1/campaigns/{id}/test", tag = "campaigns", summary = "Send to team test recipients", params(("id" = i64, Path, description = "Campaign id")), request_body = TestSend, responses((status = 202, description = "Queued", body = TestQueued), super::openapi::JsonBodyErrors, super::openapi::NotFound))]
#[tracing::instrument(level = "debug", skip_all)]
async fn test_send(
    State(state): State<AppState>,
    Path(id): Path<i64>,
    JsonObject(body): JsonObject<TestSend>,
) -> Result<(StatusCode, Json<TestQueued>), AppError> {
    load(&state, id).await?;
    let mut to = Vec::new();
    let mut errors = Vec::new();
    for raw in body.to.unwrap_or_default() {
        match EmailAddress::parse(&raw) {
            Ok(a) if state.campaigns.is_test_recipient(&a).await? => to.push(a),
            _ => errors.push(FieldError {
                field: "to".into(),
                message: format!("{raw} is not a team test recipient"),
            }),
        }
    }
    if to.is_empty() && errors.is_empty() {
        errors.push(FieldError {
            field: "to".into(),
            message: "name at least one test recipient".into(),
        });
    }
    if !errors.is_empty() {
        return Err(AppError::unprocessable(errors));
    }
    state.campaigns.queue_test_send(id, &to).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(TestQueued {
            status: "queued",
            recipients: to.len(),
        }),
    ))
}

#[utoipa::path(post, path = "/api/v1/campaigns/{id}/send", tag = "campaigns", summary = "Start sending now", params(("id" = i64, Path, description = "Campaign id")), responses((status = 202, description = "Sending", body = CampaignView), super::openapi::BadRequest, super::openapi::NotFound, super::openapi::Conflict))]
#[tracing::instrument(level = "debug", skip_all)]
async fn send(
    State(state): State<AppState>,
    Path(id): Path<i64>,
) -> Result<(StatusCode, Json<CampaignView>), AppError> {
    let c = load(&state, id).await?;
    let future = c.send_at.is_some_and(|t| t > crate::store::now());
    let ok = if future {
        state.campaigns.schedule(id, c.send_at.expect("checked")).await?
    } else {
        state.campaigns.start(id).await?.is_some()
    };
    if !ok {
        return Err(AppError::conflict(format!(
            "A campaign that is {} cannot be sent.",
            c.status
        )));
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(view(&state, load(&state, id).await?).await?),
    ))
}

#[derive(Deserialize)]
struct ScheduleInput {
    send_at: Option<String>,
}

impl utoipa::PartialSchema for ScheduleInput {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        fields::schema(json!({
            "type": "object",
            "required": ["send_at"],
            "properties": {"send_at": fields::date_time("When sending starts")},
            "example": {"send_at": "2027-01-01T09:00:00Z"},
        }))
    }
}
impl utoipa::ToSchema for ScheduleInput {}

#[utoipa::path(post, path = "/api/v1/campaigns/{id}/schedule", tag = "campaigns", summary = "Send at a time", params(("id" = i64, Path, description = "Campaign id")), request_body = ScheduleInput, responses((status = 202, description = "Scheduled", body = CampaignView), super::openapi::JsonBodyErrors, super::openapi::NotFound, super::openapi::Conflict))]
#[tracing::instrument(level = "debug", skip_all)]
async fn schedule(
    State(state): State<AppState>,
    Path(id): Path<i64>,
    JsonObject(body): JsonObject<ScheduleInput>,
) -> Result<(StatusCode, Json<CampaignView>), AppError> {
    let c = load(&state, id).await?;
    let at = body
        .send_at
        .as_deref()
        .and_then(|t| time::OffsetDateTime::parse(t, &Rfc3339).ok())
        .ok_or_else(|| {
            AppError::unprocessable(vec![FieldError {
                field: "send_at".into(),
                message: "must be an RFC 3339 date-time".into(),
            }])
        })?;
    if !state.campaigns.schedule(id, at).await? {
        return Err(AppError::conflict(format!(
            "A campaign that is {} cannot be scheduled.",
            c.status
        )));
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(view(&state, load(&state, id).await?).await?),
    ))
}

async fn transition(
    state: &AppState,
    id: i64,
    verb: &str,
    ok: Result<bool, crate::services::Error>,
) -> Result<Json<CampaignView>, AppError> {
    let c = load(state, id).await?;
    if !ok? {
        return Err(AppError::conflict(format!(
            "A campaign that is {} cannot be {verb}.",
            c.status
        )));
    }
    Ok(Json(view(state, c).await?))
}

#[utoipa::path(post, path = "/api/v1/campaigns/{id}/pause", tag = "campaigns", summary = "Pause sending", params(("id" = i64, Path, description = "Campaign id")), responses((status = 200, description = "Paused", body = CampaignView), super::openapi::BadRequest, super::openapi::NotFound, super::openapi::Conflict))]
#[tracing::instrument(level = "debug", skip_all)]
async fn pause(State(state): State<AppState>, Path(id): Path<i64>) -> Result<Json<CampaignView>, AppError> {
    load(&state, id).await?;
    let ok = state.campaigns.pause(id).await;
    transition(&state, id, "paused", ok).await
}

#[utoipa::path(post, path = "/api/v1/campaigns/{id}/resume", tag = "campaigns", summary = "Resume sending", params(("id" = i64, Path, description = "Campaign id")), responses((status = 200, description = "Sending", body = CampaignView), super::openapi::BadRequest, super::openapi::NotFound, super::openapi::Conflict))]
#[tracing::instrument(level = "debug", skip_all)]
async fn resume(State(state): State<AppState>, Path(id): Path<i64>) -> Result<Json<CampaignView>, AppError> {
    load(&state, id).await?;
    let ok = state.campaigns.resume(id).await;
    transition(&state, id, "resumed", ok).await
}

#[utoipa::path(post, path = "/api/v1/campaigns/{id}/cancel", tag = "campaigns", summary = "Cancel: what is not sent stays unsent", params(("id" = i64, Path, description = "Campaign id")), responses((status = 200, description = "Cancelled", body = CampaignView), super::openapi::BadRequest, super::openapi::NotFound, super::openapi::Conflict))]
#[tracing::instrument(level = "debug", skip_all)]
async fn cancel(State(state): State<AppState>, Path(id): Path<i64>) -> Result<Json<CampaignView>, AppError> {
    load(&state, id).await?;
    let ok = state.campaigns.cancel(id).await;
    transition(&state, id, "cancelled", ok).await
}

#[derive(Deserialize)]
struct NewTestRecipient {
    email: Option<String>,
}

impl utoipa::PartialSchema for NewTestRecipient {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        fields::schema(json!({
            "type": "object",
            "required": ["email"],
            "properties": {"email": fields::email("A team member's address")},
            "example": {"email": "team@example.com"},
        }))
    }
}
impl utoipa::ToSchema for NewTestRecipient {}

/// A team test recipient.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(example = json!({"email": "team@example.com"}))]
struct TestRecipient {
    /// The address, in lower case
    email: String,
}

#[utoipa::path(post, path = "/api/v1/test-recipients", tag = "campaigns", summary = "Mark an address as a team test recipient", request_body = NewTestRecipient, responses((status = 201, description = "Added", body = TestRecipient), super::openapi::JsonBodyErrors))]
#[tracing::instrument(level = "debug", skip_all)]
async fn add_test_recipient(
    State(state): State<AppState>,
    JsonObject(body): JsonObject<NewTestRecipient>,
) -> Result<(StatusCode, Json<TestRecipient>), AppError> {
    let email = EmailAddress::parse(body.email.as_deref().unwrap_or("")).map_err(|e| {
        AppError::unprocessable(vec![FieldError {
            field: "email".into(),
            message: format!("the address {e}"),
        }])
    })?;
    state.campaigns.add_test_recipient(&email).await?;
    Ok((
        StatusCode::CREATED,
        Json(TestRecipient {
            email: email.normalized(),
        }),
    ))
}
