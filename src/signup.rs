//! Double opt-in: a signup records consent evidence and makes subscriptions pending; only a
//! confirmation email goes out (OI-1); the confirmation link, when POSTed, confirms what was
//! pending when the link was issued (OI-10, OI-11).
//!
//! A signup does the same work whatever state the address is in, and its answer never depends
//! on it (OI-9). Concurrent identical signups end as one subscription per list and at most one
//! confirmation: unique constraints and upserts decide, not application locks.

use sea_orm::DbErr;

use crate::app::AppState;
use crate::delivery::Payload;
use crate::domain::{DisplayName, EmailAddress};
use crate::store::entities::list;
use crate::store::outbox::{self, NewOutboxMessage};
use crate::store::subscriptions::{self, NewConsentEvent};
use crate::store::suppressions::{self, SuppressionReason};
use crate::store::{self, begin_write, policies, spent_tokens};
use crate::tokens::Claims;

/// The consent statement shown next to the checkbox, recorded with every signup (OI-3).
pub const CONSENT_TEXT: &str = "I want to receive the newsletters I selected by email. I have read the \
privacy policy and know that I can unsubscribe at any time with one click.";

/// Where a request came from, kept as evidence (IP and user agent only until the abuse
/// retention period ends, GD-5).
#[derive(Debug, Clone, Default)]
pub struct RequestOrigin {
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    /// The form or channel: `form:/subscribe`, `json:/subscribe`, with an optional form name.
    pub source: String,
}

pub struct Signup {
    pub email: EmailAddress,
    pub name: Option<DisplayName>,
    /// Existing, public lists, as chosen.
    pub lists: Vec<list::Model>,
    pub origin: RequestOrigin,
}

/// Records the signup. Answers nothing about the address's state.
pub async fn sign_up(state: &AppState, mut signup: Signup) -> Result<(), DbErr> {
    signup.lists.sort_by_key(|l| l.id); // one lock order for every transaction
    signup.lists.dedup_by_key(|l| l.id);
    let now = store::now();
    let now_ms = store::now_ms();
    let policy = policies::in_force(&state.db, now).await?.map(|p| p.version);

    let tx = begin_write(&state.db).await?;
    let hash = state.address_hasher.hash(&signup.email);
    let subscriber =
        subscriptions::upsert_subscriber(&tx, &signup.email, &hash, signup.name.as_ref()).await?;
    // The newest moment a chosen list became pending: a confirmation created before it does
    // not cover it (its link is issued later, at send time, but may already be out).
    let mut newest_pending_ms: Option<i64> = None;
    for list in &signup.lists {
        let (status, pending_since) =
            subscriptions::request_subscription(&tx, subscriber.id, list.id, now_ms).await?;
        if status == "pending" {
            newest_pending_ms = newest_pending_ms.max(Some(pending_since.unwrap_or(now_ms)));
        }
        subscriptions::record_consent(
            &tx,
            NewConsentEvent {
                subscriber_id: subscriber.id,
                list_id: Some(list.id),
                kind: "signup",
                source: signup.origin.source.clone(),
                ip: signup.origin.ip.clone(),
                user_agent: signup.origin.user_agent.clone(),
                policy_version: policy.clone(),
                consent_text: Some(CONSENT_TEXT.to_owned()),
                detail: Some(serde_json::json!({ "age_confirmed": true, "list": list.slug })),
                occurred_at: None,
            },
        )
        .await?;
    }
    if let Some(pending_ms) = newest_pending_ms {
        queue_confirmation(state, &tx, subscriber.id, &signup.email, pending_ms).await?;
    }
    tx.commit().await?;
    state.outbox_wakeup.notify_one();
    Ok(())
}

/// Queues a confirmation for a person with something pending since `newest_pending_ms`, if
/// one is due: nothing is queued already (a queued one renders at send time and covers every
/// list pending by then), and either the last confirmation does not cover this or it is old
/// enough to send again; at most N a day go to one address (OI-6). The dedupe key chains on the
/// newest confirmation, so concurrent requests that saw the same history insert only one.
pub async fn queue_confirmation(
    state: &AppState,
    tx: &impl sea_orm::ConnectionTrait,
    subscriber_id: i64,
    email: &EmailAddress,
    newest_pending_ms: i64,
) -> Result<(), DbErr> {
    let cfg = &state.config.signup;
    let now_ms = store::now_ms();
    let history =
        subscriptions::confirmation_history(tx, subscriber_id, store::now() - time::Duration::days(1))
            .await?;
    let wanted = match history.last_created_ms {
        None => true,
        Some(last) => {
            newest_pending_ms > last
                || now_ms - last >= i64::try_from(cfg.resend_after.as_millis()).unwrap_or(i64::MAX)
        }
    };
    if wanted && history.queued == 0 && history.recent < cfg.confirmations_per_day {
        let payload = Payload::Confirmation;
        outbox::enqueue(
            tx,
            NewOutboxMessage {
                kind: payload.kind(),
                subscriber_id: Some(subscriber_id),
                recipient: email.to_string(),
                payload: serde_json::to_value(&payload).expect("payload serializes"),
                dedupe_key: Some(format!("confirm:{subscriber_id}:{}", history.last_id)),
            },
        )
        .await?;
    }
    Ok(())
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfirmOutcome {
    /// These lists are now confirmed.
    Confirmed(Vec<String>),
    /// The link was used before: its work is done.
    AlreadyUsed,
    /// Nothing the link covers is pending any more (the person left since, or was erased).
    NothingPending,
}

/// Confirms what the token covers: the person's subscriptions that were pending when the
/// link was issued. Spends the token (TK-7).
pub async fn confirm(
    state: &AppState,
    claims: &Claims,
    origin: RequestOrigin,
) -> Result<ConfirmOutcome, DbErr> {
    let issued_ms: i64 = claims
        .aux
        .as_deref()
        .and_then(|a| a.parse().ok())
        .unwrap_or(claims.iat * 1000);
    let Ok(uuid) = uuid::Uuid::parse_str(&claims.sub) else {
        return Ok(ConfirmOutcome::NothingPending);
    };
    let policy = policies::in_force(&state.db, store::now())
        .await?
        .map(|p| p.version);
    let tx = begin_write(&state.db).await?;
    if !spent_tokens::spend(&tx, &claims.jti).await? {
        return Ok(ConfirmOutcome::AlreadyUsed);
    }
    let Some(subscriber) = subscriptions::subscriber_by_uuid(&tx, uuid).await? else {
        tx.commit().await?;
        return Ok(ConfirmOutcome::NothingPending);
    };
    let covered: Vec<_> = subscriptions::of_subscriber(&tx, subscriber.id)
        .await?
        .into_iter()
        .filter(|s| s.status == "pending" && s.pending_since_ms.is_some_and(|p| p <= issued_ms))
        .collect();
    if covered.is_empty() {
        tx.commit().await?;
        return Ok(ConfirmOutcome::NothingPending);
    }
    subscriptions::confirm(&tx, covered.iter().map(|s| s.id).collect()).await?;
    for s in &covered {
        subscriptions::record_consent(
            &tx,
            NewConsentEvent {
                subscriber_id: subscriber.id,
                list_id: Some(s.list_id),
                kind: "confirm",
                source: origin.source.clone(),
                ip: origin.ip.clone(),
                user_agent: origin.user_agent.clone(),
                policy_version: policy.clone(),
                consent_text: None,
                detail: Some(serde_json::json!({ "link_issued_at_ms": issued_ms })),
                occurred_at: None,
            },
        )
        .await?;
    }
    // A fresh, confirmed opt-in lifts the suppression an erasure or a full opt-out left
    // behind (GD-4, CS-11). Bounces and complaints stay.
    if let Ok(email) = EmailAddress::parse(&subscriber.email) {
        let hash = state.address_hasher.hash(&email);
        suppressions::lift(
            &tx,
            &hash,
            &[SuppressionReason::Erased, SuppressionReason::Unsubscribed],
        )
        .await?;
    }
    let names = crate::store::lists::by_ids(&tx, covered.iter().map(|s| s.list_id).collect())
        .await?
        .into_iter()
        .map(|l| l.name)
        .collect();
    tx.commit().await?;
    Ok(ConfirmOutcome::Confirmed(names))
}
