//! What an outbox row asks to be sent, stored as JSON in the row. Rendering happens at send
//! time, so the message reflects the state of things when it leaves (and a payload can decide
//! that it is no longer wanted).

use serde::{Deserialize, Serialize};

use super::Context;
use super::Lookups;
use crate::domain::{EmailAddress, HeaderText};
use crate::mail::{ComposedMessage, MailClass};
use crate::store::entities::outbox::OutboxKind;
use crate::store::outbox::ClaimedMessage;
use crate::store::subscriptions;
use crate::store::suppressions::SuppressionReason;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Payload {
    /// An operator's check that mail leaves and arrives signed (`letterhead send-test`).
    TestMessage,
    /// The double opt-in email for the recipient's pending subscriptions (OI-4).
    Confirmation,
    /// A link to download everything held about the recipient (GD-1).
    ExportLink,
    /// Sent to a new address: confirm it before it replaces the old one (GD-2).
    AddressChange { change: uuid::Uuid },
    /// A new privacy policy version (CS-12, CS-13).
    PolicyNotice {
        policy_id: i64,
        /// No version was published before this one: the notice introduces the policy.
        #[serde(default)]
        first: bool,
    },
    /// A data breach notice.
    BreachNotice { notice_id: i64 },
    /// A campaign sent to a team test recipient, rendered with sample fields.
    CampaignTest { campaign_id: i64 },
}

impl Payload {
    /// The outbox `kind` column: the payload's type name.
    pub fn kind(&self) -> OutboxKind {
        match self {
            Payload::TestMessage => OutboxKind::TestMessage,
            Payload::Confirmation => OutboxKind::Confirmation,
            Payload::ExportLink => OutboxKind::ExportLink,
            Payload::AddressChange { .. } => OutboxKind::AddressChange,
            Payload::PolicyNotice { .. } => OutboxKind::PolicyNotice,
            Payload::BreachNotice { .. } => OutboxKind::BreachNotice,
            Payload::CampaignTest { .. } => OutboxKind::CampaignTest,
        }
    }

    /// Whether this message still goes to an address suppressed for `reason`. A confirmation
    /// passes an erasure's or a full opt-out's suppression (a fresh opt-in is always allowed,
    /// GD-4); so do the person's own data-rights emails.
    pub fn sends_despite(&self, reason: SuppressionReason) -> bool {
        let opted_out = matches!(
            reason,
            SuppressionReason::Erased | SuppressionReason::Unsubscribed
        );
        match self {
            Payload::Confirmation => opted_out,
            // Anyone with a preference link may type an address: never one that is suppressed.
            Payload::AddressChange { .. } => false,
            // Transactional notices reach people who left, never bounced or complained ones.
            Payload::ExportLink | Payload::PolicyNotice { .. } | Payload::BreachNotice { .. } => {
                reason == SuppressionReason::Unsubscribed
            }
            Payload::TestMessage | Payload::CampaignTest { .. } => false,
        }
    }

    /// The message to send, or `None` when it should no longer be sent.
    pub async fn render(
        &self,
        ctx: &Context,
        lookups: &Lookups,
        to: EmailAddress,
        row: &ClaimedMessage,
    ) -> Result<Option<ComposedMessage>, String> {
        match self {
            Payload::TestMessage => {
                let org = ctx.identity.org_name.as_str();
                let text = format!(
                    "This is a test message from {org}'s mail service.\n\n\
                     If you can read it, mail leaves the service, passes the relay and arrives."
                );
                Ok(Some(ComposedMessage {
                    to,
                    to_name: None,
                    subject: HeaderText::parse(&format!("Test message from {org}"))
                        .map_err(|e| e.to_string())?,
                    html: templates::email::paragraphs(&text),
                    text,
                    reason: "You receive this because an operator of this service sent a test message to this address."
                        .into(),
                    class: MailClass::Transactional { preferences_url: None },
                }))
            }
            Payload::Confirmation => confirmation(ctx, lookups, to, row).await,
            Payload::ExportLink => export_link(ctx, to, row).await,
            Payload::AddressChange { change } => address_change(ctx, to, *change).await,
            Payload::PolicyNotice { policy_id, first } => {
                policy_notice(ctx, to, row, *policy_id, *first).await
            }
            Payload::BreachNotice { notice_id } => breach_notice(ctx, to, row, *notice_id).await,
            Payload::CampaignTest { campaign_id } => campaign_test(ctx, to, *campaign_id).await,
        }
    }
}

/// A test send: the campaign as a subscriber would get it, with sample fields. Its unsubscribe
/// and preference links lead to a page that says the link is a test (no one is subscribed).
async fn campaign_test(
    ctx: &Context,
    to: EmailAddress,
    campaign_id: i64,
) -> Result<Option<ComposedMessage>, String> {
    let prepared = super::prepare_campaign(&ctx.db, campaign_id)
        .await
        .map_err(|e| e.to_string())?;
    let Some(list) = prepared.lists.first() else {
        return Ok(None);
    };
    let unsubscribe_url = ctx.links.page("unsubscribe/test-send");
    let preferences_url = ctx.links.page("preferences/test-send");
    let mut fields = crate::mail::content::RecipientFields::sample(&list.name);
    fields.unsubscribe_url = unsubscribe_url.to_string();
    fields.preferences_url = preferences_url.to_string();
    let (html, text) = prepared.content.render(&fields)?;
    Ok(Some(ComposedMessage {
        to,
        to_name: None,
        subject: prepared.subject.clone(),
        html: templates::email::trusted_html(html),
        text,
        reason: "You receive this test send because you are one of the team's test recipients.".into(),
        class: MailClass::Marketing {
            list: crate::mail::ListHeaders {
                slug: list.slug.clone(),
                unsubscribe_url,
                preferences_url,
            },
            from: prepared.from.clone(),
        },
    }))
}

fn long_date(t: time::OffsetDateTime) -> String {
    t.format(&time::macros::format_description!(
        "[day padding:none] [month repr:long] [year]"
    ))
    .unwrap_or_default()
}

/// The recipient of a notice and their preference link, if they still exist.
async fn notice_recipient(
    ctx: &Context,
    row: &ClaimedMessage,
) -> Result<Option<(crate::store::entities::subscriber::Model, url::Url)>, String> {
    let Some(id) = row.subscriber_id else {
        return Ok(None);
    };
    let s = subscriptions::subscriber_by_id(&ctx.db, id)
        .await
        .map_err(|e| e.to_string())?;
    Ok(s.map(|s| {
        let url = ctx.links.preferences(s.uuid);
        (s, url)
    }))
}

async fn policy_notice(
    ctx: &Context,
    to: EmailAddress,
    row: &ClaimedMessage,
    policy_id: i64,
    first: bool,
) -> Result<Option<ComposedMessage>, String> {
    let Some(policy) = crate::store::policies::policy_by_id(&ctx.db, policy_id)
        .await
        .map_err(|e| e.to_string())?
    else {
        return Ok(None);
    };
    let Some((subscriber, prefs)) = notice_recipient(ctx, row).await? else {
        return Ok(None);
    };
    let effective = long_date(policy.effective_at);
    let agree = policy
        .material
        .then(|| ctx.links.agree(subscriber.uuid, policy.id));
    let content = templates::email::PolicyNotice {
        effective: &effective,
        summary: &policy.summary,
        url: &policy.url,
        agree_url: agree.as_ref().map(|u| u.as_str()),
        first,
    };
    let subject = if first {
        format!("Our privacy policy, effective {effective}")
    } else {
        format!("Changes to our privacy policy, effective {effective}")
    };
    Ok(Some(ComposedMessage {
        to,
        to_name: subscriber.name.as_deref().and_then(|n| crate::domain::DisplayName::parse(n).ok()),
        subject: HeaderText::parse(&subject).map_err(|e| e.to_string())?,
        html: content.html(),
        text: content.text(),
        reason: "You receive this service notice because you subscribed to our emails; we tell you about our privacy policy and every change to it."
            .into(),
        class: MailClass::Transactional { preferences_url: Some(prefs) },
    }))
}

async fn breach_notice(
    ctx: &Context,
    to: EmailAddress,
    row: &ClaimedMessage,
    notice_id: i64,
) -> Result<Option<ComposedMessage>, String> {
    let Some(notice) = crate::store::policies::breach_notice_by_id(&ctx.db, notice_id)
        .await
        .map_err(|e| e.to_string())?
    else {
        return Ok(None);
    };
    let Some((subscriber, prefs)) = notice_recipient(ctx, row).await? else {
        return Ok(None);
    };
    let text = notice.body.clone();
    Ok(Some(ComposedMessage {
        to,
        to_name: subscriber.name.as_deref().and_then(|n| crate::domain::DisplayName::parse(n).ok()),
        // Exactly as the operator wrote it (CS-2).
        subject: HeaderText::parse(&notice.subject).map_err(|e| e.to_string())?,
        html: templates::email::paragraphs(&text),
        text,
        reason: "You receive this service notice because data about you is held by us; we must tell you about a breach that affects it."
            .into(),
        class: MailClass::Transactional { preferences_url: Some(prefs) },
    }))
}

async fn export_link(
    ctx: &Context,
    to: EmailAddress,
    row: &ClaimedMessage,
) -> Result<Option<ComposedMessage>, String> {
    let Some(subscriber_id) = row.subscriber_id else {
        return Ok(None);
    };
    let Some(subscriber) = subscriptions::subscriber_by_id(&ctx.db, subscriber_id)
        .await
        .map_err(|e| e.to_string())?
    else {
        return Ok(None);
    };
    let link = ctx.links.export(subscriber.uuid);
    let text = format!(
        "You asked for a copy of the personal data {org} holds about you.\n\n\
         Download it here (the link works once, for 24 hours):\n\n{link}\n\n\
         If you did not ask for this, you can ignore this email: only someone with access to \
         this mailbox can use the link.",
        org = ctx.identity.org_name
    );
    Ok(Some(ComposedMessage {
        to,
        to_name: None,
        subject: HeaderText::parse("Your data export").map_err(|e| e.to_string())?,
        html: templates::email::paragraphs_with_link(&text, link.as_str()),
        text,
        reason: "You receive this because a data export was requested on your preference page.".into(),
        class: MailClass::Transactional {
            preferences_url: Some(ctx.links.preferences(subscriber.uuid)),
        },
    }))
}

async fn address_change(
    ctx: &Context,
    to: EmailAddress,
    change: uuid::Uuid,
) -> Result<Option<ComposedMessage>, String> {
    let pending = crate::store::subscriptions::address_change_by_uuid(&ctx.db, change)
        .await
        .map_err(|e| e.to_string())?;
    if pending.is_none() {
        return Ok(None);
    }
    let link = ctx.links.address_change(change);
    let text = format!(
        "Someone, probably you, asked {org} to send its emails to this address from now on.\n\n\
         To confirm, open this link and press the button (it works for 48 hours):\n\n{link}\n\n\
         If you did not ask for this, ignore this email: nothing will change.",
        org = ctx.identity.org_name
    );
    Ok(Some(ComposedMessage {
        to,
        to_name: None,
        subject: HeaderText::parse("Please confirm your new email address").map_err(|e| e.to_string())?,
        html: templates::email::paragraphs_with_link(&text, link.as_str()),
        text,
        reason: "You receive this because this address was given as the new address of a subscriber.".into(),
        class: MailClass::Transactional {
            preferences_url: None,
        },
    }))
}

async fn confirmation(
    ctx: &Context,
    lookups: &Lookups,
    to: EmailAddress,
    row: &ClaimedMessage,
) -> Result<Option<ComposedMessage>, String> {
    let Some(subscriber_id) = row.subscriber_id else {
        return Ok(None);
    };
    // Who, and what they have pending now.
    let Some(pending) = lookups.pending_confirmation(subscriber_id).await? else {
        return Ok(None);
    };
    let lists = pending.list_names;
    let ttl = ctx.confirm_ttl;
    // The token covers what is pending now (its issue time rides along, OI-10).
    let link = ctx.links.confirm(pending.uuid, crate::store::now_ms(), ttl);
    let expires = (time::OffsetDateTime::now_utc() + ttl)
        .format(&time::macros::format_description!(
            "[day] [month repr:long] [year], [hour]:[minute] UTC"
        ))
        .map_err(|e| e.to_string())?;
    let org = ctx.identity.org_name.as_str();
    let content = templates::email::ConfirmationEmail {
        org_name: org,
        lists: &lists,
        new_name: pending.new_name.as_deref(),
        link: link.as_str(),
        expires: &expires,
    };
    let (subject, reason) = if lists.is_empty() {
        (
            "Please confirm the change to your name",
            "You receive this because someone, probably you, gave a new name for this address.".to_owned(),
        )
    } else {
        (
            "Please confirm your subscription",
            format!(
                "You receive this because someone, probably you, asked to subscribe this address to {}.",
                lists.join(", ")
            ),
        )
    };
    Ok(Some(ComposedMessage {
        to,
        // Addressed by the name on file: the new one is what the person is asked to confirm.
        to_name: pending
            .name
            .as_deref()
            .and_then(|n| crate::domain::DisplayName::parse(n).ok()),
        subject: HeaderText::parse(subject).map_err(|e| e.to_string())?,
        html: content.html(),
        text: content.text(),
        reason,
        class: MailClass::Transactional {
            preferences_url: None,
        },
    }))
}
