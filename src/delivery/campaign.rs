//! The campaign worker: sends each claimed recipient their own rendering of the campaign,
//! checking right before the send that they are still subscribed to the list and not
//! suppressed (CS-7). Compiled content is cached per campaign for the life of the worker.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use super::prepared::{Prepared, prepare_campaign};
use super::{Claimed, ContentOf, Context, Delivered, Job, Relay, retry_later, send_stamped, stamp_for_turn};
use crate::domain::{DisplayName, EmailAddress};
use crate::mail::content::RecipientFields;
use crate::mail::{ComposedMessage, ListHeaders, MailClass};
use crate::store::Db;
use crate::store::batch::{Batcher, Grouping};
use crate::store::campaigns::{self as store, CheckFor, ClaimedRecipient, Outcome, SendCheck};
use crate::store::entities::campaign::CampaignStatus;
use crate::store::entities::policy_version;
use crate::store::queue::{CAMPAIGN_RECIPIENTS, Queue};
use crate::store::trouble::Trouble;

// What the campaign worker does besides claiming, each told once through an outage.
static STARTING_SCHEDULED: Trouble = Trouble::new("starting scheduled campaigns");
static READING_POLICY: Trouble = Trouble::new("reading the policy in force");
static MARKING_FINISHED: Trouble = Trouble::new("marking finished campaigns");

#[derive(Default)]
pub struct CampaignJob {
    prepared: Mutex<HashMap<i64, Arc<Prepared>>>,
    /// The material policy version in force, as of the start of the current batch.
    material: Mutex<Option<policy_version::Model>>,
    /// Checks made again, one by one, when a first one grew stale waiting for a turn.
    rechecks: OnceLock<Batcher<CheckRequest, Result<Option<SendCheck>, String>>>,
}

/// A claimed recipient as it enters the rows in flight: with its send check, made together
/// with the others of its group (one statement), and the policy state it was made under.
pub struct Admitted {
    row: ClaimedRecipient,
    material: Option<policy_version::Model>,
    /// `Ok(None)`: the person is gone (or the row names no one).
    check: Result<Option<SendCheck>, String>,
    checked_at: Instant,
}

/// A send check older than this when its message has a turn for a relay session is made
/// again before the message goes (CS-7). With a fast relay, checks are a few milliseconds old
/// (made as their group of rows enters the rows in flight); with a slow one (hundreds of ms
/// per message), the rows ahead can take long enough to make it stale, and one check per
/// message costs little next to the relay.
const CHECK_FRESH_FOR: std::time::Duration = std::time::Duration::from_millis(50);

/// A recipient row to check, and the material policy version (and its start) in force.
type CheckRequest = (CheckFor, Option<(String, time::OffsetDateTime)>);

/// The material policy state a check counts consents under: (version, effective date).
fn material_key(material: Option<&policy_version::Model>) -> Option<(String, time::OffsetDateTime)> {
    material.map(|m| (m.version.clone(), m.effective_at))
}

/// Checks a group of recipients: one query per material policy state (nearly always one).
async fn check_group(db: &Db, requests: Vec<CheckRequest>) -> Vec<Result<Option<SendCheck>, String>> {
    let mut out = Vec::with_capacity(requests.len());
    for same in requests.chunk_by(|a, b| a.1 == b.1) {
        let rows: Vec<CheckFor> = same.iter().map(|(row, _)| *row).collect();
        let material = same[0].1.as_ref().map(|(v, at)| (v.as_str(), *at));
        match store::send_checks(db, &rows, material).await {
            Ok(checks) => out.extend(checks.into_iter().map(Ok)),
            Err(e) => out.extend(same.iter().map(|_| Err(format!("database: {e}")))),
        }
    }
    out
}

/// What a row's send check is about; `None` when the row names no one (erased).
fn check_for(row: &ClaimedRecipient) -> Option<CheckFor> {
    Some(CheckFor {
        subscriber_id: row.subscriber_id?,
        list_id: row.list_id,
        campaign_id: row.campaign_id,
    })
}

impl CampaignJob {
    async fn prepared(&self, ctx: &Context, campaign_id: i64) -> Result<Arc<Prepared>, String> {
        if let Some(p) = self.prepared.lock().expect("cache lock").get(&campaign_id) {
            return Ok(p.clone());
        }
        let p = Arc::new(
            prepare_campaign(&ctx.db, campaign_id)
                .await
                .map_err(|e| e.to_string())?,
        );
        self.prepared
            .lock()
            .expect("cache lock")
            .insert(campaign_id, p.clone());
        Ok(p)
    }

    async fn attempt(&self, ctx: &Context, relay: &Relay, admitted: Admitted) -> Outcome {
        let cfg = &ctx.cfg;
        let Admitted {
            row,
            material,
            check,
            checked_at,
        } = admitted;
        let prepared = match self.prepared(ctx, row.campaign_id).await {
            Ok(p) => p,
            Err(e) => return retry_later(cfg, row.attempts, e),
        };
        // CS-7: the state of things now, not when the campaign was queued. A material policy
        // change in force holds back people whose consent predates it.
        let (check, about) = match (check, check_for(&row)) {
            (Ok(Some(check)), Some(about)) => (check, about),
            (Err(e), Some(_)) => return retry_later(cfg, row.attempts, e),
            // No one to check: the row names no one, or the person is gone.
            _ => {
                return Outcome::Skipped {
                    reason: "erased".into(),
                };
            }
        };
        if let Some(outcome) = verdict(&check, material.as_ref()) {
            return outcome;
        }
        let Ok(to) = EmailAddress::parse(&check.email) else {
            return Outcome::Failed {
                error: "the recipient address is not valid".into(),
            };
        };
        // The list they are still on: the one they were queued under, or another of the
        // campaign's if they left that one meanwhile.
        let list_id = check.confirmed_on.unwrap_or(row.list_id);
        let Some(list) = prepared.lists.iter().find(|l| l.id == list_id) else {
            return Outcome::Skipped {
                reason: "the list is gone".into(),
            };
        };
        let unsubscribe_url = ctx.links.unsubscribe(check.uuid, list.id);
        let preferences_url = ctx.links.preferences(check.uuid);
        let fields = RecipientFields {
            name: check.name.clone().unwrap_or_default(),
            list_name: list.name.clone(),
            unsubscribe_url: unsubscribe_url.to_string(),
            preferences_url: preferences_url.to_string(),
        };
        let (html, text) = match prepared.content.render(&fields) {
            Ok(r) => r,
            Err(e) => {
                return Outcome::Failed {
                    error: format!("rendering: {e}"),
                };
            }
        };
        let composed = ComposedMessage {
            to: to.clone(),
            to_name: check.name.as_deref().and_then(|n| DisplayName::parse(n).ok()),
            subject: prepared.subject.clone(),
            html: templates::email::trusted_html(html),
            text,
            reason: format!(
                "You receive this because you subscribed to {} and confirmed your address.",
                list.name
            ),
            class: MailClass::Marketing {
                list: ListHeaders {
                    slug: list.slug.clone(),
                    unsubscribe_url,
                    preferences_url,
                },
                from: prepared.from.clone(),
            },
        };
        let hash = ctx.address_hasher.hash(&to);
        let (stamped, turn) = match stamp_for_turn(ctx, composed, row.attempts).await {
            Ok(ready) => ready,
            Err(outcome) => return outcome,
        };
        if checked_at.elapsed() > CHECK_FRESH_FOR {
            let again = match self
                .recheck(ctx, (about, material_key(material.as_ref())), row.attempts)
                .await
            {
                Ok(c) => c,
                Err(outcome) => return outcome,
            };
            if let Some(outcome) = verdict(&again, material.as_ref()) {
                return outcome;
            }
            if again.email != check.email || again.name != check.name {
                // Corrected meanwhile (GD-2): rendered again from the new details.
                return Outcome::Deferred {
                    at_ms: crate::store::now_ms(),
                    error: "the recipient's details changed".into(),
                };
            }
        }
        send_stamped(
            ctx,
            relay,
            &stamped,
            turn,
            &hash,
            row.attempts,
            ContentOf::Campaign(row.campaign_id),
        )
        .await
    }

    /// One recipient's send check made again, or the outcome instead: skipped when there is no
    /// one to check (erased), retried when the check failed.
    async fn recheck(
        &self,
        ctx: &Context,
        request: CheckRequest,
        attempts: i32,
    ) -> Result<SendCheck, Outcome> {
        let checks = self.rechecks.get_or_init(|| {
            let db = ctx.db.clone();
            Batcher::start(Grouping::up_to(ctx.cfg.in_flight()), move |requests| {
                let db = db.clone();
                async move { check_group(&db, requests).await }
            })
        });
        let retry = |e| retry_later(&ctx.cfg, attempts, e);
        match checks.call(request).await {
            Some(Ok(Some(c))) => Ok(c),
            Some(Ok(None)) => Err(Outcome::Skipped {
                reason: "erased".into(),
            }),
            Some(Err(e)) => Err(retry(e)),
            None => Err(retry("the send check has stopped".into())),
        }
    }
}

/// What the send check says of a recipient: `None` to send, else the outcome instead (CS-7).
fn verdict(check: &SendCheck, material: Option<&policy_version::Model>) -> Option<Outcome> {
    // Paused or cancelled since the row was claimed: it goes back to the queue without
    // spending an attempt (claimed again on resume), or is cancelled with the rest.
    match check.campaign_status {
        Some(CampaignStatus::Sending) => {}
        Some(CampaignStatus::Paused) => {
            return Some(Outcome::Deferred {
                at_ms: crate::store::now_ms(),
                error: "the campaign was paused".into(),
            });
        }
        _ => return Some(Outcome::Cancelled),
    }
    if check.confirmed_on.is_none() {
        return Some(Outcome::Skipped {
            reason: "unsubscribed".into(),
        });
    }
    if let Some(reason) = check.suppression {
        return Some(Outcome::Skipped {
            reason: format!("suppressed ({reason})"),
        });
    }
    if let Some(m) = material
        && check.fresh_consents == 0
    {
        return Some(Outcome::Skipped {
            reason: format!("held: consent predates material policy version {}", m.version),
        });
    }
    None
}

impl Job for CampaignJob {
    type ClaimedRow = ClaimedRecipient;
    type Row = Admitted;

    fn name(&self) -> &'static str {
        "campaigns"
    }

    fn claiming(&self) -> &'static str {
        "claiming campaign recipients"
    }

    fn row_id(row: &ClaimedRecipient) -> i64 {
        row.id
    }

    fn lease_id(row: &ClaimedRecipient) -> i64 {
        row.block_id
    }

    async fn before_claim(&self, ctx: &Context) {
        match store::start_due(&ctx.db).await {
            Ok(started) => {
                STARTING_SCHEDULED.ok();
                if started > 0 {
                    ctx.wakeups.campaigns.notify_one();
                }
            }
            Err(e) => STARTING_SCHEDULED.failed(&e),
        }
        match crate::store::policies::material_in_force(&ctx.db, crate::store::now()).await {
            Ok(m) => {
                READING_POLICY.ok();
                *self.material.lock().expect("material lock") = m;
            }
            // Keep the last known state; the next batch tries again.
            Err(e) => READING_POLICY.failed(&e),
        }
    }

    #[tracing::instrument(level = "debug", skip_all, fields(worker = "campaigns"))]
    async fn claim(
        &self,
        ctx: &Context,
        owner: &str,
        now: i64,
        lease_until: i64,
    ) -> Result<Claimed<ClaimedRecipient>, crate::store::Error> {
        let (leases, rows) = store::claim(&ctx.db, owner, now, lease_until, ctx.cfg.batch_size).await?;
        Ok(Claimed { leases, rows })
    }

    /// The send checks of the group, in one statement (one per material policy state).
    async fn admit(&self, ctx: &Context, rows: Vec<ClaimedRecipient>) -> Vec<Admitted> {
        let material = self.material.lock().expect("material lock").clone();
        let key = material_key(material.as_ref());
        let about: Vec<Option<CheckFor>> = rows.iter().map(check_for).collect();
        let requests: Vec<CheckRequest> = about.iter().flatten().map(|row| (*row, key.clone())).collect();
        let mut checks = check_group(&ctx.db, requests).await.into_iter();
        let checked_at = Instant::now();
        rows.into_iter()
            .zip(about)
            .map(|(row, about)| Admitted {
                check: match about {
                    Some(_) => checks.next().unwrap_or(Ok(None)),
                    None => Ok(None),
                },
                material: material.clone(),
                checked_at,
                row,
            })
            .collect()
    }

    fn queue(&self) -> &'static Queue {
        &CAMPAIGN_RECIPIENTS
    }

    #[tracing::instrument(level = "debug", skip_all, fields(worker = "campaigns", id = admitted.row.id, campaign = admitted.row.campaign_id))]
    async fn deliver(&self, ctx: &Context, relay: &Relay, admitted: Admitted) -> Delivered {
        let id = admitted.row.id;
        let outcome = self.attempt(ctx, relay, admitted).await;
        Delivered {
            id,
            kind: "campaign".into(),
            outcome,
        }
    }

    async fn after_batch(&self, ctx: &Context) {
        match store::finish_done(&ctx.db).await {
            Ok(finished) => {
                MARKING_FINISHED.ok();
                if finished > 0 {
                    tracing::info!(campaigns = finished, "campaigns finished");
                }
            }
            Err(e) => MARKING_FINISHED.failed(&e),
        }
    }
}
