//! A pooled SMTP client for `smtp://` and `smtp+starttls://` relays, built on lettre's SMTP
//! connection but over sockets we open ourselves, with `TCP_NODELAY`.
//!
//! Why not lettre's own pool: lettre writes a message's body and its final `.` in two writes
//! without `TCP_NODELAY`, so Nagle's algorithm holds the terminator until the relay ACKs the
//! body, and relays delay that ACK (about 40 ms on Linux): every message would wait that long.
//!
//! When the relay offers PIPELINING (RFC 2920), MAIL, RCPT and DATA go out in one write and
//! their replies are read after: two round trips per message instead of four.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use lettre::address::Envelope;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, TlsParameters};
use lettre::transport::smtp::commands::{Data, Ehlo, Mail, Rcpt};
use lettre::transport::smtp::extension::{ClientId, Extension, MailBodyParameter, MailParameter};

use super::transport::{SendError, classify};

/// A pooled connection is used again only if it idled less than this (relays close idle
/// sessions; a stale one would look like a relay outage).
const MAX_IDLE: Duration = Duration::from_secs(20);

pub struct SmtpRelay {
    host: String,
    port: u16,
    require_tls: bool,
    credentials: Option<Credentials>,
    hello: ClientId,
    timeout: Duration,
    idle: Mutex<Vec<(Connection, Instant)>>,
    max_idle_connections: usize,
}

impl SmtpRelay {
    pub fn new(
        host: String,
        port: u16,
        require_tls: bool,
        credentials: Option<Credentials>,
        hello: ClientId,
        max_idle_connections: usize,
    ) -> Self {
        SmtpRelay {
            host,
            port,
            require_tls,
            credentials,
            hello,
            timeout: Duration::from_secs(60),
            idle: Mutex::new(Vec::new()),
            max_idle_connections,
        }
    }

    async fn connect(&self) -> Result<Connection, SendError> {
        let unavailable = |e: String| SendError::Unavailable(e);
        let tcp = tokio::time::timeout(
            self.timeout,
            tokio::net::TcpStream::connect((self.host.as_str(), self.port)),
        )
        .await
        .map_err(|_| unavailable("connecting to the relay timed out".into()))?
        .map_err(|e| unavailable(format!("connecting to the relay failed: {e}")))?;
        tcp.set_nodelay(true).map_err(|e| unavailable(e.to_string()))?;
        let mut conn = AsyncSmtpConnection::connect_with_transport(Box::new(tcp), &self.hello)
            .await
            .map_err(classify)?;
        // STARTTLS whenever offered (GY-3); required by smtp+starttls://.
        if conn.can_starttls() {
            let params = TlsParameters::new(self.host.clone()).map_err(classify)?;
            conn.starttls(params, &self.hello).await.map_err(classify)?;
        } else if self.require_tls {
            conn.abort().await;
            return Err(unavailable(
                "the relay does not offer STARTTLS, which MAIL_TRANSPORT requires".into(),
            ));
        }
        if let Some(credentials) = &self.credentials {
            conn.auth(&[Mechanism::Plain, Mechanism::Login], credentials)
                .await
                .map_err(classify)?;
        }
        // lettre keeps only the extensions it uses; ask again to learn about PIPELINING.
        let pipelining = conn
            .command(Ehlo::new(self.hello.clone()))
            .await
            .map_err(classify)?
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
            match conn.send(envelope, bytes).await {
                Ok(()) => {
                    self.put_back(conn);
                    return Ok(());
                }
                // The relay answered (a 4xx or 5xx, or a reply we could not read): that is the
                // outcome, whichever session it came on. (lettre's `is_response` covers only
                // the last; a refusal on a reused session used to be sent again at once.)
                Err(e) if e.status().is_some() || e.is_response() => return Err(classify(e)),
                // The session had gone stale while idle (the relay closed it): a new one.
                Err(_) => {}
            }
        }
        let mut conn = self.connect().await?;
        conn.send(envelope, bytes).await.map_err(classify)?;
        self.put_back(conn);
        Ok(())
    }
}

/// A session with the relay, and whether it takes pipelined commands.
struct Connection {
    conn: AsyncSmtpConnection,
    pipelining: bool,
}

impl Connection {
    async fn send(
        &mut self,
        envelope: &Envelope,
        bytes: &[u8],
    ) -> Result<(), lettre::transport::smtp::Error> {
        if !self.pipelining {
            return self.conn.send(envelope, bytes).await.map(|_| ());
        }
        let result = self.send_pipelined(envelope, bytes).await;
        if result.is_err() {
            // Replies to the rest of the pipeline may still be on their way: this session's
            // state is unknown, so it is not used again.
            self.conn.abort().await;
        }
        result
    }

    /// MAIL, RCPT… and DATA in one write, then their replies in order, then the message.
    async fn send_pipelined(
        &mut self,
        envelope: &Envelope,
        bytes: &[u8],
    ) -> Result<(), lettre::transport::smtp::Error> {
        // The same MAIL parameters lettre would use.
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
        let mut commands = Mail::new(envelope.from().cloned(), mail_options).to_string();
        for to in envelope.to() {
            commands.push_str(&Rcpt::new(to.clone(), vec![]).to_string());
        }
        commands.push_str(&Data.to_string());
        // `command` writes everything and reads the first reply (MAIL's).
        self.conn.command(commands).await?;
        for _ in envelope.to() {
            self.conn.read_response().await?;
        }
        self.conn.read_response().await?; // 354 for DATA
        // The message and its final dot in one write (lettre's `message` makes them two
        // packets under TCP_NODELAY). `command` writes a string, so this needs UTF-8, which
        // every message we format is; anything else goes the long way.
        match std::str::from_utf8(bytes) {
            Ok(text) => self.conn.command(data_block(text)).await.map(|_| ()),
            Err(_) => self.conn.message(bytes).await.map(|_| ()),
        }
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
    use super::data_block;

    #[test]
    fn lines_starting_with_a_dot_are_stuffed_and_the_block_ends_with_a_lone_dot() {
        let block = data_block(".first\r\nmiddle . dot\r\n..two\r\n.\r\nlast");
        assert_eq!(block, "..first\r\nmiddle . dot\r\n...two\r\n..\r\nlast\r\n.\r\n");
        assert_eq!(block.capacity(), block.len());
        assert_eq!(data_block("no dots"), "no dots\r\n.\r\n");
        assert_eq!(data_block(""), "\r\n.\r\n");
    }
}
