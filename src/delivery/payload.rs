//! What an outbox row asks to be sent, stored as JSON in the row. Rendering happens at send
//! time, so the message reflects the state of things when it leaves (and a payload can decide
//! that it is no longer wanted).

use serde::{Deserialize, Serialize};

use crate::app::AppState;
use crate::domain::{EmailAddress, HeaderText};
use crate::mail::{ComposedMessage, MailClass};
use crate::store::outbox::ClaimedMessage;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Payload {
    /// An operator's check that mail leaves and arrives signed (`letterhead send-test`).
    TestMessage,
}

impl Payload {
    /// The outbox `kind` column: the payload's type name.
    pub fn kind(&self) -> &'static str {
        match self {
            Payload::TestMessage => "test_message",
        }
    }

    /// The message to send, or `None` when it should no longer be sent.
    pub async fn render(
        &self,
        state: &AppState,
        to: EmailAddress,
        _row: &ClaimedMessage,
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
        }
    }
}
