//! A pooled SMTP client for every SMTP transport (`smtp://`, `smtp+starttls://`, `smtps://`),
//! built on lettre's SMTP connection but over sockets we open ourselves, with `TCP_NODELAY`.
//! It knows which step of the conversation each reply answers, which is what decides whom a
//! refusal is about (see [`classify`]).
//!
//! Why not lettre's own pool: lettre writes a message's body and its final `.` in two writes
//! without `TCP_NODELAY`, so Nagle's algorithm holds the terminator until the relay ACKs the
//! body, and relays delay that ACK (about 40 ms on Linux): every message would wait that long.
//!
//! When the relay offers PIPELINING (RFC 2920), MAIL, RCPT and DATA go out in one write and
//! their replies are read after: two round trips per message instead of four.

use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use lettre::address::Envelope;
use lettre::transport::smtp::Error as SmtpError;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
#[allow(deprecated)] // lettre's TLS stream, for implicit TLS (see `ImplicitTls`)
use lettre::transport::smtp::client::AsyncNetworkStream;
use lettre::transport::smtp::client::{AsyncSmtpConnection, AsyncTokioStream, TlsParameters};
use lettre::transport::smtp::commands::{Data, Ehlo, Mail, Rcpt};
use lettre::transport::smtp::extension::{ClientId, Extension, MailBodyParameter, MailParameter};

use super::transport::SendError;
use crate::config::SmtpTls;

/// A pooled connection is used again only if it idled less than this (relays close idle
/// sessions; a stale one would look like a relay outage).
const MAX_IDLE: Duration = Duration::from_secs(20);

/// How long the relay may take to accept a connection and set up a session (TLS, greeting,
/// EHLO, STARTTLS, AUTH) before it counts as not answering.
const SESSION_TIMEOUT: Duration = Duration::from_secs(60);

/// How long one transaction (MAIL to the reply after the data) may take: RFC 5321 4.5.3.2
/// gives the relay up to 10 minutes after the data.
const TRANSACTION_TIMEOUT: Duration = Duration::from_secs(600);

pub struct SmtpRelay {
    host: String,
    port: u16,
    tls: SmtpTls,
    /// For STARTTLS and implicit TLS (made once: it loads the platform's trust store).
    tls_parameters: TlsParameters,
    credentials: Option<Credentials>,
    hello: ClientId,
    idle: Mutex<Vec<(Connection, Instant)>>,
    max_idle_connections: usize,
}

/// The step of an SMTP conversation a reply answers. Steps up to [`Step::MailFrom`] are about
/// the relay and our session with it; [`Step::RcptTo`] is about the recipient; the data steps
/// about the message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    /// The relay's greeting and our EHLO. (A connection or an implicit TLS handshake that
    /// fails has no reply to classify: it is `Unavailable` as it is.)
    Greeting,
    StartTls,
    Auth,
    MailFrom,
    RcptTo,
    /// The DATA command, before the message is sent.
    Data,
    /// The reply to the message itself, after its final dot.
    EndOfData,
}

impl Step {
    /// What the relay refuses when it refuses this step (for the reason an operator sees).
    fn refused(self) -> &'static str {
        match self {
            Step::Greeting => "the session",
            Step::StartTls => "STARTTLS",
            Step::Auth => "our credentials (AUTH)",
            Step::MailFrom => "the sender (MAIL FROM)",
            Step::RcptTo => "the recipient (RCPT TO)",
            Step::Data => "DATA",
            Step::EndOfData => "the message",
        }
    }

    /// Before the transaction: whatever goes wrong here is about the relay.
    fn is_session(self) -> bool {
        matches!(
            self,
            Step::Greeting | Step::StartTls | Step::Auth | Step::MailFrom
        )
    }
}

/// A failure and the step it happened at.
type StepError = (Step, SmtpError);

/// What an SMTP failure means for delivery, the same for every SMTP transport, decided by
/// what the reply answers:
///
/// - no reply at all (the relay cannot be reached, the connection broke, TLS failed, it timed
///   out), or any refusal of the greeting, EHLO, STARTTLS, AUTH or MAIL FROM, or a 421 (the
///   relay closing the session) at any step: about the relay, so delivery as a whole waits
///   and no message spends an attempt ([`SendError::Unavailable`]);
/// - a 4xx to RCPT, DATA or the message: try this message again later;
/// - a 5xx to RCPT: the recipient is refused; it names a mailbox that does not exist (and so
///   suppresses the address, GY-6) when its enhanced code is 5.1.x about the recipient, or,
///   without an enhanced code, when it is a 550, 551 or 553;
/// - a 5xx to DATA: this message fails, nobody is suppressed;
/// - a 5xx after the message's data: the relay refused the content ([`SendError::ContentRefused`]).
fn classify((step, e): StepError) -> SendError {
    let Some(code) = e.status() else {
        let unreadable = e.is_response() || e.is_client();
        return if unreadable && !step.is_session() {
            // A reply we could not read, or a message lettre would not send as it is.
            SendError::Temporary(e.to_string())
        } else if e.is_timeout() {
            SendError::Unavailable("the relay did not answer in time".into())
        } else {
            SendError::Unavailable(format!("the session with the relay failed: {e}"))
        };
    };
    let code: u16 = code.to_string().parse().unwrap_or(0);
    let text = std::error::Error::source(&e)
        .map(ToString::to_string)
        .unwrap_or_default();
    let reply = format!("{code} {text}").trim_end().to_owned();
    if step.is_session() || code == 421 {
        return SendError::Unavailable(format!("the relay refused {}: {reply}", step.refused()));
    }
    match (step, code / 100) {
        (_, 4) => SendError::Temporary(reply),
        (Step::RcptTo, _) => SendError::Permanent {
            mailbox_unavailable: names_no_mailbox(code, &text),
            message: reply,
        },
        (Step::EndOfData, _) => SendError::ContentRefused(reply),
        _ => SendError::Permanent {
            message: reply,
            mailbox_unavailable: false,
        },
    }
}

/// Whether a 5xx to RCPT says the recipient's mailbox does not exist (GY-6): an enhanced
/// status code 5.1.x (RFC 3463 "addressing status") other than 5.1.7 and 5.1.8, which are
/// about the sender; or, without an enhanced code, 550, 551 or 553. A policy refusal (5.7.x),
/// a full mailbox (5.2.2) or a message too big (5.3.4) is not.
fn names_no_mailbox(code: u16, text: &str) -> bool {
    let enhanced = text.split_whitespace().next().and_then(|word| {
        let mut parts = word.split('.');
        let (class, subject, detail) = (parts.next()?, parts.next()?, parts.next()?);
        let number = |p: &str| !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit());
        (parts.next().is_none() && class == "5" && number(subject) && number(detail))
            .then(|| (subject.to_owned(), detail.to_owned()))
    });
    match enhanced {
        Some((subject, detail)) => subject == "1" && !matches!(detail.as_str(), "7" | "8"),
        None => matches!(code, 550 | 551 | 553),
    }
}

impl SmtpRelay {
    pub fn new(
        host: String,
        port: u16,
        tls: SmtpTls,
        credentials: Option<Credentials>,
        hello: ClientId,
        max_idle_connections: usize,
    ) -> Result<Self, String> {
        let tls_parameters =
            TlsParameters::new(host.clone()).map_err(|e| format!("MAIL_TRANSPORT TLS set-up failed: {e}"))?;
        Ok(SmtpRelay {
            host,
            port,
            tls,
            tls_parameters,
            credentials,
            hello,
            idle: Mutex::new(Vec::new()),
            max_idle_connections,
        })
    }

    /// A new session, ready for a transaction; any failure is about the relay.
    async fn connect(&self) -> Result<Connection, SendError> {
        match tokio::time::timeout(SESSION_TIMEOUT, self.open_session()).await {
            Ok(result) => result,
            Err(_) => Err(SendError::Unavailable(format!(
                "the relay did not answer within {} s",
                SESSION_TIMEOUT.as_secs()
            ))),
        }
    }

    async fn open_session(&self) -> Result<Connection, SendError> {
        let tcp = tokio::net::TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| SendError::Unavailable(format!("connecting to the relay failed: {e}")))?;
        tcp.set_nodelay(true)
            .map_err(|e| SendError::Unavailable(e.to_string()))?;
        let stream: Box<dyn AsyncTokioStream> = if self.tls == SmtpTls::Implicit {
            Box::new(
                ImplicitTls::handshake(tcp, self.tls_parameters.clone())
                    .await
                    .map_err(|e| SendError::Unavailable(format!("TLS with the relay failed: {e}")))?,
            )
        } else {
            Box::new(tcp)
        };
        let mut conn = AsyncSmtpConnection::connect_with_transport(stream, &self.hello)
            .await
            .map_err(|e| classify((Step::Greeting, e)))?;
        // STARTTLS whenever offered (GY-3); required by smtp+starttls://. Over implicit TLS the
        // session is encrypted already.
        if self.tls != SmtpTls::Implicit {
            if conn.can_starttls() {
                conn.starttls(self.tls_parameters.clone(), &self.hello)
                    .await
                    .map_err(|e| classify((Step::StartTls, e)))?;
            } else if self.tls == SmtpTls::Required {
                conn.abort().await;
                return Err(SendError::Unavailable(
                    "the relay does not offer STARTTLS, which MAIL_TRANSPORT requires".into(),
                ));
            }
        }
        if let Some(credentials) = &self.credentials {
            conn.auth(&[Mechanism::Plain, Mechanism::Login], credentials)
                .await
                .map_err(|e| classify((Step::Auth, e)))?;
        }
        // lettre keeps only the extensions it uses; ask again to learn about PIPELINING.
        let pipelining = conn
            .command(Ehlo::new(self.hello.clone()))
            .await
            .map_err(|e| classify((Step::Greeting, e)))?
            .message()
            .any(|line| line.trim().eq_ignore_ascii_case("PIPELINING"));
        Ok(Connection { conn, pipelining })
    }

    fn take_idle(&self) -> Option<Connection> {
        let mut idle = self.idle.lock().expect("pool lock");
        while let Some((conn, since)) = idle.pop() {
            if since.elapsed() < MAX_IDLE && !conn.conn.has_broken() {
                return Some(conn);
            }
        }
        None
    }

    fn put_back(&self, conn: Connection) {
        let mut idle = self.idle.lock().expect("pool lock");
        if !conn.conn.has_broken() && idle.len() < self.max_idle_connections {
            idle.push((conn, Instant::now()));
        }
    }

    /// Sends over an idle session or a new one. The caller holds the number of sends at once
    /// to the pool's size (see `Transport`).
    pub async fn send(&self, envelope: &Envelope, bytes: &[u8]) -> Result<(), SendError> {
        if let Some(mut conn) = self.take_idle() {
            match in_time(conn.send(envelope, bytes)).await? {
                Ok(()) => {
                    self.put_back(conn);
                    return Ok(());
                }
                // The relay answered (a 4xx or 5xx, or a reply we could not read after its
                // first): that is the outcome, whichever session it came on. (A refusal on a
                // reused session used to be sent again at once.)
                Err((step, e)) if e.status().is_some() || (e.is_response() && step != Step::MailFrom) => {
                    return Err(classify((step, e)));
                }
                // The session had gone stale while idle (the relay closed it, so even the
                // first reply never came): a new one. Nothing of the message went out.
                Err(_) => {}
            }
        }
        let mut conn = self.connect().await?;
        in_time(conn.send(envelope, bytes)).await?.map_err(classify)?;
        self.put_back(conn);
        Ok(())
    }
}

/// A transaction's result, or the relay not answering within [`TRANSACTION_TIMEOUT`] (the
/// session is then dropped with the future).
async fn in_time<T>(transaction: impl Future<Output = T>) -> Result<T, SendError> {
    tokio::time::timeout(TRANSACTION_TIMEOUT, transaction)
        .await
        .map_err(|_| {
            SendError::Unavailable(format!(
                "the relay did not answer within {} s",
                TRANSACTION_TIMEOUT.as_secs()
            ))
        })
}

/// A TLS session opened before the first byte of SMTP (`smtps://`, RFC 8314), as a stream
/// lettre's SMTP client runs over: lettre's own TLS stream (the same TLS set-up and
/// certificate checks as its STARTTLS) over our TCP socket with `TCP_NODELAY`, seen through
/// tokio's I/O traits.
#[allow(deprecated)] // `AsyncNetworkStream`: lettre marks the type as not meant to be public
#[derive(Debug)]
struct ImplicitTls(AsyncNetworkStream);

#[allow(deprecated)]
impl ImplicitTls {
    async fn handshake(tcp: tokio::net::TcpStream, params: TlsParameters) -> Result<Self, SmtpError> {
        let mut stream = AsyncNetworkStream::use_existing_tokio1(Box::new(tcp));
        stream.upgrade_tls(params).await?;
        Ok(ImplicitTls(stream))
    }
}

impl AsyncTokioStream for ImplicitTls {
    fn peer_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.0.peer_addr()
    }
}

impl tokio::io::AsyncRead for ImplicitTls {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let read = futures::AsyncRead::poll_read(Pin::new(&mut self.0), cx, buf.initialize_unfilled());
        let n = std::task::ready!(read)?;
        buf.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl tokio::io::AsyncWrite for ImplicitTls {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        futures::AsyncWrite::poll_write(Pin::new(&mut self.0), cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        futures::AsyncWrite::poll_flush(Pin::new(&mut self.0), cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        futures::AsyncWrite::poll_close(Pin::new(&mut self.0), cx)
    }
}

/// A session with the relay, and whether it takes pipelined commands.
struct Connection {
    conn: AsyncSmtpConnection,
    pipelining: bool,
}

impl Connection {
    async fn send(&mut self, envelope: &Envelope, bytes: &[u8]) -> Result<(), StepError> {
        let result = if self.pipelining {
            self.send_pipelined(envelope, bytes).await
        } else {
            self.send_step_by_step(envelope, bytes).await
        };
        if result.is_err() {
            // After a refusal mid-transaction, or with replies to the rest of a pipeline
            // still on their way, this session's state is unknown: it is not used again.
            self.conn.abort().await;
        }
        result
    }

    /// The same MAIL parameters lettre would use.
    fn mail_command(&self, envelope: &Envelope, bytes: &[u8]) -> Mail {
        let mut mail_options = Vec::new();
        let non_ascii_address = envelope
            .from()
            .into_iter()
            .chain(envelope.to())
            .any(|a| !AsRef::<str>::as_ref(a).is_ascii());
        if non_ascii_address && self.conn.server_info().supports_feature(Extension::SmtpUtfEight) {
            mail_options.push(MailParameter::SmtpUtfEight);
        }
        if !bytes.is_ascii() && self.conn.server_info().supports_feature(Extension::EightBitMime) {
            mail_options.push(MailParameter::Body(MailBodyParameter::EightBitMime));
        }
        Mail::new(envelope.from().cloned(), mail_options)
    }

    /// MAIL, each RCPT and DATA, each waiting for its reply, then the message.
    async fn send_step_by_step(&mut self, envelope: &Envelope, bytes: &[u8]) -> Result<(), StepError> {
        let mail = self.mail_command(envelope, bytes);
        self.conn.command(mail).await.map_err(|e| (Step::MailFrom, e))?;
        for to in envelope.to() {
            self.conn
                .command(Rcpt::new(to.clone(), vec![]))
                .await
                .map_err(|e| (Step::RcptTo, e))?;
        }
        self.conn.command(Data).await.map_err(|e| (Step::Data, e))?;
        self.send_data(bytes).await
    }

    /// MAIL, RCPT… and DATA in one write, then their replies in order, then the message.
    async fn send_pipelined(&mut self, envelope: &Envelope, bytes: &[u8]) -> Result<(), StepError> {
        let mut commands = self.mail_command(envelope, bytes).to_string();
        for to in envelope.to() {
            commands.push_str(&Rcpt::new(to.clone(), vec![]).to_string());
        }
        commands.push_str(&Data.to_string());
        // `command` writes everything and reads the first reply (MAIL's).
        self.conn
            .command(commands)
            .await
            .map_err(|e| (Step::MailFrom, e))?;
        for _ in envelope.to() {
            self.conn.read_response().await.map_err(|e| (Step::RcptTo, e))?;
        }
        self.conn.read_response().await.map_err(|e| (Step::Data, e))?; // 354
        self.send_data(bytes).await
    }

    /// The message and its final dot in one write (lettre's `message` makes them two packets
    /// under TCP_NODELAY). `command` writes a string, so this needs UTF-8, which every message
    /// we format is; anything else goes the long way.
    async fn send_data(&mut self, bytes: &[u8]) -> Result<(), StepError> {
        let reply = match std::str::from_utf8(bytes) {
            Ok(text) => self.conn.command(data_block(text)).await,
            Err(_) => self.conn.message(bytes).await,
        };
        reply.map(|_| ()).map_err(|e| (Step::EndOfData, e))
    }
}

/// A message as the DATA phase sends it: dot-stuffed (RFC 5321 4.5.2), then `CRLF . CRLF`,
/// in a string of exactly its size (lettre's `command` sends a `String` with one copy; built
/// through `Display`, it grew by doubling and copied itself each time).
fn data_block(text: &str) -> String {
    // Where a line starts with a dot: the text's start, or just after a line feed.
    let stuffed: Vec<usize> = (text.starts_with('.').then_some(0).into_iter())
        .chain(memchr::memmem::find_iter(text.as_bytes(), b"\n.").map(|at| at + 1))
        .collect();
    let mut block = String::with_capacity(text.len() + stuffed.len() + 5);
    let mut copied = 0;
    for at in stuffed {
        block.push_str(&text[copied..at]);
        block.push('.');
        copied = at;
    }
    block.push_str(&text[copied..]);
    block.push_str("\r\n.\r\n");
    block
}

#[cfg(test)]
mod tests {
    use super::{data_block, names_no_mailbox};

    #[test]
    fn only_an_addressing_status_or_a_bare_mailbox_code_names_no_mailbox() {
        for (code, text) in [
            (
                550,
                "5.1.1 <bob@example.org>: Recipient address rejected: User unknown",
            ),
            (550, "5.1.10 null MX"),
            (553, "5.1.3 bad destination mailbox address syntax"),
            (550, "mailbox unavailable"),
            (551, "user not local"),
            (553, ""),
        ] {
            assert!(names_no_mailbox(code, text), "{code} {text}");
        }
        for (code, text) in [
            (550, "5.7.1 recipient refused by policy"),
            (550, "5.1.8 bad sender's system address"),
            (552, "5.2.2 mailbox full"),
            (554, "transaction failed"),
            (552, "message too big"),
        ] {
            assert!(!names_no_mailbox(code, text), "{code} {text}");
        }
    }

    #[test]
    fn lines_starting_with_a_dot_are_stuffed_and_the_block_ends_with_a_lone_dot() {
        let block = data_block(".first\r\nmiddle . dot\r\n..two\r\n.\r\nlast");
        assert_eq!(block, "..first\r\nmiddle . dot\r\n...two\r\n..\r\nlast\r\n.\r\n");
        assert_eq!(block.capacity(), block.len());
        assert_eq!(data_block("no dots"), "no dots\r\n.\r\n");
        assert_eq!(data_block(""), "\r\n.\r\n");
    }
}
