//! What an outbox row asks to be sent, stored as JSON in the row. Rendering happens at send
//! time, so the message reflects the state of things when it leaves (and a payload can decide
//! that it is no longer wanted).

use serde::{Deserialize, Serialize};

use crate::app::AppState;
use crate::domain::{EmailAddress, HeaderText};
use crate::mail::{ComposedMessage, MailClass};
use crate::store::outbox::ClaimedMessage;
use crate::store::suppressions::SuppressionReason;
use crate::store::{lists, subscriptions};
use crate::tokens::Purpose;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Payload {
    /// An operator's check that mail leaves and arrives signed (`letterhead send-test`).
    TestMessage,
    /// The double opt-in email for the recipient's pending subscriptions (OI-4).
    Confirmation,
}

impl Payload {
    /// The outbox `kind` column: the payload's type name.
    pub fn kind(&self) -> &'static str {
        match self {
            Payload::TestMessage => "test_message",
            Payload::Confirmation => "confirmation",
        }
    }

    /// Whether this message still goes to an address suppressed for `reason`. Only a
    /// confirmation passes an erasure's suppression: a fresh opt-in is always allowed (GD-4).
    pub fn sends_despite(&self, reason: &str) -> bool {
        matches!(self, Payload::Confirmation) && reason == SuppressionReason::Erased.as_str()
    }

    /// The message to send, or `None` when it should no longer be sent.
    pub async fn render(
        &self,
        state: &AppState,
        to: EmailAddress,
        row: &ClaimedMessage,
    ) -> Result<Option<ComposedMessage>, String> {
        match self {
            Payload::TestMessage => {
                let org = state.config.identity.org_name.as_str();
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
            Payload::Confirmation => confirmation(state, to, row).await,
        }
    }
}

async fn confirmation(
    state: &AppState,
    to: EmailAddress,
    row: &ClaimedMessage,
) -> Result<Option<ComposedMessage>, String> {
    let db = &state.db;
    let Some(subscriber_id) = row.subscriber_id else {
        return Ok(None);
    };
    let Some(subscriber) = subscriptions::subscriber_by_id(db, subscriber_id)
        .await
        .map_err(|e| e.to_string())?
    else {
        return Ok(None);
    };
    let pending: Vec<i64> = subscriptions::of_subscriber(db, subscriber_id)
        .await
        .map_err(|e| e.to_string())?
        .into_iter()
        .filter(|s| s.status == "pending")
        .map(|s| s.list_id)
        .collect();
    if pending.is_empty() {
        return Ok(None);
    }
    let lists: Vec<String> = lists::by_ids(db, pending)
        .await
        .map_err(|e| e.to_string())?
        .into_iter()
        .map(|l| l.name)
        .collect();
    let ttl = state.config.signup.confirm_ttl;
    // The token covers what is pending now (its issue time rides along, OI-10).
    let token = state.keyring.issue(
        Purpose::Confirm,
        &subscriber.uuid.to_string(),
        Some(&crate::store::now_ms().to_string()),
        Some(ttl),
    );
    let link = state
        .config
        .public_url
        .join(&format!("confirm/{token}"))
        .map_err(|e| e.to_string())?;
    let expires = (time::OffsetDateTime::now_utc() + ttl)
        .format(&time::macros::format_description!(
            "[day] [month repr:long] [year], [hour]:[minute] UTC"
        ))
        .map_err(|e| e.to_string())?;
    let org = state.config.identity.org_name.as_str();
    let content = templates::email::ConfirmationEmail {
        org_name: org,
        lists: &lists,
        link: link.as_str(),
        expires: &expires,
    };
    Ok(Some(ComposedMessage {
        to,
        to_name: subscriber
            .name
            .as_deref()
            .and_then(|n| crate::domain::DisplayName::parse(n).ok()),
        subject: HeaderText::parse("Please confirm your subscription").map_err(|e| e.to_string())?,
        html: content.html(),
        text: content.text(),
        reason: format!(
            "You receive this because someone, probably you, asked to subscribe this address to {}.",
            lists.join(", ")
        ),
        class: MailClass::Transactional {
            preferences_url: None,
        },
    }))
}
