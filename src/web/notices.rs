//! `/privacy` and `/notices`: what the policy says now, what changes and when, and the breach
//! notices in force.

use axum::extract::State;
use axum::response::Html;
use axum::{Router, routing::get};

use crate::edge::AppError;
use crate::edge::AppState;
use crate::store::policies;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/privacy", get(privacy))
        .route("/notices", get(notices))
}

fn date(t: time::OffsetDateTime) -> String {
    t.format(&time::macros::format_description!(
        "[day padding:none] [month repr:long] [year]"
    ))
    .unwrap_or_default()
}

#[tracing::instrument(level = "debug", skip_all)]
async fn privacy(State(state): State<AppState>) -> Result<Html<String>, AppError> {
    let now = crate::store::now();
    let all = policies::all(&state.db).await?; // newest effective date first
    fn entry(p: &crate::store::entities::policy_version::Model) -> templates::notices::PolicyEntry<'_> {
        templates::notices::PolicyEntry {
            version: &p.version,
            effective: date(p.effective_at),
            summary: &p.summary,
            url: &p.url,
        }
    }
    let current_idx = all.iter().position(|p| p.effective_at <= now);
    let view = templates::notices::PrivacyView {
        current: current_idx.map(|i| entry(&all[i])),
        upcoming: all
            .iter()
            .filter(|p| p.effective_at > now)
            .rev()
            .map(entry)
            .collect(),
        history: current_idx
            .map(|i| all[i + 1..].iter().map(entry).collect())
            .unwrap_or_default(),
        unconfirmed_days: state.config.retention.unconfirmed.as_secs() / 86_400,
        abuse_days: state.config.retention.abuse_data.as_secs() / 86_400,
        after_leaving_days: state.config.retention.after_leaving.as_secs() / 86_400,
        notices_in_force: policies::breach_notices(&state.db, true).await?.len(),
    };
    Ok(Html(
        templates::notices::privacy(&state.site(), &view).into_string(),
    ))
}

#[tracing::instrument(level = "debug", skip_all)]
async fn notices(State(state): State<AppState>) -> Result<Html<String>, AppError> {
    let notices = policies::breach_notices(&state.db, true).await?;
    let entries: Vec<_> = notices
        .iter()
        .map(|n| templates::notices::NoticeEntry {
            subject: &n.subject,
            body: &n.body,
            published: date(n.published_at),
        })
        .collect();
    Ok(Html(
        templates::notices::notices(&state.site(), &entries).into_string(),
    ))
}
