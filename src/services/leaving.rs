//! Leaving and data rights: unsubscribe (one list, or all), the preference page's changes,
//! export (access, portability), change of address (rectification) and erasure.
//!
//! Every change takes effect in the database at once; the delivery worker re-checks before
//! each send, so nothing already queued reaches someone who left (CS-7). Erasure keeps only a
//! keyed hash of the address as a suppression (GD-3, GD-4).

use super::Error;
use std::sync::Arc;

use serde_json::json;

use crate::config::SenderIdentity;
use crate::delivery::{Payload, Wakeups};
use crate::domain::{AddressHasher, DisplayName, EmailAddress};
use crate::services::signup::{RequestOrigin, consent_text};
use crate::store::entities::consent_event::ConsentKind;
use crate::store::entities::subscriber;
use crate::store::entities::subscription::SubscriptionStatus;
use crate::store::outbox::NewOutboxMessage;
use crate::store::scrub::{self, Scrubber};
use crate::store::subscriptions::{self, NewConsentEvent};
use crate::store::suppressions::{self, SuppressionReason};
use crate::store::{self, Db, Tx, begin_write, lists, policies};

/// Unsubscribes, changes preferences, exports, corrects and erases.
pub struct Leaving {
    pub db: Db,
    pub address_hasher: AddressHasher,
    /// Named as the controller in exports.
    pub identity: SenderIdentity,
    pub wakeups: Arc<Wakeups>,
    /// Asked, after an erasure or a change of address, to wipe the old data from disk.
    pub scrubber: Arc<Scrubber>,
    /// Address-change confirmations one address may get per 24 h, whoever asks (as for
    /// signup confirmations, OI-6).
    pub address_changes_per_day: i64,
}

fn event(subscriber_id: i64, list_id: i64, kind: ConsentKind, origin: &RequestOrigin) -> NewConsentEvent {
    NewConsentEvent {
        list_id: Some(list_id),
        ip: origin.ip.clone(),
        user_agent: origin.user_agent.clone(),
        ..NewConsentEvent::new(subscriber_id, kind, origin.source.clone())
    }
}

/// Counts subscriptions ended, once committed, by the way the request came: the
/// List-Unsubscribe URI, the preference page, or an operator (CLI or API).
fn count_unsubscribes(origin: &RequestOrigin, left: u64) {
    let via = match origin.source.as_str() {
        "one-click" => "one_click",
        source if source.starts_with("operator") => "operator",
        _ => "page",
    };
    metrics::counter!("letterhead_unsubscribes_total", "via" => via).increment(left);
}

/// Leaves these subscriptions (those not left already); records one event per list.
async fn leave(tx: &Tx, subscriber_id: i64, list_ids: &[i64], origin: &RequestOrigin) -> Result<u64, Error> {
    let mut changed = 0;
    for &list_id in list_ids {
        if subscriptions::leave(tx, subscriber_id, list_id).await? {
            changed += 1;
            subscriptions::record_consent(
                tx,
                event(subscriber_id, list_id, ConsentKind::Unsubscribe, origin),
            )
            .await?;
        }
    }
    Ok(changed)
}

impl Leaving {
    /// One-click unsubscribe from one list (LU-3, LU-4). Idempotent (LU-7); a person already
    /// erased is simply not subscribed. Returns the list's name when it exists.
    pub async fn unsubscribe(
        &self,
        subscriber_uuid: uuid::Uuid,
        list_id: i64,
        origin: RequestOrigin,
    ) -> Result<Option<String>, Error> {
        let list_name = lists::by_id(&self.db, list_id).await?.map(|l| l.name);
        let tx = begin_write(&self.db).await?;
        let mut left = 0;
        if let Some(s) = subscriptions::subscriber_by_uuid(&tx, subscriber_uuid).await? {
            left = leave(&tx, s.id, &[list_id], &origin).await?;
        }
        tx.commit().await?;
        count_unsubscribes(&origin, left);
        Ok(list_name)
    }

    /// Leaves every list, and remembers the address as opted out even beyond retention (CS-11).
    pub async fn unsubscribe_all(
        &self,
        subscriber: &subscriber::Model,
        origin: RequestOrigin,
    ) -> Result<(), Error> {
        let tx = begin_write(&self.db).await?;
        let ids: Vec<i64> = subscriptions::of_subscriber(&tx, subscriber.id)
            .await?
            .into_iter()
            .map(|s| s.list_id)
            .collect();
        let left = leave(&tx, subscriber.id, &ids, &origin).await?;
        if let Ok(email) = EmailAddress::parse(&subscriber.email) {
            suppressions::add(
                &tx,
                &self.address_hasher.hash(&email),
                SuppressionReason::Unsubscribed,
            )
            .await?;
        }
        tx.commit().await?;
        count_unsubscribes(&origin, left);
        Ok(())
    }

    /// The preference form: keep the ticked lists, leave the others, and (re)join ticked lists.
    /// Joining here is a fresh opt-in by the mailbox's owner (the link came by email), recorded
    /// with the consent text (CS-11).
    pub async fn set_lists(
        &self,
        subscriber: &subscriber::Model,
        wanted: &[i64],
        name: Option<Option<DisplayName>>,
        origin: RequestOrigin,
    ) -> Result<(), Error> {
        let policy = policies::in_force(&self.db, store::now())
            .await?
            .map(|p| p.version);
        let tx = begin_write(&self.db).await?;
        let current = subscriptions::of_subscriber(&tx, subscriber.id).await?;
        let to_leave: Vec<i64> = current
            .iter()
            .filter(|s| s.status != SubscriptionStatus::Unsubscribed && !wanted.contains(&s.list_id))
            .map(|s| s.list_id)
            .collect();
        let left = leave(&tx, subscriber.id, &to_leave, &origin).await?;
        let mut joined = false;
        for &list_id in wanted {
            let existing = current.iter().find(|s| s.list_id == list_id);
            if existing.is_some_and(|s| s.status == SubscriptionStatus::Confirmed) {
                continue;
            }
            subscriptions::join_confirmed(&tx, subscriber.id, list_id, existing.map(|s| s.id)).await?;
            let mut e = event(subscriber.id, list_id, ConsentKind::Resubscribe, &origin);
            e.policy_version = policy.clone();
            e.consent_text = Some(consent_text(policy.is_some()).to_owned());
            subscriptions::record_consent(&tx, e).await?;
            joined = true;
        }
        if joined && let Ok(email) = EmailAddress::parse(&subscriber.email) {
            suppressions::lift(
                &tx,
                &self.address_hasher.hash(&email),
                &[SuppressionReason::Unsubscribed],
            )
            .await?;
        }
        if let Some(name) = name {
            subscriptions::set_name(&tx, subscriber.id, name.as_ref().map(DisplayName::as_str)).await?;
        }
        tx.commit().await?;
        count_unsubscribes(&origin, left);
        Ok(())
    }

    /// Erases the person at once (GD-3): subscriber, subscriptions, consent evidence, pending
    /// changes and every outbox row naming them go; only the keyed hash of the address stays, as a
    /// suppression (GD-4), so imports and API adds cannot bring it back. Then, off this request,
    /// the deleted rows are wiped from the database's files too.
    pub async fn erase(&self, subscriber: &subscriber::Model) -> Result<(), Error> {
        let tx = begin_write(&self.db).await?;
        if let Ok(email) = EmailAddress::parse(&subscriber.email) {
            suppressions::add(&tx, &self.address_hasher.hash(&email), SuppressionReason::Erased).await?;
        }
        subscriptions::delete_subscriber(&tx, subscriber).await?;
        scrub::note_deletion(&tx).await?;
        tx.commit().await?;
        self.scrubber.request();
        metrics::counter!("letterhead_erasures_total").increment(1);
        tracing::info!("a subscriber was erased on request");
        Ok(())
    }

    /// Queues an email with a link to the export (GD-1: only through the person's own mailbox).
    pub async fn request_export(&self, subscriber: &subscriber::Model) -> Result<(), Error> {
        let payload = Payload::ExportLink;
        store::outbox::enqueue(
            &self.db,
            NewOutboxMessage {
                kind: payload.kind(),
                subscriber_id: Some(subscriber.id),
                recipient: subscriber.email.clone(),
                payload: serde_json::to_value(&payload).expect("payload serializes"),
                dedupe_key: None,
            },
        )
        .await?;
        self.wakeups.outbox.notify_one();
        Ok(())
    }

    /// Everything held about the person, machine readable (GD-1, Art. 15 and 20).
    pub async fn export(&self, subscriber: &subscriber::Model) -> Result<serde_json::Value, Error> {
        let lists: std::collections::HashMap<i64, _> = lists::all(&self.db)
            .await?
            .into_iter()
            .map(|l| (l.id, l))
            .collect();
        let list_slug = |id: Option<i64>| id.and_then(|id| lists.get(&id)).map(|l| l.slug.clone());
        let records = subscriptions::records_of(&self.db, subscriber.id).await?;
        let (subs, events, messages, campaign_messages) = (
            &records.subscriptions,
            &records.consent_events,
            &records.messages,
            &records.campaign_messages,
        );
        Ok(json!({
            "exported_at": rfc3339(store::now()),
            "controller": {
                "name": self.identity.org_name.as_str(),
                "postal_address": self.identity.postal_address,
                "contact": self.identity.contact_email.as_str(),
            },
            "subscriber": {
                "email": subscriber.email,
                "name": subscriber.name,
                "created_at": rfc3339(subscriber.created_at),
                "updated_at": rfc3339(subscriber.updated_at),
            },
            "subscriptions": subs.iter().map(|s| json!({
                "list": list_slug(Some(s.list_id)),
                "list_name": lists.get(&s.list_id).map(|l| l.name.clone()),
                "status": s.status,
                "created_at": rfc3339(s.created_at),
                "confirmed_at": s.confirmed_at.map(rfc3339),
                "unsubscribed_at": s.unsubscribed_at.map(rfc3339),
            })).collect::<Vec<_>>(),
            "consent_events": events.iter().map(|e| json!({
                "kind": e.kind,
                "list": list_slug(e.list_id),
                "occurred_at": rfc3339(e.occurred_at),
                "source": e.source,
                "ip": e.ip,
                "user_agent": e.user_agent,
                "policy_version": e.policy_version,
                "consent_text": e.consent_text,
                "detail": e.detail.as_deref().and_then(|d| serde_json::from_str::<serde_json::Value>(d).ok()),
            })).collect::<Vec<_>>(),
            "messages": messages.iter().map(|m| json!({
                "kind": m.kind,
                "status": m.status,
                "queued_at": rfc3339(m.created_at),
                "sent_at": m.sent_at.map(rfc3339),
                "message_id": m.message_id,
            })).chain(campaign_messages.iter().map(|m| json!({
                "kind": "campaign",
                "subject": m.subject,
                "status": m.status,
                "sent_at": m.sent_at.map(rfc3339),
                "message_id": m.message_id,
            }))).collect::<Vec<_>>(),
        }))
    }

    /// Starts a change of address: nothing changes until the new address confirms (GD-2).
    /// Anyone with a preference link can type any address, so no confirmation goes to an
    /// address that opted out or is suppressed, and one address gets a few a day at most; the
    /// page answers the same either way.
    pub async fn request_address_change(
        &self,
        subscriber: &subscriber::Model,
        new_email: &EmailAddress,
    ) -> Result<(), Error> {
        let hash = self.address_hasher.hash(new_email);
        let tx = begin_write(&self.db).await?;
        if store::suppressions::reason(&tx, &hash).await?.is_some() {
            return Ok(());
        }
        let day_ago = store::now() - time::Duration::days(1);
        let recent = subscriptions::address_changes_to(&tx, new_email, day_ago).await?;
        if recent.count >= self.address_changes_per_day {
            return Ok(());
        }
        let change = uuid::Uuid::new_v4();
        subscriptions::insert_address_change(&tx, change, subscriber.id, new_email).await?;
        let payload = Payload::AddressChange { change };
        store::outbox::enqueue(
            &tx,
            NewOutboxMessage {
                kind: payload.kind(),
                subscriber_id: Some(subscriber.id),
                recipient: new_email.to_string(),
                payload: serde_json::to_value(&payload).expect("payload serializes"),
                // Chained on the newest change to this address: of concurrent requests that
                // saw the same count, one confirmation is queued.
                dedupe_key: Some(format!(
                    "address-change:{}:{}",
                    hash.as_str(),
                    recent.newest_id.unwrap_or(0)
                )),
            },
        )
        .await?;
        tx.commit().await?;
        self.wakeups.outbox.notify_one();
        Ok(())
    }

    pub async fn apply_address_change(
        &self,
        change: uuid::Uuid,
        origin: RequestOrigin,
    ) -> Result<AddressChangeOutcome, Error> {
        let tx = begin_write(&self.db).await?;
        let Some(row) = subscriptions::address_change_by_uuid(&tx, change).await? else {
            return Ok(AddressChangeOutcome::Gone);
        };
        let Ok(new_email) = EmailAddress::parse(&row.new_email) else {
            return Ok(AddressChangeOutcome::Gone);
        };
        if subscriptions::subscriber_by_email(&tx, &new_email)
            .await?
            .is_some_and(|s| s.id != row.subscriber_id)
        {
            return Ok(AddressChangeOutcome::Taken);
        }
        let hash = self.address_hasher.hash(&new_email);
        subscriptions::apply_address_change(&tx, &row, &new_email, &hash).await?;
        scrub::note_deletion(&tx).await?;
        subscriptions::record_consent(
            &tx,
            NewConsentEvent {
                ip: origin.ip,
                user_agent: origin.user_agent,
                ..NewConsentEvent::new(row.subscriber_id, ConsentKind::AddressChange, origin.source)
            },
        )
        .await?;
        tx.commit().await?;
        // The old address is no longer theirs: wipe it from disk as an erasure would.
        self.scrubber.request();
        Ok(AddressChangeOutcome::Changed)
    }

    /// An opt-out received by other means (mail, phone: "or by contacting us"), recorded by an
    /// operator. Without lists it leaves everything and suppresses the address, known or not, so
    /// nothing can bring it back; the caller learns nothing about whether the address was known.
    pub async fn unsubscribe_by_address(
        &self,
        email: &EmailAddress,
        list_ids: Option<&[i64]>,
        source: &str,
    ) -> Result<(), Error> {
        let origin = RequestOrigin {
            ip: None,
            user_agent: None,
            source: source.to_owned(),
        };
        let tx = begin_write(&self.db).await?;
        let subscriber = subscriptions::subscriber_by_email(&tx, email).await?;
        let mut left = 0;
        match list_ids {
            Some(ids) => {
                if let Some(s) = &subscriber {
                    left = leave(&tx, s.id, ids, &origin).await?;
                }
            }
            None => {
                if let Some(s) = &subscriber {
                    let ids: Vec<i64> = subscriptions::of_subscriber(&tx, s.id)
                        .await?
                        .into_iter()
                        .map(|x| x.list_id)
                        .collect();
                    left = leave(&tx, s.id, &ids, &origin).await?;
                }
                suppressions::add(
                    &tx,
                    &self.address_hasher.hash(email),
                    SuppressionReason::Unsubscribed,
                )
                .await?;
            }
        }
        tx.commit().await?;
        count_unsubscribes(&origin, left);
        tracing::info!(source, "an opt-out was recorded by an operator");
        Ok(())
    }

    /// Records agreement to a material policy version (from the notice's link).
    pub async fn agree(
        &self,
        subscriber: &subscriber::Model,
        version: &str,
        origin: RequestOrigin,
    ) -> Result<(), Error> {
        Ok(subscriptions::record_consent(
            &self.db,
            NewConsentEvent {
                ip: origin.ip,
                user_agent: origin.user_agent,
                policy_version: Some(version.to_owned()),
                ..NewConsentEvent::new(subscriber.id, ConsentKind::Agree, origin.source)
            },
        )
        .await?)
    }
}

fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddressChangeOutcome {
    Changed,
    /// The new address already belongs to another subscriber.
    Taken,
    /// Already applied, or the person is gone.
    Gone,
}
