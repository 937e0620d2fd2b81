//! Adding people by API or import. Consent is evidence, not a flag: a subscriber is added as
//! confirmed only with when and where consent was given (CS-3); otherwise they are made pending
//! and sent a confirmation, or refused. An address that was suppressed, erased or opted out is
//! never brought back this way (CS-10, CS-11): only a fresh confirmed opt-in can do that.

use super::Error;
use std::sync::Arc;

use crate::config::SignupConfig;
use crate::delivery::Wakeups;
use crate::domain::{AddressHasher, DisplayName, EmailAddress};
use crate::services::signup::queue_confirmation;
use crate::store::entities::consent_event::ConsentKind;
use crate::store::entities::list;
use crate::store::entities::subscription::SubscriptionStatus;
use crate::store::subscriptions::{self, NewConsentEvent};
use crate::store::{self, Db, Tx, begin_write, suppressions};

/// Adds people by API or import.
pub struct Subscribers {
    pub db: Db,
    pub address_hasher: AddressHasher,
    pub signup: SignupConfig,
    pub wakeups: Arc<Wakeups>,
}

/// A person to add, with the evidence of their consent.
pub struct PersonToAdd {
    pub email: EmailAddress,
    pub name: Option<DisplayName>,
    pub consent: Consent,
}

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

impl Subscribers {
    /// Adds one person to `lists` through the API.
    pub async fn add_one(&self, person: &PersonToAdd, lists: &[list::Model]) -> Result<AddOutcome, Error> {
        let tx = begin_write(&self.db).await?;
        let outcome = self.add(&tx, person, lists, ConsentKind::ApiAdd).await?;
        tx.commit().await?;
        self.wakeups.outbox.notify_one();
        Ok(outcome)
    }

    /// Imports people into one list in one transaction; one outcome per person, in order. The
    /// same rules as [`Subscribers::add_one`], with a few set-based statements for the whole
    /// group instead of five per person. An address given more than once is handled in rounds,
    /// the n-th time in the n-th, so each statement touches a person once and each round sees
    /// what the one before wrote.
    pub async fn import(&self, people: &[PersonToAdd], list: &list::Model) -> Result<Vec<AddOutcome>, Error> {
        // Each chunk lets waiting signups and API writes go first (SQLite).
        let tx = store::begin_bulk_write(&self.db).await?;
        let mut outcomes: Vec<Option<AddOutcome>> = vec![None; people.len()];
        let rounds = super::rounds_by_address(0..people.len(), |&i| people[i].email.normalized());
        for round in rounds {
            let group: Vec<&PersonToAdd> = round.iter().map(|&i| &people[i]).collect();
            for (i, outcome) in round.into_iter().zip(self.import_round(&tx, &group, list).await?) {
                outcomes[i] = Some(outcome);
            }
        }
        tx.commit().await?;
        self.wakeups.outbox.notify_one();
        Ok(outcomes
            .into_iter()
            .map(|o| o.expect("every person is in a round"))
            .collect())
    }

    /// One round of an import: distinct addresses, one list.
    async fn import_round(
        &self,
        tx: &Tx,
        people: &[&PersonToAdd],
        list: &list::Model,
    ) -> Result<Vec<AddOutcome>, Error> {
        let hashes: Vec<_> = people
            .iter()
            .map(|p| self.address_hasher.hash(&p.email))
            .collect();
        let suppressed = suppressions::reasons(tx, &hashes).await?;
        let keys: Vec<String> = people.iter().map(|p| p.email.normalized()).collect();
        let mut rows = Vec::with_capacity(people.len());
        for ((person, hash), key) in people.iter().zip(&hashes).zip(&keys) {
            if !suppressed.contains_key(hash.as_str()) {
                rows.push(subscriptions::SubscriberRow {
                    email: person.email.as_str(),
                    email_key: key,
                    hmac: hash.as_str(),
                    name: person.name.as_ref().map(DisplayName::as_str),
                });
            }
        }
        let subscribers = subscriptions::upsert_subscribers(tx, &rows).await?;
        let ids: Vec<i64> = subscribers.values().map(|s| s.id).collect();
        let statuses = subscriptions::statuses_on(tx, &ids, list.id).await?;
        let now_ms = store::now_ms();
        let (mut outcomes, mut adds, mut events, mut confirmations) = (
            Vec::with_capacity(people.len()),
            Vec::new(),
            Vec::new(),
            Vec::new(),
        );
        for ((person, hash), key) in people.iter().zip(&hashes).zip(&keys) {
            if suppressed.contains_key(hash.as_str()) {
                outcomes.push(AddOutcome::Suppressed);
                continue;
            }
            let subscriber = subscribers
                .get(key)
                .ok_or_else(|| store::Error::RecordNotFound("upserted subscriber".into()))?;
            let ask = matches!(person.consent, Consent::AskByEmail);
            match standing(statuses.get(&subscriber.id).copied(), ask) {
                Standing::OptedOut => {
                    outcomes.push(AddOutcome::OptedOut);
                    continue;
                }
                Standing::AlreadyThere => {
                    outcomes.push(AddOutcome::AlreadyThere);
                    continue;
                }
                Standing::ToAdd => {}
            }
            adds.push((subscriber.id, list.id, !ask));
            events.push(consent_event(
                &person.consent,
                subscriber.id,
                list.id,
                ConsentKind::Import,
                now_ms,
            ));
            if ask {
                confirmations.push((subscriber.id, &person.email));
            }
            outcomes.push(AddOutcome::Added);
        }
        subscriptions::add_subscriptions(tx, &adds, now_ms).await?;
        subscriptions::record_consents(tx, events).await?;
        for (subscriber_id, email) in confirmations {
            queue_confirmation(&self.signup, tx, subscriber_id, email, now_ms).await?;
        }
        Ok(outcomes)
    }

    /// Adds one person inside the caller's transaction. `channel` names the route in the consent
    /// ledger (`api_add` or `import`).
    async fn add(
        &self,
        tx: &Tx,
        person: &PersonToAdd,
        lists: &[list::Model],
        channel: ConsentKind,
    ) -> Result<AddOutcome, Error> {
        let PersonToAdd { email, name, consent } = person;
        let name = name.as_ref();
        let hash = self.address_hasher.hash(email);
        if suppressions::reason(tx, &hash).await?.is_some() {
            return Ok(AddOutcome::Suppressed);
        }
        let subscriber = subscriptions::upsert_subscriber(tx, email, &hash, name).await?;
        let existing = subscriptions::of_subscriber(tx, subscriber.id).await?;
        let now_ms = store::now_ms();
        let (mut added, mut opted_out) = (false, false);
        for list in lists {
            let status = existing.iter().find(|s| s.list_id == list.id).map(|s| s.status);
            match standing(status, matches!(consent, Consent::AskByEmail)) {
                Standing::OptedOut => {
                    opted_out = true;
                    continue;
                }
                Standing::AlreadyThere => continue,
                Standing::ToAdd => {}
            }
            let event = consent_event(consent, subscriber.id, list.id, channel, now_ms);
            let confirmed = matches!(consent, Consent::Evidence { .. });
            subscriptions::add_subscription(tx, subscriber.id, list.id, confirmed, now_ms).await?;
            subscriptions::record_consent(tx, event).await?;
            added = true;
        }
        if added && matches!(consent, Consent::AskByEmail) {
            queue_confirmation(&self.signup, tx, subscriber.id, email, now_ms).await?;
        }
        Ok(match (added, opted_out) {
            (true, _) => AddOutcome::Added,
            (false, true) => AddOutcome::OptedOut,
            (false, false) => AddOutcome::AlreadyThere,
        })
    }
}

/// Where a person stands on a list they are to be added to.
enum Standing {
    /// They left it: only a fresh opt-in of their own brings them back (CS-11).
    OptedOut,
    /// Confirmed, or pending and only to be asked again.
    AlreadyThere,
    ToAdd,
}

/// The one rule for adding by API and by import, given the subscription's status on the list
/// (if any) and whether the person is to be asked by email rather than added with evidence.
fn standing(status: Option<SubscriptionStatus>, ask: bool) -> Standing {
    match status {
        Some(SubscriptionStatus::Unsubscribed) => Standing::OptedOut,
        Some(SubscriptionStatus::Confirmed) => Standing::AlreadyThere,
        Some(SubscriptionStatus::Pending) if ask => Standing::AlreadyThere,
        _ => Standing::ToAdd,
    }
}

/// The consent evidence of adding `subscriber_id` to `list_id` by `channel`: the consent given
/// elsewhere (when, and where), or the request for a confirmation.
fn consent_event(
    consent: &Consent,
    subscriber_id: i64,
    list_id: i64,
    channel: ConsentKind,
    now_ms: i64,
) -> NewConsentEvent {
    match consent {
        Consent::Evidence { consented_at, source } => NewConsentEvent {
            list_id: Some(list_id),
            occurred_at: Some(*consented_at),
            detail: Some(serde_json::json!({ "recorded_at_ms": now_ms })),
            ..NewConsentEvent::new(subscriber_id, channel, source.clone())
        },
        Consent::AskByEmail => NewConsentEvent {
            list_id: Some(list_id),
            ..NewConsentEvent::new(
                subscriber_id,
                channel,
                format!("{channel}:confirmation-requested"),
            )
        },
    }
}
