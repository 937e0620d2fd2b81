//! `/api/v1/subscribers` and a list's CSV import and export.
//!
//! Nothing meant for mailing ever lists an opted-out or suppressed address (CS-10), and no add
//! or import brings one back (CS-11). The import is streamed: rows are parsed as they arrive and
//! written in batches, so a million rows need no more memory than a thousand.

use super::bounded_rows::{OVERLONG_ROW, UploadTooLarge, bounded_rows};
use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::TryStreamExt;
use serde::{Deserialize, Serialize};
use serde_json::json;
use time::format_description::well_known::Rfc3339;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::domain::{DisplayName, EmailAddress};
use crate::edge::AppState;
use crate::edge::json::JsonObject;
use crate::edge::schemas as fields;
use crate::edge::{AppError, FieldError};
use crate::services::subscribers::{AddOutcome, Consent, PersonToAdd};
use crate::store::entities::list;
use crate::store::entities::subscription::SubscriptionStatus;
use crate::store::{self, lists, subscriptions};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(index, create))
        .routes(routes!(show, update, erase))
        .routes(routes!(export))
}

/// The import runs as long as the upload does, without the usual body limit and timeout.
pub fn import_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(import))
}

fn field(field: &str, message: impl Into<String>) -> FieldError {
    FieldError {
        field: field.into(),
        message: message.into(),
    }
}

/// Consent evidence as given: both parts or neither.
fn consent_from(consented_at: Option<&str>, source: Option<&str>) -> Result<Option<Consent>, FieldError> {
    let at = consented_at.map(str::trim).filter(|s| !s.is_empty());
    let source = source.map(str::trim).filter(|s| !s.is_empty());
    match (at, source) {
        (None, None) => Ok(None),
        (Some(at), Some(source)) => {
            let consented_at = time::OffsetDateTime::parse(at, &Rfc3339)
                .or_else(|_| {
                    time::Date::parse(at, &time::macros::format_description!("[year]-[month]-[day]"))
                        .map(|d| d.midnight().assume_utc())
                })
                .map_err(|_| {
                    field(
                        "consented_at",
                        "consented_at must be an RFC 3339 date-time or a YYYY-MM-DD date",
                    )
                })?;
            if consented_at > store::now() {
                return Err(field("consented_at", "consented_at lies in the future"));
            }
            if source.chars().count() > 200 || source.chars().any(char::is_control) {
                return Err(field(
                    "consent_source",
                    "consent_source must be one line of at most 200 characters",
                ));
            }
            Ok(Some(Consent::Evidence {
                consented_at,
                source: source.to_owned(),
            }))
        }
        (Some(_), None) => Err(field(
            "consent_source",
            "consent evidence needs both consented_at and consent_source",
        )),
        (None, Some(_)) => Err(field(
            "consented_at",
            "consent evidence needs both consented_at and consent_source",
        )),
    }
}

#[derive(Deserialize)]
struct NewSubscriber {
    email: Option<String>,
    name: Option<String>,
    lists: Option<Vec<String>>,
    status: Option<String>,
    consented_at: Option<String>,
    consent_source: Option<String>,
}

const NAME: &str = "The person's name: at most 200 characters on one line (trimmed; blank is none)";

impl utoipa::PartialSchema for NewSubscriber {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        let none = json!({"anyOf": [{"type": "null"}, fields::blank()]});
        let base = json!({
            "type": "object",
            "required": ["email", "lists"],
            "properties": {
                "email": fields::email("The address"),
                "name": fields::or_null(fields::optional_trimmed_line(DisplayName::MAX_CHARS, NAME)),
                "lists": {"type": "array", "minItems": 1, "items": fields::slug("A list's slug"),
                          "description": "The lists to add the person to; each must exist"},
                "status": fields::or_null(fields::one_of(&["pending", "confirmed"],
                    "pending (default): a confirmation email is sent; confirmed: needs consent evidence")),
                "consented_at": {
                    "description": "When consent was given: an RFC 3339 date-time or a YYYY-MM-DD date, \
                                    not in the future",
                    "anyOf": [
                        {"type": "null"},
                        {"type": "string", "format": "date-time"},
                        {"type": "string", "format": "date"},
                        fields::blank(),
                    ],
                },
                "consent_source": fields::or_null(fields::optional_trimmed_line(200,
                    "Where consent was given, e.g. a fair's signup sheet: at most 200 characters on one line")),
            },
        });
        let evidence = json!({
            "anyOf": [
                {"type": "object", "description": "No consent evidence, and not confirmed", "properties": {
                    "status": {"type": ["string", "null"], "enum": ["pending", null]},
                    "consented_at": none, "consent_source": none}},
                {"type": "object", "description": "Consent evidence:",
                 "required": ["consented_at", "consent_source"], "properties": {
                    "consented_at": {"anyOf": [{"type": "string", "format": "date-time"},
                                               {"type": "string", "format": "date"}]},
                    "consent_source": fields::trimmed_line(200, "Where consent was given")}},
            ],
        });
        fields::schema(json!({
            "description": "Consent evidence is both consented_at and consent_source, or neither; a \
                            confirmed subscriber needs it. The lists must exist, and consent cannot \
                            lie in the future.",
            "allOf": [base, evidence],
            "example": {"email": "ada@example.org", "name": "Ada", "lists": ["weekly"],
                        "status": "confirmed", "consented_at": "2024-05-01",
                        "consent_source": "signup sheet at the spring fair"},
        }))
    }
}
impl utoipa::ToSchema for NewSubscriber {}

fn subscription_status() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    fields::schema(fields::one_of(
        &["pending", "confirmed", "unsubscribed"],
        "Where the person stands with the list",
    ))
}

#[derive(Serialize, utoipa::ToSchema)]
struct SubscriptionView {
    list: String,
    #[schema(schema_with = subscription_status)]
    status: SubscriptionStatus,
}

#[derive(Serialize, utoipa::ToSchema)]
#[schema(example = json!({"id": "0190f3a2-7b4c-7d8e-9f00-112233445566", "email": "ada@example.org",
    "name": "Ada", "created_at": "2027-01-01T09:00:00Z",
    "subscriptions": [{"list": "weekly", "status": "confirmed"}]}))]
struct SubscriberView {
    id: uuid::Uuid,
    email: String,
    name: Option<String>,
    created_at: String,
    subscriptions: Vec<SubscriptionView>,
}

async fn view(
    state: &AppState,
    s: crate::store::entities::subscriber::Model,
) -> Result<SubscriberView, AppError> {
    let all = lists::all(&state.db).await?;
    let subs = subscriptions::of_subscriber(&state.db, s.id)
        .await?
        .into_iter()
        .filter_map(|x| {
            all.iter().find(|l| l.id == x.list_id).map(|l| SubscriptionView {
                list: l.slug.clone(),
                status: x.status,
            })
        })
        .collect();
    Ok(SubscriberView {
        id: s.uuid,
        email: s.email,
        name: s.name,
        created_at: s.created_at.format(&Rfc3339).unwrap_or_default(),
        subscriptions: subs,
    })
}

async fn resolve_lists(
    state: &AppState,
    slugs: &[String],
    errors: &mut Vec<FieldError>,
) -> Result<Vec<list::Model>, AppError> {
    let mut out = Vec::new();
    if slugs.is_empty() {
        errors.push(field("lists", "name at least one list"));
    }
    for slug in slugs {
        match lists::by_slug(&state.db, slug).await? {
            Some(l) => out.push(l),
            None => errors.push(field("lists", format!("there is no list {slug:?}"))),
        }
    }
    Ok(out)
}

#[utoipa::path(post, path = "/api/v1/subscribers", tag = "subscribers", summary = "Add a subscriber (pending sends a confirmation; confirmed needs consent evidence)", request_body = NewSubscriber, responses((status = 201, description = "Added", body = SubscriberView), (status = 200, description = "Already on these lists: nothing changed", body = SubscriberView), super::openapi::JsonBodyErrors, super::openapi::Conflict))]
#[tracing::instrument(level = "debug", skip_all)]
async fn create(
    State(state): State<AppState>,
    JsonObject(body): JsonObject<NewSubscriber>,
) -> Result<Response, AppError> {
    let mut errors = Vec::new();
    let email = EmailAddress::parse(body.email.as_deref().unwrap_or(""))
        .map_err(|e| errors.push(field("email", format!("the address {e}"))))
        .ok();
    let name = match body.name.as_deref().map(str::trim).filter(|n| !n.is_empty()) {
        None => None,
        Some(n) => DisplayName::parse(n)
            .map_err(|e| errors.push(field("name", format!("the name {e}"))))
            .ok(),
    };
    let lists = resolve_lists(&state, body.lists.as_deref().unwrap_or(&[]), &mut errors).await?;
    let evidence = consent_from(body.consented_at.as_deref(), body.consent_source.as_deref())
        .map_err(|e| errors.push(e))
        .ok()
        .flatten();
    let status = body.status.as_deref().map(str::parse::<SubscriptionStatus>);
    let consent = match status.unwrap_or(Ok(SubscriptionStatus::Pending)) {
        Ok(SubscriptionStatus::Pending) => Some(Consent::AskByEmail),
        // CS-3: confirmed means recorded consent.
        Ok(SubscriptionStatus::Confirmed) => match evidence {
            Some(e) => Some(e),
            None => {
                errors.push(field(
                    "consented_at",
                    "a confirmed subscriber needs consented_at and consent_source",
                ));
                None
            }
        },
        Ok(SubscriptionStatus::Unsubscribed) | Err(_) => {
            errors.push(field("status", "must be pending or confirmed"));
            None
        }
    };
    let (Some(email), Some(consent), true) = (email, consent, errors.is_empty()) else {
        return Err(AppError::unprocessable(errors));
    };
    let person = PersonToAdd { email, name, consent };
    let outcome = state.subscribers.add_one(&person, &lists).await?;
    let email = person.email;
    match outcome {
        AddOutcome::Suppressed | AddOutcome::OptedOut => Err(AppError::conflict(
            "This address opted out or is suppressed; only a fresh opt-in through the signup form can add it again.",
        )),
        AddOutcome::Added | AddOutcome::AlreadyThere => {
            let s = subscriptions::subscriber_by_email(&state.db, &email)
                .await?
                .ok_or_else(AppError::not_found)?;
            let code = if outcome == AddOutcome::Added {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            Ok((code, Json(view(&state, s).await?)).into_response())
        }
    }
}

async fn find(state: &AppState, id: &str) -> Result<crate::store::entities::subscriber::Model, AppError> {
    let uuid = uuid::Uuid::parse_str(id).map_err(|_| AppError::not_found())?;
    subscriptions::subscriber_by_uuid(&state.db, uuid)
        .await?
        .ok_or_else(AppError::not_found)
}

#[utoipa::path(get, path = "/api/v1/subscribers/{id}", tag = "subscribers", summary = "One subscriber", params(("id" = uuid::Uuid, Path, description = "Subscriber id: the `id` of a subscriber (anything else is a 404)")), responses((status = 200, description = "The subscriber", body = SubscriberView), super::openapi::NotFound))]
#[tracing::instrument(level = "debug", skip_all)]
async fn show(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<SubscriberView>, AppError> {
    let s = find(&state, &id).await?;
    Ok(Json(view(&state, s).await?))
}

#[derive(Deserialize)]
struct SubscriberPatch {
    name: Option<String>,
    email: Option<String>,
}

impl utoipa::PartialSchema for SubscriberPatch {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        fields::schema(json!({
            "type": "object",
            "description": "Only the fields given change.",
            "properties": {
                "name": fields::or_null(fields::optional_trimmed_line(DisplayName::MAX_CHARS,
                    "The new name (blank removes it): at most 200 characters on one line")),
                "email": {"type": "null", "description": "An address changes only when the new address \
                          confirms it, through the preference page: not here"},
            },
            "example": {"name": "Ada Lovelace"},
        }))
    }
}
impl utoipa::ToSchema for SubscriberPatch {}

#[utoipa::path(patch, path = "/api/v1/subscribers/{id}", tag = "subscribers", summary = "Correct name or address", params(("id" = uuid::Uuid, Path, description = "Subscriber id: the `id` of a subscriber (anything else is a 404)")), request_body = SubscriberPatch, responses((status = 200, description = "The subscriber", body = SubscriberView), super::openapi::JsonBodyErrors, super::openapi::NotFound))]
#[tracing::instrument(level = "debug", skip_all)]
async fn update(
    State(state): State<AppState>,
    Path(id): Path<String>,
    JsonObject(p): JsonObject<SubscriberPatch>,
) -> Result<Json<SubscriberView>, AppError> {
    let s = find(&state, &id).await?;
    if p.email.is_some() {
        return Err(AppError::unprocessable(vec![field(
            "email",
            "an address changes only when the new address confirms it (the preference page)",
        )]));
    }
    // A name not given stays; a blank one is removed.
    if let Some(name) = p.name.as_deref().map(str::trim) {
        let name = match name {
            "" => None,
            n => Some(
                DisplayName::parse(n)
                    .map_err(|e| AppError::unprocessable(vec![field("name", format!("the name {e}"))]))?,
            ),
        };
        subscriptions::set_name(&state.db, s.id, name.as_ref().map(DisplayName::as_str)).await?;
    }
    let s = find(&state, &id).await?;
    Ok(Json(view(&state, s).await?))
}

/// Deleting a subscriber is an erasure: only the keyed hash stays (GD-3, GD-4).
#[utoipa::path(delete, path = "/api/v1/subscribers/{id}", tag = "subscribers", summary = "Erase a subscriber", params(("id" = uuid::Uuid, Path, description = "Subscriber id: the `id` of a subscriber (anything else is a 404)")), responses((status = 204, description = "Erased"), super::openapi::NotFound))]
#[tracing::instrument(level = "debug", skip_all)]
async fn erase(State(state): State<AppState>, Path(id): Path<String>) -> Result<StatusCode, AppError> {
    let s = find(&state, &id).await?;
    state.leaving.erase(&s).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
struct ListQuery {
    list: Option<String>,
    status: Option<String>,
    page: Option<i64>,
    per_page: Option<i64>,
}

#[derive(Serialize)]
struct SubscriptionPage {
    page: i64,
    per_page: i64,
    items: Vec<subscriptions::ListedSubscription>,
}

impl utoipa::PartialSchema for SubscriptionPage {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        fields::schema(json!({
            "type": "object",
            "required": ["page", "per_page", "items"],
            "properties": {
                "page": {"type": "integer", "minimum": 1},
                "per_page": {"type": "integer", "minimum": 1, "maximum": 1000},
                "items": {"type": "array", "items": {
                    "type": "object",
                    "required": ["uuid", "email", "name", "list", "status"],
                    "properties": {
                        "uuid": {"type": "string", "format": "uuid", "description": "The subscriber's id"},
                        "email": {"type": "string"},
                        "name": {"type": ["string", "null"]},
                        "list": {"type": "string", "description": "The list's slug"},
                        "status": {"type": "string", "enum": ["pending", "confirmed"]},
                    },
                }},
            },
            "example": {"page": 1, "per_page": 100, "items": [{"uuid": "0190f3a2-7b4c-7d8e-9f00-112233445566",
                        "email": "ada@example.org", "name": "Ada", "list": "weekly", "status": "confirmed"}]},
        }))
    }
}
impl utoipa::ToSchema for SubscriptionPage {}

/// Subscribers who may be mailed or are waiting to confirm; never opted-out or suppressed
/// ones (CS-10). Filters: list, status (pending | confirmed). Paginated.
#[utoipa::path(get, path = "/api/v1/subscribers", tag = "subscribers", summary = "Subscriptions, paged, by list and status (never suppressed addresses)", params(("list" = Option<String>, Query, description = "List slug"), ("status" = inline(Option<ListedStatus>), Query, description = "pending or confirmed (default)"), ("page" = Option<i64>, Query, minimum = 0, description = "From 1 (0 is 1)"), ("per_page" = Option<i64>, Query, minimum = 0, description = "Rows per page: 1-1000 (a number outside is taken as the nearest), default 100")), responses((status = 200, description = "A page of subscriptions", body = SubscriptionPage), super::openapi::BadRequest, super::openapi::Unprocessable))]
#[tracing::instrument(level = "debug", skip_all)]
async fn index(
    State(state): State<AppState>,
    Query(q): Query<ListQuery>,
) -> Result<Json<SubscriptionPage>, AppError> {
    let status = match q.status.as_deref().map(str::parse) {
        None => SubscriptionStatus::Confirmed,
        Some(Ok(status @ (SubscriptionStatus::Pending | SubscriptionStatus::Confirmed))) => status,
        Some(Ok(SubscriptionStatus::Unsubscribed) | Err(_)) => {
            return Err(AppError::unprocessable(vec![field(
                "status",
                "must be pending or confirmed",
            )]));
        }
    };
    let negative: Vec<FieldError> = [("page", q.page), ("per_page", q.per_page)]
        .into_iter()
        .filter(|(_, v)| v.is_some_and(|v| v < 0))
        .map(|(name, _)| field(name, "must not be negative"))
        .collect();
    if !negative.is_empty() {
        return Err(AppError::unprocessable(negative));
    }
    let per_page = q.per_page.unwrap_or(100).clamp(1, 1000);
    let page = q.page.unwrap_or(1).max(1);
    // A page far past the end is empty.
    let offset = (page - 1).saturating_mul(per_page);
    let rows = subscriptions::page(&state.db, status, q.list.as_deref(), per_page, offset).await?;
    Ok(Json(SubscriptionPage {
        page,
        per_page,
        items: rows,
    }))
}

/// The statuses the listing shows.
#[derive(utoipa::ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
enum ListedStatus {
    Pending,
    Confirmed,
}

#[derive(Deserialize)]
struct ImportQuery {
    confirm: Option<String>,
}

/// What `?confirm=` of an import can ask for.
#[derive(utoipa::ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
enum ImportConfirm {
    Send,
}

/// The import's body: CSV whose header row has an `email` column.
#[allow(dead_code)]
struct CsvImport;

impl utoipa::PartialSchema for CsvImport {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        fields::schema(json!({
            "type": "string",
            "description": "CSV with a header row naming its columns: email (required), name, \
                            consented_at, consent_source",
            // The header row's fields before `email` (each plain or quoted), then `email` plain
            // or quoted; the CSV reader trims ASCII whitespace, and a quote only opens a field.
            "pattern": concat!(
                r#"^(([^,"\r\n][^,\r\n]*)?,|"([^"]|"")*",)*"#,
                r#"([ \t\f]*[Ee][Mm][Aa][Ii][Ll][ \t\f]*|"[ \t\f\r\n]*[Ee][Mm][Aa][Ii][Ll][ \t\f\r\n]*")"#,
                r#"(,|\r|\n|$)"#
            ),
            "example": "email,name,consented_at,consent_source\r\nada@example.org,Ada,2024-05-01,spring fair\r\n",
        }))
    }
}
impl utoipa::ToSchema for CsvImport {}

#[derive(Serialize, Default, utoipa::ToSchema)]
#[schema(example = json!({"imported": 998, "skipped": 1, "error_count": 1,
    "errors": [{"line": 7, "reason": "no consent evidence (consented_at and consent_source); refused"}]}))]
struct ImportReport {
    imported: u64,
    skipped: u64,
    errors: Vec<ImportError>,
    /// All errors, also those beyond the first thousand listed.
    error_count: u64,
}

#[derive(Serialize, utoipa::ToSchema)]
struct ImportError {
    line: u64,
    reason: String,
}

const IMPORT_BATCH: usize = 500;
/// Chunks of an import written at once on PostgreSQL.
const POSTGRES_IMPORT_WRITERS: usize = 2;
const LISTED_ERRORS: usize = 1000;

/// Whether the body is declared as CSV (or as plain text, or not declared at all).
fn is_csv_body(headers: &axum::http::HeaderMap) -> bool {
    let Some(value) = headers.get(axum::http::header::CONTENT_TYPE) else {
        return true;
    };
    let media = value
        .to_str()
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim();
    ["text/csv", "application/csv", "text/plain"]
        .iter()
        .any(|m| media.eq_ignore_ascii_case(m))
}

#[utoipa::path(post, path = "/api/v1/lists/{slug}/subscribers/import", tag = "subscribers", summary = "Import CSV (email,name,consented_at,consent_source), streamed: rows with consent evidence confirmed, others refused or pending; opted-out and suppressed skipped; per-line errors", params(("slug" = String, Path, description = "List slug"), ("confirm" = inline(Option<ImportConfirm>), Query, description = "send: rows without evidence become pending and get a confirmation email (otherwise they are refused)")), request_body(content = CsvImport, content_type = "text/csv"), responses((status = 200, description = "Report", body = ImportReport), super::openapi::BadRequest, (status = 415, description = "The body is declared as something other than CSV (`text/csv`, `application/csv` or `text/plain`; no Content-Type is taken as CSV)", body = super::openapi::Problem, content_type = "application/problem+json"), super::openapi::NotFound, super::openapi::Unprocessable))]
#[tracing::instrument(level = "debug", skip_all)]
async fn import(
    State(state): State<AppState>,
    Path(slug): Path<String>,
    Query(q): Query<ImportQuery>,
    headers: axum::http::HeaderMap,
    body: Body,
) -> Result<Json<ImportReport>, AppError> {
    if !is_csv_body(&headers) {
        // A file upload form (multipart) or a JSON body would be read as CSV and come back
        // as a page of puzzling per-line errors.
        return Err(AppError::new(
            axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Unsupported media type",
            "The import takes the CSV itself as the request body, sent as Content-Type: text/csv \
             (with curl: --data-binary @people.csv -H 'Content-Type: text/csv').",
        ));
    }
    let list = lists::by_slug(&state.db, &slug)
        .await?
        .ok_or_else(AppError::not_found)?;
    let ask_by_email = match q.confirm.as_deref() {
        None => false,
        Some("send") => true,
        Some(_) => return Err(AppError::unprocessable(vec![field("confirm", "must be send")])),
    };
    let limit = state.config.import_max_bytes;
    let declared = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(upload_too_large(limit, None));
    }
    let reader = tokio_util::io::StreamReader::new(Box::pin(bounded_rows(body.into_data_stream(), limit)));
    let mut csv = csv_async::AsyncReaderBuilder::new()
        .flexible(true)
        .trim(csv_async::Trim::All)
        .create_reader(reader);
    let headers = csv
        .headers()
        .await
        .map_err(|e| AppError::bad_request(format!("The CSV header row is unreadable: {e}")))?
        .clone();
    if headers.get(0) == Some(OVERLONG_ROW) {
        return Err(AppError::bad_request(
            "The CSV header row is longer than 64 KiB; it should be email,name,consented_at,consent_source.",
        ));
    }
    let col = |name: &str| headers.iter().position(|h| h.eq_ignore_ascii_case(name));
    let Some(email_col) = col("email") else {
        return Err(AppError::bad_request(
            "The CSV needs a header row with an email column (email,name,consented_at,consent_source).",
        ));
    };
    let columns = ImportColumns {
        email: email_col,
        name: col("name"),
        consented_at: col("consented_at"),
        consent_source: col("consent_source"),
    };
    let mut report = ImportReport::default();
    // Chunks are written while the next rows are read. On PostgreSQL several chunks are
    // written at once, each in a transaction on a connection of its own, since one backend
    // runs one chunk's statements at a time; a person's rows always go to the same writer, so
    // an address given twice is still taken in the file's order.
    let writers = if store::is_postgres(&state.db) {
        POSTGRES_IMPORT_WRITERS
    } else {
        1
    };
    let (senders, receivers): (Vec<_>, Vec<_>) = (0..writers)
        .map(|_| tokio::sync::mpsc::channel::<Vec<PersonToAdd>>(1))
        .unzip();
    let reading = async {
        // Owned here, so that the writers' queues end when the reading does.
        let senders = senders;
        let mut batches: Vec<Vec<PersonToAdd>> =
            (0..writers).map(|_| Vec::with_capacity(IMPORT_BATCH)).collect();
        let mut records = csv.records();
        // The physical line a row starts on (a quoted field may span lines), as a spreadsheet
        // or an editor numbers it; counted rows only where the reader cannot say.
        let mut line = 1u64;
        let error = |report: &mut ImportReport, line: u64, reason: String| {
            report.error_count += 1;
            if report.errors.len() < LISTED_ERRORS {
                report.errors.push(ImportError { line, reason });
            }
        };
        let end = loop {
            let next = records.try_next().await;
            line += 1;
            let record = match next {
                Ok(Some(r)) => {
                    line = r.position().map_or(line, |p| p.line());
                    r
                }
                Ok(None) => break RowsEnd::Complete,
                Err(e) => {
                    if let csv_async::ErrorKind::Io(io) = e.kind()
                        && io.get_ref().is_some_and(|inner| inner.is::<UploadTooLarge>())
                    {
                        // What arrived before the limit is imported; the report says how much.
                        break RowsEnd::TooLarge;
                    }
                    line = e.position().map_or(line, |p| p.line());
                    error(&mut report, line, format!("unreadable row: {e}"));
                    continue;
                }
            };
            let person = match person_from(&record, &columns, ask_by_email) {
                Ok(person) => person,
                Err(reason) => {
                    error(&mut report, line, reason);
                    continue;
                }
            };
            let writer = writer_of(&person.email, writers);
            batches[writer].push(person);
            if batches[writer].len() >= IMPORT_BATCH {
                let full = std::mem::replace(&mut batches[writer], Vec::with_capacity(IMPORT_BATCH));
                if senders[writer].send(full).await.is_err() {
                    // The writer stopped on an error, which the handler returns.
                    return RowsEnd::Complete;
                }
            }
        };
        for (sender, batch) in senders.iter().zip(batches) {
            let _ = sender.send(batch).await;
        }
        end
    };
    let writing = futures::future::try_join_all(
        receivers
            .into_iter()
            .map(|chunks| write_chunks(&state, &list, chunks)),
    );
    let (end, written) = tokio::join!(reading, writing);
    for (imported, skipped) in written? {
        report.imported += imported;
        report.skipped += skipped;
    }
    if let RowsEnd::TooLarge = end {
        return Err(upload_too_large(limit, Some(&report)));
    }
    tracing::info!(list = %list.slug, imported = report.imported, skipped = report.skipped, errors = report.error_count, "import done");
    Ok(Json(report))
}

/// How the reading of an import's rows ended.
enum RowsEnd {
    Complete,
    /// The upload went past `IMPORT_MAX_MB`; the rows before it were sent to be written.
    TooLarge,
}

/// Where an import's columns are.
struct ImportColumns {
    email: usize,
    name: Option<usize>,
    consented_at: Option<usize>,
    consent_source: Option<usize>,
}

/// The person a row names, or why the row is refused.
fn person_from(
    record: &csv_async::StringRecord,
    columns: &ImportColumns,
    ask_by_email: bool,
) -> Result<PersonToAdd, String> {
    if record.get(0) == Some(OVERLONG_ROW) {
        return Err("the row is longer than 64 KiB; skipped".into());
    }
    if record.iter().any(|f| f.len() > MAX_FIELD_BYTES) {
        return Err("a field is longer than 1 KiB; row skipped".into());
    }
    let get = |i: Option<usize>| i.and_then(|i| record.get(i));
    let email = EmailAddress::parse(get(Some(columns.email)).unwrap_or(""))
        .map_err(|e| format!("the address {e}"))?;
    let name = get(columns.name)
        .filter(|n| !n.is_empty())
        .map(DisplayName::parse)
        .transpose()
        .map_err(|e| format!("the name {e}"))?;
    let consent = match consent_from(get(columns.consented_at), get(columns.consent_source)) {
        Ok(Some(c)) => c,
        Ok(None) if ask_by_email => Consent::AskByEmail,
        Ok(None) => return Err("no consent evidence (consented_at and consent_source); refused".into()),
        Err(e) => return Err(e.message),
    };
    Ok(PersonToAdd { email, name, consent })
}

/// Which of `writers` takes this person: the same one for every spelling of the address.
fn writer_of(email: &EmailAddress, writers: usize) -> usize {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::hash::DefaultHasher::new();
    email.normalized().hash(&mut hasher);
    (hasher.finish() % writers as u64) as usize
}

/// The longest field taken: an address has at most 254 bytes, and a name or a consent
/// source a few dozen.
const MAX_FIELD_BYTES: usize = 1024;

/// 413 for an import past `IMPORT_MAX_MB`, saying what was imported before the limit if any
/// rows were read.
fn upload_too_large(limit: u64, report: Option<&ImportReport>) -> AppError {
    let mut detail = format!(
        "The upload is larger than {} MB (IMPORT_MAX_MB); split the file into parts.",
        limit / (1024 * 1024)
    );
    if let Some(r) = report {
        detail.push_str(&format!(
            " The rows before the limit were taken: {} imported, {} skipped, {} refused.",
            r.imported, r.skipped, r.error_count
        ));
    }
    AppError::new(
        axum::http::StatusCode::PAYLOAD_TOO_LARGE,
        "Upload too large",
        detail,
    )
}

/// Writes each chunk of an import as it comes, one transaction each; the counts of people
/// imported and skipped.
async fn write_chunks(
    state: &AppState,
    list: &list::Model,
    mut chunks: tokio::sync::mpsc::Receiver<Vec<PersonToAdd>>,
) -> Result<(u64, u64), AppError> {
    let (mut imported, mut skipped) = (0, 0);
    while let Some(chunk) = chunks.recv().await {
        if chunk.is_empty() {
            continue;
        }
        for outcome in state.subscribers.import(&chunk, list).await? {
            match outcome {
                AddOutcome::Added => imported += 1,
                AddOutcome::AlreadyThere | AddOutcome::OptedOut | AddOutcome::Suppressed => skipped += 1,
            }
        }
    }
    Ok((imported, skipped))
}

/// A cell a spreadsheet would not run as a formula: one that starts with `=`, `+`, `-`, `@`, a
/// tab or a carriage return gets a leading `'`, as OWASP advises against CSV injection. Names
/// come from public signups and addresses may start with `=`.
fn spreadsheet_safe(cell: &str) -> std::borrow::Cow<'_, str> {
    if cell.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{cell}").into()
    } else {
        cell.into()
    }
}

/// The list's confirmed, unsuppressed subscribers as CSV, streamed page by page (CS-10).
#[utoipa::path(get, path = "/api/v1/lists/{slug}/subscribers/export", tag = "subscribers", summary = "Export a list's confirmed subscribers as CSV", description = "Columns `email,name`. A cell that starts with `=`, `+`, `-`, `@`, a tab or a carriage return is written with a leading `'`, so that no spreadsheet runs it as a formula (CSV injection, as OWASP describes it).", params(("slug" = String, Path, description = "List slug")), responses((status = 200, description = "CSV", body = String, content_type = "text/csv"), super::openapi::NotFound))]
#[tracing::instrument(level = "debug", skip_all)]
async fn export(State(state): State<AppState>, Path(slug): Path<String>) -> Result<Response, AppError> {
    let list = lists::by_slug(&state.db, &slug)
        .await?
        .ok_or_else(AppError::not_found)?;
    let header = futures::stream::once(async {
        Ok::<_, std::io::Error>(axum::body::Bytes::from_static(b"email,name\r\n"))
    });
    let pages = futures::stream::try_unfold(
        (state, list.id, 0i64, false),
        |(state, list_id, after, done)| async move {
            if done {
                return Ok(None);
            }
            let rows = subscriptions::confirmed_after(&state.db, list_id, after)
                .await
                .map_err(std::io::Error::other)?;
            let last = rows.last().map(|r| r.id);
            let mut out = csv_async::AsyncWriterBuilder::new()
                .has_headers(false)
                .create_writer(Vec::new());
            for r in &rows {
                let name = r.name.as_deref().unwrap_or("");
                out.write_record([
                    spreadsheet_safe(&r.email).as_ref(),
                    spreadsheet_safe(name).as_ref(),
                ])
                .await
                .map_err(std::io::Error::other)?;
            }
            let bytes = out.into_inner().await.map_err(std::io::Error::other)?;
            Ok(Some((
                axum::body::Bytes::from(bytes),
                (state, list_id, last.unwrap_or(after), last.is_none()),
            )))
        },
    );
    let body = Body::from_stream(futures::StreamExt::chain(header, pages));
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"subscribers.csv\"",
            ),
        ],
        body,
    )
        .into_response())
}
