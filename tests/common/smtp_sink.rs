//! A real SMTP server for tests: it speaks the protocol to lettre over TCP, captures every
//! message as raw bytes with its envelope, and answers scripted codes at RCPT or DATA so tests
//! can provoke temporary (4xx) and permanent (5xx) failures.

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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Rcpt,
    Data,
}

struct Rule {
    stage: Stage,
    /// Matches when the recipient contains this text.
    recipient: String,
    code: u16,
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
    /// Transactions whose RCPT arrived together with MAIL (the client pipelined).
    pipelined: std::sync::atomic::AtomicUsize,
    /// Sessions open now, and the most ever open at once.
    open_sessions: std::sync::atomic::AtomicUsize,
    most_sessions: std::sync::atomic::AtomicUsize,
    /// RCPT commands received, refused ones too.
    rcpt_commands: std::sync::atomic::AtomicUsize,
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
            remaining: times,
        });
    }

    /// Stop offering PIPELINING to new sessions.
    pub fn without_pipelining(&self) {
        self.no_pipelining
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// How many RCPT commands arrived, answered with whatever code.
    pub fn rcpt_commands(&self) -> usize {
        self.rcpt_commands.load(std::sync::atomic::Ordering::SeqCst)
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

    fn scripted(&self, stage: Stage, recipients: &[String]) -> Option<u16> {
        let mut rules = self.rules.lock().unwrap();
        for rule in rules.iter_mut() {
            if rule.stage == stage
                && recipients.iter().any(|r| r.contains(&rule.recipient))
                && rule.remaining != Some(0)
            {
                if let Some(n) = rule.remaining.as_mut() {
                    *n -= 1;
                }
                return Some(rule.code);
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
                    "250-sink.test\r\n250-8BITMIME\r\n250 SIZE 52428800".into()
                } else {
                    "250-sink.test\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 SIZE 52428800".into()
                }
            } else if upper.starts_with("MAIL FROM:") {
                // The next command is already here before we answered: it came in the same write.
                if !reader.buffer().is_empty() {
                    self.pipelined.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
                from = addr(&cmd[10..]);
                rcpts.clear();
                "250 2.1.0 ok".into()
            } else if upper.starts_with("RCPT TO:") {
                self.rcpt_commands
                    .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let to = addr(&cmd[8..]);
                match self.scripted(Stage::Rcpt, std::slice::from_ref(&to)) {
                    // Quoting the recipient, as relays do.
                    Some(code) => format!(
                        "{code} {} <{to}>: Recipient address rejected: scripted reply",
                        if code >= 500 { "5.1.1" } else { "4.3.0" }
                    ),
                    None => {
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
                        Some(code) => format!("{code} scripted reply"),
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
