//! `/admin`: the operator's dashboard, server-rendered pages behind a sign-in with an API key.
//!
//! - **Sign-in.** The form takes an API key, checked as the API checks a bearer key; a wrong
//!   one counts against the client IP's allowance of bad keys, shared with the API. A good one
//!   gets a session cookie: a signed token (purpose `admin_session`, 8 hours) naming the key
//!   and the session's own id. HttpOnly, SameSite=Strict, Secure when `PUBLIC_URL` is https.
//! - **Every request** verifies the token and asks the database whether the key is still
//!   active and the session was not signed out, so revoking a key ends its sessions at once;
//!   it then counts against the key's per-key limit, as an API call does.
//! - **Every POST** (and any other method that is not GET or HEAD) must carry the session's
//!   CSRF token in a `csrf` field and, when the browser sends `Origin`, come from this site;
//!   otherwise it is a 403 page. The sign-in form carries a token bound to a cookie of its own.
//!   The pages send `Referrer-Policy: same-origin`, so that the browser sends their origin with
//!   their forms.
//!
//! The pages themselves (`pages`) read aggregate counts from `store::reports` and act through
//! the same services the API uses.

mod pages;

use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{RawQuery, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use base64::Engine;
use sha2::{Digest, Sha256};
use tower_http::set_header::SetResponseHeaderLayer;

use crate::edge::{AppError, AppState, client_ip, rate_limit};
use crate::store::{api_keys, spent_tokens};
use crate::tokens::{AdminSessionClaims, Purpose};

/// How long a session lasts.
const SESSION_TTL: Duration = Duration::from_secs(8 * 3600);
/// The session cookie, sent only to `/admin`.
const SESSION_COOKIE: &str = "letterhead_admin";
/// The sign-in form's own cookie: what its CSRF token is bound to, before there is a session.
const SIGN_IN_COOKIE: &str = "letterhead_admin_sign_in";
/// How long a sign-in form stays good.
const SIGN_IN_TTL: Duration = Duration::from_secs(3600);
/// Forms here are a token and a few words.
const MAX_FORM_BYTES: usize = 16 * 1024;

/// Who is signed in, put into request extensions by [`require_session`].
#[derive(Debug, Clone)]
pub struct Admin {
    pub key_id: i64,
    pub key_name: String,
    /// The token every form of the session carries.
    pub csrf: String,
}

pub fn routes(state: AppState) -> Router<AppState> {
    let signed_in = Router::new()
        .route("/admin", get(|| async { Redirect::to("/admin/campaigns") }))
        .route("/admin/campaigns", get(pages::campaigns))
        .route("/admin/campaigns/{id}/{action}", post(pages::campaign_action))
        .route("/admin/lists", get(pages::lists))
        .route("/admin/deliverability", get(pages::deliverability))
        .route("/admin/compliance", get(pages::compliance))
        .route("/admin/sign-out", post(sign_out))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_session));
    let sign_in = Router::new()
        .route("/admin/sign-in", get(show_sign_in).post(sign_in))
        .route_layer(middleware::from_fn_with_state(state, rate_limit::per_ip));
    signed_in
        .merge(sign_in)
        // The public pages send no referrer at all, and then browsers send `Origin: null` with
        // every form; these pages carry no token in their addresses.
        .layer(SetResponseHeaderLayer::overriding(
            header::REFERRER_POLICY,
            HeaderValue::from_static("same-origin"),
        ))
}

/// The value of cookie `name`, if the request has it.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// A `Set-Cookie` value; `None` as the value clears the cookie.
fn set_cookie(state: &AppState, name: &str, path: &str, value: Option<(&str, Duration)>) -> HeaderValue {
    let secure = if state.config.public_url.scheme() == "https" {
        "; Secure"
    } else {
        ""
    };
    let (value, max_age) = value.map_or(("", 0), |(v, ttl)| (v, ttl.as_secs()));
    let cookie = format!("{name}={value}; Path={path}; Max-Age={max_age}; HttpOnly; SameSite=Strict{secure}");
    // Tokens and nonces are base64url and dots: always a valid header value.
    HeaderValue::from_str(&cookie).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The CSRF token of a session (or of a sign-in form): a hash of the secret its cookie holds,
/// which a page of another site can neither read nor guess, and which reveals nothing of the
/// cookie where the page shows it.
fn csrf_token(purpose: &str, secret: &str) -> String {
    let mut h = Sha256::new();
    for part in ["letterhead admin csrf", purpose, secret] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(h.finalize())
}

/// Compares without stopping at the first difference.
fn same_token(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The value of field `name` in a form body.
fn form_field(body: &[u8], name: &str) -> Option<String> {
    url::form_urlencoded::parse(body)
        .filter(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
        .last()
}

/// Whether a request that changes something comes from a page of this site, when the browser
/// says (`Origin`): the origin of `PUBLIC_URL`, or of the host the request was sent to (the
/// dashboard may be reached under another name than the public pages).
fn from_this_site(state: &AppState, headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let Ok(origin) = origin.to_str() else {
        return false;
    };
    if origin == state.config.public_url.origin().ascii_serialization() {
        return true;
    }
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    match (url::Url::parse(origin), host) {
        (Ok(origin), Some(host)) if matches!(origin.scheme(), "http" | "https") => {
            let authority = match (origin.host_str(), origin.port()) {
                (Some(h), Some(port)) => format!("{h}:{port}"),
                (Some(h), None) => h.to_owned(),
                (None, _) => return false,
            };
            authority.eq_ignore_ascii_case(host)
        }
        _ => false,
    }
}

fn forbidden() -> AppError {
    AppError::new(
        StatusCode::FORBIDDEN,
        "This form cannot be accepted",
        "It did not come from a page of this dashboard, or the page is too old. Go back, reload \
         the page and try again.",
    )
}

/// To the sign-in form; `ended` says a session was there and is over (and clears its cookie).
fn to_sign_in(state: &AppState, ended: bool) -> Response {
    if !ended {
        return Redirect::to("/admin/sign-in").into_response();
    }
    let mut res = Redirect::to("/admin/sign-in?ended").into_response();
    res.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(state, SESSION_COOKIE, "/admin", None),
    );
    res
}

/// Middleware: a live session, within its key's limit; for what changes something, the
/// session's CSRF token and this site's origin.
async fn require_session(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let Some(token) = cookie(req.headers(), SESSION_COOKIE) else {
        return to_sign_in(&state, false);
    };
    // Expired, forged, or signed by a key no longer known: the session is over.
    let Ok(claims) = state.verify_token::<AdminSessionClaims>(token).await else {
        return to_sign_in(&state, true);
    };
    let key_name = match api_keys::session_key_name(&state.db, claims.key_id, &claims.session).await {
        Ok(Some(name)) => name,
        // The key was revoked, or the session signed out.
        Ok(None) => return to_sign_in(&state, true),
        Err(e) => return AppError::from(e).into_response(),
    };
    if let Err(e) = state.limits.api.check(&claims.key_id) {
        return e.into_response();
    }
    let csrf = csrf_token("session", &claims.session);
    let mut req = if matches!(*req.method(), Method::GET | Method::HEAD) {
        req
    } else {
        match checked_form(&state, req, &csrf).await {
            Ok((parts, body)) => Request::from_parts(parts, Body::from(body)),
            Err(e) => return e.into_response(),
        }
    };
    req.extensions_mut().insert(Admin {
        key_id: claims.key_id,
        key_name,
        csrf,
    });
    req.extensions_mut().insert(SessionId(claims.session));
    next.run(req).await
}

/// The session's own id, for signing out.
#[derive(Clone)]
struct SessionId(String);

/// The form of a request that changes something, once it carries `csrf` and comes from this
/// site.
async fn checked_form(state: &AppState, req: Request, csrf: &str) -> Result<(Parts, Bytes), AppError> {
    if !from_this_site(state, req.headers()) {
        return Err(forbidden());
    }
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, MAX_FORM_BYTES).await.map_err(|_| {
        AppError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "Too large",
            "The form sent more than this dashboard's forms ever hold.",
        )
    })?;
    match form_field(&body, "csrf") {
        Some(sent) if same_token(&sent, csrf) => Ok((parts, body)),
        _ => Err(forbidden()),
    }
}

fn html(markup: maud::Markup) -> Html<String> {
    Html(markup.into_string())
}

/// `GET /admin/sign-in`: the form, with the cookie its token is bound to (the one the browser
/// has, so that a form open in another tab stays good, or a new one).
async fn show_sign_in(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let nonce = cookie(&headers, SIGN_IN_COOKIE)
        .filter(|n| n.len() == 32 && n.bytes().all(|b| b.is_ascii_hexdigit()))
        .map_or_else(|| uuid::Uuid::new_v4().simple().to_string(), str::to_owned);
    let notice = match query.as_deref() {
        Some("ended") => {
            Some("Your session has ended: it expired, or its API key was revoked. Sign in again.")
        }
        Some("signed-out") => Some("You are signed out."),
        _ => None,
    };
    let page = templates::admin::sign_in(&state.site(), &csrf_token("sign-in", &nonce), notice, None);
    let mut res = html(page).into_response();
    res.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(
            &state,
            SIGN_IN_COOKIE,
            "/admin/sign-in",
            Some((&nonce, SIGN_IN_TTL)),
        ),
    );
    res
}

/// `POST /admin/sign-in`: a good key opens a session; a wrong one shows the form again and
/// counts against the IP's allowance of bad keys.
async fn sign_in(
    State(state): State<AppState>,
    headers: HeaderMap,
    req: Request,
) -> Result<Response, AppError> {
    let ip = client_ip::client_ip(&headers, req.extensions(), state.config.trust_proxy_headers);
    let failures = &state.limits.api_key_failures;
    if let Some(ip) = &ip {
        failures.check(ip)?;
    }
    let nonce = cookie(&headers, SIGN_IN_COOKIE).ok_or_else(forbidden)?;
    let csrf = csrf_token("sign-in", nonce);
    let (_, body) = checked_form(&state, req, &csrf).await?;
    let presented = form_field(&body, "key").unwrap_or_default();
    let Some(key) = api_keys::authenticate(&state.db, presented.trim()).await? else {
        if let Some(ip) = &ip {
            failures.failed(ip)?;
        }
        let page = templates::admin::sign_in(
            &state.site(),
            &csrf,
            None,
            Some(
                "This is not an active API key. Check that it was copied whole, and that it was not revoked.",
            ),
        );
        return Ok((StatusCode::UNAUTHORIZED, html(page)).into_response());
    };
    let token = state.keyring().issue(
        Purpose::AdminSession,
        &key.id.to_string(),
        None,
        Some(SESSION_TTL),
    );
    tracing::info!(key = key.id, "signed in to the dashboard");
    let mut res = Redirect::to("/admin/campaigns").into_response();
    let cookies = res.headers_mut();
    cookies.append(
        header::SET_COOKIE,
        set_cookie(&state, SESSION_COOKIE, "/admin", Some((&token, SESSION_TTL))),
    );
    cookies.append(
        header::SET_COOKIE,
        set_cookie(&state, SIGN_IN_COOKIE, "/admin/sign-in", None),
    );
    Ok(res)
}

/// `POST /admin/sign-out`: the session's id is spent, so its cookie opens nothing again.
async fn sign_out(
    State(state): State<AppState>,
    axum::Extension(admin): axum::Extension<Admin>,
    axum::Extension(SessionId(session)): axum::Extension<SessionId>,
) -> Result<Response, AppError> {
    spent_tokens::spend(&state.db, &session).await?;
    tracing::info!(key = admin.key_id, "signed out of the dashboard");
    let mut res = Redirect::to("/admin/sign-in?signed-out").into_response();
    res.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(&state, SESSION_COOKIE, "/admin", None),
    );
    Ok(res)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_found_by_name_among_others() {
        let mut headers = HeaderMap::new();
        headers.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; letterhead_admin=tok.en"),
        );
        headers.append(
            header::COOKIE,
            HeaderValue::from_static("letterhead_admin_sign_in=n"),
        );
        assert_eq!(cookie(&headers, SESSION_COOKIE), Some("tok.en"));
        assert_eq!(cookie(&headers, SIGN_IN_COOKIE), Some("n"));
        assert_eq!(cookie(&headers, "b"), None);
    }

    #[test]
    fn csrf_tokens_differ_by_secret_and_purpose() {
        let a = csrf_token("session", "s1");
        assert_eq!(a, csrf_token("session", "s1"));
        assert_ne!(a, csrf_token("session", "s2"));
        assert_ne!(a, csrf_token("sign-in", "s1"));
        assert!(same_token(&a, &csrf_token("session", "s1")));
        assert!(!same_token(&a, &a[1..]));
    }
}
