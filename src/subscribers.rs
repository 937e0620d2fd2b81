//! Adding people by API or import. Consent is evidence, not a flag: a subscriber is added as
//! confirmed only with when and where consent was given (CS-3); otherwise they are made pending
//! and sent a confirmation, or refused. An address that was suppressed, erased or opted out is
//! never brought back this way (CS-10, CS-11): only a fresh confirmed opt-in can do that.

use sea_orm::{ConnectionTrait, DbErr, Statement};

use crate::app::AppState;
use crate::domain::{DisplayName, EmailAddress};
use crate::store::entities::list;
use crate::store::subscriptions::{self, NewConsentEvent};
use crate::store::suppressions;

/// How an added person's consent stands.
#[derive(Debug, Clone)]
pub enum Consent {
    /// Consent was given elsewhere, at this time, through this source.
    Evidence {
        consented_at: time::OffsetDateTime,
        source: String,
    },
    /// No evidence: make them pending and send a confirmation.
    AskByEmail,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddOutcome {
    /// Subscribed (or made pending) to at least one list.
    Added,
    /// Already subscribed or pending on every list.
    AlreadyThere,
    /// Suppressed (bounce, complaint, erasure, unsubscribe from all): left alone.
    Suppressed,
    /// Opted out of a list: left alone there.
    OptedOut,
}

/// Adds one person inside the caller's transaction. `channel` names the route in the consent
/// ledger (`api_add` or `import`).
pub async fn add(
    state: &AppState,
    tx: &impl ConnectionTrait,
    email: &EmailAddress,
    name: Option<&DisplayName>,
    lists: &[list::Model],
    consent: &Consent,
    channel: &'static str,
) -> Result<AddOutcome, DbErr> {
    let hash = state.address_hasher.hash(email);
    if suppressions::reason(tx, &hash).await?.is_some() {
        return Ok(AddOutcome::Suppressed);
    }
    let subscriber = subscriptions::upsert_subscriber(tx, email, &hash, name).await?;
    let existing = subscriptions::of_subscriber(tx, subscriber.id).await?;
    let now_ms = crate::store::now_ms();
    let (mut added, mut opted_out) = (false, false);
    for list in lists {
        match existing
            .iter()
            .find(|s| s.list_id == list.id)
            .map(|s| s.status.as_str())
        {
            Some("unsubscribed") => {
                opted_out = true;
                continue;
            }
            Some("confirmed") => continue,
            Some("pending") if matches!(consent, Consent::AskByEmail) => continue,
            _ => {}
        }
        let (status, event) = match consent {
            Consent::Evidence { consented_at, source } => (
                "confirmed",
                NewConsentEvent {
                    subscriber_id: subscriber.id,
                    list_id: Some(list.id),
                    kind: channel,
                    source: source.clone(),
                    occurred_at: Some(*consented_at),
                    detail: Some(serde_json::json!({ "recorded_at_ms": now_ms })),
                    ..Default::default()
                },
            ),
            Consent::AskByEmail => (
                "pending",
                NewConsentEvent {
                    subscriber_id: subscriber.id,
                    list_id: Some(list.id),
                    kind: channel,
                    source: format!("{channel}:confirmation-requested"),
                    ..Default::default()
                },
            ),
        };
        tx.execute_raw(Statement::from_sql_and_values(
            tx.get_database_backend(),
            "INSERT INTO subscriptions (subscriber_id, list_id, status, created_at, confirmed_at, pending_since_ms) \
             VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (subscriber_id, list_id) DO UPDATE SET status = excluded.status, \
               confirmed_at = excluded.confirmed_at, pending_since_ms = excluded.pending_since_ms \
             WHERE subscriptions.status = 'pending'",
            [
                subscriber.id.into(),
                list.id.into(),
                status.into(),
                crate::store::now().into(),
                (status == "confirmed").then(crate::store::now).into(),
                (status == "pending").then_some(now_ms).into(),
            ],
        ))
        .await?;
        subscriptions::record_consent(tx, event).await?;
        added = true;
    }
    if added && matches!(consent, Consent::AskByEmail) {
        crate::signup::queue_confirmation(&state.config.signup, tx, subscriber.id, email, now_ms).await?;
    }
    Ok(match (added, opted_out) {
        (true, _) => AddOutcome::Added,
        (false, true) => AddOutcome::OptedOut,
        (false, false) => AddOutcome::AlreadyThere,
    })
}
