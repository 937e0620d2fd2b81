//! The wire: lettre's pooled async SMTP client (TLS as configured, GY-3) or a directory of
//! `.eml` files. Accepts only [`StampedMessage`]s.

use std::sync::Arc;
use std::time::Duration;

use lettre::transport::smtp::PoolConfig;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::{AsyncFileTransport, AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

use super::relay::SmtpRelay;
use super::stamp::StampedMessage;
use crate::config::{Config, MailTransportConfig, SmtpTls};

#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The relay answered with a 4xx: this message is worth trying again later.
    #[error("temporary failure: {0}")]
    Temporary(String),
    /// The relay could not be reached or did not answer (down, timeout, TLS trouble): nothing
    /// is wrong with the message; delivery as a whole should wait.
    #[error("relay unavailable: {0}")]
    Unavailable(String),
    /// Will not succeed by retrying: a 5xx. `mailbox_unavailable` when the relay refused the
    /// recipient itself (550/551/553), which is what suppresses an address (GY-6).
    #[error("permanent failure: {message}")]
    Permanent {
        message: String,
        mailbox_unavailable: bool,
    },
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
    /// `smtp://`, `smtp+starttls://`: our pool over lettre's SMTP client, with TCP_NODELAY.
    Relay(SmtpRelay),
    /// `smtps://`: lettre's pooled transport (implicit TLS).
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
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
            Wire::Smtp(t) => t.send_raw(envelope, bytes).await.map(|_| ()).map_err(classify),
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
            } if *tls != SmtpTls::Implicit => Ok(Wire::Relay(SmtpRelay::new(
                host.clone(),
                *port,
                *tls == SmtpTls::Required,
                credentials
                    .as_ref()
                    .map(|(u, p)| Credentials::new(u.clone(), p.expose().to_owned())),
                ClientId::Domain(config.mail_from.domain().to_owned()),
                config.delivery.concurrency,
            ))),
            // Implicit TLS (smtps://): lettre's own pool.
            MailTransportConfig::Smtp {
                host,
                port,
                credentials,
                ..
            } => {
                let params = TlsParameters::new(host.clone())
                    .map_err(|e| format!("MAIL_TRANSPORT TLS set-up failed: {e}"))?;
                let tls = Tls::Wrapper(params);
                let pool_size = u32::try_from(config.delivery.concurrency).unwrap_or(u32::MAX);
                let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
                    .port(*port)
                    .tls(tls)
                    .hello_name(ClientId::Domain(config.mail_from.domain().to_owned()))
                    .timeout(Some(Duration::from_secs(60)))
                    .pool_config(
                        PoolConfig::new()
                            .max_size(pool_size)
                            .idle_timeout(Duration::from_secs(30)),
                    );
                if let Some((user, pass)) = credentials {
                    builder = builder.credentials(Credentials::new(user.clone(), pass.expose().to_owned()));
                }
                Ok(Wire::Smtp(builder.build()))
            }
        }
    }
}

/// What an SMTP failure means for delivery, the same for every SMTP transport: a reply is
/// about this message (4xx try again later, 5xx give up); no reply at all (the relay cannot be
/// reached, the connection broke, TLS failed, it timed out) is about the relay, so delivery as
/// a whole waits and no message spends an attempt on it.
pub(super) fn classify(e: lettre::transport::smtp::Error) -> SendError {
    let message = e.to_string();
    if e.is_permanent() {
        let code = e.status().and_then(|c| c.to_string().parse::<u16>().ok());
        SendError::Permanent {
            mailbox_unavailable: matches!(code, Some(550 | 551 | 553)),
            message,
        }
    } else if e.is_transient() || e.is_response() || e.is_client() {
        // A 4xx, a reply we could not read, or a message lettre would not send as it is.
        SendError::Temporary(message)
    } else {
        SendError::Unavailable(message)
    }
}
