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
    /// Privacy policy versions.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Record an opt-out received by mail or phone (all lists unless --list is given).
    Unsubscribe {
        email: String,
        #[arg(long = "list", value_name = "SLUG")]
        lists: Vec<String>,
    },
    /// Data retention.
    #[command(subcommand)]
    Retention(RetentionCommand),
    /// Campaigns.
    #[command(subcommand)]
    Campaign(CampaignCommand),
    /// Queue a stamped, signed test message to ADDRESS (checks the relay and DKIM set-up).
    SendTest {
        #[arg(long, value_name = "ADDRESS")]
        to: String,
    },
}

#[derive(Subcommand)]
enum ApiKeyCommand {
    /// Create a key; it is printed once, alone on the last line.
    Create {
        #[arg(long)]
        name: String,
    },
    /// List keys (never the keys themselves).
    List,
    /// Revoke a key by its id.
    Revoke { id: i64 },
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Publish a version and queue a notice to every user (idempotent for the same content).
    Publish {
        #[arg(long)]
        version: String,
        /// RFC 3339, e.g. 2027-01-01T00:00:00Z
        #[arg(long)]
        effective_at: String,
        #[arg(long)]
        summary: String,
        #[arg(long)]
        url: String,
        /// The change is material: marketing needs fresh consent.
        #[arg(long)]
        material: bool,
    },
}

#[derive(Subcommand)]
enum CampaignCommand {
    /// Show a campaign's status and progress.
    Status { id: i64 },
}

#[derive(Subcommand)]
enum RetentionCommand {
    /// Delete what has passed its retention period now (the service also does it periodically).
    Run {
        /// Only count what would be deleted.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Add a new token signing key; older keys keep verifying links already sent.
    Rotate,
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
    init_tracing();
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

fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,sea_orm=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if std::env::var("LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json")) {
        builder.json().init();
    } else {
        builder.init();
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
                        let created = k
                            .created_at
                            .to_offset(time::UtcOffset::UTC)
                            .format(time::macros::format_description!(
                                "[year]-[month]-[day] [hour]:[minute] UTC"
                            ))
                            .unwrap_or_default();
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
                "new signing key {kid}; restart the service to sign with it (older keys keep verifying)"
            );
            Ok(())
        }
        Command::Policy(PolicyCommand::Publish {
            version,
            effective_at,
            summary,
            url,
            material,
        }) => {
            let input = letterhead::api::policies::PolicyInput {
                version: Some(version),
                effective_at: Some(effective_at),
                summary: Some(summary),
                url: Some(url),
                material,
            };
            let new = letterhead::api::policies::parse(input).map_err(|errors| {
                let msgs: Vec<String> = errors
                    .iter()
                    .map(|e| format!("--{} {}", e.field.replace('_', "-"), e.message))
                    .collect();
                anyhow::anyhow!(msgs.join("; "))
            })?;
            let state = app::build_state(config).await?;
            match state.notices.publish_policy_idempotent(new).await? {
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
            Ok(())
        }
        Command::Campaign(CampaignCommand::Status { id }) => {
            let db = app::open_database(&config).await?;
            let c = store::campaigns::get(&db, id)
                .await?
                .ok_or_else(|| anyhow::anyhow!("no campaign {id}"))?;
            let p = store::campaigns::progress(&db, id).await?;
            println!("campaign {id}: {} ({:?})", c.status, c.subject);
            println!(
                "recipients {}  sent {}  queued {}  failed {}  skipped {}  cancelled {}",
                c.recipients, p.sent, p.queued, p.failed, p.skipped, p.cancelled
            );
            for (reason, n) in &p.skipped_reasons {
                println!("  skipped {n}: {reason}");
            }
            Ok(())
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
