//! Double opt-in: a signup records consent evidence and makes subscriptions pending; only a
//! confirmation email goes out (OI-1); the confirmation link, when POSTed, confirms what was
//! pending when the link was issued (OI-10, OI-11).
//!
//! A signup does the same work whatever state the address is in, and its answer never depends
//! on it (OI-9). Concurrent identical signups end as one subscription per list and at most one
//! confirmation: unique constraints and upserts decide, not application locks.

use super::Error;
use std::sync::Arc;

use crate::config::SignupConfig;
use crate::delivery::{Payload, Wakeups};
use crate::domain::{AddressHash, AddressHasher, DisplayName, EmailAddress};
use crate::store::batch::{Batcher, Grouping};
use crate::store::entities::consent_event::ConsentKind;
use crate::store::entities::list;
use crate::store::entities::subscription::SubscriptionStatus;
use crate::store::subscriptions::{self, NewConsentEvent};
use crate::store::suppressions::{self, SuppressionReason};
use crate::store::{self, Db, Tx, begin_write, policies, signups, spent_tokens};
use crate::tokens::ConfirmClaims;

/// The consent statement shown next to the checkbox, recorded with every signup (OI-3).
pub const CONSENT_TEXT: &str = "I want to receive the newsletters I selected by email. I have read the \
privacy policy and know that I can unsubscribe at any time with one click.";

/// The statement while no policy is in force: there is none to have read, and the evidence
/// records no policy version.
pub const CONSENT_TEXT_WITHOUT_POLICY: &str = "I want to receive the newsletters I selected by email \
and know that I can unsubscribe at any time with one click.";

/// The consent statement to show and record, depending on whether a policy is in force.
pub fn consent_text(policy_in_force: bool) -> &'static str {
    if policy_in_force {
        CONSENT_TEXT
    } else {
        CONSENT_TEXT_WITHOUT_POLICY
    }
}

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

/// Signups are written in batches: each request hands its signup in and waits for the
/// batch's commit (see [`Batcher`]). Under load one transaction with a few multi-row statements
/// carries a hundred signups instead of a hundred transactions of ten statements each; alone,
/// a request is a batch of one and waits for nothing. Every request does the same work either
/// way (OI-9).
pub struct SignupWriter {
    batches: Batcher<Signup, Result<(), Error>>,
}

/// What the writer needs; it holds no application state, so it stops when the state is dropped.
struct WriterContext {
    db: Db,
    hasher: AddressHasher,
    cfg: SignupConfig,
}

/// Signups per transaction at most.
const MAX_BATCH: usize = 128;

impl SignupWriter {
    /// Starts the writers: one on SQLite (it has one writer anyway), a few on PostgreSQL.
    pub fn start(db: Db, hasher: AddressHasher, cfg: SignupConfig) -> Self {
        let writers = if store::is_postgres(&db) { 8 } else { 1 };
        let ctx = Arc::new(WriterContext { db, hasher, cfg });
        let grouping = Grouping::up_to(MAX_BATCH).workers(writers);
        let batches = Batcher::start(grouping, move |signups: Vec<Signup>| {
            let ctx = ctx.clone();
            async move { write_and_answer(&ctx, signups).await }
        });
        SignupWriter { batches }
    }

    /// Records the signup. Answers nothing about the address's state.
    pub async fn sign_up(&self, signup: Signup) -> Result<(), Error> {
        self.batches
            .call(signup)
            .await
            .unwrap_or_else(|| Err(store::Error::Custom("the signup writer has stopped".into()).into()))
    }
}

/// Writes a batch; one answer per signup.
async fn write_and_answer(ctx: &WriterContext, signups: Vec<Signup>) -> Vec<Result<(), Error>> {
    let all: Vec<&Signup> = signups.iter().collect();
    match write_batch(ctx, &all).await {
        Ok(()) => signups.iter().map(|_| Ok(())).collect(),
        // The database cannot be used just now: every signup gets that answer (a 503), at once.
        Err(Error::Store(e)) if store::is_unavailable(&e) => {
            signups.iter().map(|_| Err(Error::Store(e.clone()))).collect()
        }
        // One bad signup must not fail the others: write each alone.
        Err(e) if signups.len() > 1 => {
            tracing::warn!(error = %e, signups = signups.len(), "a signup batch failed; writing them one by one");
            let mut results = Vec::with_capacity(signups.len());
            for s in &signups {
                results.push(write_batch(ctx, &[s]).await);
            }
            results
        }
        Err(e) => vec![Err(e)],
    }
}

/// Writes signups in one transaction. An address may come more than once in a batch (1,000
/// identical requests at once): the n-th occurrences are written in the n-th round, so each
/// multi-row statement touches a person once, and each round sees what the one before wrote.
async fn write_batch(ctx: &WriterContext, signups: &[&Signup]) -> Result<(), Error> {
    let payload = confirmation_payload();
    let rule = confirmation_rule(&ctx.cfg, &payload);
    let rounds = super::rounds_by_address(signups.iter().copied(), |s| s.email.normalized());
    let hashes: Vec<Vec<AddressHash>> = rounds
        .iter()
        .map(|round| round.iter().map(|s| ctx.hasher.hash(&s.email)).collect())
        .collect();
    let rows: Vec<signups::Round> = rounds
        .iter()
        .zip(&hashes)
        .map(|(round, hashes)| round_rows(round, hashes))
        .collect();
    Ok(signups::write(&ctx.db, &rows, &rule).await?)
}

fn confirmation_payload() -> serde_json::Value {
    serde_json::to_value(Payload::Confirmation).expect("payload serializes")
}

/// The confirmation rule as the settings make it (OI-6).
fn confirmation_rule<'a>(
    cfg: &SignupConfig,
    payload: &'a serde_json::Value,
) -> signups::ConfirmationRule<'a> {
    signups::ConfirmationRule {
        payload,
        consent_text: CONSENT_TEXT,
        consent_text_without_policy: CONSENT_TEXT_WITHOUT_POLICY,
        per_day: cfg.confirmations_per_day,
        resend_after_ms: i64::try_from(cfg.resend_after.as_millis()).unwrap_or(i64::MAX),
    }
}

/// A round's rows for [`signups::write`]. Lists deleted meanwhile are left out there.
fn round_rows<'a>(round: &[&'a Signup], hashes: &'a [AddressHash]) -> signups::Round<'a> {
    let mut rows = signups::Round::default();
    for (s, hash) in round.iter().zip(hashes) {
        let email_key = s.email.normalized();
        for list in distinct_lists(s) {
            rows.choices.push(signups::SignupChoice {
                email_key: email_key.clone(),
                list_id: list.id,
                detail: consent_detail(list).to_string(),
            });
        }
        rows.people.push(signups::SignupPerson {
            uuid: subscriptions::new_subscriber_uuid(),
            email: s.email.as_str(),
            email_key,
            name: s.name.as_ref().map(DisplayName::as_str),
            hmac: hash.as_str(),
            source: &s.origin.source,
            ip: s.origin.ip.as_deref(),
            user_agent: s.origin.user_agent.as_deref(),
        });
    }
    rows
}

/// The detail of a signup's consent event for one list.
fn consent_detail(list: &list::Model) -> serde_json::Value {
    serde_json::json!({ "age_confirmed": true, "list": list.slug })
}

/// The lists of a signup, each once (a form may name a list twice).
fn distinct_lists(signup: &Signup) -> impl Iterator<Item = &list::Model> {
    let mut seen = Vec::with_capacity(signup.lists.len());
    signup.lists.iter().filter(move |l| {
        let new = !seen.contains(&l.id);
        seen.push(l.id);
        new
    })
}

/// Queues a confirmation for one person with something pending since `newest_pending_ms`, if
/// one is due (the same rule as a signup's).
pub async fn queue_confirmation(
    cfg: &SignupConfig,
    tx: &Tx,
    subscriber_id: i64,
    email: &EmailAddress,
    newest_pending_ms: i64,
) -> Result<(), Error> {
    let payload = confirmation_payload();
    let rule = confirmation_rule(cfg, &payload);
    Ok(signups::queue_confirmation(tx, subscriber_id, email.as_str(), newest_pending_ms, &rule).await?)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfirmOutcome {
    /// These lists of this address are now confirmed, and the name given at the signup is now
    /// the person's.
    Confirmed {
        email: String,
        lists: Vec<String>,
        new_name: Option<String>,
    },
    /// The link was used before: its work is done.
    AlreadyUsed,
    /// Nothing the link covers is pending any more (the person left since, or was erased).
    NothingPending,
}

/// What a confirmation link stands for now, read without changing anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfirmLinkState {
    /// These lists wait for this link.
    Pending { email: String, lists: Vec<String> },
    /// Its work is done, by this link before or by a newer one: these lists are confirmed.
    AlreadyConfirmed { email: String, lists: Vec<String> },
    /// Nothing it covers is pending or confirmed (the person left, or was erased).
    Nothing,
}

/// Signups and their confirmation.
pub struct Signups {
    pub db: Db,
    pub address_hasher: AddressHasher,
    pub writer: SignupWriter,
    pub wakeups: Arc<Wakeups>,
}

impl Signups {
    pub fn new(db: Db, address_hasher: AddressHasher, cfg: SignupConfig, wakeups: Arc<Wakeups>) -> Self {
        let writer = SignupWriter::start(db.clone(), address_hasher.clone(), cfg);
        Signups {
            db,
            address_hasher,
            writer,
            wakeups,
        }
    }

    /// Records the signup and queues a confirmation if one is due. Answers nothing about the
    /// address's state (OI-9).
    pub async fn sign_up(&self, signup: Signup) -> Result<(), Error> {
        self.writer.sign_up(signup).await?;
        self.wakeups.outbox.notify_one();
        metrics::counter!("letterhead_signups_total").increment(1);
        Ok(())
    }

    /// What the link stands for now: pending lists it would confirm, or the lists already
    /// confirmed when its work is done. Changes nothing (a GET may call it).
    pub async fn link_state(&self, claims: &ConfirmClaims) -> Result<ConfirmLinkState, Error> {
        let Some(subscriber) = subscriptions::subscriber_by_uuid(&self.db, claims.subscriber).await? else {
            return Ok(ConfirmLinkState::Nothing);
        };
        let subs = subscriptions::of_subscriber(&self.db, subscriber.id).await?;
        let spent = spent_tokens::is_spent(&self.db, &claims.jti).await?;
        let names = |ids: Vec<i64>| async move {
            let lists = crate::store::lists::by_ids(&self.db, ids).await?;
            Ok::<_, Error>(lists.into_iter().map(|l| l.name).collect::<Vec<_>>())
        };
        let pending: Vec<i64> = subs
            .iter()
            .filter(|s| {
                s.status == SubscriptionStatus::Pending
                    && s.pending_since_ms.is_some_and(|p| p <= claims.issued_ms)
            })
            .map(|s| s.list_id)
            .collect();
        if !spent && !pending.is_empty() {
            return Ok(ConfirmLinkState::Pending {
                email: subscriber.email,
                lists: names(pending).await?,
            });
        }
        let confirmed: Vec<i64> = subs
            .iter()
            .filter(|s| s.status == SubscriptionStatus::Confirmed)
            .map(|s| s.list_id)
            .collect();
        if confirmed.is_empty() {
            return Ok(ConfirmLinkState::Nothing);
        }
        Ok(ConfirmLinkState::AlreadyConfirmed {
            email: subscriber.email,
            lists: names(confirmed).await?,
        })
    }

    /// Confirms what the token covers: the person's subscriptions that were pending when the
    /// link was issued. Spends the token (TK-7).
    pub async fn confirm(
        &self,
        claims: &ConfirmClaims,
        origin: RequestOrigin,
    ) -> Result<ConfirmOutcome, Error> {
        let issued_ms = claims.issued_ms;
        let policy = policies::in_force(&self.db, store::now())
            .await?
            .map(|p| p.version);
        let tx = begin_write(&self.db).await?;
        if !spent_tokens::spend(&tx, &claims.jti).await? {
            return Ok(ConfirmOutcome::AlreadyUsed);
        }
        let Some(subscriber) = subscriptions::subscriber_by_uuid(&tx, claims.subscriber).await? else {
            tx.commit().await?;
            return Ok(ConfirmOutcome::NothingPending);
        };
        let covered: Vec<_> = subscriptions::of_subscriber(&tx, subscriber.id)
            .await?
            .into_iter()
            .filter(|s| {
                s.status == SubscriptionStatus::Pending && s.pending_since_ms.is_some_and(|p| p <= issued_ms)
            })
            .collect();
        // A name given at a later signup, if it was pending when the link was issued.
        let new_name = subscriber
            .pending_name
            .clone()
            .filter(|_| subscriber.pending_name_since_ms.is_some_and(|p| p <= issued_ms));
        if covered.is_empty() && new_name.is_none() {
            tx.commit().await?;
            return Ok(ConfirmOutcome::NothingPending);
        }
        if let Some(name) = &new_name {
            subscriptions::set_name(&tx, subscriber.id, Some(name)).await?;
        }
        subscriptions::confirm(&tx, covered.iter().map(|s| s.id).collect()).await?;
        for s in &covered {
            subscriptions::record_consent(
                &tx,
                NewConsentEvent {
                    subscriber_id: subscriber.id,
                    list_id: Some(s.list_id),
                    kind: ConsentKind::Confirm,
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
        if !covered.is_empty()
            && let Ok(email) = EmailAddress::parse(&subscriber.email)
        {
            let hash = self.address_hasher.hash(&email);
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
        metrics::counter!("letterhead_confirmations_total").increment(1);
        Ok(ConfirmOutcome::Confirmed {
            email: subscriber.email,
            lists: names,
            new_name,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signup(email: &str) -> Signup {
        Signup {
            email: EmailAddress::parse(email).unwrap(),
            name: None,
            lists: Vec::new(),
            origin: RequestOrigin::default(),
        }
    }

    #[test]
    fn an_address_comes_once_per_round_and_rounds_keep_arrival_order() {
        let all = [
            signup("a@example.org"),
            signup("b@example.org"),
            signup("A@example.org"),
            signup("a@example.org"),
        ];
        let refs: Vec<&Signup> = all.iter().collect();
        let rounds = super::super::rounds_by_address(refs.iter().copied(), |s| s.email.normalized());
        let emails: Vec<Vec<&str>> = rounds
            .iter()
            .map(|r| r.iter().map(|s| s.email.as_str()).collect())
            .collect();
        assert_eq!(
            emails,
            vec![
                vec!["a@example.org", "b@example.org"],
                vec!["A@example.org"],
                vec!["a@example.org"]
            ]
        );
    }
}
