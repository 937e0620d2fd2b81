//! Campaigns: drafts checked when written (subject exact, CS-2; sender on our domain, CS-1;
//! templates that compile), started by snapshotting the audience in the database, paused,
//! resumed, cancelled, scheduled, and test-sent to the team.

use super::Error;
use std::sync::Arc;

use crate::delivery::{Payload, Wakeups};
use crate::domain::FieldError;
use crate::domain::{EmailAddress, HeaderText};
use crate::mail::content::{Content, Source};
use crate::store::Db;
use crate::store::entities::campaign::CampaignStatus;
use crate::store::entities::{campaign, list};
use crate::store::outbox::NewOutboxMessage;
use crate::store::{self, campaigns as db, lists};

pub use crate::delivery::{PrepareError, Prepared};

/// Drafts, starts, pauses and cancels campaigns.
pub struct Campaigns {
    pub db: Db,
    /// The domains a campaign may be sent from (CS-1, GY-5).
    pub sender_domains: Vec<String>,
    pub wakeups: Arc<Wakeups>,
}

impl Campaigns {
    /// The campaign compiled, as the workers render it.
    pub async fn prepare(&self, id: i64) -> Result<Prepared, PrepareError> {
        crate::delivery::prepare_campaign(&self.db, id).await
    }

    pub async fn validate(&self, input: CampaignInput) -> Result<ValidCampaign, Error> {
        let mut errors = Vec::new();
        let mut err = |field: &str, message: String| {
            errors.push(FieldError {
                field: field.into(),
                message,
            })
        };
        let subject = HeaderText::parse(input.subject.as_deref().unwrap_or(""))
            .map_err(|e| err("subject", format!("the subject {e}")))
            .ok();
        let mut chosen = Vec::new();
        match input.lists.as_deref() {
            None | Some([]) => err("lists", "name at least one list".into()),
            Some(slugs) => {
                for slug in slugs {
                    match lists::by_slug(&self.db, slug).await? {
                        Some(l) => chosen.push(l),
                        None => err("lists", format!("there is no list {slug:?}")),
                    }
                }
            }
        }
        let source = match (input.markdown, input.html, input.text) {
            (Some(md), None, None) if !md.trim().is_empty() => Some(Source::Markdown(md)),
            (None, Some(html), Some(text)) if !html.trim().is_empty() && !text.trim().is_empty() => {
                Some(Source::HtmlAndText { html, text })
            }
            _ => {
                err("markdown", "give either markdown, or html and text".into());
                None
            }
        };
        // CS-1, GY-5: a sender on our own domain or nothing.
        let from = match input.from.as_deref() {
            None => None,
            Some(f) => match EmailAddress::parse(f) {
                Ok(a)
                    if self
                        .sender_domains
                        .iter()
                        .any(|d| d.eq_ignore_ascii_case(a.domain())) =>
                {
                    Some(a)
                }
                Ok(a) => {
                    err(
                        "from",
                        format!("must be on the sending domain, not {}", a.domain()),
                    );
                    None
                }
                Err(e) => {
                    err("from", format!("the address {e}"));
                    None
                }
            },
        };
        let send_at = match input.send_at.as_deref() {
            None => None,
            Some(t) => time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
                .map_err(|_| err("send_at", "must be an RFC 3339 date-time".into()))
                .ok(),
        };
        let sample_list = chosen.first().map(|l| l.name.clone()).unwrap_or_default();
        if let Some(source) = &source
            && let Err(e) = Content::compile_off_thread(source.clone(), sample_list).await
        {
            err(e.part.field(), format!("the template does not work at {e}"));
        }
        match (subject, source) {
            (Some(subject), Some(source)) if errors.is_empty() => Ok(ValidCampaign {
                subject,
                lists: chosen,
                source,
                from,
                send_at,
            }),
            _ => Err(Error::Invalid(errors)),
        }
    }

    pub async fn create(&self, v: ValidCampaign) -> Result<campaign::Model, Error> {
        Ok(db::create(&self.db, draft(v)).await?)
    }

    /// Replaces a draft's content; false when the campaign is no longer a draft.
    pub async fn update(&self, id: i64, v: ValidCampaign) -> Result<bool, Error> {
        Ok(db::update_draft(&self.db, id, draft(v)).await?)
    }

    pub async fn delete_draft(&self, id: i64) -> Result<bool, Error> {
        Ok(db::delete_draft(&self.db, id).await?)
    }

    /// Starts sending now: snapshots the audience and hands it to the workers. `None` when the
    /// campaign was not a draft or scheduled.
    pub async fn start(&self, id: i64) -> Result<Option<i64>, Error> {
        let started = db::start(&self.db, id).await?;
        self.wakeups.campaigns.notify_one();
        Ok(started)
    }

    /// Why a started campaign reached no one, in words for the marketer; `None` when it has
    /// recipients or has not started.
    pub async fn why_no_recipients(&self, c: &campaign::Model) -> Result<Option<String>, Error> {
        let started = !matches!(c.status, CampaignStatus::Draft | CampaignStatus::Scheduled);
        if !started || c.recipients > 0 {
            return Ok(None);
        }
        let now = db::audience_now(&self.db, c.id).await?;
        let lists: Vec<String> = db::lists_of(&self.db, c.id)
            .await?
            .into_iter()
            .map(|l| l.name)
            .collect();
        let lists = lists.join(", ");
        Ok(Some(match now {
            db::AudienceNow {
                confirmed: 0,
                unconfirmed: 0,
            } => {
                format!("No one had subscribed to {lists} when it started.")
            }
            db::AudienceNow {
                confirmed: 0,
                unconfirmed,
            } => format!(
                "No one on {lists} had confirmed their subscription when it started \
                 ({unconfirmed} signed up but have not clicked the confirmation link yet)."
            ),
            db::AudienceNow { confirmed, .. } => format!(
                "The {confirmed} confirmed subscribers of {lists} are on the suppression list \
                 (they left every list, bounced or complained) or confirmed after it started."
            ),
        }))
    }

    pub async fn schedule(&self, id: i64, at: time::OffsetDateTime) -> Result<bool, Error> {
        Ok(db::schedule(&self.db, id, at).await?)
    }

    pub async fn pause(&self, id: i64) -> Result<bool, Error> {
        Ok(db::transition(&self.db, id, &[CampaignStatus::Sending], CampaignStatus::Paused).await?)
    }

    pub async fn resume(&self, id: i64) -> Result<bool, Error> {
        let ok = db::transition(&self.db, id, &[CampaignStatus::Paused], CampaignStatus::Sending).await?;
        self.wakeups.campaigns.notify_one();
        Ok(ok)
    }

    pub async fn cancel(&self, id: i64) -> Result<bool, Error> {
        Ok(db::cancel(&self.db, id).await?)
    }

    /// Test sends go only to addresses the operator marked as team test recipients.
    pub async fn is_test_recipient(&self, email: &EmailAddress) -> Result<bool, Error> {
        Ok(db::is_test_recipient(&self.db, &email.normalized()).await?)
    }

    pub async fn add_test_recipient(&self, email: &EmailAddress) -> Result<(), Error> {
        Ok(db::add_test_recipient(&self.db, &email.normalized()).await?)
    }

    pub async fn queue_test_send(&self, id: i64, to: &[EmailAddress]) -> Result<(), Error> {
        for address in to {
            let payload = Payload::CampaignTest { campaign_id: id };
            store::outbox::enqueue(
                &self.db,
                NewOutboxMessage {
                    kind: payload.kind(),
                    subscriber_id: None,
                    recipient: address.to_string(),
                    payload: serde_json::to_value(&payload).expect("payload serializes"),
                    dedupe_key: None,
                },
            )
            .await?;
        }
        self.wakeups.outbox.notify_one();
        Ok(())
    }
}

/// The store's draft from a checked campaign.
fn draft(v: ValidCampaign) -> db::Draft {
    let (markdown, html, text) = match v.source {
        Source::Markdown(md) => (Some(md), None, None),
        Source::HtmlAndText { html, text } => (None, Some(html), Some(text)),
    };
    db::Draft {
        subject: v.subject.as_str().to_owned(),
        from: v.from.map(|f| f.to_string()),
        markdown,
        html,
        text,
        send_at: v.send_at,
        list_ids: v.lists.iter().map(|l| l.id).collect(),
    }
}

/// What the API accepts for a campaign (its schema is in `api::campaigns`).
#[derive(Debug, Default, Clone, serde::Deserialize)]
pub struct CampaignInput {
    pub subject: Option<String>,
    pub lists: Option<Vec<String>>,
    pub markdown: Option<String>,
    pub html: Option<String>,
    pub text: Option<String>,
    pub from: Option<String>,
    pub send_at: Option<String>,
}

pub struct ValidCampaign {
    pub subject: HeaderText,
    pub lists: Vec<list::Model>,
    pub source: Source,
    pub from: Option<EmailAddress>,
    pub send_at: Option<time::OffsetDateTime>,
}
