//! `/api/v1/subscribers` and a list's CSV import and export.
//!
//! Nothing meant for mailing ever lists an opted-out or suppressed address (CS-10), and no add
//! or import brings one back (CS-11). The import is streamed: rows are parsed as they arrive and
//! written in batches, so a million rows need no more memory than a thousand.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::TryStreamExt;
use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::domain::{DisplayName, EmailAddress};
use crate::edge::AppState;
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
fn consent_from(consented_at: Option<&str>, source: Option<&str>) -> Result<Option<Consent>, String> {
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
                .map_err(|_| "consented_at must be an RFC 3339 date-time or a YYYY-MM-DD date".to_string())?;
            if consented_at > store::now() {
                return Err("consented_at lies in the future".into());
            }
            if source.chars().count() > 200 || source.chars().any(char::is_control) {
                return Err("consent_source must be one line of at most 200 characters".into());
            }
            Ok(Some(Consent::Evidence {
                consented_at,
                source: source.to_owned(),
            }))
        }
        _ => Err("consent evidence needs both consented_at and consent_source".into()),
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
struct NewSubscriber {
    email: Option<String>,
    name: Option<String>,
    lists: Option<Vec<String>>,
    status: Option<String>,
    consented_at: Option<String>,
    consent_source: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
struct SubscriptionView {
    list: String,
    #[schema(value_type = String)]
    status: SubscriptionStatus,
}

#[derive(Serialize, utoipa::ToSchema)]
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
async fn create(
    State(state): State<AppState>,
    Json(body): Json<NewSubscriber>,
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
        .map_err(|e| errors.push(field("consented_at", e)))
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
async fn show(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<SubscriberView>, AppError> {
    let s = find(&state, &id).await?;
    Ok(Json(view(&state, s).await?))
}

#[derive(Deserialize, utoipa::ToSchema)]
struct Patch {
    name: Option<String>,
    email: Option<String>,
}

#[utoipa::path(patch, path = "/api/v1/subscribers/{id}", tag = "subscribers", summary = "Correct name or address", params(("id" = uuid::Uuid, Path, description = "Subscriber id: the `id` of a subscriber (anything else is a 404)")), request_body = Patch, responses((status = 200, description = "The subscriber", body = SubscriberView), super::openapi::JsonBodyErrors, super::openapi::NotFound))]
async fn update(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Json(p): Json<Patch>,
) -> Result<Json<SubscriberView>, AppError> {
    let s = find(&state, &id).await?;
    if p.email.is_some() {
        return Err(AppError::unprocessable(vec![field(
            "email",
            "an address changes only when the new address confirms it (the preference page)",
        )]));
    }
    let name = match p.name.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(n) => Some(
            DisplayName::parse(n)
                .map_err(|e| AppError::unprocessable(vec![field("name", format!("the name {e}"))]))?,
        ),
    };
    subscriptions::set_name(&state.db, s.id, name.as_ref().map(DisplayName::as_str)).await?;
    let s = find(&state, &id).await?;
    Ok(Json(view(&state, s).await?))
}

/// Deleting a subscriber is an erasure: only the keyed hash stays (GD-3, GD-4).
#[utoipa::path(delete, path = "/api/v1/subscribers/{id}", tag = "subscribers", summary = "Erase a subscriber", params(("id" = uuid::Uuid, Path, description = "Subscriber id: the `id` of a subscriber (anything else is a 404)")), responses((status = 204, description = "Erased"), super::openapi::NotFound))]
async fn erase(State(state): State<AppState>, Path(id): Path<String>) -> Result<StatusCode, AppError> {
    let s = find(&state, &id).await?;
    state.leaving.erase(&s).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
struct ListQuery {
    list: Option<String>,
    status: Option<String>,
    page: Option<u64>,
    per_page: Option<u64>,
}

/// Subscribers who may be mailed or are waiting to confirm; never opted-out or suppressed
/// ones (CS-10). Filters: list, status (pending | confirmed). Paginated.
#[utoipa::path(get, path = "/api/v1/subscribers", tag = "subscribers", summary = "Subscriptions, paged, by list and status (never suppressed addresses)", params(("list" = Option<String>, Query, description = "List slug"), ("status" = Option<String>, Query, description = "pending or confirmed (default)"), ("page" = Option<u64>, Query, description = "From 1"), ("per_page" = Option<u64>, Query, description = "1-1000, default 100")), responses((status = 200, description = "A page: page, per_page, items", body = Object), super::openapi::BadRequest, super::openapi::Unprocessable))]
async fn index(
    State(state): State<AppState>,
    Query(q): Query<ListQuery>,
) -> Result<Json<serde_json::Value>, AppError> {
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
    let per_page = q.per_page.unwrap_or(100).clamp(1, 1000);
    let page = q.page.unwrap_or(1).max(1);
    let limit = i64::try_from(per_page).unwrap_or(100);
    let offset = i64::try_from((page - 1) * per_page).unwrap_or(0);
    let rows = subscriptions::page(&state.db, status, q.list.as_deref(), limit, offset).await?;
    Ok(Json(
        serde_json::json!({ "page": page, "per_page": per_page, "items": rows }),
    ))
}

#[derive(Deserialize)]
struct ImportQuery {
    confirm: Option<String>,
}

#[derive(Serialize, Default, utoipa::ToSchema)]
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

#[utoipa::path(post, path = "/api/v1/lists/{slug}/subscribers/import", tag = "subscribers", summary = "Import CSV (email,name,consented_at,consent_source), streamed: rows with consent evidence confirmed, others refused or pending; opted-out and suppressed skipped; per-line errors", params(("slug" = String, Path, description = "List slug"), ("confirm" = Option<String>, Query, description = "send: rows without evidence become pending and get a confirmation email (otherwise they are refused)")), request_body(content = String, content_type = "text/csv"), responses((status = 200, description = "Report", body = ImportReport), super::openapi::BadRequest, (status = 415, description = "The body is declared as something other than CSV (`text/csv`, `application/csv` or `text/plain`; no Content-Type is taken as CSV)", body = super::openapi::Problem, content_type = "application/problem+json"), super::openapi::NotFound))]
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
    let ask_by_email = q.confirm.as_deref() == Some("send");
    let stream = body.into_data_stream().map_err(std::io::Error::other);
    let reader = tokio_util::io::StreamReader::new(stream);
    let mut csv = csv_async::AsyncReaderBuilder::new()
        .flexible(true)
        .trim(csv_async::Trim::All)
        .create_reader(reader);
    let headers = csv
        .headers()
        .await
        .map_err(|e| AppError::bad_request(format!("The CSV header row is unreadable: {e}")))?
        .clone();
    let col = |name: &str| headers.iter().position(|h| h.eq_ignore_ascii_case(name));
    let Some(email_col) = col("email") else {
        return Err(AppError::bad_request(
            "The CSV needs a header row with an email column (email,name,consented_at,consent_source).",
        ));
    };
    let (name_col, at_col, source_col) = (col("name"), col("consented_at"), col("consent_source"));
    let mut report = ImportReport::default();
    let mut batch: Vec<PersonToAdd> = Vec::with_capacity(IMPORT_BATCH);
    let mut records = csv.records();
    let mut line = 1u64;
    let error = |report: &mut ImportReport, line: u64, reason: String| {
        report.error_count += 1;
        if report.errors.len() < LISTED_ERRORS {
            report.errors.push(ImportError { line, reason });
        }
    };
    loop {
        let next = records.try_next().await;
        line += 1;
        let record = match next {
            Ok(Some(r)) => r,
            Ok(None) => break,
            Err(e) => {
                error(&mut report, line, format!("unreadable row: {e}"));
                continue;
            }
        };
        let get = |i: Option<usize>| i.and_then(|i| record.get(i));
        let email = match EmailAddress::parse(get(Some(email_col)).unwrap_or("")) {
            Ok(e) => e,
            Err(e) => {
                error(&mut report, line, format!("the address {e}"));
                continue;
            }
        };
        let name = match get(name_col)
            .filter(|n| !n.is_empty())
            .map(DisplayName::parse)
            .transpose()
        {
            Ok(n) => n,
            Err(e) => {
                error(&mut report, line, format!("the name {e}"));
                continue;
            }
        };
        let consent = match consent_from(get(at_col), get(source_col)) {
            Ok(Some(c)) => c,
            Ok(None) if ask_by_email => Consent::AskByEmail,
            Ok(None) => {
                error(
                    &mut report,
                    line,
                    "no consent evidence (consented_at and consent_source); refused".into(),
                );
                continue;
            }
            Err(e) => {
                error(&mut report, line, e);
                continue;
            }
        };
        batch.push(PersonToAdd { email, name, consent });
        if batch.len() >= IMPORT_BATCH {
            write_batch(&state, &list, &mut batch, &mut report).await?;
        }
    }
    write_batch(&state, &list, &mut batch, &mut report).await?;
    tracing::info!(list = %list.slug, imported = report.imported, skipped = report.skipped, errors = report.error_count, "import done");
    Ok(Json(report))
}

async fn write_batch(
    state: &AppState,
    list: &list::Model,
    batch: &mut Vec<PersonToAdd>,
    report: &mut ImportReport,
) -> Result<(), AppError> {
    if batch.is_empty() {
        return Ok(());
    }
    let outcomes = state.subscribers.import(batch, list).await?;
    batch.clear();
    for outcome in outcomes {
        match outcome {
            AddOutcome::Added => report.imported += 1,
            AddOutcome::AlreadyThere | AddOutcome::OptedOut | AddOutcome::Suppressed => report.skipped += 1,
        }
    }
    Ok(())
}

/// The list's confirmed, unsuppressed subscribers as CSV, streamed page by page (CS-10).
#[utoipa::path(get, path = "/api/v1/lists/{slug}/subscribers/export", tag = "subscribers", summary = "Export a list's confirmed subscribers as CSV", params(("slug" = String, Path, description = "List slug")), responses((status = 200, description = "CSV", body = String, content_type = "text/csv"), super::openapi::NotFound))]
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
                out.write_record([r.email.as_str(), r.name.as_deref().unwrap_or("")])
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
