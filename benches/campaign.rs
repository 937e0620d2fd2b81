//! Campaign delivery benchmark: N recipients, an ~8 KB personalized markdown campaign, the real
//! delivery worker sending to Postfix's `smtp-sink`, and `smtp-source` against the same sink with
//! the same session count for comparison: with its sessions kept open (`-d`), as ours are, and
//! with a connection per message (its default).
//!
//!     BENCH_RECIPIENTS=10000 [BENCH_DKIM=1] [BENCH_DATABASE_URL=postgres://...] [BENCH_CONCURRENCY=8] \
//!         cargo bench --bench campaign
//!
//! Needs `smtp-sink` and `smtp-source` (Debian package postfix). Reports the audience snapshot
//! time, delivery messages/s, the process's peak RSS, and the CPU it and the sink spent during
//! delivery. With DKIM on it also runs `openssl speed rsa2048` (package openssl) and compares
//! the delivery rate with the RSA signatures/s of the cores used: the process's CPU seconds per
//! second of delivery, times one core's rate; and the ceiling of that ratio for a mailer that
//! did nothing but the signature and smtp-source's own SMTP work per message.
//!
//! With `BENCH_INSTANCES=2` (PostgreSQL only) the bench seeds and creates the campaign as
//! above, then starts two `letterhead serve` processes on the same database and starts the
//! campaign for them to share. It reports each instance's messages (from its `/metrics`),
//! rates and CPU, PostgreSQL's and the sink's CPU, and the duplicates: messages sent beyond
//! one per recipient, and rows claimed more than once.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use letterhead::app::Application;
use letterhead::config::{Config, Settings};
use letterhead::mail::{ComposedMessage, ListHeaders, MailClass};
use letterhead::services::campaigns::CampaignInput;
use sea_orm::ConnectionTrait;

#[path = "../tests/common/bulk.rs"]
mod bulk;

const SINK_PORT: u16 = 2531;

fn env(key: &str, default: &str) -> String {
    std::env::var(key).unwrap_or_else(|_| default.to_owned())
}

/// Peak resident memory of a process (`self` or a pid), from `/proc/PID/status`.
fn peak_rss_mb(pid: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// CPU seconds (user + system) a process has used so far, from `/proc/PID/stat`.
fn cpu_seconds(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or(vec![], |(_, rest)| rest.split_whitespace().collect());
    // utime and stime are fields 14 and 15 of the line; here 12 and 13 (after pid and comm).
    let ticks: f64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i)?.parse::<f64>().ok())
        .sum();
    ticks / 100.0 // USER_HZ is 100 on Linux
}

/// CPU seconds of every process named `postgres` (the server and its backends, when the
/// database is a local PostgreSQL: its work per message is ours too, done elsewhere).
fn postgres_cpu_seconds() -> f64 {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    dir.filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|pid| pid.bytes().all(|b| b.is_ascii_digit()))
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "postgres")
        })
        .map(|pid| cpu_seconds(&pid))
        .sum()
}

/// One core's RSA-2048 signatures/s, as `openssl speed` measures it on this machine.
fn openssl_rsa2048_per_core() -> f64 {
    let out = Command::new("openssl")
        .args(["speed", "-seconds", "3", "rsa2048"])
        .stderr(Stdio::null())
        .output()
        .expect("openssl (apt-get install openssl)");
    // The summary line: "rsa 2048 bits 0.000270s 0.000008s   3700.0 125000.0"
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|l| l.starts_with("rsa 2048 bits") || l.starts_with("rsa  2048 bits"))
        .and_then(|l| l.split_whitespace().nth(5))
        .and_then(|n| n.parse().ok())
        .expect("openssl speed printed its rsa 2048 summary")
}

fn start_sink() -> std::process::Child {
    let mut cmd = Command::new("smtp-sink");
    // smtp-sink refuses to run as root without a user to switch to.
    if std::env::var("USER").as_deref() == Ok("root") || unsafe_is_root() {
        cmd.args(["-u", "nobody"]);
    }
    cmd.arg(format!("127.0.0.1:{SINK_PORT}"))
        .arg("1000")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("smtp-sink (apt-get install postfix)")
}

fn unsafe_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .is_some_and(|l| l.split_whitespace().nth(1) == Some("0"))
}

/// CPU seconds (user + system) of the children this process has waited for.
fn waited_children_cpu_seconds() -> f64 {
    // SAFETY: getrusage only writes the struct it is given.
    let usage = unsafe {
        let mut usage = std::mem::zeroed::<libc::rusage>();
        libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage);
        usage
    };
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

/// What smtp-source did: messages/s, and its own CPU per message (the SMTP client's work
/// alone, kernel included: a floor for any mailer's cost per message over this loopback).
struct SourceRun {
    rate: f64,
    cpu_per_message_us: f64,
}

#[derive(Clone, Copy, PartialEq)]
enum Sessions {
    /// Each session sends message after message (`-d`), as our relay client does.
    Kept,
    /// A new connection (and EHLO) for every message: smtp-source's default.
    OnePerMessage,
}

/// smtp-source with `sessions` parallel sessions sending `count` messages of `bytes` bytes.
fn smtp_source(sessions: usize, count: usize, bytes: usize, how: Sessions) -> SourceRun {
    // The sink is not waited for until the end, so the difference is smtp-source's alone.
    let cpu_before = waited_children_cpu_seconds();
    let started = Instant::now();
    let status = Command::new("smtp-source")
        .args(if how == Sessions::Kept { &["-d"][..] } else { &[] })
        .args([
            "-s",
            &sessions.to_string(),
            "-m",
            &count.to_string(),
            "-l",
            &bytes.to_string(),
        ])
        .args(["-f", "news@example.com", "-t", "reader@example.org"])
        .arg(format!("127.0.0.1:{SINK_PORT}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("smtp-source (apt-get install postfix)");
    assert!(status.success());
    SourceRun {
        rate: count as f64 / started.elapsed().as_secs_f64(),
        cpu_per_message_us: (waited_children_cpu_seconds() - cpu_before) * 1e6 / count as f64,
    }
}

/// The size on the wire of this campaign's message to one recipient (stamped, and signed when
/// DKIM is on), so that smtp-source can also be measured with messages as large as ours.
async fn message_bytes(
    state: &letterhead::edge::AppState,
    delivery: &letterhead::delivery::Context,
    campaign_id: i64,
) -> usize {
    let prepared = state.campaigns.prepare(campaign_id).await.unwrap();
    let list = &prepared.lists[0];
    let unsubscribe_url = state.links.unsubscribe(uuid::Uuid::new_v4(), list.id);
    let preferences_url = state.links.preferences(uuid::Uuid::new_v4());
    let mut fields = letterhead::mail::content::RecipientFields::sample(&list.name);
    fields.unsubscribe_url = unsubscribe_url.to_string();
    fields.preferences_url = preferences_url.to_string();
    let (html, text) = prepared.content.render(&fields).unwrap();
    let composed = ComposedMessage {
        to: letterhead::domain::EmailAddress::parse("reader1@example.org").unwrap(),
        to_name: letterhead::domain::DisplayName::parse("Reader 1").ok(),
        subject: prepared.subject.clone(),
        html: templates::email::trusted_html(html),
        text,
        reason: format!("You receive this because you subscribed to {}.", list.name),
        class: MailClass::Marketing {
            list: ListHeaders {
                slug: list.slug.clone(),
                unsubscribe_url,
                preferences_url,
            },
            from: None,
        },
    };
    delivery.stamp.stamp(composed).unwrap().bytes().len()
}

/// Ends the bench before it starts anything, with one line saying why.
fn refuse(why: &str) -> ! {
    eprintln!("campaign bench: {why}");
    std::process::exit(2)
}

/// A port nothing listens on now (the OS's pick; free again once the probe is dropped).
fn free_port() -> u16 {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    probe.local_addr().unwrap().port()
}

/// `letterhead serve` as a process of its own, for `BENCH_INSTANCES=2`.
struct Instance {
    number: usize,
    child: Child,
    pid: String,
    base: String,
    metrics: String,
    log: PathBuf,
}

impl Instance {
    /// Starts `bin` with `settings` and nothing from the bench's environment (the in-process
    /// service reads none either), and waits until its `/healthz` answers.
    async fn start(bin: &str, number: usize, settings: &[(&str, &str)], dir: &Path) -> Self {
        let listen = format!("127.0.0.1:{}", free_port());
        let metrics = format!("127.0.0.1:{}", free_port());
        let log = dir.join(format!("instance-{number}.log"));
        let child = Command::new(bin)
            .arg("serve")
            .env_clear()
            .envs(settings.iter().copied())
            .envs([
                ("LISTEN_ADDR", listen.as_str()),
                ("METRICS_ADDR", metrics.as_str()),
                ("RUST_LOG", "warn"),
            ])
            // A directory without a .env file, which the binary would read.
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("{bin}: {e}"));
        let mut instance = Instance {
            number,
            pid: child.id().to_string(),
            child,
            base: format!("http://{listen}"),
            metrics: format!("http://{metrics}/metrics"),
            log,
        };
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let health = http.get(format!("{}/healthz", instance.base)).send().await;
            if health.is_ok_and(|r| r.status().is_success()) {
                return instance;
            }
            instance.check_running();
            assert!(
                Instant::now() < deadline,
                "instance {number} did not answer /healthz within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// What it has written to stderr (warnings and errors) so far.
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Panics with the instance's log if it has ended.
    fn check_running(&mut self) {
        if let Some(status) = self.child.try_wait().unwrap() {
            panic!("instance {} ended ({status}):\n{}", self.number, self.log());
        }
    }

    /// Campaign messages it has sent: the `sent` outcomes of `letterhead_messages_total`.
    async fn sent(&self, http: &reqwest::Client) -> u64 {
        let text = http
            .get(&self.metrics)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .filter(|l| {
                l.starts_with("letterhead_messages_total{")
                    && l.contains(r#"kind="campaign""#)
                    && l.contains(r#"outcome="sent""#)
            })
            .filter_map(|l| l.rsplit_once(' ')?.1.parse::<u64>().ok())
            .sum()
    }

    /// SIGTERM, as a service manager stops it, and waits until it has stopped.
    fn stop(&mut self) {
        use rustix::process::{Pid, Signal, kill_process};
        kill_process(Pid::from_child(&self.child), Signal::TERM).unwrap();
        let status = self.child.wait().unwrap();
        if !status.success() {
            println!("instance {} stopped with {status}:\n{}", self.number, self.log());
        }
    }
}

impl Drop for Instance {
    /// A bench that panics leaves no instance sending behind it.
    fn drop(&mut self) {
        if self.child.try_wait().is_ok_and(|status| status.is_none()) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `BENCH_INSTANCES=2`: two `letterhead serve` processes deliver the campaign together; this
/// process only starts it and watches.
async fn two_instances(
    state: &letterhead::edge::AppState,
    campaign_id: i64,
    settings: &[(&str, &str)],
    dir: &Path,
    sink_pid: &str,
    dkim: bool,
) {
    // The binary built with this bench, or another one (to compare two commits).
    let bin = std::env::var("BENCH_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_letterhead").to_owned());
    let mut settings = settings.to_vec();
    // The start reaches the instances only through their poll (the in-process wakeup does not
    // cross processes): a short poll keeps that wait small next to the delivery.
    settings.push(("DELIVERY_POLL_MS", "50"));
    let mut instances = Vec::new();
    for number in 1..=2 {
        instances.push(Instance::start(&bin, number, &settings, dir).await);
    }
    let started = Instant::now();
    let cpu_before: Vec<f64> = instances.iter().map(|i| cpu_seconds(&i.pid)).collect();
    let sink_before = cpu_seconds(sink_pid);
    let postgres_before = postgres_cpu_seconds();
    let recipients = state.campaigns.start(campaign_id).await.unwrap().unwrap();
    let snapshot = started.elapsed();
    loop {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let c = letterhead::store::campaigns::get(&state.db, campaign_id)
            .await
            .unwrap()
            .unwrap();
        if c.status == letterhead::store::entities::campaign::CampaignStatus::Sent {
            break;
        }
        for instance in &mut instances {
            instance.check_running();
        }
    }
    let elapsed = started.elapsed() - snapshot;
    let whole = started.elapsed().as_secs_f64();
    let sink_cores = (cpu_seconds(sink_pid) - sink_before) / whole;
    // Before the scrapes below, which query the database.
    let postgres_cores = (postgres_cpu_seconds() - postgres_before) / whole;
    let http = reqwest::Client::new();
    // Each instance's messages, CPU seconds during delivery and peak RSS.
    let mut measured = Vec::new();
    for (instance, before) in instances.iter().zip(cpu_before) {
        let cpu = cpu_seconds(&instance.pid) - before;
        measured.push((instance.sent(&http).await, cpu, peak_rss_mb(&instance.pid)));
    }
    let progress = letterhead::store::campaigns::progress(&state.db, campaign_id)
        .await
        .unwrap();
    for instance in &mut instances {
        instance.stop();
    }

    let rate = progress.sent as f64 / elapsed.as_secs_f64();
    println!(
        "{recipients} recipients, DKIM {}, 2 instances: snapshot {:.2} s; delivered {} in {:.1} s = \
         {rate:.0} msg/s (failed {})",
        if dkim { "on" } else { "off" },
        snapshot.as_secs_f64(),
        progress.sent,
        elapsed.as_secs_f64(),
        progress.failed,
    );
    for (instance, (sent, cpu, peak_rss)) in instances.iter().zip(&measured) {
        println!(
            "instance {}: {sent} messages = {:.0} msg/s; CPU {:.2} cores ({:.0} µs per message); peak RSS \
             {peak_rss:.0} MB",
            instance.number,
            *sent as f64 / elapsed.as_secs_f64(),
            cpu / whole,
            cpu * 1e6 / (*sent).max(1) as f64,
        );
    }
    // Messages sent beyond one per recipient: the instances count a message when the relay
    // has taken it, the database records each recipient once.
    let counts: Vec<String> = measured.iter().map(|(sent, _, _)| sent.to_string()).collect();
    let counted: u64 = measured.iter().map(|(sent, _, _)| sent).sum();
    println!(
        "duplicates: {} (the instances sent {} messages for {} recipients sent)",
        counted as i64 - progress.sent,
        counts.join(" + "),
        progress.sent,
    );
    if counted as i64 != progress.sent {
        // What the instances logged is the first clue to why a block was taken over.
        for instance in &instances {
            println!("instance {} logged:\n{}", instance.number, instance.log());
        }
    }
    let cpu: f64 = measured.iter().map(|(_, cpu, _)| cpu).sum();
    let postgres_us = postgres_cores * elapsed.as_secs_f64() * 1e6 / progress.sent.max(1) as f64;
    println!(
        "CPU during delivery: the instances {:.2} cores ({:.0} µs per message), smtp-sink {sink_cores:.2} \
         cores, PostgreSQL's processes {postgres_cores:.2} cores ({postgres_us:.0} µs per message)",
        cpu / whole,
        cpu * 1e6 / progress.sent.max(1) as f64,
    );
}

#[tokio::main]
async fn main() {
    let n: i64 = env("BENCH_RECIPIENTS", "10000").parse().unwrap();
    let dkim = env("BENCH_DKIM", "0") == "1";
    let dir = tempfile::tempdir().unwrap();
    let db_url = std::env::var("BENCH_DATABASE_URL")
        .unwrap_or_else(|_| format!("sqlite://{}?mode=rwc", dir.path().join("bench.db").display()));
    let two = match env("BENCH_INSTANCES", "1").as_str() {
        "1" => false,
        "2" => true,
        other => refuse(&format!("BENCH_INSTANCES is 1 or 2, not {other:?}")),
    };
    if two && db_url.starts_with("sqlite:") {
        refuse("BENCH_INSTANCES=2 runs on PostgreSQL only: set BENCH_DATABASE_URL=postgres://...");
    }
    let mut sink = start_sink();
    std::thread::sleep(Duration::from_millis(300));

    let key = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/dkim-test-rsa2048.pem"
    );
    let mut pairs = vec![
        ("DATABASE_URL", db_url.as_str()),
        ("ORG_NAME", "Bench Ltd"),
        ("ORG_POSTAL_ADDRESS", "1 Bench Street, 12345 Bench City"),
        ("ORG_CONTACT_EMAIL", "privacy@example.com"),
        ("MAIL_FROM", "news@example.com"),
        ("NOTICE_FROM", "notices@example.com"),
        ("DELIVERY_BATCH_SIZE", "200"),
    ];
    let transport =
        std::env::var("BENCH_TRANSPORT").unwrap_or_else(|_| format!("smtp://127.0.0.1:{SINK_PORT}"));
    pairs.push(("MAIL_TRANSPORT", &transport));
    // The relay's session count (smtp-source gets the same); the default is the service's.
    let concurrency = std::env::var("BENCH_CONCURRENCY").ok();
    if let Some(c) = &concurrency {
        pairs.push(("DELIVERY_CONCURRENCY", c));
    }
    if dkim {
        pairs.extend([
            ("DKIM_DOMAIN", "example.com"),
            ("DKIM_SELECTOR", "bench"),
            ("DKIM_PRIVATE_KEY", key),
        ]);
    }
    // What the two instances of BENCH_INSTANCES=2 run with too (each with addresses of its own).
    let shared = pairs.clone();
    pairs.push(("LISTEN_ADDR", "127.0.0.1:0"));
    // Metrics on, as a scraped service runs: the recorder installed, /metrics served.
    if env("BENCH_METRICS", "0") == "1" {
        pairs.push(("METRICS_ADDR", "127.0.0.1:0"));
    }
    let config = Config::from_settings(&Settings::from_pairs(pairs)).unwrap();
    let sessions = config.delivery.concurrency;
    let app = Application::build(config).await.unwrap();
    let state = app.state();
    let delivery = app.delivery();
    let slug = letterhead::domain::ListSlug::parse("news").unwrap();
    letterhead::store::lists::create(&state.db, &slug, "Weekly News", None, true)
        .await
        .unwrap();
    let seeded = Instant::now();
    bulk::seed_confirmed(&state.db, "news", n).await;
    let postgres = letterhead::store::is_postgres(&state.db);
    if postgres {
        // The statistics autovacuum would have for a list this size (as pgbench vacuums first).
        state.db.execute_unprepared("VACUUM ANALYZE").await.unwrap();
    }
    println!(
        "seeded {n} confirmed subscribers in {:.1} s",
        seeded.elapsed().as_secs_f64()
    );

    let paragraph =
        "This week's newsletter paragraph has enough words to be realistic, **bold** and *plain*. ";
    let markdown = format!(
        "# Hello {{{{ name }}}}\n\n{}\n\n[Leave]({{{{ unsubscribe_url }}}})",
        paragraph.repeat(80)
    );
    let input = CampaignInput {
        subject: Some("This week".into()),
        lists: Some(vec!["news".into()]),
        markdown: Some(markdown),
        ..Default::default()
    };
    let valid = state.campaigns.validate(input).await.unwrap();
    let campaign = state.campaigns.create(valid).await.unwrap();
    if two {
        two_instances(
            &state,
            campaign.id,
            &shared,
            dir.path(),
            &sink.id().to_string(),
            dkim,
        )
        .await;
        let _ = sink.kill();
        let _ = sink.wait();
        return;
    }
    let our_bytes = message_bytes(&state, &delivery, campaign.id).await;

    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async {
        let _ = stop_rx.await;
    }));
    let started = Instant::now();
    let sink_pid = sink.id().to_string();
    let cpu_before = (
        cpu_seconds("self"),
        cpu_seconds(&sink_pid),
        postgres_cpu_seconds(),
    );
    let recipients = state.campaigns.start(campaign.id).await.unwrap().unwrap();
    let snapshot = started.elapsed();
    loop {
        // Often enough that the poll does not blur a run of a few seconds.
        tokio::time::sleep(Duration::from_millis(20)).await;
        let c = letterhead::store::campaigns::get(&state.db, campaign.id)
            .await
            .unwrap()
            .unwrap();
        if c.status == letterhead::store::entities::campaign::CampaignStatus::Sent {
            break;
        }
    }
    let elapsed = started.elapsed() - snapshot;
    // Includes the snapshot's CPU (small next to delivery's) and, on SQLite, the database's.
    let cores_used = (cpu_seconds("self") - cpu_before.0) / started.elapsed().as_secs_f64();
    let sink_cores = (cpu_seconds(&sink_pid) - cpu_before.1) / started.elapsed().as_secs_f64();
    let postgres_cores = (postgres_cpu_seconds() - cpu_before.2) / started.elapsed().as_secs_f64();
    let progress = letterhead::store::campaigns::progress(&state.db, campaign.id)
        .await
        .unwrap();
    let _ = stop_tx.send(());
    let _ = server.await;
    let rate = progress.sent as f64 / elapsed.as_secs_f64();
    let count = 20_000.min(n as usize * 2).max(2_000);
    // Sessions kept open (`-d`) is what our relay client does; one connection per message is
    // smtp-source's default.
    let kept_8k = smtp_source(sessions, count, 8192, Sessions::Kept);
    let kept_same = smtp_source(sessions, count, our_bytes, Sessions::Kept);
    let new_8k = smtp_source(sessions, count, 8192, Sessions::OnePerMessage);
    let new_same = smtp_source(sessions, count, our_bytes, Sessions::OnePerMessage);
    let _ = sink.kill();
    let _ = sink.wait();
    println!(
        "{recipients} recipients, DKIM {}: snapshot {:.2} s; delivered {} in {:.1} s = {rate:.0} msg/s \
         (failed {}); peak RSS {:.0} MB",
        if dkim { "on" } else { "off" },
        snapshot.as_secs_f64(),
        progress.sent,
        elapsed.as_secs_f64(),
        progress.failed,
        peak_rss_mb("self")
    );
    for (how, of_8k, of_same) in [
        ("sessions kept (-d)", &kept_8k, &kept_same),
        ("a connection per message", &new_8k, &new_same),
    ] {
        println!(
            "smtp-source, {sessions} sessions, {how}: {:.0} msg/s of 8 KB (ratio {:.2}), {:.0} msg/s of \
             {our_bytes} bytes like ours (ratio {:.2}); its own CPU {:.0} / {:.0} µs per message",
            of_8k.rate,
            rate / of_8k.rate,
            of_same.rate,
            rate / of_same.rate,
            of_8k.cpu_per_message_us,
            of_same.cpu_per_message_us
        );
    }
    let per_message_us = |cores: f64| cores * elapsed.as_secs_f64() * 1e6 / progress.sent.max(1) as f64;
    // SQLite runs in our process; a PostgreSQL server's CPU is counted on its own.
    let database = if postgres {
        format!(
            ", PostgreSQL's processes {postgres_cores:.2} cores ({:.0} µs per message)",
            per_message_us(postgres_cores)
        )
    } else {
        String::new()
    };
    println!(
        "CPU during delivery: letterhead {cores_used:.2} cores ({:.0} µs per message), smtp-sink \
         {sink_cores:.2} cores{database}",
        per_message_us(cores_used),
    );
    if dkim {
        let per_core = openssl_rsa2048_per_core();
        println!(
            "openssl speed rsa2048: {per_core:.0} sign/s per core; the {cores_used:.2} cores used: {:.0} sign/s \
             (ratio {:.2}); both cores: {:.0} sign/s (ratio {:.2})",
            per_core * cores_used,
            rate / (per_core * cores_used),
            per_core * 2.0,
            rate / (per_core * 2.0)
        );
        // The best any mailer could do here: one openssl signature and smtp-source's own SMTP
        // work per message (sessions kept, messages our size), and nothing else at all.
        let floor_us = 1e6 / per_core + kept_same.cpu_per_message_us;
        println!(
            "ceiling of that ratio for a mailer doing nothing but the signature and smtp-source's SMTP \
             work per message ({floor_us:.0} µs): {:.2}",
            (1e6 / per_core) / floor_us
        );
    }
}
