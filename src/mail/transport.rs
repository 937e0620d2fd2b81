//! The wire: our pooled SMTP client (TLS as configured, GY-3) or a directory of `.eml` files.
//! Accepts only [`StampedMessage`]s.

use std::sync::Arc;

use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::extension::ClientId;
use lettre::{AsyncFileTransport, AsyncTransport, Tokio1Executor};

use super::relay::SmtpRelay;
use super::stamp::StampedMessage;
use crate::config::{Config, MailTransportConfig};

/// Why a send failed, by whom it is about (see `relay::classify` for which reply is which).
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// A 4xx to the recipient, to DATA or to the message: worth trying again later.
    #[error("temporary failure: {0}")]
    Temporary(String),
    /// About the relay, not the message: it could not be reached or did not answer (down,
    /// timeout, TLS trouble), or it refused the session, our credentials or the sender. Delivery
    /// as a whole should wait; no message is to blame.
    #[error("relay unavailable: {0}")]
    Unavailable(String),
    /// Will not succeed by retrying: a 5xx to the recipient or to DATA. `mailbox_unavailable`
    /// when the reply says the recipient's mailbox does not exist, which is what suppresses an
    /// address (GY-6).
    #[error("permanent failure: {message}")]
    Permanent {
        message: String,
        mailbox_unavailable: bool,
    },
    /// A 5xx after the message's data: the relay refused the content, not the recipient.
    #[error("content refused: {0}")]
    ContentRefused(String),
}

/// A turn for one of the relay's sessions (see [`Transport::take_turn`]).
pub type Turn = tokio::sync::OwnedSemaphorePermit;

pub struct Transport {
    wire: Wire,
    /// At most this many sends at once (DELIVERY_CONCURRENCY): the sessions with the relay
    /// that every sender of the process shares. (lettre's pool would open extra connections
    /// when all of its are busy.)
    sessions: Arc<tokio::sync::Semaphore>,
}

enum Wire {
    /// `smtp://`, `smtp+starttls://`, `smtps://`: our pool over lettre's SMTP client.
    Relay(SmtpRelay),
    File(AsyncFileTransport<Tokio1Executor>),
}

impl Transport {
    pub fn from_config(config: &Config) -> Result<Self, String> {
        Ok(Transport {
            wire: Wire::from_config(config)?,
            sessions: Arc::new(tokio::sync::Semaphore::new(config.delivery.concurrency.max(1))),
        })
    }

    /// Waits for a turn for one of the relay's sessions. Delivery takes it once a message is
    /// signed and holds it through the send, so what waits for a session is ready to go.
    pub async fn take_turn(&self) -> Result<Turn, SendError> {
        self.sessions
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| SendError::Unavailable("the transport is shut down".into()))
    }

    /// Sends in its turn.
    pub async fn send(&self, message: &StampedMessage) -> Result<(), SendError> {
        let turn = self.take_turn().await?;
        self.send_in_turn(message, turn).await
    }

    /// Sends in a turn taken with [`Transport::take_turn`]; the session is free again when it
    /// returns.
    pub async fn send_in_turn(&self, message: &StampedMessage, _turn: Turn) -> Result<(), SendError> {
        let started = std::time::Instant::now();
        let result = self.send_on_wire(message).await;
        let result_label = match &result {
            Ok(()) => "ok",
            Err(SendError::Temporary(_)) => "temporary",
            Err(SendError::Permanent { .. }) => "permanent",
            Err(SendError::Unavailable(_)) => "unavailable",
            Err(SendError::ContentRefused(_)) => "content_refused",
        };
        metrics::histogram!("letterhead_smtp_send_duration_seconds", "result" => result_label)
            .record(started.elapsed());
        result
    }

    async fn send_on_wire(&self, message: &StampedMessage) -> Result<(), SendError> {
        let (envelope, bytes) = (message.envelope(), message.bytes());
        match &self.wire {
            Wire::File(t) => t
                .send_raw(envelope, bytes)
                .await
                .map(|_| ())
                .map_err(|e| SendError::Unavailable(format!("writing the .eml file failed: {e}"))),
            Wire::Relay(r) => r.send(envelope, bytes).await,
        }
    }
}

impl Wire {
    fn from_config(config: &Config) -> Result<Self, String> {
        match &config.mail_transport {
            MailTransportConfig::File(dir) => {
                std::fs::create_dir_all(dir).map_err(|e| {
                    format!(
                        "MAIL_TRANSPORT directory {} cannot be created: {e}",
                        dir.display()
                    )
                })?;
                Ok(Wire::File(AsyncFileTransport::new(dir)))
            }
            MailTransportConfig::Smtp {
                host,
                port,
                tls,
                credentials,
            } => Ok(Wire::Relay(SmtpRelay::new(
                host.clone(),
                *port,
                *tls,
                credentials
                    .as_ref()
                    .map(|(u, p)| Credentials::new(u.clone(), p.expose().to_owned())),
                ClientId::Domain(config.mail_from.domain().to_owned()),
                config.delivery.concurrency,
            )?)),
        }
    }
}
