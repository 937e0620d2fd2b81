//! A real SMTP server for tests: it speaks the protocol to lettre over TCP, captures every
//! message as raw bytes with its envelope, and answers scripted replies at the greeting, AUTH,
//! MAIL FROM, RCPT or after the data, so tests can provoke temporary (4xx) and permanent (5xx)
//! refusals of the session, the credentials, the sender, a recipient or the content.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::Notify;

#[derive(Debug, Clone)]
pub struct Captured {
    pub mail_from: String,
    pub rcpt_to: Vec<String>,
    pub data: Vec<u8>,
}

impl Captured {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.data).into_owned()
    }
}

/// Where a scripted reply is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Instead of the 220 greeting (the session then ends).
    Greeting,
    /// To AUTH (the sink offers AUTH PLAIN and LOGIN).
    Auth,
    /// To MAIL FROM.
    MailFrom,
    /// To RCPT TO, for recipients containing the rule's text.
    Rcpt,
    /// After the message's data (its final dot), for transactions to such recipients.
    Data,
}

struct Rule {
    stage: Stage,
    /// Matches when the recipient contains this text (at RCPT and DATA; every rule matches
    /// at the other stages).
    recipient: String,
    code: u16,
    /// The whole reply line; `None`: a default text for the code.
    line: Option<String>,
    /// How many more times the rule applies (`None`: always).
    remaining: Option<usize>,
}

#[derive(Default)]
pub struct SmtpSink {
    pub port: u16,
    captured: Mutex<Vec<Captured>>,
    rules: Mutex<Vec<Rule>>,
    arrived: Notify,
    /// Delay before answering DATA, to hold messages "in flight".
    data_delay_ms: std::sync::atomic::AtomicU64,
    /// Leave PIPELINING out of the EHLO reply.
    no_pipelining: std::sync::atomic::AtomicBool,
    /// Close each session after its first message, as a relay closes an idle session.
    close_after_message: std::sync::atomic::AtomicBool,
    /// Transactions whose RCPT arrived together with MAIL (the client pipelined).
    pipelined: std::sync::atomic::AtomicUsize,
    /// Sessions open now, and the most ever open at once.
    open_sessions: std::sync::atomic::AtomicUsize,
    most_sessions: std::sync::atomic::AtomicUsize,
    /// RCPT commands received, refused ones too.
    rcpt_commands: std::sync::atomic::AtomicUsize,
    /// Recipients accepted at RCPT, in order: messages that have started, finished or not.
    started: Mutex<Vec<String>>,
    /// MAIL and AUTH commands received, refused ones too, and sessions opened.
    mail_commands: std::sync::atomic::AtomicUsize,
    auth_commands: std::sync::atomic::AtomicUsize,
    sessions: std::sync::atomic::AtomicUsize,
}

impl SmtpSink {
    pub async fn start() -> Arc<Self> {
        Self::start_on(0).await
    }

    pub async fn start_on(port: u16) -> Arc<Self> {
        let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        let sink = Arc::new(SmtpSink {
            port: listener.local_addr().unwrap().port(),
            ..Default::default()
        });
        let s = sink.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let s = s.clone();
                tokio::spawn(async move {
                    use std::sync::atomic::Ordering::SeqCst;
                    s.sessions.fetch_add(1, SeqCst);
                    let open = s.open_sessions.fetch_add(1, SeqCst) + 1;
                    s.most_sessions.fetch_max(open, SeqCst);
                    let _ = s.session(stream).await;
                    s.open_sessions.fetch_sub(1, SeqCst);
                });
            }
        });
        sink
    }

    /// Answer `code` at `stage` for recipients containing `recipient`, `times` times (or always).
    pub fn reply(&self, stage: Stage, recipient: &str, code: u16, times: Option<usize>) {
        self.rules.lock().unwrap().push(Rule {
            stage,
            recipient: recipient.into(),
            code,
            line: None,
            remaining: times,
        });
    }

    /// Answer `line` (a code and its text: "550 5.7.1 sender rejected") at `stage`, to every
    /// session, transaction or recipient, until [`SmtpSink::accept_again`].
    pub fn refuse(&self, stage: Stage, line: &str) {
        self.refuse_for(stage, "", line);
    }

    /// [`SmtpSink::refuse`], at RCPT or DATA only for recipients containing `recipient`.
    pub fn refuse_for(&self, stage: Stage, recipient: &str, line: &str) {
        self.rules.lock().unwrap().push(Rule {
            stage,
            recipient: recipient.into(),
            code: line[..3].parse().expect("a reply starts with its code"),
            line: Some(line.into()),
            remaining: None,
        });
    }

    /// Forget every scripted reply: accept everything from now on.
    pub fn accept_again(&self) {
        self.rules.lock().unwrap().clear();
    }

    /// How many MAIL FROM commands arrived, answered with whatever code.
    pub fn mail_commands(&self) -> usize {
        self.mail_commands.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// How many AUTH commands arrived, answered with whatever code.
    pub fn auth_commands(&self) -> usize {
        self.auth_commands.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// How many sessions (TCP connections) were opened.
    pub fn sessions(&self) -> usize {
        self.sessions.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Stop offering PIPELINING to new sessions.
    pub fn without_pipelining(&self) {
        self.no_pipelining
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Close every session once it has carried a message (without a QUIT), as a relay does
    /// with a session left idle.
    pub fn close_after_each_message(&self) {
        self.close_after_message
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// How many RCPT commands arrived, answered with whatever code.
    pub fn rcpt_commands(&self) -> usize {
        self.rcpt_commands.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The recipients accepted at RCPT so far: whose messages have started to arrive.
    pub fn recipients_started(&self) -> Vec<String> {
        self.started.lock().unwrap().clone()
    }

    /// Once `n` messages have started since `mark` (a `recipients_started().len()` taken
    /// before), one of `candidates` whose message has not: with one relay session and a DATA
    /// delay, its send check is made again only after the message in DATA. (The rows in flight
    /// take relay turns in no fixed order, so "the last one" may already be gone.)
    pub async fn one_not_started(&self, mark: usize, n: usize, candidates: &[String]) -> String {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while self.recipients_started().len() < mark + n {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{n} messages never started"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let started = self.recipients_started()[mark..].to_vec();
        candidates
            .iter()
            .find(|c| !started.contains(c))
            .cloned()
            .expect("a candidate whose message has not started")
    }

    /// How many transactions the client pipelined.
    pub fn pipelined_transactions(&self) -> usize {
        self.pipelined.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The most sessions that were open at once.
    pub fn most_sessions_at_once(&self) -> usize {
        self.most_sessions.load(std::sync::atomic::Ordering::SeqCst)
    }

    pub fn delay_data(&self, ms: u64) {
        self.data_delay_ms.store(ms, std::sync::atomic::Ordering::SeqCst);
    }

    /// The scripted reply at `stage` for these recipients, if any: its code and its line.
    fn scripted(&self, stage: Stage, recipients: &[String]) -> Option<(u16, Option<String>)> {
        let mut rules = self.rules.lock().unwrap();
        let per_recipient = matches!(stage, Stage::Rcpt | Stage::Data);
        for rule in rules.iter_mut() {
            if rule.stage == stage
                && (!per_recipient || recipients.iter().any(|r| r.contains(&rule.recipient)))
                && rule.remaining != Some(0)
            {
                if let Some(n) = rule.remaining.as_mut() {
                    *n -= 1;
                }
                return Some((rule.code, rule.line.clone()));
            }
        }
        None
    }

    pub fn messages(&self) -> Vec<Captured> {
        self.captured.lock().unwrap().clone()
    }

    /// Waits until at least `n` messages arrived (panics after `timeout`).
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Captured> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.arrived.notified();
            let got = self.messages();
            if got.len() >= n {
                return got;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!(
                    "expected {n} messages at the SMTP sink, got {}",
                    self.messages().len()
                );
            }
        }
    }

    async fn session(&self, stream: tokio::net::TcpStream) -> std::io::Result<()> {
        let (read, mut write) = stream.into_split();
        let mut reader = BufReader::new(read);
        if let Some((code, line)) = self.scripted(Stage::Greeting, &[]) {
            let line = line.unwrap_or_else(|| format!("{code} sink.test scripted refusal"));
            write.write_all(format!("{line}\r\n").as_bytes()).await?;
            return Ok(());
        }
        write.write_all(b"220 sink.test ESMTP ready\r\n").await?;
        let (mut from, mut rcpts) = (String::new(), Vec::<String>::new());
        let mut line = String::new();
        loop {
            line.clear();
            if reader.read_line(&mut line).await? == 0 {
                return Ok(());
            }
            let cmd = line.trim_end().to_owned();
            let upper = cmd.to_ascii_uppercase();
            let reply: String = if upper.starts_with("EHLO") || upper.starts_with("HELO") {
                if self.no_pipelining.load(std::sync::atomic::Ordering::SeqCst) {
                    "250-sink.test\r\n250-8BITMIME\r\n250-AUTH PLAIN LOGIN\r\n250 SIZE 52428800".into()
                } else {
                    "250-sink.test\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-AUTH PLAIN LOGIN\r\n250 SIZE 52428800"
                        .into()
                }
            } else if upper.starts_with("AUTH ") {
                self.auth_commands
                    .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                if upper.starts_with("AUTH LOGIN") {
                    // The user name and the password, each asked for in base64.
                    for prompt in ["334 VXNlcm5hbWU6\r\n", "334 UGFzc3dvcmQ6\r\n"] {
                        write.write_all(prompt.as_bytes()).await?;
                        line.clear();
                        if reader.read_line(&mut line).await? == 0 {
                            return Ok(());
                        }
                    }
                }
                match self.scripted(Stage::Auth, &[]) {
                    Some((code, line)) => line.unwrap_or_else(|| format!("{code} 5.7.8 scripted refusal")),
                    None => "235 2.7.0 authenticated".into(),
                }
            } else if upper.starts_with("MAIL FROM:") {
                self.mail_commands
                    .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                // The next command is already here before we answered: it came in the same write.
                if !reader.buffer().is_empty() {
                    self.pipelined.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
                rcpts.clear();
                from.clear();
                match self.scripted(Stage::MailFrom, &[]) {
                    Some((code, line)) => line.unwrap_or_else(|| format!("{code} scripted refusal")),
                    None => {
                        from = addr(&cmd[10..]);
                        "250 2.1.0 ok".into()
                    }
                }
            } else if upper.starts_with("RCPT TO:") && from.is_empty() {
                "503 5.5.1 MAIL first".into()
            } else if upper.starts_with("RCPT TO:") {
                self.rcpt_commands
                    .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let to = addr(&cmd[8..]);
                match self.scripted(Stage::Rcpt, std::slice::from_ref(&to)) {
                    Some((_, Some(line))) => line,
                    // Quoting the recipient, as relays do.
                    Some((code, None)) => format!(
                        "{code} {} <{to}>: Recipient address rejected: scripted reply",
                        if code >= 500 { "5.1.1" } else { "4.3.0" }
                    ),
                    None => {
                        self.started.lock().unwrap().push(to.clone());
                        rcpts.push(to);
                        "250 2.1.5 ok".into()
                    }
                }
            } else if upper == "DATA" {
                if rcpts.is_empty() {
                    "554 5.5.1 no valid recipients".into()
                } else {
                    write.write_all(b"354 go ahead\r\n").await?;
                    let mut data = Vec::new();
                    loop {
                        let mut l = Vec::new();
                        if reader.read_until(b'\n', &mut l).await? == 0 {
                            return Ok(());
                        }
                        if l == b".\r\n" {
                            break;
                        }
                        // Undo dot-stuffing (RFC 5321 4.5.2).
                        if l.starts_with(b"..") {
                            l.remove(0);
                        }
                        data.extend_from_slice(&l);
                    }
                    let delay = self.data_delay_ms.load(std::sync::atomic::Ordering::SeqCst);
                    if delay > 0 {
                        tokio::time::sleep(Duration::from_millis(delay)).await;
                    }
                    match self.scripted(Stage::Data, &rcpts) {
                        Some((code, line)) => line.unwrap_or_else(|| format!("{code} scripted reply")),
                        None => {
                            self.captured.lock().unwrap().push(Captured {
                                mail_from: from.clone(),
                                rcpt_to: std::mem::take(&mut rcpts),
                                data,
                            });
                            self.arrived.notify_waiters();
                            "250 2.0.0 queued".into()
                        }
                    }
                }
            } else if upper == "RSET" {
                rcpts.clear();
                "250 ok".into()
            } else if upper == "NOOP" {
                "250 ok".into()
            } else if upper == "QUIT" {
                write.write_all(b"221 bye\r\n").await?;
                return Ok(());
            } else {
                "502 5.5.2 not implemented".into()
            };
            write.write_all(reply.as_bytes()).await?;
            write.write_all(b"\r\n").await?;
            if upper == "DATA" && self.close_after_message.load(std::sync::atomic::Ordering::SeqCst) {
                return Ok(());
            }
        }
    }
}

fn addr(s: &str) -> String {
    s.trim()
        .trim_start_matches('<')
        .split('>')
        .next()
        .unwrap_or("")
        .to_owned()
}
