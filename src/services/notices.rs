//! Policy versions and breach notices: the transactional notices the privacy policy promises.
//!
//! Publishing a policy version records it and, in the same transaction, queues one notice per
//! person in one set-based statement: everyone who ever confirmed a subscription (people who
//! left included: the notice is transactional), never erased people (they are gone) and never
//! addresses suppressed for bounces, complaints or by hand. A dedupe key per version and person
//! makes a second publish, a crash or a second instance unable to queue a second notice.

use super::Error;
use std::sync::Arc;

use sha2::{Digest, Sha256};
use url::Url;

use crate::delivery::{Payload, Wakeups};
use crate::domain::{EmailAddress, FieldError, HeaderText};
use crate::store::entities::{breach_notice, policy_version};
use crate::store::policies::{self, NewPolicyVersion, NoticeAudience};
use crate::store::{Db, begin_write};

/// Publishes policy versions and breach notices.
pub struct Notices {
    pub db: Db,
    pub wakeups: Arc<Wakeups>,
}

#[derive(Debug, Clone)]
pub struct NewPolicy {
    pub version: String,
    pub effective_at: time::OffsetDateTime,
    pub summary: String,
    pub url: Url,
    pub material: bool,
    /// The effective date may be in the past: the version is recorded as already applying.
    pub already_in_effect: bool,
}

impl NewPolicy {
    fn content_hash(&self) -> String {
        let mut h = Sha256::new();
        for part in [
            self.version.as_str(),
            &self.effective_at.unix_timestamp().to_string(),
            &self.summary,
            self.url.as_str(),
            if self.material { "material" } else { "" },
        ] {
            h.update(part.as_bytes());
            h.update([0]);
        }
        hex::encode(h.finalize())
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum PublishOutcome {
    /// Published now; this many notices queued.
    Published {
        policy: policy_version::Model,
        queued: u64,
    },
    /// The same version with the same content was published before: nothing new.
    AlreadyPublished { policy: policy_version::Model },
    /// The same version exists with other content.
    Conflict,
}

/// How far in the past "now" may be when it reaches the service (clocks and typing differ).
const PAST_EFFECTIVE_GRACE: time::Duration = time::Duration::minutes(10);

impl Notices {
    pub async fn publish_policy(&self, new: NewPolicy) -> Result<PublishOutcome, Error> {
        let hash = new.content_hash();
        let tx = begin_write(&self.db).await?;
        if let Some(existing) = policies::by_version(&tx, &new.version).await? {
            return Ok(if existing.content_hash == hash {
                PublishOutcome::AlreadyPublished { policy: existing }
            } else {
                PublishOutcome::Conflict
            });
        }
        // A new version is announced before it applies; a past date is a slip unless said so.
        // (A repeat of a published version is answered above, whatever its date.)
        if new.effective_at < crate::store::now() - PAST_EFFECTIVE_GRACE && !new.already_in_effect {
            return Err(Error::Invalid(vec![FieldError::new(
                "effective_at",
                "is in the past: a new version is announced before it takes effect. To record \
                 a version that already applies, set already_in_effect (--already-in-effect)",
            )]));
        }
        let first = policies::all(&tx).await?.is_empty();
        let policy = policies::insert_policy(
            &tx,
            NewPolicyVersion {
                version: &new.version,
                effective_at: new.effective_at,
                summary: &new.summary,
                url: new.url.as_str(),
                material: new.material,
                content_hash: hash,
            },
        )
        .await?;
        let payload = serde_json::to_value(Payload::PolicyNotice {
            policy_id: policy.id,
            first,
        })
        .expect("serializes");
        let prefix = format!("policy:{}:", policy.id);
        let queued =
            policies::queue_notices(&tx, "policy_notice", &payload, &prefix, NoticeAudience::All).await?;
        tx.commit().await?;
        self.wakeups.outbox.notify_one();
        tracing::info!(version = %policy.version, queued, "policy version published");
        Ok(PublishOutcome::Published { policy, queued })
    }

    /// Publishing races with itself across instances: a unique violation means another publish of
    /// the same version won; read it back and answer as for a repeat.
    pub async fn publish_policy_idempotent(&self, new: NewPolicy) -> Result<PublishOutcome, Error> {
        match self.publish_policy(new.clone()).await {
            Err(e) if e.is_unique_violation() => self.publish_policy(new).await,
            other => other,
        }
    }

    /// Records a breach notice, shows it on /notices, and queues one email per affected person
    /// (same exclusions as policy notices; erased people get nothing). Returns the notice and how
    /// many emails were queued.
    pub async fn publish_breach(
        &self,
        subject: HeaderText,
        body: String,
        affected: Affected,
    ) -> Result<(breach_notice::Model, u64), Error> {
        let tx = begin_write(&self.db).await?;
        let notice = policies::insert_breach_notice(&tx, subject.as_str(), body, affected.describe()).await?;
        let payload =
            serde_json::to_value(Payload::BreachNotice { notice_id: notice.id }).expect("serializes");
        let prefix = format!("breach:{}:", notice.id);
        let keys: Vec<String>;
        let audience = match &affected {
            Affected::All => NoticeAudience::All,
            Affected::Addresses(addresses) => {
                keys = addresses.iter().map(EmailAddress::normalized).collect();
                NoticeAudience::Addresses(&keys)
            }
            Affected::SignedUp { from, until } => NoticeAudience::SignedUp {
                from: *from,
                until: *until,
            },
        };
        let queued = policies::queue_notices(&tx, "breach_notice", &payload, &prefix, audience).await?;
        let notice = policies::set_notified(&tx, notice, queued).await?;
        tx.commit().await?;
        self.wakeups.outbox.notify_one();
        tracing::info!(id = notice.id, queued, "breach notice published");
        Ok((notice, queued))
    }
}

/// Who a breach affected.
#[derive(Debug, Clone)]
pub enum Affected {
    All,
    Addresses(Vec<EmailAddress>),
    /// People who signed up in `[from, until)`.
    SignedUp {
        from: time::OffsetDateTime,
        until: time::OffsetDateTime,
    },
}

impl Affected {
    fn describe(&self) -> String {
        match self {
            Affected::All => "all".into(),
            Affected::Addresses(a) => format!("{} listed addresses", a.len()),
            Affected::SignedUp { from, until } => format!("signed up from {from} until {until}"),
        }
    }
}
