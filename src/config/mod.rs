//! Typed settings, read from the environment (and a `.env` file or `--env-file PATH`) and
//! checked once at start-up. Every failure is one line naming the setting; nothing here panics.
//! Secrets are wrapped in [`Secret`], whose `Debug` never shows the value.

pub mod dkim_key;

pub use dkim_key::DkimKey;

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use url::Url;

use crate::domain::{EmailAddress, HeaderText, ListSlug};

/// A configuration value that must never be printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// One start-up failure: which setting, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("configuration error: {setting} {problem}")]
pub struct ConfigError {
    pub setting: &'static str,
    pub problem: String,
}

fn err(setting: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        setting,
        problem: problem.into(),
    }
}

/// The organisation stamped on every email (CS-1, CS-4).
#[derive(Debug, Clone)]
pub struct SenderIdentity {
    pub org_name: HeaderText,
    pub postal_address: String,
    pub contact_email: EmailAddress,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    /// `smtp://`: STARTTLS when the relay offers it (GY-3).
    Opportunistic,
    /// `smtp+starttls://`: STARTTLS or no delivery.
    Required,
    /// `smtps://`: TLS from the first byte.
    Implicit,
}

#[derive(Debug, Clone)]
pub enum MailTransportConfig {
    Smtp {
        host: String,
        port: u16,
        tls: SmtpTls,
        credentials: Option<(String, Secret)>,
    },
    /// One `.eml` file per message in this directory.
    File(PathBuf),
}

#[derive(Debug, Clone)]
pub struct DkimConfig {
    pub domain: String,
    pub selector: String,
    pub key: DkimKey,
}

#[derive(Debug, Clone)]
pub struct DeliveryConfig {
    /// Concurrent sends (and so SMTP connections) per process.
    pub concurrency: usize,
    /// Outbox rows claimed per batch; campaigns claim one block of recipients per
    /// `store::campaigns::BLOCK_ROWS` of these, at least one.
    pub batch_size: u32,
    /// How long a claimed row stays leased before another worker may take it over; a live
    /// worker renews its leases every third of it (`delivery::leases`).
    pub lease: Duration,
    /// Attempts before a temporarily failing message is given up.
    pub max_attempts: u32,
    /// First retry delay; doubles with each attempt (with jitter).
    pub retry_base: Duration,
    /// Messages per second to the relay, if limited.
    pub rate_per_second: Option<u32>,
    /// How often an idle worker looks for work.
    pub poll_interval: Duration,
}

impl DeliveryConfig {
    /// Rows a worker has between claim and recorded outcome: eight per SMTP session, so that
    /// while a session carries one message, the send checks of the next ones (which wait a
    /// millisecond for each other) and the outcome records of the last ones run beside it
    /// instead of keeping the session idle (fewer left sessions waiting in the campaign
    /// benchmark; see docs/benchmarks.md).
    pub fn in_flight(&self) -> usize {
        self.concurrency.max(1) * 8
    }

    /// The most messages of one queue a crash can leave sent and not recorded, to be sent again:
    /// the rows in flight, plus the outcome recorder's queue and the group it is writing (each
    /// at most as many). 24 x `DELIVERY_CONCURRENCY`: 192 with the default of 8. The README
    /// states this bound.
    pub fn unrecorded_at_most(&self) -> usize {
        3 * self.in_flight()
    }
}

/// Double opt-in and abuse protection (OI-5, OI-6).
#[derive(Debug, Clone)]
pub struct SignupConfig {
    /// How long a confirmation link works: 48 hours to 7 days (OI-5).
    pub confirm_ttl: Duration,
    /// Confirmation emails to one address per 24 hours, whoever asks (OI-6).
    pub confirmations_per_day: i64,
    /// A repeated signup gets a new confirmation only after this long (unless it adds a list).
    pub resend_after: Duration,
}

/// How long data that is kept only for a while is kept (GD-5).
#[derive(Debug, Clone)]
pub struct RetentionConfig {
    /// Signups never confirmed are deleted after this long.
    pub unconfirmed: Duration,
    /// IP addresses and user agents in consent evidence are blanked after this long.
    pub abuse_data: Duration,
    /// People who left (unsubscribed from everything, or hard-bounced) are deleted after this
    /// long; only the keyed-hash suppression of their address stays.
    pub after_leaving: Duration,
    /// How often the retention job runs.
    pub interval: Duration,
    /// When PostgreSQL rewrites the tables that held deleted personal data (GD-3).
    pub compaction: CompactionSchedule,
}

/// When deleted personal data is compacted out of PostgreSQL's pages (`COMPACTION_HOUR`). A
/// vacuum right after each erasure leaves no row version, but the bytes of a deleted row can
/// stay in its page's free space; only a rewrite (VACUUM FULL) removes them, and it locks each
/// table while it copies it. SQLite overwrites at once and needs neither.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompactionSchedule {
    /// Once a day, in this UTC hour (0–23), if anything was deleted since the last rewrite.
    AtHour(u8),
    /// Right after each erasure's vacuum: for small databases, where a rewrite takes
    /// milliseconds.
    Immediately,
}

impl CompactionSchedule {
    /// Whether a compaction that is due may run in this UTC hour.
    pub fn runs_in_hour(self, hour: u8) -> bool {
        match self {
            CompactionSchedule::AtHour(h) => h == hour,
            CompactionSchedule::Immediately => true,
        }
    }
}

impl std::str::FromStr for CompactionSchedule {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, ()> {
        if s.eq_ignore_ascii_case("immediately") {
            return Ok(CompactionSchedule::Immediately);
        }
        match s.parse::<u8>() {
            Ok(hour) if hour < 24 => Ok(CompactionSchedule::AtHour(hour)),
            _ => Err(()),
        }
    }
}

#[derive(Debug, Clone)]
pub struct RateLimits {
    /// Requests per minute per client IP on public pages and forms.
    pub public_per_minute: u32,
    /// Signups and confirmations per minute per client IP (OI-7).
    pub signup_per_minute: u32,
    /// One-click unsubscribes per minute per client IP (mailbox providers POST from few IPs).
    pub unsubscribe_per_minute: u32,
    /// Requests per minute per API key.
    pub api_per_minute: u32,
    /// Requests with a missing or unknown API key per minute per client IP.
    pub api_key_failures_per_minute: u32,
}

/// How the public pages carry the organisation's look. Nothing else is loaded from elsewhere.
#[derive(Debug, Clone, Default)]
pub struct Brand {
    /// An image for the page header (`BRAND_LOGO_URL`): https, or http on this machine only.
    pub logo_url: Option<Url>,
    /// `#rrggbb` in lower case (`BRAND_ACCENT_COLOR`): buttons, links and headings.
    pub accent_color: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub database_url: Secret,
    pub listen_addr: SocketAddr,
    /// Where `GET /metrics` is served, on a listener of its own (`METRICS_ADDR`); off when unset.
    pub metrics_addr: Option<SocketAddr>,
    pub public_url: Url,
    pub mail_transport: MailTransportConfig,
    pub identity: SenderIdentity,
    pub mail_from: EmailAddress,
    pub notice_from: EmailAddress,
    pub token_keys: Option<Vec<(String, Secret)>>,
    pub address_hash_key: Option<Secret>,
    pub dkim: Option<DkimConfig>,
    pub trust_proxy_headers: bool,
    pub delivery: DeliveryConfig,
    pub rate_limits: RateLimits,
    pub signup: SignupConfig,
    pub retention: RetentionConfig,
    pub request_timeout: Duration,
    /// A request's headers must arrive within this (slow clients cannot hold connections).
    pub header_read_timeout: Duration,
    /// Connections open at once; more wait in the listen backlog.
    pub max_connections: usize,
    /// The largest CSV import upload taken (a 413 past it).
    pub import_max_bytes: u64,
    /// The list created at start-up when there is none yet (`DEFAULT_LIST=slug:Name`), so that a
    /// fresh install can take a signup.
    pub default_list: Option<DefaultList>,
    pub brand: Brand,
}

/// A list to create when the database has none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefaultList {
    pub slug: ListSlug,
    pub name: String,
}

fn parse_default_list(raw: &str) -> Result<DefaultList, ConfigError> {
    const KEY: &str = "DEFAULT_LIST";
    let (slug, name) = raw
        .split_once(':')
        .ok_or_else(|| err(KEY, "must be slug:Name, for example weekly:The Weekly"))?;
    let slug = ListSlug::parse(slug.trim()).map_err(|e| err(KEY, format!("has a slug that {e}")))?;
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 200 || name.chars().any(char::is_control) {
        return Err(err(
            KEY,
            "needs a name of 1-200 characters on one line after the colon",
        ));
    }
    Ok(DefaultList {
        slug,
        name: name.to_owned(),
    })
}

fn parse_logo_url(raw: &str) -> Result<Url, ConfigError> {
    const KEY: &str = "BRAND_LOGO_URL";
    const FIX: &str = "give the https:// address of an image, such as https://example.com/logo.png";
    let url = Url::parse(raw).map_err(|e| err(KEY, format!("is not a valid URL ({e}); {FIX}")))?;
    // Plain http only for a logo served on this machine (a local try-out); browsers would
    // refuse it on an https page anyway.
    let on_this_machine = match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    match url.scheme() {
        "https" if url.host().is_some() => {}
        "http" if on_this_machine => {}
        _ => {
            return Err(err(
                KEY,
                format!("must be an https:// URL (http:// only for localhost); {FIX}"),
            ));
        }
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(err(KEY, format!("must not carry a user name or password; {FIX}")));
    }
    Ok(url)
}

fn accent_color(s: &Settings) -> Result<Option<String>, ConfigError> {
    // In a .env file an unquoted # starts a comment: `BRAND_ACCENT_COLOR=#1f5fa8` arrives blank.
    if s.blank("BRAND_ACCENT_COLOR") {
        return Err(err(
            "BRAND_ACCENT_COLOR",
            "is blank; in a .env file put the colour in quotes (an unquoted # starts a comment): \
             BRAND_ACCENT_COLOR=\"#1f5fa8\", or remove the line",
        ));
    }
    s.get("BRAND_ACCENT_COLOR").map(parse_accent_color).transpose()
}

fn parse_accent_color(raw: &str) -> Result<String, ConfigError> {
    let hex = raw
        .strip_prefix('#')
        .filter(|h| h.len() == 6 && h.chars().all(|c| c.is_ascii_hexdigit()));
    match hex {
        Some(hex) => Ok(format!("#{}", hex.to_ascii_lowercase())),
        None => Err(err(
            "BRAND_ACCENT_COLOR",
            format!("must be a colour written #rrggbb, such as #1f5fa8, not {raw:?}"),
        )),
    }
}

/// Domains of free mailbox providers: sending From them fails DMARC and breaks GY-5.
const FREE_MAIL_DOMAINS: &[&str] = &[
    "gmail.com",
    "googlemail.com",
    "yahoo.com",
    "yahoo.co.uk",
    "yahoo.fr",
    "yahoo.de",
    "ymail.com",
    "outlook.com",
    "hotmail.com",
    "hotmail.co.uk",
    "hotmail.fr",
    "live.com",
    "msn.com",
    "aol.com",
    "icloud.com",
    "me.com",
    "mac.com",
    "gmx.com",
    "gmx.de",
    "gmx.net",
    "web.de",
    "mail.com",
    "mail.ru",
    "yandex.com",
    "yandex.ru",
    "proton.me",
    "protonmail.com",
    "zoho.com",
    "qq.com",
    "163.com",
    "126.com",
    "t-online.de",
    "orange.fr",
    "free.fr",
    "libero.it",
    "fastmail.com",
    "tutanota.com",
    "hey.com",
];

pub fn is_free_mail_domain(domain: &str) -> bool {
    FREE_MAIL_DOMAINS.iter().any(|d| d.eq_ignore_ascii_case(domain))
}

/// Where settings come from: a plain map, so tests can build a config without touching the
/// process environment.
pub struct Settings(HashMap<String, String>);

impl Settings {
    pub fn from_env() -> Self {
        Self(std::env::vars().collect())
    }

    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Self(
            pairs
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
        )
    }

    pub fn set(&mut self, key: &str, value: &str) {
        self.0.insert(key.to_owned(), value.to_owned());
    }

    pub fn remove(&mut self, key: &str) {
        self.0.remove(key);
    }

    /// A set, non-blank value.
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(|v| v.trim()).filter(|v| !v.is_empty())
    }

    /// Given, but blank.
    fn blank(&self, key: &str) -> bool {
        self.0.get(key).is_some_and(|v| v.trim().is_empty())
    }

    fn required(&self, key: &'static str, why: &str) -> Result<&str, ConfigError> {
        self.get(key)
            .ok_or_else(|| err(key, format!("is not set ({why})")))
    }

    fn parsed<T: std::str::FromStr>(&self, key: &'static str, default: T) -> Result<T, ConfigError> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v
                .parse()
                .map_err(|_| err(key, format!("is not a valid value: {v:?}"))),
        }
    }

    fn flag(&self, key: &'static str) -> Result<bool, ConfigError> {
        match self.get(key).map(str::to_ascii_lowercase).as_deref() {
            None | Some("0" | "false" | "no" | "off") => Ok(false),
            Some("1" | "true" | "yes" | "on") => Ok(true),
            Some(other) => Err(err(key, format!("must be true or false, not {other:?}"))),
        }
    }
}

impl Config {
    pub fn from_settings(s: &Settings) -> Result<Self, ConfigError> {
        let database_url = s.get("DATABASE_URL").unwrap_or("sqlite://letterhead.db?mode=rwc");
        if !(database_url.starts_with("sqlite:")
            || database_url.starts_with("postgres://")
            || database_url.starts_with("postgresql://"))
        {
            return Err(err(
                "DATABASE_URL",
                "must start with sqlite:, postgres:// or postgresql://",
            ));
        }
        if database_url.starts_with("postgres") && Url::parse(database_url).is_err() {
            return Err(err("DATABASE_URL", "is not a valid PostgreSQL URL"));
        }

        let listen_addr = match s.get("LISTEN_ADDR") {
            None => SocketAddr::from(([127, 0, 0, 1], 3000)),
            Some(v) => v.parse().map_err(|_| {
                err(
                    "LISTEN_ADDR",
                    format!(
                        "must be an IP address and a port, such as 127.0.0.1:3000 or 0.0.0.0:3000, not {v:?}"
                    ),
                )
            })?,
        };
        let metrics_addr = s
            .get("METRICS_ADDR")
            .map(|v| {
                v.parse::<SocketAddr>().map_err(|_| {
                    err(
                        "METRICS_ADDR",
                        format!("must be an IP address and a port, such as 127.0.0.1:9100, not {v:?}"),
                    )
                })
            })
            .transpose()?;

        let public_url = s.get("PUBLIC_URL").unwrap_or("http://127.0.0.1:3000");
        let mut public_url =
            Url::parse(public_url).map_err(|e| err("PUBLIC_URL", format!("is not a valid URL: {e}")))?;
        if !matches!(public_url.scheme(), "http" | "https") || public_url.host_str().is_none() {
            return Err(err("PUBLIC_URL", "must be an http:// or https:// URL"));
        }
        if public_url.query().is_some() || public_url.fragment().is_some() {
            return Err(err("PUBLIC_URL", "must not have a query or fragment"));
        }
        if !public_url.path().ends_with('/') {
            let path = format!("{}/", public_url.path());
            public_url.set_path(&path);
        }

        let mail_transport = parse_transport(s.get("MAIL_TRANSPORT").unwrap_or("file://./mail-outbox"))?;

        let org_name = s.required(
            "ORG_NAME",
            "the organisation's legal name, stamped on every email",
        )?;
        let org_name = HeaderText::parse(org_name)
            .map_err(|e| err("ORG_NAME", format!("is not usable in a From header: {e}")))?;
        let postal_address = s
            .required(
                "ORG_POSTAL_ADDRESS",
                "a physical postal address is required on every email",
            )?
            .replace("\\n", "\n");
        if postal_address.chars().any(|c| c.is_control() && c != '\n')
            || postal_address.chars().filter(|c| c.is_alphanumeric()).count() < 8
        {
            return Err(err(
                "ORG_POSTAL_ADDRESS",
                "does not look like a physical postal address",
            ));
        }
        let contact_email =
            parse_address(s, "ORG_CONTACT_EMAIL", "the contact address shown on every email")?;

        let mail_from = parse_address(s, "MAIL_FROM", "the marketing sender address")?;
        let notice_from = match s.get("NOTICE_FROM") {
            Some(_) => parse_address(s, "NOTICE_FROM", "")?,
            None => mail_from.clone(),
        };
        for (key, addr) in [("MAIL_FROM", &mail_from), ("NOTICE_FROM", &notice_from)] {
            if is_free_mail_domain(addr.domain()) {
                return Err(err(
                    key,
                    format!(
                        "uses the free-mail domain {}; send from a domain you control",
                        addr.domain()
                    ),
                ));
            }
        }

        let dkim = parse_dkim(s)?;
        if let Some(dkim) = &dkim {
            for (key, addr) in [("MAIL_FROM", &mail_from), ("NOTICE_FROM", &notice_from)] {
                if !addr.domain().eq_ignore_ascii_case(&dkim.domain) {
                    return Err(err(
                        key,
                        format!(
                            "has the domain {} but DKIM_DOMAIN is {}; they must match for DMARC alignment",
                            addr.domain(),
                            dkim.domain
                        ),
                    ));
                }
            }
        }

        let token_keys = match s.get("TOKEN_KEYS") {
            None => None,
            Some(v) => Some(parse_token_keys(v)?),
        };
        let address_hash_key = match s.get("ADDRESS_HASH_KEY") {
            None => None,
            Some(v) if v.len() < 32 => {
                return Err(err(
                    "ADDRESS_HASH_KEY",
                    "must be at least 32 characters of random secret",
                ));
            }
            Some(v) => Some(Secret::new(v)),
        };

        let delivery = DeliveryConfig {
            concurrency: s.parsed("DELIVERY_CONCURRENCY", 8usize)?.max(1),
            batch_size: s.parsed("DELIVERY_BATCH_SIZE", 64u32)?.clamp(1, 10_000),
            lease: Duration::from_secs(s.parsed("DELIVERY_LEASE_SECONDS", 15u64)?.max(5)),
            max_attempts: s.parsed("DELIVERY_MAX_ATTEMPTS", 8u32)?.max(1),
            retry_base: Duration::from_millis(s.parsed("DELIVERY_RETRY_BASE_MS", 30_000u64)?),
            rate_per_second: match s.parsed("SMTP_RATE_PER_SECOND", 0u32)? {
                0 => None,
                n => Some(n),
            },
            poll_interval: Duration::from_millis(s.parsed("DELIVERY_POLL_MS", 1_000u64)?.max(10)),
        };
        let rate_limits = RateLimits {
            public_per_minute: s.parsed("RATE_LIMIT_PUBLIC_PER_MINUTE", 60u32)?.max(1),
            signup_per_minute: s.parsed("RATE_LIMIT_SIGNUP_PER_MINUTE", 10u32)?.max(1),
            unsubscribe_per_minute: s.parsed("RATE_LIMIT_UNSUBSCRIBE_PER_MINUTE", 1200u32)?.max(1),
            api_per_minute: s.parsed("RATE_LIMIT_API_PER_MINUTE", 600u32)?.max(1),
            api_key_failures_per_minute: s.parsed("RATE_LIMIT_API_KEY_FAILURES_PER_MINUTE", 30u32)?.max(1),
        };

        let confirm_hours = s.parsed("CONFIRM_TTL_HOURS", 72u64)?;
        if !(48..=168).contains(&confirm_hours) {
            return Err(err("CONFIRM_TTL_HOURS", "must be between 48 and 168 hours"));
        }
        let signup = SignupConfig {
            confirm_ttl: Duration::from_secs(confirm_hours * 3600),
            confirmations_per_day: s.parsed("CONFIRMATIONS_PER_ADDRESS_PER_DAY", 3i64)?.max(1),
            resend_after: Duration::from_secs(s.parsed("CONFIRMATION_RESEND_MINUTES", 10u64)? * 60),
        };
        let days = |n: u64| Duration::from_secs(n * 86_400);
        let retention = RetentionConfig {
            unconfirmed: days(s.parsed("UNCONFIRMED_RETENTION_DAYS", 7u64)?.max(1)),
            abuse_data: days(s.parsed("ABUSE_DATA_RETENTION_DAYS", 30u64)?.max(1)),
            after_leaving: days(s.parsed("RETENTION_DAYS_AFTER_LEAVING", 365u64)?.max(1)),
            interval: Duration::from_secs(s.parsed("RETENTION_INTERVAL_SECONDS", 3600u64)?.max(1)),
            compaction: match s.get("COMPACTION_HOUR") {
                None => CompactionSchedule::AtHour(3),
                Some(v) => v.parse().map_err(|()| {
                    err(
                        "COMPACTION_HOUR",
                        format!("must be an hour from 0 to 23 (UTC) or `immediately`, not {v:?}"),
                    )
                })?,
            },
        };

        Ok(Self {
            database_url: Secret::new(database_url),
            listen_addr,
            metrics_addr,
            public_url,
            mail_transport,
            identity: SenderIdentity {
                org_name,
                postal_address,
                contact_email,
            },
            mail_from,
            notice_from,
            token_keys,
            address_hash_key,
            dkim,
            trust_proxy_headers: s.flag("TRUST_PROXY_HEADERS")?,
            default_list: s.get("DEFAULT_LIST").map(parse_default_list).transpose()?,
            delivery,
            rate_limits,
            signup,
            retention,
            request_timeout: Duration::from_secs(s.parsed("REQUEST_TIMEOUT_SECONDS", 30u64)?.max(1)),
            header_read_timeout: Duration::from_secs(s.parsed("HEADER_READ_TIMEOUT_SECONDS", 10u64)?.max(1)),
            max_connections: s.parsed("MAX_CONNECTIONS", 768usize)?.max(1),
            import_max_bytes: s.parsed("IMPORT_MAX_MB", 1024u64)?.max(1) * 1024 * 1024,
            brand: Brand {
                logo_url: s.get("BRAND_LOGO_URL").map(parse_logo_url).transpose()?,
                accent_color: accent_color(s)?,
            },
        })
    }

    /// The domains this service may send from (CS-1): MAIL_FROM's and NOTICE_FROM's.
    pub fn sender_domains(&self) -> Vec<&str> {
        let mut domains = vec![self.mail_from.domain()];
        if self.notice_from.domain() != self.mail_from.domain() {
            domains.push(self.notice_from.domain());
        }
        domains
    }
}

fn parse_address(s: &Settings, key: &'static str, why: &str) -> Result<EmailAddress, ConfigError> {
    let raw = s.required(key, why)?;
    EmailAddress::parse(raw).map_err(|e| err(key, format!("is not a valid email address: it {e}")))
}

fn parse_transport(raw: &str) -> Result<MailTransportConfig, ConfigError> {
    const KEY: &str = "MAIL_TRANSPORT";
    if let Some(dir) = raw.strip_prefix("file://") {
        if dir.is_empty() {
            return Err(err(KEY, "file:// needs a directory, e.g. file://./mail-outbox"));
        }
        return Ok(MailTransportConfig::File(PathBuf::from(dir)));
    }
    let url = Url::parse(raw).map_err(|e| err(KEY, format!("is not a valid URL: {e}")))?;
    let (tls, default_port) = match url.scheme() {
        "smtp" => (SmtpTls::Opportunistic, 25),
        "smtp+starttls" => (SmtpTls::Required, 587),
        "smtps" => (SmtpTls::Implicit, 465),
        other => {
            return Err(err(
                KEY,
                format!("has the unknown scheme {other:?} (smtp, smtp+starttls, smtps or file)"),
            ));
        }
    };
    let host = url
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| err(KEY, "has no host"))?
        .trim_matches(['[', ']'])
        .to_owned();
    let credentials = if url.username().is_empty() {
        None
    } else {
        let decode = |v: &str| {
            url::form_urlencoded::parse(format!("v={v}").as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default()
        };
        Some((
            decode(url.username()),
            Secret::new(decode(url.password().unwrap_or(""))),
        ))
    };
    Ok(MailTransportConfig::Smtp {
        host,
        port: url.port().unwrap_or(default_port),
        tls,
        credentials,
    })
}

fn parse_dkim(s: &Settings) -> Result<Option<DkimConfig>, ConfigError> {
    let (domain, selector, key_path) = (
        s.get("DKIM_DOMAIN"),
        s.get("DKIM_SELECTOR"),
        s.get("DKIM_PRIVATE_KEY"),
    );
    if domain.is_none() && selector.is_none() && key_path.is_none() {
        return Ok(None);
    }
    let domain = domain.ok_or_else(|| err("DKIM_DOMAIN", "is not set but other DKIM_ settings are"))?;
    let selector = selector.ok_or_else(|| err("DKIM_SELECTOR", "is not set but other DKIM_ settings are"))?;
    let key_path =
        key_path.ok_or_else(|| err("DKIM_PRIVATE_KEY", "is not set but other DKIM_ settings are"))?;
    let domain = idna::domain_to_ascii(domain)
        .ok()
        .filter(|d| d.contains('.'))
        .ok_or_else(|| err("DKIM_DOMAIN", "is not a valid domain"))?;
    if !selector
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_')
    {
        return Err(err(
            "DKIM_SELECTOR",
            "may contain only letters, digits, '-', '_' and '.'",
        ));
    }
    let pem = std::fs::read_to_string(key_path)
        .map_err(|e| err("DKIM_PRIVATE_KEY", format!("cannot be read from {key_path}: {e}")))?;
    let key = DkimKey::from_pem(&pem).map_err(|e| err("DKIM_PRIVATE_KEY", e))?;
    Ok(Some(DkimConfig {
        domain,
        selector: selector.to_owned(),
        key,
    }))
}

fn parse_token_keys(raw: &str) -> Result<Vec<(String, Secret)>, ConfigError> {
    const KEY: &str = "TOKEN_KEYS";
    let mut keys: Vec<(String, Secret)> = Vec::new();
    for pair in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (kid, secret) = pair
            .split_once(':')
            .ok_or_else(|| err(KEY, "must be comma-separated kid:secret pairs"))?;
        if kid.is_empty()
            || kid.len() > 64
            || !kid
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(err(
                KEY,
                "has a key id that is not 1-64 letters, digits, '-' or '_'",
            ));
        }
        if secret.len() < 32 {
            return Err(err(KEY, format!("key {kid:?} is shorter than 32 characters")));
        }
        if keys.iter().any(|(k, _)| k == kid) {
            return Err(err(KEY, format!("lists the key id {kid:?} twice")));
        }
        keys.push((kid.to_owned(), Secret::new(secret)));
    }
    if keys.is_empty() {
        return Err(err(KEY, "is set but lists no key"));
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minimal() -> Settings {
        Settings::from_pairs([
            ("ORG_NAME", "Example Ltd"),
            ("ORG_POSTAL_ADDRESS", "1 Example Street, 12345 Example City"),
            ("ORG_CONTACT_EMAIL", "privacy@example.com"),
            ("MAIL_FROM", "news@example.com"),
        ])
    }

    #[test]
    fn defaults_follow_the_contract() {
        let c = Config::from_settings(&minimal()).unwrap();
        assert_eq!(c.database_url.expose(), "sqlite://letterhead.db?mode=rwc");
        assert_eq!(c.listen_addr.to_string(), "127.0.0.1:3000");
        assert_eq!(c.metrics_addr, None, "no metrics listener unless asked for");
        assert_eq!(c.public_url.as_str(), "http://127.0.0.1:3000/");
        assert!(matches!(c.mail_transport, MailTransportConfig::File(_)));
        assert_eq!(c.notice_from, c.mail_from);
        assert!(!c.trust_proxy_headers);
    }

    #[test]
    fn cs4_missing_identity_names_the_setting() {
        for key in ["ORG_NAME", "ORG_POSTAL_ADDRESS", "ORG_CONTACT_EMAIL", "MAIL_FROM"] {
            let mut s = minimal();
            s.remove(key);
            let e = Config::from_settings(&s).unwrap_err();
            assert_eq!(e.setting, key);
            assert!(!e.to_string().contains('\n'));
        }
    }

    #[test]
    fn compaction_runs_at_its_hour_or_immediately() {
        assert_eq!(
            Config::from_settings(&minimal()).unwrap().retention.compaction,
            CompactionSchedule::AtHour(3)
        );
        let at = |v: &str| {
            let mut s = minimal();
            s.set("COMPACTION_HOUR", v);
            Config::from_settings(&s).map(|c| c.retention.compaction)
        };
        let nightly = at("23").unwrap();
        assert!(nightly.runs_in_hour(23) && !nightly.runs_in_hour(3));
        let now = at("Immediately").unwrap();
        assert!((0..24).all(|h| now.runs_in_hour(h)));
        for bad in ["24", "-1", "3am", "nightly"] {
            assert_eq!(at(bad).unwrap_err().setting, "COMPACTION_HOUR", "{bad}");
        }
    }

    #[test]
    fn metrics_addr_is_an_address_and_a_port() {
        let mut s = minimal();
        s.set("METRICS_ADDR", "0.0.0.0:9100");
        let c = Config::from_settings(&s).unwrap();
        assert_eq!(
            c.metrics_addr.map(|a| a.to_string()).as_deref(),
            Some("0.0.0.0:9100")
        );
        s.set("METRICS_ADDR", "9100");
        let e = Config::from_settings(&s).unwrap_err();
        assert_eq!(e.setting, "METRICS_ADDR");
        assert!(e.problem.contains("such as 127.0.0.1:9100"), "{e}");
    }

    #[test]
    fn gy5_free_mail_sender_is_refused() {
        let mut s = minimal();
        s.set("NOTICE_FROM", "someone@gmail.com");
        assert_eq!(Config::from_settings(&s).unwrap_err().setting, "NOTICE_FROM");
    }

    #[test]
    fn transports_parse_with_their_tls_mode() {
        let t = parse_transport("smtp://user:p%40ss@relay.example.com:2525").unwrap();
        let MailTransportConfig::Smtp {
            host,
            port,
            tls,
            credentials,
        } = t
        else {
            panic!()
        };
        assert_eq!(
            (host.as_str(), port, tls),
            ("relay.example.com", 2525, SmtpTls::Opportunistic)
        );
        let (user, pass) = credentials.unwrap();
        assert_eq!((user.as_str(), pass.expose()), ("user", "p@ss"));
        assert!(matches!(
            parse_transport("smtp+starttls://relay.example.com").unwrap(),
            MailTransportConfig::Smtp {
                tls: SmtpTls::Required,
                port: 587,
                ..
            }
        ));
        assert!(matches!(
            parse_transport("smtps://relay.example.com").unwrap(),
            MailTransportConfig::Smtp {
                tls: SmtpTls::Implicit,
                port: 465,
                ..
            }
        ));
        assert!(parse_transport("http://x").is_err());
        assert!(parse_transport("file://").is_err());
    }

    #[test]
    fn token_keys_are_checked() {
        assert!(parse_token_keys("k1:short").is_err());
        assert!(parse_token_keys("no-colon").is_err());
        assert!(parse_token_keys(&format!("k1:{0},k1:{0}", "x".repeat(32))).is_err());
        let keys = parse_token_keys(&format!("new:{},old:{}", "a".repeat(32), "b".repeat(40))).unwrap();
        assert_eq!(keys[0].0, "new");
        assert_eq!(keys.len(), 2);
    }

    #[test]
    fn brand_settings_are_checked() {
        let ok = parse_logo_url("https://cdn.example.com/logo.png").unwrap();
        assert_eq!(ok.as_str(), "https://cdn.example.com/logo.png");
        assert!(parse_logo_url("http://127.0.0.1:8000/logo.png").is_ok());
        assert!(parse_logo_url("http://localhost/logo.png").is_ok());
        for bad in [
            "http://cdn.example.com/logo.png",
            "data:image/png;base64,AAAA",
            "javascript:alert(1)",
            "logo.png",
            "https://user:pw@cdn.example.com/logo.png",
        ] {
            assert_eq!(
                parse_logo_url(bad).unwrap_err().setting,
                "BRAND_LOGO_URL",
                "{bad}"
            );
        }
        assert_eq!(parse_accent_color("#1F5FA8").unwrap(), "#1f5fa8");
        for bad in ["1f5fa8", "#1f5fa", "#1f5fa8x", "#gggggg", "red", "#1f5fa8;}"] {
            assert_eq!(
                parse_accent_color(bad).unwrap_err().setting,
                "BRAND_ACCENT_COLOR",
                "{bad}"
            );
        }
        let c = Config::from_settings(&minimal()).unwrap();
        assert!(c.brand.logo_url.is_none() && c.brand.accent_color.is_none());
        let mut s = minimal();
        s.set("BRAND_ACCENT_COLOR", " ");
        assert_eq!(
            Config::from_settings(&s).unwrap_err().setting,
            "BRAND_ACCENT_COLOR"
        );
    }

    #[test]
    fn secrets_never_show_in_debug_output() {
        let mut s = minimal();
        s.set("TOKEN_KEYS", &format!("k1:{}", "topsecretvalue".repeat(3)));
        s.set("MAIL_TRANSPORT", "smtp://user:hunter2hunter2@relay.example.com");
        let c = Config::from_settings(&s).unwrap();
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("topsecretvalue"));
        assert!(!dbg.contains("hunter2"));
    }
}
