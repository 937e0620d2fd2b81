//! Leaving and data rights over HTTP: the RFC 8058 one-click URI, the preference page, the
//! export download and the change-of-address confirmation. Every page is reached through a
//! signed, purpose-bound token; a bad token is a 4xx page and changes nothing (LU-5, TK-1..4).

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use super::form::form_body;
use crate::domain::{DisplayName, EmailAddress};
use crate::edge::AppState;
use crate::edge::client_ip::Requester;
use crate::edge::{AppError, WayOn, token_rejected};
use crate::services::leaving::AddressChangeOutcome;
use crate::services::signup::RequestOrigin;
use crate::store::entities::subscriber;
use crate::store::entities::subscription::SubscriptionStatus;
use crate::store::{lists, spent_tokens, subscriptions};
use crate::tokens::{
    AgreeClaims, ChangeAddressClaims, ExportClaims, ManageClaims, PurposeClaims, UnsubscribeClaims,
};

/// The one-click URI: behind its own, generous per-IP limit, since mailbox providers send
/// one-click POSTs for many recipients from few addresses.
pub fn one_click_routes() -> Router<AppState> {
    Router::new().route("/unsubscribe/{token}", get(show_unsubscribe).post(unsubscribe))
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/preferences/{token}",
            get(show_preferences).post(save_preferences),
        )
        .route("/preferences/{token}/unsubscribe-all", post(unsubscribe_all))
        .route("/preferences/{token}/export", post(request_export))
        .route("/preferences/{token}/erase", get(show_erase).post(erase))
        .route("/preferences/{token}/address", post(change_address))
        .route("/export/{token}", get(show_export).post(download_export))
        .route(
            "/change-address/{token}",
            get(show_change_address).post(apply_change_address),
        )
        .route("/agree/{token}", get(show_agree).post(agree))
}

/// The subscriber and policy version an agreement link names.
async fn agree_target(
    state: &AppState,
    token: &str,
) -> Result<(subscriber::Model, crate::store::entities::policy_version::Model), AppError> {
    let claims: AgreeClaims = verified(state, token).await?;
    let s = subscriptions::subscriber_by_uuid(&state.db, claims.subscriber)
        .await?
        .ok_or_else(gone)?;
    let p = crate::store::policies::policy_by_id(&state.db, claims.policy_id)
        .await?
        .ok_or_else(gone)?;
    Ok((s, p))
}

/// GET on the agreement link: a button (prefetching scanners agree to nothing).
#[tracing::instrument(level = "debug", skip_all)]
async fn show_agree(State(state): State<AppState>, Path(token): Path<String>) -> Result<Response, AppError> {
    let (_, policy) = agree_target(&state, &token).await?;
    Ok(page(templates::leaving::button_page(
        &state.site(),
        "Agree to the new privacy policy",
        &format!(
            "Version {} of our privacy policy changes how we use your data. {}",
            policy.version, policy.summary
        ),
        &format!("/agree/{token}"),
        "I agree",
    )))
}

#[tracing::instrument(level = "debug", skip_all)]
async fn agree(
    State(state): State<AppState>,
    requester: Requester,
    Path(token): Path<String>,
) -> Result<Response, AppError> {
    let (s, policy) = agree_target(&state, &token).await?;
    state
        .leaving
        .agree(&s, &policy.version, origin(requester, "agree-link"))
        .await?;
    Ok(page(templates::leaving::message(
        &state.site(),
        "Thank you",
        "Your agreement is recorded. Newsletters you subscribed to will reach you again.",
    )))
}

fn origin(requester: Requester, source: &str) -> RequestOrigin {
    RequestOrigin {
        ip: requester.ip.map(|ip| ip.to_string()),
        user_agent: requester.user_agent,
        source: source.to_owned(),
    }
}

fn page(markup: maud::Markup) -> Response {
    Html(markup.into_string()).into_response()
}

/// The claims of a link to the preference page or a page it leads to; a link that does not
/// verify answers a page that says what to do instead.
async fn verified<T: PurposeClaims>(state: &AppState, token: &str) -> Result<T, AppError> {
    verified_or(state, token, WayOn::Preferences).await
}

async fn verified_or<T: PurposeClaims>(state: &AppState, token: &str, way_on: WayOn) -> Result<T, AppError> {
    state
        .verify_token::<T>(token)
        .await
        .map_err(|e| token_rejected(e, way_on))
}

fn gone() -> AppError {
    AppError::new(
        StatusCode::GONE,
        "Nothing here any more",
        "We hold no data for this link: the subscription may have been erased.",
    )
    .with_way_on(WayOn::Preferences)
}

/// The subscriber a manage token names.
async fn manage_target(state: &AppState, token: &str) -> Result<subscriber::Model, AppError> {
    let claims: ManageClaims = verified(state, token).await?;
    subscriptions::subscriber_by_uuid(&state.db, claims.subscriber)
        .await?
        .ok_or_else(gone)
}

/// GET on the one-click URI: the question with its button, or, when the person already left
/// that list, the state and the way back.
#[utoipa::path(
    get,
    path = "/unsubscribe/{token}",
    tag = "public",
    summary = "The unsubscribe page: its button POSTs (a GET changes nothing)",
    params(("token" = String, Path, description = "The signed token from the email")),
    responses(
        (status = 200, description = "The page", body = String, content_type = "text/html"),
        (status = 400,
            description = "A token that is forged, altered or of another purpose (a page, or a problem to a \
                           request that asks for JSON)",
            content((crate::edge::error::Problem = "application/problem+json"), (String = "text/html"))),
        (status = 429, description = "Too many requests from this IP; see Retry-After",
            content((crate::edge::error::Problem = "application/problem+json"), (String = "text/html"))),
    )
)]
#[tracing::instrument(level = "debug", skip_all)]
pub(crate) async fn show_unsubscribe(
    State(state): State<AppState>,
    Path(token): Path<String>,
) -> Result<Response, AppError> {
    let claims: UnsubscribeClaims = verified_or(&state, &token, WayOn::Unsubscribe).await?;
    let name = lists::by_id(&state.db, claims.list_id)
        .await?
        .map(|l| l.name)
        .unwrap_or_else(|| "this newsletter".into());
    let site = state.site();
    let Some(s) = subscriptions::subscriber_by_uuid(&state.db, claims.subscriber).await? else {
        return Ok(page(templates::leaving::already_unsubscribed(
            &site, None, &name, None,
        )));
    };
    let left = subscriptions::of_subscriber(&state.db, s.id)
        .await?
        .iter()
        .find(|x| x.list_id == claims.list_id)
        .is_none_or(|x| x.status == SubscriptionStatus::Unsubscribed);
    if left {
        let prefs = state.links.preferences(claims.subscriber);
        return Ok(page(templates::leaving::already_unsubscribed(
            &site,
            Some(&s.email),
            &name,
            Some(prefs.as_str()),
        )));
    }
    Ok(page(templates::leaving::unsubscribe_page(
        &site, &token, &s.email, &name,
    )))
}

/// RFC 8058: a POST (one-click body as form or multipart, or the page's button) unsubscribes
/// and answers 200, never a redirect, the same every time (LU-3, LU-7, CS-6).
#[utoipa::path(
    post,
    path = "/unsubscribe/{token}",
    tag = "public",
    summary = "One-click unsubscribe (RFC 8058): the List-Unsubscribe URL of every marketing email",
    params(("token" = String, Path, description = "The signed token from the email")),
    request_body(
        description = "`List-Unsubscribe=One-Click` (any body is accepted)",
        content(("application/x-www-form-urlencoded"), ("multipart/form-data"))
    ),
    responses(
        (status = 200, description = "Unsubscribed (the same answer every time)", body = String,
            content_type = "text/html"),
        (status = 400,
            description = "A token that is forged, altered or of another purpose (a page, or a problem to a \
                           request that asks for JSON)",
            content((crate::edge::error::Problem = "application/problem+json"), (String = "text/html"))),
        (status = 429, description = "Too many requests from this IP; see Retry-After",
            content((crate::edge::error::Problem = "application/problem+json"), (String = "text/html"))),
    )
)]
#[tracing::instrument(level = "debug", skip_all)]
pub(crate) async fn unsubscribe(
    State(state): State<AppState>,
    requester: Requester,
    Path(token): Path<String>,
    _body: Bytes,
) -> Result<Response, AppError> {
    let UnsubscribeClaims { subscriber, list_id } = verified_or(&state, &token, WayOn::Unsubscribe).await?;
    let name = state
        .leaving
        .unsubscribe(subscriber, list_id, origin(requester, "one-click"))
        .await?
        .unwrap_or_else(|| "this newsletter".into());
    let prefs = state.links.preferences(subscriber);
    Ok(page(templates::leaving::unsubscribed(
        &state.site(),
        &name,
        Some(prefs.as_str()),
    )))
}

async fn render_preferences(
    state: &AppState,
    token: &str,
    s: &subscriber::Model,
    notice: Option<&str>,
) -> Result<Response, AppError> {
    let subs = subscriptions::of_subscriber(&state.db, s.id).await?;
    let all = lists::all(&state.db).await?;
    let toggles = all
        .iter()
        .filter(|l| l.public || subs.iter().any(|x| x.list_id == l.id))
        .map(|l| templates::leaving::ListToggle {
            slug: &l.slug,
            name: &l.name,
            subscribed: subs
                .iter()
                .any(|x| x.list_id == l.id && x.status == SubscriptionStatus::Confirmed),
        })
        .collect();
    let view = templates::leaving::PreferencesView {
        token,
        email: &s.email,
        name: s.name.as_deref().unwrap_or(""),
        lists: toggles,
        notice,
    };
    Ok(page(templates::leaving::preferences(&state.site(), &view)))
}

#[tracing::instrument(level = "debug", skip_all)]
async fn show_preferences(
    State(state): State<AppState>,
    Path(token): Path<String>,
) -> Result<Response, AppError> {
    let s = manage_target(&state, &token).await?;
    render_preferences(&state, &token, &s, None).await
}

/// The preference page's form.
#[derive(Deserialize)]
struct PreferencesForm {
    /// The ticked lists' slugs (one `list` field each).
    #[serde(default)]
    list: Vec<String>,
    /// The name; not given leaves it as it is, blank clears it.
    name: Option<String>,
}

/// The change-of-address form.
#[derive(Deserialize)]
struct AddressForm {
    /// The new address (the first, if given more than once).
    #[serde(default, deserialize_with = "first")]
    email: Option<String>,
}

/// The first value of a field given more than once.
fn first<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Vec::<String>::deserialize(d).map(|values| values.into_iter().next())
}

#[tracing::instrument(level = "debug", skip_all)]
async fn save_preferences(
    State(state): State<AppState>,
    requester: Requester,
    Path(token): Path<String>,
    body: Bytes,
) -> Result<Response, AppError> {
    let s = manage_target(&state, &token).await?;
    let PreferencesForm { list: slugs, name } = form_body(&body)?;
    let name = match name.as_deref().map(str::trim) {
        None => None,
        Some("") => Some(None),
        Some(n) => match DisplayName::parse(n) {
            Ok(n) => Some(Some(n)),
            Err(e) => {
                return Err(AppError::unprocessable(vec![crate::edge::FieldError {
                    field: "name".into(),
                    message: format!("The name {e}."),
                }]));
            }
        },
    };
    let subs = subscriptions::of_subscriber(&state.db, s.id).await?;
    let wanted: Vec<i64> = lists::all(&state.db)
        .await?
        .into_iter()
        .filter(|l| (l.public || subs.iter().any(|x| x.list_id == l.id)) && slugs.contains(&l.slug))
        .map(|l| l.id)
        .collect();
    state
        .leaving
        .set_lists(&s, &wanted, name, origin(requester, "preferences"))
        .await?;
    let s = subscriptions::subscriber_by_id(&state.db, s.id)
        .await?
        .ok_or_else(gone)?;
    render_preferences(&state, &token, &s, Some("Your preferences are saved.")).await
}

#[tracing::instrument(level = "debug", skip_all)]
async fn unsubscribe_all(
    State(state): State<AppState>,
    requester: Requester,
    Path(token): Path<String>,
) -> Result<Response, AppError> {
    let s = manage_target(&state, &token).await?;
    state
        .leaving
        .unsubscribe_all(&s, origin(requester, "preferences:unsubscribe-all"))
        .await?;
    render_preferences(
        &state,
        &token,
        &s,
        Some("You are unsubscribed from all newsletters. This took effect at once."),
    )
    .await
}

#[tracing::instrument(level = "debug", skip_all)]
async fn request_export(
    State(state): State<AppState>,
    Path(token): Path<String>,
) -> Result<Response, AppError> {
    let s = manage_target(&state, &token).await?;
    state.leaving.request_export(&s).await?;
    Ok(page(templates::leaving::message(
        &state.site(),
        "Check your inbox",
        &format!(
            "We are emailing a download link for your data to {}. It works once, for 24 hours.",
            s.email
        ),
    )))
}

/// GET on the erase address: what will be erased, and one button that does it.
#[tracing::instrument(level = "debug", skip_all)]
async fn show_erase(State(state): State<AppState>, Path(token): Path<String>) -> Result<Response, AppError> {
    let s = manage_target(&state, &token).await?;
    let subs = subscriptions::of_subscriber(&state.db, s.id).await?;
    let held = lists::by_ids(&state.db, subs.iter().map(|x| x.list_id).collect()).await?;
    let view = templates::leaving::ErasureView {
        token: &token,
        email: &s.email,
        name: s.name.as_deref(),
        lists: held.iter().map(|l| l.name.as_str()).collect(),
    };
    Ok(page(templates::leaving::erase_page(&state.site(), &view)))
}

#[tracing::instrument(level = "debug", skip_all)]
async fn erase(State(state): State<AppState>, Path(token): Path<String>) -> Result<Response, AppError> {
    let s = manage_target(&state, &token).await?;
    state.leaving.erase(&s).await?;
    Ok(page(templates::leaving::message(
        &state.site(),
        "Your data is erased",
        &format!(
            "We deleted everything we held about {}. You will get no more email from us.",
            s.email
        ),
    )))
}

#[tracing::instrument(level = "debug", skip_all)]
async fn change_address(
    State(state): State<AppState>,
    Path(token): Path<String>,
    body: Bytes,
) -> Result<Response, AppError> {
    let s = manage_target(&state, &token).await?;
    let AddressForm { email } = form_body(&body)?;
    let new = EmailAddress::parse(email.as_deref().unwrap_or("")).map_err(|e| {
        AppError::unprocessable(vec![crate::edge::FieldError {
            field: "email".into(),
            message: format!("The address {e}."),
        }])
    })?;
    if new.normalized() == s.email_key {
        return render_preferences(&state, &token, &s, Some("That is already your address.")).await;
    }
    state.leaving.request_address_change(&s, &new).await?;
    render_preferences(
        &state,
        &token,
        &s,
        Some(
            "We sent a confirmation link to the new address. Your address changes when you confirm it there.",
        ),
    )
    .await
}

/// What an export link opens: the person it names, or, once its one use is spent, the page
/// that says so.
enum ExportLink {
    Usable(ExportClaims, subscriber::Model),
    Spent(Response),
}

async fn export_link(state: &AppState, token: &str) -> Result<ExportLink, AppError> {
    let claims: ExportClaims = verified(state, token).await?;
    let s = subscriptions::subscriber_by_uuid(&state.db, claims.subscriber)
        .await?
        .ok_or_else(gone)?;
    if spent_tokens::is_spent(&state.db, &claims.jti).await? {
        return Ok(ExportLink::Spent(export_spent(state, &claims, &s)));
    }
    Ok(ExportLink::Usable(claims, s))
}

fn export_spent(state: &AppState, claims: &ExportClaims, s: &subscriber::Model) -> Response {
    let prefs = state.links.preferences(claims.subscriber);
    let body = templates::leaving::export_spent(&state.site(), &s.email, prefs.as_str());
    (StatusCode::GONE, Html(body.into_string())).into_response()
}

#[tracing::instrument(level = "debug", skip_all)]
async fn show_export(State(state): State<AppState>, Path(token): Path<String>) -> Result<Response, AppError> {
    Ok(match export_link(&state, &token).await? {
        ExportLink::Usable(_, s) => page(templates::leaving::export_page(&state.site(), &token, &s.email)),
        ExportLink::Spent(page) => page,
    })
}

#[tracing::instrument(level = "debug", skip_all)]
async fn download_export(
    State(state): State<AppState>,
    Path(token): Path<String>,
) -> Result<Response, AppError> {
    let (claims, s) = match export_link(&state, &token).await? {
        ExportLink::Usable(claims, s) => (claims, s),
        ExportLink::Spent(page) => return Ok(page),
    };
    // Two downloads at once: only one spends the link.
    if !spent_tokens::spend(&state.db, &claims.jti).await? {
        return Ok(export_spent(&state, &claims, &s));
    }
    let data = state.leaving.export(&s).await?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/json"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"my-data.json\"",
            ),
        ],
        serde_json::to_vec_pretty(&data).unwrap_or_default(),
    )
        .into_response())
}

#[tracing::instrument(level = "debug", skip_all)]
async fn show_change_address(
    State(state): State<AppState>,
    Path(token): Path<String>,
) -> Result<Response, AppError> {
    verified::<ChangeAddressClaims>(&state, &token).await?;
    Ok(page(templates::leaving::button_page(
        &state.site(),
        "Confirm your new address",
        "Press the button to receive our emails at this address from now on.",
        &format!("/change-address/{token}"),
        "Confirm this address",
    )))
}

#[tracing::instrument(level = "debug", skip_all)]
async fn apply_change_address(
    State(state): State<AppState>,
    requester: Requester,
    Path(token): Path<String>,
) -> Result<Response, AppError> {
    let claims: ChangeAddressClaims = verified(&state, &token).await?;
    let site = state.site();
    let (title, text) = match state
        .leaving
        .apply_address_change(claims.change, origin(requester, "change-address"))
        .await?
    {
        AddressChangeOutcome::Changed => ("Address changed", "From now on our emails go to this address."),
        AddressChangeOutcome::Taken => (
            "Address already subscribed",
            "This address already has its own subscription. Manage it from the links in its emails.",
        ),
        AddressChangeOutcome::Gone => (
            "Nothing to change",
            "This change was applied already or is no longer pending.",
        ),
    };
    Ok(page(templates::leaving::message(&site, title, text)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_preference_forms_read_as_they_always_did() {
        let p: PreferencesForm = form_body(b"list=weekly&name=Ada&other=1&list=offers&name=Ada+L").unwrap();
        assert_eq!(p.list, ["weekly", "offers"]);
        assert_eq!(p.name.as_deref(), Some("Ada L"), "the last name given");
        let p: PreferencesForm = form_body(b"").unwrap();
        assert!(
            p.list.is_empty() && p.name.is_none(),
            "no name field: the name stays"
        );
        let a: AddressForm = form_body(b"email=new%40example.org&email=other%40example.org").unwrap();
        assert_eq!(
            a.email.as_deref(),
            Some("new@example.org"),
            "the first address given"
        );
        let a: AddressForm = form_body(b"name=x").unwrap();
        assert_eq!(a.email, None);
    }
}
