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
use serde_json::{Value, json};
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::Schema;

use super::form::form_body;

use crate::domain::{DisplayName, EmailAddress};
use crate::edge::AppState;
use crate::edge::client_ip::Requester;
use crate::edge::error::wants_json_headers;
use crate::edge::schemas;
use crate::edge::{AppError, FieldError, WayOn, token_rejected};
use crate::services::signup::{ConfirmLinkState, ConfirmOutcome, RequestOrigin, Signup, consent_text};
use crate::store::entities::list;
use crate::tokens::{ConfirmClaims, TokenError};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/subscribe", get(show_form).post(submit))
        .route("/confirm/{token}", get(show_confirm).post(confirm))
}

#[derive(Deserialize)]
pub(crate) struct FormQuery {
    list: Option<String>,
}

#[utoipa::path(
    get,
    path = "/subscribe",
    tag = "public",
    summary = "The signup form (a page)",
    params(("list" = Option<String>, Query, description = "A list's slug: the form offers that list alone")),
    responses(
        (status = 200, description = "The form", body = String, content_type = "text/html"),
        (status = 400, description = "The query is unreadable",
            content((crate::edge::error::Problem = "application/problem+json"), (String = "text/html"))),
        (status = 429, description = "Too many requests from this IP; see Retry-After",
            content((crate::edge::error::Problem = "application/problem+json"), (String = "text/html"))),
    )
)]
#[tracing::instrument(level = "debug", skip_all)]
pub(crate) async fn show_form(
    State(state): State<AppState>,
    Query(q): Query<FormQuery>,
) -> Result<Response, AppError> {
    let public = state.public_lists.get(&state.db).await?;
    let raw = SignupForm {
        list: q.list.into_iter().collect(),
        ..Default::default()
    };
    let policy_in_force = policy_in_force(&state).await?;
    Ok(Html(render_form(
        &state,
        &public,
        &raw,
        HashMap::new(),
        q_fixed(&raw, &public),
        policy_in_force,
    ))
    .into_response())
}

/// Whether a policy is in force now: the consent statement claims it was read only then.
async fn policy_in_force(state: &AppState) -> Result<bool, AppError> {
    Ok(crate::store::policies::in_force(&state.db, crate::store::now())
        .await?
        .is_some())
}

/// The single list a `?list=` link or a one-list form names.
fn q_fixed<'a>(raw: &SignupForm, public: &'a [list::Model]) -> Option<&'a list::Model> {
    match raw.list.as_slice() {
        [one] => public.iter().find(|l| &l.slug == one),
        _ => None,
    }
}

fn render_form(
    state: &AppState,
    public: &[list::Model],
    raw: &SignupForm,
    errors: HashMap<String, String>,
    fixed: Option<&list::Model>,
    policy_in_force: bool,
) -> String {
    fn choice<'a>(l: &'a list::Model, raw: &SignupForm) -> templates::signup::ListChoice<'a> {
        templates::signup::ListChoice {
            slug: &l.slug,
            name: &l.name,
            description: l.description.as_deref(),
            checked: raw.list.contains(&l.slug),
        }
    }
    // Zero or one public list: nothing to choose.
    let fixed = fixed.or(if public.len() == 1 { public.first() } else { None });
    let form = templates::signup::SubscribeForm {
        lists: public.iter().map(|l| choice(l, raw)).collect(),
        fixed_list: fixed.map(|l| choice(l, raw)),
        email: &raw.email,
        name: &raw.name,
        consent_text: consent_text(policy_in_force),
        policy_in_force,
        consent: raw.consent,
        age_confirmed: raw.age_confirmed,
        errors,
    };
    templates::signup::subscribe_form(&state.site(), &form).into_string()
}

// A JSON signup is read into the same fields (see `SignupRequest`), and both are kept as
// given, to fill the form in again beside its messages.
/// A signup as the form posts it.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct SignupForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    name: String,
    /// A list's slug; repeated for several lists.
    #[serde(default)]
    list: Vec<String>,
    /// Must say yes (`yes`, `true`, `on` or `1`): the consent statement shown on the form.
    #[serde(default, deserialize_with = "yes")]
    consent: bool,
    /// Must say yes: "I am 18 or older".
    #[serde(default, deserialize_with = "yes")]
    age_confirmed: bool,
    /// The embedding form's name, kept with the consent evidence.
    #[serde(default)]
    form: String,
    /// The honeypot: left empty by people. Not in the API document (bots read it too).
    #[serde(default)]
    website: String,
}

// The fields as `parse` checks them, for the API document.
const EMAIL: &str = "The address to confirm";
const NAME: &str = "How to greet them: at most 200 characters on one line (blank is none)";
const LIST: &str = "A public list's slug; may be left out when there is one public list";
const CONSENT: &str =
    "Must say yes (`true`, or `yes`, `on`, `1` in any case): the consent statement shown on the form";
const AGE: &str = "Must say yes (`true`, or `yes`, `on`, `1` in any case): \"I am 18 or older\"";
const FORM: &str = "The embedding form's name, kept with the consent evidence";

/// A form field that says yes, as `truthy` reads it.
fn says_yes(description: &str) -> serde_json::Value {
    schemas::trimmed_match("([Yy][Ee][Ss]|[Tt][Rr][Uu][Ee]|[Oo][Nn]|1)", description)
}

impl utoipa::PartialSchema for SignupForm {
    fn schema() -> RefOr<Schema> {
        schemas::schema(json!({
            "type": "object",
            "required": ["email", "consent", "age_confirmed"],
            "properties": {
                "email": schemas::email(EMAIL),
                "name": schemas::optional_trimmed_line(DisplayName::MAX_CHARS, NAME),
                "list": {"type": "array", "items": schemas::slug(LIST),
                         "description": "A public list's slug, repeated for several lists"},
                "consent": says_yes(CONSENT),
                "age_confirmed": says_yes(AGE),
                "form": {"type": "string", "description": FORM},
            },
        }))
    }
}
impl utoipa::ToSchema for SignupForm {}

fn truthy(v: &str) -> bool {
    matches!(
        v.trim().to_ascii_lowercase().as_str(),
        "yes" | "true" | "on" | "1"
    )
}

/// A form's checkbox: ticked when its value says yes.
fn yes<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    String::deserialize(d).map(|v| truthy(&v))
}

// Every field is read whatever its JSON type (see `lenient`): one of another type counts as
// not given, and is then refused with a message, or false, as with the form.
/// A signup as `POST /subscribe` takes it in JSON (the form sends the same fields).
#[derive(Debug, Deserialize)]
pub(crate) struct SignupRequest {
    #[serde(default, deserialize_with = "lenient::text")]
    email: Option<String>,
    #[serde(default, deserialize_with = "lenient::text")]
    name: Option<String>,
    /// One slug or several (`lists` is accepted too).
    #[serde(default, deserialize_with = "lenient::slugs")]
    list: Option<Vec<String>>,
    // `list` under another name; `list` wins when both are given.
    #[serde(default, deserialize_with = "lenient::slugs")]
    lists: Option<Vec<String>>,
    /// Must be true: the consent statement shown on the form.
    #[serde(default, deserialize_with = "lenient::flag")]
    consent: bool,
    /// Must be true: "I am 18 or older".
    #[serde(default, deserialize_with = "lenient::flag")]
    age_confirmed: bool,
    /// The embedding form's name, kept with the consent evidence.
    #[serde(default, deserialize_with = "lenient::text")]
    form: Option<String>,
    /// The honeypot (see `SignupForm`).
    #[serde(default, deserialize_with = "lenient::text")]
    website: Option<String>,
}

impl utoipa::PartialSchema for SignupRequest {
    fn schema() -> RefOr<Schema> {
        // A value of another JSON type counts as not given (see `lenient`).
        let not_text = json!({"type": ["null", "boolean", "number", "array", "object"]});
        let yes = |description: &str| json!({"description": description, "anyOf": [{"type": "boolean", "enum": [true]}, says_yes(description)]});
        schemas::schema(json!({
            "type": "object",
            "required": ["email", "consent", "age_confirmed"],
            "properties": {
                "email": schemas::email(EMAIL),
                "name": {"description": NAME, "anyOf": [
                    schemas::optional_trimmed_line(DisplayName::MAX_CHARS, NAME), not_text]},
                "list": {"description": "One public list's slug, or several; may be left out when \
                                         there is one public list (`lists` is read too)",
                         "anyOf": [schemas::slug(LIST), {"type": "array", "items": {"anyOf": [schemas::slug(LIST), not_text.clone()]}},
                                   {"type": ["null", "boolean", "number", "object"]}]},
                "consent": yes(CONSENT),
                "age_confirmed": yes(AGE),
                "form": schemas::any_value(FORM),
            },
            "example": {"email": "ada@example.org", "name": "Ada", "list": ["weekly"],
                        "consent": true, "age_confirmed": true},
        }))
    }
}
impl utoipa::ToSchema for SignupRequest {}

/// The fields of a JSON signup, each read whatever its JSON type.
mod lenient {
    use serde::{Deserialize, Deserializer};
    use serde_json::Value;

    /// A string; any other value is none.
    pub fn text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        Ok(match Value::deserialize(d)? {
            Value::String(s) => Some(s),
            _ => None,
        })
    }

    /// true, or a string that says yes; any other value is false.
    pub fn flag<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
        Ok(match Value::deserialize(d)? {
            Value::Bool(b) => b,
            Value::String(s) => super::truthy(&s),
            _ => false,
        })
    }

    /// One slug, or an array of them (other elements are left out); any other value is an
    /// empty list (given, so that `list` still wins over `lists`).
    pub fn slugs<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
        Ok(Some(match Value::deserialize(d)? {
            Value::String(s) => vec![s],
            Value::Array(a) => a
                .into_iter()
                .filter_map(|v| match v {
                    Value::String(s) => Some(s),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        }))
    }
}

impl From<SignupRequest> for SignupForm {
    fn from(r: SignupRequest) -> Self {
        SignupForm {
            email: r.email.unwrap_or_default(),
            name: r.name.unwrap_or_default(),
            list: r.list.or(r.lists).unwrap_or_default(),
            consent: r.consent,
            age_confirmed: r.age_confirmed,
            form: r.form.unwrap_or_default(),
            website: r.website.unwrap_or_default(),
        }
    }
}

fn json_body(body: &[u8]) -> Result<SignupForm, AppError> {
    // Read as a JSON value first, as it always was: its error is the answer's detail, and a key
    // given twice counts once, with its last value.
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| AppError::bad_request(format!("The body is not valid JSON: {e}")))?;
    if !v.is_object() {
        return Err(AppError::bad_request("The body must be a JSON object."));
    }
    // Every field is read whatever its type, so an object always reads.
    let request = SignupRequest::deserialize(v)
        .map_err(|e| AppError::bad_request(format!("The body is not a signup: {e}")))?;
    Ok(request.into())
}

/// Turns raw input into a signup, or a message per field.
fn parse(
    raw: &SignupForm,
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
    if raw.list.is_empty() {
        match public {
            [only] => chosen.push(only.clone()),
            _ => err("list", "Please choose at least one newsletter.".into()),
        }
    }
    for slug in &raw.list {
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

/// The JSON answer every accepted signup gets.
#[derive(serde::Serialize, utoipa::ToSchema)]
#[schema(example = json!({"status": "accepted", "message": "If the address can receive email, a confirmation link is on its way. Nothing else is sent until it is confirmed."}))]
pub(crate) struct SignupAccepted {
    /// Always `accepted`
    #[schema(value_type = String)]
    status: &'static str,
    #[schema(value_type = String)]
    message: &'static str,
}

/// The one answer every accepted signup gets (OI-9): it names only what was typed, masked.
fn accepted(state: &AppState, json: bool, typed: &str) -> Response {
    if json {
        (
            StatusCode::ACCEPTED,
            Json(SignupAccepted {
                status: "accepted",
                message: "If the address can receive email, a confirmation link is on its way. \
                          Nothing else is sent until it is confirmed.",
            }),
        )
            .into_response()
    } else {
        let masked = EmailAddress::parse(typed).ok().map(|e| e.masked());
        Html(templates::signup::check_inbox(&state.site(), masked.as_deref()).into_string()).into_response()
    }
}

fn source(json: bool, raw: &SignupForm, headers: &HeaderMap) -> String {
    let mut source = if json {
        "json:/subscribe".to_owned()
    } else {
        "form:/subscribe".to_owned()
    };
    let form: String = raw
        .form
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

#[utoipa::path(
    post,
    path = "/subscribe",
    tag = "public",
    summary = "Sign up (double opt-in): only a confirmation email goes out until the link is confirmed",
    request_body(
        description = "JSON, or the form's fields: `email`, `name`, `list` (repeatable), `consent=yes`, \
                       `age_confirmed=yes`",
        content((SignupRequest = "application/json"), (SignupForm = "application/x-www-form-urlencoded"))
    ),
    responses(
        (status = 202, description = "Accepted (JSON request): the same answer whatever the address's state",
            body = SignupAccepted),
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
#[tracing::instrument(level = "debug", skip_all)]
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
    let raw = if json {
        json_body(&body)?
    } else {
        form_body(&body)?
    };
    if !raw.website.trim().is_empty() {
        tracing::info!("honeypot filled: answered as accepted, nothing stored");
        return Ok(accepted(&state, json, &raw.email));
    }
    let public = state.public_lists.get(&state.db).await?;
    let (email, name, chosen) = match parse(&raw, &public) {
        Ok(ok) => ok,
        Err(errors) if json || wants_json_headers(&headers) => return Err(AppError::unprocessable(errors)),
        Err(errors) => {
            let map = errors.into_iter().map(|e| (e.field, e.message)).collect();
            let page = render_form(&state, &public, &raw, map, None, policy_in_force(&state).await?);
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
    Ok(accepted(&state, json, &raw.email))
}

#[tracing::instrument(level = "debug", skip_all)]
async fn show_confirm(
    State(state): State<AppState>,
    Path(token): Path<String>,
) -> Result<Response, AppError> {
    match state.verify_token::<ConfirmClaims>(&token).await {
        Ok(claims) => link_state_page(&state, &token, &claims).await,
        Err(TokenError::Expired) => Ok(expired(&state)),
        Err(e) => Err(token_rejected(e, WayOn::Signup)),
    }
}

/// The page for what a confirmation link stands for now: its button while something waits
/// for it, otherwise the state it left.
async fn link_state_page(
    state: &AppState,
    token: &str,
    claims: &ConfirmClaims,
) -> Result<Response, AppError> {
    let site = state.site();
    let page = match state.signup.link_state(claims).await? {
        ConfirmLinkState::Pending { email, lists } => {
            templates::signup::confirm_page(&site, token, &email, &lists)
        }
        ConfirmLinkState::AlreadyConfirmed { email, lists } => {
            let prefs = state.links.preferences(claims.subscriber);
            templates::signup::already_confirmed(&site, &email, &lists, prefs.as_str())
        }
        ConfirmLinkState::Nothing => templates::signup::nothing_to_confirm(&site),
    };
    Ok(Html(page.into_string()).into_response())
}

fn expired(state: &AppState) -> Response {
    (
        StatusCode::GONE,
        Html(templates::signup::confirm_expired(&state.site()).into_string()),
    )
        .into_response()
}

#[tracing::instrument(level = "debug", skip_all)]
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
        Err(e) => return Err(token_rejected(e, WayOn::Signup)),
    };
    let origin = RequestOrigin {
        ip: requester.ip.map(|ip| ip.to_string()),
        user_agent: requester.user_agent,
        source: "confirm-link".into(),
    };
    match state.signup.confirm(&claims, origin).await? {
        ConfirmOutcome::Confirmed {
            email,
            lists,
            new_name,
        } => {
            let prefs = state.links.preferences(claims.subscriber);
            let page = templates::signup::confirmed(
                &state.site(),
                &email,
                &lists,
                new_name.as_deref(),
                prefs.as_str(),
            );
            Ok(Html(page.into_string()).into_response())
        }
        // Used before, or nothing left to do: say how things stand.
        ConfirmOutcome::AlreadyUsed | ConfirmOutcome::NothingPending => {
            link_state_page(&state, &token, &claims).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(body: &str) -> SignupForm {
        json_body(body.as_bytes()).unwrap()
    }

    #[test]
    fn a_json_field_of_another_type_counts_as_not_given() {
        let s = json(
            r#"{"email": 5, "name": null, "list": "weekly", "consent": " Yes", "age_confirmed": 1,
                "form": {}, "website": ["x"], "other": true}"#,
        );
        assert_eq!((s.email.as_str(), s.name.as_str()), ("", ""));
        assert_eq!(s.list, ["weekly"]);
        assert!(s.consent && !s.age_confirmed);
        assert_eq!((s.form.as_str(), s.website.as_str()), ("", ""));
        let s = json(r#"{"list": ["a", 3, "b", null], "consent": true, "age_confirmed": "on"}"#);
        assert_eq!(s.list, ["a", "b"]);
        assert!(s.consent && s.age_confirmed);
    }

    #[test]
    fn json_list_wins_over_lists_and_a_repeated_key_counts_once() {
        assert_eq!(json(r#"{"lists": ["a"]}"#).list, ["a"]);
        assert_eq!(json(r#"{"lists": "a", "list": "b"}"#).list, ["b"]);
        assert!(json(r#"{"list": null, "lists": ["a"]}"#).list.is_empty());
        let s = json(r#"{"email": "a@example.org", "email": "b@example.org", "list": "x", "list": ["y"]}"#);
        assert_eq!(
            (s.email.as_str(), s.list.as_slice()),
            ("b@example.org", &["y".to_owned()][..])
        );
    }

    #[test]
    fn a_body_that_is_not_a_json_object_is_a_bad_request() {
        for (body, detail) in [
            ("[1]", "The body must be a JSON object."),
            ("\"a\"", "The body must be a JSON object."),
            (
                "{not json",
                "The body is not valid JSON: key must be a string at line 1 column 2",
            ),
            (
                "{} x",
                "The body is not valid JSON: trailing characters at line 1 column 4",
            ),
            (
                "",
                "The body is not valid JSON: EOF while parsing a value at line 1 column 0",
            ),
        ] {
            let e = json_body(body.as_bytes()).unwrap_err();
            assert_eq!(
                (e.status, e.detail.as_str()),
                (StatusCode::BAD_REQUEST, detail),
                "{body}"
            );
        }
    }

    #[test]
    fn the_form_takes_every_list_and_the_last_of_anything_else() {
        let s: SignupForm = form_body(
            b"list=a&lists=b&email=x%40example.org&consent=ON&age_confirmed=no&list=c&email=y%40example.org\
              &form=f&website=&other=1",
        )
        .unwrap();
        assert_eq!(s.email, "y@example.org");
        assert_eq!(s.list, ["a", "c"], "`lists` is the JSON body's alias only");
        assert!(s.consent && !s.age_confirmed);
        assert_eq!((s.form.as_str(), s.website.as_str()), ("f", ""));
        let empty: SignupForm = form_body(b"").unwrap();
        assert!(empty.email.is_empty() && empty.list.is_empty() && !empty.consent);
    }
}
