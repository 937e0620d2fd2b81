//! `/api/v1/lists`: create, read and list mailing lists.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::Schema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::domain::ListSlug;
use crate::edge::AppState;
use crate::edge::json::JsonObject;
use crate::edge::schemas as fields;
use crate::edge::{AppError, FieldError};
use crate::store::entities::list;
use crate::store::lists;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(index, create))
        .routes(routes!(show, update, remove))
}

#[derive(Deserialize)]
struct NewList {
    slug: Option<String>,
    name: Option<String>,
    description: Option<String>,
    public: Option<bool>,
}

const NAME: &str = "Shown to subscribers; 1-200 characters on one line (trimmed)";
const DESCRIPTION: &str = "Shown on the signup form; at most 2000 characters (trimmed; blank is none)";
const PUBLIC: &str = "Offered on the signup form (default true)";

impl utoipa::PartialSchema for NewList {
    fn schema() -> RefOr<Schema> {
        fields::schema(json!({
            "type": "object",
            "required": ["slug", "name"],
            "properties": {
                "slug": fields::slug("The list's name in URLs and the List-Id header: 1-64 lower-case letters, digits or '-', not starting with '-'"),
                "name": fields::trimmed_line(200, NAME),
                "description": fields::or_null(fields::optional_trimmed_text(2000, DESCRIPTION)),
                "public": {"type": ["boolean", "null"], "description": PUBLIC},
            },
            "example": {"slug": "weekly", "name": "The Weekly", "description": "News every Friday", "public": true},
        }))
    }
}
impl utoipa::ToSchema for NewList {}

#[derive(Serialize, utoipa::ToSchema)]
#[schema(example = json!({"id": 1, "slug": "weekly", "name": "The Weekly",
    "description": "News every Friday", "public": true, "created_at": "2027-01-01T09:00:00Z"}))]
pub struct ListView {
    id: i64,
    slug: String,
    name: String,
    description: Option<String>,
    public: bool,
    created_at: String,
}

impl From<list::Model> for ListView {
    fn from(l: list::Model) -> Self {
        ListView {
            id: l.id,
            slug: l.slug,
            name: l.name,
            description: l.description,
            public: l.public,
            created_at: l
                .created_at
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default(),
        }
    }
}

#[utoipa::path(post, path = "/api/v1/lists", tag = "lists", summary = "Create a list", request_body = NewList, responses((status = 201, description = "Created", body = ListView), super::openapi::JsonBodyErrors, super::openapi::Conflict))]
#[tracing::instrument(level = "debug", skip_all)]
async fn create(
    State(state): State<AppState>,
    JsonObject(body): JsonObject<NewList>,
) -> Result<(StatusCode, Json<ListView>), AppError> {
    let mut errors = Vec::new();
    let slug = ListSlug::parse(body.slug.as_deref().unwrap_or(""))
        .map_err(|e| {
            errors.push(FieldError {
                field: "slug".into(),
                message: e.to_string(),
            })
        })
        .ok();
    let name = body.name.as_deref().map(str::trim).unwrap_or("");
    if name.is_empty() || name.chars().count() > 200 || name.chars().any(char::is_control) {
        errors.push(FieldError {
            field: "name".into(),
            message: "must be 1-200 characters on one line".into(),
        });
    }
    let description = body
        .description
        .as_deref()
        .map(str::trim)
        .filter(|d| !d.is_empty());
    if description.is_some_and(|d| d.chars().count() > 2000) {
        errors.push(FieldError {
            field: "description".into(),
            message: "must be at most 2000 characters".into(),
        });
    }
    let Some(slug) = slug.filter(|_| errors.is_empty()) else {
        return Err(AppError::unprocessable(errors));
    };
    let created = lists::create(&state.db, &slug, name, description, body.public.unwrap_or(true))
        .await
        .map_err(|e| {
            if crate::store::is_unique_violation(&e) {
                AppError::conflict(format!("A list with the slug {slug} already exists."))
            } else {
                AppError::from(e)
            }
        })?;
    state.public_lists.forget();
    Ok((StatusCode::CREATED, Json(created.into())))
}

#[utoipa::path(get, path = "/api/v1/lists", tag = "lists", summary = "All lists", responses((status = 200, description = "Lists", body = [ListView])))]
#[tracing::instrument(level = "debug", skip_all)]
async fn index(State(state): State<AppState>) -> Result<Json<Vec<ListView>>, AppError> {
    Ok(Json(
        lists::all(&state.db).await?.into_iter().map(Into::into).collect(),
    ))
}

#[utoipa::path(get, path = "/api/v1/lists/{slug}", tag = "lists", summary = "One list", params(("slug" = String, Path, description = "List slug")), responses((status = 200, description = "The list", body = ListView), super::openapi::NotFound))]
#[tracing::instrument(level = "debug", skip_all)]
async fn show(State(state): State<AppState>, Path(slug): Path<String>) -> Result<Json<ListView>, AppError> {
    lists::by_slug(&state.db, &slug)
        .await?
        .map(|l| Json(l.into()))
        .ok_or_else(AppError::not_found)
}

/// Only the fields given change.
#[derive(Deserialize)]
struct ListPatch {
    name: Option<String>,
    description: Option<String>,
    public: Option<bool>,
}

impl utoipa::PartialSchema for ListPatch {
    fn schema() -> RefOr<Schema> {
        fields::schema(json!({
            "type": "object",
            "description": "Only the fields given change.",
            "properties": {
                "name": fields::or_null(fields::trimmed_line(200, NAME)),
                "description": fields::or_null(fields::optional_trimmed_text(2000, DESCRIPTION)),
                "public": {"type": ["boolean", "null"], "description": PUBLIC},
            },
            "example": {"name": "The Friday Letter"},
        }))
    }
}
impl utoipa::ToSchema for ListPatch {}

#[utoipa::path(patch, path = "/api/v1/lists/{slug}", tag = "lists", summary = "Change a list", params(("slug" = String, Path, description = "List slug")), request_body = ListPatch, responses((status = 200, description = "The list", body = ListView), super::openapi::JsonBodyErrors, super::openapi::NotFound))]
#[tracing::instrument(level = "debug", skip_all)]
async fn update(
    State(state): State<AppState>,
    Path(slug): Path<String>,
    JsonObject(p): JsonObject<ListPatch>,
) -> Result<Json<ListView>, AppError> {
    let l = lists::by_slug(&state.db, &slug)
        .await?
        .ok_or_else(AppError::not_found)?;
    let mut change = lists::ListChange::default();
    if let Some(name) = p.name.as_deref().map(str::trim) {
        if name.is_empty() || name.chars().count() > 200 || name.chars().any(char::is_control) {
            return Err(AppError::unprocessable(vec![FieldError {
                field: "name".into(),
                message: "must be 1-200 characters on one line".into(),
            }]));
        }
        change.name = Some(name.to_owned());
    }
    if let Some(d) = p.description.as_deref().map(str::trim) {
        if d.chars().count() > 2000 {
            return Err(AppError::unprocessable(vec![FieldError {
                field: "description".into(),
                message: "must be at most 2000 characters".into(),
            }]));
        }
        change.description = Some(Some(d.to_owned()).filter(|d| !d.is_empty()));
    }
    if let Some(public) = p.public {
        change.public = Some(public);
    }
    let updated = lists::update(&state.db, l, change).await?;
    state.public_lists.forget();
    Ok(Json(updated.into()))
}

/// Deleting a list ends its subscriptions; consent evidence stays (its list reference is
/// cleared), and people stay subscribed to their other lists.
#[utoipa::path(delete, path = "/api/v1/lists/{slug}", tag = "lists", summary = "Delete a list (its subscriptions end; consent evidence stays)", params(("slug" = String, Path, description = "List slug")), responses((status = 204, description = "Deleted"), super::openapi::NotFound))]
#[tracing::instrument(level = "debug", skip_all)]
async fn remove(
    State(state): State<AppState>,
    Path(slug): Path<String>,
) -> Result<axum::http::StatusCode, AppError> {
    let l = lists::by_slug(&state.db, &slug)
        .await?
        .ok_or_else(AppError::not_found)?;
    lists::delete(&state.db, l.id).await?;
    state.public_lists.forget();
    Ok(axum::http::StatusCode::NO_CONTENT)
}
