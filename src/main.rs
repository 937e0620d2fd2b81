//! The `letterhead` command line: parses arguments, reads the configuration, and hands over to
//! the library. Errors end the process with one line on stderr and a non-zero exit code.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use letterhead::app::{self, Application};
use letterhead::config::{Config, Settings};
use letterhead::delivery::Payload;
use letterhead::domain::EmailAddress;
use letterhead::store::{self, api_keys, keys, outbox};

#[derive(Parser)]
#[command(
    name = "letterhead",
    version,
    about = "A newsletter service that keeps the privacy policy's promises"
)]
struct Cli {
    /// Read settings from this file instead of ./.env (the environment still wins).
    #[arg(long, global = true, value_name = "PATH")]
    env_file: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Apply migrations, serve HTTP and run the delivery workers.
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Manage API keys for /api/v1.
    #[command(subcommand)]
    ApiKey(ApiKeyCommand),
    /// Manage the keys that sign links in emails.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Publish privacy policy versions (each one notifies every user).
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Record an opt-out received by mail or phone (all lists unless --list is given).
    Unsubscribe {
        /// The address that asked to leave.
        email: String,
        /// Leave only this list (repeat for several); without it, every list.
        #[arg(long = "list", value_name = "SLUG")]
        lists: Vec<String>,
    },
    /// Delete what has passed its retention period.
    #[command(subcommand)]
    Retention(RetentionCommand),
    /// Follow campaigns (the API creates and sends them).
    #[command(subcommand)]
    Campaign(CampaignCommand),
    /// Queue a stamped, signed test message to ADDRESS (checks the relay and DKIM set-up).
    SendTest {
        /// Where the test message goes.
        #[arg(long, value_name = "ADDRESS")]
        to: String,
    },
}

#[derive(Subcommand)]
enum ApiKeyCommand {
    /// Create a key; it is printed once, alone on the last line.
    Create {
        /// Who or what uses the key, to recognise it in the list later.
        #[arg(long)]
        name: String,
    },
    /// List keys (never the keys themselves).
    List,
    /// Revoke a key by its id.
    Revoke {
        /// The key's id, as `api-key list` shows it.
        id: i64,
    },
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Publish a version and queue a notice to every user (idempotent for the same content).
    Publish {
        /// The version's name, as pages and notices show it (e.g. 2027-01).
        #[arg(long)]
        version: String,
        /// When the version takes effect, RFC 3339 (e.g. 2027-01-01T00:00:00Z); not in the past
        /// unless --already-in-effect is given.
        #[arg(long)]
        effective_at: String,
        /// What changes, in a sentence or two; it is the body of the notice email.
        #[arg(long)]
        summary: String,
        /// Where the full text of the policy is published.
        #[arg(long)]
        url: String,
        /// The change is material: marketing needs fresh consent.
        #[arg(long)]
        material: bool,
        /// Accept an effective date in the past (recording a version that already applies).
        #[arg(long)]
        already_in_effect: bool,
    },
}

#[derive(Subcommand)]
enum CampaignCommand {
    /// Show a campaign's status and progress.
    Status {
        /// The campaign's id, as the API shows it.
        id: i64,
        /// Keep showing progress (sent, failed, skipped, rate, time left) until the campaign ends.
        #[arg(long)]
        follow: bool,
    },
}

#[derive(Subcommand)]
enum RetentionCommand {
    /// Delete what has passed its retention period now (the service also does it periodically).
    Run {
        /// Only count what would be deleted.
        #[arg(long)]
        dry_run: bool,
    },
    /// Rewrite the tables that hold personal data, so that no byte of a deleted row stays in
    /// their pages' free space (PostgreSQL: VACUUM FULL, which locks each table while it copies
    /// it; run it in a quiet hour). On SQLite erasure already overwrites; this empties the WAL.
    Compact,
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Add a new token signing key; older keys keep verifying links already sent.
    Rotate,
    /// Withdraw a token signing key (one that leaked, say): links signed with it stop working
    /// and show a page that says so; running services notice within 30 s.
    Retire {
        /// The key's id, as `keys rotate` printed it (the first key is `k1`).
        kid: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let env_result = match &cli.env_file {
        Some(path) => dotenvy::from_path(path).map_err(|e| format!("--env-file {}: {e}", path.display())),
        None => match dotenvy::dotenv() {
            Err(e) if !e.not_found() => Err(format!(".env: {e}")),
            _ => Ok(()),
        },
    };
    if let Err(e) = env_result {
        eprintln!("letterhead: {e}");
        return ExitCode::from(2);
    }
    init_tracing(matches!(cli.command, Command::Serve));
    let config = match Config::from_settings(&Settings::from_env()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("letterhead: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("letterhead: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command, config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("letterhead: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The service logs what it does; the other commands print their results and log only
/// warnings and errors. Colours only on a terminal.
fn init_tracing(serving: bool) {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    use tracing_subscriber::filter::{LevelFilter, Targets};
    use tracing_subscriber::prelude::*;
    let default = if serving {
        "info,sqlx=warn,sea_orm=warn"
    } else {
        "warn"
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    // Whatever RUST_LOG asks for, two sources of trace lines stay off: sea-orm's spans record
    // its connection options, the database password among them, and axum's rejections quote
    // the body that failed to parse, which may be an address. (The pool never logs statements
    // or their values: `store::connect` turns sqlx's statement logging off.)
    let no_secrets = Targets::new()
        .with_default(LevelFilter::TRACE)
        .with_target("sea_orm", LevelFilter::DEBUG)
        .with_target("axum::rejection", LevelFilter::DEBUG);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    if std::env::var("LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json")) {
        builder.json().finish().with(no_secrets).init();
    } else {
        builder.finish().with(no_secrets).init();
    }
}

async fn run(command: Command, config: Config) -> anyhow::Result<()> {
    match command {
        Command::Serve => {
            let app = Application::build(config).await?;
            app.run_until(app::shutdown_signal()).await
        }
        Command::Migrate => {
            app::open_database(&config).await?;
            println!("migrations applied");
            Ok(())
        }
        Command::ApiKey(cmd) => {
            let db = app::open_database(&config).await?;
            match cmd {
                ApiKeyCommand::Create { name } => {
                    let created = api_keys::create(&db, name.trim()).await?;
                    println!(
                        "API key {} created for {:?}. It is shown once; store it now:",
                        created.id,
                        name.trim()
                    );
                    println!("{}", created.key);
                }
                ApiKeyCommand::List => {
                    let keys = api_keys::list(&db).await?;
                    if keys.is_empty() {
                        println!("no API keys yet (create one with: letterhead api-key create --name NAME)");
                    } else {
                        println!(
                            "{:<4}  {:<7}  {:<12}  {:<20}  NAME",
                            "ID", "STATE", "STARTS WITH", "CREATED"
                        );
                    }
                    for k in keys {
                        let state = if k.revoked_at.is_some() {
                            "revoked"
                        } else {
                            "active"
                        };
                        let created = cli_time(k.created_at);
                        let prefix = format!("{}…", k.prefix);
                        println!(
                            "{:<4}  {:<7}  {:<12}  {:<20}  {}",
                            k.id, state, prefix, created, k.name
                        );
                    }
                }
                ApiKeyCommand::Revoke { id } => {
                    if !api_keys::revoke(&db, id).await? {
                        anyhow::bail!("no active API key with id {id}");
                    }
                    println!("API key {id} revoked");
                }
            }
            Ok(())
        }
        Command::Keys(KeysCommand::Rotate) => {
            if config.token_keys.is_some() {
                anyhow::bail!("TOKEN_KEYS is set: rotate by putting a new kid:secret first in TOKEN_KEYS");
            }
            let db = app::open_database(&config).await?;
            let kid = keys::rotate(&db, keys::KeyPurpose::Token).await?;
            println!(
                "new signing key {kid}; running services sign with it within 30 s (older keys keep verifying)"
            );
            Ok(())
        }
        Command::Keys(KeysCommand::Retire { kid }) => {
            if config.token_keys.is_some() {
                anyhow::bail!(
                    "TOKEN_KEYS is set: retire a key by removing it from TOKEN_KEYS and restarting"
                );
            }
            let db = app::open_database(&config).await?;
            match keys::retire(&db, keys::KeyPurpose::Token, &kid).await? {
                keys::RetireOutcome::Retired => {
                    println!(
                        "key {kid} retired: links signed with it stop working in running services within 30 s"
                    );
                    Ok(())
                }
                keys::RetireOutcome::AlreadyRetired => {
                    println!("key {kid} was already retired");
                    Ok(())
                }
                keys::RetireOutcome::Unknown => anyhow::bail!("there is no token signing key {kid}"),
                keys::RetireOutcome::OnlyKey => anyhow::bail!(
                    "key {kid} is the only signing key: add one with `letterhead keys rotate` first"
                ),
            }
        }
        Command::Policy(PolicyCommand::Publish {
            version,
            effective_at,
            summary,
            url,
            material,
            already_in_effect,
        }) => {
            let input = letterhead::api::policies::PolicyInput {
                version: Some(version),
                effective_at: Some(effective_at),
                summary: Some(summary),
                url: Some(url),
                material,
                already_in_effect,
            };
            let new = letterhead::api::policies::parse(input).map_err(|e| as_options(&e))?;
            let state = app::build_state(config).await?;
            let outcome = match state.notices.publish_policy_idempotent(new).await {
                Err(letterhead::services::Error::Invalid(errors)) => return Err(as_options(&errors)),
                other => other?,
            };
            match outcome {
                letterhead::services::notices::PublishOutcome::Published { policy, queued } => {
                    println!(
                        "published version {}; {queued} notices queued (the service sends them)",
                        policy.version
                    )
                }
                letterhead::services::notices::PublishOutcome::AlreadyPublished { policy } => {
                    println!(
                        "version {} was already published with this content; nothing new queued",
                        policy.version
                    )
                }
                letterhead::services::notices::PublishOutcome::Conflict => {
                    anyhow::bail!("this version was published before with other content")
                }
            }
            Ok(())
        }
        Command::Unsubscribe { email, lists } => {
            let email = EmailAddress::parse(&email).map_err(|e| anyhow::anyhow!("EMAIL {e}"))?;
            let state = app::build_state(config).await?;
            let ids = if lists.is_empty() {
                None
            } else {
                let mut ids = Vec::new();
                for slug in &lists {
                    let list = store::lists::by_slug(&state.db, slug)
                        .await?
                        .ok_or_else(|| anyhow::anyhow!("there is no list {slug:?}"))?;
                    ids.push(list.id);
                }
                Some(ids)
            };
            state
                .leaving
                .unsubscribe_by_address(&email, ids.as_deref(), "operator:cli")
                .await?;
            println!("opt-out recorded; it takes effect at once");
            Ok(())
        }
        Command::Retention(RetentionCommand::Run { dry_run }) => {
            let db = app::open_database(&config).await?;
            let mode = if dry_run {
                store::retention::Mode::DryRun
            } else {
                store::retention::Mode::Apply
            };
            let report =
                store::retention::run(&db, &config.retention, time::OffsetDateTime::now_utc(), mode).await?;
            let (delete, anonymize) = if dry_run {
                ("would delete", "would remove the IP address and user agent from")
            } else {
                ("deleted", "removed the IP address and user agent from")
            };
            println!(
                "{delete}: {} unconfirmed subscriptions, {} never-confirmed people, {} people who left, {} bounced people",
                report.unconfirmed_subscriptions_deleted,
                report.subscribers_deleted,
                report.leavers_deleted,
                report.bounced_deleted,
            );
            println!("{anonymize} {} consent records", report.consent_events_anonymized);
            let forget = if dry_run { "would forget" } else { "forgot" };
            println!(
                "{forget} {} new names that were never confirmed",
                report.unconfirmed_names_dropped
            );
            // The service's own runs leave this to its background task; here nobody else would.
            if report.deleted_anything()
                && !store::scrub::now(&db, std::time::Duration::from_secs(60)).await?
            {
                println!(
                    "the deleted data is not yet wiped from disk: readers kept the database busy; the service does it on its next run"
                );
            }
            Ok(())
        }
        Command::Retention(RetentionCommand::Compact) => {
            let db = app::open_database(&config).await?;
            let started = std::time::Instant::now();
            if store::scrub::compact_within(&db, std::time::Duration::from_secs(60)).await? {
                println!("compacted in {:.1} s", started.elapsed().as_secs_f64());
                Ok(())
            } else {
                anyhow::bail!("readers kept the database busy; nothing was compacted, try again")
            }
        }
        Command::Campaign(CampaignCommand::Status { id, follow }) => {
            let state = app::build_state(config).await?;
            campaign_status(&state.campaigns, id, follow).await
        }
        Command::SendTest { to } => {
            let to = EmailAddress::parse(&to).map_err(|e| anyhow::anyhow!("--to {e}"))?;
            let db = app::open_database(&config).await?;
            let payload = Payload::TestMessage;
            outbox::enqueue(
                &db,
                outbox::NewOutboxMessage {
                    kind: payload.kind(),
                    subscriber_id: None,
                    recipient: to.to_string(),
                    payload: serde_json::to_value(&payload)?,
                    dedupe_key: None,
                },
            )
            .await?;
            println!("test message queued");
            Ok(())
        }
    }
}

/// Prints a campaign's status and counts; with `follow`, a progress line until it ends: redrawn
/// in place on a terminal, a new line at each change otherwise (for logs and pipes).
async fn campaign_status(
    campaigns: &letterhead::services::campaigns::Campaigns,
    id: i64,
    follow: bool,
) -> anyhow::Result<()> {
    use letterhead::store::entities::campaign::CampaignStatus;
    use std::io::{IsTerminal, Write};
    let db = &campaigns.db;
    let read = async || -> anyhow::Result<_> {
        let c = store::campaigns::get(db, id)
            .await?
            .ok_or_else(|| anyhow::anyhow!("no campaign {id}"))?;
        let p = store::campaigns::progress(db, id).await?;
        Ok((c, p))
    };
    let (c, _) = read().await?;
    println!("campaign {id}: {:?}", c.subject);
    let on_terminal = std::io::stdout().is_terminal();
    let began = std::time::Instant::now();
    let mut first_done: Option<i64> = None;
    let mut last_printed = String::new();
    loop {
        let (c, p) = read().await?;
        let done = p.sent + p.failed + p.skipped + p.cancelled;
        let started = !matches!(c.status, CampaignStatus::Draft | CampaignStatus::Scheduled);
        let ended = matches!(
            c.status,
            CampaignStatus::Draft | CampaignStatus::Sent | CampaignStatus::Cancelled
        );
        let mut line = format!(
            "{:<9} {}  sent {}  failed {}  skipped {}  of {}",
            c.status.to_string(),
            progress_bar(done, c.recipients),
            p.sent,
            p.failed,
            p.skipped,
            c.recipients
        );
        if p.cancelled > 0 {
            line.push_str(&format!("  cancelled {}", p.cancelled));
        }
        if let (CampaignStatus::Scheduled, Some(at)) = (c.status, c.send_at) {
            line.push_str(&format!("  starts {}", cli_time(at)));
        }
        // The rate since following began, once there is something to measure.
        let counted = *first_done.get_or_insert(done);
        let elapsed = began.elapsed().as_secs_f64();
        let mut pace = String::new();
        if follow && !ended && started && done > counted && elapsed >= 1.0 {
            let rate = (done - counted) as f64 / elapsed;
            let left = (c.recipients - done).max(0) as f64 / rate;
            pace = format!("  {rate:.0}/s  {} left", human_duration(left));
        }
        if !follow {
            println!("{line}");
        } else if on_terminal {
            print!("\r\x1b[2K{line}{pace}");
            std::io::stdout().flush()?;
        } else if line != last_printed {
            println!("{line}{pace}");
        }
        last_printed = line;
        if !follow || ended {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
    if follow && on_terminal {
        println!();
    }
    let (c, p) = read().await?;
    for (reason, n) in &p.skipped_reasons {
        println!("  skipped {n}: {reason}");
    }
    if let Some(why) = campaigns.why_no_recipients(&c).await? {
        println!("  {why}");
    }
    Ok(())
}

/// `[#######-------------]  35%` for `done` of `total`.
fn progress_bar(done: i64, total: i64) -> String {
    const WIDTH: i64 = 20;
    let (filled, percent) = if total > 0 {
        (done.min(total) * WIDTH / total, done.min(total) * 100 / total)
    } else {
        (0, 0)
    };
    format!(
        "[{}{}] {percent:>3}%",
        "#".repeat(filled as usize),
        "-".repeat((WIDTH - filled) as usize)
    )
}

fn human_duration(seconds: f64) -> String {
    let s = seconds.round() as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m {:02}s", s / 60, s % 60),
        _ => format!("{}h {:02}m", s / 3600, s % 3600 / 60),
    }
}

/// A time as the commands print it: UTC, to the minute.
fn cli_time(t: time::OffsetDateTime) -> String {
    t.to_offset(time::UtcOffset::UTC)
        .format(time::macros::format_description!(
            "[year]-[month]-[day] [hour]:[minute] UTC"
        ))
        .unwrap_or_default()
}

/// Refused fields, named as the command's options.
fn as_options(errors: &[letterhead::domain::FieldError]) -> anyhow::Error {
    let msgs: Vec<String> = errors
        .iter()
        .map(|e| format!("--{} {}", e.field.replace('_', "-"), e.message))
        .collect();
    anyhow::anyhow!(msgs.join("; "))
}
