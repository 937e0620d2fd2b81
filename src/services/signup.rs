//! Double opt-in: a signup records consent evidence and makes subscriptions pending; only a
//! confirmation email goes out (OI-1); the confirmation link, when POSTed, confirms what was
//! pending when the link was issued (OI-10, OI-11).
//!
//! A signup does the same work whatever state the address is in, and its answer never depends
//! on it (OI-9). Concurrent identical signups end as one subscription per list and at most one
//! confirmation: unique constraints and upserts decide, not application locks.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::config::SignupConfig;
use crate::delivery::{Payload, Wakeups};
use crate::domain::{AddressHash, AddressHasher, DisplayName, EmailAddress};
use crate::store::entities::consent_event::ConsentKind;
use crate::store::entities::list;
use crate::store::entities::subscription::SubscriptionStatus;
use crate::store::outbox::{self, NewOutboxMessage};
use crate::store::subscriptions::{self, ConfirmationHistory, NewConsentEvent};
use crate::store::suppressions::{self, SuppressionReason};
use crate::store::{self, Db, Tx, begin_write, lists, policies, signups, spent_tokens};
use crate::tokens::ConfirmClaims;

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

/// Signups are written in batches: each request hands its signup to a writer task and waits
/// for the batch's commit. Under load one transaction with a few multi-row statements carries
/// a hundred signups instead of a hundred transactions of ten statements each; alone, a
/// request is a batch of one and waits for nothing. Every request does the same work either
/// way (OI-9).
#[derive(Clone)]
pub struct SignupWriter {
    queue: mpsc::Sender<Queued>,
}

struct Queued {
    signup: Signup,
    done: oneshot::Sender<Result<(), store::Error>>,
}

/// What the writer needs; it holds no [`AppState`], so it stops when the state is dropped.
struct WriterContext {
    db: Db,
    hasher: AddressHasher,
    cfg: SignupConfig,
}

/// Signups per transaction at most.
const MAX_BATCH: usize = 128;

impl SignupWriter {
    /// Starts the writer tasks: one on SQLite (it has one writer anyway), a few on PostgreSQL.
    pub fn start(db: Db, hasher: AddressHasher, cfg: SignupConfig) -> Self {
        let writers = if store::is_postgres(&db) { 8 } else { 1 };
        let (queue, rx) = mpsc::channel(MAX_BATCH * writers * 4);
        let rx = Arc::new(tokio::sync::Mutex::new(rx));
        let ctx = Arc::new(WriterContext { db, hasher, cfg });
        for _ in 0..writers {
            tokio::spawn(run_writer(ctx.clone(), rx.clone()));
        }
        SignupWriter { queue }
    }

    /// Records the signup. Answers nothing about the address's state.
    pub async fn sign_up(&self, signup: Signup) -> Result<(), store::Error> {
        let (done, result) = oneshot::channel();
        let stopped = || store::Error::Custom("the signup writer has stopped".into());
        self.queue
            .send(Queued { signup, done })
            .await
            .map_err(|_| stopped())?;
        result.await.unwrap_or_else(|_| Err(stopped()))
    }
}

async fn run_writer(ctx: Arc<WriterContext>, rx: Arc<tokio::sync::Mutex<mpsc::Receiver<Queued>>>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    loop {
        // Whatever has queued up while the last batch was written, at least one.
        if rx.lock().await.recv_many(&mut batch, MAX_BATCH).await == 0 {
            return; // every sender is gone: the application has stopped
        }
        // Its own task, so that a panic loses only this batch's answers, not the writer.
        let ctx = ctx.clone();
        let queued = std::mem::take(&mut batch);
        if let Err(e) = tokio::spawn(async move { write_and_answer(&ctx, queued).await }).await {
            tracing::error!(error = %e, "a signup batch panicked");
        }
    }
}

async fn write_and_answer(ctx: &WriterContext, queued: Vec<Queued>) {
    let signups: Vec<&Signup> = queued.iter().map(|q| &q.signup).collect();
    match write_batch(ctx, &signups).await {
        Ok(()) => {
            for q in queued {
                let _ = q.done.send(Ok(()));
            }
        }
        // One bad signup must not fail the others: write each alone.
        Err(e) if queued.len() > 1 => {
            tracing::warn!(error = %e, signups = queued.len(), "a signup batch failed; writing them one by one");
            for q in queued {
                let result = write_batch(ctx, &[&q.signup]).await;
                let _ = q.done.send(result);
            }
        }
        Err(e) => {
            for q in queued {
                let _ = q.done.send(Err(store::Error::Custom(e.to_string())));
            }
        }
    }
}

/// Writes signups in one transaction. An address may come more than once in a batch (1,000
/// identical requests at once): the n-th occurrences are written in the n-th round, so each
/// multi-row statement touches a person once, and each round sees what the one before wrote.
async fn write_batch(ctx: &WriterContext, signups: &[&Signup]) -> Result<(), store::Error> {
    if store::is_postgres(&ctx.db) {
        return write_batch_postgres(ctx, signups).await;
    }
    let (now, now_ms) = store::now_and_ms();
    let tx = begin_write(&ctx.db).await?;
    let policy = policies::in_force(&tx, now).await?.map(|p| p.version);
    // The lists were checked against a cached copy: one deleted since is left out, the rest
    // are kept from being deleted until the batch commits.
    let mut list_ids: Vec<i64> = signups
        .iter()
        .flat_map(|s| s.lists.iter().map(|l| l.id))
        .collect();
    list_ids.sort_unstable();
    list_ids.dedup();
    let existing = lists::lock_existing(&tx, list_ids).await?;
    for round in rounds(signups) {
        write_round(ctx, &tx, &round, &existing, policy.as_deref(), now_ms).await?;
    }
    tx.commit().await
}

/// [`write_batch`] on PostgreSQL: a round is one statement (see [`store::signups`]), atomic on
/// its own; only a batch of several rounds needs a transaction around them.
async fn write_batch_postgres(ctx: &WriterContext, signups: &[&Signup]) -> Result<(), store::Error> {
    let payload = serde_json::to_string(&Payload::Confirmation).expect("payload serializes");
    let rule = signups::ConfirmationRule {
        payload: &payload,
        consent_text: CONSENT_TEXT,
        per_day: ctx.cfg.confirmations_per_day,
        resend_after_ms: i64::try_from(ctx.cfg.resend_after.as_millis()).unwrap_or(i64::MAX),
    };
    let rounds = rounds(signups);
    let hashes: Vec<Vec<AddressHash>> = rounds
        .iter()
        .map(|round| round.iter().map(|s| ctx.hasher.hash(&s.email)).collect())
        .collect();
    if let [round] = rounds.as_slice() {
        let (people, choices) = round_rows(round, &hashes[0]);
        return signups::write_round_postgres(&ctx.db, &people, &choices, &rule).await;
    }
    let tx = begin_write(&ctx.db).await?;
    for (round, hashes) in rounds.iter().zip(&hashes) {
        let (people, choices) = round_rows(round, hashes);
        signups::write_round_postgres(&tx, &people, &choices, &rule).await?;
    }
    tx.commit().await
}

/// A round's rows for [`signups::write_round_postgres`].
fn round_rows<'a>(
    round: &[&'a Signup],
    hashes: &'a [AddressHash],
) -> (Vec<signups::SignupPerson<'a>>, Vec<signups::SignupChoice>) {
    let mut people = Vec::with_capacity(round.len());
    let mut choices = Vec::with_capacity(round.len());
    for (s, hash) in round.iter().zip(hashes) {
        let email_key = s.email.normalized();
        // Lists deleted meanwhile are left out by the statement itself.
        for list in distinct_lists(s) {
            choices.push(signups::SignupChoice {
                email_key: email_key.clone(),
                list_id: list.id,
                detail: consent_detail(list).to_string(),
            });
        }
        people.push(signups::SignupPerson {
            uuid: uuid::Uuid::new_v4(),
            email: s.email.as_str(),
            email_key,
            name: s.name.as_ref().map(DisplayName::as_str),
            hmac: hash.as_str(),
            source: &s.origin.source,
            ip: s.origin.ip.as_deref(),
            user_agent: s.origin.user_agent.as_deref(),
        });
    }
    (people, choices)
}

/// The detail of a signup's consent event for one list.
fn consent_detail(list: &list::Model) -> serde_json::Value {
    serde_json::json!({ "age_confirmed": true, "list": list.slug })
}

/// Splits signups into rounds in which every address comes at most once.
fn rounds<'a>(signups: &[&'a Signup]) -> Vec<Vec<&'a Signup>> {
    let mut seen: HashMap<String, usize> = HashMap::with_capacity(signups.len());
    let mut rounds: Vec<Vec<&Signup>> = Vec::new();
    for signup in signups {
        let n = seen.entry(signup.email.normalized()).or_insert(0);
        if rounds.len() <= *n {
            rounds.push(Vec::new());
        }
        rounds[*n].push(signup);
        *n += 1;
    }
    rounds
}

async fn write_round(
    ctx: &WriterContext,
    tx: &Tx,
    round: &[&Signup],
    existing_lists: &HashSet<i64>,
    policy: Option<&str>,
    now_ms: i64,
) -> Result<(), store::Error> {
    // Rows in address order, so that concurrent batches on PostgreSQL lock in one order.
    let mut round = round.to_vec();
    round.sort_by_key(|s| s.email.normalized());
    let hashes: Vec<AddressHash> = round.iter().map(|s| ctx.hasher.hash(&s.email)).collect();
    let people: Vec<_> = round
        .iter()
        .zip(&hashes)
        .map(|(s, h)| (&s.email, h, s.name.as_ref()))
        .collect();
    let subscribers = subscriptions::upsert_subscribers(tx, &people).await?;
    let subscriber_of = |s: &Signup| {
        subscribers
            .get(&s.email.normalized())
            .copied()
            .ok_or_else(|| store::Error::RecordNotFound("upserted subscriber".into()))
    };

    let mut pairs = Vec::new();
    for s in &round {
        let id = subscriber_of(s)?.id;
        pairs.extend(chosen_lists(s, existing_lists).map(|l| (id, l.id)));
    }
    let requested = subscriptions::request_subscriptions(tx, &pairs, now_ms).await?;

    let mut events = Vec::with_capacity(pairs.len());
    // Per person: the newest moment a chosen list became pending. A confirmation created
    // before it does not cover it (its link is issued later, at send time, but may be out).
    let mut newest_pending: Vec<(i64, &EmailAddress, i64)> = Vec::new();
    for s in &round {
        let id = subscriber_of(s)?.id;
        let mut newest: Option<i64> = None;
        for list in chosen_lists(s, existing_lists) {
            if let Some(r) = requested.get(&(id, list.id))
                && r.status == SubscriptionStatus::Pending
            {
                newest = newest.max(Some(r.pending_since_ms.unwrap_or(now_ms)));
            }
            events.push(NewConsentEvent {
                subscriber_id: id,
                list_id: Some(list.id),
                kind: ConsentKind::Signup,
                source: s.origin.source.clone(),
                ip: s.origin.ip.clone(),
                user_agent: s.origin.user_agent.clone(),
                policy_version: policy.map(str::to_owned),
                consent_text: Some(CONSENT_TEXT.to_owned()),
                detail: Some(consent_detail(list)),
                occurred_at: None,
            });
        }
        if let Some(newest) = newest {
            newest_pending.push((id, &s.email, newest));
        }
    }
    subscriptions::record_consents(tx, events).await?;

    let ids: Vec<i64> = newest_pending.iter().map(|(id, _, _)| *id).collect();
    let since = store::now() - time::Duration::days(1);
    let histories = subscriptions::confirmation_histories(tx, &ids, since).await?;
    let confirmations = newest_pending
        .into_iter()
        .filter_map(|(id, email, newest)| {
            let history = histories.get(&id).copied().unwrap_or_default();
            confirmation_due(&ctx.cfg, &history, id, newest, now_ms)
                .map(|dedupe_key| confirmation_message(id, email, dedupe_key))
        })
        .collect();
    outbox::enqueue_many(tx, confirmations).await?;
    Ok(())
}

/// The lists of a signup that still exist, each once.
fn chosen_lists<'a>(signup: &'a Signup, existing: &'a HashSet<i64>) -> impl Iterator<Item = &'a list::Model> {
    distinct_lists(signup).filter(|l| existing.contains(&l.id))
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
/// one is due (see [`confirmation_due`]).
pub async fn queue_confirmation(
    cfg: &SignupConfig,
    tx: &Tx,
    subscriber_id: i64,
    email: &EmailAddress,
    newest_pending_ms: i64,
) -> Result<(), store::Error> {
    let since = store::now() - time::Duration::days(1);
    let history = subscriptions::confirmation_histories(tx, &[subscriber_id], since)
        .await?
        .remove(&subscriber_id)
        .unwrap_or_default();
    if let Some(dedupe_key) =
        confirmation_due(cfg, &history, subscriber_id, newest_pending_ms, store::now_ms())
    {
        outbox::enqueue(tx, confirmation_message(subscriber_id, email, dedupe_key)).await?;
    }
    Ok(())
}

/// Whether a confirmation is due, and its dedupe key: nothing is queued already (a queued one
/// renders at send time and covers every list pending by then), and either the last
/// confirmation does not cover what is pending or it is old enough to send again; at most N a
/// day go to one address (OI-6). The dedupe key chains on the newest confirmation, so
/// concurrent requests that saw the same history insert only one. PostgreSQL signups apply
/// the same rule in SQL (`store::signups::WRITE_ROUND`): a change here goes there too.
fn confirmation_due(
    cfg: &SignupConfig,
    history: &ConfirmationHistory,
    subscriber_id: i64,
    newest_pending_ms: i64,
    now_ms: i64,
) -> Option<String> {
    let wanted = match history.last_created_ms {
        None => true,
        Some(last) => {
            newest_pending_ms > last
                || now_ms - last >= i64::try_from(cfg.resend_after.as_millis()).unwrap_or(i64::MAX)
        }
    };
    (wanted && history.queued == 0 && history.recent < cfg.confirmations_per_day)
        .then(|| format!("confirm:{subscriber_id}:{}", history.last_id))
}

fn confirmation_message(subscriber_id: i64, email: &EmailAddress, dedupe_key: String) -> NewOutboxMessage {
    let payload = Payload::Confirmation;
    NewOutboxMessage {
        kind: payload.kind(),
        subscriber_id: Some(subscriber_id),
        recipient: email.to_string(),
        payload: serde_json::to_value(&payload).expect("payload serializes"),
        dedupe_key: Some(dedupe_key),
    }
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
    pub async fn sign_up(&self, signup: Signup) -> Result<(), store::Error> {
        self.writer.sign_up(signup).await?;
        self.wakeups.outbox.notify_one();
        Ok(())
    }

    /// Confirms what the token covers: the person's subscriptions that were pending when the
    /// link was issued. Spends the token (TK-7).
    pub async fn confirm(
        &self,
        claims: &ConfirmClaims,
        origin: RequestOrigin,
    ) -> Result<ConfirmOutcome, store::Error> {
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
        if let Ok(email) = EmailAddress::parse(&subscriber.email) {
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
        Ok(ConfirmOutcome::Confirmed(names))
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
        let rounds = rounds(&refs);
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
