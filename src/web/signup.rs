//! `/subscribe` (the form and its JSON twin) and `/confirm/{token}`: the double opt-in.
//!
//! Input is parsed into domain types here, at the edge. Every accepted signup answers the same,
//! whatever the address's state (OI-9); a filled honeypot is answered the same and does
//! nothing (OI-8).

use std::collections::HashMap;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use serde_json::Value;

use crate::domain::{DisplayName, EmailAddress};
use crate::edge::AppState;
use crate::edge::client_ip::Requester;
use crate::edge::error::wants_json_headers;
use crate::edge::{AppError, FieldError, token_rejected};
use crate::services::signup::{CONSENT_TEXT, ConfirmOutcome, RequestOrigin, Signup};
use crate::store::entities::list;
use crate::tokens::{ConfirmClaims, TokenError};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/subscribe", get(show_form).post(submit))
        .route("/confirm/{token}", get(show_confirm).post(confirm))
}

#[derive(Deserialize)]
struct FormQuery {
    list: Option<String>,
}

async fn show_form(State(state): State<AppState>, Query(q): Query<FormQuery>) -> Result<Response, AppError> {
    let public = state.public_lists.get(&state.db).await?;
    let raw = RawSignup {
        lists: q.list.into_iter().collect(),
        ..Default::default()
    };
    Ok(Html(render_form(
        &state,
        &public,
        &raw,
        HashMap::new(),
        q_fixed(&raw, &public),
    ))
    .into_response())
}

/// The single list a `?list=` link or a one-list form names.
fn q_fixed<'a>(raw: &RawSignup, public: &'a [list::Model]) -> Option<&'a list::Model> {
    match raw.lists.as_slice() {
        [one] => public.iter().find(|l| &l.slug == one),
        _ => None,
    }
}

fn render_form(
    state: &AppState,
    public: &[list::Model],
    raw: &RawSignup,
    errors: HashMap<String, String>,
    fixed: Option<&list::Model>,
) -> String {
    fn choice<'a>(l: &'a list::Model, raw: &RawSignup) -> templates::signup::ListChoice<'a> {
        templates::signup::ListChoice {
            slug: &l.slug,
            name: &l.name,
            description: l.description.as_deref(),
            checked: raw.lists.contains(&l.slug),
        }
    }
    // Zero or one public list: nothing to choose.
    let fixed = fixed.or(if public.len() == 1 { public.first() } else { None });
    let form = templates::signup::SubscribeForm {
        lists: public.iter().map(|l| choice(l, raw)).collect(),
        fixed_list: fixed.map(|l| choice(l, raw)),
        email: &raw.email,
        name: &raw.name,
        consent_text: CONSENT_TEXT,
        errors,
    };
    templates::signup::subscribe_form(&state.site(), &form).into_string()
}

/// What a form or JSON body said, before parsing.
#[derive(Debug, Default)]
struct RawSignup {
    email: String,
    name: String,
    lists: Vec<String>,
    consent: bool,
    age_confirmed: bool,
    honeypot: String,
    form_name: String,
}

fn truthy(v: &str) -> bool {
    matches!(
        v.trim().to_ascii_lowercase().as_str(),
        "yes" | "true" | "on" | "1"
    )
}

fn from_form(body: &[u8]) -> RawSignup {
    let mut raw = RawSignup::default();
    for (k, v) in url::form_urlencoded::parse(body) {
        match k.as_ref() {
            "email" => raw.email = v.into_owned(),
            "name" => raw.name = v.into_owned(),
            "list" => raw.lists.push(v.into_owned()),
            "consent" => raw.consent = truthy(&v),
            "age_confirmed" => raw.age_confirmed = truthy(&v),
            "website" => raw.honeypot = v.into_owned(),
            "form" => raw.form_name = v.into_owned(),
            _ => {}
        }
    }
    raw
}

fn from_json(body: &[u8]) -> Result<RawSignup, AppError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| AppError::bad_request(format!("The body is not valid JSON: {e}")))?;
    let Value::Object(map) = v else {
        return Err(AppError::bad_request("The body must be a JSON object."));
    };
    let text = |k: &str| map.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
    let flag = |k: &str| match map.get(k) {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => truthy(s),
        _ => false,
    };
    let lists = match map.get("list").or_else(|| map.get("lists")) {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).map(str::to_owned).collect(),
        _ => Vec::new(),
    };
    Ok(RawSignup {
        email: text("email"),
        name: text("name"),
        lists,
        consent: flag("consent"),
        age_confirmed: flag("age_confirmed"),
        honeypot: text("website"),
        form_name: text("form"),
    })
}

/// Turns raw input into a signup, or a message per field.
fn parse(
    raw: &RawSignup,
    public: &[list::Model],
) -> Result<(EmailAddress, Option<DisplayName>, Vec<list::Model>), Vec<FieldError>> {
    let mut errors = Vec::new();
    let mut err = |field: &str, message: String| {
        errors.push(FieldError {
            field: field.into(),
            message,
        })
    };
    let email = EmailAddress::parse(&raw.email)
        .map_err(|e| {
            err(
                "email",
                format!("Please enter a valid email address: this one {e}."),
            )
        })
        .ok();
    let name = if raw.name.trim().is_empty() {
        None
    } else {
        DisplayName::parse(&raw.name)
            .map_err(|e| err("name", format!("The name {e}.")))
            .ok()
    };
    let mut chosen = Vec::new();
    if raw.lists.is_empty() {
        match public {
            [only] => chosen.push(only.clone()),
            _ => err("list", "Please choose at least one newsletter.".into()),
        }
    }
    for slug in &raw.lists {
        match public.iter().find(|l| &l.slug == slug) {
            Some(l) => chosen.push(l.clone()),
            None => err("list", "One of the chosen newsletters does not exist.".into()),
        }
    }
    if !raw.consent {
        err(
            "consent",
            "Please tick the box to give your consent; we cannot subscribe you without it.".into(),
        );
    }
    if !raw.age_confirmed {
        err(
            "age_confirmed",
            "Please confirm that you are 18 or older; we cannot subscribe you otherwise.".into(),
        );
    }
    match (email, errors.is_empty()) {
        (Some(email), true) => Ok((email, name, chosen)),
        _ => Err(errors),
    }
}

/// The one answer every accepted signup gets (OI-9).
fn accepted(state: &AppState, json: bool) -> Response {
    if json {
        (
            StatusCode::ACCEPTED,
            Json(serde_json::json!({
                "status": "accepted",
                "message": "If the address can receive email, a confirmation link is on its way. \
                            Nothing else is sent until it is confirmed."
            })),
        )
            .into_response()
    } else {
        Html(templates::signup::check_inbox(&state.site()).into_string()).into_response()
    }
}

fn source(json: bool, raw: &RawSignup, headers: &HeaderMap) -> String {
    let mut source = if json {
        "json:/subscribe".to_owned()
    } else {
        "form:/subscribe".to_owned()
    };
    let form: String = raw
        .form_name
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "-_.:/".contains(*c))
        .take(64)
        .collect();
    if !form.is_empty() {
        source.push('#');
        source.push_str(&form);
    }
    // The site the form was embedded in, if the browser says (the origin only, no path).
    if let Some(origin) = headers
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .and_then(|o| url::Url::parse(o).ok())
        .filter(|u| u.host_str().is_some())
    {
        source.push_str(" via ");
        source.push_str(&origin.origin().ascii_serialization());
    }
    source.chars().take(200).collect()
}

/// A signup as `POST /subscribe` takes it in JSON (the form sends the same fields).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // documents what `from_json` reads
pub(crate) struct SignupRequest {
    email: String,
    name: Option<String>,
    /// One slug or several (`lists` is accepted too).
    list: Vec<String>,
    /// Must be true: the consent statement shown on the form.
    consent: bool,
    /// Must be true: "I am 18 or older".
    age_confirmed: bool,
    /// The embedding form's name, kept with the consent evidence.
    form: Option<String>,
    /// The honeypot: leave empty.
    website: Option<String>,
}

#[utoipa::path(
    post,
    path = "/subscribe",
    tag = "public",
    summary = "Sign up (double opt-in): only a confirmation email goes out until the link is confirmed",
    request_body(
        description = "JSON, or the form's fields: `email`, `name`, `list` (repeatable), `consent=yes`, \
                       `age_confirmed=yes`",
        content((SignupRequest = "application/json"), (String = "application/x-www-form-urlencoded"))
    ),
    responses(
        (status = 202, description = "Accepted (JSON request): the same answer whatever the address's state",
            body = Object),
        (status = 200, description = "Accepted (form): the check-your-inbox page", body = String,
            content_type = "text/html"),
        (status = 400, description = "The JSON body is unreadable", body = crate::edge::error::Problem,
            content_type = "application/problem+json"),
        (status = 422,
            description = "Invalid fields, e.g. no consent or no age confirmation (the form again, with \
                           messages, for a form request)",
            content((crate::edge::error::Problem = "application/problem+json"), (String = "text/html"))),
        (status = 429, description = "Too many requests or signups from this IP; see Retry-After",
            content((crate::edge::error::Problem = "application/problem+json"), (String = "text/html"))),
    )
)]
pub(crate) async fn submit(
    State(state): State<AppState>,
    requester: Requester,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, AppError> {
    if let Some(ip) = requester.ip {
        state.limits.signup.check(&ip)?;
    }
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json") || v.contains("+json"));
    let raw = if json { from_json(&body)? } else { from_form(&body) };
    if !raw.honeypot.trim().is_empty() {
        tracing::info!("honeypot filled: answered as accepted, nothing stored");
        return Ok(accepted(&state, json));
    }
    let public = state.public_lists.get(&state.db).await?;
    let (email, name, chosen) = match parse(&raw, &public) {
        Ok(ok) => ok,
        Err(errors) if json || wants_json_headers(&headers) => return Err(AppError::unprocessable(errors)),
        Err(errors) => {
            let map = errors.into_iter().map(|e| (e.field, e.message)).collect();
            let page = render_form(&state, &public, &raw, map, None);
            return Ok((StatusCode::UNPROCESSABLE_ENTITY, Html(page)).into_response());
        }
    };
    let origin = RequestOrigin {
        ip: requester.ip.map(|ip| ip.to_string()),
        user_agent: requester.user_agent,
        source: source(json, &raw, &headers),
    };
    state
        .signup
        .sign_up(Signup {
            email,
            name,
            lists: chosen,
            origin,
        })
        .await?;
    Ok(accepted(&state, json))
}

async fn show_confirm(
    State(state): State<AppState>,
    Path(token): Path<String>,
) -> Result<Response, AppError> {
    match state.verify_token::<ConfirmClaims>(&token).await {
        Ok(_) => {
            Ok(Html(templates::signup::confirm_page(&state.site(), &token).into_string()).into_response())
        }
        Err(TokenError::Expired) => Ok(expired(&state)),
        Err(e) => Err(token_rejected(e)),
    }
}

fn expired(state: &AppState) -> Response {
    (
        StatusCode::GONE,
        Html(templates::signup::confirm_expired(&state.site()).into_string()),
    )
        .into_response()
}

async fn confirm(
    State(state): State<AppState>,
    requester: Requester,
    Path(token): Path<String>,
) -> Result<Response, AppError> {
    if let Some(ip) = requester.ip {
        state.limits.signup.check(&ip)?;
    }
    let claims = match state.verify_token::<ConfirmClaims>(&token).await {
        Ok(c) => c,
        Err(TokenError::Expired) => return Ok(expired(&state)),
        Err(e) => return Err(token_rejected(e)),
    };
    let origin = RequestOrigin {
        ip: requester.ip.map(|ip| ip.to_string()),
        user_agent: requester.user_agent,
        source: "confirm-link".into(),
    };
    let site = state.site();
    let page = match state.signup.confirm(&claims, origin).await? {
        ConfirmOutcome::Confirmed(lists) => templates::signup::confirmed(&site, &lists),
        ConfirmOutcome::AlreadyUsed => templates::signup::confirmed(&site, &[]),
        ConfirmOutcome::NothingPending => templates::signup::nothing_to_confirm(&site),
    };
    Ok(Html(page.into_string()).into_response())
}
